//! What the VMClock disruption check costs on the hot path: the same `now()` with the check
//! on (the segment sets `clock_disruption_support_enabled`, a VMClock page is read) and off,
//! for `ShmReader` and both `SharedClockBound` strategies. Run with
//! `cargo bench --bench disruption`; `BENCHMARKS.md` has the numbers.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clockbound_shm::{
    ClockErrorBound, ClockStatus, DisruptionCheck, ReaderOptions, SharedClockBound, ShmReader,
    ShmWriter, Strategy, Timespec,
};
use criterion::{Criterion, criterion_group, criterion_main};
use rustix::time::{ClockId, clock_gettime};

/// A VMClock page (little endian): magic "VCLK", size 104, version 1, seq_count 2, marker.
fn vmclock_page(marker: u64) -> Vec<u8> {
    let mut page = vec![0u8; 104];
    page[0..4].copy_from_slice(&0x4B4C_4356u32.to_le_bytes());
    page[4..8].copy_from_slice(&104u32.to_le_bytes());
    page[8..10].copy_from_slice(&1u16.to_le_bytes());
    page[12..16].copy_from_slice(&2u32.to_le_bytes());
    page[16..24].copy_from_slice(&marker.to_le_bytes());
    page
}

/// Uses every part of a window so none of it can be optimised away.
#[inline(always)]
fn window(w: Result<clockbound_shm::TimeWindow, clockbound_shm::ShmError>) -> i64 {
    match w {
        Ok(w) => w.earliest.nsec() ^ w.latest.nsec() ^ w.earliest.sec() ^ w.clock_status as i64,
        Err(_) => i64::MIN,
    }
}

/// A snapshot stamped now: disruption support on, marker 42 (the VMClock page's).
fn fresh_bound() -> ClockErrorBound {
    let mono = clock_gettime(ClockId::MonotonicCoarse);
    let as_of = Timespec::new(mono.tv_sec, mono.tv_nsec);
    ClockErrorBound::builder()
        .as_of(as_of)
        .void_after(as_of.saturating_add(Duration::from_secs(1000)))
        .bound_nsec(5_000)
        .disruption_marker(42)
        .max_drift_ppb(1_000)
        .clock_status(ClockStatus::Synchronized)
        .clock_disruption_support_enabled(true)
        .build()
}

fn setup(dir: &Path) -> (PathBuf, PathBuf, ShmWriter) {
    let segment = dir.join("shm0");
    let vmclock = dir.join("vmclock0");
    std::fs::write(&vmclock, vmclock_page(42)).expect("vmclock page");
    let mut writer = ShmWriter::new(&segment).expect("writer");
    writer.write(&fresh_bound());
    (segment, vmclock, writer)
}

fn disruption_check(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (segment, vmclock, mut writer) = setup(dir.path());
    // A snapshot stamped now before each timed function, as the daemon writes every second:
    // left to age for the whole run, later functions would read a stale snapshot (another
    // status, and past 16 s the arithmetic's general path) and the on/off pairs would not
    // compare like with like.
    let mut refresh = move || writer.write(&fresh_bound());
    let off = ReaderOptions::new().disruption_check(DisruptionCheck::Off);
    let on = ReaderOptions::new().disruption_check(DisruptionCheck::WhenEnabled {
        vmclock_path: vmclock,
    });

    let mut g = c.benchmark_group("disruption_check");
    for (name, options) in [("off", &off), ("on", &on)] {
        let mut reader = ShmReader::open_with(&segment, options).expect("reader");
        // Trusted, not Disrupted.
        assert!(reader.now().expect("now").clock_status.is_trusted());
        refresh();
        g.bench_function(format!("ShmReader::now/{name}"), |b| {
            b.iter(|| black_box(window(black_box(&mut reader).now())))
        });
        for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
            let clock = SharedClockBound::open_with(&segment, &options.clone().strategy(strategy))
                .expect("shared");
            // Trusted, not Disrupted.
            assert!(clock.now().expect("now").clock_status.is_trusted());
            refresh();
            g.bench_function(format!("SharedClockBound::now/{strategy:?}/{name}"), |b| {
                b.iter(|| black_box(window(clock.now())))
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = disruption_check
}
criterion_main!(benches);
