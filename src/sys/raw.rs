//! The system calls that are safe after fork: `rustix` (its `linux_raw`
//! backend, which enters the kernel directly, so no call writes libc's
//! `errno`), and by hand, through [`call`], only what rustix does not
//! offer: `close_range`, `keyctl`, `seccomp`, `set_robust_list`, `rseq`,
//! `signalfd4` and `ptrace`, which it lacks; `waitid` where the caller
//! needs the stopped thread's id from the siginfo; `clone` without a new stack, `execveat`,
//! `exit_group` and `rt_sigprocmask`, which it has only in its unstable
//! `runtime` module; `close` with errors ignored
//! (rustix's asserts success in debug builds); `getcpu` (rustix's goes
//! through the vDSO, whose first use may allocate). Some of these callers
//! use [`call`] where they are (`keyctl` in `child::joiner`,
//! `rt_sigprocmask` in `child::runner`). libc stays for what must go
//! through the C library: `fork` (its handlers), a `clone` onto a new stack
//! (`libc::clone` starts a function there), signal masks and dispositions,
//! thread creation.
//!
//! Only what code after fork calls lives here (some of it is called by the
//! test process too); the wrappers only the test process calls are in the
//! parent module, however little they do.
//!
//! # Safety
//!
//! Everything here is callable from a child of a multi-threaded process
//! between `fork`/`clone` and `_exit`/`exec`: no wrapper allocates or takes a
//! lock. Paths and buffers are prepared by the caller before forking.
//! Failures are returned as raw errno values (`i32`), which cost nothing to
//! carry.
//!
//! The launch of a sandbox's init program shares the test process's memory
//! and the launching thread's thread-local storage until its exec (see
//! `child::launch`): no wrapper here writes `errno` there, but the launched
//! child also calls `libc::clone` once, to start the early helper, and a
//! failed `libc::clone` writes `errno` into that thread's storage. The task
//! that frees a run's memory (see `child::runner`) shares the run's copy of
//! that memory, not the test process's.
//!
//! # References
//!
//! - clone(2), execveat(2), setns(2), pidfd_open(2), close_range(2),
//!   user_namespaces(7), pid_namespaces(7)
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use rustix::io::Errno;
use rustix::process::{Pid, Signal};

/// The errno of a rustix error, as the crate carries it.
fn raw(e: Errno) -> i32 {
    e.raw_os_error()
}

/// The errno of the last failed call on this thread.
pub(crate) fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// One system call with up to six arguments; `Err(errno)` on failure.
///
/// # Safety
///
/// As for the system call `nr` itself: pointer arguments must be valid for
/// what the kernel reads and writes through them.
pub(crate) unsafe fn call(nr: libc::c_long, args: [usize; 6]) -> Result<usize, i32> {
    // SAFETY: the caller vouches for the arguments.
    let ret = unsafe { raw_syscall(nr, args) };
    if (-4095..0).contains(&ret) {
        Err(-ret as i32)
    } else {
        Ok(ret as usize)
    }
}

#[cfg(target_arch = "x86_64")]
unsafe fn raw_syscall(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the x86_64 system call convention: number in rax, arguments in
    // rdi, rsi, rdx, r10, r8, r9; the kernel clobbers rcx and r11. The
    // caller vouches for what the call does to memory.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn raw_syscall(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the aarch64 system call convention: number in x8, arguments
    // and result in x0..x5. The caller vouches for what the call does.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            in("x4") a[4],
            in("x5") a[5],
            options(nostack),
        );
    }
    ret
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn raw_syscall(nr: libc::c_long, a: [usize; 6]) -> isize {
    // SAFETY: the caller vouches for the arguments. Through libc, which
    // writes errno in the thread's TLS: on such a target, a task sharing
    // the caller's memory would see it change (build.rs refuses every
    // target but x86_64 and aarch64, so this is never built).
    let ret = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if ret < 0 {
        -(errno() as isize)
    } else {
        ret as isize
    }
}

/// A C string's address, as a system call argument.
fn addr(s: &CStr) -> usize {
    s.as_ptr() as usize
}

/// Closes `fd`, ignoring errors (the fd is gone either way).
///
/// # Safety
///
/// The caller owns `fd`, and nothing uses its number afterwards (it may be
/// reused by the next fd opened).
pub(crate) unsafe fn close(fd: RawFd) {
    // By hand, errors ignored: after fork, the list of hermetic's fds may
    // name one twice (a copy of the list in a process forked from a
    // closure), and rustix's close asserts success in debug builds.
    // SAFETY: the caller owns fd.
    let _ = unsafe { call(libc::SYS_close, [fd as usize, 0, 0, 0, 0, 0]) };
}

/// Points fd 0 at `/dev/null` (of the calling process's mount namespace),
/// read-only. After fork: system calls only.
pub(crate) fn stdin_from_dev_null() -> Result<(), i32> {
    use rustix::fs::{Mode, OFlags};
    let null = rustix::fs::open(c"/dev/null", OFlags::RDONLY, Mode::empty()).map_err(raw)?;
    let null = rustix::fd::IntoRawFd::into_raw_fd(null);
    if null != 0 {
        // SAFETY: `null` is open (just made) and ours; fd 0 is meant to be
        // replaced, and no Rust object owns it (std's `Stdin` holds no
        // `OwnedFd`), so closing what was there closes nothing another
        // owner will close again.
        unsafe { dup2(null, 0) }?;
        // SAFETY: `null` is ours, and nothing uses its number again: the
        // file lives on as fd 0.
        unsafe { close(null) };
    }
    Ok(())
}

/// Points `fd` (0, 1 or 2) at `/dev/null` (of the calling process's mount
/// namespace), for reading and writing. After fork: system calls only.
///
/// # Safety
///
/// The caller owns `fd` (a stdio fd no Rust object owns), which is
/// closed and replaced.
pub(crate) unsafe fn dev_null_onto(fd: RawFd) -> Result<(), i32> {
    use rustix::fs::{Mode, OFlags};
    let null = rustix::fs::open(c"/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(raw)?;
    let null = rustix::fd::IntoRawFd::into_raw_fd(null);
    // SAFETY: `null` is open (just made) and ours; `fd` is the caller's to
    // replace.
    let moved = unsafe { dup2(null, fd) };
    // SAFETY: `null` is ours, and nothing uses its number again: the file
    // lives on as `fd`.
    unsafe { close(null) };
    moved
}

/// Whether `fd` is a `/dev/null` (character device 1, 3). System calls
/// only.
pub(crate) fn is_dev_null(fd: RawFd) -> bool {
    // SAFETY: only asked about: an fd that is not open is no /dev/null.
    let stat = rustix::fs::fstat(unsafe { BorrowedFd::borrow_raw(fd) });
    stat.is_ok_and(|s| {
        rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::CharacterDevice
            && rustix::fs::major(s.st_rdev) == 1
            && rustix::fs::minor(s.st_rdev) == 3
    })
}

/// Whether `fd` is a terminal. System calls only.
pub(crate) fn is_terminal(fd: RawFd) -> bool {
    // SAFETY: only asked about: an fd that is not open is no terminal.
    rustix::termios::isatty(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// A new pseudo-terminal (`/dev/ptmx` of the calling process's mount
/// namespace) made like the terminal `like` (its modes and size): its
/// master (close-on-exec, non-blocking) and its other side (inherited
/// across exec), raw fds the caller owns. System calls only.
pub(crate) fn pseudo_terminal_like(like: RawFd) -> Result<(RawFd, RawFd), i32> {
    use rustix::pty::OpenptFlags;
    use rustix::termios::OptionalActions;
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(raw)?;
    rustix::pty::unlockpt(&master).map_err(raw)?;
    let peer = rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY)
        .map_err(raw)?;
    // SAFETY: the caller's fd, open for the call, only read.
    let like = unsafe { BorrowedFd::borrow_raw(like) };
    if let Ok(modes) = rustix::termios::tcgetattr(like) {
        let _ = rustix::termios::tcsetattr(&peer, OptionalActions::Now, &modes);
    }
    if let Ok(size) = rustix::termios::tcgetwinsize(like) {
        let _ = rustix::termios::tcsetwinsize(&peer, size);
    }
    rustix::fs::fcntl_setfl(&master, rustix::fs::OFlags::NONBLOCK).map_err(raw)?;
    Ok((
        rustix::fd::IntoRawFd::into_raw_fd(master),
        rustix::fd::IntoRawFd::into_raw_fd(peer),
    ))
}

/// Opens `path` for writing, writes `content`, closes it.
pub(crate) fn write_file(path: &CStr, content: &[u8]) -> Result<(), i32> {
    use rustix::fs::{Mode, OFlags};
    let fd =
        rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).map_err(raw)?;
    write_all(rustix::fd::AsFd::as_fd(&fd), content)
}

/// The size of a [`Stack`]'s guard page.
const GUARD: usize = 4096;

/// A stack for a process that shares our memory: an anonymous mapping with
/// an inaccessible guard page below it, so that running off its end faults
/// instead of writing over whatever is mapped next. Unmapped on drop.
#[derive(Debug)]
pub(crate) struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain memory, owned by this value alone.
unsafe impl Send for Stack {}
// SAFETY: &Stack gives no access to the memory.
unsafe impl Sync for Stack {}

impl Stack {
    /// Maps `size` usable bytes (committed only as they are touched) plus
    /// the guard page.
    pub(crate) fn map(size: usize) -> Result<Stack, i32> {
        use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};
        let len = size + GUARD;
        // SAFETY: a new anonymous private mapping, placed by the kernel
        // (null hint): no memory of ours is touched.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::STACK | MapFlags::NORESERVE,
            )
        }
        .map_err(raw)?;
        let stack = Stack { base, len };
        // SAFETY: the lowest page of the mapping made above, which nothing
        // uses yet.
        unsafe { rustix::mm::mprotect(base, GUARD, MprotectFlags::empty()) }.map_err(raw)?;
        Ok(stack)
    }

    /// The usable part, above the guard page: its lowest address and size.
    pub(crate) fn usable(&self) -> (*mut libc::c_void, usize) {
        // SAFETY: the mapping at `base` is `len` bytes, more than GUARD
        // (`map` adds the guard page to the size asked for), so the
        // pointer GUARD bytes in stays inside it.
        let above_guard = unsafe { self.base.cast::<u8>().add(GUARD) };
        (above_guard.cast(), self.len - GUARD)
    }

    /// One past the highest usable byte: where a downward-growing stack
    /// starts.
    pub(crate) fn top(&self) -> *mut u8 {
        // SAFETY: len is the length of the mapping at base.
        unsafe { self.base.cast::<u8>().add(self.len) }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: our own mapping; whoever ran on it is gone (the owners of
        // a Stack drop it only after reaping that process).
        let _ = unsafe { rustix::mm::munmap(self.base, self.len) };
    }
}

/// What a fork-like `clone` returned.
pub(crate) enum Forked {
    /// In the new process.
    Child,
    /// In the caller: the new process's pid (in the caller's PID namespace).
    Parent { pid: libc::pid_t },
}

/// `clone(2)` without a new stack, like `fork`, with extra `flags`, and
/// `exit_signal` sent to the parent when the child exits (0 for none: then
/// only a wait with `__WALL` for its pid sees it, and no `SIGCHLD`
/// disposition makes the kernel reap it first).
///
/// # Safety
///
/// The child is a copy of one thread of a possibly multi-threaded process:
/// until it calls `_exit` or `exec` it must not allocate, take any lock
/// (including stdio's and the allocator's), or return from the function
/// that called this one. glibc's `fork` handlers are not run.
pub(crate) unsafe fn clone_fork(
    flags: libc::c_ulong,
    exit_signal: libc::c_int,
) -> Result<Forked, i32> {
    // SAFETY: no new stack (0): the child continues on a copy of ours, as
    // after fork(2); no parent or child tid pointer, no TLS. The caller
    // upholds the after-fork rules.
    let ret = unsafe {
        call(
            libc::SYS_clone,
            [
                (flags | exit_signal as libc::c_ulong) as usize,
                0,
                0,
                0,
                0,
                0,
            ],
        )
    };
    match ret? as libc::pid_t {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent { pid }),
    }
}

/// [`clone_fork`] with `CLONE_PIDFD`: in the parent, the new process's pid
/// and a pidfd of it (close-on-exec).
///
/// # Safety
///
/// As [`clone_fork`].
pub(crate) unsafe fn clone_fork_pidfd(exit_signal: libc::c_int) -> Result<(Forked, RawFd), i32> {
    let mut pidfd: libc::c_int = -1;
    // SAFETY: as clone_fork's; the kernel writes the pidfd into `pidfd`, a
    // live int of this frame, before returning in the parent.
    let ret = unsafe {
        call(
            libc::SYS_clone,
            [
                (libc::CLONE_PIDFD as libc::c_ulong | exit_signal as libc::c_ulong) as usize,
                0,
                std::ptr::addr_of_mut!(pidfd) as usize,
                0,
                0,
                0,
            ],
        )
    };
    match ret? as libc::pid_t {
        0 => Ok((Forked::Child, -1)),
        pid => Ok((Forked::Parent { pid }, pidfd)),
    }
}

/// A pair of connected datagram sockets (close-on-exec), to hand an fd
/// from one process to another ([`send_fd`], [`receive_fd`]). Raw fds,
/// for after a fork.
pub(crate) fn fd_passing_pair() -> Result<(RawFd, RawFd), i32> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
    let (a, b) = socketpair(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| e.raw_os_error())?;
    Ok((
        std::os::fd::IntoRawFd::into_raw_fd(a),
        std::os::fd::IntoRawFd::into_raw_fd(b),
    ))
}

/// Sends a copy of `fd` on the socket `to` (`SCM_RIGHTS`), without
/// waiting; no allocation.
pub(crate) fn send_fd(to: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<(), i32> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(libc::ENOBUFS);
    }
    sendmsg(
        to,
        &[std::io::IoSlice::new(&[0])],
        &mut control,
        SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
    )
    .map(drop)
    .map_err(|e| e.raw_os_error())
}

/// The fd [`send_fd`] sent on the socket `from`, if one is there now
/// (close-on-exec); no allocation.
pub(crate) fn receive_fd(from: BorrowedFd<'_>) -> Option<OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut byte = [0u8; 1];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    recvmsg(
        from,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
    )
    .ok()?;
    let mut received = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message {
            received = fds.next();
        }
    }
    received
}

/// Joins the namespaces `nstypes` of the process behind `pidfd` in one call.
pub(crate) fn setns(pidfd: BorrowedFd<'_>, nstypes: libc::c_int) -> Result<(), i32> {
    use rustix::thread::ThreadNameSpaceType;
    rustix::thread::move_into_thread_name_spaces(
        pidfd,
        ThreadNameSpaceType::from_bits_retain(nstypes as u32),
    )
    .map_err(raw)
}

fn pid(pid: libc::pid_t) -> Result<Pid, i32> {
    Pid::from_raw(pid).ok_or(libc::ESRCH)
}

/// A pidfd for `pid`, which must be our child, ourselves, or otherwise
/// pinned: the crate's one pidfd opener (after fork too, where the caller
/// keeps its raw number with `into_raw_fd`: nothing is dropped there).
pub(crate) fn pidfd_open(pid_: libc::pid_t) -> Result<OwnedFd, i32> {
    rustix::process::pidfd_open(pid(pid_)?, rustix::process::PidfdFlags::empty()).map_err(raw)
}

/// Closes every fd from `first` to `last` inclusive.
///
/// # Safety
///
/// Only in a child after fork, whose fd table is its own: no other code
/// of the process may own or use an fd in the range.
pub(crate) unsafe fn close_range(first: u32, last: u32) -> Result<(), i32> {
    if first > last {
        return Ok(());
    }
    // SAFETY: the caller guarantees nothing else owns these fds.
    unsafe {
        call(
            libc::SYS_close_range,
            [first as usize, last as usize, 0, 0, 0, 0],
        )
    }
    .map(drop)
}

/// Closes every fd above 2 except those in `keep` (sorted ascending).
///
/// # Safety
///
/// As for [`close_range`]: only in a child after fork.
pub(crate) unsafe fn close_all_except(keep: &[RawFd]) -> Result<(), i32> {
    let mut next: u32 = 3;
    for &fd in keep {
        let fd = fd as u32;
        if fd >= next {
            if fd > next {
                // SAFETY: the caller's guarantee.
                unsafe { close_range(next, fd - 1) }?;
            }
            next = fd + 1;
        }
    }
    // SAFETY: the caller's guarantee.
    unsafe { close_range(next, u32::MAX) }
}

/// Writes all of `buf`, retrying on `EINTR` and short writes.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), i32> {
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(n) => buf = &buf[n.min(buf.len())..],
            Err(Errno::INTR) => continue,
            Err(e) => return Err(raw(e)),
        }
    }
    Ok(())
}

/// Reads what `fd` gives now into `buf`, retrying on `EINTR`: the count
/// (0 at end-of-file).
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, i32> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Err(Errno::INTR) => continue,
            res => return res.map_err(raw),
        }
    }
}

/// Blocks until `fd` is readable or hung up; retries on EINTR.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>) {
    use rustix::event::{PollFd, PollFlags};
    let mut polled = [PollFd::new(&fd, PollFlags::IN)];
    while rustix::event::poll(&mut polled, None) == Err(Errno::INTR) {}
}

/// Names the calling process (what `ps` and `/proc/PID/comm` show).
pub(crate) fn set_name(name: &CStr) {
    let _ = rustix::thread::set_name(name);
}

/// Kills the calling process with `SIGKILL` when its parent *thread* dies.
pub(crate) fn die_with_parent() -> Result<(), i32> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).map_err(raw)
}

/// Makes the calling process (its memory, shared with any `CLONE_VM`
/// sibling) non-dumpable: from then on no process without
/// `CAP_SYS_PTRACE` over the user namespace its memory belongs to (the test
/// process's) may trace it, read or write `/proc/PID/mem`, open
/// `/proc/PID/fd/*` or copy its fds with `pidfd_getfd`. An `execve`
/// makes the new program dumpable again. System calls only.
pub(crate) fn set_not_dumpable() -> Result<(), i32> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(raw)
}

/// Makes the calling process dumpable again (see [`set_not_dumpable`]).
pub(crate) fn set_dumpable() -> Result<(), i32> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable).map_err(raw)
}

/// Whether the calling process is dumpable (see [`set_not_dumpable`]).
pub(crate) fn is_dumpable() -> bool {
    !matches!(
        rustix::process::dumpable_behavior(),
        Ok(rustix::process::DumpableBehavior::NotDumpable)
    )
}

/// `setsid(2)`: a session and process group of the caller's own, with no
/// controlling terminal. Fails (`EPERM`) only for a process group leader.
pub(crate) fn setsid() -> Result<(), i32> {
    rustix::process::setsid().map(drop).map_err(raw)
}

/// Puts the caller in a process group of its own (`setpgid(0, 0)`), in
/// its session. System calls only.
pub(crate) fn own_process_group() -> Result<(), i32> {
    rustix::process::setpgid(None, None).map_err(raw)
}

/// A session of the caller's own whose controlling terminal is the first
/// of its fds 0 to 2 that is a terminal (`setsid`, then `TIOCSCTTY`, which
/// puts the caller's group in its foreground). `ENOTTY` if none is. System
/// calls only.
pub(crate) fn own_session_on_terminal() -> Result<(), i32> {
    rustix::process::setsid().map_err(raw)?;
    let taken = [
        rustix::stdio::stdin(),
        rustix::stdio::stdout(),
        rustix::stdio::stderr(),
    ]
    .into_iter()
    .any(|fd| rustix::process::ioctl_tiocsctty(fd).is_ok());
    if taken { Ok(()) } else { Err(libc::ENOTTY) }
}

/// Sets `lo` up in the caller's network namespace (`SIOCSIFFLAGS`): the
/// kernel then gives it 127.0.0.1 and ::1. Needs `CAP_NET_ADMIN` in the
/// user namespace that owns that network namespace. System calls only.
pub(crate) fn loopback_up() -> Result<(), i32> {
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(raw)?;
    // SAFETY: an all-zero ifreq is a valid value (a name of NULs, flags 0).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in req.ifr_name.iter_mut().zip(b"lo") {
        *to = *from as libc::c_char;
    }
    let ioctl = |request: libc::c_ulong, req: &mut libc::ifreq| {
        // SAFETY: `req` is a live, writable ifreq for the whole call, as
        // both requests read (and SIOCGIFFLAGS writes) it; `sock` is open.
        unsafe {
            call(
                libc::SYS_ioctl,
                [
                    sock.as_raw_fd() as usize,
                    request as usize,
                    std::ptr::from_mut(req) as usize,
                    0,
                    0,
                    0,
                ],
            )
        }
    };
    ioctl(libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the union's flags member, read here.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    ioctl(libc::SIOCSIFFLAGS, &mut req).map(drop)
}

/// Installs the seccomp filter `program` on the calling thread (see
/// [`seccomp`](crate::setup::seccomp)). Without `CAP_SYS_ADMIN` in its user
/// namespace the kernel asks for `PR_SET_NO_NEW_PRIVS` first: then that is
/// set (setuid programs no longer gain privileges) and the filter
/// installed all the same. System calls only, on a program built before
/// the fork.
pub(crate) fn install_filter(program: &[libc::sock_filter]) -> Result<(), i32> {
    let prog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr().cast_mut(),
    };
    let install = || {
        // SAFETY: `prog` points at `program`, which lives through the call;
        // the kernel copies it.
        unsafe {
            call(
                libc::SYS_seccomp,
                [
                    libc::SECCOMP_SET_MODE_FILTER as usize,
                    0,
                    &prog as *const libc::sock_fprog as usize,
                    0,
                    0,
                    0,
                ],
            )
        }
    };
    match install() {
        Err(libc::EACCES) => {
            rustix::thread::set_no_new_privs(true).map_err(raw)?;
            install().map(drop)
        }
        other => other.map(drop),
    }
}

/// `dup2(2)`; the new fd does not have `FD_CLOEXEC`.
///
/// # Safety
///
/// `new` is closed first if open: the caller owns it (as in a child after
/// fork moving fds into place), and nothing else uses its number.
pub(crate) unsafe fn dup2(old: RawFd, new: RawFd) -> Result<(), i32> {
    // SAFETY: the caller owns old for the call and new for good.
    let old = unsafe { BorrowedFd::borrow_raw(old) };
    if old.as_raw_fd() == new {
        // What dup2 does then (dup3 refuses): check that old is open.
        return rustix::io::fcntl_getfd(old).map(drop).map_err(raw);
    }
    // Not dropped: the fd stays open as `new`, owned by the caller.
    // SAFETY: the caller owns `new` and nothing else uses its number (this
    // function's contract); the `OwnedFd` is never dropped, so it closes
    // nothing, and stands for `new` only while dup2 replaces it.
    let mut target = ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(new) });
    rustix::io::dup2(old, &mut target).map_err(raw)
}

/// What [`exit_on_stack_overflow`]'s handler needs: the bottom of the
/// stack a closure runs on (its guard page lies below), the fd and bytes
/// it writes there, and the status its process then exits with.
static OVERFLOW_GUARD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static OVERFLOW_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
static OVERFLOW_SAY: std::sync::atomic::AtomicPtr<u8> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());
static OVERFLOW_SAY_LEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static OVERFLOW_STATUS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Makes a fault in the guard page below `stack_bottom` (a stack that grew
/// past its end: a deep recursion) write `say` to `fd` and end this
/// process with `status`, as std's handler tells a thread's overflow from
/// other faults; any other `SIGSEGV` kills it as before (one it sends
/// itself, `raise`, too). The handler runs on the `alt_size` bytes at
/// `alt_low` (the overflowed stack has no room left), which nothing else
/// uses while it may run. For a process after fork: system calls only, on
/// memory mapped before.
///
/// # Safety
///
/// `alt_low..alt_low + alt_size` is mapped, writable memory of this
/// process that nothing else uses while this process runs code that may
/// fault.
pub(crate) unsafe fn exit_on_stack_overflow(
    stack_bottom: usize,
    fd: RawFd,
    say: &'static [u8],
    status: i32,
    alt_low: usize,
    alt_size: usize,
) -> Result<(), i32> {
    use std::sync::atomic::Ordering;
    OVERFLOW_GUARD.store(stack_bottom, Ordering::Relaxed);
    OVERFLOW_FD.store(fd, Ordering::Relaxed);
    OVERFLOW_SAY.store(say.as_ptr().cast_mut(), Ordering::Relaxed);
    OVERFLOW_SAY_LEN.store(say.len(), Ordering::Relaxed);
    OVERFLOW_STATUS.store(status, Ordering::Relaxed);
    let alt = libc::stack_t {
        ss_sp: alt_low as *mut libc::c_void,
        ss_flags: 0,
        ss_size: alt_size,
    };
    // SAFETY: the caller vouches for the memory; the kernel copies the
    // struct, which lives on this stack for the call.
    if unsafe { libc::sigaltstack(&alt, std::ptr::null_mut()) } != 0 {
        return Err(errno());
    }
    // SAFETY: an all-zero sigaction is a valid value to fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_fault as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: installs a handler that makes only system calls; the struct
    // lives on this stack for the call.
    if unsafe { libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut()) } != 0 {
        return Err(errno());
    }
    Ok(())
}

/// The `SIGSEGV` handler of [`exit_on_stack_overflow`].
extern "C" fn on_fault(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    use std::sync::atomic::Ordering;
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let bottom = OVERFLOW_GUARD.load(Ordering::Relaxed);
    if bottom != 0 && (bottom - GUARD..bottom).contains(&addr) {
        let say = OVERFLOW_SAY.load(Ordering::Relaxed);
        let len = OVERFLOW_SAY_LEN.load(Ordering::Relaxed);
        if !say.is_null() {
            // SAFETY: `say` and `len` are those of the 'static slice
            // exit_on_stack_overflow was given.
            let say = unsafe { std::slice::from_raw_parts(say, len) };
            // SAFETY: the fd stays open for this process's life (the
            // runner's result pipe); a short write is not retried: the
            // frame is 17 bytes, a pipe takes them whole.
            let fd = unsafe { BorrowedFd::borrow_raw(OVERFLOW_FD.load(Ordering::Relaxed)) };
            let _ = rustix::io::write(fd, say);
        }
        exit(OVERFLOW_STATUS.load(Ordering::Relaxed));
    }
    // Any other fault: the default action. A fault's instruction runs
    // again on return and faults again; a SIGSEGV sent (`raise`) is sent
    // once more, to be taken once this handler returns.
    // SAFETY: an all-zero sigaction with SIG_DFL (0) is the default.
    let default: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: the struct lives on this (alternate) stack for the call.
    unsafe { libc::sigaction(libc::SIGSEGV, &default, std::ptr::null_mut()) };
    let (pid, tid) = (
        std::process::id() as libc::pid_t,
        rustix::thread::gettid().as_raw_nonzero().get(),
    );
    // SAFETY: integer arguments: this process, this thread, SIGSEGV.
    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGSEGV) };
}

/// `_exit(2)`: leaves without running destructors, atexit handlers or
/// stdio flushes, which belong to the test process.
pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: exit_group ends every thread of the process; it never returns.
    let _ = unsafe { call(libc::SYS_exit_group, [code as usize, 0, 0, 0, 0, 0]) };
    // SAFETY: not reached; _exit is the same call through libc.
    unsafe { libc::_exit(code) }
}

/// The calling process's own pid.
/// How many of hermetic's forks (a run's joiner, in the child) lie between
/// the test process and this one: with the pid, what tells a process from
/// the one it was forked from, even where they have the same pid (a run's
/// process, in a sandbox's PID namespace, may get the number the test
/// process has in its own: `hermetic run` of a test binary).
static FORKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Says, in the child of one of hermetic's forks, that it is a new process.
/// One atomic add: safe after fork.
pub(crate) fn note_forked() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Who this process is, for values kept per process: its pid, and how
/// many of hermetic's forks made it ([`note_forked`]).
pub(crate) fn process_identity() -> u64 {
    (getpid() as u32 as u64) << 32 | u64::from(FORKS.load(std::sync::atomic::Ordering::Relaxed))
}

pub(crate) fn getpid() -> libc::pid_t {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// The calling process's parent's pid, 0 if it has none in the caller's
/// PID namespace (its parent is outside, or it is an init process).
pub(crate) fn getppid() -> libc::pid_t {
    Pid::as_raw(rustix::process::getppid())
}

/// Waits until a signal ends the calling process: a poll on no fd,
/// without a timeout, started again after any interruption.
pub(crate) fn wait_forever() -> ! {
    let mut nothing: [rustix::event::PollFd<'_>; 0] = [];
    loop {
        let _ = rustix::event::poll(&mut nothing, None);
    }
}

/// Borrows an fd that stays open for the rest of the process (the
/// lifeline, the init program's memfd), or, in a child after fork, until it
/// exits.
///
/// # Safety
///
/// `fd` is open, and nothing closes it for as long as the borrow is used.
pub(crate) unsafe fn borrow_static(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the caller's guarantee.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// A close-on-exec copy of `fd` numbered `min` or above (`F_DUPFD_CLOEXEC`).
pub(crate) fn dup_above(fd: BorrowedFd<'_>, min: RawFd) -> Result<RawFd, i32> {
    rustix::io::fcntl_dupfd_cloexec(fd, min)
        .map(IntoRawFd::into_raw_fd)
        .map_err(raw)
}

/// Marks every fd from `first` on close-on-exec (`close_range` with
/// `CLOSE_RANGE_CLOEXEC`, Linux 5.11).
///
/// # Safety
///
/// Only right before an `exec` in a child whose fd table is its own: the
/// fds of every owner in the process close at the exec.
pub(crate) unsafe fn cloexec_from(first: RawFd) -> Result<(), i32> {
    // SAFETY: this function's contract is the caller's.
    unsafe { cloexec_between(first, u32::MAX as RawFd) }
}

/// Marks the fds from `first` to `last` (both included, `last` as a
/// `u32`) close-on-exec; nothing if `last` is below `first`.
///
/// # Safety
///
/// As [`cloexec_from`].
pub(crate) unsafe fn cloexec_between(first: RawFd, last: RawFd) -> Result<(), i32> {
    if (last as u32) < first as u32 {
        return Ok(());
    }
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC reads no memory and
    // closes nothing now; the fds it marks close at the exec the caller
    // makes next, in a child whose fd table is its own (this function's
    // contract).
    unsafe {
        call(
            libc::SYS_close_range,
            [
                first as usize,
                last as u32 as usize,
                libc::CLOSE_RANGE_CLOEXEC as usize,
                0,
                0,
                0,
            ],
        )
    }
    .map(drop)
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: runs the program `fd`
/// holds. Returns only on failure, with the errno.
///
/// # Safety
///
/// Only in a child (after fork, or a `CLONE_VM | CLONE_VFORK` child):
/// on success the calling process's image is replaced. `argv` and `envp`
/// are null-terminated arrays of NUL-terminated strings.
pub(crate) unsafe fn execveat_empty(
    fd: RawFd,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> i32 {
    // SAFETY: the empty path is a literal; argv and envp are
    // null-terminated arrays of NUL-terminated strings (the caller's).
    let res = unsafe {
        call(
            libc::SYS_execveat,
            [
                fd as usize,
                addr(c""),
                argv.as_ptr() as usize,
                envp.as_ptr() as usize,
                libc::AT_EMPTY_PATH as usize,
                0,
            ],
        )
    };
    match res {
        Ok(_) => libc::EIO,
        Err(errno) => errno,
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It exited with this status.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// It ended, and was reaped before it could be asked how.
    Unknown,
}

/// A signalfd of `SIGCHLD`, which this blocks in the calling thread first:
/// readable (it never blocks) once a child has ended or stopped.
pub(crate) fn sigchld_fd() -> Result<OwnedFd, i32> {
    // The kernel's sigset: one bit per signal, from 1.
    let set: u64 = 1 << (libc::SIGCHLD - 1);
    // SAFETY: a live 8-byte sigset read by the kernel; no old set asked for.
    unsafe {
        call(
            libc::SYS_rt_sigprocmask,
            [
                libc::SIG_BLOCK as usize,
                (&raw const set) as usize,
                0,
                8,
                0,
                0,
            ],
        )
    }?;
    let flags = (libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) as usize;
    // SAFETY: a new signalfd (fd -1) for the live 8-byte sigset.
    let fd = unsafe {
        call(
            libc::SYS_signalfd4,
            [usize::MAX, (&raw const set) as usize, 8, flags, 0, 0],
        )
    }?;
    // SAFETY: the kernel just made this fd, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Lets every thread of the caller's children that stopped for the caller
/// as its tracer go on, untraced (`PTRACE_DETACH`), with the signal it
/// stopped for, but for `SIGTRAP`: a program that made its parent its
/// tracer (`PTRACE_TRACEME`, as anti-debugging code does) would stay
/// stopped for good, and an exec stops it with a `SIGTRAP` it would never
/// get untraced. Reads stops only (no `WEXITED`): an end is left to
/// whoever waits for it.
pub(crate) fn let_traced_children_go() {
    loop {
        // siginfo_t: signo, errno, code (ints), then the pid, the uid and
        // the status or signal.
        let mut info = [0i32; 32];
        let flags = (libc::WSTOPPED | libc::WNOHANG | libc::__WALL) as usize;
        // SAFETY: info is a live 128-byte siginfo_t.
        match unsafe {
            call(
                libc::SYS_waitid,
                [
                    libc::P_ALL as usize,
                    0,
                    info.as_mut_ptr() as usize,
                    flags,
                    0,
                    0,
                ],
            )
        } {
            Err(libc::EINTR) => continue,
            // Nothing (more): WNOHANG leaves the pid 0.
            Err(_) => break,
            Ok(_) if info[4] == 0 => break,
            Ok(_) if info[2] == libc::CLD_TRAPPED => {
                let sig = if info[6] == libc::SIGTRAP { 0 } else { info[6] };
                // SAFETY: integer arguments; a thread that is not our
                // tracee (or gone) makes it fail, harmlessly.
                let _ = unsafe {
                    call(
                        libc::SYS_ptrace,
                        [
                            libc::PTRACE_DETACH as usize,
                            info[4] as usize,
                            0,
                            sig as usize,
                            0,
                            0,
                        ],
                    )
                };
            }
            // A stop of job control: not ours to end.
            Ok(_) => {}
        }
    }
}

/// Waits for our child `pid` (whatever its exit signal) and reaps it,
/// retrying on `EINTR`: how it ended.
pub(crate) fn reap(pid: libc::pid_t) -> Result<Exit, i32> {
    let status = reap_raw(pid)?;
    Ok(if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        // Not asked for stops or continues: not reached.
        Exit::Code(-1)
    })
}

/// Lets task `pid` (of the caller's PID namespace) run on any CPU the
/// caller may use but the one the caller is on, when there is one: the
/// kernel places a new task on its parent's CPU, where a helper meant to
/// work alongside its parent would wait for it to block. A hint only.
/// System calls only (usable after fork).
pub(crate) fn run_elsewhere(pid_: libc::pid_t) {
    use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
    let (Ok(mut mask), Some(cpu), Ok(pid)) = (sched_getaffinity(None), current_cpu(), pid(pid_))
    else {
        return;
    };
    if cpu >= CpuSet::MAX_CPU {
        return;
    }
    mask.unset(cpu);
    if mask.count() == 0 {
        return;
    }
    let _ = sched_setaffinity(Some(pid), &mask);
}

/// The CPU the calling thread runs on (`getcpu(2)`). By hand: rustix's
/// `sched_getcpu` goes through the vDSO, and its first use in a process
/// looks the vDSO up in the auxiliary vector, which rustix may read into
/// a `Vec` (from `/proc/self/auxv` before Linux 6.4's `PR_GET_AUXV`):
/// an allocation, in a task that may share the test process's memory.
fn current_cpu() -> Option<usize> {
    let mut cpu: u32 = 0;
    // SAFETY: getcpu writes one u32 through its first argument, a live
    // local; the node and cache arguments are null, which it allows.
    unsafe { call(libc::SYS_getcpu, [&raw mut cpu as usize, 0, 0, 0, 0, 0]) }.ok()?;
    Some(cpu as usize)
}

/// Waits for our child `pid` (whatever its exit signal) and reaps it,
/// retrying on `EINTR`: its raw wait status, as `waitpid(2)` gives it. The
/// one wait of the crate: [`reap`] and [`kill_and_reap`](super::kill_and_reap) go
/// through it.
pub(crate) fn reap_raw(pid_: libc::pid_t) -> Result<i32, i32> {
    use rustix::process::WaitOptions;
    let pid = pid(pid_)?;
    loop {
        match rustix::process::waitpid(
            Some(pid),
            WaitOptions::from_bits_retain(libc::__WALL as u32),
        ) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(raw(e)),
            Ok(None) => return Err(libc::ECHILD),
            Ok(Some((_, status))) => return Ok(status.as_raw()),
        }
    }
}

/// [`reap_raw`] of a child that a process of a sandbox may stop
/// (`SIGSTOP`, as root inside may any of its processes): each stop is
/// ended at once (`SIGCONT`), so that the wait ends once the child has
/// done its few system calls, and never hangs on a stop. System calls
/// only.
pub(crate) fn reap_continuing(pid_: libc::pid_t) -> Result<i32, i32> {
    use rustix::process::WaitOptions;
    let pid = pid(pid_)?;
    loop {
        match rustix::process::waitpid(
            Some(pid),
            WaitOptions::from_bits_retain((libc::__WALL | libc::WUNTRACED) as u32),
        ) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(raw(e)),
            Ok(None) => return Err(libc::ECHILD),
            Ok(Some((_, status))) if status.stopped() => {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
            }
            Ok(Some((_, status))) => return Ok(status.as_raw()),
        }
    }
}

/// Registers `head` as the calling thread's robust mutex list
/// (set_robust_list(2)): the kernel releases the mutexes on it, marked
/// owner-dead, when the thread dies.
///
/// # Safety
///
/// `head` must point to a `struct robust_list_head` of `len` bytes that
/// lives as long as the thread.
pub(crate) unsafe fn set_robust_list(head: usize, len: usize) -> Result<(), i32> {
    // SAFETY: the caller's guarantee.
    unsafe { call(libc::SYS_set_robust_list, [head, len, 0, 0, 0, 0]) }.map(drop)
}

/// Registers `area` as the calling thread's rseq area (rseq(2)), with the
/// signature `sig` of its abort handlers.
///
/// # Safety
///
/// `area` must point to a `struct rseq` of `len` bytes, suitably aligned,
/// that lives as long as the thread: the kernel writes it on every return
/// to user space.
pub(crate) unsafe fn register_rseq(area: usize, len: u32, sig: u32) -> Result<(), i32> {
    // SAFETY: the caller's guarantee.
    unsafe { call(libc::SYS_rseq, [area, len as usize, 0, sig as usize, 0, 0]) }.map(drop)
}

/// A pipe, both ends close-on-exec: (read, write). The test process
/// makes its pipes through [`fd::pipe`](super::fd::pipe), which lists
/// them.
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), i32> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(raw)
}

/// Runs `f` with every signal blocked on the calling thread, then restores
/// the mask: a thread or process that `f` starts begins with all signals
/// blocked, with no window in which a handler could run on it.
pub(crate) fn with_all_signals_blocked<R>(f: impl FnOnce() -> R) -> Result<R, i32> {
    let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset writes a whole sigset_t into `all`, a live one on
    // this stack (it cannot fail on a valid pointer).
    unsafe { libc::sigfillset(all.as_mut_ptr()) };
    // SAFETY: sigfillset initialised it.
    let all = unsafe { all.assume_init() };
    let mut previous = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: reads `all`, writes the mask it replaces into `previous`,
    // both live on this stack; it changes this thread's mask alone.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, previous.as_mut_ptr()) };
    if ret != 0 {
        return Err(ret);
    }
    // SAFETY: pthread_sigmask succeeded, so it wrote the old mask.
    let previous = unsafe { previous.assume_init() };
    let result = f();
    // SAFETY: sets this thread's mask back from `previous`, a live set.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    Ok(result)
}
