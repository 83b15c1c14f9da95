"""A job and a job table, each rendered three ways from one ``JobView``.

Text is what ``jobs show`` and ``jobs list`` print and what a ``Job`` shows in a
terminal; HTML is what it shows in Jupyter; JSON (a dict of plain types) is
``--json`` and ``Job.to_dict()``. Everything a data scientist chose (names,
config.yaml fields, file names, reasons, file contents) goes through
``terminal_text`` on its way to text and through ``esc`` on its way to HTML:
control characters escaped, bidi controls marked as ``<U+202E>``, so what is
shown is what runs. JSON keeps the values as they are (``json.dumps`` escapes
them) and flags names that hold bidi controls.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from syft_bg_app.datasite.layout import JOB_STATE_FIELDS
from syft_bg_app.views.jobs import FILES_LISTED, JobDetail, JobView
from syft_bg_app.views.render import (
    CELL_STYLE,
    MONO_STACK,
    TABLE_STYLE,
    WRAPPER,
    badge_html,
    esc,
    has_bidi_controls,
    short_note,
    status_table_html,
    status_table_text,
    terminal_text,
)

# A page shows at most this many characters of one config.yaml field.
FIELD_CHARS = 300
METADATA_SHOWN = ("type", "submitted_at", "entrypoint", "dependencies", "datasets")
NEVER_ARRIVED = "listed in config.yaml, never arrived (sync clients skip empty files)"
BIDI_WARNING = (
    "hold characters that reorder how text is displayed (shown as <U+XXXX>): "
    "the code may not run the way it reads"
)


def _field_text(value: object) -> str:
    """A config.yaml field as text of at most ``FIELD_CHARS`` characters: the file
    may hold 256 KiB in one field, which would flood the terminal."""
    if isinstance(value, dict):
        # syft-job's datasets: {data owner: [names]}.
        value = ", ".join(
            str(name)
            for names in list(value.values())[:FIELD_CHARS]
            for name in (names[:FIELD_CHARS] if isinstance(names, list) else [names])
        )
    text = str(value[:FIELD_CHARS] if isinstance(value, (str, list)) else value)
    return text if len(text) <= FIELD_CHARS else text[: FIELD_CHARS - 1] + "…"


def _detail(job: JobView) -> JobDetail:
    if job.detail is None:
        raise ValueError(f"{job.label}: a page needs the job's detail (views.jobs.page)")
    return job.detail


# -- the facts, in the order a page shows them -------------------------------------------


# state.yaml's fields, with the auto-approval rule (kept in the checkpoint) beside
# the approval method, and the checkpoint's reason and any problem reading the state.
PAGE_STATE_KEYS = (*JOB_STATE_FIELDS[1:5], "rule", *JOB_STATE_FIELDS[5:], "reason", "problem")


def _state_fields(job: JobView) -> list[tuple[str, Any]]:
    return [(k, job.state[k]) for k in PAGE_STATE_KEYS if job.state.get(k) not in (None, "")]


def _metadata_fields(job: JobView) -> list[tuple[str, str]]:
    if job.metadata:
        fields = [(k, _field_text(job.metadata[k])) for k in METADATA_SHOWN if job.metadata.get(k)]
        if job.tags:
            fields.insert(0, ("tags", ", ".join(job.tags)))
        if job.description:
            fields.insert(0, ("description", job.description))
        return fields
    problem = job.metadata_problem or _detail(job).folder_problem
    return [("metadata", problem)] if problem else []


def _pending_lines(job: JobView) -> list[str]:
    """Why it is pending (first line), how the files differ, what the owner can run."""
    reason = _detail(job).why_pending
    if reason is None:
        return []
    lines = reason.lines()
    label = shlex.quote(terminal_text(job.label))
    if reason.no_rule:
        lines.append(f"to trust exactly these files: syft-bg auto-approve --from-job {label}")
    lines.append(f"to decide yourself: syft-bg jobs approve|reject {label}")
    return lines


def _file_line(size: int, sha256: str | None) -> str:
    return f"({size} bytes)" + (f"  {sha256}" if sha256 else "")


def _code_cut(entry: dict[str, Any]) -> str:
    return f" (first {entry['shown']} of {entry['size']})" if entry["truncated"] else ""


# -- one job: text -------------------------------------------------------------------------


def job_text(job: JobView) -> str:
    """The page ``jobs show`` prints (with the code when the view holds it)."""
    detail = _detail(job)
    safe = terminal_text
    lines = [
        f"job {safe(job.label)}  (protocol v{job.ref.protocol})",
        f"  status: {safe(job.status)}",
    ]
    lines.extend(f"  {key}: {safe(value)}" for key, value in _state_fields(job))
    pending = _pending_lines(job)
    if pending:
        lines.append(f"  why pending: {safe(pending[0])}")
        lines.extend(f"    {safe(line)}" for line in pending[1:])
    lines.extend(f"  warning: {safe(w)}" for w in detail.warnings)
    lines.extend(f"  {key}: {safe(value)}" for key, value in _metadata_fields(job))
    lines.append(f"  submission: {safe(job.submission_dir)}")
    lines.append("  files:")
    lines.extend(f"    {safe(f.path)}  {_file_line(f.size, f.sha256)}" for f in detail.files)
    if detail.files_cut:
        lines.append(f"    (the listing stops at {FILES_LISTED} entries)")
    if detail.never_arrived:
        lines.append(f"  {NEVER_ARRIVED}: " + ", ".join(safe(n) for n in detail.never_arrived))
    if detail.results:
        lines.append(f"  results in {safe(job.review_dir)}:")
        lines.extend(f"    {safe(rel)}" for rel in detail.results)
    if detail.run_dir:
        lines.append(f"  run folder: {safe(detail.run_dir)}")
    if detail.code is not None:
        lines.extend(_code_text(detail.code))
    return "\n".join(lines)


def _code_text(code: dict[str, Any]) -> list[str]:
    if not code["available"]:
        return ["  code: the job folder is no longer there"]
    lines = []
    if code["bidi_files"]:
        named = ", ".join(terminal_text(p) for p in code["bidi_files"])
        lines.append(f"  WARNING: {named} {BIDI_WARNING}")
    lines.extend(f"  refused: {terminal_text(problem)}" for problem in code["problems"])
    for entry in code["files"]:
        if entry["text"] is None:
            lines.append(f"  ===== {terminal_text(entry['path'])}: {entry['note']}")
            continue
        lines.append(f"  ===== {terminal_text(entry['path'])}{_code_cut(entry)} =====")
        lines.append(terminal_text(entry["text"].rstrip("\n"), multiline=True))
    if code["more_files"]:
        lines.append(f"  ({code['more_files']:,} more files not shown)")
    return lines


# -- one job: HTML -------------------------------------------------------------------------

_CODE = f'<code style="font-family:{MONO_STACK}">'
_PRE = f'<pre style="margin:0;font-family:{MONO_STACK}">'
_HEADING = '<div style="font-weight:600;margin:8px 0 4px">'


def _row(key: str, value_html: str) -> str:
    cell = f'style="{CELL_STYLE}"'
    return f"<tr><th {cell}>{esc(key)}</th><td {cell}>{value_html}</td></tr>"


def job_html(job: JobView) -> str:
    """The same page for Jupyter: every value escaped, code in collapsed sections."""
    detail = _detail(job)
    rows = [_row(key, esc(value)) for key, value in _state_fields(job)]
    pending = _pending_lines(job)
    if pending:
        more = "".join(f"<li>{esc(line)}</li>" for line in pending[1:])
        rows.append(_row("why pending", esc(pending[0]) + (f"<ul>{more}</ul>" if more else "")))
    rows.extend(_row("warning", esc(w)) for w in detail.warnings)
    rows.extend(_row(key, esc(value)) for key, value in _metadata_fields(job))
    rows.append(_row("submission", f"{_CODE}{esc(job.submission_dir)}</code>"))
    if detail.never_arrived:
        rows.append(_row(NEVER_ARRIVED, esc(", ".join(detail.never_arrived))))
    if detail.run_dir:
        rows.append(_row("run folder", f"{_CODE}{esc(detail.run_dir)}</code>"))
    parts = [
        WRAPPER,
        f'<div style="font-weight:600;margin:4px 0">{esc(job.label)} {badge_html(job.status)}'
        f" (protocol v{esc(job.ref.protocol)})</div>",
        f'<table style="{TABLE_STYLE}"><tbody>{"".join(rows)}</tbody></table>',
    ]
    files = "".join(
        f'<tr><td style="{CELL_STYLE}">{_CODE}{esc(f.path)}</code></td>'
        f'<td style="{CELL_STYLE}">{f.size} bytes</td>'
        f'<td style="{CELL_STYLE}">{_CODE}{esc(f.sha256 or "")}</code></td></tr>'
        for f in detail.files
    )
    cut = f" (the listing stops at {FILES_LISTED} entries)" if detail.files_cut else ""
    parts.append(
        f"<details open><summary>files ({len(detail.files)}){cut}</summary>"
        f'<table style="{TABLE_STYLE}"><tbody>{files}</tbody></table></details>'
    )
    if detail.results:
        listed = "".join(f"<li>{_CODE}{esc(rel)}</code></li>" for rel in detail.results)
        parts.append(
            f"<details><summary>results in {_CODE}{esc(job.review_dir)}</code> "
            f"({len(detail.results)})</summary><ul>{listed}</ul></details>"
        )
    if detail.code is not None:
        parts.append(_code_html(detail.code))
    parts.append("</div>")
    return "".join(parts)


def _code_html(code: dict[str, Any]) -> str:
    if not code["available"]:
        return f"{_HEADING}code: the job folder is no longer there</div>"
    parts = []
    if code["bidi_files"]:
        named = ", ".join(esc(p) for p in code["bidi_files"])
        parts.append(
            f'<div style="font-weight:600;color:#991b1b;margin:8px 0 4px">WARNING: {named} '
            f"{esc(BIDI_WARNING)}</div>"
        )
    parts.extend(f"<div>refused: {esc(problem)}</div>" for problem in code["problems"])
    for entry in code["files"]:
        if entry["text"] is None:
            parts.append(f"<div>{_CODE}{esc(entry['path'])}</code>: {esc(entry['note'])}</div>")
            continue
        parts.append(
            f"<details><summary>{_CODE}{esc(entry['path'])}</code>{esc(_code_cut(entry))}"
            f"</summary>{_PRE}{esc(entry['text'].rstrip(chr(10)))}</pre></details>"
        )
    if code["more_files"]:
        parts.append(f"<div>({code['more_files']:,} more files not shown)</div>")
    return "".join(parts)


# -- one job: JSON -------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` as JSON types (YAML gives dates and timestamps as objects)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return str(value)


def job_json(job: JobView) -> dict[str, Any]:
    """The job as a dict of plain types; a page adds its files, results, why it is
    pending, warnings and (when the view holds it) the code."""
    out: dict[str, Any] = {
        "job": job.label,
        "ds_email": job.ref.ds_email,
        "name": job.ref.name,
        "protocol": job.ref.protocol,
        "status": job.status,
        "state": {k: _plain(job.state[k]) for k in JOB_STATE_FIELDS if k in job.state},
        "received_at": job.received_at,
        "reason": _plain(job.reason),
        "problem": _plain(job.problem),
        "rule": job.rule,
        "description": job.description,
        "tags": job.tags,
        "metadata": {k: _plain(job.metadata[k]) for k in METADATA_SHOWN if k in job.metadata},
        "submission_dir": str(job.submission_dir),
        "review_dir": str(job.review_dir),
    }
    if job.detail is None:
        return out
    detail = job.detail
    reason = detail.why_pending
    out.update(
        {
            "folder_problem": detail.folder_problem,
            "files": [
                {
                    "path": f.path,
                    "size": f.size,
                    "sha256": f.sha256,
                    "bidi_controls": has_bidi_controls(f.path),
                }
                for f in detail.files
            ],
            "files_cut": detail.files_cut,
            "never_arrived": _plain(detail.never_arrived),
            "results": list(detail.results),
            "run_dir": detail.run_dir,
            "why_pending": None
            if reason is None
            else {
                "summary": reason.summary,
                "rule": reason.rule,
                "missing": list(reason.missing),
                "extra": list(reason.extra),
                "differ": list(reason.differ),
                "rule_problem": reason.rule_problem,
                "refused": list(reason.refused),
                "lines": _pending_lines(job),
            },
            "warnings": list(detail.warnings),
            "code": _plain(detail.code),
        }
    )
    return out


# -- a job table -----------------------------------------------------------------------

JOB_HEADERS = ("job", "status", "type", "received", "note")


def _note(job: JobView) -> str:
    text = job.reason or job.problem or ""
    if job.rule and f"rule {job.rule}" not in text:
        text = f"auto-approved by rule {job.rule}" + (f"; {text}" if text else "")
    return short_note(text)


def _job_row(job: JobView) -> list[str]:
    return [job.label, job.status, job.type or "-", job.received_at or "-", _note(job)]


def jobs_title(status: str | None = None, tag: str | None = None) -> str:
    title = f"Jobs with status {status}" if status else "Jobs"
    return title + (f" tagged {tag}" if tag else "")


def jobs_text(jobs: Sequence[JobView], title: str = "Jobs") -> str:
    """``jobs list``: a count line, then one aligned row per job."""
    return status_table_text(jobs, title, JOB_HEADERS, _job_row)


def jobs_html(jobs: Sequence[JobView], title: str = "Jobs") -> str:
    return status_table_html(jobs, title, JOB_HEADERS, _job_row, status_column=1)


def jobs_json(jobs: Sequence[JobView]) -> list[dict[str, Any]]:
    return [job_json(job) for job in jobs]
