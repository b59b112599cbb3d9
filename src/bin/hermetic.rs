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
  --host MODE           how the host's files are seen (also --host=MODE):
                        cow (default): as they are, writable where you may
                          write them, every change in a private layer that
                          goes with the sandbox (nothing reaches the host);
                        ro: read-only, with a fresh /tmp;
                        writable: writable, writes reach the host
  --writable-host       the same as --host=writable
HERMETIC_KEEP=1: a failed program's sandbox is kept (see `hermetic enter`).

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
    let mut mode = hermetic::HostMode::CopyOnWrite;
    // The user's mounts' targets, and the option that made each (to say
    // what hides a program that cannot be started).
    let mut mounts: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    let program = loop {
        let Some(arg) = args.get(i) else {
            return usage_error("run: no program (put it after --)");
        };
        let arg = arg.to_string_lossy();
        let value = args.get(i + 1);
        let (arg, value, taken) = match arg.split_once('=') {
            Some((name, v)) if name.starts_with("--") => (
                std::borrow::Cow::Owned(name.to_owned()),
                Some(OsString::from(v)),
                0,
            ),
            _ => (arg, value.cloned(), 1),
        };
        let value = value.as_ref();
        let step = match arg.as_ref() {
            "--" => break i + 1,
            "--host" => match value.and_then(|v| v.to_str()).map(str::parse) {
                Some(Ok(m)) => {
                    mode = m;
                    1 + taken
                }
                Some(Err(e)) => return usage_error(&format!("--host: {e}")),
                None => return usage_error("--host takes cow, ro or writable"),
            },
            "--hostname" => match value.and_then(|v| v.to_str()) {
                Some(name) => {
                    builder.hostname(name);
                    1 + taken
                }
                None => return usage_error("--hostname takes a name"),
            },
            "--bind" | "--bind-ro" => match pair(&arg, value) {
                Ok((src, dst)) => {
                    if arg == "--bind" {
                        builder.bind(&src, &dst);
                    } else {
                        builder.bind_ro(&src, &dst);
                    }
                    let option = format!("{arg} {src}:{dst}");
                    mounts.push((dst, option));
                    1 + taken
                }
                Err(e) => return usage_error(&e),
            },
            "--tmpfs" => match value {
                Some(dir) => {
                    builder.tmpfs(dir);
                    let dir = dir.to_string_lossy().into_owned();
                    mounts.push((dir.clone(), format!("--tmpfs {dir}")));
                    1 + taken
                }
                None => return usage_error("--tmpfs takes a directory"),
            },
            "--writable-host" => {
                mode = hermetic::HostMode::Writable;
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
    builder.host(mode);
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
    let spawned = sandbox.command(program).args(program_args).spawn();
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
            eprintln!(
                "hermetic: cannot start {}: {e}{}",
                program.to_string_lossy(),
                why_hidden(program, mode.granted(), &mounts)
            );
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

/// Why a program that exists on the host is not found inside, and what
/// to do: the path looked for, what covers it, the fix. Empty when it does
/// not exist on the host either.
fn why_hidden(
    program: &std::ffi::OsStr,
    mode: hermetic::HostMode,
    mounts: &[(String, String)],
) -> String {
    use std::path::{Path, PathBuf};
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let path: Option<PathBuf> = if program.as_encoded_bytes().contains(&b'/') {
        Some(cwd.join(program))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| cwd.join(dir).join(program))
                .find(|p| p.is_file())
        })
    };
    let Some(path) = path.filter(|p| p.exists()) else {
        return String::new();
    };
    let shown = path.display();
    let covering = mounts
        .iter()
        .filter(|(target, _)| path.starts_with(target))
        .max_by_key(|(target, _)| Path::new(target).components().count());
    if let Some((_, option)) = covering {
        return format!(
            "\n  {shown} exists on the host, but inside it lies under the mount of `{option}`, \
             which hides the host's files there; start the program from a path that mount \
             does not cover, or bind its directory in at a place of its own"
        );
    }
    let own = ["/tmp", "/dev/shm"]
        .into_iter()
        .find(|t| path.starts_with(t));
    match (own, mode) {
        (Some(own), hermetic::HostMode::CopyOnWrite) => format!(
            "\n  {shown} exists on the host, but inside it lies under the sandbox's own {own}"
        ),
        (Some(own), mode) => format!(
            "\n  {shown} exists on the host, but inside it lies under the sandbox's own {own} \
             (a fresh tmpfs: the host is seen in the {mode} mode{}), which hides the host's; \
             use --host=cow, which shows the host's {own} under a private layer, or \
             --bind-ro DIR:DIR for the program's directory",
            if hermetic::HostMode::CopyOnWrite.granted() == hermetic::HostMode::CopyOnWrite {
                ""
            } else {
                ", as this host refuses the copy-on-write one"
            }
        ),
        (None, _) => format!(
            "\n  {shown} exists on the host but is not visible inside; bind its directory in \
             with --bind-ro DIR:DIR"
        ),
    }
}

fn keep_failed() -> bool {
    std::env::var_os("HERMETIC_KEEP").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The signals `hermetic run` passes on to the program.
const PASSED_ON: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The child signals go on to (the program's relay, which passes them on).
static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
/// Signals that came before there was a child to pass them to, by bit.
static PENDING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // A terminal's signals reach the whole foreground process group, the
    // program included, by themselves.
    // SAFETY: the kernel passes a live siginfo to an SA_SIGINFO handler.
    if unsafe { (*info).si_code } == libc::SI_KERNEL {
        return;
    }
    let pid = CHILD.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    } else {
        PENDING.fetch_or(1 << sig, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Passes on the signals a caller sends to stop or poke the program
/// (`SIGINT`, `SIGTERM`, `SIGHUP`, `SIGQUIT`, `SIGUSR1`, `SIGUSR2`); a
/// terminal's are not passed twice. This process stays until the program
/// ends, to give its status.
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
