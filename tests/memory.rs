//! A sandbox costs no copy of the test process's memory, and holds none of
//! it: its init process is a small program of its own, started without a
//! copy of the test process's page tables.
//!
//! Own test binary: one test installs a signal handler, which is state of
//! the whole process, and one counts page faults, which any fork of the
//! process (a run) causes: the tests here take turns.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

use hermetic::Sandbox;

/// kcmp(2): do processes `a` and `b` share their address space?
fn same_memory(a: u32, b: u32) -> Result<bool, std::io::Error> {
    const KCMP_VM: libc::c_int = 1;
    // SAFETY: kcmp only compares kernel objects of the two processes.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_VM, 0, 0) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r == 0)
    }
}

#[test]
fn the_sandbox_init_has_a_memory_of_its_own() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Sandbox::new().unwrap();
    match same_memory(std::process::id(), ns.pid()) {
        Ok(same) => assert!(!same, "the init process shares the test process's memory"),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            common::skip(&format!("this kernel has no kcmp(2) ({e})"));
        }
        Err(e) => panic!("kcmp: {e}"),
    }
    // Nothing of the test process is mapped there: a few pages of the init
    // program (no file: it runs from memory), its stack and the kernel's.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", ns.pid())).unwrap();
    let exe = std::env::current_exe().unwrap();
    let exe = exe.file_name().unwrap().to_string_lossy();
    assert!(
        !maps.contains(&*exe),
        "the test binary is mapped in PID 1:\n{maps}"
    );
    assert!(
        maps.lines().count() <= 12,
        "PID 1 maps more than a small program:\n{maps}"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", ns.pid())).unwrap();
    let rss: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(rss < 1024, "PID 1 holds {rss} KiB");
    // A run, by contrast, works on a copy: what it writes stays there.
    let mut here = vec![1u8; 4096];
    let there = ns.run(|| {
        here.iter_mut().for_each(|b| *b = 2);
        here.iter().map(|&b| u64::from(b)).sum::<u64>()
    });
    assert_eq!(there, 2 * 4096);
    assert!(here.iter().all(|&b| b == 1));
}

/// Minor page faults of the calling thread so far.
fn minor_faults() -> i64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD writes one rusage to the live local.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(r, 0);
    usage.ru_minflt
}

/// With a copy-on-write init process, every page the test writes after
/// creating a sandbox would fault and be copied; started without a copy
/// (and exec'd at once), none does.
#[test]
fn writing_memory_after_creating_a_sandbox_copies_nothing() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const LEN: usize = 64 << 20;
    // SAFETY: a new private anonymous mapping, unmapped below.
    let buf = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(buf, libc::MAP_FAILED);
    // Small pages, so that faults count pages whatever the THP setting.
    // SAFETY: advice on our own mapping.
    unsafe { libc::madvise(buf, LEN, libc::MADV_NOHUGEPAGE) };
    // SAFETY: buf is LEN writable bytes, ours alone.
    let bytes = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), LEN) };
    bytes.iter_mut().step_by(4096).for_each(|b| *b = 1);

    let ns = Sandbox::new().unwrap();
    let before = minor_faults();
    bytes.iter_mut().step_by(4096).for_each(|b| *b = 2);
    let faults = minor_faults() - before;
    let pages = (LEN / 4096) as i64;
    assert!(
        faults < pages / 16,
        "{faults} page faults rewriting {pages} pages after creating a sandbox"
    );
    drop(ns);
    // SAFETY: the mapping made above, no longer borrowed.
    unsafe { libc::munmap(buf, LEN) };
}

static HANDLER_RAN: AtomicBool = AtomicBool::new(false);

extern "C" fn note_signal(_: libc::c_int) {
    HANDLER_RAN.store(true, Ordering::SeqCst);
}

/// No handler of the test's ever runs in the init process (it blocks every
/// signal, from its launch, while it still shares the test's memory, to
/// its end), and only SIGKILL (what dropping the sandbox sends) ends it.
#[test]
fn signals_sent_to_the_sandbox_init_run_no_code_of_the_test() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the handler only stores to an atomic.
    let installed = unsafe {
        libc::signal(
            libc::SIGUSR1,
            note_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };
    assert_ne!(installed, libc::SIG_ERR);
    let ns = Sandbox::new().unwrap();
    for sig in [libc::SIGUSR1, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: signalling our own child, the sandbox's init process.
        assert_eq!(unsafe { libc::kill(ns.pid() as libc::pid_t, sig) }, 0);
    }
    // kill() has queued each signal when it returns: blocked, they stay
    // pending; a fatal one not blocked would already have marked the
    // process to die, and a caught one would have left the set.
    let status = std::fs::read_to_string(format!("/proc/{}/status", ns.pid())).unwrap();
    let pending = status
        .lines()
        .find_map(|l| l.strip_prefix("ShdPnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    for sig in [libc::SIGUSR1, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        assert_ne!(
            pending & (1 << (sig - 1)),
            0,
            "signal {sig} is not pending: {status}"
        );
    }
    assert!(ns.is_alive(), "the init process died of a signal");
    assert_eq!(ns.run(|| 7), 7);
    assert!(
        !HANDLER_RAN.load(Ordering::SeqCst),
        "the test's SIGUSR1 handler ran in the sandbox's init process"
    );
    // SAFETY: restoring the default disposition.
    unsafe { libc::signal(libc::SIGUSR1, libc::SIG_DFL) };
}
