"""A small Drive v3 server on 127.0.0.1 for the real Google client libraries.

It keeps files and folders with one owner each, per-user grants that folders
pass on to everything below them, and contents; it answers the ``q`` language
the syft clients use (``and``/``or``/``not``, parentheses, ``name =``,
``name contains``, ``mimeType``, ``'x' in parents``, ``'x' in owners``,
``trashed``), simple, multipart and resumable uploads, media downloads,
parent moves, permissions (list, create, delete), ``appProperties`` and
``/batch/drive/v3``. Every request is made as
the user its bearer token belongs to, and it may see and change only what that
user may on Drive: the tests would prove nothing about who sees what otherwise.

Point a client at it by rewriting ``https://www.googleapis.com/`` to ``url + "/"``
(``drive.api_endpoint`` in the app; ``sitecustomize.py`` from
``client_redirect`` for another process).
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from local_http import LocalHTTPServer

FOLDER = "application/vnd.google-apps.folder"
DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"
MAX_PAGE_SIZE = 1000
# Drive refuses a long query ("The query is too complex.") at a bound it does not
# document; this one is the fake's own (``FakeDrive.max_query_length`` changes it).
MAX_QUERY_LENGTH = 8000


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class DriveFile:
    id: str
    name: str
    mime: str
    owner: str
    parents: list[str]
    content: bytes = b""
    grants: dict[str, str] = field(default_factory=dict)  # email -> role
    created: str = field(default_factory=_now)
    modified: str = field(default_factory=_now)
    trashed: bool = False
    app_properties: dict[str, str] = field(default_factory=dict)

    def resource(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "drive#file",
            "id": self.id,
            "name": self.name,
            "mimeType": self.mime,
            "parents": list(self.parents),
            "owners": [{"emailAddress": self.owner}],
            "createdTime": self.created,
            "modifiedTime": self.modified,
            "trashed": self.trashed,
            "appProperties": dict(self.app_properties),
        }
        if self.mime != FOLDER:
            out["size"] = str(len(self.content))
        return out


class HttpProblem(Exception):
    def __init__(self, status: int, message: str, reason: str = "badRequest") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


# -- the q language ------------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(\(|\)|'(?:[^'\\]|\\.)*'|!=|=|[A-Za-z_]+)")


def _tokens(q: str) -> list[str]:
    out, pos = [], 0
    while pos < len(q):
        match = _TOKEN.match(q, pos)
        if not match:
            if q[pos:].strip() == "":
                break
            raise HttpProblem(400, f"Invalid Value: cannot parse q at {q[pos:]!r}", "invalid")
        out.append(match.group(1))
        pos = match.end()
    return out


def _literal(token: str) -> str:
    if not (token.startswith("'") and token.endswith("'")):
        raise HttpProblem(400, f"Invalid Value: expected a string, got {token}", "invalid")
    return re.sub(r"\\(.)", r"\1", token[1:-1])


class _Query:
    def __init__(self, q: str, user: str) -> None:
        self.tokens = _tokens(q)
        self.pos = 0
        self.user = user
        self.tree = self._or() if self.tokens else ("true",)
        if self.pos != len(self.tokens):
            raise HttpProblem(400, f"Invalid Value: trailing {self.tokens[self.pos :]}", "invalid")

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise HttpProblem(400, "Invalid Value: q ends early", "invalid")
        self.pos += 1
        return token

    def _or(self):
        node = self._and()
        while (self._peek() or "").lower() == "or":
            self._take()
            node = ("or", node, self._and())
        return node

    def _and(self):
        node = self._not()
        while (self._peek() or "").lower() == "and":
            self._take()
            node = ("and", node, self._not())
        return node

    def _not(self):
        if (self._peek() or "").lower() == "not":
            self._take()
            return ("not", self._not())
        if self._peek() == "(":
            self._take()
            node = self._or()
            if self._take() != ")":
                raise HttpProblem(400, "Invalid Value: unbalanced parentheses", "invalid")
            return node
        return self._term()

    def _term(self):
        first = self._take()
        if first.startswith("'"):
            value = _literal(first)
            if self._take().lower() != "in":
                raise HttpProblem(400, "Invalid Value: expected 'in'", "invalid")
            return ("in", value, self._take())
        op = self._take()
        value = self._take()
        if first == "trashed":
            return ("trashed", op, value.lower() == "true")
        return ("cmp", first, op.lower(), _literal(value))

    def match(self, f: DriveFile, node=None) -> bool:
        node = node or self.tree
        kind = node[0]
        if kind == "true":
            return True
        if kind == "or":
            return self.match(f, node[1]) or self.match(f, node[2])
        if kind == "and":
            return self.match(f, node[1]) and self.match(f, node[2])
        if kind == "not":
            return not self.match(f, node[1])
        if kind == "trashed":
            return (f.trashed == node[2]) == (node[1] == "=")
        if kind == "in":
            value, where = node[1], node[2]
            if where == "parents":
                return value in f.parents
            if where == "owners":
                return f.owner.lower() == (self.user if value == "me" else value).lower()
            raise HttpProblem(400, f"Invalid Value: '{value}' in {where}", "invalid")
        _, name, op, value = node
        actual = {"name": f.name, "mimeType": f.mime}.get(name)
        if actual is None:
            raise HttpProblem(400, f"Invalid Value: unknown field {name}", "invalid")
        if op == "=":
            return actual == value
        if op == "!=":
            return actual != value
        if op == "contains":
            return value in actual
        raise HttpProblem(400, f"Invalid Value: operator {op}", "invalid")


# -- the server ------------------------------------------------------------------------------
class FakeDrive:
    def __init__(self) -> None:
        self.files: dict[str, DriveFile] = {}
        self.tokens: dict[str, str] = {}  # access token -> email
        self.requests: list[tuple[str, str, str]] = []  # (user, method, path)
        # Scripted answers to the next requests: (status, reason[, message]).
        self.failures: list[tuple] = []
        # (user, method, path, query) -> (status, reason) to refuse that request, or None.
        self.refuse: Any = None
        self.max_query_length = MAX_QUERY_LENGTH
        self._ids = itertools.count(1)
        self._uploads: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self._http = LocalHTTPServer()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> FakeDrive:
        self._http.serve(self._serve)
        return self

    def stop(self) -> None:
        self._http.stop()

    @property
    def url(self) -> str:
        return self._http.url

    # -- what tests use ------------------------------------------------------------------------
    def write_token(self, path: Path, user: str) -> Path:
        """An authorized-user token file for ``user`` that needs no refresh (mode 0600)."""
        token = f"token-{user}-{next(self._ids)}"
        self.tokens[token] = user
        info = {
            "token": token,
            "refresh_token": f"refresh-{user}",
            "token_uri": self.url + "/token",
            "client_id": "client-1.apps.example",
            "client_secret": "client-secret-1",
            "scopes": [DRIVE_SCOPE],
            "expiry": (datetime.now(timezone.utc) + timedelta(days=3650))
            .replace(tzinfo=None)
            .isoformat()
            + "Z",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info))
        path.chmod(0o600)
        return path

    def client_redirect(self, folder: Path) -> Path:
        """A folder with a sitecustomize.py that sends another process's Google calls here."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sitecustomize.py").write_text(
            "import httplib2\n"
            "_request = httplib2.Http.request\n"
            "def _redirected(self, uri, *args, **kwargs):\n"
            "    if uri.startswith('https://www.googleapis.com/'):\n"
            f"        uri = {self.url + '/'!r} + uri[len('https://www.googleapis.com/'):]\n"
            "    return _request(self, uri, *args, **kwargs)\n"
            "httplib2.Http.request = _redirected\n"
        )
        return folder

    def add_peer_folders(
        self, owner: str, do_email: str, version: str, peer: str | None = None
    ) -> None:
        """What a data scientist's ``add_peer`` makes: the inbox/outbox pair, shared."""
        roots = [f for f in self.named("SyftBox") if f.owner == owner]
        root = (
            roots[0] if roots else self._create(owner, {"name": "SyftBox", "mimeType": FOLDER}, b"")
        )
        for kind in ("inbox", "outbox"):
            name = f"syft_datasite#{version}#{do_email}#{kind}#{peer or owner}"
            meta = {"name": name, "mimeType": FOLDER, "parents": [root.id]}
            self._create(owner, meta, b"").grants[do_email.lower()] = "writer"

    def named(self, name: str) -> list[DriveFile]:
        return [f for f in self.files.values() if f.name == name and not f.trashed]

    def children(self, folder_id: str) -> list[DriveFile]:
        return [f for f in self.files.values() if folder_id in f.parents and not f.trashed]

    def count(self, user: str) -> int:
        return sum(1 for u, _, _ in self.requests if u == user)

    # -- access --------------------------------------------------------------------------------
    def _role(self, user: str, f: DriveFile, seen: frozenset[str] = frozenset()) -> str | None:
        if f.owner.lower() == user.lower():
            return "owner"
        role = f.grants.get(user.lower())
        if role == "writer":
            return role
        for parent in f.parents:
            if parent in self.files and parent not in seen:
                inherited = self._role(user, self.files[parent], seen | {f.id})
                if inherited in ("owner", "writer"):
                    return "writer"
                role = role or inherited
        return role

    def _file(self, user: str, file_id: str, write: bool = False) -> DriveFile:
        f = self.files.get(file_id)
        role = self._role(user, f) if f else None
        if f is None or role is None:
            raise HttpProblem(404, f"File not found: {file_id}.", "notFound")
        if write and role not in ("owner", "writer"):
            raise HttpProblem(
                403,
                "The user does not have sufficient permissions for this file.",
                "insufficientFilePermissions",  # Drive's reason for writing with read access
            )
        return f

    # -- serving -------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        # The head and the body go out in two writes: without this, each answer
        # waits for the client's delayed acknowledgement (40 ms a request).
        handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        status, headers, payload = self.dispatch(
            handler.command, handler.path, dict(handler.headers.items()), body
        )
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def dispatch(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parsed = urllib.parse.urlsplit(target)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        lower = {k.lower(): v for k, v in headers.items()}
        if lower.get("x-http-method-override"):
            # A request too long for a URL: the client sends its query as a form body.
            method = lower["x-http-method-override"].upper()
            query.update({k: v[-1] for k, v in urllib.parse.parse_qs(body.decode()).items()})
            body = b""
        try:
            if parsed.path == "/token":
                return self._json(200, {"access_token": "unused", "expires_in": 3599})
            auth = lower.get("authorization", "")
            user = self.tokens.get(auth.removeprefix("Bearer "))
            if user is None:
                raise HttpProblem(401, "Invalid Credentials", "authError")
            with self._lock:
                self.requests.append((user, method, parsed.path))
                if parsed.path == "/batch/drive/v3":
                    return self._batch(lower, body)
                if self.failures:
                    status, reason, *message = self.failures.pop(0)
                    raise HttpProblem(status, message[0] if message else "scripted failure", reason)
                refused = self.refuse and self.refuse(user, method, parsed.path, query)
                if refused:
                    raise HttpProblem(refused[0], "scripted refusal", refused[1])
                return self._route(user, method, parsed.path, query, lower, body)
        except HttpProblem as problem:
            return self._json(
                problem.status,
                {
                    "error": {
                        "code": problem.status,
                        "message": str(problem),
                        "errors": [{"reason": problem.reason, "message": str(problem)}],
                    }
                },
            )

    @staticmethod
    def _json(status: int, data: Any, extra: dict[str, str] | None = None):
        headers = {"Content-Type": "application/json; charset=UTF-8", **(extra or {})}
        return status, headers, json.dumps(data).encode()

    def _route(self, user, method, path, query, headers, body):
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["drive", "v3"]:
            rest = parts[2:]
            if rest == ["about"] and method == "GET":
                return self._json(200, {"user": {"emailAddress": user}})
            if rest == ["files"] and method == "GET":
                return self._list(user, query)
            if rest == ["files"] and method == "POST":
                meta = json.loads(body or b"{}")
                return self._json(200, self._create(user, meta, b"").resource())
            if len(rest) == 2 and rest[0] == "files":
                return self._one(user, method, rest[1], query, body)
            if len(rest) == 3 and rest[0] == "files" and rest[2] == "permissions":
                return self._permissions(user, method, rest[1], body)
            if len(rest) == 4 and rest[0] == "files" and rest[2] == "permissions":
                return self._permission(user, method, rest[1], urllib.parse.unquote(rest[3]))
        if parts[:3] == ["upload", "drive", "v3"] and len(parts) >= 4 and parts[3] == "files":
            file_id = parts[4] if len(parts) > 4 else None
            return self._upload(user, method, file_id, query, headers, body)
        raise HttpProblem(404, f"no such endpoint {method} {path}", "notFound")

    def _list(self, user: str, query: dict[str, str]):
        if len(query.get("q", "")) > self.max_query_length:
            raise HttpProblem(400, "The query is too complex.", "invalid")
        q = _Query(query.get("q", ""), user)
        found = [f for f in self.files.values() if self._role(user, f) and q.match(f)]
        order = query.get("orderBy", "")
        if order.startswith("name"):
            found.sort(key=lambda f: f.name, reverse=order.endswith("desc"))
        # Drive's default page is 100 and its largest 1,000, whatever is asked.
        size = min(int(query.get("pageSize") or 100), MAX_PAGE_SIZE)
        start = int(query.get("pageToken") or 0)
        page = found[start : start + size]
        out: dict[str, Any] = {"files": [f.resource() for f in page]}
        if start + size < len(found):
            out["nextPageToken"] = str(start + size)
        return self._json(200, out)

    def _create(self, user: str, meta: dict[str, Any], content: bytes) -> DriveFile:
        parents = list(meta.get("parents") or [])
        for parent in parents:
            self._file(user, parent, write=True)
        f = DriveFile(
            id=f"f{next(self._ids)}",
            name=meta.get("name") or "Untitled",
            mime=meta.get("mimeType") or "application/octet-stream",
            owner=user,
            parents=parents,
            content=content,
            app_properties=dict(meta.get("appProperties") or {}),
        )
        self.files[f.id] = f
        return f

    def _update(self, user: str, f: DriveFile, meta: dict[str, Any], query: dict[str, str]):
        for parent in filter(None, (query.get("addParents") or "").split(",")):
            self._file(user, parent, write=True)
            if parent not in f.parents:
                f.parents.append(parent)
        for parent in filter(None, (query.get("removeParents") or "").split(",")):
            if parent in f.parents:
                f.parents.remove(parent)
        if "name" in meta:
            f.name = meta["name"]
        if "appProperties" in meta:
            f.app_properties.update(meta["appProperties"] or {})
        if "trashed" in meta:
            f.trashed = bool(meta["trashed"])
        f.modified = _now()

    def _one(self, user, method, file_id, query, body):
        if method == "GET":
            f = self._file(user, file_id)
            if query.get("alt") == "media":
                return 200, {"Content-Type": "application/octet-stream"}, f.content
            return self._json(200, f.resource())
        if method == "PATCH":
            f = self._file(user, file_id, write=True)
            self._update(user, f, json.loads(body or b"{}"), query)
            return self._json(200, f.resource())
        if method == "DELETE":
            f = self._file(user, file_id, write=True)
            if f.owner.lower() != user.lower():
                raise HttpProblem(403, "Only the owner can delete this file.", "forbidden")
            self._delete_tree(user, file_id)
            return 204, {}, b""
        raise HttpProblem(405, f"{method} not allowed", "badRequest")

    def _delete_tree(self, user: str, file_id: str) -> None:
        """As Drive: a deleted folder takes along what its owner owns below it; others'
        files below it lose that parent."""
        for child in [c for c in self.files.values() if file_id in c.parents]:
            if child.owner.lower() == user.lower():
                self._delete_tree(user, child.id)
            else:
                child.parents.remove(file_id)
        del self.files[file_id]

    def _permission(self, user, method, file_id, permission_id):
        f = self._file(user, file_id)
        if method != "DELETE":
            raise HttpProblem(405, f"{method} not allowed", "badRequest")
        if f.owner.lower() != user.lower() and self._role(user, f) != "writer":
            raise HttpProblem(403, "cannot change the sharing of this file", "forbidden")
        who = next((e for e in f.grants if f"p-{e}" == permission_id), None)
        if who is None:
            raise HttpProblem(404, f"Permission not found: {permission_id}.", "notFound")
        del f.grants[who]
        return 204, {}, b""

    def _permissions(self, user, method, file_id, body):
        f = self._file(user, file_id)
        if method == "GET":
            perms = [{"id": f"p-{f.owner}", "emailAddress": f.owner, "role": "owner"}]
            perms += [
                {"id": f"p-{e}", "type": "user", "emailAddress": e, "role": r}
                for e, r in f.grants.items()
            ]
            return self._json(200, {"permissions": perms})
        if method == "POST":
            if f.owner.lower() != user.lower() and self._role(user, f) != "writer":
                raise HttpProblem(403, "cannot share this file", "forbidden")
            grant = json.loads(body or b"{}")
            who = (grant.get("emailAddress") or "").lower()
            f.grants[who] = grant.get("role") or "reader"
            return self._json(200, {"id": f"p-{who}", "role": f.grants[who], "type": "user"})
        raise HttpProblem(405, f"{method} not allowed", "badRequest")

    def _upload(self, user, method, file_id, query, headers, body):
        kind = query.get("uploadType")
        if method == "PUT" and query.get("upload_id"):
            session = self._uploads.pop(query["upload_id"], None)
            if session is None:
                raise HttpProblem(404, "upload session not found", "notFound")
            return self._finish(user, session["file_id"], session["meta"], session["query"], body)
        if kind == "resumable":
            upload_id = f"u{next(self._ids)}"
            meta = json.loads(body or b"{}")
            self._uploads[upload_id] = {"file_id": file_id, "meta": meta, "query": query}
            location = (
                f"{self.url}/upload/drive/v3/files?uploadType=resumable&upload_id={upload_id}"
            )
            return 200, {"Location": location, "Content-Length": "0"}, b""
        if kind == "multipart":
            meta, content = _multipart_related(headers.get("content-type", ""), body)
            return self._finish(user, file_id, meta, query, content)
        if kind == "media":
            return self._finish(user, file_id, {}, query, body)
        raise HttpProblem(400, f"uploadType {kind!r}", "badRequest")

    def _finish(self, user, file_id, meta, query, content):
        if file_id is None:
            return self._json(200, self._create(user, meta, content).resource())
        f = self._file(user, file_id, write=True)
        f.content = content
        self._update(user, f, meta, query)
        return self._json(200, f.resource())

    def _batch(self, headers, body):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + headers.get("content-type", "").encode() + b"\r\n\r\n" + body
        )
        boundary = "batch_response_boundary"
        out = []
        for part in message.iter_parts():
            raw = part.get_payload(decode=True) or b""
            head, _, inner_body = raw.partition(b"\r\n\r\n")
            if not _:
                head, _, inner_body = raw.partition(b"\n\n")
            lines = head.decode().splitlines()
            method, target = lines[0].split(" ")[:2]
            inner_headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            # The outer request's credentials carry into each part.
            inner_headers.setdefault("Authorization", headers.get("authorization", ""))
            with_host = urllib.parse.urlsplit(target)
            path = with_host.path + ("?" + with_host.query if with_host.query else "")
            status, rheaders, payload = self.dispatch(method, path, inner_headers, inner_body)
            content_id = (part.get("Content-ID") or "<0>").strip("<>")
            head_lines = [f"HTTP/1.1 {status} OK"]
            head_lines += [f"{k}: {v}" for k, v in rheaders.items()]
            head_lines.append(f"Content-Length: {len(payload)}")
            out.append(
                f"--{boundary}\r\nContent-Type: application/http\r\n"
                f"Content-ID: <response-{content_id}>\r\n\r\n".encode()
                + "\r\n".join(head_lines).encode()
                + b"\r\n\r\n"
                + payload
                + b"\r\n"
            )
        data = b"".join(out) + f"--{boundary}--\r\n".encode()
        return 200, {"Content-Type": f"multipart/mixed; boundary={boundary}"}, data


def _multipart_related(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    parts = list(message.iter_parts())
    meta = json.loads(parts[0].get_payload(decode=True) or b"{}")
    content = parts[1].get_payload(decode=True) if len(parts) > 1 else b""
    return meta, content or b""
