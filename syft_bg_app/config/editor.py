"""The one writer of config.yaml: changes what a command must, keeps everything else.

``set_values`` sets single settings (``<step>.enabled`` for start/stop,
``schedule.interval``, ``notify.transport``). The commands that edit rules
(``auto-approve``, ``remove-auto-approval``, ``remove-peer``) go through
``update_rules``. It replaces only the text of
``approve.auto_approvals`` (and of the legacy approval keys it migrates) in
place, so every other line, comment and blank line of the file stays byte for
byte as the data owner wrote it. The result is validated with
``config.parse_config`` and checked to mean exactly what was intended, with
every other setting unchanged; only then does it atomically replace the file.
If the file's shape does not allow an in-place edit (an ``approve`` section in
flow style, say), the file is written out in full instead and the caller is
told that its comments could not be kept.

Callers hold the app lock, so two commands never interleave their updates; a
change made by hand while a command runs is detected and nothing is written.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from syft_bg_app.approval.rules import Rule
from syft_bg_app.config.load import Config, parse_config
from syft_bg_app.config.migrate import migrate
from syft_bg_app.errors import ConfigError, SyftBgError
from syft_bg_app.store.fsutil import atomic_write_text

FULL_REWRITE_HEADER = (
    "# syft-bg configuration (written in full by syft-bg; the comments of the previous\n"
    "# file could not be kept because of its layout). Reference: README.md.\n"
)


class ConfigChangedError(SyftBgError):
    """config.yaml changed on disk while a command was updating it."""


@dataclass
class WriteResult:
    rules: list[dict[str, Any]]
    config: Config
    migrated: bool = False
    comments_kept: bool = True
    written: bool = True
    notes: list[str] = field(default_factory=list)


class _Dumper(yaml.SafeDumper):
    """Block style with sequences indented under their key, as people write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def _dump_pair(key: str, value: Any, indent: int) -> str:
    text = yaml.dump(
        {key: value},
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
    )
    lines = text.rstrip("\n").split("\n")
    return lines[0] + "".join("\n" + " " * indent + line for line in lines[1:])


def canonical_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [Rule.from_dict(rule).to_dict() for rule in rules]


def _full(rule: dict[str, Any]) -> dict[str, Any]:
    """Every field present, so callers can edit without checking for defaults."""
    out = copy.deepcopy(rule)
    out.setdefault("peers", [])
    out.setdefault("files", {})
    out.setdefault("name_only", [])
    out.setdefault("timeout", None)
    out.setdefault("enabled", True)
    return out


# -- in-place text edits ----------------------------------------------------------


def _last_index(node: yaml.Node) -> int:
    """Where the text of ``node`` really ends (block collections' marks swallow comments)."""
    if isinstance(node, yaml.MappingNode) and node.value and not node.flow_style:
        return max(_last_index(node.value[-1][0]), _last_index(node.value[-1][1]))
    if isinstance(node, yaml.SequenceNode) and node.value and not node.flow_style:
        return _last_index(node.value[-1])
    return node.end_mark.index


def _line_end(text: str, index: int) -> int:
    if index > 0 and text[index - 1] == "\n":
        return index - 1
    found = text.find("\n", index)
    return len(text) if found < 0 else found


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _block_mapping(text: str) -> yaml.MappingNode | None:
    """The document's top-level mapping, when it is a block one that can be edited."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        return None
    return root


def _splice(text: str, sets: dict[str, Any], removes: set[str]) -> str | None:
    """Edit the ``approve`` keys in place; None when the layout does not allow it."""
    root = _block_mapping(text)
    if root is None:
        return None
    approve = None
    for key_node, value_node in root.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == "approve":
            approve = value_node
    if approve is None:
        body = text if text.endswith("\n") or not text else text + "\n"
        return body + _dump_pair("approve", sets, 2) + "\n"
    if not isinstance(approve, yaml.MappingNode) or approve.flow_style or not approve.value:
        return None
    indent = approve.value[0][0].start_mark.column
    edits: list[tuple[int, int, str]] = []
    present: set[str] = set()
    for key_node, value_node in approve.value:
        name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if name is None or (name not in sets and name not in removes):
            continue
        if name in present:
            return None
        present.add(name)
        at = key_node.start_mark.index
        if text[_line_start(text, at) : at].strip():
            return None  # the key does not begin its line: not a layout edited in place
        end = _line_end(text, max(_last_index(value_node), key_node.end_mark.index))
        if name in removes:
            start = _line_start(text, key_node.start_mark.index)
            edits.append((start, min(end + 1, len(text)), ""))
        else:
            edits.append((key_node.start_mark.index, end, _dump_pair(name, sets[name], indent)))
    missing = [name for name in sets if name not in present]
    if missing:
        at = _line_end(text, _last_index(approve))
        added = "".join("\n" + " " * indent + _dump_pair(n, sets[n], indent) for n in missing)
        edits.append((at, at, added))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _full_rewrite(text: str, sets: dict[str, Any], removes: set[str]) -> str:
    data = yaml.safe_load(text) or {}
    approve = data.get("approve")
    if not isinstance(approve, dict):
        approve = data["approve"] = {}
    for name in removes:
        approve.pop(name, None)
    approve.update(copy.deepcopy(sets))
    return FULL_REWRITE_HEADER + yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


# -- checking that the new text means what was intended ------------------------------


def _without(data: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for key in keys:
        out["approve"].pop(key, None)
    return out


def _check(
    new_text: str, filename: str, old: Config, sets: dict[str, Any]
) -> tuple[Config | None, str]:
    try:
        new = parse_config(new_text, filename)
    except ConfigError as exc:
        return None, str(exc)
    root = yaml.compose(new_text, Loader=yaml.SafeLoader)
    if migrate(root, filename).changed:
        return None, "legacy approval keys are still present"
    if canonical_rules(new.get("approve.auto_approvals")) != canonical_rules(
        sets["auto_approvals"]
    ):
        return None, "the rules read back differ from the rules written"
    if "peers" in sets and new.get("approve.peers") != sets["peers"]:
        return None, "approve.peers read back differs"
    touched = {"auto_approvals", "peers"}
    if _without(new.data, touched) != _without(old.data, touched):
        return None, "a setting outside the approval rules changed"
    if "peers" not in sets and new.get("approve.peers") != old.get("approve.peers"):
        return None, "approve.peers changed"
    return new, ""


def _read(path: Path) -> tuple[bytes, str, Config]:
    """The file's bytes, text and validated meaning; a broken file changes nothing."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no configuration yet; create one with: syft-bg init -e YOUR_EMAIL"
        ) from None
    text = raw.decode("utf-8")
    try:
        return raw, text, parse_config(text, str(path))
    except ConfigError as exc:
        raise ConfigError(f"{exc}\n(fix config.yaml first; nothing was changed)") from None


def _replace(path: Path, raw: bytes, new_text: str) -> None:
    """Atomically replace config.yaml, unless someone changed it since it was read."""
    if path.read_bytes() != raw:
        raise ConfigChangedError(
            f"{path} changed while this command was updating it; nothing was written, run it again"
        )
    atomic_write_text(path, new_text, mode=os.stat(path).st_mode & 0o777)


# -- the writer ---------------------------------------------------------------------------


def update_rules(
    path: Path, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None]
) -> WriteResult:
    """Apply ``change`` to the canonical rule list and write config.yaml back.

    ``change`` gets a copy of the rules (legacy forms already migrated, every
    field present) and returns the new list, or None to write nothing.
    """
    path = Path(path)
    raw, text, old = _read(path)
    rules = canonical_rules(old.get("approve.auto_approvals"))
    new_rules = change([_full(rule) for rule in rules])
    migration = migrate(yaml.compose(text, Loader=yaml.SafeLoader), str(path))
    if new_rules is None:
        return WriteResult(rules, old, written=False)
    new_rules = canonical_rules(new_rules)
    if new_rules == rules and not migration.changed:
        return WriteResult(rules, old, written=False)
    sets: dict[str, Any] = {"auto_approvals": new_rules}
    if "peers" in migration.rewrite:
        sets["peers"] = old.get("approve.peers")
    removes = set(migration.remove)
    result = WriteResult(new_rules, old, migrated=migration.changed)
    new_text = _splice(text, sets, removes)
    checked, problem = (
        (None, "layout") if new_text is None else _check(new_text, str(path), old, sets)
    )
    if checked is None:
        new_text = _full_rewrite(text, sets, removes)
        checked, problem = _check(new_text, str(path), old, sets)
        if checked is None:
            raise ConfigError(
                f"{path}: could not write the change safely ({problem}); nothing changed"
            )
        result.comments_kept = False
    _replace(path, raw, new_text)
    result.config = checked
    if migration.changed:
        result.notes.append(
            "legacy approval settings in config.yaml were rewritten in the canonical form"
        )
    if not result.comments_kept:
        result.notes.append(
            "config.yaml was written out in full: its layout did not allow an in-place "
            "edit, so its comments were not kept"
        )
    return result


# -- single settings (<step>.enabled, schedule.interval, notify.transport) -----------


def _scalar_text(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _value_line_end(text: str, index: int) -> int:
    found = text.find("\n", index)
    return len(text) if found < 0 else found


def _splice_values(text: str, values: dict[str, Any]) -> str | None:
    """``text`` with each ``section.key`` set; None when the layout needs a full rewrite."""
    root = _block_mapping(text)
    if root is None:
        return None
    sections: dict[str, yaml.Node] = {}
    for key_node, value_node in root.value:
        if isinstance(key_node, yaml.ScalarNode):
            sections[key_node.value] = value_node
    edits: list[tuple[int, int, str]] = []
    appended: dict[str, list[str]] = {}
    for dotted, value in values.items():
        section, _, name = dotted.partition(".")
        if not name or "." in name:
            return None
        node = sections.get(section)
        if node is None:
            appended.setdefault(section, []).append(f"  {name}: {_scalar_text(value)}")
            continue
        if not isinstance(node, yaml.MappingNode) or node.flow_style or not node.value:
            return None
        found = None
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == name:
                found = value_node
        if found is not None:
            if not isinstance(found, yaml.ScalarNode) or found.style in ("|", ">"):
                return None
            start, end = found.start_mark.index, found.end_mark.index
            # "key:" with no value has an empty span right after the colon.
            edits.append((start, end, (" " if start == end else "") + _scalar_text(value)))
            continue
        first_key = node.value[0][0]
        indent = first_key.start_mark.column
        at = first_key.start_mark.index - indent
        if text[at : first_key.start_mark.index].strip():
            return None
        edits.append((at, at, " " * indent + f"{name}: {_scalar_text(value)}\n"))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    if appended:
        if text and not text.endswith("\n"):
            text += "\n"
        for section, lines in appended.items():
            text += f"{section}:\n" + "\n".join(lines) + "\n"
    return text


def _full_rewrite_values(text: str, values: dict[str, Any]) -> str:
    data = yaml.safe_load(text) or {}
    for dotted, value in values.items():
        section, _, name = dotted.partition(".")
        if not isinstance(data.get(section), dict):
            data[section] = {}
        data[section][name] = value
    return (
        "# syft-bg configuration (written in full by syft-bg; the comments of the previous\n"
        "# file could not be kept because of its layout). Reference: README.md.\n"
        + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    )


def _means_exactly(new: Config, old: Config, values: dict[str, Any]) -> bool:
    expected = copy.deepcopy(old.data)
    for dotted, value in values.items():
        section, _, name = dotted.partition(".")
        expected[section][name] = value
    return new.data == expected


def set_values(path: Path, values: dict[str, Any]) -> tuple[bool, list[str]]:
    """Set scalar keys (``{"notify.enabled": False}``) in config.yaml, keeping every
    other line. Returns (written, notes). Callers hold the app lock."""
    path = Path(path)
    raw, text, old = _read(path)
    if all(old.get(k) == v for k, v in values.items()):
        return False, []
    notes: list[str] = []
    new_text = _splice_values(text, values)
    new = None
    if new_text is not None:
        try:
            new = parse_config(new_text, str(path))
        except ConfigError:
            new = None
        if new is not None and not _means_exactly(new, old, values):
            new = None
    if new is None:
        new_text = _full_rewrite_values(text, values)
        try:
            new = parse_config(new_text, str(path))
        except ConfigError as exc:
            raise ConfigError(f"{path}: could not write the change safely ({exc})") from None
        if not _means_exactly(new, old, values):
            raise ConfigError(f"{path}: could not write the change safely; nothing changed")
        notes.append(
            "config.yaml was written out in full: its layout did not allow an in-place "
            "edit, so its comments were not kept"
        )
    assert new_text is not None
    _replace(path, raw, new_text)
    return True, notes
