"""Auto-approval commands: hash, auto-approve, list/remove rules, remove-peer, audit.

Only argparse is imported at load time (every CLI start imports this module);
each command imports what it needs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

RUN_SH = "run.sh"
PIN_HINT = (
    "syft-bg auto-approve --from-job <a job you trust> -n {name}  "
    "(or: syft-bg auto-approve <job folder>/run.sh -b <job folder> -n {name})"
)


def _home(args: argparse.Namespace) -> Any:
    from syft_bg_app.store.home import AppHome

    return AppHome.resolve(args.home)


# -- hash -------------------------------------------------------------------------


def cmd_hash(args: argparse.Namespace) -> int:
    import os

    from syft_bg_app.datasite.jobfiles import sha256_file
    from syft_bg_app.errors import UsageError

    lines = []
    for name in args.files:
        if os.path.isdir(name):
            raise UsageError(f"{name} is a folder; hash its files, or: syft-bg auto-approve {name}")
        try:
            digest = sha256_file(name)
        except OSError as exc:
            raise UsageError(f"{name}: {exc.strerror}") from None
        lines.append(digest if len(args.files) == 1 else f"{digest}  {name}")
    print("\n".join(lines))
    return 0


# -- building a rule from files ------------------------------------------------------


def _check_rel(rel: str, shown: str) -> str:
    from syft_bg_app.errors import UsageError

    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"{shown}: not a plain path inside the job folder")
    return rel


def _rule_path(rel: str, job_layout: bool, shown: str) -> str:
    """Where a file relative to BASE_DIR sits in a job folder."""
    from syft_bg_app.errors import UsageError

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


def _collect_contents(args: argparse.Namespace, notes: list[str]) -> tuple[dict[str, str], bool]:
    """{rule path: sha256} for CONTENTS (folders recursively), and whether BASE_DIR is a job."""
    import os
    from pathlib import Path

    from syft_bg_app.datasite.jobfiles import sha256_file
    from syft_bg_app.errors import UsageError
    from syft_bg_app.store.fsutil import PERMISSION_FILE, is_ignored_name

    base = Path(os.path.abspath(args.base_dir or "."))
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

    for arg in args.contents:
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
    if not files and args.contents:
        raise UsageError("no files found in CONTENTS")
    return files, job_layout


def _name_only_paths(values: list[str]) -> set[str]:
    from syft_bg_app.errors import UsageError

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


def _peers(values: list[str]) -> list[str]:
    from syft_bg_app.config.load import EMAIL_RE
    from syft_bg_app.errors import UsageError

    peers = []
    for value in values:
        email = value.strip().lower()
        if not EMAIL_RE.fullmatch(email):
            raise UsageError(f"-p/--peer: {value!r} is not an email address")
        if email not in peers:
            peers.append(email)
    return peers


def _from_job(args: argparse.Namespace, notes: list[str]) -> tuple[dict[str, str], str, str]:
    """({path: sha256}, job name, submitter) of a received job: exactly what it contains."""
    import os

    from syft_bg_app.approval import snapshot
    from syft_bg_app.approval.decisions import DecisionError, open_received_job
    from syft_bg_app.datasite.jobfiles import Limits, collect
    from syft_bg_app.errors import UsageError
    from syft_bg_app.session import open_view
    from syft_bg_app.views import jobs as job_views

    ctx = open_view(_home(args))
    ref = job_views.resolve(ctx, args.from_job)
    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol) or {}
    if record.get("status") not in (None, "received", "pending"):
        try:
            # What ran is what the data owner saw the results of.
            _, hashes = snapshot.verified(ctx.home.snapshots_dir, ref)
            notes.append(f"files taken from the approval snapshot of {ref.label}")
            return dict(hashes), ref.name, ref.ds_email
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
        return {rel: found.hash(rel) for rel in sorted(found.files)}, ref.name, ref.ds_email
    finally:
        os.close(job_fd)


def _default_name(args: argparse.Namespace, taken: set[str]) -> str:
    import os

    first = os.path.basename(os.path.normpath(args.contents[0])) if args.contents else "rule"
    base = os.path.splitext(first)[0] or "rule"
    if base in (".", ".."):
        base = os.path.basename(os.path.abspath(args.base_dir or ".")) or "rule"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def cmd_auto_approve(args: argparse.Namespace) -> int:
    from shlex import quote

    from syft_bg_app.approval.rules import Rule
    from syft_bg_app.config.editor import update_rules
    from syft_bg_app.errors import UsageError
    from syft_bg_app.session import LOCK_WAIT_SECONDS
    from syft_bg_app.store.lock import PassLock

    notes: list[str] = []
    peers = _peers(args.peer)
    if args.from_job:
        if args.contents:
            raise UsageError("give CONTENTS or --from-job, not both")
        contents, job_name, submitter = _from_job(args, notes)
        job_layout = True
        default_name = job_name
        if not peers:
            notes.append(f"applies to {submitter} (the job's submitter); add -p to name others")
    else:
        if not args.contents:
            raise UsageError("name the files to trust (CONTENTS), or --from-job JOB")
        contents, job_layout = _collect_contents(args, notes)
        submitter = None
        default_name = None
    name_only = _name_only_paths(args.name_only)
    if args.from_job:
        unknown = sorted(name_only - set(contents))
        if unknown:
            raise UsageError(f"-f: {', '.join(unknown)} is not a file of the job")
    if not job_layout:
        notes.append(
            "paths are taken relative to code/ (as in syft-bg 0.3): "
            + ", ".join(sorted(contents)[:3])
        )
    home = _home(args)
    outcome: dict[str, Any] = {}

    def change(rules: list[dict]) -> list[dict]:
        taken = {r["name"] for r in rules}
        name = args.name or default_name or _default_name(args, taken)
        same = [r for r in rules if r["name"] == name]
        if len(same) > 1:
            raise UsageError(f"more than one rule is named {name!r}; rename one in config.yaml")
        if same:
            rule = same[0]
            outcome["action"] = "updated"
            if args.from_job:
                rule["files"] = {}
                rule["name_only"] = []
            files = dict(rule["files"])
            for path in contents:
                files[path] = contents[path]
            kept_name_only = set(rule.get("name_only") or ()) - set(contents)
            for path in name_only:
                files.pop(path, None)
            rule["files"] = files
            rule["name_only"] = sorted(kept_name_only | name_only)
            if peers:
                if not rule["peers"] and rule.get("enabled", True):
                    notes.append(
                        f"rule {name!r} applied to every accepted peer; now only to "
                        + ", ".join(peers)
                    )
                rule["peers"] = sorted(set(rule["peers"]) | set(peers))
                rule["enabled"] = True
            elif not rule.get("enabled", True):
                notes.append(f"rule {name!r} stays disabled: add a peer with -p to enable it")
        else:
            outcome["action"] = "created"
            files = {p: h for p, h in contents.items() if p not in name_only}
            rule = {
                "name": name,
                "peers": peers or ([submitter] if submitter else []),
                "files": files,
                "name_only": sorted(name_only),
            }
            rules.append(rule)
        outcome["rule"] = Rule.from_dict(rule)
        return rules

    with PassLock(home, wait=LOCK_WAIT_SECONDS, purpose="auto-approve"):
        result = update_rules(home.config_file, change)
    rule = outcome["rule"]
    print(f"{outcome['action']} rule {rule.name!r} in {home.config_file}")
    print(_describe(rule))
    for note in notes + result.notes:
        print(f"note: {note}")
    reason = rule.inert_reason()
    if reason:
        print(
            f"warning: this rule approves nothing yet: {reason}. "
            + ("Pin run.sh with: " + PIN_HINT.format(name=quote(rule.name)) if rule.enabled else "")
        )
    else:
        print("pending jobs it matches are approved by the next pass")
    return 0


# -- listing and removing --------------------------------------------------------------


def _describe(rule: Any) -> str:
    from syft_bg_app.views.render import terminal_text as safe

    # File names in a rule made --from-job are the data scientist's choice.
    reason = rule.inert_reason()
    lines = [f"{safe(rule.name)}  [{'approves nothing: ' + safe(reason) if reason else 'live'}]"]
    if rule.peers:
        lines.append(f"  peers: {', '.join(safe(p) for p in rule.peers)}")
    elif rule.enabled:
        lines.append("  peers: every accepted peer")
    else:
        lines.append("  peers: none")
    if rule.files:
        lines.append("  by content:")
        width = max(len(safe(p)) for p in rule.files)
        lines.extend(f"    {safe(p):<{width}}  {safe(rule.files[p])}" for p in sorted(rule.files))
    if rule.name_only:
        lines.append("  by name only (any content):")
        lines.extend(f"    {safe(p)}" for p in sorted(rule.name_only))
    if rule.timeout is not None:
        lines.append(f"  timeout: {rule.timeout} s")
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    from syft_bg_app.approval.rules import find_rules, load_rules
    from syft_bg_app.config.load import load_config
    from syft_bg_app.errors import NotFoundError
    from syft_bg_app.invocation import command

    config = load_config(_home(args).config_file)
    rules = load_rules(config)
    if args.name:
        rules = find_rules(rules, args.name)
        if not rules:
            raise NotFoundError(f"no auto-approval rule named {args.name!r}")
    if rules:
        print("\n\n".join(_describe(rule) for rule in rules))
    else:
        create = command("auto-approve --from-job JOB", _home(args))
        print(f"no auto-approval rules (create one with: {create})")
    if config.warnings:
        print("\nconfig warnings:")
        print("\n".join(f"  {w}" for w in config.warnings))
    return 0


def _one_rule(rules: list[dict], name: str) -> dict:
    from syft_bg_app.errors import NotFoundError, UsageError

    same = [r for r in rules if r["name"] == name]
    if not same:
        names = ", ".join(sorted(r["name"] for r in rules)) or "none"
        raise NotFoundError(f"no auto-approval rule named {name!r} (rules: {names})")
    if len(same) > 1:
        raise UsageError(f"more than one rule is named {name!r}; rename one in config.yaml")
    return same[0]


def cmd_remove_auto_approval(args: argparse.Namespace) -> int:
    from syft_bg_app.config.editor import update_rules
    from syft_bg_app.errors import UsageError
    from syft_bg_app.session import LOCK_WAIT_SECONDS
    from syft_bg_app.store.lock import PassLock

    home = _home(args)
    removed: list[str] = []
    deleted: list[bool] = []

    def change(rules: list[dict]) -> list[dict]:
        rule = _one_rule(rules, args.name)
        for value in args.files:
            rel = value.strip().replace("\\", "/")
            options = [rel, "code/" + rel]
            hit = next((p for p in options if p in rule["files"] or p in rule["name_only"]), None)
            if hit is None:
                listed = ", ".join(sorted([*rule["files"], *rule["name_only"]])) or "none"
                raise UsageError(f"{value} is not in rule {args.name!r} (its files: {listed})")
            rule["files"].pop(hit, None)
            rule["name_only"] = [p for p in rule["name_only"] if p != hit]
            removed.append(hit)
        if not rule["files"] and not rule["name_only"]:
            deleted.append(True)
            return [r for r in rules if r is not rule]
        return rules

    with PassLock(home, wait=LOCK_WAIT_SECONDS, purpose="remove-auto-approval"):
        result = update_rules(home.config_file, change)
    print(f"removed {', '.join(removed)} from rule {args.name!r}")
    if deleted:
        print(f"rule {args.name!r} had no files left and was removed")
    elif RUN_SH in removed:
        print(f"warning: rule {args.name!r} no longer pins run.sh and approves nothing")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def cmd_remove_peer(args: argparse.Namespace) -> int:
    from shlex import quote

    from syft_bg_app.config.editor import update_rules
    from syft_bg_app.errors import NotFoundError
    from syft_bg_app.invocation import command
    from syft_bg_app.session import LOCK_WAIT_SECONDS
    from syft_bg_app.store.lock import PassLock

    home = _home(args)
    peer = args.peer.strip().lower()
    changed: list[str] = []
    disabled: list[str] = []

    def change(rules: list[dict]) -> list[dict]:
        targets = [_one_rule(rules, args.name)] if args.name else rules
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
            where = f"rule {args.name!r}" if args.name else "any auto-approval rule"
            raise NotFoundError(f"{peer} is not a peer of {where}")
        return rules

    with PassLock(home, wait=LOCK_WAIT_SECONDS, purpose="remove-peer"):
        result = update_rules(home.config_file, change)
    print(f"removed {peer} from rule{'s' if len(changed) > 1 else ''} {', '.join(changed)}")
    for name in disabled:
        print(
            f"rule {name!r} is now disabled: {peer} was its last peer, and an empty peer list "
            f"would mean every accepted peer (enable it again with: "
            f"{command(f'auto-approve --from-job JOB -n {quote(name)} -p PEER', home)}, "
            f"or edit config.yaml)"
        )
    print(
        f"note: this does not change whether {peer} is a peer (rules never accept or "
        f"remove peers); it only stops these rules approving their jobs"
    )
    for note in result.notes:
        print(f"note: {note}")
    return 0


# -- audit ---------------------------------------------------------------------------------


def _render_entry(entry: dict) -> str:
    head = f"{entry.get('at', '?')}  {entry.get('subject', '?')}  {entry.get('decision', '?')}"
    extra = [entry.get("method")] if entry.get("method") else []
    if entry.get("rule"):
        extra.append(f"rule {entry['rule']}")
    if isinstance(entry.get("rules"), list):
        extra.append("rules tried: " + ", ".join(map(str, entry["rules"])))
    if extra:
        head += f"  ({', '.join(map(str, extra))})"
    lines = [head, f"    why: {entry.get('why', '')}"]
    hashes = entry.get("hashes") if isinstance(entry.get("hashes"), dict) else {}
    if hashes:
        width = max(len(p) for p in hashes)
        lines.extend(f"    {p:<{width}}  {hashes[p]}" for p in sorted(hashes))
    return "\n".join(lines)


def cmd_audit(args: argparse.Namespace) -> int:
    import json

    from syft_bg_app.approval import audit
    from syft_bg_app.errors import NotFoundError
    from syft_bg_app.session import open_view
    from syft_bg_app.views import jobs as job_views

    home = _home(args)
    subject = None
    if args.job:
        subject = args.job
        if "@" not in args.job or "/" in args.job:
            try:
                subject = job_views.resolve(open_view(home), args.job).label
            except NotFoundError as exc:
                if "ambiguous" in str(exc):
                    raise
                subject = args.job
    entries = audit.read(home.audit_log, subject)
    if args.limit:
        entries = entries[-args.limit :]
    if not entries:
        print(f"no audit entries{' for ' + subject if subject else ''}")
        return 0
    if args.json:
        print("\n".join(json.dumps(e, sort_keys=True) for e in entries))
    else:
        print("\n".join(_render_entry(e) for e in entries))
    return 0


# -- registration -------------------------------------------------------------------------


def register(
    subparsers: argparse._SubParsersAction,
    add: Callable[..., argparse.ArgumentParser],
    commands: dict[str, argparse.ArgumentParser | argparse._SubParsersAction],
) -> None:
    """Add this area's commands. ``commands`` holds the init parser and the
    jobs/peers sub-command groups, for options and actions that belong there."""
    p = add(
        subparsers,
        "hash",
        cmd_hash,
        "Print sha256:<hex> of each file's raw bytes (what rules pin).",
        "syft-bg hash run.sh code/main.py",
    )
    p.add_argument("files", nargs="+", metavar="FILE")

    p = add(
        subparsers,
        "auto-approve",
        cmd_auto_approve,
        "Trust exact job contents: a job whose files are exactly these (by content, "
        "-f ones by name) is approved without you. A rule approves nothing until it pins run.sh.",
        "syft-bg auto-approve --from-job alice@uni.edu/mean-age -n mean-age",
    )
    p.add_argument("contents", nargs="*", metavar="CONTENTS", help="files or folders to trust")
    p.add_argument(
        "-p", "--peer", action="append", default=[], help="data scientist it applies to (repeat)"
    )
    p.add_argument("-n", "--name", help="rule name (an existing rule is extended)")
    p.add_argument(
        "-f",
        "--name-only",
        action="append",
        default=[],
        metavar="NAME_ONLY",
        help="file matched by name only, any content (repeat)",
    )
    p.add_argument("-b", "--base-dir", help="folder CONTENTS are relative to (default: .)")
    p.add_argument(
        "--from-job",
        metavar="JOB",
        help="trust exactly the files of this job (DS_EMAIL/JOB_NAME); peers default to "
        "its submitter",
    )

    p = add(
        subparsers,
        "list-auto-approvals",
        cmd_list,
        "List auto-approval rules and whether each can approve anything.",
        "syft-bg list-auto-approvals -n mean-age",
    )
    p.add_argument("-n", "--name", help="only this rule")

    p = add(
        subparsers,
        "remove-auto-approval",
        cmd_remove_auto_approval,
        "Remove files from a rule (a rule left with no files is removed).",
        "syft-bg remove-auto-approval code/utils.py -n my_analysis",
    )
    p.add_argument("files", nargs="+", metavar="FILES")
    p.add_argument("-n", "--name", required=True, help="the rule")

    p = add(
        subparsers,
        "remove-peer",
        cmd_remove_peer,
        "Remove a data scientist from rules (a rule losing its last peer is disabled, "
        "never widened to everyone).",
        "syft-bg remove-peer alice@uni.edu",
    )
    p.add_argument("peer", metavar="PEER")
    p.add_argument("-n", "--name", help="only this rule")

    p = add(
        subparsers,
        "audit",
        cmd_audit,
        "Show the audit log: every decision on jobs and peers, with rule and hashes.",
        "syft-bg audit alice@uni.edu/mean-age",
    )
    p.add_argument("job", nargs="?", metavar="JOB", help="a job (or a peer's email)")
    p.add_argument("--json", action="store_true", help="print the raw JSON lines")
    p.add_argument("--limit", type=int, help="only the last N entries")
