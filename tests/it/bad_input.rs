//! Bad input and bad hosts: typed errors that name the culprit.

use hermetic::{Error, Sandbox};

fn invalid(b: &mut hermetic::SandboxBuilder) -> (String, String) {
    match b.build().unwrap_err() {
        Error::InvalidOption { option, reason, .. } => (option.to_owned(), reason),
        e => panic!("expected InvalidOption, got {e:?}"),
    }
}

fn children() -> usize {
    std::fs::read_to_string(format!(
        "/proc/self/task/{}/children",
        nix::unistd::gettid()
    ))
    .unwrap_or_default()
    .split_whitespace()
    .count()
}

#[test]
fn a_relative_bind_source_is_refused() {
    let (opt, why) = invalid(Sandbox::builder().bind("relative/path", "/tmp/x"));
    assert_eq!(opt, "bind");
    assert!(why.contains("not an absolute path"), "{why}");
}

#[test]
fn a_missing_bind_source_is_refused() {
    let (opt, why) = invalid(Sandbox::builder().bind_ro("/nonexistent/hermetic", "/tmp/x"));
    assert_eq!(opt, "bind_ro");
    assert!(
        why.contains("/nonexistent/hermetic") && why.contains("No such file"),
        "{why}"
    );
}

#[test]
fn a_long_hostname_is_refused() {
    let (opt, why) = invalid(Sandbox::builder().hostname("h".repeat(65)));
    assert_eq!(opt, "hostname");
    assert!(why.contains("65 bytes"), "{why}");
    assert!(Sandbox::builder().hostname("h".repeat(64)).build().is_ok());
}

#[test]
fn a_target_that_cannot_be_created_is_refused() {
    // Outside every tmpfs of the sandbox: creating it would touch the host.
    let (opt, why) = invalid(Sandbox::builder().tmpfs("/nonexistent-hermetic/dir"));
    assert_eq!(opt, "tmpfs");
    assert!(why.contains("cannot be created"), "{why}");
    assert!(!std::path::Path::new("/nonexistent-hermetic").exists());
}

#[test]
fn refused_options_leave_nothing_behind() {
    let before = children();
    for _ in 0..5 {
        let _ = Sandbox::builder().bind("rel", "/tmp/x").build();
    }
    assert_eq!(children(), before);
}

#[test]
fn a_failing_setup_step_names_step_errno_and_cause() {
    // Inside a sandbox we are root of our own user namespace and may lower
    // its limit on network namespaces to 0. A sandbox made from in there
    // gets its user, mount and PID namespaces, and then fails at the step
    // that makes the inner user namespace with its network namespace.
    let ns = Sandbox::new().unwrap();
    let (step, errno, text) = ns.run(|| {
        std::fs::write("/proc/sys/user/max_net_namespaces", "0").unwrap();
        match Sandbox::new().unwrap_err() {
            e @ Error::Setup { .. } => {
                let Error::Setup { step, error, .. } = &e else {
                    unreachable!()
                };
                (step.clone(), error.raw_os_error(), e.to_string())
            }
            e => panic!("expected a setup error, got {e:?}"),
        }
    });
    assert_eq!(
        step,
        "creating the inner user namespace and its network, UTS and IPC namespaces"
    );
    assert_eq!(errno, Some(libc::ENOSPC));
    assert!(
        text.starts_with(
            "creating the inner user namespace and its network, UTS and IPC namespaces: \
             No space left on device (ENOSPC)"
        ),
        "{text}"
    );
    assert!(text.contains("user.max_net_namespaces"), "{text}");
}

#[test]
fn refused_user_namespaces_are_diagnosed() {
    // Inside a sandbox we are root of our own user namespace and may lower
    // its limit on nested user namespaces to 0: the next creation then fails
    // the way it does on a host with user.max_user_namespaces = 0.
    let ns = Sandbox::new().unwrap();
    let text = ns.run(|| {
        std::fs::write("/proc/sys/user/max_user_namespaces", "0").unwrap();
        Sandbox::new().unwrap_err().to_string()
    });
    assert!(
        text.starts_with("creating the sandbox's namespaces: "),
        "{text}"
    );
    assert!(text.contains("user.max_user_namespaces"), "{text}");
    assert!(text.contains("sysctl -w"), "{text}");
}

#[test]
#[should_panic(expected = "cannot create a sandbox on this host")]
fn the_fixture_panics_with_the_diagnosis() {
    let ns = Sandbox::new().unwrap();
    ns.run(|| {
        std::fs::write("/proc/sys/user/max_user_namespaces", "0").unwrap();
        let _ = hermetic::isolated();
    });
}

#[test]
fn a_refused_inner_user_namespace_is_named() {
    // One user namespace may be made from in here: a sandbox made inside
    // gets its outer one, and then neither the launch nor the init
    // program can make the inner one (the launch's early helper fails
    // first, and the init program tries again itself).
    let ns = Sandbox::new().unwrap();
    let (step, errno) = ns.run(|| {
        std::fs::write("/proc/sys/user/max_user_namespaces", "1").unwrap();
        match Sandbox::new().unwrap_err() {
            Error::Setup { step, error, .. } => (step, error.raw_os_error()),
            e => panic!("expected a setup error, got {e:?}"),
        }
    });
    assert!(
        step.starts_with("creating the inner user namespace"),
        "{step}"
    );
    assert_eq!(errno, Some(libc::ENOSPC));
}

#[test]
fn bad_file_targets_are_refused_before_anything_starts() {
    let before = children();
    let host_dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let cases: Vec<(hermetic::SandboxBuilder, &str)> = vec![
        (
            Sandbox::builder().file("relative/x", "a").clone(),
            "not an absolute path",
        ),
        (
            Sandbox::builder().file("/tmp/../etc/x", "a").clone(),
            "contains `.` or `..`",
        ),
        (
            Sandbox::builder()
                .file("/tmp/x", "a")
                .file("/tmp/x", "b")
                .clone(),
            "/tmp/x is given twice",
        ),
        (
            Sandbox::builder().file("/tmp", "a").clone(),
            "/tmp is a tmpfs mount point",
        ),
        (
            Sandbox::builder()
                .bind_ro(host_dir.path(), "/tmp/src")
                .file("/tmp/src/x", "a")
                .clone(),
            "lies under the bind mount on /tmp/src",
        ),
        (
            Sandbox::builder()
                .file("/nonexistent/hermetic/x", "a")
                .clone(),
            "/nonexistent/hermetic/x cannot be used: No such file",
        ),
        (
            Sandbox::builder().file(host_dir.path(), "a").clone(),
            "is not a file on the host",
        ),
    ];
    for (mut builder, expected) in cases {
        let (opt, why) = invalid(&mut builder);
        assert_eq!(opt, "file", "{why}");
        assert!(why.contains(expected), "{why} (expected: {expected})");
    }
    assert_eq!(children(), before, "a process was started");
}
