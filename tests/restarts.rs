//! Readers survive daemon restarts that truncate the segment under their mappings.
//!
//! A ClockBound 3.x daemon recreates the layout-2 segment on every start: it truncates the
//! file to 0 bytes and rewrites it (see [`common::daemon_restart_v2`]). While the file is
//! empty, a load from a page of an existing mapping raises `SIGBUS`, whose default action
//! kills the process. The readers run in a child process (this test binary re-executed with
//! [`CHILD_PATH_ENV`] set, running only [`restarts_child`]), so that a death by `SIGBUS` is
//! a failed test instead of a dead test run.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clockbound_shm::{
    ClockErrorBound, ClockStatus, DisruptionCheck, ReaderOptions, SharedClockBound, ShmError,
    ShmReader, Strategy, TimeWindow, Timespec,
};
use rustix::time::{ClockId, clock_gettime};

/// Selects the child role in the re-executed test binary: the segment's path.
const CHILD_PATH_ENV: &str = "CLOCKBOUND_SHM_RESTARTS_CHILD_PATH";
/// How long the parent restarts the daemon once the child's readers are open.
const RESTARTS_FOR: Duration = Duration::from_secs(2);
/// How long the child reads: the restarts, then a quiet time in which every reader must
/// come back to the last restart's segment (a truncated mapping is noticed at the next
/// periodic re-read, one recheck interval, and mapped again).
const CHILD_RUNS_FOR: Duration = Duration::from_secs(5);
/// The parent gives up on a child that has not exited after this long.
const CHILD_DEADLINE: Duration = Duration::from_secs(20);
/// The first line the child prints once its readers are open.
const READY: &str = "restarts-child-ready";
/// Bound of the snapshot published by restart `k`: `BOUND_BASE + k` nanoseconds. With a
/// drift of 0 the window's bound is exactly that, so a reader's window says which restart
/// it comes from.
const BOUND_BASE: i64 = 1_000_000;

/// The snapshot published by restart `k`: taken now, synchronized, no drift.
fn snapshot(k: u64) -> ClockErrorBound {
    let t = clock_gettime(ClockId::MonotonicCoarse);
    let as_of = Timespec::new(t.tv_sec, t.tv_nsec);
    ClockErrorBound::new(
        as_of,
        Timespec::new(t.tv_sec + 1000, t.tv_nsec),
        BOUND_BASE + k as i64,
        0,
        0,
        ClockStatus::Synchronized,
        false,
    )
}

fn options() -> ReaderOptions {
    ReaderOptions::new().disruption_check(DisruptionCheck::Off)
}

#[test]
fn readers_survive_truncating_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    common::daemon_restart_v2(&path, &snapshot(0), Duration::ZERO).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "restarts_child", "--nocapture"])
        .env(CHILD_PATH_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the reader process");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut output = Vec::new();
    // Restart only once the readers are open: opening is not under test here.
    for line in lines.by_ref() {
        let line = line.unwrap();
        let ready = line == READY;
        output.push(line);
        if ready {
            break;
        }
    }
    // The rest of the output, read on a thread so the child never blocks on a full pipe.
    let rest = thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    // Restart every 1-100 ms, the truncation window stretched on every other restart.
    let start = Instant::now();
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut restarts = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > RESTARTS_FOR {
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        if start.elapsed() > CHILD_DEADLINE {
            let _ = child.kill();
            panic!("the reader process did not finish within {CHILD_DEADLINE:?}");
        }
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        thread::sleep(Duration::from_millis(1 + (rng >> 33) % 100));
        restarts += 1;
        let pause = if restarts % 2 == 0 {
            Duration::from_micros(200)
        } else {
            Duration::ZERO
        };
        common::daemon_restart_v2(&path, &snapshot(restarts), pause).unwrap();
    };
    output.extend(rest.join().unwrap());
    let output = output.join("\n");
    println!("{restarts} restarts; reader process said:\n{output}");
    assert_ne!(
        status.signal(),
        Some(libc::SIGBUS),
        "the reader process was killed by SIGBUS after {restarts} restarts:\n{output}"
    );
    assert!(
        status.success(),
        "reader process failed ({status}) after {restarts} restarts:\n{output}"
    );
    assert!(restarts >= 10, "only {restarts} restarts: nothing tested");
    // Every reader answers from the last restart's segment again.
    let resumed = output
        .lines()
        .filter(|l| l.contains("last restart seen"))
        .map(|l| l.ends_with(&format!("last restart seen Some({restarts})")))
        .collect::<Vec<_>>();
    assert_eq!(
        resumed, [true; 3],
        "not every reader resumed on restart {restarts}:\n{output}"
    );
}

/// What one reader thread saw.
#[derive(Debug, Default)]
struct Tally {
    calls: u64,
    transient_errors: u64,
    /// Times the window's restart number changed: the reader followed a restart.
    changes: u64,
    last_k: Option<i64>,
}

impl Tally {
    /// Records one `now()` result; a non-transient error ends the thread.
    fn record(&mut self, result: Result<TimeWindow, ShmError>) -> Result<(), String> {
        self.calls += 1;
        match result {
            Ok(window) => {
                let k = i64::try_from(window.bound().as_nanos()).unwrap_or(i64::MAX) - BOUND_BASE;
                if self.last_k.is_some_and(|last| last != k) {
                    self.changes += 1;
                }
                self.last_k = Some(k);
                Ok(())
            }
            Err(e) if e.is_transient() => {
                self.transient_errors += 1;
                Ok(())
            }
            Err(e) => Err(format!("{e} ({e:?})")),
        }
    }
}

/// The reader process: `ShmReader::now()` on one thread, a `SharedClockBound` with each
/// strategy on others, all in a loop for [`CHILD_RUNS_FOR`]. Prints one line per thread and
/// fails on any error that is not transient.
#[test]
fn restarts_child() {
    let Some(path) = std::env::var_os(CHILD_PATH_ENV) else {
        return; // only a child of `readers_survive_truncating_restarts` runs this
    };
    let path = Path::new(&path);
    let mut reader = ShmReader::open_with(path, &options()).expect("open ShmReader");
    let thread_local = SharedClockBound::with_options(path, Strategy::ThreadLocal, &options())
        .expect("open SharedClockBound (ThreadLocal)");
    let arc_swap = SharedClockBound::with_options(path, Strategy::ArcSwap, &options())
        .expect("open SharedClockBound (ArcSwap)");
    println!("{READY}");

    let stop = AtomicBool::new(false);
    let results: Vec<(&str, Result<Tally, String>)> = thread::scope(|s| {
        let threads = [
            ("ShmReader", s.spawn(|| read_until(&stop, || reader.now()))),
            (
                "ThreadLocal",
                s.spawn(|| read_until(&stop, || thread_local.now())),
            ),
            ("ArcSwap", s.spawn(|| read_until(&stop, || arc_swap.now()))),
        ];
        thread::sleep(CHILD_RUNS_FOR);
        stop.store(true, Ordering::Relaxed);
        threads
            .into_iter()
            .map(|(name, t)| (name, t.join().expect("reader thread panicked")))
            .collect()
    });
    // A mapping whose file was truncated under it while a load was in flight reads zeros
    // from then on (magic 0): it shows whether this reader's mapping was hit.
    println!("ShmReader header at the end: {:?}", reader.header());
    let mut failed = false;
    for (name, result) in results {
        match result {
            Ok(t) => println!(
                "{name}: {} calls, {} transient errors, followed {} restarts, last restart seen {:?}",
                t.calls, t.transient_errors, t.changes, t.last_k
            ),
            Err(e) => {
                failed = true;
                println!("{name}: error: {e}");
            }
        }
    }
    assert!(!failed, "a reader thread returned a non-transient error");
}

/// Calls `now` until `stop`, tallying the results; stops early on a non-transient error.
fn read_until(
    stop: &AtomicBool,
    mut now: impl FnMut() -> Result<TimeWindow, ShmError>,
) -> Result<Tally, String> {
    let mut tally = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        tally.record(now())?;
    }
    Ok(tally)
}
