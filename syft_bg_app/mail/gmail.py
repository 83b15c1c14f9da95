"""The Gmail transport: users.messages.send with the raw message and the threadId.

The OAuth token (an "authorized user" JSON file, mode 0600) is refreshed when
its access token has expired or is about to, and saved again at once, so a
revoked sign-in is noticed by the next pass that needs it and reported by
``status`` instead of losing mail.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from syft_bg_app.google_errors import error_details as _error_details
from syft_bg_app.google_errors import http_status as _status
from syft_bg_app.google_errors import retry_after as _retry_after
from syft_bg_app.mail.errors import MailError, PermanentMailError, TransientMailError
from syft_bg_app.mail.retry import Deadline, call
from syft_bg_app.store.fsutil import atomic_write_text

SCOPES = ["https://www.googleapis.com/auth/gmail.send"]
# Asked for too when the owner's replies are read (approve.email_replies).
READ_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
# Refresh this long before the access token runs out, so a send never starts with
# a token that expires in flight.
REFRESH_MARGIN = timedelta(minutes=5)
RATE_LIMIT_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"}
)
HTTP_TIMEOUT = 30.0


def token_due_for_refresh(token_path: Path, now: datetime | None = None) -> bool:
    """Whether the saved access token has expired or is about to (read without Google libs)."""
    try:
        info = json.loads(token_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    expiry = info.get("expiry") if isinstance(info, dict) else None
    if not expiry or not info.get("token"):
        return True
    try:
        moment = datetime.strptime(expiry.rstrip("Z").split(".")[0], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return True
    now = now or datetime.now(timezone.utc)
    return moment.replace(tzinfo=timezone.utc) - now < REFRESH_MARGIN


def relogin_advice(do_email: str, credentials_path: Path) -> str:
    client = credentials_path if credentials_path.is_file() else "CREDENTIALS_JSON"
    where = (
        ""
        if credentials_path.is_file()
        else " with the OAuth client file (Desktop app) from the Google Cloud console"
    )
    return (
        f"sign in to Gmail again: syft-bg init -e {do_email} --gmail {client}{where}; "
        f"the queued emails are sent by the next pass after that"
    )


def load_credentials(token_path: Path, do_email: str, credentials_path: Path):
    from google.oauth2.credentials import Credentials

    try:
        info = json.loads(token_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PermanentMailError(
            f"there is no Gmail sign-in token at {token_path}",
            advice=relogin_advice(do_email, credentials_path),
        ) from None
    except (OSError, ValueError) as exc:
        raise PermanentMailError(
            f"the Gmail token {token_path} cannot be read ({exc})",
            advice=relogin_advice(do_email, credentials_path),
        ) from None
    try:
        # The scopes the sign-in granted: a refresh asking for fewer would narrow them.
        scopes = info.get("scopes") if isinstance(info.get("scopes"), list) else SCOPES
        creds = Credentials.from_authorized_user_info(info, scopes)
    except ValueError as exc:
        raise PermanentMailError(
            f"the Gmail token {token_path} is incomplete ({exc})",
            advice=relogin_advice(do_email, credentials_path),
        ) from None
    # from_authorized_user_info always uses Google's token endpoint; keep the
    # one the sign-in recorded.
    if info.get("token_uri"):
        expiry = creds.expiry
        creds = creds.with_token_uri(info["token_uri"])
        # The copy leaves out the expiry; without it every load would look expired.
        creds.expiry = expiry
    return creds


def save_credentials(creds, token_path: Path) -> None:
    atomic_write_text(token_path, creds.to_json(), mode=0o600)


class GmailTransport:
    name = "gmail"
    resend_replaces = False

    def __init__(
        self,
        token_path: Path,
        credentials_path: Path,
        do_email: str,
        api_endpoint: str | None = None,
    ) -> None:
        self.token_path = token_path
        self.credentials_path = credentials_path
        self.do_email = do_email
        self.api_endpoint = api_endpoint
        self.creds = None
        self.service = None
        self.refreshed = False

    def describe(self) -> str:
        return f"gmail (token {self.token_path})"

    # -- sign-in -------------------------------------------------------------------
    def refresh_if_needed(self, deadline: Deadline) -> None:
        """Load the token; refresh and save it when it has expired or is about to."""
        self.creds = load_credentials(self.token_path, self.do_email, self.credentials_path)
        expiry = self.creds.expiry
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        if self.creds.token and expiry is not None and expiry - now > REFRESH_MARGIN:
            return
        call(lambda: self._refresh(deadline), deadline, "refreshing the Gmail token")
        save_credentials(self.creds, self.token_path)
        self.refreshed = True

    def _refresh(self, deadline: Deadline) -> None:
        import google_auth_httplib2
        import httplib2

        http = httplib2.Http(timeout=self._timeout(deadline))
        try:
            self.creds.refresh(google_auth_httplib2.Request(http))
        except Exception as exc:
            raise self._classify(exc) from None
        finally:
            http.close()

    def _timeout(self, deadline: Deadline) -> float:
        return max(1.0, min(HTTP_TIMEOUT, deadline.remaining() or 1.0))

    def open(self, deadline: Deadline) -> None:
        import google_auth_httplib2
        import httplib2
        from googleapiclient.discovery import build

        self.refresh_if_needed(deadline)
        http = google_auth_httplib2.AuthorizedHttp(
            self.creds, http=httplib2.Http(timeout=self._timeout(deadline))
        )
        options = {"api_endpoint": self.api_endpoint} if self.api_endpoint else None
        self.service = build(
            "gmail",
            "v1",
            http=http,
            client_options=options,
            static_discovery=True,
            cache_discovery=False,
        )

    # -- sending -------------------------------------------------------------------
    def send(
        self, entry: dict[str, Any], raw: bytes, thread_id: str | None, deadline: Deadline
    ) -> str | None:
        if self.service is None:
            self.open(deadline)
        body: dict[str, Any] = {"raw": base64.urlsafe_b64encode(raw).decode("ascii")}
        if thread_id:
            body["threadId"] = thread_id
        try:
            result = self.service.users().messages().send(userId="me", body=body).execute()
        except Exception as exc:
            if thread_id and _status(exc) == 404:
                # The thread is gone from the mailbox (deleted): start a new one.
                return self.send(entry, raw, None, deadline)
            raise self._classify(exc) from None
        return result.get("threadId")

    def _classify(self, exc: Exception) -> MailError:
        import httplib2
        from google.auth import exceptions as auth_exceptions
        from googleapiclient.errors import HttpError

        if isinstance(exc, auth_exceptions.RefreshError):
            if getattr(exc, "retryable", False):
                return TransientMailError(f"Google could not refresh the token now: {exc}")
            return PermanentMailError(
                f"Gmail no longer accepts the saved sign-in ({_first_arg(exc)})",
                advice=relogin_advice(self.do_email, self.credentials_path),
            )
        if isinstance(exc, auth_exceptions.TransportError):
            return TransientMailError(f"cannot reach Google: {exc}")
        if isinstance(exc, HttpError):
            status = _status(exc)
            reason, message = _error_details(exc)
            detail = f"{status} {reason or ''} {message or ''}".strip()
            retry_after = _retry_after(exc)
            if status == 429 or status >= 500:
                return TransientMailError(f"Gmail answered {detail}", retry_after=retry_after)
            if status == 403 and reason in RATE_LIMIT_REASONS:
                return TransientMailError(f"Gmail rate limit: {detail}", retry_after=retry_after)
            if status == 401:
                return PermanentMailError(
                    f"Gmail did not accept the token ({detail})",
                    advice=relogin_advice(self.do_email, self.credentials_path),
                )
            if status == 403:
                return PermanentMailError(
                    f"Gmail refused access ({detail})",
                    advice="make sure the Gmail API is enabled for the OAuth client's project "
                    "in the Google Cloud console, then "
                    + relogin_advice(self.do_email, self.credentials_path),
                )
            return PermanentMailError(
                f"Gmail refused this email ({detail})",
                advice="the email stays queued (syft-bg mail list); run syft-bg mail retry "
                "once the cause is fixed",
                scope="message",
            )
        if isinstance(exc, (httplib2.HttpLib2Error, OSError, TimeoutError)):
            return TransientMailError(f"cannot reach Gmail: {exc or type(exc).__name__}")
        return PermanentMailError(f"sending through Gmail failed: {exc!r}")

    def close(self) -> None:
        service, self.service = self.service, None
        if service is not None:
            try:
                service.close()
            except Exception:
                pass


def _first_arg(exc: Exception) -> str:
    return str(exc.args[0]) if exc.args else str(exc)


def gmail_scopes(read: bool = False) -> list[str]:
    """What the Gmail transport asks for; ``read`` also reading mail (for replies that
    decide jobs)."""
    return [*SCOPES, READ_SCOPE] if read else list(SCOPES)


def run_consent(
    credentials_file: Path,
    token_path: Path,
    scopes: list[str],
    *,
    allow: str = "send email as you",
    service: str = "Gmail",
    port: int = 0,
    timeout_seconds: int = 600,
) -> None:
    """The OAuth consent for a desktop app: print the URL, wait for the redirect to
    127.0.0.1, exchange the code and save the token (0600). ``allow`` finishes the
    sentence "allow syft-bg to ..."; ``service`` names what it is signed in to."""
    from google_auth_oauthlib.flow import InstalledAppFlow

    flow = InstalledAppFlow.from_client_secrets_file(str(credentials_file), scopes=scopes)
    port = port or _free_port()
    message = (
        f"Open this address in a browser and allow syft-bg to {allow}:\n\n"
        "  {url}\n\n"
        "Waiting for Google to send the browser back to this machine (127.0.0.1). If the\n"
        "browser runs on another computer, forward the port first, e.g.\n"
        f"  ssh -L {port}:127.0.0.1:{port} this-machine\n"
    )
    creds = flow.run_local_server(
        host="127.0.0.1",
        port=port,
        open_browser=False,
        authorization_prompt_message=message,
        success_message=f"syft-bg is signed in to {service}. You may close this window.",
        timeout_seconds=timeout_seconds,
        access_type="offline",
        prompt="consent",
    )
    token_path.parent.mkdir(parents=True, exist_ok=True)
    save_credentials(creds, token_path)
    os.chmod(token_path, 0o600)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
