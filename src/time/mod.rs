//! Time values and clocks: [`Timespec`], [`TimeWindow`], [`ClockStatus`], and the clocks
//! `now()` reads (`CLOCK_REALTIME`, `CLOCK_MONOTONIC_COARSE`, the CPU counter). The bottom
//! layer: nothing here knows about segments.

pub(crate) mod clock;
pub(crate) mod counter;
mod status;
mod timespec;
mod window;

pub use status::ClockStatus;
pub(crate) use timespec::NANOS_PER_SEC;
pub use timespec::{NegativeTimespec, Timespec};
pub use window::TimeWindow;
