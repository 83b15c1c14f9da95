"""Execute step: start approved jobs in a sandbox; reap finished ones."""

from __future__ import annotations

from .context import Context


def run(ctx: Context) -> None:
    return None
