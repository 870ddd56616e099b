//! The native half of the `clockbound_shm` Python package, imported as
//! `clockbound_shm._native`.
//!
//! Python code imports `clockbound_shm`, whose `__init__.py` re-exports the classes defined
//! here next to the ones that are simpler in Python (the `ClockStatus` enum and the
//! exception hierarchy, in `clockbound_shm/_types.py`). The classes here look those Python
//! classes up when they need them (`types`), so this crate only ever works inside that
//! package.
//!
//! - [`clock::Clock`]: `SharedClockBound`, shared by any number of Python threads.
//! - [`window::TimeWindow`]: the answer of `Clock.now()`.
//! - [`writer::SegmentWriter`]: the crate's writers, for tests and simulations.
//! - [`errors`]: `ShmError` to Python exceptions.

use pyo3::prelude::*;

mod clock;
mod errors;
mod time;
mod types;
mod window;
mod writer;

/// The module `clockbound_shm._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<clock::Clock>()?;
    m.add_class::<window::TimeWindow>()?;
    m.add_class::<writer::SegmentWriter>()?;
    m.add_function(wrap_pyfunction!(writer::counter_hz, m)?)?;
    m.add(
        "CLOCKBOUND_SHM0_PATH",
        clockbound_shm::CLOCKBOUND_SHM_DEFAULT_PATH,
    )?;
    m.add(
        "CLOCKBOUND_SHM1_PATH",
        clockbound_shm::CLOCKBOUND_SHM1_DEFAULT_PATH,
    )?;
    m.add("VMCLOCK_PATH", clockbound_shm::VMCLOCK_DEFAULT_PATH)?;
    Ok(())
}
