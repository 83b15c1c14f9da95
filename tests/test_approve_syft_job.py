"""Auto-approval of jobs submitted by the real syft-job client."""

from __future__ import annotations

import pytest

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
