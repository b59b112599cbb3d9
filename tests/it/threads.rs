//! Many threads create and use sandboxes at once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use hermetic::Sandbox;

/// Sets the flag when dropped, also while a failed assertion unwinds: the
/// threads that spin until it is set then end, and the scope fails the
/// test instead of waiting for them for ever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn threads_create_and_run_sandboxes_concurrently() {
    std::thread::scope(|s| {
        for t in 0..8u32 {
            s.spawn(move || {
                for i in 0..10u32 {
                    let ns = Sandbox::new().unwrap();
                    let got = ns.run(move || (t, i, std::process::id()));
                    assert_eq!((got.0, got.1), (t, i));
                    // In a fresh PID namespace: pid 1 is the init
                    // process, pid 2 the helper that made its inner user
                    // namespace (gone by now), and the first run pid 3.
                    assert_eq!(got.2, 3);
                }
            });
        }
    });
}

#[test]
fn one_sandbox_serves_many_threads_at_once() {
    let ns = Sandbox::new().unwrap();
    let ns = &ns;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| s.spawn(move || (0..20u64).map(|i| ns.run(move || t * 100 + i)).sum::<u64>()))
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            let t = t as u64;
            assert_eq!(h.join().unwrap(), (0..20).map(|i| t * 100 + i).sum::<u64>());
        }
    });
}

#[test]
fn a_lock_held_by_another_thread_does_not_block_setup() {
    // Setup after fork must not touch locks: hold the allocator-adjacent
    // and std locks busy on other threads while sandboxes are made.
    let stop = AtomicBool::new(false);
    let shared = Mutex::new(Vec::<u8>::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let mut v = shared.lock().unwrap();
                    v.push(1);
                    v.clear();
                    let _ = std::env::var("PATH");
                    drop(vec![0u8; 4096]);
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        for _ in 0..30 {
            let ns = Sandbox::new().unwrap();
            assert_eq!(ns.run(|| 7), 7);
        }
    });
}

#[test]
fn a_sandbox_outlives_the_thread_that_made_it() {
    // The lifeline is the process, not the creating thread: a sandbox made
    // on a thread that then exits keeps working.
    let (ns, tid) = std::thread::spawn(|| (Sandbox::new().unwrap(), nix::unistd::gettid()))
        .join()
        .unwrap();
    // join() returns before the kernel is done with the thread: wait until
    // it is gone from the process (what a death signal would follow).
    let task = format!("/proc/self/task/{tid}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::path::Path::new(&task).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "thread {tid} never ended"
        );
        std::thread::yield_now();
    }
    assert_eq!(
        ns.run(|| std::fs::read_to_string("/proc/1/comm").unwrap()),
        "hermetic-init\n"
    );
}

#[test]
fn closures_print_while_other_threads_print() {
    // Other threads hammer std's stdout and stderr locks (as libtest's own
    // thread does between tests) while closures that print are forked.
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                use std::io::Write;
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::io::stdout().lock().write_all(b"");
                    let _ = std::io::stderr().lock().write_all(b"");
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        let ns = Sandbox::new().unwrap();
        for i in 0..200 {
            let got = ns.run(move || {
                println!("inside {i}");
                eprintln!("inside {i}");
                i
            });
            assert_eq!(got, i);
        }
    });
}

#[test]
fn sandbox_and_error_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    fn error<T: std::error::Error + Send + Sync + 'static>() {}
    send_sync::<Sandbox>();
    error::<hermetic::Error>();
}

/// A thread that holds stdout while it makes and drops sandboxes (which
/// open and close fds of hermetic's), while another thread runs closures:
/// the second waits for stdout at each fork, and must hold nothing the
/// first needs meanwhile (it takes the lock on hermetic's fd list last).
#[test]
fn a_thread_holding_stdout_can_make_sandboxes_while_others_run() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let busy = Sandbox::new().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..30u32 {
                    assert_eq!(busy.run(move || i), i);
                }
            });
            s.spawn(|| {
                let held = std::io::stdout().lock();
                for _ in 0..30 {
                    drop(Sandbox::new().unwrap());
                }
                drop(held);
            });
        });
        let _ = tx.send(());
    });
    if rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .is_err()
    {
        // The deadlocked thread holds stdout: libtest could not even print
        // the failure. Say it on fd 2 and end the process, which fails the
        // test run instead of hanging it.
        let msg = b"a_thread_holding_stdout_can_make_sandboxes_while_others_run: \
                    sandboxes made under a held stdout lock deadlocked\n";
        // SAFETY: writes a static buffer to fd 2.
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
        std::process::exit(101);
    }
}
