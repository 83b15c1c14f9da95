"""Publishing a run's results to the job's review folder, and recording its outcome.

What the data scientist reads lands in ``review/<ds>/v1/<job>/`` in the
syft-job layout: the permission file first, then stdout.txt, stderr.txt,
returncode.txt and outputs/ (each written atomically, outputs/ swapped in
whole), and state.yaml last (``finish``). A job controls its run folder, so
its outputs are copied through descriptors opened without following links,
bounded in depth, entries and bytes; nothing the data scientist reads names a
folder of the data owner's.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syft_bg_app.clock import iso
from syft_bg_app.context import Context
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.datasite.linksafe import (
    CREATE_FLAGS,
    DIR_FLAGS,
    FILE_FLAGS,
    READ_CHUNK,
    open_dir,
    open_dir_at,
    read_capped,
    remove_tree,
)
from syft_bg_app.execution.backends.local import RUN_FILE_SLACK
from syft_bg_app.execution.sandbox import RunLayout
from syft_bg_app.job_transition import move_job
from syft_bg_app.store.atomic import atomic_write_bytes
from syft_bg_app.store.fsutil import PERMISSION_FILE, atomic_write_yaml

LOG_FILES = ("stdout.txt", "stderr.txt", "returncode.txt")
STDERR_TAIL_BYTES = 2048
# The return code recorded when a job has no exit status of its own (timeout, lost run).
NO_EXIT_STATUS = -1
# A job controls its code/outputs/ tree: what of it is published is bounded.
MAX_OUTPUT_DEPTH = 32
MAX_OUTPUT_ENTRIES = 10_000
# Where the outputs are inside a run folder, opened one component at a time.
OUTPUTS_PARTS = ("job", "code", "outputs")
# How the DS knows these folders (the run folder itself is the data owner's).
OUTPUTS_NAMES = {"job": "the job folder", "code": "code", "outputs": "code/outputs"}


def log_limit(ctx: Context) -> int:
    return 2 * ctx.config.get("execute.output_cap_kb") * 1024 + RUN_FILE_SLACK


def read_stderr_tail(ctx: Context, layout: RunLayout) -> str:
    data = read_capped(layout.stderr, log_limit(ctx))[-STDERR_TAIL_BYTES:]
    return data.decode("utf-8", "replace")


# The name a run's working folder gets while it is removed after publishing.
GOING_PREFIX = ".published-"


def publish(
    ctx: Context,
    ref: JobRef,
    layout: RunLayout,
    return_code: int,
    reason: str | None,
) -> tuple[str | None, str | None]:
    """Results into the review folder: permissions first, state.yaml (by finish) last.

    Returns the job's failure reason (now also naming outputs that were refused)
    and a note on what of its outputs was left out.
    """
    review = ctx.datasite.review_dir(ref)
    review.mkdir(parents=True, exist_ok=True)
    write_permissions(ctx, ref)
    cap = ctx.config.get("execute.outputs_cap_mb") * 1024 * 1024
    if os.path.lexists(layout.job):
        report = replace_outputs(layout.root, review, cap)
    else:
        # A pass killed after publishing, while the working copy went: what it
        # published stays (the working copy is no longer there to publish from).
        report = OutputsReport()
    if report.refused:
        reason = f"{reason}; {report.refused}" if reason else report.refused
    note = report.note(ctx.config.get("execute.outputs_cap_mb"))
    stray = _stray_outputs_note(layout)
    if stray:
        note = f"{note}; {stray}" if note else stray
    if note:
        ctx.log("execute").warning("%s: %s", ref.label, note)
    stdout = read_capped(layout.stdout, log_limit(ctx))
    stderr = read_capped(layout.stderr, log_limit(ctx))
    for line in (reason, note):
        if line:
            stderr += f"\n[syft-bg: {public_text(ctx, line)}]\n".encode()
    atomic_write_bytes(review / "stdout.txt", _as_text(stdout))
    atomic_write_bytes(review / "stderr.txt", _as_text(stderr))
    atomic_write_bytes(review / "returncode.txt", f"{return_code}\n".encode())
    # What the job wrote is published: its working copy goes (the logs stay for
    # execute.keep_days), so finished runs never hold on to the disk. It is renamed
    # first, in one step: a pass killed while removing it never publishes a part of it.
    for folder in (layout.job, layout.home, layout.tmp, layout.bin):
        going = folder.with_name(f"{GOING_PREFIX}{folder.name}")
        if os.path.lexists(folder):
            os.rename(folder, going)
        remove_tree(going)
    return reason, note


def _stray_outputs_note(layout: RunLayout) -> str | None:
    """A note when the job wrote an outputs/ folder beside run.sh, which is not published."""
    try:
        fd = open_dir(layout.root, ("job", "outputs"))
    except OSError:
        return None
    try:
        with os.scandir(fd) as entries:
            if next(iter(entries), None) is None:
                return None
    except OSError:
        return None
    finally:
        os.close(fd)
    return (
        "the job wrote files to outputs/ beside run.sh, which are not published: "
        "results go to code/outputs/ (run.sh runs in the job folder; write to "
        "code/outputs/, or cd code first as syft-job python jobs do)"
    )


def publish_note(ctx: Context, ref: JobRef, reason: str) -> None:
    """For a job that never ran: the reason as its stderr, so the DS sees why."""
    review = ctx.datasite.review_dir(ref)
    write_permissions(ctx, ref)
    clear_results(review)
    atomic_write_bytes(review / "stderr.txt", f"[syft-bg: {public_text(ctx, reason)}]\n".encode())
    atomic_write_bytes(review / "returncode.txt", f"{NO_EXIT_STATUS}\n".encode())


def public_text(ctx: Context, text: str) -> str:
    """``text`` for the DS: the data owner's local folders replaced by what they are."""
    places = [
        (ctx.home.root, "<app home>"),
        (ctx.home.runs_dir, "<run folders>"),
        (ctx.datasite.root, "<SyftBox folder>"),
    ]
    cluster_runs = ctx.config.get("execute.slurm.run_folder")
    if cluster_runs:
        places.append((Path(os.path.expanduser(cluster_runs)), "<run folders>"))
    try:
        places.append((Path.home(), "~"))
    except (KeyError, RuntimeError):
        pass  # no home folder known for this user
    spelled = []
    for path, label in places:
        for form in {str(path), os.path.realpath(path)}:
            if len(form) > 1:
                spelled.append((form, label))
    # The longest first, so a folder inside another is named by its own label.
    for form, label in sorted(spelled, key=lambda item: -len(item[0])):
        text = text.replace(form, label)
    return text


def out_of_space(error: BaseException | str) -> bool:
    """A full disk or quota: the machine's state, not the job's."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def error_words(exc: BaseException) -> str:
    """What went wrong, without the file names an OSError carries."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _as_text(data: bytes) -> bytes:
    # syft-job reads these files as UTF-8 text; a stray byte must not make them unreadable.
    return data.decode("utf-8", "replace").encode("utf-8")


def write_permissions(ctx: Context, ref: JobRef) -> None:
    write_result_permissions(
        ctx.datasite.review_dir(ref),
        ref.ds_email,
        ctx.config.get("execute.share_outputs"),
        ctx.config.get("execute.share_logs"),
    )


def write_result_permissions(
    review: Path, ds_email: str, share_outputs: bool, share_logs: bool
) -> None:
    """Who may read this job's results: a terminal permission file granting the DS
    state.yaml and the shared parts, and nothing else (the owner reads all).

    It is written whatever is shared: the DS's review folder may have no grant of its
    own (a peer accepted by another tool), and a job's results must not depend on it.
    """
    read = {"admin": [], "write": [], "read": [ds_email]}
    rules = [{"pattern": "state.yaml", "access": read}]
    if share_logs:
        rules += [{"pattern": name, "access": read} for name in LOG_FILES]
    if share_outputs:
        rules.append({"pattern": "outputs/**", "access": read})
    grant = {"rules": rules, "terminal": True}
    atomic_write_yaml(review / PERMISSION_FILE, grant, unless_same=True)


@dataclass
class OutputsReport:
    """What publishing a job's outputs did, and what it left out and why."""

    refused: str | None = None
    files: int = 0
    folders: int = 0
    bytes: int = 0
    left_out: dict[str, int] = field(default_factory=dict)
    too_many: bool = False

    def leave_out(self, why: str) -> None:
        self.left_out[why] = self.left_out.get(why, 0) + 1

    def note(self, cap_mb: int) -> str | None:
        words = {
            "link": "links or special files (never published)",
            "permissions": f"{PERMISSION_FILE} files (a job cannot set who reads its results)",
            "name": "names that are not UTF-8",
            "deep": f"folders nested deeper than {MAX_OUTPUT_DEPTH} levels",
            "size": f"files beyond the {cap_mb} MiB outputs cap (execute.outputs_cap_mb)",
            "unreadable": "files or folders that could not be read",
        }
        parts = [f"{count} {words[why]}" for why, count in sorted(self.left_out.items())]
        if self.too_many:
            parts.append(f"everything past the first {MAX_OUTPUT_ENTRIES} entries")
        if not parts:
            return None
        return "outputs left out: " + "; ".join(parts)


def replace_outputs(run_root: Path, review: Path, cap_bytes: int) -> OutputsReport:
    """Swap in a copy of what the job wrote to code/outputs/ (regular files only)."""
    report = OutputsReport()
    building = review / f".syft-bg-tmp-outputs-{secrets.token_hex(4)}"
    building.mkdir()
    try:
        source = _open_outputs(run_root, report)
        if source is not None:
            target = os.open(building, DIR_FLAGS)
            try:
                _copy_outputs(source, target, cap_bytes, report)
            finally:
                os.close(source)
                os.close(target)
        target = review / "outputs"
        old = None
        if os.path.lexists(target):
            old = review / f".syft-bg-tmp-old-{secrets.token_hex(4)}"
            os.rename(target, old)
        os.rename(building, target)
        if old is not None:
            remove_tree(old)
    except BaseException:
        remove_tree(building)
        raise
    return report


def _open_outputs(run_root: Path, report: OutputsReport) -> int | None:
    """An fd of the run's job/code/outputs, each part opened without following a link.

    The job could have replaced any part with a link to the data owner's folders;
    then nothing is published and ``report.refused`` says why.
    """
    try:
        fd = os.open(run_root, DIR_FLAGS)
    except FileNotFoundError:
        return None
    for part in OUTPUTS_PARTS:
        try:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            child = None
        except OSError as exc:
            child = None
            what = OUTPUTS_NAMES[part]
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                report.refused = f"its outputs were not published: {what} is a link or not a folder"
            else:
                report.refused = (
                    f"its outputs were not published: {what} could not be read ({error_words(exc)})"
                )
        finally:
            os.close(fd)
        if child is None:
            return None
        fd = child
    return fd


def _copy_outputs(source: int, target: int, cap_bytes: int, report: OutputsReport) -> None:
    """Copy the folders and regular files below ``source`` into ``target``.

    Iterative, and bounded in depth, entries and bytes; only folders are kept open
    (one pair at a time), each opened below its parent with O_NOFOLLOW.
    """
    seen = 0
    pending: list[tuple[str, ...]] = [()]
    while pending and not report.too_many:
        rel = pending.pop()
        try:
            src = open_dir_at(source, rel)
        except OSError:
            report.leave_out("unreadable")
            continue
        try:
            dst = open_dir_at(target, rel)
            try:
                names = _list_some(src, MAX_OUTPUT_ENTRIES - seen + 1)
                if names is None:
                    report.leave_out("unreadable")
                    continue
                subfolders = []
                for name in names:
                    seen += 1
                    if seen > MAX_OUTPUT_ENTRIES:
                        report.too_many = True
                        break
                    if _copy_entry(src, dst, name, len(rel), cap_bytes, report):
                        subfolders.append(rel + (name,))
                # Depth first, in name order within each folder.
                pending.extend(reversed(subfolders))
            finally:
                os.close(dst)
        finally:
            os.close(src)


def _list_some(fd: int, limit: int) -> list[str] | None:
    names = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                names.append(entry.name)
                if len(names) >= limit:
                    break
    except OSError:
        return None
    return sorted(names)


def _copy_entry(
    src: int, dst: int, name: str, depth: int, cap_bytes: int, report: OutputsReport
) -> bool:
    """Copy one entry; True when it is a folder whose contents are to be copied."""
    if name == PERMISSION_FILE:
        report.leave_out("permissions")
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        report.leave_out("name")
        return False
    try:
        info = os.stat(name, dir_fd=src, follow_symlinks=False)
    except OSError:
        report.leave_out("unreadable")
        return False
    if stat.S_ISDIR(info.st_mode):
        if depth + 1 > MAX_OUTPUT_DEPTH:
            report.leave_out("deep")
            return False
        try:
            os.mkdir(name, 0o755, dir_fd=dst)
        except OSError:
            report.leave_out("unreadable")
            return False
        report.folders += 1
        return True
    if not stat.S_ISREG(info.st_mode):
        report.leave_out("link")
        return False
    if report.bytes + info.st_size > cap_bytes:
        report.leave_out("size")
        return False
    try:
        _copy_file(src, dst, name, info, report)
    except OSError:
        report.leave_out("unreadable")
    return False


def _copy_file(src: int, dst: int, name: str, info: os.stat_result, report: OutputsReport) -> None:
    fd = os.open(name, FILE_FLAGS, dir_fd=src)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            info.st_dev,
            info.st_ino,
        ):
            raise OSError(errno.ESTALE, "the file changed while it was copied")
        out = os.open(name, CREATE_FLAGS, 0o644, dir_fd=dst)
        try:
            left = info.st_size
            while left > 0:
                chunk = os.read(fd, min(left, READ_CHUNK))
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
                left -= len(chunk)
                report.bytes += len(chunk)
        except BaseException:
            os.close(out)
            out = -1
            try:
                os.unlink(name, dir_fd=dst)
            except OSError:
                pass
            raise
        finally:
            if out >= 0:
                os.close(out)
        report.files += 1
    finally:
        os.close(fd)


def clear_results(review: Path) -> None:
    for name in LOG_FILES:
        (review / name).unlink(missing_ok=True)
    remove_tree(review / "outputs")


def finish(
    ctx: Context,
    ref: JobRef,
    record: dict[str, Any],
    outcome: str,
    return_code: int,
    reason: str | None,
    duration: float | None,
    stderr_tail: str,
    owner_reason: str | None = None,
    outputs_note: str | None = None,
) -> None:
    """Record the outcome. ``reason`` reaches the DS (without local paths);
    ``owner_reason`` (default: reason) stays in the data owner's checkpoint and log."""
    now = iso()
    move_job(
        ctx,
        ref,
        record,
        outcome,
        state={"return_code": return_code, "completed_at": now},
        return_code=return_code,
        finished_at=now,
    )
    owner_reason = owner_reason or reason
    if owner_reason:
        record["reason"] = owner_reason
    if outputs_note:
        record["outputs_note"] = outputs_note
    ctx.counts["finished"] += 1
    log = ctx.log("execute")
    if outcome == "done":
        log.info("%s done in %s s", ref.label, duration)
    else:
        log.warning("%s failed: %s", ref.label, owner_reason)
    ctx.state.add_event(
        "job_finished",
        **ref.event_fields,
        status=outcome,
        return_code=return_code,
        duration_seconds=duration,
        stderr_tail=stderr_tail[-STDERR_TAIL_BYTES:],
        reason=public_text(ctx, reason) if reason else None,
        outputs_note=outputs_note,
    )
