"""Gmail delivery with the real google-api-python-client and google-auth against a
local server playing the Gmail and OAuth endpoints (tests/fake_google.py)."""

from __future__ import annotations

import email
import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from email import policy
from pathlib import Path

import pytest
from conftest import DO_EMAIL, DS_EMAIL, PATIENCE, App
from fake_google import GMAIL_SCOPE, READ_SCOPE, FakeGoogle, browser_comes_back, gmail_error
from freezegun import freeze_time

from syft_bg_app.mail import retry


@pytest.fixture
def google():
    fake = FakeGoogle().start()
    yield fake
    fake.stop()


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff sleeps, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(retry, "SLEEP", recorded.append)
    return recorded


def use_gmail(app: App, google: FakeGoogle, expired: bool = True, **notify) -> Path:
    token = app.home.root / "gmail_token.json"
    google.write_token(token, expired=expired)
    app.set_config(
        notify={"transport": "gmail", "gmail": {"api_endpoint": google.api_endpoint}, **notify},
        execute={"enabled": False},
    )
    return token


def parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


def sent_to(google: FakeGoogle, to: str, kind: str) -> dict:
    found = [
        s
        for s in google.sent
        if parsed(s["raw"])["To"] == to and parsed(s["raw"])["X-Syft-BG-Event"] == kind
    ]
    assert len(found) == 1
    return found[0]


def test_send_bodies_token_refresh_and_thread_reuse(app: App, google: FakeGoogle) -> None:
    token = use_gmail(app, google)
    app.submit("analysis")
    result = app.run_pass()
    assert result.exit_code == 0 and result.counts["sent"] == 2

    refresh = google.token_requests()
    assert len(refresh) == 1
    assert refresh[0].form()["grant_type"] == "refresh_token"
    assert refresh[0].form()["refresh_token"] == "refresh-1"
    saved = json.loads(token.read_text())
    assert saved["token"] in google.access_tokens and saved["token"] != "stale-access"
    assert saved["refresh_token"] == "refresh-1" and saved["token_uri"] == google.token_uri
    assert token.stat().st_mode & 0o777 == 0o600

    requests = google.send_requests()
    assert len(requests) == 2
    for request in requests:
        assert request.headers["authorization"] == f"Bearer {saved['token']}"
        body = request.json()
        assert set(body) == {"raw"}
        message = parsed(google.sent[requests.index(request)]["raw"])
        assert message.get_content_type() == "multipart/alternative"
        assert message["Message-ID"]
    first_do = sent_to(google, DO_EMAIL, "job_submitted")
    first_ds = sent_to(google, DS_EMAIL, "job_submitted")
    assert first_do["threadId"] != first_ds["threadId"]

    app.cli("jobs", "approve", f"{DS_EMAIL}/analysis", check=True)
    assert app.run_pass().counts["sent"] == 2
    from syft_bg_app.datasite.layout import JobRef

    app.datasite.write_job_state(JobRef(DS_EMAIL, "analysis"), status="done", return_code=0)
    assert app.run_pass().counts["sent"] == 2
    # One fresh access token serves every pass within its hour.
    assert len(google.token_requests()) == 1

    for to, first in ((DO_EMAIL, first_do), (DS_EMAIL, first_ds)):
        for kind in ("job_approved", "job_finished"):
            later = sent_to(google, to, kind)
            assert later["body"]["threadId"] == first["threadId"]
            message = parsed(later["raw"])
            assert message["Subject"] == parsed(first["raw"])["Subject"]
            assert parsed(first["raw"])["Message-ID"] in message["References"]
    assert len(google.sent) == 6
    assert app.run_pass().counts.get("sent", 0) == 0


def test_429_and_503_are_retried_with_backoff_then_sent(
    app: App, google: FakeGoogle, waits: list[float]
) -> None:
    use_gmail(app, google, expired=False)
    google.send_failures = [
        gmail_error(429, "rateLimitExceeded", retry_after="3"),
        gmail_error(503, "backendError"),
    ]
    app.submit("analysis")
    result = app.run_pass()
    assert result.exit_code == 0 and result.counts["sent"] == 2
    assert len(google.send_requests()) == 4
    assert len(waits) == 2
    assert waits[0] >= 3  # Retry-After is honoured
    assert 1 <= waits[1] <= retry.MAX_WAIT
    assert "MAIL PROBLEM" not in app.cli("status", check=True).stdout


def test_a_rate_limit_403_is_retried_but_a_plain_403_is_not(
    app: App, google: FakeGoogle, waits: list[float]
) -> None:
    use_gmail(app, google, expired=False)
    google.send_failures = [gmail_error(403, "userRateLimitExceeded")]
    app.submit("one")
    assert app.run_pass().counts["sent"] == 2
    assert len(waits) == 1
    google.send_failures = [gmail_error(403, "insufficientPermissions")]
    app.submit("two")
    app.run_pass()
    assert len(waits) == 1
    assert len(google.send_requests()) == 3 + 1
    status = app.cli("status", check=True).stdout
    assert "Gmail refused access" in status and "Gmail API is enabled" in status


def test_a_400_is_not_retried_and_only_that_email_is_held(
    app: App, google: FakeGoogle, waits: list[float]
) -> None:
    use_gmail(app, google, expired=False)
    google.send_failures = [gmail_error(400, "invalidArgument", "Invalid To header")]
    app.submit("analysis")
    result = app.run_pass()
    assert waits == []
    assert len(google.send_requests()) == 2
    assert result.counts["sent"] == 1
    status = app.cli("status", check=True).stdout
    assert "held: job_submitted to" in status and "Invalid To header" in status
    # Held for a while: the next pass does not send the same request again...
    app.run_pass()
    assert len(google.send_requests()) == 2
    # ...until the data owner asks for it.
    out = app.cli("mail", "retry", check=True).stdout
    assert "sent 1 of 1 queued emails" in out
    assert len(google.sent) == 2


def test_a_revoked_token_is_reported_and_the_emails_are_kept(
    app: App, google: FakeGoogle, waits: list[float]
) -> None:
    token = use_gmail(app, google)
    google.refresh_tokens.clear()
    app.submit("analysis")
    result = app.run_pass()
    assert result.exit_code == 0
    assert google.send_requests() == [] and len(google.token_requests()) == 1
    assert waits == []
    status = app.cli("status", check=True).stdout
    assert "MAIL PROBLEM" in status
    assert "invalid_grant" in status
    assert app.command(f"init -e {DO_EMAIL} --gmail") in status
    assert "2 emails are kept" in status
    listing = app.cli("mail", "list", check=True).stdout
    assert "2 queued" in listing
    # Nothing changed: the next pass does not ask Google again.
    app.run_pass()
    assert len(google.token_requests()) == 1
    # The data owner signs in again (a new token file): the next pass sends both.
    google.refresh_tokens.add("refresh-2")
    google.write_token(token, expired=True, refresh_token="refresh-2")
    assert app.run_pass().counts["sent"] == 2
    assert "MAIL PROBLEM" not in app.cli("status", check=True).stdout


def test_retries_stop_inside_the_time_budget(app: App, google: FakeGoogle, monkeypatch) -> None:
    use_gmail(app, google, expired=False, retry_budget=20)
    google.send_failures = [gmail_error(503, "backendError") for _ in range(50)]
    app.submit("analysis")
    start = datetime.now(timezone.utc)
    with freeze_time(start) as clock:
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            clock.tick(seconds)

        monkeypatch.setattr(retry, "SLEEP", sleep)
        began = time.monotonic()
        app.run_pass()
        spent = time.monotonic() - began
    # Backoff grows, and stops once the next wait would overrun the 20 s budget.
    assert slept == sorted(slept) and slept[-1] >= 4 * slept[0]
    assert 10 < sum(slept) <= spent + 0.01 and spent <= 20
    assert len(google.send_requests()) == len(slept) + 1
    status = app.cli("status", check=True).stdout
    assert "looks temporary" in status and "2 queued" in status


def test_an_idle_pass_refreshes_an_expiring_token(app: App, google: FakeGoogle) -> None:
    token = use_gmail(app, google, expired=True)
    assert app.run_pass().exit_code == 0
    assert len(google.token_requests()) == 1 and google.send_requests() == []
    assert json.loads(token.read_text())["token"] in google.access_tokens
    assert token.stat().st_mode & 0o777 == 0o600
    app.run_pass()
    assert len(google.token_requests()) == 1


@pytest.mark.parametrize("replies", [False, True], ids=["send", "send-and-read-replies"])
def test_init_gmail_runs_the_consent_with_a_local_redirect(
    bare_app: App, google: FakeGoogle, replies: bool
) -> None:
    app = bare_app
    if replies:
        # Replies are read too: the consent asks to read mail as well.
        app.init()
        # As the owner edits it: the file keeps its comments.
        head, tail = app.home.config_file.read_text().split("  email_replies:\n", 1)
        tail = tail.replace("enabled: false", "enabled: true", 1)
        app.home.config_file.write_text(head + "  email_replies:\n" + tail)
    secrets = app.tmp / "client_secret.json"
    google.write_client_secrets(secrets)
    google.codes.add("code-from-google")
    if replies:
        google.code_scopes["code-from-google"] = [GMAIL_SCOPE, READ_SCOPE]
    env = dict(app.env, PYTHONUNBUFFERED="1", OAUTHLIB_INSECURE_TRANSPORT="1")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syft_bg_app",
            "init",
            "-e",
            DO_EMAIL,
            "-r",
            str(app.root),
            "--create",
            "--gmail",
            str(secrets),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        url = None
        deadline = time.monotonic() + PATIENCE
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            found = re.search(r"(http://127\.0\.0\.1:\d+/auth\?\S+)", line)
            url = found.group(1) if found else None
        assert url, process.stderr.read()
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        scopes = ["https://www.googleapis.com/auth/gmail.send"]
        if replies:
            scopes.append("https://www.googleapis.com/auth/gmail.readonly")
        assert query["scope"] == [" ".join(scopes)]
        assert query["access_type"] == ["offline"]
        redirect = query["redirect_uri"][0]
        assert redirect.startswith("http://127.0.0.1:")
        assert b"signed in" in browser_comes_back(query, PATIENCE)
        out, err = process.communicate(timeout=PATIENCE)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    exchange = google.token_requests()[-1].form()
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["code"] == "code-from-google"
    assert exchange["redirect_uri"] == redirect
    assert exchange.get("code_verifier")
    token = app.home.root / "gmail_token.json"
    assert token.stat().st_mode & 0o777 == 0o600
    assert json.loads(token.read_text())["refresh_token"] == "refresh-from-code"
    assert (app.home.root / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert app.config.get("notify.transport") == "gmail"
    assert "# How mail leaves" in app.home.config_file.read_text()
    assert "set notify.transport: gmail" in out
    assert ("approve.email_replies.enabled: true" in out) is not replies


def test_init_gmail_refuses_a_file_that_is_not_an_oauth_client(bare_app: App) -> None:
    bad = bare_app.tmp / "token.json"
    bad.write_text(json.dumps({"refresh_token": "x"}))
    result = bare_app.cli("init", "-e", DO_EMAIL, "--gmail", str(bad))
    assert result.returncode == 2 and "Desktop app" in result.stderr
    assert not bare_app.home.config_file.exists()
