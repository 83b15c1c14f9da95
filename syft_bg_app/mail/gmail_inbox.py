"""Reading the data owner's replies through the Gmail API.

Each pass asks ``users.history.list`` for the messages added since the
history id saved in the checkpoint; the first pass takes the mailbox's
present id from ``users.getProfile`` and reads from then on. Only a message
whose In-Reply-To or References names a "job submitted" email is fetched
whole (``messages.get``, format raw). A saved id that Gmail no longer keeps
(404, after about a week without a pass) restarts from now, and the log says
so. Reading needs the ``gmail.readonly`` (or ``gmail.modify``) permission.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syft_bg_app.clock import iso
from syft_bg_app.context import Context
from syft_bg_app.errors import SyftBgError
from syft_bg_app.mail import replies

READ_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/gmail.readonly",
        "https://www.googleapis.com/auth/gmail.modify",
        "https://mail.google.com/",
    }
)
# Message ids looked at in one pass; the rest wait for the next one.
BATCH = 500
BUDGET_SECONDS = 30


class GmailReadError(SyftBgError):
    exit_code = 1


class Gone(Exception):
    """Gmail answered 404: an expired history id, or a message deleted since."""


class _Reader:
    """Gmail API calls with the transport's sign-in, each retried on transient
    failures (429, 5xx, rate limits, no connection) within the pass's budget."""

    def __init__(self, transport: Any, deadline: Any) -> None:
        self.transport = transport
        self.users = transport.service.users()
        self.deadline = deadline

    def run(self, request: Any, what: str) -> dict[str, Any]:
        from syft_bg_app.mail.retry import call

        def once() -> dict[str, Any]:
            try:
                return request.execute()
            except Exception as exc:
                if _status(exc) == 404:
                    raise Gone(what) from None
                raise self.transport._classify(exc) from None

        return call(once, self.deadline, what)


# Messages that are no reply of the owner's: unsent drafts, and what Gmail judged
# spam (a forged From: the owner's address) or the owner binned.
NOT_REPLIES = frozenset({"DRAFT", "SPAM", "TRASH"})


def token_can_read(token_path: Path) -> bool | None:
    """Whether the saved sign-in allows reading mail (None: the token says nothing)."""
    try:
        info = json.loads(token_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    scopes = info.get("scopes") if isinstance(info, dict) else None
    if isinstance(scopes, str):
        scopes = scopes.split()
    if not isinstance(scopes, list):
        return None
    return bool(READ_SCOPES & set(scopes))


def _reader(ctx: Context) -> _Reader:
    from syft_bg_app.mail.deliver import gmail_paths
    from syft_bg_app.mail.errors import MailError
    from syft_bg_app.mail.gmail import GmailTransport
    from syft_bg_app.mail.retry import Deadline

    token, credentials = gmail_paths(ctx)
    if token_can_read(token) is False:
        raise GmailReadError(
            "the Gmail sign-in does not allow reading replies (it lacks the gmail.readonly "
            f"permission): sign in again with syft-bg init -e {ctx.config.do_email} "
            f"--gmail {credentials}"
        )
    transport = GmailTransport(
        token, credentials, ctx.config.do_email, ctx.config.get("notify.gmail.api_endpoint")
    )
    deadline = Deadline(BUDGET_SECONDS)
    try:
        transport.open(deadline)
    except MailError as exc:
        raise GmailReadError(f"cannot read replies from Gmail: {exc}") from None
    return _Reader(transport, deadline)


def _status(exc: Exception) -> int | None:
    resp = getattr(exc, "resp", None)
    try:
        return int(getattr(resp, "status", None))
    except (TypeError, ValueError):
        return None


def read_new(ctx: Context, handle: Callable[[bytes, str], str]) -> None:
    """Hand each new message that references a "job submitted" email to ``handle``."""
    log = ctx.log("approve")
    position = replies.reply_state(ctx)["gmail"]
    reader = _reader(ctx)
    try:
        start = position.get("history_id")
        if position.get("account") != ctx.config.do_email or not isinstance(start, str):
            _start_from_now(ctx, reader, position)
            log.info("reading email replies in Gmail from now on")
            return
        try:
            added, latest = _history(reader, start)
        except Gone:
            since = position.get("checked_at") or "the last pass"
            _start_from_now(ctx, reader, position)
            log.warning(
                "Gmail no longer keeps the mailbox history since %s (the saved position "
                "expired): replies are read from now on; decide jobs whose replies came "
                "in between with syft-bg jobs approve or reject",
                since,
            )
            return
        for message_id in added[:BATCH]:
            try:
                raw = _reply_raw(ctx, reader, message_id)
            except Gone:
                continue  # deleted since it arrived: nothing to read
            if raw is not None:
                outcome = handle(raw, f"Gmail message {message_id}")
                log.debug("Gmail message %s: %s", message_id, outcome)
        if len(added) <= BATCH:
            position.update(history_id=latest, checked_at=iso())
        else:
            # The rest are read again by the next pass; those acted on are skipped.
            log.info("%d new Gmail messages: the rest wait for the next pass", len(added))
        ctx.state.save()
    except GmailReadError:
        raise
    except Exception as exc:
        raise GmailReadError(f"reading replies from Gmail failed: {exc}") from None
    finally:
        reader.transport.close()


def _start_from_now(ctx: Context, reader: _Reader, position: dict[str, Any]) -> None:
    profile = reader.run(reader.users.getProfile(userId="me"), "reading the Gmail profile")
    position.update(
        account=ctx.config.do_email, history_id=str(profile["historyId"]), checked_at=iso()
    )
    ctx.state.save()


def _history(reader: _Reader, start: str) -> tuple[list[str], str]:
    """(ids of messages added since ``start``, in order; the mailbox's latest history id)."""
    added: list[str] = []
    seen: set[str] = set()
    latest = start
    token = None
    while True:
        request = reader.users.history().list(
            userId="me", startHistoryId=start, historyTypes="messageAdded", pageToken=token
        )
        page = reader.run(request, "reading the Gmail history")
        for record in page.get("history") or []:
            for item in record.get("messagesAdded") or []:
                message = item.get("message") or {}
                labels = message.get("labelIds") or []
                if (
                    message.get("id")
                    and message["id"] not in seen
                    and not NOT_REPLIES & set(labels)
                ):
                    seen.add(message["id"])
                    added.append(message["id"])
        latest = str(page.get("historyId") or latest)
        token = page.get("nextPageToken")
        if not token or len(added) > BATCH:
            return added, latest


def _reply_raw(ctx: Context, reader: _Reader, message_id: str) -> bytes | None:
    """The whole message, when its headers reference a "job submitted" email."""
    messages = reader.users.messages()
    meta = reader.run(
        messages.get(
            userId="me",
            id=message_id,
            format="metadata",
            metadataHeaders=["In-Reply-To", "References"],
        ),
        "reading a Gmail message's headers",
    )
    if "DRAFT" in (meta.get("labelIds") or []):
        return None
    ids: list[str] = []
    for header in (meta.get("payload") or {}).get("headers") or []:
        if str(header.get("name", "")).lower() in ("in-reply-to", "references"):
            ids += replies.message_ids(header.get("value"))
    if not replies.targets_referenced(ctx, ids):
        return None
    if int(meta.get("sizeEstimate") or 0) > replies.MAX_REPLY_BYTES:
        ctx.log("approve").info("Gmail message %s: a reply too large to read", message_id)
        return None
    full = reader.run(
        messages.get(userId="me", id=message_id, format="raw"), "reading a Gmail message"
    )
    raw = full.get("raw") or ""
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
