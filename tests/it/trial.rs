//! Findings of a new user's trial (README, `hermetic run --help`, the
//! library's docs), each a test that failed (`#[ignore]`d as a finding)
//! until it was fixed, and that must keep passing.

use crate::common;
use crate::common::{wait_bounded, wait_for};

use std::process::{Command, Stdio};
use std::time::Duration;

fn hermetic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hermetic"))
}

use crate::common::script;

/// A suite built with its target dir under /tmp and run from a `cargo
/// nextest archive` extracted in nextest's default place
/// (/tmp/nextest-archive-XXXXXX) on the same machine: its tests start the
/// crate's own binary by the path cargo compiled into them,
/// `env!("CARGO_BIN_EXE_<name>")`, which is in the build's target dir.
/// Plainly that path exists and the test passes; under `hermetic run --` as
/// the runner (README: "a target dir or a nextest archive under /tmp is
/// found"; ordinary suites "run the crate's own binary") the build's target
/// dir is hidden by the sandbox's fresh /tmp unless CARGO_TARGET_DIR happens
/// to be exported when the archive is run, and the test fails with ENOENT.
/// Reproduced with a real crate (tests calling
/// `Command::new(env!("CARGO_BIN_EXE_trial-ord"))`), as root and as
/// hermetic-ci: 6 of 6 fail from the archive, 6 of 6 pass with
/// CARGO_TARGET_DIR exported, 1 of 1 passes plainly from the same archive.
#[test]
fn an_archive_s_tests_find_the_build_s_binary_under_tmp() {
    let tmp = |prefix: &str| {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .unwrap()
    };
    // Three entries of /tmp, as on the machine: the build's target dir
    // (CARGO_TARGET_DIR=/tmp/...), the extracted archive, the checkout.
    let build = tmp("hermetic-trial-target.");
    let archive = tmp("nextest-archive-");
    let checkout = tmp("hermetic-trial-checkout.");
    // The build's target dir, as cargo leaves it.
    let build_target = build.path();
    std::fs::create_dir_all(build_target.join("debug")).unwrap();
    std::fs::write(
        build_target.join("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    let crate_bin = build_target.join("debug/trial-bin");
    script(&crate_bin, "echo crate binary ran");
    // The test binary as nextest extracts it, calling the crate's binary
    // by the path compiled into it.
    let test_bin = archive
        .path()
        .join("target/debug/deps/ordinary-0123456789abcdef");
    script(&test_bin, &format!("exec {}", crate_bin.display()));
    // As nextest extracts it: the archive's metadata names the build's
    // target dir.
    std::fs::create_dir_all(archive.path().join("target/nextest")).unwrap();
    std::fs::write(
        archive.path().join("target/nextest/binaries-metadata.json"),
        serde_json::json!({ "rust-build-meta": { "target-directory": build_target } }).to_string(),
    )
    .unwrap();
    // The checkout (--workspace-remap), nextest's working directory.
    let checkout = checkout.path();

    let plain = Command::new(&test_bin)
        .current_dir(checkout)
        .output()
        .unwrap();
    assert!(plain.status.success(), "plainly: {plain:?}");

    let out = hermetic()
        .args(["run", "--"])
        .arg(&test_bin)
        .current_dir(checkout)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_TARGET_TMPDIR")
        .env("CARGO_MANIFEST_DIR", checkout)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "under hermetic run: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "crate binary ran\n");
}

/// `hermetic enter PID` of a process that is not a kept sandbox (here a
/// `sleep` of the test's own) says "cannot start sh: Invalid argument (os
/// error 22)" and exits 126 ("PROGRAM was found but could not be
/// started"), where `hermetic enter --help` says: "125 if the sandbox
/// could not be entered". As hermetic-ci, `hermetic enter 1 -- id` says
/// "cannot start id: Operation not permitted (os error 1)", 126 too.
#[test]
fn enter_of_a_process_that_is_no_sandbox_says_so() {
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let out = hermetic()
        .args(["enter", &sleeper.id().to_string(), "--", "sh", "-c", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(!err.contains("cannot start"), "{err}");
}

/// `hermetic run --help`: "2 the command line is wrong; 125 hermetic
/// failed: the sandbox could not be made". A value that can never be right
/// is a wrong command line, but only some are found so:
/// `--file /nonexistent:/tmp/x` and `--memory=0` exit 2, while
/// `--hostname=`, `--tmpfs relative/dir` and `--bind /nonexistent:/tmp/x`
/// exit 125 and `--pids=0` exits 126 ("cannot start true: Resource
/// temporarily unavailable (os error 11)", as if the program were at fault).
/// Each is told naming the option as given (`--pids`, not the builder's
/// `pids_limit`).
#[test]
fn a_value_that_can_never_work_is_a_command_line_error() {
    for args in [
        &["--hostname=", "true"][..],
        &["--tmpfs", "relative/dir", "true"],
        &["--pids=0", "true"],
        &["--memory", "0", "true"],
        &["--cpu-time=0", "true"],
        &["--tmp-size=1K", "true"],
    ] {
        let out = hermetic()
            .arg("run")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let flag = args[0].split('=').next().unwrap();
        assert!(
            err.contains(&format!("hermetic: {flag}")),
            "{args:?}: {err}"
        );
        assert!(err.contains("usage: hermetic run"), "{args:?}: {err}");
    }
}

/// `--timeout 0` and `--memory 0` are refused with a message that
/// contradicts the help's own syntax: "\"0\" is not a duration (seconds,
/// or 500ms, 10s, 2m, 1h)" (0 is a number of seconds, and
/// `HERMETIC_TIMEOUT=0` means no timeout), "\"0\" is not a size (bytes, or
/// 64M, 1G...)". Either accept 0 (none) or say why it is refused.
#[test]
fn zero_is_a_duration_and_a_size() {
    for args in [&["--timeout", "0", "true"][..], &["--memory=0", "true"]] {
        let out = hermetic()
            .arg("run")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || !err.contains("is not a"),
            "{args:?}: {err}"
        );
    }
}

/// `SandboxBuilder::user(70000, 70000)` where the sandbox has ids 0-65535
/// (root, or /etc/subuid ranges): `build()` accepts it and every run then
/// fails with "putting the run under the sandbox's limits (cgroups,
/// rlimits, capabilities): Invalid argument (EINVAL)", which names neither
/// the id nor the limit of 65535 (`command("id")` fails with a bare
/// EINVAL). `hermetic run --user 70000:70000 -- id` exits 126 with "cannot
/// start id: Invalid argument (os error 22)".
#[test]
fn a_user_beyond_the_sandbox_s_ids_is_named() {
    match hermetic::Sandbox::builder().user(70000, 70000).build() {
        Err(e) => assert!(e.to_string().contains("70000"), "{e}"),
        Ok(ns) => match ns.try_run(|| nix::unistd::getuid().as_raw()) {
            Ok(uid) => assert_eq!(uid, 70000),
            Err(e) => assert!(e.to_string().contains("70000"), "{e}"),
        },
    }
}

/// `pids_limit(0)` and `memory_limit(0)`: `tmp_size(0)` is refused at
/// `build()` as an invalid option ("0 bytes: /tmp needs at least one
/// page"), but `pids_limit(0)` fails `build()` with "creating the inner
/// user namespace (its network, UTS and IPC namespaces are made
/// meanwhile): Resource temporarily unavailable (EAGAIN)", and
/// `memory_limit(0)` builds and then fails each run with "starting a
/// process in the sandbox: the joining process ended without a report":
/// neither names the limit. (`cpu_time_limit(Duration::ZERO)` likewise.)
#[test]
fn a_zero_limit_is_named() {
    let mut zero_pids = hermetic::Sandbox::builder();
    zero_pids.pids_limit(0);
    let mut zero_memory = hermetic::Sandbox::builder();
    zero_memory.memory_limit(0);
    let mut zero_cpu = hermetic::Sandbox::builder();
    zero_cpu.cpu_time_limit(Duration::ZERO);
    for (builder, named) in [
        (zero_pids, "pids_limit"),
        (zero_memory, "memory_limit"),
        (zero_cpu, "cpu_time_limit"),
    ] {
        match builder.build() {
            Err(hermetic::Error::InvalidOption { option, reason, .. }) => {
                assert_eq!(option, named, "{reason}");
                assert!(reason.contains("leave the limit out"), "{reason}");
            }
            Err(e) => panic!("{named}: not refused as an invalid option: {e}"),
            Ok(_) => panic!("{named}: a sandbox was built with a limit of 0"),
        }
    }
}

/// `SandboxBuilder::timeout`'s doc: "`HERMETIC_TIMEOUT` (for a whole
/// suite; `0` means none)". `timeout(Duration::ZERO)` instead times every
/// run out at once: "the closure timed out after 0ns and was killed".
#[test]
fn a_zero_timeout_is_none_as_in_the_environment() {
    let ns = hermetic::Sandbox::builder()
        .timeout(Duration::ZERO)
        .build()
        .unwrap();
    let r = ns.try_run(|| {
        std::thread::sleep(Duration::from_millis(100));
        1
    });
    assert_eq!(r.unwrap(), 1);
}

/// As root (per-sandbox cgroups, here v1), a memory limit too small for
/// the sandbox's own start (a units slip: `memory_limit(256)` meaning MiB,
/// or 64 KiB) gets the process that makes the sandbox killed by the memory
/// cgroup's OOM killer: dmesg says "Memory cgroup out of memory: Killed
/// process N (<test name>)". `hermetic run --memory=64K -- true` exits 137
/// (SIGKILL of hermetic itself, a status `--help` does not list) in 3 of 4
/// runs, 125 in the others ("the sandbox's init process ended before the
/// program did"); in a test, `Sandbox::builder().memory_limit(64 << 10)`
/// twice (or `memory_limit(0)`, `memory_limit(256)`, or `pids_limit(1)`
/// and then `memory_limit(0)`) kills the whole test binary with SIGKILL at
/// the second `build()`, 5 of 5 times. README: "if the test process is
/// killed ... its sandboxes die with it", never the other way round; a limit
/// should fail the sandbox (`Error::LimitReached`, `InvalidOption`), not its
/// maker.
#[test]
fn a_tiny_memory_limit_never_kills_the_sandbox_s_maker() {
    if !nix::unistd::geteuid().is_root() {
        common::skip("rootless, limits are rlimits per process: no memory cgroup to kill in");
        return;
    }
    for size in ["256", "4K", "64K", "128K"] {
        for _ in 0..4 {
            let out = hermetic()
                .args(["run", &format!("--memory={size}"), "--", "true"])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert_ne!(
                out.status.code(),
                None,
                "--memory={size}: hermetic itself was killed: {out:?}"
            );
        }
    }
}

/// README: "Given a terminal, `hermetic run`'s and `hermetic enter`'s
/// program gets a pseudo-terminal of its own instead (made like the
/// caller's: modes, size) ... it leads a session whose controlling terminal
/// that is". It does (isatty(0) holds, `/proc/self/fd/0` is
/// `/dev/pts/1`), but that terminal is not in the sandbox's `/dev/pts` (a
/// fresh devpts holding `ptmx` only), so its name resolves to nothing:
/// `tty` prints "not a tty", Python's `os.ttyname(0)` fails with ENODEV,
/// `ps` shows `?` as the shell's terminal. Seen in an interactive bash on a
/// pty (`hermetic run -- sh -c tty`), as root and as hermetic-ci; under
/// `bwrap --unshare-all --dev /dev ...` the same `tty` prints a name.
#[test]
fn the_program_s_terminal_has_a_name_inside() {
    let mut cmd = common::hermetic_command();
    cmd.args(["run", "--", "sh", "-c", "echo \"NAME=$(tty) END\""]);
    let (mut child, _master, rx, slave) = common::start_on_terminal(cmd);
    drop(slave);
    let mut seen = String::new();
    let done = wait_for(&rx, &mut seen, "END");
    let status = wait_bounded(&mut child);
    assert!(done && status.success(), "{status:?}: {seen}");
    assert!(seen.contains("NAME=/dev/"), "{seen}");
}

/// README: "The caller's terminal is in raw mode meanwhile ... When PROGRAM
/// ends, hermetic ... puts your terminal's modes and size back". Two
/// `hermetic run`s of one foreground job on one terminal, the second
/// started while the first has the terminal in raw mode and ending after
/// it, leave the terminal in raw mode: the second saved the first's raw
/// modes and "puts them back" last (`stty -g` after:
/// `0:4:bf:a31:...`, before: `500:5:bf:8a3b:...`: no ICANON, ECHO, OPOST,
/// ICRNL). `cargo nextest run` with `hermetic run --` as the runner does
/// exactly that: it lists every test binary at once through the runner,
/// with the terminal as stdin, in its foreground group; from an
/// interactive shell the terminal was left raw after 2 of 4 and 3 of 4
/// runs of a 4-binary suite (with `--no-capture`, 2 of 3), never without
/// the runner (0 of 4). 5 of 5 with the two runs below.
#[test]
fn overlapping_runs_on_one_terminal_leave_its_modes_as_they_were() {
    let h = env!("CARGO_BIN_EXE_hermetic");
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!(
            "before=$(stty -g); \
             {h} run -- sleep 0.2 </dev/tty & sleep 0.1; \
             {h} run -- sleep 0.6 </dev/tty & wait; \
             echo \"BEFORE=$before AFTER=$(stty -g) END\""
        ),
    ]);
    let (mut child, _master, rx, slave) = common::start_on_terminal(cmd);
    drop(slave);
    let mut seen = String::new();
    let done = wait_for(&rx, &mut seen, "END");
    let status = wait_bounded(&mut child);
    assert!(done && status.success(), "{status:?}: {seen}");
    let field = |name: &str| -> String {
        let at = seen.find(&format!("{name}=")).unwrap() + name.len() + 1;
        seen[at..].split_whitespace().next().unwrap().to_owned()
    };
    assert_eq!(
        field("AFTER"),
        field("BEFORE"),
        "the terminal's modes changed: {seen}"
    );
}

/// A suite's test that starts a tool found through `PATH` (`Command::new
/// ("protoc")`, `cargo` for trybuild, a nested `hermetic`) passes plainly
/// and fails under `hermetic run --` where that `PATH` entry lies under
/// /tmp or /var/tmp (tools a CI job unpacked there, a rootless user's
/// `CARGO_HOME` copy): the copy-on-write host's fresh /tmp and /var/tmp
/// show "the program's directory" and the working directory, but not the
/// directories of `PATH` (`sh: 1: trialtool: not found`, exit 127), and
/// `hermetic run` has no `--visible` (`SandboxBuilder::visible`'s
/// counterpart) to add one: only `--bind-ro DIR:DIR` brings it back.
/// Found by running `hermetic run -- sh -c "hermetic run -- true"` with
/// hermetic installed in /var/tmp/trial-bin (as root and both users: 127).
#[test]
fn a_tool_on_the_path_under_tmp_is_found_inside() {
    let tools = tempfile::Builder::new()
        .prefix("hermetic-trial-tools.")
        .tempdir_in("/tmp")
        .unwrap();
    script(&tools.path().join("trialtool"), "echo trialtool ran");
    let path = format!(
        "{}:{}",
        tools.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let plain = Command::new("sh")
        .args(["-c", "trialtool"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(plain.status.success(), "plainly: {plain:?}");
    let out = hermetic()
        .args(["run", "--", "sh", "-c", "trialtool"])
        .env("PATH", &path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
