//! The snapshots: one validated value per layout ([`ClockErrorBound`] for layout 2,
//! [`ClockErrorBoundV3`] for layout 3), each with the arithmetic that turns it into a
//! [`TimeWindow`](crate::TimeWindow) at a clock reading. No shared memory here: the readers
//! copy and validate the words first, then build one of these.

use std::time::Duration;

mod v2;
mod v3;

pub use v2::{ClockErrorBound, ClockErrorBoundBuilder};
pub use v3::{ClockErrorBoundV3, ClockErrorBoundV3Builder};

/// How long after `as_of` a Synchronized snapshot keeps its status by default: past this
/// the daemon has stopped updating, and the window is reported FreeRunning (it still holds:
/// the bound grows with the worst-case drift). 60 s, as in the ClockBound 3.x clients for
/// both layouts: a 3.x daemon writes only when it has new parameters (every 16 s from
/// ordinary NTP servers), so a shorter grace reports FreeRunning between normal updates.
/// Set it with [`ReaderOptions::free_running_grace`](crate::ReaderOptions::free_running_grace).
pub const FREE_RUNNING_GRACE: Duration = Duration::from_secs(60);

/// The free-running grace of the released 2.0.3 client (5 s), for those who want its
/// behaviour against a 2.x daemon, which writes about ten times a second.
pub const FREE_RUNNING_GRACE_2_0_3: Duration = Duration::from_secs(5);

/// How far the coarse monotonic clock may read *before* `as_of` and still count as equal to
/// it: the coarse clock and the daemon's reading of it can disagree by a tick's rounding.
pub const CAUSALITY_BLUR: Duration = Duration::from_micros(1);
