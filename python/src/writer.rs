//! `SegmentWriter`: the crate's `ShmWriter` / `ShmWriterV3` for Python tests and
//! simulations (exposed as `clockbound_shm.testing.SegmentWriter`).

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use clockbound_shm::{
    ClockErrorBound, ClockErrorBoundV3, ClockStatus, ShmWriter, ShmWriterV3, Timespec,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::errors::converter;

/// The period error every layout 3 snapshot carries: 2^-40 (about 0.9 parts per
/// trillion), `period_err_frac / 2^(64 + period_err_shift)`.
const V3_PERIOD_ERR_FRAC: u64 = 1 << 63;
const V3_PERIOD_ERR_SHIFT: u8 = 39;

enum AnyWriter {
    V2(ShmWriter),
    V3(ShmWriterV3),
}

/// Writes a ClockBound segment the way the daemon does, for tests and for machines without
/// a daemon. One writer per segment at a time; readers in any process see its updates.
///
/// ``SegmentWriter(path, layout=2)`` creates the file (and its directories) or reuses a
/// valid segment of that layout. ``layout=3`` writes a ``shm1`` segment, stamped with the
/// CPU counter (x86-64 and aarch64 only).
///
/// Thread-safe: calls are serialised by an internal lock.
#[pyclass(frozen, module = "clockbound_shm.testing", name = "SegmentWriter")]
pub(crate) struct SegmentWriter {
    writer: Mutex<AnyWriter>,
    path: PathBuf,
    layout: u16,
}

impl SegmentWriter {
    fn with<T>(&self, f: impl FnOnce(&mut AnyWriter) -> T) -> PyResult<T> {
        let mut guard = self
            .writer
            .lock()
            .map_err(|_| PyRuntimeError::new_err("a previous write panicked"))?;
        Ok(f(&mut guard))
    }
}

/// `base` moved by `offset_ns` (positive: later).
fn shifted(base: Timespec, offset_ns: i128) -> Timespec {
    Timespec::from_nanos(base.as_nanos() + offset_ns)
}

#[pymethods]
impl SegmentWriter {
    #[new]
    #[pyo3(signature = (path, layout = 2))]
    fn new(py: Python<'_>, path: PathBuf, layout: u16) -> PyResult<SegmentWriter> {
        let writer = match layout {
            2 => ShmWriter::new(&path).map(AnyWriter::V2),
            3 => ShmWriterV3::new(&path).map(AnyWriter::V3),
            other => {
                return Err(PyValueError::new_err(format!(
                    "layout must be 2 (shm0) or 3 (shm1), got {other}"
                )));
            }
        }
        .map_err(converter(py))?;
        Ok(SegmentWriter {
            writer: Mutex::new(writer),
            path,
            layout,
        })
    }

    /// Publishes a snapshot computed ``age`` seconds ago (``int``/``float``/``timedelta``;
    /// negative puts it in the future, which readers report as a causality breach).
    ///
    /// - ``status``: a ``ClockStatus`` or its ``int`` value.
    /// - ``bound_ns``: the error bound at the snapshot, nanoseconds.
    /// - ``max_drift_ppb``: how fast the bound grows, parts per billion.
    /// - ``void_after``: seconds after the snapshot when it stops being usable (the daemon
    ///   writes 1000).
    /// - ``disruption_marker``, ``disruption_support``: the VMClock fields.
    /// - ``counter_hz`` (layout 3): the CPU counter's frequency; measured once per process
    ///   when not given (``counter_hz()``).
    ///
    /// Layout 2 stamps the snapshot with ``CLOCK_MONOTONIC_COARSE``; layout 3 with the CPU
    /// counter and ``CLOCK_REALTIME``.
    #[pyo3(signature = (
        status = 1, *, bound_ns = 10_000, max_drift_ppb = 1_000, age = None,
        void_after = 1000.0, disruption_marker = 0, disruption_support = false,
        counter_hz = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        status: i32,
        bound_ns: i64,
        max_drift_ppb: u32,
        age: Option<&Bound<'_, PyAny>>,
        void_after: f64,
        disruption_marker: u64,
        disruption_support: bool,
        counter_hz: Option<u64>,
    ) -> PyResult<()> {
        let status = ClockStatus::from_wire(status).ok_or_else(|| {
            PyValueError::new_err(format!(
                "status must be 0..=3 (a ClockStatus), got {status}"
            ))
        })?;
        let age_ns: i128 = match age {
            None => 0,
            Some(age) => signed_seconds_ns(age)?,
        };
        let void_after = Duration::try_from_secs_f64(void_after).map_err(|_| {
            PyValueError::new_err("void_after: expected a finite number of seconds, 0 or more")
        })?;
        let layout = self.layout;
        self.with(|writer| -> PyResult<()> {
            match writer {
                AnyWriter::V2(w) => {
                    let as_of = shifted(Timespec::monotonic_coarse_now(), -age_ns);
                    w.write(&ClockErrorBound::new(
                        as_of,
                        as_of.saturating_add(void_after),
                        bound_ns,
                        disruption_marker,
                        max_drift_ppb,
                        status,
                        disruption_support,
                    ));
                }
                AnyWriter::V3(w) => {
                    let hz = match counter_hz {
                        Some(hz) => hz,
                        None => measured_counter_hz()?,
                    };
                    let counter = clockbound_shm::cpu_counter().ok_or_else(|| {
                        PyRuntimeError::new_err(format!(
                            "layout {layout} needs the CPU counter, unreadable on this CPU"
                        ))
                    })?;
                    let too_old =
                        || PyValueError::new_err("age: the CPU counter has not run that long");
                    let ticks =
                        age_ns.checked_mul(i128::from(hz)).ok_or_else(too_old)? / 1_000_000_000;
                    let as_of_tsc =
                        u64::try_from(i128::from(counter) - ticks).map_err(|_| too_old())?;
                    let as_of = shifted(Timespec::realtime_now(), -age_ns);
                    w.write(
                        &ClockErrorBoundV3::builder()
                            .as_of_tsc(as_of_tsc)
                            .as_of(as_of)
                            .void_after(as_of.saturating_add(void_after))
                            .with_frequency_hz(hz)
                            .period_err_frac(V3_PERIOD_ERR_FRAC)
                            .period_err_shift(V3_PERIOD_ERR_SHIFT)
                            .bound_nsec(bound_ns)
                            .max_drift_ppb(max_drift_ppb)
                            .clock_status(status)
                            .disruption_marker(disruption_marker)
                            .clock_disruption_support_enabled(disruption_support)
                            .build(),
                    );
                }
            }
            Ok(())
        })?
    }

    /// Wipes the segment as a restarting daemon does (version 0, generation 0): open
    /// readers answer from their last snapshot, new ones get
    /// ``SegmentNotInitializedError``. The next ``write()`` publishes again.
    fn wipe(&self) -> PyResult<()> {
        self.with(|writer| match writer {
            AnyWriter::V2(w) => w.wipe(),
            AnyWriter::V3(w) => w.wipe(),
        })
    }

    /// Leaves the segment as a writer that died mid-update does (generation odd).
    fn simulate_interrupted_update(&self) -> PyResult<()> {
        self.with(|writer| match writer {
            AnyWriter::V2(w) => w.simulate_interrupted_update(),
            AnyWriter::V3(w) => w.simulate_interrupted_update(),
        })
    }

    /// The segment's generation (even between updates, 0 before the first).
    #[getter]
    fn generation(&self) -> PyResult<u16> {
        self.with(|writer| match writer {
            AnyWriter::V2(w) => w.generation(),
            AnyWriter::V3(w) => w.generation(),
        })
    }

    /// The segment file (a ``pathlib.Path``).
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// ``2`` or ``3``.
    #[getter]
    fn layout(&self) -> u16 {
        self.layout
    }

    fn __repr__(&self) -> String {
        format!(
            "SegmentWriter({:?}, layout={})",
            self.path.display().to_string(),
            self.layout
        )
    }
}

/// Seconds (`int`, `float` or `timedelta`, any sign) as nanoseconds.
fn signed_seconds_ns(value: &Bound<'_, PyAny>) -> PyResult<i128> {
    let seconds: f64 = if value.is_instance(crate::types::timedelta_type(value.py())?)? {
        value.call_method0("total_seconds")?.extract()?
    } else {
        value.extract()?
    };
    // A trillion seconds (some 31 700 years) either way: far past any test's needs, and
    // small enough that no sum or product below can overflow.
    if !seconds.is_finite() || seconds.abs() > 1e12 {
        return Err(PyValueError::new_err(format!(
            "age: expected a finite number of seconds within ±1e12, got {seconds}"
        )));
    }
    // A float's nanoseconds: exact enough for the ages tests use.
    Ok((seconds * 1e9).round() as i128)
}

/// The CPU counter's frequency in Hz, measured once per process against the monotonic
/// clock over about 50 ms (good to a few parts per million), for layout 3 snapshots.
///
/// Raises ``RuntimeError`` where the counter cannot be read.
#[pyfunction]
pub(crate) fn counter_hz(py: Python<'_>) -> PyResult<u64> {
    py.detach(measured_counter_hz)
}

fn measured_counter_hz() -> PyResult<u64> {
    static HZ: OnceLock<Option<u64>> = OnceLock::new();
    HZ.get_or_init(measure)
        .ok_or_else(|| PyRuntimeError::new_err("the CPU counter cannot be read on this CPU"))
}

/// One (counter, instant) pair: the instant between two counter reads, from the tightest of
/// several attempts, the counter taken at their middle.
fn paired_reading() -> Option<(u64, Instant)> {
    let mut best: Option<(u64, u64, Instant)> = None;
    for _ in 0..50 {
        let before = clockbound_shm::cpu_counter()?;
        let instant = Instant::now();
        let after = clockbound_shm::cpu_counter()?;
        let width = after.wrapping_sub(before);
        if best.is_none_or(|(w, _, _)| width < w) {
            best = Some((width, before + width / 2, instant));
        }
    }
    best.map(|(_, counter, instant)| (counter, instant))
}

fn measure() -> Option<u64> {
    let (c0, t0) = paired_reading()?;
    std::thread::sleep(Duration::from_millis(50));
    let (c1, t1) = paired_reading()?;
    let nanos = t1.duration_since(t0).as_nanos();
    let hz = u128::from(c1.checked_sub(c0)?) * 1_000_000_000 / nanos.max(1);
    u64::try_from(hz).ok().filter(|&hz| hz > 0)
}
