#!/usr/bin/env bash
# The test command: builds .venv with the test extras (via run.sh) and runs
# lint plus the whole suite. Usage: ./run.sh --test [PYTEST ARGS...]
set -euo pipefail
APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$APP_DIR"
if [ -z "${SYFT_BG_TEST_ENV_READY:-}" ]; then
    exec ./run.sh --test "$@"
fi
.venv/bin/ruff check syft_bg_app tests bench examples
.venv/bin/ruff format --check syft_bg_app tests bench examples
exec .venv/bin/python -m pytest "$@"
