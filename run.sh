#!/usr/bin/env bash
# syft-bg app entry point: one pass per call (SyftBox and cron call this).
#
#   ./run.sh                 one pass against the configured datasite
#   ./run.sh --demo          build a throwaway datasite and show a pass at work
#   ./run.sh --every SECONDS start a fresh one-shot pass every SECONDS
#   ./run.sh --test          create the environment with test extras, run the suite
#   ./run.sh ARGS...         anything else is passed to the syft-bg CLI
#
# On first use it creates .venv/ beside this file from pyproject.toml;
# afterwards it starts at once.
set -euo pipefail

APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$APP_DIR/.venv"

find_python() {
    local candidate
    for candidate in "${SYFT_BG_PYTHON:-}" python3 python3.13 python3.12 python3.11 python3.10 python; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "syft-bg: needs Python 3.10 or newer (set SYFT_BG_PYTHON to its path)" >&2
    return 1
}

# The suite also runs the notebook widgets and the example notebooks.
TEST_EXTRAS="test,notebook"

# Fingerprint of what the environment was built from: pyproject.toml and the extras.
wanted_stamp() {
    local extras="$1"
    echo "$({ cat "$APP_DIR/pyproject.toml"; echo "extras=$extras"; } | cksum | cut -d' ' -f1) extras=$extras"
}

# The common case in shell builtins only (a pass starts every minute): the stamp
# is newer than pyproject.toml and names extras that serve this run.
env_is_current() {
    local extras="$1" stamp_file="$VENV/.syft-bg-env" line=""
    [ -x "$VENV/bin/python" ] && [ "$stamp_file" -nt "$APP_DIR/pyproject.toml" ] || return 1
    read -r line <"$stamp_file" 2>/dev/null || return 1
    # Test extras are a superset: a test environment serves plain runs too.
    case "$line" in
    *" extras=$extras" | *" extras=$TEST_EXTRAS") [ -z "$extras" ] || [ "${line##* }" = "extras=$extras" ] ;;
    *) return 1 ;;
    esac
}

ensure_env() {
    local extras="$1" stamp_file="$VENV/.syft-bg-env" spec="$APP_DIR"
    env_is_current "$extras" && return 0
    local want
    want="$(wanted_stamp "$extras")"
    # pyproject.toml touched but not changed (a checkout): the stamp is renewed.
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$want" ]; then
        touch "$stamp_file"
        return 0
    fi
    if [ -z "$extras" ] && [ -x "$VENV/bin/python" ] &&
        [ "$(cat "$stamp_file" 2>/dev/null)" = "$(wanted_stamp "$TEST_EXTRAS")" ]; then
        touch "$stamp_file"
        return 0
    fi
    exec 9>"$APP_DIR/.venv.lock"
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    local python
    python="$(find_python)"
    echo "syft-bg: preparing the app environment in $VENV (first run only)..." >&2
    if [ ! -x "$VENV/bin/python" ]; then
        "$python" -m venv "$VENV" || {
            echo "syft-bg: could not create a virtual environment; on Debian/Ubuntu: apt-get install python3-venv" >&2
            return 1
        }
    fi
    [ -n "$extras" ] && spec="$APP_DIR[$extras]"
    # pip's output is shown only when it fails, less its notes about index
    # locations this machine may not have.
    local pip_log="$VENV/.syft-bg-pip.log"
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" >"$pip_log" 2>&1; then
        grep -v "^WARNING: Location '.*' is ignored" "$pip_log" >&2 || true
        echo "syft-bg: installing the app's packages failed (see above)" >&2
        return 1
    fi
    # A pass starts often and imports most of the app: compile it once here, also
    # where Python is told never to write bytecode itself (PYTHONDONTWRITEBYTECODE).
    "$VENV/bin/python" -m compileall -q "$APP_DIR/syft_bg_app" >/dev/null 2>&1 || true
    echo "$want" >"$stamp_file"
}

# Exit 0: the pass ended at the idle check; anything else: run the full pass.
IDLE_CHECK='import sys
sys.path.insert(0, sys.argv[1])
from syft_bg_app.schedule.idle import try_idle_pass
sys.exit(0 if try_idle_pass() == 0 else 3)'

case "${1:-}" in
--test)
    shift
    ensure_env "$TEST_EXTRAS"
    SYFT_BG_TEST_ENV_READY=1 exec bash "$APP_DIR/tests/run.sh" "$@"
    ;;
--demo)
    shift
    ensure_env ""
    exec "$VENV/bin/python" -m syft_bg_app demo "$@"
    ;;
--every)
    seconds="${2:-}"
    if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
        echo "usage: run.sh --every SECONDS   (a whole number of seconds, at least 1)" >&2
        exit 2
    fi
    shift 2
    ensure_env ""
    trap 'exit 0' INT TERM
    while true; do
        # Each pass is its own short process; the loop only keeps time.
        if [ $# -gt 0 ] || ! "$VENV/bin/python" -S -c "$IDLE_CHECK" "$APP_DIR"; then
            "$VENV/bin/python" -m syft_bg_app run --once "$@" || true
        fi
        sleep "$seconds" &
        wait $!
    done
    ;;
"")
    ensure_env ""
    # The idle check first, without site-packages (it needs only the standard
    # library): when nothing changed since the last full pass, the pass ends here.
    if "$VENV/bin/python" -S -c "$IDLE_CHECK" "$APP_DIR"; then
        exit 0
    fi
    exec "$VENV/bin/python" -m syft_bg_app run --once
    ;;
*)
    ensure_env ""
    exec "$VENV/bin/python" -m syft_bg_app "$@"
    ;;
esac
