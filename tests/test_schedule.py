"""install / uninstall: the systemd user units (checked by systemd-analyze), the
crontab line (a real crontab of a throwaway user), the fallback to cron, and
reading the schedule back for status."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from test_ops_fixtures import (  # noqa: F401 (fixtures)
    cron_user_fixture,
    crontab_of,
    set_crontab,
)

from syft_bg_app.schedule import install as schedule
from syft_bg_app.store.home import AppHome
from syft_bg_app.store.state import State

REPO = Path(__file__).resolve().parent.parent
OTHER_LINES = (
    "# my own jobs\n"
    "MAILTO=someone@example.org\n"
    "17 3 * * * /usr/bin/backup --all >/dev/null 2>&1\n"
    "*/5 * * * * echo '100%' # not ours: syft-bg-app:lookalike\n"
)


def _files_in_dry_run(text: str) -> dict[str, str]:
    """{path: exact content} of every 'would write PATH:' block of the dry-run output."""
    files = {}
    for match in re.finditer(
        r"^would write ([^\n]+):\n(.*?)\n\(end of ([^)\n]+)\)$", text, re.M | re.S
    ):
        path, body, name = match.groups()
        assert Path(path).name == name
        files[path] = body + "\n"
    return files


def _verify(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    folder = tmp_path / "verify"
    folder.mkdir(exist_ok=True)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    paths = []
    for path, text in files.items():
        target = folder / Path(path).name
        target.write_text(text)
        paths.append(str(target))
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    return subprocess.run(
        [analyze, "verify", "--user", *paths], capture_output=True, text=True, env=env
    )


# -- systemd --------------------------------------------------------------------------------


def test_dry_run_prints_both_units_exactly_and_systemd_accepts_them(app, tmp_path, monkeypatch):
    monkeypatch.delenv("SYFT_BG_SYSTEMCTL")  # a dry run prints the commands, never runs them
    result = app.cli("install", "--dry-run", "--method", "systemd", "--interval", "90", check=True)
    out = result.stdout
    files = _files_in_dry_run(out)
    user_dir = Path(os.environ["XDG_CONFIG_HOME"]) / "systemd" / "user"
    name = schedule.unit_name(app.home)
    assert set(files) == {str(user_dir / f"{name}.service"), str(user_dir / f"{name}.timer")}
    service = files[str(user_dir / f"{name}.service")]
    timer = files[str(user_dir / f"{name}.timer")]
    assert "Type=oneshot" in service
    assert f"ExecStart={REPO / 'run.sh'}" in service
    assert f"Environment=SYFT_BG_HOME={app.home.root}" in service
    assert "KillMode=process" in service and "PrivateTmp=no" in service
    assert "OnUnitActiveSec=90" in timer and "OnBootSec=90" in timer
    assert "Persistent=true" in timer and f"Unit={name}.service" in timer
    assert "WantedBy=timers.target" in timer
    assert "would run: systemctl --user daemon-reload" in out
    assert f"would run: systemctl --user enable --now {name}.timer" in out
    assert "would set schedule.interval: 90" in out
    # A dry run changes nothing: no files, config untouched.
    assert not user_dir.exists()
    assert app.config.get("schedule.interval") == 60
    verified = _verify(tmp_path, files)
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr


def test_units_for_odd_paths_are_quoted_so_systemd_accepts_them(tmp_path):
    folder = tmp_path / "my apps" / "syft bg%1"
    folder.mkdir(parents=True)
    run_sh = folder / "run.sh"
    run_sh.write_text("#!/bin/bash\nexit 0\n")
    run_sh.chmod(0o755)
    home = AppHome(tmp_path / "home $HOME %h")
    service = schedule.render_service(home, 60, folder)
    timer = schedule.render_timer(home, 60)
    # % is a specifier and $ a variable in ExecStart=; both must come through literally.
    assert 'ExecStart="' in service and "%%1/run.sh" in service
    assert f'Environment="SYFT_BG_HOME={tmp_path}/home $HOME %%h"' in service
    name = schedule.unit_name(home)
    verified = _verify(tmp_path, {f"{name}.service": service, f"{name}.timer": timer})
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr


def test_a_verify_failure_is_detected(tmp_path):
    """The checks above can fail: systemd-analyze reports what it would ignore."""
    home = AppHome(tmp_path / "home")
    service = schedule.render_service(home, 60, REPO).replace("KillMode=process", "KillMode=proc")
    name = schedule.unit_name(home)
    verified = _verify(
        tmp_path, {f"{name}.service": service, f"{name}.timer": schedule.render_timer(home, 60)}
    )
    assert "kill mode" in verified.stderr


def test_no_new_privileges_is_left_out_when_bwrap_is_setuid(tmp_path):
    home = AppHome(tmp_path / "home")
    with_nnp = schedule.render_service(home, 60, REPO, no_new_privileges=True)
    without = schedule.render_service(home, 60, REPO, no_new_privileges=False)
    assert "\nNoNewPrivileges=yes\n" in with_nnp
    assert "NoNewPrivileges=yes" not in without and "setuid" in without
    found = shutil.which("bwrap")
    setuid = bool(found and os.stat(found).st_mode & stat.S_ISUID)
    assert ("NoNewPrivileges=yes" in schedule.render_service(home, 60, REPO)) == (not setuid)


def test_the_default_home_keeps_the_unit_names_syft_bg_users_know(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert schedule.unit_name(AppHome(tmp_path / ".syft-bg")) == "syft-bg"
    other = schedule.unit_name(AppHome(tmp_path / "elsewhere"))
    assert other.startswith("syft-bg-") and other != "syft-bg"


def test_without_a_systemd_user_instance_install_falls_back_to_cron_and_says_so(app, monkeypatch):
    monkeypatch.delenv("SYFT_BG_SYSTEMCTL")  # the real systemctl
    if shutil.which("systemctl") is None:
        pytest.skip("systemctl is not installed")
    ok, _ = schedule.systemd_available()
    if ok:
        pytest.skip("a systemd user instance runs here; the fallback is not reachable")
    monkeypatch.setenv("SYFT_BG_CRONTAB", "crontab")  # only read (-l) by a dry run
    if shutil.which("crontab") is None:
        pytest.skip("crontab is not installed")
    out = app.cli("install", "--dry-run", check=True).stdout
    assert out.startswith("method: cron (no systemd user instance answers")
    assert "using cron instead" in out
    assert f"# syft-bg-app:{schedule.unit_name(app.home)}" in out


def test_with_no_scheduler_at_all_install_explains_what_to_do(app):
    result = app.cli("install")
    assert result.returncode == 1
    assert "cannot schedule passes here" in result.stderr
    assert "run.sh --every 60" in result.stderr


@pytest.mark.parametrize("interval", [None, "300"])
def test_a_dry_run_without_systemd_or_cron_shows_the_units_and_what_to_run_instead(app, interval):
    """Neither scheduler here (the fixture's default): a dry run still shows what a
    machine with a systemd user instance gets, says install cannot work here, and
    names the run.sh --every loop at the interval asked for."""
    args = ["install", "--dry-run"] + (["--interval", interval] if interval else [])
    result = app.cli(*args)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    first = out.splitlines()[0]
    assert first.startswith("method: systemd (neither is available here: ")
    assert first.count("is not installed") == 2  # systemctl, crontab (stand-ins here)
    name = schedule.unit_name(app.home)
    user_dir = Path(os.environ["XDG_CONFIG_HOME"]) / "systemd" / "user"
    files = _files_in_dry_run(out)
    assert set(files) == {str(user_dir / f"{name}.service"), str(user_dir / f"{name}.timer")}
    every = interval or "60"
    assert f"OnUnitActiveSec={every}" in files[str(user_dir / f"{name}.timer")]
    assert (
        f"note: install fails on this machine: install cron and run it again, or keep this "
        f"running instead: {REPO / 'run.sh'} --every {every}" in out
    )
    assert out.rstrip().endswith("(dry run: nothing was changed)")
    assert not user_dir.exists() and app.config.get("schedule.interval") == 60
    # Without --dry-run it fails, saying the same.
    failed = app.cli(*args[:1] + args[2:])
    assert failed.returncode == 1
    assert f"keeping this running: {REPO / 'run.sh'} --every {every}" in failed.stderr
    assert not user_dir.exists() and app.config.get("schedule.interval") == 60


def test_the_unit_names_are_the_ones_the_readme_gives(tmp_path, monkeypatch):
    """README: syft-bg.service for ~/.syft-bg, syft-bg-<hash>.service for any other app
    home, <hash> being the first 8 hex digits of the SHA-256 of the home's path."""
    readme = (REPO / "README.md").read_text()
    section = " ".join(readme.split("## Scheduling", 1)[1].split("\n## ", 1)[0].split())
    assert "/systemd/user/syft-bg.service`" in section and "`syft-bg-<hash>.service`" in section
    assert "first 8 hex digits of the SHA-256 of its path" in section
    monkeypatch.setenv("HOME", str(tmp_path))
    assert schedule.unit_name(AppHome(tmp_path / ".syft-bg")) == "syft-bg"
    other = tmp_path / "homes" / "lab"
    digest = hashlib.sha256(str(other).encode()).hexdigest()[:8]
    assert schedule.unit_name(AppHome(other)) == f"syft-bg-{digest}"
    service, timer = schedule.unit_paths(AppHome(other))
    assert (service.name, timer.name) == (f"syft-bg-{digest}.service", f"syft-bg-{digest}.timer")
    assert schedule.cron_line(AppHome(other), 60, REPO).endswith(f"# syft-bg-app:syft-bg-{digest}")


def test_install_and_uninstall_units_with_a_recording_systemctl(app, tmp_path, monkeypatch):
    """The user manager cannot run in this container, so a stand-in records the
    systemctl calls; the files are the real ones."""
    calls = tmp_path / "calls.txt"
    stand_in = tmp_path / "systemctl"
    stand_in.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 0\n')
    stand_in.chmod(0o755)
    monkeypatch.setenv("SYFT_BG_SYSTEMCTL", f"{stand_in} --user")
    name = schedule.unit_name(app.home)
    first = app.cli("install", "--interval", "120", check=True).stdout
    assert "method: systemd (systemd user instance is running)" in first
    service, timer = schedule.unit_paths(app.home)
    assert service.is_file() and "OnUnitActiveSec=120" in timer.read_text()
    assert calls.read_text().splitlines() == [
        "--user show-environment",
        "--user daemon-reload",
        f"--user enable --now {name}.timer",
    ]
    assert app.config.get("schedule.interval") == 120
    # What `systemctl enable` leaves on disk: the timer is wanted by timers.target.
    link = schedule.timer_enabled_link(app.home)
    link.parent.mkdir(parents=True)
    link.symlink_to(timer)
    calls.write_text("")
    again = app.cli("install", check=True).stdout
    assert "nothing changed" in again
    assert calls.read_text().splitlines() == ["--user show-environment"]
    dry = app.cli("uninstall", "--dry-run", check=True).stdout
    assert f"would remove {timer}" in dry and service.exists()
    gone = app.cli("uninstall", check=True).stdout
    assert f"removed {timer}" in gone and f"removed {service}" in gone
    assert not service.exists() and not timer.exists()
    assert f"--user disable --now {name}.timer" in calls.read_text()
    assert "nothing is installed" in app.cli("uninstall", check=True).stdout


def test_status_asks_systemd_when_the_timer_fires_next(app, tmp_path, monkeypatch):
    """systemctl show prints the next elapse on the monotonic clock; status turns it
    into a local time. A stand-in answers as systemctl would (no user manager here)."""
    due = time.monotonic() + 600
    stand_in = tmp_path / "systemctl"
    stand_in.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *show*NextElapseUSecMonotonic*) echo "{due:.6f}s" ;; esac\n'
        "exit 0\n"
    )
    stand_in.chmod(0o755)
    monkeypatch.setenv("SYFT_BG_SYSTEMCTL", f"{stand_in} --user")
    app.cli("install", "--method", "systemd", check=True)
    link = schedule.timer_enabled_link(app.home)
    link.parent.mkdir(parents=True)
    link.symlink_to(schedule.unit_paths(app.home)[1])
    status = app.cli("status", check=True).stdout
    name = schedule.unit_name(app.home)
    assert f"schedule: systemd user timer {name}.timer, every 60 s, on" in status
    line = [x for x in status.splitlines() if x.startswith("next scheduled pass:")][0]
    assert re.search(r"\(in (9|10) min\)$", line), line


OLD_SYFT_BG_UNIT = """[Unit]
Description=SyftBox background services (syft-bg)

[Service]
ExecStart=/home/you/.local/bin/syft-bg run
Restart=always

[Install]
WantedBy=default.target
"""


def test_a_resident_unit_of_the_same_name_is_stopped_and_replaced_never_removed(
    app, tmp_path, monkeypatch
):
    calls = tmp_path / "calls.txt"
    stand_in = tmp_path / "systemctl"
    stand_in.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 0\n')
    stand_in.chmod(0o755)
    monkeypatch.setenv("SYFT_BG_SYSTEMCTL", f"{stand_in} --user")
    service, _ = schedule.unit_paths(app.home)
    service.parent.mkdir(parents=True)
    service.write_text(OLD_SYFT_BG_UNIT)
    status = app.cli("status", check=True).stdout
    assert f"WARNING schedule: {service.name} was not written by this app" in status
    assert "nothing is installed" in app.cli("uninstall", check=True).stdout
    assert service.read_text() == OLD_SYFT_BG_UNIT
    dry = app.cli("install", "--method", "systemd", "--dry-run", check=True).stdout
    assert f"would run first: {stand_in} --user disable --now {service.name}" in dry
    assert service.read_text() == OLD_SYFT_BG_UNIT
    out = app.cli("install", "--method", "systemd", check=True).stdout
    assert f"stopped and disabled {service.name}" in out
    assert calls.read_text().splitlines()[0] == f"--user disable --now {service.name}"
    assert schedule.is_ours(service) and "Type=oneshot" in service.read_text()


# -- cron ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "fields", "effective"),
    [
        (10, "* * * * *", 60),
        (60, "* * * * *", 60),
        (61, "*/2 * * * *", 120),
        (300, "*/5 * * * *", 300),
        (3600, "0 */1 * * *", 3600),
        (7200, "0 */2 * * *", 7200),
        (86400, "0 0 * * *", 86400),
    ],
)
def test_cron_rounds_the_interval_up_to_what_cron_can_say(interval, fields, effective):
    assert schedule.cron_expression(interval) == (fields, effective)
    line = f"{fields} true # syft-bg-app:x"
    assert schedule.cron_line_interval(line) == effective


def test_next_cron_run_is_the_next_matching_minute():
    now = datetime(2026, 11, 20, 10, 7, 30).astimezone()
    assert schedule.next_cron_run("*/5 * * * * x", now) == now.replace(minute=10, second=0)
    assert schedule.next_cron_run("* * * * * x", now) == now.replace(minute=8, second=0)
    assert schedule.next_cron_run("# */5 * * * * x", now) == now.replace(minute=10, second=0)
    hourly = schedule.next_cron_run("0 */2 * * * x", now)
    assert (hourly.hour, hourly.minute) == (12, 0)


def test_cron_line_escapes_percent_and_quotes_paths(tmp_path):
    home = AppHome(tmp_path / "home 100%")
    line = schedule.cron_line(home, 60, REPO)
    assert "100\\%" in line and "'" in line
    assert line.endswith(f"# syft-bg-app:{schedule.unit_name(home)}")


def test_crontab_install_is_idempotent_and_leaves_other_lines_alone(app, cron_user):
    set_crontab(cron_user, OTHER_LINES)
    dry = app.cli("install", "--method", "cron", "--dry-run", check=True).stdout
    assert f"would put this line in the crontab of {cron_user}" in dry
    assert crontab_of(cron_user) == OTHER_LINES
    first = app.cli("install", "--method", "cron", check=True).stdout
    assert f"put the syft-bg line in the crontab of {cron_user}" in first
    after = crontab_of(cron_user)
    assert after.startswith(OTHER_LINES)
    ours = after[len(OTHER_LINES) :].splitlines()
    assert len(ours) == 1
    line = ours[0]
    assert line == schedule.cron_line(app.home, 60)
    assert line.startswith("* * * * * cd ") and f"SYFT_BG_HOME={app.home.root}" in line
    # The dry run printed that very line.
    assert line in dry.splitlines()
    second = app.cli("install", "--method", "cron", check=True).stdout
    assert "nothing changed" in second
    assert crontab_of(cron_user) == after
    # A new interval replaces our line in place.
    app.cli("install", "--method", "cron", "--interval", "300", check=True)
    changed = crontab_of(cron_user)
    assert changed.startswith(OTHER_LINES)
    assert changed[len(OTHER_LINES) :].startswith("*/5 * * * * ")
    assert changed.count("syft-bg-app:syft-bg") == 1
    # Uninstall removes exactly our line.
    dry_un = app.cli("uninstall", "--dry-run", check=True).stdout
    assert "would remove this line" in dry_un and crontab_of(cron_user) == changed
    app.cli("uninstall", check=True)
    assert crontab_of(cron_user) == OTHER_LINES


@pytest.mark.skipif(
    not (REPO / ".venv" / ".syft-bg-env").exists(),
    reason="run.sh's environment is made by ./run.sh --test",
)
def test_the_cron_line_really_runs_a_pass(app, cron_user):
    """What cron would run, run by sh as cron does: one pass for this app home."""
    app.cli("install", "--method", "cron", check=True)
    line = [ln for ln in crontab_of(cron_user).splitlines() if "syft-bg-app" in ln][0]
    command = line.split(" ", 5)[5].replace("\\%", "%")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(app.tmp), "SHELL": "/bin/sh"}
    subprocess.run(["/bin/sh", "-c", command], env=env, check=True, timeout=300)
    assert State.load(app.home.state_file).data["last_pass"]["ok"] is True
    assert "pass ok" in (app.home.logs_dir / "cron.out").read_text()


def test_uninstall_of_one_home_keeps_another_homes_line(app, cron_user, tmp_path):
    other = AppHome(tmp_path / "other-home")
    set_crontab(cron_user, schedule.cron_line(other, 60) + "\n")
    app.cli("install", "--method", "cron", check=True)
    assert crontab_of(cron_user).count("syft-bg-app:") == 2
    app.cli("uninstall", check=True)
    assert crontab_of(cron_user) == schedule.cron_line(other, 60) + "\n"


def test_removing_the_only_line_removes_the_crontab(app, cron_user):
    app.cli("install", "--method", "cron", check=True)
    app.cli("uninstall", check=True)
    result = subprocess.run(["crontab", "-u", cron_user, "-l"], capture_output=True, text=True)
    assert result.returncode == 1 and "no crontab" in result.stderr


def test_install_needs_a_config_but_a_dry_run_does_not(bare_app):
    failed = bare_app.cli("install")
    assert failed.returncode == 2 and bare_app.command("init") in failed.stderr
    dry = bare_app.cli("install", "--dry-run", "--method", "systemd", check=True).stdout
    assert "no config.yaml" in dry and "OnUnitActiveSec=60" in dry


def test_interval_below_the_minimum_is_a_usage_error(app):
    result = app.cli("install", "--dry-run", "--interval", "3")
    assert result.returncode == 2 and "at least 10" in result.stderr


def test_systemd_timespans_are_read():
    assert schedule.parse_timespan("1d 2h 3min 4.5s") == 86400 + 7200 + 180 + 4.5
    assert schedule.parse_timespan("250ms") == 0.25
    assert schedule.parse_timespan("soon") is None
