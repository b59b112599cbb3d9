//! What the `hermetic run --` command costs a test runner, against
//! bubblewrap doing the same setup and against no sandbox, side by side in
//! one run.
//!
//! `cargo bench --bench command` (`-- --quick` for fewer rounds). These
//! programs are started the way a runner starts a test, one after the other
//! in rounds so that a noisy machine weighs on all of them alike:
//!
//! - `true`, no sandbox: what every test pays anyway;
//! - `bwrap --unshare-all --die-with-parent --bind / / --proc /proc --dev
//!   /dev --tmpfs /tmp true`: bubblewrap's sandbox with the same namespaces,
//!   a fresh `/proc`, `/dev` and `/tmp`;
//! - `hermetic run -- true` (the host copy-on-write, the default);
//! - `hermetic run --host=ro -- true` (the host read-only): the difference is
//!   what the copy-on-write layer costs a sandbox;
//! - `hermetic run -- true >FILE 2>FILE`, as `cargo test >log` starts it:
//!   hermetic then copies the program's output into the file through a
//!   pipe (a host file is no fd to hand inside), which must end with the
//!   program (it once waited 2 s for a pipe its own thread held open).
//!
//! For each: wall time per call (the median of the rounds' means, taken
//! in calls of their own, outside any cgroup: moving a process into one
//! costs it milliseconds here), CPU time per call, and the tasks
//! (processes and threads) it made: the fewest pids
//! the kernel handed out during one call (`/proc/sys/kernel/ns_last_pid`;
//! other processes on the machine only ever add to it). CPU is user +
//! system time of every process the call made, counted by a cgroup (v2) per
//! program where the bench may make one (as root), else by
//! `getrusage(RUSAGE_CHILDREN)`, which misses what no waiting parent of
//! ours reaped (bwrap's, about half of it here): the table says which. Then
//! the ratios, wall and CPU: hermetic to bwrap, each to `true`, each
//! sandbox's cost over `true` to the other's, copy-on-write to read-only,
//! output to a file to output to `/dev/null`.

mod common;
use common::installed;

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Program {
    name: &'static str,
    argv: Vec<String>,
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
    fewest_pids: u64,
    cgroup: Option<Cgroup>,
    /// Stdout and stderr to this file, else to `/dev/null`.
    output: Option<PathBuf>,
}

impl Program {
    fn new(name: &'static str, argv: Vec<String>) -> Self {
        Program {
            name,
            argv,
            wall: vec![],
            cpu: vec![],
            fewest_pids: u64::MAX,
            cgroup: Cgroup::new(name),
            output: None,
        }
    }

    /// CPU time of every process this program's calls made so far.
    fn cpu_so_far(&self) -> Duration {
        match &self.cgroup {
            Some(cgroup) => cgroup.usage(),
            None => children_cpu(),
        }
    }
}

/// A cgroup v2 of the bench's own, next to the bench process's, into which
/// one program's calls are started: its `cpu.stat` counts every process
/// they make, whoever reaps it.
struct Cgroup {
    dir: PathBuf,
    /// `cgroup.procs`, for the started process to write itself into.
    procs: CString,
}

impl Cgroup {
    fn new(name: &str) -> Option<Self> {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let root = mounts.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split(' ').next()? == "cgroup2").then(|| left.split(' ').nth(4).unwrap())
        })?;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|l| l.strip_prefix("0::"))?;
        let slug: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = PathBuf::from(format!(
            "{root}{}/hermetic-bench-{}-{slug}",
            own.trim_end_matches('/'),
            std::process::id()
        ));
        std::fs::create_dir(&dir).ok()?;
        let procs = CString::new(
            dir.join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        );
        Some(Cgroup {
            procs: procs.ok()?,
            dir,
        })
    }

    fn usage(&self) -> Duration {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).unwrap();
        let usec = stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        Duration::from_micros(usec)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The last process of a call may still be on its way out.
        for _ in 0..1000 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::yield_now();
        }
        eprintln!("could not remove {:?}: a process is still in it", self.dir);
    }
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

fn call(argv: &[String], cgroup: Option<&Cgroup>, output: Option<&PathBuf>) {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    match output {
        Some(path) => {
            let file = std::fs::File::create(path).expect("the output file");
            cmd.stdout(file.try_clone().expect("the output file"))
                .stderr(file);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    if let Some(cgroup) = cgroup {
        let procs = cgroup.procs.clone();
        // SAFETY: after fork, only open, write and close with the path
        // prepared before: async-signal-safe system calls, no allocation.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                Ok(())
            })
        };
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("starting {}: {e}", argv[0]));
    assert!(status.success(), "{argv:?} failed: {status}");
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
    let mut programs = vec![Program::new("true (no sandbox)", words("true"))];
    if installed("bwrap") {
        programs.push(Program::new(
            "bwrap ... true",
            words(
                "bwrap --unshare-all --die-with-parent --bind / / --proc /proc \
                 --dev /dev --tmpfs /tmp true",
            ),
        ));
    } else {
        println!("bwrap is not installed: hermetic is measured against `true` only");
    }
    programs.push(Program::new(
        "hermetic run -- true",
        vec![hermetic.into(), "run".into(), "--".into(), "true".into()],
    ));
    programs.push(Program::new(
        "hermetic run --host=ro",
        vec![
            hermetic.into(),
            "run".into(),
            "--host=ro".into(),
            "--".into(),
            "true".into(),
        ],
    ));
    let output_dir = tempfile::tempdir().expect("a directory for the output file");
    let mut to_file = Program::new(
        "hermetic run -- true >FILE",
        vec![hermetic.into(), "run".into(), "--".into(), "true".into()],
    );
    to_file.output = Some(output_dir.path().join("output"));
    programs.push(to_file);

    for p in &mut programs {
        call(&p.argv, p.cgroup.as_ref(), p.output.as_ref()); // warm up: page cache, the binary's pages
    }
    for _ in 0..rounds {
        for p in &mut programs {
            // Wall time, started as a runner starts a test: moving each
            // call into a cgroup (below) costs it a few milliseconds here
            // (the kernel waits for an RCU grace period), which would
            // drown what is measured.
            let t = Instant::now();
            for _ in 0..n {
                let before = last_pid();
                call(&p.argv, None, p.output.as_ref());
                if let (Some(a), Some(b)) = (before, last_pid()) {
                    p.fewest_pids = p.fewest_pids.min(b.wrapping_sub(a));
                }
            }
            p.wall.push(t.elapsed() / n as u32);
            // CPU time, every process of the calls counted by the cgroup.
            let cpu = p.cpu_so_far();
            for _ in 0..n {
                call(&p.argv, p.cgroup.as_ref(), p.output.as_ref());
            }
            p.cpu.push((p.cpu_so_far() - cpu) / n as u32);
        }
    }

    println!(
        "\n{:<26} {:>12} {:>12} {:>7}  CPU counted by",
        "program", "wall/call", "CPU/call", "tasks"
    );
    for p in &programs {
        println!(
            "{:<26} {:>9.1} us {:>9.1} us {:>7}  {}",
            p.name,
            median(&p.wall).as_secs_f64() * 1e6,
            median(&p.cpu).as_secs_f64() * 1e6,
            if p.fewest_pids == u64::MAX {
                "?".into()
            } else {
                p.fewest_pids.to_string()
            },
            if p.cgroup.is_some() {
                "a cgroup"
            } else {
                "getrusage (reaped children only)"
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
    let [.., ours, read_only, to_file] = programs.as_slice() else {
        unreachable!()
    };
    if let [_, bwrap, _, _, _] = programs.as_slice() {
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
    show(
        "copy-on-write / read-only host",
        ratio(ours, read_only, wall),
        ratio(ours, read_only, cpu),
    );
    show(
        "output to a file / to /dev/null",
        ratio(to_file, ours, wall),
        ratio(to_file, ours, cpu),
    );
    let per_call = |p: &Program, of: fn(&Program) -> &Vec<Duration>| median(of(p)).as_secs_f64();
    println!(
        "the copy-on-write layer: +{:.0} us wall, +{:.0} us CPU per sandbox (medians)",
        (per_call(ours, wall) - per_call(read_only, wall)) * 1e6,
        (per_call(ours, cpu) - per_call(read_only, cpu)) * 1e6
    );
}
