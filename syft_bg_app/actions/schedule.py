"""``install`` and ``uninstall``: the schedule that runs passes by themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from syft_bg_app.config.load import SCHEMA, Config, load_config
from syft_bg_app.errors import ConfigError, UsageError
from syft_bg_app.store.home import AppHome


@dataclass
class Installed:
    """What install did (or, with ``dry_run``, would do).

    ``plan`` is the schedule's plan; ``changed`` what was written (empty: it
    was installed already); ``config`` is None when there is no config yet.
    """

    plan: Any
    interval: int
    interval_changed: bool
    dry_run: bool
    config: Config | None
    changed: list[str] = field(default_factory=list)
    stopped_services: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Uninstalled:
    done: list[str]
    dry_run: bool
    notes: list[str] = field(default_factory=list)


def _interval(
    home: AppHome, interval: int | None, dry_run: bool
) -> tuple[int, bool, Config | None]:
    """(interval, whether config.yaml must change, the config or None)."""
    field_spec = SCHEMA["schedule"].fields["interval"]
    minimum = field_spec.minimum or 1
    if interval is not None and interval < minimum:
        raise UsageError(f"--interval: at least {minimum} seconds, got {interval}")
    try:
        config = load_config(home.config_file)
    except ConfigError:
        if not dry_run:
            raise
        return (interval or field_spec.default), False, None
    configured = config.get("schedule.interval")
    if interval is None:
        return configured, False, config
    return interval, interval != configured, config


def install(
    home: AppHome, interval: int | None = None, method: str = "auto", dry_run: bool = False
) -> Installed:
    """Install (or with ``dry_run`` describe) the systemd timer or crontab line."""
    from syft_bg_app.actions.services import SERVICES
    from syft_bg_app.config.editor import set_values
    from syft_bg_app.schedule import install as schedule
    from syft_bg_app.session import LOCK_WAIT_SECONDS
    from syft_bg_app.store.lock import PassLock

    seconds, config_changes, config = _interval(home, interval, dry_run)
    plan = schedule.plan_install(home, seconds, method, dry_run=dry_run)
    result = Installed(plan, seconds, config_changes, dry_run, config)
    if dry_run:
        return result
    if config_changes:
        with PassLock(home, wait=LOCK_WAIT_SECONDS, purpose="install"):
            set_values(home.config_file, {"schedule.interval": seconds})
    home.logs_dir.mkdir(parents=True, exist_ok=True)
    result.changed = schedule.apply(home, plan)
    result.notes = list(plan.notes)
    if config is not None:
        result.stopped_services = [s for s in SERVICES if not config.step_enabled(s)]
    return result


def uninstall(home: AppHome, dry_run: bool = False) -> Uninstalled:
    """Remove what install wrote for this app home (other crontab lines stay)."""
    from syft_bg_app.schedule import install as schedule

    return Uninstalled(schedule.uninstall(home, dry_run=dry_run), dry_run)
