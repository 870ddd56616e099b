//! [`ShmWriter`]: publishes snapshots into a segment the way the ClockBound daemon does.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use crate::bound::ClockErrorBound;
use crate::error::ShmError;
use crate::layout::{self, LAYOUT_VERSION, SEGMENT_LEN};
use crate::mapping::SegmentMapping;
use crate::options::{DisruptionCheck, ReaderOptions};
use crate::reader::ShmReader;

/// Writes a ClockBound segment (layout version 2) with the daemon's protocol.
///
/// For tests, simulators, examples, and machines without a daemon. There must be one writer
/// per segment at a time (the daemon, or one `ShmWriter`); readers in any process see its
/// updates through the seqlock.
///
/// [`new`](Self::new) creates or reuses a segment as the daemon does on start: a valid
/// segment is kept as it is (warm restart: its snapshot and generation stay, so readers keep
/// going), anything else is wiped (version 0, generation 0) before the version is set to 2.
/// Unlike the daemon, which recreates the file with `File::create` (truncating it to zero
/// bytes while readers may still have it mapped), the wipe is done in place and never
/// shrinks the file below 80 bytes, so readers of the old contents cannot hit `SIGBUS`.
///
/// ```
/// use clockbound_shm::{ClockErrorBound, ClockStatus, ShmReader, ShmWriter, Timespec};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("shm0");
/// let mut writer = ShmWriter::new(&path)?;
/// let bound = ClockErrorBound::new(
///     Timespec::new(100, 0), Timespec::new(1100, 0), 5_000, 0, 1_000,
///     ClockStatus::Synchronized, false,
/// );
/// writer.write(&bound);
/// assert_eq!(ShmReader::open(&path)?.snapshot()?, &bound);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ShmWriter {
    path: Arc<Path>,
    mapping: SegmentMapping,
    wiped: bool,
}

impl ShmWriter {
    /// Creates the segment at `path` (and missing parent directories, mode 0644), or reuses
    /// it when it already holds a valid segment, and maps it read-write.
    ///
    /// # Errors
    /// [`ShmError::Io`] when the directory or file cannot be created, opened, resized or
    /// mapped.
    pub fn new(path: &Path) -> Result<ShmWriter, ShmError> {
        let path: Arc<Path> = Arc::from(path);
        let io_error = |operation: &'static str| {
            let path = Arc::clone(&path);
            move |source: io::Error| ShmError::Io {
                operation,
                path,
                source,
            }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_error("create the directory of"))?;
        }
        // Reusable means readable as a segment; whether this machine has a VMClock device
        // does not matter to the writer.
        let probe = ReaderOptions::new().disruption_check(DisruptionCheck::Off);
        let reusable = ShmReader::open_with(&path, &probe).is_ok();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io_error("create"))?;
        let mut file_len = file.metadata().map_err(io_error("stat"))?.len();
        if !reusable && file_len != SEGMENT_LEN as u64 {
            // Grow a short file, or cut a long one down to one segment; never below it.
            file.set_len(SEGMENT_LEN as u64)
                .map_err(io_error("resize"))?;
            file_len = SEGMENT_LEN as u64;
        }
        let mapping = SegmentMapping::read_write(&file, file_len).map_err(io_error("map"))?;
        let mut writer = ShmWriter {
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
    pub fn write(&mut self, bound: &ClockErrorBound) {
        if self.wiped {
            self.declare_version();
        }
        self.mapping.cells().publish(&layout::encode_payload(bound));
    }

    /// Wipes the segment as the daemon does before recreating it: generation 0, version 0,
    /// zero payload. Readers keep answering from their last snapshot (which ages), new
    /// readers get [`ShmError::SegmentNotInitialized`]. The next [`write`](Self::write)
    /// sets the version back to 2 and publishes again.
    pub fn wipe(&mut self) {
        self.mapping.cells().wipe(SEGMENT_LEN as u32);
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
        self.mapping.cells().set_version(LAYOUT_VERSION);
        self.wiped = false;
    }
}
