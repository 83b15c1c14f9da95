"""What an error answer of a Google API says: its status, reason, message, Retry-After.

Gmail and Drive answer in the same JSON form, ``{"error": {"code", "message",
"errors": [{"reason", "message"}]}}``; the reason (``rateLimitExceeded``,
``insufficientFilePermissions``, ...) is what decides whether to retry, to ask
for a new sign-in or to give up on one request.
"""

from __future__ import annotations

import json


def http_status(exc: Exception) -> int:
    """The HTTP status of a googleapiclient ``HttpError`` (0 when there is none)."""
    resp = getattr(exc, "resp", None)
    try:
        return int(getattr(resp, "status", 0))
    except (TypeError, ValueError):
        return 0


def error_details(exc: Exception) -> tuple[str | None, str | None]:
    """(reason, message) of the answer's JSON error, each None when it does not say."""
    try:
        data = json.loads(exc.content.decode("utf-8"))  # type: ignore[attr-defined]
    except (AttributeError, UnicodeDecodeError, ValueError):
        return None, None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return (str(error) if error else None), None
    reasons = [e.get("reason") for e in error.get("errors", []) if isinstance(e, dict)]
    reason = next((r for r in reasons if r), None) or error.get("status")
    return reason, error.get("message")


def retry_after(exc: Exception) -> float | None:
    """The seconds the answer's Retry-After header asks to wait, if it has one."""
    value = getattr(exc, "resp", {}).get("retry-after") if hasattr(exc, "resp") else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
