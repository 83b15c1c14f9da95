"""syft-bg app: the one-pass background app for a SyftBox data owner.

``import syft_bg_app as bg`` gives the Python API (see ``syft_bg_app.api``):
``bg.init``, ``bg.status``, ``bg.run_once``, ``bg.jobs``, ``bg.pending``,
``bg.approve``, ``bg.reject``, ``bg.auto_approve``, ``bg.auto_approve_job``,
``bg.list_auto_approvals``, ``bg.remove_auto_approve``, ``bg.submit``,
``bg.my_jobs``, ``bg.request_peer``, ``bg.job``.

The API is loaded on first use: every pass imports this package, and a pass
must stay cheap. Three API names (``jobs``, ``status``, ``approve``) are also
the names of modules of this package; once such a module is imported it *is*
the package attribute, so it is made callable and calling it calls the API
function. Code inside the package keeps using those modules as modules.
"""

from __future__ import annotations

import importlib
import sys
import types

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
    "my_jobs",
    "request_peer",
    "job",
)
# API names that are also modules of this package.
SHARED_NAMES = frozenset({"jobs", "status", "approve"})


class _CallableModule(types.ModuleType):
    """A module of this package whose name is also an API function."""

    def __call__(self, *args: object, **kwargs: object) -> object:
        api = importlib.import_module(f"{__name__}.api")
        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)

    def __repr__(self) -> str:
        short = self.__name__.rpartition(".")[2]
        return f"<module {self.__name__!r}; calling it calls {__name__}.api.{short}>"


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: object) -> None:
        # The import system binds each newly imported submodule here.
        if name in SHARED_NAMES and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> object:
    if name in SHARED_NAMES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in API:
        return getattr(importlib.import_module(f"{__name__}.api"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(API))
