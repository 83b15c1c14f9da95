"""The data scientist's side: ``submit``, ``peers request``, ``jobs mine``.

Submissions are checked with the real syft-job client (what syft-client users
have) and received by a real pass of this app.
"""

from __future__ import annotations

import os
import warnings
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from syft_bg_app.actions import ds
from syft_bg_app.datasite.layout import Datasite
from syft_bg_app.errors import SyftBgError
from syft_bg_app.store.home import AppHome

syft_job = pytest.importorskip("syft_job")

DS = "alice@uni.edu"


def _syft_job_jobs(app) -> dict:
    """The data owner's job listing as syft-job shows it."""
    client = syft_job.get_client(str(app.root), app.do_email)
    return {job.name: job for job in client.jobs}


def _submit(app, *args: str):
    return app.cli("submit", app.do_email, *[str(a) for a in args], "--as", DS)


def _analysis_folder(tmp_path: Path) -> Path:
    code = tmp_path / "analysis"
    (code / "lib").mkdir(parents=True)
    (code / "main.py").write_text(
        "from lib.stats import mean\n"
        "import os\n"
        "os.makedirs('outputs', exist_ok=True)\n"
        "open('outputs/mean.txt', 'w').write(str(mean([1, 2, 3])))\n"
        "print('mean done')\n"
    )
    (code / "lib" / "stats.py").write_text("def mean(xs):\n    return sum(xs) / len(xs)\n")
    # Sync clients never deliver these; listed in the manifest they would keep
    # the job "still arriving" on the data owner's side.
    (code / "lib" / "__init__.py").write_text("")
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "stats.cpython-311.pyc").write_bytes(b"\x00compiled")
    (code / "debug.log").write_text("noise\n")
    return code


def test_a_python_folder_is_listed_by_syft_job_and_received_by_a_pass(app, tmp_path):
    app.cli("peers", "accept", DS, check=True)
    code = _analysis_folder(tmp_path)

    result = _submit(app, code, "--name", "mean-age")

    assert result.returncode == 0, result.stderr
    assert "submitted python job 'mean-age'" in result.stdout
    assert "lib/__init__.py" in result.stdout  # told what was left out
    folder = app.datasite.inbox / DS / "v1" / "mean-age"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "code/lib/stats.py",
        "code/main.py",
        "config.yaml",
        "run.sh",
    ]
    assert app.run_pass().exit_code == 0
    assert app.job_state("mean-age")["status"] == "pending"

    job = _syft_job_jobs(app)["mean-age"]
    assert job.status == "pending"
    assert job.submitted_by == DS
    assert job.job_metadata.type == "python"
    assert job.job_metadata.entrypoint == "main.py"
    assert sorted(job.job_metadata.files) == ["lib/stats.py", "main.py"]
    assert job.job_metadata.is_folder_submission is True
    assert "python3 main.py" in job.run_script


def test_config_yaml_has_exactly_the_fields_syft_job_writes(app, tmp_path):
    script = tmp_path / "count.py"
    script.write_text("print(42)\n")
    (app.root / DS).mkdir(parents=True, exist_ok=True)
    client = syft_job.get_client(str(app.root), DS)
    client.peer_install_sources[app.do_email] = "syft-job"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client.submit_python_job(app.do_email, str(script), "by-syft-job")

    assert _submit(app, script, "--name", "by-syft-bg").returncode == 0

    base = app.datasite.inbox / DS / "v1"
    theirs = yaml.safe_load((base / "by-syft-job" / "config.yaml").read_text())
    ours = yaml.safe_load((base / "by-syft-bg" / "config.yaml").read_text())
    assert sorted(ours) == sorted(theirs)
    for key in ("canonical_name", "version", "type", "entrypoint", "files", "job_type"):
        assert ours[key] == theirs[key], key
    assert ours["is_folder_submission"] is theirs["is_folder_submission"] is False
    assert ours["datasets"] is None and ours["headers"] == {}
    # Same timestamp form: ISO 8601 UTC with a Z.
    assert ours["submitted_at"].endswith("Z")
    datetime.fromisoformat(ours["submitted_at"].replace("Z", "+00:00"))


def test_a_single_python_script(app, tmp_path):
    script = tmp_path / "hello.py"
    script.write_bytes(b"print('hello')\r\n")

    assert _submit(app, script).returncode == 0

    folder = app.datasite.inbox / DS / "v1" / "hello"  # named after the script
    assert (folder / "code" / "hello.py").read_bytes() == b"print('hello')\r\n"  # raw bytes
    app.run_pass()
    job = _syft_job_jobs(app)["hello"]
    assert job.status == "pending"
    assert job.job_metadata.type == "python"
    assert job.job_metadata.files == ["hello.py"]
    assert job.job_metadata.code_path == str(script.resolve())


def test_a_single_bash_script_is_laid_out_as_syft_job_does(app, tmp_path):
    app.cli("peers", "accept", DS, check=True)
    script = tmp_path / "count.sh"
    script.write_text("#!/bin/bash\nwc -l /etc/hostname\n")

    assert _submit(app, script, "--name", "count").returncode == 0

    folder = app.datasite.inbox / DS / "v1" / "count"
    # syft-job's bash jobs: run.sh is the script, code/script.sh a copy.
    assert (folder / "run.sh").read_text() == script.read_text()
    assert (folder / "code" / "script.sh").read_text() == script.read_text()
    assert os.access(folder / "run.sh", os.X_OK)
    app.run_pass()
    assert app.job_state("count")["status"] == "pending"
    job = _syft_job_jobs(app)["count"]
    assert job.job_metadata.type == "bash"
    assert job.job_metadata.files == ["script.sh"]
    assert job.job_metadata.entrypoint is None


def test_a_bash_folder_with_an_entrypoint(app, tmp_path):
    code = tmp_path / "shell"
    code.mkdir()
    (code / "go.sh").write_text("source ./helpers.sh\ngreet\n")
    (code / "helpers.sh").write_text("greet() { echo hi from helpers; }\n")

    ambiguous = _submit(app, code)
    assert ambiguous.returncode == 2
    assert "--entrypoint" in ambiguous.stderr
    assert not (app.datasite.inbox / DS / "v1" / "shell").exists()

    assert _submit(app, code, "--entrypoint", "go.sh").returncode == 0
    app.run_pass()
    job = _syft_job_jobs(app)["shell"]
    assert job.job_metadata.type == "bash"
    assert job.job_metadata.entrypoint == "go.sh"
    assert sorted(job.job_metadata.files) == ["go.sh", "helpers.sh"]


def test_submitted_jobs_run_and_jobs_mine_shows_status_and_results(app, tmp_path):
    code = _analysis_folder(tmp_path)
    script = tmp_path / "greet.sh"
    script.write_text("echo greetings\n")
    assert _submit(app, code, "--name", "mean").returncode == 0
    assert _submit(app, script, "--name", "greet").returncode == 0
    app.cli("peers", "accept", DS, check=True)
    app.run_pass()

    mine = app.cli("jobs", "mine", "--as", DS, check=True).stdout
    assert "2 jobs (2 pending)" in mine
    assert "mean" in mine and "greet" in mine and app.do_email in mine

    app.cli("jobs", "approve", f"{DS}/mean", check=True)
    app.cli("jobs", "reject", f"{DS}/greet", "-r", "no shell jobs please", check=True)
    app.run_pass()  # starts the job
    for _ in range(50):
        if app.job_state("mean")["status"] in ("done", "failed"):
            break
        app.run_pass()
    assert app.job_state("mean")["status"] == "done"

    mine = app.cli("jobs", "mine", "--as", DS, check=True).stdout
    review = app.datasite.review / DS / "v1" / "mean"
    (mean_line,) = [line for line in mine.splitlines() if " mean " in line]
    assert "done" in mean_line and str(review) in mean_line
    (greet_line,) = [line for line in mine.splitlines() if " greet " in line]
    assert "rejected" in greet_line and "no shell jobs please" in greet_line
    assert (review / "outputs" / "mean.txt").read_text() == "2.0"
    assert "mean done" in (review / "stdout.txt").read_text()

    only_done = app.cli("jobs", "mine", "--as", DS, "--status", "done", check=True).stdout
    assert " mean " in only_done and " greet " not in only_done


def test_jobs_mine_covers_every_datasite_and_both_layouts(bare_app, tmp_path):
    root = tmp_path / "GoBox"
    for owner in ("one@a.org", "two@b.org"):
        (root / "datasites" / owner).mkdir(parents=True)
    script = tmp_path / "s.sh"
    script.write_text("echo x\n")
    ident = ds.Identity(DS, root)
    ds.submit(ident, "one@a.org", script, name="first")
    ds.submit(ident, "two@b.org", script, name="second")
    # Another person's job in the same inbox is not mine.
    ds.submit(ds.Identity("bob@co.com", root), "one@a.org", script, name="bobs")
    state = root / "datasites/two@b.org/app_data/job/review" / DS / "v1/second"
    state.mkdir(parents=True)
    (state / "state.yaml").write_text(yaml.safe_dump({"status": "approved"}))

    jobs = {j.label: j for j in ds.my_jobs(ident)}

    assert sorted(jobs) == ["one@a.org/first", "two@b.org/second"]
    assert jobs["one@a.org/first"].status == "received"  # no state.yaml yet
    assert jobs["two@b.org/second"].status == "approved"
    assert jobs["one@a.org/first"].submission_dir.is_relative_to(root / "datasites")


def test_an_existing_name_is_refused_and_left_alone(app, tmp_path):
    first = tmp_path / "job.py"
    first.write_text("print(1)\n")
    second = tmp_path / "other.py"
    second.write_text("print(2)\n")
    assert _submit(app, first, "--name", "taken").returncode == 0
    before = (app.datasite.inbox / DS / "v1" / "taken" / "code" / "job.py").read_text()

    again = _submit(app, second, "--name", "taken")

    assert again.returncode == 2
    assert "already submitted a job named 'taken'" in again.stderr
    folder = app.datasite.inbox / DS / "v1" / "taken"
    assert (folder / "code" / "job.py").read_text() == before
    assert not (folder / "code" / "other.py").exists()
    # A name whose results remain (its inbox folder gone) is taken too: the
    # data owner's app keys jobs by (submitter, name) and would never receive it.
    review = app.datasite.review / DS / "v1" / "old-one"
    review.mkdir(parents=True)
    assert _submit(app, second, "--name", "old-one").returncode == 2


def test_a_job_appears_in_one_rename_and_a_failed_build_leaves_nothing(app, tmp_path, monkeypatch):
    code = _analysis_folder(tmp_path)
    ident = ds.Identity(DS, app.root)
    seen_before_rename = []
    real_rename = os.rename

    def watching_rename(src, dst):
        # What readers of the layout see just before the job appears.
        seen_before_rename.append(
            (
                [r.name for r in Datasite(app.root, app.do_email).list_job_names(DS)],
                os.path.exists(dst),
                sorted(p.name for p in Path(src).iterdir()),
            )
        )
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", watching_rename)
    ds.submit(ident, app.do_email, code, name="atomic")
    assert seen_before_rename == [([], False, ["code", "config.yaml", "run.sh"])]
    assert [r.name for r in app.datasite.list_job_names(DS)] == ["atomic"]

    def broken_write(path, data, mode=0o644):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ds, "_write_file", broken_write)
    with pytest.raises(OSError):
        ds.submit(ident, app.do_email, code, name="half")
    v1 = app.datasite.inbox / DS / "v1"
    assert sorted(p.name for p in v1.iterdir()) == ["atomic"]  # no job, no staging folder


def test_who_submits_comes_from_as_then_the_config(app, tmp_path, monkeypatch):
    other_do = "carol@lab.org"
    (app.root / other_do).mkdir()
    script = tmp_path / "x.py"
    script.write_text("print(1)\n")

    # No --as: this app's own email (a data owner is often a data scientist too).
    result = app.cli("submit", other_do, str(script), check=True)
    assert "submitted python job 'x'" in result.stdout
    assert (app.root / other_do / "app_data/job/inbox" / app.do_email / "v1/x").is_dir()

    # No config and no --as: a clear error, nothing written.
    monkeypatch.setattr(app, "home", AppHome(tmp_path / "empty-home"))
    other = tmp_path / "other.py"
    other.write_text("print(2)\n")
    bare = app.cli("submit", other_do, str(other), "-r", str(app.root))
    assert bare.returncode == 2
    assert "--as" in bare.stderr
    assert not (app.root / other_do / "app_data/job/inbox" / app.do_email / "v1/other").exists()


def test_the_syftbox_root_flag_and_the_go_client_layout(bare_app, tmp_path):
    root = tmp_path / "Go"
    (root / "datasites" / "owner@x.org").mkdir(parents=True)
    script = tmp_path / "y.sh"
    script.write_text("echo y\n")

    result = bare_app.cli("submit", "owner@x.org", str(script), "--as", DS, "-r", str(root))

    assert result.returncode == 0, result.stderr
    assert (root / "datasites/owner@x.org/app_data/job/inbox" / DS / "v1/y/run.sh").is_file()


def test_unknown_data_owner_and_bad_inputs_are_refused(app, tmp_path):
    script = tmp_path / "z.py"
    script.write_text("print(1)\n")
    unknown = app.cli("submit", "nobody@nowhere.org", str(script), "--as", DS)
    assert unknown.returncode == 2
    assert "no datasite of nobody@nowhere.org" in unknown.stderr
    assert not (app.root / "nobody@nowhere.org").exists()

    for bad_name in ("v1", "../escape", ".hidden"):
        result = _submit(app, script, "--name", bad_name)
        assert result.returncode == 2, bad_name
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert "must be a .py or .sh" in _submit(app, text).stderr

    folder = tmp_path / "linked"
    folder.mkdir()
    (folder / "main.py").write_text("print(1)\n")
    (folder / "secret").symlink_to("/etc/hostname")
    linked = _submit(app, folder)
    assert linked.returncode == 2 and "secret is a symlink" in linked.stderr
    assert not (app.datasite.inbox / DS / "v1" / "linked").exists()


def test_a_peer_request_is_read_by_a_pass(app):
    result = app.cli("peers", "request", app.do_email, "-m", "Alice, stats group", "--as", DS)

    assert result.returncode == 0, result.stderr
    request = yaml.safe_load((app.datasite.peers / DS / "request.yaml").read_text())
    assert request["email"] == DS
    assert request["message"] == "Alice, stats group"
    datetime.fromisoformat(request["requested_at"].replace("Z", "+00:00"))

    app.run_pass()
    listed = app.cli("peers", "list", check=True).stdout
    (line,) = [line for line in listed.splitlines() if line.startswith(DS)]
    assert "requested" in line and "Alice, stats group" in line

    app.cli("peers", "accept", DS, check=True)
    again = app.cli("peers", "request", app.do_email, "--as", DS, check=True)
    assert "already accepted you" in again.stdout


def test_a_submission_before_acceptance_warns(app, tmp_path):
    script = tmp_path / "w.py"
    script.write_text("print(1)\n")
    result = _submit(app, script)
    assert "has not accepted you as a peer yet" in result.stdout
    assert f"syft-bg peers request {app.do_email}" in result.stdout
    app.cli("peers", "accept", DS, check=True)
    script2 = tmp_path / "w2.py"
    script2.write_text("print(2)\n")
    assert "not accepted" not in _submit(app, script2).stdout


def test_identify_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "SyftBox").mkdir()
    home = AppHome(tmp_path / "no-home")
    ident = ds.identify(home, as_email="Alice@Uni.edu")
    assert ident == ds.Identity("alice@uni.edu", tmp_path / "SyftBox")
    with pytest.raises(SyftBgError, match="does not exist"):
        ds.identify(home, as_email=DS, syftbox_root=tmp_path / "missing")


def test_a_name_taken_during_the_build_is_refused_cleanly(app, tmp_path, monkeypatch):
    script = tmp_path / "race.py"
    script.write_text("print(1)\n")
    real_rename = os.rename

    def rival_first(src, dst):
        # Another submission of the same name lands just before ours.
        Path(dst, "code").mkdir(parents=True)
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rival_first)
    with pytest.raises(ds.SubmitError, match="appeared while submitting"):
        ds.submit(ds.Identity(DS, app.root), app.do_email, script, name="race")
    v1 = app.datasite.inbox / DS / "v1"
    assert sorted(p.name for p in v1.iterdir()) == ["race"]
    assert sorted(p.name for p in (v1 / "race").iterdir()) == ["code"]  # theirs, untouched
