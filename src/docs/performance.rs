//! The design choices that keep the read path short.
//!
//! A call to `now()` is two clock reads (layout 2) or one counter read (layout 3), plus
//! whatever the crate adds. Everything below is about keeping that addition small. The
//! measurements, and which targets are met, are in `BENCHMARKS.md` in the repository; this
//! page has no numbers, only the reasons.
//!
//! # The shape of the hot path
//!
//! - **Unchanged segment: one load and one compare.** A reader keeps its last snapshot and
//!   the generation it was read at. While the segment's generation is the same, the
//!   snapshot is answered from the cache: no copy, no validation, no lock, no system call,
//!   no allocation. Only a changed generation costs a copy (and its validation), about once
//!   per daemon update.
//! - **No shared writes.** Counters ([`ReaderStats`](crate::ReaderStats)) are plain integers
//!   owned by each reader or thread slot, never atomics that threads share, so counting
//!   costs no cache-line traffic.
//! - **Clocks through the vDSO.** `CLOCK_REALTIME` and `CLOCK_MONOTONIC_COARSE` are read
//!   with `clock_gettime` in the vDSO, which enters no kernel.
//! - **Cold paths out of line.** The rare work (a full re-read, reopening a file, the
//!   general arithmetic, errors) lives in functions marked cold and never inlined, which
//!   take and return values rather than pointers into the caller's frame, so the caller's
//!   data stays in registers.
//!
//! # Windows written in place
//!
//! A window is 40 bytes. Returned inside a `Result`, it travels through memory: the callee
//! stores it in 8-byte pieces and the caller reloads it in 16-byte pieces. A load that
//! spans several smaller stores still in flight cannot be forwarded from them; it waits
//! until they reach the cache (a store-forwarding stall), and that wait costs more than the
//! arithmetic that produced the window.
//!
//! So the hot paths write the window into the caller's `TimeWindow`, field by field, where
//! it is read; only the public boundary returns it by value, after inlining has made the
//! difference disappear. The same applies to a new payload: it is decoded straight into the
//! reader's cache, never returned as a 64-byte value.
//!
//! # Thread slots moved out of the thread-local
//!
//! A `SharedClockBound` keeps per-thread state in a thread-local. The standard
//! thread-local only lends its value to a closure (`LocalKey::with`), and a closure that
//! holds the whole `now()` computation is too big for the compiler to inline. Out of line,
//! the caller's window escapes to it by address and lands in memory, with the stall above
//! on every call.
//!
//! So the thread-local holds a boxed slot, and the closure only *moves the box out* (one
//! pointer). The computation runs inline in the caller, on a slot it owns outright (no
//! run-time borrow flag, no reference count), and the box is put back afterwards. Slots
//! are aligned and sized to whole cache lines, so two threads' slots never share one.
//!
//! # An arc-swap `Cache` instead of `load()`
//!
//! Under [`Strategy::ArcSwap`](crate::Strategy::ArcSwap) every thread reads one published
//! snapshot. `ArcSwap::load` is fast for what it guarantees, but it takes and gives back a
//! debt slot with two atomic read-modify-write instructions per call. Each thread instead
//! keeps an arc-swap [`Cache`](arc_swap::Cache), which costs one relaxed load of the
//! pointer while nothing changed. The price is memory, not time: each thread's cache keeps
//! the snapshot it saw last alive (see [`strategies`](super::strategies)).
//!
//! The generation check does not wait for the published snapshot either: when that
//! snapshot was read from the value's primary mapping, the check goes through the
//! handle's own copy of that mapping, so it can start before the snapshot is reached.
//!
//! # A short arithmetic path
//!
//! The vDSO's `clock_gettime` fences its counter read, so it waits for every instruction
//! before it to finish: the next call's clock read waits for this call's arithmetic. On a
//! loop of `now()` calls the *latency* of the arithmetic, not its throughput, is what
//! counts.
//!
//! So the usual case takes a short path: a snapshot less than 16 s old and a bound under one
//! second need one multiplication, one division by a constant and no carries across
//! seconds. The sum is arranged so that the rounded part waits for one addition after the
//! clock read, not for a seconds-to-nanoseconds multiplication, and rounding up is done by
//! adding one less than the divisor rather than by testing a remainder. Everything else
//! (old snapshots, huge bounds, a monotonic clock within the causality blur) takes the
//! general, saturating path, with the same results; proptests check both against exact
//! 128-bit arithmetic.
//!
//! # Layout 3: the counter read closed after the arithmetic
//!
//! Layout 3 reads the CPU counter between two fences (`lfence; rdtsc; lfence` on x86-64,
//! `isb; mrs; isb` on aarch64). The first keeps the read after the snapshot's loads; the
//! second keeps whatever comes next from executing before the read. Right after `rdtsc`,
//! that second fence would also hold back the loads of the snapshot's fields and the
//! per-snapshot factors, which do not depend on the counter at all. So the reader opens the
//! read with the first fence and `rdtsc` only, computes the window, and closes it with the
//! second fence before returning: the field loads and per-snapshot work overlap `rdtsc`,
//! and the caller's next instruction still waits for the read. Between the two fences the
//! reader touches only its own copy of the snapshot and its own window, never shared memory.
//!
//! What the counter does must then be short: the bound's growth by drift and by period
//! error is one product of the tick count with a per-snapshot factor, worked out while the
//! counter is being read, so after it come four independent multiplications (one level
//! deep), a few additions and shifts. The window is built in registers before the closing
//! fence: through a pointer it would be stored and loaded back first.
//!
//! # What is not done
//!
//! A thread-local whose address could be held across the call would save the remaining
//! thread-local bookkeeping, but stable Rust offers that only to types without a
//! destructor, which would mean raw pointers and `unsafe` outside the mapping code. The
//! crate stops at what safe code gives. A [`ShmReader`](crate::ShmReader) per thread has no
//! such bookkeeping at all.
