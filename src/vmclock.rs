//! [`VmClockReader`]: the hypervisor's VMClock page, read for its clock-disruption marker.
//!
//! A guest kernel with the `vmclock` driver exposes a page that the hypervisor keeps up to
//! date (`/dev/vmclock0`). Its `disruption_marker` changes whenever the guest's clock was
//! disrupted: a live migration, a snapshot restore. The ClockBound daemon copies the marker it
//! last saw into its segment, so a client that finds the two markers different knows the
//! daemon has not caught up with a disruption yet and must not trust the segment's window.
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
//! # Reading it
//!
//! The same seqlock discipline as the segment (see
//! [`docs::memory_model`](crate::docs::memory_model) for the argument): `seq_count` loaded
//! relaxed and followed by an acquire fence (odd: retry; only relaxed loads are documented
//! as fine on read-only memory), every field copied with relaxed
//! atomic loads of its natural size, an acquire fence, `seq_count` loaded again; the copy
//! counts only if both loads returned the same even value. Bytes 16..104 are copied as eleven
//! 8-byte words (each field lies wholly inside one word) and decoded afterwards, so no Rust
//! value with a validity invariant is ever built from the page's bytes: a `clock_status` of 9
//! is a typed error, not undefined behaviour. Multi-byte fields are converted from little
//! endian after loading, so the reader is also correct on a big-endian host.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, fence};

use crate::error::{ShmError, VmClockMalformed};
use crate::mapping::VmClockMapping;
use crate::sync::Backoff;

/// The default path of the VMClock device.
pub const VMCLOCK_DEFAULT_PATH: &str = "/dev/vmclock0";

/// The magic number that opens a VMClock page ("VCLK" in little endian).
const VMCLOCK_MAGIC: u32 = 0x4B4C_4356;
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
    fn load_seq_count(&self) -> u32 {
        let seq_count = self.seq_count.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        u32::from_le(seq_count)
    }

    /// Copies every field with relaxed loads, then (acquire fence) re-loads `seq_count`:
    /// the copy is consistent only if that returns `seq_count`, the even value the first
    /// load returned.
    fn copy_if_unchanged(&self, seq_count: u32) -> Option<RawPage> {
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
struct RawPage {
    magic: u32,
    size: u32,
    version: u16,
    counter_id: u8,
    time_type: u8,
    seq_count: u32,
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

    fn disruption_marker(&self) -> u64 {
        self.le_u64(W_MARKER)
    }

    /// The header checks: magic, version, and `size` between the structure's length and the
    /// bytes mapped.
    fn check_header(&self, mapped: usize) -> Result<(), VmClockMalformed> {
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
    fn decode(&self) -> Result<VmClockSnapshot, VmClockMalformed> {
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
    /// The status for a wire value, `None` for anything but 0..=4.
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

    /// The wire value of this status.
    #[must_use]
    pub const fn to_wire(self) -> u8 {
        self as u8
    }
}

/// One consistent, validated copy of a VMClock page (see [`VmClockReader::snapshot`]).
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

/// Why a fresh read did not produce a copy.
enum ReadFailure {
    /// `seq_count` odd through every retry, or moving on every attempt: the last value seen.
    NotReady(u32),
    /// The page is not a valid VMClock page.
    Malformed(VmClockMalformed),
}

/// Reads the VMClock page: the hypervisor's clock-disruption marker and clock information.
///
/// [`disruption_marker`](Self::disruption_marker) is built for a hot path: while the page's
/// `seq_count` is unchanged since the last read it is one atomic load and a compare, and
/// answers from the cached copy. A changed `seq_count` costs one seqlock copy of 104 bytes.
///
/// While the hypervisor is mid-update (odd `seq_count`) the reader retries for a few
/// microseconds (bounded back-off); if the update does not finish it answers from the last
/// consistent copy, and does not wait again for that same odd value. With no earlier copy (at
/// [`open`](Self::open)) that is [`ShmError::VmClockNotReady`].
///
/// Clones share the mapping and each keep their own cache: one per thread costs no shared
/// write.
///
/// ```no_run
/// use clockbound_shm::{VmClockReader, VMCLOCK_DEFAULT_PATH};
///
/// let mut vmclock = VmClockReader::open(VMCLOCK_DEFAULT_PATH)?;
/// let marker = vmclock.disruption_marker()?;
/// println!("disruption marker {marker}, status {:?}", vmclock.snapshot()?.clock_status);
/// # Ok::<(), clockbound_shm::ShmError>(())
/// ```
#[derive(Clone, Debug)]
pub struct VmClockReader {
    mapped: Arc<MappedPage>,
    watch: MarkerWatch,
    /// The last consistent copy of the whole page (at `watch.seq_count`).
    page: RawPage,
}

/// The part of a VMClock reader that the disruption check keeps per reader (and per thread
/// of a [`SharedClockBound`](crate::SharedClockBound)): the marker and the `seq_count` it was
/// read at, plain data. The page itself is passed in by whoever owns it, at each call, so
/// that per-thread state never keeps a mapping alive. Cheap when nothing changed: one atomic
/// load and a compare.
#[derive(Copy, Clone, Debug)]
pub(crate) struct MarkerWatch {
    seq_count: u32,
    /// An odd `seq_count` already waited on in vain: answer from the cache at once while it
    /// stays, rather than spend the back-off on every call. [`NOT_STUCK`] (even, so never a
    /// stuck value) when there is none: a plain `u32`, not an `Option`, keeps the watch at
    /// 16 bytes, which the per-thread budget of `SharedClockBound` counts on.
    stuck_odd: u32,
    marker: u64,
}

/// [`MarkerWatch::stuck_odd`] when no odd `seq_count` is stuck.
const NOT_STUCK: u32 = 0;

/// A mapped page and its path (for errors).
#[derive(Debug)]
pub(crate) struct MappedPage {
    mapping: VmClockMapping,
    path: Arc<Path>,
}

impl MappedPage {
    /// Opens and maps the page at `path` and takes a first consistent copy (the rules of
    /// [`VmClockReader::open`]).
    fn open(path: &Path) -> Result<(MappedPage, RawPage), ShmError> {
        let path: Arc<Path> = Arc::from(path);
        let io_error = |operation: &'static str| {
            let path = Arc::clone(&path);
            move |source: io::Error| ShmError::VmClockIo {
                operation,
                path,
                source,
            }
        };
        // Non-blocking, so that a FIFO at the path cannot hang the open; the type is checked
        // on the file actually opened.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(io_error("open"))?;
        let metadata = file.metadata().map_err(io_error("stat"))?;
        let file_type = metadata.file_type();
        if !file_type.is_file() && !file_type.is_char_device() {
            return Err(io_error("open")(not_mappable()));
        }
        if metadata.is_file() && metadata.len() < VMCLOCK_LEN as u64 {
            return Err(ShmError::VmClockMalformed {
                path,
                problem: VmClockMalformed::FileTooShort {
                    len: metadata.len(),
                    needed: VMCLOCK_LEN as u64,
                },
            });
        }
        // `VmClockMapping::read_only` refuses other file types (replaced since the look).
        let mapping = VmClockMapping::read_only(&file, &metadata).map_err(io_error("map"))?;
        drop(file);
        match read_fresh(mapping.cells(), mapping.len()) {
            Ok(page) => Ok((MappedPage { mapping, path }, page)),
            Err(ReadFailure::NotReady(seq_count)) => {
                Err(ShmError::VmClockNotReady { path, seq_count })
            }
            Err(ReadFailure::Malformed(problem)) => {
                Err(ShmError::VmClockMalformed { path, problem })
            }
        }
    }

    /// The page's `seq_count` now (one atomic load).
    #[inline(always)]
    fn seq_count(&self) -> u32 {
        self.mapping.cells().load_seq_count()
    }
}

impl MarkerWatch {
    /// A watch answering for the consistent copy `page`.
    fn at(page: &RawPage) -> MarkerWatch {
        MarkerWatch {
            seq_count: page.seq_count,
            stuck_odd: NOT_STUCK,
            marker: page.disruption_marker(),
        }
    }

    /// The current disruption marker of `mapped`, the page this watch was taken on (see
    /// [`VmClockReader::disruption_marker`]).
    #[inline]
    pub(crate) fn marker(&mut self, mapped: &MappedPage) -> Result<u64, ShmError> {
        if mapped.seq_count() != self.seq_count {
            self.refresh(mapped)?;
        }
        Ok(self.marker)
    }

    /// The `seq_count` the cached marker answers for (an odd one while an update is stuck).
    pub(crate) fn seen_seq_count(&self) -> u32 {
        if self.stuck_odd == NOT_STUCK {
            self.seq_count
        } else {
            self.stuck_odd
        }
    }

    /// The cached marker, without looking at the page.
    pub(crate) fn cached_marker(&self) -> u64 {
        self.marker
    }

    /// `seq_count` moved: take a fresh copy (returned), or keep the cached marker while an
    /// update is in progress.
    #[cold]
    #[inline(never)]
    fn refresh(&mut self, mapped: &MappedPage) -> Result<Option<RawPage>, ShmError> {
        let mapping = &mapped.mapping;
        let seq_count = mapping.cells().load_seq_count();
        if seq_count % 2 == 1 && self.stuck_odd == seq_count {
            return Ok(None);
        }
        match read_fresh(mapping.cells(), mapping.len()) {
            Ok(page) => {
                *self = MarkerWatch::at(&page);
                Ok(Some(page))
            }
            Err(ReadFailure::NotReady(seen)) => {
                if seen % 2 == 1 {
                    self.stuck_odd = seen;
                }
                Ok(None)
            }
            Err(ReadFailure::Malformed(problem)) => Err(ShmError::VmClockMalformed {
                path: Arc::clone(&mapped.path),
                problem,
            }),
        }
    }
}

impl VmClockReader {
    /// Opens and maps the VMClock page at `path` ([`VMCLOCK_DEFAULT_PATH`] on a VMClock-capable
    /// guest; any regular file with the layout for tests), checks it and takes a first copy.
    ///
    /// A character device is mapped for one page, a regular file for at most one page and
    /// never past its end (so a file cannot cause `SIGBUS` at open); the `size` field must
    /// lie between 104 and the bytes mapped. The file descriptor is closed once mapped.
    ///
    /// # Errors
    /// - [`ShmError::VmClockIo`]: the path cannot be opened, stat'ed or mapped (errno kept:
    ///   `ENOENT` when the kernel exposes no VMClock device, `EACCES` for permissions), or
    ///   it is neither a regular file nor a character device.
    /// - [`ShmError::VmClockMalformed`]: a file shorter than 104 bytes, a bad magic, a
    ///   version other than 1, a `size` below 104 or beyond the mapping.
    /// - [`ShmError::VmClockNotReady`]: `seq_count` stayed odd (or kept moving) through the
    ///   bounded retries.
    ///
    /// A `clock_status` outside the five wire values is not an error here: the marker is
    /// still meaningful; [`snapshot`](Self::snapshot) reports it.
    pub fn open(path: impl AsRef<Path>) -> Result<VmClockReader, ShmError> {
        let (mapped, page) = MappedPage::open(path.as_ref())?;
        Ok(VmClockReader {
            mapped: Arc::new(mapped),
            watch: MarkerWatch::at(&page),
            page,
        })
    }

    /// The page's current disruption marker: the cached one while `seq_count` is unchanged
    /// (one atomic load and a compare), otherwise from a fresh consistent copy.
    ///
    /// Compare it with the segment's
    /// [`ClockErrorBound::disruption_marker`](crate::ClockErrorBound::disruption_marker):
    /// when they differ, the clock was disrupted after the daemon's last update and the
    /// segment's window must not be trusted.
    ///
    /// # Errors
    /// [`ShmError::VmClockMalformed`] when the page's header became invalid (bad magic,
    /// version, `size`). An update in progress is not an error: the last consistent copy
    /// answers (see the type's docs).
    #[inline]
    pub fn disruption_marker(&mut self) -> Result<u64, ShmError> {
        if self.mapped.seq_count() != self.watch.seq_count {
            if let Some(page) = self.watch.refresh(&self.mapped)? {
                self.page = page;
            }
        }
        Ok(self.watch.marker)
    }

    /// A validated copy of the whole page, current as [`disruption_marker`](Self::disruption_marker)
    /// defines it.
    ///
    /// # Errors
    /// As [`disruption_marker`](Self::disruption_marker), and
    /// [`ShmError::VmClockMalformed`] with [`VmClockMalformed::ClockStatus`] when
    /// `clock_status` is not one of the five wire values.
    pub fn snapshot(&mut self) -> Result<VmClockSnapshot, ShmError> {
        self.disruption_marker()?;
        self.page
            .decode()
            .map_err(|problem| ShmError::VmClockMalformed {
                path: Arc::clone(&self.mapped.path),
                problem,
            })
    }

    /// The device or file this reader maps.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.mapped.path
    }

    /// The `seq_count` of the copy the reader holds (even).
    #[must_use]
    pub fn seq_count(&self) -> u32 {
        self.watch.seq_count
    }
}

/// The VMClock page of one reader or shared value, for its disruption check: opened the
/// first time a snapshot says the daemon tracks disruptions (at open, or later when a
/// restarted daemon turns the support on), then read by every watch of that reader or value,
/// each passing the source in at each call. The source is owned by the reader or the shared
/// value alone, so the mapping goes with it.
#[derive(Debug)]
pub(crate) struct VmClockSource {
    path: Arc<Path>,
    opened: std::sync::OnceLock<OpenedPage>,
    opening: parking_lot::Mutex<()>,
}

/// A source's page once opened, with the watch of its first copy (where new watches start).
#[derive(Debug)]
struct OpenedPage {
    mapped: MappedPage,
    first: MarkerWatch,
}

impl VmClockSource {
    /// A source for the page at `path`, not opened yet.
    pub(crate) fn new(path: &Path) -> VmClockSource {
        VmClockSource {
            path: Arc::from(path),
            opened: std::sync::OnceLock::new(),
            opening: parking_lot::Mutex::new(()),
        }
    }

    /// The page, once someone has opened it: one acquire load (the hot path).
    #[inline(always)]
    pub(crate) fn get(&self) -> Option<&MappedPage> {
        self.opened.get().map(|opened| &opened.mapped)
    }

    /// The page and a new watch on it, opening it first if no one has.
    ///
    /// # Errors
    /// As [`VmClockReader::open`].
    #[cold]
    pub(crate) fn attach(&self) -> Result<(&MappedPage, MarkerWatch), ShmError> {
        let opened = match self.opened.get() {
            Some(opened) => opened,
            None => {
                let _opening = self.opening.lock();
                match self.opened.get() {
                    Some(opened) => opened,
                    None => {
                        let (mapped, page) = MappedPage::open(&self.path)?;
                        let first = MarkerWatch::at(&page);
                        // Under `opening`, so nobody else can have set it meanwhile.
                        self.opened.get_or_init(|| OpenedPage { mapped, first })
                    }
                }
            }
        };
        Ok((&opened.mapped, opened.first))
    }

    /// The page's `seq_count` now (one atomic load), once it is open.
    #[inline]
    pub(crate) fn current_seq_count(&self) -> Option<u32> {
        self.get().map(MappedPage::seq_count)
    }
}

fn not_mappable() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a regular file or a character device",
    )
}

/// One seqlock read with bounded retries: a consistent copy whose header is valid.
fn read_fresh(cells: &VmClockCells, mapped: usize) -> Result<RawPage, ReadFailure> {
    let backoff = Backoff::new();
    loop {
        let seq_count = cells.load_seq_count();
        if seq_count % 2 == 0 {
            if let Some(page) = cells.copy_if_unchanged(seq_count) {
                page.check_header(mapped).map_err(ReadFailure::Malformed)?;
                return Ok(page);
            }
        }
        if !backoff.wait() {
            return Err(ReadFailure::NotReady(cells.load_seq_count()));
        }
    }
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
                Some(s) => assert_eq!(s.to_wire(), v),
                None => assert!(v > 4),
            }
        }
    }
}
