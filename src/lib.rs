//! Error-bounded time from the AWS ClockBound daemon, read from its shared-memory segments.
//!
//! The ClockBound daemon keeps segments up to date with how far the clock may be from true
//! time: `/var/run/clockbound/shm0` (layout 2, ClockBound 2.x, and 3.x for older clients)
//! and `/var/run/clockbound/shm1` (layout 3, ClockBound 3.x, time from the CPU counter).
//! This crate reads either and turns each snapshot into a window `[earliest, latest]` that
//! contains true time: what commit-wait, lease checks and snapshot reads across machines
//! need.
//!
//! # Which type to pick
//!
//! | You have | Use |
//! |---|---|
//! | many threads, any daemon version | [`SharedClockBound::open_default`]: `Clone + Send + Sync`, `now(&self)`, prefers `shm1`, else `shm0`; [`Strategy::ThreadLocal`] (default) or [`Strategy::ArcSwap`] |
//! | one thread, layout 2 (`shm0`) | [`ShmReader`]: `new(&CStr)` / `snapshot(&mut self) -> &ClockErrorBound`, the released 2.0.3 reader's shape |
//! | one thread, layout 3 (`shm1`) | [`ShmReaderV3`]: `snapshot(&mut self) -> &ClockErrorBoundV3` |
//! | no daemon (tests, simulators) | [`ShmWriter`] / [`ShmWriterV3`] (feature `writer`, on by default) |
//!
//! ```no_run
//! use clockbound_shm::{ClockStatus, SharedClockBound};
//!
//! let clock = SharedClockBound::open_default()?; // shm1 if the 3.x daemon writes it, else shm0
//! println!("reading {} ({})", clock.path().display(), clock.layout());
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
//! A layout 3 window is about true time on the daemon's own clock: it does not move when
//! `CLOCK_REALTIME` is stepped, it is tighter than `shm0`'s (which also covers the system
//! clock's offset from the daemon's), and its midpoint is the daemon's estimate of true
//! time, not `CLOCK_REALTIME`.
//!
//! # Commit-wait, lease checks and start-up
//!
//! [`TimeWindow::after`] / [`TimeWindow::before`] (and the same on both reader types) answer
//! "has `t` certainly passed / certainly not arrived"; `wait_until_after` is commit-wait
//! (sleeps through the uncertainty, spins only the last microseconds, refuses an untrusted
//! clock); `wait_for_sync` waits at start-up for the daemon.
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
//! # Optional features
//!
//! - **`tokio`**: `wait_until_after_async`, `wait_for_sync_async` and
//!   `wait_for_sync_with_async` on [`SharedClockBound`] and the single-thread readers, and
//!   `SharedClockBound::wait_for_sync_default_async`. They make the same decisions as the
//!   blocking calls, but sleep on the tokio runtime's timer and, for
//!   the last 2 ms of a commit-wait (that timer counts whole milliseconds), look again after
//!   each `tokio::task::yield_now`: no thread is held. They panic when polled outside a
//!   runtime with timers enabled, as `tokio::time::sleep` does.
//! - **`serde`**: `Serialize` and `Deserialize` for [`Timespec`], [`TimeWindow`],
//!   [`ClockStatus`], [`LayoutVersion`], [`ClockErrorBound`], [`ClockErrorBoundV3`] and
//!   [`AnySnapshot`]. Each type's documentation gives its form; deserialising validates a
//!   snapshot as reading a segment does, so JSON cannot make one a reader would refuse.
//!
//! ```
//! # #[cfg(feature = "serde")] {
//! use clockbound_shm::{ClockErrorBound, ClockStatus, Timespec};
//!
//! let snapshot = ClockErrorBound::builder()
//!     .as_of(Timespec::new(100, 0))
//!     .void_after(Timespec::new(1100, 0))
//!     .bound_nsec(5_000)
//!     .max_drift_ppb(1_000)
//!     .clock_status(ClockStatus::Synchronized)
//!     .build();
//! let json = serde_json::to_string(&snapshot).unwrap();
//! assert!(json.starts_with(r#"{"layout":2,"as_of":{"sec":100,"nsec":0},"#));
//! assert_eq!(serde_json::from_str::<ClockErrorBound>(&json).unwrap(), snapshot);
//! // A negative bound is refused, as in a segment.
//! let bad = json.replace(r#""bound_nsec":5000"#, r#""bound_nsec":-1"#);
//! let err = serde_json::from_str::<ClockErrorBound>(&bad).unwrap_err();
//! assert!(err.to_string().contains("bound_nsec is -1, expected 0 or more"));
//! # }
//! ```
//!
//! The repository also holds a C library source-compatible with the ClockBound 3.x C
//! header (`ffi/`, one context for any number of threads) and a Python package (`python/`),
//! both built on [`SharedClockBound`]; the README has a section for each.
//!
//! # Self-healing and disruption checks
//!
//! `now()` on every reader type re-reads a snapshot older than the recheck interval
//! ([`DEFAULT_RECHECK_INTERVAL`]) even if the 16-bit generation looks unchanged, maps the
//! file again when the daemon recreated it or truncated it under the mapping, and, while
//! the snapshot says the daemon supports it, compares the VMClock disruption marker
//! ([`VmClockReader`]) with the snapshot's and reports [`ClockStatus::Disrupted`] when they
//! differ. [`ReaderOptions`] configures all of it; [`ReaderStats`] counts what happened.
//!
//! # Guarantees
//!
//! - **Never a torn or invented snapshot.** Snapshots are taken with the seqlock protocol
//!   ([`docs::memory_model`], model-checked with loom), and every field is validated before
//!   a snapshot value exists.
//! - **Never a window narrower than the truth allows.** The bound grows with the worst-case
//!   drift since `as_of` (and, for layout 3, the counter period's error), rounded outwards,
//!   in saturating integer arithmetic. As a snapshot ages the status degrades: FreeRunning
//!   after the grace ([`FREE_RUNNING_GRACE`], 60 s), Unknown once `void_after` passes.
//!   Check [`TimeWindow::clock_status`] before trusting a window.
//! - **No crash from a daemon restart.** A daemon that truncates the segment while this
//!   process reads it (every ClockBound 3.x start does it to `shm0`) is survived through a
//!   `SIGBUS` guard ([`docs::hazards`]); readers answer from their last snapshot, ageing,
//!   then from the rewritten file.
//! - **No undefined behaviour from any bytes.** Shared memory is only touched through
//!   atomics (no Rust reference to bytes another process writes), no enum or `bool` is built
//!   from raw bytes, and `unsafe` code lives in three small modules (the mapping, the
//!   counter read, the `SIGBUS` guard), each block with its proof.
//! - **Fast.** The hot path makes no system call, takes no lock and allocates nothing;
//!   [`docs::performance`] says how, `BENCHMARKS.md` how fast.
//!
//! # Failure modes
//!
//! Every problem is a [`ShmError`] that names the file, the value found and the value
//! expected; [`ShmError::errno`] maps it to an errno as the released client does;
//! [`ShmError::is_transient`] says whether waiting can help.
//!
//! | Situation | What you get |
//! |---|---|
//! | daemon not running, file missing or unreadable | [`ShmError::Io`] at open (errno kept) |
//! | daemon starting: file empty or short, wiped, never written | [`ShmError::SegmentNotInitialized`] at open (transient) |
//! | update in progress, writer died mid-update, wipe or truncation while open | the last good snapshot, ageing |
//! | daemon gone for good | the last snapshot; its window widens and its status degrades |
//! | garbage, wrong magic, bad `segsize`, invalid field | [`ShmError::SegmentMalformed`] |
//! | another layout version | [`ShmError::SegmentVersionNotSupported`] |
//! | layout 3 on a CPU other than x86-64 / aarch64 | [`ShmError::LayoutNotSupported`] |
//! | clock before the snapshot beyond the 1 µs blur | [`ShmError::CausalityBreach`] / [`ShmError::CounterBehindSnapshot`] from `now()` |
//! | segment asks for the disruption check, VMClock page missing or unreadable | [`ShmError::VmClockIo`] at open (or at the first `now()` after a daemon turned the support on); open with [`DisruptionCheck::Off`] or give the process read access to `/dev/vmclock0` |
//! | VMClock page invalid or stuck mid-update | [`ShmError::VmClockMalformed`] / [`ShmError::VmClockNotReady`] |
//!
//! # Layout
//!
//! [`docs::protocol`] has both wire formats, the protocols and the arithmetic. The released
//! crates read what [`ShmWriter`] and [`ShmWriterV3`] write and the other way round
//! (`tests/interop.rs`).

#![cfg_attr(docsrs, feature(doc_cfg))]
// `unsafe` lives in `mapping`, `time::counter` and `fault_guard`, which allow it; everywhere else
// it does not compile.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]
// Under `--cfg loom` only the protocol modules are built, and much of them goes unused.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

// The layers, bottom up (each uses only those above it in this list):
// - `time`: time values and the clocks (`time::counter` reads the CPU counter: `unsafe`);
// - `version`, `error`: the vocabulary every layer shares;
// - `snapshot`: the validated snapshot values and their arithmetic;
// - `sync`, `seqlock`: the seqlock over atomic cells (with loom hooks);
// - `layout`: the wire formats, including the VMClock page's;
// - `fault_guard`, `mapping`: the process-wide `SIGBUS` guard and the mappings (`unsafe`);
// - `segment`: a segment file opened, validated and mapped;
// - `cache`: the snapshot cache and its self-healing policy;
// - `vmclock`: the VMClock disruption check;
// - `options`, `wait`: how readers are opened, and the waiting calls;
// - `reader`: the single-thread readers; `thread_slot`, `shared`: the shared handle;
// - `diagnosis`: one explained look at a segment, for operators' tools (the CLI);
// - `writer`: the simulated daemon;
// - `serde_repr`: the serde forms of the values (feature `serde`).
mod time;

mod error;
mod version;

mod snapshot;

mod seqlock;
mod sync;

pub mod layout;

#[cfg(not(loom))]
mod fault_guard;
#[cfg(not(loom))]
mod mapping;

#[cfg(not(loom))]
mod segment;

mod cache;

#[cfg(not(loom))]
mod vmclock;

#[cfg(not(loom))]
mod options;
#[cfg(not(loom))]
mod wait;

#[cfg(not(loom))]
mod reader;
#[cfg(not(loom))]
mod shared;
#[cfg(not(loom))]
mod thread_slot;

#[cfg(not(loom))]
mod diagnosis;

#[cfg(all(feature = "writer", not(loom)))]
mod writer;

#[cfg(all(feature = "serde", not(loom)))]
mod serde_repr;

pub mod docs;

pub use cache::{DEFAULT_RECHECK_INTERVAL, ReaderStats};
pub use error::{Malformed, NotInitialized, ShmError, VmClockMalformed};
pub use layout::vmclock::{VmClockSnapshot, VmClockStatus};
pub use layout::{Layout, Layout2, Layout3, SegmentHeader};
pub use snapshot::{
    CAUSALITY_BLUR, ClockErrorBound, ClockErrorBoundBuilder, ClockErrorBoundV3,
    ClockErrorBoundV3Builder, FREE_RUNNING_GRACE, FREE_RUNNING_GRACE_2_0_3,
};
pub use time::counter::cpu_counter;
pub use time::{ClockStatus, NegativeTimespec, TimeWindow, Timespec};
pub use version::LayoutVersion;

#[cfg(not(loom))]
pub use diagnosis::{ClockReadings, Diagnosis, VmClockCheck, VmClockProbe};
#[cfg(not(loom))]
pub use options::{DisruptionCheck, ReaderOptions, Strategy};
#[cfg(not(loom))]
pub use reader::{
    CLOCKBOUND_SHM_DEFAULT_PATH, CLOCKBOUND_SHM1_DEFAULT_PATH, SegmentReader, ShmReader,
    ShmReaderV3,
};
#[cfg(not(loom))]
pub use shared::{AnySnapshot, SharedClockBound};
#[cfg(not(loom))]
pub use vmclock::{VMCLOCK_DEFAULT_PATH, VmClockReader};
#[cfg(all(feature = "writer", not(loom)))]
pub use writer::{SegmentWriter, ShmWriter, ShmWriterV3};

#[cfg(loom)]
#[doc(hidden)]
pub use seqlock::loom_hooks;

// The README's snippets use every feature: they run under `cargo test --all-features`, the
// README's test command.
#[cfg(all(doctest, feature = "tokio", feature = "serde"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
