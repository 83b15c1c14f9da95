"""Where runs execute: start, poll and stop runs, behind one small interface.

The execute step (``execution.start``, ``reap``, ``publish``) speaks only to a
``RunBackend``; a run is a run folder (``sandbox.RunLayout``) that its
supervisor fills with ``status.json``, the job's logs and outputs. ``local``
starts supervisors on this machine; a cluster scheduler (Slurm) would start
the same supervisor as a batch job and answer the same questions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from syft_bg_app.execution.sandbox import RunLayout


@dataclass
class Started:
    """What handing one run to the backend gave."""

    # The supervisor's process id and start time; None when none started (the
    # next pass finds no status and starts the job again, a bounded number of times).
    pid: int | None = None
    ticks: int | None = None
    # The run could not even be handed over: the job was not started.
    refused: OSError | None = None


@dataclass
class Poll:
    """A run as a later pass finds it."""

    status: dict[str, Any] = field(default_factory=dict)
    # True while its supervisor lives.
    alive: bool = False


class RunBackend(Protocol):
    name: str

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


def backend_for(name: str = "local") -> RunBackend:
    from syft_bg_app.execution.backends.local import LocalBackend

    if name != "local":
        raise ValueError(f"no run backend {name!r}")
    return LocalBackend()
