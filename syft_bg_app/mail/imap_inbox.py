"""Reading the data owner's replies over IMAP (the standard library's imaplib).

Only what is new is read: messages whose UID is above the one saved in the
checkpoint, in the folder whose UIDVALIDITY was saved with it. Headers come
first; only a message that references a "job submitted" email is fetched
whole, and nothing is marked as read. The first pass starts from the
messages there now; when the server renumbers the folder (UIDVALIDITY
changed) the messages of the last days are read again and replies already
acted on are skipped by their Message-ID.
"""

from __future__ import annotations

import email
import imaplib
import re
import ssl
from collections.abc import Callable
from datetime import timedelta
from email import policy
from pathlib import Path
from typing import Any

from syft_bg_app.clock import iso, parse_iso, utcnow
from syft_bg_app.context import Context
from syft_bg_app.errors import SyftBgError
from syft_bg_app.mail import replies
from syft_bg_app.mail.errors import PermanentMailError
from syft_bg_app.mail.smtp import _is_loopback, read_password, resolve_path

# New messages looked at in one pass; the rest wait for the next one.
BATCH = 500
HEADER_FIELDS = "(IN-REPLY-TO REFERENCES)"
UID_RE = re.compile(rb"\bUID (\d+)")
SIZE_RE = re.compile(rb"\bRFC822\.SIZE (\d+)")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class ImapError(SyftBgError):
    exit_code = 1


def settings(ctx: Context) -> dict[str, Any]:
    """The IMAP settings, with what is left empty taken from notify.smtp."""
    imap = dict(ctx.config.get("approve.email_replies.imap"))
    smtp = ctx.config.get("notify.smtp")
    imap["host"] = imap.get("host") or smtp.get("host")
    imap["username"] = imap.get("username") or smtp.get("username") or ctx.config.do_email
    if not imap.get("password_env") and not imap.get("password_file"):
        imap["password_env"] = smtp.get("password_env")
        imap["password_file"] = smtp.get("password_file")
    if not imap.get("port"):
        imap["port"] = 993 if imap["security"] == "ssl" else 143
    return imap


def _password(conf: dict[str, Any], home_root: Path) -> str:
    try:
        password = read_password({**conf, "username": conf["username"]}, home_root)
    except PermanentMailError as exc:
        text = str(exc).replace("SMTP", "IMAP").replace("notify.smtp", "email_replies.imap")
        raise ImapError(text) from None
    if password is None:
        raise ImapError(
            "no IMAP password: set approve.email_replies.imap.password_file (chmod 600) "
            "or password_env"
        )
    return password


def connect(ctx: Context) -> imaplib.IMAP4:
    conf = settings(ctx)
    host, port, security = conf["host"], conf["port"], conf["security"]
    if security == "none" and not _is_loopback(host):
        raise ImapError(
            f"approve.email_replies.imap.security is none: the password would cross the "
            f"network to {host} unencrypted; use ssl or starttls"
        )
    context = ssl.create_default_context()
    if conf.get("ca_file"):
        context.load_verify_locations(cafile=str(resolve_path(conf["ca_file"], ctx.home.root)))
    password = _password(conf, ctx.home.root)
    timeout = conf["timeout"]
    try:
        if security == "ssl":
            conn = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=timeout)
        else:
            conn = imaplib.IMAP4(host, port, timeout=timeout)
            if security == "starttls":
                conn.starttls(ssl_context=context)
        conn.login(conf["username"], password)
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
        raise ImapError(f"cannot read replies from {host}:{port}: {_plain(exc)}") from None
    return conn


def _plain(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the server's certificate is not trusted ({exc.verify_message}); for a server "
            "with its own certificate set approve.email_replies.imap.ca_file"
        )
    if isinstance(exc, imaplib.IMAP4.error) and exc.args:
        text = exc.args[0]
        return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _check(result: tuple[str, list], what: str) -> list:
    typ, data = result
    if typ != "OK":
        said = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise ImapError(f"the IMAP server refused {what}: {said}")
    return data


def read_new(ctx: Context, handle: Callable[[bytes, str], str]) -> None:
    """Hand each new message that references a "job submitted" email to ``handle``."""
    log = ctx.log("approve")
    conf = settings(ctx)
    position = replies.reply_state(ctx)["imap"]
    account = f"{conf['username']}@{conf['host']}:{conf['port']}/{conf['folder']}"
    conn = connect(ctx)
    try:
        _check(conn.select(_quote(conf["folder"]), readonly=True), f"the folder {conf['folder']}")
        validity = _untagged_int(conn, "UIDVALIDITY")
        next_uid = _untagged_int(conn, "UIDNEXT")
        if position.get("account") != account or not isinstance(position.get("last_uid"), int):
            last = (next_uid - 1) if next_uid else _max_uid(conn)
            position.update(account=account, uidvalidity=validity, last_uid=last, checked_at=iso())
            ctx.state.save()
            log.info("reading email replies in %s from now on", account)
            return
        if position.get("uidvalidity") != validity:
            since = _since(position.get("checked_at"))
            log.warning(
                "the IMAP folder %s was renumbered (UIDVALIDITY changed): reading its "
                "messages since %s again; replies already acted on are skipped",
                account,
                since,
            )
            uids = _search(conn, "SINCE", since)
        else:
            # "N:*" also names the highest UID when it is below N.
            found = _search(conn, "UID", f"{position['last_uid'] + 1}:*")
            uids = [u for u in found if u > position["last_uid"]]
        uids = sorted(uids)[:BATCH]
        wanted = _referencing(ctx, conn, uids)
        for uid in uids:
            if uid in wanted:
                raw = _fetch_whole(conn, uid)
                if raw is not None:
                    outcome = handle(raw, f"IMAP {conf['folder']} UID {uid}")
                    log.debug("IMAP UID %d: %s", uid, outcome)
            # Saved with each decision (``handle`` saves the checkpoint) and at the end:
            # a stopped pass reads again at most messages that decided nothing.
            position.update(uidvalidity=validity, last_uid=uid, checked_at=iso())
        if not uids:
            position.update(uidvalidity=validity, checked_at=iso())
        ctx.state.save()
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
        raise ImapError(f"reading replies from {account} failed: {_plain(exc)}") from None
    finally:
        try:
            conn.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _untagged_int(conn: imaplib.IMAP4, name: str) -> int | None:
    _, data = conn.response(name)
    for item in data or []:
        if item is not None:
            try:
                return int(item)
            except ValueError:
                return None
    return None


def _max_uid(conn: imaplib.IMAP4) -> int:
    return max(_search(conn, "ALL"), default=0)


def _search(conn: imaplib.IMAP4, *criteria: str) -> list[int]:
    data = _check(conn.uid("SEARCH", None, *criteria), "the search")
    return [int(n) for chunk in data if chunk for n in chunk.split()]


def _since(checked_at: object) -> str:
    try:
        moment = parse_iso(str(checked_at))
    except (TypeError, ValueError):
        moment = utcnow()
    day = moment - timedelta(days=1)
    # IMAP dates name the month in English whatever the locale (RFC 3501).
    return f"{day.day:02d}-{MONTHS[day.month - 1]}-{day.year}"


def _referencing(ctx: Context, conn: imaplib.IMAP4, uids: list[int]) -> set[int]:
    """The UIDs among ``uids`` whose In-Reply-To or References name a job email."""
    if not uids:
        return set()
    wanted: set[int] = set()
    for start in range(0, len(uids), 100):
        chunk = ",".join(str(u) for u in uids[start : start + 100])
        data = _check(
            conn.uid("FETCH", chunk, f"(RFC822.SIZE BODY.PEEK[HEADER.FIELDS {HEADER_FIELDS}])"),
            "reading headers",
        )
        for item in data:
            if not isinstance(item, tuple):
                continue
            uid, size = UID_RE.search(item[0]), SIZE_RE.search(item[0])
            if uid is None:
                continue
            headers = email.message_from_bytes(item[1], policy=policy.default)
            ids = replies.message_ids(headers.get("In-Reply-To"))
            ids += replies.message_ids(headers.get("References"))
            too_big = size is not None and int(size.group(1)) > replies.MAX_REPLY_BYTES
            if replies.targets_referenced(ctx, ids):
                if too_big:
                    ctx.log("approve").info("IMAP UID %s: a reply too large to read", uid.group(1))
                else:
                    wanted.add(int(uid.group(1)))
    return wanted


def _fetch_whole(conn: imaplib.IMAP4, uid: int) -> bytes | None:
    data = _check(conn.uid("FETCH", str(uid), "(BODY.PEEK[])"), "reading a message")
    for item in data:
        if isinstance(item, tuple) and UID_RE.search(item[0]):
            return item[1]
    return None
