//! Attacks on the fixes of attacks7 (signal-driven I/O, exclusive or
//! dead terminals, leases, a terminal's modes and flags put back by
//! `hermetic run`). An attack that works today is `#[ignore]`d with the
//! finding (it fails with `--ignored`); the rest pass, root and rootless.

use crate::common;
use crate::common::{on_terminal, read_master, survives_a_line_typed, wait_bounded, wait_for};

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

/// A program that says DONE and leaves four processes behind which, until
/// the sandbox is gone, do `what` (Perl) to the terminal over and over
/// (four, so that one of them runs in the moment between hermetic run
/// putting the terminal back and the sandbox's end).
fn leaves_a_child_doing(what: &str) -> String {
    format!(
        "use Fcntl; use POSIX; $| = 1; print \"DONE\\n\"; \
         for (1..4) {{ if (fork == 0) {{ while (1) {{ {what} }} }} }} \
         select(undef, undef, undef, 0.2); exit 0;"
    )
}

/// Runs `hermetic run -- perl -e program` as the foreground job of a new
/// terminal; returns the slave (the caller's open file of it) once
/// hermetic run ended (asserting it said DONE and exited 0), and the
/// master.
fn hermetic_run_on_a_terminal(program: &str) -> (OwnedFd, OwnedFd) {
    let (master, slave) = common::openpty();
    let mut cmd = common::hermetic_command();
    cmd.args(["run", "--", "perl", "-e", program]);
    on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let rx = read_master(master.try_clone().unwrap());
    let mut seen = String::new();
    let done = wait_for(&rx, &mut seen, "DONE");
    let status = wait_bounded(&mut child);
    assert!(done && status.success(), "{status:?}: {seen}");
    (master, slave)
}

// Row "hermetic run puts the modes back": it puts the terminal's open
// files' flags and modes back as soon as its program ended, but the
// sandbox (and every other process in it) lives on until hermetic run
// drops it, a moment later. A process the program left behind, waiting
// for the program to end, sets them again in that moment.
/// The attacker: `hermetic run -- perl -e '...'` whose program forks a
/// child that, once the program has ended, sets `O_NONBLOCK` on the
/// terminal (its stdin, the caller's shell's open file) in a loop until
/// it is killed. What happened: after `hermetic run` ended, the caller's
/// open file of its terminal was non-blocking (the shell's next read
/// fails with EAGAIN). What should happen: the flags are as the caller
/// left them: hermetic run puts them back after the last process inside
/// is gone.
#[test]
fn hermetic_run_s_program_s_children_cannot_leave_the_caller_s_terminal_non_blocking() {
    let program = leaves_a_child_doing("fcntl(STDIN, F_SETFL, O_NONBLOCK);");
    // A race (the processes left behind against the sandbox's end): one
    // try in ten may be lost, not all of them.
    for attempt in 0..10 {
        let (_master, slave) = hermetic_run_on_a_terminal(&program);
        // SAFETY: F_GETFL on a live fd.
        let flags = unsafe { libc::fcntl(slave.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(
            flags & libc::O_NONBLOCK,
            0,
            "the caller's open file of its terminal was left non-blocking (try {attempt})"
        );
    }
}

/// The attacker: as above, the child suspending the terminal's output
/// (`tcflow(TCOOFF)`) in a loop. What happened: after `hermetic run`
/// ended, writes to the terminal did not go through (EAGAIN here; the
/// caller's shell blocks at its next prompt). What should happen: the
/// terminal is as the caller left it.
#[test]
fn hermetic_run_s_program_s_children_cannot_leave_the_caller_s_terminal_stopped() {
    let program = leaves_a_child_doing("tcflow(0, TCOOFF);");
    // A race, as above: ten tries.
    for attempt in 0..10 {
        let (master, slave) = hermetic_run_on_a_terminal(&program);
        // A write of the caller's to its terminal, on a file of its own
        // that does not block.
        let name = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&name)
            .unwrap();
        let written = std::io::Write::write(&mut f, b"prompt$ ");
        // Output back on, so that nothing is left hanging.
        // SAFETY: tcflow on a live fd.
        unsafe { libc::tcflow(slave.as_raw_fd(), libc::TCOON) };
        drop(master);
        assert!(
            written.is_ok(),
            "the caller's terminal was left suspended (try {attempt}): {:?}",
            written.map_err(|e| e.raw_os_error())
        );
    }
}

// Row "signal the test process, its caller or another sandbox": with
// signal-driven I/O refused, the tty layer still signals its foreground
// process group, outside, when a program inside resizes the terminal:
// `TIOCSWINSZ` sends SIGWINCH to the caller's job (no controlling
// terminal is needed for it, and none for the program: it has a session
// of its own). SIGWINCH is ignored by default, but a shell, an editor or
// a test harness that handles it redraws or acts on a size it never had.
/// The attacker: `hermetic run -- perl -e 'ioctl(STDIN, TIOCSWINSZ, ...)'`,
/// started by a shell that traps SIGWINCH (the terminal's foreground
/// job). What happened: the shell, outside, received SIGWINCH (its trap
/// ran). What should happen: no signal reaches a process outside (the
/// filter refuses `TIOCSWINSZ` on a terminal the sandbox did not make, or
/// hermetic gives the program a terminal of its own).
#[test]
fn hermetic_run_s_program_cannot_signal_its_caller_through_sigwinch() {
    let (master, slave) = common::openpty();
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "trap 'echo CAUGHT-WINCH' WINCH; \"$0\" run -- perl -e \
         'my $w = pack(\"S4\", 30, 100, 0, 0); ioctl(STDIN, 0x5414, $w) or print \"REFUSED: $!\\n\"; \
          print \"DONE\\n\";'; echo END",
        env!("CARGO_BIN_EXE_hermetic"),
    ]);
    on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    drop((cmd, slave));
    let rx = read_master(master);
    let mut seen = String::new();
    let ended = wait_for(&rx, &mut seen, "END");
    let status = wait_bounded(&mut child);
    assert!(ended && status.success(), "{status:?}: {seen}");
    assert!(
        !seen.contains("CAUGHT-WINCH"),
        "the caller's shell, outside, was sent SIGWINCH: {seen}"
    );
}

/// What the filter must leave alone: a program inside sets and clears
/// `O_NONBLOCK` (`F_SETFL`, `FIONBIO`), asks for a file's lease
/// (`F_GETLEASE`) and locks a file (`F_SETLK`, OFD locks, `flock`).
#[test]
fn ordinary_file_flags_and_locks_still_work_inside() {
    let out = common::hermetic_command()
        .args([
            "run",
            "--",
            "perl",
            "-e",
            "use Fcntl qw(:DEFAULT :flock); $| = 1; \
             open(my $f, '+>', '/tmp/x') or die \"open: $!\"; \
             fcntl($f, F_SETFL, O_NONBLOCK) or die \"F_SETFL: $!\"; \
             fcntl($f, F_SETFL, 0) or die \"F_SETFL 0: $!\"; \
             my $on = pack('i', 1); ioctl($f, 0x5421, $on) or die \"FIONBIO: $!\"; \
             defined(fcntl($f, 1025, 0)) or die \"F_GETLEASE: $!\"; \
             my $lk = pack('s s x4 q q i x4', F_WRLCK, 0, 0, 0, 0); \
             fcntl($f, F_SETLK, $lk) or die \"F_SETLK: $!\"; \
             open(my $g, '+>', '/tmp/y') or die \"open: $!\"; \
             fcntl($g, 37, $lk) or die \"F_OFD_SETLK: $!\"; \
             flock($f, LOCK_EX) or die \"flock: $!\"; print \"ALL-OK\\n\";",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("ALL-OK"),
        "{:?}: {text} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Perl program that makes `t` the terminal's interrupt character (its
/// stdin's modes, as `stty intr t` would, or its stdout's where stdin is
/// no terminal), says READY, and ends on its own after three seconds.
const REMAP_INTR: &str = "use POSIX; $| = 1; my $t = POSIX::Termios->new; my $fd = -t 0 ? 0 : 1; \
    $t->getattr($fd) or die \"getattr: $!\"; $t->setcc(VINTR, ord('t')); \
    $t->setattr($fd, TCSANOW) or print \"REFUSED: $!\\n\"; \
    print \"READY\\n\"; sleep 3; print \"SURVIVED\\n\";";

// Row "signal the test process, its caller or another sandbox", with
// signal-driven I/O refused: the terminal's modes are the program's to
// change, and with them which typed character makes the tty send SIGINT
// (SIGQUIT, SIGTSTP) to its foreground process group, outside. The same
// kill as attacks7's SIGIO on each line typed, by another kernel path.
/// The attacker: `ns.command("perl")` with the test's terminal as stdin
/// (std's default), which makes `t` the interrupt character; a line
/// ("typed") is then typed. What happened: the test process (the
/// terminal's foreground job, outside the sandbox) died of SIGINT. What
/// should happen: the program cannot have the terminal signal it;
/// `status()` returns the program's exit 0 and the test passes.
#[test]
fn a_command_s_program_cannot_have_the_terminal_sigint_the_test_process() {
    let mut cmd = common::self_command("helper_runs_a_command_remapping_the_interrupt_character");
    cmd.arg("--nocapture");
    survives_a_line_typed(cmd, libc::SIGINT, "the test process");
}

#[test]
#[ignore = "helper: run on a pty by a_command_s_program_cannot_have_the_terminal_sigint_the_test_process"]
fn helper_runs_a_command_remapping_the_interrupt_character() {
    common::perl_command_succeeds(REMAP_INTR);
}

/// The attacker: as above, through `hermetic run -- perl -e '...'`
/// started by a shell script on the terminal (the script and hermetic run
/// are its foreground job). What happened: the typed line had the
/// terminal send SIGINT to the script, outside, which died of it before
/// running its next command (hermetic run puts the modes back only once
/// its program ends). What should happen: the script runs on and says END.
#[test]
fn hermetic_run_s_program_cannot_have_the_terminal_sigint_its_caller() {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "\"$0\" run -- perl -e \"$1\"; echo END",
        env!("CARGO_BIN_EXE_hermetic"),
        REMAP_INTR,
    ]);
    let seen = survives_a_line_typed(cmd, libc::SIGINT, "the caller's script");
    assert!(seen.contains("END"), "the script did not run on: {seen}");
}
