//! The async waits of [`SharedClockBound`] (feature `tokio`): the same decisions as the
//! blocking ones (`crate::wait`), with the pauses taken on the runtime's timer.

use std::path::Path;
use std::time::Duration;

use super::SharedClockBound;
use crate::error::ShmError;
use crate::options::ReaderOptions;
use crate::time::ClockStatus;
use crate::time::TimeWindow;
use crate::time::Timespec;
use crate::wait;

/// The options to probe with while waiting (untrusted windows answered, so that their
/// status can be seen), and whether the returned handle must refuse them.
fn probing(options: &ReaderOptions) -> (ReaderOptions, bool) {
    (
        options.clone().require_trusted(false),
        options.require_trusted,
    )
}

/// The status a start-up wait polls.
fn sync_status(clock: &mut SharedClockBound) -> Result<ClockStatus, ShmError> {
    Ok(clock.now()?.clock_status)
}

#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
impl SharedClockBound {
    /// Commit-wait as a future: resolves once `t` has certainly passed, to the first window
    /// whose `earliest` is after `t`; the async form of
    /// [`wait_until_after`](Self::wait_until_after), with the same answers and errors.
    ///
    /// It sleeps on the tokio runtime's timer (no thread is blocked, other tasks run) and
    /// only for the last 2 ms, which that timer cannot resolve (it counts whole
    /// milliseconds), looks again after each `yield_now`: the task keeps its place in the
    /// runtime's queue, and returns within microseconds of the moment `t` is certainly
    /// past rather than up to 2 ms after it.
    ///
    /// ```
    /// use clockbound_shm::{ClockErrorBound, ClockStatus, SharedClockBound, ShmWriter, Timespec};
    /// use std::time::Duration;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("shm0");
    /// let as_of = Timespec::monotonic_coarse_now();
    /// ShmWriter::new(&path)?.write(&ClockErrorBound::new(
    ///     as_of, as_of.saturating_add(Duration::from_secs(1000)), 1_000_000, 0, 1_000,
    ///     ClockStatus::Synchronized, false,
    /// ));
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    /// let clock = SharedClockBound::open(&path)?;
    /// let commit_ts = clock.now()?.latest; // no node can have passed it yet
    /// let w = runtime.block_on(clock.wait_until_after_async(commit_ts, Duration::from_secs(1)))?;
    /// assert!(w.earliest > commit_ts); // every node's clock is past it: acknowledge
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ShmError::Timeout`] when `t` has not certainly passed within `timeout`;
    /// [`ShmError::ClockNotTrusted`] as soon as a window has status Unknown or Disrupted;
    /// otherwise as [`now`](Self::now).
    ///
    /// # Panics
    /// When polled outside a tokio runtime, or in one built without timers
    /// (`enable_time`), as [`tokio::time::sleep`] does.
    pub async fn wait_until_after_async(
        &self,
        t: Timespec,
        timeout: Duration,
    ) -> Result<TimeWindow, ShmError> {
        wait::until_after_async(t, timeout, || self.now()).await
    }

    /// Waits for the segment at `path` (either layout, see [`open`](Self::open)) to appear,
    /// become valid and report Synchronized, sleeping on the tokio runtime's timer between
    /// looks (every 10 ms); the async form of [`wait_for_sync`](Self::wait_for_sync). Each
    /// look opens or reads the file: a few system calls that do not wait.
    ///
    /// ```no_run
    /// use clockbound_shm::{SharedClockBound, CLOCKBOUND_SHM_DEFAULT_PATH};
    /// use std::time::Duration;
    ///
    /// # async fn start() -> Result<(), clockbound_shm::ShmError> {
    /// let clock =
    ///     SharedClockBound::wait_for_sync_async(CLOCKBOUND_SHM_DEFAULT_PATH, Duration::from_secs(30))
    ///         .await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ShmError::Timeout`] after `timeout`, carrying the last attempt's error if it
    /// failed; a non-transient error (malformed segment, another layout version, no
    /// permission, no VMClock device) at once.
    ///
    /// # Panics
    /// As [`wait_until_after_async`](Self::wait_until_after_async).
    pub async fn wait_for_sync_async(
        path: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<SharedClockBound, ShmError> {
        SharedClockBound::wait_for_sync_with_async(path, &ReaderOptions::default(), timeout).await
    }

    /// [`wait_for_sync_async`](Self::wait_for_sync_async) with `options`; the async form of
    /// [`wait_for_sync_with`](Self::wait_for_sync_with).
    ///
    /// ```
    /// use clockbound_shm::{
    ///     ClockErrorBound, ClockStatus, ReaderOptions, SharedClockBound, ShmWriter, Timespec,
    /// };
    /// use std::time::Duration;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("shm0");
    /// // A daemon stand-in that synchronises 50 ms from now.
    /// let daemon = {
    ///     let path = path.clone();
    ///     std::thread::spawn(move || -> Result<(), clockbound_shm::ShmError> {
    ///         std::thread::sleep(Duration::from_millis(50));
    ///         let as_of = Timespec::monotonic_coarse_now();
    ///         ShmWriter::new(&path)?.write(&ClockErrorBound::new(
    ///             as_of, as_of.saturating_add(Duration::from_secs(1000)), 1_000, 0, 1_000,
    ///             ClockStatus::Synchronized, false,
    ///         ));
    ///         Ok(())
    ///     })
    /// };
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    /// let options = ReaderOptions::new().require_trusted(true);
    /// let clock = runtime.block_on(SharedClockBound::wait_for_sync_with_async(
    ///     &path, &options, Duration::from_secs(10),
    /// ))?;
    /// assert_eq!(clock.now()?.clock_status, ClockStatus::Synchronized);
    /// daemon.join().expect("daemon thread")?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`wait_for_sync_async`](Self::wait_for_sync_async).
    ///
    /// # Panics
    /// As [`wait_until_after_async`](Self::wait_until_after_async).
    pub async fn wait_for_sync_with_async(
        path: impl AsRef<Path>,
        options: &ReaderOptions,
        timeout: Duration,
    ) -> Result<SharedClockBound, ShmError> {
        let path = path.as_ref();
        let (probing, require_trusted) = probing(options);
        let open = || SharedClockBound::open_with(path, &probing);
        let clock = wait::for_sync_async(timeout, open, sync_status).await?;
        Ok(clock.require_trusted(require_trusted))
    }

    /// Waits for the daemon's segment, chosen as [`open_default`](Self::open_default) does
    /// (at each attempt), to report Synchronized; the async form of
    /// [`wait_for_sync_default`](Self::wait_for_sync_default).
    ///
    /// ```no_run
    /// use clockbound_shm::{ReaderOptions, SharedClockBound};
    /// use std::time::Duration;
    ///
    /// # async fn start() -> Result<(), clockbound_shm::ShmError> {
    /// let options = ReaderOptions::new().require_trusted(true);
    /// let clock =
    ///     SharedClockBound::wait_for_sync_default_async(&options, Duration::from_secs(30)).await?;
    /// println!("reading {} ({})", clock.path().display(), clock.layout());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`wait_for_sync_async`](Self::wait_for_sync_async).
    ///
    /// # Panics
    /// As [`wait_until_after_async`](Self::wait_until_after_async).
    pub async fn wait_for_sync_default_async(
        options: &ReaderOptions,
        timeout: Duration,
    ) -> Result<SharedClockBound, ShmError> {
        let (probing, require_trusted) = probing(options);
        let open = || SharedClockBound::open_default_with(&probing);
        let clock = wait::for_sync_async(timeout, open, sync_status).await?;
        Ok(clock.require_trusted(require_trusted))
    }
}
