//! [`Timespec`]: a normalised `(seconds, nanoseconds)` instant, the unit of every time the
//! segment carries and every window this crate returns.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) const NANOS_PER_SEC: i64 = 1_000_000_000;
const NANOS_PER_SEC_U64: u64 = NANOS_PER_SEC as u64;

/// An instant on one of the kernel's clocks, as seconds and nanoseconds since that clock's
/// epoch (`CLOCK_REALTIME`: the Unix epoch; `CLOCK_MONOTONIC_COARSE`: an unspecified point
/// around boot).
///
/// The value is always normalised: `0 <= nsec() < 1_000_000_000`, so the derived ordering
/// (seconds first, then nanoseconds) is the ordering of instants. [`Timespec::new`] carries
/// out-of-range nanoseconds into the seconds and saturates at [`Timespec::MIN`] and
/// [`Timespec::MAX`] instead of overflowing.
///
/// The layout is `struct timespec` on 64-bit Linux (`repr(C)`, two `i64`), which is also how
/// the segment stores `as_of` and `void_after`.
///
/// With feature `serde` it is `{"sec": i64, "nsec": i64}`, e.g. `{"sec": -1, "nsec":
/// 500000000}` for half a second before the epoch; deserialising refuses an `nsec` outside
/// `0..1_000_000_000` (it does not carry it into the seconds, as [`new`](Self::new) does).
///
/// ```
/// use clockbound_shm::Timespec;
/// use std::time::Duration;
///
/// let t = Timespec::new(1, 1_500_000_000); // nanoseconds carry into seconds
/// assert_eq!((t.sec(), t.nsec()), (2, 500_000_000));
/// assert_eq!(Duration::try_from(t), Ok(Duration::new(2, 500_000_000)));
/// assert!(Timespec::new(-1, 0) < Timespec::new(0, 0));
/// ```
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timespec {
    sec: i64,
    nsec: i64,
}

impl Timespec {
    /// The epoch of the clock, `0.000000000`.
    pub const ZERO: Timespec = Timespec { sec: 0, nsec: 0 };
    /// The latest representable instant; saturating arithmetic stops here.
    pub const MAX: Timespec = Timespec {
        sec: i64::MAX,
        nsec: NANOS_PER_SEC - 1,
    };
    /// The earliest representable instant; saturating arithmetic stops here.
    pub const MIN: Timespec = Timespec {
        sec: i64::MIN,
        nsec: 0,
    };

    /// Builds an instant from seconds and nanoseconds, normalising `nsec` into
    /// `0..1_000_000_000` by carrying whole seconds (negative `nsec` borrows). Saturates at
    /// [`Timespec::MIN`] / [`Timespec::MAX`] when the carry does not fit.
    #[must_use]
    #[inline]
    pub const fn new(sec: i64, nsec: i64) -> Timespec {
        let carry = nsec.div_euclid(NANOS_PER_SEC);
        let nsec = nsec.rem_euclid(NANOS_PER_SEC);
        match sec.checked_add(carry) {
            Some(sec) => Timespec { sec, nsec },
            None if carry > 0 => Timespec::MAX,
            None => Timespec::MIN,
        }
    }

    /// Builds an instant only when `nsec` is already normalised; `None` otherwise. This is
    /// how values from the segment are taken in: a writer that stores nanoseconds out of
    /// range has produced a malformed segment, and we do not guess what it meant.
    #[inline(always)]
    pub(crate) const fn from_normalised(sec: i64, nsec: i64) -> Option<Timespec> {
        if nsec >= 0 && nsec < NANOS_PER_SEC {
            Some(Timespec { sec, nsec })
        } else {
            None
        }
    }

    /// Whole seconds since the clock's epoch (negative before it).
    #[must_use]
    #[inline(always)]
    pub const fn sec(&self) -> i64 {
        self.sec
    }

    /// Nanoseconds past [`sec`](Self::sec), always in `0..1_000_000_000`.
    #[must_use]
    #[inline(always)]
    pub const fn nsec(&self) -> i64 {
        self.nsec
    }

    /// The instant as nanoseconds since the clock's epoch. Never overflows: `i128` holds
    /// every `Timespec`.
    #[must_use]
    #[inline]
    pub const fn as_nanos(&self) -> i128 {
        self.sec as i128 * NANOS_PER_SEC as i128 + self.nsec as i128
    }

    /// The instant `nanos` nanoseconds after the clock's epoch, saturating at
    /// [`Timespec::MIN`] / [`Timespec::MAX`].
    #[must_use]
    pub const fn from_nanos(nanos: i128) -> Timespec {
        let sec = nanos.div_euclid(NANOS_PER_SEC as i128);
        let nsec = nanos.rem_euclid(NANOS_PER_SEC as i128) as i64;
        if sec > i64::MAX as i128 {
            Timespec::MAX
        } else if sec < i64::MIN as i128 {
            Timespec::MIN
        } else {
            Timespec {
                sec: sec as i64,
                nsec,
            }
        }
    }

    /// `self + nanos`, saturating at [`Timespec::MAX`]. Integer-only; a `nanos` under one
    /// second (the usual error bound) takes no division at all, which keeps the `now()`
    /// path short: its latency is paid on every call.
    #[must_use]
    #[inline(always)]
    pub(crate) const fn saturating_add_nanos(self, nanos: u64) -> Timespec {
        if nanos >= NANOS_PER_SEC_U64 {
            return self.saturating_add_whole_seconds(nanos);
        }
        let mut nsec = self.nsec + nanos as i64;
        let mut sec = self.sec;
        if nsec >= NANOS_PER_SEC {
            nsec -= NANOS_PER_SEC;
            sec = match sec.checked_add(1) {
                Some(sec) => sec,
                None => return Timespec::MAX,
            };
        }
        Timespec { sec, nsec }
    }

    /// [`saturating_add_nanos`](Self::saturating_add_nanos) for a second or more.
    #[cold]
    const fn saturating_add_whole_seconds(self, nanos: u64) -> Timespec {
        // Off the hot path: exact 128-bit arithmetic, then saturate.
        Timespec::from_nanos(self.as_nanos() + nanos as i128)
    }

    /// `self - nanos`, saturating at [`Timespec::MIN`]; as cheap as
    /// [`saturating_add_nanos`](Self::saturating_add_nanos).
    #[must_use]
    #[inline(always)]
    pub(crate) const fn saturating_sub_nanos(self, nanos: u64) -> Timespec {
        if nanos >= NANOS_PER_SEC_U64 {
            return self.saturating_sub_whole_seconds(nanos);
        }
        let mut nsec = self.nsec - nanos as i64;
        let mut sec = self.sec;
        if nsec < 0 {
            nsec += NANOS_PER_SEC;
            sec = match sec.checked_sub(1) {
                Some(sec) => sec,
                None => return Timespec::MIN,
            };
        }
        Timespec { sec, nsec }
    }

    /// [`saturating_sub_nanos`](Self::saturating_sub_nanos) for a second or more.
    #[cold]
    const fn saturating_sub_whole_seconds(self, nanos: u64) -> Timespec {
        // Off the hot path: exact 128-bit arithmetic, then saturate.
        Timespec::from_nanos(self.as_nanos() - nanos as i128)
    }

    /// `self + duration`, saturating at [`Timespec::MAX`].
    #[must_use]
    pub fn saturating_add(self, duration: Duration) -> Timespec {
        // Seconds and nanoseconds apart: no 128-bit division (this runs once per snapshot
        // read, to schedule the next re-read).
        let mut nsec = self.nsec + i64::from(duration.subsec_nanos());
        let mut carry = 0;
        if nsec >= NANOS_PER_SEC {
            nsec -= NANOS_PER_SEC;
            carry = 1;
        }
        // Adding a duration only moves forward: a sum past `i64` seconds saturates at MAX.
        let sec = i128::from(self.sec) + i128::from(duration.as_secs()) + carry;
        match i64::try_from(sec) {
            Ok(sec) => Timespec { sec, nsec },
            Err(_) => Timespec::MAX,
        }
    }

    /// `self - duration`, saturating at [`Timespec::MIN`].
    #[must_use]
    pub fn saturating_sub(self, duration: Duration) -> Timespec {
        Timespec::from_nanos(self.as_nanos().saturating_sub_unsigned(duration.as_nanos()))
    }

    /// How long after `earlier` this instant is; `None` when it is before `earlier`.
    #[must_use]
    pub fn duration_since(self, earlier: Timespec) -> Option<Duration> {
        let nanos = self.as_nanos().checked_sub(earlier.as_nanos())?;
        // The difference of two `Timespec`s is below 2^64 seconds, so it fits a `Duration`.
        let nanos = u128::try_from(nanos).ok()?;
        let secs = u64::try_from(nanos / NANOS_PER_SEC as u128).ok()?;
        Some(Duration::new(secs, (nanos % NANOS_PER_SEC as u128) as u32))
    }
}

impl fmt::Display for Timespec {
    /// `seconds.nanoseconds`, e.g. `1700000000.000012345` (and `-1.500000000` for half a
    /// second before the epoch).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sec < 0 && self.nsec > 0 {
            // -0.5 s is stored as (-1, 500_000_000): print it the way people read it.
            let sec = self.sec.unsigned_abs() - 1;
            write!(f, "-{}.{:09}", sec, NANOS_PER_SEC - self.nsec)
        } else {
            write!(f, "{}.{:09}", self.sec, self.nsec)
        }
    }
}

/// A `Timespec` before the epoch cannot become a `Duration`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} is before the clock's epoch and has no Duration equivalent")]
pub struct NegativeTimespec(pub Timespec);

impl TryFrom<Timespec> for Duration {
    type Error = NegativeTimespec;

    /// The time since the clock's epoch; fails for instants before it.
    fn try_from(t: Timespec) -> Result<Duration, NegativeTimespec> {
        t.duration_since(Timespec::ZERO).ok_or(NegativeTimespec(t))
    }
}

impl From<Duration> for Timespec {
    /// The instant `d` after the clock's epoch, saturating at [`Timespec::MAX`].
    fn from(d: Duration) -> Timespec {
        Timespec::ZERO.saturating_add(d)
    }
}

impl From<SystemTime> for Timespec {
    /// A wall-clock time as a `CLOCK_REALTIME` instant (negative before 1970).
    fn from(t: SystemTime) -> Timespec {
        match t.duration_since(UNIX_EPOCH) {
            Ok(after) => Timespec::ZERO.saturating_add(after),
            Err(before) => Timespec::ZERO.saturating_sub(before.duration()),
        }
    }
}

impl From<Timespec> for SystemTime {
    /// A `CLOCK_REALTIME` instant as a wall-clock time. Instants beyond what `SystemTime`
    /// holds (hundreds of billions of years) saturate to the nearest one it does.
    fn from(t: Timespec) -> SystemTime {
        let magnitude = |d: Option<Duration>| d.unwrap_or(Duration::MAX);
        if t >= Timespec::ZERO {
            let d = magnitude(t.duration_since(Timespec::ZERO));
            UNIX_EPOCH
                .checked_add(d)
                .unwrap_or(UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 / 2))
        } else {
            let d = magnitude(Timespec::ZERO.duration_since(t));
            UNIX_EPOCH
                .checked_sub(d)
                .unwrap_or(UNIX_EPOCH - Duration::from_secs(i64::MAX as u64 / 2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_normalises_and_saturates() {
        assert_eq!(
            Timespec::new(0, -1),
            Timespec {
                sec: -1,
                nsec: 999_999_999
            }
        );
        assert_eq!(
            Timespec::new(5, 2_000_000_001),
            Timespec { sec: 7, nsec: 1 }
        );
        assert_eq!(Timespec::new(i64::MAX, NANOS_PER_SEC), Timespec::MAX);
        assert_eq!(Timespec::new(i64::MIN, -1), Timespec::MIN);
        assert_eq!(Timespec::new(i64::MIN, i64::MIN).sec(), i64::MIN);
    }

    #[test]
    fn from_normalised_rejects_out_of_range() {
        assert_eq!(
            Timespec::from_normalised(3, 999_999_999),
            Some(Timespec::new(3, 999_999_999))
        );
        assert_eq!(Timespec::from_normalised(3, NANOS_PER_SEC), None);
        assert_eq!(Timespec::from_normalised(3, -1), None);
    }

    #[test]
    fn nanos_round_trip_and_saturate() {
        for t in [
            Timespec::ZERO,
            Timespec::MAX,
            Timespec::MIN,
            Timespec::new(-3, 7),
        ] {
            assert_eq!(Timespec::from_nanos(t.as_nanos()), t);
        }
        assert_eq!(Timespec::from_nanos(i128::MAX), Timespec::MAX);
        assert_eq!(Timespec::from_nanos(i128::MIN), Timespec::MIN);
    }

    #[test]
    fn add_and_sub_nanos_carry_and_saturate() {
        let t = Timespec::new(10, 999_999_999);
        assert_eq!(t.saturating_add_nanos(1), Timespec::new(11, 0));
        assert_eq!(t.saturating_add_nanos(2_000_000_001), Timespec::new(13, 0));
        assert_eq!(
            Timespec::new(10, 0).saturating_sub_nanos(1),
            Timespec::new(9, 999_999_999)
        );
        assert_eq!(Timespec::MAX.saturating_add_nanos(1), Timespec::MAX);
        assert_eq!(
            Timespec::new(i64::MAX, 0).saturating_add_nanos(u64::MAX),
            Timespec::MAX
        );
        assert_eq!(Timespec::MIN.saturating_sub_nanos(1), Timespec::MIN);
        assert_eq!(
            Timespec::new(i64::MIN, 5).saturating_sub_nanos(u64::MAX),
            Timespec::MIN
        );
        // Against the i128 reference for a spread of values.
        for (sec, nsec, n) in [
            (0, 0, 0u64),
            (-5, 3, 7_000_000_123),
            (1 << 40, 999_999_999, u64::MAX),
        ] {
            let t = Timespec::new(sec, nsec);
            assert_eq!(
                t.saturating_add_nanos(n),
                Timespec::from_nanos(t.as_nanos() + n as i128)
            );
            assert_eq!(
                t.saturating_sub_nanos(n),
                Timespec::from_nanos(t.as_nanos() - n as i128)
            );
        }
    }

    #[test]
    fn conversions() {
        let d = Duration::new(3, 4);
        assert_eq!(Duration::try_from(Timespec::from(d)), Ok(d));
        assert_eq!(
            Duration::try_from(Timespec::new(-1, 0)),
            Err(NegativeTimespec(Timespec::new(-1, 0)))
        );
        assert_eq!(Timespec::from(Duration::MAX), Timespec::MAX);
        let before = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(Timespec::from(before), Timespec::new(-2, 500_000_000));
        assert_eq!(SystemTime::from(Timespec::new(-2, 500_000_000)), before);
        let now = SystemTime::now();
        assert_eq!(SystemTime::from(Timespec::from(now)), now);
        assert_eq!(
            Timespec::new(2, 1).duration_since(Timespec::new(1, 2)),
            Some(Duration::new(0, 999_999_999))
        );
        assert_eq!(
            Timespec::new(1, 2).duration_since(Timespec::new(2, 1)),
            None
        );
        assert_eq!(
            Timespec::MAX
                .duration_since(Timespec::MIN)
                .map(|d| d.as_secs()),
            Some(u64::MAX)
        );
    }

    #[test]
    fn display() {
        assert_eq!(Timespec::new(12, 345).to_string(), "12.000000345");
        assert_eq!(Timespec::new(0, -500_000_000).to_string(), "-0.500000000");
        assert_eq!(Timespec::new(-2, 0).to_string(), "-2.000000000");
    }

    proptest::proptest! {
        /// The under-one-second shortcut agrees with exact 128-bit arithmetic, carries and
        /// saturation included (the general path is that arithmetic; the range covers both
        /// sides of the switch between them).
        #[test]
        fn saturating_nanos_match_exact_arithmetic(
            sec in proptest::prop_oneof![proptest::num::i64::ANY, -10i64..10],
            nsec in 0i64..NANOS_PER_SEC,
            nanos in proptest::prop_oneof![0u64..NANOS_PER_SEC_U64 * 2, proptest::num::u64::ANY],
        ) {
            let t = Timespec::new(sec, nsec);
            proptest::prop_assert_eq!(
                t.saturating_add_nanos(nanos),
                Timespec::from_nanos(t.as_nanos() + i128::from(nanos))
            );
            proptest::prop_assert_eq!(
                t.saturating_sub_nanos(nanos),
                Timespec::from_nanos(t.as_nanos() - i128::from(nanos))
            );
        }

        /// `saturating_add(Duration)` (seconds and nanoseconds apart) equals the exact sum,
        /// saturated.
        #[test]
        fn saturating_add_duration_matches_exact_arithmetic(
            sec in proptest::prop_oneof![proptest::num::i64::ANY, -10i64..10],
            nsec in 0i64..NANOS_PER_SEC,
            secs in proptest::prop_oneof![0u64..100, proptest::num::u64::ANY],
            subsec in 0u32..1_000_000_000,
        ) {
            let t = Timespec::new(sec, nsec);
            let d = Duration::new(secs, subsec);
            proptest::prop_assert_eq!(
                t.saturating_add(d),
                Timespec::from_nanos(t.as_nanos().saturating_add_unsigned(d.as_nanos()))
            );
        }
    }
}
