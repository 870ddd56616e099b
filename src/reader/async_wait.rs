//! The async waits of [`SegmentReader`] (feature `tokio`): the same decisions as the
//! blocking ones (`crate::wait`), with the pauses taken on the runtime's timer.

use std::path::Path;
use std::time::Duration;

use super::SegmentReader;
use crate::error::ShmError;
use crate::layout::Layout;
use crate::options::ReaderOptions;
use crate::time::TimeWindow;
use crate::time::Timespec;
use crate::wait;

#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
impl<L: Layout> SegmentReader<L> {
    /// Commit-wait as a future; the async form of
    /// [`wait_until_after`](Self::wait_until_after), paced as
    /// [`SharedClockBound::wait_until_after_async`](crate::SharedClockBound::wait_until_after_async)
    /// (the runtime's timer, then `yield_now` for the last 2 ms). The reader is borrowed
    /// for the whole wait; share a [`SharedClockBound`](crate::SharedClockBound) instead
    /// when other tasks need the clock meanwhile.
    ///
    /// A task that owns its reader, on a runtime with other work (here a daemon stand-in
    /// whose snapshot says ±500 µs):
    ///
    /// ```
    /// use clockbound_shm::{ClockErrorBound, ClockStatus, ShmReader, ShmWriter, Timespec};
    /// use std::time::Duration;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let mut daemon = ShmWriter::new(dir.path().join("shm0"))?;
    /// let now = Timespec::monotonic_coarse_now();
    /// let void_after = now.saturating_add(Duration::from_secs(1000));
    /// let status = ClockStatus::Synchronized;
    /// daemon.write(
    ///     &ClockErrorBound::builder()
    ///         .as_of(now)
    ///         .void_after(void_after)
    ///         .bound_nsec(500_000)
    ///         .max_drift_ppb(1_000)
    ///         .clock_status(status)
    ///         .build(),
    /// );
    ///
    /// let runtime = tokio::runtime::Builder::new_multi_thread().enable_time().build()?;
    /// let mut reader = ShmReader::open(daemon.path())?;
    /// let committer = runtime.spawn(async move {
    ///     let commit_ts = reader.now()?.latest;
    ///     let window = reader.wait_until_after_async(commit_ts, Duration::from_secs(1)).await?;
    ///     Ok::<_, clockbound_shm::ShmError>(window.earliest > commit_ts)
    /// });
    /// assert!(runtime.block_on(committer)??);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`wait_until_after`](Self::wait_until_after).
    ///
    /// # Panics
    /// When polled outside a tokio runtime, or in one built without timers
    /// (`enable_time`), as [`tokio::time::sleep`] does.
    pub async fn wait_until_after_async(
        &mut self,
        t: Timespec,
        timeout: Duration,
    ) -> Result<TimeWindow, ShmError> {
        wait::until_after_async(t, timeout, || self.now()).await
    }

    /// Waits for the segment at `path` to appear, become valid and report Synchronized,
    /// sleeping on the tokio runtime's timer between looks; the async form of
    /// [`wait_for_sync`](Self::wait_for_sync).
    ///
    /// ```no_run
    /// use clockbound_shm::{ShmReader, CLOCKBOUND_SHM_DEFAULT_PATH};
    /// use std::time::Duration;
    ///
    /// # async fn start() -> Result<(), clockbound_shm::ShmError> {
    /// let mut reader =
    ///     ShmReader::wait_for_sync_async(CLOCKBOUND_SHM_DEFAULT_PATH, Duration::from_secs(30))
    ///         .await?;
    /// println!("{:?}", reader.now()?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`wait_for_sync`](Self::wait_for_sync).
    ///
    /// # Panics
    /// As [`wait_until_after_async`](Self::wait_until_after_async).
    pub async fn wait_for_sync_async(
        path: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<SegmentReader<L>, ShmError> {
        SegmentReader::wait_for_sync_with_async(path, &ReaderOptions::default(), timeout).await
    }

    /// [`wait_for_sync_async`](Self::wait_for_sync_async) with `options`. The reader
    /// returned keeps `options`' [`require_trusted`](ReaderOptions::require_trusted) (the
    /// wait itself looks at untrusted windows' status).
    ///
    /// ```no_run
    /// use clockbound_shm::{DisruptionCheck, ReaderOptions, ShmReaderV3, CLOCKBOUND_SHM1_DEFAULT_PATH};
    /// use std::time::Duration;
    ///
    /// # async fn start() -> Result<(), clockbound_shm::ShmError> {
    /// let options = ReaderOptions::new()
    ///     .disruption_check(DisruptionCheck::Off)
    ///     .require_trusted(true);
    /// let mut reader = ShmReaderV3::wait_for_sync_with_async(
    ///     CLOCKBOUND_SHM1_DEFAULT_PATH,
    ///     &options,
    ///     Duration::from_secs(30),
    /// )
    /// .await?;
    /// let window = reader.now()?; // an error, not a window, once the clock is not trusted
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`wait_for_sync`](Self::wait_for_sync).
    ///
    /// # Panics
    /// As [`wait_until_after_async`](Self::wait_until_after_async).
    pub async fn wait_for_sync_with_async(
        path: impl AsRef<Path>,
        options: &ReaderOptions,
        timeout: Duration,
    ) -> Result<SegmentReader<L>, ShmError> {
        let path = path.as_ref();
        let probing = options.clone().require_trusted(false);
        let mut reader = wait::for_sync_async(
            timeout,
            || SegmentReader::open_with(path, &probing),
            |reader: &mut SegmentReader<L>| Ok(reader.now()?.clock_status),
        )
        .await?;
        reader.require_trusted = options.require_trusted;
        Ok(reader)
    }
}
