"""wait_until_after and wait_for_sync: results, timeouts, and the GIL released meanwhile."""

from __future__ import annotations

import _thread
import errno
import re
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

import clockbound_shm as cb
from clockbound_shm.testing import SegmentWriter


def open_clock(path: Path) -> cb.Clock:
    return cb.Clock(path, disruption_check=False)


class Counter:
    """A Python thread that counts as fast as it can: it only advances while this thread
    does not hold the GIL."""

    def __init__(self) -> None:
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.count += 1

    def __enter__(self) -> "Counter":
        self._thread.start()
        while self.count == 0:
            time.sleep(0.001)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def counted_during(call: Callable[[], object]) -> int:
    """How far the counter thread got while `call` ran."""
    with Counter() as counter:
        start = counter.count
        try:
            call()
        except cb.ClockBoundError:
            pass
        return counter.count - start


@pytest.fixture(autouse=True)
def fast_switching() -> Iterator[None]:
    # Let the counter thread take the GIL quickly whenever it is free.
    import sys

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    yield
    sys.setswitchinterval(old)


def waited_in(message: str, prefix: str) -> float:
    """The seconds a timeout message reports (the Rust format: `250 ms`, `1.5 s`, `2 s`)."""
    match = re.fullmatch(re.escape(prefix) + r" after (?:(\d+) ms|([\d.]+) s)", message)
    assert match, message
    ms, s = match.groups()
    return int(ms) / 1000 if ms is not None else float(s)


def test_wait_until_after(writer: SegmentWriter, segment_path: Path) -> None:
    clock = open_clock(segment_path)
    t = clock.now().latest_ns  # certainly not passed yet
    w = clock.wait_until_after(t, 1.0)
    assert w.earliest_ns > t and w.after(t)
    assert clock.after(t)
    # A datetime works too, and an instant already passed returns at once.
    assert clock.wait_until_after(w.earliest - __import__("datetime").timedelta(seconds=1), 0)


def test_wait_until_after_timeout(writer: SegmentWriter, segment_path: Path) -> None:
    clock = open_clock(segment_path)
    t = clock.now().latest_ns + 10_000_000_000
    start = time.monotonic()
    with pytest.raises(cb.WaitTimeoutError) as info:
        clock.wait_until_after(t, 0.2)
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 1.0
    e = info.value
    assert isinstance(e, TimeoutError)
    assert waited_in(str(e), "gave up waiting for the timestamp to pass") >= 0.2
    assert e.errno == errno.ETIMEDOUT and e.last_error is None


def test_wait_until_after_refuses_untrusted(writer: SegmentWriter, segment_path: Path) -> None:
    clock = open_clock(segment_path)
    writer.write(cb.ClockStatus.DISRUPTED)
    with pytest.raises(cb.ClockNotTrustedError) as info:
        clock.wait_until_after(clock.now().latest_ns + 10**9, 5)
    assert info.value.status is cb.ClockStatus.DISRUPTED


def test_bad_timeouts(writer: SegmentWriter, segment_path: Path) -> None:
    clock = open_clock(segment_path)
    with pytest.raises(ValueError, match="timeout"):
        clock.wait_until_after(0, -1)
    with pytest.raises(ValueError, match="timeout"):
        clock.wait_until_after(0, float("nan"))
    with pytest.raises(TypeError, match="timeout"):
        clock.wait_until_after(0, "1s")


def test_wait_for_sync_timeout(tmp_path: Path, layout: int) -> None:
    path = tmp_path / "shm"
    SegmentWriter(path, layout=layout).write(cb.ClockStatus.UNKNOWN)
    with pytest.raises(cb.WaitTimeoutError) as info:
        cb.wait_for_sync(0.15, path, disruption_check=False)
    message = str(info.value)
    assert waited_in(message, "gave up waiting for a synchronised ClockBound segment") >= 0.15
    assert info.value.last_error is None and info.value.transient is True


def test_wait_for_sync_timeout_keeps_last_error(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "shm0"
    with pytest.raises(cb.WaitTimeoutError) as info:
        cb.Clock.wait_for_sync(0.1, path)
    last = info.value.last_error
    assert isinstance(last, cb.ClockBoundIOError) and last.errno == errno.ENOENT
    assert info.value.__cause__ is last


def test_wait_for_sync_fails_at_once_on_malformed(tmp_path: Path) -> None:
    path = tmp_path / "shm0"
    path.write_bytes(b"\xff" * 80)
    start = time.monotonic()
    with pytest.raises(cb.SegmentMalformedError):
        cb.wait_for_sync(10, path)
    assert time.monotonic() - start < 1


def test_wait_for_sync_success(tmp_path: Path, layout: int) -> None:
    path = tmp_path / "clockbound" / "shm"

    def daemon() -> None:
        time.sleep(0.1)
        writer = SegmentWriter(path, layout=layout)
        writer.write(cb.ClockStatus.UNKNOWN)
        time.sleep(0.1)
        writer.write(cb.ClockStatus.SYNCHRONIZED)

    thread = threading.Thread(target=daemon)
    thread.start()
    start = time.monotonic()
    clock = cb.wait_for_sync(5, path, disruption_check=False, strategy="arc_swap")
    elapsed = time.monotonic() - start
    thread.join()
    assert 0.2 <= elapsed < 2
    assert clock.layout == layout and clock.strategy == "arc_swap"
    assert clock.now().status is cb.ClockStatus.SYNCHRONIZED


def test_waits_release_the_gil(writer: SegmentWriter, segment_path: Path, tmp_path: Path) -> None:
    clock = open_clock(segment_path)
    far = clock.now().latest_ns + 10**10
    during_commit_wait = counted_during(lambda: clock.wait_until_after(far, 0.3))
    during_sync_wait = counted_during(lambda: cb.wait_for_sync(0.3, tmp_path / "absent"))

    # With the GIL held for the whole wait the counter could not move at all; released,
    # it counts freely for 0.3 s (millions of increments on an idle core).
    assert during_commit_wait > 10_000, during_commit_wait
    assert during_sync_wait > 10_000, during_sync_wait


def test_wait_is_interruptible(writer: SegmentWriter, segment_path: Path) -> None:
    clock = open_clock(segment_path)
    far = clock.now().latest_ns + 10**11
    timer = threading.Timer(0.2, _thread.interrupt_main)
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        clock.wait_until_after(far, 30)
    assert time.monotonic() - start < 2
    timer.join()
