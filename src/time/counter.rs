//! Reading the CPU counter that layout-3 snapshots are stamped with.
//!
//! A layout-3 snapshot says which counter value `as_of_tsc` its time `as_of` belongs to and
//! how long a tick lasts, so `now()` needs the current counter value: the time-stamp counter
//! on x86-64, the virtual counter `CNTVCT_EL0` on aarch64. Both are read between
//! serialising barriers so the read happens where the program says, neither early (before
//! the snapshot it is compared with was taken) nor late.
//!
//! The aarch64 code cannot be compiled or run where this crate is developed; it is kept to
//! the three instructions the protocol names. On any other architecture there is no counter:
//! the reader refuses layout 3 there (see [`COUNTER_SUPPORTED`]), and [`read_counter`] is a
//! stub that returns 0.

// Reading the counter takes an inline-assembly block; nothing else here is unsafe.
#![allow(unsafe_code)]

/// Whether this build can read the CPU counter, and so use layout-3 segments.
pub(crate) const COUNTER_SUPPORTED: bool =
    cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// The name of the architecture this crate was built for, for error messages.
pub(crate) const TARGET_ARCH: &str = std::env::consts::ARCH;

/// The time-stamp counter, read as `lfence; rdtsc; lfence`.
///
/// The first `lfence` keeps `rdtsc` from executing before earlier instructions (the loads
/// that took the snapshot) have completed; the second keeps later instructions from starting
/// before the counter is read.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn read_counter() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: `lfence` and `rdtsc` exist on every x86-64 CPU (SSE2 is part of the x86-64
    // baseline, `rdtsc` of every x86-64 processor), have no operands in memory, and write
    // only EDX:EAX, both declared as outputs. `rdtsc` is allowed in user mode unless the OS
    // sets CR4.TSD, which Linux does not do for ordinary processes (it would fault, not
    // misbehave). Options:
    // - `nostack`: nothing is pushed.
    // - `preserves_flags`: none of the three instructions writes RFLAGS.
    // - not `nomem`: the block must also stay where it is in the compiler's view of memory
    //   accesses, after the loads that copied the snapshot (a counter read hoisted above
    //   them could predate a fresh snapshot). Without `nomem` the compiler treats the block
    //   as touching memory and keeps it in program order.
    unsafe {
        core::arch::asm!(
            "lfence",
            "rdtsc",
            "lfence",
            out("eax") lo,
            out("edx") hi,
            options(nostack, preserves_flags),
        );
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The opening half of [`read_counter`], `lfence; rdtsc`, for a reader that computes with
/// the value before closing the read with [`finish_counter_read`].
///
/// Why the closing fence may wait until then: the first `lfence` is the one that keeps the
/// counter read after the loads that took the snapshot. The second keeps whatever the program
/// does next from executing before the counter is read, so that an operation after `now()`
/// cannot be performed at an instant before the window's. Between the two, a reader only
/// does arithmetic on the value, loads from its own copy of the snapshot (never shared
/// memory) and stores the window (stores become visible only after `rdtsc` retires); doing
/// that while `rdtsc` is still executing changes no result. The fence at the end then
/// gives everything after the call the same guarantee as `lfence; rdtsc; lfence` does.
///
/// Every caller must call [`finish_counter_read`] on every path that returns a time
/// computed from the value; a path that reads the counter again instead (a re-read of
/// the snapshot) must not use this value for a window.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn start_counter_read() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: as in `read_counter`, minus the trailing `lfence`: `lfence` and `rdtsc` exist
    // on every x86-64 CPU, take no memory operands and write only EDX:EAX, both declared as
    // outputs; `nostack` (nothing pushed) and `preserves_flags` (neither writes RFLAGS)
    // hold; not `nomem`, so the compiler keeps the block after the snapshot's loads.
    unsafe {
        core::arch::asm!(
            "lfence",
            "rdtsc",
            out("eax") lo,
            out("edx") hi,
            options(nostack, preserves_flags),
        );
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The closing half of a counter read begun with [`start_counter_read`]: `lfence`, after
/// which no later instruction starts before the counter read (and the arithmetic on it) has
/// completed.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn finish_counter_read() {
    // SAFETY: `lfence` exists on every x86-64 CPU (SSE2 is baseline) and touches no
    // register, flag or memory operand. Not `nomem`: the compiler must not move the
    // caller's later memory accesses above it.
    unsafe {
        core::arch::asm!("lfence", options(nostack, preserves_flags));
    }
}

/// The virtual counter, read as `isb; mrs cntvct_el0; isb`.
///
/// The first `isb` keeps the read from being performed ahead of earlier instructions; the
/// second keeps later instructions from being performed before it. (Not compiled or run
/// where this crate is developed.)
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) fn read_counter() -> u64 {
    let counter: u64;
    // SAFETY: `isb` and `mrs` of `CNTVCT_EL0` exist on every AArch64 CPU; Linux lets user
    // space read the virtual counter (CNTKCTL_EL1.EL0VCTEN is set; the vDSO relies on it).
    // The block writes only the declared output register. Options:
    // - `nostack`: nothing is pushed.
    // - `preserves_flags`: neither instruction writes NZCV.
    // - not `nomem`: as on x86-64, the read must stay after the snapshot's loads in the
    //   compiler's view too, so the block is treated as touching memory.
    unsafe {
        core::arch::asm!(
            "isb",
            "mrs {counter}, cntvct_el0",
            "isb",
            counter = out(reg) counter,
            options(nostack, preserves_flags),
        );
    }
    counter
}

/// The opening half of [`read_counter`], `isb; mrs cntvct_el0`; see the x86-64 version for
/// why the closing `isb` ([`finish_counter_read`]) may come after the arithmetic.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) fn start_counter_read() -> u64 {
    let counter: u64;
    // SAFETY: as in `read_counter`, minus the trailing `isb`: both instructions exist on
    // every AArch64 CPU, Linux lets user space read the virtual counter, and the block
    // writes only the declared output; `nostack`, `preserves_flags` hold; not `nomem`.
    unsafe {
        core::arch::asm!(
            "isb",
            "mrs {counter}, cntvct_el0",
            counter = out(reg) counter,
            options(nostack, preserves_flags),
        );
    }
    counter
}

/// The closing half of a counter read begun with [`start_counter_read`]: `isb`.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub(crate) fn finish_counter_read() {
    // SAFETY: `isb` exists on every AArch64 CPU and touches no register, flag or memory.
    // Not `nomem`: later memory accesses stay after it in the compiler's view.
    unsafe {
        core::arch::asm!("isb", options(nostack, preserves_flags));
    }
}

/// No counter on this architecture: returns 0 (see the stub [`read_counter`]).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline(always)]
pub(crate) fn start_counter_read() -> u64 {
    0
}

/// No counter on this architecture: nothing to close.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline(always)]
pub(crate) fn finish_counter_read() {}

/// No counter on this architecture: returns 0. Never called by the reader, which refuses
/// layout 3 here ([`COUNTER_SUPPORTED`] is false); `ClockErrorBoundV3::now` checks the same
/// constant and fails instead of calling it.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline(always)]
pub(crate) fn read_counter() -> u64 {
    0
}

/// The CPU counter exactly as a layout 3 reader reads it (x86-64: `lfence; rdtsc; lfence`;
/// aarch64: `isb; mrs cntvct_el0; isb`), or `None` on architectures where this crate cannot
/// read it. For writers, simulators and tests that stamp layout 3 snapshots with
/// `as_of_tsc` ([`ClockErrorBoundV3Builder::as_of_tsc`](crate::ClockErrorBoundV3Builder::as_of_tsc)).
///
/// ```
/// if let Some(counter) = clockbound_shm::cpu_counter() {
///     assert!(clockbound_shm::cpu_counter().unwrap() >= counter);
/// }
/// ```
#[must_use]
#[inline]
pub fn cpu_counter() -> Option<u64> {
    COUNTER_SUPPORTED.then(read_counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_moves_forward() {
        if !COUNTER_SUPPORTED {
            return;
        }
        let a = read_counter();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = read_counter();
        // At least 2 ms at any counter frequency of 1 MHz or more.
        assert!(b > a && b - a >= 2_000, "{a} then {b}");
    }
}
