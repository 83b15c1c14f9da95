"""The data scientist's notebook calls: submit_script, description and tags,
wait_for_completion against passes in another process, logs, outputs, help."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings

import pytest
import yaml
from conftest import PATIENCE

import syft_bg_app as bg
from syft_bg_app.actions import ds
from syft_bg_app.errors import UsageError

syft_job = pytest.importorskip("syft_job")

DS = "alice@uni.edu"
SCRIPT = (
    "import os\n"
    "os.makedirs('outputs', exist_ok=True)\n"
    "open('outputs/answer.txt', 'w').write('42')\n"
    "print('computed the answer')\n"
)


def _submit_script(app, name="answer", **kwargs):
    return bg.submit_script(
        app.do_email, SCRIPT, name=name, as_email=DS, syftbox_root=app.root, **kwargs
    )


def test_submit_script_keeps_description_and_tags_and_syft_job_still_reads_it(app):
    app.cli("peers", "accept", DS, check=True)
    sub = _submit_script(app, description="The answer <b>to</b> it all", tags=["demo", "age"])

    config = yaml.safe_load((sub.path / "config.yaml").read_text())
    assert config["description"] == "The answer <b>to</b> it all"
    assert config["tags"] == ["demo", "age"]
    assert (sub.path / "code" / "main.py").read_text() == SCRIPT
    assert app.run_pass().exit_code == 0
    # syft-job's own client lists the job as usual.
    (listed,) = [j for j in syft_job.get_client(str(app.root), app.do_email).jobs]
    assert listed.name == "answer" and listed.status == "pending"
    assert listed.job_metadata.type == "python"

    shown = app.cli("jobs", "show", f"{DS}/answer", "--json", check=True).stdout
    page = json.loads(shown)
    assert page["description"] == "The answer <b>to</b> it all"
    assert page["tags"] == ["demo", "age"]
    text = app.cli("jobs", "show", f"{DS}/answer", "--files", check=True).stdout
    assert "description: The answer <b>to</b> it all" in text and "tags: demo, age" in text
    html = bg.job(f"{DS}/answer")._repr_html_()
    assert "The answer &lt;b&gt;to&lt;/b&gt; it all" in html and "<b>to</b>" not in html


def test_jobs_list_by_tag_from_the_cli_and_the_api(app):
    app.cli("peers", "accept", DS, check=True)
    _submit_script(app, name="tagged", tags=["census"])
    _submit_script(app, name="other", tags=["weather"])
    _submit_script(app, name="untagged")
    app.run_pass()

    listed = app.cli("jobs", "list", "--tag", "census", check=True).stdout
    assert "tagged census" in listed and f"{DS}/tagged" in listed
    assert "other" not in listed and "untagged" not in listed
    as_json = json.loads(app.cli("jobs", "list", "--tag", "census", "--json", check=True).stdout)
    assert [j["job"] for j in as_json] == [f"{DS}/tagged"]
    assert [j.name for j in bg.jobs(tag="census")] == ["tagged"]
    assert [j.name for j in bg.jobs("pending", tag="weather")] == ["other"]
    assert bg.jobs(tag="nothing") == []


def test_the_submit_command_takes_a_description_and_tags(app, tmp_path):
    script = tmp_path / "count.py"
    script.write_text("print(42)\n")
    command = app.cli(
        "submit", app.do_email, str(script), "--as", DS, "-d", "counts", "-t", "a", "--tag", "b"
    )
    assert command.returncode == 0, command.stderr
    config = yaml.safe_load((app.datasite.inbox / DS / "v1" / "count" / "config.yaml").read_text())
    assert config["description"] == "counts" and config["tags"] == ["a", "b"]
    refused = app.cli("submit", app.do_email, str(script), "--as", DS, "-n", "x", "-t", "a\tb")
    assert refused.returncode == 2 and "tag" in refused.stderr
    assert not (app.datasite.inbox / DS / "v1" / "x").exists()


def test_bad_descriptions_and_tags_are_refused_and_nothing_is_written(app):
    for kwargs in ({"tags": [""]}, {"tags": ["a\nb"]}, {"tags": [3]}, {"description": "x" * 5000}):
        with pytest.raises(ds.SubmitError):
            _submit_script(app, name="bad", **kwargs)
    with pytest.raises(ds.SubmitError, match="language"):
        _submit_script(app, name="bad", language="ruby")
    with pytest.raises(ds.SubmitError, match="empty"):
        bg.submit_script(app.do_email, "  \n", name="bad", as_email=DS, syftbox_root=app.root)
    assert not (app.datasite.inbox / DS / "v1" / "bad").exists()


def test_wait_for_completion_follows_passes_run_by_another_process(app):
    app.cli("peers", "accept", DS, check=True)
    sub = _submit_script(app, description="waits")
    app.run_pass()
    app.cli("jobs", "approve", f"{DS}/answer", check=True)
    passes = subprocess.Popen(
        [
            "bash",
            "-c",
            f"while true; do {sys.executable} -m syft_bg_app run --once >/dev/null; "
            "sleep 0.2; done",
        ],
        env=app.env,
        start_new_session=True,
    )
    try:
        job = bg.wait_for_completion(sub, timeout=PATIENCE, poll=0.1)
    finally:
        os.killpg(passes.pid, signal.SIGKILL)  # the loop and the pass it runs
        passes.wait()
    assert job.status == "done"
    logs = job.logs()
    assert "computed the answer" in logs.stdout and logs.return_code == 0
    assert job.output("answer.txt").read_text() == "42"
    same = bg.wait_for_completion(f"{app.do_email}/answer", as_email=DS, syftbox_root=app.root)
    assert same.status == "done" and same.description == "waits"


def test_wait_for_completion_times_out_with_the_last_status(app):
    sub = _submit_script(app)
    with pytest.raises(ds.WaitTimeout) as caught:
        bg.wait_for_completion(sub, timeout=0.3, poll=0.1)
    assert caught.value.status == "received"
    assert "received" in str(caught.value)
    app.cli("peers", "accept", DS, check=True)
    app.run_pass()
    app.cli("jobs", "reject", f"{DS}/answer", "-r", "not today", check=True)
    job = bg.wait_for_completion(sub, timeout=0, poll=0.1)
    assert job.status == "rejected" and job.reason == "not today"


def test_outputs_are_read_only_inside_the_results_and_never_through_a_link(app, tmp_path):
    sub = _submit_script(app)
    job = ds.refresh(sub)
    with pytest.raises(UsageError, match="inside"):
        job.output("../state.yaml")
    outputs = job.review_dir / "outputs"
    outputs.mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (outputs / "link.txt").symlink_to(secret)
    with pytest.raises(Exception, match="link"):
        job.output("link.txt")
    with pytest.raises(Exception, match="no output"):
        job.output("missing.csv")
    assert job.logs() == ds.JobLogs(None, None, None)


def test_help_names_every_data_scientist_call():
    text = repr(bg.help())
    for call in ("submit_script", "submit(", "wait_for_completion", "logs()", "output(", "my_jobs"):
        assert call in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "submit_script" in bg.help()._repr_html_()
