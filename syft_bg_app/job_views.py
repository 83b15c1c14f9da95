"""Finding and describing jobs for the command line and the Python API."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .context import Context
from .datasite import JOB_STATE_FIELDS, JobRef, JobStateError
from .errors import NotFoundError
from .render import terminal_text
from .submission import read_metadata


@dataclass
class JobView:
    ref: JobRef
    status: str
    state: dict[str, Any]
    submission_dir: Path
    review_dir: Path

    @property
    def label(self) -> str:
        return self.ref.label


def resolve(ctx: Context, spec: str) -> JobRef:
    """``<ds_email>/<job_name>``, or a job name alone when only one DS used it."""
    known = [JobRef(ds, name, rec["protocol"]) for ds, name, rec in ctx.state.iter_jobs()]

    def same(value: str, wanted: str) -> bool:
        # A name is also found by the way it is shown (``bad\xffname`` for a
        # folder name that is not UTF-8, ``\x1b`` for an escape character).
        return value == wanted or terminal_text(value) == wanted

    if "/" in spec:
        ds_email, _, name = spec.partition("/")
        matches = [r for r in known if same(r.ds_email, ds_email) and same(r.name, name)]
    else:
        matches = [r for r in known if same(r.name, spec)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFoundError(
            f"no job {terminal_text(spec)!r} (see: syft-bg jobs list; a job is received by "
            f"the next pass)"
        )
    names = ", ".join(sorted(terminal_text(r.label) for r in matches))
    raise NotFoundError(f"{terminal_text(spec)!r} is ambiguous; name one of: {names}")


def view(ctx: Context, ref: JobRef) -> JobView:
    record = ctx.state.job(ref.ds_email, ref.name) or {"status": "received"}
    try:
        state = ctx.datasite.read_job_state(ref) or {}
    except JobStateError as exc:
        state = {"problem": str(exc)}
    return JobView(
        ref=ref,
        status=state.get("status") or record["status"],
        state={
            **state,
            **({"reason": record["reason"]} if record.get("reason") else {}),
        },
        submission_dir=ctx.datasite.submission_dir(ref),
        review_dir=ctx.datasite.review_dir(ref),
    )


def all_views(ctx: Context, status: str | None = None) -> list[JobView]:
    views = [
        view(ctx, JobRef(ds, name, rec["protocol"]))
        for ds, name, rec in sorted(ctx.state.iter_jobs(), key=lambda j: (j[0], j[1]))
    ]
    return [v for v in views if status is None or v.status == status]


def describe(ctx: Context, ref: JobRef, show_code: bool = False) -> str:
    """A readable page about one job: state, metadata, files and results.

    Everything the data scientist chose (names, config.yaml fields, file names,
    reasons) is shown through ``terminal_text``: one line each, control
    characters escaped, bidi controls marked. With ``show_code``, the text of
    ``run.sh`` and ``code/`` follows (within the email's caps), bidi controls
    marked, so what is shown is what runs.
    """
    v = view(ctx, ref)
    safe = terminal_text
    lines = [f"job {safe(ref.label)}  (protocol v{ref.protocol})", f"  status: {safe(v.status)}"]
    for key in (*JOB_STATE_FIELDS[1:], "reason", "problem"):
        if v.state.get(key) not in (None, ""):
            lines.append(f"  {key}: {safe(v.state[key])}")
    metadata, problem = read_metadata(v.submission_dir / "config.yaml")
    if metadata:
        for key in ("type", "submitted_at", "entrypoint", "dependencies"):
            if metadata.get(key):
                lines.append(f"  {key}: {safe(metadata[key])}")
    elif problem:
        lines.append(f"  metadata: {safe(problem)}")
    record = ctx.state.job(ref.ds_email, ref.name) or {}
    lines.append(f"  submission: {safe(v.submission_dir)}")
    lines.append("  files:")
    lines.extend(f"    {safe(rel)}  ({size} bytes)" for rel, size in _files(v.submission_dir))
    if record.get("never_arrived"):
        lines.append(
            "  listed in config.yaml, never arrived (sync clients skip empty files): "
            + ", ".join(safe(name) for name in record["never_arrived"])
        )
    results = [rel for rel, _ in _files(v.review_dir) if rel not in ("state.yaml",)]
    if results:
        lines.append(f"  results in {safe(v.review_dir)}:")
        lines.extend(f"    {safe(rel)}" for rel in results)
    run_dir = record.get("run_dir")
    if run_dir and os.path.isdir(run_dir):
        lines.append(f"  run folder: {safe(run_dir)}")
    if show_code:
        lines.extend(_code_lines(ctx, v.submission_dir))
    return "\n".join(lines)


def _code_lines(ctx: Context, folder: Path) -> list[str]:
    from .mail.compose import collect_code

    code = collect_code(
        folder, ctx.config.get("notify.code_file_cap"), ctx.config.get("notify.code_total_cap")
    )
    if not code["available"]:
        return ["  code: the job folder is no longer there"]
    lines = []
    if code["bidi_files"]:
        lines.append(
            "  WARNING: "
            + ", ".join(terminal_text(p) for p in code["bidi_files"])
            + " hold characters that reorder how text is displayed (shown as <U+XXXX>): "
            "the code may not run the way it reads"
        )
    for problem in code["problems"]:
        lines.append(f"  refused: {terminal_text(problem)}")
    for entry in code["files"]:
        if entry["text"] is None:
            lines.append(f"  ===== {terminal_text(entry['path'])}: {entry['note']}")
            continue
        cut = f" (first {entry['shown']} of {entry['size']})" if entry["truncated"] else ""
        lines.append(f"  ===== {terminal_text(entry['path'])}{cut} =====")
        lines.append(terminal_text(entry["text"].rstrip("\n"), multiline=True))
    if code["more_files"]:
        lines.append(f"  ({code['more_files']:,} more files not shown)")
    return lines


def _files(folder: Path) -> list[tuple[str, int]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                size = path.lstat().st_size
            except OSError:
                continue
            out.append((path.relative_to(folder).as_posix(), size))
    return out
