//! The `multithreaded` example, run the way a new user runs it: it must say which clock it
//! read and whether that clock is healthy, and exit 0 when every window checks out.
//!
//! The example is built and run with `cargo run` (cargo releases its build lock before it
//! runs the tests), with `--simulate` so the result does not depend on whether a ClockBound
//! daemon runs on this machine.

use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Building the example may take a while on a cold cache; running it takes a second.
const TIMEOUT: Duration = Duration::from_secs(600);

fn run_example(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO"))
        .args([
            "run",
            "--quiet",
            "--example",
            "multithreaded",
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .arg("--")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cargo runs");
    let start = Instant::now();
    // The output is small (a few lines), so the pipes cannot fill up while we wait.
    while child.try_wait().expect("wait for cargo").is_none() {
        if start.elapsed() > TIMEOUT {
            child.kill().ok();
            panic!("the example did not finish within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    child
        .wait_with_output()
        .expect("collect the example's output")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Asserts that `stdout` has a line starting with each of `prefixes`.
fn assert_lines(stdout: &str, prefixes: &[&str]) {
    for prefix in prefixes {
        assert!(
            stdout.lines().any(|line| line.starts_with(prefix)),
            "no line starting with {prefix:?} in:\n{stdout}"
        );
    }
}

#[test]
fn simulated_layout_2_says_the_clock_is_healthy() {
    let output = run_example(&["--simulate", "--layout", "2", "--duration", "0.2"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_lines(
        &stdout,
        &[
            "not looking for the ClockBound daemon (--simulate)",
            "simulated writer: layout 2 on ",
            "  segment  ",
            "  status   Synchronized",
            "  bound    ±5.0",
            "  age      0.",
            "  healthy  yes",
            "ThreadLocal ",
            "ArcSwap ",
            "statuses the workers saw: Synchronized ",
            "simulated writer: ",
        ],
    );
    assert!(stdout.contains("(layout 2)"), "{stdout}");
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn simulated_layout_3_is_the_default_where_the_counter_can_be_read() {
    let output = run_example(&["--simulate", "--duration", "0.2"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_lines(
        &stdout,
        &[
            "simulated writer: layout 3 on ",
            "  status   Synchronized",
            "  bound    ±5.0",
            "  age      0.",
            "  healthy  yes",
            "statuses the workers saw: Synchronized ",
        ],
    );
    assert!(stdout.contains("CPU counter at "), "{stdout}");
    assert!(stdout.contains("(layout 3)"), "{stdout}");
}

#[test]
fn a_missing_path_is_an_error_that_names_it() {
    let missing = "/nonexistent/clockbound/shm0";
    let output = run_example(&["--path", missing, "--duration", "0.2"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(missing), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--layout", "4"][..],
        &["--path", "/tmp/x", "--simulate"][..],
    ] {
        let output = run_example(args);
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {stdout}\n{stderr}"
        );
        assert!(stderr.contains("see --help"), "{args:?}: {stderr}");
    }
}
