//! [`SharedClockBound`]: one handle to the segment for any number of threads.
//!
//! Both strategies keep the hot path free of locks and of writes to memory another thread
//! reads: a thread that calls [`now`](SharedClockBound::now) while the segment is unchanged
//! only *reads* shared memory (the segment's generation, and for `ArcSwap` the published
//! snapshot), so threads do not slow each other down.
//!
//! - [`Strategy::ThreadLocal`] gives each thread its own [`SnapshotCache`] (the state an
//!   [`ShmReader`](crate::ShmReader) keeps), found in a thread-local list keyed by the
//!   value's identity. Cost: a thread-local access and an id compare over a plain reader.
//! - [`Strategy::ArcSwap`] publishes one snapshot, tagged with its generation, in an
//!   [`ArcSwap`]. Readers compare the tag with the segment's generation and answer from the
//!   published snapshot while it matches (or while an update is in progress). On a change,
//!   callers refresh it one at a time under a mutex: the first reads the segment and
//!   publishes, the ones queued behind it find the new snapshot already published. The
//!   mutex is only taken when the generation has moved (once per daemon update), and held
//!   for one 64-byte copy.
//!
//! Why `ArcSwap` refreshes under a lock rather than letting a caller that finds the lock
//! taken read the segment for itself: such a private answer can be newer than the published
//! snapshot, and the same thread's next call, landing mid-update, would answer from the
//! published one, going back in time. `tests/stress.rs` catches exactly that. Serialising
//! refreshes keeps every answer at or behind the published snapshot, so each thread's
//! answers only move forward, as a [`ShmReader`](crate::ShmReader)'s do.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use crate::bound::{ClockErrorBound, TimeWindow};
use crate::error::ShmError;
use crate::reader::MappedSegment;
use crate::seqlock::SnapshotCache;

/// How a [`SharedClockBound`] keeps snapshots for its threads.
///
/// Both give the same answers, freshness and errors; they differ in cost. `ThreadLocal` is
/// the default: it is the cheaper of the two per call in `BENCHMARKS.md` (it is a plain
/// reader behind a thread-local lookup, while `ArcSwap` adds a guard acquisition on every
/// call) and it scales the same. `ArcSwap` suits programs with very many short-lived threads
/// (each new thread under `ThreadLocal` pays one fresh segment read and keeps ~128 bytes
/// until it exits) and callers that want to hold the shared snapshot itself
/// ([`SharedClockBound::snapshot_arc`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// One snapshot cache per thread, created on the thread's first call, dropped when the
    /// thread exits.
    #[default]
    ThreadLocal,
    /// One snapshot for all threads, published through an [`ArcSwap`].
    ArcSwap,
}

/// A snapshot as published by the [`Strategy::ArcSwap`] strategy: the payload and the
/// generation it was read at. Dereferences to the [`ClockErrorBound`].
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct PublishedSnapshot {
    generation: u16,
    bound: ClockErrorBound,
}

impl PublishedSnapshot {
    /// The segment generation this snapshot was read at.
    #[must_use]
    pub fn generation(&self) -> u16 {
        self.generation
    }

    /// The snapshot.
    #[must_use]
    pub fn bound(&self) -> &ClockErrorBound {
        &self.bound
    }
}

impl Deref for PublishedSnapshot {
    type Target = ClockErrorBound;

    fn deref(&self) -> &ClockErrorBound {
        &self.bound
    }
}

impl From<&SnapshotCache> for PublishedSnapshot {
    fn from(cache: &SnapshotCache) -> PublishedSnapshot {
        PublishedSnapshot {
            generation: cache.generation(),
            bound: *cache.cached(),
        }
    }
}

/// Error-bounded time for many threads: `Clone + Send + Sync`, one mapping of the segment
/// shared by every clone, no lock on the hot path.
///
/// Clones are cheap (an `Arc`) and share everything; open once and hand clones to workers.
/// Answers, freshness and errors are those of [`ShmReader`](crate::ShmReader): each call
/// sees the last update completed before it started (or the previous one while an update is
/// in progress), and passing states answer from the last good snapshot.
///
/// ```no_run
/// use clockbound_shm::{SharedClockBound, Strategy};
///
/// let clock = SharedClockBound::with_strategy("/var/run/clockbound/shm0", Strategy::ArcSwap)?;
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| clock.now().map(|w| w.latest));
///     }
/// });
/// # Ok::<(), clockbound_shm::ShmError>(())
/// ```
///
/// It is `Send + Sync`:
///
/// ```
/// fn assert_send_sync<T: Send + Sync + Clone>() {}
/// assert_send_sync::<clockbound_shm::SharedClockBound>();
/// ```
///
/// so any number of threads can borrow one value:
///
/// ```no_run
/// # let path = "/var/run/clockbound/shm0";
/// let clock = clockbound_shm::SharedClockBound::open(path)?;
/// std::thread::scope(|s| {
///     s.spawn(|| clock.now());
///     s.spawn(|| clock.now());
/// });
/// # Ok::<(), clockbound_shm::ShmError>(())
/// ```
///
/// which one [`ShmReader`](crate::ShmReader) cannot offer: each thread would need it by
/// `&mut`, and only one can have that.
///
/// ```compile_fail,E0499
/// # let path = "/var/run/clockbound/shm0";
/// let mut reader = clockbound_shm::ShmReader::open(path)?;
/// std::thread::scope(|s| {
///     s.spawn(|| reader.now());
///     s.spawn(|| reader.now()); // error: `reader` is already borrowed mutably
/// });
/// # Ok::<(), clockbound_shm::ShmError>(())
/// ```
#[derive(Clone)]
pub struct SharedClockBound {
    inner: Arc<Inner>,
}

struct Inner {
    /// Distinguishes this value's per-thread caches from other values' in the same thread.
    id: u64,
    segment: MappedSegment,
    mode: Mode,
}

enum Mode {
    ThreadLocal {
        /// The snapshot taken at open: the seed of a new thread's cache when the segment
        /// cannot be read at that moment.
        seed: SnapshotCache,
    },
    ArcSwap {
        published: ArcSwap<PublishedSnapshot>,
        /// The refresher's cache: the snapshot `published` holds, with the state to refresh
        /// it. Only its holder stores into `published`, so published snapshots only move
        /// forward.
        refresher: Mutex<SnapshotCache>,
    },
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A thread's cache for one `SharedClockBound` value. Padded to its own cache lines so no
/// two threads' caches share one.
struct ThreadEntry {
    id: u64,
    owner: Weak<Inner>,
    cache: SnapshotCache,
}

thread_local! {
    static THREAD_CACHES: RefCell<Vec<CachePadded<ThreadEntry>>> = const { RefCell::new(Vec::new()) };
}

impl SharedClockBound {
    /// Opens the segment at `path` with the default [`Strategy`] (`ThreadLocal`).
    ///
    /// # Errors
    /// As [`ShmReader::open`](crate::ShmReader::open).
    pub fn open(path: impl AsRef<Path>) -> Result<SharedClockBound, ShmError> {
        SharedClockBound::with_strategy(path, Strategy::default())
    }

    /// Opens the segment at `path` with the given strategy.
    ///
    /// # Errors
    /// As [`ShmReader::open`](crate::ShmReader::open).
    pub fn with_strategy(
        path: impl AsRef<Path>,
        strategy: Strategy,
    ) -> Result<SharedClockBound, ShmError> {
        let (segment, cache) = MappedSegment::open(path.as_ref())?;
        let mode = match strategy {
            Strategy::ThreadLocal => Mode::ThreadLocal { seed: cache },
            Strategy::ArcSwap => Mode::ArcSwap {
                published: ArcSwap::from_pointee(PublishedSnapshot::from(&cache)),
                refresher: Mutex::new(cache),
            },
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Ok(SharedClockBound {
            inner: Arc::new(Inner { id, segment, mode }),
        })
    }

    /// The window for the current instant.
    ///
    /// # Errors
    /// As [`ShmReader::snapshot`](crate::ShmReader::snapshot) and
    /// [`ClockErrorBound::now`].
    #[inline]
    pub fn now(&self) -> Result<TimeWindow, ShmError> {
        self.with_snapshot(ClockErrorBound::now)?
    }

    /// A copy of the current snapshot.
    ///
    /// # Errors
    /// As [`ShmReader::snapshot`](crate::ShmReader::snapshot).
    pub fn snapshot(&self) -> Result<ClockErrorBound, ShmError> {
        self.with_snapshot(|bound| *bound)
    }

    /// The current snapshot as a shared `Arc`, to hold without copying. Under
    /// [`Strategy::ArcSwap`] this is the published snapshot itself; under `ThreadLocal` it
    /// is a new `Arc` holding a copy.
    ///
    /// # Errors
    /// As [`ShmReader::snapshot`](crate::ShmReader::snapshot).
    pub fn snapshot_arc(&self) -> Result<Arc<PublishedSnapshot>, ShmError> {
        let inner = &*self.inner;
        match &inner.mode {
            Mode::ThreadLocal { .. } => self.with_thread_cache(|cache| {
                cache.snapshot(inner.segment.cells(), inner.segment.path())?;
                Ok(Arc::new(PublishedSnapshot::from(&*cache)))
            }),
            Mode::ArcSwap {
                published,
                refresher,
            } => {
                let current = published.load_full();
                let generation = inner.segment.cells().load_generation();
                if current.generation == generation || generation % 2 == 1 {
                    return Ok(current);
                }
                inner.refresh_published(published, refresher)
            }
        }
    }

    /// The strategy this value was opened with.
    #[must_use]
    pub fn strategy(&self) -> Strategy {
        match self.inner.mode {
            Mode::ThreadLocal { .. } => Strategy::ThreadLocal,
            Mode::ArcSwap { .. } => Strategy::ArcSwap,
        }
    }

    /// The segment file.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.inner.segment.path()
    }

    /// Runs `f` on the current snapshot, wherever this strategy keeps it.
    #[inline]
    fn with_snapshot<R>(&self, f: impl FnOnce(&ClockErrorBound) -> R) -> Result<R, ShmError> {
        let inner = &*self.inner;
        match &inner.mode {
            Mode::ThreadLocal { .. } => self.with_thread_cache(|cache| {
                cache
                    .snapshot(inner.segment.cells(), inner.segment.path())
                    .map(f)
            }),
            Mode::ArcSwap {
                published,
                refresher,
            } => {
                let current = published.load();
                let generation = inner.segment.cells().load_generation();
                // Unchanged, or mid-update (where every reader answers from its last
                // snapshot anyway): no need to touch the refresher lock. A wipe (generation
                // 0) does go through the refresher once, which publishes the snapshot under
                // generation 0 so that the next write is seen as a change even if it lands
                // on the generation published before the wipe.
                if current.generation == generation || generation % 2 == 1 {
                    return Ok(f(&current.bound));
                }
                drop(current);
                inner
                    .refresh_published(published, refresher)
                    .map(|fresh| f(&fresh.bound))
            }
        }
    }

    /// Runs `f` on this thread's cache for this value, creating it on first use.
    #[inline]
    fn with_thread_cache<R>(&self, f: impl FnOnce(&mut SnapshotCache) -> R) -> R {
        let mut f = Some(f);
        let found = THREAD_CACHES.try_with(|caches| {
            // Never already borrowed: nothing called while it is borrowed re-enters here.
            let mut caches = caches.borrow_mut();
            let index = match caches.iter().position(|entry| entry.id == self.inner.id) {
                Some(index) => index,
                None => self.add_thread_cache(&mut caches),
            };
            (f.take().expect("called once"))(&mut caches[index].cache)
        });
        match found {
            Ok(result) => result,
            // The thread is exiting and its thread-locals are gone: use a throwaway cache.
            Err(_) => (f.take().expect("not called when thread-locals are gone"))(
                &mut self.inner.new_cache(),
            ),
        }
    }

    #[cold]
    fn add_thread_cache(&self, caches: &mut Vec<CachePadded<ThreadEntry>>) -> usize {
        // Forget caches of values that were dropped since this thread last added one.
        caches.retain(|entry| entry.owner.strong_count() > 0);
        caches.push(CachePadded::new(ThreadEntry {
            id: self.inner.id,
            owner: Arc::downgrade(&self.inner),
            cache: self.inner.new_cache(),
        }));
        caches.len() - 1
    }
}

impl Inner {
    /// A cache for a new thread: a fresh read if the segment is readable now, else the
    /// snapshot taken at open (which the next call refreshes).
    fn new_cache(&self) -> SnapshotCache {
        SnapshotCache::load(self.segment.cells(), self.segment.path()).unwrap_or_else(|_| {
            match &self.mode {
                Mode::ThreadLocal { seed } => seed.clone(),
                Mode::ArcSwap { published, .. } => SnapshotCache::from_published(&published.load()),
            }
        })
    }

    /// The segment moved on from the published snapshot: refresh it, one caller at a time,
    /// and return what is published afterwards. A caller queued behind another refresher
    /// usually finds the update already published, and its refresh is one atomic load.
    #[cold]
    #[inline(never)]
    fn refresh_published(
        &self,
        published: &ArcSwap<PublishedSnapshot>,
        refresher: &Mutex<SnapshotCache>,
    ) -> Result<Arc<PublishedSnapshot>, ShmError> {
        let mut cache = refresher.lock();
        cache.snapshot(self.segment.cells(), self.segment.path())?;
        let current = published.load_full();
        if current.generation == cache.generation() && current.bound == *cache.cached() {
            return Ok(current);
        }
        let fresh = Arc::new(PublishedSnapshot::from(&*cache));
        published.store(Arc::clone(&fresh));
        Ok(fresh)
    }
}

impl SnapshotCache {
    fn from_published(p: &PublishedSnapshot) -> SnapshotCache {
        SnapshotCache::from_parts(p.generation, p.bound)
    }
}

impl fmt::Debug for SharedClockBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedClockBound")
            .field("path", &self.path())
            .field("strategy", &self.strategy())
            .finish_non_exhaustive()
    }
}
