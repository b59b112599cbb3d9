//! Deaths are reported by cause; the sandbox stays usable.

use crate::common;

use std::time::Duration;

use hermetic::{Error, Sandbox, isolated};
use rstest::rstest;

#[rstest]
fn sigsegv_is_named(#[from(isolated)] ns: Sandbox) {
    let err = ns
        .try_run(|| {
            // SAFETY: none, on purpose: a null-pointer read is the genuine
            // SIGSEGV under test, and it happens in the sandboxed child.
            unsafe { std::ptr::read_volatile(std::ptr::null::<u8>()) }
        })
        .unwrap_err();
    common::assert_killed_by(&err, &["SIGSEGV"]);
    assert_eq!(
        err.to_string(),
        "the closure was killed by SIGSEGV before returning\n\
         the process running the closure died from a signal; the closure crashed (or something \
         killed it)"
    );
    assert_eq!(ns.run(|| 1), 1);
}

#[rstest]
fn abort_is_sigabrt(#[from(isolated)] ns: Sandbox) {
    let err = ns.try_run::<_, ()>(|| std::process::abort()).unwrap_err();
    common::assert_killed_by(&err, &["SIGABRT"]);
    assert_eq!(ns.run(|| 2), 2);
}

#[rstest]
fn exit_status_is_reported(#[from(isolated)] ns: Sandbox) {
    let err = ns.try_run::<_, ()>(|| std::process::exit(3)).unwrap_err();
    assert!(matches!(err, Error::Exited { status: 3, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the closure exited with status 3 before returning\n\
         the closure called exit() (or std::process::exit) instead of returning"
    );
    assert_eq!(ns.run(|| 3), 3);
}

#[rstest]
fn sigkill_of_itself_is_reported(#[from(isolated)] ns: Sandbox) {
    let err = ns
        .try_run(|| nix::sys::signal::raise(nix::sys::signal::SIGKILL).is_ok())
        .unwrap_err();
    common::assert_killed_by(&err, &["SIGKILL"]);
}

#[test]
fn a_run_past_the_timeout_is_killed() {
    let ns = Sandbox::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = ns
        .try_run::<_, ()>(|| {
            loop {
                std::hint::spin_loop();
            }
        })
        .unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "the closure timed out after 300ms and was killed; where its threads were: thread "
        ),
        "{text}"
    );
    // Where it was, then what to do: a try_run user reads the same advice
    // as run's panic gives.
    let (stuck, advice) = text.rsplit_once('\n').unwrap();
    assert!(stuck.ends_with("running"), "{text}");
    assert!(advice.contains("raise SandboxBuilder::timeout"), "{text}");
    assert_eq!(ns.run(|| 4), 4, "the sandbox stays usable");
}

#[test]
#[should_panic(expected = "timed out after 100ms")]
fn run_panics_with_the_timeout() {
    let ns = Sandbox::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    ns.run(|| std::thread::sleep(Duration::from_secs(30)));
}

/// run's panic says the advice once: it is the error's message.
#[test]
fn run_panics_with_the_error_and_its_advice_once() {
    let ns = Sandbox::new().unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ns.run::<_, ()>(|| std::process::exit(5))
    }))
    .unwrap_err();
    let text = panic.downcast_ref::<String>().unwrap();
    assert_eq!(
        text,
        "hermetic: the closure exited with status 5 before returning\n\
         the closure called exit() (or std::process::exit) instead of returning"
    );
}

#[test]
#[should_panic(expected = "killed by SIGABRT")]
fn run_panics_with_the_signal() {
    let ns = Sandbox::new().unwrap();
    ns.run::<_, ()>(|| std::process::abort());
}

/// Recurses until the stack runs out (the bound is never reached).
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + frame[7]
}

/// A closure that overflows its stack hits a guard page and its run ends,
/// saying so (`Error::StackOverflow`; with `HERMETIC_RUNNER_THREAD=1`, on
/// a thread of its own, a signal: SIGSEGV, or SIGABRT where Rust's handler
/// recognises the guard), instead of writing over whatever memory lies
/// below its stack.
#[rstest]
fn a_stack_overflow_kills_only_the_run(#[from(isolated)] ns: Sandbox) {
    let err = ns.try_run(|| recurse(0)).unwrap_err();
    if std::env::var_os("HERMETIC_RUNNER_THREAD").is_some() {
        common::assert_killed_by(&err, &["SIGSEGV", "SIGABRT"]);
    } else {
        assert!(
            matches!(err, hermetic::Error::StackOverflow { size, .. } if size == 8 << 20),
            "{err:?}"
        );
    }
    // Deep but bounded recursion still works: the stack is a main thread's.
    let deep = ns.run(|| {
        fn down(n: u32) -> u32 {
            let frame = std::hint::black_box([n; 128]);
            if n == 0 {
                0
            } else {
                down(n - 1) + frame[1] - n + 1
            }
        }
        down(5_000)
    });
    assert_eq!(deep, 5_000);
    assert_eq!(ns.run(|| 3), 3);
}

#[test]
fn a_run_stuck_on_a_lock_copied_by_the_fork_times_out_and_says_so() {
    // Another thread holds a lock while the run forks: the run's copy of
    // the lock is held for ever.
    let held = common::HeldLock::new();
    let lock = held.lock.clone();
    let ns = Sandbox::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = ns.try_run(move || *lock.lock().unwrap()).unwrap_err();
    held.release();
    let Error::TimedOut { stuck, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(stuck.contains("futex"), "{err}");
    assert!(stuck.contains("nextest"), "{err}");
    // The sandbox is still usable.
    assert_eq!(ns.run(|| 5), 5);
}

#[test]
fn runs_have_a_timeout_by_default_and_hermetic_timeout_sets_it() {
    let out = common::run_self(
        "helper_reports_the_default_timeout",
        &[("HERMETIC_TIMEOUT", "1")],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let out = common::run_self(
        "helper_reports_the_default_timeout",
        &[("HERMETIC_TIMEOUT", "soon")],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
}

/// With HERMETIC_TIMEOUT=1, a run that sleeps 30 s times out after 1 s;
/// with a value that is not a number, building fails and names it.
#[test]
#[ignore = "helper, run by runs_have_a_timeout_by_default_and_hermetic_timeout_sets_it"]
fn helper_reports_the_default_timeout() {
    match std::env::var("HERMETIC_TIMEOUT").as_deref() {
        Ok("1") => {
            let ns = Sandbox::new().unwrap();
            let err = ns
                .try_run(|| std::thread::sleep(Duration::from_secs(30)))
                .unwrap_err();
            let Error::TimedOut { after, stuck, .. } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(*after, Duration::from_secs(1));
            // Rootless, a run's process (not dumpable) hides its system
            // calls from the test process too; root sees them.
            assert!(
                stuck.contains("clock_nanosleep")
                    || (!nix::unistd::geteuid().is_root() && stuck.contains("hidden")),
                "{err}"
            );
        }
        _ => {
            let err = Sandbox::new().unwrap_err();
            assert!(err.to_string().contains("HERMETIC_TIMEOUT"), "{err}");
        }
    }
}
