//! The disruption-aware `now()`: the VMClock page's marker against the segment's, for
//! `ShmReader` and both `SharedClockBound` strategies.

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread;

use clockbound_shm::{
    ClockErrorBound, ClockStatus, DisruptionCheck, ReaderOptions, SharedClockBound, ShmError,
    ShmReader, ShmWriter, Strategy,
};

/// Publishes a new marker the way the hypervisor does: odd seq, marker, even seq.
fn update_marker(page: &Path, seq_count: &mut u32, marker: u64) {
    let file = File::options().write(true).open(page).unwrap();
    *seq_count += 1;
    file.write_all_at(&seq_count.to_le_bytes(), 12).unwrap();
    file.write_all_at(&marker.to_le_bytes(), 16).unwrap();
    *seq_count += 1;
    file.write_all_at(&seq_count.to_le_bytes(), 12).unwrap();
}

fn bound(marker: u64, disruption_support: bool) -> ClockErrorBound {
    common::fresh_bound(1_000, marker, ClockStatus::Synchronized, disruption_support)
}

struct Setup {
    _dir: tempfile::TempDir,
    segment: PathBuf,
    vmclock: PathBuf,
    writer: ShmWriter,
    seq_count: u32,
}

fn setup(marker: u64, disruption_support: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("shm0");
    let vmclock = dir.path().join("vmclock0");
    std::fs::write(&vmclock, common::vmclock_page_bytes(2, marker)).unwrap();
    let mut writer = ShmWriter::new(&segment).unwrap();
    writer.write(&bound(marker, disruption_support));
    Setup {
        _dir: dir,
        segment,
        vmclock,
        writer,
        seq_count: 2,
    }
}

fn options(vmclock: &Path) -> ReaderOptions {
    ReaderOptions::new().disruption_check(DisruptionCheck::WhenEnabled {
        vmclock_path: vmclock.to_owned(),
    })
}

/// Every reader kind, opened on the same segment, answering `now()`'s status.
fn statuses(
    segment: &Path,
    options: &ReaderOptions,
) -> Vec<(String, Result<ClockStatus, ShmError>)> {
    let mut out = Vec::new();
    match ShmReader::open_with(segment, options) {
        Ok(mut r) => out.push(("ShmReader".into(), r.now().map(|w| w.clock_status))),
        Err(e) => out.push(("ShmReader".into(), Err(e))),
    }
    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        let name = format!("SharedClockBound/{strategy:?}");
        match SharedClockBound::open_with(segment, &options.clone().strategy(strategy)) {
            Ok(c) => out.push((name, c.now().map(|w| w.clock_status))),
            Err(e) => out.push((name, Err(e))),
        }
    }
    out
}

#[test]
fn equal_markers_leave_the_status_alone() {
    let s = setup(7, true);
    for (who, status) in statuses(&s.segment, &options(&s.vmclock)) {
        assert_eq!(status.unwrap(), ClockStatus::Synchronized, "{who}");
    }
}

#[test]
fn a_marker_changed_mid_run_reports_disrupted_until_the_daemon_catches_up() {
    let mut s = setup(7, true);
    let opts = options(&s.vmclock);
    let mut reader = ShmReader::open_with(&s.segment, &opts).unwrap();
    let thread_local =
        SharedClockBound::open_with(&s.segment, &opts.clone().strategy(Strategy::ThreadLocal))
            .unwrap();
    let arc_swap =
        SharedClockBound::open_with(&s.segment, &opts.clone().strategy(Strategy::ArcSwap)).unwrap();
    let all = |reader: &mut ShmReader| {
        [
            reader.now().unwrap().clock_status,
            thread_local.now().unwrap().clock_status,
            arc_swap.now().unwrap().clock_status,
        ]
    };
    assert_eq!(all(&mut reader), [ClockStatus::Synchronized; 3]);

    // Live migration: the hypervisor bumps the marker; the segment still says 7.
    update_marker(&s.vmclock, &mut s.seq_count, 8);
    assert_eq!(all(&mut reader), [ClockStatus::Disrupted; 3]);
    // Also from another thread (fresh per-thread state under ThreadLocal).
    std::thread::scope(|scope| {
        scope.spawn(|| {
            assert_eq!(
                thread_local.now().unwrap().clock_status,
                ClockStatus::Disrupted
            );
            assert_eq!(arc_swap.now().unwrap().clock_status, ClockStatus::Disrupted);
        });
    });

    // The daemon catches up and writes the new marker.
    s.writer.write(&bound(8, true));
    assert_eq!(all(&mut reader), [ClockStatus::Synchronized; 3]);
}

#[test]
fn a_missing_device_is_an_error_at_open_when_the_segment_asks_for_it() {
    let s = setup(7, true);
    let missing = s.vmclock.with_file_name("no-such-vmclock");
    for (who, status) in statuses(&s.segment, &options(&missing)) {
        match status {
            Err(e @ ShmError::VmClockIo { .. }) => {
                assert_eq!(e.errno(), rustix::io::Errno::NOENT.raw_os_error(), "{who}");
                assert!(e.to_string().contains("no-such-vmclock"), "{who}: {e}");
            }
            other => panic!("{who}: expected a VMClock I/O error, got {other:?}"),
        }
    }
}

#[test]
fn the_check_is_skipped_when_the_segment_does_not_ask_or_it_is_off() {
    // Flag off: the device is never opened, so a missing one does not matter, and a
    // different marker is not looked at.
    let s = setup(7, false);
    let missing = s.vmclock.with_file_name("no-such-vmclock");
    for (who, status) in statuses(&s.segment, &options(&missing)) {
        assert_eq!(status.unwrap(), ClockStatus::Synchronized, "{who}");
    }
    // Flag on, check off: trust the segment alone.
    let mut s = setup(7, true);
    update_marker(&s.vmclock, &mut s.seq_count, 9);
    let off = common::segment_only();
    for (who, status) in statuses(&s.segment, &off) {
        assert_eq!(status.unwrap(), ClockStatus::Synchronized, "{who}");
    }
    // And the same with the check on does see the disruption (so the line above can fail).
    for (who, status) in statuses(&s.segment, &options(&s.vmclock)) {
        assert_eq!(status.unwrap(), ClockStatus::Disrupted, "{who}");
    }
}

#[test]
fn a_page_mid_update_answers_from_the_last_marker() {
    let s = setup(7, true);
    let opts = options(&s.vmclock);
    let mut reader = ShmReader::open_with(&s.segment, &opts).unwrap();
    assert_eq!(
        reader.now().unwrap().clock_status,
        ClockStatus::Synchronized
    );
    // The hypervisor starts an update and writes a new marker, but has not finished.
    let file = File::options().write(true).open(&s.vmclock).unwrap();
    file.write_all_at(&3u32.to_le_bytes(), 12).unwrap();
    file.write_all_at(&99u64.to_le_bytes(), 16).unwrap();
    assert_eq!(
        reader.now().unwrap().clock_status,
        ClockStatus::Synchronized,
        "half-written marker used"
    );
    // It finishes: now the new marker counts.
    file.write_all_at(&4u32.to_le_bytes(), 12).unwrap();
    assert_eq!(reader.now().unwrap().clock_status, ClockStatus::Disrupted);
}

/// A daemon restarted with disruption support on while readers run (flag 0 -> 1): readers
/// opened while the flag was 0 (so without the VMClock page) start checking the page with
/// the first snapshot that has the flag, and stop reading it once a snapshot clears it
/// again. (Issue 11, item 2: the check used to be decided once, from the snapshot taken at
/// open.)
#[test]
fn disruption_support_switched_on_after_open_is_noticed_and_dropped_when_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("shm0");
    let vmclock = dir.path().join("vmclock0");
    let mut seq_count = 2;
    // The hypervisor's marker is 8; the daemon's snapshot says 7 throughout, unless noted.
    common::write_vmclock_page(&vmclock, seq_count, 8);
    let mut writer = ShmWriter::new(&segment).unwrap();
    writer.write(&common::fresh_bound(
        1_000,
        7,
        ClockStatus::Synchronized,
        false,
    ));

    let opts = options(&vmclock);
    let mut reader = ShmReader::open_with(&segment, &opts).unwrap();
    let thread_local =
        SharedClockBound::open_with(&segment, &opts.clone().strategy(Strategy::ThreadLocal))
            .unwrap();
    let arc_swap =
        SharedClockBound::open_with(&segment, &opts.clone().strategy(Strategy::ArcSwap)).unwrap();
    let all = |reader: &mut ShmReader| {
        [
            ("ShmReader", reader.now().map(|w| w.clock_status)),
            ("ThreadLocal", thread_local.now().map(|w| w.clock_status)),
            ("ArcSwap", arc_swap.now().map(|w| w.clock_status)),
        ]
    };
    let expect_all = |reader: &mut ShmReader, expected: ClockStatus, when: &str| {
        for (who, status) in all(reader) {
            match status {
                Ok(status) => assert_eq!(status, expected, "{who}, {when}"),
                Err(e) => panic!("{who}, {when}: expected {expected:?}, got the error {e}"),
            }
        }
    };
    let expect_new_threads = |expected: ClockStatus, when: &str| {
        std::thread::scope(|s| {
            s.spawn(|| {
                for (who, clock) in [("ThreadLocal", &thread_local), ("ArcSwap", &arc_swap)] {
                    let status = clock.now().map(|w| w.clock_status);
                    assert_eq!(status.ok(), Some(expected), "{who} on a new thread, {when}");
                }
            });
        });
    };

    expect_all(
        &mut reader,
        ClockStatus::Synchronized,
        "flag 0: the page is not looked at",
    );

    // The daemon restarts with disruption support on; its marker (7) is behind the page's.
    writer.write(&common::fresh_bound(
        1_000,
        7,
        ClockStatus::Synchronized,
        true,
    ));
    expect_all(
        &mut reader,
        ClockStatus::Disrupted,
        "flag switched on after open",
    );
    expect_new_threads(ClockStatus::Disrupted, "flag switched on after open");

    // The daemon catches up: equal markers.
    writer.write(&common::fresh_bound(
        1_000,
        8,
        ClockStatus::Synchronized,
        true,
    ));
    expect_all(&mut reader, ClockStatus::Synchronized, "markers equal");
    // Another migration: the page moves on, the readers see it.
    common::vmclock_update_marker(&vmclock, &mut seq_count, 9);
    expect_all(&mut reader, ClockStatus::Disrupted, "page marker moved on");

    // The daemon restarts with the support off: the page is no longer consulted. Garbling
    // it (it stays mapped) proves that: a reader that still read it would get an error.
    writer.write(&common::fresh_bound(
        1_000,
        8,
        ClockStatus::Synchronized,
        false,
    ));
    expect_all(&mut reader, ClockStatus::Synchronized, "flag switched off");
    common::vmclock_garble_page(&vmclock, &mut seq_count);
    std::fs::remove_file(&vmclock).unwrap();
    for _ in 0..3 {
        expect_all(
            &mut reader,
            ClockStatus::Synchronized,
            "flag off, page garbled and deleted",
        );
    }
    expect_new_threads(
        ClockStatus::Synchronized,
        "flag off, page garbled and deleted",
    );

    // Control: with the flag on again, the garbled page is read, and is an error.
    writer.write(&common::fresh_bound(
        1_000,
        9,
        ClockStatus::Synchronized,
        true,
    ));
    for (who, status) in all(&mut reader) {
        assert!(
            matches!(status, Err(ShmError::VmClockMalformed { .. })),
            "{who}: the garbled page must be read once the flag is back: {status:?}"
        );
    }
}

/// The VMClock page is mapped once per value, shared by all its threads, and unmapped as soon
/// as the last clone of the value is dropped, under either strategy, while a thread that used
/// the value is still alive and idle: its per-thread state for the dead value stays in its
/// slot until it uses another value or exits, but holds no mapping. Under `ThreadLocal` the
/// same holds for the segment. (Issue 11, item 6: an idle `ThreadLocal` thread's state used to
/// keep the page mapped.)
#[test]
fn a_dropped_values_vmclock_mapping_goes_with_the_value_while_its_threads_idle() {
    use std::sync::mpsc;

    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        for moves_on in [true, false] {
            let case = format!("{strategy:?}, thread moves on to another value: {moves_on}");
            let s = setup(7, true);
            let other = setup(7, false);
            let opts = options(&s.vmclock);
            // The test's writer maps the segment too.
            let writers_segment_mappings = common::mappings_of_file(&s.segment);
            let clock =
                SharedClockBound::open_with(&s.segment, &opts.clone().strategy(strategy)).unwrap();
            assert_eq!(common::mappings_of_file(&s.vmclock), 1, "{case}: at open");

            let (done_tx, done_rx) = mpsc::channel::<()>();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let worker = {
                let clock = clock.clone();
                let other_segment = other.segment.clone();
                let other_opts = options(&other.vmclock);
                thread::spawn(move || {
                    assert_eq!(clock.now().unwrap().clock_status, ClockStatus::Synchronized);
                    done_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    drop(clock);
                    done_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    if moves_on {
                        let another = SharedClockBound::open_with(
                            &other_segment,
                            &other_opts.clone().strategy(strategy),
                        )
                        .unwrap();
                        another.now().unwrap();
                        done_tx.send(()).unwrap();
                        // Stay alive until the main thread has counted.
                        go_rx.recv().unwrap();
                    }
                })
            };
            done_rx.recv().unwrap();
            assert_eq!(
                common::mappings_of_file(&s.vmclock),
                1,
                "{case}: one mapping for the value, whatever the number of threads"
            );
            drop(clock);
            go_tx.send(()).unwrap();
            done_rx.recv().unwrap();
            // The value is gone; the worker is alive and idle, its state for the value still
            // in its slot.
            assert_eq!(
                common::mappings_of_file(&s.vmclock),
                0,
                "{case}: the page released with the value, the thread idle"
            );
            if strategy == Strategy::ThreadLocal {
                // (Under `ArcSwap` the thread's cached published snapshot still maps the
                // segment, not the page, until the thread moves on or exits.)
                assert_eq!(
                    common::mappings_of_file(&s.segment),
                    writers_segment_mappings,
                    "{case}: the segment released with the value, the thread idle"
                );
            }
            go_tx.send(()).unwrap();
            if moves_on {
                done_rx.recv().unwrap();
                assert_eq!(
                    common::mappings_of_file(&s.vmclock),
                    0,
                    "{case}: released once the thread used another value"
                );
                go_tx.send(()).unwrap();
            }
            worker.join().unwrap();
            assert_eq!(
                common::mappings_of_file(&s.vmclock),
                0,
                "{case}: released once the thread exited"
            );
            assert_eq!(
                common::mappings_of_file(&s.segment),
                writers_segment_mappings,
                "{case}: the segment released once the thread exited"
            );
        }
    }
}
