//! hermetic's own file descriptors, known by number so that no process in a
//! sandbox keeps one.
//!
//! A run's process is a fork of the test process and inherits its whole fd
//! table: the test's own fds, which it may use as documented, and hermetic's
//! (the pipes of other runs and sandboxes, pidfds of init processes, network
//! namespaces of other hosts), which it must not. Every fd hermetic opens in
//! the test process is made through this module and listed here; a run's
//! first act after `fork` is to close every listed fd it was not given.
//!
//! The list is a `Vec` under a `RwLock`: opening or closing one of our fds
//! takes the write lock around the system call and the list update, and a
//! fork takes the read lock (see `fork::locks::ForkLocks`), so a forked child
//! always sees a list that matches its fd table. In the child, walking the
//! list allocates nothing and takes no lock: it reads the child's own copy.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{RwLock, RwLockReadGuard};

static OURS: RwLock<Vec<RawFd>> = RwLock::new(Vec::new());

/// An fd hermetic opened for itself: closed on drop, and never left open in
/// a process that runs a closure.
///
/// Closed only by the process that opened it: a copy (a handle moved into
/// a run's closure and dropped there, or a fork of the user's) leaves the
/// number alone. In a run, hermetic closed it as the run began, and the
/// closure's own files may have taken the number since.
#[derive(Debug)]
pub(crate) struct Fd {
    fd: Option<OwnedFd>,
    /// The process that opened it (`std::process::id()`).
    opener: u32,
}

impl Fd {
    /// Opens an fd with `open` and lists it, in one step as far as any fork
    /// can tell.
    pub(crate) fn open<T: Into<OwnedFd>>(open: impl FnOnce() -> io::Result<T>) -> io::Result<Fd> {
        let mut ours = OURS.write().unwrap_or_else(|e| e.into_inner());
        let fd: OwnedFd = open()?.into();
        list(&mut ours, fd.as_raw_fd());
        Ok(Fd::owned(fd))
    }

    fn owned(fd: OwnedFd) -> Fd {
        Fd {
            fd: Some(fd),
            opener: std::process::id(),
        }
    }

    /// Keeps the fd open and listed for the rest of the process.
    pub(crate) fn leak(mut self) -> BorrowedFd<'static> {
        let fd = self.fd.take().expect("open until dropped");
        // Not dropped: it stays listed.
        std::mem::forget(self);
        let leaked: &'static OwnedFd = Box::leak(Box::new(fd));
        leaked.as_fd()
    }

    /// A second fd for the same open file, listed too.
    pub(crate) fn try_clone(&self) -> io::Result<Fd> {
        Fd::open(|| self.as_fd().try_clone_to_owned())
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        if self.opener != std::process::id() {
            // A copy's (see the type's docs): neither closed nor taken off
            // the list, which may name the number for a new fd of ours.
            if let Some(fd) = self.fd.take() {
                let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
            }
            return;
        }
        let mut ours = OURS.write().unwrap_or_else(|e| e.into_inner());
        let raw = self.as_raw_fd();
        if let Some(i) = ours.iter().rposition(|&fd| fd == raw) {
            ours.swap_remove(i);
        }
        // Closed while the list no longer names it and no fork can happen.
        drop(self.fd.take());
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_ref().expect("open until dropped").as_fd()
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// Adds `fd` to the list, once. In a process forked from the test process
/// (a closure's), the list is a copy that may still name fds its joiner
/// closed; a new fd with such a number is already listed.
fn list(ours: &mut Vec<RawFd>, fd: RawFd) {
    if !ours.contains(&fd) {
        ours.push(fd);
    }
}

/// A pipe, both ends ours and close-on-exec: (read end, write end).
pub(crate) fn pipe() -> io::Result<(Fd, Fd)> {
    let mut ours = OURS.write().unwrap_or_else(|e| e.into_inner());
    let (r, w) = super::raw::pipe().map_err(io::Error::from_raw_os_error)?;
    list(&mut ours, r.as_raw_fd());
    list(&mut ours, w.as_raw_fd());
    Ok((Fd::owned(r), Fd::owned(w)))
}

/// A pipe whose read end (ours) never blocks a read: `O_NONBLOCK` on the
/// read end's open file only, the write end as usual. For a pipe whose
/// write end goes into a sandbox: a process there can open a read end of
/// its own through `/proc/self/fd/N` (the kernel opens a pipe reached that
/// way in the mode asked for) and empty the pipe between our poll (or
/// `FIONREAD`) and our read, which would then wait for the next byte, for
/// ever if none comes. Nothing but the test process ever holds our read
/// end's open file (every fork of it closes the copy first), so nothing
/// can clear the flag. A read of an empty pipe with writers gives `EAGAIN`.
pub(crate) fn pipe_read_never_blocks() -> io::Result<(Fd, Fd)> {
    let (r, w) = pipe()?;
    super::set_nonblocking(r.as_fd()).map_err(io::Error::from_raw_os_error)?;
    Ok((r, w))
}

/// The list, held steady across a fork: while the guard lives, no fd of
/// ours is opened or closed.
pub(crate) fn hold() -> RwLockReadGuard<'static, Vec<RawFd>> {
    OURS.read().unwrap_or_else(|e| e.into_inner())
}
