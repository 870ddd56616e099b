//! [`MappedSegment`]: a segment file opened, validated with a positioned read, and only then
//! mapped; what every reader reads through.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Malformed, NotInitialized, ShmError};
use crate::layout::{self, HEADER_LEN, Layout, SegmentHeader};
use crate::mapping::SegmentMapping;
use crate::seqlock::SegmentCells;

/// An opened, validated segment: the file's mapping and its path. Clones share the one
/// mapping ([`ShmReader`](crate::ShmReader) owns one; a `SharedClockBound` shares it between
/// all its threads and published snapshots).
pub(crate) struct MappedSegment<L: Layout> {
    path: Arc<Path>,
    mapping: SegmentMapping<L::Payload>,
    /// `(st_dev, st_ino)` of the mapped file: a daemon that recreates the segment makes the
    /// path name another file, and this mapping would never see an update again.
    identity: (u64, u64),
}

impl<L: Layout> Clone for MappedSegment<L> {
    fn clone(&self) -> Self {
        MappedSegment {
            path: Arc::clone(&self.path),
            mapping: self.mapping.clone(),
            identity: self.identity,
        }
    }
}

impl<L: Layout> std::fmt::Debug for MappedSegment<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedSegment")
            .field("path", &self.path)
            .field("layout", &L::TAG)
            .finish_non_exhaustive()
    }
}

impl<L: Layout> MappedSegment<L> {
    /// Opens the segment at `path`, checks it with a positioned read (nothing is mapped
    /// until the file holds an initialised segment of layout `L`), and maps it.
    ///
    /// # Errors
    /// See [`ShmReader::open`](crate::ShmReader::open).
    pub(crate) fn open(path: &Path, guard: bool) -> Result<MappedSegment<L>, ShmError> {
        let path: Arc<Path> = Arc::from(path);
        let io_error = |operation| ShmError::io_at(&path, operation);
        if let Err(reason) = L::check_supported() {
            return Err(ShmError::LayoutNotSupported {
                path,
                layout: L::TAG,
                reason,
            });
        }
        // Non-blocking, so that a FIFO put at the path cannot hang the open; the type is
        // then checked on the file actually opened.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(io_error("open"))?;
        let metadata = file.metadata().map_err(io_error("stat"))?;
        if !metadata.is_file() {
            let errno = if metadata.is_dir() {
                rustix::io::Errno::ISDIR
            } else if metadata.file_type().is_fifo() || metadata.file_type().is_socket() {
                rustix::io::Errno::INVAL
            } else {
                rustix::io::Errno::NODEV
            };
            return Err(io_error("open (not a regular file)")(
                io::Error::from_raw_os_error(errno.raw_os_error()),
            ));
        }
        let file_len = metadata.len();
        let identity = (metadata.dev(), metadata.ino());
        let header = read_header(&file, file_len).map_err(io_error("read"))?;
        let Some(header) = header else {
            return Err(ShmError::SegmentNotInitialized {
                path,
                reason: if file_len == 0 {
                    NotInitialized::EmptyFile
                } else {
                    NotInitialized::ShortFile { len: file_len }
                },
            });
        };
        check::<L>(&header, file_len).map_err(|e| e.at(&path))?;
        let mapping = SegmentMapping::read_only(&file, file_len, guard).map_err(io_error("map"))?;
        // The mapping outlives the descriptor: close it now rather than hold it for years.
        drop(file);
        Ok(MappedSegment {
            path,
            mapping,
            identity,
        })
    }

    #[inline(always)]
    pub(crate) fn cells(&self) -> &SegmentCells<L::Payload> {
        self.mapping.cells()
    }

    pub(crate) fn path(&self) -> &Arc<Path> {
        &self.path
    }

    /// The mapping (a handle: clones share it).
    pub(crate) fn mapping(&self) -> &SegmentMapping<L::Payload> {
        &self.mapping
    }

    /// Whether `other` is a handle to the same mapping. (Two live mappings never share an
    /// address, and each handle keeps its mapping alive.)
    pub(crate) fn same_mapping(&self, other: &MappedSegment<L>) -> bool {
        std::ptr::eq(self.cells(), other.cells())
    }

    /// Whether this mapping can no longer see the daemon's updates: the path now names
    /// another file (one `stat`), or the file was truncated under the mapping while it was
    /// read and the `SIGBUS` guard replaced the page. A missing file is not "another file":
    /// the daemon may be gone, and the old snapshot, ageing, is the best answer until a new
    /// file appears.
    pub(crate) fn needs_reopen(&self) -> bool {
        self.mapping.faulted()
            || std::fs::metadata(&*self.path).is_ok_and(|m| (m.dev(), m.ino()) != self.identity)
    }

    /// Whether the `SIGBUS` guard replaced this mapping's page.
    pub(crate) fn faulted(&self) -> bool {
        self.mapping.faulted()
    }

    /// The header as it is in the mapping now (separate atomic loads).
    pub(crate) fn header(&self) -> SegmentHeader {
        let cells = self.cells();
        let (magic, segsize, version) = cells.header();
        SegmentHeader {
            magic,
            segsize,
            version,
            generation: cells.load_generation(),
        }
    }
}

/// The header of the file at `path` (opened non-blocking, read with a positioned read,
/// nothing mapped), or `None` when it cannot be read: what a caller that has to choose the
/// layout looks at first.
pub(crate) fn peek_header(path: &Path) -> Option<SegmentHeader> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() {
        return None;
    }
    read_header(&file, metadata.len()).ok().flatten()
}

/// The first [`HEADER_LEN`] bytes of `file`, by positioned read; `None` when the file does
/// not hold that many (a daemon is creating it).
fn read_header(file: &File, file_len: u64) -> io::Result<Option<SegmentHeader>> {
    if file_len < HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut bytes = [0u8; HEADER_LEN];
    match file.read_exact_at(&mut bytes, 0) {
        Ok(()) => Ok(Some(SegmentHeader::from_bytes(&bytes))),
        // Truncated between the `fstat` and the read: the daemon is recreating it.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Why a header read from the file cannot be mapped as layout `L`.
enum Refusal {
    NotReady(NotInitialized),
    Malformed(Malformed),
    Version { found: u16, expected: u16 },
}

impl Refusal {
    fn at(self, path: &Arc<Path>) -> ShmError {
        match self {
            Refusal::NotReady(reason) => ShmError::SegmentNotInitialized {
                path: Arc::clone(path),
                reason,
            },
            Refusal::Malformed(problem) => ShmError::malformed(Some(path), problem),
            Refusal::Version { found, expected } => ShmError::SegmentVersionNotSupported {
                path: Arc::clone(path),
                found,
                expected,
            },
        }
    }
}

/// The header checks, in the order that tells a starting daemon from a broken segment.
fn check<L: Layout>(header: &SegmentHeader, file_len: u64) -> Result<(), Refusal> {
    if header.magic == [0, 0] && header.segsize == 0 && header.version == 0 {
        return Err(Refusal::NotReady(NotInitialized::BlankHeader));
    }
    if header.magic != layout::MAGIC {
        return Err(Refusal::Malformed(Malformed::BadMagic {
            found: header.magic,
            expected: layout::MAGIC,
        }));
    }
    match header.version {
        0 => return Err(Refusal::NotReady(NotInitialized::Wiped)),
        v if v == L::VERSION => {}
        found => {
            return Err(Refusal::Version {
                found,
                expected: L::VERSION,
            });
        }
    }
    if file_len < L::SEGMENT_LEN as u64 {
        return Err(Refusal::Malformed(Malformed::FileTooShort {
            len: file_len,
            needed: L::SEGMENT_LEN as u64,
        }));
    }
    layout::check_header(header.magic, header.segsize, L::SEGMENT_LEN, file_len)
        .map_err(Refusal::Malformed)?;
    if header.generation == 0 {
        return Err(Refusal::NotReady(NotInitialized::NeverWritten));
    }
    Ok(())
}
