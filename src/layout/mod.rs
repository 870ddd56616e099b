//! The segment's wire format (layout version 2) and its validation.
//!
//! ```text
//! offset size field
//!      0    8 magic              two u32: 0x414D5A4E 0x43420200
//!      8    4 segsize            u32, bytes the writer mapped (80)
//!     12    2 version            u16, payload layout (2); 0 = wiped
//!     14    2 generation         u16, seqlock counter; 0 = never written, odd = updating
//!     16   16 as_of              i64 sec, i64 nsec (CLOCK_MONOTONIC_COARSE)
//!     32   16 void_after         i64 sec, i64 nsec (CLOCK_MONOTONIC_COARSE)
//!     48    8 bound_nsec         i64
//!     56    8 disruption_marker  u64
//!     64    4 max_drift_ppb      u32
//!     68    4 clock_status       i32, 0..=3
//!     72    1 disruption support u8, 0 or 1
//!     73    7 padding
//! ```
//!
//! Everything is native-endian. The payload is moved as eight native `u64` words (the unit
//! the seqlock copies atomically); this module turns words into a validated
//! [`ClockErrorBound`] and back, and checks a header. It is pure data handling: no memory
//! mapping, no atomics, no `unsafe`.

pub(crate) mod v3;

use crate::bound::{ClockErrorBound, ClockStatus};
use crate::error::Malformed;
use crate::timespec::Timespec;

/// The magic number that opens every ClockBound segment, as two native-endian `u32`.
pub const MAGIC: [u32; 2] = [0x414D_5A4E, 0x4342_0200];
/// The payload layout this crate reads and writes.
pub const LAYOUT_VERSION: u16 = 2;
/// Bytes of the header: magic, segsize, version, generation.
pub const HEADER_LEN: usize = 16;
/// Bytes of the layout-2 payload.
pub const PAYLOAD_LEN: usize = 64;
/// Bytes of a layout-2 segment, and the only bytes this crate maps.
pub const SEGMENT_LEN: usize = HEADER_LEN + PAYLOAD_LEN;

/// Byte offset of `segsize` in the header.
pub const SEGSIZE_OFFSET: usize = 8;
/// Byte offset of `version` in the header.
pub const VERSION_OFFSET: usize = 12;
/// Byte offset of `generation` in the header.
pub const GENERATION_OFFSET: usize = 14;
/// Byte offset of the payload (`as_of` is its first field).
pub const PAYLOAD_OFFSET: usize = HEADER_LEN;

/// The segment's header fields as read from the mapping at one moment, for diagnostics
/// (see [`ShmReader::header`](crate::ShmReader::header)).
///
/// Each field is a separate atomic load, not part of a seqlock copy: `generation` may have
/// moved on from the snapshot a reader holds, and a header read while the daemon rewrites
/// the segment may mix old and new values.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SegmentHeader {
    /// The two magic words, native endian ([`MAGIC`] in a valid segment).
    pub magic: [u32; 2],
    /// Bytes the writer mapped (80 for layout 2).
    pub segsize: u32,
    /// Payload layout version: 2, or 0 while the segment is wiped.
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
}

/// The payload as the seqlock moves it: eight native-endian words.
pub(crate) const PAYLOAD_WORDS: usize = PAYLOAD_LEN / 8;
pub(crate) type PayloadWords = [u64; PAYLOAD_WORDS];

const _: () = assert!(SEGMENT_LEN == 80 && PAYLOAD_LEN % 8 == 0);

/// Checks the parts of the header that do not change while a writer runs: the magic and the
/// segment size against the file's real size. The version is judged by the caller, because
/// 0 (wiped) and an unknown version are different errors with different remedies.
pub(crate) fn check_header(magic: [u32; 2], segsize: u32, file_len: u64) -> Result<(), Malformed> {
    if magic != MAGIC {
        return Err(Malformed::BadMagic {
            found: magic,
            expected: MAGIC,
        });
    }
    if (segsize as usize) < SEGMENT_LEN {
        return Err(Malformed::SegsizeTooSmall {
            segsize,
            needed: SEGMENT_LEN as u32,
        });
    }
    if u64::from(segsize) > file_len {
        return Err(Malformed::SegsizeBeyondFile { segsize, file_len });
    }
    Ok(())
}

/// Builds a snapshot from payload words, rejecting every value a [`ClockErrorBound`] cannot
/// honestly hold: a status outside 0..=3, a flag byte other than 0/1, nanoseconds out of
/// range, a negative bound, a drift of 1e9 ppb or more. Padding bytes are ignored.
#[inline(always)]
pub(crate) fn decode_payload(words: &PayloadWords) -> Result<ClockErrorBound, Malformed> {
    let as_of = decode_time("as_of", words[0], words[1])?;
    let void_after = decode_time("void_after", words[2], words[3])?;
    let bound_nsec = words[4] as i64;
    let disruption_marker = words[5];
    let [d0, d1, d2, d3, s0, s1, s2, s3] = words[6].to_ne_bytes();
    let max_drift_ppb = u32::from_ne_bytes([d0, d1, d2, d3]);
    let raw_status = i32::from_ne_bytes([s0, s1, s2, s3]);
    let clock_status =
        ClockStatus::from_wire(raw_status).ok_or(Malformed::ClockStatus { found: raw_status })?;
    let flag = words[7].to_ne_bytes()[0];
    let clock_disruption_support_enabled = match flag {
        0 => false,
        1 => true,
        found => return Err(Malformed::DisruptionFlag { found }),
    };
    let ceb = ClockErrorBound::new(
        as_of,
        void_after,
        bound_nsec,
        disruption_marker,
        max_drift_ppb,
        clock_status,
        clock_disruption_support_enabled,
    );
    ceb.check_arithmetic_fields()?;
    Ok(ceb)
}

#[inline(always)]
fn decode_time(field: &'static str, sec: u64, nsec: u64) -> Result<Timespec, Malformed> {
    let nsec = nsec as i64;
    Timespec::from_normalised(sec as i64, nsec).ok_or(Malformed::Nanoseconds { field, found: nsec })
}

/// The payload words for a snapshot, padding zeroed.
pub(crate) fn encode_payload(ceb: &ClockErrorBound) -> PayloadWords {
    let [d0, d1, d2, d3] = ceb.max_drift_ppb().to_ne_bytes();
    let [s0, s1, s2, s3] = ceb.clock_status().to_wire().to_ne_bytes();
    let flag = u8::from(ceb.clock_disruption_support_enabled());
    [
        ceb.as_of().sec() as u64,
        ceb.as_of().nsec() as u64,
        ceb.void_after().sec() as u64,
        ceb.void_after().nsec() as u64,
        ceb.bound_nsec() as u64,
        ceb.disruption_marker(),
        u64::from_ne_bytes([d0, d1, d2, d3, s0, s1, s2, s3]),
        u64::from_ne_bytes([flag, 0, 0, 0, 0, 0, 0, 0]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ClockErrorBound {
        ClockErrorBound::new(
            Timespec::new(1, 2),
            Timespec::new(3, 4),
            5,
            6,
            7,
            ClockStatus::FreeRunning,
            true,
        )
    }

    #[test]
    fn encode_then_decode_is_identity() {
        let c = sample();
        assert_eq!(decode_payload(&encode_payload(&c)), Ok(c));
    }

    #[test]
    fn encoded_bytes_sit_at_the_protocol_offsets() {
        let words = encode_payload(&sample());
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let at = |off: usize, len: usize| {
            bytes[off - PAYLOAD_OFFSET..off - PAYLOAD_OFFSET + len].to_vec()
        };
        assert_eq!(at(16, 8), 1i64.to_ne_bytes());
        assert_eq!(at(40, 8), 4i64.to_ne_bytes());
        assert_eq!(at(48, 8), 5i64.to_ne_bytes());
        assert_eq!(at(56, 8), 6u64.to_ne_bytes());
        assert_eq!(at(64, 4), 7u32.to_ne_bytes());
        assert_eq!(at(68, 4), 2i32.to_ne_bytes());
        assert_eq!(at(72, 8), [1, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn decode_rejects_what_a_snapshot_cannot_hold() {
        let good = encode_payload(&sample());
        let with = |i: usize, w: u64| {
            let mut words = good;
            words[i] = w;
            decode_payload(&words)
        };
        let status_word = |drift: u32, status: i32| {
            let [a, b, c, d] = drift.to_ne_bytes();
            let [e, f, g, h] = status.to_ne_bytes();
            u64::from_ne_bytes([a, b, c, d, e, f, g, h])
        };
        assert_eq!(
            with(6, status_word(7, 4)),
            Err(Malformed::ClockStatus { found: 4 })
        );
        assert_eq!(
            with(6, status_word(7, -1)),
            Err(Malformed::ClockStatus { found: -1 })
        );
        assert_eq!(
            with(6, status_word(1_000_000_000, 1)),
            Err(Malformed::DriftTooLarge {
                found: 1_000_000_000
            })
        );
        assert_eq!(
            with(7, u64::from_ne_bytes([2, 0, 0, 0, 0, 0, 0, 0])),
            Err(Malformed::DisruptionFlag { found: 2 })
        );
        assert_eq!(
            with(1, 1_000_000_000),
            Err(Malformed::Nanoseconds {
                field: "as_of",
                found: 1_000_000_000
            })
        );
        assert_eq!(
            with(3, u64::MAX),
            Err(Malformed::Nanoseconds {
                field: "void_after",
                found: -1
            })
        );
        assert_eq!(
            with(4, u64::MAX),
            Err(Malformed::NegativeBound { found: -1 })
        );
        // Padding is not judged.
        assert!(with(7, u64::from_ne_bytes([1, 9, 9, 9, 9, 9, 9, 9])).is_ok());
    }

    #[test]
    fn header_checks() {
        assert_eq!(check_header(MAGIC, 80, 80), Ok(()));
        assert_eq!(check_header(MAGIC, 4096, 4096), Ok(()));
        assert_eq!(
            check_header([0, 0], 80, 80),
            Err(Malformed::BadMagic {
                found: [0, 0],
                expected: MAGIC
            })
        );
        for small in [0, 15, 79] {
            assert_eq!(
                check_header(MAGIC, small, 80),
                Err(Malformed::SegsizeTooSmall {
                    segsize: small,
                    needed: 80
                })
            );
        }
        assert_eq!(
            check_header(MAGIC, 81, 80),
            Err(Malformed::SegsizeBeyondFile {
                segsize: 81,
                file_len: 80
            })
        );
    }
}
