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

use std::os::fd::{AsRawFd, RawFd};

use super::joiner::{enter, join_keyring};
use crate::fds::Fd;
use crate::protocol::EXIT_SETUP;
use crate::sys;

/// Makes `cmd` start its program inside the sandbox whose init process is
/// behind `holder` (a pidfd the command keeps for as long as it lives).
pub(crate) fn enter_on_exec(
    cmd: &mut std::process::Command,
    holder: Result<Fd, i32>,
    nstypes: libc::c_int,
) {
    use std::os::unix::process::CommandExt;
    let holder = std::sync::Arc::new(holder);
    // SAFETY: command_pre_exec makes only system calls on prepared data;
    // the closure runs in std's fork child, before exec.
    unsafe {
        cmd.pre_exec(move || match &*holder {
            Ok(fd) => command_pre_exec(fd.as_raw_fd(), nstypes),
            Err(errno) => Err(std::io::Error::from_raw_os_error(*errno)),
        });
    }
}

/// `pre_exec` hook of [`Sandbox::command`](crate::Sandbox::command): joins
/// the sandbox and forks, so that the program is exec'd inside the sandbox's
/// PID namespace; the forked-from process stays outside as a relay that
/// mirrors the program's exit status, and the program dies with it.
///
/// # Safety
///
/// Call only from `CommandExt::pre_exec`, i.e. in a child just forked by
/// std, before exec.
unsafe fn command_pre_exec(holder: RawFd, nstypes: libc::c_int) -> std::io::Result<()> {
    // SAFETY: our caller is std's child, just forked.
    unsafe { enter(holder, nstypes) }.map_err(std::io::Error::from_raw_os_error)?;
    // SAFETY: as above.
    unsafe { join_keyring() };
    // The relay's pipe: only the relay holds the write end, so the program
    // can tell, after arming PDEATHSIG, whether the relay already died.
    let mut alive = [0 as RawFd; 2];
    // SAFETY: alive is a live array of two fds.
    if unsafe { libc::pipe2(alive.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: we are single-threaded (std's fork child), see clone_fork.
    match unsafe { sys::clone_fork(0, libc::SIGCHLD) }.map_err(std::io::Error::from_raw_os_error)? {
        sys::Forked::Child => {
            // SAFETY: our copy of the relay's write end, unused here.
            unsafe { sys::close(alive[1]) };
            sys::die_with_parent().map_err(std::io::Error::from_raw_os_error)?;
            let mut pfd = libc::pollfd {
                fd: alive[0],
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: pfd is one live pollfd; a zero timeout does not block.
            let n = unsafe { libc::poll(&mut pfd, 1, 0) };
            if n != 0 {
                // Hung up: the relay is gone already.
                sys::exit(EXIT_SETUP);
            }
            // Our read end; exec follows.
            // SAFETY: ours, unused from here on.
            unsafe { sys::close(alive[0]) };
            Ok(())
        }
        // SAFETY: as above: this is std's child.
        sys::Forked::Parent { pid, .. } => unsafe { relay(pid, alive[1]) },
    }
}

/// Waits for the program and leaves the same way it did.
///
/// # Safety
///
/// Only in a child process after fork (or clone) of the test process: it
/// changes the calling process for good (its fds) and exits.
unsafe fn relay(pid: libc::pid_t, alive: RawFd) -> ! {
    // Keep only the fds std's parent does not wait on: std waits for its
    // exec-error pipe to close, and that must happen at the program's exec,
    // not when the relay exits.
    // SAFETY: the relay is a forked child with an fd table of its own.
    let _ = unsafe { sys::close_all_except(&[alive]) };
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if sys::errno() != libc::EINTR {
            sys::exit(EXIT_SETUP);
        }
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: default disposition, no core file, then the same signal.
        unsafe {
            let rl = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &rl);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
        }
        sys::exit(128 + sig)
    }
    sys::exit(libc::WEXITSTATUS(status))
}
