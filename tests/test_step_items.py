"""One bad item never stops a step: the others are handled, the failure is logged with its
traceback, and the step fails once with counts (steps/isolation.py)."""

from __future__ import annotations

import logging

import pytest

from syft_bg_app.errors import SyftBgError
from syft_bg_app.steps.isolation import ItemsFailed, StepItems, raise_failures
from syft_bg_app.store.state import State


def _sync_like(items: StepItems, names: list[str], broken: set[str], handled: list[str]) -> None:
    def sync_one(name: str) -> None:
        if name in broken:
            raise OSError(5, f"cannot read the folder of {name}")
        handled.append(name)

    for name in names:
        items.run(name, sync_one, name)


def test_one_failing_item_among_several_is_logged_with_its_traceback_and_the_others_run(caplog):
    log = logging.getLogger("syft_bg.test-items")
    items = StepItems(log, "job", "failed to sync")
    handled: list[str] = []

    with caplog.at_level(logging.ERROR, logger=log.name):
        _sync_like(items, ["a", "b", "c", "d"], {"b"}, handled)

    assert handled == ["a", "c", "d"]
    [record] = caplog.records
    assert record.getMessage() == "b failed to sync: [Errno 5] cannot read the folder of b"
    assert record.exc_info is not None
    assert "Traceback" in caplog.text and "in sync_one" in caplog.text
    with pytest.raises(ItemsFailed) as raised:
        raise_failures(items)
    assert str(raised.value) == (
        "1 of 4 jobs failed to sync: b: OSError: [Errno 5] cannot read the folder of b"
    )


def test_the_steps_error_counts_every_kind_and_names_the_first_failures():
    log = logging.getLogger("syft_bg.test-items")
    jobs = StepItems(log, "job", "failed to sync")
    requests = StepItems(log, "peer request", "could not be read")
    names = [f"job{n:02}" for n in range(40)]
    _sync_like(jobs, names, set(names[:7]), [])
    requests.run("peer request eve@x.org", lambda: None)

    with pytest.raises(ItemsFailed) as raised:
        raise_failures(jobs, requests, hint="; see the log")

    error = raised.value
    assert isinstance(error, SyftBgError) and error.exit_code == 1
    text = str(error)
    assert text.startswith("7 of 40 jobs failed to sync: job00: OSError: ")
    # Five are spelled out, the log has the rest.
    assert "job04" in text and "job05" not in text
    assert text.endswith("; and 2 more (see the log); see the log")
    assert [failure.label for failure in error.failures] == names[:7]

    requests.run("peer request bob@x.org", _raises_value_error)
    with pytest.raises(ItemsFailed, match=r"^7 of 40 jobs failed to sync and 1 of 2 peer requests"):
        raise_failures(jobs, requests)


def _raises_value_error() -> None:
    raise ValueError("not a request")


def test_nothing_is_raised_when_every_item_went_well():
    items = StepItems(logging.getLogger("syft_bg.test-items"), "job", "failed to start")
    assert items.run("a", lambda: None) and items.call("b", lambda: 42) == 42
    items.went_well(3)
    raise_failures(items)
    assert items.total == 5 and items.failed_count == 0


def test_a_recovered_item_is_an_outcome_not_a_failure_unless_recovery_fails_too(caplog):
    items = StepItems(
        logging.getLogger("syft_bg.test-items"), "running job", "could not be collected"
    )
    outcomes: list[str] = []

    def collect() -> None:
        raise RecursionError("too deep")

    def fail_the_job(exc: Exception) -> None:
        outcomes.append(f"failed: {exc}")

    def cannot_even_fail_it(exc: Exception) -> None:
        raise OSError(28, "No space left on device")

    assert not items.run("alice/a", collect, recover=fail_the_job)
    assert outcomes == ["failed: too deep"]
    raise_failures(items)  # the job's failure is its outcome: the step went well

    assert not items.run("alice/b", collect, recover=cannot_even_fail_it)
    with pytest.raises(ItemsFailed, match=r"^1 of 2 running jobs could not be collected: alice/b"):
        raise_failures(items)
    assert "No space left" in caplog.text and "too deep" in caplog.text


def test_an_item_tried_twice_in_a_step_counts_once():
    items = StepItems(logging.getLogger("syft_bg.test-items"), "job", "failed to sync")
    for _ in range(2):
        items.run("alice/a", _raises_value_error)
        items.run("alice/b", lambda: None)
    with pytest.raises(ItemsFailed) as raised:
        raise_failures(items)
    assert str(raised.value) == "1 of 2 jobs failed to sync: alice/a: ValueError: not a request"


def test_a_pass_with_one_job_that_cannot_be_synced_counts_it_and_receives_the_others(app):
    for name in ("one", "two", "three"):
        app.submit(name, ds_email="bob@lab.org")
    app.submit("blocked", ds_email="alice@uni.edu")
    # A file where alice's review folder belongs: writing her state.yaml fails.
    app.datasite.review.mkdir(parents=True, exist_ok=True)
    (app.datasite.review / "alice@uni.edu").write_text("in the way")

    result = app.run_pass()

    assert result.exit_code == 1 and result.failed_steps == ["sync"]
    for name in ("one", "two", "three"):
        assert app.job_state(name, "bob@lab.org")["status"] == "pending"
    error = State.load(app.home.state_file).data["steps"]["sync"]["error"]
    assert error.startswith("ItemsFailed: 1 of 4 jobs failed to sync: alice@uni.edu/blocked: ")
    log = (app.home.logs_dir / "syft-bg.log").read_text()
    assert "alice@uni.edu/blocked failed to sync" in log and "Traceback" in log
