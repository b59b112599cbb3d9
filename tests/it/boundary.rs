//! The boundary, round two: what a closure, a spawned closure or a program
//! inside tries through the kernel objects that namespaces do not separate
//! (the session and process group, the terminal, keys, hermetic's own
//! helper processes, the test process's children, cgroupfs). Each attack
//! is tried from the three places code of the user's runs, as root and
//! rootless (with ranges of ids, and with one id: HERMETIC_ONE_ID=1).
//!
//! Attacks that would kill the test process if they worked run in a helper
//! process of their own (this binary again, one ignored test, in a process
//! group of its own), whose survival is the verdict.

use crate::common;
use crate::common::openpty;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use hermetic::{Network, Sandbox};

/// The errno of the last failed call, 0 after a success.
fn errno_of(ret: libc::c_long) -> i32 {
    if ret < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

/// One system call through libc; the probes pass integers, or pointers to
/// live locals.
fn syscall(nr: libc::c_long, a: [libc::c_long; 5]) -> libc::c_long {
    // SAFETY: every caller passes integers or pointers to live buffers of
    // the sizes the call expects.
    unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4]) }
}

/// What each probe of `kind` got: probe name -> errno (0: it worked).
/// `arg` is a number the probe needs (a key's serial, a pid).
fn probe(kind: &str, arg: i64) -> BTreeMap<String, i32> {
    let mut out = BTreeMap::new();
    let mut put = |name: &str, ret: libc::c_long| {
        out.insert(name.to_owned(), errno_of(ret));
    };
    match kind {
        "keys" => {
            put(
                "get_session",
                syscall(
                    libc::SYS_keyctl,
                    [
                        libc::KEYCTL_GET_KEYRING_ID as _,
                        libc::KEY_SPEC_SESSION_KEYRING as _,
                        0,
                        0,
                        0,
                    ],
                ),
            );
            let mut buf = [0u8; 64];
            put(
                "read_outside_key",
                syscall(
                    libc::SYS_keyctl,
                    [
                        libc::KEYCTL_READ as _,
                        arg as _,
                        buf.as_mut_ptr() as _,
                        buf.len() as _,
                        0,
                    ],
                ),
            );
            put(
                "link_outside_key",
                syscall(
                    libc::SYS_keyctl,
                    [
                        libc::KEYCTL_LINK as _,
                        arg as _,
                        libc::KEY_SPEC_PROCESS_KEYRING as _,
                        0,
                        0,
                    ],
                ),
            );
            let payload = b"planted";
            put(
                "add_key",
                syscall(
                    libc::SYS_add_key,
                    [
                        c"user".as_ptr() as _,
                        c"hermetic-boundary-planted".as_ptr() as _,
                        payload.as_ptr() as _,
                        payload.len() as _,
                        libc::KEY_SPEC_SESSION_KEYRING as _,
                    ],
                ),
            );
            put(
                "request_key",
                syscall(
                    libc::SYS_request_key,
                    [
                        c"user".as_ptr() as _,
                        c"hermetic-boundary-secret".as_ptr() as _,
                        0,
                        0,
                        0,
                    ],
                ),
            );
        }
        "tty" => {
            // SAFETY: a plain open of a NUL-terminated path.
            let fd = unsafe { libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            put("open_dev_tty", fd as _);
            if fd >= 0 {
                // SAFETY: our own fd.
                unsafe { libc::close(fd) };
            }
            let c = b'#';
            put(
                "tiocsti",
                syscall(
                    libc::SYS_ioctl,
                    [0, libc::TIOCSTI as _, &c as *const u8 as _, 0, 0],
                ),
            );
            // Upper bits set: the tty layer truncates the request to 32.
            put(
                "tiocsti_high_bits",
                syscall(
                    libc::SYS_ioctl,
                    [
                        0,
                        (0x1_0000_0000 | libc::TIOCSTI as i64) as _,
                        &c as *const u8 as _,
                        0,
                        0,
                    ],
                ),
            );
            let sub = [2u8; 8];
            put(
                "tioclinux",
                syscall(libc::SYS_ioctl, [0, 0x541c, sub.as_ptr() as _, 0, 0]),
            );
            // The session's leader is not in the sandbox's PID namespace
            // (getsid then says 0): the session began outside.
            // SAFETY: a plain call.
            let sid = unsafe { libc::getsid(0) };
            out.insert("session_outside".into(), i32::from(sid == 0));
        }
        "cgroup" => {
            put(
                "unshare_cgroup",
                syscall(libc::SYS_unshare, [libc::CLONE_NEWCGROUP as _, 0, 0, 0, 0]),
            );
            // SAFETY: a plain open of a NUL-terminated path.
            let ns = unsafe { libc::open(c"/proc/self/ns/cgroup".as_ptr(), libc::O_RDONLY) };
            put(
                "setns_cgroup",
                syscall(
                    libc::SYS_setns,
                    [ns as _, libc::CLONE_NEWCGROUP as _, 0, 0, 0],
                ),
            );
            // SAFETY: our own fd (or -1).
            unsafe { libc::close(ns) };
            for (name, fstype) in [("mount_cgroup2", c"cgroup2"), ("mount_cgroup", c"cgroup")] {
                let _ = std::fs::create_dir_all("/tmp/cg");
                put(
                    name,
                    syscall(
                        libc::SYS_mount,
                        [
                            fstype.as_ptr() as _,
                            c"/tmp/cg".as_ptr() as _,
                            fstype.as_ptr() as _,
                            0,
                            if fstype == c"cgroup" {
                                c"none,name=hermetic".as_ptr() as _
                            } else {
                                0
                            },
                        ],
                    ),
                );
            }
            put(
                "fsopen_cgroup2",
                syscall(libc::SYS_fsopen, [c"cgroup2".as_ptr() as _, 0, 0, 0, 0]),
            );
            put("clone_cgroup", fork_like(libc::CLONE_NEWCGROUP as _));
        }
        "clone" => {
            put("clone_parent", fork_like(libc::CLONE_PARENT as _));
            put("clone3", syscall(libc::SYS_clone3, [0, 0, 0, 0, 0]));
            // Still allowed: a plain fork, and a thread.
            put("fork", fork_like(0));
            let thread = std::thread::spawn(|| 1).join().is_err();
            out.insert("thread".into(), i32::from(thread));
        }
        "dumpable" => {
            // SAFETY: a prctl query.
            let d = unsafe { libc::prctl(libc::PR_GET_DUMPABLE) };
            out.insert("not_dumpable".into(), i32::from(d != 0));
        }
        other => panic!("unknown probe {other}"),
    }
    out
}

/// `clone(flags | SIGCHLD)` without a new stack; the child exits at once
/// and is reaped. Returns clone's result (negative on failure).
fn fork_like(flags: libc::c_long) -> libc::c_long {
    let ret = syscall(
        libc::SYS_clone,
        [flags | libc::SIGCHLD as libc::c_long, 0, 0, 0, 0],
    );
    if ret == 0 {
        // SAFETY: the child leaves at once.
        unsafe { libc::_exit(0) };
    }
    if ret > 0 {
        // SAFETY: a wait for our own child (with CLONE_PARENT it is not
        // ours, and this fails harmlessly).
        unsafe { libc::waitpid(ret as _, std::ptr::null_mut(), libc::__WALL) };
    }
    ret
}

/// Runs probe `kind` in the three places user code runs: a closure, a
/// spawned closure (reporting through a pipe it inherits), and a program
/// (this test binary, re-run inside as `probe_program`).
fn probe_everywhere(
    ns: &Sandbox,
    kind: &'static str,
    arg: i64,
) -> Vec<(&'static str, BTreeMap<String, i32>)> {
    let closure = ns.run(move || probe(kind, arg));
    let (r, w) = pipe();
    let spawned = ns
        .spawn(move || {
            let text = format!("{:?}", probe(kind, arg));
            let mut w = std::fs::File::from(w);
            w.write_all(text.as_bytes()).unwrap();
        })
        .unwrap();
    let mut text = String::new();
    std::fs::File::from(r).read_to_string(&mut text).unwrap();
    spawned.join().unwrap();
    let spawned = parse_map(&text);
    let (exe, args) = common::self_invocation("probe_program");
    let out = ns
        .command(exe)
        .args(args)
        .arg("--nocapture")
        .env("HERMETIC_PROBE", kind)
        .env("HERMETIC_PROBE_ARG", arg.to_string())
        .stdin(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("PROBE ").map(|(_, p)| p))
        .unwrap_or_else(|| panic!("the program printed no probe: {out:?}"));
    vec![
        ("closure", closure),
        ("spawned closure", spawned),
        ("program", parse_map(line)),
    ]
}

/// Parses the Debug form of a BTreeMap<String, i32>.
fn parse_map(text: &str) -> BTreeMap<String, i32> {
    text.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once(": ").unwrap();
            (k.trim_matches('"').to_owned(), v.parse().unwrap())
        })
        .collect()
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a live array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just made and are owned here alone.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

#[test]
#[ignore = "helper: the program probes run inside sandboxes"]
fn probe_program() {
    let kind = std::env::var("HERMETIC_PROBE").unwrap();
    let arg = std::env::var("HERMETIC_PROBE_ARG")
        .unwrap()
        .parse()
        .unwrap();
    println!("PROBE {:?}", probe(&kind, arg));
}

/// Asserts `probe` got `errno` in every place.
fn expect(results: &[(&str, BTreeMap<String, i32>)], probe: &str, errnos: &[i32]) {
    for (place, got) in results {
        let e = got[probe];
        assert!(
            errnos.contains(&e),
            "{probe} from a {place}: errno {e}, expected one of {errnos:?} ({got:?})"
        );
    }
}

// ---------------------------------------------------------------------
// Sessions and signals

/// Runs the ignored test `name` of this binary in a process group of its
/// own, so that a signal leaking out of a sandbox to the caller's group
/// hits it and nothing else; returns what it printed, and fails if it
/// did not end well.
fn run_helper(name: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = common::self_command(name);
    cmd.arg("--nocapture")
        .envs(env.iter().copied())
        .process_group(0)
        .stdin(Stdio::null());
    let out = common::bounded(name, move || cmd.output().unwrap());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "helper {name} ended with {:?}:\n{text}",
        out.status
    );
    text
}

#[test]
fn kill_0_and_kill_minus_1_inside_reach_only_the_sandbox() {
    let out = run_helper("helper_signals_everything", &[]);
    assert!(out.contains("SURVIVED"), "{out}");
}

#[test]
#[ignore = "helper: run by kill_0_and_kill_minus_1_inside_reach_only_the_sandbox"]
fn helper_signals_everything() {
    // SAFETY: plain calls.
    let (pgid, sid) = unsafe { (libc::getpgrp(), libc::getsid(0)) };
    let ns = Sandbox::new().unwrap();
    let other = Sandbox::new().unwrap();
    let net = Network::builder().host("a").host("b").build().unwrap();
    let bystander = other.spawn(|| -> () {
        loop {
            std::thread::park();
        }
    });
    let bystander = bystander.unwrap();
    // From a closure: the caller's group by number (not visible inside),
    // every process it may signal, then its own group.
    let attack = move || {
        // SAFETY: signals; what they reach is what is tested.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
            libc::kill(-sid, libc::SIGKILL);
            libc::kill(-1, libc::SIGKILL);
            libc::kill(0, libc::SIGKILL);
        }
    };
    let e = ns.try_run(attack).unwrap_err();
    common::assert_killed_by(&e, &["SIGKILL"]);
    // A network's host.
    let e = net.host("a").try_run(attack).unwrap_err();
    common::assert_killed_by(&e, &["SIGKILL"]);
    // A spawned closure.
    let s = ns.spawn(attack).unwrap();
    assert!(s.join().is_err());
    // A program, as a shell script that cleans up with `kill 0`.
    for script in ["kill -KILL 0", "kill -KILL -1; kill -KILL 0"] {
        let status = ns.command("sh").args(["-c", script]).status().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "{script}"
        );
    }
    // Everything outside is untouched: this process (or the test would
    // have seen it die), the other sandbox, its process, the other host.
    assert_eq!(other.run(|| 7), 7);
    assert!(bystander.is_running());
    assert_eq!(net.host("b").run(|| 8), 8);
    assert_eq!(ns.run(|| 9), 9, "the attacked sandbox itself still works");
    println!("SURVIVED");
}

/// Promise (README, What is isolated: signals and the terminal): nothing
/// inside is in a session or process group of the test process's. A
/// closure leads a session of its own; the init process leads the
/// sandbox's; a program is in a process group of its own in its relay's
/// session (or, under `hermetic run`, the init process's), leading no
/// session, as a program a shell or a test runner starts does not.
#[test]
fn every_process_inside_is_in_a_session_of_the_sandbox_s() {
    let ns = Sandbox::new().unwrap();
    let (me_pgid, me_sid) = (
        nix::unistd::getpgrp().as_raw(),
        nix::unistd::getsid(None).unwrap().as_raw(),
    );
    let (pid, pgid, sid) = ns.run(|| {
        // SAFETY: plain calls.
        unsafe { (libc::getpid(), libc::getpgrp(), libc::getsid(0)) }
    });
    assert_eq!((pgid, sid), (pid, pid), "a closure leads its own session");
    let init = std::fs::read_to_string(format!("/proc/{}/stat", ns.pid())).unwrap();
    let fields: Vec<&str> = init
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let (init_pgid, init_sid): (i32, i32) =
        (fields[2].parse().unwrap(), fields[3].parse().unwrap());
    assert_eq!(
        (init_pgid, init_sid),
        (ns.pid() as i32, ns.pid() as i32),
        "init: {init}"
    );
    assert_ne!(init_sid, me_sid);
    assert_ne!(init_pgid, me_pgid);
    // A program, and its inner relay (its parent inside).
    let out = ns
        .command("sh")
        .args([
            "-c",
            "cut -d' ' -f5,6 /proc/$$/stat /proc/$PPID/stat; echo $$ $PPID",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let pids: Vec<&str> = lines[2].split(' ').collect();
    assert_eq!(
        lines[0],
        format!("{} {}", pids[0], pids[1]),
        "the program: {text}"
    );
    assert_eq!(
        lines[1],
        format!("{} {}", pids[1], pids[1]),
        "its relay: {text}"
    );
}

#[test]
fn hermetic_run_s_program_cannot_signal_its_caller() {
    // The shell that launches hermetic, in a group of its own; the program
    // kills its group, then every process it can.
    let script = format!(
        "{} run -- sh -c 'kill -KILL 0; echo not-reached'; echo caller-survived $?; {} run -- \
         sh -c 'kill -KILL -1; exit 0'; echo caller-survived-again",
        env!("CARGO_BIN_EXE_hermetic"),
        env!("CARGO_BIN_EXE_hermetic")
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script])
        .process_group(0)
        .stdin(Stdio::null());
    let out = common::bounded("the shell", move || cmd.output().unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("caller-survived 137"), "{text}");
    assert!(!text.contains("not-reached"), "{text}");
    assert!(text.contains("caller-survived-again"), "{text}");
}

// ---------------------------------------------------------------------
// The terminal

/// The number of the pseudo-terminal `fd` is the slave of (`/dev/pts/N`).
fn pts_number(fd: &OwnedFd) -> String {
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    let name = path.to_string_lossy();
    name.strip_prefix("/dev/pts/")
        .unwrap_or_else(|| panic!("not a pseudo-terminal: {name}"))
        .to_owned()
}

/// Promise (README, mounts): a sandbox has pseudo-terminals of its own, as
/// bubblewrap's `--dev` gives (a suite's pty tests, `script`, expect-like
/// tests need them), and nothing of the caller's: the caller's terminals
/// under the host's `/dev/pts` are not there, and a sandbox holds at most
/// 256 at once, of the kernel's pool that every container shares.
#[test]
fn a_sandbox_has_pseudo_terminals_of_its_own() {
    // One of the caller's, open while the sandbox looks.
    let (_host_master, host_slave) = openpty();
    let host_pts = pts_number(&host_slave);
    let ns = Sandbox::new().unwrap();
    let (listed, line, most) = ns.run(|| {
        let mut listed: Vec<String> = std::fs::read_dir("/dev/pts")
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        listed.sort();
        // A line typed on the new terminal's master is read on its slave.
        let (master, slave) = openpty();
        let mut master = std::fs::File::from(master);
        master.write_all(b"typed\n").unwrap();
        let mut buf = [0u8; 64];
        let n = std::fs::File::from(slave).read(&mut buf).unwrap();
        drop(master);
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        // As many more as the sandbox may hold at once (the pair above is
        // closed again).
        let mut held = Vec::new();
        let refused = loop {
            // SAFETY: posix_openpt opens a new fd, owned by `held`.
            let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
            if fd < 0 {
                break std::io::Error::last_os_error().raw_os_error();
            }
            // SAFETY: just opened, owned here alone.
            held.push(unsafe { OwnedFd::from_raw_fd(fd) });
            if held.len() > 1000 {
                break None;
            }
        };
        (listed, line, (held.len(), refused))
    });
    assert_eq!(listed, ["ptmx"], "the caller's /dev/pts/{host_pts} is seen");
    assert_eq!(line, "typed\n");
    assert_eq!(most, (256, Some(libc::ENOSPC)));
    // A program: script(1) runs its command on a new terminal.
    if !std::path::Path::new("/usr/bin/script").exists() {
        common::skip("script(1) is not installed: a program's terminal not tried");
        return;
    }
    let out = ns
        .command("script")
        .args(["-qc", "tty", "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.starts_with("/dev/pts/"),
        "{out:?}"
    );
}

/// Opens a new terminal as nix's own pty tests do: the slave without
/// `O_NOCTTY`, which makes it the controlling terminal of a session
/// leader that has none; closes both ends; says it is still alive.
#[test]
#[ignore = "helper: run by a_program_that_opens_a_terminal_is_not_hung_up"]
fn helper_opens_a_terminal_without_noctty() {
    let (master, slave) = openpty();
    let name = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).unwrap();
    drop(slave);
    let name = std::ffi::CString::new(name.into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path; the fd is owned below.
    let slave = unsafe { libc::open(name.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(slave >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: just opened, owned here alone.
    drop(unsafe { OwnedFd::from_raw_fd(slave) });
    // Were it this process's controlling terminal now, closing the master
    // would hang it up: SIGHUP, and this process gone.
    drop(master);
    println!("marker-not-hung-up");
}

/// Promise (README, What is isolated: the terminal): a program inside, as
/// `hermetic run` or `command()` starts it, is in the sandbox's session but
/// does not lead it, as under a shell or a test runner: a terminal it
/// opens without `O_NOCTTY` (nix's pty tests) does not become its
/// controlling terminal, and closing it does not kill it with `SIGHUP`.
#[test]
fn a_program_that_opens_a_terminal_is_not_hung_up() {
    let (exe, args) = common::self_invocation("helper_opens_a_terminal_without_noctty");
    let mut under_run = common::hermetic_command();
    under_run.args(["run", "--"]).arg(&exe);
    let ns = Sandbox::new().unwrap();
    for (how, mut cmd) in [("hermetic run", under_run), ("command()", ns.command(&exe))] {
        let out = cmd.args(&args).arg("--nocapture").output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("marker-not-hung-up"),
            "{how}: {out:?}"
        );
    }
}

/// A process named `name` (its `comm`) that descends from `root`, found
/// through the children of each process below it.
fn descendant_named(root: u32, name: &str) -> Option<u32> {
    let mut left = common::children_of(root);
    while let Some(pid) = left.pop() {
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name) {
            return Some(pid);
        }
        left.extend(common::children_of(pid));
    }
    None
}

/// Reads what the master gives until the other side is gone (EIO).
fn read_all(master: OwnedFd) -> String {
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn no_process_inside_can_type_into_or_own_the_caller_s_terminal() {
    let (master, slave) = openpty();
    let mut cmd = common::self_command("helper_on_a_terminal");
    cmd.arg("--nocapture");
    common::on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    // The command holds copies of the slave: the master reads to its end
    // only once every copy outside the helper is closed.
    drop((cmd, slave));
    let text = common::bounded("the terminal helper", move || read_all(master));
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{text}");
    assert!(text.contains("TERMINAL-SAFE"), "{text}");
    if let Some(note) = text.lines().find(|l| l.contains("note: TIOCSTI")) {
        println!("{note}");
    }
}

#[test]
#[ignore = "helper: run by no_process_inside_can_type_into_or_own_the_caller_s_terminal, on a pty"]
fn helper_on_a_terminal() {
    // Outside, this process has the terminal: /dev/tty opens.
    assert!(std::fs::File::open("/dev/tty").is_ok());
    let ns = Sandbox::new().unwrap();
    let results = probe_everywhere(&ns, "tty", 0);
    expect(&results, "open_dev_tty", &[libc::ENXIO]);
    expect(&results, "tiocsti", &[libc::EPERM]);
    expect(&results, "tiocsti_high_bits", &[libc::EPERM]);
    expect(&results, "tioclinux", &[libc::EPERM]);
    expect(&results, "session_outside", &[0]);
    // Nothing was typed: the terminal's input is empty.
    let mut pending: libc::c_int = 0;
    // SAFETY: FIONREAD into a live int.
    unsafe { libc::ioctl(0, libc::FIONREAD, &mut pending) };
    assert_eq!(pending, 0, "something was typed into the terminal");
    // What the same call does outside, here (dev.tty.legacy_tiocsti, and
    // the terminal being this process's own): shows what was refused.
    let c = b'#';
    let outside = syscall(
        libc::SYS_ioctl,
        [0, libc::TIOCSTI as _, &c as *const u8 as _, 0, 0],
    );
    println!(
        "note: TIOCSTI outside the sandbox, on its own terminal: {}",
        if outside == 0 {
            "works (so the filter is what stopped it inside)".to_owned()
        } else {
            format!("refused here too (errno {})", errno_of(outside))
        }
    );
    println!("TERMINAL-SAFE");
}

#[test]
fn hermetic_run_works_interactively_and_passes_ctrl_c_on() {
    let shell = if std::path::Path::new("/bin/bash").exists() {
        "bash"
    } else {
        "sh"
    };
    let (master, slave) = openpty();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hermetic"));
    // No rc file: the shell's prompt is the PS1 given here.
    let norc: &[&str] = if shell == "bash" { &["--norc"] } else { &[] };
    cmd.args(["run", "--", shell])
        .args(norc)
        .arg("-i")
        .env("PS1", "prompt$ ")
        .env_remove("HERMETIC_KEEP");
    common::on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    drop((cmd, slave));
    let mut input = std::fs::File::from(master.try_clone().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = f.read(&mut buf) {
            let _ = tx.send(buf[..n].to_vec());
        }
    });
    let mut text = String::new();
    let wait_for = |what: &str, text: &mut String| {
        while !text.contains(what) {
            // Within nextest's limit for a test (two minutes): a shell that
            // never answers fails here, with what it said.
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => panic!("no {what:?} from the shell: {text}"),
            }
        }
    };
    // Typed only once the shell prompts: an interactive shell may set the
    // terminal up (and drop what was typed before) as it starts.
    wait_for("prompt$ ", &mut text);
    // The shell reads its lines from the terminal (the terminal echoes
    // them: what is looked for is what only the shell's output holds).
    input
        .write_all(b"trap 'echo got-int-$((40+2)); exit 5' INT; echo ready-$((1+2))\n")
        .unwrap();
    wait_for("ready-3", &mut text);
    input.write_all(b"read -p reading-$((2+2)) line\n").unwrap();
    wait_for("reading-4", &mut text);
    // Typed only once `read` blocks on the terminal: a SIGINT that comes
    // after `read` printed its prompt but before it blocks leaves the trap
    // pending, and the shell waits in the read for good (1 in 50 runs on
    // a loaded machine).
    let pid = child.id();
    let shell_pid = common::eventually(|| descendant_named(pid, shell).is_some())
        .then(|| descendant_named(pid, shell))
        .flatten()
        .expect("the shell inside");
    let reading = || {
        std::fs::read_to_string(format!("/proc/{shell_pid}/wchan")).is_ok_and(|w| w == "wait_woken")
    };
    assert!(common::eventually(reading), "the shell never read: {text}");
    // Ctrl-C: the terminal sends SIGINT to its foreground group, which is
    // hermetic; it passes it on to the program in its own session.
    input.write_all(&[3]).unwrap();
    wait_for("got-int-42", &mut text);
    let status = common::bounded("the interactive shell", move || child.wait().unwrap());
    drop(input);
    reader.join().unwrap();
    assert_eq!(status.code(), Some(5), "{text}");
}

#[test]
fn hermetic_run_s_help_says_how_the_terminal_is_kept_safe() {
    let out = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for words in [
        "a session of the sandbox's",
        "pseudo-terminal of its own",
        "TIOCSTI",
        "Ctrl-C",
    ] {
        assert!(text.contains(words), "no {words:?} in:\n{text}");
    }
}

// ---------------------------------------------------------------------
// Keys

#[test]
fn no_key_outside_can_be_read_linked_or_planted_from_inside() {
    let payload = b"hunter2";
    let key = syscall(
        libc::SYS_add_key,
        [
            c"user".as_ptr() as _,
            c"hermetic-boundary-secret".as_ptr() as _,
            payload.as_ptr() as _,
            payload.len() as _,
            libc::KEY_SPEC_SESSION_KEYRING as _,
        ],
    );
    if key < 0 {
        // The probes inside still run and must fail; what is not tested is
        // that a key of the test process exists to be found.
        common::skip(&format!(
            "keys are not available to this test process (errno {}): no key of its own to \
             look for; the probes inside still must fail",
            errno_of(key)
        ));
    }
    // Another sandbox's key, with keys allowed there.
    let keyed = Sandbox::builder().keyring(true).build().unwrap();
    let theirs = keyed.run(|| {
        let p = b"other";
        syscall(
            libc::SYS_add_key,
            [
                c"user".as_ptr() as _,
                c"hermetic-boundary-theirs".as_ptr() as _,
                p.as_ptr() as _,
                p.len() as _,
                libc::KEY_SPEC_SESSION_KEYRING as _,
            ],
        )
    });
    let ns = Sandbox::new().unwrap();
    for serial in [key, theirs] {
        let results = probe_everywhere(&ns, "keys", serial);
        for p in [
            "get_session",
            "read_outside_key",
            "link_outside_key",
            "add_key",
            "request_key",
        ] {
            expect(&results, p, &[libc::EPERM]);
        }
    }
    if key > 0 {
        syscall(
            libc::SYS_keyctl,
            [libc::KEYCTL_INVALIDATE as _, key as _, 0, 0, 0],
        );
    }
}

// ---------------------------------------------------------------------
// hermetic's helpers

/// What a process inside gets when it tries to reach process `pid` (a pid
/// inside): its fds (to write a forged frame into any pipe), its memory,
/// a ptrace attach, pidfd_getfd. Each entry: what, errno (0: it worked).
fn reach(pid: i32) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    let fd_dir = format!("/proc/{pid}/fd");
    match std::fs::read_dir(&fd_dir) {
        // Root may list the numbers (the directory belongs to root outside,
        // the kernel's owner of a non-dumpable process); what they are is
        // another matter.
        Ok(entries) => {
            for e in entries.flatten() {
                out.push((
                    format!("readlink {}", e.path().display()),
                    std::fs::read_link(e.path())
                        .err()
                        .map_or(0, |e| e.raw_os_error().unwrap_or(-1)),
                ));
                // A complete frame: Value, 2 bytes, postcard's 1337u32.
                let frame = [1u8, 2, 0, 0, 0, 0, 0, 0, 0, 0xb9, 0x0a];
                let path = e.path();
                let r = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|mut f| f.write_all(&frame));
                out.push((
                    format!("write {}", path.display()),
                    r.err().map_or(0, |e| e.raw_os_error().unwrap_or(-1)),
                ));
            }
        }
        Err(e) => out.push(("list fds".to_owned(), e.raw_os_error().unwrap_or(-1))),
    }
    out.push((
        "open mem".to_owned(),
        std::fs::File::open(format!("/proc/{pid}/mem"))
            .err()
            .map_or(0, |e| e.raw_os_error().unwrap_or(-1)),
    ));
    let pidfd = syscall(libc::SYS_pidfd_open, [pid as _, 0, 0, 0, 0]);
    if pidfd >= 0 {
        for n in 0..16 {
            let got = syscall(libc::SYS_pidfd_getfd, [pidfd as _, n, 0, 0, 0]);
            if got >= 0 || errno_of(got) != libc::EBADF {
                out.push((format!("pidfd_getfd {n}"), errno_of(got)));
            }
        }
    }
    let traced = syscall(
        libc::SYS_ptrace,
        [libc::PTRACE_SEIZE as _, pid as _, 0, 0, 0],
    );
    out.push(("ptrace".to_owned(), errno_of(traced)));
    out
}

/// Fails with the list should any attempt in `tries` have worked.
fn assert_all_refused(who: &str, tries: &[(String, i32)]) {
    let worked: Vec<&(String, i32)> = tries.iter().filter(|(_, e)| *e == 0).collect();
    assert!(
        worked.is_empty(),
        "{who}: these worked: {worked:?} (all: {tries:?})"
    );
}

#[test]
fn a_run_s_runner_is_out_of_reach_and_its_result_cannot_be_forged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let ns = Sandbox::builder()
        .bind(dir.path(), "/tmp/x")
        .build()
        .unwrap();
    // The closure of a later run says where it is and waits, on a fifo,
    // until the attack is over.
    nix::unistd::mkfifo(
        &dir.path().join("go"),
        nix::sys::stat::Mode::from_bits_truncate(0o666),
    )
    .unwrap();
    let target = std::thread::scope(|s| {
        let victim = s.spawn(|| {
            ns.run(|| {
                std::fs::write("/tmp/x/pid", std::process::id().to_string()).unwrap();
                let mut b = [0u8; 1];
                let _ = std::fs::File::open("/tmp/x/go").unwrap().read(&mut b);
                1u32
            })
        });
        assert!(common::eventually(|| dir.path().join("pid").exists()));
        let pid: i32 = std::fs::read_to_string(dir.path().join("pid"))
            .unwrap()
            .parse()
            .unwrap();
        // From a closure, a spawned closure and a program.
        let from_closure = ns.run(move || reach(pid));
        let (r, w) = pipe();
        let spawned = ns
            .spawn(move || {
                let text = format!("{:?}", reach(pid));
                std::fs::File::from(w).write_all(text.as_bytes()).unwrap();
            })
            .unwrap();
        let mut from_spawned = String::new();
        std::fs::File::from(r)
            .read_to_string(&mut from_spawned)
            .unwrap();
        spawned.join().unwrap();
        let program = ns
            .command("sh")
            .args([
                "-c",
                &format!("readlink /proc/{pid}/fd/0 || cat /proc/{pid}/mem || exit 0; exit 1"),
            ])
            .output()
            .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("go"))
            .unwrap()
            .write_all(b"g")
            .unwrap();
        let value = victim.join().unwrap();
        assert_all_refused("a closure", &from_closure);
        assert!(
            !from_spawned.contains(", 0)"),
            "a spawned closure: {from_spawned}"
        );
        assert!(
            program.status.success(),
            "a program listed the runner's fds: {program:?}"
        );
        value
    });
    assert_eq!(target, 1, "a forged frame was taken for the run's result");
    // By design: the closure is the runner's copy of the test process, and
    // stays non-dumpable while it runs.
    let results = probe_everywhere(&ns, "dumpable", 0);
    assert_eq!(results[0].1["not_dumpable"], 0);
    assert_eq!(results[1].1["not_dumpable"], 0);
    // An exec'd program is dumpable again, as on any system.
    assert_ne!(results[2].1["not_dumpable"], 0);
}

#[test]
fn a_command_s_relays_are_out_of_reach() {
    let ns = Sandbox::new().unwrap();
    // The program says its parent inside (the inner relay), then waits.
    let mut child = ns
        .command("sh")
        .args(["-c", "echo $PPID; exec cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let relay: i32 = line.trim().parse().unwrap();
    let tries = ns.run(move || reach(relay));
    assert_all_refused("a closure reaching the inner relay", &tries);
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

// ---------------------------------------------------------------------
// Drop

#[test]
fn drop_returns_whatever_the_closures_did_and_leaves_no_child() {
    let out = run_helper("helper_leaves_a_mess", &[]);
    assert!(out.contains("DROPPED"), "{out}");
}

#[test]
#[ignore = "helper: run by drop_returns_whatever_the_closures_did_and_leaves_no_child"]
fn helper_leaves_a_mess() {
    assert_eq!(common::children(), 0, "the helper starts with no child");
    let ns = Sandbox::new().unwrap();
    let results = probe_everywhere(&ns, "clone", 0);
    expect(&results, "clone_parent", &[libc::EPERM]);
    expect(&results, "clone3", &[libc::ENOSYS]);
    expect(&results, "fork", &[0]);
    expect(&results, "thread", &[0]);
    // Processes that make a teardown wait, if anything does: stopped, traced,
    // in a PID namespace of their own, a thread group whose leader has
    // exited.
    ns.run(|| {
        // SAFETY: fork in the runner; the children only make system calls.
        unsafe {
            let stopped = libc::fork();
            if stopped == 0 {
                libc::raise(libc::SIGSTOP);
                loop {
                    libc::pause();
                }
            }
            let traced = libc::fork();
            if traced == 0 {
                libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
                libc::raise(libc::SIGSTOP);
                loop {
                    libc::pause();
                }
            }
            if libc::unshare(libc::CLONE_NEWPID) == 0 {
                let nested = libc::fork();
                if nested == 0 {
                    loop {
                        libc::pause();
                    }
                }
            }
        }
    });
    let leader_gone = ns
        .spawn(|| {
            std::thread::spawn(|| {
                loop {
                    std::thread::park();
                }
            });
            // SAFETY: ends this thread only (the leader), leaving the other.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
        })
        .unwrap();
    std::mem::forget(leader_gone);
    drop(ns);
    assert_eq!(
        common::children(),
        0,
        "children (or zombies) left after drop"
    );
    println!("DROPPED");
}

// ---------------------------------------------------------------------
// cgroupfs

#[test]
fn nothing_inside_can_mount_cgroupfs_or_make_a_cgroup_namespace() {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        println!(
            "note: rootless, the host's cgroups could not be written from inside anyway (their \
             files belong to the real root); the refusals are checked all the same"
        );
    }
    for own_ns in [false, true] {
        let ns = Sandbox::builder().cgroup_namespace(own_ns).build().unwrap();
        let results = probe_everywhere(&ns, "cgroup", 0);
        for p in ["unshare_cgroup", "setns_cgroup", "clone_cgroup"] {
            expect(&results, p, &[libc::EPERM]);
        }
        for p in ["mount_cgroup2", "mount_cgroup", "fsopen_cgroup2"] {
            expect(&results, p, &[libc::EPERM, libc::EACCES]);
        }
        if own_ns {
            // What cgroup_namespace documents: a namespace of its own whose
            // root is the sandbox's cgroup.
            let (ino, cgroup) = ns.run(|| {
                (
                    common::ns_inodes()["cgroup"],
                    std::fs::read_to_string("/proc/self/cgroup").unwrap(),
                )
            });
            assert_ne!(ino, common::ns_inodes()["cgroup"]);
            assert!(cgroup.lines().any(|l| l == "0::/"), "{cgroup}");
        }
    }
}

#[test]
fn the_filter_is_on_in_every_place_and_stacks() {
    // /proc/self/status says how many filters a process is under.
    let filters = |status: &str| -> u32 {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp_filters:"))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let outside = filters(&std::fs::read_to_string("/proc/self/status").unwrap());
    let ns = Sandbox::new().unwrap();
    let inside = ns.run(move || filters(&std::fs::read_to_string("/proc/self/status").unwrap()));
    assert_eq!(inside, outside + 1);
    let out = ns.command("cat").arg("/proc/self/status").output().unwrap();
    assert_eq!(filters(&String::from_utf8_lossy(&out.stdout)), outside + 1);
    // A sandbox made inside one: both filters.
    let nested = ns.run(move || {
        let inner = Sandbox::new().unwrap();
        inner.run(|| filters(&std::fs::read_to_string("/proc/self/status").unwrap()))
    });
    assert_eq!(nested, outside + 2);
}

#[test]
fn proc_keys_lists_no_key_of_the_test_process_inside() {
    // A key of the test process's session keyring, viewable by its owner's
    // uid (the default): /proc/keys outside lists it by serial number.
    // SAFETY: NUL-terminated strings; a payload of its length.
    let serial = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            c"hermetic-listed-key".as_ptr(),
            b"x".as_ptr(),
            1usize,
            -3i32, // KEY_SPEC_SESSION_KEYRING
        )
    };
    if serial < 0 {
        common::skip("keys are not available here (add_key refused)");
        return;
    }
    let hex = format!("{serial:08x}");
    let outside = std::fs::read_to_string("/proc/keys").unwrap_or_default();
    assert!(outside.lines().any(|l| l.starts_with(&hex)), "{outside}");
    let ns = Sandbox::new().unwrap();
    let inside = ns.run(|| {
        (
            std::fs::read_to_string("/proc/keys").map_err(|e| e.to_string()),
            std::fs::read_to_string("/proc/key-users").map_err(|e| e.to_string()),
        )
    });
    assert_eq!(inside, (Ok(String::new()), Ok(String::new())));
    // SAFETY: unlinks the key from the session keyring.
    unsafe {
        libc::syscall(libc::SYS_keyctl, 9 /* KEYCTL_UNLINK */, serial, -3i32)
    };
}

#[test]
fn an_alg_socket_cannot_be_keyed_by_a_serial_number_inside() {
    let ns = Sandbox::new().unwrap();
    let refused = ns.run(|| {
        // SAFETY: a socket, then setsockopt on it with a serial number.
        unsafe {
            let fd = libc::socket(libc::AF_ALG, libc::SOCK_SEQPACKET, 0);
            let serial: i32 = 1;
            let ret = libc::setsockopt(
                fd.max(0),
                279, // SOL_ALG
                7,   // ALG_SET_KEY_BY_KEY_SERIAL
                (&raw const serial).cast(),
                4,
            );
            (ret, std::io::Error::last_os_error().raw_os_error())
        }
    });
    assert_eq!(refused, (-1, Some(libc::EPERM)));
}

#[test]
fn a_closure_s_stdin_is_dev_null_whatever_the_test_s_is() {
    // The test's stdin may be the caller's terminal: a closure reading it
    // would get what is typed there, and could change its modes or size.
    let ns = Sandbox::new().unwrap();
    for seen in [
        ns.run(|| {
            let mut byte = [0u8; 1];
            // SAFETY: reads at most one byte into a live buffer.
            let n = unsafe { libc::read(0, byte.as_mut_ptr().cast(), 1) };
            (
                std::fs::read_link("/proc/self/fd/0")
                    .map(|p| p.display().to_string())
                    .ok(),
                n,
            )
        }),
        ns.spawn(|| {
            (
                std::fs::read_link("/proc/self/fd/0")
                    .map(|p| p.display().to_string())
                    .ok(),
                0,
            )
        })
        .unwrap()
        .join()
        .unwrap(),
    ] {
        assert_eq!(seen, (Some("/dev/null".to_owned()), 0));
    }
}
