"""The Drive v3 service the data owner's side of the protocol talks through.

Every call goes through the Google client library and is retried with tenacity
(``mail/retry.py``, the same backoff as mail) on what Drive documents as
temporary, and nothing else: 429, 500, 502, 503, 504, a 403 whose reason is
``rateLimitExceeded`` / ``userRateLimitExceeded``, and connection errors, inside
``drive.retry_budget`` seconds a pass. A 401, or a 403 about the sign-in itself
(a missing scope, a project without the Drive API), is a ``DriveAuthError``: no
Drive call can work until the owner acts. Any other refusal (a 403 on one file, a
404 for a folder someone deleted) is a plain ``DriveError`` about that request only.
``drive.api_endpoint`` sends every request (uploads and batches included, which
the library would otherwise send to Google's host) to another base URL.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from syft_bg_app.errors import SyftBgError
from syft_bg_app.google_errors import error_details, http_status, retry_after
from syft_bg_app.mail import retry
from syft_bg_app.store.fsutil import atomic_write_text

GOOGLE_BASE = "https://www.googleapis.com/"
DRIVE_BASE = GOOGLE_BASE + "drive/v3/"
DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"
FOLDER_MIME = "application/vnd.google-apps.folder"
HTTP_TIMEOUT = 60.0
REFRESH_MARGIN = timedelta(minutes=5)
# What Drive's error guide says to retry with exponential backoff.
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
# 403 reasons that refuse access to the files a request names (a 404 does too);
# the others are about quotas, limits or the sign-in.
FILE_REFUSAL_REASONS = frozenset(
    {
        None,
        "forbidden",
        "insufficientFilePermissions",
        "insufficientPermissions",
        "appNotAuthorizedToFile",
    }
)
# 403 reasons about the project of the OAuth client rather than any one file.
API_DISABLED_REASONS = frozenset({"accessNotConfigured", "SERVICE_DISABLED"})
# Seconds of retrying a Drive object allows when the caller names no budget (the
# checks of setup-status and init; a pass uses drive.retry_budget).
DEFAULT_RETRY_BUDGET = 20.0

log = logging.getLogger("syft_bg.sync.drive")


class DriveError(SyftBgError):
    """Drive refused or could not be reached; the message says what to do."""

    status: int | None = None  # Drive's HTTP answer, when it gave one
    reason: str | None = None  # the reason of Drive's answer (notFound, ...), when it says


class DriveTransientError(DriveError):
    """Worth retrying: a rate limit, a 5xx answer, Google out of reach."""

    def __init__(self, message: str, wait_hint: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = wait_hint


class DriveAuthError(DriveError):
    """The sign-in is missing, unreadable, revoked, lacks the Drive scope, or its
    project may not use the Drive API: no Drive call works until the owner acts."""


def relogin_advice(do_email: str) -> str:
    return (
        f"sign in to Google Drive again and save the token (mode 0600) where drive.token "
        f"points; the DS's Drive messages wait on Drive until then (data owner {do_email})"
    )


def drive_error(exc: BaseException, do_email: str) -> BaseException:
    """``exc`` of a Drive call as the DriveError it means; ``exc`` itself when it is none.

    The reasons are those of Drive's error guide: only the ones about the sign-in
    stop every Drive call, and only the temporary ones are retried.
    """
    import httplib2
    from google.auth import exceptions as auth_exceptions
    from googleapiclient.errors import HttpError

    if isinstance(exc, HttpError):
        status = http_status(exc)
        reason, message = error_details(exc)
        detail = " ".join(str(part) for part in (status, reason) if part)
        detail += f": {message or exc.reason}" if (message or exc.reason) else ""
        if status in RETRIED_STATUSES or (status == 403 and reason in RATE_LIMIT_REASONS):
            return DriveTransientError(
                f"Drive answered {detail}, which looks temporary; the next pass tries again",
                retry_after(exc),
            )
        error: DriveError
        if status == 401 or (status == 403 and _about_the_sign_in(exc, reason, message)):
            error = DriveAuthError(
                f"Drive refused the request ({detail}); {relogin_advice(do_email)}"
            )
        elif status == 403 and reason in API_DISABLED_REASONS:
            error = DriveAuthError(
                f"Drive refused the request ({detail}); enable the Google Drive API for the "
                "OAuth client's project in the Google Cloud console; the DS's Drive "
                "messages wait on Drive until then"
            )
        else:
            error = DriveError(f"Drive answered {detail}")
        error.status, error.reason = status, reason
        return error
    if isinstance(exc, auth_exceptions.RefreshError):
        if getattr(exc, "retryable", False):
            return DriveTransientError(f"Google could not refresh the Drive sign-in now ({exc})")
        return DriveAuthError(
            f"Google no longer accepts the Drive sign-in ({exc}); {relogin_advice(do_email)}"
        )
    if isinstance(
        exc, (auth_exceptions.TransportError, httplib2.HttpLib2Error, OSError, TimeoutError)
    ):
        return DriveTransientError(f"cannot reach Google Drive ({exc or type(exc).__name__})")
    return exc


def _about_the_sign_in(exc: BaseException, reason: str | None, message: str | None) -> bool:
    """Whether a 403 refuses the sign-in (its scopes) rather than one file."""
    if reason == "authError":
        return True
    challenge = str(getattr(exc, "resp", {}).get("www-authenticate", ""))
    if "insufficient_scope" in challenge:
        return True
    # Drive also answers insufficientPermissions about one file; only its scope
    # message is about the sign-in.
    return reason == "insufficientPermissions" and "scope" in (message or "").lower()


def load_credentials(token_path: Path, do_email: str):
    """The authorized-user token at ``token_path``, refreshed and saved when due."""
    from google.oauth2.credentials import Credentials

    try:
        st = os.stat(token_path)
        info = json.loads(token_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DriveAuthError(
            f"there is no Drive sign-in token at {token_path}; {relogin_advice(do_email)}"
        ) from None
    except (OSError, ValueError) as exc:
        raise DriveAuthError(f"the Drive token {token_path} cannot be read ({exc})") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise DriveAuthError(
            f"the Drive token {token_path} can be read by other users: chmod 600 {token_path}"
        )
    if not isinstance(info, dict):
        raise DriveAuthError(f"the Drive token {token_path} is not a JSON object")
    try:
        creds = Credentials.from_authorized_user_info(info)
    except ValueError as exc:
        raise DriveAuthError(f"the Drive token {token_path} is incomplete ({exc})") from None
    if info.get("token_uri"):
        # from_authorized_user_info always uses Google's endpoint; keep the one recorded.
        expiry = creds.expiry
        creds = creds.with_token_uri(info["token_uri"])
        creds.expiry = expiry
    scopes = info.get("scopes") or []
    if isinstance(scopes, str):
        scopes = scopes.split()
    if scopes and DRIVE_SCOPE not in scopes:
        raise DriveAuthError(
            f"the token {token_path} does not carry the Drive scope ({DRIVE_SCOPE}); "
            f"{relogin_advice(do_email)}"
        )
    return creds


def _rewriting_http(endpoint: str | None):
    import httplib2

    class RewritingHttp(httplib2.Http):
        """Sends requests meant for Google's host to ``endpoint``."""

        def request(self, uri: str, *args: Any, **kwargs: Any):  # type: ignore[override]
            if endpoint and uri.startswith(GOOGLE_BASE):
                uri = endpoint + uri[len(GOOGLE_BASE) :]
            return super().request(uri, *args, **kwargs)

    return RewritingHttp(timeout=HTTP_TIMEOUT)


class Drive:
    """A signed-in Drive v3 service and the few calls the owner's side makes."""

    def __init__(
        self,
        token_path: Path,
        do_email: str,
        api_endpoint: str | None,
        retry_budget: float = DEFAULT_RETRY_BUDGET,
    ) -> None:
        self.token_path = token_path
        self.do_email = do_email
        self.endpoint = (api_endpoint.rstrip("/") + "/") if api_endpoint else None
        self.requests = 0
        # One budget for all the retries of this object's calls (one pass's).
        self.deadline = retry.Deadline(retry_budget)
        self._http = None
        self._service = None

    @property
    def http(self):
        """The signed-in HTTP client, opened once."""
        if self._http is None:
            self._http = self._sign_in()
        return self._http

    @property
    def service(self):
        """The Drive v3 service, built once from the library's own copy of its description.

        Only calls other than listing need it: the discovery machinery imports
        the service-account and crypto modules (a fifth of a second), which an
        idle pass, that only lists, never pays.
        """
        if self._service is None:
            from googleapiclient.discovery import build

            self._service = build(
                "drive", "v3", http=self.http, static_discovery=True, cache_discovery=False
            )
        return self._service

    def _list_request(self, **params: Any):
        """``files.list`` as the library's own request object, as the service makes it."""
        from googleapiclient.http import HttpRequest
        from googleapiclient.model import JsonModel

        model = JsonModel(data_wrapper=False)
        headers, _, query, _ = model.request({}, {}, params, None)
        return HttpRequest(
            self.http,
            model.response,
            DRIVE_BASE + "files" + query,
            method="GET",
            headers=headers,
            methodId="drive.files.list",
        )

    def _sign_in(self):
        import google_auth_httplib2

        creds = load_credentials(self.token_path, self.do_email)
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        if not creds.token or creds.expiry is None or creds.expiry - now < REFRESH_MARGIN:
            refresh = google_auth_httplib2.Request(_rewriting_http(self.endpoint))
            self._retried(lambda: creds.refresh(refresh), "refreshing the Drive sign-in")
            atomic_write_text(self.token_path, creds.to_json(), mode=0o600)
        return google_auth_httplib2.AuthorizedHttp(creds, http=_rewriting_http(self.endpoint))

    def execute(self, make_request: Callable[[], Any]) -> Any:
        """Run the request ``make_request`` builds, a fresh one for each attempt.

        A fresh request each time: a resumable upload that failed part-way starts a
        new session rather than asking a session Drive may have dropped.
        """

        if self._http is None:
            # Signed in before the attempts: the sign-in retries its own refresh.
            self._http = self._sign_in()

        def attempt() -> Any:
            self.requests += 1
            return make_request().execute(num_retries=0)

        return self._retried(attempt, "a Drive request")

    def _retried(self, fn: Callable[[], Any], what: str) -> Any:
        def classified() -> Any:
            try:
                return fn()
            except Exception as exc:
                error = drive_error(exc, self.do_email)
                if error is exc:
                    raise
                raise error from None

        return retry.call(classified, self.deadline, what, retry_on=DriveTransientError, logger=log)

    # -- the calls ----------------------------------------------------------------------
    def list(self, q: str, order_by: str | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "q": q,
            "fields": "files(id, name, size, mimeType, modifiedTime, owners(emailAddress),"
            " parents), nextPageToken",
            "pageSize": 1000,  # Drive's largest page: 500 peers' folders in one
        }
        if order_by:
            kwargs["orderBy"] = order_by
        return self._all_pages(self._list_request, "files", kwargs)

    def _all_pages(self, method, key: str, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        """The ``key`` entries of every page ``method(**kwargs)`` answers."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.execute(lambda params=kwargs: method(**params))
            found.extend(page.get(key, []))
            kwargs = {**kwargs, "pageToken": page.get("nextPageToken")}
            if not kwargs["pageToken"]:
                return found

    def download(self, file_id: str) -> bytes:
        return self.execute(lambda: self.service.files().get_media(fileId=file_id))

    def create_folder(self, name: str, parent: str | None) -> str:
        body: dict[str, Any] = {"name": name, "mimeType": FOLDER_MIME}
        if parent:
            body["parents"] = [parent]
        return self.execute(lambda: self.service.files().create(body=body, fields="id"))["id"]

    def upload(self, name: str, parent: str, data: bytes) -> str:
        from googleapiclient.http import MediaInMemoryUpload

        body = {"name": name, "parents": [parent]}

        def request():
            media = MediaInMemoryUpload(data, mimetype="application/octet-stream", resumable=True)
            return self.service.files().create(body=body, media_body=media, fields="id")

        return self.execute(request)["id"]

    def update_content(self, file_id: str, data: bytes) -> None:
        from googleapiclient.http import MediaInMemoryUpload

        def request():
            media = MediaInMemoryUpload(data, mimetype="application/octet-stream", resumable=True)
            return self.service.files().update(fileId=file_id, media_body=media)

        self.execute(request)

    def move(self, file_id: str, add: str, remove: str) -> None:
        self.execute(
            lambda: self.service.files().update(
                fileId=file_id,
                addParents=add,
                removeParents=remove,
                fields="id, parents",
                supportsAllDrives=True,
            )
        )

    def delete(self, file_id: str) -> None:
        self.execute(lambda: self.service.files().delete(fileId=file_id))

    def share(self, file_id: str, email: str, role: str) -> None:
        """Grant ``role`` to ``email`` unless some grant exists already."""
        for perm in self.permissions(file_id):
            if (perm.get("emailAddress") or "").lower() == email.lower():
                return
        self.grant(file_id, email, role)

    def permissions(self, file_id: str) -> list[dict[str, Any]]:
        """Every grant on ``file_id`` (id, emailAddress, role), the owner's included."""
        kwargs = {
            "fileId": file_id,
            "fields": "permissions(id, emailAddress, role), nextPageToken",
            "pageSize": 100,
        }
        return self._all_pages(self.service.permissions().list, "permissions", kwargs)

    def grant(self, file_id: str, email: str, role: str) -> None:
        body = {"type": "user", "role": role, "emailAddress": email}
        self.execute(
            lambda: self.service.permissions().create(
                fileId=file_id, body=body, sendNotificationEmail=False
            )
        )

    def revoke(self, file_id: str, permission_id: str) -> None:
        self.execute(
            lambda: self.service.permissions().delete(fileId=file_id, permissionId=permission_id)
        )

    def unshare(self, file_id: str, email: str) -> bool:
        """Take back every grant ``email`` holds on ``file_id``; whether one was there."""
        taken = False
        for perm in self.permissions(file_id):
            if perm.get("role") == "owner":
                continue
            if (perm.get("emailAddress") or "").lower() != email.lower():
                continue
            try:
                self.revoke(file_id, perm["id"])
            except DriveError as exc:
                if exc.status != 404:  # 404: taken back already, by another hand
                    raise
            taken = True
        return taken

    def set_app_properties(self, file_id: str, properties: dict[str, str]) -> None:
        self.execute(
            lambda: self.service.files().update(fileId=file_id, body={"appProperties": properties})
        )

    def about_email(self) -> str:
        about = self.execute(lambda: self.service.about().get(fields="user(emailAddress)"))
        return about["user"]["emailAddress"]


def check_sign_in(token_path: Path, do_email: str, api_endpoint: str | None) -> str | None:
    """What is wrong with the Drive sign-in (token, scope, account), or None when it works."""
    try:
        signed_in = Drive(token_path, do_email, api_endpoint).about_email()
    except DriveError as exc:
        return str(exc)
    if signed_in.lower() != do_email.lower():
        return (
            f"the Drive token {token_path} signs in as {signed_in}, not {do_email}; "
            f"{relogin_advice(do_email)}"
        )
    return None
