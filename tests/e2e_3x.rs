//! End-to-end tests against the real ClockBound 3.0.0-rc.0 daemon (`clock-bound`, NTP to a
//! chronyd through a relay, in a private network namespace), as `e2e/run.sh 3x` sets it up
//! Feature `e2e-v3`.
//!
//! The 3.x daemon writes shm1 (layout 3) and, for 2.x clients, shm0 (layout 2) together,
//! once per 16 s here, and wipes shm0 on every start. Without the setup
//! (`CLOCKBOUND_E2E_SETUP` unset) every test says it is skipped and passes.
//!
//! The layout 3 reader API it uses is gathered in the `v3` module below.

#![cfg(feature = "e2e-v3")]

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use clockbound_shm::{
    ClockStatus, ReaderOptions, SharedClockBound, ShmReader, Strategy, TimeWindow,
};
use clockbound_shm::{ShmError, Timespec};

const SHM0: &str = "/var/run/clockbound/shm0";
const SHM1: &str = "/var/run/clockbound/shm1";
/// The released 3.x client's and our layout 3 windows for one snapshot, computed a moment
/// apart: the bound grows by about 0.1 µs per ms here (drift and period error).
const WIDTH_TOLERANCE_NS: i128 = 5_000;
/// A restarted 3.x daemon is Synchronized 16-32 s later, sometimes after a missed poll.
const RESYNC: Duration = Duration::from_secs(180);

/// The announced layout 3 API, in one place.
mod v3 {
    pub use clockbound_shm::LayoutVersion;
    use clockbound_shm::{ShmError, ShmReaderV3, TimeWindow};

    pub type Reader = ShmReaderV3;

    pub fn open(path: &str) -> Result<Reader, ShmError> {
        ShmReaderV3::open(path)
    }

    /// The window and `as_of` of the snapshot it came from (ns since the epoch).
    pub fn now_and_as_of(r: &mut Reader) -> Result<(TimeWindow, i128), ShmError> {
        let w = r.now()?;
        Ok((w, r.snapshot()?.as_of().as_nanos()))
    }
}

static SERIAL: Mutex<()> = Mutex::new(());

struct Setup {
    script: String,
    _serial: MutexGuard<'static, ()>,
}

fn setup() -> Option<Setup> {
    let serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let Ok(script) = std::env::var("CLOCKBOUND_E2E_SETUP") else {
        eprintln!(
            "skipped: no ClockBound 3.x daemon set up (CLOCKBOUND_E2E_SETUP unset); \
             run `sudo bash e2e/run.sh 3x`"
        );
        return None;
    };
    let setup = Setup {
        script,
        _serial: serial,
    };
    setup.ctl("ensure");
    Some(setup)
}

impl Setup {
    fn ctl(&self, command: &str) {
        let status = Command::new("bash")
            .args([&self.script, command])
            .status()
            .expect("run the setup script");
        assert!(status.success(), "setup script {command} failed: {status}");
    }
}

fn width_ns(w: &TimeWindow) -> i128 {
    w.latest.as_nanos() - w.earliest.as_nanos()
}

fn from_nix(t: &clock_bound::nix::sys::time::TimeSpec) -> Timespec {
    Timespec::new(t.tv_sec(), t.tv_nsec())
}

fn theirs_now(client: &mut clock_bound::Client) -> TimeWindow {
    let w = client.now().expect("released 3.x client: now");
    TimeWindow {
        earliest: from_nix(&w.earliest),
        latest: from_nix(&w.latest),
        clock_status: match w.clock_status {
            clock_bound::ClockStatus::Unknown => ClockStatus::Unknown,
            clock_bound::ClockStatus::Synchronized => ClockStatus::Synchronized,
            clock_bound::ClockStatus::FreeRunning => ClockStatus::FreeRunning,
            clock_bound::ClockStatus::Disrupted => ClockStatus::Disrupted,
        },
    }
}

#[test]
fn layout3_reader_agrees_with_the_released_client() {
    let Some(_setup) = setup() else { return };
    let mut ours = v3::open(SHM1).expect("layout 3 reader opens shm1");
    let mut theirs = clock_bound::Client::new_with_paths(SHM1, "/dev/vmclock0")
        .expect("released client opens shm1");
    let mut compared = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while compared < 100 {
        assert!(Instant::now() < deadline, "only {compared} comparisons");
        thread::sleep(Duration::from_millis(10));
        let generation = ours.generation();
        // Both orders: the window computed first can end no later than true time at the
        // second call, so `first.earliest <= second.latest` must hold.
        let a = theirs_now(&mut theirs);
        let b = ours.now().expect("layout 3 now");
        let c = theirs_now(&mut theirs);
        if ours.generation() != generation {
            continue; // the daemon wrote in between
        }
        for (first, second) in [(&a, &b), (&b, &c)] {
            assert!(first.earliest <= second.latest, "{first:?} then {second:?}");
        }
        for theirs in [&a, &c] {
            assert_eq!(b.clock_status, theirs.clock_status, "{b:?} vs {theirs:?}");
            let diff = width_ns(&b) - width_ns(theirs);
            assert!(diff.abs() <= WIDTH_TOLERANCE_NS, "{b:?} vs {theirs:?}");
        }
        compared += 1;
    }
}

#[test]
fn open_default_picks_layout_3() {
    let Some(_setup) = setup() else { return };
    let clock = SharedClockBound::open_default().expect("open_default");
    assert_eq!(clock.layout(), v3::LayoutVersion::V3);
    assert_eq!(
        clock.now().expect("now").clock_status,
        ClockStatus::Synchronized
    );
}

#[test]
fn shm0_stays_synchronized_between_the_daemons_writes() {
    let Some(_setup) = setup() else { return };
    // Default grace (60 s, as the 3.x clients) and the 2.0.3 client's 5 s, side by side:
    // each must label every window by the age of its snapshot, nothing else.
    let grace_default = Duration::from_secs(60);
    let grace_short = Duration::from_secs(5);
    let mut default: ShmReader =
        ShmReader::open_with(SHM0, &ReaderOptions::new()).expect("open shm0");
    let mut short: ShmReader =
        ShmReader::open_with(SHM0, &ReaderOptions::new().free_running_grace(grace_short))
            .expect("open shm0");
    let (mut synchronized, mut free_running, mut writes) = (0, 0, 0);
    let mut last_as_of = None;
    let end = Instant::now() + Duration::from_secs(40);
    while Instant::now() < end {
        for (reader, grace) in [(&mut default, grace_default), (&mut short, grace_short)] {
            let w = reader.now().expect("now");
            let snapshot = *reader.snapshot().expect("snapshot");
            let age = monotonic_coarse()
                .duration_since(snapshot.as_of())
                .unwrap_or_default();
            // A margin either side of the grace for the time between the two reads.
            if age + Duration::from_millis(50) < grace {
                assert_eq!(w.clock_status, ClockStatus::Synchronized, "age {age:?}");
            } else if age > grace + Duration::from_millis(50) {
                assert_eq!(w.clock_status, ClockStatus::FreeRunning, "age {age:?}");
            }
            if grace == grace_default {
                match w.clock_status {
                    ClockStatus::Synchronized => synchronized += 1,
                    _ => free_running += 1,
                }
                if last_as_of.is_some_and(|t| t != snapshot.as_of()) {
                    writes += 1;
                }
                last_as_of = Some(snapshot.as_of());
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    eprintln!("40 s of shm0: {writes} writes, {synchronized} Synchronized, {free_running} other");
}

fn monotonic_coarse() -> Timespec {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Timespec::new(t.tv_sec, t.tv_nsec)
}

/// A reader thread: `now()` until `stop`; keeps the newest `as_of` of a snapshot that gave a
/// Synchronized window.
struct ReaderThread {
    name: String,
    synced_as_of: Arc<AtomicI64>,
    errors: Arc<AtomicU64>,
    handle: thread::JoinHandle<()>,
}

fn spawn<R>(
    name: &str,
    stop: &Arc<AtomicBool>,
    make: impl FnOnce() -> R + Send + 'static,
) -> ReaderThread
where
    R: FnMut() -> Result<(TimeWindow, i128), ShmError>,
{
    let synced_as_of = Arc::new(AtomicI64::new(i64::MIN));
    let errors = Arc::new(AtomicU64::new(0));
    let (stop, s, e) = (
        Arc::clone(stop),
        Arc::clone(&synced_as_of),
        Arc::clone(&errors),
    );
    let handle = thread::spawn(move || {
        let mut read = make();
        while !stop.load(Ordering::Relaxed) {
            match read() {
                Ok((w, as_of)) if w.clock_status == ClockStatus::Synchronized => {
                    s.fetch_max(as_of as i64, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => {
                    e.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(1));
                }
            }
        }
    });
    ReaderThread {
        name: name.to_owned(),
        synced_as_of,
        errors,
        handle,
    }
}

#[test]
fn reader_process_survives_daemon_restarts() {
    let Some(setup) = setup() else { return };
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = vec![
        spawn("ShmReader<Layout3> shm1", &stop, || {
            let mut r = v3::open(SHM1).expect("open shm1");
            move || v3::now_and_as_of(&mut r)
        }),
        spawn("ShmReader shm0", &stop, || {
            let mut r: ShmReader = ShmReader::open(SHM0).expect("open shm0");
            move || {
                let w = r.now()?;
                Ok((w, r.snapshot()?.as_of().as_nanos()))
            }
        }),
    ];
    let shm1 = SharedClockBound::open_default().expect("open_default");
    threads.push(spawn("SharedClockBound shm1", &stop, move || {
        move || {
            let w = shm1.now()?;
            Ok((w, shm1.snapshot()?.as_of().as_nanos()))
        }
    }));
    for strategy in [Strategy::ThreadLocal, Strategy::ArcSwap] {
        let clock = SharedClockBound::open_with(SHM0, &ReaderOptions::new().strategy(strategy))
            .expect("open shm0");
        threads.push(spawn(&format!("{strategy:?} shm0"), &stop, move || {
            move || {
                let w = clock.now()?;
                Ok((w, clock.snapshot()?.as_of().as_nanos()))
            }
        }));
    }
    for round in 0..3 {
        // Newest as_of per thread before the restart: each must see a newer one after.
        let before: Vec<i64> = threads
            .iter()
            .map(|t| t.synced_as_of.load(Ordering::Relaxed))
            .collect();
        setup.ctl("daemon-restart");
        let start = Instant::now();
        while threads
            .iter()
            .zip(&before)
            .any(|(t, b)| t.synced_as_of.load(Ordering::Relaxed) <= *b)
        {
            let stuck: Vec<&str> = threads
                .iter()
                .zip(&before)
                .filter(|(t, b)| t.synced_as_of.load(Ordering::Relaxed) <= **b)
                .map(|(t, _)| t.name.as_str())
                .collect();
            assert!(
                start.elapsed() < RESYNC,
                "round {round}: not resumed: {stuck:?}"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads.drain(..) {
        let errors = t.errors.load(Ordering::Relaxed);
        t.handle
            .join()
            .unwrap_or_else(|_| panic!("{} panicked", t.name));
        eprintln!("{}: {errors} errors during the restarts", t.name);
    }
}
