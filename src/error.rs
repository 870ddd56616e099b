//! [`ShmError`]: every way reading the segment can fail, with the context needed to act on it.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::bound::ClockStatus;
use crate::timespec::Timespec;

/// The error type of every fallible call in this crate.
///
/// Errors that concern a file name it; errors about content say what was found and what was
/// expected. [`ShmError::errno`] maps each error onto an OS errno the way the released
/// ClockBound client does: the errno of the failed system call, `EPROTO` for content errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// A system call on the segment file failed (open, stat, mmap, ...).
    #[error("cannot {operation} ClockBound segment {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"open"` or `"map"`.
        operation: &'static str,
        /// The segment file.
        path: Arc<Path>,
        /// The OS error; [`io::Error::raw_os_error`] keeps the errno.
        #[source]
        source: io::Error,
    },

    /// The segment exists but holds no usable snapshot yet: the daemon is starting, has wiped
    /// the segment, or died in the middle of an update. Retrying later is the right response.
    #[error("ClockBound segment {} is not initialized: {reason}", path.display())]
    SegmentNotInitialized {
        /// The segment file.
        path: Arc<Path>,
        /// Which of the not-yet-usable states was seen.
        reason: NotInitialized,
    },

    /// The segment, or a snapshot taken from it, is not a valid ClockBound segment.
    #[error("malformed ClockBound segment{}: {problem}", describe_path(path.as_deref()))]
    SegmentMalformed {
        /// The segment file, when the problem was found while reading one (a
        /// [`ClockErrorBound`](crate::ClockErrorBound) built by hand has none).
        path: Option<Arc<Path>>,
        /// What is wrong, with the value found.
        problem: Malformed,
    },

    /// The monotonic clock reads earlier than the snapshot's `as_of` by more than the
    /// coarse-clock blur (1 µs): the snapshot comes from another boot, another clock, or a
    /// writer whose clock is broken.
    #[error(
        "causality breach: CLOCK_MONOTONIC_COARSE reads {mono}, earlier than the snapshot's \
         as_of {as_of} by more than the 1 µs blur allowed"
    )]
    CausalityBreach {
        /// The snapshot's `as_of`.
        as_of: Timespec,
        /// The monotonic reading that came before it.
        mono: Timespec,
    },

    /// The clock's status does not allow trusting the window (Unknown or Disrupted), where
    /// the call needs a trusted one: while commit-waiting, or on a
    /// [`SharedClockBound`](crate::SharedClockBound) set to
    /// [`require_trusted`](crate::SharedClockBound::require_trusted).
    #[error("the clock is not trusted: status {status:?} (is the ClockBound daemon synchronised?)")]
    ClockNotTrusted {
        /// The status of the window that was refused.
        status: ClockStatus,
    },

    /// A wait ([`ShmReader::wait_until_after`](crate::ShmReader::wait_until_after),
    /// [`ShmReader::wait_for_sync`](crate::ShmReader::wait_for_sync), ...) ran out of time.
    #[error("gave up {what} after {waited:?}{}", describe_cause(last_error.as_deref()))]
    Timeout {
        /// What was being waited for.
        what: &'static str,
        /// How long the call waited.
        waited: Duration,
        /// The error of the last attempt, when the last attempt failed.
        #[source]
        last_error: Option<Box<ShmError>>,
    },

    /// The segment's layout version is not one this crate reads.
    #[error(
        "ClockBound segment {} has layout version {found}; this crate reads version {expected}",
        path.display()
    )]
    SegmentVersionNotSupported {
        /// The segment file.
        path: Arc<Path>,
        /// The version field in the segment.
        found: u16,
        /// The version this crate reads.
        expected: u16,
    },
}

fn describe_cause(cause: Option<&ShmError>) -> String {
    cause
        .map(|e| format!(" (last error: {e})"))
        .unwrap_or_default()
}

fn describe_path(path: Option<&Path>) -> String {
    path.map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

impl ShmError {
    /// The OS errno behind this error: the failed system call's errno for
    /// [`ShmError::Io`] (`EIO` if the OS gave none), `ETIMEDOUT` for
    /// [`ShmError::Timeout`], `EPROTO` for every other (content) error,
    /// matching the released client's convention.
    #[must_use]
    pub fn errno(&self) -> i32 {
        match self {
            ShmError::Io { source, .. } => source
                .raw_os_error()
                .unwrap_or(rustix::io::Errno::IO.raw_os_error()),
            ShmError::Timeout { .. } => rustix::io::Errno::TIMEDOUT.raw_os_error(),
            _ => rustix::io::Errno::PROTO.raw_os_error(),
        }
    }

    /// True for the errors that a later call can clear without anyone fixing anything: the
    /// file is missing (`ENOENT`), or the segment is not initialized yet. A service that
    /// starts before the daemon waits on these and fails on the others.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            ShmError::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            ShmError::SegmentNotInitialized { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn malformed(path: Option<&Arc<Path>>, problem: Malformed) -> ShmError {
        ShmError::SegmentMalformed {
            path: path.cloned(),
            problem,
        }
    }
}

/// Why a segment is not usable yet (see [`ShmError::SegmentNotInitialized`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotInitialized {
    /// The file is empty: the daemon created it and has not written the header yet.
    EmptyFile,
    /// The version field is 0: the daemon wiped the segment and has not set it up again.
    Wiped,
    /// The generation is 0: nothing was ever written to the payload.
    NeverWritten,
    /// The generation is odd and stayed odd through every retry: an update is in progress,
    /// or the writer died in the middle of one, and there is no earlier snapshot to answer
    /// from.
    UpdateInProgress {
        /// The odd generation seen.
        generation: u16,
    },
    /// The generation moved during every retry (a writer that never pauses) and there is no
    /// earlier snapshot to answer from.
    Contended,
}

impl fmt::Display for NotInitialized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotInitialized::EmptyFile => f.write_str("the file is empty (is the daemon starting?)"),
            NotInitialized::Wiped => f.write_str(
                "layout version is 0 (the daemon wiped it and has not written it again)",
            ),
            NotInitialized::NeverWritten => {
                f.write_str("generation is 0 (no snapshot was ever written)")
            }
            NotInitialized::UpdateInProgress { generation } => {
                write!(
                    f,
                    "generation {generation} is odd (an update is in progress, or the writer died during one)"
                )
            }
            NotInitialized::Contended => {
                f.write_str("the generation changed on every attempt to read a snapshot")
            }
        }
    }
}

/// What is wrong with a malformed segment or snapshot (see [`ShmError::SegmentMalformed`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// The file is shorter than a header and payload.
    FileTooShort {
        /// The file's length in bytes.
        len: u64,
        /// The bytes a layout-2 segment needs.
        needed: u64,
    },
    /// The magic number is not ClockBound's.
    BadMagic {
        /// The two words found, in native byte order.
        found: [u32; 2],
        /// The two words expected.
        expected: [u32; 2],
    },
    /// The header's `segsize` is smaller than header and payload.
    SegsizeTooSmall {
        /// The `segsize` field.
        segsize: u32,
        /// The bytes a layout-2 segment needs.
        needed: u32,
    },
    /// The header's `segsize` claims more bytes than the file holds.
    SegsizeBeyondFile {
        /// The `segsize` field.
        segsize: u32,
        /// The file's length in bytes.
        file_len: u64,
    },
    /// `clock_status` is not one of the four defined values.
    ClockStatus {
        /// The raw value.
        found: i32,
    },
    /// `clock_disruption_support_enabled` is neither 0 nor 1.
    DisruptionFlag {
        /// The raw byte.
        found: u8,
    },
    /// A time field's nanoseconds are outside `0..1_000_000_000`.
    Nanoseconds {
        /// `"as_of"` or `"void_after"`.
        field: &'static str,
        /// The raw nanoseconds.
        found: i64,
    },
    /// `max_drift_ppb` is 1e9 or more: the clock would drift by a second per second.
    DriftTooLarge {
        /// The raw value.
        found: u32,
    },
    /// `bound_nsec` is negative: an error bound cannot be.
    NegativeBound {
        /// The raw value.
        found: i64,
    },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Malformed::FileTooShort { len, needed } => {
                write!(
                    f,
                    "file holds {len} bytes, a segment needs at least {needed}"
                )
            }
            Malformed::BadMagic { found, expected } => write!(
                f,
                "magic is {:#010x} {:#010x}, expected {:#010x} {:#010x} (not a ClockBound segment)",
                found[0], found[1], expected[0], expected[1]
            ),
            Malformed::SegsizeTooSmall { segsize, needed } => {
                write!(f, "segsize is {segsize}, a segment needs at least {needed}")
            }
            Malformed::SegsizeBeyondFile { segsize, file_len } => {
                write!(
                    f,
                    "segsize is {segsize} but the file holds only {file_len} bytes"
                )
            }
            Malformed::ClockStatus { found } => {
                write!(
                    f,
                    "clock_status is {found}, expected 0 (Unknown) to 3 (Disrupted)"
                )
            }
            Malformed::DisruptionFlag { found } => {
                write!(
                    f,
                    "clock_disruption_support_enabled is {found}, expected 0 or 1"
                )
            }
            Malformed::Nanoseconds { field, found } => {
                write!(
                    f,
                    "{field} has {found} nanoseconds, expected 0 to 999999999"
                )
            }
            Malformed::DriftTooLarge { found } => {
                write!(f, "max_drift_ppb is {found}, expected below 1000000000")
            }
            Malformed::NegativeBound { found } => {
                write!(f, "bound_nsec is {found}, expected 0 or more")
            }
        }
    }
}
