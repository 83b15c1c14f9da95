"""Where runs execute: start, poll and stop runs, behind one small interface.

The execute step (``execution.start``, ``reap``, ``publish``) speaks only to a
``RunBackend``; a run is a run folder (``sandbox.RunLayout``) that its
supervisor fills with ``status.json``, the job's logs and outputs. ``local``
starts supervisors on this machine; ``slurm`` (``slurm_runs``) starts the same
supervisor as a batch job on a cluster and answers the same questions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from syft_bg_app.execution.sandbox import RunLayout

if TYPE_CHECKING:
    from syft_bg_app.context import Context
    from syft_bg_app.store.home import AppHome


@dataclass
class Started:
    """What handing one run to the backend gave."""

    # The supervisor's process id and start time; None when none started (the
    # next pass finds no status and starts the job again, a bounded number of times).
    pid: int | None = None
    ticks: int | None = None
    # The run could not even be handed over: the job was not started.
    refused: OSError | None = None
    # The cluster's id of the batch job that runs the supervisor (Slurm).
    slurm_job_id: str | None = None


@dataclass
class Poll:
    """A run as a later pass finds it."""

    status: dict[str, Any] = field(default_factory=dict)
    # True while its supervisor lives (or, on a cluster, may still start or run).
    alive: bool = False
    # The cluster ends the run at its own time limit: no pass needs to stop it as stuck
    # (and a run waiting in the queue has not started its clock).
    time_limited: bool = False
    # Why the run ended without its supervisor's result (the cluster stopped it), in
    # words for the data scientist, and for the data owner; None when it did not.
    ended: str | None = None
    ended_detail: str | None = None
    # On a cluster: the batch job's id and its state (slurm.ClusterState.state).
    slurm_job_id: str | None = None
    cluster_state: str | None = None


class RunBackend(Protocol):
    name: str

    def runs_dir(self, home: AppHome) -> Path:
        """The folder that holds the run folders of ``home``'s runs."""
        ...

    def start(self, layouts: list[RunLayout]) -> tuple[list[Started], str]:
        """Start the supervisors of prepared run folders, one result per folder, and
        what went wrong, in words, when something did."""
        ...

    def poll(self, layout: RunLayout) -> Poll:
        """Read a run's status and whether its supervisor still lives."""
        ...

    def stop(self, run_id: str, status: dict[str, Any], record: dict[str, Any]) -> None:
        """End a run whose supervisor hangs: the supervisor and everything of its job."""
        ...

    def kill_leftovers(self, run_id: str, status: dict[str, Any]) -> int:
        """Kill what a run whose supervisor is gone left running; how many were hit."""
        ...


def backend_for(ctx: Context | None = None) -> RunBackend:
    """The backend execute.backend names (local without a context). One serves one
    pass: a cluster backend reads the state of all its runs once per pass."""
    from syft_bg_app.execution.backends.local import LocalBackend

    if ctx is not None and ctx.config.get("execute.backend") == "slurm":
        from syft_bg_app.execution.backends.slurm_runs import SlurmBackend

        return SlurmBackend(ctx)
    return LocalBackend()
