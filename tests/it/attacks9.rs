//! Attacks on the terminal relay of `hermetic run` and `hermetic enter`
//! (the program's own pseudo-terminal, relayed to the caller's): hangs,
//! lost input, output or exit statuses, and the caller's terminal's modes
//! and signals. An attack that works today is `#[ignore]`d with the
//! finding (it fails with `--ignored`); the rest pass, root and rootless.

use crate::common;
use crate::common::{
    bash_on_terminal, ended_within, on_terminal, read_master, shown_until, start_on_terminal,
    wait_for,
};

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// `hermetic run -- ARGS` as the foreground job of a new terminal.
fn run_on_terminal(args: &[&str]) -> (Child, std::fs::File, Receiver<String>, OwnedFd) {
    let mut cmd = common::hermetic_command();
    cmd.arg("run").arg("--").args(args);
    start_on_terminal(cmd)
}

/// How `status` ended, as a shell says it (128+N for a signal N).
fn code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Waits (30 s at most) until `seen` holds `first` and, after it, `then`.
fn wait_after(rx: &Receiver<String>, seen: &mut String, first: &str, then: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(at) = seen.find(first)
            && seen[at + first.len()..].contains(then)
        {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.push_str(&chunk),
            Err(_) => return false,
        }
    }
}

/// Reads what `rx` gives on a thread of its own until it ends, keeping
/// only the last few KiB (a flood would fill memory): what it kept so far.
fn drain(rx: Receiver<String>) -> std::sync::Arc<std::sync::Mutex<String>> {
    let tail = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let kept = tail.clone();
    std::thread::spawn(move || {
        while let Ok(chunk) = rx.recv() {
            let mut tail = kept.lock().unwrap();
            tail.push_str(&chunk);
            if tail.len() > 8192 {
                let cut = tail.len() - 4096;
                let cut = (cut..tail.len())
                    .find(|&i| tail.is_char_boundary(i))
                    .unwrap();
                tail.drain(..cut);
            }
        }
    });
    tail
}

/// Kills the kept sandbox whose init process a hermetic message in
/// `said` names (one this test made).
fn kill_kept(said: &str) {
    if let Some(init) = common::kept_init(said) {
        // SAFETY: kills the kept sandbox this test made (its init process).
        unsafe { libc::kill(init, libc::SIGKILL) };
    }
}

/// A shell line that leaves a process behind, deaf to the hang-up of its
/// terminal (ignored before it is started), printing TICK fifty times a
/// second until it is killed.
const TICKER: &str = "trap '' HUP; (while :; do echo TICK; sleep 0.02; done) &";

// The relay's end with a kept sandbox (`relay::Serve`, `KEPT_QUIET`): it
// relays "what is there now" until the program's terminal has been quiet
// for 100 ms. A process left in the kept sandbox that never stays quiet
// that long keeps it relaying for ever; meanwhile nothing typed is relayed
// and Ctrl-C (caught by hermetic, typed into a terminal whose program is
// gone) does not end it either.
/// The attacker: `HERMETIC_KEEP=1 hermetic run -- sh -c 'trap "" HUP;
/// (while :; do echo TICK; sleep 0.02; done) & exit 1'` on a terminal.
/// What happened: hermetic said the sandbox is kept, then never exited
/// (nor on a Ctrl-C typed seconds later, tried by hand: hermetic catches
/// it, and its program is gone); the caller's terminal stays in the relay's raw mode,
/// its shell never gets it back, and killing hermetic (SIGKILL) leaves it
/// raw. What should happen: `hermetic run` exits 1 shortly after saying
/// the sandbox is kept, the terminal put back.
#[test]
fn a_kept_sandbox_s_chatter_cannot_make_hermetic_run_hang() {
    let script = format!("{TICKER} echo STARTED; exit 1");
    let mut cmd = common::hermetic_command();
    cmd.args(["run", "--", "sh", "-c", &script])
        .env("HERMETIC_KEEP", "1");
    let (mut child, _writer, rx, _slave) = start_on_terminal(cmd);
    let mut seen = String::new();
    let kept = wait_after(&rx, &mut seen, "init process ", "hermetic enter");
    let tail = drain(rx);
    let status = ended_within(&mut child, Duration::from_secs(10));
    kill_kept(&seen);
    assert!(kept, "the sandbox was not kept: {seen}");
    assert_eq!(
        status.map(code),
        Some(1),
        "hermetic run did not end within 10 s of keeping the sandbox: ...{}",
        tail.lock().map(|t| t.clone()).unwrap_or_default()
    );
}

/// The attacker: in a sandbox kept by a failed `hermetic run`, the user
/// runs `hermetic enter INIT -- sh -c 'trap "" HUP; (while :; do echo
/// TICK; sleep 0.02; done) & exit 0'` on their terminal (or a process
/// already in the kept sandbox reopens the entered shell's terminal
/// through `/proc/PID/fd/0` and writes to it). What happened: the entered
/// program ended, and `hermetic enter` never did. What should happen:
/// `hermetic enter` exits 0 once its program has ended.
#[test]
fn a_kept_sandbox_s_chatter_cannot_make_hermetic_enter_hang() {
    let out = common::hermetic_command()
        .args(["run", "--", "sh", "-c", "exit 1"])
        .env("HERMETIC_KEEP", "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let Some(init) = common::kept_init(&said) else {
        panic!("no kept sandbox: {said}");
    };
    let script = format!("{TICKER} echo ENTERED; exit 0");
    let mut cmd = common::hermetic_command();
    cmd.args(["enter", &init.to_string(), "--", "sh", "-c", &script]);
    let (mut child, _writer, rx, _slave) = start_on_terminal(cmd);
    let mut seen = String::new();
    let entered = wait_for(&rx, &mut seen, "ENTERED");
    let tail = drain(rx);
    let status = ended_within(&mut child, Duration::from_secs(10));
    kill_kept(&said);
    if !entered && status.is_some_and(|s| !s.success()) {
        return common::skip(&format!("hermetic enter did not work here: {seen}"));
    }
    assert_eq!(
        status.map(code),
        Some(0),
        "hermetic enter did not end within 10 s of its program: ...{}",
        tail.lock().map(|t| t.clone()).unwrap_or_default()
    );
}

// `relay::Serve::relay_output` read the program's terminal until it had
// nothing (`EAGAIN`) before it looked at its wake pipe again, where
// hermetic's SIGINT handler put the Ctrl-C: a program that writes faster
// than the caller's terminal takes kept it from looking, for 0.3-5 s in
// most tries, past 10 s in some (traced: the SIGINT reached `hermetic` at
// once, `yes` got its own only then). It reads one buffer a round now.
/// The attacker: `hermetic run -- sh -c 'echo READY; exec yes'` on a
/// terminal slower than `yes` (4 KiB a millisecond), and the user types
/// Ctrl-C once a MiB has been shown. What should happen (and happens):
/// Ctrl-C interrupts the program at once, as on the terminal itself (the
/// program's terminal echoes `^C` after at most what was already on its
/// way, not megabytes more), and `hermetic run` exits 130.
#[test]
fn a_flooding_program_is_still_interrupted_by_ctrl_c() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (master, slave) = common::openpty();
    let mut cmd = common::hermetic_command();
    cmd.args(["run", "--", "sh", "-c", "echo READY; exec yes"]);
    on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    drop((cmd, slave));
    let mut writer = std::fs::File::from(master.try_clone().unwrap());
    // How much had been shown when Ctrl-C was typed, when the program's
    // terminal echoed `^C`, and so far (`usize::MAX`: not yet).
    let at_ctrl_c = Arc::new(AtomicUsize::new(usize::MAX));
    let echoed_at = Arc::new(AtomicUsize::new(usize::MAX));
    let shown = Arc::new(AtomicUsize::new(0));
    // A terminal slower than `yes` (as a terminal emulator, an ssh link or
    // a serial console is): it takes 4 KiB a millisecond at most.
    let (tx, ready) = std::sync::mpsc::channel();
    let (done_tx, done) = std::sync::mpsc::channel();
    let (typed, echoed, total) = (at_ctrl_c.clone(), echoed_at.clone(), shown.clone());
    std::thread::spawn(move || {
        use std::io::Read;
        let mut f = std::fs::File::from(master);
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            if head.len() < 4096 {
                head.extend_from_slice(&buf[..n]);
            }
            let before = total.fetch_add(n, Ordering::SeqCst);
            if echoed.load(Ordering::SeqCst) == usize::MAX
                && buf[..n].windows(2).any(|w| w == b"^C")
            {
                echoed.store(before, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(1));
            // Flooding: READY, then a MiB of `y`s.
            let now = before + n;
            if before < 1 << 20 && now >= 1 << 20 && head.windows(5).any(|w| w == b"READY") {
                typed.store(now, Ordering::SeqCst);
                let _ = tx.send(());
            }
        }
        let _ = done_tx.send(());
    });
    let ready = ready.recv_timeout(Duration::from_secs(30)).is_ok();
    writer.write_all(b"\x03").unwrap();
    // Not `ended_within`, which kills it: looked at first if it is late.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        match child.try_wait().unwrap() {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => break None,
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let Some(status) = status else {
        // What each process was doing, whether the caller's terminal
        // (hermetic's stdin) still generated signals, and how far the
        // output had come.
        let report = common::process_report(child.id());
        let isig = std::fs::File::open(format!("/proc/{}/fd/0", child.id()))
            .ok()
            .and_then(|t| rustix::termios::tcgetattr(&t).ok())
            .map(|t| t.local_modes.contains(rustix::termios::LocalModes::ISIG));
        let _ = child.kill();
        let _ = child.wait();
        let at = |n: &AtomicUsize| match n.load(Ordering::SeqCst) {
            usize::MAX => "never".to_string(),
            n => format!("{} KiB", n >> 10),
        };
        panic!(
            "Ctrl-C did not interrupt the flooding program within 10 s (READY and a MiB \
             shown: {ready}); the caller's terminal generated signals: {isig:?}; Ctrl-C \
             typed at {}, ^C echoed at {}, shown {}; the processes:\n{report}",
            at(&at_ctrl_c),
            at(&echoed_at),
            at(&shown),
        );
    };
    assert!(ready, "the program never said READY, nor flooded");
    assert_eq!(
        code(status),
        130,
        "Ctrl-C ended the flooding program, but not as an interrupt"
    );
    // The terminal's other side is gone with the sandbox: the reader ends.
    assert!(
        done.recv_timeout(Duration::from_secs(10)).is_ok(),
        "the caller's terminal was not hung up with the sandbox"
    );
    let (typed_at, echoed) = (
        at_ctrl_c.load(Ordering::SeqCst),
        echoed_at.load(Ordering::SeqCst),
    );
    assert_ne!(echoed, usize::MAX, "the program's terminal never echoed ^C");
    // On its way when Ctrl-C came: the relay's buffer (16 KiB) and what
    // the two terminals hold (tens of KiB).
    assert!(
        echoed.saturating_sub(typed_at) < 512 << 10,
        "{} KiB more of the program's output was shown after Ctrl-C before \
         the program's terminal took it",
        (echoed - typed_at) >> 10
    );
}

// `relay::Serve::take_typed`: a read of the caller's terminal that fails
// stops the relaying of what is typed for good. In the background (Ctrl-Z,
// then the shell's `bg`), the relay thread, all of whose signals are
// blocked, gets EIO instead of SIGTTIN as soon as something is typed at
// the shell (`fg` itself).
/// The attacker: none; the user. In an interactive bash: `hermetic run --
/// sh -c 'while read -r l; do echo "GOT:$l"; done'`, a line typed (relayed),
/// Ctrl-Z, `bg`, `fg`, then another line typed. What happened: the second
/// line never reached the program (the relay had stopped reading the
/// terminal); only Ctrl-C (a signal) still did. What should happen: as
/// with the program on the terminal itself, after `fg` it reads what is
/// typed (GOT:second).
#[test]
fn typing_reaches_the_program_after_ctrl_z_bg_and_fg() {
    let (mut child, mut writer, rx, _slave) = bash_on_terminal();
    let mut seen = String::new();
    writer
        .write_all(
            b"\"$H\" run -- sh -c 'echo RE\"\"ADY; while read -r l; do echo \"GO\"\"T:$l\"; done'\n",
        )
        .unwrap();
    let ready = wait_for(&rx, &mut seen, "READY");
    writer.write_all(b"first\n").unwrap();
    let first = wait_for(&rx, &mut seen, "GOT:first");
    writer.write_all(b"\x1a").unwrap();
    let stopped = wait_after(&rx, &mut seen, "Stopped", "PROMPT> ");
    writer.write_all(b"bg\n").unwrap();
    let mut bg = String::new();
    let in_background = wait_after(&rx, &mut bg, " &", "PROMPT> ");
    // A command at the shell meanwhile: what is typed for it is there to
    // read on the terminal, for the shell and for the relay (backgrounded).
    writer.write_all(b"echo \"MI\"\"D\"\n").unwrap();
    let mid = wait_after(&rx, &mut bg, "MID", "PROMPT> ");
    writer.write_all(b"fg\n").unwrap();
    let mut fg = String::new();
    let in_foreground = wait_after(&rx, &mut fg, "fg", "while read");
    writer.write_all(b"second\n").unwrap();
    let second = shown_until(&rx, "GOT:second", Duration::from_secs(10));
    // Done: Ctrl-C ends the program (and hermetic run), `exit` the shell.
    let _ = writer.write_all(b"\x03");
    let mut after = String::new();
    let _ = wait_for(&rx, &mut after, "PROMPT> ");
    let _ = writer.write_all(b"exit\n");
    let _ = ended_within(&mut child, Duration::from_secs(10));
    assert!(
        ready && first && stopped && in_background && mid && in_foreground,
        "ready {ready}, first {first}, stopped {stopped}, bg {in_background}, mid {mid}, fg {in_foreground}: {seen}{bg}{fg}"
    );
    assert!(
        second.contains("GOT:second"),
        "a line typed after fg did not reach the program: {fg}{second}"
    );
}

// `relay::Relay::start` puts the caller's terminal in the relay's mode
// from hermetic's main thread, where SIGTTOU is not blocked: started in
// the background, hermetic is stopped by it before its program starts.
/// The attacker: none; the user. In an interactive bash: `hermetic run --
/// sh -c 'echo BGDONE' &`, which never reads the terminal. What happened:
/// hermetic run was stopped at once (SIGTTOU: "Stopped"), its program
/// never ran; the same program outside a sandbox prints BGDONE. What should
/// happen: the program runs in the background and prints BGDONE.
#[test]
fn hermetic_run_in_the_background_runs_its_program() {
    let (mut child, mut writer, rx, _slave) = bash_on_terminal();
    writer
        .write_all(b"\"$H\" run -- sh -c 'echo BG\"\"DONE' &\n")
        .unwrap();
    let shown = shown_until(&rx, "BGDONE", Duration::from_secs(10));
    // `[1] PID`: hermetic run, stopped or not, is ended by its pid.
    let pid = shown
        .split("[1] ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse::<i32>().ok());
    if let Some(pid) = pid {
        // SAFETY: the hermetic run this test's shell started, by its pid.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut more = String::new();
    let _ = wait_for(&rx, &mut more, "PROMPT> ");
    let _ = writer.write_all(b"exit\n");
    let _ = ended_within(&mut child, Duration::from_secs(10));
    assert!(
        shown.contains("BGDONE"),
        "hermetic run's program did not run in the background: {shown}{more}"
    );
}

// `relay::Serve::follow_program_s_signals`: the caller's terminal
// generates signals whenever the program's does, whatever the caller had:
// one with `ISIG` off (`stty -isig`: Ctrl-C is a byte) gets it turned on
// by the program, and a typed Ctrl-C then signals the caller's foreground
// job outside (attacks8's class: a mode change that makes a typed key
// signal the caller).
/// The attacker: a script `stty -isig; hermetic run -- perl -e '...';
/// echo END` on a terminal; the program turns `ISIG` on on its own
/// terminal (`stty isig`), says READY and sleeps three seconds; Ctrl-C is
/// then typed. What happened: the script, outside, died of SIGINT (no END).
/// What should happen: the caller's terminal keeps generating no signals:
/// Ctrl-C is a byte for the program's terminal (which may make it a
/// signal inside), and the script runs on to say END.
#[test]
fn hermetic_run_s_program_cannot_turn_the_caller_s_terminal_s_signals_on() {
    const ISIG_ON: &str = "use POSIX; $| = 1; my $t = POSIX::Termios->new; \
        $t->getattr(0) or die \"getattr: $!\"; $t->setlflag($t->getlflag | ISIG); \
        $t->setattr(0, TCSANOW) or die \"setattr: $!\"; print \"READY\\n\"; sleep 3;";
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "stty -isig; \"$0\" run -- perl -e \"$1\"; echo \"END $?\"",
        env!("CARGO_BIN_EXE_hermetic"),
        ISIG_ON,
    ]);
    let (mut child, mut writer, rx, _slave) = start_on_terminal(cmd);
    let mut seen = String::new();
    let ready = wait_for(&rx, &mut seen, "READY");
    writer.write_all(b"\x03").unwrap();
    let status = ended_within(&mut child, Duration::from_secs(20));
    seen.push_str(&shown_until(&rx, "END", Duration::from_secs(2)));
    assert!(ready, "{seen}");
    let status = status.expect("the script did not end");
    assert_ne!(
        status.signal(),
        Some(libc::SIGINT),
        "the program had a typed Ctrl-C SIGINT the caller's script: {seen}"
    );
    // The typed Ctrl-C reached the program's terminal as a byte, which
    // that terminal, whose signals the program turned on, made a SIGINT
    // inside: the program's own to have (END 130), or it ended on its own.
    assert!(
        status.success() && (seen.contains("END 0") || seen.contains("END 130")),
        "{status:?}: {seen}"
    );
}

// `relay::Serve::relay_output`: the relay ends when the program's
// terminal has no other side open (EIO), and its master closes with it,
// which hangs the terminal up: SIGHUP to its session leader, the program.
// A program that merely stops using its terminal (stdio redirected
// elsewhere) is killed by hermetic.
/// The attacker: none; an ordinary script on a terminal: `hermetic run --
/// sh -c 'exec </dev/null >/dev/null 2>&1; sleep 2; exit 3'`. What
/// happened: `hermetic run` exited 129: the program died of SIGHUP as soon
/// as it had closed its terminal. What should happen: it runs to its end,
/// and `hermetic run` exits 3 (as without a terminal, or with the program
/// on the caller's terminal itself).
#[test]
fn a_program_that_leaves_its_terminal_keeps_running_and_its_status() {
    let (mut child, _writer, rx, _slave) = run_on_terminal(&[
        "sh",
        "-c",
        "echo READY; exec </dev/null >/dev/null 2>&1; sleep 2; exit 3",
    ]);
    let mut seen = String::new();
    let ready = wait_for(&rx, &mut seen, "READY");
    let status = ended_within(&mut child, Duration::from_secs(20));
    assert!(ready, "{seen}");
    assert_eq!(status.map(code), Some(3), "{seen}");
}

/// The terminal's modes (`tcgetattr`) and size of the caller's open file.
fn modes_and_size(fd: &OwnedFd) -> (libc::termios, (u16, u16)) {
    // SAFETY: termios and winsize are plain data, valid all zeroes.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: TCGETS-like call writing a live termios.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    // SAFETY: as above, a winsize.
    let mut w: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a live winsize.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut w) };
    assert_eq!(r, 0);
    (t, (w.ws_row, w.ws_col))
}

fn same_modes(a: &libc::termios, b: &libc::termios) -> bool {
    a.c_iflag == b.c_iflag
        && a.c_oflag == b.c_oflag
        && a.c_cflag == b.c_cflag
        && a.c_lflag == b.c_lflag
        && a.c_cc == b.c_cc
}

/// The attacker: `hermetic run -- perl -e` a program that runs `stty raw
/// -echo isig intr t rows 5 cols 7`, says READY and sleeps, on a
/// terminal; the user then
/// types Ctrl-C. What should happen (and happens): Ctrl-C (the caller's
/// interrupt character, not the program's `t`) interrupts the program
/// (130), and after `hermetic run` the caller's terminal has exactly the
/// modes, control characters and size it had before: neither the
/// program's changes nor the relay's raw mode stay.
#[test]
fn the_caller_s_terminal_is_as_before_after_an_interrupted_raw_program() {
    let (master, slave) = common::openpty();
    let size = libc::winsize {
        ws_row: 33,
        ws_col: 99,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a live winsize.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    assert_eq!(r, 0);
    let before = modes_and_size(&slave);
    let mut cmd = common::hermetic_command();
    cmd.args([
        "run",
        "--",
        // One process, which says READY itself once its terminal is set
        // (a shell's `echo READY; sleep 100` has a moment between the
        // two where a Ctrl-C reaches only the shell, which `sh -c`
        // catches and holds until its child ends).
        "perl",
        "-e",
        "system('stty raw -echo isig intr t rows 5 cols 7') == 0 or die; $| = 1; \
         print 'RE', \"ADY\\n\"; sleep 100;",
    ]);
    on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut writer = std::fs::File::from(master.try_clone().unwrap());
    let rx = read_master(master);
    let mut seen = String::new();
    let ready = wait_for(&rx, &mut seen, "READY");
    writer.write_all(b"\x03").unwrap();
    let status = ended_within(&mut child, Duration::from_secs(20));
    let after = modes_and_size(&slave);
    assert!(ready, "{seen}");
    assert_eq!(status.map(code), Some(130), "{seen}");
    assert!(
        same_modes(&before.0, &after.0),
        "the caller's terminal's modes changed: {seen}"
    );
    assert_eq!(before.1, after.1, "the caller's terminal's size changed");
}

// `relay::raw_like` keeps the caller's output modes (`OPOST`, `ONLCR`) on
// the caller's terminal, so that hermetic's own messages come out as
// before; but the program's terminal has turned each newline into a
// carriage return and a line feed already, and the caller's turns that
// line feed into another pair.
/// The attacker: none; `hermetic run -- printf 'a\nb\n'` on a terminal (a
/// `script` log, an `expect` test matching "\r\n"). What happened: the
/// terminal got "a\r\r\nb\r\r\n". What should happen: the bytes the
/// program would have put on the caller's terminal itself, "a\r\nb\r\n".
#[test]
fn the_program_s_newlines_reach_the_caller_s_terminal_once_translated() {
    let (mut child, _writer, rx, _slave) = run_on_terminal(&["printf", "a\\nb\\nEND\\n"]);
    let mut seen = String::new();
    let end = wait_for(&rx, &mut seen, "END");
    let status = ended_within(&mut child, Duration::from_secs(20));
    assert!(end, "{seen:?}");
    assert_eq!(status.map(code), Some(0), "{seen:?}");
    assert!(seen.starts_with("a\r\nb\r\nEND"), "{seen:?}");
}

// `child::exec::relay_until_the_end`, the library's twin of the relay
// above (a `command()` whose stdio is the test's terminal): it copied the
// program's terminal until it had nothing, and only then looked whether
// the program's status had come. A process the program left behind that
// writes without end on a terminal slower than it kept it copying until
// the terminal happened to be empty: `status()` came back after 1-2.7 s
// here instead of 0.3 s (unbounded in principle). And once the status had
// come, "at most 250 ms" of what is left was a loop that ended only on a
// quiet terminal. It copies at most 16 buffers a round now, and the rest
// is bounded by the clock.
/// The attacker: `ns.command("sh").args(["-c", "trap '' HUP; yes & exit
/// 3"])` (the `yes` left behind ignores the hang-up of its terminal's
/// session) run with the test's terminal as stdio (std's default), on a
/// terminal that takes 4 KiB a millisecond. What should happen: `status()` returns the
/// program's exit 3 at once, whatever `yes` goes on writing (it goes with
/// the sandbox).
#[test]
fn a_command_s_status_comes_back_while_a_process_it_left_floods_the_terminal() {
    let (master, slave) = common::openpty();
    let mut cmd = common::self_command("helper_runs_a_command_that_leaves_yes_behind");
    cmd.arg("--nocapture");
    on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    drop((cmd, slave));
    std::thread::spawn(move || {
        use std::io::Read;
        let mut f = std::fs::File::from(master);
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let status = ended_within(&mut child, Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(3),
        "status() of the program did not come back within 30 s (or was not its exit 3)"
    );
}

#[test]
#[ignore = "helper: run on a pty by a_command_s_status_comes_back_while_a_process_it_left_floods_the_terminal"]
fn helper_runs_a_command_that_leaves_yes_behind() {
    let ns = hermetic::Sandbox::new().unwrap();
    let status = ns
        .command("sh")
        .args(["-c", "trap '' HUP; yes & exit 3"])
        .status()
        .unwrap();
    drop(ns);
    std::process::exit(status.code().unwrap_or(-1));
}
