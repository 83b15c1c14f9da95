"""``syft-bg setup-status``: is this machine ready to run passes?

One line per check with ✓ or ✗, and under each ✗ the command (or the edit)
that fixes it. The checks only read, except with ``--repair``, which first
rewrites the job folders and permission files the app itself owns (never the
config, never credentials).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from syft_bg_app.config.load import Config, load_config
from syft_bg_app.errors import ConfigError
from syft_bg_app.invocation import command, localize, prefix
from syft_bg_app.store.home import AppHome

OK_MARK, BAD_MARK, WARN_MARK = "✓", "✗", "⚠"
RULE = "=" * 60
INIT_FIX = "syft-bg init -e YOU@EXAMPLE.ORG -r ~/SyftBox"
FIRST_CONFIG = "fix the config first (above)"


@dataclass
class Check:
    ok: bool
    label: str
    detail: str
    fix: str | None = None
    # Not checked because an earlier check failed; not counted as a problem of its own.
    skipped: bool = False
    # Works, but looks wrong (shown with ⚠ and its fix; not counted as a problem).
    warning: bool = False


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
            checks.extend(_repair(home, config))
        if _syftbox_check(config, checks):
            if _datasite_check(config, checks):
                _permission_check(home, config, checks)
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
        if config.get("sync.transport") == "drive":
            checks.append(_drive_check(home, config))
    checks.append(_sandbox_check(config))
    if config is not None:
        checks.extend(_job_needs_checks(config))
    state, state_problem = _state(home)
    if state_problem:
        fix = f"mv {home.state_file} {home.state_file}.damaged   (then run a pass)"
        checks.append(Check(False, "checkpoint", state_problem, fix))
    checks.append(_schedule_check(home, config, state))
    checks.append(_last_pass_check(config, state))
    return checks


# -- config, folders, permission files ---------------------------------------------------


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


def _syftbox_check(config: Config, checks: list[Check]) -> bool:
    root = config.syftbox_root
    if root.is_dir():
        lonely = _lonely_datasite(config)
        if lonely:
            detail, fix = lonely
            checks.append(Check(True, "SyftBox folder", f"{root}: {detail}", fix, warning=True))
        else:
            checks.append(Check(True, "SyftBox folder", str(root)))
        return True
    where = config.path or "config.yaml"
    checks.append(
        Check(
            False,
            "SyftBox folder",
            f"{root} does not exist",
            f"start SyftBox once (it creates the folder), or set syftbox_root in {where} "
            f"to your SyftBox folder",
        )
    )
    return False


def _lonely_datasite(config: Config) -> tuple[str, str] | None:
    """(what looks wrong, what to do) when the datasite has nothing of SyftBox beside it:
    no other datasite and no trace of a SyftBox client, as a mistyped folder would."""
    from syft_bg_app.sync.syftbox_client import client_folder, traces

    datasite = _datasite(config)
    if traces(config.syftbox_root, datasite.path):
        return None
    found = client_folder()
    hint = ""
    if found is not None and found.data_dir is not None:
        hint = f"; the SyftBox client's config {found.path} names {found.data_dir}"
    where = config.path or "config.yaml"
    return (
        "no other datasite and no sign of a SyftBox client here (a mistyped folder?)" + hint,
        f"if this is not the folder SyftBox syncs, set syftbox_root in {where} to it",
    )


def _datasite(config: Config) -> Any:
    from syft_bg_app.datasite.layout import Datasite

    return Datasite(config.syftbox_root, config.do_email)


def _datasite_check(config: Config, checks: list[Check]) -> bool:
    datasite = _datasite(config)
    missing = [
        str(p.relative_to(datasite.root))
        for p in (datasite.inbox, datasite.review, datasite.peers)
        if not p.is_dir()
    ]
    layout = f"ROOT/{datasite.layout}"
    if missing:
        checks.append(
            Check(
                False,
                "datasite",
                f"{datasite.path} ({layout}) lacks {', '.join(missing)}",
                "syft-bg setup-status --repair",
            )
        )
        return False
    checks.append(Check(True, "datasite", f"{datasite.path} (layout {layout}, syft-job v1)"))
    return True


def _grants(path: Path, right: str, who: str) -> str | None:
    """None when ``path`` grants ``right`` (or more) on everything to ``who``; else why not."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{path} is missing"
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return f"{path} cannot be read ({type(exc).__name__})"
    rules = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(rules, list):
        return f"{path} has no rules"
    levels = {"read": ("read", "write", "admin"), "write": ("write", "admin")}[right]
    for rule in rules:
        if not isinstance(rule, dict) or not isinstance(rule.get("access"), dict):
            continue
        for level in levels:
            people = rule["access"].get(level) or []
            if isinstance(people, list) and who in people:
                return None
    return f"{path} does not let {who} {right}"


def _too_open(path: Path) -> str | None:
    """Results must be shared with the submitting DS only."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    for rule in data.get("rules") or []:
        access = rule.get("access") if isinstance(rule, dict) else None
        if isinstance(access, dict):
            for level in ("read", "write", "admin"):
                if "*" in (access.get(level) or []):
                    return f"{path} gives everyone {level} access"
    return None


def _accepted_peers(home: AppHome) -> list[str]:
    state, _ = _state(home)
    return sorted(e for e, r in state.get("peers", {}).items() if r.get("status") == "accepted")


def permission_problems(home: AppHome, config: Config) -> tuple[list[str], list[str]]:
    """(problems, peers whose folders need rewriting)."""
    datasite = _datasite(config)
    problems: list[str] = []
    peers_file = datasite.peers / "syft.pub.yaml"
    why = _grants(peers_file, "write", "USER")
    if why is None:
        import yaml

        rules = (yaml.safe_load(peers_file.read_text()) or {}).get("rules") or []
        if not any(r.get("pattern") == "{{.UserEmail}}/**" for r in rules if isinstance(r, dict)):
            why = f"{peers_file} does not limit each user to their own folder"
    if why:
        problems.append(why)
    broken_peers = []
    for email in _accepted_peers(home):
        issues = [
            _grants(datasite.inbox / email / "syft.pub.yaml", "write", email),
            _grants(datasite.review / email / "syft.pub.yaml", "read", email),
            _too_open(datasite.review / email / "syft.pub.yaml"),
        ]
        issues = [i for i in issues if i]
        if issues:
            problems.extend(issues)
            broken_peers.append(email)
    return problems, broken_peers


def _permission_check(home: AppHome, config: Config, checks: list[Check]) -> None:
    problems, _ = permission_problems(home, config)
    peers = _accepted_peers(home)
    if problems:
        checks.append(
            Check(
                False,
                "permission files",
                "; ".join(problems[:5])
                + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""),
                "syft-bg setup-status --repair",
            )
        )
        return
    checks.append(
        Check(
            True,
            "permission files",
            f"peer requests folder, and inbox/review of {len(peers)} accepted peer(s)",
        )
    )


def _repair(home: AppHome, config: Config) -> list[Check]:
    """Rewrite the folders and permission files the app owns; report what was done."""
    from syft_bg_app.session import LOCK_WAIT_SECONDS
    from syft_bg_app.store.lock import PassLock

    if not config.syftbox_root.is_dir():
        return []
    datasite = _datasite(config)
    done = []
    with PassLock(home, wait=LOCK_WAIT_SECONDS, purpose="setup-status --repair"):
        problems, broken = permission_problems(home, config)
        layout_missing = not all(
            p.is_dir() for p in (datasite.inbox, datasite.review, datasite.peers)
        )
        peers_bad = any(str(datasite.peers) in p for p in problems)
        if layout_missing or peers_bad:
            datasite.ensure_base_layout()
            done.append("job folders and the peer-request permission file")
        for email in broken:
            datasite.ensure_peer_folders(email)
            done.append(f"inbox/review permission files of {email}")
    if not done:
        return []
    return [Check(True, "repair", "rewrote " + ", ".join(done))]


# -- mail ------------------------------------------------------------------------------------


def _mode_problem(path: Path) -> str | None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return f"{path} can be read by other users (mode {mode:o})"
    return None


def mail_checks(home: AppHome, config: Config) -> list[Check]:
    from syft_bg_app.store.state import StateError

    try:
        return _mail_checks(home, config)
    except StateError:
        # The mail state lives in the checkpoint; its own line says what is wrong.
        why = "not checked: the checkpoint is damaged"
        return [Check(False, "mail", why, "see the checkpoint line", True)]


def _mail_checks(home: AppHome, config: Config) -> list[Check]:
    transport = config.get("notify.transport")
    if not config.step_enabled("notify"):
        return [Check(True, "mail", "the notify service is stopped; no email is sent")]
    if transport == "smtp":
        checks = _smtp_checks(home, config)
    elif transport == "gmail":
        checks = _gmail_checks(home, config)
    else:
        checks = [
            Check(
                True,
                "mail",
                f"outbox: emails are written to {home.outbox_dir} as .eml files, not sent "
                f"(set notify.transport to smtp or gmail to send them)",
            )
        ]
    if all(c.ok for c in checks):
        checks.extend(_delivery_problem(home, config))
    return checks


def _smtp_checks(home: AppHome, config: Config) -> list[Check]:
    from syft_bg_app.mail.errors import PermanentMailError
    from syft_bg_app.mail.smtp import read_password

    settings = config.get("notify.smtp")
    where = config.path or "config.yaml"
    if not settings.get("host"):
        return [
            Check(
                False,
                "mail (smtp)",
                "notify.smtp.host is not set",
                f"set notify.smtp.host (and port, username, password_file) in {where}",
            )
        ]
    host = f"{settings['host']} ({settings['security']})"
    try:
        password = read_password(settings, home.root)
    except PermanentMailError as exc:
        return [Check(False, "mail (smtp)", f"{host}: {exc.message}", exc.advice or None)]
    if password is None:
        return [Check(True, "mail (smtp)", f"{host}, no login")]
    env_name = settings.get("password_env")
    if env_name and os.environ.get(env_name) and not settings.get("password_file"):
        return [
            Check(
                False,
                "mail (smtp)",
                f"{host}: the password comes only from ${env_name}, which passes started by "
                f"cron or a systemd timer do not see",
                "put the password in a file only you can read (chmod 600 FILE) and set "
                "notify.smtp.password_file to it",
            )
        ]
    return [Check(True, "mail (smtp)", f"{host}, password file present and private (0600)")]


def _gmail_checks(home: AppHome, config: Config) -> list[Check]:
    from syft_bg_app.context import Context
    from syft_bg_app.mail.deliver import gmail_paths
    from syft_bg_app.mail.errors import PermanentMailError, TransientMailError
    from syft_bg_app.mail.gmail import GmailTransport, load_credentials, token_due_for_refresh
    from syft_bg_app.mail.retry import Deadline

    token, credentials = gmail_paths(Context.open(home, config))
    # The sign-in command of the notify area (init --gmail only signs in when a config exists).
    relogin = f"syft-bg init -e {config.do_email} --gmail {credentials}"
    if not credentials.exists():
        relogin = (
            f"download the OAuth client file (Desktop app) from the Google Cloud console to "
            f"{credentials}, then:\n{relogin}"
        )
    if not token.exists():
        return [Check(False, "Gmail token", f"no token at {token}", relogin)]
    bad_mode = _mode_problem(token)
    if bad_mode:
        return [Check(False, "Gmail token", bad_mode, f"chmod 600 {token}")]
    try:
        creds = load_credentials(token, config.do_email, credentials)
    except PermanentMailError as exc:
        return [Check(False, "Gmail token", exc.message, relogin)]
    if not creds.refresh_token:
        return [
            Check(
                False,
                "Gmail token",
                f"{token} has no refresh token, so it stops working within an hour",
                relogin,
            )
        ]
    if token_due_for_refresh(token):
        # Expired or about to: refresh it now, as the next pass would.
        transport = GmailTransport(
            token, credentials, config.do_email, config.get("notify.gmail.api_endpoint")
        )
        try:
            transport.refresh_if_needed(Deadline(20))
        except PermanentMailError as exc:
            return [Check(False, "Gmail token", exc.message, relogin)]
        except TransientMailError as exc:
            return [
                Check(
                    False,
                    "Gmail token",
                    f"could not be refreshed now: {exc.message}",
                    "check the network connection, then: syft-bg setup-status",
                )
            ]
        return [Check(True, "Gmail token", f"{token}: refreshed just now (private, 0600)")]
    return [Check(True, "Gmail token", f"{token}: valid, refreshable, private (0600)")]


def _drive_check(home: AppHome, config: Config) -> Check:
    from syft_bg_app.mail.smtp import resolve_path
    from syft_bg_app.sync.drive.service import check_sign_in

    token = resolve_path(config.get("drive.token"), home.root)
    problem = check_sign_in(token, config.do_email, config.get("drive.api_endpoint"))
    if problem:
        fix = f"save a Drive token of {config.do_email} (mode 0600) at {token}"
        return Check(False, "Drive sign-in", problem, fix)
    return Check(True, "Drive sign-in", f"{token}: signs in as {config.do_email}, private (0600)")


def _delivery_problem(home: AppHome, config: Config) -> list[Check]:
    """A permanent failure the last pass recorded and nothing has changed since."""
    from syft_bg_app.context import Context
    from syft_bg_app.mail.deliver import fingerprint
    from syft_bg_app.mail.queue import peek

    ctx = Context.open(home, config)
    mail = peek(ctx.state)
    problem = mail.get("problem")
    queued = len(mail["queue"])
    if not problem or problem.get("kind") != "permanent":
        return []
    if problem.get("fingerprint") != fingerprint(ctx):
        return [
            Check(
                True,
                "mail delivery",
                f"failed at {problem['at']}, but the settings changed since; the next pass "
                f"tries the {queued} queued email(s) again",
            )
        ]
    return [
        Check(
            False,
            "mail delivery",
            f"failing since {problem['since']}: {problem['error']} ({queued} email(s) queued)",
            (problem.get("advice") or "fix the cause") + "\nthen: syft-bg mail retry",
        )
    ]


# -- sandbox, schedule, last pass ---------------------------------------------------------------


def _sandbox_check(config: Config | None) -> Check:
    from syft_bg_app.execution.sandbox import fix_for, none_warning, probe_bwrap

    network = config.get("execute.network") if config else "internet"
    wanted = config.get("execute.sandbox") if config else "auto"
    where = config.path if config else "config.yaml"
    probe = probe_bwrap(network)
    if wanted == "none":
        fix = f"set execute.sandbox: auto in {where}"
        if not probe.ok:
            fix = f"{fix_for(probe)}\nthen {fix}"
        return Check(False, "bwrap", f"{none_warning()} ({probe.detail})", fix)
    if not probe.ok:
        return Check(
            False,
            "bwrap",
            f"{probe.detail}; approved jobs wait: with execute.sandbox: {wanted} they never "
            f"run without isolation",
            f"{fix_for(probe)}\n(or, to run jobs without isolation: execute.sandbox: none in "
            f"{where})",
        )
    return Check(True, "bwrap", probe.detail)


def _job_needs_checks(config: Config) -> list[Check]:
    """What syft-job python jobs need from this machine: a network that reaches a
    package index, and uv."""
    from syft_bg_app.execution.sandbox import INSTALL_SLIRP, find_tools, job_network

    where = config.path or "config.yaml"
    sandbox_mode = "none" if config.get("execute.sandbox") == "none" else "bwrap"
    net = job_network(config, sandbox_mode)
    checks = []
    if net.note and net.slirp4netns is None and sandbox_mode == "bwrap":
        checks.append(
            Check(
                False,
                "job network",
                net.note,
                f"{INSTALL_SLIRP}\n(or, to keep jobs offline: execute.network: off in {where})",
            )
        )
    elif net.note:
        checks.append(Check(True, "job network", net.note, warning=True))
    else:
        described = {
            "internet": "internet through slirp4netns (not this machine's 127.0.0.1 services)",
            "off": "off: jobs have nothing but their own loopback (python jobs cannot "
            "install packages)",
            "host": "host: jobs share this machine's network, 127.0.0.1 services included",
        }
        checks.append(Check(True, "job network", described[net.mode], warning=net.mode == "host"))
    if "uv" not in config.get("execute.tools"):
        checks.append(
            Check(
                True,
                "uv",
                "not in execute.tools: syft-job python jobs (they run uv) fail",
                f"add uv to execute.tools in {where}",
                warning=True,
            )
        )
    elif "uv" in find_tools(["uv"]):
        checks.append(Check(True, "uv", f"{find_tools(['uv'])['uv']} (python jobs run it)"))
    else:
        checks.append(
            Check(
                False,
                "uv",
                "not found: syft-job python jobs (they run uv) fail",
                "reinstall the app's environment (rm -rf .venv beside run.sh, then run.sh), "
                "or: pip install uv",
            )
        )
    return checks


def _state(home: AppHome) -> tuple[dict, str | None]:
    """The checkpoint's data, or nothing and why it cannot be loaded."""
    from syft_bg_app.store.state import State, StateError

    try:
        return State.load(home.state_file).data, None
    except StateError as exc:
        return {}, str(exc)


def _schedule_check(home: AppHome, config: Config | None, state: dict) -> Check:
    from syft_bg_app.schedule import install as schedule

    try:
        info = schedule.inspect(home, state.get("last_pass"), ask_manager=False)
    except schedule.ScheduleError as exc:
        return Check(False, "schedule", str(exc), "syft-bg install")
    if info.hosted:
        return Check(True, "schedule", info.detail)
    if not info.installed and info.method is None:
        why = "; ".join(["nothing runs passes by itself", *info.problems])
        return Check(False, "schedule", why, "syft-bg install")
    if not info.installed:
        return Check(False, "schedule", "; ".join(info.problems), "syft-bg install")
    if not info.enabled:
        return Check(False, "schedule", f"{info.detail} is switched off", "syft-bg start")
    for problem in info.problems:
        if "cron daemon" in problem:
            return Check(
                False,
                "schedule",
                f"{info.detail}: {problem}",
                "sudo systemctl enable --now cron   (or: sudo service cron start)",
            )
        return Check(False, "schedule", problem, "syft-bg install")
    if config is not None:
        wanted = config.get("schedule.interval")
        if info.method == "cron":
            wanted = schedule.cron_expression(wanted)[1]
        if info.interval != wanted:
            return Check(
                False,
                "schedule",
                f"installed for every {info.interval} s, schedule.interval says {wanted} s",
                "syft-bg install",
            )
    return Check(True, "schedule", f"{info.detail}, every {info.interval} s")


def _last_pass_check(config: Config | None, state: dict, now: datetime | None = None) -> Check:
    from syft_bg_app.actions.services import _ago
    from syft_bg_app.clock import parse_iso

    last = state.get("last_pass")
    if not last:
        return Check(
            False, "last pass", "no pass has run yet", "syft-bg run --once   (or ./run.sh)"
        )
    finished = parse_iso(last["finished_at"])
    now = now or datetime.now(timezone.utc)
    age = _ago(finished, now)
    if last.get("failed_steps"):
        steps = last["failed_steps"]
        return Check(
            False,
            "last pass",
            f"{age}, with failed steps: {', '.join(steps)}",
            f"syft-bg logs {steps[0] if len(steps) == 1 else 'all'}",
        )
    interval = config.get("schedule.interval") if config else 60
    if (now - finished).total_seconds() > 3 * max(interval, 60) + 60:
        return Check(
            False,
            "last pass",
            f"finished {age}, but passes should run every {interval} s",
            "syft-bg logs pass   (and run one now: syft-bg run --once)",
        )
    return Check(True, "last pass", f"finished {age}: {last.get('summary', '')}")
