//! The waiting calls: commit-wait (`wait_until_after`) and start-up (`wait_for_sync`),
//! written once for every reader type.
//!
//! Each wait is a small state machine ([`UntilAfter`], [`ForSync`]) that looks at one
//! attempt and says what to do next: return, or pause for how long and how. The loops that
//! carry out the pauses are the only part that differs between the blocking calls
//! (`thread::sleep`, `spin_loop`) and the async ones (feature `tokio`: the runtime's timer,
//! `yield_now`).

use std::ops::ControlFlow;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::ShmError;
use crate::time::ClockStatus;
use crate::time::TimeWindow;
use crate::time::Timespec;

/// How long `wait_for_sync` waits between looks at the segment while the daemon starts.
const SYNC_POLL: Duration = Duration::from_millis(10);

/// When a commit-wait stops sleeping and spins, for a given timer.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Pacing {
    /// Below this much remaining uncertainty, spin rather than sleep.
    spin_below: Duration,
    /// A sleep ends this long before the moment it aims at, so that the timer's lateness
    /// is spent spinning rather than past the moment.
    wake_early_by: Duration,
}

impl Pacing {
    /// `thread::sleep` overshoots by tens of microseconds (the kernel's timer slack); a spin
    /// does not.
    pub(crate) const THREAD: Pacing = Pacing {
        spin_below: Duration::from_micros(50),
        wake_early_by: Duration::from_micros(25),
    };

    /// Tokio's timer counts whole milliseconds: a sleep ends at the millisecond tick at or
    /// after its deadline, and the driver's wait for that tick is rounded up to a
    /// millisecond again. So it can end up to 2 ms late; the last 2 ms are yielded through.
    #[cfg(feature = "tokio")]
    pub(crate) const TOKIO: Pacing = Pacing {
        spin_below: Duration::from_millis(2),
        wake_early_by: Duration::from_millis(2),
    };
}

/// `window` when its status can be relied on (Synchronized, FreeRunning), else
/// [`ShmError::ClockNotTrusted`]: for the answers that carry no status of their own
/// (`after`, `before`, commit-wait), which an untrusted window could make wrong.
pub(crate) fn trusted(window: TimeWindow) -> Result<TimeWindow, ShmError> {
    if window.clock_status.is_trusted() {
        Ok(window)
    } else {
        Err(ShmError::ClockNotTrusted {
            status: window.clock_status,
        })
    }
}

/// What a wait does between two attempts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pause {
    /// Sleep this long.
    Sleep(Duration),
    /// Look again at once (after a spin hint, or a yield to the runtime).
    Spin,
}

/// Commit-wait's state: returns the first window whose `earliest` is past `t`.
///
/// Sleeps for the remaining uncertainty (`t - earliest`, which true time must cover at
/// least), minus a margin it then spins through, so it wakes close to the first moment the
/// answer is yes without burning a core for the whole wait.
pub(crate) struct UntilAfter {
    t: Timespec,
    timeout: Duration,
    pacing: Pacing,
    start: Instant,
}

impl UntilAfter {
    /// Starts the clock on a wait for `t`, of at most `timeout`.
    pub(crate) fn new(t: Timespec, timeout: Duration, pacing: Pacing) -> UntilAfter {
        UntilAfter {
            t,
            timeout,
            pacing,
            start: Instant::now(),
        }
    }

    /// Judges one `now()`: the result to return (the window, or why not), or the pause
    /// before the next look.
    pub(crate) fn step(
        &self,
        now: Result<TimeWindow, ShmError>,
    ) -> ControlFlow<Result<TimeWindow, ShmError>, Pause> {
        let window = match now.and_then(trusted) {
            Ok(window) => window,
            Err(e) => return ControlFlow::Break(Err(e)),
        };
        if window.after(self.t) {
            return ControlFlow::Break(Ok(window));
        }
        let waited = self.start.elapsed();
        let Some(budget) = self.timeout.checked_sub(waited).filter(|b| !b.is_zero()) else {
            return ControlFlow::Break(Err(ShmError::Timeout {
                what: "waiting for the timestamp to pass",
                waited,
                last_error: None,
            }));
        };
        // `earliest` moves at (almost) the rate of real time: it needs `t - earliest` more,
        // plus a nanosecond to get strictly past `t`.
        let remaining =
            self.t.duration_since(window.earliest).unwrap_or_default() + Duration::from_nanos(1);
        let pause = remaining.min(budget);
        ControlFlow::Continue(if pause > self.pacing.spin_below {
            Pause::Sleep(pause.saturating_sub(self.pacing.wake_early_by))
        } else {
            Pause::Spin
        })
    }
}

/// Start-up's state: opens with `open` until it succeeds, then polls `status` until the
/// clock is Synchronized.
///
/// Only the errors a later attempt can clear ([`ShmError::is_transient`]: the file not
/// created yet, a segment the daemon has not written yet, a page mid-update, ...) count as
/// "not yet"; the last one is kept for the timeout error. Any other error (a malformed
/// segment, another layout version, no permission, a VMClock device that is missing or
/// unreadable) is returned at once: waiting cannot fix it, and a service that starts should
/// learn so now rather than after its whole timeout.
pub(crate) struct ForSync<T> {
    timeout: Duration,
    start: Instant,
    opened: Option<T>,
}

impl<T> ForSync<T> {
    /// Starts the clock on a wait of at most `timeout`.
    pub(crate) fn new(timeout: Duration) -> ForSync<T> {
        ForSync {
            timeout,
            start: Instant::now(),
            opened: None,
        }
    }

    /// One attempt: opens (until that succeeds) and asks for the status. Returns the result
    /// to return, or how long to sleep before the next attempt.
    pub(crate) fn attempt(
        &mut self,
        open: impl FnOnce() -> Result<T, ShmError>,
        status: impl FnOnce(&mut T) -> Result<ClockStatus, ShmError>,
    ) -> ControlFlow<Result<T, ShmError>, Duration> {
        let attempt = match self.opened.as_mut() {
            Some(value) => status(value),
            None => open().and_then(|mut value| {
                let s = status(&mut value);
                self.opened = Some(value);
                s
            }),
        };
        let last_error = match attempt {
            Ok(ClockStatus::Synchronized) => {
                if let Some(value) = self.opened.take() {
                    return ControlFlow::Break(Ok(value));
                }
                None
            }
            Ok(_) => None,
            Err(e) if !e.is_transient() => return ControlFlow::Break(Err(e)),
            Err(e) => Some(Box::new(e)),
        };
        let waited = self.start.elapsed();
        if waited >= self.timeout {
            return ControlFlow::Break(Err(ShmError::Timeout {
                what: "waiting for a synchronised ClockBound segment",
                waited,
                last_error,
            }));
        }
        ControlFlow::Continue(SYNC_POLL.min(self.timeout - waited))
    }
}

/// Commit-wait on the calling thread (see [`UntilAfter`]).
pub(crate) fn until_after(
    t: Timespec,
    timeout: Duration,
    mut now: impl FnMut() -> Result<TimeWindow, ShmError>,
) -> Result<TimeWindow, ShmError> {
    let wait = UntilAfter::new(t, timeout, Pacing::THREAD);
    loop {
        match wait.step(now()) {
            ControlFlow::Break(result) => return result,
            ControlFlow::Continue(Pause::Sleep(d)) => thread::sleep(d),
            ControlFlow::Continue(Pause::Spin) => std::hint::spin_loop(),
        }
    }
}

/// Start-up wait on the calling thread (see [`ForSync`]).
pub(crate) fn for_sync<T>(
    timeout: Duration,
    mut open: impl FnMut() -> Result<T, ShmError>,
    mut status: impl FnMut(&mut T) -> Result<ClockStatus, ShmError>,
) -> Result<T, ShmError> {
    let mut wait = ForSync::new(timeout);
    loop {
        match wait.attempt(&mut open, &mut status) {
            ControlFlow::Break(result) => return result,
            ControlFlow::Continue(d) => thread::sleep(d),
        }
    }
}

/// Commit-wait as a future: sleeps on the tokio runtime's timer and yields to the runtime
/// between looks in the spin phase, so no thread is held (see [`UntilAfter`]).
#[cfg(feature = "tokio")]
pub(crate) async fn until_after_async(
    t: Timespec,
    timeout: Duration,
    mut now: impl FnMut() -> Result<TimeWindow, ShmError>,
) -> Result<TimeWindow, ShmError> {
    let wait = UntilAfter::new(t, timeout, Pacing::TOKIO);
    loop {
        match wait.step(now()) {
            ControlFlow::Break(result) => return result,
            ControlFlow::Continue(Pause::Sleep(d)) => tokio::time::sleep(d).await,
            ControlFlow::Continue(Pause::Spin) => tokio::task::yield_now().await,
        }
    }
}

/// Start-up wait as a future, sleeping on the tokio runtime's timer (see [`ForSync`]).
/// Each attempt opens a file and reads it: a few system calls, no waiting.
#[cfg(feature = "tokio")]
pub(crate) async fn for_sync_async<T>(
    timeout: Duration,
    mut open: impl FnMut() -> Result<T, ShmError>,
    mut status: impl FnMut(&mut T) -> Result<ClockStatus, ShmError>,
) -> Result<T, ShmError> {
    let mut wait = ForSync::new(timeout);
    loop {
        match wait.attempt(&mut open, &mut status) {
            ControlFlow::Break(result) => return result,
            ControlFlow::Continue(d) => tokio::time::sleep(d).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(earliest: Timespec, clock_status: ClockStatus) -> TimeWindow {
        TimeWindow {
            earliest,
            latest: earliest.saturating_add(Duration::from_millis(1)),
            clock_status,
        }
    }

    /// The pause `wait` picks for a Synchronized window starting at `earliest`.
    fn pause_for(wait: &UntilAfter, earliest: Timespec) -> Pause {
        match wait.step(Ok(window(earliest, ClockStatus::Synchronized))) {
            ControlFlow::Continue(pause) => pause,
            ControlFlow::Break(result) => panic!("expected a pause, got {result:?}"),
        }
    }

    #[test]
    fn until_after_decides_from_the_window() {
        let t = Timespec::new(100, 0);
        let wait = UntilAfter::new(t, Duration::from_secs(10), Pacing::THREAD);
        // Past t: done, with that window.
        let past = window(Timespec::new(100, 1), ClockStatus::FreeRunning);
        assert!(matches!(wait.step(Ok(past)), ControlFlow::Break(Ok(w)) if w == past));
        // Untrusted: refused even when past t.
        let disrupted = window(Timespec::new(200, 0), ClockStatus::Disrupted);
        assert!(matches!(
            wait.step(Ok(disrupted)),
            ControlFlow::Break(Err(ShmError::ClockNotTrusted {
                status: ClockStatus::Disrupted
            }))
        ));
        // 10 ms to go: sleep until the margin before it.
        assert_eq!(
            pause_for(&wait, Timespec::new(99, 990_000_000)),
            Pause::Sleep(
                Duration::from_millis(10) + Duration::from_nanos(1) - Duration::from_micros(25)
            )
        );
        // Exactly t (not past it), or within the spin margin: spin.
        assert_eq!(pause_for(&wait, t), Pause::Spin);
        assert_eq!(
            pause_for(&wait, Timespec::new(99, 999_960_000)),
            Pause::Spin
        );
        // An error from `now()` is returned as it is.
        assert!(matches!(
            wait.step(Err(ShmError::CounterUnavailable { arch: "x" })),
            ControlFlow::Break(Err(ShmError::CounterUnavailable { .. }))
        ));
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn tokio_pacing_sleeps_only_above_its_margin() {
        let wait = UntilAfter::new(
            Timespec::new(100, 0),
            Duration::from_secs(10),
            Pacing::TOKIO,
        );
        assert_eq!(
            pause_for(&wait, Timespec::new(99, 998_500_000)),
            Pause::Spin
        );
        assert_eq!(
            pause_for(&wait, Timespec::new(99, 990_000_000)),
            Pause::Sleep(Duration::from_millis(8) + Duration::from_nanos(1))
        );
    }

    #[test]
    fn until_after_never_sleeps_past_the_timeout() {
        let t = Timespec::new(100, 0);
        let wait = UntilAfter::new(t, Duration::from_millis(5), Pacing::THREAD);
        match pause_for(&wait, Timespec::new(90, 0)) {
            Pause::Sleep(d) => assert!(d <= Duration::from_millis(5), "{d:?}"),
            Pause::Spin => panic!("spun with 5 ms to go"),
        }
        let expired = UntilAfter::new(t, Duration::ZERO, Pacing::THREAD);
        assert!(matches!(
            expired.step(Ok(window(Timespec::new(90, 0), ClockStatus::Synchronized))),
            ControlFlow::Break(Err(ShmError::Timeout {
                last_error: None,
                ..
            }))
        ));
    }

    #[test]
    fn for_sync_keeps_the_opened_value_and_classifies_errors() {
        let transient = || ShmError::ClockNotTrusted {
            status: ClockStatus::Unknown,
        };
        assert!(
            transient().is_transient(),
            "the test needs a transient error"
        );
        let mut wait = ForSync::<u32>::new(Duration::from_secs(10));
        let mut opens = 0;
        // A transient open error: try again.
        let step = wait.attempt(
            || {
                opens += 1;
                Err(transient())
            },
            |_| unreachable!("not opened"),
        );
        assert!(matches!(step, ControlFlow::Continue(d) if d == SYNC_POLL));
        // Opened, not synchronised yet: kept, and not opened again.
        let step = wait.attempt(
            || {
                opens += 1;
                Ok(7)
            },
            |_| Ok(ClockStatus::Unknown),
        );
        assert!(matches!(step, ControlFlow::Continue(d) if d == SYNC_POLL));
        let step = wait.attempt(
            || {
                opens += 1;
                Ok(8)
            },
            |v| {
                assert_eq!(*v, 7);
                Ok(ClockStatus::Synchronized)
            },
        );
        assert!(matches!(step, ControlFlow::Break(Ok(7))));
        assert_eq!(opens, 2);
        // A permanent error ends the wait at once.
        let mut wait = ForSync::<u32>::new(Duration::from_secs(10));
        let step = wait.attempt(
            || Err(ShmError::CounterUnavailable { arch: "x" }),
            |_| unreachable!("not opened"),
        );
        assert!(matches!(
            step,
            ControlFlow::Break(Err(ShmError::CounterUnavailable { .. }))
        ));
        // Past the timeout: the last transient error goes with the timeout.
        let mut wait = ForSync::<u32>::new(Duration::ZERO);
        let step = wait.attempt(|| Err(transient()), |_| unreachable!("not opened"));
        assert!(matches!(
            step,
            ControlFlow::Break(Err(ShmError::Timeout {
                last_error: Some(_),
                ..
            }))
        ));
    }
}
