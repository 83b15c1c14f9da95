"""Every config key the code reads is declared in the schema.

``Config.get`` raises KeyError on a key the schema does not declare, and only
when that line runs: a misspelled key in a rarely taken branch would crash a
pass in the field. The walk below reads the source of every module of the
package, so such a key fails here instead.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from syft_bg_app.config.schema import find_key
from syft_bg_app.steps import STEPS

PACKAGE = Path(__file__).resolve().parent.parent / "syft_bg_app"
# A receiver that is a Config: ``config``, ``ctx.config``, ``old_config``,
# ``load_config(...)``; ``home.config_file`` is not one.
CONFIG_RECEIVER = re.compile(r"config\b", re.IGNORECASE)


def _literal(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _schema_subscript(node: ast.Subscript, inner: set[int]) -> str | None:
    """``SCHEMA["a"].fields["b"]`` as "a.b"; None for any other subscript.

    The subscripts inside the chain are added to ``inner``: they are prefixes.
    """
    parts: list[str] = []
    current: ast.AST = node
    chain: list[int] = []
    while isinstance(current, ast.Subscript):
        key = _literal(current.slice)
        if key is None:
            return None
        parts.append(key)
        chain.append(id(current))
        current = current.value
        if isinstance(current, ast.Attribute) and current.attr == "fields":
            current = current.value
    if not (isinstance(current, ast.Name) and current.id == "SCHEMA"):
        return None
    inner.update(chain[1:])
    return ".".join(reversed(parts))


def config_keys_read(source: str) -> list[tuple[int, str]]:
    """(line, dotted key) of every key literal the source reads from or writes to config."""
    found: list[tuple[int, str]] = []
    inner: set[int] = set()
    # ast.walk is breadth first: a chain's outermost subscript comes before its parts.
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript):
            if id(node) not in inner:
                dotted = _schema_subscript(node, inner)
                if dotted is not None:
                    found.append((node.lineno, dotted))
            continue
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("get", "step_enabled"):
            key = _literal(node.args[0])
            if key is None or not CONFIG_RECEIVER.search(ast.unparse(func.value)):
                continue
            found.append((node.lineno, f"{key}.enabled" if func.attr == "step_enabled" else key))
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name == "set_values" and len(node.args) > 1 and isinstance(node.args[1], ast.Dict):
            for key_node in node.args[1].keys:
                key = _literal(key_node) if key_node is not None else None
                if key is not None:
                    found.append((node.lineno, key))
    return found


def _all_keys_read() -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for module in sorted(PACKAGE.rglob("*.py")):
        relative = module.relative_to(PACKAGE.parent)
        for line, dotted in config_keys_read(module.read_text(encoding="utf-8")):
            where.setdefault(dotted, []).append(f"{relative}:{line}")
    return where


def test_every_config_key_the_app_reads_is_declared_in_the_schema():
    keys = _all_keys_read()

    unknown = {dotted: places for dotted, places in keys.items() if find_key(dotted) is None}

    assert unknown == {}
    # The walk really sees the package's reads (a walk that finds nothing passes nothing).
    assert {"execute.timeout", "notify.transport", "approve.auto_approvals"} <= set(keys)
    assert {"schedule.interval", "sync.max_job_mb"} <= set(keys)
    assert len(keys) > 40


def test_a_misspelled_key_is_reported_with_its_line():
    source = (
        "def f(ctx, config, home):\n"
        "    ctx.config.get('execute.timout')\n"
        "    config.step_enabled('notfy')\n"
        "    set_values(home.config_file, {'schedule.intervl': 5})\n"
        "    SCHEMA['sync'].fields['max_jobmb'].minimum\n"
        "    load_config(home.config_file).get('approve.peers.approved_domains')\n"
        "    home.config_file.get('not.a.config.read')\n"
        "    {}.get('x.y')\n"
    )

    found = sorted(config_keys_read(source))

    assert found == [
        (2, "execute.timout"),
        (3, "notfy.enabled"),
        (4, "schedule.intervl"),
        (5, "sync.max_jobmb"),
        (6, "approve.peers.approved_domains"),
    ]
    unknown = [dotted for _, dotted in found if find_key(dotted) is None]
    assert unknown == ["execute.timout", "notfy.enabled", "schedule.intervl", "sync.max_jobmb"]


def test_every_step_can_be_switched_off_in_the_schema():
    # start/stop and the pass read "<step>.enabled" with the step's name in a variable.
    assert [step for step in STEPS if find_key(f"{step}.enabled") is None] == []


def test_a_rule_field_is_found_only_under_the_rule_list():
    assert find_key("approve.auto_approvals[].files") is not None
    assert find_key("approve.auto_approvals.files") is None
    assert find_key("execute.timeout.more") is None
    assert find_key("approve.peers") is not None
