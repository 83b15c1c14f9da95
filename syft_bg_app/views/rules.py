"""Auto-approval rules and their changes: one rule in detail (``list-auto-approvals``),
rules as a table (text and HTML, for notebooks), and what ``auto-approve`` and its
sibling commands print, which the Python API returns as ``RuleChange.text``."""

from __future__ import annotations

from collections.abc import Sequence
from shlex import quote
from typing import Any

from syft_bg_app.approval.rules import RUN_SH, Rule
from syft_bg_app.config.migrate import PIN_HINT
from syft_bg_app.invocation import command
from syft_bg_app.store.home import AppHome
from syft_bg_app.views.render import BADGE_COLORS, WRAPPER, esc, plain, table_html, table_text
from syft_bg_app.views.render import terminal_text as safe


def rule_text(rule: Rule) -> str:
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


def _notes(notes: list[str]) -> list[str]:
    return [f"note: {note}" for note in notes]


def rule_edit_text(edit: Any) -> str:
    """What ``auto-approve`` says about the rule it created or updated."""
    rule = edit.rule
    lines = [f"{edit.action} rule {rule.name!r} in {edit.config_file}", rule_text(rule)]
    lines += _notes(edit.notes)
    reason = rule.inert_reason()
    if reason:
        lines.append(
            f"warning: this rule approves nothing yet: {reason}. "
            + ("Pin run.sh with: " + PIN_HINT.format(name=quote(rule.name)) if rule.enabled else "")
        )
    else:
        lines.append("pending jobs it matches are approved by the next pass")
    return "\n".join(lines)


def rule_listing_text(listing: Any, home: AppHome) -> str:
    """``list-auto-approvals``: each rule, and the config's warnings."""
    if listing.rules:
        text = "\n\n".join(rule_text(rule) for rule in listing.rules)
    else:
        create = command("auto-approve --from-job JOB", home)
        text = f"no auto-approval rules (create one with: {create})"
    if listing.warnings:
        text += "\n\nconfig warnings:\n" + "\n".join(f"  {w}" for w in listing.warnings)
    return text


def files_removed_text(result: Any) -> str:
    lines = [f"removed {', '.join(result.removed)} from rule {result.name!r}"]
    if result.rule_removed:
        lines.append(f"rule {result.name!r} had no files left and was removed")
    elif RUN_SH in result.removed:
        lines.append(f"warning: rule {result.name!r} no longer pins run.sh and approves nothing")
    return "\n".join(lines + _notes(result.notes))


def rule_removed_text(result: Any) -> str:
    return "\n".join(
        [f"removed rule {result.name!r} from {result.config_file}", *_notes(result.notes)]
    )


def peer_removed_text(result: Any, home: AppHome) -> str:
    peer = result.peer
    plural = "s" if len(result.rules) > 1 else ""
    lines = [f"removed {peer} from rule{plural} {', '.join(result.rules)}"]
    for name in result.disabled:
        enable = command(f"auto-approve --from-job JOB -n {quote(name)} -p PEER", home)
        lines.append(
            f"rule {name!r} is now disabled: {peer} was its last peer, and an empty peer list "
            f"would mean every accepted peer (enable it again with: {enable}, "
            f"or edit config.yaml)"
        )
    lines.append(
        f"note: this does not change whether {peer} is a peer (rules never accept or "
        f"remove peers); it only stops these rules approving their jobs"
    )
    return "\n".join(lines + _notes(result.notes))


def audit_entry_text(entry: dict[str, Any]) -> str:
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


# -- rules as a table (notebooks) -------------------------------------------------------------

RULE_HEADERS = ("rule", "state", "peers", "by content", "by name only")


def _rule_row(rule: Any) -> list[str]:
    reason = rule.inert_reason()
    if rule.peers:
        peers = ", ".join(rule.peers)
    else:
        peers = "every accepted peer" if rule.enabled else "none"
    content = ", ".join(f"{p} ({_short_hash(rule.files[p])})" for p in sorted(rule.files))
    return [
        rule.name,
        f"approves nothing: {reason}" if reason else "live",
        peers,
        content or "-",
        ", ".join(sorted(rule.name_only)) or "-",
    ]


def _short_hash(digest: str) -> str:
    return digest[: len("sha256:") + 12] + "…" if len(digest) > 19 else digest


def rules_html(rules: Sequence[Any], notes: Sequence[str] = ()) -> str:
    if not rules:
        body = f"{WRAPPER}<em>no auto-approval rules</em></div>"
    else:
        rows = []
        for rule in rules:
            row = _rule_row(rule)
            state = "live" if row[1] == "live" else "inert"
            color = BADGE_COLORS["done" if state == "live" else "pending"]
            row[1] = (
                f'<span style="background:{color[0]};color:{color[1]};border-radius:9px;'
                f'padding:1px 8px">{esc(row[1])}</span>'
            )
            rows.append(row)
        body = table_html(f"Auto-approval rules: {len(rules)}", RULE_HEADERS, rows, (1,))
    if notes:
        items = "".join(f"<li>{esc(note)}</li>" for note in notes)
        body += f"{WRAPPER}<ul>{items}</ul></div>"
    return body


def rules_text(rules: Sequence[Any], notes: Sequence[str] = ()) -> str:
    text = (
        f"Auto-approval rules: {len(rules)}\n" + table_text(RULE_HEADERS, map(_rule_row, rules))
        if rules
        else "no auto-approval rules"
    )
    if notes:
        text += "\nconfig warnings:\n" + "\n".join(f"  {plain(note)}" for note in notes)
    return text
