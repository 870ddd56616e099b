//! Many readers against a writer that updates as fast as it can: every snapshot a reader
//! gets must be one whole update, and a thread's snapshots must never go back in time.
//!
//! Update `k` writes a payload in which every field is a function of `k` ([`payload`]), so a
//! copy that mixes words of two updates fails [`check`]. The writer runs in a thread of this
//! process or, as the daemon does, in another process: the test binary re-executes itself
//! with [`WRITER_PATH_ENV`] set, running only [`child_writer_process`].
//!
//! The second half checks the per-thread state of `SharedClockBound`: one mapping per value
//! whatever the number of threads, values on different files kept apart within a thread,
//! and the mapping gone when the last clone is dropped.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use clockbound_shm::{
    AnySnapshot, ClockErrorBound, ClockStatus, SharedClockBound, ShmReader, ShmWriter, Strategy,
    Timespec,
};

/// How long the writer keeps updating.
const RUN_FOR: Duration = Duration::from_millis(1500);
/// Reader threads per stress test.
const READERS: usize = 6;
/// Selects writer mode in the re-executed test binary: the segment's path.
const WRITER_PATH_ENV: &str = "CLOCKBOUND_SHM_STRESS_WRITER_PATH";
/// In writer mode: how long to write, in milliseconds.
const WRITER_MILLIS_ENV: &str = "CLOCKBOUND_SHM_STRESS_WRITER_MILLIS";
/// The line on which the writer process reports its last update.
const FINAL_K_PREFIX: &str = "stress-writer-final-k=";

const NANOS: u64 = 1_000_000_000;

/// The payload of update `k`. Every field, and so every one of the eight payload words,
/// changes from any `k` to `k + 1`, and each is a different function of `k`.
fn payload(k: u64) -> ClockErrorBound {
    let status = match (k >> 1) % 4 {
        0 => ClockStatus::Unknown,
        1 => ClockStatus::Synchronized,
        2 => ClockStatus::FreeRunning,
        _ => ClockStatus::Disrupted,
    };
    ClockErrorBound::new(
        Timespec::new(k as i64, ((k * 7) % NANOS) as i64),
        Timespec::new(k as i64 + 1000, ((k * 11 + 3) % NANOS) as i64),
        (3 * k + 1) as i64,
        !k,
        ((k * 5) % NANOS) as u32,
        status,
        // Even updates only: update 1, which readers and writers open the segment at, must
        // not set the flag, or opening would also need the VMClock device.
        k & 1 == 0,
    )
}

/// The update a snapshot says it is (`as_of.sec`), if every other field agrees.
fn check(snapshot: &ClockErrorBound) -> Result<u64, String> {
    let k = snapshot.as_of().sec() as u64;
    let expected = payload(k);
    if *snapshot == expected {
        Ok(k)
    } else {
        Err(format!(
            "torn or invented snapshot: {snapshot:?}\n  update {k} is {expected:?}"
        ))
    }
}

/// The generation update `k` leaves on a segment that started at 0: 2 per update, 0
/// skipped on wrap-around (65534 -> 2).
fn generation_of(k: u64) -> u16 {
    (2 + (2 * k - 2) % 65534) as u16
}

/// Every way of reading the segment that the stress tests exercise.
#[derive(Copy, Clone, Debug)]
enum ReaderKind {
    /// One `SharedClockBound` shared by all reader threads.
    Shared(Strategy),
    /// A `ShmReader` per thread.
    PerThreadReader,
}

/// One thread's view of the run.
#[derive(Debug, Default)]
struct ThreadReport {
    snapshots: u64,
    /// Snapshots that were a later update than the one before.
    advances: u64,
    /// What the thread read after the writer had finished.
    last: u64,
}

/// Runs `READERS` threads reading with `kind` until `writer_done`, then once more.
/// Returns one report per thread, or the first inconsistency found.
fn run_readers(
    path: &Path,
    kind: ReaderKind,
    writer_done: &AtomicBool,
    start_writer: impl FnOnce() -> u64,
) -> (Vec<ThreadReport>, u64) {
    let shared = match kind {
        ReaderKind::Shared(strategy) => Some(
            SharedClockBound::open_with(path, &common::segment_only().clone().strategy(strategy))
                .expect("open shared"),
        ),
        ReaderKind::PerThreadReader => None,
    };
    thread::scope(|s| {
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let shared = shared.clone();
                // Per-thread readers are opened here, before the writer starts: opening
                // against a writer that never pauses may rightly fail as transient (the
                // first snapshot needs one quiet moment), and that is not under test.
                // Without the disruption check: even updates set the flag, and a reader
                // opened on one would want the VMClock device.
                let mut reader = match shared {
                    Some(_) => None,
                    None => Some(
                        ShmReader::open_with(path, &common::segment_only()).expect("open reader"),
                    ),
                };
                s.spawn(move || -> Result<ThreadReport, String> {
                    let mut read = |_n: u64| -> Result<(u64, Option<u16>), String> {
                        match (&shared, &mut reader) {
                            (Some(clock), _) => {
                                match clock.snapshot().map_err(|e| e.to_string())? {
                                    AnySnapshot::V2(snapshot) => Ok((check(&snapshot)?, None)),
                                    other => {
                                        Err(format!("expected a layout 2 snapshot, got {other:?}"))
                                    }
                                }
                            }
                            (None, Some(reader)) => {
                                let snapshot = *reader.snapshot().map_err(|e| e.to_string())?;
                                Ok((check(&snapshot)?, Some(reader.generation())))
                            }
                            (None, None) => unreachable!(),
                        }
                    };
                    let mut report = ThreadReport::default();
                    let mut previous = 0;
                    let mut n = 0;
                    let mut step = || -> Result<u64, String> {
                        n += 1;
                        let (k, generation) = read(n)?;
                        if let Some(generation) = generation {
                            if generation != generation_of(k) {
                                return Err(format!(
                                    "update {k} reported with generation {generation}, \
                                     expected {}",
                                    generation_of(k)
                                ));
                            }
                        }
                        if k < previous {
                            return Err(format!("went back from update {previous} to {k}"));
                        }
                        report.snapshots += 1;
                        report.advances += u64::from(k > previous && previous != 0);
                        previous = k;
                        Ok(k)
                    };
                    while !writer_done.load(Ordering::Acquire) {
                        step()?;
                    }
                    // The writer has finished: this read must see its last update.
                    report.last = step()?;
                    Ok(report)
                })
            })
            .collect();
        // Readers stop however the writer ends, panics included.
        struct SetOnDrop<'a>(&'a AtomicBool);
        impl Drop for SetOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let done = SetOnDrop(writer_done);
        let final_k = start_writer();
        drop(done);
        let reports = readers
            .into_iter()
            .map(|r| match r.join().expect("reader thread panicked") {
                Ok(report) => report,
                Err(problem) => panic!("{kind:?}: {problem}"),
            })
            .collect();
        (reports, final_k)
    })
}

/// Checks what the readers saw against what the writer wrote.
fn assert_reports(kind: ReaderKind, first_k: u64, final_k: u64, reports: &[ThreadReport]) {
    let written = final_k - first_k;
    assert!(
        written >= 1000,
        "{kind:?}: the writer made only {written} updates"
    );
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(
            report.last, final_k,
            "{kind:?}: thread {i} read update {} after the writer finished at {final_k}",
            report.last
        );
        // Every thread must have seen the segment move while it was being written, or the
        // run proved nothing about torn reads.
        assert!(
            report.advances >= 2,
            "{kind:?}: thread {i} saw only {} changes in {} snapshots",
            report.advances,
            report.snapshots
        );
    }
    let snapshots: u64 = reports.iter().map(|r| r.snapshots).sum();
    let advances: u64 = reports.iter().map(|r| r.advances).sum();
    println!(
        "{kind:?}: {written} updates, {READERS} readers, {snapshots} snapshots, {advances} fresh"
    );
}

/// A new segment holding update 1, written and closed again.
fn new_segment(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("shm0");
    let mut writer = ShmWriter::new(&path).expect("create segment");
    writer.write(&payload(1));
    path
}

fn stress_with_writer_thread(kind: ReaderKind) {
    let dir = tempfile::tempdir().unwrap();
    let path = new_segment(&dir);
    let writer_done = AtomicBool::new(false);
    let (reports, final_k) = run_readers(&path, kind, &writer_done, || {
        let mut writer = ShmWriter::new(&path).expect("reopen segment");
        let start = Instant::now();
        let mut k = 1;
        while start.elapsed() < RUN_FOR {
            for _ in 0..64 {
                k += 1;
                writer.write(&payload(k));
            }
        }
        k
    });
    assert_reports(kind, 1, final_k, &reports);
}

fn stress_with_writer_process(kind: ReaderKind) {
    let dir = tempfile::tempdir().unwrap();
    let path = new_segment(&dir);
    let writer_done = AtomicBool::new(false);
    let (reports, final_k) = run_readers(&path, kind, &writer_done, || {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_writer_process", "--nocapture"])
            .env(WRITER_PATH_ENV, &path)
            .env(WRITER_MILLIS_ENV, RUN_FOR.as_millis().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the writer process");
        let mut output = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut output)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "writer process failed: {status}\n{output}"
        );
        output
            .lines()
            .find_map(|line| line.strip_prefix(FINAL_K_PREFIX))
            .and_then(|k| k.trim().parse().ok())
            .unwrap_or_else(|| panic!("writer process did not report its last update:\n{output}"))
    });
    assert_reports(kind, 1, final_k, &reports);
}

/// Writer mode of this binary, for the `*_writer_process` tests: continues the segment at
/// `$CLOCKBOUND_SHM_STRESS_WRITER_PATH` from the update it holds, as fast as it can, for
/// `$CLOCKBOUND_SHM_STRESS_WRITER_MILLIS`, then prints the last update. Without the
/// variable (a normal test run) it does nothing.
#[test]
fn child_writer_process() {
    let Some(path) = std::env::var_os(WRITER_PATH_ENV) else {
        return;
    };
    let millis: u64 = std::env::var(WRITER_MILLIS_ENV)
        .expect("duration")
        .parse()
        .expect("duration in ms");
    let path = PathBuf::from(path);
    // A warm restart: the writer keeps the valid segment and its generation.
    let mut k = check(
        ShmReader::open_with(&path, &common::segment_only())
            .unwrap()
            .snapshot()
            .unwrap(),
    )
    .unwrap();
    let mut writer = ShmWriter::new(&path).unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(millis) {
        for _ in 0..64 {
            k += 1;
            writer.write(&payload(k));
        }
    }
    println!("{FINAL_K_PREFIX}{k}");
}

#[test]
fn thread_local_with_writer_thread() {
    stress_with_writer_thread(ReaderKind::Shared(Strategy::ThreadLocal));
}

#[test]
fn arc_swap_with_writer_thread() {
    stress_with_writer_thread(ReaderKind::Shared(Strategy::ArcSwap));
}

#[test]
fn reader_per_thread_with_writer_thread() {
    stress_with_writer_thread(ReaderKind::PerThreadReader);
}

#[test]
fn thread_local_with_writer_process() {
    stress_with_writer_process(ReaderKind::Shared(Strategy::ThreadLocal));
}

#[test]
fn arc_swap_with_writer_process() {
    stress_with_writer_process(ReaderKind::Shared(Strategy::ArcSwap));
}

#[test]
fn reader_per_thread_with_writer_process() {
    stress_with_writer_process(ReaderKind::PerThreadReader);
}

/// The check is sharp: a snapshot with any single field taken from the next update fails.
#[test]
fn check_rejects_every_mixed_field() {
    let k = 12_345; // odd, so the status changes too (every field changes for any k)
    let (a, b) = (payload(k), payload(k + 1));
    assert_eq!(check(&a), Ok(k));
    let mixed = [
        a.to_builder()
            .as_of(Timespec::new(a.as_of().sec(), b.as_of().nsec()))
            .build(),
        a.to_builder()
            .void_after(Timespec::new(b.void_after().sec(), a.void_after().nsec()))
            .build(),
        a.to_builder()
            .void_after(Timespec::new(a.void_after().sec(), b.void_after().nsec()))
            .build(),
        a.to_builder().bound_nsec(b.bound_nsec()).build(),
        a.to_builder()
            .disruption_marker(b.disruption_marker())
            .build(),
        a.to_builder().max_drift_ppb(b.max_drift_ppb()).build(),
        a.to_builder().clock_status(b.clock_status()).build(),
        a.to_builder()
            .clock_disruption_support_enabled(b.clock_disruption_support_enabled())
            .build(),
    ];
    for (i, snapshot) in mixed.iter().enumerate() {
        assert!(check(snapshot).is_err(), "mix {i} passed: {snapshot:?}");
    }
    // A copy mixing the other way (as_of.sec of the next update) fails too.
    let ahead = ClockErrorBound::builder()
        .as_of(Timespec::new(b.as_of().sec(), a.as_of().nsec()))
        .void_after(a.void_after())
        .bound_nsec(a.bound_nsec())
        .disruption_marker(a.disruption_marker())
        .max_drift_ppb(a.max_drift_ppb())
        .clock_status(a.clock_status())
        .clock_disruption_support_enabled(a.clock_disruption_support_enabled())
        .build();
    assert!(check(&ahead).is_err());
    assert_eq!(
        (
            generation_of(1),
            generation_of(32_767),
            generation_of(32_768)
        ),
        (2, 65_534, 2)
    );
}

#[test]
fn one_mapping_for_any_number_of_threads() {
    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        let dir = tempfile::tempdir().unwrap();
        let path = new_segment(&dir);
        assert_eq!(common::mappings_of_file(&path), 0, "the writer is closed");
        let clock =
            SharedClockBound::open_with(&path, &common::segment_only().clone().strategy(strategy))
                .unwrap();
        assert_eq!(common::mappings_of_file(&path), 1);
        let all_read = Barrier::new(9);
        let counted = Barrier::new(9);
        thread::scope(|s| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        assert_eq!(clock.snapshot().unwrap(), payload(1));
                        assert!(clock.now().is_ok());
                        all_read.wait();
                        // Stay alive, state and all, while the main thread counts.
                        counted.wait();
                        assert_eq!(clock.snapshot().unwrap(), payload(1));
                    })
                })
                .collect();
            all_read.wait();
            assert_eq!(
                common::mappings_of_file(&path),
                1,
                "{strategy:?}: one mapping for 8 threads"
            );
            counted.wait();
            // Joined explicitly: unlike the end of the scope, that also waits for each
            // thread's thread-locals to be dropped (under `ArcSwap` a thread's cached view
            // of the published snapshot holds the mapping until then).
            for thread in threads {
                thread.join().unwrap();
            }
        });
        assert_eq!(common::mappings_of_file(&path), 1);
        drop(clock);
        assert_eq!(
            common::mappings_of_file(&path),
            0,
            "{strategy:?}: dropping the value unmaps"
        );
    }
}

/// Threads that used a value keep no hold on its mapping: the last clone's drop unmaps the
/// file even while such a thread (and its per-thread state) is still alive.
#[test]
fn last_clone_unmaps_while_threads_live_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = new_segment(&dir);
    let clock = SharedClockBound::open_with(
        &path,
        &common::segment_only()
            .clone()
            .strategy(Strategy::ThreadLocal),
    )
    .unwrap();
    let (used_tx, used_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let other = tempfile::tempdir().unwrap();
    let other_path = other.path().join("shm0");
    let mut other_writer = ShmWriter::new(&other_path).unwrap();
    other_writer.write(&payload(7));
    let worker = {
        let clock = clock.clone();
        let other_path = other_path.clone();
        thread::spawn(move || {
            assert_eq!(clock.snapshot().unwrap(), payload(1));
            let keep = clock.clone();
            used_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            assert_eq!(keep.snapshot().unwrap(), payload(1));
            drop((clock, keep));
            go_rx.recv().unwrap();
            // A new value in the same thread after the old one is gone.
            let fresh = SharedClockBound::open_with(
                &other_path,
                &common::segment_only()
                    .clone()
                    .strategy(Strategy::ThreadLocal),
            )
            .unwrap();
            assert_eq!(fresh.snapshot().unwrap(), payload(7));
        })
    };
    used_rx.recv().unwrap();
    drop(clock);
    assert_eq!(
        common::mappings_of_file(&path),
        1,
        "the worker still holds clones"
    );
    go_tx.send(()).unwrap();
    // The worker drops its clones, then waits: its thread-local state for the value lives on.
    while common::mappings_of_file(&path) != 0 {
        thread::sleep(Duration::from_millis(1));
        assert!(!worker.is_finished(), "the worker must still be running");
    }
    go_tx.send(()).unwrap();
    worker.join().unwrap();
}

#[test]
fn values_on_different_files_do_not_mix_in_one_thread() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (path_a, path_b) = (dir_a.path().join("shm0"), dir_b.path().join("shm0"));
    let mut writer_a = ShmWriter::new(&path_a).unwrap();
    let mut writer_b = ShmWriter::new(&path_b).unwrap();
    writer_a.write(&payload(100));
    writer_b.write(&payload(200));

    let a = SharedClockBound::open_with(
        &path_a,
        &common::segment_only()
            .clone()
            .strategy(Strategy::ThreadLocal),
    )
    .unwrap();
    let b = SharedClockBound::open_with(
        &path_b,
        &common::segment_only()
            .clone()
            .strategy(Strategy::ThreadLocal),
    )
    .unwrap();
    let b_arc = SharedClockBound::open_with(
        &path_b,
        &common::segment_only().clone().strategy(Strategy::ArcSwap),
    )
    .unwrap();
    let a_again = SharedClockBound::open_with(
        &path_a,
        &common::segment_only()
            .clone()
            .strategy(Strategy::ThreadLocal),
    )
    .unwrap();
    let expect = |ka: u64, kb: u64| {
        for _ in 0..3 {
            assert_eq!(a.snapshot().unwrap(), payload(ka));
            assert_eq!(b.snapshot().unwrap(), payload(kb));
            assert_eq!(b_arc.snapshot().unwrap(), payload(kb));
            assert_eq!(a_again.snapshot().unwrap(), payload(ka));
        }
    };
    expect(100, 200);
    writer_a.write(&payload(101));
    expect(101, 200);
    writer_b.write(&payload(201));
    expect(101, 201);
    writer_a.write(&payload(102));
    writer_b.write(&payload(202));
    expect(102, 202);

    // A value opened after another is dropped (possibly at the same address) starts clean.
    drop(a);
    let c = SharedClockBound::open_with(
        &path_b,
        &common::segment_only()
            .clone()
            .strategy(Strategy::ThreadLocal),
    )
    .unwrap();
    assert_eq!(c.snapshot().unwrap(), payload(202));
    assert_eq!(a_again.snapshot().unwrap(), payload(102));
    writer_b.write(&payload(203));
    assert_eq!(c.snapshot().unwrap(), payload(203));
    assert_eq!(b.snapshot().unwrap(), payload(203));
    assert_eq!(a_again.snapshot().unwrap(), payload(102));
}
