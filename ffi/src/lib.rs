//! `libclockbound`: a thread-safe C library over [`clockbound_shm`], source-compatible with
//! the ClockBound 3.x C header.
//!
//! The C contract is in `include/clockbound.h` (the header C programs include) and in
//! `README.md`; this crate's items mirror it for Rust tests and for Rust programs that
//! want to call the entry points directly.
//!
//! - [`types`]: the `#[repr(C)]` types of the header (errors, status, the window).
//! - [`context`]: the context, its closed state and the operations, in safe code.
//! - [`exports`]: the `extern "C"` entry points, the only place with `unsafe`: they turn
//!   raw pointers from C into references, catch panics and report errors.

#![deny(unsafe_code)]
// The C names (`clockbound_err`, `CLOCKBOUND_ERR_NONE`, ...) are the header's.
#![allow(non_camel_case_types)]

pub mod context;
pub mod exports;
pub mod types;

pub use context::{FfiError, clockbound_ctx};
pub use exports::{
    clockbound_after, clockbound_before, clockbound_close, clockbound_now, clockbound_open,
    clockbound_open_with, clockbound_wait_for_sync, clockbound_wait_until_after,
};
pub use types::{
    CLOCKBOUND_ERROR_DETAIL_SIZE, clockbound_clock_status, clockbound_err, clockbound_err_kind,
    clockbound_now_result,
};
