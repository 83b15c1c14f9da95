"""Step 4, execute: reap finished runs, clean old run folders, start approved jobs.

A job runs as a detached, supervised process from a working copy of its
approval snapshot; the pass only starts it and returns, and a later pass reaps
it (``execution.start``, ``execution.reap``, ``execution.publish``). Each job
is handled on its own: one that cannot be collected or started never holds up
the others, and the step fails at the end, counting them.
"""

from __future__ import annotations

from syft_bg_app.context import Context
from syft_bg_app.execution.backends import backend_for
from syft_bg_app.execution.housekeeping import clean_old_runs
from syft_bg_app.execution.reap import reap_running
from syft_bg_app.execution.start import start_approved
from syft_bg_app.steps.isolation import StepItems, raise_failures


def run(ctx: Context) -> None:
    log = ctx.log("execute")
    backend = backend_for(ctx)
    collected = StepItems(log, "running job", "could not be collected")
    started = StepItems(log, "approved job", "failed to start")
    try:
        reap_running(ctx, backend, collected)
        try:
            clean_old_runs(ctx, backend)
        except Exception:
            log.exception("cleaning old run folders failed")
    finally:
        start_approved(ctx, backend, started)
    raise_failures(collected, started)
