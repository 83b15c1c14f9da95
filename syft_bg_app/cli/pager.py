"""Showing a long page on a terminal one screen at a time (``jobs show``).

The page is escaped before it reaches the pager (``terminal_text``), so a pager
that passes escape sequences through (``less -R``) still shows only text. The
default pager is ``less`` without ``-R``: it quits at once when the page fits
the screen (``-F``) and leaves the page on screen afterwards (``-X``). Output
that is not a terminal is never paged.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from typing import TextIO

from syft_bg_app.views.render import terminal_text

DEFAULT_PAGER = ("less", "-FX")
# Pagers that would only copy the page through: printed directly instead.
PASS_THROUGH = {"", "cat"}


def pager_command() -> list[str] | None:
    """The pager to run: ``$PAGER`` through ``sh -c`` (as git and man run it),
    else ``less -FX``; None when there is none, or ``$PAGER`` is ``cat``, empty
    or names a program that is not installed (the page is then printed)."""
    configured = os.environ.get("PAGER")
    if configured is not None:
        try:
            words = shlex.split(configured)
        except ValueError:
            return None
        if not words or words[0] in PASS_THROUGH or shutil.which(words[0]) is None:
            return None
        return ["/bin/sh", "-c", configured]
    if shutil.which(DEFAULT_PAGER[0]) is None:
        return None
    return list(DEFAULT_PAGER)


def show_page(text: str, out: TextIO | None = None) -> None:
    """Print ``text``; on a terminal, page it when it is taller than the screen."""
    out = out or sys.stdout
    safe = terminal_text(text, multiline=True)
    rows = shutil.get_terminal_size((80, 24)).lines
    command = pager_command() if out.isatty() else None
    if command is None or safe.count("\n") + 1 < rows:
        out.write(safe + "\n")
        return
    out.flush()
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE)
    except OSError:
        out.write(safe + "\n")
        return
    try:
        # Ctrl-C belongs to the pager while it shows the page (as git does it);
        # set after the start, so that the pager does not inherit it ignored.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        previous = None
    try:
        assert proc.stdin is not None
        try:
            proc.stdin.write(safe.encode("utf-8", errors="backslashreplace") + b"\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the reader quit before the end of the page
        proc.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
