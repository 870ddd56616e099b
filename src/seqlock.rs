//! The seqlock: how one writer publishes a payload and any number of readers, in any process,
//! take consistent copies of it without locks.
//!
//! # The protocol
//!
//! Writer, for each update (single writer per segment):
//!
//! ```text
//! W1  g = generation (odd already if a previous writer died mid-update, else g + 1)
//!     generation.store(g_odd, Relaxed)
//! W2  fence(Release)
//! W3  payload[i].store(word_i, Relaxed)            for i in 0..8
//! W4  generation.store(g_odd + 1 (0 skipped -> 2), Release)
//! ```
//!
//! Reader:
//!
//! ```text
//! R1  g1 = generation.load(Acquire)      0 / odd: nothing consistent to read now
//! R2  word_i = payload[i].load(Relaxed)  for i in 0..8
//! R3  fence(Acquire)
//! R4  g2 = generation.load(Relaxed)      accept the words only if g2 == g1
//! ```
//!
//! # Why an accepted copy is never torn
//!
//! Suppose the reader accepts (g1 == g2, even) but some word it read at R2 was stored at W3
//! by an update U whose W4 it did not observe at R1. (If R1 had read U's W4 or a later
//! generation, every word of U happens-before R2 through the W4 release / R1 acquire pair, so
//! R2 reads U's words or newer ones; "newer" is the case being considered, for the next
//! update.) The R2 load read a store that is sequenced after U's release fence W2, and R2 is
//! sequenced before the acquire fence R3, so W2 *synchronizes-with* R3 (fence-to-fence
//! synchronization, [C++ atomics.fences]/Rust `fence` docs). Therefore U's odd store W1
//! happens-before R4, and R4 reads W1's value or a later one in the generation's
//! modification order. Every value from W1 on differs from g1: g1 was stored before W1,
//! and the counter only comes back to g1 after 32767 more updates, or, across a wipe (which
//! restarts the count at 0), after g1/2 of them (the ABA cases: a reader mid-copy cannot
//! live through either in practice, as the daemon writes at most ten times a second and
//! wipes only when it restarts). So g2 != g1, contradicting acceptance. Long-lived caches,
//! which do live that long, are guarded separately: a reader that sees the wipe forgets its
//! generation, and `now()` re-reads any snapshot older than the recheck interval.
//!
//! The version field is read outside R1..R4. That is sound because it only changes in a
//! wipe (after generation 0 is stored and a release fence, like W1/W2) and when the writer
//! declares the layout again (before its next W1): a reader that accepts a copy has seen no
//! wipe between R1 and R4.
//!
//! Conversely R1 (acquire) reading the final W4 (release) of an update makes that update's
//! words visible, so a reader that sees a generation change reads that update or newer.
//!
//! Each field is read with an atomic load of its natural size, so a concurrent write is never
//! a data race in the Rust model, and no Rust value with validity invariants (`bool`, enums)
//! is materialised from shared bytes: words are decoded and checked by
//! [`layout::decode_payload`].
//!
//! The real daemon is another process compiled from other source; it writes the payload with
//! plain stores between the same generation stores. Across processes the guarantee rests on
//! the hardware memory model, where these loads and fences compile to what the C/C++ reader
//! of the same protocol would use.
//!
//! `tests/loom.rs` runs this exact code under loom and shows both that torn copies are never
//! accepted and that removing W2 lets loom find one.

use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use crate::bound::{ClockErrorBound, STALE_AFTER, TimeWindow};
use crate::clock;
use crate::error::{NotInitialized, ShmError};
use crate::layout::{self, LAYOUT_VERSION, PAYLOAD_WORDS, PayloadWords};
use crate::sync::{AtomicU16, AtomicU32, AtomicU64, Backoff, Ordering, fence};
use crate::timespec::Timespec;

/// The segment seen as atomic cells at the protocol's offsets. Shared memory is only ever
/// touched through these atomics: no `&[u8]`, no plain struct read.
#[repr(C, align(8))]
pub(crate) struct SegmentCells {
    pub(crate) magic: [AtomicU32; 2],
    pub(crate) segsize: AtomicU32,
    pub(crate) version: AtomicU16,
    pub(crate) generation: AtomicU16,
    pub(crate) payload: [AtomicU64; PAYLOAD_WORDS],
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<SegmentCells>() == layout::SEGMENT_LEN);
    assert!(align_of::<SegmentCells>() == 8);
    assert!(offset_of!(SegmentCells, segsize) == layout::SEGSIZE_OFFSET);
    assert!(offset_of!(SegmentCells, version) == layout::VERSION_OFFSET);
    assert!(offset_of!(SegmentCells, generation) == layout::GENERATION_OFFSET);
    assert!(offset_of!(SegmentCells, payload) == layout::PAYLOAD_OFFSET);
};

impl SegmentCells {
    /// R1: the generation, with acquire ordering.
    #[inline(always)]
    pub(crate) fn load_generation(&self) -> u16 {
        self.generation.load(Ordering::Acquire)
    }

    /// R2..R4: copies the payload and returns it only if the generation is still
    /// `generation`, the value R1 returned.
    #[inline]
    pub(crate) fn copy_payload_if_unchanged(&self, generation: u16) -> Option<PayloadWords> {
        let mut words = [0u64; PAYLOAD_WORDS];
        for (word, cell) in words.iter_mut().zip(&self.payload) {
            *word = cell.load(Ordering::Relaxed);
        }
        fence(Ordering::Acquire);
        (self.generation.load(Ordering::Relaxed) == generation).then_some(words)
    }

    /// The header fields that stay put while a writer runs.
    pub(crate) fn header(&self) -> ([u32; 2], u32, u16) {
        let magic = [
            self.magic[0].load(Ordering::Relaxed),
            self.magic[1].load(Ordering::Relaxed),
        ];
        (
            magic,
            self.segsize.load(Ordering::Relaxed),
            self.version.load(Ordering::Acquire),
        )
    }

    /// W1..W4: publishes one update. Only one writer may call this on a segment at a time
    /// (the `&mut` of `ShmWriter::write` ensures that within a process).
    #[cfg(any(feature = "writer", loom))]
    pub(crate) fn publish(&self, words: &PayloadWords) {
        let odd = self.begin_update();
        fence(Ordering::Release);
        self.store_payload(words);
        self.end_update(odd);
    }

    /// The writer with the release fence W2 left out. It exists so the loom model can show
    /// that the fence is needed (the model must find a torn copy with this variant).
    #[cfg(loom)]
    pub(crate) fn publish_without_release_fence(&self, words: &PayloadWords) {
        let odd = self.begin_update();
        self.store_payload(words);
        self.end_update(odd);
    }

    /// W1 alone, as a writer that dies right after it leaves the segment.
    #[cfg(feature = "writer")]
    pub(crate) fn begin_interrupted_update(&self) {
        self.begin_update();
    }

    #[cfg(any(feature = "writer", loom))]
    fn begin_update(&self) -> u16 {
        let current = self.generation.load(Ordering::Relaxed);
        // Odd already means a writer died mid-update: stay odd, do not make it even.
        let odd = if current % 2 == 0 {
            current.wrapping_add(1)
        } else {
            current
        };
        self.generation.store(odd, Ordering::Relaxed);
        odd
    }

    #[cfg(any(feature = "writer", loom))]
    fn store_payload(&self, words: &PayloadWords) {
        for (cell, word) in self.payload.iter().zip(words) {
            cell.store(*word, Ordering::Relaxed);
        }
    }

    #[cfg(any(feature = "writer", loom))]
    fn end_update(&self, odd: u16) {
        let even = match odd.wrapping_add(1) {
            0 => 2, // 0 means "never written": skip it on wrap-around
            even => even,
        };
        self.generation.store(even, Ordering::Release);
    }

    /// Wipes the segment the way the daemon does on a cold start: generation 0 and version
    /// 0 first (so readers stop trusting the payload before it changes), then the header
    /// and a zero payload. The caller sets the version again when it is ready.
    #[cfg(any(feature = "writer", loom))]
    pub(crate) fn wipe(&self, segsize: u32) {
        self.generation.store(0, Ordering::Relaxed);
        self.version.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        self.magic[0].store(layout::MAGIC[0], Ordering::Relaxed);
        self.magic[1].store(layout::MAGIC[1], Ordering::Relaxed);
        self.segsize.store(segsize, Ordering::Relaxed);
        self.store_payload(&[0; PAYLOAD_WORDS]);
    }

    /// Declares the payload layout: what a writer does once it is set up.
    #[cfg(any(feature = "writer", loom))]
    pub(crate) fn set_version(&self, version: u16) {
        self.version.store(version, Ordering::Release);
    }
}

/// Counters of what a reader did, for monitoring (see [`ShmReader::stats`]). Each reader
/// (each thread's cache, for a [`SharedClockBound`] under `ThreadLocal`) counts for itself,
/// in plain integers it owns: counting costs the hot path no shared write.
///
/// [`ShmReader::stats`]: crate::ShmReader::stats
/// [`SharedClockBound`]: crate::SharedClockBound
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReaderStats {
    /// Consistent payload copies taken from the segment (including the first, at open).
    pub full_reads: u64,
    /// Calls answered from the cached snapshot: generation unchanged, or a passing state
    /// (update in progress, wiped, contended) answered from the last good snapshot.
    pub cache_answers: u64,
    /// Back-off waits between read attempts (torn copies, or odd generations while
    /// opening).
    pub retries: u64,
    /// Times an odd generation (update in progress, or a writer that died mid-update) was
    /// seen.
    pub odd_generations: u64,
    /// Full re-reads forced because the cached snapshot's `as_of` was older than the
    /// recheck interval although the generation looked unchanged (the guard against a
    /// generation that wrapped all the way round).
    pub rechecks: u64,
    /// Times the reader followed the path to a new file (the daemon recreated the segment).
    pub reopens: u64,
}

/// How old a cached snapshot's `as_of` may get before `now()` re-reads the payload in full
/// even though the generation looks unchanged. The daemon writes every second or faster,
/// so an `as_of` older than this means either a stalled daemon (the re-read is cheap and
/// rare) or a generation that wrapped round to the cached value (the re-read heals it).
pub const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A reader's last good snapshot and the generation it was read at: the state every reader
/// ([`ShmReader`](crate::ShmReader), each thread of a
/// [`SharedClockBound`](crate::SharedClockBound)) keeps, and the fast paths of the protocol.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotCache {
    generation: u16,
    bound: ClockErrorBound,
    /// `CLOCK_MONOTONIC_COARSE` instant from which [`now`](Self::now) re-reads in full.
    recheck_at: Timespec,
    recheck_interval_ns: u64,
    /// Set by a re-read that left the snapshot older than [`STALE_AFTER`].
    looks_dead: bool,
    stats: ReaderStats,
}

/// What stopped a fresh read.
enum ReadFailure {
    /// A state that passes (wiped, never written, update in progress, contention): answer
    /// from the last snapshot if there is one.
    NotReady(NotInitialized),
    /// A real error: reported even when an older snapshot exists.
    Error(ShmError),
}

impl SnapshotCache {
    /// Takes a first snapshot, retrying (bounded) while an update is in progress.
    ///
    /// # Errors
    /// [`ShmError::SegmentNotInitialized`] when no consistent snapshot could be read,
    /// [`ShmError::SegmentVersionNotSupported`] / [`ShmError::SegmentMalformed`] for bad
    /// content.
    pub(crate) fn load(cells: &SegmentCells, path: &Arc<Path>) -> Result<SnapshotCache, ShmError> {
        let mut stats = ReaderStats::default();
        let mut bound = ClockErrorBound::PLACEHOLDER;
        match read_fresh(
            cells,
            cells.load_generation(),
            path,
            true,
            &mut stats,
            &mut bound,
        ) {
            Ok(generation) => Ok(SnapshotCache::with_stats(generation, bound, stats)),
            Err(ReadFailure::NotReady(reason)) => Err(not_initialized(path, reason)),
            Err(ReadFailure::Error(e)) => Err(e),
        }
    }

    fn with_stats(generation: u16, bound: ClockErrorBound, stats: ReaderStats) -> SnapshotCache {
        let recheck_interval_ns = DEFAULT_RECHECK_INTERVAL.as_nanos() as u64;
        let recheck_at = bound.as_of().saturating_add_nanos(recheck_interval_ns);
        SnapshotCache {
            generation,
            bound,
            recheck_at,
            recheck_interval_ns,
            looks_dead: false,
            stats,
        }
    }

    /// The current snapshot: the cached one while the generation is unchanged (one atomic
    /// load and a compare), a fresh copy otherwise.
    ///
    /// # Errors
    /// As [`load`](Self::load), except that passing states answer from the cache.
    #[inline]
    pub(crate) fn snapshot(
        &mut self,
        cells: &SegmentCells,
        path: &Arc<Path>,
    ) -> Result<&ClockErrorBound, ShmError> {
        let generation = cells.load_generation();
        if generation == self.generation {
            self.stats.cache_answers = self.stats.cache_answers.wrapping_add(1);
        } else {
            self.refresh(cells, generation, path)?;
        }
        Ok(&self.bound)
    }

    /// The window for the current instant, into `out`: [`snapshot`](Self::snapshot), the two clock
    /// reads, and, once the snapshot's `as_of` is older than the recheck interval, a full
    /// re-read first (one comparison on the hot path; `now()` reads the clock anyway).
    ///
    /// When the re-read leaves the snapshot older than [`STALE_AFTER`], the cache notes it
    /// for its owner ([`take_looks_dead`](Self::take_looks_dead)): the cue to check whether
    /// the daemon recreated the file. (A flag, not part of the return value, so that the
    /// hot path stays small; the window is written into `out`, see
    /// [`ClockErrorBound::write_window_at`].)
    ///
    /// # Errors
    /// As [`snapshot`](Self::snapshot) and [`ClockErrorBound::compute_bound_at`].
    #[inline(always)]
    pub(crate) fn now_into(
        &mut self,
        cells: &SegmentCells,
        path: &Arc<Path>,
        out: &mut TimeWindow,
    ) -> Result<(), ShmError> {
        self.snapshot(cells, path)?;
        let mut real = clock::realtime();
        let mut mono = clock::monotonic_coarse();
        if mono >= self.recheck_at {
            self.looks_dead = self.recheck(cells, path, mono)?;
            // The re-read may have installed a snapshot written after those readings:
            // read the clocks again, after it, as on every path.
            real = clock::realtime();
            mono = clock::monotonic_coarse();
        }
        self.bound.write_window_at(real, mono, out)
    }

    /// Makes the next [`snapshot`](Self::snapshot) re-read, whatever the generation (0 is
    /// never a written generation), keeping the snapshot until then.
    pub(crate) fn forget_generation(&mut self) {
        self.generation = 0;
    }

    /// Whether the last [`now_into`](Self::now_into) found the snapshot dead after a re-read (and
    /// forget it).
    #[inline(always)]
    pub(crate) fn take_looks_dead(&mut self) -> bool {
        std::mem::take(&mut self.looks_dead)
    }

    /// Full re-read whatever the generation says; returns whether the snapshot is still
    /// older than [`STALE_AFTER`] afterwards.
    #[cold]
    #[inline(never)]
    pub(crate) fn recheck(
        &mut self,
        cells: &SegmentCells,
        path: &Arc<Path>,
        mono: Timespec,
    ) -> Result<bool, ShmError> {
        self.stats.rechecks += 1;
        let generation = cells.load_generation();
        match read_fresh(
            cells,
            generation,
            path,
            false,
            &mut self.stats,
            &mut self.bound,
        ) {
            Ok(generation) => self.replaced(generation),
            Err(ReadFailure::NotReady(reason)) => self.note_not_ready(reason),
            Err(ReadFailure::Error(e)) => return Err(e),
        }
        // At most one re-read per interval, even when the daemon stopped writing.
        self.recheck_at = self
            .bound
            .as_of()
            .max(mono)
            .saturating_add_nanos(self.recheck_interval_ns);
        Ok(mono
            >= self
                .bound
                .as_of()
                .saturating_add_nanos(STALE_AFTER.as_nanos() as u64))
    }

    /// Sets how old `as_of` may get before [`now`](Self::now) re-reads in full.
    pub(crate) fn set_recheck_interval(&mut self, interval: Duration) {
        self.recheck_interval_ns = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
        self.recheck_at = self
            .bound
            .as_of()
            .saturating_add_nanos(self.recheck_interval_ns);
    }

    /// The `CLOCK_MONOTONIC_COARSE` instant from which [`now`](Self::now) re-reads in full.
    pub(crate) fn recheck_at(&self) -> Timespec {
        self.recheck_at
    }

    pub(crate) fn recheck_interval(&self) -> Duration {
        Duration::from_nanos(self.recheck_interval_ns)
    }

    /// The cached snapshot, without looking at the segment.
    pub(crate) fn cached(&self) -> &ClockErrorBound {
        &self.bound
    }

    /// The generation the cached snapshot was read at.
    pub(crate) fn generation(&self) -> u16 {
        self.generation
    }

    pub(crate) fn stats(&self) -> ReaderStats {
        self.stats
    }

    pub(crate) fn stats_mut(&mut self) -> &mut ReaderStats {
        &mut self.stats
    }

    /// A fresh snapshot was read into `self.bound` at `generation`.
    fn replaced(&mut self, generation: u16) {
        self.generation = generation;
        self.recheck_at = self
            .bound
            .as_of()
            .saturating_add_nanos(self.recheck_interval_ns);
    }

    /// The last good snapshot stands. But if the segment was wiped, forget its generation:
    /// the writer's next update may land on the very generation we cached (a wipe restarts
    /// the count at 0), and must not look like "unchanged". Generation 0 is never a
    /// written one, so the fast path keeps answering from the cache until that update.
    fn note_not_ready(&mut self, reason: NotInitialized) {
        if matches!(reason, NotInitialized::Wiped | NotInitialized::NeverWritten) {
            self.generation = 0;
        }
    }

    #[inline(never)]
    fn refresh(
        &mut self,
        cells: &SegmentCells,
        generation: u16,
        path: &Arc<Path>,
    ) -> Result<(), ShmError> {
        match read_fresh(
            cells,
            generation,
            path,
            false,
            &mut self.stats,
            &mut self.bound,
        ) {
            Ok(generation) => {
                self.replaced(generation);
                Ok(())
            }
            // Wiped, odd, zero or contended: the last good snapshot stands, and ages.
            Err(ReadFailure::NotReady(reason)) => {
                self.note_not_ready(reason);
                self.stats.cache_answers += 1;
                Ok(())
            }
            Err(ReadFailure::Error(e)) => Err(e),
        }
    }
}

fn not_initialized(path: &Arc<Path>, reason: NotInitialized) -> ShmError {
    ShmError::SegmentNotInitialized {
        path: Arc::clone(path),
        reason,
    }
}

/// One seqlock read: from the generation R1 returned to a validated snapshot.
///
/// `patient` (no snapshot to fall back on) retries while the generation is odd; otherwise an
/// odd generation answers at once, as the released reader does. Torn copies (the generation
/// moved) are retried with a bounded back-off either way.
fn read_fresh(
    cells: &SegmentCells,
    mut generation: u16,
    path: &Arc<Path>,
    patient: bool,
    stats: &mut ReaderStats,
    out: &mut ClockErrorBound,
) -> Result<u16, ReadFailure> {
    let backoff = Backoff::new();
    loop {
        if generation == 0 {
            return Err(ReadFailure::NotReady(NotInitialized::NeverWritten));
        }
        if generation % 2 == 1 {
            stats.odd_generations += 1;
            if !patient || !backoff.wait() {
                return Err(ReadFailure::NotReady(NotInitialized::UpdateInProgress {
                    generation,
                }));
            }
        } else {
            match cells.version.load(Ordering::Acquire) {
                LAYOUT_VERSION => {}
                0 => return Err(ReadFailure::NotReady(NotInitialized::Wiped)),
                found => {
                    return Err(ReadFailure::Error(ShmError::SegmentVersionNotSupported {
                        path: Arc::clone(path),
                        found,
                        expected: LAYOUT_VERSION,
                    }));
                }
            }
            if let Some(words) = cells.copy_payload_if_unchanged(generation) {
                stats.full_reads += 1;
                // Decoded straight into its destination, and only once every field is
                // valid: a failed decode leaves `out` as it was. (Returned by value inside a
                // `Result`, the 64 bytes went through memory in 8-byte stores and 16-byte
                // loads, and the store-forwarding stall cost a third of a changed read.)
                return match layout::decode_payload(&words) {
                    Ok(bound) => {
                        *out = bound;
                        Ok(generation)
                    }
                    Err(problem) => {
                        Err(ReadFailure::Error(ShmError::malformed(Some(path), problem)))
                    }
                };
            }
            if !backoff.wait() {
                return Err(ReadFailure::NotReady(NotInitialized::Contended));
            }
        }
        stats.retries += 1;
        generation = cells.load_generation();
    }
}

/// Hooks for the loom model in `tests/loom.rs`; not part of the API.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_hooks {
    use super::*;

    /// A segment in ordinary (loom-tracked) memory, set up as a writer would.
    pub struct Segment(SegmentCells);

    impl Segment {
        /// A wiped segment with the layout version set, never written.
        pub fn new() -> Segment {
            let cells = SegmentCells {
                magic: [AtomicU32::new(0), AtomicU32::new(0)],
                segsize: AtomicU32::new(0),
                version: AtomicU16::new(0),
                generation: AtomicU16::new(0),
                payload: std::array::from_fn(|_| AtomicU64::new(0)),
            };
            cells.wipe(layout::SEGMENT_LEN as u32);
            cells.set_version(LAYOUT_VERSION);
            Segment(cells)
        }

        /// Publishes `words` with the real writer protocol.
        pub fn publish(&self, words: &[u64; 8]) {
            self.0.publish(words);
        }

        /// Publishes `words` without the release fence (the broken variant).
        pub fn publish_without_release_fence(&self, words: &[u64; 8]) {
            self.0.publish_without_release_fence(words);
        }

        /// One read attempt (R1..R4): `Some` only for a copy the protocol accepts.
        pub fn try_read(&self) -> Option<(u16, [u64; 8])> {
            let generation = self.0.load_generation();
            if generation == 0 || generation % 2 == 1 {
                return None;
            }
            self.0
                .copy_payload_if_unchanged(generation)
                .map(|w| (generation, w))
        }
    }

    impl Default for Segment {
        fn default() -> Segment {
            Segment::new()
        }
    }
}
