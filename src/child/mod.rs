//! Everything that runs after `fork` or `clone`, one file per kind of
//! process:
//!
//! - [`launch`]: starting the sandbox's **init program** (`init/main.rs`, PID
//!   1), a small executable of its own, exec'd from memory right after a
//!   `CLONE_VM | CLONE_VFORK` clone, so that PID 1 never holds the test
//!   process's memory;
//! - [`joiner`]: a run's **joiner**, forked from the test process: it joins
//!   the sandbox's namespaces with one `setns` on the init process's pidfd,
//!   closes every fd of hermetic's, and clones the runner as a sibling
//!   (`CLONE_PARENT`) that shares its memory (`CLONE_VM`, so page tables are
//!   copied once), then exits; the runner waits for that exit before it
//!   runs anything of the user's, so that while a closure runs no process
//!   outside the sandbox shares its memory;
//! - [`runner`]: the **runner**, in the sandbox's PID namespace: it points
//!   fds 1 and 2 at the sandbox's output pipes and runs the user's closure,
//!   sending back one frame;
//! - [`exec`]: the `pre_exec` hook that starts a program inside.
//!
//! This module holds what they share: ending as a child ended, and the
//! runner's result fd. What must be ready before a fork (the locks, the
//! panic hook, the spare thread-local storage runners borrow, the stacks,
//! a launch's memfd, stack and arguments) is in [`fork`](crate::fork). The
//! functions that fork or clone live here with the code their child runs,
//! and so hold the last moment of the test process's side: `fork_runner`
//! takes `fork`'s prepared state and the fork's locks right before its
//! `fork`, `Launch::start` clones, `enter_on_exec` hands std the
//! `pre_exec` hook, and `probe_clone` (for `check`) clones a child that
//! exits at once.
//!
//! Layer: below the public API, `run`, `setup` and `diagnose`; the code
//! after fork uses only `fork`'s prepared state, `proto`, `error` and
//! `sys`.
//!
//! # Safety
//!
//! The joiner is a `fork` of a multi-threaded process (glibc's `fork`, so
//! that its atfork handlers leave the copy's allocator consistent), and the
//! init program's launch a `CLONE_VM` clone of one. Until the user's
//! closure starts, code here makes only system calls, through
//! [`sys`](crate::sys)'s raw wrappers or, for a few, straight through
//! rustix or libc: the clones of the launch, of the early helper and of
//! the task that frees a run's memory (`libc::clone`); `getcwd` into a
//! stack buffer (a command's `pre_exec`); a command's relays' signal
//! dispositions and masks (`sigaction`, `sigprocmask`, `signal`);
//! `leave_as`'s core limit and signal reset. All of it on data prepared
//! before forking: no allocation, no locks, no unwinding (every path ends
//! in `_exit` or `exec`). One exception is deliberate: where the runner
//! cannot borrow a clean thread-local storage, it starts a thread for the
//! closure with `pthread_create`, which maps a stack and may take glibc's
//! own locks; it does so once the joiner has exited, when no other task
//! shares the runner's memory and the fork's locks are released, as the
//! closure's own code may do anything then. The child launched to exec the init
//! program, besides, shares the test process's memory and the launching
//! thread's thread-local storage until it execs: its system calls go
//! through `sys`'s raw wrappers, which write no `errno`, but for one: when
//! the sandbox has an early helper, the child starts it with `libc::clone`,
//! which on failure writes `errno` into that shared thread-local storage,
//! the launching thread's (see [`launch`]).
//! The runner's closure is user code; the crate documentation says what it
//! may not rely on.
#![allow(unsafe_code)]

pub(crate) mod confine;
pub(crate) mod exec;
pub(crate) mod joiner;
pub(crate) mod launch;
pub(crate) mod runner;

use std::os::fd::RawFd;

use crate::sys;

/// Ends the calling process the way a child's wait `status` says its
/// child ended: with the same exit code, or killed by the same signal
/// (its default action restored and unblocked, with no core file). For a
/// process that stands in for its child. System calls only.
pub(crate) fn leave_as(status: i32) -> ! {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // No core file from the signal below.
        let none = rustix::process::Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        let _ = rustix::process::setrlimit(rustix::process::Resource::Core, none);
        // SAFETY: the default action, no handler: nothing of ours runs.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset writes a whole (empty) sigset_t into `set`,
        // live on this stack.
        unsafe { libc::sigemptyset(set.as_mut_ptr()) };
        // SAFETY: sigemptyset initialised it.
        let mut set = unsafe { set.assume_init() };
        // SAFETY: adds `sig`, a signal number a wait status gave, to an
        // initialised set.
        unsafe { libc::sigaddset(&mut set, sig) };
        // SAFETY: unblocks `sig` for this process (single-threaded, a
        // stand-in about to end) from a live set.
        unsafe { libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        // SAFETY: `sig` is non-zero and a signal number (WIFSIGNALED, from
        // the kernel's wait status); it is sent to this very process,
        // which is meant to end of it, with no handler (SIG_DFL above), so
        // no code of the C library's runs for it even when it is one of
        // the real-time signals the C library keeps for itself.
        let signal = unsafe { rustix::process::Signal::from_raw_unchecked(sig) };
        let _ = rustix::process::kill_process(rustix::process::getpid(), signal);
        sys::exit(128 + sig)
    }
    sys::exit(libc::WEXITSTATUS(status))
}

/// The fd of the result channel in a runner; -1 elsewhere.
pub(crate) static RESULT_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// The fd on which this process, if it runs a sandboxed closure, sends its
/// result. For fault-injection tests only.
pub(crate) fn result_fd() -> Option<RawFd> {
    let fd = RESULT_FD.load(std::sync::atomic::Ordering::Relaxed);
    (fd >= 0).then_some(fd)
}

/// Clones a child with `flags` that exits at once: does the kernel let us
/// create these namespaces? Returns the errno of `clone` if not.
pub(crate) fn probe_clone(flags: libc::c_ulong) -> Result<(), i32> {
    // SAFETY: the child only calls _exit.
    match unsafe { sys::clone_fork(flags, 0) }? {
        sys::Forked::Child => sys::exit(0),
        sys::Forked::Parent { pid, .. } => {
            let _ = sys::reap(pid);
            Ok(())
        }
    }
}
