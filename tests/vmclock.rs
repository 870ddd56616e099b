//! The VMClock page reader against regular files laid out like the page.
//!
//! Pages are built byte by byte at the offsets of the protocol (`docs::protocol`, "The VMClock page"), written
//! out as literals here, so that a wrong offset in the crate makes these tests fail.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clockbound_shm::{
    ShmError, VMCLOCK_DEFAULT_PATH, VmClockMalformed, VmClockReader, VmClockStatus,
};
use proptest::prelude::*;
use rustix::io::Errno;

const MAGIC: u32 = 0x4B4C_4356;

/// A VMClock page: every field, and how many bytes of it the file holds.
#[derive(Clone, Debug)]
struct Page {
    magic: u32,
    size: u32,
    version: u16,
    counter_id: u8,
    time_type: u8,
    seq_count: u32,
    disruption_marker: u64,
    flags: u64,
    clock_status: u8,
    leap_second_smearing_hint: u8,
    tai_offset_sec: i16,
    leap_indicator: u8,
    counter_period_shift: u8,
    counter_value: u64,
    counter_period_frac_sec: u64,
    counter_period_esterror_rate_frac_sec: u64,
    counter_period_maxerror_rate_frac_sec: u64,
    time_sec: u64,
    time_frac_sec: u64,
    time_esterror_nanosec: u64,
    time_maxerror_nanosec: u64,
    /// Length of the file.
    file_len: usize,
}

impl Page {
    fn valid() -> Page {
        Page {
            magic: MAGIC,
            size: 104,
            version: 1,
            counter_id: 1,
            time_type: 2,
            seq_count: 2,
            disruption_marker: 0x0123_4567_89AB_CDEF,
            flags: 0x81,
            clock_status: 2,
            leap_second_smearing_hint: 3,
            tai_offset_sec: -37,
            leap_indicator: 4,
            counter_period_shift: 5,
            counter_value: 6,
            counter_period_frac_sec: 7,
            counter_period_esterror_rate_frac_sec: 8,
            counter_period_maxerror_rate_frac_sec: 9,
            time_sec: 1_700_000_000,
            time_frac_sec: 1 << 63,
            time_esterror_nanosec: 11,
            time_maxerror_nanosec: 12,
            file_len: 104,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.file_len.max(104)];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.magic.to_le_bytes());
        put(4, &self.size.to_le_bytes());
        put(8, &self.version.to_le_bytes());
        put(10, &[self.counter_id]);
        put(11, &[self.time_type]);
        put(12, &self.seq_count.to_le_bytes());
        put(16, &self.disruption_marker.to_le_bytes());
        put(24, &self.flags.to_le_bytes());
        put(34, &[self.clock_status]);
        put(35, &[self.leap_second_smearing_hint]);
        put(36, &self.tai_offset_sec.to_le_bytes());
        put(38, &[self.leap_indicator]);
        put(39, &[self.counter_period_shift]);
        put(40, &self.counter_value.to_le_bytes());
        put(48, &self.counter_period_frac_sec.to_le_bytes());
        put(
            56,
            &self.counter_period_esterror_rate_frac_sec.to_le_bytes(),
        );
        put(
            64,
            &self.counter_period_maxerror_rate_frac_sec.to_le_bytes(),
        );
        put(72, &self.time_sec.to_le_bytes());
        put(80, &self.time_frac_sec.to_le_bytes());
        put(88, &self.time_esterror_nanosec.to_le_bytes());
        put(96, &self.time_maxerror_nanosec.to_le_bytes());
        b.truncate(self.file_len);
        b
    }

    fn write_to(&self, path: &Path) {
        fs::write(path, self.bytes()).unwrap();
    }
}

fn page_file(dir: &tempfile::TempDir, page: &Page) -> PathBuf {
    let path = dir.path().join("vmclock0");
    page.write_to(&path);
    path
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// One update the way the hypervisor makes it: `seq_count` odd, the fields, `seq_count` even.
fn update_marker(file: &File, seq_before: u32, marker: u64) {
    file.write_at(&(seq_before + 1).to_le_bytes(), 12).unwrap();
    file.write_at(&marker.to_le_bytes(), 16).unwrap();
    file.write_at(&(seq_before + 2).to_le_bytes(), 12).unwrap();
}

fn malformed(result: Result<VmClockReader, ShmError>) -> VmClockMalformed {
    match result {
        Err(ShmError::VmClockMalformed { problem, path }) => {
            assert!(
                path.ends_with("vmclock0"),
                "the error names the file: {path:?}"
            );
            problem
        }
        other => panic!("expected VmClockMalformed, got {other:?}"),
    }
}

#[test]
fn default_path_is_the_device() {
    assert_eq!(VMCLOCK_DEFAULT_PATH, "/dev/vmclock0");
}

#[test]
fn reads_marker_and_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let page = Page::valid();
    let mut reader = VmClockReader::open(page_file(&dir, &page)).unwrap();
    assert_eq!(reader.disruption_marker().unwrap(), 0x0123_4567_89AB_CDEF);
    assert_eq!(reader.seq_count(), 2);
    let snap = reader.snapshot().unwrap();
    assert_eq!(snap.seq_count, 2);
    assert_eq!(snap.size, 104);
    assert_eq!(snap.version, 1);
    assert_eq!(snap.counter_id, 1);
    assert_eq!(snap.time_type, 2);
    assert_eq!(snap.disruption_marker, 0x0123_4567_89AB_CDEF);
    assert_eq!(snap.flags, 0x81);
    assert_eq!(snap.clock_status, VmClockStatus::Synchronized);
    assert_eq!(snap.leap_second_smearing_hint, 3);
    assert_eq!(snap.tai_offset_sec, -37);
    assert_eq!(snap.leap_indicator, 4);
    assert_eq!(snap.counter_period_shift, 5);
    assert_eq!(snap.counter_value, 6);
    assert_eq!(snap.counter_period_frac_sec, 7);
    assert_eq!(snap.counter_period_esterror_rate_frac_sec, 8);
    assert_eq!(snap.counter_period_maxerror_rate_frac_sec, 9);
    assert_eq!(snap.time_sec, 1_700_000_000);
    assert_eq!(snap.time_frac_sec, 1 << 63);
    assert_eq!(snap.time_esterror_nanosec, 11);
    assert_eq!(snap.time_maxerror_nanosec, 12);
}

#[test]
fn every_status_wire_value() {
    let dir = tempfile::tempdir().unwrap();
    let expected = [
        VmClockStatus::Unknown,
        VmClockStatus::Initializing,
        VmClockStatus::Synchronized,
        VmClockStatus::FreeRunning,
        VmClockStatus::Unreliable,
    ];
    for (wire, status) in expected.into_iter().enumerate() {
        let page = Page {
            clock_status: wire as u8,
            ..Page::valid()
        };
        let mut reader = VmClockReader::open(page_file(&dir, &page)).unwrap();
        assert_eq!(reader.snapshot().unwrap().clock_status, status);
        assert_eq!(status.to_wire(), wire as u8);
    }
}

#[test]
fn a_page_declaring_a_whole_page_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let page = Page {
        size: 4096,
        file_len: 4096,
        ..Page::valid()
    };
    let mut reader = VmClockReader::open(page_file(&dir, &page)).unwrap();
    assert_eq!(reader.snapshot().unwrap().size, 4096);
}

#[test]
fn marker_changed_mid_run_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = page_file(&dir, &Page::valid());
    let mut reader = VmClockReader::open(&path).unwrap();
    let clone = reader.clone();
    assert_eq!(reader.disruption_marker().unwrap(), 0x0123_4567_89AB_CDEF);
    let file = open_rw(&path);
    update_marker(&file, 2, 42);
    assert_eq!(reader.disruption_marker().unwrap(), 42);
    assert_eq!(reader.seq_count(), 4);
    assert_eq!(reader.snapshot().unwrap().disruption_marker, 42);
    update_marker(&file, 4, 43);
    assert_eq!(reader.disruption_marker().unwrap(), 43);
    assert_eq!(reader.disruption_marker().unwrap(), 43);
    assert_eq!(reader.seq_count(), 6);
    // A clone made earlier shares the mapping and keeps its own cache: it catches up too.
    let mut clone = clone;
    assert_eq!(clone.seq_count(), 2);
    assert_eq!(clone.disruption_marker().unwrap(), 43);
}

#[test]
fn mid_update_answers_from_the_cached_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = page_file(&dir, &Page::valid());
    let mut reader = VmClockReader::open(&path).unwrap();
    let file = open_rw(&path);
    // A writer that stops half-way: seq_count odd, the marker already new.
    file.write_at(&3u32.to_le_bytes(), 12).unwrap();
    file.write_at(&99u64.to_le_bytes(), 16).unwrap();
    for _ in 0..3 {
        assert_eq!(reader.disruption_marker().unwrap(), 0x0123_4567_89AB_CDEF);
        assert_eq!(
            reader.snapshot().unwrap().disruption_marker,
            0x0123_4567_89AB_CDEF
        );
        assert_eq!(reader.seq_count(), 2);
    }
    // The update completes: the new marker is seen.
    file.write_at(&4u32.to_le_bytes(), 12).unwrap();
    assert_eq!(reader.disruption_marker().unwrap(), 99);
    // A new odd value after that is waited on again, then answered from the cache.
    file.write_at(&5u32.to_le_bytes(), 12).unwrap();
    assert_eq!(reader.disruption_marker().unwrap(), 99);
}

#[test]
fn opening_mid_update_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let page = Page {
        seq_count: 7,
        ..Page::valid()
    };
    match VmClockReader::open(page_file(&dir, &page)) {
        Err(e @ ShmError::VmClockNotReady { seq_count: 7, .. }) => {
            assert!(e.is_transient());
            assert_eq!(e.errno(), Errno::PROTO.raw_os_error());
            assert!(e.to_string().contains("odd"), "{e}");
        }
        other => panic!("expected VmClockNotReady, got {other:?}"),
    }
}

#[test]
fn missing_file_is_io_with_errno() {
    let dir = tempfile::tempdir().unwrap();
    match VmClockReader::open(dir.path().join("vmclock0")) {
        Err(
            ref e @ ShmError::VmClockIo {
                operation,
                ref path,
                ref source,
            },
        ) => {
            assert_eq!(operation, "open");
            assert!(path.ends_with("vmclock0"));
            assert_eq!(source.raw_os_error(), Some(Errno::NOENT.raw_os_error()));
            assert_eq!(e.errno(), Errno::NOENT.raw_os_error());
            assert!(!e.is_transient(), "a missing device does not appear later");
            assert!(e.to_string().contains("VMClock"), "{e}");
        }
        other => panic!("expected VmClockIo, got {other:?}"),
    }
}

#[test]
fn empty_and_short_files_are_malformed() {
    let dir = tempfile::tempdir().unwrap();
    for len in [0usize, 1, 16, 103] {
        let page = Page {
            file_len: len,
            ..Page::valid()
        };
        assert_eq!(
            malformed(VmClockReader::open(page_file(&dir, &page))),
            VmClockMalformed::FileTooShort {
                len: len as u64,
                needed: 104
            },
            "file of {len} bytes"
        );
    }
}

#[test]
fn bad_header_fields_are_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            Page {
                magic: 0x4B4C_4357,
                ..Page::valid()
            },
            VmClockMalformed::BadMagic {
                found: 0x4B4C_4357,
                expected: MAGIC,
            },
        ),
        (
            Page {
                version: 2,
                ..Page::valid()
            },
            VmClockMalformed::Version {
                found: 2,
                expected: 1,
            },
        ),
        (
            Page {
                version: 0,
                ..Page::valid()
            },
            VmClockMalformed::Version {
                found: 0,
                expected: 1,
            },
        ),
        (
            Page {
                size: 103,
                ..Page::valid()
            },
            VmClockMalformed::SizeTooSmall {
                size: 103,
                needed: 104,
            },
        ),
        (
            Page {
                size: 0,
                ..Page::valid()
            },
            VmClockMalformed::SizeTooSmall {
                size: 0,
                needed: 104,
            },
        ),
        (
            Page {
                size: 105,
                ..Page::valid()
            },
            VmClockMalformed::SizeBeyondMapping {
                size: 105,
                mapped: 104,
            },
        ),
        // Never more than one page is mapped, whatever the file holds.
        (
            Page {
                size: 8192,
                file_len: 8192,
                ..Page::valid()
            },
            VmClockMalformed::SizeBeyondMapping {
                size: 8192,
                mapped: 4096,
            },
        ),
    ];
    for (page, expected) in cases {
        assert_eq!(
            malformed(VmClockReader::open(page_file(&dir, &page))),
            expected,
            "{page:?}"
        );
    }
}

#[test]
fn status_outside_the_wire_values_is_a_typed_error_not_ub() {
    let dir = tempfile::tempdir().unwrap();
    for status in [5u8, 9, 0xFF] {
        let page = Page {
            clock_status: status,
            ..Page::valid()
        };
        let mut reader = VmClockReader::open(page_file(&dir, &page)).unwrap();
        match reader.snapshot() {
            Err(ShmError::VmClockMalformed {
                problem: VmClockMalformed::ClockStatus { found },
                ..
            }) => assert_eq!(found, status),
            other => panic!("expected ClockStatus error, got {other:?}"),
        }
        // The marker does not depend on the status and stays readable.
        assert_eq!(reader.disruption_marker().unwrap(), 0x0123_4567_89AB_CDEF);
    }
}

#[test]
fn header_broken_while_open_is_reported_on_the_next_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = page_file(&dir, &Page::valid());
    let mut reader = VmClockReader::open(&path).unwrap();
    let file = open_rw(&path);
    file.write_at(&3u32.to_le_bytes(), 12).unwrap();
    file.write_at(&0u32.to_le_bytes(), 0).unwrap();
    file.write_at(&4u32.to_le_bytes(), 12).unwrap();
    match reader.disruption_marker() {
        Err(ShmError::VmClockMalformed {
            problem: VmClockMalformed::BadMagic { found: 0, .. },
            ..
        }) => {}
        other => panic!("expected BadMagic, got {other:?}"),
    }
}

#[test]
fn other_file_types_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    // A directory.
    assert!(matches!(
        VmClockReader::open(dir.path()),
        Err(ShmError::VmClockIo { .. })
    ));
    // A FIFO: opening one for reading would block until a writer came.
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    if made {
        assert!(matches!(
            VmClockReader::open(&fifo),
            Err(ShmError::VmClockIo { .. })
        ));
    }
}

#[test]
fn character_devices_are_mapped_one_page() {
    // /dev/zero maps (a page of zeros): a typed bad magic, no crash.
    if Path::new("/dev/zero").exists() {
        match VmClockReader::open("/dev/zero") {
            Err(ShmError::VmClockMalformed {
                problem: VmClockMalformed::BadMagic { found: 0, .. },
                ..
            }) => {}
            other => panic!("expected BadMagic, got {other:?}"),
        }
    }
    // /dev/null cannot be mapped: the OS error, typed.
    if Path::new("/dev/null").exists() {
        match VmClockReader::open("/dev/null") {
            Err(ShmError::VmClockIo { operation, .. }) => assert_eq!(operation, "map"),
            other => panic!("expected VmClockIo, got {other:?}"),
        }
    }
}

/// A writer updating the page with the seqlock protocol while a reader reads: every copy
/// the reader accepts is consistent (the marker and two fields written with it agree).
#[test]
fn concurrent_updates_never_yield_a_torn_copy() {
    let dir = tempfile::tempdir().unwrap();
    let page = Page {
        disruption_marker: 0,
        time_sec: 0,
        counter_value: !0,
        ..Page::valid()
    };
    let path = page_file(&dir, &page);
    let mut reader = VmClockReader::open(&path).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = Arc::clone(&done);
        let file = open_rw(&path);
        std::thread::spawn(move || {
            let mut seq = 2u32;
            for k in 1..=20_000u64 {
                file.write_at(&(seq + 1).to_le_bytes(), 12).unwrap();
                file.write_at(&k.to_le_bytes(), 16).unwrap();
                file.write_at(&(!k).to_le_bytes(), 40).unwrap();
                file.write_at(&k.to_le_bytes(), 72).unwrap();
                seq += 2;
                file.write_at(&seq.to_le_bytes(), 12).unwrap();
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut last = 0;
    let mut reads = 0u64;
    while !done.load(Ordering::Acquire) {
        let snap = reader.snapshot().unwrap();
        assert_eq!(snap.time_sec, snap.disruption_marker, "torn: {snap:?}");
        assert_eq!(
            snap.counter_value, !snap.disruption_marker,
            "torn: {snap:?}"
        );
        assert!(snap.disruption_marker >= last, "went backwards");
        assert_eq!(snap.seq_count % 2, 0);
        last = snap.disruption_marker;
        reads += 1;
    }
    writer.join().unwrap();
    assert_eq!(reader.disruption_marker().unwrap(), 20_000);
    assert!(reads > 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes at all: open and snapshot return, never panic.
    #[test]
    fn random_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..=4096)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmclock0");
        fs::write(&path, &bytes).unwrap();
        if let Ok(mut reader) = VmClockReader::open(&path) {
            let _ = reader.snapshot();
            let _ = reader.disruption_marker();
        }
    }

    /// A valid header and random fields: open succeeds, the marker is the bytes at 16..24,
    /// and the snapshot fails exactly when byte 34 is not a status.
    #[test]
    fn random_fields_behind_a_valid_header(
        body in proptest::collection::vec(any::<u8>(), 88),
        extra in 0usize..=4096 - 104,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmclock0");
        let mut bytes = Page { file_len: 104 + extra, ..Page::valid() }.bytes();
        bytes[16..104].copy_from_slice(&body);
        fs::write(&path, &bytes).unwrap();
        let mut reader = VmClockReader::open(&path).unwrap();
        let marker = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
        prop_assert_eq!(reader.disruption_marker().unwrap(), marker);
        let status = bytes[34];
        match reader.snapshot() {
            Ok(snap) => {
                prop_assert!(status <= 4);
                prop_assert_eq!(snap.clock_status.to_wire(), status);
                prop_assert_eq!(snap.tai_offset_sec, i16::from_le_bytes([bytes[36], bytes[37]]));
                prop_assert_eq!(snap.time_maxerror_nanosec,
                    u64::from_le_bytes(bytes[96..104].try_into().unwrap()));
            }
            Err(ShmError::VmClockMalformed {
                problem: VmClockMalformed::ClockStatus { found }, ..
            }) => {
                prop_assert!(status > 4);
                prop_assert_eq!(found, status);
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
