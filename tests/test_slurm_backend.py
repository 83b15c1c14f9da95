"""The Slurm backend against a real single-machine Slurm (tests/slurm_cluster.py).

Tests marked ``slow`` wait for Slurm's own clocks (a time limit is whole minutes and
its kill comes up to half a minute late) or for fifty jobs on a two-CPU node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import PATIENCE, wait_until
from slurm_cluster import NODE_MEMORY_MB, SlurmCluster, slurm_cluster_fixture  # noqa: F401

from syft_bg_app.config.load import config_from_values, load_config
from syft_bg_app.errors import ConfigError
from syft_bg_app.execution.backends import slurm as backend

DO_EMAIL = "owner@datasite.org"


@pytest.fixture
def cluster(slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """The test cluster, named by SLURM_CONF as a cluster's own config would be."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    return slurm_cluster


def _script(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "batch.sh"
    script.write_text("#!/bin/bash\n" + body)
    script.chmod(0o755)
    return script


def _submit(cluster: SlurmCluster, run_dir: Path, body: str, **options) -> str:
    script = _script(run_dir, body)
    options.setdefault("time_limit_s", 600)
    return backend.submit(script, run_dir, partition=cluster.partition, mem_mb=64, **options)


def _final(job_id: str, limit: float = PATIENCE) -> backend.ClusterState:
    def ended():
        seen = backend.state(job_id)
        return seen if seen.finished else None

    return wait_until(ended, f"Slurm job {job_id} to end", limit)


def test_a_submitted_script_runs_to_completed_with_its_output(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    # '%' and spaces in the run folder reach the files as written, not as sbatch patterns.
    run_dir = tmp_path / "run %j 100%"
    job_id = _submit(cluster, run_dir, "echo out-line\necho err-line >&2\npwd > where.txt\n")
    assert job_id.isdigit()
    final = _final(job_id)
    assert (final.state, final.exit_code, final.slurm_state) == ("completed", 0, "COMPLETED")
    assert (run_dir / backend.STDOUT_NAME).read_text() == "out-line\n"
    assert (run_dir / backend.STDERR_NAME).read_text() == "err-line\n"
    assert (run_dir / "where.txt").read_text().strip() == str(run_dir)


def test_a_script_exiting_3_is_failed_with_exit_code_3(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    final = _final(_submit(cluster, tmp_path / "run", "exit 3\n"))
    assert (final.state, final.exit_code) == ("failed", 3)
    assert final.reason == "NonZeroExitCode"


def test_the_job_gets_the_allow_listed_environment_and_nothing_else(
    cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYFT_BG_TEST_SECRET", "owner-token")
    run_dir = tmp_path / "run"
    allowed = {"ALLOWED": "a,b c\nsecond line", "PATH": "/usr/bin:/bin"}
    job_id = _submit(cluster, run_dir, "env -0 > env.bin\n", env=allowed)
    assert _final(job_id).state == "completed"
    seen = dict(
        item.split("=", 1) for item in (run_dir / "env.bin").read_text().split("\0") if item
    )
    assert seen["ALLOWED"] == allowed["ALLOWED"]
    assert seen["PATH"] == "/usr/bin:/bin"
    assert "SYFT_BG_TEST_SECRET" not in seen
    # Nothing of the submitting user's login environment either (--get-user-env).
    for name in ("HOME", "USER", "LOGNAME", "MAIL", "SHELL"):
        assert name not in seen, name
    extra = {
        name
        for name in seen
        if not name.startswith("SLURM")
        and name not in {*allowed, "ENVIRONMENT", "HOSTNAME", "TMPDIR", "PWD", "SHLVL", "_"}
    }
    assert extra == set()


@pytest.mark.slow
def test_a_job_past_its_time_limit_ends_timeout(cluster: SlurmCluster, tmp_path: Path) -> None:
    # 5 s becomes Slurm's smallest limit, one minute; the kill comes up to ~30 s later.
    job_id = _submit(cluster, tmp_path / "run", "sleep 900\n", time_limit_s=5)
    wait_until(lambda: backend.state(job_id).state == "running", "the job to start")
    final = _final(job_id)
    assert final.state == "timeout"
    assert final.reason == "TimeLimit"


def test_scancel_from_outside_gives_cancelled(cluster: SlurmCluster, tmp_path: Path) -> None:
    job_id = _submit(cluster, tmp_path / "run", "touch started\nsleep 900\n")
    wait_until(lambda: (tmp_path / "run" / "started").exists(), "the job to start")
    running = backend.state(job_id)
    assert (running.state, running.exit_code) == ("running", None)
    cancelled = cluster.command("scancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert _final(job_id).state == "cancelled"


def test_cancel_stops_a_running_job_and_is_idempotent(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    job_id = _submit(cluster, tmp_path / "run", "touch started\nsleep 900\n")
    wait_until(lambda: (tmp_path / "run" / "started").exists(), "the job to start")
    backend.cancel(job_id)
    assert _final(job_id).state == "cancelled"
    backend.cancel(job_id)
    backend.cancel("987654321")


def test_a_node_failure_ends_the_job_node_fail_and_it_is_not_requeued(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    job_id = _submit(cluster, run_dir, "echo start >> starts.txt\nsleep 900\n")
    wait_until(lambda: (run_dir / "starts.txt").exists(), "the job to start")
    down = cluster.command(
        "scontrol", "update", f"nodename={cluster.node}", "state=down", "reason=test failure"
    )
    assert down.returncode == 0, down.stderr
    try:
        final = _final(job_id)
    finally:
        cluster.command("scontrol", "update", f"nodename={cluster.node}", "state=resume")
        wait_until(
            lambda: (
                cluster.command("sinfo", "-h", "-n", cluster.node, "-o", "%T").stdout.strip()
                == "idle"
            ),
            "the node to be back",
        )
    assert (final.state, final.reason) == ("node_fail", "NodeDown")
    # Never started again by Slurm behind the app's back.
    assert backend.state(job_id).state == "node_fail"
    assert (run_dir / "starts.txt").read_text() == "start\n"


def test_the_state_of_an_unknown_job_is_unknown_not_failed(cluster: SlurmCluster) -> None:
    seen = backend.state("987654321")
    assert seen.state == "unknown"
    assert not seen.finished
    assert "987654321" in seen.reason


def _controller_down(cluster: SlurmCluster, folder: Path, completion_log: str | None) -> Path:
    """A config naming a controller port nothing listens on: the cluster looks down."""
    text = cluster.conf.read_text()
    port = next(line for line in text.splitlines() if line.startswith("SlurmctldPort="))
    text = text.replace(port, "SlurmctldPort=1")
    if completion_log is not None:
        text = text.replace(str(cluster.completion_log), completion_log)
    down = folder / "down.conf"
    down.write_text(text)
    return down


def test_a_finished_job_is_read_from_the_completion_log_once_the_controller_cannot_tell(
    cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _submit(cluster, tmp_path / "run", "exit 3\n")
    assert _final(job_id).state == "failed"
    monkeypatch.setenv("SLURM_CONF", str(_controller_down(cluster, tmp_path, None)))
    seen = backend.state(job_id, timeout_s=5)
    assert (seen.state, seen.exit_code, seen.slurm_state) == ("failed", 3, "FAILED")


def test_a_cluster_that_does_not_answer_gives_unknown_and_typed_errors(
    cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _submit(cluster, tmp_path / "run", "true\n")
    _final(job_id)
    down = _controller_down(cluster, tmp_path, str(tmp_path / "no-completion-log"))
    monkeypatch.setenv("SLURM_CONF", str(down))
    seen = backend.state(job_id, timeout_s=5)
    assert seen.state == "unknown"
    assert "squeue did not answer in 5 s" in seen.reason
    other = tmp_path / "other"
    with pytest.raises(backend.SlurmUnavailableError, match="sbatch"):
        backend.submit(_script(other, "true\n"), other, time_limit_s=60, timeout_s=5)
    # Where the commands are not installed at all.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert backend.state(job_id).state == "unknown"
    with pytest.raises(backend.SlurmUnavailableError, match="sbatch is not installed"):
        backend.submit(_script(tmp_path / "third", "true\n"), tmp_path / "third", time_limit_s=60)


@pytest.mark.slow
def test_fifty_submissions_at_once_all_complete(cluster: SlurmCluster, tmp_path: Path) -> None:
    def one(number: int) -> str:
        return _submit(cluster, tmp_path / f"run{number}", f"echo {number} > done.txt\n")

    with ThreadPoolExecutor(max_workers=10) as pool:
        job_ids = list(pool.map(one, range(50)))
    assert len(set(job_ids)) == 50

    def all_ended():
        seen = backend.states([*job_ids, "987654321"])
        return seen if all(s.finished for s in list(seen.values())[:50]) else None

    seen = wait_until(all_ended, "fifty Slurm jobs to end")
    assert seen["987654321"].state == "unknown"
    for number, job_id in enumerate(job_ids):
        assert (seen[job_id].state, seen[job_id].exit_code) == ("completed", 0), number
        assert (tmp_path / f"run{number}" / "done.txt").read_text() == f"{number}\n"


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_bwrap_runs_inside_a_slurm_job(cluster: SlurmCluster, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    bwrap = shutil.which("bwrap")
    body = (
        f"{bwrap} --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib "
        "--symlink usr/lib64 /lib64 --proc /proc --dev /dev --tmpfs /tmp "
        '--bind "$PWD" /sandbox --chdir /sandbox --unshare-all --die-with-parent '
        "/bin/sh -c 'echo inside > inside.txt; echo $$ > pid.txt; ls / > root.txt'\n"
    )
    final = _final(_submit(cluster, run_dir, body, env={"PATH": "/usr/bin:/bin"}))
    assert (final.state, final.exit_code) == ("completed", 0), (
        run_dir / backend.STDERR_NAME
    ).read_text()
    assert (run_dir / "inside.txt").read_text() == "inside\n"
    # Its own PID namespace, and a root holding only what was mounted.
    assert int((run_dir / "pid.txt").read_text()) < 10
    assert "work" not in (run_dir / "root.txt").read_text().split()
    assert "root" not in (run_dir / "root.txt").read_text().split()


def test_sbatch_refuses_what_the_cluster_cannot_give_with_its_reason(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    script = _script(tmp_path / "run", "true\n")
    with pytest.raises(backend.SlurmSubmitError, match="sbatch refused the run"):
        backend.submit(script, tmp_path / "run", time_limit_s=60, partition="no-such-partition")
    with pytest.raises(backend.SlurmSubmitError):
        backend.submit(script, tmp_path / "run", time_limit_s=60, mem_mb=NODE_MEMORY_MB * 64)


@pytest.mark.parametrize(
    "option",
    ["--time=5", "--export=ALL", "--wrap=id", "--output=/tmp/x", "-p debug", "--qos", "--a=b\nc"],
)
def test_extra_options_that_are_not_name_value_or_set_by_the_app_are_refused(
    option: str, tmp_path: Path
) -> None:
    assert backend.sbatch_option_problem(option)
    with pytest.raises(backend.SlurmOptionError):
        backend.submit(
            _script(tmp_path, "true\n"), tmp_path, time_limit_s=60, extra_options=[option]
        )
    assert backend.sbatch_option_problem("--qos=normal") is None


def test_time_limits_are_rounded_up_to_whole_minutes() -> None:
    assert [backend.time_limit_minutes(s) for s in (1, 59, 60, 61, 600, 3601)] == [
        1,
        1,
        1,
        2,
        10,
        61,
    ]


def test_job_ids_and_env_names_are_checked_before_any_command_runs(tmp_path: Path) -> None:
    for bad in ("", "12;rm", "-u", "1 2", "../1"):
        with pytest.raises(backend.SlurmOptionError):
            backend.state(bad)
        with pytest.raises(backend.SlurmOptionError):
            backend.cancel(bad)
    for env in ({"SBATCH_EXPORT": "ALL"}, {"BAD NAME": "x"}, {"X": "a\0b"}):
        with pytest.raises(backend.SlurmOptionError):
            backend.submit(_script(tmp_path, "true\n"), tmp_path, time_limit_s=60, env=env)


def _slurm_config(tmp_path: Path, **slurm) -> object:
    return config_from_values(
        do_email=DO_EMAIL,
        execute={"backend": "slurm", "slurm": {"run_folder": str(tmp_path), **slurm}},
    )


def test_check_cluster_finds_nothing_wrong_with_a_working_cluster(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    assert backend.check_cluster(_slurm_config(tmp_path, partition=cluster.partition)) == []


def test_check_cluster_names_each_problem(
    cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unwritable = tmp_path / "missing"
    problems = backend.check_cluster(
        _slurm_config(unwritable, partition="no-such-partition", sbatch_options=["--qos=x"])
    )
    assert len(problems) == 2, problems
    assert "no partition 'no-such-partition'" in problems[0]
    assert "is not a folder" in problems[1]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    problems = backend.check_cluster(_slurm_config(tmp_path))
    assert len(problems) == 1 and "sbatch, squeue, sacct, scancel not found" in problems[0]


def test_check_cluster_says_when_the_controller_does_not_answer(
    cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(_controller_down(cluster, tmp_path, None)))
    problems = backend.check_cluster(_slurm_config(tmp_path, commands_timeout=5))
    assert problems == ["squeue did not answer in 5 s"]


def test_check_cluster_says_when_the_run_folder_is_not_writable(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root writes anywhere: a read-only mount stands for a folder it may not write.
        folder = Path("/proc/sys")
    else:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o500)
    problems = backend._run_folder_problems(str(folder))
    assert problems and "is not writable" in problems[0]


def test_the_slurm_backend_needs_a_run_folder_and_allowed_sbatch_options(tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"do_email: {DO_EMAIL}\nexecute:\n  backend: slurm\n")
    with pytest.raises(ConfigError) as raised:
        load_config(config_file)
    assert str(raised.value) == (
        f"{config_file}:3: execute.slurm.run_folder: is required with execute.backend: slurm"
    )
    assert raised.value.exit_code == 2
    config_file.write_text(
        f"do_email: {DO_EMAIL}\nexecute:\n  backend: slurm\n  slurm:\n"
        f"    run_folder: {tmp_path}\n    sbatch_options:\n"
        "      - --qos=normal\n      - --time=5\n      - -p debug\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(config_file)
    assert str(raised.value).splitlines() == [
        f"{config_file}:8: execute.slurm.sbatch_options[1]: --time is set by the app itself "
        "(from the job's timeout)",
        f"{config_file}:9: execute.slurm.sbatch_options[2]: must be written --name=value "
        "(e.g. --qos=normal), got '-p debug'",
    ]


def test_the_backend_defaults_to_local_and_slurm_keys_load(tmp_path: Path) -> None:
    plain = config_from_values(do_email=DO_EMAIL)
    assert plain.get("execute.backend") == "local"
    assert plain.get("execute.slurm.run_folder") is None
    config = _slurm_config(tmp_path, partition="gpu", account="lab", sbatch_options=["--qos=x"])
    assert config.get("execute.slurm.partition") == "gpu"
    assert config.get("execute.slurm.sbatch_options") == ["--qos=x"]
    assert config.get("execute.slurm.commands_timeout") == 30
    with pytest.raises(ConfigError, match="execute.slurm.sbatch_options"):
        _slurm_config(tmp_path, sbatch_options=["--time=5"])


def test_without_slurm_the_cluster_tests_are_skipped_saying_why(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:xdist",
            "-p",
            "no:cacheprovider",
            "-rs",
            "-q",
            f"{__file__}::test_the_state_of_an_unknown_job_is_unknown_not_failed",
        ],
        env={**os.environ, "PATH": str(tmp_path)},
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    assert (
        "Slurm is not installed here (munged, mungekey, slurmctld, slurmd, sbatch, squeue, "
        "scontrol, scancel, sacct, sinfo not found; apt-get install slurm-wlm munge)"
    ) in done.stdout
