//! What the `hermetic run --` command costs a test runner, against
//! bubblewrap doing the same setup and against no sandbox, side by side in
//! one run.
//!
//! `cargo bench --bench command` (`-- --quick` for fewer rounds). Three
//! programs are started the way a runner starts a test, one after the other
//! in rounds so that a noisy machine weighs on all of them alike:
//!
//! - `true`, no sandbox: what every test pays anyway;
//! - `bwrap --unshare-all --die-with-parent --bind / / --proc /proc --dev
//!   /dev --tmpfs /tmp true`: bubblewrap's sandbox with the same namespaces,
//!   a fresh `/proc`, `/dev` and `/tmp`;
//! - `hermetic run -- true`.
//!
//! For each: wall time per call (the median of the rounds' means), CPU time
//! per call (user + system of every process the call made and reaped,
//! `getrusage(RUSAGE_CHILDREN)` before and after), and the tasks (processes
//! and threads) it made: the fewest pids the kernel handed out during one
//! call (`/proc/sys/kernel/ns_last_pid`; other processes on the machine only
//! ever add to it). Then the ratios, wall and CPU: hermetic to bwrap, each
//! to `true`, and each sandbox's cost over `true` to the other's.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Program {
    name: &'static str,
    argv: Vec<String>,
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
    fewest_pids: u64,
}

/// User + system time of the reaped children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn last_pid() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn call(argv: &[String]) {
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("starting {}: {e}", argv[0]));
    assert!(status.success(), "{argv:?} failed: {status}");
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, n) = if quick { (5, 20) } else { (15, 60) };
    let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let hermetic = env!("CARGO_BIN_EXE_hermetic");
    let mut programs = vec![Program {
        name: "true (no sandbox)",
        argv: vec!["true".into()],
        wall: vec![],
        cpu: vec![],
        fewest_pids: u64::MAX,
    }];
    if installed("bwrap") {
        programs.push(Program {
            name: "bwrap ... true",
            argv: words(
                "bwrap --unshare-all --die-with-parent --bind / / --proc /proc \
                 --dev /dev --tmpfs /tmp true",
            ),
            wall: vec![],
            cpu: vec![],
            fewest_pids: u64::MAX,
        });
    } else {
        println!("bwrap is not installed: hermetic is measured against `true` only");
    }
    programs.push(Program {
        name: "hermetic run -- true",
        argv: vec![hermetic.into(), "run".into(), "--".into(), "true".into()],
        wall: vec![],
        cpu: vec![],
        fewest_pids: u64::MAX,
    });

    for p in &mut programs {
        call(&p.argv); // warm up: page cache, the binary's pages
    }
    for _ in 0..rounds {
        for p in &mut programs {
            let cpu = children_cpu();
            let t = Instant::now();
            for _ in 0..n {
                let before = last_pid();
                call(&p.argv);
                if let (Some(a), Some(b)) = (before, last_pid()) {
                    p.fewest_pids = p.fewest_pids.min(b.wrapping_sub(a));
                }
            }
            p.wall.push(t.elapsed() / n as u32);
            p.cpu.push((children_cpu() - cpu) / n as u32);
        }
    }

    println!(
        "\n{:<24} {:>12} {:>12} {:>7}",
        "program", "wall/call", "CPU/call", "tasks"
    );
    for p in &programs {
        println!(
            "{:<24} {:>9.1} us {:>9.1} us {:>7}",
            p.name,
            median(&p.wall).as_secs_f64() * 1e6,
            median(&p.cpu).as_secs_f64() * 1e6,
            if p.fewest_pids == u64::MAX {
                "?".into()
            } else {
                p.fewest_pids.to_string()
            }
        );
    }

    // Ratios round by round (each round measured them side by side), then
    // their median and interquartile range.
    let ratio = |a: &Program, b: &Program, of: fn(&Program) -> &Vec<Duration>| {
        let mut r: Vec<f64> = of(a)
            .iter()
            .zip(of(b))
            .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
            .collect();
        r.sort_by(f64::total_cmp);
        (r[r.len() / 2], r[r.len() / 4], r[r.len() * 3 / 4])
    };
    // Each sandbox's cost over `true`, one against the other.
    let added = |a: &Program, b: &Program, t: &Program, of: fn(&Program) -> &Vec<Duration>| {
        let mut r: Vec<f64> = (0..of(a).len())
            .map(|i| {
                let over = |p: &Program| of(p)[i].as_secs_f64() - of(t)[i].as_secs_f64();
                over(a) / over(b)
            })
            .collect();
        r.sort_by(f64::total_cmp);
        (r[r.len() / 2], r[r.len() / 4], r[r.len() * 3 / 4])
    };
    let wall: fn(&Program) -> &Vec<Duration> = |p| &p.wall;
    let cpu: fn(&Program) -> &Vec<Duration> = |p| &p.cpu;
    println!(
        "\n{:<44} {:>16} {:>16}",
        "ratio (median, rounds' IQR)", "wall", "CPU"
    );
    let show = |what: &str, w: (f64, f64, f64), c: (f64, f64, f64)| {
        println!(
            "{what:<44} {:>16} {:>16}",
            format!("{:.2}x ({:.2}-{:.2})", w.0, w.1, w.2),
            format!("{:.2}x ({:.2}-{:.2})", c.0, c.1, c.2)
        );
    };
    let plain = &programs[0];
    let ours = programs.last().unwrap();
    if let [_, bwrap, _] = programs.as_slice() {
        show(
            "hermetic run -- true / bwrap",
            ratio(ours, bwrap, wall),
            ratio(ours, bwrap, cpu),
        );
        show(
            "hermetic's cost over true / bwrap's",
            added(ours, bwrap, plain, wall),
            added(ours, bwrap, plain, cpu),
        );
        show(
            "bwrap / true",
            ratio(bwrap, plain, wall),
            ratio(bwrap, plain, cpu),
        );
    }
    show(
        "hermetic run -- true / true",
        ratio(ours, plain, wall),
        ratio(ours, plain, cpu),
    );
}
