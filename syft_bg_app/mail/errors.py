"""How a delivery attempt failed, in terms the queue and ``status`` act on."""

from __future__ import annotations

from syft_bg_app.errors import SyftBgError


class MailError(SyftBgError):
    """A failed delivery. ``advice`` says in plain words what the data owner can do."""

    def __init__(self, message: str, advice: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.advice = advice
        self.retry_after = retry_after


class TransientMailError(MailError):
    """Worth retrying: rate limits, 5xx answers, connection problems."""


class PermanentMailError(MailError):
    """Retrying the same request cannot help until something is changed.

    ``scope`` is "transport" when nothing can be sent (revoked token, wrong
    password, untrusted certificate) and "message" when only this email is
    refused (a 4xx about its content or recipient).
    """

    def __init__(
        self,
        message: str,
        advice: str = "",
        scope: str = "transport",
    ) -> None:
        super().__init__(message, advice)
        self.scope = scope
