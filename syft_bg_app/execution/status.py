"""What ``syft-bg status`` says about execution: the sandbox and the jobs running now
(on a cluster, with their Slurm job id and state)."""

from __future__ import annotations

from pathlib import Path

from syft_bg_app.context import Context
from syft_bg_app.execution import sandbox
from syft_bg_app.execution.backends import backend_for
from syft_bg_app.execution.sandbox import RunLayout


def status_lines(ctx: Context) -> list[str]:
    """The sandbox in use and the jobs running now, for ``syft-bg status``."""
    backend = backend_for(ctx)
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
        poll = backend.poll(layout) if record.get("run_dir") else None
        started = record.get("started_at", "?")
        if poll is not None and poll.cluster_state == "pending":
            state = f"queued on the cluster since {started}"
        elif poll is not None and poll.alive:
            state = f"running since {started}"
        else:
            state = f"started {started}, no longer running; the next pass collects the result"
        where = ""
        job_id = record.get("slurm_job_id") or (poll.slurm_job_id if poll else None)
        if job_id:
            cluster_state = (poll.cluster_state if poll else None) or "unknown"
            where = f", Slurm job {job_id}: {cluster_state}"
        lines.append(
            f"  {ds}/{name}: {state} (timeout {record.get('timeout', '?')} s, "
            f"sandbox {record.get('sandbox', '?')}{where})"
        )
    return lines
