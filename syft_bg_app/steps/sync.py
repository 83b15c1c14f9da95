"""Step 1, sync: see what changed in the datasite (new peers, new jobs, finished jobs).

The transport that keeps the datasite folder up to date does its part here;
with ``sync.transport: local`` a SyftBox client already did, and the step reads
the folder; with ``drive`` the app does it (``sync/drive/``) and then reads it.
"""

from __future__ import annotations

from syft_bg_app.context import Context
from syft_bg_app.sync import transport


def run(ctx: Context) -> None:
    transport.run(ctx)
