//! Own PID namespace, an init that reaps zombies.

use crate::common;

use crate::common::proc_pids;
use hermetic::{Sandbox, isolated};
use rstest::rstest;

#[rstest]
fn proc_lists_only_the_sandboxes_processes(#[from(isolated)] ns: Sandbox) {
    let (me, pids, ppid) = ns.run(|| {
        (
            std::process::id(),
            proc_pids(),
            nix::unistd::getppid().as_raw(),
        )
    });
    // The init process is 1, the process running the closure comes next.
    assert_eq!(pids, [1, me]);
    assert!(me > 1);
    // Its parent is the test process, outside the namespace: invisible.
    assert_eq!(ppid, 0);
}

#[rstest]
fn init_reaps_orphaned_zombies(#[from(isolated)] ns: Sandbox) {
    // A child that forks a grandchild and exits: the grandchild is orphaned
    // to PID 1, and exits too. Nobody inside waits for it.
    ns.run(|| {
        let status = std::process::Command::new("sh")
            .args(["-c", "sleep 0.05 & exit 0"])
            .status()
            .unwrap();
        assert!(status.success());
    });
    let zombies_left = ns.run(|| {
        // Give the orphan time to exit; the kernel reaps it at once because
        // init ignores SIGCHLD.
        common::eventually(|| {
            proc_pids().into_iter().all(|p| {
                p == std::process::id()
                    || p == 1
                    || !std::fs::read_to_string(format!("/proc/{p}/stat"))
                        .map(|s| {
                            s.rsplit_once(") ")
                                .map(|(_, r)| r.starts_with('Z'))
                                .unwrap_or(false)
                        })
                        .unwrap_or(false)
            }) && proc_pids().len() == 2
        })
    });
    assert!(zombies_left, "orphans were not reaped inside the sandbox");
}

#[rstest]
fn processes_started_in_one_run_are_seen_by_the_next(#[from(isolated)] ns: Sandbox) {
    let mut child = ns.command("sleep").arg("60").spawn().unwrap();
    let sleeping = ns.run(|| {
        proc_pids().into_iter().any(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
    });
    assert!(sleeping);
    child.kill().unwrap();
    child.wait().unwrap();
}
