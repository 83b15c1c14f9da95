"""Loading config.yaml: validation against the schema, and the Config object.

Loading walks the YAML node tree, so every error names the file, the line and
the dotted key, and an unknown key gets a did-you-mean. Older approval forms
are migrated first (``migrate``), so errors name the lines the user wrote.
The keys themselves are declared in ``schema``.
"""

from __future__ import annotations

import difflib
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from syft_bg_app.approval.rules import Rule
from syft_bg_app.config.docs import render_sample
from syft_bg_app.config.migrate import Migration, migrate
from syft_bg_app.config.schema import (
    DOMAIN_RE,
    EMAIL_RE,
    HASH_RE,
    PIN_HINT,
    SCHEMA,
    Key,
    copy_default,
    default_tree,
    join_key,
)
from syft_bg_app.errors import ConfigError
from syft_bg_app.store.fsutil import YAML_LOADER

# Callers import these from here too.
__all__ = [
    "EMAIL_RE",
    "HASH_RE",
    "SCHEMA",
    "Config",
    "config_from_values",
    "load_config",
    "parse_config",
    "render_sample",
]


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
            problems.add(key_node, join_key(dotted, key), "appears twice")
            continue
        seen.add(key)
        items.append((key, key_node, value_node))
    return items


def _check_fields(
    node: yaml.Node, fields: dict[str, Key], dotted: str, problems: _Problems
) -> dict[str, Any]:
    out = default_tree(fields)
    if isinstance(node, yaml.ScalarNode) and _scalar(node) is None:
        node = yaml.MappingNode("tag:yaml.org,2002:map", [], node.start_mark, node.end_mark)
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, dotted, f"must be a mapping of keys, got {_describe(node)}")
        return out
    present = set()
    for name, key_node, value_node in _mapping_items(node, dotted, problems):
        here = join_key(dotted, name)
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
            problems.add(node if node.value else None, join_key(dotted, name), "is required")
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
        return copy_default(spec.default)
    value = _scalar(node)
    if value is None and not spec.required:
        return copy_default(spec.default)
    checker = _SCALAR_CHECKS[kind]
    ok, result, message = checker(value, spec)
    if not ok:
        problems.add(node, dotted, message)
        return copy_default(spec.default)
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


def _check_url(value: Any, spec: Key) -> tuple[bool, Any, str]:
    from urllib.parse import urlsplit

    if not isinstance(value, str):
        return False, None, f"must be an http(s) URL, got {type(value).__name__} {value!r}"
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False, None, f"must be an http(s) URL, got {value!r}"
    if parts.username or parts.password:
        # Jobs see this URL: a password in it would reach every job.
        return False, None, "must not hold a user name or password (jobs see it)"
    return True, value.strip(), ""


def _check_email(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, str) and EMAIL_RE.fullmatch(value.strip()):
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


def _check_cidr(value: Any, spec: Key) -> tuple[bool, Any, str]:
    import ipaddress

    if isinstance(value, str):
        try:
            return True, str(ipaddress.ip_network(value.strip(), strict=False)), ""
        except ValueError:
            pass
    return False, None, f"must be a network like 192.168.1.0/24 or fd00::/8, got {value!r}"


def _check_int(value: Any, spec: Key) -> tuple[bool, Any, str]:
    if isinstance(value, bool) or not isinstance(value, int):
        return (
            False,
            None,
            f"must be a whole number, got {type(value).__name__} {value!r}",
        )
    if spec.minimum is not None and value < spec.minimum:
        return False, None, f"must be at least {spec.minimum}, got {value}"
    if spec.maximum is not None and value > spec.maximum:
        return False, None, f"must be at most {spec.maximum}, got {value}"
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
    "url": _check_url,
    "cidr": _check_cidr,
}


def parse_config(text: str, filename: str = "config.yaml") -> Config:
    """Validate config text; raise ConfigError listing every problem."""
    problems = _Problems(filename)
    try:
        root = yaml.compose(text, Loader=YAML_LOADER)
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
    # Older approval forms become canonical first, so validation sees (and its
    # errors name the lines of) what the user wrote.
    migration = migrate(root, filename)
    problems.items.extend(migration.errors)
    try:
        data = _check_fields(root, SCHEMA, "", problems)
    except yaml.MarkedYAMLError as exc:
        # A node the safe loader cannot build (an unknown tag such as '=' or '!!python').
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{filename}{line}: unsupported YAML value: {exc.problem}") from None
    _check_backend(root, data, problems)
    if problems.items:
        raise ConfigError("\n".join(problems.items))
    warnings = migration.warnings + _review_rules(
        root, data["approve"]["auto_approvals"], filename, migration
    )
    return Config(data=data, path=Path(filename), warnings=warnings)


def _node_at(root: yaml.Node, dotted: str) -> yaml.Node | None:
    """The YAML node of ``dotted`` (the deepest one written), for an error's line."""
    node = root
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        child = next(
            (value for key, value in node.value if getattr(key, "value", None) == part), None
        )
        if child is None:
            break
        node = child
    return node


def _check_backend(root: yaml.Node, data: dict[str, Any], problems: _Problems) -> None:
    """Keys that depend on execute.backend."""
    slurm = data["execute"]["slurm"]
    if data["execute"]["backend"] == "slurm" and not slurm["run_folder"]:
        problems.add(
            _node_at(root, "execute.backend"),
            "execute.slurm.run_folder",
            "is required with execute.backend: slurm",
        )
    from syft_bg_app.execution.backends.slurm import sbatch_option_problem

    for index, option in enumerate(slurm["sbatch_options"]):
        problem = sbatch_option_problem(option)
        if problem:
            dotted = f"execute.slurm.sbatch_options[{index}]"
            options = _node_at(root, "execute.slurm.sbatch_options")
            if isinstance(options, yaml.SequenceNode) and index < len(options.value):
                options = options.value[index]
            problems.add(options, dotted, problem)


def _review_rules(
    root: yaml.Node, rules: list[dict], filename: str, migration: Migration
) -> list[str]:
    """Warnings for validated canonical rules that can approve nothing."""
    nodes = _rule_nodes(root)
    warnings = []
    seen: dict[str, int] = {}
    for i, data in enumerate(rules):
        node = nodes[i] if i < len(nodes) else None
        if node is not None and any(node is m for m in migration.migrated_rules):
            continue
        rule = Rule.from_dict(data)
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        where = f"{filename}{line}: approve.auto_approvals[{i}]"
        if rule.name in seen:
            warnings.append(
                f"{where}: another rule is also named '{rule.name}' (rule {seen[rule.name]}); "
                "commands that take -n cannot tell them apart"
            )
        seen.setdefault(rule.name, i)
        reason = rule.inert_reason()
        if reason and rule.enabled:
            hint = (
                "pin it with: " + PIN_HINT.format(name=shlex.quote(rule.name))
                if "run.sh" in reason
                else "fix it in config.yaml"
            )
            warnings.append(f"{where}: rule '{rule.name}' approves nothing: {reason}; {hint}")
    return warnings


def _rule_nodes(root: yaml.Node) -> list[yaml.Node]:
    """The nodes of approve.auto_approvals[], for the lines of warnings about them."""
    node: yaml.Node | None = root
    for name in ("approve", "auto_approvals"):
        pairs = node.value if isinstance(node, yaml.MappingNode) else []
        node = next(
            (
                value
                for key, value in pairs
                if isinstance(key, yaml.ScalarNode) and key.value == name
            ),
            None,
        )
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


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
