//! Thin wrappers over the system calls that `nix` does not cover, or that
//! code running after `fork` must call without allocating.
//!
//! # Safety
//!
//! Everything here is callable from a child of a multi-threaded process
//! between `fork`/`clone` and `_exit`/`exec`: no wrapper allocates, takes a
//! lock or touches thread-local state other than `errno`. Paths and buffers
//! are prepared by the caller before forking. Failures are returned as raw
//! errno values (`i32`), which cost nothing to carry.
//!
//! # References
//!
//! - clone(2), setns(2), pidfd_open(2), pidfd_send_signal(2), close_range(2)
//! - mount(2), user_namespaces(7), pid_namespaces(7), netdevice(7)
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The errno of the last failed call on this thread.
pub(crate) fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Maps a `-1` return to the current errno.
fn check(ret: libc::c_long) -> Result<libc::c_long, i32> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

/// What a fork-like `clone` returned.
pub(crate) enum Forked {
    /// In the new process.
    Child,
    /// In the caller: the new process's pid (in the caller's PID namespace)
    /// and, when asked for, a pidfd referring to it.
    Parent {
        pid: libc::pid_t,
        pidfd: Option<OwnedFd>,
    },
}

/// `clone(2)` without a new stack, like `fork`, with extra `flags`.
///
/// With `CLONE_PIDFD` in `flags` the parent also gets a pidfd.
///
/// # Safety
///
/// The child is a copy of one thread of a possibly multi-threaded process:
/// until it calls `_exit` or `exec` it must not allocate, take any lock
/// (including stdio's and the allocator's), or return from the function
/// that called this one. glibc's `fork` handlers are not run.
pub(crate) unsafe fn clone_fork(flags: libc::c_ulong) -> Result<Forked, i32> {
    let mut pidfd: libc::c_int = -1;
    // SAFETY: no new stack (0): the child continues on a copy of ours, as
    // after fork(2). parent_tid receives the pidfd when CLONE_PIDFD is set;
    // it points to a live local. The caller upholds the after-fork rules.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as libc::c_ulong,
            0usize,
            &mut pidfd as *mut libc::c_int,
            0usize,
            0usize,
        )
    };
    let pid = check(ret)? as libc::pid_t;
    if pid == 0 {
        return Ok(Forked::Child);
    }
    let pidfd = if flags & libc::CLONE_PIDFD as libc::c_ulong != 0 {
        // SAFETY: the kernel just created this fd for us and nobody else
        // knows its number.
        Some(unsafe { OwnedFd::from_raw_fd(pidfd) })
    } else {
        None
    };
    Ok(Forked::Parent { pid, pidfd })
}

/// Joins the namespaces `nstypes` of the process behind `pidfd` in one call.
pub(crate) fn setns(pidfd: BorrowedFd<'_>, nstypes: libc::c_int) -> Result<(), i32> {
    // SAFETY: plain system call on a borrowed fd.
    check(unsafe { libc::setns(pidfd.as_raw_fd(), nstypes) } as libc::c_long).map(drop)
}

/// A pidfd for `pid`, which must be our child or otherwise pinned.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain system call; on success the fd is new and ours.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just created this fd for us.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// Sends `sig` to the process behind `pidfd`; immune to pid reuse.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> Result<(), i32> {
    // SAFETY: plain system call; a null siginfo means "as kill(2)".
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// Closes every fd from `first` to `last` inclusive.
pub(crate) fn close_range(first: u32, last: u32) -> Result<(), i32> {
    if first > last {
        return Ok(());
    }
    // SAFETY: closing fds we own; callers use it only after fork, where the
    // fd table is private to the child.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) }).map(drop)
}

/// Closes every fd above 2 except those in `keep` (sorted ascending).
pub(crate) fn close_all_except(keep: &[RawFd]) -> Result<(), i32> {
    let mut next: u32 = 3;
    for &fd in keep {
        let fd = fd as u32;
        if fd >= next {
            if fd > next {
                close_range(next, fd - 1)?;
            }
            next = fd + 1;
        }
    }
    close_range(next, u32::MAX)
}

/// Writes all of `buf`, retrying on `EINTR` and short writes.
pub(crate) fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), i32> {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice of the given length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Opens `path` for writing, writes `content`, closes it.
pub(crate) fn write_file(path: &CStr, content: &[u8]) -> Result<(), i32> {
    // SAFETY: path is NUL-terminated; the fd is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno());
    }
    let res = write_all(fd, content);
    // SAFETY: fd was opened above and is closed once.
    unsafe { libc::close(fd) };
    res
}

/// `mount(2)` with optional source, type and data.
pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), i32> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that
    // outlives the call.
    check(unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    } as libc::c_long)
    .map(drop)
}

/// The mount flags of the filesystem at `path` that a remount inside a
/// user namespace must keep (the kernel locks them).
pub(crate) fn locked_mount_flags(path: &CStr) -> Result<libc::c_ulong, i32> {
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated and st is a live out-parameter.
    check(unsafe { libc::statvfs(path.as_ptr(), &mut st) } as libc::c_long)?;
    let mut flags = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    Ok(flags)
}

/// `mkdir(path, 0755)`; an existing directory is not an error.
pub(crate) fn mkdir(path: &CStr) -> Result<(), i32> {
    // SAFETY: path is NUL-terminated.
    match check(unsafe { libc::mkdir(path.as_ptr(), 0o755) } as libc::c_long) {
        Err(libc::EEXIST) | Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates an empty file at `path` (to bind a file over); an existing one is
/// kept.
pub(crate) fn touch(path: &CStr) -> Result<(), i32> {
    // SAFETY: path is NUL-terminated; the fd is closed right away.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: fd was opened above.
    unsafe { libc::close(fd) };
    Ok(())
}

/// `sethostname(2)`.
pub(crate) fn sethostname(name: &[u8]) -> Result<(), i32> {
    // SAFETY: name is a live slice of the given length.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } as libc::c_long).map(drop)
}

/// Sets `lo` up with the SIOCSIFFLAGS ioctl: the kernel then assigns
/// 127.0.0.1/8 and ::1 itself. An ioctl keeps this after-fork step free of
/// allocation; everything richer is done over netlink by the parent.
pub(crate) fn loopback_up() -> Result<(), i32> {
    // SAFETY: plain system call.
    let sock =
        check(
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }
                as libc::c_long,
        )? as RawFd;
    // SAFETY: an all-zero ifreq is valid; the name is set below.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: req is a live ifreq naming "lo"; SIOCGIFFLAGS fills ifru_flags.
    let res = check(unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) } as libc::c_long)
        .and_then(|_| {
            // SAFETY: ifru_flags is the union member SIOCGIFFLAGS wrote.
            unsafe {
                req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            }
            // SAFETY: as above, now with the new flags.
            check(unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) } as libc::c_long)
        });
    // SAFETY: sock was opened above.
    unsafe { libc::close(sock) };
    res.map(drop)
}

/// Sets SIGCHLD to "ignore", which makes the kernel reap our children (and,
/// for PID 1, every orphan of the namespace) as soon as they exit.
pub(crate) fn autoreap_children() -> Result<(), i32> {
    // SAFETY: installing SIG_IGN runs no code of ours in signal context.
    let old = unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    if old == libc::SIG_ERR {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Blocks until `fd` is readable or hung up; retries on EINTR.
pub(crate) fn wait_readable(fd: RawFd) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: pfd is a live array of one pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, -1) };
        if n >= 0 || errno() != libc::EINTR {
            return;
        }
    }
}

/// Names the calling process (what `ps` and `/proc/PID/comm` show).
pub(crate) fn set_name(name: &CStr) {
    // SAFETY: PR_SET_NAME reads at most 16 bytes from a NUL-terminated
    // string.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// Kills the calling process with `SIGKILL` when its parent *thread* dies.
pub(crate) fn die_with_parent() -> Result<(), i32> {
    // SAFETY: plain prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } as libc::c_long).map(drop)
}

/// `dup2(2)`; the new fd does not have `FD_CLOEXEC`.
pub(crate) fn dup2(old: RawFd, new: RawFd) -> Result<(), i32> {
    // SAFETY: plain system call on fd numbers.
    check(unsafe { libc::dup2(old, new) } as libc::c_long).map(drop)
}

/// `_exit(2)`: leaves without running destructors, atexit handlers or
/// stdio flushes, which belong to the test process.
pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Name of a signal, `"SIGSEGV"`, or `"signal N"` for unknown numbers.
pub(crate) fn signal_name(signo: i32) -> &'static str {
    nix::sys::signal::Signal::try_from(signo).map_or("an unknown signal", |s| s.as_str())
}

/// The calling process's own pid.
pub(crate) fn getpid() -> libc::pid_t {
    std::process::id() as libc::pid_t
}

/// Takes ownership of `fd`.
///
/// Callers pass fds they just got from `into_raw_fd` or the kernel.
pub(crate) fn owned_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: per the contract above, nobody else owns fd.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Borrows an fd that stays open for the rest of the process (the lifeline).
pub(crate) fn borrow_static(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: callers only pass fds that are never closed.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// `open_tree(2)` flag: clone the mount tree into a detached copy.
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `move_mount(2)` flag: the source is the fd itself.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// A detached copy of the mount tree at `path` (recursive), as an fd:
/// what a bind mount of `path` would show *now*, whatever is mounted later.
pub(crate) fn open_tree_clone(path: &CStr) -> Result<RawFd, i32> {
    let flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint;
    // SAFETY: path is NUL-terminated; on success the fd is new and ours.
    check(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) })
        .map(|fd| fd as RawFd)
}

/// Attaches the detached tree `tree` (from [`open_tree_clone`]) at `target`.
pub(crate) fn move_mount(tree: RawFd, target: &CStr) -> Result<(), i32> {
    // SAFETY: the empty path is a NUL-terminated literal; target too.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// How many bytes wait to be read from the pipe `fd` (FIONREAD).
pub(crate) fn pending_bytes(fd: RawFd) -> Result<usize, i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int to the live local.
    check(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } as libc::c_long)?;
    Ok(n as usize)
}
