//! The `extern "C"` entry points of `clockbound.h`.
//!
//! Each one checks its pointer arguments (NULL, alignment, the context's tag), runs the
//! operation of [`clockbound_ctx`] inside `catch_unwind`, and writes its answer or its
//! error through the caller's pointers. Nothing unwinds into C.

// The C ABI: exported unmangled symbols, and pointers from C that must be read and written.
// Each block says which part of the header's contract makes it sound.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::ffi::{CStr, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::ptr;
use std::time::Duration;

use clockbound_shm::Timespec;

use crate::context::{FfiError, clockbound_ctx, path_arg};
use crate::types::{
    CLOCKBOUND_ERROR_DETAIL_SIZE, clockbound_err, clockbound_err_kind, clockbound_now_result,
    timespec_from_c,
};

/// What a failure is reported as when even building its report failed.
const REPORT_FAILED: clockbound_err = clockbound_err {
    kind: clockbound_err_kind::CLOCKBOUND_ERR_INTERNAL,
    errno: libc::EIO,
    detail: [0; CLOCKBOUND_ERROR_DETAIL_SIZE],
};

/// Returned for a failure with `err` NULL on a thread whose thread-locals are gone (it is
/// exiting); never written.
static EXITING_THREAD_ERR: clockbound_err = REPORT_FAILED;

thread_local! {
    /// Where a failure is written when the caller passed no `err`.
    static THREAD_ERR: UnsafeCell<clockbound_err> = const { UnsafeCell::new(clockbound_err::NONE) };
}

/// Runs `f`; a panic becomes [`FfiError::Internal`].
fn guarded<T>(f: impl FnOnce() -> Result<T, FfiError>) -> Result<T, FfiError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            // Dropping a panic payload runs arbitrary code that may panic again.
            std::mem::forget(payload);
            Err(FfiError::Internal(message))
        }
    }
}

/// Writes `e` to `err`, or to this thread's error when `err` is NULL or misaligned, and
/// returns where it went (never NULL).
///
/// # Safety
/// `err` is NULL or valid for writing a `clockbound_err` (the header's contract).
unsafe fn report(err: *mut clockbound_err, e: &FfiError) -> *mut clockbound_err {
    let value = catch_unwind(AssertUnwindSafe(|| e.to_c())).unwrap_or(REPORT_FAILED);
    let target = if !err.is_null() && err.is_aligned() {
        err
    } else {
        match THREAD_ERR.try_with(UnsafeCell::get) {
            Ok(own) => own,
            Err(_) => return ptr::from_ref(&EXITING_THREAD_ERR).cast_mut(),
        }
    };
    // SAFETY: `target` is either the caller's `err`, non-NULL, aligned and valid for
    // writes by the header's contract, or this thread's own `THREAD_ERR`, which nothing
    // else references while this thread is in this call (the C caller only reads it
    // between calls). `write` drops nothing (`clockbound_err` is plain data).
    unsafe { target.write(value) };
    target
}

/// The `clockbound_err*` a call returns: NULL on success, else where the error went.
///
/// # Safety
/// As [`report`].
unsafe fn finish(err: *mut clockbound_err, result: Result<(), FfiError>) -> *mut clockbound_err {
    match result {
        Ok(()) => ptr::null_mut(),
        // SAFETY: passed on from the caller.
        Err(e) => unsafe { report(err, &e) },
    }
}

/// The `clockbound_ctx*` an open returns: the context, or NULL with the error reported.
///
/// # Safety
/// As [`report`].
unsafe fn opened(
    err: *mut clockbound_err,
    result: Result<&'static clockbound_ctx, FfiError>,
) -> *mut clockbound_ctx {
    match result {
        // C holds it as `clockbound_ctx*`; the library only ever makes shared references
        // from it (all changes go through the `ArcSwapOption` inside).
        Ok(ctx) => ptr::from_ref(ctx).cast_mut(),
        Err(e) => {
            // SAFETY: passed on from the caller.
            unsafe { report(err, &e) };
            ptr::null_mut()
        }
    }
}

/// The context behind `ctx`.
///
/// # Safety
/// `ctx` is NULL or a pointer returned by a `clockbound_open*` function (the header's
/// contract). Such a context is never freed, hence `'static`.
unsafe fn context(ctx: *mut clockbound_ctx) -> Result<&'static clockbound_ctx, FfiError> {
    if ctx.is_null() {
        return Err(FfiError::InvalidArgument("the context is NULL".into()));
    }
    if !ctx.is_aligned() {
        return Err(FfiError::InvalidArgument("not a ClockBound context".into()));
    }
    // SAFETY: non-NULL and aligned; by the contract it points to a context, which is
    // never freed and only ever referenced shared, so a `&'static` to it is valid.
    let ctx = unsafe { &*ctx };
    if !ctx.is_context() {
        return Err(FfiError::InvalidArgument("not a ClockBound context".into()));
    }
    Ok(ctx)
}

/// `p` checked to be usable as an output pointer (`what` names it): non-NULL, aligned.
fn out_ptr<T>(p: *mut T, what: &str) -> Result<*mut T, FfiError> {
    if p.is_null() {
        return Err(FfiError::InvalidArgument(format!("{what} is NULL")));
    }
    if !p.is_aligned() {
        return Err(FfiError::InvalidArgument(format!("{what} is misaligned")));
    }
    Ok(p)
}

/// A path argument (`what` names it); NULL is `Ok(None)`.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for reads until this call returns.
unsafe fn optional_path<'a>(p: *const c_char, what: &str) -> Result<Option<&'a Path>, FfiError> {
    // SAFETY: passed on from the caller.
    unsafe { c_path(p, what, false) }
}

/// [`optional_path`], empty strings accepted when `allow_empty`.
///
/// # Safety
/// As [`optional_path`].
unsafe fn c_path<'a>(
    p: *const c_char,
    what: &str,
    allow_empty: bool,
) -> Result<Option<&'a Path>, FfiError> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, and by the contract a NUL-terminated string that stays valid and
    // unchanged while this call runs (the borrow does not outlive the call).
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    path_arg(bytes, what, allow_empty).map(Some)
}

/// A required path argument (`what` names it).
///
/// # Safety
/// As [`optional_path`].
unsafe fn required_path<'a>(p: *const c_char, what: &str) -> Result<&'a Path, FfiError> {
    // SAFETY: passed on from the caller.
    unsafe { optional_path(p, what) }?
        .ok_or_else(|| FfiError::InvalidArgument(format!("{what} is NULL")))
}

/// A timestamp argument.
///
/// # Safety
/// `t` is NULL or valid for reading a `struct timespec`.
unsafe fn timestamp(t: *const libc::timespec) -> Result<Timespec, FfiError> {
    if t.is_null() || !t.is_aligned() {
        return Err(FfiError::InvalidArgument(
            "the timestamp is NULL or misaligned".into(),
        ));
    }
    // SAFETY: non-NULL, aligned, valid for reads by the contract; every bit pattern is a
    // valid `timespec` (two integers).
    let t = unsafe { t.read() };
    timespec_from_c(&t).ok_or_else(|| {
        FfiError::InvalidArgument(format!(
            "the timestamp's tv_nsec ({}) is outside [0, 999999999]",
            t.tv_nsec
        ))
    })
}

/// Opens the daemon's segment, layout 3 preferred (see `clockbound.h`).
///
/// # Safety
/// `err` is NULL or valid for writing a `clockbound_err`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clockbound_open(err: *mut clockbound_err) -> *mut clockbound_ctx {
    let result = guarded(clockbound_ctx::open_default);
    // SAFETY: the caller's `err`, under this function's contract.
    unsafe { opened(err, result) }
}

/// Opens the segment at `clockbound_shm_path` (either layout), checking disruptions on
/// `vmclock_shm_path` when the segment asks for it (see `clockbound.h`).
///
/// # Safety
/// Each path is NULL or a NUL-terminated string; `err` is NULL or valid for writing a
/// `clockbound_err`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clockbound_open_with(
    clockbound_shm_path: *const c_char,
    vmclock_shm_path: *const c_char,
    err: *mut clockbound_err,
) -> *mut clockbound_ctx {
    let result = guarded(|| {
        // SAFETY: the caller's strings, under this function's contract.
        let shm = unsafe { required_path(clockbound_shm_path, "the ClockBound segment path") }?;
        // An empty VMClock path is accepted, as the released library accepts it: the page is
        // opened only when the segment asks for the disruption check, and then fails (ENOENT).
        // SAFETY: as above.
        let vmclock = unsafe { c_path(vmclock_shm_path, "the VMClock path", true) }?
            .ok_or_else(|| FfiError::InvalidArgument("the VMClock path is NULL".to_owned()))?;
        clockbound_ctx::open_with(shm, vmclock)
    });
    // SAFETY: the caller's `err`, under this function's contract.
    unsafe { opened(err, result) }
}

/// Waits up to `timeout_ns` for a segment to read Synchronized and opens it (see
/// `clockbound.h`); NULL paths mean the defaults.
///
/// # Safety
/// As [`clockbound_open_with`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clockbound_wait_for_sync(
    clockbound_shm_path: *const c_char,
    vmclock_shm_path: *const c_char,
    timeout_ns: u64,
    err: *mut clockbound_err,
) -> *mut clockbound_ctx {
    let result = guarded(|| {
        // SAFETY: the caller's strings, under this function's contract.
        let shm = unsafe { optional_path(clockbound_shm_path, "the ClockBound segment path") }?;
        // SAFETY: as above.
        let vmclock = unsafe { optional_path(vmclock_shm_path, "the VMClock path") }?;
        clockbound_ctx::wait_for_sync(shm, vmclock, Duration::from_nanos(timeout_ns))
    });
    // SAFETY: the caller's `err`, under this function's contract.
    unsafe { opened(err, result) }
}

/// Closes the context: releases its reader; the context stays, closed (see
/// `clockbound.h`).
///
/// # Safety
/// `ctx` is NULL or returned by a `clockbound_open*` function (open or closed); `err` is
/// NULL or valid for writing a `clockbound_err`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clockbound_close(
    ctx: *mut clockbound_ctx,
    err: *mut clockbound_err,
) -> *mut clockbound_err {
    let result = guarded(|| {
        // SAFETY: the caller's context, under this function's contract.
        unsafe { context(ctx) }?.close()
    });
    // SAFETY: the caller's `err`, under this function's contract.
    unsafe { finish(err, result) }
}

/// The window now, into `*res` (see `clockbound.h`).
///
/// # Safety
/// `ctx` as for [`clockbound_close`]; `res` is NULL or valid for writing a
/// `clockbound_now_result`; `err` is NULL or valid for writing a `clockbound_err`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clockbound_now(
    ctx: *mut clockbound_ctx,
    res: *mut clockbound_now_result,
    err: *mut clockbound_err,
) -> *mut clockbound_err {
    let result = guarded(|| {
        // SAFETY: the caller's context, under this function's contract.
        let ctx = unsafe { context(ctx) }?;
        let res = out_ptr(res, "res")?;
        let window = ctx.now()?;
        // SAFETY: `res` is non-NULL and aligned (`out_ptr`), valid for writes by the
        // contract; the result is plain data, nothing is dropped.
        unsafe { res.write(window.into()) };
        Ok(())
    });
    // SAFETY: the caller's `err`, under this function's contract.
    unsafe { finish(err, result) }
}

/// `after` or `before`, written to `*result` as 1 or 0.
///
/// # Safety
/// As [`clockbound_after`].
unsafe fn answer(
    ctx: *mut clockbound_ctx,
    t: *const libc::timespec,
    result: *mut c_int,
    err: *mut clockbound_err,
    query: fn(&clockbound_ctx, Timespec) -> Result<bool, FfiError>,
) -> *mut clockbound_err {
    let outcome = guarded(|| {
        // SAFETY: the caller's context, under the contract.
        let ctx = unsafe { context(ctx) }?;
        // SAFETY: the caller's timestamp, under the contract.
        let t = unsafe { timestamp(t) }?;
        let result = out_ptr(result, "result")?;
        let yes = query(ctx, t)?;
        // SAFETY: `result` is non-NULL and aligned (`out_ptr`), valid for writes by the
        // contract.
        unsafe { result.write(c_int::from(yes)) };
        Ok(())
    });
    // SAFETY: the caller's `err`, under the contract.
    unsafe { finish(err, outcome) }
}

/// Whether `*t` has certainly passed, on a trusted clock (see `clockbound.h`).
///
/// # Safety
/// `ctx` as for [`clockbound_close`]; `t` is NULL or valid for reading a `struct
/// timespec`; `result` is NULL or valid for writing an `int`; `err` is NULL or valid for
/// writing a `clockbound_err`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clockbound_after(
    ctx: *mut clockbound_ctx,
    t: *const libc::timespec,
    result: *mut c_int,
    err: *mut clockbound_err,
) -> *mut clockbound_err {
    // SAFETY: the caller's pointers, under this function's contract.
    unsafe { answer(ctx, t, result, err, clockbound_ctx::after) }
}

/// Whether `*t` has certainly not arrived, on a trusted clock (see `clockbound.h`).
///
/// # Safety
/// As [`clockbound_after`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clockbound_before(
    ctx: *mut clockbound_ctx,
    t: *const libc::timespec,
    result: *mut c_int,
    err: *mut clockbound_err,
) -> *mut clockbound_err {
    // SAFETY: the caller's pointers, under this function's contract.
    unsafe { answer(ctx, t, result, err, clockbound_ctx::before) }
}

/// Commit-wait: blocks until `*t` has certainly passed, for at most `timeout_ns` (see
/// `clockbound.h`).
///
/// # Safety
/// `ctx` as for [`clockbound_close`]; `t` is NULL or valid for reading a `struct
/// timespec`; `res` is NULL or valid for writing a `clockbound_now_result`; `err` is NULL
/// or valid for writing a `clockbound_err`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clockbound_wait_until_after(
    ctx: *mut clockbound_ctx,
    t: *const libc::timespec,
    timeout_ns: u64,
    res: *mut clockbound_now_result,
    err: *mut clockbound_err,
) -> *mut clockbound_err {
    let outcome = guarded(|| {
        // SAFETY: the caller's context, under this function's contract.
        let ctx = unsafe { context(ctx) }?;
        // SAFETY: the caller's timestamp, under this function's contract.
        let t = unsafe { timestamp(t) }?;
        let res = if res.is_null() {
            None
        } else {
            Some(out_ptr(res, "res")?)
        };
        let window = ctx.wait_until_after(t, Duration::from_nanos(timeout_ns))?;
        if let Some(res) = res {
            // SAFETY: non-NULL and aligned (`out_ptr`), valid for writes by the contract.
            unsafe { res.write(window.into()) };
        }
        Ok(())
    });
    // SAFETY: the caller's `err`, under this function's contract.
    unsafe { finish(err, outcome) }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::sync::Barrier;

    use clockbound_shm::{ClockErrorBound, ClockStatus, ShmWriter};

    use super::*;
    use crate::types::clockbound_clock_status;

    /// A layout 2 segment, Synchronized, in a temporary directory (kept with it).
    fn segment() -> (tempfile::TempDir, CString) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shm0");
        let as_of = Timespec::monotonic_coarse_now();
        ShmWriter::new(&path).unwrap().write(&ClockErrorBound::new(
            as_of,
            as_of.saturating_add(Duration::from_secs(1000)),
            10_000,
            0,
            1_000,
            ClockStatus::Synchronized,
            false,
        ));
        let path = CString::new(path.to_str().unwrap()).unwrap();
        (dir, path)
    }

    fn open(path: &CString) -> *mut clockbound_ctx {
        let vmclock = CString::new("/dev/vmclock0").unwrap();
        let mut err = clockbound_err::NONE;
        // SAFETY: valid strings and a valid `err`.
        let ctx = unsafe { clockbound_open_with(path.as_ptr(), vmclock.as_ptr(), &mut err) };
        assert!(!ctx.is_null(), "{err:?}");
        ctx
    }

    fn kind(e: *mut clockbound_err) -> clockbound_err_kind {
        assert!(!e.is_null(), "expected an error");
        // SAFETY: the library returned it: the caller's `err` or this thread's own.
        unsafe { (*e).kind }
    }

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let result: Result<(), FfiError> = guarded(|| panic!("boom"));
        match result {
            Err(FfiError::Internal(message)) => assert_eq!(message, "boom"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failure_without_err_is_reported_in_the_thread_error() {
        let res = ptr::null_mut();
        // SAFETY: NULL pointers are allowed and checked.
        let e = unsafe { clockbound_now(ptr::null_mut(), res, ptr::null_mut()) };
        assert_eq!(
            kind(e),
            clockbound_err_kind::CLOCKBOUND_ERR_INVALID_ARGUMENT
        );
        // SAFETY: as above.
        let again = unsafe { clockbound_close(ptr::null_mut(), ptr::null_mut()) };
        assert_eq!(e, again, "one error per thread");
    }

    #[test]
    fn a_pointer_to_something_else_is_not_a_context() {
        // Aligned, readable, but no context's tag.
        let fake = [0u64; 4];
        let ctx = fake.as_ptr().cast::<clockbound_ctx>().cast_mut();
        let mut err = clockbound_err::NONE;
        let mut res = std::mem::MaybeUninit::<clockbound_now_result>::uninit();
        // SAFETY: `ctx` is readable for a context's size, which is all the check reads.
        let e = unsafe { clockbound_now(ctx, res.as_mut_ptr(), &mut err) };
        assert_eq!(
            kind(e),
            clockbound_err_kind::CLOCKBOUND_ERR_INVALID_ARGUMENT
        );
        assert!(err.detail_str().contains("not a ClockBound context"));
        // Misaligned: refused before anything is read.
        let misaligned = fake.as_ptr().cast::<u8>().wrapping_add(1);
        // SAFETY: never dereferenced (misaligned).
        let e =
            unsafe { clockbound_close(misaligned.cast::<clockbound_ctx>().cast_mut(), &mut err) };
        assert_eq!(
            kind(e),
            clockbound_err_kind::CLOCKBOUND_ERR_INVALID_ARGUMENT
        );
    }

    #[test]
    fn concurrent_closes_exactly_one_succeeds() {
        let (_dir, path) = segment();
        let ctx = open(&path) as usize;
        let barrier = Barrier::new(4);
        let successes: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut err = clockbound_err::NONE;
                        barrier.wait();
                        // SAFETY: an open context, a valid `err`.
                        let e = unsafe { clockbound_close(ctx as *mut clockbound_ctx, &mut err) };
                        if e.is_null() {
                            1
                        } else {
                            assert_eq!(
                                err.kind,
                                clockbound_err_kind::CLOCKBOUND_ERR_CONTEXT_CLOSED
                            );
                            0
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(successes, 1);
    }

    #[test]
    fn a_wait_in_progress_outlives_a_close() {
        let (_dir, path) = segment();
        let ctx = open(&path);
        let mut res = std::mem::MaybeUninit::<clockbound_now_result>::uninit();
        let mut err = clockbound_err::NONE;
        // SAFETY: an open context and valid pointers.
        assert!(unsafe { clockbound_now(ctx, res.as_mut_ptr(), &mut err) }.is_null());
        // SAFETY: written by the successful call.
        let now = unsafe { res.assume_init() };
        assert_eq!(
            now.clock_status,
            clockbound_clock_status::CLOCKBOUND_STA_SYNCHRONIZED
        );
        // 30 ms past the window: the wait sleeps, and the context is closed meanwhile.
        let t = libc::timespec {
            tv_sec: now.latest.tv_sec,
            tv_nsec: now.latest.tv_nsec,
        };
        let t = timespec_from_c(&t)
            .unwrap()
            .saturating_add(Duration::from_millis(30));
        let t = libc::timespec {
            tv_sec: t.sec(),
            tv_nsec: t.nsec(),
        };
        let ctx_addr = ctx as usize;
        let waiter = std::thread::spawn(move || {
            let mut err = clockbound_err::NONE;
            // SAFETY: a context (open, then closed meanwhile) and valid pointers.
            let e = unsafe {
                clockbound_wait_until_after(
                    ctx_addr as *mut clockbound_ctx,
                    &t,
                    5_000_000_000,
                    ptr::null_mut(),
                    &mut err,
                )
            };
            (e.is_null(), err)
        });
        std::thread::sleep(Duration::from_millis(5));
        // SAFETY: an open context.
        assert!(unsafe { clockbound_close(ctx, &mut err) }.is_null());
        let (ok, wait_err) = waiter.join().unwrap();
        assert!(ok, "{wait_err:?}");
        // SAFETY: a closed context: an error, not a use after free.
        let e = unsafe { clockbound_now(ctx, res.as_mut_ptr(), &mut err) };
        assert_eq!(kind(e), clockbound_err_kind::CLOCKBOUND_ERR_CONTEXT_CLOSED);
    }
}
