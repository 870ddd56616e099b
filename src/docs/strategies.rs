//! How a [`SharedClockBound`](crate::SharedClockBound) serves many threads, and how to
//! choose a [`Strategy`](crate::Strategy).
//!
//! A [`ShmReader`](crate::ShmReader) is the fastest way to read the clock, but its
//! `snapshot()` needs `&mut self`: one reader serves one thread at a time. A
//! `SharedClockBound` is `Clone + Send + Sync` with `now(&self)`, for programs that want one
//! handle for all their threads. It has two ways of keeping snapshots for its threads, and
//! both give the same answers, the same freshness and the same errors. They differ in cost
//! and memory.
//!
//! # What both strategies share
//!
//! - **No lock and no shared write on the hot path.** A thread that calls `now()` while the
//!   segment is unchanged only *reads* shared memory: the segment's generation and, under
//!   `ArcSwap`, the published snapshot. Threads therefore do not slow each other down;
//!   throughput scales with the number of cores.
//! - **One mapping per opened value.** However many threads use a value (and its clones),
//!   the segment is mapped once.
//! - **A per-thread slot.** Each thread keeps a small slot for each value it uses. The
//!   usual case, one value per thread, finds it with one thread-local access and one pointer
//!   compare. A slot never keeps its value alive: slots of dropped values are pruned the
//!   next time the thread adds one, and all of a thread's slots go when it exits.
//! - **The same healing and checks as a `ShmReader`**: the full re-read once the snapshot
//!   is older than the recheck interval, following a recreated file (with one new mapping
//!   for the whole value), and the VMClock disruption check.
//!
//! # `Strategy::ThreadLocal` (the default)
//!
//! Each thread gets its own reader state in its slot: the snapshot cache and the VMClock
//! watch that a `ShmReader` keeps, reading the value's one shared mapping. A call is a
//! `ShmReader` call plus the slot lookup.
//!
//! - **Cost**: a plain reader's, plus the thread-local access and the owner compare.
//! - **Memory**: 192 bytes per thread and value (compile-time assertions hold the figure).
//! - **A new thread** makes one fresh copy of the segment on its first call.
//! - **Freshness**: each call checks the segment's generation, so it sees the latest
//!   complete update; while the segment is mid-update or wiped, it answers from the newest
//!   snapshot the value has seen, never an older one.
//!
//! # `Strategy::ArcSwap`
//!
//! One snapshot is published for all threads in an [`ArcSwap`](arc_swap::ArcSwap), tagged
//! with the generation it was read at, the mapping it came from, when it must be re-read,
//! and the VMClock verdict. A call compares the tags with the segment and answers from the
//! published snapshot while they match (or while an update is in progress).
//!
//! - **Reading the published snapshot**: each thread's slot holds an arc-swap
//!   [`Cache`](arc_swap::Cache) of it, so a call costs one relaxed load of the `ArcSwap`'s
//!   pointer. `ArcSwap::load` would take and give back a debt slot with two
//!   read-modify-write instructions on every call, which costs more than the rest of the
//!   call.
//! - **Memory**: 64 bytes per thread and value, plus the published snapshot the thread saw
//!   last: its cache keeps that snapshot (and the mapping it was read from) alive until the
//!   thread calls again, uses another value, or exits.
//! - **A new thread** picks up the published snapshot; it copies nothing from the segment.
//! - **Freshness**: as `ThreadLocal`: the generation is checked on every call.
//!
//! ## Why `ArcSwap` refreshes under a lock
//!
//! When the generation has moved, callers refresh the published snapshot one at a time,
//! under a mutex: the first reads the segment and publishes, and those queued behind it
//! find the new snapshot already published. The mutex is taken only when something moved
//! (about once per daemon update) and held for one payload copy.
//!
//! The obvious alternative, letting a caller that finds the lock taken read the segment for
//! itself, breaks a promise. Such a private answer can be newer than the published
//! snapshot, and the same thread's next call, landing while the daemon is mid-update,
//! answers from the published one: that thread's time goes backwards. Serialising the
//! refreshes keeps every answer at or behind the published snapshot, so each thread's
//! answers only move forward, as a `ShmReader`'s do. (`tests/stress.rs` checks exactly
//! this.) The price: once per update, a caller can wait for another's copy, longer only if
//! the lock holder is descheduled inside it.
//!
//! # Which to pick
//!
//! | your program | pick |
//! |---|---|
//! | a fixed pool of long-lived worker threads (the common case) | `ThreadLocal`: cheaper per call, never makes one thread wait for another |
//! | very many short-lived threads | `ArcSwap`: a new thread copies nothing and keeps 64 bytes, not 192 |
//! | code that wants to hold the shared snapshot itself | `ArcSwap`, with `snapshot_arc` |
//! | one thread, or one reader per thread | neither: a [`ShmReader`](crate::ShmReader) per thread is cheaper still |
//!
//! What each costs on a real machine is in `BENCHMARKS.md`; why the hot paths are shaped
//! the way they are is in [`performance`](super::performance).
