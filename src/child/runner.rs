//! The runner's side of a run: the user's closure, its panic, its frame.
//!
//! # Safety
//!
//! Runs in the runner, a process of the sandbox whose memory is a private
//! copy of the test process's; see the parent module.
#![allow(unsafe_code)]

use std::io::Write;
use std::os::fd::RawFd;
use std::panic::{self, AssertUnwindSafe};

use serde::Serialize;

use super::RESULT_FD;
use crate::fork::panic_hook::{IN_CLOSURE, PANIC_AT};
use crate::proto::frame::{self, PanicReport, Tag};
use crate::proto::reports::{EXIT_NO_CHANNEL, EXIT_SENT_MADE_SOME, EXIT_SETUP};
use crate::sys;

/// The closure, handed to the runner's thread, and the frame it leaves.
struct Job<F> {
    f: Option<F>,
    frame: Option<Vec<u8>>,
    /// A spawned closure: print its panic when it happens.
    background: bool,
}

/// Runs `f` in the runner and sends its frame to `result`; never returns.
///
/// `stdout` and `stderr` become fds 1 and 2. `exit_stack` is the top of
/// the stack of the task that frees this process's memory at the end (see
/// [`stacks`](crate::fork::stack::stacks)). The closure runs on this
/// thread (`inline`) when the runner borrowed a clean TLS (see
/// [`spare_tls`]). Otherwise it runs on a fresh thread made with
/// `pthread_create`: the runner then has the forking test thread's TLS, with
/// that thread's thread-locals and libtest's capture, which in this copy
/// would swallow `println!` (threads made by std would inherit it); a raw
/// thread starts with fresh thread-locals and prints to fd 1, which the
/// test process forwards into the test's own output.
///
/// # Safety
///
/// Only in a child process after fork (or clone) of the test process: it
/// changes the calling process for good (its fds 1 and 2) and exits.
pub(crate) unsafe fn serve<F, T>(
    f: F,
    result: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    inline: bool,
    background: bool,
    exit_stack: usize,
) -> !
where
    F: FnOnce() -> T,
    T: Serialize,
{
    // SAFETY: after fork, this process owns its fd table; 1 and 2 are
    // meant to be replaced.
    if unsafe { sys::dup2(stdout, 1) }.is_err() || unsafe { sys::dup2(stderr, 2) }.is_err() {
        sys::exit(EXIT_SETUP);
    }
    // The test's stdin may be the caller's terminal: a closure could read
    // what is typed there, change its modes or its size (which signals the
    // caller's foreground job). A closure reads nothing from it.
    if sys::stdin_from_dev_null().is_err() {
        sys::exit(EXIT_SETUP);
    }
    // Only fds 1 and 2 stay pointed at the output pipes.
    for fd in [stdout, stderr] {
        if fd > 2 && fd != result {
            // SAFETY: the parent's pipe end, which nothing here uses again.
            unsafe { sys::close(fd) };
        }
    }
    RESULT_FD.store(result, std::sync::atomic::Ordering::Relaxed);
    let mut job = Job {
        f: Some(f),
        frame: None,
        background,
    };
    if inline {
        // On the runners' stack: a deep recursion that runs past its end
        // says so (its own exit status) rather than dying of a bare
        // SIGSEGV. The exit task's stack, unused until the closure has
        // returned, holds the handler meanwhile.
        if let Ok(stacks) = crate::fork::stack::stacks() {
            let (alt_low, alt_size) = stacks.exit_stack();
            // SAFETY: the exit task's stack is this process's copy of a
            // mapping made before the fork, unused until hand_over_teardown
            // (after the closure, when no fault can come).
            let _ = unsafe {
                sys::exit_on_stack_overflow(
                    stacks.runner_bottom(),
                    result,
                    &OVERFLOW_FRAME,
                    EXIT_SENT_MADE_SOME,
                    alt_low,
                    alt_size,
                )
            };
        }
        closure_thread::<F, T>((&mut job as *mut Job<F>).cast());
    } else {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        let attr = attr.as_mut_ptr();
        let mut thread: libc::pthread_t = 0;
        // SAFETY: initialises the attributes object at `attr`, live on
        // this stack.
        let started = unsafe { libc::pthread_attr_init(attr) } == 0
            // SAFETY: attr is initialised; the size is a plain number.
            && unsafe { libc::pthread_attr_setstacksize(attr, 8 << 20) } == 0
            // SAFETY: attr is initialised; `job` outlives the thread, which
            // is joined below before `job` is touched again.
            && unsafe {
                libc::pthread_create(
                    &mut thread,
                    attr,
                    closure_thread::<F, T>,
                    (&mut job as *mut Job<F>).cast(),
                )
            } == 0;
        if started {
            // SAFETY: `thread` was started above, is joinable, and is
            // joined once.
            unsafe { libc::pthread_join(thread, std::ptr::null_mut()) };
        } else {
            // No thread: run here; output then follows this thread's
            // capture, everything else is the same.
            closure_thread::<F, T>((&mut job as *mut Job<F>).cast());
        }
    }
    // The frame is sent from this thread, after the closure's thread has
    // ended: a process whose last act is a plain exit of its main thread
    // ends measurably faster (and with fewer multi-millisecond outliers)
    // than one that calls exit_group from a second thread.
    let _ = std::io::stdout().flush();
    let frame = job.frame.take().unwrap_or_default();
    // SAFETY: the result fd stays open until this process exits.
    let sent = sys::write_all(unsafe { sys::borrow_static(result) }, &frame).is_ok();
    // SAFETY: serve's caller vouches this is a runner, about to exit.
    let made_nothing = unsafe { hand_over_teardown(exit_stack) };
    // The exit status tells the test process whether the run can have left
    // anything running, so that it looks (a read of /proc per child of the
    // init process) only when it can.
    sys::exit(match (sent, made_nothing) {
        (true, true) => 0,
        (true, false) => EXIT_SENT_MADE_SOME,
        (false, _) => EXIT_NO_CHANNEL,
    })
}

/// What a runner sends when its closure overflows its stack: the
/// handler (`sys::exit_on_stack_overflow`) only writes it, and the test
/// process reads `Error::StackOverflow` from it (a frame, not an exit
/// status, which a closure could give too).
static OVERFLOW_FRAME: [u8; crate::proto::frame::HEADER_LEN + 8] =
    crate::proto::frame::stack_overflow_frame(crate::fork::stack::Stacks::RUNNER_SIZE);

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
        Ok(Ok(bytes)) => frame::encode_frame(Tag::Value, &bytes),
        Ok(Err(e)) => frame::encode_frame(Tag::EncodeFailed, e.to_string().as_bytes()),
        Err(payload) => {
            let message = payload_message(&*payload);
            std::mem::forget(payload);
            let report = PanicReport {
                message,
                location: PANIC_AT.with(|p| p.borrow_mut().take()),
            };
            if job.background {
                // Now, into the test's output: a join may come much later.
                let at = report
                    .location
                    .as_ref()
                    .map_or_else(|| "<unknown location>".to_owned(), |l| l.to_string());
                eprintln!(
                    "hermetic: a spawned closure panicked at {at}:\n{}\n(its process has ended; \
                     join() returns this panic)",
                    report.message
                );
            }
            let bytes = postcard::to_allocvec(&report).unwrap_or_default();
            frame::encode_frame(Tag::Panic, &bytes)
        }
    };
    IN_CLOSURE.with(|c| c.set(false));
    job.frame = Some(frame);
    std::ptr::null_mut()
}

/// The text of a panic payload, as std prints it.
pub(crate) fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Leaves the teardown of this process's memory to a task of the sandbox
/// that outlives it by a moment, so that the test process sees the run end
/// without waiting for it.
///
/// Freeing this copy of the test process's page tables takes as long as
/// copying them did (about 50 us for a small test process, milliseconds for
/// a large one), and it happens when the last task using the memory exits.
/// A task cloned with `CLONE_VM` (inside the sandbox, like this one) that
/// waits for this process's death (`PR_SET_PDEATHSIG`) is that last task:
/// this process exits at once, the test process reaps it, and the task
/// (named `hermetic-exit`) frees the memory on another CPU and is reaped by
/// the sandbox's init process. If it cannot be made, this process frees the
/// memory itself.
///
/// # Safety
///
/// Only in a child process after fork (or clone) of the test process: it
/// changes the calling process for good (it is about to exit).
///
/// Returns whether no process or thread was made in the sandbox between
/// this one and that task: a PID namespace hands out its pids in order, so
/// the task's pid (in the sandbox) is this process's plus one exactly
/// then. False also if the task could not be made, or the pids wrapped
/// around: the test process then looks for what the run left.
unsafe fn hand_over_teardown(exit_stack: usize) -> bool {
    /// Blocks every signal, arms the parent-death signal, and waits for it
    /// (or leaves at once if the parent is already gone). System calls only.
    extern "C" fn last(parent: *mut libc::c_void) -> libc::c_int {
        let all: u64 = !0;
        // SAFETY: the kernel reads the 8-byte set from a live local and
        // writes no old set (null); a signal mask is per task, so the
        // runner's, whose memory this task shares, is left as it is.
        let _ = unsafe {
            sys::call(
                libc::SYS_rt_sigprocmask,
                [
                    libc::SIG_BLOCK as usize,
                    &all as *const u64 as usize,
                    0,
                    8,
                    0,
                    0,
                ],
            )
        };
        sys::set_name(c"hermetic-exit");
        let _ = sys::die_with_parent();
        if sys::getppid() != parent as libc::pid_t {
            sys::exit(0);
        }
        sys::wait_forever()
    }
    let me = sys::getpid();
    let top = exit_stack as *mut u8;
    // Named before the clone, so that the task has its name from its first
    // moment (this process, about to exit, takes it too).
    sys::set_name(c"hermetic-exit");
    // SAFETY: the task runs `last` on its own stack, makes only system
    // calls and never returns; sharing the files and the filesystem
    // context spares copying them.
    let task = unsafe {
        libc::clone(
            last,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_FS | libc::SIGCHLD,
            me as *mut libc::c_void,
        )
    };
    me > 0 && task == me + 1
}
