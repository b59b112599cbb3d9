//! What a dropped sandbox leaves for the kernel to free, freed beside the
//! test instead of in its way.
//!
//! When the last process of a mount namespace ends, the kernel takes the
//! namespace down in that process's exit: every mount of the sandbox
//! unmounted, its tmpfs memory freed, an RCU grace period waited for
//! (0.15-0.25 ms here). A drop waits for the init process's end, so it
//! waited for that too. Now a drop first takes an fd of the init process's
//! mount namespace, so the init process is not the last to hold it, and
//! hands the fd here once the init process is reaped (every process of
//! the sandbox has ended by then): the fd is closed, and the namespace
//! taken down, on a thread of hermetic's (`hermetic-free`, one per
//! process, started while the first sandbox sets up), while the test goes on.
//!
//! The thread has an fd table of its own (a copy of the process's, emptied
//! but for its socket, with `/dev/null` as fds 0 to 2), so that what it
//! holds is never in a fork of the test process, it holds nothing of the
//! process's (not even its stdio: the `hermetic` binary hands its program
//! pipes as fds 1 and 2, and waits for their end), and it never takes the
//! lock of hermetic's fd list while it closes one. An fd reaches it over a unix socket
//! (`SCM_RIGHTS`), after which the dropping thread closes its own copy (a
//! close that frees nothing) and says so in a second message: the thread
//! closes its copy only then. Closing it as it arrived raced with the
//! dropping thread's close: the thread, woken on the other CPU (or
//! preempting the dropping thread on its own), often closed first, and the
//! dropping thread's close was then the last, and took the namespace down
//! in the drop after all. Where the thread cannot start, the kernel is
//! older than 6.11 and `/proc` is not there, or the socket's queue is full
//! (the thread is behind), the dropping thread closes the fd itself, as
//! before.
//!
//! A sandbox with upper layers on disk has them removed by the dropping
//! thread meanwhile: every process that could write to them is gone, the
//! fd handed over is the namespace's last holder, and a volatile overlay
//! writes nothing to its layers as it is unmounted.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys::fd::Fd;

/// The socket's send end, per process (a fork that drops sandboxes,
/// a closure's, starts its own thread).
static TO_RECLAIM: crate::sys::PerProcessFd = crate::sys::PerProcessFd::new();

/// An fd that keeps the mount namespace of the process behind `pidfd`
/// (`pid`) alive, taken while that process lives; `None` if none could be
/// had.
pub(crate) fn hold_mount_namespace(pidfd: BorrowedFd<'_>, pid: libc::pid_t) -> Option<Fd> {
    Fd::open(|| {
        crate::sys::pidfd_mount_namespace(pidfd)
            .or_else(|_| std::fs::File::open(format!("/proc/{pid}/ns/mnt")).map(OwnedFd::from))
    })
    .ok()
}

/// Starts this process's reclaim thread if it has none yet, so that the
/// first drop does not: called while a sandbox's init process sets up,
/// which the calling thread would only wait for (a process that makes one
/// sandbox, `hermetic run`'s, `isolate_test`'s, pays nothing for it).
pub(crate) fn prepare() {
    let _ = TO_RECLAIM.get_or_open(start);
}

/// The first byte of a message to the reclaim thread: an fd comes with it.
const AN_FD: u8 = 0;
/// The first byte of a message to the reclaim thread: the sender of the
/// oldest fd it holds has closed its own copy.
const CLOSED: u8 = 1;

/// The first byte of a message to the reclaim thread: remove what the
/// pool of emptied layer directories holds beyond its bound (no fd).
const TRIM: u8 = 2;

/// Has the reclaim thread remove what the pool of emptied layer
/// directories on disk holds beyond its bound, off the test's way (each
/// removal waits for a discard on a disk mounted with `discard`). Nothing
/// if the thread cannot be had: the pool then removes what comes back
/// beyond its bound.
pub(crate) fn trim_disk_pool() {
    if let Ok(to) = TO_RECLAIM.get_or_open(start) {
        let _ = send(to, TRIM, None);
    }
}

/// At most this many fds wait for their sender's [`CLOSED`] (one that was
/// never sent: the socket's queue was full); beyond, the oldest is closed.
const HELD_MAX: usize = 8;

/// Lets `held` (from [`hold_mount_namespace`]) go: on the reclaim thread
/// if it can take it, here otherwise.
pub(crate) fn let_go(held: Fd) {
    let to = TO_RECLAIM.get_or_open(start).ok();
    let sent = to.is_some_and(|to| send(to, AN_FD, Some(held.as_fd())).is_ok());
    // Frees nothing if the thread has its copy: it waits for this.
    drop(held);
    if let (true, Some(to)) = (sent, to) {
        let _ = send(to, CLOSED, None);
    }
}

/// Puts a message in the reclaim thread's queue, without waiting: `what`,
/// and a copy of `fd` if there is one.
fn send(to: BorrowedFd<'_>, what: u8, fd: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(fd) = fd {
        fds = [fd];
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(std::io::Error::other("no room for the fd"));
        }
    }
    sendmsg(
        to,
        &[std::io::IoSlice::new(&[what])],
        &mut control,
        SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// Starts the reclaim thread; the send end of its socket.
fn start() -> std::io::Result<Fd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    let mut pair = None;
    let send_end = Fd::open(|| {
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        pair = Some(b);
        Ok(a)
    })?;
    let receive_end = Fd::open(|| {
        pair.take()
            .ok_or_else(|| std::io::Error::other("no socket"))
    })?;
    crate::sys::spawn_with_own_fd_table("hermetic-free", receive_end.as_fd(), serve)?;
    // The thread has its copy; this one would only keep the socket open.
    drop(receive_end);
    Ok(send_end)
}

/// The reclaim thread: holds every fd it receives until its sender says
/// it has closed its own copy ([`CLOSED`], in the order the fds came:
/// should two threads drop at once, the first to say so lets the older
/// fd go, and at worst the other's close is the last), then closes it;
/// until the socket's other end is gone (the process's, closed when
/// another thread started the thread that won).
fn serve(socket: OwnedFd) {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut held = std::collections::VecDeque::with_capacity(HELD_MAX + 1);
    loop {
        let mut byte = [0u8; 1];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        match recvmsg(
            &socket,
            &mut [std::io::IoSliceMut::new(&mut byte)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(received) if received.bytes == 0 => return,
            Ok(_) => {
                for message in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(fds) = message {
                        held.extend(fds);
                    }
                }
                if byte[0] == TRIM {
                    crate::setup::disk::trim_pool();
                } else if byte[0] == CLOSED || held.len() > HELD_MAX {
                    // The last reference: the namespace goes down here.
                    drop(held.pop_front());
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}
