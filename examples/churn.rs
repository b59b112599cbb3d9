//! 10,000 sandboxes in a row: `cargo run --release --example churn -- [n]`.
//!
//! Each is created, runs one closure, and is dropped. Reports the median
//! cost of the first and of the last thousand (the kernel tears network
//! namespaces down asynchronously: that work must not pile up), and the
//! process's fds, threads, children, mounts and memory before and after.

use std::time::{Duration, Instant};

use hermetic::Sandbox;

#[derive(Debug, PartialEq)]
struct Usage {
    fds: usize,
    threads: usize,
    children: usize,
    mounts: usize,
    rss_kib: u64,
    /// Of which anonymous memory (heap, stacks): what a leak would grow.
    anon_kib: u64,
}

fn usage() -> Usage {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let children = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|t| {
            std::fs::read_to_string(t.unwrap().path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .count()
        })
        .sum();
    Usage {
        fds: std::fs::read_dir("/proc/self/fd").unwrap().count(),
        threads: field("Threads:") as usize,
        children,
        mounts: std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .count(),
        rss_kib: field("VmRSS:"),
        anon_kib: field("RssAnon:"),
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("a count"));
    let block = (n / 10).clamp(1, 1000);
    // Open the process-wide lifeline first: it stays for the process.
    Sandbox::new().unwrap().run(|| ());
    // The timings' memory is written before counting, so that it does not
    // count as growth.
    let mut times = vec![Duration::ZERO; n];
    let before = usage();
    let start = Instant::now();
    for (i, time) in times.iter_mut().enumerate() {
        let t = Instant::now();
        let ns = Sandbox::new().expect("create a sandbox");
        assert_eq!(ns.run(move || i), i);
        drop(ns);
        *time = t.elapsed();
        if (i + 1) % 1000 == 0 {
            eprint!("\r{} / {n}", i + 1);
        }
    }
    eprintln!();
    let after = usage();
    let first = median(&mut times[..block].to_vec());
    let last = median(&mut times[n - block..].to_vec());
    println!(
        "{n} sandboxes (create + run + drop) in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    println!(
        "median of the first {block}: {:.0} us, of the last {block}: {:.0} us, ratio last/first {:.2}",
        first.as_secs_f64() * 1e6,
        last.as_secs_f64() * 1e6,
        last.as_secs_f64() / first.as_secs_f64()
    );
    println!("before: {before:?}");
    println!("after:  {after:?}");
    let leaked = after.fds != before.fds
        || after.threads != before.threads
        || after.children != before.children
        || after.mounts != before.mounts;
    // The allocator keeps some memory once used; a leak of even a few
    // bytes a sandbox would show as steady growth with the count.
    let grown = after.anon_kib.saturating_sub(before.anon_kib);
    if leaked || grown > 512 {
        eprintln!("LEAK: resources differ (anonymous memory grew {grown} KiB)");
        std::process::exit(1);
    }
    println!("no fd, thread, child or mount leaked; anonymous memory grew {grown} KiB");
}
