"""Execute step: reap finished runs, then start approved jobs in a sandbox.

A job runs as a detached, supervised process (``supervisor.py``) from a
working copy of its approval snapshot under ``<app home>/runs/<run id>/``;
the pass only starts it and returns. Later passes read the supervisor's
``status.json``: a finished run's results are published to the job's review
folder in the syft-job layout, and a run whose supervisor is gone (reboot,
kill) is marked failed with the reason. No job is started twice on its own:
before a supervisor is started, the checkpoint already says the job runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from .. import audit, sandbox, snapshot
from ..context import Context
from ..datasite import JobRef
from ..errors import NotFoundError, SyftBgError
from ..fsutil import PERMISSION_FILE, atomic_write_bytes, atomic_write_json, atomic_write_yaml
from ..sandbox import RunLayout
from ..state import iso, parse_iso, utcnow
from ..supervisor import is_running, kill_run_leftovers, start_ticks

LOG_FILES = ("stdout.txt", "stderr.txt", "returncode.txt")
STDERR_TAIL_BYTES = 2048
# A supervisor still alive this long after its job's timeout is stuck; it is stopped.
STUCK_GRACE_SECONDS = 120
CLEANUP_EVERY = timedelta(hours=1)
# The return code recorded when a job has no exit status of its own (timeout, lost run).
NO_EXIT_STATUS = -1
# A job whose supervisor dies before it launches the job this often is failed.
MAX_START_ATTEMPTS = 3


class RerunError(SyftBgError):
    exit_code = 1


def run(ctx: Context) -> None:
    for ds_email, job_name, record in ctx.state.active_jobs():
        if record["status"] == "running":
            _reap(ctx, JobRef(ds_email, job_name, record["protocol"]), record)
    _clean_old_runs(ctx)
    _start_approved(ctx)


# -- starting --------------------------------------------------------------------------


def _start_approved(ctx: Context) -> None:
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
    # Raises when bwrap is required but unusable: the jobs wait, the step reports why.
    choice = sandbox.choose(ctx.config)
    if choice.warning:
        ctx.log("execute").warning("%s", choice.warning)
    for _, ref, record in approved[:slots]:
        start(ctx, ref, record, choice)


def start(ctx: Context, ref: JobRef, record: dict[str, Any], choice: sandbox.Choice) -> None:
    log = ctx.log("execute")
    try:
        files, _ = snapshot.verified(ctx.home.snapshots_dir, ref)
    except snapshot.SnapshotError as exc:
        reason = f"not run: {exc}"
        if "no usable approval snapshot" in str(exc):
            reason += (
                " (approved outside syft-bg?); review the files, then: "
                f"syft-bg jobs rerun {ref.label} --fresh-snapshot"
            )
        _publish_note(ctx, ref, reason)
        _finish(ctx, ref, record, "failed", NO_EXIT_STATUS, reason, None, "")
        return
    run_id = _new_run_id(ref)
    layout = RunLayout(ctx.home.runs_dir / run_id)
    timeout = timeout_for(ctx, record)
    # Say "running" before anything runs: a pass killed from here on leaves a
    # record the next pass checks, never an approved job it would start again.
    ctx.datasite.write_job_state(ref, status="running", completed_at=None, return_code=None)
    record.update(
        status="running",
        run_id=run_id,
        run_dir=str(layout.root),
        started_at=iso(),
        timeout=timeout,
        sandbox=choice.mode,
    )
    for key in ("supervisor_pid", "supervisor_start", "reason"):
        record.pop(key, None)
    ctx.state.save()
    try:
        ctx.home.runs_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(ctx.home.runs_dir, 0o700)
        sandbox.prepare_layout(layout, files, choice.mode)
        limits = sandbox.Limits.from_config(ctx.config, timeout)
        spec = sandbox.build_spec(layout, choice, ctx.config, limits, run_id)
        atomic_write_json(layout.spec, spec, mode=0o600)
        atomic_write_json(
            layout.info,
            {"job": ref.label, "protocol": ref.protocol, "created_at": iso()},
            mode=0o600,
        )
        _clear_results(ctx.datasite.review_dir(ref))
        pid = _launch_supervisor(layout)
    except (OSError, subprocess.SubprocessError, SyftBgError) as exc:
        log.error("cannot start %s: %s", ref.label, exc)
        shutil.rmtree(layout.root, ignore_errors=True)
        reason = f"could not start: {exc}"
        _publish_note(ctx, ref, reason)
        _finish(ctx, ref, record, "failed", NO_EXIT_STATUS, reason, None, "")
        return
    record.update(supervisor_pid=pid, supervisor_start=start_ticks(pid))
    ctx.counts["started"] += 1
    log.info(
        "started %s (run %s, sandbox %s, timeout %d s)", ref.label, run_id, choice.mode, timeout
    )


def timeout_for(ctx: Context, record: dict[str, Any]) -> int:
    """execute.timeout, or the timeout of the rule that approved the job."""
    rule = record.get("rule")
    if rule:
        for entry in ctx.config.get("approve.auto_approvals") or []:
            if isinstance(entry, dict) and entry.get("name") == rule and entry.get("timeout"):
                return int(entry["timeout"])
    return int(ctx.config.get("execute.timeout"))


def _new_run_id(ref: JobRef) -> str:
    digest = hashlib.sha256(f"{ref.ds_email}\0{ref.protocol}\0{ref.name}".encode()).hexdigest()
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{digest[:10]}-{secrets.token_hex(3)}"


def _launch_supervisor(layout: RunLayout) -> int:
    """Start the detached supervisor holding the run's lock; return its pid."""
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        errors = open(layout.supervisor_errors, "ab")
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "syft_bg_app.supervisor", str(layout.root)]
                + ["--lock-fd", str(fd)],
                cwd=layout.root,
                env=_supervisor_environment(),
                stdin=subprocess.DEVNULL,
                stdout=errors,
                stderr=errors,
                start_new_session=True,
                close_fds=True,
                pass_fds=(fd,),
            )
        finally:
            errors.close()
    finally:
        # The supervisor holds the same lock through its inherited descriptor.
        os.close(fd)
    return process.pid


def _supervisor_environment() -> dict[str, str]:
    # The supervisor needs nothing of the pass's environment but how to import the app.
    env = {"PATH": sandbox.SYSTEM_PATH, "LANG": "C.UTF-8"}
    for name in ("PYTHONPATH", "PYTHONHOME"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


# -- reaping ---------------------------------------------------------------------------


def supervisor_alive(layout: RunLayout) -> bool:
    """True while a supervisor holds the run's lock."""
    try:
        fd = os.open(layout.lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def read_run_status(layout: RunLayout) -> dict[str, Any]:
    try:
        data = json.loads(layout.status.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _reap(ctx: Context, ref: JobRef, record: dict[str, Any]) -> None:
    log = ctx.log("execute")
    run_dir = record.get("run_dir")
    if not run_dir:
        # Marked running by a pass that stopped before it prepared a run: nothing ran.
        log.warning("%s was never started; it is started again", ref.label)
        record["status"] = "approved"
        return
    layout = RunLayout(Path(run_dir))
    status = read_run_status(layout)
    if status.get("phase") == "finished":
        _harvest(ctx, ref, record, layout, status)
        return
    if supervisor_alive(layout):
        _stop_if_stuck(ctx, ref, record, status)
        return
    if not status:
        # Nothing was launched: the pass stopped first, or the supervisor could not start.
        # The pass creates this file just before it launches the supervisor: without
        # it the pass itself stopped (killed) while preparing, which is no failed start.
        launched = layout.supervisor_errors.exists()
        errors = _read_or_empty(layout.supervisor_errors).decode("utf-8", "replace").strip()
        shutil.rmtree(layout.root, ignore_errors=True)
        if not launched:
            log.warning("%s: the pass starting it stopped first; it is started again", ref.label)
            record["status"] = "approved"
            record.pop("run_dir", None)
            return
        attempts = record.get("start_attempts", 0) + 1
        if attempts >= MAX_START_ATTEMPTS:
            reason = f"its supervisor failed to start {attempts} times"
            if errors:
                reason += f": {errors.splitlines()[-1]}"
            _publish_note(ctx, ref, reason)
            _finish(ctx, ref, record, "failed", NO_EXIT_STATUS, reason, None, "")
            return
        log.warning("%s did not start (%s); it is started again", ref.label, errors or "no error")
        record.update(status="approved", start_attempts=attempts)
        record.pop("run_dir", None)
        return
    killed = kill_run_leftovers(
        record.get("run_id") or layout.root.name, status.get("job_pid"), status.get("job_start")
    )
    reason = (
        "the run was interrupted: its supervisor stopped (the machine restarted or the "
        "process was killed) before the job finished"
    )
    if killed:
        reason += f"; {killed} leftover processes were killed"
    _publish(ctx, ref, layout, NO_EXIT_STATUS, reason)
    _finish(ctx, ref, record, "failed", NO_EXIT_STATUS, reason, _duration(record), _tail(layout))


def _stop_if_stuck(ctx: Context, ref: JobRef, record: dict[str, Any], status: dict) -> None:
    """A supervisor far past its job's timeout is hung or stopped: end it and its job."""
    started = record.get("started_at")
    if not started:
        return
    overdue = (utcnow() - parse_iso(started)).total_seconds()
    if overdue < record.get("timeout", 0) + STUCK_GRACE_SECONDS:
        return
    pid = status.get("supervisor_pid") or record.get("supervisor_pid")
    ticks = status.get("supervisor_start") or record.get("supervisor_start")
    if pid and is_running(pid, ticks):
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    kill_run_leftovers(
        record.get("run_id") or Path(record["run_dir"]).name,
        status.get("job_pid"),
        status.get("job_start"),
    )
    ctx.log("execute").error("%s: its supervisor hung past the timeout; stopped", ref.label)


def _duration(record: dict[str, Any]) -> float | None:
    started = record.get("started_at")
    return round((utcnow() - parse_iso(started)).total_seconds(), 3) if started else None


def _tail(layout: RunLayout) -> str:
    try:
        data = layout.stderr.read_bytes()[-STDERR_TAIL_BYTES:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


def _harvest(
    ctx: Context, ref: JobRef, record: dict[str, Any], layout: RunLayout, status: dict
) -> None:
    return_code = status.get("return_code")
    reason = status.get("reason")
    if return_code is None:
        return_code = NO_EXIT_STATUS
    outcome = "done" if return_code == 0 and not status.get("stopped") else "failed"
    _publish(ctx, ref, layout, return_code, reason if outcome == "failed" else None)
    _finish(
        ctx,
        ref,
        record,
        outcome,
        return_code,
        reason if outcome == "failed" else None,
        status.get("duration_seconds"),
        _tail(layout),
    )


# -- results -----------------------------------------------------------------------------


def _publish(
    ctx: Context,
    ref: JobRef,
    layout: RunLayout,
    return_code: int,
    reason: str | None,
) -> None:
    """Results into the review folder: permissions first, state.yaml (by _finish) last."""
    review = ctx.datasite.review_dir(ref)
    review.mkdir(parents=True, exist_ok=True)
    write_result_permissions(
        review,
        ref.ds_email,
        ctx.config.get("execute.share_outputs"),
        ctx.config.get("execute.share_logs"),
    )
    _replace_outputs(layout.outputs, review)
    stdout = _read_or_empty(layout.stdout)
    stderr = _read_or_empty(layout.stderr)
    if reason:
        stderr += f"\n[syft-bg: {reason}]\n".encode()
    atomic_write_bytes(review / "stdout.txt", _as_text(stdout))
    atomic_write_bytes(review / "stderr.txt", _as_text(stderr))
    atomic_write_bytes(review / "returncode.txt", f"{return_code}\n".encode())


def _publish_note(ctx: Context, ref: JobRef, reason: str) -> None:
    """For a job that never ran: the reason as its stderr, so the DS sees why."""
    review = ctx.datasite.review_dir(ref)
    write_result_permissions(
        review,
        ref.ds_email,
        ctx.config.get("execute.share_outputs"),
        ctx.config.get("execute.share_logs"),
    )
    _clear_results(review)
    atomic_write_bytes(review / "stderr.txt", f"[syft-bg: {reason}]\n".encode())
    atomic_write_bytes(review / "returncode.txt", f"{NO_EXIT_STATUS}\n".encode())


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _as_text(data: bytes) -> bytes:
    # syft-job reads these files as UTF-8 text; a stray byte must not make them unreadable.
    return data.decode("utf-8", "replace").encode("utf-8")


def write_result_permissions(
    review: Path, ds_email: str, share_outputs: bool, share_logs: bool
) -> None:
    """Who may read this job's results: the DS's review folder grants everything to
    the DS; a part that is not shared gets a terminal permission file here that
    grants the DS only state.yaml and the shared parts (the owner reads all)."""
    path = review / PERMISSION_FILE
    if share_outputs and share_logs:
        path.unlink(missing_ok=True)
        return
    read = {"admin": [], "write": [], "read": [ds_email]}
    rules = [{"pattern": "state.yaml", "access": read}]
    if share_logs:
        rules += [{"pattern": name, "access": read} for name in LOG_FILES]
    if share_outputs:
        rules.append({"pattern": "outputs/**", "access": read})
    atomic_write_yaml(path, {"rules": rules, "terminal": True})


def _replace_outputs(source: Path, review: Path) -> None:
    """Swap in a copy of what the job wrote to code/outputs/ (regular files only)."""
    building = review / f".syft-bg-tmp-outputs-{secrets.token_hex(4)}"
    building.mkdir()
    try:
        _copy_regular_files(source, building)
        target = review / "outputs"
        old = None
        if target.exists():
            old = review / f".syft-bg-tmp-old-{secrets.token_hex(4)}"
            os.rename(target, old)
        os.rename(building, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def _copy_regular_files(source: Path, target: Path) -> None:
    # Never follow a link the job made: it could point at the data owner's files.
    # What the job made unreadable is left out rather than stopping every later pass.
    try:
        entries = list(os.scandir(source))
    except OSError:
        return
    for entry in entries:
        if entry.name == PERMISSION_FILE:
            continue  # a job must not decide who reads its results
        try:
            if entry.is_dir(follow_symlinks=False):
                (target / entry.name).mkdir()
                _copy_regular_files(Path(entry.path), target / entry.name)
            elif entry.is_file(follow_symlinks=False):
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as handle, open(target / entry.name, "wb") as out:
                    shutil.copyfileobj(handle, out)
        except OSError:
            continue


def _clear_results(review: Path) -> None:
    for name in LOG_FILES:
        (review / name).unlink(missing_ok=True)
    shutil.rmtree(review / "outputs", ignore_errors=True)


def _finish(
    ctx: Context,
    ref: JobRef,
    record: dict[str, Any],
    outcome: str,
    return_code: int,
    reason: str | None,
    duration: float | None,
    stderr_tail: str,
) -> None:
    now = iso()
    ctx.datasite.write_job_state(ref, status=outcome, return_code=return_code, completed_at=now)
    kept = {
        key: record[key]
        for key in ("protocol", "seen_at", "method", "rule", "approved_at", "run_dir")
        if key in record
    }
    record.clear()
    record.update(kept, status=outcome, return_code=return_code, finished_at=now)
    if reason:
        record["reason"] = reason
    ctx.counts["finished"] += 1
    log = ctx.log("execute")
    if outcome == "done":
        log.info("%s done in %s s", ref.label, duration)
    else:
        log.warning("%s failed: %s", ref.label, reason)
    ctx.state.add_event(
        "job_finished",
        ds_email=ref.ds_email,
        job=ref.name,
        status=outcome,
        return_code=return_code,
        duration_seconds=duration,
        stderr_tail=stderr_tail[-STDERR_TAIL_BYTES:],
        reason=reason,
    )


# -- housekeeping -------------------------------------------------------------------------


def _clean_old_runs(ctx: Context) -> None:
    """Delete run folders finished more than execute.keep_days ago (hourly at most)."""
    memo = ctx.state.data.setdefault("execute", {})
    now = utcnow()
    last = memo.get("cleaned_at")
    if last and now - parse_iso(last) < CLEANUP_EVERY:
        return
    memo["cleaned_at"] = iso(now)
    try:
        entries = list(os.scandir(ctx.home.runs_dir))
    except FileNotFoundError:
        return
    busy = {
        record.get("run_dir")
        for _, _, record in ctx.state.iter_jobs()
        if record["status"] == "running"
    }
    cutoff = (now - timedelta(days=ctx.config.get("execute.keep_days"))).timestamp()
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False) or entry.path in busy:
            continue
        layout = RunLayout(Path(entry.path))
        if supervisor_alive(layout):
            continue
        try:
            finished = max(
                os.stat(p).st_mtime for p in (entry.path, layout.status) if os.path.exists(p)
            )
        except (OSError, ValueError):
            continue
        if finished < cutoff:
            shutil.rmtree(entry.path, ignore_errors=True)
            ctx.log("execute").info("removed old run folder %s", entry.name)


# -- rerun (the data owner's command) ----------------------------------------------------------


def rerun(ctx: Context, ref: JobRef, fresh_snapshot: bool = False) -> None:
    """Set a done or failed job back to approved; the next pass runs it again."""
    record = ctx.state.job(ref.ds_email, ref.name)
    if record is None:
        raise NotFoundError(f"no job {ref.label}")
    if record["status"] not in ("done", "failed"):
        raise RerunError(
            f"{ref.label} is {record['status']}; only done or failed jobs can be rerun"
        )
    try:
        if fresh_snapshot:
            hashes = snapshot.take(ctx.home.snapshots_dir, ref, ctx.datasite.submission_dir(ref))
        else:
            _, hashes = snapshot.verified(ctx.home.snapshots_dir, ref)
    except snapshot.SnapshotError as exc:
        hint = "" if fresh_snapshot else "; review the job's files and add --fresh-snapshot"
        raise RerunError(f"cannot rerun: {exc}{hint}") from None
    now = iso()
    _clear_results(ctx.datasite.review_dir(ref))
    ctx.datasite.write_job_state(
        ref,
        status="approved",
        approved_by=ctx.config.do_email,
        approved_at=now,
        completed_at=None,
        return_code=None,
    )
    kept = {k: record[k] for k in ("protocol", "seen_at", "method", "rule") if k in record}
    reruns = record.get("reruns", 0) + 1
    record.clear()
    record.update(kept, status="approved", approved_at=now, reruns=reruns)
    ctx.log("execute").info("%s set to run again (rerun %d)", ref.label, reruns)
    audit.record(
        ctx.home.audit_log,
        ref.label,
        "rerun",
        "the data owner asked to run it again"
        + (" with its current files" if fresh_snapshot else ""),
        method="manual",
        hashes=hashes,
    )


# -- status ---------------------------------------------------------------------------------


def status_lines(ctx: Context) -> list[str]:
    """The sandbox in use and the jobs running now, for ``syft-bg status``."""
    lines = sandbox.status_lines(ctx.config)
    running = [
        (ds, name, record)
        for ds, name, record in ctx.state.iter_jobs()
        if record["status"] == "running"
    ]
    if running:
        lines.append("running jobs:")
    for ds, name, record in sorted(running, key=lambda j: (j[0], j[1])):
        layout = RunLayout(Path(record.get("run_dir") or "."))
        alive = record.get("run_dir") and supervisor_alive(layout)
        state = "running" if alive else "finished or stopped; the next pass collects it"
        lines.append(
            f"  {ds}/{name}: {state} since {record.get('started_at', '?')} "
            f"(timeout {record.get('timeout', '?')} s, sandbox {record.get('sandbox', '?')})"
        )
    return lines
