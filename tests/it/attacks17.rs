//! Attacks of round 17: a hostile or buggy test against the promises of
//! the README ("What is isolated", "deaths", "Looking inside a failed
//! sandbox") and the rustdoc. One attack per test; each asserts the
//! promise, so a test that fails today is `#[ignore]`d with the finding as
//! its reason (and the modes it was seen in: root; rootless with
//! `/etc/subuid` ranges, hermetic-ci; the same with `HERMETIC_ONE_ID=1`;
//! rootless without ranges, hermetic-noids); run them with
//! `cargo test --test it attacks17 -- --include-ignored`.
//!
//! Findings, as found (each a test below):
//!
//! - A closure's own exit status is told as one of hermetic's: the runner
//!   tells its own ends by exit statuses (122: the result channel broken,
//!   124: a stack overflow, `src/proto/reports.rs`) that a closure may
//!   exit with as well (`std::process::exit(124)`, as `timeout(1)` does),
//!   and the test process (`src/run/runner.rs`, `Runner::wait`) then
//!   reports `Error::StackOverflow` or `Error::Channel`, not
//!   `Error::Exited`.
//! - `HERMETIC_KEEP` keeps no sandbox whose run overflowed its stack
//!   (`Error::StackOverflow`) or was stopped by a limit
//!   (`Error::LimitReached`): `ran_and_failed` (`src/sandbox/mod.rs`)
//!   lists the other deaths only; nor one whose spawned closure panicked
//!   (`Spawned::join`, `src/sandbox/spawned.rs`, never keeps).
//! - A spawned closure stopped by the memory limit is joined as
//!   `Error::Killed` (SIGKILL with cgroups, SIGABRT with rlimits), not
//!   `Error::LimitReached`: only `run` calls `name_the_limit`.
//! - A closure's `raise(SIGSEGV)` is swallowed: the runner's handler
//!   (`on_fault`, as std's before it) resets the action and returns, and
//!   the closure returns its value.
//! - `hermetic run --file SRC:DST` reads SRC whole with `std::fs::read`
//!   while parsing options (`src/bin/hermetic/main.rs`), before the 4 MiB
//!   bound: a FIFO blocks it for ever (past `--timeout`, deaf to SIGTERM),
//!   `/dev/zero` grows its memory without bound.
//! - A `Network` host may be named `ip6-localhost` (or `ip6-loopback`;
//!   `localhost` is refused): every host's `/etc/hosts` names `::1` so
//!   first, and the name resolves first to each host's own loopback.
//! - Rootless with `/etc/subuid` ranges: a copy-on-write sandbox's upper
//!   layer on disk (`/var/tmp/hermetic-UID/PID.*.u0`) stays after the
//!   sandbox when a process inside gave what it made in the test's tree to
//!   another id and closed it (`chown 1234`, `chmod 000`): the caller
//!   cannot remove subordinate ids' files outside (the test removes them
//!   as root in a sandbox of its own).
//! - `hermetic enter PID` accepts the init process of any live sandbox of
//!   the caller's, kept or not (a running test's), and runs a program in
//!   it: `init_of_kept` (`src/sandbox/kept.rs`) checks the name
//!   `hermetic-init` and the uid only.
//!
//! Since: a stack overflow travels as a frame of its own (no exit status a
//! closure could give), and `HERMETIC_KEEP` keeps a sandbox whose run
//! overflowed or reached a limit; the runner's fault handler sends a
//! `SIGSEGV` that was raised once more; `--file` takes a regular file of
//! at most 4 MiB, checked before it is read; `ip6-localhost` and
//! `ip6-loopback` are reserved host names; a spawned closure's join names
//! the limit it reached and, with `HERMETIC_KEEP`, a failed join keeps
//! the sandbox when it is dropped, and rootless with ranges a teardown
//! removes files of another id from a sandbox mapping the range (a later
//! session). Kept (reasons on the tests): exit 122, `hermetic enter` of a
//! live sandbox (now documented).
//!
//! What was tried and held (tests below without `#[ignore]`, or by hand):
//!
//! - A closure using its own sandbox's handle (`run`, `spawn`) from inside
//!   a run: `Error::NotTheOwner`, bounded, the sandbox usable after; a
//!   spawned closure's handle moved into a run and joined there: the run
//!   dies (SIGABRT), bounded, the sandbox usable after.
//! - `hermetic run --keep` keeps a sandbox after `--timeout`, a memory
//!   limit kill and a SIGSEGV (by hand).
//! - `hermetic run` with `--tmpfs` over the working directory or a parent:
//!   the program starts there, in the tmpfs, nothing reaches the host;
//!   `--bind-ro` over a parent: it starts in `/` (the working directory is
//!   not there), read-only. A stale `$PWD` is replaced by the real one.
//! - `--file` of a directory, or of a symbolic link to one: refused (2).
//! - The chowned-layer attack as root: the layer is removed.

use std::time::Duration;

use hermetic::{Error, Sandbox};

use crate::common;

/// A recursion with no end, each level holding a frame of its own.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[7]
}

/// The sandbox the tests of this file use.
fn sandbox() -> Sandbox {
    Sandbox::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// README, deaths: `try_run` returns `Error::Exited { status }` for a
/// closure that exits; 124 is `timeout(1)`'s status, which a closure
/// passing on a program's status exits with.
#[test]
fn a_closure_exiting_124_is_reported_as_exited() {
    a_closure_exiting_is_reported_as_exited(124);
}

/// The same, for 122.
#[test]
#[ignore = "kept: a runner that cannot send its result exits 122, which a closure's exit(122) looks like (Error::Channel's message says the channel)"]
fn a_closure_exiting_122_is_reported_as_exited() {
    a_closure_exiting_is_reported_as_exited(122);
}

/// A run whose closure exits with `status` is `Error::Exited` with it.
fn a_closure_exiting_is_reported_as_exited(status: i32) {
    let ns = sandbox();
    let err = ns
        .try_run::<_, ()>(move || std::process::exit(status))
        .unwrap_err();
    assert!(
        matches!(err, Error::Exited { status: s, .. } if s == status),
        "a closure's exit({status}) was reported as: {err:?} ({err})"
    );
}

/// A spawned closure's exit status, joined.
#[test]
fn a_spawned_closure_exiting_124_is_joined_as_exited() {
    let ns = sandbox();
    let spawned = ns.spawn::<_, ()>(|| std::process::exit(124)).unwrap();
    let err = spawned.join().unwrap_err();
    assert!(
        matches!(err, Error::Exited { status: 124, .. }),
        "a spawned closure's exit(124) was joined as: {err:?} ({err})"
    );
}

/// With HERMETIC_KEEP=1: a run that overflows its stack.
#[test]
#[ignore = "helper: run by a_run_that_overflows_its_stack_is_kept"]
fn helper_overflows_with_keep() {
    let ns = sandbox();
    let err = ns.try_run(|| recurse(0)).unwrap_err();
    println!("the run: {err:?}");
}

/// Kills a kept sandbox's init process that `said` names, if any, and
/// waits (bounded) until it is gone.
fn kill_kept(said: &str) {
    let Some(pid) = common::kept_init(said) else {
        return;
    };
    // SAFETY: pidfd_open makes a new fd, which is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    // SAFETY: a signal to the kept sandbox's init process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    if fd >= 0 {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd on this stack; then the fd made above.
        unsafe {
            libc::poll(&mut pfd, 1, 30_000);
            libc::close(fd);
        }
    }
}

/// README, Looking inside a failed sandbox: with `HERMETIC_KEEP=1` a
/// sandbox whose run fails (panic, death, timeout) is kept, and the
/// failure says how to get in. A stack overflow is a death.
#[test]
fn a_run_that_overflows_its_stack_is_kept() {
    kept_after_a_failed_run("helper_overflows_with_keep", "StackOverflow");
}

/// Runs `helper` with `HERMETIC_KEEP=1`: its run fails with `error` (its
/// `Debug` name), and its sandbox is kept (then killed here).
fn kept_after_a_failed_run(helper: &str, error: &str) {
    let out = common::run_self(helper, &[("HERMETIC_KEEP", "1")], &["--nocapture"]);
    let said = common::said(&out);
    kill_kept(&said);
    assert!(said.contains(error), "the helper's run: {said}");
    assert!(
        said.contains("is kept (init process"),
        "a run that failed with {error} left no kept sandbox: {said}"
    );
}

/// With HERMETIC_KEEP=1: a run stopped by its memory limit.
#[test]
#[ignore = "helper: run by a_run_stopped_by_a_limit_is_kept"]
fn helper_reaches_a_limit_with_keep() {
    let ns = Sandbox::builder()
        .timeout(Duration::from_secs(30))
        .memory_limit(64 << 20)
        .build()
        .unwrap();
    let err = ns.try_run(|| vec![1u8; 1 << 30].len()).unwrap_err();
    println!("the run: {err:?}");
}

/// README, Looking inside a failed sandbox: a run stopped by a limit
/// (killed by the memory cgroup, or aborted by RLIMIT_AS) is a death too.
#[test]
fn a_run_stopped_by_a_limit_is_kept() {
    kept_after_a_failed_run("helper_reaches_a_limit_with_keep", "LimitReached");
}

/// README, Limits: "A run stopped by a limit is `Error::LimitReached`,
/// which names it"; a spawned closure's join tells its end as a run's
/// (README, `spawn`).
#[test]
fn a_spawned_closure_stopped_by_a_limit_is_joined_as_limit_reached() {
    let ns = Sandbox::builder()
        .timeout(Duration::from_secs(30))
        .memory_limit(64 << 20)
        .build()
        .unwrap();
    // The control: a run so stopped names its limit.
    let ran = ns.try_run(|| vec![1u8; 1 << 30].len()).unwrap_err();
    assert!(matches!(ran, Error::LimitReached { .. }), "{ran:?}");
    let spawned = ns.spawn(|| vec![1u8; 1 << 30].len()).unwrap();
    let err = spawned.join().unwrap_err();
    assert!(
        matches!(err, Error::LimitReached { .. }),
        "a spawned closure stopped by the memory limit was joined as: {err:?}"
    );
}

/// With HERMETIC_KEEP=1: a spawned closure that panics, joined.
#[test]
#[ignore = "helper: run by a_spawned_closure_that_panics_keeps_its_sandbox"]
fn helper_joins_a_panicking_spawned_closure_with_keep() {
    let ns = sandbox();
    let spawned = ns
        .spawn(|| -> u8 { panic!("marker-spawned-panic") })
        .unwrap();
    let err = spawned.join().unwrap_err();
    println!("the join: {err:?}");
}

/// README, Looking inside a failed sandbox: a sandbox whose run fails
/// (panic, ...) is kept with `HERMETIC_KEEP=1`; a spawned closure's panic,
/// joined, is the same failure of a closure of the sandbox's.
#[test]
fn a_spawned_closure_that_panics_keeps_its_sandbox() {
    let out = common::run_self(
        "helper_joins_a_panicking_spawned_closure_with_keep",
        &[("HERMETIC_KEEP", "1")],
        &["--nocapture"],
    );
    let said = common::said(&out);
    kill_kept(&said);
    assert!(said.contains("Panicked"), "the helper's join: {said}");
    assert!(
        said.contains("is kept (init process"),
        "a spawned closure's panic left no kept sandbox: {said}"
    );
}

/// A closure that uses its own sandbox's handle (captured by reference)
/// from inside a run: its nested run ends, bounded, with an error or a
/// value, and the sandbox stays usable afterwards.
#[test]
fn a_closure_using_its_own_sandbox_handle_leaves_it_usable() {
    common::bounded("a nested use of the handle", || {
        let ns = sandbox();
        let inner = ns.run(|| {
            let r = ns.try_run(|| 7u8);
            format!("{r:?}")
        });
        println!("the nested run: {inner}");
        assert_eq!(ns.run(|| 5u8), 5);
        let spawned_inner = ns.run(|| {
            let r = ns.spawn(|| 7u8).map(|s| s.join());
            format!("{r:?}")
        });
        println!("the nested spawn: {spawned_inner}");
        assert_eq!(ns.run(|| 6u8), 6);
    });
}

/// The resident memory of process `pid` (`VmRSS`), in bytes; 0 once gone.
fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb << 10)
}

/// `hermetic run --help`: `--file SRC:DST` copies a host file, "at most 4
/// MiB in all"; `--timeout` kills PROGRAM (and the sandbox) after its
/// duration; SIGTERM sent to hermetic is passed on. A `--file` naming a
/// FIFO nobody writes (a buggy script's `<(...)` gone, a service's control
/// FIFO) must not make hermetic wait for ever, deaf to SIGTERM.
#[test]
fn hermetic_run_with_a_fifo_file_ends() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut child = common::hermetic_command()
        .arg("run")
        .arg("--timeout=2")
        .arg(format!("--file={}:/tmp/x", fifo.display()))
        .args(["--", "true"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut ended = None;
    while std::time::Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            ended = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut after_term = None;
    if ended.is_none() {
        // SAFETY: a signal to the child this test started.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        after_term = common::ended_within(&mut child, Duration::from_secs(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ended.is_some(),
        "hermetic run --timeout=2 --file FIFO:/tmp/x did not end within 10 s; after SIGTERM: {}",
        match after_term {
            Some(s) => format!("ended ({s})"),
            None => "still running 5 s later (killed with SIGKILL)".into(),
        }
    );
}

/// `hermetic run --help`: `--file` takes "at most 4 MiB in all". A
/// `--file` naming a file without end (`/dev/zero`, `/dev/urandom`) must be
/// refused once past that, not read into hermetic's memory without bound.
#[test]
fn hermetic_run_with_an_endless_file_reads_at_most_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::hermetic_command()
        .args([
            "run",
            "--timeout=2",
            "--file=/dev/zero:/tmp/x",
            "--",
            "true",
        ])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut peak = 0;
    let ended = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        peak = peak.max(rss_of(pid));
        // Bounded here: at 256 MiB it is plainly not stopping at 4 MiB.
        if peak > 256 << 20 || std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        ended.is_some_and(|s| !s.success()) && peak < 64 << 20,
        "hermetic run --file /dev/zero:/tmp/x: ended {ended:?}, resident memory seen up to {} MiB",
        peak >> 20
    );
}

/// README, Networks of sandboxes: "an `/etc/hosts` naming every host",
/// and a client reaches a server "by name". `localhost` is refused
/// ("reserved"), but the other names of the loopback's own lines in every
/// host's `/etc/hosts` (`ip6-localhost`, `ip6-loopback`) are not, and are
/// named there after those lines, so such a name leads each host to
/// itself; the builder should refuse it, or it should lead to the host.
#[test]
fn a_network_host_named_ip6_localhost_is_refused_or_reached_by_name() {
    let net = match hermetic::Network::builder()
        .host("ip6-localhost")
        .host("client")
        .build()
    {
        Err(Error::InvalidOption { .. }) => return,
        Err(e) => return common::skip(&format!("no network on this host: {e}")),
        Ok(net) => net,
    };
    let addr = net.host("ip6-localhost").addr();
    let seen = net.host("client").run(|| {
        use std::net::ToSocketAddrs;
        ("ip6-localhost", 7000)
            .to_socket_addrs()
            .map(|a| a.map(|a| a.ip()).collect::<Vec<_>>())
            .unwrap_or_default()
    });
    assert!(
        seen.first() == Some(&addr),
        "on host client, \"ip6-localhost\" resolves to {seen:?}, not to the host named so ({addr})"
    );
}

/// A closure handed a spawned closure's handle (moved into the run) and
/// joining it there: the run ends, bounded, and the sandbox stays usable.
#[test]
fn a_spawned_handle_joined_inside_a_run_is_bounded() {
    common::bounded("a join inside a run", || {
        let ns = sandbox();
        let spawned = ns
            .spawn(|| -> () { std::thread::sleep(Duration::from_secs(600)) })
            .unwrap();
        let inner =
            ns.try_run(move || format!("{:?}", spawned.join_timeout(Duration::from_secs(3))));
        println!("the join inside: {inner:?}");
        assert_eq!(ns.run(|| 5u8), 5);
    });
}

/// Paths under the disk base named `name`, at any depth (`find`).
fn find_in_disk_base(name: &str) -> Vec<std::path::PathBuf> {
    let out = std::process::Command::new("find")
        .arg(common::disk_base())
        .args(["-name", name])
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(std::path::PathBuf::from)
        .collect()
}

/// Removes `path`, a directory whose files are owned by ids of the
/// sandbox's (subordinate ids outside) and closed to everyone: as root in
/// a sandbox of this user's, which maps those ids and may override their
/// modes, through a writable bind of its parent.
fn remove_as_root_inside(path: &std::path::Path) {
    let parent = path.parent().unwrap().to_owned();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let ns = Sandbox::builder()
        .bind(&parent, "/tmp/l")
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let _ = ns.try_run(move || {
        let _ = std::process::Command::new("chmod")
            .args(["-R", "u+rwx", &format!("/tmp/l/{name}")])
            .status();
        let _ = std::fs::remove_dir_all(format!("/tmp/l/{name}"));
    });
}

/// README, What is isolated, write host files: the layer of the test's
/// own tree (copy-on-write) "lies on disk in a directory of the caller's
/// ... removed with the sandbox ... never its upper layer" kept. With ids
/// 0-65535 inside, root inside may give what it made there to another id
/// (a subordinate id outside) and close it (`chmod 000`, as a test of
/// permissions does): the caller cannot remove it outside, and the layer
/// stays on disk after the sandbox is gone (and after the next sandboxes).
#[test]
fn a_cow_layer_with_files_of_another_id_is_removed_with_its_sandbox() {
    if !common::many_ids() || !common::own_tree_layer_on_disk() {
        return common::skip("no ids but the caller's inside, or no layer on disk");
    }
    let name = common::unique_name("a17", "chowned");
    {
        let ns = common::cow_sandbox();
        let made = name.clone();
        let status = ns.run(move || {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "mkdir -p {made}/y && touch {made}/y/marker && chown -R 1234:1234 {made} \
                     && chmod 000 {made}/y {made}"
                ))
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        });
        assert!(status, "the closure could not make and chown its directory");
        // Nothing of it reached the test's tree.
        assert!(!std::path::Path::new(&name).exists());
    }
    let left = find_in_disk_base(&name);
    for path in &left {
        remove_as_root_inside(path);
    }
    // The emptied upper layers of this process's sandboxes, if left.
    let pid = std::process::id();
    let uppers: Vec<_> = left
        .iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(common::disk_base()).ok()?;
            let first = rel
                .components()
                .next()?
                .as_os_str()
                .to_string_lossy()
                .into_owned();
            (first.starts_with(&format!("{pid}.")) && first.contains(".u"))
                .then(|| common::disk_base().join(first))
        })
        .collect();
    common::remove_disk_leftovers(&uppers);
    assert!(
        left.is_empty(),
        "the dropped sandbox's layer is still on disk, holding what a process inside chowned: {left:?}"
    );
}

/// README, deaths: "`try_run` returns `Error::Killed { signal: "SIGSEGV"
/// }`" for a closure that dies of it. A closure that sends itself
/// `SIGSEGV` (`raise`, as a test of crash handling does), without a
/// handler of its own, dies of it, as a process with the default action
/// does.
#[test]
fn a_closure_raising_sigsegv_dies_of_it() {
    let ns = sandbox();
    let r = ns.try_run(|| {
        // SAFETY: a signal to this process, on purpose.
        unsafe { libc::raise(libc::SIGSEGV) };
        String::from("survived")
    });
    match r {
        Err(e) => common::assert_killed_by(&e, &["SIGSEGV"]),
        Ok(v) => panic!("a closure that raised SIGSEGV went on and returned {v:?}"),
    }
}

/// README, Looking inside a failed sandbox: `hermetic enter PID` enters a
/// kept sandbox, and "a pid that is no kept sandbox's is refused, 125".
/// A live sandbox of a running test, not kept, is no kept sandbox: a
/// program started in it behind the test's back (a file placed in its
/// `/tmp` while the test runs) must be refused.
#[test]
#[ignore = "kept: hermetic enter enters a live sandbox of the caller's own too, as nsenter could (README, Looking inside a failed sandbox)"]
fn hermetic_enter_refuses_a_sandbox_that_is_not_kept() {
    let ns = sandbox();
    let mut child = common::hermetic_command()
        .args(["enter", &ns.pid().to_string(), "--", "/bin/sh", "-c"])
        .arg("echo entered > /tmp/a17-entered")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = common::wait_bounded(&mut child);
    let entered = ns.run(|| std::path::Path::new("/tmp/a17-entered").exists());
    assert!(
        !entered && status.code() == Some(125),
        "hermetic enter of a live, unkept sandbox's init process: {status}, a file placed in its /tmp: {entered}"
    );
}
