"""Commands of this area, added to the syft-bg parser by cli.build_parser."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def register(
    subparsers: argparse._SubParsersAction,
    add: Callable[..., argparse.ArgumentParser],
    commands: dict[str, argparse.ArgumentParser | argparse._SubParsersAction],
) -> None:
    """Add this area's commands. ``commands`` holds the init parser and the
    jobs/peers sub-command groups, for options and actions that belong there."""
    return None
