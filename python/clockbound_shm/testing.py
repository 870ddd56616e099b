"""Writing ClockBound segments without a daemon: for tests and simulations.

``SegmentWriter`` is the Rust crate's writer (``ShmWriter`` / ``ShmWriterV3``): it writes a
segment exactly as the daemon does, so a ``Clock`` (in this or any other process) reads it
as it would read the daemon's::

    from clockbound_shm import Clock, ClockStatus
    from clockbound_shm.testing import SegmentWriter

    writer = SegmentWriter("/tmp/cb/shm0")              # layout 2; layout=3 for shm1
    writer.write(ClockStatus.SYNCHRONIZED, bound_ns=20_000)
    clock = Clock("/tmp/cb/shm0", disruption_check=False)
"""

from ._native import SegmentWriter, counter_hz

__all__ = ["SegmentWriter", "counter_hz"]
