"""A job's move from one status to the next: state.yaml, then its checkpoint record.

Every step and command that changes a job's status goes through ``move_job``,
so what a record keeps is decided in one table (``KEEPS``) rather than at
each place: a finished run drops what only a running job needs, a rerun starts
without the last run's outcome. A job that is rejected, done or failed stays in
the checkpoint only so it is never received twice (state.yaml has the details),
so it keeps nothing of what sync needs for jobs still in flight (the
checkpoint drops those keys on save too: ``store.state.SYNC_ONLY_KEYS``), but
the folder a done or failed job was received as (``jobs rerun --fresh-snapshot``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syft_bg_app.context import Context
    from syft_bg_app.datasite.layout import JobRef

# What sync knows of a job in flight: when it was first seen, the folder it was
# received as (a job found in another folder later is rejected), and the
# state.yaml it last read.
IN_FLIGHT = ("protocol", "seen_at", "folder_id", "state_mtime_ns")
# What was received: what a manual approval approves and the views show.
RECEIPT = ("received_at", "received_hashes", "received_datasets", "never_arrived")
# Who approved it, how often it was run again, and the datasets approved with it.
DECISION = ("approved_at", "method", "rule", "reruns", "datasets")

KEEPS: dict[str, frozenset[str]] = {
    "received": frozenset((*IN_FLIGHT, "waiting_since", "waiting_reason")),
    # The approve step's cache of hashes and its last "left pending" note.
    "pending": frozenset((*IN_FLIGHT, *RECEIPT, "auto", "auto_note")),
    # start_attempts counts supervisors that died before their job started.
    "approved": frozenset((*IN_FLIGHT, *RECEIPT, *DECISION, "start_attempts")),
    # slurm_job_id: the batch job that runs it on a cluster (execute.backend: slurm).
    "running": frozenset((*IN_FLIGHT, *RECEIPT, *DECISION, "start_attempts", "slurm_job_id")),
    "rejected": frozenset(("protocol", "never_arrived", *DECISION)),
    # run_dir: the run folder's logs stay for execute.keep_days; folder_id: a rerun
    # with its current files must find the folder that was received, not another;
    # slurm_job_id names the batch job in the cluster's own records.
    "done": frozenset(("protocol", *DECISION, "run_dir", "folder_id", "slurm_job_id")),
    "failed": frozenset(("protocol", *DECISION, "run_dir", "folder_id", "slurm_job_id")),
}


def move_job(
    ctx: Context,
    ref: JobRef,
    record: dict[str, Any],
    status: str,
    state: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Move the job to ``status`` and return its record (the same dict, changed).

    ``state``: the JobState fields written with the status to state.yaml, first
    (a crash in between leaves the datasite ahead, which the next pass reads);
    None when state.yaml already says so or is written elsewhere. The record
    then keeps exactly ``KEEPS[status]`` of what it held, plus ``fields``.
    """
    if state is not None:
        ctx.datasite.write_job_state(ref, status=status, **state)
    kept = {key: record[key] for key in KEEPS[status] if key in record}
    record.clear()
    record.update(kept, status=status, **fields)
    return record
