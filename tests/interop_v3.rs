//! Interoperability on layout 3 with the ClockBound 3.x client, `clock-bound` 3.0.0-rc.0
//! (dev-dependency, feature `test-utils`): our reader reads the bytes of its
//! `ClockErrorBoundV3` field by field; its `Client` reads a `shm1` that our writer wrote and
//! its windows agree with ours; its VMClock writer's page drives the disruption check of
//! both. Layout 2 compatibility with the released 2.0.3 client is `tests/interop.rs`.
//!
//! The 3.x crate's writer is not public, so its snapshots reach a file as the bytes of its
//! `repr(C)` type, after a 16-byte header written here. Its client reads the counter with
//! `lfence; rdtsc; lfence` on x86-64 and this crate's tests read it the same way
//! (`tests/common`), so the file is built for x86-64 only.

#![cfg(target_arch = "x86_64")]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clock_bound::nix::sys::time::TimeSpec;
use clock_bound::test_utils::{
    ClockErrorBound as TheirSnapshot, ClockErrorBoundGeneric, ClockErrorBoundLayoutVersion,
    VMClockClockStatus, VMClockShmBody, VMClockShmWrite, VMClockShmWriter,
};
use clockbound_shm::{
    ClockErrorBoundV3, ClockStatus, DisruptionCheck, FREE_RUNNING_GRACE, ReaderOptions,
    SharedClockBound, ShmReaderV3, ShmWriterV3, Strategy, TimeWindow, Timespec,
};
use common::*;

const ALL_STATUSES: [ClockStatus; 4] = [
    ClockStatus::Unknown,
    ClockStatus::Synchronized,
    ClockStatus::FreeRunning,
    ClockStatus::Disrupted,
];

fn their_status(status: ClockStatus) -> clock_bound::ClockStatus {
    match status {
        ClockStatus::Unknown => clock_bound::ClockStatus::Unknown,
        ClockStatus::Synchronized => clock_bound::ClockStatus::Synchronized,
        ClockStatus::FreeRunning => clock_bound::ClockStatus::FreeRunning,
        ClockStatus::Disrupted => clock_bound::ClockStatus::Disrupted,
    }
}

fn ours(t: TimeSpec) -> Timespec {
    Timespec::new(t.tv_sec(), t.tv_nsec())
}

fn their_window(w: &clock_bound::TimeWindow) -> TimeWindow {
    TimeWindow {
        earliest: ours(w.earliest),
        latest: ours(w.latest),
        clock_status: match w.clock_status {
            clock_bound::ClockStatus::Unknown => ClockStatus::Unknown,
            clock_bound::ClockStatus::Synchronized => ClockStatus::Synchronized,
            clock_bound::ClockStatus::FreeRunning => ClockStatus::FreeRunning,
            clock_bound::ClockStatus::Disrupted => ClockStatus::Disrupted,
        },
    }
}

/// The fields of one snapshot, as plain values the 3.x crate's builder takes.
#[derive(Copy, Clone, Debug)]
struct Fields {
    as_of_tsc: u64,
    as_of: (i64, i64),
    void_after: (i64, i64),
    bound_nsec: i64,
    /// Seconds per tick.
    period: f64,
    /// Relative, in [0, 1).
    period_err: f64,
    disruption_marker: u64,
    max_drift_ppb: u32,
    status: ClockStatus,
    disruption_support: bool,
}

impl Fields {
    /// Their snapshot, built by their builder.
    fn theirs(&self) -> TheirSnapshot {
        ClockErrorBoundGeneric::builder()
            .as_of_tsc(self.as_of_tsc)
            .as_of(TimeSpec::new(self.as_of.0, self.as_of.1))
            .void_after(TimeSpec::new(self.void_after.0, self.void_after.1))
            .bound_nsec(self.bound_nsec)
            .period(self.period)
            .period_err(self.period_err)
            .disruption_marker(self.disruption_marker)
            .max_drift_ppb(self.max_drift_ppb)
            .clock_status(their_status(self.status))
            .clock_disruption_support_enabled(self.disruption_support)
            .build(ClockErrorBoundLayoutVersion::V3)
    }
}

/// The bytes of a value of a `repr(C)` type with no padding the compiler adds.
///
/// Used for the 3.x crate's `ClockErrorBoundV3`, whose fields (a u64, two `timespec`s, four
/// u64/i64, a u32, an i32-repr enum, a bool, two u8 and `[u8; 5]` of declared padding) add
/// up to 88 bytes: the caller checks the size is 88, so no byte is uninitialised padding.
fn repr_c_bytes<T: Copy>(value: &T) -> Vec<u8> {
    let len = std::mem::size_of::<T>();
    // SAFETY: `value` is a valid reference, so `len` bytes from it are readable for the
    // lifetime of the borrow; `u8` has no alignment or validity requirement; the bytes are
    // initialised because the type has no compiler-added padding (checked by the caller
    // against the sum of its declared fields). The slice is copied out before the borrow ends.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), len) }.to_vec()
}

/// The 88 payload bytes of their layout 3 snapshot.
fn their_payload(snapshot: &TheirSnapshot) -> Vec<u8> {
    let TheirSnapshot::V3(v3) = snapshot else {
        panic!("built as layout 3")
    };
    let bytes = repr_c_bytes(v3);
    assert_eq!(
        bytes.len(),
        88,
        "their ClockErrorBoundV3 is the 88-byte payload"
    );
    bytes
}

/// A file holding a layout 3 header (generation `generation`) and `payload`.
fn write_segment(path: &Path, generation: u16, payload: &[u8]) {
    let mut bytes = Vec::with_capacity(104);
    bytes.extend_from_slice(&0x414D_5A4Eu32.to_ne_bytes());
    bytes.extend_from_slice(&0x4342_0200u32.to_ne_bytes());
    bytes.extend_from_slice(&104u32.to_ne_bytes());
    bytes.extend_from_slice(&0x0303u16.to_ne_bytes());
    bytes.extend_from_slice(&generation.to_ne_bytes());
    bytes.extend_from_slice(payload);
    fs::write(path, bytes).unwrap();
}

fn open_ours(path: &Path) -> ShmReaderV3 {
    ShmReaderV3::open_with(path, &common::segment_only())
        .unwrap_or_else(|e| panic!("our reader refused their bytes: {e}"))
}

/// Their snapshot's bytes, read back through a file by our reader.
fn read_by_ours(snapshot: &TheirSnapshot) -> ClockErrorBoundV3 {
    let (_dir, path) = common::temp_segment("shm1");
    write_segment(&path, 2, &their_payload(snapshot));
    *open_ours(&path).snapshot().unwrap()
}

/// Snapshots with every status and both flags, and edge values: the largest drift and bound
/// the reader accepts, every bit of the marker and the counter set, nanoseconds at the top
/// of their range, negative seconds, the shortest period their conversion handles (shift
/// 63), a period just under a second (shift 0), a zero period under the statuses that need
/// none, and periods of real counters.
fn sample_fields() -> Vec<Fields> {
    let mut all = Vec::new();
    for (i, status) in ALL_STATUSES.into_iter().enumerate() {
        for disruption_support in [false, true] {
            let i = i as i64;
            all.push(Fields {
                as_of_tsc: 0x0123_4567_89AB_CDEF ^ i as u64,
                as_of: (1_700_000_000 + i, 123_456_789),
                void_after: (1_700_001_000 + i, 987_654_321),
                bound_nsec: 10_000 + i,
                period: 1.0 / 2.9e9,
                period_err: 1e-7,
                disruption_marker: 0xFEDC_BA98_7654_3210 ^ i as u64,
                max_drift_ppb: 15_000 + i as u32,
                status,
                disruption_support,
            });
        }
    }
    all.push(Fields {
        as_of_tsc: u64::MAX,
        as_of: (i64::MAX, 999_999_999),
        void_after: (i64::MIN, 0),
        bound_nsec: i64::MAX,
        period: 1e-25,
        period_err: 0.999_999_999,
        disruption_marker: u64::MAX,
        max_drift_ppb: 999_999_999,
        status: ClockStatus::FreeRunning,
        disruption_support: true,
    });
    all.push(Fields {
        as_of_tsc: 0,
        as_of: (-5, 1),
        void_after: (0, 0),
        bound_nsec: 0,
        period: 0.999,
        period_err: 0.0,
        disruption_marker: 0,
        max_drift_ppb: 0,
        status: ClockStatus::Synchronized,
        disruption_support: false,
    });
    for status in [ClockStatus::Unknown, ClockStatus::Disrupted] {
        all.push(Fields {
            period: 0.0,
            period_err: 0.0,
            status,
            ..all[0]
        });
    }
    for hz in [1e9, 2.5e9, 3.0e9, 25e6, 1_073_741_824.0] {
        all.push(Fields {
            period: 1.0 / hz,
            period_err: 3.3e-9,
            ..all[2]
        });
    }
    all
}

/// `value / 2^(64 + shift)`, the scaled fraction the payload carries.
fn scaled(frac: u64, shift: u8) -> f64 {
    frac as f64 / 2f64.powi(64 + i32::from(shift))
}

#[test]
fn their_snapshot_bytes_read_by_our_reader_field_by_field() {
    for fields in sample_fields() {
        let theirs = fields.theirs();
        let payload = their_payload(&theirs);
        let got = read_by_ours(&theirs);

        // Against the values their builder was given.
        assert_eq!(got.as_of_tsc(), fields.as_of_tsc, "{fields:?}");
        assert_eq!(
            (got.as_of().sec(), got.as_of().nsec()),
            fields.as_of,
            "{fields:?}"
        );
        assert_eq!(
            (got.void_after().sec(), got.void_after().nsec()),
            fields.void_after,
            "{fields:?}"
        );
        assert_eq!(got.bound_nsec(), fields.bound_nsec, "{fields:?}");
        assert_eq!(
            got.disruption_marker(),
            fields.disruption_marker,
            "{fields:?}"
        );
        assert_eq!(got.max_drift_ppb(), fields.max_drift_ppb, "{fields:?}");
        assert_eq!(got.clock_status(), fields.status, "{fields:?}");
        assert_eq!(
            got.clock_disruption_support_enabled(),
            fields.disruption_support,
            "{fields:?}"
        );
        // Their conversion keeps 53 significant bits of a period below a second (it
        // saturates the 64-bit fraction for a period of exactly 1/2^n s, short by 2^-64).
        // Their conversion: `(value * 2^(64 + shift)) as u64`, the shift capped at 63, so the
        // value comes back to within one unit of the fraction and f64 rounding.
        let close = |frac: u64, shift: u8, value: f64| {
            let unit = 2f64.powi(-64 - i32::from(shift));
            (scaled(frac, shift) - value).abs() <= unit + value * 2f64.powi(-52)
        };
        assert!(
            close(got.period_frac(), got.period_shift(), fields.period),
            "period {:#x} >> {} for {fields:?}",
            got.period_frac(),
            got.period_shift()
        );
        assert!(
            close(
                got.period_err_frac(),
                got.period_err_shift(),
                fields.period_err
            ),
            "period error {:#x} >> {} for {fields:?}",
            got.period_err_frac(),
            got.period_err_shift()
        );
        assert!(got.period_shift() <= 63 && got.period_err_shift() <= 63);
        // A non-zero period keeps its top bit: the shift is the one that makes it so.
        if fields.period > 1e-20 {
            assert!(
                got.period_frac() >> 62 != 0,
                "{fields:?}: {:#x}",
                got.period_frac()
            );
        }

        // Against their own accessors.
        assert_eq!(ours(theirs.as_of()), got.as_of());
        assert_eq!(ours(theirs.void_after()), got.void_after());
        assert_eq!(theirs.bound_nsec(), got.bound_nsec());
        assert_eq!(theirs.max_drift_ppb(), got.max_drift_ppb());
        assert_eq!(theirs.disruption_marker(), got.disruption_marker());
        assert_eq!(theirs.clock_status(), their_status(got.clock_status()));
        assert_eq!(
            theirs.clock_disruption_support_enabled(),
            got.clock_disruption_support_enabled()
        );

        // And the raw bytes at the layout 3 offsets (payload offset = segment offset - 16),
        // decoded here independently of either crate.
        let u64_at = |o: usize| u64::from_ne_bytes(payload[o - 16..o - 16 + 8].try_into().unwrap());
        assert_eq!(u64_at(16), got.as_of_tsc());
        assert_eq!(u64_at(24) as i64, got.as_of().sec());
        assert_eq!(u64_at(48) as i64, got.void_after().nsec());
        assert_eq!(u64_at(56), got.period_frac());
        assert_eq!(u64_at(64), got.period_err_frac());
        assert_eq!(u64_at(72) as i64, got.bound_nsec());
        assert_eq!(u64_at(80), got.disruption_marker());
        assert_eq!(
            payload[96 - 16],
            u8::from(got.clock_disruption_support_enabled())
        );
        assert_eq!(payload[97 - 16], got.period_shift());
        assert_eq!(payload[98 - 16], got.period_err_shift());
        assert_eq!(&payload[99 - 16..], &[0; 5], "their padding is zero");
    }
}

/// Their f64 arithmetic and ours, at the very same counter value: their
/// `ClockErrorBoundV3::now_with_counter` reports the counter it used, and ours is computed
/// at that value from their snapshot's bytes as our reader decodes them.
///
/// What to expect, exactly. Write the exact `t = T + τ` and bound `b = B + β`, with `T`, `B`
/// whole nanoseconds and `τ`, `β` in [0, 1). Ours rounds the exact ends outwards:
/// `earliest = T - B + floor(τ - β)` and `latest = T + B + ceil(τ + β)`. Theirs truncates
/// the elapsed nanoseconds and the bound (both positive) separately: `T - B` and `T + B`.
/// So (ours - theirs) is -1 or 0 for `earliest` (-1 when `τ < β`) and 0, 1 or 2 for
/// `latest` (0 only when `τ = β = 0`, 2 when `τ + β > 1`): ours holds theirs. Observed:
/// (-1, 1), (-1, 2), (0, 1) and (0, 2), in about equal numbers.
///
/// Their f64 arithmetic also errs, by about 1e-16 of the elapsed time: up to about 1e-3 ns
/// at the oldest age here. Negligible for the bound, but when the exact `t` lies that close
/// to a whole nanosecond, their truncation can land on the other side of it and shift
/// their window by 1 ns either way. Those samples (the exact `τ` within 0.01 ns of 0 or 1)
/// get 1 ns more room on each side, and are counted.
#[test]
fn same_counter_same_window() {
    let hz = v3_counter_hz() as f64;
    // How often each (earliest, latest) difference occurred.
    let mut seen = std::collections::BTreeMap::<(i128, i128), usize>::new();
    let mut near_whole = 0;
    let ages = [0u64, 1, 2, 16, 59, 61, 999, 1_001, 3_600];
    for (i, age) in ages.into_iter().enumerate() {
        if !v3_can_age(Duration::from_secs(age)) {
            eprintln!("skipping age {age} s: the counter has not run that long");
            continue;
        }
        for status in ALL_STATUSES {
            for rep in 0..50 {
                let real = v3_realtime();
                let fields = Fields {
                    as_of_tsc: v3_read_tsc() - v3_ticks(Duration::from_secs(age)),
                    as_of: (real.sec() - age as i64, real.nsec()),
                    void_after: (real.sec() - age as i64 + 1_000, real.nsec()),
                    bound_nsec: 10_000 + 37 * rep + i as i64,
                    period: 1.0 / hz,
                    period_err: 1e-7 * (1 + rep % 5) as f64,
                    disruption_marker: 0,
                    max_drift_ppb: 15_000 + rep as u32,
                    status,
                    disruption_support: false,
                };
                let theirs = fields.theirs();
                let ceb = read_by_ours(&theirs);
                let TheirSnapshot::V3(v3) = theirs else {
                    unreachable!()
                };
                let with_counter = v3.now_with_counter().unwrap();
                let counter = with_counter.counter;
                let t = their_window(&with_counter.time_window);
                let o = ceb.compute_bound_at(counter, FREE_RUNNING_GRACE).unwrap();
                let de = o.earliest.as_nanos() - t.earliest.as_nanos();
                let dl = o.latest.as_nanos() - t.latest.as_nanos();
                // τ, exactly, in units of 2^-k ns: (ticks * period_frac * 1e9) mod 2^k.
                let k = 64 + u32::from(ceb.period_shift());
                let unit = num_bigint::BigInt::from(1) << k;
                let tau = num_bigint::BigInt::from(counter.saturating_sub(ceb.as_of_tsc()))
                    * ceb.period_frac()
                    * 1_000_000_000u64
                    % &unit;
                let margin = &unit / 100;
                let near = tau < margin || tau > &unit - &margin;
                near_whole += usize::from(near);
                let slack = i128::from(near);
                assert!(
                    (-1 - slack..=slack).contains(&de) && (-slack..=2 + slack).contains(&dl),
                    "age {age} s, counter {counter}: ours {o:?}, theirs {t:?} ({fields:?})"
                );
                *seen.entry((de, dl)).or_default() += 1;
                // The status, except within a microsecond of a boundary (theirs is strict:
                // `now > as_of + 60 s`; ours turns at `>=`).
                assert_eq!(o.clock_status, t.clock_status, "age {age} s, {fields:?}");
            }
        }
    }
    eprintln!(
        "(ours - theirs) in ns for (earliest, latest) at the same counter: {seen:?}; \
         {near_whole} samples with t within 0.01 ns of a whole nanosecond"
    );
}

/// A `shm1` our writer wrote, read by their `Client` and by ours, bracketed: the counter
/// moves between calls, so their window is compared with ours taken just before and just
/// after it. Every bound grows slower than time, so our `earliest` and `latest` never move
/// back as the counter advances; and at one counter theirs lies within [ours, ours + 1 ns]
/// for `earliest` and [ours - 2 ns, ours] for `latest` (see `same_counter_same_window`).
/// So `ours_before.earliest <= theirs.earliest <= ours_after.earliest + 1 ns` and
/// `ours_before.latest - 2 ns <= theirs.latest <= ours_after.latest`, each given 1 ns more
/// on both sides for their f64 error (which shows only when `t` lies within about 1e-3 ns
/// of a whole nanosecond).
#[test]
fn their_client_reads_our_writer_within_a_bracket() {
    let dir = tempfile::tempdir().unwrap();
    let shm1 = dir.path().join("shm1");
    // No VMClock page at all: with the flag off, neither client opens it.
    let no_vmclock = dir.path().join("no-vmclock");
    let mut writer = ShmWriterV3::new(&shm1).unwrap();
    for status in ALL_STATUSES {
        for age in [0u64, 30, 61, 1_001] {
            if !v3_can_age(Duration::from_secs(age)) {
                eprintln!("skipping age {age} s: the counter has not run that long");
                continue;
            }
            let snapshot = v3_snapshot(Duration::from_secs(age), 20_000, status);
            writer.write(&snapshot);
            let mut client =
                clock_bound::Client::new_with_paths(path_str(&shm1), path_str(&no_vmclock))
                    .unwrap_or_else(|e| panic!("their client refused our shm1: {e:?}"));
            let mut reader = open_ours(&shm1);
            for _ in 0..200 {
                let before = reader.now().unwrap();
                let theirs = their_window(&client.now().unwrap());
                let after = reader.now().unwrap();
                // theirs - ours: from `below` to `above` ns, each with 1 ns for their f64.
                let within = |lo: Timespec, x: Timespec, hi: Timespec, below: i128, above| {
                    lo.as_nanos() + below - 1 <= x.as_nanos()
                        && x.as_nanos() <= hi.as_nanos() + above + 1
                };
                assert!(
                    within(before.earliest, theirs.earliest, after.earliest, 0, 1)
                        && within(before.latest, theirs.latest, after.latest, -2, 0),
                    "{status:?}, {age} s old: ours {before:?} then {after:?}, theirs {theirs:?}"
                );
                if before.clock_status == after.clock_status {
                    assert_eq!(theirs.clock_status, before.clock_status, "{age} s old");
                }
            }
            assert_eq!(
                reader.now().unwrap().clock_status,
                match (status, age) {
                    (ClockStatus::Synchronized, 61) => ClockStatus::FreeRunning,
                    (ClockStatus::Synchronized | ClockStatus::FreeRunning, 1_001) =>
                        ClockStatus::Unknown,
                    (s, _) => s,
                }
            );
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// A VMClock page body with `marker`, the rest plausible and fixed.
fn vmclock_body(marker: u64) -> VMClockShmBody {
    VMClockShmBody {
        disruption_marker: marker,
        flags: 0,
        _padding: [0; 2],
        clock_status: VMClockClockStatus::Synchronized,
        leap_second_smearing_hint: 0,
        tai_offset_sec: 37,
        leap_indicator: 0,
        counter_period_shift: 0,
        counter_value: 0,
        counter_period_frac_sec: 0,
        counter_period_esterror_rate_frac_sec: 0,
        counter_period_maxerror_rate_frac_sec: 0,
        time_sec: 0,
        time_frac_sec: 0,
        time_esterror_nanosec: 0,
        time_maxerror_nanosec: 0,
    }
}

/// Both flags, with the disruption check on in both clients (ours as `ShmReaderV3` and both
/// `SharedClockBound` strategies), on a page written by their VMClock writer: with the flag
/// set, a marker equal to the segment's leaves the status alone and a different one makes
/// all report Disrupted; with the flag clear none looks at the page. One difference: when
/// the daemon flips the flag under an open client, theirs fails every `now()` until it is
/// reopened, ours follows the segment.
#[test]
fn disruption_check_agrees_with_their_client() {
    let dir = tempfile::tempdir().unwrap();
    let shm1 = dir.path().join("shm1");
    let vmclock: PathBuf = dir.path().join("vmclock0");
    let mut writer = ShmWriterV3::new(&shm1).unwrap();
    // Their VMClock writer makes the page both clients read.
    let mut page = VMClockShmWriter::new(&vmclock).unwrap();
    page.write(&vmclock_body(41));
    let options = ReaderOptions::new().disruption_check(DisruptionCheck::WhenEnabled {
        vmclock_path: vmclock.clone(),
    });
    let snapshot = |flag: bool, marker: u64| {
        v3_builder(v3_read_tsc(), v3_realtime(), v3_counter_hz())
            .bound_nsec(20_000)
            .disruption_marker(marker)
            .clock_disruption_support_enabled(flag)
            .clock_status(ClockStatus::Synchronized)
            .build()
    };
    // Ours as `ShmReaderV3` and as both `SharedClockBound` strategies, theirs as `Client`.
    struct Readers {
        client: clock_bound::Client,
        reader: ShmReaderV3,
        shared: Vec<SharedClockBound>,
    }
    let open = || Readers {
        client: clock_bound::Client::new_with_paths(path_str(&shm1), path_str(&vmclock)).unwrap(),
        reader: ShmReaderV3::open_with(&shm1, &options).unwrap(),
        shared: [Strategy::ThreadLocal, Strategy::ArcSwap]
            .into_iter()
            .map(|s| SharedClockBound::open_with(&shm1, &options.clone().strategy(s)).unwrap())
            .collect(),
    };
    let ours_only = |r: &mut Readers, expected: ClockStatus, what: &str| {
        let status = r.reader.now().unwrap().clock_status;
        assert_eq!(status, expected, "ShmReaderV3, {what}");
        for clock in &r.shared {
            let status = clock.now().unwrap().clock_status;
            assert_eq!(status, expected, "{:?}, {what}", clock.strategy());
        }
    };
    let check = |r: &mut Readers, expected: ClockStatus, what: &str| {
        let theirs = their_window(&r.client.now().unwrap()).clock_status;
        assert_eq!(theirs, expected, "theirs, {what}");
        ours_only(r, expected, what);
    };
    // Their client refuses to answer once the segment's flag no longer matches what it saw
    // at open; ours follows the segment (and opens the page when the flag is turned on).
    let theirs_refuses = |r: &mut Readers, what: &str| match r.client.now() {
        Err(e) => assert_eq!(
            e.kind,
            clock_bound::ErrorKind::SegmentNotInitialized,
            "{what}"
        ),
        Ok(w) => panic!("{what}: their client answered {w:?}"),
    };

    writer.write(&snapshot(true, 41));
    let mut readers = open();
    check(&mut readers, ClockStatus::Synchronized, "markers equal");
    page.write(&vmclock_body(42));
    check(&mut readers, ClockStatus::Disrupted, "VMClock moved on");
    // The daemon catches up: the segment carries the new marker.
    writer.write(&snapshot(true, 42));
    check(&mut readers, ClockStatus::Synchronized, "caught up");

    // Flag clear: the page means nothing to either.
    writer.write(&snapshot(false, 41));
    theirs_refuses(&mut readers, "flag cleared under an open client");
    ours_only(
        &mut readers,
        ClockStatus::Synchronized,
        "flag cleared under open readers",
    );
    let mut readers = open();
    check(
        &mut readers,
        ClockStatus::Synchronized,
        "flag clear at open",
    );
    // And turned on again under readers opened without it (the page says 42).
    writer.write(&snapshot(true, 41));
    theirs_refuses(&mut readers, "flag set under an open client");
    ours_only(
        &mut readers,
        ClockStatus::Disrupted,
        "flag set under open readers",
    );
}

/// Our builder's `with_frequency_hz` picks the period as the 3.x writer's conversion does:
/// the same shift, and the same fraction to within its f64 precision (53 of 64 bits).
#[test]
fn period_from_a_frequency_as_their_writer_converts_it() {
    for hz in [
        1_000_000u64,
        25_000_000,
        999_999_999,
        1_000_000_000,
        1 << 30,
        (1 << 30) + 1,
        2_500_000_000,
        2_899_999_999,
        3_000_000_000,
        4_294_967_296,
        v3_counter_hz(),
    ] {
        let fields = Fields {
            period: 1.0 / hz as f64,
            period_err: 0.0,
            ..sample_fields()[2]
        };
        let theirs = read_by_ours(&fields.theirs());
        let ours = ClockErrorBoundV3::builder().with_frequency_hz(hz).build();
        assert_eq!(ours.period_shift(), theirs.period_shift(), "{hz} Hz");
        let gap = ours.period_frac().abs_diff(theirs.period_frac());
        assert!(
            gap <= 1 << 12,
            "{hz} Hz: ours {:#x}, theirs {:#x}",
            ours.period_frac(),
            theirs.period_frac()
        );
    }
}
