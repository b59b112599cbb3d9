//! A test process that ignores SIGCHLD: the kernel then reaps children that
//! signal their exit before anyone can wait for them.
//!
//! Alone in its binary: the disposition of SIGCHLD is process-wide.

use hermetic::{Error, Sandbox};

#[test]
fn an_ignored_sigchld_is_a_clear_error_and_breaks_nothing_else() {
    let ns = Sandbox::new().unwrap();
    // SAFETY: changes this process's disposition of SIGCHLD, restored below.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    // Init processes signal nobody when they exit: making and dropping
    // sandboxes works the same.
    let other = Sandbox::new();
    assert!(other.is_ok(), "{other:?}");
    let err = ns.try_run(|| 1).unwrap_err();
    assert!(matches!(err, Error::SigchldIgnored), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("SIGCHLD") && text.contains("SIG_DFL"),
        "{text}"
    );
    drop(other);
    drop(ns);
    // SAFETY: back to the default.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    assert_eq!(Sandbox::new().unwrap().run(|| 2), 2);
}
