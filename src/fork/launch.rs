//! What a sandbox's init program is started with, prepared in the test
//! process before the clone (see [`child::launch`](crate::child::launch),
//! which clones and runs the launched child): the program, copied once per
//! process into a sealed memfd; the launched child's stack and its
//! arguments at the top of it (paths, id maps, fds), so that the child
//! only makes system calls; and the setup plan, sent through a pipe.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use crate::proto::plan::{Action, Step};
use crate::proto::wire;
use crate::sys;
use crate::sys::fd::{self, Fd};

/// The init program, as `build.rs` built it.
static PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hermetic-init"));

/// The memfd holding the program, in this process.
static MEMFD: sys::PerProcessFd = sys::PerProcessFd::new();

/// A sealed memfd holding the init program, made once per process (a
/// process forked from the test process, such as a closure that makes
/// sandboxes of its own, has closed the test process's and makes its own).
fn program() -> io::Result<BorrowedFd<'static>> {
    MEMFD.get_or_open(|| {
        let fd = Fd::open(|| {
            // MFD_EXEC (Linux 6.3) keeps it executable where
            // vm.memfd_noexec would make memfds non-executable by default;
            // older kernels refuse the flag.
            let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
            sys::memfd_create(c"hermetic-init", flags | libc::MFD_EXEC).or_else(|e| {
                if e.raw_os_error() == Some(libc::EINVAL) {
                    sys::memfd_create(c"hermetic-init", flags)
                } else {
                    Err(e)
                }
            })
        })?;
        sys::write_all(fd.as_fd(), PROGRAM).map_err(io::Error::from_raw_os_error)?;
        // Nothing may change it from now on, not even through
        // /proc/PID/fd.
        sys::seal_for_good(fd.as_fd())?;
        Ok(fd)
    })
}

/// Everything the launched child needs, prepared before the clone; it lives
/// at the top of the child's stack.
pub(crate) struct Args {
    /// The id maps to write before the exec: (path, content), up to three.
    pub(crate) maps: [(*const libc::c_char, *const u8, usize); 3],
    pub(crate) map_count: usize,
    pub(crate) program: RawFd,
    pub(crate) plan: RawFd,
    pub(crate) report: RawFd,
    pub(crate) lifeline: RawFd,
    pub(crate) argv: [*const libc::c_char; 3],
    pub(crate) envp: [*const libc::c_char; 1],
    /// With maps written from outside: the child waits for one byte on
    /// `go` (0: the maps are written). -1 otherwise.
    pub(crate) go: RawFd,
    /// The write end of that pipe, the launching process's: the child
    /// closes its copy before it waits, so that the launching process's
    /// death (a `SIGKILL` as the sandbox starts) ends the wait.
    pub(crate) go_w: RawFd,
    /// The child's pid in the parent's PID namespace, written by the kernel
    /// at the clone (`CLONE_PARENT_SETTID`).
    pub(crate) child_pid: libc::pid_t,
    /// Non-zero until the child has exec'd or exited: the kernel clears it
    /// then (`CLONE_CHILD_CLEARTID`, with maps written from outside).
    pub(crate) running: std::sync::atomic::AtomicU32,
    /// The early helper (see [`early_helper`]): the namespaces it makes
    /// besides its user namespace (`CLONE_NEW*`), 0 for none.
    pub(crate) helper_flags: usize,
    /// Where it says it has made them: the pipe's read and write ends.
    pub(crate) made: (RawFd, RawFd),
    /// The top of its stack, low in the launch stack.
    pub(crate) helper_stack: *mut u8,
    /// Its pidfd in the launched child (`CLONE_PIDFD`).
    pub(crate) helper_pidfd: std::sync::atomic::AtomicI32,
    /// Set by the launched child once the helper runs.
    pub(crate) helper_started: std::sync::atomic::AtomicBool,
    /// Non-zero until the helper has exited (`CLONE_CHILD_CLEARTID`).
    pub(crate) helper_running: std::sync::atomic::AtomicU32,
    /// Pass these fds (of the test process) to the init program, at
    /// [`wire::PROGRAM_STDIO_FD`], for a program it starts as its fds 0
    /// to 2.
    pub(crate) stdio: Option<[RawFd; 3]>,
    /// Pass this fd to the init program at [`wire::LAYER_LOCK_FD`] (the
    /// lock of the sandbox's layers on disk), or -1.
    pub(crate) layer_lock: RawFd,
}

/// Fds of the test process the init program is handed besides its own.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Handed {
    /// For a program it starts, as the program's fds 0 to 2 (at
    /// [`wire::PROGRAM_STDIO_FD`]).
    pub(crate) stdio: Option<[RawFd; 3]>,
    /// The lock of the sandbox's layers on disk (at
    /// [`wire::LAYER_LOCK_FD`]).
    pub(crate) layer_lock: Option<RawFd>,
    /// The user the sandbox runs its closures and programs as
    /// ([`SandboxBuilder::user`](crate::SandboxBuilder::user)), if not
    /// root: named in the init program's command line (`user=UID:GID`), so
    /// that `hermetic enter` runs what it starts as that user too.
    pub(crate) user: Option<(u32, u32)>,
}

/// The init program's command line word naming the sandbox's user
/// (`user=UID:GID`, see [`Handed::user`]).
pub(crate) fn user_word(user: (u32, u32)) -> std::ffi::CString {
    std::ffi::CString::new(format!("{USER_PREFIX}{}:{}", user.0, user.1))
        .expect("no NUL in numbers")
}

/// What [`user_word`] begins with.
pub(crate) const USER_PREFIX: &str = "user=";

/// A prepared launch: the stack and the arguments on it.
pub(crate) struct Launch {
    pub(crate) stack: Option<sys::Stack>,
    pub(crate) args: *mut Args,
    /// With maps written from outside: what writes them and the `go` pipe.
    pub(crate) external: Option<External>,
    /// A child was cloned without `CLONE_VFORK` and may not have exec'd
    /// yet: dropping the launch waits for it.
    pub(crate) unsettled: std::cell::Cell<bool>,
    /// The early helper's pipe (kept open until the launch ends).
    pub(crate) _made: Option<(Fd, Fd)>,
    /// The init program's second argument (see [`Handed::user`]), which
    /// its argv points at until the exec.
    pub(crate) _user_word: Option<std::ffi::CString>,
}

/// Writes a launched child's id maps from outside, given its pid (see
/// [`idmap`](crate::setup::idmap)): the test process's part of a launch.
pub(crate) type MapWriter = Box<dyn Fn(libc::pid_t) -> Result<(), String>>;

pub(crate) struct External {
    pub(crate) write_maps: MapWriter,
    pub(crate) go_w: Fd,
    /// The child's end (kept open until the launch ends).
    pub(crate) _go_r: Fd,
    /// Why writing the maps failed, for the error.
    pub(crate) failure: std::sync::OnceLock<String>,
}

thread_local! {
    /// The last launch stack of this thread, kept for the next launch: it
    /// is used only until the exec, while this thread waits.
    static SPARE_STACK: std::cell::Cell<Option<sys::Stack>> = const { std::cell::Cell::new(None) };
}

impl Drop for Launch {
    fn drop(&mut self) {
        // SAFETY: args lives in our stack mapping, still ours.
        let args = unsafe { &*self.args };
        if self.unsettled.get() {
            // Told to go (or killed): it execs or exits at once, and the
            // kernel clears the word either way.
            sys::wait_cleared(&args.running);
        }
        // The launched child has exec'd or exited (or the clone failed): it
        // has said whether it started the helper, which runs on this stack
        // until the init program ends it, before it reports ready, or
        // until the sandbox's PID namespace goes.
        if args
            .helper_started
            .load(std::sync::atomic::Ordering::Acquire)
        {
            sys::wait_cleared(&args.helper_running);
        }
        let stack = self.stack.take();
        // Never while the thread's locals go away: then it is just unmapped.
        let _ = SPARE_STACK.try_with(|spare| spare.set(stack));
    }
}

/// The launched child's stack: it makes a dozen system calls; the early
/// helper runs on its lowest [`HELPER_STACK`] bytes.
pub(crate) const STACK: usize = 64 << 10;

/// The early helper's part of the launch stack: it makes four system calls.
pub(crate) const HELPER_STACK: usize = 16 << 10;

impl Launch {
    /// Prepares a launch of the init program that reads its plan from
    /// `plan`, reports on `report` and watches `lifeline`. The `maps`
    /// (setgroups, uid_map, gid_map steps of a new user namespace) are
    /// written before the exec: `execve` keeps a process's capabilities in
    /// its user namespace only if it is root there, which takes the maps.
    /// They must outlive [`start`](Self::start).
    pub(crate) fn prepare(
        maps: &[Step],
        plan: RawFd,
        report: RawFd,
        lifeline: RawFd,
        write_maps: Option<MapWriter>,
        helper_flags: libc::c_int,
        handed: Handed,
    ) -> io::Result<Launch> {
        let mut map_list = [(std::ptr::null(), std::ptr::null(), 0); 3];
        let mut map_count = 0;
        for step in maps {
            if let Action::WriteFile { path, content } = &step.action
                && map_count < map_list.len()
            {
                map_list[map_count] = (path.as_ptr(), content.as_ptr(), content.len());
                map_count += 1;
            }
        }
        let program = program()?.as_raw_fd();
        let external = match write_maps {
            Some(write_maps) => {
                let (go_r, go_w) = fd::pipe()?;
                Some(External {
                    write_maps,
                    go_w,
                    _go_r: go_r,
                    failure: std::sync::OnceLock::new(),
                })
            }
            None => None,
        };
        let go = external.as_ref().map_or(-1, |e| e._go_r.as_raw_fd());
        let go_w = external.as_ref().map_or(-1, |e| e.go_w.as_raw_fd());
        let stack = match SPARE_STACK.try_with(|spare| spare.take()).ok().flatten() {
            Some(stack) => stack,
            None => sys::Stack::map(STACK).map_err(io::Error::from_raw_os_error)?,
        };
        let made = if helper_flags != 0 {
            Some(fd::pipe()?)
        } else {
            None
        };
        let user_word = handed.user.map(user_word);
        let room = std::mem::size_of::<Args>().next_multiple_of(64);
        let args = stack.top().wrapping_sub(room).cast::<Args>();
        // The helper's stack: the lowest HELPER_STACK bytes above the guard
        // page; the launched child's grows down from its arguments.
        let helper_stack = stack.usable().0.cast::<u8>().wrapping_add(HELPER_STACK);
        // SAFETY: args lies inside the mapping, 64-byte aligned, with room
        // for the struct above it.
        unsafe {
            args.write(Args {
                maps: map_list,
                map_count,
                program,
                plan,
                report,
                lifeline,
                argv: [
                    c"hermetic-init".as_ptr(),
                    user_word.as_ref().map_or(std::ptr::null(), |w| w.as_ptr()),
                    std::ptr::null(),
                ],
                envp: [std::ptr::null()],
                go,
                go_w,
                child_pid: 0,
                running: std::sync::atomic::AtomicU32::new(1),
                helper_flags: helper_flags as usize,
                made: made
                    .as_ref()
                    .map_or((-1, -1), |(r, w)| (r.as_raw_fd(), w.as_raw_fd())),
                helper_stack,
                helper_pidfd: std::sync::atomic::AtomicI32::new(-1),
                helper_started: std::sync::atomic::AtomicBool::new(false),
                helper_running: std::sync::atomic::AtomicU32::new(1),
                stdio: handed.stdio,
                layer_lock: handed.layer_lock.unwrap_or(-1),
            })
        };
        Ok(Launch {
            stack: Some(stack),
            args,
            external,
            unsettled: std::cell::Cell::new(false),
            _made: made,
            _user_word: user_word,
        })
    }

    /// Waits until the launched child has exec'd (or exited): until then
    /// it may share the test process's memory. No process that shares it
    /// may be put in a sandbox's memory cgroup: the OOM killer, choosing
    /// it, kills every process that shares its memory, the test process
    /// too.
    pub(crate) fn settle(&self) {
        if self.unsettled.get() {
            // SAFETY: args lives in our stack mapping, still ours.
            let args = unsafe { &*self.args };
            sys::wait_cleared(&args.running);
            self.unsettled.set(false);
        }
    }

    /// Why writing the maps from outside failed, if it did.
    pub(crate) fn map_failure(&self) -> Option<String> {
        self.external
            .as_ref()
            .and_then(|e| e.failure.get().cloned())
    }
}

/// Writes to the pipe `plan_w` as much of the plan as the pipe holds,
/// growing it first (to the plan's size where the host allows, else to
/// 1 MiB, the default most for an unprivileged process): nothing reads it
/// until the init program starts. Returns how much was written: the rest
/// ([`send_rest`]) once the init program runs and reads it.
fn send_plan(plan_w: &Fd, plan: &[u8]) -> io::Result<usize> {
    if plan.len() > wire::PLAN_MAX {
        return Err(io::Error::other(format!(
            "the setup plan is {} bytes, over the init program's {} (too many mounts?)",
            plan.len(),
            wire::PLAN_MAX
        )));
    }
    if plan.len() > 60 << 10 && sys::set_pipe_size(plan_w.as_fd(), plan.len()).is_err() {
        let _ = sys::set_pipe_size(plan_w.as_fd(), 1 << 20);
    }
    // An empty pipe takes as many bytes as it holds without blocking.
    let now = plan.len().min(sys::pipe_size(plan_w.as_fd())?);
    sys::write_all(plan_w.as_fd(), &plan[..now]).map_err(io::Error::from_raw_os_error)?;
    Ok(now)
}

/// Writes the rest of the plan, from `sent` on (see [`prepare`]), once the
/// init program runs (`init`, its pidfd): it reads the plan first. Nothing
/// if it all went; an error if the init program ends before it took it.
pub(crate) fn send_rest(
    plan_w: &Fd,
    plan: &[u8],
    sent: usize,
    init: BorrowedFd<'_>,
) -> io::Result<()> {
    sys::write_while_alive(plan_w.as_fd(), &plan[sent..], init)
        .map_err(io::Error::from_raw_os_error)
}

/// Prepares the start of a sandbox's init program: sends it the encoded
/// `plan` through a new pipe (returned: its read end must stay open until
/// the program has started; its write end is the program's control channel
/// from then on, see [`wire::CONTROL_KEEP`]), as much as the pipe holds
/// (returned: how much; [`send_rest`] sends the rest once the program is
/// started, before anything else on that channel) and prepares a launch that
/// writes the id `maps`, reports on `report` and watches `lifeline` (and,
/// hands it the fds of `handed`).
pub(crate) fn prepare(
    maps: &[Step],
    plan: &[u8],
    report: &Fd,
    lifeline: BorrowedFd<'_>,
    write_maps: Option<MapWriter>,
    helper_flags: libc::c_int,
    handed: Handed,
) -> Result<(Fd, Fd, Launch, usize), (&'static str, io::Error)> {
    let (plan_r, plan_w) = fd::pipe().map_err(|e| ("creating the plan's pipe", e))?;
    let sent = send_plan(&plan_w, plan).map_err(|e| ("sending the init program its plan", e))?;
    let launch = Launch::prepare(
        maps,
        plan_r.as_raw_fd(),
        report.as_raw_fd(),
        lifeline.as_raw_fd(),
        write_maps,
        helper_flags,
        handed,
    )
    .map_err(|e| ("preparing the init program's start", e))?;
    Ok((plan_r, plan_w, launch, sent))
}
