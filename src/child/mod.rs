//! Everything that runs after `fork` or `clone`, one file per kind of
//! process:
//!
//! - [`init`]: starting the sandbox's **init program** (`init/main.rs`, PID
//!   1), a small executable of its own, exec'd from memory right after a
//!   `CLONE_VM | CLONE_VFORK` clone, so that PID 1 never holds the test
//!   process's memory;
//! - [`joiner`]: a run's **joiner**, forked from the test process: it joins
//!   the sandbox's namespaces with one `setns` on the init process's pidfd,
//!   closes every fd of hermetic's, and clones the runner as a sibling
//!   (`CLONE_PARENT`) that shares its memory (`CLONE_VM`, so page tables are
//!   copied once), then exits; the runner waits for that exit before it
//!   runs anything of the user's, so that while a closure runs no process
//!   outside the sandbox shares its memory;
//! - [`closure`]: the **runner**, in the sandbox's PID namespace: it points
//!   fds 1 and 2 at the sandbox's output pipes and runs the user's closure,
//!   sending back one frame;
//! - [`command`]: the `pre_exec` hook that starts a program inside.
//!
//! This module holds what they share: the locks taken around a fork, the
//! panic hook, and the spare thread-local storage runners borrow.
//!
//! # Safety
//!
//! The joiner is a `fork` of a multi-threaded process, and the init
//! program's launch a `CLONE_VM` clone of one. Until the user's closure
//! starts, code here makes only system calls, through [`sys`](crate::sys),
//! on data prepared before forking: no allocation, no locks, no unwinding
//! (every path ends in `_exit` or `exec`). The launch of the init program,
//! besides, touches no thread-local storage: its system calls bypass libc.
//! The runner's closure is user code; the crate documentation says what it
//! may not rely on.
#![allow(unsafe_code)]

pub(crate) mod closure;
pub(crate) mod command;
pub(crate) mod init;
pub(crate) mod joiner;

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::panic;

use crate::error::PanicLocation;
use crate::sys;

thread_local! {
    /// Set on the thread that runs the user's closure.
    pub(crate) static IN_CLOSURE: Cell<bool> = const { Cell::new(false) };
    /// Set on a thread whose panic's location is recorded (by our hook)
    /// and printed as usual: an isolated test's body.
    pub(crate) static RECORD_PANIC: Cell<bool> = const { Cell::new(false) };
    /// The location of that thread's panic, recorded by our hook.
    pub(crate) static PANIC_AT: RefCell<Option<PanicLocation>> = const { RefCell::new(None) };
}

/// A thread's TLS that runners borrow: its thread pointer, and where
/// glibc keeps the thread's id, its robust mutex list and its rseq area in
/// it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpareTls {
    /// The thread pointer (what `CLONE_SETTLS` takes).
    pub(crate) tp: usize,
    /// The offset from `tp` of the TCB's thread id (glibc's
    /// `struct pthread`'s `tid`), which the kernel overwrites with the
    /// runner's id as it starts (`CLONE_CHILD_SETTID`).
    pub(crate) tid_offset: isize,
    /// The head of the thread's robust mutex list in its TCB, and its
    /// size, as glibc registered them for the parked thread
    /// (get_robust_list(2)): the runner registers its copy, so that the
    /// kernel releases the robust mutexes the closure's thread holds
    /// should it die.
    pub(crate) robust: Option<(usize, usize)>,
    /// The thread's rseq area in its TCB, as glibc registered it: the
    /// runner registers its copy (rseq(2)), so that the kernel keeps its
    /// CPU number current (glibc's `sched_getcpu` reads it) and restarts
    /// per-CPU critical sections.
    pub(crate) rseq: Option<Rseq>,
}

/// Where glibc keeps a thread's rseq area, and how it registers it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rseq {
    /// The area's address in the parked thread's TCB (the runner's copy
    /// is at the same address in its memory).
    pub(crate) area: usize,
    /// The length glibc registers.
    pub(crate) len: u32,
}

impl Rseq {
    /// The signature glibc registers with (its `RSEQ_SIG`), which the
    /// kernel checks before an abort handler of a critical section.
    #[cfg(target_arch = "x86_64")]
    pub(crate) const SIG: u32 = 0x5305_3053;
    #[cfg(target_arch = "aarch64")]
    pub(crate) const SIG: u32 = 0xd428_bc00;

    /// The area's `cpu_id` field (struct rseq: `cpu_id_start`, then
    /// `cpu_id`, both u32).
    pub(crate) fn cpu_id(self) -> *mut i32 {
        (self.area + 4) as *mut i32
    }
}

impl SpareTls {
    /// Where the runner's thread id goes.
    pub(crate) fn tid_slot(self) -> *mut libc::pid_t {
        self.tp.wrapping_add_signed(self.tid_offset) as *mut libc::pid_t
    }
}

/// The TLS of a thread of this process that was made only to lend it to
/// runners: made once, on first need, with `pthread_create` (so no libtest
/// capture was ever set on it), on a stack of our own (so that glibc, in a
/// forked child, forgets it instead of recycling its memory for a new
/// thread), and parked for good.
///
/// A runner is a new task in the joiner's private copy of our memory. By
/// default it runs with the forking test thread's TLS, where libtest keeps
/// its capture of `println!`, which in a copy would swallow the closure's
/// output, and where the test thread's thread-locals have whatever values
/// it gave them. Cloned with `CLONE_SETTLS` onto this thread's TLS (its copy
/// in the joiner's memory, which no one else uses), the closure starts with
/// fresh thread-locals, as on a new thread, prints to fd 1 from the
/// runner's own thread, and no thread has to be started per run.
///
/// Why the copy is sound to use: glibc's `fork` forgets, in the child, the
/// threads that live on stacks of their own (`user_stack`) without
/// touching their TCB, so the copy keeps a complete, initialised TCB with
/// its stack guard and pristine thread locals: the parked thread runs no
/// Rust code that uses them (only one `malloc` and `free`, so that its TLS
/// names a malloc arena, which runners then share instead of making one
/// each). Its thread id would be the parked thread's,
/// in another PID namespace: glibc uses it as the owner of recursive,
/// error-checking and priority-inheritance mutexes, and the kernel looks a
/// PI mutex's owner up by it. The runner is cloned with
/// `CLONE_CHILD_SETTID` onto that field, so the kernel writes the runner's
/// own id there before it runs (tests/runner_mutexes.rs). The field's
/// offset is the one glibc gives debuggers (nptl_db's symbols), checked
/// against the parked thread's own id. The kernel gives a new task
/// neither an rseq area nor a robust mutex list, so the runner registers
/// its copies of the parked thread's (their addresses from
/// get_robust_list(2) and glibc's `__rseq_offset`): glibc's `sched_getcpu`
/// then reads a CPU number the kernel keeps current, and the robust
/// mutexes the closure's thread holds are released, owner-dead, should it
/// die (tests/runner_mutexes.rs). Two system calls, about a microsecond.
///
/// `None` where this is not known to hold (other C libraries and targets,
/// no unique offset), or with `HERMETIC_RUNNER_THREAD=1` in the
/// environment: runs then start a thread for the closure instead, which
/// costs about 0.1 ms more.
pub(crate) fn spare_tls() -> Option<SpareTls> {
    static SPARE: std::sync::OnceLock<Option<SpareTls>> = std::sync::OnceLock::new();
    *SPARE.get_or_init(|| {
        let opted_out = std::env::var_os("HERMETIC_RUNNER_THREAD").is_some_and(|v| v != "0");
        if opted_out
            || !cfg!(all(
                target_env = "gnu",
                any(target_arch = "x86_64", target_arch = "aarch64")
            ))
        {
            return None;
        }
        park_a_thread()
    })
}

/// The offset from the thread pointer of the thread id in glibc's
/// `struct pthread`, as glibc describes it to debuggers (the nptl_db
/// symbols `_thread_db_pthread_tid`: bits, count, offset; and
/// `_thread_db_sizeof_pthread`). None where they are missing or say
/// something unexpected.
fn glibc_tid_offset() -> Option<isize> {
    // SAFETY: dlsym with NUL-terminated names; when present, the symbols
    // are glibc's read-only arrays of u32 (nptl_db's DB_STRUCT_FIELD: three
    // words; DB_STRUCT: one).
    let (field, size) = unsafe {
        let field = libc::dlsym(libc::RTLD_DEFAULT, c"_thread_db_pthread_tid".as_ptr());
        let size = libc::dlsym(libc::RTLD_DEFAULT, c"_thread_db_sizeof_pthread".as_ptr());
        if field.is_null() || size.is_null() {
            return None;
        }
        (*field.cast::<[u32; 3]>(), *size.cast::<u32>())
    };
    let [bits, count, offset] = field;
    if bits != 32 || count != 1 || offset + 4 > size {
        return None;
    }
    // Where struct pthread lies: at the thread pointer (x86_64), or just
    // below it (aarch64).
    let start = if cfg!(target_arch = "x86_64") {
        0
    } else {
        -(size as isize)
    };
    Some(start + offset as isize)
}

/// What the parked thread tells about itself.
static PARKED_TP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PARKED_TID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
static PARKED_ROBUST: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PARKED_ROBUST_LEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The parked thread's rseq area, from glibc's `__rseq_offset` and
/// `__rseq_size` (glibc 2.35 and later; a size of 0 means glibc did not
/// register one, and None means an older glibc).
fn glibc_rseq(tp: usize) -> Option<Rseq> {
    // SAFETY: dlsym with NUL-terminated names; when present, the symbols
    // are glibc's constants: a ptrdiff_t and an unsigned int.
    let (offset, size) = unsafe {
        let offset = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr());
        let size = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr());
        if offset.is_null() || size.is_null() {
            return None;
        }
        (*offset.cast::<isize>(), *size.cast::<u32>())
    };
    // glibc registers at least the original 32-byte struct rseq, and says
    // in __rseq_size how much of it (or more) it uses.
    (size > 0).then(|| Rseq {
        area: tp.wrapping_add_signed(offset),
        len: size.max(32),
    })
}

fn park_a_thread() -> Option<SpareTls> {
    use std::sync::atomic::Ordering;
    extern "C" fn parked(_: *mut libc::c_void) -> *mut libc::c_void {
        // First, one allocation, so that this thread's TLS names a malloc arena
        // (and a tcache) of its own: a runner borrowing a copy of it
        // allocates there, instead of making a new arena (a 64 MiB
        // reservation and its first page faults) in every run. glibc's
        // fork leaves that arena consistent in the child, as all others.
        // SAFETY: malloc and free of one byte (black_box: the compiler
        // would drop the pair); a null pointer is freed as a no-op.
        unsafe { libc::free(std::hint::black_box(libc::malloc(1))) };
        if let Some((head, len)) = sys::robust_list() {
            PARKED_ROBUST.store(head, Ordering::Release);
            PARKED_ROBUST_LEN.store(len, Ordering::Release);
        }
        PARKED_TID.store(sys::gettid(), Ordering::Release);
        PARKED_TP.store(
            sys::thread_pointer().unwrap_or(usize::MAX),
            Ordering::Release,
        );
        sys::set_name(c"hermetic-tls");
        loop {
            // SAFETY: waits for a signal; only glibc's own, which it never
            // lets a thread block (setxid), reach this thread, run their
            // handler and return here.
            unsafe { libc::pause() };
        }
    }
    let tid_offset = glibc_tid_offset()?;
    // Never unmapped: the thread lives as long as the process. glibc puts
    // the TCB and the static TLS (all of std's and the test's thread locals)
    // at its top; the rest is committed only if touched.
    let stack = std::mem::ManuallyDrop::new(sys::Stack::map(1 << 20).ok()?);
    let (bottom, size) = stack.usable();
    // The thread starts with every signal blocked: no handler of the test
    // process ever runs on it and changes the thread-locals runs will start
    // from.
    let started = with_all_signals_blocked(|| {
        // SAFETY: attr is initialised before use and destroyed after; the
        // stack is ours and outlives the thread; `parked` never returns.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            let mut thread: libc::pthread_t = std::mem::zeroed();
            let ok = libc::pthread_attr_init(&mut attr) == 0
                && libc::pthread_attr_setstack(&mut attr, bottom, size) == 0
                && libc::pthread_create(&mut thread, &attr, parked, std::ptr::null_mut()) == 0;
            libc::pthread_attr_destroy(&mut attr);
            ok
        }
    })
    .ok()?;
    if !started {
        return None;
    }
    let tp = loop {
        match PARKED_TP.load(Ordering::Acquire) {
            0 => std::thread::yield_now(),
            usize::MAX => return None,
            tp => break tp,
        }
    };
    let robust = match PARKED_ROBUST.load(Ordering::Acquire) {
        0 => None,
        head => Some((head, PARKED_ROBUST_LEN.load(Ordering::Acquire))),
    };
    let in_stack = |at: usize, len: usize| {
        at >= bottom as usize && at.saturating_add(len) <= stack.top() as usize
    };
    let spare = SpareTls {
        tp,
        tid_offset,
        robust: robust.filter(|&(head, len)| in_stack(head, len)),
        rseq: glibc_rseq(tp).filter(|r| in_stack(r.area, r.len as usize)),
    };
    // The TCB is in our mapping, and the word there is the thread's id:
    // glibc's description holds.
    let slot = spare.tid_slot() as usize;
    if slot < bottom as usize || slot + 4 > stack.top() as usize || !slot.is_multiple_of(4) {
        return None;
    }
    // SAFETY: an aligned word inside our own mapping, written by glibc
    // when the parked thread started.
    let tid = unsafe { std::ptr::read_volatile(spare.tid_slot()) };
    (tid == PARKED_TID.load(Ordering::Acquire)).then_some(spare)
}

/// Held by the panic hook while the hook that was there before prints a
/// panic, and by [`ForkLocks`] across a fork. std's default hook prints
/// under a private lock; a copy of the process forked while another thread
/// holds it could never print a panic, and a panic in any thread of a run
/// (a thread the closure starts, say) would wait forever.
static PANIC_PRINTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The locks a thread of the test process may hold for a moment and a
/// forked copy of it needs: std's stdout and stderr (libtest's main thread
/// prints "test ... ok" through them) and [`PANIC_PRINTING`]. Forked while
/// another thread holds one, the child could never print, flush or report a
/// panic; forked while holding all three, the child is a copy of their
/// owner and releases them before running the closure.
///
/// It also holds the list of hermetic's own fds steady (see
/// [`fds`](crate::fds)), so that the child knows exactly which of its fds
/// to close.
pub(crate) struct ForkLocks {
    fds: std::sync::RwLockReadGuard<'static, Vec<RawFd>>,
    /// No unlisted fd of hermetic's exists while it is held (see
    /// [`fds::without_forks`](crate::fds::without_forks)).
    _forks_allowed: std::sync::RwLockReadGuard<'static, ()>,
    _stdout: std::io::StdoutLock<'static>,
    _stderr: std::io::StderrLock<'static>,
    _printing: std::sync::MutexGuard<'static, ()>,
}

impl ForkLocks {
    /// Takes the three locks. The panic lock is only tried, and everything
    /// let go and taken again if it is busy: a thread that panics while it
    /// prints holds stdout or stderr and then wants the panic lock.
    pub(crate) fn take() -> ForkLocks {
        // First: a thread handing unlisted fds of ours to a program holds
        // it exclusively, and takes none of the locks below meanwhile.
        let forks_allowed = crate::fds::forks_allowed();
        loop {
            let mut stdout = std::io::stdout().lock();
            // What stdout holds unwritten (a line not yet ended, printed
            // without libtest's capture) goes out now, once: a copy of it in
            // the child would be printed a second time.
            let _ = std::io::Write::flush(&mut stdout);
            let stderr = std::io::stderr().lock();
            let printing = match PANIC_PRINTING.try_lock() {
                Ok(guard) => guard,
                // Poisoned only if a hook panicked while printing, which
                // aborts the process; the guard is good either way.
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    drop((stderr, stdout));
                    std::thread::yield_now();
                    continue;
                }
            };
            // Last: a thread that opens or closes an fd of ours holds it
            // only around that system call, and never one of the others
            // (a thread holding stdout may be making a sandbox). Forks are
            // one at a time (stdout is held), so the forking thread is the
            // only reader at the fork, and the child's copy of the lock is
            // free once it drops its guard.
            let fds = crate::fds::hold();
            return ForkLocks {
                fds,
                _forks_allowed: forks_allowed,
                _stdout: stdout,
                _stderr: stderr,
                _printing: printing,
            };
        }
    }
}

impl ForkLocks {
    /// hermetic's own fds, as they were at the fork.
    pub(crate) fn ours(&self) -> &[RawFd] {
        &self.fds
    }
}

/// Installs, once per process, a panic hook that records where the
/// closure of a runner panicked instead of printing it (the test process
/// re-raises the panic with that location); every other panic goes to the
/// hook that was there before.
///
/// It must be installed *before* forking: `set_hook` takes a lock that
/// another thread of the test process may hold at the moment of `fork`
/// (while it panics, for instance), and in the child nobody would release
/// it.
///
/// Called when a sandbox is built, and again before each run; never while
/// the thread is panicking (`set_hook` would panic then): a sandbox built
/// and run from a `Drop` during unwinding works, and installs the hook at
/// the next chance.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::thread::panicking() {
        return;
    }
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let location = || {
                info.location().map(|l| PanicLocation {
                    file: l.file().to_owned(),
                    line: l.line(),
                    column: l.column(),
                })
            };
            if IN_CLOSURE.with(Cell::get) {
                PANIC_AT.with(|p| *p.borrow_mut() = location());
            } else {
                if RECORD_PANIC.with(Cell::get) {
                    PANIC_AT.with(|p| *p.borrow_mut() = location());
                }
                let _printing = PANIC_PRINTING.lock();
                previous(info);
            }
        }));
    });
}

/// Runs `f` with every signal blocked on the calling thread, then restores
/// the mask: a thread or process that `f` starts begins with all signals
/// blocked, with no window in which a handler could run on it.
pub(crate) fn with_all_signals_blocked<R>(f: impl FnOnce() -> R) -> Result<R, i32> {
    // SAFETY: both sets live on this stack; sigfillset initialises `all`,
    // and pthread_sigmask fills `previous` before it is used.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let ret = libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
        if ret != 0 {
            return Err(ret);
        }
        let result = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        Ok(result)
    }
}

/// Ends the calling process the way a child's wait `status` says its
/// child ended: with the same exit code, or killed by the same signal
/// (its default action restored and unblocked, with no core file). For a
/// process that stands in for its child. System calls only.
pub(crate) fn leave_as(status: i32) -> ! {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: default disposition, no core file, then the same signal
        // to this very process.
        unsafe {
            let rl = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &rl);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
        }
        sys::exit(128 + sig)
    }
    sys::exit(libc::WEXITSTATUS(status))
}

/// The fd of the result channel in a runner; -1 elsewhere.
pub(crate) static RESULT_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// The fd on which this process, if it runs a sandboxed closure, sends its
/// result. For fault-injection tests only.
pub(crate) fn result_fd() -> Option<RawFd> {
    let fd = RESULT_FD.load(std::sync::atomic::Ordering::Relaxed);
    (fd >= 0).then_some(fd)
}

/// Clones a child with `flags` that exits at once: does the kernel let us
/// create these namespaces? Returns the errno of `clone` if not.
pub(crate) fn probe_clone(flags: libc::c_ulong) -> Result<(), i32> {
    // SAFETY: the child only calls _exit.
    match unsafe { sys::clone_fork(flags, 0) }? {
        sys::Forked::Child => sys::exit(0),
        sys::Forked::Parent { pid, .. } => {
            let _ = sys::reap(pid);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    fn the_spare_tls_and_its_thread_id_are_found_with_glibc() {
        if std::env::var_os("HERMETIC_RUNNER_THREAD").is_some_and(|v| v != "0") {
            return;
        }
        let tls = super::spare_tls().expect("no spare TLS: runs would start a thread each");
        // SAFETY: the slot lies in the parked thread's TCB, which lives as
        // long as the process; the parked thread never writes it.
        let tid = unsafe { std::ptr::read_volatile(tls.tid_slot()) };
        let parked = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "hermetic-tls")
            })
            .expect("the parked thread");
        assert_eq!(parked.file_name().to_string_lossy(), tid.to_string());
    }
}
