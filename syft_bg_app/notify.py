"""Notify step: turn queued events into emails."""

from __future__ import annotations

from .context import Context


def run(ctx: Context) -> None:
    return None
