"""setup-status checks of the SyftBox folder, the datasite's job folders and the
permission files the app owns; ``--repair`` rewrites those (never the config,
never credentials)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syft_bg_app.actions.setup_checks import Check, checkpoint_data
from syft_bg_app.config.load import Config
from syft_bg_app.store.home import AppHome


def syftbox_check(config: Config, checks: list[Check]) -> bool:
    root = config.syftbox_root
    if root.is_dir() and config.get("sync.transport") == "drive":
        # No SyftBox client syncs this folder: the app itself is its syncer.
        checks.append(
            Check(True, "SyftBox folder", f"{root}: kept in sync by this app over Google Drive")
        )
        return True
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


def datasite_check(config: Config, checks: list[Check]) -> bool:
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
    state, _ = checkpoint_data(home)
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


def permission_check(home: AppHome, config: Config, checks: list[Check]) -> None:
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


def repair_owned_files(home: AppHome, config: Config) -> list[Check]:
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
