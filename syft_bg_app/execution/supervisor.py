"""The supervisor of one run: ``python -m syft_bg_app.execution.supervisor RUN_DIR``.

A pass starts the supervisors of the jobs it starts through one launcher
process (``launch``), which forks one per run, detached in a session of its
own, and exits; the pass returns at once. The supervisor starts the job in a
session of its own with the run's rlimits, reads its stdout and stderr keeping
head and tail, enforces the wall-clock timeout, and when the job ends (or must
end) kills every process the job left behind. It is a child subreaper, so
processes that double-fork or call setsid stay its descendants and are found.
Its state goes to ``status.json`` in the run folder, written atomically in
phases (launching, running, finished), which a later pass reads.

It holds ``supervisor.lock`` (flock) for its whole life; the pass takes that
lock before starting it and hands it over, so "lock free and not finished"
means the supervisor is gone (killed, or the machine restarted), whatever
happened to its pid.

One runs for every job, so it stays lean: the launcher starts without
site-packages (``python -I -S``) and imports nothing beyond the standard
library, ``clock``, ``atomic`` and ``netfilter``.

Why one file of this size: the supervisor is the program a run executes, with
its launcher, its /proc reading, its network set-up and its kill rounds. Each
module it imported would be one more file loaded into every run's process, one
more import that must stay free of the app's dependencies (``-S`` means no
site-packages), and one more place a change could make a run import something
heavy; keeping it whole makes that rule checkable by reading one import block.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time
from typing import Any

from syft_bg_app.clock import iso_from_seconds
from syft_bg_app.execution import netfilter
from syft_bg_app.store.atomic import atomic_write_bytes

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
READ_CHUNK = 65536
KILL_ROUNDS = 400
DRAIN_SECONDS = 2.0
# bwrap adds up to two processes of its own around the job, slirp4netns one more.
PROCESS_SLACK = 3
# ioctl on a namespace file: a descriptor of the user namespace that owns it.
NS_GET_USERNS = 0xB701
# How long bwrap may take to say its pid, and slirp4netns to bring the network up.
NETWORK_SETUP_SECONDS = 20.0
# What slirp4netns printed, kept in the run folder for the data owner.
NETWORK_LOG = "network-log.txt"
CPU_GRACE_SECONDS = 5
RUN_MARKER = "SYFT_BG_RUN"
# What programs print when an allocation fails (lower case).
MEMORY_SIGNS = (b"memoryerror", b"cannot allocate", b"out of memory", b"bad_alloc")

# The files of a run folder (``sandbox.RunLayout`` names them for the pass).
SPEC = "spec.json"
STATUS = "status.json"
LOCK = "supervisor.lock"
STDOUT = "stdout.txt"
STDERR = "stderr.txt"
SUPERVISOR_ERRORS = "supervisor-errors.txt"
# Space the pass sets aside in the run folder; freed for the supervisor's last writes.
RESERVE = "reserve"
# In a bwrap argument, a file whose contents bwrap copies in through a descriptor.
FILE_FD = "@file:"
# In a bwrap argument, a seccomp filter that refuses new user namespaces.
NO_USERNS_FILTER = "@seccomp:no-userns"
# Per architecture: audit arch, and the numbers of unshare, clone and clone3.
SYSCALLS = {
    "x86_64": (0xC000003E, 272, 56, 435),
    "aarch64": (0xC00000B7, 97, 220, 435),
}
CLONE_NEWUSER_FLAG = 0x10000000
# How often the disk the job writes to is measured.
DISK_WATCH_SECONDS = 0.5
# What one file (inode) counts as on the disk, whatever it holds: empty files take no
# block but fill the disk's table of files, or kernel memory in a tmpfs.
INODE_BYTES = 4096
# What programs print when a write fails for want of space (lower case).
DISK_SIGNS = (b"no space left on device", b"disk quota exceeded")

_libc: Any = None


def _lib() -> Any:
    # ctypes is loaded only by the supervisor, never by an idle pass.
    global _libc
    if _libc is None:
        import ctypes

        # The interpreter's own symbols include libc's; find_library would run
        # ldconfig, costing more than the rest of the supervisor's start.
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def _prctl(option: int, value: int) -> bool:
    """Linux prctl; False where it does not exist or fails (the run still works)."""
    try:
        return _lib().prctl(option, value, 0, 0, 0) == 0
    except (AttributeError, OSError):
        return False


# -- /proc ------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[int, str, int, int] | None:
    """(ppid, state, start time in clock ticks since boot, session id) of ``pid``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces and parentheses.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return int(fields[1]), fields[0].decode(), int(fields[19]), int(fields[3])
    except (IndexError, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    """The start time of ``pid``; with the pid it names one process, not a reused pid."""
    stat = proc_stat(pid)
    return stat[2] if stat else None


def is_running(pid: int, ticks: int | None) -> bool:
    """True when ``pid`` is the process that started at ``ticks`` and is not a zombie."""
    stat = proc_stat(pid)
    if stat is None or stat[1] in ("Z", "X"):
        return False
    return ticks is None or stat[2] == ticks


def proc_table() -> dict[int, tuple[int, str, int, int]]:
    table = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None:
                table[int(name)] = stat
    return table


def descendants(root: int, table: dict[int, tuple[int, str, int, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def marked_processes(run_id: str) -> list[int]:
    """Processes whose environment carries this run's marker (readable ones only)."""
    needle = f"{RUN_MARKER}={run_id}".encode()
    found = []
    for pid in proc_table():
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(pid)
    return found


def kill_run_leftovers(run_id: str, session: int | None, since_ticks: int | None) -> int:
    """Kill what remains of a run whose supervisor is gone; returns how many were hit."""
    hit = 0
    for _ in range(20):
        victims = set(marked_processes(run_id))
        if session:
            for pid, (_, state, ticks, sid) in proc_table().items():
                if (
                    sid == session
                    and state != "Z"
                    and (since_ticks is None or ticks >= since_ticks)
                ):
                    victims.add(pid)
        victims.discard(os.getpid())
        if not victims:
            break
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
                hit += 1
            except OSError:
                pass
        time.sleep(0.05)
    return hit


# -- bwrap's arguments and the job's disk ------------------------------------------


def no_userns_filter() -> bytes | None:
    """A seccomp program (classic BPF) that refuses unshare and clone with
    CLONE_NEWUSER, and clone3 (whose flags it cannot see; libc falls back to clone).

    bwrap run by root cannot combine its own --disable-userns with dropping to
    nobody, so this keeps such jobs from making user namespaces. None where the
    architecture is not known here.
    """
    import platform
    import struct

    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        return None
    arch, unshare, clone, clone3 = numbers
    load, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, enosys, eperm = 0x7FFF0000, 0x00050000 | errno.ENOSYS, 0x00050000 | errno.EPERM
    program = [
        (load, 0, 0, 4),  # the architecture
        (jeq, 1, 0, arch),
        (ret, 0, 0, enosys),  # another ABI (32-bit calls) is refused
        (load, 0, 0, 0),  # the system call number
        (jge, 6, 0, 0x40000000),  # x32 calls
        (jeq, 5, 0, clone3),
        (jeq, 1, 0, unshare),
        (jeq, 0, 2, clone),
        (load, 0, 0, 16),  # the low half of the first argument: the flags
        (jset, 2, 0, CLONE_NEWUSER_FLAG),
        (ret, 0, 0, allow),
        (ret, 0, 0, enosys),
        (ret, 0, 0, eperm),
    ]
    return b"".join(struct.pack("=HBBI", *op) for op in program)


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def pass_bwrap_args(argv: list[str]) -> tuple[list[str], list[int]]:
    """``bwrap OPTIONS... -- COMMAND`` as ``bwrap --args FD -- COMMAND``.

    The options (which name the run's folders) are read by bwrap from a memory
    file, so they never appear on the command line of the sandbox's pid 1.
    Options ``@file:PATH`` become descriptors of those files. Returns the new
    argv and the descriptors to hand to bwrap (the caller closes them).
    """
    split = argv.index("--", 1)
    options, command = argv[1:split], argv[split:]
    fds: list[int] = []
    try:
        for i, option in enumerate(options):
            if option.startswith(FILE_FD):
                fd = os.open(option[len(FILE_FD) :], os.O_RDONLY | os.O_CLOEXEC)
            elif option == NO_USERNS_FILTER:
                fd = _memfd("no-userns", no_userns_filter() or b"")
            else:
                continue
            fds.append(fd)
            options[i] = str(fd)
        data = b"".join(os.fsencode(option) + b"\0" for option in options)
        args_fd = _memfd("bwrap-args", data)
        fds.insert(0, args_fd)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return [argv[0], "--args", str(args_fd), *command], fds


def disk_used(folders: list[str], pids: list[int], limit: int) -> int:
    """Bytes of disk the files below ``folders`` take (each at least ``INODE_BYTES``),
    plus files the job deleted but still holds open; stops counting once past
    ``limit``. Never follows a link."""
    seen: set[tuple[int, int]] = set()
    total = 0

    def add(info: os.stat_result) -> None:
        nonlocal total
        key = (info.st_dev, info.st_ino)
        if key not in seen:
            seen.add(key)
            total += max(info.st_blocks * 512, INODE_BYTES)

    stack = list(folders)
    while stack and total <= limit:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    add(info)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    for pid in pids:
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").endswith(" (deleted)"):
                    continue
                info = os.stat(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if info.st_nlink == 0:
                add(info)
    return total


def free_bytes(path: str) -> int | None:
    """Free space of the disk of ``path``, its free files counted as ``INODE_BYTES``
    each: a disk out of inodes is as full as one out of blocks."""
    try:
        info = os.statvfs(path)
    except OSError:
        return None
    free = info.f_bavail * info.f_frsize
    # Filesystems without a fixed table of files report none.
    if info.f_files:
        free = min(free, info.f_favail * INODE_BYTES)
    return free


def scratch_files(pids: list[int], places: list[str]) -> int:
    """Files (inodes) in use in the job's tmpfs mounts ``places`` (its $HOME and /tmp
    under bwrap), seen through the root of a process in the sandbox; 0 when none is
    reachable. Their bytes are bounded by the tmpfs size, their number is not."""
    own = _mount_namespace("self")
    for pid in pids:
        if _mount_namespace(str(pid)) in (None, own):
            continue
        used = 0
        for place in places:
            try:
                info = os.statvfs(f"/proc/{pid}/root{place}")
            except OSError:
                break
            used = max(used, info.f_files - info.f_ffree)
        else:
            return used
    return 0


def _mount_namespace(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


# -- output capture ----------------------------------------------------------------


class Capture:
    """Keeps the first and the last ``cap / 2`` bytes of a stream, and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.head_cap = cap // 2
        self.tail_cap = cap - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.tail_cap:
                del self.tail[: len(self.tail) - self.tail_cap]

    def render(self, setting: str = "execute.output_cap_kb") -> bytes:
        tail = self.tail[-self.tail_cap :] if self.tail_cap else bytearray()
        if self.total == len(self.head) + len(tail):
            return bytes(self.head + tail)
        head = _trim_partial_end(bytes(self.head))
        tail = _trim_partial_start(bytes(tail))
        cut = self.total - len(head) - len(tail)
        marker = (
            f"\n[... syft-bg cut {cut} bytes of output here; the first and last "
            f"{self.head_cap // 1024} KiB are kept ({setting}) ...]\n"
        )
        return head + marker.encode() + tail


def _trim_partial_end(data: bytes) -> bytes:
    """Drop a UTF-8 sequence cut off at the end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue
        needed = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4
        if byte & 0x80 and back < needed:
            return data[:-back]
        return data
    return data


def _trim_partial_start(data: bytes) -> bytes:
    """Drop UTF-8 continuation bytes cut off at the start."""
    start = 0
    while start < min(3, len(data)) and data[start] & 0xC0 == 0x80:
        start += 1
    return data[start:]


# -- the supervisor ------------------------------------------------------------------


def _count_tasks(uid: int) -> int:
    """Tasks (threads) the user runs now: RLIMIT_NPROC counts them all."""
    count = 0
    for pid in proc_table():
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/status", "rb") as handle:
                for line in handle:
                    if line.startswith(b"Threads:"):
                        count += int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue
    return count


def _rlimits(spec: dict[str, Any]) -> list[tuple[int, int, int]]:
    wanted = [
        (resource.RLIMIT_AS, spec["memory_bytes"]),
        (resource.RLIMIT_CPU, spec["cpu_seconds"]),
        (resource.RLIMIT_FSIZE, spec["file_size_bytes"]),
        (resource.RLIMIT_CORE, 0),
    ]
    if spec["process_rlimit_applies"]:
        # The limit counts every task of the user, so it sits above what runs already.
        wanted.append(
            (resource.RLIMIT_NPROC, _count_tasks(spec["job_uid"]) + spec["max_processes"])
        )
    limits = []
    for which, value in wanted:
        # At the soft CPU limit the job gets SIGXCPU (which says why); the hard limit
        # (SIGKILL) follows a little later for jobs that ignore it.
        wanted_hard = value + CPU_GRACE_SECONDS if which == resource.RLIMIT_CPU else value
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY and os.geteuid() != 0:
            value, wanted_hard = min(value, hard), min(wanted_hard, hard)
        limits.append((which, value, wanted_hard))
    return limits


def _enter_network_namespace() -> None:
    """Network off without bwrap: a fresh network namespace with no interfaces up."""
    libc = _lib()
    if os.geteuid() == 0:
        if libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(_errno(), "unshare(CLONE_NEWNET) failed")
        return
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        raise OSError(_errno(), "unshare(CLONE_NEWUSER|CLONE_NEWNET) failed")
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{uid} {uid} 1"),
        ("gid_map", f"{gid} {gid} 1"),
    ):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)


class Supervisor:
    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        with open(os.path.join(run_dir, SPEC), "rb") as handle:
            self.spec: dict[str, Any] = json.loads(handle.read())
        self.status: dict[str, Any] = {
            "phase": "launching",
            "supervisor_pid": os.getpid(),
            "supervisor_start": start_ticks(os.getpid()),
            "started_at": iso_from_seconds(time.time()),
        }
        self.stop_signal: int | None = None
        self.job_pid: int | None = None
        self.job_status: int | None = None
        self.subreaper = False
        self.disk_stop = False
        # Held open while the job runs: slirp4netns exits when it closes.
        self.network_exit_fd: int | None = None

    def save(self) -> None:
        text = json.dumps(self.status, indent=1, sort_keys=True) + "\n"
        atomic_write_bytes(os.path.join(self.run_dir, STATUS), text.encode(), mode=0o600)

    # -- children -------------------------------------------------------------------
    def reap(self) -> None:
        """Collect every exited child (orphans are re-parented to us)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            if pid == self.job_pid and self.job_status is None:
                self.job_status = status

    def live_descendants(self) -> list[int]:
        table = proc_table()
        return [p for p in descendants(os.getpid(), table) if table[p][1] not in ("Z", "X")]

    def kill_all(self) -> bool:
        """SIGKILL the job and everything it started, until nothing is left."""
        for _ in range(KILL_ROUNDS):
            if self.job_pid:
                try:
                    os.killpg(self.job_pid, signal.SIGKILL)
                except OSError:
                    pass
            alive = self.live_descendants()
            if not self.subreaper:
                alive += marked_processes(self.spec["run_id"])
            if not alive:
                self.reap()
                return True
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)
            self.reap()
        return False

    # -- the run ----------------------------------------------------------------------
    def run(self) -> None:
        spec = self.spec
        self.subreaper = _prctl(PR_SET_CHILD_SUBREAPER, 1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self.save()
        limits = _rlimits(spec)
        started = time.monotonic()
        run_as = spec.get("run_as")
        passed: list[int] = []
        # Under execute.network: internet bwrap says its pid on one pipe and waits on
        # another until slirp4netns has given the sandbox its network.
        holds: list[int] = []
        try:
            argv = spec["argv"]
            if spec.get("slirp4netns"):
                info_r, info_w = os.pipe()
                block_r, block_w = os.pipe()
                holds = [info_r, block_w]
                passed += [info_w, block_r]
                argv = [argv[0], "--info-fd", str(info_w), "--block-fd", str(block_r), *argv[1:]]
            if spec.get("bwrap_args"):
                argv, more = pass_bwrap_args(argv)
                passed += more
            process = subprocess.Popen(
                argv,
                cwd=spec["cwd"],
                env=spec["env"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
                pass_fds=passed,
                preexec_fn=lambda: _child_setup(limits, spec["unshare_net"], run_as),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            # The reason reaches the DS: the error's words, not the data owner's file names.
            words = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            program = os.path.basename(str(spec["argv"][0]))
            reason = f"the job could not be started: {program}: {words}"
            if spec["unshare_net"] and isinstance(exc, subprocess.SubprocessError):
                reason = (
                    "the job did not run: execute.network is false, and without bwrap the "
                    "network could not be turned off here (no user namespaces)"
                )
            for fd in holds:
                os.close(fd)
            self.finish(None, False, reason, started, b"", b"")
            return
        finally:
            for fd in passed:
                os.close(fd)
        self.job_pid = process.pid
        network_words = b""
        if holds:
            info_r, block_w = holds
            problem = self.attach_network(info_r)
            os.close(info_r)
            if problem:
                # Never the host's network: the job runs in its own namespace, cut off.
                self.status["network"] = "off"
                self.status["network_problem"] = problem
                network_words = (
                    f"syft-bg: this job has no network: {problem}; it runs with network off\n"
                ).encode()
            # Closing the pipe lets bwrap go on and start the job.
            os.close(block_w)
        elif spec.get("network_note"):
            network_words = f"syft-bg: {spec['network_note']}\n".encode()
            # The pass logs it when it collects the result.
            self.status["network_problem"] = spec["network_note"]
        self.status.update(
            phase="running",
            job_pid=process.pid,
            job_start=start_ticks(process.pid),
        )
        self.save()
        out, err = Capture(spec["output_cap_bytes"]), Capture(spec["output_cap_bytes"])
        err.add(network_words)
        streams = {process.stdout.fileno(): out, process.stderr.fileno(): err}
        selector = selectors.DefaultSelector()
        for fd in streams:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        deadline = started + spec["timeout"]
        watch_every = 1.0 if spec["process_rlimit_applies"] else 0.2
        next_watch = started + watch_every
        next_disk_watch = started + DISK_WATCH_SECONDS
        stopped_by = None
        while True:
            self.reap()
            if self.job_status is not None:
                break
            now = time.monotonic()
            if now >= deadline:
                stopped_by = f"timed out after {spec['timeout']} s"
                break
            if self.stop_signal is not None:
                name = signal.Signals(self.stop_signal).name
                stopped_by = f"stopped: its supervisor received {name} (machine shutting down?)"
                # A cluster backend tells its own stops (scancel, preemption) by this.
                self.status["stop_signal"] = name
                break
            if now >= next_watch:
                next_watch = now + watch_every
                count = len(self.live_descendants())
                if count > spec["max_processes"] + PROCESS_SLACK:
                    stopped_by = (
                        f"stopped: it ran {count} processes, more than execute.max_processes "
                        f"({spec['max_processes']})"
                    )
                    break
            if now >= next_disk_watch and spec.get("disk_watch"):
                stopped_by = self.check_disk()
                # Measuring a big tree takes time: never more than a tenth of the run's.
                next_disk_watch = time.monotonic() + max(
                    DISK_WATCH_SECONDS, 10 * (time.monotonic() - now)
                )
                if stopped_by:
                    break
            for key, _ in selector.select(timeout=min(0.05, max(deadline - now, 0.001))):
                self._read(key.fd, streams, selector)
        # The job's main process is done (or must stop): nothing it started may outlive it.
        cleaned = self.kill_all()
        if stopped_by is None and spec.get("disk_watch"):
            # A burst between two measurements still counts, also when the job ended.
            stopped_by = self.check_disk()
        if stopped_by and self.disk_stop and cleaned:
            stopped_by += self.shed_job_files()
        drain_until = time.monotonic() + DRAIN_SECONDS
        while selector.get_map() and time.monotonic() < drain_until:
            for key, _ in selector.select(timeout=0.1):
                self._read(key.fd, streams, selector)
        selector.close()
        if self.job_status is None:
            try:
                _, self.job_status = os.waitpid(process.pid, 0)
            except ChildProcessError:
                pass
        return_code = None
        if self.job_status is not None and stopped_by is None:
            return_code = os.waitstatus_to_exitcode(self.job_status)
            if return_code < 0:
                return_code = 128 - return_code
        reason = stopped_by or describe_exit(return_code, spec, err)
        if not cleaned:
            reason = (reason or "") + "; some of its processes could not be killed"
        self.finish(
            return_code, stopped_by is not None, reason, started, out.render(), err.render()
        )

    def attach_network(self, info_fd: int) -> str | None:
        """Give the sandbox's network namespace a way out through slirp4netns, which
        cannot reach the host's loopback; None when the network is up, else why not."""
        # bwrap says its pid first: it dies of SIGPIPE if nobody reads it.
        child = _read_child_pid(info_fd, time.monotonic() + NETWORK_SETUP_SECONDS)
        if child is None:
            return "bwrap did not say which process is the sandbox"
        net_filter = self.spec.get("network_filter")
        group = None
        if net_filter:
            problem = netfilter.install(net_filter["nft"], net_filter["allow"])
            if problem:
                return f"this machine's addresses could not be blocked: {problem}"
            group = net_filter["group"]
        # slirp4netns brings the loopback up too: it waits until bwrap has set it up,
        # or bwrap fails to add 127.0.0.1 to it.
        if not _wait_loopback(child, time.monotonic() + NETWORK_SETUP_SECONDS):
            return "the sandbox's loopback did not come up"
        fds: list[int] = []
        try:
            net_fd = os.open(f"/proc/{child}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            fds.append(net_fd)
            # bwrap nests user namespaces: slirp4netns joins the one that owns the network
            # namespace, unless that is its own (root's bwrap makes none).
            userns_fd = fcntl.ioctl(net_fd, NS_GET_USERNS)
            fds.append(userns_fd)
            own = os.stat("/proc/self/ns/user").st_ino == os.fstat(userns_fd).st_ino
            ready_r, ready_w = os.pipe()
            exit_r, self.network_exit_fd = os.pipe()
            fds += [ready_r, ready_w, exit_r]
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            return f"the sandbox's network namespace could not be opened ({exc.strerror})"
        argv = [
            self.spec["slirp4netns"],
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--enable-sandbox",
            f"--ready-fd={ready_w}",
            # It ends when the supervisor does, even one killed outright.
            f"--exit-fd={exit_r}",
        ]
        if not own:
            argv.append(f"--userns-path=/proc/self/fd/{userns_fd}")
        argv += ["--netns-type=path", f"/proc/self/fd/{net_fd}", "tap0"]
        try:
            log = os.open(
                os.path.join(self.run_dir, NETWORK_LOG),
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                0o600,
            )
            try:
                subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    close_fds=True,
                    pass_fds=(net_fd, userns_fd, ready_w, exit_r),
                    env={"PATH": "/usr/bin:/bin"},
                    # The group nftables knows it by; root only (netfilter.py).
                    group=group,
                    extra_groups=[] if group is not None else None,
                )
            finally:
                os.close(log)
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            return f"slirp4netns could not be started ({exc.strerror})"
        for fd in (net_fd, userns_fd, ready_w, exit_r):
            os.close(fd)
        ready = _wait_readable(ready_r, time.monotonic() + NETWORK_SETUP_SECONDS)
        word = os.read(ready_r, 1) if ready else b""
        os.close(ready_r)
        if word != b"1":
            self.status["network_log"] = _log_tail(os.path.join(self.run_dir, NETWORK_LOG))
            return "slirp4netns did not bring the network up (network-log.txt in the run folder)"
        self.status["network"] = "internet"
        return None

    def check_disk(self) -> str | None:
        """Why the job must stop for the disk it uses, or None."""
        spec = self.spec
        limit = spec["disk_bytes"]
        pids = self.live_descendants()
        used = disk_used(spec["disk_watch"], pids, limit)
        scratch = spec.get("scratch_places")
        if used <= limit and scratch:
            used = max(used, scratch_files(pids, scratch) * INODE_BYTES)
        if used > limit:
            self.disk_stop = True
            return f"stopped: the job used more than {spec['disk_mb']} MB of disk (execute.disk_mb)"
        free = free_bytes(spec["disk_watch"][0])
        floor = spec.get("min_free_bytes") or 0
        if free is not None and free < floor:
            self.disk_stop = True
            return (
                f"stopped: the disk it writes to was nearly full (less than "
                f"{floor // (1024 * 1024)} MB free, execute.min_free_disk_mb); the job "
                f"used {used // (1024 * 1024)} MB of disk"
            )
        return None

    def _read(self, fd: int, streams: dict[int, Capture], selector: selectors.BaseSelector) -> None:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            streams[fd].add(data)
        else:
            selector.unregister(fd)
            os.close(fd)

    def shed_job_files(self) -> str:
        """After a stop for disk (the job is dead): delete what it wrote but its
        code/outputs, and those too while the disk is still nearly full, so that
        its files never keep the app from writing. Returns what to add to the reason."""
        job = os.path.join(self.run_dir, "job")
        outputs = os.path.join(job, "code", "outputs")
        _remove_below(job, keep=outputs)
        free = free_bytes(self.run_dir)
        if free is not None and free < (self.spec.get("min_free_bytes") or 0):
            _remove_below(outputs)
            return "; its files were deleted to free the disk"
        return "; its files other than code/outputs were deleted"

    def free_space(self) -> None:
        try:
            os.unlink(os.path.join(self.run_dir, RESERVE))
        except OSError:
            pass
        for name in ("home", "tmp"):
            _remove_below(os.path.join(self.run_dir, name))

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_signal = signum

    def finish(
        self,
        return_code: int | None,
        stopped: bool,
        reason: str | None,
        started: float,
        stdout: bytes,
        stderr: bytes,
    ) -> None:
        # The job is gone: what it wrote where nobody reads it goes first, and the
        # space set aside for these writes is handed back, so a job that filled
        # the disk cannot keep its outcome from being written.
        self.free_space()
        atomic_write_bytes(os.path.join(self.run_dir, STDOUT), stdout, mode=0o600)
        atomic_write_bytes(os.path.join(self.run_dir, STDERR), stderr, mode=0o600)
        self.status.update(
            phase="finished",
            finished_at=iso_from_seconds(time.time()),
            duration_seconds=round(time.monotonic() - started, 3),
            return_code=return_code,
            stopped=stopped,
            reason=reason,
        )
        self.save()


def _remove_below(path: str, keep: str | None = None) -> None:
    """Delete what is inside ``path`` but ``keep`` (best effort, never following links;
    only for folders no live process of the job can change)."""
    stack, folders = [path], []
    while stack:
        folder = stack.pop()
        folders.append(folder)
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.path == keep:
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            os.unlink(entry.path)
                    except OSError:
                        continue
        except OSError:
            continue
    for folder in reversed(folders[1:]):
        try:
            os.rmdir(folder)
        except OSError:
            pass


def describe_exit(return_code: int | None, spec: dict[str, Any], err: Capture) -> str | None:
    """Why a job failed, in words a data owner can act on; None when it succeeded."""
    if return_code == 0:
        return None
    if return_code is None:
        return "its exit status was lost"
    cpu, size_mb = spec["cpu_seconds"], spec["file_size_bytes"] // (1024 * 1024)
    signals = {
        signal.SIGXCPU: f"stopped by the CPU time limit (execute.cpu_seconds = {cpu})",
        signal.SIGXFSZ: f"stopped by the file size limit (execute.file_size_mb = {size_mb})",
    }
    if return_code > 128 and return_code - 128 in signals:
        return signals[return_code - 128]
    reason = f"exited with return code {return_code}"
    if return_code > 128:
        try:
            reason += f" (killed by {signal.Signals(return_code - 128).name})"
        except ValueError:
            pass
    tail = bytes(err.tail[-4096:] or err.head[-4096:]).lower()
    if any(sign in tail for sign in MEMORY_SIGNS):
        reason += f"; out of memory? (execute.memory_mb = {spec['memory_bytes'] // (1024 * 1024)})"
    uv_reason = explain_uv_failure(tail, spec.get("network"))
    if uv_reason:
        reason += f"; {uv_reason}"
    if any(sign in tail for sign in DISK_SIGNS):
        if spec.get("scratch_in_tmpfs"):
            mb = spec.get("disk_mb")
            reason += (
                f"; the job used more than {mb} MB of disk ($HOME and /tmp hold "
                f"{mb} MB each: execute.disk_mb)"
            )
        else:
            reason += "; the disk it wrote to was full"
    return reason


def _log_tail(path: str) -> str:
    """The end of what slirp4netns printed, for the data owner's status."""
    try:
        with open(path, "rb") as handle:
            return handle.read()[-300:].decode(errors="replace").strip()
    except OSError:
        return ""


def _wait_readable(fd: int, deadline: float) -> bool:
    """Wait until ``fd`` has data or end of file, at most until ``deadline``."""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if selector.select(timeout=left):
                return True


def _wait_loopback(pid: int, deadline: float) -> bool:
    """Wait until 127.0.0.1 is up in the network namespace of ``pid``."""
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/net/fib_trie", "rb") as handle:
                if b"127.0.0.1" in handle.read():
                    return True
        except OSError:
            return False
        time.sleep(0.005)
    return False


def _read_child_pid(fd: int, deadline: float) -> int | None:
    """The ``child-pid`` bwrap writes to its --info-fd (JSON; read up to its closing brace,
    since the sandbox may keep the pipe open)."""
    data = b""
    while b"}" not in data and _wait_readable(fd, deadline):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def system_pythons() -> list[str]:
    """The Python versions installed on this machine where jobs find them (3.11, ...)."""
    import glob
    import re

    found = set()
    for folder in ("/usr/bin", "/usr/local/bin"):
        for path in glob.glob(f"{folder}/python3.*"):
            match = re.fullmatch(r"python(3\.\d+)", os.path.basename(path))
            if match:
                found.add(match.group(1))
    return sorted(found, key=lambda v: tuple(int(p) for p in v.split(".")))


def explain_uv_failure(tail: bytes, network: str | None) -> str | None:
    """Why uv failed, from the end of a job's stderr (lower case), in words the data
    scientist can act on; None when the tail shows no known uv failure."""
    if b"uv: command not found" in tail or b"uv: not found" in tail:
        return "uv is not available to jobs on this machine (ask the data owner)"
    # The last error uv printed is the one that stopped the job.
    start = tail.rfind(b"error:")
    if start < 0:
        return None
    error = tail[start:]
    offline = {
        "off": "this data owner runs jobs without network (execute.network: off)",
        "internet": "the network jobs get here did not reach it",
        "host": "this machine did not reach it",
    }.get(network or "", "it did not answer")
    if (
        b"no interpreter found for python" in error
        or b"no download found for request" in error
        or b"python-build-standalone" in error
    ):
        versions = ", ".join(system_pythons()) or "none"
        return (
            f"the Python version the job asks for is not installed on this machine "
            f"(installed: {versions}) and uv could not download it; ask for an "
            f"installed version"
        )
    if b"was not found in the cache" in error and b"network was disabled" in error:
        # Offline from the cache the prepare phase (execute.prepare: uv) filled.
        return (
            "uv did not find a package among those the data owner prepared before the run: "
            "jobs here run offline, and only the packages of literal `uv pip install` lines "
            "and config.yaml dependencies are fetched beforehand"
        )
    if any(
        sign in error
        for sign in (b"failed to fetch", b"error sending request", b"dns error", b"(connect)")
    ):
        return f"uv could not reach the package index: {offline}"
    return None


def _child_setup(
    limits: list[tuple[int, int, int]], unshare_net: bool, run_as: int | None = None
) -> None:
    """Runs in the job's process between fork and exec."""
    os.umask(0o077)
    if unshare_net:
        _enter_network_namespace()
    for which, soft, hard in limits:
        resource.setrlimit(which, (soft, hard))
    if run_as is not None:
        # Root hands the job to an unprivileged uid of its own, and keeps no groups.
        os.setgroups([])
        os.setresgid(run_as, run_as, run_as)
        os.setresuid(run_as, run_as, run_as)
    # If the supervisor dies, its job dies with it rather than running unwatched
    # (set last: a change of user clears it).
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _hold_lock(run_dir: str, fd: int | None) -> int | None:
    """The inherited lock fd, or the lock taken here; None when another holds it."""
    if fd is None:
        fd = os.open(os.path.join(run_dir, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    os.set_inheritable(fd, False)
    return fd


def supervise(run_dir: str, lock_fd: int | None = None) -> int:
    """Supervise one run here, holding its lock (``lock_fd``, or taken here)."""
    if _hold_lock(run_dir, lock_fd) is None:
        print(f"{run_dir}: another supervisor holds this run", file=sys.stderr)
        return 1
    supervisor = Supervisor(run_dir)
    try:
        supervisor.run()
    except BaseException:
        # Whatever went wrong here, the job must not run on unwatched.
        import traceback

        traceback.print_exc()
        supervisor.kill_all()
        supervisor.status.update(
            phase="finished",
            finished_at=iso_from_seconds(time.time()),
            return_code=None,
            stopped=True,
            reason="the supervisor failed (details: supervisor-errors.txt in the run folder)",
        )
        supervisor.save()
        return 1
    return 0


def launch(lines: list[str]) -> int:
    """Fork one detached supervisor per line ``LOCK_FD RUN_DIR``.

    The pass starts one launcher for all the runs it starts, so the interpreter
    starts once, not once per job. For each line, in order, the launcher creates
    the run's ``supervisor-errors.txt`` (from then on the run counts as tried),
    forks its supervisor and prints the supervisor's pid, or ``-`` when it could
    not; then it exits, and each supervisor lives on in a session of its own
    holding its run's lock and nothing else of the others'.
    """
    runs = []
    for line in lines:
        lock_fd, run_dir = line.rstrip("\n").split(" ", 1)
        runs.append((int(lock_fd), run_dir))
    locks = {lock_fd for lock_fd, _ in runs}
    for lock_fd, run_dir in runs:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        try:
            errors_fd = os.open(os.path.join(run_dir, SUPERVISOR_ERRORS), flags, 0o600)
        except OSError as exc:
            print(f"{run_dir}: {exc.strerror}", file=sys.stderr)
            _report("-")
            continue
        try:
            pid = os.fork()
        except OSError as exc:
            os.write(errors_fd, f"no supervisor could be started: {exc.strerror}\n".encode())
            os.close(errors_fd)
            _report("-")
            continue
        if pid == 0:
            _become_supervisor(run_dir, lock_fd, errors_fd, locks)
        os.close(errors_fd)
        _report(str(pid))
    return 0


def _report(word: str) -> None:
    # Written past Python's buffers, which forked children would inherit and repeat.
    # A pass that is gone no longer reads this; the other runs still get supervisors.
    try:
        os.write(1, f"{word}\n".encode())
    except OSError:
        pass


def _become_supervisor(run_dir: str, lock_fd: int, errors_fd: int, locks: set[int]) -> None:
    """In a child of the launcher: detach, keep only this run's files, supervise, exit."""
    code = 1
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(errors_fd, 1)
        os.dup2(errors_fd, 2)
        for fd in (locks | {devnull, errors_fd}) - {lock_fd}:
            os.close(fd)
        os.chdir(run_dir)
        code = supervise(run_dir, lock_fd)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--launch"]:
        return launch(sys.stdin.readlines())
    if len(args) != 1 or args[0].startswith("-"):
        print(
            "usage: python -m syft_bg_app.execution.supervisor RUN_DIR\n"
            "       python -m syft_bg_app.execution.supervisor --launch  (lines on stdin: "
            "LOCK_FD RUN_DIR)",
            file=sys.stderr,
        )
        return 2
    return supervise(args[0])


if __name__ == "__main__":
    sys.exit(main())
