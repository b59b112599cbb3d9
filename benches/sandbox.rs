//! What a sandbox costs, as ratios to what the kernel itself charges,
//! measured side by side in one run.
//!
//! `cargo bench` (or `cargo bench --bench sandbox -- --quick`; add
//! `--svg docs/bench-sandbox.svg` to draw the ratios). Each case is
//! timed in rounds; the table shows the median of the rounds' per-operation
//! means, each case's ratio to its baseline, and the interquartile range of
//! that ratio taken round by round (how much the machine moved it during
//! the run):
//!
//! - whole sandbox (create, one trivial run, drop), and a sandbox created and
//!   dropped without a run, vs a raw `clone(2)` with the same namespace
//!   flags followed by `wait`; and that clone whose child does by hand what
//!   a sandbox's init process does before it is ready (the kernel's own
//!   cost of a usable sandbox);
//! - one more run on a live sandbox vs `fork` + `wait`;
//! - two threads creating sandboxes at once, per sandbox, vs one thread
//!   (below 1/1.2 = 0.83 means at least 1.2x the throughput);
//! - `unshare(1)` and `bwrap`, when installed, vs the raw clone, and the
//!   `hermetic run -- true` command vs that `unshare`;
//! - with a test process holding 256 MiB of written memory: a run vs fork +
//!   wait, and a sandbox with and without one run vs the raw clone, all
//!   from that process.

mod common;
use common::installed;

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hermetic::Sandbox;

const NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC;

/// clone(2) with the sandbox's namespace flags; the child runs `child`
/// (system calls only) and exits; the caller waits for it.
fn raw_clone_then(child: impl FnOnce()) {
    // SAFETY: fork-like clone; the child only runs `child`, then _exit.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (NAMESPACES | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        0 => {
            child();
            // SAFETY: _exit is async-signal-safe; nothing else follows.
            unsafe { libc::_exit(0) }
        }
        p if p < 0 => panic!("clone: {}", std::io::Error::last_os_error()),
        p => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(p as libc::pid_t, &mut status, 0) };
        }
    }
}

/// The raw clone; the child exits at once.
fn raw_clone_wait() {
    raw_clone_then(|| ());
}

/// The same clone, with the child doing by hand what a sandbox's init
/// process does before it is ready: id maps, private mount propagation,
/// proc, sysfs and tmpfs mounts, `lo` up. What the kernel charges for a
/// usable sandbox; the strings are prepared before cloning.
fn raw_clone_setup_wait(maps: &[(std::ffi::CString, std::ffi::CString); 3]) {
    // SAFETY: system calls on NUL-terminated literals and prepared strings,
    // in the cloned child only.
    raw_clone_then(|| unsafe {
        for (path, content) in maps {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
            libc::write(fd, content.as_ptr().cast(), content.as_bytes().len());
            libc::close(fd);
        }
        let (null, no_data) = (std::ptr::null(), std::ptr::null());
        libc::mount(
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            no_data,
        );
        let nosuid = libc::MS_NOSUID | libc::MS_NODEV;
        for (fs, target, flags) in [
            (c"proc", c"/proc", nosuid | libc::MS_NOEXEC),
            (
                c"sysfs",
                c"/sys",
                nosuid | libc::MS_NOEXEC | libc::MS_RDONLY,
            ),
            (c"tmpfs", c"/tmp", nosuid),
        ] {
            libc::mount(fs.as_ptr(), target.as_ptr(), fs.as_ptr(), flags, no_data);
        }
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
    });
}

/// What [`raw_clone_setup_wait`] writes: the id maps of the caller.
fn id_maps() -> [(std::ffi::CString, std::ffi::CString); 3] {
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let c = |s: String| std::ffi::CString::new(s).unwrap();
    [
        (c("/proc/self/uid_map".into()), c(format!("0 {uid} 1"))),
        (c("/proc/self/setgroups".into()), c("deny".into())),
        (c("/proc/self/gid_map".into()), c(format!("0 {gid} 1"))),
    ]
}

fn fork_wait() {
    // SAFETY: the child only calls _exit.
    match unsafe { libc::fork() } {
        // SAFETY: _exit is async-signal-safe; the child does nothing else.
        0 => unsafe { libc::_exit(0) },
        p if p < 0 => panic!("fork: {}", std::io::Error::last_os_error()),
        p => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(p, &mut status, 0) };
        }
    }
}

struct Case<'a> {
    name: &'static str,
    baseline: Option<&'static str>,
    /// Calls per round, as a fraction of the default.
    weight: usize,
    f: Box<dyn FnMut() + 'a>,
    means: Vec<Duration>,
}

impl Case<'_> {
    /// Cases that make several sandboxes per call report per sandbox.
    fn per_call(&self) -> u32 {
        if self.name.starts_with("2 threads") {
            2
        } else {
            1
        }
    }

    fn median(&self) -> Duration {
        let mut m = self.means.clone();
        m.sort();
        m[m.len() / 2] / self.per_call()
    }

    /// The ratio to `base` round by round (both were measured in the same
    /// rounds, one after the other): its lower and upper quartiles, how
    /// much the machine moved the ratio during this run.
    fn ratio_quartiles(&self, base: &Case<'_>) -> (f64, f64) {
        let mut r: Vec<f64> = self
            .means
            .iter()
            .zip(&base.means)
            .map(|(c, b)| c.as_secs_f64() / self.per_call() as f64 / b.as_secs_f64())
            .collect();
        r.sort_by(f64::total_cmp);
        (r[r.len() / 4], r[(r.len() * 3) / 4])
    }
}

fn quiet(cmd: &mut Command) {
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{cmd:?} failed");
}

/// Runs every case `n / weight` times per round, `rounds` times, in turn.
fn measure(cases: &mut [Case<'_>], rounds: usize, n: usize) {
    for case in cases.iter_mut() {
        (case.f)(); // warm up
    }
    for _ in 0..rounds {
        for case in cases.iter_mut() {
            let calls = (n / case.weight).max(1);
            let t = Instant::now();
            for _ in 0..calls {
                (case.f)();
            }
            case.means.push(t.elapsed() / calls as u32);
        }
    }
}

fn case<'a>(
    name: &'static str,
    baseline: Option<&'static str>,
    weight: usize,
    f: Box<dyn FnMut() + 'a>,
) -> Case<'a> {
    Case {
        name,
        baseline,
        weight,
        f,
        means: Vec::new(),
    }
}

const RAW: &str = "raw clone(2) + wait, same namespaces";
const RAW_HEAP: &str = "raw clone(2) + wait, 256 MiB heap";
const FORK_HEAP: &str = "fork + wait, 256 MiB heap";
const HEAP_MB: usize = 256;
const FORK: &str = "fork + wait";

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, n) = if quick { (5, 10) } else { (15, 40) };
    let live = Sandbox::new().unwrap();
    let live = &live;
    let mut cases: Vec<Case<'_>> = Vec::new();
    cases.push(case(FORK, None, 1, Box::new(fork_wait)));
    cases.push(case(
        "run(|| ()) on a live sandbox",
        Some(FORK),
        1,
        Box::new(|| live.run(|| ())),
    ));
    cases.push(case(
        "spawn(server) + connect run + kill",
        Some(FORK),
        2,
        Box::new(|| {
            let server = live
                .spawn(|| {
                    let l = std::net::TcpListener::bind("127.0.0.1:7777").unwrap();
                    let _ = l.accept();
                })
                .unwrap();
            live.run(|| drop(hermetic::connect_retry("127.0.0.1:7777")));
            server.kill().unwrap();
        }),
    ));
    cases.push(case(RAW, None, 1, Box::new(raw_clone_wait)));
    let maps = id_maps();
    cases.push(case(
        "raw clone + the init process's setup by hand",
        Some(RAW),
        1,
        Box::new(move || raw_clone_setup_wait(&maps)),
    ));
    cases.push(case(
        "sandbox: create + drop",
        Some(RAW),
        1,
        Box::new(|| drop(black_box(Sandbox::new().unwrap()))),
    ));
    cases.push(case(
        "sandbox: create + run(|| ()) + drop",
        Some(RAW),
        1,
        Box::new(|| {
            let ns = Sandbox::new().unwrap();
            ns.run(|| ());
            drop(black_box(ns));
        }),
    ));
    cases.push(case(
        "the same, host copy-on-write",
        Some(RAW),
        1,
        Box::new(|| {
            let ns = Sandbox::builder()
                .host(hermetic::HostMode::CopyOnWrite)
                .build()
                .unwrap();
            ns.run(|| ());
            drop(black_box(ns));
        }),
    ));
    cases.push(case(
        "2 threads, each create + run + drop (per sandbox)",
        Some("sandbox: create + run(|| ()) + drop"),
        1,
        // Two sandboxes per call, one per thread: the time per sandbox
        // against one thread's shows what parallel test threads gain.
        Box::new(|| {
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        let ns = Sandbox::new().unwrap();
                        ns.run(|| ());
                    });
                }
            });
        }),
    ));
    if installed("unshare") {
        cases.push(case(
            "unshare -Urmnpiu --fork true",
            Some(RAW),
            2,
            Box::new(|| quiet(Command::new("unshare").args(["-Urmnpiu", "--fork", "true"]))),
        ));
        // The command-line tool against unshare, side by side: a sandbox
        // made, a program run in it, and dropped, from a fresh process.
        cases.push(case(
            "hermetic run -- true",
            Some("unshare -Urmnpiu --fork true"),
            2,
            Box::new(|| {
                quiet(Command::new(env!("CARGO_BIN_EXE_hermetic")).args(["run", "--", "true"]))
            }),
        ));
    }
    if installed("bwrap") {
        cases.push(case(
            "bwrap --unshare-all --proc /proc true",
            Some(RAW),
            2,
            Box::new(|| {
                quiet(Command::new("bwrap").args([
                    "--dev-bind",
                    "/",
                    "/",
                    "--unshare-all",
                    "--proc",
                    "/proc",
                    "true",
                ]))
            }),
        ));
    }

    // Two groups, each measured round-robin so that a noisy neighbour
    // weighs on a baseline and its cases alike. Cases that create network
    // namespaces go last: the kernel tears those down asynchronously, and
    // that deferred work would otherwise slow the process-only cases down.
    let split = cases.iter().position(|c| c.name == RAW).unwrap_or(0);
    let (process_only, with_namespaces) = cases.split_at_mut(split);
    measure(process_only, rounds, n);
    measure(with_namespaces, rounds, n);

    // The same with a test process that holds 256 MiB of written memory:
    // every fork-like clone copies its page tables, which a sandbox's init
    // process (sharing the memory) does not; a run, a copy by design, does.
    let heap = vec![1u8; HEAP_MB << 20];
    black_box(&heap);
    let mut heavy: Vec<Case<'_>> = vec![
        case(FORK_HEAP, None, 4, Box::new(fork_wait)),
        case(
            "run(|| ()) on a live sandbox, 256 MiB heap",
            Some(FORK_HEAP),
            4,
            Box::new(|| live.run(|| ())),
        ),
        case(RAW_HEAP, None, 4, Box::new(raw_clone_wait)),
        case(
            "sandbox: create + drop, 256 MiB heap",
            Some(RAW_HEAP),
            4,
            Box::new(|| drop(black_box(Sandbox::new().unwrap()))),
        ),
        case(
            "sandbox: create + run + drop, 256 MiB heap",
            Some(RAW_HEAP),
            4,
            Box::new(|| {
                let ns = Sandbox::new().unwrap();
                ns.run(|| ());
            }),
        ),
    ];
    measure(&mut heavy, rounds.min(7), n);
    drop(heap);
    cases.extend(heavy);

    println!(
        "\n{:<50} {:>12} {:>8} {:>12}  against",
        "case", "median", "ratio", "rounds' IQR"
    );
    let mut rows = Vec::new();
    for c in &cases {
        let base = c
            .baseline
            .map(|b| cases.iter().find(|x| x.name == b).unwrap());
        let ratio = base.map(|base| c.median().as_secs_f64() / base.median().as_secs_f64());
        let spread = base.map(|base| c.ratio_quartiles(base));
        println!(
            "{:<50} {:>9.1} us {:>8} {:>12}  {}",
            c.name,
            c.median().as_secs_f64() * 1e6,
            ratio.map_or("1.00x".into(), |r| format!("{r:.2}x")),
            spread.map_or(String::new(), |(lo, hi)| format!("{lo:.2}-{hi:.2}")),
            c.baseline.unwrap_or("(baseline)")
        );
        if let Some(r) = ratio {
            rows.push((c.name, r, c.baseline.unwrap_or_default()));
        }
    }
    if let Some(path) = std::env::args().skip_while(|a| a != "--svg").nth(1) {
        std::fs::write(&path, svg(&rows)).unwrap();
        println!("\nwrote {path}");
    }
}

/// A horizontal bar chart of the ratios, with the 1x, 1.5x and 2x lines.
fn svg(rows: &[(&str, f64, &str)]) -> String {
    const LABEL: f64 = 330.0;
    const BAR: f64 = 300.0;
    const ROW: f64 = 34.0;
    let max = rows.iter().map(|r| r.1).fold(3.0_f64, f64::max).ceil();
    let x = |ratio: f64| LABEL + BAR * ratio / max;
    let height = 40.0 + ROW * rows.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        w = LABEL + BAR + 70.0
    );
    for (mark, colour) in [(1.0, "#888"), (1.5, "#4a4"), (2.0, "#c84")] {
        out += &format!(
            "<line x1=\"{0}\" x2=\"{0}\" y1=\"20\" y2=\"{1}\" stroke=\"{colour}\" \
             stroke-dasharray=\"3 3\"/><text x=\"{0}\" y=\"14\" text-anchor=\"middle\">\
             {mark}x</text>\n",
            x(mark),
            height - 10.0
        );
    }
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    for (i, (name, ratio, against)) in rows.iter().enumerate() {
        let y = 26.0 + ROW * i as f64;
        let (name, against) = (escape(name), escape(against));
        out += &format!(
            "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{name}</text>\n\
             <text x=\"{lx}\" y=\"{ay}\" text-anchor=\"end\" fill=\"#666\">vs {against}</text>\n\
             <rect x=\"{LABEL}\" y=\"{y}\" width=\"{bw:.1}\" height=\"18\" fill=\"#469\"/>\n\
             <text x=\"{tx:.1}\" y=\"{ty}\">{ratio:.2}x</text>\n",
            lx = LABEL - 8.0,
            ty = y + 9.0,
            ay = y + 21.0,
            bw = x(*ratio) - LABEL,
            tx = x(*ratio) + 4.0,
        );
    }
    out + "</svg>\n"
}
