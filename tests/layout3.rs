//! Layout 3 (`shm1`, ClockBound 3.x) end to end: a segment's life with a writer and readers
//! open on it (wipes, a writer that dies mid-update, the generation wrapping, warm and cold
//! restarts, a recreated file, a wrapped generation healed), the malformed corpus and its
//! property tests, the arithmetic against an exact big-integer reference, shared values under
//! both strategies, commit-wait and `wait_for_sync`, the choice between `shm1` and `shm0`,
//! and the 60 s free-running grace.
//!
//! Segments are built byte by byte at the layout 3 offsets, written here as literals, so a
//! wrong offset in the crate makes these tests fail.
//!
//! Layout 3 needs the CPU counter, which the crate reads on x86-64 and aarch64 only, so the
//! whole file is built for those two. The tests that need a snapshot stamped "now" read the
//! counter themselves (`tests/common`) and are x86-64 only: they run here, and would need
//! an aarch64 counter read in `tests/common` to run there.

#![cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use clockbound_shm::{
    ClockErrorBoundV3, ClockStatus, NotInitialized, ShmError, ShmReaderV3, Timespec,
};

const MAGIC: [u32; 2] = [0x414D_5A4E, 0x4342_0200];

fn open_v3(path: &Path) -> Result<ShmReaderV3, ShmError> {
    ShmReaderV3::open_with(path, &common::segment_only())
}

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec::new(sec, nsec)
}

/// Ticks per second of the counter in the fixed snapshots: 2^30 Hz, so a tick is exactly
/// 2^-30 s (`period_frac` 2^63, `period_shift` 29) and counter values for whole seconds are
/// exact.
const FIXED_HZ: u64 = 1 << 30;

/// A snapshot with recognisable fields and an exactly known period: `as_of` at `sec` s,
/// `void_after` 1000 s later, `as_of_tsc` = `sec` s of ticks, status Synchronized.
fn fixed(sec: i64, marker: u64) -> ClockErrorBoundV3 {
    ClockErrorBoundV3::builder()
        .as_of_tsc(sec as u64 * FIXED_HZ)
        .as_of(ts(sec, 0))
        .void_after(ts(sec + 1_000, 0))
        .period_frac(1 << 63)
        .period_shift(29)
        .bound_nsec(10_000)
        .disruption_marker(marker)
        .max_drift_ppb(1_000)
        .clock_status(ClockStatus::Synchronized)
        .clock_disruption_support_enabled(marker % 2 == 1)
        .build()
}

fn not_initialized_reason(path: &Path) -> NotInitialized {
    match open_v3(path) {
        Err(err @ ShmError::SegmentNotInitialized { .. }) => {
            assert!(err.is_transient(), "{err:?}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
            let ShmError::SegmentNotInitialized { reason, .. } = err else {
                unreachable!()
            };
            reason
        }
        other => panic!("expected SegmentNotInitialized, got {other:?}"),
    }
}

/// Lifecycle on layout 3, as `tests/lifecycle.rs` does it on layout 2. Only fixed
/// snapshots and counter values chosen here: no clock is involved.
mod lifecycle {
    use super::*;
    use clockbound_shm::{FREE_RUNNING_GRACE, ShmWriterV3};
    use std::os::unix::fs::FileExt;

    fn wipe_and_come_back(writes_before_wipe: u64) {
        let (_dir, path) = common::temp_segment("shm1");
        let mut writer = ShmWriterV3::new(&path).unwrap();
        for i in 1..=writes_before_wipe {
            writer.write(&fixed(100, i));
        }
        let before = fixed(100, writes_before_wipe);
        let mut reader = open_v3(&path).unwrap();
        assert_eq!(reader.snapshot().unwrap(), &before);

        writer.wipe();
        assert_eq!(
            common::header_of(&path),
            (0, 0),
            "a wipe leaves version 0, generation 0"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            104,
            "a wipe keeps 104 bytes"
        );
        for _ in 0..3 {
            assert_eq!(
                reader.snapshot().unwrap(),
                &before,
                "the last snapshot stands while wiped"
            );
        }
        // The snapshot it stands on still gives a trusted window one second on.
        let w = reader
            .snapshot()
            .unwrap()
            .compute_bound_at(before.as_of_tsc() + FIXED_HZ, FREE_RUNNING_GRACE)
            .unwrap();
        assert_eq!(w.clock_status, ClockStatus::Synchronized);
        assert_eq!(w.midpoint(), ts(101, 0));
        assert_eq!(not_initialized_reason(&path), NotInitialized::Wiped);

        let after = fixed(200, 1_000);
        writer.write(&after);
        assert_eq!(
            common::header_of(&path),
            (0x0303, 2),
            "version back to 0x0303, first generation after a wipe"
        );
        assert_eq!(
            reader.snapshot().unwrap(),
            &after,
            "the open reader picks up the new snapshot"
        );
        assert_eq!(reader.generation(), 2);
        assert_eq!(open_v3(&path).unwrap().snapshot().unwrap(), &after);
    }

    #[test]
    fn wipe_then_write_again_reader_follows() {
        wipe_and_come_back(3);
    }

    #[test]
    fn wipe_then_write_again_same_generation_reader_follows() {
        // Generation 2 before the wipe and 2 again after it.
        wipe_and_come_back(1);
    }

    #[test]
    fn reader_opening_on_a_wiped_or_never_written_segment() {
        let (_dir, path) = common::temp_segment("shm1");
        let mut writer = ShmWriterV3::new(&path).unwrap();
        assert_eq!(common::header_of(&path), (0x0303, 0));
        assert_eq!(fs::metadata(&path).unwrap().len(), 104);
        assert_eq!(not_initialized_reason(&path), NotInitialized::NeverWritten);

        writer.write(&fixed(100, 1));
        assert_eq!(open_v3(&path).unwrap().snapshot().unwrap(), &fixed(100, 1));

        writer.wipe();
        assert_eq!(not_initialized_reason(&path), NotInitialized::Wiped);
        writer.write(&fixed(300, 2));
        let mut reader = open_v3(&path).expect("opens once written again");
        assert_eq!(reader.snapshot().unwrap(), &fixed(300, 2));
    }

    #[test]
    fn writer_dies_mid_update() {
        let (_dir, path) = common::temp_segment("shm1");
        let mut writer = ShmWriterV3::new(&path).unwrap();
        // Bound 1 µs, drift 1e6 ppb (1 ms per second) so the growth is easy to read.
        let last = ClockErrorBoundV3::builder()
            .as_of_tsc(1_000 * FIXED_HZ)
            .as_of(ts(1_000, 0))
            .void_after(ts(2_000, 0))
            .period_frac(1 << 63)
            .period_shift(29)
            .bound_nsec(1_000)
            .disruption_marker(9)
            .max_drift_ppb(1_000_000)
            .clock_status(ClockStatus::Synchronized)
            .build();
        writer.write(&last);
        let mut reader = open_v3(&path).unwrap();
        assert_eq!(reader.snapshot().unwrap(), &last);

        writer.simulate_interrupted_update();
        assert_eq!(common::header_of(&path), (0x0303, 3), "generation left odd");
        // What the dead writer got through: part of a new payload (as_of_tsc and bound).
        {
            let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.write_all_at(&5_000u64.to_ne_bytes(), 16).unwrap();
            file.write_all_at(&7i64.to_ne_bytes(), 72).unwrap();
        }
        for _ in 0..3 {
            assert_eq!(
                reader.snapshot().unwrap(),
                &last,
                "the last good snapshot stands"
            );
        }
        assert_eq!(reader.generation(), 2);

        // As the counter moves on, the snapshot ages: Synchronized, FreeRunning from 60 s
        // after as_of, Unknown from void_after (1000 s); the window widens all along.
        let snapshot = *reader.snapshot().unwrap();
        let at = |ticks: u64| {
            snapshot
                .compute_bound_at(snapshot.as_of_tsc() + ticks, FREE_RUNNING_GRACE)
                .unwrap()
        };
        let s = FIXED_HZ;
        let expectations = [
            (0, ClockStatus::Synchronized),
            (60 * s - 1, ClockStatus::Synchronized),
            (60 * s, ClockStatus::FreeRunning),
            (1_000 * s - 1, ClockStatus::FreeRunning),
            (1_000 * s, ClockStatus::Unknown),
            (5_000 * s, ClockStatus::Unknown),
        ];
        let mut previous: Option<clockbound_shm::TimeWindow> = None;
        for (ticks, status) in expectations {
            let w = at(ticks);
            assert_eq!(w.clock_status, status, "{ticks} ticks after as_of");
            if let Some(p) = previous {
                // Each end is rounded outwards on its own (by under 1 ns), so the
                // half-width may shrink by a nanosecond from one tick to the next; the ends
                // never go back.
                assert!(
                    w.bound() + Duration::from_nanos(1) >= p.bound(),
                    "{p:?} then {w:?}"
                );
                assert!(
                    w.earliest >= p.earliest && w.latest >= p.latest,
                    "{p:?} then {w:?}"
                );
            }
            previous = Some(w);
        }
        assert_eq!(at(0).bound().as_nanos(), 1_000);
        // 1000 ns + 1e6 ppb over 20 s = 20 ms, exactly (20 s is a whole number of ticks).
        assert_eq!(at(20 * s).bound().as_nanos(), 1_000 + 20_000_000);
        assert_eq!(at(20 * s).midpoint(), ts(1_020, 0));

        assert_eq!(
            not_initialized_reason(&path),
            NotInitialized::UpdateInProgress { generation: 3 }
        );

        let next = fixed(2_000, 10);
        writer.write(&next);
        assert_eq!(common::header_of(&path), (0x0303, 4));
        assert_eq!(reader.snapshot().unwrap(), &next);
        assert_eq!(open_v3(&path).unwrap().snapshot().unwrap(), &next);
    }

    #[test]
    fn generation_wraps_to_2_never_0() {
        let (_dir, path) = common::temp_segment("shm1");
        let mut writer = ShmWriterV3::new(&path).unwrap();
        writer.write(&fixed(1, 0));
        let mut reader = open_v3(&path).unwrap();
        let mut i = 0;
        while writer.generation() != 65_534 {
            i += 1;
            writer.write(&fixed(1, i));
            assert_ne!(writer.generation(), 0);
            assert!(i < 40_000, "generation never reached 65534");
            if i % 4_096 == 0 {
                assert_eq!(reader.snapshot().unwrap(), &fixed(1, i));
            }
        }
        assert_eq!(common::header_of(&path), (0x0303, 65_534));
        assert_eq!(reader.snapshot().unwrap(), &fixed(1, i));
        assert_eq!(reader.generation(), 65_534);

        let wrapped = fixed(7, 12_345);
        writer.write(&wrapped);
        assert_eq!(
            common::header_of(&path),
            (0x0303, 2),
            "65534 -> 65535 -> 2, skipping 0"
        );
        assert_eq!(reader.snapshot().unwrap(), &wrapped);
        assert_eq!(reader.generation(), 2);
    }

    #[test]
    fn generation_wraps_from_a_stuck_65535() {
        let (_dir, path) = common::temp_segment("shm1");
        let mut writer = ShmWriterV3::new(&path).unwrap();
        let mut i = 0;
        while writer.generation() != 65_534 {
            i += 1;
            writer.write(&fixed(1, i));
        }
        let mut reader = open_v3(&path).unwrap();
        writer.simulate_interrupted_update();
        assert_eq!(common::header_of(&path), (0x0303, 65_535));
        assert_eq!(reader.snapshot().unwrap(), &fixed(1, i));
        writer.write(&fixed(9, 9));
        assert_eq!(common::header_of(&path), (0x0303, 2));
        assert_eq!(reader.snapshot().unwrap(), &fixed(9, 9));
    }

    #[test]
    fn warm_restart_keeps_generation_and_payload() {
        let (_dir, path) = common::temp_segment("shm1");
        let mut first = ShmWriterV3::new(&path).unwrap();
        for i in 1..=3 {
            first.write(&fixed(100, i));
        }
        let mut reader = open_v3(&path).unwrap();
        let bytes_before = fs::read(&path).unwrap();
        drop(first);

        let mut second = ShmWriterV3::new(&path).unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes_before,
            "a warm restart changes nothing"
        );
        assert_eq!(second.generation(), 6);
        assert_eq!(reader.snapshot().unwrap(), &fixed(100, 3));

        second.write(&fixed(200, 4));
        assert_eq!(common::header_of(&path), (0x0303, 8));
        assert_eq!(reader.snapshot().unwrap(), &fixed(200, 4));
    }

    #[test]
    fn cold_start_on_unusable_files_wipes_to_104_bytes() {
        // A valid layout 2 segment (what `shm0` holds) is not reusable as layout 3.
        let mut layout2 = Vec::new();
        for w in MAGIC {
            layout2.extend_from_slice(&w.to_ne_bytes());
        }
        layout2.extend_from_slice(&80u32.to_ne_bytes());
        layout2.extend_from_slice(&2u16.to_ne_bytes());
        layout2.extend_from_slice(&2u16.to_ne_bytes());
        layout2.resize(80, 0);
        let cases: [(&str, Vec<u8>); 6] = [
            ("empty", Vec::new()),
            ("short", vec![0x5A; 10]),
            ("103 bytes", vec![0x5A; 103]),
            ("garbage", (0..104u8).map(|i| i.wrapping_mul(37)).collect()),
            ("long garbage", vec![0xC3; 4096]),
            ("layout 2", layout2),
        ];
        for (what, contents) in cases {
            let (_dir, path) = common::temp_segment("shm1");
            fs::write(&path, &contents).unwrap();
            let mut writer = ShmWriterV3::new(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
            let bytes = fs::read(&path).unwrap();
            assert_eq!(bytes.len(), 104, "{what}: resized to one segment");
            assert_eq!(&bytes[0..4], &MAGIC[0].to_ne_bytes(), "{what}: magic");
            assert_eq!(&bytes[4..8], &MAGIC[1].to_ne_bytes(), "{what}: magic");
            assert_eq!(&bytes[8..12], &104u32.to_ne_bytes(), "{what}: segsize");
            assert_eq!(
                common::header_of(&path),
                (0x0303, 0),
                "{what}: version 0x0303, never written"
            );
            assert_eq!(&bytes[16..104], &[0u8; 88], "{what}: payload zeroed");
            assert_eq!(
                not_initialized_reason(&path),
                NotInitialized::NeverWritten,
                "{what}"
            );

            writer.write(&fixed(5, 5));
            assert_eq!(
                open_v3(&path).unwrap().snapshot().unwrap(),
                &fixed(5, 5),
                "{what}"
            );
            assert_eq!(common::header_of(&path), (0x0303, 2), "{what}");
        }
    }
}

/// The malformed corpus for layout 3, as `tests/malformed.rs` has it for layout 2: every
/// validation rule gives its typed error naming the file, and whatever a file holds, the
/// reader returns a snapshot or a typed error, never a panic.
mod malformed {
    use super::*;
    use clockbound_shm::Malformed;
    use proptest::prelude::*;
    use rustix::io::Errno;
    use std::os::unix::fs::FileExt;
    use std::path::PathBuf;

    /// A layout 3 segment as the bytes of the file, every field at its offset.
    #[derive(Clone, Debug)]
    pub(crate) struct Segment {
        pub magic: [u32; 2],
        pub segsize: u32,
        pub version: u16,
        pub generation: u16,
        pub as_of_tsc: u64,
        pub as_of: (i64, i64),
        pub void_after: (i64, i64),
        pub period_frac: u64,
        pub period_err_frac: u64,
        pub bound_nsec: i64,
        pub disruption_marker: u64,
        pub max_drift_ppb: u32,
        pub clock_status: i32,
        pub flag: u8,
        pub period_shift: u8,
        pub period_err_shift: u8,
        pub padding: [u8; 5],
    }

    impl Segment {
        /// A segment any reader must accept.
        pub fn valid() -> Segment {
            Segment {
                magic: MAGIC,
                segsize: 104,
                version: 0x0303,
                generation: 2,
                as_of_tsc: 0x0000_1234_5678_9ABC,
                as_of: (1_700_000_000, 250_000_000),
                void_after: (1_700_001_000, 250_000_000),
                period_frac: 0x8970_0000_0000_0001,
                period_err_frac: 0xFFFF_0000_0000_0000,
                bound_nsec: 12_345,
                disruption_marker: 0xDEAD_BEEF_0000_0001,
                max_drift_ppb: 15_000,
                clock_status: 1,
                flag: 1,
                period_shift: 31,
                period_err_shift: 33,
                padding: [0; 5],
            }
        }

        pub fn bytes(&self) -> Vec<u8> {
            let mut b = vec![0u8; 104];
            let mut put = |offset: usize, bytes: &[u8]| {
                b[offset..offset + bytes.len()].copy_from_slice(bytes)
            };
            put(0, &self.magic[0].to_ne_bytes());
            put(4, &self.magic[1].to_ne_bytes());
            put(8, &self.segsize.to_ne_bytes());
            put(12, &self.version.to_ne_bytes());
            put(14, &self.generation.to_ne_bytes());
            put(16, &self.as_of_tsc.to_ne_bytes());
            put(24, &self.as_of.0.to_ne_bytes());
            put(32, &self.as_of.1.to_ne_bytes());
            put(40, &self.void_after.0.to_ne_bytes());
            put(48, &self.void_after.1.to_ne_bytes());
            put(56, &self.period_frac.to_ne_bytes());
            put(64, &self.period_err_frac.to_ne_bytes());
            put(72, &self.bound_nsec.to_ne_bytes());
            put(80, &self.disruption_marker.to_ne_bytes());
            put(88, &self.max_drift_ppb.to_ne_bytes());
            put(92, &self.clock_status.to_ne_bytes());
            put(96, &[self.flag, self.period_shift, self.period_err_shift]);
            put(99, &self.padding);
            b
        }

        /// The payload fields of a file's bytes (offsets 16..104), header left valid.
        pub fn from_bytes(bytes: &[u8]) -> Segment {
            let u64_at = |o: usize| u64::from_ne_bytes(bytes[o..o + 8].try_into().unwrap());
            let i64_at = |o: usize| i64::from_ne_bytes(bytes[o..o + 8].try_into().unwrap());
            Segment {
                as_of_tsc: u64_at(16),
                as_of: (i64_at(24), i64_at(32)),
                void_after: (i64_at(40), i64_at(48)),
                period_frac: u64_at(56),
                period_err_frac: u64_at(64),
                bound_nsec: i64_at(72),
                disruption_marker: u64_at(80),
                max_drift_ppb: u32::from_ne_bytes(bytes[88..92].try_into().unwrap()),
                clock_status: i32::from_ne_bytes(bytes[92..96].try_into().unwrap()),
                flag: bytes[96],
                period_shift: bytes[97],
                period_err_shift: bytes[98],
                padding: bytes[99..104].try_into().unwrap(),
                ..Segment::valid()
            }
        }

        /// Whether every payload field holds a value the protocol allows.
        pub fn payload_is_valid(&self) -> bool {
            (0..1_000_000_000).contains(&self.as_of.1)
                && (0..1_000_000_000).contains(&self.void_after.1)
                && self.bound_nsec >= 0
                && self.max_drift_ppb < 1_000_000_000
                && (0..=3).contains(&self.clock_status)
                && self.flag <= 1
                && self.period_shift <= 63
                && self.period_err_shift <= 63
                // Synchronized and FreeRunning need a period to carry time forward.
                && (self.period_frac != 0 || !(1..=2).contains(&self.clock_status))
        }

        /// A snapshot our reader produced holds exactly these fields.
        pub fn assert_decoded(&self, got: &ClockErrorBoundV3) {
            assert_eq!(got.as_of_tsc(), self.as_of_tsc, "as_of_tsc");
            assert_eq!((got.as_of().sec(), got.as_of().nsec()), self.as_of, "as_of");
            assert_eq!(
                (got.void_after().sec(), got.void_after().nsec()),
                self.void_after,
                "void_after"
            );
            assert_eq!(got.period_frac(), self.period_frac, "period_frac");
            assert_eq!(
                got.period_err_frac(),
                self.period_err_frac,
                "period_err_frac"
            );
            assert_eq!(got.bound_nsec(), self.bound_nsec, "bound_nsec");
            assert_eq!(got.disruption_marker(), self.disruption_marker, "marker");
            assert_eq!(got.max_drift_ppb(), self.max_drift_ppb, "max_drift_ppb");
            assert_eq!(
                got.clock_status().to_wire(),
                self.clock_status,
                "clock_status"
            );
            assert_eq!(
                u8::from(got.clock_disruption_support_enabled()),
                self.flag,
                "flag"
            );
            assert_eq!(got.period_shift(), self.period_shift, "period_shift");
            assert_eq!(
                got.period_err_shift(),
                self.period_err_shift,
                "period_err_shift"
            );
        }
    }

    fn write_file(dir: &tempfile::TempDir, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join("shm1");
        fs::write(&path, bytes).unwrap();
        path
    }

    fn open_bytes(bytes: &[u8]) -> (Result<ShmReaderV3, ShmError>, PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(&dir, bytes);
        (open_v3(&path), path, dir)
    }

    /// The error for a file holding `bytes`, checking what every content error shares: the
    /// message names the file and `errno()` is EPROTO.
    fn open_error(bytes: &[u8]) -> ShmError {
        let (result, path, _dir) = open_bytes(bytes);
        let err = result.expect_err("the segment must be rejected");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "message {err} does not name {path:?}"
        );
        assert_eq!(err.errno(), Errno::PROTO.raw_os_error(), "{err:?}");
        err
    }

    fn malformed(bytes: &[u8]) -> Malformed {
        match open_error(bytes) {
            ShmError::SegmentMalformed {
                path: Some(_),
                problem,
            } => problem,
            other => panic!("expected SegmentMalformed with a path, got {other:?}"),
        }
    }

    fn not_initialized(bytes: &[u8]) -> NotInitialized {
        match open_error(bytes) {
            ShmError::SegmentNotInitialized { reason, .. } => reason,
            other => panic!("expected SegmentNotInitialized, got {other:?}"),
        }
    }

    fn with(change: impl FnOnce(&mut Segment)) -> Vec<u8> {
        let mut s = Segment::valid();
        change(&mut s);
        s.bytes()
    }

    #[test]
    fn the_valid_segment_is_accepted_field_by_field() {
        let (result, _path, _dir) = open_bytes(&Segment::valid().bytes());
        let mut reader = result.expect("valid segment opens");
        Segment::valid().assert_decoded(reader.snapshot().unwrap());
        assert_eq!(reader.generation(), 2);
        assert_eq!(reader.layout(), clockbound_shm::LayoutVersion::V3);
        let header = reader.header();
        assert!(header.magic_ok());
        assert_eq!(
            (header.segsize, header.version, header.generation),
            (104, 0x0303, 2)
        );
        // The counter is far past this as_of_tsc: a window, or a typed error, never a panic.
        let _ = reader.now();
    }

    #[test]
    fn empty_and_short_files() {
        assert_eq!(not_initialized(&[]), NotInitialized::EmptyFile);
        let valid = Segment::valid().bytes();
        for len in [1, 4, 15] {
            for bytes in [vec![0xA5; len], valid[..len].to_vec()] {
                assert_eq!(
                    not_initialized(&bytes),
                    NotInitialized::ShortFile { len: len as u64 },
                    "len {len}"
                );
            }
        }
        for len in [16, 80, 103] {
            assert!(
                matches!(malformed(&vec![0xA5; len]), Malformed::BadMagic { .. }),
                "len {len}"
            );
            // A valid layout 3 header on a file too short for its payload (80 bytes: what a
            // layout 2 segment needs, not enough for layout 3).
            assert_eq!(
                malformed(&valid[..len]),
                Malformed::FileTooShort {
                    len: len as u64,
                    needed: 104
                },
                "len {len}"
            );
        }
    }

    #[test]
    fn bad_magic() {
        for magic in [
            [0, 0],
            [MAGIC[0], 0x4342_0300],
            [MAGIC[0].swap_bytes(), MAGIC[1].swap_bytes()],
            [MAGIC[1], MAGIC[0]],
        ] {
            assert_eq!(
                malformed(&with(|s| s.magic = magic)),
                Malformed::BadMagic {
                    found: magic,
                    expected: MAGIC
                },
                "{magic:x?}"
            );
        }
    }

    #[test]
    fn version_zero_is_wiped() {
        assert_eq!(
            not_initialized(&with(|s| s.version = 0)),
            NotInitialized::Wiped
        );
    }

    #[test]
    fn unsupported_versions() {
        // Layout 2 (what shm0 says), the split's other halves, byte-swapped 3s, layout 4.
        for version in [2, 3, 0x0300, 0x0302, 0x0103, 0x0404, 0xFFFF] {
            match open_error(&with(|s| s.version = version)) {
                ShmError::SegmentVersionNotSupported {
                    found, expected, ..
                } => assert_eq!((found, expected), (version, 0x0303)),
                other => panic!(
                    "version {version:#06x}: expected SegmentVersionNotSupported, got {other:?}"
                ),
            }
        }
    }

    #[test]
    fn generation_zero_is_never_written() {
        assert_eq!(
            not_initialized(&with(|s| s.generation = 0)),
            NotInitialized::NeverWritten
        );
    }

    #[test]
    fn generation_stuck_odd_is_update_in_progress() {
        for generation in [1, 3, 65_535] {
            assert_eq!(
                not_initialized(&with(|s| s.generation = generation)),
                NotInitialized::UpdateInProgress { generation }
            );
        }
    }

    #[test]
    fn segsize_too_small() {
        // 80 is a layout 2 segment's size.
        for segsize in [0, 16, 80, 103] {
            assert_eq!(
                malformed(&with(|s| s.segsize = segsize)),
                Malformed::SegsizeTooSmall {
                    segsize,
                    needed: 104
                },
                "segsize {segsize}"
            );
        }
    }

    #[test]
    fn segsize_beyond_the_file() {
        for segsize in [105, 112, 4096, u32::MAX] {
            assert_eq!(
                malformed(&with(|s| s.segsize = segsize)),
                Malformed::SegsizeBeyondFile {
                    segsize,
                    file_len: 104
                },
                "segsize {segsize}"
            );
        }
        let mut bytes = with(|s| s.segsize = 4096);
        bytes.resize(4096, 0xEE);
        let (result, _path, _dir) = open_bytes(&bytes);
        Segment::valid().assert_decoded(
            result
                .expect("segsize 4096 in a 4096-byte file")
                .snapshot()
                .unwrap(),
        );
        let mut bytes = Segment::valid().bytes();
        bytes.resize(200, 0xEE);
        let (result, _path, _dir) = open_bytes(&bytes);
        Segment::valid().assert_decoded(
            result
                .expect("segsize 104 in a 200-byte file")
                .snapshot()
                .unwrap(),
        );
    }

    #[test]
    fn clock_status_out_of_range() {
        for found in [4, 7, -1, i32::MAX, i32::MIN] {
            assert_eq!(
                malformed(&with(|s| s.clock_status = found)),
                Malformed::ClockStatus { found }
            );
        }
        for wire in 0..=3 {
            let (result, _path, _dir) = open_bytes(&with(|s| s.clock_status = wire));
            assert_eq!(
                result.unwrap().snapshot().unwrap().clock_status().to_wire(),
                wire
            );
        }
    }

    #[test]
    fn disruption_flag_other_than_0_or_1() {
        for found in [2, 0x80, 0xFF] {
            assert_eq!(
                malformed(&with(|s| s.flag = found)),
                Malformed::DisruptionFlag { found }
            );
        }
        for flag in [0, 1] {
            let (result, _path, _dir) = open_bytes(&with(|s| s.flag = flag));
            let got = result
                .unwrap()
                .snapshot()
                .unwrap()
                .clock_disruption_support_enabled();
            assert_eq!(u8::from(got), flag);
        }
    }

    #[test]
    fn drift_of_a_second_per_second() {
        for found in [1_000_000_000, u32::MAX] {
            assert_eq!(
                malformed(&with(|s| s.max_drift_ppb = found)),
                Malformed::DriftTooLarge { found }
            );
        }
        let (result, _path, _dir) = open_bytes(&with(|s| s.max_drift_ppb = 999_999_999));
        result
            .expect("999_999_999 ppb is allowed")
            .snapshot()
            .unwrap();
        // A snapshot built by hand with that drift fails at compute time, naming no file.
        let ceb = ClockErrorBoundV3::builder()
            .period_frac(1 << 63)
            .period_shift(29)
            .max_drift_ppb(1_000_000_000)
            .clock_status(ClockStatus::Synchronized)
            .build();
        match ceb.compute_bound_at(0, Duration::from_secs(60)) {
            Err(ShmError::SegmentMalformed {
                path: None,
                problem:
                    Malformed::DriftTooLarge {
                        found: 1_000_000_000,
                    },
            }) => {}
            other => panic!("expected DriftTooLarge, got {other:?}"),
        }
    }

    #[test]
    fn negative_bound() {
        for found in [-1, i64::MIN] {
            assert_eq!(
                malformed(&with(|s| s.bound_nsec = found)),
                Malformed::NegativeBound { found }
            );
        }
    }

    #[test]
    fn nanoseconds_out_of_range() {
        for found in [1_000_000_000, -1, i64::MAX, i64::MIN] {
            assert_eq!(
                malformed(&with(|s| s.as_of.1 = found)),
                Malformed::Nanoseconds {
                    field: "as_of",
                    found
                }
            );
            assert_eq!(
                malformed(&with(|s| s.void_after.1 = found)),
                Malformed::Nanoseconds {
                    field: "void_after",
                    found
                }
            );
        }
    }

    #[test]
    fn shifts_above_63() {
        for found in [64, 65, 200, 255] {
            assert_eq!(
                malformed(&with(|s| s.period_shift = found)),
                Malformed::ShiftTooLarge {
                    field: "period_shift",
                    found
                }
            );
            assert_eq!(
                malformed(&with(|s| s.period_err_shift = found)),
                Malformed::ShiftTooLarge {
                    field: "period_err_shift",
                    found
                }
            );
        }
        let (result, _path, _dir) = open_bytes(&with(|s| {
            s.period_shift = 63;
            s.period_err_shift = 63;
        }));
        result.expect("63 is allowed").snapshot().unwrap();
        let (result, _path, _dir) = open_bytes(&with(|s| {
            s.period_shift = 0;
            s.period_err_shift = 0;
        }));
        result.expect("0 is allowed").snapshot().unwrap();
    }

    #[test]
    fn zero_period_under_a_trusted_status() {
        for clock_status in [1, 2] {
            assert_eq!(
                malformed(&with(|s| {
                    s.period_frac = 0;
                    s.clock_status = clock_status;
                })),
                Malformed::ZeroPeriod { clock_status }
            );
        }
        // Unknown and Disrupted claim nothing, so they need no period (a daemon that has not
        // measured the counter yet writes them).
        for clock_status in [0, 3] {
            let bytes = with(|s| {
                s.period_frac = 0;
                s.clock_status = clock_status;
            });
            let (result, _path, _dir) = open_bytes(&bytes);
            let mut reader = result.expect("zero period with an untrusted status");
            Segment::from_bytes(&bytes).assert_decoded(reader.snapshot().unwrap());
            let w = reader.now().expect("a window that claims nothing");
            assert_eq!(w.clock_status.to_wire(), clock_status);
        }
        // A zero period error is fine under any status.
        let (result, _path, _dir) = open_bytes(&with(|s| s.period_err_frac = 0));
        result.unwrap().snapshot().unwrap();
    }

    #[test]
    fn padding_is_not_judged() {
        let (result, _path, _dir) = open_bytes(&with(|s| s.padding = [0xFF; 5]));
        let got = *result.unwrap().snapshot().unwrap();
        Segment {
            padding: [0xFF; 5],
            ..Segment::valid()
        }
        .assert_decoded(&got);
    }

    fn poke(path: &Path, offset: u64, bytes: &[u8]) {
        let file = fs::OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(bytes, offset).unwrap();
    }

    #[test]
    fn malformed_update_after_open_is_an_error_from_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(&dir, &Segment::valid().bytes());
        let mut reader = open_v3(&path).unwrap();
        Segment::valid().assert_decoded(reader.snapshot().unwrap());

        // A writer publishes period_shift 64 at generation 4.
        poke(&path, 97, &[64]);
        poke(&path, 14, &4u16.to_ne_bytes());
        let err = reader.snapshot().unwrap_err();
        assert!(
            matches!(
                err,
                ShmError::SegmentMalformed {
                    path: Some(_),
                    problem: Malformed::ShiftTooLarge {
                        field: "period_shift",
                        found: 64
                    }
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        // And `now()` reports the same, rather than a window from the older snapshot.
        assert!(matches!(
            reader.now(),
            Err(ShmError::SegmentMalformed { .. })
        ));

        // Then a good one at generation 6: the reader recovers.
        poke(&path, 97, &[31]);
        poke(&path, 92, &2i32.to_ne_bytes());
        poke(&path, 14, &6u16.to_ne_bytes());
        assert_eq!(
            reader.snapshot().unwrap().clock_status(),
            ClockStatus::FreeRunning
        );

        // A layout change under a running reader: layout 2's version.
        poke(&path, 12, &2u16.to_ne_bytes());
        poke(&path, 14, &8u16.to_ne_bytes());
        match reader.snapshot() {
            Err(ShmError::SegmentVersionNotSupported {
                found: 2,
                expected: 0x0303,
                ..
            }) => {}
            other => panic!("expected SegmentVersionNotSupported, got {other:?}"),
        }
    }

    // Property tests: whatever the file holds, open, `snapshot`, `now` and the arithmetic
    // return, never panic, and anything accepted is exactly what the bytes say.

    /// Runs the whole reader path on a file holding `bytes`; returns the accepted snapshot.
    fn exercise(bytes: &[u8]) -> Result<ClockErrorBoundV3, ShmError> {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(&dir, bytes);
        let mut reader = open_v3(&path)?;
        let snapshot = *reader.snapshot()?;
        let _ = reader.now();
        let _ = snapshot.now();
        let tsc = snapshot.as_of_tsc();
        for counter in [
            0,
            u64::MAX,
            tsc,
            tsc.wrapping_sub(1),
            tsc.wrapping_sub(1 << 20),
            tsc.wrapping_add(1),
            tsc.wrapping_add(1 << 36),
            tsc.wrapping_add(1 << 62),
        ] {
            for grace in [Duration::ZERO, Duration::from_secs(60), Duration::MAX] {
                if let Ok(w) = snapshot.compute_bound_at(counter, grace) {
                    assert!(
                        w.earliest <= w.latest,
                        "{w:?} from {snapshot:?} at {counter}"
                    );
                }
            }
        }
        Ok(snapshot)
    }

    fn assert_matches_bytes(snapshot: &ClockErrorBoundV3, bytes: &[u8]) {
        let seg = Segment::from_bytes(bytes);
        assert!(
            seg.payload_is_valid(),
            "accepted an invalid payload: {seg:?}"
        );
        seg.assert_decoded(snapshot);
    }

    fn header(segsize: u32, version: u16, generation: u16) -> Vec<u8> {
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&MAGIC[0].to_ne_bytes());
        b.extend_from_slice(&MAGIC[1].to_ne_bytes());
        b.extend_from_slice(&segsize.to_ne_bytes());
        b.extend_from_slice(&version.to_ne_bytes());
        b.extend_from_slice(&generation.to_ne_bytes());
        b
    }

    /// Payload fields that are valid most of the time each, so that whole payloads are
    /// accepted often enough to check the accepted path too.
    fn field_segment() -> impl Strategy<Value = Segment> {
        let nsec = || prop_oneof![6 => 0..1_000_000_000i64, 1 => any::<i64>()];
        let shift = || prop_oneof![6 => 0..=63u8, 1 => any::<u8>()];
        (
            (
                (1..=u16::MAX / 2).prop_map(|g| g * 2),
                any::<u64>(),
                (any::<i64>(), nsec(), any::<i64>(), nsec()),
                prop_oneof![6 => 1..=u64::MAX, 1 => Just(0u64)],
                any::<u64>(),
            ),
            (
                prop_oneof![6 => 0..=i64::MAX, 1 => any::<i64>()],
                any::<u64>(),
                prop_oneof![6 => 0..1_000_000_000u32, 1 => any::<u32>()],
                prop_oneof![6 => 0..=3i32, 1 => any::<i32>()],
                prop_oneof![6 => 0..=1u8, 1 => any::<u8>()],
                shift(),
                shift(),
                any::<[u8; 5]>(),
            ),
        )
            .prop_map(
                |(
                    (generation, as_of_tsc, (s0, n0, s1, n1), period_frac, period_err_frac),
                    (
                        bound_nsec,
                        disruption_marker,
                        max_drift_ppb,
                        clock_status,
                        flag,
                        ps,
                        pes,
                        padding,
                    ),
                )| Segment {
                    magic: MAGIC,
                    segsize: 104,
                    version: 0x0303,
                    generation,
                    as_of_tsc,
                    as_of: (s0, n0),
                    void_after: (s1, n1),
                    period_frac,
                    period_err_frac,
                    bound_nsec,
                    disruption_marker,
                    max_drift_ppb,
                    clock_status,
                    flag,
                    period_shift: ps,
                    period_err_shift: pes,
                    padding,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..=4096)) {
            if let Ok(snapshot) = exercise(&bytes) {
                assert_matches_bytes(&snapshot, &bytes);
            }
        }

        #[test]
        fn arbitrary_headers_never_panic(
            segsize in prop_oneof![Just(104u32), 0..=4200u32, any::<u32>()],
            version in prop_oneof![Just(0x0303u16), Just(2u16), any::<u16>()],
            generation in any::<u16>(),
            tail in proptest::collection::vec(any::<u8>(), 0..=4080),
        ) {
            let mut bytes = header(segsize, version, generation);
            bytes.extend_from_slice(&tail);
            match exercise(&bytes) {
                Ok(snapshot) => {
                    prop_assert!(segsize >= 104 && segsize as usize <= bytes.len());
                    prop_assert_eq!(version, 0x0303);
                    prop_assert!(generation != 0 && generation % 2 == 0);
                    assert_matches_bytes(&snapshot, &bytes);
                }
                Err(e) => prop_assert!(
                    matches!(
                        e,
                        ShmError::SegmentMalformed { path: Some(_), .. }
                            | ShmError::SegmentNotInitialized { .. }
                            | ShmError::SegmentVersionNotSupported { .. }
                    ),
                    "{:?}", e
                ),
            }
        }

        #[test]
        fn valid_header_random_payload_never_panics(
            generation in (1..=u16::MAX / 2).prop_map(|g| g * 2),
            payload in proptest::collection::vec(any::<u8>(), 88),
        ) {
            let mut bytes = header(104, 0x0303, generation);
            bytes.extend_from_slice(&payload);
            match exercise(&bytes) {
                Ok(snapshot) => assert_matches_bytes(&snapshot, &bytes),
                Err(e) => prop_assert!(matches!(e, ShmError::SegmentMalformed { path: Some(_), .. }), "{:?}", e),
            }
        }

        #[test]
        fn accepted_exactly_when_every_field_is_valid(seg in field_segment()) {
            let bytes = seg.bytes();
            match exercise(&bytes) {
                Ok(snapshot) => {
                    prop_assert!(seg.payload_is_valid(), "accepted {:?}", seg);
                    seg.assert_decoded(&snapshot);
                }
                Err(ShmError::SegmentMalformed { path: Some(_), .. }) => {
                    prop_assert!(!seg.payload_is_valid(), "rejected a valid {:?}", seg);
                }
                Err(other) => prop_assert!(false, "unexpected error {:?} for {:?}", other, seg),
            }
        }
    }
}

/// `SharedClockBound::open_preferring`: `shm1` when it holds a valid layout 3 segment, `shm0`
/// otherwise, and the handle says which.
mod choosing_the_segment {
    use super::*;
    use clockbound_shm::{
        AnySnapshot, ClockErrorBound, LayoutVersion, SharedClockBound, ShmWriter, ShmWriterV3,
        Strategy,
    };
    use std::path::PathBuf;

    struct Files {
        _dir: tempfile::TempDir,
        shm0: PathBuf,
        shm1: PathBuf,
    }

    /// A directory with a valid layout 2 `shm0`, and no `shm1` yet.
    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let shm0 = dir.path().join("shm0");
        let shm1 = dir.path().join("shm1");
        ShmWriter::new(&shm0).unwrap().write(&layout2());
        Files {
            _dir: dir,
            shm0,
            shm1,
        }
    }

    fn layout2() -> ClockErrorBound {
        ClockErrorBound::builder()
            .as_of(ts(100, 0))
            .void_after(ts(1_100, 0))
            .bound_nsec(77_000)
            .max_drift_ppb(1_000)
            .clock_status(ClockStatus::Synchronized)
            .build()
    }

    fn open(f: &Files, strategy: Strategy) -> Result<SharedClockBound, ShmError> {
        SharedClockBound::open_preferring(
            &f.shm1,
            &f.shm0,
            &common::segment_only().strategy(strategy),
        )
    }

    fn assert_reads_shm0(f: &Files, what: &str) {
        for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
            let clock = open(f, strategy).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(clock.layout(), LayoutVersion::V2, "{what}");
            assert_eq!(clock.path(), f.shm0.as_path(), "{what}");
            assert_eq!(clock.strategy(), strategy, "{what}");
            assert_eq!(clock.snapshot().unwrap(), layout2(), "{what}");
            assert_eq!(
                clock.snapshot().unwrap().layout(),
                LayoutVersion::V2,
                "{what}"
            );
            clock.now().unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }

    #[test]
    fn a_valid_shm1_is_preferred() {
        let f = files();
        let mut writer = ShmWriterV3::new(&f.shm1).unwrap();
        writer.write(&fixed(100, 2));
        for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
            let clock = open(&f, strategy).unwrap();
            assert_eq!(clock.layout(), LayoutVersion::V3);
            assert_eq!(clock.layout().to_string(), "layout 3");
            assert_eq!(clock.path(), f.shm1.as_path());
            assert_eq!(clock.strategy(), strategy);
            match clock.snapshot().unwrap() {
                AnySnapshot::V3(s) => assert_eq!(s, fixed(100, 2)),
                other => panic!("expected a layout 3 snapshot, got {other:?}"),
            }
            // The handle keeps reading shm1: a new update shows.
            writer.write(&fixed(200, 4));
            assert_eq!(clock.snapshot().unwrap(), fixed(200, 4));
            writer.write(&fixed(100, 2));
        }
    }

    #[test]
    fn shm0_when_shm1_is_missing() {
        assert_reads_shm0(&files(), "no shm1");
    }

    #[test]
    fn shm0_when_shm1_is_garbage_or_another_layout() {
        let f = files();
        let cases: [(&str, Vec<u8>); 4] = [
            ("garbage", (0..104u8).map(|i| i.wrapping_mul(37)).collect()),
            ("empty", Vec::new()),
            ("short", vec![0x4E; 40]),
            ("layout 2 in shm1", fs::read(&f.shm0).unwrap()),
        ];
        for (what, bytes) in cases {
            fs::write(&f.shm1, bytes).unwrap();
            assert_reads_shm0(&f, what);
        }
        // A layout 3 header over a payload with an invalid field (clock_status 9): shm0.
        ShmWriterV3::new(&f.shm1).unwrap().write(&fixed(1, 0));
        let mut bytes = fs::read(&f.shm1).unwrap();
        bytes[92..96].copy_from_slice(&9i32.to_ne_bytes());
        fs::write(&f.shm1, &bytes).unwrap();
        assert_reads_shm0(&f, "layout 3 with clock_status 9");
    }

    #[test]
    fn shm0_when_shm1_is_wiped_or_never_written() {
        let f = files();
        let mut writer = ShmWriterV3::new(&f.shm1).unwrap();
        assert_reads_shm0(&f, "shm1 never written");
        writer.write(&fixed(100, 2));
        assert_eq!(
            open(&f, Strategy::ThreadLocal).unwrap().layout(),
            LayoutVersion::V3
        );
        writer.wipe();
        assert_reads_shm0(&f, "shm1 wiped");
        // Written again: preferred again, for a handle opened from now on.
        writer.write(&fixed(300, 2));
        assert_eq!(
            open(&f, Strategy::ArcSwap).unwrap().layout(),
            LayoutVersion::V3
        );
    }

    #[test]
    fn neither_gives_shm0s_error() {
        let f = files();
        fs::remove_file(&f.shm0).unwrap();
        let err = open(&f, Strategy::ThreadLocal).unwrap_err();
        match &err {
            ShmError::Io { path, source, .. } => {
                assert_eq!(&**path, f.shm0.as_path());
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected shm0's ENOENT, got {other:?}"),
        }
        assert!(err.is_transient());
        // shm1 garbage, shm0 missing: still shm0's error.
        fs::write(&f.shm1, [0xA5; 104]).unwrap();
        assert!(matches!(
            open(&f, Strategy::ArcSwap),
            Err(ShmError::Io { path, .. }) if *path == *f.shm0
        ));
    }
}

/// Everything that needs a snapshot stamped "now" from the CPU counter: x86-64 only (see
/// `tests/common`).
#[cfg(target_arch = "x86_64")]
mod live {
    use super::*;
    use crate::common::*;
    use clockbound_shm::{
        AnySnapshot, FREE_RUNNING_GRACE, FREE_RUNNING_GRACE_2_0_3, LayoutVersion, SharedClockBound,
        ShmWriterV3, Strategy, TimeWindow,
    };
    use rustix::time::{ClockId, clock_gettime};
    use std::thread;
    use std::time::Instant;

    /// Slack for comparing a layout 3 window with `CLOCK_REALTIME`: the snapshots start at
    /// `CLOCK_REALTIME` and are carried forward at the measured counter frequency, which is
    /// good to a few ppm (a few µs over a test) and to the time between two clock reads.
    const REALTIME_SLACK: Duration = Duration::from_micros(200);

    /// A writer for a fresh `shm1`, its first snapshot written.
    fn segment(first: &ClockErrorBoundV3) -> (tempfile::TempDir, std::path::PathBuf, ShmWriterV3) {
        let (dir, path) = common::temp_segment("shm1");
        let mut writer = ShmWriterV3::new(&path).unwrap();
        writer.write(first);
        (dir, path, writer)
    }

    /// `w` contains the `CLOCK_REALTIME` interval `[before, after]` read around it, within
    /// [`REALTIME_SLACK`].
    fn assert_covers_realtime(w: &TimeWindow, before: Timespec, after: Timespec) {
        assert!(
            w.earliest <= after.saturating_add(REALTIME_SLACK)
                && w.latest >= before.saturating_sub(REALTIME_SLACK),
            "{w:?} does not cover realtime [{before}, {after}]"
        );
    }

    #[test]
    fn a_fresh_snapshot_gives_a_window_around_realtime() {
        let bound = 1_000_000;
        let (_dir, path, _writer) = segment(&v3_snapshot(
            Duration::ZERO,
            bound,
            ClockStatus::Synchronized,
        ));
        let mut reader = open_v3(&path).unwrap();
        for _ in 0..100 {
            let before = v3_realtime();
            let w = reader.now().unwrap();
            let after = v3_realtime();
            assert_eq!(w.clock_status, ClockStatus::Synchronized);
            assert_covers_realtime(&w, before, after);
            // Half-width: the bound, plus growth for at most a second of age (a few µs).
            assert!(w.bound() >= Duration::from_nanos(bound as u64), "{w:?}");
            assert!(
                w.bound() < Duration::from_nanos(bound as u64 + 10_000),
                "{w:?}"
            );
        }
        // `ClockErrorBoundV3::now()` on the snapshot agrees with the reader.
        let snapshot = *reader.snapshot().unwrap();
        let before = v3_realtime();
        let w = snapshot.now().unwrap();
        assert_covers_realtime(&w, before, v3_realtime());
    }

    #[test]
    fn the_60_s_grace() {
        let cases = [
            (Duration::ZERO, ClockStatus::Synchronized),
            // A 3.x daemon polling ordinary NTP servers writes every 16 s or so.
            (Duration::from_secs(16), ClockStatus::Synchronized),
            (Duration::from_secs(59), ClockStatus::Synchronized),
            (Duration::from_secs(61), ClockStatus::FreeRunning),
            (Duration::from_secs(999), ClockStatus::FreeRunning),
            (Duration::from_secs(1_001), ClockStatus::Unknown),
        ];
        for (age, expected) in cases {
            if !v3_can_age(age) {
                eprintln!("skipping age {age:?}: the counter has not run that long");
                continue;
            }
            let snapshot = v3_snapshot(age, 5_000, ClockStatus::Synchronized);
            let (_dir, path, _writer) = segment(&snapshot);
            let mut reader = open_v3(&path).unwrap();
            let w = reader.now().unwrap();
            assert_eq!(
                w.clock_status, expected,
                "snapshot {age:?} old, ShmReaderV3"
            );
            // The window grew with the age: drift 1000 ppb plus the 2^-40 period error.
            let growth = age.as_nanos() as f64 * (1e-6 + 2f64.powi(-40));
            let extra = w.bound().as_nanos() as f64 - 5_000.0 - growth;
            assert!(
                (-1e-3 * growth - 2.0..10_000.0).contains(&extra),
                "{age:?}: bound {:?}, expected about 5 µs + {growth} ns",
                w.bound()
            );
            assert_eq!(
                snapshot.now().unwrap().clock_status,
                expected,
                "{age:?}, snapshot.now()"
            );
            for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
                let clock =
                    SharedClockBound::open_with(&path, &common::segment_only().strategy(strategy))
                        .unwrap();
                assert_eq!(
                    clock.now().unwrap().clock_status,
                    expected,
                    "{age:?}, {strategy:?}"
                );
            }
            // The released 2.0.3 client's 5 s, for those who ask for it.
            let options = common::segment_only().free_running_grace(FREE_RUNNING_GRACE_2_0_3);
            let strict = ShmReaderV3::open_with(&path, &options)
                .unwrap()
                .now()
                .unwrap();
            let expected_strict = match expected {
                ClockStatus::Synchronized if age >= Duration::from_secs(5) => {
                    ClockStatus::FreeRunning
                }
                other => other,
            };
            assert_eq!(strict.clock_status, expected_strict, "{age:?}, 5 s grace");
        }
    }

    #[test]
    fn grace_boundaries_are_exact_at_a_chosen_counter() {
        // At the measured frequency: the status turns at the first counter value at which
        // the exact t (not a rounded one) reaches as_of + 60 s, then void_after.
        let snapshot = v3_snapshot(Duration::ZERO, 5_000, ClockStatus::Synchronized);
        let at = |counter: u64| {
            snapshot
                .compute_bound_at(counter, FREE_RUNNING_GRACE)
                .unwrap()
                .clock_status
        };
        // elapsed >= since  <=>  ticks * period_frac * 1e9 >= since_ns * 2^(64 + shift)
        let k = 64 + u32::from(snapshot.period_shift());
        let reached = |counter: u64, since_ns: i128| {
            num_bigint::BigInt::from(counter - snapshot.as_of_tsc())
                * snapshot.period_frac()
                * 1_000_000_000u64
                >= num_bigint::BigInt::from(since_ns) << k
        };
        // The first counter value at which `since_ns` has elapsed, by bisection.
        let first = |since_ns: i128, mut lo: u64, mut hi: u64| {
            assert!(!reached(lo, since_ns) && reached(hi, since_ns));
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if reached(mid, since_ns) {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            hi
        };
        let grace_ns = FREE_RUNNING_GRACE.as_nanos() as i128;
        let turn = first(
            grace_ns,
            snapshot.as_of_tsc(),
            snapshot.as_of_tsc() + v3_ticks(Duration::from_secs(61)),
        );
        assert_eq!(at(turn - 1), ClockStatus::Synchronized);
        assert_eq!(at(turn), ClockStatus::FreeRunning);
        let void_ns = snapshot.void_after().as_nanos() - snapshot.as_of().as_nanos();
        let void = first(void_ns, turn, turn + v3_ticks(Duration::from_secs(1_000)));
        assert_eq!(at(void - 1), ClockStatus::FreeRunning);
        assert_eq!(at(void), ClockStatus::Unknown);
    }

    #[test]
    fn shared_values_serve_threads_and_move_forward() {
        let bound = 1_000_000; // 1 ms
        let (dir, path) = common::temp_segment("shm1");
        let writer = ShmWriterV3::new(&path).unwrap();
        let daemon = V3Daemon::start(
            writer,
            bound,
            ClockStatus::Synchronized,
            Duration::from_millis(5),
        );
        for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
            let clock =
                SharedClockBound::open_with(&path, &common::segment_only().strategy(strategy))
                    .unwrap();
            assert_eq!(clock.layout(), LayoutVersion::V3);
            assert_eq!(clock.path(), path.as_path());
            assert_eq!(clock.strategy(), strategy);
            let seen: Vec<usize> = thread::scope(|s| {
                let handles: Vec<_> = (0..3)
                    .map(|_| {
                        let clock = clock.clone();
                        s.spawn(move || {
                            let until = Instant::now() + Duration::from_millis(150);
                            let mut previous: Option<TimeWindow> = None;
                            let mut as_ofs = std::collections::BTreeSet::new();
                            let mut last_as_of = Timespec::MIN;
                            while Instant::now() < until {
                                let before = v3_realtime();
                                let w = clock.now().unwrap();
                                let after = v3_realtime();
                                assert_eq!(w.clock_status, ClockStatus::Synchronized);
                                assert_covers_realtime(&w, before, after);
                                if let Some(p) = previous {
                                    // One model of time across updates: the midpoint and
                                    // `earliest` never go back (2 ns for rounding); a new
                                    // snapshot may pull `latest` in (its bound restarts).
                                    let two = 2;
                                    assert!(
                                        w.midpoint().as_nanos() >= p.midpoint().as_nanos() - two,
                                        "{strategy:?}: {p:?} then {w:?}"
                                    );
                                    assert!(
                                        w.earliest.as_nanos() >= p.earliest.as_nanos() - two,
                                        "{strategy:?}: {p:?} then {w:?}"
                                    );
                                }
                                previous = Some(w);
                                let AnySnapshot::V3(snap) = clock.snapshot().unwrap() else {
                                    panic!("a layout 2 snapshot from a layout 3 handle");
                                };
                                assert!(snap.as_of() >= last_as_of, "snapshots go forward");
                                last_as_of = snap.as_of();
                                as_ofs.insert(snap.as_of());
                            }
                            as_ofs.len()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for distinct in seen {
                assert!(
                    distinct >= 3,
                    "{strategy:?}: a thread saw only {distinct} snapshots"
                );
            }
        }
        drop(daemon);
        drop(dir);
    }

    #[test]
    fn readers_follow_a_recreated_file() {
        let stale = Duration::from_secs(70);
        let (_dir, path, old_writer) =
            segment(&v3_snapshot(stale, 1_111, ClockStatus::Synchronized));
        let options = common::segment_only().recheck_interval(Duration::from_millis(100));
        let mut reader = ShmReaderV3::open_with(&path, &options).unwrap();
        let shared: Vec<_> = [Strategy::ThreadLocal, Strategy::ArcSwap]
            .into_iter()
            .map(|s| SharedClockBound::open_with(&path, &options.clone().strategy(s)).unwrap())
            .collect();
        assert_eq!(reader.now().unwrap().clock_status, ClockStatus::FreeRunning);
        for clock in &shared {
            assert_eq!(clock.now().unwrap().clock_status, ClockStatus::FreeRunning);
        }
        drop(old_writer);

        // The daemon restarts and recreates the segment: same path, new file.
        fs::remove_file(&path).unwrap();
        let mut new_writer = ShmWriterV3::new(&path).unwrap();
        new_writer.write(&v3_snapshot(
            Duration::ZERO,
            2_222,
            ClockStatus::Synchronized,
        ));

        // After the recheck interval, the stale snapshot makes each reader look at the path,
        // see another file, and map it.
        thread::sleep(Duration::from_millis(250));
        let w = reader.now().unwrap();
        assert_eq!(w.clock_status, ClockStatus::Synchronized);
        assert_eq!(reader.snapshot().unwrap().bound_nsec(), 2_222);
        assert_eq!(reader.stats().reopens, 1);
        for clock in &shared {
            let w = clock.now().unwrap();
            assert_eq!(
                w.clock_status,
                ClockStatus::Synchronized,
                "{:?}",
                clock.strategy()
            );
            assert_eq!(
                clock.snapshot().unwrap().bound_nsec(),
                2_222,
                "{:?}",
                clock.strategy()
            );
        }
        // And keeps following the new file's updates.
        new_writer.write(&v3_snapshot(
            Duration::ZERO,
            3_333,
            ClockStatus::Synchronized,
        ));
        reader.now().unwrap();
        assert_eq!(reader.snapshot().unwrap().bound_nsec(), 3_333);
        for clock in &shared {
            assert_eq!(
                clock.snapshot().unwrap().bound_nsec(),
                3_333,
                "{:?}",
                clock.strategy()
            );
        }
        assert_eq!(reader.stats().reopens, 1);
    }

    /// The 16-bit generation wrapping round to the cached value: invisible at first, healed
    /// by the full re-read once the snapshot is older than the recheck interval, which on
    /// layout 3 is scheduled in counter ticks.
    #[test]
    fn a_wrapped_generation_is_healed_after_the_recheck_interval() {
        // Long enough for the 32 767 writes below to finish inside it, in a debug build on a
        // loaded machine.
        let interval = Duration::from_secs(1);
        let options = common::segment_only().recheck_interval(interval);
        let (_dir, path, mut writer) = segment(&v3_snapshot(
            Duration::ZERO,
            1_111,
            ClockStatus::Synchronized,
        ));
        let mut reader = ShmReaderV3::open_with(&path, &options).unwrap();
        let shared: Vec<_> = [Strategy::ThreadLocal, Strategy::ArcSwap]
            .into_iter()
            .map(|s| SharedClockBound::open_with(&path, &options.clone().strategy(s)).unwrap())
            .collect();
        let cached = reader.generation();
        reader.now().unwrap();
        assert_eq!(reader.stats().full_reads, 1, "{:?}", reader.stats());
        // This thread's state for each shared value is made now, before the wrap (a state
        // made later would read the segment afresh).
        for clock in &shared {
            assert_eq!(clock.snapshot().unwrap().bound_nsec(), 1_111);
        }

        let new = v3_snapshot(Duration::ZERO, 2_222, ClockStatus::Synchronized);
        for _ in 0..32_767 {
            writer.write(&new);
        }
        assert_eq!(writer.generation(), cached, "the generation wrapped round");
        reader.now().unwrap();
        assert_eq!(
            reader.snapshot().unwrap().bound_nsec(),
            1_111,
            "invisible at first"
        );
        assert_eq!(reader.stats().rechecks, 0);
        assert!(reader.stats().cache_answers >= 2, "{:?}", reader.stats());
        for clock in &shared {
            clock.now().unwrap();
            assert_eq!(
                clock.snapshot().unwrap().bound_nsec(),
                1_111,
                "{:?}",
                clock.strategy()
            );
        }

        thread::sleep(interval + Duration::from_millis(50));
        reader.now().unwrap();
        assert_eq!(reader.snapshot().unwrap().bound_nsec(), 2_222, "healed");
        assert_eq!(reader.stats().rechecks, 1);
        for clock in &shared {
            clock.now().unwrap();
            assert_eq!(
                clock.snapshot().unwrap().bound_nsec(),
                2_222,
                "{:?}",
                clock.strategy()
            );
            assert!(
                clock.stats().rechecks >= 1,
                "{:?}: {:?}",
                clock.strategy(),
                clock.stats()
            );
        }
        // At most one re-read per interval.
        let start = Instant::now();
        let mut calls = 0;
        while start.elapsed() < interval / 4 {
            reader.now().unwrap();
            calls += 1;
        }
        assert!(calls > 10);
        assert_eq!(reader.stats().rechecks, 1, "{:?}", reader.stats());
    }

    /// A snapshot stamped with a counter value ahead of this CPU's counter by more than the
    /// 1 µs blur (another boot, unsynchronised counters, a broken writer): every reader type
    /// reports `CounterBehindSnapshot`, never a window; within the blur, no time elapsed.
    #[test]
    fn a_snapshot_from_the_counter_future_is_a_causality_error() {
        let now = v3_snapshot(Duration::ZERO, 1_000, ClockStatus::Synchronized);
        let ahead = v3_builder(
            now.as_of_tsc() + v3_ticks(Duration::from_secs(1)),
            now.as_of(),
            v3_counter_hz(),
        )
        .bound_nsec(1_000)
        .clock_status(ClockStatus::Synchronized)
        .build();
        let (_dir, path, mut writer) = segment(&ahead);
        let mut reader = open_v3(&path).expect("opening does not compute a window");
        let is_behind = |r: Result<TimeWindow, ShmError>| {
            matches!(r, Err(ShmError::CounterBehindSnapshot { as_of_tsc, counter })
                if as_of_tsc == ahead.as_of_tsc() && counter < as_of_tsc)
        };
        assert!(is_behind(reader.now()));
        assert!(is_behind(ahead.now()));
        for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
            let clock =
                SharedClockBound::open_with(&path, &common::segment_only().strategy(strategy))
                    .unwrap();
            assert!(is_behind(clock.now()), "{strategy:?}");
        }
        // The writer publishes a sane snapshot: the reader recovers.
        writer.write(&v3_snapshot(
            Duration::ZERO,
            1_000,
            ClockStatus::Synchronized,
        ));
        assert_eq!(
            reader.now().unwrap().clock_status,
            ClockStatus::Synchronized
        );
    }

    fn thread_cpu() -> Duration {
        let t = clock_gettime(ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }

    #[test]
    fn commit_wait_on_layout_3() {
        let bound = 5_000_000; // 5 ms
        let (dir, path) = common::temp_segment("shm1");
        let _daemon = V3Daemon::start(
            ShmWriterV3::new(&path).unwrap(),
            bound,
            ClockStatus::Synchronized,
            Duration::from_millis(10),
        );
        let mut reader = open_v3(&path).unwrap();
        for _ in 0..3 {
            let t = reader.now().unwrap().latest;
            let cpu_before = thread_cpu();
            let wall_before = Instant::now();
            let w = reader.wait_until_after(t, Duration::from_secs(2)).unwrap();
            let real_at_return = v3_realtime();
            let waited = wall_before.elapsed();
            let cpu = thread_cpu() - cpu_before;
            assert!(w.earliest > t, "{w:?} does not prove {t} passed");
            assert!(reader.after(t).unwrap(), "once passed, stays passed");
            // Right moment: true time (here CLOCK_REALTIME, within the slack) = t + bound.
            let right_moment = t.as_nanos() + i128::from(bound);
            let lateness = real_at_return.as_nanos() - right_moment;
            assert!(
                lateness <= i128::from(bound) && lateness >= -(REALTIME_SLACK.as_nanos() as i128),
                "returned {lateness} ns after the right moment"
            );
            assert!(waited >= Duration::from_millis(9), "waited only {waited:?}");
            assert!(
                cpu < waited / 2,
                "spun instead of sleeping: {cpu:?} over {waited:?}"
            );
        }
        for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
            let clock =
                SharedClockBound::open_with(&path, &common::segment_only().strategy(strategy))
                    .unwrap();
            let t = clock.now().unwrap().latest;
            assert!(
                !clock.after(t).unwrap() && !clock.before(t).unwrap(),
                "{strategy:?}"
            );
            let w = clock.wait_until_after(t, Duration::from_secs(2)).unwrap();
            assert!(w.earliest > t, "{strategy:?}");
            assert!(clock.after(t).unwrap(), "{strategy:?}");
        }
        drop(dir);
    }

    #[test]
    fn commit_wait_refuses_an_untrusted_clock_and_times_out() {
        for status in [ClockStatus::Unknown, ClockStatus::Disrupted] {
            let (_dir, path, _writer) = segment(&v3_snapshot(Duration::ZERO, 1_000, status));
            let mut reader = open_v3(&path).unwrap();
            let past = v3_realtime().saturating_sub(Duration::from_secs(30));
            match reader.wait_until_after(past, Duration::from_secs(1)) {
                Err(ShmError::ClockNotTrusted { status: s }) => assert_eq!(s, status),
                other => panic!("expected ClockNotTrusted, got {other:?}"),
            }
        }
        let (_dir, path, _writer) = segment(&v3_snapshot(
            Duration::ZERO,
            1_000,
            ClockStatus::Synchronized,
        ));
        let mut reader = open_v3(&path).unwrap();
        let past = v3_realtime().saturating_sub(Duration::from_secs(30));
        assert!(reader.wait_until_after(past, Duration::ZERO).is_ok());
        let far = v3_realtime().saturating_add(Duration::from_secs(30));
        match reader.wait_until_after(far, Duration::from_millis(100)) {
            Err(ShmError::Timeout {
                waited,
                last_error: None,
                ..
            }) => {
                assert!(waited >= Duration::from_millis(100))
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[test]
    fn wait_for_sync_on_layout_3() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clockbound").join("shm1");
        let start = Instant::now();
        let daemon = v3_daemon_later(
            &path,
            Duration::from_millis(100),
            vec![
                (ClockStatus::Unknown, Duration::from_millis(150)),
                (ClockStatus::Synchronized, Duration::from_millis(1000)),
            ],
        );
        let mut reader = ShmReaderV3::wait_for_sync_with(
            &path,
            &common::segment_only(),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(250),
            "returned before the sync"
        );
        assert_eq!(
            reader.now().unwrap().clock_status,
            ClockStatus::Synchronized
        );
        assert_eq!(reader.layout(), LayoutVersion::V3);
        daemon.join().unwrap();

        // No file: the timeout carries ENOENT.
        let missing = dir.path().join("none");
        match ShmReaderV3::wait_for_sync(&missing, Duration::from_millis(50)) {
            Err(ShmError::Timeout {
                last_error: Some(e),
                ..
            }) => {
                assert_eq!(e.errno(), rustix::io::Errno::NOENT.raw_os_error(), "{e:?}")
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        // A daemon that stays FreeRunning: never Synchronized.
        let late = dir.path().join("shm1-free");
        let daemon = v3_daemon_later(
            &late,
            Duration::ZERO,
            vec![(ClockStatus::FreeRunning, Duration::from_millis(500))],
        );
        match ShmReaderV3::wait_for_sync(&late, Duration::from_millis(250)) {
            Err(ShmError::Timeout { waited, .. }) => assert!(waited >= Duration::from_millis(250)),
            other => panic!("expected a timeout, got {other:?}"),
        }
        daemon.join().unwrap();
    }

    /// `wait_for_sync` returns an error that waiting cannot clear (a malformed segment, ...)
    /// at once, on both layouts, instead of retrying it until the timeout.
    #[test]
    fn wait_for_sync_returns_a_permanent_error_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let shm0 = dir.path().join("shm0");
        clockbound_shm::ShmWriter::new(&shm0).unwrap().write(
            &clockbound_shm::ClockErrorBound::builder()
                .as_of(ts(1, 0))
                .void_after(ts(2, 0))
                .clock_status(ClockStatus::Synchronized)
                .build(),
        );
        // A layout 2 segment where layout 3 is expected: not transient.
        let started = Instant::now();
        let err = ShmReaderV3::wait_for_sync(&shm0, Duration::from_secs(2)).unwrap_err();
        assert!(!err.is_transient() || matches!(err, ShmError::Timeout { .. }));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "waited {:?} on a permanent error: {err:?}",
            started.elapsed()
        );
        assert!(
            matches!(err, ShmError::SegmentVersionNotSupported { .. }),
            "{err:?}"
        );
    }
}

/// The layout 3 arithmetic against an exact reference in big integers: for any valid
/// snapshot and counter, the window holds the exact window and each end lies less than 1 ns
/// from the exact end (unless it saturated), the status follows the exact t, and neither
/// end steps back as the counter advances. Both the short path (recent snapshots, ordinary
/// fields) and the general one are covered.
mod exact {
    use super::*;
    use clockbound_shm::{CAUSALITY_BLUR, FREE_RUNNING_GRACE};
    use num_bigint::BigInt;
    use proptest::prelude::*;

    fn big(v: impl Into<BigInt>) -> BigInt {
        v.into()
    }

    /// (exact earliest, exact latest, denominator, exact t), all but the denominator in
    /// units of 1/denominator ns.
    fn exact_window(s: &ClockErrorBoundV3, ticks: u64) -> (BigInt, BigInt, BigInt, BigInt) {
        let k = 64 + u32::from(s.period_shift());
        let ke = 64 + u32::from(s.period_err_shift());
        let g = big(1_000_000_000u64);
        let two_k = big(1) << k;
        let two_ke = big(1) << ke;
        let d = &two_k * &two_ke * &g;
        let tp = big(ticks) * big(s.period_frac());
        // elapsed_ns = tp * 1e9 / 2^k
        let elapsed = &tp * &g * &two_ke * &g;
        let drift = &tp * big(s.max_drift_ppb()) * &two_ke * &g;
        let period_err = &tp * &g * big(s.period_err_frac()) * &g;
        let bound = big(s.bound_nsec()) * &d;
        let mid = big(s.as_of().as_nanos()) * &d + elapsed;
        let half = bound + drift + period_err;
        (&mid - &half, &mid + &half, d, mid)
    }

    fn snapshot_strategy() -> impl Strategy<Value = (ClockErrorBoundV3, u64)> {
        (
            (
                prop_oneof![Just(0u64), any::<u64>()],
                -(1i64 << 40)..(1i64 << 40),
                0..1_000_000_000i64,
                prop_oneof![3 => 28..=34u8, 1 => 0..=63u8],
                prop_oneof![3 => (1u64 << 63).., 1 => 1..=u64::MAX],
                prop_oneof![3 => 20..=45u8, 1 => 0..=63u8],
                prop_oneof![2 => 0..(1u64 << 62), 1 => any::<u64>()],
            ),
            (
                prop_oneof![3 => 0..(1i64 << 30), 1 => 0..=i64::MAX],
                prop_oneof![3 => 0..100_000u32, 1 => 0..1_000_000_000u32],
                prop_oneof![4 => 0..(1u64 << 36), 1 => any::<u64>()],
                prop_oneof![0..=3i32],
            ),
        )
            .prop_map(
                |((as_of_tsc, sec, nsec, ps, pf, pes, pef), (bound, drift, ticks, status))| {
                    let as_of = ts(sec, nsec);
                    let s = ClockErrorBoundV3::builder()
                        .as_of_tsc(as_of_tsc)
                        .as_of(as_of)
                        .void_after(as_of.saturating_add(Duration::from_secs(1000)))
                        .period_frac(pf)
                        .period_shift(ps)
                        .period_err_frac(pef)
                        .period_err_shift(pes)
                        .bound_nsec(bound)
                        .max_drift_ppb(drift)
                        .clock_status(ClockStatus::from_wire(status).unwrap())
                        .build();
                    (s, ticks)
                },
            )
    }

    fn check(s: &ClockErrorBoundV3, ticks: u64) {
        let counter = s.as_of_tsc().wrapping_add(ticks);
        if counter < s.as_of_tsc() {
            // The counter wrapped: not a time after the snapshot.
            return;
        }
        let w = s.compute_bound_at(counter, FREE_RUNNING_GRACE).unwrap();
        let (lo, hi, d, t) = exact_window(s, ticks);
        // The status, from the exact t.
        let reached = |at: Timespec| t >= big(at.as_nanos()) * &d;
        let status = match s.clock_status() {
            ClockStatus::Synchronized | ClockStatus::FreeRunning if reached(s.void_after()) => {
                ClockStatus::Unknown
            }
            ClockStatus::Synchronized if reached(s.as_of().saturating_add(FREE_RUNNING_GRACE)) => {
                ClockStatus::FreeRunning
            }
            other => other,
        };
        assert_eq!(w.clock_status, status, "{s:?} + {ticks}");
        let e = big(w.earliest.as_nanos()) * &d;
        let l = big(w.latest.as_nanos()) * &d;
        // Where the exact ends lie beyond what a `Timespec` holds, the window saturates:
        // held to the representable range, the same rules apply.
        let min = big(Timespec::MIN.as_nanos()) * &d;
        let max = big(Timespec::MAX.as_nanos()) * &d;
        let clamp = |x: &BigInt| x.clone().max(min.clone()).min(max.clone());
        let (lo, hi) = (clamp(&lo), clamp(&hi));
        assert!(
            e <= lo,
            "earliest {} above the exact one: {s:?} + {ticks}",
            w.earliest
        );
        assert!(
            e > &lo - &d,
            "earliest {} 1 ns or more below: {s:?} + {ticks}",
            w.earliest
        );
        assert!(
            l >= hi,
            "latest {} below the exact one: {s:?} + {ticks}",
            w.latest
        );
        assert!(
            l < &hi + &d,
            "latest {} 1 ns or more above: {s:?} + {ticks}",
            w.latest
        );
    }

    #[test]
    fn edges() {
        let base = fixed(1_000, 0);
        for ticks in [0, 1, 2, (1 << 36) - 1, 1 << 36, (1 << 36) + 1, u64::MAX / 2] {
            check(&base, ticks);
        }
        // The largest fields the reader accepts.
        let wide = ClockErrorBoundV3::builder()
            .as_of(ts(1 << 40, 999_999_999))
            .period_frac(u64::MAX)
            .period_shift(0)
            .period_err_frac(u64::MAX)
            .period_err_shift(0)
            .bound_nsec(i64::MAX)
            .max_drift_ppb(999_999_999)
            .clock_status(ClockStatus::Synchronized)
            .build();
        for ticks in [0, 1, 1 << 20, u64::MAX] {
            check(&wide, ticks);
        }
    }

    #[test]
    fn a_counter_behind_as_of_tsc_within_the_blur_counts_as_no_time() {
        // 2^30 Hz: 1 µs is 1073.74 ticks.
        let s = fixed(1_000, 0);
        assert_eq!(CAUSALITY_BLUR, Duration::from_micros(1));
        let at = |behind: u64| s.compute_bound_at(s.as_of_tsc() - behind, FREE_RUNNING_GRACE);
        for behind in [1, 500, 1_073] {
            let w = at(behind).unwrap();
            assert_eq!(w.midpoint(), s.as_of(), "{behind} ticks behind");
            assert_eq!(
                w.bound(),
                Duration::from_nanos(10_000),
                "{behind} ticks behind"
            );
        }
        for behind in [1_074, 1 << 30, s.as_of_tsc()] {
            match at(behind) {
                Err(ShmError::CounterBehindSnapshot { as_of_tsc, counter }) => {
                    assert_eq!(
                        (as_of_tsc, counter),
                        (s.as_of_tsc(), s.as_of_tsc() - behind)
                    );
                }
                other => {
                    panic!("{behind} ticks behind: expected CounterBehindSnapshot, got {other:?}")
                }
            }
        }
    }

    /// The exact ends only move forward as the counter advances (`earliest` because drift
    /// and period error grow the bound slower than time passes), and so do the computed ones,
    /// each the exact end rounded outwards: a user comparing successive windows never sees
    /// `earliest` or `latest` go back.
    #[test]
    fn ends_never_step_back_as_the_counter_advances() {
        let s = ClockErrorBoundV3::builder()
            .as_of(ts(1_700_000_000, 0))
            .void_after(ts(1_700_001_000, 0))
            .with_frequency_hz(2_899_999_123)
            .period_err_frac(1 << 63)
            .period_err_shift(20)
            .bound_nsec(10_000)
            .max_drift_ppb(15_000)
            .clock_status(ClockStatus::Synchronized)
            .build();
        let at = |c: u64| s.compute_bound_at(c, FREE_RUNNING_GRACE).unwrap();
        let mut previous = at(1_000_000_000);
        for counter in 1_000_000_001..1_000_020_000 {
            let w = at(counter);
            assert!(
                w.earliest >= previous.earliest && w.latest >= previous.latest,
                "counter {counter}: {previous:?} then {w:?}"
            );
            previous = w;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn holds_the_exact_window_and_each_end_is_within_1_ns((s, ticks) in snapshot_strategy()) {
            check(&s, ticks);
        }
    }
}

/// `SharedClockBound::open` reads a path as the layout its header declares.
#[test]
fn shared_open_follows_the_header_version() {
    use clockbound_shm::{
        ClockErrorBound, LayoutVersion, SharedClockBound, ShmWriter, ShmWriterV3, Strategy,
    };
    let dir = tempfile::tempdir().unwrap();
    let (shm0, shm1) = (dir.path().join("shm0"), dir.path().join("shm1"));
    ShmWriterV3::new(&shm1).unwrap().write(
        &ClockErrorBoundV3::builder()
            .with_frequency_hz(1_000_000_000)
            .clock_status(ClockStatus::Synchronized)
            .build(),
    );
    ShmWriter::new(&shm0).unwrap().write(
        &ClockErrorBound::builder()
            .as_of(Timespec::new(1, 0))
            .void_after(Timespec::new(1001, 0))
            .clock_status(ClockStatus::Synchronized)
            .build(),
    );
    let options = common::segment_only();
    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        let options = options.clone().strategy(strategy);
        let v3 = SharedClockBound::open_with(&shm1, &options).unwrap();
        assert_eq!(v3.layout(), LayoutVersion::V3);
        let v2 = SharedClockBound::open_with(&shm0, &options).unwrap();
        assert_eq!(v2.layout(), LayoutVersion::V2);
    }
}

/// A `shm1` left behind by a stopped 3.x daemon (its last snapshot long past the grace)
/// next to a `shm0` that a 2.x daemon keeps fresh: `open_preferring` reads `shm0`; with
/// both fresh it reads `shm1`.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_stale_shm1_gives_way_to_a_fresh_shm0() {
    use clockbound_shm::{
        ClockErrorBound, LayoutVersion, SharedClockBound, ShmWriter, ShmWriterV3, Strategy,
    };
    let age = Duration::from_secs(120);
    if !common::v3_can_age(age) {
        eprintln!("skipped: the counter has not run for {age:?} on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (shm0, shm1) = (dir.path().join("shm0"), dir.path().join("shm1"));
    let now = Timespec::monotonic_coarse_now();
    ShmWriter::new(&shm0).unwrap().write(
        &ClockErrorBound::builder()
            .as_of(now)
            .void_after(now.saturating_add(Duration::from_secs(1000)))
            .bound_nsec(1_000)
            .max_drift_ppb(1_000)
            .clock_status(ClockStatus::Synchronized)
            .build(),
    );
    let mut v3 = ShmWriterV3::new(&shm1).unwrap();
    v3.write(&common::v3_snapshot(age, 1_000, ClockStatus::Synchronized));
    let options = common::segment_only();
    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        let options = options.clone().strategy(strategy);
        let clock = SharedClockBound::open_preferring(&shm1, &shm0, &options).unwrap();
        assert_eq!(clock.layout(), LayoutVersion::V2, "{strategy:?}");
    }
    v3.write(&common::v3_snapshot(
        Duration::ZERO,
        1_000,
        ClockStatus::Synchronized,
    ));
    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        let options = options.clone().strategy(strategy);
        let clock = SharedClockBound::open_preferring(&shm1, &shm0, &options).unwrap();
        assert_eq!(clock.layout(), LayoutVersion::V3, "{strategy:?}");
    }
}
