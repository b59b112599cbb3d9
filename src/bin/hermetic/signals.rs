//! Passing on the signals a caller sends to stop or poke the program.

use std::os::fd::OwnedFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// The signals `hermetic run` and `enter` pass on to the program.
const PASSED_ON: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// The child signals go on to (the program's relay, which passes them
/// on inside).
static CHILD: AtomicI32 = AtomicI32::new(0);
/// Or the control channel of the sandbox whose init process started
/// the program (see `Sandbox::__signal_program`).
static CONTROL: AtomicI32 = AtomicI32::new(-1);
/// Signals that came before there was a child to pass them to, by bit.
static PENDING: AtomicU64 = AtomicU64::new(0);

/// The write end of the terminal relay's wake pipe, once there is one
/// (see `relay`): the terminal's own signals (an interrupt, a quit, a
/// resize, a continue after a stop) go to the relay, which passes them on
/// through the program's own terminal.
static RELAY: OnceLock<OwnedFd> = OnceLock::new();

/// The signals the relay takes, when there is one.
const TO_RELAY: [libc::c_int; 5] = [
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGWINCH,
    libc::SIGCONT,
    libc::SIGTSTP,
];

extern "C" fn pass_on(sig: libc::c_int) {
    // (`OnceLock::get` is one atomic load: async-signal-safe.)
    if let Some(fd) = RELAY.get()
        && TO_RELAY.contains(&sig)
    {
        // One write of one byte (non-blocking: a full pipe already holds
        // a wake-up): a system call of rustix's, async-signal-safe, and
        // writing no errno.
        let _ = rustix::io::write(fd, &[sig as u8]);
        return;
    }
    deliver(sig);
}

/// Passes `sig` on to the program (or keeps it until there is one).
pub(super) fn deliver(sig: libc::c_int) {
    let control = CONTROL.load(Ordering::SeqCst);
    if control >= 0 {
        // One write of two bytes: async-signal-safe.
        hermetic::Sandbox::__signal_program(control, sig);
        return;
    }
    let pid = CHILD.load(Ordering::SeqCst);
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        // A system call of its own (rustix's): async-signal-safe, and
        // it writes no errno under the code this handler interrupted.
        send(pid, sig);
    } else {
        PENDING.fetch_or(1 << sig, Ordering::SeqCst);
    }
}

/// Sends `sig`, one of [`PASSED_ON`], to our child `pid`.
fn send(pid: rustix::process::Pid, sig: libc::c_int) {
    if let Some(sig) = rustix::process::Signal::from_named_raw(sig) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// From now on the terminal's signals ([`TO_RELAY`]) go to the relay, as
/// a byte (the signal's number) written to `wake`, whose fd stays open for
/// as long as this process lives; `SIGCONT` and `SIGTSTP` are caught too
/// (the relay puts the caller's terminal back before it stops this
/// process).
pub(super) fn to_relay(wake: OwnedFd) {
    // One relay per process: a second one's signals would go to the
    // first's pipe, and its own fd is closed here.
    let _ = RELAY.set(wake);
    install(libc::SIGCONT);
    install(libc::SIGTSTP);
}

/// Catches the signals to pass on; until [`pass_to`] names the child,
/// they are kept.
pub(super) fn catch() {
    for sig in PASSED_ON {
        install(sig);
    }
}

/// Has `sig` handled by [`pass_on`], which only writes to a pipe or a
/// channel, calls `kill`, or sets a bit: all async-signal-safe. (A
/// signal that cannot be caught so is left as it was.)
fn install(sig: libc::c_int) {
    let _ = super::sys::handle(sig, pass_on);
}

/// From now on signals go to the program the sandbox's init process
/// started, through its control channel `fd`, and those that came
/// before too.
pub(super) fn pass_to_program(fd: std::os::fd::RawFd) {
    CONTROL.store(fd, Ordering::SeqCst);
    let pending = PENDING.swap(0, Ordering::SeqCst);
    for sig in PASSED_ON {
        if pending & (1 << sig) != 0 {
            hermetic::Sandbox::__signal_program(fd, sig);
        }
    }
}

/// From now on signals go to `pid`, and those that came before too.
/// The program is in the sandbox's session, so a terminal's signals
/// (Ctrl-C) reach it only this way.
pub(super) fn pass_to(pid: u32) {
    CHILD.store(pid as i32, Ordering::SeqCst);
    let pending = PENDING.swap(0, Ordering::SeqCst);
    for sig in PASSED_ON {
        if pending & (1 << sig) != 0
            && let Some(pid) = rustix::process::Pid::from_raw(pid as i32)
        {
            send(pid, sig);
        }
    }
}
