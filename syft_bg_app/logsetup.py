"""Logging: a rotating file in <app home>/logs and warnings on stderr.

Records often quote what data scientists chose (job and file names, config
fields, reasons). ``SafeFormatter`` writes every message on one line with
control characters escaped, so no name can forge a log line ("... INFO
syft_bg.approve: approved") or send escape sequences to whoever reads the log.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from typing import TYPE_CHECKING

from syft_bg_app.store.home import AppHome
from syft_bg_app.views.render import terminal_text

if TYPE_CHECKING:
    from syft_bg_app.config.load import Config

# A line that would read as a record of its own (it starts with a timestamp).
_RECORD_START = re.compile(r"^(?=\d{4}-\d\d-\d\d )", re.MULTILINE)


class SafeFormatter(logging.Formatter):
    """Messages on one line, control characters escaped; tracebacks keep their
    lines, escaped the same way, and none of their lines can pass for a record."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        record.message = terminal_text(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message

    def formatException(self, ei) -> str:
        return _defuse(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _defuse(super().formatStack(stack_info))


def _defuse(text: str) -> str:
    return _RECORD_START.sub("  ", terminal_text(text, multiline=True))


LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
_configured: list[logging.Handler] = []


def configure(
    home: AppHome,
    level: str = "info",
    max_bytes: int = 1_000_000,
    backups: int = 5,
    stderr_level: str = "error",
) -> None:
    root = logging.getLogger("syft_bg")
    for handler in _configured:
        root.removeHandler(handler)
        handler.close()
    _configured.clear()
    root.setLevel(logging.DEBUG)
    root.propagate = False
    try:
        home.logs_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            home.logs_dir / "syft-bg.log",
            maxBytes=max_bytes,
            backupCount=backups,
            encoding="utf-8",
        )
        file_handler.setLevel(level.upper())
        file_handler.setFormatter(SafeFormatter(LOG_FORMAT))
        _configured.append(file_handler)
    except OSError as exc:
        print(
            f"syft-bg: cannot write logs in {home.logs_dir}: {exc.strerror}",
            file=sys.stderr,
        )
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(stderr_level.upper())
    console.setFormatter(SafeFormatter("syft-bg: %(levelname)s %(name)s: %(message)s"))
    _configured.append(console)
    for handler in _configured:
        root.addHandler(handler)


def configure_from_config(home: AppHome, config: Config) -> None:
    """``configure`` with the ``log.*`` settings of ``config``: how a pass and every
    command that changes the app log."""
    configure(
        home,
        config.get("log.level"),
        config.get("log.max_bytes"),
        config.get("log.backups"),
    )
