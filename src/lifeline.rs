//! The lifeline: what makes every sandbox's init process die with the test
//! process.
//!
//! DESIGN.md proposes a pipe whose write end only the test process holds.
//! A pipe's write end is inherited by every process forked from the test
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
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::fds::Fd;
use crate::sys;

/// `pid << 32 | fd` of the pidfd opened by process `pid`; 0 when none.
static LIFELINE: AtomicU64 = AtomicU64::new(0);

/// A pidfd of the calling process, opened once per process and kept open
/// for the life of the process.
pub(crate) fn lifeline() -> io::Result<BorrowedFd<'static>> {
    let pid = sys::getpid();
    let current = LIFELINE.load(Ordering::Acquire);
    if current != 0 && (current >> 32) as i32 == pid {
        return Ok(borrow(current));
    }
    let fd = Fd::open(|| sys::pidfd_open(pid))?;
    let packed = (pid as u64) << 32 | fd.as_raw_fd() as u32 as u64;
    match LIFELINE.compare_exchange(current, packed, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            fd.leak();
            Ok(borrow(packed))
        }
        Err(winner) => {
            // Another thread opened one first: keep theirs, close ours.
            drop(fd);
            if (winner >> 32) as i32 == pid {
                Ok(borrow(winner))
            } else {
                lifeline()
            }
        }
    }
}

fn borrow(packed: u64) -> BorrowedFd<'static> {
    // Lifeline fds are never closed once published for this pid.
    sys::borrow_static(packed as u32 as RawFd)
}
