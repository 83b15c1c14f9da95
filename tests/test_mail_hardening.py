"""Emails built from other people's names and files: commands that are safe to
paste, recipients that cannot break headers, and job code read without
following a swapped-in symlink or blocking on a fifo."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import DO_EMAIL, DS_EMAIL, PATIENCE, App, outbox, text_of

from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.mail import code as email_code
from syft_bg_app.store.state import State


def owner_text(app: App, kind: str, job: str) -> str:
    found = [
        m
        for m in outbox(app)
        if m["To"] == DO_EMAIL and m["X-Syft-BG-Event"] == kind and job in m["Subject"]
    ]
    assert len(found) == 1, [(m["To"], m["Subject"]) for m in outbox(app)]
    return text_of(found[0])


def command_line(text: str, prefix: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def owner(app: App) -> App:
    app.set_config(execute={"enabled": False})
    return app


# -- commands suggested in emails and messages ---------------------------------------------


def test_a_syft_job_default_name_gives_commands_that_work_when_pasted(owner: App) -> None:
    syft_job = pytest.importorskip("syft_job")
    app = owner
    app.cli("peers", "accept", DS_EMAIL, check=True)
    (app.root / DS_EMAIL).mkdir(parents=True, exist_ok=True)
    client = syft_job.get_client(str(app.root), DS_EMAIL)
    folder = Path(client.submit_bash_job(app.do_email, "echo hi\n"))
    name = folder.name
    assert " " in name  # syft-job's default: "Job - <id>"
    assert app.run_pass().exit_code == 0

    text = owner_text(app, "job_submitted", name)
    approve = command_line(text, app.command("jobs approve"))
    start = shlex.split(app.command("jobs"))[:-1]
    assert shlex.split(approve) == [*start, "jobs", "approve", f"{DS_EMAIL}/{name}"]
    reject = command_line(text, app.command("jobs reject"))
    assert shlex.split(reject)[: len(start) + 3] == [*start, "jobs", "reject", f"{DS_EMAIL}/{name}"]

    # The owner pastes the command into a real shell in another folder, with neither
    # the app's environment on PATH nor SYFT_BG_HOME set; the real CLI approves the job.
    env = {k: v for k, v in os.environ.items() if k != "SYFT_BG_HOME"}
    pasted = subprocess.run(
        ["bash", "-c", approve],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert pasted.returncode == 0, pasted.stderr
    assert app.job_state(name)["status"] == "approved"


def test_shell_syntax_in_a_job_name_stays_one_argument(owner: App, tmp_path: Path) -> None:
    app = owner
    marker = tmp_path / "PWNED"
    name = f"x;touch {marker.name}|sh $(touch {marker.name}) `touch {marker.name}`"
    app.submit(name)
    assert app.run_pass().exit_code == 0
    text = owner_text(app, "job_submitted", "x;touch")
    label = f"{DS_EMAIL}/{name}"
    commands = [
        command_line(text, app.command("jobs approve")),
        command_line(text, app.command("jobs reject")),
        command_line(text, f"Details: {app.command('jobs show')}").removeprefix("Details: "),
    ]
    program = shlex.split(app.command("jobs"))[0]
    # A stand-in syft-bg that records its arguments, run by a real bash in tmp_path.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "args"
    fake = bin_dir / "syft-bg"
    fake.write_text(f'#!/bin/bash\nprintf "%s\\0" "$@" > {shlex.quote(str(record))}\n')
    fake.chmod(0o755)
    for command in commands:
        # The program the email names is swapped for the stand-in; the rest is as sent.
        assert command.startswith(shlex.quote(program) + " "), command
        pasted = shlex.quote(str(fake)) + command[len(shlex.quote(program)) :]
        subprocess.run(["bash", "-c", pasted], cwd=tmp_path, check=True, timeout=PATIENCE)
        args = record.read_bytes().decode().split("\0")[:-1]
        assert args[:2] == ["--home", str(app.home.root)], command
        assert args[4] == label, command
        assert not marker.exists(), command


def test_the_rerun_hint_for_a_job_approved_elsewhere_quotes_the_job(app: App) -> None:
    app.cli("peers", "accept", DS_EMAIL, check=True)
    app.set_config(notify={"enabled": False})
    name = "Job - 1234abcd"
    app.submit(name)
    assert app.run_pass().exit_code == 0
    # Approved by another tool (as syft-job's client would): no approval snapshot.
    app.datasite.write_job_state(JobRef(DS_EMAIL, name), status="approved", approved_by=DO_EMAIL)
    app.run_pass()
    # The hint is for the data owner: it is in the checkpoint (syft-bg jobs show).
    reason = State.load(app.home.state_file).job(DS_EMAIL, name)["reason"]
    hint = reason[reason.index("syft-bg jobs rerun") :]
    assert shlex.split(hint) == [
        "syft-bg",
        "jobs",
        "rerun",
        f"{DS_EMAIL}/{name}",
        "--fresh-snapshot",
    ]


def test_a_rule_named_after_a_job_is_quoted_in_the_commands_suggested_for_it(
    owner: App,
) -> None:
    app = owner
    name = "Job - 1234abcd;id"
    app.submit(name)
    assert app.run_pass().exit_code == 0
    app.cli("auto-approve", "--from-job", f"{DS_EMAIL}/{name}", check=True)
    out = app.cli("remove-peer", DS_EMAIL, check=True).stdout
    start = out.index(app.command("auto-approve --from-job"))
    hint = out[start : out.index(", or edit config.yaml")]
    args = shlex.split(hint)
    assert args[args.index("-n") + 1] == name, hint


# -- recipients ------------------------------------------------------------------------------


def test_a_folder_name_with_a_trailing_newline_gets_no_email(owner: App) -> None:
    app = owner
    app.submit("plain", ds_email="bob@lab.org\n")
    app.submit("fine")
    result = app.run_pass()
    assert result.exit_code == 0, result.summary
    messages = outbox(app)
    assert {m["To"] for m in messages} == {DO_EMAIL, DS_EMAIL}
    assert all("\n" not in m["To"] for m in messages)
    assert not any(m["To"].startswith("bob@lab.org") for m in messages)


# -- reading job code for the owner's email ---------------------------------------------------


def _swap_after_collect(monkeypatch: pytest.MonkeyPatch, swap, folder: Path) -> None:
    """Run ``swap`` between the file-set check and the read, as a racing writer could."""
    real = email_code.collect

    def collect_then_swap(*args, **kwargs):
        found = real(*args, **kwargs)
        swap(folder)
        return found

    monkeypatch.setattr(email_code, "collect", collect_then_swap)


def _collect_code(folder: Path) -> dict:
    job_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return email_code.collect_code(job_fd, 50_000, 500_000)
    finally:
        os.close(job_fd)


def test_a_file_swapped_for_a_symlink_after_the_check_is_not_followed(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET of the owner\n")
    folder = app.submit("swap", files={"script.sh": "echo hello\n"})

    def swap(job: Path) -> None:
        target = job / "code" / "script.sh"
        target.unlink()
        target.symlink_to(secret)

    _swap_after_collect(monkeypatch, swap, folder)
    code = _collect_code(folder)
    shown = "".join(entry["text"] or "" for entry in code["files"])
    assert "TOP-SECRET" not in shown
    assert any("code/script.sh" in problem for problem in code["problems"])


def test_a_file_swapped_for_a_fifo_after_the_check_does_not_block(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = app.submit("fifo", files={"script.sh": "echo CODE-MARKER\n"})

    def swap(job: Path) -> None:
        target = job / "code" / "script.sh"
        target.unlink()
        os.mkfifo(target)

    _swap_after_collect(monkeypatch, swap, folder)
    result: dict = {}
    worker = threading.Thread(
        target=lambda: result.update(code=_collect_code(folder)),
        daemon=True,
    )
    worker.start()
    worker.join(10)
    if worker.is_alive():
        # Unblock the reader so the thread ends, then fail.
        fd = os.open(folder / "code" / "script.sh", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("reading a job file blocked on a fifo")
    code = result["code"]
    assert any("code/script.sh" in problem for problem in code["problems"])
    assert "CODE-MARKER" not in "".join(entry["text"] or "" for entry in code["files"])
    run_sh = next(entry for entry in code["files"] if entry["path"] == "run.sh")
    assert "echo hello" in run_sh["text"]
