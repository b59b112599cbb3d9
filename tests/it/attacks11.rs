//! Attacks of round 11: what `hermetic run` and `hermetic enter` hand a
//! program (stdout and stderr that are not pipes, the caller's fds, the
//! keeper's user namespace), kept sandboxes and timeouts, a command's
//! relays, signals a run's process sends by stopping, the cost of a
//! timed-out run's diagnosis, a fresh proc mounted in nested namespaces,
//! and the seccomp filter through the i386 and x32 entries. An attack
//! that works today is `#[ignore]`d with the finding (it fails with
//! `--ignored`); the rest pass, root and rootless.

use crate::common;

use std::os::fd::AsRawFd;
use std::process::Stdio;

/// A host directory of the test's (in the host's `/tmp`, which no
/// sandbox of `hermetic run` sees by path: it has a `/tmp` of its own).
fn host_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hermetic-attacks11-")
        .tempdir()
        .unwrap()
}

/// `hermetic run [opts] -- sh -c SCRIPT`, its stdout and stderr given as
/// `stdout` and `stderr` (with `HERMETIC_KEEP=1` if `keep`); waits at
/// most 30 s. Its exit code.
fn run_with_stdio(
    opts: &[&str],
    script: &str,
    stdout: Stdio,
    stderr: Stdio,
    keep: bool,
) -> Option<i32> {
    let mut cmd = common::hermetic_command();
    if keep {
        cmd.env("HERMETIC_KEEP", "1");
    } else {
        cmd.env_remove("HERMETIC_KEEP");
    }
    let mut child = cmd
        .arg("run")
        .args(opts)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    common::wait_bounded(&mut child).code()
}

// ---------------------------------------------------------------------
// hermetic run: what its stdout and stderr lead to

/// `hermetic run` hands its program "fds 0, 1 and 2 only", and a host
/// file on stdin as a pipe (a directory as `/dev/null`), "so that PROGRAM
/// cannot reopen the host's file for writing" (`hermetic run --help`).
/// Its stdout and stderr are passed as they are, whatever they are: a
/// directory there (`2<DIR`, a descriptor a script or a runner holds on
/// a directory) lets the program create files in it through
/// `/proc/self/fd/2/NAME`, and a host file opened read-only there
/// (`1<FILE`) lets it reopen `/proc/self/fd/1` for writing: the kernel
/// opens on the fd's own mount, the host's, whatever the host mode
/// (`cow` and `ro` alike). The attacker: `hermetic run -- sh -c 'echo x >
/// /proc/self/fd/2/planted' 2<DIR` and `hermetic run --host ro -- sh -c
/// 'echo overwritten > /proc/self/fd/1' 1<FILE`. What happened (root,
/// hermetic-ci, hermetic-noids): `DIR/planted` exists on the host, and
/// FILE says "overwritten". What should happen: nothing reaches the host
/// (a directory as `/dev/null`, a file through a pipe, as on stdin).
#[test]
fn hermetic_run_s_program_cannot_write_the_host_through_its_stdout_or_stderr() {
    let dir = host_dir();
    let file = dir.path().join("file");
    std::fs::write(&file, "original\n").unwrap();
    let mut wrote = Vec::new();
    for opts in [&["--host", "cow"][..], &["--host", "ro"][..]] {
        // A directory on stderr: a file planted in it.
        let planted = dir.path().join(format!("planted-{}", opts[1]));
        let code = run_with_stdio(
            opts,
            &format!(
                "echo x > /proc/self/fd/2/{}",
                planted.file_name().unwrap().to_str().unwrap()
            ),
            Stdio::null(),
            Stdio::from(std::fs::File::open(dir.path()).unwrap()),
            false,
        );
        if planted.exists() {
            wrote.push(format!(
                "{opts:?}: planted {} (exit {code:?})",
                planted.display()
            ));
        }
        // A host file opened read-only on stdout: written through.
        let code = run_with_stdio(
            opts,
            "echo overwritten > /proc/self/fd/1",
            Stdio::from(std::fs::File::open(&file).unwrap()),
            Stdio::null(),
            false,
        );
        let now = std::fs::read_to_string(&file).unwrap();
        if now != "original\n" {
            wrote.push(format!(
                "{opts:?}: {} now says {now:?} (exit {code:?})",
                file.display()
            ));
            std::fs::write(&file, "original\n").unwrap();
        }
    }
    assert!(wrote.is_empty(), "the program wrote the host: {wrote:#?}");
}

// ---------------------------------------------------------------------
// hermetic enter: the fds its program is handed

/// A shell line for a kept sandbox: leaves a process behind that looks,
/// up to `tries` rounds, for a process whose fd 3 is a regular file (the
/// host's, handed in by `hermetic enter`), writes through its fd 3 and
/// fd 0 by `/proc/PID/fd/N`, then says so in `/tmp/log` and on the fifo
/// `/tmp/go` (also when it found nothing, so that its reader ends); the
/// program then exits 1, so that the sandbox is kept.
const LEFT_BEHIND: &str = r#"
mkfifo /tmp/go
( found=none
  for i in $(seq 1 3000); do
    for p in /proc/[0-9]*; do
      [ "$p" = "/proc/$$" ] && continue
      if [ -f "$p/fd/3" ]; then
        echo "written-through-fd3" > "$p/fd/3"
        echo "written-through-fd0" > "$p/fd/0"
        found="$(readlink "$p/fd/3")"
        break 2
      fi
    done
  done
  echo "$found" > /tmp/log
  echo done > /tmp/go ) </dev/null >/dev/null 2>&1 &
exit 1
"#;

/// `hermetic run` gives its program fds 0 to 2 only, and a host file on
/// its stdin through a pipe, because an fd of a host file is a way out of
/// the sandbox (`/proc/PID/fd/N` reopens it on the host's mount).
/// `hermetic enter PID -- PROGRAM`, for a kept sandbox, hands PROGRAM
/// every fd it was given (`3<FILE`, a jobserver's pipes, whatever the
/// caller did not mark close-on-exec) and a host file on stdin as it is;
/// PROGRAM runs inside, in the user namespace of what the kept sandbox
/// left running, as the same user, dumpable: a process left there opens
/// `/proc/PROGRAM/fd/3` and `/proc/PROGRAM/fd/0` for writing and writes
/// the caller's host files (read-only fds of the caller's, on a host
/// that is copy-on-write). The README warns that such a process can read
/// the terminal of `hermetic enter`'s shell; not that it can write the
/// host through what the caller hands in. The attacker: `HERMETIC_KEEP=1
/// hermetic run -- sh -c "$LEFT_BEHIND"`, then the caller: `hermetic
/// enter PID -- sh -c 'cat /tmp/go' 3<FILE3 <FILE0`. What happened (root,
/// hermetic-ci, hermetic-noids): FILE3 and FILE0 say "written-through-fd3"
/// and "written-through-fd0". What should happen: as under `hermetic
/// run`: fds 0 to 2 only, a host file on stdin through a pipe; the host
/// files stay as they were.
#[test]
fn a_kept_sandbox_cannot_write_the_host_through_the_fds_hermetic_enter_hands_in() {
    use std::os::unix::process::CommandExt;
    let dir = host_dir();
    let (file3, file0) = (dir.path().join("fd3"), dir.path().join("fd0"));
    std::fs::write(&file3, "original\n").unwrap();
    std::fs::write(&file0, "original\n").unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let code = run_with_stdio(
        &[],
        LEFT_BEHIND,
        Stdio::null(),
        Stdio::from(log.reopen().unwrap()),
        true,
    );
    let said = std::fs::read_to_string(log.path()).unwrap();
    let Some(init) = common::kept_init(&said) else {
        panic!("no kept sandbox (exit {code:?}): {said}");
    };
    let held = std::fs::File::open(&file3).unwrap();
    let held_fd = held.as_raw_fd();
    let mut enter = common::hermetic_command();
    enter
        .args([
            "enter",
            &init.to_string(),
            "--",
            "sh",
            "-c",
            "cat /tmp/go; cat /tmp/log",
        ])
        .stdin(std::fs::File::open(&file0).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: dup2 only, in std's child before exec: fd 3 is the caller's
    // read-only fd on FILE3, as `3<FILE3` in a shell gives it.
    unsafe {
        enter.pre_exec(move || {
            if libc::dup2(held_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = enter.spawn().unwrap();
    let status = common::wait_bounded(&mut child);
    let out = child.wait_with_output().unwrap();
    // SAFETY: kills the kept sandbox this test made (its init process).
    unsafe { libc::kill(init, libc::SIGKILL) };
    drop(held);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (now3, now0) = (
        std::fs::read_to_string(&file3).unwrap(),
        std::fs::read_to_string(&file0).unwrap(),
    );
    assert!(
        now3 == "original\n" && now0 == "original\n",
        "a process left in the kept sandbox wrote the host through hermetic enter's program: \
         {} says {now3:?}, {} says {now0:?} ({status}; it said {stdout:?} {stderr:?})",
        file3.display(),
        file0.display()
    );
}

/// `hermetic enter --help`: "Runs PROGRAM ... inside the kept sandbox
/// whose init process (or keeper) is PID". Through the init process the
/// program is in the sandbox's inner user namespace, as a program of the
/// sandbox (`attacks5.rs`: a planted `~/.bashrc` cannot remount there).
/// Through the keeper, whose pid the kept message gives too (`nsenter -t
/// KEEPER`), the program joins the keeper's user namespace, the one that
/// owns the sandbox's mounts, with every capability there, and with the
/// caller's environment: the README's warning about the `nsenter` line
/// ("nothing a program inside left in its `$HOME` or `PATH` (a
/// `~/.bashrc`...) runs with them") holds for `hermetic enter KEEPER` as
/// it did for the old line. The attacker: `HERMETIC_KEEP=1 hermetic run --
/// sh -c 'printf %s "$1" > ~/.bashrc; exit 1' sh 'mount -o
/// remount,bind,rw /; umount -l /var/tmp; echo escaped > DIR/escaped'`;
/// the caller: `hermetic enter KEEPER -- bash -i`. What happened (root,
/// hermetic-ci, hermetic-noids): the planted lines ran with the
/// capabilities over the mounts, and `DIR/escaped` is on the host. What
/// should happen: as through the init process (or a refusal): the mount
/// calls fail, nothing reaches the host.
#[test]
fn a_kept_sandbox_cannot_write_the_host_through_hermetic_enter_by_its_keeper() {
    if !std::path::Path::new("/bin/bash").exists() {
        common::skip("no /bin/bash to be the interactive shell that runs ~/.bashrc");
        return;
    }
    // The kept sandbox of attacks5's attack on the `nsenter` line, whose
    // program planted a `~/.bashrc` that remounts the host writable.
    let (init, look, marker, _target, _) = crate::attacks5::kept_sandbox_with_a_planted_bashrc();
    // `nsenter -t KEEPER ...`.
    let keeper = look.get(2).and_then(|pid| pid.parse::<i32>().ok());
    let said = look.join(" ");
    let looked = keeper.map(|keeper| {
        let mut child = common::hermetic_command()
            .args(["enter", &keeper.to_string(), "--", "bash", "-i"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = common::wait_bounded(&mut child);
        (status, child.wait_with_output().unwrap().stderr)
    });
    // SAFETY: kills the kept sandbox this test made (its init process).
    unsafe { libc::kill(init, libc::SIGKILL) };
    let Some((status, stderr)) = looked else {
        panic!("the kept message names no keeper: {said}");
    };
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(
        !marker.exists(),
        "hermetic enter KEEPER ran the planted ~/.bashrc with the capabilities over the \
         sandbox's mounts: it wrote {} on the host ({status}; {stderr})",
        marker.display()
    );
}

// ---------------------------------------------------------------------
// A fresh proc mounted inside

/// The sandbox's `/tmp` hides a proc mount of its own (`/tmp/proc`, so
/// that a sandbox can be made inside: the kernel mounts a new proc only
/// where one is fully visible), without the read-only covers `/proc` has
/// on `/proc/sys` and `/proc/sysrq-trigger`. A program that makes a user,
/// mount and PID namespace of its own mounts a fresh proc there, covers
/// and all gone: as root (root inside is the host's uid 0, which the
/// kernel checks host sysctls' files against, not a capability) its
/// `sys/kernel/core_pattern` would be a way to the host's root. It must
/// not open for writing: as root the hidden proc is read-only, locked, so
/// the fresh one can only be read-only (`EROFS`); rootless, the files are
/// the host root's (`EACCES`). Only opened, never written.
#[test]
fn a_fresh_proc_mounted_inside_opens_no_host_sysctl_for_writing() {
    const SCRIPT: &str = r#"
unshare -Urmpf sh -c '
  mkdir -p /tmp/freshproc
  mount -t proc proc /tmp/freshproc 2>/dev/null && echo MOUNTED-rw ||
    { mount -t proc -o ro proc /tmp/freshproc 2>/dev/null && echo MOUNTED-ro; } ||
    { echo NOMOUNT; exit 0; }
  for f in sys/kernel/core_pattern sys/kernel/modprobe sys/vm/drop_caches sys/kernel/panic sysrq-trigger; do
    [ -e /tmp/freshproc/$f ] || continue
    if (exec 3>>/tmp/freshproc/$f) 2>/dev/null; then echo "OPENED $f"; else echo "refused $f"; fi
  done
'
"#;
    let sandbox = hermetic::Sandbox::new().unwrap();
    let out = sandbox.run(|| {
        let out = std::process::Command::new("sh")
            .args(["-c", SCRIPT])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(String::from_utf8_lossy(&out.stdout).into_owned())
    });
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            common::skip(&format!("no sh to run unshare with inside: {e}"));
            return;
        }
    };
    if !out.contains("MOUNTED") {
        common::skip(&format!(
            "no fresh proc could be mounted inside here: {out}"
        ));
        return;
    }
    assert!(
        !out.contains("OPENED"),
        "a fresh proc inside opened host sysctls for writing: {out}"
    );
    assert!(out.contains("refused"), "nothing was tried: {out}");
}

// ---------------------------------------------------------------------
// Timeouts

/// `hermetic run --timeout DURATION`: "kill PROGRAM (and the sandbox)
/// after DURATION"; exit status 124: "--timeout expired; PROGRAM was
/// killed", and hermetic says "it was killed". With `HERMETIC_KEEP=1` the
/// sandbox of a program that timed out is kept (a failure, as the README
/// says), but the program is not killed at all: it runs on in the kept
/// sandbox, for ever if it never ends (a hung program keeps spinning on
/// the CI host that set the variable to look at failures), while hermetic
/// has said it was killed. (A library run that times out is killed, kept
/// or not.) The attacker: any program that outlives its timeout, `sleep
/// 1000`. The caller: `HERMETIC_KEEP=1 hermetic run --timeout 1s -- sh -c
/// 'sleep 1000; echo' MARKER`. What happened (root, hermetic-ci,
/// hermetic-noids): exit 124, "hermetic: sh did not end within 1s
/// (--timeout): it was killed", and the program (`sh ... MARKER`) still
/// running in the kept sandbox. What should happen: the program killed at
/// its timeout (the sandbox kept, for looking at), as said.
#[test]
fn hermetic_run_s_timeout_kills_the_program_of_a_kept_sandbox() {
    let marker = common::unique_name("attacks11", "timeout");
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = common::hermetic_command()
        .env("HERMETIC_KEEP", "1")
        .args([
            "run",
            "--timeout",
            "1s",
            "--",
            "sh",
            "-c",
            "sleep 1000; echo",
        ])
        .arg(&marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let status = common::wait_bounded(&mut child);
    let said = std::fs::read_to_string(log.path()).unwrap();
    let left = common::pids_with_marker(&marker);
    // The caller's stdout: its end (every writer gone) within 5 s of
    // hermetic's, or it is held inside.
    let stdout = child.stdout.take().unwrap();
    let mut fds = [libc::pollfd {
        fd: stdout.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one live pollfd, for 5 s at most.
    unsafe { libc::poll(fds.as_mut_ptr(), 1, 5000) };
    let stdout_ended = fds[0].revents & (libc::POLLHUP | libc::POLLIN) != 0;
    if let Some(init) = common::kept_init(&said) {
        // SAFETY: kills the kept sandbox this test made (its init process).
        unsafe { libc::kill(init, libc::SIGKILL) };
    }
    assert_eq!(status.code(), Some(124), "{said}");
    assert!(
        left.is_empty() && stdout_ended,
        "the program said killed at its timeout runs on in the kept sandbox (pids {left:?}; \
         the caller's stdout ended: {stdout_ended}): {said}"
    );
}

// ---------------------------------------------------------------------
// Signals the test process gets from a run's process

/// CLD_STOPPED and CLD_CONTINUED SIGCHLDs the helper process got.
static STOPPED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static CONTINUED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn count_sigchld(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo for this signal, valid in the handler.
    let code = unsafe { (*info).si_code };
    if code == libc::CLD_STOPPED {
        STOPPED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    } else if code == libc::CLD_CONTINUED {
        CONTINUED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How many times the closure of [`helper_counts_sigchld_from_a_run`] is
/// stopped and continued.
const STOPS: u32 = 50;

/// A closure's process is a child of the test process (the joiner clones
/// it with `CLONE_PARENT`, so that the test process waits for it
/// directly). The kernel tells a parent each time a child stops and
/// continues, with a `SIGCHLD` (`CLD_STOPPED`, `CLD_CONTINUED`) unless the
/// parent asked otherwise (`SA_NOCLDSTOP`): so code inside, a closure and
/// a process it forks (one sends `SIGSTOP` and `SIGCONT` to the other, in
/// a loop), makes the test process receive as many signals as it likes,
/// when it likes, although "every process inside is in a session of the
/// sandbox's" and none can name it. Harmless under the default
/// disposition (the kernel drops an unhandled `SIGCHLD`); a test process
/// with a handler (a runtime's child reaper, a test's own) runs it each
/// time, and its system calls without `SA_RESTART` fail with `EINTR`. The
/// attacker: in a closure, fork; the child `kill(parent, SIGSTOP)`, waits
/// for `T` in `/proc/PARENT/stat`, `kill(parent, SIGCONT)`, 50 times.
/// What happened (root, hermetic-ci, hermetic-noids): the test process's
/// `SIGCHLD` handler ran 50 times with `CLD_STOPPED` and 50 with
/// `CLD_CONTINUED`. What should happen: none (a run's process whose
/// parent is inside, as a spawned closure's children are, or stops
/// that reach no one outside).
#[test]
#[ignore = "finding kept, said in the README (one signal reaches the test process): a closure stopped and continued by a process it forks makes the test process receive SIGCHLD (CLD_STOPPED/CLD_CONTINUED) at will"]
fn a_closure_cannot_signal_the_test_process_by_stopping_itself() {
    let out = common::run_self(
        "helper_counts_sigchld_from_a_run",
        &[("ATTACKS11_SIGCHLD_HELPER", "1")],
        &["--nocapture"],
    );
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let got = said
        .lines()
        .find_map(|l| l.split_once("SIGCHLDS ").map(|(_, n)| n))
        .unwrap_or_else(|| panic!("the helper said nothing: {said}"))
        .to_owned();
    assert!(out.status.success(), "{said}");
    assert_eq!(
        got, "stopped=0 continued=0",
        "code inside signalled the test process through its run's stops"
    );
}

#[test]
#[ignore = "helper: run by a_closure_cannot_signal_the_test_process_by_stopping_itself"]
fn helper_counts_sigchld_from_a_run() {
    // It changes the process's SIGCHLD disposition: only in a process of
    // its own, as its test starts it (not beside other tests, `--ignored`).
    if std::env::var_os("ATTACKS11_SIGCHLD_HELPER").is_none() {
        return;
    }
    // SAFETY: a handler that only adds to atomics; the struct is plain
    // data, valid zeroed.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = count_sigchld
            as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
            as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        assert_eq!(
            libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()),
            0
        );
    }
    let sandbox = hermetic::Sandbox::new().unwrap();
    let cycles = sandbox.run(|| {
        // SAFETY: getpid(2) has no preconditions.
        let me = unsafe { libc::getpid() };
        // SAFETY: fork of this single-threaded run's process; the child
        // makes system calls and reads /proc only, then _exits.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let state = || {
                std::fs::read_to_string(format!("/proc/{me}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.chars().next()))
                    .flatten()
            };
            let mut done = 0;
            'cycles: for _ in 0..STOPS {
                // SAFETY: signals to this child's own parent, inside.
                unsafe { libc::kill(me, libc::SIGSTOP) };
                let mut polls = 0u32;
                while state() != Some('T') {
                    polls += 1;
                    if polls > 1_000_000 {
                        break 'cycles;
                    }
                    std::thread::yield_now();
                }
                // SAFETY: as above.
                unsafe { libc::kill(me, libc::SIGCONT) };
                polls = 0;
                while state() == Some('T') {
                    polls += 1;
                    if polls > 1_000_000 {
                        break 'cycles;
                    }
                    std::thread::yield_now();
                }
                done += 1;
            }
            // SAFETY: ends the forked child without running the parent's
            // atexit handlers.
            unsafe { libc::_exit(done) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        while unsafe { libc::waitpid(child, &mut status, 0) } < 0 {}
        libc::WEXITSTATUS(status)
    });
    println!(
        "SIGCHLDS stopped={} continued={}",
        STOPPED.load(std::sync::atomic::Ordering::SeqCst),
        CONTINUED.load(std::sync::atomic::Ordering::SeqCst)
    );
    println!("cycles {cycles}");
}

/// The same with `isolate_test`, whose timeout failure says "the isolated
/// test timed out after 1s and was killed": with `HERMETIC_KEEP=1` the
/// sandbox is kept, and the body, re-executed inside, is not killed: it
/// runs on. The helper: `SandboxBuilder::timeout(1s).isolate_test(||
/// sleep(1000))` with `HERMETIC_KEEP=1`; after its failure, a process of
/// the test binary running the helper is still there, in the kept
/// sandbox. What should happen: killed at the timeout, as said.
#[test]
fn an_isolated_body_that_times_out_is_killed_in_a_kept_sandbox() {
    let out = common::run_self(
        "helper_keeps_a_timed_out_isolated_body",
        &[("HERMETIC_KEEP", "1")],
        &["--nocapture"],
    );
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let left: Vec<u32> = said
        .lines()
        .find_map(|l| l.split_once("BODIES LEFT ").map(|(_, n)| n.to_owned()))
        .unwrap_or_else(|| panic!("the helper said nothing: {said}"))
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(
        said.contains("timed out"),
        "the isolated body did not time out: {said}"
    );
    assert!(
        left.is_empty(),
        "the isolated body said killed runs on in the kept sandbox (pids {left:?}): {said}"
    );
}

#[test]
#[ignore = "helper: run by an_isolated_body_that_times_out_is_killed_in_a_kept_sandbox"]
fn helper_keeps_a_timed_out_isolated_body() {
    let me = std::process::id();
    let failed = std::panic::catch_unwind(|| {
        hermetic::Sandbox::builder()
            .timeout(std::time::Duration::from_secs(1))
            .isolate_test(|| std::thread::sleep(std::time::Duration::from_secs(1000)));
    });
    let said = match &failed {
        Err(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default(),
        Ok(()) => "the body returned".to_owned(),
    };
    println!("ISOLATED SAID {}", said.replace('\n', " / "));
    // The body: this test binary re-executed for this helper, in another
    // process than this one (whose parent is the test that runs it).
    let name = "helper_keeps_a_timed_out_isolated_body";
    let bodies: Vec<u32> = common::pids_with_marker(name)
        .into_iter()
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("PPid:"))
                        .and_then(|v| v.trim().parse::<u32>().ok())
                })
                .is_some_and(|ppid| ppid != me && p != me)
                && std::fs::read_link(format!("/proc/{p}/ns/pid")).ok()
                    != std::fs::read_link("/proc/self/ns/pid").ok()
        })
        .collect();
    println!(
        "BODIES LEFT {}",
        bodies
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(init) = common::kept_init(&said) {
        // SAFETY: kills the kept sandbox this helper made.
        unsafe { libc::kill(init, libc::SIGKILL) };
    }
}

// ---------------------------------------------------------------------
// The caller's stdio and a kept sandbox

/// Whether the read end `pipe` sees its end (every writer gone) within
/// 5 s, reading and dropping what comes meanwhile.
fn pipe_ends_within_5s(pipe: &impl AsRawFd) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let mut fds = [libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one live pollfd, for 100 ms at most.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) };
        if fds[0].revents & libc::POLLIN != 0 {
            let mut chunk = [0u8; 256];
            // SAFETY: reads into a live buffer of its size.
            let n = unsafe { libc::read(pipe.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
            if n == 0 {
                return true;
            }
        } else if fds[0].revents & libc::POLLHUP != 0 {
            return true;
        }
    }
    false
}

/// `run_attacks.rs` (`a_kept_sandbox_holds_none_of_the_callers_stdio`):
/// with `HERMETIC_KEEP=1` the caller's pipe "must still end when hermetic
/// does, or `out=$(hermetic run ...)` and a runner reading the test's
/// output wait for as long as the sandbox is kept". It holds for a
/// program that leaves nothing behind; a program that leaves a process
/// running (a server a failing test started, `sleep 1000 &`) gave that
/// process the caller's stdout, and the kept sandbox holds it: the
/// caller's `$(...)` waits until someone kills the sandbox, and what is
/// left writes into the caller's output whenever it likes. `hermetic
/// enter` hands its program the caller's pipes too, with the same end.
/// The caller: `out=$(HERMETIC_KEEP=1 hermetic run -- sh -c 'sleep 1000
/// & exit 3')`, and `out=$(hermetic enter INIT -- sh -c 'sleep 1000 &')`.
/// What happened (root, hermetic-ci, hermetic-noids): both exit, and
/// their stdout pipe does not end (5 s, then the test kills the kept
/// sandbox). What should happen: the pipe ends with hermetic (as with a
/// terminal, which hermetic relays: the program gets a pipe of hermetic's
/// that it relays, or the kept sandbox's processes lose the caller's
/// stdio).
#[test]
fn a_process_left_in_a_kept_sandbox_holds_none_of_the_callers_stdio() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut run = common::hermetic_command()
        .env("HERMETIC_KEEP", "1")
        .args(["run", "--", "sh", "-c", "sleep 1000 & exit 3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let run_code = common::wait_bounded(&mut run).code();
    let run_out = run.stdout.take().unwrap();
    let run_ended = pipe_ends_within_5s(&run_out);
    let said = std::fs::read_to_string(log.path()).unwrap();
    let Some(init) = common::kept_init(&said) else {
        panic!("no kept sandbox (exit {run_code:?}): {said}");
    };
    let mut enter = common::hermetic_command()
        .args(["enter", &init.to_string(), "--", "sh", "-c", "sleep 1000 &"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let enter_code = common::wait_bounded(&mut enter).code();
    let enter_out = enter.stdout.take().unwrap();
    let enter_ended = pipe_ends_within_5s(&enter_out);
    // SAFETY: kills the kept sandbox this test made (its init process).
    unsafe { libc::kill(init, libc::SIGKILL) };
    assert_eq!((run_code, enter_code), (Some(3), Some(0)), "{said}");
    assert!(
        run_ended && enter_ended,
        "the kept sandbox holds the caller's stdout: hermetic run's ended: {run_ended}, \
         hermetic enter's ended: {enter_ended}"
    );
}

// ---------------------------------------------------------------------
// The seccomp filter, through the other ABIs, on the real kernel

/// An i386 system call (`int 0x80`) with integer arguments: the raw
/// return value (`-errno` on failure).
#[cfg(target_arch = "x86_64")]
fn i386_call(nr: u32, a1: u32, a2: u32, a3: u32) -> i32 {
    let ret: u32;
    // SAFETY: a system call through the i386 entry with integer arguments
    // only (no pointer is passed: none would fit in 32 bits).
    unsafe {
        std::arch::asm!(
            "xchg rbx, {b}",
            "int 0x80",
            "xchg rbx, {b}",
            b = inout(reg) u64::from(a1) => _,
            inout("eax") nr => ret,
            in("ecx") a2,
            in("edx") a3,
        );
    }
    ret as i32
}

/// An x32 system call (the number with `__X32_SYSCALL_BIT`), integer
/// arguments: the raw return value.
#[cfg(target_arch = "x86_64")]
fn x32_call(nr: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: i64;
    // SAFETY: a system call with integer arguments only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inout("rax") nr | 0x4000_0000 => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// The filter's rules meet the same calls made through the i386 entry
/// (`int 0x80`, which any x86_64 program may use where the kernel has
/// IA-32 emulation) with their i386 numbers, and x32 calls fail: on the
/// real kernel, not only in the filter's interpreter (`setup/seccomp.rs`'s
/// unit tests). Each call is one that works without the filter, so that
/// a gap shows as a success: `keyctl(KEYCTL_GET_KEYRING_ID, session)`,
/// `unshare(CLONE_NEWCGROUP)` (root inside may), `setns(-1,
/// CLONE_NEWCGROUP)` (`EBADF` without the filter), `fcntl`/`fcntl64(pipe,
/// F_SETFL, O_ASYNC)`.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_filter_holds_through_the_i386_and_x32_entries() {
    let sandbox = hermetic::Sandbox::new().unwrap();
    let got = sandbox.try_run(|| {
        let getpid = i386_call(20, 0, 0, 0);
        if getpid <= 0 {
            return Err(format!("the i386 entry does not work here ({getpid})"));
        }
        let mut pipe = [0i32; 2];
        // SAFETY: pipe(2) into a live array.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        let session = libc::KEY_SPEC_SESSION_KEYRING as u32;
        let cgroup = libc::CLONE_NEWCGROUP as u32;
        let o_async = libc::O_ASYNC as u32;
        let calls = vec![
            ("i386 keyctl", i386_call(288, 0, session, 0)),
            ("i386 add_key", i386_call(286, 0, 0, 0)),
            (
                "i386 unshare(CLONE_NEWCGROUP)",
                i386_call(310, cgroup, 0, 0),
            ),
            (
                "i386 setns(-1, CLONE_NEWCGROUP)",
                i386_call(346, u32::MAX, cgroup, 0),
            ),
            (
                "i386 fcntl(F_SETFL, O_ASYNC)",
                i386_call(55, pipe[0] as u32, libc::F_SETFL as u32, o_async),
            ),
            (
                "i386 fcntl64(F_SETFL, O_ASYNC)",
                i386_call(221, pipe[0] as u32, libc::F_SETFL as u32, o_async),
            ),
            (
                "x32 keyctl",
                x32_call(250, 0, session as i32 as i64 as u64, 0) as i32,
            ),
            (
                "x32 unshare(CLONE_NEWCGROUP)",
                x32_call(272, cgroup.into(), 0, 0) as i32,
            ),
        ];
        Ok(calls
            .into_iter()
            .map(|(what, ret)| (what.to_owned(), ret))
            .collect::<Vec<_>>())
    });
    let calls = match got {
        Ok(Ok(calls)) => calls,
        Ok(Err(why)) => {
            common::skip(&why);
            return;
        }
        Err(hermetic::Error::Killed { signal, .. }) => {
            common::skip(&format!(
                "the i386 entry killed the run ({signal}): no IA-32 emulation"
            ));
            return;
        }
        Err(e) => panic!("{e}"),
    };
    // The control, outside any filter: the same entry reaches the kernel,
    // which answers otherwise (EBADF for a bad fd; O_ASYNC set on a pipe
    // of this process, with no owner: nothing is signalled).
    let mut pipe = [0i32; 2];
    // SAFETY: pipe(2) into a live array; both ends closed below.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    let cgroup = libc::CLONE_NEWCGROUP as u32;
    let control = (
        i386_call(346, u32::MAX, cgroup, 0),
        i386_call(
            221,
            pipe[0] as u32,
            libc::F_SETFL as u32,
            libc::O_ASYNC as u32,
        ),
    );
    // SAFETY: closes the two fds made above.
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }
    assert_eq!(control, (-libc::EBADF, 0), "the i386 entry outside");
    let wrong: Vec<_> = calls
        .iter()
        .filter(|(what, ret)| {
            let want = if what.starts_with("x32") {
                -libc::ENOSYS
            } else {
                -libc::EPERM
            };
            *ret != want
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "not refused as the filter says: {wrong:?} (all: {calls:?})"
    );
}

// ---------------------------------------------------------------------
// What a timed-out run's error costs the test process

/// A run that times out is diagnosed by the test process: for each of
/// its threads, from `/proc`, its state, system call and wait, and for a
/// thread in `futex` where the lock lies, found by parsing the whole of
/// the process's `/proc/PID/maps` again for each such thread
/// (`diagnose::lock_place`). Both counts are the closure's to choose:
/// threads blocked on a lock (a `Mutex` held by the closure) and mappings
/// (`vm.max_map_count`, 65530 by default: pages of alternating
/// protections, which the kernel cannot merge). The test process's work
/// grows as their product, after the timeout, on the test's thread: a
/// run with a 1 s timeout did not return for about half a minute with 200
/// threads and 30,000 mappings (debug build), 28 s past its timeout
/// (200 threads and no mappings: 0.9 s; 20 threads and 30,000 mappings:
/// 3 s), so a closure with a few thousand threads and the full 65,530
/// mappings keeps the test process spinning for hours. As root the test
/// process reads any process's `/proc`; rootless the closure first gives
/// up its protection (`prctl(PR_SET_DUMPABLE, 1)`, which the README
/// allows). The attacker: a closure that maps 60,000 pages, starts 300
/// threads blocked on a mutex it holds, and sleeps. What happened (root,
/// hermetic-ci, hermetic-noids): `try_run` with a 1 s timeout had not
/// returned 20 s later (it returns a `TimedOut` some minutes after). What
/// should happen: the timeout's error within moments of the timeout (the
/// diagnosis bounded: maps parsed once, threads and lines capped).
#[test]
fn a_timed_out_run_returns_soon_after_its_timeout_whatever_its_threads_and_mappings() {
    const MAPS: usize = 60_000;
    const THREADS: usize = 300;
    let (tx, rx) = std::sync::mpsc::channel();
    let started = std::time::Instant::now();
    std::thread::spawn(move || {
        let sandbox = hermetic::Sandbox::builder()
            .timeout(std::time::Duration::from_secs(1))
            .build()
            .unwrap();
        let result = sandbox.try_run(|| {
            // SAFETY: prctl(2) on this process only.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
            for i in 0..MAPS {
                let prot = if i % 2 == 0 {
                    libc::PROT_READ
                } else {
                    libc::PROT_NONE
                };
                // SAFETY: a new anonymous private page, never used.
                unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        prot,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
            }
            let lock = std::sync::Arc::new(std::sync::Mutex::new(()));
            let _held = lock.lock().unwrap();
            for _ in 0..THREADS {
                let lock = lock.clone();
                let _ = std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || drop(lock.lock()));
            }
            std::thread::sleep(std::time::Duration::from_secs(3600));
        });
        let _ = tx.send((started.elapsed(), result.map_err(|e| e.to_string().len())));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(20)) {
        Ok((took, result)) => assert!(
            took < std::time::Duration::from_secs(20),
            "returned after {took:?}: {result:?}"
        ),
        Err(_) => panic!(
            "try_run with a 1 s timeout had not returned after 20 s: the test process is \
             still diagnosing the closure's {THREADS} threads against its {MAPS} mappings"
        ),
    }
}

// ---------------------------------------------------------------------
// A command's relays

/// `Sandbox::command`'s program is the child of an inner relay inside
/// the sandbox, which sends its wait status to the outer relay (the
/// `Child` the test waits for). The relays are "out of reach" of `ptrace`,
/// `/proc/PID/mem`, `/proc/PID/fd` and `pidfd_getfd` (`boundary.rs`), but
/// not of signals: the program, root inside and the same user as its
/// parent, stops it (`kill -STOP $PPID`) and exits; the inner relay never
/// reports, and the outer relay waits for it for as long as the sandbox
/// lives: the test's `status()`, `wait()` or `output()` never returns,
/// although the program it waits for has ended ("every wait ends with
/// the run's timeout or the death of the process waited for"). The
/// attacker: `sandbox.command("sh").args(["-c", "kill -STOP $PPID; exit
/// 7"]).status()`. What happened (root, hermetic-ci, hermetic-noids): no
/// status after 10 s (the test gives up; dropping the sandbox frees the
/// wait). What should happen: `exit status: 7` (the relay beyond the
/// program's signals: another user, or signals to it refused), or an
/// error.
#[test]
fn a_command_s_program_cannot_make_the_test_wait_for_ever_by_stopping_its_relay() {
    let sandbox = hermetic::Sandbox::new().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut cmd = sandbox.command("sh");
    cmd.args(["-c", "kill -STOP $PPID; exit 7"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::thread::spawn(move || {
        let _ = tx.send(cmd.status().map(|s| s.code()));
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(10));
    // Frees the waiting thread, if it waits: the sandbox's processes die.
    drop(sandbox);
    match got {
        Ok(status) => assert_eq!(status.as_ref().ok(), Some(&Some(7)), "{status:?}"),
        Err(_) => {
            let after_drop = rx.recv_timeout(std::time::Duration::from_secs(10));
            panic!(
                "the command's program ended (exit 7) but the test's wait for it had not \
                 returned after 10 s: its inner relay is stopped (once the sandbox was \
                 dropped: {after_drop:?})"
            )
        }
    }
}

/// Waits up to `secs` for `child`; its status if it ended.
fn ended_within_secs(
    child: &mut std::process::Child,
    secs: u64,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The same through `hermetic enter`, whose program is a command of the
/// kept sandbox's, under an inner relay: a program (or anything left in
/// the kept sandbox, which can signal every `hermetic enter` session's
/// relay) stops the relay, and `hermetic enter` never returns, and the
/// sandbox being kept, nothing frees it: `SIGINT` (Ctrl-C) and `SIGTERM`
/// are passed on to the stopped relay; only `SIGKILL` ends it. The
/// attacker: `hermetic enter INIT -- sh -c 'kill -STOP $PPID; exit 3'`.
/// What happened (root, hermetic-ci, hermetic-noids): still running 10 s
/// later, and 5 s after a `SIGTERM`. What should happen: exit status 3.
#[test]
fn hermetic_enter_returns_when_its_program_stops_its_relay() {
    let out = common::hermetic_command()
        .env("HERMETIC_KEEP", "1")
        .args(["run", "--", "sh", "-c", "exit 1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let Some(init) = common::kept_init(&said) else {
        panic!("no kept sandbox: {said}");
    };
    let mut enter = common::hermetic_command()
        .args([
            "enter",
            &init.to_string(),
            "--",
            "sh",
            "-c",
            "kill -STOP $PPID; exit 3",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = ended_within_secs(&mut enter, 10);
    let after_term = if first.is_none() {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(enter.id() as i32, libc::SIGTERM) };
        ended_within_secs(&mut enter, 5)
    } else {
        None
    };
    let _ = enter.kill();
    let _ = enter.wait();
    // SAFETY: kills the kept sandbox this test made (its init process).
    unsafe { libc::kill(init, libc::SIGKILL) };
    assert_eq!(
        first.and_then(|s| s.code()),
        Some(3),
        "hermetic enter had not returned 10 s after its program ended (after a SIGTERM: {after_term:?})"
    );
}
