"""Runs on a Slurm cluster: the RunBackend that hands each run's supervisor to sbatch.

A run folder on execute.slurm.run_folder (a filesystem the compute nodes see at the
same path) holds everything the supervisor needs: the working copy of the approval
snapshot, spec.json, the tools. The batch script runs the very supervisor a local run
has (``python -I -S`` of execution/supervisor.py), so the job gets the same sandbox on
the node: bwrap, the environment allow-list, the network mode, rlimits, output caps.

The supervisor's status.json is the truth where it is; Slurm's state tells the rest:
still queued or running, or stopped by the cluster (node failure, preemption,
scancel, time limit) before the supervisor finished, which fails the job with the
reason and never runs it again. The states of all of a pass's runs are read
together, once, before any status file is: a run the cluster reported ended has
written everything it ever will.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from syft_bg_app.context import Context
from syft_bg_app.execution.backends import Poll, Started, slurm
from syft_bg_app.execution.backends.local import (
    APP_PARENT,
    note_start_error,
    read_run_status,
    supervisor_environment,
)
from syft_bg_app.execution.backends.slurm import ClusterState
from syft_bg_app.execution.sandbox import RunLayout
from syft_bg_app.store.atomic import atomic_write_bytes
from syft_bg_app.store.home import AppHome

BATCH_SCRIPT = "slurm-job.sh"
JOB_ID_FILE = "slurm-job-id.txt"
# What the supervisor needs past the job's timeout (network set-up, the kill rounds,
# writing the results) before Slurm's own time limit may end it.
SUPERVISOR_MARGIN_S = 60
SUPERVISOR = (
    "import sys; sys.path.append(sys.argv[1]); "
    "from syft_bg_app.execution.supervisor import main; sys.exit(main(sys.argv[2:]))"
)
MIB = 1024 * 1024

# Why a batch job ended that never let its supervisor finish, for the data scientist.
CLUSTER_STOPS = {
    slurm.CANCELLED: "it was cancelled on the cluster",
    slurm.TIMEOUT: "it reached the cluster's time limit",
    slurm.NODE_FAIL: "node failure",
    slurm.PREEMPTED: "it was preempted by other work on the cluster",
    slurm.OUT_OF_MEMORY: "it ran out of memory",
}
OTHER_ENDS = {
    slurm.FAILED: "its batch job failed before the job's result was written",
    slurm.COMPLETED: "its batch job ended without the job's result",
}
NOT_AGAIN = "; it was not run again (the data owner can rerun it)"


def cluster_reason(seen: ClusterState) -> str:
    """A batch job's end in words for the data scientist."""
    words = CLUSTER_STOPS.get(seen.state) or OTHER_ENDS.get(seen.state) or seen.state
    return f"the cluster stopped the job: {words}{NOT_AGAIN}"


class SlurmBackend:
    name = "slurm"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings: dict[str, Any] = ctx.config.get("execute.slurm")
        self.timeout_s = self.settings.get("commands_timeout") or slurm.COMMAND_TIMEOUT_S
        # run folder -> (batch job id, its state), for the running jobs of this pass.
        self._seen: dict[str, tuple[str | None, ClusterState | None]] | None = None

    def runs_dir(self, home: AppHome) -> Path:
        folder = Path(os.path.expanduser(self.settings["run_folder"]))
        return folder / home.runs_dir.name

    # -- start --------------------------------------------------------------------------
    def start(self, layouts: list[RunLayout]) -> tuple[list[Started], str]:
        results: list[Started] = []
        errors: list[str] = []
        unreachable = False
        for layout in layouts:
            if unreachable:
                # Never tried (no supervisor-errors file): the next pass starts it again.
                results.append(Started())
                continue
            try:
                script, spec = self._write_script(layout)
                # From here on the run counts as tried: a pass killed during sbatch
                # leaves a run the next pass looks for on the cluster by name.
                layout.supervisor_errors.touch(mode=0o600)
            except (OSError, ValueError) as exc:
                results.append(Started(refused=_as_os_error(exc)))
                continue
            try:
                job_id = slurm.submit(
                    script,
                    layout.root,
                    time_limit_s=int(spec["timeout"]) + SUPERVISOR_MARGIN_S,
                    partition=self.settings.get("partition"),
                    account=self.settings.get("account"),
                    mem_mb=max(1, int(spec["memory_bytes"]) // MIB),
                    cpus=self.settings.get("cpus"),
                    extra_options=self.settings.get("sbatch_options") or [],
                    env=supervisor_environment(),
                    job_name=layout.root.name,
                    timeout_s=self.timeout_s,
                )
            except slurm.SlurmError as exc:
                note_start_error(layout, str(exc))
                errors.append(str(exc))
                results.append(Started())
                # One unanswered sbatch is enough: the rest would each wait as long.
                unreachable = isinstance(exc, slurm.SlurmUnavailableError)
                continue
            try:
                atomic_write_bytes(layout.root / JOB_ID_FILE, f"{job_id}\n".encode(), mode=0o600)
            except OSError:
                self.ctx.log("execute").warning(
                    "%s: the Slurm job id %s could not be written to the run folder",
                    layout.root.name,
                    job_id,
                )
            results.append(Started(slurm_job_id=job_id))
        return results, "; ".join(dict.fromkeys(errors))

    def _write_script(self, layout: RunLayout) -> tuple[Path, dict[str, Any]]:
        spec = json.loads(layout.spec.read_bytes())
        words = [sys.executable, "-I", "-S", "-c", SUPERVISOR, APP_PARENT, str(layout.root)]
        text = (
            "#!/bin/sh\n"
            "# The supervisor of this run, on the compute node Slurm chose (syft-bg).\n"
            f"exec {shlex.join(words)}\n"
        )
        script = layout.root / BATCH_SCRIPT
        atomic_write_bytes(script, text.encode(), mode=0o700)
        return script, spec

    # -- poll ---------------------------------------------------------------------------
    def poll(self, layout: RunLayout) -> Poll:
        known = self._cluster().get(str(layout.root))
        if known is None:
            return self._poll_other(layout)
        job_id, seen = known
        status = read_run_status(layout)
        if seen is None:
            # Never handed to the cluster (sbatch refused it, or was never reached).
            return Poll(status, alive=False)
        result = Poll(status, time_limited=True, slurm_job_id=job_id, cluster_state=seen.state)
        waiting = seen.state in (slurm.PENDING, slurm.RUNNING)
        if status.get("phase") == "finished":
            if _succeeded(status):
                return result
            if waiting and _signalled(status):
                # Slurm signals every process of a job it stops (scancel, preemption):
                # the next pass, once the batch job has ended, reads why. Not final
                # until then, so not "finished".
                result.alive = True
                result.status = dict(status, phase="ending")
            elif seen.state in CLUSTER_STOPS:
                result.status = dict(status, reason=cluster_reason(seen))
            return result
        if seen.state == slurm.UNKNOWN:
            self.ctx.log("execute").warning(
                "%s: Slurm job %s: state unknown (%s); waiting",
                layout.root.name,
                job_id,
                seen.reason,
            )
        if waiting or seen.state == slurm.UNKNOWN:
            result.alive = True
            return result
        result.ended = cluster_reason(seen)
        result.ended_detail = (
            f"{result.ended} (Slurm job {job_id}: {seen.slurm_state or seen.state}"
            f"{', ' + seen.reason if seen.reason else ''}"
            f"{'' if seen.exit_code is None else f', exit code {seen.exit_code}'}; "
            f"its batch output: {layout.root / slurm.STDERR_NAME})"
        )
        return result

    def _poll_other(self, layout: RunLayout) -> Poll:
        """A run folder of no running job (housekeeping): alive while its batch job is."""
        status = read_run_status(layout)
        job_id = read_job_id(layout)
        if status.get("phase") == "finished" or job_id is None:
            return Poll(status, alive=False, slurm_job_id=job_id)
        seen = slurm.state(job_id, timeout_s=self.timeout_s)
        return Poll(
            status,
            alive=not seen.finished,
            time_limited=True,
            slurm_job_id=job_id,
            cluster_state=seen.state,
        )

    def _cluster(self) -> dict[str, tuple[str | None, ClusterState | None]]:
        """The batch job and its state of each running job's run folder: read once per
        pass, with a few commands for all of them."""
        if self._seen is not None:
            return self._seen
        seen: dict[str, tuple[str | None, ClusterState | None]] = {}
        ids: dict[str, str] = {}
        unnamed: dict[str, str] = {}
        for _, _, record in self.ctx.state.active_jobs():
            run_dir = record.get("run_dir")
            if record["status"] != "running" or not run_dir:
                continue
            layout = RunLayout(Path(run_dir))
            job_id = record.get("slurm_job_id") or read_job_id(layout)
            if job_id:
                ids[run_dir] = job_id
            elif os.path.lexists(layout.supervisor_errors):
                # sbatch was called; whether it submitted, only the cluster knows.
                unnamed[run_dir] = layout.root.name
            seen[run_dir] = (None, None)
        if unnamed:
            found = slurm.job_ids_by_name(unnamed.values(), timeout_s=self.timeout_s)
            for run_dir, name in unnamed.items():
                if found is None:
                    unknown = ClusterState(slurm.UNKNOWN, reason="squeue did not answer")
                    seen[run_dir] = (None, unknown)
                elif name in found:
                    ids[run_dir] = found[name]
        if ids:
            try:
                states = slurm.states(ids.values(), timeout_s=self.timeout_s)
            except slurm.SlurmError as exc:
                states = {
                    job_id: ClusterState(slurm.UNKNOWN, reason=str(exc)) for job_id in ids.values()
                }
            for run_dir, job_id in ids.items():
                seen[run_dir] = (job_id, states[job_id])
        self._seen = seen
        return seen

    # -- stop ---------------------------------------------------------------------------
    def stop(self, run_id: str, status: dict[str, Any], record: dict[str, Any]) -> None:
        job_id = record.get("slurm_job_id") or self._job_id_of(run_id)
        if job_id:
            slurm.cancel(job_id, timeout_s=self.timeout_s)

    def kill_leftovers(self, run_id: str, status: dict[str, Any]) -> int:
        job_id = self._job_id_of(run_id)
        if not job_id:
            return 0
        slurm.cancel(job_id, timeout_s=self.timeout_s)
        return 1

    def _job_id_of(self, run_id: str) -> str | None:
        for run_dir, (job_id, _) in self._cluster().items():
            if Path(run_dir).name == run_id and job_id:
                return job_id
        return None


def _succeeded(status: dict[str, Any]) -> bool:
    return status.get("return_code") == 0 and not status.get("stopped")


def _signalled(status: dict[str, Any]) -> bool:
    """The run ended by a signal: its supervisor's, or the job's own (exit 128 + N)."""
    return_code = status.get("return_code")
    return bool(status.get("stop_signal")) or (isinstance(return_code, int) and return_code > 128)


def read_job_id(layout: RunLayout) -> str | None:
    """The batch job id the run folder keeps (written right after sbatch answered)."""
    try:
        text = (layout.root / JOB_ID_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text.isdigit() and len(text) <= 20 else None


def _as_os_error(exc: OSError | ValueError) -> OSError:
    if isinstance(exc, OSError):
        return exc
    return OSError(f"the run's spec cannot be read: {exc}")
