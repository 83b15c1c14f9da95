"""A throwaway single-machine Slurm cluster for tests: munged, slurmctld and slurmd.

Each pytest process (each xdist worker) that asks for ``slurm_cluster`` starts its
own cluster in a temporary folder: its own munge key and socket, its own free ports,
state, spool, logs and job completion log, so clusters of several workers (or of
several checkouts' suites) never meet. The daemons run in the foreground as children
of the test process and are stopped by their pids at the end of the session.

Where the Slurm or munge programs are missing, or the daemons cannot start, every
test that uses the cluster is skipped with the reason (a log tail included).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import PATIENCE

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sacct", "sinfo")
PARTITION = "syftbg"
# Jobs may ask for this much memory (--mem); the node offers no more.
NODE_MEMORY_MB = 1024
START_ATTEMPTS = 3
PR_SET_PDEATHSIG = 1


@dataclass
class SlurmCluster:
    """A running test cluster: point ``SLURM_CONF`` at ``conf`` (``env`` does)."""

    folder: Path
    conf: Path
    node: str
    partition: str
    completion_log: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def command(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def log_tail(self) -> str:
        return _log_tail(self.folder)


def _log_tail(folder: Path, lines: int = 15) -> str:
    tails = []
    for name in ("munged.log", "slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
        path = folder / name
        if path.exists():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"--- {name}\n" + "\n".join(text))
    return "\n".join(tails)


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _slurm_conf(folder: Path, name: str, node: str, ctld_port: int, slurmd_port: int) -> str:
    cpus = max(2, os.cpu_count() or 2)
    return f"""\
ClusterName={name}
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={folder}/munge/socket
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={folder}/jobcomp.log
MinJobAge=3600
KillWait=5
ReturnToService=2
MpiDefault=none
NodeName={node} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={cpus} \
RealMemory={NODE_MEMORY_MB} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _start(folder: Path, name: str) -> SlurmCluster:
    """Start munged, slurmctld and slurmd; raise RuntimeError saying what failed."""
    for sub in ("munge", "state", "spool"):
        (folder / sub).mkdir(mode=0o755, exist_ok=True)
    # munged refuses a socket folder others may write to.
    (folder / "munge").chmod(0o755)
    node = f"{name}-node"
    ctld_port, slurmd_port = _free_ports(2)
    conf = folder / "slurm.conf"
    conf.write_text(_slurm_conf(folder, name, node, ctld_port, slurmd_port))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(
        folder=folder,
        conf=conf,
        node=node,
        partition=PARTITION,
        completion_log=folder / "jobcomp.log",
        env=env,
    )
    key = folder / "munge.key"
    if not key.exists():
        made = subprocess.run(
            ["mungekey", "--create", f"--keyfile={key}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if made.returncode != 0:
            raise RuntimeError(f"mungekey failed: {made.stderr.strip()}")
    daemons = {
        "munged": [
            "munged",
            "--foreground",
            f"--key-file={key}",
            f"--socket={folder}/munge/socket",
            f"--pid-file={folder}/munged.pid",
            f"--log-file={folder}/munged.log",
            f"--seed-file={folder}/munge.seed",
        ],
        "slurmctld": ["slurmctld", "-D", "-c", "-f", str(conf)],
        "slurmd": ["slurmd", "-D", "-f", str(conf), "-N", node],
    }
    try:
        for daemon, argv in daemons.items():
            with open(folder / f"{daemon}.out", "ab") as out:
                cluster.processes[daemon] = subprocess.Popen(
                    argv,
                    env=env,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                    preexec_fn=_end_with_parent,
                )
            if daemon == "munged":
                socket_path = folder / "munge" / "socket"
                _wait_for(cluster, socket_path.exists, "munged's socket")
        _wait_for(cluster, lambda: _node_state(cluster) == "idle", f"node {node} to be idle")
    except BaseException:
        _stop(cluster)
        raise
    return cluster


def _end_with_parent() -> None:
    """A test process killed before its teardown leaves no daemon behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _node_state(cluster: SlurmCluster) -> str:
    try:
        shown = cluster.command("sinfo", "-h", "-n", cluster.node, "-o", "%T", timeout=30)
    except subprocess.TimeoutExpired:
        return ""
    return shown.stdout.strip()


def _wait_for(cluster: SlurmCluster, condition, what: str) -> None:
    end = time.monotonic() + PATIENCE
    while not condition():
        for daemon, process in cluster.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{daemon} exited with {process.returncode}")
        if time.monotonic() > end:
            raise RuntimeError(f"waited {PATIENCE:.0f} s for {what}")
        time.sleep(0.1)


def _stop(cluster: SlurmCluster) -> None:
    """Cancel what still runs, then end the daemons by pid (slurmd before slurmctld)."""
    running = [cluster.processes.get(d) for d in ("munged", "slurmctld", "slurmd")]
    if all(process is not None and process.poll() is None for process in running):
        try:
            cluster.command("scancel", f"--partition={cluster.partition}", timeout=30)
            end = time.monotonic() + 60
            while time.monotonic() < end:
                queued = cluster.command("squeue", "-h", "-t", "all", "-o", "%T", timeout=30)
                live = [s for s in queued.stdout.split() if s in ("RUNNING", "COMPLETING")]
                if queued.returncode != 0 or not live:
                    break
                time.sleep(0.2)
        except subprocess.TimeoutExpired:
            pass
    for daemon in ("slurmd", "slurmctld", "munged"):
        process = cluster.processes.get(daemon)
        if process is None or process.poll() is not None:
            continue
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _missing_programs() -> list[str]:
    return [name for name in DAEMONS + CLIENTS if shutil.which(name) is None]


@pytest.fixture(scope="session", name="slurm_cluster")
def slurm_cluster_fixture() -> Iterator[SlurmCluster]:
    """One running test cluster per pytest process; skips saying why where impossible."""
    missing = _missing_programs()
    if missing:
        pytest.skip(
            f"Slurm is not installed here ({', '.join(missing)} not found; "
            "apt-get install slurm-wlm munge)"
        )
    if os.geteuid() != 0:
        pytest.skip("the test Slurm cluster runs its daemons as root; these tests run as a user")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    # A short folder: munged's socket path must fit a unix socket address.
    folder = Path(tempfile.mkdtemp(prefix=f"syft-bg-slurm-{worker}-"))
    folder.chmod(0o755)
    name = f"sbg{worker.replace('gw', '')}"[:20]
    cluster = None
    problems = []
    try:
        for _ in range(START_ATTEMPTS):
            # Another process may take a free port before a daemon binds it: try again.
            attempt = Path(tempfile.mkdtemp(dir=folder, prefix="c"))
            attempt.chmod(0o755)
            try:
                cluster = _start(attempt, name)
                break
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                problems.append(f"{exc}\n{_log_tail(attempt)}")
        if cluster is None:
            pytest.skip(f"the test Slurm cluster could not start: {problems[-1]}")
        yield cluster
    finally:
        if cluster is not None:
            _stop(cluster)
        shutil.rmtree(folder, ignore_errors=True)
