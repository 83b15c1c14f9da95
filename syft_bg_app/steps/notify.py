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
from syft_bg_app.steps.isolation import StepItems, raise_failures


def run(ctx: Context) -> None:
    from syft_bg_app.mail.queue import mail_state, remove_orphans

    mail = mail_state(ctx.state)
    if mail["set_aside"]:
        from syft_bg_app.mail.enqueue import retry_set_aside

        retry_set_aside(ctx)
    events = list(ctx.state.data["events"])
    log = ctx.log("notify")
    # Each event set aside fails this pass once, saying why; later passes go on
    # without it (mail/enqueue.py).
    composed = StepItems(log, "event", "could not be composed")
    heartbeat = StepItems(log, "heartbeat email", "could not be composed")
    if events or heartbeat_due(ctx):
        remove_orphans(ctx.home, mail)
    if events:
        from syft_bg_app.mail.enqueue import enqueue_events

        try:
            queued, set_aside = enqueue_events(ctx, events)
        except SyftBgError as exc:
            # The events stay; what is already queued is still delivered below.
            log.error("cannot compose emails: %s", exc)
            composed.failed("all events", exc, count=len(events))
        else:
            log.debug("%d events became %d emails", len(events), queued)
            ctx.state.save()
            composed.went_well(len(events) - len(set_aside))
            for reason in set_aside:
                composed.failed("set aside", reason)
    if heartbeat_due(ctx):
        heartbeat.run("the heartbeat email", _queue_heartbeat, ctx)
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
    raise_failures(composed, heartbeat, hint="; see syft-bg mail list")


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
