"""The README's Python snippets run as written (except those that need a daemon)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
NEEDS_DAEMON = "# requires a running ClockBound daemon"


def snippets() -> list:
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)
    assert blocks, "no ```python block in the README"
    return blocks


@pytest.mark.parametrize("code", snippets())
def test_readme_snippet(code: str) -> None:
    if code.startswith(NEEDS_DAEMON):
        compile(code, "README.md", "exec")  # at least it parses
        pytest.skip("needs a running ClockBound daemon")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
