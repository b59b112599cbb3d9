//! Whole tests in a sandbox: `isolate_test` re-executes the test for its
//! body inside a new sandbox, and its outcome is the test's.

use crate::common;

use hermetic::isolate_test;
use rstest::rstest;

/// Eight cases at once, each serving on the same port with a multi-thread
/// tokio runtime (parking_lot locks and all) built inside, while another
/// test keeps a busy runtime of its own in the test process: no lock of
/// the test process is copied into the bodies, so nothing can hang.
#[rstest]
#[case(1)]
#[case(2)]
#[case(3)]
#[case(4)]
#[case(5)]
#[case(6)]
#[case(7)]
#[case(8)]
fn parallel_cases_serve_on_the_same_port(#[case] n: u8) {
    isolate_test(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:8080")
                .await
                .unwrap();
            let server = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                s.write_all(&[n]).await.unwrap();
            });
            let mut c = tokio::net::TcpStream::connect("127.0.0.1:8080")
                .await
                .unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).await.unwrap();
            server.await.unwrap();
            b[0]
        });
        assert_eq!(got, n);
    });
}

#[test]
fn a_busy_runtime_in_the_test_process_meanwhile() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                tokio::spawn(async move {
                    let mut x = i as u64;
                    for _ in 0..2000 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        tokio::task::yield_now().await;
                    }
                    x
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    // And an isolated body beside it.
    isolate_test(|| {
        assert_eq!(
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
            "sandbox\n"
        )
    });
}

#[test]
fn the_body_runs_in_a_sandbox_of_its_own() {
    let me = std::process::id();
    isolate_test(move || {
        // `me` is what the re-executed process read before the call (code
        // before the call runs in both): inside, PID 1 is the sandbox's
        // init, the process has a small pid of its own, the only link is lo.
        assert_eq!(
            std::fs::read_to_string("/proc/1/comm").unwrap(),
            "hermetic-init\n"
        );
        assert_eq!(std::process::id(), me);
        assert!(me < 10, "pid {me}: not in a PID namespace of its own");
        let links: Vec<_> = std::fs::read_dir("/sys/class/net")
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(links, ["lo"]);
        // Started by the init process itself: no relay between them that
        // the body could kill or stop (kill -KILL -1 reaches every process
        // of the sandbox but the init process).
        assert_eq!(std::os::unix::process::parent_id(), 1);
    });
}

#[test]
fn options_come_from_a_builder() {
    hermetic::Sandbox::builder()
        .hostname("isolated")
        .isolate_test(|| {
            assert_eq!(
                std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
                "isolated\n"
            );
        });
}

#[test]
#[ignore = "helper, run by a_failing_body_fails_the_test_with_its_message_and_location"]
fn helper_isolated_body_panics() {
    isolate_test(|| {
        println!("marker-before-the-panic");
        let answer = 41;
        assert_eq!(answer, 42, "marker-the-answer-was-{answer}");
    });
}

#[test]
fn a_failing_body_fails_the_test_with_its_message_and_location() {
    let out = common::run_self("helper_isolated_body_panics", &[], &["--nocapture"]);
    assert!(!out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("panicked inside the isolated test at tests/it/isolate.rs:"),
        "{stderr}"
    );
    assert!(stderr.contains("marker-the-answer-was-41"), "{stderr}");
    assert!(stdout.contains("marker-before-the-panic"), "{stdout}");
    // The marked line that carries the panic is not shown.
    assert!(!stderr.contains("hermetic-isolated-panic"), "{stderr}");
}

#[test]
#[ignore = "helper, run by a_body_that_dies_fails_the_test_naming_the_signal"]
fn helper_isolated_body_aborts() {
    isolate_test(|| std::process::abort());
}

#[test]
fn a_body_that_dies_fails_the_test_naming_the_signal() {
    let out = common::run_self("helper_isolated_body_aborts", &[], &["--nocapture"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("killed by SIGABRT"), "{stderr}");
}

#[test]
#[ignore = "helper, run by a_body_that_exits_halfway_fails_the_test"]
fn helper_isolated_body_exits_halfway() {
    isolate_test(|| {
        // What the body's output said when it ended, before the result had
        // a channel of its own: no longer anything but output.
        eprintln!("\u{1}hermetic-isolated-done");
        println!("marker-halfway");
        std::process::exit(0);
    });
}

#[test]
fn a_body_that_exits_halfway_fails_the_test() {
    let out = common::run_self("helper_isolated_body_exits_halfway", &[], &["--nocapture"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("exited with status 0 before the body ended, without a result"),
        "{stderr}"
    );
    assert!(stdout.contains("marker-halfway"), "{stdout}");
}

#[test]
fn a_program_the_body_leaves_running_cannot_hang_the_test() {
    // The program holds the body's stdout and stderr for an hour; the test
    // ends when the body does (a hang would fail at the 60 s timeout).
    hermetic::Sandbox::builder()
        .timeout(std::time::Duration::from_secs(60))
        .isolate_test(|| {
            // Left running on purpose: never waited for.
            let program = std::process::Command::new("sh")
                .args(["-c", "sleep 3600; : marker-left-running-by-the-body"])
                .spawn()
                .unwrap();
            std::mem::forget(program);
        });
    // And it died with the sandbox.
    assert!(common::eventually(|| common::pids_with_marker(
        "marker-left-running-by-the-body"
    )
    .is_empty()));
}

#[test]
#[ignore = "helper, run by code_after_the_call_runs_only_in_the_test_process"]
fn helper_code_after_the_call() {
    println!("marker-before-the-call");
    isolate_test(|| println!("marker-in-the-body"));
    println!("marker-after-the-call");
}

#[test]
fn code_after_the_call_runs_only_in_the_test_process() {
    // Without capture, so that whatever the re-executed process prints
    // reaches this test through the isolated test's output.
    let out = common::run_self("helper_code_after_the_call", &[], &["--nocapture"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        stdout.matches("marker-before-the-call").count(),
        2,
        "{stdout}"
    );
    assert_eq!(stdout.matches("marker-in-the-body").count(), 1, "{stdout}");
    assert_eq!(
        stdout.matches("marker-after-the-call").count(),
        1,
        "{stdout}"
    );
}

#[test]
#[should_panic(expected = "marker-expected-panic")]
fn should_panic_works_on_the_body() {
    isolate_test(|| panic!("marker-expected-panic"));
}

#[test]
#[ignore = "helper, run by each_call_runs_its_own_body"]
fn helper_two_calls() {
    isolate_test(|| println!("marker-first-body"));
    println!("marker-between-the-calls");
    isolate_test(|| println!("marker-second-body"));
}

#[test]
fn each_call_runs_its_own_body() {
    let out = common::run_self("helper_two_calls", &[], &["--nocapture"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.matches("marker-first-body").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("marker-second-body").count(), 1, "{stdout}");
    // In the test process, and before the second call in its process.
    assert_eq!(
        stdout.matches("marker-between-the-calls").count(),
        2,
        "{stdout}"
    );
}

/// A closure of another sandbox, forked while `isolate_test` starts its
/// process, must not hold the result channel: it could write "the body
/// returned" for a body that panicked. An attacker thread runs closures
/// that write a forged success frame into every pipe they can write,
/// while this test's always-panicking body is isolated again and again.
///
/// In a process of its own (the helper below): the attacker writes into
/// every pipe its closures inherit, which in a test process shared with
/// other tests includes their programs' std pipes.
#[test]
fn no_closure_of_another_sandbox_can_forge_the_result() {
    let out = common::run_self(
        "helper_forges_results_while_isolating",
        &[("HERMETIC_FORGE_HELPER", "1")],
        &["--nocapture"],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "helper, run by no_closure_of_another_sandbox_can_forge_the_result"]
fn helper_forges_results_while_isolating() {
    if std::env::var_os("HERMETIC_FORGE_HELPER").is_none() {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    // Only in the test process: the re-executed one runs the body.
    let attacker = (!common::in_isolated_body()).then(|| {
        std::thread::spawn(|| {
            let ns = hermetic::Sandbox::new().unwrap();
            while !DONE.load(Ordering::SeqCst) {
                let _ = ns.try_run(|| {
                    let frame = [b'S', 1, 0, 0, 0, 0, 0, 0, 0, 0];
                    for fd in 3..256 {
                        // SAFETY: fcntl and write on fd numbers; a write to
                        // a pipe this process may write is the attack.
                        unsafe {
                            let fl = libc::fcntl(fd, libc::F_GETFL);
                            if fl >= 0 && fl & libc::O_ACCMODE == libc::O_WRONLY {
                                libc::write(fd, frame.as_ptr().cast(), frame.len());
                            }
                        }
                    }
                });
            }
        })
    });
    let mut forged = 0;
    for _ in 0..40 {
        let outcome = std::panic::catch_unwind(|| {
            hermetic::isolate_test(|| panic!("the body failed, as it always does"));
        });
        forged += usize::from(outcome.is_ok());
    }
    DONE.store(true, Ordering::SeqCst);
    if let Some(attacker) = attacker {
        attacker.join().unwrap();
    }
    assert_eq!(
        forged, 0,
        "{forged} of 40 failing bodies were reported as passed"
    );
}

/// A test binary where the sandbox's own `/tmp` and `/var/tmp` would hide
/// it, with nothing marking its target dir (no `CARGO_TARGET_DIR`, no
/// `CACHEDIR.TAG` or `.rustc_info.json` above it), as a nextest archive
/// extracted there can be: `isolate_test` still starts it inside.
#[test]
fn a_test_binary_under_the_sandbox_s_own_tmp_dirs_is_started() {
    for base in ["/tmp", "/var/tmp"] {
        let copy = common::BinaryCopy::under(base, "isolate");
        let out = copy.run_helper("helper_two_calls");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{base}: {stdout}\n{stderr}");
        assert_eq!(stdout.matches("marker-first-body").count(), 1, "{stdout}");
        assert_eq!(stdout.matches("marker-second-body").count(), 1, "{stdout}");
    }
}

/// A body that returns `Ok(())` passes; one whose `?` meets an error
/// fails the test with the error's `Debug` text, as a `#[test]` returning
/// a `Result` does.
#[test]
fn a_body_may_return_a_result_and_use_the_question_mark() {
    // One name for both processes (code before the call runs in each).
    let file = std::env::current_dir()
        .unwrap()
        .join("hermetic-isolate-body-result");
    let inside = file.clone();
    isolate_test(move || -> std::io::Result<()> {
        // The test's own tree, copy-on-write.
        std::fs::write(&inside, "inside\n")?;
        assert_eq!(std::fs::read_to_string(&inside)?, "inside\n");
        Ok(())
    });
    assert!(!file.exists());
}

#[test]
#[ignore = "helper, run by a_body_returning_an_error_fails_the_test_with_it"]
fn helper_isolated_body_returns_an_error() {
    isolate_test(|| -> Result<(), std::io::Error> {
        println!("marker-before-the-error");
        std::fs::read("/nonexistent/hermetic-body-result")?;
        println!("marker-after-the-error");
        Ok(())
    });
}

#[test]
fn a_body_returning_an_error_fails_the_test_with_it() {
    let out = common::run_self(
        "helper_isolated_body_returns_an_error",
        &[],
        &["--nocapture"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("Error: Os { code: 2, kind: NotFound")
            && stderr.contains("the isolated test's body returned a failure"),
        "{stderr}"
    );
    assert!(stdout.contains("marker-before-the-error"), "{stdout}");
    assert!(!stdout.contains("marker-after-the-error"), "{stdout}");
}
