//! [`ShmReader`]: one process's zero-copy view of the segment, for one thread at a time.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use crate::bound::{ClockErrorBound, TimeWindow};
use crate::error::{Malformed, NotInitialized, ShmError};
use crate::layout::{self, LAYOUT_VERSION, SEGMENT_LEN};
use crate::mapping::SegmentMapping;
use crate::seqlock::{SegmentCells, SnapshotCache};

/// The default path of the ClockBound daemon's segment (layout version 2).
pub const CLOCKBOUND_SHM_DEFAULT_PATH: &str = "/var/run/clockbound/shm0";

/// An opened, validated segment: the file's mapping and its path. Shared by every reader
/// state that reads the same file ([`ShmReader`] owns one; a `SharedClockBound` shares one
/// between all its threads).
#[derive(Debug)]
pub(crate) struct MappedSegment {
    path: Arc<Path>,
    mapping: SegmentMapping,
}

impl MappedSegment {
    /// Opens, checks and maps the segment at `path`, and takes a first snapshot.
    ///
    /// # Errors
    /// See [`ShmReader::open`].
    pub(crate) fn open(path: &Path) -> Result<(MappedSegment, SnapshotCache), ShmError> {
        let path: Arc<Path> = Arc::from(path);
        let io_error = |operation: &'static str| {
            let path = Arc::clone(&path);
            move |source: io::Error| ShmError::Io {
                operation,
                path,
                source,
            }
        };
        let file = File::open(&path).map_err(io_error("open"))?;
        let metadata = file.metadata().map_err(io_error("stat"))?;
        if !metadata.is_file() {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
            return Err(io_error("map")(source));
        }
        let file_len = metadata.len();
        if file_len == 0 {
            return Err(ShmError::SegmentNotInitialized {
                path,
                reason: NotInitialized::EmptyFile,
            });
        }
        if file_len < SEGMENT_LEN as u64 {
            let problem = Malformed::FileTooShort {
                len: file_len,
                needed: SEGMENT_LEN as u64,
            };
            return Err(ShmError::malformed(Some(&path), problem));
        }
        let mapping = SegmentMapping::read_only(&file, file_len).map_err(io_error("map"))?;
        // The mapping outlives the descriptor: close it now rather than hold it for years.
        drop(file);

        let cells = mapping.cells();
        let (magic, segsize, version) = cells.header();
        layout::check_header(magic, segsize, file_len)
            .map_err(|p| ShmError::malformed(Some(&path), p))?;
        match version {
            LAYOUT_VERSION => {}
            0 => {
                return Err(ShmError::SegmentNotInitialized {
                    path,
                    reason: NotInitialized::Wiped,
                });
            }
            found => {
                return Err(ShmError::SegmentVersionNotSupported {
                    path,
                    found,
                    expected: LAYOUT_VERSION,
                });
            }
        }
        let cache = SnapshotCache::load(cells, &path)?;
        Ok((MappedSegment { path, mapping }, cache))
    }

    #[inline(always)]
    pub(crate) fn cells(&self) -> &SegmentCells {
        self.mapping.cells()
    }

    pub(crate) fn path(&self) -> &Arc<Path> {
        &self.path
    }
}

/// Reads the ClockBound segment: the fastest way to error-bounded time, for one thread.
///
/// `snapshot()` hands out a reference to the reader's last consistent snapshot and refreshes
/// it only when the segment's generation has moved, so the common call is one atomic load
/// and a compare: no lock, no copy, no system call. It needs `&mut self`, so a reader serves
/// one thread at a time; it is `Send`, so it can move between threads. To share one reader's
/// worth of state between many threads, use [`SharedClockBound`](crate::SharedClockBound).
///
/// Answers follow the ClockBound reader protocol: while the daemon is mid-update (odd
/// generation), has wiped the segment (version or generation 0), or keeps the generation
/// moving through every retry, `snapshot()` answers from the last good snapshot, whose
/// [`now`](ClockErrorBound::now) degrades to FreeRunning and then Unknown as it ages. It
/// never answers with a torn or unvalidated payload.
///
/// ```no_run
/// use clockbound_shm::{ClockStatus, ShmReader, CLOCKBOUND_SHM_DEFAULT_PATH};
///
/// let mut reader = ShmReader::open(CLOCKBOUND_SHM_DEFAULT_PATH)?;
/// let window = reader.snapshot()?.now()?;
/// if window.clock_status == ClockStatus::Synchronized {
///     println!("true time is in [{}, {}]", window.earliest, window.latest);
/// }
/// # Ok::<(), clockbound_shm::ShmError>(())
/// ```
///
/// A snapshot reference cannot be held across the next `snapshot()` call (it borrows the
/// reader mutably), so the cache can never change under a caller:
///
/// ```compile_fail,E0499
/// # fn f(mut reader: clockbound_shm::ShmReader) -> Result<(), clockbound_shm::ShmError> {
/// let first = reader.snapshot()?;
/// let second = reader.snapshot()?; // error: `reader` is still borrowed by `first`
/// assert_eq!(first, second);
/// # Ok(()) }
/// ```
///
/// Copy the snapshot (it is `Copy`, 64 bytes) to keep it:
///
/// ```
/// # fn f(mut reader: clockbound_shm::ShmReader) -> Result<(), clockbound_shm::ShmError> {
/// let first = *reader.snapshot()?;
/// let second = reader.snapshot()?;
/// assert!(first.as_of() <= second.as_of());
/// # Ok(()) }
/// ```
pub struct ShmReader {
    cache: SnapshotCache,
    segment: MappedSegment,
}

impl ShmReader {
    /// Opens the segment at `path`, given as a C string the way the released client takes
    /// it. Equivalent to [`open`](Self::open).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn new(path: &CStr) -> Result<ShmReader, ShmError> {
        ShmReader::open(Path::new(OsStr::from_bytes(path.to_bytes())))
    }

    /// Opens the segment at `path`, checks its header and takes a first snapshot.
    ///
    /// # Errors
    /// - [`ShmError::Io`]: the file cannot be opened, stat'ed or mapped (errno kept;
    ///   `ENOENT` usually means the daemon is not running, `EACCES` a permissions problem),
    ///   or it is not a regular file.
    /// - [`ShmError::SegmentNotInitialized`]: the file is empty, wiped (version 0), never
    ///   written (generation 0), or stuck mid-update with no earlier snapshot. The daemon
    ///   is starting or restarting: retry later.
    /// - [`ShmError::SegmentMalformed`]: shorter than 80 bytes, bad magic, `segsize` below
    ///   80 or beyond the file, or a payload with invalid fields.
    /// - [`ShmError::SegmentVersionNotSupported`]: a layout version other than 2.
    pub fn open(path: impl AsRef<Path>) -> Result<ShmReader, ShmError> {
        let (segment, cache) = MappedSegment::open(path.as_ref())?;
        Ok(ShmReader { cache, segment })
    }

    /// The current snapshot: the cached one while the segment's generation is unchanged,
    /// otherwise a fresh, validated, consistent copy.
    ///
    /// # Errors
    /// - [`ShmError::SegmentMalformed`]: the writer published invalid fields.
    /// - [`ShmError::SegmentVersionNotSupported`]: the writer changed the layout version.
    ///
    /// Passing states (update in progress, wiped, contended) are not errors: the previous
    /// snapshot is returned.
    #[inline]
    pub fn snapshot(&mut self) -> Result<&ClockErrorBound, ShmError> {
        self.cache
            .snapshot(self.segment.cells(), self.segment.path())
    }

    /// `snapshot()?.now()`: the window for the current instant.
    ///
    /// # Errors
    /// As [`snapshot`](Self::snapshot) and [`ClockErrorBound::now`].
    #[inline]
    pub fn now(&mut self) -> Result<TimeWindow, ShmError> {
        self.snapshot()?.now()
    }

    /// The segment file this reader maps.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.segment.path()
    }

    /// The generation of the snapshot the reader holds.
    #[must_use]
    pub fn generation(&self) -> u16 {
        self.cache.generation()
    }
}

impl std::fmt::Debug for ShmReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmReader")
            .field("path", self.segment.path())
            .field("generation", &self.cache.generation())
            .field("snapshot", self.cache.cached())
            .finish()
    }
}
