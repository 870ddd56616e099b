//! The seqlock primitive: one writer publishes a payload of `u64` words, any number of
//! readers, in any process, take consistent copies of it without locks.
//!
//! ```text
//! writer, per update                          reader
//! W1 generation.store(odd, Relaxed)           R1 g1 = generation.load(Relaxed); fence(Acquire)
//! W2 fence(Release)                           R2 word_i = payload[i].load(Relaxed)
//! W3 payload[i].store(word_i, Relaxed)        R3 fence(Acquire)
//! W4 generation.store(even, Release)          R4 g2 = generation.load(Relaxed); accept if g2 == g1
//! ```
//!
//! Why an accepted copy is never torn, what holds against the daemon's own writer (which
//! has no W2), and why loads are relaxed-plus-fence on read-only mappings is argued in
//! [`docs::memory_model`](crate::docs::memory_model); `tests/loom.rs` checks this code.
//! Generation 0 means "never written" and odd means "update in progress"; the policy built
//! on top (what to answer meanwhile) is the snapshot cache's.

use crate::sync::{AtomicU16, AtomicU32, AtomicU64, Ordering, fence};

/// A payload as atomic words: `[AtomicU64; N]`, copied and stored word by word.
pub trait AtomicWords {
    /// The plain words, `[u64; N]`.
    type Words: Copy;
    /// Every word, each a relaxed atomic load.
    fn load_relaxed(&self) -> Self::Words;
    /// Every word, each a relaxed atomic store.
    fn store_relaxed(&self, words: &Self::Words);
    /// Whether two copies are equal, word by word (inline, not a `memcmp` call).
    fn same_words(a: &Self::Words, b: &Self::Words) -> bool;
}

impl<const N: usize> AtomicWords for [AtomicU64; N] {
    type Words = [u64; N];

    #[inline(always)]
    fn load_relaxed(&self) -> [u64; N] {
        let mut words = [0u64; N];
        for (word, cell) in words.iter_mut().zip(self) {
            *word = cell.load(Ordering::Relaxed);
        }
        words
    }

    #[inline(always)]
    fn store_relaxed(&self, words: &[u64; N]) {
        for (cell, word) in self.iter().zip(words) {
            cell.store(*word, Ordering::Relaxed);
        }
    }

    #[inline(always)]
    fn same_words(a: &[u64; N], b: &[u64; N]) -> bool {
        a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
    }
}

/// A segment seen as atomic cells at the protocol's offsets: the 16-byte header, then the
/// payload `P`. Shared memory is only ever touched through these atomics: no `&[u8]`, no
/// plain struct read.
#[repr(C, align(8))]
pub(crate) struct SegmentCells<P> {
    pub(crate) magic: [AtomicU32; 2],
    pub(crate) segsize: AtomicU32,
    pub(crate) version: AtomicU16,
    pub(crate) generation: AtomicU16,
    pub(crate) payload: P,
}

impl<P: AtomicWords> SegmentCells<P> {
    /// R1: the generation; what the payload loads after it see is ordered by the fence.
    #[inline(always)]
    pub(crate) fn load_generation(&self) -> u16 {
        let generation = self.generation.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        generation
    }

    /// R2..R4: copies the payload and returns it only if the generation is still
    /// `generation`, the value R1 returned.
    #[inline]
    pub(crate) fn copy_payload_if_unchanged(&self, generation: u16) -> Option<P::Words> {
        let words = self.payload.load_relaxed();
        fence(Ordering::Acquire);
        (self.generation.load(Ordering::Relaxed) == generation).then_some(words)
    }

    /// R2..R4 twice, for a generation the reader has not seen before: both copies must be
    /// accepted and equal. Against a writer with W2 the second copy changes nothing;
    /// against the daemon's writers, which lack W2, a payload store that became visible
    /// before the odd generation shows up as a difference between the two copies, unless
    /// it lands before the first (see the memory-model docs for what this does and does
    /// not rule out). One extra copy per daemon update, never per cached call.
    #[inline]
    pub(crate) fn copy_payload_confirmed(&self, generation: u16) -> Option<P::Words> {
        let first = self.copy_payload_if_unchanged(generation)?;
        let second = self.copy_payload_if_unchanged(generation)?;
        P::same_words(&first, &second).then_some(first)
    }

    /// The layout version (relaxed load and acquire fence, like R1).
    #[inline]
    pub(crate) fn load_version(&self) -> u16 {
        let version = self.version.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        version
    }

    /// The header fields that stay put while a writer runs: magic, segsize, version.
    pub(crate) fn header(&self) -> ([u32; 2], u32, u16) {
        let magic = [
            self.magic[0].load(Ordering::Relaxed),
            self.magic[1].load(Ordering::Relaxed),
        ];
        (
            magic,
            self.segsize.load(Ordering::Relaxed),
            self.load_version(),
        )
    }

    /// W1..W4: publishes one update. Only one writer may call this on a segment at a time
    /// (the `&mut` of `ShmWriter::write` ensures that within a process).
    #[cfg(any(feature = "writer", loom))]
    pub(crate) fn publish(&self, words: &P::Words) {
        let odd = self.begin_update();
        fence(Ordering::Release);
        self.payload.store_relaxed(words);
        self.end_update(odd);
    }

    /// The writer with the release fence W2 left out, as the daemon's writers are. It
    /// exists for the loom model: it must find a torn copy the plain protocol accepts.
    #[cfg(loom)]
    pub(crate) fn publish_without_release_fence(&self, words: &P::Words) {
        let odd = self.begin_update();
        self.payload.store_relaxed(words);
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
    pub(crate) fn wipe(&self, magic: [u32; 2], segsize: u32, zero: &P::Words) {
        self.generation.store(0, Ordering::Relaxed);
        self.version.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        self.magic[0].store(magic[0], Ordering::Relaxed);
        self.magic[1].store(magic[1], Ordering::Relaxed);
        self.segsize.store(segsize, Ordering::Relaxed);
        self.payload.store_relaxed(zero);
    }

    /// Declares the payload layout: what a writer does once it is set up.
    #[cfg(any(feature = "writer", loom))]
    pub(crate) fn set_version(&self, version: u16) {
        self.version.store(version, Ordering::Release);
    }
}

/// Hooks for the loom model in `tests/loom.rs`; not part of the API.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_hooks {
    use super::*;

    /// A segment in ordinary (loom-tracked) memory, set up as a writer would.
    pub struct Segment(SegmentCells<[AtomicU64; 8]>);

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
            cells.wipe([0x414D_5A4E, 0x4342_0200], 80, &[0; 8]);
            cells.set_version(2);
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
        /// One read attempt with the confirming second copy (what a reader does on a
        /// generation it has not seen before).
        pub fn try_read_confirmed(&self) -> Option<(u16, [u64; 8])> {
            let generation = self.0.load_generation();
            if generation == 0 || generation % 2 == 1 {
                return None;
            }
            self.0
                .copy_payload_confirmed(generation)
                .map(|w| (generation, w))
        }
    }

    impl Default for Segment {
        fn default() -> Segment {
            Segment::new()
        }
    }
}
