"""What ``syft-bg status`` says about execution: the sandbox and the jobs running now."""

from __future__ import annotations

from pathlib import Path

from syft_bg_app.context import Context
from syft_bg_app.execution import sandbox
from syft_bg_app.execution.backends import backend_for
from syft_bg_app.execution.sandbox import RunLayout


def status_lines(ctx: Context) -> list[str]:
    """The sandbox in use and the jobs running now, for ``syft-bg status``."""
    backend = backend_for()
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
        alive = record.get("run_dir") and backend.poll(layout).alive
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
