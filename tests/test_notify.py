"""The notify step through real passes with the outbox transport: the design's
table of events and recipients, once each, threaded, with flood control, crash
safety, code caps, templates and the heartbeat."""

from __future__ import annotations

import email
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import DO_EMAIL, DS_EMAIL, App
from freezegun import freeze_time

from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.store.state import State

BOB = "bob@lab.org"


def outbox(app: App) -> list[EmailMessage]:
    folder = app.home.outbox_dir
    if not folder.is_dir():
        return []
    return [
        email.message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted(folder.glob("*.eml"))
    ]


def table(messages: list[EmailMessage]) -> list[tuple[str, str]]:
    return sorted((m["To"], m["X-Syft-BG-Event"]) for m in messages)


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content().replace("\r\n", "\n")


def one(messages: list[EmailMessage], to: str, kind: str) -> EmailMessage:
    found = [m for m in messages if m["To"] == to and m["X-Syft-BG-Event"] == kind]
    assert len(found) == 1, table(messages)
    return found[0]


def finish(app: App, name: str, ds_email: str = DS_EMAIL, **fields) -> None:
    """A job finishing as another runner would report it: state.yaml says done."""
    app.datasite.write_job_state(
        JobRef(ds_email, name),
        status=fields.pop("status", "done"),
        completed_at="2026-11-20T11:00:00Z",
        return_code=fields.pop("return_code", 0),
    )


def passes_ok(app: App, n: int = 1) -> None:
    for _ in range(n):
        result = app.run_pass()
        assert result.exit_code == 0, result.summary


@pytest.fixture
def owner(app: App) -> App:
    # Runs are simulated by writing state.yaml, as another runner would.
    app.set_config(execute={"enabled": False})
    return app


def test_a_job_life_sends_exactly_the_emails_of_the_table_once(owner: App) -> None:
    app = owner
    app.request_peer(DS_EMAIL, message="I study sleep data")
    passes_ok(app)
    app.cli("peers", "accept", DS_EMAIL, check=True)
    passes_ok(app)
    app.submit("analysis")
    passes_ok(app)
    app.cli("jobs", "approve", f"{DS_EMAIL}/analysis", check=True)
    passes_ok(app)
    finish(app, "analysis")
    passes_ok(app)

    messages = outbox(app)
    assert table(messages) == sorted(
        [
            (DO_EMAIL, "peer_requested"),
            (DS_EMAIL, "peer_requested"),
            (DS_EMAIL, "peer_accepted"),
            (DO_EMAIL, "job_submitted"),
            (DS_EMAIL, "job_submitted"),
            (DO_EMAIL, "job_approved"),
            (DS_EMAIL, "job_approved"),
            (DO_EMAIL, "job_finished"),
            (DS_EMAIL, "job_finished"),
        ]
    )
    assert "I study sleep data" in text_of(one(messages, DO_EMAIL, "peer_requested"))
    assert app.command(f"peers accept {DS_EMAIL}") in text_of(
        one(messages, DO_EMAIL, "peer_requested")
    )
    approved = text_of(one(messages, DO_EMAIL, "job_approved"))
    assert "manually" in approved and "automatically" not in approved

    before = len(messages)
    for _ in range(3):
        result = app.run_pass()
        assert result.counts.get("sent", 0) == 0
    assert len(outbox(app)) == before
    status = app.cli("status", check=True).stdout
    assert "0 queued, 9 sent" in status


def test_the_owner_emails_about_one_job_form_one_thread(owner: App) -> None:
    app = owner
    app.submit("analysis")
    passes_ok(app)
    app.cli("jobs", "approve", f"{DS_EMAIL}/analysis", check=True)
    passes_ok(app)
    finish(app, "analysis", status="failed", return_code=3)
    passes_ok(app)
    messages = outbox(app)
    for to in (DO_EMAIL, DS_EMAIL):
        submitted = one(messages, to, "job_submitted")
        approved = one(messages, to, "job_approved")
        finished = one(messages, to, "job_finished")
        assert submitted["Subject"] == approved["Subject"] == finished["Subject"]
        assert submitted["In-Reply-To"] is None and submitted["References"] is None
        assert approved["In-Reply-To"] == submitted["Message-ID"]
        assert approved["References"] == submitted["Message-ID"]
        assert finished["In-Reply-To"] == approved["Message-ID"]
        assert finished["References"].split() == [submitted["Message-ID"], approved["Message-ID"]]
    ids = [m["Message-ID"] for m in messages]
    assert len(set(ids)) == len(ids)
    assert "FAILED" in text_of(one(messages, DO_EMAIL, "job_finished"))
    assert "Exit code: 3" in text_of(one(messages, DS_EMAIL, "job_finished"))


def test_message_ids_are_stable_for_the_same_datasite_ds_and_job(tmp_path: Path) -> None:
    from syft_bg_app.mail.message import message_id
    from syft_bg_app.mail.queue import email_id

    key = f"{DO_EMAIL}|job_submitted|job:{DS_EMAIL}/analysis|do|{DO_EMAIL}"
    first = message_id(email_id(key), "job_submitted", DO_EMAIL)
    assert first == message_id(email_id(key), "job_submitted", DO_EMAIL)
    other_ds = key.replace(DS_EMAIL, BOB)
    assert message_id(email_id(other_ds), "job_submitted", DO_EMAIL) != first
    assert first.endswith("@syft-bg.datasite.org>")


def test_a_rejection_reaches_both_with_the_reason(owner: App) -> None:
    app = owner
    app.submit("peek")
    passes_ok(app)
    app.cli("jobs", "reject", f"{DS_EMAIL}/peek", "-r", "reads raw rows", check=True)
    passes_ok(app)
    messages = outbox(app)
    for to in (DO_EMAIL, DS_EMAIL):
        assert "reads raw rows" in text_of(one(messages, to, "job_rejected"))
        assert "reads raw rows" in html_of(one(messages, to, "job_rejected"))
    passes_ok(app, 2)
    assert len(outbox(app)) == 4


def test_a_finished_job_tells_the_owner_the_duration_and_stderr_tail_only(owner: App) -> None:
    app = owner
    app.submit("analysis")
    passes_ok(app)
    state = State.load(app.home.state_file)
    state.add_event(
        "job_finished",
        ds_email=DS_EMAIL,
        job="analysis",
        status="failed",
        return_code=1,
        duration_seconds=75.4,
        stderr_tail="Traceback (most recent call last):\nValueError: secret column <x>\n",
        reason="exit code 1",
    )
    state.save()
    passes_ok(app)
    messages = outbox(app)
    do_text = text_of(one(messages, DO_EMAIL, "job_finished"))
    assert "1 min 15 s" in do_text
    assert "ValueError: secret column <x>" in do_text
    assert "exit code 1" in do_text
    assert "secret column &lt;x&gt;" in html_of(one(messages, DO_EMAIL, "job_finished"))
    ds_message = one(messages, DS_EMAIL, "job_finished")
    assert "1 min 15 s" in text_of(ds_message)
    assert "ValueError" not in text_of(ds_message) and "ValueError" not in html_of(ds_message)
    assert str(app.home.root) not in ds_message.as_string()


def test_the_first_pass_on_a_datasite_with_history_sends_nothing(app: App) -> None:
    app.set_config(execute={"enabled": False})
    site = app.datasite
    site.ensure_peer_folders(DS_EMAIL)
    for name, status in (("old-done", "done"), ("old-pending", "pending"), ("old-ok", "approved")):
        app.submit(name)
        site.write_job_state(
            JobRef(DS_EMAIL, name), status=status, received_at="2026-01-01T00:00:00Z"
        )
    passes_ok(app, 2)
    assert outbox(app) == []
    app.submit("new-one")
    passes_ok(app)
    assert table(outbox(app)) == sorted([(DO_EMAIL, "job_submitted"), (DS_EMAIL, "job_submitted")])


def test_many_events_for_one_recipient_in_one_pass_become_one_digest(owner: App) -> None:
    app = owner
    app.set_config(notify={"digest_after": 3})
    for i in range(4):
        app.submit(f"job-{i}")
    app.submit("solo", ds_email=BOB)
    passes_ok(app)
    messages = outbox(app)
    assert table(messages) == sorted(
        [(DO_EMAIL, "digest"), (DS_EMAIL, "digest"), (BOB, "job_submitted")]
    )
    owner_digest = text_of(one(messages, DO_EMAIL, "digest"))
    assert "5 things happened" in owner_digest
    for label in [f"{DS_EMAIL}/job-{i}" for i in range(4)] + [f"{BOB}/solo"]:
        assert label in owner_digest
    assert "4 things happened" in text_of(one(messages, DS_EMAIL, "digest"))
    passes_ok(app, 2)
    assert len(outbox(app)) == 3
    # Later emails about a job that was only in a digest still arrive, once.
    app.cli("jobs", "approve", f"{DS_EMAIL}/job-0", check=True)
    passes_ok(app)
    assert len(outbox(app)) == 5


def test_a_crash_while_sending_resends_only_the_email_in_flight(
    owner: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syft_bg_app.mail import outbox as outbox_module

    app = owner
    app.submit("analysis")
    app.request_peer(BOB)
    calls: list[str] = []
    real_send = outbox_module.OutboxTransport.send

    def send(self, entry, raw, thread_id, deadline):
        calls.append(entry["id"])
        if len(calls) == 2:
            raise KeyboardInterrupt("killed while sending")
        return real_send(self, entry, raw, thread_id, deadline)

    monkeypatch.setattr(outbox_module.OutboxTransport, "send", send)
    with pytest.raises(KeyboardInterrupt):
        app.run_pass()
    saved = json.loads(app.home.state_file.read_text())
    statuses = [e["status"] for e in saved["mail"]["queue"]]
    assert statuses == ["sending", "queued", "queued"]
    assert saved["events"] == []
    passes_ok(app, 2)
    assert calls[0] not in calls[1:]
    assert calls.count(calls[1]) == 2
    assert len(calls) == 5 and len(set(calls)) == 4
    assert len(outbox(app)) == 4


def test_code_in_the_owner_email_is_capped_and_binaries_are_listed(owner: App) -> None:
    app = owner
    big = "# start of big\n" + ("x = 1\n" * 10_000) + "# end of big\n"
    files: dict[str, str | bytes] = {
        "a_big.py": big,
        "b_blob.bin": bytes(range(256)) * 4,
        "main.py": "print('hello')\n",
    }
    for i in range(12):
        files[f"part{i:02d}.py"] = f"# part {i}\n" + "y = 2\n" * 8_000
    app.submit("heavy", files=files, run_sh="#!/bin/bash\necho RUN-SH-MARKER\n")
    passes_ok(app)
    message = one(outbox(app), DO_EMAIL, "job_submitted")
    text = text_of(message)
    assert "RUN-SH-MARKER" in text
    assert "# start of big" in text and "# end of big" not in text
    assert "code/a_big.py (58.6 KB): first 50.0 KB shown" in text
    assert "code/b_blob.bin (1.0 KB): binary, not shown" in text
    assert "not shown: this email's limit is reached" in text
    shown = text.count("y = 2\n") * len("y = 2\n") + text.count("x = 1\n") * len("x = 1\n")
    assert 400_000 < shown <= 512_000
    assert len(message.as_bytes()) < 3_000_000
    assert "RUN-SH-MARKER" not in text_of(one(outbox(app), DS_EMAIL, "job_submitted"))


def test_the_owner_can_override_templates(owner: App, tmp_path: Path) -> None:
    app = owner
    custom = tmp_path / "my-templates"
    custom.mkdir()
    (custom / "job_submitted_ds.txt.j2").write_text("Custom note: {{ job }} for {{ ds_email }}\n")
    app.set_config(notify={"templates_dir": str(custom)})
    app.submit("analysis")
    passes_ok(app)
    ds_message = one(outbox(app), DS_EMAIL, "job_submitted")
    assert text_of(ds_message).strip() == f"Custom note: analysis for {DS_EMAIL}"
    assert "was received by" in html_of(ds_message)


def test_a_template_using_an_unknown_variable_fails_the_step_and_keeps_the_events(
    owner: App, tmp_path: Path
) -> None:
    """The event is set aside with the reason (status, mail list), not lost: fixing
    the template brings it back by itself."""
    app = owner
    custom = tmp_path / "broken"
    custom.mkdir()
    (custom / "job_submitted_ds.txt.j2").write_text("Hello {{ ds_name }}\n")
    app.set_config(notify={"templates_dir": str(custom)})
    app.submit("analysis")
    result = app.run_pass()
    assert result.exit_code == 1 and result.failed_steps == ["notify"]
    assert outbox(app) == []
    status = app.cli("status").stdout
    assert "job_submitted_ds.txt.j2" in status and "ds_name" in status
    assert "1 events set aside" in status
    assert "ds_name" in app.cli("mail", "list").stdout
    (custom / "job_submitted_ds.txt.j2").unlink()
    passes_ok(app)
    assert len(outbox(app)) == 2


def test_the_heartbeat_is_sent_once_per_period(owner: App) -> None:
    app = owner
    app.set_config(notify={"heartbeat": True, "heartbeat_hours": 24})
    passes_ok(app, 2)
    assert table(outbox(app)) == [(DO_EMAIL, "heartbeat")]
    assert "syft-bg is running" in text_of(outbox(app)[0])
    later = datetime.now(timezone.utc) + timedelta(hours=25)
    with freeze_time(later, tick=True):
        passes_ok(app, 2)
    assert table(outbox(app)) == [(DO_EMAIL, "heartbeat")] * 2


def test_outbox_files_are_rfc5322_with_both_parts(owner: App) -> None:
    app = owner
    app.submit("analysis")
    passes_ok(app)
    files = sorted(app.home.outbox_dir.glob("*.eml"))
    assert len(files) == 2
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600
        raw = path.read_bytes()
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert b"\n" not in head.replace(b"\r\n", b"")
        message = email.message_from_bytes(raw, policy=policy.default)
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        for header in ("From", "To", "Subject", "Date", "Message-ID"):
            assert message[header]
        assert message["Auto-Submitted"] == "auto-generated"
    assert not list(app.home.outbox_dir.glob(".syft-bg-tmp-*"))


def test_mail_test_and_list_commands(owner: App) -> None:
    app = owner
    result = app.cli("mail", "test", check=True)
    assert "sent a test email" in result.stdout
    assert table(outbox(app)) == [(DO_EMAIL, "test")]
    listing = app.cli("mail", "list", check=True).stdout
    assert "0 queued, 1 sent" in listing
    bad = app.cli("mail", "test", "-t", "not-an-address")
    assert bad.returncode == 2 and "not an email address" in bad.stderr


def test_an_idle_pass_imports_no_mail_library(owner: App) -> None:
    app = owner
    app.submit("analysis")
    passes_ok(app)
    code = (
        "import sys\n"
        "from syft_bg_app.store.home import AppHome\n"
        "from syft_bg_app.passes import run_pass\n"
        f"result = run_pass(AppHome.resolve({str(app.home.root)!r}))\n"
        "heavy = ('jinja2', 'tenacity', 'googleapiclient', 'google.auth', 'smtplib')\n"
        "print(result.exit_code, [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=app.env, check=True
    )
    assert out.stdout.strip() == "0 []", out.stderr


def test_names_from_the_datasite_never_become_mail_headers(owner: App) -> None:
    app = owner
    evil_ds = "evil@x.org\nBcc: victim@y.org"
    app.submit("job\r\nBcc: victim@y.org", ds_email=DS_EMAIL)
    app.submit("plain", ds_email=evil_ds)
    passes_ok(app)
    messages = outbox(app)
    assert all("victim" not in (m["Bcc"] or "") for m in messages)
    assert all(m["To"] in (DO_EMAIL, DS_EMAIL) for m in messages)
    subjects = [m["Subject"] for m in messages if m["To"] == DO_EMAIL]
    assert any("job\\r\\nBcc: victim@y.org" in s for s in subjects)
