"""Turning events into queued emails, with flood control and the DO's threads.

All drafts of a pass are rendered before anything in the checkpoint changes,
so a template error leaves the events where they were (the step fails and
says which template); then each email's file is written before the queue
entry that points to it, and the events are removed last.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..atomic import atomic_write_bytes
from ..config import EMAIL_RE
from ..context import Context
from ..state import iso, utcnow
from .compose import Draft, digest_draft, drafts_for_event
from .message import build, message_id
from .queue import email_id, mail_state, message_file
from .templates import Templates, resolve_dir

# Enough to thread a job's whole life; older ids add nothing for mail clients.
MAX_REFERENCES = 20
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Rendered:
    draft: Draft
    text: str
    html: str


def templates_for(ctx: Context) -> Templates:
    return Templates(resolve_dir(ctx.config.get("notify.templates_dir"), ctx.home.root))


def enqueue_events(ctx: Context, events: list[dict[str, Any]]) -> int:
    """Queue the emails of ``events``; return how many emails were queued."""
    mail = mail_state(ctx.state)
    log = ctx.log("notify")
    flat: list[Draft] = []
    keys: set[str] = set()
    for event in events:
        drafts = drafts_for_event(ctx, event)
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
    counts = Counter(d.to for d in flat)
    threshold = ctx.config.get("notify.digest_after")
    flooded = {to for to, n in counts.items() if n > threshold}
    first_id = events[0].get("id", 0) if events else 0
    singles = [d for d in flat if d.to not in flooded]
    digests = [
        digest_draft(ctx, to, [d for d in flat if d.to == to], first_id) for to in sorted(flooded)
    ]
    for to in sorted(flooded):
        log.info("%d emails for %s in one pass: sending one digest instead", counts[to], to)
    templates = templates_for(ctx) if singles or digests else None
    rendered = [Rendered(d, *templates.render(d.template, d.variables)) for d in singles + digests]
    for item in rendered:
        queue_rendered(ctx, item)
    # Emails folded into a digest count as sent: never send them one by one later.
    today = iso()[:10]
    for draft in flat:
        if draft.to in flooded:
            mail["seen"][email_id(draft.key)] = today
    handled = {id(event) for event in events}
    ctx.state.data["events"] = [e for e in ctx.state.data["events"] if id(e) not in handled]
    return len(rendered)


def queue_draft(ctx: Context, draft: Draft, templates: Templates | None = None) -> dict[str, Any]:
    """Render and queue one draft (heartbeat, test email)."""
    templates = templates or templates_for(ctx)
    return queue_rendered(ctx, Rendered(draft, *templates.render(draft.template, draft.variables)))


def queue_rendered(ctx: Context, item: Rendered) -> dict[str, Any]:
    mail = mail_state(ctx.state)
    draft = item.draft
    do = ctx.config.do_email
    entry_id = email_id(draft.key)
    msg_id = message_id(entry_id, draft.kind, do)
    subject = CONTROL_CHARS.sub("?", draft.subject)
    in_reply_to = None
    references: list[str] = []
    thread = mail["threads"].get(draft.thread) if draft.thread else None
    if thread is not None:
        # Same subject, and a reply to the previous email of the thread.
        subject = thread["subject"]
        references = thread["ids"][-MAX_REFERENCES:]
        in_reply_to = references[-1] if references else None
    now = utcnow()
    raw = build(
        from_name=ctx.config.get("notify.from_name"),
        from_address=ctx.config.get("notify.from_address") or do,
        to=draft.to,
        subject=subject,
        text=item.text,
        html=item.html,
        msg_id=msg_id,
        date=now,
        in_reply_to=in_reply_to,
        references=references,
        kind=draft.kind,
    )
    atomic_write_bytes(message_file(ctx.home, entry_id), raw, mode=0o600)
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
