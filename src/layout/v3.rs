//! Layout version 3 (`/var/run/clockbound/shm1`, ClockBound 3.x): the counter-based payload.
//!
//! ```text
//! offset size field
//!      0    8 magic              as layout 2
//!      8    4 segsize            u32, 104
//!     12    2 version            u16 0x0303: high byte = oldest layout a reader must
//!                                understand, low byte = layout written
//!     14    2 generation         as layout 2
//!     16    8 as_of_tsc          u64, counter value at the update
//!     24   16 as_of              i64 sec, i64 nsec: true time (UTC) at as_of_tsc
//!     40   16 void_after         i64 sec, i64 nsec: as_of + 1000 s
//!     56    8 period_frac        u64: seconds per tick = period_frac / 2^(64 + period_shift)
//!     64    8 period_err_frac    u64: relative period error = period_err_frac / 2^(64 + period_err_shift)
//!     72    8 bound_nsec         i64
//!     80    8 disruption_marker  u64
//!     88    4 max_drift_ppb      u32
//!     92    4 clock_status       i32, 0..=3
//!     96    1 disruption support u8, 0 or 1
//!     97    1 period_shift       u8, 0..=63
//!     98    1 period_err_shift   u8, 0..=63
//!     99    5 padding
//! ```
//!
//! Native endian, like layout 2; the header and the seqlock are the same. The payload moves
//! as eleven native `u64` words; this module turns words into a validated
//! [`ClockErrorBoundV3`] and back. Pure data handling: no mapping, no atomics, no `unsafe`.

use super::HEADER_LEN;
use crate::error::Malformed;
use crate::snapshot::ClockErrorBoundV3;
use crate::time::ClockStatus;
use crate::time::Timespec;

/// Bytes of a layout-3 segment: header and payload.
pub(crate) const SEGMENT_LEN: usize = 104;
/// Bytes of the layout-3 payload.
pub(crate) const PAYLOAD_LEN: usize = 88;
/// The payload as the seqlock moves it: eleven native-endian words.
pub(crate) const PAYLOAD_WORDS: usize = 11;
/// The payload words.
pub(crate) type PayloadWords = [u64; PAYLOAD_WORDS];

const _: () = assert!(SEGMENT_LEN == HEADER_LEN + PAYLOAD_LEN && PAYLOAD_LEN == PAYLOAD_WORDS * 8);
// The snapshot type mirrors the payload byte for byte.
const _: () = assert!(size_of::<ClockErrorBoundV3>() == PAYLOAD_LEN);

/// Builds a snapshot from payload words, validating every field before a value exists: a
/// status outside 0..=3, a flag byte other than 0/1, nanoseconds out of range in `as_of` or
/// `void_after`, a negative bound, a drift of 1e9 ppb or more, a shift above 63, and a zero
/// period under a trusted status are errors. Padding bytes are ignored.
#[inline(always)]
pub(crate) fn decode_payload(words: &PayloadWords) -> Result<ClockErrorBoundV3, Malformed> {
    let as_of_tsc = words[0];
    let as_of = decode_time("as_of", words[1], words[2])?;
    let void_after = decode_time("void_after", words[3], words[4])?;
    let period_frac = words[5];
    let period_err_frac = words[6];
    let bound_nsec = words[7] as i64;
    let disruption_marker = words[8];
    let [d0, d1, d2, d3, s0, s1, s2, s3] = words[9].to_ne_bytes();
    let max_drift_ppb = u32::from_ne_bytes([d0, d1, d2, d3]);
    let raw_status = i32::from_ne_bytes([s0, s1, s2, s3]);
    let clock_status =
        ClockStatus::from_wire(raw_status).ok_or(Malformed::ClockStatus { found: raw_status })?;
    let [flag, period_shift, period_err_shift, ..] = words[10].to_ne_bytes();
    let clock_disruption_support_enabled = match flag {
        0 => false,
        1 => true,
        found => return Err(Malformed::DisruptionFlag { found }),
    };
    let ceb = ClockErrorBoundV3::builder()
        .as_of_tsc(as_of_tsc)
        .as_of(as_of)
        .void_after(void_after)
        .period_frac(period_frac)
        .period_shift(period_shift)
        .period_err_frac(period_err_frac)
        .period_err_shift(period_err_shift)
        .bound_nsec(bound_nsec)
        .disruption_marker(disruption_marker)
        .max_drift_ppb(max_drift_ppb)
        .clock_status(clock_status)
        .clock_disruption_support_enabled(clock_disruption_support_enabled)
        .build();
    ceb.check_arithmetic_fields()?;
    Ok(ceb)
}

#[inline(always)]
fn decode_time(field: &'static str, sec: u64, nsec: u64) -> Result<Timespec, Malformed> {
    let nsec = nsec as i64;
    Timespec::from_normalised(sec as i64, nsec).ok_or(Malformed::Nanoseconds { field, found: nsec })
}

/// The payload words for a snapshot, padding zeroed.
pub(crate) fn encode_payload(ceb: &ClockErrorBoundV3) -> PayloadWords {
    let [d0, d1, d2, d3] = ceb.max_drift_ppb().to_ne_bytes();
    let [s0, s1, s2, s3] = ceb.clock_status().to_wire().to_ne_bytes();
    let flag = u8::from(ceb.clock_disruption_support_enabled());
    [
        ceb.as_of_tsc(),
        ceb.as_of().sec() as u64,
        ceb.as_of().nsec() as u64,
        ceb.void_after().sec() as u64,
        ceb.void_after().nsec() as u64,
        ceb.period_frac(),
        ceb.period_err_frac(),
        ceb.bound_nsec() as u64,
        ceb.disruption_marker(),
        u64::from_ne_bytes([d0, d1, d2, d3, s0, s1, s2, s3]),
        u64::from_ne_bytes([
            flag,
            ceb.period_shift(),
            ceb.period_err_shift(),
            0,
            0,
            0,
            0,
            0,
        ]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ClockErrorBoundV3 {
        ClockErrorBoundV3::builder()
            .as_of_tsc(0x0102_0304_0506_0708)
            .as_of(Timespec::new(1_700_000_000, 2))
            .void_after(Timespec::new(1_700_001_000, 3))
            .period_frac(0x8000_0000_0000_0011)
            .period_shift(29)
            .period_err_frac(0x9000_0000_0000_0022)
            .period_err_shift(23)
            .bound_nsec(5)
            .disruption_marker(6)
            .max_drift_ppb(7)
            .clock_status(ClockStatus::FreeRunning)
            .clock_disruption_support_enabled(true)
            .build()
    }

    fn bytes(words: &PayloadWords) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn encode_then_decode_is_identity() {
        let c = sample();
        assert_eq!(decode_payload(&encode_payload(&c)), Ok(c));
        // Every status and both flag values.
        for status in [
            ClockStatus::Unknown,
            ClockStatus::Synchronized,
            ClockStatus::FreeRunning,
            ClockStatus::Disrupted,
        ] {
            for flag in [false, true] {
                let c = ClockErrorBoundV3::builder()
                    .period_frac(1)
                    .clock_status(status)
                    .clock_disruption_support_enabled(flag)
                    .build();
                assert_eq!(decode_payload(&encode_payload(&c)), Ok(c));
            }
        }
    }

    #[test]
    fn encoded_bytes_sit_at_the_protocol_offsets() {
        let b = bytes(&encode_payload(&sample()));
        assert_eq!(b.len(), PAYLOAD_LEN);
        // `off` is the offset in the segment; the payload starts after the header.
        let at = |off: usize, len: usize| b[off - HEADER_LEN..off - HEADER_LEN + len].to_vec();
        assert_eq!(at(16, 8), 0x0102_0304_0506_0708u64.to_ne_bytes());
        assert_eq!(at(24, 8), 1_700_000_000i64.to_ne_bytes());
        assert_eq!(at(32, 8), 2i64.to_ne_bytes());
        assert_eq!(at(40, 8), 1_700_001_000i64.to_ne_bytes());
        assert_eq!(at(48, 8), 3i64.to_ne_bytes());
        assert_eq!(at(56, 8), 0x8000_0000_0000_0011u64.to_ne_bytes());
        assert_eq!(at(64, 8), 0x9000_0000_0000_0022u64.to_ne_bytes());
        assert_eq!(at(72, 8), 5i64.to_ne_bytes());
        assert_eq!(at(80, 8), 6u64.to_ne_bytes());
        assert_eq!(at(88, 4), 7u32.to_ne_bytes());
        assert_eq!(at(92, 4), 2i32.to_ne_bytes());
        assert_eq!(at(96, 1), [1]);
        assert_eq!(at(97, 1), [29]);
        assert_eq!(at(98, 1), [23]);
        assert_eq!(at(99, 5), [0; 5]);
    }

    #[test]
    fn decode_rejects_every_invalid_field() {
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
        let tail = |flag: u8, shift: u8, err_shift: u8| {
            u64::from_ne_bytes([flag, shift, err_shift, 0, 0, 0, 0, 0])
        };
        for bad in [4, -1, i32::MAX, i32::MIN] {
            assert_eq!(
                with(9, status_word(7, bad)),
                Err(Malformed::ClockStatus { found: bad })
            );
        }
        assert_eq!(
            with(9, status_word(1_000_000_000, 1)),
            Err(Malformed::DriftTooLarge {
                found: 1_000_000_000
            })
        );
        assert_eq!(
            with(10, tail(2, 29, 23)),
            Err(Malformed::DisruptionFlag { found: 2 })
        );
        assert_eq!(
            with(10, tail(1, 64, 23)),
            Err(Malformed::ShiftTooLarge {
                field: "period_shift",
                found: 64
            })
        );
        assert_eq!(
            with(10, tail(1, 29, 255)),
            Err(Malformed::ShiftTooLarge {
                field: "period_err_shift",
                found: 255
            })
        );
        assert_eq!(
            with(2, 1_000_000_000),
            Err(Malformed::Nanoseconds {
                field: "as_of",
                found: 1_000_000_000
            })
        );
        assert_eq!(
            with(4, u64::MAX),
            Err(Malformed::Nanoseconds {
                field: "void_after",
                found: -1
            })
        );
        assert_eq!(
            with(7, u64::MAX),
            Err(Malformed::NegativeBound { found: -1 })
        );
        // A zero period is refused under a trusted status only.
        assert_eq!(with(5, 0), Err(Malformed::ZeroPeriod { clock_status: 2 }));
        for status in [0, 3] {
            let mut words = good;
            words[5] = 0;
            words[9] = status_word(7, status);
            assert!(decode_payload(&words).is_ok(), "status {status}");
        }
        // The limits themselves are valid.
        assert!(with(10, tail(0, 63, 63)).is_ok());
        assert!(with(9, status_word(999_999_999, 1)).is_ok());
        // Padding is not judged.
        assert!(with(10, u64::from_ne_bytes([1, 29, 23, 9, 9, 9, 9, 9])).is_ok());
    }
}
