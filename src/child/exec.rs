//! Programs started inside a sandbox with [`Sandbox::command`](crate::Sandbox::command).
//!
//! std forks; in its child, before `exec`, the hook here joins the sandbox
//! and forks once more, so that the program is exec'd inside the sandbox's
//! PID namespace. Every fd of hermetic's is close-on-exec, so the program
//! holds none of them.
//!
//! # Safety
//!
//! The hook runs in std's fork child of a multi-threaded process: system
//! calls only, on data prepared before.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, RawFd};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, Signal};

use super::joiner::{enter_here, join_keyring};
use crate::proto::reports::EXIT_SETUP;
use crate::sys;
use crate::sys::fd::Fd;

/// How a command's program is confined inside, beside the sandbox's
/// namespaces and cgroups.
pub(crate) struct Confined {
    pub(crate) rlimits: crate::child::confine::Rlimits,
    /// The uid and gid it runs as (root inside if `None`).
    pub(crate) set_ids: Option<(u32, u32)>,
    pub(crate) filter: &'static [libc::sock_filter],
    /// It leads a session whose controlling terminal is the first of its
    /// fds 0 to 2 that is a terminal (one the caller made and relays), not
    /// a process group of its own in its relay's session.
    pub(crate) terminal: bool,
}

/// Makes `cmd` start its program inside the sandbox whose init process is
/// behind `init_pidfd` (a pidfd the command keeps for as long as it lives).
pub(crate) fn enter_on_exec(
    cmd: &mut std::process::Command,
    init_pidfd: Result<Fd, i32>,
    nstypes: libc::c_int,
    cgroups: Vec<Fd>,
    confined: Confined,
) {
    use std::os::unix::process::CommandExt;
    let Confined {
        rlimits,
        set_ids,
        filter,
        terminal,
    } = confined;
    let init_pidfd = std::sync::Arc::new(init_pidfd);
    let confinement = crate::child::confine::Confinement {
        // A program run as a user other than root loses its capabilities
        // at exec.
        drop_caps: false,
        set_ids,
        cgroup_procs: cgroups.iter().map(AsRawFd::as_raw_fd).collect(),
        rlimits,
        filter,
    };
    // Kept open as long as the command (its pre_exec hook) lives.
    let keep = std::sync::Arc::new((cgroups, confinement));
    let hook = move || match &*init_pidfd {
        Ok(fd) => {
            // First: this copy of the test process, and every process
            // it forks until the program's exec (a go-between, the
            // inner relay, the program before its exec), are closed to
            // the sandbox's processes: no ptrace, no /proc/PID/mem or
            // /proc/PID/fd, no pidfd_getfd of the fds they hold.
            sys::set_not_dumpable().map_err(std::io::Error::from_raw_os_error)?;
            super::joiner::confine(&keep.1, true).map_err(std::io::Error::from_raw_os_error)?;
            // SAFETY: this hook is only ever std's pre_exec hook (below):
            // it runs in std's child, just forked, before exec.
            unsafe {
                command_pre_exec(
                    fd.as_raw_fd(),
                    nstypes,
                    keep.1.set_ids,
                    keep.1.filter,
                    terminal,
                )
            }
        }
        Err(errno) => Err(std::io::Error::from_raw_os_error(*errno)),
    };
    // SAFETY: the hook makes only system calls, on data prepared here (the
    // pidfd, the confinement and the filter, kept alive by the command),
    // as a hook in a fork of a multi-threaded process must.
    unsafe { cmd.pre_exec(hook) };
}

/// `pre_exec` hook of [`Sandbox::command`](crate::Sandbox::command). std's
/// child (the *outer relay*, the `Child`'s pid, in the test's PID
/// namespace) joins the sandbox, whose PID namespace then holds its
/// children, and starts:
///
/// - an *inner relay* inside the sandbox, forked twice so that its parent
///   is the sandbox's init process (which reaps it): it forks the program,
///   passes it the signals the outer relay receives, sends the outer relay
///   the program's wait status, and kills the program should the outer
///   relay die (`Child::kill` sends `SIGKILL`);
/// - the program, the inner relay's child, which returns from this hook and
///   is exec'd by std.
///
/// So every process inside has a parent inside: none is left a zombie
/// waiting for the host's init, and none outlives the `Child` (but a
/// program that keeps its inner relay stopped, which then never learns of
/// the outer relay's end: kept, the README's signal row).
///
/// # Safety
///
/// Call only from `CommandExt::pre_exec`, i.e. in a child just forked by
/// std, before exec.
unsafe fn command_pre_exec(
    init_pidfd: RawFd,
    nstypes: libc::c_int,
    set_ids: Option<(u32, u32)>,
    filter: &'static [libc::sock_filter],
    terminal: bool,
) -> std::io::Result<()> {
    let io = std::io::Error::from_raw_os_error;
    // SAFETY: our caller is std's child, just forked: this process is a
    // copy of its own to move into the sandbox's namespaces.
    unsafe { enter_here(init_pidfd, nstypes) }.map_err(io)?;
    // SAFETY: std's child, just forked and now inside: its session keyring
    // is a copy's, its own to change (the program is exec'd with it).
    unsafe { join_keyring() };
    // While it holds every capability in the sandbox's user namespace, so
    // that setuid programs inside still work (no PR_SET_NO_NEW_PRIVS);
    // every process from here on has it.
    sys::install_filter(filter).map_err(io)?;
    if let Some((uid, gid)) = set_ids {
        super::joiner::become_user(uid, gid).map_err(io)?;
    }
    // A terminal of the test process's (its stdin, stdout, stderr, which
    // a command inherits by default) is never the program's: it could
    // change the terminal's modes, and a remapped interrupt character
    // would have the next line typed SIGINT the test process. Stdin then
    // reads `/dev/null` (a test does not read its user's terminal), and
    // stdout and stderr are a pseudo-terminal of the program's own (made
    // like that terminal), which the outer relay copies to it.
    // `hermetic enter`'s command (`terminal`) has one already.
    let relayed = if terminal {
        None
    } else {
        own_terminal().map_err(io)?
    };
    // The host's /dev/null (`Stdio::null()`, opened by std in the test
    // process) is the sandbox's own instead, a read-only mount of it:
    // through the host's, /proc/self/fd/N reopens it on the host's /dev,
    // where root inside could change its mode and owner.
    for fd in 0..3 {
        if sys::is_dev_null(fd) {
            // SAFETY: fds 0 to 2 of std's child are its stdio, owned by no
            // Rust object there, meant to be replaced.
            unsafe { sys::dev_null_onto(fd) }.map_err(io)?;
        }
    }
    // Signals, outer to inner relay (a hang-up: the outer relay is gone);
    // the program's wait status, inner to outer.
    let (signals_r, signals_w) = sys::pipe().map_err(io)?;
    let (status_r, status_w) = sys::pipe().map_err(io)?;
    // As raw fds from here on: each process below closes the ends it does
    // not use, and exits or execs without dropping anything.
    let [signals_r, signals_w, status_r, status_w] =
        [signals_r, signals_w, status_r, status_w].map(IntoRawFd::into_raw_fd);
    // The go-between hands the outer relay a pidfd of the inner relay, so
    // that the outer relay can continue it: a program that stops its
    // parent (`kill -STOP $PPID`) and exits would otherwise leave its end
    // untold, and the test's wait for it endless.
    let (inner_r, inner_w) = sys::fd_passing_pair().map_err(io)?;
    // The signals the outer relay passes on stay pending, not fatal, until
    // its handlers are in place: the program may run (and be signalled)
    // before that. Each process below restores the mask it started with.
    let mut mask = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: blocks signals of this single-threaded process; `mask`
    // receives the old mask.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &forwarded_signals(), mask.as_mut_ptr()) };
    // SAFETY: sigprocmask wrote it.
    let mask = unsafe { mask.assume_init() };
    // SAFETY: std's fork child is single-threaded, so its copy holds no
    // lock another thread had; each child below makes only system calls
    // until it returns to std's exec or exits.
    match unsafe { sys::clone_fork(0, libc::SIGCHLD) }.map_err(io)? {
        // SAFETY: the go-between is a fork of a single-threaded process;
        // it exits at once, and its child makes only system calls.
        sys::Forked::Child => match unsafe { sys::clone_fork_pidfd(libc::SIGCHLD) } {
            // Orphaned at once: adopted by the sandbox's init process.
            Ok((sys::Forked::Child, _)) => {
                // SAFETY: the inner relay's copy of the outer relay's
                // socket, owned by no Rust object, unused here.
                unsafe { sys::close(inner_r) };
                // SAFETY: its copy of the go-between's socket, the same.
                unsafe { sys::close(inner_w) };
                // A session of its own, inside: the test process's group
                // and session are out of reach of kill(0) from here on.
                if sys::setsid().is_err() {
                    sys::exit(EXIT_SETUP);
                }
                // SAFETY: the inner relay's copy of the outer relay's end,
                // owned by no Rust object (a raw fd from `pipe`), unused
                // here from now on.
                unsafe { sys::close(signals_w) };
                // SAFETY: the inner relay's copy of the outer relay's
                // other end, owned and used by nothing here either.
                unsafe { sys::close(status_r) };
                // SAFETY: this is the process forked for the inner relay.
                unsafe { inner_relay(signals_r, status_w, &mask, terminal) }
            }
            Ok((sys::Forked::Parent { .. }, pidfd)) => {
                // SAFETY: the go-between's own raw fds: its end of the
                // socket pair and the pidfd the clone just made.
                let _ =
                    unsafe { sys::send_fd(sys::borrow_static(inner_w), sys::borrow_static(pidfd)) };
                sys::exit(0)
            }
            // No room for the inner relay (a process limit): the start
            // fails with the errno (see `read_word`), not as a kill.
            Err(errno) => {
                // SAFETY: the go-between's copy of the status pipe's write
                // end, open until it exits, next.
                let _ = sys::write_all(
                    unsafe { sys::borrow_static(status_w) },
                    &errno.to_le_bytes(),
                );
                sys::exit(0)
            }
        },
        sys::Forked::Parent { pid } => {
            // SAFETY: the inner relay's end, whose copy here is owned by
            // no Rust object (a raw fd from `pipe`) and never used.
            unsafe { sys::close(signals_r) };
            // SAFETY: the inner relay's status pipe end, whose copy here
            // is owned by no Rust object and never used.
            unsafe { sys::close(status_w) };
            // The go-between that made the inner relay exits at once: a
            // process inside that stops it (root inside may) cannot make
            // this wait, and std's spawn with it, last for good.
            let _ = sys::reap_continuing(pid);
            // Sent before it exited, if it could make the inner relay.
            // SAFETY: this process's raw end of the socket pair.
            let inner = sys::receive_fd(unsafe { sys::borrow_static(inner_r) })
                .map_or(-1, IntoRawFd::into_raw_fd);
            // SAFETY: this process's end of the pair, a raw fd owned by no
            // Rust object, not used again.
            unsafe { sys::close(inner_r) };
            // SAFETY: its copy of the go-between's end, the same.
            unsafe { sys::close(inner_w) };
            // The program forked, or the errno of the fork that failed (a
            // process limit leaves no room: `EAGAIN`), which std's spawn
            // then returns. No word at all: the sandbox went, told below.
            // SAFETY: this process's raw read end, open until it exits.
            if let Some(errno) = read_word(unsafe { sys::borrow_static(status_r) }, inner)
                && errno != 0
            {
                return Err(io(errno));
            }
            // SAFETY: this is std's child, called from command_pre_exec,
            // which it never returns to.
            unsafe { outer_relay(signals_w, status_r, &mask, relayed, inner) }
        }
    }
}

/// The inner relay: forks the program (which returns, for std to exec it),
/// then serves it until it ends, or kills it if the outer relay is gone.
///
/// # Safety
///
/// Only in the process forked for it by [`command_pre_exec`].
unsafe fn inner_relay(
    signals: RawFd,
    status: RawFd,
    mask: &libc::sigset_t,
    terminal: bool,
) -> std::io::Result<()> {
    let me = sys::getpid();
    // Until the program has exec'd (its end of this pipe, close-on-exec,
    // closes), a stop of it is none of the user's: a process inside that
    // stopped every other would leave it stopped before its exec, and
    // std's spawn waiting for that exec for good. This relay continues it
    // meanwhile. No pipe: no such care.
    // Raw fds: the write end stays open in the program until its exec,
    // and is closed in this relay with every fd it does not keep (below).
    let (exec_r, _exec_w) = sys::pipe()
        .map(|(r, w)| (r.into_raw_fd(), w.into_raw_fd()))
        .unwrap_or((-1, -1));
    // SAFETY: the inner relay is a fork of a single-threaded process; its
    // child, the program, makes only system calls until it returns to
    // std's exec.
    let program = match unsafe { sys::clone_fork(0, libc::SIGCHLD) } {
        Ok(sys::Forked::Child) => {
            if exec_r >= 0 {
                // SAFETY: the program's copy of the relay's read end, a raw
                // fd owned by no Rust object, unused here; its write end
                // stays, to close at the exec.
                unsafe { sys::close(exec_r) };
            }
            // The program: dies with the inner relay, and runs only if
            // the relay still lives (its pid is not reused inside while
            // the sandbox lives, as nothing reaps it but init).
            // SAFETY: the program's copy of the relay's signal pipe end,
            // owned by no Rust object and unused from here on.
            unsafe { sys::close(signals) };
            // SAFETY: the program's copy of the relay's status pipe end,
            // owned by no Rust object and unused from here on.
            unsafe { sys::close(status) };
            sys::die_with_parent().map_err(std::io::Error::from_raw_os_error)?;
            // And the program a process group of its own in the relay's
            // session: kill(0) from it reaches only what it starts itself,
            // and, leading no session, as a program a shell or a test
            // runner starts does not, a terminal it opens without O_NOCTTY
            // does not become its controlling terminal (to hang it up with
            // SIGHUP when closed). Given a terminal of its own
            // (`hermetic enter`'s, relayed to the caller's), it leads a
            // session whose controlling terminal that is instead, as a
            // login shell does: a shell there has job control.
            if terminal {
                sys::own_session_on_terminal()
            } else {
                sys::own_process_group()
            }
            .map_err(std::io::Error::from_raw_os_error)?;
            if sys::getppid() != me {
                sys::exit(EXIT_SETUP);
            }
            // The program starts with the mask std gave it.
            // SAFETY: sets this process's mask from a live sigset.
            unsafe { libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
            return Ok(());
        }
        Ok(sys::Forked::Parent { pid }) => pid,
        Err(errno) => {
            // SAFETY: open for this process's life.
            let _ = sys::write_all(unsafe { sys::borrow_static(status) }, &errno.to_le_bytes());
            sys::exit(EXIT_SETUP)
        }
    };
    // The outer relay's first word: the program is forked.
    // SAFETY: open for this process's life.
    let _ = sys::write_all(unsafe { sys::borrow_static(status) }, &0i32.to_le_bytes());
    // Signals reach the program from the outer relay, or directly (a
    // terminal's, a process group's): none ends this relay, which the
    // program's life depends on.
    for sig in 1..=31 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP && sig != libc::SIGCHLD {
            // SAFETY: sets a disposition; no handler runs.
            unsafe { libc::signal(sig, libc::SIG_IGN) };
        }
    }
    // SAFETY: sets this single-threaded process's mask from `mask`, a live
    // sigset the caller's sigprocmask filled.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
    // Nothing of std's: its parent waits for its exec-error pipe to close,
    // which must happen at the program's exec.
    let mut kept = [signals, status, exec_r];
    kept.sort_unstable();
    let from = kept.iter().position(|&fd| fd >= 0).unwrap_or(kept.len());
    // SAFETY: a forked child with an fd table of its own.
    let _ = unsafe { sys::close_all_except(&kept[from..]) };
    // Our own child, not yet reaped: its pid names no other process.
    let kill = |sig| {
        if let Some(pid) = Pid::from_raw(program) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    };
    // Readable once the program has ended.
    let Ok(watch) = sys::pidfd_open(program) else {
        kill(Signal::KILL);
        sys::exit(EXIT_SETUP)
    };
    // Readable once it has stopped too: a program that made this relay
    // its tracer (PTRACE_TRACEME) is let go, not left stopped for good.
    let Ok(stops) = sys::sigchld_fd() else {
        kill(Signal::KILL);
        sys::exit(EXIT_SETUP)
    };
    // SAFETY: open for this process's life.
    let signals = unsafe { sys::borrow_static(signals) };
    // Open until the program has exec'd; -1 from then on.
    let mut exec_pending = exec_r;
    loop {
        // SAFETY: while pending, this process's raw read end, open until
        // it is closed below.
        let exec_fd = (exec_pending >= 0).then(|| unsafe { sys::borrow_static(exec_pending) });
        let mut fds = [
            PollFd::new(&signals, PollFlags::IN),
            PollFd::new(&watch, PollFlags::IN),
            PollFd::new(&stops, PollFlags::IN),
            PollFd::new(exec_fd.as_ref().unwrap_or(&signals), PollFlags::IN),
        ];
        let watched = if exec_fd.is_some() { 4 } else { 3 };
        // While the exec is pending, a stop whose SIGCHLD came before this
        // relay watched for it is ended too: every 100 ms.
        let wait = (exec_fd.is_some()).then_some(&CONTINUE_EVERY);
        if rustix::event::poll(&mut fds[..watched], wait).is_err() {
            continue;
        }
        if !fds[1].revents().is_empty() {
            break;
        }
        if watched == 4 && !fds[3].revents().is_empty() {
            // Exec'd (or gone): its stops are its own from now on.
            // SAFETY: this process's raw read end, not used again.
            unsafe { sys::close(exec_pending) };
            exec_pending = -1;
        }
        if exec_pending >= 0 {
            kill(Signal::CONT);
        }
        if !fds[2].revents().is_empty() {
            let mut drained = [0u8; 128 * 4];
            while sys::read(stops.as_fd(), &mut drained).is_ok_and(|n| n > 0) {}
            sys::let_traced_children_go();
        }
        if !fds[0].revents().is_empty() {
            let mut sig = [0u8; 1];
            match sys::read(signals, &mut sig) {
                // One of the signals the outer relay passes on (all named).
                Ok(1) => {
                    if let Some(sig) = Signal::from_named_raw(i32::from(sig[0])) {
                        kill(sig);
                    }
                }
                // The outer relay is gone (killed): so is the program.
                _ => {
                    kill(Signal::KILL);
                    break;
                }
            }
        }
    }
    let code = match sys::reap_raw(program) {
        Ok(raw) => raw,
        Err(_) => sys::exit(EXIT_SETUP),
    };
    // SAFETY: open for this process's life.
    let _ = sys::write_all(unsafe { sys::borrow_static(status) }, &code.to_le_bytes());
    sys::exit(0)
}

/// The signals the outer relay passes on, through this pipe.
static SIGNALS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // A terminal's signals (Ctrl-C, Ctrl-\, a hang-up) go to its whole
    // foreground process group, the program included: not twice.
    // SAFETY: the kernel passes a live siginfo to an SA_SIGINFO handler.
    if unsafe { (*info).si_code } == libc::SI_KERNEL {
        return;
    }
    // The SIGPIPE of the relay's own write into the signal pipe once the
    // inner relay is gone (the program ended while this one was stopped,
    // and a SIGCONT came): passed on, it would write there again, and
    // raise itself again, for ever.
    if sig == libc::SIGPIPE {
        // SAFETY: as above; si_pid is set for a signal a process sent,
        // which a write's SIGPIPE is (sent by the writer).
        let sender = unsafe { (*info).si_pid() };
        if sender == rustix::process::getpid().as_raw_nonzero().get() {
            return;
        }
    }
    let fd = SIGNALS.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        // A system call of its own (rustix's): async-signal-safe, and it
        // writes no errno under the code this handler interrupted.
        // SAFETY: the signal pipe, open for the outer relay's life once
        // stored (see forward_signals_to).
        let _ = rustix::io::write(unsafe { sys::borrow_static(fd) }, &[sig as u8]);
    }
}

/// Makes the outer relay pass every signal it can catch on to the
/// program: the `Child`'s pid is the outer relay's, so
/// `kill(child.id(), SIGTERM)` reaches the program (whose own handlers and
/// traps then run) and its exit status comes back. Not forwarded:
/// `SIGKILL` and `SIGSTOP` (which cannot be caught: a killed relay takes
/// the program with it), `SIGCHLD`, and the faults the relay itself could
/// raise.
fn forward_signals_to(signals: RawFd) {
    SIGNALS.store(signals, std::sync::atomic::Ordering::Relaxed);
    for sig in (1..=31).filter(|&sig| forwarded(sig)) {
        // SAFETY: `sigaction` is plain data (integers, a handler address
        // and a signal set), for which all zeroes (an empty mask) is valid.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = forward
            as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
            as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
        // SAFETY: installs a handler that only does async-signal-safe work
        // (an atomic load, a write to a pipe); `action` lives for the call.
        unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
    }
}

/// Whether the outer relay passes `sig` on (see [`forward_signals_to`]).
fn forwarded(sig: libc::c_int) -> bool {
    !matches!(
        sig,
        libc::SIGKILL
            | libc::SIGSTOP
            | libc::SIGCHLD
            | libc::SIGSEGV
            | libc::SIGBUS
            | libc::SIGILL
            | libc::SIGFPE
            | libc::SIGTRAP
            | libc::SIGSYS
    )
}

/// The signals the outer relay passes on, as a set.
fn forwarded_signals() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset writes a whole (empty) sigset_t into `set`, live
    // on this stack.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: sigemptyset initialised it.
    let mut set = unsafe { set.assume_init() };
    for sig in (1..=31).filter(|&sig| forwarded(sig)) {
        // SAFETY: adds a valid signal number (1 to 31) to an initialised
        // set.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    set
}

/// Gives this process (std's child, before its relays fork) stdio that is
/// no terminal of the test process's (see [`command_pre_exec`]): fd 0
/// `/dev/null` where it was a terminal; fds 1 and 2, where they were
/// one, the other side of a new pseudo-terminal made like it. `Some`:
/// that pseudo-terminal's master and a copy of the test's terminal, both
/// close-on-exec, for the outer relay. System calls only.
fn own_terminal() -> Result<Option<(RawFd, RawFd)>, i32> {
    if sys::is_terminal(0) {
        sys::stdin_from_dev_null()?;
    }
    let outputs = [1, 2].map(sys::is_terminal);
    let Some(first) = [1, 2].into_iter().find(|&fd| sys::is_terminal(fd)) else {
        return Ok(None);
    };
    // Where the sandbox has no pseudo-terminals (a host that refuses a
    // devpts mount), the program keeps the terminal, as before.
    let Ok((master, peer)) = sys::pseudo_terminal_like(first) else {
        return Ok(None);
    };
    // SAFETY: fd `first` is open (a terminal, just asked).
    let caller = sys::dup_above(unsafe { sys::borrow_static(first) }, 3)?;
    for (fd, was) in [1, 2].into_iter().zip(outputs) {
        if was {
            // SAFETY: `peer` is ours and open; fds 1 and 2 are this
            // process's stdio, owned by no Rust object, meant to be
            // replaced.
            unsafe { sys::dup2(peer, fd) }?;
        }
    }
    // SAFETY: ours, now also fd 1 or 2, and unused as `peer` from here.
    unsafe { sys::close(peer) };
    Ok(Some((master, caller)))
}

/// The outer relay: passes signals on, copies what the program writes on
/// its terminal to the test's (`relayed`: the master and the test's
/// terminal, see [`own_terminal`]), waits for the program's status and
/// leaves the same way the program did.
///
/// # Safety
///
/// Only in std's child, from [`command_pre_exec`]: it exits.
unsafe fn outer_relay(
    signals: RawFd,
    status: RawFd,
    mask: &libc::sigset_t,
    relayed: Option<(RawFd, RawFd)>,
    inner: RawFd,
) -> ! {
    // Keep only the fds std's parent does not wait on: std waits for its
    // exec-error pipe to close, and that must happen at the program's exec,
    // not when the relay exits.
    let mut keep = [signals, status, inner, -1, -1];
    if let Some((master, caller)) = relayed {
        keep[3] = master;
        keep[4] = caller;
    }
    keep.sort_unstable();
    // Those there are, in order (-1: none).
    let kept = keep.iter().position(|&fd| fd >= 0).unwrap_or(keep.len());
    // SAFETY: the relay is a forked child with an fd table of its own.
    let _ = unsafe { sys::close_all_except(&keep[kept..]) };
    if relayed.is_some() {
        for fd in [1, 2] {
            // Its copies of the program's terminal go: the master says
            // when no process holds it any more.
            // SAFETY: this process's stdio, owned by no Rust object.
            let _ = unsafe { sys::dev_null_onto(fd) };
        }
    }
    forward_signals_to(signals);
    // Now what came meanwhile is passed on too.
    // SAFETY: sets this process's mask from a live sigset.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
    if let Some((master, caller)) = relayed {
        // SAFETY: both open for this process's life (kept above).
        let (master, caller) = unsafe { (sys::borrow_static(master), sys::borrow_static(caller)) };
        // SAFETY: the same for the status pipe.
        relay_until_the_end(master, caller, unsafe { sys::borrow_static(status) }, inner);
    }
    // SAFETY: open for this process's life.
    match read_word(unsafe { sys::borrow_static(status) }, inner) {
        Some(status) => super::leave_as(status),
        // The inner relay died without a word: killed, with the program,
        // as the sandbox went. So does this one.
        None => {
            let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::KILL);
            sys::exit(EXIT_SETUP)
        }
    }
}

/// A little-endian `i32` from `status`, continuing the inner relay while
/// it waits; `None` if the pipe ends first. The status pipe carries two:
/// first 0 once the inner relay has forked the program, or the errno of
/// the fork that failed (the go-between's of the inner relay, or the inner
/// relay's of the program); then the program's wait status.
fn read_word(status: BorrowedFd<'_>, inner: RawFd) -> Option<i32> {
    let mut raw = [0u8; 4];
    let mut got = 0;
    while got < raw.len() {
        wait_continuing(status, inner);
        match sys::read(status, &mut raw[got..]) {
            Ok(n) if n > 0 => got += n,
            Err(libc::EINTR) => {}
            _ => return None,
        }
    }
    Some(i32::from_le_bytes(raw))
}

/// How often the outer relay continues the inner relay while it waits.
const CONTINUE_EVERY: rustix::event::Timespec = rustix::event::Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

/// Continues the inner relay (behind the pidfd `inner`, if there is one),
/// which the program may have stopped: `SIGCONT` does nothing to a process
/// that runs.
fn continue_inner(inner: RawFd) {
    if inner >= 0 {
        // SAFETY: a signal through the pidfd this process holds for its
        // life; ESRCH once the inner relay is gone.
        let _ = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, inner, libc::SIGCONT, 0, 0) };
    }
}

/// Waits until `status` has something to read (or its end), continuing
/// the inner relay every [`CONTINUE_EVERY`] meanwhile.
fn wait_continuing(status: BorrowedFd<'_>, inner: RawFd) {
    loop {
        let mut fds = [PollFd::new(&status, PollFlags::IN)];
        let timeout = (inner >= 0).then_some(&CONTINUE_EVERY);
        match rustix::event::poll(&mut fds, timeout) {
            Ok(0) => continue_inner(inner),
            Err(rustix::io::Errno::INTR) => {}
            _ => return,
        }
    }
}

/// The outer relay's copying: what the program writes on its terminal
/// (`master`) goes to the test's terminal (`caller`), until the program's
/// status is there to read on `status`; then what is left, until the
/// terminal has no other side (every process that held it ended), or has
/// been quiet for 50 ms, at most 250 ms (what the program left running
/// may write on). System calls only, on a buffer of this stack.
fn relay_until_the_end(
    master: BorrowedFd<'_>,
    caller: BorrowedFd<'_>,
    status: BorrowedFd<'_>,
    inner: RawFd,
) {
    use rustix::event::{Timespec, poll};
    let mut buf = [0u8; 4096];
    // Copies what is there, at most 16 buffers (the poll comes back for
    // the rest: a program writing without end must not keep the relay
    // from its status); false once nothing holds the other side.
    let copy = |buf: &mut [u8]| {
        for _ in 0..16 {
            match rustix::io::read(master, &mut *buf) {
                Ok(0) => return false,
                Ok(n) => {
                    let _ = sys::write_all(caller, &buf[..n]);
                }
                Err(rustix::io::Errno::AGAIN) => return true,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return false,
            }
        }
        true
    };
    let mut open = true;
    loop {
        let mut fds = [
            PollFd::new(&status, PollFlags::IN),
            PollFd::new(&master, PollFlags::IN),
        ];
        let polled = if open { &mut fds[..] } else { &mut fds[..1] };
        let timeout = (inner >= 0).then_some(&CONTINUE_EVERY);
        match poll(polled, timeout) {
            Ok(0) => {
                continue_inner(inner);
                continue;
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        let (ended, written) = (
            !fds[0].revents().is_empty(),
            open && !fds[1].revents().is_empty(),
        );
        if written {
            open = copy(&mut buf);
        }
        if ended {
            break;
        }
    }
    let quiet = Timespec {
        tv_sec: 0,
        tv_nsec: 50_000_000,
    };
    // `Instant::now` is a `clock_gettime`: no lock, no allocation.
    let until = std::time::Instant::now() + std::time::Duration::from_millis(250);
    while open && std::time::Instant::now() < until {
        let mut fds = [PollFd::new(&master, PollFlags::IN)];
        match poll(&mut fds, Some(&quiet)) {
            Ok(0) => return,
            Ok(_) => open = copy(&mut buf),
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}
