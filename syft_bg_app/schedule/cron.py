"""The cron side of the schedule: our one crontab line (marked with the unit name
of its app home), reading and rewriting the crontab without touching any other
line, reading the interval and next run back from the line, and whether a cron
daemon runs at all."""

from __future__ import annotations

import math
import os
import shlex
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from syft_bg_app.schedule.common import (
    ScheduleError,
    app_dir,
    crontab_command,
    crontab_user,
    last_line,
    pass_command,
    run_command,
    unit_name,
)
from syft_bg_app.store.home import AppHome

CRON_MARKER = "# syft-bg-app:"


def cron_available() -> tuple[bool, str]:
    argv = crontab_command()
    if shutil.which(argv[0]) is None:
        return False, f"{argv[0]} is not installed (Debian/Ubuntu: apt-get install cron)"
    return True, "crontab is available"


def cron_expression(interval: int) -> tuple[str, int]:
    """(the five time fields, the seconds they really mean) for ``interval`` seconds."""
    minutes = max(1, math.ceil(interval / 60))
    if minutes == 1:
        return "* * * * *", 60
    if minutes < 60:
        return f"*/{minutes} * * * *", minutes * 60
    hours = math.ceil(minutes / 60)
    if hours < 24:
        return f"0 */{hours} * * *", hours * 3600
    return "0 0 * * *", 86400


def _cron_escape(text: str) -> str:
    # cron turns an unescaped % into a newline before the shell sees the command.
    return text.replace("%", "\\%")


def cron_out_file(home: AppHome) -> Path:
    return Path(os.path.abspath(home.root)) / "logs" / "cron.out"


def cron_line(home: AppHome, interval: int, folder: Path | None = None) -> str:
    folder = folder or app_dir()
    root = os.path.abspath(home.root)
    fields, _ = cron_expression(interval)
    command = " ".join(shlex.quote(w) for w in pass_command(folder))
    # Only the last pass's output is kept (">" not ">>"); the pass logs to logs/ itself.
    shell = (
        f"cd {shlex.quote(str(folder))} && SYFT_BG_HOME={shlex.quote(root)} "
        f"{command} >{shlex.quote(str(cron_out_file(home)))} 2>&1"
    )
    return f"{fields} {_cron_escape(shell)} {CRON_MARKER}{unit_name(home)}"


def _is_our_line(line: str, name: str) -> bool:
    return line.rstrip().endswith(f"{CRON_MARKER}{name}")


def is_disabled_line(line: str) -> bool:
    return line.lstrip().startswith("#")


def read_crontab() -> str:
    argv = crontab_command()
    result = run_command([*argv, "-l"])
    if result.returncode == 0:
        return result.stdout
    if "no crontab" in (result.stderr or "").lower():
        return ""
    raise ScheduleError(f"cannot read the crontab ({' '.join(argv)} -l): {last_line(result)}")


def write_crontab(text: str) -> None:
    argv = crontab_command()
    if not text.strip():
        # Nothing left: remove the crontab rather than leave an empty one behind.
        result = run_command([*argv, "-r"])
        if result.returncode != 0 and "no crontab" not in (result.stderr or "").lower():
            raise ScheduleError(f"cannot remove the crontab: {last_line(result)}")
        return
    if not text.endswith("\n"):
        text += "\n"
    result = run_command([*argv, "-"], stdin=text)
    if result.returncode != 0:
        raise ScheduleError(f"cannot write the crontab ({' '.join(argv)} -): {last_line(result)}")


def find_cron_line(home: AppHome, text: str | None = None) -> str | None:
    if text is None:
        text = read_crontab()
    name = unit_name(home)
    for line in text.splitlines():
        if _is_our_line(line, name):
            return line
    return None


def replace_cron_line(text: str, name: str, new_line: str | None) -> str:
    """The crontab with our line replaced (or removed when ``new_line`` is None);
    every other line is kept as it was."""
    out: list[str] = []
    placed = False
    for line in text.splitlines():
        if _is_our_line(line, name):
            if new_line is not None and not placed:
                out.append(new_line)
                placed = True
            continue
        out.append(line)
    if new_line is not None and not placed:
        out.append(new_line)
    return "\n".join(out) + ("\n" if out else "")


def cron_line_interval(line: str) -> int | None:
    """Seconds between runs of one of our lines, read back from its time fields."""
    fields = line.lstrip("# ").split()[:5]
    if len(fields) < 5:
        return None
    minute, hour = fields[0], fields[1]
    if minute == "*" and hour == "*":
        return 60
    if minute.startswith("*/") and hour == "*":
        return int(minute[2:]) * 60 if minute[2:].isdigit() else None
    if hour.startswith("*/") and hour[2:].isdigit():
        return int(hour[2:]) * 3600
    if minute.isdigit() and hour.isdigit():
        return 86400
    return None


def _field_matches(spec: str, value: int) -> bool:
    if spec == "*":
        return True
    if spec.startswith("*/") and spec[2:].isdigit():
        return value % int(spec[2:]) == 0
    return spec.isdigit() and int(spec) == value


def next_cron_run(line: str, after: datetime) -> datetime | None:
    """The next minute (local time) at which cron starts ``line``, after ``after``."""
    fields = line.lstrip("# ").split()[:5]
    if len(fields) < 5 or any(f != "*" for f in fields[2:]):
        return None
    moment = after.astimezone().replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(2 * 24 * 60):
        if _field_matches(fields[0], moment.minute) and _field_matches(fields[1], moment.hour):
            return moment
        moment += timedelta(minutes=1)
    return None


def cron_daemon_running() -> bool | None:
    """Whether a cron daemon process runs here (None when /proc cannot tell)."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm in ("cron", "crond", "cronie", "busybox-crond"):
            return True
    return False


def remove_cron_line(home: AppHome, dry_run: bool, text: str | None = None) -> list[str]:
    if not cron_available()[0]:
        return []
    if text is None:
        text = read_crontab()
    line = find_cron_line(home, text)
    if line is None:
        return []
    who = crontab_user()
    if dry_run:
        return [f"would remove this line from the crontab of {who}:", line]
    write_crontab(replace_cron_line(text, unit_name(home), None))
    return [f"removed the syft-bg line from the crontab of {who}"]
