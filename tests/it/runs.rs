//! Closures capture anything; results travel as bounded frames.

use crate::common;

use std::collections::BTreeMap;

use hermetic::{Error, Sandbox, isolated};
use rstest::rstest;

#[rstest]
fn closures_capture_by_move_and_by_reference(#[from(isolated)] ns: Sandbox) {
    // Not Serialize, not Send: only the result has to cross back.
    let rc = std::rc::Rc::new(vec![1u64, 2, 3]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let borrowed = String::from("borrowed");
    let got = ns.run(move || {
        // The listener fd came along: the child is a fork of the test.
        let local = listener.local_addr().unwrap().ip().to_string();
        (rc.iter().sum::<u64>(), local, borrowed.len())
    });
    assert_eq!(got, (6, "127.0.0.1".to_owned(), 8));
    let s = String::from("by reference");
    assert_eq!(ns.run(|| s.clone()), "by reference");
}

#[rstest]
fn structured_results_round_trip(#[from(isolated)] ns: Sandbox) {
    let map: BTreeMap<String, Vec<Option<i64>>> = ns.run(|| {
        BTreeMap::from([
            ("a".into(), vec![Some(-1), None]),
            ("b".into(), vec![Some(i64::MAX)]),
        ])
    });
    assert_eq!(map["a"], [Some(-1), None]);
    let r: Result<u8, String> = ns.run(|| Err("kept as a value".into()));
    assert_eq!(r, Err("kept as a value".to_owned()));
}

#[rstest]
fn a_16_mib_result_arrives_whole(#[from(isolated)] ns: Sandbox) {
    let big: Vec<u8> = ns.run(|| (0..16 << 20).map(|i: u32| (i % 251) as u8).collect());
    assert_eq!(big.len(), 16 << 20);
    assert!(big.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
}

#[test]
fn a_result_over_the_limit_is_an_error_not_an_allocation() {
    let ns = Sandbox::builder().max_result_size(1024).build().unwrap();
    let err = ns.try_run(|| vec![0u8; 4096]).unwrap_err();
    assert!(matches!(err, Error::Channel { .. }), "{err:?}");
    assert!(
        err.to_string().contains("over the limit of 1024 bytes"),
        "{err}"
    );
    assert_eq!(ns.run(|| 1), 1, "the sandbox stays usable");
}

/// Writes `bytes` to the closure's own result channel, then exits.
fn scribble<T>(bytes: Vec<u8>) -> impl FnOnce() -> T {
    move || {
        let fd = hermetic::__result_channel_fd().expect("inside a run");
        // SAFETY: fd is this process's result pipe, open until it exits.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let n = nix::unistd::write(fd, &bytes);
        assert_eq!(n.unwrap(), bytes.len());
        std::process::exit(0)
    }
}

#[rstest]
fn a_frame_claiming_2_pow_63_bytes_is_refused(#[from(isolated)] ns: Sandbox) {
    let mut frame = vec![1u8];
    frame.extend_from_slice(&(1u64 << 63).to_le_bytes());
    let err = ns.try_run::<_, u32>(scribble(frame)).unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");
}

#[rstest]
fn garbage_on_the_channel_is_an_error(#[from(isolated)] ns: Sandbox) {
    let err = ns
        .try_run::<_, u32>(scribble(b"\xde\xad\xbe\xef garbage".to_vec()))
        .unwrap_err();
    assert!(err.to_string().contains("unknown frame tag 0xde"), "{err}");
}

#[rstest]
fn a_truncated_frame_is_an_error(#[from(isolated)] ns: Sandbox) {
    let mut frame = vec![1u8];
    frame.extend_from_slice(&100u64.to_le_bytes());
    frame.extend_from_slice(b"short");
    let err = ns.try_run::<_, u32>(scribble(frame)).unwrap_err();
    assert!(
        err.to_string().contains("stopped after 5 of 100 bytes"),
        "{err}"
    );
}

#[rstest]
fn a_frame_that_does_not_decode_as_t_is_an_error(#[from(isolated)] ns: Sandbox) {
    let mut frame = vec![1u8];
    frame.extend_from_slice(&1u64.to_le_bytes());
    frame.push(0xff); // not a valid postcard varint for a String length
    let err = ns.try_run::<_, String>(scribble(frame)).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
}

#[rstest]
fn a_result_that_cannot_be_encoded_is_an_error(#[from(isolated)] ns: Sandbox) {
    #[derive(Debug)]
    struct Unencodable;
    impl serde::Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("this type refuses to be encoded"))
        }
    }
    impl<'de> serde::Deserialize<'de> for Unencodable {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Ok(Unencodable)
        }
    }
    let err = ns.try_run(|| Unencodable).unwrap_err();
    assert!(matches!(err, Error::Encode { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("encoding the closure's result"),
        "{err}"
    );
}

thread_local! {
    static COUNTER: std::cell::Cell<u32> = const { std::cell::Cell::new(1) };
    static LIST: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![1, 2, 3]);
}

/// A closure's thread-locals start fresh, as on a new thread, whatever the
/// test thread did with them, and what a run does to them stays there.
#[rstest]
fn thread_locals_start_fresh_in_every_run(#[from(isolated)] ns: Sandbox) {
    COUNTER.with(|c| c.set(5));
    LIST.with(|l| l.borrow_mut().push(4));
    let seen = || (COUNTER.with(|c| c.get()), LIST.with(|l| l.borrow().len()));
    assert_eq!(ns.run(seen), (1, 3));
    let changed = ns.run(|| {
        COUNTER.with(|c| c.set(9));
        LIST.with(|l| l.borrow_mut().clear());
        seen()
    });
    assert_eq!(changed, (9, 0));
    assert_eq!(ns.run(seen), (1, 3));
    assert_eq!(seen(), (5, 4));
}

/// The runner is a proper thread to the C library too: a recursive pthread
/// mutex it holds (glibc tells owners apart by the thread id it keeps in
/// each thread's control block) is busy for another thread.
#[rstest]
fn c_library_locks_know_the_closure_thread(#[from(isolated)] ns: Sandbox) {
    let busy_elsewhere = ns.run(|| {
        // SAFETY: a process-private recursive mutex, initialised before use
        // and boxed so that its address stays put; the other thread only
        // tries to lock it.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_settype(&mut attr, libc::PTHREAD_MUTEX_RECURSIVE);
            let m: &'static mut libc::pthread_mutex_t = Box::leak(Box::new(std::mem::zeroed()));
            libc::pthread_mutex_init(m, &attr);
            assert_eq!(libc::pthread_mutex_lock(m), 0);
            assert_eq!(libc::pthread_mutex_lock(m), 0, "recursive relock");
            let addr = m as *mut libc::pthread_mutex_t as usize;
            std::thread::spawn(move || {
                let m = addr as *mut libc::pthread_mutex_t;
                libc::pthread_mutex_trylock(m)
            })
            .join()
            .unwrap()
        }
    });
    assert_eq!(busy_elsewhere, libc::EBUSY);
}

/// The thread whose thread-local storage runs borrow is parked with every
/// signal blocked, so that no handler of the test ever runs on it.
#[test]
fn the_parked_tls_thread_takes_no_signals() {
    let borrows = cfg!(all(
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )) && std::env::var_os("HERMETIC_RUNNER_THREAD").is_none_or(|v| v == "0");
    if !borrows {
        common::skip(
            "runs start a thread of their own here (not glibc, or HERMETIC_RUNNER_THREAD=1)",
        );
        return;
    }
    Sandbox::new().unwrap().run(|| ());
    // Other tests' threads come and go while this one looks: a task listed
    // may be gone before its files are read. The parked thread never goes.
    let parked: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            (comm.trim() == "hermetic-tls")
                .then(|| std::fs::read_to_string(dir.join("status")).unwrap())
        })
        .collect();
    assert_eq!(parked.len(), 1, "one parked thread per process");
    let blocked = parked[0]
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGCHLD] {
        assert_ne!(blocked & (1 << (sig - 1)), 0, "signal {sig} not blocked");
    }
}
