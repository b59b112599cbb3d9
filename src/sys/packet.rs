//! Raw packet sockets (`AF_PACKET`) for link impairment
//! ([`net::impair`](crate::net::impair)): opening one on a link, and moving
//! frames through it. Called by the switch's impairment process, which runs
//! like a closure (it may allocate), and by `check`; never after fork.
//!
//! # Safety
//!
//! The socket is rustix's; the `unsafe` blocks pass live, correctly sized
//! option values and addresses to libc's `setsockopt` and `bind`, for which
//! rustix has no packet-socket options (`PACKET_VNET_HDR`,
//! `PACKET_IGNORE_OUTGOING`) nor address (`sockaddr_ll`).
//!
//! # References
//!
//! - packet(7)
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;

/// A raw packet socket (`AF_PACKET`) on link `ifindex`: every frame the
/// link receives, none it sends (`PACKET_IGNORE_OUTGOING`), each with a
/// `virtio_net_hdr` in front (`PACKET_VNET_HDR`), so that offloaded frames
/// (GSO, partial checksums) pass through whole and are sent on as they
/// came.
pub(crate) fn packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::PACKET,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(rustix::net::eth::ALL),
    )?;
    // Room for a burst of frames (each counts its whole buffer, often a
    // page or more): with the default (~200 KiB) a switch that is not
    // scheduled for a moment on a loaded machine drops what a held-back
    // burst (a delay, a reordering) releases at once. Allowed to root of
    // the switch's user namespace; where refused, the default stays.
    for option in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        let _ = set_int(&fd, libc::SOL_SOCKET, option, 4 << 20);
    }
    for option in [libc::PACKET_VNET_HDR, libc::PACKET_IGNORE_OUTGOING] {
        set_int(&fd, libc::SOL_PACKET, option, 1)?;
    }
    // SAFETY: a zeroed sockaddr_ll is valid; the fields that matter are set.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: addr is a live sockaddr_ll of the size given.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// `setsockopt` of an int option.
fn set_int(
    fd: &OwnedFd,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: an int option, live for the call, of its size.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One frame from a packet socket, without waiting: its length, or `None`
/// when there is none now.
pub(crate) fn packet_recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Option<usize>, i32> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e.raw_os_error()),
        }
    }
}

/// Sends one frame (with its `virtio_net_hdr`) out of a packet socket's
/// link; if its send buffer is full, waits for room (a tenth of a second
/// at most) rather than drop the frame.
pub(crate) fn packet_send(fd: BorrowedFd<'_>, frame: &[u8]) -> Result<(), i32> {
    let mut waited = false;
    loop {
        match rustix::io::write(fd, frame) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) if !waited => {
                waited = true;
                let mut fds = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::OUT,
                )];
                let tenth = rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: 100_000_000,
                };
                let _ = rustix::event::poll(&mut fds, Some(&tenth));
            }
            Err(e) => return Err(e.raw_os_error()),
        }
    }
}

/// Makes `fd` non-blocking.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), i32> {
    let flags = rustix::fs::fcntl_getfl(fd).map_err(|e| e.raw_os_error())?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK).map_err(|e| e.raw_os_error())
}
