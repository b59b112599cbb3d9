//! The `hermetic` command: `run` (also as cargo's target runner), `check`
//! and `enter`.

mod common;

use std::process::{Command, Stdio};

fn hermetic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hermetic"))
}

#[test]
fn run_passes_the_exit_status_and_the_directory_through() {
    let out = hermetic()
        .args(["run", "--", "sh", "-c", "pwd; hostname; exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\nsandbox\n", cwd.display())
    );
    let out = hermetic()
        .args(["run", "--", "sh", "-c", "kill -TERM $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{out:?}");
}

#[test]
fn run_takes_options() {
    let out = hermetic()
        .args([
            "run",
            "--hostname",
            "web",
            "--tmpfs",
            "/mnt",
            "--",
            "sh",
            "-c",
            "hostname && touch /mnt/x && ls /sys/class/net",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web\nlo\n");
    let out = hermetic()
        .args(["run", "--bogus", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option"));
}

#[test]
fn sigterm_to_hermetic_run_reaches_the_program() {
    let mut child = hermetic()
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_ready(&mut child);
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(42));
}

#[test]
fn check_reports_this_host() {
    let out = hermetic().arg("check").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("sandboxes work on this host"));
}

/// Binds 127.0.0.1:8080 and creates /tmp/hermetic-shared, which must not
/// exist yet: four copies of this test pass only if each has a /tmp of its
/// own (the file is never removed: with a shared /tmp, every copy but the
/// first would fail, whatever the timing) and, when they overlap, a port
/// space of its own.
#[test]
#[ignore = "helper, run through `hermetic run` by tests_run_through_hermetic_each_get_a_sandbox"]
fn helper_takes_the_port_and_the_file() {
    let _l = std::net::TcpListener::bind("127.0.0.1:8080").unwrap();
    std::fs::File::create_new("/tmp/hermetic-shared").unwrap();
}

#[test]
fn tests_run_through_hermetic_each_get_a_sandbox() {
    // What cargo does with `runner = "hermetic run --"`: the test binary,
    // and its arguments, after the runner.
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            hermetic()
                .args(["run", "--"])
                .arg(&exe)
                .args([
                    "helper_takes_the_port_and_the_file",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{out:?}"
        );
    }
}

#[test]
fn enter_runs_a_program_in_a_kept_sandbox() {
    let ns = hermetic::Sandbox::builder()
        .hostname("kept")
        .build()
        .unwrap();
    ns.run(|| std::fs::write("/tmp/marker", "inside").unwrap());
    let pid = ns.pid();
    ns.keep().unwrap();
    drop(ns);
    let out = hermetic()
        .args([
            "enter",
            &pid.to_string(),
            "sh",
            "-c",
            "cat /tmp/marker; hostname; id -u",
        ])
        .output()
        .unwrap();
    // SAFETY: a signal to the kept sandbox's init process, our child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(pid as i32),
        Some(nix::sys::wait::WaitPidFlag::__WALL),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "insidekept\n0\n");
}
