//! The context behind `clockbound_ctx*` and every operation on it, in safe code.
//!
//! A context is allocated once and never freed: closing releases the reader inside it
//! (the mapping, the files) and leaves the object in place, marked closed. That is what
//! lets a call on a closed context, or a second close, be an error instead of a use after
//! free, and lets a close run while other threads are inside calls on the same context:
//! the reader sits in an [`ArcSwapOption`], each call takes its own reference for as long
//! as it runs, and the close only takes the context's reference away.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use clockbound_shm::{
    DisruptionCheck, ReaderOptions, SharedClockBound, ShmError, TimeWindow, Timespec,
};

use crate::types::{clockbound_err, clockbound_err_kind};

/// Stored in every context: a pointer whose target does not carry it is refused as not a
/// context (a best-effort check for a wrong pointer; a dangling one cannot be detected).
const CONTEXT_TAG: u64 = u64::from_be_bytes(*b"CLKBOUND");

/// An open (or closed) ClockBound segment, shareable by any number of threads
/// (`clockbound_ctx`). Created by the `clockbound_open*` functions, never freed.
pub struct clockbound_ctx {
    /// [`CONTEXT_TAG`]; never written after creation.
    tag: u64,
    /// The reader; `None` once closed.
    clock: ArcSwapOption<SharedClockBound>,
}

/// Closed contexts, kept reachable so that leak checkers (LeakSanitizer, valgrind) do not
/// report the small objects a closed context leaves behind as lost.
static CLOSED: Mutex<Vec<&'static clockbound_ctx>> = Mutex::new(Vec::new());

/// Why a call failed, before it is written out as a [`clockbound_err`].
#[derive(Debug)]
pub enum FfiError {
    /// An error of the reader.
    Shm(ShmError),
    /// A NULL pointer, a bad path or timestamp (what was wrong).
    InvalidArgument(String),
    /// The context was closed.
    Closed,
    /// A panic inside the library, caught at the boundary (its message).
    Internal(String),
}

impl From<ShmError> for FfiError {
    fn from(e: ShmError) -> FfiError {
        FfiError::Shm(e)
    }
}

impl FfiError {
    /// The C error: kind, errno and message.
    #[must_use]
    pub fn to_c(&self) -> clockbound_err {
        use clockbound_err_kind as K;
        match self {
            FfiError::Shm(e) => clockbound_err::new(shm_kind(e), e.errno(), &describe(e)),
            FfiError::InvalidArgument(what) => {
                clockbound_err::new(K::CLOCKBOUND_ERR_INVALID_ARGUMENT, libc::EINVAL, what)
            }
            FfiError::Closed => clockbound_err::new(
                K::CLOCKBOUND_ERR_CONTEXT_CLOSED,
                libc::EBADF,
                "the ClockBound context is closed",
            ),
            FfiError::Internal(what) => clockbound_err::new(
                K::CLOCKBOUND_ERR_INTERNAL,
                libc::EIO,
                &format!("internal error in libclockbound: {what}"),
            ),
        }
    }
}

/// The released library's kind for each reader error where it has one (so programs
/// written for it handle them as before), an appended kind otherwise.
fn shm_kind(e: &ShmError) -> clockbound_err_kind {
    use clockbound_err_kind as K;
    match e {
        ShmError::Io { .. } | ShmError::VmClockIo { .. } => K::CLOCKBOUND_ERR_SYSCALL,
        ShmError::SegmentNotInitialized { .. } | ShmError::VmClockNotReady { .. } => {
            K::CLOCKBOUND_ERR_SEGMENT_NOT_INITIALIZED
        }
        ShmError::SegmentMalformed { .. } | ShmError::VmClockMalformed { .. } => {
            K::CLOCKBOUND_ERR_SEGMENT_MALFORMED
        }
        ShmError::CausalityBreach { .. } | ShmError::CounterBehindSnapshot { .. } => {
            K::CLOCKBOUND_ERR_CAUSALITY_BREACH
        }
        ShmError::SegmentVersionNotSupported { .. }
        | ShmError::LayoutNotSupported { .. }
        | ShmError::CounterUnavailable { .. } => K::CLOCKBOUND_ERR_SEGMENT_VERSION_NOT_SUPPORTED,
        ShmError::ClockNotTrusted { .. } => K::CLOCKBOUND_ERR_CLOCK_NOT_TRUSTED,
        ShmError::Timeout { .. } => K::CLOCKBOUND_ERR_TIMEOUT,
        // A variant added to the reader after this mapping was written.
        _ => K::CLOCKBOUND_ERR_INTERNAL,
    }
}

/// The error and its causes on one line: C callers get no error chain to walk, and the
/// cause (the OS error, a timeout's last error) is often the useful part.
fn describe(e: &ShmError) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A path argument as a [`Path`]: refused when not UTF-8, or empty unless `allow_empty`
/// (`what` names it).
///
/// # Errors
/// [`FfiError::InvalidArgument`].
pub fn path_arg<'a>(bytes: &'a [u8], what: &str, allow_empty: bool) -> Result<&'a Path, FfiError> {
    if bytes.is_empty() && !allow_empty {
        return Err(FfiError::InvalidArgument(format!("{what} is empty")));
    }
    std::str::from_utf8(bytes)
        .map(Path::new)
        .map_err(|_| FfiError::InvalidArgument(format!("{what} is not valid UTF-8")))
}

/// The reader options for a VMClock device path.
fn options(vmclock: &Path) -> ReaderOptions {
    ReaderOptions::new().disruption_check(DisruptionCheck::WhenEnabled {
        vmclock_path: PathBuf::from(vmclock),
    })
}

impl clockbound_ctx {
    /// A new open context around `clock`, allocated for the rest of the process.
    fn leak(clock: SharedClockBound) -> &'static clockbound_ctx {
        Box::leak(Box::new(clockbound_ctx {
            tag: CONTEXT_TAG,
            clock: ArcSwapOption::from_pointee(clock),
        }))
    }

    /// `clockbound_open`: the daemon's segment, layout 3 preferred (see
    /// [`SharedClockBound::open_default`]).
    ///
    /// # Errors
    /// As [`SharedClockBound::open_default`].
    pub fn open_default() -> Result<&'static clockbound_ctx, FfiError> {
        Ok(clockbound_ctx::leak(SharedClockBound::open_default()?))
    }

    /// `clockbound_open_with`: the segment at `shm`, of the layout its header declares,
    /// with disruptions checked on `vmclock` when the segment asks for it.
    ///
    /// # Errors
    /// As [`SharedClockBound::open_with`].
    pub fn open_with(shm: &Path, vmclock: &Path) -> Result<&'static clockbound_ctx, FfiError> {
        Ok(clockbound_ctx::leak(SharedClockBound::open_with(
            shm,
            &options(vmclock),
        )?))
    }

    /// `clockbound_wait_for_sync`: waits for `shm` (or the default choice, `None`) to read
    /// Synchronized, `vmclock` defaulting to the VMClock device.
    ///
    /// # Errors
    /// As [`SharedClockBound::wait_for_sync_with`].
    pub fn wait_for_sync(
        shm: Option<&Path>,
        vmclock: Option<&Path>,
        timeout: Duration,
    ) -> Result<&'static clockbound_ctx, FfiError> {
        let options = match vmclock {
            Some(vmclock) => options(vmclock),
            None => ReaderOptions::new(),
        };
        let clock = match shm {
            Some(shm) => SharedClockBound::wait_for_sync_with(shm, &options, timeout)?,
            None => SharedClockBound::wait_for_sync_default(&options, timeout)?,
        };
        Ok(clockbound_ctx::leak(clock))
    }

    /// Whether this looks like a context (its tag is there).
    #[must_use]
    pub fn is_context(&self) -> bool {
        self.tag == CONTEXT_TAG
    }

    /// Whether the context is open.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.clock.load().is_some()
    }

    /// `clockbound_close`: takes the reader out; it is dropped (the mapping released) when
    /// the last call still using it returns.
    ///
    /// # Errors
    /// [`FfiError::Closed`] when it was closed already.
    pub fn close(&'static self) -> Result<(), FfiError> {
        // One swap decides: of two concurrent closes, exactly one gets the reader.
        let clock = self.clock.swap(None).ok_or(FfiError::Closed)?;
        CLOSED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self);
        drop(clock);
        Ok(())
    }

    /// `clockbound_now`: the window now. Lock-free: one `ArcSwapOption` load, then the
    /// shared reader's `now()`.
    ///
    /// # Errors
    /// [`FfiError::Closed`], or as [`SharedClockBound::now`].
    #[inline]
    pub fn now(&self) -> Result<TimeWindow, FfiError> {
        match &*self.clock.load() {
            Some(clock) => Ok(clock.now()?),
            None => Err(FfiError::Closed),
        }
    }

    /// The window now, refused when its status is Unknown or Disrupted.
    fn trusted_now(&self) -> Result<TimeWindow, FfiError> {
        let window = self.now()?;
        if !window.clock_status.is_trusted() {
            return Err(ShmError::ClockNotTrusted {
                status: window.clock_status,
            }
            .into());
        }
        Ok(window)
    }

    /// `clockbound_after`: whether `t` has certainly passed, on a trusted clock.
    ///
    /// # Errors
    /// `ClockNotTrusted` for an Unknown or Disrupted status, or as [`now`](Self::now).
    pub fn after(&self, t: Timespec) -> Result<bool, FfiError> {
        Ok(self.trusted_now()?.after(t))
    }

    /// `clockbound_before`: whether `t` has certainly not arrived, on a trusted clock.
    ///
    /// # Errors
    /// As [`after`](Self::after).
    pub fn before(&self, t: Timespec) -> Result<bool, FfiError> {
        Ok(self.trusted_now()?.before(t))
    }

    /// `clockbound_wait_until_after`: commit-wait (see
    /// [`SharedClockBound::wait_until_after`]). Holds its own reference to the reader for
    /// the whole wait, so a close meanwhile does not cut it short.
    ///
    /// # Errors
    /// [`FfiError::Closed`], or as [`SharedClockBound::wait_until_after`].
    pub fn wait_until_after(&self, t: Timespec, timeout: Duration) -> Result<TimeWindow, FfiError> {
        let clock: Arc<SharedClockBound> = self.clock.load_full().ok_or(FfiError::Closed)?;
        Ok(clock.wait_until_after(t, timeout)?)
    }
}
