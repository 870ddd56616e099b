/*
 * libclockbound: error-bounded time from the AWS ClockBound daemon, for C and C++.
 *
 * Built from the Rust crate clockbound-shm (package clockbound-shm-ffi). Programs written
 * for the ClockBound 3.x C library (clock-bound-ffi 3.0.0-rc.0) compile against this header
 * and link against this library unchanged: the functions, types, enum values, struct
 * layouts and macros they use are the same. What this library adds is listed below and in
 * the README next to this header.
 *
 * Thread safety
 * -------------
 * One context may be used by any number of threads at the same time, for every function
 * that takes a context, including clockbound_close(). clockbound_now() takes no lock and
 * makes no system call on its usual path. Each thread passes its own `res` and `err`
 * structures (the library writes them; two threads must not share one).
 *
 * Contexts and closing
 * --------------------
 * A context pointer is valid from the clockbound_open*() call that returned it until the
 * process ends: clockbound_close() releases the mapping and the files, but never frees the
 * context object itself (a few dozen bytes). So after a close:
 *   - clockbound_now() and every other call on the context fail with
 *     CLOCKBOUND_ERR_CONTEXT_CLOSED (errno EBADF); a second clockbound_close() fails the
 *     same way. None of them is undefined behaviour.
 *   - Calls already running on other threads finish normally (they hold the mapping until
 *     they return); the mapping is released when the last of them returns. A wait in
 *     progress (clockbound_wait_until_after()) is not interrupted by a close.
 * A NULL context is CLOCKBOUND_ERR_INVALID_ARGUMENT. Passing anything else that is not a
 * pointer returned by clockbound_open*() (a dangling or made-up pointer) is undefined
 * behaviour, as for any C API. Each context opened keeps a few dozen bytes for the life
 * of the process, closed or not: open one and share it rather than one per request.
 * Do not cancel a thread (pthread_cancel) while it is inside a clockbound_*() call: the
 * waits sleep, and cancellation there would unwind through the library, which is
 * undefined behaviour.
 * The first open installs a process-wide SIGBUS handler that survives a daemon
 * truncating its segment while it is mapped (every ClockBound 3.x start does that to
 * shm0); faults elsewhere go to the handler installed before it, or kill the process as
 * usual. A handler installed later by the program replaces it unless it chains to it.
 *
 * Errors
 * ------
 * Functions returning clockbound_err* return NULL on success. On failure they return `err`
 * after filling it in; when `err` is NULL they return a pointer to a per-thread error
 * structure instead: read it on the same thread, before that thread's next failing call
 * with a NULL `err` overwrites it (it lives until the thread exits; do not write to it).
 * So a failure is never reported as NULL. On success `*err` is not written.
 * Functions returning clockbound_ctx* return NULL on failure and fill `*err` if it is not
 * NULL.
 * Every argument is checked: NULL pointers, segment paths that are empty or not UTF-8
 * (an empty VMClock path is accepted, as by the released library: it is only opened when
 * the segment asks for the disruption check), and
 * timestamps whose tv_nsec is outside [0, 999999999] give CLOCKBOUND_ERR_INVALID_ARGUMENT
 * (errno EINVAL). Strings must be NUL-terminated. An internal failure never unwinds into
 * the caller: it is reported as CLOCKBOUND_ERR_INTERNAL.
 *
 * The `errno` field
 * -----------------
 * struct clockbound_err has a field named `errno`, as in the released header. <errno.h>
 * defines `errno` as a macro, so:
 *   - this header may be included before or after <errno.h> (it hides the macro while it
 *     declares the struct);
 *   - in a file that includes <errno.h>, read the field with clockbound_err_errno(&err):
 *     `err.errno` would expand the macro. Files that do not include <errno.h> (directly or
 *     through another header) can write `err.errno` as before.
 */

#ifndef _CLOCKBOUND_H
#define _CLOCKBOUND_H

#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Size of clockbound_err.detail, the NUL-terminated message, in bytes. */
#define CLOCKBOUND_ERROR_DETAIL_SIZE 128
/* The ClockBound 3.x daemon's segment (layout 3). */
#define CLOCKBOUND_SHM_DEFAULT_PATH "/var/run/clockbound/shm1"
/* The segment ClockBound 2.x daemons write, and 3.x daemons for 2.x clients (layout 2). */
#define CLOCKBOUND_SHM_V2_DEFAULT_PATH "/var/run/clockbound/shm0"
/* The VMClock device, read for clock disruptions when the segment says so. */
#define VMCLOCK_SHM_DEFAULT_PATH "/dev/vmclock0"

/*
 * An open ClockBound segment. Opaque. Shareable between threads (see above), unlike the
 * released library's context.
 */
typedef struct clockbound_ctx clockbound_ctx;

/* What went wrong. Values 0 to 5 are those of the released library. */
typedef enum clockbound_err_kind {
	/* Success. */
	CLOCKBOUND_ERR_NONE = 0,
	/* A system call failed (open, map, ...); `errno` holds its errno (ENOENT: no daemon,
	 * or the segment not created yet; EACCES: no permission). Also a VMClock device that
	 * the segment asks for and that cannot be opened. */
	CLOCKBOUND_ERR_SYSCALL = 1,
	/* The segment exists but holds no snapshot yet (daemon starting). Retry later. */
	CLOCKBOUND_ERR_SEGMENT_NOT_INITIALIZED = 2,
	/* The segment (or the VMClock page) is not valid. */
	CLOCKBOUND_ERR_SEGMENT_MALFORMED = 3,
	/* The clock reads earlier than the snapshot was taken: another boot, another clock,
	 * or a broken writer. */
	CLOCKBOUND_ERR_CAUSALITY_BREACH = 4,
	/* The segment's layout version cannot be read (or not on this CPU). */
	CLOCKBOUND_ERR_SEGMENT_VERSION_NOT_SUPPORTED = 5,
	/* Added by this library. */
	/* A NULL or misaligned pointer, an empty or non-UTF-8 segment path, a timestamp with
	 * tv_nsec out of range. errno EINVAL. (A dangling or made-up context pointer cannot be
	 * detected: see above.) */
	CLOCKBOUND_ERR_INVALID_ARGUMENT = 6,
	/* The context was closed. errno EBADF. */
	CLOCKBOUND_ERR_CONTEXT_CLOSED = 7,
	/* The clock status is Unknown or Disrupted where a trusted clock is needed
	 * (clockbound_after, clockbound_before, clockbound_wait_until_after). Transient. */
	CLOCKBOUND_ERR_CLOCK_NOT_TRUSTED = 8,
	/* A wait ran out of time. errno ETIMEDOUT; `detail` names the last problem seen. */
	CLOCKBOUND_ERR_TIMEOUT = 9,
	/* A bug in this library, caught before it could reach the caller. errno EIO. */
	CLOCKBOUND_ERR_INTERNAL = 10
} clockbound_err_kind;

#pragma push_macro("errno")
#undef errno

/* Details of a failure. Written by the library, read by the caller. */
typedef struct clockbound_err {
	/* What went wrong. */
	clockbound_err_kind kind;
	/* For CLOCKBOUND_ERR_SYSCALL, the errno of the failed call; EPROTO for content
	 * errors, and the errno named above for the kinds added by this library. Read it
	 * with clockbound_err_errno() where <errno.h> is included. */
	int errno;
	/* A message for people: the file, the value found, the cause. Always
	 * NUL-terminated, truncated to fit. (Not const, unlike the released header: the
	 * library writes it.) */
	char detail[CLOCKBOUND_ERROR_DETAIL_SIZE];
} clockbound_err;

/* The `errno` field of `*e`, usable where <errno.h> hides the field name. */
#if defined(__cplusplus) || (defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L)
static inline int clockbound_err_errno(const clockbound_err *e)
#else
/* C89/C90 has no `inline`; GCC and Clang accept `__inline__` in every mode. */
static __inline__ int clockbound_err_errno(const clockbound_err *e)
#endif
{
	return e->errno;
}

#pragma pop_macro("errno")

/* Whether the window can be trusted. Values as in the released library. */
typedef enum clockbound_clock_status {
	/* Nothing is known: do not trust the window. */
	CLOCKBOUND_STA_UNKNOWN = 0,
	/* Synchronized to a time source: the window holds. */
	CLOCKBOUND_STA_SYNCHRONIZED = 1,
	/* Not synchronized lately, but the window has grown with the worst-case drift: it
	 * still holds. */
	CLOCKBOUND_STA_FREE_RUNNING = 2,
	/* The clock was disrupted (live migration, snapshot restore): do not trust it. */
	CLOCKBOUND_STA_DISRUPTED = 3
} clockbound_clock_status;

/* A window [earliest, latest] on the CLOCK_REALTIME scale that contains true time. */
typedef struct clockbound_now_result {
	struct timespec earliest;
	struct timespec latest;
	/* Check it before relying on the window. */
	clockbound_clock_status clock_status;
} clockbound_now_result;

/*
 * Opens the daemon's segment at its default path: the layout 3 segment
 * (CLOCKBOUND_SHM_DEFAULT_PATH, ClockBound 3.x) when it exists and reads Synchronized,
 * else the layout 2 segment (CLOCKBOUND_SHM_V2_DEFAULT_PATH), else the layout 3 one if it
 * could be opened at all. Disruptions are checked on VMCLOCK_SHM_DEFAULT_PATH when the
 * segment asks for it. (The released library opens the layout 3 segment only.)
 *
 * Returns a context, or NULL on failure (the error of opening the layout 2 segment when
 * neither opens) with `*err` filled in if `err` is not NULL.
 */
clockbound_ctx *clockbound_open(clockbound_err *err);

/*
 * Opens the segment at `clockbound_shm_path`, of the layout its header declares (layout 3
 * for a 3.x daemon's shm1, layout 2 otherwise), checking disruptions on the VMClock
 * device at `vmclock_shm_path` when the segment asks for it (the device is not opened
 * otherwise). Both paths are required.
 *
 * Returns a context, or NULL on failure with `*err` filled in if `err` is not NULL.
 */
clockbound_ctx *clockbound_open_with(char const *clockbound_shm_path,
		char const *vmclock_shm_path, clockbound_err *err);

/*
 * Releases the context's mapping and files (once calls in progress on other threads have
 * returned). The context pointer stays valid but closed: see "Contexts and closing".
 *
 * Returns NULL on success; on failure (NULL or already closed context) an error.
 */
clockbound_err *clockbound_close(clockbound_ctx *ctx, clockbound_err *err);

/*
 * The clock error bound window now: true time is in [res->earliest, res->latest], on the
 * CLOCK_REALTIME scale, when res->clock_status is SYNCHRONIZED or FREE_RUNNING. Check the
 * status: an UNKNOWN or DISRUPTED window must not be relied on. A layout 3 window is
 * centred on the daemon's estimate of true time, not on CLOCK_REALTIME.
 *
 * Safe to call from any number of threads on one context; lock-free.
 *
 * Returns NULL on success with `*res` written, or an error (`*res` is then not written).
 */
clockbound_err *clockbound_now(clockbound_ctx *ctx, clockbound_now_result *res,
		clockbound_err *err);

/*
 * Whether `*t` has certainly passed: `*result` is 1 when `*t` is before the earliest
 * instant of the current window, else 0 (it may be now, or in the future).
 *
 * Returns NULL on success with `*result` written; CLOCKBOUND_ERR_CLOCK_NOT_TRUSTED when
 * the clock status is UNKNOWN or DISRUPTED (no answer can be given), or another error.
 */
clockbound_err *clockbound_after(clockbound_ctx *ctx, const struct timespec *t,
		int *result, clockbound_err *err);

/*
 * Whether `*t` has certainly not arrived yet: `*result` is 1 when `*t` is after the latest
 * instant of the current window, else 0.
 *
 * Returns as clockbound_after().
 */
clockbound_err *clockbound_before(clockbound_ctx *ctx, const struct timespec *t,
		int *result, clockbound_err *err);

/*
 * Commit-wait: blocks until `*t` has certainly passed (as clockbound_after() answers 1),
 * sleeping through most of the wait and spinning only its last microseconds. Gives up
 * after `timeout_ns` nanoseconds. `res` may be NULL; if not, it receives the first window
 * whose earliest instant is past `*t`.
 *
 * Returns NULL on success; CLOCKBOUND_ERR_TIMEOUT when `timeout_ns` ran out;
 * CLOCKBOUND_ERR_CLOCK_NOT_TRUSTED as soon as the status is UNKNOWN or DISRUPTED; or
 * another error. Closing the context does not interrupt a wait in progress.
 */
clockbound_err *clockbound_wait_until_after(clockbound_ctx *ctx, const struct timespec *t,
		uint64_t timeout_ns, clockbound_now_result *res, clockbound_err *err);

/*
 * Start-up: waits up to `timeout_ns` nanoseconds for a segment to exist, be valid and
 * read SYNCHRONIZED, then returns it opened. With `clockbound_shm_path` NULL, the segment
 * is chosen as clockbound_open() chooses it (at each attempt); otherwise it is opened as
 * clockbound_open_with() does. `vmclock_shm_path` NULL means VMCLOCK_SHM_DEFAULT_PATH.
 *
 * Errors that waiting can clear (no file yet, segment not initialized, status not yet
 * SYNCHRONIZED) are retried every 10 ms; any other error is returned at once.
 *
 * Returns a context, or NULL with `*err` filled in: CLOCKBOUND_ERR_TIMEOUT (the detail
 * names the last error seen) or the error that waiting cannot fix.
 */
clockbound_ctx *clockbound_wait_for_sync(char const *clockbound_shm_path,
		char const *vmclock_shm_path, uint64_t timeout_ns, clockbound_err *err);

#ifdef __cplusplus
}
#endif

#endif /* _CLOCKBOUND_H */
