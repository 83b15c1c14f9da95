"""Who may read or write a path of the data owner's datasite, by its syft.pub.yaml files.

As SyftBox and the published clients (``syft_permissions``) read them: the
nearest permission file on the way from the datasite's top to the path's folder
decides alone (a ``terminal: true`` file ends the walk there); a path none of its
rules matches is nobody's but the owner's, whatever a file further up grants.
Within a file the first matching rule decides.
Patterns are globs relative to the file's folder (``*`` within a name, ``**``
across folders) and may hold ``{{.UserEmail}}``; an access list names emails,
``*`` (everyone) or ``USER`` (the user the pattern was filled in for). Write
implies read, admin implies both. A path no rule matches is nobody's but the
owner's.
"""

from __future__ import annotations

import os
import re
import stat
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from syft_bg_app.store.fsutil import load_untrusted_yaml

PERMISSION_FILE = "syft.pub.yaml"
USER_TEMPLATE = "{{.UserEmail}}"
PERMISSION_FILE_CAP = 256 * 1024


@lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


class Permissions:
    """The permission files of one datasite, read once per pass."""

    def __init__(self, datasite: Path) -> None:
        self.datasite = datasite
        self._files: dict[str, dict[str, Any] | None] = {}

    def _read(self, folder: str) -> dict[str, Any] | None:
        if folder not in self._files:
            self._files[folder] = self._load(self.datasite / folder / PERMISSION_FILE)
        return self._files[folder]

    @staticmethod
    def _load(path: Path) -> dict[str, Any] | None:
        """The file's grants; None where there is none. One that is there but cannot
        be read grants nothing: it is still the nearest, so nothing above it decides."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return {}
            data = load_untrusted_yaml(os.read(fd, PERMISSION_FILE_CAP).decode("utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return {}
        finally:
            os.close(fd)
        return data if isinstance(data, dict) else {}

    def forget(self) -> None:
        self._files.clear()

    def allows(self, email: str, rel: str, access: str) -> bool:
        """Whether ``email`` may ``access`` ("read" or "write") ``rel`` (datasite-relative)."""
        parts = PurePosixPath(rel).parts
        nearest = None
        for depth in range(len(parts)):
            folder = "/".join(parts[:depth])
            grant = self._read(folder)
            if grant is not None:
                nearest = (folder, grant)
                if grant.get("terminal") is True:
                    break
        if nearest is None:
            return False
        folder, grant = nearest
        below = rel[len(folder) + 1 :] if folder else rel
        return bool(_decide(grant, below, email, access))


def _decide(grant: dict[str, Any], below: str, email: str, access: str) -> bool | None:
    rules = grant.get("rules")
    if not isinstance(rules, list):
        return None
    for rule in rules:
        if not isinstance(rule, dict) or not isinstance(rule.get("pattern"), str):
            continue
        pattern = rule["pattern"]
        templated = USER_TEMPLATE in pattern
        if templated:
            pattern = pattern.replace(USER_TEMPLATE, email)
        if not _glob_regex(pattern).match(below):
            continue
        granted = rule.get("access") if isinstance(rule.get("access"), dict) else {}
        kinds = ("admin", "write") if access == "write" else ("admin", "write", "read")
        for kind in kinds:
            names = granted.get(kind) or []
            if not isinstance(names, list):
                continue
            for name in names:
                if not isinstance(name, str):
                    continue
                if name == "*" or name.lower() == email.lower():
                    return True
                if name == "USER" and templated:
                    return True
        return False
    return None
