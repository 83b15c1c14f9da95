"""Approving or denying a job by replying to its "job submitted" email.

A reply decides a job only when all of these hold:

- it is from the data owner's address and is not an automatic message (the
  app's own emails, out-of-office answers);
- it references (In-Reply-To or References) the Message-ID of the app's own
  "job submitted" email to the owner. That Message-ID carries a random part,
  so a stranger who forges the From address cannot know it;
- its first line that is not quoted text starts with ``approve``,
  ``auto-approve``, ``deny`` or ``reject`` (the rest of the line is the reason);
- the job is still pending, and (to approve) the email showed every file in
  full and the job's files are still the bytes it showed.

Each reply is acted on once: its identity is kept in the checkpoint with the
readers' positions (``state.data["replies"]``), saved after each reply.
"""

from __future__ import annotations

import email
import hashlib
import re
import secrets
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses
from html.parser import HTMLParser
from typing import Any

from syft_bg_app.clock import iso
from syft_bg_app.context import Context
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.invocation import command

# Replies remembered as handled; older ones can only be replayed by a mailbox
# whose UIDVALIDITY changed, and those are read back a day at most.
DONE_KEPT = 2000
TARGETS_KEPT = 2000
REASON_CAP = 2000
# A reply larger than this is not read whole (a decision is one line).
MAX_REPLY_BYTES = 5 * 1024 * 1024
DECISION_RE = re.compile(r"^(auto-approve|approve|deny|reject)\b[\s:,.!;-]*(.*)$", re.IGNORECASE)
ATTRIBUTION_RE = re.compile(r"^on\b.*\bwrote:?$|^le\b.*\ba écrit\s?:$|^am\b.*schrieb.*:$", re.I)
QUOTED_BLOCK_RE = re.compile(
    r"^(-{2,}\s*(original message|forwarded message)\s*-{2,}|begin forwarded message:|"
    r"_{5,}|from:\s.*|sent from my .*)$",
    re.IGNORECASE,
)
SIGNATURE = ("-- ", "--")
REPLY_HOW = (
    "reply to this email with one of these words on the first line: approve, "
    "auto-approve (also trusts these exact files from this data scientist from now on), "
    "or deny REASON"
)


@dataclass
class Decision:
    word: str  # approve, auto-approve or deny
    reason: str


# -- remembering what each "job submitted" email showed --------------------------------


def unguessable_id(msg_id: str) -> str:
    """``msg_id`` with a random part: what a forged reply cannot reference."""
    local, _, domain = msg_id.strip("<>").partition("@")
    return f"<{local}.{secrets.token_hex(12)}@{domain}>"


def enabled(ctx: Context) -> bool:
    return bool(ctx.config.get("approve.email_replies.enabled"))


def shown_hashes(code: Any) -> dict[str, str] | None:
    """{path: sha256} of a job's files when ``code`` (``compose.collect_code``)
    showed every one of them in full, else None."""
    if not isinstance(code, dict) or not code.get("available"):
        return None
    if code.get("more_files") or code.get("more_problems") or code.get("problems"):
        return None
    files = code.get("files") or []
    hashes = {}
    for entry in files:
        if entry.get("text") is None or entry.get("truncated") or not entry.get("sha256"):
            return None
        hashes[entry["path"]] = entry["sha256"]
    return hashes if "run.sh" in hashes else None


def reply_state(ctx: Context) -> dict[str, Any]:
    """The replies part of the checkpoint; a part of the wrong type starts afresh."""
    data = ctx.state.data
    part = data.get("replies")
    if not isinstance(part, dict):
        part = data["replies"] = {}
    for key in ("targets", "done", "imap", "gmail"):
        if not isinstance(part.get(key), dict):
            part[key] = {}
    return part


def remember_target(ctx: Context, msg_id: str, variables: dict[str, Any], event: dict) -> None:
    """Keep what the "job submitted" email ``msg_id`` showed, for replies to it."""
    targets = reply_state(ctx)["targets"]
    hashes = (
        shown_hashes(variables.get("code")) if variables.get("reply_approval") == "yes" else None
    )
    targets[msg_id] = {
        "ds_email": event["ds_email"],
        "job": event["job"],
        "protocol": str(event.get("protocol") or "1"),
        "hashes": hashes,
        "datasets": variables.get("shown_datasets"),
        "at": iso(),
    }
    _keep_newest(targets, TARGETS_KEPT)


def _keep_newest(table: dict[str, Any], kept: int) -> None:
    """Drop the oldest entries (by their time) beyond ``kept``."""

    def when(key: str) -> str:
        value = table[key]
        return str(value.get("at") if isinstance(value, dict) else value)

    for old in sorted(table, key=when)[:-kept] if len(table) > kept else []:
        del table[old]


# -- reading a reply ------------------------------------------------------------------


class _HtmlText(HTMLParser):
    """The text of an HTML reply, without quoted parts (blockquote, Gmail's quote)."""

    BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "blockquote", "hr"})
    VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[bool] = []  # per open element: does it hide its content
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BREAKS:
            self.parts.append("\n")
        if tag in self.VOID:
            return
        classes = " ".join(v or "" for k, v in attrs if k == "class")
        hides = tag in ("blockquote", "style", "script", "head", "title") or "quote" in classes
        self.stack.append(hides)
        self.hidden += hides

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if self.stack:
            self.hidden -= self.stack.pop()
        if tag in self.BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def reply_text(msg: EmailMessage) -> str:
    """The plain text of a reply (from its HTML when it has no plain-text part)."""
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    try:
        content = body.get_content()
    except (LookupError, ValueError):
        return ""
    if not isinstance(content, str):
        return ""
    return html_text(content) if body.get_content_subtype() == "html" else content


def first_own_line(text: str) -> str | None:
    """The reply's first line that is not quoted text, or None."""
    lines = [line.strip().lstrip("\ufeff") for line in text.replace("\r", "").split("\n")]
    for n, line in enumerate(lines):
        if not line or line.startswith(">"):
            continue
        if line in SIGNATURE or QUOTED_BLOCK_RE.match(line):
            return None  # a signature or a forwarded/quoted block: nothing of the owner's above
        # "On <date>, <name> <address> wrote:" may be wrapped over two lines.
        joined = f"{line} {lines[n + 1]}" if n + 1 < len(lines) else line
        if ATTRIBUTION_RE.match(line) or (
            line.lower().startswith("on ") and ATTRIBUTION_RE.match(joined)
        ):
            continue
        if n > 0 and lines[n - 1].lower().startswith("on ") and line.lower().endswith("wrote:"):
            continue
        return line
    return None


def parse_decision(msg: EmailMessage) -> Decision | None:
    line = first_own_line(reply_text(msg))
    if line is None:
        return None
    found = DECISION_RE.match(line)
    if found is None or line.endswith("?"):
        return None
    word = found.group(1).lower()
    return Decision("deny" if word == "reject" else word, found.group(2).strip()[:REASON_CAP])


def message_ids(value: object) -> list[str]:
    return re.findall(r"<[^<>\s]+>", str(value or ""))


def referenced_ids(msg: EmailMessage) -> list[str]:
    return message_ids(msg.get("In-Reply-To")) + message_ids(msg.get("References"))


def sender(msg: EmailMessage) -> str | None:
    """The one address in From (None when there is none or more than one)."""
    addresses = [a for _, a in getaddresses([str(v) for v in msg.get_all("From") or []]) if a]
    return addresses[0].lower() if len(addresses) == 1 else None


def is_automatic(msg: EmailMessage) -> bool:
    auto = str(msg.get("Auto-Submitted") or "no").strip().lower()
    return auto != "no" or msg.get("X-Syft-BG-Event") is not None


def reply_key(msg: EmailMessage, raw: bytes) -> str:
    ids = message_ids(msg.get("Message-ID"))
    return ids[0] if ids else "sha256:" + hashlib.sha256(raw).hexdigest()


def targets_referenced(ctx: Context, header_ids: Iterable[str]) -> bool:
    """Whether any of ``header_ids`` is a "job submitted" email a reply can decide."""
    targets = reply_state(ctx)["targets"]
    return any(i in targets for i in header_ids)


# -- acting on a reply ----------------------------------------------------------------


def handle_reply(ctx: Context, raw: bytes, where: str) -> str:
    """Act on one message read from the owner's mailbox; return what happened."""
    log = ctx.log("approve")
    msg = email.message_from_bytes(raw, policy=policy.default)
    state = reply_state(ctx)
    targets = state["targets"]
    refs = [i for i in referenced_ids(msg) if i in targets]
    if not refs:
        return "references no job email"
    if is_automatic(msg):
        return "an automatic message"
    key = reply_key(msg, raw)
    if key in state["done"]:
        return "acted on already"
    target = targets[refs[0]]
    if not isinstance(target, dict) or not all(
        isinstance(target.get(k), str) for k in ("ds_email", "job", "protocol")
    ):
        return "its job email's record is damaged"
    ref = JobRef(target["ds_email"], target["job"], target["protocol"])
    frm = sender(msg)
    if frm != ctx.config.do_email.lower():
        # Kept as handled too: a forged reply is looked at once.
        _done(state, key)
        log.warning(
            "a reply about %s from %s (%s) was left alone: not from the data owner",
            ref.label,
            frm,
            where,
        )
        return "not from the data owner"
    decision = parse_decision(msg)
    if decision is None:
        _done(state, key)
        log.info(
            "a reply about %s (%s) was left alone: no decision on its first line", ref.label, where
        )
        return "not a decision"
    outcome = _apply(ctx, ref, refs[0], target, decision, key)
    _done(state, key)
    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol)
    if record is None or record.get("status") != "pending":
        # Decided: later replies are answered from the job's status alone.
        target["hashes"] = None
    # Saved with the decision: a pass stopped before the reader saves its
    # position reads this reply again, and skips it.
    ctx.state.save()
    log.info("email reply %s about %s (%s): %s", decision.word, ref.label, where, outcome)
    return outcome


def _done(state: dict[str, Any], key: str) -> None:
    state["done"][key] = iso()
    _keep_newest(state["done"], DONE_KEPT)


def _apply(
    ctx: Context, ref: JobRef, target_id: str, target: dict, decision: Decision, key: str
) -> str:
    from syft_bg_app.approval.decisions import (
        DatasetRefused,
        DecisionError,
        approve_job,
        reject_job,
    )

    record = ctx.state.job(ref.ds_email, ref.name, ref.protocol)
    show = command(f"jobs show {shlex.quote(ref.label)}", ctx.home)
    approve = command(f"jobs approve {shlex.quote(ref.label)}", ctx.home)
    if record is None or record.get("status") != "pending":
        status = "gone" if record is None else record.get("status")
        _answer(
            ctx,
            ref,
            key,
            f'Your reply "{decision.word}" changed nothing: the job is {status} already. '
            f"See: {show}",
        )
        return f"nothing changed, the job is {status}"
    details = {"method": "email", "message_id": key, "replied_to": target_id}
    if decision.word == "deny":
        reason = decision.reason or None
        reject_job(ctx, ref, reason, method="email", details=details, by="by email reply")
        return "rejected"
    hashes = target.get("hashes")
    shown_datasets = target.get("datasets")
    if not isinstance(hashes, dict) or not hashes or not isinstance(shown_datasets, list):
        _answer(
            ctx,
            ref,
            key,
            "A reply cannot approve this job: its email did not show every file in full "
            "(files were shortened, left out or binary), and you approve only what you saw. "
            f"Review it with: {show}\nthen approve it with: {approve}",
        )
        return "not approved: the email did not show every file in full"
    try:
        approve_job(
            ctx,
            ref,
            "manual",
            reason=decision.reason or "approved by email reply",
            hashes=hashes,
            by="by email reply",
            details=details,
            datasets=shown_datasets,
        )
    except DatasetRefused as exc:
        _answer(ctx, ref, key, f"Nothing was approved: {exc}")
        return f"not approved: {exc}"
    except DecisionError as exc:
        _answer(
            ctx,
            ref,
            key,
            "Nothing was approved: the job's files or the datasets it declares are no longer "
            "the ones this email showed (the data scientist changed them since). Review "
            f"them again: {show}",
        )
        return f"not approved: {exc}"
    if decision.word == "auto-approve":
        return "approved; " + _add_rule(ctx, ref, hashes, shown_datasets, key)
    return "approved"


def _add_rule(
    ctx: Context, ref: JobRef, hashes: dict[str, str], datasets: list[str], key: str
) -> str:
    """Trust exactly these files from this data scientist, reading exactly the datasets
    the email showed, as ``auto-approve --from-job``."""
    from syft_bg_app.config.editor import update_rules

    made: dict[str, str] = {}

    def change(rules: list[dict]) -> list[dict]:
        taken = {r["name"] for r in rules}
        name, n = ref.name, 2
        while name in taken:
            name, n = f"{ref.name}-{n}", n + 1
        made["name"] = name
        rule = {"name": name, "peers": [ref.ds_email], "files": dict(hashes), "name_only": []}
        if datasets:
            rule["datasets"] = list(datasets)
        rules.append(rule)
        return rules

    try:
        update_rules(ctx.home.config_file, change)
    except Exception as exc:  # the approval stands; the owner is told the rule failed
        ctx.log("approve").warning("%s: no rule made from the email reply: %s", ref.label, exc)
        _answer(ctx, ref, key, f"The job is approved, but no rule was made: {exc}")
        return f"no rule made: {exc}"
    _answer(
        ctx,
        ref,
        key,
        f'The job is approved, and the rule "{made["name"]}" now approves the same files '
        f"from {ref.ds_email} automatically"
        + (f", reading the datasets {', '.join(datasets)}." if datasets else "."),
    )
    return f"rule {made['name']} made"


def _answer(ctx: Context, ref: JobRef, key: str, text: str) -> None:
    """A short email to the owner, in the job's thread."""
    ctx.state.add_event(
        "reply_answer",
        **ref.event_fields,
        text=text,
        reply=hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16],
    )


# -- the pass -------------------------------------------------------------------------


def read_replies(ctx: Context) -> Exception | None:
    """Act on the replies that reached the owner's mailbox since the last pass.

    A mailbox that cannot be read is returned, not raised, so the rules still
    run; the approve step fails with it afterwards (``status`` shows it).
    """
    if not enabled(ctx):
        return None
    reader = inbox_for(ctx)
    if reader is None:
        return None
    try:
        reader(ctx, lambda raw, where: _handle_one(ctx, raw, where))
    except Exception as exc:
        ctx.log("approve").error("email replies not read: %s", exc)
        return exc
    return None


def _handle_one(ctx: Context, raw: bytes, where: str) -> str:
    """``handle_reply``, where one message that cannot be read never holds up the rest."""
    try:
        return handle_reply(ctx, raw, where)
    except OSError:
        raise  # the disk or the datasite, not the message: tried again next pass
    except Exception as exc:
        ctx.log("approve").error("%s was left alone: it cannot be read (%s)", where, exc)
        return "cannot be read"


def inbox_for(ctx: Context) -> Callable[[Context, Callable[[bytes, str], str]], None] | None:
    if ctx.config.get("notify.transport") == "gmail":
        from syft_bg_app.mail.gmail_inbox import read_new

        return read_new
    if ctx.config.get("approve.email_replies.imap.host") or ctx.config.get("notify.smtp.host"):
        from syft_bg_app.mail.imap_inbox import read_new

        return read_new
    ctx.log("approve").warning(
        "approve.email_replies.enabled is set, but there is no mailbox to read: set "
        "approve.email_replies.imap (or use notify.transport: gmail)"
    )
    return None


# -- setup-status -----------------------------------------------------------------------


def setup_status(ctx: Context) -> tuple[bool, str, str | None] | None:
    """(works, what, fix) about reading replies, or None when there is nothing to say."""
    transport = ctx.config.get("notify.transport")
    where = ctx.config.path or "config.yaml"
    if not enabled(ctx):
        if transport == "outbox":
            return None
        return (
            True,
            "off; to approve or deny jobs by replying to their email, set "
            f"approve.email_replies.enabled: true in {where}",
            None,
        )
    if transport == "gmail":
        from syft_bg_app.mail.deliver import gmail_paths
        from syft_bg_app.mail.gmail_inbox import token_can_read

        token, credentials = gmail_paths(ctx)
        if token_can_read(token) is False:
            return (
                False,
                f"the Gmail sign-in ({token}) may send but not read mail (no gmail.readonly "
                "or gmail.modify permission)",
                f"sign in again: syft-bg init -e {ctx.config.do_email} --gmail {credentials}",
            )
        return True, "read from Gmail (users.history.list) each pass", None
    from syft_bg_app.mail.imap_inbox import ImapError, connect, settings

    conf = settings(ctx)
    if not conf.get("host"):
        return (
            False,
            "no mailbox to read replies from",
            f"set approve.email_replies.imap.host (and username, password_file) in {where}",
        )
    account = f"{conf['username']} at {conf['host']}:{conf['port']} ({conf['security']})"
    try:
        conn = connect(ctx)
    except ImapError as exc:
        return False, str(exc), "check approve.email_replies.imap and the password file"
    try:
        conn.logout()
    except Exception:
        pass
    return True, f"read over IMAP from {account}, folder {conf['folder']}", None
