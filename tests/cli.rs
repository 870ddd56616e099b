//! The `clockbound-shm` binary against segments written by `ShmWriter`.
//!
//! Run with `cargo test --features cli --test cli`.
#![cfg(all(feature = "cli", feature = "writer"))]

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use clockbound_shm::{ClockErrorBound, ClockStatus, ShmWriter, Timespec};
use rustix::time::{ClockId, clock_gettime};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_clockbound-shm");
const TIMEOUT: Duration = Duration::from_secs(20);

/// A snapshot taken now: bound 5 µs, drift 1000 ppb, void after 1000 s.
fn bound(status: ClockStatus, marker: u64, disruption_support: bool) -> ClockErrorBound {
    common::fresh_bound(5_000, marker, status, disruption_support)
}

fn segment(dir: &tempfile::TempDir, ceb: &ClockErrorBound) -> (PathBuf, ShmWriter) {
    let path = dir.path().join("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(ceb);
    (path, writer)
}

/// A VMClock page (version 1, seq_count 2) with `marker`, at the offsets of the protocol (`docs::protocol`).
fn vmclock_page(dir: &tempfile::TempDir, marker: u64) -> PathBuf {
    let mut b = vec![0u8; 104];
    b[0..4].copy_from_slice(&0x4B4C_4356u32.to_le_bytes());
    b[4..8].copy_from_slice(&104u32.to_le_bytes());
    b[8..10].copy_from_slice(&1u16.to_le_bytes());
    b[12..16].copy_from_slice(&2u32.to_le_bytes());
    b[16..24].copy_from_slice(&marker.to_le_bytes());
    b[34] = 2; // Synchronized
    let path = dir.path().join("vmclock0");
    fs::write(&path, b).unwrap();
    path
}

/// Runs the binary to completion (bounded in time) with `args`.
fn run(args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child)
}

/// Waits for `child` at most [`TIMEOUT`], killing it and failing the test after that.
fn wait_output(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(TIMEOUT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("clockbound-shm did not exit within {TIMEOUT:?}");
        }
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed by a signal")
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn status_text_shows_every_field_with_units() {
    let dir = tempfile::tempdir().unwrap();
    let (path, writer) = segment(&dir, &bound(ClockStatus::Synchronized, 7, false));
    let out = run(&["status", "--path", p(&path)]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    for expected in [
        "magic",
        "0x414d5a4e 0x43420200 (ClockBound)",
        "80 bytes",
        "version                           2",
        &format!("generation                        {}", writer.generation()),
        "as_of",
        "void_after",
        "s CLOCK_MONOTONIC_COARSE",
        "5000 ns",
        "disruption_marker                 7",
        "1000 ppb",
        "Synchronized (as written)",
        "clock_disruption_support_enabled  false",
        "age",
        "(monotonic - as_of)",
        "earliest",
        "latest",
        "Synchronized (trusted)",
        "vmclock",
        "not read",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

#[test]
fn status_json_is_one_parseable_object() {
    let dir = tempfile::tempdir().unwrap();
    let (path, writer) = segment(&dir, &bound(ClockStatus::Synchronized, 7, false));
    // Flags may come before the subcommand too.
    let out = run(&["--json", "--path", p(&path), "status"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    let v = &lines[0];
    assert_eq!(v["header"]["magic_ok"], true);
    assert_eq!(v["header"]["segsize"], 80);
    assert_eq!(v["header"]["version"], 2);
    assert_eq!(v["header"]["generation"], writer.generation());
    assert_eq!(v["snapshot"]["bound_nsec"], 5000);
    assert_eq!(v["snapshot"]["max_drift_ppb"], 1000);
    assert_eq!(v["snapshot"]["disruption_marker"], 7);
    assert_eq!(v["snapshot"]["clock_status"], "Synchronized");
    assert_eq!(v["now"]["clock_status"], "Synchronized");
    assert_eq!(v["now"]["trusted"], true);
    let age = v["now"]["age_ns"].as_i64().unwrap();
    assert!((-1_000..10_000_000_000).contains(&age), "age {age}");
    let bound_ns = v["now"]["bound_ns"].as_u64().unwrap();
    assert!(bound_ns >= 5_000, "bound {bound_ns}");
    assert!(v["vmclock"].is_null());
}

#[test]
fn now_prints_one_window() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _writer) = segment(&dir, &bound(ClockStatus::FreeRunning, 0, false));
    let out = run(&["now", "--path", p(&path)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{text}");
    let earliest: f64 = fields[0].parse().unwrap();
    let latest: f64 = fields[1].parse().unwrap();
    assert!(earliest < latest, "{text}");
    assert!(earliest > 1.0e9, "CLOCK_REALTIME seconds: {text}");
    assert_eq!(fields[2], "FreeRunning");

    let out = run(&["now", "--json", "--path", p(&path)]);
    assert_eq!(code(&out), 0);
    let v = &json_lines(&out)[0];
    assert_eq!(v["clock_status"], "FreeRunning");
    assert_eq!(v["trusted"], true);
    assert!(v["earliest"]["sec"].as_i64().unwrap() <= v["latest"]["sec"].as_i64().unwrap());
}

#[test]
fn untrusted_status_exits_with_1() {
    let dir = tempfile::tempdir().unwrap();
    for status in [ClockStatus::Unknown, ClockStatus::Disrupted] {
        let (path, _writer) = segment(&dir, &bound(status, 0, false));
        for cmd in ["status", "now"] {
            let out = run(&[cmd, "--path", p(&path)]);
            assert_eq!(code(&out), 1, "{cmd} with {status:?}: {}", stdout(&out));
            assert!(stdout(&out).contains(&format!("{status:?}")));
        }
    }
}

#[test]
fn missing_segment_exits_with_3_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere").join("shm0");
    let out = run(&["status", "--path", p(&path)]);
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(err.contains(p(&path)), "{err}");
    assert!(err.contains("daemon running"), "{err}");
    // The OS error once, on the error line.
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    // Where the daemon writes, for both major versions, and how to check on it; not the
    // path the user passed again, nor "the daemon creates it".
    let hint = err.lines().find(|l| l.starts_with("hint:")).unwrap();
    assert!(
        hint.contains("/var/run/clockbound/shm0 (layout 2, ClockBound 2.x and 3.x"),
        "{hint}"
    );
    assert!(
        hint.contains("/var/run/clockbound/shm1 (layout 3, 3.x only)"),
        "{hint}"
    );
    assert!(hint.contains("systemctl status clockbound"), "{hint}");
    assert!(!hint.contains(p(&path)), "{hint}");
    assert!(!hint.contains("creates"), "{hint}");
    // The directory is missing too: say what that means.
    assert!(hint.contains("does not exist"), "{hint}");
    assert!(stdout(&out).is_empty());

    let out = run(&["now", "--json", "--path", p(&path)]);
    assert_eq!(code(&out), 3);
    let v = &json_lines(&out)[0];
    assert_eq!(v["kind"], "io");
    assert_eq!(v["errno"], 2); // ENOENT
    assert!(v["hint"].as_str().unwrap().contains("--path"));
}

#[test]
fn bad_or_unready_segments_exit_with_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    let mut garbage = [0u8; 80];
    garbage[..8].copy_from_slice(b"not a cb");
    fs::write(&path, garbage).unwrap();
    let out = run(&["now", "--path", p(&path)]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("magic"), "{}", stderr(&out));

    fs::write(&path, []).unwrap();
    let out = run(&["status", "--path", p(&path)]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("try again"), "{}", stderr(&out));
}

#[test]
fn watch_prints_a_line_per_update() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut writer) = segment(&dir, &bound(ClockStatus::Synchronized, 0, false));
    let first = writer.generation();
    let stop = Arc::new(AtomicBool::new(false));
    let updater = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(30));
                writer.write(&bound(ClockStatus::Synchronized, 0, false));
            }
        })
    };
    let text = run(&["watch", "--count", "2", "--path", p(&path)]);
    let json = run(&["watch", "--count", "3", "--json", "--path", p(&path)]);
    stop.store(true, Ordering::Relaxed);
    updater.join().unwrap();

    assert_eq!(code(&text), 0, "{}", stderr(&text));
    let lines: Vec<String> = stdout(&text).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let generations: Vec<u16> = lines
        .iter()
        .map(|l| {
            assert!(l.contains("Synchronized") && l.contains(" ns") && l.contains("age"));
            l.split_whitespace().nth(1).unwrap().parse().unwrap()
        })
        .collect();
    assert!(generations[0] >= first);
    assert!(generations[1] > generations[0], "{lines:?}");

    assert_eq!(code(&json), 0, "{}", stderr(&json));
    let lines = json_lines(&json);
    assert_eq!(lines.len(), 3);
    for pair in lines.windows(2) {
        assert!(pair[1]["generation"].as_u64() > pair[0]["generation"].as_u64());
    }
    assert!(lines.iter().all(|v| v["clock_status"] == "Synchronized"));
}

#[test]
fn watch_exits_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _writer) = segment(&dir, &bound(ClockStatus::Synchronized, 0, false));
    let mut child = Command::new(BIN)
        .args(["watch", "--path", p(&path)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first line comes after the handler is installed.
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("generation"), "{first}");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = wait_output(child);
    let status: ExitStatus = out.status;
    assert_eq!(status.code(), Some(0), "killed by a signal? {status:?}");
}

#[test]
fn vmclock_marker_is_checked_when_the_daemon_supports_it() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _writer) = segment(&dir, &bound(ClockStatus::Synchronized, 42, true));

    // Same marker: trusted, and status shows the page.
    let same = vmclock_page(&dir, 42);
    let out = run(&["status", "--path", p(&path), "--vmclock-path", p(&same)]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("segment has 42: equal"), "{text}");
    assert!(text.contains("seq_count"), "{text}");

    // Different marker: the clock was disrupted after the daemon's last update.
    let moved = vmclock_page(&dir, 43);
    let out = run(&["now", "--path", p(&path), "--vmclock-path", p(&moved)]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stdout(&out).trim_end().ends_with("Disrupted"));
    let out = run(&[
        "status",
        "--json",
        "--path",
        p(&path),
        "--vmclock-path",
        p(&moved),
    ]);
    assert_eq!(code(&out), 1);
    let v = &json_lines(&out)[0];
    assert_eq!(v["vmclock"]["disruption_marker"], 43);
    assert_eq!(v["vmclock"]["markers_differ"], true);
    assert_eq!(v["now"]["clock_status"], "Disrupted");

    // The flag is set and the device is missing: the window still shows, the check's
    // failure is said on stderr, exit 3.
    let missing = dir.path().join("no-vmclock");
    let out = run(&["now", "--path", p(&path), "--vmclock-path", p(&missing)]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("VMClock"), "{}", stderr(&out));
    assert!(
        stdout(&out).trim_end().ends_with("Synchronized"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn vmclock_marker_is_shown_but_not_applied_without_daemon_support() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _writer) = segment(&dir, &bound(ClockStatus::Synchronized, 0, false));
    let page = vmclock_page(&dir, 5);
    let out = run(&["status", "--path", p(&path), "--vmclock-path", p(&page)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("not applied"), "{}", stdout(&out));
}

/// A child whose stdout is read line by line; killed (and the test failed) if it outlives
/// [`TIMEOUT`].
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn spawn(args: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The next stdout line, failing the test after [`TIMEOUT`].
    fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = self.child.kill();
                panic!("no line from clockbound-shm within {TIMEOUT:?}");
            }
        }
    }

    /// Lines until one satisfies `done`, which is returned last.
    fn lines_until(&mut self, done: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self.next_line();
            let stop = done(&line);
            seen.push(line);
            if stop {
                return seen;
            }
        }
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit.
    fn interrupt(self) -> Output {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        wait_output(self.child)
    }
}

/// A writer thread publishing `status` every `period` until `stop` is set.
fn keep_writing(
    mut writer: ShmWriter,
    status: ClockStatus,
    period: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<ShmWriter> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            writer.write(&bound(status, 0, false));
            std::thread::sleep(period);
        }
        writer
    })
}

#[test]
fn usage_errors_exit_with_2_and_help_lists_every_exit_code() {
    for args in [
        &["bogus"][..],
        &["status", "--no-such-option"],
        &["watch", "--interval-ms", "soon"],
        &["watch", "--interval-ms", "0"],
        &[
            "simulate",
            "--path",
            "/nonexistent/shm0",
            "--interval-ms",
            "0",
        ],
        &["status", "--no-vmclock", "--vmclock-path", "/x"],
        // simulate never writes the daemon's default path unless told to.
        &["simulate"],
    ] {
        let out = run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
    }
    let help = run(&["--help"]);
    assert_eq!(code(&help), 0);
    let text = stdout(&help);
    assert!(text.contains("Exit status:"), "{text}");
    for line in [
        "0  the clock is trusted",
        "1  the clock is not trusted",
        "2  usage error",
        "3  the segment cannot be read",
        "4  waitsync: timed out",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    for command in ["status", "now", "watch", "waitsync", "simulate"] {
        assert!(text.contains(command), "{command} not in\n{text}");
    }
}

#[test]
fn an_unreadable_vmclock_shows_the_segment_and_says_the_check_could_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("vmclock0");
    // The segment itself says Disrupted: that must show even though the page is missing.
    let (path, _writer) = segment(&dir, &bound(ClockStatus::Disrupted, 3, true));
    let args = |cmd: &'static str| vec![cmd, "--path", p(&path), "--vmclock-path", p(&missing)];

    let out = run(&args("status"));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Disrupted (as written)"), "{text}");
    assert!(text.contains("bound_nsec"), "{text}");
    assert!(text.contains("COULD NOT RUN"), "{text}");
    let err = stderr(&out);
    assert!(
        err.contains("VMClock disruption check could not run"),
        "{err}"
    );
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(err.contains("--no-vmclock"), "{err}");
    assert!(err.contains("read access"), "{err}");
    assert!(err.contains("mount /dev/vmclock0"), "{err}");
    // The library's remedy names its API; the CLI names its flag.
    assert!(!err.contains("DisruptionCheck"), "{err}");

    let out = run(&args("now"));
    assert_eq!(code(&out), 3);
    assert!(
        stdout(&out).trim_end().ends_with("Disrupted"),
        "{}",
        stdout(&out)
    );

    let mut json = args("status");
    json.push("--json");
    let out = run(&json);
    assert_eq!(code(&out), 3);
    let v = &json_lines(&out)[0];
    assert_eq!(v["vmclock_check"], "failed");
    assert_eq!(v["vmclock"]["applied"], true);
    assert_eq!(v["vmclock"]["kind"], "vmclock_io");
    assert_eq!(v["vmclock"]["errno"], 2);
    assert_eq!(v["snapshot"]["clock_status"], "Disrupted");
    assert_eq!(v["now"]["trusted"], false);

    // --no-vmclock: the segment alone decides (Disrupted: 1).
    let out = run(&["status", "--no-vmclock", "--path", p(&path)]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("not read (--no-vmclock"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));

    // A Synchronized segment: exit 3 with the check failing, 0 once it is skipped.
    let (path, _writer) = segment(&dir, &bound(ClockStatus::Synchronized, 3, true));
    let out = run(&["now", "--path", p(&path), "--vmclock-path", p(&missing)]);
    assert_eq!(code(&out), 3);
    let out = run(&["now", "--no-vmclock", "--path", p(&path)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).trim_end().ends_with("Synchronized"));
    // The default device, where this host has none.
    if !Path::new("/dev/vmclock0").exists() {
        let out = run(&["status", "--path", p(&path)]);
        assert_eq!(code(&out), 3);
        assert!(
            stdout(&out).contains("vmclock /dev/vmclock0"),
            "{}",
            stdout(&out)
        );
    }
}

#[test]
fn watch_says_when_updates_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (path, writer) = segment(&dir, &bound(ClockStatus::Synchronized, 0, false));
    let stop = Arc::new(AtomicBool::new(false));
    // A daemon updating every 50 ms: the usual pace is learnt from its updates, so the
    // warning comes after the 1 s minimum, not after the 20 s used while the pace is unknown.
    let updater = keep_writing(
        writer,
        ClockStatus::Synchronized,
        Duration::from_millis(50),
        Arc::clone(&stop),
    );
    let mut watch = Running::spawn(&["watch", "--path", p(&path)]);
    let updates = watch.lines_until(|l| l.starts_with("generation"));
    assert_eq!(updates.len(), 1);
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::Relaxed);
    let _writer = updater.join().unwrap();
    let lines = watch.lines_until(|l| l.starts_with("silent:"));
    let silent = lines.last().unwrap();
    assert!(silent.contains("no update for"), "{silent}");
    // The pace was learnt from the updates (50 ms apart, more on a busy machine), and the
    // warning came after the 1 s minimum rather than the 20 s used while it is unknown.
    assert!(silent.contains("updates usually come every 0."), "{silent}");
    assert!(silent.contains("status Synchronized"), "{silent}");
    let out = watch.interrupt();
    assert_eq!(code(&out), 0);

    // With --silence-after, in JSON: the warning repeats while the daemon stays silent,
    // with a growing age.
    let mut watch = Running::spawn(&[
        "watch",
        "--json",
        "--silence-after",
        "0.2",
        "--path",
        p(&path),
    ]);
    let mut silent = Vec::new();
    while silent.len() < 2 {
        let line = watch.next_line();
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "silent" {
            silent.push(v);
        } else {
            assert_eq!(v["event"], "update", "{line}");
        }
    }
    let ages: Vec<i64> = silent
        .iter()
        .map(|v| v["age_ns"].as_i64().unwrap())
        .collect();
    assert!(ages[0] >= 200_000_000, "{ages:?}");
    assert!(ages[1] >= ages[0] + 150_000_000, "{ages:?}");
    assert_eq!(silent[0]["threshold_ns"], 200_000_000);
    watch.interrupt();
}

#[test]
fn waitsync_waits_for_a_late_daemon_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clockbound").join("shm0");
    let daemon = {
        let path = path.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut writer = ShmWriter::new(&path).unwrap();
            for status in [ClockStatus::Unknown, ClockStatus::Synchronized] {
                for _ in 0..40 {
                    writer.write(&bound(status, 0, false));
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            writer
        })
    };
    let start = std::time::Instant::now();
    let out = run(&["waitsync", "--timeout", "15", "--path", p(&path)]);
    let _writer = daemon.join().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(start.elapsed() >= Duration::from_millis(700));
    let err = stderr(&out);
    // Progress: the missing file, the Unknown status, then success.
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(err.contains("clock status Unknown"), "{err}");
    assert!(err.contains("is Synchronized"), "{err}");
}

#[test]
fn waitsync_times_out_with_4_and_fails_fast_with_3() {
    let dir = tempfile::tempdir().unwrap();
    // FreeRunning never ends the wait.
    let (path, _writer) = segment(&dir, &bound(ClockStatus::FreeRunning, 0, false));
    let out = run(&["waitsync", "--timeout", "0.5", "--path", p(&path)]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("clock status FreeRunning"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("gave up"), "{}", stderr(&out));

    // A missing file until the timeout: 4 too, with the last error.
    let out = run(&[
        "waitsync",
        "--json",
        "--timeout",
        "0.3",
        "--path",
        p(&dir.path().join("none")),
    ]);
    assert_eq!(code(&out), 4);
    let v = &json_lines(&out)[0];
    assert_eq!(v["kind"], "timeout");
    assert!(v["error"].as_str().unwrap().contains("No such file"), "{v}");

    // Errors that waiting cannot clear end the wait at once.
    let garbage = dir.path().join("garbage");
    fs::write(&garbage, [0x55u8; 80]).unwrap();
    let (needs_vmclock, _w2) = {
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let path = sub.path().join("shm0");
        let mut w = ShmWriter::new(&path).unwrap();
        w.write(&bound(ClockStatus::Synchronized, 0, true));
        std::mem::forget(sub); // removed with `dir`
        (path, w)
    };
    let missing = dir.path().join("no-vmclock");
    for args in [
        vec!["waitsync", "--path", p(&garbage)],
        vec![
            "waitsync",
            "--path",
            p(&needs_vmclock),
            "--vmclock-path",
            p(&missing),
        ],
    ] {
        let start = std::time::Instant::now();
        let out = run(&args);
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
        assert!(start.elapsed() < Duration::from_secs(5), "{args:?}");
    }
    // ... and --no-vmclock lets the segment alone answer.
    let out = run(&["waitsync", "--no-vmclock", "--path", p(&needs_vmclock)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn simulate_writes_a_segment_the_other_commands_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim").join("shm0");
    let sim = Command::new(BIN)
        .args([
            "simulate",
            "--path",
            p(&path),
            "--status",
            "free-running",
            "--bound-ns",
            "1234",
            "--interval-ms",
            "50",
            "--duration",
            "1.5",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first update.
    let mut first = None;
    for _ in 0..200 {
        let out = run(&["status", "--json", "--path", p(&path)]);
        if code(&out) != 3 {
            first = Some(json_lines(&out).remove(0));
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = first.expect("simulate wrote a readable segment");
    assert_eq!(first["snapshot"]["bound_nsec"], 1234);
    assert_eq!(first["snapshot"]["clock_status"], "FreeRunning");
    assert_eq!(first["snapshot"]["clock_disruption_support_enabled"], false);
    let as_of = first["snapshot"]["as_of"]["sec"].as_i64().unwrap();
    let void_after = first["snapshot"]["void_after"]["sec"].as_i64().unwrap();
    assert_eq!(void_after - as_of, 1000);
    let age = first["now"]["age_ns"].as_i64().unwrap();
    assert!(
        (-1_000..1_000_000_000).contains(&age),
        "as_of is CLOCK_MONOTONIC_COARSE: {age}"
    );

    // A second writer on the same segment is refused.
    let out = run(&["simulate", "--path", p(&path), "--duration", "1"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("another writer"), "{}", stderr(&out));

    // It keeps updating, then stops by itself.
    std::thread::sleep(Duration::from_millis(200));
    let later = &json_lines(&run(&["status", "--json", "--path", p(&path)]))[0];
    assert!(
        later["header"]["generation"].as_u64() > first["header"]["generation"].as_u64(),
        "{later}"
    );
    let out = wait_output(sim);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("stopped after"), "{}", stderr(&out));
    let out = run(&["now", "--path", p(&path)]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).trim_end().ends_with("FreeRunning"));
}

/// Layout 3 (`shm1`): segments stamped with the TSC, so x86-64 only (the tests read the
/// counter themselves to write snapshots that are current).
#[cfg(target_arch = "x86_64")]
mod layout3 {
    use super::*;
    use clockbound_shm::{ClockErrorBoundV3, ShmWriterV3};
    use std::sync::OnceLock;

    fn tsc() -> u64 {
        // SAFETY: `rdtsc` is part of every x86-64 CPU and Linux lets user space run it; the
        // intrinsic only reads the counter into registers and touches no memory.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    fn nanos(t: rustix::time::Timespec) -> i128 {
        i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
    }

    /// `clock` read between two TSC reads: the TSC value halfway, the clock in nanoseconds,
    /// and the ticks between the two reads (the narrowest of up to 1000 tries, a preemption
    /// between the reads widens one; under 2000 ticks ends the search).
    fn paired_width(clock: ClockId) -> (u64, i128, u64) {
        let mut best = (0, 0, u64::MAX);
        for _ in 0..1000 {
            let before = tsc();
            let t = nanos(clock_gettime(clock));
            let after = tsc();
            let width = after.wrapping_sub(before);
            if width < best.2 {
                best = (before + width / 2, t, width);
            }
            if width < 2_000 {
                break;
            }
        }
        assert!(best.2 < 50_000, "no narrow TSC/clock pair: {best:?}");
        best
    }

    /// [`paired_width`] without the width.
    fn paired(clock: ClockId) -> (u64, i128) {
        let (counter, t, _) = paired_width(clock);
        (counter, t)
    }

    /// The TSC's frequency, measured against `CLOCK_MONOTONIC` over 20 ms (once).
    fn tsc_hz() -> u64 {
        static HZ: OnceLock<u64> = OnceLock::new();
        *HZ.get_or_init(|| {
            let (c0, m0) = paired(ClockId::Monotonic);
            std::thread::sleep(Duration::from_millis(20));
            let (c1, m1) = paired(ClockId::Monotonic);
            u64::try_from(i128::from(c1 - c0) * 1_000_000_000 / (m1 - m0)).unwrap()
        })
    }

    /// A layout 3 snapshot taken now: `as_of` is `CLOCK_REALTIME` at the current TSC value,
    /// the measured frequency with a period error of 2^-14 (61 ppm, more than a 20 ms
    /// measurement is off by), bound 5 µs, drift 1000 ppb, void after 1000 s.
    fn bound_v3(status: ClockStatus, marker: u64, disruption_support: bool) -> ClockErrorBoundV3 {
        let (as_of_tsc, real) = paired(ClockId::Realtime);
        let as_of = Timespec::from_nanos(real);
        ClockErrorBoundV3::builder()
            .as_of_tsc(as_of_tsc)
            .as_of(as_of)
            .void_after(as_of.saturating_add(Duration::from_secs(1000)))
            .with_frequency_hz(tsc_hz())
            .period_err_frac(1 << 50)
            .period_err_shift(0)
            .bound_nsec(5_000)
            .disruption_marker(marker)
            .max_drift_ppb(1_000)
            .clock_status(status)
            .clock_disruption_support_enabled(disruption_support)
            .build()
    }

    fn segment_v3(dir: &tempfile::TempDir, ceb: &ClockErrorBoundV3) -> (PathBuf, ShmWriterV3) {
        let path = dir.path().join("shm1");
        let mut writer = ShmWriterV3::new(&path).unwrap();
        writer.write(ceb);
        (path, writer)
    }

    /// A layout 2 segment at `dir/shm0`.
    fn segment_v2(dir: &tempfile::TempDir, status: ClockStatus) -> (PathBuf, ShmWriter) {
        segment(dir, &bound(status, 0, false))
    }

    fn i(v: &Value) -> i128 {
        i128::from(v.as_i64().unwrap_or_else(|| panic!("not an i64: {v}")))
    }

    fn ts(v: &Value) -> i128 {
        i(&v["sec"]) * 1_000_000_000 + i(&v["nsec"])
    }

    /// `--shm1-path D/shm1 --shm0-path D/shm0`: the daemon's choice, in `dir`.
    fn auto_args<'a>(dir: &'a tempfile::TempDir, args: &[&'a str]) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--shm1-path".to_owned(),
            p(&dir.path().join("shm1")).to_owned(),
            "--shm0-path".to_owned(),
            p(&dir.path().join("shm0")).to_owned(),
        ]);
        v
    }

    fn run_owned(args: &[String]) -> Output {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    }

    #[test]
    fn status_json_shows_the_layout_3_fields_and_the_counter_read() {
        let dir = tempfile::tempdir().unwrap();
        let ceb = bound_v3(ClockStatus::Synchronized, 7, false);
        let (path, writer) = segment_v3(&dir, &ceb);
        let before = tsc();
        let out = run(&["status", "--json", "--path", p(&path)]);
        let after = tsc();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let v = &json_lines(&out)[0];
        assert_eq!(v["path"], p(&path));
        assert_eq!(v["layout"], 3);
        assert_eq!(v["header"]["selected_by"]["by"], "header");
        assert_eq!(v["header"]["version"], 0x0303);
        assert_eq!(v["header"]["segsize"], 104);
        assert_eq!(v["header"]["generation"], writer.generation());

        let s = &v["snapshot"];
        assert_eq!(s["as_of_tsc"], ceb.as_of_tsc());
        assert_eq!(ts(&s["as_of"]), ceb.as_of().as_nanos());
        assert_eq!(ts(&s["void_after"]), ceb.void_after().as_nanos());
        assert_eq!(s["period_frac"], ceb.period_frac());
        assert_eq!(s["period_shift"], ceb.period_shift());
        // Hz = 2^(64 + shift) / period_frac: the frequency written, to a part in 10^9.
        let hz = s["counter_frequency_hz"].as_f64().unwrap();
        assert!(
            (hz / tsc_hz() as f64 - 1.0).abs() < 1e-9,
            "{hz} Hz shown, {} written",
            tsc_hz()
        );
        // 2^50 / 2^64 = 2^-14 = 61035.15625 ppb.
        let err = s["period_err_ppb"].as_f64().unwrap();
        assert!((err - 61_035.156_25).abs() < 1e-6, "{err}");
        assert_eq!(s["period_err_frac"], 1u64 << 50);
        assert_eq!(s["period_err_shift"], 0);
        assert_eq!(s["bound_nsec"], 5_000);
        assert_eq!(s["disruption_marker"], 7);
        assert_eq!(s["max_drift_ppb"], 1_000);
        assert_eq!(s["clock_status"], "Synchronized");
        assert_eq!(s["clock_disruption_support_enabled"], false);

        let now = &v["now"];
        // The counter the window was computed at is the TSC, read while the command ran.
        let counter = now["counter"].as_u64().unwrap();
        assert!(
            (before..=after).contains(&counter),
            "{before} <= {counter} <= {after}"
        );
        let age = i(&now["age_ns"]);
        assert!((0..5_000_000_000).contains(&age), "{age}");
        // The window: around as_of + age, and it holds CLOCK_REALTIME (the segment's as_of is
        // CLOCK_REALTIME, its frequency measured against it).
        let (earliest, latest) = (ts(&now["earliest"]), ts(&now["latest"]));
        let bound = i(&now["bound_ns"]);
        assert!(earliest < latest && bound >= 5_000, "{now}");
        assert!((latest - earliest) / 2 <= bound && bound <= (latest - earliest) / 2 + 1);
        let offset = i(&now["realtime_offset_ns"]);
        assert!(
            offset.abs() <= bound,
            "CLOCK_REALTIME outside the window: {now}"
        );
        assert_eq!(
            ts(&now["realtime"]) - (earliest + latest) / 2,
            offset,
            "{now}"
        );
        assert_eq!(now["clock_status"], "Synchronized");
        assert_eq!(now["trusted"], true);
        assert_eq!(v["vmclock_check"], "not_needed");
    }

    #[test]
    fn status_text_names_the_layout_frequency_period_error_and_daemon_time() {
        let dir = tempfile::tempdir().unwrap();
        let ceb = bound_v3(ClockStatus::Synchronized, 0, false);
        let (path, _writer) = segment_v3(&dir, &ceb);
        let out = run(&["status", "--path", p(&path)]);
        let text = stdout(&out);
        assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
        for expected in [
            format!("segment {} (layout 3)", p(&path)),
            "selected_by                       --path, as the layout its header declares"
                .to_owned(),
            "104 bytes".to_owned(),
            "version                           0x0303 (layout 3)".to_owned(),
            format!("as_of_tsc                         {}", ceb.as_of_tsc()),
            "s UTC (".to_owned(),
            "Z, the daemon's time)".to_owned(),
            "counter_frequency                 ".to_owned(),
            " Hz (".to_owned(),
            "period_err                        61035.156 ppb".to_owned(),
            "(period_shift ".to_owned(),
            "5000 ns".to_owned(),
            "ticks after as_of_tsc".to_owned(),
            "(ticks since as_of_tsc x period)".to_owned(),
            "CLOCK_REALTIME (for comparison; not used)".to_owned(),
            "Synchronized (trusted)".to_owned(),
        ] {
            assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
        }
        // No layout 2 clock in a layout 3 status.
        assert!(!text.contains("MONOTONIC"), "{text}");
        // The UTC date is as_of's: 1970-01-01 + days.
        let days = ceb.as_of().sec().div_euclid(86_400);
        assert!(days > 19_000, "as_of is a current date");
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("as_of "))
            .unwrap();
        assert!(
            line.contains(&format!("{} s UTC (20", ceb.as_of())),
            "{line}"
        );
    }

    #[test]
    fn now_prints_one_window_and_says_which_segment_in_json() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _writer) = segment_v3(&dir, &bound_v3(ClockStatus::Synchronized, 0, false));
        let (_, real_before) = paired(ClockId::Realtime);
        let out = run(&["now", "--path", p(&path)]);
        let (_, real_after) = paired(ClockId::Realtime);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let text = stdout(&out);
        let parts: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "{text}");
        let parse = |s: &str| {
            let (sec, nsec) = s.split_once('.').unwrap();
            i128::from(sec.parse::<i64>().unwrap()) * 1_000_000_000
                + i128::from(nsec.parse::<i64>().unwrap())
        };
        let (earliest, latest) = (parse(parts[0]), parse(parts[1]));
        assert!(earliest < latest);
        // True time (CLOCK_REALTIME here) during the run lies in the window's reach.
        assert!(earliest <= real_after && latest >= real_before, "{text}");
        assert_eq!(parts[2], "Synchronized");

        let out = run(&["now", "--json", "--path", p(&path)]);
        assert_eq!(code(&out), 0);
        let v = &json_lines(&out)[0];
        assert_eq!(v["layout"], 3);
        assert_eq!(v["path"], p(&path));
        assert_eq!(v["clock_status"], "Synchronized");
        assert_eq!(v["trusted"], true);
        assert!(ts(&v["earliest"]) < ts(&v["latest"]));
    }

    #[test]
    fn untrusted_layout_3_status_exits_with_1_and_the_vmclock_check_applies() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut writer) = segment_v3(&dir, &bound_v3(ClockStatus::Unknown, 0, false));
        for (status, expected) in [
            (ClockStatus::Unknown, 1),
            (ClockStatus::Disrupted, 1),
            (ClockStatus::FreeRunning, 0),
            (ClockStatus::Synchronized, 0),
        ] {
            writer.write(&bound_v3(status, 0, false));
            for command in ["status", "now"] {
                let out = run(&[command, "--path", p(&path)]);
                assert_eq!(code(&out), expected, "{command} {status:?}");
                assert!(stdout(&out).contains(&format!("{status:?}")));
            }
        }
        // The daemon tracks disruptions and the VMClock marker moved on: Disrupted.
        writer.write(&bound_v3(ClockStatus::Synchronized, 7, true));
        let vmclock = vmclock_page(&dir, 8);
        let out = run(&[
            "now",
            "--json",
            "--path",
            p(&path),
            "--vmclock-path",
            p(&vmclock),
        ]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        assert_eq!(json_lines(&out)[0]["clock_status"], "Disrupted");
        let vmclock = vmclock_page(&dir, 7);
        let out = run(&[
            "now",
            "--json",
            "--path",
            p(&path),
            "--vmclock-path",
            p(&vmclock),
        ]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(json_lines(&out)[0]["clock_status"], "Synchronized");
    }

    #[test]
    fn without_path_shm1_is_read_when_valid_else_shm0() {
        let dir = tempfile::tempdir().unwrap();
        let shm1 = dir.path().join("shm1");
        let shm0 = dir.path().join("shm0");
        let (_, _w0) = segment_v2(&dir, ClockStatus::FreeRunning);
        let (_, mut w1) = segment_v3(&dir, &bound_v3(ClockStatus::Synchronized, 0, false));
        let reads = |args: &[&str]| -> (i32, Value) {
            let out = run_owned(&auto_args(&dir, args));
            let c = code(&out);
            (c, json_lines(&out).remove(0))
        };

        // Both valid: shm1, layout 3.
        let (c, v) = reads(&["now", "--json"]);
        assert_eq!(
            (c, &v["layout"], &v["path"]),
            (0, &json!(3), &json!(p(&shm1)))
        );
        let (_, v) = reads(&["status", "--json"]);
        assert_eq!(v["header"]["selected_by"], json!({ "by": "auto" }));
        let out = run_owned(&auto_args(&dir, &["status"]));
        assert!(
            stdout(&out).contains("default: it holds a valid layout 3 segment"),
            "{}",
            stdout(&out)
        );
        // --layout 2 reads shm0 even then.
        let (c, v) = reads(&["now", "--json", "--layout", "2"]);
        assert_eq!(
            (c, &v["layout"], &v["path"]),
            (0, &json!(2), &json!(p(&shm0)))
        );
        assert_eq!(v["clock_status"], "FreeRunning");
        let (_, v) = reads(&["status", "--json", "--layout", "2"]);
        assert_eq!(v["header"]["selected_by"]["by"], "layout_option");

        // shm1 wiped (a 3.x daemon starting): shm0, and why.
        w1.wipe();
        let (c, v) = reads(&["status", "--json"]);
        assert_eq!(
            (c, &v["layout"], &v["path"]),
            (0, &json!(2), &json!(p(&shm0)))
        );
        let selected = &v["header"]["selected_by"];
        assert_eq!(selected["by"], "auto");
        assert_eq!(selected["shm1"], p(&shm1));
        assert!(
            selected["shm1_not_used"]
                .as_str()
                .unwrap()
                .contains(p(&shm1)),
            "{selected}"
        );
        let out = run_owned(&auto_args(&dir, &["status"]));
        assert!(
            stdout(&out).contains(&format!(
                "default: {} is not a valid layout 3 segment (",
                p(&shm1)
            )),
            "{}",
            stdout(&out)
        );

        // shm1 holding layout 2, or missing: shm0.
        drop(w1);
        fs::remove_file(&shm1).unwrap();
        let mut w = ShmWriter::new(&shm1).unwrap();
        w.write(&bound(ClockStatus::Synchronized, 0, false));
        let (_, v) = reads(&["now", "--json"]);
        assert_eq!((&v["layout"], &v["path"]), (&json!(2), &json!(p(&shm0))));
        fs::remove_file(&shm1).unwrap();
        let (_, v) = reads(&["status", "--json"]);
        assert_eq!((&v["layout"], &v["path"]), (&json!(2), &json!(p(&shm0))));
        assert!(
            v["header"]["selected_by"]["shm1_not_used"]
                .as_str()
                .unwrap()
                .contains("No such file"),
            "{v}"
        );

        // --layout 3 reads shm1 only: no fallback.
        let out = run_owned(&auto_args(&dir, &["now", "--layout", "3"]));
        assert_eq!(code(&out), 3);
        assert!(stderr(&out).contains(p(&shm1)), "{}", stderr(&out));

        // Neither: the error of shm0, as SharedClockBound::open_default.
        fs::remove_file(&shm0).unwrap();
        let out = run_owned(&auto_args(&dir, &["now", "--json"]));
        assert_eq!(code(&out), 3);
        let v = &json_lines(&out)[0];
        assert_eq!(v["kind"], "io");
        assert!(v["error"].as_str().unwrap().contains(p(&shm0)), "{v}");
        assert!(!v["hint"].as_str().unwrap().contains("drop --path"), "{v}");

        // --path and the daemon's paths do not mix.
        let out = run(&["now", "--path", p(&shm0), "--shm1-path", p(&shm1)]);
        assert_eq!(code(&out), 2);
    }

    #[test]
    fn path_is_read_as_the_layout_its_header_declares_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let (shm0, _w0) = segment_v2(&dir, ClockStatus::Synchronized);
        let (shm1, _w1) = segment_v3(&dir, &bound_v3(ClockStatus::Synchronized, 0, false));
        for (path, layout) in [(&shm0, 2), (&shm1, 3)] {
            let out = run(&["now", "--json", "--path", p(path)]);
            assert_eq!(code(&out), 0, "{}", stderr(&out));
            assert_eq!(json_lines(&out)[0]["layout"], layout);
            let out = run(&["status", "--path", p(path)]);
            assert!(
                stdout(&out).contains(&format!("segment {} (layout {layout})", p(path))),
                "{}",
                stdout(&out)
            );
        }
        // Forcing the other layout: the version is refused, with the layouts in the hint.
        for (path, layout) in [(&shm0, "3"), (&shm1, "2")] {
            let out = run(&["now", "--json", "--path", p(path), "--layout", layout]);
            assert_eq!(code(&out), 3, "{}", stderr(&out));
            let v = &json_lines(&out)[0];
            assert_eq!(v["kind"], "version_not_supported", "{v}");
            assert!(v["hint"].as_str().unwrap().contains("--layout"), "{v}");
        }
        let out = run(&["status", "--json", "--path", p(&shm1), "--layout", "3"]);
        assert_eq!(
            json_lines(&out)[0]["header"]["selected_by"]["by"],
            "layout_option"
        );
    }

    /// A writer thread publishing layout 3 snapshots with `status` every `period`.
    fn keep_writing_v3(
        mut writer: ShmWriterV3,
        status: ClockStatus,
        period: Duration,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<ShmWriterV3> {
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                writer.write(&bound_v3(status, 0, false));
                std::thread::sleep(period);
            }
            writer
        })
    }

    #[test]
    fn watch_prints_a_line_per_layout_3_update() {
        let dir = tempfile::tempdir().unwrap();
        let (_, writer) = segment_v3(&dir, &bound_v3(ClockStatus::Synchronized, 0, false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = keep_writing_v3(
            writer,
            ClockStatus::Synchronized,
            Duration::from_millis(30),
            Arc::clone(&stop),
        );
        let out = run_owned(&auto_args(
            &dir,
            &["watch", "--json", "--count", "3", "--interval-ms", "5"],
        ));
        let text = run_owned(&auto_args(&dir, &["watch", "--count", "2"]));
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let lines = json_lines(&out);
        assert_eq!(lines.len(), 3, "{}", stdout(&out));
        let mut generations = Vec::new();
        for v in &lines {
            assert_eq!(v["event"], "update");
            assert_eq!(v["layout"], 3);
            assert_eq!(v["path"], p(&dir.path().join("shm1")));
            assert_eq!(v["clock_status"], "Synchronized");
            assert!(i(&v["age_ns"]) < 5_000_000_000, "{v}");
            generations.push(v["generation"].as_u64().unwrap());
        }
        assert!(
            generations.windows(2).all(|g| g[0] < g[1]),
            "{generations:?}"
        );
        assert!(
            stderr(&out).contains(&format!(
                "watch: reading {} (layout 3), selected by default",
                p(&dir.path().join("shm1"))
            )),
            "{}",
            stderr(&out)
        );
        assert_eq!(code(&text), 0, "{}", stderr(&text));
        let rows = stdout(&text);
        let rows: Vec<&str> = rows.lines().collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(
            rows.iter().all(|r| r.starts_with("generation ")),
            "{rows:?}"
        );
    }

    #[test]
    fn waitsync_waits_for_a_late_3x_daemon_on_shm1() {
        let dir = tempfile::tempdir().unwrap();
        let shm1 = dir.path().join("shm1");
        let daemon = {
            let shm1 = shm1.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let mut writer = ShmWriterV3::new(&shm1).unwrap();
                for status in [ClockStatus::Unknown, ClockStatus::Synchronized] {
                    for _ in 0..40 {
                        writer.write(&bound_v3(status, 0, false));
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                writer
            })
        };
        let out = run_owned(&auto_args(&dir, &["waitsync", "--json", "--timeout", "15"]));
        let _writer = daemon.join().unwrap();
        let err = stderr(&out);
        assert_eq!(code(&out), 0, "{err}");
        // Progress: nothing there (shm0's error), Unknown on shm1, then success.
        assert!(err.contains("No such file or directory"), "{err}");
        assert!(
            err.contains(&format!("{} (layout 3) has clock status Unknown", p(&shm1))),
            "{err}"
        );
        assert!(
            err.contains(&format!("{} (layout 3) is Synchronized", p(&shm1))),
            "{err}"
        );
        let v = &json_lines(&out)[0];
        assert_eq!((&v["layout"], &v["path"]), (&json!(3), &json!(p(&shm1))));
        assert_eq!(v["clock_status"], "Synchronized");
    }

    #[test]
    fn waitsync_moves_from_shm0_to_shm1_once_shm1_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        // A stale shm0 that never synchronises; shm1 appears later, synchronised.
        let (_, _w0) = segment_v2(&dir, ClockStatus::Unknown);
        let shm1 = dir.path().join("shm1");
        let daemon = {
            let shm1 = shm1.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(500));
                let mut writer = ShmWriterV3::new(&shm1).unwrap();
                for _ in 0..300 {
                    writer.write(&bound_v3(ClockStatus::Synchronized, 0, false));
                    std::thread::sleep(Duration::from_millis(10));
                }
                writer
            })
        };
        let out = run_owned(&auto_args(&dir, &["waitsync", "--json", "--timeout", "15"]));
        let _writer = daemon.join().unwrap();
        let err = stderr(&out);
        assert_eq!(code(&out), 0, "{err}");
        assert!(err.contains("(layout 2) has clock status Unknown"), "{err}");
        assert!(
            err.contains(&format!(
                "{} now holds a valid layout 3 segment: reading it instead",
                p(&shm1)
            )),
            "{err}"
        );
        let v = &json_lines(&out)[0];
        assert_eq!((&v["layout"], &v["path"]), (&json!(3), &json!(p(&shm1))));
    }

    #[test]
    fn waitsync_on_layout_3_times_out_with_4() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _writer) = segment_v3(&dir, &bound_v3(ClockStatus::FreeRunning, 0, false));
        let out = run(&["waitsync", "--timeout", "0.5", "--path", p(&path)]);
        assert_eq!(code(&out), 4, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("(layout 3) has clock status FreeRunning"),
            "{}",
            stderr(&out)
        );
    }

    #[test]
    fn simulate_layout_3_writes_a_segment_the_other_commands_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim").join("shm1");
        let sim = Command::new(BIN)
            .args([
                "simulate",
                "--layout",
                "3",
                "--path",
                p(&path),
                "--bound-ns",
                "20000",
                "--interval-ms",
                "50",
                "--duration",
                "2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = None;
        for _ in 0..200 {
            let out = run(&["status", "--json", "--path", p(&path)]);
            if code(&out) != 3 {
                first = Some(json_lines(&out).remove(0));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = first.expect("simulate wrote a readable segment");
        assert_eq!(first["layout"], 3, "{first}");
        let s = &first["snapshot"];
        assert_eq!(s["clock_status"], "Synchronized");
        // The bound asked for, plus the uncertainty of pairing as_of with a counter value.
        let bound = i(&s["bound_nsec"]);
        assert!((20_000..1_020_000).contains(&bound), "{s}");
        assert_eq!(ts(&s["void_after"]) - ts(&s["as_of"]), 1_000_000_000_000);
        // The frequency it measured agrees with ours, and it states an error for it.
        let hz = s["counter_frequency_hz"].as_f64().unwrap();
        assert!(
            (hz / tsc_hz() as f64 - 1.0).abs() < 1e-3,
            "simulate measured {hz} Hz, the test {}",
            tsc_hz()
        );
        assert!(s["period_err_ppb"].as_f64().unwrap() > 0.0, "{s}");
        // Scaled as the daemon scales it (the fraction keeps its top bit), the form readers
        // take the short arithmetic path for.
        assert!(i(&s["period_err_shift"]) >= 9, "{s}");
        assert!(s["period_err_frac"].as_u64().unwrap() >= 1 << 63, "{s}");
        // The window holds CLOCK_REALTIME, which as_of is taken from.
        let now = &first["now"];
        assert!(
            i(&now["realtime_offset_ns"]).abs() <= i(&now["bound_ns"]),
            "{now}"
        );
        assert_eq!(now["clock_status"], "Synchronized");

        // A second writer on the same segment is refused, whatever its layout.
        for layout in ["3", "2"] {
            let out = run(&["simulate", "--layout", layout, "--path", p(&path)]);
            assert_eq!(code(&out), 3, "{}", stderr(&out));
            assert!(stderr(&out).contains("another writer"), "{}", stderr(&out));
        }

        // It keeps updating (and stays honest as the measurement lengthens), then stops.
        std::thread::sleep(Duration::from_millis(600));
        let later = &json_lines(&run(&["status", "--json", "--path", p(&path)]))[0];
        assert!(
            later["header"]["generation"].as_u64() > first["header"]["generation"].as_u64(),
            "{later}"
        );
        assert!(
            i(&later["now"]["realtime_offset_ns"]).abs() <= i(&later["now"]["bound_ns"]),
            "{later}"
        );
        let out = wait_output(sim);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("writing layout 3 (shm1; CPU counter measured at"),
            "{}",
            stderr(&out)
        );
        let out = run(&["now", "--path", p(&path)]);
        assert_eq!(code(&out), 0);
        assert!(stdout(&out).trim_end().ends_with("Synchronized"));
    }

    #[test]
    fn simulate_layout_3_windows_hold_clock_realtime_with_no_bound_or_drift_to_hide_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shm1");
        let sim = Command::new(BIN)
            .args(["simulate", "--layout", "3", "--path", p(&path)])
            .args(["--bound-ns", "0", "--max-drift-ppb", "0"])
            .args(["--interval-ms", "100", "--duration", "1.5"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = None;
        for _ in 0..200 {
            if let Ok(r) = clockbound_shm::ShmReaderV3::open(&path) {
                reader = Some(r);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut reader = reader.expect("simulate wrote a readable segment");
        // What is left is the simulator's own uncertainty: pairing as_of with a counter
        // value, and the error of the frequency it measured. CLOCK_REALTIME, which as_of is
        // taken from, stays inside (give or take our own pairing).
        let mut checked = 0;
        let mut widest = 0;
        while checked < 20 {
            let snapshot = *reader.snapshot().unwrap();
            let (counter, real, width) = paired_width(ClockId::Realtime);
            let w = snapshot
                .compute_bound_at(counter, Duration::from_secs(60))
                .unwrap();
            let slack = i128::from(width) * 1_000_000_000 / i128::from(tsc_hz()) / 2 + 1;
            assert!(
                w.earliest.as_nanos() - slack <= real && real <= w.latest.as_nanos() + slack,
                "CLOCK_REALTIME {real} outside [{}, {}] ({snapshot:?})",
                w.earliest,
                w.latest
            );
            widest = widest.max(w.bound().as_nanos());
            checked += 1;
            std::thread::sleep(Duration::from_millis(60));
        }
        assert!(widest > 0);
        let out = wait_output(sim);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
}
