//! Helpers for the ffi tests: simulated segments (both layouts) and finding, compiling and
//! running the C programs against the built `libclockbound`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clockbound_shm::{
    ClockErrorBound, ClockErrorBoundV3, ClockStatus, ShmWriter, ShmWriterV3, Timespec,
};

/// The bound every simulated snapshot carries: wide enough that a counter frequency
/// measured in a few tens of milliseconds cannot make two snapshots' windows disagree.
pub const SIM_BOUND_NSEC: i64 = 200_000;
const SIM_DRIFT_PPB: u32 = 1_000;
const SIM_VOID_AFTER: Duration = Duration::from_secs(1_000);

/// A layout 2 snapshot taken now.
pub fn v2_snapshot(status: ClockStatus) -> ClockErrorBound {
    let as_of = Timespec::monotonic_coarse_now();
    ClockErrorBound::new(
        as_of,
        as_of.saturating_add(SIM_VOID_AFTER),
        SIM_BOUND_NSEC,
        0,
        SIM_DRIFT_PPB,
        status,
        false,
    )
}

/// The CPU counter's frequency, measured once against `Instant` (`None` where layout 3
/// cannot be read).
pub fn counter_hz() -> Option<u64> {
    static HZ: OnceLock<Option<u64>> = OnceLock::new();
    *HZ.get_or_init(|| {
        let c0 = clockbound_shm::cpu_counter()?;
        let t0 = Instant::now();
        thread::sleep(Duration::from_millis(50));
        let c1 = clockbound_shm::cpu_counter()?;
        let elapsed = t0.elapsed().as_nanos();
        let ticks = u128::from(c1.checked_sub(c0)?);
        u64::try_from(ticks * 1_000_000_000 / elapsed)
            .ok()
            .filter(|&hz| hz > 0)
    })
}

/// A layout 3 snapshot taken now, stamped with the counter.
///
/// The counter and `CLOCK_REALTIME` are read so that they stand for the same instant to
/// within a few microseconds: a writer preempted between the two reads (likely while the
/// tests keep every core busy) would otherwise publish a time milliseconds off its
/// counter value, and readers would rightly report windows that contradict each other.
pub fn v3_snapshot(hz: u64, status: ClockStatus) -> ClockErrorBoundV3 {
    let (as_of_tsc, as_of) = loop {
        let before = Timespec::realtime_now();
        let counter = clockbound_shm::cpu_counter().unwrap_or(0);
        let after = Timespec::realtime_now();
        if after
            .duration_since(before)
            .is_some_and(|gap| gap < Duration::from_micros(5))
        {
            break (counter, before);
        }
    };
    ClockErrorBoundV3::builder()
        .as_of_tsc(as_of_tsc)
        .as_of(as_of)
        .void_after(as_of.saturating_add(SIM_VOID_AFTER))
        .with_frequency_hz(hz)
        .bound_nsec(SIM_BOUND_NSEC)
        .max_drift_ppb(SIM_DRIFT_PPB)
        .clock_status(status)
        .build()
}

/// Which layout a simulated daemon writes.
#[derive(Copy, Clone, Debug)]
pub enum Layout {
    V2,
    V3,
}

/// Writes one Synchronized snapshot of `layout` at `path`.
pub fn write_segment(path: &Path, layout: Layout, status: ClockStatus) {
    match layout {
        Layout::V2 => ShmWriter::new(path)
            .expect("writer")
            .write(&v2_snapshot(status)),
        Layout::V3 => {
            let hz = counter_hz().expect("layout 3 needs the CPU counter");
            ShmWriterV3::new(path)
                .expect("writer")
                .write(&v3_snapshot(hz, status));
        }
    }
}

/// A simulated daemon: publishes a Synchronized snapshot every millisecond until dropped.
pub struct Daemon {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Daemon {
    /// Starts writing `layout` at `path` (the first snapshot is there on return).
    pub fn start(path: &Path, layout: Layout) -> Daemon {
        let stop = Arc::new(AtomicBool::new(false));
        let mut publish: Box<dyn FnMut() + Send> = match layout {
            Layout::V2 => {
                let mut w = ShmWriter::new(path).expect("writer");
                Box::new(move || w.write(&v2_snapshot(ClockStatus::Synchronized)))
            }
            Layout::V3 => {
                let hz = counter_hz().expect("layout 3 needs the CPU counter");
                let mut w = ShmWriterV3::new(path).expect("writer");
                Box::new(move || w.write(&v3_snapshot(hz, ClockStatus::Synchronized)))
            }
        };
        publish();
        let thread = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut updates = 0;
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(1));
                    publish();
                    updates += 1;
                }
                updates
            })
        };
        Daemon {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the writer; returns how many updates it published.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("writer thread"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The C side
// ---------------------------------------------------------------------------------------

/// This crate's directory (`ffi/`).
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory with `libclockbound.so` and `libclockbound.a`.
///
/// This test depends on the library, so cargo builds it, every crate type, before the
/// test runs: under `cargo test` into the `deps/` directory the test executable is in
/// (`cargo build` puts copies one level up, which a later `cargo test` does not refresh,
/// so `deps/` comes first). Should neither hold both files, they are built with the cargo
/// that built this test.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let deps = exe
            .parent()
            .expect("the test executable is in <target>/<profile>/deps")
            .to_path_buf();
        let profile_dir = deps
            .parent()
            .expect("the test executable is in <target>/<profile>/deps")
            .to_path_buf();
        let present = |dir: &Path| {
            dir.join("libclockbound.so").is_file() && dir.join("libclockbound.a").is_file()
        };
        if present(&deps) {
            return deps;
        }
        if present(&profile_dir) {
            return profile_dir;
        }
        // A separate target dir: the cargo running this test may still hold the lock on
        // its own.
        let target = profile_dir
            .parent()
            .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
            .join("clockbound-ffi-c");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--lib", "--manifest-path"])
            .arg(crate_dir().join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target);
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("run cargo build");
        assert!(status.success(), "cargo build of libclockbound failed");
        let built = target.join(if release { "release" } else { "debug" });
        assert!(
            present(&built),
            "libclockbound.so / libclockbound.a not found in {} nor {}",
            profile_dir.display(),
            built.display()
        );
        built
    })
}

/// How a C program links the library.
#[derive(Copy, Clone, Debug)]
pub enum Link {
    /// `-lclockbound` (the `.so`), with an rpath to find it at run time.
    Shared,
    /// `libclockbound.a` and the system libraries Rust's standard library needs.
    Static,
}

/// Compiles `sources` (under `tests/c/`, or absolute) into `out` with warnings as errors.
/// A `.cpp` source is compiled as C++; `std` is the language standard.
pub fn compile(sources: &[&Path], out: &Path, std: &str, link: Link) {
    let cxx = sources
        .iter()
        .any(|s| s.extension().is_some_and(|e| e == "cpp"));
    let compiler = if cxx {
        std::env::var("CXX").unwrap_or_else(|_| "c++".into())
    } else {
        std::env::var("CC").unwrap_or_else(|_| "cc".into())
    };
    let lib = lib_dir();
    let mut cmd = Command::new(&compiler);
    cmd.arg(format!("-std={std}"))
        .args([
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-O1",
            "-pthread",
        ])
        .arg("-I")
        .arg(crate_dir().join("include"));
    for s in sources {
        cmd.arg(crate_dir().join("tests/c").join(s));
    }
    cmd.arg("-o").arg(out);
    match link {
        Link::Shared => {
            cmd.arg("-L")
                .arg(lib)
                .arg("-lclockbound")
                .arg(format!("-Wl,-rpath,{}", lib.display()));
        }
        Link::Static => {
            cmd.arg(lib.join("libclockbound.a")).args([
                "-lgcc_s",
                "-lutil",
                "-lrt",
                "-lpthread",
                "-lm",
                "-ldl",
                "-lc",
            ]);
        }
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        output.status.success(),
        "{compiler} failed on {sources:?}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `program` with `args`; panics with its output unless it exits 0.
pub fn run(program: &Path, args: &[&std::ffi::OsStr]) -> Output {
    // The rpath alone is not enough: `cargo test` sets `LD_LIBRARY_PATH`, which the
    // loader searches first, to directories that may hold an older copy of the library.
    let output = Command::new(program)
        .args(args)
        .env("LD_LIBRARY_PATH", lib_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A program's standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}
