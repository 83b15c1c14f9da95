"""Starting approved jobs: claim them, prepare their run folders, hand them to the backend.

No job is started twice on its own: every claimed job is marked running (in
state.yaml and in one checkpoint save) before any supervisor starts, so a
pass killed from there on leaves records the next pass reaps, never approved
jobs it would start again. A full disk is the machine's state, not the job's:
jobs that meet one go back to approved and wait for space.
"""

from __future__ import annotations

import os
import secrets
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syft_bg_app.approval import snapshot
from syft_bg_app.clock import iso, utcnow
from syft_bg_app.context import Context
from syft_bg_app.datasite.datasets import job_datasets
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.datasite.linksafe import remove_tree
from syft_bg_app.errors import SyftBgError
from syft_bg_app.execution import prepare, sandbox
from syft_bg_app.execution.backends import RunBackend
from syft_bg_app.execution.publish import (
    NO_EXIT_STATUS,
    clear_results,
    error_words,
    finish,
    log_limit,
    out_of_space,
    publish_note,
    write_permissions,
)
from syft_bg_app.execution.sandbox import RunLayout
from syft_bg_app.execution.supervisor import free_bytes
from syft_bg_app.job_transition import move_job
from syft_bg_app.steps.isolation import StepItems
from syft_bg_app.store.fsutil import atomic_write_json


@dataclass
class Run:
    """A claimed job with its prepared run folder."""

    ref: JobRef
    record: dict[str, Any]
    layout: RunLayout


def start_approved(ctx: Context, backend: RunBackend, items: StepItems) -> None:
    """Start approved jobs, oldest approval first, up to execute.max_concurrent.

    A job that cannot start for a reason of its own is failed with the reason;
    one that meets a problem of the machine stays approved and counts in ``items``.
    """
    jobs = ctx.state.active_jobs()
    running = sum(1 for _, _, record in jobs if record["status"] == "running")
    slots = ctx.config.get("execute.max_concurrent") - running
    approved = sorted(
        (
            (record.get("approved_at") or "", JobRef(ds, name, record["protocol"]), record)
            for ds, name, record in jobs
            if record["status"] == "approved"
        ),
        key=lambda item: (item[0], item[1]),
    )
    if not approved or slots <= 0:
        return
    try:
        choice = sandbox.choose(ctx.config)
    except sandbox.SandboxUnavailable as exc:
        # No job ever runs unisolated for want of bwrap: they wait, every pass says why.
        _sandbox_unavailable(ctx, exc, len(approved))
        raise
    _sandbox_works(ctx)
    if choice.warning:
        ctx.log("execute").warning("%s", choice.warning)
    shared = choice.mode == "none" and sandbox.running_as_root()
    runs_dir = backend.runs_dir(ctx.home)
    _ensure_runs_dir(runs_dir, shared)
    slots = min(slots, _runs_with_room(ctx, runs_dir))
    claimed: list[tuple[JobRef, dict[str, Any], Path]] = []
    taken_uids = {
        record["job_uid"]
        for _, _, record in jobs
        if record["status"] == "running" and isinstance(record.get("job_uid"), int)
    }
    for _, ref, record in approved[:slots]:
        # A job that fails here stays approved and is tried again by the next pass;
        # None also for a job that cannot run (it is failed with the reason).
        files = items.call(ref.label, _claim, ctx, ref, record, choice, runs_dir)
        if files is None:
            continue
        if shared:
            record["job_uid"] = sandbox.free_job_uid(taken_uids)
            taken_uids.add(record["job_uid"])
        claimed.append((ref, record, files))
    if not claimed:
        return
    # One checkpoint for all of them, before anything runs.
    ctx.state.save()
    prepared: list[Run] = []
    for ref, record, files in claimed:
        if any(out_of_space(failure.error) for failure in items.failures):
            # The disk is full: the rest waits for space instead of failing.
            _unclaim_quietly(ctx, ref, record)
            continue
        layout = RunLayout(Path(record["run_dir"]))
        if items.call(ref.label, _prepare, ctx, ref, record, layout, files, choice):
            prepared.append(Run(ref, record, layout))
    if prepared:
        _launch(ctx, backend, prepared, choice, items)


def _sandbox_unavailable(ctx: Context, exc: sandbox.SandboxUnavailable, waiting: int) -> None:
    """Remember since when bwrap fails; the data owner gets one email about it."""
    memo = ctx.state.data.setdefault("execute", {})
    if memo.get("sandbox_problem"):
        return
    now = iso()
    memo["sandbox_problem"] = {"since": now, "detail": exc.probe.detail}
    ctx.state.add_event(
        "sandbox_unavailable",
        since=now,
        detail=exc.probe.detail,
        fix=exc.fix,
        waiting=waiting,
        setting=ctx.config.get("execute.sandbox"),
    )


def _sandbox_works(ctx: Context) -> None:
    memo = ctx.state.data.get("execute")
    if isinstance(memo, dict) and memo.pop("sandbox_problem", None):
        ctx.log("execute").info("the sandbox works again; approved jobs start")


def _ensure_runs_dir(runs: Path, shared: bool) -> None:
    """Create the folder of the run folders, or check that it is this user's own.

    It sits in a folder everyone may write to (/var/tmp): a folder or link someone
    else put there first is refused, never used. ``shared``: jobs of their own
    uids must pass through it to their folders (but not list it). Its parent is never
    made: a cluster's shared run folder that is not mounted must not become a local one.
    """
    try:
        runs.mkdir(exist_ok=True, mode=0o700)
    except FileNotFoundError:
        raise SyftBgError(
            f"{runs.parent} (where run folders go) does not exist; approved jobs wait. "
            f"Create it, or mount the shared folder execute.slurm.run_folder names"
        ) from None
    info = os.lstat(runs)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise SyftBgError(
            f"{runs} (where jobs run) is not a folder of this user's; approved jobs wait. "
            f"Remove it (someone else made it), then the next pass carries on"
        )
    os.chmod(runs, 0o711 if shared else 0o700)


def _runs_with_room(ctx: Context, runs_dir: Path) -> int:
    """How many more runs fit on the disk of the run folders, each with execute.disk_mb,
    leaving execute.min_free_disk_mb free; raises when none does (the jobs wait)."""
    free = free_bytes(str(runs_dir))
    if free is None:
        return 1 << 30
    # Free inodes count as space too (supervisor.free_bytes).
    free_mb = free // (1024 * 1024)
    disk_mb = ctx.config.get("execute.disk_mb")
    floor = ctx.config.get("execute.min_free_disk_mb")
    room = (free_mb - floor) // disk_mb
    if room <= 0:
        raise SyftBgError(
            f"not enough free disk to start a job: {free_mb} MB free where the jobs run "
            f"({runs_dir}); each run may use execute.disk_mb ({disk_mb} MB) and "
            f"execute.min_free_disk_mb ({floor} MB) stay free. Approved jobs wait: free "
            f"some space (or lower execute.disk_mb)"
        )
    return room


def timeout_for(ctx: Context, record: dict[str, Any]) -> int:
    """execute.timeout, or the timeout of the rule that approved the job."""
    rule = record.get("rule")
    if rule:
        for entry in ctx.config.get("approve.auto_approvals") or []:
            if isinstance(entry, dict) and entry.get("name") == rule and entry.get("timeout"):
                return int(entry["timeout"])
    return int(ctx.config.get("execute.timeout"))


def _new_run_id(ref: JobRef) -> str:
    digest = ref.digest
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{digest[:10]}-{secrets.token_hex(3)}"


def _claim(
    ctx: Context, ref: JobRef, record: dict[str, Any], choice: sandbox.Choice, runs_dir: Path
) -> Path | None:
    """Mark an approved job running (datasite and record); its verified files, or
    None when it cannot run (then it is failed with the reason)."""
    try:
        files, _ = snapshot.verified(ctx.home.snapshots_dir, ref)
    except snapshot.SnapshotError as exc:
        reason = f"not run: {exc}"
        owner_reason = None
        if isinstance(exc, snapshot.SnapshotMissing):
            # The details name files in the app home: they are for the data owner only.
            reason = (
                f"not run: {ref.label} has no approval snapshot (approved outside "
                "syft-bg?); the data owner has to review its files and run it again"
            )
            owner_reason = (
                f"{reason}: review the files, then: "
                f"syft-bg jobs rerun {shlex.quote(ref.label)} --fresh-snapshot"
            )
            ctx.log("execute").warning("%s not run: %s", ref.label, exc)
        publish_note(ctx, ref, reason)
        finish(ctx, ref, record, "failed", NO_EXIT_STATUS, reason, None, "", owner_reason)
        return None
    run_id = _new_run_id(ref)
    write_permissions(ctx, ref)
    move_job(
        ctx,
        ref,
        record,
        "running",
        state={"completed_at": None, "return_code": None},
        run_id=run_id,
        run_dir=str(runs_dir / run_id),
        started_at=iso(),
        timeout=timeout_for(ctx, record),
        sandbox=choice.mode,
    )
    return files


def _prepare(
    ctx: Context,
    ref: JobRef,
    record: dict[str, Any],
    layout: RunLayout,
    files: Path,
    choice: sandbox.Choice,
) -> bool:
    """Make the run folder of a claimed job ready for its supervisor; False when the
    job cannot start (it is failed with the reason; a full disk raises, the job waits)."""
    run_as = record.get("job_uid") if choice.mode == "none" else None
    try:
        sandbox.prepare_layout(
            layout, files, choice.mode, run_as=run_as, reserve_bytes=log_limit(ctx) * 2
        )
        limits = sandbox.Limits.from_config(ctx.config, record["timeout"])
        prepared = prepare.prepare_run(ctx, ref, layout, choice.mode, run_as)
        spec = sandbox.build_spec(
            layout,
            choice,
            ctx.config,
            limits,
            record["run_id"],
            run_as=run_as,
            prepared=prepared,
            dataset_mounts=job_datasets(ctx, ref, record),
        )
        atomic_write_json(layout.spec, dict(spec, job=ref.label), mode=0o600)
        clear_results(ctx.datasite.review_dir(ref))
    except (OSError, SyftBgError) as exc:
        _not_started(ctx, ref, record, layout, exc)
        return False
    return True


def _not_started(
    ctx: Context, ref: JobRef, record: dict[str, Any], layout: RunLayout, exc: BaseException
) -> None:
    """A claimed job whose run could not be set up: failed with the reason, or, on a
    full disk (the machine's state, not the job's), back to approved to wait for
    space, and the error raised."""
    ctx.log("execute").error("cannot start %s: %s", ref.label, exc)
    remove_tree(layout.root)
    if out_of_space(exc):
        _unclaim(ctx, ref, record)
        raise exc
    reason = f"could not start: {error_words(exc)}"
    publish_note(ctx, ref, reason)
    finish(ctx, ref, record, "failed", NO_EXIT_STATUS, reason, None, "", f"{reason} ({exc})")


def _launch(
    ctx: Context, backend: RunBackend, runs: list[Run], choice: sandbox.Choice, items: StepItems
) -> None:
    """Hand prepared runs to the backend and record their supervisors."""
    log = ctx.log("execute")
    results, errors = backend.start([run.layout for run in runs])
    for run, started in zip(runs, results, strict=True):
        if started.refused is not None:
            items.run(
                run.ref.label, _not_started, ctx, run.ref, run.record, run.layout, started.refused
            )
            continue
        if started.slurm_job_id is not None:
            run.record["slurm_job_id"] = started.slurm_job_id
            where = f"Slurm job {started.slurm_job_id}"
        elif started.pid is not None:
            run.record.update(supervisor_pid=started.pid, supervisor_start=started.ticks)
            where = f"supervisor pid {started.pid}"
        else:
            # Its run folder has no status: the next pass starts it again, a bounded
            # number of times when the supervisor-errors file says it was tried.
            log.warning("no supervisor started for %s: %s", run.ref.label, errors)
            continue
        ctx.counts["started"] += 1
        log.info(
            "started %s (run %s, %s, sandbox %s, timeout %d s)",
            run.ref.label,
            run.record["run_id"],
            where,
            choice.mode,
            run.record["timeout"],
        )


def _unclaim(ctx: Context, ref: JobRef, record: dict[str, Any]) -> None:
    """A claimed job that was not started goes back to approved."""
    # The record first: when state.yaml cannot be written (a full disk), the job
    # still waits approved and the next pass writes it.
    move_job(ctx, ref, record, "approved")
    ctx.datasite.write_job_state(ref, status="approved")


def _unclaim_quietly(ctx: Context, ref: JobRef, record: dict[str, Any]) -> None:
    try:
        _unclaim(ctx, ref, record)
    except OSError:
        # The record says approved; state.yaml says running until a pass can write it.
        ctx.log("execute").exception("resetting %s to approved failed", ref.label)
