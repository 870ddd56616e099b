//! Zero heap allocations per call on every hot path, counted by a global allocator that
//! tallies each thread's allocations separately (so the test harness's own threads do not
//! pollute the count).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use clockbound_shm::{ClockErrorBound, SharedClockBound, ShmReader, ShmWriter, Strategy};

struct CountingAllocator;

thread_local! {
    // `const` and without a destructor: reading it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so this
// allocator upholds exactly the guarantees `System` does; the counter is a thread-local
// `Cell` that neither allocates nor re-enters the allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged; the caller's contract for `alloc` holds.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged; `ptr`/`layout` came from this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during(mut f: impl FnMut()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn bound(tick: i64) -> ClockErrorBound {
    common::synced_now().bound_nsec(1_000 + tick).build()
}

const CALLS: usize = 10_000;

#[test]
fn the_counter_sees_allocations() {
    // Guard against a counter that reads zero whatever happens.
    assert!(allocations_during(|| drop(std::hint::black_box(Box::new(7)))) >= 1);
}

#[test]
fn shm_reader_hot_path_does_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(&bound(0));
    let mut reader = ShmReader::open(&path).unwrap();
    reader.now().unwrap();

    let unchanged = allocations_during(|| {
        for _ in 0..CALLS {
            std::hint::black_box(reader.snapshot().unwrap().now().unwrap());
        }
    });
    assert_eq!(unchanged, 0, "snapshot + now with the generation unchanged");

    let b = bound(1);
    let changed = allocations_during(|| {
        for _ in 0..CALLS {
            writer.write(&b);
            std::hint::black_box(reader.snapshot().unwrap().now().unwrap());
        }
    });
    assert_eq!(
        changed, 0,
        "writer.write + snapshot + now with the generation changing on every call"
    );
}

#[test]
fn shared_clock_bound_hot_path_does_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(&bound(0));
    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        let clock = SharedClockBound::open_with(
            &path,
            &clockbound_shm::ReaderOptions::new().strategy(strategy),
        )
        .unwrap();
        clock.now().unwrap(); // first call of this thread creates its state (ThreadLocal)
        let clone = clock.clone();
        let unchanged = allocations_during(|| {
            for _ in 0..CALLS {
                std::hint::black_box(clock.now().unwrap());
                std::hint::black_box(clone.snapshot().unwrap());
            }
        });
        assert_eq!(
            unchanged, 0,
            "{strategy:?}: now/snapshot with the generation unchanged"
        );

        // A changed generation: ThreadLocal re-reads into the thread's cache (no allocation);
        // ArcSwap publishes one new `Arc` per update, never per call.
        let b = bound(1);
        let updates = 100;
        let changed = allocations_during(|| {
            for _ in 0..updates {
                writer.write(&b);
                for _ in 0..CALLS / updates {
                    std::hint::black_box(clock.now().unwrap());
                }
            }
        });
        let allowed = match strategy {
            Strategy::ThreadLocal => 0,
            Strategy::ArcSwap => updates as u64,
        };
        assert!(
            changed <= allowed,
            "{strategy:?}: {changed} allocations for {updates} updates"
        );
    }
}
