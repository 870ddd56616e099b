//! End-to-end tests against the real ClockBound 2.0.3 daemon (`clock-bound-d`, synchronised
//! to a chronyd on loopback), as `e2e/run.sh 2x` sets it up. Feature `e2e`.
//!
//! The setup script is passed in `CLOCKBOUND_E2E_SETUP`; the tests call it to restart the
//! daemon, run it in another mode or make it crash-loop, and signal the daemon's PID from
//! `CLOCKBOUND_E2E_PIDFILE`. Without those variables (e.g. `cargo test --all-features` on a
//! machine without the setup) every test says it is skipped and passes.
//!
//! The tests share one daemon, so they run one at a time (a lock), and each leaves the
//! daemon running in its plain mode (`-d`), Synchronized.

#![cfg(feature = "e2e")]

use std::ffi::CStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use clockbound_shm::{
    AnySnapshot, ClockErrorBound, ClockStatus, DisruptionCheck, ReaderOptions, SharedClockBound,
    ShmError, ShmReader, Strategy, TimeWindow, Timespec,
};
use nix::sys::time::{TimeSpec, TimeValLike as _};
use rustix::time::{ClockId, clock_gettime};

const SHM0: &str = "/var/run/clockbound/shm0";
const SHM0_C: &CStr = c"/var/run/clockbound/shm0";
const CLI: &str = env!("CARGO_BIN_EXE_clockbound-shm");

/// Two windows computed from the same snapshot a few microseconds apart differ in width
/// only by the drift over that time (1 ppm here): far below a microsecond. The margin is
/// for a preempted test thread.
const WIDTH_TOLERANCE_NS: i128 = 5_000;

static SERIAL: Mutex<()> = Mutex::new(());

/// The daemon setup, held by one test at a time.
struct Setup {
    script: PathBuf,
    pidfile: PathBuf,
    vmclock: PathBuf,
    _serial: MutexGuard<'static, ()>,
}

/// The setup, or `None` (with a message) when this machine has none.
fn setup() -> Option<Setup> {
    let serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
    let Some(script) = var("CLOCKBOUND_E2E_SETUP") else {
        eprintln!(
            "skipped: no ClockBound 2.x daemon set up (CLOCKBOUND_E2E_SETUP unset); \
             run `sudo bash e2e/run.sh 2x`"
        );
        return None;
    };
    let setup = Setup {
        script,
        pidfile: var("CLOCKBOUND_E2E_PIDFILE").expect("CLOCKBOUND_E2E_PIDFILE"),
        vmclock: var("CLOCKBOUND_E2E_VMCLOCK").expect("CLOCKBOUND_E2E_VMCLOCK"),
        _serial: serial,
    };
    // Whatever an earlier (failed) test left behind: the plain daemon, Synchronized.
    setup.ctl(&["ensure"]);
    Some(setup)
}

impl Setup {
    /// Runs the setup script with `args`; panics if it fails.
    fn ctl(&self, args: &[&str]) {
        let status = Command::new("bash")
            .arg(&self.script)
            .args(args)
            .status()
            .expect("run the setup script");
        assert!(status.success(), "setup script {args:?} failed: {status}");
    }

    /// Sends `signal` (e.g. "USR1") to the daemon.
    fn signal(&self, signal: &str) {
        let pid = std::fs::read_to_string(&self.pidfile).expect("daemon PID file");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.trim())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Reader options that check the VMClock page the daemon sees in its disruption mode.
    fn vmclock_options(&self) -> ReaderOptions {
        ReaderOptions::new().disruption_check(DisruptionCheck::WhenEnabled {
            vmclock_path: self.vmclock.clone(),
        })
    }
}

/// Puts the plain daemon back when dropped, also when the test failed half-way.
struct BackToPlain<'a>(&'a Setup);

impl Drop for BackToPlain<'_> {
    fn drop(&mut self) {
        self.0.ctl(&["daemon-restart", "plain"]);
    }
}

fn realtime() -> Timespec {
    let t = clock_gettime(ClockId::Realtime);
    Timespec::new(t.tv_sec, t.tv_nsec)
}

fn monotonic_coarse() -> Timespec {
    let t = clock_gettime(ClockId::MonotonicCoarse);
    Timespec::new(t.tv_sec, t.tv_nsec)
}

fn width_ns(w: &TimeWindow) -> i128 {
    w.latest.as_nanos() - w.earliest.as_nanos()
}

/// Polls `done` every 20 ms until it is true; panics with `what` after `timeout`.
fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Our snapshot, in the released crate's type, to compare with its reader's.
fn to_upstream(ceb: &ClockErrorBound) -> upstream::ClockErrorBound {
    let ts = |t: Timespec| TimeSpec::nanoseconds(t.as_nanos() as i64);
    upstream::ClockErrorBound::new(
        ts(ceb.as_of()),
        ts(ceb.void_after()),
        ceb.bound_nsec(),
        ceb.disruption_marker(),
        ceb.max_drift_ppb(),
        match ceb.clock_status() {
            ClockStatus::Unknown => upstream::ClockStatus::Unknown,
            ClockStatus::Synchronized => upstream::ClockStatus::Synchronized,
            ClockStatus::FreeRunning => upstream::ClockStatus::FreeRunning,
            ClockStatus::Disrupted => upstream::ClockStatus::Disrupted,
        },
        ceb.clock_disruption_support_enabled(),
    )
}

/// The released reader's window, in our type.
fn upstream_now(reader: &mut upstream::ShmReader) -> TimeWindow {
    let (earliest, latest, status) = reader
        .snapshot()
        .expect("released reader: snapshot")
        .now()
        .expect("released reader: now");
    TimeWindow {
        earliest: Timespec::new(earliest.tv_sec(), earliest.tv_nsec()),
        latest: Timespec::new(latest.tv_sec(), latest.tv_nsec()),
        clock_status: match status {
            upstream::ClockStatus::Unknown => ClockStatus::Unknown,
            upstream::ClockStatus::Synchronized => ClockStatus::Synchronized,
            upstream::ClockStatus::FreeRunning => ClockStatus::FreeRunning,
            upstream::ClockStatus::Disrupted => ClockStatus::Disrupted,
        },
    }
}

fn open_upstream() -> upstream::ShmReader {
    upstream::ShmReader::new(SHM0_C).expect("released reader opens shm0")
}

/// Every kind of reader this crate has, on shm0 with `options`.
struct OurReaders {
    plain: ShmReader,
    thread_local: SharedClockBound,
    arc_swap: SharedClockBound,
}

impl OurReaders {
    fn open(options: &ReaderOptions) -> OurReaders {
        OurReaders {
            plain: ShmReader::open_with(SHM0, options).expect("ShmReader opens shm0"),
            thread_local: SharedClockBound::open_with(
                SHM0,
                &options.clone().strategy(Strategy::ThreadLocal),
            )
            .expect("SharedClockBound (ThreadLocal) opens shm0"),
            arc_swap: SharedClockBound::open_with(
                SHM0,
                &options.clone().strategy(Strategy::ArcSwap),
            )
            .expect("SharedClockBound (ArcSwap) opens shm0"),
        }
    }

    /// The three windows, named.
    fn now(&mut self) -> [(&'static str, TimeWindow); 3] {
        [
            ("ShmReader", self.plain.now().expect("ShmReader::now")),
            (
                "ThreadLocal",
                self.thread_local.now().expect("ThreadLocal now"),
            ),
            ("ArcSwap", self.arc_swap.now().expect("ArcSwap now")),
        ]
    }
}

#[test]
fn every_reader_agrees_with_the_released_reader_on_the_same_snapshot() {
    let Some(_setup) = setup() else { return };
    let mut ours = OurReaders::open(&ReaderOptions::new());
    let mut theirs = open_upstream();

    let mut compared = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while compared < 100 {
        assert!(
            Instant::now() < deadline,
            "only {compared} comparisons in 20 s: the daemon rewrote the segment during \
             nearly every one"
        );
        thread::sleep(Duration::from_millis(7));
        let before = *theirs.snapshot().expect("released reader: snapshot");
        let upstream_window = upstream_now(&mut theirs);
        let windows = ours.now();
        let snapshots = [
            ours.plain.snapshot().copied(),
            ours.thread_local.snapshot().map(layout2),
            ours.arc_swap.snapshot().map(layout2),
        ];
        let after = *theirs.snapshot().expect("released reader: snapshot");
        if before != after {
            continue; // the daemon wrote in between: not the same snapshot
        }
        if snapshots
            .iter()
            .any(|s| to_upstream(s.as_ref().expect("snapshot")) != before)
        {
            continue; // ours were taken a moment before or after a write
        }
        for (name, window) in &windows {
            assert_eq!(
                window.clock_status, upstream_window.clock_status,
                "{name} and the released reader disagree on the status of {before:?}"
            );
            let diff = width_ns(window) - width_ns(&upstream_window);
            assert!(
                diff.abs() <= WIDTH_TOLERANCE_NS,
                "{name}: window {window:?} is {diff} ns wider than the released reader's \
                 {upstream_window:?} for {before:?}"
            );
            assert!(window.earliest <= window.latest, "{name}: {window:?}");
        }
        assert_eq!(
            upstream_window.clock_status,
            ClockStatus::Synchronized,
            "a daemon synchronised to chronyd"
        );
        compared += 1;
    }
    eprintln!("compared {compared} snapshots, all four readers agree");
}

fn run_cli(args: &[&str]) -> Output {
    Command::new(CLI)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run clockbound-shm")
}

/// `SEC.NSEC` as the CLI prints it.
fn parse_ts(s: &str) -> Timespec {
    let (sec, nsec) = s.split_once('.').expect("SEC.NSEC");
    Timespec::new(sec.parse().unwrap(), nsec.parse().unwrap())
}

#[test]
fn cli_reads_the_daemon() {
    let Some(_setup) = setup() else { return };

    // `now`: a window around the real time of the call.
    let before = realtime();
    let out = run_cli(&["now"]);
    let after = realtime();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "now: {out:?}");
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "now printed {text:?}");
    let (earliest, latest) = (parse_ts(fields[0]), parse_ts(fields[1]));
    assert_eq!(fields[2], "Synchronized", "now printed {text:?}");
    assert!(earliest <= latest, "{text:?}");
    assert!(
        earliest <= after && latest >= before,
        "now printed {text:?}, not around the call [{before:?}, {after:?}]"
    );

    // `now --json`
    let out = run_cli(&["now", "--json"]);
    assert_eq!(out.status.code(), Some(0), "now --json: {out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(json["clock_status"], "Synchronized", "{json}");
    assert_eq!(json["trusted"], true, "{json}");

    // `status`
    let out = run_cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "status: {out:?}");
    assert!(
        text.contains("Synchronized"),
        "status does not say Synchronized: {text}"
    );

    // `waitsync`, where the CLI has it.
    let help = run_cli(&["--help"]);
    if String::from_utf8_lossy(&help.stdout).contains("waitsync") {
        let out = run_cli(&["waitsync"]);
        assert_eq!(out.status.code(), Some(0), "waitsync: {out:?}");
    } else {
        eprintln!("skipped the waitsync check: this CLI has no `waitsync` command");
    }
}

#[test]
fn disrupted_on_sigusr1_and_back_on_sigusr2() {
    let Some(setup) = setup() else { return };
    // SIGUSR1 forces Disrupted only with disruption support on, which needs a VMClock page.
    setup.ctl(&["daemon-restart", "disruption"]);
    let _back = BackToPlain(&setup);

    let mut ours = OurReaders::open(&setup.vmclock_options());
    let mut theirs = open_upstream();
    assert!(
        ours.plain
            .snapshot()
            .expect("snapshot")
            .clock_disruption_support_enabled(),
        "the daemon runs with disruption support"
    );
    let all_say = |ours: &mut OurReaders, theirs: &mut upstream::ShmReader, want| {
        ours.now().iter().all(|(_, w)| w.clock_status == want)
            && upstream_now(theirs).clock_status == want
    };
    wait_until(
        Duration::from_secs(10),
        "Synchronized before the signal",
        || all_say(&mut ours, &mut theirs, ClockStatus::Synchronized),
    );

    setup.signal("USR1");
    wait_until(Duration::from_secs(10), "Disrupted after SIGUSR1", || {
        all_say(&mut ours, &mut theirs, ClockStatus::Disrupted)
    });
    let vmclock = setup.vmclock.to_str().unwrap();
    let out = run_cli(&["now", "--vmclock-path", vmclock]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "untrusted exits with 1: {out:?}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Disrupted"));

    setup.signal("USR2");
    wait_until(
        Duration::from_secs(20),
        "Synchronized after SIGUSR2",
        || all_say(&mut ours, &mut theirs, ClockStatus::Synchronized),
    );
}

/// Sends SIGCONT to the daemon when dropped (a test that stopped it may have failed).
struct ContinueDaemon<'a>(&'a Setup);

impl Drop for ContinueDaemon<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

/// Writes `marker` into the VMClock page as the hypervisor would: `seq_count` odd, the
/// marker, `seq_count` even again.
fn set_vmclock_marker(page: &std::path::Path, marker: u64) {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(page)
        .expect("open the VMClock page");
    let mut seq = [0u8; 4];
    file.read_exact_at(&mut seq, 12).expect("read seq_count");
    let seq = u32::from_le_bytes(seq);
    let even = seq.wrapping_add(2) & !1;
    file.write_all_at(&(even | 1).to_le_bytes(), 12).unwrap();
    file.write_all_at(&marker.to_le_bytes(), 16).unwrap();
    file.write_all_at(&even.to_le_bytes(), 12).unwrap();
}

#[test]
fn vmclock_marker_change_is_disrupted_until_the_daemon_catches_up() {
    let Some(setup) = setup() else { return };
    setup.ctl(&["daemon-restart", "disruption"]);
    let _back = BackToPlain(&setup);
    let mut ours = OurReaders::open(&setup.vmclock_options());
    wait_until(Duration::from_secs(10), "Synchronized at first", || {
        ours.now()
            .iter()
            .all(|(_, w)| w.clock_status == ClockStatus::Synchronized)
    });

    // A live migration the daemon has not seen yet: the daemon is frozen, so the segment
    // still carries the old marker and says Synchronized.
    setup.signal("STOP");
    let cont = ContinueDaemon(&setup);
    set_vmclock_marker(&setup.vmclock, 1);
    for (name, w) in ours.now() {
        assert_eq!(
            w.clock_status,
            ClockStatus::Disrupted,
            "{name}: the VMClock marker moved on, the segment's did not"
        );
    }
    drop(cont);

    // The daemon notices, adopts the new marker and synchronises again.
    wait_until(
        Duration::from_secs(30),
        "Synchronized with the new marker",
        || {
            let windows = ours.now();
            ours.plain.snapshot().expect("snapshot").disruption_marker() == 1
                && windows
                    .iter()
                    .all(|(_, w)| w.clock_status == ClockStatus::Synchronized)
        },
    );
}

/// What one reader thread saw.
#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
    /// Trusted windows lying wholly before an earlier trusted window of the same thread.
    anomalies: AtomicU64,
    /// `as_of` (ns, CLOCK_MONOTONIC_COARSE) of the newest snapshot a Synchronized window came
    /// from, sampled every few hundred calls.
    synced_as_of: AtomicI64,
}

impl Tally {
    fn error(&self, e: &ShmError) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 5 {
            self.first_errors.lock().unwrap().push(e.to_string());
        }
    }
}

/// A reader thread: `now()` as fast as it can until `stop`, tallying what it saw.
/// `read` returns the window and, when asked (`true`), the snapshot's `as_of`.
fn spawn_reader<R: FnMut(bool) -> Result<(TimeWindow, Option<Timespec>), ShmError>>(
    name: &str,
    stop: &Arc<AtomicBool>,
    make: impl FnOnce() -> R + Send + 'static,
) -> (String, Arc<Tally>, thread::JoinHandle<()>) {
    let tally = Arc::new(Tally::default());
    let (stop, t) = (Arc::clone(stop), Arc::clone(&tally));
    let handle = thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let mut read = make();
            let mut last_trusted: Option<TimeWindow> = None;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let sample = i % 256 == 0;
                match read(sample) {
                    Ok((w, as_of)) => {
                        if w.clock_status.is_trusted() {
                            if last_trusted.is_some_and(|prev| w.latest < prev.earliest) {
                                t.anomalies.fetch_add(1, Ordering::Relaxed);
                            }
                            last_trusted = Some(w);
                        }
                        if let (ClockStatus::Synchronized, Some(as_of)) = (w.clock_status, as_of) {
                            t.synced_as_of
                                .fetch_max(as_of.as_nanos() as i64, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        t.error(&e);
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                t.calls.fetch_add(1, Ordering::Relaxed);
            }
        })
        .expect("spawn reader thread");
    (name.to_owned(), tally, handle)
}

/// Reader threads of every kind on shm0: ShmReader; SharedClockBound ThreadLocal and
/// ArcSwap, two threads each on one handle; and, if `reopen`, a thread that opens a fresh
/// ShmReader for every few calls (and so maps whatever file the path names at the time).
struct ReaderThreads {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, Arc<Tally>, thread::JoinHandle<()>)>,
}

impl ReaderThreads {
    fn start(reopen: bool) -> ReaderThreads {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = vec![spawn_reader("ShmReader", &stop, || {
            let mut r = ShmReader::open(SHM0).expect("open ShmReader");
            move |sample| {
                let w = r.now()?;
                Ok((
                    w,
                    if sample {
                        Some(r.snapshot()?.as_of())
                    } else {
                        None
                    },
                ))
            }
        })];
        for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
            let clock = SharedClockBound::open_with(SHM0, &ReaderOptions::new().strategy(strategy))
                .expect("open shared");
            for i in 0..2 {
                let clock = clock.clone();
                threads.push(spawn_reader(
                    &format!("{strategy:?}#{i}"),
                    &stop,
                    move || {
                        move |sample| {
                            let w = clock.now()?;
                            Ok((
                                w,
                                if sample {
                                    Some(clock.snapshot()?.as_of())
                                } else {
                                    None
                                },
                            ))
                        }
                    },
                ));
            }
        }
        if reopen {
            threads.push(spawn_reader("fresh ShmReader", &stop, || {
                move |_| {
                    let mut r = ShmReader::open(SHM0)?;
                    let w = r.now()?;
                    Ok((w, Some(r.snapshot()?.as_of())))
                }
            }));
        }
        ReaderThreads { stop, threads }
    }

    /// Waits until every thread has seen a Synchronized window from a snapshot taken at or
    /// after `since` (CLOCK_MONOTONIC_COARSE).
    fn wait_synced_since(&self, since: Timespec, timeout: Duration) {
        wait_until(timeout, "every reader back to Synchronized", || {
            self.threads.iter().all(|(_, t, _)| {
                i128::from(t.synced_as_of.load(Ordering::Relaxed)) >= since.as_nanos()
            })
        });
    }

    /// Stops the threads; returns (name, calls, errors, first errors, anomalies) per thread.
    fn stop(self) -> Vec<(String, u64, u64, Vec<String>, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|(name, t, h)| {
                h.join()
                    .unwrap_or_else(|_| panic!("reader thread {name} panicked"));
                let errors = t.first_errors.lock().unwrap().clone();
                (
                    name,
                    t.calls.load(Ordering::Relaxed),
                    t.errors.load(Ordering::Relaxed),
                    errors,
                    t.anomalies.load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

#[test]
fn daemon_restarts_while_readers_run() {
    let Some(setup) = setup() else { return };
    let readers = ReaderThreads::start(false);
    readers.wait_synced_since(Timespec::new(0, 0), Duration::from_secs(10));
    for _ in 0..3 {
        setup.ctl(&["daemon-restart", "plain"]);
        readers.wait_synced_since(monotonic_coarse(), Duration::from_secs(15));
    }
    for (name, calls, errors, first, anomalies) in readers.stop() {
        eprintln!("{name}: {calls} calls, {errors} errors {first:?}, {anomalies} anomalies");
        // A restarted 2.x daemon reuses the valid segment: readers never see it invalid.
        assert_eq!(errors, 0, "{name}: {first:?}");
        assert_eq!(anomalies, 0, "{name}: a window went back in time");
        assert!(calls > 0, "{name} never ran");
    }
}

#[test]
fn reader_process_survives_a_crash_looping_daemon() {
    let Some(setup) = setup() else { return };
    let readers = ReaderThreads::start(true);
    readers.wait_synced_since(Timespec::new(0, 0), Duration::from_secs(10));
    // Removes shm0 (as after a reboot: /var/run is a tmpfs), then starts the daemon with
    // disruption support and no VMClock device eight times: each start recreates the
    // segment with a truncating create, then panics.
    setup.ctl(&["daemon-stop"]);
    setup.ctl(&["crash-loop", "8"]);
    setup.ctl(&["daemon-restart", "plain"]);
    readers.wait_synced_since(monotonic_coarse(), Duration::from_secs(30));
    for (name, calls, errors, first, anomalies) in readers.stop() {
        // Errors are expected while there is no usable segment; surviving, and coming back
        // once there is one, is the point.
        eprintln!("{name}: {calls} calls, {errors} errors {first:?}, {anomalies} anomalies");
        assert_eq!(anomalies, 0, "{name}: a window went back in time");
    }
}

#[test]
fn default_reader_needs_no_vmclock_device_when_support_is_off() {
    // With disruption support off the segment says so, and a reader with default options
    // opens without a VMClock device (this machine has none).
    let Some(_setup) = setup() else { return };
    let mut reader = ShmReader::open(SHM0).expect("default options, no /dev/vmclock0");
    let snapshot = reader.snapshot().expect("snapshot");
    assert!(!snapshot.clock_disruption_support_enabled());
    assert_eq!(
        reader.now().expect("now").clock_status,
        ClockStatus::Synchronized
    );
}

/// The layout 2 snapshot inside `snapshot` (a 2.x daemon writes nothing else).
fn layout2(snapshot: AnySnapshot) -> ClockErrorBound {
    match snapshot {
        AnySnapshot::V2(s) => s,
        other => panic!("a 2.x daemon's shm0 read as {other:?}"),
    }
}
