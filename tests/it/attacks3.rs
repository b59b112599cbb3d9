//! Attacks on rows of the README's table "What is isolated, and what is
//! not" that the other attack modules do not try: what the test process
//! holds (a shared mapping, a read-only fd) turned against the host, and a
//! system call the seccomp filter does not see (io_uring). An attack that
//! works today is `#[ignore]`d with the finding; the rest pass, root and
//! rootless.

use crate::common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use hermetic::Sandbox;

/// The errno of the last failed call.
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A host file holding `text`, in the host's temporary directory (outside
/// any sandbox, writable by the test's user).
fn host_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.flush().unwrap();
    f
}

// Row "read or write the test process's memory": "no process inside shares
// memory with any process outside". A `MAP_SHARED` mapping the test
// process holds is shared with a run's copy of it: a closure writes into
// the test process's memory, and, the mapping being of a host file,
// into that file, whatever the host mode (read-only here).
#[test]
#[ignore = "known limitation (README, What is isolated: memory): a closure shares the test process's MAP_SHARED mappings, and writes through them"]
fn a_closure_cannot_write_a_shared_mapping_of_the_test_process() {
    let file = host_file("original");
    let len = 8usize;
    // SAFETY: maps `len` bytes of a file of that size, shared, never
    // unmapped before the test ends (the process exits with it).
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_file().as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    let addr = map as usize;
    let ns = Sandbox::new().unwrap();
    let wrote = ns.run(move || {
        let changed = b"CHANGED!";
        // SAFETY: the closure's copy of the mapping, 8 bytes long.
        unsafe { std::ptr::copy_nonoverlapping(changed.as_ptr(), addr as *mut u8, 8) };
        true
    });
    assert!(wrote);
    // SAFETY: the test process's own mapping, 8 bytes long.
    let seen = unsafe { std::slice::from_raw_parts(map as *const u8, len) }.to_vec();
    let on_disk = std::fs::read(file.path()).unwrap();
    assert_eq!(
        (
            String::from_utf8_lossy(&seen),
            String::from_utf8_lossy(&on_disk)
        ),
        ("original".into(), "original".into()),
        "a closure wrote into the test process's memory and the host file behind it"
    );
}

// Row "write host files": "the host's filesystem is read-only inside, every
// mount of it (EROFS), as root too". A read-only fd of the test process's
// (the closure inherits the test's fds, as the README says) reopened for
// writing through /proc/self/fd: the magic link leads to the host's own,
// writable mount, not to the sandbox's read-only view of it.
#[test]
#[ignore = "known limitation (README, What is isolated: fds): a closure can reopen an inherited fd of the test process for writing"]
fn a_closure_cannot_reopen_a_read_only_fd_of_the_test_process_for_writing() {
    let file = host_file("original");
    let ro = std::fs::File::open(file.path()).unwrap();
    let fd = ro.as_raw_fd();
    let ns = Sandbox::new().unwrap();
    let result = ns.run(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(format!("/proc/self/fd/{fd}"))
            .and_then(|mut f| f.write_all(b"changed"))
            .map_err(|e| e.raw_os_error())
    });
    drop(ro);
    assert_eq!(std::fs::read_to_string(file.path()).unwrap(), "original");
    assert!(result.is_err(), "the reopen for writing succeeded");
}

// The same through a program: `hermetic run`'s default is copy-on-write,
// "writes ... never reach the host's files". A program whose stdin is a
// host file (`hermetic run -- sh -c '...' < FILE`, fds 0 to 2 only) could
// open /proc/self/fd/0 for writing and change that file on the host: it
// gets the file through a pipe instead, and reads it all the same. (Found
// when it got the file's fd.)
#[test]
fn a_program_cannot_write_the_host_file_that_is_its_stdin() {
    let file = host_file("original\n");
    let read = common::hermetic_command()
        .args(["run", "--", "cat"])
        .stdin(std::fs::File::open(file.path()).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read.stdout),
        "original\n",
        "{read:?}"
    );
    let mut changed = Vec::new();
    for mode in [None, Some("ro")] {
        let mut cmd = common::hermetic_command();
        cmd.arg("run");
        if let Some(m) = mode {
            cmd.args(["--host", m]);
        }
        let out = cmd
            .args(["--", "sh", "-c", "echo changed >/proc/self/fd/0"])
            .stdin(std::fs::File::open(file.path()).unwrap())
            .output()
            .unwrap();
        let now = std::fs::read_to_string(file.path()).unwrap();
        if now != "original\n" {
            changed.push((
                mode.unwrap_or("cow"),
                now,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
            std::fs::write(file.path(), "original\n").unwrap();
        }
    }
    assert!(
        changed.is_empty(),
        "host modes where the program wrote its stdin's host file: {changed:?}"
    );
}

// Row "write host files" again, through a spawned closure: a directory fd
// the test process holds (opened read-only, as `read_dir` or a crate's
// `openat` keeps one) lies on the host's writable mount: a file is planted
// in that host directory, whatever the host mode.
#[test]
#[ignore = "known limitation (README, What is isolated: fds): a closure can create files through an inherited directory fd"]
fn a_spawned_closure_cannot_plant_a_file_through_a_directory_fd_of_the_test_process() {
    let dir = tempfile::tempdir().unwrap();
    let dfd = std::fs::File::open(dir.path()).unwrap();
    let raw = dfd.as_raw_fd();
    let ns = Sandbox::new().unwrap();
    let errno = ns
        .spawn(move || {
            // SAFETY: openat on an inherited fd with a NUL-terminated name.
            let fd = unsafe {
                libc::openat(
                    raw,
                    c"planted".as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd < 0 { errno() } else { 0 }
        })
        .unwrap()
        .join()
        .unwrap();
    drop(dfd);
    assert!(
        !dir.path().join("planted").exists(),
        "a file was planted in the host directory"
    );
    assert_ne!(errno, 0);
}

/// `struct io_uring_params`, as io_uring_setup(2) fills it.
#[repr(C)]
#[derive(Default)]
struct UringParams {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    /// head, tail, ring_mask, ring_entries, flags, dropped, array, resv1,
    /// then a u64 user_addr.
    sq_off: [u32; 10],
    /// head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1,
    /// then a u64 user_addr.
    cq_off: [u32; 10],
}

/// `setsockopt(fd, level, name, value)` submitted to an io_uring (as
/// `IORING_OP_URING_CMD` with `SOCKET_URING_OP_SETSOCKOPT`, Linux 6.7):
/// the call no seccomp filter sees. `Err` with the errno of the ring's
/// setup (which the host may refuse), `Ok` with the command's result.
fn uring_setsockopt(fd: i32, level: u32, name: u32, value: &[u8]) -> Result<i32, i32> {
    const IORING_OP_URING_CMD: u8 = 46;
    const SOCKET_URING_OP_SETSOCKOPT: u32 = 3;
    const IORING_OFF_SQES: i64 = 0x1000_0000;
    const IORING_ENTER_GETEVENTS: u32 = 1;
    let mut p = UringParams::default();
    // SAFETY: io_uring_setup fills the params it is given.
    let ring = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, &mut p as *mut UringParams) };
    if ring < 0 {
        return Err(errno());
    }
    // SAFETY: the fd was just returned and is ours to own.
    let ring = unsafe { OwnedFd::from_raw_fd(ring as i32) };
    let sq_len = p.sq_off[6] as usize + p.sq_entries as usize * 4;
    let cq_len = p.cq_off[5] as usize + p.cq_entries as usize * 16;
    let len = sq_len.max(cq_len);
    let map = |len: usize, off: i64| {
        // SAFETY: maps the ring's own memory, as io_uring_setup(2) says.
        let m = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                ring.as_raw_fd(),
                off,
            )
        };
        assert_ne!(m, libc::MAP_FAILED, "mapping the ring");
        m as *mut u8
    };
    // IORING_FEAT_SINGLE_MMAP (every kernel with URING_CMD for sockets).
    assert!(p.features & 1 != 0);
    let rings = map(len, 0);
    let sqes = map(p.sq_entries as usize * 64, IORING_OFF_SQES);
    let mut sqe = [0u8; 64];
    sqe[0] = IORING_OP_URING_CMD;
    sqe[4..8].copy_from_slice(&fd.to_ne_bytes());
    sqe[8..12].copy_from_slice(&SOCKET_URING_OP_SETSOCKOPT.to_ne_bytes());
    sqe[16..20].copy_from_slice(&level.to_ne_bytes());
    sqe[20..24].copy_from_slice(&name.to_ne_bytes());
    sqe[32..40].copy_from_slice(&1u64.to_ne_bytes());
    sqe[44..48].copy_from_slice(&(value.len() as u32).to_ne_bytes());
    sqe[48..56].copy_from_slice(&(value.as_ptr() as u64).to_ne_bytes());
    let at = |off: u32| {
        // SAFETY: an offset the kernel gave into the mapped rings.
        unsafe { &*(rings.add(off as usize) as *const std::sync::atomic::AtomicU32) }
    };
    use std::sync::atomic::Ordering::{Acquire, Release};
    let tail = at(p.sq_off[1]).load(Acquire);
    let slot = tail & at(p.sq_off[2]).load(Acquire);
    // SAFETY: slot 0 of the mapped SQE array, and the SQ array's slot,
    // both within the lengths mapped.
    unsafe {
        std::ptr::copy_nonoverlapping(sqe.as_ptr(), sqes, 64);
        *(rings.add(p.sq_off[6] as usize + slot as usize * 4) as *mut u32) = 0;
    }
    at(p.sq_off[1]).store(tail + 1, Release);
    // SAFETY: submits one entry and waits for one completion.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            ring.as_raw_fd(),
            1u32,
            1u32,
            IORING_ENTER_GETEVENTS,
            std::ptr::null::<u8>(),
            0usize,
        )
    };
    if r < 0 {
        return Err(errno());
    }
    let head = at(p.cq_off[0]).load(Acquire);
    let mask = at(p.cq_off[2]).load(Acquire);
    let cqe = p.cq_off[5] as usize + (head & mask) as usize * 16;
    // SAFETY: the completion at the head, within the mapped rings.
    let res = unsafe { *(rings.add(cqe + 8) as *const i32) };
    at(p.cq_off[0]).store(head + 1, Release);
    Ok(res)
}

const SOL_ALG: u32 = 279;
const ALG_SET_KEY: u32 = 1;
const ALG_SET_KEY_BY_KEY_SERIAL: u32 = 7;

/// An AF_ALG `hmac(sha256)` socket, bound, not yet keyed.
fn hmac_socket() -> Result<OwnedFd, i32> {
    // SAFETY: a plain socket call.
    let s = unsafe { libc::socket(libc::AF_ALG, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(errno());
    }
    // SAFETY: the fd was just returned and is ours to own.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: an all-zero sockaddr_alg is valid.
    let mut sa: libc::sockaddr_alg = unsafe { std::mem::zeroed() };
    sa.salg_family = libc::AF_ALG as u16;
    sa.salg_type[..4].copy_from_slice(b"hash");
    sa.salg_name[..12].copy_from_slice(b"hmac(sha256)");
    // SAFETY: binds to a live sockaddr_alg of its size.
    let r = unsafe {
        libc::bind(
            s.as_raw_fd(),
            (&sa as *const libc::sockaddr_alg).cast(),
            std::mem::size_of::<libc::sockaddr_alg>() as u32,
        )
    };
    if r < 0 {
        return Err(errno());
    }
    Ok(s)
}

/// The HMAC of `msg` through a keyed AF_ALG socket.
fn hmac_of(keyed: &OwnedFd, msg: &[u8]) -> Result<Vec<u8>, i32> {
    // SAFETY: accept without an address.
    let op = unsafe {
        libc::accept(
            keyed.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if op < 0 {
        return Err(errno());
    }
    // SAFETY: the fd was just returned and is ours to own.
    let mut op = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(op) });
    op.write_all(msg)
        .map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let mut digest = vec![0u8; 32];
    op.read_exact(&mut digest)
        .map_err(|e| e.raw_os_error().unwrap_or(0))?;
    Ok(digest)
}

// Row "read, link, search or plant keys of the test process":
// "setsockopt(SOL_ALG, ALG_SET_KEY_BY_KEY_SERIAL) fail with EPERM". The
// same setsockopt submitted to an io_uring is not a system call the
// filter sees: a closure keys a crypto socket with a key of the test
// process's, found by serial number (keys are checked by uid, and root
// inside is the caller), and computes MACs with it.
// Today the kernel refuses socket commands on sockets whose protocol has
// no ioctl, as AF_ALG's has not (EOPNOTSUPP), so the filter's rule holds;
// the io_uring path itself is checked to work on a UDP socket first.
#[test]
fn a_closure_cannot_key_a_crypto_socket_with_a_test_key_through_io_uring() {
    let secret = b"the test process's secret";
    let msg = b"hermetic";
    // What the key gives, computed outside.
    let expected = match hmac_socket() {
        Err(e) => Err(e),
        Ok(s) => {
            let r = alg_setsockopt(s.as_raw_fd(), ALG_SET_KEY, secret);
            assert_eq!(r, 0, "keying AF_ALG outside: errno {}", errno());
            Ok(hmac_of(&s, msg).unwrap())
        }
    };
    // A key of the test process's own (its process keyring, gone with it),
    // which its uid may search, as keys checked by uid are.
    const KEY_SPEC_PROCESS_KEYRING: i32 = -2;
    const KEYCTL_SETPERM: i32 = 5;
    // SAFETY: NUL-terminated constants and a live payload of its length.
    let serial = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            c"hermetic-attack3".as_ptr(),
            secret.as_ptr(),
            secret.len(),
            KEY_SPEC_PROCESS_KEYRING,
        )
    };
    if serial < 0 {
        return common::skip(&format!("add_key refused here (errno {})", errno()));
    }
    // possessor: all; user: view, read, search.
    // SAFETY: keyctl on the key just made.
    unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, serial, 0x3f0b_0000u32) };
    let serial = serial as i32;
    let ns = Sandbox::new().unwrap();
    let (direct, uring, digest) = ns.run(move || {
        // SAFETY: a plain socket call.
        let udp = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(udp >= 0);
        // SAFETY: the fd was just returned and is ours to own.
        let udp = unsafe { OwnedFd::from_raw_fd(udp) };
        let size = 65536i32.to_ne_bytes();
        let works = uring_setsockopt(
            udp.as_raw_fd(),
            libc::SOL_SOCKET as u32,
            libc::SO_RCVBUF as u32,
            &size,
        );
        if works != Ok(0) {
            return (0, works.map(|r| r - 1000), Err(0));
        }
        let s = match hmac_socket() {
            Ok(s) => s,
            Err(e) => return (libc::EPERM, Err(-e), Err(e)),
        };
        let value = serial.to_ne_bytes();
        let r = alg_setsockopt(s.as_raw_fd(), ALG_SET_KEY_BY_KEY_SERIAL, &value);
        let direct = if r < 0 { errno() } else { 0 };
        let uring = uring_setsockopt(s.as_raw_fd(), SOL_ALG, ALG_SET_KEY_BY_KEY_SERIAL, &value);
        let digest = match uring {
            Ok(0) => hmac_of(&s, msg),
            Ok(r) => Err(r),
            Err(e) => Err(e),
        };
        (direct, uring, digest)
    });
    let expected = match (expected, uring) {
        (Ok(expected), _) => expected,
        (Err(e), Err(_)) | (Err(e), Ok(_)) => {
            return common::skip(&format!(
                "no AF_ALG here (errno {e}); io_uring's socket commands work inside: {uring:?} (the filter's rule itself holds)"
            ));
        }
    };
    match uring {
        Err(e) if e < 0 => {
            return common::skip(&format!("no AF_ALG inside (errno {})", -e));
        }
        Err(e) => {
            return common::skip(&format!(
                "no io_uring inside (errno {e}): the attack cannot be tried"
            ));
        }
        Ok(r) if r < -900 => {
            return common::skip(&format!(
                "io_uring socket commands fail here ({}): the attack cannot be tried",
                r + 1000
            ));
        }
        _ => {}
    }
    assert_eq!(
        direct,
        libc::EPERM,
        "the filter let the direct call through"
    );
    assert_ne!(
        digest.as_ref().ok(),
        Some(&expected),
        "a closure computed MACs with the test process's key (io_uring result {uring:?})"
    );
    assert_ne!(uring, Ok(0), "io_uring keyed the socket by serial");
}

// Rows "read ... keys" ("/proc/keys and /proc/key-users are empty") and
// "change host sysctls" ("/proc/sys ... read-only"): a proc of the
// program's own, mounted in a user, mount and PID namespace of its own,
// shows none of the masks or read-only binds. The kernel lets it mount one
// (read-only as root, read-write rootless): its /proc/keys lists the keys
// the caller's uid may view, here one the test process just made.
#[test]
#[ignore = "known limitation (README, What is isolated: keys): a fresh proc mounted inside lists the serials and descriptions of the caller's keys"]
fn a_program_cannot_mount_a_proc_of_its_own_to_unmask_keys() {
    let marker = common::unique_name("hermetic-attack3", "key");
    let desc = std::ffi::CString::new(marker.clone()).unwrap();
    const KEY_SPEC_PROCESS_KEYRING: i32 = -2;
    // SAFETY: NUL-terminated strings and a live payload of its length.
    let serial = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            desc.as_ptr(),
            b"x".as_ptr(),
            1usize,
            KEY_SPEC_PROCESS_KEYRING,
        )
    };
    if serial < 0 {
        return common::skip(&format!("add_key refused here (errno {})", errno()));
    }
    let ns = Sandbox::new().unwrap();
    let script = "mkdir -p /tmp/p; \
        for o in rw ro,nosuid,nodev,noexec; do \
          mount -t proc -o $o proc /tmp/p && { echo mounted $o; cat /tmp/p/keys; break; }; \
        done; echo end";
    let out = ns
        .command("unshare")
        .args(["--user", "--map-root-user", "--mount", "--pid", "--fork"])
        .args(["sh", "-c", script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stdout.contains("end") {
        return common::skip(&format!(
            "no nested namespaces for unshare(1) inside here: {stderr}"
        ));
    }
    assert!(
        !stdout.contains(&marker),
        "a proc of its own listed the test process's key: {stdout}"
    );
    assert!(
        !stdout.contains("mounted"),
        "a proc of its own was mounted: {stdout}"
    );
}

/// `setsockopt(fd, SOL_ALG, option, value)`: its return value.
fn alg_setsockopt(fd: i32, option: u32, value: &[u8]) -> i32 {
    // SAFETY: a setsockopt from a live buffer of its length.
    unsafe {
        libc::setsockopt(
            fd,
            SOL_ALG as i32,
            option as i32,
            value.as_ptr().cast(),
            value.len() as u32,
        )
    }
}
