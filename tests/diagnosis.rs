//! `diagnose()`: the library's explained look at a segment, which the CLI renders. The
//! VMClock verdict must be the readers' own.

use clockbound_shm::{
    ClockReadings, ClockStatus, DisruptionCheck, ReaderOptions, ShmReader, ShmWriter, VmClockCheck,
    VmClockProbe,
};

mod common;

#[test]
fn the_window_is_computed_at_the_clocks_it_shows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let bound = common::fresh_bound(5_000, 0, ClockStatus::Synchronized, false);
    ShmWriter::new(&path).unwrap().write(&bound);
    let mut reader = ShmReader::open_with(&path, &common::segment_only()).unwrap();
    let look = reader.diagnose(&mut VmClockProbe::skip()).unwrap();
    let ClockReadings::Layout2 {
        realtime,
        monotonic,
    } = look.clocks
    else {
        panic!("layout 2 readings: {:?}", look.clocks)
    };
    assert_eq!(
        look.window,
        bound.compute_bound_at(realtime, monotonic).unwrap()
    );
    assert_eq!(look.age_ns, monotonic.as_nanos() - bound.as_of().as_nanos());
    assert_eq!(look.snapshot, bound);
    assert_eq!(look.status, ClockStatus::Synchronized);
    assert!(matches!(look.vmclock, VmClockCheck::Skipped));
    assert!(look.trusted());
}

#[test]
fn a_marker_mismatch_is_disrupted_exactly_when_the_segment_asks_for_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let page = dir.path().join("vmclock0");
    common::write_vmclock_page(&page, 2, 7);
    let mut writer = ShmWriter::new(&path).unwrap();
    for (support, marker, expected) in [
        (true, 7, ClockStatus::Synchronized),
        (true, 8, ClockStatus::Disrupted),
        (false, 8, ClockStatus::Synchronized),
    ] {
        writer.write(&common::fresh_bound(
            5_000,
            marker,
            ClockStatus::Synchronized,
            support,
        ));
        let mut reader = ShmReader::open_with(&path, &common::segment_only()).unwrap();
        let look = reader
            .diagnose(&mut VmClockProbe::new(&page, true))
            .unwrap();
        assert_eq!(look.status, expected, "support {support}, marker {marker}");
        assert_eq!(look.markers_differ(), Some(marker != 7));
        // The reader with the check on says the same.
        let options = ReaderOptions::new().disruption_check(DisruptionCheck::WhenEnabled {
            vmclock_path: page.clone(),
        });
        let mut checked = ShmReader::open_with(&path, &options).unwrap();
        assert_eq!(checked.now().unwrap().clock_status, expected);
    }
}

#[test]
fn a_missing_page_the_segment_asks_for_is_a_required_failure_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    ShmWriter::new(&path).unwrap().write(&common::fresh_bound(
        5_000,
        1,
        ClockStatus::Synchronized,
        true,
    ));
    let mut reader = ShmReader::open_with(&path, &common::segment_only()).unwrap();
    let mut probe = VmClockProbe::new(dir.path().join("no-vmclock"), false);
    let look = reader.diagnose(&mut probe).unwrap();
    assert!(
        look.vmclock.required_failure().is_some(),
        "{:?}",
        look.vmclock
    );
    assert!(!look.trusted());
    assert_eq!(look.status, ClockStatus::Synchronized, "the segment's own");
}
