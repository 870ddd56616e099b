"""One Clock shared by many Python threads while a writer keeps updating the segment."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import List

import pytest

import clockbound_shm as cb
from clockbound_shm.testing import SegmentWriter

THREADS = 16
# Each reader reads for this long, in batches, yielding the GIL between them: a fixed
# number of calls would finish within one GIL slice, before any update.
READ_FOR = 0.3
BATCH = 200


@pytest.mark.parametrize("strategy", ["thread_local", "arc_swap"])
def test_threads_share_one_clock(
    writer: SegmentWriter, segment_path: Path, strategy: str
) -> None:
    clock = cb.Clock(segment_path, disruption_check=False, strategy=strategy)
    stop = threading.Event()
    updates = 0

    def daemon() -> None:
        nonlocal updates
        bound = 10_000
        while not stop.is_set():
            bound = 10_000 + (bound + 7_919) % 90_000
            writer.write(cb.ClockStatus.SYNCHRONIZED, bound_ns=bound)
            updates += 1
            time.sleep(0.0005)

    failures: List[str] = []
    calls = [0] * THREADS
    seen_bounds: List[set] = [set() for _ in range(THREADS)]

    def reader(index: int) -> None:
        deadline = time.monotonic() + READ_FOR
        try:
            while time.monotonic() < deadline:
                time.sleep(0)
                for _ in range(BATCH):
                    before = time.time_ns()
                    w = clock.now()
                    after = time.time_ns()
                    if w.status is not cb.ClockStatus.SYNCHRONIZED:
                        failures.append(f"status {w.status!r}")
                    elif not (w.earliest_ns <= w.latest_ns):
                        failures.append(f"inverted window {w!r}")
                    elif not (10_000 <= w.bound_ns < 101_000):
                        failures.append(f"bound {w.bound_ns} was never written")
                    elif not (w.earliest_ns <= after and w.latest_ns >= before):
                        failures.append(f"window {w!r} misses [{before}, {after}]")
                    seen_bounds[index].add(w.bound_ns // 1_000)
                    calls[index] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(repr(e))

    writer_thread = threading.Thread(target=daemon)
    writer_thread.start()
    readers = [threading.Thread(target=reader, args=(i,)) for i in range(THREADS)]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    stop.set()
    writer_thread.join()
    assert failures == [], failures[:5]
    assert updates > 10 and min(calls) > 0
    # Readers saw the updates, not one frozen snapshot.
    assert sum(len(s) > 1 for s in seen_bounds) >= THREADS // 2
