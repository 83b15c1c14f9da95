"""Finding and describing jobs for the command line and the Python API."""

from __future__ import annotations

import os
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syft_bg_app.approval.job_needs import job_warnings
from syft_bg_app.approval.rules import PendingReason
from syft_bg_app.context import Context
from syft_bg_app.datasite.layout import JOB_STATE_FIELDS, PROTOCOL_DIR_RE, JobRef, JobStateError
from syft_bg_app.datasite.linksafe import open_dir, open_dir_at
from syft_bg_app.datasite.submission import read_metadata
from syft_bg_app.errors import AmbiguousError, NotFoundError
from syft_bg_app.views.render import terminal_text


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
    """A job by its label, or a shorter name that is unambiguous.

    Labels are ``<ds_email>/<job_name>`` (protocol 1) and
    ``<ds_email>/v0/<job_name>`` (protocol 0); ``<ds_email>/v1/<job_name>``
    names a protocol 1 job too. ``<ds_email>/<job_name>`` also finds a
    protocol 0 job when that data scientist has no v1 job of the name, and a
    job name alone works when only one job has it.
    """
    known = [JobRef(ds, name, rec["protocol"]) for ds, name, rec in ctx.state.iter_jobs()]

    def same(value: str, wanted: str) -> bool:
        # A name is also found by the way it is shown (``bad\xffname`` for a
        # folder name that is not UTF-8, ``\x1b`` for an escape character).
        return value == wanted or terminal_text(value) == wanted

    parts = spec.split("/")
    if len(parts) == 3 and PROTOCOL_DIR_RE.match(parts[1]):
        ds_email, protocol, name = parts[0], parts[1][1:], parts[2]
        matches = [
            r
            for r in known
            if same(r.ds_email, ds_email) and r.protocol == protocol and same(r.name, name)
        ]
    elif "/" in spec:
        ds_email, _, name = spec.partition("/")
        matches = [r for r in known if same(r.ds_email, ds_email) and same(r.name, name)]
        exact = [r for r in matches if r.label == spec or terminal_text(r.label) == spec]
        matches = exact or matches
    else:
        matches = [r for r in known if same(r.name, spec)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        waiting = spec.partition("/")[0] if "/" in spec else None
        if waiting in ctx.state.data["held_jobs"]:
            raise NotFoundError(
                f"no job {terminal_text(spec)!r}: {terminal_text(waiting)} is not an accepted "
                f"peer, so their jobs wait unreceived "
                f"(syft-bg peers accept {terminal_text(shlex.quote(waiting))})"
            )
        starting = _starting_with(known, spec)
        if starting:
            shown = ", ".join(starting[:PREFIX_MATCHES_LISTED])
            more = len(starting) - PREFIX_MATCHES_LISTED
            raise NotFoundError(
                f"no job {terminal_text(spec)!r}; jobs whose names start with it: {shown}"
                + (f" and {more} more (see: syft-bg jobs list)" if more > 0 else "")
            )
        raise NotFoundError(
            f"no job {terminal_text(spec)!r} (see: syft-bg jobs list; a job is received by "
            f"the next pass)"
        )
    names = ", ".join(sorted(terminal_text(r.label) for r in matches))
    raise AmbiguousError(f"{terminal_text(spec)!r} is ambiguous; name one of: {names}")


# An unknown name that begins known ones lists at most this many of them.
PREFIX_MATCHES_LISTED = 10


def _starting_with(known: list[JobRef], spec: str) -> list[str]:
    """Labels (as shown) of the jobs whose label or job name begins with ``spec``."""
    if not spec:
        return []
    found = {
        terminal_text(ref.label)
        for ref in known
        if any(
            shown.startswith(spec)
            for shown in (ref.label, ref.name, terminal_text(ref.label), terminal_text(ref.name))
        )
    }
    return sorted(found)


def view(ctx: Context, ref: JobRef) -> JobView:
    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol) or {"status": "received"}
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
            # The auto-approval rule that approved it (kept in the checkpoint only).
            **({"rule": record["rule"]} if record.get("rule") else {}),
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


def describe(ctx: Context, ref: JobRef, contents: bool = True) -> str:
    """A readable page about one job: state, why it is pending, metadata, files,
    results and (with ``contents``) the text of ``run.sh`` and ``code/``.

    Everything the data scientist chose (names, config.yaml fields, file names,
    reasons, file contents) is shown through ``terminal_text``: control
    characters escaped, bidi controls marked, so what is shown is what runs.
    Contents are shown within the caps of the owner's "job submitted" email
    (``notify.code_file_cap``, ``notify.code_total_cap``); binary files are
    listed, never inlined.
    """
    v = view(ctx, ref)
    safe = terminal_text
    lines = [f"job {safe(ref.label)}  (protocol v{ref.protocol})", f"  status: {safe(v.status)}"]
    for key in (*JOB_STATE_FIELDS[1:], "reason", "problem"):
        if v.state.get(key) not in (None, ""):
            lines.append(f"  {key}: {safe(v.state[key])}")
    if v.status == "pending":
        lines.extend(_pending_lines(ctx, ref))
    if v.status in ("received", "pending", "approved"):
        # What it will lack when it runs; once it ran, its reason says what it lacked.
        lines.extend(f"  warning: {safe(w)}" for w in job_warnings(ctx, ref))
    metadata, problem, files = _submission(ctx, ref)
    if metadata:
        for key in ("type", "submitted_at", "entrypoint", "dependencies"):
            if metadata.get(key):
                lines.append(f"  {key}: {safe(_field_text(metadata[key]))}")
    elif problem:
        lines.append(f"  metadata: {safe(problem)}")
    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol) or {}
    lines.append(f"  submission: {safe(v.submission_dir)}")
    lines.append("  files:")
    lines.extend(f"    {safe(rel)}  ({size} bytes)" for rel, size in files)
    if len(files) >= FILES_LISTED:
        lines.append(f"    (the listing stops at {FILES_LISTED} entries)")
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
    if contents:
        lines.extend(_code_lines(ctx, ref))
    return "\n".join(lines)


def why_pending(ctx: Context, ref: JobRef) -> PendingReason | None:
    """Why the rules left a pending job for the data owner (None: it is not pending).

    The job's files are collected and hashed as the approve step does it
    (without following a link), and compared with every rule that applies to
    its submitter; see ``rules.explain_pending``.
    """
    from syft_bg_app.approval.rules import explain_pending, load_rules
    from syft_bg_app.datasite.jobfiles import Limits, collect
    from syft_bg_app.steps.approve import hash_scanned_file

    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol)
    if record is None or record["status"] != "pending":
        return None
    accepted = (ctx.state.peer(ref.ds_email) or {}).get("status") == "accepted"
    try:
        job_fd = ctx.datasite.open_job_dir(ref)
    except OSError as exc:
        return PendingReason(f"the job folder cannot be read safely: {exc}")
    try:
        found = collect(
            ctx.datasite.submission_dir(ref), Limits.from_config(ctx.config), dir_fd=job_fd
        )
        problems = found.all_problems
        hashes: dict[str, str] = {}

        def hash_of(rel: str) -> str:
            if rel not in hashes:
                hashes[rel] = hash_scanned_file(job_fd, rel, found.files[rel])
            return hashes[rel]

        reason = explain_pending(
            load_rules(ctx.config), found.paths, problems, ref.ds_email, accepted, hash_of
        )
    except OSError as exc:
        return PendingReason(f"its files changed while they were compared ({exc}); look again")
    finally:
        os.close(job_fd)
    if not ctx.config.step_enabled("approve"):
        reason.summary += " (and the approve service is stopped: syft-bg start approve)"
    return reason


def _pending_lines(ctx: Context, ref: JobRef) -> list[str]:
    reason = why_pending(ctx, ref)
    if reason is None:
        return []
    first, *rest = reason.lines()
    lines = [f"  why pending: {terminal_text(first)}"]
    lines.extend(f"    {terminal_text(line)}" for line in rest)
    label = shlex.quote(terminal_text(ref.label))
    if reason.no_rule:
        lines.append(f"    to trust exactly these files: syft-bg auto-approve --from-job {label}")
    lines.append(f"    to decide yourself: syft-bg jobs approve|reject {label}")
    return lines


def _field_text(value: object) -> str:
    """A config.yaml field as text of at most ``FIELD_CHARS`` characters: the file
    may hold 256 KiB in one field, which would flood the terminal."""
    text = str(value[:FIELD_CHARS] if isinstance(value, (str, list)) else value)
    return text if len(text) <= FIELD_CHARS else text[: FIELD_CHARS - 1] + "…"


# ``jobs show`` prints at most this many characters of one config.yaml field.
FIELD_CHARS = 300


def _submission(ctx: Context, ref: JobRef) -> tuple[dict | None, str | None, list]:
    """(metadata, problem, files) of the job folder, reached without following a link."""
    try:
        job_fd = ctx.datasite.open_job_dir(ref)
    except OSError as exc:
        return None, f"the job folder cannot be read safely: {exc}", []
    try:
        metadata, problem = read_metadata(Path("config.yaml"), dir_fd=job_fd)
        files: list[tuple[str, int]] = []
        _list_into(job_fd, "", 0, files, [FILES_LISTED])
        return metadata, problem, sorted(files)
    finally:
        os.close(job_fd)


# ``jobs show`` lists at most this many entries of a folder (a job may hold many).
FILES_LISTED = 1000
FOLDERS_DEEP = 32


def _files(folder: Path, cap: int = FILES_LISTED) -> list[tuple[str, int]]:
    """(relative path, size) of the files in ``folder``, without following any link.

    The folder and every folder below it are opened with ``O_NOFOLLOW`` (a
    job folder swapped for a link lists nothing), and the listing stops after
    ``cap`` entries or ``FOLDERS_DEEP`` levels.
    """
    out: list[tuple[str, int]] = []
    try:
        top = open_dir(folder.parent, [folder.name])
    except OSError:
        return out
    try:
        _list_into(top, "", 0, out, [cap])
    finally:
        os.close(top)
    return sorted(out)


def _list_into(fd: int, prefix: str, depth: int, out: list, budget: list[int]) -> None:
    subfolders = []
    with os.scandir(fd) as entries:
        for entry in entries:
            budget[0] -= 1
            if budget[0] < 0:
                return
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                subfolders.append(entry.name)
            else:
                out.append((prefix + entry.name, st.st_size))
    if depth >= FOLDERS_DEEP:
        return
    for name in sorted(subfolders):
        if budget[0] < 0:
            return
        try:
            child = open_dir_at(fd, [name])
        except OSError:
            continue
        try:
            _list_into(child, f"{prefix}{name}/", depth + 1, out, budget)
        finally:
            os.close(child)


def _code_lines(ctx: Context, ref: JobRef) -> list[str]:
    from syft_bg_app.mail.code import read_submission

    _, code = read_submission(ctx, ref)
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
