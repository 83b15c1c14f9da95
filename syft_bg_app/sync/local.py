"""Sync step: see what changed in the datasite since the last pass.

New job folders are received (``review/.../state.yaml`` written as pending), a
folder still arriving waits up to ``sync.incomplete_grace`` seconds before it is
rejected with a reason, status changes written by other tools (syft-job) and
finished jobs are noticed, and peer requests are read.

The work follows what changed: a data scientist's inbox folder is listed only
when its modification time moved; only jobs that are not finished are looked at
again; finished history is never re-read.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from syft_bg_app.approval.decisions import FOLDER_REPLACED, reject_job
from syft_bg_app.clock import iso, parse_iso, utcnow
from syft_bg_app.context import Context
from syft_bg_app.datasite.datasets import declared_datasets
from syft_bg_app.datasite.jobfiles import Limits, file_set_hashes
from syft_bg_app.datasite.layout import JobRef, JobStateError
from syft_bg_app.datasite.linksafe import UnsafePathError, identity
from syft_bg_app.datasite.submission import check_submission, read_metadata
from syft_bg_app.errors import UsageError
from syft_bg_app.job_transition import move_job
from syft_bg_app.steps.isolation import StepItems, raise_failures
from syft_bg_app.store.fsutil import load_untrusted_yaml, short_repr, untrusted_text

# A directory modified this recently may change again within the same clock
# tick; its listing is not trusted as a cache key until it is older.
RACY_SECONDS = 2.0
PEER_MESSAGE_CAP = 2000


def run(ctx: Context) -> None:
    ctx.datasite.inbox.mkdir(parents=True, exist_ok=True)
    if ctx.state.is_fresh:
        _record_history(ctx)
    log = ctx.log("sync")
    jobs = StepItems(log, "job", "failed to sync")
    requests = StepItems(log, "peer request", "could not be read")
    for ds_email in ctx.datasite.list_ds_emails():
        _note_known_peer(ctx, ds_email)
        if _held_until_accepted(ctx, ds_email):
            continue
        looks = [_look_inbox(ctx, folder) for _, folder in ctx.datasite.job_folders(ds_email)]
        if not any(changed for _, changed, _ in looks):
            continue
        synced = [jobs.run(ref.label, _sync_job, ctx, ref) for ref in _unknown_jobs(ctx, ds_email)]
        if all(synced):
            # Remembered only once every new folder was handled, so a pass that
            # fails half-way lists this folder again next time.
            for folder, _, mtime_ns in looks:
                ctx.state.data["scan"][folder] = mtime_ns
    for ds_email, job_name, record in ctx.state.active_jobs():
        ref = JobRef(ds_email, job_name, record["protocol"])
        jobs.run(ref.label, _sync_job, ctx, ref)
    _read_peer_requests(ctx, requests)
    raise_failures(jobs, requests)


def _sync_job(ctx: Context, ref: JobRef) -> None:
    """Receive a new job, or follow one this app knows."""
    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol)
    if record is None or record["status"] == "received":
        _receive(ctx, ref)
    else:
        _follow(ctx, ref, record)


def _record_history(ctx: Context) -> None:
    """First pass on a datasite: remember what already happened, without events.

    The checkpoint is saved before anything new is received, so a first pass
    killed half-way never makes the next one mistake new jobs for history.
    """
    for ds_email in ctx.datasite.list_ds_emails():
        # A decision taken before the first pass (peers block) stands.
        if ctx.state.peer(ds_email) is None and ctx.datasite.peer_has_inbox(ds_email):
            ctx.state.set_peer(
                ds_email, {"status": "accepted", "requested_at": None, "decided_by": "before"}
            )
        for ref in ctx.datasite.list_job_names(ds_email):
            try:
                on_disk = ctx.datasite.read_job_state(ref)
            except JobStateError:
                continue
            if on_disk is not None and on_disk["status"] != "received":
                _remember(ctx, ref, on_disk["status"], None)
    ctx.state.data["baseline_done"] = True
    ctx.state.save()


def _look_inbox(ctx: Context, folder: os.PathLike) -> tuple[str, bool, int | None]:
    """``_look`` at a folder a data scientist controls: reached without following links.

    A folder that is a symlink (or sits under one) counts as absent: what it
    points at is never listed as this data scientist's jobs.
    """
    st = ctx.datasite.stat_folder(Path(folder))
    return _compare_mtime(ctx, os.fspath(folder), st.st_mtime_ns if st else None)


def _look(ctx: Context, folder: os.PathLike) -> tuple[str, bool, int | None]:
    """(key, changed since last remembered, mtime to remember once handled)."""
    try:
        mtime_ns = os.stat(folder).st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        mtime_ns = None
    return _compare_mtime(ctx, os.fspath(folder), mtime_ns)


def _compare_mtime(ctx: Context, key: str, mtime_ns: int | None) -> tuple[str, bool, int | None]:
    """A folder modified within RACY_SECONDS may change again in the same clock
    tick; its mtime is not trusted as a cache key (None) until it is older.
    ``mtime_ns`` None: the folder is absent.
    """
    if mtime_ns is None:
        ctx.state.data["scan"].pop(key, None)
        return key, False, None
    if ctx.state.data["scan"].get(key) == mtime_ns:
        return key, False, mtime_ns
    racy = time.time() - mtime_ns / 1e9 < RACY_SECONDS
    return key, True, None if racy else mtime_ns


def _unknown_jobs(ctx: Context, ds_email: str) -> list[JobRef]:
    refs = ctx.datasite.list_job_names(ds_email)
    return sorted(
        ref for ref in refs if ctx.state.job(ref.ds_email, ref.name, ref.protocol) is None
    )


def _receive(ctx: Context, ref: JobRef) -> None:
    if _held_until_accepted(ctx, ref.ds_email):
        return
    log = ctx.log("sync")
    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol)
    try:
        on_disk = ctx.datasite.read_job_state(ref)
    except JobStateError as exc:
        log.warning("%s: %s", ref.label, exc)
        on_disk = None
    if on_disk is not None and on_disk["status"] != "received":
        # Received already (by another tool, or by a pass that died before saving).
        if record is None and not ctx.state.is_fresh:
            ctx.state.add_event("job_submitted", **ref.event_fields)
            if on_disk["status"] != "pending":
                _status_event(ctx, ref, on_disk["status"], on_disk)
        extra: dict[str, Any] = {}
        if record is None and on_disk["status"] == "pending":
            extra.update(_received_as(ctx, ref))
        _remember(ctx, ref, on_disk["status"], record, **extra)
        return
    try:
        job_fd = ctx.datasite.open_job_dir(ref)
    except UnsafePathError as exc:
        if exc.errno == errno.ENOENT:
            return  # gone (or not there yet): nothing to receive
        # A link where a job folder belongs: never looked through. The reason
        # names only the data scientist's own folders, never the link's target.
        _reject_on_receipt(ctx, ref, record, f"the job folder cannot be read safely: {exc}")
        return
    try:
        if record and record.get("folder_id") not in (None, identity(job_fd)):
            _reject_on_receipt(ctx, ref, record, FOLDER_REPLACED)
            return
        _receive_at(ctx, ref, record, job_fd)
    finally:
        os.close(job_fd)


def _received_as(ctx: Context, ref: JobRef) -> dict[str, Any]:
    """What a pending job received by another tool is: its file hashes and folder."""
    try:
        job_fd = ctx.datasite.open_job_dir(ref)
    except UnsafePathError:
        return {"received_hashes": {}}  # the approve step rejects it with the reason
    try:
        hashes = file_set_hashes(
            ctx.datasite.submission_dir(ref), job_fd, Limits.from_config(ctx.config)
        )
        return {
            "received_hashes": hashes,
            "folder_id": identity(job_fd),
            **_received_datasets(ctx, job_fd),
        }
    finally:
        os.close(job_fd)


def _received_datasets(ctx: Context, job_fd: int) -> dict[str, Any]:
    """The datasets the job declares as received (what the owner is shown), if readable."""
    metadata, _ = read_metadata(Path("config.yaml"), dir_fd=job_fd)
    try:
        return {"received_datasets": declared_datasets(metadata, ctx.datasite.email)}
    except UsageError:
        # Shown as unreadable, so none were shown: datasets it names later are refused
        # once, to be reviewed, as for any list changed since it was received.
        return {"received_datasets": []}


def _reject_on_receipt(ctx: Context, ref: JobRef, record: dict | None, reason: str) -> None:
    record = record or _remember(ctx, ref, "received", None)
    reject_job(ctx, ref, reason, method="on receipt")


def _receive_at(ctx: Context, ref: JobRef, record: dict | None, job_fd: int) -> None:
    log = ctx.log("sync")
    folder = ctx.datasite.submission_dir(ref)
    check = check_submission(
        folder,
        ctx.config.get("sync.max_job_mb") * 1_000_000,
        dir_fd=job_fd,
        limits=Limits.from_config(ctx.config),
    )
    now = utcnow()
    if check.complete:
        _mark_pending(ctx, ref, record, folder, job_fd, now)
        return
    # A folder still arriving is remembered as the folder it is, like a received one.
    record = record or _remember(
        ctx, ref, "received", None, waiting_since=iso(now), folder_id=identity(job_fd)
    )
    waited = (now - parse_iso(record["waiting_since"])).total_seconds()
    grace = ctx.config.get("sync.incomplete_grace")
    if check.only_listed_files_absent and waited >= grace:
        # Sync clients never deliver empty files, and syft-job lists every file
        # (an empty __init__.py): the job is received as it is, without them.
        _mark_pending(ctx, ref, record, folder, job_fd, now, never_arrived=check.not_arrived)
        return
    if check.invalid or waited >= grace:
        reason = check.reason()
        if not check.invalid:
            reason = f"incomplete after {int(waited)} seconds: {reason}"
        reject_job(ctx, ref, reason, method="on receipt")
        return
    if record.get("waiting_reason") != check.reason():
        log.info("%s is still arriving: %s", ref.label, check.reason())
        record["waiting_reason"] = check.reason()


def _mark_pending(
    ctx: Context,
    ref: JobRef,
    record: dict | None,
    folder: Path,
    job_fd: int,
    now: datetime,
    never_arrived: list[str] | None = None,
) -> None:
    """A complete job (or one that only lacks files its config.yaml lists) is pending."""
    received_at = iso(now)
    # What the data owner is shown; a manual approval must approve these bytes.
    hashes = file_set_hashes(folder, job_fd, Limits.from_config(ctx.config))
    # The folder this job is: a later pass that finds another folder (or a
    # link) at this name rejects the job rather than approve what it finds.
    extra: dict[str, Any] = {
        "received_at": received_at,
        "received_hashes": hashes,
        "folder_id": identity(job_fd),
        **_received_datasets(ctx, job_fd),
    }
    if never_arrived:
        extra["never_arrived"] = never_arrived
    _remember(ctx, ref, "pending", record, state={"received_at": received_at}, **extra)
    ctx.counts["received"] += 1
    if never_arrived:
        ctx.log("sync").info(
            "received %s without %s, which its config.yaml lists (never delivered: empty?)",
            ref.label,
            ", ".join(never_arrived),
        )
    else:
        ctx.log("sync").info("received %s", ref.label)
    ctx.state.add_event("job_submitted", **ref.event_fields)


def _remember(
    ctx: Context,
    ref: JobRef,
    status: str,
    record: dict | None,
    state: dict[str, Any] | None = None,
    **extra: Any,
) -> dict:
    """Record the job at ``status`` (a new record, or its own moved there); ``state``:
    the JobState fields to write with it, None when state.yaml says so already."""
    record = {} if record is None else record
    record = move_job(ctx, ref, record, status, state, protocol=ref.protocol, **extra)
    record.setdefault("seen_at", iso())
    ctx.state.set_job(ref.ds_email, ref.name, record, ref.protocol)
    return record


def _follow(ctx: Context, ref: JobRef, record: dict) -> None:
    """Notice a status written by another tool (or by a run that finished)."""
    try:
        mtime_ns = os.stat(ctx.datasite.state_file_str(ref)).st_mtime_ns
    except FileNotFoundError:
        return
    if record.get("state_mtime_ns") == mtime_ns:
        return
    try:
        on_disk = ctx.datasite.read_job_state(ref)
    except JobStateError as exc:
        ctx.log("sync").warning("%s: %s", ref.label, exc)
        return
    record["state_mtime_ns"] = mtime_ns
    if on_disk is None or on_disk["status"] == record["status"]:
        return
    ctx.log("sync").info(
        "%s changed from %s to %s outside this app",
        ref.label,
        record["status"],
        on_disk["status"],
    )
    move_job(ctx, ref, record, on_disk["status"])
    _status_event(ctx, ref, on_disk["status"], on_disk)


def _status_event(ctx: Context, ref: JobRef, status: str, on_disk: dict) -> None:
    fields = {**ref.event_fields, "by": "another tool"}
    if status == "approved":
        ctx.state.add_event(
            "job_approved", method=on_disk.get("approval_method") or "manual", **fields
        )
    elif status == "rejected":
        ctx.state.add_event("job_rejected", reason=on_disk.get("review_reason"), **fields)
    elif status in ("done", "failed"):
        ctx.counts["finished"] += 1
        ctx.state.add_event(
            "job_finished",
            status=status,
            return_code=on_disk.get("return_code"),
            **fields,
        )


# -- peers ---------------------------------------------------------------------

WAITING_FOR_ACCEPTANCE = "waiting for peer acceptance"


def _held_until_accepted(ctx: Context, ds_email: str) -> bool:
    """True when ``ds_email`` is not an accepted peer: their jobs are not received.

    The jobs stay in the inbox, counted in ``held_jobs`` (shown by ``peers list``
    and ``status``); the first pass after the peer is accepted receives them as
    usual. A blocked data scientist's folder is not even listed.
    """
    record = ctx.state.peer(ds_email)
    status = record["status"] if record else None
    held = ctx.state.data["held_jobs"]
    if status == "accepted":
        if held.pop(ds_email, None):
            ctx.log("sync").info(
                "%s is an accepted peer now: receiving their jobs", short_repr(ds_email)
            )
        return False
    if is_blocked(ctx, ds_email):
        held.pop(ds_email, None)
        return True
    count = len(ctx.datasite.list_job_names(ds_email))
    entry = held.get(ds_email)
    if count and (entry is None or entry["jobs"] != count):
        # The folder name is someone else's text: quoted, it cannot forge log lines.
        ctx.log("sync").info(
            "%d job(s) of %s wait until they are an accepted peer (syft-bg peers accept)",
            count,
            short_repr(ds_email),
        )
        since = entry["since"] if entry else iso()
        held[ds_email] = {"reason": WAITING_FOR_ACCEPTANCE, "jobs": count, "since": since}
    elif not count:
        held.pop(ds_email, None)
    return True


def is_blocked(ctx: Context, email: str) -> bool:
    """Blocked under any spelling of the address (folder names keep their case).

    ``peers block`` blocks every spelling the checkpoint knows, so a known
    address answers from its own record; only a new one is compared with all.
    """
    record = ctx.state.peer(email)
    if record is not None:
        return record["status"] == "blocked"
    lowered = email.lower()
    return any(
        record["status"] == "blocked" and key.lower() == lowered
        for key, record in ctx.state.data["peers"].items()
    )


def _note_known_peer(ctx: Context, ds_email: str) -> None:
    """An inbox folder with its permission file means the peer was accepted.

    SyftBox lets only the datasite's owner write permission files, so this is
    how acceptance by another tool (syft-job's ``setup_ds_job_folder_as_do``)
    is noticed. It never overrides a decision of
    this app: a rejected or blocked data scientist stays so until the data owner
    says otherwise (``syft-bg peers accept``).
    """
    record = ctx.state.peer(ds_email)
    if record and record["status"] in ("accepted", "rejected", "blocked"):
        return
    if is_blocked(ctx, ds_email) or not ctx.datasite.peer_has_inbox(ds_email):
        return
    was_requested = record is not None and record["status"] == "requested"
    record = record or {"requested_at": None}
    record.update(status="accepted", decided_at=iso(), decided_by="another tool")
    ctx.state.set_peer(ds_email, record)
    if was_requested:
        ctx.state.add_event("peer_accepted", ds_email=ds_email)


def _read_peer_requests(ctx: Context, requests: StepItems) -> None:
    peers_dir = ctx.datasite.peers
    if not peers_dir.is_dir():
        return
    key, changed, mtime_ns = _look(ctx, peers_dir)
    if changed:
        folders = {e.name for e in os.scandir(peers_dir) if e.is_dir(follow_symlinks=False)}
    else:
        # Unchanged folder list: look again only at requests known or still arriving.
        peers = ctx.state.data["peers"]
        folders = {e for e, r in peers.items() if r.get("request_mtime_ns")}
        folders |= set(ctx.state.data["peer_folders_waiting"])
    arrived = set()
    failures_before = requests.failed_count
    for email in sorted(folders):
        if requests.call(f"peer request {email}", _read_one_request, ctx, email):
            arrived.add(email)
    ctx.state.data["peer_folders_waiting"] = sorted(folders - arrived)
    if changed and requests.failed_count == failures_before:
        ctx.state.data["scan"][key] = mtime_ns


def _read_one_request(ctx: Context, folder_name: str) -> bool:
    """Read peers/<email>/request.yaml if new or changed; False while it has not arrived.

    One request, one ``peer_requested`` event (one email each way), however
    often the file is rewritten: while a request waits for the data owner, or
    after it was accepted, a rewrite changes nothing. After a rejection a newer
    request counts only once ``approve.peers.rerequest_after_days`` have passed
    since the rejection; a blocked data scientist is ignored for good.
    """
    try:
        # peers/<ds> and request.yaml are the data scientist's: a link is never
        # followed (to another's request or the owner's files); it counts as absent.
        fd = ctx.datasite.open_peer_request(folder_name)
    except UnsafePathError:
        return False
    mtime_ns = os.fstat(fd).st_mtime_ns
    record = ctx.state.peer(folder_name)
    if is_blocked(ctx, folder_name):
        os.close(fd)
        if record:
            record["request_mtime_ns"] = mtime_ns
        return True
    if (
        record
        and record.get("request_mtime_ns") == mtime_ns
        and not (record.get("asked_again") and _cool_down_over(ctx, record))
    ):
        os.close(fd)
        return True
    log = ctx.log("sync")
    request, problem = _parse_request(fd, folder_name)
    if problem:
        if not record or record.get("problem") != problem:
            log.warning("peer request %s: %s", folder_name, problem)
        record = record or {"status": "invalid"}
        record.update(problem=problem, request_mtime_ns=mtime_ns)
        ctx.state.set_peer(folder_name, record)
        return True
    if record and record["status"] in ("accepted", "requested"):
        # Accepted already, or asked already: the data owner was told once.
        record["request_mtime_ns"] = mtime_ns
        record.pop("problem", None)
        return True
    rejected = record is not None and record["status"] == "rejected"
    if rejected and not _asks_again(ctx, folder_name, record, request):
        record["request_mtime_ns"] = mtime_ns
        return True
    number = (record or {}).get("request_number", 0) + 1
    new_record = {
        "status": "requested",
        "requested_at": request["requested_at"],
        "message": request.get("message"),
        "request_mtime_ns": mtime_ns,
        "seen_at": iso(),
        "request_number": number,
    }
    ctx.state.set_peer(folder_name, new_record)
    ctx.counts["peer_requests"] += 1
    log.info("peer request from %s", folder_name)
    ctx.state.add_event("peer_requested", ds_email=folder_name, request=number)
    return True


def _rerequest_after(ctx: Context) -> timedelta:
    return timedelta(days=ctx.config.get("approve.peers.rerequest_after_days"))


def _cool_down_over(ctx: Context, record: dict) -> bool:
    decided_at = record.get("decided_at")
    return not decided_at or utcnow() >= parse_iso(decided_at) + _rerequest_after(ctx)


def _asks_again(ctx: Context, email: str, record: dict, request: dict) -> bool:
    """Whether a valid request from a rejected data scientist is a new one to consider.

    It must be dated after the rejection (an older date is the request already
    turned down) and arrive after the cool-down; one that came too early is
    remembered and considered on the first pass after the cool-down.
    """
    decided_at = record.get("decided_at")
    if decided_at and parse_iso(request["requested_at"]) <= parse_iso(decided_at):
        record.pop("asked_again", None)
        return False
    if _cool_down_over(ctx, record):
        record.pop("asked_again", None)
        return True
    if not record.get("asked_again"):
        record["asked_again"] = True
        until = parse_iso(decided_at) + _rerequest_after(ctx)
        ctx.log("sync").info(
            "peer request from %s ignored until %s (rejected %s; approve.peers."
            "rerequest_after_days)",
            short_repr(email),
            iso(until),
            decided_at,
        )
    return False


def _parse_request(fd: int, folder_name: str) -> tuple[dict, str | None]:
    """Parse request.yaml from ``fd`` (opened without following links; closed here)."""
    try:
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return {}, "request.yaml is not a regular file"
            data = load_untrusted_yaml(handle.read(64 * 1024).decode("utf-8"))
    except OSError as exc:
        return {}, f"request.yaml cannot be read ({exc.strerror})"
    except (UnicodeDecodeError, yaml.YAMLError):
        return {}, "request.yaml is not valid YAML text"
    if not isinstance(data, dict):
        return {}, "request.yaml must be a mapping with email and requested_at"
    email = data.get("email")
    email = email.strip() if isinstance(email, str) else ""
    if email.lower() != folder_name.lower():
        return (
            {},
            f"request.yaml email {short_repr(data.get('email'))} does not match its folder "
            f"{short_repr(folder_name)}",
        )
    requested_at = data.get("requested_at")
    try:
        if isinstance(requested_at, datetime):
            requested = parse_iso(requested_at.isoformat())
        else:
            requested = parse_iso(str(requested_at))
    except ValueError:
        return {}, f"requested_at {short_repr(requested_at)} is not an ISO 8601 time"
    message = data.get("message")
    if message is not None:
        message = untrusted_text(message, PEER_MESSAGE_CAP, multiline=True)
    return {"requested_at": iso(requested), "message": message}, None
