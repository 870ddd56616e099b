//! Instants and durations between Python and Rust.
//!
//! An instant is an `int` of nanoseconds since the Unix epoch, or a timezone-aware
//! `datetime`. A `datetime` has microsecond resolution: one made from a window bound is
//! rounded outwards (see [`Rounding`]) so that the `datetime` window still contains true
//! time; one given as an argument is exact (its microseconds are whole nanoseconds).

use std::time::Duration;

use clockbound_shm::Timespec;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt};

use crate::types;

const NANOS_PER_MICRO: i128 = 1_000;
const MICROS_PER_SEC: i128 = 1_000_000;

/// How nanoseconds become a `datetime`'s microseconds.
#[derive(Copy, Clone, Debug)]
pub(crate) enum Rounding {
    /// Towards the past: for `earliest`.
    Down,
    /// Towards the future: for `latest`.
    Up,
    /// To the nearest microsecond, halves up: for the midpoint.
    Nearest,
}

/// `nanos` since the epoch as an aware UTC `datetime`, rounded to microseconds as asked.
///
/// # Errors
/// `OverflowError` outside the years `datetime` holds (1..=9999).
pub(crate) fn datetime_from_nanos(
    py: Python<'_>,
    nanos: i128,
    rounding: Rounding,
) -> PyResult<Bound<'_, PyAny>> {
    let micros = match rounding {
        Rounding::Down => nanos.div_euclid(NANOS_PER_MICRO),
        Rounding::Up => -(-nanos).div_euclid(NANOS_PER_MICRO),
        Rounding::Nearest => (nanos + NANOS_PER_MICRO / 2).div_euclid(NANOS_PER_MICRO),
    };
    let secs = micros.div_euclid(MICROS_PER_SEC);
    let sub_micros = micros.rem_euclid(MICROS_PER_SEC);
    // `timedelta(days, seconds, microseconds)` normalises large seconds into days; a value
    // past its range raises `OverflowError`, as does a sum past `datetime.max`.
    let delta = types::timedelta_type(py)?.call1((0, secs, sub_micros))?;
    types::epoch(py)?.add(delta)
}

/// Whether `value` is a `datetime.datetime`.
fn is_datetime(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    value.is_instance(types::datetime_type(value.py())?)
}

/// An aware `datetime` as nanoseconds since the epoch (exact).
///
/// # Errors
/// `ValueError` for a naive `datetime` (its time zone would be a guess).
fn nanos_from_datetime(value: &Bound<'_, PyAny>) -> PyResult<i128> {
    let py = value.py();
    if value.call_method0("utcoffset")?.is_none() {
        return Err(PyValueError::new_err(
            "a naive datetime has no time zone: give an aware one (e.g. tzinfo=timezone.utc) \
             or an int of nanoseconds since the epoch",
        ));
    }
    let delta = value.sub(types::epoch(py)?)?;
    let days: i128 = delta.getattr("days")?.extract()?;
    let seconds: i128 = delta.getattr("seconds")?.extract()?;
    let micros: i128 = delta.getattr("microseconds")?.extract()?;
    // `datetime` subclasses that carry nanoseconds (`pandas.Timestamp`): dropping them
    // would move the instant into the past, and `after(t)` could say yes too early.
    let nanos: i128 = match value.getattr("nanosecond") {
        Ok(n) => n.extract()?,
        Err(_) => 0,
    };
    Ok(((days * 86_400 + seconds) * MICROS_PER_SEC + micros) * NANOS_PER_MICRO + nanos)
}

/// An instant argument: an `int` of nanoseconds since the epoch or an aware `datetime`.
///
/// # Errors
/// `TypeError` for anything else (a `float` is refused: it cannot hold today's time to the
/// nanosecond), `ValueError` for a naive `datetime`, `OverflowError` for an `int` beyond
/// 128 bits. Instants beyond what a `Timespec` holds saturate.
pub(crate) fn nanos_from_py(value: &Bound<'_, PyAny>) -> PyResult<i128> {
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        value.extract()
    } else if is_datetime(value)? {
        nanos_from_datetime(value)
    } else {
        Err(PyTypeError::new_err(format!(
            "expected an int (nanoseconds since the Unix epoch) or an aware datetime, got {}",
            value.get_type().name()?
        )))
    }
}

/// [`nanos_from_py`] as a [`Timespec`].
pub(crate) fn timespec_from_py(value: &Bound<'_, PyAny>) -> PyResult<Timespec> {
    nanos_from_py(value).map(Timespec::from_nanos)
}

/// A duration argument: seconds as an `int` or `float`, or a `datetime.timedelta`.
///
/// # Errors
/// `ValueError` for a negative, infinite or NaN duration; `TypeError` for anything else.
pub(crate) fn duration_from_py(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Duration> {
    let py = value.py();
    let seconds: f64 = if value.is_instance(types::timedelta_type(py)?)? {
        value.call_method0("total_seconds")?.extract()?
    } else if (value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>())
        || value.is_instance_of::<PyFloat>()
    {
        value.extract()?
    } else {
        return Err(PyTypeError::new_err(format!(
            "{what}: expected seconds (int or float) or a timedelta, got {}",
            value.get_type().name()?
        )));
    };
    // Finite but past what a `Duration` holds (some 585 billion years): forever.
    if seconds.is_finite() && seconds >= u64::MAX as f64 {
        return Ok(Duration::MAX);
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        PyValueError::new_err(format!(
            "{what}: expected a finite duration of 0 s or more, got {seconds} s"
        ))
    })
}
