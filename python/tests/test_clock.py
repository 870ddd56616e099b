"""Opening, now(), statuses, after/before, the datetime conversions."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

import clockbound_shm as cb
from clockbound_shm.testing import SegmentWriter

UTC = dt.timezone.utc


def open_clock(path: Path, **options: object) -> cb.Clock:
    return cb.Clock(path, disruption_check=False, **options)


def test_open_and_now(writer: SegmentWriter, segment_path: Path, layout: int) -> None:
    clock = open_clock(segment_path)
    assert clock.layout == layout
    assert clock.path == segment_path  # a pathlib.Path
    assert clock.strategy == "thread_local"
    before = time.time_ns()
    w = clock.now()
    after = time.time_ns()
    assert isinstance(w, cb.TimeWindow)
    assert w.status is cb.ClockStatus.SYNCHRONIZED
    assert w.status == 1 and w.is_trusted
    # Fresh snapshot: the bound is what the writer wrote, plus a little drift.
    assert 20_000 <= w.bound_ns < 20_000 + 1_000
    assert w.latest_ns - w.earliest_ns in (2 * w.bound_ns, 2 * w.bound_ns + 1)
    assert w.earliest_ns <= w.midpoint_ns <= w.latest_ns
    # The window was computed between the two reads of the system clock.
    assert w.earliest_ns <= after and w.latest_ns >= before
    assert "ClockStatus.SYNCHRONIZED" in repr(w)


@pytest.mark.parametrize("strategy", ["thread_local", "arc_swap"])
def test_strategies(writer: SegmentWriter, segment_path: Path, strategy: str) -> None:
    clock = open_clock(segment_path, strategy=strategy)
    assert clock.strategy == strategy
    assert clock.now().status is cb.ClockStatus.SYNCHRONIZED
    writer.write(cb.ClockStatus.FREE_RUNNING, bound_ns=50_000)
    w = clock.now()
    assert w.status is cb.ClockStatus.FREE_RUNNING and w.bound_ns >= 50_000


def test_bad_strategy(writer: SegmentWriter, segment_path: Path) -> None:
    with pytest.raises(ValueError, match="strategy must be"):
        open_clock(segment_path, strategy="global_lock")


@pytest.mark.parametrize("status", list(cb.ClockStatus))
def test_every_status(
    writer: SegmentWriter, segment_path: Path, status: cb.ClockStatus
) -> None:
    writer.write(status)
    w = open_clock(segment_path).now()
    assert w.status is status
    assert w.is_trusted == status.is_trusted == (status in (1, 2))


def test_status_degrades_with_age(writer: SegmentWriter, segment_path: Path) -> None:
    clock = open_clock(segment_path)
    writer.write(cb.ClockStatus.SYNCHRONIZED, age=120)  # past the 60 s grace
    assert clock.now().status is cb.ClockStatus.FREE_RUNNING
    writer.write(cb.ClockStatus.SYNCHRONIZED, age=20, void_after=10)  # void
    assert clock.now().status is cb.ClockStatus.UNKNOWN
    grace = open_clock(segment_path, free_running_grace=dt.timedelta(seconds=5))
    writer.write(cb.ClockStatus.SYNCHRONIZED, age=10)
    assert grace.now().status is cb.ClockStatus.FREE_RUNNING
    assert clock.now().status is cb.ClockStatus.SYNCHRONIZED


def test_bound_grows_with_drift(writer: SegmentWriter, segment_path: Path) -> None:
    writer.write(1, bound_ns=10_000, max_drift_ppb=1_000_000, age=2)
    w = open_clock(segment_path).now()
    # 10 µs + 2 s at 1000 ppm = 2010 µs, plus the time since the write.
    assert 2_010_000 <= w.bound_ns < 2_010_000 + 100_000


def test_datetimes_round_outwards(writer: SegmentWriter, segment_path: Path) -> None:
    w = open_clock(segment_path).now()
    for value in (w.earliest, w.latest, w.midpoint):
        assert isinstance(value, dt.datetime) and value.tzinfo is not None
        assert value.utcoffset() == dt.timedelta(0)
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    us = dt.timedelta(microseconds=1)
    earliest_us = (w.earliest - epoch) // us
    latest_us = (w.latest - epoch) // us
    assert earliest_us == w.earliest_ns // 1000  # floor
    assert latest_us == -(-w.latest_ns // 1000)  # ceiling
    assert abs((w.midpoint - epoch) // us * 1000 - w.midpoint_ns) <= 500
    # The datetime window contains the exact one, so it still contains true time.
    assert earliest_us * 1000 <= w.earliest_ns and latest_us * 1000 >= w.latest_ns


def test_rounding_at_exact_values() -> None:
    w = cb.TimeWindow(1_000_001_999, 1_000_002_001, cb.ClockStatus.SYNCHRONIZED)
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    assert w.earliest == epoch + dt.timedelta(seconds=1, microseconds=1)
    assert w.latest == epoch + dt.timedelta(seconds=1, microseconds=3)
    assert w.midpoint == epoch + dt.timedelta(seconds=1, microseconds=2)
    assert w.bound_ns == 1 and w.midpoint_ns == 1_000_002_000
    exact = cb.TimeWindow(-1_000, 2_000, 0)  # before the epoch, whole microseconds
    assert exact.earliest == epoch - dt.timedelta(microseconds=1)
    assert exact.latest == epoch + dt.timedelta(microseconds=2)
    assert exact == cb.TimeWindow(-1_000, 2_000, cb.ClockStatus.UNKNOWN)
    assert len({exact, cb.TimeWindow(-1_000, 2_000, 0)}) == 1
    with pytest.raises(ValueError):
        cb.TimeWindow(2, 1, 0)
    with pytest.raises(ValueError):
        cb.TimeWindow(1, 2, 7)


def test_after_before(writer: SegmentWriter, segment_path: Path) -> None:
    clock = open_clock(segment_path)
    w = clock.now()
    past = w.earliest_ns - 1_000_000_000
    future = w.latest_ns + 1_000_000_000
    assert clock.after(past) and not clock.before(past)
    assert clock.before(future) and not clock.after(future)
    now_dt = dt.datetime.now(UTC)
    assert not clock.after(now_dt + dt.timedelta(seconds=1))
    assert clock.after(now_dt - dt.timedelta(seconds=1))
    assert clock.before(now_dt + dt.timedelta(seconds=1))
    other_zone = dt.timezone(dt.timedelta(hours=-5))
    assert clock.after(now_dt.astimezone(other_zone) - dt.timedelta(seconds=1))
    # The window's own after/before/in, on its fixed bounds.
    assert w.after(w.earliest_ns - 1) and not w.after(w.earliest_ns)
    assert w.before(w.latest_ns + 1) and not w.before(w.latest_ns)
    assert w.earliest_ns in w and w.latest_ns in w and w.latest_ns + 1 not in w
    assert w.after(w.earliest - dt.timedelta(microseconds=1))


def test_after_before_refuse_an_untrusted_clock(
    writer: SegmentWriter, segment_path: Path
) -> None:
    clock = open_clock(segment_path)
    past = clock.now().earliest_ns - 1_000_000_000
    assert clock.after(past)
    for status in (cb.ClockStatus.UNKNOWN, cb.ClockStatus.DISRUPTED):
        writer.write(status)
        for query in (clock.after, clock.before):
            with pytest.raises(cb.ClockNotTrustedError) as info:
                query(past)
            assert info.value.status is status
        assert clock.now().status is status  # the window itself says what it is


def test_nanoseconds_of_datetime_subclasses_are_kept() -> None:
    class NanoDatetime(dt.datetime):  # as pandas.Timestamp carries them
        nanosecond = 999

    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    start_ns = int(start.timestamp()) * 1_000_000_000
    w = cb.TimeWindow(start_ns + 500, start_ns + 2_000, cb.ClockStatus.SYNCHRONIZED)
    t = NanoDatetime(2026, 1, 1, tzinfo=UTC)  # start + 999 ns: inside the window
    assert not w.after(t) and not w.before(t)
    assert w.after(start)


def test_huge_timeouts_mean_forever_not_an_error(
    writer: SegmentWriter, segment_path: Path
) -> None:
    clock = open_clock(segment_path)
    past = clock.now().earliest_ns - 1_000_000_000
    assert clock.wait_until_after(past, timeout=1e30).earliest_ns > past


def test_hand_built_windows_stay_in_range() -> None:
    limit = 2**63 * 1_000_000_000
    with pytest.raises(ValueError, match="64-bit seconds"):
        cb.TimeWindow(2**126, 2**126, 1)
    with pytest.raises(ValueError, match="64-bit seconds"):
        cb.TimeWindow(-limit - 1, 0, 1)
    w = cb.TimeWindow(-limit, limit - 1, 1)
    assert w.bound_ns >= limit - 1 and w.midpoint_ns in (-1, 0)


def test_writer_ages_are_checked(writer: SegmentWriter) -> None:
    for age in (1e20, -1e300, float("nan")):
        with pytest.raises(ValueError, match="age"):
            writer.write(cb.ClockStatus.SYNCHRONIZED, age=age)


def test_instant_arguments_are_checked(writer: SegmentWriter, segment_path: Path) -> None:
    clock = open_clock(segment_path)
    with pytest.raises(ValueError, match="naive datetime"):
        clock.after(dt.datetime.now())
    with pytest.raises(TypeError, match="expected an int"):
        clock.after(time.time())  # a float cannot hold nanoseconds
    with pytest.raises(TypeError):
        clock.before(True)
    with pytest.raises(TypeError):
        clock.before("2026-01-01")


def test_require_trusted(writer: SegmentWriter, segment_path: Path) -> None:
    clock = open_clock(segment_path, require_trusted=True)
    assert clock.now().status is cb.ClockStatus.SYNCHRONIZED
    writer.write(cb.ClockStatus.UNKNOWN)
    with pytest.raises(cb.ClockNotTrustedError) as info:
        clock.now()
    assert info.value.status is cb.ClockStatus.UNKNOWN
    assert info.value.transient is True
    assert str(info.value) == (
        "the clock is not trusted: status Unknown (is the ClockBound daemon synchronised?)"
    )


def test_default_paths_constants() -> None:
    assert cb.CLOCKBOUND_SHM0_PATH == "/var/run/clockbound/shm0"
    assert cb.CLOCKBOUND_SHM1_PATH == "/var/run/clockbound/shm1"
    assert cb.VMCLOCK_PATH == "/dev/vmclock0"


def test_survives_wipe_and_interrupted_update(
    writer: SegmentWriter, segment_path: Path
) -> None:
    clock = open_clock(segment_path)
    first = clock.now()
    writer.simulate_interrupted_update()
    assert writer.generation % 2 == 1
    assert clock.now().status is cb.ClockStatus.SYNCHRONIZED  # the last good snapshot
    writer.wipe()
    # The same snapshot, older: as wide or wider, give or take a nanosecond of rounding (a
    # layout 3 bound is rounded outwards from fractional nanoseconds).
    assert clock.now().bound_ns >= first.bound_ns - 1
    with pytest.raises(cb.SegmentNotInitializedError):
        open_clock(segment_path)
    writer.write(cb.ClockStatus.FREE_RUNNING)
    assert writer.generation % 2 == 0
    assert clock.now().status is cb.ClockStatus.FREE_RUNNING
    assert open_clock(segment_path).now().status is cb.ClockStatus.FREE_RUNNING


def test_stats(writer: SegmentWriter, segment_path: Path) -> None:
    clock = open_clock(segment_path)
    for _ in range(10):
        clock.now()
    stats = clock.stats()
    assert set(stats) >= {"full_reads", "cache_answers", "reopens"}
    assert stats["full_reads"] + stats["cache_answers"] >= 10


def test_survives_truncation_by_a_restarting_daemon(
    writer: SegmentWriter, segment_path: Path
) -> None:
    # A restarting ClockBound daemon recreates the file (size 0, then rewritten) while
    # readers have it mapped; touching the mapping then raises SIGBUS, which the crate's
    # guard turns into "answer from the last snapshot" (pytest's faulthandler, installed
    # earlier, stays in the chain for every other SIGBUS).
    clock = open_clock(segment_path, recheck_interval=0.001)
    assert clock.now().status is cb.ClockStatus.SYNCHRONIZED
    segment_path.write_bytes(b"")  # O_TRUNC: the mapping now lies past the end of the file
    for _ in range(5):
        time.sleep(0.002)
        assert clock.now().status is cb.ClockStatus.SYNCHRONIZED
    SegmentWriter(segment_path, layout=clock.layout).write(cb.ClockStatus.FREE_RUNNING)
    deadline = time.monotonic() + 2
    while clock.now().status is not cb.ClockStatus.FREE_RUNNING:
        assert time.monotonic() < deadline, clock.stats()
        time.sleep(0.002)
    stats = clock.stats()
    assert stats["reopens"] >= 1 and stats["truncations_survived"] >= 1, stats
