//! `isolate_test_async`: async test bodies in a fresh process inside a new
//! sandbox, on the runtime the test's attribute makes there.
//!
//! A separate binary: its tests are re-executed one by one (by name) in
//! their sandboxes, and each such process must hold only this file's tests.

mod common;

use std::time::Duration;

use rstest::rstest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server on 127.0.0.1:8080 in a task of its own, asked `n` by a client
/// in this one; its answer (the server's is `n + 1`).
async fn ask_a_server_on_8080(n: u8) -> u8 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080")
        .await
        .unwrap();
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut asked = [0u8; 1];
        conn.read_exact(&mut asked).await.unwrap();
        conn.write_all(&[asked[0] + 1]).await.unwrap();
    });
    let mut client = tokio::net::TcpStream::connect("127.0.0.1:8080")
        .await
        .unwrap();
    client.write_all(&[n]).await.unwrap();
    let mut answer = [0u8; 1];
    client.read_exact(&mut answer).await.unwrap();
    server.await.unwrap();
    answer[0]
}

/// The pattern that hangs when a runtime is built inside a forked closure
/// while other tests' runtimes are busy: a server on a fixed port in a
/// task, a client in another, a multi-thread runtime. Eight copies at once
/// (cargo test's threads, nextest's processes) all bind 127.0.0.1:8080.
#[rstest]
#[case::a(0)]
#[case::b(1)]
#[case::c(2)]
#[case::d(3)]
#[case::e(4)]
#[case::f(5)]
#[case::g(6)]
#[case::h(7)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_and_its_client_on_a_fixed_port(#[case] n: u8) {
    hermetic::isolate_test_async(async move {
        assert_eq!(ask_a_server_on_8080(n).await, n + 1);
        // Blocking work beside the runtime, too.
        let hostname =
            tokio::task::spawn_blocking(|| std::fs::read_to_string("/proc/sys/kernel/hostname"))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(hostname, "sandbox\n");
    })
    .await;
}

#[tokio::test]
async fn a_current_thread_runtime_works_too_and_keeps_running_while_it_waits() {
    // While the test process waits for the isolated body, other futures of
    // the same single-threaded runtime go on: the wait blocks no thread of
    // the runtime's.
    let done = std::sync::atomic::AtomicBool::new(false);
    let ticks = std::sync::atomic::AtomicU32::new(0);
    let isolated = async {
        hermetic::isolate_test_async(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:8080")
                .await
                .unwrap();
            assert_eq!(l.local_addr().unwrap().port(), 8080);
            // Long enough for the test process to have polled the ticker.
            tokio::time::sleep(Duration::from_millis(200)).await;
        })
        .await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let ticker = async {
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::join!(isolated, ticker);
    assert!(
        ticks.load(std::sync::atomic::Ordering::SeqCst) > 1,
        "the runtime's only thread was blocked while the isolated test ran"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[should_panic(expected = "the async body failed: 42")]
async fn a_panic_in_the_body_fails_the_test_with_its_message() {
    hermetic::isolate_test_async(async {
        tokio::task::yield_now().await;
        panic!("the async body failed: {}", 42);
    })
    .await;
}

#[tokio::test]
async fn the_panic_names_where_it_happened_inside() {
    let failed = tokio::task::spawn_blocking(|| {
        common::run_self(
            "helper_panics_after_an_await",
            &[("HERMETIC_ASYNC_HELPER", "1")],
            &[],
        )
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&failed.stdout).into_owned()
        + &String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{out}");
    assert!(
        out.contains("panicked inside the isolated test at tests/isolate_async.rs:"),
        "{out}"
    );
    assert!(out.contains("after an await"), "{out}");
}

#[tokio::test]
#[ignore = "helper: run by the_panic_names_where_it_happened_inside"]
async fn helper_panics_after_an_await() {
    if std::env::var_os("HERMETIC_ASYNC_HELPER").is_none() {
        return;
    }
    hermetic::isolate_test_async(async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        panic!("after an await");
    })
    .await;
}

#[tokio::test]
#[ignore = "helper: run by code_after_the_call_runs_in_the_test_process_only"]
async fn helper_code_after_the_call() {
    hermetic::isolate_test_async(async {}).await;
    println!("marker-after-the-call");
}

#[tokio::test]
async fn code_after_the_call_runs_in_the_test_process_only() {
    // Printed by the test process; the re-executed one exits once the body
    // has ended, and its output is forwarded into the helper's.
    let out = tokio::task::spawn_blocking(|| {
        common::run_self("helper_code_after_the_call", &[], &["--nocapture"])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout.matches("marker-after-the-call").count(),
        1,
        "{stdout}"
    );
}

/// The pattern `isolate_test_async` replaces, kept to measure how often it
/// hangs (README, "Async code"): a multi-thread `#[tokio::test]` whose
/// runtime is busy while `run` forks the test process for a closure that
/// builds a runtime of its own. Not part of the suite: a hang is its
/// expected failure. `HERMETIC_TIMEOUT=10 cargo nextest run --test
/// isolate_async --run-ignored only unsafe_pattern`.
#[rstest]
#[case::a(0)]
#[case::b(1)]
#[case::c(2)]
#[case::d(3)]
#[case::e(4)]
#[case::f(5)]
#[case::g(6)]
#[case::h(7)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measures the unsafe pattern; may hang until the run's timeout"]
async fn unsafe_pattern_a_runtime_built_in_a_forked_closure(#[case] n: u8) {
    // The test's runtime is busy: tasks that park and wake its workers,
    // and its blocking pool, whose threads park on condition variables
    // (parking_lot's global table, with tokio's `parking_lot` feature).
    let busy: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async {
                for _ in 0..500 {
                    tokio::time::sleep(Duration::from_micros(50)).await;
                    tokio::task::spawn_blocking(std::thread::yield_now)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let answer = tokio::task::spawn_blocking(move || {
        let ns = hermetic::Sandbox::new().unwrap();
        ns.try_run(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(ask_a_server_on_8080(n))
        })
    })
    .await
    .unwrap();
    for b in busy {
        b.await.unwrap();
    }
    assert_eq!(answer.unwrap(), n + 1);
}

/// A body may return what a `#[test]` may: `Ok(())` passes...
#[tokio::test]
async fn a_body_returning_ok_passes() {
    hermetic::isolate_test_async(async {
        tokio::task::yield_now().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
        assert_eq!(listener.local_addr()?.port(), 8080);
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// ... and an `Err` fails the test (its `Error: ...` in the output).
#[tokio::test]
#[should_panic(expected = "the isolated test's body returned a failure")]
async fn a_body_returning_an_error_fails_the_test() {
    hermetic::isolate_test_async(async {
        tokio::task::yield_now().await;
        std::fs::read("/nonexistent/hermetic-async-body")?;
        Ok::<(), std::io::Error>(())
    })
    .await;
}
