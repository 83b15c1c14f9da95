"""Who may read or write a path of the data owner's datasite, by its syft.pub.yaml files.

Decided as the syft clients decide (their engine is ``syft_permissions``), so
that what the app lets a data scientist read or write over Drive is what the
owner's own client would:

- The nearest permission file on the way from the datasite's top to the path's
  folder decides alone (a ``terminal`` file ends the walk there); a path none of
  its rules matches is nobody's but the owner's, whatever a file further up grants.
- Within a file the most specific matching rule decides, not the first: rules
  are ranked by whether the pattern names the user (``{{.UserEmail}}``), then by
  how many of its folder names are plain, how many hold wildcards, fewer ``**``
  parts and more parts in all; rules that rank the same keep the file's order.
- Patterns are globs relative to the file's folder: ``*`` and ``?`` within a
  name, ``[...]`` one of a set, ``**`` as a whole part across folders. A
  wildcard never matches a name that starts with a dot (``.git``, ``.env``), and
  ``**`` never crosses one; only a pattern that spells the dot reaches it. A
  pattern without any of ``*?[`` must equal the path.
- Access lists name emails, ``*@domain`` style patterns, ``*`` (everyone) or
  ``USER``: in a ``{{.UserEmail}}`` rule the user it was filled in for, in any
  other rule everyone. Emails compare exactly (case counts). Admin implies write,
  write implies read; a permission file itself can be read only with admin.

Where the clients' glob dialect goes beyond these forms (a set holding a
backslash or a bracket, a reversed or chained range, a name ending in a
backslash), the app does not guess: a decision that would need such a rule is
"no". A permission file that is a link, lies beyond a link, is not a regular
file, is larger than ``PERMISSION_FILE_CAP``, is not valid YAML or not of the
clients' shape grants nothing, and still stops the walk: nothing above it
decides instead. Anchors and aliases are read (the clients read them, and
earlier versions of this app wrote them) as long as the document they stand for
stays within ``PERMISSION_FILE_NODES`` values and ``UNTRUSTED_MAX_DEPTH`` levels.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from syft_bg_app.datasite.linksafe import UnsafePathError, open_dir, open_file_at
from syft_bg_app.store.fsutil import (
    PERMISSION_FILE,
    UNTRUSTED_MAX_DEPTH,
    YAML_LOADER,
    UntrustedYAMLError,
    load_yaml,
)

USER_TEMPLATE = "{{.UserEmail}}"
# Templates the clients refuse to load a file for.
REFUSED_TEMPLATES = ("{{.UserHash}}", "{{.Year}}", "{{.Month}}", "{{.Date}}")
USER_PLACEHOLDER = "USER"
PERMISSION_FILE_CAP = 256 * 1024
# Values a permission file may stand for once its aliases are spelled out: the
# app's own files hold a few dozen; a few hundred bytes of nested aliases could
# otherwise stand for billions.
PERMISSION_FILE_NODES = 10_000
ACCESS_KINDS = ("admin", "write", "read")
# What each kind of access is granted by: the kind itself and every stronger one.
GRANTED_BY = {"read": ACCESS_KINDS, "write": ("admin", "write"), "admin": ("admin",)}
# As the clients read a boolean (pydantic): these words in any case, 0/1, true/false.
_TRUE_WORDS = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE_WORDS = frozenset({"0", "off", "f", "false", "n", "no"})

_GLOB_CHARS = re.compile(r"[*?\[]")
# One folder or file name ``**`` may stand for: never one starting with a dot.
_VISIBLE_NAME = r"(?!\.)[^/]+"
_NEVER = re.compile(r"(?!)")


class _Unsupported(ValueError):
    """A glob beyond the forms this module reads exactly as the clients do."""


class _NotARuleFile(ValueError):
    """A permission file the clients would refuse to load."""


@dataclass(frozen=True)
class Rule:
    """One rule of a permission file: a pattern and who holds each kind of access."""

    pattern: str
    admin: tuple[str, ...]
    write: tuple[str, ...]
    read: tuple[str, ...]

    @property
    def names_user(self) -> bool:
        return USER_TEMPLATE in self.pattern

    def matches(self, below: str, email: str) -> bool:
        """Whether the rule covers ``below`` (relative to the file's folder) for ``email``.

        Raises ``_Unsupported`` where the pattern is beyond what is read exactly."""
        pattern = self.pattern.replace(USER_TEMPLATE, email) if self.names_user else self.pattern
        if not _GLOB_CHARS.search(pattern):
            return below == pattern
        return _glob(pattern).match(below) is not None

    def grants(self, email: str, access: str) -> bool:
        # USER stands for the user the pattern was filled in for, or else for everyone.
        user = email if self.names_user else "*"
        for kind in GRANTED_BY[access]:
            for name in getattr(self, kind):
                if _names(user if name == USER_PLACEHOLDER else name, email):
                    return True
        return False


@dataclass(frozen=True)
class RuleFile:
    """One permission file as read: its rules, most specific first."""

    rules: tuple[Rule, ...]
    terminal: bool


# What a permission file grants when it is there but cannot be read as the clients read it.
GRANTS_NOTHING = RuleFile(rules=(), terminal=False)


class Permissions:
    """The permission files of one datasite, read once per pass."""

    def __init__(self, datasite: Path) -> None:
        self.datasite = datasite
        self._files: dict[str, RuleFile | None] = {}

    def _read(self, folder: str) -> RuleFile | None:
        if folder not in self._files:
            self._files[folder] = self._load(folder)
        return self._files[folder]

    def _load(self, folder: str) -> RuleFile | None:
        """The permission file of ``folder`` (datasite-relative); None where there is none."""
        rel = f"{folder}/{PERMISSION_FILE}" if folder else PERMISSION_FILE
        try:
            top = open_dir(self.datasite, [])
        except UnsafePathError:
            return GRANTS_NOTHING
        try:
            fd = open_file_at(top, rel)
        except UnsafePathError as exc:
            return None if exc.errno in (errno.ENOENT, errno.ENOTDIR) else GRANTS_NOTHING
        finally:
            os.close(top)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return GRANTS_NOTHING
            raw = os.read(fd, PERMISSION_FILE_CAP + 1)
            if len(raw) > PERMISSION_FILE_CAP:
                return GRANTS_NOTHING
            return read_rule_file(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, _NotARuleFile):
            return GRANTS_NOTHING
        finally:
            os.close(fd)

    def forget(self) -> None:
        self._files.clear()

    def allows(self, email: str, rel: str, access: str) -> bool:
        """Whether ``email`` may ``access`` ("read" or "write") ``rel`` (datasite-relative)."""
        parts = PurePosixPath(rel).parts
        nearest = None
        for depth in range(len(parts)):
            folder = "/".join(parts[:depth])
            found = self._read(folder)
            if found is not None:
                nearest = (folder, found)
                if found.terminal:
                    break
        if nearest is None:
            return False
        folder, rule_file = nearest
        below = rel[len(folder) + 1 :] if folder else rel
        if rel.endswith(PERMISSION_FILE):
            access = "admin"
        for rule in rule_file.rules:
            try:
                if rule.matches(below, email):
                    return rule.grants(email, access)
            except _Unsupported:
                return False
        return False


def read_rule_file(text: str) -> RuleFile:
    """A permission file's text as the clients read it.

    Raises ``yaml.YAMLError`` for text that is no YAML or stands for too much,
    ``_NotARuleFile`` for YAML the clients would refuse as a permission file."""
    _check_size_once_expanded(text)
    try:
        data = load_yaml(text)
    except (ValueError, OverflowError, RecursionError) as exc:
        raise UntrustedYAMLError(f"a value cannot be read: {str(exc)[:200]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _NotARuleFile("not a mapping")
    listed = data.get("rules", [])
    if not isinstance(listed, list):
        raise _NotARuleFile("rules is not a list")
    rules = [_rule(entry) for entry in listed]
    # sorted() keeps the file's order among rules that rank the same, as the clients do.
    ranked = sorted(rules, key=lambda rule: specificity(rule.pattern), reverse=True)
    return RuleFile(rules=tuple(ranked), terminal=_flag(data.get("terminal", False)))


def specificity(pattern: str) -> tuple[int, int, int, int, int]:
    """How specific a pattern is; the highest that matches a path decides for it."""
    parts = pattern.split("/")
    plain = sum(1 for p in parts if not re.search(r"[*?\[{]", p))
    wild = sum(1 for p in parts if p != "**" and _GLOB_CHARS.search(p) and USER_TEMPLATE not in p)
    across = sum(1 for p in parts if p == "**")
    return (int(USER_TEMPLATE in pattern), plain, wild, -across, len(parts))


def _rule(entry: Any) -> Rule:
    if not isinstance(entry, dict):
        raise _NotARuleFile("a rule is not a mapping")
    pattern, granted = entry.get("pattern"), entry.get("access")
    if not isinstance(pattern, str) or not isinstance(granted, dict):
        raise _NotARuleFile("a rule without a pattern or access")
    if any(template in pattern for template in REFUSED_TEMPLATES):
        raise _NotARuleFile("a template the clients refuse")
    lists = {}
    for kind in ACCESS_KINDS:
        names = granted.get(kind, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _NotARuleFile(f"{kind} is not a list of names")
        lists[kind] = tuple(names)
    return Rule(pattern=pattern, **lists)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE_WORDS | _FALSE_WORDS:
        return value.lower() in _TRUE_WORDS
    raise _NotARuleFile("terminal is not a boolean")


def _names(name: str, email: str) -> bool:
    """Whether an access-list entry (after USER is replaced) names ``email``."""
    if name == "*":
        return True
    if "*" in name or "?" in name:
        return fnmatchcase(email, name)
    return name == email


def _check_size_once_expanded(text: str) -> None:
    """Refuse a document nested too deep, of several documents, with an alias to a
    node that is not complete yet (a loop), or standing for more than
    ``PERMISSION_FILE_NODES`` values once every alias is spelled out.

    Works on the parser's events, before anything is built, so neither the depth
    nor the aliases cost more than one look at each event."""
    sizes: dict[str, int] = {}
    open_nodes: list[list[Any]] = []  # [anchor, values so far] of each open collection
    total = documents = 0
    for event in yaml.parse(text, Loader=YAML_LOADER):
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise UntrustedYAMLError("more than one document")
            continue
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if event.anchor:
                sizes.pop(event.anchor, None)
            open_nodes.append([event.anchor, 1])
            if len(open_nodes) > UNTRUSTED_MAX_DEPTH:
                raise UntrustedYAMLError(f"nested more than {UNTRUSTED_MAX_DEPTH} levels deep")
            continue
        if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, size = open_nodes.pop()
            if anchor:
                sizes[anchor] = size
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            if event.anchor:
                sizes[event.anchor] = size
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes:
                raise UntrustedYAMLError("an alias to a value that is not complete")
            size = sizes[event.anchor]
        else:
            continue
        if open_nodes:
            open_nodes[-1][1] += size
        else:
            total += size
        if total + sum(node[1] for node in open_nodes) > PERMISSION_FILE_NODES:
            raise UntrustedYAMLError(f"stands for more than {PERMISSION_FILE_NODES} values")


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """A regular expression for a glob pattern, read as the clients read it for a
    clean relative path (no empty, ``.`` or ``..`` parts, no trailing slash)."""
    if pattern.startswith("/") or pattern.endswith("/"):
        # Anchored at the root, or naming only folders: never a relative file path.
        return _NEVER
    parts: list[str | None] = []  # None stands for ``**``
    for part in pattern.split("/"):
        if not part:
            continue  # a//b reads as a/b
        if part == "**":
            if not parts or parts[-1] is not None:
                parts.append(None)
            continue
        parts.append(_name_regex(part))
    out = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part is None:
            # Across folders: none, or several, or at the end at least one name.
            out.append(
                f"{_VISIBLE_NAME}(?:/{_VISIBLE_NAME})*" if last else f"(?:{_VISIBLE_NAME}/)*"
            )
        else:
            out.append(part if last else part + "/")
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _name_regex(part: str) -> str:
    """A regular expression for one name of a glob (no ``/`` in it)."""
    out: list[str] = []
    wild_first = part[0] in "*?" or (part[0] == "[" and _class_end(part, 0) is not None)
    index = 0
    while index < len(part):
        char = part[index]
        if char == "*":
            while index < len(part) and part[index] == "*":
                index += 1
            out.append("[^/]*")
            continue
        if char == "?":
            out.append("[^/]")
        elif char == "\\":
            if index + 1 >= len(part):
                raise _Unsupported(part)
            index += 1
            out.append(re.escape(part[index]))
        elif char == "[":
            end = _class_end(part, index)
            if end is None:
                out.append(re.escape(char))
            else:
                out.append(_class_regex(part[index + 1 : end]))
                index = end
        else:
            out.append(re.escape(char))
        index += 1
    return ("(?!\\.)" if wild_first else "") + "".join(out)


def _class_end(part: str, start: int) -> int | None:
    """Index of the ``]`` closing the set opened at ``start``; None when it is not closed."""
    body = start + 1
    if body < len(part) and part[body] in "!^":
        body += 1
    if body < len(part) and part[body] == "]":
        body += 1  # a ] first in the set is one of its characters
    end = part.find("]", body)
    return None if end < 0 else end


def _class_regex(body: str) -> str:
    negated = body[:1] in ("!", "^")
    if negated:
        body = body[1:]
    if not body or "\\" in body or "[" in body:
        raise _Unsupported(body)
    members, index = [], 0
    while index < len(body):
        if index + 2 < len(body) and body[index + 1] == "-":
            low, high = body[index], body[index + 2]
            if low > high or body[index + 3 : index + 4] == "-":
                raise _Unsupported(body)  # an empty or a chained range
            members.append(f"{re.escape(low)}-{re.escape(high)}")
            index += 3
            continue
        if body[index] == "-" and 0 < index < len(body) - 1:
            raise _Unsupported(body)
        # A - first or last in the set is one of its characters.
        members.append(re.escape(body[index]))
        index += 1
    return "[" + ("^/" if negated else "") + "".join(members) + "]"
