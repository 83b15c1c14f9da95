"""How a job is confined: its environment, its rlimits and the bwrap command line.

A run folder holds the working copy of the approved snapshot (``job/``), the
job's own ``home/`` and ``tmp/``, and ``bin/`` with the few tools the data
owner lets jobs use. With bubblewrap the job sees a read-only system, those
folders and nothing else; without it the job runs as the app's user with the
same environment and limits but no filesystem isolation.

The environment is built from an allow-list, never copied from the pass, so
tokens, passwords and the data owner's variables never reach a job.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import supervisor
from .config import Config
from .errors import SyftBgError

SANDBOX_NONE_WARNING = "sandbox none: jobs run without filesystem isolation; install bubblewrap"
# Every process of a run carries this variable, so leftovers of a run whose
# supervisor died can still be found.
RUN_MARKER = "SYFT_BG_RUN"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# Locale and time zone are the only variables taken from the pass.
PASSED_THROUGH = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
# Where the run's folders appear inside bwrap.
IN_BWRAP = {"job": "/sandbox/job", "home": "/sandbox/home", "bin": "/sandbox/bin", "tmp": "/tmp"}
SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# What of /etc a job needs: name resolution, TLS roots, users, time zone, the loader.
ETC_ENTRIES = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "pki",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
)
PROBE_TIMEOUT = 10.0


class SandboxUnavailable(SyftBgError):
    """execute.sandbox is bwrap but bubblewrap does not work here."""


@dataclass(frozen=True)
class Limits:
    timeout: int
    memory_mb: int
    cpu_seconds: int
    file_size_mb: int
    max_processes: int
    output_cap_kb: int

    @classmethod
    def from_config(cls, config: Config, timeout: int) -> Limits:
        return cls(
            timeout=timeout,
            memory_mb=config.get("execute.memory_mb"),
            cpu_seconds=config.get("execute.cpu_seconds"),
            file_size_mb=config.get("execute.file_size_mb"),
            max_processes=config.get("execute.max_processes"),
            output_cap_kb=config.get("execute.output_cap_kb"),
        )


@dataclass(frozen=True)
class Probe:
    """Whether bwrap runs here with the options a job needs."""

    ok: bool
    path: str | None
    detail: str
    disable_userns: bool = False


@dataclass(frozen=True)
class Choice:
    """The sandbox a pass uses for the jobs it starts."""

    mode: str  # "bwrap" or "none"
    probe: Probe | None
    warning: str | None


@dataclass(frozen=True)
class RunLayout:
    """The folders of one run under ``<app home>/runs/<run id>/``."""

    root: Path

    @property
    def job(self) -> Path:
        return self.root / "job"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def spec(self) -> Path:
        return self.root / supervisor.SPEC

    @property
    def status(self) -> Path:
        return self.root / supervisor.STATUS

    @property
    def lock(self) -> Path:
        return self.root / supervisor.LOCK

    @property
    def stdout(self) -> Path:
        return self.root / supervisor.STDOUT

    @property
    def stderr(self) -> Path:
        return self.root / supervisor.STDERR

    @property
    def supervisor_errors(self) -> Path:
        return self.root / supervisor.SUPERVISOR_ERRORS

    @property
    def outputs(self) -> Path:
        return self.job / "code" / "outputs"


# -- bwrap ---------------------------------------------------------------------


def find_bwrap() -> str | None:
    found = shutil.which("bwrap")
    return os.path.realpath(found) if found else None


def running_as_root() -> bool:
    return os.geteuid() == 0


def job_identity() -> tuple[int, int, str] | None:
    """(uid, gid, name) a job runs as inside bwrap when the app runs as root.

    The kernel never applies the process-count limit to root, and a job has
    no business being root, so inside bwrap it becomes ``nobody``.
    """
    if not running_as_root():
        return None
    import pwd

    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid, "nobody"
    except KeyError:
        return 65534, 65534, "nobody"


def _setpriv() -> str | None:
    found = shutil.which("setpriv", path=SYSTEM_PATH)
    return os.path.realpath(found) if found else None


def _supports(bwrap: str, option: str) -> bool:
    try:
        result = subprocess.run(
            [bwrap, "--help"], capture_output=True, text=True, timeout=PROBE_TIMEOUT
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return option in result.stdout + result.stderr


def probe_bwrap(network: bool) -> Probe:
    """Run ``true`` under bwrap with the namespaces and mounts a job gets."""
    path = find_bwrap()
    if path is None:
        return Probe(False, None, "bwrap is not installed (package: bubblewrap)")
    if running_as_root() and _setpriv() is None:
        return Probe(False, path, "setpriv (util-linux) is missing; it drops root inside bwrap")
    disable_userns = not running_as_root() and _supports(path, "--disable-userns")
    argv = bwrap_argv(
        path,
        None,
        network=network,
        tools={},
        ro_paths=[],
        probe=True,
        disable_userns=disable_userns,
    )
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL,
            env={"PATH": SYSTEM_PATH},
        )
    except subprocess.TimeoutExpired:
        return Probe(False, path, f"bwrap did not finish a test run in {PROBE_TIMEOUT:.0f} s")
    except OSError as exc:
        return Probe(False, path, f"bwrap cannot be started: {exc.strerror}")
    if result.returncode != 0:
        why = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        hint = ""
        if "uid map" in why or "namespace" in why.lower() or "Operation not permitted" in why:
            hint = " (user namespaces are restricted on this machine)"
        return Probe(
            False,
            path,
            f"bwrap does not work here: {why or f'exit status {result.returncode}'}{hint}",
        )
    return Probe(True, path, f"bwrap works ({path})", disable_userns=disable_userns)


def choose(config: Config, probe: Probe | None = None) -> Choice:
    """Which sandbox jobs get now; raises SandboxUnavailable when bwrap is required."""
    wanted = config.get("execute.sandbox")
    if wanted == "none":
        return Choice("none", None, f"{SANDBOX_NONE_WARNING} (execute.sandbox is none)")
    probe = probe or probe_bwrap(config.get("execute.network"))
    if probe.ok:
        return Choice("bwrap", probe, None)
    if wanted == "bwrap":
        raise SandboxUnavailable(
            f"execute.sandbox is bwrap but {probe.detail}; approved jobs wait until it "
            f"works (or set execute.sandbox: auto to run them without isolation)"
        )
    return Choice("none", probe, f"{SANDBOX_NONE_WARNING} ({probe.detail})")


def bwrap_argv(
    bwrap: str,
    layout: RunLayout | None,
    network: bool,
    tools: dict[str, str],
    ro_paths: list[str],
    probe: bool = False,
    disable_userns: bool = True,
) -> list[str]:
    """The bwrap command line up to and including ``--`` and the in-sandbox command."""
    argv = [bwrap, "--die-with-parent", "--new-session"]
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not network:
        argv.append("--unshare-net")
    identity = job_identity()
    if identity is None:
        argv += ["--unshare-user"]
        if disable_userns:
            argv.append("--disable-userns")
        argv += ["--cap-drop", "ALL"]
    else:
        # Root keeps only what setpriv needs to become nobody; it loses them on setuid.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    argv += ["--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for name in SYSTEM_DIRS:
        path = f"/{name}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    argv += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_ENTRIES:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "0755", "--dir", "/sandbox"]
    if layout is not None:
        argv += ["--bind", str(layout.job), IN_BWRAP["job"]]
        argv += ["--bind", str(layout.home), IN_BWRAP["home"]]
        argv += ["--bind", str(layout.tmp), IN_BWRAP["tmp"]]
        argv += ["--perms", "0755", "--dir", IN_BWRAP["bin"]]
        for name, real in sorted(tools.items()):
            argv += ["--ro-bind", real, f"{IN_BWRAP['bin']}/{name}"]
        for path in ro_paths:
            argv += ["--ro-bind-try", path, path]
        argv += ["--chdir", IN_BWRAP["job"]]
    argv.append("--")
    if identity is not None:
        uid, gid, _ = identity
        setpriv = _setpriv() or "/usr/bin/setpriv"
        argv += [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        argv += ["--inh-caps=-all", "--"]
    argv += ["true"] if probe else ["bash", "run.sh"]
    return argv


# -- the job's environment and limits -----------------------------------------------


def find_tools(names: list[str]) -> dict[str, str]:
    """name -> real path of each tool found on the app's PATH."""
    tools = {}
    for name in names:
        found = shutil.which(name)
        if found:
            tools[name] = os.path.realpath(found)
    return tools


def job_environment(
    run_id: str,
    home: str,
    tmp: str,
    bin_dir: str,
    do_email: str,
    user: str,
    source: dict[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of a job: an allow-list, nothing inherited wholesale."""
    source = os.environ if source is None else source
    env = {
        "PATH": f"{bin_dir}:{SYSTEM_PATH}",
        "HOME": home,
        "TMPDIR": tmp,
        "USER": user,
        "LOGNAME": user,
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        # What syft-job's own runner tells a job about where it runs.
        "SYFT_IS_IN_JOB": "true",
        "SYFTBOX_EMAIL": do_email,
        RUN_MARKER: run_id,
    }
    for name in PASSED_THROUGH:
        value = source.get(name)
        if value and len(value) < 200 and "\n" not in value:
            env[name] = value
    return env


def user_name() -> str:
    identity = job_identity()
    if identity is not None:
        return identity[2]
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "job"


def build_spec(
    layout: RunLayout,
    choice: Choice,
    config: Config,
    limits: Limits,
    run_id: str,
) -> dict[str, Any]:
    """What the supervisor executes: command, folder, environment, limits."""
    tools = find_tools(config.get("execute.tools"))
    ro_paths = [os.path.expanduser(p) for p in config.get("execute.ro_paths")]
    network = config.get("execute.network")
    if choice.mode == "bwrap":
        assert choice.probe is not None and choice.probe.path is not None
        argv = bwrap_argv(
            choice.probe.path,
            layout,
            network=network,
            tools=tools,
            ro_paths=ro_paths,
            disable_userns=choice.probe.disable_userns,
        )
        env = job_environment(
            run_id,
            IN_BWRAP["home"],
            IN_BWRAP["tmp"],
            IN_BWRAP["bin"],
            config.do_email,
            user_name(),
        )
        cwd = str(layout.root)
        identity = job_identity()
        job_uid = identity[0] if identity else os.getuid()
    else:
        for name, real in tools.items():
            link = layout.bin / name
            if not link.exists():
                link.symlink_to(real)
        env = job_environment(
            run_id,
            str(layout.home),
            str(layout.tmp),
            str(layout.bin),
            config.do_email,
            user_name(),
        )
        bash = shutil.which("bash", path=SYSTEM_PATH) or "/bin/bash"
        argv = [bash, "run.sh"]
        cwd = str(layout.job)
        job_uid = os.getuid()
    return {
        "run_id": run_id,
        "sandbox": choice.mode,
        "argv": argv,
        "cwd": cwd,
        "env": env,
        "timeout": limits.timeout,
        "memory_bytes": limits.memory_mb * 1024 * 1024,
        "cpu_seconds": limits.cpu_seconds,
        "file_size_bytes": limits.file_size_mb * 1024 * 1024,
        "max_processes": limits.max_processes,
        # The kernel ignores RLIMIT_NPROC for root; the supervisor's count is then the bound.
        "process_rlimit_applies": job_uid != 0,
        "job_uid": job_uid,
        "output_cap_bytes": limits.output_cap_kb * 1024,
        # Without bwrap, network off is a network namespace entered before exec.
        "unshare_net": choice.mode == "none" and not network,
    }


def prepare_layout(layout: RunLayout, snapshot_files: Path, mode: str) -> None:
    """Copy the approved snapshot into a fresh working copy with home, tmp and bin."""
    layout.root.mkdir(parents=True, exist_ok=False)
    os.chmod(layout.root, 0o700)
    shutil.copytree(snapshot_files, layout.job, symlinks=True)
    for folder in (layout.home, layout.tmp, layout.bin, layout.outputs):
        folder.mkdir(parents=True, exist_ok=True)
    for dirpath, _dirnames, filenames in os.walk(layout.job):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    identity = job_identity()
    if identity is not None and mode == "bwrap":
        # Inside bwrap the job is nobody and needs to own its folders.
        uid, gid, _ = identity
        for top in (layout.job, layout.home, layout.tmp):
            for dirpath, _dirnames, filenames in os.walk(top):
                os.chown(dirpath, uid, gid)
                for name in filenames:
                    os.lchown(os.path.join(dirpath, name), uid, gid)


def status_lines(config: Config) -> list[str]:
    """What ``syft-bg status`` says about the sandbox (probes bwrap once)."""
    lines = []
    network = config.get("execute.network")
    try:
        choice = choose(config)
    except SandboxUnavailable as exc:
        return [f"WARNING {exc}"]
    if choice.mode == "bwrap":
        net = "network on" if network else "network off"
        who = " (jobs run as nobody)" if job_identity() else ""
        lines.append(f"sandbox: bwrap, {net}{who}")
    else:
        lines.append(f"WARNING {choice.warning}")
        if running_as_root():
            lines.append(
                "WARNING jobs run as root without bwrap; the process limit is enforced "
                "only by the supervisor"
            )
    missing = [t for t in config.get("execute.tools") if t not in find_tools([t])]
    if missing:
        lines.append(
            f"note: {', '.join(missing)} not found on PATH (execute.tools); syft-job "
            f"python jobs need uv"
        )
    return lines
