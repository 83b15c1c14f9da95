"""The sync transports behind the one call the sync step makes.

``local``: a SyftBox client keeps the datasite folder in sync; the step only
reads it. ``drive``: the app first does the data owner's side of the
syft-client Google Drive protocol into that folder, then reads it the same way,
so notify, approve and execute never know which transport ran.
"""

from __future__ import annotations

from syft_bg_app.context import Context
from syft_bg_app.sync import local


def run(ctx: Context) -> None:
    if ctx.config.get("sync.transport") == "drive":
        from syft_bg_app.sync.drive import owner

        try:
            owner.run(ctx)
        finally:
            # What did arrive is read even when Drive failed part-way.
            local.run(ctx)
            owner.reject_refused_jobs(ctx)
        return
    local.run(ctx)
