//! The boundary, tried as an attacker would: each test is one thing a
//! hostile closure or program does, and asserts that the test process and
//! the host are untouched. They run as root and rootless (CI runs both);
//! where the two differ in what the kernel answers, both answers are
//! refusals.

use crate::common;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hermetic::{Error, Network, Sandbox};

/// A value the attacks try to change in the test process.
static SECRET: AtomicU64 = AtomicU64::new(0x5ec2e7);

/// The errno of the last failed call.
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// kcmp(2) KCMP_VM: do processes `a` and `b` share their address space?
fn same_memory(a: u32, b: u32) -> Option<bool> {
    const KCMP_VM: libc::c_int = 1;
    // SAFETY: kcmp only compares kernel objects of the two processes.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_VM, 0, 0) };
    (r >= 0).then_some(r == 0)
}

#[test]
fn pid_1_memory_cannot_be_written_through_proc() {
    let ns = Sandbox::new().unwrap();
    let addr = &SECRET as *const AtomicU64 as u64;
    let (open, errno) = ns.run(move || {
        let path = c"/proc/1/mem";
        // SAFETY: a plain open of a NUL-terminated path.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
        if fd >= 0 {
            let bytes = 0xbad_u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live local through our own fd.
            unsafe { libc::pwrite(fd, bytes.as_ptr().cast(), 8, addr as libc::off_t) };
        }
        (fd >= 0, errno())
    });
    assert!(!open, "a closure opened /proc/1/mem for writing");
    assert!(matches!(errno, libc::EACCES | libc::EPERM), "errno {errno}");
    assert_eq!(SECRET.load(Ordering::SeqCst), 0x5ec2e7);
}

#[test]
fn pid_1_memory_cannot_be_written_by_a_program() {
    let ns = Sandbox::new().unwrap();
    let out = ns
        .command("sh")
        .args([
            "-c",
            "printf x | dd of=/proc/1/mem bs=1 seek=4096 conv=notrunc",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "dd wrote PID 1's memory");
    assert_eq!(SECRET.load(Ordering::SeqCst), 0x5ec2e7);
}

#[test]
fn pid_1_cannot_be_traced_or_written_with_process_vm_writev() {
    let ns = Sandbox::new().unwrap();
    let addr = &SECRET as *const AtomicU64 as usize;
    let (attach, writev) = ns.run(move || {
        // SAFETY: PTRACE_ATTACH takes a pid; nothing of ours is touched.
        let attach = unsafe { libc::ptrace(libc::PTRACE_ATTACH, 1, 0, 0) };
        let attach = (attach, errno());
        let value = 0xbad_u64;
        let local = libc::iovec {
            iov_base: &value as *const u64 as *mut libc::c_void,
            iov_len: 8,
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: 8,
        };
        // SAFETY: reads 8 bytes of a live local; the remote side is the
        // kernel's to check.
        let n = unsafe { libc::process_vm_writev(1, &local, 1, &remote, 1, 0) };
        (attach, (n, errno()))
    });
    assert_eq!(attach.0, -1, "PTRACE_ATTACH to PID 1 succeeded");
    assert_eq!(attach.1, libc::EPERM);
    assert_eq!(writev.0, -1, "process_vm_writev to PID 1 succeeded");
    assert!(
        matches!(writev.1, libc::EPERM | libc::EFAULT),
        "errno {}",
        writev.1
    );
    assert_eq!(SECRET.load(Ordering::SeqCst), 0x5ec2e7);
}

#[test]
fn no_process_inside_shares_memory_with_the_test_process() {
    let ns = Sandbox::new().unwrap();
    let me = std::process::id();
    assert_eq!(same_memory(me, ns.pid()), Some(false), "PID 1");
    let server = ns
        .spawn(|| std::thread::sleep(Duration::from_secs(3600)))
        .unwrap();
    // A run's process is not dumpable: kcmp on it is refused to an
    // unprivileged test process too (rootless); root sees it is not shared.
    match same_memory(me, server.pid()) {
        Some(same) => assert!(!same, "a spawned closure"),
        None => assert!(
            !nix::unistd::geteuid().is_root(),
            "kcmp refused to root on a spawned closure"
        ),
    }
    let mut cmd = ns.command("sleep").arg("3600").spawn().unwrap();
    // Its relay is not dumpable either (as above).
    match same_memory(me, cmd.id()) {
        Some(same) => assert!(!same, "a command"),
        None => assert!(
            !nix::unistd::geteuid().is_root(),
            "kcmp refused to root on a command"
        ),
    }
    cmd.kill().unwrap();
    cmd.wait().unwrap();
    // A network: its switch and its hosts are started another way.
    let net = Network::builder().host("a").build().unwrap();
    assert_eq!(
        same_memory(me, net.host("a").pid()),
        Some(false),
        "a host's PID 1"
    );
}

/// The pids of every process in the PID namespace of process `pid`.
fn pid_namespace_of(pid: u32) -> Vec<u32> {
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    common::proc_pids()
        .into_iter()
        .filter(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok() == Some(ns.clone()))
        .collect()
}

#[test]
fn once_made_no_process_of_a_sandbox_shares_the_test_process_memory() {
    // The helper that makes a sandbox's network namespace starts before
    // the init program's exec, sharing the test process's memory, and is
    // gone before the sandbox is ready: never seen here, sandbox after
    // sandbox, nor in a network's hosts.
    let me = std::process::id();
    for _ in 0..50 {
        let ns = Sandbox::new().unwrap();
        let inside = pid_namespace_of(ns.pid());
        assert_eq!(
            inside,
            vec![ns.pid()],
            "only the init process is inside; found: {}",
            inside
                .iter()
                .map(|p| std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .unwrap_or_else(|e| format!("{p}: {e}")))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        assert_eq!(same_memory(me, ns.pid()), Some(false));
    }
    let net = Network::builder().host("a").host("b").build().unwrap();
    for host in ["a", "b"] {
        for pid in pid_namespace_of(net.host(host).pid()) {
            let same = same_memory(me, pid);
            // One that ended between the listing and the comparison
            // (kcmp: ESRCH) shared nothing.
            if same.is_none() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            assert_eq!(same, Some(false), "host {host}: {pid}");
        }
    }
}

#[test]
fn while_a_closure_runs_nothing_outside_its_pid_namespace_shares_its_memory() {
    let ns = Sandbox::new().unwrap();
    // The closure says it has started, then waits to be killed.
    let (r, w) = nix::unistd::pipe().unwrap();
    let server = ns
        .spawn(move || {
            nix::unistd::write(&w, b"!").unwrap();
            std::thread::sleep(Duration::from_secs(3600));
        })
        .unwrap();
    let mut started = [0u8; 1];
    std::fs::File::from(r).read_exact(&mut started).unwrap();
    let runner = server.pid();
    // Through the init process: the runner is not dumpable, and rootless
    // its /proc/PID/ns links are closed to the test process too.
    let its_pidns = std::fs::read_link(format!("/proc/{}/ns/pid", ns.pid())).unwrap();
    if same_memory(std::process::id(), runner).is_none() {
        common::skip(
            "rootless, kcmp on a run's process (not dumpable) is refused to the test process \
             as to everything inside; this check runs as root",
        );
        return;
    }
    let mut compared = 0;
    for pid in common::proc_pids() {
        if pid == runner
            || std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok() == Some(its_pidns.clone())
        {
            continue;
        }
        // Processes we may not inspect (other users') cannot share it: the
        // closure's process is ours.
        if let Some(same) = same_memory(pid, runner) {
            compared += 1;
            assert!(
                !same,
                "process {pid} outside the sandbox shares the closure's memory"
            );
        }
    }
    assert!(compared > 0);
}

#[test]
fn host_sysctls_cannot_be_written() {
    let ns = Sandbox::new().unwrap();
    let refused = ns.run(|| {
        let mut refused = Vec::new();
        for path in [
            "/proc/sys/vm/swappiness",
            "/proc/sys/kernel/printk",
            "/proc/sys/fs/file-max",
        ] {
            // The value already there: if the write went through, the host
            // would still be unchanged.
            let value = std::fs::read_to_string(path).unwrap();
            let res = std::fs::write(path, value);
            refused.push((path.to_owned(), res.err().and_then(|e| e.raw_os_error())));
        }
        // Opened only: if it opened, nothing is written.
        let sysrq = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/sysrq-trigger")
            .err()
            .and_then(|e| e.raw_os_error());
        refused.push(("/proc/sysrq-trigger".to_owned(), sysrq));
        refused
    });
    for (path, errno) in refused {
        assert!(
            // ENOENT: a kernel without magic SysRq has no trigger at all.
            matches!(
                errno,
                Some(libc::EROFS | libc::EACCES | libc::EPERM | libc::ENOENT)
            ),
            "{path} was writable inside: {errno:?}"
        );
    }
}

/// A file of the host's, at most three levels below `dir`, that root
/// outside may write (mode `u+w`): `/proc/irq`'s default affinity, a PCI
/// device's config space under `/proc/bus/pci/BUS/`.
fn writable_proc_file(dir: &std::path::Path, depth: u32) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for entry in entries {
        match std::fs::symlink_metadata(entry.path()) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o200 != 0 => files.push(entry.path()),
            Ok(m) if m.is_dir() => dirs.push(entry.path()),
            _ => {}
        }
    }
    if let Some(file) = files.first() {
        return Some(file.display().to_string());
    }
    dirs.iter()
        .filter(|_| depth > 1)
        .find_map(|d| writable_proc_file(d, depth - 1))
}

/// `/proc/irq` (interrupt affinities) and `/proc/bus` (PCI config space)
/// act on the whole host: a closure cannot open a file there for writing,
/// one that root outside may write. Opened only: if it opened, nothing is
/// written.
#[test]
fn host_irq_and_bus_files_cannot_be_written() {
    let mut paths = Vec::new();
    for dir in ["/proc/irq", "/proc/bus"] {
        match writable_proc_file(std::path::Path::new(dir), 3) {
            Some(path) => paths.push(path),
            None => println!("skipped {dir}: no file there that root may write on this host"),
        }
    }
    if paths.is_empty() {
        return;
    }
    let ns = Sandbox::new().unwrap();
    let tried = paths.clone();
    let refused = ns.run(move || {
        tried
            .into_iter()
            .map(|path| {
                let errno = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .err()
                    .and_then(|e| e.raw_os_error());
                (path, errno)
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(refused.len(), paths.len());
    for (path, errno) in refused {
        println!("{path}: {errno:?}");
        // EROFS: the read-only mount, as root; rootless the file is the
        // real root's, and permissions refuse it first (EACCES).
        assert!(
            matches!(errno, Some(libc::EROFS | libc::EACCES)),
            "{path} was writable inside: {errno:?}"
        );
        if common::is_root() {
            assert_eq!(errno, Some(libc::EROFS), "{path}: not the read-only mount");
        }
    }
}

#[test]
fn the_sandbox_s_own_sysctls_stay_writable() {
    let ns = Sandbox::new().unwrap();
    // The other value than the host's: a write that reached the host would
    // show.
    let read = |path: &str| std::fs::read_to_string(path).unwrap().trim().to_owned();
    let host_forward = read("/proc/sys/net/ipv4/ip_forward");
    let flipped = if host_forward == "0" { "1" } else { "0" };
    let (net, user, conf) = ns.run(move || {
        (
            std::fs::write("/proc/sys/net/ipv4/ip_forward", flipped).map_err(|e| e.to_string()),
            std::fs::write("/proc/sys/user/max_mnt_namespaces", "100").map_err(|e| e.to_string()),
            // The sandbox's network's interfaces, not the host's.
            std::fs::read_dir("/proc/sys/net/ipv4/conf")
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect::<std::collections::BTreeSet<_>>(),
        )
    });
    assert_eq!(net, Ok(()));
    assert_eq!(user, Ok(()));
    assert_eq!(
        conf,
        ["all", "default", "lo"].map(String::from).into(),
        "/proc/sys/net shows the sandbox's network"
    );
    assert_eq!(
        read("/proc/sys/net/ipv4/ip_forward"),
        host_forward,
        "the sandbox's ip_forward reached the host"
    );
    let host = read("/proc/sys/user/max_mnt_namespaces");
    assert_ne!(host, "100", "the sandbox's limit reached the host");
}

/// A host directory the caller may write (as root and rootless), outside
/// every path the sandbox replaces.
fn host_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hermetic-attack-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

#[test]
fn host_files_are_read_only_by_default() {
    let dir = host_dir();
    let target = dir.path().join("planted");
    let ns = Sandbox::new().unwrap();
    let t = target.clone();
    let errno = ns.run(move || {
        std::fs::write(&t, b"x")
            .err()
            .and_then(|e| e.raw_os_error())
    });
    assert_eq!(errno, Some(libc::EROFS));
    assert!(!target.exists());
    // The sandbox's own places stay writable.
    ns.run(|| {
        std::fs::write("/tmp/ok", b"x").unwrap();
        std::fs::write("/dev/shm/ok", b"x").unwrap();
    });
}

#[test]
fn writable_host_turns_read_only_off() {
    let dir = host_dir();
    let target = dir.path().join("written");
    let ns = Sandbox::builder()
        .host(hermetic::HostMode::Writable)
        .build()
        .unwrap();
    let t = target.clone();
    ns.run(move || std::fs::write(&t, b"x").unwrap());
    assert_eq!(std::fs::read(&target).unwrap(), b"x");
}

#[test]
fn host_device_nodes_cannot_be_opened() {
    use std::os::unix::fs::FileTypeExt;
    // Every device node of the host's /dev but the harmless ones: as root
    // these are the host's disks, its memory, its consoles. (`ptmx` is the
    // sandbox's own inside, its devpts instance's: see
    // boundary::a_sandbox_has_pseudo_terminals_of_its_own.)
    let harmless = ["null", "zero", "full", "random", "urandom", "tty", "ptmx"];
    let devices: Vec<String> = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_type()
                .is_ok_and(|t| t.is_block_device() || t.is_char_device())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !harmless.contains(&n.as_str()))
        .collect();
    assert!(!devices.is_empty(), "no device node to try in /dev");
    let ns = Sandbox::new().unwrap();
    let tried = devices.clone();
    let opened = ns.run(move || {
        let mut opened = Vec::new();
        for name in tried {
            // Read-only: if the open went through, nothing is changed.
            let res = std::fs::File::open(format!("/dev/{name}"));
            if let Err(e) = &res
                && e.raw_os_error() == Some(libc::EACCES)
            {
                continue;
            }
            opened.push((name, res.map(drop).map_err(|e| e.to_string())));
        }
        opened
    });
    // Anything but EACCES (the nodev answer) must at least not be an open
    // that succeeded.
    for (name, res) in opened {
        assert!(res.is_err(), "/dev/{name} opened inside the sandbox");
    }
    // The harmless ones work.
    let ok = ns.run(|| {
        let mut b = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .is_ok()
            && std::fs::write("/dev/null", b"x").is_ok()
            && std::fs::File::open("/dev/zero").is_ok()
    });
    assert!(ok);
}

#[test]
fn dev_shm_is_private_and_goes_with_the_sandbox() {
    let name = format!("/dev/shm/hermetic-attack-{}", std::process::id());
    let a = Sandbox::new().unwrap();
    let b = Sandbox::new().unwrap();
    let n = name.clone();
    a.run(move || std::fs::write(&n, b"x").unwrap());
    let n = name.clone();
    assert!(!b.run(move || std::path::Path::new(&n).exists()));
    assert!(
        !std::path::Path::new(&name).exists(),
        "it reached the host's /dev/shm"
    );
    let n = name.clone();
    assert!(
        a.run(move || std::path::Path::new(&n).exists()),
        "gone between runs"
    );
}

#[test]
fn the_working_directory_works_under_a_replaced_path() {
    // A crate checked out under /tmp: the sandbox's own /tmp would hide it.
    let host_tmp = std::path::Path::new("/tmp");
    let dir = match tempfile::Builder::new()
        .prefix("hermetic-cwd-")
        .tempdir_in(host_tmp)
    {
        Ok(dir) => dir,
        Err(e) => {
            common::skip(&format!(
                "no directory can be made under the host's /tmp ({e})"
            ));
            return;
        }
    };
    std::fs::write(dir.path().join("fixture.txt"), b"found").unwrap();
    let expected = dir.path().to_owned();
    // Only for the life of this process's thread: the working directory is
    // process-wide, so this runs in a helper process of its own.
    let out = common::run_self(
        "cwd_helper",
        &[("HERMETIC_CWD_HELPER", expected.to_str().unwrap())],
        &["--nocapture"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("CWD OK"));
}

#[test]
#[ignore = "helper: run by the_working_directory_works_under_a_replaced_path"]
fn cwd_helper() {
    let Some(dir) = std::env::var_os("HERMETIC_CWD_HELPER") else {
        return;
    };
    std::env::set_current_dir(&dir).unwrap();
    let ns = Sandbox::new().unwrap();
    let (cwd, read, write) = ns.run(|| {
        (
            std::env::current_dir().unwrap(),
            std::fs::read_to_string("fixture.txt").unwrap(),
            std::fs::write("new.txt", b"x")
                .err()
                .and_then(|e| e.raw_os_error()),
        )
    });
    assert_eq!(cwd, std::path::Path::new(&dir));
    assert_eq!(read, "found");
    // Read-only like every host path, unless HostMode::Writable.
    assert_eq!(write, Some(libc::EROFS));
    println!("CWD OK");
}

/// keyctl(2) through libc, for the key tests.
fn keyctl(op: u32, a: libc::c_ulong, b: libc::c_ulong, c: libc::c_ulong) -> libc::c_long {
    // SAFETY: the callers pass integers or live buffers for `op`.
    unsafe { libc::syscall(libc::SYS_keyctl, op as libc::c_int, a, b, c, 0) }
}

fn add_key(description: &std::ffi::CStr, payload: &[u8]) -> libc::c_long {
    // SAFETY: NUL-terminated strings and a live payload.
    unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            description.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            libc::KEY_SPEC_SESSION_KEYRING,
        )
    }
}

/// With keys allowed (`keyring(true)`; by default keyctl is refused, see
/// tests/it/boundary.rs), each sandbox has a session keyring of its own.
#[test]
fn the_session_keyring_is_the_sandbox_s_own() {
    let key = add_key(c"hermetic-attack-secret", b"hunter2");
    if key < 0 && matches!(errno(), libc::ENOSYS | libc::EPERM | libc::EACCES) {
        common::skip(&format!("keys are not available here (errno {})", errno()));
        return;
    }
    assert!(key > 0, "add_key: errno {}", errno());
    let ours = keyctl(
        libc::KEYCTL_GET_KEYRING_ID,
        libc::KEY_SPEC_SESSION_KEYRING as _,
        0,
        0,
    );
    let ns = Sandbox::builder().keyring(true).build().unwrap();
    let (read, theirs, planted) = ns.run(move || {
        let mut buf = [0u8; 64];
        let n = keyctl(
            libc::KEYCTL_READ,
            key as _,
            buf.as_mut_ptr() as _,
            buf.len() as _,
        );
        let read = (n >= 0).then(|| buf[..n as usize].to_vec());
        let theirs = keyctl(
            libc::KEYCTL_GET_KEYRING_ID,
            libc::KEY_SPEC_SESSION_KEYRING as _,
            0,
            0,
        );
        let planted = add_key(c"hermetic-attack-planted", b"x");
        (read, theirs, planted)
    });
    assert_eq!(read, None, "a closure read the test's key");
    assert_ne!(theirs, ours, "the closure has the test's session keyring");
    assert!(planted > 0);
    // Runs of the same sandbox share its keyring.
    let again = ns.run(|| {
        keyctl(
            libc::KEYCTL_GET_KEYRING_ID,
            libc::KEY_SPEC_SESSION_KEYRING as _,
            0,
            0,
        )
    });
    assert_eq!(again, theirs);
    // Nothing planted reached the test's keyring.
    let found = keyctl(
        libc::KEYCTL_SEARCH,
        libc::KEY_SPEC_SESSION_KEYRING as _,
        c"user".as_ptr() as _,
        c"hermetic-attack-planted".as_ptr() as _,
    );
    assert!(found < 0, "the planted key is in the test's keyring");
    keyctl(libc::KEYCTL_INVALIDATE, key as _, 0, 0);
}

#[test]
fn unmounting_proc_does_not_reveal_the_host() {
    let ns = Sandbox::new().unwrap();
    let (direct, pids) = ns.run(|| {
        let direct = nix::mount::umount2("/proc", nix::mount::MntFlags::MNT_DETACH)
            .err()
            .map(|e| e as i32);
        // Root of its own user and mount namespace may try again there.
        let own = nix::sched::unshare(
            nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNS,
        );
        let again =
            own.and_then(|()| nix::mount::umount2("/proc", nix::mount::MntFlags::MNT_DETACH));
        (direct, (again.err().map(|e| e as i32), common::proc_pids()))
    });
    assert!(
        matches!(direct, Some(libc::EPERM)),
        "umount /proc: {direct:?}"
    );
    assert!(
        matches!(pids.0, Some(libc::EINVAL | libc::EPERM)),
        "umount in a namespace of its own: {:?}",
        pids.0
    );
    // Still the sandbox's /proc: its processes only.
    assert!(pids.1.len() <= 3, "pids seen: {:?}", pids.1);
}

#[test]
fn unmounting_tmp_does_not_reach_the_host_tmp() {
    let ns = Sandbox::new().unwrap();
    let name = format!("hermetic-attack-tmp-{}", std::process::id());
    let n = name.clone();
    let refused = ns.run(move || {
        let umount = nix::mount::umount2("/tmp", nix::mount::MntFlags::MNT_DETACH)
            .err()
            .map(|e| e as i32);
        let _ = std::fs::write(format!("/tmp/{n}"), b"x");
        umount
    });
    assert_eq!(refused, Some(libc::EPERM));
    assert!(!std::path::Path::new("/tmp").join(&name).exists());
}

#[test]
fn mounts_cannot_be_changed_from_inside() {
    let ns = Sandbox::new().unwrap();
    let errnos = ns.run(|| {
        use nix::mount::{MsFlags, mount};
        [
            mount(
                Some("tmpfs"),
                "/mnt",
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            ),
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
                None::<&str>,
            ),
            mount(
                None::<&str>,
                "/proc/sys",
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
                None::<&str>,
            ),
        ]
        .map(|r| r.err().map(|e| e as i32))
    });
    assert_eq!(errnos, [Some(libc::EPERM); 3]);
}

/// Readlink of every fd of the calling process: (fd, target).
fn fd_targets() -> Vec<(i32, String)> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect()
}

#[test]
fn closures_and_programs_hold_no_fd_of_hermetic_s() {
    // In a process of its own, so that every fd that appears besides the
    // test's own is hermetic's (other tests open pipes of their own).
    let out = common::run_self(
        "fd_helper",
        &[("HERMETIC_FD_HELPER", "1")],
        &["--nocapture"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("FDS OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "helper: run by closures_and_programs_hold_no_fd_of_hermetic_s"]
fn fd_helper() {
    if std::env::var_os("HERMETIC_FD_HELPER").is_none() {
        return;
    }
    // What the process had before any sandbox: the test harness's.
    let before: Vec<(i32, String)> = fd_targets();
    // One of the test's own: still inherited by closures, as documented.
    let mine = std::fs::File::open("/proc/self/cmdline").unwrap();
    let mine_fd = mine.as_raw_fd();
    // Several sandboxes and a network alive: plenty of pipes and pidfds.
    let a = Sandbox::new().unwrap();
    let b = Sandbox::new().unwrap();
    let _server = b
        .spawn(|| std::thread::sleep(Duration::from_secs(3600)))
        .unwrap();
    let net = Network::builder().host("x").host("y").build().unwrap();
    a.run(|| ());
    let hermetic_s: Vec<String> = fd_targets()
        .into_iter()
        .filter(|fd| !before.contains(fd) && fd.0 != mine_fd)
        .map(|(_, t)| t)
        .collect();
    assert!(
        hermetic_s.iter().any(|t| t.contains("pidfd")),
        "{hermetic_s:?}"
    );
    for sandbox in [&a, net.host("x").sandbox()] {
        let (fds, result) = sandbox.run(move || (fd_targets(), hermetic::__result_channel_fd()));
        let result = result.unwrap();
        assert!(
            fds.iter().any(|&(fd, _)| fd == mine_fd),
            "the test's own fd is gone: {fds:?}"
        );
        for (fd, target) in fds {
            if hermetic_s.contains(&target) {
                // Its stdout, stderr and result pipes: the closure's own.
                assert!(
                    fd == 1 || fd == 2 || fd == result,
                    "a closure holds fd {fd} ({target}), one of hermetic's"
                );
            }
        }
    }
    let out = a
        .command("ls")
        .args(["-l", "/proc/self/fd/"])
        .output()
        .unwrap();
    assert!(out.status.success());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((_, target)) = line.split_once(" -> ") {
            assert!(
                !hermetic_s.iter().any(|t| t == target),
                "a program holds {line}"
            );
        }
    }
    drop(mine);
    println!("FDS OK");
}

#[test]
fn clearing_nonblock_on_inherited_fds_hangs_nothing() {
    let a = Sandbox::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let b = Sandbox::new().unwrap();
    let ended = common::bounded("runs after an fd attack", move || {
        // Clear O_NONBLOCK on, and try to read from, every fd the closure
        // has: hermetic's own would be the report and result pipes of other
        // runs.
        let attack = a.try_run(|| {
            for fd in 3..4096 {
                // SAFETY: flag changes on fd numbers; failures are fine.
                unsafe {
                    let flags = libc::fcntl(fd, libc::F_GETFL);
                    if flags >= 0 {
                        libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
                    }
                }
            }
        });
        // Later runs, here and in another sandbox, still end.
        (attack.is_ok(), a.try_run(|| 1).ok(), b.try_run(|| 2).ok())
    });
    assert_eq!(ended, (true, Some(1), Some(2)));
}

#[test]
fn scribbling_on_the_result_channel_is_an_error_not_a_hang() {
    let ns = Sandbox::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let res = common::bounded("a run that garbles its frame", move || {
        ns.try_run(|| {
            let fd = hermetic::__result_channel_fd().unwrap();
            // SAFETY: the closure's own result fd, taken over on purpose.
            let f = unsafe { OwnedFd::from_raw_fd(fd) };
            nix::unistd::write(&f, &[1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).unwrap();
            // Hold the pipe open and never send the rest.
            std::thread::sleep(Duration::from_secs(3600));
        })
    });
    assert!(
        matches!(
            res,
            Err(Error::Channel { .. }) | Err(Error::TimedOut { .. })
        ),
        "{res:?}"
    );
}

#[test]
fn a_host_cannot_enter_another_host_s_network() {
    let net = Network::builder().host("a").host("b").build().unwrap();
    net.partition(&[&["a"], &["b"]]).unwrap();
    let (entered, others_ns) = net.host("a").run(|| {
        let mut entered = Vec::new();
        for (fd, target) in fd_targets() {
            if fd > 2 {
                // SAFETY: setns on an fd number; failure is the point.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } == 0 {
                    entered.push(target);
                }
            }
        }
        // The other host's processes are not in this PID namespace.
        (entered, common::proc_pids().len())
    });
    assert!(entered.is_empty(), "entered a network through {entered:?}");
    assert!(others_ns <= 3);
}

#[test]
fn timeout_max_means_no_timeout() {
    let ns = Sandbox::builder().timeout(Duration::MAX).build().unwrap();
    assert_eq!(ns.run(|| 7), 7);
}

#[test]
fn the_task_that_frees_a_run_s_memory_is_inside_the_sandbox() {
    // After each run a task named hermetic-exit frees the run's memory: it
    // must be a process of the sandbox, sharing nothing with the test.
    let ns = Sandbox::new().unwrap();
    let pidns = std::fs::read_link(format!("/proc/{}/ns/pid_for_children", ns.pid())).unwrap();
    let exiting = || {
        common::proc_pids()
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "hermetic-exit")
            })
            .collect::<Vec<u32>>()
    };
    let me = std::process::id();
    let host = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let mut seen = 0;
    for _ in 0..50 {
        ns.run(|| ());
        for p in exiting() {
            // It may be gone by now; what is read must be inside a sandbox.
            if let Ok(theirs) = std::fs::read_link(format!("/proc/{p}/ns/pid")) {
                assert_ne!(
                    theirs, host,
                    "hermetic-exit task {p} is outside every sandbox"
                );
                assert_ne!(
                    same_memory(me, p),
                    Some(true),
                    "task {p} shares the test's memory"
                );
                seen += usize::from(theirs == pidns);
            }
        }
    }
    println!("hermetic-exit tasks of this sandbox caught alive: {seen}");
    drop(ns);
    assert!(
        common::eventually(|| exiting().into_iter().all(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/pid")).ok() != Some(pidns.clone())
        })),
        "hermetic-exit tasks outlived their sandbox"
    );
}
