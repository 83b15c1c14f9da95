"""The idle check: a pass that ends after a few stats when nothing changed.

An app that runs every minute spends nearly all its passes finding nothing new.
A full pass that found nothing to do (its checkpoint unchanged, no step failed,
no job arriving, approved or running) leaves a small record beside the
checkpoint: the stat of everything it depends on, taken *before* it looked
(config.yaml, the checkpoint, the "changed" marker every command touches, the
mail folders, the inbox and peer folders, every file of every pending job) and
its next deadline (heartbeat, hourly clean-up, mail backoff). The next pass
starts here: when every stat is as recorded and no deadline has passed, it ends
without importing the rest of the app. Anything else falls through to the full
pass: no record or an unreadable one, another app version or Python, a clock
before the record, a deadline reached, any stat that differs.

A stat taken within ``RACY_SECONDS`` of a change may miss a second change in
the same timestamp tick (file systems keep coarse or whole-second times), so
the full pass leaves no record while anything it watches changed that
recently; the pass after it, seconds later, does.

Standard library only, and nothing of the app but its version: this module
runs before the app is imported.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys
import time

from syft_bg_app import __version__

RECORD_NAME = "idle.record"
LAST_CHECK_NAME = "last_idle_check"
CHANGED_MARKER_NAME = "changed"
RECORD_FORMAT = 1
RACY_SECONDS = 2.0
# Kinds of watched paths: one stat, or every entry below a folder.
STAT, TREE = "stat", "tree"
# A pending job with more entries than this is not watched file by file:
# the full pass handles it (such a job is rejected on receipt anyway).
TREE_CAP = 20_000

Signature = tuple[int, int, int, int, int, int]


def signature(path: str) -> Signature | None:
    """What a change to ``path`` moves (a link is not followed); None when absent."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return _sig(st)


def _sig(st: os.stat_result) -> Signature:
    # ctime too: setting mtime back (touch -d, a sync client keeping remote
    # times) still moves ctime to now; the inode tells a replaced file.
    return (st.st_ino, st.st_dev, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# What a folder that cannot be watched (unreadable, too large) gives: the full
# pass leaves no record with it, so it never compares equal to one.
UNWATCHABLE = "unwatchable"


def tree_signature(path: str) -> tuple | str | None:
    """(relative path, signature) of ``path`` and every entry below it, links not followed.

    None when there is no folder there; UNWATCHABLE when it cannot be read whole
    or has more than ``TREE_CAP`` entries.
    """
    top = signature(path)
    if top is None or not stat.S_ISDIR(top[2]):
        return None
    entries: list[tuple[str, Signature]] = [("", top)]
    pending = [("", path)]
    while pending:
        rel, folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                for entry in listing:
                    sig = _sig(entry.stat(follow_symlinks=False))
                    child = f"{rel}/{entry.name}" if rel else entry.name
                    entries.append((child, sig))
                    if stat.S_ISDIR(sig[2]):
                        pending.append((child, entry.path))
        except OSError:
            return UNWATCHABLE
        if len(entries) > TREE_CAP:
            return UNWATCHABLE
    entries.sort()
    return tuple(entries)


def current(kind: str, path: str) -> object:
    return signature(path) if kind == STAT else tree_signature(path)


def is_racy(value: object, taken_at: float) -> bool:
    """True when a signature (or one in a tree) moved within RACY_SECONDS of ``taken_at``."""
    if value is None:
        return False
    if value == UNWATCHABLE:
        return True
    sigs = [sig for _, sig in value] if isinstance(value[0], tuple) else [value]
    limit = (taken_at - RACY_SECONDS) * 1e9
    return any(max(sig[4], sig[5]) >= limit for sig in sigs)


def default_home_root() -> str | None:
    """The app home as ``home.default_home`` finds it; None where that needs more than a look."""
    explicit = os.environ.get("SYFT_BG_HOME")
    if explicit:
        return os.path.expanduser(explicit)
    if os.path.isdir("/content/drive/MyDrive"):
        return None  # Colab: the full pass decides where the home is
    return os.path.join(os.path.expanduser("~"), ".syft-bg")


def record_path(home_root: str | os.PathLike[str]) -> str:
    return os.path.join(home_root, RECORD_NAME)


def discard_record(home_root: str | os.PathLike[str]) -> None:
    """A full pass starts by removing the record: until it ends idle, nothing is skipped."""
    try:
        os.unlink(record_path(home_root))
    except FileNotFoundError:
        pass


def encode_record(
    taken_at: float, deadline: float | None, watch: list, full_pass_at: str, summary: str
) -> bytes:
    return marshal.dumps(
        {
            "format": RECORD_FORMAT,
            "version": __version__,
            "python": sys.hexversion,
            "taken_at": taken_at,
            "deadline": deadline,
            "watch": watch,
            "full_pass_at": full_pass_at,
            "summary": summary,
        }
    )


def read_record(home_root: str | os.PathLike[str]) -> dict | None:
    try:
        with open(record_path(home_root), "rb") as handle:
            record = marshal.loads(handle.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if (
        not isinstance(record, dict)
        or record.get("format") != RECORD_FORMAT
        or record.get("version") != __version__
        or record.get("python") != sys.hexversion
    ):
        return None
    return record


def unchanged_since(record: dict, now: float) -> bool:
    """True when nothing the record watches changed and no deadline has passed."""
    taken_at = record["taken_at"]
    if not isinstance(taken_at, float) or now < taken_at:
        return False  # the clock went back: nothing time-based can be trusted
    deadline = record["deadline"]
    if deadline is not None and now >= deadline:
        return False
    return all(current(kind, path) == value for kind, path, value in record["watch"])


def write_last_check(home_root: str | os.PathLike[str], now: float, seconds: float) -> None:
    """When the last pass ended here, for ``status`` (one line, replaced atomically)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    path = os.path.join(home_root, LAST_CHECK_NAME)
    # One temporary name: a check killed here leaves nothing new behind, and two
    # checks at once can at worst leave a torn line, which readers ignore.
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, f"{stamp} {seconds:.4f}\n".encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_last_check(home_root: str | os.PathLike[str]) -> tuple[str, float] | None:
    """(ISO time, seconds) of the last pass that ended at the idle check, if any."""
    try:
        with open(os.path.join(home_root, LAST_CHECK_NAME), encoding="ascii") as handle:
            stamp, seconds = handle.read().split()
        return stamp, float(seconds)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def try_idle_pass(home_root: str | None = None) -> int | None:
    """End the pass here (exit code 0) when nothing changed; None: run the full pass."""
    started = time.monotonic()
    try:
        home_root = home_root or default_home_root()
        if home_root is None:
            return None
        record = read_record(home_root)
        now = time.time()
        if record is None or not unchanged_since(record, now):
            return None
        write_last_check(home_root, now, time.monotonic() - started)
    except Exception:
        return None  # anything unexpected: the full pass knows what to do
    print(
        f"syft-bg: pass ok: nothing new (nothing changed since the full pass at "
        f"{record['full_pass_at']})",
        file=sys.stderr,
    )
    return 0
