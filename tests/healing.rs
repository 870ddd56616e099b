//! A long-lived reader heals itself: a generation that wrapped round to the cached value, a
//! daemon that recreated the file, and the counters that show what happened.

mod common;

use std::path::Path;
use std::thread;
use std::time::Duration;

use clockbound_shm::{
    ClockErrorBound, ClockStatus, DEFAULT_RECHECK_INTERVAL, ReaderOptions, SharedClockBound,
    ShmError, ShmReader, ShmWriter, Strategy, Timespec,
};

/// A snapshot with `as_of` = now - `age`, valid for 1000 s, identified by `bound_nsec`.
fn bound(bound_nsec: i64, age: Duration) -> ClockErrorBound {
    let as_of = common::monotonic_coarse_now().saturating_sub(age);
    common::synced_now()
        .as_of(as_of)
        .void_after(as_of.saturating_add(Duration::from_secs(1000)))
        .bound_nsec(bound_nsec)
        .max_drift_ppb(0)
        .build()
}

/// Half the window width: with drift 0 this is exactly the snapshot's `bound_nsec`.
fn served_bound(reader: &mut ShmReader) -> i128 {
    let w = reader.now().unwrap();
    (w.latest.as_nanos() - w.earliest.as_nanos()) / 2
}

#[test]
fn a_wrapped_generation_is_healed_after_the_recheck_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(&bound(1_111, Duration::ZERO));
    let mut reader = ShmReader::open(&path).unwrap();
    let cached = reader.generation();
    assert_eq!(served_bound(&mut reader), 1_111);

    // Exactly the updates that bring the 16-bit generation back to the cached value: the
    // even values 2..=65534 (0 is skipped), i.e. 32767 updates, all with new values.
    let new = bound(2_222, Duration::ZERO);
    for _ in 0..32_767 {
        writer.write(&new);
    }
    assert_eq!(
        writer.generation(),
        cached,
        "the generation wrapped round to the cached one"
    );

    // The hazard is real: right after the wrap the reader cannot tell, and serves the old
    // snapshot (this is what the recheck exists for).
    assert_eq!(reader.snapshot().unwrap().bound_nsec(), 1_111);
    assert_eq!(served_bound(&mut reader), 1_111);
    assert_eq!(reader.stats().rechecks, 0);

    // Once the cached as_of is older than the interval, now() re-reads in full.
    thread::sleep(DEFAULT_RECHECK_INTERVAL + Duration::from_millis(50));
    assert_eq!(served_bound(&mut reader), 2_222);
    assert_eq!(reader.snapshot().unwrap().bound_nsec(), 2_222);
    assert_eq!(reader.stats().rechecks, 1);

    // The fresh as_of pushes the next recheck a full interval away.
    for _ in 0..1000 {
        reader.now().unwrap();
    }
    assert_eq!(
        reader.stats().rechecks,
        1,
        "at most one re-read per interval"
    );
}

#[test]
fn the_recheck_interval_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(&bound(1, Duration::ZERO));
    let options = ReaderOptions::new().recheck_interval(Duration::from_millis(20));
    let mut reader = ShmReader::open_with(&path, &options).unwrap();
    for _ in 0..32_767 {
        writer.write(&bound(2, Duration::ZERO));
    }
    thread::sleep(Duration::from_millis(60));
    assert_eq!(served_bound(&mut reader), 2);
}

fn recreate(path: &Path, contents: &ClockErrorBound) -> ShmWriter {
    std::fs::remove_file(path).unwrap();
    let mut writer = ShmWriter::new(path).unwrap();
    writer.write(contents);
    writer
}

#[test]
fn the_reader_follows_a_recreated_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let mut old_writer = ShmWriter::new(&path).unwrap();
    // The last snapshot the old daemon wrote is already past the 60 s grace.
    old_writer.write(&bound(1_111, Duration::from_secs(70)));
    let mut reader = ShmReader::open(&path).unwrap();
    assert_eq!(reader.now().unwrap().clock_status, ClockStatus::FreeRunning);
    drop(old_writer);

    // The daemon restarts and recreates the segment: same path, new file.
    let _new_writer = recreate(&path, &bound(2_222, Duration::ZERO));
    // The first call above already looked at the path (the snapshot was stale), so the
    // next look is one recheck interval later: until then the old file still answers.
    assert_eq!(served_bound(&mut reader), 1_111);
    assert_eq!(reader.stats().reopens, 0);
    // The old mapping can never see the new file's updates; once the interval has passed
    // the reader notices the stale snapshot, sees the path names another file, and maps it.
    thread::sleep(DEFAULT_RECHECK_INTERVAL + Duration::from_millis(50));
    assert_eq!(served_bound(&mut reader), 2_222);
    assert_eq!(
        reader.now().unwrap().clock_status,
        ClockStatus::Synchronized
    );
    assert_eq!(reader.stats().reopens, 1);
    for _ in 0..100 {
        reader.now().unwrap();
    }
    assert_eq!(reader.stats().reopens, 1);
}

#[test]
fn a_fresh_snapshot_is_never_second_guessed() {
    // While the snapshot is younger than the grace period the reader does not stat the
    // path, so it stays on its file even if the path changed (it will follow once the old
    // snapshot goes stale).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(&bound(1_111, Duration::ZERO));
    let mut reader = ShmReader::open(&path).unwrap();
    drop(writer);
    let _new = recreate(&path, &bound(2_222, Duration::ZERO));
    assert_eq!(served_bound(&mut reader), 1_111);
    assert_eq!(reader.stats().reopens, 0);
}

#[test]
fn a_deleted_segment_keeps_answering_and_degrades() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(&bound(1_111, Duration::from_secs(65)));
    let mut reader = ShmReader::open(&path).unwrap();
    drop(writer);
    std::fs::remove_file(&path).unwrap();
    // No new file: the old snapshot stands, degraded by its age; no error, no reopen.
    let w = reader.now().unwrap();
    assert_eq!(w.clock_status, ClockStatus::FreeRunning);
    assert_eq!(reader.stats().reopens, 0);
}

#[test]
fn stats_count_what_the_reader_did() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(&bound(1, Duration::ZERO));
    let mut reader = ShmReader::open(&path).unwrap();
    assert_eq!(reader.stats().full_reads, 1);
    for _ in 0..10 {
        reader.snapshot().unwrap();
    }
    assert_eq!(reader.stats().cache_answers, 10);
    writer.write(&bound(2, Duration::ZERO));
    reader.snapshot().unwrap();
    assert_eq!(reader.stats().full_reads, 2);
    writer.simulate_interrupted_update();
    reader.snapshot().unwrap();
    let stats = reader.stats();
    assert_eq!(
        (stats.odd_generations, stats.cache_answers, stats.full_reads),
        (1, 11, 2)
    );
}

// The same healing through `SharedClockBound`, both strategies.

fn shared(path: &Path, strategy: Strategy, recheck: Duration) -> SharedClockBound {
    let options = ReaderOptions::new().recheck_interval(recheck);
    SharedClockBound::open_with(path, &options.clone().strategy(strategy)).unwrap()
}

fn shared_bound(clock: &SharedClockBound) -> i128 {
    let w = clock.now().unwrap();
    (w.latest.as_nanos() - w.earliest.as_nanos()) / 2
}

#[test]
fn shared_values_heal_a_wrapped_generation() {
    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shm0");
        let mut writer = ShmWriter::new(&path).unwrap();
        writer.write(&bound(1_111, Duration::ZERO));
        let clock = shared(&path, strategy, Duration::from_millis(100));
        assert_eq!(shared_bound(&clock), 1_111);
        for _ in 0..32_767 {
            writer.write(&bound(2_222, Duration::ZERO));
        }
        assert_eq!(
            shared_bound(&clock),
            1_111,
            "{strategy:?}: the wrap is invisible at first"
        );
        thread::sleep(Duration::from_millis(150));
        assert_eq!(
            shared_bound(&clock),
            2_222,
            "{strategy:?}: healed after the interval"
        );
        assert_eq!(clock.snapshot().unwrap().bound_nsec(), 2_222);
        assert!(
            clock.stats().rechecks >= 1,
            "{strategy:?}: {:?}",
            clock.stats()
        );
    }
}

#[test]
fn shared_values_follow_a_recreated_file_with_one_new_mapping() {
    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shm0");
        let mut old_writer = ShmWriter::new(&path).unwrap();
        old_writer.write(&bound(1_111, Duration::from_secs(10)));
        let old_generation = old_writer.generation();
        let clock = shared(&path, strategy, Duration::from_millis(100));
        assert_eq!(clock.generation(), old_generation);
        assert_eq!(clock.header().generation, old_generation);
        // Two threads have used the value before the daemon restarts.
        // (Joined explicitly: that waits for the thread's thread-locals to be dropped too.)
        thread::scope(|s| {
            s.spawn(|| assert_eq!(shared_bound(&clock), 1_111))
                .join()
                .unwrap();
        });
        assert_eq!(shared_bound(&clock), 1_111);
        drop(old_writer);
        let mut new_writer = recreate(&path, &bound(2_222, Duration::ZERO));
        // The new writer maps the new file too: that is the baseline.
        let writers_mapping = common::mappings_of_file(&path);
        assert_eq!(writers_mapping, 1);
        thread::sleep(Duration::from_millis(150));

        // Both threads follow the path to the new file...
        assert_eq!(shared_bound(&clock), 2_222, "{strategy:?}");
        thread::scope(|s| {
            s.spawn(|| assert_eq!(shared_bound(&clock), 2_222, "{strategy:?}, other thread"))
                .join()
                .unwrap();
        });
        assert_eq!(clock.now().unwrap().clock_status, ClockStatus::Synchronized);
        // ...through a single new mapping for the whole value.
        assert_eq!(
            common::mappings_of_file(&path),
            writers_mapping + 1,
            "{strategy:?}"
        );
        assert_eq!(clock.stats().reopens, 1, "{strategy:?}");
        // The header and the generation are the new file's: two more updates put it ahead
        // of the old file's.
        assert_eq!(clock.header().generation, new_writer.generation());
        for _ in 0..2 {
            new_writer.write(&bound(2_222, Duration::ZERO));
        }
        assert_eq!(shared_bound(&clock), 2_222);
        assert_eq!(clock.generation(), new_writer.generation(), "{strategy:?}");
        assert_eq!(clock.header().generation, new_writer.generation());
        assert_ne!(new_writer.generation(), old_generation);
        assert_eq!((clock.header().version, clock.header().segsize), (2, 80));
        drop(clock);
        match strategy {
            Strategy::ThreadLocal => {}
            Strategy::ArcSwap => {
                // This thread's view of the published snapshot still holds it (and so its
                // mapping) until the thread moves on: its next new value prunes the view.
                assert_eq!(common::mappings_of_file(&path), writers_mapping + 1);
                let elsewhere = tempfile::tempdir().unwrap();
                let other_path = elsewhere.path().join("shm0");
                let mut other_writer = ShmWriter::new(&other_path).unwrap();
                other_writer.write(&bound(3_333, Duration::ZERO));
                let other = shared(&other_path, strategy, Duration::from_millis(100));
                assert_eq!(shared_bound(&other), 3_333);
            }
        }
        assert_eq!(
            common::mappings_of_file(&path),
            writers_mapping,
            "{strategy:?}: dropping the value unmaps"
        );
    }
}

#[test]
fn require_trusted_turns_an_untrusted_window_into_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(
        &bound(1, Duration::ZERO)
            .to_builder()
            .clock_status(ClockStatus::Unknown)
            .build(),
    );
    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        let lenient =
            SharedClockBound::open_with(&path, &ReaderOptions::new().strategy(strategy)).unwrap();
        assert_eq!(lenient.now().unwrap().clock_status, ClockStatus::Unknown);
        let strict = SharedClockBound::open_with(
            &path,
            &ReaderOptions::new()
                .strategy(strategy)
                .require_trusted(true),
        )
        .unwrap();
        assert!(matches!(
            strict.now(),
            Err(ShmError::ClockNotTrusted {
                status: ClockStatus::Unknown
            })
        ));
        assert!(
            strict.after(Timespec::MIN).is_err(),
            "queries go through the same check"
        );
        // The other handle to the same segment keeps its setting.
        assert!(lenient.now().is_ok());
    }
}
