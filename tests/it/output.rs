//! What runs print shows up in the test's own output.
//!
//! Each check runs a helper test of this binary in a new process, as a test
//! runner would, and reads what that process printed.

use crate::common;

use crate::common::run_self;
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
        .split_once("helper_prints_inside_then_fails stdout ----")
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

const FLOOD_ENV: &str = "HERMETIC_FLOOD_HELPER";

/// Writes `name-flood-start`, then numbered lines `name N name`, for ever
/// (the name at both ends: where libtest's capture mixes two streams
/// mid-line, no mixed line passes for one of them).
fn flood_into(w: impl std::io::Write, name: &str) -> ! {
    use std::io::Write;
    let mut w = std::io::BufWriter::with_capacity(64 << 10, w);
    let _ = writeln!(w, "{name}-flood-start");
    let mut i = 0u64;
    loop {
        let _ = writeln!(w, "{name} {i} {name}");
        i += 1;
    }
}

/// Floods stdout and stderr, each from a thread of its own, for ever.
fn flood() -> ! {
    std::thread::spawn(|| flood_into(std::io::stderr(), "err"));
    flood_into(std::io::stdout(), "out")
}

/// Floods stdout and stderr from inside a sandbox until a 2 s timeout stops
/// it, in the way `HERMETIC_FLOOD_HELPER` names; prints how much this
/// process's peak memory grew, then fails so that libtest shows what it
/// captured.
#[test]
#[ignore = "helper: run by the flood tests of this file"]
fn helper_floods_until_its_timeout() {
    let Some(way) = std::env::var(FLOOD_ENV).ok() else {
        return;
    };
    let timeout = std::time::Duration::from_secs(2);
    let ns = Sandbox::builder().timeout(timeout).build().unwrap();
    let before = common::self_status("VmHWM:");
    match way.as_str() {
        "run" => {
            let err = ns.try_run(|| -> u32 { flood() }).unwrap_err();
            assert!(matches!(err, hermetic::Error::TimedOut { .. }), "{err:?}");
        }
        "spawn" => {
            let err = ns.spawn(|| -> () { flood() }).unwrap().join().unwrap_err();
            assert!(matches!(err, hermetic::Error::TimedOut { .. }), "{err:?}");
        }
        "program" => {
            // Programs a run leaves behind flood until the sandbox goes;
            // the run ends at its timeout, the test goes on meanwhile.
            let err = ns
                .try_run(|| -> u32 {
                    std::process::Command::new("sh")
                        .args([
                            "-c",
                            "(echo out-flood-start; yes out) & \
                             (echo err-flood-start; yes err) >&2 & wait",
                        ])
                        .status()
                        .unwrap();
                    0
                })
                .unwrap_err();
            assert!(matches!(err, hermetic::Error::TimedOut { .. }), "{err:?}");
        }
        "isolate" => {
            let isolated = std::panic::catch_unwind(|| {
                Sandbox::builder().timeout(timeout).isolate_test(|| flood());
            });
            assert!(isolated.is_err(), "the flooding body passed");
        }
        other => panic!("unknown way {other}"),
    }
    drop(ns);
    let after = common::self_status("VmHWM:");
    println!("flood-peak-memory-growth-kib {}", after - before);
    panic!("helper fails on purpose");
}

/// The numbers of the lines `name N name` in `text`, in order.
fn numbers(text: &str, name: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .strip_suffix(name)?
                .strip_suffix(' ')?
                .parse()
                .ok()
        })
        .collect()
}

/// Checks one stream's kept output (or both, in one capture): the head
/// with its start, a line saying how much was dropped, then a tail of later
/// lines than the head's.
fn assert_head_dropped_tail(text: &str, name: &str, numbered: bool) {
    const DROPPED: &str = "bytes of output dropped here";
    assert!(
        text.contains(&format!("{name}-flood-start")),
        "no {name}-flood-start in the kept output:\n{}",
        &text[..text.len().min(2000)]
    );
    let (head, tail) = text
        .split_once(DROPPED)
        .unwrap_or_else(|| panic!("no dropped-bytes line for {name}"));
    let dropped: u64 = head
        .rsplit_once("[hermetic: ")
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no byte count in the dropped line for {name}"));
    assert!(dropped > 0);
    if numbered {
        let last_of_head = numbers(head, name).into_iter().max().unwrap_or(0);
        let in_tail = numbers(tail, name);
        assert!(
            in_tail.iter().any(|&n| n > last_of_head + 1000),
            "the tail of {name} holds no later lines than its head (up to {last_of_head})"
        );
    } else {
        assert!(tail.lines().any(|l| l == name), "no tail of {name}");
    }
}

fn flood_is_bounded(way: &str) {
    let numbered = way != "program";
    // A backtrace of the isolated test's failure, caught in the helper,
    // would take tens of MiB of debug info: not what is measured here.
    let env = [(FLOOD_ENV, way), ("RUST_BACKTRACE", "0")];
    // libtest's capture: what is kept of both streams, in one section.
    let out = run_self("helper_floods_until_its_timeout", &env, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("helper fails on purpose"),
        "the helper failed otherwise:\n{}\n{}",
        &stdout[stdout.len().saturating_sub(3000)..],
        String::from_utf8_lossy(&out.stderr)
    );
    let growth: u64 = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("flood-peak-memory-growth-kib ")?
                .parse()
                .ok()
        })
        .expect("the helper says how much its memory grew");
    println!("{way}: the test process's peak memory grew by {growth} KiB");
    assert!(
        growth < 64 << 10,
        "{way}: the test process grew by {growth} KiB under a flood"
    );
    assert!(stdout.len() < 16 << 20, "{} bytes kept", stdout.len());
    // One line per stream and run; programs left flooding after their run
    // add more, at the sandbox's drop.
    let dropped_lines = stdout.matches("bytes of output dropped here").count();
    assert!(
        dropped_lines == 2 || !numbered && dropped_lines > 2,
        "{dropped_lines} dropped-bytes lines"
    );
    let err_start = stdout.find("err-flood-start").expect("err-flood-start");
    assert_head_dropped_tail(&stdout, "out", numbered);
    assert_head_dropped_tail(&stdout[err_start..], "err", numbered);
    // Without capture (nextest): each stream's own.
    let out = run_self("helper_floods_until_its_timeout", &env, &["--nocapture"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_head_dropped_tail(&stdout, "out", numbered);
    assert_head_dropped_tail(&stderr, "err", numbered);
}

#[test]
fn a_flooding_run_stops_at_its_timeout_and_keeps_head_and_tail() {
    flood_is_bounded("run");
}

#[test]
fn a_flooding_spawned_closure_keeps_head_and_tail() {
    flood_is_bounded("spawn");
}

#[test]
fn programs_flooding_after_their_run_keep_head_and_tail() {
    flood_is_bounded("program");
}

#[test]
fn a_flooding_isolated_test_keeps_head_and_tail() {
    flood_is_bounded("isolate");
}
