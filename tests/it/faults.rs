//! Faults inside a run: each is reported precisely, the sandbox stays
//! usable, and the test process never hangs or crashes.

use crate::common;

use std::time::Duration;

use crate::common::eventually;
use hermetic::{Error, Sandbox, isolated};
use rstest::rstest;

#[rstest]
fn underscore_exit_is_reported(#[from(isolated)] ns: Sandbox) {
    let err = ns.try_run::<_, ()>(|| unsafe_exit(9)).unwrap_err();
    assert!(matches!(err, Error::Exited { status: 9, .. }), "{err:?}");
    assert_eq!(ns.run(|| 1), 1);
}

/// `_exit(2)`: no destructors, no flush.
fn unsafe_exit(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

#[rstest]
fn a_panic_in_drop_during_unwinding_aborts_and_is_named(#[from(isolated)] ns: Sandbox) {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("second panic, in drop");
        }
    }
    let err = ns
        .try_run::<_, ()>(|| {
            let _guard = PanicsOnDrop;
            panic!("first panic");
        })
        .unwrap_err();
    // A panic while panicking aborts the process.
    common::assert_killed_by(&err, &["SIGABRT"]);
    assert_eq!(ns.run(|| 2), 2);
}

#[rstest]
fn closing_the_result_channel_is_reported(#[from(isolated)] ns: Sandbox) {
    let err = ns
        .try_run(|| {
            let fd = hermetic::__result_channel_fd().unwrap();
            nix::unistd::close(fd).unwrap();
            42u32
        })
        .unwrap_err();
    assert!(matches!(err, Error::Channel { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("closed or broke its result channel"),
        "{err}"
    );
    assert_eq!(ns.run(|| 3), 3);
}

#[test]
fn an_endless_run_without_timeout_is_ended_by_killing_the_sandbox() {
    let ns = Sandbox::new().unwrap();
    let killer = ns.killer().unwrap();
    // The closure says it is running through a pipe of the test's (its
    // fds are inherited); the kill follows that, not a guess of time.
    let (running_r, running_w) = nix::unistd::pipe().unwrap();
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            let mut byte = [0u8; 1];
            assert_eq!(nix::unistd::read(&running_r, &mut byte), Ok(1));
            killer.kill().unwrap();
        });
        let w = &running_w;
        let res = ns.try_run::<_, ()>(move || {
            nix::unistd::write(w, b"r").unwrap();
            loop {
                std::hint::spin_loop();
            }
        });
        // Should the closure never have run, the reader sees end-of-file
        // and fails instead of waiting for ever.
        drop(running_w);
        res.unwrap_err()
    });
    common::assert_killed_by(&err, &["SIGKILL"]);
    assert!(!ns.is_alive());
    // A dead sandbox refuses new runs with a clear error, and still drops.
    let err = ns.try_run(|| 1).unwrap_err();
    assert!(matches!(err, Error::SandboxDead { .. }), "{err:?}");
    assert!(err.to_string().contains("make a new one"), "{err}");
    killer.kill().unwrap(); // already dead: not an error
}

#[test]
fn a_bounded_fork_bomb_is_cleaned_up() {
    let comm = format!("bomb{}", std::process::id() % 100_000);
    let ns = Sandbox::new().unwrap();
    let name = comm.clone();
    let made = ns.run(move || {
        let mut made = 0;
        for _ in 0..200 {
            // SAFETY: the child only sets its name and sleeps.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => {
                    let c = std::ffi::CString::new(name.clone()).unwrap();
                    // SAFETY: PR_SET_NAME reads a NUL-terminated string.
                    unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
                Ok(_) => made += 1,
                Err(_) => break,
            }
        }
        made
    });
    assert_eq!(made, 200);
    let count = || {
        common::proc_pids()
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm)
            })
            .count()
    };
    assert!(eventually(|| count() == 200), "only {} forks seen", count());
    drop(ns);
    assert_eq!(count(), 0, "forks survived the sandbox");
}

#[test]
fn a_sandbox_whose_init_was_killed_from_outside_says_it_is_dead() {
    let ns = Sandbox::new().unwrap();
    // SAFETY: a signal to the sandbox's init process, our own child.
    assert_eq!(unsafe { libc::kill(ns.pid() as i32, libc::SIGKILL) }, 0);
    // The init process is our child, reaped at drop: wait until it has
    // died, without reaping it.
    // SAFETY: waitid writes one siginfo_t, which lives on this stack.
    let waited = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            ns.pid(),
            &mut info,
            libc::WEXITED | libc::WNOWAIT | libc::__WALL,
        )
    };
    assert_eq!(waited, 0, "{}", std::io::Error::last_os_error());
    assert!(!ns.is_alive());
    let err = ns.try_run(|| 1).unwrap_err();
    assert!(matches!(err, Error::SandboxDead { .. }), "{err:?}");
}

/// A join under way on one thread while another drops the sandbox: the
/// drop killed the closure, and the join says that the sandbox went
/// (`SandboxDead`), not a bare `SIGKILL` as from an OOM killer.
#[test]
fn a_join_under_way_as_the_sandbox_is_dropped_says_the_sandbox_went() {
    let ns = Sandbox::new().unwrap();
    let spawned = ns
        .spawn(|| -> u32 {
            loop {
                std::thread::park();
            }
        })
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let joining = std::thread::spawn(move || {
        tx.send(nix::unistd::gettid().as_raw()).unwrap();
        spawned.join()
    });
    let tid = rx.recv().unwrap();
    // Under way once that thread waits in poll for the closure's end.
    let waits = [libc::SYS_poll, libc::SYS_ppoll].map(|n| n.to_string());
    let polling = || {
        std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).is_ok_and(|s| {
            waits
                .iter()
                .any(|w| s.split(' ').next() == Some(w.as_str()))
        })
    };
    assert!(eventually(polling), "the join never waited");
    drop(ns);
    let err = joining.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::SandboxDead { .. }), "{err:?}");
}
