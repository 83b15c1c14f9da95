"""config.yaml: one declared schema that validates, documents and generates.

Every key the app reads is declared once in ``SCHEMA`` with its type, default
and a sentence of documentation. Loading walks the YAML node tree, so every
error names the file, the line and the dotted key, and an unknown key gets a
did-you-mean. The same declaration renders the sample written by ``init`` and
the key reference in the README.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$")
DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9\-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]*[a-z0-9])?)+$")
HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Key:
    """One config key: its type, default and the sentence that documents it."""

    kind: str
    default: Any = None
    doc: str = ""
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    required: bool = False
    fields: dict[str, Key] = field(default_factory=dict)
    example: Any = None


def section(doc: str, **fields: Key) -> Key:
    return Key("section", doc=doc, fields=fields)


RULE_FIELDS: dict[str, Key] = {
    "name": Key(
        "str",
        None,
        "Name of the rule (shown in emails and the audit log).",
        required=True,
    ),
    "peers": Key(
        "list_email",
        [],
        "Data scientists this rule applies to; empty means every accepted peer.",
    ),
    "files": Key(
        "hash_map",
        {},
        "Files matched by content: path relative to the job folder -> sha256:<hex>.",
    ),
    "name_only": Key(
        "list_relpath",
        [],
        "Files matched by name only (any content), relative to the job folder.",
    ),
    "timeout": Key(
        "int",
        None,
        "Per-rule wall-clock limit in seconds (default execute.timeout).",
        minimum=1,
    ),
}

SCHEMA: dict[str, Key] = {
    "do_email": Key(
        "email",
        None,
        "The data owner's email: the datasite this app serves.",
        required=True,
        example="you@example.org",
    ),
    "syftbox_root": Key(
        "path",
        "~/SyftBox",
        "The SyftBox folder (holds <email>/ or datasites/<email>/).",
    ),
    "sync": section(
        "Seeing what changed in the datasite.",
        enabled=Key("bool", True, "Run the sync step in each pass."),
        incomplete_grace=Key(
            "int",
            900,
            "Seconds a job folder that is still arriving may stay incomplete before "
            "it is rejected with a reason.",
            minimum=0,
        ),
    ),
    "notify": section(
        "Emails about each event.",
        enabled=Key("bool", True, "Run the notify step in each pass."),
        transport=Key(
            "choice",
            "outbox",
            "How mail leaves: outbox (.eml files in <app home>/outbox), smtp or gmail.",
            choices=("outbox", "smtp", "gmail"),
        ),
    ),
    "approve": section(
        "Automatic approval of peers and jobs.",
        enabled=Key("bool", True, "Run the approve step in each pass."),
        peers=section(
            "Which peer requests are accepted without the data owner.",
            approved_domains=Key(
                "list_domain",
                [],
                "Accept requests whose email domain is exactly one of these.",
            ),
            approved_emails=Key("list_email", [], "Accept requests from exactly these emails."),
        ),
        auto_approvals=Key(
            "list_rule",
            [],
            "Auto-approval objects: a job whose complete file set equals a rule's "
            "files (content by sha256, or name only) is approved.",
            fields=RULE_FIELDS,
        ),
    ),
    "execute": section(
        "Running approved jobs.",
        enabled=Key("bool", True, "Run the execute step in each pass."),
        timeout=Key("int", 600, "Wall-clock limit per job, in seconds.", minimum=1),
        max_concurrent=Key("int", 2, "Jobs running at the same time.", minimum=1),
        network=Key("bool", True, "Jobs may use the network (python jobs install packages)."),
        sandbox=Key(
            "choice",
            "auto",
            "auto (bubblewrap when it works), bwrap (required) or none.",
            choices=("auto", "bwrap", "none"),
        ),
        share_outputs=Key("bool", True, "Share a job's outputs/ with the submitting DS."),
        share_logs=Key("bool", True, "Share stdout/stderr/return code with the submitting DS."),
    ),
    "log": section(
        "Log files in <app home>/logs.",
        level=Key(
            "choice",
            "info",
            "Log level.",
            choices=("debug", "info", "warning", "error"),
        ),
        max_bytes=Key("int", 1_000_000, "Size at which a log file is rotated.", minimum=10_000),
        backups=Key("int", 5, "Rotated log files kept.", minimum=0),
    ),
}


def _default_tree(fields: dict[str, Key]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, key in fields.items():
        if key.kind == "section":
            tree[name] = _default_tree(key.fields)
        else:
            tree[name] = _copy(key.default)
    return tree


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


@dataclass
class Config:
    """A validated configuration: every key present, defaults filled in."""

    data: dict[str, Any]
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            node = node[part]
        return node

    @property
    def do_email(self) -> str:
        return self.data["do_email"]

    @property
    def syftbox_root(self) -> Path:
        return Path(os.path.expanduser(self.data["syftbox_root"]))

    def step_enabled(self, step: str) -> bool:
        return bool(self.data[step]["enabled"])


class _Problems:
    """Collects every problem so the user sees all of them at once."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.items: list[str] = []

    def add(self, node: yaml.Node | None, dotted: str, message: str) -> None:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        where = f"{dotted}: " if dotted else ""
        self.items.append(f"{self.filename}{line}: {where}{message}")


_SCALAR_LOADER = yaml.SafeLoader("")


def _scalar(node: yaml.Node) -> Any:
    return _SCALAR_LOADER.construct_object(node, deep=True)


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    value = _scalar(node)
    if value is None:
        return "empty"
    return f"{type(value).__name__} {value!r}"


def _did_you_mean(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (allowed: {', '.join(allowed)})"


def _mapping_items(
    node: yaml.MappingNode, dotted: str, problems: _Problems
) -> list[tuple[str, yaml.Node, yaml.Node]]:
    seen: set[str] = set()
    items = []
    for key_node, value_node in node.value:
        key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str):
            problems.add(key_node, dotted, f"keys must be words, got {_describe(key_node)}")
            continue
        if key in seen:
            problems.add(key_node, _join(dotted, key), "appears twice")
            continue
        seen.add(key)
        items.append((key, key_node, value_node))
    return items


def _join(dotted: str, name: str) -> str:
    return f"{dotted}.{name}" if dotted else name


def _check_fields(
    node: yaml.Node, fields: dict[str, Key], dotted: str, problems: _Problems
) -> dict[str, Any]:
    out = _default_tree(fields)
    if isinstance(node, yaml.ScalarNode) and _scalar(node) is None:
        node = yaml.MappingNode("tag:yaml.org,2002:map", [], node.start_mark, node.end_mark)
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, dotted, f"must be a mapping of keys, got {_describe(node)}")
        return out
    present = set()
    for name, key_node, value_node in _mapping_items(node, dotted, problems):
        here = _join(dotted, name)
        spec = fields.get(name)
        if spec is None:
            problems.add(key_node, here, "unknown key" + _did_you_mean(name, list(fields)))
            continue
        present.add(name)
        if spec.kind == "section":
            out[name] = _check_fields(value_node, spec.fields, here, problems)
        else:
            out[name] = _check_value(value_node, spec, here, problems)
    for name, spec in fields.items():
        if spec.required and name not in present:
            problems.add(node if node.value else None, _join(dotted, name), "is required")
    return out


def _check_list(
    node: yaml.Node,
    dotted: str,
    problems: _Problems,
    item: Callable[[yaml.Node, str], Any],
) -> list[Any]:
    if isinstance(node, yaml.ScalarNode) and _scalar(node) is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        problems.add(node, dotted, f"must be a list, got {_describe(node)}")
        return []
    return [item(child, f"{dotted}[{i}]") for i, child in enumerate(node.value)]


def _check_value(node: yaml.Node, spec: Key, dotted: str, problems: _Problems) -> Any:
    kind = spec.kind
    if kind.startswith("list_") and kind != "list_rule":
        scalar_kind = kind[len("list_") :]
        one = Key(scalar_kind)
        return _check_list(node, dotted, problems, lambda n, d: _check_value(n, one, d, problems))
    if kind == "list_rule":
        return _check_list(
            node,
            dotted,
            problems,
            lambda n, d: _check_fields(n, spec.fields, d, problems),
        )
    if kind == "hash_map":
        return _check_hash_map(node, dotted, problems)
    if not isinstance(node, yaml.ScalarNode):
        problems.add(node, dotted, f"must be a single value, got {_describe(node)}")
        return _copy(spec.default)
    value = _scalar(node)
    if value is None and not spec.required:
        return _copy(spec.default)
    checker = _SCALAR_CHECKS[kind]
    ok, result, message = checker(value, spec)
    if not ok:
        problems.add(node, dotted, message)
        return _copy(spec.default)
    return result


def _check_hash_map(node: yaml.Node, dotted: str, problems: _Problems) -> dict[str, str]:
    if isinstance(node, yaml.ScalarNode) and _scalar(node) is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, dotted, f"must map file paths to sha256 hashes, got {_describe(node)}")
        return {}
    out = {}
    for name, key_node, value_node in _mapping_items(node, dotted, problems):
        here = f"{dotted}[{name!r}]"
        ok, path, message = _check_path_like(name, Key("path"))
        if not ok:
            problems.add(key_node, here, message)
            continue
        value = _scalar(value_node) if isinstance(value_node, yaml.ScalarNode) else None
        if not isinstance(value, str) or not HASH_RE.match(value):
            problems.add(
                value_node,
                here,
                f"must be 'sha256:' followed by 64 lowercase hex digits, got "
                f"{_describe(value_node)} (print one with: syft-bg hash FILE)",
            )
            continue
        out[path] = value
    return out


def _check_str(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, str) and value.strip():
        return True, value.strip(), ""
    return (
        False,
        None,
        f"must be a non-empty text, got {type(value).__name__} {value!r}",
    )


def _check_email(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, str) and EMAIL_RE.match(value.strip()):
        return True, value.strip().lower(), ""
    return False, None, f"must be an email address like name@example.org, got {value!r}"


def _check_domain(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, str):
        candidate = value.strip().lower()
        if candidate.startswith("@"):
            return (
                False,
                None,
                f"must be a bare domain like openmined.org, got {value!r}",
            )
        if DOMAIN_RE.match(candidate):
            return True, candidate, ""
    return False, None, f"must be a domain like openmined.org, got {value!r}"


def _check_path(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, str) and value.strip():
        return True, value.strip(), ""
    return False, None, f"must be a path, got {type(value).__name__} {value!r}"


def _check_path_like(value: Any, spec: Key) -> tuple[bool, Any, str]:
    """A path inside a job folder: relative, no '..', forward slashes."""
    if not isinstance(value, str) or not value.strip():
        return False, None, f"must be a relative path, got {value!r}"
    parts = value.strip().replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts or "" in parts or "." in parts:
        return (
            False,
            None,
            f"must be a plain relative path inside the job folder, got {value!r}",
        )
    return True, "/".join(parts), ""


def _check_int(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, bool) or not isinstance(value, int):
        return (
            False,
            None,
            f"must be a whole number, got {type(value).__name__} {value!r}",
        )
    if spec.minimum is not None and value < spec.minimum:
        return False, None, f"must be at least {spec.minimum}, got {value}"
    return True, value, ""


def _check_bool(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, bool):
        return True, value, ""
    return False, None, f"must be true or false, got {type(value).__name__} {value!r}"


def _check_choice(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, str) and value in spec.choices:
        return True, value, ""
    close = difflib.get_close_matches(str(value), list(spec.choices), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return False, None, f"must be one of {', '.join(spec.choices)}, got {value!r}{hint}"


_SCALAR_CHECKS: dict[str, Callable[[Any, Key], tuple[bool, Any, str]]] = {
    "str": _check_str,
    "email": _check_email,
    "domain": _check_domain,
    "path": _check_path,
    "relpath": _check_path_like,
    "int": _check_int,
    "bool": _check_bool,
    "choice": _check_choice,
}


def parse_config(text: str, filename: str = "config.yaml") -> Config:
    """Validate config text; raise ConfigError listing every problem."""
    problems = _Problems(filename)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        context = ""
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            context = f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
        raise ConfigError(
            f"{filename}{line}: not valid YAML: {exc.problem or exc}{context}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{filename}: not valid YAML: {exc}") from None
    if root is None:
        raise ConfigError(
            f"{filename}: the file is empty; write one with: syft-bg init -e YOUR_EMAIL"
        )
    data = _check_fields(root, SCHEMA, "", problems)
    if problems.items:
        raise ConfigError("\n".join(problems.items))
    return Config(data=data, path=Path(filename))


def load_config(path: Path) -> Config:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no configuration yet. Create one with:\n"
            f"  syft-bg init -e YOUR_EMAIL [-r SYFTBOX_FOLDER]\n"
            f"or try the app on a throwaway datasite with: ./run.sh --demo"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None
    config = parse_config(text, str(path))
    config.path = path
    return config


def config_from_values(**values: Any) -> Config:
    """A Config from keyword values (tests, the Python API), validated like a file."""
    return parse_config(yaml.safe_dump(values), "<values>")


# -- documentation generated from the schema ---------------------------------


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def render_sample(do_email: str, syftbox_root: str) -> str:
    """The commented config.yaml that ``init`` writes."""
    lines = [
        "# syft-bg configuration. Every key is optional except do_email;",
        "# the values below are the defaults. Reference: README.md, 'Configuration'.",
    ]
    given = {"do_email": do_email, "syftbox_root": syftbox_root}

    def emit(fields: dict[str, Key], indent: str) -> None:
        for name, key in fields.items():
            lines.append(f"{indent}# {key.doc}")
            if key.kind == "section":
                lines.append(f"{indent}{name}:")
                emit(key.fields, indent + "  ")
            else:
                value = given.get(name, key.default) if not indent else key.default
                lines.append(f"{indent}{name}: {_yaml_value(value)}")

    emit(SCHEMA, "")
    return "\n".join(lines) + "\n"


def reference_rows() -> list[tuple[str, str, str]]:
    """(dotted key, default, doc) for every key, for the README table."""
    rows: list[tuple[str, str, str]] = []

    def walk(fields: dict[str, Key], prefix: str) -> None:
        for name, key in fields.items():
            dotted = _join(prefix, name)
            if key.kind == "section":
                walk(key.fields, dotted)
                continue
            default = "(required)" if key.required else _yaml_value(key.default)
            if key.kind == "choice":
                default += f" (one of {', '.join(key.choices)})"
            rows.append((dotted, default, key.doc))
            if key.kind == "list_rule":
                for sub, subkey in key.fields.items():
                    sub_default = "(required)" if subkey.required else _yaml_value(subkey.default)
                    rows.append((f"{dotted}[].{sub}", sub_default, subkey.doc))

    walk(SCHEMA, "")
    return rows


def render_reference() -> str:
    out = ["| key | default | meaning |", "|---|---|---|"]
    for dotted, default, doc in reference_rows():
        out.append(f"| `{dotted}` | `{default}` | {doc} |")
    return "\n".join(out) + "\n"
