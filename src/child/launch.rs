//! Starting the sandbox's init program (`init/main.rs`), from a launch
//! prepared before the clone ([`fork::launch`](crate::fork::launch): the
//! program in a sealed memfd, the child's stack and arguments, the plan).
//!
//! A sandbox's PID 1 is started by a
//! `clone(CLONE_VM | CLONE_VFORK)` with the namespace flags whose child, on
//! a small stack of its own, moves three fds into place and `execveat`s the
//! memfd: the clone costs no copy of the test process's page tables, and
//! after the exec PID 1 has an address space of its own. Until the exec the
//! child shares the test process's memory, so it runs with every signal
//! blocked and makes only raw system calls through [`sys`](crate::sys)'s
//! after-fork wrappers (rustix's `linux_raw` backend or `sys::call`, none
//! of which writes `errno`), on data prepared before. libc is used for the
//! signal mask around the clone and for two clones: the launch's own
//! (`libc::clone`, called by the launching thread; its child side only
//! calls `entry`), and the early helper's, called by the launched child
//! itself (`start_early_helper`). glibc's clone wrapper touches no
//! thread-local storage except on failure, when it writes `errno`; the
//! launched child has no thread-local storage of its own (no
//! `CLONE_SETTLS`), so a failed helper clone writes the launching
//! thread's `errno` (in a copy of it when the launching process is not
//! dumpable and the clone has no `CLONE_VM`, see `start`). With
//! `CLONE_VFORK` that thread is stopped until the exec; when the maps are
//! written from outside it runs meanwhile, and a failed helper clone can
//! overwrite the `errno` a libc call of that thread has just set (at worst,
//! a wrong errno in an error it reports then).
//!
//! When its id maps must be written from outside (ranges of ids), the clone
//! has no `CLONE_VFORK`: the launching thread writes the maps while the
//! child waits for a byte on a pipe, and goes on with the sandbox's start
//! while the child execs; the launch, which holds the child's stack, waits
//! for the exec before it is dropped (`CLONE_CHILD_CLEARTID`: the kernel
//! clears a word of the child's arguments, and wakes its futex, when the
//! child execs or exits).
//!
//! # Safety
//!
//! See the parent module: the launched child follows its rules.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, RawFd};

use crate::fork::launch::{Args, Launch};
use crate::proto::reports::encode_report;
use crate::proto::wire;
use crate::sys;

impl Launch {
    /// Starts the init program in new namespaces (`flags`, which may also
    /// hold `CLONE_PARENT`). Returns its pid once it has been exec'd (or has
    /// failed to be, which it reports); with maps written from outside,
    /// once they are written and the child told to go on, while it execs
    /// (dropping the launch waits for that). Its exit signal is none: no
    /// `SIGCHLD` disposition of the test process can make the kernel reap
    /// it, and only a wait with `__WALL` for its very pid sees it.
    ///
    /// Callable in a child forked from the test process when no maps are
    /// written from outside (a host of a network): it then makes only
    /// system calls.
    pub(crate) fn start(&self, flags: libc::c_int) -> Result<libc::pid_t, i32> {
        // A non-dumpable caller (a closure, making a sandbox inside its
        // own) is not shared: the child gets a copy of its memory, which it
        // makes dumpable, so that its own /proc files (uid_map) are its
        // own, not root's outside. Its maps are then its own to write
        // (one id), or, as root (root's outside is the caller), the
        // caller's, from outside.
        let vm = if sys::is_dumpable() {
            libc::CLONE_VM
        } else {
            0
        };
        let flags = flags | vm | libc::CLONE_PARENT_SETTID;
        let Some(external) = &self.external else {
            // SAFETY: we are suspended until the child execs or exits
            // (CLONE_VFORK); see clone_child.
            return unsafe { self.clone_child(flags | libc::CLONE_VFORK) };
        };
        // SAFETY: the child may run alongside this thread until it execs:
        // it reads only its arguments and the fds they name, which all stay
        // as they are until the launch's drop has seen it exec or exit.
        let pid = unsafe { self.clone_child(flags | libc::CLONE_CHILD_CLEARTID)? };
        // A child with a copy of the memory (see above) neither uses the
        // launch's stack nor clears its word: nothing to wait for.
        self.unsettled.set(vm != 0);
        // Whatever happens, the child gets its answer: it waits for it.
        let written =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (external.write_maps)(pid)))
                .unwrap_or_else(|_| Err("writing the id maps panicked".to_owned()));
        let answer = match written {
            Ok(()) => 0,
            Err(why) => {
                let _ = external.failure.set(why);
                1
            }
        };
        if sys::write_all(external.go_w.as_fd(), &[answer]).is_err() {
            // Cannot happen while we hold the read end; should it, the
            // child must not wait for ever.
            let _ = sys::kill_and_reap(pid);
            return Err(libc::EPIPE);
        }
        Ok(pid)
    }

    /// The clone itself, with every signal blocked: no handler of the test
    /// process may run in a task that shares its memory (the exec'd
    /// program keeps the mask).
    ///
    /// # Safety
    ///
    /// The child starts in `entry` on the launch stack, below its
    /// arguments, and makes only raw system calls (and the early helper's
    /// `libc::clone`, see the module docs) until it execs or exits; the
    /// caller keeps the stack and arguments as they are until then.
    unsafe fn clone_child(&self, flags: libc::c_int) -> Result<libc::pid_t, i32> {
        // SAFETY: `args` points to the Args that prepare() wrote at the top
        // of the launch stack, which lives as long as `self`; only the
        // field's address is taken, nothing is read or written.
        let child_pid = unsafe { std::ptr::addr_of_mut!((*self.args).child_pid) };
        // SAFETY: the same live Args; `running` is an atomic, so a shared
        // reference to it may exist while the kernel writes it.
        let running = unsafe { (*self.args).running.as_ptr() }.cast::<libc::pid_t>();
        let (pid, errno) = sys::with_all_signals_blocked(|| {
            // SAFETY: see this function's contract. The kernel writes the
            // child's pid into `child_pid` (CLONE_PARENT_SETTID), and
            // clears `running` if CLONE_CHILD_CLEARTID is set: both point
            // into the live Args.
            let pid = unsafe {
                libc::clone(
                    entry,
                    self.args.cast(),
                    flags,
                    self.args.cast(),
                    child_pid,
                    std::ptr::null_mut::<libc::c_void>(),
                    running,
                )
            };
            (pid, sys::errno())
        })?;
        if pid < 0 { Err(errno) } else { Ok(pid) }
    }
}

extern "C" fn entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: arg is the Args written by prepare(), alive until we exec.
    let args = unsafe { &*arg.cast::<Args>() };
    // A memory of its own, copied from a non-dumpable caller (see start):
    // dumpable, so that this child may write its own uid_map. Sharing the
    // test process's memory, it is dumpable already. Its maps written from
    // outside (by a root caller, which owns its /proc files), it stays as
    // it is: nothing inside can trace it, or take its copy of the caller's
    // fds, while it waits for them.
    if args.go < 0 && !sys::is_dumpable() {
        let _ = sys::set_dumpable();
    }
    let fail = |errno: i32| -> ! {
        // SAFETY: the report pipe stays open until this child execs or exits.
        let report = unsafe { sys::borrow_static(args.report) };
        let _ = sys::write_all(report, &encode_report(wire::REPORT_EXEC, errno));
        sys::exit(127)
    };
    if args.go >= 0 {
        // Its copy of the pipe's write end goes first: should the launching
        // process die before it writes (killed as the sandbox starts), the
        // read below ends, and so does this child, not waiting for good
        // on a pipe it holds itself.
        // SAFETY: this child's fd table is a copy of its own (no
        // CLONE_FILES); the write end is the launching process's to use.
        unsafe { sys::close(args.go_w) };
        // Maps written from outside: wait for the word.
        // SAFETY: the pipe's read end stays open in this child until it
        // execs.
        let go = unsafe { sys::borrow_static(args.go) };
        let mut answer = [1u8; 1];
        if !matches!(sys::read(go, &mut answer), Ok(1)) {
            answer[0] = 1;
        }
        if answer[0] != 0 {
            // SAFETY: the report pipe stays open until this child execs or
            // exits, which it does next.
            let report = unsafe { sys::borrow_static(args.report) };
            let _ = sys::write_all(report, &encode_report(wire::REPORT_ID_MAP, libc::EPERM));
            sys::exit(127)
        }
    }
    for (i, &(path, content, len)) in args.maps[..args.map_count].iter().enumerate() {
        // SAFETY: prepare() took `path` from a live CString of a map step,
        // which outlives the launch: NUL-terminated and unchanged.
        let path = unsafe { std::ffi::CStr::from_ptr(path) };
        // SAFETY: prepare() took `content` and `len` from a live Vec of the
        // same step, which outlives the launch and is not written meanwhile.
        let content = unsafe { std::slice::from_raw_parts(content, len) };
        if let Err(errno) = sys::write_file(path, content) {
            // SAFETY: the report pipe stays open until this child execs or
            // exits, which it does next.
            let report = unsafe { sys::borrow_static(args.report) };
            let _ = sys::write_all(
                report,
                &encode_report(wire::REPORT_ID_MAP + i as u32, errno),
            );
            sys::exit(127)
        }
    }
    // The helper now (its user namespace needs ours mapped), so that it
    // makes the sandbox's network namespace while this child execs and the
    // init program makes its first mounts. Without it, the init program
    // starts one itself.
    let helper = start_early_helper(args);
    // Park every fd we move first, so that none is overwritten before it
    // is moved, whatever numbers they had.
    let mut parked = [-1; 10];
    let helper_fds = helper.map_or([-1, -1], |pidfd| [pidfd, args.made.0]);
    let stdio = args.stdio.unwrap_or([-1; 3]);
    for (slot, fd) in parked.iter_mut().zip([
        args.plan,
        args.report,
        args.lifeline,
        helper_fds[0],
        helper_fds[1],
        args.program,
        stdio[0],
        stdio[1],
        stdio[2],
        args.layer_lock,
    ]) {
        if fd < 0 {
            continue;
        }
        // SAFETY: these fds stay open in this child until it execs.
        let fd = unsafe { sys::borrow_static(fd) };
        *slot = sys::dup_above(fd, 10).unwrap_or_else(|e| fail(e));
    }
    // fds 0 to 2, then the helper's at wire::HELPER_PIDFD_FD and
    // wire::HELPER_MADE_FD.
    let keep = if helper.is_some() { 5 } else { 3 };
    for (i, &fd) in parked[..keep].iter().enumerate() {
        // SAFETY: this child's fd table is a copy of its own (no
        // CLONE_FILES); fds 0 to 4 are to be replaced.
        if let Err(e) = unsafe { sys::dup2(fd, i as RawFd) } {
            fail(e)
        }
    }
    // Everything else closes at the exec: with fds for a program, all but
    // those at wire::PROGRAM_STDIO_FD; with a layer lock, all but it.
    let mut close_from = keep as RawFd;
    if args.stdio.is_some() {
        for (i, &fd) in parked[6..9].iter().enumerate() {
            // SAFETY: this child's fd table is a copy of its own; the
            // numbers from PROGRAM_STDIO_FD on are to be replaced.
            if let Err(e) = unsafe { sys::dup2(fd, wire::PROGRAM_STDIO_FD + i as RawFd) } {
                fail(e)
            }
        }
        // SAFETY: as below, for the fds between those kept and the
        // program's.
        if let Err(e) = unsafe { sys::cloexec_between(close_from, wire::PROGRAM_STDIO_FD - 1) } {
            fail(e)
        }
        close_from = wire::PROGRAM_STDIO_FD + 3;
    }
    if parked[9] >= 0 {
        // SAFETY: as above, for the fds between those kept and the lock.
        if let Err(e) = unsafe { sys::cloexec_between(close_from, wire::LAYER_LOCK_FD - 1) } {
            fail(e)
        }
        // SAFETY: this child's fd table is a copy of its own; the lock's
        // number is to be replaced.
        if let Err(e) = unsafe { sys::dup2(parked[9], wire::LAYER_LOCK_FD) } {
            fail(e)
        }
        close_from = wire::LAYER_LOCK_FD + 1;
    }
    // SAFETY: this child's fd table is a copy of its own (no CLONE_FILES),
    // and the exec follows: the fds marked close there, in this child
    // alone.
    if let Err(e) = unsafe { sys::cloexec_from(close_from) } {
        fail(e)
    }
    // SAFETY: this child exists to exec; argv and envp were prepared as
    // null-terminated arrays of C strings.
    let errno = unsafe { sys::execveat_empty(parked[5], &args.argv, &args.envp) };
    fail(errno)
}

/// Starts the early helper, if the launch has one: a task in a new user
/// namespace (nested in the sandbox's outer one) that makes the
/// namespaces in `args.helper_flags` in it. It shares this child's memory,
/// which is the test process's, on a stack of its own low in the launch
/// stack: it makes four system calls and then only waits, until the init
/// program ends it once it has joined those namespaces (before the sandbox
/// is ready, so no process of the sandbox ever shares that memory), or
/// until the sandbox's PID namespace goes. The launch waits for its end
/// (`CLONE_CHILD_CLEARTID`) before it frees the stack. Returns its pidfd.
///
/// Through `libc::clone`, the one libc call of the launched child: should
/// it fail, glibc writes `errno` into the launching thread's thread-local
/// storage, which this child shares (see the module docs).
fn start_early_helper(args: &Args) -> Option<RawFd> {
    if args.helper_flags == 0 {
        return None;
    }
    // No exit signal: the init program reaps it (and nothing else does),
    // so that it is gone from /proc, not only exited, when the sandbox is
    // ready.
    let flags =
        libc::CLONE_VM | libc::CLONE_NEWUSER | libc::CLONE_PIDFD | libc::CLONE_CHILD_CLEARTID;
    // SAFETY: the helper starts in `early_helper` on its own stack, within
    // the launch stack, which the launch keeps until the helper has exited;
    // it makes only raw system calls. The kernel writes its pidfd and
    // clears `helper_running` at its exit: both are atomics of the args.
    let pid = unsafe {
        libc::clone(
            early_helper,
            args.helper_stack.cast(),
            flags,
            std::ptr::from_ref(args).cast_mut().cast(),
            args.helper_pidfd.as_ptr(),
            std::ptr::null_mut::<libc::c_void>(),
            args.helper_running.as_ptr().cast::<libc::pid_t>(),
        )
    };
    if pid <= 0 {
        return None;
    }
    args.helper_started
        .store(true, std::sync::atomic::Ordering::Release);
    sys::run_elsewhere(pid);
    Some(args.helper_pidfd.load(std::sync::atomic::Ordering::Acquire))
}

/// The early helper: closes every fd but its pipe's write end, makes its
/// namespaces and says how that went, sets `lo` up in the network
/// namespace it made and says how that went ([`wire::HELPER_MADE_FD`]),
/// and waits to be killed (every signal is blocked).
extern "C" fn early_helper(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: arg is the Args of the launch, alive until this task ends.
    let args = unsafe { &*arg.cast::<Args>() };
    let made = args.made.1;
    // SAFETY: its fd table is its own copy (no CLONE_FILES): the test
    // process's fds below `made` are closed for it alone, and it uses none.
    let _ = unsafe { sys::close_range(0, made as u32 - 1) };
    // SAFETY: the same copy of its own: the fds above `made` are closed for
    // it alone, and it uses none.
    let _ = unsafe { sys::close_range(made as u32 + 1, u32::MAX) };
    let flags = rustix::thread::UnshareFlags::from_bits_retain(args.helper_flags as u32);
    // SAFETY: the flags are a nesting step's namespace flags only
    // (`CLONE_NEW*`, the builder's `early_helper_flags`), never
    // `CLONE_FILES`: this task's fd table (a copy of its own) stays the
    // same table, so no fd number it holds changes meaning.
    let errno = match unsafe { rustix::thread::unshare_unsafe(flags) } {
        Ok(()) => 0i32,
        Err(e) => e.raw_os_error(),
    };
    // SAFETY: the pipe's write end, open in this task until it is closed
    // below.
    let pipe = unsafe { sys::borrow_static(made) };
    // The namespaces first: the init program joins them while this task
    // sets `lo` up there (about 0.1 ms), and makes the mounts that follow
    // the join meanwhile.
    let _ = sys::write_all(pipe, &errno.to_le_bytes());
    let lo = if errno == 0 && flags.contains(rustix::thread::UnshareFlags::NEWNET) {
        sys::loopback_up().err().unwrap_or(0)
    } else {
        wire::LO_NOT_TRIED
    };
    let _ = sys::write_all(pipe, &lo.to_le_bytes());
    // SAFETY: the pipe's write end, a raw fd owned by no Rust object, not
    // used again: its reader sees the end of the pipe.
    unsafe { sys::close(made) };
    sys::wait_forever()
}
