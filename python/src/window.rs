//! `TimeWindow`: the answer of `Clock.now()`.

use clockbound_shm::{ClockStatus, Timespec};
use pyo3::prelude::*;

use crate::time::{self, Rounding};
use crate::types;

/// Where true time is: somewhere in ``[earliest, latest]`` (on the ``CLOCK_REALTIME``
/// scale), with the status that says whether to believe it.
///
/// ``earliest_ns`` / ``latest_ns`` are exact (``int`` nanoseconds since the Unix epoch).
/// ``earliest`` / ``latest`` are the same bounds as aware UTC ``datetime`` values, which
/// have microsecond resolution: ``earliest`` is rounded down and ``latest`` up, so the
/// ``datetime`` window is never narrower than the true one and still contains true time.
///
/// Immutable, hashable, comparable with ``==``.
#[pyclass(frozen, eq, hash, module = "clockbound_shm", name = "TimeWindow")]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TimeWindow {
    earliest: i128,
    latest: i128,
    status: i32,
}

impl From<clockbound_shm::TimeWindow> for TimeWindow {
    fn from(w: clockbound_shm::TimeWindow) -> TimeWindow {
        TimeWindow {
            earliest: w.earliest.as_nanos(),
            latest: w.latest.as_nanos(),
            status: w.clock_status.to_wire(),
        }
    }
}

#[pymethods]
impl TimeWindow {
    /// Builds a window by hand (tests, simulations): bounds in nanoseconds since the epoch
    /// and a ``ClockStatus`` (or its ``int`` value).
    #[new]
    #[pyo3(signature = (earliest_ns, latest_ns, status))]
    fn new(earliest_ns: i128, latest_ns: i128, status: i32) -> PyResult<TimeWindow> {
        if ClockStatus::from_wire(status).is_none() {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "status must be 0..=3 (a ClockStatus), got {status}"
            )));
        }
        if earliest_ns > latest_ns {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "earliest_ns must not be after latest_ns",
            ));
        }
        // The instants a window can hold (whole seconds in 64 bits): within them no width,
        // midpoint or rounding below can overflow.
        let range = Timespec::MIN.as_nanos()..=Timespec::MAX.as_nanos();
        if !range.contains(&earliest_ns) || !range.contains(&latest_ns) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "earliest_ns and latest_ns must lie within {}..={} (64-bit seconds)",
                range.start(),
                range.end()
            )));
        }
        Ok(TimeWindow {
            earliest: earliest_ns,
            latest: latest_ns,
            status,
        })
    }

    /// True time is at or after this instant: ``int`` nanoseconds since the Unix epoch.
    #[getter]
    fn earliest_ns(&self) -> i128 {
        self.earliest
    }

    /// True time is at or before this instant: ``int`` nanoseconds since the Unix epoch.
    #[getter]
    fn latest_ns(&self) -> i128 {
        self.latest
    }

    /// ``earliest`` as an aware UTC ``datetime``, rounded down to the microsecond.
    #[getter]
    fn earliest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        time::datetime_from_nanos(py, self.earliest, Rounding::Down)
    }

    /// ``latest`` as an aware UTC ``datetime``, rounded up to the microsecond.
    #[getter]
    fn latest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        time::datetime_from_nanos(py, self.latest, Rounding::Up)
    }

    /// The clock's status (a ``ClockStatus``): check it before relying on the window.
    #[getter]
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        types::clock_status(py)?.call1((self.status,))
    }

    /// Whether the window can be relied on: status ``SYNCHRONIZED`` or ``FREE_RUNNING``.
    #[getter]
    fn is_trusted(&self) -> bool {
        ClockStatus::from_wire(self.status).is_some_and(ClockStatus::is_trusted)
    }

    /// Half the window's width in nanoseconds (rounded down): the error bound.
    #[getter]
    fn bound_ns(&self) -> i128 {
        (self.latest - self.earliest) / 2
    }

    /// The middle of the window in nanoseconds since the epoch (rounded down): the best
    /// estimate of true time.
    #[getter]
    fn midpoint_ns(&self) -> i128 {
        (self.earliest + self.latest).div_euclid(2)
    }

    /// The middle of the window as an aware UTC ``datetime``, rounded to the nearest
    /// microsecond.
    #[getter]
    fn midpoint<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        time::datetime_from_nanos(py, self.midpoint_ns(), Rounding::Nearest)
    }

    /// True only when ``t`` (``int`` ns or aware ``datetime``) has certainly passed:
    /// ``t < earliest``. Says nothing about the status.
    fn after(&self, t: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(time::nanos_from_py(t)? < self.earliest)
    }

    /// True only when ``t`` (``int`` ns or aware ``datetime``) has certainly not arrived:
    /// ``t > latest``. Says nothing about the status.
    fn before(&self, t: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(time::nanos_from_py(t)? > self.latest)
    }

    /// ``t in window``: ``earliest <= t <= latest`` (``t`` may be now).
    fn __contains__(&self, t: &Bound<'_, PyAny>) -> PyResult<bool> {
        let t = time::nanos_from_py(t)?;
        Ok(self.earliest <= t && t <= self.latest)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let status = self.status(py)?.repr()?;
        Ok(format!(
            "TimeWindow(earliest_ns={}, latest_ns={}, status={status})",
            self.earliest, self.latest
        ))
    }
}
