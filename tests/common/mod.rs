//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::{Command, Output};

/// The namespace kinds every sandbox has fresh.
pub const KINDS: [&str; 6] = ["user", "mnt", "net", "pid", "uts", "ipc"];

/// Inode of each of this process's namespaces, by kind.
pub fn ns_inodes() -> BTreeMap<String, u64> {
    ["user", "mnt", "net", "pid", "uts", "ipc", "cgroup"]
        .iter()
        .map(|k| {
            let link = std::fs::read_link(format!("/proc/self/ns/{k}")).unwrap();
            // "net:[4026531840]"
            let s = link.to_string_lossy();
            let ino = s
                .split_once('[')
                .and_then(|(_, r)| r.strip_suffix(']'))
                .unwrap()
                .parse()
                .unwrap();
            (k.to_string(), ino)
        })
        .collect()
}

/// Names of the network interfaces this process sees in /sys/class/net.
pub fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The numeric entries of /proc.
pub fn proc_pids() -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort();
    v
}

/// Mount points of this process.
pub fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').nth(4).unwrap().to_owned())
        .collect()
}

/// The full libtest name of the `#[ignore]`d helper test `test` of this
/// binary: `test` itself in a binary of its own, `module::test` in
/// `tests/it` (found once in the binary's own `--list`). Panics if no test
/// or more than one has that name.
pub fn self_test_name(test: &str) -> String {
    static IGNORED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let ignored = IGNORED.get_or_init(|| {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--list", "--ignored"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .map(str::to_owned)
            .collect()
    });
    let found: Vec<&String> = ignored
        .iter()
        .filter(|n| *n == test || n.ends_with(&format!("::{test}")))
        .collect();
    match found[..] {
        [name] => name.clone(),
        _ => panic!("no single ignored test named {test} in this binary: {found:?}"),
    }
}

/// How to re-execute this test binary for just the `#[ignore]`d helper
/// `test`: the binary, and the libtest arguments that run exactly it, on
/// one thread. The one way the tests re-execute themselves: [`run_self`]
/// and [`self_command`] use it, and so do tests that start it another way
/// (through `hermetic run --`, or a sandbox's `command`).
pub fn self_invocation(test: &str) -> (std::path::PathBuf, Vec<String>) {
    let args = [
        self_test_name(test).as_str(),
        "--exact",
        "--ignored",
        "--test-threads=1",
    ]
    .map(str::to_owned)
    .to_vec();
    (std::env::current_exe().unwrap(), args)
}

/// [`self_invocation`] as a `Command`, for a test that sets more on it
/// (a process group, a terminal) before it starts it.
pub fn self_command(test: &str) -> Command {
    let (exe, args) = self_invocation(test);
    let mut cmd = Command::new(exe);
    cmd.args(args);
    cmd
}

/// Runs one test of this same test binary in a new process, with `env`
/// set, and returns what it printed. `extra` are more libtest arguments.
/// A helper that does not finish within two minutes is killed and the test
/// fails with what it printed so far, instead of hanging the suite.
pub fn run_self(test: &str, env: &[(&str, &str)], extra: &[&str]) -> Output {
    let mut cmd = self_command(test);
    cmd.args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (out.join().unwrap(), err.join().unwrap());
            panic!(
                "helper {test} hung for 2 minutes\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&o),
                String::from_utf8_lossy(&e)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Pids (host view) of processes whose command line contains `marker`.
pub fn pids_with_marker(marker: &str) -> Vec<u32> {
    let me = std::process::id();
    proc_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .collect()
}

/// Polls `cond` every 20 ms for up to 10 s; true once it holds. Used to wait
/// for the kernel's asynchronous cleanup, never to measure time.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cond()
}

/// The caller's uid and gid outside.
pub fn outer_ids() -> (u32, u32) {
    (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    )
}

/// Asserts that `err` says the run was killed by one of `signals` (by name).
pub fn assert_killed_by(err: &hermetic::Error, signals: &[&str]) {
    assert!(
        matches!(err, hermetic::Error::Killed { signal, .. } if signals.contains(signal)),
        "expected a kill by {signals:?}: {err:?}"
    );
}

/// A numeric field of `/proc/self/status` ("Threads:", "RssAnon:" in KiB).
pub fn self_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Live children of every thread of this process.
pub fn children() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|t| {
            std::fs::read_to_string(t.unwrap().path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .count()
        })
        .sum()
}

/// Live children of every thread of process `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flat_map(|t| {
                    std::fs::read_to_string(t.unwrap().path().join("children"))
                        .unwrap_or_default()
                        .split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether this process is an `isolate_test` body's, the test binary
/// re-executed inside a sandbox (whose `argv[0]` says so).
pub fn in_isolated_body() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|a| a.to_string_lossy().starts_with("hermetic-isolated-test:"))
}

/// What process `pid` and every process under it are doing, one line
/// each (pid, name, state, where it waits in the kernel, threads'
/// waits): for a test's message when something it waits for never came.
pub fn process_report(pid: u32) -> String {
    let mut report = String::new();
    let mut todo = vec![(pid, 0usize)];
    while let Some((pid, depth)) = todo.pop() {
        let read = |what: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/{what}"))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let stat = read("stat");
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
            .unwrap_or_default();
        let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks
                    .flatten()
                    .map(|t| {
                        let wchan =
                            std::fs::read_to_string(t.path().join("wchan")).unwrap_or_default();
                        let comm =
                            std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                        format!("{}:{}", comm.trim(), wchan.trim())
                    })
                    .collect()
            })
            .unwrap_or_default();
        report.push_str(&format!(
            "{:indent$}{pid} {} {state} [{}]\n",
            "",
            read("comm"),
            threads.join(", "),
            indent = 2 * depth
        ));
        for child in children_of(pid) {
            todo.push((child, depth + 1));
        }
    }
    report
}

/// Whether sandboxes on this host map ids 0-65535 (as root, or through
/// newuidmap), as `check()` says; else only the caller's own id, as 0.
pub fn many_ids() -> bool {
    hermetic::check()
        .finding(hermetic::Probe::IdHelpers)
        .is_some_and(|f| f.detail.starts_with("ids 0-65535"))
}

/// Reads `child`'s first line of stdout (piped), which must be "ready":
/// the program has started and set itself up.
pub fn wait_ready(child: &mut std::process::Child) {
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout piped")),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "ready\n");
}

/// Says that the calling test cannot check what it is for on this host,
/// and why: on stderr, and, when `HERMETIC_SKIPPED` names a file, as a
/// line appended to it, which CI counts and prints (ci/run.sh). The test
/// then returns; it passes, but is never a silent "ok". A reason of
/// several lines (an error's text) is joined into one: CI counts lines.
pub fn skip(why: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let why = why.trim().replace('\n', " / ");
    let line = format!("hermetic-test-skipped: {test}: {why}\n");
    eprint!("{line}");
    if let Some(path) = std::env::var_os("HERMETIC_SKIPPED") {
        use std::io::Write;
        // O_APPEND: one write of a short line lands whole, whatever other
        // test processes append at the same time.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// A lock another thread of the test process holds until released: a
/// process forked meanwhile (a run, a spawned closure) gets a copy of it
/// that is held for ever.
pub struct HeldLock {
    pub lock: std::sync::Arc<std::sync::Mutex<u32>>,
    done: std::sync::mpsc::Sender<()>,
    holder: std::thread::JoinHandle<()>,
}

impl HeldLock {
    /// Returns once the other thread holds the lock.
    pub fn new() -> HeldLock {
        let lock = std::sync::Arc::new(std::sync::Mutex::new(0u32));
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                let _guard = lock.lock().unwrap();
                held_tx.send(()).unwrap();
                // Held until released (or the test is gone).
                let _ = done_rx.recv();
            })
        };
        held_rx.recv().unwrap();
        HeldLock { lock, done, holder }
    }

    /// Lets the other thread release the lock, and waits for it.
    pub fn release(self) {
        drop(self.done);
        self.holder.join().unwrap();
    }
}

/// Runs `f` on a thread and fails the test (instead of hanging it) if it
/// does not finish within two minutes.
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("{what} did not finish within two minutes"))
}

/// The `hermetic` command of this package.
pub fn hermetic_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hermetic"))
}

/// A program's end and what it printed, for an assertion's message.
pub fn said(out: &std::process::Output) -> String {
    format!(
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes an executable shell script of `body` at `path` (its directories
/// made).
pub fn script(path: &std::path::Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `/var/tmp/hermetic-UID`: where this user's upper layers on disk lie.
pub fn disk_base() -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/var/tmp/hermetic-{}", nix::unistd::geteuid()))
}

/// The entries of the disk base whose name begins with `prefix`.
pub fn disk_base_entries(prefix: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(disk_base())
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes `entries` (what a sandbox left in the disk base), however deep
/// and whatever their modes (the kernel leaves directories of mode 0 in a
/// work directory, a test may take permissions off): every directory's
/// owner gets rwx back first (`find` goes as deep as it must), then
/// `rm -rf`, so that a finding does not fill the disk.
pub fn remove_disk_leftovers(entries: &[std::path::PathBuf]) {
    for entry in entries {
        let _ = std::process::Command::new("find")
            .arg(entry)
            .args(["-type", "d", "-exec", "chmod", "u+rwx", "{}", "+"])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::process::Command::new("rm")
            .arg("-rf")
            .arg(entry)
            .status();
    }
}

/// Whether the test's own tree (the working directory) gets its upper
/// layer on disk here: writable, and on the kind of disk filesystem
/// `/var/tmp` is on. Says why not otherwise (counted as a skip).
pub fn own_tree_layer_on_disk() -> bool {
    use nix::sys::statfs::{BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC};
    let kind = |p: &std::path::Path| nix::sys::statfs::statfs(p).map(|s| s.filesystem_type());
    let disk = [EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, BTRFS_SUPER_MAGIC];
    let cwd = std::env::current_dir().unwrap();
    let ok = nix::unistd::access(&cwd, nix::unistd::AccessFlags::W_OK).is_ok()
        && kind(&cwd).is_ok_and(|k| disk.contains(&k))
        && kind(std::path::Path::new("/var/tmp")).ok() == kind(&cwd).ok()
        && std::env::var_os("HERMETIC_LAYER_IN_MEMORY").is_none();
    if !ok {
        skip(&format!(
            "{} is not writable, or not on the kind of disk filesystem /var/tmp is on: no layer on disk",
            cwd.display()
        ));
    }
    ok
}

/// A sandbox whose host is copy-on-write.
pub fn cow_sandbox() -> hermetic::Sandbox {
    hermetic::Sandbox::builder()
        .host(hermetic::HostMode::CopyOnWrite)
        .build()
        .unwrap()
}

/// A name no other test or run of this process uses: `PREFIX-WHAT-PID-N`.
pub fn unique_name(prefix: &str, what: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{prefix}-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

/// Runs `sh -c SCRIPT` in `dir` in a mount namespace of `unshare(1)`'s
/// (rootless: in a user namespace of one id, where hermetic runs with one
/// id too), after a tmpfs is mounted on `dir/m`: a host with a mount
/// below the test's tree. `None`, said, where that mount is refused.
pub fn with_a_mount_below(dir: &std::path::Path, script: &str) -> Option<Output> {
    let mut cmd = Command::new("unshare");
    if !is_root() {
        cmd.arg("--map-root-user").env("HERMETIC_ONE_ID", "1");
    }
    let out = cmd
        .args(["--mount", "sh", "-c"])
        .arg(format!("mount -t tmpfs tmpfs m || exit 99; {script}"))
        .current_dir(dir)
        .output()
        .unwrap();
    if out.status.code() == Some(99) {
        skip(&format!(
            "cannot mount a tmpfs in a namespace of unshare's here: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    Some(out)
}

/// A copy of this test binary at `DIR/debug/deps/it` (cargo's layout, with
/// nothing marking `DIR` as a target dir), `DIR` a new directory under
/// `base`, removed when dropped.
pub struct BinaryCopy {
    pub dir: std::path::PathBuf,
    pub exe: std::path::PathBuf,
}

impl BinaryCopy {
    pub fn under(base: &str, what: &str) -> BinaryCopy {
        let dir = std::path::Path::new(base).join(unique_name("bin", what));
        let exe = dir.join("debug/deps/it");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        // With `cp`, in a process of its own: copied by this process, the
        // copy's write fd would be inherited by whatever another test
        // thread forks meanwhile (a run's process lives as long as its
        // closure), and starting the copy would fail with `ETXTBSY`.
        let status = Command::new("cp")
            .arg(std::env::current_exe().unwrap())
            .arg(&exe)
            .status()
            .unwrap();
        assert!(status.success(), "cp to {}: {status}", exe.display());
        BinaryCopy { dir, exe }
    }

    /// Runs the helper `test` of the copy, its output not captured, with no
    /// `CARGO_TARGET_DIR` to say where its target dir is.
    pub fn run_helper(&self, test: &str) -> Output {
        let (_, args) = self_invocation(test);
        Command::new(&self.exe)
            .args(&args)
            .arg("--nocapture")
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .unwrap()
    }
}

impl Drop for BinaryCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pty pair: (master, slave).
pub fn openpty() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // Both ends close-on-exec from their first instant (openpty(3) makes
    // neither so): every test of this binary shares its fd table, and a
    // program another test starts meanwhile must not keep the master open,
    // or the shell on the slave never sees its terminal go away.
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: posix_openpt opens a new fd, owned here alone.
    let master = unsafe { libc::posix_openpt(flags) };
    assert!(
        master >= 0,
        "posix_openpt: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: master is the fd posix_openpt just opened, non-negative, and
    // nothing else owns or closes it.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: a live master fd; a buffer of the given size.
    unsafe {
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0
        );
    }
    // SAFETY: ptsname_r wrote a NUL-terminated path.
    let slave = unsafe { libc::open(name.as_ptr(), flags) };
    assert!(
        slave >= 0,
        "opening the pty's slave: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: just opened, owned here alone.
    (master, unsafe { OwnedFd::from_raw_fd(slave) })
}

/// A command whose stdio is the pty's slave, which is also its controlling
/// terminal (a new session of which it is the foreground process group, as
/// a shell makes a job it starts).
pub fn on_terminal(cmd: &mut std::process::Command, slave: &std::os::fd::OwnedFd) {
    use std::os::unix::process::CommandExt;
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: setsid and an ioctl on fd 0, in std's fork child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The init process of the sandbox a `HERMETIC_KEEP` message in `said`
/// (what hermetic printed) says is kept.
pub fn kept_init(said: &str) -> Option<i32> {
    let at = said.find("init process ")?;
    said[at + 13..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// What the master gives, chunk by chunk, from a thread of its own (ends
/// with the other side: EIO).
pub fn read_master(master: std::os::fd::OwnedFd) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    rx
}

/// Waits until what `rx` gave so far holds `what` (at most 30 s).
pub fn wait_for(rx: &std::sync::mpsc::Receiver<String>, seen: &mut String, what: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !seen.contains(what) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.push_str(&chunk),
            Err(_) => return false,
        }
    }
    true
}

/// What the terminal shows until it shows `what`, or `within` passed.
pub fn shown_until(
    rx: &std::sync::mpsc::Receiver<String>,
    what: &str,
    within: std::time::Duration,
) -> String {
    let mut shown = String::new();
    let deadline = std::time::Instant::now() + within;
    while !shown.contains(what) && std::time::Instant::now() < deadline {
        if let Ok(chunk) = rx.recv_timeout(std::time::Duration::from_millis(100)) {
            shown.push_str(&chunk);
        }
    }
    shown
}

/// Waits for a child, killing it after 30 s.
pub fn wait_bounded(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Runs `cmd` as the foreground job of a terminal; once it says READY, a
/// line is typed there: asserts that it (`who`) was not killed by
/// `signal` and exited 0; what the terminal showed.
pub fn survives_a_line_typed(mut cmd: std::process::Command, signal: i32, who: &str) -> String {
    let (master, slave) = openpty();
    let mut writer = std::fs::File::from(master.try_clone().unwrap());
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;
    on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    drop((cmd, slave));
    let rx = read_master(master);
    let mut seen = String::new();
    let ready = wait_for(&rx, &mut seen, "READY");
    // A line typed at the terminal.
    writer.write_all(b"typed\n").unwrap();
    let status = wait_bounded(&mut child);
    let _ = wait_for(&rx, &mut seen, "\u{0}");
    assert!(ready, "the program never got ready: {seen}");
    assert_ne!(
        status.signal(),
        Some(signal),
        "the program inside killed {who} with signal {signal}: {seen}"
    );
    assert!(status.success(), "{status:?}: {seen}");
    seen
}

/// Runs `perl -e program` as a `command()` of a fresh sandbox (20 s
/// timeout), with this process's stdio; asserts that it exits 0.
pub fn perl_command_succeeds(program: &str) {
    let ns = hermetic::Sandbox::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let status = ns.command("perl").args(["-e", program]).status().unwrap();
    assert!(status.success(), "{status:?}");
}

/// `cmd` started as the foreground job of a new terminal, leading its
/// session there (as a program an `ssh -t` or a terminal emulator starts
/// does): the child, the master to type into, what the terminal shows,
/// and the slave (the caller's own open file of the terminal).
pub fn start_on_terminal(
    mut cmd: std::process::Command,
) -> (
    std::process::Child,
    std::fs::File,
    std::sync::mpsc::Receiver<String>,
    std::os::fd::OwnedFd,
) {
    let (master, slave) = openpty();
    on_terminal(&mut cmd, &slave);
    let child = cmd.spawn().unwrap();
    drop(cmd);
    let writer = std::fs::File::from(master.try_clone().unwrap());
    (child, writer, read_master(master), slave)
}

/// An interactive bash with job control (as a user's login shell) on a new
/// terminal, at its first prompt (`PROMPT> `); `$H` is hermetic.
pub fn bash_on_terminal() -> (
    std::process::Child,
    std::fs::File,
    std::sync::mpsc::Receiver<String>,
    std::os::fd::OwnedFd,
) {
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-i"])
        .env("PS1", "PROMPT> ")
        .env("H", env!("CARGO_BIN_EXE_hermetic"));
    let (child, writer, rx, slave) = start_on_terminal(cmd);
    let mut seen = String::new();
    assert!(wait_for(&rx, &mut seen, "PROMPT> "), "no prompt: {seen}");
    (child, writer, rx, slave)
}

/// Waits up to `within` for `child` to end; kills it after (`None`).
pub fn ended_within(
    child: &mut std::process::Child,
    within: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Gives the terminal of `fd` the size `rows` x `cols` (as a terminal
/// emulator does when its window is resized: the kernel then signals its
/// foreground job, `SIGWINCH`, if the size changed).
pub fn set_terminal_size(fd: &impl std::os::fd::AsRawFd, (rows, cols): (u16, u16)) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: a live terminal fd and winsize.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    assert_eq!(r, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
}
