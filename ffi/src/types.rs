//! The C types of `clockbound.h`, laid out as the header declares them (and as the released
//! ClockBound 3.x header does: same fields, sizes, offsets and enum values).

use std::ffi::{c_char, c_int};

use clockbound_shm::{ClockStatus, TimeWindow, Timespec};

/// Bytes in [`clockbound_err::detail`], the terminating NUL included
/// (`CLOCKBOUND_ERROR_DETAIL_SIZE`).
pub const CLOCKBOUND_ERROR_DETAIL_SIZE: usize = 128;

/// What went wrong (`clockbound_err_kind`). Values 0 to 5 are the released library's; the
/// others are appended by this library.
///
/// The library only ever writes values of this type into C memory; it never reads one
/// from there, so a C caller's garbage in an output structure cannot become an invalid
/// Rust enum.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum clockbound_err_kind {
    /// Success.
    CLOCKBOUND_ERR_NONE = 0,
    /// A system call failed; the errno says which way.
    CLOCKBOUND_ERR_SYSCALL = 1,
    /// The segment holds no snapshot yet.
    CLOCKBOUND_ERR_SEGMENT_NOT_INITIALIZED = 2,
    /// The segment or the VMClock page is not valid.
    CLOCKBOUND_ERR_SEGMENT_MALFORMED = 3,
    /// The clock reads earlier than the snapshot.
    CLOCKBOUND_ERR_CAUSALITY_BREACH = 4,
    /// The segment's layout cannot be read here.
    CLOCKBOUND_ERR_SEGMENT_VERSION_NOT_SUPPORTED = 5,
    /// A NULL pointer, a bad path or timestamp, not a context.
    CLOCKBOUND_ERR_INVALID_ARGUMENT = 6,
    /// The context was closed.
    CLOCKBOUND_ERR_CONTEXT_CLOSED = 7,
    /// The status is Unknown or Disrupted where a trusted clock is needed.
    CLOCKBOUND_ERR_CLOCK_NOT_TRUSTED = 8,
    /// A wait ran out of time.
    CLOCKBOUND_ERR_TIMEOUT = 9,
    /// A bug in this library (a panic), caught at the boundary.
    CLOCKBOUND_ERR_INTERNAL = 10,
}

/// Details of a failure (`clockbound_err`): kind, errno and a NUL-terminated message.
#[repr(C)]
#[derive(Copy, Clone)]
pub struct clockbound_err {
    /// What went wrong.
    pub kind: clockbound_err_kind,
    /// The errno of a failed system call, else the errno the kind stands for.
    pub errno: c_int,
    /// The message, NUL-terminated, truncated to fit.
    pub detail: [c_char; CLOCKBOUND_ERROR_DETAIL_SIZE],
}

impl clockbound_err {
    /// No error: kind `CLOCKBOUND_ERR_NONE`, errno 0, empty detail.
    pub const NONE: clockbound_err = clockbound_err {
        kind: clockbound_err_kind::CLOCKBOUND_ERR_NONE,
        errno: 0,
        detail: [0; CLOCKBOUND_ERROR_DETAIL_SIZE],
    };

    /// An error with `detail` cut to fit (at a character boundary) and NUL-terminated.
    /// Interior NULs end the message early, as C reads it.
    #[must_use]
    pub fn new(kind: clockbound_err_kind, errno: c_int, detail: &str) -> clockbound_err {
        let mut err = clockbound_err {
            kind,
            errno,
            detail: [0; CLOCKBOUND_ERROR_DETAIL_SIZE],
        };
        let mut end = detail.len().min(CLOCKBOUND_ERROR_DETAIL_SIZE - 1);
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        for (dst, &src) in err.detail.iter_mut().zip(&detail.as_bytes()[..end]) {
            // `c_char` is `i8` or `u8` by target; the byte is passed through unchanged.
            *dst = src as c_char;
        }
        err
    }

    /// The message as Rust reads it: the bytes up to the first NUL.
    #[must_use]
    pub fn detail_str(&self) -> String {
        let bytes: Vec<u8> = self
            .detail
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::fmt::Debug for clockbound_err {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("clockbound_err")
            .field("kind", &self.kind)
            .field("errno", &self.errno)
            .field("detail", &self.detail_str())
            .finish()
    }
}

/// Whether the window can be trusted (`clockbound_clock_status`); the values are the
/// segment's and the released library's.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum clockbound_clock_status {
    /// Do not trust the window.
    CLOCKBOUND_STA_UNKNOWN = 0,
    /// Synchronized: the window holds.
    CLOCKBOUND_STA_SYNCHRONIZED = 1,
    /// Free running: the window holds (it grew with the drift).
    CLOCKBOUND_STA_FREE_RUNNING = 2,
    /// Disrupted: do not trust the window.
    CLOCKBOUND_STA_DISRUPTED = 3,
}

impl From<ClockStatus> for clockbound_clock_status {
    fn from(status: ClockStatus) -> clockbound_clock_status {
        match status {
            ClockStatus::Unknown => clockbound_clock_status::CLOCKBOUND_STA_UNKNOWN,
            ClockStatus::Synchronized => clockbound_clock_status::CLOCKBOUND_STA_SYNCHRONIZED,
            ClockStatus::FreeRunning => clockbound_clock_status::CLOCKBOUND_STA_FREE_RUNNING,
            ClockStatus::Disrupted => clockbound_clock_status::CLOCKBOUND_STA_DISRUPTED,
        }
    }
}

/// The window `[earliest, latest]` and its status (`clockbound_now_result`).
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct clockbound_now_result {
    /// True time is at or after this instant.
    pub earliest: libc::timespec,
    /// True time is at or before this instant.
    pub latest: libc::timespec,
    /// Whether to believe it.
    pub clock_status: clockbound_clock_status,
}

impl From<TimeWindow> for clockbound_now_result {
    fn from(w: TimeWindow) -> clockbound_now_result {
        clockbound_now_result {
            earliest: c_timespec(w.earliest),
            latest: c_timespec(w.latest),
            clock_status: w.clock_status.into(),
        }
    }
}

/// `t` as a C `struct timespec`. Where `time_t` has 32 bits, instants outside its range
/// (after 2038) saturate; the targets ClockBound runs on have a 64-bit `time_t`.
fn c_timespec(t: Timespec) -> libc::timespec {
    let sec = libc::time_t::try_from(t.sec()).unwrap_or(if t.sec() < 0 {
        libc::time_t::MIN
    } else {
        libc::time_t::MAX
    });
    libc::timespec {
        tv_sec: sec,
        // Always in 0..1_000_000_000, which fits every `c_long`.
        tv_nsec: t.nsec() as libc::c_long,
    }
}

/// A C `struct timespec` from the caller as an instant: `None` unless `tv_nsec` is in
/// `0..1_000_000_000`.
#[must_use]
// `time_t` and `c_long` are `i64` on 64-bit targets only.
#[allow(clippy::useless_conversion)]
pub fn timespec_from_c(t: &libc::timespec) -> Option<Timespec> {
    let nsec = i64::from(t.tv_nsec);
    (0..1_000_000_000)
        .contains(&nsec)
        .then(|| Timespec::new(i64::from(t.tv_sec), nsec))
}

// The layout the released header has on the 64-bit Linux targets the daemon runs on.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
const _: () = {
    assert!(size_of::<clockbound_err>() == 136);
    assert!(std::mem::offset_of!(clockbound_err, errno) == 4);
    assert!(std::mem::offset_of!(clockbound_err, detail) == 8);
    assert!(size_of::<clockbound_now_result>() == 40);
    assert!(std::mem::offset_of!(clockbound_now_result, latest) == 16);
    assert!(std::mem::offset_of!(clockbound_now_result, clock_status) == 32);
    assert!(size_of::<clockbound_err_kind>() == 4);
    assert!(size_of::<clockbound_clock_status>() == 4);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_is_truncated_at_a_char_boundary_and_terminated() {
        let long = "é".repeat(100); // 200 bytes, 2 per character
        let err = clockbound_err::new(clockbound_err_kind::CLOCKBOUND_ERR_SYSCALL, 2, &long);
        assert_eq!(err.detail[CLOCKBOUND_ERROR_DETAIL_SIZE - 1], 0);
        // 127 bytes would split a character: 126 are kept.
        assert_eq!(err.detail_str(), "é".repeat(63));
        assert_eq!(err.detail[126], 0);
    }

    #[test]
    fn short_detail_is_copied_whole() {
        let err = clockbound_err::new(clockbound_err_kind::CLOCKBOUND_ERR_TIMEOUT, 110, "late");
        assert_eq!(err.detail_str(), "late");
        assert_eq!(err.kind as i32, 9);
        assert!(err.detail[4..].iter().all(|&c| c == 0));
    }

    #[test]
    fn status_values_are_the_wire_values() {
        for status in [
            ClockStatus::Unknown,
            ClockStatus::Synchronized,
            ClockStatus::FreeRunning,
            ClockStatus::Disrupted,
        ] {
            assert_eq!(
                clockbound_clock_status::from(status) as i32,
                status.to_wire()
            );
        }
    }

    #[test]
    fn timespec_from_c_rejects_out_of_range_nanoseconds() {
        let ts = |tv_sec, tv_nsec| libc::timespec { tv_sec, tv_nsec };
        assert_eq!(timespec_from_c(&ts(5, 7)), Some(Timespec::new(5, 7)));
        assert_eq!(timespec_from_c(&ts(-5, 0)), Some(Timespec::new(-5, 0)));
        assert_eq!(timespec_from_c(&ts(5, -1)), None);
        assert_eq!(timespec_from_c(&ts(5, 1_000_000_000)), None);
    }
}
