//! Many threads reading error-bounded time from one `SharedClockBound`, with each strategy.
//!
//! ```text
//! cargo run --release --example multithreaded -- [--path P] [--duration SECS] [--threads N]
//! ```
//!
//! Reads the ClockBound daemon's segment when a valid one is at the default path, and
//! otherwise starts a simulated writer (a thread driving `ShmWriter` on a temporary file,
//! updating every 100 ms like the daemon). Every worker checks every window it gets; the
//! program prints a table and exits non-zero if any check failed. See `--help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clockbound_shm::{
    CLOCKBOUND_SHM_DEFAULT_PATH, ClockErrorBound, ClockStatus, SharedClockBound, ShmReader,
    ShmWriter, Strategy, TimeWindow, Timespec,
};

const HELP: &str = "\
multithreaded: N threads share one SharedClockBound and call now() as fast as they can,
once with each strategy (ThreadLocal, then ArcSwap), checking every window they get:
  - earliest <= latest;
  - the status is Synchronized or FreeRunning (simulated writer only: the daemon's status
    is whatever the daemon says);
  - true time only moves forward, so no window lies wholly before an earlier window of the
    same thread: latest of a later call >= earliest of every earlier call.
Prints strategy, threads, calls/s, ns per call, windows checked and anomalies, and exits
with status 1 on any anomaly or error (2 on a usage error).

Without --path it reads the ClockBound daemon's segment at /var/run/clockbound/shm0 when a
valid one is there, and otherwise starts a simulated writer: a thread that drives ShmWriter
on a temporary file every 100 ms (as_of = CLOCK_MONOTONIC_COARSE, void_after = as_of +
1000 s, bound 5 us, drift 1000 ppb, Synchronized). The first line says which.

USAGE:
    multithreaded [--path PATH] [--duration SECS] [--threads N]

OPTIONS:
    --path PATH       read this segment (no simulator; it must be valid)
    --duration SECS   how long to run each strategy, in seconds (default 3; fractions allowed)
    --threads N       worker threads (default: available parallelism)
    -h, --help        print this help
";

/// Simulated daemon: update period, bound and drift.
const SIM_PERIOD: Duration = Duration::from_millis(100);
const SIM_VOID_AFTER: Duration = Duration::from_secs(1000);
const SIM_BOUND_NSEC: i64 = 5_000;
const SIM_DRIFT_PPB: u32 = 1_000;

/// Anomalies described in full per strategy; the rest are only counted.
const MAX_REPORTED: usize = 5;

struct Args {
    path: Option<PathBuf>,
    duration: Duration,
    threads: usize,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        path: None,
        duration: Duration::from_secs(3),
        threads: thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        // Both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--path" => args.path = Some(PathBuf::from(value()?)),
            "--duration" => {
                let v = value()?;
                let secs: f64 = v
                    .parse()
                    .map_err(|_| format!("--duration: not a number of seconds: {v}"))?;
                args.duration = Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        format!("--duration: must be a positive number of seconds: {v}")
                    })?;
            }
            "--threads" => {
                let v = value()?;
                args.threads = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--threads: must be a positive integer: {v}"))?;
            }
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    Ok(Some(args))
}

/// `CLOCK_MONOTONIC_COARSE`, the clock the daemon stamps its snapshots with.
fn monotonic_coarse() -> Timespec {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    #[allow(clippy::useless_conversion)] // `tv_nsec` is not `i64` on every target
    Timespec::new(t.tv_sec, i64::from(t.tv_nsec))
}

/// A snapshot like the daemon's, taken now.
fn simulated_snapshot() -> ClockErrorBound {
    let as_of = monotonic_coarse();
    ClockErrorBound::new(
        as_of,
        as_of.saturating_add(SIM_VOID_AFTER),
        SIM_BOUND_NSEC,
        0,
        SIM_DRIFT_PPB,
        ClockStatus::Synchronized,
        false,
    )
}

/// Where the windows come from.
enum Source {
    Segment(PathBuf),
    Simulated {
        path: PathBuf,
        // Kept for its drop: the directory goes when the program ends.
        _dir: tempfile::TempDir,
        writer: ShmWriter,
    },
}

/// What the workers of one strategy saw.
#[derive(Default)]
struct Tally {
    calls: u64,
    /// Sum over threads of each thread's time in its loop.
    busy: Duration,
    checked: u64,
    anomalies: u64,
    errors: u64,
    reported: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.calls += other.calls;
        self.busy += other.busy;
        self.checked += other.checked;
        self.anomalies += other.anomalies;
        self.errors += other.errors;
        let room = MAX_REPORTED.saturating_sub(self.reported.len());
        self.reported.extend(other.reported.into_iter().take(room));
    }

    fn report(&mut self, problem: impl FnOnce() -> String) {
        if self.reported.len() < MAX_REPORTED {
            self.reported.push(problem());
        }
    }
}

/// One worker: calls `now()` until `stop`, checking every window.
fn worker(clock: &SharedClockBound, stop: &AtomicBool, simulated: bool) -> Tally {
    let mut tally = Tally::default();
    // The latest `earliest` so far: no later window may end before it.
    let mut max_earliest: Option<(Timespec, u64)> = None;
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..64 {
            tally.calls += 1;
            let call = tally.calls;
            let window = match clock.now() {
                Ok(window) => window,
                Err(e) => {
                    tally.errors += 1;
                    tally.report(|| format!("call {call}: error: {e}"));
                    continue;
                }
            };
            tally.checked += 1;
            if let Some(problem) = check_window(&window, simulated, max_earliest) {
                tally.anomalies += 1;
                tally.report(|| format!("call {call}: {problem}: {window:?}"));
            }
            if max_earliest.is_none_or(|(earliest, _)| window.earliest > earliest) {
                max_earliest = Some((window.earliest, call));
            }
        }
    }
    tally.busy = start.elapsed();
    tally
}

fn check_window(
    window: &TimeWindow,
    simulated: bool,
    max_earliest: Option<(Timespec, u64)>,
) -> Option<String> {
    if window.earliest > window.latest {
        return Some("earliest after latest".into());
    }
    if simulated
        && !matches!(
            window.clock_status,
            ClockStatus::Synchronized | ClockStatus::FreeRunning
        )
    {
        return Some(format!(
            "status {:?} from the simulated writer",
            window.clock_status
        ));
    }
    match max_earliest {
        Some((earliest, call)) if window.latest < earliest => Some(format!(
            "window wholly before the one of call {call} (earliest {earliest})"
        )),
        _ => None,
    }
}

fn run(strategy: Strategy, path: &Path, args: &Args, simulated: bool) -> Result<Tally, String> {
    let clock = SharedClockBound::with_strategy(path, strategy).map_err(|e| e.to_string())?;
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let mut total = Tally::default();
    thread::scope(|s| {
        let workers: Vec<_> = (0..args.threads)
            .map(|_| s.spawn(|| worker(&clock, &stop, simulated)))
            .collect();
        thread::sleep(args.duration);
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            total.merge(w.join().expect("worker panicked"));
        }
    });
    let wall = start.elapsed();
    let calls_per_sec = total.calls as f64 / wall.as_secs_f64();
    let ns_per_call = total.busy.as_nanos() as f64 / total.calls.max(1) as f64;
    println!(
        "{:<12} {:>7} {:>14.0} {:>11.1} {:>16} {:>9}",
        format!("{strategy:?}"),
        args.threads,
        calls_per_sec,
        ns_per_call,
        total.checked,
        total.anomalies + total.errors,
    );
    Ok(total)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e} (see --help)");
            return ExitCode::from(2);
        }
    };

    let source = match &args.path {
        Some(path) => match ShmReader::open(path) {
            Ok(_) => {
                println!("source: segment {} (from --path)", path.display());
                Source::Segment(path.clone())
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => match ShmReader::open(CLOCKBOUND_SHM_DEFAULT_PATH) {
            Ok(_) => {
                println!("source: ClockBound daemon segment {CLOCKBOUND_SHM_DEFAULT_PATH}");
                Source::Segment(PathBuf::from(CLOCKBOUND_SHM_DEFAULT_PATH))
            }
            Err(why) => {
                let started = tempfile::tempdir()
                    .map_err(|e| e.to_string())
                    .and_then(|dir| {
                        let path = dir.path().join("shm0");
                        let mut writer = ShmWriter::new(&path).map_err(|e| e.to_string())?;
                        writer.write(&simulated_snapshot());
                        Ok(Source::Simulated {
                            path,
                            _dir: dir,
                            writer,
                        })
                    });
                match started {
                    Ok(source) => {
                        if let Source::Simulated { path, .. } = &source {
                            println!(
                                "source: simulated writer on {} (every {} ms; no usable segment at \
                                 {CLOCKBOUND_SHM_DEFAULT_PATH}: {why})",
                                path.display(),
                                SIM_PERIOD.as_millis()
                            );
                        }
                        source
                    }
                    Err(e) => {
                        eprintln!("error: cannot start the simulated writer: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        },
    };

    let (path, simulated) = match &source {
        Source::Segment(path) => (path.clone(), false),
        Source::Simulated { path, .. } => (path.clone(), true),
    };
    let stop_writer = AtomicBool::new(false);
    let updates = AtomicU64::new(0);
    let mut failed = false;
    thread::scope(|s| {
        if let Source::Simulated { writer, .. } = source {
            let (stop_writer, updates) = (&stop_writer, &updates);
            s.spawn(move || {
                let mut writer = writer;
                while !stop_writer.load(Ordering::Relaxed) {
                    thread::sleep(SIM_PERIOD);
                    writer.write(&simulated_snapshot());
                    updates.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        println!(
            "{} worker threads, {:.1} s per strategy\n",
            args.threads,
            args.duration.as_secs_f64()
        );
        println!(
            "{:<12} {:>7} {:>14} {:>11} {:>16} {:>9}",
            "strategy", "threads", "calls/s", "ns per call", "windows checked", "anomalies"
        );
        let mut problems = Vec::new();
        for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
            match run(strategy, &path, &args, simulated) {
                Ok(tally) => {
                    failed |= tally.anomalies + tally.errors > 0;
                    problems.extend(
                        tally
                            .reported
                            .into_iter()
                            .map(|p| format!("{strategy:?}: {p}")),
                    );
                }
                Err(e) => {
                    failed = true;
                    problems.push(format!("{strategy:?}: cannot open {}: {e}", path.display()));
                }
            }
        }
        stop_writer.store(true, Ordering::Relaxed);
        if simulated {
            println!(
                "\nsimulated writer: {} updates during the run",
                updates.load(Ordering::Relaxed)
            );
        }
        for problem in &problems {
            eprintln!("anomaly: {problem}");
        }
    });
    if failed {
        eprintln!("FAILED: anomalies or errors (see above)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
