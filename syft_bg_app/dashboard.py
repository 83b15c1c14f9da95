"""``syft-bg`` with no command: the status and what happened lately.

On a terminal the screen is redrawn every few seconds until Ctrl-C; when the
output goes to a file or a pipe it is printed once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import datetime
from typing import TextIO

from .home import AppHome
from .render import terminal_text

REFRESH_SECONDS = 3.0
ACTIVITY_LINES = 12
DECISIONS = 6
CLEAR = "\033[H\033[2J"
# Bytes from the end of the log the dashboard reads at each redraw.
DASHBOARD_LOG_WINDOW = 64 * 1024


def recent_activity(home: AppHome, count: int = ACTIVITY_LINES) -> list[str]:
    """The last notable log records (the pass's "pass started" lines left out)."""
    from .ops import RECORD_RE, last_records

    lines = [
        line
        for line in last_records(home, "all", count * 3, window=DASHBOARD_LOG_WINDOW)
        if RECORD_RE.match(line) and "pass started" not in line
    ]
    # Log lines are escaped when written; older logs or other writers may not be.
    return [terminal_text(_short(line)) for line in lines[-count:]]


def _short(line: str) -> str:
    # "2026-11-20 10:00:00,123 4242 INFO syft_bg.sync: msg" -> "10:00:00 sync: msg"
    parts = line.split(" ", 4)
    if len(parts) < 5:
        return line
    _, clock, _, level, rest = parts
    rest = rest.removeprefix("syft_bg.")
    mark = "" if level == "INFO" else f"{level} "
    return f"{clock.split(',')[0]} {mark}{rest}"


def recent_decisions(home: AppHome, count: int = DECISIONS) -> list[str]:
    """The last approvals and rejections from the audit log (read from its end)."""
    path = home.audit_log
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            handle.seek(max(0, size - 64 * 1024))
            tail = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in tail[-count:]:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        when = str(entry.get("at", ""))[:19].replace("T", " ")
        method = f" ({entry['method']})" if entry.get("method") else ""
        # The subject names a job, and the reason may quote its files.
        out.append(
            terminal_text(
                f"{when} {entry.get('decision', '?')} {entry.get('subject', '?')}{method}: "
                f"{entry.get('why', '')}"
            )
        )
    return out


def render_dashboard(home: AppHome) -> str:
    from .status_report import render_status

    width = min(shutil.get_terminal_size((100, 40)).columns, 120)
    now = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"syft-bg  {now}".ljust(width - 1), "=" * (width - 1)]
    lines.append(render_status(home))
    activity = recent_activity(home)
    lines += ["", "recent activity (syft-bg logs all):"]
    lines += [f"  {line}" for line in activity] or ["  nothing logged yet"]
    decisions = recent_decisions(home)
    if decisions:
        lines += ["", "recent decisions (audit log):"]
        lines += [f"  {line}" for line in decisions]
    lines += ["", "commands: syft-bg -h    environment check: syft-bg setup-status"]
    return "\n".join(lines)


def run_dashboard(
    home: AppHome,
    out: TextIO | None = None,
    refresh: float = REFRESH_SECONDS,
    rounds: int | None = None,
) -> int:
    """Print the dashboard; on a terminal, redraw it every ``refresh`` seconds until Ctrl-C."""
    out = out or sys.stdout
    if not out.isatty():
        out.write(terminal_text(render_dashboard(home), multiline=True) + "\n")
        return 0
    drawn = 0
    try:
        while rounds is None or drawn < rounds:
            text = render_dashboard(home)
            footer = f"\n\nrefreshing every {refresh:g} s; Ctrl-C to quit"
            # The screen clear is the app's own; everything else is escaped text.
            getattr(out, "write_control", out.write)(CLEAR)
            out.write(terminal_text(text + footer, multiline=True) + "\n")
            out.flush()
            drawn += 1
            if rounds is not None and drawn >= rounds:
                break
            time.sleep(refresh)
    except KeyboardInterrupt:
        out.write("\n")
    return 0


def dashboard_command(args: argparse.Namespace) -> int:
    """The handler of ``syft-bg`` with no command (``--home`` still applies)."""
    return run_dashboard(AppHome.resolve(args.home))
