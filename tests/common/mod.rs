//! Helpers shared by integration tests (each test file that needs them says `mod common;`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::thread;
use std::time::Duration;

use clockbound_shm::ClockErrorBound;
use clockbound_shm::layout::MAGIC;

// The layout 2 wire format, written out here rather than taken from the crate, so that a
// wrong constant in the crate fails the tests instead of hiding in them.
pub const HEADER_LEN: usize = 16;
pub const SEGSIZE_OFFSET: usize = 8;
pub const VERSION_OFFSET: usize = 12;
pub const GENERATION_OFFSET: usize = 14;
pub const PAYLOAD_OFFSET: usize = 16;
pub const PAYLOAD_LEN: usize = 64;
pub const SEGMENT_LEN: usize = HEADER_LEN + PAYLOAD_LEN;

/// The payload bytes of `snapshot` in the layout-2 wire format (native endian, padding 0),
/// encoded here from the public getters rather than with the crate's own encoder, so that a
/// mistake in the crate's encoder cannot hide in the tests that use this.
pub fn payload_bytes(snapshot: &ClockErrorBound) -> [u8; PAYLOAD_LEN] {
    let mut bytes = [0u8; PAYLOAD_LEN];
    let mut put = |offset: usize, field: &[u8]| {
        bytes[offset..offset + field.len()].copy_from_slice(field);
    };
    put(0, &snapshot.as_of().sec().to_ne_bytes());
    put(8, &snapshot.as_of().nsec().to_ne_bytes());
    put(16, &snapshot.void_after().sec().to_ne_bytes());
    put(24, &snapshot.void_after().nsec().to_ne_bytes());
    put(32, &snapshot.bound_nsec().to_ne_bytes());
    put(40, &snapshot.disruption_marker().to_ne_bytes());
    put(48, &snapshot.max_drift_ppb().to_ne_bytes());
    put(52, &snapshot.clock_status().to_wire().to_ne_bytes());
    put(56, &[u8::from(snapshot.clock_disruption_support_enabled())]);
    bytes
}

/// Recreates the layout-2 segment at `path` the way a ClockBound 3.x daemon does on every
/// start (and a 2.x daemon when it finds the segment unusable), then publishes `snapshot`:
///
/// 1. `File::create`: the same file, truncated to 0 bytes. A page of an existing mapping of
///    the file now lies wholly past its end, and touching it raises `SIGBUS`.
/// 2. The 16-byte header with version 0 and generation 0, then the zeroed payload, in
///    separate writes.
/// 3. The version set to 2.
/// 4. One update by the seqlock protocol: generation 1, the payload, generation 2.
///
/// Every step is a `pwrite` at the field's byte offset; nothing is mapped. `pause_after_truncate`
/// stretches step 1's window (a daemon that is descheduled there), so that a test reading
/// in a loop reliably touches the mapping while the file is empty.
pub fn daemon_restart_v2(
    path: &Path,
    snapshot: &ClockErrorBound,
    pause_after_truncate: Duration,
) -> io::Result<()> {
    let file = File::create(path)?;
    if !pause_after_truncate.is_zero() {
        thread::sleep(pause_after_truncate);
    }
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&MAGIC[0].to_ne_bytes());
    header[4..8].copy_from_slice(&MAGIC[1].to_ne_bytes());
    header[SEGSIZE_OFFSET..SEGSIZE_OFFSET + 4].copy_from_slice(&(SEGMENT_LEN as u32).to_ne_bytes());
    // Version and generation stay 0: wiped, never written.
    file.write_all_at(&header, 0)?;
    file.write_all_at(&[0u8; PAYLOAD_LEN], PAYLOAD_OFFSET as u64)?;
    file.write_all_at(&2u16.to_ne_bytes(), VERSION_OFFSET as u64)?;
    file.write_all_at(&1u16.to_ne_bytes(), GENERATION_OFFSET as u64)?;
    file.write_all_at(&payload_bytes(snapshot), PAYLOAD_OFFSET as u64)?;
    file.write_all_at(&2u16.to_ne_bytes(), GENERATION_OFFSET as u64)?;
    Ok(())
}
