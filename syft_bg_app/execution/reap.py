"""Reaping runs: a later pass reads each running job's status and records its outcome.

A finished run's results are published (``publish``); a run whose supervisor
is gone (reboot, kill) is failed with the reason and what its job left is
killed, and so is one a cluster stopped (never started again); a supervisor far
past its job's timeout is stopped (a cluster's time limit does that on its own);
a run that never got a supervisor is started again a bounded number of times. A
run that cannot be collected is failed alone, so every other job goes on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from syft_bg_app.clock import iso, parse_iso, utcnow
from syft_bg_app.context import Context
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.datasite.linksafe import read_capped, remove_tree
from syft_bg_app.execution.backends import RunBackend
from syft_bg_app.execution.backends.local import RUN_FILE_SLACK
from syft_bg_app.execution.publish import (
    NO_EXIT_STATUS,
    finish,
    publish,
    publish_note,
    read_stderr_tail,
)
from syft_bg_app.execution.sandbox import RunLayout
from syft_bg_app.job_transition import move_job
from syft_bg_app.steps.isolation import StepItems

# A supervisor still alive this long after its job's timeout is stuck; it is stopped.
STUCK_GRACE_SECONDS = 120
# A job whose supervisor dies before it launches the job this often is failed.
MAX_START_ATTEMPTS = 3
COLLECT_FAILED = (
    "its results could not be collected (an error in syft-bg; the data owner's log has the details)"
)


def reap_running(ctx: Context, backend: RunBackend, items: StepItems) -> None:
    """Collect every running job whose run ended; one that cannot be collected is
    failed with the reason, so it never holds up the others."""
    for ds_email, job_name, record in ctx.state.active_jobs():
        if record["status"] == "running":
            ref = JobRef(ds_email, job_name, record["protocol"])

            def fail(exc: Exception, ref: JobRef = ref, record: dict = record) -> None:
                _reap_failed(ctx, backend, ref, record, exc)

            items.run(ref.label, _reap, ctx, backend, ref, record, recover=fail)


def _reap(ctx: Context, backend: RunBackend, ref: JobRef, record: dict[str, Any]) -> None:
    log = ctx.log("execute")
    run_dir = record.get("run_dir")
    if not run_dir:
        # Marked running by a pass that stopped before it prepared a run: nothing ran.
        # state.yaml keeps saying running until the next start writes it again.
        log.warning("%s was never started; it is started again", ref.label)
        move_job(ctx, ref, record, "approved")
        return
    layout = RunLayout(Path(run_dir))
    poll = backend.poll(layout)
    if poll.slurm_job_id and not record.get("slurm_job_id"):
        # Found on the cluster by its name: the pass that submitted it stopped first.
        record["slurm_job_id"] = poll.slurm_job_id
    status = poll.status
    if status.get("phase") == "finished":
        if status.get("network_problem"):
            # execute.network: internet failed for this run; it ran cut off, never on
            # the host's network. The job's stderr tells the data scientist.
            log.warning(
                "%s ran with network off: %s (%s)",
                ref.label,
                status["network_problem"],
                status.get("network_log") or "slirp4netns printed nothing",
            )
        _harvest(ctx, ref, record, layout, status)
        # The private data outlives no run: the rest of the run folder is kept a while.
        remove_tree(layout.datasets)
        return
    if poll.alive:
        if not poll.time_limited:
            _stop_if_stuck(ctx, backend, ref, record, status)
        return
    if poll.ended:
        # The cluster stopped the run before its supervisor finished: never run again.
        log.warning("%s: %s", ref.label, poll.ended_detail or poll.ended)
        remove_tree(layout.datasets)
        _fail_unfinished(ctx, ref, record, layout, poll.ended, poll.ended_detail)
        return
    if not status:
        # Nothing was launched: the pass stopped first, or the supervisor could not start.
        # The launcher creates this file just before it forks the supervisor (the pass,
        # when no launcher started): without it the pass itself stopped (killed) first,
        # which is no failed start.
        launched = os.path.lexists(layout.supervisor_errors)
        errors = read_capped(layout.supervisor_errors, RUN_FILE_SLACK)
        errors_text = errors.decode("utf-8", "replace").strip()
        remove_tree(layout.root)
        if not launched:
            log.warning("%s: the pass starting it stopped first; it is started again", ref.label)
            move_job(ctx, ref, record, "approved")
            return
        attempts = record.get("start_attempts", 0) + 1
        if attempts >= MAX_START_ATTEMPTS:
            reason = f"its supervisor failed to start {attempts} times"
            if errors_text:
                reason += f": {errors_text.splitlines()[-1]}"
            publish_note(ctx, ref, reason)
            finish(ctx, ref, record, "failed", NO_EXIT_STATUS, reason, None, "")
            return
        log.warning(
            "%s did not start (%s); it is started again", ref.label, errors_text or "no error"
        )
        move_job(ctx, ref, record, "approved", start_attempts=attempts)
        return
    killed = backend.kill_leftovers(record.get("run_id") or layout.root.name, status)
    remove_tree(layout.datasets)
    reason = (
        "the run was interrupted: its supervisor stopped (the machine restarted or the "
        "process was killed) before the job finished"
    )
    if killed:
        reason += f"; {killed} leftover processes were killed"
    _fail_unfinished(ctx, ref, record, layout, reason)


def _fail_unfinished(
    ctx: Context,
    ref: JobRef,
    record: dict[str, Any],
    layout: RunLayout,
    reason: str,
    owner_reason: str | None = None,
) -> None:
    """Fail a run that ended without its job's own result: what it left is published."""
    reason, note = publish(ctx, ref, layout, NO_EXIT_STATUS, reason)
    finish(
        ctx,
        ref,
        record,
        "failed",
        NO_EXIT_STATUS,
        reason,
        _duration(record),
        read_stderr_tail(ctx, layout),
        owner_reason,
        outputs_note=note,
    )


def _reap_failed(
    ctx: Context, backend: RunBackend, ref: JobRef, record: dict[str, Any], exc: Exception
) -> None:
    """Collecting a run raised: fail that job with the reason, so the others go on."""
    log = ctx.log("execute")
    log.error("collecting %s failed; it is marked failed: %s", ref.label, exc)
    owner_reason = f"{COLLECT_FAILED}: {type(exc).__name__}: {exc}"
    run_dir = record.get("run_dir")
    if run_dir:
        try:
            layout = RunLayout(Path(run_dir))
            backend.stop(_run_id(record), backend.poll(layout).status, record)
        except Exception:
            log.exception("stopping the run of %s failed", ref.label)
    try:
        publish_note(ctx, ref, COLLECT_FAILED)
    except Exception:
        log.exception("writing the results of %s failed", ref.label)
    try:
        finish(ctx, ref, record, "failed", NO_EXIT_STATUS, COLLECT_FAILED, None, "", owner_reason)
    except Exception:
        # Even without its datasite state the job must stop counting as running.
        log.exception("recording %s as failed failed", ref.label)
        move_job(
            ctx,
            ref,
            record,
            "failed",
            return_code=NO_EXIT_STATUS,
            finished_at=iso(),
            reason=owner_reason,
        )


def _stop_if_stuck(
    ctx: Context, backend: RunBackend, ref: JobRef, record: dict[str, Any], status: dict
) -> None:
    """A supervisor far past its job's timeout is hung or stopped: end it and its job."""
    started = record.get("started_at")
    if not started:
        return
    overdue = (utcnow() - parse_iso(started)).total_seconds()
    if overdue < record.get("timeout", 0) + STUCK_GRACE_SECONDS:
        return
    backend.stop(_run_id(record), status, record)
    ctx.log("execute").error("%s: its supervisor hung past the timeout; stopped", ref.label)


def _run_id(record: dict[str, Any]) -> str:
    return record.get("run_id") or Path(record["run_dir"]).name


def _duration(record: dict[str, Any]) -> float | None:
    started = record.get("started_at")
    return round((utcnow() - parse_iso(started)).total_seconds(), 3) if started else None


def _harvest(
    ctx: Context, ref: JobRef, record: dict[str, Any], layout: RunLayout, status: dict
) -> None:
    return_code = status.get("return_code")
    if not isinstance(return_code, int) or isinstance(return_code, bool):
        return_code = NO_EXIT_STATUS
    failed = return_code != 0 or bool(status.get("stopped"))
    reason = None
    if failed:
        reason = str(status.get("reason") or f"exited with return code {return_code}")
    # Outputs that cannot be published safely fail the job, with the reason.
    reason, note = publish(ctx, ref, layout, return_code, reason)
    finish(
        ctx,
        ref,
        record,
        "failed" if reason else "done",
        return_code,
        reason,
        status.get("duration_seconds"),
        read_stderr_tail(ctx, layout),
        outputs_note=note,
    )
