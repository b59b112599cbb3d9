//! Keeping a failed sandbox: with HERMETIC_KEEP=1 (or `Sandbox::keep`) it
//! outlives the test process, and the failure says how to look inside.

use crate::common;

use hermetic::Sandbox;

/// Runs `enter` (the nsenter command a kept sandbox gave) with `program`
/// appended; its stdout.
fn run_inside(enter: &str, program: &[&str]) -> String {
    let mut words = enter.split_whitespace();
    let out = std::process::Command::new(words.next().unwrap())
        .args(words)
        .args(program)
        .output()
        .unwrap();
    assert!(out.status.success(), "{enter} {program:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Kills the kept sandbox's init process, and waits until it is gone.
fn kill_kept(pid: u32) {
    let pidfd = pidfd(pid).expect("the kept sandbox's init process");
    // SAFETY: a signal to the kept sandbox's init process.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    // Readable once it has exited (whoever reaps it).
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&pidfd),
        nix::poll::PollFlags::POLLIN,
    )];
    assert_eq!(
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(60_000u16)),
        Ok(1)
    );
}

/// A pidfd of `pid`; None if there is no such process.
fn pidfd(pid: u32) -> Option<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open makes a new fd, which we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: when non-negative, fd is the one pidfd_open just made, and
    // nothing else owns or closes it.
    (fd >= 0).then(|| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) })
}

/// Keeps a sandbox from code, drops it, and says how to enter it.
#[test]
#[ignore = "helper, run by keep_leaves_the_sandbox_alive_and_nsenter_reaches_it"]
fn helper_keeps_a_sandbox() {
    let ns = Sandbox::builder().hostname("kept").build().unwrap();
    ns.run(|| std::fs::write("/tmp/marker", "kept-marker").unwrap());
    let enter = ns.keep().unwrap();
    drop(ns);
    println!("enter: {enter}");
}

#[test]
fn keep_leaves_the_sandbox_alive_and_nsenter_reaches_it() {
    // HERMETIC_KEEP=1 when the sandbox is made gives it a keeper, through
    // which nsenter works rootless too.
    let out = common::run_self(
        "helper_keeps_a_sandbox",
        &[("HERMETIC_KEEP", "1")],
        &["--nocapture"],
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let enter = stdout
        .lines()
        .find_map(|l| l.split_once("enter: ").map(|(_, c)| c))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    let target: u32 = enter.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(run_inside(&enter, &["cat", "/tmp/marker"]), "kept-marker");
    assert_eq!(run_inside(&enter, &["hostname"]), "kept\n");
    assert_eq!(run_inside(&enter, &["id", "-u"]), "0\n");
    // Inside the sandbox's PID namespace: its init is PID 1 there.
    assert_eq!(
        run_inside(&enter, &["cat", "/proc/1/comm"]),
        "hermetic-init\n"
    );
    // The keeper's parent is the init process; killing that ends it all.
    let status = std::fs::read_to_string(format!("/proc/{target}/status")).unwrap();
    let init: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kill_kept(init);
}

/// With HERMETIC_KEEP=1: a sandbox whose run panics, left for the parent
/// test to look into after this process is gone.
#[test]
#[ignore = "helper, run by a_failed_run_keeps_its_sandbox_past_the_test_process"]
fn helper_fails_a_run_with_keep() {
    let ns = Sandbox::new().unwrap();
    ns.run(|| std::fs::write("/tmp/marker", "left-behind").unwrap());
    ns.run(|| -> u8 { panic!("marker-failed-run") });
}

#[test]
fn a_failed_run_keeps_its_sandbox_past_the_test_process() {
    let out = common::run_self(
        "helper_fails_a_run_with_keep",
        &[("HERMETIC_KEEP", "1")],
        &[],
    );
    assert!(!out.status.success(), "{out:?}");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("marker-failed-run"), "{text}");
    // "... look inside with: nsenter -t PID ... /bin/sh, or: hermetic enter PID"
    let enter = text
        .lines()
        .find_map(|l| l.split_once("look inside with: ").map(|(_, c)| c))
        .unwrap_or_else(|| panic!("no nsenter line in:\n{text}"))
        .split(", or: ")
        .next()
        .unwrap()
        .trim_end()
        .strip_suffix(" /bin/sh")
        .unwrap_or_else(|| panic!("no shell at the end of the nsenter line in:\n{text}"))
        .to_owned();
    // "the sandbox ... is kept (init process PID)"
    let init: u32 = text
        .split_once("(init process ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .unwrap()
        .0
        .parse()
        .unwrap();
    // The test process that made it has exited; the sandbox lives on.
    assert_eq!(run_inside(&enter, &["cat", "/tmp/marker"]), "left-behind");
    kill_kept(init);
}

#[test]
#[ignore = "helper, run by without_keep_nothing_outlives_a_failed_run"]
fn helper_fails_a_run_without_keep() {
    let ns = Sandbox::new().unwrap();
    println!("init-pid {}", ns.pid());
    ns.run(|| -> u8 { panic!("marker-failed-run") });
}

#[test]
fn without_keep_nothing_outlives_a_failed_run() {
    let out = common::run_self(
        "helper_fails_a_run_without_keep",
        &[("HERMETIC_KEEP", "0")],
        &[],
    );
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("look inside"), "{text}");
    let pid: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("init-pid "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Torn down with the test process (the lifeline): gone, or going.
    if let Some(fd) = pidfd(pid) {
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&fd),
            nix::poll::PollFlags::POLLIN,
        )];
        assert_eq!(
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(60_000u16)),
            Ok(1)
        );
    }
}

/// The state letter of process `pid` (from /proc/PID/stat), None once it
/// is gone.
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Keeps a sandbox whose init process is stopped: the keep and this
/// process's exit both reach it only once it goes on, at once.
#[test]
#[ignore = "helper, run by a_keep_wins_over_the_test_process_exit_that_follows_it"]
fn helper_keeps_a_stopped_sandbox() {
    let ns = Sandbox::new().unwrap();
    let init = ns.pid();
    // SAFETY: a signal to our sandbox's init process.
    assert_eq!(unsafe { libc::kill(init as i32, libc::SIGSTOP) }, 0);
    assert!(
        common::eventually(|| state_of(init) == Some('T')),
        "the init process never stopped"
    );
    ns.keep().unwrap();
    drop(ns);
    println!("init-pid {init}");
}

#[test]
fn a_keep_wins_over_the_test_process_exit_that_follows_it() {
    // keep() returns once it has told the init process; the test process
    // may exit right after, before the init process has looked: the keep
    // must still hold when it sees both at once.
    let out = common::run_self("helper_keeps_a_stopped_sandbox", &[], &["--nocapture"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let init: u32 = text
        .lines()
        .find_map(|l| l.split_once("init-pid ").map(|(_, pid)| pid))
        .unwrap_or_else(|| panic!("{text}"))
        .trim()
        .parse()
        .unwrap();
    // Should an assertion below fail, the kept sandbox goes all the same.
    struct KillOnPanic(u32);
    impl Drop for KillOnPanic {
        fn drop(&mut self) {
            if std::thread::panicking() {
                // SAFETY: a signal to the kept sandbox's init process.
                unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
            }
        }
    }
    let _guard = KillOnPanic(init);
    // SAFETY: a signal to the kept sandbox's init process.
    assert_eq!(unsafe { libc::kill(init as i32, libc::SIGCONT) }, 0);
    // Kept: it waits for good in a ppoll on no fds (/proc/PID/syscall:
    // "NR 0x0 0x0 ..."); not kept: it exits.
    let keeping = format!("{} 0x0 0x0 ", libc::SYS_ppoll);
    assert!(
        common::eventually(|| {
            state_of(init).is_none_or(|s| s == 'Z' || s == 'X')
                || std::fs::read_to_string(format!("/proc/{init}/syscall"))
                    .is_ok_and(|s| s.starts_with(&keeping))
        }),
        "the init process neither kept its sandbox nor exited"
    );
    assert!(
        state_of(init).is_some_and(|s| s != 'Z' && s != 'X'),
        "the kept sandbox's init process exited with the test process"
    );
    kill_kept(init);
}
