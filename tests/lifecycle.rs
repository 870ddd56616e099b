//! A segment's life with a writer and readers open on it at once: wipes, a writer that dies
//! mid-update, the generation wrapping around, warm and cold restarts.
//!
//! Header fields are checked in the file's bytes at the protocol's offsets (`docs::protocol`) (version at 12,
//! generation at 14), written here as literals.

mod common;

use std::fs;
use std::path::Path;

use clockbound_shm::{
    ClockErrorBound, ClockStatus, FREE_RUNNING_GRACE_2_0_3, NotInitialized, ShmError, ShmReader,
    ShmWriter, Timespec,
};

/// Our reader, on the segment alone: some snapshots here set the disruption-support flag,
/// and the default options would then also open a VMClock device this machine may lack.
fn open_reader(path: &Path) -> Result<ShmReader, ShmError> {
    ShmReader::open_with(path, &common::segment_only())
}

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec::new(sec, nsec)
}

/// A snapshot with recognisable fields: as_of at `sec`, void_after 1000 s later.
fn bound(sec: i64, marker: u64) -> ClockErrorBound {
    ClockErrorBound::builder()
        .as_of(ts(sec, 0))
        .void_after(ts(sec + 1_000, 0))
        .bound_nsec(10_000)
        .disruption_marker(marker)
        .max_drift_ppb(1_000)
        .clock_status(ClockStatus::Synchronized)
        .clock_disruption_support_enabled(marker % 2 == 1)
        .build()
}

fn not_initialized_reason(path: &Path) -> NotInitialized {
    match open_reader(path) {
        Err(err @ ShmError::SegmentNotInitialized { .. }) => {
            assert!(err.is_transient());
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
            let ShmError::SegmentNotInitialized {
                reason,
                path: in_error,
            } = err
            else {
                unreachable!()
            };
            assert_eq!(&*in_error, path);
            reason
        }
        other => panic!("expected SegmentNotInitialized, got {other:?}"),
    }
}

/// Wipe and write again while a reader is open, with the generation before the wipe `writes`
/// updates in (2 per update).
fn wipe_and_come_back(writes_before_wipe: u64) {
    let (_dir, path) = common::temp_segment("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    for i in 1..=writes_before_wipe {
        writer.write(&bound(100, i));
    }
    let before = bound(100, writes_before_wipe);
    let mut reader = open_reader(&path).unwrap();
    assert_eq!(reader.snapshot().unwrap(), &before);

    writer.wipe();
    assert_eq!(
        common::header_of(&path),
        (0, 0),
        "a wipe leaves version 0, generation 0"
    );
    for _ in 0..3 {
        assert_eq!(
            reader.snapshot().unwrap(),
            &before,
            "the last snapshot stands while wiped"
        );
    }
    let w = reader
        .snapshot()
        .unwrap()
        .compute_bound_at(ts(0, 0), ts(101, 0))
        .unwrap();
    assert_eq!(w.clock_status, ClockStatus::Synchronized);
    assert_eq!(not_initialized_reason(&path), NotInitialized::Wiped);

    let after = bound(200, 1_000);
    writer.write(&after);
    assert_eq!(
        common::header_of(&path),
        (2, 2),
        "version back to 2, first generation after a wipe"
    );
    assert_eq!(
        reader.snapshot().unwrap(),
        &after,
        "the open reader picks up the new snapshot"
    );
    assert_eq!(reader.generation(), 2);
    assert_eq!(open_reader(&path).unwrap().snapshot().unwrap(), &after);
}

#[test]
fn wipe_then_write_again_reader_follows() {
    // Generation 6 before the wipe, 2 after: the reader sees a new generation.
    wipe_and_come_back(3);
}

#[test]
fn wipe_then_write_again_same_generation_reader_follows() {
    // One write before the wipe (generation 2) and one after (generation 2 again). The reader
    // observed generation 0 / version 0 in between, so it knows its cached generation no
    // longer identifies the payload; it must still pick up the new snapshot.
    wipe_and_come_back(1);
}

#[test]
fn reader_opening_on_a_wiped_or_never_written_segment() {
    let (_dir, path) = common::temp_segment("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    // Created, version declared, never written.
    assert_eq!(common::header_of(&path), (2, 0));
    assert_eq!(not_initialized_reason(&path), NotInitialized::NeverWritten);

    writer.write(&bound(100, 1));
    assert_eq!(
        open_reader(&path).unwrap().snapshot().unwrap(),
        &bound(100, 1)
    );

    writer.wipe();
    assert_eq!(not_initialized_reason(&path), NotInitialized::Wiped);
    writer.write(&bound(300, 2));
    let mut reader = open_reader(&path).expect("opens once written again");
    assert_eq!(reader.snapshot().unwrap(), &bound(300, 2));
}

#[test]
fn writer_dies_mid_update() {
    let (_dir, path) = common::temp_segment("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    let last = ClockErrorBound::builder()
        .as_of(ts(1_000, 0))
        .void_after(ts(1_020, 0))
        .bound_nsec(1_000)
        .disruption_marker(9)
        .max_drift_ppb(1_000_000)
        .clock_status(ClockStatus::Synchronized)
        .build();
    writer.write(&last);
    let mut reader = open_reader(&path).unwrap();
    assert_eq!(reader.snapshot().unwrap(), &last);

    writer.simulate_interrupted_update();
    assert_eq!(common::header_of(&path), (2, 3), "generation left odd");
    // What the dead writer got through: part of a new payload (as_of and bound scribbled).
    {
        use std::os::unix::fs::FileExt;
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&5_000i64.to_ne_bytes(), 16).unwrap();
        file.write_all_at(&7i64.to_ne_bytes(), 48).unwrap();
    }
    for _ in 0..3 {
        assert_eq!(
            reader.snapshot().unwrap(),
            &last,
            "the last good snapshot stands"
        );
    }
    assert_eq!(reader.generation(), 2);

    // As the monotonic clock moves on, the snapshot ages: Synchronized, then FreeRunning
    // 5 s after as_of, then Unknown at void_after; the window widens all along.
    let snapshot = *reader.snapshot().unwrap();
    let at = |mono: Timespec| {
        snapshot
            .compute_bound_with_grace(ts(50_000, 0), mono, FREE_RUNNING_GRACE_2_0_3)
            .unwrap()
    };
    let expectations = [
        (ts(1_000, 0), ClockStatus::Synchronized),
        (ts(1_004, 999_999_999), ClockStatus::Synchronized),
        (ts(1_005, 0), ClockStatus::FreeRunning),
        (ts(1_019, 999_999_999), ClockStatus::FreeRunning),
        (ts(1_020, 0), ClockStatus::Unknown),
        (ts(5_000, 0), ClockStatus::Unknown),
    ];
    let mut previous_width = None;
    for (mono, status) in expectations {
        let w = at(mono);
        assert_eq!(w.clock_status, status, "at mono {mono}");
        if let Some(previous) = previous_width {
            assert!(w.bound() >= previous, "window never narrows with age");
        }
        previous_width = Some(w.bound());
    }
    assert!(
        at(ts(1_005, 0)).bound() > at(ts(1_000, 0)).bound(),
        "window widens with age"
    );
    assert_eq!(at(ts(1_000, 0)).bound().as_nanos(), 1_000);
    // 1000 ns + 1e6 ppb over 20 s = 20 ms.
    assert_eq!(at(ts(1_020, 0)).bound().as_nanos(), 1_000 + 20_000_000);

    // A reader arriving now has nothing to fall back on.
    assert_eq!(
        not_initialized_reason(&path),
        NotInitialized::UpdateInProgress { generation: 3 }
    );

    // The next update completes normally, and everyone picks it up.
    let next = bound(2_000, 10);
    writer.write(&next);
    assert_eq!(common::header_of(&path), (2, 4));
    assert_eq!(reader.snapshot().unwrap(), &next);
    assert_eq!(open_reader(&path).unwrap().snapshot().unwrap(), &next);
}

#[test]
fn generation_wraps_to_2_never_0() {
    let (_dir, path) = common::temp_segment("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(&bound(1, 0));
    let mut reader = open_reader(&path).unwrap();
    let mut i = 0;
    while writer.generation() != 65_534 {
        i += 1;
        writer.write(&bound(1, i));
        assert_ne!(writer.generation(), 0);
        assert!(i < 40_000, "generation never reached 65534");
        if i % 4_096 == 0 {
            assert_eq!(reader.snapshot().unwrap(), &bound(1, i));
        }
    }
    assert_eq!(common::header_of(&path), (2, 65_534));
    assert_eq!(reader.snapshot().unwrap(), &bound(1, i));
    assert_eq!(reader.generation(), 65_534);

    let wrapped = bound(7, 12_345);
    writer.write(&wrapped);
    assert_eq!(
        common::header_of(&path),
        (2, 2),
        "65534 -> 65535 -> 2, skipping 0"
    );
    assert_eq!(writer.generation(), 2);
    assert_eq!(
        reader.snapshot().unwrap(),
        &wrapped,
        "the reader sees the update after the wrap"
    );
    assert_eq!(reader.generation(), 2);
}

#[test]
fn generation_wraps_from_a_stuck_65535() {
    let (_dir, path) = common::temp_segment("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    let mut i = 0;
    while writer.generation() != 65_534 {
        i += 1;
        writer.write(&bound(1, i));
    }
    let mut reader = open_reader(&path).unwrap();
    writer.simulate_interrupted_update();
    assert_eq!(common::header_of(&path), (2, 65_535));
    assert_eq!(reader.snapshot().unwrap(), &bound(1, i));
    writer.write(&bound(9, 9));
    assert_eq!(common::header_of(&path), (2, 2));
    assert_eq!(reader.snapshot().unwrap(), &bound(9, 9));
}

#[test]
fn warm_restart_keeps_generation_and_payload() {
    let (_dir, path) = common::temp_segment("shm0");
    let mut first = ShmWriter::new(&path).unwrap();
    for i in 1..=3 {
        first.write(&bound(100, i));
    }
    let mut reader = open_reader(&path).unwrap();
    let bytes_before = fs::read(&path).unwrap();
    drop(first);

    let mut second = ShmWriter::new(&path).unwrap();
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes_before,
        "a warm restart changes nothing"
    );
    assert_eq!(second.generation(), 6);
    assert_eq!(reader.snapshot().unwrap(), &bound(100, 3));
    assert_eq!(
        open_reader(&path).unwrap().snapshot().unwrap(),
        &bound(100, 3)
    );

    second.write(&bound(200, 4));
    assert_eq!(common::header_of(&path), (2, 8));
    assert_eq!(reader.snapshot().unwrap(), &bound(200, 4));
}

/// A writer started on a segment whose previous writer died mid-update (generation left
/// odd) restarts warm, as the daemon does: nothing is wiped, readers keep their snapshot,
/// and the first write completes the interrupted update. (Issue 11, item 6: it used to
/// wipe such a segment.)
#[test]
fn warm_restart_after_a_writer_died_mid_update() {
    let (_dir, path) = common::temp_segment("shm0");
    let mut first = ShmWriter::new(&path).unwrap();
    first.write(&bound(100, 2));
    first.write(&bound(100, 4));
    let mut reader = open_reader(&path).unwrap();
    first.simulate_interrupted_update();
    drop(first);
    assert_eq!(
        common::header_of(&path),
        (2, 5),
        "the dead writer left the generation odd"
    );
    let bytes_before = fs::read(&path).unwrap();

    let mut second = ShmWriter::new(&path).unwrap();
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes_before,
        "a warm restart changes nothing, not even the odd generation"
    );
    assert_eq!(second.generation(), 5);
    assert_eq!(reader.snapshot().unwrap(), &bound(100, 4));
    assert_eq!(reader.generation(), 4);

    // The first write completes the interrupted update: 5 -> 6.
    second.write(&bound(200, 6));
    assert_eq!(common::header_of(&path), (2, 6));
    assert_eq!(reader.snapshot().unwrap(), &bound(200, 6));
    assert_eq!(
        open_reader(&path).unwrap().snapshot().unwrap(),
        &bound(200, 6)
    );
}

#[test]
fn cold_start_on_unusable_files_wipes_to_80_bytes() {
    let mut valid_but_unsupported = Vec::new();
    valid_but_unsupported.extend_from_slice(&0x414D_5A4Eu32.to_ne_bytes());
    valid_but_unsupported.extend_from_slice(&0x4342_0200u32.to_ne_bytes());
    valid_but_unsupported.extend_from_slice(&80u32.to_ne_bytes());
    valid_but_unsupported.extend_from_slice(&3u16.to_ne_bytes()); // version 3
    valid_but_unsupported.extend_from_slice(&2u16.to_ne_bytes());
    valid_but_unsupported.resize(80, 0x11);
    let cases: [(&str, Vec<u8>); 6] = [
        ("empty", Vec::new()),
        ("short", vec![0x5A; 10]),
        ("79 bytes", vec![0x5A; 79]),
        ("garbage", (0..80u8).map(|i| i.wrapping_mul(37)).collect()),
        ("long garbage", vec![0xC3; 4096]),
        ("other version", valid_but_unsupported),
    ];
    for (what, contents) in cases {
        let (_dir, path) = common::temp_segment("shm0");
        fs::write(&path, &contents).unwrap();
        let mut writer = ShmWriter::new(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 80, "{what}: resized to one segment");
        assert_eq!(&bytes[0..4], &0x414D_5A4Eu32.to_ne_bytes(), "{what}: magic");
        assert_eq!(&bytes[4..8], &0x4342_0200u32.to_ne_bytes(), "{what}: magic");
        assert_eq!(&bytes[8..12], &80u32.to_ne_bytes(), "{what}: segsize");
        assert_eq!(
            common::header_of(&path),
            (2, 0),
            "{what}: version 2, never written"
        );
        assert_eq!(&bytes[16..80], &[0u8; 64], "{what}: payload zeroed");
        assert_eq!(
            not_initialized_reason(&path),
            NotInitialized::NeverWritten,
            "{what}"
        );

        writer.write(&bound(5, 5));
        assert_eq!(
            open_reader(&path).unwrap().snapshot().unwrap(),
            &bound(5, 5),
            "{what}"
        );
        assert_eq!(common::header_of(&path), (2, 2), "{what}");
    }
}

#[test]
fn writer_creates_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run").join("clockbound").join("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    assert!(path.parent().unwrap().is_dir());
    assert_eq!(fs::metadata(&path).unwrap().len(), 80);
    writer.write(&bound(1, 1));
    assert_eq!(
        open_reader(&path).unwrap().snapshot().unwrap(),
        &bound(1, 1)
    );
}

/// A thread's life: `SharedClockBound::now` called from a thread-local destructor, both
/// before and after the crate's own per-thread slots are torn down, answers as usual (the
/// second case takes the throwaway-state path) and never panics.
#[test]
fn shared_now_works_while_a_thread_exits() {
    use std::cell::RefCell;
    use std::sync::mpsc;

    use clockbound_shm::{SharedClockBound, Strategy};

    /// Where a thread reports the width of the window it got (or the error).
    type Report = mpsc::Sender<Result<i128, String>>;
    /// On drop (at thread exit), calls `now()` and reports what it got.
    struct CallOnExit(RefCell<Option<(SharedClockBound, Report)>>);
    impl Drop for CallOnExit {
        fn drop(&mut self) {
            if let Some((clock, report)) = self.0.borrow_mut().take() {
                let answer = clock
                    .now()
                    .map(|w| w.latest.as_nanos() - w.earliest.as_nanos())
                    .map_err(|e| e.to_string());
                let _ = report.send(answer);
            }
        }
    }
    thread_local! {
        static ON_EXIT: CallOnExit = const { CallOnExit(RefCell::new(None)) };
    }

    let (_dir, path) = common::temp_segment("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    // Drift 0 ppb: whatever the snapshot's age, every window is exactly twice the bound.
    writer.write(
        &ClockErrorBound::builder()
            .as_of(ts(0, 0))
            .void_after(ts(1_000, 0))
            .bound_nsec(10_000)
            .clock_status(ClockStatus::Synchronized)
            .build(),
    );
    let options = common::segment_only();
    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        let clock =
            SharedClockBound::open_with(&path, &options.clone().strategy(strategy)).unwrap();
        for ours_registered_first in [false, true] {
            let (report, answers) = mpsc::channel();
            let clock = clock.clone();
            std::thread::spawn(move || {
                // Thread-local destructors run in the reverse order of first use: touching
                // `ON_EXIT` first makes it run after the crate's slots are gone.
                if ours_registered_first {
                    clock.now().unwrap();
                    ON_EXIT.with(|c| *c.0.borrow_mut() = Some((clock, report)));
                } else {
                    ON_EXIT.with(|c| *c.0.borrow_mut() = Some((clock.clone(), report)));
                    clock.now().unwrap();
                }
            })
            .join()
            .unwrap();
            assert_eq!(
                answers.recv().unwrap(),
                Ok(20_000),
                "{strategy:?}, crate's slots registered first: {ours_registered_first}"
            );
        }
    }
}

/// A new thread whose first call cannot read the segment (here the writer died mid-update,
/// leaving the generation odd for good) answers from the newest snapshot any thread of the
/// value has read, not from the one taken at open; under both strategies, whether the
/// thread that read the newer snapshot had used the value before the update or not. (Issue
/// 11, item 3: `ThreadLocal` used to fall back to the snapshot taken at open.)
#[test]
fn a_new_thread_that_cannot_read_starts_from_the_newest_snapshot_seen() {
    use clockbound_shm::{SharedClockBound, Strategy};

    let options = common::segment_only();
    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        for used_before_the_update in [true, false] {
            let case = format!("{strategy:?}, used before the update: {used_before_the_update}");
            let (_dir, path) = common::temp_segment("shm0");
            let mut writer = ShmWriter::new(&path).unwrap();
            // What open reads: a wide bound the daemon marked FreeRunning.
            let at_open = common::fresh_bound(5_000_000, 2, ClockStatus::FreeRunning, false);
            writer.write(&at_open);
            let clock =
                SharedClockBound::open_with(&path, &options.clone().strategy(strategy)).unwrap();
            if used_before_the_update {
                assert_eq!(clock.snapshot().unwrap(), at_open, "{case}");
                assert_eq!(
                    clock.now().unwrap().clock_status,
                    ClockStatus::FreeRunning,
                    "{case}"
                );
            }

            // A newer snapshot, read by this (existing) thread.
            let newer = common::fresh_bound(1_000, 4, ClockStatus::Synchronized, false);
            writer.write(&newer);
            assert_eq!(
                clock.now().unwrap().clock_status,
                ClockStatus::Synchronized,
                "{case}"
            );
            assert_eq!(clock.snapshot().unwrap(), newer, "{case}");

            // The writer dies mid-update: no thread can read a fresh copy any more.
            writer.simulate_interrupted_update();
            let (window, snapshot) = {
                let clock = clock.clone();
                std::thread::spawn(move || {
                    let window = clock.now().unwrap();
                    (window, clock.snapshot().unwrap())
                })
                .join()
                .unwrap()
            };
            assert_eq!(snapshot, newer, "{case}: the new thread's snapshot");
            assert_eq!(
                window.clock_status,
                ClockStatus::Synchronized,
                "{case}: the new thread's status"
            );
            let width = window.latest.as_nanos() - window.earliest.as_nanos();
            assert!(
                width < 1_000_000,
                "{case}: the new thread's window ({width} ns) is the newer snapshot's, \
                 not the one read at open (10 ms)"
            );
        }
    }
}
