"""Retries with tenacity: only transient failures, with backoff, inside a time budget.

A pass gives mail delivery ``notify.retry_budget`` seconds in all (a
``Deadline``). Each network call is retried on ``TransientMailError`` with
exponential backoff and jitter (or the server's Retry-After when it is
longer) as long as the next attempt would still start inside the budget.
Permanent failures are never retried. The Drive calls of the sync step retry the
same way, inside a budget of their own (``retry_on`` names what is transient there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from syft_bg_app.mail.errors import TransientMailError

T = TypeVar("T")
MAX_ATTEMPTS = 6
INITIAL_WAIT = 1.0
MAX_WAIT = 30.0
JITTER = 0.5
# Tests replace this to move a frozen clock instead of sleeping.
SLEEP: Callable[[float], None] = time.sleep

log = logging.getLogger("syft_bg.notify")


class Deadline:
    """The end of this pass's time for mail, on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0


def call(
    fn: Callable[[], T],
    deadline: Deadline,
    what: str,
    retry_on: type[BaseException] = TransientMailError,
    logger: logging.Logger = log,
) -> T:
    """Run ``fn``, retrying ``retry_on`` failures while the deadline allows."""
    from tenacity import (
        Retrying,
        retry_if_exception_type,
        stop_after_attempt,
        stop_before_delay,
        wait_exponential_jitter,
    )

    backoff = wait_exponential_jitter(initial=INITIAL_WAIT, max=MAX_WAIT, jitter=JITTER)

    def wait(retry_state) -> float:
        delay = backoff(retry_state)
        hint = getattr(retry_state.outcome.exception(), "retry_after", None)
        if hint:
            delay = max(delay, min(float(hint), MAX_WAIT))
        return delay

    def before_sleep(retry_state) -> None:
        exc = retry_state.outcome.exception()
        logger.info(
            "%s failed (attempt %d): %s; retrying in %.1fs",
            what,
            retry_state.attempt_number,
            exc,
            retry_state.upcoming_sleep,
        )

    retrying = Retrying(
        retry=retry_if_exception_type(retry_on),
        stop=stop_before_delay(deadline.remaining()) | stop_after_attempt(MAX_ATTEMPTS),
        wait=wait,
        sleep=lambda seconds: SLEEP(seconds),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)
