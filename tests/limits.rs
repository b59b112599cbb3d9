//! Resource limits: memory, processes, CPU time, and what a run that
//! reaches one is told.

mod common;

use std::time::Duration;

use hermetic::{Error, Probe, Sandbox};

/// Whether this host gives sandboxes cgroups (as root here), as `check()`
/// says.
fn per_sandbox() -> bool {
    hermetic::check()
        .finding(Probe::ResourceLimits)
        .is_some_and(|f| f.detail.starts_with("per sandbox"))
}

/// The test process's address space, in bytes: a run starts with a copy.
fn address_space() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb << 10
}

#[test]
fn a_run_past_the_memory_limit_is_stopped_and_named() {
    // Where rlimits stand in for cgroups, the limit is on each process's
    // address space, which starts with the test process's own.
    let limit = if per_sandbox() {
        64 << 20
    } else {
        address_space() + (64 << 20)
    };
    let ns = Sandbox::builder().memory_limit(limit).build().unwrap();
    let err = ns
        .try_run(|| {
            let mut blocks = Vec::new();
            for _ in 0..64 {
                // Touched, so that it is really used.
                blocks.push(vec![1u8; 16 << 20]);
            }
            blocks.len()
        })
        .unwrap_err();
    let Error::LimitReached { limit: what, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(what.starts_with("memory limit of "), "{err}");
    // The sandbox stays usable, with room for small runs.
    assert_eq!(ns.run(|| vec![7u8; 1 << 20].len()), 1 << 20);
}

#[test]
fn a_run_past_the_cpu_time_limit_is_stopped_and_named() {
    let ns = Sandbox::builder()
        .cpu_time_limit(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = ns
        .try_run(|| -> u64 {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        })
        .unwrap_err();
    assert!(
        matches!(&err, Error::LimitReached { limit, .. } if limit == "CPU time limit of 1s"),
        "{err:?}"
    );
    assert_eq!(ns.run(|| 5), 5);
}

#[test]
fn forks_past_the_pids_limit_fail() {
    let ns = Sandbox::builder().pids_limit(16).build().unwrap();
    let started = ns.run(|| {
        let mut children = Vec::new();
        for _ in 0..64 {
            match std::process::Command::new("sleep").arg("60").spawn() {
                Ok(c) => children.push(c),
                Err(_) => break,
            }
        }
        let n = children.len();
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
        n
    });
    assert!(
        started < 16,
        "{started} processes started under a limit of 16"
    );
    assert!(started > 0);
}

#[test]
fn cgroups_are_removed_with_the_sandbox() {
    if !per_sandbox() {
        common::skip(
            "limits are per process here: no cgroups to remove (root, or a delegated cgroup v2 subtree, has them)",
        );
        return;
    }
    let ns = Sandbox::builder().memory_limit(256 << 20).build().unwrap();
    let dir = cgroup_dir(ns.pid());
    assert!(std::path::Path::new(&dir).is_dir(), "{dir}");
    drop(ns);
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
}

/// The cgroup directory of the sandbox whose init process is `pid`.
fn cgroup_dir(pid: u32) -> String {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let line = cgroup
        .lines()
        .find(|l| l.contains("hermetic-"))
        .unwrap_or_else(|| panic!("not in a cgroup of hermetic's: {cgroup}"))
        .to_owned();
    let (controllers, path) = line.split_once(':').unwrap().1.split_once(':').unwrap();
    if controllers.is_empty() {
        format!("/sys/fs/cgroup{path}")
    } else {
        format!(
            "/sys/fs/cgroup/{}{path}",
            controllers.split(',').next().unwrap()
        )
    }
}

/// Makes a limited sandbox, says where its cgroup is, and dies at once
/// (no drop runs).
#[test]
#[ignore = "helper, run by the_cgroups_of_a_killed_test_process_are_removed_later"]
fn helper_dies_with_a_cgroup() {
    let ns = Sandbox::builder().memory_limit(256 << 20).build().unwrap();
    println!("cgroup: {}", cgroup_dir(ns.pid()));
    std::process::abort();
}

#[test]
fn the_cgroups_of_a_killed_test_process_are_removed_later() {
    if !per_sandbox() {
        common::skip(
            "limits are per process here: no cgroups to remove (root, or a delegated cgroup v2 subtree, has them)",
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "helper_dies_with_a_cgroup",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .find_map(|l| l.split_once("cgroup: ").map(|(_, d)| d.to_owned()))
        .unwrap_or_else(|| panic!("{out:?}"));
    // Its sandbox dies with it (the lifeline), a moment later: wait until
    // the cgroup is empty. The empty cgroup is left until a sandbox with
    // limits is made next to it.
    let procs = format!("{dir}/cgroup.procs");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&procs)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "{dir} never emptied");
        std::thread::yield_now();
    }
    let next = Sandbox::builder().memory_limit(256 << 20).build().unwrap();
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
    drop(next);
}
