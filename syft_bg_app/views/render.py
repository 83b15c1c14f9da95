"""The pieces every view is drawn with: safe terminal text, escaped HTML, badges,
tables (HTML for Jupyter, aligned text for a terminal), the data scientist's job table.

Every string that comes from a job (names, emails, reasons, paths) is escaped
with ``html.escape`` on its way into HTML, and through ``terminal_text`` on its
way to a terminal or a log line: a job is named by whoever submitted it.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

# Bidirectional controls reorder what is shown ("Trojan Source"): code that reads
# one way runs another. They are shown as <U+XXXX> wherever others' text appears.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}
# C0 and C1 controls, DEL, line/paragraph separators, bidi controls and lone
# surrogates (the undecodable bytes of a file name, as os.fsdecode gives them).
_UNSAFE = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029{BIDI_CONTROLS}\\ud800-\\udfff]")
# The same, keeping line breaks and tabs; a CR is kept only as part of CRLF.
_UNSAFE_MULTILINE = re.compile(
    f"\\r(?!\\n)|[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\u2028\\u2029{BIDI_CONTROLS}\\ud800-\\udfff]"
)


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # the byte that was not UTF-8
    if ch in BIDI_CONTROLS or code > 0xFF:
        return f"<U+{code:04X}>"
    return f"\\x{code:02x}"


def terminal_text(value: Any, multiline: bool = False) -> str:
    """``value`` as text that is safe to print or log: control characters (escape
    sequences, CR, LF, DEL, C1) are shown escaped (``\\x1b``, ``\\n``), bidi controls
    as ``<U+202E>``, and bytes of a name that was not UTF-8 as ``\\xff``.

    With ``multiline``, line breaks (LF, CRLF) and tabs are kept.
    """
    text = "" if value is None else str(value)
    pattern = _UNSAFE_MULTILINE if multiline else _UNSAFE
    return pattern.sub(_escape_char, text)


def has_bidi_controls(text: str) -> bool:
    return any(ch in text for ch in BIDI_CONTROLS)


# (background, text) per status; unknown statuses get the neutral grey.
BADGE_COLORS = {
    "received": ("#e5e7eb", "#374151"),
    "pending": ("#fef3c7", "#92400e"),
    "approved": ("#dbeafe", "#1e40af"),
    "running": ("#ede9fe", "#5b21b6"),
    "done": ("#dcfce7", "#166534"),
    "failed": ("#fee2e2", "#991b1b"),
    "rejected": ("#fce7f3", "#9d174d"),
}
NEUTRAL = ("#e5e7eb", "#374151")
# One font stack for every view (the emails' too): text inherits it from the
# wrapper, code and plain-text blocks use the one monospace stack.
FONT_STACK = "-apple-system,'Segoe UI',Helvetica,Arial,sans-serif"
MONO_STACK = "Menlo,Consolas,monospace"
WRAPPER = f'<div class="syft-bg" style="font-family:{FONT_STACK};font-size:13px">'
TABLE_STYLE = "border-collapse:collapse;font-family:inherit;font-size:13px"
CELL_STYLE = "border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:left;vertical-align:top"
NOTE_LIMIT = 120


def esc(value: Any) -> str:
    """A value for HTML: escaped, with control and bidi characters shown as text."""
    return html.escape(terminal_text(value, multiline=True), quote=True)


def plain(value: Any) -> str:
    """A value for a terminal: one line, control characters escaped."""
    return terminal_text(value)


class SafeTerminalStream(io.TextIOBase):
    """A text stream that passes what is written through ``terminal_text`` (line
    breaks and tabs kept): whatever a command prints, a name someone else chose
    cannot move the cursor, clear the screen or flip the text direction.

    ``write_control`` writes the app's own escape sequences (the dashboard's
    screen clear) as they are.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(terminal_text(text, multiline=True))
        return len(text)

    def write_control(self, text: str) -> None:
        self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    def writable(self) -> bool:
        return True


def short_note(text: str | None, limit: int = NOTE_LIMIT) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def badge_html(status: str) -> str:
    background, color = BADGE_COLORS.get(status, NEUTRAL)
    return (
        f'<span class="syft-bg-badge syft-bg-{esc(status)}" style="background:{background};'
        f'color:{color};border-radius:9px;padding:1px 8px;font-weight:600">{esc(status)}</span>'
    )


# -- generic tables ----------------------------------------------------------------


def table_html(
    title: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    raw_columns: Iterable[int] = (),
) -> str:
    """A table; cells are escaped except the columns listed in ``raw_columns``
    (which hold markup this module built, such as badges)."""
    raw = set(raw_columns)
    head = "".join(f'<th style="{CELL_STYLE}">{esc(h)}</th>' for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td style="{CELL_STYLE}">{cell if i in raw else esc(cell)}</td>'
            for i, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'{WRAPPER}<div style="font-weight:600;margin:4px 0">{esc(title)}</div>'
        f'<table style="{TABLE_STYLE}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def table_text(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [[plain(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _count_line(items: Sequence[Any]) -> str:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.status] = counts.get(item.status, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"{len(items)} job{'s' if len(items) != 1 else ''}" + (f" ({parts})" if parts else "")


# -- job tables (the data owner's and the data scientist's) ----------------------------------


def status_table_html(
    jobs: Sequence[Any],
    title: str,
    headers: Sequence[str],
    row_of: Callable[[Any], list[str]],
    status_column: int = 2,
) -> str:
    """A job table whose ``status_column`` holds a status badge."""
    if not jobs:
        return f"{WRAPPER}<em>{esc(title)}: no jobs</em></div>"
    rows = []
    for job in jobs:
        row = row_of(job)
        row[status_column] = badge_html(job.status)
        rows.append(row)
    return table_html(f"{title}: {_count_line(jobs)}", headers, rows, raw_columns=(status_column,))


def status_table_text(
    jobs: Sequence[Any], title: str, headers: Sequence[str], row_of: Callable[[Any], list[str]]
) -> str:
    """A count line (``Jobs: 3 jobs (2 pending, 1 rejected)``), then the aligned table."""
    if not jobs:
        return f"{title}: no jobs"
    return f"{title}: {_count_line(jobs)}\n" + table_text(headers, [row_of(job) for job in jobs])


# -- jobs I submitted (data scientist) ---------------------------------------------------

MY_JOB_HEADERS = ("data owner", "job", "status", "type", "submitted", "results")


def _my_row(job: Any) -> list[str]:
    if job.results_dir is not None:
        results = str(job.results_dir)
    elif job.reason:
        results = f"- ({short_note(job.reason, 60)})"
    else:
        results = "-"
    return [
        job.do_email,
        job.name,
        job.status,
        job.type or "-",
        job.submitted_at or "-",
        results,
    ]


def my_jobs_html(jobs: Sequence[Any], title: str = "My jobs") -> str:
    return status_table_html(jobs, title, MY_JOB_HEADERS, _my_row)


def my_jobs_text(jobs: Sequence[Any], title: str = "My jobs") -> str:
    return status_table_text(jobs, title, MY_JOB_HEADERS, _my_row)


# -- plain text blocks (status, pass summaries) ------------------------------------------


def pre_html(text: str, title: str | None = None) -> str:
    head = f'<div style="font-weight:600;margin:4px 0">{esc(title)}</div>' if title else ""
    pre = f'<pre style="margin:0;font-family:{MONO_STACK}">'
    return f"{WRAPPER}{head}{pre}{esc(text)}</pre></div>"
