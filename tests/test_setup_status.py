"""setup-status: each check's ✓ or ✗, the fix printed under each ✗, the exit code."""

from __future__ import annotations

import json
import re

import pytest
from fake_google import FakeGoogle

from syft_bg_app.execution.sandbox import probe_bwrap
from syft_bg_app.mail.deliver import record_problem
from syft_bg_app.mail.errors import PermanentMailError
from syft_bg_app.schedule import install as schedule
from syft_bg_app.session import changing

BWRAP_WORKS = probe_bwrap(True).ok


def _check(app, *extra: str):
    """Run setup-status; {label: (mark, first detail line)} and {label: first fix line}."""
    result = app.cli("setup-status", *extra)
    body = result.stdout.split("=" * 60 + "\n", 1)[1].split("\n" + "-" * 60, 1)[0]
    marks, fixes = {}, {}
    label = None
    for line in body.splitlines():
        match = re.match(r"^([✓✗⚠]) ([^:]+): (.*)$", line)
        if match:
            label = match.group(2)
            marks[label] = (match.group(1), match.group(3))
        elif line.startswith("    fix: ") and label is not None:
            fixes[label] = line[len("    fix: ") :]
    return result, marks, fixes


def _ok(marks, label) -> bool:
    return marks[label][0] == "✓"


def _schedule_on_disk(app) -> None:
    """What install and `systemctl --user enable` leave on disk for this app home."""
    service, timer = schedule.unit_paths(app.home)
    service.parent.mkdir(parents=True, exist_ok=True)
    service.write_text(schedule.render_service(app.home, 60))
    timer.write_text(schedule.render_timer(app.home, 60))
    link = schedule.timer_enabled_link(app.home)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(timer)


def test_a_fresh_home_says_to_init_and_everything_that_depends_on_it(bare_app):
    result, marks, fixes = _check(bare_app)
    assert result.returncode == 1
    assert result.stdout.startswith("SYFT-BG ENVIRONMENT CHECK")
    assert marks["config"][0] == "✗" and "no config at" in marks["config"][1]
    assert fixes["config"].startswith(bare_app.command("init -e "))
    for label in ("SyftBox folder", "datasite", "permission files", "mail"):
        assert marks[label] == ("✗", "not checked until config.yaml is valid")
        assert fixes[label] == "fix the config first (above)"
    assert marks["schedule"][0] == "✗" and fixes["schedule"] == bare_app.command("install")
    assert marks["last pass"][0] == "✗" and fixes["last pass"].startswith(
        bare_app.command("run --once")
    )
    assert _ok(marks, "bwrap") == BWRAP_WORKS
    problems = 3 if BWRAP_WORKS else 4
    assert f"✗ {problems} problems (4 checks wait for them); run the fix" in result.stdout
    assert not bare_app.home.config_file.exists()


def test_after_init_only_the_schedule_and_the_first_pass_are_missing(app):
    result, marks, fixes = _check(app)
    assert result.returncode == 1
    for label in ("config", "datasite", "permission files", "mail"):
        assert _ok(marks, label), (label, marks[label])
    # The test's SyftBox folder holds this datasite alone: a warning, not a problem.
    assert marks["SyftBox folder"][0] == "⚠" and "no other datasite" in marks["SyftBox folder"][1]
    assert "outbox" in marks["mail"][1]
    assert fixes["schedule"] == app.command("install")
    assert marks["last pass"][1] == "no pass has run yet"
    bad = [label for label, (mark, _) in marks.items() if mark == "✗"]
    assert set(bad) == {"schedule", "last pass"} | (set() if BWRAP_WORKS else {"bwrap"})


@pytest.mark.skipif(not BWRAP_WORKS, reason="bwrap does not work on this machine")
def test_everything_in_place_exits_0(app):
    # A SyftBox folder a client syncs holds other datasites beside this one.
    (app.root / "peer@uni.example").mkdir()
    app.run_pass()
    _schedule_on_disk(app)
    result, marks, _ = _check(app)
    assert result.returncode == 0, result.stdout
    assert all(mark == "✓" for mark, _ in marks.values())
    assert "Environment ready!" in result.stdout
    assert "every 60 s" in marks["schedule"][1]
    # A stopped schedule and a changed interval are both caught.
    schedule.timer_enabled_link(app.home).unlink()
    result, marks, fixes = _check(app)
    assert result.returncode == 1 and fixes["schedule"] == app.command("start")
    _schedule_on_disk(app)
    app.set_config(schedule={"interval": 120})
    _, marks, fixes = _check(app)
    assert "schedule.interval says 120 s" in marks["schedule"][1]
    assert fixes["schedule"] == app.command("install")


def test_an_invalid_config_is_shown_with_its_lines(app):
    text = app.home.config_file.read_text().replace("timeout: 600", "timeout: soon")
    app.home.config_file.write_text(text)
    result, marks, fixes = _check(app)
    assert result.returncode == 1
    assert marks["config"][0] == "✗"
    assert re.search(r"config\.yaml:\d+: execute\.timeout: must be a whole number", result.stdout)
    assert fixes["config"].startswith(f"edit {app.home.config_file}")


# -- mail -----------------------------------------------------------------------------------


@pytest.fixture
def google():
    fake = FakeGoogle().start()
    yield fake
    fake.stop()


def _use_gmail(app, google) -> tuple:
    app.set_config(notify={"transport": "gmail", "gmail": {"api_endpoint": google.api_endpoint}})
    return app.home.root / "gmail_token.json", app.home.root / "credentials.json"


def test_gmail_without_a_token_says_how_to_sign_in(app, google):
    token, credentials = _use_gmail(app, google)
    _, marks, fixes = _check(app)
    assert marks["Gmail token"] == ("✗", f"no token at {token}")
    assert fixes["Gmail token"].startswith("download the OAuth client file")
    google.write_client_secrets(credentials)
    _, marks, fixes = _check(app)
    assert fixes["Gmail token"] == app.command(f"init -e {app.do_email} --gmail {credentials}")


def test_a_token_others_can_read_must_be_made_private(app, google):
    token, credentials = _use_gmail(app, google)
    google.write_client_secrets(credentials)
    google.write_token(token, expired=False)
    token.chmod(0o644)
    _, marks, fixes = _check(app)
    assert marks["Gmail token"][0] == "✗" and "mode 644" in marks["Gmail token"][1]
    assert fixes["Gmail token"] == f"chmod 600 {token}"
    token.chmod(0o600)
    _, marks, _ = _check(app)
    assert marks["Gmail token"][0] == "✓" and "refreshable" in marks["Gmail token"][1]
    assert google.token_requests() == []  # a valid token is not refreshed needlessly


def test_a_revoked_token_is_a_cross_with_the_sign_in_command(app, google):
    token, credentials = _use_gmail(app, google)
    google.write_client_secrets(credentials)
    google.write_token(token, expired=True, refresh_token="revoked-by-user")
    result, marks, fixes = _check(app)
    assert result.returncode == 1
    assert marks["Gmail token"][0] == "✗"
    assert "no longer accepts the saved sign-in" in marks["Gmail token"][1]
    assert fixes["Gmail token"] == app.command(f"init -e {app.do_email} --gmail {credentials}")
    assert len(google.token_requests()) == 1


def test_a_token_that_is_not_json_is_a_cross(app, google):
    token, credentials = _use_gmail(app, google)
    google.write_client_secrets(credentials)
    token.write_text("{not json")
    token.chmod(0o600)
    _, marks, fixes = _check(app)
    assert marks["Gmail token"][0] == "✗" and "cannot be read" in marks["Gmail token"][1]
    assert "--gmail" in fixes["Gmail token"]


def test_an_expired_token_is_refreshed_and_saved(app, google):
    token, credentials = _use_gmail(app, google)
    google.write_client_secrets(credentials)
    google.write_token(token, expired=True)
    _, marks, _ = _check(app)
    assert marks["Gmail token"] == ("✓", f"{token}: refreshed just now (private, 0600)")
    saved = json.loads(token.read_text())
    assert saved["token"] in google.access_tokens
    assert (token.stat().st_mode & 0o777) == 0o600


def test_smtp_settings_and_password_sources(app, monkeypatch):
    app.set_config(notify={"transport": "smtp", "smtp": {"username": "me"}})
    _, marks, fixes = _check(app)
    assert marks["mail (smtp)"] == ("✗", "notify.smtp.host is not set")
    assert "notify.smtp.host" in fixes["mail (smtp)"]
    secret = app.home.root / "smtp-password"
    secret.write_text("hunter2\n")
    secret.chmod(0o644)
    app.set_config(
        notify={
            "transport": "smtp",
            "smtp": {"host": "mail.example.org", "username": "me", "password_file": str(secret)},
        }
    )
    result, marks, fixes = _check(app)
    assert marks["mail (smtp)"][0] == "✗" and "can be read by other users" in result.stdout
    assert fixes["mail (smtp)"] == f"run: chmod 600 {secret}"
    assert "hunter2" not in result.stdout
    secret.chmod(0o600)
    _, marks, _ = _check(app)
    assert marks["mail (smtp)"][0] == "✓"
    app.set_config(
        notify={
            "transport": "smtp",
            "smtp": {"host": "mail.example.org", "username": "me", "password_env": "SMTP_PW"},
        }
    )
    monkeypatch.setenv("SMTP_PW", "hunter2")
    result, marks, fixes = _check(app)
    assert marks["mail (smtp)"][0] == "✗" and "$SMTP_PW" in marks["mail (smtp)"][1]
    assert "password_file" in fixes["mail (smtp)"] and "hunter2" not in result.stdout


def test_a_permanent_delivery_failure_is_a_cross_until_something_changes(app):
    with changing(app.home, "test") as ctx:
        record_problem(
            ctx,
            PermanentMailError("the server refused the login", advice="check the password"),
            "outbox",
        )
    _, marks, fixes = _check(app)
    assert marks["mail delivery"][0] == "✗" and "refused the login" in marks["mail delivery"][1]
    assert fixes["mail delivery"] == "check the password"
    app.set_config(notify={"from_name": "Datasite bot"})
    _, marks, _ = _check(app)
    assert (
        marks["mail delivery"][0] == "✓" and "settings changed since" in marks["mail delivery"][1]
    )


# -- datasite, sandbox, last pass ---------------------------------------------------------------


def test_broken_permission_files_are_found_and_repaired(app):
    app.request_peer("bob@lab.org")
    app.run_pass()
    app.cli("peers", "accept", "bob@lab.org", check=True)
    review_perm = app.datasite.review / "bob@lab.org" / "syft.pub.yaml"
    review_perm.unlink()
    inbox_perm = app.datasite.inbox / "bob@lab.org" / "syft.pub.yaml"
    inbox_perm.write_text("rules:\n- pattern: '**'\n  access: {read: ['*'], write: []}\n")
    _, marks, fixes = _check(app)
    assert marks["permission files"][0] == "✗"
    assert f"{review_perm} is missing" in marks["permission files"][1]
    assert "does not let bob@lab.org write" in marks["permission files"][1]
    assert fixes["permission files"] == app.command("setup-status --repair")
    _, marks, _ = _check(app, "--repair")
    assert marks["repair"][0] == "✓" and "bob@lab.org" in marks["repair"][1]
    assert _ok(marks, "permission files")
    assert "read:\n    - bob@lab.org" in review_perm.read_text()
    _, marks, _ = _check(app)
    assert _ok(marks, "permission files") and "repair" not in marks


def test_a_missing_syftbox_folder_is_a_cross(app):
    app.set_config(syftbox_root=str(app.tmp / "nowhere"))
    _, marks, fixes = _check(app)
    assert marks["SyftBox folder"][0] == "✗" and "does not exist" in marks["SyftBox folder"][1]
    assert "syftbox_root" in fixes["SyftBox folder"]


def test_sandbox_none_is_a_cross(app):
    app.set_config(execute={"sandbox": "none"})
    _, marks, fixes = _check(app)
    assert marks["bwrap"][0] == "✗"
    if BWRAP_WORKS:
        assert fixes["bwrap"] == f"set execute.sandbox: auto in {app.home.config_file}"


def test_a_failed_step_in_the_last_pass_points_to_its_log(app, monkeypatch):
    from syft_bg_app.steps import approve

    def broken(ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(approve, "run", broken)
    app.run_pass()
    _, marks, fixes = _check(app)
    assert marks["last pass"][0] == "✗" and "failed steps: approve" in marks["last pass"][1]
    assert fixes["last pass"] == app.command("logs approve")
