"""Auto-approval rules: hash files, add, list and remove rules, remove a peer, audit.

Rules live in config.yaml; every change is made by ``config.editor.update_rules``
under the app lock, so a pass never reads a half-edited file.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syft_bg_app.approval.rules import RUN_SH, Rule, find_rules, load_rules
from syft_bg_app.config.load import EMAIL_RE, load_config
from syft_bg_app.datasite.jobfiles import sha256_file
from syft_bg_app.errors import AmbiguousError, NotFoundError, UsageError
from syft_bg_app.store.home import AppHome

if TYPE_CHECKING:
    from syft_bg_app.datasite.layout import JobRef

# -- results ---------------------------------------------------------------------------


@dataclass
class HashedFile:
    path: str
    digest: str


@dataclass
class RuleEdit:
    """A rule created or changed: ``action`` is created or updated."""

    action: str
    rule: Rule
    config_file: Path
    notes: list[str] = field(default_factory=list)


@dataclass
class RuleListing:
    rules: list[Rule]
    warnings: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass
class FilesRemoved:
    """Files taken out of a rule; ``rule_removed`` when none were left."""

    name: str
    removed: list[str]
    rule_removed: bool
    rule: Rule | None
    notes: list[str] = field(default_factory=list)


@dataclass
class RuleRemoved:
    name: str
    config_file: Path
    notes: list[str] = field(default_factory=list)


@dataclass
class PeerRemoved:
    """A data scientist taken out of rules; ``disabled`` lost their last peer."""

    peer: str
    rules: list[str]
    disabled: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass
class AuditEntries:
    subject: str | None
    entries: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


# -- hash --------------------------------------------------------------------------------


def hash_files(names: Sequence[str]) -> list[HashedFile]:
    """``sha256:<hex>`` of each file's raw bytes (what rules pin)."""
    hashed = []
    for name in names:
        if os.path.isdir(name):
            raise UsageError(f"{name} is a folder; hash its files, or: syft-bg auto-approve {name}")
        try:
            hashed.append(HashedFile(name, sha256_file(name)))
        except OSError as exc:
            raise UsageError(f"{name}: {exc.strerror}") from None
    return hashed


# -- building a rule from files ------------------------------------------------------------


def _check_rel(rel: str, shown: str) -> str:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"{shown}: not a plain path inside the job folder")
    return rel


def _rule_path(rel: str, job_layout: bool, shown: str) -> str:
    """Where a file relative to BASE_DIR sits in a job folder."""
    rel = _check_rel(rel.replace("\\", "/"), shown)
    if job_layout:
        if rel != RUN_SH and not rel.startswith("code/"):
            raise UsageError(
                f"{shown}: BASE_DIR is a job folder, where only run.sh and code/ count "
                f"({rel} is not part of any job's file set)"
            )
        return rel
    # Like syft-bg 0.3: outside a job folder, paths are relative to code/.
    return "code/" + rel


def collect_contents(
    contents: Sequence[str], base_dir: str | None, notes: list[str]
) -> tuple[dict[str, str], bool]:
    """{rule path: sha256} for CONTENTS (folders recursively), and whether BASE_DIR is a job."""
    from syft_bg_app.store.fsutil import PERMISSION_FILE, is_ignored_name

    base = Path(os.path.abspath(base_dir or "."))
    if not base.is_dir():
        raise UsageError(f"-b/--base-dir: {base} is not a folder")
    job_layout = (base / RUN_SH).is_file() or (base / "code").is_dir()
    files: dict[str, str] = {}

    def add(path: Path, shown: str, explicit: bool) -> None:
        rel = os.path.relpath(path, base)
        if rel == ".." or rel.startswith("../"):
            raise UsageError(f"{shown} is outside BASE_DIR {base}; pass -b/--base-dir")
        rel = rel.replace(os.sep, "/")
        if job_layout and not explicit and rel != RUN_SH and not rel.startswith("code/"):
            notes.append(f"skipped {rel} (a job's file set is run.sh and code/ only)")
            return
        rule_path = _rule_path(rel, job_layout, shown)
        if rule_path != RUN_SH and path.stat().st_size == 0:
            notes.append(
                f"skipped empty file {rel} (sync clients never deliver empty files, "
                "so they are not part of a job)"
            )
            return
        files[rule_path] = sha256_file(path)

    for arg in contents:
        path = Path(os.path.normpath(base / arg))
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(
                    d
                    for d in dirnames
                    if not is_ignored_name(d, True) and not os.path.islink(os.path.join(dirpath, d))
                )
                for name in sorted(filenames):
                    full = Path(dirpath) / name
                    if is_ignored_name(name, False) or name == PERMISSION_FILE:
                        continue
                    if full.is_symlink():
                        notes.append(f"skipped symlink {full} (a job never contains one)")
                        continue
                    add(full, str(full), explicit=False)
        elif path.is_file():
            add(path, arg, explicit=True)
        else:
            raise UsageError(f"{arg}: no such file or folder (under {base})")
    if not files and contents:
        raise UsageError("no files found in CONTENTS")
    return files, job_layout


def _name_only_paths(values: Sequence[str]) -> set[str]:
    out = set()
    for value in values:
        rel = value.strip().replace("\\", "/")
        while rel.startswith("./"):
            rel = rel[2:]
        # A name-only file need not exist: "code/x" and "run.sh" are job paths,
        # anything else is taken relative to code/ as in syft-bg 0.3.
        if rel == RUN_SH or rel.startswith("code/"):
            path = _check_rel(rel, value)
        else:
            path = _check_rel("code/" + rel, value)
        if path == RUN_SH:
            raise UsageError("-f run.sh: run.sh is what runs; it can only be trusted by content")
        out.add(path)
    return out


def _peers(values: Sequence[str]) -> list[str]:
    peers = []
    for value in values:
        email = value.strip().lower()
        if not EMAIL_RE.fullmatch(email):
            raise UsageError(f"-p/--peer: {value!r} is not an email address")
        if email not in peers:
            peers.append(email)
    return peers


def _from_job(
    home: AppHome, spec: str, notes: list[str]
) -> tuple[dict[str, str], str, str, list[str]]:
    """({path: sha256}, job name, submitter, datasets) of a received job: exactly what it
    contains and the datasets it declares (those approved with it, once approved)."""
    from syft_bg_app.approval import snapshot
    from syft_bg_app.approval.decisions import DecisionError, open_received_job
    from syft_bg_app.datasite.datasets import declared_datasets
    from syft_bg_app.datasite.jobfiles import Limits, collect
    from syft_bg_app.datasite.submission import read_metadata
    from syft_bg_app.session import open_view
    from syft_bg_app.views import jobs as job_views

    ctx = open_view(home)
    ref = job_views.resolve(ctx, spec)
    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol) or {}
    if record.get("status") not in (None, "received", "pending"):
        try:
            # What ran is what the data owner saw the results of.
            _, hashes = snapshot.verified(ctx.home.snapshots_dir, ref)
            notes.append(f"files taken from the approval snapshot of {ref.label}")
            datasets = [name for name in record.get("datasets") or [] if isinstance(name, str)]
            return dict(hashes), ref.name, ref.ds_email, datasets
        except snapshot.SnapshotError:
            pass
    try:
        # Reached without links, and only while it is the folder that was received.
        job_fd = open_received_job(ctx, ref, dict(record))
    except DecisionError as exc:
        raise UsageError(f"{ref.label} cannot be trusted as it is: {exc}") from None
    try:
        found = collect(ctx.datasite.submission_dir(ref), Limits.from_config(ctx.config), job_fd)
        problems = [found.over_limit] if found.over_limit else found.problems
        if problems:
            raise UsageError(f"{ref.label} cannot be trusted as it is: " + "; ".join(problems))
        if RUN_SH not in found.files:
            raise UsageError(f"{ref.label} has no run.sh")
        metadata, _ = read_metadata(Path("config.yaml"), dir_fd=job_fd)
        try:
            datasets = declared_datasets(metadata, ctx.datasite.email)
        except UsageError as exc:
            raise UsageError(f"{ref.label} cannot be trusted as it is: {exc}") from None
        hashes = {rel: found.hash(rel) for rel in sorted(found.files)}
    finally:
        os.close(job_fd)
    changed = _changed_since_received(record, hashes, datasets)
    if changed and record.get("status") == "pending":
        _receive_again(home, ref, hashes, datasets)
        raise UsageError(
            f"{ref.label} changed since it was received ({'; '.join(changed)}): review it "
            f"again (syft-bg jobs show {shlex.quote(ref.label)}); making the rule again "
            "trusts it as it is now"
        )
    return hashes, ref.name, ref.ds_email, datasets


def _changed_since_received(record: dict, hashes: dict[str, str], datasets: list[str]) -> list[str]:
    """What of a job differs from what its data owner was shown when it was received."""
    changed = []
    shown = record.get("received_hashes")
    if shown:
        files = sorted(p for p in set(shown) | set(hashes) if shown.get(p) != hashes.get(p))
        if files:
            changed.append("files: " + ", ".join(files))
    shown_datasets = record.get("received_datasets")
    if shown_datasets is not None and sorted(shown_datasets) != sorted(datasets):
        changed.append(
            f"datasets: was {', '.join(shown_datasets) or 'none'}; "
            f"now {', '.join(datasets) or 'none'}"
        )
    return changed


def _receive_again(home: AppHome, ref: JobRef, hashes: dict[str, str], datasets: list[str]) -> None:
    """Show a changed pending job as it is now, as a refused manual approval does: the
    next rule made from it trusts these files and datasets."""
    from syft_bg_app.session import changing

    with changing(home, "auto-approve --from-job") as ctx:
        record = ctx.state.job(ref.ds_email, ref.name, ref.protocol)
        if record is not None and record["status"] == "pending":
            record["received_hashes"] = hashes
            record["received_datasets"] = datasets


def _default_name(contents: Sequence[str], base_dir: str | None, taken: set[str]) -> str:
    first = os.path.basename(os.path.normpath(contents[0])) if contents else "rule"
    base = os.path.splitext(first)[0] or "rule"
    if base in (".", ".."):
        base = os.path.basename(os.path.abspath(base_dir or ".")) or "rule"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def _edit_rules(
    home: AppHome, purpose: str, change: Callable[[list[dict]], list[dict] | None]
) -> list[str]:
    """Apply ``change`` to the rules in config.yaml under the app lock; the editor's notes."""
    from syft_bg_app.config.editor import update_rules
    from syft_bg_app.session import LOCK_WAIT_SECONDS
    from syft_bg_app.store.lock import PassLock

    with PassLock(home, wait=LOCK_WAIT_SECONDS, purpose=purpose):
        return update_rules(home.config_file, change).notes


def add_rule(
    home: AppHome,
    contents: Sequence[str] = (),
    *,
    peers: Sequence[str] = (),
    name: str | None = None,
    name_only: Sequence[str] = (),
    base_dir: str | None = None,
    from_job: str | None = None,
) -> RuleEdit:
    """Trust exact job contents: files by SHA-256, ``name_only`` ones by name.

    With ``from_job`` the rule is exactly what that job contains and applies
    to its submitter unless ``peers`` names others. An existing rule of the
    same name is extended (``from_job`` replaces its files).
    """
    notes: list[str] = []
    peer_list = _peers(peers)
    if from_job:
        if contents:
            raise UsageError("give CONTENTS or --from-job, not both")
        hashes, job_name, submitter, datasets = _from_job(home, from_job, notes)
        if datasets:
            notes.append("allows the datasets the job declares: " + ", ".join(datasets))
        job_layout = True
        default_name: str | None = job_name
        if not peer_list:
            notes.append(f"applies to {submitter} (the job's submitter); add -p to name others")
    else:
        if not contents:
            raise UsageError("name the files to trust (CONTENTS), or --from-job JOB")
        hashes, job_layout = collect_contents(contents, base_dir, notes)
        submitter = None
        default_name = None
        datasets = []
    by_name = _name_only_paths(name_only)
    if from_job:
        unknown = sorted(by_name - set(hashes))
        if unknown:
            raise UsageError(f"-f: {', '.join(unknown)} is not a file of the job")
    if not job_layout:
        notes.append(
            "paths are taken relative to code/ (as in syft-bg 0.3): "
            + ", ".join(sorted(hashes)[:3])
        )
    outcome: dict[str, Any] = {}

    def change(rules: list[dict]) -> list[dict]:
        taken = {r["name"] for r in rules}
        rule_name = name or default_name or _default_name(contents, base_dir, taken)
        same = [r for r in rules if r["name"] == rule_name]
        if len(same) > 1:
            raise UsageError(
                f"more than one rule is named {rule_name!r}; rename one in config.yaml"
            )
        if same:
            rule = same[0]
            outcome["action"] = "updated"
            if from_job:
                rule["files"] = {}
                rule["name_only"] = []
                # Exactly the job's datasets: a job asking for more stays pending.
                rule.pop("datasets", None)
                if datasets:
                    rule["datasets"] = datasets
            files = dict(rule["files"])
            files.update(hashes)
            kept_name_only = set(rule.get("name_only") or ()) - set(hashes)
            for path in by_name:
                files.pop(path, None)
            rule["files"] = files
            rule["name_only"] = sorted(kept_name_only | by_name)
            if peer_list:
                if not rule["peers"] and rule.get("enabled", True):
                    notes.append(
                        f"rule {rule_name!r} applied to every accepted peer; now only to "
                        + ", ".join(peer_list)
                    )
                rule["peers"] = sorted(set(rule["peers"]) | set(peer_list))
                rule["enabled"] = True
            elif not rule.get("enabled", True):
                notes.append(f"rule {rule_name!r} stays disabled: add a peer with -p to enable it")
        else:
            outcome["action"] = "created"
            rule = {
                "name": rule_name,
                "peers": peer_list or ([submitter] if submitter else []),
                "files": {p: h for p, h in hashes.items() if p not in by_name},
                "name_only": sorted(by_name),
            }
            if datasets:
                rule["datasets"] = datasets
            rules.append(rule)
        outcome["rule"] = Rule.from_dict(rule)
        return rules

    notes += _edit_rules(home, "auto-approve", change)
    return RuleEdit(outcome["action"], outcome["rule"], home.config_file, notes)


# -- listing and removing ------------------------------------------------------------------


def list_rules(home: AppHome, name: str | None = None) -> RuleListing:
    """The rules in config.yaml (or those named ``name``) and the config's warnings."""
    config = load_config(home.config_file)
    rules = load_rules(config)
    if name is not None:
        rules = find_rules(rules, name)
        if not rules:
            raise NotFoundError(f"no auto-approval rule named {name!r}")
    return RuleListing(rules, list(config.warnings))


def _one_rule(rules: list[dict], name: str) -> dict:
    same = [r for r in rules if r["name"] == name]
    if not same:
        names = ", ".join(sorted(r["name"] for r in rules)) or "none"
        raise NotFoundError(f"no auto-approval rule named {name!r} (rules: {names})")
    if len(same) > 1:
        raise UsageError(f"more than one rule is named {name!r}; rename one in config.yaml")
    return same[0]


def remove_files(home: AppHome, name: str, files: Sequence[str]) -> FilesRemoved:
    """Take files out of a rule; a rule left with no files is removed."""
    removed: list[str] = []
    deleted: list[bool] = []

    def change(rules: list[dict]) -> list[dict]:
        rule = _one_rule(rules, name)
        for value in files:
            rel = value.strip().replace("\\", "/")
            options = [rel, "code/" + rel]
            hit = next((p for p in options if p in rule["files"] or p in rule["name_only"]), None)
            if hit is None:
                listed = ", ".join(sorted([*rule["files"], *rule["name_only"]])) or "none"
                raise UsageError(f"{value} is not in rule {name!r} (its files: {listed})")
            rule["files"].pop(hit, None)
            rule["name_only"] = [p for p in rule["name_only"] if p != hit]
            removed.append(hit)
        if not rule["files"] and not rule["name_only"]:
            deleted.append(True)
            return [r for r in rules if r is not rule]
        return rules

    notes = _edit_rules(home, "remove-auto-approval", change)
    remaining = [] if deleted else find_rules(list_rules(home).rules, name)
    return FilesRemoved(name, removed, bool(deleted), remaining[0] if remaining else None, notes)


def remove_rule(home: AppHome, name: str) -> RuleRemoved:
    """Remove the rule ``name`` with all its files."""

    def change(rules: list[dict]) -> list[dict]:
        rule = _one_rule(rules, name)
        return [r for r in rules if r is not rule]

    notes = _edit_rules(home, "remove-auto-approval", change)
    return RuleRemoved(name, home.config_file, notes)


def remove_peer(home: AppHome, peer: str, name: str | None = None) -> PeerRemoved:
    """Take a data scientist out of rules; a rule losing its last peer is disabled,
    never widened to every accepted peer."""
    peer = peer.strip().lower()
    changed: list[str] = []
    disabled: list[str] = []

    def change(rules: list[dict]) -> list[dict]:
        targets = [_one_rule(rules, name)] if name else rules
        for rule in targets:
            if peer not in rule["peers"]:
                continue
            rule["peers"] = [p for p in rule["peers"] if p != peer]
            changed.append(rule["name"])
            if not rule["peers"]:
                # An empty list means every accepted peer: never widen by removing.
                rule["enabled"] = False
                disabled.append(rule["name"])
        if not changed:
            where = f"rule {name!r}" if name else "any auto-approval rule"
            raise NotFoundError(f"{peer} is not a peer of {where}")
        return rules

    notes = _edit_rules(home, "remove-peer", change)
    return PeerRemoved(peer, changed, disabled, notes)


# -- audit -----------------------------------------------------------------------------------


def audit_entries(home: AppHome, job: str | None = None, limit: int | None = None) -> AuditEntries:
    """Decisions from the audit log, about one job or peer when named."""
    from syft_bg_app.approval import audit
    from syft_bg_app.session import open_view
    from syft_bg_app.views import jobs as job_views

    subject = job
    if job and ("@" not in job or "/" in job):
        try:
            subject = job_views.resolve(open_view(home), job).label
        except AmbiguousError:
            raise
        except NotFoundError:
            # A job no longer known may still have entries under what was typed.
            subject = job
    entries = audit.read(home.audit_log, subject)
    if limit:
        entries = entries[-limit:]
    return AuditEntries(subject, entries)
