//! Everything that runs after `fork`/`clone`, in one place.
//!
//! Three kinds of process run code from here:
//!
//! - the **holder**, cloned into the new namespaces, sharing the test
//!   process's memory where the target allows (see [`clone_holder`]): it
//!   walks the prepared [`Step`]s, reports, then waits for the lifeline and
//!   does nothing else (the kernel reaps its orphans because it ignores
//!   `SIGCHLD`);
//! - a run's **joiner**, forked from the test process: it joins the holder's
//!   namespaces with one `setns` on the holder's pidfd and clones the runner
//!   as a sibling (`CLONE_PARENT`), so that the test process can wait for the
//!   runner directly; the runner shares the joiner's memory (`CLONE_VM`) and
//!   the joiner sleeps until it exits (`CLONE_VFORK`), then exits too;
//! - the **runner**, in the sandbox's PID namespace: it points fds 1 and 2 at
//!   the sandbox's output pipes and runs the user's closure (on its own
//!   thread, with thread-local storage free of libtest's capture, see
//!   [`spare_tls`]), sending back one frame.
//!
//! # Safety
//!
//! The holder is a raw `clone` of a multi-threaded process, sharing its
//! memory, and the joiner a `fork` of one. Until the user's closure starts,
//! code here makes only system calls through [`sys`], on data prepared
//! before forking: no allocation, no locks, no unwinding (every path ends in
//! `_exit`). The holder, besides, touches no thread-local storage: its
//! system calls bypass libc (see [`sys::call`]). The
//! runner's closure is user code; the crate documentation says what it may
//! not rely on.
#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::fd::RawFd;
use std::panic::{self, AssertUnwindSafe};

use serde::Serialize;

use crate::channel::{self, PanicReport, Tag};
use crate::error::PanicLocation;
use crate::plan::{Action, Step};
use crate::sys;

/// The step index the holder sends when all steps succeeded.
pub(crate) const READY: u32 = u32::MAX;

/// Sends the holder's report: `(step index, errno)` in 8 bytes.
fn report(fd: RawFd, step: u32, errno: i32) {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&step.to_le_bytes());
    msg[4..].copy_from_slice(&errno.to_le_bytes());
    let _ = sys::write_all(fd, &msg);
}

/// Decodes the holder's report.
pub(crate) fn parse_report(msg: [u8; 8]) -> (u32, i32) {
    let step = u32::from_le_bytes(msg[..4].try_into().expect("4 bytes"));
    let errno = i32::from_le_bytes(msg[4..].try_into().expect("4 bytes"));
    (step, errno)
}

fn act(action: &Action, keep: &[RawFd]) -> Result<(), i32> {
    match action {
        Action::DetachFds => {
            let null = sys::open(c"/dev/null", libc::O_RDWR, 0)?;
            for fd in 0..3 {
                sys::dup2(null, fd)?;
            }
            sys::close_all_except(keep)
        }
        Action::WriteFile { path, content } => sys::write_file(path, content),
        Action::MakeMountsPrivate => {
            sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        }
        Action::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => sys::mount(
            source.as_deref(),
            target,
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        ),
        Action::RemountReadOnly { target } => {
            let locked = sys::locked_mount_flags(target)?;
            sys::mount(
                None,
                target,
                None,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked,
                None,
            )
        }
        Action::AttachSource { fd, target } => sys::move_mount(*fd, target),
        Action::CreateDir { path } => sys::mkdir(path),
        Action::CreateFile { path } => sys::touch(path),
        Action::OpenSource { path, fd } => {
            let opened = sys::open_tree_clone(path)?;
            if opened != *fd {
                sys::dup2(opened, *fd)?;
                sys::close(opened);
            }
            Ok(())
        }
        Action::SetHostname { name } => sys::sethostname(name),
        Action::LoopbackUp => sys::loopback_up(),
    }
}

/// The holder: PID 1 of the sandbox.
///
/// `ready` is the write end of the report pipe; `lifeline` a pidfd of the
/// test process.
pub(crate) fn holder_main(steps: &[Step], ready: RawFd, lifeline: RawFd) -> ! {
    sys::set_name(c"hermetic-init");
    let keep = if ready < lifeline {
        [ready, lifeline]
    } else {
        [lifeline, ready]
    };
    for (i, step) in steps.iter().enumerate() {
        if let Err(errno) = act(&step.action, &keep) {
            report(ready, i as u32, errno);
            sys::exit(1);
        }
    }
    if let Err(errno) = sys::autoreap_children() {
        report(ready, steps.len() as u32, errno);
        sys::exit(1);
    }
    report(ready, READY, 0);
    sys::close(ready);
    // Readable once the test process has exited. Dying as PID 1 makes the
    // kernel kill everything else in the sandbox.
    sys::wait_readable(lifeline);
    sys::exit(0)
}

/// What a run's joiner needs, prepared by the parent.
pub(crate) struct JoinPlan {
    /// The holder's pidfd.
    pub(crate) holder: RawFd,
    /// `CLONE_NEW*` flags of the namespaces to join.
    pub(crate) nstypes: libc::c_int,
    /// Write end of the joiner's report pipe.
    pub(crate) report: RawFd,
}

/// What the joiner reports: the runner's pid, or the errno of a failure.
pub(crate) enum Joined {
    Runner(libc::pid_t),
    Failed { step: &'static str, errno: i32 },
}

/// Steps of the joiner, by the code it reports.
const JOIN_STEPS: [&str; 2] = [
    "joining the sandbox's namespaces (setns)",
    "starting the process that runs the closure (clone)",
];

pub(crate) fn parse_joined(msg: [u8; 8]) -> Joined {
    let (code, value) = parse_report(msg);
    match code {
        0 => Joined::Runner(value),
        n => Joined::Failed {
            step: JOIN_STEPS
                .get(n as usize - 1)
                .copied()
                .unwrap_or("starting a run"),
            errno: value,
        },
    }
}

/// The joiner's first half: enters the sandbox's namespaces and goes back to
/// the directory the test process was in (or `/` if that does not exist
/// inside). Reports and exits on failure.
///
/// # Safety
///
/// Call only in a child just forked from the test process, before anything
/// else.
pub(crate) unsafe fn join(plan: &JoinPlan) {
    if let Err(errno) = enter(plan.holder, plan.nstypes) {
        report(plan.report, 1, errno);
        sys::exit(1);
    }
}

/// Joins the namespaces `nstypes` of the holder behind the pidfd `holder`,
/// then goes back to the directory the caller was in, or `/` if that does
/// not exist inside. Makes only system calls, on a stack buffer.
fn enter(holder: RawFd, nstypes: libc::c_int) -> Result<(), i32> {
    // setns into a mount namespace moves us to its root; remember where we
    // were to go back by path (never by fd, which would lead out of the
    // sandbox's mount tree).
    let mut cwd = [0u8; libc::PATH_MAX as usize];
    // SAFETY: cwd is a live buffer of the given size.
    let have_cwd = !unsafe { libc::getcwd(cwd.as_mut_ptr().cast(), cwd.len()) }.is_null();
    sys::setns(sys::borrow_static(holder), nstypes)?;
    // SAFETY: cwd is NUL-terminated when getcwd succeeded; "/" is a literal.
    if !have_cwd || unsafe { libc::chdir(cwd.as_ptr().cast()) } != 0 {
        // SAFETY: as above.
        unsafe { libc::chdir(c"/".as_ptr()) };
    }
    Ok(())
}

thread_local! {
    /// Set on the thread that runs the user's closure.
    static IN_CLOSURE: Cell<bool> = const { Cell::new(false) };
    /// The location of that thread's panic, recorded by our hook.
    static PANIC_AT: RefCell<Option<PanicLocation>> = const { RefCell::new(None) };
}

/// The thread pointer of a thread of this process that was made only to
/// lend its thread-local storage to runners: made once, on first need, with
/// `pthread_create` (so no libtest capture was ever set on it), on a stack
/// of our own (so that glibc, in a forked child, forgets it instead of
/// recycling its memory for a new thread), and parked for good.
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
/// its stack guard, its own (never used) thread id and pristine thread
/// locals: the parked thread runs no Rust code that uses them. The kernel
/// gives a `CLONE_VM` task no rseq area or robust futex list of its own, so
/// it writes nothing into the TCB either.
///
/// `None` where this is not known to hold (other C libraries and targets),
/// or with `HERMETIC_RUNNER_THREAD=1` in the environment: runs then start a
/// thread for the closure instead, which costs about 0.1 ms more.
pub(crate) fn spare_tls() -> Option<usize> {
    static SPARE: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
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

fn park_a_thread() -> Option<usize> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static TP: AtomicUsize = AtomicUsize::new(0);
    extern "C" fn parked(_: *mut libc::c_void) -> *mut libc::c_void {
        TP.store(
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
    loop {
        match TP.load(Ordering::Acquire) {
            0 => std::thread::yield_now(),
            usize::MAX => return None,
            tp => return Some(tp),
        }
    }
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
pub(crate) struct ForkLocks {
    _stdout: std::io::StdoutLock<'static>,
    _stderr: std::io::StderrLock<'static>,
    _printing: std::sync::MutexGuard<'static, ()>,
}

impl ForkLocks {
    /// Takes the three locks. The panic lock is only tried, and everything
    /// let go and taken again if it is busy: a thread that panics while it
    /// prints holds stdout or stderr and then wants the panic lock.
    pub(crate) fn take() -> ForkLocks {
        loop {
            let stdout = std::io::stdout().lock();
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
            return ForkLocks {
                _stdout: stdout,
                _stderr: stderr,
                _printing: printing,
            };
        }
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
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_CLOSURE.with(Cell::get) {
                let location = info.location().map(|l| PanicLocation {
                    file: l.file().to_owned(),
                    line: l.line(),
                    column: l.column(),
                });
                PANIC_AT.with(|p| *p.borrow_mut() = location);
            } else {
                let _printing = PANIC_PRINTING.lock();
                previous(info);
            }
        }));
    });
}

/// The closure, handed to the runner's thread, and the frame it leaves.
struct Job<F> {
    f: Option<F>,
    frame: Option<Vec<u8>>,
}

/// Runs `f` in the runner and sends its frame to `result`; never returns.
///
/// `stdout` and `stderr` become fds 1 and 2. The closure runs on this
/// thread (`inline`) when the runner borrowed a clean TLS (see
/// [`spare_tls`]). Otherwise it runs on a fresh thread made with
/// `pthread_create`: the runner then has the forking test thread's TLS, with
/// that thread's thread-locals and libtest's capture, which in this copy
/// would swallow `println!` (threads made by std would inherit it); a raw
/// thread starts with fresh thread-locals and prints to fd 1, which the
/// test process forwards into the test's own output.
pub(crate) fn serve<F, T>(f: F, result: RawFd, stdout: RawFd, stderr: RawFd, inline: bool) -> !
where
    F: FnOnce() -> T,
    T: Serialize,
{
    if sys::dup2(stdout, 1).is_err() || sys::dup2(stderr, 2).is_err() {
        sys::exit(crate::runner::EXIT_SETUP);
    }
    RESULT_FD.store(result, std::sync::atomic::Ordering::Relaxed);
    let mut job = Job {
        f: Some(f),
        frame: None,
    };
    // SAFETY: attr is initialised by pthread_attr_init before use; job
    // outlives the thread, which we join.
    unsafe {
        if inline {
            closure_thread::<F, T>((&mut job as *mut Job<F>).cast());
        } else {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            let mut thread: libc::pthread_t = std::mem::zeroed();
            let started = libc::pthread_attr_init(&mut attr) == 0
                && libc::pthread_attr_setstacksize(&mut attr, 8 << 20) == 0
                && libc::pthread_create(
                    &mut thread,
                    &attr,
                    closure_thread::<F, T>,
                    (&mut job as *mut Job<F>).cast(),
                ) == 0;
            if started {
                libc::pthread_join(thread, std::ptr::null_mut());
            } else {
                // No thread: run here; output then follows this thread's
                // capture, everything else is the same.
                closure_thread::<F, T>((&mut job as *mut Job<F>).cast());
            }
        }
    }
    // The frame is sent from this thread, after the closure's thread has
    // ended: a process whose last act is a plain exit of its main thread
    // ends measurably faster (and with fewer multi-millisecond outliers)
    // than one that calls exit_group from a second thread.
    let _ = std::io::stdout().flush();
    let frame = job.frame.take().unwrap_or_default();
    let code = match sys::write_all(result, &frame) {
        Ok(()) => 0,
        Err(_) => crate::runner::EXIT_NO_CHANNEL,
    };
    sys::exit(code)
}

extern "C" fn closure_thread<F, T>(arg: *mut libc::c_void) -> *mut libc::c_void
where
    F: FnOnce() -> T,
    T: Serialize,
{
    // SAFETY: arg is the &mut Job<F> that serve() passed and keeps alive.
    let job = unsafe { &mut *arg.cast::<Job<F>>() };
    let f = job.f.take().expect("the closure runs once");
    IN_CLOSURE.with(|c| c.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f)).and_then(|value| {
        // A Serialize impl may panic too; report it like the closure's own.
        let encoded = panic::catch_unwind(AssertUnwindSafe(|| postcard::to_allocvec(&value)));
        // Dropping the value could panic or block; the process is about to
        // exit, so it is not dropped at all.
        std::mem::forget(value);
        encoded
    });
    let frame = match outcome {
        Ok(Ok(bytes)) => channel::encode_frame(Tag::Value, &bytes),
        Ok(Err(e)) => channel::encode_frame(Tag::EncodeFailed, e.to_string().as_bytes()),
        Err(payload) => {
            let message = payload_message(&*payload);
            std::mem::forget(payload);
            let report = PanicReport {
                message,
                location: PANIC_AT.with(|p| p.borrow_mut().take()),
            };
            let bytes = postcard::to_allocvec(&report).unwrap_or_default();
            channel::encode_frame(Tag::Panic, &bytes)
        }
    };
    IN_CLOSURE.with(|c| c.set(false));
    job.frame = Some(frame);
    std::ptr::null_mut()
}

/// The text of a panic payload, as std prints it.
fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// `pre_exec` hook of [`Sandbox::command`](crate::Sandbox::command): joins
/// the sandbox and forks, so that the program is exec'd inside the sandbox's
/// PID namespace; the forked-from process stays outside as a relay that
/// mirrors the program's exit status, and the program dies with it.
///
/// # Safety
///
/// Call only from `CommandExt::pre_exec`, i.e. in a child just forked by
/// std, before exec.
pub(crate) unsafe fn command_pre_exec(holder: RawFd, nstypes: libc::c_int) -> std::io::Result<()> {
    enter(holder, nstypes).map_err(std::io::Error::from_raw_os_error)?;
    // The relay's pipe: only the relay holds the write end, so the program
    // can tell, after arming PDEATHSIG, whether the relay already died.
    let mut alive = [0 as RawFd; 2];
    // SAFETY: alive is a live array of two fds.
    if unsafe { libc::pipe2(alive.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: we are single-threaded (std's fork child), see clone_fork.
    match unsafe { sys::clone_fork(0) }.map_err(std::io::Error::from_raw_os_error)? {
        sys::Forked::Child => {
            sys::close(alive[1]);
            sys::die_with_parent().map_err(std::io::Error::from_raw_os_error)?;
            let mut pfd = libc::pollfd {
                fd: alive[0],
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: pfd is one live pollfd; a zero timeout does not block.
            let n = unsafe { libc::poll(&mut pfd, 1, 0) };
            if n != 0 {
                // Hung up: the relay is gone already.
                sys::exit(crate::runner::EXIT_SETUP);
            }
            // Our read end; exec follows.
            sys::close(alive[0]);
            Ok(())
        }
        sys::Forked::Parent { pid, .. } => relay(pid, alive[1]),
    }
}

/// Waits for the program and leaves the same way it did.
fn relay(pid: libc::pid_t, alive: RawFd) -> ! {
    // Keep only the fds std's parent does not wait on: std waits for its
    // exec-error pipe to close, and that must happen at the program's exec,
    // not when the relay exits.
    let _ = sys::close_all_except(&[alive]);
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if sys::errno() != libc::EINTR {
            sys::exit(crate::runner::EXIT_SETUP);
        }
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: default disposition, no core file, then the same signal.
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

/// Runs `f` with every signal blocked on the calling thread, then restores
/// the mask: a thread or process that `f` starts begins with all signals
/// blocked, with no window in which a handler could run on it.
fn with_all_signals_blocked<R>(f: impl FnOnce() -> R) -> Result<R, i32> {
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
    let mut previous = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut previous),
    )
    .map_err(|e| e as i32)?;
    let result = f();
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    Ok(result)
}

/// The holder's arguments, kept at the top of its own stack, which lives
/// as long as the holder.
struct HolderArgs {
    steps: *const Step,
    len: usize,
    ready: RawFd,
    lifeline: RawFd,
}

/// The holder's stack: it runs very little (system calls on prepared data).
const HOLDER_STACK: usize = 256 << 10;

/// Clones the holder into new namespaces (`flags`) and runs the prepared
/// steps there. Returns the holder's pid, its pidfd and, where the holder
/// shares our memory, the stack it runs on, which must outlive it.
///
/// Where system calls need no libc ([`sys::CALLS_SHARE_NOTHING`]), the
/// holder shares the test process's memory (`CLONE_VM`) instead of getting
/// a copy: no page tables are copied at creation or freed at exit, and the
/// test process's own writes afterwards cause no copy-on-write faults. That
/// is what makes a sandbox's cost independent of how much memory the test
/// process has. The holder then runs only code of this module on its own
/// stack, with every signal blocked, and touches neither the heap nor
/// thread-local storage (not even `errno`); `steps` is read only until the
/// holder reports, which the caller waits for.
pub(crate) fn clone_holder(
    flags: libc::c_ulong,
    steps: &[Step],
    ready: RawFd,
    lifeline: RawFd,
) -> Result<(libc::pid_t, std::os::fd::OwnedFd, Option<sys::Stack>), i32> {
    let copy = || {
        // SAFETY: the child only runs holder_main, which follows the
        // after-fork rules of this module, and never returns.
        match unsafe { sys::clone_fork(flags | libc::CLONE_PIDFD as libc::c_ulong) }? {
            sys::Forked::Child => holder_main(steps, ready, lifeline),
            sys::Forked::Parent { pid, pidfd } => {
                Ok((pid, pidfd.expect("CLONE_PIDFD was set"), None))
            }
        }
    };
    if !sys::CALLS_SHARE_NOTHING {
        return copy();
    }
    let stack = sys::Stack::map(HOLDER_STACK)?;
    // Below the top, aligned for the struct and for a stack pointer (16).
    let room = std::mem::size_of::<HolderArgs>().next_multiple_of(64);
    let args_at = stack.top().wrapping_sub(room).cast::<HolderArgs>();
    // SAFETY: args_at lies inside the mapping (whose top is page-aligned),
    // 64-byte aligned, with room for the struct above it.
    unsafe {
        args_at.write(HolderArgs {
            steps: steps.as_ptr(),
            len: steps.len(),
            ready,
            lifeline,
        })
    };
    let flags = flags as libc::c_int | libc::CLONE_VM | libc::CLONE_PIDFD | libc::SIGCHLD;
    let mut pidfd: libc::c_int = -1;
    // The holder starts with every signal blocked and keeps it so: no
    // handler of the test process may run in a process that shares its
    // memory. Only SIGKILL, which cannot be blocked, ends it from outside.
    let (pid, clone_errno) = with_all_signals_blocked(|| {
        // SAFETY: the child starts in holder_entry on the fresh stack, below
        // its arguments; it shares our memory, and holder_entry keeps to the
        // rules above. The stack is returned to the caller, who keeps it
        // until the holder is reaped.
        let pid = unsafe {
            libc::clone(
                holder_entry,
                args_at.cast(),
                flags,
                args_at.cast(),
                &mut pidfd as *mut libc::c_int,
            )
        };
        (pid, sys::errno())
    })?;
    match pid {
        // A kernel that refuses this combination of flags (none known) may
        // still take the copying clone.
        _ if pid < 0 && clone_errno == libc::EINVAL => copy(),
        _ if pid < 0 => Err(clone_errno),
        _ => Ok((pid, sys::owned_fd(pidfd), Some(stack))),
    }
}

extern "C" fn holder_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: arg is the HolderArgs at the top of this process's stack,
    // written before it started. The steps it points to stay alive until
    // this process reports (see clone_holder).
    let (steps, ready, lifeline) = unsafe {
        let args = &*arg.cast::<HolderArgs>();
        (
            std::slice::from_raw_parts(args.steps, args.len),
            args.ready,
            args.lifeline,
        )
    };
    holder_main(steps, ready, lifeline)
}

/// The fds a runner needs, all prepared by the parent.
pub(crate) struct RunnerFds {
    pub(crate) result: RawFd,
    pub(crate) stdout: RawFd,
    pub(crate) stderr: RawFd,
}

/// What the runner needs, in the joiner's memory, which the runner shares
/// while the joiner waits for it (`CLONE_VFORK`).
struct Launch<F> {
    f: Option<F>,
    fds: RunnerFds,
    report: RawFd,
    /// The runner's pid in the test process's PID namespace, written by the
    /// kernel (`CLONE_PARENT_SETTID`) before the runner starts.
    pid: libc::pid_t,
    /// The locks taken before the fork; the runner releases them.
    locks: Option<ForkLocks>,
    /// The thread pointer the runner starts with, if not the joiner's (see
    /// [`spare_tls`]).
    tls: Option<usize>,
}

/// The joiner's second half: starts the runner as a sibling
/// (`CLONE_PARENT`) that shares the joiner's address space (`CLONE_VM`)
/// instead of copying it, while the joiner sleeps (`CLONE_VFORK`) until the
/// runner exits, then exits too. The joiner is a private, single-threaded
/// copy of the test process, so the runner inherits consistent allocator
/// and libc state without a second copy of the page tables.
fn launch_runner<F, T>(launch: &mut Launch<F>) -> !
where
    F: FnOnce() -> T,
    T: Serialize,
{
    // The closure may run on this stack (see serve): as large as a main
    // thread's, committed only as it is touched, with a guard page below.
    // It is never unmapped: it belongs to this process's private memory,
    // which goes when the runner and then the joiner exit.
    const STACK: usize = 8 << 20;
    let stack = match sys::Stack::map(STACK) {
        Ok(stack) => std::mem::ManuallyDrop::new(stack),
        Err(errno) => {
            report(launch.report, 2, errno);
            sys::exit(1);
        }
    };
    let mut flags =
        libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PARENT | libc::CLONE_PARENT_SETTID;
    if launch.tls.is_some() {
        flags |= libc::CLONE_SETTLS;
    }
    let tls = launch.tls.unwrap_or(0) as *mut libc::c_void;
    let pid_slot: *mut libc::pid_t = &mut launch.pid;
    // SAFETY: the stack grows down from the end of the mapping; the child
    // runs runner_entry with `launch`, which stays alive because this frame
    // is suspended until the child exits (CLONE_VFORK) and the child never
    // returns.
    let ret = unsafe {
        libc::clone(
            runner_entry::<F, T>,
            stack.top().cast(),
            flags,
            (launch as *mut Launch<F>).cast(),
            pid_slot,
            tls,
            std::ptr::null_mut::<libc::pid_t>(),
        )
    };
    if ret < 0 {
        report(launch.report, 2, sys::errno());
        sys::exit(1);
    }
    sys::exit(0)
}

extern "C" fn runner_entry<F, T>(arg: *mut libc::c_void) -> libc::c_int
where
    F: FnOnce() -> T,
    T: Serialize,
{
    // SAFETY: arg is the Launch the joiner keeps alive while suspended.
    let launch = unsafe { &mut *arg.cast::<Launch<F>>() };
    // SAFETY: the kernel wrote the pid there before this process started.
    let pid = unsafe { std::ptr::read_volatile(&launch.pid) };
    report(launch.report, 0, pid);
    drop(launch.locks.take());
    let f = launch.f.take().expect("the runner starts once");
    let fds = &launch.fds;
    serve(f, fds.result, fds.stdout, fds.stderr, launch.tls.is_some())
}

/// Forks the joiner, which starts the runner for `f`. Returns the joiner's
/// pid; the joiner reports the runner's pid on `plan.report` and stays, asleep,
/// until the runner exits.
pub(crate) fn fork_runner<F, T>(plan: &JoinPlan, fds: RunnerFds, f: F) -> Result<libc::pid_t, i32>
where
    F: FnOnce() -> T,
    T: Serialize,
{
    install_panic_hook();
    // The runner borrows a clean TLS: the closure's thread-locals start
    // fresh, as on a new thread, and are free of libtest's capture. Without
    // one, serve() starts a thread for the closure.
    let tls = spare_tls();
    let locks = ForkLocks::take();
    // SAFETY: glibc's fork makes the child's allocator and libc state
    // consistent; join() then makes only system calls, and the runner runs
    // user code by design (see the crate docs).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: called first thing after fork, as join() requires.
            unsafe { join(plan) };
            let mut launch = Launch {
                f: Some(f),
                fds,
                report: plan.report,
                pid: 0,
                locks: Some(locks),
                tls,
            };
            launch_runner::<F, T>(&mut launch)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(child.as_raw()),
        Err(e) => Err(e as i32),
    }
}

/// Makes `cmd` start its program inside the sandbox whose holder is behind
/// `holder` (a pidfd the command keeps for as long as it lives).
pub(crate) fn enter_on_exec(
    cmd: &mut std::process::Command,
    holder: Result<std::os::fd::OwnedFd, i32>,
    nstypes: libc::c_int,
) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let holder = std::sync::Arc::new(holder);
    // SAFETY: command_pre_exec makes only system calls on prepared data;
    // the closure runs in std's fork child, before exec.
    unsafe {
        cmd.pre_exec(move || match &*holder {
            Ok(fd) => command_pre_exec(fd.as_raw_fd(), nstypes),
            Err(errno) => Err(std::io::Error::from_raw_os_error(*errno)),
        });
    }
}

/// The fd of the result channel in a runner; -1 elsewhere.
static RESULT_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

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
    match unsafe { sys::clone_fork(flags) }? {
        sys::Forked::Child => sys::exit(0),
        sys::Forked::Parent { pid, .. } => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && sys::errno() == libc::EINTR {
            }
            Ok(())
        }
    }
}

/// Forks a joiner that enters the user namespace of the holder behind
/// `owner` and clones, as a sibling (`CLONE_PARENT`), a new holder with
/// `flags` (no `CLONE_NEWUSER`): a sandbox that shares `owner`'s user
/// namespace. The joiner reports the new holder's pid on `report`.
pub(crate) fn fork_holder_in(
    owner: RawFd,
    flags: libc::c_ulong,
    steps: &[Step],
    ready: RawFd,
    lifeline: RawFd,
    report_fd: RawFd,
) -> Result<libc::pid_t, i32> {
    // SAFETY: the joiner makes only system calls on prepared data; the
    // holder it clones runs holder_main, which follows this module's rules.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            if let Err(errno) = sys::setns(sys::borrow_static(owner), libc::CLONE_NEWUSER) {
                report(report_fd, 1, errno);
                sys::exit(1);
            }
            // SAFETY: the joiner is single-threaded; the child only runs
            // holder_main.
            match unsafe { sys::clone_fork(flags | libc::CLONE_PARENT as libc::c_ulong) } {
                Ok(sys::Forked::Child) => holder_main(steps, ready, lifeline),
                Ok(sys::Forked::Parent { pid, .. }) => {
                    report(report_fd, 0, pid);
                    sys::exit(0)
                }
                Err(errno) => {
                    report(report_fd, 2, errno);
                    sys::exit(1)
                }
            }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(child.as_raw()),
        Err(e) => Err(e as i32),
    }
}
