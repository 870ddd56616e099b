//! `ShmError` as Python exceptions (classes in `clockbound_shm/_types.py`).
//!
//! | `ShmError` | Python class |
//! |---|---|
//! | `Io`, `VmClockIo` | `ClockBoundIOError` (also an `OSError`) |
//! | `SegmentNotInitialized` | `SegmentNotInitializedError` |
//! | `SegmentMalformed` | `SegmentMalformedError` |
//! | `SegmentVersionNotSupported` | `VersionNotSupportedError` |
//! | `LayoutNotSupported`, `CounterUnavailable` | `LayoutNotSupportedError` |
//! | `CausalityBreach`, `CounterBehindSnapshot` | `CausalityBreachError` |
//! | `ClockNotTrusted` | `ClockNotTrustedError` |
//! | `Timeout` | `WaitTimeoutError` (also a `TimeoutError`) |
//! | `VmClockMalformed`, `VmClockNotReady` | `VMClockError` |
//! | anything newer | `ClockBoundError` |
//!
//! Every instance's `str()` is the Rust `Display` of the error; its attributes are
//! `errno` (`ShmError::errno`), `transient` (`ShmError::is_transient`), `path` (the file,
//! or `None`), and per class `status` or `last_error`. The OS error behind an I/O error, and
//! the last attempt's error behind a timeout, are chained as `__cause__`.

use clockbound_shm::ShmError;
use pyo3::prelude::*;

use crate::types;

/// The Python exception for `error`.
pub(crate) fn to_py(py: Python<'_>, error: ShmError) -> PyErr {
    build(py, error).unwrap_or_else(|failure| failure)
}

/// A closure for `map_err` that converts with [`to_py`].
pub(crate) fn converter(py: Python<'_>) -> impl FnOnce(ShmError) -> PyErr + '_ {
    move |error| to_py(py, error)
}

fn class_name(error: &ShmError) -> &'static str {
    match error {
        ShmError::Io { .. } | ShmError::VmClockIo { .. } => "ClockBoundIOError",
        ShmError::SegmentNotInitialized { .. } => "SegmentNotInitializedError",
        ShmError::SegmentMalformed { .. } => "SegmentMalformedError",
        ShmError::SegmentVersionNotSupported { .. } => "VersionNotSupportedError",
        ShmError::LayoutNotSupported { .. } | ShmError::CounterUnavailable { .. } => {
            "LayoutNotSupportedError"
        }
        ShmError::CausalityBreach { .. } | ShmError::CounterBehindSnapshot { .. } => {
            "CausalityBreachError"
        }
        ShmError::ClockNotTrusted { .. } => "ClockNotTrustedError",
        ShmError::Timeout { .. } => "WaitTimeoutError",
        ShmError::VmClockMalformed { .. } | ShmError::VmClockNotReady { .. } => "VMClockError",
        _ => "ClockBoundError",
    }
}

/// Builds the exception; `Err` holds the error raised while building it (an import that
/// failed, ...), which is then raised instead.
fn build(py: Python<'_>, error: ShmError) -> Result<PyErr, PyErr> {
    let class = types::exception(py, class_name(&error))?;
    let instance = class.call1((error.to_string(),))?;
    instance.setattr("errno", error.errno())?;
    instance.setattr("transient", error.is_transient())?;
    let path = match &error {
        ShmError::Io { path, .. }
        | ShmError::VmClockIo { path, .. }
        | ShmError::SegmentNotInitialized { path, .. }
        | ShmError::SegmentVersionNotSupported { path, .. }
        | ShmError::LayoutNotSupported { path, .. }
        | ShmError::VmClockMalformed { path, .. }
        | ShmError::VmClockNotReady { path, .. } => Some(path.to_string_lossy().into_owned()),
        ShmError::SegmentMalformed { path, .. } => {
            path.as_ref().map(|p| p.to_string_lossy().into_owned())
        }
        _ => None,
    };
    instance.setattr("path", path)?;
    let mut cause: Option<PyErr> = None;
    match error {
        ShmError::ClockNotTrusted { status } => {
            instance.setattr(
                "status",
                types::clock_status(py)?.call1((status.to_wire(),))?,
            )?;
        }
        ShmError::Timeout { last_error, .. } => {
            let last = last_error.map(|e| to_py(py, *e));
            let value = last.as_ref().map(|e| e.value(py).clone());
            instance.setattr("last_error", value)?;
            cause = last;
        }
        ShmError::Io { source, .. } | ShmError::VmClockIo { source, .. } => {
            // The OS error as Python raises it (`FileNotFoundError`, `PermissionError`, ...).
            cause = Some(PyErr::from(source));
        }
        _ => {}
    }
    let err = PyErr::from_value(instance);
    if let Some(cause) = cause {
        err.set_cause(py, Some(cause));
    }
    Ok(err)
}
