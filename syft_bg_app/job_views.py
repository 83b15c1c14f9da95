"""Finding and describing jobs for the command line and the Python API."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .context import Context
from .datasite import JOB_STATE_FIELDS, JobRef, JobStateError
from .errors import NotFoundError
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
    if "/" in spec:
        ds_email, _, name = spec.partition("/")
        matches = [r for r in known if r.ds_email == ds_email and r.name == name]
    else:
        matches = [r for r in known if r.name == spec]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        waiting = spec.partition("/")[0] if "/" in spec else None
        if waiting in ctx.state.data["held_jobs"]:
            raise NotFoundError(
                f"no job {spec!r}: {waiting} is not an accepted peer, so their jobs wait "
                f"unreceived (syft-bg peers accept {shlex.quote(waiting)})"
            )
        raise NotFoundError(
            f"no job {spec!r} (see: syft-bg jobs list; a job is received by the next pass)"
        )
    names = ", ".join(sorted(r.label for r in matches))
    raise NotFoundError(f"{spec!r} is ambiguous; name one of: {names}")


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


def describe(ctx: Context, ref: JobRef) -> str:
    """A readable page about one job: state, metadata, files and results."""
    v = view(ctx, ref)
    lines = [f"job {ref.label}  (protocol v{ref.protocol})", f"  status: {v.status}"]
    for key in (*JOB_STATE_FIELDS[1:], "reason", "problem"):
        if v.state.get(key) not in (None, ""):
            lines.append(f"  {key}: {v.state[key]}")
    metadata, problem = read_metadata(v.submission_dir / "config.yaml")
    if metadata:
        for key in ("type", "submitted_at", "entrypoint", "dependencies"):
            if metadata.get(key):
                lines.append(f"  {key}: {metadata[key]}")
    elif problem:
        lines.append(f"  metadata: {problem}")
    record = ctx.state.job(ref.ds_email, ref.name) or {}
    lines.append(f"  submission: {v.submission_dir}")
    lines.append("  files:")
    lines.extend(f"    {rel}  ({size} bytes)" for rel, size in _files(v.submission_dir))
    if record.get("never_arrived"):
        lines.append(
            "  listed in config.yaml, never arrived (sync clients skip empty files): "
            + ", ".join(record["never_arrived"])
        )
    results = [rel for rel, _ in _files(v.review_dir) if rel not in ("state.yaml",)]
    if results:
        lines.append(f"  results in {v.review_dir}:")
        lines.extend(f"    {rel}" for rel in results)
    run_dir = record.get("run_dir")
    if run_dir and os.path.isdir(run_dir):
        lines.append(f"  run folder: {run_dir}")
    return "\n".join(lines)


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
