"""Hostile jobs, run for real: with bwrap (where it works) and without it.

Each sandbox mode runs one batch of hostile jobs side by side (to keep the
suite quick); the tests then look at what each job achieved. The fork bomb
runs on its own, so it cannot starve the others.

The job runs here count on RLIMIT_NPROC, which counts every process of the
job user (``nobody`` when the suite runs as root): they hold ``job_user_alone``
so that no other test's fork bomb runs beside them.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import PATIENCE, App, job_user_alone
from hostile import ProcessSampler, marked_processes, run_until_finished, script

from syft_bg_app.approval import decisions
from syft_bg_app.datasite.jobfiles import sha256_bytes
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.execution import sandbox
from syft_bg_app.session import changing
from syft_bg_app.store.state import State

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
    "network": "off",
}

_PROBE = sandbox.probe_bwrap(network="off")
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


# A job that knows (or guessed) where the app home is: nothing in its sandbox
# tells it (test_a_job_learns_no_path_of_the_data_owner).
LINK_JOB = """#!/bin/bash
home=__HOME__
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
    # Paths a job can only reach by name when nothing isolates it: bwrap hides them,
    # and without bwrap a root app's job runs as a uid of its own that may not read them.
    isolated = mode == "bwrap" or os.geteuid() == 0
    named_paths = [str(token_file), str(app.home.config_file), str(app.home.state_file)]
    named_paths = named_paths if isolated else []
    # Only isolation can refuse these; without it they would really be written.
    escape_targets = []
    if isolated:
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
    link_job = LINK_JOB.replace("__HOME__", shlex.quote(str(app.home.root)))
    jobs = {
        "linkout": link_job + 'rm -rf code/outputs\nln -s "$home" code/outputs && echo linked\n',
        "linkcode": link_job + 'mv code code.real\nln -s "$home/private" code && echo linked\n',
        "linkjob": link_job
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
        "paths": script("paths.sh"),
        "userns": script("userns.sh"),
        # Runs beside "holder" and reads what it can of it and of the app home.
        "neighbours": script(
            "neighbours.sh",
            wait=1,
            runs=shlex.quote(str(app.home.runs_dir)),
            paths=" ".join(named_paths),
        ),
        "holder": f"#!/bin/bash\n# {secrets.setdefault('holder', uuid.uuid4().hex)}\nsleep 2.5\n",
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
        "UV_LINK_MODE",
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
    # Once published, a run's working copy is gone: finished runs hold no disk.
    assert not list(batch.app.home.runs_dir.glob("*/job"))


def _skip_unless_isolated(batch) -> None:
    if batch.mode != "bwrap" and os.geteuid() != 0:
        pytest.skip("without bwrap an ordinary user's job can do what that user can (status says)")


def test_an_isolated_job_cannot_write_outside_its_folder(batch):
    _skip_unless_isolated(batch)
    out = batch.stdout("escape")
    assert "WROTE" not in out
    assert out.count("refused") == 5
    assert not Path("/usr/escaped-by-job").exists()
    assert not (batch.app.home.root / "escaped-by-job").exists()
    assert not (batch.app.root / "escaped-by-job").exists()
    assert not Path("/escaped-by-job").exists()
    assert (batch.review("escape") / "outputs" / "ok.txt").read_text() == "inside\n"


def test_an_isolated_job_reads_nothing_of_the_app_home(batch):
    _skip_unless_isolated(batch)
    out = batch.stdout("snoop") + batch.stderr("snoop")
    assert f"== {batch.app.home.root / TOKEN_NAME}" in out
    assert f"== {batch.app.home.state_file}" in out
    # bwrap shows no such file; a root app's job without bwrap may not open it.
    denied = "No such file or directory" if batch.mode == "bwrap" else "Permission denied"
    assert out.count(denied) >= 3
    assert batch.secrets["token"] not in out
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
    if name == "linkjob" and (batch.mode == "bwrap" or os.geteuid() == 0):
        # Its folder is a mount point, or (a uid of its own) in a folder it cannot write.
        assert "refused" in out
        return
    assert "linked" in out
    assert batch.states[name]["status"] == "failed"
    reason = batch.event(name)["reason"]
    assert reason == f"its outputs were not published: {what} is a link or not a folder"
    assert reason in batch.stderr(name)


@pytest.mark.parametrize("mode", MODES)
def test_host_network_lets_a_job_connect(tmp_path, mode):
    app = _new_app(tmp_path, mode, network="host")
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
        # As nobody inside bwrap, RLIMIT_NPROC holds it at max_processes. A scan of
        # /proc is not atomic: while the bomb churns, a child that exits and the one
        # forked in its place can both be counted, so the bound is twice the limit
        # (an unlimited bomb reaches hundreds within the timeout).
        assert most <= 2 * 32, most
    assert marked_processes(marker) == []
    # The machine is fine: this process can still start others.
    assert subprocess.run(["true"]).returncode == 0


def test_a_job_never_runs_as_root(batch):
    out = batch.stdout("neighbours")
    [uid] = [line.split()[1] for line in out.splitlines() if line.startswith("uid ")]
    if os.geteuid() == 0:
        assert uid != "0"
    else:
        assert uid == str(os.geteuid())


def test_a_job_reads_nothing_of_a_job_running_beside_it(batch):
    _skip_unless_isolated(batch)
    out = batch.stdout("neighbours") + batch.stderr("neighbours")
    assert batch.states["holder"]["status"] == "done"
    assert "== end" in out
    assert batch.secrets["holder"] not in out
    assert batch.secrets["token"] not in out
    assert "SYFT_BG_RUN=" not in out  # no other process's environment
    # It cannot list the folder of the runs either.
    state = State.load(batch.app.home.state_file)
    assert Path(state.job(DS, "holder")["run_dir"]).name not in out


def test_a_job_learns_no_path_of_the_data_owner(batch):
    """bwrap's options reach it through a descriptor and its folders are mounted at fixed
    paths from outside the app home: /proc/1/cmdline, mountinfo and the environment name
    neither the app home, nor the SyftBox folder, nor the data owner's home."""
    if batch.mode != "bwrap":
        pytest.skip("without bwrap there is no pid 1 or mount table of the job's own")
    out = batch.stdout("paths") + batch.stderr("paths")
    assert "== end" in out
    pid1 = out.split("== pid 1\n")[1].split()
    assert pid1[1:4:2] == ["--args", "--"], pid1
    assert "/proc/self/mountinfo" not in out  # it read the table, not an error
    for secret_place in (batch.app.home.root, batch.app.root, batch.app.home.root.parent):
        assert str(secret_place) not in out
    assert f"{Path.home()}/" not in out
    assert "/sandbox/job" in out.split("== cwd")[1]


def test_a_job_in_bwrap_cannot_make_user_namespaces(batch):
    if batch.mode != "bwrap":
        pytest.skip("without bwrap nothing takes user namespaces from a job")
    out = batch.stdout("userns")
    assert "== end" in out
    assert "MADE" not in out
    assert out.count("refused") == 3
