"""Auto-approval of jobs submitted by the real syft-job client."""

from __future__ import annotations

import shutil

import pytest
from freezegun import freeze_time

from syft_bg_app.datasite.layout import JobRef

syft_job = pytest.importorskip("syft_job")

DS = "alice@uni.edu"
SCRIPT = "#!/bin/bash\necho mean age: 42\n"


@pytest.fixture
def alice(app):
    app.set_config(execute={"enabled": False})
    app.cli("peers", "accept", DS, check=True)
    (app.root / DS).mkdir(parents=True, exist_ok=True)
    return syft_job.get_client(str(app.root), DS)


def _syft_job_view(app) -> dict:
    client = syft_job.get_client(str(app.root), app.do_email)
    return {job.name: job for job in client.jobs}


def test_a_rule_from_a_submitted_job_approves_it_and_identical_resubmissions_only(app, alice):
    alice.submit_bash_job(app.do_email, SCRIPT, "mean-age")
    app.run_pass()
    assert app.job_state("mean-age")["status"] == "pending"

    out = app.cli("auto-approve", "--from-job", f"{DS}/mean-age", check=True).stdout
    assert "created rule 'mean-age'" in out and "[live]" in out
    [rule] = app.config.get("approve.auto_approvals")
    assert set(rule["files"]) == {"run.sh", "code/script.sh"}
    assert rule["peers"] == [DS]

    alice.submit_bash_job(app.do_email, SCRIPT, "mean-age-again")
    alice.submit_bash_job(app.do_email, SCRIPT.replace("42", "43"), "mean-age-changed")
    alice.submit_bash_job(app.do_email, SCRIPT + " ", "mean-age-trailing-space")
    app.run_pass()

    assert app.job_state("mean-age")["status"] == "approved"
    assert app.job_state("mean-age-again")["status"] == "approved"
    assert app.job_state("mean-age-changed")["status"] == "pending"
    assert app.job_state("mean-age-trailing-space")["status"] == "pending"
    seen = _syft_job_view(app)
    assert seen["mean-age-again"].status == "approved"
    assert seen["mean-age-again"].approval_method == "auto"
    assert seen["mean-age-changed"].status == "pending"
    audit = app.cli("audit", "mean-age-changed", check=True).stdout
    assert "left pending" in audit and "rule 'mean-age'" in audit and "differ" in audit


def test_another_scientist_sending_the_same_script_is_not_covered_by_the_rule(app, alice):
    bob_email = "bob@co.com"
    app.cli("peers", "accept", bob_email, check=True)
    (app.root / bob_email).mkdir(parents=True, exist_ok=True)
    bob = syft_job.get_client(str(app.root), bob_email)
    alice.submit_bash_job(app.do_email, SCRIPT, "mean-age")
    app.run_pass()
    app.cli("auto-approve", "--from-job", "mean-age", "-n", "mean", check=True)

    bob.submit_bash_job(app.do_email, SCRIPT, "mean-age")
    app.run_pass()

    assert app.job_state("mean-age", ds_email=DS)["status"] == "approved"
    assert app.job_state("mean-age", ds_email=bob_email)["status"] == "pending"


@pytest.mark.filterwarnings("ignore::UserWarning")  # syft-job: no install source advertised
def test_a_folder_job_with_an_empty_file_is_the_same_job_synced_or_not(app, alice, tmp_path):
    """syft-job lists every file, an empty __init__.py too; sync clients never deliver
    empty files. Such a job is received after the grace, and a rule made from the
    reviewed code (which leaves empty files out) approves it synced or written in place."""
    app.set_config(sync={"incomplete_grace": 60})
    code = tmp_path / "analysis"
    (code / "stats").mkdir(parents=True)
    (code / "main.py").write_text("from stats.mean import mean\nprint(mean([1, 2, 3]))\n")
    (code / "stats" / "mean.py").write_text("def mean(xs):\n    return sum(xs) / len(xs)\n")
    (code / "stats" / "__init__.py").write_text("")
    alice.submit_python_job(app.do_email, str(code), "synced", entrypoint="main.py")
    synced = app.datasite.inbox / DS / "v1" / "synced"
    (synced / "code" / "stats" / "__init__.py").unlink()  # as a sync client delivers it

    with freeze_time("2026-11-22 10:00:00"):
        app.run_pass()
    assert not (app.datasite.review_dir(JobRef(DS, "synced")) / "state.yaml").exists()
    with freeze_time("2026-11-22 10:01:01"):
        app.run_pass()
    assert app.job_state("synced")["status"] == "pending"
    shown = app.cli("jobs", "show", f"{DS}/synced", check=True).stdout
    assert "never arrived (sync clients skip empty files): code/stats/__init__.py" in shown

    reviewed = tmp_path / "reviewed"
    shutil.copytree(code, reviewed / "code")
    (reviewed / "run.sh").write_bytes((synced / "run.sh").read_bytes())
    out = app.cli(
        "auto-approve",
        "run.sh",
        "code",
        "-b",
        str(reviewed),
        "-n",
        "analysis",
        "-p",
        DS,
        check=True,
    ).stdout
    assert "skipped empty file code/stats/__init__.py" in out
    [rule] = app.config.get("approve.auto_approvals")
    assert set(rule["files"]) == {"run.sh", "code/main.py", "code/stats/mean.py"}

    alice.submit_python_job(app.do_email, str(code), "in-place", entrypoint="main.py")
    assert (app.datasite.inbox / DS / "v1" / "in-place" / "code/stats/__init__.py").exists()
    with freeze_time("2026-11-22 10:02:00"):
        app.run_pass()

    assert app.job_state("synced")["status"] == "approved"
    assert app.job_state("in-place")["status"] == "approved"
