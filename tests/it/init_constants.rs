//! The init program (`init/main.rs`) has no C library: it spells out every
//! system call number, flag and errno it uses. This test reads those
//! constants from its source and compares each with libc's value for this
//! target, so that a wrong number (a copy from the wrong architecture's
//! table, a typo in a flag) fails here instead of as a mysterious setup
//! error inside a sandbox.

use std::collections::BTreeMap;

/// One `const NAME: TYPE = VALUE;` of the init program, with the
/// architecture of the `mod nr` block it stands in, if any.
#[derive(Debug)]
struct Constant {
    name: String,
    arch: Option<String>,
    value: i128,
    line: usize,
}

/// Evaluates the integer expressions the init program uses: literals in
/// decimal, hex (`0x`), octal (`0o`), with `_` separators, a leading `-`,
/// and `A << B` of two literals.
fn eval(expr: &str) -> Option<i128> {
    let expr = expr.trim();
    if let Some((a, b)) = expr.split_once("<<") {
        return Some(eval(a)? << eval(b)?);
    }
    if let Some(rest) = expr.strip_prefix('-') {
        return eval(rest).map(|v| -v);
    }
    let digits = expr.replace('_', "");
    if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i128::from_str_radix(oct, 8).ok()
    } else {
        digits.parse().ok()
    }
}

fn init_constants() -> Vec<Constant> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/init/main.rs");
    let source = std::fs::read_to_string(path).expect("read init/main.rs");
    let mut out = Vec::new();
    let mut pending_arch: Option<String> = None;
    let mut block_arch: Option<String> = None;
    let mut depth = 0i32;
    let mut block_depth = None;
    for (i, raw) in source.lines().enumerate() {
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix("#[cfg(target_arch = \"") {
            pending_arch = rest.split('"').next().map(str::to_owned);
        } else if line.starts_with("mod nr") {
            block_arch = pending_arch.take();
            block_depth = Some(depth);
        } else if !line.starts_with("#[") && !line.is_empty() {
            pending_arch = None;
        }
        if let Some(decl) = line
            .strip_prefix("pub const ")
            .or_else(|| line.strip_prefix("const "))
            && let Some((name, rest)) = decl.split_once(':')
            && let Some((ty, value)) = rest.split_once('=')
            && !ty.contains('[')
        {
            let value = value.trim().trim_end_matches(';');
            let value = eval(value)
                .unwrap_or_else(|| panic!("init/main.rs:{}: cannot read {value:?}", i + 1));
            out.push(Constant {
                name: name.trim().to_owned(),
                arch: block_arch.clone(),
                value,
                line: i + 1,
            });
        }
        depth += raw.matches('{').count() as i32 - raw.matches('}').count() as i32;
        if block_depth.is_some_and(|d| depth <= d) && raw.contains('}') {
            block_arch = None;
            block_depth = None;
        }
    }
    out
}

/// System call numbers of this target, by the init program's names.
fn syscall_numbers() -> BTreeMap<&'static str, i128> {
    macro_rules! nr {
        ($($name:ident => $sys:ident),* $(,)?) => {
            BTreeMap::from([$((stringify!($name), libc::$sys as i128)),*])
        };
    }
    nr! {
        READ => SYS_read, WRITE => SYS_write, CLOSE => SYS_close,
        RT_SIGACTION => SYS_rt_sigaction, IOCTL => SYS_ioctl, SOCKET => SYS_socket,
        CLONE => SYS_clone, STATFS => SYS_statfs, PRCTL => SYS_prctl, MOUNT => SYS_mount,
        SETHOSTNAME => SYS_sethostname, EXIT_GROUP => SYS_exit_group, KEYCTL => SYS_keyctl,
        OPENAT => SYS_openat, MKDIRAT => SYS_mkdirat, PPOLL => SYS_ppoll, DUP3 => SYS_dup3,
        SETNS => SYS_setns, UNSHARE => SYS_unshare, PIPE2 => SYS_pipe2, FCNTL => SYS_fcntl,
        WAITID => SYS_waitid, PTRACE => SYS_ptrace, PIDFD_SEND_SIGNAL => SYS_pidfd_send_signal,
        SCHED_YIELD => SYS_sched_yield, STATX => SYS_statx, UTIMENSAT => SYS_utimensat,
        OPEN_TREE => SYS_open_tree, MOVE_MOUNT => SYS_move_mount,
        MOUNT_SETATTR => SYS_mount_setattr, CLOSE_RANGE => SYS_close_range,
        FSOPEN => SYS_fsopen, FSCONFIG => SYS_fsconfig, FSMOUNT => SYS_fsmount,
        SETSID => SYS_setsid, SETPGID => SYS_setpgid, SECCOMP => SYS_seccomp, GETPID => SYS_getpid,
        EXECVEAT => SYS_execveat, MMAP => SYS_mmap, MUNMAP => SYS_munmap,
        CHDIR => SYS_chdir, FCHDIR => SYS_fchdir, PIVOT_ROOT => SYS_pivot_root,
        UMOUNT2 => SYS_umount2, SYMLINKAT => SYS_symlinkat, WRITEV => SYS_writev,
        KILL => SYS_kill, GETUID => SYS_getuid, GETGID => SYS_getgid,
        SETRESUID => SYS_setresuid, SETRESGID => SYS_setresgid, SETGROUPS => SYS_setgroups,
        CAPSET => SYS_capset, FSTATFS => SYS_fstatfs, NEWFSTATAT => SYS_newfstatat,
        FCHMODAT => SYS_fchmodat, FCHOWNAT => SYS_fchownat, UNLINKAT => SYS_unlinkat,
        RENAMEAT2 => SYS_renameat2, FTRUNCATE => SYS_ftruncate, GETDENTS64 => SYS_getdents64,
        RT_SIGPROCMASK => SYS_rt_sigprocmask, EXECVE => SYS_execve, PRLIMIT64 => SYS_prlimit64,
        SIGNALFD4 => SYS_signalfd4,
    }
}

/// Every other constant of the init program, by its name, as libc has it.
fn flags() -> BTreeMap<&'static str, i128> {
    macro_rules! same {
        ($($name:ident),* $(,)?) => {
            BTreeMap::from([$((stringify!($name), libc::$name as i128)),*])
        };
    }
    let mut m = same! {
        AT_FDCWD, AT_RECURSIVE, AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR,
        STATX_TYPE, STATX_UID, STATX_GID, STATX_ATIME, STATX_MTIME,
        O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_CLOEXEC, O_DIRECTORY, O_PATH, O_NOFOLLOW,
        O_EXCL, O_TRUNC, O_NONBLOCK,
        ENOENT, ENXIO, EINTR, EPERM, EACCES, EEXIST, EBADF, EINVAL, ENOSYS, EAGAIN, ENOTDIR,
        EBUSY, EROFS, ENOSPC, EOVERFLOW, ENODEV, ECHILD, ENOTTY,
        MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_NOATIME, MS_NODIRATIME,
        MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME, MS_SLAVE, MS_SILENT, MS_STRICTATIME,
        MNT_DETACH,
        CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWUTS, CLONE_NEWIPC,
        CLONE_NEWCGROUP, CLONE_PIDFD, CLONE_PARENT, CLONE_VM, CLONE_VFORK, CLONE_FILES,
        CLONE_THREAD, CLONE_SIGHAND,
        SIGKILL, SIGCHLD, SIGTERM, SIGSTOP, SIGCONT, SIGHUP, SIGPIPE, SIG_SETMASK,
        E2BIG, P_ALL, SFD_NONBLOCK, CLD_EXITED, CLD_TRAPPED, SIGINT, SIGQUIT, SIGTRAP,
        PTRACE_DETACH,
        ENOEXEC, ELOOP, ENAMETOOLONG, ESTALE, ETIMEDOUT,
        PR_SET_NAME, PR_SET_DUMPABLE, PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS,
        PR_SET_CHILD_SUBREAPER, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL,
        POLLIN, POLLHUP, POLLERR, P_PIDFD, P_PID, WEXITED, WNOHANG, WSTOPPED,
        AF_INET, AF_INET6, AF_UNIX, AF_NETLINK, SOCK_DGRAM, SOCK_STREAM, SOCK_RAW, SOCK_CLOEXEC,
        SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFADDR, SIOCGIFINDEX,
        IFF_UP, IFF_RUNNING,
        KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_SETPERM,
        ST_RDONLY, ST_NOSUID, ST_NODEV, ST_NOEXEC, ST_NOATIME, ST_NODIRATIME, ST_RELATIME,
        F_GETFD, F_SETFD, F_GETFL, F_SETFL, FD_CLOEXEC,
        SECCOMP_SET_MODE_FILTER, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS,
        SECCOMP_FILTER_FLAG_TSYNC,
        TIOCSTI, TIOCLINUX, TIOCNOTTY, TIOCSCTTY,
        PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_STACK, MAP_GROWSDOWN,
        CLOSE_RANGE_CLOEXEC, CLOSE_RANGE_UNSHARE,
        MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC,
        MOUNT_ATTR_IDMAP, MOUNT_ATTR_NOSYMFOLLOW,
        FSCONFIG_SET_STRING, FSCONFIG_SET_FLAG, FSCONFIG_CMD_CREATE, FSMOUNT_CLOEXEC,
        FSOPEN_CLOEXEC, MOVE_MOUNT_F_EMPTY_PATH, OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC,
    };
    // glibc's name for the flag that waits for every kind of child.
    m.insert("WALL", libc::__WALL as i128);
    m.insert("SIG_IGN", libc::SIG_IGN as i128);
    m.insert("SIG_DFL", libc::SIG_DFL as i128);
    m
}

/// Constants of the init program's own, with no libc counterpart, and what
/// they are made of (checked here where that is a libc expression).
fn own() -> BTreeMap<&'static str, Option<i128>> {
    // Keyring permissions (keyctl(2), KEYCTL_SETPERM): possessor all
    // (0x3f << 24), user view/read/write/search/link/setattr (0x3f << 16).
    BTreeMap::from([
        ("KEYRING_PERM", Some(0x3f << 24 | 0x3f << 16)),
        // capset(2)'s _LINUX_CAPABILITY_VERSION_3 (linux/capability.h).
        ("CAPABILITY_VERSION_3", Some(0x2008_0522)),
    ])
}

#[test]
fn every_constant_of_the_init_program_is_libcs() {
    let arch = std::env::consts::ARCH;
    let numbers = syscall_numbers();
    let flags = flags();
    let own = own();
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    let mut checked = 0;
    let mut other_arch = 0;
    for c in init_constants() {
        let expected = match &c.arch {
            Some(a) if a != arch => {
                other_arch += 1;
                continue;
            }
            Some(_) => numbers.get(c.name.as_str()).copied(),
            // Numbers "alike on every architecture" are system call numbers too.
            None => flags
                .get(c.name.as_str())
                .or_else(|| numbers.get(c.name.as_str()))
                .copied()
                .or_else(|| own.get(c.name.as_str()).copied().flatten()),
        };
        match expected {
            Some(v) if v == c.value => checked += 1,
            Some(v) => wrong.push(format!(
                "init/main.rs:{}: {} = {:#x}, libc says {:#x}",
                c.line, c.name, c.value, v
            )),
            None => unknown.push(format!("init/main.rs:{}: {}", c.line, c.name)),
        }
    }
    println!(
        "{checked} constants match libc ({arch}); {other_arch} of another architecture's table \
         are checked only when the crate is built for it"
    );
    assert!(
        checked > 50,
        "found only {checked} constants: is the parser still right?"
    );
    assert!(
        wrong.is_empty(),
        "constants that differ from libc:\n{}",
        wrong.join("\n")
    );
    assert!(
        unknown.is_empty(),
        "constants this test does not know (add each to its table, mapped to libc's name):\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_expression_reader_reads_what_the_init_program_writes() {
    assert_eq!(eval("0x3f3f_0000"), Some(0x3f3f_0000));
    assert_eq!(eval("0o2000000"), Some(0o2000000));
    assert_eq!(eval("1 << 21"), Some(1 << 21));
    assert_eq!(eval("-100"), Some(-100));
    assert_eq!(eval("b\"x\""), None);
}
