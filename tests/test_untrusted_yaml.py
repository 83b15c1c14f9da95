"""YAML written by other people (a data scientist's config.yaml, a peer's
request.yaml, a data owner's state.yaml) cannot stall a pass, flood an email or
crash a step: aliases are refused, odd shapes are errors, and values that become
text are type-checked and capped."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import DO_EMAIL, DS_EMAIL, PATIENCE, REPO, App, outbox, text_of

from syft_bg_app.api import ds
from syft_bg_app.datasite.submission import read_metadata
from syft_bg_app.store.fsutil import load_untrusted_yaml, short_repr, untrusted_text
from syft_bg_app.store.state import State

# What these files cost is milliseconds; what the attacks would cost is minutes (a
# pass stalled by *a7), gigabytes (*a9) or forever (a fifo). A bound between the two
# tells them apart on any machine, however loaded.
STALL = 60.0


def laughs(levels: int, key: str = "submitted_at") -> str:
    """A 'billion laughs' document: each level refers to the previous one nine times."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels + 1):
        refs = ",".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    lines.append(f"{key}: *a{levels}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def owner(app: App) -> App:
    app.set_config(execute={"enabled": False})
    return app


# -- the loader ---------------------------------------------------------------------


def test_nested_aliases_are_refused_at_once_with_a_clear_message() -> None:
    text = laughs(9)
    assert len(text) < 600
    started = time.monotonic()
    with pytest.raises(yaml.YAMLError) as caught:
        load_untrusted_yaml(text)
    assert time.monotonic() - started < STALL
    # The first anchor is refused, before any alias could be expanded.
    assert "anchors and aliases are not accepted" in str(caught.value)
    assert "line 1" in str(caught.value)
    with pytest.raises(yaml.YAMLError, match="found an alias"):
        load_untrusted_yaml("email: alice@uni.edu\nmessage: *undefined\n")


def test_an_anchor_alone_is_refused_too() -> None:
    with pytest.raises(yaml.YAMLError, match="anchor"):
        load_untrusted_yaml("email: &me alice@uni.edu\n")


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 5000 + "]" * 5000,
        "a: " + "{x: " * 3000 + "1" + "}" * 3000,
        "a: " + "9" * 5000,
        "submitted_at: 2026-13-45",
        "submitted_at: 2026-02-30T10:00:00Z",
        "a: 1\n---\nb: 2\n",
        "a: !!python/object:os.system 'echo x'",
    ],
    ids=["deep-list", "deep-map", "huge-int", "bad-month", "bad-day", "two-docs", "python-tag"],
)
def test_odd_shapes_are_yaml_errors_not_crashes(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        load_untrusted_yaml(text)


def test_real_syft_job_and_syft_bg_files_load_as_before(app: App, tmp_path: Path) -> None:
    syft_job = pytest.importorskip("syft_job")
    (app.root / DS_EMAIL).mkdir(parents=True, exist_ok=True)
    client = syft_job.get_client(str(app.root), DS_EMAIL)
    folder = Path(client.submit_bash_job(app.do_email, "echo hi\n", "hello"))
    config_text = (folder / "config.yaml").read_text()
    assert load_untrusted_yaml(config_text) == yaml.safe_load(config_text)

    ident = ds.Identity(DS_EMAIL, app.root)
    request = ds.request_peer(ident, app.do_email, "Alice, stats group\nsecond line")
    request_text = request.path.read_text()
    loaded = load_untrusted_yaml(request_text)
    assert loaded == yaml.safe_load(request_text)
    assert loaded["message"] == "Alice, stats group\nsecond line"
    assert load_untrusted_yaml("") is None


def test_a_large_plain_file_loads_quickly() -> None:
    text = "files:\n" + "".join(f"  - pkg/module_{i}.py\n" for i in range(9000))
    assert len(text) > 200_000
    started = time.monotonic()
    assert len(load_untrusted_yaml(text)["files"]) == 9000
    assert time.monotonic() - started < STALL


def test_untrusted_values_become_short_single_line_text_or_a_description() -> None:
    from datetime import date, datetime, timezone

    assert untrusted_text("2026-11-20T10:00:00Z") == "2026-11-20T10:00:00Z"
    assert untrusted_text(datetime(2026, 11, 20, 10, tzinfo=timezone.utc)) == (
        "2026-11-20T10:00:00Z"
    )
    assert untrusted_text(datetime(2026, 11, 20, 10)) == "2026-11-20T10:00:00Z"
    assert untrusted_text(date(2026, 11, 20)) == "2026-11-20"
    assert untrusted_text(3) == "3" and untrusted_text(True) == "true"
    assert untrusted_text(None) is None
    assert untrusted_text(["a"] * 10) is None and untrusted_text({"a": 1}) is None
    long = untrusted_text("x" * 100_000, cap=50)
    assert long is not None and len(long) == 50 and long.endswith("…")
    assert untrusted_text("a\nBcc: b\x00c") == "a Bcc: b c"
    assert untrusted_text("a\nb\tc", multiline=True) == "a\nb\tc"
    assert short_repr("python") == "'python'"
    assert len(short_repr("p" * 100_000)) == 80
    assert short_repr(["x"] * 100_000) == "a list of 100000 items"
    assert short_repr({"a": 1}) == "a dict of 1 items"
    assert short_repr(7) == "7"


# -- read_metadata ------------------------------------------------------------------


def test_read_metadata_refuses_aliases_fifos_and_symlinks(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(laughs(7))
    metadata, problem = read_metadata(config)
    assert metadata is None and problem is not None and "alias" in problem

    config.unlink()
    os.mkfifo(config)
    started = time.monotonic()
    metadata, problem = read_metadata(config)
    assert time.monotonic() - started < STALL
    assert metadata is None and "not a regular file" in (problem or "")

    config.unlink()
    secret = tmp_path / "secret.yaml"
    secret.write_text("type: python\nsecret: TOP-SECRET\n")
    config.symlink_to(secret)
    metadata, problem = read_metadata(config)
    assert metadata is None and problem is not None


# -- through passes ----------------------------------------------------------------


def test_a_config_with_nested_aliases_neither_stalls_the_pass_nor_floods_email(
    owner: App,
) -> None:
    app = owner
    folder = app.submit("laughs")
    # *a5 once made a 19 MB email to the owner; *a7 stalled the pass for minutes.
    (folder / "config.yaml").write_text("type: bash\nfiles: [script.sh]\n" + laughs(5))
    started = time.monotonic()
    result = app.run_pass()
    assert time.monotonic() - started < STALL
    assert result.exit_code == 0, result.summary
    assert all(len(m.as_bytes()) < 200_000 for m in outbox(app))
    record = State.load(app.home.state_file).job(DS_EMAIL, "laughs")
    assert record["status"] == "received"
    assert "alias" in record["waiting_reason"]


def test_a_received_job_whose_config_turns_hostile_gets_a_small_owner_email(
    owner: App,
) -> None:
    app = owner
    app.submit(
        "huge-fields",
        metadata={"submitted_at": "2026-11-20T10:00:00Z" + "Z" * 200_000},
    )
    app.submit("list-fields", metadata={"submitted_at": ["2026"] * 20_000})
    result = app.run_pass()
    assert result.exit_code == 0, result.summary
    owner_mail = {
        m["Subject"]: m for m in outbox(app) if m["To"] == DO_EMAIL and "job" in m["Subject"]
    }
    assert len(owner_mail) == 2
    for message in owner_mail.values():
        assert len(message.as_bytes()) < 60_000
    huge = next(m for s, m in owner_mail.items() if "huge-fields" in s)
    assert "Submitted at: 2026-11-20T10:00:00ZZZ" in text_of(huge)
    listed = next(m for s, m in owner_mail.items() if "list-fields" in s)
    assert "Submitted at" not in text_of(listed)


def test_a_config_with_an_impossible_date_is_waited_on_not_a_crash(owner: App) -> None:
    app = owner
    folder = app.submit("bad-date")
    text = (folder / "config.yaml").read_text()
    (folder / "config.yaml").write_text(
        text.replace("submitted_at: '2026-11-20T10:00:00Z'", "submitted_at: 2026-13-45")
    )
    assert "2026-13-45" in (folder / "config.yaml").read_text()
    result = app.run_pass()
    assert result.exit_code == 0, result.summary
    record = State.load(app.home.state_file).job(DS_EMAIL, "bad-date")
    assert "not valid YAML" in record["waiting_reason"]


def test_a_peer_request_with_nested_aliases_is_refused_in_one_quick_pass(app: App) -> None:
    path = app.datasite.peers / DS_EMAIL / "request.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f"email: {DS_EMAIL}\nrequested_at: '2026-11-20T09:00:00Z'\n"
    path.write_text(body + laughs(8, key="message"))
    # In a child with a memory ceiling: a loader that expands aliases fails
    # here instead of exhausting the machine.
    code = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from syft_bg_app.store.home import AppHome
        from syft_bg_app.passes import run_pass
        result = run_pass(AppHome(Path({str(app.home.root)!r})))
        print(result.exit_code)
        """
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=app.env, timeout=PATIENCE
    )
    assert time.monotonic() - started < STALL, out.stderr[-2000:]
    assert out.stdout.strip() == "0", out.stderr[-2000:]
    peer = State.load(app.home.state_file).peer(DS_EMAIL)
    assert peer is not None and peer["status"] == "invalid"
    assert all(len(m.as_bytes()) < 200_000 for m in outbox(app))


# -- the data scientist's view ---------------------------------------------------------


def test_my_jobs_survives_a_hostile_state_yaml_from_the_data_owner(app: App) -> None:
    ident = ds.Identity(DS_EMAIL, app.root)
    site = app.datasite
    site.peers.mkdir(parents=True, exist_ok=True)
    app.submit("laughs")
    app.submit("long")
    app.submit("fifo")
    review = site.review / DS_EMAIL / "v1"
    for name in ("laughs", "long", "fifo"):
        (review / name).mkdir(parents=True, exist_ok=True)
    (review / "laughs" / "state.yaml").write_text(laughs(8, key="status"))
    (review / "long" / "state.yaml").write_text(
        yaml.safe_dump({"status": "rejected\n" + "x" * 100_000, "review_reason": "y" * 100_000})
    )
    os.mkfifo(review / "fifo" / "state.yaml")
    started = time.monotonic()
    jobs = {job.name: job for job in ds.my_jobs(ident)}
    assert time.monotonic() - started < STALL
    assert jobs["laughs"].status == "unreadable"
    assert jobs["fifo"].status == "unreadable"
    assert "\n" not in jobs["long"].status and len(jobs["long"].status) <= 200
    assert len(jobs["long"].reason or "") <= 4000


def test_my_jobs_shows_only_text_metadata(app: App) -> None:
    ident = ds.Identity(DS_EMAIL, app.root)
    app.submit("odd", metadata={"type": {"nested": ["x"] * 1000}, "submitted_at": "z" * 10_000})
    (job,) = ds.my_jobs(ident)
    assert job.type is None
    assert job.submitted_at is not None and len(job.submitted_at) <= 200
