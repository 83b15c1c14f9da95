"""Jobs see the private files of exactly the datasets they declared, read-only, where the
syft client looks for them; nothing else of the data owner's private data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import PATIENCE
from hostile import run_until_finished

DS = "alice@uni.edu"
PRIVATE_CSV = "age\n31\n45\n52\n"

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

READER = """#!/bin/bash
base="$SYFTBOX_FOLDER/$SYFTBOX_EMAIL/private/syft_datasets"
awk -F, 'NR > 1 { s += $1 } END { print "sum:", s }' "$base/census/ages.csv"
ls "$base"
cat "$base/other/ages.csv" 2>/dev/null && echo "read other" || echo "no other"
echo x > "$base/census/new.txt" 2>/dev/null && echo "wrote" || echo "read-only"
ls "$SYFTBOX_FOLDER/$SYFTBOX_EMAIL/public/syft_datasets"
"""


@pytest.fixture
def data_app(app, tmp_path: Path):
    app.cli("peers", "accept", DS, check=True)
    app.set_config(notify={"enabled": False}, execute={"timeout": int(PATIENCE)})
    for name, shared in (("census", DS), ("other", DS), ("secret", "bob@other.org")):
        folder = tmp_path / name
        (folder / "mock").mkdir(parents=True)
        (folder / "mock" / "ages.csv").write_text("age\n1\n")
        (folder / "private").mkdir()
        (folder / "private" / "ages.csv").write_text(PRIVATE_CSV if name == "census" else "9\n")
        app.cli(
            "datasets",
            "create",
            name,
            "--mock",
            str(folder / "mock"),
            "--private",
            str(folder / "private"),
            "--share",
            shared,
            check=True,
        )
    return app


def _run(app, name, run_sh, datasets):
    app.submit(name, ds_email=DS, run_sh=run_sh, metadata={"datasets": {app.do_email: datasets}})
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{DS}/{name}", check=True)
    return run_until_finished(app, name)[name]


def _record_of(app, name) -> dict:
    from syft_bg_app.store.state import State

    return State.load(app.home.state_file).job(DS, name)


def _stdout(app, name) -> str:
    return (app.datasite.review / DS / "v1" / name / "stdout.txt").read_text()


def test_a_job_reads_its_declared_dataset_and_no_other(data_app):
    app = data_app
    state = _run(app, "mean-age", READER, ["census"])

    assert state["status"] == "done", state
    lines = _stdout(app, "mean-age").splitlines()
    assert lines[0] == "sum: 128"
    assert lines[1] == "census"
    assert "no other" in lines and "read-only" in lines
    assert "read other" not in lines and "wrote" not in lines
    assert lines[-1] == "census"
    run_dir = Path(_record_of(app, "mean-age")["run_dir"])
    assert not (run_dir / "datasets").exists()


def test_a_job_without_datasets_sees_no_private_data(data_app):
    app = data_app
    script = (
        "#!/bin/bash\n"
        'echo "folder=${SYFTBOX_FOLDER:-unset}"\n'
        f"ls {app.home.root}/datasets 2>/dev/null && echo leaked || echo hidden\n"
    )
    state = _run(app, "plain", script, [])
    assert state["status"] == "done", state
    assert _stdout(app, "plain").splitlines() == ["folder=unset", "hidden"]


def _reason(app, name: str) -> str:
    return app.job_state(name, DS)["review_reason"]


def _emails_about(app, name: str) -> dict[str, str]:
    """Every email about job ``name`` so far, one text per recipient."""
    from conftest import outbox, text_of

    found: dict[str, str] = {}
    for message in outbox(app):
        if name in str(message["Subject"]):
            to = str(message["To"]).lower()
            found[to] = found.get(to, "") + text_of(message)
    return found


def _audit(app, decision: str) -> list[dict]:
    from syft_bg_app.approval import audit

    return [e for e in audit.read(app.home.audit_log) if e["decision"] == decision]


@pytest.mark.parametrize("dataset", ["secret", "missing"])
def test_a_job_asking_for_a_dataset_not_shared_with_its_author_is_rejected_saying_so(
    data_app, dataset
):
    app = data_app
    app.set_config(notify={"enabled": True})
    app.submit(
        f"wants-{dataset}", ds_email=DS, metadata={"datasets": {app.do_email: ["census", dataset]}}
    )

    assert app.run_pass().exit_code == 0

    state = app.job_state(f"wants-{dataset}", DS)
    assert state["status"] == "rejected", state
    # The same words whether the dataset exists or not: nobody shared it with them.
    assert state["review_reason"] == (
        f"the job asks for dataset '{dataset}', which {app.do_email} has not shared with "
        f"{DS}; submit the job again without it, or ask the data owner for it"
    )
    assert app.run_pass().exit_code == 0  # the next pass emails the rejection
    emails = _emails_about(app, f"wants-{dataset}")
    assert state["review_reason"] in emails[DS]
    assert state["review_reason"] in emails[app.do_email.lower()]
    (entry,) = _audit(app, "rejected")
    fact = "no such dataset" if dataset == "missing" else "not shared with them"
    assert entry["method"] == "datasets" and entry["problem"] == fact
    refused = app.cli("jobs", "approve", f"{DS}/wants-{dataset}")
    assert refused.returncode == 2 and f"{DS}/wants-{dataset} is rejected" in refused.stderr
    assert not (app.datasite.review / DS / "v1" / f"wants-{dataset}" / "stdout.txt").exists()


def test_a_rule_naming_a_dataset_never_approves_a_job_whose_author_may_not_read_it(data_app):
    app = data_app
    app.submit("first", ds_email=DS, run_sh=READER)
    assert app.run_pass().exit_code == 0
    app.cli("auto-approve", "--from-job", f"{DS}/first", "-n", "wide", check=True)
    _set_rule_datasets(app, "wide", ["census", "secret"])
    app.submit(
        "greedy", ds_email=DS, run_sh=READER, metadata={"datasets": {app.do_email: ["secret"]}}
    )

    assert app.run_pass().exit_code == 0

    state = app.job_state("greedy", DS)
    assert state["status"] == "rejected" and "'secret'" in state["review_reason"]
    assert not [e for e in _audit(app, "approved") if e["subject"] == f"{DS}/greedy"]


def test_a_job_whose_dataset_was_unshared_after_approval_fails_without_running(data_app):
    app = data_app
    app.submit("late", ds_email=DS, run_sh=READER, metadata={"datasets": {app.do_email: ["other"]}})
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{DS}/late", check=True)
    unshared = app.cli("datasets", "unshare", "other", DS, check=True)
    assert "pending jobs" not in unshared.stdout  # an approved job is not pending

    state = run_until_finished(app, "late")["late"]

    assert state["status"] == "failed"
    review = app.datasite.review / DS / "v1" / "late"
    reason = (review / "stderr.txt").read_text()
    assert f"dataset 'other', which {app.do_email} has not shared with {DS}" in reason
    assert not (review / "stdout.txt").exists()


def test_jobs_show_and_the_submitted_email_list_the_declared_datasets(data_app):
    app = data_app
    app.set_config(notify={"enabled": True})
    app.submit("mean-age", ds_email=DS, metadata={"datasets": {app.do_email: ["census"]}})
    assert app.run_pass().exit_code == 0

    shown = app.cli("jobs", "show", f"{DS}/mean-age", check=True).stdout
    assert "datasets" in shown and "census" in shown
    emails = [p.read_text() for p in app.home.outbox_dir.rglob("*.eml")]
    assert any("Datasets it reads: census" in text for text in emails)


def _set_rule_datasets(app, rule_name: str, datasets: list[str]) -> None:
    config = yaml.safe_load(app.home.config_file.read_text())
    for rule in config["approve"]["auto_approvals"]:
        if rule["name"] == rule_name:
            rule["datasets"] = datasets
    app.home.config_file.write_text(yaml.safe_dump(config))


def test_a_rule_approves_a_job_only_with_the_datasets_it_allows(data_app):
    app = data_app
    app.submit("first", ds_email=DS, run_sh=READER)
    assert app.run_pass().exit_code == 0
    app.cli("auto-approve", "--from-job", f"{DS}/first", "-n", "census-sum", check=True)
    app.submit(
        "mean-age", ds_email=DS, run_sh=READER, metadata={"datasets": {app.do_email: ["census"]}}
    )

    assert app.run_pass().exit_code == 0
    assert app.job_state("mean-age")["status"] == "pending"
    shown = app.cli("jobs", "show", f"{DS}/mean-age", check=True).stdout
    assert "reads datasets the rule does not allow: census" in shown

    _set_rule_datasets(app, "census-sum", ["census"])
    state = run_until_finished(app, "mean-age")["mean-age"]
    assert state["status"] == "done" and state["approval_method"] == "auto"
    assert _stdout(app, "mean-age").splitlines()[0] == "sum: 128"


def test_datasets_added_to_config_yaml_after_approval_are_not_shown_to_the_job(data_app):
    app = data_app
    folder = app.submit(
        "mean-age", ds_email=DS, run_sh=READER, metadata={"datasets": {app.do_email: ["census"]}}
    )
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{DS}/mean-age", check=True)
    meta = yaml.safe_load((folder / "config.yaml").read_text())
    meta["datasets"] = {app.do_email: ["census", "other"]}
    (folder / "config.yaml").write_text(yaml.safe_dump(meta))

    state = run_until_finished(app, "mean-age")["mean-age"]
    assert state["status"] == "done"
    lines = _stdout(app, "mean-age").splitlines()
    assert lines[1] == "census" and "no other" in lines


def test_a_dataset_an_approved_job_reads_cannot_be_deleted_and_a_pending_job_holds_none(
    data_app,
):
    app = data_app
    app.set_config(notify={"enabled": True})
    app.submit("mean-age", ds_email=DS, metadata={"datasets": {app.do_email: ["census"]}})
    app.submit("squatter", ds_email=DS, metadata={"datasets": {app.do_email: ["other"]}})
    app.submit("plain", ds_email=DS)
    assert app.run_pass().exit_code == 0
    app.cli("jobs", "approve", f"{DS}/mean-age", check=True)

    refused = app.cli("datasets", "delete", "census")
    assert refused.returncode == 2
    assert f"named by jobs not finished yet: {DS}/mean-age" in refused.stderr
    assert store_private(app, "census").is_dir()
    app.cli("jobs", "reject", f"{DS}/mean-age", "-r", "not now", check=True)
    app.cli("datasets", "delete", "census", check=True)
    assert not store_private(app, "census").exists()
    # A job only waiting for a decision names what it likes: it holds no dataset,
    # and the data owner is told which jobs lose it.
    deleted = app.cli("datasets", "delete", "other", check=True)
    assert not store_private(app, "other").exists()
    assert f"the next pass rejects them: dataset 'other' was deleted): {DS}/squatter" in (
        deleted.stdout
    )
    gone = f"dataset 'other' was deleted by {app.do_email} while the job waited"
    approving = app.cli("jobs", "approve", f"{DS}/squatter")
    assert approving.returncode == 2
    assert f"cannot approve {DS}/squatter: {gone}" in approving.stderr
    assert _record_of(app, "squatter")["status"] == "pending"

    assert app.run_pass().exit_code == 0

    assert (
        _reason(app, "squatter")
        == f"{gone}; submit the job again without it, or ask the data owner for it"
    )
    assert app.run_pass().exit_code == 0  # the next pass emails the rejection
    assert gone in _emails_about(app, "squatter")[DS]
    assert app.job_state("plain", DS)["status"] == "pending"


def test_unsharing_a_dataset_rejects_the_pending_jobs_of_those_who_lose_it(data_app):
    app = data_app
    bob = "bob@other.org"
    app.cli("peers", "accept", bob, check=True)
    app.cli("datasets", "share", "other", bob, check=True)
    for name, ds in (("alice-job", DS), ("bob-job", bob)):
        app.submit(name, ds_email=ds, metadata={"datasets": {app.do_email: ["other"]}})
    app.submit("again", ds_email=DS, metadata={"datasets": {app.do_email: ["other"]}})
    assert app.run_pass().exit_code == 0

    unshared = app.cli("datasets", "unshare", "other", DS, check=True)

    assert f"was unshared): {DS}/again, {DS}/alice-job" in unshared.stdout
    assert "bob-job" not in unshared.stdout
    # Shared again before the next pass: that job waits for a decision as before.
    app.cli("datasets", "share", "other", DS, check=True)
    assert app.run_pass().exit_code == 0
    assert app.job_state("again", DS)["status"] == "pending"
    app.cli("datasets", "unshare", "other", DS, check=True)
    assert app.run_pass().exit_code == 0
    assert _reason(app, "alice-job").startswith(
        f"dataset 'other' was unshared with {DS} while the job waited;"
    )
    assert app.job_state("bob-job", bob)["status"] == "pending"


def test_a_job_naming_a_damaged_dataset_waits_for_the_owner_to_repair_it(data_app):
    app = data_app
    record = store_private(app, "census").parent / "record.yaml"
    good = record.read_text()
    record.write_text("{{{\n")
    app.submit("mean-age", ds_email=DS, metadata={"datasets": {app.do_email: ["census"]}})

    assert app.run_pass().exit_code == 0

    assert _record_of(app, "mean-age")["status"] == "pending"
    refused = app.cli("jobs", "approve", f"{DS}/mean-age")
    assert refused.returncode == 2
    assert "dataset 'census', which is damaged" in refused.stderr
    assert "repair it first" in refused.stderr
    record.write_text(good)
    app.cli("jobs", "approve", f"{DS}/mean-age", check=True)


def store_private(app, name: str) -> Path:
    from syft_bg_app.datasite import datasets as store

    return store.private_dir(app.home, name)


def _declare(folder: Path, owner: str, datasets: list[str]) -> None:
    meta = yaml.safe_load((folder / "config.yaml").read_text())
    meta["datasets"] = {owner: datasets}
    (folder / "config.yaml").write_text(yaml.safe_dump(meta))


def test_datasets_declared_after_the_owner_looked_are_never_approved_unseen(data_app):
    app = data_app
    folder = app.submit("widen", ds_email=DS, metadata={"datasets": {app.do_email: ["census"]}})
    assert app.run_pass().exit_code == 0
    assert "census" in app.cli("jobs", "show", f"{DS}/widen", check=True).stdout
    # After the owner saw "census", the data scientist adds another dataset shared with them.
    _declare(folder, app.do_email, ["census", "other"])

    refused = app.cli("jobs", "approve", f"{DS}/widen")

    assert refused.returncode != 0
    assert "datasets its config.yaml declares changed" in refused.stderr
    assert "was: census; now: census, other" in refused.stderr
    assert _record_of(app, "widen")["status"] == "pending"
    # Looked at again, it is approved as it is now, and runs with what was shown.
    assert "other" in app.cli("jobs", "show", f"{DS}/widen", check=True).stdout
    app.cli("jobs", "approve", f"{DS}/widen", check=True)
    assert sorted(_record_of(app, "widen")["datasets"]) == ["census", "other"]


def test_an_email_reply_approves_only_the_datasets_its_email_showed(data_app):
    from conftest import outbox

    from syft_bg_app.mail import replies
    from syft_bg_app.session import changing

    app = data_app
    app.set_config(notify={"enabled": True}, approve={"email_replies": {"enabled": True}})
    folder = app.submit("shown", ds_email=DS, metadata={"datasets": {app.do_email: ["census"]}})
    assert app.run_pass().exit_code == 0
    email = [
        m
        for m in outbox(app)
        if "shown" in str(m["Subject"]) and str(m["To"]).lower() == app.do_email.lower()
    ][-1]
    assert "census" in email.get_body(("plain",)).get_content()
    _declare(folder, app.do_email, ["census", "other"])
    reply = (
        f"From: {app.do_email}\nTo: {app.do_email}\nSubject: Re: job\n"
        f"Message-ID: <reply-1@owner>\nIn-Reply-To: {email['Message-ID']}\n\napprove\n"
    ).encode()

    with changing(app.home, "test") as ctx:
        outcome = replies.handle_reply(ctx, reply, "test")

    assert not outcome.startswith("approved"), outcome
    assert _record_of(app, "shown")["status"] == "pending"
    # A second reply to the same email approves nothing either: the email showed "census".
    second = reply.replace(b"reply-1@owner", b"reply-2@owner")
    with changing(app.home, "test") as ctx:
        replies.handle_reply(ctx, second, "test")
    assert _record_of(app, "shown")["status"] == "pending"


def test_a_rule_from_a_job_allows_exactly_its_datasets(data_app):
    app = data_app
    declares = {"datasets": {app.do_email: ["census"]}}
    app.submit("first", ds_email=DS, run_sh=READER, metadata=declares)
    assert app.run_pass().exit_code == 0

    made = app.cli("auto-approve", "--from-job", f"{DS}/first", "-n", "census-sum", check=True)

    assert "allows the datasets the job declares: census" in made.stdout
    rules = yaml.safe_load(app.home.config_file.read_text())["approve"]["auto_approvals"]
    assert [rule.get("datasets") for rule in rules if rule["name"] == "census-sum"] == [["census"]]
    app.submit("again", ds_email=DS, run_sh=READER, metadata=declares)
    app.submit(
        "greedy",
        ds_email=DS,
        run_sh=READER,
        metadata={"datasets": {app.do_email: ["census", "other"]}},
    )
    states = run_until_finished(app, ["first", "again"])
    assert all(state["approval_method"] == "auto" for state in states.values()), states
    assert _stdout(app, "again").splitlines()[0] == "sum: 128"
    assert app.job_state("greedy")["status"] == "pending"
    shown = app.cli("jobs", "show", f"{DS}/greedy", check=True).stdout
    assert "reads datasets the rule does not allow: other" in shown


def test_a_rule_remade_from_a_job_takes_that_jobs_datasets(data_app):
    app = data_app
    app.submit("wide", ds_email=DS, metadata={"datasets": {app.do_email: ["census", "other"]}})
    app.submit("narrow", ds_email=DS)
    assert app.run_pass().exit_code == 0
    app.cli("auto-approve", "--from-job", f"{DS}/wide", "-n", "sum", check=True)

    app.cli("auto-approve", "--from-job", f"{DS}/narrow", "-n", "sum", check=True)

    rules = yaml.safe_load(app.home.config_file.read_text())["approve"]["auto_approvals"]
    assert [rule.get("datasets") or [] for rule in rules if rule["name"] == "sum"] == [[]]


def test_datasets_written_by_syft_jobs_own_model_are_the_ones_approved_and_read(data_app):
    syft_job = pytest.importorskip("syft_job")
    from syft_job.models import JobSubmissionMetadata

    app = data_app
    (app.root / DS).mkdir(parents=True, exist_ok=True)
    client = syft_job.get_client(str(app.root), DS)

    def submit(name: str, datasets: list[str]) -> None:
        # syft-job 0.1.40's submit leaves `datasets` empty; its own model writes the field.
        config = client.submit_bash_job(app.do_email, READER, name) / "config.yaml"
        metadata = JobSubmissionMetadata.load(config)
        metadata.datasets = {app.do_email: datasets}
        metadata.save(config)

    submit("census-sum", ["census"])
    assert app.run_pass().exit_code == 0
    assert "census" in app.cli("jobs", "show", f"{DS}/census-sum", check=True).stdout
    app.cli("auto-approve", "--from-job", f"{DS}/census-sum", check=True)
    submit("census-sum-2", ["census"])
    submit("census-and-other", ["census", "other"])

    states = run_until_finished(app, ["census-sum", "census-sum-2"])

    assert all(state["approval_method"] == "auto" for state in states.values()), states
    lines = _stdout(app, "census-sum-2").splitlines()
    assert lines[:2] == ["sum: 128", "census"] and "no other" in lines
    assert app.job_state("census-and-other")["status"] == "pending"
