//! Model-checks the seqlock with loom: every interleaving (up to a preemption bound) of a
//! writer publishing updates and readers taking copies, and every value each relaxed load
//! may return under the C++/Rust memory model.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom` (a separate
//! `CARGO_TARGET_DIR` keeps the loom build from evicting the normal one).
//!
//! The code under test is the crate's own `SegmentCells::publish`,
//! `copy_payload_if_unchanged` and `copy_payload_confirmed`, reached through the hidden
//! `loom_hooks::Segment`. Update
//! number `n` writes all eight payload words equal to `n`, and the segment starts at
//! generation 0, so update `n` ends at generation `2 n`: an accepted copy is consistent
//! exactly when its eight words are equal to each other and to half its generation.
//!
//! The state space is dominated by the eight relaxed payload loads: each may return any
//! store the reader has not been made to see past, so every racing update multiplies the
//! executions by up to 2^8. Each model therefore races one reader against one or two
//! updates with the preemption bound that keeps it to a few seconds; readers share nothing
//! they write, so more of them add executions but no new behaviour.
//!
//! Against the released daemons' writer (no release fence after the odd generation) loom
//! finds an accepted mixed copy for the plain reader *and* for the confirming reader: the
//! two models that must fail, and do. The confirmation is a timing defence, which a model
//! of orderings does not see.

#![cfg(loom)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clockbound_shm::loom_hooks::Segment;
use loom::sync::Arc;
use loom::thread;

/// Which writer the model runs.
#[derive(Copy, Clone)]
enum Writer {
    /// `SegmentCells::publish`: the real protocol.
    Correct,
    /// The same without the release fence after the odd generation store: the orderings of
    /// the released ClockBound daemons' writers (2.0.3 and 3.0.0-rc.0), which store the odd
    /// generation, then the payload with plain stores (modelled as relaxed atomic stores,
    /// the weakest stores that are not a data race), then the even generation with a release
    /// store.
    ///
    /// The daemons store the odd generation with a *release* store; the hook stores it
    /// relaxed. For the property checked here the two are the same: a release store only
    /// adds a synchronises-with edge for a load that reads its value, and a reader that
    /// reads an odd generation, at any of its generation loads, accepts nothing. In an
    /// execution where a copy is accepted no load reads the odd value, so the release
    /// ordering would add no edge, and the execution is one of the released writer's too.
    /// (The other way round, the relaxed model allows every execution the release one does.)
    WithoutReleaseFence,
}

/// Which read the reader thread makes.
#[derive(Copy, Clone)]
enum Reader {
    /// `copy_payload_if_unchanged` once: R1..R4.
    Plain,
    /// `copy_payload_confirmed`: R1, then R2..R4 twice, accepting only two equal copies;
    /// what a reader does on a generation it has not seen before.
    Confirmed,
}

impl Reader {
    fn read(self, segment: &Segment) -> Option<(u16, [u64; 8])> {
        match self {
            Reader::Plain => segment.try_read(),
            Reader::Confirmed => segment.try_read_confirmed(),
        }
    }
}

impl Writer {
    fn publish(self, segment: &Segment, words: &[u64; 8]) {
        match self {
            Writer::Correct => segment.publish(words),
            Writer::WithoutReleaseFence => segment.publish_without_release_fence(words),
        }
    }
}

/// What one model explores.
struct Model {
    writer: Writer,
    reader: Reader,
    /// Updates the writer thread publishes after update 1 (done before it starts).
    updates: u64,
    /// Reader threads, each making `reads` attempts. Readers write nothing shared, so one
    /// reader covers what several would; more only multiply the state space.
    readers: usize,
    reads: usize,
    /// Preemption bound, unless `LOOM_MAX_PREEMPTIONS` overrides it.
    preemptions: usize,
}

/// The outcome of checking a model to the end: executions explored and the time it took.
struct Explored {
    executions: usize,
    elapsed: Duration,
}

/// Checks that an accepted copy is one whole update, and returns its update number.
fn check_copy(generation: u16, words: [u64; 8]) -> u64 {
    let n = words[0];
    assert!(
        words.iter().all(|&w| w == n),
        "torn copy accepted at generation {generation}: {words:?}"
    );
    assert_eq!(
        u64::from(generation),
        2 * n,
        "copy {words:?} accepted with a generation that is not its own"
    );
    n
}

fn explore(model: Model) -> Explored {
    // The closure runs once per execution; count them from outside loom's view.
    let executions = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&executions);
    let mut builder = loom::model::Builder::new();
    let Model {
        writer,
        reader,
        updates,
        readers,
        reads,
        preemptions,
    } = model;
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        let segment = Arc::new(Segment::new());
        // Update 1 before any other thread exists: readers always have something to read.
        segment.publish(&[1; 8]);

        let writer_thread = {
            let segment = Arc::clone(&segment);
            thread::spawn(move || {
                for n in 2..2 + updates {
                    writer.publish(&segment, &[n; 8]);
                }
            })
        };
        let reader_threads: Vec<_> = (0..readers)
            .map(|_| {
                let segment = Arc::clone(&segment);
                thread::spawn(move || {
                    let mut last = 0;
                    for _ in 0..reads {
                        if let Some((generation, words)) = reader.read(&segment) {
                            let n = check_copy(generation, words);
                            // Copies never go back to an older update within a thread.
                            assert!(n >= last, "update {n} accepted after update {last}");
                            last = n;
                        }
                    }
                })
            })
            .collect();
        writer_thread.join().unwrap();
        for reader in reader_threads {
            reader.join().unwrap();
        }
        // Once the writer is done, a read succeeds and sees the last update.
        let (generation, words) = segment.try_read().expect("quiescent segment is readable");
        assert_eq!(check_copy(generation, words), 1 + updates);
    });
    Explored {
        executions: executions.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    }
}

fn report(name: &str, explored: &Explored) {
    println!(
        "{name}: {} executions in {:.2?}",
        explored.executions, explored.elapsed
    );
}

/// One read racing one update, with up to three preemptions: every point at which the
/// writer can be interrupted or the reader can see part of the update.
#[test]
fn a_read_racing_an_update_is_whole_or_rejected() {
    let explored = explore(Model {
        writer: Writer::Correct,
        reader: Reader::Plain,
        updates: 1,
        readers: 1,
        reads: 1,
        preemptions: 3,
    });
    report("1 read vs 1 update", &explored);
}

/// Two reads in a row racing one update: a later copy is never older than an earlier one.
#[test]
fn successive_reads_never_go_back() {
    let explored = explore(Model {
        writer: Writer::Correct,
        reader: Reader::Plain,
        updates: 1,
        readers: 1,
        reads: 2,
        preemptions: 2,
    });
    report("2 reads vs 1 update", &explored);
}

/// One read racing two back-to-back updates: words of updates 2 and 3 are never mixed, and
/// a copy is never accepted with the other update's generation.
#[test]
fn a_read_racing_two_updates_is_whole_or_rejected() {
    let explored = explore(Model {
        writer: Writer::Correct,
        reader: Reader::Plain,
        updates: 2,
        readers: 1,
        reads: 1,
        preemptions: 1,
    });
    report("1 read vs 2 updates", &explored);
}

/// Explores `model`, which must fail with an accepted mixed copy, and returns the failure
/// message (the copy loom found). Fails if loom finds none, or fails for another reason.
fn expect_mixed_copy(name: &str, model: Model) -> String {
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| explore(model)));
    match outcome {
        Ok(explored) => panic!(
            "{name}: loom explored {} executions and found no accepted mixed copy",
            explored.executions
        ),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("<non-string panic>")
                .to_owned();
            // The failure must be the mixed copy, not some other panic in the model.
            assert!(
                message.contains("torn copy accepted") || message.contains("not its own"),
                "{name}: loom failed the model for another reason: {message}"
            );
            println!(
                "{name}: mixed copy found in {:.2?}: {message}",
                start.elapsed()
            );
            message
        }
    }
}

/// The model can fail: with the release fence W2 removed (the released daemons' writer, see
/// [`Writer::WithoutReleaseFence`]), a reader may see a word of the new update and still
/// read the old generation at R4, and loom must find that execution. This shows that the
/// model tells a broken writer from a good one, and that the released daemons' orderings
/// allow the plain seqlock reader to accept a mixed copy.
#[test]
fn missing_release_fence_is_caught() {
    expect_mixed_copy(
        "released writer vs plain reader",
        Model {
            writer: Writer::WithoutReleaseFence,
            reader: Reader::Plain,
            // Exactly the model `a_read_racing_an_update_is_whole_or_rejected` passes.
            updates: 1,
            readers: 1,
            reads: 1,
            preemptions: 3,
        },
    );
}

/// The confirming reader (two copies, both accepted and equal) against the released
/// daemons' writer: the second copy does **not** exclude a mixed copy under the memory
/// model. Nothing forces a store that R2 did not see in the first copy to be seen in the
/// second, so both copies can be the same mix of the two updates, and loom finds such an
/// execution. What the confirmation buys is timing (the mix must persist between the two
/// copies), which a model of orderings cannot measure: it makes a mixed copy unlikely on
/// real hardware, not impossible.
#[test]
fn missing_release_fence_defeats_the_confirming_copy_in_the_model() {
    let message = expect_mixed_copy(
        "released writer vs confirming reader",
        Model {
            writer: Writer::WithoutReleaseFence,
            reader: Reader::Confirmed,
            updates: 1,
            readers: 1,
            reads: 1,
            preemptions: 3,
        },
    );
    assert!(
        message.contains("torn copy accepted at generation 2"),
        "{message}"
    );
}

/// The confirming reader with this crate's writer: like the plain reader, an accepted copy
/// is one whole update (the confirmation must not break what the seqlock proves).
#[test]
fn a_confirmed_read_racing_an_update_is_whole_or_rejected() {
    let explored = explore(Model {
        writer: Writer::Correct,
        reader: Reader::Confirmed,
        updates: 1,
        readers: 1,
        reads: 1,
        preemptions: 2,
    });
    report("1 confirmed read vs 1 update", &explored);
}
