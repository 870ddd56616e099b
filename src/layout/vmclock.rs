//! The VMClock page's wire format: what a guest kernel's `vmclock` driver exposes at
//! `/dev/vmclock0`, as atomic cells, and its decoding into a validated [`VmClockSnapshot`].
//! How it is read (the seqlock, the disruption check) is in the crate's `vmclock` module
//! ([`VmClockReader`](crate::VmClockReader)).
//!
//! # Wire format (version 1, little endian by the kernel ABI)
//!
//! ```text
//! offset size field
//!      0    4 magic                                  u32 0x4B4C4356 ("VCLK")
//!      4    4 size                                   u32, bytes of the structure (>= 104)
//!      8    2 version                                u16, 1
//!     10    1 counter_id                             u8
//!     11    1 time_type                              u8
//!     12    4 seq_count                              u32 seqlock counter, odd = updating
//!     16    8 disruption_marker                      u64
//!     24    8 flags                                  u64
//!     32    2 padding
//!     34    1 clock_status                           u8, 0..=4
//!     35    1 leap_second_smearing_hint              u8
//!     36    2 tai_offset_sec                         i16
//!     38    1 leap_indicator                         u8
//!     39    1 counter_period_shift                   u8
//!     40    8 counter_value                          u64
//!     48    8 counter_period_frac_sec                u64
//!     56    8 counter_period_esterror_rate_frac_sec  u64
//!     64    8 counter_period_maxerror_rate_frac_sec  u64
//!     72    8 time_sec                               u64
//!     80    8 time_frac_sec                          u64
//!     88    8 time_esterror_nanosec                  u64
//!     96    8 time_maxerror_nanosec                  u64
//! ```
//!

use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, fence};

use crate::error::VmClockMalformed;

/// The magic number that opens a VMClock page ("VCLK" in little endian).
pub(crate) const VMCLOCK_MAGIC: u32 = 0x4B4C_4356;
/// The structure version this crate reads.
const VMCLOCK_VERSION: u16 = 1;
/// Bytes of the structure this crate reads: the least a page's `size` may say.
pub(crate) const VMCLOCK_LEN: usize = 104;
/// The most this crate maps: one page (see `VmClockMapping` for why this much).
pub(crate) const VMCLOCK_MAP_LEN: usize = 4096;

/// 8-byte words from offset 16 to the end of the structure.
const BODY_WORDS: usize = (VMCLOCK_LEN - 16) / 8;
/// Index in the body of each word, by the field at its start (offset = 16 + 8 * index).
const W_MARKER: usize = 0;
const W_FLAGS: usize = 1;
/// Offset 32: padding (2), clock_status, leap_second_smearing_hint, tai_offset_sec (2),
/// leap_indicator, counter_period_shift.
const W_STATUS: usize = 2;
const W_COUNTER_VALUE: usize = 3;
const W_PERIOD_FRAC: usize = 4;
const W_PERIOD_ESTERROR_RATE: usize = 5;
const W_PERIOD_MAXERROR_RATE: usize = 6;
const W_TIME_SEC: usize = 7;
const W_TIME_FRAC: usize = 8;
const W_TIME_ESTERROR: usize = 9;
const W_TIME_MAXERROR: usize = 10;

/// The VMClock page as atomic cells at the ABI's offsets. Only loads are offered: the page
/// is mapped read-only and belongs to the hypervisor.
#[repr(C, align(8))]
pub(crate) struct VmClockCells {
    magic: AtomicU32,
    size: AtomicU32,
    version: AtomicU16,
    counter_id: AtomicU8,
    time_type: AtomicU8,
    seq_count: AtomicU32,
    body: [AtomicU64; BODY_WORDS],
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<VmClockCells>() == VMCLOCK_LEN);
    assert!(align_of::<VmClockCells>() == 8);
    assert!(offset_of!(VmClockCells, size) == 4);
    assert!(offset_of!(VmClockCells, version) == 8);
    assert!(offset_of!(VmClockCells, counter_id) == 10);
    assert!(offset_of!(VmClockCells, time_type) == 11);
    assert!(offset_of!(VmClockCells, seq_count) == 12);
    assert!(offset_of!(VmClockCells, body) == 16);
    assert!(16 + 8 * W_MARKER == 16 && 16 + 8 * W_STATUS == 32 && 16 + 8 * W_TIME_MAXERROR == 96);
};

impl VmClockCells {
    /// The seqlock's first load: `seq_count`, relaxed, then an acquire fence (the page is
    /// mapped read-only, where std documents relaxed loads only).
    #[inline(always)]
    pub(crate) fn load_seq_count(&self) -> u32 {
        let seq_count = self.seq_count.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        u32::from_le(seq_count)
    }

    /// Copies every field with relaxed loads, then (acquire fence) re-loads `seq_count`:
    /// the copy is consistent only if that returns `seq_count`, the even value the first
    /// load returned.
    pub(crate) fn copy_if_unchanged(&self, seq_count: u32) -> Option<RawPage> {
        let mut body = [0u64; BODY_WORDS];
        for (word, cell) in body.iter_mut().zip(&self.body) {
            *word = cell.load(Ordering::Relaxed);
        }
        let page = RawPage {
            magic: u32::from_le(self.magic.load(Ordering::Relaxed)),
            size: u32::from_le(self.size.load(Ordering::Relaxed)),
            version: u16::from_le(self.version.load(Ordering::Relaxed)),
            counter_id: self.counter_id.load(Ordering::Relaxed),
            time_type: self.time_type.load(Ordering::Relaxed),
            seq_count,
            body,
        };
        fence(Ordering::Acquire);
        (u32::from_le(self.seq_count.load(Ordering::Relaxed)) == seq_count).then_some(page)
    }
}

/// A consistent copy of the page: header fields decoded, body words as loaded (their bytes
/// in memory order, decoded by the accessors).
#[derive(Copy, Clone, Debug)]
pub(crate) struct RawPage {
    magic: u32,
    size: u32,
    version: u16,
    counter_id: u8,
    time_type: u8,
    pub(crate) seq_count: u32,
    body: [u64; BODY_WORDS],
}

impl RawPage {
    /// The little-endian `u64` field in body word `index`.
    fn le_u64(&self, index: usize) -> u64 {
        u64::from_le(self.body[index])
    }

    /// The bytes of body word `index` in memory order.
    fn bytes(&self, index: usize) -> [u8; 8] {
        self.body[index].to_ne_bytes()
    }

    pub(crate) fn disruption_marker(&self) -> u64 {
        self.le_u64(W_MARKER)
    }

    /// The header checks: magic, version, and `size` between the structure's length and the
    /// bytes mapped.
    pub(crate) fn check_header(&self, mapped: usize) -> Result<(), VmClockMalformed> {
        if self.magic != VMCLOCK_MAGIC {
            return Err(VmClockMalformed::BadMagic {
                found: self.magic,
                expected: VMCLOCK_MAGIC,
            });
        }
        if self.version != VMCLOCK_VERSION {
            return Err(VmClockMalformed::Version {
                found: self.version,
                expected: VMCLOCK_VERSION,
            });
        }
        if (self.size as usize) < VMCLOCK_LEN {
            return Err(VmClockMalformed::SizeTooSmall {
                size: self.size,
                needed: VMCLOCK_LEN as u32,
            });
        }
        if self.size as usize > mapped {
            return Err(VmClockMalformed::SizeBeyondMapping {
                size: self.size,
                mapped: mapped as u64,
            });
        }
        Ok(())
    }

    /// Every field, validated.
    pub(crate) fn decode(&self) -> Result<VmClockSnapshot, VmClockMalformed> {
        let [_, _, status, smearing, tai0, tai1, leap, shift] = self.bytes(W_STATUS);
        let clock_status = VmClockStatus::from_wire(status)
            .ok_or(VmClockMalformed::ClockStatus { found: status })?;
        Ok(VmClockSnapshot {
            seq_count: self.seq_count,
            size: self.size,
            version: self.version,
            counter_id: self.counter_id,
            time_type: self.time_type,
            disruption_marker: self.disruption_marker(),
            flags: self.le_u64(W_FLAGS),
            clock_status,
            leap_second_smearing_hint: smearing,
            tai_offset_sec: i16::from_le_bytes([tai0, tai1]),
            leap_indicator: leap,
            counter_period_shift: shift,
            counter_value: self.le_u64(W_COUNTER_VALUE),
            counter_period_frac_sec: self.le_u64(W_PERIOD_FRAC),
            counter_period_esterror_rate_frac_sec: self.le_u64(W_PERIOD_ESTERROR_RATE),
            counter_period_maxerror_rate_frac_sec: self.le_u64(W_PERIOD_MAXERROR_RATE),
            time_sec: self.le_u64(W_TIME_SEC),
            time_frac_sec: self.le_u64(W_TIME_FRAC),
            time_esterror_nanosec: self.le_u64(W_TIME_ESTERROR),
            time_maxerror_nanosec: self.le_u64(W_TIME_MAXERROR),
        })
    }
}

/// The hypervisor's view of the clock in a VMClock page (`clock_status`).
///
/// The discriminants are the wire values.
#[repr(u8)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum VmClockStatus {
    /// The hypervisor does not say.
    Unknown = 0,
    /// The hypervisor's clock is starting up.
    Initializing = 1,
    /// The hypervisor's clock is synchronised to a time source.
    Synchronized = 2,
    /// The hypervisor's clock runs without a time source.
    FreeRunning = 3,
    /// The hypervisor's clock is not to be relied on.
    Unreliable = 4,
}

impl VmClockStatus {
    /// The status for a wire value, `None` for anything but 0..=4: the `const` form of
    /// `VmClockStatus::try_from(value)`.
    #[must_use]
    pub const fn from_wire(value: u8) -> Option<VmClockStatus> {
        match value {
            0 => Some(VmClockStatus::Unknown),
            1 => Some(VmClockStatus::Initializing),
            2 => Some(VmClockStatus::Synchronized),
            3 => Some(VmClockStatus::FreeRunning),
            4 => Some(VmClockStatus::Unreliable),
            _ => None,
        }
    }

    /// The wire value of this status: the `const` form of `u8::from(status)`.
    #[must_use]
    pub const fn to_wire(self) -> u8 {
        self as u8
    }
}

/// The status for a wire value; the value itself back for anything but 0..=4.
impl TryFrom<u8> for VmClockStatus {
    type Error = u8;

    fn try_from(value: u8) -> Result<VmClockStatus, u8> {
        VmClockStatus::from_wire(value).ok_or(value)
    }
}

/// The wire value of a status.
impl From<VmClockStatus> for u8 {
    fn from(status: VmClockStatus) -> u8 {
        status.to_wire()
    }
}

/// One consistent, validated copy of a VMClock page (see [`VmClockReader::snapshot`](crate::VmClockReader::snapshot)).
///
/// Field names are those of the kernel ABI. Fractions of a second (`*_frac_sec`) are in
/// units of 2^-64 s.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VmClockSnapshot {
    /// The (even) seqlock counter the copy was taken at.
    pub seq_count: u32,
    /// Bytes of the structure, as the page declares (at least 104).
    pub size: u32,
    /// Structure version (1).
    pub version: u16,
    /// Which hardware counter the counter fields refer to (raw ABI value).
    pub counter_id: u8,
    /// Which time scale `time_sec` is on (raw ABI value).
    pub time_type: u8,
    /// Changes whenever the clock was disrupted (live migration, snapshot restore).
    pub disruption_marker: u64,
    /// Flag bits (raw ABI value).
    pub flags: u64,
    /// The hypervisor's view of its clock.
    pub clock_status: VmClockStatus,
    /// How leap seconds are smeared (raw ABI value).
    pub leap_second_smearing_hint: u8,
    /// TAI - UTC, in seconds.
    pub tai_offset_sec: i16,
    /// Upcoming leap second (raw ABI value).
    pub leap_indicator: u8,
    /// Shift applied to the counter period (raw ABI value).
    pub counter_period_shift: u8,
    /// The counter reading that `time_sec` / `time_frac_sec` correspond to.
    pub counter_value: u64,
    /// Counter period, in 2^-64 s (scaled by `counter_period_shift`).
    pub counter_period_frac_sec: u64,
    /// Estimated error rate of the counter period, in 2^-64 s.
    pub counter_period_esterror_rate_frac_sec: u64,
    /// Maximum error rate of the counter period, in 2^-64 s.
    pub counter_period_maxerror_rate_frac_sec: u64,
    /// Whole seconds of the time at `counter_value`.
    pub time_sec: u64,
    /// Fraction of a second of the time at `counter_value`, in 2^-64 s.
    pub time_frac_sec: u64,
    /// Estimated error of the time, nanoseconds.
    pub time_esterror_nanosec: u64,
    /// Maximum error of the time, nanoseconds.
    pub time_maxerror_nanosec: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(status_word: [u8; 8]) -> RawPage {
        let mut body = [0u64; BODY_WORDS];
        body[W_MARKER] = u64::to_le(0x1122_3344_5566_7788);
        body[W_STATUS] = u64::from_ne_bytes(status_word);
        body[W_TIME_SEC] = u64::to_le(1_700_000_000);
        RawPage {
            magic: VMCLOCK_MAGIC,
            size: 104,
            version: 1,
            counter_id: 0,
            time_type: 0,
            seq_count: 2,
            body,
        }
    }

    #[test]
    fn decodes_the_byte_fields_at_their_offsets() {
        // Offsets 32..40: padding, status 2, smearing 1, tai -37 (LE), leap 3, shift 5.
        let [t0, t1] = (-37i16).to_le_bytes();
        let snap = page([0, 0, 2, 1, t0, t1, 3, 5]).decode().unwrap();
        assert_eq!(snap.clock_status, VmClockStatus::Synchronized);
        assert_eq!(snap.leap_second_smearing_hint, 1);
        assert_eq!(snap.tai_offset_sec, -37);
        assert_eq!(snap.leap_indicator, 3);
        assert_eq!(snap.counter_period_shift, 5);
        assert_eq!(snap.disruption_marker, 0x1122_3344_5566_7788);
        assert_eq!(snap.time_sec, 1_700_000_000);
    }

    #[test]
    fn rejects_unknown_status_and_bad_headers() {
        assert_eq!(
            page([0, 0, 5, 0, 0, 0, 0, 0]).decode(),
            Err(VmClockMalformed::ClockStatus { found: 5 })
        );
        let mut p = page([0; 8]);
        assert_eq!(p.check_header(104), Ok(()));
        assert_eq!(
            p.check_header(103),
            Err(VmClockMalformed::SizeBeyondMapping {
                size: 104,
                mapped: 103
            })
        );
        p.size = 4096;
        assert_eq!(p.check_header(4096), Ok(()));
        p.version = 2;
        assert!(matches!(
            p.check_header(4096),
            Err(VmClockMalformed::Version { found: 2, .. })
        ));
    }

    #[test]
    fn status_wire_values_round_trip() {
        for v in 0..=255u8 {
            match VmClockStatus::from_wire(v) {
                Some(s) => {
                    assert_eq!(s.to_wire(), v);
                    assert_eq!(u8::from(s), v);
                    assert_eq!(VmClockStatus::try_from(v), Ok(s));
                }
                None => {
                    assert!(v > 4);
                    assert_eq!(VmClockStatus::try_from(v), Err(v));
                }
            }
        }
    }
}
