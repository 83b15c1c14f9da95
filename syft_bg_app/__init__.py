"""syft-bg app: the one-pass background app for a SyftBox data owner.

``import syft_bg_app as bg`` gives the Python API (see ``syft_bg_app.api.owner``):
``bg.init``, ``bg.status``, ``bg.run_once``, ``bg.jobs``, ``bg.pending``,
``bg.approve``, ``bg.reject``, ``bg.auto_approve``, ``bg.auto_approve_job``,
``bg.list_auto_approvals``, ``bg.remove_auto_approve``, ``bg.submit``,
``bg.submit_script``, ``bg.wait_for_completion``, ``bg.help``, ``bg.review``,
``bg.my_jobs``, ``bg.request_peer``, ``bg.job``, ``bg.peers``, ``bg.accept_peer``,
``bg.reject_peer``, ``bg.block_peer``, ``bg.unblock_peer``, ``bg.rerun``,
``bg.start_services``, ``bg.stop_services``.

The API is loaded on first use: every pass imports this package, and a pass
must stay cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

API = (
    "init",
    "status",
    "run_once",
    "jobs",
    "pending",
    "approve",
    "reject",
    "auto_approve",
    "auto_approve_job",
    "list_auto_approvals",
    "remove_auto_approve",
    "submit",
    "submit_script",
    "wait_for_completion",
    "help",
    "my_jobs",
    "request_peer",
    "job",
    "review",
    "peers",
    "accept_peer",
    "reject_peer",
    "block_peer",
    "unblock_peer",
    "create_dataset",
    "datasets",
    "dataset",
    "share_dataset",
    "unshare_dataset",
    "delete_dataset",
    "rerun",
    "start_services",
    "stop_services",
)


def __getattr__(name: str) -> object:
    if name in API:
        return getattr(importlib.import_module(f"{__name__}.api.owner"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(API))
