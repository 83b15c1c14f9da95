"""Housekeeping: run folders are kept execute.keep_days for their logs, then removed."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from syft_bg_app.clock import iso, parse_iso, utcnow
from syft_bg_app.context import Context
from syft_bg_app.datasite.linksafe import remove_tree
from syft_bg_app.execution import prepare
from syft_bg_app.execution.backends import RunBackend
from syft_bg_app.execution.sandbox import RunLayout

CLEANUP_EVERY = timedelta(hours=1)


def clean_old_runs(ctx: Context, backend: RunBackend) -> None:
    """Delete run folders finished more than execute.keep_days ago (hourly at most)."""
    memo = ctx.state.data.setdefault("execute", {})
    now = utcnow()
    last = memo.get("cleaned_at")
    if last and now - parse_iso(last) < CLEANUP_EVERY:
        return
    memo["cleaned_at"] = iso(now)
    entries = []
    # Before run folders moved out of the app home they were in its runs/; runs of
    # another backend stay where that backend put them.
    places = (backend.runs_dir(ctx.home), ctx.home.runs_dir, ctx.home.root / "runs")
    for folder in dict.fromkeys(places):
        try:
            entries += list(os.scandir(folder))
        except OSError:
            continue
    busy = {
        record.get("run_dir")
        for _, _, record in ctx.state.iter_jobs()
        if record["status"] == "running"
    }
    cutoff = (now - timedelta(days=ctx.config.get("execute.keep_days"))).timestamp()
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False) or entry.path in busy:
            continue
        if entry.name == prepare.CACHE_FOLDER:
            continue
        layout = RunLayout(Path(entry.path))
        if backend.poll(layout).alive:
            continue
        try:
            finished = max(
                os.lstat(p).st_mtime for p in (entry.path, layout.status) if os.path.lexists(p)
            )
        except (OSError, ValueError):
            continue
        if finished < cutoff:
            remove_tree(Path(entry.path))
            ctx.log("execute").info("removed old run folder %s", entry.name)
