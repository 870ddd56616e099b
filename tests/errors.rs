//! How errors read: `Display` without the cause, `Debug` as a report, each cause printed
//! once along the `source()` chain, the VMClock remedies, `is_transient` per variant.

use std::error::Error;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clockbound_shm::{
    ClockStatus, DisruptionCheck, Malformed, NotInitialized, ReaderOptions, ShmError, ShmReader,
    Timespec, VmClockReader,
};
use rustix::io::Errno;

/// Every message along the chain, the error's own first.
fn chain(e: &ShmError) -> Vec<String> {
    std::iter::successors(Some(e as &(dyn Error + 'static)), |e| (*e).source())
        .map(ToString::to_string)
        .collect()
}

fn missing_segment() -> (tempfile::TempDir, ShmError) {
    let dir = tempfile::tempdir().unwrap();
    let err = ShmReader::open(dir.path().join("shm0")).unwrap_err();
    (dir, err)
}

#[test]
fn the_os_cause_is_printed_once_along_the_chain() {
    let (_dir, err) = missing_segment();
    let os_message = io::Error::from_raw_os_error(Errno::NOENT.raw_os_error()).to_string();
    let messages = chain(&err);
    assert_eq!(messages.len(), 2, "{messages:?}");
    let joined = messages.join("\n");
    assert_eq!(
        joined.matches(&os_message).count(),
        1,
        "the OS error must appear once: {messages:?}"
    );
    assert!(messages[0].starts_with("cannot open ClockBound segment"));
    assert!(messages[0].ends_with("shm0"), "{messages:?}");
}

#[test]
fn a_timeout_does_not_repeat_its_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let err =
        ShmReader::wait_for_sync(dir.path().join("shm0"), Duration::from_millis(30)).unwrap_err();
    let messages = chain(&err);
    // Timeout -> Io -> the OS error, each once.
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].starts_with("gave up waiting"), "{messages:?}");
    assert!(!messages[0].contains("cannot open"), "{messages:?}");
    assert!(messages[1].starts_with("cannot open ClockBound segment"));
    assert!(!messages[1].contains("os error"), "{messages:?}");
}

#[test]
fn debug_is_a_readable_report_and_alternate_debug_the_structure() {
    let (_dir, err) = missing_segment();
    let report = format!("{err:?}");
    // What `fn main() -> Result<(), ShmError>` prints: the message, then the cause.
    assert!(
        report.starts_with(&err.to_string()),
        "Debug must start with the message: {report}"
    );
    assert!(report.contains("\n\nCaused by:\n    "), "{report}");
    assert!(report.contains("os error 2"), "{report}");
    assert!(!report.contains("Io {"), "{report}");
    assert!(!report.contains("operation:"), "{report}");

    let structured = format!("{err:#?}");
    assert!(structured.starts_with("Io {"), "{structured}");
    assert!(structured.contains("operation: \"open\""), "{structured}");
    assert!(structured.contains("path:"), "{structured}");

    // Several causes are numbered, as a reporter numbers them.
    let dir = tempfile::tempdir().unwrap();
    let timeout =
        ShmReader::wait_for_sync(dir.path().join("shm0"), Duration::from_millis(20)).unwrap_err();
    let report = format!("{timeout:?}");
    assert!(report.contains("\n    0: cannot open"), "{report}");
    assert!(report.contains("\n    1: "), "{report}");
    assert!(format!("{timeout:#?}").starts_with("Timeout {"));

    // An error without a cause is its message.
    let plain = ShmError::ClockNotTrusted {
        status: ClockStatus::Unknown,
    };
    assert_eq!(format!("{plain:?}"), plain.to_string());
}

#[test]
fn an_unreadable_vmclock_names_both_remedies() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("vmclock0");
    let err = VmClockReader::open(&missing).unwrap_err();
    assert!(matches!(err, ShmError::VmClockIo { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("read access"), "{msg}");
    assert!(msg.contains("mount /dev/vmclock0"), "{msg}");
    assert!(msg.contains("DisruptionCheck::Off"), "{msg}");
    assert!(
        msg.contains("only once the daemon notices"),
        "what the check gives up: {msg}"
    );
    // The errno stays, and the OS message is in the chain, once.
    assert_eq!(err.errno(), Errno::NOENT.raw_os_error());
    assert!(!msg.contains("os error"), "{msg}");
    assert_eq!(chain(&err).len(), 2);

    // The same through a reader whose segment asks for the check.
    let seg = dir.path().join("shm0");
    let mut writer = clockbound_shm::ShmWriter::new(&seg).unwrap();
    writer.write(
        &clockbound_shm::ClockErrorBound::builder()
            .as_of(Timespec::new(1, 0))
            .void_after(Timespec::new(1001, 0))
            .bound_nsec(1_000)
            .max_drift_ppb(1_000)
            .clock_status(ClockStatus::Synchronized)
            .clock_disruption_support_enabled(true)
            .build(),
    );
    let options = ReaderOptions::new().disruption_check(DisruptionCheck::WhenEnabled {
        vmclock_path: missing.clone(),
    });
    let err = ShmReader::open_with(&seg, &options).unwrap_err();
    assert!(err.to_string().contains("DisruptionCheck::Off"), "{err}");
}

#[test]
fn other_vmclock_io_failures_carry_no_remedy_text() {
    let err = ShmError::VmClockIo {
        operation: "map",
        path: Arc::from(Path::new("/dev/vmclock0")),
        source: io::Error::from_raw_os_error(Errno::NOMEM.raw_os_error()),
    };
    assert_eq!(err.to_string(), "cannot map VMClock page /dev/vmclock0");
    for errno in [Errno::ACCESS, Errno::PERM, Errno::NODEV, Errno::NXIO] {
        let err = ShmError::VmClockIo {
            operation: "open",
            path: Arc::from(Path::new("/dev/vmclock0")),
            source: io::Error::from_raw_os_error(errno.raw_os_error()),
        };
        assert!(
            err.to_string().contains("DisruptionCheck::Off"),
            "{errno:?}"
        );
    }
}

#[test]
fn is_transient_per_variant() {
    let path: Arc<Path> = Arc::from(Path::new("/x"));
    let io_err = |errno: Errno| ShmError::Io {
        operation: "open",
        path: Arc::clone(&path),
        source: io::Error::from_raw_os_error(errno.raw_os_error()),
    };
    let transient = [
        io_err(Errno::NOENT),
        io_err(Errno::INTR),
        ShmError::SegmentNotInitialized {
            path: Arc::clone(&path),
            reason: NotInitialized::EmptyFile,
        },
        // A daemon writing a new segment in several steps: a short file, briefly.
        ShmError::SegmentMalformed {
            path: Some(Arc::clone(&path)),
            problem: Malformed::FileTooShort {
                len: 16,
                needed: 80,
            },
        },
        ShmError::ClockNotTrusted {
            status: ClockStatus::Unknown,
        },
        ShmError::Timeout {
            what: "waiting",
            waited: Duration::from_secs(1),
            last_error: None,
        },
        ShmError::Timeout {
            what: "waiting",
            waited: Duration::from_secs(1),
            last_error: Some(Box::new(io_err(Errno::NOENT))),
        },
        ShmError::VmClockNotReady {
            path: Arc::clone(&path),
            seq_count: 3,
        },
    ];
    for e in &transient {
        assert!(e.is_transient(), "{e:#?}");
    }
    let permanent = [
        io_err(Errno::ACCESS),
        ShmError::SegmentMalformed {
            path: Some(Arc::clone(&path)),
            problem: Malformed::BadMagic {
                found: [0, 0],
                expected: [1, 2],
            },
        },
        ShmError::SegmentVersionNotSupported {
            path: Arc::clone(&path),
            found: 7,
            expected: 2,
        },
        ShmError::CausalityBreach {
            as_of: Timespec::new(10, 0),
            mono: Timespec::new(1, 0),
        },
        ShmError::Timeout {
            what: "waiting",
            waited: Duration::from_secs(1),
            last_error: Some(Box::new(io_err(Errno::ACCESS))),
        },
        ShmError::VmClockIo {
            operation: "open",
            path: Arc::clone(&path),
            source: io::Error::from_raw_os_error(Errno::NOENT.raw_os_error()),
        },
    ];
    for e in &permanent {
        assert!(!e.is_transient(), "{e:#?}");
    }
}

/// A directory or a FIFO at the segment's path: the errno should say what is wrong
/// (`EISDIR` for a directory) rather than `EIO`, which reads as a disk failure. The error
/// is made in the reader's open path.
#[test]
fn not_a_regular_file_has_a_meaningful_errno() {
    let dir = tempfile::tempdir().unwrap();
    let err = ShmReader::open(dir.path()).unwrap_err();
    assert_eq!(err.errno(), Errno::ISDIR.raw_os_error(), "{err:?}");

    let fifo = dir.path().join("shm0");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let err = ShmReader::open(&fifo).unwrap_err();
        assert_ne!(err.errno(), Errno::IO.raw_os_error(), "{err:?}");
        assert!(format!("{err:?}").contains("not a regular file"), "{err:?}");
    }
}
