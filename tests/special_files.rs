//! Paths that name something other than a regular file: a directory, a FIFO, and a FIFO
//! swapped in at the path between a type check and the open. Opening must answer quickly
//! with an I/O error that keeps a meaningful errno, and must never block.
//!
//! Each open that could block runs in a thread the test waits for with a generous timeout,
//! so a regression fails the test instead of hanging the run.

mod common;

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use clockbound_shm::{ClockErrorBound, ClockStatus, ShmError, ShmReader, ShmWriter, Timespec};
use rustix::io::Errno;

/// How long a test waits for opens that must not block before it calls them hung.
const HANG_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes a FIFO at `path`; `false` if `mkfifo` is unavailable.
fn mkfifo(path: &Path) -> bool {
    std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

/// Opens the FIFO at `path` for writing without blocking: wakes a reader blocked opening
/// it (an open for reading waits for a writer). Fails harmlessly when no reader waits.
fn wake_blocked_fifo_readers(path: &Path) {
    let _ = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
}

/// A valid layout 2 segment written at `path`.
fn write_segment(path: &Path) {
    let mut writer = ShmWriter::new(path).unwrap();
    writer.write(
        &ClockErrorBound::builder()
            .as_of(Timespec::new(1, 0))
            .void_after(Timespec::new(1_001, 0))
            .bound_nsec(1_000)
            .max_drift_ppb(1_000)
            .clock_status(ClockStatus::Synchronized)
            .build(),
    );
}

fn expect_io_errno(result: Result<ShmReader, ShmError>, errno: Errno, what: &str) {
    match result {
        Err(e @ ShmError::Io { .. }) => {
            assert_eq!(e.errno(), errno.raw_os_error(), "{what}: {e}");
            assert!(!e.is_transient(), "{what}: {e}");
        }
        other => panic!("{what}: expected an I/O error, got {other:?}"),
    }
}

#[test]
fn a_directory_is_eisdir() {
    let dir = tempfile::tempdir().unwrap();
    expect_io_errno(
        ShmReader::open_with(dir.path(), &common::segment_only()),
        Errno::ISDIR,
        "directory",
    );
}

#[test]
fn a_fifo_is_refused_at_once_with_einval() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("shm0");
    if !mkfifo(&fifo) {
        eprintln!("mkfifo unavailable; skipping");
        return;
    }
    let (tx, rx) = mpsc::channel();
    let path = fifo.clone();
    thread::spawn(move || {
        let _ = tx.send(ShmReader::open_with(&path, &common::segment_only()));
    });
    let result = match rx.recv_timeout(HANG_TIMEOUT) {
        Ok(result) => result,
        Err(_) => {
            wake_blocked_fifo_readers(&fifo);
            panic!("open blocked on a FIFO");
        }
    };
    expect_io_errno(result, Errno::INVAL, "FIFO");
}

/// What the opener thread of the swap test saw.
#[derive(Debug, Default)]
struct Seen {
    attempts: u64,
    segments: u64,
    fifos: u64,
    /// Anything but a segment or the FIFO's I/O error.
    unexpected: Vec<String>,
}

/// The path is swapped, atomically, between a valid segment and a FIFO as fast as another
/// thread can, while this one opens it again and again. Whatever the path names at the
/// instant of the open, the answer comes at once: the segment, or an I/O error for the FIFO.
/// A reader that checks the type by path and then opens blocks forever when the FIFO is
/// swapped in between the two (issue 11, item 6).
#[test]
fn a_fifo_swapped_in_after_any_check_does_not_block_open() {
    const MIN_ATTEMPTS: u64 = 2_000;
    const MAX_ATTEMPTS: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let regular = dir.path().join("regular");
    let fifo = dir.path().join("fifo");
    write_segment(&regular);
    if !mkfifo(&fifo) {
        eprintln!("mkfifo unavailable; skipping");
        return;
    }
    // `path` starts as the segment, then alternates: each replacement is a hard link of
    // one of the two files renamed over `path`, so `path` always names one of them.
    fs::hard_link(&regular, &path).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, dir, path) = (Arc::clone(&stop), dir.path().to_owned(), path.clone());
        let sources: [PathBuf; 2] = [fifo.clone(), regular.clone()];
        thread::spawn(move || {
            let temporary = dir.join("next");
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let source = &sources[(swaps % 2) as usize];
                fs::hard_link(source, &temporary).unwrap();
                fs::rename(&temporary, &path).unwrap();
                swaps += 1;
            }
            swaps
        })
    };

    let (tx, rx) = mpsc::channel();
    let opener = {
        let (stop, path) = (Arc::clone(&stop), path.clone());
        thread::spawn(move || {
            let mut seen = Seen::default();
            while !stop.load(Ordering::Relaxed)
                && seen.attempts < MAX_ATTEMPTS
                && (seen.attempts < MIN_ATTEMPTS || seen.segments < 20 || seen.fifos < 20)
            {
                seen.attempts += 1;
                match ShmReader::open_with(&path, &common::segment_only()) {
                    Ok(_) => seen.segments += 1,
                    Err(e @ ShmError::Io { .. }) if e.errno() == Errno::INVAL.raw_os_error() => {
                        seen.fifos += 1;
                    }
                    Err(e) => seen.unexpected.push(e.to_string()),
                }
            }
            let _ = tx.send(seen);
        })
    };

    let start = Instant::now();
    let outcome = rx.recv_timeout(HANG_TIMEOUT);
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    let seen = match outcome {
        Ok(seen) => seen,
        Err(_) => {
            // Release the blocked opener (it counts as the FIFO's reader) before failing.
            while !opener.is_finished() && start.elapsed() < 2 * HANG_TIMEOUT {
                wake_blocked_fifo_readers(&fifo);
                thread::sleep(Duration::from_millis(10));
            }
            panic!(
                "open blocked on a FIFO swapped in at the path ({swaps} swaps, {:.1?})",
                start.elapsed()
            );
        }
    };
    opener.join().unwrap();
    println!("{swaps} swaps, {seen:?}");
    assert!(
        seen.unexpected.is_empty(),
        "unexpected answers ({swaps} swaps): {seen:?}"
    );
    assert!(
        seen.segments > 0 && seen.fifos > 0,
        "the opens must have met both files ({swaps} swaps): {seen:?}"
    );
}
