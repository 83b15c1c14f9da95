"""Logging: a rotating file in <app home>/logs and warnings on stderr."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from .home import AppHome

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
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        _configured.append(file_handler)
    except OSError as exc:
        print(
            f"syft-bg: cannot write logs in {home.logs_dir}: {exc.strerror}",
            file=sys.stderr,
        )
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(stderr_level.upper())
    console.setFormatter(logging.Formatter("syft-bg: %(levelname)s %(name)s: %(message)s"))
    _configured.append(console)
    for handler in _configured:
        root.addHandler(handler)
