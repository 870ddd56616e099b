//! The segments' wire formats: the 16-byte header every layout shares, one module per
//! payload layout, and the [`Layout`] trait that lets the readers serve either.
//!
//! ```text
//! offset size field
//!      0    8 magic       two u32: 0x414D5A4E 0x43420200
//!      8    4 segsize     u32, bytes the writer mapped (80 for layout 2, 104 for layout 3)
//!     12    2 version     u16, payload layout (2, or 0x0303 for layout 3); 0 = wiped
//!     14    2 generation  u16, seqlock counter; 0 = never written, odd = updating
//!     16      payload     layout 2: 64 bytes; layout 3: 88 bytes
//! ```
//!
//! Everything is native-endian. The payload is moved as native `u64` words (the unit the
//! seqlock copies atomically); the layout modules turn words into validated snapshots and
//! back. This module is pure data handling: no memory mapping, no `unsafe`. The field
//! tables and their meaning are in [`docs::protocol`](crate::docs::protocol).

use std::fmt::Debug;
use std::time::Duration;

use crate::bound::{ClockErrorBound, TimeWindow};
use crate::bound_v3::ClockErrorBoundV3;
use crate::error::{Malformed, ShmError};
use crate::seqlock::AtomicWords;
use crate::status::ClockStatus;
use crate::timespec::Timespec;

pub(crate) mod v2;
pub(crate) mod v3;

/// The magic number that opens every ClockBound segment, as two native-endian `u32`.
pub const MAGIC: [u32; 2] = [0x414D_5A4E, 0x4342_0200];
/// Bytes of the header: magic, segsize, version, generation.
pub const HEADER_LEN: usize = 16;

pub(crate) const SEGSIZE_OFFSET: usize = 8;
pub(crate) const VERSION_OFFSET: usize = 12;
pub(crate) const GENERATION_OFFSET: usize = 14;
pub(crate) const PAYLOAD_OFFSET: usize = HEADER_LEN;

/// The segment's header fields as read at one moment, for diagnostics (see
/// [`ShmReader::header`](crate::ShmReader::header)).
///
/// Each field is a separate atomic load, not part of a seqlock copy: `generation` may have
/// moved on from the snapshot a reader holds, and a header read while the daemon rewrites
/// the segment may mix old and new values.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SegmentHeader {
    /// The two magic words, native endian ([`MAGIC`] in a valid segment).
    pub magic: [u32; 2],
    /// Bytes the writer mapped (80 for layout 2, 104 for layout 3).
    pub segsize: u32,
    /// Payload layout version: 2 or `0x0303`, or 0 while the segment is wiped.
    pub version: u16,
    /// Seqlock counter: 0 never written, odd while an update is in progress.
    pub generation: u16,
}

impl SegmentHeader {
    /// Whether the magic words are ClockBound's.
    #[must_use]
    pub fn magic_ok(&self) -> bool {
        self.magic == MAGIC
    }

    /// Decodes the first [`HEADER_LEN`] bytes of a segment file (native endian).
    pub(crate) fn from_bytes(bytes: &[u8; HEADER_LEN]) -> SegmentHeader {
        let u32_at =
            |i: usize| u32::from_ne_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let u16_at = |i: usize| u16::from_ne_bytes([bytes[i], bytes[i + 1]]);
        SegmentHeader {
            magic: [u32_at(0), u32_at(4)],
            segsize: u32_at(SEGSIZE_OFFSET),
            version: u16_at(VERSION_OFFSET),
            generation: u16_at(GENERATION_OFFSET),
        }
    }
}

/// Which payload layout a segment holds: what a handle that chose its segment at open
/// reports (see [`SharedClockBound::layout`](crate::SharedClockBound::layout)).
///
/// With feature `serde` it is the layout number, `2` or `3` (not the header's
/// [`wire_version`](Self::wire_version)); other numbers are refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayoutVersion {
    /// Layout 2: `shm0`, 80 bytes, time from `CLOCK_REALTIME` and `CLOCK_MONOTONIC_COARSE`.
    V2,
    /// Layout 3: `shm1`, 104 bytes, time from the CPU counter (ClockBound 3.x).
    V3,
}

impl LayoutVersion {
    /// The value of the header's `version` field for this layout. From layout 3 on the
    /// field is split: the high byte is the oldest layout a reader must understand, the low
    /// byte the layout written (`0x0303`). Layout 2 predates the split. Readers accept exactly
    /// these values, as the released clients do.
    #[must_use]
    pub const fn wire_version(self) -> u16 {
        match self {
            LayoutVersion::V2 => 2,
            LayoutVersion::V3 => 0x0303,
        }
    }
}

impl std::fmt::Display for LayoutVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutVersion::V2 => f.write_str("layout 2"),
            LayoutVersion::V3 => f.write_str("layout 3"),
        }
    }
}

/// A payload layout this crate reads: [`Layout2`] or [`Layout3`]. Readers and writers are
/// generic over it ([`ShmReader<L>`](crate::ShmReader), [`ShmWriter<L>`](crate::ShmWriter));
/// the trait is sealed, its workings are private.
pub trait Layout: sealed::LayoutImpl {}

/// Layout 2: `/var/run/clockbound/shm0`, snapshots are [`ClockErrorBound`]s.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Layout2;

impl Layout for Layout2 {}

/// Layout 3: `/var/run/clockbound/shm1` (ClockBound 3.x), time from the CPU counter;
/// snapshots are [`ClockErrorBoundV3`]s.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Layout3;

impl Layout for Layout3 {}

/// Checks the parts of the header that do not change while a writer runs: the magic and the
/// segment size against the layout's length and the file's real size. The version is judged
/// by the caller, because 0 (wiped) and an unknown version are different errors.
pub(crate) fn check_header(
    magic: [u32; 2],
    segsize: u32,
    needed: usize,
    file_len: u64,
) -> Result<(), Malformed> {
    if magic != MAGIC {
        return Err(Malformed::BadMagic {
            found: magic,
            expected: MAGIC,
        });
    }
    if (segsize as usize) < needed {
        return Err(Malformed::SegsizeTooSmall {
            segsize,
            needed: needed as u32,
        });
    }
    if u64::from(segsize) > file_len {
        return Err(Malformed::SegsizeBeyondFile { segsize, file_len });
    }
    Ok(())
}

/// An instant from two payload words, rejecting out-of-range nanoseconds.
#[inline(always)]
pub(crate) fn decode_time(field: &'static str, sec: u64, nsec: u64) -> Result<Timespec, Malformed> {
    let nsec = nsec as i64;
    Timespec::from_normalised(sec as i64, nsec).ok_or(Malformed::Nanoseconds { field, found: nsec })
}

/// The status for its wire value; anything but 0..=3 is malformed.
#[inline(always)]
pub(crate) fn decode_status(raw: i32) -> Result<ClockStatus, Malformed> {
    ClockStatus::from_wire(raw).ok_or(Malformed::ClockStatus { found: raw })
}

/// The disruption-support flag byte: 0 or 1, nothing else.
#[inline(always)]
pub(crate) fn decode_flag(byte: u8) -> Result<bool, Malformed> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        found => Err(Malformed::DisruptionFlag { found }),
    }
}

pub(crate) mod sealed {
    use super::*;

    /// What a reader needs to know of a layout. Sealed: implemented here only.
    pub trait LayoutImpl: Copy + Debug + Default + Send + Sync + 'static {
        /// The validated snapshot this layout's readers hand out.
        type Snapshot: Copy + Debug + PartialEq + Send + Sync + 'static;
        /// The payload as atomic words in the mapping.
        type Payload: AtomicWords<Words = Self::Words> + Send + Sync + 'static;
        /// The payload as plain words, as the seqlock copies it.
        type Words: Copy + PartialEq + Send + Sync + 'static;
        /// The clock readings one `now()` takes.
        type Reading: Copy;
        /// The clock the snapshot's age is measured on (layout 2: the monotonic clock;
        /// layout 3: the counter).
        type Instant: Copy + Ord + Debug + Send + Sync + 'static;

        /// Which layout this is.
        const TAG: LayoutVersion;
        /// The header's `version` field.
        const VERSION: u16 = Self::TAG.wire_version();
        /// Bytes of header and payload: what is mapped.
        const SEGMENT_LEN: usize;
        /// Where the daemon publishes this layout.
        const DEFAULT_PATH: &'static str;
        /// A snapshot to overwrite (all zero, status Unknown).
        const PLACEHOLDER: Self::Snapshot;

        /// `Err` with a reason on machines where this layout cannot be read.
        fn check_supported() -> Result<(), &'static str>;
        /// Validates every field and builds a snapshot.
        fn decode(words: &Self::Words) -> Result<Self::Snapshot, Malformed>;
        /// The words of a snapshot (padding zero).
        fn encode(snapshot: &Self::Snapshot) -> Self::Words;
        /// Reads this layout's clocks, in the order its arithmetic needs. Layout 3 leaves
        /// the counter read open (its closing fence comes after the window arithmetic):
        /// every reading must be followed by [`write_window`](Self::write_window), or by
        /// another reading, before the caller relies on the order of later loads.
        fn read_clocks() -> Self::Reading;
        /// The age-measuring instant of a reading.
        fn instant(reading: Self::Reading) -> Self::Instant;
        /// When the snapshot was written, on the age-measuring clock.
        fn as_of_instant(snapshot: &Self::Snapshot) -> Self::Instant;
        /// `base` plus `span` on the age-measuring clock, saturating.
        fn instant_after(
            snapshot: &Self::Snapshot,
            base: Self::Instant,
            span: Duration,
        ) -> Self::Instant;
        /// The window at `reading`, written into `out` (left alone on error).
        fn write_window(
            snapshot: &Self::Snapshot,
            reading: Self::Reading,
            grace: Duration,
            out: &mut TimeWindow,
        ) -> Result<(), ShmError>;
        /// The snapshot's `clock_disruption_support_enabled`.
        fn disruption_support(snapshot: &Self::Snapshot) -> bool;
        /// The snapshot's `disruption_marker`.
        fn disruption_marker(snapshot: &Self::Snapshot) -> u64;
    }

    impl LayoutImpl for Layout2 {
        type Snapshot = ClockErrorBound;
        type Payload = [crate::sync::AtomicU64; v2::PAYLOAD_WORDS];
        type Words = v2::PayloadWords;
        /// `(CLOCK_REALTIME, CLOCK_MONOTONIC_COARSE)`, read in that order.
        type Reading = (Timespec, Timespec);
        type Instant = Timespec;

        const TAG: LayoutVersion = LayoutVersion::V2;
        const SEGMENT_LEN: usize = HEADER_LEN + v2::PAYLOAD_LEN;
        const DEFAULT_PATH: &'static str = "/var/run/clockbound/shm0";
        const PLACEHOLDER: ClockErrorBound = ClockErrorBound::PLACEHOLDER;

        fn check_supported() -> Result<(), &'static str> {
            Ok(())
        }

        #[inline(always)]
        fn decode(words: &Self::Words) -> Result<ClockErrorBound, Malformed> {
            v2::decode_payload(words)
        }

        fn encode(snapshot: &ClockErrorBound) -> Self::Words {
            v2::encode_payload(snapshot)
        }

        #[inline(always)]
        fn read_clocks() -> (Timespec, Timespec) {
            (crate::clock::realtime(), crate::clock::monotonic_coarse())
        }

        #[inline(always)]
        fn instant((_, mono): (Timespec, Timespec)) -> Timespec {
            mono
        }

        #[inline(always)]
        fn as_of_instant(snapshot: &ClockErrorBound) -> Timespec {
            snapshot.as_of()
        }

        fn instant_after(_: &ClockErrorBound, base: Timespec, span: Duration) -> Timespec {
            base.saturating_add(span)
        }

        #[inline(always)]
        fn write_window(
            snapshot: &ClockErrorBound,
            (real, mono): (Timespec, Timespec),
            grace: Duration,
            out: &mut TimeWindow,
        ) -> Result<(), ShmError> {
            snapshot.write_window_at(real, mono, grace, out)
        }

        #[inline(always)]
        fn disruption_support(snapshot: &ClockErrorBound) -> bool {
            snapshot.clock_disruption_support_enabled()
        }

        #[inline(always)]
        fn disruption_marker(snapshot: &ClockErrorBound) -> u64 {
            snapshot.disruption_marker()
        }
    }

    impl LayoutImpl for Layout3 {
        type Snapshot = ClockErrorBoundV3;
        type Payload = [crate::sync::AtomicU64; v3::PAYLOAD_WORDS];
        type Words = v3::PayloadWords;
        /// The CPU counter.
        type Reading = u64;
        type Instant = u64;

        const TAG: LayoutVersion = LayoutVersion::V3;
        const SEGMENT_LEN: usize = HEADER_LEN + v3::PAYLOAD_LEN;
        const DEFAULT_PATH: &'static str = "/var/run/clockbound/shm1";
        const PLACEHOLDER: ClockErrorBoundV3 = ClockErrorBoundV3::builder().build();

        fn check_supported() -> Result<(), &'static str> {
            if crate::counter::COUNTER_SUPPORTED {
                Ok(())
            } else {
                Err(
                    "layout 3 needs the CPU counter, which this crate reads on x86-64 and \
                     aarch64 only; read the layout 2 segment (shm0) instead",
                )
            }
        }

        #[inline(always)]
        fn decode(words: &Self::Words) -> Result<ClockErrorBoundV3, Malformed> {
            v3::decode_payload(words)
        }

        fn encode(snapshot: &ClockErrorBoundV3) -> Self::Words {
            v3::encode_payload(snapshot)
        }

        /// The counter read's opening half only: every caller follows a reading with
        /// [`write_window`](LayoutImpl::write_window), which closes it, or reads again
        /// (see `counter::start_counter_read`).
        #[inline(always)]
        fn read_clocks() -> u64 {
            crate::counter::start_counter_read()
        }

        #[inline(always)]
        fn instant(reading: u64) -> u64 {
            reading
        }

        #[inline(always)]
        fn as_of_instant(snapshot: &ClockErrorBoundV3) -> u64 {
            snapshot.as_of_tsc()
        }

        fn instant_after(snapshot: &ClockErrorBoundV3, base: u64, span: Duration) -> u64 {
            // Only schedules re-reads: with no period to convert by (a status that needs
            // none), count one tick per nanosecond, which any supported counter outpaces.
            let ticks = if snapshot.period_frac() == 0 {
                u64::try_from(span.as_nanos()).unwrap_or(u64::MAX)
            } else {
                snapshot
                    .counter_at(span)
                    .saturating_sub(snapshot.as_of_tsc())
            };
            base.saturating_add(ticks)
        }

        #[inline(always)]
        fn write_window(
            snapshot: &ClockErrorBoundV3,
            counter: u64,
            grace: Duration,
            out: &mut TimeWindow,
        ) -> Result<(), ShmError> {
            let result = snapshot.write_window_at(counter, grace, out);
            // Closes the counter read `read_clocks` opened, after the arithmetic.
            crate::counter::finish_counter_read();
            result
        }

        #[inline(always)]
        fn disruption_support(snapshot: &ClockErrorBoundV3) -> bool {
            snapshot.clock_disruption_support_enabled()
        }

        #[inline(always)]
        fn disruption_marker(snapshot: &ClockErrorBoundV3) -> u64 {
            snapshot.disruption_marker()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        assert_eq!(check_header(MAGIC, 80, 80, 80), Ok(()));
        assert_eq!(check_header(MAGIC, 4096, 80, 4096), Ok(()));
        assert_eq!(
            check_header([0, 0], 80, 80, 80),
            Err(Malformed::BadMagic {
                found: [0, 0],
                expected: MAGIC
            })
        );
        for small in [0, 15, 79] {
            assert_eq!(
                check_header(MAGIC, small, 80, 80),
                Err(Malformed::SegsizeTooSmall {
                    segsize: small,
                    needed: 80
                })
            );
        }
        assert_eq!(
            check_header(MAGIC, 81, 80, 80),
            Err(Malformed::SegsizeBeyondFile {
                segsize: 81,
                file_len: 80
            })
        );
    }
}
