"""One bad item never blocks the others, and never blocks forever.

An event whose emails cannot be composed, an email that cannot be sent, or a
message one SMTP server refuses (too large, at DATA or already at MAIL FROM
SIZE=) is set aside or held with a visible reason (``status``, ``mail list``,
the log) while every other email goes out in the same pass. Only connection and
login problems pause the transport. Names that are not UTF-8 are shown escaped
(``bad\\xffname``) in emails, `.eml` files and the checkpoint. An email lists at
most 50 files and stays under ``notify.max_email_kb``.
"""

from __future__ import annotations

import email
import os
import shutil
import time
from email import policy
from pathlib import Path

import pytest
from conftest import DO_EMAIL, DS_EMAIL, App, outbox, text_of

from syft_bg_app.mail.code import EMAIL_FILES_LISTED, collect_code
from syft_bg_app.mail.queue import message_file
from syft_bg_app.store.state import State

OTHER_DS = "bob@lab.org"
BAD_NAME = os.fsdecode(b"bad\xffname")


def _accept(app: App, *emails: str) -> None:
    for address in emails:
        app.request_peer(address)
    app.run_pass()
    for address in emails:
        app.cli("peers", "accept", address, check=True)
    app.run_pass()


@pytest.fixture
def peers(app: App) -> App:
    app.set_config(execute={"enabled": False})
    _accept(app, DS_EMAIL, OTHER_DS)
    return app


def _job_emails(app: App, kind: str = "job_submitted") -> list[tuple[str, str]]:
    return sorted(
        (str(m["To"]), str(m["Subject"])) for m in outbox(app) if m["X-Syft-BG-Event"] == kind
    )


def _copy_job(app: App, source: str, raw_name: bytes, ds_email: str = DS_EMAIL) -> None:
    """A job folder whose name is the given bytes (not necessarily UTF-8)."""
    base = os.fsencode(app.datasite.inbox / ds_email / "v1")
    shutil.copytree(os.path.join(base, os.fsencode(source)), os.path.join(base, raw_name))
    shutil.rmtree(os.path.join(base, os.fsencode(source)))


def test_a_job_folder_name_that_is_not_utf8_never_stops_notifications(peers: App) -> None:
    app = peers
    app.submit("first")
    app.submit("template-for-bad")
    _copy_job(app, "template-for-bad", b"bad\xffname")
    app.submit("latin1", ds_email=OTHER_DS)
    _copy_job(app, "latin1", "café".encode("latin-1"), OTHER_DS)
    app.submit("last", ds_email=OTHER_DS)
    for _ in range(2):
        assert app.run_pass().exit_code == 0
    subjects = [s for to, s in _job_emails(app) if to == DO_EMAIL]
    assert len(subjects) == 4, subjects
    assert any("bad\\xffname" in s for s in subjects)
    assert any("caf\\xe9" in s for s in subjects)
    state = State.load(app.home.state_file)
    assert state.data["events"] == [] and state.data["mail"]["queue"] == []
    # Every .eml file is plain RFC 5322 bytes that parse.
    for path in app.home.outbox_dir.glob("*.eml"):
        parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert parsed["Subject"] and parsed.get_body(("plain",)).get_content()
    status = app.cli("status", check=True).stdout
    assert "notify   enabled   ok" in status
    # The name as shown finds the job.
    page = app.cli("jobs", "show", f"{DS_EMAIL}/bad\\xffname", check=True).stdout
    assert "bad\\xffname" in page
    assert "bad\\xffname" in app.cli("jobs", "list", check=True).stdout
    # A job arriving later is still announced.
    app.submit("after")
    assert app.run_pass().exit_code == 0
    assert any("after" in s for to, s in _job_emails(app) if to == DO_EMAIL)
    assert BAD_NAME not in app.home.logs_dir.joinpath("syft-bg.log").read_text("utf-8", "replace")


def test_a_job_whose_name_is_not_utf8_lives_its_whole_life_with_its_emails(peers: App) -> None:
    app = peers
    app.set_config(execute={"enabled": True})
    app.submit("template")
    _copy_job(app, "template", b"bad\xffname")
    app.run_pass()
    # Approved by its name as shown, run, and every party told, in one thread.
    app.cli("jobs", "approve", f"{DS_EMAIL}/bad\\xffname", check=True)
    deadline = time.monotonic() + 120
    while app.job_state(BAD_NAME).get("status") not in ("done", "failed"):
        assert time.monotonic() < deadline, app.job_state(BAD_NAME)
        assert app.run_pass().exit_code == 0
        time.sleep(0.2)
    assert app.job_state(BAD_NAME)["status"] == "done"
    assert app.run_pass().exit_code == 0
    kinds = sorted(
        (str(m["To"]), str(m["X-Syft-BG-Event"]))
        for m in outbox(app)
        if "bad\\xffname" in str(m["Subject"])
    )
    assert kinds == sorted(
        (to, kind)
        for to in (DO_EMAIL, DS_EMAIL)
        for kind in ("job_submitted", "job_approved", "job_finished")
    )
    threads = {
        str(m["Subject"]) for m in outbox(app) if m["To"] == DO_EMAIL and "bad" in m["Subject"]
    }
    assert len(threads) == 1


def test_file_names_that_are_not_utf8_reach_the_rejection_email_escaped(peers: App) -> None:
    app = peers
    folder = app.submit("odd-files")
    (Path(os.fsdecode(os.path.join(os.fsencode(folder / "code"), b"\xff\xfe.py")))).write_text(
        "print(1)\n"
    )
    app.submit("fine")
    for _ in range(2):
        assert app.run_pass().exit_code == 0
    assert app.job_state("odd-files")["status"] == "rejected"
    rejected = [
        m for m in outbox(app) if m["X-Syft-BG-Event"] == "job_rejected" and m["To"] == DS_EMAIL
    ]
    assert len(rejected) == 1
    text = text_of(rejected[0])
    # The name is shown escaped (never as raw bytes) with the reason.
    assert "has a name that is not UTF-8" in text
    assert "\\udcff\\udcfe.py" in text or "\\xff\\xfe.py" in text
    assert any("fine" in s for to, s in _job_emails(app) if to == DO_EMAIL)


def test_a_template_failing_for_one_event_sets_it_aside_and_the_rest_flow(
    peers: App, tmp_path: Path
) -> None:
    app = peers
    custom = tmp_path / "templates"
    custom.mkdir()
    # A template that fails on one job's values only.
    (custom / "job_submitted_ds.txt.j2").write_text(
        "{% if job == 'boom' %}{{ no_such_variable }}{% endif %}Received {{ job }}.\n"
    )
    app.set_config(notify={"templates_dir": str(custom)})
    app.submit("boom")
    app.submit("fine")
    app.submit("also-fine", ds_email=OTHER_DS)
    result = app.run_pass()
    assert result.failed_steps == ["notify"]
    sent = _job_emails(app)
    assert any("fine" in s for _, s in sent) and any("also-fine" in s for _, s in sent)
    assert not any("boom" in s for _, s in sent)
    state = State.load(app.home.state_file)
    assert state.data["events"] == []
    assert [r["event"]["job"] for r in state.data["mail"]["set_aside"]] == ["boom"]
    for args in (("status",), ("mail", "list")):
        out = app.cli(*args, check=True).stdout
        assert "1 events set aside" in out and "no_such_variable" in out and "boom" in out
    log = app.home.logs_dir.joinpath("syft-bg.log").read_text()
    assert "set aside the job_submitted alice@uni.edu/boom" in log
    # It never blocks later passes: they are ok and other mail keeps flowing.
    app.submit("later")
    assert app.run_pass().exit_code == 0
    assert any("later" in s for _, s in _job_emails(app))
    # Nothing is lost: mail retry (or a change to the templates) composes it again.
    (custom / "job_submitted_ds.txt.j2").write_text("Received {{ job }}.\n")
    assert app.run_pass().exit_code == 0
    assert any("boom" in s for to, s in _job_emails(app) if to == DS_EMAIL)
    assert any("boom" in s for to, s in _job_emails(app) if to == DO_EMAIL)
    assert State.load(app.home.state_file).data["mail"]["set_aside"] == []


def test_mail_retry_brings_back_set_aside_events(peers: App, tmp_path: Path) -> None:
    app = peers
    custom = tmp_path / "templates"
    custom.mkdir()
    (custom / "job_approved_do.txt.j2").write_text("{{ job | int(default=None) + 1 }}\n")
    app.set_config(notify={"templates_dir": str(custom)})
    app.submit("x")
    app.run_pass()
    app.cli("jobs", "approve", "x", check=True)
    assert app.run_pass().failed_steps == ["notify"]
    assert "job_approved" in app.cli("mail", "list", check=True).stdout
    assert app.run_pass().exit_code == 0  # set aside, not failing every pass
    shutil.rmtree(custom)
    app.set_config(notify={"templates_dir": None})
    result = app.cli("mail", "retry", check=True)
    assert "1 set-aside events are composed again" in result.stdout
    assert app.run_pass().exit_code == 0
    assert any(m["X-Syft-BG-Event"] == "job_approved" and m["To"] == DO_EMAIL for m in outbox(app))


def test_an_email_whose_file_cannot_be_read_is_set_aside_and_the_rest_are_sent(
    peers: App,
) -> None:
    app = peers
    app.set_config(notify={"enabled": False})
    app.submit("one")
    app.submit("two")
    app.run_pass()
    app.set_config(notify={"enabled": True})
    # Compose without sending, then make one message file unreadable (a folder).
    from syft_bg_app.config.load import load_config
    from syft_bg_app.context import Context
    from syft_bg_app.mail.enqueue import enqueue_events

    ctx = Context.open(app.home, load_config(app.home.config_file))
    enqueue_events(ctx, list(ctx.state.data["events"]))
    ctx.state.save()
    queue = ctx.state.data["mail"]["queue"]
    victim = next(e for e in queue if e["to"] == DO_EMAIL and "one" in e["subject"])
    path = message_file(app.home, victim["id"])
    path.unlink()
    path.mkdir()
    assert app.run_pass().exit_code == 0
    sent = _job_emails(app)
    assert len(sent) == 3 and not any(to == DO_EMAIL and "one" in s for to, s in sent)
    out = app.cli("mail", "list", check=True).stdout
    assert "set aside" in out and "cannot read its message file" in out
    assert "set aside: job_submitted to owner@datasite.org" in app.cli("status").stdout
    path.rmdir()
    path.write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    app.cli("mail", "retry", check=True)
    assert State.load(app.home.state_file).data["mail"]["queue"] == []


def test_an_email_over_the_size_cap_is_sent_without_inline_code(peers: App) -> None:
    app = peers
    app.set_config(
        notify={"max_email_kb": 256, "code_file_cap": 400_000, "code_total_cap": 400_000}
    )
    big = "".join(f"value_{i} = {i}  # some long line of code\n" for i in range(9000))
    app.submit("large", files={"a.py": big, "b.py": "print('small')\n"})
    assert app.run_pass().exit_code == 0
    message = next(
        m for m in outbox(app) if m["To"] == DO_EMAIL and m["X-Syft-BG-Event"] == "job_submitted"
    )
    raw = message.as_bytes()
    assert len(raw) <= 256 * 1024
    text = text_of(message)
    assert "code/a.py" in text and "not shown: this email's limit is reached" in text
    assert "value_8999" not in text


def test_an_email_still_over_the_size_cap_is_set_aside_and_the_rest_flow(
    peers: App, tmp_path: Path
) -> None:
    app = peers
    custom = tmp_path / "templates"
    custom.mkdir()
    # A template that makes one job's confirmation far larger than the cap.
    (custom / "job_submitted_ds.txt.j2").write_text(
        "{% if job == 'bloated' %}{{ 'x' * 400000 }}{% endif %}Received {{ job }}.\n"
    )
    app.set_config(notify={"max_email_kb": 256, "templates_dir": str(custom)})
    app.submit("bloated")
    app.submit("normal")
    assert app.run_pass().failed_steps == ["notify"]
    sent = _job_emails(app)
    assert any("normal" in s for to, s in sent if to == DS_EMAIL)
    # The owner's email about it is fine and goes; only the bloated one waits.
    assert [to for to, s in sent if "bloated" in s] == [DO_EMAIL]
    out = app.cli("mail", "list", check=True).stdout
    assert "over notify.max_email_kb (256 KB)" in out and "bloated" in out
    assert app.run_pass().exit_code == 0


def test_a_job_of_100000_files_makes_an_email_that_lists_50_and_stays_small(
    peers: App,
) -> None:
    app = peers
    folder = app.submit("many", files={"f.txt": "x"})
    code = os.fspath(folder / "code")
    for i in range(99_999):
        fd = os.open(f"{code}/f{i:06d}.txt", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"x")
        os.close(fd)
    os.unlink(f"{code}/f.txt")
    job_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        listing = collect_code(job_fd, 51200, 512000)
    finally:
        os.close(job_fd)
    # The walk stops past the job-file limit, and the email lists 50 of what it saw.
    assert EMAIL_FILES_LISTED < listing["file_count"] <= 10_001
    assert len(listing["files"]) == EMAIL_FILES_LISTED
    assert listing["more_files"] == listing["file_count"] - EMAIL_FILES_LISTED
    assert any("limit" in p or "more than" in p for p in listing["problems"]), listing["problems"]
    # The email the data owner gets, rendered and built as a pass does.
    from syft_bg_app.config.load import load_config
    from syft_bg_app.context import Context
    from syft_bg_app.mail.compose import drafts_for_event
    from syft_bg_app.mail.enqueue import queue_rendered, render, templates_for

    ctx = Context.open(app.home, load_config(app.home.config_file))
    ctx.state.data["jobs"].setdefault(DS_EMAIL, {})["many"] = {
        "status": "pending",
        "protocol": "1",
    }
    event = {"id": 1, "kind": "job_submitted", "ds_email": DS_EMAIL, "job": "many"}
    draft = next(d for d in drafts_for_event(ctx, event) if d.role == "do")
    entry = queue_rendered(ctx, render(templates_for(ctx), draft))
    raw = message_file(app.home, entry["id"]).read_bytes()
    assert len(raw) < 200 * 1024
    text = text_of(email.message_from_bytes(raw, policy=policy.default))
    more = listing["more_files"]
    show = app.command("jobs show alice@uni.edu/many")
    assert f"and {more:,} more files; see `{show}`" in text
    assert "more than 10000 files" in text


# -- SMTP: a refusal of one message fails that message alone -------------------------

SIZE_LIMIT = 300_000


class PickyServer:
    """A real SMTP server (aiosmtpd) with a SIZE limit that refuses some messages:
    552 at MAIL FROM when SIZE= is over its limit (aiosmtpd itself), 554 5.3.4 at
    MAIL FROM for mid-sized ones, 552 at DATA for one marked message, and a sender
    it does not accept at all when told to."""

    def __init__(self) -> None:
        self.accepted: list[email.message.EmailMessage] = []
        self.mail_from_calls = 0
        self.refuse_sender = False

    async def handle_MAIL(self, server, session, envelope, address, options):
        self.mail_from_calls += 1
        if self.refuse_sender:
            return "550 5.7.1 sender address rejected: not owned by user"
        size = next((o.split("=", 1)[1] for o in options if o.upper().startswith("SIZE=")), 0)
        if int(size) > SIZE_LIMIT // 2:
            return "554 5.3.4 Message too big for system"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if b"refuse-at-data" in envelope.original_content and envelope.rcpt_tos == [DS_EMAIL]:
            return "552 5.2.3 message exceeds local limit"
        self.accepted.append(
            email.message_from_bytes(envelope.original_content, policy=policy.default)
        )
        return "250 OK"


@pytest.fixture
def picky(peers: App):
    controller_module = pytest.importorskip("aiosmtpd.controller")
    from faults_support import free_port

    handler = PickyServer()
    controller = controller_module.Controller(
        handler, hostname="127.0.0.1", port=free_port(), data_size_limit=SIZE_LIMIT
    )
    controller.start()
    peers.set_config(
        notify={
            "transport": "smtp",
            "from_address": "bot@datasite.org",
            "code_file_cap": 400_000,
            "code_total_cap": 400_000,
            "smtp": {"host": "127.0.0.1", "port": controller.port, "security": "none"},
        }
    )
    yield peers, handler
    controller.stop()


def _code(kib: int) -> dict[str, str]:
    line = "total = total + 1  # a line of ordinary code, forty-odd bytes\n"
    return {"main.py": line * (kib * 1024 // len(line))}


def test_a_message_refused_as_too_large_fails_alone_and_the_transport_goes_on(picky) -> None:
    app, server = picky
    app.submit("huge", files=_code(200))  # over SIZE_LIMIT: aiosmtpd's 552 at MAIL FROM
    app.submit("medium", files=_code(90))  # 554 5.3.4 at MAIL FROM
    app.submit("refuse-at-data")  # the DS email: 552 at DATA
    app.submit("small")
    assert app.run_pass().exit_code == 0
    got = sorted((str(m["To"]), str(m["Subject"])) for m in server.accepted)
    # Everything but the three refused messages arrived in this one pass.
    assert len(got) == 5, got
    assert not any(to == DO_EMAIL and ("huge" in s or "medium" in s) for to, s in got)
    assert not any(to == DS_EMAIL and "refuse-at-data" in s for to, s in got)
    state = State.load(app.home.state_file)
    assert state.data["mail"]["problem"] is None
    held = state.data["mail"]["queue"]
    assert len(held) == 3 and all(e["not_before"] for e in held)
    codes = sorted(e["error"].split("(")[-1][:3] for e in held)
    assert codes == ["552", "552", "554"]
    status = app.cli("status", check=True).stdout
    assert "MAIL PROBLEM" not in status and status.count("  held: ") == 3
    mail_list = app.cli("mail", "list", check=True).stdout
    assert "554 5.3.4 Message too big for system" in mail_list
    # The transport is not paused: the next job's emails go at once, and the held
    # ones are not offered again until later (or mail retry).
    calls = server.mail_from_calls
    app.submit("next")
    assert app.run_pass().exit_code == 0
    assert sum("next" in str(m["Subject"]) for m in server.accepted) == 2
    assert server.mail_from_calls == calls + 2


def test_a_sender_refused_at_mail_from_still_pauses_the_transport(picky) -> None:
    app, server = picky
    server.refuse_sender = True
    app.submit("one")
    app.submit("two")
    app.run_pass()
    assert server.accepted == [] and server.mail_from_calls == 1
    status = app.cli("status", check=True).stdout
    assert "MAIL PROBLEM" in status and "notify.from_address" in status
    app.run_pass()
    assert server.mail_from_calls == 1  # paused: nothing changed, nothing retried
