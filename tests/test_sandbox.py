"""Hostile jobs, run for real: with bwrap (where it works) and without it.

Each sandbox mode runs one batch of hostile jobs side by side (to keep the
suite quick); the tests then look at what each job achieved. The fork bomb
runs on its own, so it cannot starve the others.

The job runs here count on RLIMIT_NPROC, which counts every process of the
job user (``nobody`` when the suite runs as root): they hold ``job_user_alone``
so that no other test's fork bomb runs beside them.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import PATIENCE, App, job_user_alone
from hostile import ProcessSampler, marked_processes, run_until_finished, script

from syft_bg_app import decisions, sandbox
from syft_bg_app.datasite import JobRef
from syft_bg_app.jobfiles import sha256_bytes
from syft_bg_app.session import changing
from syft_bg_app.state import State

DS = "alice@uni.edu"
TOKEN_NAME = "gmail_token.json"
# Only the jobs that test the wall-clock timeout get a short one (from the rule that
# approves them, as a data owner would set it): it must only outlast starting a few
# processes. Every other job has all the time a loaded machine needs.
SHORT_TIMEOUT = 10
# A fork bomb held at max_processes spins until its timeout: it only has to fork once.
BOMB_TIMEOUT = 3
LIMITS = {
    "timeout": int(PATIENCE),
    "memory_mb": 64,
    "cpu_seconds": 1,
    "file_size_mb": 2,
    "output_cap_kb": 64,
    "max_processes": 64,
    "max_concurrent": 20,
    "network": False,
}

_PROBE = sandbox.probe_bwrap(network=False)
MODES = [
    "none",
    pytest.param(
        "bwrap",
        marks=pytest.mark.skipif(not _PROBE.ok, reason=f"bwrap unusable: {_PROBE.detail}"),
    ),
]


class Batch:
    def __init__(self, app: App, mode: str, marker: str, secrets: dict[str, str], port: int):
        self.app = app
        self.mode = mode
        self.marker = marker
        self.secrets = secrets
        self.port = port
        self.states: dict[str, dict] = {}
        self.most_marked = 0

    def review(self, name: str) -> Path:
        return self.app.datasite.review_dir(JobRef(DS, name))

    def stdout(self, name: str) -> str:
        return (self.review(name) / "stdout.txt").read_text()

    def stderr(self, name: str) -> str:
        return (self.review(name) / "stderr.txt").read_text()

    def event(self, name: str) -> dict:
        events = State.load(self.app.home.state_file).data["events"]
        [event] = [e for e in events if e["kind"] == "job_finished" and e["job"] == name]
        return event


# Finds the app home as a hostile job would: bwrap's command line (pid 1 inside the
# sandbox) names the bound run folder; without bwrap the job's own folder does.
LINK_JOB = """#!/bin/bash
bound=$(tr '\\0' '\\n' < /proc/1/cmdline 2>/dev/null | grep -m1 '/runs/[^/]*/job$')
case "$bound" in
  */runs/*) home=${bound%/runs/*} ;;
  *) home=${PWD%/runs/*} ;;
esac
echo "app home: $home"
"""


def _new_app(tmp_path: Path, mode: str, **execute: object) -> App:
    app = App(tmp_path).init(
        notify={"enabled": False}, execute={**LIMITS, "sandbox": mode, **execute}
    )
    app.cli("peers", "accept", DS, check=True)
    return app


def _short_timeout_rule(app: App, run_sh: str, seconds: int = SHORT_TIMEOUT) -> None:
    """Auto-approve the job whose run.sh is ``run_sh``, with a timeout of ``seconds``."""
    app.set_config(
        approve={
            "auto_approvals": [
                {
                    "name": "short-timeout",
                    "peers": [DS],
                    "files": {
                        "run.sh": sha256_bytes(run_sh.encode()),
                        "code/script.sh": sha256_bytes(b"echo hello\n"),
                    },
                    "timeout": seconds,
                }
            ]
        }
    )


def _submit_and_approve(app: App, jobs: dict[str, str]) -> None:
    for name, run_sh in jobs.items():
        app.submit(name, run_sh=run_sh)
    assert app.run_pass().exit_code == 0
    # In-process approval (the CLI path is tested elsewhere) keeps the batch quick;
    # a job a rule approved in the pass above keeps that approval (and its timeout).
    with changing(app.home, "test approvals") as ctx:
        for name in jobs:
            if ctx.state.job(DS, name)["status"] == "pending":
                decisions.approve_job(ctx, JobRef(DS, name), "manual")


@pytest.fixture(scope="module", params=MODES)
def batch(request, tmp_path_factory):
    mode = request.param
    app = _new_app(tmp_path_factory.mktemp(f"hostile-{mode}"), mode)
    marker = f"syftbg-hostile-{uuid.uuid4().hex[:12]}"
    secrets = {
        "token": f"token-{uuid.uuid4().hex}",
        "env": f"password-{uuid.uuid4().hex}",
    }
    token_file = app.home.root / TOKEN_NAME
    token_file.write_text(f'{{"refresh_token": "{secrets["token"]}"}}')
    token_file.chmod(0o600)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    # Paths a job can only reach by name when nothing isolates it.
    named_paths = [str(token_file), str(app.home.config_file)] if mode == "bwrap" else []
    # Only bwrap can refuse these; without it they would really be written.
    escape_targets = []
    if mode == "bwrap":
        escape_targets = [
            "/usr/escaped-by-job",
            str(app.home.root / "escaped-by-job"),
            str(app.root / "escaped-by-job"),
            "/escaped-by-job",
            "../escaped-by-job",
        ]
    # Host folders a job could point its outputs at (any folder of the data owner).
    secrets["planted"] = f"planted-{uuid.uuid4().hex}"
    for rel in ("private/outputs", "private2/code/outputs"):
        (app.home.root / rel).mkdir(parents=True)
        (app.home.root / rel / "secret.txt").write_text(secrets["planted"])
    jobs = {
        "linkout": LINK_JOB + 'rm -rf code/outputs\nln -s "$home" code/outputs && echo linked\n',
        "linkcode": LINK_JOB + 'mv code code.real\nln -s "$home/private" code && echo linked\n',
        "linkjob": LINK_JOB
        + 'cd ..\nif mv job job.real; then ln -s "$home/private2" job && echo linked; '
        "else echo refused; fi\n",
        "tree": script("tree.sh", marker=f"{marker}-tree"),
        "leftovers": script("leftovers.sh", marker=f"{marker}-left"),
        "memory": script("memory.sh"),
        "flood": script("flood.sh", bytes=20_000_000),
        "snoop": script("snoop.sh", token_name=TOKEN_NAME, paths=" ".join(named_paths)),
        "escape": script("escape.sh", targets=" ".join(escape_targets), port=port),
        "cpu": script("cpu.sh"),
        "bigfile": script("bigfile.sh", megabytes=10),
    }
    result = Batch(app, mode, marker, secrets, port)
    _short_timeout_rule(app, jobs["tree"])
    with pytest.MonkeyPatch.context() as patch:
        # The pass runs with a secret in its environment, as with notify.smtp.password_env.
        patch.setenv("SYFT_BG_SMTP_PASSWORD", secrets["env"])
        with job_user_alone(), ProcessSampler(f"{marker}-tree") as tree:
            _submit_and_approve(app, jobs)
            result.states = run_until_finished(app, list(jobs))
        result.most_marked = tree.most
    listener.close()
    yield result


def test_a_timed_out_job_and_all_it_started_are_killed(batch):
    assert batch.states["tree"]["status"] == "failed"
    assert batch.event("tree")["reason"] == f"timed out after {SHORT_TIMEOUT} s"
    assert batch.states["tree"]["return_code"] == -1
    assert "tree started" in batch.stdout("tree")
    # Children, grandchildren, setsid, nohup and double-forked processes all ran...
    assert batch.most_marked >= 6
    # ...and none of them is left.
    assert marked_processes(f"{batch.marker}-tree") == []


def test_processes_a_finished_job_left_behind_are_killed(batch):
    assert batch.states["leftovers"]["status"] == "done"
    assert "left some processes behind" in batch.stdout("leftovers")
    assert marked_processes(f"{batch.marker}-left") == []


def test_a_memory_hog_is_stopped_by_the_memory_limit(batch):
    state = batch.states["memory"]
    assert state["status"] == "failed"
    assert "held" not in batch.stdout("memory")
    assert "cannot allocate" in batch.stderr("memory")
    assert "out of memory? (execute.memory_mb = 64)" in batch.event("memory")["reason"]


def test_an_output_flood_is_capped_keeping_head_and_tail(batch):
    assert batch.states["flood"]["status"] == "done"
    out = (batch.review("flood") / "stdout.txt").read_bytes()
    cap = LIMITS["output_cap_kb"] * 1024
    assert len(out) <= cap + 200
    text = out.decode()
    assert text.startswith("FIRST-LINE\nflood flood")
    assert text.rstrip().endswith("LAST-LINE")
    assert "syft-bg cut" in text and "bytes of output here" in text
    cut = int(text.split("syft-bg cut ")[1].split()[0])
    assert cut + len(out) > 20_000_000
    assert batch.stderr("flood") == "stderr-start\n"


def test_a_job_finds_no_secrets_of_the_data_owner(batch):
    out = batch.stdout("snoop") + batch.stderr("snoop")
    assert "== end" in out  # it ran to the end
    assert batch.secrets["env"] not in out
    assert batch.secrets["token"] not in out
    assert "SYFT_BG_SMTP_PASSWORD" not in out
    assert "SYFT_BG_HOME" not in out
    env = out.split("== env\n")[1].split("== home")[0]
    names = {line.split("=", 1)[0] for line in env.splitlines() if "=" in line}
    assert names <= {
        "PATH",
        "HOME",
        "TMPDIR",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TZ",
        "PYTHONUNBUFFERED",
        "SYFT_IS_IN_JOB",
        "SYFTBOX_EMAIL",
        "SYFT_BG_RUN",
        "PWD",
        "SHLVL",
        "_",
        "OLDPWD",
    }, names
    [home] = [line[5:] for line in env.splitlines() if line.startswith("HOME=")]
    assert home == "/sandbox/home" if batch.mode == "bwrap" else home.endswith("/home")
    assert home == "/sandbox/home" or Path(home).parent.parent == batch.app.home.runs_dir


def test_network_off_means_no_connection_even_to_localhost(batch):
    assert batch.states["escape"]["status"] == "done"
    assert "NO-NETWORK" in batch.stdout("escape")
    assert "CONNECTED" not in batch.stdout("escape")


def test_cpu_and_file_size_limits_stop_a_job(batch):
    assert batch.states["cpu"]["status"] == "failed"
    assert batch.event("cpu")["reason"] == (
        "stopped by the CPU time limit (execute.cpu_seconds = 1)"
    )
    assert batch.states["bigfile"]["status"] == "failed"
    assert "file size limit (execute.file_size_mb = 2)" in batch.event("bigfile")["reason"]
    assert "wrote it all" not in batch.stdout("bigfile")
    [big] = batch.app.home.runs_dir.glob("*/job/big.bin")
    assert big.stat().st_size == LIMITS["file_size_mb"] * 1024 * 1024


def test_with_bwrap_a_job_cannot_write_outside_its_folder(batch):
    if batch.mode != "bwrap":
        pytest.skip("without bwrap a job can write wherever the app's user can (status warns)")
    out = batch.stdout("escape")
    assert "WROTE" not in out
    assert out.count("refused") == 5
    assert not Path("/usr/escaped-by-job").exists()
    assert not (batch.app.home.root / "escaped-by-job").exists()
    assert not (batch.app.root / "escaped-by-job").exists()
    assert not Path("/escaped-by-job").exists()
    assert (batch.review("escape") / "outputs" / "ok.txt").read_text() == "inside\n"


def test_with_bwrap_a_job_sees_nothing_of_the_app_home(batch):
    if batch.mode != "bwrap":
        pytest.skip("without bwrap the app home is readable by path (status warns)")
    out = batch.stdout("snoop") + batch.stderr("snoop")
    assert f"== {batch.app.home.root / TOKEN_NAME}" in out
    assert "No such file or directory" in out
    assert batch.app.do_email not in out.replace(f"SYFTBOX_EMAIL={batch.app.do_email}", "")


@pytest.mark.parametrize(
    ("name", "what"),
    [("linkout", "code/outputs"), ("linkcode", "code"), ("linkjob", "the job folder")],
)
def test_a_job_cannot_publish_the_owners_folders_by_linking_its_outputs(batch, name, what):
    out = batch.stdout(name)
    assert f"app home: {batch.app.home.root}" in out  # it found where the app home is
    review = batch.review(name)
    published = "\n".join(p.read_text(errors="replace") for p in review.rglob("*") if p.is_file())
    assert batch.secrets["planted"] not in published
    assert batch.secrets["token"] not in published
    assert not any((review / "outputs").iterdir())
    if name == "linkjob" and batch.mode == "bwrap":
        assert "refused" in out  # its folder is a mount point it cannot replace
        return
    assert "linked" in out
    assert batch.states[name]["status"] == "failed"
    reason = batch.event(name)["reason"]
    assert reason == f"its outputs were not published: {what} is a link or not a folder"
    assert reason in batch.stderr(name)


@pytest.mark.parametrize("mode", MODES)
def test_network_on_lets_a_job_connect(tmp_path, mode):
    app = _new_app(tmp_path, mode, network=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    with job_user_alone():
        _submit_and_approve(app, {"online": script("escape.sh", targets="", port=port)})
        run_until_finished(app, "online")
    listener.close()
    out = app.datasite.review_dir(JobRef(DS, "online")) / "stdout.txt"
    assert "CONNECTED" in out.read_text()


@pytest.mark.parametrize("mode", MODES)
def test_a_fork_bomb_is_bounded_and_cleaned_up(tmp_path, mode):
    app = _new_app(tmp_path, mode, max_processes=32)
    marker = f"syftbg-bomb-{uuid.uuid4().hex[:12]}"
    bomb = script("forkbomb.sh", marker=marker)
    _short_timeout_rule(app, bomb, BOMB_TIMEOUT)
    with job_user_alone(), ProcessSampler(marker) as sampler:
        _submit_and_approve(app, {"bomb": bomb})
        state = run_until_finished(app, "bomb")["bomb"]
    most = sampler.most

    assert state["status"] == "failed"
    events = State.load(app.home.state_file).data["events"]
    [event] = [e for e in events if e["kind"] == "job_finished"]
    assert event["reason"].startswith(("timed out", "stopped: it ran"))
    assert most > 1 or event["reason"].startswith("stopped: it ran")  # it did fork
    if mode == "bwrap":
        # As nobody inside bwrap, RLIMIT_NPROC holds it at max_processes.
        assert most <= 32 + 2, most
    assert marked_processes(marker) == []
    # The machine is fine: this process can still start others.
    assert subprocess.run(["true"]).returncode == 0
