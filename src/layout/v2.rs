//! Layout 2: the 64-byte payload of `/var/run/clockbound/shm0` (ClockBound 2.x, and 3.x for
//! older clients), decoded into a [`ClockErrorBound`]. The table is in
//! [`docs::protocol`](crate::docs::protocol).

use super::{decode_flag, decode_status, decode_time};
use crate::error::Malformed;
use crate::snapshot::ClockErrorBound;

/// Bytes of the layout-2 payload.
pub(crate) const PAYLOAD_LEN: usize = 64;
/// The payload as the seqlock moves it: eight native-endian words.
pub(crate) const PAYLOAD_WORDS: usize = PAYLOAD_LEN / 8;
pub(crate) type PayloadWords = [u64; PAYLOAD_WORDS];

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
    let clock_status = decode_status(i32::from_ne_bytes([s0, s1, s2, s3]))?;
    let clock_disruption_support_enabled = decode_flag(words[7].to_ne_bytes()[0])?;
    let ceb = ClockErrorBound::builder()
        .as_of(as_of)
        .void_after(void_after)
        .bound_nsec(bound_nsec)
        .disruption_marker(disruption_marker)
        .max_drift_ppb(max_drift_ppb)
        .clock_status(clock_status)
        .clock_disruption_support_enabled(clock_disruption_support_enabled)
        .build();
    ceb.check_arithmetic_fields()?;
    Ok(ceb)
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
    use crate::layout::PAYLOAD_OFFSET;
    use crate::time::ClockStatus;
    use crate::time::Timespec;

    fn sample() -> ClockErrorBound {
        ClockErrorBound::builder()
            .as_of(Timespec::new(1, 2))
            .void_after(Timespec::new(3, 4))
            .bound_nsec(5)
            .disruption_marker(6)
            .max_drift_ppb(7)
            .clock_status(ClockStatus::FreeRunning)
            .clock_disruption_support_enabled(true)
            .build()
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
}
