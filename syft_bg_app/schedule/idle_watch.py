"""What a full pass leaves for the idle check (``idle``) of the next one.

The watched paths are stat'ed at the start of the pass, before any step looks
at them; at its end, when the pass found nothing to do, they are stat'ed again
and the record is written only if nothing moved in between (a change made
while the pass ran shows to the next pass, which then runs in full). The
states in which every pass runs in full, because their work depends on time
or on processes rather than on files, are listed in ``why_full``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from syft_bg_app.clock import parse_iso
from syft_bg_app.context import Context
from syft_bg_app.schedule import idle
from syft_bg_app.store.atomic import atomic_write_bytes
from syft_bg_app.store.home import AppHome

# Job statuses whose next step comes from a clock or a process: a pass with
# any of them runs in full every time.
BUSY_STATUSES = frozenset({"received", "approved", "running"})


def changed_marker(home: AppHome) -> Path:
    return home.root / idle.CHANGED_MARKER_NAME


def touch_changed_marker(home: AppHome) -> None:
    """Say that a command changed something: the next pass runs in full.

    A new file each time (a new inode), so the change shows even within one
    timestamp tick of the last pass.
    """
    try:
        atomic_write_bytes(changed_marker(home), f"{os.getpid()} {time.time()}\n".encode(), 0o600)
    except OSError:
        # A full disk: without the record the next pass runs in full all the same.
        idle.discard_record(home.root)


@dataclass
class Watch:
    taken_at: float
    entries: list[tuple[str, str, object]]

    @classmethod
    def take(cls, ctx: Context, config_signature: object) -> Watch:
        """Stat everything this pass depends on, before it looks."""
        taken_at = time.time()
        paths = _watched_paths(ctx)
        entries = [(idle.STAT, os.fspath(ctx.home.config_file), config_signature)]
        entries += [(kind, path, idle.current(kind, path)) for kind, path in paths]
        return cls(taken_at, entries)

    def record_if_idle(self, ctx: Context, failed: list[str]) -> str:
        """Leave the record when this pass changed nothing and nothing changed under it.

        Returns why no record was left ("" when one was).
        """
        why = why_full(ctx, failed)
        moved = [p for k, p, v in self.entries if not why and idle.current(k, p) != v]
        if moved:
            why = f"{moved[0]} changed while the pass ran"
        if not why and any(v == idle.UNWATCHABLE for _, _, v in self.entries):
            why = "a pending job's folder cannot be read whole or is too large to watch"
        if not why and any(idle.is_racy(v, self.taken_at) for _, _, v in self.entries):
            why = f"something changed less than {idle.RACY_SECONDS:g} s before the pass"
        if why:
            return why
        last = ctx.state.data["last_pass"]
        data = idle.encode_record(
            self.taken_at, next_deadline(ctx), self.entries, last["finished_at"], last["summary"]
        )
        atomic_write_bytes(idle.record_path(ctx.home.root), data, 0o600)
        return ""


def _app_folders(package: Path) -> list[Path]:
    return sorted(p for p in package.iterdir() if p.is_dir() and p.name != "__pycache__")


def _watched_paths(ctx: Context) -> list[tuple[str, str]]:
    home, datasite = ctx.home, ctx.datasite
    package = Path(__file__).resolve().parents[1]
    paths = [
        # The app itself: an update replaces its files (its version may stay the same).
        package,
        *_app_folders(package),
        home.state_file,
        changed_marker(home),
        home.outbox_dir,
        home.root / "mail" / "queue",
        # Where the datasite is found (ROOT/<email> or ROOT/datasites/<email>).
        datasite.root,
        datasite.root / "datasites",
        datasite.root / "datasites" / datasite.email,
        datasite.root / datasite.email,
        datasite.job_root,
        datasite.inbox,
        datasite.review,
        datasite.peers,
    ]
    # Each data scientist's inbox folders (new jobs, a deleted job, the
    # permission file that says a peer was accepted) and each peer folder.
    for folder, below in (
        (datasite.inbox, ("v1", "syft.pub.yaml")),
        (datasite.peers, ("request.yaml",)),
    ):
        try:
            names = sorted(entry.name for entry in os.scandir(folder))
        except OSError:
            names = []
        for name in names:
            paths.append(folder / name)
            paths.extend(folder / name / part for part in below)
    watched = [(idle.STAT, os.fspath(p)) for p in paths]
    # A pending job is matched against the rules on every change of any of its
    # files, however deep: every entry of its folder is watched, and its state.yaml.
    for ds_email, name, record in ctx.state.iter_jobs():
        if record["status"] == "pending":
            from syft_bg_app.datasite.layout import JobRef

            ref = JobRef(ds_email, name, record["protocol"])
            watched.append((idle.TREE, os.fspath(datasite.submission_dir(ref))))
            watched.append((idle.STAT, datasite.state_file_str(ref)))
    return watched


def why_full(ctx: Context, failed: list[str]) -> str:
    """Why the next pass must run in full whatever changes; "" when it need not."""
    if not ctx.config.get("schedule.idle_check"):
        return "schedule.idle_check is off"
    if failed:
        return "a step failed"
    if ctx.config.get("sync.transport") == "drive":
        return "Drive changes are seen only by asking Drive"
    if ctx.state.data.get("events"):
        return "events wait to be notified"
    if ctx.config.step_enabled("approve") and ctx.config.get("approve.email_replies.enabled"):
        return "the owner's email replies are read by the pass"
    busy = sorted({r["status"] for _, _, r in ctx.state.iter_jobs()} & BUSY_STATUSES)
    if busy:
        return f"jobs are {', '.join(busy)}"
    mail = ctx.state.data.get("mail") or {}
    if ctx.config.step_enabled("notify"):
        if ctx.config.get("notify.transport") == "gmail":
            return "Gmail sign-ins are refreshed by the pass"
        if mail.get("set_aside") or mail.get("problem"):
            return "emails are set aside or the transport has a problem"
        for entry in mail.get("queue") or []:
            if entry.get("status") != "set aside" and not entry.get("not_before"):
                return "emails are waiting to be sent"
    return ""


def next_deadline(ctx: Context) -> float | None:
    """The earliest moment something time-based is due (epoch seconds), None if nothing is."""
    due: list[float] = []
    mail = ctx.state.data.get("mail") or {}
    if ctx.config.step_enabled("notify"):
        if ctx.config.get("notify.heartbeat") and mail.get("heartbeat_at"):
            period = timedelta(hours=ctx.config.get("notify.heartbeat_hours"))
            due.append((parse_iso(mail["heartbeat_at"]) + period).timestamp())
        for entry in mail.get("queue") or []:
            if entry.get("status") != "set aside" and entry.get("not_before"):
                due.append(parse_iso(entry["not_before"]).timestamp())
    if ctx.config.step_enabled("sync"):
        # A request that came during the cool-down after a rejection is considered
        # when the cool-down ends, with nothing changed on disk.
        cool_down = timedelta(days=ctx.config.get("approve.peers.rerequest_after_days"))
        for record in (ctx.state.data.get("peers") or {}).values():
            if record.get("asked_again") and record.get("decided_at"):
                due.append((parse_iso(record["decided_at"]) + cool_down).timestamp())
    if ctx.config.step_enabled("execute"):
        from syft_bg_app.execution.housekeeping import CLEANUP_EVERY

        cleaned = (ctx.state.data.get("execute") or {}).get("cleaned_at")
        if cleaned:
            due.append((parse_iso(cleaned) + CLEANUP_EVERY).timestamp())
    return min(due) if due else None
