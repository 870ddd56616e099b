//! The async waits (feature `tokio`) against segments written by `ShmWriter`, each on a
//! current-thread and on a multi-thread runtime: commit-wait's answer, timeout and refusal
//! of an untrusted clock; `wait_for_sync` waiting for a late daemon, timing out, and
//! failing at once on what waiting cannot fix; and that a commit-wait holds no thread.

mod common;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clockbound_shm::{
    ClockStatus, ReaderOptions, SharedClockBound, ShmError, ShmReader, ShmWriter, Strategy,
    Timespec,
};
use common::fresh_bound;
use rustix::time::{ClockId, clock_gettime};
use tokio::runtime::{Builder, Runtime};

/// Runs the future `test` makes on a current-thread runtime, then on a multi-thread one,
/// as a spawned task (so on a worker thread of the latter, and checked to be `Send`).
fn on_each_runtime<F, Fut>(test: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let runtimes: [(&str, Runtime); 2] = [
        (
            "current-thread",
            Builder::new_current_thread().enable_time().build().unwrap(),
        ),
        (
            "multi-thread",
            Builder::new_multi_thread()
                .worker_threads(2)
                .enable_time()
                .build()
                .unwrap(),
        ),
    ];
    for (name, runtime) in runtimes {
        if let Err(e) = runtime.block_on(runtime.spawn(test())) {
            panic!("on the {name} runtime: {e}");
        }
    }
}

/// A segment in a fresh directory holding one snapshot taken now: `bound_nsec` and `status`.
fn segment(bound_nsec: i64, status: ClockStatus) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    ShmWriter::new(&path)
        .unwrap()
        .write(&fresh_bound(bound_nsec, 0, status, false));
    (dir, path)
}

fn realtime() -> Timespec {
    let t = clock_gettime(ClockId::Realtime);
    Timespec::new(t.tv_sec, t.tv_nsec)
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Checks a commit-wait's answer for `t` with a snapshot bound of `bound_nsec`: a window
/// past `t`, returned soon after the first moment it could be. Returns how long after
/// that moment, in nanoseconds.
fn check_commit_wait(
    what: &str,
    t: Timespec,
    bound_nsec: i64,
    w: clockbound_shm::TimeWindow,
) -> i128 {
    let real_at_return = realtime();
    assert!(w.earliest > t, "{what}: {w:?} does not prove {t} passed");
    // The right moment is real = t + bound (the drift adds nanoseconds here).
    let lateness = real_at_return.as_nanos() - (t.as_nanos() + i128::from(bound_nsec));
    // Generous: the machine running the tests may be busy. The precision is checked on
    // the best of several waits.
    assert!(
        lateness <= 50_000_000,
        "{what}: returned {lateness} ns after the right moment"
    );
    lateness
}

#[test]
fn commit_wait_returns_a_window_past_t() {
    on_each_runtime(|| async {
        let bound = 5_000_000; // 5 ms: the wait crosses the timer's sleep and yield phases
        let (_dir, path) = segment(bound, ClockStatus::Synchronized);
        let mut best = i128::MAX;
        for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
            let clock =
                SharedClockBound::open_with(&path, &ReaderOptions::new().strategy(strategy))
                    .unwrap();
            for _ in 0..3 {
                let t = clock.now().unwrap().latest;
                let w = clock
                    .wait_until_after_async(t, Duration::from_secs(2))
                    .await
                    .unwrap();
                best = best.min(check_commit_wait(&format!("{strategy:?}"), t, bound, w));
            }
        }
        let mut reader = ShmReader::open(&path).unwrap();
        let t = reader.now().unwrap().latest;
        let w = reader
            .wait_until_after_async(t, Duration::from_secs(2))
            .await
            .unwrap();
        best = best.min(check_commit_wait("ShmReader", t, bound, w));
        // The timer's millisecond is yielded through, not overslept: the best wait returns
        // well within one.
        assert!(
            best <= 500_000,
            "the best of 7 waits returned {best} ns after the right moment"
        );
    });
}

#[test]
fn commit_wait_times_out() {
    on_each_runtime(|| async {
        let (_dir, path) = segment(1_000, ClockStatus::Synchronized);
        let clock = SharedClockBound::open(&path).unwrap();
        let far = realtime().saturating_add(Duration::from_secs(30));
        let start = Instant::now();
        let err = clock
            .wait_until_after_async(far, Duration::from_millis(100))
            .await
            .unwrap_err();
        let elapsed = start.elapsed();
        match &err {
            ShmError::Timeout {
                waited,
                last_error: None,
                ..
            } => assert!(*waited >= Duration::from_millis(100), "{waited:?}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        assert_eq!(err.errno(), rustix::io::Errno::TIMEDOUT.raw_os_error());
    });
}

#[test]
fn commit_wait_refuses_an_untrusted_clock() {
    on_each_runtime(|| async {
        for status in [ClockStatus::Unknown, ClockStatus::Disrupted] {
            let (_dir, path) = segment(1_000, status);
            // Even a timestamp long past is not "certainly passed" on an untrusted clock.
            let past = realtime().saturating_sub(Duration::from_secs(30));
            let clock = SharedClockBound::open(&path).unwrap();
            match clock
                .wait_until_after_async(past, Duration::from_secs(1))
                .await
            {
                Err(ShmError::ClockNotTrusted { status: s }) => assert_eq!(s, status),
                other => panic!("SharedClockBound: expected ClockNotTrusted, got {other:?}"),
            }
            let mut reader = ShmReader::open(&path).unwrap();
            match reader
                .wait_until_after_async(past, Duration::from_secs(1))
                .await
            {
                Err(ShmError::ClockNotTrusted { status: s }) => assert_eq!(s, status),
                other => panic!("ShmReader: expected ClockNotTrusted, got {other:?}"),
            }
        }
        // A trusted status answers a past timestamp at once.
        let (_dir, path) = segment(1_000, ClockStatus::FreeRunning);
        let clock = SharedClockBound::open(&path).unwrap();
        let past = realtime().saturating_sub(Duration::from_secs(30));
        assert!(
            clock
                .wait_until_after_async(past, Duration::ZERO)
                .await
                .is_ok()
        );
    });
}

#[test]
fn wait_for_sync_waits_for_a_late_daemon() {
    on_each_runtime(|| async {
        for which in [
            "SharedClockBound",
            "SharedClockBound with options",
            "ShmReader",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("clockbound").join("shm0");
            let start = Instant::now();
            // No file for 100 ms, then Unknown for 100 ms, then Synchronized.
            let daemon = common::daemon_later(
                &path,
                Duration::from_millis(100),
                vec![
                    (ClockStatus::Unknown, Duration::from_millis(100)),
                    (ClockStatus::Synchronized, Duration::ZERO),
                ],
            );
            let timeout = Duration::from_secs(10);
            let status = match which {
                "SharedClockBound" => {
                    SharedClockBound::wait_for_sync_async(&path, timeout)
                        .await
                        .unwrap()
                        .now()
                        .unwrap()
                        .clock_status
                }
                "ShmReader" => {
                    ShmReader::wait_for_sync_async(&path, timeout)
                        .await
                        .unwrap()
                        .now()
                        .unwrap()
                        .clock_status
                }
                _ => {
                    let options = ReaderOptions::new().require_trusted(true);
                    let clock =
                        SharedClockBound::wait_for_sync_with_async(&path, &options, timeout)
                            .await
                            .unwrap();
                    clock.now().unwrap().clock_status
                }
            };
            let elapsed = start.elapsed();
            assert!(
                elapsed >= Duration::from_millis(200),
                "{which}: returned before the daemon synced: {elapsed:?}"
            );
            assert_eq!(status, ClockStatus::Synchronized, "{which}");
            daemon.join().unwrap();
        }
    });
}

#[test]
fn wait_for_sync_keeps_require_trusted() {
    on_each_runtime(|| async {
        let (_dir, path) = segment(1_000, ClockStatus::Synchronized);
        let options = ReaderOptions::new().require_trusted(true);
        let timeout = Duration::from_secs(5);
        let clock = SharedClockBound::wait_for_sync_with_async(&path, &options, timeout)
            .await
            .unwrap();
        let mut reader = ShmReader::wait_for_sync_with_async(&path, &options, timeout)
            .await
            .unwrap();
        // The daemon loses sync: both handles now refuse the window.
        ShmWriter::new(&path)
            .unwrap()
            .write(&fresh_bound(1_000, 0, ClockStatus::Unknown, false));
        assert!(matches!(clock.now(), Err(ShmError::ClockNotTrusted { .. })));
        assert!(matches!(
            reader.now(),
            Err(ShmError::ClockNotTrusted { .. })
        ));
    });
}

#[test]
fn wait_for_sync_times_out_when_never_synchronised() {
    on_each_runtime(|| async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shm0");
        // No file at all: the timeout carries the last error (ENOENT).
        match SharedClockBound::wait_for_sync_async(&path, Duration::from_millis(50)).await {
            Err(ShmError::Timeout {
                last_error: Some(e),
                ..
            }) => assert_eq!(e.errno(), rustix::io::Errno::NOENT.raw_os_error(), "{e:?}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        // A daemon that stays FreeRunning: never Synchronized.
        ShmWriter::new(&path).unwrap().write(&fresh_bound(
            1_000,
            0,
            ClockStatus::FreeRunning,
            false,
        ));
        let start = Instant::now();
        match SharedClockBound::wait_for_sync_async(&path, Duration::from_millis(300)).await {
            Err(ShmError::Timeout {
                waited,
                last_error: None,
                ..
            }) => assert!(waited >= Duration::from_millis(300), "{waited:?}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        match ShmReader::wait_for_sync_async(&path, Duration::from_millis(100)).await {
            Err(ShmError::Timeout { .. }) => {}
            other => panic!("ShmReader: expected a timeout, got {other:?}"),
        }
    });
}

#[test]
fn wait_for_sync_fails_at_once_on_what_waiting_cannot_fix() {
    on_each_runtime(|| async {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, [0xAAu8; 80]).unwrap();
        let timeout = Duration::from_secs(10);

        let start = Instant::now();
        let err = SharedClockBound::wait_for_sync_async(&garbage, timeout)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ShmError::SegmentMalformed { .. }),
            "SharedClockBound: {err:#?}"
        );
        let err = ShmReader::wait_for_sync_async(&garbage, timeout)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ShmError::SegmentMalformed { .. }),
            "ShmReader: {err:#?}"
        );
        // A directory where the segment should be.
        let err = SharedClockBound::wait_for_sync_async(dir.path(), timeout)
            .await
            .unwrap_err();
        assert!(matches!(err, ShmError::Io { .. }), "{err:#?}");
        assert!(!err.is_transient());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
    });
}

/// How the other task of [`ticks_during`] paces its ticks.
#[derive(Copy, Clone)]
enum Tick {
    /// Sleeps 1 ms per tick: needs the runtime's timer to be driven.
    Sleep,
    /// Yields per tick: needs the runtime to get the thread back.
    Yield,
}

/// Counts the ticks of another task while `wait` runs on the same current-thread runtime;
/// also returns the runtime thread's CPU time over the wait and the wall time the wait
/// took.
fn ticks_during<Fut: Future<Output = ()>>(
    tick: Tick,
    wait: impl FnOnce() -> Fut,
) -> (u64, Duration, Duration) {
    let runtime = Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(async {
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            loop {
                match tick {
                    Tick::Sleep => tokio::time::sleep(Duration::from_millis(1)).await,
                    Tick::Yield => tokio::task::yield_now().await,
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Let the ticker start.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let before = ticks.load(Ordering::Relaxed);
        let cpu_before = thread_cpu();
        let start = Instant::now();
        wait().await;
        let waited = start.elapsed();
        let cpu = thread_cpu() - cpu_before;
        let during = ticks.load(Ordering::Relaxed) - before;
        ticker.abort();
        (during, cpu, waited)
    })
}

#[test]
fn commit_wait_holds_no_thread() {
    let (_dir, path) = segment(1_000_000, ClockStatus::Synchronized);
    let clock = SharedClockBound::open(&path).unwrap();
    // t 200 ms past the latest edge: about 200 ms of waiting.
    let far = || {
        clock
            .now()
            .unwrap()
            .latest
            .saturating_add(Duration::from_millis(200))
    };

    let (ticks, cpu, waited) = ticks_during(Tick::Sleep, || async {
        let t = far();
        let w = clock
            .wait_until_after_async(t, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(w.earliest > t);
    });
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    // The ticker sleeps 1 ms per tick on a millisecond timer: about one tick per 1-2 ms.
    assert!(
        ticks >= 50,
        "the other task ticked only {ticks} times in {waited:?}"
    );
    assert!(
        cpu < waited / 4,
        "the wait spun: {cpu:?} of CPU over {waited:?}"
    );

    // The control: the blocking call holds the runtime's only thread, and the ticker stops.
    let (ticks, _, waited) = ticks_during(Tick::Sleep, || async {
        let t = far();
        clock.wait_until_after(t, Duration::from_secs(5)).unwrap();
    });
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(
        ticks <= 1,
        "the blocking wait let the ticker run {ticks} times"
    );
}

#[test]
fn commit_wait_yields_while_it_spins() {
    // A 200 µs bound: the whole wait (about 400 µs) is in the phase that looks again and
    // again rather than sleeping.
    let (_dir, path) = segment(200_000, ClockStatus::Synchronized);
    let clock = SharedClockBound::open(&path).unwrap();
    let (ticks, _, waited) = ticks_during(Tick::Yield, || async {
        let t = clock.now().unwrap().latest;
        let w = clock
            .wait_until_after_async(t, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(w.earliest > t);
    });
    assert!(
        waited >= Duration::from_micros(300),
        "waited only {waited:?}"
    );
    // Each look is followed by a yield, and the other task runs in between.
    assert!(
        ticks >= 10,
        "the other task ran only {ticks} times during a {waited:?} wait"
    );
}

/// Layout 3: the same commit-wait on a `shm1` kept up to date by a 3.x daemon stand-in,
/// through the shared handle and the layout 3 reader.
#[cfg(target_arch = "x86_64")]
#[test]
fn commit_wait_on_layout_3() {
    use clockbound_shm::{LayoutVersion, ShmReaderV3, ShmWriterV3};
    use common::V3Daemon;

    let (_dir, path) = common::temp_segment("shm1");
    let bound = 2_000_000; // 2 ms
    let _daemon = V3Daemon::start(
        ShmWriterV3::new(&path).unwrap(),
        bound,
        ClockStatus::Synchronized,
        Duration::from_millis(10),
    );
    on_each_runtime(move || {
        let path = path.clone();
        async move {
            let clock = SharedClockBound::open(&path).unwrap();
            assert_eq!(clock.layout(), LayoutVersion::V3);
            let t = clock.now().unwrap().latest;
            let w = clock
                .wait_until_after_async(t, Duration::from_secs(2))
                .await
                .unwrap();
            assert!(w.earliest > t, "{w:?} does not prove {t} passed");
            assert!(clock.after(t).unwrap(), "once passed, stays passed");

            let mut reader = ShmReaderV3::open(&path).unwrap();
            let t = reader.now().unwrap().latest;
            let w = reader
                .wait_until_after_async(t, Duration::from_secs(2))
                .await
                .unwrap();
            assert!(w.earliest > t, "{w:?} does not prove {t} passed");
        }
    });
}
