"""Property tests: any config text or job metadata either parses or raises the
app's own error with a message; nothing else escapes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syft_bg_app.config.load import SCHEMA, parse_config
from syft_bg_app.datasite.submission import check_submission
from syft_bg_app.errors import ConfigError

KEYS = list(SCHEMA) + [f"{s}.{k}" for s, key in SCHEMA.items() for k in key.fields]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10_000),
    st.text(max_size=30),
    st.sampled_from(["outbox", "smtp", "auto", "owner@datasite.org", "sha256:" + "a" * 64]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS + ["name", "files", "peers"]), inner, max_size=4),
    ),
    max_leaves=12,
)
DOCUMENTS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6)


def _parse(text: str) -> None:
    try:
        parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml")
        assert len(str(exc)) > len("fuzz.yaml: ")


@settings(max_examples=300, deadline=None)
@given(DOCUMENTS)
def test_any_structured_config_parses_or_raises_a_config_error(document):
    _parse(yaml.safe_dump(document))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_config_text_parses_or_raises_a_config_error(text):
    _parse(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), DOCUMENTS.map(lambda d: yaml.safe_dump(d).encode())))
def test_any_job_metadata_gives_a_verdict_with_reasons(raw):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "code").mkdir()
        (folder / "run.sh").write_text("echo hi\n")
        (folder / "config.yaml").write_bytes(raw)
        check = check_submission(folder, max_bytes=10_000)
        assert check.complete or check.reason()
