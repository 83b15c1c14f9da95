"""One pass: lock, load, sync, notify, approve, execute, save, unlock.

Each step runs on its own: a step that raises is logged with its traceback,
recorded for ``status``, and the remaining steps still run (the pass then
exits 1). The checkpoint is saved after every step, so a pass killed half-way
loses at most the step it was in, and that step is written to be repeatable.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import time
from dataclasses import dataclass, field

from syft_bg_app import logsetup
from syft_bg_app.clock import iso
from syft_bg_app.config.load import Config, load_config
from syft_bg_app.context import Context
from syft_bg_app.errors import SyftBgError
from syft_bg_app.schedule import idle
from syft_bg_app.schedule.idle_watch import Watch
from syft_bg_app.steps import STEPS
from syft_bg_app.store.home import AppHome
from syft_bg_app.store.lock import PassLock

EXIT_OK, EXIT_STEP_FAILED, EXIT_CONFIG = 0, 1, 2


@dataclass
class PassResult:
    exit_code: int
    summary: str
    failed_steps: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def run_pass(home: AppHome, config: Config | None = None) -> PassResult:
    # Taken before config.yaml is read: an edit made after this is seen by the
    # next pass, never hidden by the idle record this pass may leave.
    config_signature = None if config else idle.signature(str(home.config_file))
    config = config or load_config(home.config_file)
    logsetup.configure_from_config(home, config)
    lock = PassLock(home)
    try:
        if not lock.acquire():
            return PassResult(EXIT_OK, f"another pass is running ({lock.owner()})")
        try:
            idle.discard_record(home.root)
            return _locked_pass(home, config, config_signature)
        finally:
            lock.release()
    except OSError as exc:
        # A full disk or a read-only app home: say so, not a traceback.
        raise PassWriteError(exc) from None


class PassWriteError(SyftBgError):
    """The pass could not write a file: a full disk, a read-only or unwritable folder."""

    def __init__(self, exc: OSError) -> None:
        path = os.fsdecode(exc.filename) if exc.filename else ""
        if os.path.basename(path).startswith(".syft-bg-tmp-"):
            # The temporary file of an atomic write: the folder is what matters.
            path = f"cannot write in {os.path.dirname(path)}"
        where = f" {path}:" if path else ""
        if exc.errno == errno.ENOSPC:
            advice = "free some disk space"
        elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            advice = "make that folder writable for this user"
        else:
            advice = "fix the cause"
        super().__init__(
            f"the pass stopped:{where} {exc.strerror or exc}. The checkpoint "
            f"keeps what the last completed step saved, so nothing is lost; {advice} and "
            f"the next pass carries on."
        )


def _locked_pass(home: AppHome, config: Config, config_signature: object = None) -> PassResult:
    started = time.monotonic()
    ctx = Context.open(home, config)
    # A pass given its config by the caller cannot tell what it was read from.
    watch = Watch.take(ctx, config_signature) if config_signature is not None else None
    log = ctx.log("pass")
    log.info("pass started (pid %d)", os.getpid())
    failed = []
    for step in STEPS:
        if not config.step_enabled(step):
            continue
        if not _run_step(ctx, step):
            failed.append(step)
        ctx.state.save()
    elapsed = time.monotonic() - started
    summary = _summary(ctx, elapsed, failed)
    ctx.state.data["last_pass"] = {
        "finished_at": iso(),
        "seconds": round(elapsed, 3),
        "ok": not failed,
        "failed_steps": failed,
        "summary": summary,
    }
    ctx.state.save()
    if watch is not None:
        why = watch.record_if_idle(ctx, failed)
        log.debug("idle record: %s", why or "left for the next pass")
    log.info("%s", summary)
    return PassResult(EXIT_STEP_FAILED if failed else EXIT_OK, summary, failed, dict(ctx.counts))


def _run_step(ctx: Context, step: str) -> bool:
    module = importlib.import_module(f"syft_bg_app.steps.{step}")
    before = dict(ctx.counts)
    try:
        module.run(ctx)
    except Exception as exc:
        ctx.log(step).error("step %s failed", step, exc_info=True)
        ctx.state.record_step(step, False, f"{type(exc).__name__}: {exc}", {})
        return False
    delta = {k: v - before.get(k, 0) for k, v in ctx.counts.items() if v != before.get(k, 0)}
    ctx.state.record_step(step, True, None, delta)
    return True


SUMMARY_COUNTS = (
    ("received", "received"),
    ("rejected", "rejected"),
    ("peer_requests", "peer requests"),
    ("peers_accepted", "peers accepted"),
    ("approved", "approved"),
    ("started", "started"),
    ("finished", "finished"),
    ("sent", "emails sent"),
)


def _summary(ctx: Context, elapsed: float, failed: list[str]) -> str:
    parts = [f"{ctx.counts[key]} {label}" for key, label in SUMMARY_COUNTS if ctx.counts.get(key)]
    head = "pass ok" if not failed else f"pass finished with failed steps: {', '.join(failed)}"
    return f"{head} in {elapsed:.2f}s: " + (", ".join(parts) or "nothing new")


def main_once(home: AppHome) -> int:
    """``syft-bg run --once``: one pass, one summary line on stderr."""
    result = run_pass(home)
    print(f"syft-bg: {result.summary}", file=sys.stderr)
    return result.exit_code
