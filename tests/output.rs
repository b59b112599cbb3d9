//! Promise 9: what runs print shows up in the test's own output.
//!
//! Each check runs a helper test of this binary in a new process, as a test
//! runner would, and reads what that process printed.

mod common;

use common::run_self;
use hermetic::Sandbox;

const HELPER_ENV: &str = "HERMETIC_OUTPUT_HELPER";

/// Prints from inside a sandbox in every way a test might, then fails so
/// that libtest shows what it captured.
#[test]
#[ignore = "helper: run by the other tests of this file"]
fn helper_prints_inside_then_fails() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let ns = Sandbox::new().unwrap();
    ns.run(|| {
        println!("marker-println");
        eprintln!("marker-eprintln");
        print!("marker-no-newline");
        std::thread::spawn(|| println!("marker-thread"))
            .join()
            .unwrap();
        let status = std::process::Command::new("sh")
            .args([
                "-c",
                "echo marker-subprocess-stdout; echo marker-subprocess-stderr >&2",
            ])
            .status()
            .unwrap();
        assert!(status.success());
    });
    let server = ns
        .spawn(|| {
            println!("marker-spawned");
        })
        .unwrap();
    server.join().unwrap();
    // A process the run leaves behind prints after the run has returned.
    ns.run(|| {
        std::process::Command::new("sh")
            .args(["-c", "(sleep 0.2; echo marker-late-daemon) &"])
            .status()
            .unwrap();
    });
    // Wait until it has printed and exited (its command line carries the
    // marker), however slow the machine: what it wrote is then in the pipe.
    assert!(
        common::eventually(|| common::pids_with_marker("marker-late-daemon").is_empty()),
        "the late daemon never finished"
    );
    drop(ns);
    panic!("helper fails on purpose");
}

const MARKERS: [&str; 8] = [
    "marker-println",
    "marker-eprintln",
    "marker-no-newline",
    "marker-thread",
    "marker-subprocess-stdout",
    "marker-subprocess-stderr",
    "marker-spawned",
    "marker-late-daemon",
];

#[test]
fn captured_output_is_shown_when_the_test_fails() {
    // libtest's default: output captured per test, shown on failure. The
    // runner runs the closure with thread-local storage free of libtest's
    // capture; the second time, on a thread of its own, as it does where it
    // cannot (HERMETIC_RUNNER_THREAD=1 asks for that).
    for way in ["0", "1"] {
        captured_output_is_shown(&[(HELPER_ENV, "1"), ("HERMETIC_RUNNER_THREAD", way)]);
    }
}

fn captured_output_is_shown(env: &[(&str, &str)]) {
    let out = run_self("helper_prints_inside_then_fails", env, &[]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest prints the failed test's captured output under this heading.
    let captured = stdout
        .split_once("---- helper_prints_inside_then_fails stdout ----")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no captured section in:\n{stdout}"));
    for marker in MARKERS {
        assert!(
            captured.contains(marker),
            "{marker} missing from the captured output:\n{stdout}"
        );
    }
}

#[test]
fn uncaptured_output_reaches_the_test_process_streams() {
    // What nextest does: --nocapture, one test per process, streams read by
    // the runner.
    let out = run_self(
        "helper_prints_inside_then_fails",
        &[(HELPER_ENV, "1")],
        &["--nocapture"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for marker in [
        "marker-println",
        "marker-no-newline",
        "marker-thread",
        "marker-subprocess-stdout",
        "marker-spawned",
    ] {
        assert!(
            stdout.contains(marker),
            "{marker} missing from stdout:\n{stdout}"
        );
    }
    for marker in ["marker-eprintln", "marker-subprocess-stderr"] {
        assert!(
            stderr.contains(marker),
            "{marker} missing from stderr:\n{stderr}"
        );
    }
}

#[test]
fn a_run_printing_more_than_a_pipe_holds_does_not_block() {
    // 1.2 MB, twenty times what a pipe buffers: the run drains as it goes.
    let ns = Sandbox::new().unwrap();
    let line = "x".repeat(59);
    let got = ns.run(move || {
        for _ in 0..20_000 {
            println!("{line}");
        }
        7
    });
    assert_eq!(got, 7);
}

#[test]
fn processes_a_run_leaves_behind_can_print_freely() {
    // A background writer that outlives its run prints far more than a pipe
    // holds, with no run in flight to drain it: a forwarding thread must.
    // It says it finished through a FIFO of the host's, bound in: waiting
    // for that needs no run (runs drain the pipes too).
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("done");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Read and write: opening does not wait for the writer, and no
    // end-of-file comes before it writes.
    let done = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let ns = Sandbox::builder()
        .bind(dir.path(), dir.path())
        .build()
        .unwrap();
    let script = format!(
        "(head -c 300000 /dev/zero | tr '\\0' x; echo; echo done > {}) >/dev/stdout 2>&1 &",
        fifo.display()
    );
    ns.run(move || {
        std::process::Command::new("sh")
            .args(["-c", &script])
            .status()
            .unwrap();
    });
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(
        done.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(60_000u16)).unwrap();
    assert_eq!(
        ready, 1,
        "the background writer never finished within 60 s: its output was not drained"
    );
}

/// Prints a line in two parts with a run between them, without capture.
#[test]
#[ignore = "helper, run by a_line_begun_before_a_run_prints_once"]
fn helper_prints_half_a_line_around_a_run() {
    print!("marker-half-line ");
    let ns = Sandbox::new().unwrap();
    ns.run(|| println!("marker-inside"));
    println!("marker-end");
}

#[test]
fn a_line_begun_before_a_run_prints_once() {
    // Without capture, "marker-half-line " waits in stdout's buffer when
    // the run forks: it must not be printed by the copy too.
    let out = run_self(
        "helper_prints_half_a_line_around_a_run",
        &[],
        &["--nocapture"],
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("marker-half-line").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("marker-inside").count(), 1, "{stdout}");
}
