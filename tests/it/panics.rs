//! A panic inside fails the test with its message and location.

use crate::common;

use hermetic::{Error, Sandbox, isolated};
use rstest::rstest;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Threads of the test process that do something over and over while runs
/// are forked, until dropped (also when a failed assertion unwinds the
/// test) or [`finish`](Noise::finish)ed.
struct Noise {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Noise {
    fn start(threads: usize, work: impl Fn() + Clone + Send + 'static) -> Noise {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let (stop, work) = (Arc::clone(&stop), work.clone());
                std::thread::spawn(move || {
                    let mut done = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        work();
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        Noise { stop, threads }
    }

    /// Stops the threads; that each did its work at least once.
    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in std::mem::take(&mut self.threads) {
            assert!(thread.join().expect("a noise thread") > 0);
        }
    }
}

impl Drop for Noise {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `runs` runs in `ns` whose closure starts a thread that panics: each is
/// reported as the closure's panic.
fn a_thread_s_panic_is_reported(ns: &Sandbox, runs: usize) {
    for i in 0..runs {
        let err = ns
            .try_run(|| {
                let worker = std::thread::spawn(|| -> u8 { panic!("worker died") });
                worker.join().expect("worker joined")
            })
            .unwrap_err();
        assert!(
            matches!(&err, Error::Panicked { message, .. } if message.contains("worker joined")),
            "run {i}: {err}"
        );
    }
}

#[rstest]
#[should_panic(expected = "the answer was 41")]
fn should_panic_sees_the_message(#[from(isolated)] ns: Sandbox) {
    ns.run(|| {
        let answer = 41;
        assert_eq!(answer, 42, "the answer was {answer}");
    });
}

#[rstest]
fn try_run_reports_message_and_location(#[from(isolated)] ns: Sandbox) {
    let line = line!() + 1;
    let err = ns.try_run(|| -> u8 { panic!("boom {}", 7) }).unwrap_err();
    let Error::Panicked {
        message, location, ..
    } = &err
    else {
        panic!("expected a panic, got {err:?}");
    };
    assert_eq!(message, "boom 7");
    let location = location.as_ref().expect("a location");
    assert_eq!(location.file, file!());
    assert_eq!(location.line, line);
    assert_eq!(location.column, 37);
    assert_eq!(
        err.to_string(),
        format!(
            "panicked inside the sandbox at {}:{line}:37:\nboom 7",
            file!()
        )
    );
}

#[rstest]
fn run_reraises_with_message_and_location(#[from(isolated)] ns: Sandbox) {
    let line = line!() + 2;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ns.run::<_, ()>(|| panic!("inner failure"))
    }))
    .unwrap_err();
    let text = caught
        .downcast_ref::<String>()
        .cloned()
        .expect("a String payload");
    assert!(text.contains("inner failure"), "{text}");
    assert!(text.contains(&format!("{}:{line}:", file!())), "{text}");
}

#[rstest]
fn str_string_and_other_payloads(#[from(isolated)] ns: Sandbox) {
    let msg = |r: Result<(), Error>| match r.unwrap_err() {
        Error::Panicked { message, .. } => message,
        e => panic!("expected a panic, got {e:?}"),
    };
    assert_eq!(
        msg(ns.try_run::<_, ()>(|| panic!("static str"))),
        "static str"
    );
    assert_eq!(
        msg(ns.try_run::<_, ()>(|| std::panic::panic_any(String::from("owned")))),
        "owned"
    );
    assert_eq!(
        msg(ns.try_run::<_, ()>(|| std::panic::panic_any(42u32))),
        "Box<dyn Any>"
    );
}

#[rstest]
fn a_panic_in_a_thread_inside_is_reported_by_the_closure(#[from(isolated)] ns: Sandbox) {
    let err = ns
        .try_run(|| {
            let h = std::thread::spawn(|| -> u8 { panic!("worker died") });
            h.join().expect("worker joined")
        })
        .unwrap_err();
    assert!(err.to_string().contains("worker joined"), "{err}");
}

#[rstest]
fn the_sandbox_survives_a_panic(#[from(isolated)] ns: Sandbox) {
    let _ = ns.try_run::<_, ()>(|| panic!("first"));
    assert_eq!(ns.run(|| 5), 5);
}

/// A thread of the test process that is printing a panic when a run starts
/// holds std's panic-output lock at that moment; the run's process is a
/// copy, and a panic in it must still be reported, not wait for that lock
/// forever.
#[test]
fn panics_elsewhere_in_the_test_process_do_not_block_a_run() {
    let ns = Sandbox::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("a sandbox");
    let noise = Noise::start(1, || {
        let _ = std::panic::catch_unwind(|| panic!("noise"));
    });
    a_thread_s_panic_is_reported(&ns, 300);
    noise.finish();
}

/// Builds a sandbox and runs closures in it from a `Drop` during unwinding,
/// in a process where no sandbox was made before (the panic hook is not
/// installed yet).
#[test]
#[ignore = "helper, run by a_sandbox_made_while_unwinding_works"]
fn helper_makes_a_sandbox_while_unwinding() {
    struct OnUnwind;
    impl Drop for OnUnwind {
        fn drop(&mut self) {
            let ns = Sandbox::new().unwrap();
            assert_eq!(ns.run(|| 7), 7);
            let err = ns
                .try_run(|| -> u8 { panic!("marker-inner-panic") })
                .unwrap_err();
            assert!(err.to_string().contains("marker-inner-panic"), "{err}");
            println!("marker-ran-while-unwinding");
        }
    }
    let caught = std::panic::catch_unwind(|| {
        let _guard = OnUnwind;
        panic!("marker-outer-panic");
    });
    assert!(caught.is_err());
    // And afterwards, runs report panics with their location as usual.
    let ns = Sandbox::new().unwrap();
    let err = ns.try_run(|| -> u8 { panic!("marker-later") }).unwrap_err();
    let Error::Panicked { location, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(location.is_some(), "{err:?}");
}

#[test]
fn a_sandbox_made_while_unwinding_works() {
    let out = common::run_self(
        "helper_makes_a_sandbox_while_unwinding",
        &[],
        &["--nocapture"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("marker-ran-while-unwinding"), "{stdout}");
}

/// Threads of the test process start and end all the time (libtest's,
/// other tests', a pool's), and std takes a lock of its own as each one
/// starts and as it ends. A run forked while one of them held it must
/// still start and end threads of its own.
#[test]
fn threads_starting_and_ending_elsewhere_do_not_block_a_run() {
    let ns = Sandbox::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("a sandbox");
    // A long name: as a thread ends, std frees its copy of the name under
    // that lock, and a free that large takes the allocator's lock, which
    // glibc's fork holds while it copies the process: a thread ending then
    // holds std's lock at the moment of the fork.
    let name = "churn-".repeat(400);
    let churn = Noise::start(2, move || {
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(|| {})
            .expect("a thread")
            .join()
            .expect("joined");
    });
    for i in 0..400 {
        let got = ns.try_run(|| std::thread::spawn(|| 7u8).join().expect("joined"));
        assert!(matches!(got, Ok(7)), "run {i}: {got:?}");
    }
    churn.finish();
}

/// A thread of the test process that captures a backtrace holds std's
/// backtrace lock meanwhile, and std's panic hook takes it to print a panic
/// (of a thread the closure starts): a run forked then must still report
/// such a panic.
#[test]
fn backtraces_captured_elsewhere_do_not_block_a_run() {
    let ns = Sandbox::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("a sandbox");
    let capturing = Noise::start(1, || {
        let _ = std::hint::black_box(std::backtrace::Backtrace::force_capture());
    });
    a_thread_s_panic_is_reported(&ns, 20);
    capturing.finish();
}
