"""The README's Guarantees name tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_test_the_guarantees_name_exists():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Guarantees") : readme.index("### Files written by others")]
    rows = [line for line in section.splitlines() if line.startswith("| **")]
    assert len(rows) >= 10
    for row in rows:
        files = re.findall(r"`(tests/[\w/]+\.py)", row)
        assert files, f"a guarantee names no test: {row[:60]}"
        for name in files:
            assert (REPO / name).is_file(), name
        current = None
        for match in re.finditer(r"`(tests/[\w/]+\.py)?(?:::|`, `::)?(test_\w+)?", row):
            if match.group(1):
                current = match.group(1)
            if match.group(2) and current:
                assert f"def {match.group(2)}(" in (REPO / current).read_text(), match.group(2)
