//! Error-bounded time from the AWS ClockBound daemon, read from its shared-memory segment.
//!
//! The ClockBound daemon keeps an 80-byte segment (`/var/run/clockbound/shm0`) up to date
//! with how far `CLOCK_REALTIME` may be from true time. This crate reads it, byte-compatible
//! with ClockBound 2.x, and turns each snapshot into a window `[earliest, latest]` that
//! contains true time: what commit-wait, lease checks and snapshot reads across machines need.
//!
//! # Which type to pick
//!
//! | You have | Use | Cost per call |
//! |---|---|---|
//! | one thread, or a reader per thread | [`ShmReader`]: `snapshot(&mut self)` returns `&ClockErrorBound` | one atomic load + compare, then `now()` = two vDSO clock reads |
//! | many threads sharing one handle | [`SharedClockBound`]: `Clone + Send + Sync`, `now(&self)` | [`Strategy::ThreadLocal`] (default) or [`Strategy::ArcSwap`]; no lock, no shared write |
//! | no daemon (tests, simulators) | [`ShmWriter`] (feature `writer`, on by default) | |
//!
//! ```no_run
//! use clockbound_shm::{ClockStatus, SharedClockBound, CLOCKBOUND_SHM_DEFAULT_PATH};
//!
//! let clock = SharedClockBound::open(CLOCKBOUND_SHM_DEFAULT_PATH)?;
//! let handles: Vec<_> = (0..4).map(|_| {
//!     let clock = clock.clone();
//!     std::thread::spawn(move || {
//!         let w = clock.now().expect("ClockBound segment readable");
//!         assert!(w.earliest <= w.latest);
//!         w.clock_status == ClockStatus::Synchronized
//!     })
//! }).collect();
//! for h in handles { h.join().unwrap(); }
//! # Ok::<(), clockbound_shm::ShmError>(())
//! ```
//!
//! # Commit-wait, lease checks and start-up
//!
//! [`TimeWindow::after`] / [`TimeWindow::before`] (and the same on both reader types) answer
//! "has `t` certainly passed / certainly not arrived"; [`ShmReader::wait_until_after`] is
//! commit-wait (sleeps through the uncertainty, spins only the last microseconds, refuses an
//! untrusted clock); [`ShmReader::wait_for_sync`] waits at start-up for the daemon.
//!
//! ```no_run
//! use clockbound_shm::{ShmReader, CLOCKBOUND_SHM_DEFAULT_PATH};
//! use std::time::Duration;
//!
//! let mut clock = ShmReader::wait_for_sync(CLOCKBOUND_SHM_DEFAULT_PATH, Duration::from_secs(30))?;
//! let commit_ts = clock.now()?.latest;
//! clock.wait_until_after(commit_ts, Duration::from_millis(50))?;
//! # Ok::<(), clockbound_shm::ShmError>(())
//! ```
//!
//! # Self-healing and disruption checks
//!
//! `now()` on both reader types re-reads a snapshot whose `as_of` is older than the recheck
//! interval ([`DEFAULT_RECHECK_INTERVAL`], 1 s) even if the 16-bit generation looks unchanged,
//! follows the path to a new file when the daemon recreated the segment, and, when the
//! segment says the daemon supports it, compares the VMClock disruption marker
//! ([`VmClockReader`]) with the snapshot's and reports [`ClockStatus::Disrupted`] when they
//! differ. [`ReaderOptions`] configures both; [`ReaderStats`] counts what happened.
//!
//! # Guarantees
//!
//! - **Never a torn or invented snapshot.** Snapshots are taken with the seqlock protocol
//!   (argued in the `seqlock` module, model-checked with loom in `tests/loom.rs`), and every
//!   field is validated before a [`ClockErrorBound`] exists.
//! - **Never a window narrower than the truth allows.** The bound grows with the worst-case
//!   drift since `as_of`, rounded up, in saturating integer arithmetic. As a snapshot ages the
//!   status degrades: FreeRunning once it is [`STALE_AFTER`] old, Unknown once `void_after`
//!   passes. Check [`TimeWindow::clock_status`] before trusting a window.
//! - **No undefined behaviour from any bytes.** Shared memory is only touched through atomics
//!   (no Rust reference to bytes another process writes), no enum or `bool` is built from raw
//!   bytes, and all `unsafe` code is one block in the `mapping` module.
//! - **Fast.** The hot path makes no system call, takes no lock and allocates nothing; see
//!   `BENCHMARKS.md`.
//!
//! # Failure modes
//!
//! Every problem is a [`ShmError`] that names the file, the value found and the value
//! expected; [`ShmError::errno`] maps it to an errno as the released client does.
//!
//! | Situation | What you get |
//! |---|---|
//! | daemon not running, file missing or unreadable | [`ShmError::Io`] at open (errno kept) |
//! | daemon starting: file empty, wiped, never written | [`ShmError::SegmentNotInitialized`] at open ([`ShmError::is_transient`]) |
//! | update in progress, writer died mid-update, wipe while open | the last good snapshot, ageing |
//! | daemon gone for good | the last snapshot; its window widens and its status degrades |
//! | garbage, wrong magic, short file, bad `segsize`, invalid field | [`ShmError::SegmentMalformed`] |
//! | another layout version | [`ShmError::SegmentVersionNotSupported`] |
//! | monotonic clock before `as_of` by more than 1 µs | [`ShmError::CausalityBreach`] from `now()` |
//!
//! One hazard no reader can fully rule out: if the daemon *truncates* a segment this process
//! has mapped (it recreates an invalid segment with a truncating create), touching the
//! mapping in the microseconds before it is rewritten raises `SIGBUS`. The reader only maps
//! bytes the file held when it was opened and the daemon only recreates segments that were
//! already unusable, which keeps the window small; this crate's [`ShmWriter`] never
//! truncates.
//!
//! # Layout
//!
//! [`layout`] has the wire format. The released crate `clock-bound-shm` 2.0.3 reads what
//! [`ShmWriter`] writes and the other way round (`tests/interop.rs`).

#![cfg_attr(docsrs, feature(doc_cfg))]
// All `unsafe` lives in `mapping`, which allows it; everywhere else it does not compile.
#![deny(unsafe_code)]
// Under `--cfg loom` only the protocol modules are built, and much of them goes unused.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

mod bound;
mod bound_v3;
mod clock;
mod counter;
mod error;
pub mod layout;
mod seqlock;
mod sync;
mod timespec;
#[cfg(not(loom))]
mod wait;

#[cfg(not(loom))]
mod mapping;
#[cfg(not(loom))]
mod options;
#[cfg(not(loom))]
mod reader;
#[cfg(not(loom))]
mod shared;
#[cfg(not(loom))]
mod thread_slot;
#[cfg(not(loom))]
mod vmclock;
#[cfg(all(feature = "writer", not(loom)))]
mod writer;

pub use bound::{CAUSALITY_BLUR, ClockErrorBound, ClockStatus, STALE_AFTER, TimeWindow};
pub use bound_v3::{ClockErrorBoundV3, ClockErrorBoundV3Builder};
pub use error::{Malformed, NotInitialized, ShmError, VmClockMalformed};
pub use layout::SegmentHeader;
pub use seqlock::{DEFAULT_RECHECK_INTERVAL, ReaderStats};
pub use timespec::{NegativeTimespec, Timespec};

#[cfg(not(loom))]
pub use options::{DisruptionCheck, ReaderOptions};
#[cfg(not(loom))]
pub use reader::{CLOCKBOUND_SHM_DEFAULT_PATH, ShmReader};
#[cfg(not(loom))]
pub use shared::{PublishedSnapshot, SharedClockBound, Strategy};
#[cfg(not(loom))]
pub use vmclock::{VMCLOCK_DEFAULT_PATH, VmClockReader, VmClockSnapshot, VmClockStatus};
#[cfg(all(feature = "writer", not(loom)))]
pub use writer::ShmWriter;

#[cfg(loom)]
#[doc(hidden)]
pub use seqlock::loom_hooks;
