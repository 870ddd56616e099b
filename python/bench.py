"""One benchmark line: nanoseconds per ``Clock.now()`` call from Python, next to
``time.time_ns()`` measured in the same run.

    python bench.py              # against segments written here (layout 2 and 3)
    python bench.py PATH         # against a daemon's segment, e.g. /var/run/clockbound/shm0

Short on purpose (well under a second): a smoke number, not a benchmark suite.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Callable

# Run as a script from the source tree, this directory comes first on sys.path and its
# `clockbound_shm/` (without the compiled `_native`) would shadow the installed package.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import clockbound_shm as cb  # noqa: E402
from clockbound_shm.testing import SegmentWriter  # noqa: E402

CALLS = 100_000
REPEATS = 3


def ns_per_call(fn: Callable[[], object]) -> float:
    """Best of REPEATS runs of CALLS calls (the loop's own cost included)."""
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for _ in range(CALLS):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / CALLS)
    return best


def line(clock: cb.Clock) -> str:
    clock.now()  # the first call of a thread sets up its reader
    now_ns = ns_per_call(clock.now)
    time_ns = ns_per_call(time.time_ns)
    return (
        f"bench: Clock.now() {now_ns:.0f} ns/call (layout {clock.layout}, {clock.strategy}), "
        f"time.time_ns() {time_ns:.0f} ns/call, Python {sys.version.split()[0]}"
    )


def main() -> None:
    if len(sys.argv) > 1:
        print(line(cb.Clock(sys.argv[1])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for layout in (2, 3):
            path = os.path.join(tmp, f"shm-layout{layout}")
            try:
                SegmentWriter(path, layout=layout).write(cb.ClockStatus.SYNCHRONIZED)
            except RuntimeError as e:  # layout 3 without a readable CPU counter
                print(f"bench: layout {layout} skipped: {e}")
                continue
            print(line(cb.Clock(path, disruption_check=False)))


if __name__ == "__main__":
    main()
