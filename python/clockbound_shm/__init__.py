"""Error-bounded time from the AWS ClockBound daemon's shared memory.

The ClockBound daemon keeps shared-memory segments up to date with how far the clock may be
from true time. ``Clock`` reads them (through the Rust crate ``clockbound-shm``) and gives a
``TimeWindow`` ``[earliest, latest]`` that contains true time::

    import clockbound_shm

    clock = clockbound_shm.Clock()          # shm1 (ClockBound 3.x) if synchronised, else shm0
    window = clock.now()
    if window.status.is_trusted:
        print(window.earliest, window.latest, window.bound_ns)

One ``Clock`` serves every thread of the process (no lock on ``now()``); the waiting calls
(``wait_until_after``, ``wait_for_sync``) release the GIL. Errors are ``ClockBoundError``
subclasses whose messages are the Rust crate's.
"""

from ._native import (
    CLOCKBOUND_SHM0_PATH,
    CLOCKBOUND_SHM1_PATH,
    VMCLOCK_PATH,
    Clock,
    TimeWindow,
)
from ._types import (
    CausalityBreachError,
    ClockBoundError,
    ClockBoundIOError,
    ClockNotTrustedError,
    ClockStatus,
    LayoutNotSupportedError,
    SegmentMalformedError,
    SegmentNotInitializedError,
    VersionNotSupportedError,
    VMClockError,
    WaitTimeoutError,
)

#: ``Clock.wait_for_sync``: wait at start-up until the daemon is synchronised.
wait_for_sync = Clock.wait_for_sync

__version__ = "0.1.0"

__all__ = [
    "CLOCKBOUND_SHM0_PATH",
    "CLOCKBOUND_SHM1_PATH",
    "VMCLOCK_PATH",
    "CausalityBreachError",
    "Clock",
    "ClockBoundError",
    "ClockBoundIOError",
    "ClockNotTrustedError",
    "ClockStatus",
    "LayoutNotSupportedError",
    "SegmentMalformedError",
    "SegmentNotInitializedError",
    "TimeWindow",
    "VMClockError",
    "VersionNotSupportedError",
    "WaitTimeoutError",
    "wait_for_sync",
]
