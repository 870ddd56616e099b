//! `clockbound-shm`: look at the ClockBound daemon's shared-memory segment from a shell.
//!
//! Built with the `cli` feature. `status` shows everything in the segment, `now` prints one
//! window for scripts, `watch` prints a line per update. Exit codes: 0 the clock is trusted
//! (Synchronized or FreeRunning), 1 it is not (Unknown or Disrupted), 2 the segment (or a
//! VMClock page that had to be read) cannot be read; clap's usage errors also exit with 2.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use clockbound_shm::{
    CLOCKBOUND_SHM_DEFAULT_PATH, ClockErrorBound, ClockStatus, DisruptionCheck, ReaderOptions,
    SegmentHeader, ShmError, ShmReader, TimeWindow, Timespec, VMCLOCK_DEFAULT_PATH, VmClockReader,
    VmClockSnapshot,
};
use rustix::time::{ClockId, clock_gettime};
use serde_json::{Value, json};

/// Inspect the AWS ClockBound daemon's shared-memory segment.
///
/// Exit status: 0 when the clock is trusted (Synchronized or FreeRunning), 1 when it is not
/// (Unknown or Disrupted), 2 when the segment (or a VMClock page that had to be read)
/// cannot be read.
#[derive(Parser, Debug)]
#[command(name = "clockbound-shm", version)]
struct Cli {
    /// The daemon's segment file.
    #[arg(long, global = true, value_name = "FILE", default_value = CLOCKBOUND_SHM_DEFAULT_PATH)]
    path: PathBuf,

    /// The VMClock device. Read when given, and whenever the segment says the daemon runs
    /// with clock disruption support (then /dev/vmclock0 unless given).
    #[arg(long, global = true, value_name = "FILE")]
    vmclock_path: Option<PathBuf>,

    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the header, every snapshot field, the window for now, its status and age.
    Status,
    /// Print one window: `EARLIEST LATEST STATUS` (seconds.nanoseconds, CLOCK_REALTIME).
    Now,
    /// Print a line whenever the generation or the status changes, until Ctrl-C.
    Watch {
        /// Exit after this many lines (the first line, the state at start, counts).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// How often to look at the segment, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 10)]
        interval_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut session = match Session::open(&cli) {
        Ok(session) => session,
        Err(e) => return fail(&cli, &e),
    };
    let result = match &cli.command {
        Command::Status => session.status(&cli),
        Command::Now => session.now(&cli),
        Command::Watch { count, interval_ms } => {
            session.watch(&cli, *count, Duration::from_millis(*interval_ms))
        }
    };
    result.unwrap_or_else(|e| fail(&cli, &e))
}

/// The exit code for a window's status.
fn exit_for(status: ClockStatus) -> ExitCode {
    if status.is_trusted() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Reports `e` (on stderr, and as a JSON object on stdout with `--json`) and exits with 2.
fn fail(cli: &Cli, e: &ShmError) -> ExitCode {
    let hint = hint(e);
    eprintln!("clockbound-shm: {e}");
    if !hint.is_empty() {
        eprintln!("hint: {hint}");
    }
    if cli.json {
        let errno = e.errno();
        emit(
            &json!({
                "error": e.to_string(),
                "kind": kind(e),
                "errno": errno,
                "hint": hint,
            })
            .to_string(),
        );
    }
    ExitCode::from(2)
}

/// What to do about `e`.
fn hint(e: &ShmError) -> String {
    match e {
        ShmError::Io { path, source, .. } => match source.kind() {
            io::ErrorKind::NotFound => format!(
                "Is the ClockBound daemon running? It creates {} when it starts. If it writes \
                 its segment elsewhere, pass --path.",
                path.display()
            ),
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
             not written a snapshot yet: try again in a few seconds. If this persists, check \
             the daemon's logs."
            .to_owned(),
        ShmError::SegmentMalformed { .. } | ShmError::SegmentVersionNotSupported { .. } => {
            "This is not a ClockBound 2.x segment (layout version 2): check --path and the \
             daemon's version, then restart the daemon to have it rewrite the segment."
                .to_owned()
        }
        ShmError::CausalityBreach { .. } => "The snapshot's as_of is ahead of this host's \
             monotonic clock: it was written on another boot or by a broken writer. Restart \
             the daemon."
            .to_owned(),
        ShmError::VmClockIo { path, source, .. } => match source.kind() {
            io::ErrorKind::NotFound => format!(
                "There is no VMClock device at {}: the guest kernel needs its vmclock driver \
                 and a hypervisor that offers VMClock. The segment's \
                 clock_disruption_support_enabled flag (or --vmclock-path) asked for it; if \
                 the flag is wrong, run the daemon without clock disruption support.",
                path.display()
            ),
            io::ErrorKind::PermissionDenied => format!(
                "This user may not read {}: check the device's permissions (or the udev rule \
                 that sets them).",
                path.display()
            ),
            _ => format!(
                "Check that {} is the VMClock device (--vmclock-path).",
                path.display()
            ),
        },
        ShmError::VmClockMalformed { .. } => {
            "This is not a VMClock page this tool reads: check --vmclock-path.".to_owned()
        }
        ShmError::VmClockNotReady { .. } => {
            "The hypervisor is updating the VMClock page: try again.".to_owned()
        }
        _ => String::new(),
    }
}

/// A short machine-readable name for `e`, for `--json`.
fn kind(e: &ShmError) -> &'static str {
    match e {
        ShmError::Io { .. } => "io",
        ShmError::SegmentNotInitialized { .. } => "not_initialized",
        ShmError::SegmentMalformed { .. } => "malformed",
        ShmError::SegmentVersionNotSupported { .. } => "version_not_supported",
        ShmError::CausalityBreach { .. } => "causality_breach",
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

/// `CLOCK_REALTIME` then `CLOCK_MONOTONIC_COARSE`, in the order the bound arithmetic wants.
fn read_clocks() -> (Timespec, Timespec) {
    let real = clock_gettime(ClockId::Realtime);
    let mono = clock_gettime(ClockId::MonotonicCoarse);
    #[allow(clippy::useless_conversion)] // `tv_nsec` is `i64` on 64-bit targets only.
    let ts = |t: rustix::time::Timespec| Timespec::new(t.tv_sec, i64::from(t.tv_nsec));
    (ts(real), ts(mono))
}

/// What the VMClock check found.
enum VmCheck {
    /// Not read: the daemon has no disruption support and `--vmclock-path` was not given.
    NotRead,
    /// Read; `applied` when the segment's flag makes a marker mismatch count.
    Read {
        page: VmClockSnapshot,
        applied: bool,
    },
}

/// Everything one look at the segment found.
struct Observation {
    header: SegmentHeader,
    snapshot: ClockErrorBound,
    /// The generation of the snapshot.
    generation: u16,
    real: Timespec,
    mono: Timespec,
    window: TimeWindow,
    /// `mono - as_of`, nanoseconds (slightly negative within the coarse clock's blur).
    age_ns: i128,
    vmclock: VmCheck,
    /// The window's status, Disrupted when the VMClock marker says so.
    status: ClockStatus,
}

impl Observation {
    fn markers_differ(&self) -> Option<bool> {
        match &self.vmclock {
            VmCheck::NotRead => None,
            VmCheck::Read { page, .. } => {
                Some(page.disruption_marker != self.snapshot.disruption_marker())
            }
        }
    }
}

/// The open segment and, once needed, the VMClock page.
struct Session {
    reader: ShmReader,
    vmclock: Option<VmClockReader>,
}

impl Session {
    fn open(cli: &Cli) -> Result<Session, ShmError> {
        Ok(Session {
            // The command reads the VMClock page itself (to show it, and to explain a
            // Disrupted status), so the reader's own check is off.
            reader: ShmReader::open_with(
                &cli.path,
                &ReaderOptions::new().disruption_check(DisruptionCheck::Off),
            )?,
            vmclock: None,
        })
    }

    /// One look: the segment's snapshot, the window at this instant, the VMClock check.
    fn observe(&mut self, cli: &Cli) -> Result<Observation, ShmError> {
        // `now()` runs the reader's self-healing checks (full re-read of an old snapshot,
        // a segment recreated on disk); the window is then computed from the same snapshot
        // and clock readings that the age is, so the numbers shown agree with each other.
        self.reader.now()?;
        let snapshot = *self.reader.snapshot()?;
        let generation = self.reader.generation();
        let header = self.reader.header();
        let (real, mono) = read_clocks();
        let window = snapshot.compute_bound_at(real, mono)?;
        let age_ns = mono.as_nanos() - snapshot.as_of().as_nanos();
        let applied = snapshot.clock_disruption_support_enabled();
        let vmclock = if applied || cli.vmclock_path.is_some() {
            let page = self.vmclock_page(cli)?;
            VmCheck::Read { page, applied }
        } else {
            VmCheck::NotRead
        };
        let mut status = window.clock_status;
        if let VmCheck::Read {
            page,
            applied: true,
        } = &vmclock
        {
            if page.disruption_marker != snapshot.disruption_marker() {
                status = ClockStatus::Disrupted;
            }
        }
        Ok(Observation {
            header,
            snapshot,
            generation,
            real,
            mono,
            window,
            age_ns,
            vmclock,
            status,
        })
    }

    fn vmclock_page(&mut self, cli: &Cli) -> Result<VmClockSnapshot, ShmError> {
        let reader = match &mut self.vmclock {
            Some(reader) => reader,
            None => {
                let path = cli
                    .vmclock_path
                    .as_deref()
                    .unwrap_or(Path::new(VMCLOCK_DEFAULT_PATH));
                self.vmclock.insert(VmClockReader::open(path)?)
            }
        };
        reader.snapshot()
    }

    fn status(&mut self, cli: &Cli) -> Result<ExitCode, ShmError> {
        let obs = self.observe(cli)?;
        if cli.json {
            emit(&status_json(&obs, self).to_string());
        } else {
            for line in status_text(&obs, self) {
                if !emit(&line) {
                    break;
                }
            }
        }
        Ok(exit_for(obs.status))
    }

    fn now(&mut self, cli: &Cli) -> Result<ExitCode, ShmError> {
        let obs = self.observe(cli)?;
        let line = if cli.json {
            json!({
                "earliest": ts_json(obs.window.earliest),
                "latest": ts_json(obs.window.latest),
                "bound_ns": duration_ns(obs.window.bound()),
                "clock_status": format!("{:?}", obs.status),
                "trusted": obs.status.is_trusted(),
            })
            .to_string()
        } else {
            format!(
                "{} {} {:?}",
                obs.window.earliest, obs.window.latest, obs.status
            )
        };
        emit(&line);
        Ok(exit_for(obs.status))
    }

    fn watch(
        &mut self,
        cli: &Cli,
        count: Option<u64>,
        interval: Duration,
    ) -> Result<ExitCode, ShmError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)) {
            eprintln!("clockbound-shm: warning: cannot handle Ctrl-C ({e}); it will kill watch");
        }
        let mut last = None;
        let mut lines = 0u64;
        let mut code = ExitCode::SUCCESS;
        while !stop.load(Ordering::Relaxed) && count.is_none_or(|n| lines < n) {
            let obs = self.observe(cli)?;
            if last != Some((obs.generation, obs.status)) {
                last = Some((obs.generation, obs.status));
                lines += 1;
                code = exit_for(obs.status);
                if !emit(&watch_line(cli, &obs)) {
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

fn watch_line(cli: &Cli, obs: &Observation) -> String {
    if cli.json {
        json!({
            "generation": obs.generation,
            "clock_status": format!("{:?}", obs.status),
            "trusted": obs.status.is_trusted(),
            "bound_ns": duration_ns(obs.window.bound()),
            "age_ns": clamp_i64(obs.age_ns),
            "earliest": ts_json(obs.window.earliest),
            "latest": ts_json(obs.window.latest),
        })
        .to_string()
    } else {
        format!(
            "generation {:>5}  status {:<12}  bound {:>12} ns  age {} s",
            obs.generation,
            format!("{:?}", obs.status),
            duration_ns(obs.window.bound()),
            Timespec::from_nanos(obs.age_ns)
        )
    }
}

fn ts_json(t: Timespec) -> Value {
    json!({ "sec": t.sec(), "nsec": t.nsec() })
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// The time a VMClock page carries, as seconds and nanoseconds (the fraction is in 2^-64 s).
fn vmclock_time(page: &VmClockSnapshot) -> (u64, u64) {
    let nanos = (u128::from(page.time_frac_sec) * 1_000_000_000) >> 64;
    (page.time_sec, nanos as u64)
}

fn status_json(obs: &Observation, session: &Session) -> Value {
    let s = &obs.snapshot;
    let h = &obs.header;
    let vmclock = match &obs.vmclock {
        VmCheck::NotRead => Value::Null,
        VmCheck::Read { page, applied } => {
            let (sec, nsec) = vmclock_time(page);
            json!({
                "path": session.vmclock.as_ref().map(|r| r.path().display().to_string()),
                "applied": applied,
                "markers_differ": obs.markers_differ(),
                "seq_count": page.seq_count,
                "size": page.size,
                "version": page.version,
                "disruption_marker": page.disruption_marker,
                "clock_status": format!("{:?}", page.clock_status),
                "flags": page.flags,
                "counter_id": page.counter_id,
                "time_type": page.time_type,
                "time": { "sec": sec, "nsec": nsec },
                "time_esterror_nanosec": page.time_esterror_nanosec,
                "time_maxerror_nanosec": page.time_maxerror_nanosec,
                "tai_offset_sec": page.tai_offset_sec,
                "leap_indicator": page.leap_indicator,
                "leap_second_smearing_hint": page.leap_second_smearing_hint,
                "counter_value": page.counter_value,
                "counter_period_frac_sec": page.counter_period_frac_sec,
                "counter_period_shift": page.counter_period_shift,
            })
        }
    };
    json!({
        "path": session.reader.path().display().to_string(),
        "header": {
            "magic": [h.magic[0], h.magic[1]],
            "magic_ok": h.magic_ok(),
            "segsize": h.segsize,
            "version": h.version,
            "generation": h.generation,
        },
        "snapshot": {
            "generation": obs.generation,
            "as_of": ts_json(s.as_of()),
            "void_after": ts_json(s.void_after()),
            "bound_nsec": s.bound_nsec(),
            "disruption_marker": s.disruption_marker(),
            "max_drift_ppb": s.max_drift_ppb(),
            "clock_status": format!("{:?}", s.clock_status()),
            "clock_disruption_support_enabled": s.clock_disruption_support_enabled(),
        },
        "now": {
            "realtime": ts_json(obs.real),
            "monotonic_coarse": ts_json(obs.mono),
            "age_ns": clamp_i64(obs.age_ns),
            "earliest": ts_json(obs.window.earliest),
            "latest": ts_json(obs.window.latest),
            "bound_ns": duration_ns(obs.window.bound()),
            "clock_status": format!("{:?}", obs.status),
            "trusted": obs.status.is_trusted(),
        },
        "vmclock": vmclock,
    })
}

fn status_text(obs: &Observation, session: &Session) -> Vec<String> {
    let s = &obs.snapshot;
    let h = &obs.header;
    let row = |name: &str, value: String| format!("  {name:<34}{value}");
    let mut out = vec![format!("segment {}", session.reader.path().display())];
    out.push(row(
        "magic",
        format!(
            "{:#010x} {:#010x} ({})",
            h.magic[0],
            h.magic[1],
            if h.magic_ok() { "ClockBound" } else { "WRONG" }
        ),
    ));
    out.push(row("segsize", format!("{} bytes", h.segsize)));
    out.push(row("version", h.version.to_string()));
    out.push(row(
        "generation",
        format!("{} (snapshot read at {})", h.generation, obs.generation),
    ));
    out.push("snapshot".to_owned());
    out.push(row(
        "as_of",
        format!("{} s CLOCK_MONOTONIC_COARSE", s.as_of()),
    ));
    out.push(row(
        "void_after",
        format!("{} s CLOCK_MONOTONIC_COARSE", s.void_after()),
    ));
    out.push(row("bound_nsec", format!("{} ns", s.bound_nsec())));
    out.push(row("disruption_marker", s.disruption_marker().to_string()));
    out.push(row("max_drift_ppb", format!("{} ppb", s.max_drift_ppb())));
    out.push(row(
        "clock_status",
        format!("{:?} (as written)", s.clock_status()),
    ));
    out.push(row(
        "clock_disruption_support_enabled",
        s.clock_disruption_support_enabled().to_string(),
    ));
    out.push("now".to_owned());
    out.push(row("realtime", format!("{} s CLOCK_REALTIME", obs.real)));
    out.push(row(
        "monotonic",
        format!("{} s CLOCK_MONOTONIC_COARSE", obs.mono),
    ));
    out.push(row(
        "age",
        format!("{} s (monotonic - as_of)", Timespec::from_nanos(obs.age_ns)),
    ));
    out.push(row("earliest", format!("{} s", obs.window.earliest)));
    out.push(row("latest", format!("{} s", obs.window.latest)));
    out.push(row(
        "bound",
        format!("{} ns", duration_ns(obs.window.bound())),
    ));
    out.push(row(
        "status",
        format!(
            "{:?} ({})",
            obs.status,
            if obs.status.is_trusted() {
                "trusted"
            } else {
                "NOT trusted"
            }
        ),
    ));
    match &obs.vmclock {
        VmCheck::NotRead => out.push(format!(
            "{:<36}not read (the daemon runs without clock disruption support; \
             --vmclock-path reads it anyway)",
            "vmclock"
        )),
        VmCheck::Read { page, applied } => {
            let path = session
                .vmclock
                .as_ref()
                .map(|r| r.path().display().to_string())
                .unwrap_or_default();
            out.push(format!("vmclock {path}"));
            out.push(row("seq_count", page.seq_count.to_string()));
            let verdict = match (obs.markers_differ(), applied) {
                (Some(false), _) => "equal".to_owned(),
                (_, true) => "DIFFERENT: the clock was disrupted since the daemon's last \
                              update, status Disrupted"
                    .to_owned(),
                (_, false) => "different (not applied: the daemon runs without clock \
                               disruption support)"
                    .to_owned(),
            };
            out.push(row(
                "disruption_marker",
                format!(
                    "{} (segment has {}: {verdict})",
                    page.disruption_marker,
                    s.disruption_marker()
                ),
            ));
            out.push(row("clock_status", format!("{:?}", page.clock_status)));
            out.push(row("flags", format!("{:#018x}", page.flags)));
            let (sec, nsec) = vmclock_time(page);
            out.push(row(
                "time",
                format!("{sec}.{nsec:09} s (time_type {})", page.time_type),
            ));
            out.push(row(
                "time_esterror_nanosec",
                format!("{} ns", page.time_esterror_nanosec),
            ));
            out.push(row(
                "time_maxerror_nanosec",
                format!("{} ns", page.time_maxerror_nanosec),
            ));
            out.push(row("tai_offset_sec", format!("{} s", page.tai_offset_sec)));
            out.push(row("leap_indicator", page.leap_indicator.to_string()));
            out.push(row("counter_id", page.counter_id.to_string()));
            out.push(row("counter_value", page.counter_value.to_string()));
            out.push(row(
                "counter_period_frac_sec",
                format!(
                    "{} (counter_period_shift {})",
                    page.counter_period_frac_sec, page.counter_period_shift
                ),
            ));
        }
    }
    out
}
