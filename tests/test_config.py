"""Configuration: validated on load, every problem named by file, line and key."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from syft_bg_app.config.docs import (
    EXAMPLE_EMAIL,
    EXAMPLE_ROOT,
    README_END,
    README_START,
    reference_rows,
    render_reference,
    render_sample,
)
from syft_bg_app.config.load import parse_config
from syft_bg_app.config.schema import SCHEMA
from syft_bg_app.errors import ConfigError

CORPUS = sorted((Path(__file__).parent / "corpus" / "configs").glob("*.yaml"))
README = Path(__file__).resolve().parent.parent / "README.md"


def _expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: '"
    return first[len("# expect: ") :]


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 10


@pytest.mark.parametrize("case", CORPUS, ids=lambda p: p.stem)
def test_malformed_config_exits_2_naming_file_line_and_key_and_changes_nothing(bare_app, case):
    bare_app.home.root.mkdir(parents=True)
    bare_app.home.config_file.write_bytes(case.read_bytes())
    datasite = bare_app.root / "owner@datasite.org"
    datasite.mkdir(parents=True)
    before = sorted(p.name for p in bare_app.home.root.iterdir())

    result = bare_app.cli("run", "--once")

    assert result.returncode == 2, result.stderr
    # " ... " in an expectation stands for words that differ between YAML parsers (or the
    # path of the program in a suggested command).
    for part in _expected(case).split(" ... "):
        assert part in result.stderr
    assert str(bare_app.home.config_file) in result.stderr
    assert sorted(p.name for p in bare_app.home.root.iterdir()) == before
    assert list(datasite.iterdir()) == []


def test_every_problem_is_reported_at_once():
    text = "do_email: nobody\nexecute:\n  timeout: -1\n  colour: red\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "c.yaml")
    lines = str(err.value).splitlines()
    assert lines[:2] == [
        "c.yaml:1: do_email: must be an email address like name@example.org, got 'nobody'",
        "c.yaml:3: execute.timeout: must be at least 1, got -1",
    ]
    assert lines[2].startswith("c.yaml:4: execute.colour: unknown key (allowed: enabled, timeout,")


def test_defaults_fill_every_key_not_given():
    config = parse_config("do_email: Owner@Datasite.org\n")
    assert config.do_email == "owner@datasite.org"
    assert config.get("execute.timeout") == 600
    assert config.get("notify.transport") == "outbox"
    assert config.get("approve.peers.approved_domains") == []
    assert config.get("sync.incomplete_grace") == 900


def test_the_sample_written_by_init_is_valid_and_names_every_key():
    text = render_sample("owner@datasite.org", "/data/SyftBox")
    config = parse_config(text)
    assert config.get("syftbox_root") == "/data/SyftBox"
    loaded = yaml.safe_load(text)
    for section, key in SCHEMA.items():
        assert section in loaded
        if key.kind == "section":
            assert set(loaded[section]) == set(key.fields)


def test_the_readme_table_and_the_example_config_match_the_schema():
    """Regenerate both with: .venv/bin/python -m syft_bg_app.config.docs"""
    readme = README.read_text()
    start = readme.index(README_START) + len(README_START) + 1
    assert readme[start : readme.index(README_END)] == render_reference()
    example = (README.parent / "examples" / "config.yaml").read_text()
    assert example == render_sample(EXAMPLE_EMAIL, EXAMPLE_ROOT)
    for dotted, default, _doc in reference_rows():
        assert f"`{dotted}` | `{default}`" in readme


def _modules_after_import(module: str) -> list[str]:
    probe = (
        f"import sys; import {module}; "
        "print(sorted(m for m in sys.modules if m.startswith('syft_bg_app') or m == 'yaml'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return ast.literal_eval(result.stdout.strip())


def test_the_schema_is_a_leaf_that_imports_nothing_of_the_app():
    loaded = _modules_after_import("syft_bg_app.config.schema")

    assert loaded == ["syft_bg_app", "syft_bg_app.config", "syft_bg_app.config.schema"]


def test_the_rules_load_without_the_config_loader():
    # config.load -> migrate -> rules -> config.load was a cycle; rules need only the schema.
    loaded = _modules_after_import("syft_bg_app.approval.rules")

    assert "syft_bg_app.config.load" not in loaded
    assert "syft_bg_app.config.migrate" not in loaded
