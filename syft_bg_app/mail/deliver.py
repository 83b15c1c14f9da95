"""Delivering the queue: mark "sending", send, mark sent, saving the checkpoint around
each send, so a pass that dies resends at most the one email that was in flight."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from syft_bg_app.clock import iso, parse_iso, utcnow
from syft_bg_app.context import Context
from syft_bg_app.mail.errors import MailError, PermanentMailError, TransientMailError
from syft_bg_app.mail.queue import mail_state, message_file
from syft_bg_app.mail.retry import Deadline, call
from syft_bg_app.mail.smtp import resolve_path

# After a permanent failure the same request is not repeated for this long,
# unless the configuration or the token/password file changes, or the data
# owner runs ``syft-bg mail retry``.
PERMANENT_RETRY_AFTER = timedelta(hours=1)
# An email that cannot be handled at all (its file unreadable, the transport
# failing on it in a way no retry mends) waits with this status until
# ``syft-bg mail retry``; the others are sent.
SET_ASIDE = "set aside"


class Transport(Protocol):
    name: str
    resend_replaces: bool

    def describe(self) -> str: ...

    def send(
        self, entry: dict[str, Any], raw: bytes, thread_id: str | None, deadline: Deadline
    ) -> str | None: ...

    def close(self) -> None: ...


def gmail_paths(ctx: Context) -> tuple[Path, Path]:
    settings = ctx.config.get("notify.gmail")
    root = ctx.home.root
    return resolve_path(settings["token"], root), resolve_path(settings["credentials"], root)


def from_address(ctx: Context) -> str:
    return ctx.config.get("notify.from_address") or ctx.config.do_email


def make_transport(ctx: Context) -> Transport:
    """The configured transport, not yet connected (configuration errors raise here)."""
    name = ctx.config.get("notify.transport")
    if name == "smtp":
        from syft_bg_app.mail.smtp import SmtpTransport

        return SmtpTransport(ctx.config.get("notify.smtp"), ctx.home.root, from_address(ctx))
    if name == "gmail":
        from syft_bg_app.mail.gmail import GmailTransport

        token, credentials = gmail_paths(ctx)
        return GmailTransport(
            token, credentials, ctx.config.do_email, ctx.config.get("notify.gmail.api_endpoint")
        )
    from syft_bg_app.mail.outbox import OutboxTransport

    return OutboxTransport(ctx.home.outbox_dir)


def fingerprint(ctx: Context) -> str:
    """Changes when the data owner changes what a permanent failure depends on."""
    parts: list[Any] = [ctx.config.get("notify")]
    paths = []
    settings = ctx.config.get("notify.smtp")
    if settings.get("password_file"):
        paths.append(resolve_path(settings["password_file"], ctx.home.root))
    paths.extend(gmail_paths(ctx))
    for path in paths:
        try:
            st = os.stat(path)
            parts.append([str(path), st.st_mtime_ns, st.st_size, st.st_mode])
        except OSError:
            parts.append([str(path), None])
    env_name = settings.get("password_env")
    parts.append(bool(env_name and os.environ.get(env_name)))
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def record_problem(ctx: Context, error: MailError, transport: str) -> None:
    mail = mail_state(ctx.state)
    permanent = isinstance(error, PermanentMailError)
    previous = mail.get("problem") or {}
    mail["problem"] = {
        "kind": "permanent" if permanent else "temporary",
        "transport": transport,
        "error": error.message,
        "advice": error.advice,
        "at": iso(),
        "since": previous.get("since") if previous.get("error") == error.message else iso(),
        "fingerprint": fingerprint(ctx) if permanent else None,
        "retry_after": iso(utcnow() + PERMANENT_RETRY_AFTER) if permanent else None,
    }
    log = ctx.log("notify")
    if previous.get("error") != error.message:
        log.warning("mail via %s: %s%s", transport, error.message, _advice(error))
    else:
        log.info("mail via %s still failing: %s", transport, error.message)


def _advice(error: MailError) -> str:
    return f" - {error.advice}" if error.advice else ""


def transport_blocked(ctx: Context) -> bool:
    """A permanent transport problem that nothing has changed since: wait."""
    problem = mail_state(ctx.state).get("problem")
    if not problem or problem["kind"] != "permanent":
        return False
    if problem.get("fingerprint") != fingerprint(ctx):
        return False
    return utcnow() < parse_iso(problem["retry_after"])


def _due(entry: dict[str, Any], now) -> bool:
    if entry.get("status") == SET_ASIDE:
        return False
    not_before = entry.get("not_before")
    return not not_before or parse_iso(not_before) <= now


def open_transport(ctx: Context, deadline: Deadline) -> Transport | None:
    """The transport, signed in and ready; None (problem recorded) when it cannot be."""
    name = ctx.config.get("notify.transport")
    try:
        transport = make_transport(ctx)
        opener = getattr(transport, "open", None)
        if opener is not None:
            call(lambda: opener(deadline), deadline, f"opening {name}")
    except MailError as exc:
        record_problem(ctx, exc, name)
        return None
    return transport


def refresh_only(ctx: Context, deadline: Deadline) -> None:
    """An idle pass still refreshes an expiring Gmail token, so a revoked sign-in
    shows in ``status`` before any email depends on it."""
    from syft_bg_app.mail.gmail import GmailTransport, token_due_for_refresh

    token, _ = gmail_paths(ctx)
    if not token_due_for_refresh(token) or transport_blocked(ctx):
        return
    transport = make_transport(ctx)
    assert isinstance(transport, GmailTransport)
    try:
        transport.refresh_if_needed(deadline)
    except MailError as exc:
        record_problem(ctx, exc, "gmail")
        return
    mail_state(ctx.state)["problem"] = None
    ctx.log("notify").info("refreshed the Gmail token")


def deliver(ctx: Context, deadline: Deadline) -> None:
    mail = mail_state(ctx.state)
    log = ctx.log("notify")
    now = utcnow()
    pending = [entry for entry in mail["queue"] if _due(entry, now)]
    if not pending:
        return
    if transport_blocked(ctx):
        log.debug("mail waits: %s", mail["problem"]["error"])
        return
    transport = open_transport(ctx, deadline)
    ctx.state.save()
    if transport is None:
        return
    sent_files: list[Path] = []
    try:
        for entry in pending:
            if deadline.expired:
                log.info(
                    "mail time budget used up; %d emails wait for the next pass",
                    len(mail["queue"]),
                )
                break
            outcome = _send_one(ctx, transport, entry, deadline, sent_files)
            if outcome == "stop":
                break
            if outcome == "sent":
                mail["problem"] = None
    finally:
        transport.close()
        ctx.state.save()
        for path in sent_files:
            _remove(path)


def _send_one(
    ctx: Context,
    transport: Transport,
    entry: dict[str, Any],
    deadline: Deadline,
    sent_files: list[Path],
) -> str:
    mail = mail_state(ctx.state)
    log = ctx.log("notify")
    path = message_file(ctx.home, entry["id"])
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        log.error(
            "email %s (%s to %s) lost its message file %s; dropped",
            entry["id"],
            entry["kind"],
            entry["to"],
            path,
        )
        mail["queue"].remove(entry)
        ctx.state.save()
        return "held"
    except OSError as exc:
        _set_aside(ctx, entry, f"cannot read its message file {path}: {exc.strerror}")
        return "held"
    if entry.get("status") == "sending":
        log.warning(
            "resending %s to %s: the pass that sent it stopped before it could record the result",
            entry["kind"],
            entry["to"],
        )
    thread = mail["threads"].get(entry.get("thread") or "")
    thread_id = thread.get("gmail_thread_id") if thread else None
    entry["status"] = "sending"
    entry["attempts"] = entry.get("attempts", 0) + 1
    entry["last_attempt_at"] = iso()
    save_each = not transport.resend_replaces
    if save_each:
        ctx.state.save()
    try:
        new_thread_id = call(
            lambda: transport.send(entry, raw, thread_id, deadline),
            deadline,
            f"sending {entry['kind']} to {entry['to']}",
        )
    except PermanentMailError as exc:
        entry.update(status="queued", error=exc.message, error_kind="permanent", advice=exc.advice)
        if exc.scope == "transport":
            record_problem(ctx, exc, transport.name)
            ctx.state.save()
            return "stop"
        # Only this email is refused: hold it, and let the others go.
        entry["not_before"] = iso(utcnow() + PERMANENT_RETRY_AFTER)
        log.warning("email %s to %s refused: %s", entry["kind"], entry["to"], exc.message)
        ctx.state.save()
        return "held"
    except TransientMailError as exc:
        entry.update(status="queued", error=exc.message, error_kind="temporary", advice=None)
        record_problem(ctx, exc, transport.name)
        ctx.state.save()
        return "stop"
    except Exception as exc:
        # A failure that is about this email alone: the others still go.
        _set_aside(ctx, entry, f"{type(exc).__name__}: {exc}")
        return "held"
    mail["queue"].remove(entry)
    if thread is not None and new_thread_id and not thread.get("gmail_thread_id"):
        thread["gmail_thread_id"] = new_thread_id
    if entry.get("terminal") and entry.get("thread"):
        others = [e for e in mail["queue"] if e.get("thread") == entry["thread"]]
        if not others:
            mail["threads"].pop(entry["thread"], None)
    mail["sent_total"] += 1
    mail["last_sent_at"] = iso()
    ctx.counts["sent"] += 1
    log.info("sent %s to %s via %s", entry["kind"], entry["to"], transport.name)
    if save_each:
        ctx.state.save()
        _remove(path)
    else:
        # The message file goes once the checkpoint no longer lists the email.
        sent_files.append(path)
    return "sent"


def _set_aside(ctx: Context, entry: dict[str, Any], reason: str) -> None:
    from syft_bg_app.views.render import terminal_text

    reason = terminal_text(reason)[:1000]
    entry.update(
        status=SET_ASIDE,
        error=reason,
        error_kind="set_aside",
        advice="fix the cause, then run: syft-bg mail retry",
    )
    ctx.log("notify").warning(
        "set aside the %s email to %s: %s (the others are sent)", entry["kind"], entry["to"], reason
    )
    ctx.state.save()


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
