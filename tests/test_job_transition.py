"""What a job's checkpoint record keeps as it moves from status to status: one declared
table (job_transition.KEEPS), used by sync, approve, execute and rerun alike."""

from __future__ import annotations

import pytest
from hostile import run_until_finished

from syft_bg_app.datasite.layout import JOB_STATUSES, JobRef
from syft_bg_app.job_transition import KEEPS, move_job
from syft_bg_app.session import open_view
from syft_bg_app.store.state import SYNC_ONLY_KEYS, TERMINAL_STATUSES, State
from syft_bg_app.store.state_shape import JOB

DS = "alice@uni.edu"
IN_FLIGHT = {"protocol", "seen_at", "folder_id", "state_mtime_ns"}
RECEIPT = {"received_at", "received_hashes", "received_datasets", "never_arrived"}
DECISION = {"approved_at", "method", "rule", "reruns", "datasets"}
# Spelled out here, so a change to the table is a change someone meant.
EXPECTED = {
    "received": IN_FLIGHT | {"waiting_since", "waiting_reason"},
    "pending": IN_FLIGHT | RECEIPT | {"auto", "auto_note"},
    "approved": IN_FLIGHT | RECEIPT | DECISION | {"start_attempts"},
    "running": IN_FLIGHT | RECEIPT | DECISION | {"start_attempts", "slurm_job_id"},
    "rejected": {"protocol", "never_arrived"} | DECISION,
    "done": {"protocol", "run_dir", "folder_id", "slurm_job_id"} | DECISION,
    "failed": {"protocol", "run_dir", "folder_id", "slurm_job_id"} | DECISION,
}


def test_every_status_declares_what_it_keeps_and_only_keys_a_record_has():
    assert set(KEEPS) == set(JOB_STATUSES)
    for status, kept in KEEPS.items():
        assert kept <= set(JOB), (status, sorted(kept - set(JOB)))
        # Of what sync keeps for jobs in flight, a finished job keeps only the folder
        # it was received as, and only when it can be run again.
        if status in TERMINAL_STATUSES:
            expected = {"folder_id"} if status in ("done", "failed") else set()
            assert kept & SYNC_ONLY_KEYS == expected, (status, sorted(kept & SYNC_ONLY_KEYS))


@pytest.mark.parametrize("status", JOB_STATUSES)
def test_each_status_keeps_exactly_its_keys(app, status):
    app.submit("moved")
    app.run_pass()
    ctx = open_view(app.home)
    ref = JobRef(DS, "moved")
    record = ctx.state.job(DS, "moved")
    # A record holding every key a job's record can hold, and one more.
    record.update({key: f"old {key}" for key in JOB}, job_uid=1879000001)

    moved = move_job(ctx, ref, record, status, state={}, reason="why")

    assert moved is record
    assert set(record) == EXPECTED[status] | {"status", "reason"}
    assert all(record[key] == f"old {key}" for key in EXPECTED[status])
    assert record["status"] == status and record["reason"] == "why"
    assert app.job_state("moved")["status"] == status


def test_without_state_fields_state_yaml_is_left_as_it_is(app):
    app.submit("untouched")
    app.run_pass()
    ctx = open_view(app.home)
    record = ctx.state.job(DS, "untouched")

    move_job(ctx, JobRef(DS, "untouched"), record, "approved")

    assert record["status"] == "approved"
    assert app.job_state("untouched")["status"] == "pending"


def test_a_job_run_and_rerun_keeps_its_decision_and_counts_its_reruns(app):
    app.cli("peers", "accept", DS, check=True)
    app.set_config(notify={"enabled": False})
    app.submit("again", run_sh="#!/bin/bash\necho again\n")
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{DS}/again", check=True)

    for reruns in (1, 2):
        run_until_finished(app, "again")
        record = State.load(app.home.state_file).job(DS, "again")
        assert record["status"] == "done"
        assert set(record) <= EXPECTED["done"] | {"status", "return_code", "finished_at"}
        assert record["method"] == "manual" and record["approved_at"]
        app.cli("jobs", "rerun", f"{DS}/again", check=True)
        record = State.load(app.home.state_file).job(DS, "again")
        assert record["status"] == "approved" and record["reruns"] == reruns
        assert "run_dir" not in record and "return_code" not in record
