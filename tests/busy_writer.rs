//! Opening a segment while its writer is busy: with no snapshot to fall back on, open is
//! patient (for a bounded time) instead of failing after a few microseconds. (Issue 11,
//! item 4.)
//!
//! A test binary of its own: the other stress tests run many busy threads at once, and on a
//! small machine they would starve these tests' writer for longer than open's patience.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use clockbound_shm::{
    AnySnapshot, ClockErrorBound, ClockStatus, SharedClockBound, ShmReader, ShmWriter, Strategy,
    Timespec,
};

/// The payload of update `k`: every field a different function of `k`, so that a copy
/// mixing two updates fails [`check`]. The disruption flag stays off.
fn payload(k: u64) -> ClockErrorBound {
    ClockErrorBound::builder()
        .as_of(Timespec::new(k as i64, ((k * 7) % 1_000_000_000) as i64))
        .void_after(Timespec::new(
            k as i64 + 1_000,
            ((k * 11 + 3) % 1_000_000_000) as i64,
        ))
        .bound_nsec((3 * k + 1) as i64)
        .disruption_marker(!k)
        .max_drift_ppb(((k * 5) % 1_000_000_000) as u32)
        .clock_status(ClockStatus::Synchronized)
        .build()
}

/// Whether `snapshot` is one whole update.
fn check(snapshot: &ClockErrorBound) -> Result<u64, String> {
    let k = snapshot.as_of().sec() as u64;
    if *snapshot == payload(k) {
        Ok(k)
    } else {
        Err(format!("torn or invented snapshot: {snapshot:?}"))
    }
}

/// A new segment holding update 1, written and closed again.
fn new_segment(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("shm0");
    ShmWriter::new(&path).unwrap().write(&payload(1));
    path
}

/// Opening under a writer that never pauses succeeds: with no snapshot to fall back on,
/// open keeps retrying (for a bounded time) until it gets a consistent copy, as the released
/// reader eventually does. (Issue 11, item 4: opens used to fail with `Contended` or
/// `UpdateInProgress` after a few microseconds.) No timing is asserted: only that every
/// open succeeds, with a whole update.
///
/// The writer does a little work between updates (`WORK` payloads), never sleeping or
/// yielding. With none at all, in a debug build, the time between two updates is shorter
/// than a confirmed copy takes, and an open can only succeed when the scheduler happens to
/// stop the writer between updates; bounded patience then fails now and then on a loaded
/// machine.
#[test]
fn opening_under_a_writer_that_never_pauses_succeeds() {
    const OPENS: usize = 200;
    const WORK: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let path = new_segment(&dir);
    let stop = AtomicBool::new(false);
    let writes = AtomicU64::new(0);
    let failures = thread::scope(|s| {
        s.spawn(|| {
            let mut writer = ShmWriter::new(&path).expect("reopen segment");
            let mut k = 1;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                // The next update's payload, worked out the long way (as a daemon works
                // out its next bound): the writer spends most of its time between updates,
                // but never sleeps or yields.
                let next = (0..WORK).fold(payload(k), |_, _| std::hint::black_box(payload(k)));
                writer.write(&next);
                writes.store(k - 1, Ordering::Relaxed);
            }
        });
        let mut failures = Vec::new();
        for i in 0..OPENS {
            // Each open starts while the writer is visibly running.
            let seen = writes.load(Ordering::Relaxed);
            while writes.load(Ordering::Relaxed) < seen + 100 {
                thread::yield_now();
            }
            let snapshot = match i % 3 {
                0 => ShmReader::open_with(&path, &common::segment_only())
                    .map(|mut r| AnySnapshot::V2(*r.snapshot().unwrap())),
                1 => SharedClockBound::open_with(
                    &path,
                    &common::segment_only()
                        .clone()
                        .strategy(Strategy::ThreadLocal),
                )
                .map(|c| c.snapshot().unwrap()),
                _ => SharedClockBound::open_with(
                    &path,
                    &common::segment_only().clone().strategy(Strategy::ArcSwap),
                )
                .map(|c| c.snapshot().unwrap()),
            };
            match snapshot {
                // Under a running writer, `snapshot()` may already hold a later update than
                // open read; it must be a whole one either way.
                Ok(AnySnapshot::V2(snapshot)) => {
                    if let Err(e) = check(&snapshot) {
                        failures.push(format!("open {i}: {e}"));
                    }
                }
                Ok(other) => failures.push(format!("open {i}: not a layout 2 snapshot: {other:?}")),
                Err(e) => failures.push(format!("open {i}: {e}")),
            }
        }
        stop.store(true, Ordering::Relaxed);
        failures
    });
    let writes = writes.load(Ordering::Relaxed);
    assert!(
        writes > 1,
        "the writer must have been writing during the opens"
    );
    assert!(
        failures.is_empty(),
        "{} of {OPENS} opens failed under a busy writer ({writes} updates):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The same as `opening_under_a_writer_that_never_pauses_succeeds` with the timing made
/// plain: the writer keeps each update in progress (generation odd) for 3 ms, as a writer
/// descheduled in the middle of an update does, then leaves the segment alone for 1 ms.
/// Every open succeeds: one that starts during an update waits for it to complete.
#[test]
fn opening_during_a_long_update_waits_for_it() {
    const OPENS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let path = new_segment(&dir);
    let stop = AtomicBool::new(false);
    let failures = thread::scope(|s| {
        s.spawn(|| {
            let mut writer = ShmWriter::new(&path).expect("reopen segment");
            let mut k = 1;
            while !stop.load(Ordering::Relaxed) {
                writer.simulate_interrupted_update();
                thread::sleep(Duration::from_millis(3));
                k += 1;
                writer.write(&payload(k));
                thread::sleep(Duration::from_millis(1));
            }
        });
        let mut failures = Vec::new();
        for i in 0..OPENS {
            match ShmReader::open_with(&path, &common::segment_only()) {
                Ok(mut reader) => {
                    if let Err(e) = check(reader.snapshot().unwrap()) {
                        failures.push(format!("open {i}: {e}"));
                    }
                }
                Err(e) => failures.push(format!("open {i}: {e}")),
            }
            // Spread the opens over the writer's cycle.
            thread::sleep(Duration::from_micros(700));
        }
        stop.store(true, Ordering::Relaxed);
        failures
    });
    assert!(
        failures.is_empty(),
        "{} of {OPENS} opens failed during long updates:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
