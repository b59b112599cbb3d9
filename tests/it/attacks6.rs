//! A sixth round of attacks: on the layers a copy-on-write sandbox keeps on
//! disk, on `hermetic run`'s edges, and on what a sandbox's end leaves in
//! the test process.
//!
//! Each test is a finding; those still open, or kept as known limitations,
//! are `#[ignore]`d with the reason (`cargo test --test it attacks6 -- --ignored`
//! shows them).

use crate::common::{self, disk_base_entries as base_entries, hermetic_command as hermetic};

use std::process::Stdio;

/// Makes `depth` nested directories `d/d/d...` in the working directory,
/// one `mkdir` and `chdir` at a time (a path that long exceeds `PATH_MAX`).
const DEEP_PERL: &str = "for (1..$ARGV[0]) { mkdir 'd' or die \"mkdir $_: $!\"; \
                         chdir 'd' or die \"chdir $_: $!\" } print \"made\\n\"";

/// A program under `hermetic run` (copy-on-write, its working directory's
/// layer on disk in `/var/tmp/hermetic-UID`) makes 1100 nested
/// directories in its working directory, while hermetic's open-file limit
/// is the usual soft default, 1024. hermetic removes the upper layer with
/// `std::fs::remove_dir_all`, which holds one fd per level it descends:
/// past the limit it fails with `EMFILE`, and the layer (1100 directories,
/// 4.4 MB here; a program may make it as deep as it likes, 120 MB for
/// 30000) stays in `/var/tmp/hermetic-UID`: each later sweep under the
/// same limit finds it lockless, tries the same removal and fails the
/// same way (found so; fixed by a walk of hermetic's own, one directory
/// open at a time). So a
/// test leaves files on the host after its sandbox ends, and every run of
/// it adds more. Root, rootless with ids, rootless with one id alike (any
/// uid: the removal is the caller's own). A later sweep removes it only
/// from a process with a higher limit. With a limit of 20000 (this
/// host's), a depth of 30000 does it.
#[test]
fn a_layer_deeper_than_the_fd_limit_goes_with_the_sandbox() {
    if !common::own_tree_layer_on_disk() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("hermetic-attacks6")
        .tempdir_in(std::env::current_dir().unwrap())
        .unwrap();
    let mut cmd = hermetic();
    cmd.args(["run", "--", "perl", "-e", DEEP_PERL, "1100"])
        .current_dir(dir.path())
        .stdout(Stdio::piped());
    // The usual soft limit of a login (and of systemd's services).
    // SAFETY: setrlimit is async-signal-safe and touches no memory of ours.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let mut old = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut old);
            let lim = libc::rlimit {
                rlim_max: old.rlim_max,
                rlim_cur: old.rlim_max.min(1024),
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        })
    };
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "made",
        "{out:?}"
    );
    let left = base_entries(&format!("{pid}."));
    common::remove_disk_leftovers(&left);
    assert!(!dir.path().join("d").exists());
    assert!(
        left.is_empty(),
        "left on disk after the sandbox ended: {left:?}"
    );
}

/// A closure in a copy-on-write sandbox (`HostMode::CopyOnWrite`, the
/// test's own tree's layer on disk) makes 15000 nested directories in the
/// working directory (under this host's open-file limit of 20000). The
/// sandbox is dropped on a thread with libtest's stack (2 MiB): the drop
/// removes the upper layer with `std::fs::remove_dir_all`, which recurses
/// once per level, on the dropping thread's stack. The stack overflows and
/// the whole test process dies (`SIGSEGV`, "has overflowed its stack"),
/// taking every other test of it along (found so; fixed by a walk
/// without recursion). Root, rootless with ids, rootless
/// with one id alike, wherever the fd limit is above the depth the stack
/// holds (under a limit of 1024 the layer is left on disk instead, as in
/// `a_layer_deeper_than_the_fd_limit_goes_with_the_sandbox`).
#[test]
fn a_deep_tree_in_a_layer_on_disk_does_not_crash_the_drop() {
    if !common::own_tree_layer_on_disk() {
        return;
    }
    let child = common::self_command("helper_drops_a_deep_layer")
        .env("HERMETIC_A6_DEEP", "15000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = common::bounded("the helper", move || child.wait_with_output().unwrap());
    // What the dead process left: removed here, so that no other
    // process's sweep (which would recurse as deep) meets it.
    let left = base_entries(&format!("{pid}."));
    common::remove_disk_leftovers(&left);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("dropped")
            && left.is_empty(),
        "the test process that dropped the sandbox: {:?}\n{}\nleft on disk: {left:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "helper: run by a_deep_tree_in_a_layer_on_disk_does_not_crash_the_drop"]
fn helper_drops_a_deep_layer() {
    let Some(depth) = std::env::var("HERMETIC_A6_DEEP").ok() else {
        return;
    };
    let depth: u32 = depth.parse().unwrap();
    let name = common::unique_name("hermetic-attacks6", "deep");
    let ns = common::cow_sandbox();
    let made = ns.run(move || {
        std::fs::create_dir(&name).unwrap();
        std::env::set_current_dir(&name).unwrap();
        for _ in 0..depth {
            std::fs::create_dir("d").unwrap();
            std::env::set_current_dir("d").unwrap();
        }
        true
    });
    assert!(made);
    // Dropped on this test thread, with libtest's stack.
    drop(ns);
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "dropped");
}

/// In a closure: writes a `Value` frame of `payload` on the run's own
/// result channel, as the runner would, and ends the process at once.
fn send_own_value_frame(payload: &[u8]) -> ! {
    let fd = hermetic::__result_channel_fd().unwrap();
    let mut frame = vec![1u8];
    frame.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    frame.extend_from_slice(payload);
    // SAFETY: the closure's own result fd, written on purpose.
    let f = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    nix::unistd::write(&f, &frame).unwrap();
    // SAFETY: ends this process at once, its frame sent.
    unsafe { libc::_exit(0) }
}

/// A result type that nests, as a tree or a linked list returned by a
/// closure does.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
enum Nested {
    Leaf,
    Node(Box<Nested>),
}

/// A run whose closure returns a nesting type ([`Nested`], as any tree or
/// list does) writes its own frame into its result channel
/// (`__result_channel_fd`, or the run's one write-only pipe) and exits: a
/// `Value` frame of 200 KB, each byte a variant that holds one more level.
/// The test process decodes it with postcard, which has no depth limit:
/// the decoding recurses 200000 levels on the test thread's stack, which
/// overflows, and the whole test process dies ("has overflowed its
/// stack", `SIGABRT`) instead of the run returning an error (DESIGN: "the
/// parent never trusts bytes from the child: a malformed or oversized
/// frame is an error, not a crash"). Closure, spawned closure (its
/// `join`) alike; root, rootless with ids, one id alike (nothing here
/// depends on ids).
#[test]
fn a_deeply_nested_result_is_an_error_not_a_crash() {
    let out = common::run_self(
        "helper_decodes_a_deep_result",
        &[("HERMETIC_A6_NEST", "1")],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("decoded:"),
        "the test process that decoded the result: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "helper: run by a_deeply_nested_result_is_an_error_not_a_crash"]
fn helper_decodes_a_deep_result() {
    if std::env::var_os("HERMETIC_A6_NEST").is_none() {
        return;
    }
    let ns = hermetic::Sandbox::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let res = ns.try_run(|| -> Nested {
        let mut payload = vec![1u8; 200_000];
        payload.push(0);
        send_own_value_frame(&payload)
    });
    use std::io::Write;
    let _ = writeln!(
        std::io::stdout().lock(),
        "decoded: {}",
        if res.is_ok() { "ok" } else { "an error" }
    );
}

/// While another thread of the test process sets a panic hook (as a test
/// that silences an expected panic does, or a logging library as it
/// starts; here: take the hook and set it back, in a loop, so that the
/// hook chain ends as it began), runs whose closure panics are made
/// one after another. std keeps the hook behind a lock (`HOOK`, an
/// `RwLock`) that `set_hook` and `take_hook` write-lock: a run forked
/// while the other thread held it had it held for ever, and its
/// closure's panic waited on it, so the run ended only at its timeout and
/// was reported as `TimedOut`, not as the panic it was. Closure, root and
/// rootless alike (nothing depends on ids).
#[test]
fn a_closures_panic_is_reported_while_another_thread_sets_a_hook() {
    let ns = hermetic::Sandbox::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let timed_out = while_another_thread(
        || {
            let hook = std::panic::take_hook();
            std::panic::set_hook(hook);
        },
        || match ns.try_run(|| -> () { panic!("the closure's own panic") }) {
            Err(hermetic::Error::Panicked { message, .. }) => {
                assert_eq!(message, "the closure's own panic");
                false
            }
            Err(hermetic::Error::TimedOut { .. }) => true,
            other => panic!("{other:?}"),
        },
    );
    assert_eq!(timed_out, 0, "a panicking run was reported as timed out");
}

/// The same for the environment: while another thread sets a variable
/// in a loop (`std::env::set_var`, as a test that configures a library
/// does), closures read one. std keeps the environment behind a lock
/// (`ENV_LOCK`, an `RwLock`) that `set_var` write-locks: a run forked while
/// the other thread held it would wait in its first `std::env::var` for
/// ever (until the run's timeout).
#[test]
fn a_closure_reads_the_environment_while_another_thread_sets_it() {
    let ns = hermetic::Sandbox::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let mut n = 0u64;
    let timed_out = while_another_thread(
        move || {
            n += 1;
            // SAFETY: std locks the environment around the change, and
            // every reader of it in this binary is Rust's (std's `var`,
            // `Command`), which takes that lock.
            unsafe { std::env::set_var("HERMETIC_A6_SET_ELSEWHERE", n.to_string()) };
        },
        || match ns.try_run(|| std::env::var_os("PATH").is_some()) {
            Ok(found) => {
                assert!(found, "PATH is not set in the closure");
                false
            }
            Err(hermetic::Error::TimedOut { .. }) => true,
            other => panic!("{other:?}"),
        },
    );
    assert_eq!(timed_out, 0, "a run reading the environment timed out");
}

/// Calls `run` 50 times (or until it returns true: a run that timed out)
/// while another thread calls `meanwhile` in a loop; how many timed out.
fn while_another_thread(
    mut meanwhile: impl FnMut() + Send + 'static,
    mut run: impl FnMut() -> bool,
) -> usize {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                meanwhile();
            }
        })
    };
    let mut timed_out = 0;
    for _ in 0..50 {
        if run() {
            timed_out += 1;
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
    timed_out
}

/// A run whose closure returns a sequence of zero-sized values (here
/// `Vec<()>`; any `Vec` of a unit struct or `PhantomData` alike) writes its
/// own `Value` frame: 11 bytes, a length of 2^63 elements, and no
/// elements, since a zero-sized value takes no bytes. postcard decodes
/// each element from no bytes, 2^63 times, on the test thread, after the
/// run's process has ended: the test process spins on a core for ever,
/// past the run's 5 s timeout, which no longer applies (DESIGN: "nothing
/// user code does ... can make the test process spin or block past a
/// deadline"). Closure, spawned closure (`join`) alike; root, rootless
/// with ids, one id alike. The helper is killed after 20 s.
#[test]
fn a_result_of_zero_sized_elements_cannot_spin_the_test_process() {
    let mut child = common::self_command("helper_decodes_zero_sized_elements")
        .env("HERMETIC_A6_ZST", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ended = None;
    for _ in 0..2 {
        if common::eventually(|| {
            ended = child.try_wait().unwrap();
            ended.is_some()
        }) {
            break;
        }
    }
    if ended.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut stdout = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout);
    assert!(
        ended.is_some_and(|s| s.success()) && stdout.contains("decoded:"),
        "the test process that decoded the result did not end within 20 s: {ended:?}\n{stdout}"
    );
}

#[test]
#[ignore = "helper: run by a_result_of_zero_sized_elements_cannot_spin_the_test_process"]
fn helper_decodes_zero_sized_elements() {
    if std::env::var_os("HERMETIC_A6_ZST").is_none() {
        return;
    }
    let ns = hermetic::Sandbox::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let res = ns.try_run(|| -> Vec<()> {
        // A varint of 2^63: nine bytes of 0x80, then 0x01.
        let mut payload = vec![0x80u8; 9];
        payload.push(0x01);
        send_own_value_frame(&payload)
    });
    use std::io::Write;
    let _ = writeln!(
        std::io::stdout().lock(),
        "decoded: {}",
        if res.is_ok() { "ok" } else { "an error" }
    );
}
