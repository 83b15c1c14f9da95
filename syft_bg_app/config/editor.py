"""The one editor of config.yaml: changes what a command must, keeps everything else.

``set_values`` sets single settings (``<step>.enabled`` for start/stop,
``schedule.interval``, ``notify.transport``). The commands that edit rules
(``auto-approve``, ``remove-auto-approval``, ``remove-peer``) go through
``update_rules``, which also rewrites the legacy approval keys it migrates.

Both edit the file as a ruamel.yaml round-trip document: comments, blank
lines, key order, quoting and flow or block style stay as the data owner wrote
them, and the file's indentation is measured and reused. A rule the change
leaves as it was keeps its text; a changed rule keeps the fields that did not
change; a removed rule takes the comment lines right above it along; comment
lines above the next key stay above it (ruamel files them under the value
before them, so the helpers below move them when that value changes).

The result is validated with ``parse_config`` and checked to mean exactly what
was intended, with every other setting unchanged; only then does it atomically
replace the file, with the file's mode. Where the written file differs from the
old one in more than the change (ruamel normalises some spacing), the caller is
told.

ruamel.yaml is imported here only: a pass never edits config.yaml.

Callers hold the app lock, so two commands never interleave their updates; a
change made by hand while a command runs is detected and nothing is written.
"""

from __future__ import annotations

import copy
import functools
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from syft_bg_app.approval.rules import Rule
from syft_bg_app.config.load import Config, parse_config
from syft_bg_app.config.migrate import migrate
from syft_bg_app.config.schema import RULE_FIELDS
from syft_bg_app.errors import ConfigError, SyftBgError
from syft_bg_app.store.fsutil import atomic_write_text

REFORMATTED_NOTE = (
    "some lines of config.yaml were re-spaced while writing the change (indentation or "
    "spacing the YAML writer cannot reproduce); their comments and values were kept"
)
# The indentation of files that show none to measure (the one init writes).
DEFAULT_INDENT = (2, 4, 2)
NULL_VALUE = re.compile(r":[ \t]+null[ \t]*(#.*)?$", re.MULTILINE)


class ConfigChangedError(SyftBgError):
    """config.yaml changed on disk while a command was updating it."""


@dataclass
class WriteResult:
    rules: list[dict[str, Any]]
    config: Config
    migrated: bool = False
    written: bool = True
    notes: list[str] = field(default_factory=list)


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


# -- the round-trip document ------------------------------------------------------------


class _Document:
    """config.yaml loaded for round-trip editing, written back in the file's own layout."""

    def __init__(self, text: str) -> None:
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError

        self.yaml = YAML()
        self.below: dict[str, str] = {}
        self.yaml.preserve_quotes = True
        self.yaml.width = 4096
        try:
            self.root = self.yaml.load(text)
        except YAMLError as exc:
            raise ConfigError(f"config.yaml cannot be edited: {exc}") from None
        if not self._is_map(self.root):
            raise ConfigError("config.yaml cannot be edited: it is not a mapping of keys")
        mapping, sequence, offset = _measure_indent(self.root) or DEFAULT_INDENT
        self.yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
        # A null is written the way the file writes them: "null" (as init does), or nothing.
        if NULL_VALUE.search(text) or not text.strip():
            self.yaml.Representer = _null_word_representer()
        self.faithful = self.text() == text

    @staticmethod
    def _is_map(node: Any) -> bool:
        from ruamel.yaml.comments import CommentedMap

        return isinstance(node, CommentedMap)

    def text(self) -> str:
        for name, below in self.below.items():
            _attach_following(self.root, name, below)
        self.below.clear()
        out = io.StringIO()
        self.yaml.dump(self.root, out)
        return out.getvalue()

    def section(self, name: str) -> Any:
        """The top-level mapping ``name``, added at the end when the file has none."""
        from ruamel.yaml.comments import CommentedMap

        node = self.root.get(name)
        if name not in self.root:
            # Last in the file, after its closing comments (they are not about a key).
            node = self.root[name] = CommentedMap()
        elif name not in self.below:
            # The comment lines below the section stay below what the edit adds to it.
            self.below[name] = _detach_following(_tail_slot(self.root, name))
            if not self._is_map(node):
                node = self.root[name] = CommentedMap()
        return node


@functools.cache
def _null_word_representer() -> type:
    from ruamel.yaml.representer import RoundTripRepresenter

    class NullWordRepresenter(RoundTripRepresenter):
        def represent_none(self, data: Any) -> Any:
            return self.represent_scalar("tag:yaml.org,2002:null", "null")

    # A class of its own: add_representer changes the class it is called on.
    NullWordRepresenter.add_representer(type(None), NullWordRepresenter.represent_none)
    return NullWordRepresenter


def _measure_indent(root: Any) -> tuple[int, int, int] | None:
    """(mapping, sequence, offset) indentation, measured on the file's first nested blocks."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    mapping = sequence = offset = None
    pending = [root]
    while pending and (mapping is None or sequence is None):
        node = pending.pop(0)
        if not isinstance(node, CommentedMap) or node.fa.flow_style():
            continue
        for key, value in node.items():
            key_line, key_col = node.lc.key(key)
            if isinstance(value, CommentedMap) and value and not value.fa.flow_style():
                first_line, first_col = value.lc.key(next(iter(value)))
                if mapping is None and first_line > key_line:
                    mapping = first_col - key_col
                pending.append(value)
            elif isinstance(value, CommentedSeq) and value and not value.fa.flow_style():
                item_line, item_col = value.lc.item(0)
                if sequence is None and item_line > key_line:
                    sequence, offset = item_col - key_col, value.lc.col - key_col
                pending.extend(value)
    if mapping is None and sequence is None:
        return None
    mapping = mapping or DEFAULT_INDENT[0]
    if sequence is None:
        sequence, offset = mapping + 2, mapping
    return mapping, sequence, offset


# -- comments that belong to the next key ------------------------------------------------
#
# ruamel keeps the comment lines before a key on the last scalar of the value
# before it. A value that is replaced or removed would take them along; these
# move them to the value's replacement, or to the key before it.


def _block(node: Any) -> bool:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    return (
        isinstance(node, (CommentedMap, CommentedSeq)) and bool(node) and not node.fa.flow_style()
    )


def _tail_slot(container: Any, key: Any) -> tuple[Any, Any, int] | None:
    """(container, key, slot) where the comment after ``container[key]``'s text lives."""
    from ruamel.yaml.comments import CommentedSeq

    if key not in (range(len(container)) if isinstance(container, CommentedSeq) else container):
        return None
    value = container[key]
    while _block(value):
        container = value
        key = len(value) - 1 if isinstance(value, CommentedSeq) else list(value)[-1]
        value = value[key]
    return container, key, 0 if isinstance(container, CommentedSeq) else 2


def _detach_following(slot: tuple[Any, Any, int] | None) -> str:
    """Take the comment lines after a value's last line (its own end-of-line comment stays)."""
    if slot is None:
        return ""
    container, key, index = slot
    entry = container.ca.items.get(key)
    token = entry[index] if entry and len(entry) > index else None
    if token is None or not isinstance(token.value, str):
        return ""
    # The first line ends the value's own line (and holds its end-of-line comment).
    own, _, following = token.value.partition("\n")
    if not following:
        return ""
    if own.strip():
        token.value = own + "\n"
    else:
        entry[index] = None
    return following


def _attach_following(container: Any, key: Any, following: str) -> None:
    """Put comment lines taken by ``_detach_following`` after ``container[key]``."""
    if not following:
        return
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    slot = _tail_slot(container, key)
    if slot is None:
        return
    holder, last, index = slot
    entry = holder.ca.items.setdefault(last, [None, None, None, None])
    token = entry[index]
    if token is None:
        entry[index] = CommentToken("\n" + following, CommentMark(0))
    else:
        token.value = (token.value if token.value.endswith("\n") else token.value + "\n") + (
            following
        )


def _delete(container: Any, key: Any) -> None:
    """Remove ``container[key]``; the comment lines after it go to the entry before it."""
    keys = list(container)
    at = keys.index(key)
    following = _detach_following(_tail_slot(container, key))
    del container[key]
    if at > 0:
        _attach_following(container, keys[at - 1], following)


def _replace_value(container: Any, key: Any, value: Any) -> None:
    """Set ``container[key]``; the comment lines that followed the old value, or the last
    entry when the key is new, stay below the new value."""
    after = key if key in container else next(reversed(container), None)
    following = _detach_following(_tail_slot(container, after)) if after is not None else ""
    container[key] = value
    _attach_following(container, key, following)


# -- building and merging values ----------------------------------------------------------


def _node(value: Any) -> Any:
    """A plain value as round-trip nodes, in block style."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        return CommentedMap((key, _node(item)) for key, item in value.items())
    if isinstance(value, list):
        return CommentedSeq(_node(item) for item in value)
    return value


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    return node


def _same(old: Any, new: Any) -> bool:
    """Equal, and not merely as 1 == True (a quoted string equals its plain text)."""
    return old == new and isinstance(old, bool) == isinstance(new, bool)


def _merge(old: Any, new: Any) -> Any:
    """``new`` written over ``old``: what did not change keeps its node (and comments)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [key for key in old if key not in new]:
            _delete(old, key)
        for key, value in new.items():
            if key not in old:
                _replace_value(old, key, _node(value))
            elif not _same(_plain(old[key]), value):
                merged = _merge(old[key], value)
                if merged is not old[key]:
                    _replace_value(old, key, merged)
        return old
    if isinstance(old, list) and isinstance(new, list) and _plain(old) != new:
        node = _node(new)
        if old.fa.flow_style():
            node.fa.set_flow_style()
        return node
    if _same(_plain(old), new):
        return old
    return _node(new)


def _write_rules(approve: Any, old_rules: list[dict[str, Any]], new_rules: list[dict]) -> None:
    """Edit the file's rule list in place: a rule is matched to the next old one of its name.

    An unmatched old rule is removed, an unmatched new one inserted where it
    stands in the new list, and a matched one merged field by field.
    """
    owner = (approve, "auto_approvals")
    rule_list = approve["auto_approvals"]
    # The comment lines below the list (above the next key) stay below it.
    below = _detach_following(_tail_slot(*owner))
    position = 0
    for rule in new_rules:
        found = next(
            (i for i in range(position, len(old_rules)) if old_rules[i]["name"] == rule["name"]),
            None,
        )
        if found is None:
            _insert_item(rule_list, position, _node(rule), owner)
            old_rules.insert(position, rule)
            position += 1
            continue
        for gone in range(found - 1, position - 1, -1):
            _remove_item(rule_list, gone, owner)
            del old_rules[gone]
        if old_rules[position] != rule:
            node = rule_list[position]
            # A field the file leaves out, or writes out, at its default stays so.
            written = {
                key: value
                for key, value in rule.items()
                if key in node or value != RULE_FIELDS[key].default
            }
            for key in node:
                default = RULE_FIELDS[key].default if key in RULE_FIELDS else None
                if key not in rule and _same(_plain(node[key]), default):
                    written[key] = default
            rule_list[position] = _merge(node, written)
        position += 1
    for gone in range(len(old_rules) - 1, position - 1, -1):
        _remove_item(rule_list, gone, owner)
    _attach_following(*owner, below)


def _remove_item(items: Any, index: int, owner: tuple[Any, str]) -> None:
    """Remove a rule with the comment lines right above it; keep the lines after it."""
    following = _detach_following(_tail_slot(items, index))
    if index == 0:
        items.pop(index)
        kept = _drop_last_comment_block(_pre_comments(items)) + following
        if items:
            _set_pre_comments(items, kept, owner)
        else:
            # An empty list is written "[]" on its key's line, the lines after it.
            _set_pre_comments(items, "", owner)
            items.fa.set_flow_style()
            _attach_following(*owner, kept)
        return
    above = _detach_following(_tail_slot(items, index - 1))
    items.pop(index)
    _attach_following(items, index - 1, _drop_last_comment_block(above) + following)


def _insert_item(items: Any, index: int, node: Any, owner: tuple[Any, str]) -> None:
    """Insert a rule right after the text of the one before it: the comment lines that
    stood there (above the next rule, or above the key after the list) stay below it."""
    if index == 0 and items:
        above = _pre_comments(items)
        kept = _drop_last_comment_block(above)
        items.insert(0, node)
        _set_pre_comments(items, kept, owner)
        _attach_following(items, 0, above[len(kept) :])
        return
    following = _detach_following(_tail_slot(items, index - 1)) if index else ""
    items.insert(index, node)
    _attach_following(items, index, following)


def _pre_comments(items: Any) -> str:
    """The comment lines between a list's key and its first item."""
    comment = items.ca.comment
    tokens = comment[1] if comment and comment[1] else []
    return "".join(" " * (token.column or 0) + token.value for token in tokens)


def _set_pre_comments(items: Any, text: str, owner: tuple[Any, str]) -> None:
    """Set the lines above a list's first item; ``owner`` (mapping, key) holds the list,
    and keeps its own record of these lines."""
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    parent, key = owner
    tokens = [CommentToken(text, CommentMark(0))] if text else None
    items.ca.comment = [None, tokens] if tokens else None
    entry = parent.ca.items.get(key)
    if entry is not None and len(entry) > 3:
        entry[3] = tokens
    elif tokens:
        parent.ca.items[key] = [None, None, None, tokens]


def _drop_last_comment_block(lines: str) -> str:
    """``lines`` without the comment lines at their end (those not set off by a blank line)."""
    kept = lines.splitlines(keepends=True)
    while kept and kept[-1].lstrip().startswith("#"):
        kept.pop()
    return "".join(kept)


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
        new_config = parse_config(new_text, filename)
    except ConfigError as exc:
        return None, str(exc)
    root = yaml.compose(new_text, Loader=yaml.SafeLoader)
    if migrate(root, filename).changed:
        return None, "legacy approval keys are still present"
    if canonical_rules(new_config.get("approve.auto_approvals")) != canonical_rules(
        sets["auto_approvals"]
    ):
        return None, "the rules read back differ from the rules written"
    if "peers" in sets and new_config.get("approve.peers") != sets["peers"]:
        return None, "approve.peers read back differs"
    touched = {"auto_approvals", "peers"}
    if _without(new_config.data, touched) != _without(old.data, touched):
        return None, "a setting outside the approval rules changed"
    if "peers" not in sets and new_config.get("approve.peers") != old.get("approve.peers"):
        return None, "approve.peers changed"
    return new_config, ""


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
    document = _Document(text)
    approve = document.section("approve")
    for key in migration.remove:
        if key in approve:
            _delete(approve, key)
    if "peers" in sets:
        _replace_value(approve, "peers", _node(sets["peers"]))
    rule_list = approve.get("auto_approvals")
    if "auto_approvals" in migration.rewrite or not isinstance(rule_list, list):
        _replace_value(approve, "auto_approvals", _node(new_rules))
    else:
        _write_rules(approve, list(rules), new_rules)
    new_text = document.text()
    checked, problem = _check(new_text, str(path), old, sets)
    if checked is None:
        raise ConfigError(f"{path}: could not write the change safely ({problem}); nothing changed")
    _replace(path, raw, new_text)
    result = WriteResult(new_rules, checked, migrated=migration.changed)
    if migration.changed:
        result.notes.append(
            "legacy approval settings in config.yaml were rewritten in the canonical form"
        )
    if not document.faithful:
        result.notes.append(REFORMATTED_NOTE)
    return result


# -- single settings (<step>.enabled, schedule.interval, notify.transport) -----------


def _means_exactly(new_config: Config, old_config: Config, values: dict[str, Any]) -> bool:
    expected = copy.deepcopy(old_config.data)
    for dotted, value in values.items():
        section, _, name = dotted.partition(".")
        expected[section][name] = value
    return new_config.data == expected


def set_values(path: Path, values: dict[str, Any]) -> tuple[bool, list[str]]:
    """Set scalar keys (``{"notify.enabled": False}``) in config.yaml, keeping every
    other line. Returns (written, notes). Callers hold the app lock."""
    path = Path(path)
    raw, text, old_config = _read(path)
    if all(old_config.get(k) == v for k, v in values.items()):
        return False, []
    document = _Document(text)
    for dotted, value in values.items():
        section_name, _, name = dotted.partition(".")
        section = document.section(section_name)
        if name in section:
            section[name] = value
        else:
            # A new key goes first in its section, under the section's own comments.
            section.insert(0, name, value)
    new_text = document.text()
    try:
        new_config = parse_config(new_text, str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: could not write the change safely ({exc})") from None
    if not _means_exactly(new_config, old_config, values):
        raise ConfigError(f"{path}: could not write the change safely; nothing changed")
    _replace(path, raw, new_text)
    return True, [] if document.faithful else [REFORMATTED_NOTE]
