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

# Tests run in parallel (pytest-xdist): one worker per CPU, at least two, since most
# tests wait on processes they start rather than compute. Each file's tests run on one
# worker, in order (module fixtures are built once). SYFT_BG_TEST_WORKERS sets the
# count; "-n N" (or "-p no:xdist") on the command line wins, and so does "--dist".
workers="${SYFT_BG_TEST_WORKERS:-$(nproc 2>/dev/null || echo 2)}"
if [ -z "${SYFT_BG_TEST_WORKERS:-}" ] && [ "$workers" -lt 2 ]; then
    workers=2
fi
parallel=(-n "$workers" --dist loadfile)
for arg in "$@"; do
    case "$arg" in
    -n | -n[0-9a]* | --numprocesses | --numprocesses=* | no:xdist | -pno:xdist) parallel=() ;;
    esac
done
exec .venv/bin/python -m pytest ${parallel[@]+"${parallel[@]}"} "$@"
