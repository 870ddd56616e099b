//! [`VmClockReader`]: the hypervisor's VMClock page, read for its clock-disruption marker.
//!
//! A guest kernel with the `vmclock` driver exposes a page that the hypervisor keeps up to
//! date (`/dev/vmclock0`). Its `disruption_marker` changes whenever the guest's clock was
//! disrupted: a live migration, a snapshot restore. The ClockBound daemon copies the marker it
//! last saw into its segment, so a client that finds the two markers different knows the
//! daemon has not caught up with a disruption yet and must not trust the segment's window.
//!
//! The page's wire format is in [`layout::vmclock`](crate::layout::vmclock).
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

use crate::error::{ShmError, VmClockMalformed};
use crate::layout::vmclock::{RawPage, VMCLOCK_LEN, VmClockCells, VmClockSnapshot};
use crate::mapping::VmClockMapping;
use crate::sync::Backoff;

/// The default path of the VMClock device.
pub const VMCLOCK_DEFAULT_PATH: &str = "/dev/vmclock0";

/// Why a fresh read did not produce a copy.
enum PageCopyFailure {
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
        match copy_page(mapping.cells(), mapping.len()) {
            Ok(page) => Ok((MappedPage { mapping, path }, page)),
            Err(PageCopyFailure::NotReady(seq_count)) => {
                Err(ShmError::VmClockNotReady { path, seq_count })
            }
            Err(PageCopyFailure::Malformed(problem)) => {
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
            self.reread(mapped)?;
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
    fn reread(&mut self, mapped: &MappedPage) -> Result<Option<RawPage>, ShmError> {
        let mapping = &mapped.mapping;
        let seq_count = mapping.cells().load_seq_count();
        if seq_count % 2 == 1 && self.stuck_odd == seq_count {
            return Ok(None);
        }
        match copy_page(mapping.cells(), mapping.len()) {
            Ok(page) => {
                *self = MarkerWatch::at(&page);
                Ok(Some(page))
            }
            Err(PageCopyFailure::NotReady(seen)) => {
                if seen % 2 == 1 {
                    self.stuck_odd = seen;
                }
                Ok(None)
            }
            Err(PageCopyFailure::Malformed(problem)) => Err(ShmError::VmClockMalformed {
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
            if let Some(page) = self.watch.reread(&self.mapped)? {
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
fn copy_page(cells: &VmClockCells, mapped: usize) -> Result<RawPage, PageCopyFailure> {
    let backoff = Backoff::new();
    loop {
        let seq_count = cells.load_seq_count();
        if seq_count % 2 == 0 {
            if let Some(page) = cells.copy_if_unchanged(seq_count) {
                page.check_header(mapped)
                    .map_err(PageCopyFailure::Malformed)?;
                return Ok(page);
            }
        }
        if !backoff.wait() {
            return Err(PageCopyFailure::NotReady(cells.load_seq_count()));
        }
    }
}
