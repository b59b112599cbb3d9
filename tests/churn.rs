//! 10,000 sandboxes in a loop leave no fd, process, mount, namespace or
//! memory.
//!
//! Alone in its binary: it counts process-wide resources. `HERMETIC_CHURN`
//! sets another count (the default is the 10,000).

mod common;

use std::collections::HashSet;

use hermetic::Sandbox;

/// Inodes of every network and user namespace any visible process is in.
fn live_namespaces() -> HashSet<(String, u64)> {
    let mut set = HashSet::new();
    for p in common::proc_pids() {
        for kind in ["net", "user", "mnt", "pid"] {
            if let Ok(link) = std::fs::read_link(format!("/proc/{p}/ns/{kind}")) {
                let s = link.to_string_lossy().into_owned();
                if let Some(ino) = s
                    .split_once('[')
                    .and_then(|(_, r)| r.strip_suffix(']'))
                    .and_then(|n| n.parse().ok())
                {
                    set.insert((kind.to_owned(), ino));
                }
            }
        }
    }
    set
}

/// Resident anonymous memory of this process (heap, stacks), in KiB.
fn anonymous_kib() -> u64 {
    common::self_status("RssAnon:")
}

fn count(path: &str) -> usize {
    std::fs::read_dir(path).unwrap().count()
}

#[test]
fn ten_thousand_sandboxes_leave_nothing() {
    let n: usize = std::env::var("HERMETIC_CHURN").map_or(10_000, |v| v.parse().unwrap());
    Sandbox::new().unwrap().run(|| ()); // opens the process's lifeline
    let fds = count("/proc/self/fd");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    const KINDS: [&str; 4] = ["net", "user", "mnt", "pid"];
    // Written (not zero: calloc would map untouched pages) before counting
    // memory, so that it does not count as growth.
    let mut seen = vec![u64::MAX; n * KINDS.len()];
    let anon = anonymous_kib();
    for i in 0..n {
        let ns = Sandbox::new().unwrap();
        let (inodes, echoed) = ns.run(move || (common::ns_inodes(), i));
        assert_eq!(echoed, i);
        for (k, kind) in KINDS.iter().enumerate() {
            seen[i * KINDS.len() + k] = inodes[*kind];
        }
    }
    // The allocator keeps what it once used (about 0.1 MiB here, the same
    // after 10,000 or 30,000 sandboxes); a leak grows with the count.
    let grown = anonymous_kib().saturating_sub(anon);
    println!("anonymous memory grew {grown} KiB over {n} sandboxes");
    assert!(grown < 512, "anonymous memory grew {grown} KiB");
    let ours: HashSet<(String, u64)> = seen
        .chunks(KINDS.len())
        .flat_map(|c| KINDS.iter().zip(c).map(|(k, &i)| ((*k).to_owned(), i)))
        .collect();
    assert_eq!(count("/proc/self/fd"), fds, "fds leaked");
    assert_eq!(common::children(), 0, "child processes left");
    assert_eq!(
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .count(),
        mounts,
        "mounts leaked"
    );
    // No process anywhere is still in one of the namespaces our sandboxes
    // had (inode numbers are recycled, so a match must not be an init process).
    let still: Vec<_> = live_namespaces().intersection(&ours).cloned().collect();
    let me = format!(" {} ", std::process::id());
    for p in common::proc_pids() {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // "(hermetic-init) S <ppid>": an init process whose parent is this process.
        let ours = stat.contains("(hermetic-init)")
            && stat
                .split(") ")
                .nth(1)
                .is_some_and(|r| r[1..].starts_with(&me));
        assert!(!ours, "an init process is alive: pid {p} ({still:?})");
    }
    println!(
        "{n} sandboxes: 0 fds, 0 processes, 0 mounts left; {} namespace inodes used",
        ours.len()
    );
}
