//! [`LayoutVersion`]: which payload layout a segment holds. Kept apart from the wire formats
//! in [`layout`](crate::layout) so that errors and handles can name a layout without
//! depending on them.

/// Which payload layout a segment holds: what a handle that chose its segment at open
/// reports (see [`SharedClockBound::layout`](crate::SharedClockBound::layout)).
///
/// With feature `serde` it is the layout number, `2` or `3` (not the header's
/// [`wire_version`](Self::wire_version)); other numbers are refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayoutVersion {
    /// Layout 2: `shm0`, 80 bytes, time from `CLOCK_REALTIME` and `CLOCK_MONOTONIC_COARSE`.
    V2,
    /// Layout 3: `shm1`, 104 bytes, time from the CPU counter (ClockBound 3.x).
    V3,
}

impl LayoutVersion {
    /// The value of the header's `version` field for this layout. From layout 3 on the
    /// field is split: the high byte is the oldest layout a reader must understand, the low
    /// byte the layout written (`0x0303`). Layout 2 predates the split. Readers accept exactly
    /// these values, as the released clients do.
    #[must_use]
    pub const fn wire_version(self) -> u16 {
        match self {
            LayoutVersion::V2 => 2,
            LayoutVersion::V3 => 0x0303,
        }
    }
}

impl std::fmt::Display for LayoutVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutVersion::V2 => f.write_str("layout 2"),
            LayoutVersion::V3 => f.write_str("layout 3"),
        }
    }
}
