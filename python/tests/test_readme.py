"""The README's Python snippets run as written (except those that need a daemon)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent.parent
# The package's README and the crate's.
READMES = [HERE / "README.md", HERE.parent / "README.md"]
NEEDS_DAEMON = "# requires a running ClockBound daemon"


def snippets() -> list:
    blocks = []
    for readme in READMES:
        found = re.findall(r"^```python\n(.*?)^```", readme.read_text(), re.S | re.M)
        assert found, f"no ```python block in {readme}"
        blocks += found
    return blocks


@pytest.mark.parametrize("code", snippets())
def test_readme_snippet(code: str) -> None:
    if code.startswith(NEEDS_DAEMON):
        compile(code, "README.md", "exec")  # at least it parses
        pytest.skip("needs a running ClockBound daemon")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
