//! Surviving a segment file that is truncated while it is mapped.
//!
//! # The problem
//!
//! The ClockBound daemon recreates its segment file with a truncating create (the file
//! shrinks to 0 bytes) and then rewrites it with several `write` calls: a 3.x daemon does
//! this to the layout-2 segment on every start, a 2.x daemon whenever it finds the segment
//! unusable. A reader that has the file mapped keeps its mapping across this, but while the
//! file is shorter than the start of a mapped page, a load from that page cannot be served
//! from the file, and the kernel raises `SIGBUS` on the loading thread. The default action
//! of `SIGBUS` kills the process: a database reading the clock in a loop would die at the
//! daemon's next restart.
//!
//! # Why a signal handler
//!
//! Nothing short of catching the signal closes the window:
//!
//! - Checking the file's size before each read costs a system call per read and is still
//!   racy: the truncation can land between the check and the load.
//! - Reading with `pread` instead of a mapping costs a system call per read, which is what
//!   the mapping exists to avoid.
//! - Populating or locking the pages (`MAP_POPULATE`, `mlock`) does not help: truncation
//!   removes the pages from every mapping of the file.
//! - A private mapping (`MAP_PRIVATE`) faults on truncated pages it has not copied, just
//!   as a shared one does, and would not see the daemon's updates.
//! - File leases and locks need the writer's cooperation or privileges, and the daemon
//!   takes none.
//!
//! The kernel reports the failed load only as a synchronous `SIGBUS` on the thread that made
//! it, with the address in `si_addr`. A handler is therefore the one place where the fault
//! can be repaired.
//!
//! # What the handler does
//!
//! [`guard`] registers a range (the reader's mapping of the segment). When `SIGBUS` arrives
//! with `si_code > 0` (raised by the kernel for a fault, so `si_addr` is an address; a
//! `SIGBUS` sent with `kill` or `sigqueue` never counts as ours) and `si_addr` inside a
//! registered range, the handler replaces the *whole range* with anonymous zero-filled
//! memory (`mmap` with `MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS`, `PROT_READ`), marks the
//! registration as tripped ([`FaultGuard::tripped`]), counts the fault
//! ([`faults_survived`]) and returns. The kernel then re-executes the load, which now reads
//! zeros: generation 0, which a reader already treats as "segment wiped" and answers from
//! its previous snapshot. The range stays mapped and readable, at the same address, so
//! references to it stay valid; it shows zeros from then on and never follows the file
//! again, which is why the owner must notice [`FaultGuard::tripped`] and map the file anew.
//!
//! Any other `SIGBUS` (an address that is not ours, or an `mmap` that failed) goes to the
//! handler that was installed before ours, exactly as if ours were not there:
//!
//! - a previous `SA_SIGINFO` handler is called with the same `(signal, info, context)`;
//! - a previous plain handler is called with the signal number;
//! - if the previous action had `SA_RESETHAND`, the disposition is reset to the default
//!   first, as the kernel would have done on delivering to it;
//! - for a fault, a previous default or ignore disposition is restored with `sigaction` and
//!   the handler returns: the load faults again and the kernel applies the default action
//!   (a synchronous `SIGBUS` that is ignored is delivered with its default action anyway),
//!   so the process dies by `SIGBUS` as it would have without us;
//! - for a `SIGBUS` sent by a process (`si_code <= 0`), which returning does not repeat, a
//!   previous default disposition is restored and the signal raised again (it kills once
//!   the handler returns); a previous ignore disposition means the signal is dropped and
//!   our handler stays.
//!
//! Our action uses the previous action's signal mask and its `SA_NODEFER`, so a chained
//! handler runs with the mask it asked for. (In a Rust program the previous handler is
//! usually the standard library's stack-overflow handler, which reports a fault in a guard
//! page and otherwise restores the default action and returns.) Another copy of this code
//! in the same process (two versions of the crate) installs a second handler that chains to
//! the first; both work.
//!
//! # Process-wide, installed on first use
//!
//! Signal dispositions belong to the process. The handler is installed by the first call
//! to [`guard`] (the first reader mapping opened) and stays installed for the life of the
//! process; registrations come and go. A `SIGBUS` handler installed *after* ours by someone
//! else replaces ours: from then on truncation faults are theirs to handle, unless they
//! chain to the handler they replaced (which is ours). A thread that blocks `SIGBUS` cannot
//! be helped either: the kernel kills the process on a synchronous fault with the signal
//! blocked.
//!
//! # Async-signal safety
//!
//! The handler may interrupt any code on the faulting thread, including `malloc` or a lock
//! holder, so it only does what is safe there: loads and stores of atomics (lock-free on
//! every supported target), `sigaction` and `raise` (async-signal-safe by POSIX), `mmap` (not
//! on POSIX's list, but on glibc and musl a thin wrapper around the system call that takes
//! no lock the faulting thread could hold) and calls through function pointers to the
//! previous handler. It does not allocate, lock, format or panic: no indexing, no `unwrap`,
//! only iteration and checked arithmetic. It saves `errno` on entry and restores it before
//! it returns, since the interrupted code may be between a failing call and its `errno`
//! check.
//!
//! # The registry and the memory model
//!
//! Registrations live in a linked list of fixed-size chunks of slots. Chunks are allocated
//! outside the handler (by [`guard`]) and never freed, so the handler can walk the list
//! with plain acquire loads of the `next` pointers, without any reclamation scheme; a freed
//! slot is reused by the next registration, so the list only grows to the peak number of
//! live registrations.
//!
//! Each slot's range is published with a per-slot sequence counter (a seqlock): the owner
//! makes the counter odd, stores the start and length, and makes it even again with a
//! release store; the handler reads the counter (acquire), the range, then (after an
//! acquire fence) the counter again, and trusts the range only if both reads returned the
//! same even value. A slot that is being changed is skipped. That is never a slot the
//! faulting range lives in:
//!
//! - A thread can only fault on a range while it holds a live handle to the mapping (the
//!   handle owns the [`FaultGuard`]), so that registration cannot be removed, nor the range
//!   unmapped, while the fault is being handled: its slot is stable during the handler.
//! - The handle was created after [`guard`] returned and reached the faulting thread through
//!   some synchronisation (the thread created it, or received it through `Send`/`Sync`
//!   types, which synchronise), so the registration's release store happens before the
//!   handler's loads, which therefore see the registered range (and the chunk that holds
//!   it, appended with a release compare-exchange).
//! - A registration is removed *before* its range is unmapped, and made *after* it is
//!   mapped, so a registered range is never someone else's memory.
//!
//! # Not covered
//!
//! Only ranges passed to [`guard`] are protected: this crate guards its readers' read-only
//! mappings of the segment. The writer's read-write mappings are not guarded (the writer
//! owns its file and does not truncate it), nor is the VMClock page (device memory, never
//! truncated; a regular file standing in for it in tests is not protected). Faults anywhere
//! else in the process go to the previous handler unchanged.

#![allow(unsafe_code)] // signal dispositions and `mmap` have no safe interface: see above

use std::ffi::{c_int, c_void};
use std::fmt;
use std::io;
use std::mem;
use std::ptr::{self, NonNull};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence};

/// Slots per chunk of the registry.
const SLOTS_PER_CHUNK: usize = 64;

/// One registration: a range, or nothing (`len` 0).
///
/// `claimed` says who owns the slot: only the owner writes `start`, `len` and `seq`; the
/// handler only reads them (and sets `tripped`).
struct Slot {
    claimed: AtomicBool,
    /// Even: `start` and `len` are stable. Odd: the owner is rewriting them.
    seq: AtomicUsize,
    start: AtomicUsize,
    len: AtomicUsize,
    /// Set by the handler once it has replaced the range.
    tripped: AtomicBool,
}

impl Slot {
    const fn empty() -> Slot {
        Slot {
            claimed: AtomicBool::new(false),
            seq: AtomicUsize::new(0),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            tripped: AtomicBool::new(false),
        }
    }

    /// Takes the slot if it is free.
    fn try_claim(&self) -> bool {
        // Acquire: pairs with the release in `FaultGuard::drop`, so the previous owner's
        // writes (its `seq` updates) happen before ours and `seq` only moves forward.
        !self.claimed.load(Ordering::Relaxed)
            && self
                .claimed
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Publishes `(start, len)` (the owner only).
    fn publish(&self, start: usize, len: usize) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Orders the odd `seq` before the range's stores, for a reader that sees a new
        // range word (the reader's acquire fence pairs with this).
        fence(Ordering::Release);
        self.start.store(start, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
        self.tripped.store(false, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// The range, if the slot holds one and is not being rewritten. Async-signal-safe.
    fn range(&self) -> Option<(usize, usize)> {
        let before = self.seq.load(Ordering::Acquire);
        if before & 1 == 1 {
            return None;
        }
        let start = self.start.load(Ordering::Relaxed);
        let len = self.len.load(Ordering::Relaxed);
        // Orders the range's loads before the second `seq` load: if they read a later
        // owner's stores, this load sees that owner's odd (or later) `seq`.
        fence(Ordering::Acquire);
        let after = self.seq.load(Ordering::Relaxed);
        (before == after && len != 0).then_some((start, len))
    }
}

/// A fixed block of slots; the registry is a list of them, never freed.
struct Chunk {
    slots: [Slot; SLOTS_PER_CHUNK],
    /// Slots claimed, roughly (updated after the claim and before the release): lets
    /// registration skip full chunks. Only a hint, never read by the handler.
    claimed: AtomicUsize,
    /// The next chunk, or null. Set once (null to a leaked chunk), never changed again.
    next: AtomicPtr<Chunk>,
}

impl Chunk {
    const fn new() -> Chunk {
        Chunk {
            slots: [const { Slot::empty() }; SLOTS_PER_CHUNK],
            claimed: AtomicUsize::new(0),
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The next chunk. Async-signal-safe.
    fn next(&self) -> Option<&'static Chunk> {
        let next = self.next.load(Ordering::Acquire);
        // SAFETY: `next` is null or was stored by `claim_slot` from `Box::leak`, so it points
        // to a fully initialised `Chunk` (the acquire load pairs with the release
        // compare-exchange that published it) that is never freed or mutated other than
        // through its atomics: a shared `'static` reference is valid.
        unsafe { next.as_ref() }
    }
}

/// The head of the registry.
static FIRST_CHUNK: Chunk = Chunk::new();
/// Faults repaired, in all ranges, since the process started.
static FAULTS_SURVIVED: AtomicU64 = AtomicU64::new(0);
/// The `SIGBUS` action that was in place before ours: a leaked, never-changed allocation,
/// published before our handler is installed.
static PREVIOUS_ACTION: AtomicPtr<libc::sigaction> = AtomicPtr::new(ptr::null_mut());

/// All chunks of the registry, from the first. Async-signal-safe.
fn chunks() -> impl Iterator<Item = &'static Chunk> {
    std::iter::successors(Some(&FIRST_CHUNK), |chunk| chunk.next())
}

/// Takes a free slot, appending a chunk when all are taken. Not for the handler (allocates).
fn claim_slot() -> (&'static Chunk, &'static Slot) {
    let mut last = &FIRST_CHUNK;
    for chunk in chunks() {
        if chunk.claimed.load(Ordering::Relaxed) < SLOTS_PER_CHUNK {
            if let Some(slot) = chunk.slots.iter().find(|slot| slot.try_claim()) {
                chunk.claimed.fetch_add(1, Ordering::Relaxed);
                return (chunk, slot);
            }
        }
        last = chunk;
    }
    // Every slot was taken when we looked: append a chunk whose first slot is ours.
    let chunk: &'static Chunk = Box::leak(Box::new(Chunk::new()));
    let [slot, ..] = &chunk.slots;
    slot.claimed.store(true, Ordering::Relaxed);
    chunk.claimed.store(1, Ordering::Relaxed);
    let new = ptr::from_ref(chunk).cast_mut();
    loop {
        // Release: whoever follows the pointer sees the initialised chunk (and our claim).
        match last
            .next
            .compare_exchange(ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return (chunk, slot),
            // Someone appended first: go to the end and try there (their chunk may have
            // free slots, but ours is already claimed and must be linked anyway).
            Err(_) => {
                if let Some(next) = last.next() {
                    last = next;
                }
            }
        }
    }
}

/// Registers `[start, start + len)`. Not for the handler (may allocate).
fn register(start: usize, len: usize) -> FaultGuard {
    let (chunk, slot) = claim_slot();
    slot.publish(start, len);
    FaultGuard { chunk, slot }
}

/// The slot whose range holds `addr`, with that range. Async-signal-safe.
fn lookup(addr: usize) -> Option<(&'static Slot, usize, usize)> {
    chunks()
        .flat_map(|chunk| chunk.slots.iter())
        .find_map(|slot| {
            let (start, len) = slot.range()?;
            (addr.checked_sub(start)? < len).then_some((slot, start, len))
        })
}

/// A registered range: while it lives, a `SIGBUS` on a load from the range replaces the
/// range with zero-filled memory instead of killing the process. Dropping it deregisters
/// the range; drop it *before* unmapping the range.
pub(crate) struct FaultGuard {
    /// The chunk that holds `slot`.
    chunk: &'static Chunk,
    slot: &'static Slot,
}

impl FaultGuard {
    /// Whether a fault in this range was repaired: the range shows zeros now, and will
    /// never again show the file's contents.
    pub(crate) fn tripped(&self) -> bool {
        // Acquire: pairs with the handler's release store, after its `mmap`.
        self.slot.tripped.load(Ordering::Acquire)
    }
}

impl fmt::Debug for FaultGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultGuard")
            .field(
                "start",
                &(self.slot.start.load(Ordering::Relaxed) as *const u8),
            )
            .field("len", &self.slot.len.load(Ordering::Relaxed))
            .field("tripped", &self.tripped())
            .finish()
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        self.slot.publish(0, 0);
        // Release: the next owner's writes come after ours (see `try_claim`).
        self.slot.claimed.store(false, Ordering::Release);
        self.chunk.claimed.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Guards `[start, start + len)`, a mapping that its owner only reads: installs the
/// process's `SIGBUS` handler on first use and registers the range (see the module docs).
///
/// # Errors
/// `InvalidInput` if `start` is not page-aligned, `len` is 0 or the range wraps around;
/// the OS error of `sigaction` if the handler could not be installed (then and on every
/// later call).
pub(crate) fn guard(start: NonNull<u8>, len: usize) -> io::Result<FaultGuard> {
    let addr = start.as_ptr().addr();
    if len == 0 || addr % page_size() != 0 || addr.checked_add(len).is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot guard {len} bytes at {start:p}: needs a page-aligned, non-empty range"),
        ));
    }
    install_handler()?;
    Ok(register(addr, len))
}

/// `SIGBUS` faults repaired in this process so far, in all guarded ranges.
#[allow(dead_code, reason = "for statistics and diagnostics")]
pub(crate) fn faults_survived() -> u64 {
    FAULTS_SURVIVED.load(Ordering::Relaxed)
}

fn page_size() -> usize {
    // SAFETY: `sysconf` only reads a system parameter; `_SC_PAGESIZE` is always supported.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(1)
}

/// An all-default action (`SIG_DFL`, empty mask, no flags).
fn default_action() -> libc::sigaction {
    // SAFETY: `sigaction` is plain data (integers, a bit set, an optional function
    // pointer): all zeroes is a valid value, and it means `SIG_DFL` with an empty mask,
    // no flags and no restorer.
    unsafe { mem::zeroed() }
}

/// Installs [`on_sigbus`] once per process; later calls return the first call's result.
fn install_handler() -> io::Result<()> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            // Where faults that are not ours go: looked up and published *before* our
            // handler exists, so the handler always finds it.
            let mut previous = default_action();
            // SAFETY: a null new action only queries; `previous` is a valid out-pointer.
            if unsafe { libc::sigaction(libc::SIGBUS, ptr::null(), &raw mut previous) } != 0 {
                return Err(last_os_error());
            }
            let previous: &'static libc::sigaction = Box::leak(Box::new(previous));
            PREVIOUS_ACTION.store(ptr::from_ref(previous).cast_mut(), Ordering::Release);

            let mut ours = default_action();
            ours.sa_sigaction = on_sigbus as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void)
                as libc::sighandler_t;
            ours.sa_flags =
                libc::SA_SIGINFO | libc::SA_ONSTACK | (previous.sa_flags & libc::SA_NODEFER);
            ours.sa_mask = previous.sa_mask;
            let mut replaced = default_action();
            // SAFETY: `ours` is a valid action whose handler is async-signal-safe (see
            // `on_sigbus`); `replaced` is a valid out-pointer.
            if unsafe { libc::sigaction(libc::SIGBUS, &raw const ours, &raw mut replaced) } != 0 {
                return Err(last_os_error());
            }
            // Another thread changed the action between our two calls: chain to what we
            // actually replaced. (The handler may use either until this store; both are
            // valid leaked actions.)
            if replaced.sa_sigaction != previous.sa_sigaction
                || replaced.sa_flags != previous.sa_flags
            {
                let replaced: &'static libc::sigaction = Box::leak(Box::new(replaced));
                PREVIOUS_ACTION.store(ptr::from_ref(replaced).cast_mut(), Ordering::Release);
            }
            Ok(())
        })
        .map_err(io::Error::from_raw_os_error)
}

fn last_os_error() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

/// The `SIGBUS` handler. Async-signal-safe: see the module docs.
extern "C" fn on_sigbus(signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: `__errno_location` returns this thread's `errno`, valid for the thread's life.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above; reading and writing it is what `errno` is for.
    let saved_errno = unsafe { errno.read() };
    // SAFETY: the kernel passes a valid `siginfo_t` to an `SA_SIGINFO` handler; `si_code`
    // is always set, and `si_addr` is the fault address when `si_code > 0` (a fault raised
    // by the kernel), which we check before reading it.
    let fault_addr = unsafe { info.as_ref() }
        .filter(|info| info.si_code > 0)
        .map(|info| unsafe { info.si_addr() }.addr());
    if !fault_addr.is_some_and(repair) {
        // SAFETY: as above.
        unsafe { errno.write(saved_errno) };
        chain(signal, info, context, fault_addr.is_some());
    }
    // SAFETY: as above.
    unsafe { errno.write(saved_errno) };
}

/// If `addr` lies in a registered range, replaces the range with zero-filled read-only
/// memory and reports `true`. Async-signal-safe.
fn repair(addr: usize) -> bool {
    let Some((slot, start, len)) = lookup(addr) else {
        return false;
    };
    // SAFETY: `[start, start + len)` is a registered range: the read-only mapping of a
    // live `FaultGuard`'s owner, which cannot be unmapped or deregistered while this
    // thread, which faulted on it and so holds a handle to it, is in the handler (module
    // docs). Replacing it with `MAP_FIXED` only changes what the owner's reads of it
    // return (zeros instead of a `SIGBUS`); the range stays mapped and readable at the same
    // address, so every pointer and reference into it stays valid, and its owner unmaps it
    // as before (`munmap` removes the anonymous memory as it would the file's).
    let mapped = unsafe {
        libc::mmap(
            ptr::without_provenance_mut::<c_void>(start),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED || mapped.addr() != start {
        return false;
    }
    // Release: whoever sees the flag sees the zero memory in place.
    slot.tripped.store(true, Ordering::Release);
    FAULTS_SURVIVED.fetch_add(1, Ordering::Relaxed);
    true
}

/// Hands a signal that is not ours to the action that was in place before ours, as if ours
/// had never been installed. `fault`: raised by the kernel for a faulting instruction,
/// which re-executes when the handler returns (otherwise sent, e.g. by `kill`). Async-signal-
/// safe (as far as the previous handler is).
fn chain(signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void, fault: bool) {
    let fallback = default_action();
    // SAFETY: null, or a leaked `sigaction` published before our handler was installed and
    // never changed or freed (`install_handler`).
    let previous = unsafe { PREVIOUS_ACTION.load(Ordering::Acquire).as_ref() }
        // Not reachable (published before the handler is installed); act as the default.
        .unwrap_or(&fallback);
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        if fault {
            // Put the previous disposition back and return: the fault happens again and the
            // kernel applies it (an ignored synchronous fault is delivered with the default
            // action), so the process dies by `SIGBUS` as it would have without us.
            // SAFETY: `previous` is a valid action that was in place before.
            unsafe { libc::sigaction(signal, previous, ptr::null_mut()) };
        } else if handler == libc::SIG_DFL {
            // A sent signal is not repeated by returning: put the default back and send it
            // again; it is delivered (and kills) once this handler returns and unblocks it.
            // SAFETY: as above; `raise` is async-signal-safe.
            unsafe {
                libc::sigaction(signal, previous, ptr::null_mut());
                libc::raise(signal);
            }
        }
        // A sent signal that was ignored stays ignored, and our handler stays installed.
        return;
    }
    if previous.sa_flags & libc::SA_RESETHAND != 0 {
        // The kernel would have reset the disposition on delivering to it.
        restore_default(signal);
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: `handler` is neither `SIG_DFL` nor `SIG_IGN`, and the action says
        // `SA_SIGINFO`, so whoever installed it gave the address of a function with the
        // three-argument handler signature; we pass it what the kernel passed us.
        let handler = unsafe {
            mem::transmute::<
                libc::sighandler_t,
                extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void),
            >(handler)
        };
        handler(signal, info, context);
    } else {
        // SAFETY: as above, without `SA_SIGINFO`: the one-argument handler signature.
        let handler =
            unsafe { mem::transmute::<libc::sighandler_t, extern "C" fn(c_int)>(handler) };
        handler(signal);
    }
}

/// Sets `signal`'s disposition to the default. Async-signal-safe.
fn restore_default(signal: c_int) {
    let action = default_action();
    // SAFETY: `action` is a valid `SIG_DFL` action.
    unsafe { libc::sigaction(signal, &raw const action, ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::fs::{File, OpenOptions};
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, ExitStatus};

    use memmap2::{MmapOptions, MmapRaw};

    /// Selects the child role in the re-executed test binary.
    const ROLE_ENV: &str = "CLOCKBOUND_SHM_FAULT_GUARD_ROLE";
    /// Printed by a child just before it touches a truncated, unguarded mapping.
    const TOUCHING: &str = "fault-guard-child: touching the foreign mapping";
    /// Printed by a child just before it sends itself `SIGBUS`.
    const SENDING: &str = "fault-guard-child: sending SIGBUS";
    /// Exit codes of the test's own handlers.
    const SIGINFO_HANDLER_EXIT: i32 = 42;
    const SIGINFO_HANDLER_WRONG_ADDR_EXIT: i32 = 43;
    const PLAIN_HANDLER_EXIT: i32 = 44;

    /// Runs `child` in a new process of this test binary with `role`; returns how it ended
    /// and what it printed.
    fn run_child(role: &str) -> (ExitStatus, String) {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "fault_guard::tests::child", "--nocapture"])
            .env(ROLE_ENV, role)
            .output()
            .expect("run the child process");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status, text)
    }

    /// A temporary page-sized file full of `0xAB`, and a read-only shared mapping of it.
    fn mapped_page() -> (tempfile::NamedTempFile, File, MmapRaw) {
        let mut temp = tempfile::NamedTempFile::new().unwrap();
        temp.write_all(&[0xAB; 4096]).unwrap();
        temp.flush().unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(temp.path())
            .unwrap();
        let raw = MmapOptions::new()
            .len(4096)
            .map_raw_read_only(&file)
            .unwrap();
        (temp, file, raw)
    }

    /// One load from the mapping, at `offset` (8-aligned, in bounds).
    fn load(raw: &MmapRaw, offset: usize) -> u64 {
        assert!(offset % 8 == 0 && offset + 8 <= raw.len());
        // SAFETY: in bounds and aligned (asserted; the mapping is page-aligned); a volatile
        // load of a `u64` from memory nothing in this process writes. It may fault, which
        // is what the tests are about.
        unsafe { raw.as_ptr().add(offset).cast::<u64>().read_volatile() }
    }

    fn guard_raw(raw: &MmapRaw) -> FaultGuard {
        guard(NonNull::new(raw.as_mut_ptr()).unwrap(), raw.len()).unwrap()
    }

    /// Maps a file without a guard, truncates it and touches it: a foreign fault.
    fn touch_truncated_foreign_mapping() -> ! {
        let (_temp, file, raw) = mapped_page();
        EXPECTED_ADDR.store(raw.as_ptr().addr(), Ordering::Relaxed);
        file.set_len(0).unwrap();
        println!("{TOUCHING}");
        let value = load(&raw, 0);
        panic!("the load from a truncated, unguarded mapping returned {value:#x}");
    }

    static EXPECTED_ADDR: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn test_siginfo_handler(_: c_int, info: *mut libc::siginfo_t, _: *mut c_void) {
        // SAFETY: called by our handler with the kernel's `siginfo_t` for a fault.
        let addr = unsafe { (*info).si_addr() }.addr();
        let code = if addr == EXPECTED_ADDR.load(Ordering::Relaxed) {
            SIGINFO_HANDLER_EXIT
        } else {
            SIGINFO_HANDLER_WRONG_ADDR_EXIT
        };
        // SAFETY: `_exit` is async-signal-safe and ends the process.
        unsafe { libc::_exit(code) }
    }

    extern "C" fn test_plain_handler(_: c_int) {
        // SAFETY: as above.
        unsafe { libc::_exit(PLAIN_HANDLER_EXIT) }
    }

    /// Maps a page through the guard, truncates the file and reads: must read zeros.
    /// (Locals drop in reverse order: the guard before the mapping, as it must.)
    fn survive_one_truncation() {
        let (_temp, file, raw) = mapped_page();
        let guard = guard_raw(&raw);
        file.set_len(0).unwrap();
        assert_eq!(load(&raw, 0), 0);
        assert!(guard.tripped());
    }

    /// Sends `SIGBUS` to this thread, as `kill` would (not a fault).
    fn raise_sigbus() {
        println!("{SENDING}");
        // SAFETY: `raise` only sends a signal; what it does is under test.
        assert_eq!(unsafe { libc::raise(libc::SIGBUS) }, 0);
    }

    /// Installs `action` for `SIGBUS` (before our handler exists, in a child).
    fn set_sigbus_action(handler: libc::sighandler_t, flags: c_int) {
        let mut action = default_action();
        action.sa_sigaction = handler;
        action.sa_flags = flags;
        // SAFETY: a valid action; its handler, if any, is async-signal-safe.
        let rc = unsafe { libc::sigaction(libc::SIGBUS, &raw const action, ptr::null_mut()) };
        assert_eq!(rc, 0);
    }

    /// The child process's roles.
    #[test]
    fn child() {
        let Ok(role) = std::env::var(ROLE_ENV) else {
            return; // only run as a child of the tests below
        };
        match role.as_str() {
            "trip" => {
                let (_temp, file, raw) = mapped_page();
                let guard = guard_raw(&raw);
                assert_eq!(load(&raw, 0), 0xABAB_ABAB_ABAB_ABAB);
                assert!(!guard.tripped());
                file.set_len(0).unwrap();
                assert_eq!(load(&raw, 0), 0, "survived, reads zeros");
                assert_eq!(load(&raw, 4088), 0, "the whole range is zeros");
                assert!(guard.tripped());
                assert_eq!(faults_survived(), 1);
                // Zeros for good: the file's new contents do not come back.
                file.write_all_at(&[0xCD; 4096], 0).unwrap();
                assert_eq!(load(&raw, 8), 0);
                assert_eq!(faults_survived(), 1, "no second fault on the zero page");
                drop(guard);
                drop(raw);

                // A fault on another thread than the one that registered the range.
                let (_temp, file, raw) = mapped_page();
                let guard = guard_raw(&raw);
                file.set_len(0).unwrap();
                let raw = &raw;
                assert_eq!(
                    std::thread::scope(|s| s.spawn(|| load(raw, 16)).join().unwrap()),
                    0
                );
                assert!(guard.tripped());
                assert_eq!(faults_survived(), 2);
                println!("fault-guard-child: trip ok");
            }
            "foreign-after-std" => {
                // Our handler installed on top of the standard library's.
                let (_temp, _file, raw) = mapped_page();
                let _guard = guard_raw(&raw);
                touch_truncated_foreign_mapping();
            }
            "foreign-after-default" => {
                set_sigbus_action(libc::SIG_DFL, 0);
                let (_temp, _file, raw) = mapped_page();
                let _guard = guard_raw(&raw);
                touch_truncated_foreign_mapping();
            }
            "foreign-after-ignore" => {
                set_sigbus_action(libc::SIG_IGN, 0);
                let (_temp, _file, raw) = mapped_page();
                let _guard = guard_raw(&raw);
                touch_truncated_foreign_mapping();
            }
            "foreign-after-siginfo-handler" => {
                set_sigbus_action(
                    test_siginfo_handler as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void)
                        as libc::sighandler_t,
                    libc::SA_SIGINFO,
                );
                // Our own fault is still ours: repaired, the test's handler not called.
                survive_one_truncation();
                touch_truncated_foreign_mapping();
            }
            "foreign-after-plain-handler" => {
                set_sigbus_action(
                    test_plain_handler as extern "C" fn(c_int) as libc::sighandler_t,
                    0,
                );
                let (_temp, _file, raw) = mapped_page();
                let _guard = guard_raw(&raw);
                touch_truncated_foreign_mapping();
            }
            "sent-after-default" => {
                set_sigbus_action(libc::SIG_DFL, 0);
                survive_one_truncation();
                raise_sigbus();
                println!("fault-guard-child: survived a sent SIGBUS");
            }
            "sent-after-ignore" => {
                set_sigbus_action(libc::SIG_IGN, 0);
                survive_one_truncation();
                raise_sigbus();
                // Ignored, as without us, and our handler is still in place.
                survive_one_truncation();
                assert_eq!(faults_survived(), 2);
                println!("fault-guard-child: sent ok");
            }
            other => panic!("unknown role {other}"),
        }
    }

    #[test]
    fn truncated_guarded_mapping_reads_zeros() {
        let (status, output) = run_child("trip");
        assert!(status.success(), "{status}:\n{output}");
        assert!(output.contains("fault-guard-child: trip ok"), "{output}");
    }

    /// A foreign fault must end the process with `SIGBUS`, and must have happened at the
    /// load (not earlier, by some other failure).
    fn assert_killed_by_sigbus(role: &str) {
        let (status, output) = run_child(role);
        assert_eq!(
            status.signal(),
            Some(libc::SIGBUS),
            "{role}: {status}:\n{output}"
        );
        assert!(output.contains(TOUCHING), "{role}:\n{output}");
    }

    #[test]
    fn foreign_fault_still_kills_after_std_handler() {
        assert_killed_by_sigbus("foreign-after-std");
    }

    #[test]
    fn foreign_fault_still_kills_after_default() {
        assert_killed_by_sigbus("foreign-after-default");
    }

    #[test]
    fn foreign_fault_still_kills_after_ignore() {
        assert_killed_by_sigbus("foreign-after-ignore");
    }

    #[test]
    fn foreign_fault_goes_to_previous_siginfo_handler() {
        let (status, output) = run_child("foreign-after-siginfo-handler");
        assert_eq!(
            status.code(),
            Some(SIGINFO_HANDLER_EXIT),
            "{status}:\n{output}"
        );
        assert!(output.contains(TOUCHING), "{output}");
    }

    #[test]
    fn foreign_fault_goes_to_previous_plain_handler() {
        let (status, output) = run_child("foreign-after-plain-handler");
        assert_eq!(
            status.code(),
            Some(PLAIN_HANDLER_EXIT),
            "{status}:\n{output}"
        );
        assert!(output.contains(TOUCHING), "{output}");
    }

    #[test]
    fn sent_sigbus_still_kills_after_default() {
        let (status, output) = run_child("sent-after-default");
        assert_eq!(status.signal(), Some(libc::SIGBUS), "{status}:\n{output}");
        assert!(output.contains(SENDING), "{output}");
    }

    #[test]
    fn sent_sigbus_still_ignored_after_ignore() {
        let (status, output) = run_child("sent-after-ignore");
        assert!(status.success(), "{status}:\n{output}");
        assert!(output.contains("fault-guard-child: sent ok"), "{output}");
    }

    #[test]
    fn bad_ranges_are_refused() {
        let page = page_size();
        let aligned = NonNull::new(ptr::without_provenance_mut::<u8>(page * 16)).unwrap();
        let unaligned = NonNull::new(ptr::without_provenance_mut::<u8>(page * 16 + 8)).unwrap();
        let kind = |r: io::Result<FaultGuard>| r.unwrap_err().kind();
        assert_eq!(kind(guard(aligned, 0)), io::ErrorKind::InvalidInput);
        assert_eq!(kind(guard(unaligned, 80)), io::ErrorKind::InvalidInput);
        assert_eq!(
            kind(guard(aligned, usize::MAX)),
            io::ErrorKind::InvalidInput
        );
    }

    /// The registry without any fault: in this process, so other tests may register
    /// concurrently; the chunk counts allow for that.
    #[test]
    fn many_registrations_reuse_slots() {
        const N: usize = 10_000;
        let page = page_size();
        // Reserved address space, so the ranges are nobody else's.
        let reserve = MmapOptions::new().len(N * page).map_anon().unwrap();
        let base = reserve.as_ptr().addr();
        let register_all =
            || -> Vec<FaultGuard> { (0..N).map(|i| register(base + i * page, page)).collect() };
        let chunk_count = || chunks().count();

        let guards = register_all();
        // A sample: every lookup walks the whole registry.
        for (i, g) in guards.iter().enumerate().step_by(97) {
            let start = base + i * page;
            let (slot, found_start, len) = lookup(start + page / 2).expect("registered");
            assert!(ptr::eq(slot, g.slot));
            assert_eq!((found_start, len), (start, page));
            assert!(!g.tripped());
        }
        assert!(lookup(base + N * page).is_none(), "past the last range");
        let chunks_first = chunk_count();
        assert!(chunks_first >= N / SLOTS_PER_CHUNK);
        drop(guards);
        assert!(
            (0..N)
                .step_by(97)
                .all(|i| lookup(base + i * page).is_none()),
            "deregistered"
        );

        let guards = register_all();
        let chunks_second = chunk_count();
        // Without reuse the second round would add N / SLOTS_PER_CHUNK chunks.
        assert!(
            chunks_second <= chunks_first + 4,
            "slots not reused: {chunks_first} chunks, then {chunks_second}"
        );
        assert!(lookup(base + (N - 1) * page).is_some());
        drop(guards);
    }
}
