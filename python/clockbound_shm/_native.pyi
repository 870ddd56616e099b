# Type stubs for the Rust extension module `clockbound_shm._native` (src/*.rs).
from __future__ import annotations

import datetime
import os
import pathlib
from typing import Dict, Optional, Union, final

from ._types import ClockStatus

_Instant = Union[int, datetime.datetime]
_Seconds = Union[int, float, datetime.timedelta]
_StrPath = Union[str, os.PathLike[str]]

__all__ = [
    "CLOCKBOUND_SHM0_PATH",
    "CLOCKBOUND_SHM1_PATH",
    "VMCLOCK_PATH",
    "Clock",
    "SegmentWriter",
    "TimeWindow",
    "counter_hz",
]

CLOCKBOUND_SHM0_PATH: str
CLOCKBOUND_SHM1_PATH: str
VMCLOCK_PATH: str

@final
class TimeWindow:
    def __new__(cls, earliest_ns: int, latest_ns: int, status: int) -> TimeWindow: ...
    @property
    def earliest_ns(self) -> int: ...
    @property
    def latest_ns(self) -> int: ...
    @property
    def earliest(self) -> datetime.datetime: ...
    @property
    def latest(self) -> datetime.datetime: ...
    @property
    def status(self) -> ClockStatus: ...
    @property
    def is_trusted(self) -> bool: ...
    @property
    def bound_ns(self) -> int: ...
    @property
    def midpoint_ns(self) -> int: ...
    @property
    def midpoint(self) -> datetime.datetime: ...
    def after(self, t: _Instant) -> bool: ...
    def before(self, t: _Instant) -> bool: ...
    def __contains__(self, t: _Instant, /) -> bool: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Clock:
    def __new__(
        cls,
        path: Optional[_StrPath] = None,
        *,
        strategy: str = "thread_local",
        disruption_check: bool = True,
        vmclock_path: Optional[_StrPath] = None,
        require_trusted: bool = False,
        recheck_interval: Optional[_Seconds] = None,
        free_running_grace: Optional[_Seconds] = None,
        sigbus_guard: bool = True,
    ) -> Clock: ...
    @classmethod
    def wait_for_sync(
        cls,
        timeout: _Seconds,
        path: Optional[_StrPath] = None,
        *,
        strategy: str = "thread_local",
        disruption_check: bool = True,
        vmclock_path: Optional[_StrPath] = None,
        require_trusted: bool = False,
        recheck_interval: Optional[_Seconds] = None,
        free_running_grace: Optional[_Seconds] = None,
        sigbus_guard: bool = True,
    ) -> Clock: ...
    def now(self) -> TimeWindow: ...
    def after(self, t: _Instant) -> bool: ...
    def before(self, t: _Instant) -> bool: ...
    def wait_until_after(self, t: _Instant, timeout: _Seconds) -> TimeWindow: ...
    def stats(self) -> Dict[str, int]: ...
    @property
    def path(self) -> pathlib.Path: ...
    @property
    def layout(self) -> int: ...
    @property
    def strategy(self) -> str: ...

@final
class SegmentWriter:
    def __new__(cls, path: _StrPath, layout: int = 2) -> SegmentWriter: ...
    def write(
        self,
        status: int = 1,
        *,
        bound_ns: int = 10_000,
        max_drift_ppb: int = 1_000,
        age: Optional[_Seconds] = None,
        void_after: float = 1000.0,
        disruption_marker: int = 0,
        disruption_support: bool = False,
        counter_hz: Optional[int] = None,
    ) -> None: ...
    def wipe(self) -> None: ...
    def simulate_interrupted_update(self) -> None: ...
    @property
    def generation(self) -> int: ...
    @property
    def path(self) -> pathlib.Path: ...
    @property
    def layout(self) -> int: ...

def counter_hz() -> int: ...
