//! The lifeline: what makes every sandbox's init process die with the test
//! process.
//!
//! Why not a pipe whose write end only the test process holds: a pipe's
//! write end is inherited by every process forked from the test
//! process (run children, other sandboxes' init processes), so a pipe only hangs up
//! once *all* of them are gone, and two sandboxes whose children hold each
//! other's ends would keep each other alive. A pidfd of the test process has
//! no such cycle: it becomes readable exactly when the test process has
//! exited, whoever else still holds a copy, and it works from inside a PID
//! namespace in which the test process has no pid. Unlike
//! `PR_SET_PDEATHSIG`, it is tied to the process, not to the thread that
//! created the sandbox.
//!
//! One pidfd serves every sandbox of the process; a process forked from the
//! test process (a sandbox made inside a sandbox) opens its own.

use std::io;
use std::os::fd::BorrowedFd;

use crate::sys;
use crate::sys::fd::Fd;

/// The pidfd opened by this process.
static LIFELINE: sys::PerProcessFd = sys::PerProcessFd::new();

/// A pidfd of the calling process, opened once per process and kept open
/// for the life of the process.
pub(crate) fn lifeline() -> io::Result<BorrowedFd<'static>> {
    LIFELINE.get_or_open(|| {
        Fd::open(|| sys::pidfd_open(sys::getpid()).map_err(io::Error::from_raw_os_error))
    })
}
