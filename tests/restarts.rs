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
    ClockErrorBound, ClockStatus, SharedClockBound, ShmError, ShmReader, Strategy, TimeWindow,
    Timespec,
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
    ClockErrorBound::builder()
        .as_of(as_of)
        .void_after(Timespec::new(t.tv_sec + 1000, t.tv_nsec))
        .bound_nsec(BOUND_BASE + k as i64)
        .clock_status(ClockStatus::Synchronized)
        .build()
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
    let mut reader = ShmReader::open_with(path, &common::segment_only()).expect("open ShmReader");
    let thread_local = SharedClockBound::open_with(
        path,
        &common::segment_only()
            .clone()
            .strategy(Strategy::ThreadLocal),
    )
    .expect("open SharedClockBound (ThreadLocal)");
    let arc_swap = SharedClockBound::open_with(
        path,
        &common::segment_only().clone().strategy(Strategy::ArcSwap),
    )
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

/// Selects the child role of [`one_truncation_child`]: the segment's path.
const ONE_TRUNCATION_ENV: &str = "CLOCKBOUND_SHM_ONE_TRUNCATION_CHILD_PATH";

/// One truncation, step by step: the file is truncated under a reader's mapping, the reader
/// touches it (the guard turns the `SIGBUS` into zeros), the file is rewritten, and the
/// reader maps it again. `stats()` counts exactly one truncation survived and one reopen.
#[test]
fn one_truncation_is_survived_counted_and_followed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    common::daemon_restart_v2(&path, &snapshot(0), Duration::ZERO).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "one_truncation_child", "--nocapture"])
        .env(ONE_TRUNCATION_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the reader process");
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut wait_for = |what: &str| {
        for line in from_child.by_ref() {
            if line.unwrap() == what {
                return;
            }
        }
        panic!("the reader process ended before saying {what:?}");
    };
    use std::io::Write;
    wait_for("opened");
    // Truncated and left empty until the reader has touched it.
    std::fs::File::create(&path).unwrap();
    writeln!(to_child, "truncated").unwrap();
    wait_for("touched");
    common::daemon_restart_v2(&path, &snapshot(1), Duration::ZERO).unwrap();
    writeln!(to_child, "rewritten").unwrap();
    let status = child.wait().unwrap();
    assert_ne!(status.signal(), Some(libc::SIGBUS), "killed by SIGBUS");
    assert!(status.success(), "the reader process failed: {status}");
}

#[test]
fn one_truncation_child() {
    let Some(path) = std::env::var_os(ONE_TRUNCATION_ENV) else {
        return; // only a child of `one_truncation_is_survived_counted_and_followed` runs this
    };
    let options = common::segment_only().recheck_interval(Duration::from_millis(20));
    let mut reader = ShmReader::open_with(Path::new(&path), &options).expect("open");
    let mut stdin = std::io::stdin().lines();
    let mut wait_for = |what: &str| {
        assert_eq!(stdin.next().unwrap().unwrap(), what);
    };
    println!("opened");
    wait_for("truncated");
    // The file is empty: this load faults, and the guard answers it with zeros, which read
    // as a wiped segment: the last snapshot answers.
    let w = reader.now().expect("now() on a truncated segment");
    assert_eq!(w.bound().as_nanos(), BOUND_BASE as u128, "{w:?}");
    assert_eq!(
        reader.header().magic,
        [0, 0],
        "the mapping was not replaced"
    );
    println!("touched");
    wait_for("rewritten");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let w = reader.now().expect("now() after the rewrite");
        if w.bound().as_nanos() == BOUND_BASE as u128 + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never followed the rewrite: {w:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let stats = reader.stats();
    assert_eq!(stats.truncations_survived, 1, "{stats:?}");
    assert_eq!(stats.reopens, 1, "{stats:?}");
}

/// Selects the child role of [`crash_loop_child`]: the segment's path.
const CRASH_LOOP_ENV: &str = "CLOCKBOUND_SHM_CRASH_LOOP_CHILD_PATH";

/// A daemon crash-looping at start (truncate, header, die before the first update) while a
/// service waits for it with `wait_for_sync` (both reader types): the waiting process
/// survives every truncation and returns once a healthy daemon publishes.
#[test]
fn wait_for_sync_survives_a_crash_looping_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    // The daemon has never written it: nothing to sync with before the healthy daemon.
    std::fs::File::create(&path).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_loop_child", "--nocapture"])
        .env(CRASH_LOOP_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the waiting process");
    let output = thread::spawn({
        let stdout = child.stdout.take().unwrap();
        move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        }
    });
    // About 2 s of a daemon dying right after it recreated the segment, then a healthy one.
    let start = Instant::now();
    let mut crashes = 0;
    while start.elapsed() < Duration::from_secs(2) {
        let file = std::fs::File::create(&path).unwrap();
        if crashes % 2 == 0 {
            use std::os::unix::fs::FileExt;
            let mut header = [0u8; common::HEADER_LEN];
            header[0..4].copy_from_slice(&clockbound_shm::layout::MAGIC[0].to_ne_bytes());
            header[4..8].copy_from_slice(&clockbound_shm::layout::MAGIC[1].to_ne_bytes());
            file.write_all_at(&header, 0).unwrap();
        }
        drop(file);
        crashes += 1;
        thread::sleep(Duration::from_millis(3));
    }
    common::daemon_restart_v2(&path, &snapshot(7), Duration::ZERO).unwrap();
    // The healthy daemon keeps writing, as a daemon does.
    let deadline = Instant::now() + CHILD_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the waiting process did not finish within {CHILD_DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let output = output.join().unwrap().join("\n");
    assert_ne!(
        status.signal(),
        Some(libc::SIGBUS),
        "killed by SIGBUS after {crashes} crashes:\n{output}"
    );
    assert!(
        status.success(),
        "{status} after {crashes} crashes:\n{output}"
    );
    assert!(crashes >= 50, "only {crashes} crashes: nothing tested");
}

#[test]
fn crash_loop_child() {
    let Some(path) = std::env::var_os(CRASH_LOOP_ENV) else {
        return; // only a child of `wait_for_sync_survives_a_crash_looping_daemon` runs this
    };
    let path = Path::new(&path);
    let timeout = Duration::from_secs(15);
    thread::scope(|s| {
        let reader =
            s.spawn(|| ShmReader::wait_for_sync_with(path, &common::segment_only(), timeout));
        let shared = s
            .spawn(|| SharedClockBound::wait_for_sync_with(path, &common::segment_only(), timeout));
        // Meanwhile, readers opened before the crash loop keep answering.
        let mut mine = ShmReader::open_with(path, &common::segment_only());
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if let Ok(r) = mine.as_mut() {
                let _ = r.now();
            } else {
                mine = ShmReader::open_with(path, &common::segment_only());
            }
        }
        let mut reader = reader.join().unwrap().expect("ShmReader::wait_for_sync");
        let shared = shared
            .join()
            .unwrap()
            .expect("SharedClockBound::wait_for_sync");
        let w = reader.now().unwrap();
        assert_eq!(w.bound().as_nanos(), BOUND_BASE as u128 + 7, "{w:?}");
        assert_eq!(
            shared.now().unwrap().clock_status,
            ClockStatus::Synchronized
        );
        println!("synced after the crash loop");
    });
}
