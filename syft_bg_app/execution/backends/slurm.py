"""The cluster side of a run on Slurm: submit a batch script, read its state, cancel it.

This module knows nothing of jobs or datasites: it submits one script that runs in
one run folder on the cluster's shared filesystem and answers questions about it by
its Slurm job id. Every Slurm command runs from an argv list (never a shell) with a
time limit; a command that does not answer makes a state "unknown", never "failed".

The environment a batch job gets is exactly the allow-list given to ``submit``:
sbatch runs with that environment alone and ``--export=ALL``. ``--export=NONE`` (and
a list of names) would not do: slurmd then fills the job's environment from the
submitting user's login shell (``--get-user-env``), which holds whatever that user's
profile exports.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from syft_bg_app.errors import SyftBgError

if TYPE_CHECKING:
    from syft_bg_app.config.load import Config

COMMAND_TIMEOUT_S = 30
# Where the allow-list names no PATH, the batch script still finds the basic tools.
DEFAULT_PATH = "/usr/bin:/bin"
STDOUT_NAME = "slurm-stdout.txt"
STDERR_NAME = "slurm-stderr.txt"

PENDING, RUNNING, COMPLETED, FAILED = "pending", "running", "completed", "failed"
CANCELLED, TIMEOUT, NODE_FAIL, PREEMPTED = "cancelled", "timeout", "node_fail", "preempted"
OUT_OF_MEMORY, UNKNOWN = "out_of_memory", "unknown"
FINISHED_STATES = frozenset(
    {COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, PREEMPTED, OUT_OF_MEMORY}
)

# Slurm's job states (squeue/sacct spelling) -> ours.
_SLURM_STATES = {
    "PENDING": PENDING,
    "CONFIGURING": PENDING,
    "REQUEUED": PENDING,
    "REQUEUE_FED": PENDING,
    "REQUEUE_HOLD": PENDING,
    "RESV_DEL_HOLD": PENDING,
    "RUNNING": RUNNING,
    "COMPLETING": RUNNING,
    "SUSPENDED": RUNNING,
    "STOPPED": RUNNING,
    "RESIZING": RUNNING,
    "SIGNALING": RUNNING,
    "STAGE_OUT": RUNNING,
    "COMPLETED": COMPLETED,
    "FAILED": FAILED,
    "BOOT_FAIL": FAILED,
    "DEADLINE": FAILED,
    "SPECIAL_EXIT": FAILED,
    "REVOKED": FAILED,
    "CANCELLED": CANCELLED,
    "TIMEOUT": TIMEOUT,
    "NODE_FAIL": NODE_FAIL,
    "PREEMPTED": PREEMPTED,
    "OUT_OF_MEMORY": OUT_OF_MEMORY,
}

# sbatch options the backend sets itself, and where their value comes from.
_OWNED_OPTIONS = {
    "account": "execute.slurm.account",
    "partition": "execute.slurm.partition",
    "time": "the job's timeout",
    "time-min": "the job's timeout",
    "mem": "execute.memory_mb",
    "mem-per-cpu": "execute.memory_mb",
    "mem-per-gpu": "execute.memory_mb",
    "cpus-per-task": "the run's limits",
    "nodes": "the app (one node per run)",
    "ntasks": "the app (one task per run)",
    "array": "the app (one run per job)",
    "chdir": "the run folder",
    "output": "the run folder",
    "error": "the run folder",
    "input": "the app",
    "export": "the app's environment allow-list",
    "export-file": "the app's environment allow-list",
    "get-user-env": "the app's environment allow-list",
    "uid": "the app",
    "gid": "the app",
    "job-name": "the app",
    "requeue": "the app (a run is never started twice)",
    "wrap": "the app (it submits its own script)",
    "parsable": "the app",
    "test-only": "the app",
    "wait": "the app (a pass never waits for a cluster job)",
}
_OPTION_RE = re.compile(r"--([a-z][a-z0-9-]*)=(.+)", re.DOTALL)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JOB_ID_RE = re.compile(r"[0-9]{1,20}")
_JOB_NAME_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]")
# Job ids per squeue/sacct call: a long list stays far below any argv limit.
_IDS_PER_COMMAND = 200


class SlurmError(SyftBgError):
    """A Slurm command refused or failed; the message says which and why."""


class SlurmUnavailableError(SlurmError):
    """A Slurm command is missing or did not answer in time."""


class SlurmSubmitError(SlurmError):
    """sbatch refused the run (bad partition, account, limits ...)."""


class SlurmOptionError(SlurmError):
    """A value given to the backend (an sbatch option, an env name, a job id) is refused."""

    exit_code = 2


@dataclass(frozen=True)
class ClusterState:
    """What the cluster says about one batch job."""

    state: str
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    slurm_state: str = ""

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


def time_limit_minutes(seconds: int) -> int:
    """Slurm counts time limits in whole minutes: round up, never below one."""
    return max(1, math.ceil(seconds / 60))


def sbatch_option_problem(option: object) -> str | None:
    """Why ``option`` may not be passed to sbatch, or None when it may."""
    if not isinstance(option, str):
        return f"must be an sbatch option like --qos=normal, got {option!r}"
    match = _OPTION_RE.fullmatch(option)
    if match is None:
        return f"must be written --name=value (e.g. --qos=normal), got {option!r}"
    name, value = match.groups()
    if _CONTROL_RE.search(value):
        return f"{option!r} holds a control character"
    if name in _OWNED_OPTIONS:
        return f"--{name} is set by the app itself (from {_OWNED_OPTIONS[name]})"
    return None


def submit(
    script_path: Path | str,
    run_dir: Path | str,
    *,
    time_limit_s: int,
    partition: str | None = None,
    account: str | None = None,
    mem_mb: int | None = None,
    cpus: int | None = None,
    extra_options: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    job_name: str = "syft-bg-run",
    timeout_s: float = COMMAND_TIMEOUT_S,
) -> str:
    """Submit ``script_path`` as a batch job working in ``run_dir``; return its job id.

    The job's stdout and stderr go to ``run_dir`` (``slurm-stdout.txt``,
    ``slurm-stderr.txt``); its environment is ``env`` and nothing else but the
    variables Slurm itself sets (``SLURM_*``, ``HOSTNAME``, ``TMPDIR``). A failed job
    is never requeued. sbatch not answering in ``timeout_s`` raises
    SlurmUnavailableError: the run may then have been submitted all the same.
    """
    script = Path(script_path).absolute()
    folder = Path(run_dir).absolute()
    for what, path in (("script", script), ("run folder", folder)):
        if _CONTROL_RE.search(str(path)) or "\\" in str(path):
            raise SlurmOptionError(f"the {what} path {str(path)!r} cannot be given to sbatch")
    for option in extra_options:
        problem = sbatch_option_problem(option)
        if problem:
            raise SlurmOptionError(f"sbatch option refused: {problem}")
    job_env = _job_environment(env or {})
    argv = [
        "sbatch",
        "--parsable",
        "--export=ALL",
        "--no-requeue",
        "--nodes=1",
        "--ntasks=1",
        f"--job-name={_JOB_NAME_UNSAFE_RE.sub('_', job_name)[:64] or 'syft-bg-run'}",
        f"--time={time_limit_minutes(time_limit_s)}",
        f"--chdir={folder}",
        # sbatch expands %j, %u ... in these two; %% is a literal %.
        f"--output={_literal_pattern(folder / STDOUT_NAME)}",
        f"--error={_literal_pattern(folder / STDERR_NAME)}",
    ]
    if partition:
        argv.append(f"--partition={partition}")
    if account:
        argv.append(f"--account={account}")
    if mem_mb is not None:
        argv.append(f"--mem={int(mem_mb)}M")
    if cpus is not None:
        argv.append(f"--cpus-per-task={int(cpus)}")
    argv += list(extra_options)
    argv.append(str(script))
    done = _run(argv, timeout_s, env=job_env)
    if done.returncode != 0:
        message = _last_line(done.stderr) or f"exit status {done.returncode}"
        if _controller_unreachable(done.stderr):
            raise SlurmUnavailableError(f"sbatch could not reach the Slurm controller: {message}")
        raise SlurmSubmitError(f"sbatch refused the run: {message}")
    job_id = _last_line(done.stdout).split(";", 1)[0].strip()
    if not _JOB_ID_RE.fullmatch(job_id):
        raise SlurmSubmitError(f"sbatch answered without a job id: {done.stdout.strip()[:200]!r}")
    return job_id


def state(job_id: str, *, timeout_s: float = COMMAND_TIMEOUT_S) -> ClusterState:
    """The state of batch job ``job_id`` (see ``states``)."""
    return states([job_id], timeout_s=timeout_s)[job_id]


def states(
    job_ids: Iterable[str], *, timeout_s: float = COMMAND_TIMEOUT_S
) -> dict[str, ClusterState]:
    """The state of each batch job in ``job_ids``: a few commands for all, not one each.

    The controller answers (``squeue``) while it holds a job (``MinJobAge`` seconds
    after it ends); after that, accounting (``sacct``) or the job completion log
    (``sacct -c``). Where none of them answers, or none knows a job, its state is
    "unknown" with the reason: a later call may know more.
    """
    wanted = list(dict.fromkeys(job_ids))
    for job_id in wanted:
        _check_job_id(job_id)
    found: dict[str, ClusterState] = {}
    problems: list[str] = []
    queries = (
        (
            ["squeue", "-h", "-t", "all", "-O", "JobID:|,State:|,Reason:|,exit_code:|", "-j"],
            _parse_squeue,
        ),
        (["sacct", "-X", "-n", "--parsable2", "-o", "JobID,State,ExitCode", "-j"], _parse_sacct),
        (
            ["sacct", "--completion", "-n", "--parsable2", "-o", "JobID,State,ExitCode", "-j"],
            _parse_sacct,
        ),
    )
    for argv, parse in queries:
        missing = [job_id for job_id in wanted if job_id not in found]
        if not missing:
            break
        for start in range(0, len(missing), _IDS_PER_COMMAND):
            ids = missing[start : start + _IDS_PER_COMMAND]
            try:
                listed = _run([*argv, ",".join(ids)], timeout_s)
            except SlurmUnavailableError as exc:
                problems.append(str(exc))
                break
            if listed.returncode == 0:
                found.update(
                    (job_id, seen) for job_id, seen in parse(listed.stdout) if job_id in ids
                )
            elif argv[0] == "squeue" and "invalid job id" not in listed.stderr.lower():
                # sacct refusing (accounting disabled, no completion log) is normal.
                problems.append(f"squeue: {_last_line(listed.stderr) or listed.returncode}")
    for job_id in wanted:
        if job_id not in found:
            reason = "; ".join(problems) or f"the cluster knows no job {job_id}"
            found[job_id] = ClusterState(UNKNOWN, reason=reason)
    return {job_id: found[job_id] for job_id in wanted}


def job_ids_by_name(
    names: Iterable[str], *, timeout_s: float = COMMAND_TIMEOUT_S
) -> dict[str, str] | None:
    """The batch jobs the controller holds under each of ``names``: name -> job id (the
    newest where several share a name); a name it holds no job of is left out. None
    when squeue does not answer: then nothing can be said about any of them."""
    wanted = [_JOB_NAME_UNSAFE_RE.sub("_", name)[:64] for name in dict.fromkeys(names)]
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _IDS_PER_COMMAND):
        chunk = wanted[start : start + _IDS_PER_COMMAND]
        try:
            listed = _run(
                ["squeue", "-h", "-t", "all", "-o", "%i|%j", "-n", ",".join(chunk)], timeout_s
            )
        except SlurmUnavailableError:
            return None
        if listed.returncode != 0:
            return None
        for line in listed.stdout.splitlines():
            job_id, _, name = line.strip().partition("|")
            if name in chunk and _JOB_ID_RE.fullmatch(job_id):
                if name not in found or int(job_id) > int(found[name]):
                    found[name] = job_id
    return found


def cancel(job_id: str, *, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
    """Cancel batch job ``job_id``; a job that already ended (or never was) is fine."""
    _check_job_id(job_id)
    done = _run(["scancel", job_id], timeout_s)
    if done.returncode == 0:
        return
    stderr = done.stderr.lower()
    if "invalid job id" in stderr or "already completing or completed" in stderr:
        return
    message = _last_line(done.stderr) or f"exit status {done.returncode}"
    if _controller_unreachable(done.stderr):
        raise SlurmUnavailableError(f"scancel could not reach the Slurm controller: {message}")
    raise SlurmError(f"scancel {job_id} failed: {message}")


def check_cluster(config: Config) -> list[str]:
    """Problems that keep runs from working on the cluster, in plain words; [] when none.

    ``config`` is the app's Config (``execute.slurm.*`` keys).
    """
    settings = config.get("execute.slurm")
    timeout_s = settings.get("commands_timeout") or COMMAND_TIMEOUT_S
    problems: list[str] = []
    for option in settings.get("sbatch_options") or []:
        problem = sbatch_option_problem(option)
        if problem:
            problems.append(f"execute.slurm.sbatch_options: {problem}")
    missing = [name for name in ("sbatch", "squeue", "sacct", "scancel") if not _which(name)]
    if missing:
        problems.append(
            f"{', '.join(missing)} not found on PATH: install the Slurm client commands "
            "(Debian/Ubuntu: apt-get install slurm-client) and the cluster's slurm.conf"
        )
    else:
        problems += _controller_problems(settings.get("partition"), timeout_s)
        problems += _finished_state_problems(timeout_s)
    problems += _run_folder_problems(settings.get("run_folder"))
    return problems


def _controller_problems(partition: str | None, timeout_s: float) -> list[str]:
    try:
        queue = _run(["squeue", "-h", "-o", "%i", "-u", str(os.getuid())], timeout_s)
    except SlurmUnavailableError as exc:
        return [str(exc)]
    if queue.returncode != 0:
        return [f"squeue does not answer: {_last_line(queue.stderr) or queue.returncode}"]
    if not partition:
        return []
    try:
        listed = _run(["sinfo", "-h", "-p", partition, "-o", "%P"], timeout_s)
    except SlurmUnavailableError as exc:
        return [str(exc)]
    if listed.returncode == 0 and not listed.stdout.strip():
        return [f"execute.slurm.partition: the cluster has no partition {partition!r}"]
    return []


def _finished_state_problems(timeout_s: float) -> list[str]:
    """sacct must answer from accounting or from the job completion log."""
    answers = []
    for source in (["sacct"], ["sacct", "--completion"]):
        try:
            listed = _run(source + ["-n", "-X", "-j", "1", "-o", "JobID"], timeout_s)
        except SlurmUnavailableError as exc:
            answers.append(str(exc))
            continue
        if listed.returncode == 0:
            return []
        answers.append(f"{' '.join(source)}: {_last_line(listed.stderr) or listed.returncode}")
    return [
        "sacct answers neither from accounting nor from the job completion log, so the "
        "state of a run is lost once the controller forgets it (MinJobAge): " + "; ".join(answers)
    ]


def _run_folder_problems(run_folder: str | None) -> list[str]:
    if not run_folder:
        return [
            "execute.slurm.run_folder is not set: name a folder the compute nodes share "
            "with this machine"
        ]
    folder = Path(os.path.expanduser(run_folder))
    if not folder.is_dir():
        return [f"execute.slurm.run_folder {str(folder)!r} is not a folder"]
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".syft-bg-check-"):
            pass
    except OSError as exc:
        return [f"execute.slurm.run_folder {str(folder)!r} is not writable: {exc.strerror}"]
    return []


def _job_environment(env: Mapping[str, str]) -> dict[str, str]:
    job_env: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME_RE.fullmatch(name):
            raise SlurmOptionError(f"{name!r} is not an environment variable name")
        if name.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_")):
            # sbatch reads these as options of its own.
            raise SlurmOptionError(f"{name} configures Slurm and cannot be passed to a run")
        if not isinstance(value, str) or "\0" in value:
            raise SlurmOptionError(f"the value of {name} is not text without NUL characters")
        job_env[name] = value
    job_env.setdefault("PATH", DEFAULT_PATH)
    if os.environ.get("SLURM_CONF"):
        job_env["SLURM_CONF"] = os.environ["SLURM_CONF"]
    return job_env


def _command_env() -> dict[str, str]:
    """What a Slurm query command needs, and none of the caller's secrets."""
    command_env = {"PATH": os.environ.get("PATH") or DEFAULT_PATH, "LC_ALL": "C"}
    if os.environ.get("SLURM_CONF"):
        command_env["SLURM_CONF"] = os.environ["SLURM_CONF"]
    return command_env


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH") or DEFAULT_PATH)


def _run(
    argv: list[str], timeout_s: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    program = _which(argv[0])
    if program is None:
        raise SlurmUnavailableError(f"{argv[0]} is not installed (not found on PATH)")
    try:
        return subprocess.run(
            [program, *argv[1:]],
            env=dict(env) if env is not None else _command_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SlurmUnavailableError(f"{argv[0]} did not answer in {timeout_s:g} s") from None
    except OSError as exc:
        raise SlurmUnavailableError(f"{argv[0]} could not be started: {exc.strerror}") from None


def _check_job_id(job_id: str) -> None:
    if not isinstance(job_id, str) or not _JOB_ID_RE.fullmatch(job_id):
        raise SlurmOptionError(f"{job_id!r} is not a Slurm job id")


def _literal_pattern(path: Path) -> str:
    return str(path).replace("%", "%%")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _controller_unreachable(stderr: str) -> bool:
    text = stderr.lower()
    return "unable to contact slurm controller" in text or "connection refused" in text


def _exit_code(text: str) -> tuple[int | None, int | None]:
    """Slurm's ExitCode ``status:signal``."""
    match = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if match is None:
        return None, None
    return int(match.group(1)), int(match.group(2))


def _from_slurm(
    slurm_state: str, status: int | None, signal: int | None, reason: str
) -> ClusterState:
    # sacct writes "CANCELLED by 0"; squeue "CANCELLED".
    word = slurm_state.split()[0].rstrip("+") if slurm_state.split() else ""
    ours = _SLURM_STATES.get(word, UNKNOWN)
    if ours not in FINISHED_STATES:
        # Slurm shows 0 for a job that has not ended: that is no exit code yet.
        status = signal = None
    return ClusterState(
        state=ours,
        exit_code=status,
        signal=signal,
        reason="" if reason in ("None", "(null)") else reason,
        slurm_state=word,
    )


def _parse_squeue(text: str) -> list[tuple[str, ClusterState]]:
    """``JobID|State|Reason|exit_code|`` lines; exit_code is the raw wait status."""
    out = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split("|")]
        if len(parts) < 4:
            continue
        status = signal = None
        if parts[3].isdigit():
            status, signal = int(parts[3]) >> 8, int(parts[3]) & 0x7F
        out.append((parts[0], _from_slurm(parts[1], status, signal, parts[2])))
    return out


def _parse_sacct(text: str) -> list[tuple[str, ClusterState]]:
    """``JobID|State|ExitCode`` lines, ExitCode written ``status:signal``."""
    out = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split("|")]
        if len(parts) < 3:
            continue
        status, signal = _exit_code(parts[2])
        out.append((parts[0], _from_slurm(parts[1], status, signal, "")))
    return out
