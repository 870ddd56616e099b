//! Malformed and unusable segments: each is a typed error naming the file, never a crash.
//!
//! Segments are built byte by byte here, at the offsets of the protocol (`docs::protocol`) written out as
//! literals, so that a wrong offset constant in the crate makes these tests fail.

mod common;

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use clockbound_shm::{
    ClockErrorBound, ClockStatus, Malformed, NotInitialized, ShmError, ShmReader, Timespec,
};
use proptest::prelude::*;
use rustix::io::Errno;

const MAGIC: [u32; 2] = [0x414D_5A4E, 0x4342_0200];

/// A layout-2 segment as the bytes of the file, every field at its offset in the protocol.
#[derive(Clone, Debug)]
struct Segment {
    magic: [u32; 2],
    segsize: u32,
    version: u16,
    generation: u16,
    as_of: (i64, i64),
    void_after: (i64, i64),
    bound_nsec: i64,
    disruption_marker: u64,
    max_drift_ppb: u32,
    clock_status: i32,
    flag: u8,
    padding: [u8; 7],
}

impl Segment {
    /// A segment any reader must accept.
    fn valid() -> Segment {
        Segment {
            magic: MAGIC,
            segsize: 80,
            version: 2,
            generation: 2,
            as_of: (100, 250_000_000),
            void_after: (1_100, 250_000_000),
            bound_nsec: 12_345,
            disruption_marker: 0xDEAD_BEEF_0000_0001,
            max_drift_ppb: 15_000,
            clock_status: 1,
            flag: 1,
            padding: [0; 7],
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; 80];
        let mut put =
            |offset: usize, bytes: &[u8]| b[offset..offset + bytes.len()].copy_from_slice(bytes);
        put(0, &self.magic[0].to_ne_bytes());
        put(4, &self.magic[1].to_ne_bytes());
        put(8, &self.segsize.to_ne_bytes());
        put(12, &self.version.to_ne_bytes());
        put(14, &self.generation.to_ne_bytes());
        put(16, &self.as_of.0.to_ne_bytes());
        put(24, &self.as_of.1.to_ne_bytes());
        put(32, &self.void_after.0.to_ne_bytes());
        put(40, &self.void_after.1.to_ne_bytes());
        put(48, &self.bound_nsec.to_ne_bytes());
        put(56, &self.disruption_marker.to_ne_bytes());
        put(64, &self.max_drift_ppb.to_ne_bytes());
        put(68, &self.clock_status.to_ne_bytes());
        put(72, &[self.flag]);
        put(73, &self.padding);
        b
    }

    /// Whether every payload field holds a value the protocol allows.
    fn payload_is_valid(&self) -> bool {
        (0..1_000_000_000).contains(&self.as_of.1)
            && (0..1_000_000_000).contains(&self.void_after.1)
            && self.bound_nsec >= 0
            && self.max_drift_ppb < 1_000_000_000
            && (0..=3).contains(&self.clock_status)
            && self.flag <= 1
    }

    /// A snapshot our reader produced holds exactly these fields.
    fn assert_decoded(&self, got: &ClockErrorBound) {
        assert_eq!((got.as_of().sec(), got.as_of().nsec()), self.as_of);
        assert_eq!(
            (got.void_after().sec(), got.void_after().nsec()),
            self.void_after
        );
        assert_eq!(got.bound_nsec(), self.bound_nsec);
        assert_eq!(got.disruption_marker(), self.disruption_marker);
        assert_eq!(got.max_drift_ppb(), self.max_drift_ppb);
        assert_eq!(got.clock_status().to_wire(), self.clock_status);
        assert_eq!(u8::from(got.clock_disruption_support_enabled()), self.flag);
    }
}

/// Our reader on the segment alone: these tests judge the segment's bytes, and the default
/// options would also open a VMClock device (this machine may lack one) whenever a payload
/// sets the disruption-support flag.
fn open_reader(path: &Path) -> Result<ShmReader, ShmError> {
    ShmReader::open_with(path, &common::segment_only())
}

fn write_file(dir: &tempfile::TempDir, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join("shm0");
    fs::write(&path, bytes).unwrap();
    path
}

fn open_bytes(bytes: &[u8]) -> (Result<ShmReader, ShmError>, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, bytes);
    (open_reader(&path), path, dir)
}

/// Opens a file holding `bytes` and returns the error, checking what every content error
/// shares: the message names the file and `errno()` is EPROTO.
fn open_error(bytes: &[u8]) -> ShmError {
    let (result, path, _dir) = open_bytes(bytes);
    let err = result.expect_err("the segment must be rejected");
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "message {message:?} does not name {path:?}"
    );
    assert_eq!(err.errno(), Errno::PROTO.raw_os_error(), "{err:?}");
    // The `&CStr` constructor agrees.
    let again = ShmReader::new(&CString::new(path.as_os_str().as_bytes()).unwrap())
        .expect_err("rejected via new");
    assert_eq!(format!("{again:?}"), format!("{err:?}"));
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
    // The control for every other test here: the hand-built bytes are a good segment.
    let (result, _path, _dir) = open_bytes(&Segment::valid().bytes());
    let mut reader = result.expect("valid segment opens");
    Segment::valid().assert_decoded(reader.snapshot().unwrap());
    assert_eq!(reader.generation(), 2);
    reader.now().expect("now() on a valid snapshot");
}

#[test]
fn missing_file_keeps_enoent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-segment");
    for err in [
        ShmReader::open(&path).unwrap_err(),
        ShmReader::new(&CString::new(path.as_os_str().as_bytes()).unwrap()).unwrap_err(),
    ] {
        let enoent = Errno::NOENT.raw_os_error();
        assert_eq!(err.errno(), enoent);
        assert!(err.is_transient());
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        match &err {
            ShmError::Io {
                source,
                path: in_error,
                ..
            } => {
                assert_eq!(source.raw_os_error(), Some(enoent));
                assert_eq!(&**in_error, path.as_path());
            }
            other => panic!("expected Io, got {other:?}"),
        }
    }
}

#[test]
fn directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = ShmReader::open(dir.path()).unwrap_err();
    assert!(matches!(err, ShmError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    assert!(!err.is_transient());
}

#[test]
fn fifo_is_an_io_error_without_blocking() {
    // Opening a FIFO for reading blocks until a writer opens it: the reader must refuse it
    // before opening. (Run in a thread so a regression fails the test instead of hanging.)
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("shm0");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("mkfifo unavailable; skipping");
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || tx.send(ShmReader::open(&path).map(|_| ())).unwrap());
    let result = rx
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("open blocked on a FIFO");
    let err = result.unwrap_err();
    assert!(matches!(err, ShmError::Io { .. }), "{err:?}");
    assert!(format!("{err:?}").contains("not a regular file"), "{err:?}");
}

#[test]
fn empty_file_is_not_initialized() {
    assert_eq!(not_initialized(&[]), NotInitialized::EmptyFile);
}

#[test]
fn short_files() {
    let valid = Segment::valid().bytes();
    // Shorter than the header: a daemon creating the file, transient whatever it holds.
    for len in [1, 4, 15] {
        for bytes in [vec![0xA5; len], valid[..len].to_vec()] {
            let err = open_error(&bytes);
            assert!(err.is_transient(), "len {len}: {err:?}");
            assert!(
                matches!(
                    err,
                    ShmError::SegmentNotInitialized {
                        reason: NotInitialized::ShortFile { len: l },
                        ..
                    } if l == len as u64
                ),
                "len {len}: {err:?}"
            );
        }
    }
    // Created (or extended) and nothing written yet: a daemon or writer setting it up.
    for len in [16, 80, 4096] {
        assert_eq!(
            not_initialized(&vec![0; len]),
            NotInitialized::BlankHeader,
            "len {len}"
        );
    }
    for len in [16, 64, 79] {
        // A whole header of garbage is not a segment at all.
        assert!(
            matches!(malformed(&vec![0xA5; len]), Malformed::BadMagic { .. }),
            "len {len}"
        );
        // A valid layout 2 header on a file too short for its payload.
        assert_eq!(
            malformed(&valid[..len]),
            Malformed::FileTooShort {
                len: len as u64,
                needed: 80
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
    for version in [1, 3, 9999, u16::MAX] {
        match open_error(&with(|s| s.version = version)) {
            ShmError::SegmentVersionNotSupported {
                found, expected, ..
            } => {
                assert_eq!((found, expected), (version, 2));
            }
            other => {
                panic!("version {version}: expected SegmentVersionNotSupported, got {other:?}")
            }
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
    for segsize in [0, 15, 16, 79] {
        assert_eq!(
            malformed(&with(|s| s.segsize = segsize)),
            Malformed::SegsizeTooSmall {
                segsize,
                needed: 80
            },
            "segsize {segsize}"
        );
    }
}

#[test]
fn segsize_beyond_the_file() {
    for segsize in [81, 88, 4096, u32::MAX] {
        assert_eq!(
            malformed(&with(|s| s.segsize = segsize)),
            Malformed::SegsizeBeyondFile {
                segsize,
                file_len: 80
            },
            "segsize {segsize}"
        );
    }
    // A larger segsize is fine when the file really is that large.
    let mut bytes = with(|s| s.segsize = 4096);
    bytes.resize(4096, 0xEE);
    let (result, _path, _dir) = open_bytes(&bytes);
    result
        .expect("segsize 4096 in a 4096-byte file")
        .snapshot()
        .unwrap();
    // And a segsize smaller than the file too.
    let mut bytes = Segment::valid().bytes();
    bytes.resize(200, 0xEE);
    let (result, _path, _dir) = open_bytes(&bytes);
    result
        .expect("segsize 80 in a 200-byte file")
        .snapshot()
        .unwrap();
}

#[test]
fn clock_status_out_of_range() {
    for found in [4, -1, i32::MAX, i32::MIN] {
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
    // A snapshot built by hand with that drift fails at `now()`, with no file to name.
    let ceb = ClockErrorBound::builder()
        .as_of(Timespec::new(0, 0))
        .void_after(Timespec::new(10, 0))
        .max_drift_ppb(1_000_000_000)
        .clock_status(ClockStatus::Synchronized)
        .build();
    match ceb.now() {
        Err(ShmError::SegmentMalformed {
            path: None,
            problem: Malformed::DriftTooLarge {
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
fn padding_is_not_judged() {
    let (result, _path, _dir) = open_bytes(&with(|s| s.padding = [0xFF; 7]));
    Segment::valid().assert_decoded(result.unwrap().snapshot().unwrap());
}

/// Rewrites bytes of a file in place (no truncation: a reader has it mapped).
fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

#[test]
fn malformed_update_after_open_is_an_error_from_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, &Segment::valid().bytes());
    let mut reader = open_reader(&path).unwrap();
    Segment::valid().assert_decoded(reader.snapshot().unwrap());

    // A writer publishes clock_status 7 at generation 4.
    poke(&path, 68, &7i32.to_ne_bytes());
    poke(&path, 14, &4u16.to_ne_bytes());
    let err = reader.snapshot().unwrap_err();
    assert!(
        matches!(
            err,
            ShmError::SegmentMalformed {
                path: Some(_),
                problem: Malformed::ClockStatus { found: 7 }
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // Then a good one at generation 6: the reader recovers.
    poke(&path, 68, &2i32.to_ne_bytes());
    poke(&path, 14, &6u16.to_ne_bytes());
    assert_eq!(
        reader.snapshot().unwrap().clock_status(),
        ClockStatus::FreeRunning
    );

    // A layout change under a running reader.
    poke(&path, 12, &3u16.to_ne_bytes());
    poke(&path, 14, &8u16.to_ne_bytes());
    match reader.snapshot() {
        Err(ShmError::SegmentVersionNotSupported {
            found: 3,
            expected: 2,
            ..
        }) => {}
        other => panic!("expected SegmentVersionNotSupported, got {other:?}"),
    }
}

// Property tests: whatever the file holds, `new`/`open`, `snapshot` and `now` return, never
// panic, and anything accepted is exactly what the bytes say.

/// Runs the whole reader path on a file holding `bytes`; returns the accepted snapshot.
fn exercise(bytes: &[u8]) -> Result<ClockErrorBound, ShmError> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, bytes);
    let by_new = ShmReader::new(&CString::new(path.as_os_str().as_bytes()).unwrap());
    let mut reader = open_reader(&path)?;
    // `new` has the default options, which also open the VMClock device when the snapshot
    // sets the disruption-support flag; this machine may have none.
    let flag_set = bytes.get(72) == Some(&1);
    assert!(
        by_new.is_ok() || (flag_set && matches!(by_new, Err(ShmError::VmClockIo { .. }))),
        "open accepted what new rejected: {by_new:?}"
    );
    let snapshot = *reader.snapshot()?;
    let _ = reader.now();
    let _ = snapshot.now();
    for (real, mono) in [
        (Timespec::MAX, Timespec::MAX),
        (Timespec::MIN, Timespec::MIN),
        (Timespec::MIN, Timespec::MAX),
        (Timespec::new(0, 0), snapshot.as_of()),
        (Timespec::new(0, 0), snapshot.void_after()),
    ] {
        if let Ok(w) = snapshot.compute_bound_at(real, mono) {
            assert!(w.earliest <= w.latest);
        }
    }
    Ok(snapshot)
}

/// Checks an accepted snapshot against the raw bytes, decoded independently.
fn assert_matches_bytes(snapshot: &ClockErrorBound, bytes: &[u8]) {
    let i64_at = |o: usize| i64::from_ne_bytes(bytes[o..o + 8].try_into().unwrap());
    let seg = Segment {
        magic: MAGIC,
        segsize: 0,
        version: 2,
        generation: 0,
        as_of: (i64_at(16), i64_at(24)),
        void_after: (i64_at(32), i64_at(40)),
        bound_nsec: i64_at(48),
        disruption_marker: u64::from_ne_bytes(bytes[56..64].try_into().unwrap()),
        max_drift_ppb: u32::from_ne_bytes(bytes[64..68].try_into().unwrap()),
        clock_status: i32::from_ne_bytes(bytes[68..72].try_into().unwrap()),
        flag: bytes[72],
        padding: [0; 7],
    };
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

/// Payload fields that are valid four times in five each, so that whole payloads are
/// accepted often enough to check the accepted path too.
fn field_segment() -> impl Strategy<Value = Segment> {
    let nsec = || prop_oneof![4 => 0..1_000_000_000i64, 1 => any::<i64>()];
    (
        (1..=u16::MAX / 2).prop_map(|g| g * 2),
        (any::<i64>(), nsec(), any::<i64>(), nsec()),
        prop_oneof![4 => 0..=i64::MAX, 1 => any::<i64>()],
        any::<u64>(),
        prop_oneof![4 => 0..1_000_000_000u32, 1 => any::<u32>()],
        prop_oneof![4 => 0..=3i32, 1 => any::<i32>()],
        prop_oneof![4 => 0..=1u8, 1 => any::<u8>()],
        any::<[u8; 7]>(),
    )
        .prop_map(
            |(
                generation,
                (s0, n0, s1, n1),
                bound_nsec,
                disruption_marker,
                max_drift_ppb,
                clock_status,
                flag,
                padding,
            )| {
                Segment {
                    magic: MAGIC,
                    segsize: 80,
                    version: 2,
                    generation,
                    as_of: (s0, n0),
                    void_after: (s1, n1),
                    bound_nsec,
                    disruption_marker,
                    max_drift_ppb,
                    clock_status,
                    flag,
                    padding,
                }
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
        segsize in prop_oneof![Just(80u32), 0..=4200u32, any::<u32>()],
        version in prop_oneof![Just(2u16), any::<u16>()],
        generation in any::<u16>(),
        tail in proptest::collection::vec(any::<u8>(), 0..=4080),
    ) {
        let mut bytes = header(segsize, version, generation);
        bytes.extend_from_slice(&tail);
        if let Ok(snapshot) = exercise(&bytes) {
            prop_assert!(segsize >= 80 && segsize as usize <= bytes.len());
            prop_assert_eq!(version, 2);
            prop_assert!(generation != 0 && generation % 2 == 0);
            assert_matches_bytes(&snapshot, &bytes);
        }
    }

    #[test]
    fn valid_header_random_payload_never_panics(
        generation in (1..=u16::MAX / 2).prop_map(|g| g * 2),
        payload in any::<[u8; 64]>(),
    ) {
        let mut bytes = header(80, 2, generation);
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
