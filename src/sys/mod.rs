//! The system layer: where the crate calls the kernel or the C library
//! other than through std, with `child/`, `fork/tls.rs`, `init/main.rs`
//! and two calls of rustix's safe API in `setup/` (`statx` in
//! `setup/host.rs`, `access` in `setup/limits.rs`); the `hermetic` binary
//! (`src/bin/hermetic/`) makes a few of its own.
//!
//! - [`raw`] (re-exported here): the wrappers that are safe between `fork`
//!   or `clone` and `_exit` or `exec` in a child of the multi-threaded test
//!   process: they neither allocate nor take a lock, and report failures as
//!   a bare errno. Code after fork uses only these, and only code after
//!   fork (or code the test process shares with it) is put there.
//! - [`fd`]: hermetic's own file descriptors, listed under a lock so that a
//!   run's process can close them; opening and closing one is test-process
//!   work.
//! - [`packet`] (re-exported here): raw packet sockets, for the process
//!   that impairs a link.
//! - this module: the wrappers only the test process calls (or a process
//!   that runs the user's code, which may allocate anyway), never code
//!   after fork but one (below): waits and reads of the test process's side of a run
//!   (`poll` into a `Vec`, `pending_bytes`, `wait_exit_or_hangup`), signals
//!   and kills of its children (`pidfd_send_signal`, `kill_and_reap`) and
//!   their names (`errno_name`, `signal_name`, a `String` or a table), the
//!   init program's memfd (`memfd_create`, `seal_for_good`) and plan pipe
//!   (`set_pipe_size`), the caller's ids and user name, the parked
//!   thread's look at itself (`gettid`, `thread_pointer`, `robust_list`,
//!   which reads `get_robust_list` by hand), the wait for a launched child's
//!   exec (`wait_cleared`), and per-process values (leaked `Box`es).
//!   One exception runs after a clone: `spawn` starts a program
//!   from a `CLONE_VM | CLONE_VFORK` child that only calls `execve` (by
//!   hand: rustix has it only in its unstable `runtime` module) and
//!   `exit_group`, on data prepared before, as `std::process` does.
//!
//! Layer: the bottom one: nothing here uses another module of the crate.
//!
//! # Safety
//!
//! The `unsafe` blocks here read C strings and dispositions libc returns,
//! the thread pointer, and publish leaked per-process values; each says
//! why it is sound.
#![allow(unsafe_code)]

pub(crate) mod fd;
pub(crate) mod packet;
pub(crate) mod raw;

pub(crate) use packet::*;
pub(crate) use raw::*;

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::io::Errno;
use rustix::process::{Pid, Signal};

/// The errno of a rustix error, as the crate carries it.
fn errno_of(e: Errno) -> i32 {
    e.raw_os_error()
}

/// Sends `sig` to the process behind `pidfd`; immune to pid reuse.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> Result<(), i32> {
    let sig = Signal::from_named_raw(sig).ok_or(libc::EINVAL)?;
    rustix::process::pidfd_send_signal(pidfd, sig).map_err(errno_of)
}

/// Whether the process behind `pidfd` still lives (a pidfd is readable
/// once it has exited).
pub(crate) fn pidfd_alive(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        &pidfd,
        rustix::event::PollFlags::IN,
    )];
    let now = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(0))
}

/// The mount namespace of the process behind `pidfd`, as an fd that keeps
/// it alive (`PIDFD_GET_MNT_NAMESPACE`, Linux 6.11; an older kernel gives
/// `ENOTTY` or `EINVAL`).
pub(crate) fn pidfd_mount_namespace(pidfd: BorrowedFd<'_>) -> Result<OwnedFd, i32> {
    /// `_IO(PIDFS_IOCTL_MAGIC, 3)`.
    const PIDFD_GET_MNT_NAMESPACE: usize = 0xFF03;
    // SAFETY: this ioctl reads and writes no memory (its argument must be
    // 0) and returns a new fd or an error.
    let fd = unsafe {
        call(
            libc::SYS_ioctl,
            [
                pidfd.as_raw_fd() as usize,
                PIDFD_GET_MNT_NAMESPACE,
                0,
                0,
                0,
                0,
            ],
        )
    }?;
    // SAFETY: the kernel just made this fd, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Starts a thread of hermetic's named `name`, with every signal blocked
/// from its first instruction (see [`spawn_with_own_fd_table`]: the
/// kernel never picks it for a signal sent to the process, so no handler
/// of the test's runs on it, and children's exits do not wake it).
pub(crate) fn spawn_quiet<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> io::Result<std::thread::JoinHandle<T>> {
    let thread = std::thread::Builder::new().name(name.into());
    with_all_signals_blocked(|| thread.spawn(body)).map_err(io::Error::from_raw_os_error)?
}

/// Starts a thread named `name` with an fd table of its own, which holds
/// only its copy of `keep` and `/dev/null` as fds 0 to 2, and runs `body` there with
/// its copy of `keep`. What that thread then opens, receives or closes, no
/// other thread sees, nor any fork of the process (a fork copies the table
/// of the thread that forks). Returns once the thread has its table, so
/// that the caller may close `keep` then; or the error that stopped it
/// (the thread has ended).
///
/// The thread starts, and stays, with every signal blocked: the kernel
/// never picks it for a signal sent to the process, so no handler of the
/// test's runs there (a handler that writes to a self-pipe, as tokio's and
/// signal-hook's do, would write to whatever that fd number is in this
/// thread's table), and the thread is not woken by each child's
/// `SIGCHLD`.
pub(crate) fn spawn_with_own_fd_table(
    name: &str,
    keep: BorrowedFd<'_>,
    body: impl FnOnce(OwnedFd) + Send + 'static,
) -> io::Result<()> {
    let keep = keep.as_raw_fd();
    let (told, told_of) = std::sync::mpsc::sync_channel::<Result<(), i32>>(1);
    spawn_quiet(name, move || {
        // SAFETY: this thread has just started and owns no fd; `keep`
        // is open in the process's table until the caller is told.
        let owned = unsafe { own_fd_table(keep) };
        let _ = told.send(owned);
        if owned.is_ok() {
            // SAFETY: the table is this thread's own now, and holds its
            // copy of `keep` under that number, which nothing of this
            // thread owns yet.
            body(unsafe { OwnedFd::from_raw_fd(keep) });
        }
    })?;
    match told_of.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(errno)) => Err(io::Error::from_raw_os_error(errno)),
        Err(_) => Err(io::Error::other(
            "the thread ended before it had its fd table",
        )),
    }
}

/// Gives the calling thread a copy of the process's fd table, in which it
/// then closes every fd but `keep` (`close_range` with
/// `CLOSE_RANGE_UNSHARE`, Linux 5.9), and opens `/dev/null` as whichever
/// of fds 0 to 2 is free. Not even the process's 0 to 2 are kept: the
/// process may replace them (the `hermetic` binary hands its program pipes
/// there, and waits for their end), and a copy here would hold the old
/// ones open for as long as the process lives.
///
/// # Safety
///
/// The calling thread owns no fd (no `OwnedFd`, `File`...) but maybe
/// `keep`: the copies it closes are of fds that others own.
unsafe fn own_fd_table(keep: RawFd) -> Result<(), i32> {
    const CLOSE_RANGE_UNSHARE: usize = 1 << 1;
    // SAFETY: the table is made this thread's own before anything in it is
    // closed; what is closed there, no code of this thread owns (the
    // caller's guarantee), and every other thread keeps its fds.
    unsafe {
        call(
            libc::SYS_close_range,
            [
                keep as usize + 1,
                u32::MAX as usize,
                CLOSE_RANGE_UNSHARE,
                0,
                0,
                0,
            ],
        )
    }?;
    if keep > 0 {
        // SAFETY: as above; the table is this thread's own now.
        unsafe { close_range(0, keep as u32 - 1) }?;
    }
    // The lowest free numbers first: 0 to 2 (but `keep`) become /dev/null,
    // so that nothing the thread receives is taken for its stdio.
    loop {
        let null = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(errno_of)?;
        if std::os::fd::AsRawFd::as_raw_fd(&null) > 2 {
            return Ok(());
        }
        // Fds 0 to 2 of this thread's own table, which std's stdio uses by
        // number: held for the thread's life.
        let _ = std::os::fd::IntoRawFd::into_raw_fd(null);
    }
}

/// Blocks until the process behind `pidfd` has exited, or `pipe` (a read
/// end) has no writer left; retries on EINTR. Data arriving in `pipe`
/// does not wake it (its poll asks for no event: only a hang-up is
/// reported).
pub(crate) fn wait_exit_or_hangup(pidfd: BorrowedFd<'_>, pipe: BorrowedFd<'_>) {
    use rustix::event::{PollFd, PollFlags};
    let mut polled = [
        PollFd::new(&pidfd, PollFlags::IN),
        PollFd::new(&pipe, PollFlags::empty()),
    ];
    while rustix::event::poll(&mut polled, None) == Err(Errno::INTR) {}
}

/// Kills our child `pid` and reaps it.
pub(crate) fn kill_and_reap(pid_: libc::pid_t) -> Result<Exit, i32> {
    kill_and_reap_through(pid_, pid_)
}

/// Kills `pid` and reaps `reaped`, our child that ends once `pid` has:
/// `pid` itself, or its parent that waits for it.
pub(crate) fn kill_and_reap_through(pid_: libc::pid_t, reaped: libc::pid_t) -> Result<Exit, i32> {
    if let Some(pid) = Pid::from_raw(pid_) {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
    }
    reap(reaped)
}

/// How many bytes wait to be read from the pipe `fd` (FIONREAD).
pub(crate) fn pending_bytes(fd: BorrowedFd<'_>) -> Result<usize, i32> {
    rustix::io::ioctl_fionread(fd)
        .map(|n| n as usize)
        .map_err(errno_of)
}

/// Which of the pipes `fds` hold bytes to read now: a [`poll`] that does
/// not wait, and, unlike `FIONREAD`, takes no pipe's lock (a run's
/// processes take theirs as they exit and close their ends, and a
/// `FIONREAD` then spins or sleeps on it). `None` if the poll failed.
pub(crate) fn pipes_with_data(fds: &[BorrowedFd<'_>]) -> Option<Vec<bool>> {
    let ready = poll(fds, Some(std::time::Duration::ZERO)).ok()?;
    Some(ready.iter().map(|r| r.readable).collect())
}

/// What one look into a pipe gave ([`read_pending`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    /// The pipe held nothing.
    Empty,
    /// So many bytes were read into the buffer's start.
    Read(usize),
    /// What the pipe held was taken by another reader between the look and
    /// the read (`EAGAIN` from a read end that never blocks).
    Taken,
    /// The pipe is at its end: no writer is left and nothing waits.
    Ended,
    /// The look or the read failed with this errno.
    Failed(i32),
}

/// Reads what the pipe `fd` holds now into `buf`, never more than it holds
/// (`FIONREAD`): with a read end that never blocks
/// ([`fd::pipe_read_never_blocks`]), this never waits, even when a process
/// with a read end of its own empties the pipe between the look and the
/// read.
pub(crate) fn read_pending(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Pending {
    let pending = match pending_bytes(fd) {
        Ok(0) => return Pending::Empty,
        Ok(n) => n.min(buf.len()),
        Err(e) => return Pending::Failed(e),
    };
    match read(fd, &mut buf[..pending]) {
        Ok(0) => Pending::Ended,
        Ok(n) => Pending::Read(n),
        Err(libc::EAGAIN) => Pending::Taken,
        Err(e) => Pending::Failed(e),
    }
}

/// Reads from `fd` at `offset` (the fd's own position untouched).
pub(crate) fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> Result<usize, i32> {
    rustix::io::pread(fd, buf, offset).map_err(errno_of)
}

/// Puts the open file of `fd` on fd 0, the process's stdin, closing what
/// was there (`dup2(2)`).
pub(crate) fn replace_stdin(fd: BorrowedFd<'_>) -> Result<(), i32> {
    // SAFETY: fd 0 is owned by no Rust object (std's `Stdin` names the
    // number for each read, it holds no `OwnedFd`), so replacing its file
    // closes nothing another owner will close again; `fd` is open for the
    // call.
    unsafe { dup2(fd.as_raw_fd(), 0) }
}

/// `memfd_create(2)`.
pub(crate) fn memfd_create(name: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    use rustix::fs::MemfdFlags;
    Ok(rustix::fs::memfd_create(
        name,
        MemfdFlags::from_bits_retain(flags),
    )?)
}

/// Seals the memfd `fd` against any change: its size and contents, and
/// further seals.
pub(crate) fn seal_for_good(fd: BorrowedFd<'_>) -> io::Result<()> {
    use rustix::fs::SealFlags;
    Ok(rustix::fs::fcntl_add_seals(
        fd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?)
}

/// Sets the capacity of the pipe `fd` to at least `size` bytes.
pub(crate) fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> io::Result<()> {
    Ok(rustix::pipe::fcntl_setpipe_size(fd, size).map(drop)?)
}

/// Writes `buf` whole to the pipe `fd` as its reader, the process behind
/// `pidfd`, takes it, at most a page at a time (a pipe that polls
/// writable has room for one); `Err(ESRCH)` once that process has ended
/// and the pipe is full, so that a reader that never comes (another holds
/// the read end open) cannot block the caller for ever.
pub(crate) fn write_while_alive(
    fd: BorrowedFd<'_>,
    mut buf: &[u8],
    pidfd: BorrowedFd<'_>,
) -> Result<(), i32> {
    use rustix::event::{PollFd, PollFlags};
    while !buf.is_empty() {
        let mut polled = [
            PollFd::new(&fd, PollFlags::OUT),
            PollFd::new(&pidfd, PollFlags::IN),
        ];
        match rustix::event::poll(&mut polled, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(errno_of(e)),
        }
        let out = polled[0].revents();
        if !out.contains(PollFlags::OUT) {
            return Err(if out.is_empty() {
                libc::ESRCH
            } else {
                libc::EPIPE
            });
        }
        match rustix::io::write(fd, &buf[..buf.len().min(4096)]) {
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(errno_of(e)),
        }
    }
    Ok(())
}

/// How many bytes the pipe `fd` holds at most (`F_GETPIPE_SZ`).
pub(crate) fn pipe_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    Ok(rustix::pipe::fcntl_getpipe_size(fd)?)
}

/// Whether the calling process ignores `SIGCHLD` (`SIG_IGN`, or
/// `SA_NOCLDWAIT`): the kernel then reaps children that exit with that
/// signal before anyone can wait for them.
pub(crate) fn children_reaped_by_kernel() -> bool {
    // SAFETY: `sigaction` is plain data (integers, a handler address and a
    // signal set), for which all zeroes is a valid value.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the disposition, into `old`, a
    // live struct of the right type.
    let read = unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) } == 0;
    read && (old.sa_sigaction == libc::SIG_IGN || old.sa_flags & libc::SA_NOCLDWAIT != 0)
}

/// Name of a signal, `"SIGSEGV"`, or `"signal N"` for unknown numbers.
pub(crate) fn signal_name(signo: i32) -> &'static str {
    const NAMES: [(i32, &str); 31] = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGSTKFLT, "SIGSTKFLT"),
        (libc::SIGCHLD, "SIGCHLD"),
        (libc::SIGCONT, "SIGCONT"),
        (libc::SIGSTOP, "SIGSTOP"),
        (libc::SIGTSTP, "SIGTSTP"),
        (libc::SIGTTIN, "SIGTTIN"),
        (libc::SIGTTOU, "SIGTTOU"),
        (libc::SIGURG, "SIGURG"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGWINCH, "SIGWINCH"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGPWR, "SIGPWR"),
        (libc::SIGSYS, "SIGSYS"),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == signo)
        .map_or("an unknown signal", |(_, name)| name)
}

/// Whether the environment variable `name` is set to something other than
/// empty or `0` (hermetic's switches: `HERMETIC_KEEP`, `HERMETIC_ONE_ID`...).
pub(crate) fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The effective uid of the calling process.
pub(crate) fn geteuid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The effective gid of the calling process.
pub(crate) fn getegid() -> u32 {
    rustix::process::getegid().as_raw()
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

/// The calling thread's robust mutex list head and its size, as its C
/// library registered them (get_robust_list(2)); None if it has none.
pub(crate) fn robust_list() -> Option<(usize, usize)> {
    let mut head = 0usize;
    let mut len = 0usize;
    // SAFETY: pid 0 is the calling thread; both pointers are live words.
    let ret = unsafe {
        call(
            libc::SYS_get_robust_list,
            [0, &raw mut head as usize, &raw mut len as usize, 0, 0, 0],
        )
    };
    (ret.is_ok() && head != 0).then_some((head, len))
}

/// The calling thread's id.
pub(crate) fn gettid() -> libc::pid_t {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// What [`poll`] saw of one fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    /// Anything at all: readable, hung up or in error.
    pub(crate) any: bool,
    /// Hung up or in error (a pipe with no writer left).
    pub(crate) hung_up: bool,
    /// Bytes to read (`POLLIN`).
    pub(crate) readable: bool,
}

/// Writes `buf` whole to the fd numbered `fd`, which the caller keeps open
/// for the call: no allocation, so callable from a signal handler.
pub(crate) fn write_to(fd: RawFd, buf: &[u8]) -> Result<(), i32> {
    // SAFETY: the caller keeps `fd` open for this call, which only writes.
    write_all(unsafe { BorrowedFd::borrow_raw(fd) }, buf)
}

/// Waits until one of `fds` is readable or hung up, or `timeout` has passed
/// (`None`: no limit), and says what each one is; none is ready when the
/// time ran out. `Err(EINTR)` when a signal came first: callers bound their
/// waits by deadlines and poll again.
pub(crate) fn poll(
    fds: &[BorrowedFd<'_>],
    timeout: Option<std::time::Duration>,
) -> Result<Vec<Ready>, i32> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    let timeout = timeout.map(|t| Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: t.subsec_nanos().into(),
    });
    rustix::event::poll(&mut polled, timeout.as_ref()).map_err(errno_of)?;
    Ok(polled
        .iter()
        .map(|p| Ready {
            any: !p.revents().is_empty(),
            hung_up: p.revents().intersects(PollFlags::HUP | PollFlags::ERR),
            readable: p.revents().contains(PollFlags::IN),
        })
        .collect())
}

/// The symbolic name of an errno, `"EPERM"`, or `"errno N"`'s number for
/// one not listed.
pub(crate) fn errno_name(errno: i32) -> std::borrow::Cow<'static, str> {
    const NAMES: [(i32, &str); 40] = [
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::ESRCH, "ESRCH"),
        (libc::EINTR, "EINTR"),
        (libc::EIO, "EIO"),
        (libc::ENXIO, "ENXIO"),
        (libc::E2BIG, "E2BIG"),
        (libc::ENOEXEC, "ENOEXEC"),
        (libc::EBADF, "EBADF"),
        (libc::ECHILD, "ECHILD"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EACCES, "EACCES"),
        (libc::EFAULT, "EFAULT"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::EXDEV, "EXDEV"),
        (libc::ENODEV, "ENODEV"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENFILE, "ENFILE"),
        (libc::EMFILE, "EMFILE"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::EROFS, "EROFS"),
        (libc::EMLINK, "EMLINK"),
        (libc::EPIPE, "EPIPE"),
        (libc::ERANGE, "ERANGE"),
        (libc::EDEADLK, "EDEADLK"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::ENOTEMPTY, "ENOTEMPTY"),
        (libc::ELOOP, "ELOOP"),
        (libc::EUSERS, "EUSERS"),
        (libc::EPROTO, "EPROTO"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::EADDRINUSE, "EADDRINUSE"),
        (libc::ENETUNREACH, "ENETUNREACH"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
        (libc::ECONNREFUSED, "ECONNREFUSED"),
    ];
    match NAMES.iter().find(|(n, _)| *n == errno) {
        Some((_, name)) => (*name).into(),
        None => format!("errno {errno}").into(),
    }
}

/// A program [`spawn`] started: its pid and a pidfd of it.
#[derive(Debug)]
pub(crate) struct Spawned {
    pid: libc::pid_t,
    pidfd: OwnedFd,
}

impl Spawned {
    /// Waits for the program to end, and reaps it.
    pub(crate) fn wait(self) -> Result<Exit, i32> {
        // Readable once it has ended.
        while poll(&[rustix::fd::AsFd::as_fd(&self.pidfd)], None) == Err(libc::EINTR) {}
        match reap(self.pid) {
            // Reaped by the kernel anyway (seen with setuid newuidmap while
            // the test process ignores SIGCHLD): it ended, how is unknown.
            Err(libc::ECHILD) => Ok(Exit::Unknown),
            other => other,
        }
    }
}

/// Starts the program `words[0]` with arguments `words`, no environment
/// and no stdin, as `posix_spawn` would (a `CLONE_VM | CLONE_VFORK` child
/// that execs at once: no copy of the test process), and without an exit
/// signal, so that no `SIGCHLD` disposition of the test process reaps it
/// first. Returns once it has exec'd (or failed to: then it exits 127).
pub(crate) fn spawn(words: &[std::ffi::CString]) -> Result<Spawned, i32> {
    struct Exec {
        argv: Vec<*const libc::c_char>,
        envp: [*const libc::c_char; 1],
    }
    extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: arg is the Exec below, alive while we run (the parent
        // is suspended until we exec or exit).
        let exec = unsafe { &*arg.cast::<Exec>() };
        // SAFETY: closes fd 0 of this child's own fd table (a copy: no
        // CLONE_FILES), which no code of this child uses; the program gets
        // no stdin.
        let _ = unsafe { call(libc::SYS_close, [0, 0, 0, 0, 0, 0]) };
        // SAFETY: argv is a null-terminated array of NUL-terminated
        // strings (`words`, alive in the suspended parent), its first the
        // path; envp is an empty null-terminated array. On success this
        // child's image is replaced and the parent resumes.
        let _ = unsafe {
            call(
                libc::SYS_execve,
                [
                    exec.argv[0] as usize,
                    exec.argv.as_ptr() as usize,
                    exec.envp.as_ptr() as usize,
                    0,
                    0,
                    0,
                ],
            )
        };
        exit(127)
    }
    let mut exec = Exec {
        argv: words
            .iter()
            .map(|w| w.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect(),
        envp: [std::ptr::null()],
    };
    let stack = Stack::map(64 << 10)?;
    let mut pidfd: libc::c_int = -1;
    let pid = with_all_signals_blocked(|| {
        // SAFETY: the child runs `child` on its own stack and only execs or
        // exits; we are suspended until then (CLONE_VFORK). The kernel
        // writes a pidfd of it into `pidfd`.
        unsafe {
            libc::clone(
                child,
                stack.top().cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD,
                std::ptr::addr_of_mut!(exec).cast(),
                std::ptr::addr_of_mut!(pidfd),
            )
        }
    })?;
    if pid < 0 {
        return Err(errno());
    }
    // SAFETY: the kernel made this fd for us.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    drop(stack);
    Ok(Spawned { pid, pidfd })
}

/// The kernel's release (`uname -r`).
pub(crate) fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// The name of the user `uid`, as the system's user database has it.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: `passwd` is plain data (integers and pointers), for which all
    // zeroes (null pointers) is a valid value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: pwd, buf (of the length given) and result are live for the
    // call, which fills pwd with pointers into buf and sets result to &pwd
    // or null.
    let ret = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if ret != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded: pw_name points at a NUL-terminated
    // string inside buf, which lives until the end of this function.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// An fd a process opens once, keeps open for the rest of its life and
/// shares between its threads (the lifeline, the init program's memfd). A
/// process forked from the test process is another process
/// ([`process_identity`], which tells them apart even where their pids are
/// the same number, in two PID namespaces), so it opens its own: the copy
/// it inherited may have been closed by hermetic's fd hygiene.
#[derive(Debug)]
pub(crate) struct PerProcessFd(std::sync::atomic::AtomicPtr<(u64, RawFd)>);

impl PerProcessFd {
    pub(crate) const fn new() -> Self {
        PerProcessFd(std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()))
    }

    /// This process's fd, opened by `open` if it has none yet. When two
    /// threads open one at once, one fd wins and the other is closed.
    pub(crate) fn get_or_open(
        &self,
        open: impl Fn() -> io::Result<crate::sys::fd::Fd>,
    ) -> io::Result<BorrowedFd<'static>> {
        use std::sync::atomic::Ordering;
        let me = process_identity();
        loop {
            let current = self.0.load(Ordering::Acquire);
            // SAFETY: a published entry is leaked: never changed nor freed.
            if let Some(&(owner, fd)) = unsafe { current.as_ref() }
                && owner == me
            {
                // SAFETY: published by this process, whose published fds
                // are leaked (never closed).
                return Ok(unsafe { BorrowedFd::borrow_raw(fd) });
            }
            let fd = open()?;
            let entry = Box::into_raw(Box::new((me, fd.as_raw_fd())));
            match self
                .0
                .compare_exchange(current, entry, Ordering::AcqRel, Ordering::Acquire)
            {
                // The entry replaced (another process's) is leaked: a
                // thread may still be reading it.
                Ok(_) => return Ok(fd.leak()),
                Err(_) => {
                    // Another thread published first: use theirs, close
                    // ours.
                    // SAFETY: `entry` was never published: this is its only
                    // pointer.
                    drop(unsafe { Box::from_raw(entry) });
                }
            }
        }
    }
}

/// A value a process computes once and shares between its threads (what
/// the host allows it, read from files), kept like [`PerProcessFd`] per
/// process ([`process_identity`]), so that a process forked from the test
/// process computes its own, and by a key of the caller's: a value computed
/// for another key is computed again. Lock-free, so usable in a forked copy
/// whatever another thread of the original was doing at the fork.
#[derive(Debug)]
pub(crate) struct PerProcess<K, T>(std::sync::atomic::AtomicPtr<(u64, K, T)>);

impl<K: PartialEq, T: Clone> PerProcess<K, T> {
    pub(crate) const fn new() -> Self {
        PerProcess(std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()))
    }

    /// This process's value for `key`, computed by `compute` if it has
    /// none yet.
    pub(crate) fn get_or_compute(&self, key: K, compute: impl FnOnce() -> T) -> T {
        use std::sync::atomic::Ordering;
        let me = process_identity();
        let current = self.0.load(Ordering::Acquire);
        // SAFETY: a published entry is leaked: never changed nor freed.
        if let Some((owner, k, value)) = unsafe { current.as_ref() }
            && *owner == me
            && *k == key
        {
            return value.clone();
        }
        let value = compute();
        // The entry this replaces (another process's, another key's, or
        // another thread's of the same moment) is leaked: a thread may
        // still be reading it.
        let entry = Box::into_raw(Box::new((me, key, value.clone())));
        self.0.store(entry, Ordering::Release);
        value
    }
}

/// Waits until the kernel has cleared `word` (a `CLONE_CHILD_CLEARTID`
/// word of a task sharing our memory: cleared, with a futex wake, when
/// that task execs or exits).
pub(crate) fn wait_cleared(word: &std::sync::atomic::AtomicU32) {
    use rustix::thread::futex;
    use std::sync::atomic::Ordering;
    loop {
        let seen = word.load(Ordering::Acquire);
        if seen == 0 {
            return;
        }
        // Shared (no FUTEX_PRIVATE_FLAG), as the kernel's wake for
        // CLONE_CHILD_CLEARTID is. EAGAIN (the word changed) and EINTR
        // loop back to the check.
        let _ = futex::wait(word, futex::Flags::empty(), seen, None);
    }
}
