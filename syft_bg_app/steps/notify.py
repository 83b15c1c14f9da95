"""Notify step: turn events into queued emails, then deliver the queue.

Each event in the checkpoint becomes the emails of the design's table (DO and
DS), queued in the checkpoint before the event is removed; the queue is then
delivered within ``notify.retry_budget`` seconds. Jinja2 and the mail
libraries are imported only when there is something to compose or send.
"""

from __future__ import annotations

from datetime import timedelta

from syft_bg_app.clock import iso, parse_iso, utcnow
from syft_bg_app.context import Context
from syft_bg_app.errors import SyftBgError


def run(ctx: Context) -> None:
    from syft_bg_app.mail.queue import mail_state, remove_orphans

    mail = mail_state(ctx.state)
    if mail["set_aside"]:
        from syft_bg_app.mail.enqueue import retry_set_aside

        retry_set_aside(ctx)
    events = list(ctx.state.data["events"])
    failure: SyftBgError | None = None
    if events or heartbeat_due(ctx):
        remove_orphans(ctx.home, mail)
    if events:
        from syft_bg_app.mail.enqueue import enqueue_events

        try:
            queued, set_aside = enqueue_events(ctx, events)
        except SyftBgError as exc:
            # The events stay; what is already queued is still delivered below.
            ctx.log("notify").error("cannot compose emails: %s", exc)
            failure = exc
        else:
            ctx.log("notify").debug("%d events became %d emails", len(events), queued)
            ctx.state.save()
            if set_aside:
                # Fail this pass once, saying why; later passes go on without them.
                more = f" (and {len(set_aside) - 1} more)" if len(set_aside) > 1 else ""
                failure = SyftBgError(
                    f"set aside {len(set_aside)} event(s) whose emails cannot be composed: "
                    f"{set_aside[0]}{more}; see syft-bg mail list"
                )
    if heartbeat_due(ctx):
        try:
            _queue_heartbeat(ctx)
        except SyftBgError as exc:
            ctx.log("notify").error("cannot compose the heartbeat email: %s", exc)
            failure = failure or exc
        ctx.state.save()
    transport = ctx.config.get("notify.transport")
    if mail["queue"] or transport == "gmail":
        from syft_bg_app.mail.deliver import deliver, refresh_only
        from syft_bg_app.mail.retry import Deadline

        deadline = Deadline(ctx.config.get("notify.retry_budget"))
        if mail["queue"]:
            deliver(ctx, deadline)
        else:
            refresh_only(ctx, deadline)
    elif mail["problem"]:
        # Nothing waits and nothing signs in: an old problem no longer applies.
        mail["problem"] = None
    if failure is not None:
        raise failure


def heartbeat_due(ctx: Context) -> bool:
    if not ctx.config.get("notify.heartbeat"):
        return False
    last = ctx.state.data.get("mail", {}).get("heartbeat_at")
    if not last:
        return True
    period = timedelta(hours=ctx.config.get("notify.heartbeat_hours"))
    return utcnow() - parse_iso(last) >= period


def _queue_heartbeat(ctx: Context) -> None:
    from syft_bg_app.mail.compose import heartbeat_draft
    from syft_bg_app.mail.enqueue import queue_draft
    from syft_bg_app.mail.queue import mail_state

    mail = mail_state(ctx.state)
    now = iso()
    draft = heartbeat_draft(ctx, now, len(mail["queue"]), ctx.config.get("notify.transport"))
    queue_draft(ctx, draft)
    mail["heartbeat_at"] = now
