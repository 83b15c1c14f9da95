"""Opening the app outside a pass: read-only views and locked changes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from syft_bg_app import logsetup
from syft_bg_app.config.load import load_config
from syft_bg_app.context import Context
from syft_bg_app.store.home import AppHome
from syft_bg_app.store.lock import PassLock

# A command that changes state waits this long for a running pass to finish.
LOCK_WAIT_SECONDS = 60.0


def open_view(home: AppHome) -> Context:
    """The app as it is now, for reading (no lock, nothing saved)."""
    return Context.open(home, load_config(home.config_file))


@contextmanager
def changing(home: AppHome, purpose: str) -> Iterator[Context]:
    """Hold the app lock, yield a context, save the checkpoint on success."""
    config = load_config(home.config_file)
    logsetup.configure_from_config(home, config)
    with PassLock(home, wait=LOCK_WAIT_SECONDS, purpose=purpose):
        ctx = Context.open(home, config)
        yield ctx
        ctx.state.save()
