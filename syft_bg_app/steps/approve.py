"""Approve step: accept peers and approve jobs that match the data owner's rules.

Peers are accepted only by ``approve.peers`` (a job rule never accepts one).
A pending job is approved when an applicable rule has exactly its file set and
every pinned hash; the approval snapshots the very bytes that were hashed
(``decisions.approve_job`` with the match-time hashes), so what runs is what
matched. A job that matches nothing stays pending, silently for the data
scientist; the audit log says why, once per job content.

Work follows change: each pending job's record keeps a key of its file stats,
the live rules and the peer's status. While that key holds, the job is not
looked at again; hashes are cached per file stat, so an edited job re-hashes
only what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from syft_bg_app.approval.decisions import (
    DecisionError,
    JobFolderChanged,
    accept_peer,
    approve_job,
    open_received_job,
    reject_changed_folder,
    reject_job,
)
from syft_bg_app.approval.rules import RuleIndex, load_rules, match, peer_auto_accept_reason
from syft_bg_app.clock import iso
from syft_bg_app.context import Context
from syft_bg_app.datasite import datasets as dataset_store
from syft_bg_app.datasite.jobfiles import Limits, UnsafeFileError, collect, sha256_stream
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.datasite.linksafe import FILE_FLAGS, open_file_at
from syft_bg_app.datasite.submission import read_metadata
from syft_bg_app.errors import UsageError
from syft_bg_app.mail.replies import read_replies
from syft_bg_app.steps.isolation import StepItems, raise_failures
from syft_bg_app.store.fsutil import append_line

# A file modified this recently may change again within one timestamp tick, so
# its hash is not cached by stat (the snapshot re-checks every byte anyway).
RACY_SECONDS = 2.0
AUDIT_WHY_CAP = 2000


def run(ctx: Context) -> None:
    _note_config_warnings(ctx)
    replies_failed = read_replies(ctx)
    notes = _AuditNotes(ctx)
    log = ctx.log("approve")
    peers = StepItems(log, "peer request", "could not be decided")
    jobs = StepItems(log, "pending job", "could not be matched")
    try:
        _peers(ctx, notes, peers)
        _jobs(ctx, notes, jobs)
    finally:
        notes.flush()
    raise_failures(peers, jobs)
    if replies_failed is not None:
        raise replies_failed


class _AuditNotes:
    """ "Left pending" lines, written with one append and one fsync per pass.

    Decisions (approved, accepted) are written at once by ``decisions``; these
    notes only explain why nothing happened, and a pass over a thousand waiting
    jobs should not pay a thousand fsyncs for them.
    """

    def __init__(self, ctx: Context) -> None:
        self.path = ctx.home.audit_log
        self.lines: list[str] = []

    def add(self, subject: str, decision: str, why: str, **details: Any) -> None:
        entry = {"at": iso(), "subject": subject, "decision": decision, "why": why, **details}
        self.lines.append(json.dumps(entry, sort_keys=True))

    def flush(self) -> None:
        if self.lines:
            append_line(self.path, "\n".join(self.lines))
            self.lines = []


# -- peers ---------------------------------------------------------------------


def _peers(ctx: Context, notes: _AuditNotes, items: StepItems) -> None:
    approved = ctx.config.get("approve.peers")
    for email, record in sorted(ctx.state.data["peers"].items()):
        if record["status"] == "requested":
            items.run(email, _peer, ctx, email, record, approved, notes)


def _peer(
    ctx: Context, email: str, record: dict, approved: dict[str, Any], notes: _AuditNotes
) -> None:
    ok, why = peer_auto_accept_reason(
        email, approved["approved_domains"], approved["approved_emails"]
    )
    if ok:
        accept_peer(ctx, email, "auto", why)
        return
    # Said once per request (and again only if the reason changes).
    if record.get("auto_note") != why:
        record["auto_note"] = why
        notes.add(email, "left for the data owner", why, method="auto")
        ctx.log("approve").info("peer request %s left for the data owner: %s", email, why)


# -- jobs ----------------------------------------------------------------------


def _jobs(ctx: Context, notes: _AuditNotes, items: StepItems) -> None:
    index = RuleIndex(load_rules(ctx.config))
    peers = ctx.state.data["peers"]
    datasets = dataset_store.DatasetAccess.of(ctx)
    pending = [
        (ds, name, record)
        for ds, name, record in ctx.state.iter_jobs()
        if record["status"] == "pending"
    ]
    for ds_email, name, record in sorted(pending, key=lambda j: (j[0], j[1])):
        accepted = (peers.get(ds_email) or {}).get("status") == "accepted"
        ref = JobRef(ds_email, name, record["protocol"])
        items.run(ref.label, _job, ctx, ref, record, index, accepted, notes, datasets)


def _stat_sig(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def hash_scanned_file(root: Path | int, rel: str, scanned: os.stat_result) -> str:
    """``sha256:`` of the very file ``collect`` saw at ``root/rel``.

    ``root`` is the job folder's path or (from the approve step) its open
    descriptor. The opened file must be the inode the scan found, a
    single-linked regular file, and no folder on its way may be a link, so a
    symlink or a folder swapped in since the scan is refused rather than followed.
    """
    if isinstance(root, int):
        fd = open_file_at(root, rel)
    else:
        fd = os.open(os.path.join(root, rel), FILE_FLAGS)
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if (
            (st.st_ino, st.st_dev) != (scanned.st_ino, scanned.st_dev)
            or not stat.S_ISREG(st.st_mode)
            or st.st_nlink != 1
        ):
            raise UnsafeFileError(f"{rel} changed into something else while it was matched")
        return sha256_stream(handle)


def _racy(sig: list[int], now: float) -> bool:
    # ctime too: setting mtime back (touch -d) still moves ctime to now.
    return now - max(sig[1], sig[2]) / 1e9 < RACY_SECONDS


def _job(
    ctx: Context,
    ref: JobRef,
    record: dict,
    index: RuleIndex,
    accepted: bool,
    notes: _AuditNotes,
    datasets: dataset_store.DatasetAccess,
) -> None:
    try:
        job_fd = open_received_job(ctx, ref, record)
    except JobFolderChanged as exc:
        reject_changed_folder(ctx, ref, str(exc))
        return
    except DecisionError as exc:
        # The folder is gone (withdrawn, or a sync client in the middle of a
        # move): nothing to match; said once, looked at again each pass.
        note = f"gone: {exc}"
        if record.get("auto_note") != note:
            record["auto_note"] = note
            ctx.log("approve").info("%s left pending: %s", ref.label, exc)
        return
    try:
        _job_at(ctx, ref, record, index, accepted, notes, job_fd, datasets)
    except (OSError, DecisionError) as exc:
        # A folder that changes under the scan (or is gone) is looked at again next pass.
        ctx.log("approve").warning("%s: not matched this pass: %s", ref.label, exc)
    finally:
        os.close(job_fd)


def _job_at(
    ctx: Context,
    ref: JobRef,
    record: dict,
    index: RuleIndex,
    accepted: bool,
    notes: _AuditNotes,
    job_fd: int,
    datasets: dataset_store.DatasetAccess,
) -> None:
    folder = ctx.datasite.submission_dir(ref)
    found = collect(folder, Limits.from_config(ctx.config), dir_fd=job_fd)
    if found.over_limit:
        # Grown past a limit since it was received: it can never be approved
        # (the listing stops at the limit), so the data scientist is told why.
        reject_job(ctx, ref, found.over_limit, method="limits")
        return
    sigs = {rel: _stat_sig(st) for rel, st in found.files.items()}
    declared = _declared_datasets(ctx, job_fd)
    # Before the cache below: a dataset deleted or unshared since changes nothing it keys on.
    if not isinstance(declared, str) and _refused_datasets(
        ctx, notes, ref, record, declared, datasets
    ):
        return
    key_source = [sorted(sigs.items()), found.problems, index.fingerprint, accepted, declared]
    key = hashlib.sha256(repr(key_source).encode()).hexdigest()[:24]
    cache: dict[str, Any] = record.get("auto") or {}
    if cache.get("key") == key:
        return
    old_hashes: dict[str, list] = cache.get("hashes") or {}
    now = time.time()
    fresh: dict[str, list] = {}

    def hash_of(rel: str) -> str:
        sig = sigs[rel]
        cached = old_hashes.get(rel)
        if cached and cached[:-1] == sig:
            digest = cached[-1]
        else:
            digest = hash_scanned_file(job_fd, rel, found.files[rel])
        if not _racy(sig, now):
            fresh[rel] = [*sig, digest]
        return digest

    result = match(found.paths, found.problems, ref.ds_email, accepted, index, hash_of)
    stable = not any(_racy(sig, now) for sig in sigs.values())
    if result.rule is not None and isinstance(declared, str):
        result.why = f"its config.yaml cannot be read for datasets: {declared}"
        result.rule = None
    elif result.rule is not None and result.rule.datasets_refused(declared):
        refused = ", ".join(result.rule.datasets_refused(declared))
        result.why = (
            f"its files match rule {result.rule.name}, but the job reads datasets the "
            f"rule does not allow: {refused} (add them to the rule's datasets to allow them)"
        )
        result.rule = None
    if result.rule is not None:
        rule = result.rule
        try:
            approve_job(ctx, ref, "auto", rule=rule.name, hashes=result.hashes, datasets=declared)
        except DecisionError as exc:
            if record["status"] != "pending":
                return  # rejected: its folder was replaced while it was matched
            # The bytes changed between hashing and snapshotting: look again next pass.
            record["auto"] = {"hashes": fresh}
            _left_pending(ctx, notes, ref, record, f"not approved: {exc}", result, key=None)
        return
    record["auto"] = {"key": key if stable else None, "hashes": fresh}
    _left_pending(ctx, notes, ref, record, result.why, result, key=key)


def _refused_datasets(
    ctx: Context,
    notes: _AuditNotes,
    ref: JobRef,
    record: dict,
    declared: list[str],
    datasets: dataset_store.DatasetAccess,
) -> bool:
    """Whether a dataset the job declares keeps it from being approved: rejected when it
    can never read it (none by that name, or not shared with its author), left pending
    while the data owner's record of it is damaged."""
    refusal = datasets.refusal(ref.ds_email, declared, record.get(dataset_store.WITHDRAWN_KEY))
    if refusal is None:
        record.pop(dataset_store.WITHDRAWN_KEY, None)  # created or shared again since
        return False
    if refusal.final:
        reject_job(ctx, ref, refusal.for_scientist, method="datasets", details=refusal.details)
        return True
    if record.get("auto_note") != refusal.problem:
        record["auto_note"] = refusal.problem
        ctx.log("approve").warning("%s left pending: %s", ref.label, refusal.for_owner)
        notes.add(ref.label, "left pending", refusal.problem, method="auto", **refusal.details)
    return True


def _declared_datasets(ctx: Context, job_fd: int) -> list[str] | str:
    """The datasets the job's config.yaml declares, or why they cannot be read."""
    metadata, _ = read_metadata(Path("config.yaml"), dir_fd=job_fd)
    try:
        return dataset_store.declared_datasets(metadata, ctx.datasite.email)
    except UsageError as exc:
        return str(exc)


def _left_pending(
    ctx: Context,
    notes: _AuditNotes,
    ref: JobRef,
    record: dict,
    why: str,
    result: Any,
    key: str | None,
) -> None:
    """Audit "left pending" once per (job content, reason), never to the DS."""
    content = result.hashes or key or ""
    note = hashlib.sha256(repr([content, why]).encode()).hexdigest()[:24]
    if record.get("auto_note") == note:
        return
    record["auto_note"] = note
    details: dict[str, Any] = {"method": "auto"}
    if result.candidates:
        details["rules"] = result.candidates
    if result.hashes:
        details["hashes"] = result.hashes
    notes.add(ref.label, "left pending", why[:AUDIT_WHY_CAP], **details)
    ctx.log("approve").info("%s left pending: %s", ref.label, why)


def _note_config_warnings(ctx: Context) -> None:
    """Log config warnings (migrated legacy forms, inert rules) when they change."""
    warnings = list(ctx.config.warnings)
    seen = ctx.state.data["warnings"]
    if seen.get("config") == warnings:
        return
    seen["config"] = warnings
    for warning in warnings:
        ctx.log("approve").warning("%s", warning)
