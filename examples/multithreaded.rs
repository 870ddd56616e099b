//! Many threads reading error-bounded time from one `SharedClockBound`, with each strategy.
//!
//! ```text
//! cargo run --release --example multithreaded -- [--duration SECS] [--threads N]
//!     [--layout 2|3] [--simulate] [--path PATH]
//! ```
//!
//! Reads the ClockBound daemon's segment when there is one (`shm1`, layout 3, when it holds
//! a valid segment, as a ClockBound 3.x daemon writes it; else `shm0`, layout 2), and
//! otherwise starts a simulated
//! writer (a thread driving `ShmWriterV3` or `ShmWriter` on a temporary file, updating every
//! 100 ms like the daemon) and says why. It prints whether the clock it read is healthy,
//! then lets every worker check every window it gets; it prints a table and exits non-zero
//! if any check failed. See `--help`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clockbound_shm::{
    AnySnapshot, CLOCKBOUND_SHM_DEFAULT_PATH, CLOCKBOUND_SHM1_DEFAULT_PATH, ClockErrorBound,
    ClockErrorBoundV3, ClockStatus, LayoutVersion, ReaderOptions, SharedClockBound, ShmError,
    ShmWriter, ShmWriterV3, Strategy, TimeWindow, Timespec,
};
use rustix::time::{ClockId, clock_gettime};

const HELP: &str = "\
multithreaded: N threads share one SharedClockBound and call now() as fast as they can,
once with each strategy (ThreadLocal, then ArcSwap), checking every window they get:
  - earliest <= latest;
  - the status is Synchronized or FreeRunning (simulated writer only: the daemon's status
    is whatever the daemon says);
  - true time only moves forward, so no window lies wholly before an earlier window of the
    same thread: latest of a later call >= earliest of every earlier call.
Before the run it prints the clock it read: segment, layout, status, bound and the age of
the last update, and whether the clock is healthy (its windows can be trusted). Then one
row per strategy: threads, calls/s in total and per thread, ns per call, windows checked
and anomalies. Exits with status 1 on any anomaly or error (2 on a usage error).

Where the windows come from:
  - with --path, that segment;
  - otherwise the ClockBound daemon's segment: /var/run/clockbound/shm1 (layout 3,
    written by ClockBound 3.x) when it holds a valid one, else /var/run/clockbound/shm0
    (layout 2); --layout picks one of the two;
  - when there is none (or with --simulate), a simulated writer: a thread that publishes a
    snapshot to a temporary file every 100 ms (bound 5 us, drift 1000 ppb, Synchronized,
    void after 1000 s). It writes layout 3 by default, on x86-64 and aarch64, where the CPU
    counter can be read (its frequency is measured first, for 20 ms), and layout 2
    elsewhere or with --layout 2.

USAGE:
    multithreaded [--duration SECS] [--threads N] [--layout 2|3] [--simulate] [--path PATH]

OPTIONS:
    --duration SECS   how long to run each strategy, in seconds (default 3; fractions allowed)
    --threads N       worker threads (default: available parallelism)
    --layout 2|3      the segment layout to read (or, simulated, to write); default: layout 3
                      when there is one, else layout 2
    --simulate        use the simulated writer even when a daemon's segment is there
    --path PATH       read this segment (no daemon, no simulator; it must be valid)
    -h, --help        print this help
";

/// Simulated daemon: update period, validity, bound and drift.
const SIM_PERIOD: Duration = Duration::from_millis(100);
const SIM_VOID_AFTER: Duration = Duration::from_secs(1000);
const SIM_BOUND_NSEC: i64 = 5_000;
const SIM_DRIFT_PPB: u32 = 1_000;

/// How long to count CPU counter ticks against `CLOCK_MONOTONIC` to learn the counter's
/// frequency: long enough for a precision of a few ppm, short enough not to be noticed.
const COUNTER_MEASUREMENT: Duration = Duration::from_millis(20);

/// A frequency measurement less precise than this (a scheduler stall in the middle of a
/// reading) is not used: the simulator writes layout 2 instead.
const MAX_COUNTER_ERROR_PPB: u64 = 1_000_000;

/// Anomalies described in full per strategy; the rest are only counted.
const MAX_REPORTED: usize = 5;

struct Args {
    path: Option<PathBuf>,
    layout: Option<LayoutVersion>,
    simulate: bool,
    duration: Duration,
    threads: usize,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        path: None,
        layout: None,
        simulate: false,
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
            "--layout" => {
                args.layout = match value()?.as_str() {
                    "2" => Some(LayoutVersion::V2),
                    "3" => Some(LayoutVersion::V3),
                    other => return Err(format!("--layout: must be 2 or 3: {other}")),
                }
            }
            "--simulate" => args.simulate = true,
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
    if args.path.is_some() && args.simulate {
        return Err("--path and --simulate cannot be used together".into());
    }
    Ok(Some(args))
}

// ---------------------------------------------------------------------------------------
// Clocks
// ---------------------------------------------------------------------------------------

fn read_clock(clock: ClockId) -> Timespec {
    let t = clock_gettime(clock);
    #[allow(clippy::useless_conversion)] // `tv_nsec` is not `i64` on every target
    Timespec::new(t.tv_sec, i64::from(t.tv_nsec))
}

/// `CLOCK_MONOTONIC_COARSE`, the clock a layout 2 snapshot's `as_of` is stamped with.
fn monotonic_coarse() -> Timespec {
    read_clock(ClockId::MonotonicCoarse)
}

/// `CLOCK_REALTIME`: UTC, the scale of a layout 3 snapshot's `as_of`.
fn realtime() -> Timespec {
    read_clock(ClockId::Realtime)
}

/// Whether this example can read the CPU counter that layout 3 snapshots are stamped with
/// (the same architectures as the crate's layout 3 reader).
const COUNTER_SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// The CPU counter a ClockBound 3.x daemon stamps its snapshots with, read as the crate's
/// layout 3 reader reads it (0 where there is none; never called there, since
/// `COUNTER_SUPPORTED` is false).
fn read_counter() -> u64 {
    clockbound_shm::cpu_counter().unwrap_or(0)
}

/// The CPU counter's frequency as measured, and how far off the measurement may be.
#[derive(Copy, Clone)]
struct CounterFrequency {
    hz: u64,
    /// The relative error of the period `1 / hz`, in parts per billion, rounded up.
    error_ppb: u64,
}

/// A counter reading with `CLOCK_MONOTONIC` read just before and just after it (in ns): the
/// counter was read at some instant between the two.
struct BracketedRead {
    before: i128,
    counter: u64,
    after: i128,
}

fn bracketed_read() -> BracketedRead {
    let monotonic_nanos = || read_clock(ClockId::Monotonic).as_nanos();
    let read = || BracketedRead {
        before: monotonic_nanos(),
        counter: read_counter(),
        after: monotonic_nanos(),
    };
    // Keep the narrowest of a few: one the scheduler interrupted would be wide.
    let mut best = read();
    for _ in 0..4 {
        let next = read();
        if next.after - next.before < best.after - best.before {
            best = next;
        }
    }
    best
}

/// Counts counter ticks for `COUNTER_MEASUREMENT` against `CLOCK_MONOTONIC`.
///
/// Measuring against `CLOCK_MONOTONIC` gives the rate of `CLOCK_REALTIME` too (both are
/// steered alike), the clock the simulated snapshots take their time from, so the windows
/// of one snapshot carried forward with the counter meet those of the next.
fn measure_counter_frequency() -> Result<CounterFrequency, String> {
    if !COUNTER_SUPPORTED {
        return Err(format!(
            "this CPU ({}) has no counter the layout 3 reader can read",
            std::env::consts::ARCH
        ));
    }
    let start = bracketed_read();
    thread::sleep(COUNTER_MEASUREMENT);
    let end = bracketed_read();
    let ticks = end
        .counter
        .checked_sub(start.counter)
        .filter(|&ticks| ticks > 0)
        .ok_or("the CPU counter did not move forward")?;
    // The ticks took at least `shortest` and at most `longest` nanoseconds.
    let nanos = |from: i128, to: i128| u128::try_from(to - from).ok().filter(|&ns| ns > 0);
    let (Some(shortest), Some(longest)) = (
        nanos(start.after, end.before),
        nanos(start.before, end.after),
    ) else {
        return Err("CLOCK_MONOTONIC did not move forward".into());
    };
    let middle = (shortest + longest) / 2;
    let hz = u64::try_from(u128::from(ticks) * 1_000_000_000 / middle)
        .ok()
        .filter(|&hz| hz > 0)
        .ok_or("the CPU counter's frequency is out of range")?;
    // Taking `middle` as the duration is off by at most `(longest - middle) / middle`;
    // a whole number of Hz adds at most one part in `hz`.
    let spread_ppb = ((longest - shortest) * 1_000_000_000).div_ceil(2 * middle);
    let error_ppb = u64::try_from(spread_ppb).unwrap_or(u64::MAX) + 1_000_000_000 / hz + 1;
    if error_ppb > MAX_COUNTER_ERROR_PPB {
        return Err(format!(
            "the CPU counter's frequency could be measured only to ±{} ppm",
            error_ppb / 1_000
        ));
    }
    Ok(CounterFrequency { hz, error_ppb })
}

// ---------------------------------------------------------------------------------------
// The simulated writer
// ---------------------------------------------------------------------------------------

/// A layout 2 snapshot like a daemon's, taken now: `as_of` on `CLOCK_MONOTONIC_COARSE`.
fn simulated_snapshot() -> ClockErrorBound {
    let as_of = monotonic_coarse();
    ClockErrorBound::builder()
        .as_of(as_of)
        .void_after(as_of.saturating_add(SIM_VOID_AFTER))
        .bound_nsec(SIM_BOUND_NSEC)
        .max_drift_ppb(SIM_DRIFT_PPB)
        .clock_status(ClockStatus::Synchronized)
        .build()
}

/// A layout 3 snapshot like a daemon's, taken now: the CPU counter and the UTC time it
/// stands for. A reader carries the time forward with the counter, at `counter.hz`.
fn simulated_snapshot_v3(counter: CounterFrequency) -> ClockErrorBoundV3 {
    // Read back to back: tens of nanoseconds apart, far inside the 5 µs bound.
    let as_of_tsc = read_counter();
    let as_of = realtime();
    ClockErrorBoundV3::builder()
        .as_of_tsc(as_of_tsc)
        .as_of(as_of)
        .void_after(as_of.saturating_add(SIM_VOID_AFTER))
        .with_frequency_hz(counter.hz)
        .with_period_error_ppb(counter.error_ppb)
        .bound_nsec(SIM_BOUND_NSEC)
        .max_drift_ppb(SIM_DRIFT_PPB)
        .clock_status(ClockStatus::Synchronized)
        .build()
}

enum SimulatedWriter {
    Layout2(ShmWriter),
    Layout3(ShmWriterV3, CounterFrequency),
}

impl SimulatedWriter {
    /// Publishes a fresh snapshot, as the daemon does after each synchronisation.
    fn publish(&mut self) {
        match self {
            SimulatedWriter::Layout2(writer) => writer.write(&simulated_snapshot()),
            SimulatedWriter::Layout3(writer, counter) => {
                writer.write(&simulated_snapshot_v3(*counter));
            }
        }
    }
}

/// The simulated daemon: a segment in a temporary directory and the writer that updates it.
struct Simulator {
    writer: SimulatedWriter,
    // Kept for its drop: the directory and the segment go when the program ends.
    _dir: tempfile::TempDir,
}

impl Simulator {
    /// Publishes a snapshot every `SIM_PERIOD` until `stop`; returns how many it published.
    /// The simulator drops at the end, and its temporary directory with it.
    fn run_until(mut self, stop: &AtomicBool) -> u64 {
        let mut updates = 0;
        while !stop.load(Ordering::Relaxed) {
            thread::sleep(SIM_PERIOD);
            self.writer.publish();
            updates += 1;
        }
        updates
    }
}

/// Starts the simulator with the layout asked for, or the best one this machine allows,
/// and publishes its first snapshot. Returns it with the segment's path and layout.
fn start_simulator(
    wanted: Option<LayoutVersion>,
) -> Result<(Simulator, PathBuf, LayoutVersion), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temporary dir: {e}"))?;
    let counter = if wanted == Some(LayoutVersion::V2) {
        None
    } else {
        match measure_counter_frequency() {
            Ok(counter) => Some(counter),
            Err(why) => {
                println!("the simulated writer cannot write layout 3: {why}; it writes layout 2");
                None
            }
        }
    };
    let (mut writer, path) = match counter {
        Some(counter) => {
            let path = dir.path().join("shm1");
            let writer = ShmWriterV3::new(&path).map_err(|e| e.to_string())?;
            println!(
                "simulated writer: layout 3 on {}, every {} ms; CPU counter at {:.3} MHz ± {:.3} ppm \
                 (measured against CLOCK_MONOTONIC)",
                path.display(),
                SIM_PERIOD.as_millis(),
                counter.hz as f64 / 1e6,
                counter.error_ppb as f64 / 1e3,
            );
            (SimulatedWriter::Layout3(writer, counter), path)
        }
        None => {
            let path = dir.path().join("shm0");
            let writer = ShmWriter::new(&path).map_err(|e| e.to_string())?;
            println!(
                "simulated writer: layout 2 on {}, every {} ms",
                path.display(),
                SIM_PERIOD.as_millis()
            );
            (SimulatedWriter::Layout2(writer), path)
        }
    };
    // A first snapshot now, so readers can open the segment.
    writer.publish();
    let layout = match writer {
        SimulatedWriter::Layout2(_) => LayoutVersion::V2,
        SimulatedWriter::Layout3(..) => LayoutVersion::V3,
    };
    Ok((Simulator { writer, _dir: dir }, path, layout))
}

// ---------------------------------------------------------------------------------------
// Choosing the segment
// ---------------------------------------------------------------------------------------

/// Opens `path` with `strategy` (and otherwise the default options): `SharedClockBound`
/// reads the layout the file's header declares; `layout`, when given, must match it.
fn open_segment(
    path: &Path,
    layout: Option<LayoutVersion>,
    strategy: Strategy,
) -> Result<SharedClockBound, String> {
    let clock = SharedClockBound::open_with(path, &ReaderOptions::new().strategy(strategy))
        .map_err(|e| e.to_string())?;
    match layout {
        Some(wanted) if wanted != clock.layout() => Err(format!(
            "{} holds {}, not {wanted}",
            path.display(),
            clock.layout()
        )),
        _ => Ok(clock),
    }
}

/// Opens a segment named with `--path`: as whichever layout it holds (which must be
/// `layout`, when given).
fn open_path(path: &Path, layout: Option<LayoutVersion>) -> Result<SharedClockBound, String> {
    open_segment(path, layout, Strategy::default())
}

/// Opens the daemon's segment: the one `--layout` names, or, without it, the one
/// `open_default` prefers (`shm1` when it holds a valid layout 3 segment, else `shm0`).
/// The error says, in a line, why there is none.
fn open_daemon_segment(layout: Option<LayoutVersion>) -> Result<SharedClockBound, String> {
    match layout {
        Some(LayoutVersion::V3) => open_segment(
            Path::new(CLOCKBOUND_SHM1_DEFAULT_PATH),
            Some(LayoutVersion::V3),
            Strategy::default(),
        ),
        Some(_) => SharedClockBound::open(CLOCKBOUND_SHM_DEFAULT_PATH).map_err(|e| e.to_string()),
        None => SharedClockBound::open_default().map_err(|shm0_error| {
            // `open_default` returns the error for shm0 only; open shm1 again to say why
            // it was not used either.
            let shm1_error = SharedClockBound::open_with(
                CLOCKBOUND_SHM1_DEFAULT_PATH,
                &ReaderOptions::default(),
            )
            .err();
            let missing = |e: &ShmError| {
                matches!(e, ShmError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
            };
            match shm1_error {
                Some(shm1_error) if missing(&shm1_error) && missing(&shm0_error) => format!(
                    "no {CLOCKBOUND_SHM1_DEFAULT_PATH} or shm0: the ClockBound daemon is not \
                     running here"
                ),
                Some(shm1_error) => format!("{shm1_error}; and {shm0_error}"),
                None => shm0_error.to_string(),
            }
        }),
    }
}

/// Where the windows come from.
struct Source {
    path: PathBuf,
    layout: LayoutVersion,
    /// Set when the windows come from the simulated writer.
    simulator: Option<Simulator>,
}

/// Picks the segment to read, and says which and why in plain lines.
fn choose_source(args: &Args) -> Result<Source, String> {
    if let Some(path) = &args.path {
        let clock = open_path(path, args.layout)?;
        println!(
            "reading {} ({}, from --path)",
            path.display(),
            clock.layout()
        );
        return Ok(Source {
            path: path.clone(),
            layout: clock.layout(),
            simulator: None,
        });
    }
    if args.simulate {
        println!("not looking for the ClockBound daemon (--simulate)");
    } else {
        match open_daemon_segment(args.layout) {
            Ok(clock) => {
                println!(
                    "reading the ClockBound daemon's segment {} ({})",
                    clock.path().display(),
                    clock.layout()
                );
                return Ok(Source {
                    path: clock.path().to_owned(),
                    layout: clock.layout(),
                    simulator: None,
                });
            }
            Err(why) => {
                println!("not reading the ClockBound daemon: {why}");
                println!("so this run reads a simulated writer started by this program instead");
            }
        }
    }
    let (simulator, path, layout) = start_simulator(args.layout)
        .map_err(|e| format!("cannot start the simulated writer: {e}"))?;
    Ok(Source {
        path,
        layout,
        simulator: Some(simulator),
    })
}

// ---------------------------------------------------------------------------------------
// Is the clock healthy?
// ---------------------------------------------------------------------------------------

/// How long ago `snapshot` was published, on the clock its `as_of` is stamped with.
fn snapshot_age(snapshot: &AnySnapshot) -> Option<Duration> {
    match snapshot {
        // Layout 2 stamps `as_of` with CLOCK_MONOTONIC_COARSE.
        AnySnapshot::V2(snapshot) => monotonic_coarse().duration_since(snapshot.as_of()),
        // Layout 3 stamps `as_of` with the daemon's UTC time, which only the snapshot itself
        // can carry forward to now (with the CPU counter).
        AnySnapshot::V3(snapshot) => {
            let now = snapshot.now().ok()?.midpoint();
            now.duration_since(snapshot.as_of())
        }
        _ => None,
    }
}

/// Prints the segment, status, bound and age of the clock, and whether to trust it.
fn print_health(clock: &SharedClockBound) -> Result<(), ShmError> {
    let window = clock.now()?;
    let snapshot = clock.snapshot()?;
    let status = window.clock_status;
    println!("the clock, before the run:");
    println!("  segment  {} ({})", clock.path().display(), clock.layout());
    if status == snapshot.clock_status() {
        println!("  status   {status:?}");
    } else {
        println!(
            "  status   {status:?} (the writer said {:?}; its last update is too old for that)",
            snapshot.clock_status()
        );
    }
    println!(
        "  bound    ±{:.3} µs (half the window's width)",
        window.bound().as_nanos() as f64 / 1e3
    );
    match snapshot_age(&snapshot) {
        Some(age) => println!(
            "  age      {:.3} s since the last update",
            age.as_secs_f64()
        ),
        None => println!("  age      unknown"),
    }
    if status != snapshot.clock_status() {
        println!(
            "  note     no update for a long time: is the daemon that writes {} still running?",
            clock.path().display()
        );
        // A 3.x daemon that stopped leaves shm1 behind, and a 2.x daemon started after it
        // writes only shm0.
        if clock.path() == Path::new(CLOCKBOUND_SHM1_DEFAULT_PATH) {
            println!("           (a ClockBound 2.x daemon writes only shm0: --layout 2 reads it)");
        }
    }
    let verdict = match status {
        ClockStatus::Synchronized => "yes: synchronised, the window can be trusted",
        ClockStatus::FreeRunning => {
            "yes, but free-running: no recent synchronisation; the window still holds, widening \
             with the worst-case drift"
        }
        ClockStatus::Unknown => {
            "NO: status Unknown, do not trust the window (is the daemon running and synchronised?)"
        }
        ClockStatus::Disrupted => {
            "NO: the clock was disrupted (VM migration or restore), do not trust the window \
             until the daemon resynchronises"
        }
    };
    println!("  healthy  {verdict}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The workers
// ---------------------------------------------------------------------------------------

/// What the workers of one strategy saw.
#[derive(Default)]
struct Tally {
    calls: u64,
    /// Sum over threads of each thread's time in its loop.
    busy: Duration,
    checked: u64,
    /// Windows per status, by the status's wire value: Unknown, Synchronized, FreeRunning,
    /// Disrupted.
    statuses: [u64; 4],
    anomalies: u64,
    errors: u64,
    reported: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.calls += other.calls;
        self.busy += other.busy;
        self.checked += other.checked;
        for (mine, theirs) in self.statuses.iter_mut().zip(other.statuses) {
            *mine += theirs;
        }
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
            // The wire value is 0..=3 for every status.
            tally.statuses[window.clock_status.to_wire() as usize] += 1;
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
    if simulated && !window.clock_status.is_trusted() {
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

/// Runs the workers with `strategy` for `args.duration` and prints the strategy's row.
fn run(strategy: Strategy, source: &Source, args: &Args, simulated: bool) -> Result<Tally, String> {
    let clock = open_segment(&source.path, Some(source.layout), strategy)?;
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
        "{:<12} {:>7} {:>12.0} {:>12.0} {:>11.1} {:>15} {:>9}",
        format!("{strategy:?}"),
        args.threads,
        calls_per_sec,
        calls_per_sec / args.threads as f64,
        ns_per_call,
        total.checked,
        total.anomalies + total.errors,
    );
    Ok(total)
}

/// "Synchronized 62223552, FreeRunning 3": the statuses the workers saw, most first.
fn describe_statuses(statuses: &[u64; 4]) -> String {
    let names = [
        ClockStatus::Unknown,
        ClockStatus::Synchronized,
        ClockStatus::FreeRunning,
        ClockStatus::Disrupted,
    ];
    let mut seen: Vec<_> = names
        .into_iter()
        .zip(*statuses)
        .filter(|&(_, count)| count > 0)
        .collect();
    seen.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
    let parts: Vec<_> = seen
        .iter()
        .map(|(status, count)| format!("{status:?} {count}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
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

    let mut source = match choose_source(&args) {
        Ok(source) => source,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!();
    let health = open_segment(&source.path, Some(source.layout), Strategy::default())
        .and_then(|clock| print_health(&clock).map_err(|e| format!("{e:?}")));
    if let Err(e) = health {
        eprintln!("error: cannot read {}: {e}", source.path.display());
        return ExitCode::FAILURE;
    }

    // The simulated writer runs on a thread of its own, not a scoped one: should the main
    // thread stop early, the process must not wait for a writer that never stops.
    let simulated = source.simulator.is_some();
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writer_thread = source.simulator.take().map(|simulator| {
        let stop_writer = Arc::clone(&stop_writer);
        thread::spawn(move || simulator.run_until(&stop_writer))
    });

    println!(
        "\n{} worker thread{}, {:.1} s per strategy\n",
        args.threads,
        if args.threads == 1 { "" } else { "s" },
        args.duration.as_secs_f64()
    );
    println!(
        "{:<12} {:>7} {:>12} {:>12} {:>11} {:>15} {:>9}",
        "strategy",
        "threads",
        "calls/s",
        "per thread",
        "ns per call",
        "windows checked",
        "anomalies"
    );
    let mut failed = false;
    let mut problems = Vec::new();
    let mut statuses = [0u64; 4];
    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        match run(strategy, &source, &args, simulated) {
            Ok(tally) => {
                failed |= tally.anomalies + tally.errors > 0;
                for (all, these) in statuses.iter_mut().zip(tally.statuses) {
                    *all += these;
                }
                problems.extend(
                    tally
                        .reported
                        .into_iter()
                        .map(|p| format!("{strategy:?}: {p}")),
                );
            }
            Err(e) => {
                failed = true;
                problems.push(format!(
                    "{strategy:?}: cannot open {}: {e}",
                    source.path.display()
                ));
            }
        }
    }
    println!(
        "\nstatuses the workers saw: {}",
        describe_statuses(&statuses)
    );

    stop_writer.store(true, Ordering::Relaxed);
    if let Some(writer_thread) = writer_thread {
        match writer_thread.join() {
            Ok(updates) => println!("simulated writer: {updates} updates during the run"),
            Err(_) => {
                failed = true;
                problems.push("the simulated writer panicked".into());
            }
        }
    }
    for problem in &problems {
        eprintln!("anomaly: {problem}");
    }
    if failed {
        eprintln!("FAILED: anomalies or errors (see above)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
