//! Counted: 300 sandboxes (and 20 networks) in a row, and 300
//! runs on one sandbox, leak nothing.
//!
//! Alone in its binary because it counts process-wide resources (fds,
//! threads, children) that other tests running in parallel would change.

mod common;

use hermetic::Sandbox;

#[derive(Debug, PartialEq, Eq)]
struct Usage {
    fds: usize,
    threads: usize,
    children: usize,
    mounts: usize,
}

fn usage() -> Usage {
    Usage {
        fds: std::fs::read_dir("/proc/self/fd").unwrap().count(),
        threads: common::self_status("Threads:") as usize,
        children: common::children(),
        mounts: std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .count(),
    }
}

#[test]
fn three_hundred_sandboxes_leak_nothing() {
    // The first sandbox opens the process's lifeline, which stays: make it
    // before counting.
    Sandbox::new().unwrap().run(|| ());
    let before = usage();
    for i in 0..300u32 {
        let ns = Sandbox::new().unwrap();
        assert_eq!(ns.run(move || i), i);
        if i % 50 == 0 {
            let _server = ns.spawn(|| std::thread::sleep(std::time::Duration::from_secs(60)));
            ns.command("true").status().unwrap();
        }
    }
    assert_eq!(usage(), before);

    // Networks too: hosts, switch, links.
    for _ in 0..20 {
        let net = hermetic::Network::builder()
            .host("a")
            .host("b")
            .build()
            .unwrap();
        net.partition(&[&["a"], &["b"]]).unwrap();
        assert_eq!(net.host("b").run(|| 2), 2);
    }
    assert_eq!(usage(), before);

    // Copy-on-write, writing in the test's own tree: nothing of their
    // layers is left, in memory or on disk (where this host keeps the
    // tree's layer, /var/tmp/hermetic-UID, whose entries are named after
    // this process).
    let ours = format!("{}.", std::process::id());
    let on_disk = || {
        std::fs::read_dir(format!("/var/tmp/hermetic-{}", nix::unistd::geteuid()))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&ours))
                    .count()
            })
            .unwrap_or(0)
    };
    let cwd = std::env::current_dir().unwrap();
    for i in 0..50u32 {
        let ns = Sandbox::builder()
            .host(hermetic::HostMode::CopyOnWrite)
            .build()
            .unwrap();
        let dir = cwd.join(format!("hermetic-leak-{}-{i}", std::process::id()));
        let d = dir.clone();
        // Where the tree is not writable outside, the write fails inside
        // too: the layers are made and removed all the same.
        ns.run(move || {
            let _ = std::fs::create_dir_all(d.join("sub"));
        });
        drop(ns);
        assert!(!dir.exists(), "{} reached the host", dir.display());
    }
    assert_eq!(on_disk(), 0, "layers of this process left on disk");
    assert_eq!(usage(), before);

    // Many runs on one live sandbox: each run reaps the process it forked
    // (its joiner) and the one that ran the closure, so only the sandbox's
    // init process is left as a child.
    let ns = Sandbox::new().unwrap();
    for i in 0..300u32 {
        assert_eq!(ns.run(move || i), i);
    }
    // Runs that leave nothing running start no output-forwarding thread
    // (the short-lived task that frees a run's memory prints nothing).
    assert_eq!(
        usage().threads,
        before.threads,
        "a forwarding thread started for runs that left nothing behind"
    );
    // What the crate docs say a live sandbox costs ("Resource leaking"):
    // its init process's pidfd, the write end of its control pipe, the
    // two ends of its stdout and stderr pipes, and its init process's
    // `children` file.
    assert_eq!(
        usage().fds,
        before.fds + 7,
        "fds of a live sandbox (before: {})",
        before.fds
    );
    let live = usage().children;
    assert_eq!(
        live,
        before.children + 1,
        "children after 300 runs (before: {})",
        before.children
    );
    drop(ns);
    assert_eq!(usage(), before);
}
