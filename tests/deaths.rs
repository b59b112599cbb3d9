//! Promise 8: deaths are reported by cause; the sandbox stays usable.

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
    assert!(
        matches!(
            err,
            Error::Killed {
                signal: "SIGSEGV",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the closure was killed by SIGSEGV before returning"
    );
    assert_eq!(ns.run(|| 1), 1);
}

#[rstest]
fn abort_is_sigabrt(#[from(isolated)] ns: Sandbox) {
    let err = ns.try_run::<_, ()>(|| std::process::abort()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Killed {
                signal: "SIGABRT",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(ns.run(|| 2), 2);
}

#[rstest]
fn exit_status_is_reported(#[from(isolated)] ns: Sandbox) {
    let err = ns.try_run::<_, ()>(|| std::process::exit(3)).unwrap_err();
    assert!(matches!(err, Error::Exited { status: 3 }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the closure exited with status 3 before returning"
    );
    assert_eq!(ns.run(|| 3), 3);
}

#[rstest]
fn sigkill_of_itself_is_reported(#[from(isolated)] ns: Sandbox) {
    let err = ns
        .try_run(|| nix::sys::signal::raise(nix::sys::signal::SIGKILL).is_ok())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Killed {
                signal: "SIGKILL",
                ..
            }
        ),
        "{err:?}"
    );
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
    assert_eq!(
        err.to_string(),
        "the closure timed out after 300ms and was killed"
    );
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

#[test]
#[should_panic(expected = "killed by SIGABRT")]
fn run_panics_with_the_signal() {
    let ns = Sandbox::new().unwrap();
    ns.run::<_, ()>(|| std::process::abort());
}
