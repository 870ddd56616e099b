"""The status enum and the exception hierarchy of ``clockbound_shm``.

Plain Python so that they are ordinary ``enum.IntEnum`` and exception classes (with
``OSError`` / ``TimeoutError`` as extra bases); the native module raises them.
"""

from __future__ import annotations

import enum
from typing import Optional

__all__ = [
    "CausalityBreachError",
    "ClockBoundError",
    "ClockBoundIOError",
    "ClockNotTrustedError",
    "ClockStatus",
    "LayoutNotSupportedError",
    "SegmentMalformedError",
    "SegmentNotInitializedError",
    "VMClockError",
    "VersionNotSupportedError",
    "WaitTimeoutError",
]


class ClockStatus(enum.IntEnum):
    """The clock's state as the daemon reports it, possibly degraded by the snapshot's age.

    The values are the segment's wire values (the Rust ``ClockStatus``).
    """

    #: Nothing is known about the clock: do not trust the window. Also what a snapshot
    #: degrades to once its ``void_after`` has passed.
    UNKNOWN = 0
    #: The daemon tracks a time source; the window is as tight as it gets.
    SYNCHRONIZED = 1
    #: No recent synchronisation (or the daemon stopped updating), but the bound grows with
    #: the worst-case drift, so the window still holds.
    FREE_RUNNING = 2
    #: The clock was disrupted (live migration, snapshot restore): do not trust the window.
    DISRUPTED = 3

    @property
    def is_trusted(self) -> bool:
        """Whether a window with this status can be relied on (SYNCHRONIZED, FREE_RUNNING)."""
        return self in (ClockStatus.SYNCHRONIZED, ClockStatus.FREE_RUNNING)


class ClockBoundError(Exception):
    """Base class of every error raised by reading a ClockBound segment.

    ``str(error)`` is the Rust crate's message. Attributes (set on every instance the
    library raises):

    - ``errno``: an OS errno, as the ClockBound client reports it: the failed system call's
      for I/O errors, ``ETIMEDOUT`` for timeouts, ``EPROTO`` for content errors.
    - ``transient``: whether waiting can clear it (the daemon is starting, ...).
    - ``path``: the file concerned, or ``None``.
    """

    errno: Optional[int]
    transient: bool
    path: Optional[str]

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.errno = None
        self.transient = False
        self.path = None


class ClockBoundIOError(ClockBoundError, OSError):
    """A system call on the segment (or the VMClock device) failed: open, stat, map.

    Also an ``OSError``; ``errno`` is the call's errno (``errno.ENOENT`` when the daemon
    has not created the segment), and ``__cause__`` the ``OSError`` Python would raise.
    """


class SegmentNotInitializedError(ClockBoundError):
    """The segment exists but holds no snapshot yet: the daemon is starting. Transient."""


class SegmentMalformedError(ClockBoundError):
    """The file is not a valid ClockBound segment (or a snapshot in it is invalid)."""


class VersionNotSupportedError(ClockBoundError):
    """The segment's layout version is not one this library reads."""


class LayoutNotSupportedError(ClockBoundError):
    """The segment's layout cannot be read on this CPU (layout 3 needs x86-64 or aarch64)."""


class CausalityBreachError(ClockBoundError):
    """The clock reads earlier than the snapshot: the snapshot is from another clock."""


class ClockNotTrustedError(ClockBoundError):
    """The status (``status`` attribute) does not allow trusting the window, where the call
    needs a trusted one: while commit-waiting, or with ``require_trusted=True``."""

    status: ClockStatus


class WaitTimeoutError(ClockBoundError, TimeoutError):
    """A wait ran out of time. Also a ``TimeoutError``. ``last_error`` (also
    ``__cause__``) is the last attempt's error, or ``None``."""

    last_error: Optional[ClockBoundError]


class VMClockError(ClockBoundError):
    """The VMClock page is malformed, or stuck in the middle of an update."""


# Shown (in tracebacks and reprs) where users import them from.
for _cls in (ClockStatus, *(globals()[_name] for _name in __all__ if _name != "ClockStatus")):
    _cls.__module__ = "clockbound_shm"
del _cls
