//! A run's joiner: the process that takes a closure into a sandbox.
//!
//! Forked from the test process (glibc's `fork`, so the copy's allocator
//! and libc state are consistent for the user code that will run), it
//! joins the sandbox's namespaces, closes every fd of hermetic's it was not
//! given, and clones the runner: a sibling (`CLONE_PARENT`, so the test
//! process waits for it directly) that shares the joiner's private memory
//! (`CLONE_VM`: no second copy of the page tables). Then it reports the
//! runner's pid and exits. The runner waits until the joiner is gone
//! before running anything of the user's: while a closure runs, no process
//! outside the sandbox's PID namespace shares its memory.
//!
//! # Safety
//!
//! See the parent module: system calls only until the closure starts.
#![allow(unsafe_code)]

use std::os::fd::{IntoRawFd, RawFd};

use serde::Serialize;

use crate::fork::locks::ForkLocks;
use crate::fork::tls::{self, SpareTls};
use crate::proto::reports::{EXIT_SETUP, JoinReport, JoinStep};
use crate::proto::wire;
use crate::sys;

/// What a run's joiner needs, prepared by the parent.
pub(crate) struct JoinPlan<'a> {
    /// The init process's pidfd.
    pub(crate) init_pidfd: RawFd,
    /// `CLONE_NEW*` flags of the namespaces to join.
    pub(crate) nstypes: libc::c_int,
    /// Write end of the joiner's report pipe.
    pub(crate) report: RawFd,
    /// fds of hermetic's that the runner is given (a network's namespaces
    /// for its switch), besides its own pipes.
    pub(crate) keep: &'a [RawFd],
    /// What the runner is put under: a user without capabilities, the
    /// sandbox's cgroups and rlimits.
    pub(crate) confine: &'a crate::child::confine::Confinement,
}

/// What a runner needs, all prepared by the parent: its fds, and whether
/// it runs in the background.
pub(crate) struct RunnerSetup {
    pub(crate) result: RawFd,
    pub(crate) stdout: RawFd,
    pub(crate) stderr: RawFd,
    /// A spawned closure: a panic is printed when it happens, not only
    /// returned by a `join` that may come much later, or never.
    pub(crate) background: bool,
}

/// Held by a child after fork: should a panic unwind through it, the
/// child exits at once instead of going on in the parent's code (a panic in
/// a fork made inside a closure is recorded, not printed, so it would
/// otherwise pass unseen).
struct ExitOnUnwind;

impl Drop for ExitOnUnwind {
    fn drop(&mut self) {
        sys::exit(EXIT_SETUP)
    }
}

fn report(fd: RawFd, msg: [u8; 8]) {
    // SAFETY: the report pipe stays open until the joiner exits.
    let _ = sys::write_all(unsafe { sys::borrow_static(fd) }, &msg);
}

fn fail(fd: RawFd, step: JoinStep, errno: i32) -> ! {
    report(fd, JoinReport::failed(step, errno));
    sys::exit(1)
}

/// Joins the namespaces `nstypes` of the init process behind the pidfd `init_pidfd`,
/// then goes back to the directory the caller was in (`cwd`, read before
/// the fork), or `/` if that does not exist inside. System calls only.
///
/// # Safety
///
/// Only in a child process after fork (or clone) of the test process: it
/// changes the calling process for good (its namespaces and directory).
pub(crate) unsafe fn enter(
    init_pidfd: RawFd,
    nstypes: libc::c_int,
    cwd: Option<&std::ffi::CStr>,
) -> Result<(), i32> {
    // setns into a mount namespace moves us to its root; we go back by
    // path (never by fd, which would lead out of the sandbox's mount tree).
    // SAFETY: the init process's pidfd stays open in this child (after fork)
    // until it exits.
    sys::setns(unsafe { sys::borrow_static(init_pidfd) }, nstypes)?;
    if cwd.is_none_or(|cwd| rustix::process::chdir(cwd).is_err()) {
        let _ = rustix::process::chdir(c"/");
    }
    Ok(())
}

/// [`enter`], going back to the directory the calling process is in now
/// (read with `getcwd` into a stack buffer: a command's `pre_exec` runs
/// after std has changed to the command's directory).
///
/// # Safety
///
/// As [`enter`].
pub(crate) unsafe fn enter_here(init_pidfd: RawFd, nstypes: libc::c_int) -> Result<(), i32> {
    let mut cwd = [0u8; libc::PATH_MAX as usize];
    // SAFETY: cwd is a live buffer of the given size.
    let have_cwd = !unsafe { libc::getcwd(cwd.as_mut_ptr().cast(), cwd.len()) }.is_null();
    let cwd = have_cwd
        .then(|| std::ffi::CStr::from_bytes_until_nul(&cwd).ok())
        .flatten();
    // SAFETY: the caller's guarantee.
    unsafe { enter(init_pidfd, nstypes, cwd) }
}

/// Joins the sandbox's session keyring, made by its init program, by name:
/// the test process's keyring stays out of reach. Hosts whose seccomp
/// filter refuses `keyctl` have no keyring to reach either.
///
/// # Safety
///
/// Only in a child process after fork (or clone) of the test process: it
/// changes the calling process for good (its session keyring).
pub(crate) unsafe fn join_keyring() {
    // SAFETY: the name is a NUL-terminated constant.
    let _ = unsafe {
        sys::call(
            libc::SYS_keyctl,
            [
                libc::KEYCTL_JOIN_SESSION_KEYRING as usize,
                wire::KEYRING_NAME.as_ptr() as usize,
                0,
                0,
                0,
                0,
            ],
        )
    };
}

/// Moves the calling process into the sandbox's cgroups, and sets its
/// rlimits if `rlimits` (capabilities are the caller's to drop, once it has
/// joined the sandbox). After fork: system calls only.
pub(crate) fn confine(c: &crate::child::confine::Confinement, rlimits: bool) -> Result<(), i32> {
    for &fd in &c.cgroup_procs {
        // SAFETY: the fds stay open in this child until it is done.
        sys::write_all(unsafe { sys::borrow_static(fd) }, b"0")?;
    }
    if rlimits { c.rlimits.set() } else { Ok(()) }
}

/// Becomes user `uid` and group `gid` of the sandbox (no supplementary
/// groups, where the namespace allows changing them), which also gives up
/// every capability. System calls only: the kernel's, which change the
/// calling thread alone (glibc's `setresuid` signals every thread of the
/// process to change them all, which is not safe after fork); callers are
/// single-threaded.
pub(crate) fn become_user(uid: u32, gid: u32) -> Result<(), i32> {
    use rustix::process::{Gid, Uid};
    let errno = |e: rustix::io::Errno| e.raw_os_error();
    // Refused where the namespace denies setgroups (one id): then there
    // are no supplementary groups to drop anyway.
    let _ = rustix::thread::set_thread_groups(&[]);
    let gid = Gid::from_raw(gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(errno)?;
    let uid = Uid::from_raw(uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(errno)
}

/// Gives up every capability, as a process of a non-root user has none:
/// effective, permitted, inheritable and ambient sets emptied (the runner
/// and what it starts inherit that). System calls only.
pub(crate) fn drop_capabilities() -> Result<(), i32> {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| e.raw_os_error())?;
    let _ = rustix::thread::clear_ambient_capability_set();
    Ok(())
}

/// Closes every fd in `ours` (hermetic's, as listed at the fork) that is
/// in neither `keep` nor `also`.
///
/// # Safety
///
/// Only in a child after fork: the copies of the test process's owners of
/// these fds never run here.
pub(crate) unsafe fn close_ours(ours: &[RawFd], keep: &[RawFd], also: &[RawFd]) {
    for &fd in ours {
        if !keep.contains(&fd) && !also.contains(&fd) {
            // SAFETY: the caller's guarantee.
            unsafe { sys::close(fd) };
        }
    }
}

/// What the runner starts with, at the top of its own stack.
struct RunnerStart<F> {
    f: F,
    fds: RunnerSetup,
    /// A pidfd of the joiner, readable once it has exited.
    joiner: RawFd,
    report: RawFd,
    /// The locks taken before the fork; the runner releases them.
    locks: ForkLocks,
    /// The thread pointer the runner starts with, if not the joiner's (see
    /// [`spare_tls`](crate::fork::tls::spare_tls)).
    tls: Option<SpareTls>,
    /// What the runner puts itself under before the closure.
    boundary: Boundary,
    /// The tops of the runner's stack and of the exit task's (see
    /// [`stacks`](crate::fork::stack::stacks)): this process's copies.
    stacks: crate::fork::stack::Stacks,
}

/// What a runner, or a command's program, puts itself under before any
/// code of the user's runs: a session of its own, the seccomp filter, a
/// user without capabilities, the rlimits. Prepared before the fork.
#[derive(Clone, Copy)]
pub(crate) struct Boundary {
    filter: &'static [libc::sock_filter],
    drop_caps: bool,
    set_ids: Option<(u32, u32)>,
    rlimits: crate::child::confine::Rlimits,
}

impl Boundary {
    pub(crate) fn of(c: &crate::child::confine::Confinement) -> Boundary {
        Boundary {
            filter: c.filter,
            drop_caps: c.drop_caps,
            set_ids: c.set_ids,
            rlimits: c.rlimits,
        }
    }

    /// Puts the calling process under it, but for the rlimits (see
    /// [`set_rlimits`](Self::set_rlimits)). In this order: a new session
    /// (no controlling terminal, a process group of its own, so that
    /// `kill(0)` reaches only the sandbox); the filter, while the process
    /// still holds `CAP_SYS_ADMIN` in the sandbox's user namespace; then the
    /// user and capabilities. System calls only.
    pub(crate) fn enter(&self) -> Result<(), (JoinStep, i32)> {
        sys::setsid().map_err(|e| (JoinStep::Session, e))?;
        sys::install_filter(self.filter).map_err(|e| (JoinStep::Filter, e))?;
        if self.drop_caps {
            drop_capabilities().map_err(|e| (JoinStep::Confine, e))?;
        }
        if let Some((uid, gid)) = self.set_ids {
            become_user(uid, gid).map_err(|e| (JoinStep::Confine, e))?;
        }
        Ok(())
    }

    /// Sets the sandbox's rlimits on the calling process. An address space
    /// too small for what a copy of the test process already maps fails
    /// allocations at once: that is the limit's doing.
    pub(crate) fn set_rlimits(&self) {
        let _ = self.rlimits.set();
    }
}

/// Sends, in place of the closure's frame, the step of the runner's own
/// setup that failed, and exits. System calls only.
fn setup_failed(result: RawFd, step: JoinStep, errno: i32) -> ! {
    let frame = crate::proto::frame::setup_failed_frame(step, errno);
    // SAFETY: the result fd stays open until this process exits.
    let _ = sys::write_all(unsafe { sys::borrow_static(result) }, &frame);
    sys::exit(EXIT_SETUP)
}

/// Forks the joiner, which starts the runner for `f`. Returns the joiner's
/// pid; the joiner reports the runner's pid on `plan.report` and exits.
pub(crate) fn fork_runner<F, T>(
    plan: &JoinPlan<'_>,
    fds: RunnerSetup,
    f: F,
) -> Result<libc::pid_t, i32>
where
    F: FnOnce() -> T,
    T: Serialize,
{
    crate::fork::panic_hook::install_panic_hook();
    // The runner borrows a clean TLS: the closure's thread-locals start
    // fresh, as on a new thread, and are free of libtest's capture. Without
    // one, serve() starts a thread for the closure.
    let tls = tls::spare_tls();
    let stacks = crate::fork::stack::stacks()?;
    // Where to go back to once inside: read now, as the joiner would have
    // (it could only use a buffer on its stack, a page more to copy).
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|dir| std::ffi::CString::new(dir.into_os_string().into_encoded_bytes()).ok());
    let locks = ForkLocks::take();
    // SAFETY: glibc's fork makes the child's allocator and libc state
    // consistent; the joiner then makes only system calls, and the runner
    // runs user code by design (see the crate docs).
    match unsafe { libc::fork() } {
        0 => {
            let _never_unwind = ExitOnUnwind;
            // A new process, whatever pid it gets (see process_identity).
            sys::note_forked();
            // Before it enters: this copy of the test process, and the
            // runner that will share its memory, are closed to the
            // sandbox's processes (ptrace, /proc/PID/mem and fd,
            // pidfd_getfd) from the moment they are inside, closure
            // included (see the crate docs).
            if let Err(errno) = sys::set_not_dumpable() {
                fail(plan.report, JoinStep::Dumpable, errno);
            }
            // SAFETY: this is the joiner, just forked.
            if let Err(errno) = unsafe { enter(plan.init_pidfd, plan.nstypes, cwd.as_deref()) } {
                fail(plan.report, JoinStep::Enter, errno);
            }
            // SAFETY: the joiner, just forked and now inside: its session
            // keyring is its own copy's to change.
            unsafe { join_keyring() };
            // The rlimits are the runner's, set once it has its stack (an
            // address-space limit could refuse that).
            // Capabilities and ids are the runner's to give up, once it
            // has installed the seccomp filter, which takes CAP_SYS_ADMIN.
            if let Err(errno) = confine(plan.confine, false) {
                fail(plan.report, JoinStep::Confine, errno);
            }
            let keep = [plan.report, fds.result, fds.stdout, fds.stderr];
            // SAFETY: the joiner is a child after fork.
            unsafe { close_ours(locks.ours(), &keep, plan.keep) };
            let joiner = sys::pidfd_open(sys::getpid())
                .map(IntoRawFd::into_raw_fd)
                .unwrap_or_else(|e| fail(plan.report, JoinStep::Watch, e));
            // SAFETY: the joiner, a child just forked from the test
            // process, which exits at the end of launch_runner.
            unsafe {
                launch_runner::<F, T>(RunnerStart {
                    f,
                    fds,
                    joiner,
                    report: plan.report,
                    locks,
                    tls,
                    boundary: Boundary::of(plan.confine),
                    stacks,
                })
            }
        }
        -1 => Err(sys::errno()),
        child => Ok(child),
    }
}

/// The joiner's second half: puts the launch at the top of the runner's
/// stack (its copy of the one mapped before the fork), clones the runner,
/// reports its pid and exits. The runner shares this
/// process's memory until it exits, which it waits for.
///
/// # Safety
///
/// Only in a child process after fork (or clone) of the test process: it
/// changes the calling process for good (it exits).
unsafe fn launch_runner<F, T>(launch: RunnerStart<F>) -> !
where
    F: FnOnce() -> T,
    T: Serialize,
{
    let report_fd = launch.report;
    let room = std::mem::size_of::<RunnerStart<F>>()
        .next_multiple_of(std::mem::align_of::<RunnerStart<F>>().max(64));
    let at = launch.stacks.runner.wrapping_sub(room) as *mut RunnerStart<F>;
    let mut flags = libc::CLONE_VM | libc::CLONE_PARENT;
    if launch.tls.is_some() {
        // The borrowed TCB gets the runner's own thread id, written by the
        // kernel before the runner runs (see SpareTls).
        flags |= libc::CLONE_SETTLS | libc::CLONE_CHILD_SETTID;
    }
    let tls = launch.tls.map_or(0, |t| t.tp) as *mut libc::c_void;
    let tid_slot = launch.tls.map_or(std::ptr::null_mut(), |t| t.tid_slot());
    // SAFETY: `at` lies inside the stack mapping, aligned for RunnerStart<F>, with
    // room above it; the runner takes the value from there, and this
    // process never touches it again.
    unsafe { at.write(launch) };
    // SAFETY: the runner starts in runner_entry on the new stack, below its
    // launch, and never returns. Without CLONE_VFORK, this process goes on
    // at once: it only reports and exits, touching nothing the runner uses.
    let ret = unsafe {
        libc::clone(
            runner_entry::<F, T>,
            at.cast(),
            flags,
            at.cast(),
            std::ptr::null_mut::<libc::pid_t>(),
            tls,
            tid_slot,
        )
    };
    if ret < 0 {
        let errno = sys::errno();
        if errno == libc::EPERM {
            // A filter refuses CLONE_PARENT: this process is itself in a
            // sandbox (a sandbox made inside a closure, or by a test under
            // isolate_test). SAFETY: the clone failed, so the launch at
            // `at` was never read; it is taken back, once.
            unsafe { parent_runner::<F, T>(at.read()) }
        }
        fail(report_fd, JoinStep::CloneRunner, errno);
    }
    report(report_fd, JoinReport::started(ret));
    sys::exit(0)
}

/// The joiner's second half where `CLONE_PARENT` is refused (by hermetic's
/// own filter, in a sandbox inside a sandbox): the runner is a plain fork
/// of this process, which stays as its parent, outside the sandbox's PID
/// namespace, and leaves as the runner did (code or signal), so that the
/// test process reads the runner's end in this process's. It reports its
/// own pid as the runner's, and closes the report pipe at once: the test
/// process waits for the report or that hang-up, not for its exit.
///
/// # Safety
///
/// As [`launch_runner`].
unsafe fn parent_runner<F, T>(launch: RunnerStart<F>) -> !
where
    F: FnOnce() -> T,
    T: Serialize,
{
    let report_fd = launch.report;
    // SAFETY: this joiner is single-threaded (a fork child): glibc's fork
    // leaves the runner's allocator consistent.
    match unsafe { libc::fork() } {
        0 => {
            let _never_unwind = ExitOnUnwind;
            // A new process, whatever pid it gets (see process_identity).
            sys::note_forked();
            // SAFETY: the runner's copy of the joiner's pidfd, a raw fd
            // owned by no Rust object, which the runner never uses.
            unsafe { sys::close(launch.joiner) };
            // SAFETY: the runner's copy of the joiner's report pipe, a raw
            // fd owned by no Rust object, which the runner never uses.
            unsafe { sys::close(report_fd) };
            // Dies with this joiner (killed by the test process on a
            // timeout, say).
            if sys::die_with_parent().is_err() {
                sys::exit(EXIT_SETUP);
            }
            // A fork has this thread's TLS (the test thread's): the
            // closure gets a thread of its own.
            let entered = launch.boundary.enter();
            // SAFETY: this is the runner, just forked.
            unsafe { run_closure::<F, T>(launch, false, entered) }
        }
        -1 => fail(report_fd, JoinStep::CloneRunner, sys::errno()),
        runner => {
            // SAFETY: a forked child with an fd table of its own: nothing
            // but the report pipe is needed, and that only until the report
            // is sent.
            let _ = unsafe { sys::close_all_except(&[report_fd]) };
            report(report_fd, JoinReport::started(sys::getpid()));
            // SAFETY: the report is sent; nothing uses this fd again.
            unsafe { sys::close(report_fd) };
            match sys::reap_raw(runner) {
                Ok(status) => super::leave_as(status),
                Err(_) => sys::exit(EXIT_SETUP),
            }
        }
    }
}

extern "C" fn runner_entry<F, T>(arg: *mut libc::c_void) -> libc::c_int
where
    F: FnOnce() -> T,
    T: Serialize,
{
    // SAFETY: arg is the RunnerStart the joiner wrote at the top of this stack
    // and never touches again; it is read once.
    let launch = unsafe { arg.cast::<RunnerStart<F>>().read() };
    // The boundary first, while the joiner reports and exits on another
    // CPU: installing the filter is the longest step of a run's own (tens
    // of microseconds: the kernel compiles it, and runs it for every
    // system call number to cache what it always allows).
    let entered = launch.boundary.enter();
    // Nothing of the user's runs while the joiner, a process outside the
    // sandbox, still shares this memory. It only reports and exits.
    // SAFETY: the joiner's pidfd was opened for this process, and stays
    // open until it is closed just below.
    sys::wait_readable(unsafe { sys::borrow_static(launch.joiner) });
    // SAFETY: the joiner's pidfd, a raw fd owned by no Rust object, never
    // used again.
    unsafe { sys::close(launch.joiner) };
    // SAFETY: the report pipe, a raw fd owned by no Rust object, which
    // only the joiner writes to: never used here again.
    unsafe { sys::close(launch.report) };
    if let Some(tls) = launch.tls {
        // SAFETY: this is the runner, the only task that uses this copy of
        // the borrowed TCB.
        unsafe { adopt_tcb(tls) };
    }
    let inline = launch.tls.is_some();
    // SAFETY: this is the runner, a clone of the joiner.
    unsafe { run_closure::<F, T>(launch, inline, entered) }
}

/// The runner, once under the sandbox's boundary (`entered`, or the step
/// that failed): releases the fork's locks, sets the limits, and serves
/// the closure (on this thread if `inline`).
///
/// # Safety
///
/// Only in a runner, once no process outside the sandbox shares its
/// memory.
unsafe fn run_closure<F, T>(
    launch: RunnerStart<F>,
    inline: bool,
    entered: Result<(), (JoinStep, i32)>,
) -> !
where
    F: FnOnce() -> T,
    T: Serialize,
{
    launch.locks.let_go_in_copy();
    let fds = &launch.fds;
    if let Err((step, errno)) = entered {
        setup_failed(fds.result, step, errno);
    }
    launch.boundary.set_rlimits();
    // SAFETY: the caller's guarantee.
    unsafe {
        super::runner::serve(
            launch.f,
            fds.result,
            fds.stdout,
            fds.stderr,
            inline,
            fds.background,
            launch.stacks.exit,
        )
    }
}

/// Registers with the kernel what glibc registered for the thread whose
/// TCB the runner borrows: its robust mutex list and its rseq area. The
/// kernel gives a new task neither (a `CLONE_VM` clone inherits no rseq
/// area, and no clone a robust list), so without this glibc's
/// `sched_getcpu` would read the parked thread's last CPU from the copied
/// area, and robust mutexes held by the closure's thread would not be
/// released should it die. An area the kernel refuses is marked
/// unregistered (cpu_id -1), so that glibc asks the kernel instead.
///
/// # Safety
///
/// Only in the runner, on the copy of the borrowed TCB that is its own.
unsafe fn adopt_tcb(tls: SpareTls) {
    if let Some((head, len)) = tls.robust {
        // SAFETY: the list head lies in the borrowed TCB, which lives as
        // long as this process (it is never unmapped).
        let _ = unsafe { sys::set_robust_list(head, len) };
    }
    if let Some(rseq) = tls.rseq {
        // SAFETY: the area lies in the borrowed TCB, aligned as glibc
        // registered it for the parked thread, and lives as long as this
        // process.
        if unsafe { sys::register_rseq(rseq.area, rseq.len, crate::fork::tls::Rseq::SIG) }.is_err()
        {
            // SAFETY: an aligned word of that area, used by no other task.
            unsafe { rseq.cpu_id().write_volatile(-1) };
        }
    }
}

/// Forks a joiner that enters the user namespace of the init process behind
/// `owner` and starts, as a sibling (`CLONE_PARENT`), a new init program
/// with `flags` (no `CLONE_NEWUSER`): a sandbox that shares `owner`'s user
/// namespace. The joiner reports the new init process's pid on `report_fd`.
/// Neither the joiner nor the init process sends a signal when it exits.
pub(crate) fn fork_init_in(
    owner: RawFd,
    flags: libc::c_int,
    launch: &crate::fork::launch::Launch,
    report_fd: RawFd,
) -> Result<libc::pid_t, i32> {
    // SAFETY: the joiner makes only system calls on prepared data (the
    // launch was prepared before), then exits.
    match unsafe { sys::clone_fork(0, 0) }? {
        sys::Forked::Child => {
            let _never_unwind = ExitOnUnwind;
            // SAFETY: the owner's pidfd stays open in this child.
            let owner = unsafe { sys::borrow_static(owner) };
            if let Err(errno) = sys::setns(owner, libc::CLONE_NEWUSER) {
                fail(report_fd, JoinStep::EnterOwner, errno);
            }
            match launch.start(flags | libc::CLONE_PARENT) {
                Ok(pid) => {
                    report(report_fd, JoinReport::started(pid));
                    sys::exit(0)
                }
                // A filter refuses CLONE_PARENT: this process is itself in
                // a sandbox (a network made in a closure, or by a test
                // under isolate_test or `hermetic run`). The init process
                // is this one's child, then, and this one stays as its
                // parent, holding nothing, until it ends.
                Err(libc::EPERM) => match launch.start(flags) {
                    Ok(pid) => {
                        report(report_fd, JoinReport::started_as_parent(pid));
                        // SAFETY: this single-threaded child owns its copy
                        // of the fd table; nothing here uses an fd again.
                        let _ = unsafe { sys::close_range(0, u32::MAX) };
                        let _ = sys::reap(pid);
                        sys::exit(0)
                    }
                    Err(errno) => fail(report_fd, JoinStep::StartInit, errno),
                },
                Err(errno) => fail(report_fd, JoinStep::StartInit, errno),
            }
        }
        sys::Forked::Parent { pid, .. } => Ok(pid),
    }
}
