"""Decisions on jobs and peers, shared by the approve step, the CLI and the API.

Each decision writes the datasite (state.yaml, permission files), updates the
checkpoint, queues the events the notify step turns into emails, and appends
to the audit log.
"""

from __future__ import annotations

import errno
import os
import shlex
from pathlib import Path
from typing import Any

from syft_bg_app.approval import audit, snapshot
from syft_bg_app.clock import iso
from syft_bg_app.context import Context
from syft_bg_app.datasite import datasets as dataset_store
from syft_bg_app.datasite.jobfiles import Limits, file_set_hashes
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.datasite.linksafe import UnsafePathError, identity
from syft_bg_app.datasite.submission import read_metadata
from syft_bg_app.errors import NotFoundError, SyftBgError, UsageError
from syft_bg_app.job_transition import move_job


class DecisionError(SyftBgError):
    exit_code = 1


class WrongStateError(DecisionError):
    """An action the job's status does not allow: a usage error (exit 2), nothing changed."""

    exit_code = 2


def _job_record(ctx: Context, ref: JobRef) -> dict[str, Any]:
    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol)
    if record is None:
        raise WrongStateError(f"{ref.label} has not been received yet; run a pass first")
    return record


def next_step(ref: JobRef, record: dict[str, Any], action: str = "approve") -> str:
    """What the data owner can do with a job in its present status, having tried
    ``action`` (approve, reject, rerun) that the status does not allow."""
    quoted = shlex.quote(ref.label)
    status = record["status"]
    if status == "received":
        waiting = record.get("waiting_reason") or "not all of its files are there yet"
        return (
            f"it is still arriving ({waiting}); a later pass makes it pending (see: syft-bg status)"
        )
    if status == "pending":
        return f"approve or reject it: syft-bg jobs approve {quoted}"
    if status == "approved":
        return "it runs in the next pass (see: syft-bg status)"
    if status == "running":
        return f"wait for it to finish (see: syft-bg jobs show {quoted})"
    if status in ("done", "failed") and action == "reject":
        return f"it has run; see what it did: syft-bg jobs show {quoted}"
    if status in ("done", "failed"):
        return f"to run it again: syft-bg jobs rerun {quoted}"
    if status == "rejected":
        return (
            "a rejected job stays rejected (its data scientist was told): ask them to "
            "submit it again under a new job name, and approve that one"
        )
    return f"see: syft-bg jobs show {quoted}"


def wrong_state(ref: JobRef, record: dict[str, Any], action: str, allowed: str) -> WrongStateError:
    """The error for ``action`` on a job whose status does not allow it."""
    return WrongStateError(
        f"{ref.label} is {record['status']}; {allowed}. Next: {next_step(ref, record, action)}"
    )


class DatasetRefused(DecisionError):
    """A job declares a dataset its author may not read: approving it changes nothing."""

    exit_code = 2


class JobFolderChanged(DecisionError):
    """The job's folder is no longer the one received: a link now, or another folder."""


FOLDER_REPLACED = (
    "the job folder was replaced after it was received; a job is the folder it was "
    "received as (submit the new files as a new job)"
)


def open_received_job(ctx: Context, ref: JobRef, record: dict[str, Any]) -> int:
    """The job's folder, opened without links, checked to be the folder received.

    Raises ``JobFolderChanged`` (its message is safe to show the data
    scientist: no link target, no path of the owner's) when a folder on the
    way is a link, or the job folder's (device, inode) differs from the one
    recorded at receipt. A record from before folders were recorded takes the
    folder it finds now.
    """
    try:
        fd = ctx.datasite.open_job_dir(ref)
    except UnsafePathError as exc:
        if exc.errno == errno.ENOENT:
            raise DecisionError(f"{ref.label}: the job folder is gone") from None
        raise JobFolderChanged(f"the job folder cannot be read safely: {exc}") from None
    found = identity(fd)
    recorded = record.get("folder_id")
    if recorded is None:
        record["folder_id"] = found
    elif list(recorded) != found:
        os.close(fd)
        raise JobFolderChanged(FOLDER_REPLACED)
    return fd


def snapshot_current_files(ctx: Context, ref: JobRef, record: dict[str, Any]) -> dict[str, str]:
    """Snapshot the job's files as they are now (``jobs rerun --fresh-snapshot``).

    The folder is reached as ``open_received_job`` reaches it: never through a
    link, and not at all when it is no longer the folder received.
    """
    try:
        job_fd = open_received_job(ctx, ref, record)
    except DecisionError as exc:
        raise snapshot.SnapshotError(f"{ref.label}: {exc}") from None
    try:
        return snapshot.take(
            ctx.home.snapshots_dir,
            ref,
            ctx.datasite.submission_dir(ref),
            dir_fd=job_fd,
            limits=Limits.from_config(ctx.config),
        )
    finally:
        os.close(job_fd)


def reject_changed_folder(ctx: Context, ref: JobRef, reason: str) -> None:
    """Reject a job whose folder changed identity; it is never approved or run."""
    reject_job(ctx, ref, reason, method="folder check")


def approve_job(
    ctx: Context,
    ref: JobRef,
    method: str,
    reason: str | None = None,
    rule: str | None = None,
    hashes: dict[str, str] | None = None,
    by: str | None = None,
    details: dict[str, Any] | None = None,
    datasets: list[str] | None = None,
) -> None:
    """Approve a pending job; ``by`` is said in the emails ("by email reply"),
    ``details`` go to the audit log; ``datasets``: the declared datasets a rule
    was checked against (the job must still declare exactly those)."""
    record = _job_record(ctx, ref)
    if record["status"] != "pending":
        raise wrong_state(ref, record, "approve", "only pending jobs can be approved")
    try:
        job_fd = open_received_job(ctx, ref, record)
    except JobFolderChanged as exc:
        reject_changed_folder(ctx, ref, str(exc))
        raise DecisionError(f"cannot approve {ref.label}: {exc}; it was rejected") from None
    try:
        _approve_at(ctx, ref, record, job_fd, method, reason, rule, hashes, by, details, datasets)
    finally:
        os.close(job_fd)


def _approve_at(
    ctx: Context,
    ref: JobRef,
    record: dict[str, Any],
    job_fd: int,
    method: str,
    reason: str | None,
    rule: str | None,
    hashes: dict[str, str] | None,
    by: str | None = None,
    details: dict[str, Any] | None = None,
    checked_datasets: list[str] | None = None,
) -> None:
    folder = ctx.datasite.submission_dir(ref)
    limits = Limits.from_config(ctx.config)
    # The datasets it runs with are those declared when it is approved, not later.
    metadata, _ = read_metadata(Path("config.yaml"), dir_fd=job_fd)
    try:
        datasets = dataset_store.declared_datasets(metadata, ctx.datasite.email)
    except UsageError as exc:
        raise DecisionError(f"cannot approve {ref.label}: {exc}") from None
    if checked_datasets is not None and sorted(checked_datasets) != sorted(datasets):
        raise DecisionError(
            f"cannot approve {ref.label}: the datasets its config.yaml declares changed "
            f"while it was matched; it is looked at again"
        )
    # A person approves the datasets they were shown: those declared when it was received.
    received = record.get("received_datasets")
    if received is not None and sorted(received) != sorted(datasets):
        record["received_datasets"] = datasets
        ctx.state.save()
        raise DecisionError(
            f"cannot approve {ref.label}: the datasets its config.yaml declares changed "
            f"since it was received (was: {', '.join(received) or 'none'}; now: "
            f"{', '.join(datasets) or 'none'}); review it again (syft-bg jobs show "
            f"{shlex.quote(ref.label)}); approving again approves them as they are now"
        )
    refusal = dataset_store.DatasetAccess.of(ctx).refusal(
        ref.ds_email, datasets, record.get(dataset_store.WITHDRAWN_KEY)
    )
    if refusal is not None:
        raise DatasetRefused(f"cannot approve {ref.label}: {refusal.for_owner}")
    # A rule pins the hashes it matched; a person approves what they were shown,
    # the files as they were when the job was received.
    shown = record.get("received_hashes") if hashes is None else None
    # The snapshot is what will run; take it before anything says "approved".
    try:
        hashes = snapshot.take(
            ctx.home.snapshots_dir,
            ref,
            folder,
            expected=hashes or shown,
            dir_fd=job_fd,
            limits=limits,
        )
    except snapshot.SnapshotError as exc:
        if shown is None:
            raise DecisionError(f"cannot approve: {exc}") from None
        now_hashes = file_set_hashes(folder, job_fd, limits)
        changed = sorted(
            p for p in set(shown) | set(now_hashes) if shown.get(p) != now_hashes.get(p)
        )
        # Shown again from now on: approving once more approves the files as they are now.
        record["received_hashes"] = now_hashes
        ctx.state.save()
        raise DecisionError(
            f"cannot approve {ref.label}: its files changed since it was received "
            f"({', '.join(changed) or exc}); review them again (syft-bg jobs show "
            f"{shlex.quote(ref.label)}); approving again approves them as they are now"
        ) from None
    set_approved(
        ctx,
        ref,
        record,
        {"approval_method": method, "review_reason": reason},
        method=method,
        rule=rule,
        datasets=datasets,
    )
    ctx.counts["approved"] += 1
    ctx.log("approve").info(
        "approved %s (%s%s)", ref.label, method, f", rule {rule}" if rule else ""
    )
    ctx.state.add_event("job_approved", **ref.event_fields, method=method, rule=rule, by=by)
    audit.record(
        ctx.home.audit_log,
        ref.label,
        "approved",
        reason or (f"matched rule {rule}" if rule else "approved by the data owner"),
        **{
            "method": method,
            "rule": rule,
            "hashes": hashes or {},
            **({"datasets": datasets} if datasets else {}),
            **(details or {}),
        },
    )


def set_approved(
    ctx: Context, ref: JobRef, record: dict[str, Any], state: dict[str, Any], **fields: Any
) -> None:
    """Move the job to approved, by the data owner, now (``state``: more JobState fields)."""
    now = iso()
    move_job(
        ctx,
        ref,
        record,
        "approved",
        state={"approved_by": ctx.config.do_email, "approved_at": now, **state},
        approved_at=now,
        **fields,
    )


def reject_job(
    ctx: Context,
    ref: JobRef,
    reason: str | None,
    method: str = "manual",
    details: dict[str, Any] | None = None,
    by: str | None = None,
) -> None:
    """Reject a job; ``method`` is "manual", or "on receipt" for a job sync found invalid."""
    record = _job_record(ctx, ref)
    if record["status"] == "rejected":
        raise WrongStateError(f"{ref.label} is already rejected; nothing changed")
    if record["status"] not in ("pending", "received", "approved"):
        raise wrong_state(ref, record, "reject", "only jobs that have not started can be rejected")
    now = iso()
    state = {"rejected_by": ctx.config.do_email, "rejected_at": now, "review_reason": reason}
    if record["status"] == "received":
        state["received_at"] = now
    move_job(ctx, ref, record, "rejected", state=state, reason=reason)
    ctx.counts["rejected"] += 1
    ctx.log("sync" if method == "on receipt" else "approve").info(
        "rejected %s: %s", ref.label, reason
    )
    ctx.state.add_event("job_rejected", **ref.event_fields, reason=reason, by=by)
    why = reason or "rejected by the data owner (no reason given)"
    audit.record(
        ctx.home.audit_log, ref.label, "rejected", why, **{"method": method, **(details or {})}
    )


def peer_key(ctx: Context, email: str) -> str:
    """The checkpoint's spelling of ``email`` (folder names keep their case), or
    the address in lower case when nobody by that address is known yet."""
    wanted = email.strip().lower()
    for key in ctx.state.data["peers"]:
        if key.lower() == wanted:
            return key
    return wanted


def accept_peer(ctx: Context, email: str, method: str, why: str) -> None:
    record = ctx.state.peer(email) or {"requested_at": None}
    if record.get("status") == "accepted":
        return
    record.pop("before_block", None)
    record.pop("asked_again", None)
    ctx.datasite.ensure_peer_folders(email)
    ctx.datasite.write_peer_status(email, "accepted", None)
    record.update(status="accepted", decided_at=iso(), decided_by=method)
    record.pop("problem", None)
    ctx.state.set_peer(email, record)
    ctx.counts["peers_accepted"] += 1
    ctx.log("approve").info("accepted peer %s (%s)", email, why)
    ctx.state.add_event("peer_accepted", ds_email=email, method=method)
    audit.record(ctx.home.audit_log, email, "accepted", why, method=method)
    share_datasets(ctx, email)


def share_datasets(ctx: Context, email: str) -> None:
    """Datasets follow an accepted peer: those in approve.peers.auto_share_datasets,
    and those shared with ``any``."""
    auto_share = list(ctx.config.get("approve.peers.auto_share_datasets") or [])
    accepted = dataset_store.accepted_peers(ctx.state.data["peers"])
    try:
        problems = dataset_store.share_on_accept(
            ctx.home, ctx.datasite, email, accepted, auto_share
        )
    except (OSError, SyftBgError, ValueError) as exc:
        # The peer stays accepted; the next accept or `datasets share` writes them again.
        problems = [f"datasets were not shared with {email}: {exc}"]
    for problem in problems:
        ctx.log("approve").warning("%s", problem)


def reject_peer(ctx: Context, email: str, reason: str | None) -> None:
    record = ctx.state.peer(email)
    if record is None:
        raise NotFoundError(f"no peer request from {email} (see: syft-bg peers list)")
    if record["status"] == "accepted":
        raise WrongStateError(
            f"{email} is already an accepted peer; remove their inbox folder to revoke"
        )
    ctx.datasite.write_peer_status(email, "rejected", reason)
    record.update(status="rejected", decided_at=iso(), decided_by="manual", reason=reason)
    record.pop("before_block", None)
    record.pop("asked_again", None)
    ctx.state.set_peer(email, record)
    ctx.log("approve").info("rejected peer %s", email)
    audit.record(ctx.home.audit_log, email, "rejected", reason or "rejected by the data owner")


BLOCK_KEPT = ("status", "decided_at", "decided_by", "reason")


def _spellings(ctx: Context, email: str) -> list[str]:
    """``email`` and every other spelling of it the checkpoint knows (folder names keep case)."""
    lowered = email.lower()
    others = (k for k in ctx.state.data["peers"] if k != email and k.lower() == lowered)
    return [email, *sorted(others)]


def block_peer(ctx: Context, email: str, reason: str | None) -> bool:
    """Ignore ``email`` for good, under every spelling: no request is read, no job
    received or auto-approved.

    Their folders are left as they are; ``unblock_peer`` restores what was
    before. False when they were blocked already.
    """
    changed = [_block_one(ctx, key, reason) for key in _spellings(ctx, email)]
    return any(changed)


def _block_one(ctx: Context, email: str, reason: str | None) -> bool:
    record = ctx.state.peer(email)
    if record is not None and record["status"] == "blocked":
        return False
    before = {k: record[k] for k in BLOCK_KEPT if k in record} if record else None
    record = record or {"requested_at": None}
    record.update(
        status="blocked", decided_at=iso(), decided_by="manual", reason=reason, before_block=before
    )
    record.pop("asked_again", None)
    ctx.state.set_peer(email, record)
    ctx.state.data["held_jobs"].pop(email, None)
    ctx.log("approve").info("blocked %s", email)
    audit.record(ctx.home.audit_log, email, "blocked", reason or "blocked by the data owner")
    return True


def unblock_peer(ctx: Context, email: str) -> str:
    """Undo ``block_peer``; returns the status the data scientist has again."""
    record = ctx.state.peer(email)
    if record is None or record["status"] != "blocked":
        raise DecisionError(f"{email} is not blocked")
    peers = ctx.state.data["peers"]
    blocked = [k for k in _spellings(ctx, email) if peers[k]["status"] == "blocked"]
    return [_unblock_one(ctx, key) for key in blocked][0]


def _unblock_one(ctx: Context, email: str) -> str:
    record = ctx.state.peer(email)
    before = record.pop("before_block", None)
    if not before:
        # Never known before the block: forgotten, so a request on disk is read
        # afresh by the next pass.
        del ctx.state.data["peers"][email]
        waiting = ctx.state.data["peer_folders_waiting"]
        if email not in waiting:
            waiting.append(email)
        status = "unknown"
    else:
        for key in BLOCK_KEPT:
            record.pop(key, None)
        record.update(before)
        status = record["status"]
    ctx.log("approve").info("unblocked %s (%s again)", email, status)
    audit.record(ctx.home.audit_log, email, "unblocked", f"unblocked by the data owner: {status}")
    return status
