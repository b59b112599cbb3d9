//! hermetic's init program: PID 1 of every sandbox.
//!
//! A small static executable with no C library and no allocator, built by
//! `build.rs` with the same `rustc` as the crate and embedded in it. The
//! test process starts it with `clone(CLONE_VM | CLONE_VFORK | namespaces)`
//! followed at once by `execveat` of an in-memory copy, so that PID 1 has an
//! address space of its own (a few pages) and never the test process's.
//!
//! It reads its setup plan from fd 0, makes one system call per step, reports
//! on fd 1 (`src/proto/wire.rs` has both formats), then waits until fd 2, a pidfd
//! of the test process, says the test process has exited. Fds 3 and 4, when
//! open, are a pidfd of the helper the launch started before the exec and
//! the pipe on which that helper says it has made the sandbox's network,
//! UTS and IPC namespaces. Dying as PID 1
//! makes the kernel kill everything else in the sandbox. Every signal stays
//! blocked (the mask is inherited from the test process's launch), so only
//! `SIGKILL` ends it from outside; it ignores `SIGCHLD`, so the kernel reaps
//! orphans (the helper exits with no signal, and is reaped here). It starts
//! a session (and process group) of its own first thing. Before
//! reporting ready it makes itself non-dumpable: processes of the sandbox
//! (which live in an inner user namespace) can neither trace it nor read its
//! memory or fds. With a program to start (`hermetic run`'s, see
//! [`wire::OP_PROGRAM`]), fds 5 to 7 are the program's stdio until it has
//! them; it forks the program once ready, reaps its children itself from
//! then on (told by a signalfd), reports the program's end on fd 1, and
//! passes it the signals the control channel brings. Fd 8, when open, is
//! the lock of the sandbox's upper layers on disk
//! ([`wire::LAYER_LOCK_FD`]): held, never used, for as long as this
//! process lives. The plan's own fds start at 9.
//!
//! # References
//!
//! clone(2), execveat(2), setns(2), user_namespaces(7), mount_setattr(2),
//! open_tree(2), move_mount(2), keyctl(2), pid_namespaces(7)
#![no_std]
#![no_main]

#[path = "../src/proto/wire.rs"]
mod wire;

use core::arch::global_asm;
use core::sync::atomic::{AtomicI32, Ordering};

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const RT_SIGACTION: usize = 13;
    pub const IOCTL: usize = 16;
    pub const SOCKET: usize = 41;
    pub const CLONE: usize = 56;
    pub const PRCTL: usize = 157;
    pub const MOUNT: usize = 165;
    pub const SETHOSTNAME: usize = 170;
    pub const EXIT_GROUP: usize = 231;
    pub const KEYCTL: usize = 250;
    pub const OPENAT: usize = 257;
    pub const MKDIRAT: usize = 258;
    pub const FCHMODAT: usize = 268;
    pub const PPOLL: usize = 271;
    pub const DUP3: usize = 292;
    pub const SETNS: usize = 308;
    pub const UNSHARE: usize = 272;
    pub const PIPE2: usize = 293;
    pub const FCNTL: usize = 72;
    pub const WAITID: usize = 247;
    pub const PTRACE: usize = 101;
    pub const SETSID: usize = 112;
    pub const SETPGID: usize = 109;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const EXECVE: usize = 59;
    pub const CHDIR: usize = 80;
    pub const PRLIMIT64: usize = 302;
    pub const SECCOMP: usize = 317;
    pub const SIGNALFD4: usize = 289;
    pub const SETGROUPS: usize = 116;
    pub const SETRESUID: usize = 117;
    pub const SETRESGID: usize = 119;
    pub const CAPSET: usize = 126;
    pub const SCHED_YIELD: usize = 24;
    pub const STATX: usize = 332;
    pub const UTIMENSAT: usize = 280;
    pub const FCHOWNAT: usize = 260;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const READ: usize = 63;
    pub const WRITE: usize = 64;
    pub const CLOSE: usize = 57;
    pub const RT_SIGACTION: usize = 134;
    pub const IOCTL: usize = 29;
    pub const SOCKET: usize = 198;
    pub const CLONE: usize = 220;
    pub const PRCTL: usize = 167;
    pub const MOUNT: usize = 40;
    pub const SETHOSTNAME: usize = 161;
    pub const EXIT_GROUP: usize = 94;
    pub const KEYCTL: usize = 219;
    pub const OPENAT: usize = 56;
    pub const MKDIRAT: usize = 34;
    pub const FCHMODAT: usize = 53;
    pub const PPOLL: usize = 73;
    pub const DUP3: usize = 24;
    pub const SETNS: usize = 268;
    pub const UNSHARE: usize = 97;
    pub const PIPE2: usize = 59;
    pub const FCNTL: usize = 25;
    pub const WAITID: usize = 95;
    pub const PTRACE: usize = 117;
    pub const SETSID: usize = 157;
    pub const SETPGID: usize = 154;
    pub const RT_SIGPROCMASK: usize = 135;
    pub const EXECVE: usize = 221;
    pub const CHDIR: usize = 49;
    pub const PRLIMIT64: usize = 261;
    pub const SECCOMP: usize = 277;
    pub const SIGNALFD4: usize = 74;
    pub const SETGROUPS: usize = 159;
    pub const SETRESUID: usize = 147;
    pub const SETRESGID: usize = 149;
    pub const CAPSET: usize = 91;
    pub const SCHED_YIELD: usize = 124;
    pub const STATX: usize = 291;
    pub const UTIMENSAT: usize = 88;
    pub const FCHOWNAT: usize = 54;
}

/// System calls numbered alike on every architecture.
const PIDFD_SEND_SIGNAL: usize = 424;
const OPEN_TREE: usize = 428;
const MOVE_MOUNT: usize = 429;
const MOUNT_SETATTR: usize = 442;
const CLOSE_RANGE: usize = 436;

const AT_FDCWD: isize = -100;
const AT_RECURSIVE: usize = 0x8000;
const AT_EMPTY_PATH: usize = 0x1000;
const STATX_TYPE: usize = 0x1;
const STATX_UID: usize = 0x8;
const STATX_GID: usize = 0x10;
const STATX_ATIME: usize = 0x20;
const STATX_MTIME: usize = 0x40;
const O_RDONLY: usize = 0;
const O_WRONLY: usize = 1;
const O_RDWR: usize = 2;
const O_CREAT: usize = 0o100;
const O_CLOEXEC: usize = 0o2000000;
const ENOENT: i32 = 2;
const ENXIO: i32 = 6;
const EINTR: i32 = 4;
const EPERM: i32 = 1;
const EACCES: i32 = 13;
const EEXIST: i32 = 17;
const EBADF: i32 = 9;
const EINVAL: i32 = 22;
const ENOSYS: i32 = 38;
const MS_RDONLY: usize = 1;
const MS_BIND: usize = 4096;
const MS_REC: usize = 16384;
const MS_PRIVATE: usize = 1 << 18;
const CLONE_NEWUSER: usize = 0x1000_0000;
const CLONE_NEWNS: usize = 0x0002_0000;
const CLONE_PIDFD: usize = 0x1000;
const OPEN_TREE_CLONE: usize = 1;
const MOVE_MOUNT_F_EMPTY_PATH: usize = 4;
const SIGKILL: usize = 9;
const SIGCHLD: usize = 17;
const SIGPIPE: usize = 13;
const SIGTERM: usize = 15;
const SIGINT: usize = 2;
const SIGHUP: usize = 1;
const SIGQUIT: usize = 3;
const SIGCONT: usize = 18;
const SIG_IGN: usize = 1;
const SIG_DFL: usize = 0;
const SIG_SETMASK: usize = 2;
const CLOSE_RANGE_CLOEXEC: usize = 4;
const SECCOMP_SET_MODE_FILTER: usize = 1;
const PR_SET_NO_NEW_PRIVS: usize = 38;
const E2BIG: i32 = 7;
const ENOEXEC: i32 = 8;
const ENOTDIR: i32 = 20;
const ELOOP: i32 = 40;
const ENAMETOOLONG: i32 = 36;
const ESTALE: i32 = 116;
const ENODEV: i32 = 19;
const ETIMEDOUT: i32 = 110;
const WNOHANG: usize = 1;
const P_ALL: usize = 0;
const SFD_NONBLOCK: usize = 0o4000;
/// `si_code` of a child that exited (the others: killed, dumped).
const CLD_EXITED: i32 = 1;
/// `si_code` of a child that stopped for its tracer (this process, which
/// it made so with `PTRACE_TRACEME`).
const CLD_TRAPPED: i32 = 4;
const PTRACE_DETACH: usize = 17;
const SIGTRAP: usize = 5;
const PR_CAP_AMBIENT: usize = 47;
const PR_CAP_AMBIENT_CLEAR_ALL: usize = 4;
/// capset(2)'s header version for 64-bit capability sets.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const PR_SET_NAME: usize = 15;
const PR_SET_DUMPABLE: usize = 4;
const POLLIN: i16 = 1;
const P_PIDFD: usize = 3;
const WEXITED: usize = 4;
const WALL: usize = 0x4000_0000;
const AF_INET: usize = 2;
const SOCK_DGRAM: usize = 2;
const SIOCGIFFLAGS: usize = 0x8913;
const SIOCSIFFLAGS: usize = 0x8914;
const TIOCSCTTY: usize = 0x540E;
const ENOTTY: i32 = 25;
const IFF_UP: i16 = 1;
const IFF_RUNNING: i16 = 0x40;
const KEYCTL_JOIN_SESSION_KEYRING: usize = 1;
const KEYCTL_SETPERM: usize = 5;
/// Possessor: everything; owner: view, read, write, search, link, setattr.
const KEYRING_PERM: usize = 0x3f3f_0000;

#[cfg(target_arch = "x86_64")]
global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym init_main,
);

#[cfg(target_arch = "aarch64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov x29, #0",
    "mov x30, #0",
    "mov x0, sp",
    "and sp, x0, #-16",
    "bl {main}",
    "brk #0",
    main = sym init_main,
);

/// One system call; `Err(errno)` on failure.
///
/// # Safety
///
/// As for the system call itself: pointer arguments must be valid for what
/// the kernel reads and writes through them.
#[inline(always)]
unsafe fn call(nr: usize, a: [usize; 6]) -> Result<usize, i32> {
    let ret: isize;
    // SAFETY: the x86_64 convention: the number in rax, arguments in rdi,
    // rsi, rdx, r10, r8 and r9, the result in rax, and `syscall` clobbers
    // rcx and r11 alone; the caller vouches for what the call does to
    // memory.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    // SAFETY: the aarch64 convention: the number in x8, arguments in x0 to
    // x5, the result in x0, and `svc 0` clobbers no other register; the
    // caller vouches for what the call does to memory.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack),
        );
    }
    if (-4095..0).contains(&ret) {
        Err(-ret as i32)
    } else {
        Ok(ret as usize)
    }
}

fn exit(code: i32) -> ! {
    loop {
        // SAFETY: exit_group takes an integer and does not return.
        let _ = unsafe { call(nr::EXIT_GROUP, [code as usize, 0, 0, 0, 0, 0]) };
    }
}

fn close(fd: i32) {
    // SAFETY: closes an fd of ours.
    let _ = unsafe { call(nr::CLOSE, [fd as usize, 0, 0, 0, 0, 0]) };
}

fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), i32> {
    while !buf.is_empty() {
        // SAFETY: buf is live for its length.
        match unsafe { call(nr::WRITE, [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0]) } {
            Ok(n) => buf = &buf[n.min(buf.len())..],
            Err(EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn read_exact(fd: i32, buf: &mut [u8]) -> Result<(), i32> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: rest is live and writable for its length.
        match unsafe { call(nr::READ, [fd as usize, rest.as_mut_ptr() as usize, rest.len(), 0, 0, 0]) } {
            Ok(0) => return Err(EINVAL),
            Ok(n) => done += n.min(rest.len()),
            Err(EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn report(code: u32, errno: i32) {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&code.to_le_bytes());
    msg[4..].copy_from_slice(&errno.to_le_bytes());
    let _ = write_all(wire::REPORT_FD, &msg);
}

/// A C string's address; empty fields are null pointers.
fn ptr(field: &[u8]) -> usize {
    if field.is_empty() { 0 } else { field.as_ptr() as usize }
}

fn open(path: &[u8], flags: usize, mode: usize) -> Result<i32, i32> {
    // SAFETY: path is NUL-terminated (checked when the step was decoded).
    unsafe { call(nr::OPENAT, [AT_FDCWD as usize, ptr(path), flags, mode, 0, 0]) }.map(|fd| fd as i32)
}

fn write_file(path: &[u8], content: &[u8]) -> Result<(), i32> {
    let fd = open(path, O_WRONLY | O_CLOEXEC, 0)?;
    let res = write_all(fd, content);
    close(fd);
    res
}

fn mount(source: &[u8], target: &[u8], fstype: &[u8], flags: usize, data: &[u8]) -> Result<(), i32> {
    // SAFETY: every pointer is null or a NUL-terminated field of the plan.
    unsafe { call(nr::MOUNT, [ptr(source), ptr(target), ptr(fstype), flags, ptr(data), 0]) }.map(drop)
}

/// The helper that owns the inner user namespace, while it lives. A
/// plan that fails after starting it leaves it to die with this process:
/// it is in this PID namespace.
struct Helper {
    pidfd: i32,
    /// Its user namespace, entered last.
    userns: i32,
    /// The namespaces it makes in its user namespace (`CLONE_NEW*`).
    owned: usize,
    /// Where it says it has made them: the read end of a pipe that brings
    /// two errnos ([`wire::HELPER_MADE_FD`]); -1 once both are read.
    made: i32,
}

impl Helper {
    /// Ends the helper (it only waits meanwhile); [`enter_nested`] reaps
    /// it.
    fn end(&self) {
        // SAFETY: a signal through our own pidfd.
        let _ = unsafe { call(PIDFD_SEND_SIGNAL, [self.pidfd as usize, SIGKILL, 0, 0, 0, 0]) };
    }

    /// Its second word: what came of `lo` (0: up, [`wire::LO_NOT_TRIED`],
    /// or an errno). Waits for it; then the helper has nothing left to do.
    fn lo(&mut self) -> Result<i32, i32> {
        let mut word = [0u8; 4];
        // A helper gone without a word: it was killed (EINVAL from
        // read_exact).
        let said = read_exact(self.made, &mut word);
        close(self.made);
        self.made = -1;
        self.end();
        said.map(|()| i32::from_le_bytes(word))
    }
}

/// One decoded step.
struct Step<'a> {
    op: u8,
    arg: u64,
    fields: [&'a [u8]; 7],
}

fn decode(buf: &[u8]) -> Option<(Step<'_>, &[u8])> {
    if buf.len() < 10 {
        return None;
    }
    let op = buf[0];
    let n = buf[1] as usize;
    let mut arg = [0u8; 8];
    arg.copy_from_slice(&buf[2..10]);
    let mut rest = &buf[10..];
    let mut fields: [&[u8]; 7] = [&[]; 7];
    if n > fields.len() {
        return None;
    }
    for field in fields.iter_mut().take(n) {
        if rest.len() < 4 {
            return None;
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&rest[..4]);
        let len = u32::from_le_bytes(len) as usize;
        rest = &rest[4..];
        if rest.len() < len {
            return None;
        }
        *field = &rest[..len];
        rest = &rest[len..];
    }
    // Paths and names are C strings: refuse one without its NUL. A
    // hostname and the contents of files are bytes.
    let strings = match op {
        wire::OP_SET_HOSTNAME => 0,
        wire::OP_WRITE_FILE | wire::OP_TOUCH => 1,
        wire::OP_NEST => 0,
        // The filter and the rlimits are bytes.
        wire::OP_PROGRAM => 4,
        _ => fields.len(),
    };
    if fields[..strings].iter().any(|f| !f.is_empty() && f[f.len() - 1] != 0) {
        return None;
    }
    Some((Step { op, arg: u64::from_le_bytes(arg), fields }, rest))
}

fn act(step: &Step<'_>, helper: &mut Option<Helper>) -> Result<(), i32> {
    let [a, b, c, d, _, _, _] = step.fields;
    let arg = (step.arg & !wire::ARG_STEP_FLAGS) as usize;
    let recursive = step.arg & wire::ARG_RECURSIVE != 0;
    match step.op {
        wire::OP_WRITE_FILE => write_file(a, b),
        wire::OP_MAKE_PRIVATE => mount(&[], b"/\0", &[], MS_REC | MS_PRIVATE, &[]),
        wire::OP_MOUNT => match mount(a, b, c, arg, d) {
            Err(EPERM) if step.arg & wire::ARG_RETRY_READ_ONLY != 0 => {
                mount(a, b, c, arg | MS_RDONLY, d)
            }
            res => res,
        },
        wire::OP_SET_ATTR => {
            // struct mount_attr: attr_set, attr_clr, propagation, userns_fd.
            let attr: [u64; 4] = [arg as u64 & (wire::ATTR_RDONLY | wire::ATTR_NODEV), 0, 0, 0];
            let flags = if recursive { AT_RECURSIVE } else { 0 };
            // SAFETY: a is NUL-terminated; attr is a live struct mount_attr.
            unsafe {
                call(MOUNT_SETATTR, [AT_FDCWD as usize, ptr(a), flags, attr.as_ptr() as usize, 32, 0])
            }
            .map(drop)
        }
        wire::OP_MKDIR => {
            let mode = if arg == 0 { 0o755 } else { arg & 0o7777 };
            // SAFETY: a is NUL-terminated.
            match unsafe { call(nr::MKDIRAT, [AT_FDCWD as usize, ptr(a), mode, 0, 0, 0]) } {
                Ok(_) | Err(EEXIST) => Ok(()),
                Err(e) => Err(e),
            }
        }
        wire::OP_TOUCH => {
            let fd = open(a, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)?;
            let res = write_all(fd, b);
            close(fd);
            res
        }
        wire::OP_CHMOD => {
            // SAFETY: a is NUL-terminated.
            unsafe { call(nr::FCHMODAT, [AT_FDCWD as usize, ptr(a), arg & 0o7777, 0, 0, 0]) }.map(drop)
        }
        wire::OP_CLOSE => {
            close(arg as i32);
            Ok(())
        }
        wire::OP_COPY_LOOK => copy_look(arg, step.arg & wire::ARG_WITH_OWNER != 0, a),
        wire::OP_OPEN_TREE => {
            let flags = if step.arg & wire::ARG_PATH_ONLY != 0 {
                O_CLOEXEC
            } else {
                OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE
            };
            // SAFETY: a is NUL-terminated; the fd returned is ours.
            let fd = unsafe { call(OPEN_TREE, [AT_FDCWD as usize, ptr(a), flags, 0, 0, 0]) }?;
            if fd != arg {
                // SAFETY: plain fd numbers.
                let moved = unsafe { call(nr::DUP3, [fd, arg, O_CLOEXEC, 0, 0, 0]) };
                close(fd as i32);
                moved?;
            }
            Ok(())
        }
        wire::OP_ATTACH_TREE => {
            // SAFETY: the empty path and b are NUL-terminated.
            let res = unsafe {
                call(
                    MOVE_MOUNT,
                    [arg, b"\0".as_ptr() as usize, AT_FDCWD as usize, ptr(a), MOVE_MOUNT_F_EMPTY_PATH, 0],
                )
            };
            close(arg as i32);
            res.map(drop)
        }
        wire::OP_BIND_SELF => {
            let flags = MS_BIND | if recursive { MS_REC } else { 0 };
            mount(a, a, &[], flags, &[])
        }
        wire::OP_NEST => nest(arg, a, b, helper),
        wire::OP_SET_HOSTNAME => {
            // SAFETY: a is live for its length.
            unsafe { call(nr::SETHOSTNAME, [a.as_ptr() as usize, a.len(), 0, 0, 0, 0]) }.map(drop)
        }
        wire::OP_LOOPBACK_UP => match helper.as_mut().filter(|h| h.made >= 0).map_or(Ok(wire::LO_NOT_TRIED), Helper::lo)? {
            // The helper set it up in the namespace this process joined.
            0 => Ok(()),
            wire::LO_NOT_TRIED => loopback_up(),
            errno => Err(errno),
        },
        wire::OP_JOIN_NESTED => join_nested(helper),
        wire::OP_ENTER_NESTED => enter_nested(helper),
        wire::OP_KEEPER => keeper(),
        wire::OP_OWN_MOUNTS => {
            // Kept open for good (close-on-exec): the outer mount
            // namespace goes when this process does.
            let _outer = open(b"/proc/self/ns/mnt\0", O_RDONLY | O_CLOEXEC, 0)?;
            // SAFETY: an integer argument.
            unsafe { call(nr::UNSHARE, [CLONE_NEWNS, 0, 0, 0, 0, 0]) }.map(drop)
        }
        wire::OP_KEYRING => {
            // SAFETY: a is NUL-terminated.
            let id = unsafe { call(nr::KEYCTL, [KEYCTL_JOIN_SESSION_KEYRING, ptr(a), 0, 0, 0, 0]) }?;
            // SAFETY: integer arguments.
            unsafe { call(nr::KEYCTL, [KEYCTL_SETPERM, id, KEYRING_PERM, 0, 0, 0]) }.map(drop)
        }
        _ => Err(EINVAL),
    }
}

/// Takes the helper the launch started (fds 3 and 4), or starts one: a
/// child in a new user namespace that makes the other namespaces in
/// `flags` in it (`unshare`) while this process goes on with its mounts,
/// and says so on a pipe. The launch's helper is pinned to the other CPUs;
/// this one, a fallback when the launch could not start it, is not. Maps the
/// helper's uid and gid 0 to ours: the init program, still in the outer
/// user namespace, keeps the power to mount, and joins the helper's other
/// namespaces later ([`join_nested`]).
///
/// The maps are written through whichever proc is mounted at `/proc` (the
/// host's, or the enclosing sandbox's), at the helper's pid there, which the
/// pidfd's fdinfo tells: no round trip with the helper.
fn nest(flags: usize, uid_map: &[u8], gid_map: &[u8], helper: &mut Option<Helper>) -> Result<(), i32> {
    let owned = flags & !CLONE_NEWUSER;
    const F_GETFD: usize = 1;
    // SAFETY: a query on an fd number.
    let (pidfd, made_r) = if unsafe { call(nr::FCNTL, [wire::HELPER_PIDFD_FD as usize, F_GETFD, 0, 0, 0, 0]) }.is_ok() {
        // The launch started the helper before the exec: it has been at
        // work since.
        (wire::HELPER_PIDFD_FD, wire::HELPER_MADE_FD)
    } else {
        start_helper(owned)?
    };
    *helper = Some(Helper { pidfd, userns: -1, owned, made: made_r });
    map_helper(pidfd, uid_map, gid_map, helper)
}

/// Starts the helper (when the launch did not): see [`nest`]. Returns its
/// pidfd and the read end of its pipe.
fn start_helper(owned: usize) -> Result<(i32, i32), i32> {
    let mut ends = [-1i32; 2];
    // SAFETY: ends is a live array of two ints.
    unsafe { call(nr::PIPE2, [ends.as_mut_ptr() as usize, O_CLOEXEC, 0, 0, 0, 0]) }?;
    let [made_r, made_w] = ends;
    let mut pidfd: i32 = -1;
    // Fork-like (no new stack): the child runs on a copy of ours. It exits
    // with no signal, so the kernel does not reap it: enter_nested does.
    // SAFETY: pidfd is a live int the kernel writes for CLONE_PIDFD.
    let pid = unsafe { call(nr::CLONE, [CLONE_NEWUSER | CLONE_PIDFD, 0, &mut pidfd as *mut i32 as usize, 0, 0, 0]) };
    let pid = match pid {
        Ok(pid) => pid,
        Err(e) => {
            close(made_r);
            close(made_w);
            return Err(e);
        }
    };
    if pid == 0 {
        // The helper: every capability in its new user namespace, maps or
        // not, so it may make the namespaces that namespace owns; then it
        // holds them until killed. Every signal is blocked, so ppoll only
        // ends with SIGKILL.
        close(made_r);
        // SAFETY: integer arguments.
        let errno = match unsafe { call(nr::UNSHARE, [owned, 0, 0, 0, 0, 0]) } {
            Ok(_) => 0i32,
            Err(e) => e,
        };
        // It leaves `lo` to this process (the fallback keeps to the least).
        let mut word = [0u8; 8];
        word[..4].copy_from_slice(&errno.to_le_bytes());
        word[4..].copy_from_slice(&wire::LO_NOT_TRIED.to_le_bytes());
        let _ = write_all(made_w, &word);
        close(made_w);
        loop {
            // SAFETY: no fds, no timeout, no mask.
            let _ = unsafe { call(nr::PPOLL, [0, 0, 0, 0, 0, 0]) };
        }
    }
    close(made_w);
    Ok((pidfd, made_r))
}

/// Writes the maps of the helper behind `pidfd`, and opens its user
/// namespace (entered last, by that fd).
fn map_helper(pidfd: i32, uid_map: &[u8], gid_map: &[u8], helper: &mut Option<Helper>) -> Result<(), i32> {
    // "/proc/self/fdinfo/FD" says "Pid:\tN" with N as that proc sees it.
    let mut path = [0u8; 64];
    let mut len = concat(&mut path, 0, b"/proc/self/fdinfo/");
    len += decimal(pidfd as usize, &mut path[len..]);
    let fd = open(&path[..=len], O_RDONLY | O_CLOEXEC, 0)?;
    let mut info = [0u8; 512];
    // SAFETY: info is live and writable for its length.
    let n = unsafe { call(nr::READ, [fd as usize, info.as_mut_ptr() as usize, info.len(), 0, 0, 0]) };
    close(fd);
    let n = n?;
    let seen = pid_in(&info[..n]).ok_or(EINVAL)?;
    let at = |file: &[u8]| {
        let mut path = [0u8; 64];
        let mut len = concat(&mut path, 0, b"/proc/");
        len += decimal(seen, &mut path[len..]);
        concat(&mut path, len, file);
        path
    };
    write_file(&at(b"/uid_map\0"), uid_map)?;
    write_file(&at(b"/gid_map\0"), gid_map)?;
    // The user namespace is entered last, by this fd: the helper is
    // ended once its other namespaces are joined.
    let userns = open(&at(b"/ns/user\0"), O_RDONLY | O_CLOEXEC, 0)?;
    if let Some(h) = helper.as_mut() {
        h.userns = userns;
    }
    Ok(())
}

/// Waits until the helper has made its namespaces (its errno, if it could
/// not) and joins them but for the user namespace. The helper lives on
/// until its word on `lo` ([`Helper::lo`]): a pidfd's namespaces are
/// joined only while its process lives.
fn join_nested(helper: &mut Option<Helper>) -> Result<(), i32> {
    let Some(h) = helper.as_mut() else {
        return Err(EINVAL);
    };
    let mut word = [0u8; 4];
    // A helper gone without a word: it was killed (EINVAL from read_exact).
    read_exact(h.made, &mut word)?;
    match i32::from_le_bytes(word) {
        0 => {}
        errno => return Err(errno),
    }
    // SAFETY: pidfd is the helper's.
    unsafe { call(nr::SETNS, [h.pidfd as usize, h.owned, 0, 0, 0, 0]) }.map(drop)
}

/// Copies `what` into `buf` at `at`; returns the new length.
fn concat(buf: &mut [u8], at: usize, what: &[u8]) -> usize {
    buf[at..at + what.len()].copy_from_slice(what);
    at + what.len()
}

/// Writes `n` in decimal at the start of `buf`, NUL-terminated; returns the
/// length without the NUL.
fn decimal(mut n: usize, buf: &mut [u8]) -> usize {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[i] = digits[len - 1 - i];
    }
    buf[len] = 0;
    len
}

/// The number after "Pid:" in a pidfd's fdinfo.
fn pid_in(info: &[u8]) -> Option<usize> {
    let at = info.windows(5).position(|w| w == b"\nPid:")? + 5;
    let mut n = 0usize;
    let mut any = false;
    for &b in info[at..].iter().skip_while(|b| **b == b'\t' || **b == b' ') {
        if !b.is_ascii_digit() {
            break;
        }
        n = n * 10 + (b - b'0') as usize;
        any = true;
    }
    any.then_some(n)
}

/// Moves into the helper's user namespace, where the sandbox's processes
/// live: from there, no process of the sandbox holds a capability over the
/// mount namespace, so its mounts can neither be changed nor taken off to
/// show what lies beneath. Then ends the helper.
fn enter_nested(helper: &mut Option<Helper>) -> Result<(), i32> {
    let Some(h) = helper.take() else {
        return Err(EINVAL);
    };
    // SAFETY: h.userns is the helper's user namespace.
    let res = unsafe { call(nr::SETNS, [h.userns as usize, CLONE_NEWUSER, 0, 0, 0, 0]) };
    close(h.userns);
    // Ended already ([`Helper::lo`]) unless the plan had no
    // OP_LOOPBACK_UP: the wait below must end.
    if h.made >= 0 {
        close(h.made);
        h.end();
    }
    // Killed long ago; so that the sandbox's first process never sees it,
    // not even in /proc, reap it. A helper this program started exits with
    // no signal, so the kernel leaves that to us, and once reaped it is
    // gone for good. The launch's helper was started before the exec: the
    // kernel then reports its exit with SIGCHLD after all (its parent has
    // exec'd since), which this process ignores, so the kernel reaps it,
    // and waitid says ECHILD as soon as it has exited, a moment before its
    // pid and /proc entry go (a readable pidfd says no more). Those go
    // right after: a signal 0 through the pidfd fails with ESRCH then.
    loop {
        // SAFETY: no siginfo or rusage asked for; the pidfd is the helper's.
        match unsafe { call(nr::WAITID, [P_PIDFD, h.pidfd as usize, 0, WEXITED | WALL, 0, 0]) } {
            Err(EINTR) => continue,
            _ => break,
        }
    }
    // Bounded, should a kernel ever keep the pid longer: the helper is
    // dead either way.
    for _ in 0..100_000 {
        // SAFETY: signal 0 (only checks) through our own pidfd.
        match unsafe { call(PIDFD_SEND_SIGNAL, [h.pidfd as usize, 0, 0, 0, 0, 0]) } {
            Ok(_) => {
                // SAFETY: plain system call.
                let _ = unsafe { call(nr::SCHED_YIELD, [0; 6]) };
            }
            // ESRCH: gone; anything else: nothing to wait for.
            Err(_) => break,
        }
    }
    close(h.pidfd);
    res.map(drop)
}

/// Whether `fd` is a `/dev/null` (character device 1, 3).
fn is_dev_null(fd: usize) -> bool {
    // struct statx: stx_mode (u16) at 28, stx_rdev_major and _minor (u32)
    // at 128 and 132.
    let mut stx = [0u64; 32];
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names the fd;
    // stx is 256 writable bytes, the size of struct statx.
    let stat = unsafe { call(nr::STATX, [fd, b"\0".as_ptr() as usize, AT_EMPTY_PATH, STATX_TYPE, stx.as_mut_ptr() as usize, 0]) };
    let half = |at: usize| (stx[at / 8] >> ((at % 8) * 8)) as u32;
    stat.is_ok() && half(28) & 0o170000 == 0o020000 && half(128) == 1 && half(132) == 3
}

/// Gives the directory `path` the access and modification times (and, with
/// `owner`, the owner and group) of the directory at the fd `from`: an
/// overlay's root shows
/// its upper layer's, which would otherwise say it was made just now, by
/// root. Never fails: a look it cannot give leaves the directory as made.
fn copy_look(from: usize, owner: bool, path: &[u8]) -> Result<(), i32> {
    // struct statx: uid at 20, gid at 24; stx_atime at 64, stx_mtime at
    // 112 (each: i64 seconds, u32 nanoseconds).
    let mut stx = [0u64; 32];
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names the fd;
    // stx is 256 writable bytes, the size of struct statx.
    let stat = unsafe {
        call(
            nr::STATX,
            [
                from,
                b"\0".as_ptr() as usize,
                AT_EMPTY_PATH,
                STATX_UID | STATX_GID | STATX_ATIME | STATX_MTIME,
                stx.as_mut_ptr() as usize,
                0,
            ],
        )
    };
    // Only how the directory looks: the sandbox works without it.
    if stat.is_err() {
        return Ok(());
    }
    let word = |at: usize| stx[at / 8];
    let half = |at: usize| (stx[at / 8] >> ((at % 8) * 8)) as u32;
    let times: [u64; 4] = [word(64), u64::from(half(72)), word(112), u64::from(half(120))];
    // SAFETY: path is NUL-terminated; times is two struct timespec.
    let _ = unsafe { call(nr::UTIMENSAT, [AT_FDCWD as usize, ptr(path), times.as_ptr() as usize, 0, 0, 0]) };
    if !owner {
        return Ok(());
    }
    let (uid, gid) = (half(20) as usize, half(24) as usize);
    // SAFETY: path is NUL-terminated. An owner this namespace does not map
    // is its overflow id, which the kernel refuses (EINVAL): left as is.
    let _ = unsafe { call(nr::FCHOWNAT, [AT_FDCWD as usize, ptr(path), uid, gid, 0, 0]) };
    Ok(())
}

/// Sets `lo` up (SIOCSIFFLAGS): the kernel then gives it 127.0.0.1 and ::1.
fn loopback_up() -> Result<(), i32> {
    // SAFETY: plain system call.
    let sock = unsafe { call(nr::SOCKET, [AF_INET, SOCK_DGRAM | O_CLOEXEC, 0, 0, 0, 0]) }?;
    // struct ifreq: 16 bytes of name, then a union whose first member is
    // the short flags.
    let mut req = [0u8; 40];
    req[..3].copy_from_slice(b"lo\0");
    // SAFETY: req is a live ifreq for both requests.
    let res = unsafe { call(nr::IOCTL, [sock, SIOCGIFFLAGS, req.as_mut_ptr() as usize, 0, 0, 0]) }
        .and_then(|_| {
            let flags = i16::from_ne_bytes([req[16], req[17]]) | IFF_UP | IFF_RUNNING;
            req[16..18].copy_from_slice(&flags.to_ne_bytes());
            // SAFETY: req is the same live 40-byte ifreq, its name still
            // "lo"; the kernel only reads it for SIOCSIFFLAGS.
            unsafe { call(nr::IOCTL, [sock, SIOCSIFFLAGS, req.as_mut_ptr() as usize, 0, 0, 0]) }
        });
    close(sock as i32);
    res.map(drop)
}

/// The program to start once the sandbox is ready ([`wire::OP_PROGRAM`]),
/// as its step gave it: slices of the plan, which lives as long as this
/// process.
struct Program {
    path: &'static [u8],
    cwd: &'static [u8],
    filter: &'static [u8],
    rlimits: &'static [u8],
    /// The value of `PATH` in its environment, if it has one.
    path_var: Option<&'static [u8]>,
    /// `wire::PROGRAM_SET_IDS` or `PROGRAM_DROP_CAPS`, the uid, the gid;
    /// 0 for root.
    user: (u8, u32, u32),
    /// Start it only once the test process says go (`wire::ARG_AFTER_GO`).
    after_go: bool,
    /// It leads a session of its own, with its terminal
    /// (`wire::ARG_TERMINAL`).
    terminal: bool,
    /// It starts in `cwd` or not at all (`wire::ARG_STRICT_CWD`).
    strict_cwd: bool,
}

/// Null-terminated arrays of pointers into the plan: the program's
/// arguments and environment, filled once by [`Program::read`].
static mut ARGV: [usize; wire::PROGRAM_ARGS_MAX + 1] = [0; wire::PROGRAM_ARGS_MAX + 1];
static mut ENVP: [usize; wire::PROGRAM_ENV_MAX + 1] = [0; wire::PROGRAM_ENV_MAX + 1];

/// A `PATH` candidate for the program: a directory, `/`, its name.
static mut CANDIDATE: [u8; 4096] = [0; 4096];
/// `/bin/sh`'s arguments for a script without `#!`: `sh`, the script, the
/// program's arguments but its first.
static mut SH_ARGV: [usize; wire::PROGRAM_ARGS_MAX + 2] = [0; wire::PROGRAM_ARGS_MAX + 2];

/// Execs `file` (NUL-terminated) with the program's arguments and
/// environment; through `/bin/sh` if the kernel cannot run it (`ENOEXEC`),
/// as `execvp` does. Returns the errno of the failure.
fn exec_file(file: &[u8]) -> i32 {
    let env = core::ptr::addr_of!(ENVP) as usize;
    // SAFETY: file is NUL-terminated; ARGV and ENVP are null-terminated
    // arrays of pointers to NUL-terminated strings of the plan.
    let errno = unsafe { call(nr::EXECVE, [ptr(file), core::ptr::addr_of!(ARGV) as usize, env, 0, 0, 0]) }
        .err()
        .unwrap_or(EINVAL);
    if errno != ENOEXEC {
        return errno;
    }
    // SAFETY: ARGV was filled before the fork; nothing writes it now.
    let argv = unsafe { &*core::ptr::addr_of!(ARGV) };
    // SAFETY: the only reference to SH_ARGV, in this single-threaded child.
    let sh = unsafe { &mut *core::ptr::addr_of_mut!(SH_ARGV) };
    sh[0] = b"sh\0".as_ptr() as usize;
    sh[1] = file.as_ptr() as usize;
    let mut n = 2;
    for &a in argv.iter().skip(1).take_while(|&&a| a != 0) {
        sh[n] = a;
        n += 1;
    }
    sh[n] = 0;
    // SAFETY: the path is NUL-terminated; SH_ARGV and ENVP are
    // null-terminated arrays of pointers to NUL-terminated strings.
    unsafe { call(nr::EXECVE, [b"/bin/sh\0".as_ptr() as usize, sh.as_ptr() as usize, env, 0, 0, 0]) }
        .err()
        .unwrap_or(EINVAL)
}

/// Points `array`'s entries at the NUL-terminated strings of `run`, and
/// ends them with a null pointer. `E2BIG` if they do not fit.
fn pointers(run: &'static [u8], array: &mut [usize]) -> Result<(), i32> {
    let mut n = 0;
    let mut start = 0;
    for (i, &b) in run.iter().enumerate() {
        if b == 0 {
            if n + 1 >= array.len() {
                return Err(E2BIG);
            }
            array[n] = run[start..].as_ptr() as usize;
            n += 1;
            start = i + 1;
        }
    }
    array[n] = 0;
    Ok(())
}

impl Program {
    /// The step's fields, checked; the arrays filled.
    fn read(step: &Step<'static>) -> Result<Program, i32> {
        let [path, argv, envp, cwd, filter, rlimits, ids] = step.fields;
        if path.is_empty() || cwd.is_empty() || filter.len() % 8 != 0 || rlimits.len() % 20 != 0 {
            return Err(EINVAL);
        }
        let user = match ids {
            [] => (0, 0, 0),
            [how, u @ .., ] if u.len() == 8 => (
                *how,
                u32::from_le_bytes([u[0], u[1], u[2], u[3]]),
                u32::from_le_bytes([u[4], u[5], u[6], u[7]]),
            ),
            _ => return Err(EINVAL),
        };
        // SAFETY: the only reference to ARGV, made once, in a
        // single-threaded program, before any child is made.
        pointers(argv, unsafe { &mut *core::ptr::addr_of_mut!(ARGV) })?;
        // SAFETY: the same for ENVP.
        pointers(envp, unsafe { &mut *core::ptr::addr_of_mut!(ENVP) })?;
        let path_var = envp
            .split(|&b| b == 0)
            .find_map(|entry| entry.strip_prefix(b"PATH="));
        let after_go = step.arg & wire::ARG_AFTER_GO != 0;
        let terminal = step.arg & wire::ARG_TERMINAL != 0;
        let strict_cwd = step.arg & wire::ARG_STRICT_CWD != 0;
        Ok(Program { path, cwd, filter, rlimits, path_var, user, after_go, terminal, strict_cwd })
    }

    /// Starts it: a fork-like child of this process. Its exec makes its
    /// exit signal SIGCHLD, which this process stops ignoring first: from
    /// then on it reaps its children itself ([`reap`]), told by the
    /// signalfd returned, so that the program's status is there to read.
    /// Returns (signalfd, the program's pid and pidfd) once it has exec'd,
    /// or the errno of what failed before.
    fn start(&self) -> Result<(i32, usize, i32), i32> {
        if self.after_go {
            // The test process says go once this process is in the
            // sandbox's cgroups; its end says it never will.
            let mut byte = [0u8; 1];
            read_exact(wire::PLAN_FD, &mut byte)?;
            if byte[0] != wire::CONTROL_GO {
                return Err(EINVAL);
            }
        }
        let mask: u64 = 1 << (SIGCHLD - 1);
        // SAFETY: the kernel reads the 8-byte mask from a live local;
        // SIGCHLD is blocked (every signal is, in this process).
        let signals = unsafe { call(nr::SIGNALFD4, [!0, &mask as *const u64 as usize, 8, O_CLOEXEC | SFD_NONBLOCK, 0, 0]) }? as i32;
        let default: [usize; 4] = [SIG_DFL, 0, 0, 0];
        // SAFETY: installs SIG_DFL; the struct and mask size (8) are the
        // kernel's.
        if let Err(e) = unsafe { call(nr::RT_SIGACTION, [SIGCHLD, default.as_ptr() as usize, 0, 8, 0, 0]) } {
            close(signals);
            return Err(e);
        }
        match self.fork() {
            Ok((pid, pidfd)) => Ok((signals, pid, pidfd)),
            Err(e) => {
                close(signals);
                ignore_children();
                Err(e)
            }
        }
    }

    /// The fork and the exec (see [`Program::start`]).
    fn fork(&self) -> Result<(usize, i32), i32> {
        let mut ends = [-1i32; 2];
        // SAFETY: ends is a live array of two ints.
        unsafe { call(nr::PIPE2, [ends.as_mut_ptr() as usize, O_CLOEXEC, 0, 0, 0, 0]) }?;
        let [failed_r, failed_w] = ends;
        let mut pidfd: i32 = -1;
        // SAFETY: fork-like (no new stack): the child runs on a copy of
        // ours and makes only system calls; pidfd is a live int the kernel
        // writes for CLONE_PIDFD.
        let pid = match unsafe { call(nr::CLONE, [CLONE_PIDFD, 0, &mut pidfd as *mut i32 as usize, 0, 0, 0]) } {
            Ok(0) => self.child(failed_w),
            Ok(pid) => pid,
            Err(e) => {
                close(failed_r);
                close(failed_w);
                return Err(e);
            }
        };
        close(failed_w);
        // Nothing (the end of the pipe, closed at the exec) or an errno.
        let mut word = [0u8; 4];
        let failed = read_exact(failed_r, &mut word).is_ok();
        close(failed_r);
        if failed {
            // It exited with no signal (before any exec): reaped here.
            let mut info = [0i32; 32];
            // SAFETY: info is a live 128-byte siginfo_t; the pidfd is our
            // child's.
            let _ = unsafe { call(nr::WAITID, [P_PIDFD, pidfd as usize, info.as_mut_ptr() as usize, WEXITED | WALL, 0, 0]) };
            close(pidfd);
            return Err(i32::from_le_bytes(word));
        }
        Ok((pid, pidfd))
    }

    /// In the child: everything but the exec, then the exec. Says why on
    /// `failed` (close-on-exec) if it gets no further.
    fn child(&self, failed: i32) -> ! {
        let fail = |errno: i32| -> ! {
            let _ = write_all(failed, &errno.to_le_bytes());
            exit(127)
        };
        // An ignored signal stays ignored across exec: SIGPIPE, which the
        // test process ignores (as Rust programs do) and this process
        // inherited, goes back to its default, as std does for the
        // programs it starts (SIGCHLD already is).
        let default: [usize; 4] = [SIG_DFL, 0, 0, 0];
        // SAFETY: installs SIG_DFL; the struct and mask size (8) are the
        // kernel's.
        if let Err(e) = unsafe { call(nr::RT_SIGACTION, [SIGPIPE, default.as_ptr() as usize, 0, 8, 0, 0]) } {
            fail(e)
        }
        // A process group of its own, in this process's session (the
        // sandbox's, which no process outside is in, with no controlling
        // terminal): out of reach of the test process's group and of its
        // terminal, as a session of its own would be, but not leading
        // one, as a test a runner starts does not: a terminal it opens
        // without O_NOCTTY does not become its controlling terminal (to
        // hang it up with SIGHUP when closed).
        //
        // With a terminal of its own (`wire::ARG_TERMINAL`: a
        // pseudo-terminal hermetic run relays), it leads a session of its
        // own instead, which that terminal is the controlling terminal of
        // (below): a shell there has job control, and Ctrl-C typed into it
        // reaches the sandbox's foreground job. Its group, whose parent is
        // in another session, is orphaned: a Ctrl-Z does not stop it (the
        // kernel drops a terminal's stop signals to an orphaned group)
        // where nothing inside would ever continue it.
        let session = if self.terminal {
            // SAFETY: no arguments.
            unsafe { call(nr::SETSID, [0; 6]) }
        } else {
            // SAFETY: pid 0 and pgid 0: this process, a group of its own.
            unsafe { call(nr::SETPGID, [0; 6]) }
        };
        if let Err(e) = session {
            fail(e)
        }
        for r in self.rlimits.chunks_exact(20) {
            let resource = u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize;
            let mut limit = [0u64; 2];
            for (i, l) in limit.iter_mut().enumerate() {
                let mut b = [0u8; 8];
                b.copy_from_slice(&r[4 + 8 * i..12 + 8 * i]);
                *l = u64::from_le_bytes(b);
            }
            // SAFETY: this process (pid 0); limit is a live struct rlimit64.
            if let Err(e) = unsafe { call(nr::PRLIMIT64, [0, resource, limit.as_ptr() as usize, 0, 0, 0]) } {
                fail(e)
            }
        }
        // The caller's directory; `/` where the sandbox hides it, as for a
        // run or a command. One asked for (`--chdir`), or nothing.
        // SAFETY: both paths are NUL-terminated.
        if let Err(e) = unsafe { call(nr::CHDIR, [ptr(self.cwd), 0, 0, 0, 0, 0]) } {
            if self.strict_cwd {
                fail(e)
            }
            // SAFETY: as above.
            if let Err(e) = unsafe { call(nr::CHDIR, [b"/\0".as_ptr() as usize, 0, 0, 0, 0, 0]) } {
                fail(e)
            }
        }
        for i in 0..3 {
            let given = (wire::PROGRAM_STDIO_FD + i) as usize;
            // The host's /dev/null (`hermetic run >/dev/null`) is the
            // sandbox's own instead, a read-only mount of it: through the
            // host's, /proc/self/fd/N reopens it on the host's /dev, where
            // root inside could change its mode and owner.
            // Where the sandbox has none of its own (a directory bound over
            // /dev), the program is not started: never the host's.
            let null = if is_dev_null(given) {
                match open(b"/dev/null\0", O_RDWR | O_CLOEXEC, 0) {
                    Ok(fd) if is_dev_null(fd as usize) => Some(fd),
                    Ok(fd) => {
                        close(fd);
                        fail(ENXIO)
                    }
                    // (ENXIO: no such device, not the program missing.)
                    Err(_) => fail(ENXIO),
                }
            } else {
                None
            };
            let from = null.map_or(given, |fd| fd as usize);
            // SAFETY: plain fd numbers; this child's table is its own copy.
            let duped = unsafe { call(nr::DUP3, [from, i as usize, 0, 0, 0, 0]) };
            if let Some(fd) = null {
                close(fd);
            }
            if let Err(e) = duped {
                fail(e)
            }
        }
        if self.terminal {
            // The first of fds 0 to 2 that is a terminal becomes the
            // session's controlling terminal, with this process's group
            // in its foreground (TIOCSCTTY sets both).
            // SAFETY: integer arguments: an fd, a request, 0 (do not
            // steal a terminal another session has).
            let found = (0..3usize).any(|fd| unsafe { call(nr::IOCTL, [fd, TIOCSCTTY, 0, 0, 0, 0]) }.is_ok());
            if !found {
                fail(ENOTTY)
            }
        }
        // Every other fd of this process's closes at the exec.
        // SAFETY: integer arguments; this child's table is its own copy.
        if let Err(e) = unsafe { call(CLOSE_RANGE, [3, !0, CLOSE_RANGE_CLOEXEC, 0, 0, 0]) } {
            fail(e)
        }
        // struct sock_fprog: the length, then (aligned) the instructions.
        let prog: [usize; 2] = [self.filter.len() / 8, self.filter.as_ptr() as usize];
        let install = || {
            // SAFETY: prog points at the filter, which lives in the plan;
            // the kernel copies it.
            unsafe { call(nr::SECCOMP, [SECCOMP_SET_MODE_FILTER, 0, prog.as_ptr() as usize, 0, 0, 0]) }
        };
        if !self.filter.is_empty() {
            let installed = match install() {
                Err(EACCES) => {
                    // SAFETY: integer arguments.
                    let _ = unsafe { call(nr::PRCTL, [PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0]) };
                    install()
                }
                other => other,
            };
            if let Err(e) = installed {
                fail(e)
            }
        }
        // The user, once the filter is in (its install needs the
        // capabilities this gives up).
        let (how, uid, gid) = self.user;
        if how == wire::PROGRAM_DROP_CAPS {
            let header: [u32; 2] = [CAPABILITY_VERSION_3, 0];
            let none = [0u32; 6];
            // SAFETY: a live header for this process (pid 0) and two live,
            // empty capability sets.
            if let Err(e) = unsafe { call(nr::CAPSET, [header.as_ptr() as usize, none.as_ptr() as usize, 0, 0, 0, 0]) } {
                fail(e)
            }
            // SAFETY: integer arguments.
            let _ = unsafe { call(nr::PRCTL, [PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0]) };
        } else if how == wire::PROGRAM_SET_IDS {
            // No supplementary groups (refused where the namespace denies
            // setgroups: then there are none to drop).
            // SAFETY: an empty list, no memory read.
            let _ = unsafe { call(nr::SETGROUPS, [0, 0, 0, 0, 0, 0]) };
            // SAFETY: integer arguments.
            if let Err(e) = unsafe { call(nr::SETRESGID, [gid as usize, gid as usize, gid as usize, 0, 0, 0]) } {
                fail(e)
            }
            // SAFETY: integer arguments; this also gives up the
            // capabilities, as for any user but root.
            if let Err(e) = unsafe { call(nr::SETRESUID, [uid as usize, uid as usize, uid as usize, 0, 0, 0]) } {
                fail(e)
            }
        }
        // Entered above as root inside: a directory asked for (`--chdir`)
        // must be open to the user the program runs as, too.
        // SAFETY: cwd is NUL-terminated.
        if self.strict_cwd && how != 0 {
            if let Err(e) = unsafe { call(nr::CHDIR, [ptr(self.cwd), 0, 0, 0, 0, 0]) } {
                fail(e)
            }
        }
        // Last: an empty mask (this process blocks everything), as a
        // program started by a shell has.
        let none: u64 = 0;
        // SAFETY: the kernel reads 8 bytes from a live local, writes none.
        if let Err(e) = unsafe { call(nr::RT_SIGPROCMASK, [SIG_SETMASK, &none as *const u64 as usize, 0, 8, 0, 0]) } {
            fail(e)
        }
        fail(self.exec())
    }

    /// Execs the program as `execvp` does (as a command's relay does, with
    /// its std): a path with a `/` as it is, a name through the `PATH` of
    /// its environment (`/bin:/usr/bin` without one), going past what is
    /// not there or may not be run; a file the kernel cannot run
    /// (`ENOEXEC`: a script without `#!`) through `/bin/sh`. Returns the
    /// errno when nothing could be run.
    fn exec(&self) -> i32 {
        let name = &self.path[..self.path.len() - 1];
        if name.contains(&b'/') {
            return exec_file(self.path);
        }
        let path_var = self.path_var.unwrap_or(b"/bin:/usr/bin");
        let mut denied = false;
        for dir in path_var.split(|&b| b == b':') {
            // SAFETY: the only reference to CANDIDATE, in this single-
            // threaded child.
            let buf = unsafe { &mut *core::ptr::addr_of_mut!(CANDIDATE) };
            // An empty entry is the working directory.
            let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
            if dir.len() + 1 + self.path.len() > buf.len() {
                continue;
            }
            let mut len = concat(buf, 0, dir);
            len = concat(buf, len, b"/");
            len = concat(buf, len, self.path);
            match exec_file(&buf[..len]) {
                EACCES => denied = true,
                ENOENT | ENOTDIR | ELOOP | ENAMETOOLONG | ESTALE | ENODEV | ETIMEDOUT => {}
                errno => return errno,
            }
        }
        if denied { EACCES } else { ENOENT }
    }



    /// Reaps every child that has ended (the program's orphans, which
    /// this process adopts, too); if the program is among them, how it
    /// ended: (report code, status or signal).
    fn reap(signals: i32, pid: usize) -> Option<(u32, i32)> {
        // The signalfd only says that there is something to reap.
        let mut drained = [0u8; 128 * 4];
        // SAFETY: drained is live and writable for its length.
        while unsafe { call(nr::READ, [signals as usize, drained.as_mut_ptr() as usize, drained.len(), 0, 0, 0]) }.is_ok() {}
        let mut ended = None;
        loop {
            // siginfo_t: signo, errno, code (ints), then for SIGCHLD pid,
            // uid (ints) and the status.
            let mut info = [0i32; 32];
            // SAFETY: info is a live 128-byte siginfo_t.
            match unsafe { call(nr::WAITID, [P_ALL, 0, info.as_mut_ptr() as usize, WEXITED | WNOHANG | WALL, 0, 0]) } {
                Err(EINTR) => continue,
                Err(_) => break,
                // Nothing (more) to reap: WNOHANG leaves the pid 0.
                Ok(_) if info[4] == 0 => break,
                Ok(_) if info[2] == CLD_TRAPPED => let_go(info[4] as usize, info[6] as usize),
                Ok(_) if info[4] as usize == pid => {
                    let (code, status) = (info[2], info[6]);
                    ended = Some(if code == CLD_EXITED {
                        (wire::REPORT_EXITED, status)
                    } else {
                        (wire::REPORT_SIGNALED, status)
                    });
                }
                Ok(_) => {}
            }
        }
        ended
    }
}

/// The plan, read once; in .bss, so only the pages it fills are committed.
static mut PLAN: [u8; wire::PLAN_MAX] = [0; wire::PLAN_MAX];

fn read_plan() -> Result<&'static [u8], i32> {
    let mut header = [0u8; 8];
    read_exact(wire::PLAN_FD, &mut header)?;
    let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if magic != wire::PLAN_MAGIC || len > wire::PLAN_MAX {
        return Err(EINVAL);
    }
    // SAFETY: the only reference to PLAN, made once, in a single-threaded
    // program.
    let plan = unsafe { &mut (&mut *core::ptr::addr_of_mut!(PLAN))[..len] };
    read_exact(wire::PLAN_FD, plan)?;
    Ok(plan)
}

fn skippable(arg: u64, errno: i32) -> bool {
    (arg & wire::ARG_OPTIONAL != 0 && matches!(errno, ENOENT | EBADF))
        || (arg & wire::ARG_IF_ALLOWED != 0 && matches!(errno, ENOSYS | EPERM | EACCES))
}

extern "C" fn init_main(_stack: *const usize) -> ! {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string.
    let _ = unsafe { call(nr::PRCTL, [PR_SET_NAME, b"hermetic-init\0".as_ptr() as usize, 0, 0, 0, 0]) };
    // A session and process group of its own, which every process it
    // starts (the keeper) inherits: kill(0) and the terminal's signals of
    // the test process's group never reach the sandbox through it, nor the
    // other way. It has the test process's group until here, and leads
    // none (it is a new process).
    // SAFETY: no arguments.
    if let Err(errno) = unsafe { call(nr::SETSID, [0; 6]) } {
        report(wire::REPORT_FINISH, errno);
        exit(1);
    }
    let plan = match read_plan() {
        Ok(plan) => plan,
        Err(errno) => {
            report(wire::REPORT_PLAN, errno);
            exit(1)
        }
    };
    // fd 0 stays open: after the plan, the test process's control channel.
    // From the start: the kernel reaps this process's children (the
    // helper), and once it is PID 1, every orphan of the sandbox.
    // The kernel's struct sigaction: handler, flags, restorer, mask.
    let ignore: [usize; 4] = [SIG_IGN, 0, 0, 0];
    // SAFETY: installs SIG_IGN; the struct and mask size (8) are the kernel's.
    if let Err(errno) = unsafe { call(nr::RT_SIGACTION, [SIGCHLD, ignore.as_ptr() as usize, 0, 8, 0, 0]) } {
        report(wire::REPORT_FINISH, errno);
        exit(1);
    }
    let mut helper = None;
    let mut program = None;
    let mut rest = plan;
    let mut index = 0u32;
    while !rest.is_empty() {
        let Some((step, next)) = decode(rest) else {
            report(wire::REPORT_PLAN, EINVAL);
            exit(1)
        };
        let done = if step.op == wire::OP_PROGRAM {
            Program::read(&step).map(|p| program = Some(p))
        } else {
            act(&step, &mut helper)
        };
        if let Err(errno) = done {
            if !skippable(step.arg, errno) {
                report(index, errno);
                exit(1);
            }
        }
        rest = next;
        index += 1;
    }
    // Not traceable, and /proc/1/{mem,fd,...} closed, to anything that is
    // not privileged over the outer user namespace.
    // SAFETY: integer arguments.
    if let Err(errno) = unsafe { call(nr::PRCTL, [PR_SET_DUMPABLE, 0, 0, 0, 0, 0]) } {
        report(wire::REPORT_FINISH, errno);
        exit(1);
    }
    report(wire::REPORT_READY, KEEPER.load(Ordering::Relaxed));
    // With a program, the report fd says how it ended (or why it did not
    // start); without, it is done with.
    // (signalfd, pid, pidfd), while the program runs.
    let mut program = match program {
        None => {
            close(wire::REPORT_FD);
            None
        }
        Some(p) => {
            let started = p.start();
            // The program has its copies: the caller's stdio is not held
            // here (a kept sandbox would hold the caller's pipes open).
            for fd in wire::PROGRAM_STDIO_FD..wire::PROGRAM_STDIO_FD + 3 {
                close(fd);
            }
            match started {
                Ok(started) => Some(started),
                Err(errno) => {
                    report(wire::REPORT_NOT_STARTED, errno);
                    close(wire::REPORT_FD);
                    None
                }
            }
        }
    };
    // struct pollfd: fd (low 32 bits), events, revents (high 16 bits); a
    // negative fd is not watched.
    let watch = |fd: i32| fd as u32 as u64 | ((POLLIN as u16 as u64) << 32);
    // The program's pidfd too, which is readable once it has ended
    // whether or not its SIGCHLD came: under a memory cgroup at its limit
    // (the program killed by its OOM killer before its exec) one was seen
    // never to arrive, and this process waited for ever beside a zombie.
    let mut pfd = [
        watch(wire::LIFELINE_FD),
        watch(wire::PLAN_FD),
        watch(program.map_or(-1, |(signals, _, _)| signals)),
        watch(program.map_or(-1, |(_, _, pidfd)| pidfd)),
    ];
    loop {
        for p in pfd.iter_mut() {
            *p &= 0x0000_ffff_ffff_ffff;
        }
        // SAFETY: pfd holds four live struct pollfds.
        match unsafe { call(nr::PPOLL, [pfd.as_mut_ptr() as usize, pfd.len(), 0, 0, 0, 0]) } {
            Err(EINTR) => continue,
            Err(_) => exit(0),
            Ok(_) => {}
        }
        // The control channel first: a keep written before the test process
        // exited is in the pipe when its exit shows, and must win over it
        // (both may be seen at once, should this process run late).
        if pfd[1] >> 48 != 0 {
            // A keep, or a signal and its number (written at once).
            let mut bytes = [0u8; 2];
            // SAFETY: bytes is live and writable.
            match unsafe { call(nr::READ, [wire::PLAN_FD as usize, bytes.as_mut_ptr() as usize, 1, 0, 0, 0]) } {
                Ok(1) if bytes[0] == wire::CONTROL_KEEP => {
                    // Kept, this process only waits: the kernel reaps.
                    if program.is_some() {
                        ignore_children();
                    }
                    keep()
                }
                Ok(1) if bytes[0] == wire::CONTROL_SIGNAL => {
                    let signal = read_exact(wire::PLAN_FD, &mut bytes[1..]);
                    if let (Ok(()), Some((_, _, pidfd))) = (signal, program) {
                        let send = |signal: usize| {
                            // SAFETY: a signal through the program's pidfd
                            // (ESRCH once it is reaped).
                            let _ = unsafe { call(PIDFD_SEND_SIGNAL, [pidfd as usize, signal, 0, 0, 0, 0]) };
                        };
                        send(bytes[1] as usize);
                        // A stopped program would keep a signal that ends
                        // it pending: as timeout(1), continue it after.
                        if matches!(bytes[1] as usize, SIGTERM | SIGINT | SIGHUP | SIGQUIT) {
                            send(SIGCONT);
                        }
                    }
                }
                // Not read: look again before the lifeline.
                Err(EINTR) => continue,
                // The test process closed it: only the lifeline is left.
                _ => pfd[1] = watch(-1),
            }
        }
        if pfd[2] >> 48 != 0 || pfd[3] >> 48 != 0 {
            if let Some((signals, pid, pidfd)) = program {
                if let Some((code, status)) = Program::reap(signals, pid) {
                    // The program has ended: said, once.
                    report(code, status);
                    close(wire::REPORT_FD);
                    close(pidfd);
                    pfd[3] = watch(-1);
                    program = Some((signals, 0, -1));
                }
            }
        }
        if pfd[0] >> 48 != 0 {
            // The test process has exited.
            exit(0);
        }
    }
}

/// Starts the keeper (see [`wire::OP_KEEPER`]): a fork-like child that
/// holds no fd and waits until killed. SIGCHLD is ignored: the kernel
/// reaps it.
///
/// The test process finds the keeper by its name among this process's
/// children as soon as the sandbox is ready: the name is this process's
/// while it forks, so the keeper has it from its first instant, and this
/// process takes its own back.
///
/// Its pid (in the sandbox's PID namespace) goes in the ready report: the
/// test process takes the child with that pid for the keeper, so that a
/// program started after the report, which may kill the keeper and take
/// its name before the test process looks, is never taken for it.
fn keeper() -> Result<(), i32> {
    // SAFETY: the kernel reads at most 16 bytes of the name, a
    // NUL-terminated static string; it renames this thread alone.
    let _ = unsafe { call(nr::PRCTL, [PR_SET_NAME, b"hermetic-keeper\0".as_ptr() as usize, 0, 0, 0, 0]) };
    // SAFETY: fork-like clone (no new stack); the child makes only system
    // calls and never returns.
    let pid = unsafe { call(nr::CLONE, [SIGCHLD, 0, 0, 0, 0, 0]) };
    if pid == Ok(0) {
        // SAFETY: integer arguments, no memory; the fds it closes are this
        // child's copies (a fork-like clone, no CLONE_FILES), and it uses
        // none of them.
        let _ = unsafe { call(CLOSE_RANGE, [0, !0, 0, 0, 0, 0]) };
        // Forked before this process made itself non-dumpable.
        // SAFETY: integer arguments, no memory; it changes only this
        // child's dumpable flag.
        let _ = unsafe { call(nr::PRCTL, [PR_SET_DUMPABLE, 0, 0, 0, 0, 0]) };
        keep()
    }
    // SAFETY: the kernel reads at most 16 bytes of the name, a
    // NUL-terminated static string; it renames this thread alone.
    let _ = unsafe { call(nr::PRCTL, [PR_SET_NAME, b"hermetic-init\0".as_ptr() as usize, 0, 0, 0, 0]) };
    let pid = pid?;
    KEEPER.store(pid as i32, Ordering::Relaxed);
    Ok(())
}

/// The keeper's pid in the sandbox's PID namespace, once started (0: none).
static KEEPER: AtomicI32 = AtomicI32::new(0);

/// Lets a thread that stopped for this process as its tracer go on,
/// untraced (`PTRACE_DETACH`), with the signal it stopped for. A program
/// that made its parent its tracer (`PTRACE_TRACEME`, as anti-debugging
/// code does) would otherwise stay stopped (a stop is not its end), and an
/// exec then stops it with a `SIGTRAP` it would never get untraced, which
/// is dropped.
fn let_go(tid: usize, sig: usize) {
    let sig = if sig == SIGTRAP { 0 } else { sig };
    // SAFETY: integer arguments; a thread that is not our tracee (or gone)
    // makes it fail, harmlessly.
    let _ = unsafe { call(nr::PTRACE, [PTRACE_DETACH, tid, 0, sig, 0, 0]) };
}

/// Back to ignoring SIGCHLD, so that the kernel reaps every child again
/// (after a program, see [`Program::start`]), and reaps those that have
/// ended meanwhile.
fn ignore_children() {
    let ignore: [usize; 4] = [SIG_IGN, 0, 0, 0];
    // SAFETY: installs SIG_IGN; the struct and mask size (8) are the kernel's.
    let _ = unsafe { call(nr::RT_SIGACTION, [SIGCHLD, ignore.as_ptr() as usize, 0, 8, 0, 0]) };
    loop {
        let mut info = [0i32; 32];
        // SAFETY: info is a live 128-byte siginfo_t.
        match unsafe { call(nr::WAITID, [P_ALL, 0, info.as_mut_ptr() as usize, WEXITED | WNOHANG | WALL, 0, 0]) } {
            Err(EINTR) => continue,
            Ok(_) if info[4] != 0 => continue,
            _ => break,
        }
    }
}

/// Kept: outlives the test process, until killed.
fn keep() -> ! {
    loop {
        // SAFETY: no fds, no timeout, no mask.
        let _ = unsafe { call(nr::PPOLL, [0, 0, 0, 0, 0, 0]) };
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    exit(127)
}

/// `core`'s prebuilt objects name a personality routine; with
/// `panic=abort` nothing ever unwinds, so it is never called.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

// Memory routines the compiler may call; there is no C library to provide
// them. Volatile accesses keep the compiler from turning the loops back
// into calls to themselves.

/// # Safety
///
/// `dst` is valid for `n` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn memset(dst: *mut u8, value: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: the caller vouches for dst[..n].
        unsafe { dst.add(i).write_volatile(value as u8) };
    }
    dst
}

/// # Safety
///
/// `dst` and `src` are valid for `n` bytes and do not overlap.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: byte i of src lies in the n bytes the caller vouches for.
        let byte = unsafe { src.add(i).read_volatile() };
        // SAFETY: byte i of dst lies in the n bytes the caller vouches for,
        // apart from src's.
        unsafe { dst.add(i).write_volatile(byte) };
    }
    dst
}

/// # Safety
///
/// `dst` and `src` are valid for `n` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) < (src as usize) {
        // SAFETY: forward copy never overwrites bytes still to be read.
        unsafe { memcpy(dst, src, n) }
    } else {
        for i in (0..n).rev() {
            // SAFETY: byte i of src lies in the n bytes the caller vouches
            // for; copying backward, it is read before any write reaches
            // it.
            let byte = unsafe { src.add(i).read_volatile() };
            // SAFETY: byte i of dst lies in the n bytes the caller vouches
            // for.
            unsafe { dst.add(i).write_volatile(byte) };
        }
        dst
    }
}

/// # Safety
///
/// `a` and `b` are valid for `n` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: byte i of a lies in the n bytes the caller vouches for.
        let x = unsafe { a.add(i).read_volatile() };
        // SAFETY: byte i of b lies in the n bytes the caller vouches for.
        let y = unsafe { b.add(i).read_volatile() };
        if x != y {
            return x as i32 - y as i32;
        }
    }
    0
}

/// # Safety
///
/// As `memcmp`.
#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: memcmp asks what bcmp's caller vouches for: a and b valid
    // for n bytes.
    unsafe { memcmp(a, b, n) }
}
