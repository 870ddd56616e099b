//! The mapping of a segment file, and the crate's only `unsafe` code.
//!
//! # Why mapping this file is delicate
//!
//! The segment is a file that *another process* changes while we have it mapped. Rust
//! references promise that what they point to does not change behind them (for `&[u8]`,
//! `&u64`, ...), so holding one to these bytes would be undefined behaviour the moment the
//! daemon writes. This module therefore never lets a plain reference exist: it goes from the
//! mapping's base pointer (memmap2's [`MmapRaw`], which never hands out references itself) to
//! [`SegmentCells`], a struct made *only* of atomics. A shared reference to atomics is
//! allowed to observe concurrent modification (they are `UnsafeCell`s), and every access is
//! an atomic load or store of the field's natural size.
//!
//! The other hazard is the file's size. A mapping may extend past the end of the file; the
//! kernel raises `SIGBUS` when a page wholly past the end is touched. We check the file's
//! real size (`fstat`) before mapping and map exactly one segment's bytes, so at mapping
//! time every byte we can touch is backed by the file. What no reader can rule out is the
//! file being *truncated afterwards* while still mapped: the daemon recreates the segment
//! with `File::create` (truncate to 0, then write; a 3.x daemon does it to the layout-2
//! segment on every start), and a reader touching the page in that window gets `SIGBUS`.
//! A reader's mapping is therefore registered with [`fault_guard`],
//! whose handler replaces a mapping that faults this way with zero-filled memory: the load
//! reads zeros (generation 0, "wiped") instead of killing the process, and
//! [`SegmentMapping::faulted`] tells the owner to map the file anew. The writer's
//! read-write mapping is not guarded: this crate's [`ShmWriter`](crate::ShmWriter) never
//! shrinks its segment below one segment's length.
//!
//! The VMClock page ([`VmClockMapping`]) is mapped the same way, read-only, with the same
//! rules; see its docs for how much of it is mapped.

#![allow(unsafe_code)] // the one module that may: see above

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::ptr::NonNull;
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};

use crate::fault_guard::{self, FaultGuard};
use crate::layout::vmclock::{VMCLOCK_LEN, VMCLOCK_MAP_LEN, VmClockCells};
use crate::seqlock::{AtomicWords, SegmentCells};

/// A shared mapping of the first `size_of::<SegmentCells<P>>()` bytes of a segment file.
///
/// Clones are handles to the same mapping (one `mmap` however many readers share it), and
/// each carries the segment's address inline, so the hot path reaches the generation
/// counter with one load from the handle instead of going through the `Arc` first.
///
/// Invariant: `cells` is the start of `shared._raw`'s mapping, which is at least
/// `size_of::<SegmentCells<P>>()` bytes long (80 for layout 2, 104 for layout 3), starts at a page boundary, and stays mapped and readable while
/// any clone lives (they share `shared`; a repaired fault replaces the memory in place, see
/// [`fault_guard`]).
#[derive(Debug)]
pub(crate) struct SegmentMapping<P> {
    cells: NonNull<SegmentCells<P>>,
    /// Owns the mapping `cells` points into: it is unmapped when the last handle drops.
    shared: Arc<Mapped>,
}

impl<P> Clone for SegmentMapping<P> {
    fn clone(&self) -> Self {
        SegmentMapping {
            cells: self.cells,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A mapping and, for a reader's, the guard that registers it against `SIGBUS`.
#[derive(Debug)]
struct Mapped {
    /// Dropped (deregistered) before `_raw` is unmapped: see the `Drop` impl.
    guard: Option<FaultGuard>,
    /// The mapping itself, unmapped when dropped.
    _raw: MmapRaw,
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // Deregister before `_raw`'s drop unmaps the range (fields drop after this body):
        // once unmapped, the addresses may be reused by another mapping, whose faults must
        // not be taken for ours.
        drop(self.guard.take());
    }
}

// SAFETY: a `SegmentMapping` is an `Arc<Mapped>` (`Send + Sync`: an `MmapRaw` and a
// `FaultGuard`, both `Send + Sync`) plus the address of the mapping that `Arc` keeps alive.
// The only use of the address is `cells`, which hands out a `&SegmentCells` tied to the
// handle; `SegmentCells` is made of atomics and is `Sync`. So sending or sharing a handle
// between threads gives them exactly what sending the `Arc` and sharing a `&SegmentCells`
// would: nothing that is not thread-safe.
unsafe impl<P: Sync> Send for SegmentMapping<P> {}
// SAFETY: as for `Send` above.
unsafe impl<P: Sync> Sync for SegmentMapping<P> {}

impl<P: AtomicWords> SegmentMapping<P> {
    /// Bytes mapped: the header and the payload `P`.
    const LEN: usize = std::mem::size_of::<SegmentCells<P>>();

    /// Maps `file` read-only. `file_len` is the size `fstat` reported for it. With `guard`,
    /// the mapping is registered with [`fault_guard`] before anyone can
    /// touch it: if the file is truncated under it, loads read zeros instead of raising
    /// `SIGBUS`, and [`faulted`](Self::faulted) turns true.
    ///
    /// # Errors
    /// `InvalidInput` when the file is shorter than a segment (mapping it would expose
    /// `SIGBUS`-raising bytes), the OS error of `mmap`, or (with `guard`) the error of
    /// installing the `SIGBUS` handler.
    pub(crate) fn read_only(
        file: &File,
        file_len: u64,
        guard: bool,
    ) -> io::Result<SegmentMapping<P>> {
        check_len(file_len, Self::LEN)?;
        let raw = MmapOptions::new().len(Self::LEN).map_raw_read_only(file)?;
        let cells = segment_cells::<P>(&raw)?;
        let guard = if guard {
            Some(fault_guard::guard(cells.cast(), raw.len())?)
        } else {
            None
        };
        Ok(SegmentMapping {
            cells,
            shared: Arc::new(Mapped { guard, _raw: raw }),
        })
    }

    /// Maps `file` read-write, for the writer.
    ///
    /// # Errors
    /// As [`read_only`](Self::read_only); `file` must be open for reading and writing.
    #[cfg(feature = "writer")]
    pub(crate) fn read_write(file: &File, file_len: u64) -> io::Result<SegmentMapping<P>> {
        check_len(file_len, Self::LEN)?;
        let raw = MmapOptions::new().len(Self::LEN).map_raw(file)?;
        let cells = segment_cells::<P>(&raw)?;
        Ok(SegmentMapping {
            cells,
            shared: Arc::new(Mapped {
                guard: None,
                _raw: raw,
            }),
        })
    }

    /// Whether this is a guarded mapping whose file was truncated under it and a load from
    /// it faulted: its memory has been replaced with zeros for good (see
    /// [`fault_guard`]), and only mapping the file again shows its
    /// contents. Always `false` for an unguarded mapping.
    pub(crate) fn faulted(&self) -> bool {
        self.shared.guard.as_ref().is_some_and(FaultGuard::tripped)
    }

    /// The segment as atomic cells.
    ///
    /// A read-only mapping must only be loaded from; the reader types only call loads.
    #[inline(always)]
    pub(crate) fn cells(&self) -> &SegmentCells<P> {
        // SAFETY:
        // - Derived from the mapping: `cells` is the mapping's base address, set once in
        //   `segment_cells` and never changed, and `shared` is this handle's own `Arc` to that
        //   mapping, so what it points into is alive.
        // - In bounds and aligned: the mapping is at least `size_of::<SegmentCells<P>>()`
        //   bytes (`LEN`) and starts at a page boundary, beyond `SegmentCells`' 8-byte
        //   alignment (both checked in `segment_cells`).
        // - Initialised: `P` is an array of `AtomicU64` (the only `AtomicWords`), so every
        //   bit pattern is a valid `SegmentCells<P>` (integers only), and the
        //   file backed all of these bytes when we mapped them (`check_len`). If the file is
        //   truncated later, a load from a guarded (reader's) mapping faults once and the
        //   fault guard replaces the range, in place, with zero-filled read-only memory: the
        //   memory stays mapped and readable at the same address, so this reference stays
        //   valid and loads read zeros. (An unguarded mapping, the writer's, is of a file
        //   the writer itself keeps at full length.)
        // - Aliasing: `SegmentCells` consists solely of atomics, i.e. `UnsafeCell`s, so a
        //   shared reference does not assert that the bytes are immutable; other processes
        //   (and our own writer through another mapping) may change them concurrently, and
        //   every access is an atomic operation, so none of those is a data race.
        // - Read-only memory: readers only make *relaxed* loads of atomics up to 8 bytes
        //   wide (ordering comes from separate fences), which "Atomic accesses to read-only
        //   memory" in `std::sync::atomic` allows on read-only memory; only the writer,
        //   which maps read-write, stores.
        // - Lifetime: the returned reference borrows `self`, which holds a strong reference
        //   to the mapping, so it cannot outlive the `munmap` in `MmapRaw`'s drop (which runs
        //   only once the last handle is gone).
        unsafe { self.cells.as_ref() }
    }
}

/// The segment's address in `raw`, once the facts the cast in
/// [`SegmentMapping::cells`] relies on are checked: memmap2 maps exactly the length asked
/// for (or fails), and `mmap` returns page-aligned addresses. Re-checking them once per open
/// costs nothing and turns a broken assumption into an error instead of UB.
fn segment_cells<P>(raw: &MmapRaw) -> io::Result<NonNull<SegmentCells<P>>> {
    let len = std::mem::size_of::<SegmentCells<P>>();
    if raw.len() < len || !raw.as_ptr().cast::<SegmentCells<P>>().is_aligned() {
        return Err(io::Error::other(format!(
            "mapping of {} bytes at {:p} cannot hold an aligned {len}-byte segment",
            raw.len(),
            raw.as_ptr()
        )));
    }
    Ok(NonNull::new(raw.as_mut_ptr())
        .ok_or_else(|| io::Error::other("mapping at address 0"))?
        .cast::<SegmentCells<P>>())
}

fn check_len(file_len: u64, needed: usize) -> io::Result<()> {
    if file_len < needed as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("file holds {file_len} bytes, a segment mapping needs {needed}"),
        ));
    }
    Ok(())
}

/// A read-only shared mapping of a VMClock page: the `vmclock` device's page, or the first
/// bytes of a regular file laid out like one (tests, simulators).
///
/// How much is mapped:
///
/// - A **character device** reports size 0 in its metadata, so the length cannot come from
///   `fstat`. The kernel driver only accepts a read-only mapping of exactly one page at
///   offset 0 (the length is rounded up to the page size, so asking for
///   [`VMCLOCK_MAP_LEN`] = 4096 bytes gives that one page on 4 KiB, 16 KiB and 64 KiB page
///   kernels alike), and the whole page is backed by the hypervisor's memory. Mapping 4096
///   rather than 104 bytes lets a page whose `size` field says 4096 (hypervisors may declare
///   the whole page) pass the `size` check, which compares against the mapped length.
/// - A **regular file** is mapped for `min(file length, 4096)` bytes, so no byte we can touch
///   lies past the end of the file (no `SIGBUS`, see the module docs); it must hold at least
///   [`VMCLOCK_LEN`] bytes.
/// - Anything else (directory, FIFO, socket, block device) is refused.
///
/// Invariant: the mapping is at least `VMCLOCK_LEN` bytes long, starts at a page boundary,
/// and stays mapped for as long as this value lives.
#[derive(Debug)]
pub(crate) struct VmClockMapping {
    raw: MmapRaw,
}

impl VmClockMapping {
    /// Maps `file`, whose `fstat` result is `metadata`, read-only.
    ///
    /// # Errors
    /// `InvalidInput` when `file` is neither a regular file nor a character device, or a
    /// regular file shorter than [`VMCLOCK_LEN`]; the OS error of `mmap` otherwise (`ENODEV`
    /// for a device that cannot be mapped, `EINVAL`/`EROFS` from a driver that refuses).
    pub(crate) fn read_only(file: &File, metadata: &Metadata) -> io::Result<VmClockMapping> {
        let file_type = metadata.file_type();
        let len = if file_type.is_file() {
            let file_len = metadata.len();
            if file_len < VMCLOCK_LEN as u64 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("file holds {file_len} bytes, a VMClock page needs {VMCLOCK_LEN}"),
                ));
            }
            // At most one page, and never past the end of the file.
            usize::try_from(file_len).map_or(VMCLOCK_MAP_LEN, |l| l.min(VMCLOCK_MAP_LEN))
        } else if file_type.is_char_device() {
            VMCLOCK_MAP_LEN
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file or a character device",
            ));
        };
        let raw = MmapOptions::new().len(len).map_raw_read_only(file)?;
        // As for segments: re-check the facts the cast in `cells` relies on.
        if raw.len() < VMCLOCK_LEN || !raw.as_ptr().cast::<VmClockCells>().is_aligned() {
            return Err(io::Error::other(format!(
                "mapping of {} bytes at {:p} cannot hold an aligned {VMCLOCK_LEN}-byte VMClock page",
                raw.len(),
                raw.as_ptr()
            )));
        }
        Ok(VmClockMapping { raw })
    }

    /// Bytes mapped: what the page's `size` field is checked against.
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// The page as atomic cells. The mapping is read-only: only loads are allowed, and
    /// `VmClockCells` offers nothing else.
    #[inline(always)]
    pub(crate) fn cells(&self) -> &VmClockCells {
        // SAFETY:
        // - In bounds and aligned: the mapping is at least `VMCLOCK_LEN` bytes
        //   (`size_of::<VmClockCells>()`, asserted at compile time in `vmclock`) and starts at
        //   a page boundary, beyond `VmClockCells`' 8-byte alignment (both checked in
        //   `read_only`).
        // - Initialised: every bit pattern is a valid `VmClockCells` (integers only). For a
        //   regular file we mapped no more than the file held (`read_only` maps at most its
        //   length); for the character device the driver maps one whole page of hypervisor
        //   memory, of which we use the first `VMCLOCK_LEN` bytes.
        // - Aliasing: `VmClockCells` consists solely of atomics, i.e. `UnsafeCell`s, so a
        //   shared reference does not assert that the bytes are immutable; the hypervisor
        //   (or a test rewriting the file) changes them concurrently, and every access we
        //   make is an atomic load, so none of those is a data race on our side.
        // - Read-only memory: the mapping is `PROT_READ`; `VmClockCells` is only read with
        //   *relaxed* loads of atomics up to 8 bytes wide (ordering comes from separate
        //   fences), which "Atomic accesses to read-only memory" in `std::sync::atomic`
        //   allows on read-only memory. It exposes no store.
        // - Lifetime: the returned reference borrows `self`, which owns the mapping, so it
        //   cannot outlive the `munmap` in `MmapRaw`'s drop.
        unsafe { &*self.raw.as_ptr().cast::<VmClockCells>() }
    }
}
