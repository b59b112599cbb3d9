//! The `hermetic` command: `run` (also as cargo's target runner), `check`
//! and `enter`.

use crate::common;

use std::process::{Command, Stdio};

fn hermetic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hermetic"))
}

#[test]
fn run_passes_the_exit_status_and_the_directory_through() {
    let out = hermetic()
        .args(["run", "--", "sh", "-c", "pwd; hostname; exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\nsandbox\n", cwd.display())
    );
    let out = hermetic()
        .args(["run", "--", "sh", "-c", "kill -TERM $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{out:?}");
}

#[test]
fn run_takes_options() {
    let out = hermetic()
        .args([
            "run",
            "--hostname",
            "web",
            "--tmpfs",
            "/mnt",
            "--",
            "sh",
            "-c",
            "hostname && touch /mnt/x && ls /sys/class/net",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web\nlo\n");
    let out = hermetic()
        .args(["run", "--bogus", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid option '--bogus'"),
        "{out:?}"
    );
}

/// The processes inside, as `pid ppid state` lines, the caller's own shell
/// and its `cat` left out.
const PROCESSES: &str = "for s in /proc/[0-9]*/stat; do \
    read -r pid comm state ppid rest < $s 2>/dev/null || continue; \
    [ $pid = $$ ] || [ $ppid = $$ ] || echo $pid $ppid $state; done";

#[test]
fn run_s_program_is_the_init_process_s_child_with_nothing_between() {
    // The init process starts the program itself: inside, its parent is
    // pid 1 and the init process is the only other process.
    let script = format!("echo parent $PPID; {PROCESSES}");
    let (code, out, err) = outcome(&["run", "--", "sh", "-c", &script]);
    assert_eq!(code, Some(0), "{err}");
    // (The init process may still be running when it is looked at.)
    assert!(
        ["parent 1\n1 0 S\n", "parent 1\n1 0 R\n"].contains(&out.as_str()),
        "{out}{err}"
    );
    // Its environment, its arguments and its working directory, as a
    // command's: --env added to the caller's, argv[0] as given.
    let (code, out, err) = outcome(&[
        "run",
        "--env",
        "HERMETIC_TEST_VAR=one two",
        "--",
        "sh",
        "-c",
        "echo \"$(head -c 3 /proc/$$/cmdline | tr '\\0' '.')|$0|$1|$HERMETIC_TEST_VAR|$HOME|$(pwd)\"",
        "zero",
        "first arg",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let home = std::env::var("HOME").unwrap_or_default();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        out,
        format!("sh.|zero|first arg|one two|{home}|{}\n", cwd.display()),
        "{err}"
    );
    // No signal blocked; SIGPIPE (which Rust programs ignore) back to its
    // default, as for a command, and SIGCHLD (which the init process
    // ignored) too; no fd beyond 0 to 2 (3 is ls's own).
    let (code, out, err) = outcome(&[
        "run",
        "--",
        "sh",
        "-c",
        "grep -E '^Sig(Blk|Ign)' /proc/self/status; ls /proc/self/fd",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "SigBlk:\t0000000000000000", "{out}{err}");
    let ignored = lines[1]
        .strip_prefix("SigIgn:\t")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .expect("SigIgn");
    for sig in [libc::SIGPIPE, libc::SIGCHLD] {
        assert_eq!(ignored & (1 << (sig - 1)), 0, "signal {sig} ignored: {out}");
    }
    assert_eq!(lines[2..], ["0", "1", "2", "3"], "{out}{err}");
}

#[test]
fn run_s_program_gets_none_of_the_callers_fds_beyond_its_stdio() {
    // hermetic given fd 7 (on a host file it may read): the program inside
    // does not get it, whatever its flags.
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let file = std::fs::File::open("/etc/hostname").unwrap();
    let raw = file.as_raw_fd();
    let mut cmd = hermetic();
    cmd.args(["run", "--", "sh", "-c", "ls /proc/self/fd; cat <&7"]);
    // SAFETY: dup2 in the child before exec, on fds it owns; async-signal-
    // safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "0\n1\n2\n3\n", "{out:?}");
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    drop(file);
}

#[test]
fn run_s_orphans_are_reaped_while_its_program_runs() {
    // Ten background processes that end while the program waits: adopted
    // by the init process, which reaps them; none is left a zombie.
    let script = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do (true &); done; \
         for i in $(seq 100); do z=$({PROCESSES} | grep -c ' Z$'); \
         [ \"$z\" = 0 ] && break; sleep 0.05; done; echo zombies $z"
    );
    let (code, out, err) = outcome(&["run", "--", "sh", "-c", &script]);
    assert_eq!((code, out.as_str()), (Some(0), "zombies 0\n"), "{err}");
}

/// `hermetic ARGS...`'s exit code, stdout and stderr.
fn outcome(args: &[&str]) -> (Option<i32>, String, String) {
    let out = hermetic().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_command_has_its_help_and_the_command_its_version() {
    for (args, says) in [
        (&["--help"][..], "hermetic COMMAND --help"),
        (&["help"], "hermetic COMMAND --help"),
        (&["run", "--help"], "Exit status:"),
        (&["help", "run"], "--timeout DURATION"),
        (&["check", "-h"], "usage: hermetic check"),
        (&["enter", "--help"], "usage: hermetic enter"),
    ] {
        let (code, out, _) = outcome(args);
        assert_eq!(code, Some(0), "{args:?}");
        assert!(out.contains(says), "{args:?}: {out}");
    }
    let (code, out, _) = outcome(&["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(out, format!("hermetic {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn options_take_their_value_after_an_equals_sign_too() {
    let (code, out, err) = outcome(&[
        "run",
        "--hostname=eq",
        "--env=GREETING=hello=there",
        "--tmp-size=2M",
        "sh",
        "-c",
        "hostname; echo $GREETING; df -k /tmp | tail -1 | awk '{print $4}'",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "eq\nhello=there\n2048\n");
}

#[test]
fn a_file_is_placed_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("config");
    std::fs::write(&src, "port = 8080\n").unwrap();
    let spec = format!("{}:/tmp/app/config", src.display());
    let (code, out, err) = outcome(&[
        "run",
        "--file",
        &spec,
        "--",
        "sh",
        "-c",
        "cat /tmp/app/config; echo x >> /tmp/app/config || echo refused",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "port = 8080\nrefused\n");
    let (code, _, err) = outcome(&["run", "--file=/nonexistent:/tmp/x", "true"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn run_s_limits_reach_the_program() {
    // A CPU time limit: the spinning program gets SIGXCPU (24).
    let (code, _, err) = outcome(&[
        "run",
        "--cpu-time",
        "1s",
        "--",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    assert_eq!(code, Some(128 + libc::SIGXCPU), "{err}");
    // A process limit: forks beyond it fail.
    let (code, out, err) = outcome(&[
        "run",
        "--pids=4",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done 2>/dev/null; echo started",
    ]);
    assert_ne!(
        (code, out.as_str()),
        (Some(0), "started\n"),
        "eight sleeps under --pids=4: {err}"
    );
}

#[test]
fn a_timeout_kills_the_program_and_says_so() {
    let (code, _, err) = outcome(&["run", "--timeout=300ms", "--", "sleep", "60"]);
    assert_eq!(code, Some(124), "{err}");
    assert!(err.contains("--timeout"), "{err}");
    let (code, _, err) = outcome(&["run", "--timeout", "60s", "true"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn run_as_another_user_inside() {
    // With ids 0-65535 the program changes to that user; with one id, that
    // id is the one mapped to the caller: `id -u` says 1000 either way.
    let (code, out, err) = outcome(&["run", "--user=1000:1000", "--", "id", "-u"]);
    assert_eq!((code, out.as_str()), (Some(0), "1000\n"), "{err}");
}

#[test]
fn each_failure_has_its_exit_status() {
    // A wrong command line: 2, with what is wrong.
    for (args, says) in [
        (&["frob"][..], "unknown command"),
        (&[], "no command given"),
        (&["run"], "no program"),
        (&["run", "--memory", "lots", "true"], "not a size"),
        (&["run", "--timeout", "soon", "true"], "not a duration"),
        (&["run", "--user", "root", "true"], "UID:GID"),
        (&["run", "--env", "NOEQUALS", "true"], "NAME=VALUE"),
        (&["run", "--hostname"], "missing argument"),
        (&["enter"], "PID"),
        (&["enter", "me"], "not a PID"),
        (&["check", "extra"], "check:"),
    ] {
        let (code, _, err) = outcome(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // A value no sandbox can be made with (the builder refuses the
    // hostname): a wrong command line too, 2, said by the builder and
    // told as the option given.
    let long = "h".repeat(100);
    let (code, _, err) = outcome(&["run", "--hostname", &long, "true"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("hermetic: --hostname: the hostname is 100 bytes"),
        "{err}"
    );
    // Not found inside: 127; found but not executable (a directory): 126.
    let (code, _, err) = outcome(&["run", "/nonexistent/program"]);
    assert_eq!(code, Some(127), "{err}");
    let (code, _, err) = outcome(&["run", "--", "/etc"]);
    assert_eq!(code, Some(126), "{err}");
    // No such process to enter: 125.
    let (code, _, err) = outcome(&["enter", "999999999", "true"]);
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("cannot enter"), "{err}");
}

#[test]
fn sigterm_to_hermetic_run_reaches_the_program() {
    let mut child = hermetic()
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_ready(&mut child);
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(42));
}

#[test]
fn check_reports_this_host() {
    let out = hermetic().arg("check").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sandboxes work on this host"), "{text}");
    // Where the copy-on-write layers lie, whichever way this host has it.
    let cow = text
        .lines()
        .find(|l| l.contains("copy-on-write host"))
        .unwrap_or_else(|| panic!("no copy-on-write line in {text}"));
    assert!(
        cow.contains("layer on disk in /var/tmp/hermetic-")
            || cow.contains("every layer in memory")
            || cow.contains("read-only here"),
        "{cow}"
    );
    // Asked to keep them in memory, it says so.
    let out = hermetic()
        .arg("check")
        .env("HERMETIC_LAYER_IN_MEMORY", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("every layer in memory (HERMETIC_LAYER_IN_MEMORY is set)")
            || text.contains("read-only here"),
        "{text}"
    );
}

/// Binds 127.0.0.1:8080 and creates /tmp/hermetic-shared, which must not
/// exist yet: four copies of this test pass only if each has a /tmp of its
/// own (the file is never removed: with a shared /tmp, every copy but the
/// first would fail, whatever the timing) and, when they overlap, a port
/// space of its own.
#[test]
#[ignore = "helper, run through `hermetic run` by tests_run_through_hermetic_each_get_a_sandbox"]
fn helper_takes_the_port_and_the_file() {
    let _l = std::net::TcpListener::bind("127.0.0.1:8080").unwrap();
    std::fs::File::create_new("/tmp/hermetic-shared").unwrap();
}

#[test]
fn tests_run_through_hermetic_each_get_a_sandbox() {
    // What cargo does with `runner = "hermetic run --"`: the test binary,
    // and its arguments, after the runner.
    let (exe, args) = common::self_invocation("helper_takes_the_port_and_the_file");
    let children: Vec<_> = (0..4)
        .map(|_| {
            hermetic()
                .args(["run", "--"])
                .arg(&exe)
                .args(&args)
                .arg("--nocapture")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{out:?}"
        );
    }
}

#[test]
fn enter_runs_a_program_in_a_kept_sandbox() {
    let ns = hermetic::Sandbox::builder()
        .hostname("kept")
        .build()
        .unwrap();
    ns.run(|| std::fs::write("/tmp/marker", "inside").unwrap());
    let pid = ns.pid();
    ns.keep().unwrap();
    drop(ns);
    let out = hermetic()
        .args([
            "enter",
            &pid.to_string(),
            "sh",
            "-c",
            "cat /tmp/marker; hostname; id -u",
        ])
        .output()
        .unwrap();
    // SAFETY: a signal to the kept sandbox's init process, our child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(pid as i32),
        Some(nix::sys::wait::WaitPidFlag::__WALL),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "insidekept\n0\n");
}

#[test]
fn the_terminal_is_as_it_was_when_the_program_ends() {
    // A pty, as a caller's shell has: the program turns echo off and
    // suspends output; after hermetic, the terminal echoes again and
    // prints (`stty -a` would block on suspended output).
    let (master, slave) = common::openpty();
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "\"$0\" run -- sh -c 'stty -echo; python3 -c \"import termios; termios.tcflow(0, termios.TCOOFF)\"'; \
         stty -a | tr ' ' '\\n' | grep -x -- '-\\?echo'; echo END",
        env!("CARGO_BIN_EXE_hermetic"),
    ]);
    common::on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    drop((cmd, slave));
    let rx = common::read_master(master);
    let mut seen = String::new();
    // Bounded: with output left suspended, `stty -a` would block for ever.
    let ended = common::wait_for(&rx, &mut seen, "END");
    let status = common::wait_bounded(&mut child);
    assert!(ended && status.success(), "{status:?}: {seen:?}");
    let said: Vec<&str> = seen.split("\r\n").map(str::trim).collect();
    assert!(said.contains(&"echo"), "{seen:?}");
    assert!(!said.contains(&"-echo"), "{seen:?}");
}

/// `--visible DIR`: a host directory under `/tmp`, which the sandbox's own
/// `/tmp` hides, is seen inside (copy-on-write: written there, the host's
/// stays as it was; read-only: read-only); a relative one is a wrong
/// command line.
#[test]
fn visible_shows_a_host_directory_under_tmp() {
    let dir = tempfile::Builder::new()
        .prefix("hermetic-visible.")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(dir.path().join("data"), "host\n").unwrap();
    let shown = dir.path().display().to_string();
    let script = format!("cat {shown}/data; echo inside > {shown}/data && cat {shown}/data");
    let (code, out, err) = outcome(&["run", "--", "sh", "-c", &script]);
    assert_ne!(out, "host\ninside\n", "seen without --visible: {err}");
    let (code2, out2, err2) = outcome(&[
        "run",
        &format!("--visible={shown}"),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(
        (code2, out2.as_str()),
        (Some(0), "host\ninside\n"),
        "{err2} (without: {code:?})"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data")).unwrap(),
        "host\n"
    );
    let (code, out, _) = outcome(&[
        "run",
        "--host=ro",
        "--visible",
        &shown,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert!(code != Some(0) && out == "host\n", "{code:?}: {out}");
    let (code, _, err) = outcome(&["run", "--visible", "relative", "true"]);
    assert_eq!(code, Some(2), "{err}");
}

/// A program the sandbox's memory limit kills (`SIGKILL` from the memory
/// cgroup's OOM killer, where limits are per sandbox: as root here) exits
/// 137 as a killed program does, and hermetic says that the limit did it;
/// one killed by another `SIGKILL` gets no such word.
#[test]
fn a_program_killed_by_the_memory_limit_is_said_so() {
    let per_sandbox = hermetic::check()
        .finding(hermetic::Probe::ResourceLimits)
        .is_some_and(|f| f.detail.starts_with("per sandbox"));
    if !per_sandbox {
        common::skip(
            "limits are per process here (rlimits): an allocation fails, nothing is killed",
        );
        return;
    }
    let (code, _, err) = outcome(&[
        "run",
        "--memory=8M",
        "--",
        "perl",
        "-e",
        "$x = 'a' x (64 << 20); print length $x",
    ]);
    assert_eq!(code, Some(137), "{err}");
    assert!(err.contains("memory limit of 8 MiB"), "{err}");
    let (code, _, err) = outcome(&["run", "--memory=64M", "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(code, Some(137), "{err}");
    assert!(!err.contains("memory limit"), "{err}");
}

/// `cargo test >log 2>&1` with `hermetic run --` as the runner: cargo
/// writes its "Running ..." lines to the log between the test binaries,
/// each of which hermetic relays into the same open file. Every line lands
/// once, in the order written, the program's stdout and stderr as
/// interleaved as it wrote them. (The relays once copied with `splice`,
/// which sets the file's offset without the lock `write` takes: the
/// caller's lines and the binaries' output overwrote each other, and cargo's
/// log lost the results of 3 of 4 test binaries in 2 of 3 runs; and stdout
/// and stderr went through two pipes, in no fixed order.)
#[test]
fn a_log_shared_with_the_caller_keeps_every_line_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let h = env!("CARGO_BIN_EXE_hermetic");
    let script = format!(
        "for i in 1 2 3 4 5 6; do echo caller $i >&2; \
         {h} run -- sh -c \"echo out $i; echo err $i >&2; echo out2 $i\" || echo failed $i; \
         done"
    );
    let file = std::fs::File::create(&log).unwrap();
    let status = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let expected: String = (1..=6)
        .map(|i| format!("caller {i}\nout {i}\nerr {i}\nout2 {i}\n"))
        .collect();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), expected);
}

/// Durations in decimal seconds (`--timeout 0.3`, `HERMETIC_TIMEOUT=1.5`,
/// as coreutils' `timeout` takes them), and a relative bind source, taken
/// from the working directory as `--file` takes its own.
#[test]
fn decimal_durations_and_relative_bind_sources_are_taken() {
    let started = std::time::Instant::now();
    let (code, _, err) = outcome(&["run", "--timeout", "0.3", "--", "sleep", "30"]);
    assert_eq!(code, Some(124), "{err}");
    assert!(err.contains("300ms"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/f"), "from here").unwrap();
    let out = hermetic()
        .args(["run", "--bind-ro", "data:/mnt", "--", "cat", "/mnt/f"])
        .env("HERMETIC_TIMEOUT", "1.5")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"from here");
}

/// `hermetic run`'s test is its program: the target dir cargo built that
/// program in is shown copy-on-write (writable inside, unchanged on the
/// host), as a test binary's own is in a sandbox it makes; the dir
/// `hermetic` itself was built in is then nothing to the test, so no
/// overlay of the sandbox's shows it (but where the working directory or
/// `$HOME` lie: `/` and an empty `$HOME` here). (For a program no cargo
/// built, a shell, `hermetic`'s own stays the test's: `ids_attacks` runs
/// `hermetic` in `hermetic run -- sh` with the checkout under `/tmp`.)
#[test]
fn run_s_target_dir_is_its_program_s() {
    let dir = tempfile::Builder::new()
        .prefix("hermetic-program-target.")
        .tempdir_in("/tmp")
        .unwrap();
    let target = dir.path().join("target");
    let deps = target.join("debug/deps");
    std::fs::create_dir_all(&deps).unwrap();
    std::fs::write(
        target.join("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    // A program there, as cargo's test binaries are.
    let program = deps.join("probe-0123");
    std::fs::copy("/bin/sh", &program).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let script = format!(
        "echo written > {t}/tmp-file && cat {t}/tmp-file && grep ' - overlay ' /proc/self/mountinfo",
        t = target.display()
    );
    let out = hermetic()
        .current_dir("/")
        .env("HOME", &home)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_MANIFEST_DIR")
        .arg("run")
        .arg("--")
        .arg(&program)
        .args(["-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.starts_with("written\n"),
        "the program's target dir is not writable inside: {out:?}"
    );
    assert!(
        !target.join("tmp-file").exists(),
        "a write inside reached the host's target dir"
    );
    let own = std::fs::canonicalize(env!("CARGO_BIN_EXE_hermetic")).unwrap();
    let points: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split(' ').nth(4))
        .collect();
    assert!(
        !points.is_empty(),
        "no overlay shows the program's target dir: {stdout}{stderr}"
    );
    for point in &points {
        assert!(
            !own.starts_with(point),
            "an overlay on {point} shows the dir hermetic was built in ({}): {stdout}",
            own.display()
        );
    }
}

/// `--env`, `--unsetenv` and `--clearenv` shape PROGRAM's environment in
/// their order, as bwrap's `--setenv`, `--unsetenv` and `--clearenv` do;
/// a program is still found by name with no PATH (as `execvp` finds it).
#[test]
fn the_environment_options_apply_in_their_order() {
    let env_of = |args: &[&str]| {
        let out = hermetic()
            .env("HERMETIC_TEST_OUTER", "outer")
            .arg("run")
            .args(args)
            .args(["--", "env"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let env = env_of(&["--env", "HERMETIC_TEST_SET=1"]);
    assert!(
        env.contains("HERMETIC_TEST_OUTER=outer\n") && env.contains("HERMETIC_TEST_SET=1\n"),
        "{env}"
    );
    let env = env_of(&[
        "--env=HERMETIC_TEST_SET=1",
        "--unsetenv",
        "HERMETIC_TEST_SET",
    ]);
    assert!(!env.contains("HERMETIC_TEST_SET"), "{env}");
    let env = env_of(&["--unsetenv=HERMETIC_TEST_OUTER"]);
    assert!(!env.contains("HERMETIC_TEST_OUTER"), "{env}");
    let env = env_of(&["--env=A=1", "--clearenv", "--env", "ONLY=yes"]);
    assert_eq!(env, "ONLY=yes\n");
    assert_eq!(env_of(&["--clearenv"]), "");
    let (code, _, err) = outcome(&["run", "--unsetenv", "A=B", "true"]);
    assert_eq!(code, Some(2), "{err}");
}

/// `--chdir DIR` starts the program in DIR inside (relative: to the
/// working directory; a `--tmpfs` of the sandbox's too), and
/// where DIR is not there inside, not in `/` instead: the program is not
/// started, and hermetic says why, as bwrap's `--chdir` does.
#[test]
fn chdir_starts_the_program_there_or_not_at_all() {
    let pwd_in = |args: &[&str]| {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "pwd"]);
        outcome(&all)
    };
    assert_eq!(pwd_in(&["--chdir", "/usr"]).1, "/usr\n");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        pwd_in(&["--chdir=tests"]).1,
        format!("{}\n", cwd.join("tests").display())
    );
    assert_eq!(
        pwd_in(&["--tmpfs", "/tmp/work", "--chdir", "/tmp/work"]).1,
        "/tmp/work\n"
    );
    let (code, out, err) = pwd_in(&["--chdir", "/nonexistent/hermetic-chdir"]);
    assert_eq!((code, out.as_str()), (Some(127), ""), "{err}");
    assert!(
        err.contains("in /nonexistent/hermetic-chdir (--chdir)"),
        "{err}"
    );
    let (code, _, err) = pwd_in(&["--chdir", "/etc/hostname"]);
    assert_eq!(code, Some(126), "{err}");
    let (code, _, err) = pwd_in(&["--chdir="]);
    assert_eq!(code, Some(2), "{err}");
}
