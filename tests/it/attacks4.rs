//! The boundary, round four: attacks a reviewer with fresh eyes tried on
//! the promises of the README's "What is isolated, and what is not" and
//! DESIGN.md's boundary that the other attack modules do not try: the
//! results a process inside could forge (a whole test's under
//! `isolate_test`, a program's under `hermetic run`) through ptrace, which
//! needs no capability over a process of one's own uid in one's own user
//! namespace, and a runner that makes the test process its tracer. Each
//! passes, root and rootless (with ranges of ids, and with one id); the
//! forged isolated result and the traced programs were findings, fixed on
//! main since (3f85539, 2154c49). Still open, as the README says: a
//! program that traces the body can forge its "returned" and an exit 0.

use crate::common;

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use hermetic::{Error, Sandbox};

// ---------------------------------------------------------------------
// A whole test's result (isolate_test)

/// A shell script, run by an isolated test's body, that forges the body's
/// result: it opens its parent's result channel through `/proc/PPID/fd`
/// (any write-only pipe at fd 3 or above: fds 1 and 2 are the output
/// pipes, fd 0 is `/dev/null`), writes the frame "the body returned" (tag
/// 1, length 0) into it, and kills the body before it can fail.
const FORGE_THE_BODY_S_RESULT: &str = r#"
for f in /proc/$PPID/fd/*; do
  n=${f##*/}
  [ "$n" -ge 3 ] || continue
  case "$(readlink "$f")" in pipe:*) ;; *) continue ;; esac
  case "$(sed -n 's/^flags:[[:space:]]*//p' "/proc/$PPID/fdinfo/$n")" in
    *1) printf '\001\000\000\000\000\000\000\000\000' > "$f" && echo "forged on fd $n" ;;
  esac
done
kill -KILL $PPID
"#;

/// A program an isolated test's body starts is code under test, which may
/// be hostile: it must not make a failing body pass. It runs as the
/// body's own uid in the body's own user namespace (root there, with
/// every capability), so the body's process, exec'd there and dumpable,
/// is open to it: `/proc/PPID/fd/N` hands it the result channel (and
/// `ptrace` would hand it the whole process). Taking the channel off fd 0
/// keeps it from being inherited, not from being reached.
#[test]
// Either message fails the test: the body's own panic, or the refusal of
// a "returned" whose process did not then exit 0.
#[should_panic(expected = "isolated test")]
fn a_program_an_isolated_body_starts_cannot_forge_its_result() {
    hermetic::isolate_test(|| {
        let status = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(FORGE_THE_BODY_S_RESULT)
            .status();
        println!("the forging program: {status:?}");
        panic!("the body fails after its program");
    });
}

/// The same forgery by a program that also traces the body's process
/// (root inside holds `CAP_SYS_PTRACE` over it): after writing "returned"
/// it turns the main thread's next system call into `exit_group(0)`, so
/// the body's process exits 0 as a returning body's does.
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore = "known limitation (README, What is isolated: hermetic's own processes): a program that traces an isolated body can write its \"returned\" and make its process exit 0"]
#[should_panic(expected = "isolated test")]
fn a_program_that_traces_an_isolated_body_cannot_forge_its_result() {
    hermetic::isolate_test(|| {
        let status = common::self_command("helper_forges_by_tracing_its_parent")
            .env("HERMETIC_FORGE_BY_PTRACE", "1")
            .status();
        println!("the forging program: {status:?}");
        panic!("the body fails after its program");
    });
}

#[cfg(target_arch = "x86_64")]
#[test]
#[ignore = "helper: run by a_program_that_traces_an_isolated_body_cannot_forge_its_result"]
fn helper_forges_by_tracing_its_parent() {
    if std::env::var_os("HERMETIC_FORGE_BY_PTRACE").is_none() {
        return;
    }
    // SAFETY: getppid has no arguments.
    let body = unsafe { libc::getppid() };
    // The body's channel: its write-only pipe at fd 3 or above.
    for entry in std::fs::read_dir(format!("/proc/{body}/fd")).unwrap() {
        let entry = entry.unwrap();
        let n: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
        let link = std::fs::read_link(entry.path()).unwrap_or_default();
        let info = std::fs::read_to_string(format!("/proc/{body}/fdinfo/{n}")).unwrap_or_default();
        let write_only = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .is_some_and(|f| f.trim().ends_with('1'));
        if n >= 3 && link.to_string_lossy().starts_with("pipe:") && write_only {
            std::fs::OpenOptions::new()
                .write(true)
                .open(entry.path())
                .unwrap()
                .write_all(&[1, 0, 0, 0, 0, 0, 0, 0, 0])
                .unwrap();
        }
    }
    // SAFETY: ptrace of the parent's main thread (its tid is its pid);
    // the registers are read into and written from a live struct.
    unsafe {
        assert_eq!(libc::ptrace(libc::PTRACE_ATTACH, body, 0, 0), 0, "attach");
        libc::waitpid(body, std::ptr::null_mut(), libc::__WALL);
        // To the entry of its next system call (the wait it was in,
        // restarted).
        libc::ptrace(libc::PTRACE_SYSCALL, body, 0, 0);
        libc::waitpid(body, std::ptr::null_mut(), libc::__WALL);
        let mut regs: libc::user_regs_struct = std::mem::zeroed();
        libc::ptrace(libc::PTRACE_GETREGS, body, 0, &mut regs);
        regs.orig_rax = libc::SYS_exit_group as u64;
        regs.rdi = 0;
        libc::ptrace(libc::PTRACE_SETREGS, body, 0, &regs);
        libc::ptrace(libc::PTRACE_DETACH, body, 0, 0);
    }
}

// ---------------------------------------------------------------------
// A program's end under `hermetic run`

/// A program that makes its parent its tracer (`PTRACE_TRACEME`, as
/// anti-debugging code and a debugger's child do) and then execs, or gets
/// a signal whose default action is to be ignored (here `SIGURG`; a
/// child's `SIGCHLD` does the same): untraced, nothing happens; traced,
/// it stops (after an exec, with the `SIGTRAP` the kernel sends) until
/// its tracer lets it go on. Under `hermetic run` its parent is the init
/// process, which must report how the program ends, not take the stop for
/// its death (a stop of the main thread, the exec's), nor leave it stopped
/// for ever (a stop of another thread: reported under that thread's id,
/// which the init process does not know).
fn hermetic_run_of_a_traced_program(target: &str) {
    let (exe, args) = common::self_invocation("helper_traces_itself_then_gets_sigurg");
    let mut cmd = common::hermetic_command();
    cmd.args(["run", "--"]).arg(exe).args(args);
    assert_a_traced_program_ends_well("hermetic run", cmd, target);
}

/// Starts `cmd` (the helper below, with its libtest arguments) with
/// `target`, and asserts that it ends as it would untraced: status 0,
/// having printed its line.
fn assert_a_traced_program_ends_well(who: &str, mut cmd: std::process::Command, target: &str) {
    let mut child = cmd
        .arg("--nocapture")
        .env("HERMETIC_TRACEME_HELPER", target)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A bound on the wait, not a measure: the program ends at once where
    // the promise holds.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let hung = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        if std::time::Instant::now() > deadline {
            // SIGKILL: a program in a tracing stop does not take a
            // SIGTERM passed on; without hermetic run (or a command's
            // outer relay) the sandbox and the program go too.
            let _ = child.kill();
            break true;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !hung && out.status.success() && stdout.contains("GOT PAST THE SIGNAL"),
        "{who} {} for a program that ignores SIGURG or execs, and exits 0:\n{stdout}\n{}",
        if hung {
            "hung for a minute".to_owned()
        } else {
            format!("said {:?}", out.status)
        },
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hermetic_run_reports_a_traced_program_s_end_not_its_exec_stop() {
    hermetic_run_of_a_traced_program("exec");
}

#[test]
fn hermetic_run_does_not_leave_a_traced_program_s_thread_stopped() {
    hermetic_run_of_a_traced_program("thread");
}

/// The same program started by `command()`: its parent, and so its
/// tracer, is the command's inner relay inside the sandbox.
#[test]
fn a_command_s_traced_program_is_not_left_stopped() {
    let ns = Sandbox::new().unwrap();
    let (exe, args) = common::self_invocation("helper_traces_itself_then_gets_sigurg");
    let mut cmd = ns.command(exe);
    cmd.args(args);
    assert_a_traced_program_ends_well("a command", cmd, "exec");
}

#[test]
#[ignore = "helper: run by a_command_s_traced_program_is_not_left_stopped, hermetic_run_reports_a_traced_program_s_end_not_its_exec_stop and hermetic_run_does_not_leave_a_traced_program_s_thread_stopped"]
fn helper_traces_itself_then_gets_sigurg() {
    let Some(target) = std::env::var_os("HERMETIC_TRACEME_HELPER") else {
        return;
    };
    // SAFETY: PTRACE_TRACEME takes no pointer; the signal's default action
    // is to be ignored.
    unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
    if target == "thread" {
        // libtest runs this test on a thread of its own, not the main one.
        // SAFETY: as above.
        unsafe { libc::raise(libc::SIGURG) };
    } else {
        // An exec: the kernel sends a traced process SIGTRAP right after
        // it (as a debugger's child expects); untraced, none comes.
        use std::os::unix::process::CommandExt;
        let e = std::process::Command::new("/bin/sh")
            .args(["-c", "echo GOT PAST THE SIGNAL"])
            .exec();
        panic!("exec: {e}");
    }
    println!("GOT PAST THE SIGNAL");
}

// ---------------------------------------------------------------------
// A runner that makes the test process its tracer

/// The run's result pipe: its one write-only pipe (the closure's fds are
/// the test process's own, which hold no other here, and the sandbox's).
fn result_fd() -> Option<i32> {
    (3..4096).find(|&fd| {
        // SAFETY: fcntl and fstat on a number; a closed fd fails.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: an all-zero stat is a valid buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        flags >= 0
            && flags & libc::O_ACCMODE == libc::O_WRONLY
            // SAFETY: st is a live stat buffer.
            && unsafe { libc::fstat(fd, &mut st) } == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFIFO
    })
}

/// A run's process and a spawned closure's are children of the test
/// process (inside the sandbox's PID namespace): `PTRACE_TRACEME` makes
/// the test process's thread their tracer, and a signal then stops them in
/// a way that a wait for exits reports too (a traced child's stops are
/// reported without `WUNTRACED`). A closure that sends a complete frame
/// and then stops so must not have its stop taken for its end (the run
/// would return while its process lives on, never reaped), nor hang the
/// run past its timeout or the drop, nor leave the test process a child
/// or zombie. In a process of its own, to count children.
#[test]
fn a_runner_that_makes_the_test_process_its_tracer_is_bounded_and_leaves_nothing() {
    let out = common::run_self(
        "helper_runners_trace_me",
        &[("HERMETIC_TRACE_ME_HELPER", "1")],
        &["--nocapture"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("NOTHING LEFT"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "helper: run by a_runner_that_makes_the_test_process_its_tracer_is_bounded_and_leaves_nothing"]
fn helper_runners_trace_me() {
    if std::env::var_os("HERMETIC_TRACE_ME_HELPER").is_none() {
        return;
    }
    assert_eq!(common::children(), 0, "the helper starts with no child");
    let ns = Sandbox::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let traced = ns.try_run(|| {
        let fd = result_fd().expect("the run has a result pipe");
        // A whole frame: the value 42 (postcard: one byte).
        let frame = [1u8, 1, 0, 0, 0, 0, 0, 0, 0, 42];
        // SAFETY: PTRACE_TRACEME takes no pointer; the write is of a live
        // buffer to the run's own pipe; SIGSTOP stops this process only.
        unsafe {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            assert_eq!(libc::write(fd, frame.as_ptr().cast(), frame.len()), 10);
            libc::raise(libc::SIGSTOP);
        }
        7u8
    });
    assert!(
        matches!(traced, Err(Error::TimedOut { .. })),
        "a stopped traced run gave {traced:?}"
    );
    assert_eq!(ns.run(|| 5u8), 5, "the sandbox stays usable");
    // A spawned closure stopped the same way, never joined: the drop must
    // still end it and reap it.
    let (r, w) = pipe();
    let spawned = ns
        .spawn(move || {
            let w = w;
            // SAFETY: as above; the byte says the trace is set up.
            unsafe {
                libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
                libc::write(w.as_raw_fd(), b"t".as_ptr().cast(), 1);
                libc::raise(libc::SIGSTOP);
            }
        })
        .unwrap();
    let mut byte = [0u8; 1];
    // SAFETY: a read into a live one-byte buffer from our own pipe.
    let got = unsafe { libc::read(r.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
    assert_eq!(got, 1, "the spawned closure did not start");
    std::mem::forget(spawned);
    drop(ns);
    assert_eq!(
        common::children(),
        0,
        "children (or zombies) left after drop"
    );
    println!("NOTHING LEFT");
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a live array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just made and are owned here alone.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

// ---------------------------------------------------------------------
// A clone of the sandbox's tree (allow_mounts)

/// With `allow_mounts`, root inside may clone the sandbox's whole tree
/// (`open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`), attach the copy, and
/// then try to take off, in the copy, what covers the host (the
/// sandbox's `/tmp` over the tmpfs hidden below it and the host's `/tmp`,
/// `/proc/sys`, `/proc`, `/var/tmp`): a clone made by a process of its
/// own must keep every mount locked as in the original.
#[test]
fn a_clone_of_the_sandbox_s_tree_keeps_its_mounts_locked() {
    let ns = Sandbox::builder().allow_mounts(true).build().unwrap();
    let (attached, tries, tmp) = ns.run(|| {
        let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        std::fs::create_dir_all("/tmp/copy").unwrap();
        std::fs::write("/tmp/the-sandbox-s-own", "").unwrap();
        const OPEN_TREE_CLONE: u32 = 1;
        const AT_RECURSIVE: u32 = 0x8000;
        const MOVE_MOUNT_F_EMPTY_PATH: u32 = 4;
        // SAFETY: open_tree and move_mount take a live NUL-terminated path
        // and numbers; the tree's fd is ours.
        let attached = unsafe {
            let tree = libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                c"/".as_ptr(),
                OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as u32,
            );
            assert!(tree >= 0, "open_tree: errno {}", errno());
            libc::syscall(
                libc::SYS_move_mount,
                tree as i32,
                c"".as_ptr(),
                libc::AT_FDCWD,
                c"/tmp/copy".as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        let tries: Vec<(String, i32)> = [
            c"/tmp/copy/tmp",
            c"/tmp/copy/proc/sys",
            c"/tmp/copy/proc",
            c"/tmp/copy/var/tmp",
        ]
        .iter()
        .map(|p| {
            // SAFETY: a live NUL-terminated path.
            let r = unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
            (
                p.to_string_lossy().into_owned(),
                if r == 0 { 0 } else { errno() },
            )
        })
        .collect();
        let tmp: Vec<String> = std::fs::read_dir("/tmp/copy/tmp")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        (attached, tries, tmp)
    });
    assert_eq!(attached, 0, "the clone could not be attached");
    for (path, errno) in tries {
        assert_eq!(errno, libc::EINVAL, "umount of {path} in the clone");
    }
    assert!(
        tmp.contains(&"the-sandbox-s-own".to_owned()) && tmp.contains(&"copy".to_owned()),
        "the clone's /tmp is not the sandbox's own: {tmp:?}"
    );
}
