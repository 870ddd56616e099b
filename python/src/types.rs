//! The Python objects the native classes need, looked up once per interpreter.
//!
//! The status enum and the exceptions are Python classes (`clockbound_shm/_types.py`):
//! an `enum.IntEnum` and exceptions with several bases (`OSError`, `TimeoutError`) are
//! plain Python there and awkward to build from Rust. `datetime` is called as Python
//! because the limited API (abi3) has no C access to it.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// The pure-Python module that defines the status enum and the exceptions.
const TYPES_MODULE: &str = "clockbound_shm._types";

/// `clockbound_shm.ClockStatus`.
pub(crate) fn clock_status(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CELL.import(py, TYPES_MODULE, "ClockStatus")
}

/// The exception class `name` of `clockbound_shm._types`.
pub(crate) fn exception<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyType>> {
    // One lookup per raise: errors are the cold path.
    py.import(TYPES_MODULE)?
        .getattr(name)?
        .cast_into::<PyType>()
        .map_err(Into::into)
}

/// `datetime.datetime`.
pub(crate) fn datetime_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CELL.import(py, "datetime", "datetime")
}

/// `datetime.timedelta`.
pub(crate) fn timedelta_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CELL.import(py, "datetime", "timedelta")
}

/// The Unix epoch as an aware `datetime` in UTC.
pub(crate) fn epoch(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CELL.get_or_try_init(py, || {
        let utc = py.import("datetime")?.getattr("timezone")?.getattr("utc")?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("tzinfo", utc)?;
        Ok(datetime_type(py)?
            .call((1970, 1, 1), Some(&kwargs))?
            .unbind())
    })
    .map(|epoch| epoch.bind(py))
}
