//! The layout 3 read path, side by side in one run: `ShmReaderV3` `snapshot() + now()`, the
//! floor it cannot go below (one fenced counter read), the ClockBound 3.x client's
//! `Client::now()` (`clock-bound` 3.0.0-rc.0), both `SharedClockBound` strategies on layout 3,
//! and the same calls on layout 2 for reference, so every ratio comes from one run on one
//! machine state. Run with `cargo bench --bench layout3`.
//!
//! Segments are written by our writers; a snapshot stamped "now" is written before each timed
//! function, as a daemon keeps it fresh (an aged snapshot would be read as a stale one, and
//! past the short path's limits layout 3 takes its general arithmetic).
//!
//! x86-64 only: layout 3 "now" snapshots need the counter read with `rdtsc` and a measured
//! frequency (the helpers of `tests/common`).

#[cfg(target_arch = "x86_64")]
#[path = "../tests/common/mod.rs"]
mod common;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::hint::black_box;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use clockbound_shm::{
        ClockErrorBound, ClockStatus, DisruptionCheck, ReaderOptions, SharedClockBound, ShmError,
        ShmReader, ShmReaderV3, ShmWriter, ShmWriterV3, Strategy, TimeWindow, Timespec,
    };
    use criterion::Criterion;
    use rustix::time::{ClockId, clock_gettime};

    use crate::common::{v3_read_tsc, v3_snapshot};

    /// What a benchmark returns for a failed call.
    const FAILED: i64 = i64::MIN;

    /// Uses every field of a window, so none of it can be optimised away, without forcing the
    /// whole `Result` through memory as `black_box` of it would.
    #[inline(always)]
    fn window(w: Result<TimeWindow, ShmError>) -> i64 {
        match w {
            Ok(w) => {
                w.earliest.sec()
                    ^ w.earliest.nsec()
                    ^ w.latest.sec()
                    ^ w.latest.nsec()
                    ^ w.clock_status as i64
            }
            Err(_) => FAILED,
        }
    }

    /// The same for the 3.x client's window.
    #[inline(always)]
    fn their_window(w: Result<clock_bound::TimeWindow, clock_bound::Error>) -> i64 {
        match w {
            Ok(w) => {
                w.earliest.tv_sec()
                    ^ w.earliest.tv_nsec()
                    ^ w.latest.tv_sec()
                    ^ w.latest.tv_nsec()
                    ^ w.clock_status as i64
            }
            Err(_) => FAILED,
        }
    }

    /// A layout 2 snapshot as the daemon would write it now.
    fn fresh_v2() -> ClockErrorBound {
        let mono = clock_gettime(ClockId::MonotonicCoarse);
        let as_of = Timespec::new(mono.tv_sec, mono.tv_nsec);
        ClockErrorBound::builder()
            .as_of(as_of)
            .void_after(as_of.saturating_add(Duration::from_secs(1000)))
            .bound_nsec(5_000)
            .max_drift_ppb(1_000)
            .clock_status(ClockStatus::Synchronized)
            .build()
    }

    /// Both segments, with their writers.
    struct Segments {
        _dir: tempfile::TempDir,
        shm0: PathBuf,
        shm1: PathBuf,
        v2: ShmWriter,
        v3: ShmWriterV3,
    }

    impl Segments {
        fn new() -> Segments {
            let dir = tempfile::tempdir().expect("temp dir");
            let shm0 = dir.path().join("shm0");
            let shm1 = dir.path().join("shm1");
            let mut segments = Segments {
                v2: ShmWriter::new(&shm0).expect("layout 2 writer"),
                v3: ShmWriterV3::new(&shm1).expect("layout 3 writer"),
                _dir: dir,
                shm0,
                shm1,
            };
            segments.refresh();
            segments
        }

        /// Writes snapshots stamped now to both, as the daemon does every second or so.
        fn refresh(&mut self) {
            self.v2.write(&fresh_v2());
            self.v3.write(&v3_snapshot(
                Duration::ZERO,
                5_000,
                ClockStatus::Synchronized,
            ));
        }
    }

    fn options() -> ReaderOptions {
        ReaderOptions::new().disruption_check(DisruptionCheck::Off)
    }

    fn path_str(path: &Path) -> &str {
        path.to_str().expect("temp paths are UTF-8")
    }

    /// One group, every function: read the ratios off one run.
    pub fn layout3_now(c: &mut Criterion) {
        let mut g = c.benchmark_group("layout3_now");
        let mut seg = Segments::new();
        let mut v3 = ShmReaderV3::open_with(&seg.shm1, &options()).expect("layout 3 reader");
        let mut v2 = ShmReader::open_with(&seg.shm0, &options()).expect("layout 2 reader");
        // The snapshots say no disruption support, so the client never opens this path.
        let mut client = clock_bound::Client::new_with_paths(
            path_str(&seg.shm1),
            path_str(&seg.shm1.with_file_name("no-vmclock")),
        )
        .expect("the 3.x client opens our shm1");
        let v3_shared = |strategy| {
            SharedClockBound::open_with(&seg.shm1, &options().strategy(strategy))
                .expect("layout 3 shared value")
        };
        let v3_thread_local = v3_shared(Strategy::ThreadLocal);
        let v3_arc_swap = v3_shared(Strategy::ArcSwap);
        let v2_shared = |strategy| {
            SharedClockBound::open_with(&seg.shm0, &options().strategy(strategy))
                .expect("layout 2 shared value")
        };
        let v2_thread_local = v2_shared(Strategy::ThreadLocal);
        let v2_arc_swap = v2_shared(Strategy::ArcSwap);

        // Every function must measure a working call (what `--test` runs check): a trusted
        // window from each.
        let synchronized = |w: Result<TimeWindow, ShmError>, what: &str| {
            let w = w.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(w.clock_status, ClockStatus::Synchronized, "{what}");
        };
        synchronized(v3.snapshot().and_then(|s| s.now()), "ShmReaderV3");
        synchronized(v2.snapshot().and_then(|s| s.now()), "ShmReader");
        for (clock, what) in [
            (&v3_thread_local, "v3 ThreadLocal"),
            (&v3_arc_swap, "v3 ArcSwap"),
            (&v2_thread_local, "v2 ThreadLocal"),
            (&v2_arc_swap, "v2 ArcSwap"),
        ] {
            synchronized(clock.now(), what);
        }
        let theirs = client.now().expect("the 3.x client's now()");
        assert_eq!(theirs.clock_status, clock_bound::ClockStatus::Synchronized);

        seg.refresh();
        g.bench_function("fenced-counter-read", |b| {
            b.iter(|| black_box(v3_read_tsc()))
        });
        seg.refresh();
        g.bench_function("v3/ours-snapshot-now", |b| {
            b.iter(|| black_box(window(black_box(&mut v3).snapshot().and_then(|s| s.now()))))
        });
        seg.refresh();
        g.bench_function("v3/ours-reader-now", |b| {
            b.iter(|| black_box(window(black_box(&mut v3).now())))
        });
        seg.refresh();
        g.bench_function("v3/released-3.x-Client-now", |b| {
            b.iter(|| black_box(their_window(black_box(&mut client).now())))
        });
        seg.refresh();
        g.bench_function("v3/ours-shared-ThreadLocal-now", |b| {
            b.iter(|| black_box(window(black_box(&v3_thread_local).now())))
        });
        seg.refresh();
        g.bench_function("v3/ours-shared-ArcSwap-now", |b| {
            b.iter(|| black_box(window(black_box(&v3_arc_swap).now())))
        });
        seg.refresh();
        g.bench_function("v2/ours-snapshot-now", |b| {
            b.iter(|| black_box(window(black_box(&mut v2).snapshot().and_then(|s| s.now()))))
        });
        seg.refresh();
        g.bench_function("v2/ours-shared-ThreadLocal-now", |b| {
            b.iter(|| black_box(window(black_box(&v2_thread_local).now())))
        });
        seg.refresh();
        g.bench_function("v2/ours-shared-ArcSwap-now", |b| {
            b.iter(|| black_box(window(black_box(&v2_arc_swap).now())))
        });
        g.finish();
    }
}

#[cfg(target_arch = "x86_64")]
criterion::criterion_group! {
    name = benches;
    config = criterion::Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = x86::layout3_now
}
#[cfg(target_arch = "x86_64")]
criterion::criterion_main!(benches);

/// Layout 3 benchmarks need the x86-64 counter helpers; elsewhere there is nothing to run.
#[cfg(not(target_arch = "x86_64"))]
fn main() {}
