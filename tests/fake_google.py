"""A small local HTTP server that plays Google's OAuth token endpoint and the
Gmail ``users.messages.send`` endpoint, for the real google-api-python-client.

It listens on 127.0.0.1 only. Tests script failures by pushing responses onto
``send_failures`` / ``token_failures`` and read back every request it received.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SEND_PATH = "/gmail/v1/users/me/messages/send"
GMAIL_SCOPE = "https://www.googleapis.com/auth/gmail.send"


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
        self.refresh_tokens: set[str] = {"refresh-1"}
        self.codes: set[str] = set()
        self.access_tokens: set[str] = set()
        self.threads: set[str] = set()
        self._counter = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeGoogle:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

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
        self, path: Path, expired: bool = True, refresh_token: str = "refresh-1"
    ) -> None:
        """An authorized-user token file as the sign-in writes it (mode 0600)."""
        if expired:
            expiry = datetime.now(timezone.utc) - timedelta(hours=1)
            token = "stale-access"
        else:
            expiry = datetime.now(timezone.utc) + timedelta(hours=1)
            token = self._issue_access()
        info = {
            "token": token,
            "refresh_token": refresh_token,
            "token_uri": self.token_uri,
            "client_id": "client-1.apps.example",
            "client_secret": "client-secret-1",
            "scopes": [GMAIL_SCOPE],
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
    def _issue_access(self) -> str:
        with self._lock:
            self._counter += 1
            token = f"access-{self._counter}"
        self.access_tokens.add(token)
        return token

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}-{self._counter}"

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
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
            return 200, self._token_body(), {}
        if grant == "authorization_code" and form.get("code") in self.codes:
            self.codes.discard(form["code"])
            self.refresh_tokens.add("refresh-from-code")
            return 200, {**self._token_body(), "refresh_token": "refresh-from-code"}, {}
        return (
            400,
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
            {},
        )

    def _token_body(self) -> dict[str, Any]:
        return {
            "access_token": self._issue_access(),
            "expires_in": 3599,
            "token_type": "Bearer",
            "scope": GMAIL_SCOPE,
        }

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
        return 200, {"id": message_id, "threadId": thread_id, "labelIds": ["SENT"]}, {}
