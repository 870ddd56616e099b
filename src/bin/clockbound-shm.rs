//! `clockbound-shm`: look at the ClockBound daemon's shared-memory segments from a shell.
//!
//! Built with the `cli` feature. `status` shows everything in a segment, `now` prints one
//! window for scripts, `watch` prints a line per update (and says so when updates stop),
//! `waitsync` waits for a synchronised clock (init containers, readiness probes), and
//! `simulate` writes a segment the way the daemon does, to try the others without one.
//! The exit codes are listed in `EXIT_CODES` and in `--help`.
//!
//! Both layouts are read: layout 2 (`shm0`) and layout 3 (`shm1`, ClockBound 3.x). Without
//! `--path` the segment is chosen as `SharedClockBound::open_default` chooses it: `shm1`
//! when it holds a valid layout 3 segment, else `shm0`. With `--path` the layout is the one
//! the file's header declares, unless `--layout` says otherwise.
//!
//! The text and JSON outputs of `status` come from one list of fields (`Field`); `now`,
//! `watch` and `waitsync` pick theirs from the same definitions.

use std::collections::VecDeque;
use std::error::Error as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use clockbound_shm::{
    AnySnapshot, CLOCKBOUND_SHM_DEFAULT_PATH, CLOCKBOUND_SHM1_DEFAULT_PATH, ClockErrorBound,
    ClockErrorBoundV3, ClockReadings, ClockStatus, Diagnosis, DisruptionCheck, LayoutVersion,
    ReaderOptions, ShmError, ShmReader, ShmReaderV3, ShmWriter, ShmWriterV3, Timespec,
    VMCLOCK_DEFAULT_PATH, VmClockCheck, VmClockProbe, VmClockSnapshot,
};
use rustix::time::{ClockId, clock_gettime};
use serde_json::{Map, Value, json};

/// The clock is trusted (Synchronized or FreeRunning); `waitsync`: it is Synchronized.
const EXIT_TRUSTED: u8 = 0;
/// The clock is not trusted (Unknown or Disrupted).
const EXIT_UNTRUSTED: u8 = 1;
// 2 is clap's: a usage error (unknown option, bad value, missing argument).
/// The segment cannot be read (or, for `simulate`, written), or the VMClock page the
/// segment asks for cannot be read.
const EXIT_UNREADABLE: u8 = 3;
/// `waitsync` ran out of time.
const EXIT_TIMEOUT: u8 = 4;

/// The exit codes, for `--help`.
const EXIT_CODES: &str = "\
Exit status:
  0  the clock is trusted (Synchronized or FreeRunning); waitsync: it is Synchronized;
     simulate: stopped by Ctrl-C or --duration
  1  the clock is not trusted (Unknown or Disrupted)
  2  usage error (unknown command or option, bad value)
  3  the segment cannot be read (simulate: written), or the segment asks for the VMClock
     disruption check and the VMClock page cannot be read (--no-vmclock skips the check)
  4  waitsync: timed out before the clock was Synchronized

Which segment is read: without --path, /var/run/clockbound/shm1 (layout 3, written by
ClockBound 3.x) when it holds a valid layout 3 segment, else /var/run/clockbound/shm0
(layout 2, written by ClockBound 2.x and 3.x); --layout 3 or --layout 2 reads that one
only. With --path FILE, FILE is read as the layout its header declares (--layout forces
one). Every command says which file and layout it read (`now`: in --json only).";

/// How long a `watch` waits for a second update before it knows the daemon's pace.
const SILENCE_BEFORE_PACE_KNOWN: Duration = Duration::from_secs(20);
/// The quietest `watch` gets: a daemon updating 10 times a second is not "silent" after 0.3 s.
const MIN_SILENCE: Duration = Duration::from_secs(1);
/// How many recent gaps between updates set the daemon's usual pace.
const PACE_WINDOW: usize = 8;

/// Inspect the AWS ClockBound daemon's shared-memory segments (layout 2 and layout 3).
#[derive(Parser, Debug)]
// Listed after each command's own options in `COMMAND --help`.
#[command(name = "clockbound-shm", version, after_help = EXIT_CODES, next_display_order = 100)]
struct Cli {
    /// Read this segment file instead of choosing one of the daemon's (`simulate`: the file
    /// to write, required).
    #[arg(long, global = true, value_name = "FILE")]
    path: Option<PathBuf>,

    /// The segment layout: 3 (`shm1`, ClockBound 3.x, time from the CPU counter) or 2
    /// (`shm0`). Reading: use only that layout [default: shm1 if it holds a valid layout 3
    /// segment, else shm0; with --path, the layout the file's header declares]. `simulate`:
    /// the layout written [default: 2].
    #[arg(long, global = true, value_enum, value_name = "2|3")]
    layout: Option<LayoutArg>,

    /// Where the daemon's layout 3 segment is, when choosing without --path.
    #[arg(long, global = true, value_name = "FILE", default_value = CLOCKBOUND_SHM1_DEFAULT_PATH,
          conflicts_with = "path")]
    shm1_path: PathBuf,

    /// Where the daemon's layout 2 segment is, when choosing without --path.
    #[arg(long, global = true, value_name = "FILE", default_value = CLOCKBOUND_SHM_DEFAULT_PATH,
          conflicts_with = "path")]
    shm0_path: PathBuf,

    /// The VMClock device. Read when given, and whenever the segment says the daemon runs
    /// with clock disruption support (then /dev/vmclock0 unless given).
    #[arg(long, global = true, value_name = "FILE")]
    vmclock_path: Option<PathBuf>,

    /// Skip the VMClock disruption check even when the segment asks for it: trust the
    /// segment alone (a live migration is then seen only once the daemon notices it).
    #[arg(long, global = true, conflicts_with = "vmclock_path")]
    no_vmclock: bool,

    /// Print JSON (one object per line) on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show every field of the segment, the window for now, and the VMClock check.
    ///
    /// Says which file and layout it reads (and, when it chose, why). Layout 3 also shows
    /// the counter's frequency and period error, `as_of` on the daemon's UTC clock with the
    /// counter value `as_of_tsc`, and the counter value the window was computed at.
    Status,
    /// Print one window: `EARLIEST LATEST STATUS` (seconds.nanoseconds, UTC).
    ///
    /// Layout 2 windows are around CLOCK_REALTIME; layout 3 windows are around the daemon's
    /// own time, from the CPU counter. `--json` adds the file and the layout read.
    Now,
    /// Print a line per update, and a warning while updates stop, until Ctrl-C.
    ///
    /// A line is printed whenever the generation or the status changes. When no update has
    /// arrived for longer than usual, a `silent:` line gives the snapshot's age, and is
    /// repeated while the daemon stays silent.
    Watch {
        /// Exit after this many update lines (the first, the state at start, counts;
        /// silence warnings do not).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// How often to look at the segment, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 10,
              value_parser = clap::value_parser!(u64).range(1..))]
        interval_ms: u64,
        /// Warn once the snapshot is this old, and again every as long while it stays
        /// silent [default: 3 times the longest recent gap between updates, at least 1 s;
        /// 20 s until two updates were seen].
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        silence_after: Option<Duration>,
    },
    /// Wait until the clock is Synchronized (for init containers and readiness probes).
    ///
    /// Without --path it waits for the daemon's segment chosen as the other commands choose
    /// it, and keeps looking for a valid shm1 while it reads shm0 (a ClockBound 3.x daemon
    /// that is starting).
    ///
    /// Exits 0 once the clock is Synchronized, 4 when the timeout passes first, 3 at once on
    /// an error that waiting cannot clear (a malformed segment, no permission, a VMClock
    /// page the segment asks for that cannot be read). A missing, empty or unwritten
    /// segment is waited for: the daemon may be starting. Progress goes to stderr. Like
    /// `cbctl waitsync` of ClockBound 3.x, only Synchronized ends the wait (FreeRunning
    /// means the daemon has lost its time source).
    Waitsync {
        /// Give up (exit 4) after this many seconds.
        #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "60")]
        timeout: Duration,
    },
    /// Write a segment the way the daemon does, to try the other commands without one.
    ///
    /// Publishes a plausible snapshot every interval until Ctrl-C or --duration, with the
    /// daemon's protocol. Layout 2 (the default): as_of = CLOCK_MONOTONIC_COARSE now.
    /// Layout 3 (--layout 3): as_of = CLOCK_REALTIME now at the CPU counter value as_of_tsc,
    /// with the counter's frequency measured against CLOCK_MONOTONIC (20 ms at start, then
    /// since start) and the period error that measurement allows. void_after is as_of +
    /// 1000 s. Needs --path; refuses a segment that another writer is updating. The segment
    /// stays when it stops, and ages as a dead daemon's would.
    Simulate {
        /// The status written.
        #[arg(long, value_enum, default_value_t = SimStatus::Synchronized)]
        status: SimStatus,
        /// The bound written, in nanoseconds.
        #[arg(long, value_name = "N", default_value_t = 50_000)]
        bound_ns: i64,
        /// The worst-case drift written, in parts per billion.
        #[arg(long, value_name = "PPB", default_value_t = 15_000)]
        max_drift_ppb: u32,
        /// Milliseconds between updates.
        #[arg(long, value_name = "MS", default_value_t = 1000,
              value_parser = clap::value_parser!(u64).range(1..))]
        interval_ms: u64,
        /// Stop after this many seconds [default: until Ctrl-C].
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        duration: Option<Duration>,
    },
}

/// A status `simulate` can write.
#[derive(Copy, Clone, Debug, ValueEnum)]
enum SimStatus {
    Unknown,
    Synchronized,
    FreeRunning,
    Disrupted,
}

impl From<SimStatus> for ClockStatus {
    fn from(s: SimStatus) -> ClockStatus {
        match s {
            SimStatus::Unknown => ClockStatus::Unknown,
            SimStatus::Synchronized => ClockStatus::Synchronized,
            SimStatus::FreeRunning => ClockStatus::FreeRunning,
            SimStatus::Disrupted => ClockStatus::Disrupted,
        }
    }
}

/// A segment layout, as `--layout` names it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LayoutArg {
    /// Layout 2 (`shm0`): ClockBound 2.x, and 3.x for older clients.
    #[value(name = "2")]
    V2,
    /// Layout 3 (`shm1`): ClockBound 3.x, time from the CPU counter.
    #[value(name = "3")]
    V3,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s} s is not a duration"))
}

impl Cli {
    /// The VMClock device to read when the check runs.
    fn vmclock_path(&self) -> PathBuf {
        self.vmclock_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(VMCLOCK_DEFAULT_PATH))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Waitsync { timeout } => waitsync(&cli, *timeout),
        Command::Simulate {
            status,
            bound_ns,
            max_drift_ppb,
            interval_ms,
            duration,
        } => {
            let Some(path) = cli.path.clone() else {
                Cli::command()
                    .error(
                        ErrorKind::MissingRequiredArgument,
                        "simulate needs --path FILE: it does not write the daemon's segment \
                         unless told to",
                    )
                    .exit();
            };
            let params = SimParams {
                status: (*status).into(),
                bound_ns: *bound_ns,
                max_drift_ppb: *max_drift_ppb,
                interval: Duration::from_millis(*interval_ms),
                duration: *duration,
            };
            simulate(&cli, &path, cli.layout.unwrap_or(LayoutArg::V2), &params)
        }
        command => {
            let mut session = match Session::open(&cli) {
                Ok(session) => session,
                Err(e) => return fail(&cli, &e),
            };
            let result = match command {
                Command::Status => session.status(&cli),
                Command::Now => session.now(&cli),
                Command::Watch {
                    count,
                    interval_ms,
                    silence_after,
                } => session.watch(
                    &cli,
                    *count,
                    Duration::from_millis(*interval_ms),
                    *silence_after,
                ),
                Command::Waitsync { .. } | Command::Simulate { .. } => unreachable!(),
            };
            result.unwrap_or_else(|e| fail(&cli, &e))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors and hints
// ---------------------------------------------------------------------------------------

/// `e` and its causes on one line, each once: `cannot open ...: No such file or directory`.
fn chain(e: &ShmError) -> String {
    // For VMClock I/O the library's message names its remedies in library terms
    // (`DisruptionCheck::Off`); the CLI's hint names the CLI's (`--no-vmclock`).
    let head = match e {
        ShmError::VmClockIo {
            operation, path, ..
        } => format!("cannot {operation} VMClock page {}", path.display()),
        _ => e.to_string(),
    };
    std::iter::successors(e.source(), |c| (*c).source()).fold(head, |mut line, cause| {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        line
    })
}

/// The exit code for an error.
fn exit_for_error(e: &ShmError) -> ExitCode {
    match e {
        ShmError::Timeout { .. } => ExitCode::from(EXIT_TIMEOUT),
        _ => ExitCode::from(EXIT_UNREADABLE),
    }
}

/// Reports `e` (on stderr, and as a JSON object on stdout with `--json`) and returns its
/// exit code.
fn fail(cli: &Cli, e: &ShmError) -> ExitCode {
    let hint = hint(e, cli.path.is_some());
    eprintln!("clockbound-shm: {}", chain(e));
    if !hint.is_empty() {
        eprintln!("hint: {hint}");
    }
    if cli.json {
        emit(&error_json(e, &hint).to_string());
    }
    exit_for_error(e)
}

fn error_json(e: &ShmError, hint: &str) -> Value {
    json!({
        "error": chain(e),
        "kind": kind(e),
        "errno": e.errno(),
        "transient": e.is_transient(),
        "hint": hint,
    })
}

/// What to do about `e` (`path_given`: the segment was named with `--path`).
fn hint(e: &ShmError, path_given: bool) -> String {
    match e {
        ShmError::Io { path, source, .. } => match source.kind() {
            io::ErrorKind::NotFound => missing_segment_hint(path, path_given),
            io::ErrorKind::PermissionDenied => format!(
                "This user may not read {}: check the permissions of the file and of its \
                 directories (the daemon creates it readable by all, mode 0644).",
                path.display()
            ),
            _ => format!(
                "Check that {} is the ClockBound segment (a regular file) and that this user \
                 can read it.",
                path.display()
            ),
        },
        ShmError::SegmentNotInitialized { .. } => "The daemon is starting or restarting and has \
             not written a snapshot yet: try again in a few seconds (or use `waitsync`). If \
             this persists, check the daemon's logs."
            .to_owned(),
        ShmError::SegmentMalformed { .. } if e.is_transient() => "The file is shorter than a \
             segment: the daemon may be writing it right now. Try again in a few seconds; if \
             it stays short, restart the daemon to have it rewrite the segment."
            .to_owned(),
        ShmError::SegmentMalformed { .. } | ShmError::SegmentVersionNotSupported { .. } => {
            "This is not a ClockBound segment of the layout expected (2 or 3): check --path and \
             --layout (ClockBound 3.x writes layout 2 to shm0 and layout 3 to shm1) and the \
             daemon's version, then restart the daemon to have it rewrite the segment."
                .to_owned()
        }
        ShmError::CausalityBreach { .. } => "The snapshot's as_of is ahead of this host's \
             monotonic clock: it was written on another boot, in another time namespace, or \
             by a broken writer. Restart the daemon."
            .to_owned(),
        ShmError::CounterBehindSnapshot { .. } => "The CPU counter reads before the \
             snapshot's as_of_tsc: the snapshot was written on another boot or another \
             machine, the counter is not synchronised across CPUs, or the writer is broken. \
             Restart the daemon; --layout 2 reads shm0, which does not use the counter."
            .to_owned(),
        ShmError::LayoutNotSupported { .. } | ShmError::CounterUnavailable { .. } => {
            "Layout 3 needs the CPU counter, which this tool reads on x86-64 and aarch64 only: \
             read the layout 2 segment (--layout 2)."
                .to_owned()
        }
        ShmError::VmClockIo { .. } | ShmError::VmClockMalformed { .. } => vmclock_hint(e),
        ShmError::VmClockNotReady { .. } => {
            "The hypervisor is updating the VMClock page: try again.".to_owned()
        }
        ShmError::Timeout { last_error, .. } => match last_error.as_deref() {
            Some(last) => hint(last, path_given),
            None => "The segment is readable but the clock did not reach Synchronized: check \
                     the daemon's time sources (its logs, `chronyc tracking` for 2.x)."
                .to_owned(),
        },
        _ => String::new(),
    }
}

/// Where the daemon writes and how to find out whether it runs, for a missing segment.
fn missing_segment_hint(path: &Path, path_given: bool) -> String {
    let mut hint = String::from(
        "Is the ClockBound daemon running? It writes /var/run/clockbound/shm0 (layout 2, \
         ClockBound 2.x and 3.x) and /var/run/clockbound/shm1 (layout 3, 3.x only); \
         without --path this tool reads shm1 when it is valid, else shm0. Check the daemon \
         with `systemctl status clockbound` (the packaged unit) or `pgrep -a clockbound`.",
    );
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir.filter(|d| !d.exists()) {
        hint.push_str(&format!(
            " {} does not exist: the daemon has not run on this host since boot, or, in a \
             container, the host's /var/run/clockbound is not mounted (a hostPath volume in \
             Kubernetes).",
            dir.display()
        ));
    }
    let existing = [CLOCKBOUND_SHM1_DEFAULT_PATH, CLOCKBOUND_SHM_DEFAULT_PATH]
        .into_iter()
        .find(|p| Path::new(p) != path && Path::new(p).exists());
    match existing {
        Some(other) if path_given => hint.push_str(&format!(
            " {other} exists: drop --path (and --layout) to read the daemon's segment."
        )),
        _ => hint.push_str(" If the daemon writes elsewhere, pass --path."),
    }
    hint
}

/// What to do when the VMClock check cannot run.
fn vmclock_hint(e: &ShmError) -> String {
    let path = match e {
        ShmError::VmClockIo { path, .. } | ShmError::VmClockMalformed { path, .. } => {
            path.display().to_string()
        }
        _ => VMCLOCK_DEFAULT_PATH.to_owned(),
    };
    let io_kind = match e {
        ShmError::VmClockIo { source, .. } => Some(source.kind()),
        _ => None,
    };
    let why = match io_kind {
        Some(io::ErrorKind::NotFound) => format!(
            "There is no {path} here: the guest kernel has no vmclock driver, the hypervisor \
             offers no VMClock, or (in a container) the device is not mounted into it."
        ),
        Some(io::ErrorKind::PermissionDenied) => {
            format!("This user may not read {path}.")
        }
        Some(_) => format!("{path} cannot be used as the VMClock device."),
        None => format!("{path} is not a VMClock page this tool reads."),
    };
    format!(
        "{why} The segment says the daemon tracks clock disruptions, so readers also check \
         the VMClock page for a disruption the daemon has not noticed yet. Either give this \
         process read access to the device (in a container, mount /dev/vmclock0 into it; \
         --vmclock-path if it lives elsewhere), or pass --no-vmclock to trust the segment \
         alone: a live migration is then reported only once the daemon notices it."
    )
}

/// A short machine-readable name for `e`, for `--json`.
fn kind(e: &ShmError) -> &'static str {
    match e {
        ShmError::Io { .. } => "io",
        ShmError::SegmentNotInitialized { .. } => "not_initialized",
        ShmError::SegmentMalformed { .. } => "malformed",
        ShmError::SegmentVersionNotSupported { .. } => "version_not_supported",
        ShmError::CausalityBreach { .. } => "causality_breach",
        ShmError::CounterBehindSnapshot { .. } => "counter_behind_snapshot",
        ShmError::CounterUnavailable { .. } | ShmError::LayoutNotSupported { .. } => {
            "layout_not_supported"
        }
        ShmError::Timeout { .. } => "timeout",
        ShmError::VmClockIo { .. } => "vmclock_io",
        ShmError::VmClockMalformed { .. } => "vmclock_malformed",
        ShmError::VmClockNotReady { .. } => "vmclock_not_ready",
        _ => "other",
    }
}

/// Writes one line to stdout; `false` when stdout is gone (e.g. `| head -1`).
fn emit(line: &str) -> bool {
    writeln!(io::stdout().lock(), "{line}").is_ok()
}

/// Installs a Ctrl-C handler that sets the returned flag (warns when it cannot).
fn stop_on_ctrl_c(command: &str) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)) {
        eprintln!("clockbound-shm: warning: cannot handle Ctrl-C ({e}); it will kill {command}");
    }
    stop
}

// ---------------------------------------------------------------------------------------
// Looking at the segment
// ---------------------------------------------------------------------------------------

fn timespec(t: rustix::time::Timespec) -> Timespec {
    #[allow(clippy::useless_conversion)] // `tv_nsec` is `i64` on 64-bit targets only.
    Timespec::new(t.tv_sec, i64::from(t.tv_nsec))
}

/// The counter frequency a layout 3 snapshot states, in Hz: `2^(64 + period_shift) /
/// period_frac`; `None` for a zero period.
fn counter_hz(s: &ClockErrorBoundV3) -> Option<f64> {
    (s.period_frac() != 0)
        .then(|| 2f64.powi(64 + i32::from(s.period_shift())) / s.period_frac() as f64)
}

/// The relative error of a layout 3 snapshot's period, in parts per billion:
/// `period_err_frac / 2^(64 + period_err_shift) * 1e9`.
fn period_err_ppb(s: &ClockErrorBoundV3) -> f64 {
    s.period_err_frac() as f64 / 2f64.powi(64 + i32::from(s.period_err_shift())) * 1e9
}

/// How the segment was chosen, for the operator.
#[derive(Clone, Debug)]
enum Selection {
    /// `--path`, as the layout its header declares.
    Header,
    /// `--layout` (with or without `--path`).
    Forced,
    /// Without `--path` or `--layout`: shm1 held a valid layout 3 segment.
    Shm1,
    /// Without `--path` or `--layout`: shm1 could not be read as layout 3 (why: the error).
    Shm0 { shm1: PathBuf, why: String },
}

impl Selection {
    fn describe(&self) -> String {
        match self {
            Selection::Header => "--path, as the layout its header declares".to_owned(),
            Selection::Forced => "--layout".to_owned(),
            Selection::Shm1 => "default: it holds a valid layout 3 segment".to_owned(),
            Selection::Shm0 { shm1, why } => format!(
                "default: {} is not a valid layout 3 segment ({why})",
                shm1.display()
            ),
        }
    }

    fn json(&self) -> Value {
        match self {
            Selection::Header => json!({ "by": "header" }),
            Selection::Forced => json!({ "by": "layout_option" }),
            Selection::Shm1 => json!({ "by": "auto" }),
            Selection::Shm0 { shm1, why } => json!({
                "by": "auto",
                "shm1": shm1.display().to_string(),
                "shm1_not_used": why,
            }),
        }
    }
}

/// Everything one look at the segment found, and how the segment was chosen.
struct Observation {
    diagnosis: Diagnosis,
    selection: Selection,
}

impl std::ops::Deref for Observation {
    type Target = Diagnosis;
    fn deref(&self) -> &Diagnosis {
        &self.diagnosis
    }
}

impl Observation {
    /// The exit code this observation calls for.
    fn exit_code(&self) -> ExitCode {
        if self.vmclock.required_failure().is_some() {
            ExitCode::from(EXIT_UNREADABLE)
        } else if self.status.is_trusted() {
            ExitCode::from(EXIT_TRUSTED)
        } else {
            ExitCode::from(EXIT_UNTRUSTED)
        }
    }

    /// Says on stderr that the VMClock check the segment asks for could not run.
    fn report_vmclock_failure(&self) {
        if let Some(error) = self.vmclock.required_failure() {
            eprintln!(
                "clockbound-shm: the VMClock disruption check could not run ({}); the status \
                 shown is the segment's own",
                chain(error)
            );
            eprintln!("hint: {}", vmclock_hint(error));
        }
    }

    /// `/var/run/clockbound/shm1 (layout 3)`.
    fn source(&self) -> String {
        format!("{} ({})", self.path.display(), self.layout)
    }
}

/// A reader of either layout.
enum AnyReader {
    V2(ShmReader),
    V3(ShmReaderV3),
}

/// The command reads the VMClock page itself (to show it, to explain a Disrupted status, and
/// to show the segment when the page cannot be read), so the readers' own check is off.
/// The VMClock check as the options ask: skipped with `--no-vmclock`; else run when the
/// segment asks for it, and always with an explicit `--vmclock-path`.
fn vmclock_probe(cli: &Cli) -> VmClockProbe {
    if cli.no_vmclock {
        VmClockProbe::skip()
    } else {
        VmClockProbe::new(cli.vmclock_path(), cli.vmclock_path.is_some())
    }
}

fn reader_options() -> ReaderOptions {
    ReaderOptions::new().disruption_check(DisruptionCheck::Off)
}

fn open_layout(path: &Path, layout: LayoutArg) -> Result<AnyReader, ShmError> {
    Ok(match layout {
        LayoutArg::V2 => AnyReader::V2(ShmReader::open_with(path, &reader_options())?),
        LayoutArg::V3 => AnyReader::V3(ShmReaderV3::open_with(path, &reader_options())?),
    })
}

/// The layout the header of the file at `path` declares: 3 for `0x0303` (or any version
/// whose bytes say 3 or later, so that the layout 3 reader names the version it expects),
/// 2 for anything else, including a file that cannot be read (the layout 2 reader then
/// reports why).
fn declared_layout(path: &Path) -> LayoutArg {
    let mut header = [0u8; 16];
    let read = File::open(path).and_then(|mut f| f.read_exact(&mut header));
    let version = u16::from_ne_bytes([header[12], header[13]]);
    let [hi, lo] = version.to_be_bytes();
    if read.is_ok() && (hi >= 3 || lo >= 3) {
        LayoutArg::V3
    } else {
        LayoutArg::V2
    }
}

/// Opens the segment the options name (see `EXIT_CODES`).
fn open_segment(cli: &Cli) -> Result<(AnyReader, Selection), ShmError> {
    match (&cli.path, cli.layout) {
        (Some(path), Some(layout)) => Ok((open_layout(path, layout)?, Selection::Forced)),
        (Some(path), None) => Ok((open_layout(path, declared_layout(path))?, Selection::Header)),
        (None, Some(LayoutArg::V3)) => Ok((
            open_layout(&cli.shm1_path, LayoutArg::V3)?,
            Selection::Forced,
        )),
        (None, Some(LayoutArg::V2)) => Ok((
            open_layout(&cli.shm0_path, LayoutArg::V2)?,
            Selection::Forced,
        )),
        // As `SharedClockBound::open_default` chooses.
        (None, None) => match open_layout(&cli.shm1_path, LayoutArg::V3) {
            Ok(reader) => Ok((reader, Selection::Shm1)),
            Err(shm1_error) => {
                let reader = open_layout(&cli.shm0_path, LayoutArg::V2)?;
                let selection = Selection::Shm0 {
                    shm1: cli.shm1_path.clone(),
                    why: chain(&shm1_error),
                };
                Ok((reader, selection))
            }
        },
    }
}

/// How often a session that fell back to shm0 looks whether shm1 has become valid.
const SHM1_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The open segment and, once needed, the VMClock page.
struct Session {
    reader: AnyReader,
    selection: Selection,
    vmclock: VmClockProbe,
    /// When a session that fell back to shm0 last tried shm1.
    shm1_tried: Option<Instant>,
}

impl Session {
    fn open(cli: &Cli) -> Result<Session, ShmError> {
        let (reader, selection) = open_segment(cli)?;
        Ok(Session {
            reader,
            selection,
            vmclock: vmclock_probe(cli),
            shm1_tried: Some(Instant::now()),
        })
    }

    /// A session that reads shm0 because shm1 was not a valid layout 3 segment switches to
    /// shm1 once it is (a ClockBound 3.x daemon that was starting), saying so on stderr.
    /// Returns whether it switched.
    fn prefer_shm1_once_valid(&mut self, cli: &Cli, command: &str) -> bool {
        if !matches!(self.selection, Selection::Shm0 { .. })
            || self
                .shm1_tried
                .is_some_and(|at| at.elapsed() < SHM1_RETRY_INTERVAL)
        {
            return false;
        }
        self.shm1_tried = Some(Instant::now());
        if let Ok(reader) = open_layout(&cli.shm1_path, LayoutArg::V3) {
            eprintln!(
                "{command}: {} now holds a valid layout 3 segment: reading it instead",
                cli.shm1_path.display()
            );
            *self = Session {
                reader,
                selection: Selection::Shm1,
                vmclock: vmclock_probe(cli),
                shm1_tried: None,
            };
            return true;
        }
        false
    }

    /// One look: the segment's snapshot, the window at this instant, the VMClock check
    /// (the library's diagnosis, so the verdict is the readers').
    fn observe(&mut self) -> Result<Observation, ShmError> {
        let diagnosis = match &mut self.reader {
            AnyReader::V2(reader) => reader.diagnose(&mut self.vmclock)?,
            AnyReader::V3(reader) => reader.diagnose(&mut self.vmclock)?,
        };
        Ok(Observation {
            diagnosis,
            selection: self.selection.clone(),
        })
    }

    fn status(&mut self, cli: &Cli) -> Result<ExitCode, ShmError> {
        let obs = self.observe()?;
        let sections = status_sections(&obs);
        if cli.json {
            emit(&sections_json(&obs, &sections).to_string());
        } else {
            for line in sections_text(&sections) {
                if !emit(&line) {
                    break;
                }
            }
        }
        obs.report_vmclock_failure();
        Ok(obs.exit_code())
    }

    fn now(&mut self, cli: &Cli) -> Result<ExitCode, ShmError> {
        let obs = self.observe()?;
        let line = if cli.json {
            let v = pick_json(
                &window_fields(&obs),
                &[
                    "earliest",
                    "latest",
                    "bound_ns",
                    "clock_status",
                    "trusted",
                    "path",
                    "layout",
                ],
            );
            Value::Object(v).to_string()
        } else {
            format!(
                "{} {} {:?}",
                obs.window.earliest, obs.window.latest, obs.status
            )
        };
        emit(&line);
        obs.report_vmclock_failure();
        Ok(obs.exit_code())
    }

    fn watch(
        &mut self,
        cli: &Cli,
        count: Option<u64>,
        interval: Duration,
        silence_after: Option<Duration>,
    ) -> Result<ExitCode, ShmError> {
        let stop = stop_on_ctrl_c("watch");
        let mut last = None;
        let mut last_vmclock = "";
        let mut silence = Silence::new(silence_after);
        let mut lines = 0u64;
        let mut code = ExitCode::SUCCESS;
        let mut announced = false;
        while !stop.load(Ordering::Relaxed) && count.is_none_or(|n| lines < n) {
            if self.prefer_shm1_once_valid(cli, "watch") {
                last = None;
                silence = Silence::new(silence_after);
            }
            let obs = self.observe()?;
            if !announced {
                announced = true;
                eprintln!(
                    "watch: reading {}, selected by {}",
                    obs.source(),
                    obs.selection.describe()
                );
            }
            if obs.vmclock.name() != last_vmclock {
                last_vmclock = obs.vmclock.name();
                obs.report_vmclock_failure();
            }
            let new_snapshot = last.is_none_or(|(generation, _)| generation != obs.generation);
            if new_snapshot {
                silence.update_arrived(obs.snapshot.as_of());
            }
            if last != Some((obs.generation, obs.status)) {
                last = Some((obs.generation, obs.status));
                lines += 1;
                code = obs.exit_code();
                if !emit(&watch_line(cli, &obs)) {
                    break;
                }
            }
            if let Some(line) = silence.check(cli, &obs) {
                if !emit(&line) {
                    break;
                }
            }
            if count.is_none_or(|n| lines < n) {
                std::thread::sleep(interval);
            }
        }
        Ok(code)
    }
}

/// Notices a daemon that stopped updating: the snapshot older than the daemon's usual gap
/// between updates (three times the longest recent one), or than `--silence-after`.
struct Silence {
    fixed: Option<Duration>,
    /// The last snapshot's `as_of`.
    last_as_of: Option<Timespec>,
    /// Recent gaps between the `as_of` of consecutive snapshots.
    gaps: VecDeque<Duration>,
    /// The snapshot age at the last warning, while the daemon stays silent.
    warned_at: Option<Duration>,
}

impl Silence {
    fn new(fixed: Option<Duration>) -> Silence {
        Silence {
            fixed,
            last_as_of: None,
            gaps: VecDeque::with_capacity(PACE_WINDOW),
            warned_at: None,
        }
    }

    fn update_arrived(&mut self, as_of: Timespec) {
        if let Some(gap) = self.last_as_of.and_then(|last| as_of.duration_since(last)) {
            if !gap.is_zero() {
                if self.gaps.len() == PACE_WINDOW {
                    self.gaps.pop_front();
                }
                self.gaps.push_back(gap);
            }
        }
        self.last_as_of = Some(as_of);
        self.warned_at = None;
    }

    /// The usual gap between updates, once two updates were seen.
    fn usual(&self) -> Option<Duration> {
        self.gaps.iter().max().copied()
    }

    fn threshold(&self) -> Duration {
        self.fixed.unwrap_or_else(|| match self.usual() {
            Some(gap) => (gap * 3).max(MIN_SILENCE),
            None => SILENCE_BEFORE_PACE_KNOWN,
        })
    }

    /// How often to repeat the warning while silent.
    fn repeat(&self) -> Duration {
        match self.fixed {
            Some(fixed) => fixed.max(Duration::from_millis(100)),
            None => self
                .threshold()
                .clamp(Duration::from_secs(5), Duration::from_secs(60)),
        }
    }

    /// The warning to print now, if any.
    fn check(&mut self, cli: &Cli, obs: &Observation) -> Option<String> {
        let age = Duration::try_from(Timespec::from_nanos(obs.age_ns)).unwrap_or_default();
        let due = match self.warned_at {
            None => self.threshold(),
            Some(at) => at + self.repeat(),
        };
        if age < due {
            return None;
        }
        self.warned_at = Some(age);
        let usual = self.usual();
        Some(if cli.json {
            let mut v = pick_json(
                &window_fields(obs),
                &["age_ns", "clock_status", "trusted", "bound_ns"],
            );
            v.insert("event".into(), json!("silent"));
            v.insert("generation".into(), json!(obs.generation));
            v.insert("threshold_ns".into(), json!(duration_ns(self.threshold())));
            v.insert("usual_interval_ns".into(), json!(usual.map(duration_ns)));
            Value::Object(v).to_string()
        } else {
            let pace = match (self.fixed, usual) {
                (Some(fixed), _) => format!("--silence-after {}", secs(fixed)),
                (None, Some(gap)) => format!("updates usually come every {}", secs(gap)),
                (None, None) => "no update seen since watch started".to_owned(),
            };
            format!(
                "silent: no update for {} ({pace}); status {:?}, bound {} ns: is the daemon \
                 still running?",
                secs(age),
                obs.status,
                duration_ns(obs.window.bound()),
            )
        })
    }
}

fn watch_line(cli: &Cli, obs: &Observation) -> String {
    if cli.json {
        let mut v = pick_json(
            &window_fields(obs),
            &[
                "clock_status",
                "trusted",
                "bound_ns",
                "age_ns",
                "earliest",
                "latest",
            ],
        );
        v.insert("event".into(), json!("update"));
        v.insert("generation".into(), json!(obs.generation));
        v.insert("path".into(), json!(obs.path.display().to_string()));
        v.insert("layout".into(), to_json(obs.layout));
        v.insert("vmclock_check".into(), json!(obs.vmclock.name()));
        Value::Object(v).to_string()
    } else {
        let mut line = format!(
            "generation {:>5}  status {:<12}  bound {:>12} ns  age {} s",
            obs.generation,
            format!("{:?}", obs.status),
            duration_ns(obs.window.bound()),
            Timespec::from_nanos(obs.age_ns)
        );
        if obs.vmclock.required_failure().is_some() {
            line.push_str("  (VMClock check could not run)");
        }
        line
    }
}

// ---------------------------------------------------------------------------------------
// One field list for text and JSON
// ---------------------------------------------------------------------------------------

/// One value shown by `status`, defined once for both outputs.
struct Field {
    /// The JSON key.
    key: &'static str,
    /// The text label (usually the key; a unit-free name where the key carries the unit).
    label: &'static str,
    json: Value,
    /// `None`: JSON only (the text folds it into another row).
    text: Option<String>,
}

fn field(key: &'static str, json: impl Into<Value>, text: impl Into<String>) -> Field {
    Field {
        key,
        label: key,
        json: json.into(),
        text: Some(text.into()),
    }
}

fn labelled(
    key: &'static str,
    label: &'static str,
    json: impl Into<Value>,
    text: impl Into<String>,
) -> Field {
    Field {
        label,
        ..field(key, json, text)
    }
}

fn json_only(key: &'static str, json: impl Into<Value>) -> Field {
    Field {
        key,
        label: key,
        json: json.into(),
        text: None,
    }
}

/// A group of fields: a JSON object under `key`, a heading and indented rows in text.
struct Section {
    key: &'static str,
    heading: String,
    /// `None`: the section is `null` in JSON and its heading says why in text.
    fields: Option<Vec<Field>>,
}

fn sections_text(sections: &[Section]) -> Vec<String> {
    let mut out = Vec::new();
    for section in sections {
        out.push(section.heading.clone());
        for f in section.fields.iter().flatten() {
            if let Some(text) = &f.text {
                out.push(format!("  {:<34}{text}", f.label));
            }
        }
    }
    out
}

fn fields_json(fields: &[Field]) -> Map<String, Value> {
    fields
        .iter()
        .map(|f| (f.key.to_owned(), f.json.clone()))
        .collect()
}

/// The JSON of the fields named `keys`, in that order.
fn pick_json(fields: &[Field], keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|k| {
            fields
                .iter()
                .find(|f| f.key == *k)
                .map(|f| (f.key.to_owned(), f.json.clone()))
        })
        .collect()
}

fn sections_json(obs: &Observation, sections: &[Section]) -> Value {
    let mut out = Map::new();
    out.insert("path".into(), json!(obs.path.display().to_string()));
    out.insert("layout".into(), to_json(obs.layout));
    for section in sections {
        let value = section
            .fields
            .as_deref()
            .map_or(Value::Null, |f| Value::Object(fields_json(f)));
        out.insert(section.key.into(), value);
    }
    out.insert("vmclock_check".into(), json!(obs.vmclock.name()));
    Value::Object(out)
}

/// A value in the crate's serde form (feature `serde`), the one every JSON consumer of this
/// crate sees.
fn to_json(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn ts_json(t: Timespec) -> Value {
    to_json(t)
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// `1.500 s`, for durations an operator reads.
fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn status_json(status: ClockStatus) -> Value {
    to_json(status)
}

/// The time a VMClock page carries, as seconds and nanoseconds (the fraction is in 2^-64 s).
fn vmclock_time(page: &VmClockSnapshot) -> (u64, u64) {
    let nanos = (u128::from(page.time_frac_sec) * 1_000_000_000) >> 64;
    (page.time_sec, nanos as u64)
}

/// Everything `status` shows.
fn status_sections(obs: &Observation) -> Vec<Section> {
    vec![
        Section {
            key: "header",
            heading: format!("segment {}", obs.source()),
            fields: Some(header_fields(obs)),
        },
        Section {
            key: "snapshot",
            heading: "snapshot".to_owned(),
            fields: Some(match &obs.snapshot {
                AnySnapshot::V2(s) => snapshot_fields(s, obs.generation),
                AnySnapshot::V3(s) => snapshot_fields_v3(s, obs.generation),
                // A layout newer than this CLI: the header says which.
                _ => Vec::new(),
            }),
        },
        Section {
            key: "now",
            heading: "now".to_owned(),
            fields: Some(window_fields(obs)),
        },
        vmclock_section(obs),
    ]
}

fn header_fields(obs: &Observation) -> Vec<Field> {
    let h = &obs.header;
    vec![
        field(
            "selected_by",
            obs.selection.json(),
            obs.selection.describe(),
        ),
        field(
            "magic",
            json!([h.magic[0], h.magic[1]]),
            format!(
                "{:#010x} {:#010x} ({})",
                h.magic[0],
                h.magic[1],
                if h.magic_ok() { "ClockBound" } else { "WRONG" }
            ),
        ),
        json_only("magic_ok", h.magic_ok()),
        field("segsize", h.segsize, format!("{} bytes", h.segsize)),
        field(
            "version",
            h.version,
            match obs.layout {
                LayoutVersion::V3 => format!("{:#06x} (layout 3)", h.version),
                _ => format!("{} (layout 2)", h.version),
            },
        ),
        field(
            "generation",
            h.generation,
            format!("{} (snapshot read at {})", h.generation, obs.generation),
        ),
    ]
}

fn snapshot_fields(s: &ClockErrorBound, generation: u16) -> Vec<Field> {
    vec![
        json_only("generation", generation),
        field(
            "as_of",
            ts_json(s.as_of()),
            format!("{} s CLOCK_MONOTONIC_COARSE", s.as_of()),
        ),
        field(
            "void_after",
            ts_json(s.void_after()),
            format!("{} s CLOCK_MONOTONIC_COARSE", s.void_after()),
        ),
        field(
            "bound_nsec",
            s.bound_nsec(),
            format!("{} ns", s.bound_nsec()),
        ),
        field(
            "disruption_marker",
            s.disruption_marker(),
            s.disruption_marker().to_string(),
        ),
        field(
            "max_drift_ppb",
            s.max_drift_ppb(),
            format!("{} ppb", s.max_drift_ppb()),
        ),
        field(
            "clock_status",
            status_json(s.clock_status()),
            format!("{:?} (as written)", s.clock_status()),
        ),
        field(
            "clock_disruption_support_enabled",
            s.clock_disruption_support_enabled(),
            s.clock_disruption_support_enabled().to_string(),
        ),
    ]
}

fn snapshot_fields_v3(s: &ClockErrorBoundV3, generation: u16) -> Vec<Field> {
    let hz = counter_hz(s);
    let err_ppb = period_err_ppb(s);
    vec![
        json_only("generation", generation),
        field("as_of_tsc", s.as_of_tsc(), s.as_of_tsc().to_string()),
        field(
            "as_of",
            ts_json(s.as_of()),
            format!(
                "{} s UTC ({}, the daemon's time)",
                s.as_of(),
                utc(s.as_of())
            ),
        ),
        field(
            "void_after",
            ts_json(s.void_after()),
            format!("{} s UTC ({})", s.void_after(), utc(s.void_after())),
        ),
        labelled(
            "counter_frequency_hz",
            "counter_frequency",
            hz,
            match hz {
                Some(hz) => format!("{hz:.3} Hz ({:.6} GHz)", hz / 1e9),
                None => "none (period_frac 0)".to_owned(),
            },
        ),
        field(
            "period_frac",
            s.period_frac(),
            format!(
                "{} (period_shift {}: {} s per tick)",
                s.period_frac(),
                s.period_shift(),
                hz.map_or_else(|| "0".to_owned(), |hz| format!("{:.6e}", 1.0 / hz))
            ),
        ),
        json_only("period_shift", s.period_shift()),
        labelled(
            "period_err_ppb",
            "period_err",
            err_ppb,
            format!("{err_ppb:.3} ppb"),
        ),
        field(
            "period_err_frac",
            s.period_err_frac(),
            format!(
                "{} (period_err_shift {})",
                s.period_err_frac(),
                s.period_err_shift()
            ),
        ),
        json_only("period_err_shift", s.period_err_shift()),
        field(
            "bound_nsec",
            s.bound_nsec(),
            format!("{} ns", s.bound_nsec()),
        ),
        field(
            "disruption_marker",
            s.disruption_marker(),
            s.disruption_marker().to_string(),
        ),
        field(
            "max_drift_ppb",
            s.max_drift_ppb(),
            format!("{} ppb", s.max_drift_ppb()),
        ),
        field(
            "clock_status",
            status_json(s.clock_status()),
            format!("{:?} (as written)", s.clock_status()),
        ),
        field(
            "clock_disruption_support_enabled",
            s.clock_disruption_support_enabled(),
            s.clock_disruption_support_enabled().to_string(),
        ),
    ]
}

/// The window at this instant and how it was computed (`status`'s "now" section; `now`,
/// `watch` and `waitsync` pick from it).
fn window_fields(obs: &Observation) -> Vec<Field> {
    let w = &obs.window;
    let trust = if obs.vmclock.required_failure().is_some() {
        "the segment's own status: the VMClock check could not run"
    } else if obs.status.is_trusted() {
        "trusted"
    } else {
        "NOT trusted"
    };
    let mut fields = vec![
        json_only("path", obs.path.display().to_string()),
        json_only("layout", to_json(obs.layout)),
    ];
    match obs.clocks {
        ClockReadings::Layout3 {
            counter,
            ticks,
            realtime: real,
            ..
        } => {
            let offset = real.as_nanos() - w.midpoint().as_nanos();
            fields.extend([
                field(
                    "counter",
                    counter,
                    format!("{counter} ({ticks} ticks after as_of_tsc)"),
                ),
                labelled(
                    "age_ns",
                    "age",
                    clamp_i64(obs.age_ns),
                    format!(
                        "{} s (ticks since as_of_tsc x period)",
                        Timespec::from_nanos(obs.age_ns)
                    ),
                ),
                field(
                    "realtime",
                    ts_json(real),
                    format!("{real} s CLOCK_REALTIME (for comparison; not used)"),
                ),
                labelled(
                    "realtime_offset_ns",
                    "realtime_offset",
                    clamp_i64(offset),
                    format!(
                        "{} s (CLOCK_REALTIME - the window's midpoint, to about a microsecond)",
                        Timespec::from_nanos(offset)
                    ),
                ),
            ]);
        }
        ClockReadings::Layout2 {
            realtime: real,
            monotonic: mono,
            ..
        } => {
            fields.extend([
                field(
                    "realtime",
                    ts_json(real),
                    format!("{real} s CLOCK_REALTIME"),
                ),
                labelled(
                    "monotonic_coarse",
                    "monotonic",
                    ts_json(mono),
                    format!("{mono} s CLOCK_MONOTONIC_COARSE"),
                ),
                labelled(
                    "age_ns",
                    "age",
                    clamp_i64(obs.age_ns),
                    format!("{} s (monotonic - as_of)", Timespec::from_nanos(obs.age_ns)),
                ),
            ]);
        }
        // A layout newer than this CLI: no clocks to show.
        _ => {}
    }
    fields.extend([
        field("earliest", ts_json(w.earliest), format!("{} s", w.earliest)),
        field("latest", ts_json(w.latest), format!("{} s", w.latest)),
        labelled(
            "bound_ns",
            "bound",
            duration_ns(w.bound()),
            format!("{} ns", duration_ns(w.bound())),
        ),
        labelled(
            "clock_status",
            "status",
            status_json(obs.status),
            format!("{:?} ({trust})", obs.status),
        ),
        json_only("trusted", obs.trusted()),
    ]);
    fields
}

/// `2026-12-03T16:06:01.123456789Z` for a time on the UTC (`CLOCK_REALTIME`) scale.
fn utc(t: Timespec) -> String {
    let days = t.sec().div_euclid(86_400);
    let secs_of_day = t.sec().rem_euclid(86_400);
    // Days since 1970-01-01 to a proleptic Gregorian date, in 400-year eras of 146097 days
    // (the era starts on 0000-03-01, so the leap day is the era-year's last).
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        secs_of_day / 3_600,
        secs_of_day % 3_600 / 60,
        secs_of_day % 60,
        t.nsec()
    )
}

fn vmclock_section(obs: &Observation) -> Section {
    let section = |heading: String, fields| Section {
        key: "vmclock",
        heading,
        fields,
    };
    let not_read = |why: &str| section(format!("{:<36}not read ({why})", "vmclock"), None);
    match &obs.vmclock {
        VmClockCheck::Skipped => not_read(
            "--no-vmclock: the segment alone is trusted; a disruption is seen only once the \
             daemon notices it",
        ),
        VmClockCheck::NotNeeded => not_read(
            "the daemon runs without clock disruption support; --vmclock-path reads it anyway",
        ),
        VmClockCheck::Failed {
            path,
            error,
            applied,
        } => section(
            format!("vmclock {}", path.display()),
            Some(vec![
                json_only("path", path.display().to_string()),
                json_only("applied", *applied),
                field(
                    "check",
                    "failed",
                    if *applied {
                        "COULD NOT RUN: the segment asks for it (see the hint below)"
                    } else {
                        "could not run (not needed: the daemon runs without clock disruption \
                         support)"
                    },
                ),
                field("error", chain(error), chain(error)),
                json_only("kind", kind(error)),
                json_only("errno", error.errno()),
                json_only("hint", vmclock_hint(error)),
            ]),
        ),
        VmClockCheck::Read {
            path,
            page,
            applied,
        } => {
            let verdict = match (obs.markers_differ(), applied) {
                (Some(false), _) => "equal",
                (_, true) => {
                    "DIFFERENT: the clock was disrupted since the daemon's last update, status \
                     Disrupted"
                }
                (_, false) => {
                    "different (not applied: the daemon runs without clock disruption support)"
                }
            };
            let (sec, nsec) = vmclock_time(page);
            section(
                format!("vmclock {}", path.display()),
                Some(vec![
                    json_only("path", path.display().to_string()),
                    json_only("applied", *applied),
                    json_only("markers_differ", obs.markers_differ()),
                    field("seq_count", page.seq_count, page.seq_count.to_string()),
                    json_only("size", page.size),
                    json_only("version", page.version),
                    field(
                        "disruption_marker",
                        page.disruption_marker,
                        format!(
                            "{} (segment has {}: {verdict})",
                            page.disruption_marker,
                            obs.snapshot.disruption_marker()
                        ),
                    ),
                    field(
                        "clock_status",
                        format!("{:?}", page.clock_status),
                        format!("{:?}", page.clock_status),
                    ),
                    field("flags", page.flags, format!("{:#018x}", page.flags)),
                    json_only("time_type", page.time_type),
                    field(
                        "time",
                        json!({ "sec": sec, "nsec": nsec }),
                        format!("{sec}.{nsec:09} s (time_type {})", page.time_type),
                    ),
                    field(
                        "time_esterror_nanosec",
                        page.time_esterror_nanosec,
                        format!("{} ns", page.time_esterror_nanosec),
                    ),
                    field(
                        "time_maxerror_nanosec",
                        page.time_maxerror_nanosec,
                        format!("{} ns", page.time_maxerror_nanosec),
                    ),
                    field(
                        "tai_offset_sec",
                        page.tai_offset_sec,
                        format!("{} s", page.tai_offset_sec),
                    ),
                    field(
                        "leap_indicator",
                        page.leap_indicator,
                        page.leap_indicator.to_string(),
                    ),
                    json_only("leap_second_smearing_hint", page.leap_second_smearing_hint),
                    field("counter_id", page.counter_id, page.counter_id.to_string()),
                    field(
                        "counter_value",
                        page.counter_value,
                        page.counter_value.to_string(),
                    ),
                    field(
                        "counter_period_frac_sec",
                        page.counter_period_frac_sec,
                        format!(
                            "{} (counter_period_shift {})",
                            page.counter_period_frac_sec, page.counter_period_shift
                        ),
                    ),
                    json_only("counter_period_shift", page.counter_period_shift),
                ]),
            )
        }
        _ => not_read("a check this CLI does not know"),
    }
}

// ---------------------------------------------------------------------------------------
// waitsync
// ---------------------------------------------------------------------------------------

/// How often `waitsync` looks at the segment.
const WAITSYNC_POLL: Duration = Duration::from_millis(100);
/// How often `waitsync` says it is still waiting when nothing changes.
const WAITSYNC_PROGRESS: Duration = Duration::from_secs(5);

/// Waits for a Synchronized clock: exits 0 then, 4 on timeout, 3 at once on an error that
/// waiting cannot clear (a malformed segment, no permission, a VMClock page the segment
/// asks for that cannot be read, ...).
fn waitsync(cli: &Cli, timeout: Duration) -> ExitCode {
    let start = Instant::now();
    let mut session: Option<Session> = None;
    let mut last_state = String::new();
    let mut last_progress = start;
    loop {
        let attempt = match session.as_mut() {
            Some(s) => {
                s.prefer_shm1_once_valid(cli, "waitsync");
                s.observe()
            }
            None => Session::open(cli).and_then(|mut s| {
                let obs = s.observe();
                session = Some(s);
                obs
            }),
        };
        let (state, last_error) = match attempt {
            Ok(obs) => match obs.diagnosis.vmclock {
                VmClockCheck::Failed {
                    error,
                    applied: true,
                    ..
                } if !error.is_transient() => return fail(cli, &error),
                VmClockCheck::Failed {
                    error,
                    applied: true,
                    ..
                } => (
                    format!("VMClock check not possible yet: {}", chain(&error)),
                    Some(error),
                ),
                _ if obs.status == ClockStatus::Synchronized => {
                    let waited = start.elapsed();
                    eprintln!(
                        "waitsync: {} is Synchronized (waited {})",
                        obs.source(),
                        secs(waited)
                    );
                    if cli.json {
                        let mut v = pick_json(
                            &window_fields(&obs),
                            &[
                                "clock_status",
                                "trusted",
                                "bound_ns",
                                "earliest",
                                "latest",
                                "path",
                                "layout",
                            ],
                        );
                        v.insert("waited_ns".into(), json!(duration_ns(waited)));
                        emit(&Value::Object(v).to_string());
                    }
                    return ExitCode::from(EXIT_TRUSTED);
                }
                _ => (
                    format!("{} has clock status {:?}", obs.source(), obs.status),
                    None,
                ),
            },
            Err(e) if !e.is_transient() => return fail(cli, &e),
            Err(e) => (chain(&e), Some(e)),
        };
        let waited = start.elapsed();
        if state != last_state || last_progress.elapsed() >= WAITSYNC_PROGRESS {
            eprintln!("waitsync: waiting ({} so far): {state}", secs(waited));
            last_state = state;
            last_progress = Instant::now();
        }
        if waited >= timeout {
            let e = ShmError::Timeout {
                what: "waiting for a Synchronized clock",
                waited,
                last_error: last_error.map(Box::new),
            };
            return fail(cli, &e);
        }
        std::thread::sleep(WAITSYNC_POLL.min(timeout - waited));
    }
}

// ---------------------------------------------------------------------------------------
// simulate
// ---------------------------------------------------------------------------------------

/// What `simulate` writes, whatever the layout.
struct SimParams {
    status: ClockStatus,
    bound_ns: i64,
    max_drift_ppb: u32,
    interval: Duration,
    duration: Option<Duration>,
}

/// A segment `simulate` publishes to, one implementation per layout.
trait SimSegment {
    /// Publishes one update computed now.
    fn publish(&mut self, params: &SimParams) -> Result<(), ShmError>;
    /// The segment's generation after the last update.
    fn generation(&self) -> u16;
    /// What is written, for the start line.
    fn describe(&self) -> String;
}

/// Layout version 2, through the crate's writer.
struct SimV2(ShmWriter);

impl SimSegment for SimV2 {
    fn publish(&mut self, p: &SimParams) -> Result<(), ShmError> {
        let mono = timespec(clock_gettime(ClockId::MonotonicCoarse));
        // As the daemon does: the bound as of now, void 1000 s later, no disruption support.
        self.0.write(
            &ClockErrorBound::builder()
                .as_of(mono)
                .void_after(mono.saturating_add(Duration::from_secs(1000)))
                .bound_nsec(p.bound_ns)
                .max_drift_ppb(p.max_drift_ppb)
                .clock_status(p.status)
                .build(),
        );
        Ok(())
    }

    fn generation(&self) -> u16 {
        self.0.generation()
    }

    fn describe(&self) -> String {
        "layout 2 (shm0)".to_owned()
    }
}

/// How long `simulate --layout 3` measures the counter before its first update.
const SIM_CALIBRATION: Duration = Duration::from_millis(20);

/// A clock reading paired with the CPU counter: the clock read between two counter reads.
#[derive(Copy, Clone, Debug)]
struct CounterPair {
    /// Halfway between the two counter reads.
    counter: u64,
    clock: Timespec,
    /// Ticks between the two counter reads: the pairing is uncertain by half of it.
    width: u64,
}

/// The narrowest pairing of `clock` with the counter out of a few tries (a preemption
/// between the reads widens one); `None` without a counter.
fn counter_pair(clock: ClockId) -> Option<CounterPair> {
    let mut best: Option<CounterPair> = None;
    for _ in 0..5 {
        let before = clockbound_shm::cpu_counter()?;
        let t = timespec(clock_gettime(clock));
        let after = clockbound_shm::cpu_counter()?;
        // A counter that went backwards (another CPU's) pairs nothing.
        let Some(width) = after.checked_sub(before) else {
            continue;
        };
        let pair = CounterPair {
            counter: before + width / 2,
            clock: t,
            width,
        };
        if best.is_none_or(|b| pair.width < b.width) {
            best = Some(pair);
        }
    }
    best
}

/// Layout version 3, through the crate's writer: `as_of` is `CLOCK_REALTIME` at the counter
/// value `as_of_tsc`, the period is measured against `CLOCK_MONOTONIC` since the start (which
/// `CLOCK_REALTIME` follows, slewing included), and the period error is what that
/// measurement allows.
struct SimV3 {
    writer: ShmWriterV3,
    start: CounterPair,
    /// The counter frequency written last, Hz.
    hz: u64,
}

impl SimV3 {
    fn open(path: &Path) -> Result<SimV3, ShmError> {
        let unavailable = || ShmError::CounterUnavailable {
            arch: std::env::consts::ARCH,
        };
        let start = counter_pair(ClockId::Monotonic).ok_or_else(unavailable)?;
        let writer = ShmWriterV3::new(path)?;
        std::thread::sleep(SIM_CALIBRATION);
        Ok(SimV3 {
            writer,
            start,
            hz: 0,
        })
    }

    /// The counter's frequency (Hz, rounded to an integer as written) and a bound on the
    /// relative error of the period written, from the start of the simulation to now.
    fn measure(&self) -> Option<(u64, f64)> {
        let now = counter_pair(ClockId::Monotonic)?;
        let ticks = now.counter.checked_sub(self.start.counter)?;
        let ns = now.clock.as_nanos() - self.start.clock.as_nanos();
        if ticks == 0 || ns <= 0 {
            return None;
        }
        let hz = (ticks as f64 * 1e9 / ns as f64).round();
        if !(1.0..=u64::MAX as f64).contains(&hz) {
            return None;
        }
        // The ticks are uncertain by half of each pairing's width and a tick of resolution,
        // the nanoseconds by one of resolution, the written frequency by half a hertz of
        // rounding; twice all that.
        let tick_err = (self.start.width as f64 + now.width as f64) / 2.0 + 1.0;
        let err = 2.0 * (tick_err / ticks as f64 + 1.0 / ns as f64 + 0.5 / hz);
        Some((hz as u64, err.min(0.5)))
    }
}

impl SimSegment for SimV3 {
    fn publish(&mut self, p: &SimParams) -> Result<(), ShmError> {
        let unavailable = || ShmError::CounterUnavailable {
            arch: std::env::consts::ARCH,
        };
        let (hz, err) = self.measure().ok_or_else(unavailable)?;
        let at = counter_pair(ClockId::Realtime).ok_or_else(unavailable)?;
        // `as_of` belongs to a counter value known to half the pairing's width: that, in
        // nanoseconds and rounded up, is added to the bound.
        let pairing_ns = (at.width as f64 / 2.0 / hz as f64 * 1e9).ceil() as i64 + 1;
        self.hz = hz;
        self.writer.write(
            &ClockErrorBoundV3::builder()
                .as_of_tsc(at.counter)
                .as_of(at.clock)
                .void_after(at.clock.saturating_add(Duration::from_secs(1000)))
                .with_frequency_hz(hz)
                // Rounded up to whole ppb, scaled as the daemon scales it.
                .with_period_error_ppb((err * 1e9).ceil() as u64)
                .bound_nsec(p.bound_ns.saturating_add(pairing_ns))
                .max_drift_ppb(p.max_drift_ppb)
                .clock_status(p.status)
                .build(),
        );
        Ok(())
    }

    fn generation(&self) -> u16 {
        self.writer.generation()
    }

    fn describe(&self) -> String {
        format!(
            "layout 3 (shm1; CPU counter measured at {:.6} GHz)",
            self.hz as f64 / 1e9
        )
    }
}

fn open_sim_segment(layout: LayoutArg, path: &Path) -> Result<Box<dyn SimSegment>, ShmError> {
    Ok(match layout {
        LayoutArg::V2 => Box::new(SimV2(ShmWriter::new(path)?)),
        LayoutArg::V3 => Box::new(SimV3::open(path)?),
    })
}

/// The generation in the header of the file at `path`, if it has a ClockBound header.
fn header_generation(path: &Path) -> Option<u16> {
    let mut header = [0u8; 16];
    File::open(path).ok()?.read_exact(&mut header).ok()?;
    let magic = [
        u32::from_ne_bytes([header[0], header[1], header[2], header[3]]),
        u32::from_ne_bytes([header[4], header[5], header[6], header[7]]),
    ];
    (magic == clockbound_shm::layout::MAGIC).then(|| u16::from_ne_bytes([header[14], header[15]]))
}

/// Whether another writer (a daemon, another `simulate`) is updating `path`, whatever its
/// layout: its generation moves within a short look.
fn another_writer(path: &Path) -> bool {
    let Some(before) = header_generation(path) else {
        return false;
    };
    std::thread::sleep(Duration::from_millis(250));
    header_generation(path).is_some_and(|now| now != before)
}

fn simulate(cli: &Cli, path: &Path, layout: LayoutArg, params: &SimParams) -> ExitCode {
    if params.bound_ns < 0 || params.max_drift_ppb >= 1_000_000_000 {
        Cli::command()
            .error(
                ErrorKind::ValueValidation,
                "--bound-ns must be 0 or more and --max-drift-ppb below 1000000000",
            )
            .exit();
    }
    if another_writer(path) {
        eprintln!(
            "clockbound-shm: {} is being updated by another writer (a ClockBound daemon, or \
             another simulate): not writing to it",
            path.display()
        );
        eprintln!("hint: pass another --path, or stop the other writer first.");
        return ExitCode::from(EXIT_UNREADABLE);
    }
    let mut segment = match open_sim_segment(layout, path) {
        Ok(segment) => segment,
        Err(e) => return fail(cli, &e),
    };
    let stop = stop_on_ctrl_c("simulate");
    let start = Instant::now();
    let mut updates = 0u64;
    loop {
        if let Err(e) = segment.publish(params) {
            return fail(cli, &e);
        }
        updates += 1;
        if updates == 1 {
            let until = match params.duration {
                Some(d) => format!("for {}", secs(d)),
                None => "until Ctrl-C".to_owned(),
            };
            eprintln!(
                "simulate: writing {} to {}: status {:?}, bound {} ns, drift {} ppb, every {} \
                 ms, {until}. Try `clockbound-shm status --path {}` in another shell.",
                segment.describe(),
                path.display(),
                params.status,
                params.bound_ns,
                params.max_drift_ppb,
                params.interval.as_millis(),
                path.display()
            );
            if cli.json {
                emit(
                    &json!({
                        "event": "started",
                        "path": path.display().to_string(),
                        "generation": segment.generation(),
                        "clock_status": status_json(params.status),
                    })
                    .to_string(),
                );
            }
        }
        let next = start
            + params
                .interval
                .saturating_mul(u32::try_from(updates).unwrap_or(u32::MAX));
        let end = params.duration.map(|d| start + d);
        // Sleep in slices, so that Ctrl-C and the end of --duration are noticed promptly.
        loop {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) || end.is_some_and(|end| now >= end) {
                eprintln!(
                    "simulate: stopped after {updates} updates; {} stays as last written \
                     (its status degrades as it ages)",
                    path.display()
                );
                if cli.json {
                    emit(&json!({ "event": "stopped", "updates": updates }).to_string());
                }
                return ExitCode::from(EXIT_TRUSTED);
            }
            if now >= next {
                break;
            }
            let mut slice = (next - now).min(Duration::from_millis(50));
            if let Some(end) = end {
                slice = slice.min(end - now);
            }
            std::thread::sleep(slice);
        }
    }
}
