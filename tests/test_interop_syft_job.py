"""The real syft-job client as the data scientist (and as another DO tool)."""

from __future__ import annotations

import pytest

syft_job = pytest.importorskip("syft_job")

DS = "alice@uni.edu"


def _ds_client(app):
    (app.root / DS).mkdir(parents=True, exist_ok=True)
    return syft_job.get_client(str(app.root), DS)


def _do_jobs(app):
    """What syft-job's own listing shows the data owner."""
    client = syft_job.get_client(str(app.root), app.do_email)
    return {job.name: job for job in client.jobs}


def test_a_syft_job_submission_is_received_and_approved_and_syft_job_sees_it(app):
    app.cli("peers", "accept", DS, check=True)
    _ds_client(app).submit_bash_job(app.do_email, "echo hello from alice\n", "hello")

    assert app.run_pass().exit_code == 0
    assert app.job_state("hello")["status"] == "pending"
    listed = app.cli("jobs", "list", check=True).stdout
    assert f"{DS}/hello" in listed and "pending" in listed

    app.cli("jobs", "approve", f"{DS}/hello", check=True)

    job = _do_jobs(app)["hello"]
    assert job.status == "approved"
    assert job.approval_method == "manual"
    assert job.submitted_by == DS


def test_a_rejection_reason_reaches_syft_job(app):
    app.cli("peers", "accept", DS, check=True)
    _ds_client(app).submit_bash_job(app.do_email, "cat /data/raw.csv\n", "raw-dump")
    app.run_pass()

    app.cli("jobs", "reject", "raw-dump", "-r", "prints raw rows", check=True)

    job = _do_jobs(app)["raw-dump"]
    assert job.status == "rejected"
    assert job.review_reason == "prints raw rows"
    state = app.job_state("raw-dump")
    assert state["rejected_by"] == app.do_email


def test_a_python_folder_submission_is_received(app, tmp_path):
    app.cli("peers", "accept", DS, check=True)
    code = tmp_path / "analysis"
    (code / "lib").mkdir(parents=True)
    (code / "main.py").write_text("from lib.stats import mean\nprint(mean([1, 2]))\n")
    (code / "lib" / "stats.py").write_text("def mean(xs):\n    return sum(xs) / len(xs)\n")
    client = _ds_client(app)
    client.peer_install_sources[app.do_email] = "syft-job"
    client.submit_python_job(app.do_email, str(code), "py-folder")
    app.run_pass()
    assert app.job_state("py-folder")["status"] == "pending"
    shown = app.cli("jobs", "show", "py-folder", check=True).stdout
    assert "code/lib/stats.py" in shown and "type: python" in shown


def test_a_job_syft_job_received_first_is_adopted_not_received_again(app):
    app.cli("peers", "accept", DS, check=True)
    app.run_pass()
    _ds_client(app).submit_bash_job(app.do_email, "echo hi\n", "seen-by-syft-job")
    first = _do_jobs(app)["seen-by-syft-job"]  # syft-job's listing receives it itself
    assert first.status == "pending"
    received_at = app.job_state("seen-by-syft-job")["received_at"]

    result = app.run_pass()

    assert "received" not in result.summary
    assert app.job_state("seen-by-syft-job")["received_at"] == received_at
    listed = app.cli("jobs", "list", "--status", "pending", check=True).stdout
    assert "seen-by-syft-job" in listed
