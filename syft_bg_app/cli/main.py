"""The syft-bg command line: parse, call the command's handler, turn errors into
exit codes."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from syft_bg_app.errors import SyftBgError

# What run.sh and the schedule call every few seconds: served without building
# the parser of every command.
PASS_ARGV = (["run"], ["run", "--once"])


def build_parser() -> argparse.ArgumentParser:
    from syft_bg_app.cli.parser import build_parser as build

    return build()


def _handler(name: str | None) -> Callable[[argparse.Namespace], int]:
    if name is None:
        from syft_bg_app.cli.dashboard import dashboard_command

        return dashboard_command
    module, _, function = name.rpartition(".")
    return getattr(importlib.import_module(f"syft_bg_app.cli.{module}"), function)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv in PASS_ARGV:
        return _call(pass_command, argparse.Namespace(home=None, once=True))
    args = build_parser().parse_args(argv)
    return _call(_handler(getattr(args, "handler", None)), args)


def pass_command(args: argparse.Namespace) -> int:
    """``run --once``: one pass on the app home."""
    from syft_bg_app.cli.parser import app_home
    from syft_bg_app.passes import main_once

    return main_once(app_home(args))


def _call(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from syft_bg_app.views.render import SafeTerminalStream

    # Whatever a command prints passes through terminal_text: names and fields
    # that data scientists wrote can never send escape sequences to the terminal.
    # (Values that could hold a line break are escaped where they are printed.)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeTerminalStream(sys.stdout), SafeTerminalStream(sys.stderr)
    try:
        return handler(args)
    except SyftBgError as exc:
        from syft_bg_app.cli.output import problem
        from syft_bg_app.cli.parser import app_home
        from syft_bg_app.invocation import localize

        # Commands the message suggests are spelled as they run from here.
        problem(localize(str(exc), app_home(args)))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved


if __name__ == "__main__":
    sys.exit(main())
