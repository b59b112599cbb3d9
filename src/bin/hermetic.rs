//! `hermetic`: programs and whole test binaries in a sandbox, from the
//! command line.
//!
//! ```text
//! hermetic run [OPTIONS] -- PROGRAM [ARGS...]   PROGRAM in a fresh sandbox
//! hermetic check                                what this host allows
//! hermetic enter PID [PROGRAM [ARGS...]]        a program in a kept sandbox
//! ```
//!
//! As cargo's target runner (`.cargo/config.toml`):
//!
//! ```toml
//! [target.x86_64-unknown-linux-gnu]
//! runner = "hermetic run --"
//! ```
//!
//! every test binary, and under `cargo nextest run` every test, runs in a
//! sandbox of its own.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::ExitCode;

const USAGE: &str = "\
usage: hermetic run [OPTIONS] -- PROGRAM [ARGS...]
       hermetic check
       hermetic enter PID [PROGRAM [ARGS...]]

run: PROGRAM in a fresh sandbox (its own user, mount, network, PID, UTS and
IPC namespaces, root inside mapped to you), in the current directory, with
stdio connected; its exit status is passed through (code, or 128+signal).
  --hostname NAME       the sandbox's hostname (default: sandbox)
  --bind SRC:DST        bind the host path SRC at DST, writable
  --bind-ro SRC:DST     bind the host path SRC at DST, read-only
  --tmpfs DIR           a fresh tmpfs on DIR
  --writable-host       leave the host's files writable (as far as you may)
HERMETIC_KEEP=1: a failed program's sandbox is kept (see `hermetic enter`).

The terminal is kept safe: PROGRAM runs in a session of its own, with no
controlling terminal, so `kill 0` inside reaches only the sandbox, and a
seccomp filter refuses the ioctls that type into or read from a terminal
(TIOCSTI, TIOCLINUX), as well as keyctl, add_key and request_key. It still
reads and writes the terminal as its stdio (an interactive shell works,
without job control); Ctrl-C, Ctrl-\\, a hang-up and a window resize reach it
through hermetic, which passes those signals on.

check: probes what this host allows, and how to fix what it does not.

enter: PROGRAM (default: $SHELL, else /bin/sh) inside the sandbox whose
init process (or keeper) is PID, as a kept sandbox's message names it.";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.to_string_lossy().into_owned(), rest),
        None => return usage_error("no command given"),
    };
    match command.as_str() {
        "run" => run(rest),
        "check" => check(),
        "enter" => enter(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => usage_error(&format!("unknown command {other:?}")),
    }
}

fn usage_error(what: &str) -> ExitCode {
    eprintln!("hermetic: {what}\n\n{USAGE}");
    ExitCode::from(2)
}

/// `SRC:DST` of a bind option.
fn pair(option: &str, value: Option<&OsString>) -> Result<(String, String), String> {
    let value = value
        .and_then(|v| v.to_str())
        .ok_or_else(|| format!("{option} takes SRC:DST"))?;
    value
        .split_once(':')
        .map(|(s, d)| (s.to_owned(), d.to_owned()))
        .ok_or_else(|| format!("{option} takes SRC:DST, not {value:?}"))
}

fn run(args: &[OsString]) -> ExitCode {
    let mut builder = hermetic::Sandbox::builder();
    let mut i = 0;
    let program = loop {
        let Some(arg) = args.get(i) else {
            return usage_error("run: no program (put it after --)");
        };
        let arg = arg.to_string_lossy();
        let value = args.get(i + 1);
        let step = match arg.as_ref() {
            "--" => break i + 1,
            "--hostname" => match value.and_then(|v| v.to_str()) {
                Some(name) => {
                    builder.hostname(name);
                    2
                }
                None => return usage_error("--hostname takes a name"),
            },
            "--bind" | "--bind-ro" => match pair(&arg, value) {
                Ok((src, dst)) => {
                    if arg == "--bind" {
                        builder.bind(src, dst);
                    } else {
                        builder.bind_ro(src, dst);
                    }
                    2
                }
                Err(e) => return usage_error(&e),
            },
            "--tmpfs" => match value {
                Some(dir) => {
                    builder.tmpfs(dir);
                    2
                }
                None => return usage_error("--tmpfs takes a directory"),
            },
            "--writable-host" => {
                builder.writable_host(true);
                1
            }
            // `hermetic run PROGRAM ...` without the `--`.
            a if !a.starts_with('-') => break i,
            other => return usage_error(&format!("run: unknown option {other:?}")),
        };
        i += step;
    };
    let Some((program, program_args)) = args[program..].split_first() else {
        return usage_error("run: no program after --");
    };
    let sandbox = match builder.build() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hermetic: cannot create a sandbox: {e}");
            return ExitCode::from(125);
        }
    };
    // From now on: signals sent before the program runs are passed on
    // once it does.
    forward_signals();
    // The relay in a process group of its own: what the terminal (or a
    // kill of this process's group) sends reaches the program once,
    // through this process.
    let spawned = sandbox
        .command(program)
        .args(program_args)
        .process_group(0)
        .spawn();
    if let Ok(child) = &spawned {
        CHILD.store(child.id() as i32, std::sync::atomic::Ordering::SeqCst);
        let pending = PENDING.swap(0, std::sync::atomic::Ordering::SeqCst);
        for sig in PASSED_ON {
            if pending & (1 << sig) != 0 {
                // SAFETY: a signal to our own child.
                unsafe { libc::kill(child.id() as i32, sig) };
            }
        }
    }
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            eprintln!("hermetic: cannot start {}: {e}", program.to_string_lossy());
            // As a shell says it: not found, or not executable.
            return ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let status = loop {
        match child.wait() {
            Ok(status) => break status,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("hermetic: waiting for {}: {e}", program.to_string_lossy());
                return ExitCode::from(125);
            }
        }
    };
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 125,
    };
    if code != 0 && keep_failed() {
        match sandbox.keep() {
            Ok(enter) => eprintln!(
                "hermetic: HERMETIC_KEEP is set: the sandbox is kept (init process {}); look \
                 inside with: {enter} sh, or: hermetic enter {}",
                sandbox.pid(),
                sandbox.pid()
            ),
            Err(e) => eprintln!("hermetic: could not keep the sandbox: {e}"),
        }
    }
    drop(sandbox);
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn keep_failed() -> bool {
    std::env::var_os("HERMETIC_KEEP").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The signals `hermetic run` passes on to the program.
const PASSED_ON: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// The child signals go on to (the program's relay, which passes them on).
static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
/// Signals that came before there was a child to pass them to, by bit.
static PENDING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn pass_on(sig: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // A terminal's signals too: the program is in a session of its own,
    // which the terminal does not reach.
    let pid = CHILD.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    } else {
        PENDING.fetch_or(1 << sig, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Passes on the signals a caller or the terminal sends to stop or poke
/// the program (`SIGINT`, `SIGTERM`, `SIGHUP`, `SIGQUIT`, `SIGUSR1`,
/// `SIGUSR2`, `SIGWINCH`): the program's session is its own, so these are
/// the only way they reach it. This process stays until the program ends,
/// to give its status.
fn forward_signals() {
    for sig in PASSED_ON {
        // SAFETY: installs a handler that only calls kill; the struct is
        // zeroed (empty mask) and lives for the call.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = pass_on
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

fn check() -> ExitCode {
    let report = hermetic::check();
    println!("{report}");
    if report.sandboxes_work() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn enter(args: &[OsString]) -> ExitCode {
    let Some(pid) = args
        .first()
        .and_then(|p| p.to_str())
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return usage_error("enter takes the PID a kept sandbox's message names");
    };
    let mut program = args[1..].iter().skip_while(|a| *a == "--");
    let shell = std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into());
    let command = program.next().cloned().unwrap_or(shell);
    let rest: Vec<OsString> = program.cloned().collect();
    // Back to this directory inside, where it exists (setns moves to the
    // mount namespace's root).
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|d| std::ffi::CString::new(d.into_os_string().into_encoded_bytes()).ok());
    let mut cmd = std::process::Command::new(&command);
    cmd.args(&rest);
    // SAFETY: the hook makes only system calls, in std's fork child.
    unsafe {
        cmd.pre_exec(move || join(pid, cwd.as_deref()).map_err(std::io::Error::from_raw_os_error));
    }
    match cmd.status() {
        Ok(status) => ExitCode::from(
            status
                .code()
                .or(status.signal().map(|s| 128 + s))
                .unwrap_or(125)
                .clamp(0, 255) as u8,
        ),
        Err(e) => {
            eprintln!(
                "hermetic: cannot enter the sandbox of {pid} to run {}: {e}",
                command.to_string_lossy()
            );
            ExitCode::from(125)
        }
    }
}

/// In std's fork child: joins every namespace of `pid` (a kept sandbox's
/// init process or keeper) in one call, then forks once more so that the
/// program runs in its PID namespace.
fn join(pid: i32, cwd: Option<&std::ffi::CStr>) -> Result<(), i32> {
    // SAFETY: plain system calls on integers; pidfd is ours.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        if pidfd < 0 {
            return Err(*libc::__errno_location());
        }
        let all = libc::CLONE_NEWUSER
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC;
        if libc::setns(pidfd, all) != 0 {
            return Err(*libc::__errno_location());
        }
        libc::close(pidfd);
        if cwd.is_none_or(|d| libc::chdir(d.as_ptr()) != 0) {
            libc::chdir(c"/".as_ptr());
        }
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_JOIN_SESSION_KEYRING,
            c"hermetic-sandbox".as_ptr(),
        );
        // Children are in the PID namespace; this process is not. The
        // program is the child; this one waits and leaves as it did.
        match libc::fork() {
            0 => Ok(()),
            -1 => Err(*libc::__errno_location()),
            child => {
                let mut status = 0;
                while libc::waitpid(child, &mut status, 0) < 0 {}
                if libc::WIFSIGNALED(status) {
                    libc::_exit(128 + libc::WTERMSIG(status));
                }
                libc::_exit(libc::WEXITSTATUS(status))
            }
        }
    }
}
