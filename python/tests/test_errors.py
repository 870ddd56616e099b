"""Errors: the class for each Rust error, its message (the Rust ``Display``), attributes."""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest

import clockbound_shm as cb
from clockbound_shm.testing import SegmentWriter

# The layout 2 header, native endian: magic (two u32), segsize u32, version u16,
# generation u16; then the 64-byte payload.
MAGIC = (0x414D5A4E, 0x43420200)


def header(version: int, generation: int, segsize: int = 80) -> bytes:
    return struct.pack("=IIIHH", *MAGIC, segsize, version, generation)


def open_clock(path: Path) -> cb.Clock:
    return cb.Clock(path, disruption_check=False)


def test_hierarchy() -> None:
    for cls in (
        cb.ClockBoundIOError,
        cb.SegmentNotInitializedError,
        cb.SegmentMalformedError,
        cb.VersionNotSupportedError,
        cb.LayoutNotSupportedError,
        cb.CausalityBreachError,
        cb.ClockNotTrustedError,
        cb.WaitTimeoutError,
        cb.VMClockError,
    ):
        assert issubclass(cls, cb.ClockBoundError)
        assert cls.__module__ == "clockbound_shm"
    assert issubclass(cb.ClockBoundIOError, OSError)
    assert issubclass(cb.WaitTimeoutError, TimeoutError)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nonexistent" / "shm0"
    with pytest.raises(cb.ClockBoundIOError) as info:
        open_clock(path)
    e = info.value
    assert isinstance(e, OSError) and isinstance(e, cb.ClockBoundError)
    # The Rust message exactly, not OSError's "[Errno 2] ..." form.
    assert str(e) == f"cannot open ClockBound segment {path}"
    assert e.errno == errno.ENOENT
    assert e.transient is True
    assert e.path == str(path)
    assert isinstance(e.__cause__, FileNotFoundError)


def test_missing_default_segments_raise_for_shm0() -> None:
    if Path(cb.CLOCKBOUND_SHM0_PATH).exists() or Path(cb.CLOCKBOUND_SHM1_PATH).exists():
        pytest.skip("a ClockBound daemon's segment exists on this machine")
    with pytest.raises(cb.ClockBoundIOError) as info:
        cb.Clock()
    assert str(info.value) == f"cannot open ClockBound segment {cb.CLOCKBOUND_SHM0_PATH}"


def test_garbage_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "shm0"
    path.write_bytes(b"\xff" * 80)
    with pytest.raises(cb.SegmentMalformedError) as info:
        open_clock(path)
    e = info.value
    assert str(e) == (
        f"malformed ClockBound segment {path}: magic is 0xffffffff 0xffffffff, expected "
        "0x414d5a4e 0x43420200 (not a ClockBound segment)"
    )
    assert e.errno == errno.EPROTO and e.transient is False and e.path == str(path)


def test_bad_segsize_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "shm0"
    path.write_bytes(header(2, 2, segsize=8) + bytes(64))
    with pytest.raises(cb.SegmentMalformedError, match=f"^malformed ClockBound segment {path}: "):
        open_clock(path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty (is the daemon starting?)"),
        (bytes(8), "the file holds 8 bytes, less than a header (is the daemon starting?)"),
        (header(2, 0) + bytes(64), "generation is 0 (no snapshot was ever written)"),
    ],
    ids=["empty", "short", "never-written"],
)
def test_not_initialized(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "shm0"
    path.write_bytes(content)
    with pytest.raises(cb.SegmentNotInitializedError) as info:
        open_clock(path)
    assert str(info.value) == f"ClockBound segment {path} is not initialized: {reason}"
    assert info.value.transient is True and info.value.errno == errno.EPROTO


def test_version_not_supported(tmp_path: Path) -> None:
    path = tmp_path / "shm0"
    path.write_bytes(header(9, 2) + bytes(64))
    with pytest.raises(cb.VersionNotSupportedError) as info:
        open_clock(path)
    assert str(info.value) == (
        f"ClockBound segment {path} has layout version 9; this crate reads version 2"
    )
    assert info.value.transient is False


def test_causality_breach(tmp_path: Path, layout: int) -> None:
    path = tmp_path / "shm"
    writer = SegmentWriter(path, layout=layout)
    writer.write(1)
    clock = open_clock(path)
    writer.write(1, age=-5)  # a snapshot from the future
    with pytest.raises(cb.CausalityBreachError) as info:
        clock.now()
    clock_name = "the CPU counter" if layout == 3 else "CLOCK_MONOTONIC_COARSE"
    assert str(info.value).startswith(f"causality breach: {clock_name} reads ")
    assert str(info.value).endswith("by more than the 1 µs blur allowed")
    assert info.value.transient is False and info.value.path is None


def test_vmclock_missing(tmp_path: Path) -> None:
    path = tmp_path / "shm0"
    SegmentWriter(path).write(1, disruption_support=True)
    vmclock = tmp_path / "vmclock0"
    with pytest.raises(cb.ClockBoundIOError) as info:
        cb.Clock(path, vmclock_path=vmclock)
    assert str(info.value).startswith(f"cannot open VMClock page {vmclock} (")
    assert info.value.errno == errno.ENOENT and info.value.path == str(vmclock)
    # Without the check the same segment opens.
    assert cb.Clock(path, disruption_check=False).now().status is cb.ClockStatus.SYNCHRONIZED

