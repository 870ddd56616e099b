//! TrueTime-style queries: `after` / `before` at their boundaries, commit-wait against a
//! simulated daemon, and `wait_for_sync` against a daemon that starts late or never syncs.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clockbound_shm::{
    ClockErrorBound, ClockStatus, SharedClockBound, ShmError, ShmReader, ShmWriter, TimeWindow,
    Timespec,
};
use rustix::time::{ClockId, clock_gettime};

fn clock(id: ClockId) -> Timespec {
    let t = clock_gettime(id);
    Timespec::new(t.tv_sec, t.tv_nsec)
}

fn bound_now(bound_nsec: i64, status: ClockStatus) -> ClockErrorBound {
    common::fresh_bound(bound_nsec, 0, status, false)
}

fn segment(bound: &ClockErrorBound) -> (tempfile::TempDir, PathBuf, ShmWriter) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(bound);
    (dir, path, writer)
}

/// A daemon stand-in: republishes a fresh snapshot every `period` until dropped.
struct Daemon {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Daemon {
    fn start(
        mut writer: ShmWriter,
        bound_nsec: i64,
        status: ClockStatus,
        period: Duration,
    ) -> Daemon {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                writer.write(&bound_now(bound_nsec, status));
                thread::sleep(period);
            }
        });
        Daemon {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }
}

#[test]
fn window_queries_at_their_boundaries() {
    let w = TimeWindow {
        earliest: Timespec::new(100, 0),
        latest: Timespec::new(100, 500),
        clock_status: ClockStatus::Synchronized,
    };
    // after(t): only when t < earliest.
    assert!(w.after(Timespec::new(99, 999_999_999)));
    assert!(
        !w.after(Timespec::new(100, 0)),
        "t == earliest may be now: not certainly passed"
    );
    assert!(!w.after(Timespec::new(100, 1)));
    // before(t): only when t > latest.
    assert!(w.before(Timespec::new(100, 501)));
    assert!(
        !w.before(Timespec::new(100, 500)),
        "t == latest may be now: not certainly in the future"
    );
    assert!(!w.before(Timespec::new(100, 499)));
    // Inside the window neither holds.
    assert!(!w.after(Timespec::new(100, 250)) && !w.before(Timespec::new(100, 250)));
}

#[test]
fn reader_queries_follow_the_window() {
    let second = 1_000_000_000;
    let (_dir, path, _writer) = segment(&bound_now(10 * second, ClockStatus::Synchronized));
    let mut reader = ShmReader::open(&path).unwrap();
    let real = clock(ClockId::Realtime);
    // The window is real ± 10 s (plus a little drift).
    assert!(
        reader
            .after(real.saturating_sub(Duration::from_secs(11)))
            .unwrap()
    );
    assert!(
        !reader
            .after(real.saturating_sub(Duration::from_secs(9)))
            .unwrap()
    );
    assert!(!reader.after(real).unwrap());
    assert!(
        reader
            .before(real.saturating_add(Duration::from_secs(11)))
            .unwrap()
    );
    assert!(
        !reader
            .before(real.saturating_add(Duration::from_secs(9)))
            .unwrap()
    );
    assert!(!reader.before(real).unwrap());
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[test]
fn commit_wait_returns_soon_after_the_right_moment_and_sleeps() {
    let bound = 5_000_000; // 5 ms
    let (_dir, path, writer) = segment(&bound_now(bound, ClockStatus::Synchronized));
    let _daemon = Daemon::start(
        writer,
        bound,
        ClockStatus::Synchronized,
        Duration::from_millis(10),
    );
    let mut reader = ShmReader::open(&path).unwrap();

    for _ in 0..5 {
        // A commit timestamp: the latest any node could consider "now".
        let t = reader.now().unwrap().latest;
        let cpu_before = thread_cpu();
        let wall_before = Instant::now();
        let w = reader.wait_until_after(t, Duration::from_secs(2)).unwrap();
        let real_at_return = clock(ClockId::Realtime);
        let waited = wall_before.elapsed();
        let cpu = thread_cpu() - cpu_before;

        assert!(
            w.earliest > t,
            "returned window {w:?} does not prove {t} passed"
        );
        // The right moment is when real - bound first exceeds t, i.e. real = t + bound
        // (the bound grows negligibly at 1000 ppb). Returning later than one bound after
        // it means we overslept.
        let right_moment = t.as_nanos() + i128::from(bound);
        let lateness = real_at_return.as_nanos() - right_moment;
        assert!(
            lateness <= i128::from(bound),
            "returned {lateness} ns after the right moment, bound is {bound} ns"
        );
        // It waited about two bounds (from latest to earliest), and slept through most of it.
        assert!(waited >= Duration::from_millis(9), "waited only {waited:?}");
        assert!(
            cpu < waited / 2,
            "spun instead of sleeping: {cpu:?} CPU over {waited:?}"
        );
    }
}

#[test]
fn commit_wait_times_out() {
    let (_dir, path, _writer) = segment(&bound_now(1_000, ClockStatus::Synchronized));
    let mut reader = ShmReader::open(&path).unwrap();
    let far = clock(ClockId::Realtime).saturating_add(Duration::from_secs(30));
    let start = Instant::now();
    let err = reader
        .wait_until_after(far, Duration::from_millis(100))
        .unwrap_err();
    let elapsed = start.elapsed();
    match &err {
        ShmError::Timeout {
            waited,
            last_error: None,
            ..
        } => assert!(*waited >= Duration::from_millis(100)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(err.errno(), rustix::io::Errno::TIMEDOUT.raw_os_error());
}

#[test]
fn commit_wait_refuses_an_untrusted_clock() {
    for status in [ClockStatus::Unknown, ClockStatus::Disrupted] {
        let (_dir, path, _writer) = segment(&bound_now(1_000, status));
        let mut reader = ShmReader::open(&path).unwrap();
        let past = clock(ClockId::Realtime).saturating_sub(Duration::from_secs(30));
        // Even a timestamp long past is not "certainly passed" on an untrusted clock.
        match reader.wait_until_after(past, Duration::from_secs(1)) {
            Err(ShmError::ClockNotTrusted { status: s }) => assert_eq!(s, status),
            other => panic!("expected ClockNotTrusted, got {other:?}"),
        }
    }
    // A trusted status answers a past timestamp at once.
    let (_dir, path, _writer) = segment(&bound_now(1_000, ClockStatus::FreeRunning));
    let mut reader = ShmReader::open(&path).unwrap();
    let past = clock(ClockId::Realtime).saturating_sub(Duration::from_secs(30));
    assert!(reader.wait_until_after(past, Duration::ZERO).is_ok());
}

#[test]
fn wait_for_sync_waits_for_a_late_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clockbound").join("shm0");
    let start = Instant::now();
    let daemon = common::daemon_later(
        &path,
        Duration::from_millis(150),
        vec![
            (ClockStatus::Unknown, Duration::from_millis(150)),
            (ClockStatus::Synchronized, Duration::from_millis(1500)),
        ],
    );
    let mut reader = ShmReader::wait_for_sync(&path, Duration::from_secs(10)).unwrap();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300),
        "returned before the daemon synced: {elapsed:?}"
    );
    assert_eq!(
        reader.now().unwrap().clock_status,
        ClockStatus::Synchronized
    );
    daemon.join().unwrap();
}

#[test]
fn wait_for_sync_times_out_when_never_synchronised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    // No file at all: the timeout carries the last error (ENOENT).
    match ShmReader::wait_for_sync(&path, Duration::from_millis(50)) {
        Err(ShmError::Timeout {
            last_error: Some(e),
            ..
        }) => {
            assert!(matches!(*e, ShmError::Io { .. }), "{e:?}");
            assert_eq!(e.errno(), rustix::io::Errno::NOENT.raw_os_error());
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // A daemon that stays FreeRunning: never Synchronized.
    let daemon = common::daemon_later(
        &path,
        Duration::ZERO,
        vec![(ClockStatus::FreeRunning, Duration::from_millis(600))],
    );
    let start = Instant::now();
    match ShmReader::wait_for_sync(&path, Duration::from_millis(300)) {
        Err(ShmError::Timeout { waited, .. }) => assert!(waited >= Duration::from_millis(300)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    daemon.join().unwrap();
}

#[test]
fn shared_values_commit_wait_and_wait_for_sync() {
    let bound = 2_000_000; // 2 ms
    let (_dir, path, writer) = segment(&bound_now(bound, ClockStatus::Synchronized));
    let _daemon = Daemon::start(
        writer,
        bound,
        ClockStatus::Synchronized,
        Duration::from_millis(10),
    );
    for strategy in [
        clockbound_shm::Strategy::ThreadLocal,
        clockbound_shm::Strategy::ArcSwap,
    ] {
        let clock = clockbound_shm::SharedClockBound::open_with(
            &path,
            &clockbound_shm::ReaderOptions::new().strategy(strategy),
        )
        .unwrap();
        let t = clock.now().unwrap().latest;
        assert!(
            !clock.after(t).unwrap() && !clock.before(t).unwrap(),
            "{strategy:?}: t is inside the window"
        );
        let w = clock.wait_until_after(t, Duration::from_secs(2)).unwrap();
        assert!(w.earliest > t, "{strategy:?}");
        assert!(
            clock.after(t).unwrap(),
            "{strategy:?}: once passed, stays passed"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("shm0");
    let daemon = common::daemon_later(
        &late,
        Duration::from_millis(100),
        vec![(ClockStatus::Synchronized, Duration::from_millis(800))],
    );
    let clock =
        clockbound_shm::SharedClockBound::wait_for_sync(&late, Duration::from_secs(10)).unwrap();
    assert_eq!(clock.now().unwrap().clock_status, ClockStatus::Synchronized);
    daemon.join().unwrap();
}

/// Asserts that `wait_for_sync` (both handle types) gives up on `path` at once with an error
/// `check` accepts, not after its timeout.
fn assert_fails_fast(what: &str, path: &Path, check: impl Fn(&ShmError) -> bool) {
    let timeout = Duration::from_secs(10);
    let start = Instant::now();
    let err = ShmReader::wait_for_sync(path, timeout).unwrap_err();
    let elapsed = start.elapsed();
    assert!(check(&err), "{what}: ShmReader: unexpected error {err:#?}");
    assert!(!err.is_transient(), "{what}: {err:#?}");
    assert!(elapsed < Duration::from_secs(2), "{what}: took {elapsed:?}");

    let start = Instant::now();
    let err = clockbound_shm::SharedClockBound::wait_for_sync(path, timeout).unwrap_err();
    assert!(
        check(&err),
        "{what}: SharedClockBound: unexpected error {err:#?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2), "{what}");
}

#[test]
fn wait_for_sync_returns_at_once_on_errors_that_cannot_clear() {
    let dir = tempfile::tempdir().unwrap();

    // Not a ClockBound segment at all.
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, [0xAAu8; 80]).unwrap();
    assert_fails_fast("bad magic", &garbage, |e| {
        matches!(e, ShmError::SegmentMalformed { .. })
    });

    // A layout version this crate does not read.
    let (_d, other_version, _w) = segment(&bound_now(1_000, ClockStatus::Synchronized));
    let mut bytes = std::fs::read(&other_version).unwrap();
    bytes[12..14].copy_from_slice(&9u16.to_ne_bytes());
    std::fs::write(&other_version, &bytes).unwrap();
    assert_fails_fast("version 9", &other_version, |e| {
        matches!(e, ShmError::SegmentVersionNotSupported { found: 9, .. })
    });

    // A directory where the segment should be.
    assert_fails_fast("a directory", dir.path(), |e| {
        matches!(e, ShmError::Io { .. })
    });

    // The segment asks for the disruption check and there is no VMClock device (skipped on
    // a host that has one: the default path cannot be redirected through wait_for_sync).
    if !Path::new(clockbound_shm::VMCLOCK_DEFAULT_PATH).exists() {
        let mono = clock(ClockId::MonotonicCoarse);
        let needs_vmclock = ClockErrorBound::builder()
            .as_of(mono)
            .void_after(mono.saturating_add(Duration::from_secs(1000)))
            .bound_nsec(1_000)
            .max_drift_ppb(1_000)
            .clock_status(ClockStatus::Synchronized)
            .clock_disruption_support_enabled(true)
            .build();
        let (_d, path, _w) = segment(&needs_vmclock);
        assert_fails_fast("no VMClock device", &path, |e| {
            matches!(e, ShmError::VmClockIo { .. })
        });
    }
}

#[test]
fn wait_for_sync_waits_through_an_empty_then_short_file() {
    // A daemon recreating its segment: the file exists but is empty, then holds part of a
    // header, then is a segment that syncs. Each state is one a later attempt can clear.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    std::fs::write(&path, []).unwrap();
    let daemon = {
        let path = path.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            std::fs::write(&path, [0u8; 16]).unwrap();
            thread::sleep(Duration::from_millis(100));
            let mut writer = ShmWriter::new(&path).unwrap();
            for _ in 0..200 {
                writer.write(&bound_now(1_000, ClockStatus::Synchronized));
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let start = Instant::now();
    let mut reader = ShmReader::wait_for_sync(&path, Duration::from_secs(10)).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        reader.now().unwrap().clock_status,
        ClockStatus::Synchronized
    );
    daemon.join().unwrap();
}

/// `require_trusted` is for the clock's whole life, not only for the wait: the reader
/// `wait_for_sync_with` returns still refuses an untrusted window afterwards, as the shared
/// handle does.
#[test]
fn wait_for_sync_keeps_require_trusted_on_the_reader_it_returns() {
    let (_dir, path, mut writer) = segment(&bound_now(5_000, ClockStatus::Synchronized));
    let options = common::segment_only().require_trusted(true);
    let mut reader =
        ShmReader::wait_for_sync_with(&path, &options, Duration::from_secs(5)).unwrap();
    let shared =
        SharedClockBound::wait_for_sync_with(&path, &options, Duration::from_secs(5)).unwrap();
    writer.write(&bound_now(5_000, ClockStatus::Unknown));
    assert!(
        matches!(reader.now(), Err(ShmError::ClockNotTrusted { .. })),
        "{:?}",
        reader.now()
    );
    assert!(
        matches!(shared.now(), Err(ShmError::ClockNotTrusted { .. })),
        "{:?}",
        shared.now()
    );
}

/// `after(t)` and `before(t)` answer yes or no without a status to check: from an Unknown or
/// Disrupted window that answer could be wrong, so they refuse it, on every handle, as
/// commit-wait does.
#[test]
fn after_and_before_refuse_an_untrusted_clock() {
    let (_dir, path, mut writer) = segment(&bound_now(5_000, ClockStatus::Synchronized));
    let mut reader = ShmReader::open_with(&path, &common::segment_only()).unwrap();
    let shared = SharedClockBound::open_with(&path, &common::segment_only()).unwrap();
    let past = clock(ClockId::Realtime).saturating_sub(Duration::from_secs(60));
    assert!(reader.after(past).unwrap() && shared.after(past).unwrap());
    for status in [ClockStatus::Unknown, ClockStatus::Disrupted] {
        writer.write(&bound_now(5_000, status));
        let untrusted = |r: Result<bool, ShmError>| matches!(r, Err(ShmError::ClockNotTrusted { status: s }) if s == status);
        assert!(untrusted(reader.after(past)), "{status:?}");
        assert!(untrusted(reader.before(past)), "{status:?}");
        assert!(untrusted(shared.after(past)), "{status:?}");
        assert!(untrusted(shared.before(past)), "{status:?}");
        // The window itself still says what it is.
        assert_eq!(reader.now().unwrap().clock_status, status);
    }
    writer.write(&bound_now(5_000, ClockStatus::FreeRunning));
    assert!(reader.after(past).unwrap() && shared.after(past).unwrap());
}
