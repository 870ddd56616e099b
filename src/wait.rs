//! The waiting calls: commit-wait (`wait_until_after`) and start-up (`wait_for_sync`),
//! written once for every reader type.

use std::thread;
use std::time::{Duration, Instant};

use crate::error::ShmError;
use crate::time::ClockStatus;
use crate::time::TimeWindow;
use crate::time::Timespec;

/// Below this much remaining uncertainty a commit-wait stops sleeping and spins: a sleep
/// overshoots by tens of microseconds, a spin does not.
const SPIN_BELOW: Duration = Duration::from_micros(50);

/// How often `wait_for_sync` looks at the segment while the daemon starts.
const SYNC_POLL: Duration = Duration::from_millis(10);

/// Commit-wait: returns the first window whose `earliest` is past `t`.
///
/// Sleeps for the remaining uncertainty (`t - earliest`, which true time must cover at
/// least), minus a margin it then spins through, so it wakes close to the first moment the
/// answer is yes without burning a core for the whole wait.
pub(crate) fn until_after(
    t: Timespec,
    timeout: Duration,
    mut now: impl FnMut() -> Result<TimeWindow, ShmError>,
) -> Result<TimeWindow, ShmError> {
    let start = Instant::now();
    loop {
        let window = now()?;
        if !window.clock_status.is_trusted() {
            return Err(ShmError::ClockNotTrusted {
                status: window.clock_status,
            });
        }
        if window.after(t) {
            return Ok(window);
        }
        let waited = start.elapsed();
        let Some(budget) = timeout.checked_sub(waited).filter(|b| !b.is_zero()) else {
            return Err(ShmError::Timeout {
                what: "waiting for the timestamp to pass",
                waited,
                last_error: None,
            });
        };
        // `earliest` moves at (almost) the rate of real time: it needs `t - earliest` more,
        // plus a nanosecond to get strictly past `t`.
        let remaining =
            t.duration_since(window.earliest).unwrap_or_default() + Duration::from_nanos(1);
        let pause = remaining.min(budget);
        if pause > SPIN_BELOW {
            thread::sleep(pause - SPIN_BELOW / 2);
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Start-up: opens with `open` until it succeeds, then polls `status` until the clock is
/// Synchronized.
///
/// Only the errors a later attempt can clear ([`ShmError::is_transient`]: the file not
/// created yet, a segment the daemon has not written yet, a page mid-update, ...) count as
/// "not yet"; the last one is kept for the timeout error. Any other error (a malformed
/// segment, another layout version, no permission, a VMClock device that is missing or
/// unreadable) is returned at once: waiting cannot fix it, and a service that starts should
/// learn so now rather than after its whole timeout.
pub(crate) fn for_sync<T>(
    timeout: Duration,
    mut open: impl FnMut() -> Result<T, ShmError>,
    mut status: impl FnMut(&mut T) -> Result<ClockStatus, ShmError>,
) -> Result<T, ShmError> {
    let start = Instant::now();
    let mut opened: Option<T> = None;
    loop {
        let attempt = match opened.as_mut() {
            Some(value) => status(value),
            None => open().and_then(|mut value| {
                let s = status(&mut value);
                opened = Some(value);
                s
            }),
        };
        let last_error = match attempt {
            Ok(ClockStatus::Synchronized) => {
                if let Some(value) = opened {
                    return Ok(value);
                }
                None
            }
            Ok(_) => None,
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => Some(Box::new(e)),
        };
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(ShmError::Timeout {
                what: "waiting for a synchronised ClockBound segment",
                waited,
                last_error,
            });
        }
        thread::sleep(SYNC_POLL.min(timeout - waited));
    }
}
