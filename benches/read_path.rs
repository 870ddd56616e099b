//! The read path, side by side with the released client (`clock-bound-shm` 2.0.3, renamed
//! `upstream`), one criterion group per question. `BENCHMARKS.md` has the method and the
//! numbers; run with `cargo bench --bench read_path`.
//!
//! Every segment is written by our `ShmWriter` (byte-compatible with the daemon's), so both
//! readers read the very same file; only the readers are compared.

use std::ffi::CString;
use std::hint::black_box;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clockbound_shm::{
    ClockErrorBound, ClockStatus, SharedClockBound, ShmReader, ShmWriter, Strategy, Timespec,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustix::time::{ClockId, clock_gettime};

/// What a benchmark returns for a failed call.
const FAILED: i64 = i64::MIN;

/// Uses every part of a window, the way a caller would, so that none of it can be optimised
/// away, without forcing the whole `Result` through memory as `black_box` of it would.
#[inline(always)]
fn window(w: Result<clockbound_shm::TimeWindow, clockbound_shm::ShmError>) -> i64 {
    match w {
        Ok(w) => w.earliest.nsec() ^ w.latest.nsec() ^ w.earliest.sec() ^ w.clock_status as i64,
        Err(_) => FAILED,
    }
}

/// The same for the released client's `(earliest, latest, status)`.
#[inline(always)]
fn released_window(
    w: Result<
        (
            nix::sys::time::TimeSpec,
            nix::sys::time::TimeSpec,
            upstream::ClockStatus,
        ),
        upstream::ShmError,
    >,
) -> i64 {
    match w {
        Ok((e, l, s)) => e.tv_nsec() ^ l.tv_nsec() ^ e.tv_sec() ^ s as i64,
        Err(_) => FAILED,
    }
}

/// A snapshot as the daemon would write it now: fresh `as_of`, `void_after` 1000 s later.
fn fresh_bound(tick: u64) -> ClockErrorBound {
    let mono = clock_gettime(ClockId::MonotonicCoarse);
    let as_of = Timespec::new(mono.tv_sec, mono.tv_nsec);
    let void_after = Timespec::new(mono.tv_sec + 1000, mono.tv_nsec);
    ClockErrorBound::builder()
        .as_of(as_of)
        .void_after(void_after)
        .bound_nsec(5_000 + (tick % 7) as i64)
        .max_drift_ppb(1_000)
        .clock_status(ClockStatus::Synchronized)
        .build()
}

struct Segment {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    writer: ShmWriter,
}

impl Segment {
    fn new() -> Segment {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("shm0");
        let mut writer = ShmWriter::new(&path).expect("writer");
        writer.write(&fresh_bound(0));
        Segment {
            _dir: dir,
            path,
            writer,
        }
    }

    /// Writes a snapshot stamped now, as the daemon does every second. Called before each
    /// timed function: a snapshot left to age for the length of a whole run would be read
    /// as a stale one (FreeRunning after 5 s, and past 16 s the arithmetic's general path),
    /// which no reader of a live daemon sees, and functions measured later in the run would
    /// pay for it.
    fn refresh(&mut self) {
        self.writer.write(&fresh_bound(0));
    }

    fn upstream_reader(&self) -> upstream::ShmReader {
        upstream_reader(&self.path)
    }
}

fn upstream_reader(path: &Path) -> upstream::ShmReader {
    let c_path = CString::new(path.as_os_str().as_bytes()).expect("no NUL in a temp path");
    upstream::ShmReader::new(&c_path).expect("released reader opens our segment")
}

/// The released reader holds raw pointers, so it is `!Send` and cannot sit in a `Mutex`
/// shared between threads as it is. Services that share one wrap it the way this does.
struct SendReader(upstream::ShmReader);

// SAFETY: the released reader's raw pointers point into a mapping the reader itself owns and
// unmaps on drop; nothing in it is tied to the thread that created it. The `Mutex` around it
// guarantees one thread at a time uses it, which is all its `&mut self` API needs.
unsafe impl Send for SendReader {}

/// Question 1: `snapshot()` with the generation unchanged, and changed on every call.
fn snapshot(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot");
    let mut seg = Segment::new();
    let mut ours = ShmReader::open(&seg.path).expect("reader");
    let mut theirs = seg.upstream_reader();

    g.bench_function("unchanged/ours", |b| {
        b.iter(|| black_box(ours.snapshot().map(|s| s.bound_nsec()).unwrap_or(-1)))
    });
    g.bench_function("unchanged/released", |b| {
        b.iter(|| black_box(theirs.snapshot().map(|s| s.disruption_marker).unwrap_or(0)))
    });

    // The writer's own cost, measured alone so it can be subtracted from the pairs below.
    let bound = fresh_bound(1);
    g.bench_function("changed/writer-alone", |b| {
        b.iter(|| seg.writer.write(black_box(&bound)))
    });
    g.bench_function("changed/ours", |b| {
        b.iter(|| {
            seg.writer.write(&bound);
            black_box(ours.snapshot().map(|s| s.bound_nsec()).unwrap_or(-1))
        })
    });
    g.bench_function("changed/released", |b| {
        b.iter(|| {
            seg.writer.write(&bound);
            black_box(theirs.snapshot().map(|s| s.disruption_marker).unwrap_or(0))
        })
    });
    g.finish();
}

/// Question 2: `snapshot() + now()`, ours against the released one, and the floor: the two
/// clock reads `now()` cannot avoid.
fn snapshot_now(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot_now");
    let mut seg = Segment::new();
    let mut ours = ShmReader::open(&seg.path).expect("reader");
    let mut theirs = seg.upstream_reader();

    // Both readings consumed field by field, as `window()` consumes ours: `black_box` of
    // the two `Timespec`s together would copy them through memory in 16-byte pieces, and
    // the store-forwarding stall of that copy added about 7 ns to this floor (it read 26.7
    // instead of 19.5 ns on the machine in `BENCHMARKS.md`).
    seg.refresh();
    g.bench_function("clock_gettime-floor", |b| {
        b.iter(|| {
            let real = clock_gettime(ClockId::Realtime);
            let mono = clock_gettime(ClockId::MonotonicCoarse);
            black_box(real.tv_sec ^ real.tv_nsec ^ mono.tv_sec ^ mono.tv_nsec)
        })
    });
    // A reference, not a reader: the protocol's arithmetic in plain integer nanoseconds
    // (no validation, no saturation, no status) around the same two clock reads, on a copy
    // of the snapshot's fields. What "just the arithmetic" costs on this machine.
    let plain = {
        let b = *ours.snapshot().expect("snapshot");
        let as_of = b.as_of();
        (
            as_of.sec() * 1_000_000_000 + as_of.nsec(),
            b.bound_nsec(),
            u64::from(b.max_drift_ppb()),
        )
    };
    g.bench_function("plain-integer-arithmetic", |b| {
        b.iter(|| {
            let (as_of, bound, ppb) = *black_box(&plain);
            let real = clock_gettime(ClockId::Realtime);
            let mono = clock_gettime(ClockId::MonotonicCoarse);
            let real = real.tv_sec * 1_000_000_000 + real.tv_nsec;
            let mono = mono.tv_sec * 1_000_000_000 + mono.tv_nsec;
            let elapsed = (mono - as_of).max(0) as u64;
            let bound = bound + (elapsed * ppb).div_ceil(1_000_000_000) as i64;
            black_box((real - bound) ^ (real + bound))
        })
    });
    bench_snapshot_now_pair(&mut g, &mut ours, &mut theirs, &mut || seg.refresh());
    // `ShmReader::now()`: the same, plus the self-healing checks where a version has them.
    seg.refresh();
    g.bench_function("ours-reader-now", |b| {
        b.iter(|| black_box(window(black_box(&mut ours).now())))
    });
    // `SharedClockBound::now()` in the same loop, on this one thread (question 3; the
    // `shared_now` groups measure it in the multi-thread harness).
    let thread_local = SharedClockBound::open_with(
        &seg.path,
        &clockbound_shm::ReaderOptions::new().strategy(Strategy::ThreadLocal),
    )
    .expect("open");
    seg.refresh();
    g.bench_function("ours-shared-ThreadLocal-now", |b| {
        b.iter(|| black_box(window(black_box(&thread_local).now())))
    });
    let arc_swap = SharedClockBound::open_with(
        &seg.path,
        &clockbound_shm::ReaderOptions::new().strategy(Strategy::ArcSwap),
    )
    .expect("open");
    seg.refresh();
    g.bench_function("ours-shared-ArcSwap-now", |b| {
        b.iter(|| black_box(window(black_box(&arc_swap).now())))
    });
    g.finish();
}

/// `snapshot() + now()`, ours and the released one, as two functions of group `g`;
/// `refresh` runs before each.
fn bench_snapshot_now_pair(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    ours: &mut ShmReader,
    theirs: &mut upstream::ShmReader,
    refresh: &mut dyn FnMut(),
) {
    refresh();
    g.bench_function("ours", |b| {
        b.iter(|| {
            black_box(window(
                black_box(&mut *ours).snapshot().and_then(|s| s.now()),
            ))
        })
    });
    refresh();
    g.bench_function("released", |b| {
        b.iter(|| {
            black_box(released_window(
                black_box(&mut *theirs).snapshot().and_then(|s| s.now()),
            ))
        })
    });
}

/// Runs `per_thread` on `threads` threads, each making `iters` calls after a common start,
/// and returns the slowest thread's time: with `Throughput::Elements(threads)` criterion then
/// reports aggregate calls per second.
fn run_threads<S, F>(threads: usize, iters: u64, setup: S) -> Duration
where
    S: Fn() -> F + Sync,
    F: FnMut() -> i64,
{
    let barrier = Barrier::new(threads);
    let cpus = allowed_cpus();
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let cpu = (cpus.len() >= threads).then(|| cpus[i]);
                let (barrier, setup) = (&barrier, &setup);
                s.spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to(cpu);
                    }
                    let mut call = setup();
                    assert_ne!(call(), FAILED, "warm-up call failed"); // creates per-thread state
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(call());
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    let set = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    (0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect()
}

/// Pins the calling thread to `cpu`: each bench thread gets a CPU of its own, so the
/// scheduler cannot put two of them on one CPU for part of a sample.
fn pin_to(cpu: usize) {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    set.set(cpu).expect("cpu index");
    sched_setaffinity(Pid::from_raw(0), &set).expect("sched_setaffinity");
}

/// Question 3 and 4: `SharedClockBound::now()` per strategy at 1 and 2 threads, beside a
/// `Mutex` around one released reader and one released (or our) reader per thread.
fn shared_now(c: &mut Criterion) {
    let mut seg = Segment::new();
    let path = seg.path.clone();
    let path = path.as_path();
    let thread_local = SharedClockBound::open_with(
        path,
        &clockbound_shm::ReaderOptions::new().strategy(Strategy::ThreadLocal),
    )
    .expect("open");
    let arc_swap = SharedClockBound::open_with(
        path,
        &clockbound_shm::ReaderOptions::new().strategy(Strategy::ArcSwap),
    )
    .expect("open");
    let mutexed = Mutex::new(SendReader(seg.upstream_reader()));

    for threads in [1usize, 2] {
        let mut g = c.benchmark_group(format!("shared_now/{threads}-threads"));
        g.throughput(Throughput::Elements(threads as u64));
        seg.refresh();
        g.bench_function("ThreadLocal", |b| {
            b.iter_custom(|iters| run_threads(threads, iters, || || window(thread_local.now())))
        });
        seg.refresh();
        g.bench_function("ArcSwap", |b| {
            b.iter_custom(|iters| run_threads(threads, iters, || || window(arc_swap.now())))
        });
        seg.refresh();
        g.bench_function("ShmReader-per-thread", |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, || {
                    let mut r = ShmReader::open(path).expect("reader");
                    move || window(r.snapshot().and_then(|s| s.now()))
                })
            })
        });
        seg.refresh();
        g.bench_function("released-per-thread", |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, || {
                    let mut r = upstream_reader(path);
                    move || released_window(r.snapshot().and_then(|s| s.now()))
                })
            })
        });
        seg.refresh();
        g.bench_function("released-behind-Mutex", |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, || {
                    || {
                        let mut guard = mutexed.lock().expect("not poisoned");
                        released_window(guard.0.snapshot().and_then(|s| s.now()))
                    }
                })
            })
        });
        g.finish();
    }
}

/// The hot path while a writer updates the segment non-stop on the other core: every call
/// sees a new generation, and the cache line holding it moves between cores.
fn under_writer(c: &mut Criterion) {
    let mut g = c.benchmark_group("snapshot_now_under_writer");
    let Segment {
        _dir,
        path,
        mut writer,
    } = Segment::new();
    let mut ours = ShmReader::open(&path).expect("reader");
    let mut theirs = upstream_reader(&path);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            let mut tick = 0;
            let mut bound = fresh_bound(0);
            while !stop.load(Ordering::Relaxed) {
                tick += 1;
                if tick % 1024 == 0 {
                    bound = fresh_bound(tick); // keep as_of current so the status stays Synchronized
                }
                writer.write(&bound);
            }
        });
        // The writer thread keeps the snapshot fresh.
        bench_snapshot_now_pair(&mut g, &mut ours, &mut theirs, &mut || ());
        stop.store(true, Ordering::Relaxed);
    });
    g.finish();
}

/// What `ArcSwap` itself costs here: a guard from `load()`, and a full `Arc` from
/// `load_full()` (the issue quotes 4.4 ns and 9 ns on its machine). `SharedClockBound` under
/// `Strategy::ArcSwap` uses neither per call (see `src/shared/arc_swap.rs`); this is the evidence.
fn arc_swap_alone(c: &mut Criterion) {
    let mut g = c.benchmark_group("arc_swap_alone");
    let shared = arc_swap::ArcSwap::from_pointee([7u64; 8]);
    g.bench_function("load-guard", |b| {
        b.iter(|| black_box(black_box(&shared).load()[3]))
    });
    g.bench_function("load_full", |b| {
        b.iter(|| black_box(black_box(&shared).load_full()[3]))
    });
    let mut cache = arc_swap::Cache::new(&shared);
    g.bench_function("cache-load", |b| {
        b.iter(|| black_box(black_box(&mut cache).load()[3]))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = snapshot, snapshot_now, shared_now, under_writer, arc_swap_alone
}
criterion_main!(benches);
