//! [`ShmError`]: every way reading the segment can fail, with the context needed to act on it.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::time::ClockStatus;
use crate::time::Timespec;

/// The error type of every fallible call in this crate.
///
/// Errors that concern a file name it; errors about content say what was found and what was
/// expected. [`ShmError::errno`] maps each error onto an OS errno the way the released
/// ClockBound client does: the errno of the failed system call, `EPROTO` for content errors.
///
/// # Printing
///
/// An error that has a cause (the OS error behind [`ShmError::Io`] and
/// [`ShmError::VmClockIo`], the last attempt's error behind [`ShmError::Timeout`]) returns it
/// from [`source()`](std::error::Error::source) and does not repeat it in its `Display`, so a
/// reporter that walks the chain (`anyhow`, `eyre`, ...) prints each cause once. To print
/// everything without such a reporter, use `Debug`:
///
/// - `{:?}` prints the message and then its causes, one per line, the way a reporter does:
///   what `fn main() -> Result<(), ShmError>` shows when it returns an error;
/// - `{:#?}` prints the structured form (variant and fields), for debugging this crate.
///
/// ```
/// use clockbound_shm::ShmReader;
///
/// let err = ShmReader::open("/nonexistent/clockbound/shm0").unwrap_err();
/// assert_eq!(err.to_string(), "cannot open ClockBound segment /nonexistent/clockbound/shm0");
/// let report = format!("{err:?}");
/// assert!(report.starts_with("cannot open ClockBound segment /nonexistent/clockbound/shm0"));
/// assert!(report.contains("Caused by:") && report.contains("os error 2"));
/// assert!(format!("{err:#?}").starts_with("Io {"));
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// A system call on the segment file failed (open, stat, mmap, ...).
    #[error("cannot {operation} ClockBound segment {}", path.display())]
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

    /// The CPU counter reads earlier than a layout-3 snapshot's `as_of_tsc` by more than the
    /// blur allowed (the counter gap converted to time exceeds 1 µs): the snapshot comes from
    /// another boot or another counter, the counter is not synchronised across CPUs, or the
    /// writer is broken.
    #[error(
        "causality breach: the CPU counter reads {counter}, earlier than the snapshot's \
         as_of_tsc {as_of_tsc} by more than the 1 µs blur allowed"
    )]
    CounterBehindSnapshot {
        /// The snapshot's `as_of_tsc`.
        as_of_tsc: u64,
        /// The counter value read (or passed in).
        counter: u64,
    },

    /// A layout-3 snapshot needs the CPU counter, and this crate reads it only on x86-64 and
    /// aarch64.
    #[error(
        "layout 3 needs the CPU counter, which this crate reads on x86-64 and aarch64 only \
         (this is {arch})"
    )]
    CounterUnavailable {
        /// The target architecture this crate was built for.
        arch: &'static str,
    },

    /// The clock's status does not allow trusting the window (Unknown or Disrupted), where
    /// the call needs a trusted one: while commit-waiting, answering `after` / `before`, or
    /// on a reader opened with [`require_trusted`](crate::ReaderOptions::require_trusted).
    #[error("the clock is not trusted: status {status:?} (is the ClockBound daemon synchronised?)")]
    ClockNotTrusted {
        /// The status of the window that was refused.
        status: ClockStatus,
    },

    /// A wait ([`ShmReader::wait_until_after`](crate::ShmReader::wait_until_after),
    /// [`ShmReader::wait_for_sync`](crate::ShmReader::wait_for_sync), ...) ran out of time.
    #[error("gave up {what} after {}", describe_duration(*waited))]
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

    /// The segment's layout cannot be read on this machine: layout 3 needs the CPU counter,
    /// which this crate reads on x86-64 and aarch64 only. Read the layout 2 segment
    /// ([`CLOCKBOUND_SHM_DEFAULT_PATH`](crate::CLOCKBOUND_SHM_DEFAULT_PATH)) instead.
    #[error("cannot read ClockBound segment {} ({layout}) on this machine: {reason}", path.display())]
    LayoutNotSupported {
        /// The segment file.
        path: Arc<Path>,
        /// The layout that cannot be read.
        layout: crate::version::LayoutVersion,
        /// Why.
        reason: &'static str,
    },

    /// A system call on the VMClock device (or a file standing in for it) failed: open,
    /// stat, map. `ENOENT` for `/dev/vmclock0` means the guest kernel exposes no VMClock
    /// here (or, in a container, that the device is not mounted into it).
    ///
    /// When the page cannot be read (`ENOENT`, `EACCES`, `EPERM`, `ENODEV`, `ENXIO`), the
    /// message names both ways out: make the device readable by this process, or open the
    /// reader with [`DisruptionCheck::Off`](crate::DisruptionCheck::Off) and give up seeing a
    /// disruption before the daemon does.
    #[error("cannot {operation} VMClock page {}{}", path.display(), vmclock_remedy(source))]
    VmClockIo {
        /// What was being done, e.g. `"open"` or `"map"`.
        operation: &'static str,
        /// The device or file.
        path: Arc<Path>,
        /// The OS error; [`io::Error::raw_os_error`] keeps the errno.
        #[source]
        source: io::Error,
    },

    /// The VMClock page is not one this crate can read: too short, wrong magic, a `size`
    /// field that does not fit, another version, or an invalid field.
    #[error("malformed VMClock page {}: {problem}", path.display())]
    VmClockMalformed {
        /// The device or file.
        path: Arc<Path>,
        /// What is wrong, with the value found.
        problem: VmClockMalformed,
    },

    /// No consistent copy of the VMClock page could be taken and there is no earlier one to
    /// answer from: `seq_count` stayed odd (the hypervisor is updating the page, or stopped
    /// in the middle of an update) or moved on every attempt.
    #[error("VMClock page {} is not readable now: {}", path.display(), describe_seq(*seq_count))]
    VmClockNotReady {
        /// The device or file.
        path: Arc<Path>,
        /// The last `seq_count` seen: odd when an update was in progress.
        seq_count: u32,
    },
}

fn describe_seq(seq_count: u32) -> String {
    if seq_count % 2 == 1 {
        format!(
            "seq_count {seq_count} stayed odd (an update is in progress, or its writer stopped \
             in the middle of one)"
        )
    } else {
        format!("seq_count changed on every attempt to read the page (last seen {seq_count})")
    }
}

/// A wait's duration as an operator reads it: `60 s`, `1.5 s`, `250 ms`.
fn describe_duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        let secs = d.as_secs_f64();
        // Whole seconds print without a fraction, others with a millisecond's precision.
        if d.subsec_millis() == 0 {
            format!("{} s", d.as_secs())
        } else {
            format!("{secs:.3} s")
        }
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// The two ways out when the VMClock page cannot be read at all, for the errnos that mean
/// "not here" or "not for you"; nothing for other failures (a bad mapping, ...).
fn vmclock_remedy(source: &io::Error) -> &'static str {
    use rustix::io::Errno;
    let unreadable = matches!(
        source.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
    ) || source.raw_os_error().is_some_and(|e| {
        e == Errno::NODEV.raw_os_error()
            || e == Errno::NXIO.raw_os_error()
            || e == Errno::PERM.raw_os_error()
    });
    if unreadable {
        " (ClockBound readers check this page when the segment says the daemon tracks clock \
         disruptions). Either give this process read access to the device (in a \
         container, mount /dev/vmclock0 into it), or open the reader with \
         DisruptionCheck::Off: it then trusts the segment alone, and a live migration or \
         snapshot restore is reported only once the daemon notices it"
    } else {
        ""
    }
}

fn describe_path(path: Option<&Path>) -> String {
    path.map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

/// `{:?}` is the report an operator reads (message, then causes); `{:#?}` the structured form.
impl fmt::Debug for ShmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return self.fmt_structured(f);
        }
        write!(f, "{self}")?;
        let causes: Vec<&(dyn std::error::Error + 'static)> =
            std::iter::successors(std::error::Error::source(self), |e| e.source()).collect();
        match causes.as_slice() {
            [] => Ok(()),
            [only] => write!(f, "\n\nCaused by:\n    {only}"),
            many => {
                f.write_str("\n\nCaused by:")?;
                for (i, cause) in many.iter().enumerate() {
                    write!(f, "\n    {i}: {cause}")?;
                }
                Ok(())
            }
        }
    }
}

impl ShmError {
    /// The derived-style `Debug` form: variant name and every field.
    fn fmt_structured(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShmError::Io {
                operation,
                path,
                source,
            } => f
                .debug_struct("Io")
                .field("operation", operation)
                .field("path", path)
                .field("source", source)
                .finish(),
            ShmError::SegmentNotInitialized { path, reason } => f
                .debug_struct("SegmentNotInitialized")
                .field("path", path)
                .field("reason", reason)
                .finish(),
            ShmError::SegmentMalformed { path, problem } => f
                .debug_struct("SegmentMalformed")
                .field("path", path)
                .field("problem", problem)
                .finish(),
            ShmError::CausalityBreach { as_of, mono } => f
                .debug_struct("CausalityBreach")
                .field("as_of", as_of)
                .field("mono", mono)
                .finish(),
            ShmError::CounterBehindSnapshot { as_of_tsc, counter } => f
                .debug_struct("CounterBehindSnapshot")
                .field("as_of_tsc", as_of_tsc)
                .field("counter", counter)
                .finish(),
            ShmError::CounterUnavailable { arch } => f
                .debug_struct("CounterUnavailable")
                .field("arch", arch)
                .finish(),
            ShmError::LayoutNotSupported {
                path,
                layout,
                reason,
            } => f
                .debug_struct("LayoutNotSupported")
                .field("path", path)
                .field("layout", layout)
                .field("reason", reason)
                .finish(),
            ShmError::ClockNotTrusted { status } => f
                .debug_struct("ClockNotTrusted")
                .field("status", status)
                .finish(),
            ShmError::Timeout {
                what,
                waited,
                last_error,
            } => f
                .debug_struct("Timeout")
                .field("what", what)
                .field("waited", waited)
                .field("last_error", last_error)
                .finish(),
            ShmError::SegmentVersionNotSupported {
                path,
                found,
                expected,
            } => f
                .debug_struct("SegmentVersionNotSupported")
                .field("path", path)
                .field("found", found)
                .field("expected", expected)
                .finish(),
            ShmError::VmClockIo {
                operation,
                path,
                source,
            } => f
                .debug_struct("VmClockIo")
                .field("operation", operation)
                .field("path", path)
                .field("source", source)
                .finish(),
            ShmError::VmClockMalformed { path, problem } => f
                .debug_struct("VmClockMalformed")
                .field("path", path)
                .field("problem", problem)
                .finish(),
            ShmError::VmClockNotReady { path, seq_count } => f
                .debug_struct("VmClockNotReady")
                .field("path", path)
                .field("seq_count", seq_count)
                .finish(),
        }
    }

    /// The OS errno behind this error: the failed system call's errno for
    /// [`ShmError::Io`] (`EIO` if the OS gave none), `ETIMEDOUT` for
    /// [`ShmError::Timeout`], `EPROTO` for every other (content) error,
    /// matching the released client's convention.
    #[must_use]
    pub fn errno(&self) -> i32 {
        match self {
            ShmError::Io { source, .. } | ShmError::VmClockIo { source, .. } => source
                .raw_os_error()
                .unwrap_or(rustix::io::Errno::IO.raw_os_error()),
            ShmError::Timeout { .. } => rustix::io::Errno::TIMEDOUT.raw_os_error(),
            _ => rustix::io::Errno::PROTO.raw_os_error(),
        }
    }

    /// True for the errors that a later call can clear without anyone fixing anything: a
    /// service that starts before the daemon retries these and fails at once on the others
    /// ([`ShmReader::wait_for_sync`](crate::ShmReader::wait_for_sync) does exactly that).
    ///
    /// | Error | Transient | Why |
    /// |---|---|---|
    /// | [`Io`](ShmError::Io) `ENOENT` | yes | the daemon has not created the segment yet |
    /// | [`Io`](ShmError::Io) `EINTR` | yes | a signal interrupted the call |
    /// | [`Io`](ShmError::Io), other errnos (`EACCES`, not a regular file, ...) | no | permissions or the path must be fixed |
    /// | [`SegmentNotInitialized`](ShmError::SegmentNotInitialized) | yes | the daemon is (re)starting and has not written a snapshot yet |
    /// | [`SegmentMalformed`](ShmError::SegmentMalformed) with [`Malformed::FileTooShort`] | yes | a daemon recreating the segment writes it in several steps; a fresh open can see the file part-written |
    /// | [`SegmentMalformed`](ShmError::SegmentMalformed), other problems | no | the bytes are not a ClockBound segment, or the writer is broken |
    /// | [`SegmentVersionNotSupported`](ShmError::SegmentVersionNotSupported) | no | another layout: another path or another client is needed |
    /// | [`LayoutNotSupported`](ShmError::LayoutNotSupported), [`CounterUnavailable`](ShmError::CounterUnavailable) | no | this CPU's counter cannot be read: read the layout 2 segment |
    /// | [`CausalityBreach`](ShmError::CausalityBreach), [`CounterBehindSnapshot`](ShmError::CounterBehindSnapshot) | no | the snapshot is from another clock (another boot, another time namespace, a counter not synchronised across CPUs) or a broken writer |
    /// | [`ClockNotTrusted`](ShmError::ClockNotTrusted) | yes | the daemon leaves Unknown once synchronised, Disrupted once it catches up |
    /// | [`Timeout`](ShmError::Timeout) | when its last error is (or it has none) | the state waited on was still a passing one |
    /// | [`VmClockIo`](ShmError::VmClockIo) | no | a missing or unreadable device does not appear later by itself |
    /// | [`VmClockMalformed`](ShmError::VmClockMalformed) | no | not a page this crate reads |
    /// | [`VmClockNotReady`](ShmError::VmClockNotReady) | yes | the hypervisor is updating the page |
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            ShmError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::Interrupted
            ),
            ShmError::SegmentMalformed { problem, .. } => {
                matches!(problem, Malformed::FileTooShort { .. })
            }
            ShmError::Timeout { last_error, .. } => {
                last_error.as_deref().is_none_or(ShmError::is_transient)
            }
            ShmError::SegmentNotInitialized { .. }
            | ShmError::ClockNotTrusted { .. }
            | ShmError::VmClockNotReady { .. } => true,
            ShmError::SegmentVersionNotSupported { .. }
            | ShmError::LayoutNotSupported { .. }
            | ShmError::CausalityBreach { .. }
            | ShmError::CounterBehindSnapshot { .. }
            | ShmError::CounterUnavailable { .. }
            | ShmError::VmClockIo { .. }
            | ShmError::VmClockMalformed { .. } => false,
        }
    }

    /// The error for an untrusted status (out of line: hot paths only test for it).
    #[cold]
    pub(crate) fn not_trusted(status: ClockStatus) -> ShmError {
        ShmError::ClockNotTrusted { status }
    }

    /// Turns an OS error of `operation` on the segment file at `path` into [`ShmError::Io`]
    /// (for `map_err`).
    pub(crate) fn io_at(
        path: &Arc<Path>,
        operation: &'static str,
    ) -> impl FnOnce(io::Error) -> ShmError + use<> {
        let path = Arc::clone(path);
        move |source| ShmError::Io {
            operation,
            path,
            source,
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
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotInitialized {
    /// The file is empty: the daemon created it and has not written the header yet.
    #[error("the file is empty (is the daemon starting?)")]
    EmptyFile,
    /// The file is shorter than the 16-byte header: the daemon is writing it.
    #[error("the file holds {len} bytes, less than a header (is the daemon starting?)")]
    ShortFile {
        /// The file's length in bytes.
        len: u64,
    },
    /// The header is all zeros (no magic, no version, no generation): the file has been
    /// created or extended and nothing has been written into it yet.
    #[error("the header is all zeros (is the daemon creating the file?)")]
    BlankHeader,
    /// The version field is 0: the daemon wiped the segment and has not set it up again.
    #[error("layout version is 0 (the daemon wiped it and has not written it again)")]
    Wiped,
    /// The generation is 0: nothing was ever written to the payload.
    #[error("generation is 0 (no snapshot was ever written)")]
    NeverWritten,
    /// The generation is odd and stayed odd through every retry: an update is in progress,
    /// or the writer died in the middle of one, and there is no earlier snapshot to answer
    /// from.
    #[error(
        "generation {generation} is odd (an update is in progress, or the writer died during one)"
    )]
    UpdateInProgress {
        /// The odd generation seen.
        generation: u16,
    },
    /// The generation moved during every retry (a writer that never pauses) and there is no
    /// earlier snapshot to answer from.
    #[error("the generation changed on every attempt to read a snapshot")]
    Contended,
}

/// What is wrong with a malformed segment or snapshot (see [`ShmError::SegmentMalformed`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// The file is shorter than a header and payload.
    #[error("file holds {len} bytes, a segment needs at least {needed}")]
    FileTooShort {
        /// The file's length in bytes.
        len: u64,
        /// The bytes a layout-2 segment needs.
        needed: u64,
    },
    /// The magic number is not ClockBound's.
    #[error("magic is {:#010x} {:#010x}, expected {:#010x} {:#010x} (not a ClockBound segment)", found[0], found[1], expected[0], expected[1])]
    BadMagic {
        /// The two words found, in native byte order.
        found: [u32; 2],
        /// The two words expected.
        expected: [u32; 2],
    },
    /// The header's `segsize` is smaller than header and payload.
    #[error("segsize is {segsize}, a segment needs at least {needed}")]
    SegsizeTooSmall {
        /// The `segsize` field.
        segsize: u32,
        /// The bytes a layout-2 segment needs.
        needed: u32,
    },
    /// The header's `segsize` claims more bytes than the file holds.
    #[error("segsize is {segsize} but the file holds only {file_len} bytes")]
    SegsizeBeyondFile {
        /// The `segsize` field.
        segsize: u32,
        /// The file's length in bytes.
        file_len: u64,
    },
    /// `clock_status` is not one of the four defined values.
    #[error("clock_status is {found}, expected 0 (Unknown) to 3 (Disrupted)")]
    ClockStatus {
        /// The raw value.
        found: i32,
    },
    /// `clock_disruption_support_enabled` is neither 0 nor 1.
    #[error("clock_disruption_support_enabled is {found}, expected 0 or 1")]
    DisruptionFlag {
        /// The raw byte.
        found: u8,
    },
    /// A time field's nanoseconds are outside `0..1_000_000_000`.
    #[error("{field} has {found} nanoseconds, expected 0 to 999999999")]
    Nanoseconds {
        /// `"as_of"` or `"void_after"`.
        field: &'static str,
        /// The raw nanoseconds.
        found: i64,
    },
    /// `max_drift_ppb` is 1e9 or more: the clock would drift by a second per second.
    #[error("max_drift_ppb is {found}, expected below 1000000000")]
    DriftTooLarge {
        /// The raw value.
        found: u32,
    },
    /// `bound_nsec` is negative: an error bound cannot be.
    #[error("bound_nsec is {found}, expected 0 or more")]
    NegativeBound {
        /// The raw value.
        found: i64,
    },
    /// A layout-3 scale (`period_shift` or `period_err_shift`) is above 63: a writer picks
    /// floor(log2(1 / value)) of a 64-bit integer, which is at most 63.
    #[error("{field} is {found}, expected 0 to 63")]
    ShiftTooLarge {
        /// `"period_shift"` or `"period_err_shift"`.
        field: &'static str,
        /// The raw value.
        found: u8,
    },
    /// A layout-3 snapshot claims a trusted status (Synchronized or FreeRunning) with a
    /// counter period of 0: time would stand still.
    #[error(
        "period_frac is 0 with clock_status {clock_status} (Synchronized or FreeRunning need a counter period)"
    )]
    ZeroPeriod {
        /// The raw `clock_status`.
        clock_status: i32,
    },
}

/// What is wrong with a VMClock page (see [`ShmError::VmClockMalformed`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VmClockMalformed {
    /// The file is shorter than the 104-byte structure.
    #[error("file holds {len} bytes, a VMClock page needs at least {needed}")]
    FileTooShort {
        /// The file's length in bytes.
        len: u64,
        /// The bytes the structure needs.
        needed: u64,
    },
    /// The magic number is not VMClock's.
    #[error("magic is {found:#010x}, expected {expected:#010x} (not a VMClock page)")]
    BadMagic {
        /// The `magic` field, decoded from little endian.
        found: u32,
        /// `0x4B4C4356` ("VCLK").
        expected: u32,
    },
    /// The `size` field is smaller than the structure this crate reads.
    #[error("size is {size}, a VMClock page needs at least {needed}")]
    SizeTooSmall {
        /// The `size` field.
        size: u32,
        /// The bytes the structure needs.
        needed: u32,
    },
    /// The `size` field claims more bytes than were mapped (the file's length, or one page
    /// for a device).
    #[error("size is {size} but only {mapped} bytes are mapped")]
    SizeBeyondMapping {
        /// The `size` field.
        size: u32,
        /// The bytes mapped.
        mapped: u64,
    },
    /// The `version` field is not one this crate reads.
    #[error("version is {found}; this crate reads version {expected}")]
    Version {
        /// The `version` field.
        found: u16,
        /// The version this crate reads.
        expected: u16,
    },
    /// `clock_status` is not one of the five defined values.
    #[error("clock_status is {found}, expected 0 (Unknown) to 4 (Unreliable)")]
    ClockStatus {
        /// The raw byte.
        found: u8,
    },
}
