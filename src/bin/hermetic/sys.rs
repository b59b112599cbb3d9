//! The command's system calls that std and rustix do not wrap: every
//! `unsafe` block of the `hermetic` binary is here, behind a safe
//! function (the library's own are in its `sys` layer).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Which signals [`block`] blocks.
pub(super) enum Signals {
    /// Every signal (a thread of hermetic's own: the process's handlers
    /// run on its main thread).
    All,
    /// This one.
    One(libc::c_int),
}

/// Signals blocked on the calling thread until dropped, when the thread's
/// mask is put back as it was.
pub(super) struct Blocked {
    before: libc::sigset_t,
}

/// Blocks `signals` on the calling thread.
pub(super) fn block(signals: Signals) -> io::Result<Blocked> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    match signals {
        // SAFETY: sigfillset writes a whole sigset_t into `set`, live here.
        Signals::All => unsafe { libc::sigfillset(set.as_mut_ptr()) },
        // SAFETY: sigemptyset writes a whole (empty) sigset_t into `set`.
        Signals::One(_) => unsafe { libc::sigemptyset(set.as_mut_ptr()) },
    };
    // SAFETY: sigfillset or sigemptyset initialised it.
    let mut set = unsafe { set.assume_init() };
    if let Signals::One(sig) = signals {
        // SAFETY: adds a signal number to an initialised set (an invalid
        // number is refused with EINVAL, not undefined).
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    let mut before = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: reads `set` and writes the mask it replaces into `before`,
    // both live on this stack; only this thread's mask changes.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, before.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(Blocked {
        // SAFETY: pthread_sigmask succeeded, so it wrote the old mask.
        before: unsafe { before.assume_init() },
    })
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: puts back the mask `block` replaced, from a live set;
        // only this thread's mask changes.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.before, std::ptr::null_mut()) };
    }
}

/// Has `sig` handled by `handler`, with `SA_RESTART`.
///
/// The handler must do only what is async-signal-safe: it runs between
/// any two instructions of the main thread (hermetic's own threads block
/// every signal).
pub(super) fn handle(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: `sigaction` is plain data (integers, a handler address and a
    // signal set), valid all zeroes (an empty mask).
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: installs `handler`, which the caller keeps async-signal-safe;
    // `action` lives for the call.
    let r = unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Marks every fd of this process from 3 up close-on-exec
/// (`close_range` with `CLOSE_RANGE_CLOEXEC`, Linux 5.11): a program it
/// starts gets fds 0 to 2 only.
pub(super) fn cloexec_from_3() -> io::Result<()> {
    // SAFETY: changes only the close-on-exec flag of this process's fds;
    // none is closed, so no owner of one is affected.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An open-file-description lock's request: `kind` (`F_RDLCK`, `F_WRLCK`,
/// `F_UNLCK`) on byte `byte`.
fn flock_spec(byte: i64, kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is a plain C struct, valid all zeroes.
    let mut spec: libc::flock = unsafe { std::mem::zeroed() };
    spec.l_type = kind as libc::c_short;
    spec.l_whence = libc::SEEK_SET as libc::c_short;
    spec.l_start = byte;
    spec.l_len = 1;
    spec
}

/// An open-file-description lock of `kind` on byte `byte` of `file`
/// (`F_UNLCK` lets it go), without waiting: `EAGAIN` or `EACCES` if
/// another open file holds one that conflicts.
pub(super) fn ofd_lock(file: &File, byte: i64, kind: libc::c_int) -> io::Result<()> {
    let spec = flock_spec(byte, kind);
    loop {
        // SAFETY: fcntl reads the live flock struct `spec`.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &spec) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
