//! The C programs in `tests/c/`, compiled with the system compilers against the built
//! `libclockbound` and run against segments a simulated daemon writes.

mod support;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use clockbound_shm::ClockStatus;
use support::{Daemon, Layout, Link, compile, counter_hz, run, stdout, write_segment};

/// 8 threads on one context while the daemon updates the segment every millisecond; the
/// context is closed under them and each must stop on CONTEXT_CLOSED.
fn threads_on_one_context(layout: Layout) {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("threads");
    compile(&[Path::new("threads.c")], &program, "c11", Link::Shared);
    let segment = dir.path().join("shm");
    let daemon = Daemon::start(&segment, layout);
    let output = run(
        &program,
        &[segment.as_os_str(), OsStr::new("8"), OsStr::new("300")],
    );
    let updates = daemon.stop();
    let text = stdout(&output);
    eprintln!("{layout:?}: {} ({updates} updates)", text.trim());
    assert!(text.contains("threads=8"), "{text}");
    assert!(text.contains("anomalies=0"), "{text}");
    assert!(updates > 10, "the writer published {updates} updates only");
}

#[test]
fn threads_share_one_context_layout2() {
    threads_on_one_context(Layout::V2);
}

#[test]
fn threads_share_one_context_layout3() {
    if counter_hz().is_none() {
        eprintln!("skipped: no CPU counter for layout 3 on this machine");
        return;
    }
    threads_on_one_context(Layout::V3);
}

/// Every error path, with the library linked statically.
#[test]
fn error_paths() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("errors");
    compile(&[Path::new("errors.c")], &program, "c11", Link::Static);
    write_segment(
        &dir.path().join("good"),
        Layout::V2,
        ClockStatus::Synchronized,
    );
    write_segment(
        &dir.path().join("unknown"),
        Layout::V2,
        ClockStatus::Unknown,
    );
    fs::write(dir.path().join("malformed"), [0xAB_u8; 80]).unwrap();
    let output = run(&program, &[dir.path().as_os_str()]);
    assert!(stdout(&output).contains("all checks passed"));
}

/// A program in the released header's style, as GNU C89, C99 and C11, against each layout.
#[test]
fn released_header_usage() {
    let dir = tempfile::tempdir().unwrap();
    let mut layouts = vec![Layout::V2];
    if counter_hz().is_some() {
        layouts.push(Layout::V3);
    }
    for std in ["gnu89", "c99", "c11"] {
        let program = dir.path().join(format!("released_usage_{std}"));
        compile(
            &[Path::new("released_usage.c")],
            &program,
            std,
            Link::Shared,
        );
        for layout in &layouts {
            let segment = dir.path().join(format!("{layout:?}"));
            write_segment(&segment, *layout, ClockStatus::Synchronized);
            let output = run(
                &program,
                &[segment.as_os_str(), OsStr::new("/dev/vmclock0")],
            );
            assert!(
                stdout(&output).contains("status SYNCHRONIZED"),
                "{}",
                stdout(&output)
            );
        }
    }
}

/// The header included from C++ (`extern "C"` guards, `<cerrno>` first).
#[test]
fn cpp_includes_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("cpp_guard");
    compile(
        &[Path::new("cpp_guard.cpp")],
        &program,
        "c++11",
        Link::Shared,
    );
    let missing = dir.path().join("missing");
    let output = run(&program, &[missing.as_os_str()]);
    assert!(stdout(&output).contains("c++: ok"));
}

/// The C examples in `ffi/README.md` and in the crate's `README.md`, compiled from the
/// READMEs themselves and run.
#[test]
fn readme_examples() {
    for readme in [
        support::crate_dir().join("README.md"),
        support::crate_dir().join("..").join("README.md"),
    ] {
        let text = fs::read_to_string(&readme).unwrap();
        let start = text.find("```c\n").expect("a C block in the README") + "```c\n".len();
        let end = start + text[start..].find("```").expect("the block's end");
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("readme_example.c");
        fs::write(&source, &text[start..end]).unwrap();
        let program = dir.path().join("readme_example");
        compile(&[&source], &program, "c11", Link::Shared);
        let segment = dir.path().join("shm0");
        let daemon = Daemon::start(&segment, Layout::V2);
        let output = run(&program, &[segment.as_os_str()]);
        daemon.stop();
        assert!(
            stdout(&output).contains("true time is in ["),
            "{}",
            readme.display()
        );
    }
}

/// The benchmark builds and runs (a few thousand calls: a smoke test, not a measurement).
#[test]
fn bench_runs_briefly() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("bench");
    compile(&[Path::new("bench.c")], &program, "c11", Link::Shared);
    let segment = dir.path().join("shm0");
    write_segment(&segment, Layout::V2, ClockStatus::Synchronized);
    let output = run(&program, &[segment.as_os_str(), OsStr::new("2000")]);
    let text = stdout(&output);
    assert!(
        text.contains("1 thread:") && text.contains("2 threads:"),
        "{text}"
    );
    let one = dir.path().join("bench_one_context");
    compile(
        &[Path::new("bench_one_context.c")],
        &one,
        "c11",
        Link::Shared,
    );
    let output = run(&one, &[segment.as_os_str(), OsStr::new("2000")]);
    assert!(
        stdout(&output).contains("ns per clockbound_now"),
        "{}",
        stdout(&output)
    );
}
