"""Finding jobs, and the one view model of a job that every face renders.

``view`` builds a job's summary (a row of a job table), ``page`` the same with
everything ``jobs show`` shows; ``views.job_render`` turns either into text,
HTML or a JSON-ready dict.
"""

from __future__ import annotations

import os
import shlex
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syft_bg_app.approval.job_needs import job_warnings
from syft_bg_app.approval.rules import PendingReason
from syft_bg_app.context import Context
from syft_bg_app.datasite.jobfiles import Limits, collect, file_set_hashes
from syft_bg_app.datasite.layout import PROTOCOL_DIR_RE, JobRef, JobStateError
from syft_bg_app.datasite.linksafe import open_dir, open_dir_at
from syft_bg_app.datasite.submission import metadata_description, metadata_tags, read_metadata
from syft_bg_app.errors import AmbiguousError, NotFoundError, UsageError
from syft_bg_app.store.fsutil import PERMISSION_FILE, untrusted_text
from syft_bg_app.views.render import terminal_text


@dataclass
class JobFile:
    """One entry of a job folder. ``sha256`` is set for the files that run
    (``run.sh`` and ``code/``) and None for the rest (config.yaml, refused entries)."""

    path: str
    size: int
    sha256: str | None = None


@dataclass
class JobDetail:
    """What a job's page adds to its summary (``jobs show``, one ``Job`` in the API)."""

    folder_problem: str | None
    files: list[JobFile]
    files_cut: bool
    never_arrived: list[str]
    results: list[str]
    run_dir: str | None
    why_pending: PendingReason | None
    warnings: list[str]
    # ``mail.compose.collect_code``'s account of run.sh and code/; None without contents.
    code: dict[str, Any] | None


@dataclass
class JobView:
    """A job as every face shows it: built here, rendered by ``views.job_render``.

    A summary (a row of a job table) has ``detail`` None; a page has it.
    """

    ref: JobRef
    status: str
    state: dict[str, Any]
    submission_dir: Path
    review_dir: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    metadata_problem: str | None = None
    detail: JobDetail | None = None

    @property
    def label(self) -> str:
        return self.ref.label

    @property
    def reason(self) -> str | None:
        return self.state.get("review_reason") or self.state.get("reason")

    @property
    def problem(self) -> str | None:
        return self.state.get("problem") or self.metadata_problem

    @property
    def rule(self) -> str | None:
        """The auto-approval rule that approved it (None if a person did)."""
        return untrusted_text(self.state.get("rule"))

    @property
    def received_at(self) -> str | None:
        return untrusted_text(self.state.get("received_at"))

    @property
    def type(self) -> str | None:
        return untrusted_text(self.metadata.get("type"))

    @property
    def entrypoint(self) -> str | None:
        return untrusted_text(self.metadata.get("entrypoint"))

    @property
    def submitted_at(self) -> str | None:
        return untrusted_text(self.metadata.get("submitted_at"))

    @property
    def description(self) -> str | None:
        return metadata_description(self.metadata)

    @property
    def tags(self) -> list[str]:
        return metadata_tags(self.metadata)


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
    """A job's summary: its state, the checkpoint's reason and rule, config.yaml."""
    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol) or {"status": "received"}
    try:
        state = ctx.datasite.read_job_state(ref) or {}
    except JobStateError as exc:
        state = {"problem": str(exc)}
    metadata, metadata_problem = _metadata(ctx, ref)
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
        metadata=metadata,
        metadata_problem=metadata_problem,
    )


def all_views(ctx: Context, status: str | None = None, tag: str | None = None) -> list[JobView]:
    """Every job (or those with ``status``, and tagged ``tag`` by their submitter)."""
    views = [
        view(ctx, JobRef(ds, name, rec["protocol"]))
        for ds, name, rec in sorted(ctx.state.iter_jobs(), key=lambda j: (j[0], j[1]))
    ]
    return [
        v
        for v in views
        if (status is None or v.status == status) and (tag is None or tag in v.tags)
    ]


def page(ctx: Context, ref: JobRef, contents: bool = True) -> JobView:
    """A job with everything its page shows: why it is pending, what it will lack,
    its files with their hashes, its results and (with ``contents``) the text of
    ``run.sh`` and ``code/`` within the caps of the "job submitted" email."""
    job = view(ctx, ref)
    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol) or {}
    folder_problem, files = _submission_files(ctx, ref)
    run_dir = record.get("run_dir")
    in_review = job.status in ("received", "pending", "approved")
    job.detail = JobDetail(
        folder_problem=folder_problem,
        files=files,
        files_cut=len(files) >= FILES_LISTED,
        never_arrived=list(record.get("never_arrived") or []),
        results=[rel for rel, _ in list_files(job.review_dir) if rel not in RESULT_SKIP],
        run_dir=run_dir if run_dir and os.path.isdir(run_dir) else None,
        why_pending=why_pending(ctx, ref) if job.status == "pending" else None,
        # What it will lack when it runs; once it ran, its reason says what it lacked.
        warnings=job_warnings(ctx, ref) if in_review else [],
        code=_code(ctx, ref) if contents else None,
    )
    return job


def why_pending(ctx: Context, ref: JobRef) -> PendingReason | None:
    """Why the rules left a pending job for the data owner (None: it is not pending).

    The job's files are collected and hashed as the approve step does it
    (without following a link), and compared with every rule that applies to
    its submitter; see ``rules.explain_pending``.
    """
    from syft_bg_app.approval.rules import explain_pending, load_rules
    from syft_bg_app.datasite.datasets import declared_datasets
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

        metadata, _ = read_metadata(Path("config.yaml"), dir_fd=job_fd)
        try:
            datasets = declared_datasets(metadata, ctx.datasite.email)
        except UsageError as exc:
            # Neither a rule nor the data owner can approve it (approving says the same).
            return PendingReason(f"it cannot be approved as it is: {exc}")
        reason = explain_pending(
            load_rules(ctx.config),
            found.paths,
            problems,
            ref.ds_email,
            accepted,
            hash_of,
            datasets=datasets,
        )
    except OSError as exc:
        return PendingReason(f"its files changed while they were compared ({exc}); look again")
    finally:
        os.close(job_fd)
    if not ctx.config.step_enabled("approve"):
        reason.summary += " (and the approve service is stopped: syft-bg start approve)"
    return reason


def _metadata(ctx: Context, ref: JobRef) -> tuple[dict[str, Any], str | None]:
    """(config.yaml's fields, the problem reading it), reached without following a
    link; a job folder that is gone has neither."""
    try:
        job_fd = ctx.datasite.open_job_dir(ref)
    except OSError:
        return {}, None
    try:
        metadata, problem = read_metadata(Path("config.yaml"), dir_fd=job_fd)
    finally:
        os.close(job_fd)
    return metadata or {}, problem


def _submission_files(ctx: Context, ref: JobRef) -> tuple[str | None, list[JobFile]]:
    """(problem, files) of the job folder, reached without following a link; the
    files that run carry the SHA-256 of their bytes, as the approve step takes it."""
    try:
        job_fd = ctx.datasite.open_job_dir(ref)
    except OSError as exc:
        return f"the job folder cannot be read safely: {exc}", []
    try:
        listed: list[tuple[str, int]] = []
        _list_into(job_fd, "", 0, listed, [FILES_LISTED])
        try:
            hashes = file_set_hashes(Path("."), job_fd, Limits.from_config(ctx.config))
        except OSError:
            hashes = {}
        return None, [JobFile(rel, size, hashes.get(rel)) for rel, size in sorted(listed)]
    finally:
        os.close(job_fd)


def _code(ctx: Context, ref: JobRef) -> dict[str, Any]:
    from syft_bg_app.mail.code import read_submission

    return read_submission(ctx, ref)[1]


# ``jobs show`` lists at most this many entries of a folder (a job may hold many).
FILES_LISTED = 1000
# What a review folder holds that is no result of the job.
RESULT_SKIP = frozenset({"state.yaml", PERMISSION_FILE})
FOLDERS_DEEP = 32


def list_files(folder: Path, cap: int = FILES_LISTED) -> list[tuple[str, int]]:
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
