"""Shared fixtures: segments written by the Rust crate's writer in a temporary directory."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from clockbound_shm.testing import SegmentWriter

# Layout 3 needs the CPU counter, which the crate reads on x86-64 and aarch64 only.
COUNTER_CPU = platform.machine() in ("x86_64", "AMD64", "aarch64", "arm64")


@pytest.fixture(
    params=[
        2,
        pytest.param(3, marks=pytest.mark.skipif(not COUNTER_CPU, reason="no CPU counter")),
    ],
    ids=["layout2", "layout3"],
)
def layout(request: pytest.FixtureRequest) -> int:
    """Each test that takes it runs once per layout."""
    return request.param


@pytest.fixture
def segment_path(tmp_path: Path, layout: int) -> Path:
    """Where the segment of the layout under test lives (not created yet)."""
    return tmp_path / "clockbound" / ("shm1" if layout == 3 else "shm0")


@pytest.fixture
def writer(segment_path: Path, layout: int) -> SegmentWriter:
    """A writer of the layout under test, with one Synchronized snapshot published."""
    w = SegmentWriter(segment_path, layout=layout)
    w.write(1, bound_ns=20_000)
    return w
