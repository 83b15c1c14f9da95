"""Flaky transports: a real SMTP server (aiosmtpd) and the local Google server that
fail 30% of calls with transient errors. Everything arrives within a bounded number
of passes and nothing twice (beyond a lost reply, where the server took the email
but the app never heard so); a permanent failure stays queued and ``syft-bg
status`` says what is wrong in plain words."""

from __future__ import annotations

import asyncio
import email
import random
import threading
import time
from collections import Counter
from email import policy
from pathlib import Path

import pytest
from conftest import DO_EMAIL, PATIENCE, App
from fake_google import FakeGoogle, Scripted, gmail_error
from faults_support import Scenario, check_jobs, email_table, free_port

from syft_bg_app.execution.backends.local import read_run_status
from syft_bg_app.execution.sandbox import RunLayout
from syft_bg_app.mail import retry
from syft_bg_app.store.state import State

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

SEED = 20261124
FAILURE_RATE = 0.3
# A scenario whose mail all exists after three passes: receive and approve, start,
# reap. Flaky transports may take a few passes more, never many.
PASS_BOUND = 8
SMTP_FAULTS = ("421 at MAIL", "451 at RCPT", "451 at DATA", "dropped", "reply lost")
GONE = "ds9@other.org"


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff sleeps, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(retry, "SLEEP", recorded.append)
    return recorded


class FlakySmtp:
    """An SMTP server where 30% of mail transactions fail in one of the ways real
    servers fail: 421 (and hang up), 451 on RCPT or after DATA, a connection dropped
    mid-transaction, or a reply lost after the message was taken. One address is
    refused for good (550)."""

    def __init__(self, rng: random.Random, refused: str | None = None) -> None:
        self.rng = rng
        self.refused = refused
        self.lock = threading.Lock()
        self.accepted: list[email.message.EmailMessage] = []
        self.faults: Counter = Counter()
        # Message-IDs the server took without the client hearing so.
        self.lost_replies: list[str] = []
        self._plan: dict[int, str | None] = {}

    def _hang_up(self, server) -> None:
        asyncio.get_running_loop().call_soon(server.transport.close)

    async def handle_MAIL(self, server, session, envelope, address, options):
        with self.lock:
            fault = self.rng.choice(SMTP_FAULTS) if self.rng.random() < FAILURE_RATE else None
        self._plan[id(session)] = fault
        if fault:
            self.faults[fault] += 1
        if fault == "421 at MAIL":
            self._hang_up(server)
            return "421 4.3.2 service not available, closing channel"
        if fault == "dropped":
            server.transport.close()
            return "250 OK"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address == self.refused:
            return "550 5.1.1 mailbox unavailable"
        if self._plan.get(id(session)) == "451 at RCPT":
            return "451 4.3.0 temporary failure, try again"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        fault = self._plan.pop(id(session), None)
        if fault == "451 at DATA":
            return "451 4.3.0 message not accepted now"
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        with self.lock:
            self.accepted.append(message)
        if fault == "reply lost":
            self.lost_replies.append(message["Message-ID"])
            server.transport.close()
        return "250 OK queued"


def use_smtp(app: App, port: int) -> None:
    app.set_config(
        notify={
            "transport": "smtp",
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 10},
        }
    )


def passes_until_delivered(app: App, delivered, limit: int = PASS_BOUND) -> int:
    """In-process passes until the work is done and the queue holds nothing but held
    emails; returns how many it took."""
    for number in range(1, limit + 1):
        result = app.run_pass()
        assert result.exit_code == 0, result.summary
        state = State.load(app.home.state_file)
        jobs_busy = any(r["status"] in ("approved", "running") for _, _, r in state.iter_jobs())
        waiting = [e for e in state.data["mail"]["queue"] if not e.get("not_before")]
        if not jobs_busy and not waiting and not state.data["events"] and delivered():
            return number
        # Jobs run detached; give them a moment between passes.
        _settle(state)
    raise AssertionError(f"not delivered within {limit} passes")


def _settle(state: State, seconds: float = PATIENCE) -> None:
    """Wait for the jobs that run to finish, so the next pass reaps them (the bound on
    passes counts mail retries, not how long jobs take on this machine)."""
    end = time.monotonic() + seconds
    for _, _, record in state.iter_jobs():
        if record["status"] == "running" and record.get("run_dir"):
            layout = RunLayout(Path(record["run_dir"]))
            while read_run_status(layout).get("phase") != "finished" and time.monotonic() < end:
                time.sleep(0.02)


def test_flaky_smtp_delivers_everything_once_within_a_few_passes(app, tmp_path, waits):
    rng = random.Random(SEED)
    server = FlakySmtp(rng, refused=GONE)
    controller = aiosmtpd_controller.Controller(server, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        scenario = Scenario.build(app, tmp_path / "ledger.txt", rounds=1)
        use_smtp(app, controller.port)
        scenario.arrive(0)
        expected = scenario.expected_emails()
        held = Counter({key: n for key, n in expected.items() if key[0] == GONE})
        wanted = expected - held

        def delivered() -> bool:
            return set(email_table(server.accepted)) == set(wanted)

        passes = passes_until_delivered(app, delivered)
    finally:
        controller.stop()

    check_jobs(scenario)
    got = email_table(server.accepted)
    assert set(got) == set(wanted)
    # Each email arrived once, but for the ones whose reply was lost on the way back
    # (the server had it, the app could not know): those at most twice.
    twice = {m["Message-ID"] for m in server.accepted} & set(server.lost_replies)
    by_id = Counter(m["Message-ID"] for m in server.accepted)
    assert all(n == 1 or (n == 2 and mid in twice) for mid, n in by_id.items()), by_id
    assert sum(by_id.values()) - len(by_id) <= len(server.lost_replies)
    assert sum(server.faults.values()) >= 20 and len(server.faults) == len(SMTP_FAULTS)
    assert waits, "transient failures are retried with backoff"

    # The refused address stays queued, and status says so in plain words.
    state = State.load(app.home.state_file)
    queue = state.data["mail"]["queue"]
    assert sorted((e["to"], e["kind"]) for e in queue) == sorted(
        (to, kind) for to, kind, _ in held.elements()
    )
    status = app.cli("status", check=True).stdout
    assert f"held: peer_requested to {GONE}" in status
    assert "refused the recipient (550 5.1.1 mailbox unavailable)" in status
    assert f"check the address; the email stays queued ({app.command('mail list')})" in status
    print(
        f"\nSMTP: {dict(server.faults)} faults, {len(server.accepted)} accepted, "
        f"{len(by_id)} distinct, {passes} passes, {len(waits)} backoff waits"
    )


class FlakyGoogle(FakeGoogle):
    """The local Google server failing 30% of token refreshes and sends with 503 or
    429 (with Retry-After)."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng
        self.faults: Counter = Counter()

    def _maybe_fail(self, where: str) -> Scripted | None:
        with self._lock:
            if self.rng.random() >= FAILURE_RATE:
                return None
            status = self.rng.choice((503, 429))
        self.faults[(where, status)] += 1
        if status == 429:
            return gmail_error(429, "rateLimitExceeded", "slow down", retry_after="2")
        return gmail_error(503, "backendError", "the backend is unavailable")

    def _token(self, record):
        failure = self._maybe_fail("token")
        if failure is not None:
            return failure.status, failure.body, failure.headers
        return super()._token(record)

    def _send(self, record):
        failure = self._maybe_fail("send")
        if failure is not None:
            return failure.status, failure.body, failure.headers
        return super()._send(record)


def test_flaky_gmail_delivers_everything_once_and_a_revoked_sign_in_waits_visibly(
    app, tmp_path, waits
):
    rng = random.Random(SEED)
    google = FlakyGoogle(rng).start()
    try:
        token = app.home.root / "gmail_token.json"
        google.write_token(token, expired=True)
        # Token refreshes are few; the first one fails for sure.
        google.token_failures = [gmail_error(503, "backendError", "token service unavailable")]
        scenario = Scenario.build(app, tmp_path / "ledger.txt", rounds=2)
        app.set_config(
            notify={"transport": "gmail", "gmail": {"api_endpoint": google.api_endpoint}}
        )

        def sent() -> list:
            return [email.message_from_bytes(s["raw"], policy=policy.default) for s in google.sent]

        scenario.arrive(0)
        first = passes_until_delivered(app, lambda: True)

        # The sign-in is revoked: nothing can be sent, every email waits, status says why.
        google.refresh_tokens.clear()
        google.write_token(token, expired=True)
        scenario.arrive(1)
        before = len(google.sent)
        for _ in range(3):
            assert app.run_pass().exit_code == 0
        assert len(google.sent) == before
        state = State.load(app.home.state_file)
        waiting = len(state.data["mail"]["queue"])
        assert waiting > 0
        status = app.cli("status", check=True).stdout
        assert "MAIL PROBLEM" in status and "Gmail no longer accepts the saved sign-in" in status
        assert f"sign in to Gmail again: {app.command(f'init -e {DO_EMAIL} --gmail')}" in status
        assert f"{waiting} emails are kept and sent once this is fixed" in status

        # Signing in again (a new token file) lets the next passes deliver the rest.
        google.refresh_tokens.add("refresh-2")
        google.write_token(token, expired=True, refresh_token="refresh-2")
        second = passes_until_delivered(
            app, lambda: set(email_table(sent())) == set(scenario.expected_emails())
        )
    finally:
        google.stop()

    check_jobs(scenario)
    # Every email once: a 503 or 429 comes before Gmail takes anything.
    assert email_table(sent()) == scenario.expected_emails()
    assert len({m["Message-ID"] for m in sent()}) == len(sent())
    assert State.load(app.home.state_file).data["mail"]["queue"] == []
    assert "MAIL PROBLEM" not in app.cli("status", check=True).stdout
    assert sum(google.faults.values()) >= 20
    assert google.token_failures == [] and len(google.token_requests()) >= 3
    # A 429's Retry-After is honoured (the wait is at least what the server asked).
    assert any(w >= 2 for w in waits)
    print(
        f"\nGmail: {dict(google.faults)} faults, {len(google.sent)} sent, "
        f"{first} + {second} passes, {len(waits)} backoff waits"
    )
