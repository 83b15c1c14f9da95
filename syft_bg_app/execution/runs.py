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

import errno
import fcntl
import json
import os
import secrets
import shlex
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from syft_bg_app.approval import audit, decisions, snapshot
from syft_bg_app.clock import iso, parse_iso, utcnow
from syft_bg_app.context import Context
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.errors import NotFoundError, SyftBgError
from syft_bg_app.execution import prepare, sandbox
from syft_bg_app.execution.sandbox import RunLayout
from syft_bg_app.execution.supervisor import free_bytes, is_running, kill_run_leftovers, start_ticks
from syft_bg_app.store.atomic import atomic_write_bytes
from syft_bg_app.store.fsutil import PERMISSION_FILE, atomic_write_json, atomic_write_yaml

LOG_FILES = ("stdout.txt", "stderr.txt", "returncode.txt")
STDERR_TAIL_BYTES = 2048
# A supervisor still alive this long after its job's timeout is stuck; it is stopped.
STUCK_GRACE_SECONDS = 120
CLEANUP_EVERY = timedelta(hours=1)
# The return code recorded when a job has no exit status of its own (timeout, lost run).
NO_EXIT_STATUS = -1
# A job whose supervisor dies before it launches the job this often is failed.
MAX_START_ATTEMPTS = 3
# A job controls its code/outputs/ tree: what of it is published is bounded.
MAX_OUTPUT_DEPTH = 32
MAX_OUTPUT_ENTRIES = 10_000
COPY_CHUNK = 1024 * 1024
# Where the outputs are inside a run folder, opened one component at a time.
OUTPUTS_PARTS = ("job", "code", "outputs")
# How the DS knows these folders (the run folder itself is the data owner's).
OUTPUTS_NAMES = {"job": "the job folder", "code": "code", "outputs": "code/outputs"}
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# The supervisor keeps at most output_cap_kb of each stream, plus its marker.
RUN_FILE_SLACK = 64 * 1024
# How long the launcher of a pass's supervisors may take to fork them all.
LAUNCH_TIMEOUT = 60
# The folder that holds the syft_bg_app package, however it was installed.
APP_PARENT = str(Path(__file__).resolve().parents[2])
COLLECT_FAILED = (
    "its results could not be collected (an error in syft-bg; the data owner's log has the details)"
)


class RerunError(SyftBgError):
    exit_code = 1


def run(ctx: Context) -> None:
    try:
        for ds_email, job_name, record in ctx.state.active_jobs():
            if record["status"] == "running":
                ref = JobRef(ds_email, job_name, record["protocol"])
                try:
                    _reap(ctx, ref, record)
                except Exception as exc:
                    # One run that cannot be collected must not hold up every other job.
                    _reap_failed(ctx, ref, record, exc)
        try:
            _clean_old_runs(ctx)
        except Exception:
            ctx.log("execute").exception("cleaning old run folders failed")
    finally:
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
    _ensure_runs_dir(ctx, shared)
    slots = min(slots, _runs_with_room(ctx))
    claimed: list[tuple[JobRef, dict[str, Any], Path]] = []
    # The first error that stops a job from starting: raised once the others started.
    problem: OSError | None = None
    taken_uids = {
        record["job_uid"]
        for _, _, record in jobs
        if record["status"] == "running" and isinstance(record.get("job_uid"), int)
    }
    for _, ref, record in approved[:slots]:
        try:
            files = _claim(ctx, ref, record, choice)
            if files is not None and shared:
                record["job_uid"] = sandbox.free_job_uid(taken_uids)
                taken_uids.add(record["job_uid"])
        except OSError as exc:
            # This job stays approved and is tried again by the next pass.
            ctx.log("execute").error("cannot start %s: %s", ref.label, exc)
            problem = problem or exc
            continue
        if files is not None:
            claimed.append((ref, record, files))
    if claimed:
        # One checkpoint for all of them, before anything runs: a pass killed from
        # here on leaves records the next pass checks, never approved jobs it would
        # start again.
        ctx.state.save()
        prepared: list[Run] = []
        for ref, record, files in claimed:
            if problem is not None and out_of_space(problem):
                # The disk is full: the rest waits for space instead of failing.
                _unclaim_quietly(ctx, ref, record)
                continue
            try:
                layout = _prepare(ctx, ref, record, files, choice)
            except OSError as exc:  # out of space: this job is approved again
                problem = problem or exc
                continue
            if layout is not None:
                prepared.append(Run(ref, record, layout))
        if prepared:
            problem = _launch(ctx, prepared, choice) or problem
    if problem is not None:
        raise problem


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


def _ensure_runs_dir(ctx: Context, shared: bool) -> None:
    """Create the folder of the run folders, or check that it is this user's own.

    It sits in a folder everyone may write to (/var/tmp): a folder or link someone
    else put there first is refused, never used. ``shared``: jobs of their own
    uids must pass through it to their folders (but not list it).
    """
    runs = ctx.home.runs_dir
    runs.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.lstat(runs)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise SyftBgError(
            f"{runs} (where jobs run) is not a folder of this user's; approved jobs wait. "
            f"Remove it (someone else made it), then the next pass carries on"
        )
    os.chmod(runs, 0o711 if shared else 0o700)


def _runs_with_room(ctx: Context) -> int:
    """How many more runs fit on the disk of the run folders, each with execute.disk_mb,
    leaving execute.min_free_disk_mb free; raises when none does (the jobs wait)."""
    free = free_bytes(str(ctx.home.runs_dir))
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
            f"({ctx.home.runs_dir}); each run may use execute.disk_mb ({disk_mb} MB) and "
            f"execute.min_free_disk_mb ({floor} MB) stay free. Approved jobs wait: free "
            f"some space (or lower execute.disk_mb)"
        )
    return room


@dataclass
class Run:
    """A claimed job with its prepared run folder."""

    ref: JobRef
    record: dict[str, Any]
    layout: RunLayout
    lock_fd: int = -1


def _claim(
    ctx: Context, ref: JobRef, record: dict[str, Any], choice: sandbox.Choice
) -> Path | None:
    """Mark an approved job running (datasite and record); its verified files, or
    None when it cannot run (then it is failed with the reason)."""
    try:
        files, _ = snapshot.verified(ctx.home.snapshots_dir, ref)
    except snapshot.SnapshotError as exc:
        reason = f"not run: {exc}"
        owner_reason = None
        if "no usable approval snapshot" in str(exc):
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
        _publish_note(ctx, ref, reason)
        _finish(ctx, ref, record, "failed", NO_EXIT_STATUS, reason, None, "", owner_reason)
        return None
    run_id = _new_run_id(ref)
    ctx.datasite.write_job_state(ref, status="running", completed_at=None, return_code=None)
    _write_permissions(ctx, ref)
    record.update(
        status="running",
        run_id=run_id,
        run_dir=str(ctx.home.runs_dir / run_id),
        started_at=iso(),
        timeout=timeout_for(ctx, record),
        sandbox=choice.mode,
    )
    for key in ("supervisor_pid", "supervisor_start", "reason"):
        record.pop(key, None)
    return files


def _prepare(
    ctx: Context, ref: JobRef, record: dict[str, Any], files: Path, choice: sandbox.Choice
) -> RunLayout | None:
    """The run folder of a claimed job, ready for its supervisor; None when the job
    cannot start (then it is failed with the reason)."""
    layout = RunLayout(Path(record["run_dir"]))
    run_as = record.get("job_uid") if choice.mode == "none" else None
    try:
        sandbox.prepare_layout(
            layout, files, choice.mode, run_as=run_as, reserve_bytes=_log_limit(ctx) * 2
        )
        limits = sandbox.Limits.from_config(ctx.config, record["timeout"])
        prepared = prepare.prepare_run(ctx, ref, layout, choice.mode, run_as)
        spec = sandbox.build_spec(
            layout, choice, ctx.config, limits, record["run_id"], run_as=run_as, prepared=prepared
        )
        atomic_write_json(layout.spec, dict(spec, job=ref.label), mode=0o600)
        _clear_results(ctx.datasite.review_dir(ref))
    except (OSError, SyftBgError) as exc:
        _not_started(ctx, ref, record, layout, exc)
        return None
    return layout


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
    reason = f"could not start: {_error_words(exc)}"
    _publish_note(ctx, ref, reason)
    _finish(ctx, ref, record, "failed", NO_EXIT_STATUS, reason, None, "", f"{reason} ({exc})")


def _launch(ctx: Context, runs: list[Run], choice: sandbox.Choice) -> OSError | None:
    """Start the supervisors of prepared runs and record their pids; returns a full
    disk met on the way (those jobs wait, approved), for the step to report."""
    log = ctx.log("execute")
    full_disk: OSError | None = None
    handed: list[Run] = []
    try:
        for run in runs:
            try:
                run.lock_fd = _take_run_lock(run.layout)
            except OSError as exc:
                try:
                    _not_started(ctx, run.ref, run.record, run.layout, exc)
                except OSError as raised:
                    full_disk = full_disk or raised
                continue
            handed.append(run)
        pids, errors = _start_supervisors(handed) if handed else ([], "")
    finally:
        for run in handed:
            # Each supervisor holds its run's lock through the descriptor it inherited.
            os.close(run.lock_fd)
    for run, pid in zip(handed, pids, strict=True):
        if pid is None:
            # Its run folder has no status: the next pass starts it again, a bounded
            # number of times when the supervisor-errors file says it was tried.
            log.warning("no supervisor started for %s: %s", run.ref.label, errors)
            continue
        run.record.update(supervisor_pid=pid, supervisor_start=start_ticks(pid))
        ctx.counts["started"] += 1
        log.info(
            "started %s (run %s, supervisor pid %d, sandbox %s, timeout %d s)",
            run.ref.label,
            run.record["run_id"],
            pid,
            choice.mode,
            run.record["timeout"],
        )
    return full_disk


def _unclaim(ctx: Context, ref: JobRef, record: dict[str, Any]) -> None:
    """A claimed job that was not started goes back to approved."""
    for key in ("run_id", "run_dir", "started_at", "timeout", "sandbox", "job_uid"):
        record.pop(key, None)
    record["status"] = "approved"
    ctx.datasite.write_job_state(ref, status="approved")


def _unclaim_quietly(ctx: Context, ref: JobRef, record: dict[str, Any]) -> None:
    try:
        _unclaim(ctx, ref, record)
    except OSError:
        # The record says approved; state.yaml says running until a pass can write it.
        ctx.log("execute").exception("resetting %s to approved failed", ref.label)


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


def _take_run_lock(layout: RunLayout) -> int:
    """The run's lock, taken, as a descriptor to hand to its supervisor."""
    fd = _above_stdio(os.open(layout.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _above_stdio(fd: int) -> int:
    # A pass started with a standard stream closed must not hand one over as a lock.
    if fd > 2:
        return fd
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        os.close(fd)


# The launcher runs isolated (-I: no environment variables, no current folder on
# the path) and without site-packages (-S); the app's folder goes on the path
# after the standard library, so nothing installed beside the app can shadow it.
LAUNCHER = (
    "import sys; sys.path.append(sys.argv[1]); "
    "from syft_bg_app.execution.supervisor import main; sys.exit(main(['--launch']))"
)


def _start_supervisors(runs: list[Run]) -> tuple[list[int | None], str]:
    """One launcher process forks a detached supervisor per run. Returns their pids
    (None where none started) and what went wrong, in words, if anything did."""
    lines = "".join(f"{run.lock_fd} {run.layout.root}\n" for run in runs)
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", LAUNCHER, APP_PARENT],
            cwd=runs[0].layout.root.parent,
            env=_supervisor_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=[run.lock_fd for run in runs],
        )
    except (OSError, subprocess.SubprocessError) as exc:
        # Counted as a failed start of each run, so a lasting cause ends in failed jobs.
        errors = f"the supervisor launcher could not be started: {_error_words(exc)}"
        for run in runs:
            _note_start_error(run.layout, errors)
        return [None] * len(runs), errors
    try:
        out, err = process.communicate(lines.encode(), timeout=LAUNCH_TIMEOUT)
        problem = f"exit status {process.returncode}" if process.returncode else ""
    except subprocess.TimeoutExpired:
        # Supervisors it forked live on and are found by their runs' locks.
        process.kill()
        out, err = process.communicate()
        problem = f"timed out after {LAUNCH_TIMEOUT} s"
    words = out.decode("ascii", "replace").split()
    pids = [int(word) if word.isdigit() else None for word in words[: len(runs)]]
    # A launcher that died part way reported fewer pids than runs.
    pids += [None] * (len(runs) - len(pids))
    text = err.decode("utf-8", "replace").strip()
    errors = "; ".join(part for part in (problem, text.splitlines()[-1] if text else "") if part)
    if text:
        for run, pid in zip(runs, pids, strict=True):
            if pid is None:
                _note_start_error(run.layout, text)
    return pids, errors or "no error given"


def _note_start_error(layout: RunLayout, errors: str) -> None:
    try:
        with open(layout.supervisor_errors, "a", encoding="utf-8") as handle:
            handle.write(errors + "\n")
    except OSError:
        pass


def _supervisor_environment() -> dict[str, str]:
    # The supervisors need nothing of the pass's environment.
    return {"PATH": sandbox.SYSTEM_PATH, "LANG": "C.UTF-8"}


# -- reaping ---------------------------------------------------------------------------


def supervisor_alive(layout: RunLayout) -> bool:
    """True while a supervisor holds the run's lock."""
    try:
        fd = os.open(layout.lock, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
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
        data = json.loads(read_run_file(layout.status, RUN_FILE_SLACK))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def read_run_file(path: Path, limit: int) -> bytes:
    """Up to ``limit`` bytes of a regular file of a run folder; never through a link."""
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(left, COPY_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


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
        return
    if supervisor_alive(layout):
        _stop_if_stuck(ctx, ref, record, status)
        return
    if not status:
        # Nothing was launched: the pass stopped first, or the supervisor could not start.
        # The launcher creates this file just before it forks the supervisor (the pass,
        # when no launcher started): without it the pass itself stopped (killed) first,
        # which is no failed start.
        launched = os.path.lexists(layout.supervisor_errors)
        errors = read_run_file(layout.supervisor_errors, RUN_FILE_SLACK)
        errors_text = errors.decode("utf-8", "replace").strip()
        remove_tree(layout.root)
        if not launched:
            log.warning("%s: the pass starting it stopped first; it is started again", ref.label)
            record["status"] = "approved"
            record.pop("run_dir", None)
            return
        attempts = record.get("start_attempts", 0) + 1
        if attempts >= MAX_START_ATTEMPTS:
            reason = f"its supervisor failed to start {attempts} times"
            if errors_text:
                reason += f": {errors_text.splitlines()[-1]}"
            _publish_note(ctx, ref, reason)
            _finish(ctx, ref, record, "failed", NO_EXIT_STATUS, reason, None, "")
            return
        log.warning(
            "%s did not start (%s); it is started again", ref.label, errors_text or "no error"
        )
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
    reason, note = _publish(ctx, ref, layout, NO_EXIT_STATUS, reason)
    _finish(
        ctx,
        ref,
        record,
        "failed",
        NO_EXIT_STATUS,
        reason,
        _duration(record),
        _tail(ctx, layout),
        outputs_note=note,
    )


def _reap_failed(ctx: Context, ref: JobRef, record: dict[str, Any], exc: Exception) -> None:
    """Collecting a run raised: fail that job with the reason, so the others go on."""
    log = ctx.log("execute")
    log.error("collecting %s failed; it is marked failed: %s", ref.label, exc, exc_info=exc)
    owner_reason = f"{COLLECT_FAILED}: {type(exc).__name__}: {exc}"
    run_dir = record.get("run_dir")
    if run_dir:
        try:
            _stop_run(record, read_run_status(RunLayout(Path(run_dir))))
        except Exception:
            log.exception("stopping the run of %s failed", ref.label)
    try:
        _publish_note(ctx, ref, COLLECT_FAILED)
    except Exception:
        log.exception("writing the results of %s failed", ref.label)
    try:
        _finish(ctx, ref, record, "failed", NO_EXIT_STATUS, COLLECT_FAILED, None, "", owner_reason)
    except Exception:
        # Even without its datasite state the job must stop counting as running.
        log.exception("recording %s as failed failed", ref.label)
        kept = {k: record[k] for k in ("protocol", "seen_at", "method", "rule") if k in record}
        record.clear()
        record.update(
            kept,
            status="failed",
            return_code=NO_EXIT_STATUS,
            finished_at=iso(),
            reason=owner_reason,
        )


def _stop_if_stuck(ctx: Context, ref: JobRef, record: dict[str, Any], status: dict) -> None:
    """A supervisor far past its job's timeout is hung or stopped: end it and its job."""
    started = record.get("started_at")
    if not started:
        return
    overdue = (utcnow() - parse_iso(started)).total_seconds()
    if overdue < record.get("timeout", 0) + STUCK_GRACE_SECONDS:
        return
    _stop_run(record, status)
    ctx.log("execute").error("%s: its supervisor hung past the timeout; stopped", ref.label)


def _stop_run(record: dict[str, Any], status: dict) -> None:
    """Kill a run's supervisor (when it is still that process) and what its job left."""
    pid = status.get("supervisor_pid") or record.get("supervisor_pid")
    ticks = status.get("supervisor_start") or record.get("supervisor_start")
    if isinstance(pid, int) and pid > 0 and is_running(pid, ticks):
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    kill_run_leftovers(
        record.get("run_id") or Path(record["run_dir"]).name,
        status.get("job_pid"),
        status.get("job_start"),
    )


def _duration(record: dict[str, Any]) -> float | None:
    started = record.get("started_at")
    return round((utcnow() - parse_iso(started)).total_seconds(), 3) if started else None


def _log_limit(ctx: Context) -> int:
    return 2 * ctx.config.get("execute.output_cap_kb") * 1024 + RUN_FILE_SLACK


def _tail(ctx: Context, layout: RunLayout) -> str:
    data = read_run_file(layout.stderr, _log_limit(ctx))[-STDERR_TAIL_BYTES:]
    return data.decode("utf-8", "replace")


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
    reason, note = _publish(ctx, ref, layout, return_code, reason)
    _finish(
        ctx,
        ref,
        record,
        "failed" if reason else "done",
        return_code,
        reason,
        status.get("duration_seconds"),
        _tail(ctx, layout),
        outputs_note=note,
    )


# -- results -----------------------------------------------------------------------------


def _publish(
    ctx: Context,
    ref: JobRef,
    layout: RunLayout,
    return_code: int,
    reason: str | None,
) -> tuple[str | None, str | None]:
    """Results into the review folder: permissions first, state.yaml (by _finish) last.

    Returns the job's failure reason (now also naming outputs that were refused)
    and a note on what of its outputs was left out.
    """
    review = ctx.datasite.review_dir(ref)
    review.mkdir(parents=True, exist_ok=True)
    _write_permissions(ctx, ref)
    cap = ctx.config.get("execute.outputs_cap_mb") * 1024 * 1024
    report = _replace_outputs(layout.root, review, cap)
    if report.refused:
        reason = f"{reason}; {report.refused}" if reason else report.refused
    note = report.note(ctx.config.get("execute.outputs_cap_mb"))
    stray = _stray_outputs_note(layout)
    if stray:
        note = f"{note}; {stray}" if note else stray
    if note:
        ctx.log("execute").warning("%s: %s", ref.label, note)
    stdout = read_run_file(layout.stdout, _log_limit(ctx))
    stderr = read_run_file(layout.stderr, _log_limit(ctx))
    for line in (reason, note):
        if line:
            stderr += f"\n[syft-bg: {public_text(ctx, line)}]\n".encode()
    atomic_write_bytes(review / "stdout.txt", _as_text(stdout))
    atomic_write_bytes(review / "stderr.txt", _as_text(stderr))
    atomic_write_bytes(review / "returncode.txt", f"{return_code}\n".encode())
    # What the job wrote is published: its working copy goes (the logs stay for
    # execute.keep_days), so finished runs never hold on to the disk.
    for folder in (layout.job, layout.home, layout.tmp, layout.bin):
        remove_tree(folder)
    return reason, note


def _stray_outputs_note(layout: RunLayout) -> str | None:
    """A note when the job wrote an outputs/ folder beside run.sh, which is not published."""
    try:
        fd = _open_below_path(layout.root, ("job", "outputs"))
    except OSError:
        return None
    try:
        with os.scandir(fd) as entries:
            if next(iter(entries), None) is None:
                return None
    except OSError:
        return None
    finally:
        os.close(fd)
    return (
        "the job wrote files to outputs/ beside run.sh, which are not published: "
        "results go to code/outputs/ (run.sh runs in the job folder; write to "
        "code/outputs/, or cd code first as syft-job python jobs do)"
    )


def _open_below_path(root: Path, parts: tuple[str, ...]) -> int:
    top = os.open(root, DIR_FLAGS)
    try:
        return _open_below(top, parts)
    finally:
        os.close(top)


def _publish_note(ctx: Context, ref: JobRef, reason: str) -> None:
    """For a job that never ran: the reason as its stderr, so the DS sees why."""
    review = ctx.datasite.review_dir(ref)
    _write_permissions(ctx, ref)
    _clear_results(review)
    atomic_write_bytes(review / "stderr.txt", f"[syft-bg: {public_text(ctx, reason)}]\n".encode())
    atomic_write_bytes(review / "returncode.txt", f"{NO_EXIT_STATUS}\n".encode())


def public_text(ctx: Context, text: str) -> str:
    """``text`` for the DS: the data owner's local folders replaced by what they are."""
    places = [
        (ctx.home.root, "<app home>"),
        (ctx.home.runs_dir, "<run folders>"),
        (ctx.datasite.root, "<SyftBox folder>"),
    ]
    try:
        places.append((Path.home(), "~"))
    except (KeyError, RuntimeError):
        pass  # no home folder known for this user
    spelled = []
    for path, label in places:
        for form in {str(path), os.path.realpath(path)}:
            if len(form) > 1:
                spelled.append((form, label))
    # The longest first, so a folder inside another is named by its own label.
    for form, label in sorted(spelled, key=lambda item: -len(item[0])):
        text = text.replace(form, label)
    return text


def out_of_space(exc: BaseException) -> bool:
    """A full disk or quota (also inside the list of errors shutil.copytree raises)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return os.strerror(errno.ENOSPC) in text or os.strerror(errno.EDQUOT) in text


def _error_words(exc: BaseException) -> str:
    """What went wrong, without the file names an OSError carries."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _as_text(data: bytes) -> bytes:
    # syft-job reads these files as UTF-8 text; a stray byte must not make them unreadable.
    return data.decode("utf-8", "replace").encode("utf-8")


def _write_permissions(ctx: Context, ref: JobRef) -> None:
    write_result_permissions(
        ctx.datasite.review_dir(ref),
        ref.ds_email,
        ctx.config.get("execute.share_outputs"),
        ctx.config.get("execute.share_logs"),
    )


def write_result_permissions(
    review: Path, ds_email: str, share_outputs: bool, share_logs: bool
) -> None:
    """Who may read this job's results: a terminal permission file granting the DS
    state.yaml and the shared parts, and nothing else (the owner reads all).

    It is written whatever is shared: the DS's review folder may have no grant of its
    own (a peer accepted by another tool), and a job's results must not depend on it.
    """
    read = {"admin": [], "write": [], "read": [ds_email]}
    rules = [{"pattern": "state.yaml", "access": read}]
    if share_logs:
        rules += [{"pattern": name, "access": read} for name in LOG_FILES]
    if share_outputs:
        rules.append({"pattern": "outputs/**", "access": read})
    grant = {"rules": rules, "terminal": True}
    atomic_write_yaml(review / PERMISSION_FILE, grant, unless_same=True)


@dataclass
class OutputsReport:
    """What publishing a job's outputs did, and what it left out and why."""

    refused: str | None = None
    files: int = 0
    folders: int = 0
    bytes: int = 0
    left_out: dict[str, int] = field(default_factory=dict)
    too_many: bool = False

    def leave_out(self, why: str) -> None:
        self.left_out[why] = self.left_out.get(why, 0) + 1

    def note(self, cap_mb: int) -> str | None:
        words = {
            "link": "links or special files (never published)",
            "permissions": f"{PERMISSION_FILE} files (a job cannot set who reads its results)",
            "name": "names that are not UTF-8",
            "deep": f"folders nested deeper than {MAX_OUTPUT_DEPTH} levels",
            "size": f"files beyond the {cap_mb} MiB outputs cap (execute.outputs_cap_mb)",
            "unreadable": "files or folders that could not be read",
        }
        parts = [f"{count} {words[why]}" for why, count in sorted(self.left_out.items())]
        if self.too_many:
            parts.append(f"everything past the first {MAX_OUTPUT_ENTRIES} entries")
        if not parts:
            return None
        return "outputs left out: " + "; ".join(parts)


def _replace_outputs(run_root: Path, review: Path, cap_bytes: int) -> OutputsReport:
    """Swap in a copy of what the job wrote to code/outputs/ (regular files only)."""
    report = OutputsReport()
    building = review / f".syft-bg-tmp-outputs-{secrets.token_hex(4)}"
    building.mkdir()
    try:
        source = _open_outputs(run_root, report)
        if source is not None:
            target = os.open(building, DIR_FLAGS)
            try:
                _copy_outputs(source, target, cap_bytes, report)
            finally:
                os.close(source)
                os.close(target)
        target = review / "outputs"
        old = None
        if os.path.lexists(target):
            old = review / f".syft-bg-tmp-old-{secrets.token_hex(4)}"
            os.rename(target, old)
        os.rename(building, target)
        if old is not None:
            remove_tree(old)
    except BaseException:
        remove_tree(building)
        raise
    return report


def _open_outputs(run_root: Path, report: OutputsReport) -> int | None:
    """An fd of the run's job/code/outputs, each part opened without following a link.

    The job could have replaced any part with a link to the data owner's folders;
    then nothing is published and ``report.refused`` says why.
    """
    try:
        fd = os.open(run_root, DIR_FLAGS)
    except FileNotFoundError:
        return None
    for part in OUTPUTS_PARTS:
        try:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            child = None
        except OSError as exc:
            child = None
            what = OUTPUTS_NAMES[part]
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                report.refused = f"its outputs were not published: {what} is a link or not a folder"
            else:
                report.refused = (
                    f"its outputs were not published: {what} could not be read "
                    f"({_error_words(exc)})"
                )
        finally:
            os.close(fd)
        if child is None:
            return None
        fd = child
    return fd


def _open_below(top: int, parts: tuple[str, ...]) -> int:
    """Open the folder ``parts`` below the folder fd ``top``, never through a link."""
    fd = os.dup(top)
    for part in parts:
        try:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def _copy_outputs(source: int, target: int, cap_bytes: int, report: OutputsReport) -> None:
    """Copy the folders and regular files below ``source`` into ``target``.

    Iterative, and bounded in depth, entries and bytes; only folders are kept open
    (one pair at a time), each opened below its parent with O_NOFOLLOW.
    """
    seen = 0
    pending: list[tuple[str, ...]] = [()]
    while pending and not report.too_many:
        rel = pending.pop()
        try:
            src = _open_below(source, rel)
        except OSError:
            report.leave_out("unreadable")
            continue
        try:
            dst = _open_below(target, rel)
            try:
                names = _list_some(src, MAX_OUTPUT_ENTRIES - seen + 1)
                if names is None:
                    report.leave_out("unreadable")
                    continue
                subfolders = []
                for name in names:
                    seen += 1
                    if seen > MAX_OUTPUT_ENTRIES:
                        report.too_many = True
                        break
                    if _copy_entry(src, dst, name, len(rel), cap_bytes, report):
                        subfolders.append(rel + (name,))
                # Depth first, in name order within each folder.
                pending.extend(reversed(subfolders))
            finally:
                os.close(dst)
        finally:
            os.close(src)


def _list_some(fd: int, limit: int) -> list[str] | None:
    names = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                names.append(entry.name)
                if len(names) >= limit:
                    break
    except OSError:
        return None
    return sorted(names)


def _copy_entry(
    src: int, dst: int, name: str, depth: int, cap_bytes: int, report: OutputsReport
) -> bool:
    """Copy one entry; True when it is a folder whose contents are to be copied."""
    if name == PERMISSION_FILE:
        report.leave_out("permissions")
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        report.leave_out("name")
        return False
    try:
        info = os.stat(name, dir_fd=src, follow_symlinks=False)
    except OSError:
        report.leave_out("unreadable")
        return False
    if stat.S_ISDIR(info.st_mode):
        if depth + 1 > MAX_OUTPUT_DEPTH:
            report.leave_out("deep")
            return False
        try:
            os.mkdir(name, 0o755, dir_fd=dst)
        except OSError:
            report.leave_out("unreadable")
            return False
        report.folders += 1
        return True
    if not stat.S_ISREG(info.st_mode):
        report.leave_out("link")
        return False
    if report.bytes + info.st_size > cap_bytes:
        report.leave_out("size")
        return False
    try:
        _copy_file(src, dst, name, info, report)
    except OSError:
        report.leave_out("unreadable")
    return False


def _copy_file(src: int, dst: int, name: str, info: os.stat_result, report: OutputsReport) -> None:
    fd = os.open(name, READ_FLAGS, dir_fd=src)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            info.st_dev,
            info.st_ino,
        ):
            raise OSError(errno.ESTALE, "the file changed while it was copied")
        out = os.open(name, WRITE_FLAGS, 0o644, dir_fd=dst)
        try:
            left = info.st_size
            while left > 0:
                chunk = os.read(fd, min(left, COPY_CHUNK))
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
                left -= len(chunk)
                report.bytes += len(chunk)
        except BaseException:
            os.close(out)
            out = -1
            try:
                os.unlink(name, dir_fd=dst)
            except OSError:
                pass
            raise
        finally:
            if out >= 0:
                os.close(out)
        report.files += 1
    finally:
        os.close(fd)


def _clear_results(review: Path) -> None:
    for name in LOG_FILES:
        (review / name).unlink(missing_ok=True)
    remove_tree(review / "outputs")


def remove_tree(path: Path) -> None:
    """Delete a folder however deep it is, never following a link (best effort).

    ``shutil.rmtree`` recurses once per level, so a job's deeply nested folders
    would make it raise RecursionError in every later pass. This walks down, and
    back up through "..", holding one folder open at a time; each ".." must be
    the folder it came from.
    """
    try:
        fd = os.open(path, DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError:
        try:
            os.unlink(path)  # a link or a file where a folder was expected
        except OSError:
            pass
        return
    # Per open level: its name in the folder above, its identity, the folders left in it.
    levels: list[tuple[str, tuple[int, int], list[str]]] = []
    try:
        levels.append(("", _identity(fd), _clear_files(fd)))
        while True:
            todo = levels[-1][2]
            if todo:
                name = todo.pop()
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue
                os.close(fd)
                fd = child
                levels.append((name, _identity(fd), _clear_files(fd)))
                continue
            if len(levels) == 1:
                break
            name, _, _ = levels.pop()
            parent = os.open("..", DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            if _identity(fd) != levels[-1][1]:
                return  # moved meanwhile: stop rather than delete elsewhere
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError:
                pass
    except OSError:
        return
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass


def _identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _clear_files(fd: int) -> list[str]:
    """Unlink everything in the folder ``fd`` but folders; return the folders."""
    try:
        # A job may leave folders it cannot write; the app's user owns them and fixes that.
        if os.fstat(fd).st_uid == os.geteuid():
            os.chmod(fd, 0o700)
    except OSError:
        pass
    folders = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.name)
                    else:
                        os.unlink(entry.name, dir_fd=fd)
                except OSError:
                    continue
    except OSError:
        pass
    return folders


def _finish(
    ctx: Context,
    ref: JobRef,
    record: dict[str, Any],
    outcome: str,
    return_code: int,
    reason: str | None,
    duration: float | None,
    stderr_tail: str,
    owner_reason: str | None = None,
    outputs_note: str | None = None,
) -> None:
    """Record the outcome. ``reason`` reaches the DS (without local paths);
    ``owner_reason`` (default: reason) stays in the data owner's checkpoint and log."""
    now = iso()
    ctx.datasite.write_job_state(ref, status=outcome, return_code=return_code, completed_at=now)
    kept = {
        key: record[key]
        for key in ("protocol", "seen_at", "method", "rule", "approved_at", "run_dir")
        if key in record
    }
    record.clear()
    record.update(kept, status=outcome, return_code=return_code, finished_at=now)
    owner_reason = owner_reason or reason
    if owner_reason:
        record["reason"] = owner_reason
    if outputs_note:
        record["outputs_note"] = outputs_note
    ctx.counts["finished"] += 1
    log = ctx.log("execute")
    if outcome == "done":
        log.info("%s done in %s s", ref.label, duration)
    else:
        log.warning("%s failed: %s", ref.label, owner_reason)
    ctx.state.add_event(
        "job_finished",
        **ref.event_fields,
        status=outcome,
        return_code=return_code,
        duration_seconds=duration,
        stderr_tail=stderr_tail[-STDERR_TAIL_BYTES:],
        reason=public_text(ctx, reason) if reason else None,
        outputs_note=outputs_note,
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
    entries = []
    # Before run folders moved out of the app home they were in its runs/.
    for folder in dict.fromkeys((ctx.home.runs_dir, ctx.home.root / "runs")):
        try:
            entries += list(os.scandir(folder))
        except OSError:
            continue
    busy = {
        record.get("run_dir")
        for _, _, record in ctx.state.iter_jobs()
        if record["status"] == "running"
    }
    cutoff = (now - timedelta(days=ctx.config.get("execute.keep_days"))).timestamp()
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False) or entry.path in busy:
            continue
        if entry.name == prepare.CACHE_FOLDER:
            continue
        layout = RunLayout(Path(entry.path))
        if supervisor_alive(layout):
            continue
        try:
            finished = max(
                os.lstat(p).st_mtime for p in (entry.path, layout.status) if os.path.lexists(p)
            )
        except (OSError, ValueError):
            continue
        if finished < cutoff:
            remove_tree(Path(entry.path))
            ctx.log("execute").info("removed old run folder %s", entry.name)


# -- rerun (the data owner's command) ----------------------------------------------------------


def rerun(ctx: Context, ref: JobRef, fresh_snapshot: bool = False) -> None:
    """Set a done or failed job back to approved; the next pass runs it again."""
    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol)
    if record is None:
        raise NotFoundError(f"no job {ref.label}")
    if record["status"] not in ("done", "failed"):
        raise decisions.wrong_state(ref, record, "rerun", "only done or failed jobs can be rerun")
    try:
        if fresh_snapshot:
            hashes = decisions.snapshot_current_files(ctx, ref, record)
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
    memo = ctx.state.data.get("execute")
    problem = memo.get("sandbox_problem") if isinstance(memo, dict) else None
    if isinstance(problem, dict):
        waiting = sum(1 for _, _, r in ctx.state.iter_jobs() if r["status"] == "approved")
        lines.append(
            f"{waiting} approved jobs wait for a working sandbox (since "
            f"{problem.get('since', '?')}; the data owner was emailed)"
        )
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
        started = record.get("started_at", "?")
        state = (
            f"running since {started}"
            if alive
            else f"started {started}, no longer running; the next pass collects the result"
        )
        lines.append(
            f"  {ds}/{name}: {state} "
            f"(timeout {record.get('timeout', '?')} s, sandbox {record.get('sandbox', '?')})"
        )
    return lines
