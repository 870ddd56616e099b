//! The ClockBound segments, the VMClock page, and how to turn them into time.
//!
//! This page describes everything a client needs to read the AWS ClockBound daemon's
//! shared memory correctly, in any language: the files, their byte layouts, how the daemon
//! updates them, how a reader takes a consistent copy, and how a copy becomes a window
//! `[earliest, latest]` that contains true time. Where this crate makes a choice that the
//! format leaves open, the choice is named as this crate's.
//!
//! # Contents
//!
//! - [The two segments](#the-two-segments)
//! - [The header, common to both layouts](#the-header-common-to-both-layouts)
//! - [Layout 2 payload](#layout-2-payload-varrunclockboundshm0)
//! - [Layout 3 payload](#layout-3-payload-varrunclockboundshm1)
//! - [The trap: `as_of` means different things](#the-trap-as_of-means-different-things)
//! - [Writer protocol](#writer-protocol)
//! - [Reader protocol](#reader-protocol)
//! - [`now()` from a layout 2 snapshot](#now-from-a-layout-2-snapshot)
//! - [`now()` from a layout 3 snapshot](#now-from-a-layout-3-snapshot)
//! - [Status degradation and the FreeRunning grace](#status-degradation-and-the-freerunning-grace)
//! - [The VMClock page and the disruption check](#the-vmclock-page-and-the-disruption-check)
//!
//! # The two segments
//!
//! | file | layout | written by | read by |
//! |---|---|---|---|
//! | `/var/run/clockbound/shm0` | 2, 80 bytes | ClockBound 2.x daemons (`clock-bound-d`); ClockBound 3.x daemons too, for 2.x clients (deprecated there) | 2.x clients |
//! | `/var/run/clockbound/shm1` | 3, 104 bytes | ClockBound 3.x daemons only (`clock-bound` 3.0.0-rc.0 and later) | 3.x clients |
//!
//! Both are ordinary files (usually on a tmpfs), mapped with `mmap(MAP_SHARED)`. There is one
//! writer per file (the daemon) and any number of readers, in any process, none of which
//! ever writes.
//!
//! The two layouts answer the same question in different ways:
//!
//! - **Layout 2** bounds the error of the system clock, `CLOCK_REALTIME`. A reader reads
//!   `CLOCK_REALTIME` and widens it by the bound. The window moves with the system clock
//!   (including when something steps it).
//! - **Layout 3** carries the daemon's own estimate of true time at a CPU counter value. A
//!   reader reads the counter and extrapolates. No system clock is involved: the window
//!   does not move when `CLOCK_REALTIME` is stepped, and its midpoint is the daemon's time,
//!   which can differ from `CLOCK_REALTIME` by the daemon's residual offset.
//!
//! On the same host, a 3.x daemon's shm0 windows are wider than its shm1 windows: into
//! shm0 it writes its bound plus the system clock's offset from its own clock plus half a
//! round trip, because a layout 2 bound must also cover the system clock's error.
//!
//! All multi-byte fields are in the host's native byte order. The file is at least 8-byte
//! aligned (it starts a mapping, which starts a page), and every field lies at its natural
//! alignment.
//!
//! # The header, common to both layouts
//!
//! | offset | size | field | type | meaning |
//! |---:|---:|---|---|---|
//! | 0 | 8 | `magic` | two `u32` | `0x414D5A4E`, `0x43420200`. On a little-endian host the bytes read `4E 5A 4D 41 00 02 42 43`. |
//! | 8 | 4 | `segsize` | `u32` | bytes the writer mapped: header plus payload, rounded up to 8. 80 for layout 2, 104 for layout 3. |
//! | 12 | 2 | `version` | `u16` | the payload layout (below). 0 means wiped: the layout is not defined yet. |
//! | 14 | 2 | `generation` | `u16` | the seqlock counter. 0: never written. Odd: an update is in progress. |
//!
//! **The version field is split in two bytes.** The high byte is the lowest layout version
//! a reader must understand to read the segment; the low byte is the layout version the
//! writer wrote. A layout 3 segment says `0x0303`. Layout 2 predates the split and says
//! `0x0002`, also when a 3.x daemon writes it. A reader decides from the high byte whether
//! it may read the segment at all; this crate reads `0x0002` and `0x0303` and reports any
//! other value as [`ShmError::SegmentVersionNotSupported`](crate::ShmError::SegmentVersionNotSupported).
//!
//! A reader must check, before it trusts anything else:
//! - the file is at least as long as the segment it expects (`fstat`, or better, a
//!   positioned read of the whole segment);
//! - the magic;
//! - `segsize` is at least header plus payload of the layout, and not larger than the
//!   file;
//! - the version.
//!
//! # Layout 2 payload (`/var/run/clockbound/shm0`)
//!
//! 80 bytes in total: the 16-byte header and a 64-byte payload.
//!
//! | offset | size | field | type | meaning |
//! |---:|---:|---|---|---|
//! | 16 | 16 | `as_of` | `i64` seconds, `i64` nanoseconds | the `CLOCK_MONOTONIC_COARSE` time at which `bound_nsec` was computed |
//! | 32 | 16 | `void_after` | `i64` seconds, `i64` nanoseconds | the `CLOCK_MONOTONIC_COARSE` time after which nothing here may be trusted. The daemon writes `as_of` + 1000 s. |
//! | 48 | 8 | `bound_nsec` | `i64` | bound on `|CLOCK_REALTIME - true time|` at `as_of`, in nanoseconds. Never negative. |
//! | 56 | 8 | `disruption_marker` | `u64` | the last VMClock disruption marker the daemon saw |
//! | 64 | 4 | `max_drift_ppb` | `u32` | worst-case drift rate of the clock, in parts per billion. Below 10⁹. |
//! | 68 | 4 | `clock_status` | `i32` | 0 Unknown, 1 Synchronized, 2 FreeRunning, 3 Disrupted |
//! | 72 | 1 | `clock_disruption_support_enabled` | `u8` | 0 or 1 |
//! | 73 | 7 | padding | | zero |
//!
//! [`layout`](crate::layout) has the offsets as constants, and
//! [`ClockErrorBound`](crate::ClockErrorBound) is a validated copy of this payload.
//!
//! # Layout 3 payload (`/var/run/clockbound/shm1`)
//!
//! 104 bytes in total: the same 16-byte header (`version` = `0x0303`, `segsize` = 104) and
//! an 88-byte payload. Same magic, same generation counter, same writer protocol.
//!
//! | offset | size | field | type | meaning |
//! |---:|---:|---|---|---|
//! | 16 | 8 | `as_of_tsc` | `u64` | the CPU counter's value at the update |
//! | 24 | 16 | `as_of` | `i64` seconds, `i64` nanoseconds | the daemon's estimate of true time (UTC, on the `CLOCK_REALTIME` scale) at `as_of_tsc`. **Not** a monotonic reading. |
//! | 40 | 16 | `void_after` | `i64` seconds, `i64` nanoseconds | `as_of` + 1000 s, on the same UTC scale |
//! | 56 | 8 | `period_frac` | `u64` | the counter's period: seconds per tick = `period_frac / 2^(64 + period_shift)` |
//! | 64 | 8 | `period_err_frac` | `u64` | the relative error of that period, a pure number in \[0, 1): `period_err_frac / 2^(64 + period_err_shift)` |
//! | 72 | 8 | `bound_nsec` | `i64` | bound on the error of `as_of`, in nanoseconds |
//! | 80 | 8 | `disruption_marker` | `u64` | as in layout 2 |
//! | 88 | 4 | `max_drift_ppb` | `u32` | as in layout 2 |
//! | 92 | 4 | `clock_status` | `i32` | as in layout 2 |
//! | 96 | 1 | `clock_disruption_support_enabled` | `u8` | as in layout 2 |
//! | 97 | 1 | `period_shift` | `u8` | the scale of `period_frac`. The daemon picks ⌊log2(counter frequency)⌋, for example 29 for a counter near 1 GHz. |
//! | 98 | 1 | `period_err_shift` | `u8` | the scale of `period_err_frac`, chosen the same way |
//! | 99 | 5 | padding | | zero |
//!
//! The counter is the one the daemon reads: the time-stamp counter (TSC) on x86-64, the
//! virtual counter `CNTVCT_EL0` on aarch64. The ClockBound 3.x client supports no other
//! architecture, and neither does this crate's layout 3 reader.
//!
//! # The trap: `as_of` means different things
//!
//! In layout 2, `as_of` and `void_after` are `CLOCK_MONOTONIC_COARSE` readings: seconds
//! since boot, more or less. In layout 3 they are UTC: seconds since 1970, on the
//! `CLOCK_REALTIME` scale. The field has the same name, type and width in both.
//!
//! A client that compares a layout 3 `as_of` with the monotonic clock (or a layout 2
//! `as_of` with the realtime clock) computes an age that is off by decades. Depending on
//! the sign, it reports every snapshot as void (Unknown), or, worse, computes an absurdly
//! large or negative "elapsed" and a window that means nothing. Take the meaning of `as_of`
//! from the version field, never from the field itself.
//!
//! # Writer protocol
//!
//! One writer per file, the daemon.
//!
//! **On start.** If the file is missing or does not hold a segment the daemon can reuse, the
//! daemon recreates it: it truncates the file (`O_TRUNC`, size 0), writes the header with
//! version 0 and generation 0 and a zeroed payload (in several `write` calls), maps it
//! read-write, and then sets the version. A valid segment is reused as it is, generation and
//! all (a warm restart). Which segments count as reusable differs between daemons:
//!
//! - a 2.x daemon recreates shm0 when it is missing, wiped, never written (generation 0) or
//!   has a bad header;
//! - a 3.x daemon only reuses a layout 3 segment, so it recreates shm0 **on every start**
//!   (and first writes a payload with status Unknown and `as_of` 0, before its clock is
//!   adjusted); it reuses a valid shm1 and recreates it only when it is unusable.
//!
//! The truncation is what makes a daemon restart dangerous for readers that have the file
//! mapped: see [`hazards`](super::hazards#truncating-restarts).
//!
//! **Each update.**
//!
//! ```text
//! W1  g = generation. If g is even, g = g + 1 (odd: update in progress). A g that is
//!     already odd is kept: a previous writer died mid-update.
//!     store g into generation
//! W2  release fence                            (missing in the released daemons, see below)
//! W3  write the payload
//! W4  store g + 1 into generation, with release ordering; on wrap-around 0 is skipped
//!     (65535 + 1 becomes 2, never 0, since 0 means "never written")
//! ```
//!
//! The released writers (ClockBound 2.0.3 and 3.0.0-rc.0) store the odd generation with a
//! release store and have no fence W2. What that costs a reader on which CPU, and what this
//! crate does about it, is the subject of [`memory_model`](super::memory_model).
//!
//! **How often.** A 2.x daemon updates shm0 several times a second. A 3.x daemon writes
//! both files only when its synchronisation algorithm produces new parameters: about every
//! 2 s from the EC2 link-local time source, about every 16 s from other NTP servers, and
//! occasionally with longer gaps.
//!
//! # Reader protocol
//!
//! A reader takes a consistent copy of the payload like this (the orderings are this
//! crate's; [`memory_model`](super::memory_model) says why they suffice):
//!
//! ```text
//! R1  g1 = generation (relaxed load), then an acquire fence
//!     g1 == 0: wiped or never written. g1 odd: update in progress. Either way: no copy now.
//!     Check the version (0: wiped; not a version this reader knows: error).
//! R2  copy the payload, one atomic load per 8-byte word (relaxed)
//! R3  acquire fence
//! R4  g2 = generation (relaxed load)
//!     Accept the copy only if g2 == g1. Otherwise retry, a bounded number of times.
//! ```
//!
//! Then validate every field before using any: `clock_status` in 0..=3, the flag byte 0 or
//! 1, nanosecond fields in 0..10⁹, `max_drift_ppb` below 10⁹, `bound_nsec` not negative, and
//! for layout 3 shifts and a period that make sense. A status of 7 or a flag byte of 2 is a
//! malformed segment, reported as an error. In Rust this also means never building an enum
//! or a `bool` straight from the shared bytes.
//!
//! Rules that are easy to get wrong:
//!
//! - **Retries must be bounded.** A writer that died between W1 and W4 leaves the generation
//!   odd until the daemon is restarted.
//! - **Read the shared bytes without a data race**: atomic loads of each field's (or each
//!   word's) natural size, never a plain struct copy. In Rust, never hold a reference
//!   (`&[u8]`, `&T`, a memmap `Deref` slice) to bytes another process writes: a shared
//!   reference promises they do not change. Go from the mapping's base pointer to atomic
//!   cells.
//! - **When there is a previous good copy, use it.** While the generation is odd, 0, or
//!   unchanged since the last copy, or the version is 0, the released clients and this
//!   crate answer from the last good copy without retrying. That copy ages, and its status
//!   degrades as it does (below), so answering from it never overstates anything.
//! - **A 16-bit generation wraps.** At ten updates a second it comes back to the same value
//!   after about 55 minutes; after a daemon restart that wiped the segment, the count starts
//!   again at 2. A reader that caches "the generation I last copied" must not trust
//!   "unchanged" forever: this crate re-reads the payload in full once its copy's `as_of` is
//!   older than [`DEFAULT_RECHECK_INTERVAL`](crate::DEFAULT_RECHECK_INTERVAL), and forgets
//!   its cached generation when it sees a wipe.
//!
//! # `now()` from a layout 2 snapshot
//!
//! 1. Read `CLOCK_REALTIME` (`real`), then `CLOCK_MONOTONIC_COARSE` (`mono`). In this order:
//!    a late monotonic reading only makes the bound more pessimistic, never wrong.
//! 2. `max_drift_ppb` ≥ 10⁹: the segment is malformed.
//! 3. `elapsed = mono - as_of`. If `mono` is earlier than `as_of` by less than 1 µs
//!    ([`CAUSALITY_BLUR`](crate::CAUSALITY_BLUR): the coarse clock and the daemon's reading
//!    of it can disagree by a rounding), take `elapsed` = 0. Earlier by more: an error
//!    ([`ShmError::CausalityBreach`](crate::ShmError::CausalityBreach)).
//! 4. `bound = bound_nsec + elapsed × max_drift_ppb / 10⁹` (nanoseconds).
//! 5. `earliest = real - bound`, `latest = real + bound`.
//! 6. The status, from the status degradation below, with `mono` as the current time.
//!
//! The window is centred on `real`: its midpoint is the system clock's reading.
//!
//! **How this crate rounds.** Everything is integer nanoseconds. The drift term is rounded
//! up, so the bound is never narrower than the exact value (at most 1 ns wider); sums
//! saturate instead of overflowing. [`ClockErrorBound::compute_bound_at`](crate::ClockErrorBound::compute_bound_at)
//! is this arithmetic with the clock readings passed in. The worked example:
//!
//! ```
//! use clockbound_shm::{ClockErrorBound, ClockStatus, Timespec};
//!
//! // as_of 0 s, void_after 10 s, bound 10 µs, drift 1000 ppb; real = mono = 2 s.
//! let snapshot = ClockErrorBound::builder()
//!     .as_of(Timespec::new(0, 0))
//!     .void_after(Timespec::new(10, 0))
//!     .bound_nsec(10_000)
//!     .max_drift_ppb(1_000)
//!     .clock_status(ClockStatus::Synchronized)
//!     .build();
//! let window = snapshot.compute_bound_at(Timespec::new(2, 0), Timespec::new(2, 0))?;
//! // bound = 10 000 ns + 2 s × 1000 ppb = 12 000 ns
//! assert_eq!(window.earliest, Timespec::new(1, 999_988_000));
//! assert_eq!(window.latest, Timespec::new(2, 12_000));
//! assert_eq!(window.clock_status, ClockStatus::Synchronized);
//! # Ok::<(), clockbound_shm::ShmError>(())
//! ```
//!
//! # `now()` from a layout 3 snapshot
//!
//! 1. Read the counter, fenced so that the reading is taken where the program says:
//!    x86-64 `lfence; rdtsc; lfence`, aarch64 `isb; mrs cntvct_el0; isb`.
//! 2. `ticks = counter - as_of_tsc`.
//! 3. `elapsed = ticks × period_frac / 2^(64 + period_shift)` seconds.
//! 4. `t = as_of + elapsed`: the daemon's estimate of true time now.
//! 5. `bound = bound_nsec + elapsed × max_drift_ppb / 10⁹ + elapsed × period_err`, with
//!    `period_err = period_err_frac / 2^(64 + period_err_shift)` and `elapsed` in
//!    nanoseconds. Two growth terms: the oscillator may drift (as in layout 2), and the
//!    period itself is an estimate whose error accumulates with every tick.
//! 6. `earliest = t - bound`, `latest = t + bound`.
//! 7. The status, from the status degradation below, with `t` as the current time (both
//!    `t` and `void_after` are on the UTC scale).
//!
//! No system clock is read. The window's midpoint is `t`, not `CLOCK_REALTIME`.
//!
//! **A counter behind `as_of_tsc`.** The released 3.x client clamps a negative `ticks` to
//! 0. This crate applies layout 2's causality rule instead: behind by less than
//! [`CAUSALITY_BLUR`](crate::CAUSALITY_BLUR) counts as 0, behind by more is
//! [`ShmError::CounterBehindSnapshot`](crate::ShmError::CounterBehindSnapshot). A counter that far
//! behind means the snapshot does not belong to this counter (for example after a live
//! migration to a host whose counter reads differently), and clamping would hand out the
//! snapshot's window as current.
//!
//! **How this crate rounds.** The released client computes in `f64`, and its rounding is
//! not specified. This crate computes in exact integers with 128-bit intermediates (wider
//! where needed), no floating point, and rounds only the ends: `earliest` is the exact
//! `t - bound` rounded down, `latest` the exact `t + bound` rounded up, to whole
//! nanoseconds. So the window holds the exact one, each end is less than 1 ns from it, and
//! each end is a non-decreasing function of the counter, as the exact ends are while the
//! bound grows slower than time (`max_drift_ppb / 10⁹ + period_err ≤ 1`, true of any real
//! snapshot): successive windows never step back. Rounding the midpoint and the bound
//! separately instead also gives a window that holds the exact one, but an end can then
//! step back by 1 ns from one counter value to the next. The status is judged on the exact
//! `t`: it turns at the first counter value at which `t` reaches the threshold, never
//! before and never after. A client in another language should round the same way, or at
//! least round `earliest` down and `latest` up. Watch the intermediate widths:
//! `ticks × period_frac` alone needs 128 bits.
//!
//! # Status degradation and the FreeRunning grace
//!
//! The status in the segment is what the daemon knew when it wrote. A reader adjusts it for
//! the snapshot's age, with `now` being `mono` (layout 2) or `t` (layout 3):
//!
//! - Unknown and Disrupted pass through unchanged.
//! - Synchronized and FreeRunning become **Unknown** once `now` has reached `void_after`,
//! - otherwise **FreeRunning** once `now` has reached `as_of` + the grace,
//! - otherwise stay as written.
//!
//! The window itself is correct whatever the grace: it grows with the worst-case drift. The
//! grace only decides when the label says "the daemon has stopped updating". Its value:
//!
//! | client | grace |
//! |---|---|
//! | `clock-bound-shm` 2.0.3 (the 2.x client) | 5 s |
//! | ClockBound 3.x clients, both layouts | 60 s |
//! | this crate, both layouts | 60 s by default |
//!
//! The 3.x clients raised it because a 3.x daemon writes only when it has new parameters,
//! every 16 s or so from ordinary NTP servers: with a 5 s grace, a reader reports
//! FreeRunning between two perfectly normal updates. A 2.x daemon writes several times a
//! second, so 60 s only delays the label when such a daemon dies. Users who want the 2.0.3
//! behaviour can set 5 s.
//!
//! Two details in which clients differ. The 2.0.3 client checks the grace before
//! `void_after`, so a void snapshot can read FreeRunning; checking `void_after` first, as
//! this crate and the 3.x clients do, is the stricter and intended reading. The released
//! clients compare "strictly after"; this crate uses "at or after", which changes the label
//! one nanosecond sooner.
//!
//! # The VMClock page and the disruption check
//!
//! A Linux guest with the `vmclock` driver exposes a page that the hypervisor keeps up to
//! date, as the device `/dev/vmclock0` (mappable, read-only). Its `disruption_marker`
//! changes whenever the guest's clock was disrupted: a live migration, a snapshot restore.
//! The ClockBound daemon copies the marker it last saw into its segment. A reader that
//! finds the two different knows that the daemon has not caught up with a disruption yet,
//! and that the segment's window must not be trusted.
//!
//! The page is **little-endian** (the kernel ABI), version 1. The device may be larger than
//! the 104 bytes described here.
//!
//! | offset | size | field | notes |
//! |---:|---:|---|---|
//! | 0 | 4 | `magic` | `u32` `0x4B4C4356` ("VCLK") |
//! | 4 | 4 | `size` | `u32`, bytes of the structure (at least 104) |
//! | 8 | 2 | `version` | `u16`, 1 |
//! | 10 | 1 | `counter_id` | `u8` |
//! | 11 | 1 | `time_type` | `u8` |
//! | 12 | 4 | `seq_count` | `u32` seqlock counter: odd = update in progress |
//! | 16 | 8 | `disruption_marker` | `u64`, changes on every disruption |
//! | 24 | 8 | `flags` | `u64` |
//! | 32 | 2 | padding | |
//! | 34 | 1 | `clock_status` | `u8`: 0 Unknown, 1 Initializing, 2 Synchronized, 3 FreeRunning, 4 Unreliable |
//! | 35 | 1 | `leap_second_smearing_hint` | `u8` |
//! | 36 | 2 | `tai_offset_sec` | `i16` |
//! | 38 | 1 | `leap_indicator` | `u8` |
//! | 39 | 1 | `counter_period_shift` | `u8` |
//! | 40 | 8 | `counter_value` | `u64` |
//! | 48 | 8 | `counter_period_frac_sec` | `u64` |
//! | 56 | 8 | `counter_period_esterror_rate_frac_sec` | `u64` |
//! | 64 | 8 | `counter_period_maxerror_rate_frac_sec` | `u64` |
//! | 72 | 8 | `time_sec` | `u64` |
//! | 80 | 8 | `time_frac_sec` | `u64` |
//! | 88 | 8 | `time_esterror_nanosec` | `u64` |
//! | 96 | 8 | `time_maxerror_nanosec` | `u64` |
//!
//! It is read with the same seqlock discipline as the segment, on `seq_count`: load it
//! (odd: retry later), copy the fields with atomic loads, acquire fence, load it again, and
//! keep the copy only if both loads gave the same even value.
//!
//! **The check.** Only when the snapshot in hand says `clock_disruption_support_enabled`:
//! read the page's `disruption_marker` and compare it with the snapshot's. When they
//! differ, do not trust the window. The 2.0.3 client reports Unknown; the 3.x client and
//! this crate report [`Disrupted`](crate::ClockStatus::Disrupted). When the flag is off,
//! the released clients do not open the device at all.
//!
//! This crate decides for each snapshot, from that snapshot's own flag: a daemon restarted
//! with disruption support switched on is noticed at its first update, and one restarted
//! with it switched off stops the check (it no longer updates its marker). While nothing
//! changes, the check costs one atomic load of `seq_count` and two compares.
//! [`DisruptionCheck`](crate::DisruptionCheck) turns it off or points it at another path;
//! [`VmClockReader`](crate::VmClockReader) reads the page on its own.
//!
//! A client that trusts the segment alone keeps reporting Synchronized after a live
//! migration until the daemon catches up. With layout 3 the risk is larger: after a
//! migration the counter may belong to another host, and the extrapolation from
//! `as_of_tsc` is meaningless until the daemon writes again.
