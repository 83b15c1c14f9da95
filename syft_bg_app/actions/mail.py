"""Mail: the queue, sending it again now, a test email, and the Gmail sign-in."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syft_bg_app.context import Context
from syft_bg_app.errors import UsageError
from syft_bg_app.session import changing, open_view
from syft_bg_app.store.home import AppHome


@dataclass
class MailQueue:
    """Delivery health in plain lines, and the emails waiting."""

    status: list[str]
    entries: list[dict[str, Any]]


@dataclass
class MailRetry:
    sent: int
    waiting: int
    events_back: int
    queue: MailQueue
    notes: list[str] = field(default_factory=list)


@dataclass
class MailTest:
    to: str
    transport: str
    delivered: bool
    outbox_dir: Path
    queue: MailQueue
    notes: list[str] = field(default_factory=list)


@dataclass
class GmailSignIn:
    token_path: Path
    transport_set: bool
    config_file: Path
    notes: list[str] = field(default_factory=list)


def _queue(ctx: Context) -> MailQueue:
    from syft_bg_app.mail.health import status_lines
    from syft_bg_app.mail.queue import peek

    return MailQueue(status_lines(ctx), list(peek(ctx.state)["queue"]))


def queue(home: AppHome) -> MailQueue:
    """The emails waiting to be sent and any delivery problem."""
    return _queue(open_view(home))


def _deliver_now(ctx: Context) -> None:
    from syft_bg_app.mail.deliver import deliver
    from syft_bg_app.mail.retry import Deadline

    deliver(ctx, Deadline(ctx.config.get("notify.retry_budget")))


def retry(home: AppHome) -> MailRetry:
    """Forget past delivery failures and send the queued emails now."""
    from syft_bg_app.mail.enqueue import retry_set_aside
    from syft_bg_app.mail.queue import mail_state

    with changing(home, "mail retry") as ctx:
        mail = mail_state(ctx.state)
        mail["problem"] = None
        for entry in mail["queue"]:
            for key in ("not_before", "error", "error_kind", "advice"):
                entry.pop(key, None)
            if entry.get("status") == "set aside":
                entry["status"] = "queued"
        events_back = retry_set_aside(ctx, force=True)
        waiting = len(mail["queue"])
        _deliver_now(ctx)
        sent = ctx.counts["sent"]
    return MailRetry(sent, waiting, events_back, _queue(ctx))


def send_test(home: AppHome, to: str | None = None) -> MailTest:
    """Send a test email now through the configured transport; one that fails is
    not kept for later."""
    from syft_bg_app.clock import iso
    from syft_bg_app.config.load import EMAIL_RE
    from syft_bg_app.mail.compose import test_draft
    from syft_bg_app.mail.enqueue import queue_draft
    from syft_bg_app.mail.queue import mail_state, message_file

    with changing(home, "mail test") as ctx:
        to = (to or ctx.config.do_email).strip()
        if not EMAIL_RE.fullmatch(to):
            raise UsageError(f"-t/--to: {to!r} is not an email address")
        transport = ctx.config.get("notify.transport")
        entry = queue_draft(ctx, test_draft(ctx, to, iso(), transport))
        ctx.state.save()
        _deliver_now(ctx)
        mail = mail_state(ctx.state)
        delivered = all(e["id"] != entry["id"] for e in mail["queue"])
        if not delivered:
            mail["queue"] = [e for e in mail["queue"] if e["id"] != entry["id"]]
            message_file(ctx.home, entry["id"]).unlink(missing_ok=True)
    return MailTest(to, transport, delivered, ctx.home.outbox_dir, _queue(ctx))


def check_gmail_client(credentials: Path, option: str = "--gmail") -> None:
    """Refuse a file that is not a Google OAuth client (before anything is written)."""
    source = credentials.expanduser()
    try:
        client = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{option}: cannot read {source} as JSON ({exc}); download the OAuth client "
            f"(type Desktop app) from Google Cloud console > APIs & Services > Credentials"
        ) from None
    if not isinstance(client, dict) or not any(
        isinstance(client.get(kind), dict) and client[kind].get("client_id")
        for kind in ("installed", "web")
    ):
        raise UsageError(
            f"{option}: {source} is not an OAuth client file (it has no 'installed' client); "
            f"create an OAuth client of type Desktop app and download its JSON"
        )


def keep_gmail_client(home: AppHome, credentials: Path) -> tuple[Path, Path]:
    """Copy the OAuth client where ``notify.gmail.credentials`` points (0600); returns
    the Gmail token and client paths."""
    from syft_bg_app.mail.deliver import gmail_paths

    source = credentials.expanduser()
    check_gmail_client(source)
    token_path, credentials_path = gmail_paths(open_view(home))
    credentials_path.parent.mkdir(parents=True, exist_ok=True)
    if source.resolve() != credentials_path.resolve():
        shutil.copyfile(source, credentials_path)
    os.chmod(credentials_path, 0o600)
    return token_path, credentials_path


def use_gmail(home: AppHome) -> bool:
    """Set notify.transport: gmail; whether config.yaml changed."""
    from syft_bg_app.config.editor import set_values
    from syft_bg_app.config.load import load_config

    if load_config(home.config_file).get("notify.transport") == "gmail":
        return False
    set_values(home.config_file, {"notify.transport": "gmail"})
    return True


def gmail_sign_in(home: AppHome, credentials: Path, port: int = 0) -> GmailSignIn:
    """Keep the OAuth client, run Google's consent in a browser, save the token, and
    send notifications through Gmail from now on."""
    from syft_bg_app.config.load import load_config
    from syft_bg_app.mail.gmail import gmail_scopes, run_consent

    token_path, credentials_path = keep_gmail_client(home, credentials)
    reads_replies = load_config(home.config_file).get("approve.email_replies.enabled")
    try:
        run_consent(credentials_path, token_path, gmail_scopes(reads_replies), port=port)
    except Exception as exc:
        raise UsageError(f"the Gmail sign-in did not finish: {exc}") from None
    transport_set = use_gmail(home)
    notes = []
    if not reads_replies:
        notes.append(
            "to approve or deny jobs by replying to their email: set "
            "approve.email_replies.enabled: true, then sign in again with this command"
        )
    return GmailSignIn(token_path, transport_set, home.config_file, notes)
