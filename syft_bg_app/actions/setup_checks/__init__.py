"""The checks of ``syft-bg setup-status``, one module per area: the datasite and
its permission files, mail, and the machine (sandbox, job network, schedule,
last pass). ``actions/setup_check.py`` runs them in order and renders them."""

from __future__ import annotations

from dataclasses import dataclass

from syft_bg_app.store.home import AppHome


@dataclass
class Check:
    """One line of setup-status: ✓ or ✗ (⚠ for a warning), what was found, and the fix."""

    ok: bool
    label: str
    detail: str
    fix: str | None = None
    # Not checked because an earlier check failed; not counted as a problem of its own.
    skipped: bool = False
    # Works, but looks wrong (shown with ⚠ and its fix; not counted as a problem).
    warning: bool = False


def checkpoint_data(home: AppHome) -> tuple[dict, str | None]:
    """The checkpoint's data, or nothing and why it cannot be loaded."""
    from syft_bg_app.store.state import State, StateError

    try:
        return State.load(home.state_file).data, None
    except StateError as exc:
        return {}, str(exc)
