//! Helpers shared by integration tests. Each test binary compiles this module on its own and
//! uses a part of it (`mod common;`).
//!
//! Layout 2 helpers: the wire format written out from the protocol (not taken from the
//! crate), payload bytes, and a daemon restart that truncates the segment as a 3.x daemon
//! does on every start.
//!
//! Layout 3 helpers (prefix `v3_`): a layout 3 snapshot "for now" needs the CPU counter,
//! which the crate reads privately, so the tests read it themselves with
//! `lfence; rdtsc; lfence` (x86-64 only; every user is gated on
//! `#[cfg(target_arch = "x86_64")]`) and convert time to ticks with a counter frequency
//! measured against `CLOCK_MONOTONIC`. The measurement is good to a few parts per million;
//! tests that use it keep their tolerances far wider than that, and assert exact status
//! boundaries only through `compute_bound_at` with a counter value they choose.

#![allow(dead_code)]

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::thread;
use std::time::Duration;

use clockbound_shm::ClockErrorBound;
use clockbound_shm::layout::MAGIC;

// The layout 2 wire format, written out here rather than taken from the crate, so that a
// wrong constant in the crate fails the tests instead of hiding in them.
pub const HEADER_LEN: usize = 16;
pub const SEGSIZE_OFFSET: usize = 8;
pub const VERSION_OFFSET: usize = 12;
pub const GENERATION_OFFSET: usize = 14;
pub const PAYLOAD_OFFSET: usize = 16;
pub const PAYLOAD_LEN: usize = 64;
pub const SEGMENT_LEN: usize = HEADER_LEN + PAYLOAD_LEN;

/// The daemon stand-in behind `daemon_later` (layout 2) and `v3_daemon_later` (layout 3):
/// after `delay` opens the segment with `open`, then for each `(status, hold)` writes with
/// `write` every 5 ms for `hold` (at least once).
pub fn daemon_later_with<W>(
    path: &Path,
    delay: Duration,
    statuses: Vec<(clockbound_shm::ClockStatus, Duration)>,
    open: impl FnOnce(&Path) -> W + Send + 'static,
    write: impl Fn(&mut W, clockbound_shm::ClockStatus) + Send + 'static,
) -> thread::JoinHandle<()> {
    let path = path.to_owned();
    thread::spawn(move || {
        thread::sleep(delay);
        let mut writer = open(&path);
        for (status, hold) in statuses {
            let until = std::time::Instant::now() + hold;
            loop {
                write(&mut writer, status);
                if std::time::Instant::now() >= until {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
        }
    })
}

/// A temporary directory and the path of a segment file `name` (`shm0`, `shm1`) inside it,
/// not created yet.
pub fn temp_segment(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    (dir, path)
}

/// (version, generation) as the segment file holds them, at their offsets 12 and 14.
pub fn header_of(path: &Path) -> (u16, u16) {
    let b = std::fs::read(path).expect("read the segment");
    (
        u16::from_ne_bytes([b[12], b[13]]),
        u16::from_ne_bytes([b[14], b[15]]),
    )
}

/// Reader options that read the segment alone (no VMClock check): what a test of the
/// segment wants, since a test machine has no VMClock device.
pub fn segment_only() -> clockbound_shm::ReaderOptions {
    clockbound_shm::ReaderOptions::new().disruption_check(clockbound_shm::DisruptionCheck::Off)
}

/// The payload bytes of `snapshot` in the layout-2 wire format (native endian, padding 0),
/// encoded here from the public getters rather than with the crate's own encoder, so that a
/// mistake in the crate's encoder cannot hide in the tests that use this.
pub fn payload_bytes(snapshot: &ClockErrorBound) -> [u8; PAYLOAD_LEN] {
    let mut bytes = [0u8; PAYLOAD_LEN];
    let mut put = |offset: usize, field: &[u8]| {
        bytes[offset..offset + field.len()].copy_from_slice(field);
    };
    put(0, &snapshot.as_of().sec().to_ne_bytes());
    put(8, &snapshot.as_of().nsec().to_ne_bytes());
    put(16, &snapshot.void_after().sec().to_ne_bytes());
    put(24, &snapshot.void_after().nsec().to_ne_bytes());
    put(32, &snapshot.bound_nsec().to_ne_bytes());
    put(40, &snapshot.disruption_marker().to_ne_bytes());
    put(48, &snapshot.max_drift_ppb().to_ne_bytes());
    put(52, &snapshot.clock_status().to_wire().to_ne_bytes());
    put(56, &[u8::from(snapshot.clock_disruption_support_enabled())]);
    bytes
}

/// Recreates the layout-2 segment at `path` the way a ClockBound 3.x daemon does on every
/// start (and a 2.x daemon when it finds the segment unusable), then publishes `snapshot`:
///
/// 1. `File::create`: the same file, truncated to 0 bytes. A page of an existing mapping of
///    the file now lies wholly past its end, and touching it raises `SIGBUS`.
/// 2. The 16-byte header with version 0 and generation 0, then the zeroed payload, in
///    separate writes.
/// 3. The version set to 2.
/// 4. One update by the seqlock protocol: generation 1, the payload, generation 2.
///
/// Every step is a `pwrite` at the field's byte offset; nothing is mapped. `pause_after_truncate`
/// stretches step 1's window (a daemon that is descheduled there), so that a test reading
/// in a loop reliably touches the mapping while the file is empty.
pub fn daemon_restart_v2(
    path: &Path,
    snapshot: &ClockErrorBound,
    pause_after_truncate: Duration,
) -> io::Result<()> {
    let file = File::create(path)?;
    if !pause_after_truncate.is_zero() {
        thread::sleep(pause_after_truncate);
    }
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&MAGIC[0].to_ne_bytes());
    header[4..8].copy_from_slice(&MAGIC[1].to_ne_bytes());
    header[SEGSIZE_OFFSET..SEGSIZE_OFFSET + 4].copy_from_slice(&(SEGMENT_LEN as u32).to_ne_bytes());
    // Version and generation stay 0: wiped, never written.
    file.write_all_at(&header, 0)?;
    file.write_all_at(&[0u8; PAYLOAD_LEN], PAYLOAD_OFFSET as u64)?;
    file.write_all_at(&2u16.to_ne_bytes(), VERSION_OFFSET as u64)?;
    file.write_all_at(&1u16.to_ne_bytes(), GENERATION_OFFSET as u64)?;
    file.write_all_at(&payload_bytes(snapshot), PAYLOAD_OFFSET as u64)?;
    file.write_all_at(&2u16.to_ne_bytes(), GENERATION_OFFSET as u64)?;
    Ok(())
}

#[cfg(target_arch = "x86_64")]
#[allow(unused_imports)]
pub use self::v3::*;

#[cfg(target_arch = "x86_64")]
mod v3 {
    use std::sync::Arc;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;
    use std::time::Duration;

    use clockbound_shm::{ClockErrorBoundV3, ClockStatus, ShmWriterV3, Timespec};
    use rustix::time::{ClockId, clock_gettime};

    /// The drift every `v3_snapshot` carries, parts per billion.
    pub const V3_DRIFT_PPB: u32 = 1_000;
    /// The period error every `v3_snapshot` carries: 2^-40 (about 0.9 ppt), as
    /// `period_err_frac = 2^63` over `2^(64 + 39)`.
    pub const V3_PERIOD_ERR_FRAC: u64 = 1 << 63;
    /// See [`V3_PERIOD_ERR_FRAC`].
    pub const V3_PERIOD_ERR_SHIFT: u8 = 39;

    /// The time-stamp counter, read between fences as the crate and the 3.x client do.
    #[inline(always)]
    pub fn v3_read_tsc() -> u64 {
        use core::arch::x86_64::{_mm_lfence, _rdtsc};
        // SAFETY: `lfence` needs SSE2, part of the x86-64 baseline; `rdtsc` exists on every
        // x86-64 CPU and Linux allows it in user mode. Neither touches memory.
        unsafe {
            _mm_lfence();
            let tsc = _rdtsc();
            _mm_lfence();
            tsc
        }
    }

    fn clock(id: ClockId) -> Timespec {
        let t = clock_gettime(id);
        Timespec::new(t.tv_sec, t.tv_nsec)
    }

    /// `CLOCK_REALTIME` now.
    pub fn v3_realtime() -> Timespec {
        clock(ClockId::Realtime)
    }

    /// One (counter, monotonic ns) pair: the monotonic read between two counter reads, the
    /// tightest pair of several attempts, the counter taken at the middle.
    fn paired_reading() -> (u64, i128) {
        let mut best: Option<(u64, u64, i128)> = None;
        for _ in 0..50 {
            let before = v3_read_tsc();
            let mono = clock(ClockId::Monotonic).as_nanos();
            let after = v3_read_tsc();
            let width = after.wrapping_sub(before);
            if best.is_none_or(|(w, _, _)| width < w) {
                best = Some((width, before + width / 2, mono));
            }
        }
        let (_, tsc, mono) = best.expect("at least one attempt");
        (tsc, mono)
    }

    /// The counter's frequency in Hz, measured once per test binary against
    /// `CLOCK_MONOTONIC` over about 50 ms.
    pub fn v3_counter_hz() -> u64 {
        static HZ: OnceLock<u64> = OnceLock::new();
        *HZ.get_or_init(|| {
            let (t0, m0) = paired_reading();
            thread::sleep(Duration::from_millis(50));
            let (t1, m1) = paired_reading();
            let hz = u128::from(t1 - t0) * 1_000_000_000 / (m1 - m0) as u128;
            let hz = u64::try_from(hz).expect("a counter below 2^64 Hz");
            assert!(hz >= 1_000_000, "implausible counter frequency {hz} Hz");
            hz
        })
    }

    /// Counter ticks in `d`, at the measured frequency.
    pub fn v3_ticks(d: Duration) -> u64 {
        u64::try_from(d.as_nanos() * u128::from(v3_counter_hz()) / 1_000_000_000)
            .expect("fits a u64")
    }

    /// Whether the counter has run long enough (since boot, usually) for a snapshot `age`
    /// old: a freshly booted machine cannot have a 1000 s old counter value.
    pub fn v3_can_age(age: Duration) -> bool {
        v3_read_tsc() > v3_ticks(age + Duration::from_secs(1))
    }

    /// A layout 3 snapshot as a 3.x daemon would have written it `age` ago: `as_of_tsc` is
    /// the counter now minus `age` in ticks, `as_of` is `CLOCK_REALTIME` now minus `age`,
    /// `void_after` 1000 s after `as_of`, the period of the measured frequency, drift
    /// [`V3_DRIFT_PPB`], period error 2^-40, disruption support off.
    pub fn v3_snapshot(age: Duration, bound_nsec: i64, status: ClockStatus) -> ClockErrorBoundV3 {
        let hz = v3_counter_hz();
        let tsc = v3_read_tsc();
        let real = v3_realtime();
        let as_of = real.saturating_sub(age);
        let as_of_tsc = tsc.checked_sub(v3_ticks(age)).unwrap_or_else(|| {
            panic!("the counter has not run for {age:?} yet: check `v3_can_age` first")
        });
        v3_builder(as_of_tsc, as_of, hz)
            .bound_nsec(bound_nsec)
            .clock_status(status)
            .build()
    }

    /// The builder behind [`v3_snapshot`]: everything but the bound and the status.
    pub fn v3_builder(
        as_of_tsc: u64,
        as_of: Timespec,
        hz: u64,
    ) -> clockbound_shm::ClockErrorBoundV3Builder {
        ClockErrorBoundV3::builder()
            .as_of_tsc(as_of_tsc)
            .as_of(as_of)
            .void_after(as_of.saturating_add(Duration::from_secs(1000)))
            .with_frequency_hz(hz)
            .period_err_frac(V3_PERIOD_ERR_FRAC)
            .period_err_shift(V3_PERIOD_ERR_SHIFT)
            .max_drift_ppb(V3_DRIFT_PPB)
    }

    /// [`daemon_later`](crate::common::daemon_later) for layout 3.
    pub fn v3_daemon_later(
        path: &std::path::Path,
        delay: Duration,
        statuses: Vec<(ClockStatus, Duration)>,
    ) -> thread::JoinHandle<()> {
        crate::common::daemon_later_with(
            path,
            delay,
            statuses,
            |path| clockbound_shm::ShmWriterV3::new(path).unwrap(),
            |writer, status| writer.write(&v3_snapshot(Duration::ZERO, 1_000, status)),
        )
    }

    /// A 3.x daemon stand-in: republishes a layout 3 snapshot every `period` until dropped.
    ///
    /// Its time is one consistent model (as a real daemon's is between corrections): every
    /// snapshot's `as_of` is the first snapshot's window midpoint carried to the current
    /// counter value, so windows computed from successive snapshots agree on the midpoint
    /// to a nanosecond and only the bound's growth restarts.
    pub struct V3Daemon {
        stop: Arc<AtomicBool>,
        handle: Option<thread::JoinHandle<()>>,
    }

    impl V3Daemon {
        /// Starts publishing through `writer` (first update at once).
        pub fn start(
            mut writer: ShmWriterV3,
            bound_nsec: i64,
            status: ClockStatus,
            period: Duration,
        ) -> V3Daemon {
            let origin = v3_snapshot(Duration::ZERO, bound_nsec, status);
            writer.write(&origin);
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let handle = thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    thread::sleep(period);
                    writer.write(&v3_carried(&origin, v3_read_tsc(), status));
                }
            });
            V3Daemon {
                stop,
                handle: Some(handle),
            }
        }
    }

    /// `origin` carried to counter value `tsc`: same model, fresh `as_of`.
    pub fn v3_carried(
        origin: &ClockErrorBoundV3,
        tsc: u64,
        status: ClockStatus,
    ) -> ClockErrorBoundV3 {
        let mid = origin
            .compute_bound_at(tsc, Duration::MAX)
            .expect("origin is valid")
            .midpoint();
        v3_builder(tsc, mid, v3_counter_hz())
            .bound_nsec(origin.bound_nsec())
            .clock_status(status)
            .build()
    }

    impl Drop for V3Daemon {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(h) = self.handle.take() {
                h.join().expect("daemon thread");
            }
        }
    }
}

/// Helpers of the issue 11 regression tests: VMClock page files, fresh layout 2 snapshots,
/// counting a file's mappings.
mod regress {
    use std::fs::{self, File};
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::time::Duration;

    use clockbound_shm::{ClockErrorBound, ClockErrorBoundBuilder, ClockStatus, Timespec};
    use rustix::time::{ClockId, clock_gettime};

    // ---------------------------------------------------------------------------------------
    // VMClock page files (regular files laid out like the `vmclock` device's page)
    // ---------------------------------------------------------------------------------------

    /// Offset of `seq_count` in a VMClock page.
    pub const VMCLOCK_SEQ_COUNT_OFFSET: u64 = 12;
    /// Offset of `disruption_marker` in a VMClock page.
    pub const VMCLOCK_MARKER_OFFSET: u64 = 16;

    /// A valid 104-byte VMClock page (little endian, kernel ABI offsets): magic "VCLK", size
    /// 104, version 1, `seq_count`, the disruption marker, clock status Synchronized.
    pub fn vmclock_page_bytes(seq_count: u32, marker: u64) -> Vec<u8> {
        let mut page = vec![0u8; 104];
        page[0..4].copy_from_slice(&0x4B4C_4356u32.to_le_bytes());
        page[4..8].copy_from_slice(&104u32.to_le_bytes());
        page[8..10].copy_from_slice(&1u16.to_le_bytes());
        page[12..16].copy_from_slice(&seq_count.to_le_bytes());
        page[16..24].copy_from_slice(&marker.to_le_bytes());
        page[34] = 2; // Synchronized
        page
    }

    /// Writes a valid VMClock page file at `path` (see [`vmclock_page_bytes`]).
    pub fn write_vmclock_page(path: &Path, seq_count: u32, marker: u64) {
        fs::write(path, vmclock_page_bytes(seq_count, marker)).unwrap();
    }

    /// Publishes a new marker in the page file in place, as the hypervisor does: `seq_count`
    /// odd, the marker, `seq_count` even (`seq_count` goes up by 2).
    pub fn vmclock_update_marker(path: &Path, seq_count: &mut u32, marker: u64) {
        let file = File::options().write(true).open(path).unwrap();
        *seq_count += 1;
        file.write_all_at(&seq_count.to_le_bytes(), VMCLOCK_SEQ_COUNT_OFFSET)
            .unwrap();
        file.write_all_at(&marker.to_le_bytes(), VMCLOCK_MARKER_OFFSET)
            .unwrap();
        *seq_count += 1;
        file.write_all_at(&seq_count.to_le_bytes(), VMCLOCK_SEQ_COUNT_OFFSET)
            .unwrap();
    }

    /// Garbles the page file in place (zero magic, a new even `seq_count`): a reader that
    /// still looks at the page gets a malformed-page error instead of a marker.
    pub fn vmclock_garble_page(path: &Path, seq_count: &mut u32) {
        let file = File::options().write(true).open(path).unwrap();
        file.write_all_at(&[0u8; 4], 0).unwrap();
        *seq_count += 2;
        file.write_all_at(&seq_count.to_le_bytes(), VMCLOCK_SEQ_COUNT_OFFSET)
            .unwrap();
    }

    // ---------------------------------------------------------------------------------------
    // Layout 2 snapshots
    // ---------------------------------------------------------------------------------------

    /// `CLOCK_MONOTONIC_COARSE` now, the clock a layout 2 `as_of` is on.
    pub fn monotonic_coarse_now() -> Timespec {
        let t = clock_gettime(ClockId::MonotonicCoarse);
        Timespec::new(t.tv_sec, t.tv_nsec)
    }

    /// A layout 2 snapshot stamped now, as a builder: `as_of` = monotonic coarse now,
    /// `void_after` 1000 s later, bound 1 µs, drift 1000 ppb, Synchronized. Tests set what
    /// they vary.
    pub fn synced_now() -> ClockErrorBoundBuilder {
        let as_of = monotonic_coarse_now();
        ClockErrorBound::builder()
            .as_of(as_of)
            .void_after(as_of.saturating_add(Duration::from_secs(1000)))
            .bound_nsec(1_000)
            .max_drift_ppb(1_000)
            .clock_status(ClockStatus::Synchronized)
    }

    /// [`synced_now`] with the given bound, marker, status and disruption flag.
    pub fn fresh_bound(
        bound_nsec: i64,
        marker: u64,
        status: ClockStatus,
        disruption_support: bool,
    ) -> ClockErrorBound {
        synced_now()
            .bound_nsec(bound_nsec)
            .disruption_marker(marker)
            .clock_status(status)
            .clock_disruption_support_enabled(disruption_support)
            .build()
    }

    /// A daemon stand-in on its own thread: after `delay` creates the segment at `path`
    /// (layout 2), then for each `(status, hold)` writes a fresh snapshot with that status
    /// every 5 ms for `hold`. The last snapshot stays when it stops.
    pub fn daemon_later(
        path: &Path,
        delay: Duration,
        statuses: Vec<(ClockStatus, Duration)>,
    ) -> std::thread::JoinHandle<()> {
        crate::common::daemon_later_with(
            path,
            delay,
            statuses,
            |path| clockbound_shm::ShmWriter::new(path).unwrap(),
            |writer, status| writer.write(&fresh_bound(1_000, 0, status, false)),
        )
    }

    // ---------------------------------------------------------------------------------------
    // Process introspection
    // ---------------------------------------------------------------------------------------

    /// Lines of `/proc/self/maps` that map the file at `path` (one per mapping).
    pub fn mappings_of_file(path: &Path) -> usize {
        let path = path.canonicalize().unwrap();
        let suffix = format!(" {}", path.display());
        fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|line| line.ends_with(&suffix))
            .count()
    }
}
#[allow(unused_imports)]
pub use self::regress::*;
