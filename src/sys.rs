//! Thin wrappers over the system calls that `nix` does not cover, or that
//! code running after `fork` must call without allocating.
//!
//! # Safety
//!
//! Everything here is callable from a child of a multi-threaded process
//! between `fork`/`clone` and `_exit`/`exec`: no wrapper allocates or takes a
//! lock. Paths and buffers are prepared by the caller before forking.
//! Failures are returned as raw errno values (`i32`), which cost nothing to
//! carry.
//!
//! The wrappers used by tasks that share the test process's memory (the
//! launch of a sandbox's init program until its exec, see `child::init`;
//! the task that frees a run's memory, see `child::closure`) go through
//! [`call`], which enters the kernel directly: no libc, so not even `errno`
//! is written in the thread-local storage they share.
//!
//! # References
//!
//! - clone(2), execveat(2), setns(2), pidfd_open(2), pidfd_send_signal(2),
//!   close_range(2), memfd_create(2), user_namespaces(7), pid_namespaces(7)
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
    // writes errno: CALLS_SHARE_NOTHING is false here.
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
    // SAFETY: the caller owns fd.
    let _ = unsafe { call(libc::SYS_close, [fd as usize, 0, 0, 0, 0, 0]) };
}

/// `openat(AT_FDCWD, path, flags, mode)`.
pub(crate) fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> Result<RawFd, i32> {
    // SAFETY: path is NUL-terminated; on success the fd is new and ours.
    unsafe {
        call(
            libc::SYS_openat,
            [
                libc::AT_FDCWD as usize,
                addr(path),
                flags as usize,
                mode as usize,
                0,
                0,
            ],
        )
    }
    .map(|fd| fd as RawFd)
}

/// Opens `path` for writing, writes `content`, closes it.
pub(crate) fn write_file(path: &CStr, content: &[u8]) -> Result<(), i32> {
    let fd = open(path, libc::O_WRONLY | libc::O_CLOEXEC, 0)?;
    // SAFETY: fd was just opened here, and is closed below.
    let res = write_all(unsafe { BorrowedFd::borrow_raw(fd) }, content);
    // SAFETY: as above; nothing uses it afterwards.
    unsafe { close(fd) };
    res
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
        let len = size + GUARD;
        // SAFETY: a new anonymous private mapping; no memory of ours is
        // touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(errno());
        }
        let stack = Stack { base, len };
        // SAFETY: the lowest page of the mapping made above.
        if unsafe { libc::mprotect(base, GUARD, libc::PROT_NONE) } != 0 {
            return Err(errno());
        }
        Ok(stack)
    }

    /// The usable part, above the guard page: its lowest address and size.
    pub(crate) fn usable(&self) -> (*mut libc::c_void, usize) {
        // SAFETY: the guard page is the first page of the mapping.
        (
            unsafe { self.base.cast::<u8>().add(GUARD) }.cast(),
            self.len - GUARD,
        )
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
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// The calling thread's thread pointer: the value `CLONE_SETTLS` gives a
/// new task (the TCB address on x86_64, `TPIDR_EL0` on aarch64).
pub(crate) fn thread_pointer() -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        let tp: usize;
        // SAFETY: reads the first word of the TCB, which glibc and musl
        // both keep pointing at the TCB itself (the fs base).
        unsafe {
            std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags));
        }
        Some(tp)
    }
    #[cfg(target_arch = "aarch64")]
    {
        let tp: usize;
        // SAFETY: reads the thread pointer register; no memory is touched.
        unsafe {
            std::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nostack, nomem, preserves_flags));
        }
        Some(tp)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    None
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
    // after fork(2). The caller upholds the after-fork rules.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | exit_signal as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match check(ret)? as libc::pid_t {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent { pid }),
    }
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
    let fd = fd.as_raw_fd();
    while !buf.is_empty() {
        // SAFETY: buf is a live slice of the given length.
        let n = unsafe {
            call(
                libc::SYS_write,
                [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
            )
        };
        match n {
            Ok(n) => buf = &buf[n.min(buf.len())..],
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Blocks until `fd` is readable or hung up; retries on EINTR.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: pfd is a live array of one pollfd; no timeout, no mask.
        let n = unsafe {
            call(
                libc::SYS_ppoll,
                [&mut pfd as *mut libc::pollfd as usize, 1, 0, 0, 0, 0],
            )
        };
        if n != Err(libc::EINTR) {
            return;
        }
    }
}

/// Names the calling process (what `ps` and `/proc/PID/comm` show).
pub(crate) fn set_name(name: &CStr) {
    // SAFETY: PR_SET_NAME reads at most 16 bytes from a NUL-terminated
    // string.
    let _ = unsafe {
        call(
            libc::SYS_prctl,
            [libc::PR_SET_NAME as usize, addr(name), 0, 0, 0, 0],
        )
    };
}

/// Kills the calling process with `SIGKILL` when its parent *thread* dies.
pub(crate) fn die_with_parent() -> Result<(), i32> {
    // SAFETY: plain prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } as libc::c_long).map(drop)
}

/// `dup2(2)`; the new fd does not have `FD_CLOEXEC`.
///
/// # Safety
///
/// `new` is closed first if open: the caller owns it (as in a child after
/// fork moving fds into place), and nothing else uses its number.
pub(crate) unsafe fn dup2(old: RawFd, new: RawFd) -> Result<(), i32> {
    if old == new {
        // What dup2 does then (dup3 refuses): check that old is open.
        // SAFETY: F_GETFD only reads the fd's flags.
        return unsafe {
            call(
                libc::SYS_fcntl,
                [old as usize, libc::F_GETFD as usize, 0, 0, 0, 0],
            )
        }
        .map(drop);
    }
    // SAFETY: plain system call on fd numbers.
    unsafe { call(libc::SYS_dup3, [old as usize, new as usize, 0, 0, 0, 0]) }.map(drop)
}

/// `_exit(2)`: leaves without running destructors, atexit handlers or
/// stdio flushes, which belong to the test process.
pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: exit_group ends every thread of the process; it never returns.
    let _ = unsafe { call(libc::SYS_exit_group, [code as usize, 0, 0, 0, 0, 0]) };
    // SAFETY: not reached; _exit is the same call through libc.
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

/// How many bytes wait to be read from the pipe `fd` (FIONREAD).
pub(crate) fn pending_bytes(fd: BorrowedFd<'_>) -> Result<usize, i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int to the live local.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) } as libc::c_long)?;
    Ok(n as usize)
}

/// `memfd_create(2)`.
pub(crate) fn memfd_create(name: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: name is NUL-terminated; on success the fd is new and ours.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A pidfd of the calling process, as a raw fd (after fork: no allocation).
pub(crate) fn pidfd_self() -> Result<RawFd, i32> {
    // SAFETY: plain system calls with integer arguments.
    unsafe {
        let pid = call(libc::SYS_getpid, [0; 6])?;
        call(libc::SYS_pidfd_open, [pid, 0, 0, 0, 0, 0]).map(|fd| fd as RawFd)
    }
}

/// A close-on-exec copy of `fd` numbered `min` or above (`F_DUPFD_CLOEXEC`).
pub(crate) fn dup_above(fd: RawFd, min: RawFd) -> Result<RawFd, i32> {
    // SAFETY: plain system call on fd numbers.
    unsafe {
        call(
            libc::SYS_fcntl,
            [
                fd as usize,
                libc::F_DUPFD_CLOEXEC as usize,
                min as usize,
                0,
                0,
                0,
            ],
        )
    }
    .map(|fd| fd as RawFd)
}

/// Marks every fd from `first` on close-on-exec (`close_range` with
/// `CLOSE_RANGE_CLOEXEC`, Linux 5.11).
///
/// # Safety
///
/// Only right before an `exec` in a child whose fd table is its own: the
/// fds of every owner in the process close at the exec.
pub(crate) unsafe fn cloexec_from(first: RawFd) -> Result<(), i32> {
    // SAFETY: plain system call on fd numbers.
    unsafe {
        call(
            libc::SYS_close_range,
            [
                first as usize,
                u32::MAX as usize,
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

/// Waits for our child `pid` (whatever its exit signal) and reaps it,
/// retrying on `EINTR`.
pub(crate) fn reap(pid: libc::pid_t) -> nix::Result<nix::sys::wait::WaitStatus> {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::__WALL)) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// Kills our child `pid` and reaps it.
pub(crate) fn kill_and_reap(pid: libc::pid_t) -> nix::Result<nix::sys::wait::WaitStatus> {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    reap(pid)
}

/// Whether the calling process ignores `SIGCHLD` (`SIG_IGN`, or
/// `SA_NOCLDWAIT`): the kernel then reaps children that exit with that
/// signal before anyone can wait for them.
pub(crate) fn children_reaped_by_kernel() -> bool {
    // SAFETY: reads the current disposition into a live, zeroed struct.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) == 0
            && (old.sa_sigaction == libc::SIG_IGN || old.sa_flags & libc::SA_NOCLDWAIT != 0)
    }
}

/// An fd a process opens once, keeps open for the rest of its life and
/// shares between its threads (the lifeline, the init program's memfd). A
/// process forked from the test process has a pid of its own, so it opens
/// its own: the copy it inherited may have been closed by hermetic's fd
/// hygiene.
#[derive(Debug)]
pub(crate) struct PerProcessFd(std::sync::atomic::AtomicU64);

impl PerProcessFd {
    pub(crate) const fn new() -> Self {
        PerProcessFd(std::sync::atomic::AtomicU64::new(0))
    }

    /// This process's fd, opened by `open` if it has none yet. When two
    /// threads open one at once, one fd wins and the other is closed.
    pub(crate) fn get_or_open(
        &self,
        open: impl Fn() -> io::Result<crate::fds::Fd>,
    ) -> io::Result<BorrowedFd<'static>> {
        use std::sync::atomic::Ordering;
        let pid = getpid();
        loop {
            // pid << 32 | fd, or 0.
            let current = self.0.load(Ordering::Acquire);
            if current != 0 && (current >> 32) as i32 == pid {
                // SAFETY: published by this process, whose published fds
                // are leaked (never closed).
                return Ok(unsafe { BorrowedFd::borrow_raw(current as u32 as RawFd) });
            }
            let fd = open()?;
            let packed = (pid as u64) << 32 | fd.as_raw_fd() as u32 as u64;
            if self
                .0
                .compare_exchange(current, packed, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Ok(fd.leak());
            }
            // Another thread published first: use theirs, close ours.
        }
    }
}
