//! What real daemons and machines do to a reader, and how this crate answers each.
//!
//! The users of this crate are long-running services that must never be handed a window
//! that lies, and must not crash because a daemon restarted. This page lists every hazard
//! known to the crate, where it comes from, and what a reader sees.
//!
//! | hazard | what the reader does |
//! |---|---|
//! | [truncating restarts](#truncating-restarts) | survives the fault; answers from the last snapshot, then from the rewritten segment |
//! | [a segment still being created](#a-segment-still-being-created) | a transient error at open |
//! | [generation wrap, ABA after a wipe](#generation-wrap-and-aba-after-a-wipe) | a periodic full re-read heals a wrong "unchanged" |
//! | [the file recreated](#the-file-recreated-new-inode) | follows the path to the new file |
//! | [the writer died mid-update](#the-writer-died-mid-update) | the last snapshot, ageing |
//! | [the daemon gone](#the-daemon-gone) | the last snapshot, ageing: FreeRunning, then Unknown |
//! | [disruption support switched on later](#disruption-support-switched-on-after-open) | decided per snapshot |
//! | [the daemon's missing fence](#the-daemons-missing-fence) | a confirming copy on aarch64 |
//! | [a 3.x daemon writing shm0 rarely](#a-3x-daemon-writing-shm0-every-16-s) | a 60 s FreeRunning grace |
//! | [live migration](#live-migration) | the VMClock check reports Disrupted |
//!
//! # Truncating restarts
//!
//! **What happens.** A ClockBound daemon recreates a segment it cannot reuse by truncating
//! the file to 0 bytes and writing it back in several `write` calls (see
//! [`protocol`](super::protocol#writer-protocol)). A page of a mapping that lies wholly past
//! the end of its file raises `SIGBUS` when it is touched, so while the file is short,
//! every reader that has it mapped and reads the clock is killed. How often:
//!
//! - a **3.x daemon** truncates shm0 on *every* start;
//! - a **2.x daemon** truncates shm0 whenever it starts and finds the segment unusable
//!   (missing, wiped, never written, bad header);
//! - a daemon that **crash-loops** before its first write truncates on every restart. A 2.x
//!   daemon with disruption support on and no `/dev/vmclock0` does exactly that under a
//!   supervisor.
//!
//! The released clients die this way; a service calling `now()` in a loop dies at the
//! first such restart.
//!
//! **What this crate does.**
//!
//! - **Open reads before it maps.** [`ShmReader::open`](crate::ShmReader::open) (and every
//!   other open) first reads the segment with a positioned read and validates it, and maps
//!   only a segment that is complete and initialised. A file that is short at that moment
//!   is never mapped.
//! - **A guard for mappings already in use.** The first open installs a process-wide
//!   `SIGBUS` handler. When a fault's address lies inside one of this crate's segment
//!   pages, the handler maps a zero page over that page and marks the mapping as lost. The
//!   faulting load then runs again and reads zeros: generation 0, which every reader
//!   already treats as "wiped", so it answers from its last snapshot. At its next periodic
//!   re-read (at most one recheck interval later) the reader finds the segment "wiped",
//!   sees the mark, and maps the file again once the daemon has rewritten it. Faults at any other
//!   address go to the handler that was installed before this one (or get the default
//!   action, which kills the process), exactly as if this crate's handler were not there.
//!   The handler does only async-signal-safe work: raw system calls and atomics, no
//!   allocation, no locks.
//! - The guard can be turned off with an option in [`ReaderOptions`](crate::ReaderOptions),
//!   for programs that own `SIGBUS` themselves; a reader without it is as exposed as the
//!   released clients.
//! - [`ReaderStats::truncations_survived`](crate::ReaderStats::truncations_survived) counts
//!   the truncations a reader survived this way, [`ReaderStats::reopens`](crate::ReaderStats::reopens)
//!   the files it mapped again.
//! - This crate's own writer, [`ShmWriter`](crate::ShmWriter), never truncates a segment:
//!   it wipes and rewrites it in place.
//!
//! The guard costs the hot path nothing: no system call, no extra atomic read-modify-write.
//!
//! # A segment still being created
//!
//! While a daemon starts, an open can find the file empty, shorter than a segment (4 or 16
//! bytes, between the daemon's `write` calls), wiped (version 0), or never written
//! (generation 0). None of these is corruption: they are a daemon that has not finished.
//! Open reports them as [`ShmError::SegmentNotInitialized`](crate::ShmError::SegmentNotInitialized),
//! and [`ShmError::is_transient`](crate::ShmError::is_transient) says they may pass.
//! [`ShmReader::wait_for_sync`](crate::ShmReader::wait_for_sync) retries them until the
//! daemon reports a trusted clock or the timeout expires; it returns at once on an error
//! that will not pass by waiting.
//!
//! An open under a daemon that is writing at that very moment retries for a bounded time
//! (milliseconds) before it gives up: with no earlier snapshot to fall back on, it is
//! patient.
//!
//! # Generation wrap and ABA after a wipe
//!
//! A reader caches the generation of its last copy and answers from the cache while the
//! generation is unchanged. Two things can make a *different* segment state look
//! unchanged:
//!
//! - the 16-bit counter **wraps**: after 32 768 updates it comes back to the same value
//!   (about 55 minutes at ten updates a second);
//! - a **wipe** restarts the count: a daemon restart that wipes the segment makes its next
//!   updates 2, 4, 6, ..., and one of them may equal the cached generation.
//!
//! A copy in flight is never fooled (see [`memory_model`](super::memory_model)); a
//! long-lived cache could be. Two rules heal it:
//!
//! - a reader that *sees* a wipe (version 0 or generation 0) forgets its cached generation,
//!   so the next update is copied whatever its number;
//! - `now()` re-reads the payload in full once its snapshot's `as_of` is older than the
//!   recheck interval ([`DEFAULT_RECHECK_INTERVAL`](crate::DEFAULT_RECHECK_INTERVAL), 1 s;
//!   set with [`ReaderOptions::recheck_interval`](crate::ReaderOptions::recheck_interval)),
//!   even if the generation looks unchanged. That covers a wipe the reader did not see and a
//!   full wrap between two calls. The re-read costs one copy per interval, and only when
//!   the daemon has not written for that long.
//!
//! `ShmReader::snapshot()`, which keeps the released reader's shape, compares generations
//! only; the periodic re-read is part of `now()`.
//!
//! # The file recreated (new inode)
//!
//! A file that is deleted and created again at the same path (a daemon's directory cleaned
//! up, a container restarted with a fresh volume) is a different file: the old mapping
//! stays valid but never sees another update.
//!
//! When a full re-read leaves the snapshot 5 s without an update, or finds the segment
//! wiped, the reader checks (at most once per recheck interval, one `stat`) whether the
//! path now names another file (device and inode differ) or the mapping was lost to a
//! truncation, and if so, opens and maps the file again; a
//! `SharedClockBound` does this once for all its threads. A missing file is not "another
//! file": the daemon may be gone, and the old snapshot, ageing, remains the best answer.
//! [`ReaderStats::reopens`](crate::ReaderStats::reopens) counts the files followed.
//!
//! # The writer died mid-update
//!
//! A writer killed between its odd and even generation stores leaves the generation odd
//! until a daemon starts again (it continues from the odd value and completes the update).
//! Readers answer from their last snapshot, which ages and degrades as below. A new open
//! retries for a bounded time and then reports
//! [`SegmentNotInitialized`](crate::ShmError::SegmentNotInitialized) (update in progress);
//! it does not spin forever.
//!
//! # The daemon gone
//!
//! Nobody updates the segment; the last snapshot stays. `now()` keeps answering from it and
//! never pretends: the bound grows with the worst-case drift, the status becomes
//! FreeRunning once the snapshot is older than the grace, and Unknown once `void_after`
//! has passed (1000 s after `as_of` with the released daemons). See
//! [`protocol`](super::protocol#status-degradation-and-the-freerunning-grace). Check
//! [`ClockStatus::is_trusted`](crate::ClockStatus::is_trusted) before relying on a
//! window.
//!
//! # Disruption support switched on after open
//!
//! A daemon can be restarted with clock-disruption support switched on (or off) while a
//! service runs. Whether to read the VMClock page is therefore decided per snapshot, from
//! the snapshot's own `clock_disruption_support_enabled` flag: when the flag appears, the
//! reader opens the VMClock page then (with the same rules as at open), and when it goes,
//! it stops reading it. A check decided once, at open, would keep reporting Synchronized
//! after a live migration.
//!
//! # The daemon's missing fence
//!
//! The released daemons store the odd generation without the fence that would order the
//! payload stores after it. On x86-64 this is harmless; on aarch64 a reader could accept a
//! copy that mixes two updates. This crate confirms a copy taken on a changed generation
//! with a second copy a little later, which makes that unlikely but not impossible. The
//! argument, and the exact guarantee with each writer on each CPU, is in
//! [`memory_model`](super::memory_model#the-daemons-writer-the-missing-fence).
//!
//! # A 3.x daemon writing shm0 every 16 s
//!
//! A 3.x daemon writes its segments only when its synchronisation algorithm has new
//! parameters: about every 2 s from the EC2 link-local time source, about every 16 s from
//! other NTP servers. With the 2.0.3 client's 5 s grace, every reader on such a host
//! reports FreeRunning between two normal updates, and services that page or stop on
//! FreeRunning get false alarms. This crate's grace is 60 s by default, for both layouts,
//! as in the 3.x clients. The window is correct either way; only the label depends on the
//! grace. See [`protocol`](super::protocol#status-degradation-and-the-freerunning-grace).
//!
//! # Live migration
//!
//! A virtual machine moved to another host, or restored from a snapshot, has a clock that
//! jumped, and, for layout 3, possibly a counter that belongs to another machine. Until the
//! daemon notices and writes again, the segment describes a clock that no longer exists.
//! The VMClock page's disruption marker changes at once; when the snapshot says the daemon
//! supports disruption checks, `now()` compares the markers and reports
//! [`ClockStatus::Disrupted`](crate::ClockStatus::Disrupted) while they differ. See
//! [`protocol`](super::protocol#the-vmclock-page-and-the-disruption-check).
//!
//! In a container or for a user that cannot read `/dev/vmclock0`, opening with the default
//! options fails while the daemon runs with disruption support; [`DisruptionCheck::Off`](crate::DisruptionCheck::Off)
//! opens anyway and trusts the segment alone, giving up exactly this protection.
