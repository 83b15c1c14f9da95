"""Shared parts of the fault-injection tests: a busy scenario (peers, jobs, a rule,
mail), passes run as processes and killed on purpose, and the checks that after
all that nothing was lost and nothing was done twice.

Every job the rule approves runs a script that appends its run id to a ledger
file outside the app home and writes the same id to its outputs. The ledger is
the ground truth for "ran exactly once"; the run folders, the review outputs
and the checkpoint must agree with it.
"""

from __future__ import annotations

import email
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path

import yaml
from conftest import DO_EMAIL, PATIENCE, SHARED_FOLDERS, App

from syft_bg_app.datasite.jobfiles import sha256_bytes
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.execution.sandbox import RunLayout
from syft_bg_app.mail.compose import job_subject, peer_subject
from syft_bg_app.store.state import State

ACCEPTED_DOMAIN = "uni.edu"
OTHER_DOMAIN = "other.org"
RUN_SH = "#!/bin/bash\ncd code && bash script.sh\n"
# What the rule pins: the ledger line makes a second run of any job visible.
SCRIPT = (
    'echo "$SYFT_BG_RUN $$" >> "{ledger}"\n'
    "mkdir -p outputs\n"
    'echo "$SYFT_BG_RUN" > outputs/ran.txt\n'
)
# A job that differs from the rule by one line: it matches nothing and stays pending.
OFF_RULE_SCRIPT = SCRIPT + "echo not-what-the-rule-pins\n"
PASS_ARGV = [sys.executable, "-m", "syft_bg_app", "run", "--once"]


@dataclass
class Job:
    ds: str
    name: str
    matches_rule: bool

    @property
    def label(self) -> str:
        return f"{self.ds}/{self.name}"


@dataclass
class Scenario:
    """Peers that ask to connect and submit jobs, a round at a time."""

    app: App
    ledger: Path
    peers: list[str]
    jobs: list[Job]
    rounds: list[tuple[list[str], list[Job]]] = field(default_factory=list)
    # Files every job carries besides its script (what the rule pins too).
    data: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        app: App,
        ledger: Path,
        peers: int = 10,
        jobs_per_peer: int = 3,
        rounds: int = 10,
        accepted_peers: int = 7,
        off_rule: int = 2,
        data_files: int = 0,
        data_kb: int = 8,
        **config: object,
    ) -> Scenario:
        emails = [
            f"ds{i}@{ACCEPTED_DOMAIN if i < accepted_peers else OTHER_DOMAIN}" for i in range(peers)
        ]
        jobs = [
            # The last job of the first ``off_rule`` peers differs from the rule.
            Job(ds, f"job-{i:02d}-{k}", not (i < off_rule and k == jobs_per_peer - 1))
            for i, ds in enumerate(emails)
            for k in range(jobs_per_peer)
        ]
        data = _data_files(data_files, data_kb)
        ledger = _writable_by_jobs(ledger)
        script = SCRIPT.format(ledger=ledger)
        pinned = {"run.sh": RUN_SH, "code/script.sh": script}
        pinned.update({f"code/{rel}": text for rel, text in data.items()})
        rule = {
            "name": "ledger-job",
            "files": {path: sha256_bytes(text.encode()) for path, text in pinned.items()},
        }
        settings = {
            "approve": {
                "peers": {"approved_domains": [ACCEPTED_DOMAIN]},
                "auto_approvals": [rule],
            },
            "notify": {"transport": "outbox", "digest_after": 10_000},
            "execute": {"sandbox": "none", "max_concurrent": 64, "timeout": 60},
            "log": {"max_bytes": 200_000_000},
        }
        for section, values in config.items():
            settings.setdefault(section, {}).update(values)
        app.set_config(**settings)
        ledger.touch()
        ledger.chmod(0o666)
        scenario = cls(app, ledger, emails, jobs, data=data)
        # Peer i asks to connect in round i % rounds; its jobs follow one per round.
        plan: list[tuple[list[str], list[Job]]] = [([], []) for _ in range(rounds)]
        for i, ds in enumerate(emails):
            plan[i % rounds][0].append(ds)
        for n, job in enumerate(jobs):
            plan[n % rounds][1].append(job)
        scenario.rounds = plan
        return scenario

    def arrive(self, round_number: int, requests: bool = True, jobs: bool = True) -> None:
        """What round ``round_number`` brings: peer requests and submitted jobs."""
        if round_number >= len(self.rounds):
            return
        peers, submitted = self.rounds[round_number]
        for ds in peers if requests else ():
            self.app.request_peer(ds, message=f"hello from {ds}")
        script = SCRIPT.format(ledger=self.ledger)
        for job in submitted if jobs else ():
            content = script if job.matches_rule else OFF_RULE_SCRIPT.format(ledger=self.ledger)
            files = {"script.sh": content, **self.data}
            # Only accepted peers get an inbox; the others' jobs wait, not received.
            self.app.submit(job.name, ds_email=job.ds, run_sh=RUN_SH, files=files, as_peer=False)

    # -- what must hold at the end ---------------------------------------------------
    @property
    def accepted(self) -> set[str]:
        return {ds for ds in self.peers if ds.endswith("@" + ACCEPTED_DOMAIN)}

    @property
    def approved(self) -> list[Job]:
        return [j for j in self.jobs if j.matches_rule and j.ds in self.accepted]

    @property
    def pending(self) -> list[Job]:
        return [j for j in self.jobs if j.ds in self.accepted and j not in self.approved]

    @property
    def held(self) -> list[Job]:
        """Jobs of peers never accepted: they wait in the inbox, never received."""
        return [j for j in self.jobs if j.ds not in self.accepted]

    def expected_emails(self) -> Counter:
        """(to, event, entity) of every email the design's table asks for, once each."""
        want: Counter = Counter()
        for ds in self.peers:
            want[(DO_EMAIL, "peer_requested", ds)] += 1
            want[(ds, "peer_requested", ds)] += 1
            if ds in self.accepted:
                want[(ds, "peer_accepted", ds)] += 1
        for job in self.jobs:
            if job in self.held:
                continue
            kinds = ["job_submitted"]
            if job in self.approved:
                kinds += ["job_approved", "job_finished"]
            for kind in kinds:
                want[(DO_EMAIL, kind, job.label)] += 1
                want[(job.ds, kind, job.label)] += 1
        return want


def _data_files(count: int, kb: int) -> dict[str, str]:
    """Plain-text data files, so each job costs real hashing, copying and mail."""
    line = "".join(chr(97 + i % 26) for i in range(63)) + "\n"
    return {f"data/part-{n:03d}.txt": f"# part {n}\n" + line * (kb * 16) for n in range(count)}


# -- reading what happened --------------------------------------------------------------


def outbox_messages(app: App) -> list[EmailMessage]:
    return [
        email.message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted(app.home.outbox_dir.glob("*.eml"))
    ]


def email_table(messages: list[EmailMessage]) -> Counter:
    """(to, event, entity) of each message; the entity is read from the subject the
    way a person tells the emails apart (the job, or the peer who asked)."""
    found: Counter = Counter()
    for message in messages:
        kind, to, subject = message["X-Syft-BG-Event"], message["To"], message["Subject"]
        if kind.startswith("peer_"):
            asking = subject.removeprefix("[syft-bg] peer request from ")
            entity = to if subject == peer_subject("ds", to, DO_EMAIL) else asking
            assert subject == peer_subject("do" if to == DO_EMAIL else "ds", entity, DO_EMAIL)
        else:
            match = re.match(r"\[syft-bg\] (?:your )?job (\S+) (?:from|on) (\S+)$", subject)
            assert match, subject
            name, who = match.groups()
            ds = who if to == DO_EMAIL else to
            role = "do" if to == DO_EMAIL else "ds"
            assert subject == job_subject(role, ds, name, DO_EMAIL), subject
            entity = f"{ds}/{name}"
        found[(to, kind, entity)] += 1
    return found


def _writable_by_jobs(ledger: Path) -> Path:
    """Where the jobs can append to the ledger: a root app runs each job without bwrap
    as a uid of its own, which cannot reach the test's private folders."""
    if os.geteuid() != 0:
        return ledger
    folder = Path(tempfile.mkdtemp(prefix="syft-bg-ledger-", dir="/tmp"))
    folder.chmod(0o755)
    SHARED_FOLDERS.add(folder)
    return folder / ledger.name


def ledger_runs(scenario: Scenario) -> Counter:
    """How many times each job really ran, by the ledger its script appends to."""
    runs: Counter = Counter()
    for line in scenario.ledger.read_text().splitlines():
        run_id = line.split()[0]
        info = json.loads(RunLayout(scenario.app.home.runs_dir / run_id).spec.read_text())
        runs[info["job"]] += 1
    return runs


def log_text(app: App) -> str:
    logs = sorted(app.home.logs_dir.glob("syft-bg.log*"), reverse=True)
    return "".join(path.read_text(errors="replace") for path in logs)


def resends(app: App) -> int:
    """Emails a pass sent again because the pass before stopped while sending it
    (transports that record each send; the outbox replaces its files instead)."""
    return log_text(app).count("the pass that sent it stopped before it could record")


def sent_but_unrecorded(app: App, state: State) -> int:
    """Queued emails whose outbox file is already written: a pass stopped between
    writing them and recording them, and the next pass writes them again."""
    names = {path.name for path in app.home.outbox_dir.glob("*.eml")}
    queue = state.data.get("mail", {}).get("queue", [])
    return sum(1 for entry in queue if any(n.endswith(f"-{entry['id']}.eml") for n in names))


def interrupted_starts(app: App) -> int:
    """Starts a pass left half-done (the next pass started the job again)."""
    text = log_text(app)
    return text.count("it is started again")


def pass_intervals(app: App) -> list[tuple[float, float, int]]:
    """(start, end, pid) of every pass that held the lock, from the log's timestamps
    and line order; a pass without an end line is one that was killed."""
    pattern = re.compile(
        r"(\S+ \S+) (\d+) INFO syft_bg\.pass: "
        r"(pass started|pass ok|pass finished with failed steps)"
    )
    starts: dict[str, int] = {}
    spans = []
    for number, line in enumerate(log_text(app).splitlines()):
        match = pattern.match(line)
        if not match:
            continue
        _, pid, what = match.groups()
        if what == "pass started":
            assert pid not in starts, f"pid {pid} started twice without finishing"
            starts[pid] = number
        else:
            spans.append((starts.pop(pid), number, int(pid)))
    return sorted(spans) + [(n, float("inf"), int(pid)) for pid, n in starts.items()]


# -- the checks ---------------------------------------------------------------------------


def check_outcome(scenario: Scenario) -> dict[str, int]:
    """Everything the data owner and the data scientists rely on, after the faults
    (mail through the outbox)."""
    app = scenario.app
    state = check_jobs(scenario)
    # Every email of the table arrived, once; the queue is empty; nothing is waiting.
    expected = scenario.expected_emails()
    assert email_table(outbox_messages(app)) == expected
    mail = state.data["mail"]
    assert mail["queue"] == []
    assert mail["sent_total"] == sum(expected.values())
    assert state.data["events"] == []
    return {"emails": sum(expected.values())}


def check_jobs(scenario: Scenario) -> State:
    """Jobs and peers where the rules put them; every approved job ran exactly once."""
    app = scenario.app
    state = State.load(app.home.state_file)
    # Every job is where the rules put it, in the checkpoint and in the datasite.
    for job in scenario.held:
        assert state.job(job.ds, job.name) is None, job.label
        assert not (app.datasite.review_dir(JobRef(job.ds, job.name)) / "state.yaml").exists()
    for job in scenario.jobs:
        if job in scenario.held:
            continue
        record = state.job(job.ds, job.name)
        on_disk = yaml.safe_load(
            (app.datasite.review_dir(JobRef(job.ds, job.name)) / "state.yaml").read_text()
        )
        expected = "done" if job in scenario.approved else "pending"
        assert record is not None and record["status"] == expected, (job.label, record)
        assert on_disk["status"] == expected, (job.label, on_disk)
    for ds in scenario.peers:
        want = "accepted" if ds in scenario.accepted else "requested"
        assert state.peer(ds)["status"] == want, (ds, state.peer(ds))

    # Every approved job ran exactly once; nothing else ran.
    runs = ledger_runs(scenario)
    assert runs == Counter({job.label: 1 for job in scenario.approved}), runs
    ledger = {}
    for line in scenario.ledger.read_text().splitlines():
        run_id = line.split()[0]
        info = json.loads(RunLayout(app.home.runs_dir / run_id).spec.read_text())
        ledger[info["job"]] = run_id
    for job in scenario.approved:
        review = app.datasite.review_dir(JobRef(job.ds, job.name))
        # What the data scientist reads is the output of that one run.
        assert (review / "outputs" / "ran.txt").read_text().strip() == ledger[job.label]
        assert (review / "returncode.txt").read_text().strip() == "0"
    finished = []
    for folder in app.home.runs_dir.iterdir():
        layout = RunLayout(folder)
        status = json.loads(layout.status.read_text())
        assert status["phase"] == "finished", (folder, status)
        assert status["return_code"] == 0, (folder, status)
        finished.append(json.loads(layout.spec.read_text())["job"])
    assert sorted(finished) == sorted(job.label for job in scenario.approved)
    return state


# -- passes as processes ------------------------------------------------------------------


class Killer:
    """Starts passes as processes and SIGKILLs them at a random instant of their life,
    or right after they are seen sending an email or starting a job."""

    def __init__(
        self,
        app: App,
        rng,
        earliest: float = 0.05,
        latest: float = 0.5,
        delivered: Callable[[], int] | None = None,
    ) -> None:
        self.app = app
        self.rng = rng
        # How many emails have left so far (default: files in the outbox).
        self.delivered = delivered or (lambda: _count(app.home.outbox_dir))
        self.earliest = earliest
        self.latest = latest
        # How long a pass with work to do has lasted lately: random instants are drawn
        # within it, so that they fall inside passes rather than after them.
        self.horizon = latest
        self.kills: Counter = Counter()
        self.completed = 0

    def _trigger(self, mode: str):
        runs = self.app.home.runs_dir
        if mode == "send":
            before = self.delivered()
            return lambda: self.delivered() > before
        if mode == "start":
            before = _count(runs)
            return lambda: _count(runs) > before
        end = time.monotonic() + self.rng.uniform(self.earliest, self.horizon)
        return lambda: time.monotonic() >= end

    def attempt(self, mode: str) -> str | None:
        """One pass; None when it was killed, else its summary line."""
        began = time.monotonic()
        proc = subprocess.Popen(
            PASS_ARGV,
            env=self.app.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        trigger = self._trigger(mode)
        fired = False
        while proc.poll() is None:
            if trigger():
                fired = True
                break
            time.sleep(0.001)
        if fired and mode != "random":
            # Land anywhere from the file appearing to the checkpoint recording it.
            time.sleep(self.rng.uniform(0, 0.015))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            self.kills[mode] += 1
            return None
        _, err = proc.communicate()
        assert proc.returncode == 0, f"a pass failed with {proc.returncode}: {err}"
        self.completed += 1
        if "nothing new" not in err:
            lasted = time.monotonic() - began
            self.horizon = min(self.latest, max(self.earliest + 0.1, lasted))
        return err.strip()

    @property
    def total(self) -> int:
        return sum(self.kills.values())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _count(folder: Path) -> int:
    try:
        return len(os.listdir(folder))
    except FileNotFoundError:
        return 0


def run_until_quiet(app: App, settle: float = 0.2) -> int:
    """Passes (as processes) until one finds nothing new and no job is running;
    returns how many it took. Jobs run detached and take as long as the machine
    makes them, so this waits on that condition (up to PATIENCE), not a pass count."""
    end = time.monotonic() + PATIENCE
    number = 0
    while True:
        number += 1
        result = subprocess.run(
            PASS_ARGV, env=app.env, capture_output=True, text=True, timeout=PATIENCE
        )
        assert result.returncode == 0, result.stderr
        state = State.load(app.home.state_file)
        busy = any(r["status"] in ("approved", "running") for _, _, r in state.iter_jobs())
        if (
            "nothing new" in result.stderr
            and not busy
            and not state.data.get("mail", {}).get("queue")
        ):
            return number
        assert time.monotonic() < end, f"still busy after {number} passes"
        time.sleep(settle)


# -- a disk that fills up -------------------------------------------------------------

# Run with ``python -c`` before the real CLI: from the (AFTER+1)-th attempt on, making
# or filling a file under ROOT fails with ENOSPC, as on a full disk. Appending to a
# file that exists still opens (a full disk refuses the bytes, not the open), so the
# log keeps what it can.
ENOSPC_WRAPPER = """
import builtins, errno, os, sys, tempfile

ROOT, AFTER = os.path.realpath(sys.argv[1]), int(sys.argv[2])
seen = [0]


def full(path):
    try:
        path = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    if path != ROOT and not path.startswith(ROOT + os.sep):
        return False
    seen[0] += 1
    return seen[0] > AFTER


def refuse(path):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fsdecode(path))


real_mkstemp = tempfile.mkstemp


def mkstemp(suffix=None, prefix=None, dir=None, text=False):
    if dir is not None and full(os.path.join(dir, "x")):
        refuse(os.path.join(dir, (prefix or "") + "XXXXXX"))
    return real_mkstemp(suffix, prefix, dir, text)


real_open, real_os_open, real_write = builtins.open, os.open, os.write


def new_file(path, writing, truncating):
    if not isinstance(path, (str, bytes, os.PathLike)) or not writing:
        return False
    return (truncating or not os.path.exists(path)) and full(path)


def opener(file, mode="r", *args, **kwargs):
    if new_file(file, any(c in mode for c in "wax+"), "w" in mode):
        refuse(file)
    return real_open(file, mode, *args, **kwargs)


def os_open(path, flags, mode=0o777, *, dir_fd=None):
    writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
    if dir_fd is None and new_file(path, writing, flags & os.O_TRUNC):
        refuse(path)
    return real_os_open(path, flags, mode, dir_fd=dir_fd)


def os_write(fd, data):
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        target = None
    if target and os.path.isfile(target) and full(target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_write(fd, data)


tempfile.mkstemp, builtins.open, os.open, os.write = mkstemp, opener, os_open, os_write
if os.environ.get("SYFT_BG_TEST_COUNT_WRITES"):
    import atexit
    atexit.register(lambda: print(f"writes seen: {seen[0]}", file=sys.__stdout__))
sys.argv = ["syft-bg", *sys.argv[3:]]
from syft_bg_app.cli.main import main

sys.exit(main())
"""


def count_writes(app: App, root: Path, *args: str) -> int:
    """How many file writes under ``root`` ``syft-bg ARGS`` makes (none refused)."""
    result = subprocess.run(
        [sys.executable, "-c", ENOSPC_WRAPPER, str(root), str(10**9), *args],
        env={**app.env, "SYFT_BG_TEST_COUNT_WRITES": "1"},
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.rsplit("writes seen: ", 1)[1])


def run_with_full_disk(app: App, root: Path, after: int, *args: str):
    """``syft-bg ARGS`` as a process whose disk under ``root`` fills up after
    ``after`` file writes."""
    return subprocess.run(
        [sys.executable, "-c", ENOSPC_WRAPPER, str(root), str(after), *args],
        env=app.env,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        stdin=subprocess.DEVNULL,
    )
