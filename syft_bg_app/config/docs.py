"""Documentation generated from the schema: the README's key table, the sample config.

``init`` writes ``render_sample``; the README table between the
config-reference markers and ``examples/config.yaml`` are regenerated with
``.venv/bin/python -m syft_bg_app.config.docs`` (a test checks they match).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from syft_bg_app.config.schema import SCHEMA, Key, join_key


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

    def row(dotted: str, key: Key) -> None:
        default = "(required)" if key.required else _yaml_value(key.default)
        doc = key.doc + (f" One of: {', '.join(key.choices)}." if key.choices else "")
        rows.append((dotted, default, doc))

    def walk(fields: dict[str, Key], prefix: str) -> None:
        for name, key in fields.items():
            dotted = join_key(prefix, name)
            if key.kind == "section":
                walk(key.fields, dotted)
                continue
            row(dotted, key)
            if key.kind == "list_rule":
                for sub, subkey in key.fields.items():
                    row(f"{dotted}[].{sub}", subkey)

    walk(SCHEMA, "")
    return rows


def render_reference() -> str:
    """The README's configuration table (kept identical by a test)."""
    out = ["| key | default | meaning |", "|---|---|---|"]
    for dotted, default, doc in reference_rows():
        doc = doc.replace("<", "&lt;").replace(">", "&gt;")
        out.append(f"| `{dotted}` | `{default}` | {doc} |")
    return "\n".join(out) + "\n"


README_START = (
    "<!-- config-reference:start (generated: .venv/bin/python -m syft_bg_app.config.docs) -->"
)
README_END = "<!-- config-reference:end -->"
EXAMPLE_EMAIL, EXAMPLE_ROOT = "you@example.org", "~/SyftBox"


def write_docs(repo: Path) -> None:
    """Regenerate the README's key table and examples/config.yaml from the schema."""
    readme = repo / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, _, rest = text.partition(README_START + "\n")
    _, _, tail = rest.partition(README_END)
    readme.write_text(f"{head}{README_START}\n{render_reference()}{README_END}{tail}")
    (repo / "examples" / "config.yaml").write_text(render_sample(EXAMPLE_EMAIL, EXAMPLE_ROOT))


if __name__ == "__main__":
    write_docs(Path(__file__).resolve().parents[2])
