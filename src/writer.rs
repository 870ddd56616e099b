//! [`SegmentWriter`]: publishes snapshots into a segment the way the ClockBound daemon does.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use crate::error::ShmError;
use crate::layout::{self, HEADER_LEN, Layout, Layout2, Layout3, SegmentHeader};
use crate::mapping::SegmentMapping;

/// The layout 2 writer (`shm0`), as a ClockBound 2.x daemon writes it.
pub type ShmWriter = SegmentWriter<Layout2>;

/// The layout 3 writer (`shm1`), as a ClockBound 3.x daemon writes it.
pub type ShmWriterV3 = SegmentWriter<Layout3>;

/// Writes a ClockBound segment of layout `L` with the daemon's protocol.
///
/// For tests, simulators, examples, and machines without a daemon. There must be one writer
/// per segment at a time (the daemon, or one `ShmWriter`); readers in any process see its
/// updates through the seqlock.
///
/// [`new`](Self::new) creates or reuses a segment as the daemon does on start: a segment of
/// this layout that was written before is kept as it is (warm restart: its snapshot and
/// generation stay, so readers keep going; an odd generation left by a writer that died
/// mid-update is completed by the next write), anything else is wiped (version 0,
/// generation 0) before the version is set. Unlike the daemon, which recreates the file
/// with `File::create` (truncating it to zero bytes while readers may still have it
/// mapped), the wipe is done in place and never shrinks the file below one segment, so
/// readers of the old contents cannot hit `SIGBUS`.
///
/// ```
/// use clockbound_shm::{ClockErrorBound, ClockStatus, ShmReader, ShmWriter, Timespec};
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("shm0");
/// let mut writer = ShmWriter::new(&path)?;
/// // As the daemon does: stamped with the monotonic clock now, void 1000 s later.
/// let as_of = Timespec::monotonic_coarse_now();
/// let bound = ClockErrorBound::builder()
///     .as_of(as_of)
///     .void_after(as_of.saturating_add(Duration::from_secs(1000)))
///     .bound_nsec(5_000)
///     .max_drift_ppb(1_000)
///     .clock_status(ClockStatus::Synchronized)
///     .build();
/// writer.write(&bound);
/// let mut reader = ShmReader::open(&path)?;
/// assert_eq!(reader.snapshot()?, &bound);
/// assert_eq!(reader.now()?.clock_status, ClockStatus::Synchronized);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SegmentWriter<L: Layout> {
    path: Arc<Path>,
    mapping: SegmentMapping<L::Payload>,
    wiped: bool,
}

impl<L: Layout> SegmentWriter<L> {
    /// Creates the segment at `path` (and missing parent directories, mode 0644), or reuses
    /// it when it already holds a valid segment, and maps it read-write.
    ///
    /// # Errors
    /// [`ShmError::Io`] when the directory or file cannot be created, opened, resized or
    /// mapped.
    pub fn new(path: impl AsRef<Path>) -> Result<SegmentWriter<L>, ShmError> {
        let path: Arc<Path> = Arc::from(path.as_ref());
        let io_error = |operation| ShmError::io_at(&path, operation);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_error("create the directory of"))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io_error("create"))?;
        let mut file_len = file.metadata().map_err(io_error("stat"))?.len();
        let reusable = reusable::<L>(&file, file_len);
        if !reusable && file_len != L::SEGMENT_LEN as u64 {
            // Grow a short file, or cut a long one down to one segment; never below it.
            file.set_len(L::SEGMENT_LEN as u64)
                .map_err(io_error("resize"))?;
            file_len = L::SEGMENT_LEN as u64;
        }
        let mapping = SegmentMapping::read_write(&file, file_len).map_err(io_error("map"))?;
        let mut writer = SegmentWriter {
            path,
            mapping,
            wiped: false,
        };
        if !reusable {
            writer.wipe();
        }
        writer.declare_version();
        Ok(writer)
    }

    /// Publishes `bound`: generation made odd, payload written, generation made even (0 is
    /// skipped on wrap-around).
    pub fn write(&mut self, snapshot: &L::Snapshot) {
        if self.wiped {
            self.declare_version();
        }
        self.mapping.cells().publish(&L::encode(snapshot));
    }

    /// Wipes the segment as the daemon does before recreating it: generation 0, version 0,
    /// zero payload. Readers keep answering from their last snapshot (which ages), new
    /// readers get [`ShmError::SegmentNotInitialized`]. The next [`write`](Self::write)
    /// sets the version back and publishes again.
    pub fn wipe(&mut self) {
        self.mapping.cells().wipe(
            layout::MAGIC,
            L::SEGMENT_LEN as u32,
            &L::encode(&L::PLACEHOLDER),
        );
        self.wiped = true;
    }

    /// Leaves the segment as a writer that died in the middle of an update does: the
    /// generation odd, the payload untouched. For fault-injection in tests and simulators;
    /// the next [`write`](Self::write) completes an update normally.
    pub fn simulate_interrupted_update(&mut self) {
        self.mapping.cells().begin_interrupted_update();
    }

    /// The segment file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The segment's current generation (even between updates; 0 when never written).
    #[must_use]
    pub fn generation(&self) -> u16 {
        self.mapping.cells().load_generation()
    }

    fn declare_version(&mut self) {
        self.mapping.cells().set_version(L::VERSION);
        self.wiped = false;
    }
}

/// Whether `file` holds a segment of layout `L` a daemon would reuse on a warm restart:
/// the right magic, size and version, and written at least once (generation not 0; an odd
/// generation is a writer that died mid-update, which the next write completes).
fn reusable<L: Layout>(file: &File, file_len: u64) -> bool {
    let mut bytes = [0u8; HEADER_LEN];
    if file_len < L::SEGMENT_LEN as u64 || file.read_exact_at(&mut bytes, 0).is_err() {
        return false;
    }
    let header = SegmentHeader::from_bytes(&bytes);
    layout::check_header(header.magic, header.segsize, L::SEGMENT_LEN, file_len).is_ok()
        && header.version == L::VERSION
        && header.generation != 0
}
