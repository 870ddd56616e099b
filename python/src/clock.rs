//! `Clock`: `SharedClockBound` for Python threads.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clockbound_shm::{DisruptionCheck, ReaderOptions, SharedClockBound, ShmError, Strategy};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::errors::{self, converter};
use crate::time;
use crate::window::TimeWindow;

/// Waits run in slices this long with the GIL released, and check for signals
/// (`KeyboardInterrupt`) between slices.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// Error-bounded time from the ClockBound daemon's shared memory, for any number of
/// threads.
///
/// ``Clock()`` opens the daemon's segment: ``/var/run/clockbound/shm1`` (layout 3,
/// ClockBound 3.x) when it is there and synchronised, else ``/var/run/clockbound/shm0``
/// (layout 2). ``Clock(path)`` opens the segment at ``path``, as the layout its header
/// declares.
///
/// Keyword options:
///
/// - ``strategy``: ``"thread_local"`` (default; each thread keeps its own snapshot, the
///   fastest) or ``"arc_swap"`` (one snapshot shared by all threads; less memory for very
///   many short-lived threads).
/// - ``disruption_check``: ``True`` (default) reads the VMClock page (``vmclock_path``,
///   default ``/dev/vmclock0``) when the segment says the daemon tracks clock disruptions,
///   and reports ``DISRUPTED`` when it shows one the daemon has not caught up with;
///   ``False`` trusts the segment alone.
/// - ``require_trusted``: with ``True``, ``now()`` raises ``ClockNotTrustedError`` instead
///   of returning a window whose status is ``UNKNOWN`` or ``DISRUPTED``.
/// - ``recheck_interval``, ``free_running_grace``: seconds (or ``timedelta``); see the Rust
///   crate's ``ReaderOptions``.
/// - ``sigbus_guard``: ``True`` (default) survives a daemon that truncates the segment
///   while it is mapped.
///
/// One ``Clock`` is meant to be shared: every method may be called from any thread at the
/// same time, ``now()`` takes no lock. Opening is done with the GIL released.
///
/// Raises a ``ClockBoundError`` subclass when the segment cannot be opened.
#[pyclass(frozen, module = "clockbound_shm", name = "Clock")]
pub(crate) struct Clock {
    inner: SharedClockBound,
}

/// The options every constructor takes, as keyword arguments.
fn reader_options(
    strategy: &str,
    disruption_check: bool,
    vmclock_path: Option<PathBuf>,
    require_trusted: bool,
    recheck_interval: Option<&Bound<'_, PyAny>>,
    free_running_grace: Option<&Bound<'_, PyAny>>,
    sigbus_guard: bool,
) -> PyResult<ReaderOptions> {
    let strategy = match strategy {
        "thread_local" => Strategy::ThreadLocal,
        "arc_swap" => Strategy::ArcSwap,
        other => {
            return Err(PyValueError::new_err(format!(
                "strategy must be \"thread_local\" or \"arc_swap\", got {other:?}"
            )));
        }
    };
    let check = match (disruption_check, vmclock_path) {
        (false, _) => DisruptionCheck::Off,
        (true, None) => DisruptionCheck::default(),
        (true, Some(vmclock_path)) => DisruptionCheck::WhenEnabled { vmclock_path },
    };
    let mut options = ReaderOptions::new()
        .strategy(strategy)
        .disruption_check(check)
        .require_trusted(require_trusted)
        .sigbus_guard(sigbus_guard);
    if let Some(interval) = recheck_interval {
        options = options.recheck_interval(time::duration_from_py(interval, "recheck_interval")?);
    }
    if let Some(grace) = free_running_grace {
        options = options.free_running_grace(time::duration_from_py(grace, "free_running_grace")?);
    }
    Ok(options)
}

#[pymethods]
impl Clock {
    #[new]
    #[pyo3(signature = (
        path = None, *, strategy = "thread_local", disruption_check = true,
        vmclock_path = None, require_trusted = false, recheck_interval = None,
        free_running_grace = None, sigbus_guard = true,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: Option<PathBuf>,
        strategy: &str,
        disruption_check: bool,
        vmclock_path: Option<PathBuf>,
        require_trusted: bool,
        recheck_interval: Option<&Bound<'_, PyAny>>,
        free_running_grace: Option<&Bound<'_, PyAny>>,
        sigbus_guard: bool,
    ) -> PyResult<Clock> {
        let options = reader_options(
            strategy,
            disruption_check,
            vmclock_path,
            require_trusted,
            recheck_interval,
            free_running_grace,
            sigbus_guard,
        )?;
        let inner = py
            .detach(|| match path {
                Some(path) => SharedClockBound::open_with(path, &options),
                None => SharedClockBound::open_default_with(&options),
            })
            .map_err(converter(py))?;
        Ok(Clock { inner })
    }

    /// Waits until the segment (``path``, or the daemon's default segments chosen as
    /// ``Clock()`` does) exists, is valid and reports ``SYNCHRONIZED``, then returns it
    /// opened; takes the same keyword options as ``Clock()``.
    ///
    /// ``timeout`` is in seconds (``int``/``float``) or a ``timedelta``. The GIL is
    /// released while waiting (other threads run) and ``KeyboardInterrupt`` is seen within
    /// 50 ms.
    ///
    /// Raises ``WaitTimeoutError`` after ``timeout`` (its ``last_error`` / ``__cause__`` is
    /// the last attempt's error, if any), or at once an error waiting cannot fix (a
    /// malformed segment, another layout version, no permission).
    #[classmethod]
    #[pyo3(signature = (
        timeout, path = None, *, strategy = "thread_local", disruption_check = true,
        vmclock_path = None, require_trusted = false, recheck_interval = None,
        free_running_grace = None, sigbus_guard = true,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn wait_for_sync(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        timeout: &Bound<'_, PyAny>,
        path: Option<PathBuf>,
        strategy: &str,
        disruption_check: bool,
        vmclock_path: Option<PathBuf>,
        require_trusted: bool,
        recheck_interval: Option<&Bound<'_, PyAny>>,
        free_running_grace: Option<&Bound<'_, PyAny>>,
        sigbus_guard: bool,
    ) -> PyResult<Clock> {
        let timeout = time::duration_from_py(timeout, "timeout")?;
        let options = reader_options(
            strategy,
            disruption_check,
            vmclock_path,
            require_trusted,
            recheck_interval,
            free_running_grace,
            sigbus_guard,
        )?;
        let inner = sliced_wait(py, timeout, |slice| match &path {
            Some(path) => SharedClockBound::wait_for_sync_with(path, &options, slice),
            None => SharedClockBound::wait_for_sync_default(&options, slice),
        })?;
        Ok(Clock { inner })
    }

    /// The window that contains true time now (a ``TimeWindow``). Lock-free; the GIL is
    /// kept (releasing and re-taking it would cost more than the call).
    ///
    /// Raises ``CausalityBreachError`` when the snapshot is from another clock,
    /// ``ClockNotTrustedError`` with ``require_trusted=True`` and an untrusted status, or
    /// another ``ClockBoundError`` when the segment became unreadable.
    fn now(&self, py: Python<'_>) -> PyResult<TimeWindow> {
        self.inner.now().map(Into::into).map_err(converter(py))
    }

    /// True only when ``t`` (``int`` nanoseconds since the epoch, or an aware
    /// ``datetime``) has certainly passed: ``t < now().earliest_ns``. Raises
    /// ``ClockNotTrustedError`` when the status is ``UNKNOWN`` or ``DISRUPTED``: a yes or no
    /// from such a window could be wrong, and the answer carries no status to check.
    fn after(&self, py: Python<'_>, t: &Bound<'_, PyAny>) -> PyResult<bool> {
        let t = time::timespec_from_py(t)?;
        self.inner.after(t).map_err(converter(py))
    }

    /// True only when ``t`` (``int`` nanoseconds since the epoch, or an aware
    /// ``datetime``) has certainly not arrived: ``t > now().latest_ns``. Raises
    /// ``ClockNotTrustedError`` as ``after`` does.
    fn before(&self, py: Python<'_>, t: &Bound<'_, PyAny>) -> PyResult<bool> {
        let t = time::timespec_from_py(t)?;
        self.inner.before(t).map_err(converter(py))
    }

    /// Commit-wait: blocks until ``t`` (``int`` ns or aware ``datetime``) has certainly
    /// passed and returns the first ``TimeWindow`` that shows it. ``timeout`` in seconds
    /// or a ``timedelta``.
    ///
    /// The GIL is released while waiting; ``KeyboardInterrupt`` is seen within 50 ms.
    /// Raises ``WaitTimeoutError`` after ``timeout``, ``ClockNotTrustedError`` as soon as
    /// the status is ``UNKNOWN`` or ``DISRUPTED``.
    fn wait_until_after(
        &self,
        py: Python<'_>,
        t: &Bound<'_, PyAny>,
        timeout: &Bound<'_, PyAny>,
    ) -> PyResult<TimeWindow> {
        let t = time::timespec_from_py(t)?;
        let timeout = time::duration_from_py(timeout, "timeout")?;
        sliced_wait(py, timeout, |slice| self.inner.wait_until_after(t, slice)).map(Into::into)
    }

    /// The segment file this clock reads (a ``pathlib.Path``).
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_path_buf()
    }

    /// The layout of that segment: ``2`` (``shm0``) or ``3`` (``shm1``).
    #[getter]
    fn layout(&self) -> u16 {
        match self.inner.layout() {
            clockbound_shm::LayoutVersion::V3 => 3,
            _ => 2,
        }
    }

    /// ``"thread_local"`` or ``"arc_swap"``.
    #[getter]
    fn strategy(&self) -> &'static str {
        match self.inner.strategy() {
            Strategy::ArcSwap => "arc_swap",
            _ => "thread_local",
        }
    }

    /// What reading has done so far, as a ``dict`` of counters (under ``"thread_local"``
    /// the calling thread's, under ``"arc_swap"`` the shared refresher's).
    fn stats(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let s = self.inner.stats();
        [
            ("full_reads", s.full_reads),
            ("cache_answers", s.cache_answers),
            ("retries", s.retries),
            ("odd_generations", s.odd_generations),
            ("rechecks", s.rechecks),
            ("reopens", s.reopens),
            ("truncations_survived", s.truncations_survived),
        ]
        .into_iter()
        .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "Clock(path={:?}, layout={}, strategy={:?})",
            self.inner.path().display().to_string(),
            self.layout(),
            self.strategy()
        )
    }
}

/// Runs a waiting call of the Rust crate in slices of [`WAIT_SLICE`] with the GIL released,
/// checking for signals between slices, until it succeeds, fails with anything but a
/// timeout, or `timeout` has passed. A final timeout reports the whole wait and the last
/// slice's last error.
fn sliced_wait<T: Send>(
    py: Python<'_>,
    timeout: Duration,
    mut wait: impl FnMut(Duration) -> Result<T, ShmError> + Send,
) -> PyResult<T> {
    let start = Instant::now();
    loop {
        let slice = timeout.saturating_sub(start.elapsed()).min(WAIT_SLICE);
        match py.detach(|| wait(slice)) {
            Ok(value) => return Ok(value),
            Err(ShmError::Timeout {
                what, last_error, ..
            }) => {
                let waited = start.elapsed();
                if waited >= timeout {
                    return Err(errors::to_py(
                        py,
                        ShmError::Timeout {
                            what,
                            waited,
                            last_error,
                        },
                    ));
                }
                py.check_signals()?;
            }
            Err(e) => return Err(errors::to_py(py, e)),
        }
    }
}
