//! [`TimeWindow`]: what every `now()` returns, and the questions commit-wait and lease
//! checks ask of it.

use std::time::Duration;

use super::status::ClockStatus;
use super::timespec::Timespec;

/// Where true time is: somewhere in `[earliest, latest]` on the `CLOCK_REALTIME` scale, with
/// the status that says whether to believe it.
///
/// With feature `serde` it is `{"earliest": Timespec, "latest": Timespec, "clock_status":
/// ClockStatus}` (see [`Timespec`] and [`ClockStatus`] for theirs); deserialising refuses a
/// window whose `earliest` is after its `latest`, which no reader returns.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct TimeWindow {
    /// True time is at or after this instant.
    pub earliest: Timespec,
    /// True time is at or before this instant.
    pub latest: Timespec,
    /// Whether the window can be trusted (see [`ClockStatus`]).
    pub clock_status: ClockStatus,
}

impl TimeWindow {
    /// A placeholder that claims nothing: the widest window, status Unknown.
    pub(crate) const UNTRUSTED: TimeWindow = TimeWindow {
        earliest: Timespec::MIN,
        latest: Timespec::MAX,
        clock_status: ClockStatus::Unknown,
    };

    /// True only when `t` has certainly passed: `t < earliest`. Says nothing about the
    /// status; check [`clock_status`](Self::clock_status) too.
    ///
    /// ```
    /// use clockbound_shm::{ClockStatus, TimeWindow, Timespec};
    /// let w = TimeWindow {
    ///     earliest: Timespec::new(10, 0), latest: Timespec::new(12, 0),
    ///     clock_status: ClockStatus::Synchronized,
    /// };
    /// assert!(w.after(Timespec::new(9, 999_999_999)));
    /// assert!(!w.after(Timespec::new(10, 0))); // might be exactly now
    /// assert!(w.before(Timespec::new(12, 1)));
    /// assert!(!w.before(Timespec::new(12, 0)));
    /// ```
    #[must_use]
    pub fn after(&self, t: Timespec) -> bool {
        t < self.earliest
    }

    /// True only when `t` has certainly not arrived yet: `t > latest`.
    #[must_use]
    pub fn before(&self, t: Timespec) -> bool {
        t > self.latest
    }

    /// Half the window's width: the error bound at the moment the window was computed.
    #[must_use]
    pub fn bound(&self) -> Duration {
        let half = (self.latest.as_nanos() - self.earliest.as_nanos()) / 2;
        Duration::from_nanos(u64::try_from(half).unwrap_or(u64::MAX))
    }

    /// The middle of the window: the realtime clock's reading when it was computed.
    #[must_use]
    pub fn midpoint(&self) -> Timespec {
        Timespec::from_nanos((self.earliest.as_nanos() + self.latest.as_nanos()).div_euclid(2))
    }
}
