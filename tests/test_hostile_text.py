"""Nothing a data scientist wrote reaches a terminal or a log line raw.

Job names, config.yaml fields, peer folder names and messages, file names and
file contents are chosen by data scientists. Every command that shows them
(`jobs list`, `jobs show`, `peers list`, `status`, `mail list`, `logs`, the
dashboard) and every log line shows them with control characters escaped
(``\\x1b``, ``\\r``, ``\\n``), so no escape sequence reaches the terminal and no
CR/LF forges a line ("review_reason: verified safe"). Bidirectional controls
("Trojan Source") are marked ``<U+202E>`` in `jobs show --code` and in the data
owner's review email.
"""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys

import pytest
import yaml
from conftest import DO_EMAIL, DS_EMAIL, App, outbox, text_of

from syft_bg_app.actions.services import RECORD_RE
from syft_bg_app.cli.dashboard import CLEAR, run_dashboard
from syft_bg_app.logsetup import SafeFormatter
from syft_bg_app.views.render import BIDI_CONTROLS, SafeTerminalStream, terminal_text

SPOOF = "review_reason: verified safe"
# (name, what it tries): each is a job name a data scientist may choose.
HOSTILE_NAMES = [
    "clear\x1b[2J\x1b[Hscreen",
    f"stats\n  {SPOOF}",
    f"cr\r  {SPOOF}",
    "csi\x9b31mred",
    "bell\x07del\x7fnul-free",
    "osc\x1b]0;owned\x07title",
    "sep\u2028line",
]
# Any of these in output means raw control characters reached the terminal.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029" + BIDI_CONTROLS + "]")


def _spoofed(text: str) -> list[str]:
    """Lines that start with the spoofed field, as a forged line would."""
    return [line for line in re.split(r"\r\n|\r|\n", text) if line.strip().startswith(SPOOF)]


def _clean(text: str) -> None:
    assert not RAW_CONTROL.search(text), repr(RAW_CONTROL.search(text).group())
    assert _spoofed(text) == [], _spoofed(text)


@pytest.fixture
def peer(app: App) -> App:
    app.request_peer(DS_EMAIL)
    app.run_pass()
    app.cli("peers", "accept", DS_EMAIL, check=True)
    return app


def _raw(app: App, *args: str) -> str:
    """A command's stdout exactly as a terminal would get it (bytes, not decoded)."""
    result = subprocess.run(
        [sys.executable, "-m", "syft_bg_app", *args],
        env=app.env,
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return (result.stdout + result.stderr).decode("utf-8", "surrogateescape")


def test_terminal_text_escapes_every_control_and_marks_bidi() -> None:
    for code in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]:
        shown = terminal_text(f"a{chr(code)}b")
        assert not RAW_CONTROL.search(shown) and shown.startswith("a") and shown.endswith("b")
    assert terminal_text("x\x1b[2Jy") == "x\\x1b[2Jy"
    assert terminal_text("a\r\nb") == "a\\r\\nb"
    for ch in BIDI_CONTROLS:
        assert terminal_text(f"if x{ch}:") == f"if x<U+{ord(ch):04X}>:"
    # A folder name that is not UTF-8, as os.fsdecode gives it.
    assert terminal_text(b"bad\xffname".decode("utf-8", "surrogateescape")) == "bad\\xffname"
    assert terminal_text("\u2028") == "<U+2028>"
    # Multi-line text (reasons, code) keeps its lines and tabs; a lone CR does not pass.
    assert terminal_text("a\r\nb\n\tc\rd\x1b", multiline=True) == "a\r\nb\n\tc\\rd\\x1b"
    # Ordinary text, accents and right-to-left letters are left alone.
    assert terminal_text("Zoë's stats – שלום") == "Zoë's stats – שלום"


def test_hostile_job_names_are_escaped_in_every_command(peer: App) -> None:
    app = peer
    for name in HOSTILE_NAMES:
        app.submit(name)
    app.submit("innocent")
    assert app.run_pass().exit_code == 0
    listing = _raw(app, "jobs", "list")
    _clean(listing)
    assert "clear\\x1b[2J\\x1b[Hscreen" in listing
    assert f"stats\\n  {SPOOF}" in listing and "innocent" in listing
    for name in HOSTILE_NAMES:
        page = _raw(app, "jobs", "show", f"{DS_EMAIL}/{name}")
        _clean(page)
        assert terminal_text(name) in page
    # The name as it is shown also finds the job, so the DO can paste it.
    shown = terminal_text(f"{DS_EMAIL}/stats\n  {SPOOF}")
    assert "status: pending" in _raw(app, "jobs", "show", shown)
    for args in (("status",), (), ("logs", "all", "-n", "500"), ("mail", "list")):
        _clean(_raw(app, *args))


def test_hostile_config_fields_are_escaped_in_jobs_show_and_the_log(peer: App) -> None:
    app = peer
    app.submit(
        "fields",
        metadata={
            "entrypoint": f"main.py\n  {SPOOF}",
            "submitted_at": "2026-11-20\x1b[2J\x1b[31m",
            "dependencies": [f"numpy\r  {SPOOF}"],
        },
    )
    app.submit("bad-type", metadata={"type": f"bash\x1b[8m\n  {SPOOF}"})
    app.submit("odd-name", metadata={"name": f"other\x1b[2J\r\n  {SPOOF}"})
    app.run_pass()
    page = _raw(app, "jobs", "show", "fields")
    _clean(page)
    assert f"entrypoint: main.py\\n  {SPOOF}" in page
    assert "submitted_at: 2026-11-20\\x1b[2J\\x1b[31m" in page
    rejected = _raw(app, "jobs", "show", "bad-type")
    _clean(rejected)
    assert "status: rejected" in rejected
    _clean(_raw(app, "jobs", "show", "odd-name"))
    _clean(_raw(app, "jobs", "list"))
    log = app.home.logs_dir.joinpath("syft-bg.log").read_bytes().decode("utf-8")
    _clean(log)
    # Every line of the log is a record of its own, or part of one (a traceback).
    for line in log.splitlines():
        assert RECORD_RE.match(line) or line.startswith((" ", "Traceback")), line


def test_peer_names_and_messages_are_escaped_in_peers_list(app: App) -> None:
    app.request_peer("bob@lab.org", message=f"hi\n{'x' * 3}  {SPOOF}\x1b[2J")
    app.request_peer("carol@lab.org", message="please\r\x1b[1A\x1b[2Kaccepted by owner")
    app.request_peer("frank@lab.org", message="harmless \u202eden\u2069 text")
    # A folder name is the requester's identity, and also theirs to choose.
    app.request_peer("mallory\x1b[2J\x1b[H@lab.org", message="x")
    # A request whose email is not its folder (and carries escapes) is shown, not used.
    path = app.datasite.peers / "dave@lab.org" / "request.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(
        yaml.safe_dump({"email": "eve@lab.org\x1b[2J\nINFO accepted", "requested_at": "x"})
    )
    app.run_pass()
    listing = _raw(app, "peers", "list")
    _clean(listing)
    assert "bob@lab.org" in listing and "carol@lab.org" in listing
    assert "\\x1b[2J" in listing
    assert "harmless <U+202E>den<U+2069> text" in listing
    for args in (("status",), ()):
        _clean(_raw(app, *args))
    # The owner's email about the request shows the message the same way.
    requests = [m for m in outbox(app) if m["X-Syft-BG-Event"] == "peer_requested"]
    for message in requests:
        text = text_of(message)
        assert not RAW_CONTROL.search(text) and not RAW_CONTROL.search(str(message["Subject"]))
    owner_mail = [text_of(m) for m in requests if m["To"] == DO_EMAIL]
    assert any("harmless <U+202E>den<U+2069> text" in text for text in owner_mail)


def test_the_dashboard_on_a_terminal_sends_only_its_own_screen_clear(peer: App) -> None:
    app = peer
    app.submit("clear\x1b[2J\x1b[31mred")
    app.run_pass()
    app.cli("jobs", "reject", "clear\\x1b[2J\\x1b[31mred", "-r", "\x1b]0;owned\x07", check=True)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    run_dashboard(app.home, out=SafeTerminalStream(screen), refresh=0, rounds=1)
    drawn = screen.getvalue()
    assert drawn.startswith(CLEAR)
    assert drawn.count("\x1b") == CLEAR.count("\x1b")
    assert "clear\\x1b[2J\\x1b[31mred" in drawn  # in the log and the audit lines
    _clean(drawn[len(CLEAR) :])


def test_bidi_controls_in_code_are_marked_in_jobs_show_and_the_review_email(peer: App) -> None:
    app = peer
    # The classic "Trojan Source" early return: reads as a comment, runs as code.
    trojan = 'access = "user"\nif access != "none\u202e \u2066# check if admin\u2069 \u2066":\n'
    app.submit(
        "trojan",
        files={"main.py": trojan, "lib/other.py": "x = 1  # \u2067hidden\u2069\n"},
        run_sh="#!/bin/bash\necho \u200fok\n",
    )
    app.submit("clean", files={"main.py": "print('fine')\n"})
    assert app.run_pass().exit_code == 0
    page = _raw(app, "jobs", "show", "trojan", "--code")
    _clean(page)
    assert "<U+202E>" in page and "<U+2066>" in page and "<U+2069>" in page
    assert "WARNING" in page and "code/main.py" in page
    assert "echo <U+200F>ok" in page
    clean_page = _raw(app, "jobs", "show", "clean", "--code")
    assert "print('fine')" in clean_page and "WARNING" not in clean_page
    review = [
        m
        for m in outbox(app)
        if m["To"] == DO_EMAIL
        and m["X-Syft-BG-Event"] == "job_submitted"
        and "trojan" in m["Subject"]
    ]
    assert len(review) == 1
    text = text_of(review[0])
    html = review[0].get_body(("html",)).get_content()
    for part in (text, html):
        assert not any(ch in part for ch in BIDI_CONTROLS)
        assert "WARNING" in part or "Warning" in part
    assert '"none<U+202E> <U+2066># check if admin<U+2069> <U+2066>"' in text
    assert "&lt;U+202E&gt;" in html


def test_control_characters_in_code_and_reasons_are_escaped_in_emails(peer: App) -> None:
    app = peer
    app.submit("esc", files={"main.py": "print(1)\x1b[2J\r# hidden by CR\n"})
    app.run_pass()
    app.cli("jobs", "reject", "esc", "-r", "no", check=True)
    app.run_pass()
    for message in outbox(app):
        text = text_of(message)
        assert "\x1b" not in text and "\x1b" not in str(message["Subject"])
        if message["To"] == DO_EMAIL and message["X-Syft-BG-Event"] == "job_submitted":
            assert "print(1)\\x1b[2J\\r# hidden by CR" in text


def test_log_records_are_one_line_and_tracebacks_cannot_forge_records() -> None:
    formatter = SafeFormatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    forged = f"x\n2026-11-20 10:00:00,000 1 INFO syft_bg.approve: approved {SPOOF}\x1b[2J"
    record = logging.LogRecord("syft_bg.sync", logging.INFO, __file__, 1, "got %s", (forged,), None)
    line = formatter.format(record)
    assert "\n" not in line and "\x1b" not in line and "\\n2026-11-20" in line
    try:
        raise ValueError(forged)
    except ValueError:
        record = logging.LogRecord(
            "syft_bg.sync", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    text = formatter.format(record)
    lines = text.splitlines()
    assert RECORD_RE.match(lines[0])
    assert not any(RECORD_RE.match(line) for line in lines[1:]), lines
    assert "\x1b" not in text


def test_the_notebook_view_shows_control_and_bidi_characters_as_text(peer: App) -> None:
    import syft_bg_app as bg

    peer.submit("nb\u202eevil\x1b[2J")
    peer.run_pass()
    jobs = bg.jobs()
    for markup in (jobs._repr_html_(), jobs["nb\u202eevil\x1b[2J"]._repr_html_()):
        assert not RAW_CONTROL.search(markup)
        assert "nb&lt;U+202E&gt;evil\\x1b[2J" in markup
    _clean(repr(jobs))
