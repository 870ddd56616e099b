//! Interoperability with the released ClockBound client, `clock-bound-shm` 2.0.3 (the
//! `upstream` dev-dependency): each side reads what the other writes, both compute the same
//! window for the same snapshot, and both writers produce the same bytes.

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use clockbound_shm::{ClockErrorBound, ClockStatus, ShmReader, ShmWriter, Timespec};
use nix::sys::time::TimeSpec;
use rustix::time::{ClockId, clock_gettime};
use upstream::ShmWrite as _;

const ALL_STATUSES: [ClockStatus; 4] = [
    ClockStatus::Unknown,
    ClockStatus::Synchronized,
    ClockStatus::FreeRunning,
    ClockStatus::Disrupted,
];

/// The same snapshot, as plain values both crates can be fed.
/// Our reader on `path`, comparing the segment alone: these tests are about the segment's
/// bytes, and the VMClock disruption check (on by default when a snapshot has the flag set)
/// would need a VMClock device this machine may not have.
fn open_ours(path: &Path) -> Result<ShmReader, clockbound_shm::ShmError> {
    ShmReader::open_with(path, &common::segment_only())
}

#[derive(Copy, Clone, Debug)]
struct Fields {
    as_of: (i64, i64),
    void_after: (i64, i64),
    bound_nsec: i64,
    disruption_marker: u64,
    max_drift_ppb: u32,
    status: ClockStatus,
    disruption_support: bool,
}

impl Fields {
    fn ours(&self) -> ClockErrorBound {
        ClockErrorBound::builder()
            .as_of(Timespec::new(self.as_of.0, self.as_of.1))
            .void_after(Timespec::new(self.void_after.0, self.void_after.1))
            .bound_nsec(self.bound_nsec)
            .disruption_marker(self.disruption_marker)
            .max_drift_ppb(self.max_drift_ppb)
            .clock_status(self.status)
            .clock_disruption_support_enabled(self.disruption_support)
            .build()
    }

    fn theirs(&self) -> upstream::ClockErrorBound {
        upstream::ClockErrorBound::new(
            TimeSpec::new(self.as_of.0, self.as_of.1),
            TimeSpec::new(self.void_after.0, self.void_after.1),
            self.bound_nsec,
            self.disruption_marker,
            self.max_drift_ppb,
            upstream_status(self.status),
            self.disruption_support,
        )
    }

    /// Every field of a snapshot our reader produced, against these values.
    fn assert_matches(&self, got: &ClockErrorBound) {
        assert_eq!(
            (got.as_of().sec(), got.as_of().nsec()),
            self.as_of,
            "as_of of {self:?}"
        );
        assert_eq!(
            (got.void_after().sec(), got.void_after().nsec()),
            self.void_after,
            "void_after of {self:?}"
        );
        assert_eq!(got.bound_nsec(), self.bound_nsec, "bound_nsec of {self:?}");
        assert_eq!(
            got.disruption_marker(),
            self.disruption_marker,
            "disruption_marker of {self:?}"
        );
        assert_eq!(
            got.max_drift_ppb(),
            self.max_drift_ppb,
            "max_drift_ppb of {self:?}"
        );
        assert_eq!(got.clock_status(), self.status, "clock_status of {self:?}");
        assert_eq!(
            got.clock_disruption_support_enabled(),
            self.disruption_support,
            "flag of {self:?}"
        );
    }
}

fn upstream_status(status: ClockStatus) -> upstream::ClockStatus {
    match status {
        ClockStatus::Unknown => upstream::ClockStatus::Unknown,
        ClockStatus::Synchronized => upstream::ClockStatus::Synchronized,
        ClockStatus::FreeRunning => upstream::ClockStatus::FreeRunning,
        ClockStatus::Disrupted => upstream::ClockStatus::Disrupted,
    }
}

/// A spread of snapshots: every status with the flag on and off, and extreme field values
/// (largest drift and bound the reader accepts, marker with every bit set, nanoseconds at the
/// top of their range, negative seconds).
fn sample_fields() -> Vec<Fields> {
    let mut all = Vec::new();
    for (i, status) in ALL_STATUSES.into_iter().enumerate() {
        for disruption_support in [false, true] {
            let i = i as i64;
            all.push(Fields {
                as_of: (1_000 + i, 123_456_789),
                void_after: (2_000 + i, 987_654_321),
                bound_nsec: 10_000 + i,
                disruption_marker: 0x0123_4567_89AB_CDEF ^ i as u64,
                max_drift_ppb: 15_000 + i as u32,
                status,
                disruption_support,
            });
        }
    }
    all.push(Fields {
        as_of: (i64::MAX, 999_999_999),
        void_after: (i64::MIN, 0),
        bound_nsec: i64::MAX,
        disruption_marker: u64::MAX,
        max_drift_ppb: 999_999_999,
        status: ClockStatus::FreeRunning,
        disruption_support: true,
    });
    all.push(Fields {
        as_of: (-5, 1),
        void_after: (0, 0),
        bound_nsec: 0,
        disruption_marker: 0,
        max_drift_ppb: 0,
        status: ClockStatus::Synchronized,
        disruption_support: false,
    });
    all
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("temp path has no NUL")
}

fn upstream_reader(path: &Path) -> upstream::ShmReader {
    upstream::ShmReader::new(&c_path(path)).expect("released reader opens the segment")
}

fn to_ours(t: rustix::time::Timespec) -> Timespec {
    #[allow(clippy::useless_conversion)] // `tv_nsec` is not `i64` on every target
    Timespec::new(t.tv_sec, i64::from(t.tv_nsec))
}

fn from_nix(t: TimeSpec) -> Timespec {
    #[allow(clippy::useless_conversion)]
    Timespec::new(t.tv_sec(), i64::from(t.tv_nsec()))
}

fn realtime() -> Timespec {
    to_ours(clock_gettime(ClockId::Realtime))
}

fn mono_coarse() -> Timespec {
    to_ours(clock_gettime(ClockId::MonotonicCoarse))
}

fn segment_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

// (a) The released writer's segment, read by our reader.

#[test]
fn released_writer_read_by_our_reader_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(&dir, "shm0");
    let mut writer = upstream::ShmWriter::new(&path).expect("released writer creates the segment");

    // A reader that stays open across updates, and a fresh one per update.
    let mut first = None;
    let mut last_generation = 0;
    for fields in sample_fields() {
        writer.write(&fields.theirs());

        let mut fresh = open_ours(&path).expect("our reader opens the released writer's segment");
        fields.assert_matches(fresh.snapshot().expect("snapshot"));
        assert!(
            fresh.generation() > last_generation,
            "generation moves forward"
        );
        last_generation = fresh.generation();
        assert_eq!(last_generation % 2, 0);

        let long_lived: &mut ShmReader = first.get_or_insert_with(|| open_ours(&path).unwrap());
        fields.assert_matches(long_lived.snapshot().expect("snapshot after an update"));
        assert_eq!(long_lived.generation(), last_generation);
        // And through the `&CStr` constructor the released client documents (its default
        // options read the VMClock page when the segment asks for it, which this machine
        // may not have).
        if !fields.disruption_support {
            fields.assert_matches(ShmReader::new(&c_path(&path)).unwrap().snapshot().unwrap());
        }
    }
}

#[test]
fn released_writer_fresh_segment_per_snapshot() {
    // One write into a brand new segment each: the first-generation path.
    for (i, fields) in sample_fields().into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(&dir, &format!("shm-{i}"));
        let mut writer = upstream::ShmWriter::new(&path).unwrap();
        writer.write(&fields.theirs());
        let mut reader = open_ours(&path).unwrap();
        fields.assert_matches(reader.snapshot().unwrap());
        assert_eq!(reader.generation(), 2);
    }
}

// (b) Our writer's segment, read by the released reader.

#[test]
fn our_writer_read_by_released_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(&dir, "shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    let mut long_lived: Option<upstream::ShmReader> = None;
    for fields in sample_fields() {
        writer.write(&fields.ours());
        let expected = fields.theirs();

        let mut fresh = upstream_reader(&path);
        let got = *fresh
            .snapshot()
            .expect("released reader takes a snapshot of our segment");
        // `ClockErrorBound` of the released crate has private fields; its `PartialEq` compares
        // all of them (padding included), its `Debug` shows all of them.
        assert_eq!(got, expected, "{fields:?}");
        assert_eq!(format!("{got:?}"), format!("{expected:?}"));
        assert_eq!(got.disruption_marker, fields.disruption_marker);
        assert_eq!(
            got.clock_disruption_support_enabled,
            fields.disruption_support
        );

        let reader = long_lived.get_or_insert_with(|| upstream_reader(&path));
        assert_eq!(
            *reader.snapshot().expect("snapshot after an update"),
            expected,
            "{fields:?}"
        );
    }
}

#[test]
fn our_writer_status_as_the_released_reader_reports_it() {
    // Fresh snapshots (as_of is now): the released `now()` reports the status as written.
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(&dir, "shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    let mut reader = None;
    for status in ALL_STATUSES {
        let as_of = mono_coarse();
        let bound = ClockErrorBound::builder()
            .as_of(as_of)
            .void_after(Timespec::new(as_of.sec() + 1_000, as_of.nsec()))
            .bound_nsec(1_000)
            .max_drift_ppb(1_000)
            .clock_status(status)
            .build();
        writer.write(&bound);
        let reader = reader.get_or_insert_with(|| upstream_reader(&path));
        let (earliest, latest, got) = reader.snapshot().unwrap().now().expect("released now()");
        assert_eq!(got, upstream_status(status));
        assert!(earliest < latest);
    }
}

// (c) The same window from both readers for the same snapshot.

/// Brackets the released `now()` between two readings of our own and checks that its window
/// is the one our `compute_bound_at` gives somewhere between them.
fn assert_same_window(path: &Path, ours: &mut ShmReader, theirs: &mut upstream::ShmReader) {
    let snapshot = *ours.snapshot().unwrap();
    let released = *theirs.snapshot().unwrap();
    for _ in 0..100 {
        // Same clock order as both `now()`s: realtime first, then monotonic.
        let real_before = realtime();
        let mono_before = mono_coarse();
        let (earliest, latest, status) = released.now().expect("released now()");
        let real_after = realtime();
        let mono_after = mono_coarse();
        let (earliest, latest) = (from_nix(earliest), from_nix(latest));

        let at = |real, mono| {
            snapshot
                .compute_bound_at(real, mono)
                .expect("our compute_bound_at")
        };
        // The released reader read its clocks somewhere in [before, after]. Its bound grows
        // with the monotonic reading; it truncates the drift term where we round up, so it
        // may be 1 ns narrower than ours for the same instant, never wider.
        let one = Timespec::new(0, 1);
        let low = at(real_before, mono_before);
        let high = at(real_after, mono_after);
        let (bound_low, bound_high) = (low.bound(), high.bound());
        let released_half_width = (latest.as_nanos() - earliest.as_nanos()) / 2;
        assert!(
            released_half_width >= bound_low.as_nanos() as i128 - 1
                && released_half_width <= bound_high.as_nanos() as i128,
            "{path:?}: released bound {released_half_width} ns outside ours [{bound_low:?}, {bound_high:?}]"
        );
        let earliest_min = at(real_before, mono_after).earliest;
        let earliest_max = at(real_after, mono_before).earliest;
        assert!(
            earliest >= earliest_min
                && earliest.as_nanos() <= earliest_max.as_nanos() + one.as_nanos(),
            "released earliest {earliest} outside [{earliest_min}, {earliest_max} + 1 ns]"
        );
        let latest_min = low.latest;
        let latest_max = high.latest;
        assert!(
            latest.as_nanos() >= latest_min.as_nanos() - one.as_nanos() && latest <= latest_max,
            "released latest {latest} outside [{latest_min} - 1 ns, {latest_max}]"
        );
        assert_eq!(
            low.clock_status,
            ClockStatus::Synchronized,
            "snapshot must be fresh"
        );
        assert_eq!(
            high.clock_status,
            ClockStatus::Synchronized,
            "snapshot must be fresh"
        );
        assert_eq!(status, upstream::ClockStatus::Synchronized);
    }
}

fn fresh_fields(age: Timespec, bound_nsec: i64, max_drift_ppb: u32) -> Fields {
    let now = mono_coarse();
    let as_of = Timespec::from_nanos(now.as_nanos() - age.as_nanos());
    Fields {
        as_of: (as_of.sec(), as_of.nsec()),
        void_after: (as_of.sec() + 1_000, as_of.nsec()),
        bound_nsec,
        disruption_marker: 42,
        max_drift_ppb,
        status: ClockStatus::Synchronized,
        disruption_support: false,
    }
}

/// Snapshots for the window comparison: as_of now or up to ~2 s ago (still Synchronized), and
/// drifts large enough that the drift term is thousands of nanoseconds. Drift stays at or
/// below 1e6 ppb so the released reader's `f64` arithmetic is exact to well below 1 ns.
fn window_cases() -> Vec<(Timespec, i64, u32)> {
    vec![
        (Timespec::new(0, 0), 10_000, 1_000),
        (Timespec::new(0, 0), 0, 0),
        (Timespec::new(1, 234_567_891), 12_345, 50_000),
        (Timespec::new(2, 0), 1, 1_000_000),
        (Timespec::new(0, 333_333_333), 987_654_321, 7),
    ]
}

#[test]
fn same_window_our_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(&dir, "shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    let mut ours = None;
    let mut theirs = None;
    for (age, bound, drift) in window_cases() {
        writer.write(&fresh_fields(age, bound, drift).ours());
        let ours = ours.get_or_insert_with(|| open_ours(&path).unwrap());
        let theirs = theirs.get_or_insert_with(|| upstream_reader(&path));
        assert_same_window(&path, ours, theirs);
    }
}

#[test]
fn same_window_released_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(&dir, "shm0");
    let mut writer = upstream::ShmWriter::new(&path).unwrap();
    let mut ours = None;
    let mut theirs = None;
    for (age, bound, drift) in window_cases() {
        writer.write(&fresh_fields(age, bound, drift).theirs());
        let ours = ours.get_or_insert_with(|| open_ours(&path).unwrap());
        let theirs = theirs.get_or_insert_with(|| upstream_reader(&path));
        assert_same_window(&path, ours, theirs);
    }
}

#[test]
fn window_width_agrees_without_drift() {
    // The released `compute_bound_at` is private, but with as_of now and a drift of 0 the
    // window is exactly real +/- bound: its width must equal ours to the nanosecond.
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(&dir, "shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(&fresh_fields(Timespec::new(0, 0), 123_456_789, 0).ours());
    let (earliest, latest, _) = upstream_reader(&path).snapshot().unwrap().now().unwrap();
    let ours = open_ours(&path).unwrap().snapshot().unwrap().now().unwrap();
    assert_eq!(latest - earliest, TimeSpec::new(0, 246_913_578));
    assert_eq!(
        ours.latest.as_nanos() - ours.earliest.as_nanos(),
        246_913_578
    );
}

// (d) The same bytes from both writers.

#[test]
fn both_writers_produce_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for (i, fields) in sample_fields().into_iter().enumerate() {
        let ours_path = segment_path(&dir, &format!("ours-{i}"));
        let theirs_path = segment_path(&dir, &format!("theirs-{i}"));
        let mut ours = ShmWriter::new(&ours_path).unwrap();
        let mut theirs = upstream::ShmWriter::new(&theirs_path).unwrap();

        // Freshly created, never written: header with version 2 and generation 0.
        let ours_bytes = fs::read(&ours_path).unwrap();
        assert_eq!(ours_bytes.len(), 80);
        assert_eq!(
            ours_bytes,
            fs::read(&theirs_path).unwrap(),
            "fresh segments differ"
        );

        // Then the same updates, the same number of times.
        for round in 1..=3u16 {
            ours.write(&fields.ours());
            theirs.write(&fields.theirs());
            let ours_bytes = fs::read(&ours_path).unwrap();
            let theirs_bytes = fs::read(&theirs_path).unwrap();
            assert_eq!(ours_bytes, theirs_bytes, "{fields:?} after {round} writes");
            // Generation at offset 14, native endian; 2 per completed write.
            assert_eq!(
                u16::from_ne_bytes([ours_bytes[14], ours_bytes[15]]),
                2 * round
            );
        }
    }
}

#[test]
fn written_header_is_the_protocol_header() {
    // Independent of the released crate: the header bytes the protocol describes (`docs::protocol`).
    let dir = tempfile::tempdir().unwrap();
    let path = segment_path(&dir, "shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(&sample_fields()[0].ours());
    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[0..4], &0x414D_5A4Eu32.to_ne_bytes());
    assert_eq!(&bytes[4..8], &0x4342_0200u32.to_ne_bytes());
    if cfg!(target_endian = "little") {
        assert_eq!(
            &bytes[0..8],
            &[0x4E, 0x5A, 0x4D, 0x41, 0x00, 0x02, 0x42, 0x43]
        );
    }
    assert_eq!(&bytes[8..12], &80u32.to_ne_bytes());
    assert_eq!(&bytes[12..14], &2u16.to_ne_bytes());
    assert_eq!(&bytes[14..16], &2u16.to_ne_bytes());
    assert_eq!(&bytes[73..80], &[0; 7], "padding is zero");
}
