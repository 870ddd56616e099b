//! The reasoning behind this crate, in one place.
//!
//! The type-level documentation says *what* each item does. The pages here say *why* the
//! crate works the way it does, and what it relies on. Each topic is written down once, and
//! the rest of the documentation links here.
//!
//! - [`protocol`]: the ClockBound shared-memory segments (both layouts), the VMClock page,
//!   how the daemon writes them, how a reader must read them, and the arithmetic that turns
//!   a snapshot into a time window. Complete enough to write a client in another language.
//! - [`memory_model`]: why a copy the seqlock accepts is never torn, what that rests on
//!   with this crate's writer and with the ClockBound daemon's, on which CPUs, and what the
//!   loom model checks.
//! - [`strategies`]: the two ways a [`SharedClockBound`](crate::SharedClockBound) serves
//!   many threads, what each costs, and how to choose.
//! - [`hazards`]: what real daemons and machines do to a reader (truncating restarts,
//!   crash loops, recreated files, dead writers, live migration) and how the crate answers
//!   each.
//! - [`performance`]: the design choices that keep the read path short. The measurements
//!   are in `BENCHMARKS.md` in the repository.
//!
//! These pages hold no code; the examples in them are tested with the crate's doctests.

pub mod hazards;
pub mod memory_model;
pub mod performance;
pub mod protocol;
pub mod strategies;
