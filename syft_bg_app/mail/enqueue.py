"""Turning events into queued emails, with flood control and the DO's threads.

Each event's emails are rendered before anything in the checkpoint changes for
it. An event whose emails cannot be composed (a template that fails on its
values, a message that cannot be built) is set aside with the reason, in
``mail.set_aside``, and every other event flows; the step then fails once,
naming the reason. Set-aside events are tried again when the templates or the
``notify`` configuration change, or with ``syft-bg mail retry``. Each email's
file is written before the queue entry that points to it, and the events are
removed last.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from syft_bg_app.clock import iso, utcnow
from syft_bg_app.config.load import EMAIL_RE
from syft_bg_app.context import Context
from syft_bg_app.errors import SyftBgError
from syft_bg_app.mail import replies
from syft_bg_app.mail.compose import Draft, digest_draft, drafts_for_event, without_inline_code
from syft_bg_app.mail.message import build, message_id
from syft_bg_app.mail.queue import email_id, mail_state, message_file
from syft_bg_app.mail.templates import Templates, resolve_dir
from syft_bg_app.store.atomic import atomic_write_bytes
from syft_bg_app.views.render import terminal_text

# Enough to thread a job's whole life; older ids add nothing for mail clients.
MAX_REFERENCES = 20
# Variables that hold several lines of someone else's text (reasons, messages,
# code, stderr); every other string is shown on one line.
MULTILINE_VARIABLES = frozenset({"reason", "failure_reason", "message", "stderr_tail", "text"})


class EmailTooLarge(SyftBgError):
    pass


@dataclass
class Rendered:
    draft: Draft
    text: str
    html: str


def templates_for(ctx: Context) -> Templates:
    return Templates(resolve_dir(ctx.config.get("notify.templates_dir"), ctx.home.root))


def safe_variables(value: Any, key: str = "") -> Any:
    """Template variables with every string made safe to show: control characters
    escaped, bidi controls marked (``<U+202E>``), bytes of names that were not
    UTF-8 shown as ``\\xff``. HTML escaping is left to the templates."""
    if isinstance(value, str):
        return terminal_text(value, multiline=key in MULTILINE_VARIABLES)
    if isinstance(value, dict):
        return {k: safe_variables(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_variables(v, key) for v in value]
    return value


def render(templates: Templates, draft: Draft) -> Rendered:
    return Rendered(draft, *templates.render(draft.template, safe_variables(draft.variables)))


def templates_fingerprint(ctx: Context) -> str:
    """Changes when the data owner changes what composing an email depends on."""
    from syft_bg_app import __version__

    parts: list[Any] = [__version__, ctx.config.get("notify")]
    folder = resolve_dir(ctx.config.get("notify.templates_dir"), ctx.home.root)
    if folder is not None:
        try:
            with os.scandir(folder) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    st = entry.stat(follow_symlinks=True)
                    parts.append([entry.name, st.st_mtime_ns, st.st_size])
        except OSError:
            parts.append(None)
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _describe_event(event: dict[str, Any]) -> str:
    subject = event.get("job") or ""
    who = event.get("ds_email") or ""
    return f"{event.get('kind', '?')} {who}/{subject}" if subject else f"{event.get('kind')} {who}"


def set_aside(ctx: Context, event: dict[str, Any], reason: str, fingerprint: str) -> None:
    """Keep an event that cannot be turned into emails out of the way, with the reason."""
    mail = mail_state(ctx.state)
    reason = terminal_text(reason)[:1000]
    mail["set_aside"].append(
        {"event": event, "reason": reason, "at": iso(), "fingerprint": fingerprint}
    )
    ctx.log("notify").warning(
        "set aside the %s: %s (the other events go on; syft-bg mail list)",
        _describe_event(event),
        reason,
    )


def describe_set_aside(record: dict[str, Any]) -> str:
    return f"{terminal_text(_describe_event(record['event']))}: {terminal_text(record['reason'])}"


def retry_set_aside(ctx: Context, force: bool = False) -> int:
    """Put set-aside events back in line when what failed may have changed."""
    mail = mail_state(ctx.state)
    if not mail["set_aside"]:
        return 0
    current = templates_fingerprint(ctx)
    back = [r for r in mail["set_aside"] if force or r.get("fingerprint") != current]
    if back:
        mail["set_aside"] = [r for r in mail["set_aside"] if r not in back]
        ctx.state.data["events"].extend(r["event"] for r in back)
        ctx.log("notify").info("trying %d set-aside events again", len(back))
    return len(back)


def enqueue_events(ctx: Context, events: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Queue the emails of ``events``; return how many emails were queued and the
    reasons of the events set aside."""
    mail = mail_state(ctx.state)
    log = ctx.log("notify")
    fingerprint = templates_fingerprint(ctx)
    flat: list[Draft] = []
    event_of: dict[int, dict[str, Any]] = {}
    keys: set[str] = set()
    failed: dict[int, str] = {}
    for event in events:
        try:
            drafts = drafts_for_event(ctx, event)
        except Exception as exc:
            failed[id(event)] = f"its emails cannot be composed: {_reason(exc)}"
            continue
        if not drafts:
            log.info("event %s of kind %s has no email", event.get("id"), event["kind"])
        for draft in drafts:
            # One email per event, entity and recipient, ever: in this pass and before.
            if draft.key in keys or email_id(draft.key) in mail["seen"]:
                continue
            if not EMAIL_RE.fullmatch(draft.to):
                # Folder names come from others' writes; never let one become a header.
                log.warning("no email to %r: not a plain email address", draft.to)
                continue
            keys.add(draft.key)
            flat.append(draft)
            event_of[id(draft)] = event
    counts = Counter(d.to for d in flat)
    threshold = ctx.config.get("notify.digest_after")
    flooded = {to for to, n in counts.items() if n > threshold}
    first_id = events[0].get("id", 0) if events else 0
    # (draft, the events it stands for)
    plan: list[tuple[Draft, list[dict[str, Any]]]] = [
        (d, [event_of[id(d)]]) for d in flat if d.to not in flooded
    ]
    for to in sorted(flooded):
        log.info("%d emails for %s in one pass: sending one digest instead", counts[to], to)
        members = [d for d in flat if d.to == to]
        plan.append((digest_draft(ctx, to, members, first_id), [event_of[id(d)] for d in members]))
    templates = templates_for(ctx) if plan else None
    # All emails are rendered before any is queued: an event one of whose emails
    # fails to render has none of them queued. One whose message cannot be built
    # (too large) keeps the emails already queued; retrying the event later
    # composes only the others, since each email is sent once ever.
    rendered: list[tuple[Rendered, list[dict[str, Any]]]] = []
    for draft, sources in plan:
        if any(id(e) in failed for e in sources):
            continue
        try:
            rendered.append((render(templates, draft), sources))
        except Exception as exc:
            for event in sources:
                failed.setdefault(id(event), _reason(exc))
    queued = 0
    for item, sources in rendered:
        if any(id(e) in failed for e in sources):
            continue
        try:
            queue_rendered(ctx, item, templates)
            queued += 1
        except Exception as exc:
            for event in sources:
                failed.setdefault(id(event), _reason(exc))
    # Emails folded into a digest count as sent: never send them one by one later.
    today = iso()[:10]
    for draft in flat:
        if draft.to in flooded and id(event_of[id(draft)]) not in failed:
            mail["seen"][email_id(draft.key)] = today
    reasons = []
    for event in events:
        if id(event) in failed:
            set_aside(ctx, event, failed[id(event)], fingerprint)
            reasons.append(failed[id(event)])
    handled = {id(event) for event in events}
    ctx.state.data["events"] = [e for e in ctx.state.data["events"] if id(e) not in handled]
    return queued, reasons


def _reason(exc: Exception) -> str:
    if isinstance(exc, SyftBgError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def queue_draft(ctx: Context, draft: Draft, templates: Templates | None = None) -> dict[str, Any]:
    """Render and queue one draft (heartbeat, test email)."""
    templates = templates or templates_for(ctx)
    return queue_rendered(ctx, render(templates, draft), templates)


def queue_rendered(
    ctx: Context, item: Rendered, templates: Templates | None = None
) -> dict[str, Any]:
    """Build the message of ``item`` and queue it. A message over
    ``notify.max_email_kb`` is built again without the code it shows inline; one
    still over the cap raises ``EmailTooLarge``."""
    mail = mail_state(ctx.state)
    draft = item.draft
    do = ctx.config.do_email
    entry_id = email_id(draft.key)
    msg_id = message_id(entry_id, draft.kind, do)
    if draft.job_ref is not None and draft.variables.get("reply_approval"):
        msg_id = replies.unguessable_id(msg_id)
    subject = terminal_text(draft.subject)
    in_reply_to = None
    references: list[str] = []
    thread = mail["threads"].get(draft.thread) if draft.thread else None
    if thread is not None:
        # Same subject, and a reply to the previous email of the thread.
        subject = thread["subject"]
        references = thread["ids"][-MAX_REFERENCES:]
        in_reply_to = references[-1] if references else None
    now = utcnow()
    cap = ctx.config.get("notify.max_email_kb") * 1024

    def build_from(rendered: Rendered) -> bytes:
        return build(
            from_name=ctx.config.get("notify.from_name"),
            from_address=ctx.config.get("notify.from_address") or do,
            to=draft.to,
            subject=subject,
            text=rendered.text,
            html=rendered.html,
            msg_id=msg_id,
            date=now,
            in_reply_to=in_reply_to,
            references=references,
            kind=draft.kind,
        )

    raw = build_from(item)
    sent_draft = draft
    if len(raw) > cap:
        smaller = without_inline_code(draft)
        if smaller is not None:
            raw = build_from(render(templates or templates_for(ctx), smaller))
            sent_draft = smaller
        if len(raw) > cap:
            raise EmailTooLarge(
                f"the {draft.kind} email to {draft.to} would be {len(raw) // 1024} KB, over "
                f"notify.max_email_kb ({cap // 1024} KB)"
            )
    atomic_write_bytes(message_file(ctx.home, entry_id), raw, mode=0o600)
    if draft.job_ref is not None and draft.variables.get("reply_approval"):
        replies.remember_target(ctx, msg_id, sent_draft.variables, draft.job_ref.event_fields)
    if draft.thread:
        if thread is None:
            thread = mail["threads"][draft.thread] = {
                "subject": subject,
                "ids": [],
                "gmail_thread_id": None,
            }
        thread["ids"].append(msg_id)
    entry = {
        "id": entry_id,
        "kind": draft.kind,
        "role": draft.role,
        "to": draft.to,
        "subject": subject,
        "thread": draft.thread,
        "terminal": draft.terminal,
        "message_id": msg_id,
        "created_at": iso(now),
        "status": "queued",
        "attempts": 0,
    }
    mail["queue"].append(entry)
    mail["seen"][entry_id] = iso(now)[:10]
    return entry
