"""Step 4, execute: reap finished runs, then start approved jobs in the sandbox."""

from __future__ import annotations

from syft_bg_app.context import Context
from syft_bg_app.execution import runs


def run(ctx: Context) -> None:
    runs.run(ctx)
