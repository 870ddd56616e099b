//! [`ClockStatus`]: what the daemon says of its clock, possibly degraded by a snapshot's age.

/// The clock's state as the daemon reports it, possibly degraded by the snapshot's age.
///
/// The discriminants are the wire values of the segment's `clock_status` field. With feature
/// `serde` a status is its variant's name as a string (`"Unknown"`, `"Synchronized"`,
/// `"FreeRunning"`, `"Disrupted"`), never the wire value.
#[repr(i32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClockStatus {
    /// Nothing is known about the clock: do not trust the window. Also what a snapshot
    /// degrades to once its `void_after` has passed.
    Unknown = 0,
    /// The daemon is synchronised to a time source and the window is trustworthy.
    Synchronized = 1,
    /// The clock is running on its own (the daemon lost its time source, or stopped updating
    /// for longer than the free-running grace, [`FREE_RUNNING_GRACE`](crate::FREE_RUNNING_GRACE) by
    /// default); the window still holds because it grows with the
    /// worst-case drift.
    FreeRunning = 2,
    /// The clock was disrupted (live migration, snapshot restore): its error is not bounded,
    /// do not trust the window.
    Disrupted = 3,
}

impl ClockStatus {
    /// The status for a wire value, `None` for anything but 0..=3: the `const` form of
    /// `ClockStatus::try_from(value)`.
    #[must_use]
    pub const fn from_wire(value: i32) -> Option<ClockStatus> {
        match value {
            0 => Some(ClockStatus::Unknown),
            1 => Some(ClockStatus::Synchronized),
            2 => Some(ClockStatus::FreeRunning),
            3 => Some(ClockStatus::Disrupted),
            _ => None,
        }
    }

    /// Whether a window with this status can be relied on: `Synchronized` (the daemon
    /// tracks a time source; the bound is as tight as it gets) and `FreeRunning` (no recent
    /// synchronisation, but the bound has grown with the worst-case drift, so it still
    /// holds). `Unknown` and `Disrupted` windows must not be relied on.
    #[must_use]
    pub const fn is_trusted(self) -> bool {
        matches!(self, ClockStatus::Synchronized | ClockStatus::FreeRunning)
    }

    /// The wire value of this status: the `const` form of `i32::from(status)`.
    #[must_use]
    pub const fn to_wire(self) -> i32 {
        self as i32
    }
}

/// The status for a wire value; the value itself back for anything but 0..=3.
///
/// ```
/// use clockbound_shm::ClockStatus;
///
/// assert_eq!(ClockStatus::try_from(1), Ok(ClockStatus::Synchronized));
/// assert_eq!(ClockStatus::try_from(7), Err(7));
/// assert_eq!(i32::from(ClockStatus::Disrupted), 3);
/// ```
impl TryFrom<i32> for ClockStatus {
    type Error = i32;

    fn try_from(value: i32) -> Result<ClockStatus, i32> {
        ClockStatus::from_wire(value).ok_or(value)
    }
}

/// The wire value of a status.
impl From<ClockStatus> for i32 {
    fn from(status: ClockStatus) -> i32 {
        status.to_wire()
    }
}
