//! Nothing outlives the sandbox, nor the test process.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common::{eventually, pids_with_marker};
use hermetic::Sandbox;

/// A `sleep` whose command line is unique to this test process.
fn marked_sleep(tag: &str) -> String {
    format!("86400.{}{tag}", std::process::id())
}

#[test]
fn dropping_kills_daemons_a_closure_left_behind() {
    let marker = marked_sleep("1");
    let ns = Sandbox::new().unwrap();
    let m = marker.clone();
    ns.run(move || {
        // Double fork and a new session: a daemon that nobody waits for.
        let status = Command::new("sh")
            .args([
                "-c",
                &format!("setsid sleep {m} >/dev/null 2>&1 < /dev/null &"),
            ])
            .status()
            .unwrap();
        assert!(status.success());
        // And a plain forked grandchild that is still running; the closure
        // returns without waiting for it, on purpose.
        std::mem::forget(Command::new("sleep").arg(&m).spawn().unwrap());
    });
    assert!(
        eventually(|| pids_with_marker(&marker).len() == 2),
        "the daemons did not start"
    );
    drop(ns);
    // Dropping waits for the init process, and it (PID 1) is reaped only
    // after every process of its namespace is gone.
    assert_eq!(pids_with_marker(&marker), Vec::<u32>::new());
}

#[test]
fn dropping_kills_spawned_servers_and_commands() {
    let marker = marked_sleep("2");
    let ns = Sandbox::new().unwrap();
    let server = ns
        .spawn(|| std::thread::sleep(std::time::Duration::from_secs(3600)))
        .unwrap();
    let server_pid = server.pid();
    // A handle that is never dropped must not keep anything alive either.
    std::mem::forget(server);
    let mut cmd = ns.command("sleep").arg(&marker).spawn().unwrap();
    assert!(eventually(|| pids_with_marker(&marker).len() == 1));
    drop(ns);
    assert!(!std::path::Path::new(&format!("/proc/{server_pid}")).exists());
    assert_eq!(pids_with_marker(&marker), Vec::<u32>::new());
    // The command's relay saw its program die and went the same way.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(cmd.wait().unwrap().signal(), Some(libc::SIGKILL));
}

const HELPER_ENV: &str = "HERMETIC_TEARDOWN_HELPER";

/// Starts work in several sandboxes, says READY, then waits to be killed.
#[test]
#[ignore = "helper: run by sigkill_of_the_test_process_leaves_nothing"]
fn helper_busy_sandboxes() {
    let Some(marker) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let marker = marker.into_string().unwrap();
    let sandboxes: Vec<Sandbox> = (0..3).map(|_| Sandbox::new().unwrap()).collect();
    let mut handles = Vec::new();
    for ns in &sandboxes {
        handles.push(
            ns.spawn(|| std::thread::sleep(std::time::Duration::from_secs(3600)))
                .unwrap(),
        );
        // Left running on purpose: the kill must take it down.
        std::mem::forget(ns.command("sleep").arg(&marker).spawn().unwrap());
        let m = marker.clone();
        ns.run(move || {
            Command::new("sh")
                .args([
                    "-c",
                    &format!("setsid sleep {m} >/dev/null 2>&1 < /dev/null &"),
                ])
                .status()
                .unwrap();
        });
    }
    std::thread::scope(|s| {
        for ns in &sandboxes {
            // Runs in flight when the kill comes.
            s.spawn(|| ns.run(|| std::thread::sleep(std::time::Duration::from_secs(3600))));
        }
        println!("READY");
        std::thread::sleep(std::time::Duration::from_secs(3600));
    });
}

#[test]
fn sigkill_of_the_test_process_leaves_nothing() {
    let marker = marked_sleep("3");
    let mut helper = common::self_command("helper_busy_sandboxes")
        // The marker is also a (non-matching) test filter, so every process
        // forked from the helper carries it in its command line.
        .args([marker.as_str(), "--nocapture"])
        .env(HELPER_ENV, &marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for READY on a thread, so that a helper that hangs fails this
    // test after a minute instead of hanging it.
    let stdout = helper.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // On a machine with one CPU libtest runs tests one at a time and
        // prints "test helper_busy_sandboxes ... " before the test runs:
        // READY then ends that line.
        let ready = BufReader::new(stdout)
            .lines()
            .any(|l| l.is_ok_and(|l| l.trim_end().ends_with("READY")));
        let _ = tx.send(ready);
    });
    let ready = rx.recv_timeout(std::time::Duration::from_secs(60));
    if ready != Ok(true) {
        let _ = helper.kill();
        let _ = helper.wait();
        panic!("the helper did not get ready: {ready:?}");
    }
    // helper, 3 servers, 3 runs in flight, 3 commands and their 3 relays,
    // 3 daemons: the runs start on threads, so wait for them.
    assert!(
        eventually(|| pids_with_marker(&marker).len() >= 16),
        "only {} marked processes",
        pids_with_marker(&marker).len()
    );
    // The 3 init processes run a program of their own: they are the
    // helper's children called hermetic-init.
    let inits: Vec<u32> = common::children_of(helper.id())
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "hermetic-init")
        })
        .collect();
    assert_eq!(inits.len(), 3, "init processes: {inits:?}");

    helper.kill().unwrap();
    helper.wait().unwrap();
    assert!(
        eventually(|| pids_with_marker(&marker).is_empty()),
        "survivors after SIGKILL of the test process: {:?}",
        pids_with_marker(&marker)
            .iter()
            .map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default())
            .collect::<Vec<_>>()
    );
    assert!(
        eventually(|| inits
            .iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())),
        "init processes survived: {inits:?}"
    );
}

/// The links in the fd table of the test process's thread `task` (a tid),
/// or of the process's own if `None`.
fn fd_links(task: Option<&str>) -> Vec<String> {
    let dir = match task {
        Some(tid) => format!("/proc/self/task/{tid}/fd"),
        None => "/proc/self/fd".to_owned(),
    };
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|l| l.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The test process's `hermetic-free` threads (which free what dropped sandboxes held).
fn reclaim_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .is_ok_and(|c| c.trim_end() == "hermetic-free")
        })
        .collect()
}

#[test]
fn a_dropped_sandbox_s_mounts_are_let_go_and_never_reach_a_run() {
    let ns = Sandbox::new().unwrap();
    let mnt = std::fs::read_link(format!("/proc/{}/ns/mnt", ns.pid()))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let other = Sandbox::new().unwrap();
    drop(ns);
    // At once: a run forked now has no fd of the dropped sandbox's mount
    // namespace (a fork copies the test process's table, not the thread's
    // that frees it).
    let seen = other.run(|| {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|l| l.to_string_lossy().into_owned())
            .filter(|l| l.starts_with("mnt:"))
            .collect::<Vec<_>>()
    });
    assert_eq!(
        seen,
        Vec::<String>::new(),
        "a run got a mount namespace's fd"
    );
    assert!(
        !fd_links(None).contains(&mnt),
        "the test process still holds {mnt} after the drop"
    );
    // Soon: nothing holds it, not even the reclaim thread, whose table
    // holds its socket and /dev/null only (copies of the test's fds,
    // even of its stdio, which a process may replace, would keep pipes
    // open, and their readers waiting).
    let held = || {
        reclaim_threads()
            .iter()
            .flat_map(|tid| fd_links(Some(tid)))
            .filter(|l| *l == mnt)
            .count()
    };
    assert!(eventually(|| held() == 0), "{mnt} is still held");
    let threads = reclaim_threads();
    assert_eq!(threads.len(), 1, "one reclaim thread per process");
    let table = fd_links(Some(&threads[0]));
    let extra: Vec<&String> = table
        .iter()
        .filter(|l| !l.starts_with("socket:") && *l != "/dev/null")
        .collect();
    assert!(
        extra.is_empty() && table.len() <= 4,
        "the reclaim thread holds more than its socket and /dev/null: {table:?}"
    );
}

/// hermetic's own threads of the test process (`hermetic-free`, which
/// frees what dropped sandboxes held, and `hermetic-tls`, whose
/// thread-local storage runs borrow) block every signal: the kernel never
/// picks one of them for a signal sent to the process, so a handler of the
/// test's (a `SIGCHLD` handler, as tokio's process support installs: it
/// writes to a self-pipe) never runs there. `hermetic-free` has an fd
/// table of its own: such a handler's write would have gone to whatever
/// that fd number is in it, and the signal been lost to the test.
#[test]
fn hermetic_s_own_threads_take_no_signal_of_the_test_process() {
    let ns = Sandbox::new().unwrap();
    ns.run(|| ());
    drop(ns);
    let threads: Vec<(String, u64)> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let comm = comm.trim_end();
            if !comm.starts_with("hermetic-") {
                return None;
            }
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            let blocked = status
                .lines()
                .find_map(|l| l.strip_prefix("SigBlk:"))
                .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())?;
            Some((comm.to_owned(), blocked))
        })
        .collect();
    let names: Vec<&str> = threads.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"hermetic-free") && names.contains(&"hermetic-tls"),
        "hermetic's threads are not both there: {names:?}"
    );
    let bit = |sig: i32| 1u64 << (sig - 1);
    let signals = [
        libc::SIGCHLD,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGPIPE,
        libc::SIGALRM,
        libc::SIGWINCH,
    ];
    let wanted = signals.iter().fold(0, |m, &s| m | bit(s));
    for (name, blocked) in &threads {
        assert_eq!(
            blocked & wanted,
            wanted,
            "{name} does not block every signal: SigBlk {blocked:016x}"
        );
    }
}
