"""How a job is confined: its environment, its rlimits and the bwrap command line.

A run folder holds the working copy of the approved snapshot (``job/``), the
job's own ``home/`` and ``tmp/``, and ``bin/`` with the few tools the data
owner lets jobs use. With bubblewrap the job sees a read-only system, its
folder, a ``$HOME`` and a ``/tmp`` that are size-limited tmpfs mounts, and
nothing else, at fixed paths; bwrap's own arguments reach it through a file
descriptor, so neither ``/proc/1/cmdline`` nor the mounts name the data
owner's folders. Without a working bubblewrap no job starts, unless the data
owner wrote ``execute.sandbox: none``: then the job has the same environment
and limits but no filesystem isolation, and never runs as root (an app run
by root gives each run an unprivileged uid of its own).

The environment is built from an allow-list, never copied from the pass, so
tokens, passwords and the data owner's variables never reach a job.

Why one file of this size: everything that decides what a job can see and do
(the bwrap probe and command line, the environment, the rlimits, the network
mode, the uid of a job without bwrap, the run folder's layout) is read together
when the confinement is reviewed; split, a change to one could weaken another
unseen.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syft_bg_app.config.load import Config
from syft_bg_app.errors import SyftBgError
from syft_bg_app.execution import netfilter, supervisor

if TYPE_CHECKING:
    from syft_bg_app.execution.prepare import PreparedCache

# Jobs of an app run by root without bwrap get uids from here, one per running job,
# so that no job can read another's folders or processes. Far above any account.
JOB_UID_BASE = 1_879_000_000
JOB_UID_SLOTS = 100_000
INSTALL_BWRAP = "sudo apt-get install bubblewrap   (Fedora: sudo dnf install bubblewrap)"
# Every process of a run carries this variable, so leftovers of a run whose
# supervisor died can still be found.
RUN_MARKER = "SYFT_BG_RUN"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# Locale and time zone are the only variables taken from the pass.
PASSED_THROUGH = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
# Where the run's folders appear inside bwrap.
IN_BWRAP = {
    "job": "/sandbox/job",
    "home": "/sandbox/home",
    "bin": "/sandbox/bin",
    "tmp": "/tmp",
    "uv_cache": "/sandbox/uv-cache",
    # $SYFTBOX_FOLDER inside the job: only the datasets it declared are under it.
    "syftbox": "/sandbox/SyftBox",
}
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
# What bwrap mounts read-only from this machine (or makes itself): nothing can be made
# inside, so the folders above a read-only path there are left as they are.
READ_ONLY_SYSTEM = (
    "/usr",
    "/proc",
    "/dev",
    *(f"/{name}" for name in SYSTEM_DIRS),
    *(f"/etc/{name}" for name in ETC_ENTRIES),
)
PROBE_TIMEOUT = 10.0
INSTALL_SLIRP = "sudo apt-get install slirp4netns"
# What a job under execute.network: internet resolves names with: slirp4netns's DNS.
SLIRP_RESOLV_CONF = "nameserver 10.0.2.3\n"
RESOLV_CONF = "resolv.conf"
TUN_DEVICE = "/dev/net/tun"


class SandboxUnavailable(SyftBgError):
    """bubblewrap does not work here and execute.sandbox is not none: jobs wait."""

    def __init__(self, probe: Probe, wanted: str) -> None:
        self.probe = probe
        self.fix = fix_for(probe)
        super().__init__(
            f"execute.sandbox is {wanted} but {probe.detail}; approved jobs wait and never "
            f"run without isolation. Fix: {self.fix}; or, to run them without isolation, "
            f"write execute.sandbox: none in config.yaml"
        )


@dataclass(frozen=True)
class Limits:
    timeout: int
    memory_mb: int
    cpu_seconds: int
    file_size_mb: int
    max_processes: int
    output_cap_kb: int
    disk_mb: int

    @classmethod
    def from_config(cls, config: Config, timeout: int) -> Limits:
        return cls(
            timeout=timeout,
            memory_mb=config.get("execute.memory_mb"),
            cpu_seconds=config.get("execute.cpu_seconds"),
            file_size_mb=config.get("execute.file_size_mb"),
            max_processes=config.get("execute.max_processes"),
            output_cap_kb=config.get("execute.output_cap_kb"),
            disk_mb=config.get("execute.disk_mb"),
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

    @property
    def datasets(self) -> Path:
        """Copies of the datasets the job declared; removed when the run ends."""
        return self.root / "datasets"

    @property
    def reserve(self) -> Path:
        """Space set aside for the supervisor's last writes, should the disk fill up."""
        return self.root / supervisor.RESERVE


# -- bwrap ---------------------------------------------------------------------


def find_bwrap() -> str | None:
    found = shutil.which("bwrap")
    return os.path.realpath(found) if found else None


def running_as_root() -> bool:
    return os.geteuid() == 0


def job_identity() -> tuple[int, int, str] | None:
    """(uid, gid, name) a job runs as inside bwrap when the app runs as root.

    The kernel never applies the process-count limit to root, and a job has
    no business being root, so inside bwrap it becomes ``nobody``. (Without
    bwrap each run gets a uid of its own instead: ``free_job_uid``.)
    """
    if not running_as_root():
        return None
    import pwd

    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid, "nobody"
    except KeyError:
        return 65534, 65534, "nobody"


def free_job_uid(taken: set[int]) -> int:
    """An unprivileged uid (and gid) no running job uses, for a job run without bwrap
    by an app run as root. It is no account: it owns only that run's folders."""
    for slot in range(JOB_UID_SLOTS):
        uid = JOB_UID_BASE + slot
        if uid not in taken:
            return uid
    raise SyftBgError("no free uid for a job (too many jobs running)")


def fix_for(probe: Probe) -> str:
    """What the data owner does to make bwrap work, in one line."""
    if probe.path is None:
        return INSTALL_BWRAP
    if "setpriv" in probe.detail:
        return "sudo apt-get install util-linux   (it provides setpriv)"
    if "Unknown option" in probe.detail or "unrecognized option" in probe.detail:
        return "install bubblewrap 0.5 or newer (this one lacks options syft-bg needs)"
    return (
        "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; "
        "on Ubuntu 24.04 an AppArmor profile for bwrap), or install a setuid bwrap"
    )


def none_warning() -> str:
    """What execute.sandbox: none means on this machine, for status, setup-status and emails."""
    if running_as_root():
        return (
            "execute.sandbox is none: jobs run without filesystem isolation (each as an "
            "unprivileged uid of its own, never as root, that cannot read the app home)"
        )
    user = _own_name()
    return (
        f"execute.sandbox is none: jobs run without isolation as {user} and can read "
        f"everything {user} can (the app home with its tokens, your files)"
    )


def _own_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


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


def unshares_network(network: bool | str) -> bool:
    """Whether a job gets a network namespace of its own (every mode but host).

    ``True`` is the value of the old boolean key, the host's network.
    """
    return network not in (True, "host")


def find_slirp4netns() -> str | None:
    found = shutil.which("slirp4netns", path=f"{SYSTEM_PATH}:/usr/sbin:/sbin")
    return os.path.realpath(found) if found else None


@dataclass(frozen=True)
class Network:
    """The network jobs get now: ``mode`` (off, internet, host), and why it is not
    what the data owner asked for (``note``), if it is not."""

    mode: str
    slirp4netns: str | None
    note: str | None
    # What the data owner runs to get what they asked for, where the note says it is not.
    fix: str | None = None


def job_network(config: Config, sandbox_mode: str) -> Network:
    """What execute.network gives jobs here: internet needs bwrap and slirp4netns,
    and without them jobs get network off, never the host's network. Under
    execute.prepare: uv the app fetched their packages beforehand: network off."""
    wanted = config.get("execute.network")
    if config.get("execute.prepare") == "uv":
        return Network("off", None, None)
    if wanted != "internet":
        return Network(wanted, None, None)
    if sandbox_mode != "bwrap":
        return Network(
            "off",
            None,
            "execute.network is internet, which needs bwrap: jobs run with network off "
            "(python jobs cannot install packages); write execute.network: host for the "
            "host's network",
        )
    slirp = find_slirp4netns()
    if slirp is None:
        return Network(
            "off",
            None,
            f"execute.network is internet but slirp4netns is not installed: jobs run with "
            f"network off (python jobs cannot install packages). Fix: {INSTALL_SLIRP}",
        )
    if not running_as_root() and not os.access(TUN_DEVICE, os.R_OK | os.W_OK):
        # slirp4netns opens it as the app's user; some machines keep it for root.
        return Network(
            "off",
            None,
            f"execute.network is internet but {TUN_DEVICE} cannot be opened by this user "
            f"(slirp4netns needs it): jobs run with network off. Fix: sudo chmod 0666 "
            f"{TUN_DEVICE} (its usual mode)",
        )
    if netfilter.filtering_possible() and netfilter.find_nft() is None:
        # Without its rules slirp4netns would reach this machine's other addresses.
        return Network(
            "off",
            None,
            f"execute.network is internet but nft (nftables) is not installed, so jobs "
            f"could reach this machine's addresses and private networks: they run with "
            f"network off. Fix: {netfilter.INSTALL_NFT}",
            netfilter.INSTALL_NFT,
        )
    return Network("internet", slirp, None)


def probe_bwrap(network: bool | str) -> Probe:
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
    passed: list[int] = []
    try:
        argv, passed = supervisor.pass_bwrap_args(argv)
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL,
            env={"PATH": SYSTEM_PATH},
            pass_fds=passed,
        )
    except subprocess.TimeoutExpired:
        return Probe(False, path, f"bwrap did not finish a test run in {PROBE_TIMEOUT:.0f} s")
    except OSError as exc:
        return Probe(False, path, f"bwrap cannot be started: {exc.strerror}")
    finally:
        for fd in passed:
            os.close(fd)
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
    """Which sandbox jobs get now; raises SandboxUnavailable when bwrap does not work.

    Only a data owner who wrote ``execute.sandbox: none`` gets jobs run without
    bwrap: ``auto`` never falls back to running them unisolated.
    """
    wanted = config.get("execute.sandbox")
    if wanted == "none":
        return Choice("none", None, none_warning())
    probe = probe or probe_bwrap(config.get("execute.network"))
    if probe.ok:
        return Choice("bwrap", probe, None)
    raise SandboxUnavailable(probe, wanted)


def bwrap_argv(
    bwrap: str,
    layout: RunLayout | None,
    network: bool | str,
    tools: dict[str, str],
    ro_paths: list[str],
    probe: bool = False,
    disable_userns: bool = True,
    scratch_bytes: int = 0,
    resolv_conf: str | None = None,
    cache_mounts: list[tuple[str, str, str]] | None = None,
    dataset_mounts: list[tuple[str, str]] | None = None,
    hidden: Sequence[str] = (),
) -> list[str]:
    """The bwrap command line up to and including ``--`` and the in-sandbox command.

    ``hidden``: folders a job never sees through ``ro_paths`` (the app home, the SyftBox
    folder, the run folders): one inside a read-only path is covered by an empty
    tmpfs, and a read-only path inside one is left out.

    The options between ``bwrap`` and ``--`` go to bwrap through ``--args``
    (``supervisor.pass_bwrap_args``). With ``scratch_bytes``, ``$HOME`` and
    ``/tmp`` are tmpfs mounts of that size: a job filling them fills only them.
    ``resolv_conf`` is a file shown to the job as its ``/etc/resolv.conf``.
    ``cache_mounts`` (bwrap option, source, place) show a prepared run uv's shared
    cache (``prepare.py``), inside a tmpfs where uv keeps its locks.
    """
    argv = [bwrap, "--die-with-parent", "--new-session"]
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if unshares_network(network):
        # Also under internet: slirp4netns gives this namespace its way out.
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
        # --disable-userns needs --unshare-user, which root cannot combine with
        # becoming nobody: a seccomp filter refuses new user namespaces instead.
        if supervisor.no_userns_filter() is not None:
            argv += ["--seccomp", supervisor.NO_USERNS_FILTER]
    argv += ["--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for name in SYSTEM_DIRS:
        path = f"/{name}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    argv += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_ENTRIES:
        if name == RESOLV_CONF and resolv_conf is not None:
            argv += ["--perms", "0644", "--ro-bind-data", supervisor.FILE_FD + resolv_conf]
            argv.append(f"/etc/{name}")
        else:
            argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "0755", "--dir", "/sandbox"]
    if probe:
        # The options a run's scratch needs, which old bwraps (before 0.5) lack.
        argv += ["--size", str(1 << 20), "--tmpfs", "/tmp", "--chmod", "1777", "/tmp"]
    if layout is not None:
        argv += ["--bind", str(layout.job), IN_BWRAP["job"]]
        for place in (IN_BWRAP["home"], IN_BWRAP["tmp"]):
            if scratch_bytes:
                argv += ["--size", str(scratch_bytes)]
            # Owned by root where bwrap runs as root: the job (nobody) needs to write.
            argv += ["--tmpfs", place, "--chmod", "1777", place]
        argv += ["--perms", "0755", "--dir", IN_BWRAP["bin"]]
        for name, real in sorted(tools.items()):
            place = f"{IN_BWRAP['bin']}/{name}"
            if real.startswith("/usr/"):
                argv += ["--symlink", real, place]
            else:
                # From the run's folder (run_tool_copy), never the tool's own folder (often
                # in the data owner's home), which a mount would show in the job's
                # /proc/self/mountinfo.
                argv += ["--ro-bind", run_tool_copy(layout.bin, name, real), place]
        made: set[str] = set()
        bound = list(READ_ONLY_SYSTEM)
        hidden_real = [os.path.realpath(folder) for folder in hidden]
        for path in ro_paths:
            real = os.path.realpath(path)
            if any(_within(real, folder) for folder in hidden_real):
                continue
            argv += walkable_parents(path, made, bound)
            argv += ["--ro-bind-try", path, path]
            bound.append(os.path.normpath(path))
            for folder in hidden_real:
                if _within(folder, real) and os.path.isdir(folder):
                    argv += ["--tmpfs", os.path.join(path, os.path.relpath(folder, real))]
        for source, place in dataset_mounts or ():
            target = f"{IN_BWRAP['syftbox']}/{place}"
            argv += walkable_parents(target, made)
            argv += ["--ro-bind", source, target]
        if cache_mounts is not None:
            place = IN_BWRAP["uv_cache"]
            if scratch_bytes:
                argv += ["--size", str(scratch_bytes)]
            argv += ["--tmpfs", place, "--chmod", "1777", place]
            for option, source, target in cache_mounts:
                argv += [option, source, target]
        argv += ["--chdir", IN_BWRAP["job"]]
    argv.append("--")
    if identity is not None:
        uid, gid, _ = identity
        setpriv = _setpriv() or "/usr/bin/setpriv"
        argv += [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        argv += ["--inh-caps=-all", "--"]
    argv += ["true"] if probe else ["bash", "run.sh"]
    return argv


def walkable_parents(target: str, made: set[str], bound: Sequence[str] = ()) -> list[str]:
    """bwrap options that make the folders above mount point ``target`` (those not in
    ``made`` yet) walkable by the job: folders bwrap makes for a mount follow the app's
    umask (077), and a job of its own uid could not reach the mount through them.
    Folders at or under ``bound`` (mounted read-only from this machine) are left as they
    are: nothing can be made there, and a path missing there is skipped by
    ``--ro-bind-try``, never a reason for the run to fail."""
    options = []
    parts = os.path.normpath(target).strip("/").split("/")
    for depth in range(1, len(parts)):
        folder = "/" + "/".join(parts[:depth])
        if folder not in made and not any(_within(folder, top) for top in bound):
            made.add(folder)
            options += ["--perms", "0755", "--dir", folder]
    return options


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def run_tool_copy(bin_dir: Path, name: str, real: str) -> str:
    """The tool ``real`` as ``bin_dir/name`` in the run's own folder: a hard link where
    the file system allows, else a copy. Mounted read-only from there, it names no
    folder of the data owner, and costs a job no memory (uv is tens of megabytes); it
    goes with the run's working copy once its results are published."""
    target = bin_dir / name
    if target.exists():
        return str(target)
    try:
        os.link(real, target)
    except OSError:
        partial = bin_dir / f".{name}.partial"
        shutil.copyfile(real, partial)
        os.chmod(partial, 0o755)
        os.replace(partial, target)
    return str(target)


# -- the job's environment and limits -----------------------------------------------


def find_tools(names: list[str]) -> dict[str, str]:
    """name -> real path of each tool found in the app's environment or on its PATH.

    The app's own environment comes first: it brings ``uv`` (a dependency), also
    when a pass is started without that environment on PATH (cron, SyftBox).
    """
    tools = {}
    search = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH") or SYSTEM_PATH])
    for name in names:
        found = shutil.which(name, path=search)
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
    package_index_url: str | None = None,
) -> dict[str, str]:
    """The whole environment of a job: an allow-list, nothing inherited wholesale.

    ``package_index_url`` (execute.package_index_url) is where uv and pip install from.
    """
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
        # uv's cache is in $HOME, a mount apart from the job folder: it copies from
        # there into the job's environment rather than warning that it cannot link.
        "UV_LINK_MODE": "copy",
        # What syft-job's own runner tells a job about where it runs.
        "SYFT_IS_IN_JOB": "true",
        "SYFTBOX_EMAIL": do_email,
        RUN_MARKER: run_id,
    }
    if package_index_url:
        env["UV_DEFAULT_INDEX"] = package_index_url
        env["PIP_INDEX_URL"] = package_index_url
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
    run_as: int | None = None,
    prepared: PreparedCache | None = None,
    dataset_mounts: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """What the supervisor executes: command, folder, environment, limits.

    ``run_as`` is the uid (and gid) a job without bwrap runs as when the app runs
    as root (``free_job_uid``); otherwise the job keeps the app's user.
    ``prepared`` (``prepare.PreparedCache``): the run uses uv's shared cache offline.
    ``dataset_mounts`` (source, place under ``$SYFTBOX_FOLDER``): the datasets the job
    declared, read-only; only bwrap can show them to the job alone.
    """
    tools = find_tools(config.get("execute.tools"))
    ro_paths = [os.path.expanduser(p) for p in config.get("execute.ro_paths")]
    net = job_network(config, choice.mode)
    disk_bytes = limits.disk_mb * 1024 * 1024
    if choice.mode == "bwrap":
        assert choice.probe is not None and choice.probe.path is not None
        resolv_conf = None
        if net.mode == "internet":
            resolv_conf = str(layout.root / RESOLV_CONF)
            Path(resolv_conf).write_text(SLIRP_RESOLV_CONF)
        if dataset_mounts:
            dataset_mounts = stage_datasets(layout, dataset_mounts)
        argv = bwrap_argv(
            choice.probe.path,
            layout,
            network=net.mode,
            tools=tools,
            ro_paths=ro_paths,
            disable_userns=choice.probe.disable_userns,
            scratch_bytes=disk_bytes,
            resolv_conf=resolv_conf,
            cache_mounts=prepared.mounts if prepared is not None else None,
            dataset_mounts=dataset_mounts,
            hidden=[
                *([str(config.path.parent)] if config.path is not None else []),
                str(config.syftbox_root),
                str(layout.root.parent),
            ],
        )
        env = job_environment(
            run_id,
            IN_BWRAP["home"],
            IN_BWRAP["tmp"],
            IN_BWRAP["bin"],
            config.do_email,
            user_name(),
            package_index_url=config.get("execute.package_index_url"),
        )
        if dataset_mounts:
            env["SYFTBOX_FOLDER"] = IN_BWRAP["syftbox"]
        cwd = str(layout.root)
        identity = job_identity()
        job_uid = identity[0] if identity else os.getuid()
        # $HOME and /tmp are sized tmpfs mounts; the job folder is on the disk.
        watched = [str(layout.job)]
        run_as = None
    else:
        if dataset_mounts:
            raise SyftBgError(
                "a job that reads datasets runs only in the bwrap sandbox "
                "(execute.sandbox is none, or bwrap is missing)"
            )
        if running_as_root() and run_as is None:
            raise SyftBgError("a job without bwrap never runs as root: no uid was given")
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
            "job" if run_as is not None else user_name(),
            package_index_url=config.get("execute.package_index_url"),
        )
        bash = shutil.which("bash", path=SYSTEM_PATH) or "/bin/bash"
        argv = [bash, "run.sh"]
        cwd = str(layout.job)
        job_uid = os.getuid() if run_as is None else run_as
        watched = [str(layout.job), str(layout.home), str(layout.tmp)]
    if prepared is not None:
        env.update(prepared.env)
    return {
        "run_id": run_id,
        "sandbox": choice.mode,
        "argv": argv,
        # bwrap's options go through a descriptor (--args), not its command line.
        "bwrap_args": choice.mode == "bwrap",
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
        # The uid and gid the job is switched to before it starts (none: keep the app's).
        "run_as": run_as,
        "output_cap_bytes": limits.output_cap_kb * 1024,
        # Without bwrap, network off is a network namespace entered before exec.
        "unshare_net": choice.mode == "none" and unshares_network(net.mode),
        # The network the job gets (off, internet, host); under internet the supervisor
        # attaches slirp4netns to the sandbox's network namespace before the job starts.
        "network": net.mode,
        "slirp4netns": net.slirp4netns,
        "network_note": net.note,
        # Root's slirp4netns runs with a group of its own, whose traffic to this machine
        # and private networks nftables refuses (netfilter.py).
        "network_filter": {
            "nft": netfilter.find_nft(),
            "group": netfilter.network_group(config.get("execute.network_allow")),
            "allow": config.get("execute.network_allow"),
        }
        if net.mode == "internet" and netfilter.filtering_possible()
        else None,
        # The folders on the disk the job can write to, and what they may hold together.
        "disk_watch": watched,
        "disk_bytes": disk_bytes,
        "disk_mb": limits.disk_mb,
        "scratch_in_tmpfs": choice.mode == "bwrap",
        # The tmpfs mounts (bwrap) whose count of files is measured with the disk.
        "scratch_places": [IN_BWRAP["home"], IN_BWRAP["tmp"]] if choice.mode == "bwrap" else [],
        # The job is stopped when the disk's free space falls below this.
        "min_free_bytes": config.get("execute.min_free_disk_mb") * 1024 * 1024,
    }


def prepare_layout(
    layout: RunLayout,
    snapshot_files: Path,
    mode: str,
    run_as: int | None = None,
    reserve_bytes: int = 0,
) -> None:
    """Copy the approved snapshot into a fresh working copy with home, tmp and bin.

    ``run_as``: the uid that owns the job's folders (a job without bwrap of an app
    run as root); the run folder then lets it reach them and nothing else.
    ``reserve_bytes`` are set aside for the supervisor's last writes.
    """
    layout.root.mkdir(parents=True, exist_ok=False)
    # Traversable (not listable) when the job runs as a uid of its own.
    os.chmod(layout.root, 0o711 if run_as is not None else 0o700)
    if reserve_bytes:
        _reserve(layout.reserve, reserve_bytes)
    _copy_files(snapshot_files, layout.job)
    for folder in (layout.home, layout.tmp, layout.bin, layout.outputs):
        folder.mkdir(parents=True, exist_ok=True)
    for dirpath, _dirnames, filenames in os.walk(layout.job):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    owner: tuple[int, int] | None = None
    identity = job_identity()
    if identity is not None and mode == "bwrap":
        # Inside bwrap the job is nobody and needs to own its folders.
        owner = identity[0], identity[1]
    elif run_as is not None:
        owner = run_as, run_as
    if owner is not None:
        uid, gid = owner
        for top in (layout.job, layout.home, layout.tmp):
            for dirpath, _dirnames, filenames in os.walk(top):
                os.chown(dirpath, uid, gid)
                for name in filenames:
                    os.lchown(os.path.join(dirpath, name), uid, gid)
            if run_as is not None:
                os.chmod(top, 0o700)  # no other job's uid gets in


def stage_datasets(
    layout: RunLayout, dataset_mounts: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Copies of the declared datasets in the run folder, readable by the job's user and
    nobody else: the kept copies are the data owner's alone (0600), and a job that runs
    as a user of its own could not read them through a mount."""
    identity = job_identity()
    staged = []
    for n, (source, place) in enumerate(dataset_mounts):
        copy = layout.datasets / str(n)
        _copy_files(Path(source), copy)
        for dirpath, _dirnames, filenames in os.walk(copy):
            os.chmod(dirpath, 0o500)
            for name in filenames:
                path = os.path.join(dirpath, name)
                os.chmod(path, 0o400)
                if identity is not None:
                    os.lchown(path, identity[0], identity[1])
            if identity is not None:
                os.chown(dirpath, identity[0], identity[1])
        staged.append((str(copy), place))
    return staged


def _copy_files(source: Path, target: Path) -> None:
    """Copy the snapshot's folders and files; the first error is raised as it is, so a
    full disk stays an OSError with its errno (``shutil.copytree`` makes it text)."""

    def fail(exc: OSError) -> None:
        raise exc

    for dirpath, _dirnames, filenames in os.walk(source, onerror=fail):
        folder = target / os.path.relpath(dirpath, source)
        folder.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            shutil.copy2(os.path.join(dirpath, name), folder / name, follow_symlinks=False)


def _reserve(path: Path, size: int) -> None:
    """A file holding ``size`` bytes of disk; a full disk raises (the job then waits)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            # A file system without fallocate: real zeros hold the space as well.
            block = bytes(min(size, 1 << 20))
            left = size
            while left > 0:
                left -= os.write(fd, block[: min(left, len(block))])
    finally:
        os.close(fd)


def status_lines(config: Config) -> list[str]:
    """What ``syft-bg status`` says about the sandbox (probes bwrap once)."""
    lines = []
    try:
        choice = choose(config)
    except SandboxUnavailable as exc:
        return [f"WARNING no job starts: {exc}"]
    scratch = f"$HOME and /tmp {config.get('execute.disk_mb')} MB each"
    net = job_network(config, choice.mode)
    if choice.mode == "bwrap":
        who = ", jobs run as nobody" if job_identity() else ""
        prepared = ", packages prepared by uv" if config.get("execute.prepare") == "uv" else ""
        lines.append(f"sandbox: bwrap, network {net.mode}{prepared}{who}, {scratch}")
    else:
        lines.append(f"WARNING {choice.warning}")
    if net.note:
        lines.append(f"WARNING {net.note}")
    elif net.mode == "internet" and not netfilter.filtering_possible():
        lines.append(f"WARNING {netfilter.unfiltered_warning()}")
    elif net.mode == "internet":
        lines.append(f"network: {netfilter.blocked_words(config.get('execute.network_allow'))}")
    missing = [t for t in config.get("execute.tools") if t not in find_tools([t])]
    if missing:
        lines.append(
            f"note: {', '.join(missing)} not found on PATH (execute.tools); syft-job "
            f"python jobs need uv"
        )
    return lines
