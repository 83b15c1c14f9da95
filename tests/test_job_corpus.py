"""The corpus of malformed and hostile jobs: each gets its outcome; the others proceed."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from freezegun import freeze_time

CASES = yaml.safe_load((Path(__file__).parent / "corpus" / "jobs.yaml").read_text())
T0 = datetime(2026, 11, 22, 10, 0, 0)
GRACE = 600


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 20


def _build(app, case: dict, outside: Path) -> dict[str, bytes]:
    """Write the case's job folder; return the files held back for staged arrival."""
    folder = app.submit(case["name"], metadata=case.get("config"))
    for rel in case.get("omit", []):
        path = folder / rel
        if path.is_dir():
            for child in sorted(path.rglob("*"), reverse=True):
                child.unlink() if child.is_file() else child.rmdir()
            path.rmdir()
        else:
            path.unlink()
    for rel, text in case.get("files", {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    if "config_text" in case:
        text = case["config_text"]
        (folder / "config.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    for rel, target in case.get("symlinks", {}).items():
        (folder / rel).symlink_to(target.replace("{outside}", str(outside)))
    for rel, target in case.get("hardlinks", {}).items():
        os.link(target.replace("{outside}", str(outside)), folder / rel)
    for rel in case.get("fifos", []):
        os.mkfifo(folder / rel)
    for hex_name in case.get("raw_names", []):
        raw = os.fsencode(folder / "code") + b"/" + bytes.fromhex(hex_name)
        with open(raw, "wb") as handle:
            handle.write(b"print(1)\n")
    for rel, size in case.get("sparse", {}).items():
        with open(folder / rel, "wb") as handle:
            handle.truncate(size)
    held = {}
    for group in case.get("arrives", []):
        for rel in group:
            held[rel] = (folder / rel).read_bytes()
            (folder / rel).unlink()
    return held


def _status(app, name: str) -> tuple[str, str]:
    state_file = app.datasite.review / "alice@uni.edu" / "v1" / name / "state.yaml"
    if not state_file.exists():
        return "waiting", ""
    state = yaml.safe_load(state_file.read_text())
    return state["status"], state.get("review_reason") or ""


def _check(app, case: dict, key: str) -> None:
    expected = case.get(key)
    if expected is None:
        return
    status, reason = _status(app, case["name"])
    assert status == expected["status"], f"{case['name']} ({key}): {status} {reason}"
    assert expected.get("reason", "") in reason, f"{case['name']} ({key}): {reason}"


@pytest.fixture
def corpus_app(app, tmp_path):
    app.set_config(sync={"incomplete_grace": GRACE, "max_job_mb": 2})
    outside = tmp_path / "outside-secret.txt"
    outside.write_text("the data owner's secret\n")
    held = {case["name"]: _build(app, case, outside) for case in CASES}
    app.submit("well-formed-neighbour")
    return app, held


def test_every_corpus_job_gets_its_outcome_and_the_others_proceed(corpus_app):
    app, held = corpus_app
    with freeze_time(T0):
        result = app.run_pass()
    assert result.exit_code == 0, result.summary
    assert _status(app, "well-formed-neighbour")[0] == "pending"
    for case in CASES:
        _check(app, case, "at_once")

    for case in CASES:
        groups = case.get("arrives", [])
        for number, group in enumerate(groups):
            folder = app.datasite.inbox / "alice@uni.edu" / "v1" / case["name"]
            for rel in group:
                (folder / rel).write_bytes(held[case["name"]][rel])
            with freeze_time(T0 + timedelta(seconds=60 * (number + 1))):
                app.run_pass()
            if number < len(groups) - 1:
                assert _status(app, case["name"])[0] == "waiting", (case["name"], group)
        _check(app, case, "after_arrival")

    with freeze_time(T0 + timedelta(seconds=GRACE + 1)):
        assert app.run_pass().exit_code == 0
    for case in CASES:
        final = next(k for k in ("after_grace", "after_arrival", "at_once") if k in case)
        _check(app, case, final)
