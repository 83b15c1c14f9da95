"""One bad item never stops a step: each job, request or event is tried on its own.

A step hands each item to ``StepItems.run``: a failure is logged with its
traceback and the step goes on with the next item; at the end
``raise_failures`` raises one ``ItemsFailed`` that counts them ("2 of 40 jobs
failed to sync: ..."), so the pass records the step as failed (exit 1) while
every other item got its turn, as certbot's renewal loop does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from syft_bg_app.errors import SyftBgError

T = TypeVar("T")
# How many failures the step's error spells out; the log has them all.
SHOWN_FAILURES = 5


@dataclass
class ItemFailure:
    label: str
    error: BaseException | str

    def __str__(self) -> str:
        if isinstance(self.error, str):
            return f"{self.label}: {self.error}"
        return f"{self.label}: {type(self.error).__name__}: {self.error}"


class ItemsFailed(SyftBgError):
    """Some items of a step failed; the others were handled."""

    exit_code = 1

    def __init__(self, summary: str, failures: list[ItemFailure]) -> None:
        super().__init__(summary)
        self.failures = failures


class StepItems:
    """The items of one kind a step handles, and those that failed.

    ``noun`` names one item ("job", "peer request"; "s" is added for more),
    ``predicate`` what went wrong ("failed to sync").
    """

    def __init__(
        self, log: logging.Logger, noun: str, predicate: str, plural: str | None = None
    ) -> None:
        self.log = log
        self.noun = noun
        self.plural = plural or f"{noun}s"
        self.predicate = predicate
        # Items by label: one tried twice in a step (received, then followed) counts once.
        self.labels: set[str] = set()
        self.counted = 0
        self.failed_count = 0
        self.failures: list[ItemFailure] = []

    @property
    def total(self) -> int:
        return len(self.labels) + self.counted

    def run(
        self,
        label: str,
        action: Callable[..., Any],
        *args: Any,
        recover: Callable[[Exception], None] | None = None,
    ) -> bool:
        """Run ``action(*args)`` for the item ``label``; False when it raised.

        ``recover`` turns a failure into an outcome of the item itself (a job
        failed with the reason): then the item does not count as failed unless
        ``recover`` raises too.
        """
        return self._attempt(label, action, args, recover)[0]

    def call(self, label: str, action: Callable[..., T], *args: Any) -> T | None:
        """``action(*args)`` for the item ``label``, or None when it raised."""
        return self._attempt(label, action, args, None)[1]

    def _attempt(
        self,
        label: str,
        action: Callable[..., T],
        args: tuple[Any, ...],
        recover: Callable[[Exception], None] | None,
    ) -> tuple[bool, T | None]:
        self.labels.add(label)
        try:
            return True, action(*args)
        except Exception as exc:
            self.log.error("%s %s: %s", label, self.predicate, exc, exc_info=exc)
            failure = exc
            if recover is not None:
                try:
                    recover(exc)
                    return False, None
                except Exception as again:
                    self.log.error("%s: %s", label, again, exc_info=again)
                    failure = again
            # The same item tried again in this step: its first failure says why.
            if all(known.label != label for known in self.failures):
                self._count_failure(ItemFailure(label, failure))
            return False, None

    def failed(self, label: str, error: BaseException | str, count: int = 1) -> None:
        """Count ``count`` items that failed where the caller already said why."""
        self.counted += count
        self._count_failure(ItemFailure(label, error), count)

    def went_well(self, count: int = 1) -> None:
        """Count items handled elsewhere without a failure."""
        self.counted += count

    def _count_failure(self, failure: ItemFailure, count: int = 1) -> None:
        self.failures.append(failure)
        self.failed_count += count

    def summary(self) -> str | None:
        failed = self.failed_count
        if not failed:
            return None
        noun = self.noun if self.total == 1 else self.plural
        return f"{failed} of {self.total} {noun} {self.predicate}"


def raise_failures(*groups: StepItems, hint: str = "") -> None:
    """Raise one ``ItemsFailed`` for every group's failures; nothing when none failed."""
    parts = [summary for group in groups if (summary := group.summary())]
    if not parts:
        return
    failures = [failure for group in groups for failure in group.failures]
    shown = "; ".join(str(failure) for failure in failures[:SHOWN_FAILURES])
    if len(failures) > SHOWN_FAILURES:
        shown += f"; and {len(failures) - SHOWN_FAILURES} more (see the log)"
    raise ItemsFailed(f"{' and '.join(parts)}: {shown}{hint}", failures)
