"""What commands print: lines, notes, warnings, tables, errors.

Whatever passes through here reaches stdout or stderr through the
``SafeTerminalStream`` that ``main`` installs, so text that data scientists
wrote never sends escape sequences to the terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from syft_bg_app.views.render import table_text


def say(*lines: str) -> None:
    for line in lines:
        print(line)


def notes(items: Iterable[str]) -> None:
    for item in items:
        print(f"note: {item}")


def warnings(items: Iterable[str]) -> None:
    for item in items:
        print(f"warning: {item}")


def problem(*lines: str) -> None:
    """Lines for stderr, the first one named after the program."""
    for n, line in enumerate(lines):
        print(f"syft-bg: {line}" if n == 0 else line, file=sys.stderr)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    print(table_text(headers, rows))


def json_data(data: Any) -> None:
    """``data`` as indented JSON; non-ASCII characters (bidi controls among them) are
    written as ``\\uXXXX`` escapes, so the output is plain ASCII."""
    print(json.dumps(data, indent=2, ensure_ascii=True))
