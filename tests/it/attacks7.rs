//! Attacks on rows of the README's table "What is isolated, and what is
//! not" that the other attack modules do not try. An attack that works
//! today is `#[ignore]`d with the finding (it fails with `--ignored`); the
//! rest pass, root and rootless.

use crate::common;
use crate::common::{read_master, shown_until, survives_a_line_typed, wait_bounded, wait_for};

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::{Duration, Instant};

/// A Perl program that asks for `SIGIO` on its stdin (`O_ASYNC`), says
/// READY, and ends on its own after three seconds.
const ASK_FOR_SIGIO: &str = "use Fcntl; $| = 1; \
    fcntl(STDIN, F_SETFL, O_ASYNC) or print \"REFUSED: $!\\n\"; \
    print \"READY\\n\"; sleep 3; print \"SURVIVED\\n\";";

// Row "signal the test process, its caller or another sandbox": "hermetic
// run's program cannot signal the shell that started it". A program given
// the terminal as its stdin sets O_ASYNC on it: the tty layer makes the
// terminal's foreground process group the owner of that open file, and
// sends it SIGIO (whose default action ends a process) whenever input
// arrives. The kernel checks only that the uid matches, not the PID
// namespace, so the program signals the job outside that started it.
/// The attacker: `hermetic run -- perl -e 'fcntl(STDIN, F_SETFL, O_ASYNC)'`
/// on a terminal, then a line typed there. What happened: `hermetic run`
/// (the terminal's foreground job, outside the sandbox) was killed by
/// SIGIO. What should happen: no signal reaches a process outside; the
/// program ends and `hermetic run` exits with its status (0).
#[test]
fn hermetic_run_s_program_cannot_signal_its_caller_through_sigio_on_the_terminal() {
    hermetic_run_asking_for_sigio(ASK_FOR_SIGIO, libc::SIGIO);
}

/// The same program, which also picks the signal the tty sends
/// (`F_SETSIG`, any signal): SIGKILL, which hermetic run could neither
/// ignore nor handle.
const ASK_FOR_SIGKILL: &str = "use Fcntl; $| = 1; \
    fcntl(STDIN, 10, 9) or die \"F_SETSIG: $!\"; \
    fcntl(STDIN, F_SETFL, O_ASYNC) or print \"REFUSED: $!\\n\"; \
    print \"READY\\n\"; sleep 3; print \"SURVIVED\\n\";";

/// The attacker: as above, with `fcntl(STDIN, F_SETSIG, SIGKILL)` first.
/// What happened: `hermetic run`, outside, was killed by SIGKILL when a
/// line was typed (so ignoring SIGIO in hermetic run would not be a fix).
/// What should happen: `hermetic run` exits with the program's status, 0.
#[test]
fn hermetic_run_s_program_cannot_sigkill_its_caller_through_f_setsig_on_the_terminal() {
    hermetic_run_asking_for_sigio(ASK_FOR_SIGKILL, libc::SIGKILL);
}

/// `hermetic run -- perl -e program` on a terminal whose foreground job it
/// is; once the program says READY a line is typed: asserts that
/// hermetic run was not killed by `signal` and exited 0.
fn hermetic_run_asking_for_sigio(program: &str, signal: i32) {
    let mut cmd = common::hermetic_command();
    cmd.args(["run", "--", "perl", "-e", program]);
    survives_a_line_typed(cmd, signal, "hermetic run, outside,");
}

// Row "signal the test process, its caller or another sandbox": "every
// process inside is in a session of the sandbox's". The same SIGIO, from
// a `command()`'s program that inherits the test process's stdin, a
// terminal: the test process is the terminal's foreground job (as under
// `cargo test` in a shell), and the program kills it.
/// The attacker: `ns.command("perl")` with the test's terminal as stdin
/// (std's default), which sets O_ASYNC on it; a line is then typed. What
/// happened: the test process (outside the sandbox) died of SIGIO. What
/// should happen: the program cannot signal it; `status()` returns the
/// program's exit 0 and the test passes.
#[test]
fn a_command_s_program_cannot_signal_the_test_process_through_sigio_on_its_terminal() {
    let mut cmd = common::self_command("helper_runs_a_command_asking_for_sigio");
    cmd.arg("--nocapture");
    survives_a_line_typed(cmd, libc::SIGIO, "the test process");
}

#[test]
#[ignore = "helper: run on a pty by a_command_s_program_cannot_signal_the_test_process_through_sigio_on_its_terminal"]
fn helper_runs_a_command_asking_for_sigio() {
    common::perl_command_succeeds(ASK_FOR_SIGIO);
}

/// A pipe: (read end, write end).
fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two fds, which are then owned here.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    use std::os::fd::FromRawFd;
    // SAFETY: both fds were just opened and are owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

/// The errno of the last failed call.
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

// Row "make the test process spin or block": "every wait ends with the
// run's timeout or the death of the process waited for"; and the row of
// locks says what a closure may hold against the test process: `flock`
// and `fcntl` locks, which the test process only meets if it locks too.
// A lease (`fcntl(F_SETLEASE)`) is neither: it is checked by the file's
// owner uid only (root inside is the caller), works on the read-only
// host's files, and makes every `open` of the file by anyone else, the
// test process and every process of the host, wait until the holder lets
// go or `/proc/sys/fs/lease-break-time` (45 s by default) passes. As root,
// that is any file of root's: `/etc/ld.so.cache`, which every dynamically
// linked program opens, or `/etc/passwd`.
/// The attacker: a spawned closure opens a host file of the caller's
/// (read-only host), takes a write lease on it (ignoring SIGIO), and holds
/// it five seconds. What happened: the test process's plain
/// `File::open` of that file blocked until the closure let go (about five
/// seconds; up to 45 s, and again at each open, if it holds on). What
/// should happen: the lease is refused inside (as the seccomp filter
/// refuses other calls that reach objects outside), and the open returns
/// at once.
#[test]
fn a_closure_cannot_make_the_test_process_s_open_of_a_host_file_wait() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let file = tempfile::Builder::new()
        .prefix(".hermetic-attack7-lease")
        .tempfile_in(dir)
        .unwrap();
    // The test's own handle of the file is closed (a write lease needs the
    // file open nowhere else); the path goes when the test ends.
    let temp_path = file.into_temp_path();
    let path = temp_path.to_path_buf();
    let (mut ready_r, ready_w) = pipe();
    let ns = hermetic::Sandbox::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let reopen = path.clone();
    let spawned = ns
        .spawn(move || {
            let mut ready_w = ready_w;
            // SAFETY: ignores SIGIO, which a lease break sends its holder.
            unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
            let f = std::fs::File::open(&reopen).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: fcntl on a live fd.
            let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) };
            let code = if r == 0 { 0u8 } else { errno() as u8 };
            ready_w.write_all(&[code]).unwrap();
            drop(ready_w);
            if r == 0 {
                std::thread::sleep(Duration::from_secs(5));
            }
            drop(f);
            code
        })
        .unwrap();
    let mut code = [0xffu8];
    ready_r.read_exact(&mut code).unwrap();
    let started = Instant::now();
    let opened = std::fs::File::open(&path);
    let waited = started.elapsed();
    let _ = spawned.join();
    drop(temp_path);
    assert!(opened.is_ok());
    assert_ne!(
        code[0], 0,
        "the closure took a lease; the test's open waited {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(2),
        "the test's open waited {waited:?}"
    );
}

// Row "write host files": "the host's filesystem is read-only inside,
// every mount of it (EROFS), as root too". The sandbox's mounts of the
// host are made read-only when it is made; a mount the host makes later,
// below a shared mount (systemd makes `/` shared; udisks, autofs and
// container runtimes mount there), must not reach the sandbox writable.
// The test process (root, in a mount namespace of its own whose `D` is a
// shared tmpfs) mounts a tmpfs on `D/late` after the sandbox was made,
// while a spawned closure waits; the closure then tries to write there.
// Holds today: the write fails with EROFS and nothing appears outside.
#[test]
fn a_host_mount_made_while_the_sandbox_lives_is_read_only_inside() {
    if !common::is_root() {
        return common::skip("mounting on the host needs root");
    }
    let (exe, args) = common::self_invocation("helper_mounts_on_the_host_while_a_sandbox_lives");
    let out = match Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(exe)
        .args(args)
        .arg("--nocapture")
        .output()
    {
        Ok(out) => out,
        Err(e) => return common::skip(&format!("no unshare(1) here: {e}")),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the helper did not run: {text}");
}

#[test]
#[ignore = "helper: run in a mount namespace of its own by a_host_mount_made_while_the_sandbox_lives_is_read_only_inside"]
fn helper_mounts_on_the_host_while_a_sandbox_lives() {
    use std::ffi::CString;
    let dir = tempfile::Builder::new()
        .prefix(".hermetic-attack7-shared")
        .tempdir_in(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .unwrap();
    let d = dir.path().to_owned();
    let cd = CString::new(d.as_os_str().as_encoded_bytes()).unwrap();
    let late = d.join("late");
    // SAFETY: mount(2) with NUL-terminated strings, in this process's own
    // mount namespace (unshare --mount).
    unsafe {
        assert_eq!(
            libc::mount(
                c"tmpfs".as_ptr(),
                cd.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null()
            ),
            0
        );
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                cd.as_ptr(),
                std::ptr::null(),
                libc::MS_SHARED,
                std::ptr::null()
            ),
            0
        );
    }
    std::fs::create_dir(&late).unwrap();
    let (mut go_r, mut go_w) = pipe();
    let ns = hermetic::Sandbox::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let inside = late.clone();
    let spawned = ns
        .spawn(move || {
            let mut b = [0u8];
            go_r.read_exact(&mut b).unwrap();
            let before = std::fs::write(d.join("early"), b"x").map_err(|e| e.raw_os_error());
            let after = std::fs::write(inside.join("planted"), b"from inside")
                .map_err(|e| e.raw_os_error());
            (before, after)
        })
        .unwrap();
    let clate = CString::new(late.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: as above.
    let r = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            clate.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "mount: errno {}", errno());
    go_w.write_all(b"g").unwrap();
    let (before, after) = spawned.join().unwrap();
    let planted = std::fs::read_to_string(late.join("planted")).ok();
    println!("early mount: {before:?}; late mount: {after:?}; outside: {planted:?}");
    // SAFETY: as above.
    unsafe {
        libc::umount2(clate.as_ptr(), libc::MNT_DETACH);
        libc::umount2(cd.as_ptr(), libc::MNT_DETACH);
    }
    assert_eq!(
        before,
        Err(Some(libc::EROFS)),
        "the early host mount was writable inside"
    );
    assert_eq!(
        planted, None,
        "a closure wrote a host mount made after the sandbox"
    );
    assert_eq!(after, Err(Some(libc::EROFS)));
}

/// `hermetic run -- perl -e program` on a pty that is its controlling
/// terminal (the caller's, as a shell's job has it); waits for DONE and
/// the end. Returns how it ended, what the terminal showed, and the pty's
/// slave end (the caller's own open file of the terminal).
fn hermetic_run_on_a_terminal(program: &str) -> (std::process::ExitStatus, String, OwnedFd) {
    let (master, slave) = common::openpty();
    let mut cmd = common::hermetic_command();
    cmd.args(["run", "--", "perl", "-e", program]);
    common::on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let rx = read_master(master);
    let mut seen = String::new();
    let done = wait_for(&rx, &mut seen, "DONE");
    let status = wait_bounded(&mut child);
    assert!(done && status.success(), "{status:?}: {seen}");
    (status, seen, slave)
}

/// `TIOCGEXCL`: whether a terminal is in exclusive mode.
const TIOCGEXCL: libc::c_ulong = 0x8004_5440;

// Row "type into the caller's terminal ...": "A program given the
// terminal as its stdio ... may change its modes and size, as any program
// could; `hermetic run` puts the modes back and resumes suspended output
// when it ends". Exclusive mode (`TIOCEXCL`) is not a mode hermetic puts
// back: it stays on the caller's terminal after `hermetic run` ended, and
// from then on every open of the terminal by a process without
// CAP_SYS_ADMIN fails with EBUSY (`ssh`'s and `sudo`'s password prompts,
// `git commit`'s editor on /dev/tty, a new `tmux` pane's login).
/// The attacker: `hermetic run -- perl -e 'ioctl(STDIN, TIOCEXCL, 0)'` on
/// the caller's terminal. What happened: once `hermetic run` ended, the
/// terminal was still exclusive (`TIOCGEXCL` says 1; rootless, opening it
/// fails with EBUSY). What should happen: the terminal is as the caller
/// left it, not exclusive, as its modes are (`hermetic run` puts it back,
/// or the filter refuses `TIOCEXCL` as it does `TIOCSTI`).
#[test]
fn hermetic_run_s_program_cannot_leave_the_caller_s_terminal_exclusive() {
    use std::os::fd::AsRawFd;
    let excl = |fd: i32| {
        let mut on: libc::c_int = -1;
        // SAFETY: TIOCGEXCL writes an int.
        let r = unsafe { libc::ioctl(fd, TIOCGEXCL, &mut on) };
        assert_eq!(r, 0, "TIOCGEXCL: errno {}", errno());
        on
    };
    let (_, seen, slave) = hermetic_run_on_a_terminal(
        "ioctl(STDIN, 0x540C, 0) or print \"REFUSED: $!\\n\"; print \"DONE\\n\";",
    );
    assert!(
        seen.contains("REFUSED: Operation not permitted"),
        "TIOCEXCL was not refused: {seen}"
    );
    // The caller's next program opens the terminal by name, as `ssh` and
    // `sudo` open /dev/tty (as root, CAP_SYS_ADMIN would let it through).
    let name = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).unwrap();
    let reopen = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&name);
    assert_eq!(
        excl(slave.as_raw_fd()),
        0,
        "the caller's terminal was left exclusive (reopening {name:?}: {:?})",
        reopen.map(|_| ()).map_err(|e| e.raw_os_error())
    );
}

// Same row, "hermetic run puts the modes back": the program's stdin is the
// caller's own open file of the terminal (the shell's), whose status flags
// it may change; `O_NONBLOCK` left on it makes the caller's next read of
// the terminal fail with EAGAIN (dash, `cat`, Python's `input()` exit on
// it, where a shell that resets the flag would not have been needed).
/// The attacker: `hermetic run -- perl -e 'fcntl(STDIN, F_SETFL,
/// O_NONBLOCK)'`. What happened: after `hermetic run` ended, the caller's
/// open file of its terminal was non-blocking. What should happen: the
/// caller's terminal file is as it was (hermetic puts its flags back, or
/// hands the program a file of its own).
#[test]
fn hermetic_run_s_program_cannot_leave_the_caller_s_terminal_non_blocking() {
    use std::os::fd::AsRawFd;
    let (_, _, slave) = hermetic_run_on_a_terminal(
        "use Fcntl; fcntl(STDIN, F_SETFL, O_NONBLOCK) or die \"fcntl: $!\"; print \"DONE\\n\";",
    );
    // SAFETY: F_GETFL on a live fd.
    let flags = || unsafe { libc::fcntl(slave.as_raw_fd(), libc::F_GETFL) };
    assert_eq!(
        flags() & libc::O_NONBLOCK,
        0,
        "the caller's open file of its terminal was left non-blocking"
    );
}

// Same row: the line discipline is not a mode hermetic puts back either.
// `TIOCSETD` to N_NULL (27, loaded on demand, no privilege needed) leaves
// the caller's terminal discarding what is typed and refusing what is
// written: the shell that started `hermetic run` is dead once it ends.
/// The attacker: `hermetic run -- perl -e 'ioctl(STDIN, TIOCSETD,
/// pack("i", 27))'`. What happened: after `hermetic run` ended, the
/// caller's terminal had line discipline 27 (N_NULL); reads and writes on
/// it fail. What should happen: the terminal keeps N_TTY (hermetic puts
/// it back, or the filter refuses `TIOCSETD` as it does `TIOCSTI`).
#[test]
fn hermetic_run_s_program_cannot_change_the_caller_s_terminal_s_line_discipline() {
    use std::os::fd::AsRawFd;
    let (_, seen, slave) = hermetic_run_on_a_terminal(
        "my $d = pack('i', 27); ioctl(STDIN, 0x5423, $d) or print \"REFUSED: $!\\n\"; print \"DONE\\n\";",
    );
    let mut ldisc: libc::c_int = -1;
    // SAFETY: TIOCGETD writes an int.
    let r = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGETD, &mut ldisc) };
    assert_eq!(r, 0, "TIOCGETD: errno {}", errno());
    assert!(
        seen.contains("REFUSED: Operation not permitted"),
        "TIOCSETD was not refused: {seen}"
    );
    assert_eq!(
        ldisc, 0,
        "the caller's terminal was left on another line discipline"
    );
}

/// A Perl daemon: for up to a minute, opens fd 0 of every other process it
/// sees through `/proc/PID/fd/0`, and puts the first terminal it finds on
/// the N_NULL line discipline.
const TERMINAL_KILLER: &str = "for (1..1200) { opendir(my $d, '/proc') or die; \
    for my $p (grep { /^\\d+$/ && $_ != $$ } readdir $d) { \
      open(my $fh, '+<', \"/proc/$p/fd/0\") or next; \
      if (-t $fh) { my $x = pack('i', 27); ioctl($fh, 0x5423, $x); exit 0 } } \
    select(undef, undef, undef, 0.05); }";

// Rows "type into the caller's terminal" and "reach hermetic's own
// processes": a kept sandbox (`HERMETIC_KEEP=1`) keeps what its program
// left running, and hermetic tells the user how to look inside: `hermetic
// enter INIT`, a shell inside on the user's own terminal. That shell is an
// ordinary dumpable process of the sandbox's, in the same user namespace
// as what the program left: a process left inside opens its fd 0 through
// `/proc/PID/fd/0` and so holds the user's terminal. It puts it on N_NULL
// here (it could as well make it exclusive, or ask for SIGKILL to the
// terminal's foreground job, `hermetic enter` outside, with O_ASYNC and
// F_SETSIG). The `nsenter` line hermetic prints holds: its shell is in
// another user namespace, without capabilities, out of reach.
/// The attacker: `HERMETIC_KEEP=1 hermetic run -- sh -c 'setsid perl -e
/// DAEMON & exit 1'`; the daemon waits for a process with a terminal on
/// fd 0. The user then looks inside with `hermetic enter INIT` from their
/// terminal. What happened: the daemon reopened the entered shell's
/// terminal and put it on N_NULL: the user's terminal is dead, during and
/// after. What should happen: nothing inside reaches the terminal of the
/// shell that looks inside (as `a_kept_sandbox_cannot_type_into_the_
/// terminal_of_the_shell_that_looks_inside` says for TIOCSTI).
#[test]
fn a_kept_sandbox_cannot_reach_the_terminal_of_the_shell_that_looks_inside() {
    use std::os::fd::AsRawFd;
    let init = kept_with_daemon(TERMINAL_KILLER);
    let (master, slave) = common::openpty();
    let ldisc = || {
        let mut d: libc::c_int = -1;
        // SAFETY: TIOCGETD writes an int.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGETD, &mut d) };
        d
    };
    let mut cmd = common::hermetic_command();
    cmd.args(["enter", &init.to_string()]);
    common::on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    // The user looks around for a while.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ldisc() == 0 && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = ldisc();
    // And leaves.
    let mut writer = std::fs::File::from(master.try_clone().unwrap());
    let _ = writer.write_all(b"exit\n");
    std::thread::sleep(Duration::from_millis(200));
    let _ = child.kill();
    let status = child.wait().unwrap();
    // SAFETY: kills the kept sandbox this test made (its init process).
    unsafe { libc::kill(init, libc::SIGKILL) };
    drop(master);
    if after == 0 && !status.success() {
        return common::skip(&format!("hermetic enter did not work here ({status})"));
    }
    assert_eq!(
        after, 0,
        "a process left in the kept sandbox put the looking shell's terminal on line discipline {after}"
    );
}

/// A sandbox kept by a failed `hermetic run` (`HERMETIC_KEEP=1`) whose
/// program left the Perl program `daemon` running; its init process.
fn kept_with_daemon(daemon: &str) -> i32 {
    let out = common::hermetic_command()
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "setsid perl -e \"$1\" </dev/null >/dev/null 2>&1 & exit 1",
            "sh",
            daemon,
        ])
        .env("HERMETIC_KEEP", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    common::kept_init(&stderr).unwrap_or_else(|| panic!("no kept sandbox: {stderr}"))
}

/// A Perl daemon: opens fd 0 of the first other process whose fd 0 is a
/// terminal, says GOTCHA there, waits for that process to end, then
/// reads the terminal and writes back what it read, marked STOLEN.
const TERMINAL_THIEF: &str = "for (1..1200) { opendir(my $d, '/proc') or die; \
    for my $p (grep { /^\\d+$/ && $_ != $$ } readdir $d) { \
      open(my $fh, '+<', \"/proc/$p/fd/0\") or next; next unless -t $fh; \
      syswrite($fh, \"GOTCHA\\n\"); \
      select(undef, undef, undef, 0.05) while kill(0, $p); \
      while (sysread($fh, my $b, 100)) { syswrite($fh, \"STOLEN:$b\") } exit 0; } \
    select(undef, undef, undef, 0.05); }";

// The same row, beyond the visit: the process left inside keeps its open
// file of the user's terminal after `hermetic enter` ended, for as long as
// the sandbox is kept, and reads what the user then types into their own
// shell on the host (a `sudo` password), or writes to it.
/// The attacker: as above, a daemon left in a kept sandbox reopens the
/// entered shell's terminal; once the user left (`exit`), it reads the
/// terminal. What happened: a line typed afterwards, at the user's own
/// shell outside, was read by the daemon (it wrote it back, "STOLEN:").
/// What should happen: nothing inside holds the user's terminal once
/// `hermetic enter` ended; the line reaches only the user's shell.
#[test]
fn a_kept_sandbox_cannot_read_what_the_user_types_after_looking_inside() {
    let init = kept_with_daemon(TERMINAL_THIEF);
    let (master, slave) = common::openpty();
    let mut writer = std::fs::File::from(master.try_clone().unwrap());
    let mut cmd = common::hermetic_command();
    cmd.args(["enter", &init.to_string()]);
    common::on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let rx = read_master(master);
    let mut seen = String::new();
    let got = wait_for(&rx, &mut seen, "GOTCHA");
    // The user leaves the sandbox...
    let _ = writer.write_all(b"exit\n");
    let status = wait_bounded(&mut child);
    // ... and types at their own shell.
    let _ = writer.write_all(b"hunter2\n");
    let stolen = got && {
        let more = shown_until(&rx, "STOLEN", Duration::from_secs(3));
        seen.push_str(&more);
        more.contains("STOLEN:hunter2")
    };
    // SAFETY: kills the kept sandbox this test made (its init process).
    unsafe { libc::kill(init, libc::SIGKILL) };
    if !got && !status.success() {
        return common::skip(&format!(
            "hermetic enter did not work here ({status}): {seen}"
        ));
    }
    assert!(
        !stolen,
        "a process left in the kept sandbox read what was typed after hermetic enter ended: {seen:?}"
    );
}

/// A Perl daemon on the terminal it was given as stdin: opens it, says
/// GOTCHA on its stdout, waits for a second (its program and `hermetic
/// run` end meanwhile), then reads the terminal and writes back what it
/// read, marked STOLEN.
const STDIN_THIEF: &str = "open(my $fh, '+<', '/proc/self/fd/0') or die; \
    syswrite(STDOUT, \"GOTCHA\\n\"); close(STDOUT); sleep 1; \
    while (sysread($fh, my $b, 100)) { syswrite($fh, \"STOLEN:$b\") }";

// Rows "type into the caller's terminal" and the threat model ("must not
// ... read or outlive anything outside its sandbox"): with
// `HERMETIC_KEEP=1`, a failing program's sandbox is kept, with what the
// program left running in it. A process it started in the background on
// the caller's terminal (its stdin) keeps it after `hermetic run` ended,
// and reads what the user then types at their own shell.
/// The attacker: `HERMETIC_KEEP=1 hermetic run -- sh -c 'setsid perl -e
/// THIEF & exit 1'` on the caller's terminal. What happened: `hermetic
/// run` ended (exit 1, sandbox kept), and a line the user typed at their
/// shell afterwards was read by the daemon inside (it wrote it back,
/// "STOLEN:"). What should happen: once `hermetic run` ends, nothing in
/// the kept sandbox holds the caller's terminal (as no init process or
/// keeper holds the caller's stdio, `a_kept_sandbox_holds_none_of_the_
/// callers_stdio`).
#[test]
fn a_kept_sandbox_cannot_read_what_the_caller_types_after_hermetic_run_ended() {
    let (master, slave) = common::openpty();
    let mut writer = std::fs::File::from(master.try_clone().unwrap());
    let mut cmd = common::hermetic_command();
    cmd.args([
        "run",
        "--",
        "sh",
        "-c",
        // A background job's stdin is /dev/null before its redirections;
        // the program ends once the daemon has the terminal open (its
        // GOTCHA, passed on by head).
        "exec 3<&0; { setsid perl -e \"$1\" <&3 2>/dev/null & } | head -n 1; exit 1",
        "sh",
        STDIN_THIEF,
    ])
    .env("HERMETIC_KEEP", "1");
    common::on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let rx = read_master(master);
    let mut seen = String::new();
    let got = wait_for(&rx, &mut seen, "GOTCHA");
    let status = wait_bounded(&mut child);
    let _ = wait_for(&rx, &mut seen, "init process ");
    let init = common::kept_init(&seen);
    // The user, back at their shell, types.
    let _ = writer.write_all(b"hunter2\n");
    let more = shown_until(&rx, "STOLEN:hunter2", Duration::from_secs(4));
    seen.push_str(&more);
    if let Some(init) = init {
        // SAFETY: kills the kept sandbox this test made (its init process).
        unsafe { libc::kill(init, libc::SIGKILL) };
    }
    assert!(got, "the daemon never started ({status:?}): {seen:?}");
    assert!(
        !more.contains("STOLEN:hunter2"),
        "a process in the kept sandbox read what was typed after hermetic run ended ({status:?}): {seen:?}"
    );
}
