"""A damaged checkpoint (state.json) or pass record (last_pass.json) is refused with
the documented message, never a traceback, by every command that loads it."""

from __future__ import annotations

import json

import pytest
from conftest import App

from syft_bg_app.store.state import SCHEMA_VERSION, State, StateError

GOOD_JOB = {"protocol": "1", "status": "pending"}


def _base(**changes: object) -> bytes:
    data = {
        "schema": SCHEMA_VERSION,
        "baseline_done": True,
        "jobs": {"alice@uni.edu": {"hello": dict(GOOD_JOB)}},
        "peers": {"alice@uni.edu": {"status": "accepted"}},
        "events": [],
        "next_event_id": 1,
    }
    data.update(changes)
    return json.dumps(data).encode()


DAMAGE = {
    "not utf-8": b'{"schema": 2, "jobs": {"\xff\xfe": {}}}',
    "binary noise": bytes(range(256)),
    "truncated json": _base()[:40],
    "empty file": b"",
    "top-level list": b"[1, 2, 3]",
    "top-level number": b"42",
    "top-level string": b'"state"',
    "top-level null": b"null",
    "schema missing": json.dumps({"jobs": {}}).encode(),
    "schema a string": _base(schema="2"),
    "schema zero": _base(schema=0),
    "schema true": _base(schema=True),
    "jobs a list": _base(jobs=[]),
    "jobs of a ds a string": _base(jobs={"alice@uni.edu": "hello"}),
    "job record a list": _base(jobs={"alice@uni.edu": {"hello": ["pending"]}}),
    "status an int": _base(jobs={"alice@uni.edu": {"hello": {"protocol": "1", "status": 3}}}),
    "status unknown": _base(jobs={"alice@uni.edu": {"hello": {"protocol": "1", "status": "x"}}}),
    "status missing": _base(jobs={"alice@uni.edu": {"hello": {"protocol": "1"}}}),
    "protocol missing": _base(jobs={"alice@uni.edu": {"hello": {"status": "pending"}}}),
    "timeout a string": _base(
        jobs={"alice@uni.edu": {"hello": {**GOOD_JOB, "status": "running", "timeout": "600"}}}
    ),
    "peers a list": _base(peers=["alice@uni.edu"]),
    "peer record a string": _base(peers={"alice@uni.edu": "accepted"}),
    "peer status an int": _base(peers={"alice@uni.edu": {"status": 1}}),
    "peer decided_at not a time": _base(
        peers={"bob@lab.org": {"status": "rejected", "decided_at": "yesterday"}}
    ),
    "events a mapping": _base(events={"1": {}}),
    "event without kind": _base(events=[{"id": 1}]),
    "next_event_id a string": _base(next_event_id="1"),
    "baseline_done a string": _base(baseline_done="yes"),
    # Schema 3: moving a schema 2 checkpoint forward forgets the folder listings.
    "scan value a string": json.dumps(
        {**json.loads(_base()), "schema": 3, "scan": {"/x": "12"}}
    ).encode(),
    "mail queue a mapping": _base(mail={"queue": {}}),
    "mail entry without id": _base(mail={"queue": [{"kind": "x", "to": "a@b.c"}]}),
    "held jobs count a string": _base(
        held_jobs={"m@evil.example": {"reason": "waiting", "jobs": "2"}}
    ),
}
V1_DAMAGE = {
    "schema 1 with jobs a list": json.dumps({"schema": 1, "jobs": [1]}).encode(),
    "schema 1 with a job key a number": b'{"schema": 1, "jobs": {"1": 5}}',
}


@pytest.mark.parametrize("name", sorted({**DAMAGE, **V1_DAMAGE}))
def test_loading_a_damaged_checkpoint_raises_the_documented_message(tmp_path, name) -> None:
    path = tmp_path / "state.json"
    path.write_bytes({**DAMAGE, **V1_DAMAGE}[name])
    with pytest.raises(StateError) as caught:
        State.load(path)
    message = str(caught.value)
    assert "the checkpoint is damaged" in message
    assert "Move it aside" in message and str(path) in message


def test_a_folder_in_place_of_the_checkpoint_is_refused(tmp_path) -> None:
    (tmp_path / "state.json").mkdir()
    with pytest.raises(StateError, match="the checkpoint is damaged: it is a folder"):
        State.load(tmp_path / "state.json")


COMMANDS = (
    ("run", "--once"),
    ("status",),
    ("jobs", "list"),
    ("jobs", "show", "alice@uni.edu/hello"),
    ("peers", "list"),
    ("mail", "list"),
    (),  # the dashboard, printed once when piped
)
# Several forms across the classes: bytes, JSON syntax, top-level shape, types.
CLI_DAMAGE = (
    "not utf-8",
    "truncated json",
    "top-level list",
    "jobs a list",
    "status an int",
    "peer record a string",
    "event without kind",
)


@pytest.mark.parametrize("name", CLI_DAMAGE)
def test_every_command_gives_the_documented_message_for_a_damaged_checkpoint(
    app: App, name: str
) -> None:
    damage = DAMAGE[name]
    app.home.state_file.write_bytes(damage)
    for command in COMMANDS:
        result = app.cli(*command)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout, command
        assert "the checkpoint is damaged" in result.stderr, command
        assert "Move it aside" in result.stderr, command
    setup = app.cli("setup-status")
    assert setup.returncode == 1 and "Traceback" not in setup.stderr + setup.stdout
    assert "the checkpoint is damaged" in setup.stdout and "Move it aside" in setup.stdout
    # Nothing was changed: the file is still there for the owner to look at.
    assert app.home.state_file.read_bytes() == damage


def test_moving_the_damaged_checkpoint_aside_starts_over_without_emails(app: App) -> None:
    app.submit("hello")
    assert app.run_pass().exit_code == 0
    sent = len(list(app.home.outbox_dir.glob("*.eml")))
    app.home.state_file.write_bytes(b"[]")
    assert app.cli("run", "--once").returncode == 1
    app.home.state_file.rename(app.home.state_file.with_name("state.json.damaged"))
    assert app.cli("run", "--once").returncode == 0
    assert len(list(app.home.outbox_dir.glob("*.eml"))) == sent
    assert app.job_state("hello")["status"] == "pending"


PASS_RECORD_DAMAGE = (
    b"\xff\xfe not utf-8",
    b'{"steps": ',
    b"[]",
    b"7",
    b'{"steps": [], "last_pass": null}',
    b'{"steps": {"sync": "ok"}}',
    b'{"steps": {}, "last_pass": {"finished_at": 5, "summary": "x"}}',
    b'{"steps": {}, "last_pass": {"finished_at": "2026-01-01T00:00:00Z", "summary": 1}}',
    b'{"steps": {"sync": {"ok": "yes", "at": "x"}}, "last_pass": null}',
)


@pytest.mark.parametrize("damage", PASS_RECORD_DAMAGE)
def test_a_damaged_pass_record_is_ignored_and_written_again(app: App, damage: bytes) -> None:
    assert app.run_pass().exit_code == 0
    record = app.home.state_file.with_name("last_pass.json")
    record.write_bytes(damage)
    for command in (("status",), ("jobs", "list"), ("peers", "list"), ()):
        result = app.cli(*command)
        assert result.returncode == 0, (command, result.stderr)
        assert "Traceback" not in result.stderr
    assert "last pass: none yet" in app.cli("status").stdout
    assert app.cli("run", "--once").returncode == 0
    assert json.loads(record.read_text())["last_pass"]["summary"].startswith("pass ok")


AUDIT_DAMAGE = (
    b"\xff\xfe not utf-8\n",
    b"[1, 2]\n",
    b"42\n",
    b'"text"\n',
    b'{"at": 5, "subject": "alice@uni.edu/hello", "decision": "approved", '
    b'"rules": [1, null], "hashes": [3], "method": 7}\n',
    b'{"subject": "alice@uni.edu/hello", "decision": ',
)


def test_damaged_lines_of_the_audit_log_never_break_audit_or_the_dashboard(app: App) -> None:
    app.submit("hello")
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", "alice@uni.edu/hello", check=True)
    with app.home.audit_log.open("ab") as log:
        for damage in AUDIT_DAMAGE:
            log.write(damage)
    for command in (("audit",), ("audit", "--json"), ("audit", "alice@uni.edu/hello"), ()):
        result = app.cli(*command)
        assert result.returncode == 0, (command, result.stderr)
        assert "Traceback" not in result.stderr
    assert "approved" in app.cli("audit", check=True).stdout
