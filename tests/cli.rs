//! The `clockbound-shm` binary against segments written by `ShmWriter`.
//!
//! Run with `cargo test --features cli --test cli`.
#![cfg(all(feature = "cli", feature = "writer"))]

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
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_clockbound-shm");
const TIMEOUT: Duration = Duration::from_secs(20);

fn mono_now() -> Timespec {
    let t = clock_gettime(ClockId::MonotonicCoarse);
    #[allow(clippy::useless_conversion)]
    Timespec::new(t.tv_sec, i64::from(t.tv_nsec))
}

/// A snapshot taken now: bound 5 µs, drift 1000 ppb, void after 1000 s.
fn bound(status: ClockStatus, marker: u64, disruption_support: bool) -> ClockErrorBound {
    let as_of = mono_now();
    ClockErrorBound::new(
        as_of,
        as_of.saturating_add(Duration::from_secs(1000)),
        5_000,
        marker,
        1_000,
        status,
        disruption_support,
    )
}

fn segment(dir: &tempfile::TempDir, ceb: &ClockErrorBound) -> (PathBuf, ShmWriter) {
    let path = dir.path().join("shm0");
    let mut writer = ShmWriter::new(&path).unwrap();
    writer.write(ceb);
    (path, writer)
}

/// A VMClock page (version 1, seq_count 2) with `marker`, at the offsets of PROTOCOL.md.
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
fn missing_segment_exits_with_2_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere").join("shm0");
    let out = run(&["status", "--path", p(&path)]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains(p(&path)), "{err}");
    assert!(err.contains("daemon running"), "{err}");
    assert!(stdout(&out).is_empty());

    let out = run(&["now", "--json", "--path", p(&path)]);
    assert_eq!(code(&out), 2);
    let v = &json_lines(&out)[0];
    assert_eq!(v["kind"], "io");
    assert_eq!(v["errno"], 2); // ENOENT
    assert!(v["hint"].as_str().unwrap().contains("--path"));
}

#[test]
fn bad_or_unready_segments_exit_with_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm0");
    fs::write(&path, [0u8; 80]).unwrap();
    let out = run(&["now", "--path", p(&path)]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("magic"), "{}", stderr(&out));

    fs::write(&path, []).unwrap();
    let out = run(&["status", "--path", p(&path)]);
    assert_eq!(code(&out), 2);
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

    // The flag is set and the device is missing: an error that says so, exit 2.
    let missing = dir.path().join("no-vmclock");
    let out = run(&["now", "--path", p(&path), "--vmclock-path", p(&missing)]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("VMClock"), "{}", stderr(&out));
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
