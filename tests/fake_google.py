"""A small local HTTP server that plays Google's OAuth token endpoint and the
Gmail ``users.messages.send``, ``users.getProfile``, ``users.history.list`` and
``users.messages.get`` endpoints, for the real google-api-python-client.

The mailbox (``mailbox``) holds what was sent and what ``deliver`` put in, each
with the history id that added it; reading needs a token granted a read scope.

It listens on 127.0.0.1 only. Tests script failures by pushing responses onto
``send_failures`` / ``token_failures`` and read back every request it received.
"""

from __future__ import annotations

import base64
import email
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import policy
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from local_http import LocalHTTPServer

SEND_PATH = "/gmail/v1/users/me/messages/send"
PROFILE_PATH = "/gmail/v1/users/me/profile"
HISTORY_PATH = "/gmail/v1/users/me/history"
MESSAGE_PREFIX = "/gmail/v1/users/me/messages/"
GMAIL_SCOPE = "https://www.googleapis.com/auth/gmail.send"
READ_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
HISTORY_PAGE = 3


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode()))


@dataclass
class Scripted:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def gmail_error(status: int, reason: str, message: str = "scripted failure", **headers) -> Scripted:
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }
    return Scripted(status, body, {k.replace("_", "-"): v for k, v in headers.items()})


class FakeGoogle:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.sent: list[dict[str, Any]] = []
        self.send_failures: list[Scripted] = []
        self.token_failures: list[Scripted] = []
        self.read_failures: list[Scripted] = []
        self.refresh_tokens: set[str] = {"refresh-1"}
        self.codes: set[str] = set()
        self.access_tokens: set[str] = set()
        self.threads: set[str] = set()
        # Scopes granted to each refresh token, and to each access token issued.
        self.granted: dict[str, list[str]] = {"refresh-1": [GMAIL_SCOPE]}
        self.token_scopes: dict[str, list[str]] = {}
        # What the consent granted with each authorization code (default: send only).
        self.code_scopes: dict[str, list[str]] = {}
        self.mailbox: list[dict[str, Any]] = []
        self.history_id = 1000
        # A start id below this is answered 404, as Gmail does for expired ids.
        self.oldest_history = 0
        self._counter = 0
        self._lock = threading.Lock()
        self._http = LocalHTTPServer()

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeGoogle:
        self._http.serve(self._handle)
        return self

    def stop(self) -> None:
        self._http.stop()

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def api_endpoint(self) -> str:
        return self.url + "/"

    @property
    def token_uri(self) -> str:
        return self.url + "/token"

    # -- what tests look at -------------------------------------------------------------
    def send_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == SEND_PATH]

    def token_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/token"]

    # -- files the app reads ----------------------------------------------------------
    def write_token(
        self,
        path: Path,
        expired: bool = True,
        refresh_token: str = "refresh-1",
        scopes: list[str] | None = None,
    ) -> None:
        """An authorized-user token file as the sign-in writes it (mode 0600)."""
        scopes = scopes or [GMAIL_SCOPE]
        self.granted[refresh_token] = scopes
        if expired:
            expiry = datetime.now(timezone.utc) - timedelta(hours=1)
            token = "stale-access"
        else:
            expiry = datetime.now(timezone.utc) + timedelta(hours=1)
            token = self._issue_access(scopes)
        info = {
            "token": token,
            "refresh_token": refresh_token,
            "token_uri": self.token_uri,
            "client_id": "client-1.apps.example",
            "client_secret": "client-secret-1",
            "scopes": scopes,
            "expiry": expiry.replace(tzinfo=None).isoformat() + "Z",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info))
        path.chmod(0o600)

    def write_client_secrets(self, path: Path) -> None:
        info = {
            "installed": {
                "client_id": "client-1.apps.example",
                "client_secret": "client-secret-1",
                "auth_uri": self.url + "/auth",
                "token_uri": self.token_uri,
                "redirect_uris": ["http://localhost"],
            }
        }
        path.write_text(json.dumps(info))

    # -- serving ----------------------------------------------------------------------
    # -- the mailbox --------------------------------------------------------------------
    def deliver(self, raw: bytes, labels: tuple[str, ...] = ("INBOX",)) -> str:
        """A message arriving in the mailbox (a reply the owner sent, say)."""
        message_id = self._next_id("msg")
        self._add_to_mailbox(message_id, self._next_id("thread"), raw, list(labels))
        return message_id

    def expire_history(self) -> None:
        """Forget the history so far, as Gmail does after about a week."""
        self.oldest_history = self.history_id

    def read_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "GET" and r.path.startswith("/gmail/")]

    def _add_to_mailbox(self, message_id: str, thread_id: str, raw: bytes, labels: list) -> None:
        with self._lock:
            self.history_id += 1
            self.mailbox.append(
                {
                    "id": message_id,
                    "threadId": thread_id,
                    "labelIds": labels,
                    "raw": raw,
                    "history": self.history_id,
                }
            )

    def _issue_access(self, scopes: list[str] | None = None) -> str:
        with self._lock:
            self._counter += 1
            token = f"access-{self._counter}"
        self.access_tokens.add(token)
        self.token_scopes[token] = list(scopes or [GMAIL_SCOPE])
        return token

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}-{self._counter}"

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        parsed = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        record = Recorded(
            method,
            parsed.path,
            urllib.parse.parse_qs(parsed.query),
            {k.lower(): v for k, v in handler.headers.items()},
            body,
        )
        self.requests.append(record)
        if parsed.path == "/token" and method == "POST":
            status, payload, headers = self._token(record)
        elif parsed.path == SEND_PATH and method == "POST":
            status, payload, headers = self._send(record)
        elif method == "GET" and (
            parsed.path in (PROFILE_PATH, HISTORY_PATH) or parsed.path.startswith(MESSAGE_PREFIX)
        ):
            status, payload, headers = self._read(record)
        else:
            status, payload, headers = 404, {"error": {"code": 404, "message": "not found"}}, {}
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _token(self, record: Recorded) -> tuple[int, dict, dict]:
        if self.token_failures:
            scripted = self.token_failures.pop(0)
            return scripted.status, scripted.body, scripted.headers
        form = record.form()
        grant = form.get("grant_type")
        if grant == "refresh_token" and form.get("refresh_token") in self.refresh_tokens:
            granted = self.granted.get(form["refresh_token"], [GMAIL_SCOPE])
            asked = form.get("scope", "").split() or granted
            # Google never grants more on refresh than the sign-in did.
            return 200, self._token_body([s for s in asked if s in granted]), {}
        if grant == "authorization_code" and form.get("code") in self.codes:
            self.codes.discard(form["code"])
            scopes = self.code_scopes.get(form["code"], [GMAIL_SCOPE])
            self.refresh_tokens.add("refresh-from-code")
            self.granted["refresh-from-code"] = scopes
            return 200, {**self._token_body(scopes), "refresh_token": "refresh-from-code"}, {}
        return (
            400,
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
            {},
        )

    def _token_body(self, scopes: list[str] | None = None) -> dict[str, Any]:
        scopes = scopes or [GMAIL_SCOPE]
        return {
            "access_token": self._issue_access(scopes),
            "expires_in": 3599,
            "token_type": "Bearer",
            "scope": " ".join(scopes),
        }

    def _read(self, record: Recorded) -> tuple[int, dict, dict]:
        auth = record.headers.get("authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        if token not in self.access_tokens:
            return 401, {"error": {"code": 401, "message": "Invalid Credentials"}}, {}
        if READ_SCOPE not in self.token_scopes.get(token, []):
            refused = gmail_error(403, "insufficientPermissions", "Insufficient Permission")
            return refused.status, refused.body, refused.headers
        if self.read_failures:
            scripted = self.read_failures.pop(0)
            return scripted.status, scripted.body, scripted.headers
        if record.path == PROFILE_PATH:
            return 200, {"emailAddress": "me", "historyId": str(self.history_id)}, {}
        if record.path == HISTORY_PATH:
            return self._history(record)
        message_id = record.path[len(MESSAGE_PREFIX) :]
        found = [m for m in self.mailbox if m["id"] == message_id]
        if not found:
            return 404, {"error": {"code": 404, "message": "Requested entity was not found."}}, {}
        message = found[0]
        body: dict[str, Any] = {
            "id": message["id"],
            "threadId": message["threadId"],
            "labelIds": message["labelIds"],
            "historyId": str(message["history"]),
            "sizeEstimate": len(message["raw"]),
        }
        fmt = record.query.get("format", ["full"])[0]
        if fmt == "raw":
            body["raw"] = base64.urlsafe_b64encode(message["raw"]).decode().rstrip("=")
        else:
            wanted = {h.lower() for h in record.query.get("metadataHeaders", [])}
            parsed = email.message_from_bytes(message["raw"], policy=policy.default)
            body["payload"] = {
                "headers": [
                    {"name": k, "value": str(v)}
                    for k, v in parsed.items()
                    if not wanted or k.lower() in wanted
                ]
            }
        return 200, body, {}

    def _history(self, record: Recorded) -> tuple[int, dict, dict]:
        start = int(record.query.get("startHistoryId", ["0"])[0])
        if start < self.oldest_history:
            return 404, {"error": {"code": 404, "message": "Requested entity was not found."}}, {}
        newer = [m for m in self.mailbox if m["history"] > start]
        offset = int(record.query.get("pageToken", ["0"])[0])
        page = newer[offset : offset + HISTORY_PAGE]
        body: dict[str, Any] = {"historyId": str(self.history_id)}
        if page:
            body["history"] = [
                {
                    "id": str(m["history"]),
                    "messagesAdded": [
                        {
                            "message": {
                                "id": m["id"],
                                "threadId": m["threadId"],
                                "labelIds": m["labelIds"],
                            }
                        }
                    ],
                }
                for m in page
            ]
        if offset + HISTORY_PAGE < len(newer):
            body["nextPageToken"] = str(offset + HISTORY_PAGE)
        return 200, body, {}

    def _send(self, record: Recorded) -> tuple[int, dict, dict]:
        auth = record.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[len("Bearer ") :] not in self.access_tokens:
            return 401, {"error": {"code": 401, "message": "Invalid Credentials"}}, {}
        if self.send_failures:
            scripted = self.send_failures.pop(0)
            return scripted.status, scripted.body, scripted.headers
        body = record.json()
        thread_id = body.get("threadId")
        if thread_id and thread_id not in self.threads:
            return 404, {"error": {"code": 404, "message": "Requested entity was not found."}}, {}
        if not thread_id:
            thread_id = self._next_id("thread")
            self.threads.add(thread_id)
        message_id = self._next_id("msg")
        raw = base64.urlsafe_b64decode(body["raw"] + "=" * (-len(body["raw"]) % 4))
        self.sent.append({"id": message_id, "threadId": thread_id, "raw": raw, "body": body})
        self._add_to_mailbox(message_id, thread_id, raw, ["SENT"])
        return 200, {"id": message_id, "threadId": thread_id, "labelIds": ["SENT"]}, {}


def browser_comes_back(query: dict[str, list[str]], timeout: float) -> bytes:
    """What the owner's browser does once Google's consent page is allowed: it opens
    the redirect address of the sign-in (``query``: the consent URL's query) with a
    code; the page the app answers with."""
    import urllib.parse
    import urllib.request

    back = (
        query["redirect_uri"][0]
        + "?"
        + urllib.parse.urlencode(
            {"state": query["state"][0], "code": "code-from-google", "scope": query["scope"][0]}
        )
    )
    with urllib.request.urlopen(back, timeout=timeout) as answer:
        return answer.read()
