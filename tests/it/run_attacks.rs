//! `hermetic run` against programs that are hostile, buggy or merely
//! unusual: what the command promises (README's "What is isolated", its
//! `--help`) must hold with and without the sandbox's cgroups (`--pids`:
//! the init process then starts the program only once it is in them).

use std::process::{Command, Stdio};

fn hermetic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hermetic"))
}

/// `hermetic ARGS...`'s exit code, stdout and stderr.
fn outcome(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The options each test runs `hermetic run` with: none, and a process
/// limit (cgroups as root, rlimits rootless).
const MODES: [&[&str]; 2] = [&[], &["--pids", "10000"]];

/// `hermetic run OPTS -- PROGRAM...` from `dir`, with `PATH` if given, in
/// each of [`MODES`]: it prints `expected` and exits 0.
fn prints_in_each_mode(
    dir: &std::path::Path,
    path: Option<&str>,
    opts: &[String],
    program: &[&str],
    expected: &str,
) {
    for mode in MODES {
        let mut cmd = hermetic();
        if let Some(path) = path {
            cmd.env("PATH", path);
        }
        cmd.current_dir(dir)
            .arg("run")
            .args(mode)
            .args(opts)
            .arg("--")
            .args(program);
        let (code, out, err) = outcome(&mut cmd);
        assert_eq!((code, out.as_str()), (Some(0), expected), "{mode:?}: {err}");
    }
}

/// A host directory the caller may write (as root and rootless).
fn host_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hermetic-run-attack-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// An executable script `name` in `dir`, printing `says`.
fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn run_takes_as_many_arguments_as_the_kernel_does() {
    // 2000 short arguments are far below the kernel's ARG_MAX; a shell
    // takes them.
    let many: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
    for opts in MODES {
        let (code, out, err) = outcome(
            hermetic()
                .arg("run")
                .args(opts)
                .args(["--", "sh", "-c", "echo $#", "sh"])
                .args(&many),
        );
        assert_eq!((code, out.as_str()), (Some(0), "2000\n"), "{opts:?}: {err}");
        let mut stack = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct, live on this stack.
        unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut stack) };
        if stack.rlim_cur < 8 << 20 {
            crate::common::skip("a stack limit under 8 MiB: the kernel takes fewer arguments");
            continue;
        }
        // 140000 empty ones: 1.3 MB with their pointers, under the
        // kernel's 2 MiB (a quarter of an 8 MiB stack); few bytes, many
        // entries.
        let (code, out, err) = outcome(
            hermetic()
                .arg("run")
                .args(opts)
                .args(["--", "sh", "-c", "echo $#", "sh"])
                .args(std::iter::repeat_n("", 140_000)),
        );
        assert_eq!(
            (code, out.as_str()),
            (Some(0), "140000\n"),
            "{opts:?}: {err}"
        );
    }
}

#[test]
fn run_takes_as_large_an_environment_as_the_kernel_does() {
    for opts in MODES {
        let mut cmd = hermetic();
        cmd.arg("run")
            .args(opts)
            .args(["--", "sh", "-c", "env | grep -c '^HERMETIC_MANY_'"]);
        for i in 0..5000 {
            cmd.env(format!("HERMETIC_MANY_{i}"), "1");
        }
        let (code, out, err) = outcome(&mut cmd);
        assert_eq!((code, out.as_str()), (Some(0), "5000\n"), "{opts:?}: {err}");
        // One large value, well within the kernel's 128 KiB a string and
        // its ARG_MAX, twelve times.
        let mut cmd = hermetic();
        cmd.arg("run")
            .args(opts)
            .args(["--", "sh", "-c", "echo ${#HERMETIC_BIG_0}"]);
        for i in 0..12 {
            cmd.env(format!("HERMETIC_BIG_{i}"), "a".repeat(100_000));
        }
        let (code, out, err) = outcome(&mut cmd);
        assert_eq!(
            (code, out.as_str()),
            (Some(0), "100000\n"),
            "{opts:?}: {err}"
        );
    }
}

#[test]
fn run_finds_the_program_in_path_as_a_shell_inside_does() {
    // PATH: first (empty on the host, a bound directory inside), then
    // second (the host's `prog`). Inside, `prog` is first's, as a shell
    // there finds it.
    let dir = host_dir();
    let [first, second, bound] = ["first", "second", "bound"].map(|d| {
        let p = dir.path().join(d);
        std::fs::create_dir(&p).unwrap();
        p
    });
    script(&second, "prog", "#!/bin/sh\necho host\n");
    script(&bound, "prog", "#!/bin/sh\necho bound\n");
    let path = format!("{}:{}:/usr/bin:/bin", first.display(), second.display());
    let second_bound = format!("{}:{}", second.display(), second.display());
    let opts = [
        "--bind-ro".to_owned(),
        format!("{}:{}", bound.display(), first.display()),
        "--bind-ro".to_owned(),
        second_bound.clone(),
    ];
    prints_in_each_mode(dir.path(), Some(&path), &opts, &["prog"], "bound\n");
    // The other way round: the host's first match hidden inside (a tmpfs
    // over its directory), a later one there.
    script(&first, "prog2", "#!/bin/sh\necho first\n");
    script(&second, "prog2", "#!/bin/sh\necho second\n");
    let opts = [
        "--tmpfs".to_owned(),
        first.display().to_string(),
        "--bind-ro".to_owned(),
        second_bound,
    ];
    prints_in_each_mode(dir.path(), Some(&path), &opts, &["prog2"], "second\n");
}

#[test]
fn run_starts_a_script_without_a_shebang_as_a_shell_does() {
    // execvp (std's Command, a command's relay) and every shell run a
    // file the kernel calls ENOEXEC with /bin/sh.
    let dir = host_dir();
    script(dir.path(), "plain", "echo plain script\n");
    prints_in_each_mode(dir.path(), None, &[], &["./plain"], "plain script\n");
}

#[test]
fn run_reports_the_status_of_a_program_that_kills_everything_it_can() {
    // kill(-1) as root inside reaches every process of the sandbox but the
    // init process: the program's status must still be its own.
    for opts in [
        &[][..],
        &["--pids", "10000"][..],
        &["--user", "1000:1000"][..],
    ] {
        let (code, _, err) = outcome(hermetic().arg("run").args(opts).args([
            "--",
            "sh",
            "-c",
            "kill -KILL -1; exit 4",
        ]));
        assert_eq!(code, Some(4), "{opts:?}: {err}");
    }
}

#[test]
fn run_does_not_hang_on_a_program_that_stops_everything_it_can() {
    // --timeout is the backstop: a hang shows as 124 after it, not as a
    // test that never ends.
    for opts in MODES {
        let (code, _, err) = outcome(hermetic().arg("run").args(opts).args([
            "--timeout",
            "20s",
            "--",
            "sh",
            "-c",
            "kill -STOP -1; exit 4",
        ]));
        assert_eq!(code, Some(4), "{opts:?}: {err}");
    }
}

#[test]
fn sigterm_ends_run_of_a_stopped_program() {
    // As timeout(1) ends a stopped child (SIGTERM, then SIGCONT): a
    // program that stopped itself must not make hermetic deaf to SIGTERM.
    // The program says "ready" once it is seen stopped.
    let stopped = "p=$$; (while ! grep -q '^State:.*stopped' /proc/$p/status; do :; done; \
                   echo ready) & kill -STOP $$";
    for opts in MODES {
        let mut child = hermetic()
            .arg("run")
            .args(opts)
            .args(["--timeout", "20s", "--", "sh", "-c", stopped])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        crate::common::wait_ready(&mut child);
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let code = child.wait().unwrap().code();
        assert_eq!(
            code,
            Some(128 + libc::SIGTERM),
            "{opts:?}: 124 is the backstop"
        );
    }
}

#[test]
fn run_skips_a_file_in_path_it_may_not_execute_as_a_shell_does() {
    // PATH: first holds a `tool` without the exec bit, second the real
    // one: execvp and shells go on past EACCES to second's.
    use std::os::unix::fs::PermissionsExt;
    let dir = host_dir();
    let [first, second] = ["first", "second"].map(|d| {
        let p = dir.path().join(d);
        std::fs::create_dir(&p).unwrap();
        p
    });
    let plain = script(&first, "tool", "#!/bin/sh\necho first\n");
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    script(&second, "tool", "#!/bin/sh\necho second\n");
    let path = format!("{}:{}:/usr/bin:/bin", first.display(), second.display());
    prints_in_each_mode(dir.path(), Some(&path), &[], &["tool"], "second\n");
}

#[test]
fn a_kept_sandbox_holds_none_of_the_callers_stdio() {
    // HERMETIC_KEEP=1 keeps a failing program's sandbox: the caller's
    // pipe must still end when hermetic does, or `out=$(hermetic run ...)`
    // and a runner reading the test's output wait for as long as the
    // sandbox is kept.
    use std::io::Read;
    use std::os::fd::AsRawFd;
    for opts in MODES {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = hermetic()
            .env("HERMETIC_KEEP", "1")
            .arg("run")
            .args(opts)
            .args(["--", "sh", "-c", "echo out; exit 3"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let code = child.wait().unwrap().code();
        let said = std::fs::read_to_string(log.path()).unwrap();
        // The kept sandbox's init process, named in the message: ended
        // whatever the outcome.
        let init: i32 = said
            .split("init process ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("{opts:?}: no kept init process named: {said}"));
        let mut stdout = child.stdout.take().unwrap();
        // Its end (every writer gone): at once, but for a moment where a
        // run another test forks meanwhile holds a copy of the pipe (see
        // the README); 20 s at most, then the kept sandbox is ended anyway.
        let mut fds = [libc::pollfd {
            fd: stdout.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut ended = false;
        while !ended && std::time::Instant::now() < deadline {
            // SAFETY: one live pollfd, for 100 ms at most.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) };
            if fds[0].revents & libc::POLLIN != 0 {
                let mut chunk = [0u8; 64];
                let n = stdout.read(&mut chunk).unwrap();
                out.extend_from_slice(&chunk[..n]);
                ended = n == 0;
            } else {
                ended = fds[0].revents & libc::POLLHUP != 0;
            }
        }
        // SAFETY: a signal to the kept init process this test made.
        unsafe { libc::kill(init, libc::SIGKILL) };
        assert_eq!(code, Some(3), "{opts:?}: {said}");
        assert!(
            ended && out == b"out\n",
            "{opts:?}: the caller's stdout is still open once hermetic ended ({out:?})"
        );
    }
}

#[test]
fn a_long_command_line_does_not_bring_back_a_killable_relay() {
    // 300 KB of arguments: kill(-1) or a stop must not change the outcome
    // (--timeout as the backstop).
    let big = "a".repeat(100_000);
    for script in ["kill -KILL -1; exit 4", "kill -STOP -1; exit 4"] {
        let (code, _, err) = outcome(
            hermetic()
                .args(["run", "--timeout", "20s", "--", "sh", "-c", script, "sh"])
                .args([&big, &big, &big]),
        );
        assert_eq!(code, Some(4), "{script}: {err}");
    }
}

#[test]
fn a_hidden_working_directory_is_not_called_a_missing_program() {
    // The working directory under a --tmpfs (of its parent): hidden
    // inside. A command
    // (a command line over 256 KiB) starts the program in / then; the
    // init process must not say that sh, which is there, is not.
    let dir = host_dir();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let (code, out, err) = outcome(
        hermetic()
            .current_dir(&sub)
            .arg("run")
            .arg("--tmpfs")
            .arg(dir.path())
            .args(["--", "sh", "-c", "echo started"]),
    );
    assert!(
        code == Some(0) && out == "started\n" || err.contains("working directory"),
        "{code:?} {out:?}: {err}"
    );
}

/// Over 768 KiB of arguments and environment (the init process's plan
/// then outgrew its pipe), `hermetic run` once started the program as a
/// command instead: the program then held the caller's fds (a `3<file`
/// given to hermetic) and ran under a relay inside, which `kill -KILL -1`
/// killed (exit 137, not the program's own status). Now the init process
/// takes any command line the kernel could start hermetic with, and
/// starts the program itself.
#[test]
fn a_command_line_over_a_pipe_s_worth_still_has_no_relay_and_no_fd_of_the_caller() {
    // 12 x 100 KB: over 768 KiB, and over 1 MiB (a pipe's most rootless:
    // the plan goes in two parts), under the kernel's 2 MiB (and each
    // argument under its 128 KiB).
    let big = "a".repeat(100_000);
    let script = "test -e /proc/$$/fd/3 && echo fd-3-inherited || echo no-fd-3; \
                  echo \"$#\"; kill -KILL -1; exit 4";
    let (code, out, err) = outcome(
        Command::new("sh")
            .args(["-c", "exec 3</etc/hostname; exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_hermetic"))
            .args(["run", "--", "sh", "-c", script, "sh"])
            .args(std::iter::repeat_n(&big, 12)),
    );
    assert_eq!((code, out.as_str()), (Some(4), "no-fd-3\n12\n"), "{err}");
}
