"""RFC 5322 messages: multipart/alternative (plain text + HTML) with thread headers."""

from __future__ import annotations

from datetime import datetime


def message_id(entry_id: str, kind: str, do_email: str) -> str:
    """A stable Message-ID: the same email always gets the same one."""
    domain = do_email.rpartition("@")[2] or "localhost"
    return f"<{entry_id}.{kind.replace('_', '-')}@syft-bg.{domain}>"


def build(
    *,
    from_name: str,
    from_address: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    msg_id: str,
    date: datetime,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    kind: str = "",
) -> bytes:
    from email import policy
    from email.headerregistry import Address
    from email.message import EmailMessage
    from email.utils import format_datetime

    msg = EmailMessage(policy=policy.SMTP)
    local, _, domain = from_address.rpartition("@")
    msg["From"] = Address(display_name=from_name, username=local, domain=domain)
    msg["To"] = to
    # A job name like "=?utf-8?q?...?=" would be decoded by the reader's mail program
    # into other text than the job's name (RFC 2047): our subjects never hold "=?".
    msg["Subject"] = subject.replace("=?", "=\\?")
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = msg_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    # Tell vacation responders and mail rules that no person wrote this.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    if kind:
        msg["X-Syft-BG-Event"] = kind
    msg.set_content(text, subtype="plain", charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg.as_bytes()
