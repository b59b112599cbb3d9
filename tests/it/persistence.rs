//! State persists across runs; commands start inside.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpListener;

use hermetic::{Sandbox, connect_retry, isolated};
use rstest::rstest;

#[rstest]
fn a_spawned_server_answers_later_runs(#[from(isolated)] ns: Sandbox) {
    let server = ns
        .spawn(|| {
            let l = TcpListener::bind("127.0.0.1:7000").unwrap();
            for (n, conn) in l.incoming().enumerate() {
                write!(conn.unwrap(), "hello {n}").unwrap();
            }
        })
        .unwrap();
    assert!(server.is_running());
    for n in 0..3 {
        let got = ns.run(|| {
            let mut s = connect_retry("127.0.0.1:7000");
            let mut buf = String::new();
            s.read_to_string(&mut buf).unwrap();
            buf
        });
        assert_eq!(got, format!("hello {n}"));
    }
    let pid = server.pid();
    server.kill().unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[rstest]
fn a_spawned_closure_can_be_joined(#[from(isolated)] ns: Sandbox) {
    let done = ns
        .spawn(|| std::fs::write("/tmp/done", b"yes").unwrap())
        .unwrap();
    done.join().unwrap();
    assert_eq!(ns.run(|| std::fs::read("/tmp/done").unwrap()), b"yes");
}

#[rstest]
fn join_returns_the_spawned_closures_value(#[from(isolated)] ns: Sandbox) {
    // Computed inside: the sandbox's hostname and the closure's pid there.
    let worker = ns
        .spawn(|| {
            (
                std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
                std::process::id(),
            )
        })
        .unwrap();
    let (hostname, pid_inside) = worker.join().unwrap();
    assert_eq!(hostname, "sandbox\n");
    assert!(pid_inside < 10, "pid {pid_inside}: not the sandbox's");
    // Larger than a pipe holds: the closure waits until join reads it.
    let big = ns.spawn(|| vec![7u8; 1 << 20]).unwrap();
    assert_eq!(big.join().unwrap(), vec![7u8; 1 << 20]);
    // Errors are values too.
    let missing = ns
        .spawn(|| std::fs::read("/nonexistent").map_err(|e| e.kind().to_string()))
        .unwrap();
    assert_eq!(missing.join().unwrap(), Err("entity not found".to_owned()));
}

/// Like a thread's handle, a Spawned can be joined from another thread.
#[rstest]
fn a_spawned_handle_travels_between_threads(#[from(isolated)] ns: Sandbox) {
    fn send_sync<H: Send + Sync>(_: &H) {}
    let worker = ns.spawn(|| String::from("from inside")).unwrap();
    send_sync(&worker);
    let got = std::thread::spawn(move || worker.join().unwrap())
        .join()
        .unwrap();
    assert_eq!(got, "from inside");
}

/// As try_run does: the panic is an Error::Panicked with the message and
/// where it happened in the closure.
#[rstest]
fn join_returns_the_spawned_closures_panic(#[from(isolated)] ns: Sandbox) {
    let failed = ns
        .spawn(|| -> u32 { panic!("background failure {}", 6 * 7) })
        .unwrap();
    let line = line!() - 2;
    let err = failed.join().unwrap_err();
    let hermetic::Error::Panicked {
        message, location, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(message, "background failure 42");
    let location = location.as_ref().expect("a location");
    assert_eq!(
        (location.file.as_str(), location.line),
        ("tests/it/persistence.rs", line)
    );
    assert!(
        err.to_string()
            .starts_with("panicked inside the sandbox at tests/it/persistence.rs:"),
        "{err}"
    );
    // The sandbox goes on.
    assert_eq!(ns.spawn(|| 5).unwrap().join().unwrap(), 5);
}

#[rstest]
fn dropping_a_spawned_handle_kills_it(#[from(isolated)] ns: Sandbox) {
    let server = ns
        .spawn(|| std::thread::sleep(std::time::Duration::from_secs(3600)))
        .unwrap();
    let pid = server.pid();
    drop(server);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(ns.run(|| 1), 1);
}

#[rstest]
fn command_runs_inside(#[from(isolated)] ns: Sandbox) {
    let out = ns.command("hostname").output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"sandbox\n");
    // In the sandbox's network and PID namespaces too.
    let out = ns
        .command("sh")
        .args(["-c", "ls /sys/class/net; echo $$"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines[0], "lo");
    let pid_inside: u32 = lines[1].parse().unwrap();
    assert!(
        pid_inside < 10,
        "sh has pid {pid_inside}: not in the sandbox's PID namespace"
    );
}

#[test]
fn command_sees_the_configured_hostname_and_exit_codes() {
    let ns = Sandbox::builder().hostname("db-1").build().unwrap();
    let out = ns.command("hostname").output().unwrap();
    assert_eq!(out.stdout, b"db-1\n");
    let status = ns.command("sh").args(["-c", "exit 7"]).status().unwrap();
    assert_eq!(status.code(), Some(7));
    let status = ns
        .command("sh")
        .args(["-c", "kill -TERM $$"])
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM));
}

#[rstest]
fn command_reaches_a_server_inside(#[from(isolated)] ns: Sandbox) {
    let _server = ns
        .spawn(|| {
            let l = TcpListener::bind("127.0.0.1:7001").unwrap();
            let (mut c, _) = l.accept().unwrap();
            c.write_all(b"from the server").unwrap();
        })
        .unwrap();
    // A real program, in the same network namespace.
    let out = ns
        .command("python3")
        .args([
            "-c",
            "import socket,time\n\
             for _ in range(500):\n\
             \ttry:\n\t\ts=socket.create_connection(('127.0.0.1',7001));break\n\
             \texcept OSError: time.sleep(0.01)\n\
             print(s.recv(100).decode())",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "from the server",
        "{out:?}"
    );
}

#[test]
fn a_missing_program_is_a_spawn_error() {
    let ns = Sandbox::new().unwrap();
    let err = ns.command("/nonexistent/program").spawn().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn command_after_the_sandbox_is_gone_fails_cleanly() {
    let ns = Sandbox::new().unwrap();
    let mut cmd = ns.command("true");
    drop(ns);
    assert!(cmd.status().is_err());
}

/// A fixture can hand out a sandbox with its server: the handle borrows
/// nothing.
fn sandbox_with_server() -> (Sandbox, hermetic::Spawned) {
    let ns = Sandbox::new().unwrap();
    let server = ns
        .spawn(|| {
            let l = std::net::TcpListener::bind("127.0.0.1:7300").unwrap();
            for c in l.incoming() {
                use std::io::Write;
                let _ = c.unwrap().write_all(b"up");
            }
        })
        .unwrap();
    (ns, server)
}

#[test]
fn a_sandbox_and_its_server_travel_together() {
    let (ns, server) = sandbox_with_server();
    let got = ns.run(|| {
        use std::io::Read;
        let mut s = String::new();
        hermetic::connect_retry("127.0.0.1:7300")
            .read_to_string(&mut s)
            .unwrap();
        s
    });
    assert_eq!(got, "up");
    assert!(server.is_running());
    server.kill().unwrap();
}

#[test]
fn join_is_bounded_by_the_sandbox_timeout() {
    let ns = Sandbox::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let sleeper = ns
        .spawn(|| std::thread::sleep(std::time::Duration::from_secs(3600)))
        .unwrap();
    let err = sleeper.join().unwrap_err();
    assert!(matches!(err, hermetic::Error::TimedOut { .. }), "{err:?}");
    assert_eq!(ns.run(|| 3), 3);
}

#[test]
fn join_timeout_bounds_the_join() {
    let ns = Sandbox::new().unwrap();
    let sleeper = ns
        .spawn(|| std::thread::sleep(std::time::Duration::from_secs(3600)))
        .unwrap();
    let pid = sleeper.pid();
    let err = sleeper
        .join_timeout(std::time::Duration::from_millis(200))
        .unwrap_err();
    let hermetic::Error::TimedOut { after, stuck, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*after, std::time::Duration::from_millis(200));
    // Where it was: asleep in clock_nanosleep (or nanosleep); rootless,
    // the system call of a run's process (not dumpable) is hidden.
    if hidden(stuck) {
        assert!(stuck.contains("sleeping"), "{err}");
    } else {
        assert!(stuck.contains("sleeping in"), "{err}");
        assert!(stuck.contains("nanosleep"), "{err}");
    }
    // Killed and reaped.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(
        ns.spawn(|| 6)
            .unwrap()
            .join_timeout(std::time::Duration::MAX)
            .unwrap(),
        6
    );
}

/// The stall: a spawned closure whose threads all wait on a lock
/// that the fork copied held. Its join ends with the sandbox's timeout and
/// says where it is and why, as a run's timeout does.
#[test]
fn join_of_a_closure_stuck_on_a_lock_copied_by_the_fork_times_out_and_says_so() {
    // Another thread holds a lock while the spawn forks: the closure's
    // copy of the lock is held for ever.
    let held = common::HeldLock::new();
    let lock = held.lock.clone();
    let ns = Sandbox::builder()
        .timeout(std::time::Duration::from_millis(500))
        .build()
        .unwrap();
    let stuck = ns.spawn(move || *lock.lock().unwrap()).unwrap();
    let err = stuck.join().unwrap_err();
    held.release();
    let hermetic::Error::TimedOut { after, stuck, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*after, std::time::Duration::from_millis(500));
    assert!(stuck.contains("in futex()") || hidden(stuck), "{err}");
    assert!(stuck.contains("a lock one of them held"), "{err}");
    assert!(stuck.contains("nextest"), "{err}");
    assert!(
        err.to_string().contains("raise SandboxBuilder::timeout"),
        "{err}"
    );
    // The sandbox is still usable.
    assert_eq!(ns.run(|| 5), 5);
}

/// A closure stuck on a static lock that the fork copied held: the
/// timeout says which file's static data holds the lock, at the address
/// `nm` shows for that static, so that it can be named; a lock in an `Arc`
/// is said to be in allocated memory. Root only: rootless, what a run's
/// process waits on is hidden from the test process.
#[test]
fn a_timed_out_closure_s_lock_is_placed_where_nm_names_it() {
    static STATIC_LOCK: std::sync::Mutex<u32> = std::sync::Mutex::new(0);
    let ns = Sandbox::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _guard = STATIC_LOCK.lock().unwrap();
        held_tx.send(()).unwrap();
        let _ = done_rx.recv();
    });
    held_rx.recv().unwrap();
    let err = ns.try_run(|| *STATIC_LOCK.lock().unwrap()).unwrap_err();
    drop(done_tx);
    holder.join().unwrap();
    let hermetic::Error::TimedOut { stuck, .. } = &err else {
        panic!("{err:?}")
    };
    if hidden(stuck) {
        common::skip("rootless, what a run's process waits on is hidden: checked as root");
        return;
    }
    // Where nm puts the static: its address less the test binary's load
    // address (its mapping at offset 0; the binary is position-independent).
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let exe = exe.to_str().unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let base = maps
        .lines()
        .filter(|l| l.ends_with(exe) && l.split_whitespace().nth(2) == Some("00000000"))
        .map(|l| u64::from_str_radix(l.split('-').next().unwrap(), 16).unwrap())
        .min()
        .unwrap();
    let start = &STATIC_LOCK as *const _ as u64 - base;
    let end = start + std::mem::size_of_val(&STATIC_LOCK) as u64;
    let said = stuck
        .split(" on a lock at 0x")
        .nth(1)
        .unwrap_or_else(|| panic!("no lock's address in: {stuck}"));
    let (hex, rest) = said.split_once(' ').unwrap();
    let at = u64::from_str_radix(hex, 16).unwrap();
    assert!(
        (start..end).contains(&at),
        "{at:#x} not in {start:#x}..{end:#x}: {stuck}"
    );
    assert!(
        rest.starts_with(&format!("in the static data of {exe}")),
        "{stuck}"
    );
    assert!(rest.contains("nm -nC"), "{stuck}");
    // A lock in an Arc: in allocated memory.
    let held = common::HeldLock::new();
    let lock = held.lock.clone();
    let err = ns.try_run(move || *lock.lock().unwrap()).unwrap_err();
    held.release();
    assert!(
        err.to_string()
            .contains("on a lock in memory the program allocated"),
        "{err}"
    );
}

/// The hang as a test sees it: a run waits for a spawned server
/// that is stuck on a lock the fork copied held. The run's timeout names
/// the server as the likely culprit, with where its threads are; a
/// spawned closure that is merely busy (asleep here) is not named.
#[test]
fn a_run_timing_out_names_a_spawned_closure_stuck_on_a_lock() {
    let held = common::HeldLock::new();
    let lock = held.lock.clone();
    let ns = Sandbox::builder()
        .timeout(std::time::Duration::from_millis(500))
        .build()
        .unwrap();
    let (ready_r, ready_w) = std::io::pipe().unwrap();
    let server = ns
        .spawn(move || {
            let l = TcpListener::bind("127.0.0.1:7400").unwrap();
            drop(ready_w);
            let (mut c, _) = l.accept().unwrap();
            // Stuck before it answers.
            let n = *lock.lock().unwrap();
            write!(c, "{n}").unwrap();
        })
        .unwrap();
    let sleeper = ns
        .spawn(|| std::thread::sleep(std::time::Duration::from_secs(3600)))
        .unwrap();
    // Listening once the pipe's only writer has gone.
    std::io::read_to_string(ready_r).unwrap();
    let err = ns
        .try_run(|| {
            let mut s = std::net::TcpStream::connect("127.0.0.1:7400").unwrap();
            std::io::read_to_string(&mut s).unwrap()
        })
        .unwrap_err();
    held.release();
    let hermetic::Error::TimedOut { stuck, .. } = &err else {
        panic!("{err:?}")
    };
    let named = format!(
        "meanwhile the spawned closure with pid {} (a server this run may wait for?) has \
         every thread waiting on a lock: where its threads were: ",
        server.pid()
    );
    if hidden(stuck) {
        common::skip(
            "rootless, what a spawned closure (not dumpable) waits in is hidden from the test \
             process: the server cannot be named; checked as root",
        );
        return;
    }
    assert!(stuck.contains(&named), "{err}");
    assert!(!stuck.contains(&format!("pid {}", sleeper.pid())), "{err}");
    // The run's own threads first: it waited in a read.
    assert!(stuck.starts_with("where its threads were: "), "{err}");
}

#[test]
fn a_handle_outliving_its_sandbox_says_the_sandbox_is_dead() {
    let ns = Sandbox::new().unwrap();
    let sleeper = ns
        .spawn(|| std::thread::sleep(std::time::Duration::from_secs(3600)))
        .unwrap();
    let pid = sleeper.pid();
    drop(ns);
    // The sandbox's teardown killed and reaped it.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!sleeper.is_running());
    let err = sleeper.join().unwrap_err();
    assert!(
        matches!(err, hermetic::Error::SandboxDead { .. }),
        "{err:?}"
    );
}

/// Spawns a closure that panics and never joins it.
#[test]
#[ignore = "helper, run by a_spawned_closures_panic_is_printed_when_it_happens"]
fn helper_spawns_a_panicking_closure() {
    let ns = Sandbox::new().unwrap();
    let doomed = ns
        .spawn(|| -> () { panic!("marker-spawned-panic {}", 6 * 7) })
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while doomed.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the spawned closure never ended"
        );
        std::thread::yield_now();
    }
    drop(doomed);
    drop(ns);
}

#[test]
fn a_spawned_closures_panic_is_printed_when_it_happens() {
    let out = common::run_self("helper_spawns_a_panicking_closure", &[], &["--nocapture"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hermetic: a spawned closure panicked at tests/it/persistence.rs:"),
        "{stderr}"
    );
    assert!(stderr.contains("marker-spawned-panic 42"), "{stderr}");
}

/// Starts `script` under sh in `ns`, and waits until it says "ready".
fn start_ready(ns: &Sandbox, script: &str) -> std::process::Child {
    let mut child = ns
        .command("sh")
        .args(["-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_ready(&mut child);
    child
}

/// Starts a program that exits 42 on SIGTERM, sends SIGTERM to the
/// `Child` once the program is ready, and returns how it ended.
fn sigterm_a_trapping_program(ns: &Sandbox) -> std::process::ExitStatus {
    let child = start_ready(
        ns,
        "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
    );
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    child.wait_with_output().unwrap().status
}

#[rstest]
fn sigterm_to_a_command_reaches_its_program(#[from(isolated)] ns: Sandbox) {
    let status = sigterm_a_trapping_program(&ns);
    assert_eq!(status.code(), Some(42), "{status:?}");
}

/// Opens as many fds as the limit allows (the outer relay closes them all
/// before it passes signals on: a wide window), then sends SIGTERM to
/// commands the moment their program says it is ready.
#[test]
#[ignore = "helper, run by a_signal_sent_as_soon_as_the_program_runs_reaches_it"]
fn helper_signals_commands_as_soon_as_they_run() {
    use std::os::fd::AsRawFd;
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(1 << 16)
        .min(1 << 16);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        },
    )
    .unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let mut fds = Vec::new();
    while fds.len() as u64 + 64 < hard {
        match rustix::io::fcntl_dupfd_cloexec(&null, 0) {
            Ok(fd) => fds.push(fd),
            Err(_) => break,
        }
    }
    println!("{} fds open (fd {} and up)", fds.len(), null.as_raw_fd());
    let ns = Sandbox::new().unwrap();
    for i in 0..20 {
        let status = sigterm_a_trapping_program(&ns);
        assert_eq!(status.code(), Some(42), "round {i}: {status:?}");
    }
}

#[test]
fn a_signal_sent_as_soon_as_the_program_runs_reaches_it() {
    let out = common::run_self("helper_signals_commands_as_soon_as_they_run", &[], &[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[rstest]
fn a_command_killed_by_a_signal_reports_that_signal(#[from(isolated)] ns: Sandbox) {
    use std::os::unix::process::ExitStatusExt;
    let mut child = start_ready(&ns, "echo ready; exec sleep 3600");
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGUSR1), "{status:?}");
}

#[rstest]
fn killing_a_command_leaves_nothing_inside(#[from(isolated)] ns: Sandbox) {
    let mut child = start_ready(&ns, "echo ready; exec sleep 3601");
    child.kill().unwrap();
    child.wait().unwrap();
    // The program dies with its relay (as it is killed, the kernel then
    // reaps it, being PID 1's child): wait for that, not for a time.
    let left = ns.run(|| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let left: Vec<String> = std::fs::read_dir("/proc")
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .filter_map(|e| std::fs::read_to_string(e.path().join("cmdline")).ok())
                .filter(|c| c.contains("3601"))
                .collect();
            if left.is_empty() || std::time::Instant::now() > deadline {
                return left;
            }
            std::thread::yield_now();
        }
    });
    assert!(left.is_empty(), "left inside: {left:?}");
}

/// Whether a timeout's report says the system calls were hidden: rootless,
/// a run's process is not dumpable, and the test process may not read
/// them (README, "What is isolated").
fn hidden(stuck: &str) -> bool {
    !nix::unistd::geteuid().is_root() && stuck.contains("hidden from an unprivileged test process")
}
