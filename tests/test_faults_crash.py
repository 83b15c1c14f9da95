"""Passes killed with SIGKILL at random instants, mid-send and mid-start, over a busy
scenario: afterwards every approved job has run exactly once, every email of the
design's table has arrived once, and the checkpoint loaded after every single kill."""

from __future__ import annotations

import email
import json
import random
import time
from collections import Counter
from email import policy

import pytest
from faults_support import (
    Killer,
    Scenario,
    check_jobs,
    check_outcome,
    email_table,
    free_port,
    interrupted_starts,
    ledger_runs,
    resends,
    run_until_quiet,
    sent_but_unrecorded,
)

from syft_bg_app.execution import reap, sandbox
from syft_bg_app.store.state import State

SEED = 20261123
MIN_KILLS = 100
# Most kills fall at a random instant; the others right after a pass is seen
# writing an email or creating a run folder.
MODES = ["random"] * 3 + ["send", "start"]
MAX_ATTEMPTS_PER_ROUND = 20
SMTP_KILLS_PER_ROUND = 5


def test_sigkill_at_random_instants_loses_nothing_and_runs_nothing_twice(app, tmp_path):
    rng = random.Random(SEED)
    # 30 jobs from 10 peers arrive over 30 rounds; 7 peers are accepted by domain and
    # the rule approves 19 of their jobs; each job carries 60 data files, so that
    # receiving, approving, starting and mailing it take real time.
    scenario = Scenario.build(app, tmp_path / "ledger.txt", rounds=30, data_files=60, data_kb=4)
    killer = Killer(app, rng)
    started = time.monotonic()
    mid_send = 0
    round_number = 0
    while round_number < len(scenario.rounds) or killer.total < MIN_KILLS:
        scenario.arrive(round_number)
        # Kill passes until one finds nothing new: the round's work is then done.
        for _ in range(MAX_ATTEMPTS_PER_ROUND):
            summary = killer.attempt(rng.choice(MODES))
            # The checkpoint loads after every kill, whatever the instant.
            state = State.load(app.home.state_file)
            json.dumps(state.data)
            if summary is None:
                mid_send += sent_but_unrecorded(app, state) > 0
            elif "nothing new" in summary:
                break
        round_number += 1
        assert round_number < 60, f"only {killer.total} kills landed"
    quiet_after = run_until_quiet(app)
    figures = check_outcome(scenario)

    assert killer.total >= MIN_KILLS
    # The kills did land where they hurt most: between an email leaving and the
    # checkpoint recording it, and between "running" and the supervisor's first word.
    assert mid_send >= 2, (killer.kills, mid_send)
    assert interrupted_starts(app) >= 2, killer.kills
    print(
        f"\n{killer.total} kills ({dict(killer.kills)}), {killer.completed} passes finished, "
        f"{round_number} rounds, {quiet_after} passes to quiet, {figures['emails']} emails, "
        f"{mid_send} kills left sent emails unrecorded, {interrupted_starts(app)} starts "
        f"redone, {time.monotonic() - started:.1f}s"
    )


def test_a_job_whose_start_is_interrupted_again_and_again_still_runs_once(app, tmp_path):
    """Passes that die while preparing a run are not the supervisor failing to start:
    the job is neither failed for them nor started twice."""
    scenario = Scenario.build(
        app, tmp_path / "ledger.txt", peers=1, jobs_per_peer=1, rounds=1, off_rule=0
    )
    # The peer is accepted first, so that the next passes receive, approve and start the job.
    scenario.arrive(0, jobs=False)
    assert app.run_pass().exit_code == 0
    scenario.arrive(0, requests=False)
    real_prepare = sandbox.prepare_layout

    def pass_dies_while_preparing(layout, files, mode, **options):
        real_prepare(layout, files, mode, **options)
        raise SystemExit("killed while preparing the run folder")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sandbox, "prepare_layout", pass_dies_while_preparing)
        for _ in range(reap.MAX_START_ATTEMPTS + 2):
            with pytest.raises(SystemExit):
                app.run_pass()
            [(_, _, record)] = State.load(app.home.state_file).iter_jobs()
            assert record["status"] in ("approved", "running"), record
    run_until_quiet(app)

    [job] = scenario.approved
    assert app.job_state(job.name, job.ds)["status"] == "done"
    assert ledger_runs(scenario) == {job.label: 1}
    assert interrupted_starts(app) == reap.MAX_START_ATTEMPTS + 2


class Recorder:
    """An SMTP server's handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            email.message_from_bytes(envelope.original_content, policy=policy.default)
        )
        return "250 OK"


def test_sigkill_while_sending_over_smtp_repeats_at_most_the_email_in_flight(app, tmp_path):
    """The outbox replaces a file written twice; a mail server does not. Passes killed
    right after the server took an email: each kill costs at most one duplicate."""
    controller_module = pytest.importorskip("aiosmtpd.controller")
    recorder = Recorder()
    controller = controller_module.Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        rng = random.Random(SEED + 1)
        scenario = Scenario.build(
            app,
            tmp_path / "ledger.txt",
            rounds=5,
            notify={
                "transport": "smtp",
                "smtp": {"host": "127.0.0.1", "port": controller.port, "security": "none"},
            },
        )
        killer = Killer(app, rng, delivered=lambda: len(recorder.messages))
        for round_number in range(len(scenario.rounds)):
            scenario.arrive(round_number)
            # A few passes killed mid-delivery; the rest of the round's mail goes later.
            for _ in range(SMTP_KILLS_PER_ROUND):
                if killer.attempt("send") is not None:
                    break
                State.load(app.home.state_file)
        run_until_quiet(app)
    finally:
        controller.stop()

    check_jobs(scenario)
    assert email_table(recorder.messages).keys() == scenario.expected_emails().keys()
    by_id = Counter(m["Message-ID"] for m in recorder.messages)
    duplicates = sum(by_id.values()) - len(by_id)
    # A duplicate needs a pass that stopped with that email marked "sending"; each
    # killed pass leaves at most one so.
    assert duplicates <= resends(app) <= killer.total, (duplicates, resends(app), killer.total)
    assert killer.total >= 10 and resends(app) >= 1, (killer.total, resends(app))
    state = State.load(app.home.state_file)
    assert state.data["mail"]["queue"] == []
    assert state.data["mail"]["sent_total"] == len(by_id)
    print(
        f"\nSMTP: {killer.total} kills right after a delivery, {resends(app)} emails resent, "
        f"{duplicates} arrived twice, {len(by_id)} distinct"
    )
