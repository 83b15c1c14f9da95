"""``syft-bg`` with no command: the status and what happened lately.

On a terminal the screen is redrawn every few seconds until Ctrl-C, cut to the
terminal's size (``shutil.get_terminal_size``): the title, the pending jobs and
the footer always show, the other sections share the rows left, and a line
too long ends with an ellipsis. When the output goes to a file or a pipe the
whole dashboard is printed once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.errors import SyftBgError
from syft_bg_app.session import open_view
from syft_bg_app.store.home import AppHome
from syft_bg_app.views.render import terminal_text

REFRESH_SECONDS = 3.0
ACTIVITY_LINES = 12
DECISIONS = 6
CLEAR = "\033[H\033[2J"
# Bytes from the end of the log the dashboard reads at each redraw.
DASHBOARD_LOG_WINDOW = 64 * 1024


def recent_activity(home: AppHome, count: int = ACTIVITY_LINES) -> list[str]:
    """The last notable log records (the pass's "pass started" lines left out)."""
    from syft_bg_app.actions.services import RECORD_RE, last_records

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


PENDING_HINT = "syft-bg jobs list --status pending"
FOOTER = "refreshing every {refresh:g} s; Ctrl-C to quit"


@dataclass
class Section:
    """A titled block of the dashboard; ``more`` is the command that shows all of it."""

    title: str
    lines: list[str]
    more: str
    keep_tail: bool = False  # logs: the latest lines matter most


def pending_jobs(home: AppHome) -> list[str]:
    """One line per pending job (its label and when it arrived), oldest first."""
    try:
        ctx = open_view(home)
    except SyftBgError:
        return []
    pending = [
        (record.get("received_at") or "", JobRef(ds, name, record["protocol"]).label)
        for ds, name, record in ctx.state.iter_jobs()
        if record["status"] == "pending"
    ]
    return [
        f"{terminal_text(label)}  (since {terminal_text(received[:19].replace('T', ' '))})"
        for received, label in sorted(pending)
    ]


def dashboard_sections(home: AppHome) -> tuple[list[str], list[Section]]:
    """(pending job lines, the other sections in the order they are shown)."""
    from syft_bg_app.views.status import render_status

    sections = [Section("status:", render_status(home).splitlines(), "syft-bg status")]
    activity = recent_activity(home) or ["nothing logged yet"]
    sections.append(
        Section("recent activity (syft-bg logs all):", activity, "syft-bg logs all", True)
    )
    decisions = recent_decisions(home)
    if decisions:
        sections.append(Section("recent decisions (audit log):", decisions, "syft-bg audit", True))
    return pending_jobs(home), sections


def _title(now: str) -> str:
    return f"syft-bg  {now}"


def _pending_title(count: int) -> str:
    if not count:
        return "pending jobs: none"
    return f"pending jobs: {count} (syft-bg jobs show JOB)"


def render_dashboard(home: AppHome) -> str:
    """The whole dashboard, for output that is not a terminal (nothing cut)."""
    now = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
    pending, sections = dashboard_sections(home)
    lines = [_title(now), "=" * len(_title(now)), _pending_title(len(pending))]
    lines += [f"  {line}" for line in pending]
    for section in sections:
        lines += ["", section.title, *(f"  {line}" for line in section.lines)]
    lines += ["", "commands: syft-bg -h    environment check: syft-bg setup-status"]
    return "\n".join(terminal_text(line) for line in lines)


def fit_screen(
    home: AppHome, columns: int, rows: int, footer: str, now: str | None = None
) -> list[str]:
    """The dashboard cut to ``rows`` lines of at most ``columns - 1`` cells.

    The title, the pending jobs and the footer come first; the sections share
    the rows left. A cut section ends with a line naming the command that
    shows all of it, and a line too long ends with an ellipsis.
    """
    now = now or datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
    pending, sections = dashboard_sections(home)
    width = max(columns - 1, 1)
    head = [_title(now)]
    tail = [footer] if footer and rows >= 4 else []
    budget = max(rows - len(head) - len(tail), 0)
    lines = list(head)
    if budget:
        lines.append(_pending_title(len(pending)))
        budget -= 1
        needed = sum(len(section.lines) + 1 for section in sections)
        for_sections = max(0, min(needed, budget - min(len(pending), max(3, budget // 2))))
        room = min(len(pending), budget - for_sections)
        lines += [f"  {line}" for line in _cut(pending, room, PENDING_HINT)]
        budget -= room
    for section, room in zip(sections, _share(sections, budget), strict=True):
        if room >= 2:
            lines.append(section.title)
            lines += [
                f"  {line}"
                for line in _cut(section.lines, room - 1, section.more, section.keep_tail)
            ]
    lines += tail
    return [fit_line(terminal_text(line), width) for line in lines[:rows]]


def _share(sections: list[Section], budget: int) -> list[int]:
    """Rows per section (its title included): an even share, what a small section
    leaves over going to the larger ones. A section that would get less than a
    title and one line is left out, the last shown first, and its rows shared."""
    active = list(range(len(sections)))
    while True:
        rooms = [0] * len(sections)
        left = budget
        order = sorted(active, key=lambda i: len(sections[i].lines))
        for position, index in enumerate(order):
            need = len(sections[index].lines) + 1
            rooms[index] = min(need, left // (len(order) - position))
            left -= rooms[index]
        small = [i for i in active if rooms[i] < 2]
        if not small:
            return rooms
        active.remove(max(small))


# Status lines that must stay in sight when the status is cut.
ALARMS = ("WARNING", "FAILED", "PROBLEM", "ERROR", "last pass:")


def _cut(lines: list[str], room: int, more: str, keep_tail: bool = False) -> list[str]:
    """At most ``room`` lines; when some are left out, a line says how many and
    where to see them. Lines that raise an alarm are kept before the others;
    with ``keep_tail`` the latest lines are kept, else the first ones."""
    if room <= 0:
        return []
    if len(lines) <= room:
        return lines
    shown = room - 1 if room > 1 else 1
    order = list(range(len(lines)))
    if keep_tail:
        order.reverse()
    order.sort(key=lambda i: not any(word in lines[i] for word in ALARMS))
    kept = [lines[i] for i in sorted(order[:shown])]
    if room == 1:
        return kept
    note = f"… {len(lines) - shown} more ({more})"
    return [note, *kept] if keep_tail else [*kept, note]


def cell_width(text: str) -> int:
    """Terminal cells ``text`` takes: wide (East Asian) characters two, combining none."""
    return sum(_char_cells(ch) for ch in text)


def _char_cells(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def fit_line(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells, ending with an ellipsis where it was cut."""
    if cell_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        cells = _char_cells(ch)
        if used + cells > width - 1:
            break
        out.append(ch)
        used += cells
    return "".join(out) + "…"


def run_dashboard(
    home: AppHome,
    out: TextIO | None = None,
    refresh: float = REFRESH_SECONDS,
    rounds: int | None = None,
) -> int:
    """Print the dashboard; on a terminal, redraw it to fit the terminal every
    ``refresh`` seconds until Ctrl-C."""
    out = out or sys.stdout
    if not out.isatty():
        out.write(terminal_text(render_dashboard(home), multiline=True) + "\n")
        return 0
    drawn = 0
    try:
        while rounds is None or drawn < rounds:
            # Asked each time: the terminal may have been resized.
            size = shutil.get_terminal_size((80, 24))
            lines = fit_screen(home, size.columns, size.lines, FOOTER.format(refresh=refresh))
            # The screen clear is the app's own; everything else is escaped text.
            # No newline after the last line: the screen must not scroll.
            getattr(out, "write_control", out.write)(CLEAR)
            out.write("\n".join(lines))
            out.flush()
            drawn += 1
            if rounds is not None and drawn >= rounds:
                break
            time.sleep(refresh)
    except KeyboardInterrupt:
        pass
    out.write("\n")
    return 0


def dashboard_command(args: argparse.Namespace) -> int:
    """The handler of ``syft-bg`` with no command (``--home`` still applies)."""
    from syft_bg_app.cli.parser import app_home

    return run_dashboard(app_home(args))
