"""``syft-bg setup-status``: is this machine ready to run passes?

One line per check with ✓ or ✗, and under each ✗ the command (or the edit)
that fixes it. The checks only read, except with ``--repair``, which first
rewrites the job folders and permission files the app itself owns (never the
config, never credentials). The checks themselves live in ``setup_checks/``,
one module per area.
"""

from __future__ import annotations

import stat

from syft_bg_app.actions.setup_checks import Check, checkpoint_data
from syft_bg_app.actions.setup_checks.datasets import dataset_checks
from syft_bg_app.actions.setup_checks.datasite import (
    datasite_check,
    permission_check,
    permission_problems,
    repair_owned_files,
    syftbox_check,
)
from syft_bg_app.actions.setup_checks.drive import drive_checks
from syft_bg_app.actions.setup_checks.machine import (
    cluster_check,
    job_needs_checks,
    last_pass_check,
    sandbox_check,
    schedule_check,
)
from syft_bg_app.actions.setup_checks.mail import mail_checks, reply_check
from syft_bg_app.config.load import Config, load_config
from syft_bg_app.errors import ConfigError
from syft_bg_app.invocation import command, localize, prefix
from syft_bg_app.store.home import AppHome

OK_MARK, BAD_MARK, WARN_MARK = "✓", "✗", "⚠"
RULE = "=" * 60
INIT_FIX = "syft-bg init -e YOU@EXAMPLE.ORG -r ~/SyftBox"
FIRST_CONFIG = "fix the config first (above)"

__all__ = ["Check", "mail_checks", "permission_problems", "render", "run_checks"]


def render(checks: list[Check], home: AppHome | None = None) -> str:
    lines = ["SYFT-BG ENVIRONMENT CHECK", RULE]
    for check in checks:
        mark = BAD_MARK if not check.ok else WARN_MARK if check.warning else OK_MARK
        lines.append(f"{mark} {check.label}: {localize(check.detail, home)}")
        if (not check.ok or check.warning) and check.fix:
            for i, part in enumerate(localize(check.fix, home).split("\n")):
                lines.append(f"    {'fix: ' if i == 0 else '     '}{part}")
    lines.append("-" * len(RULE))
    bad = [c for c in checks if not c.ok and not c.skipped]
    skipped = [c for c in checks if c.skipped]
    warned = [c for c in checks if c.ok and c.warning]
    if not bad and not skipped:
        also = f" (but see the {WARN_MARK} above)" if warned else ""
        lines.append(
            f"✅ Environment ready{also}! Passes run by themselves; watch them with: {prefix(home)}"
        )
    else:
        noun = "problem" if len(bad) == 1 else "problems"
        also = f" ({len(skipped)} checks wait for them)" if skipped else ""
        lines.append(
            f"{BAD_MARK} {len(bad)} {noun}{also}; run the fix under each, then: "
            f"{command('setup-status', home)}"
        )
    return "\n".join(lines)


def run_checks(home: AppHome, repair: bool = False) -> list[Check]:
    checks: list[Check] = []
    config = _config_check(home, checks)
    if config is None:
        for label in ("SyftBox folder", "datasite", "permission files", "mail"):
            checks.append(
                Check(False, label, "not checked until config.yaml is valid", FIRST_CONFIG, True)
            )
    else:
        if repair:
            checks.extend(repair_owned_files(home, config))
        if syftbox_check(config, checks):
            if datasite_check(config, checks):
                permission_check(home, config, checks)
                checks.extend(dataset_checks(home, config))
            else:
                checks.append(
                    Check(
                        False,
                        "permission files",
                        "not checked: no datasite folders",
                        "syft-bg setup-status --repair",
                        True,
                    )
                )
        else:
            fix = "fix the SyftBox folder first (above)"
            checks.append(Check(False, "datasite", "not checked: no SyftBox folder", fix, True))
            checks.append(Check(False, "permission files", "not checked: no datasite", fix, True))
        checks.extend(mail_checks(home, config))
        checks.extend(reply_check(home, config))
        if config.get("sync.transport") == "drive":
            checks.extend(drive_checks(home, config))
    checks.append(sandbox_check(config))
    if config is not None:
        cluster = cluster_check(config)
        if cluster is not None:
            checks.append(cluster)
        checks.extend(job_needs_checks(config, home))
    state, state_problem = checkpoint_data(home)
    if state_problem:
        fix = f"mv {home.state_file} {home.state_file}.damaged   (then run a pass)"
        checks.append(Check(False, "checkpoint", state_problem, fix))
    checks.append(schedule_check(home, config, state))
    checks.append(last_pass_check(config, state))
    return checks


# -- config -----------------------------------------------------------------------------


def _config_check(home: AppHome, checks: list[Check]) -> Config | None:
    path = home.config_file
    if not path.exists():
        checks.append(Check(False, "config", f"no config at {path}", INIT_FIX))
        return None
    try:
        config = load_config(path)
    except ConfigError as exc:
        problems = str(exc).splitlines()
        detail = f"{len(problems)} problem(s) in {path}:\n  " + "\n  ".join(problems[:10])
        checks.append(
            Check(
                False,
                "config",
                detail,
                f"edit {path} at the lines above (or start over: syft-bg init -e YOUR_EMAIL "
                f"--force)",
            )
        )
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        checks.append(
            Check(
                False,
                "config",
                f"{path} is readable by others (mode {mode:o})",
                f"chmod 600 {path}",
            )
        )
        return config
    note = f"; {len(config.warnings)} note(s) in syft-bg status" if config.warnings else ""
    checks.append(Check(True, "config", f"{path} is valid (do_email {config.do_email}){note}"))
    return config
