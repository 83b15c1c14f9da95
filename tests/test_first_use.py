"""What a new user meets first: the commands the app suggests work as pasted,
``init --link-bin`` puts ``syft-bg`` on PATH, and a mistyped SyftBox folder is
caught by ``init`` and by ``setup-status``.

Every command runs as a real process with its own HOME and PATH, the way a
user's shell starts it.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DO_EMAIL, PATIENCE, App, outbox, text_of

SCRIPT = Path(sys.prefix) / "bin" / "syft-bg"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


class User:
    """A shell user with their own HOME, and a PATH without the app's environment."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "user"
        self.home.mkdir()
        self.bin = self.home / ".local" / "bin"
        self.path = SYSTEM_PATH

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("SYFT_BG_HOME", "SYFTBOX_CLIENT_CONFIG_PATH")
        }
        env.update(HOME=str(self.home), PATH=self.path, **extra)
        return env

    def app(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        """The app's CLI as the user starts it (by the environment's script)."""
        return subprocess.run(
            [str(SCRIPT), *args],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            stdin=subprocess.DEVNULL,
            cwd=self.home,
        )

    def paste(self, line: str, **extra: str) -> subprocess.CompletedProcess:
        """A command line pasted into bash, in a folder unrelated to the app."""
        return subprocess.run(
            ["bash", "-c", line],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            stdin=subprocess.DEVNULL,
            cwd="/",
        )


@pytest.fixture
def user(tmp_path: Path) -> User:
    return User(tmp_path)


def _after(text: str, marker: str) -> str:
    """What follows ``marker`` in ``text``: the rest of its line, else the next line."""
    rest = text.split(marker, 1)[1]
    return next(line.strip() for line in rest.splitlines() if line.strip())


# -- suggested commands work where the user stands ---------------------------------------


def test_without_syft_bg_on_path_every_suggestion_names_the_app_by_its_full_path(user):
    # The default app home (~/.syft-bg of this user): no --home in what is suggested.
    result = user.app("run", "--once")
    assert result.returncode == 2
    suggested = _after(result.stderr, "Create one with:")
    assert suggested.startswith(f"{SCRIPT} init -e YOUR_EMAIL")
    assert "--home" not in result.stderr
    # Pasted from another folder, the suggestion runs this app (here: its help).
    pasted = user.paste(shlex.quote(str(SCRIPT)) + " init --help")
    assert pasted.returncode == 0 and "--link-bin" in pasted.stdout


def test_a_home_that_is_not_the_default_is_named_in_fix_lines_and_errors(user, tmp_path):
    other = tmp_path / "elsewhere home"
    root = tmp_path / "SyftBox"
    root.mkdir()
    made = user.app("--home", str(other), "init", "-e", DO_EMAIL, "-r", str(root))
    assert made.returncode == 0, made.stderr
    prefix = f"{SCRIPT} --home {shlex.quote(str(other))}"
    setup = user.app("--home", str(other), "setup-status").stdout
    fixes = [_after(line, "fix:") for line in setup.splitlines() if "fix:" in line]
    assert f"{prefix} install" in fixes
    unknown = user.app("--home", str(other), "jobs", "show", "nope")
    assert unknown.returncode != 0 and f"{prefix} jobs list" in unknown.stderr
    # The suggestion works pasted into a shell that knows nothing of that home.
    pasted = user.paste(f"{prefix} status")
    assert pasted.returncode == 0 and f"app home: {other}" in pasted.stdout
    # The same through SYFT_BG_HOME: an email is read far from that shell.
    via_env = user.app("setup-status", SYFT_BG_HOME=str(other)).stdout
    assert f"{prefix} install" in via_env


def test_emails_carry_the_full_command_and_the_home(app: App):
    app.request_peer("bob@uni.edu")
    app.submit("mean-age")
    assert app.run_pass().exit_code == 0
    body = "\n".join(text_of(m) for m in outbox(app) if m["To"] == DO_EMAIL)
    assert app.command("peers accept bob@uni.edu") in body
    assert app.command("jobs approve alice@uni.edu/mean-age") in body
    assert "\nsyft-bg jobs" not in body and " syft-bg peers" not in body


def test_a_different_syft_bg_on_path_is_not_taken_for_this_app(user, tmp_path):
    # The PyPI syft-bg 0.3 installs a command of the same name.
    foreign = tmp_path / "foreign-bin"
    foreign.mkdir()
    (foreign / "syft-bg").write_text("#!/bin/sh\necho 'syft-bg 0.3 daemons'\n")
    (foreign / "syft-bg").chmod(0o755)
    user.path = f"{foreign}:{SYSTEM_PATH}"
    result = user.app("run", "--once")
    assert _after(result.stderr, "Create one with:").startswith(f"{SCRIPT} init")
    # Our own script reached through a link on PATH is this app: plain syft-bg.
    linked = tmp_path / "linked-bin"
    linked.mkdir()
    (linked / "syft-bg").symlink_to(SCRIPT)
    user.path = f"{linked}:{foreign}:{SYSTEM_PATH}"
    result = user.app("run", "--once")
    assert _after(result.stderr, "Create one with:").startswith("syft-bg init -e YOUR_EMAIL")


# -- init --link-bin -----------------------------------------------------------------------


def test_link_bin_puts_a_launcher_on_path_and_suggestions_become_plain(user, tmp_path):
    user.path = f"{user.bin}:{SYSTEM_PATH}"
    root = tmp_path / "SyftBox"
    root.mkdir()
    result = user.app("init", "-e", DO_EMAIL, "-r", str(root), "--link-bin")
    assert result.returncode == 0, result.stderr
    launcher = user.bin / "syft-bg"
    assert f"wrote the launcher {launcher}" in result.stdout
    assert "syft-bg now runs this app from any folder" in result.stdout
    assert launcher.stat().st_mode & 0o777 == 0o755
    assert "next: ./run.sh   (or: syft-bg run --once)" in result.stdout
    # The user types syft-bg in any folder; fix lines say syft-bg too.
    pasted = user.paste("syft-bg setup-status")
    assert "SYFT-BG ENVIRONMENT CHECK" in pasted.stdout
    assert "fix: syft-bg install" in pasted.stdout
    # Arguments with spaces and quotes reach the app intact.
    job = user.paste("syft-bg jobs show 'a name; with spaces'")
    assert job.returncode == 2 and "a name; with spaces" in job.stderr
    # Again: the same launcher is kept, not rewritten.
    again = user.app("init", "--link-bin")
    assert again.returncode == 0 and f"kept the launcher {launcher}" in again.stdout


def test_link_bin_says_when_its_folder_is_not_on_path(user):
    result = user.app("init", "--link-bin")
    assert result.returncode == 0, result.stderr
    assert f"{user.bin} is not on PATH" in result.stdout
    assert f'export PATH="{user.bin}:$PATH"' in result.stdout
    # Until then the launcher runs by its path, from anywhere.
    assert user.paste(f"{user.bin / 'syft-bg'} --version").stdout.startswith("syft-bg ")


@pytest.mark.parametrize(
    "existing",
    ["foreign script", "symlink elsewhere", "launcher of another copy", "folder"],
)
def test_link_bin_never_replaces_a_syft_bg_it_did_not_write_for_this_app(user, tmp_path, existing):
    user.bin.mkdir(parents=True)
    target = user.bin / "syft-bg"
    if existing == "foreign script":
        target.write_text('#!/bin/sh\nexec /opt/syft-bg-0.3/bin/syft-bg "$@"\n')
    elif existing == "symlink elsewhere":
        other = tmp_path / "other-syft-bg"
        other.write_text("#!/bin/sh\n")
        target.symlink_to(other)
    elif existing == "launcher of another copy":
        target.write_text(
            "#!/bin/sh\n# syft-bg launcher written by 'syft-bg init --link-bin'; elsewhere\n"
            'exec /srv/other-copy/.venv/bin/syft-bg "$@"\n'
        )
    else:
        target.mkdir()
    before = (target.is_symlink(), os.path.realpath(target), _content(target))
    result = user.app("init", "--link-bin")
    assert result.returncode == 2 and str(target) in result.stderr
    reason = "another copy of the app" if existing == "launcher of another copy" else "left alone"
    assert reason in result.stderr
    assert (target.is_symlink(), os.path.realpath(target), _content(target)) == before


def test_init_with_link_bin_refused_writes_no_config_either(user, tmp_path):
    user.bin.mkdir(parents=True)
    (user.bin / "syft-bg").write_text("#!/bin/sh\necho mine\n")
    root = tmp_path / "SyftBox"
    root.mkdir()
    result = user.app("init", "-e", DO_EMAIL, "-r", str(root), "--link-bin")
    assert result.returncode == 2 and "left alone" in result.stderr
    assert not (user.home / ".syft-bg" / "config.yaml").exists()
    assert not (root / DO_EMAIL).exists()
    assert (user.bin / "syft-bg").read_text() == "#!/bin/sh\necho mine\n"


def test_a_link_to_this_apps_script_is_kept_as_it_is(user):
    user.bin.mkdir(parents=True)
    (user.bin / "syft-bg").symlink_to(SCRIPT)
    user.path = f"{user.bin}:{SYSTEM_PATH}"
    result = user.app("init", "--link-bin")
    assert result.returncode == 0, result.stderr
    assert f"kept the launcher {user.bin / 'syft-bg'}" in result.stdout
    assert os.readlink(user.bin / "syft-bg") == str(SCRIPT)


def _content(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def test_init_without_a_terminal_never_asks_and_says_how_to_get_syft_bg(user, tmp_path):
    root = tmp_path / "SyftBox"
    root.mkdir()
    result = user.app("init", "-e", DO_EMAIL, "-r", str(root))
    assert result.returncode == 0, result.stderr
    assert "[Y/n]" not in result.stdout
    assert f"run commands as {SCRIPT} ..., or put it there with: {SCRIPT} init --link-bin" in (
        result.stdout
    )
    assert not (user.bin / "syft-bg").exists()


def test_init_at_a_terminal_offers_the_launcher(user, tmp_path):
    root = tmp_path / "SyftBox"
    root.mkdir()
    pid, fd = pty.fork()
    if pid == 0:  # the child: a user at a terminal
        os.chdir(user.home)
        os.execve(str(SCRIPT), [str(SCRIPT), "init", "-e", DO_EMAIL, "-r", str(root)], user.env())
    output = b""
    try:
        output = _read_until(fd, b"[Y/n]")
        os.write(fd, b"y\n")
        output += _read_until(fd, b"next:")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, output
    assert f"put a syft-bg command in {user.bin}?".encode() in output
    assert (user.bin / "syft-bg").is_file()


def _read_until(fd: int, wanted: bytes) -> bytes:
    seen = b""
    while wanted not in seen:
        ready, _, _ = select.select([fd], [], [], PATIENCE)
        assert ready, f"no {wanted!r} in {seen!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    return seen


# -- a SyftBox folder that does not exist ------------------------------------------------------


@pytest.mark.parametrize("typo", ["~/SyftBxo", "~/Syftbox", "~/SyftBox-old", "~/nested/SyftBox"])
def test_init_refuses_a_syftbox_folder_that_does_not_exist_and_writes_nothing(user, typo):
    (user.home / "SyftBox").mkdir()
    wanted = user.home / typo.removeprefix("~/")
    result = user.app("init", "-e", DO_EMAIL, "-r", typo)
    assert result.returncode == 2
    assert f"-r/--syftbox-root: {wanted} does not exist (nothing was written)" in result.stderr
    assert f"{SCRIPT} init -e {DO_EMAIL} -r {wanted} --create" in result.stderr
    assert not wanted.exists()
    assert not (user.home / ".syft-bg" / "config.yaml").exists()


def test_init_without_r_needs_the_default_folder_to_exist(user):
    result = user.app("init", "-e", DO_EMAIL)
    assert result.returncode == 2
    assert f"the default SyftBox folder: {user.home / 'SyftBox'} does not exist" in result.stderr
    assert not (user.home / "SyftBox").exists()


def test_create_makes_the_folder_the_user_confirmed(user):
    wanted = user.home / "NewBox"
    result = user.app("init", "-e", DO_EMAIL, "-r", str(wanted), "--create")
    assert result.returncode == 0, result.stderr
    assert (wanted / DO_EMAIL / "app_data" / "job" / "peers" / "syft.pub.yaml").is_file()


@pytest.mark.parametrize("where", ["env", "default file", "legacy file"])
def test_init_offers_the_folder_the_syftbox_client_config_names(user, tmp_path, where):
    real = tmp_path / "My SyftBox"
    (real / "datasites").mkdir(parents=True)
    client = {"data_dir": str(real), "email": DO_EMAIL, "server_url": "https://syftbox.net"}
    extra = {}
    if where == "env":
        config = tmp_path / "elsewhere" / "client.json"
        extra["SYFTBOX_CLIENT_CONFIG_PATH"] = str(config)
    else:
        name = "config.json" if where == "default file" else "client_config.json"
        config = user.home / ".syftbox" / name
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps(client))
    typo = user.home / "SyftBxo"
    result = user.app("init", "-e", DO_EMAIL, "-r", str(typo), **extra)
    assert result.returncode == 2
    assert f"the SyftBox client's config {config} names {real}" in result.stderr
    offered = result.stderr.split("use it with:\n", 1)[1].splitlines()[0].strip()
    assert offered == f"{SCRIPT} init -e {DO_EMAIL} -r {shlex.quote(str(real))}"
    assert not typo.exists()
    # Pasted, the offer works; and without -r the client's folder is the default.
    assert user.paste(offered, **extra).returncode == 0
    config_yaml = (user.home / ".syft-bg" / "config.yaml").read_text()
    assert f"syftbox_root: {real}" in config_yaml or repr(str(real)) in config_yaml
    assert (real / "datasites" / DO_EMAIL / "app_data" / "job").is_dir()
    again = user.app("init", "-e", DO_EMAIL, "--force", **extra)
    assert again.returncode == 0 and f"datasite {real / 'datasites' / DO_EMAIL}" in again.stdout


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"data_dir": 7}', "{}"])
def test_a_client_config_that_names_no_folder_is_ignored(user, content):
    (user.home / ".syftbox").mkdir()
    (user.home / ".syftbox" / "config.json").write_text(content)
    result = user.app("init", "-e", DO_EMAIL, "-r", str(user.home / "SyftBxo"))
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert "client's config" not in result.stderr


def test_a_client_config_naming_a_missing_folder_is_not_offered(user, tmp_path):
    (user.home / ".syftbox").mkdir()
    gone = tmp_path / "gone"
    (user.home / ".syftbox" / "config.json").write_text(json.dumps({"data_dir": str(gone)}))
    result = user.app("init", "-e", DO_EMAIL, "-r", str(user.home / "SyftBxo"))
    assert result.returncode == 2 and "client's config" not in result.stderr


# -- setup-status: a datasite alone in its folder ------------------------------------------


def _syftbox_line(result: subprocess.CompletedProcess) -> tuple[str, list[str]]:
    lines = result.stdout.splitlines()
    index = next(i for i, line in enumerate(lines) if line[2:].startswith("SyftBox folder:"))
    fixes = [line.strip() for line in lines[index + 1 : index + 3] if "fix:" in line]
    return lines[index], fixes


@pytest.mark.parametrize("layout", ["flat", "datasites"])
def test_setup_status_warns_about_a_datasite_with_nothing_of_syftbox_beside_it(
    user, tmp_path, layout
):
    root = tmp_path / "SyftBxo"
    datasite_holder = root / "datasites" if layout == "datasites" else root
    (datasite_holder / DO_EMAIL).mkdir(parents=True)
    made = user.app("init", "-e", DO_EMAIL, "-r", str(root))
    assert made.returncode == 0, made.stderr
    line, fixes = _syftbox_line(user.app("setup-status"))
    assert line.startswith("⚠ SyftBox folder:") and "no other datasite" in line
    assert fixes and "set syftbox_root in" in fixes[0]
    # A peer's datasite beside it is what a folder a SyftBox client syncs holds.
    (datasite_holder / "bob@uni.example").mkdir()
    line, _ = _syftbox_line(user.app("setup-status"))
    assert line.startswith("✓ SyftBox folder:")


@pytest.mark.parametrize("trace", ["apps", ".data", "client config"])
def test_traces_of_a_syftbox_client_clear_the_warning(user, tmp_path, trace):
    root = tmp_path / "SyftBox"
    root.mkdir()
    assert user.app("init", "-e", DO_EMAIL, "-r", str(root)).returncode == 0
    assert _syftbox_line(user.app("setup-status"))[0].startswith("⚠")
    extra = {}
    if trace == "client config":
        config = tmp_path / "client.json"
        config.write_text(json.dumps({"data_dir": str(root), "email": DO_EMAIL}))
        extra["SYFTBOX_CLIENT_CONFIG_PATH"] = str(config)
    else:
        (root / trace).mkdir()
    line, _ = _syftbox_line(user.app("setup-status", **extra))
    assert line.startswith("✓ SyftBox folder:"), line


def test_the_warning_names_the_folder_the_client_config_names(user, tmp_path):
    real = tmp_path / "RealBox"
    (real / "datasites" / "carol@uni.example").mkdir(parents=True)
    typo = tmp_path / "SyftBxo"
    assert user.app("init", "-e", DO_EMAIL, "-r", str(typo), "--create").returncode == 0
    config = tmp_path / "client.json"
    config.write_text(json.dumps({"data_dir": str(real)}))
    line, _ = _syftbox_line(user.app("setup-status", SYFTBOX_CLIENT_CONFIG_PATH=str(config)))
    assert line.startswith("⚠") and f"the SyftBox client's config {config} names {real}" in line


def test_hints_printed_by_commands_name_the_app_as_it_runs(app: App):
    rules = app.cli("list-auto-approvals", check=True).stdout
    assert f"create one with: {app.command('auto-approve --from-job JOB')}" in rules
    app.cli("stop", "notify", check=True)
    dry = app.cli("install", "--dry-run", "--method", "systemd", check=True).stdout
    assert "(dry run: nothing was changed)" in dry
    status = app.cli("status", check=True).stdout
    assert app.command("start") in status


def test_install_without_config_names_the_init_to_run_first(bare_app: App):
    dry = bare_app.cli("install", "--dry-run", "--method", "systemd", check=True).stdout
    assert f"({bare_app.command('init -e YOUR_EMAIL')} first)" in dry
