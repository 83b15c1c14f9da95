"""The published syft client inside a job: its ``resolve_dataset_files_path`` finds the
private files of exactly the datasets the job declared, and nothing else.

The data scientist submits with the real syft-job client and declares the dataset
through syft-job's own ``JobSubmissionMetadata``. The job runs the real syft-client
0.1.117 from its cached virtual environment
(``tests/client_venvs.py``), shown to the sandbox read-only through
``execute.ro_paths``, as a data owner would show a Python environment of their own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import PATIENCE, REPO
from hostile import run_until_finished

from tests.client_venvs import SYFT_CLIENT, client_venv, folders_to_run

syft_job = pytest.importorskip("syft_job")
from syft_job.models import JobSubmissionMetadata  # noqa: E402

ALICE = "alice@uni.edu"
BOB = "bob@other.org"
PRIVATE_CSV = "age\n31\n45\n52\n"

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

EXAMPLE = REPO / "examples" / "datasets" / "mean_age.py"
# What the job finds of everything it did not declare.
PROBE_PY = """\
import os
import sys
from pathlib import Path

import syft_client as sc

for name in ("other", "secret"):
    try:
        found = sc.resolve_dataset_files_path(name)
    except Exception as exc:
        print(name + ":", "nothing", type(exc).__name__)
    else:
        print(name + ":", "FOUND", found)
root = Path(os.environ["SYFTBOX_FOLDER"])
print("tree:", ",".join(sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())))
for path in sys.argv[1:]:
    print("host path:", path, "FOUND" if os.path.exists(path) else "nothing")
"""


@pytest.fixture(scope="module")
def client_python() -> Path:
    return client_venv(SYFT_CLIENT)


def _create(app, tmp_path: Path, name: str, share: str, private_csv: str) -> None:
    folder = tmp_path / "sources" / name
    (folder / "mock").mkdir(parents=True)
    (folder / "mock" / "ages.csv").write_text("age\n20\n30\n")
    (folder / "private").mkdir()
    (folder / "private" / "ages.csv").write_text(private_csv)
    app.cli(
        "datasets",
        "create",
        name,
        "--mock",
        str(folder / "mock"),
        "--private",
        str(folder / "private"),
        "--share",
        share,
        check=True,
    )


def test_the_real_client_in_a_job_reads_its_declared_dataset_and_finds_nothing_else(
    app, tmp_path: Path, client_python: Path
):
    for who in (ALICE, BOB):
        app.cli("peers", "accept", who, check=True)
    app.set_config(
        notify={"enabled": False},
        execute={"timeout": int(PATIENCE), "ro_paths": folders_to_run(client_python)},
    )
    _create(app, tmp_path, "census", ALICE, PRIVATE_CSV)
    _create(app, tmp_path, "other", ALICE, "age\n99\n")
    _create(app, tmp_path, "secret", BOB, "age\n7\n")
    # Bob's result is in the datasite before Alice's job runs.
    app.submit("bobs", ds_email=BOB, run_sh="#!/bin/bash\necho bob result\n")
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{BOB}/bobs", check=True)
    assert run_until_finished(app, "bobs", ds_email=BOB)["bobs"]["status"] == "done"
    bobs_result = app.datasite.review / BOB / "v1" / "bobs" / "stdout.txt"
    assert bobs_result.read_text() == "bob result\n"

    host_paths = [
        bobs_result,
        app.home.root / "datasets" / "other" / "private" / "ages.csv",
        app.home.root / "datasets" / "census" / "private" / "ages.csv",
    ]
    script = (
        f"set -e\n{client_python} - <<'PY'\n{EXAMPLE.read_text()}PY\n"
        f"{client_python} - {' '.join(str(p) for p in host_paths)} <<'PY'\n{PROBE_PY}PY\n"
    )
    # Alice submits with the real syft-job client and names the dataset through its own
    # model, as the README shows (its submit functions take no datasets argument).
    (app.root / ALICE).mkdir(parents=True, exist_ok=True)
    job_dir = syft_job.get_client(str(app.root), ALICE).submit_bash_job(
        app.do_email, script, "mean-age"
    )
    config = job_dir / "config.yaml"
    metadata = JobSubmissionMetadata.load(config)
    metadata.datasets = {app.do_email: ["census"]}
    metadata.save(config)
    assert app.run_pass().exit_code == 0
    assert "census" in app.cli("jobs", "show", f"{ALICE}/mean-age", check=True).stdout
    app.cli("jobs", "approve", f"{ALICE}/mean-age", check=True)
    state = run_until_finished(app, "mean-age", ds_email=ALICE)["mean-age"]

    review = app.datasite.review / ALICE / "v1" / "mean-age"
    assert state["status"] == "done", (review / "stderr.txt").read_text()
    lines = (review / "stdout.txt").read_text().splitlines()
    assert lines[0] == "mean age: 42.7 (3 people)"
    assert lines[1] == "other: nothing FileNotFoundError"
    assert lines[2] == "secret: nothing FileNotFoundError"
    census = f"{app.do_email}/{{}}/syft_datasets/census"
    assert lines[3] == "tree: " + ",".join(
        sorted(
            [
                census.format("private") + "/ages.csv",
                census.format("public") + "/ages.csv",
                census.format("public") + "/dataset.yaml",
                census.format("public") + "/syft.pub.yaml",
            ]
        )
    )
    assert lines[4:] == [f"host path: {path} nothing" for path in host_paths]
