//! Why an accepted copy is never torn, and exactly when that holds.
//!
//! A reader copies the payload while the daemon may be rewriting it. The seqlock's promise
//! is that a copy the reader *accepts* is one whole update: never a mix of words from two
//! updates, never one update's words labelled with another's generation. This page proves
//! that promise for this crate's reader and writer under the Rust (C++) memory model, says
//! what changes with the ClockBound daemon's writer, which lacks a fence, and says what the
//! loom model checks.
//!
//! # Contents
//!
//! - [The orderings](#the-orderings)
//! - [Why relaxed loads and fences, not acquire loads](#why-relaxed-loads-and-fences-not-acquire-loads)
//! - [The proof, with this crate's writer](#the-proof-with-this-crates-writer)
//! - [What else a reader relies on](#what-else-a-reader-relies-on)
//! - [The daemon's writer: the missing fence](#the-daemons-writer-the-missing-fence)
//! - [What holds, with which writer, on which CPU](#what-holds-with-which-writer-on-which-cpu)
//! - [What the loom model checks](#what-the-loom-model-checks)
//!
//! # The orderings
//!
//! The writer, for each update (one writer per segment):
//!
//! ```text
//! W1  generation.store(g_odd, Relaxed)
//! W2  fence(Release)
//! W3  payload[i].store(word_i, Relaxed)        for each 8-byte word
//! W4  generation.store(g_odd + 1, Release)     (0 skipped on wrap-around)
//! ```
//!
//! The reader:
//!
//! ```text
//! R1  g1 = generation.load(Relaxed); fence(Acquire)
//!     g1 == 0 or odd: no copy now
//! R2  word_i = payload[i].load(Relaxed)        for each 8-byte word
//! R3  fence(Acquire)
//! R4  g2 = generation.load(Relaxed)            accept only if g2 == g1
//! ```
//!
//! Every access to shared memory is an atomic access of the field's natural size, so a
//! concurrent write is never a data race in the language's sense, and the words are only
//! decoded (and validated) after the copy is accepted: no `bool` or enum is ever formed from
//! bytes that might be half written.
//!
//! # Why relaxed loads and fences, not acquire loads
//!
//! The reader maps the segment read-only. The standard library documents atomic operations
//! on read-only memory as undefined behaviour in general (an atomic load may be implemented
//! with an instruction that writes, such as a compare-exchange, and fault), with one
//! exception: relaxed loads small enough for the target's plain load instructions; see
//! [the `std::sync::atomic` docs](std::sync::atomic#atomic-accesses-to-read-only-memory).
//! An acquire load is outside that exception, even where it compiles to a plain load.
//!
//! So every load from a mapping is relaxed, and the ordering comes from acquire fences: a
//! relaxed load followed by `fence(Acquire)` orders everything after the fence after the
//! load, which is all the proof below uses of "acquire load". On x86-64 the acquire fence
//! costs no instruction; on aarch64 it is a `dmb ishld`.
//!
//! # The proof, with this crate's writer
//!
//! Suppose the reader accepts: `g1 == g2`, even and not 0. An even, non-zero value is
//! stored only by a W4 (every W1 stores an odd value, and a wipe stores 0), so R1 read the
//! W4 of some update V. The claim is that every word R2 read was stored by V.
//!
//! **No word is older than V's.** V's W4 is a release store and R1, which read it, is
//! followed by an acquire fence, so W4 *synchronises with* that fence. V's W3 stores come
//! before its W4 in the writer's program order, so they *happen before* R2, and by
//! coherence each R2 load reads V's store to that word or a later one.
//!
//! **No word is newer than V's.** Suppose some R2 load read a word stored by a later update
//! U. That store is sequenced after U's release fence W2, and the R2 load is sequenced
//! before the reader's acquire fence R3, so by fence-to-fence synchronisation W2
//! *synchronises with* R3. U's W1 is sequenced before its W2, so it happens before R4, and
//! R4 reads W1's value or a later one in the generation's modification order. Every value
//! stored from U's W1 on differs from `g1`: `g1` was stored by V's W4, before U's W1, and
//! the counter only comes back to the same value after 32 767 more updates, or, across a
//! wipe (which restarts the count at 0), after `g1 / 2` of them. So `g2 != g1`, and the
//! reader did not accept. Contradiction. (A wipe by this crate's writer counts as an update
//! here: it stores generation 0, then a release fence, then the zeroed payload, and the same
//! argument applies with 0 in place of W1's value.)
//!
//! So every word of an accepted copy comes from V, the update whose generation it carries:
//! the copy is whole. The second half is where the release fence W2 is needed; the first
//! half needs only the release store W4.
//!
//! The two ABA cases (a full wrap, or a wipe followed by `g1 / 2` updates, all between one
//! reader's R1 and R4) cannot happen to a copy in flight: the daemon writes at most about
//! ten times a second and wipes only when it restarts, and a copy takes nanoseconds. A
//! reader *process* does live that long, and its cached "generation I last copied" can be
//! fooled the same way; that is handled separately, see
//! [`hazards`](super::hazards#generation-wrap-and-aba-after-a-wipe).
//!
//! The first half also means that a reader that sees a new generation at R1 reads that
//! update or a newer one: a reader that notices a change reads the change.
//!
//! # What else a reader relies on
//!
//! - **The version field** is read outside R1..R4. That is sound because it only changes
//!   in a wipe (generation 0 is stored first, then a release fence, like W1 and W2) and
//!   when the writer declares the layout again, before its next W1. A reader that accepts
//!   a copy saw no wipe between R1 and R4.
//! - **Across processes.** The memory model is defined for one program. The daemon is
//!   another process, compiled from other source, sharing the pages. The argument carries
//!   over because both sides compile their atomics and fences to the hardware's
//!   instructions for them, and the hardware's memory model is what governs the shared
//!   pages; on Linux, `MAP_SHARED` pages are ordinary coherent memory.
//! - **The mapping stays mapped and backed.** A page of the file that disappears (the file
//!   truncated under the mapping) faults instead of reading; see
//!   [`hazards`](super::hazards#truncating-restarts) for how this crate survives that. When
//!   its guard replaces such a page with zeros, the copy in flight reads generation 0 at R4
//!   (or at R1) and is rejected like any other copy across a wipe.
//!
//! # The daemon's writer: the missing fence
//!
//! The released ClockBound writers (2.0.3 and 3.0.0-rc.0) do this:
//!
//! ```text
//! W1  generation.store(g_odd, Release)
//!     (no fence)
//! W3  the payload written with plain, non-atomic stores
//! W4  generation.store(g_odd + 1, Release)
//! ```
//!
//! A release store orders what came *before* it, not what comes after. Nothing orders the
//! payload stores after W1, and the second half of the proof fails: R2 can read a word of
//! update U while R4 still reads the generation from before U's W1. Both generation loads then agree,
//! and a copy that mixes U's words with older ones is accepted. Whether that can happen
//! depends on the CPU.
//!
//! **x86-64 (total store order).** Stores become visible to other cores in the order the
//! machine code issues them, and loads are not reordered with older loads. If R2 sees a
//! word of U, then U's W1 (issued earlier) is already visible, and R4, which the reader's
//! fences keep after R2, sees W1 or later: the copy is rejected. So on x86-64 the daemon's
//! writer is safe, provided its machine code issues the odd store before the payload
//! stores. The language does not promise that (a compiler may move later plain stores above
//! a release store). Compilers do not do it in practice, but the released daemons' machine
//! code has not been inspected for it.
//!
//! **aarch64 (AWS Graviton and others).** The odd generation is a store-release (`stlrh`),
//! and ordinary stores that follow it may become visible to another core *before* it. A
//! reader on another core can then see new payload words while both of its generation
//! loads return the old even value. A correct reader cannot exclude this: the information
//! it would need (that an update has begun) is exactly what the missing fence fails to
//! publish in time.
//!
//! **What this crate does about it.** When the generation has changed since the last
//! accepted copy, the copy is not taken on its own word: the reader takes a second copy
//! right after it and accepts only if both copies are identical and the generation has not
//! moved. A mixed copy is produced while the writer's payload stores are visible and its
//! odd generation is not yet; for both copies to be mixed the same way, that state has to
//! last through the gap between them, so the confirmation turns a narrow race into a much
//! narrower one. It makes a mixed copy unlikely, **not impossible**. It costs one extra copy
//! per daemon update, not per call: while the generation is unchanged, readers answer from
//! their cached copy and never copy at all. One exception: an open (which has no earlier
//! snapshot to fall back on) under a writer that never pauses long enough for two copies
//! settles for one accepted copy once its first round of back-off is spent. A daemon writes
//! at most ten times a second, so this only happens under synthetic writers.
//!
//! The fix that makes it impossible is on the writer's side: a release fence after the odd
//! generation store, as [`ShmWriter`](crate::ShmWriter) has.
//!
//! # What holds, with which writer, on which CPU
//!
//! | writer | x86-64 | aarch64 |
//! |---|---|---|
//! | this crate's [`ShmWriter`](crate::ShmWriter) (release fence at W2) | an accepted copy is never torn (proved above; model-checked) | never torn (proved above; model-checked) |
//! | ClockBound 2.0.3 and 3.0.0-rc.0 daemons (no fence) | never torn, by total store order, given the store order of the daemon's machine code (see above) | a torn copy is **unlikely** (confirmed by a second copy), **not excluded** |
//!
//! In every row, a copy is validated field by field before it becomes a snapshot, so
//! whatever a torn copy might contain, it can never cause undefined behaviour or a panic.
//! What a torn copy can do, in the one cell where it is not excluded, is carry wrong
//! values that pass validation: each 8-byte word comes from one update or another, so for
//! example an `as_of` could take its seconds from one update and its nanoseconds from the
//! next.
//!
//! This crate's layout 3 reader and the VMClock page reader use the same protocol and the
//! same orderings, and the same table applies. (The VMClock page is written by the
//! hypervisor; its writer's orderings are outside this crate's view.)
//!
//! # What the loom model checks
//!
//! `tests/loom.rs` runs the crate's own writer and reader code (the functions that
//! publish and copy, not a copy of them) under [loom](https://docs.rs/loom), which explores
//! every interleaving of the threads up to a preemption bound, and every value each relaxed
//! load may return under the C++ memory model. Each update writes all its payload words
//! equal to its number `n`, so a copy is whole exactly when its words are all equal to each
//! other and to half its generation. The models:
//!
//! - one read racing one update: an accepted copy is whole;
//! - two reads racing one update: a later copy is never older than an earlier one;
//! - one read racing two back-to-back updates: words of the two are never mixed, and a copy
//!   never carries the other update's generation;
//! - after the writer stops, a read succeeds and sees the last update;
//! - the same writer **without the release fence W2** must fail: loom has to find an
//!   accepted torn copy. This shows that the model can tell a broken writer from a good
//!   one, and it is the daemon's ordering;
//! - against that fence-less writer, the **confirming reader** (the second copy) must
//!   fail too: loom finds a torn copy that both copies agree on. Under the memory model
//!   the confirmation excludes nothing; what it buys is timing (the inconsistent state has
//!   to last across both copies), which loom does not model. The model pins that down so
//!   that no one mistakes "unlikely" for "excluded";
//! - the confirming reader against this crate's writer accepts only whole copies.
//!
//! What loom does not show: it models the language's memory model, not a particular CPU, so
//! it cannot show that x86-64 makes the daemon's writer safe; and it explores orderings, not
//! timing, so it cannot measure how unlikely the confirming copy makes a torn copy on
//! aarch64. Those two claims rest on the arguments above. Run the model with
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom`.
