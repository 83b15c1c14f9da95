"""Atomic file writes and the names sync clients never deliver.

Every file this app writes goes through ``atomic.atomic_write_bytes`` (old or
new after ``kill -9`` or a power cut, never torn); the text, YAML and JSON
writers here are built on it.
"""

from __future__ import annotations

import json
import os
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from syft_bg_app.store.atomic import TEMP_PREFIX, atomic_write_bytes

# Sync clients skip these, so they never count as part of a job.
IGNORED_SUFFIXES = (".log", ".tmp")
IGNORED_DIRS = frozenset({".venv", "__pycache__"})
PERMISSION_FILE = "syft.pub.yaml"

# libyaml's C loader and dumper when PyYAML was built with them: the same safe
# subset of YAML, several times faster on the state files every pass reads.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _NoAliasDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """Never writes anchors or aliases: what the app writes, it (and others) read back
    as untrusted YAML, which refuses them (a value used twice is written twice)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


YAML_DUMPER = _NoAliasDumper


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=YAML_LOADER)


# -- YAML and values written by other people -------------------------------------------
#
# A data scientist's config.yaml, a peer's request.yaml, a data owner's state.yaml:
# none of them is trusted. Aliases let a few hundred bytes stand for billions of
# values once turned into text, so they are refused outright (no tool of the
# syft-job protocol writes them), and so are documents nested deeper than any
# real file; values that become text go through ``untrusted_text``.

UNTRUSTED_MAX_DEPTH = 64
UNTRUSTED_TEXT_CAP = 200


class UntrustedYAMLError(yaml.YAMLError):
    """A file written by someone else that is valid YAML this app still refuses."""


class _UntrustedComposer(yaml.composer.Composer):
    def __init__(self) -> None:
        super().__init__()
        self._untrusted_depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            what = "alias" if isinstance(event, yaml.AliasEvent) else "anchor"
            raise yaml.composer.ComposerError(
                None,
                None,
                f"found an {what} (&name or *name): anchors and aliases are not "
                "accepted in files written by others",
                event.start_mark,
            )
        self._untrusted_depth += 1
        try:
            if self._untrusted_depth > UNTRUSTED_MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested more than {UNTRUSTED_MAX_DEPTH} levels deep",
                    event.start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._untrusted_depth -= 1


_CParser = getattr(getattr(yaml, "cyaml", None), "CParser", None)

if _CParser is not None:

    class _UntrustedLoader(  # type: ignore[misc]
        _CParser,
        _UntrustedComposer,
        yaml.constructor.SafeConstructor,
        yaml.resolver.Resolver,
    ):
        # libyaml scans and parses (fast); the Python composer above builds the
        # nodes, so every event passes the alias and depth checks.
        check_node = yaml.composer.Composer.check_node
        get_node = yaml.composer.Composer.get_node
        get_single_node = yaml.composer.Composer.get_single_node

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            _UntrustedComposer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

else:

    class _UntrustedLoader(  # type: ignore[no-redef]
        yaml.reader.Reader,
        yaml.scanner.Scanner,
        yaml.parser.Parser,
        _UntrustedComposer,
        yaml.constructor.SafeConstructor,
        yaml.resolver.Resolver,
    ):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            _UntrustedComposer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)


def load_untrusted_yaml(text: str) -> Any:
    """Parse YAML someone else wrote: the safe subset, without anchors or aliases.

    Raises ``yaml.YAMLError`` (with a line number when there is one) for
    aliases, anchors, nesting deeper than ``UNTRUSTED_MAX_DEPTH``, more than one
    document, and values the safe constructor cannot build (an impossible
    date, an integer of thousands of digits). Callers cap the size of ``text``.
    """
    loader = _UntrustedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError:
        raise
    except (ValueError, OverflowError, RecursionError) as exc:
        raise UntrustedYAMLError(f"a value cannot be read: {str(exc)[:200]}") from None
    finally:
        loader.dispose()


_CONTROL = {code: " " for code in (*range(0x20), 0x7F)}
_CONTROL_MULTILINE = {code: " " for code in (*range(0x20), 0x7F) if chr(code) not in "\n\t"}
# Multiline text someone else wrote keeps at most one blank line in a row and this many
# lines: a message of thousands of line breaks would push what follows it (the
# owner's own words, the commands to answer) out of sight.
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")
UNTRUSTED_LINES_CAP = 40


def untrusted_text(
    value: Any, cap: int = UNTRUSTED_TEXT_CAP, multiline: bool = False
) -> str | None:
    """A scalar from someone else's file as text of at most ``cap`` characters.

    Strings, numbers, booleans and dates become text; anything else (lists,
    mappings) is None, never its ``repr``. Control characters become spaces
    (newlines and tabs are kept when ``multiline``, with runs of blank lines
    made one and at most ``UNTRUSTED_LINES_CAP`` lines); longer text ends in "…".
    """
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        text = moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    elif isinstance(value, date):
        text = value.isoformat()
    elif isinstance(value, str):
        # Cut before translating: the work stays bounded by the cap.
        text = value[: cap + 1]
    elif isinstance(value, (int, float)):
        text = repr(value) if isinstance(value, float) else str(value)
    else:
        return None
    text = text.translate(_CONTROL_MULTILINE if multiline else _CONTROL)
    if multiline:
        text = fold_blank_lines(text)
        lines = text.split("\n", UNTRUSTED_LINES_CAP)
        if len(lines) > UNTRUSTED_LINES_CAP:
            text = "\n".join(lines[:UNTRUSTED_LINES_CAP]) + "…"
    if len(text) > cap:
        text = text[: max(0, cap - 1)] + "…"
    return text


def fold_blank_lines(text: str) -> str:
    """``text`` with every run of blank lines made one blank line."""
    return _BLANK_LINES.sub("\n\n", text)


def last_lines(text: str, cap: int = UNTRUSTED_LINES_CAP) -> str:
    """The end of someone else's output: blank-line runs folded, at most ``cap`` lines
    (a "…" line says more came before)."""
    lines = fold_blank_lines(text).split("\n")
    if len(lines) > cap:
        lines = ["…", *lines[-cap:]]
    return "\n".join(lines)


def short_repr(value: Any, cap: int = 80) -> str:
    """``repr`` for a message quoting someone else's value, never longer than ``cap``.

    Containers are described by type and size, so a huge list costs nothing.
    """
    if isinstance(value, (list, tuple, dict, set)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, str):
        text = repr(value[: cap + 1])
    else:
        text = untrusted_text(value, cap) or type(value).__name__
        text = repr(text) if isinstance(value, (datetime, date)) else text
    if len(text) > cap:
        text = text[: max(0, cap - 1)] + "…"
    return text


def is_ignored_name(name: str, is_dir: bool) -> bool:
    """True for names a sync client never delivers (and that never count)."""
    if is_dir:
        return name in IGNORED_DIRS
    return name.endswith(IGNORED_SUFFIXES) or name.startswith(TEMP_PREFIX)


def atomic_write_text(path: Path, text: str, mode: int = 0o644, unless_same: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode, unless_same)


def atomic_write_yaml(path: Path, data: Any, mode: int = 0o644, unless_same: bool = False) -> None:
    text = yaml.dump(data, Dumper=YAML_DUMPER, default_flow_style=False, sort_keys=True)
    atomic_write_text(path, text, mode, unless_same)


def atomic_write_json(path: Path, data: Any, mode: int = 0o644, compact: bool = False) -> None:
    if compact:
        text = json.dumps(data, separators=(",", ":"))
    else:
        text = json.dumps(data, indent=1, sort_keys=True)
    atomic_write_text(path, text + "\n", mode)


def append_line(path: Path, line: str, mode: int = 0o600) -> None:
    """Append one line with a single write and fsync (an audit-log style record)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
