"""start / stop / restart / ensure-running, logs, status and the dashboard."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import DS_EMAIL, PATIENCE, default_sigint, wait_until
from test_ops_fixtures import (  # noqa: F401 (fixtures)
    cron_user_fixture,
    crontab_of,
    set_crontab,
)

from syft_bg_app import logsetup
from syft_bg_app.actions import services as ops
from syft_bg_app.cli import dashboard
from syft_bg_app.clock import iso
from syft_bg_app.config import editor as config_writer
from syft_bg_app.errors import ConfigError
from syft_bg_app.schedule import install as schedule
from syft_bg_app.steps import approve
from syft_bg_app.store.state import State

OTHER = "30 4 * * 1 /usr/local/bin/weekly-report\n"


def _changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.splitlines(), after.splitlines()
    assert len(a) == len(b), "lines were added or removed"
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


# -- start / stop ----------------------------------------------------------------------------


def test_stop_and_start_switch_one_step_and_keep_every_other_line(app):
    original = app.home.config_file.read_text()
    stopped = app.cli("stop", "approve", check=True)
    assert "approve: stopped" in stopped.stdout
    after = app.home.config_file.read_text()
    changes = _changed_lines(original, after)
    assert len(changes) == 1 and changes[0][1].strip() == "enabled: false"
    assert app.config.step_enabled("approve") is False
    assert app.config.step_enabled("notify") is True
    assert (app.home.config_file.stat().st_mode & 0o777) == 0o600
    again = app.cli("stop", "approve", check=True)
    assert "approve: already stopped" in again.stdout
    # No scheduler here (no systemctl, no crontab): the step is on again, and the
    # command says plainly that nothing runs passes by itself.
    started = app.cli("start", "approve")
    assert started.returncode == 1
    assert "approve: started" in started.stdout
    assert "cannot schedule passes here" in started.stderr
    assert app.home.config_file.read_text() == original


def test_a_stopped_step_is_not_run_by_a_pass(app):
    app.cli("stop", "sync", check=True)
    app.submit("waiting")
    result = app.run_pass()
    assert result.exit_code == 0
    review = app.datasite.review / "alice@uni.edu" / "v1" / "waiting" / "state.yaml"
    assert not review.exists()
    steps = State.load(app.home.state_file).data["steps"]
    assert "sync" not in steps and "approve" in steps
    status = app.cli("status", check=True).stdout
    assert "sync     disabled" in status
    app.cli("start", "sync")
    app.run_pass()
    assert app.job_state("waiting")["status"] == "pending"


def test_unknown_services_are_usage_errors(app):
    result = app.cli("ensure-running", "notify", "mailer")
    assert result.returncode == 2 and "'mailer'" in result.stderr and "execute" in result.stderr
    assert app.cli("stop", "nope").returncode == 2


def test_stop_all_switches_the_schedule_off_and_start_on_again(app, cron_user):
    set_crontab(cron_user, OTHER)
    app.cli("install", "--method", "cron", check=True)
    line = schedule.cron_line(app.home, 60)
    stopped = app.cli("stop", check=True).stdout
    for step in ops.SERVICES:
        assert f"{step}: stopped" in stopped
        assert app.config.step_enabled(step) is False
    assert "commented out the syft-bg crontab line" in stopped
    assert crontab_of(cron_user) == OTHER + "# " + line + "\n"
    assert f"OFF ({app.command('start')})" in app.cli("status", check=True).stdout
    started = app.cli("start", check=True).stdout
    assert "enabled the syft-bg crontab line" in started
    assert crontab_of(cron_user) == OTHER + line + "\n"
    assert all(app.config.step_enabled(s) for s in ops.SERVICES)


def test_stopping_the_last_step_switches_the_schedule_off(app, cron_user):
    app.cli("install", "--method", "cron", check=True)
    for step in ("sync", "notify", "approve"):
        app.cli("stop", step, check=True)
    assert not crontab_of(cron_user).startswith("#")
    last = app.cli("stop", "execute", check=True).stdout
    assert "commented out" in last and crontab_of(cron_user).startswith("# ")


def test_start_and_ensure_running_install_a_schedule_when_there_is_none(app, cron_user):
    first = app.cli("start", "notify", check=True).stdout
    assert "notify: already running" in first
    assert "installed a cron schedule" in first
    assert schedule.cron_line(app.home, 60) in crontab_of(cron_user)
    app.cli("stop", "approve", check=True)
    ensured = app.cli("ensure-running", "notify", "approve", check=True).stdout
    assert "notify: already running" in ensured
    assert "approve: started" in ensured
    assert "passes: already scheduled" in ensured
    assert crontab_of(cron_user).count("syft-bg-app:") == 1


def test_restart_and_ensure_running_restart_run_a_pass_now(app, cron_user):
    app.submit("now")
    result = app.cli("restart", "sync", check=True)
    assert "running a pass now" in result.stdout
    assert "syft-bg: pass ok" in result.stderr and "1 received" in result.stderr
    assert app.job_state("now")["status"] == "pending"
    again = app.cli("ensure-running", "sync", "--restart", check=True)
    assert "sync: already running" in again.stdout and "pass ok" in again.stderr


# -- editing config.yaml in place ----------------------------------------------------------------


def test_a_missing_key_or_section_is_added_without_touching_the_rest(tmp_path):
    path = tmp_path / "config.yaml"
    text = "# mine\ndo_email: me@example.org   # who I am\nnotify:\n  # how\n  transport: outbox\n"
    path.write_text(text)
    written, notes = config_writer.set_values(
        path, {"notify.enabled": False, "schedule.interval": 120}
    )
    assert written and notes == []
    new = path.read_text()
    assert new.startswith("# mine\ndo_email: me@example.org   # who I am\nnotify:\n")
    assert "notify:\n  # how\n  enabled: false\n  transport: outbox\n" in new
    assert new.endswith("schedule:\n  interval: 120\n")
    assert config_writer.set_values(path, {"notify.enabled": False}) == (False, [])


def test_a_flow_style_section_is_edited_in_flow_style(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("do_email: me@example.org  # me\nnotify: {transport: outbox}\n")
    written, notes = config_writer.set_values(path, {"notify.enabled": False})
    assert written and notes == []
    assert path.read_text().startswith("do_email: me@example.org  # me\nnotify: {")
    from syft_bg_app.config.load import load_config

    config = load_config(path)
    assert config.get("notify.enabled") is False and config.get("notify.transport") == "outbox"


def test_an_invalid_config_is_never_written(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("do_email: me@example.org\nsync:\n  enabled: maybe\n")
    with pytest.raises(ConfigError, match="nothing was changed"):
        config_writer.set_values(path, {"sync.enabled": False})
    assert path.read_text() == "do_email: me@example.org\nsync:\n  enabled: maybe\n"


# -- logs -----------------------------------------------------------------------------------------


def _failing_pass(app, monkeypatch):
    def broken(ctx):
        ctx.log("approve").info("looking at rules")
        raise RuntimeError("rules exploded")

    monkeypatch.setattr(approve, "run", broken)
    app.request_peer("bob@lab.org")
    app.run_pass()


def test_logs_shows_one_service_with_its_tracebacks(app, monkeypatch):
    _failing_pass(app, monkeypatch)
    logging.getLogger("syft_bg.notify.gmail").info("token refreshed")
    out = app.cli("logs", "approve", check=True).stdout.splitlines()
    heads = [line for line in out if ops.RECORD_RE.match(line)]
    assert heads and all(" syft_bg.approve: " in line for line in heads)
    assert any("looking at rules" in line for line in heads)
    assert "Traceback (most recent call last):" in out
    assert any("RuntimeError: rules exploded" in line for line in out)
    notify = app.cli("logs", "notify", check=True).stdout
    assert "syft_bg.notify.gmail: token refreshed" in notify and "rules exploded" not in notify
    sync = app.cli("logs", "sync", check=True).stdout
    assert "syft_bg.sync" in sync and "syft_bg.approve" not in sync
    everything = app.cli("logs", "all", "-n", "1000", check=True).stdout
    assert "syft_bg.sync" in everything and "syft_bg.approve" in everything
    assert "syft_bg.pass" in everything


def test_logs_n_counts_records_across_rotated_files(app):
    logs = app.home.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    stamp = "2026-11-20 10:00:0{i},000 42 INFO syft_bg.notify: email {i}"
    (logs / "syft-bg.log.2").write_text(stamp.format(i=1) + "\n")
    (logs / "syft-bg.log.1").write_text(stamp.format(i=2) + "\ncontinued\n")
    (logs / "syft-bg.log").write_text(
        stamp.format(i=3) + "\n2026-11-20 10:00:04,000 42 INFO syft_bg.sync: other\n"
    )
    out = app.cli("logs", "notify", "-n", "2", check=True).stdout.splitlines()
    assert out == [stamp.format(i=2), "continued", stamp.format(i=3)]
    assert len(app.cli("logs", "notify", "-n", "10", check=True).stdout.splitlines()) == 4
    assert app.cli("logs", "notify", "-n", "0", check=True).stdout == ""


def test_logs_without_a_log_yet_says_so(bare_app):
    out = bare_app.cli("logs", "notify", check=True).stdout
    assert "no log yet" in out


def _read_until(stream, needle: str, timeout: float = PATIENCE) -> str:
    seen = ""
    end = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < end:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(stream.fileno(), 4096).decode(errors="replace")
            except OSError:  # a pty whose other side has closed
                break
            if not chunk:
                break
            seen += chunk
    return seen


def _has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (read from /proc)."""
    folder = Path(f"/proc/{pid}/fd")
    try:
        links = [os.readlink(folder / fd) for fd in os.listdir(folder)]
    except OSError:
        return False
    return str(path) in links


def test_logs_follow_prints_new_lines_of_the_service_across_rotation(app):
    log = app.home.logs_dir / "syft-bg.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("2026-11-20 10:00:00,000 1 INFO syft_bg.notify: old line\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "syft_bg_app", "logs", "notify", "-f", "-n", "0"],
        env=app.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,  # Ctrl-C ends it, also when the suite ignores SIGINT
    )
    try:
        # With -n 0 only lines written after it opened the log are new.
        wait_until(lambda: _has_open(proc.pid, log), "logs -f to open the log")
        with log.open("a") as handle:
            handle.write("2026-11-20 10:00:01,000 1 INFO syft_bg.sync: not this one\n")
            handle.write("2026-11-20 10:00:02,000 1 ERROR syft_bg.notify: new line\n")
            handle.write("Traceback: detail of the new line\n")
        seen = _read_until(proc.stdout, "detail of the new line")
        assert "new line" in seen and "not this one" not in seen and "old line" not in seen
        log.rename(log.with_name("syft-bg.log.1"))
        log.write_text("2026-11-20 10:00:03,000 1 INFO syft_bg.notify: after rotation\n")
        seen += _read_until(proc.stdout, "after rotation")
        assert "after rotation" in seen
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=PATIENCE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- status ------------------------------------------------------------------------------------


def test_status_shows_schedule_next_pass_and_counts(app, cron_user):
    app.submit("one")
    app.submit("two")
    app.run_pass()
    status = app.cli("status", check=True).stdout
    assert (
        f"schedule: none; passes run only when run.sh is called ({app.command('install')})"
        in status
    )
    assert "waiting: 2 pending review, 0 approved to start, 0 running" in status
    app.cli("install", "--method", "cron", "--interval", "300", check=True)
    status = app.cli("status", check=True).stdout
    assert f"schedule: crontab line of user {cron_user}, every 300 s, on" in status
    next_line = [line for line in status.splitlines() if line.startswith("next scheduled pass:")]
    assert len(next_line) == 1
    when = datetime.strptime(next_line[0].split(": ", 1)[1][:19], "%Y-%m-%d %H:%M:%S")
    assert when.minute % 5 == 0
    assert timedelta(0) < when - datetime.now() <= timedelta(minutes=5)
    # Changing the interval without reinstalling is pointed out.
    app.set_config(schedule={"interval": 60})
    status = app.cli("status", check=True).stdout
    assert "installed for every 300 s but schedule.interval is 60" in status


def _hold_lock(app) -> subprocess.Popen:
    code = (
        "import sys, time; from filelock import FileLock; "
        f"lock = FileLock({str(app.home.lock_file)!r}); lock.acquire(); "
        "print('held', flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_status_warns_about_a_lock_held_too_long_and_about_an_orphaned_holder(app):
    holder = _hold_lock(app)
    try:
        owner = app.home.lock_info_file
        owner.write_text(json.dumps({"pid": holder.pid, "since": iso(), "purpose": "pass"}))
        assert "WARNING" not in app.cli("status", check=True).stdout.split("waiting:")[1]
        long_ago = iso(datetime.now(timezone.utc) - timedelta(minutes=25))
        owner.write_text(json.dumps({"pid": holder.pid, "since": long_ago, "purpose": "pass"}))
        status = app.cli("status", check=True).stdout
        assert f"WARNING a pass (pid {holder.pid}) has held the app lock since" in status
        assert "25 min ago" in status
        dead = subprocess.Popen(["true"])
        dead.wait()
        owner.write_text(json.dumps({"pid": dead.pid, "since": long_ago, "purpose": "pass"}))
        status = app.cli("status", check=True).stdout
        assert f"pid {dead.pid}, which took it, has exited" in status
    finally:
        holder.kill()
        holder.wait()
    assert "app lock" not in app.cli("status", check=True).stdout


def test_status_warns_when_scheduled_passes_stopped_happening(app, cron_user):
    app.run_pass()
    app.cli("install", "--method", "cron", check=True)
    state = State.load(app.home.state_file)
    state.data["last_pass"]["finished_at"] = iso(datetime.now(timezone.utc) - timedelta(hours=3))
    state.save()
    status = app.cli("status", check=True).stdout
    assert "WARNING the last pass finished 3 h ago, but passes are scheduled every 60 s" in status


# -- dashboard -----------------------------------------------------------------------------------


def test_without_a_command_the_dashboard_prints_once_when_not_on_a_terminal(app, monkeypatch):
    _failing_pass(app, monkeypatch)
    app.cli("jobs", "list", check=True)
    result = app.cli(check=True)  # returns at once: its timeout would fail the test
    out = result.stdout
    assert "\033[" not in out and out.count("services (the steps of each pass") == 1
    assert "recent activity (syft-bg logs all):" in out
    assert "ERROR approve: step approve failed" in out
    assert "sync: peer" in out or "pass: pass finished with failed steps: approve" in out


def test_the_dashboard_redraws_on_a_terminal(app):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    assert dashboard.run_dashboard(app.home, screen, refresh=0.01, rounds=3) == 0
    assert screen.getvalue().count(dashboard.CLEAR) == 3
    assert "Ctrl-C to quit" in screen.getvalue()


def test_the_dashboard_on_a_real_terminal_stops_cleanly_on_ctrl_c(app):
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "syft_bg_app"],
        env=app.env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        close_fds=True,
        preexec_fn=default_sigint,  # Ctrl-C ends it, also when the suite ignores SIGINT
    )
    os.close(secondary)
    try:
        reader = os.fdopen(main, "rb", buffering=0)
        screen = _read_until(reader, "Ctrl-C to quit")
        assert dashboard.CLEAR in screen and "services (the steps of each pass" in screen
        proc.send_signal(signal.SIGINT)
        rest = _read_until(reader, "never-there")  # everything up to its exit
        assert proc.wait(timeout=PATIENCE) == 0, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _cells(text: str) -> int:
    """Terminal cells a line takes (East Asian wide characters take two)."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


LONG = "a-job-name-far-longer-than-any-terminal-is-wide-" * 3


@pytest.mark.parametrize(("columns", "rows"), [(80, 24), (40, 10)])
def test_the_dashboard_fits_the_terminal_it_runs_in(app, monkeypatch, columns, rows):
    _failing_pass(app, monkeypatch)  # a failed step, with its traceback in the log
    for i in range(30):
        app.submit(f"{i:02d}-{LONG}")
    app.submit("統計" * 40, ds_email="bob@lab.org")  # two cells per character
    app.request_peer("mallory-with-a-very-long-address-" * 3 + "@example.org")
    app.run_pass()
    app.cli("jobs", "reject", f"00-{LONG}", "-r", "reads raw rows " * 20, check=True)
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in app.env.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "syft_bg_app"],
        env=env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        close_fds=True,
        preexec_fn=default_sigint,
    )
    os.close(secondary)
    try:
        reader = os.fdopen(main, "rb", buffering=0)
        drawn = _read_until(reader, "Ctrl-C to quit")
        proc.send_signal(signal.SIGINT)
        _read_until(reader, "never-there")
        assert proc.wait(timeout=PATIENCE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert drawn.startswith(dashboard.CLEAR)
    screen = drawn[len(dashboard.CLEAR) :].split("\r\n")
    assert len(screen) <= rows and screen[-1].startswith("refreshing every 3 s")
    assert all(_cells(line) < columns for line in screen), screen
    # The title first, then the pending jobs, in sight however small the terminal.
    assert screen[0].startswith("syft-bg  ")
    assert "pending jobs: 30 (syft-bg" in "\n".join(screen)
    listed = [line for line in screen if line.startswith(f"  {DS_EMAIL}/")]
    assert listed and all(line.endswith("…") for line in listed)
    assert all("-a-job-name" in line for line in listed)
    assert any(line.startswith("  … ") and "more (syft-bg" in line for line in screen)
    assert "\x1b" not in drawn[len(dashboard.CLEAR) :]
    if rows >= 24:
        # Room for the rest: a failed step stays in sight, and the recent log.
        assert any("FAILED" in line for line in screen)
        assert "recent activity (syft-bg logs all):" in screen


def test_the_dashboard_cuts_wide_characters_and_keeps_what_matters_on_a_tiny_terminal(app):
    app.submit("統計" * 40)
    app.run_pass()
    for columns, rows in ((80, 24), (40, 10), (20, 5), (12, 3)):
        screen = dashboard.fit_screen(app.home, columns, rows, "Ctrl-C to quit")
        assert len(screen) <= rows and all(_cells(line) < columns for line in screen)
        assert screen[0].startswith("syft-bg")
        assert screen[1].startswith("pending jobs: 1"[: columns - 2])
        assert screen[2].startswith(f"  {DS_EMAIL}/統計"[: columns - 3])


def test_logsetup_format_is_what_the_log_reader_parses(tmp_path):
    from syft_bg_app.store.home import AppHome

    home = AppHome(tmp_path / "home")
    logsetup.configure(home)
    logging.getLogger("syft_bg.execute").info("started a job")
    for handler in logging.getLogger("syft_bg").handlers:
        handler.flush()
    line = (home.logs_dir / "syft-bg.log").read_text().splitlines()[-1]
    match = ops.RECORD_RE.match(line)
    assert match and match.group("name") == "syft_bg.execute"


def test_the_dashboard_reads_only_the_end_of_a_long_log(app):
    log = app.home.logs_dir / "syft-bg.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    filler = "".join(
        f"2026-11-20 10:00:00,000 1 INFO syft_bg.sync: filler {i:06d}\n" for i in range(5000)
    )
    log.write_text(filler + "2026-11-20 11:00:00,000 1 INFO syft_bg.notify: the latest\n")
    assert log.stat().st_size > dashboard.DASHBOARD_LOG_WINDOW
    activity = dashboard.recent_activity(app.home)
    assert activity[-1] == "11:00:00 notify: the latest"
    assert len(activity) == dashboard.ACTIVITY_LINES
    tail = ops.last_records(app.home, "sync", 10**6, window=dashboard.DASHBOARD_LOG_WINDOW)
    assert 0 < len(tail) < 5000 and all(ops.RECORD_RE.match(line) for line in tail)
