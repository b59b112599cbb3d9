//! `hermetic`: programs and whole test binaries in a sandbox, from the
//! command line.
//!
//! ```text
//! hermetic run [OPTIONS] [--] PROGRAM [ARGS...]   PROGRAM in a fresh sandbox
//! hermetic check                                  what this host allows
//! hermetic enter PID [--] [PROGRAM [ARGS...]]     a program in a kept sandbox
//! ```
//!
//! As cargo's target runner (`.cargo/config.toml`):
//!
//! ```toml
//! [target.'cfg(target_os = "linux")']
//! runner = "hermetic run --"
//! ```
//!
//! every test binary, and under `cargo nextest run` every test, runs in a
//! sandbox of its own. `hermetic COMMAND --help` says the rest.
//!
//! The arguments are read with `lexopt`: one small file, no dependencies,
//! so that the library's users compile next to nothing for the command
//! (clap would be a second package, or a build of its own for everyone).
//! Everything the library does (making the sandbox, starting a program in
//! it, joining a kept one, keeping one) is the library's; this file reads
//! arguments, passes on signals (`signals`), gives the program a terminal of
//! its own (`relay`), puts the caller's back (`terminal`), and turns the
//! outcome into an exit status. Every `unsafe` block of it is in `sys`.
#![deny(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::ExitCode;
use std::time::Duration;

use lexopt::prelude::*;

mod input;
mod outputs;
mod relay;
mod shared_terminal;
mod signals;
mod sys;
mod terminal;

const USAGE: &str = "\
usage: hermetic run [OPTIONS] [--] PROGRAM [ARGS...]
       hermetic check
       hermetic enter PID [--] [PROGRAM [ARGS...]]
       hermetic --version

Rootless sandboxes (user, mount, network, PID, UTS and IPC namespaces) for
programs and tests. `hermetic COMMAND --help` for each command.";

const RUN_USAGE: &str = "\
usage: hermetic run [OPTIONS] [--] PROGRAM [ARGS...]

Runs PROGRAM in a fresh sandbox: its own user, mount, network, PID, UTS and
IPC namespaces, root inside mapped to you, in the current directory, with
stdio connected. Options take their value as `--opt VALUE` or `--opt=VALUE`;
the first argument that is not an option (or all after `--`) is PROGRAM and
its arguments, passed on untouched.

Options:
  --hostname NAME       the sandbox's hostname (default: sandbox)
  --bind SRC:DST        the host path SRC at DST inside, writable
  --bind-ro SRC:DST     the host path SRC at DST inside, read-only (DST is
                        absolute: a SRC may hold ':', as in a:b:/mnt)
  --tmpfs DIR           a fresh, private tmpfs on DIR, of --tmp-size
  --visible DIR         the host directory DIR seen inside where the
                        sandbox's own /tmp (or /var/tmp) would hide it, as
                        the working directory, the target dir, PROGRAM's
                        directory and the PATH's directories are (cow:
                        under a private layer; ro: read-only)
  --file SRC:DST        a read-only copy of the host file SRC at DST inside
                        (under /tmp or a --tmpfs, or over a host file; at
                        most 4 MiB in all, larger ones --bind-ro)
  --tmp-size SIZE       the size of the sandbox's /tmp (default 1G), which
                        also bounds the copy-on-write layers in memory and
                        each --tmpfs
  --shm-size SIZE       the size of the sandbox's /dev/shm (default 64M)
  --host MODE           how the host's files are seen:
                        cow (default): as they are, writable where you may
                          write them, every change in a private layer that
                          goes with the sandbox (nothing reaches the host);
                          the working directory's layer on disk, under
                          /var/tmp/hermetic-UID, so that directories made
                          there look as outside (HERMETIC_LAYER_IN_MEMORY=1:
                          in memory too); /tmp and /var/tmp fresh, showing
                          what the program needs there (its directory, the
                          working directory); read-only where the kernel
                          refuses it (said once)
                        ro: read-only, with a fresh /tmp (the working
                          directory, the target dir and PROGRAM's
                          directory bound back)
                        writable: writable, writes reach the host
  --writable-host       the same as --host=writable
  --env NAME=VALUE      set NAME in PROGRAM's environment, which is yours
                        otherwise (repeatable)
  --unsetenv NAME       remove NAME from PROGRAM's environment
  --clearenv            empty PROGRAM's environment (of what came before;
                        --env, --unsetenv and --clearenv apply in order)
  --chdir DIR           start PROGRAM in DIR inside (relative: to the
                        working directory), which must be there (default:
                        the working directory, or / where it is hidden)
  --user UID:GID        run PROGRAM as that user inside, without capabilities
  --allow-mounts        let root inside mount filesystems of its own on top
                        of the sandbox's (which stay locked), as tests of
                        mount code need; without it mount(2) gives EPERM
  --memory SIZE         memory limit of the sandbox (per process without
                        cgroups: see `hermetic check`)
  --pids N              process limit (processes and threads; the
                        sandbox's init process counts as one)
  --cpu-time DURATION   CPU time limit
  --timeout DURATION    kill PROGRAM (and the sandbox) after DURATION
                        (0: never, the default)
  --keep                if PROGRAM fails, keep its sandbox and say how to
                        look inside (as HERMETIC_KEEP=1 does)
  -h, --help            this text
SIZE: bytes, or with K, M, G (powers of 1024): 64M, 1G. DURATION: seconds,
or with ms, s, m, h, whole or decimal: 500ms, 0.5, 10s, 1.5m. A relative
SRC is taken from the working directory.

Signals: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH
sent to hermetic are passed on to PROGRAM; a terminal's Ctrl-C, Ctrl-\\, a
hang-up and a window resize reach it the same way. The sandbox ends with
PROGRAM, and with hermetic if it is killed. PROGRAM is started by the
sandbox's init process, its parent inside (pid 1), and found as a shell
inside would find it (the PATH of its environment). It gets fds 0, 1 and 2
only: an fd hermetic was given beyond them (`3<file`, a jobserver's pipes)
stays outside, where it would be a way out of the sandbox. Stdin, stdout
and stderr arrive as pipes of hermetic's (but a terminal, which gets a
pseudo-terminal of its own, and /dev/null, which is the sandbox's own),
so that PROGRAM cannot reopen what you gave it (through /proc/self/fd): a
file for writing, a pipe at its other end, a socket on your network.
Hermetic fills stdin from yours taking no more than PROGRAM reads (what
it does not read stays for the next reader: `while read l; do hermetic
run ...; done <list` goes on), and copies stdout and stderr into yours
(one pipe for both when they are one file, `>log 2>&1`); a directory, or
anything open only for reading, arrives as an empty pipe. What a kept
sandbox leaves running keeps none of yours (your `$(...)` ends with
hermetic).

The terminal is kept safe: PROGRAM runs in a session of the sandbox's,
so `kill 0` inside reaches only the sandbox, and a seccomp filter refuses
the ioctls that type into or read from a terminal (TIOCSTI, TIOCLINUX),
as well as keyctl, add_key and request_key. Given a terminal (as stdin,
stdout or stderr), PROGRAM gets a pseudo-terminal of its own instead,
made like yours (modes, size), which hermetic relays to yours: it leads a
session on it (a shell there has job control), and what it does to its
terminal (modes, interrupt character, size) stays there. Your terminal is
in raw mode meanwhile (in the foreground; in the background, `&`, it is
left to your shell), generating signals where it did and PROGRAM's
does: Ctrl-C interrupts your job as before and is typed into PROGRAM's
terminal (a raw-mode program reads it as a byte); Ctrl-Z stops hermetic
with your terminal put back, PROGRAM runs on. When PROGRAM ends, hermetic
relays the last of its output, then puts your terminal's modes and size
back; what is left running in a kept sandbox (HERMETIC_KEEP) holds a
terminal with no other side.

Environment:
  HERMETIC_KEEP=1       a failing PROGRAM's sandbox is kept (hermetic enter)
  HERMETIC_ONE_ID=1     map only your own id (as 0), even where /etc/subuid
                        ranges or root would give ids 0-65535 inside
  HERMETIC_TIMEOUT=SECS the timeout of runs in sandboxes that tests inside
                        make (passed on, as all of the environment); not
                        PROGRAM's (--timeout is): a value that is not a
                        number of seconds makes hermetic fail (125)

Exit status:
  PROGRAM's own, or 128+N if a signal N killed it
  2    the command line is wrong (an option's value no sandbox can be
       made with, such as an empty --hostname, too)
  124  --timeout expired; PROGRAM was killed
  125  hermetic failed: the sandbox could not be made, or waiting failed
  126  PROGRAM was found but could not be started
  127  PROGRAM was not found inside the sandbox";

const CHECK_USAGE: &str = "\
usage: hermetic check

Probes what this host allows (each namespace kind, id mappings, mounts,
veth and bridges, limits per sandbox or per process) and prints each
finding, with the command that fixes what does not work.

Exit status: 0 if sandboxes work here, 1 if not, 2 if the command line is
wrong.";

const ENTER_USAGE: &str = "\
usage: hermetic enter PID [--] [PROGRAM [ARGS...]]

Runs PROGRAM (default: $SHELL, else /bin/sh) inside the kept sandbox whose
init process (or keeper) is PID, as the message of a kept sandbox names it
(HERMETIC_KEEP=1, --keep, or Sandbox::keep), or inside a live sandbox of
yours (a `hermetic run` still running: its init process is the
`hermetic-init` child of that `hermetic`), as a program of the sandbox's (given
the keeper, in the init process's namespaces all the same). Signals are
passed on as by `run`, and given a terminal, PROGRAM gets one of its own
as under `run`: what is left running in the sandbox cannot read what you
type once you have left. As under `run`, PROGRAM gets fds 0 to 2 only,
pipes of hermetic's that it relays: what is left running in the sandbox
keeps none of yours. It runs as the sandbox's user (`run --user`), and
only a sandbox of your own can be entered.

Exit status: PROGRAM's own, or 128+N if a signal N killed it; 2 if the
command line is wrong; 125 if the sandbox could not be entered; 126 or 127
if PROGRAM could not be started or was not found.";

/// Exit statuses of hermetic's own (the rest are the program's).
const USAGE_ERROR: u8 = 2;
const TIMED_OUT: u8 = 124;
const FAILED: u8 = 125;
const CANNOT_EXECUTE: u8 = 126;
const NOT_FOUND: u8 = 127;

fn main() -> ExitCode {
    let mut parser = lexopt::Parser::from_env();
    // The command whose usage a wrong command line is told with.
    let mut usage = USAGE;
    let outcome = match parser.next() {
        Ok(Some(Value(command))) => match command.to_str() {
            Some("run") => {
                usage = RUN_USAGE;
                run(parser)
            }
            Some("check") => {
                usage = CHECK_USAGE;
                check(parser)
            }
            Some("enter") => {
                usage = ENTER_USAGE;
                enter(parser)
            }
            Some("help") => help(parser),
            _ => Err(Usage(format!(
                "unknown command {:?}: run, check or enter",
                command.to_string_lossy()
            ))),
        },
        Ok(Some(Short('h') | Long("help"))) => Ok(say(USAGE)),
        Ok(Some(Short('V') | Long("version"))) => {
            Ok(say(concat!("hermetic ", env!("CARGO_PKG_VERSION"))))
        }
        Ok(Some(other)) => Err(Usage(other.unexpected().to_string())),
        Ok(None) => Err(Usage("no command given".into())),
        Err(e) => Err(Usage(e.to_string())),
    };
    match outcome {
        Ok(code) => code,
        Err(Usage(what)) => {
            // The usage lines of the command, not all of its help.
            let lines: String = usage
                .lines()
                .take_while(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("hermetic: {what}\n\n{lines}\n(--help for more)");
            ExitCode::from(USAGE_ERROR)
        }
    }
}

/// The host's directories every program shares, each the sandbox's own
/// inside.
const SHARED_DIRS: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];

/// A wrong command line, said in words.
struct Usage(String);

impl From<lexopt::Error> for Usage {
    fn from(e: lexopt::Error) -> Usage {
        Usage(e.to_string())
    }
}

fn say(text: &str) -> ExitCode {
    print_out(text);
    ExitCode::SUCCESS
}

/// Prints `text` and a newline on stdout. A reader that has gone (`|
/// head`, a pager quit early) ends the output quietly, as it does other
/// command-line tools' (`println!` would panic).
fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

fn help(mut parser: lexopt::Parser) -> Result<ExitCode, Usage> {
    let text = match parser.next()? {
        None => USAGE,
        Some(Value(c)) if c == "run" => RUN_USAGE,
        Some(Value(c)) if c == "check" => CHECK_USAGE,
        Some(Value(c)) if c == "enter" => ENTER_USAGE,
        Some(other) => return Err(other.unexpected().into()),
    };
    Ok(say(text))
}

/// What `hermetic run` was asked for.
#[derive(Debug, Default)]
struct RunArgs {
    builder: hermetic::SandboxBuilder,
    /// How the host is seen (default: copy-on-write).
    host: hermetic::HostMode,
    /// The user's mounts' targets, and the option that made each (to say
    /// what hides a program that cannot be started).
    mounts: Vec<(String, String)>,
    /// PROGRAM's whole environment: this process's, changed by `--env`,
    /// `--unsetenv` and `--clearenv` in their order.
    env: Vec<(OsString, OsString)>,
    /// `--env` set PWD.
    pwd_given: bool,
    /// `--chdir`: the working directory inside, which must be there.
    chdir: Option<std::path::PathBuf>,
    /// The PATH the program gets (see [`program_path`]), where it is
    /// looked for.
    path: Option<OsString>,
    timeout: Option<Duration>,
    program: OsString,
    args: Vec<OsString>,
}

fn parse_run(mut parser: lexopt::Parser) -> Result<Option<RunArgs>, Usage> {
    let mut run = RunArgs {
        host: hermetic::HostMode::CopyOnWrite,
        ..RunArgs::default()
    };
    run.env = std::env::vars_os().collect();
    let b = &mut run.builder;
    let program = loop {
        let Some(arg) = parser.next()? else {
            return Err(Usage("run: no program (put it after --)".into()));
        };
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("hostname") => {
                b.hostname(text(&mut parser, "--hostname")?);
            }
            Long("bind") => {
                let (src, dst) = pair(&mut parser, "--bind")?;
                let src = from_here(src);
                b.bind(&src, &dst);
                let option = format!("--bind {src}:{dst}");
                run.mounts.push((dst, option));
            }
            Long("bind-ro") => {
                let (src, dst) = pair(&mut parser, "--bind-ro")?;
                let src = from_here(src);
                b.bind_ro(&src, &dst);
                let option = format!("--bind-ro {src}:{dst}");
                run.mounts.push((dst, option));
            }
            Long("visible") => {
                let dir = std::path::PathBuf::from(parser.value()?);
                if !dir.is_absolute() {
                    return Err(Usage(format!(
                        "--visible takes an absolute path, not {:?}",
                        dir.display()
                    )));
                }
                b.visible(dir);
            }
            Long("tmpfs") => {
                let dir = parser.value()?;
                b.tmpfs(&dir);
                let dir = dir.to_string_lossy().into_owned();
                run.mounts.push((dir.clone(), format!("--tmpfs {dir}")));
            }
            Long("host") => {
                run.host = text(&mut parser, "--host")?
                    .parse()
                    .map_err(|e| Usage(format!("--host: {e}")))?;
            }
            Long("file") => {
                let (src, dst) = pair(&mut parser, "--file")?;
                b.file(dst, read_file_option(&src)?);
            }
            Long("tmp-size") => {
                b.tmp_size(size(&text(&mut parser, "--tmp-size")?)?);
            }
            Long("shm-size") => {
                b.shm_size(size(&text(&mut parser, "--shm-size")?)?);
            }
            Long("allow-mounts") => {
                b.allow_mounts(true);
            }
            Long("writable-host") => {
                run.host = hermetic::HostMode::Writable;
            }
            Long("env") => {
                let value = parser.value()?;
                let bytes = value.as_encoded_bytes();
                let Some(eq) = bytes.iter().position(|&c| c == b'=').filter(|&at| at > 0) else {
                    return Err(Usage(format!(
                        "--env takes NAME=VALUE, not {:?}",
                        value.to_string_lossy()
                    )));
                };
                use std::os::unix::ffi::OsStrExt;
                let name = std::ffi::OsStr::from_bytes(&bytes[..eq]).to_owned();
                run.pwd_given |= name == "PWD";
                run.env.retain(|(n, _)| *n != name);
                run.env.push((
                    name,
                    std::ffi::OsStr::from_bytes(&bytes[eq + 1..]).to_owned(),
                ));
            }
            Long("unsetenv") => {
                let name = parser.value()?;
                if name.is_empty() || name.as_encoded_bytes().contains(&b'=') {
                    return Err(Usage(format!(
                        "--unsetenv takes a NAME, not {:?}",
                        name.to_string_lossy()
                    )));
                }
                run.env.retain(|(n, _)| *n != name);
            }
            Long("clearenv") => run.env.clear(),
            Long("chdir") => {
                let dir = std::path::PathBuf::from(parser.value()?);
                if dir.as_os_str().is_empty() {
                    return Err(Usage("--chdir takes a directory".into()));
                }
                // Relative: to the working directory, which is the same
                // inside.
                run.chdir = Some(
                    std::env::current_dir()
                        .map(|cwd| cwd.join(&dir))
                        .unwrap_or(dir),
                );
            }
            Long("user") => {
                let value = text(&mut parser, "--user")?;
                let ids = value
                    .split_once(':')
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
                let Some((uid, gid)) = ids else {
                    return Err(Usage(format!("--user takes UID:GID, not {value:?}")));
                };
                b.user(uid, gid);
            }
            // A value no sandbox can have (0) is the builder's to refuse:
            // its error names the option (`flag_of`).
            Long("memory") => {
                b.memory_limit(size(&text(&mut parser, "--memory")?)?);
            }
            Long("pids") => {
                let value = text(&mut parser, "--pids")?;
                let n = value
                    .parse()
                    .map_err(|_| Usage(format!("--pids takes a number, not {value:?}")))?;
                b.pids_limit(n);
            }
            Long("cpu-time") => {
                b.cpu_time_limit(duration(&text(&mut parser, "--cpu-time")?)?);
            }
            Long("keep") => {
                b.__keep_failed(true);
            }
            Long("timeout") => {
                // 0: none, as HERMETIC_TIMEOUT=0 says for runs.
                run.timeout =
                    Some(duration(&text(&mut parser, "--timeout")?)?).filter(|t| !t.is_zero());
            }
            Value(program) => break program,
            other => return Err(Usage(format!("run: {}", other.unexpected()))),
        }
    };
    run.path = program_path(&run.env);
    // A working directory reached through a symbolic link in /tmp,
    // /var/tmp or /dev/shm: the link is not in the sandbox's own, so the
    // caller's logical $PWD would name nothing inside; the program gets
    // the directory's own path (unless --env sets PWD).
    if let (Some(pwd), Ok(cwd)) = (std::env::var_os("PWD"), std::env::current_dir()) {
        let pwd = std::path::PathBuf::from(pwd);
        let linked = pwd != cwd
            && SHARED_DIRS
                .iter()
                .any(|d| pwd.starts_with(d) && pwd != std::path::Path::new(d))
            && std::fs::canonicalize(&pwd).is_ok_and(|p| p == cwd);
        if linked && !run.pwd_given {
            run.env.retain(|(name, _)| name != "PWD");
            run.env.push(("PWD".into(), cwd.into_os_string()));
        }
    }
    // The program's directory, should /tmp be the sandbox's own (the
    // read-only host, or copy-on-write refused by the kernel); and, for a
    // program started by a symbolic link (a tool linked into a bin
    // directory of its own), its target's too.
    let found = host_path(&program, run.path.as_deref());
    // The program is the test: its target dir, if cargo built it, is the
    // test's, not the one this binary was built in (which stays the
    // test's for a program that no cargo built: a shell running what lies
    // there).
    run.builder
        .__test_executable(found.as_ref().and_then(|p| std::fs::canonicalize(p).ok()));
    if let Some(path) = found {
        let link_dir = path.parent().and_then(|d| std::fs::canonicalize(d).ok());
        let target_dir = std::fs::canonicalize(&path)
            .ok()
            .and_then(|p| p.parent().map(std::path::Path::to_path_buf));
        for dir in link_dir.into_iter().chain(target_dir) {
            run.builder.visible(dir);
        }
    }
    // The directories of the PATH under /tmp or /var/tmp (tools a CI job
    // installed there): what the program runs by name is found inside as
    // outside, as a shell there would look for it.
    for dir in run
        .path
        .as_deref()
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        // Below them, not themselves: the host's /tmp as a whole (its
        // sockets: an ssh agent's, X's) stays out of sight.
        let hidden = ["/tmp", "/var/tmp"]
            .iter()
            .any(|t| dir.starts_with(t) && dir != std::path::Path::new(t));
        if hidden
            && dir.is_absolute()
            && let Ok(dir) = std::fs::canonicalize(&dir)
            && dir.is_dir()
        {
            run.builder.visible(dir);
        }
    }
    run.program = program;
    run.args = parser.raw_args()?.collect();
    run.builder.host(run.host);
    Ok(Some(run))
}

/// An option's value, as text.
fn text(parser: &mut lexopt::Parser, option: &str) -> Result<String, Usage> {
    parser
        .value()?
        .into_string()
        .map_err(|v| Usage(format!("{option}: {:?} is not text", v.to_string_lossy())))
}

/// The PATH the program gets (none after `--clearenv` or `--unsetenv
/// PATH`, unless `--env` sets one).
fn program_path(env: &[(std::ffi::OsString, std::ffi::OsString)]) -> Option<std::ffi::OsString> {
    env.iter()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| value.clone())
}

/// The contents of `--file`'s SRC: a regular file (a FIFO would block the
/// read, a device such as /dev/zero never end it), of at most the 4 MiB
/// the library takes for all files, read no further than that.
fn read_file_option(src: &str) -> Result<Vec<u8>, Usage> {
    use std::io::Read;
    const AT_MOST: u64 = 4 << 20;
    let cannot = |e: std::io::Error| Usage(format!("--file: cannot read {src:?}: {e}"));
    let meta = std::fs::metadata(src).map_err(cannot)?;
    if !meta.is_file() {
        return Err(Usage(format!(
            "--file: {src:?} is not a regular file (--file copies one; bind a FIFO, device \
             or directory in with --bind-ro)"
        )));
    }
    let too_big = || {
        Usage(format!(
            "--file: {src:?} is over the 4 MiB the files placed inside hold in all; bind it \
             in with --bind-ro"
        ))
    };
    if meta.len() > AT_MOST {
        return Err(too_big());
    }
    let mut contents = Vec::new();
    std::fs::File::open(src)
        .map_err(cannot)?
        .take(AT_MOST + 1)
        .read_to_end(&mut contents)
        .map_err(cannot)?;
    if contents.len() as u64 > AT_MOST {
        return Err(too_big());
    }
    Ok(contents)
}

/// `SRC:DST` of a bind option. DST is absolute: the value splits at the
/// last `:` followed by `/`, so that a SRC may hold a `:` (`a:b:/mnt`).
fn pair(parser: &mut lexopt::Parser, option: &str) -> Result<(String, String), Usage> {
    let value = text(parser, option)?;
    value
        .rfind(":/")
        .map(|at| (&value[..at], &value[at + 1..]))
        .or_else(|| value.split_once(':'))
        .filter(|(s, d)| !s.is_empty() && !d.is_empty())
        .map(|(s, d)| (s.to_owned(), d.to_owned()))
        .ok_or_else(|| Usage(format!("{option} takes SRC:DST, not {value:?}")))
}

/// A size: bytes, or a number with K, M, G or T (powers of 1024, with or
/// without "iB" or "B").
fn size(value: &str) -> Result<u64, Usage> {
    let bad = || Usage(format!("{value:?} is not a size (bytes, or 64M, 1G...)"));
    let v = value.trim();
    let v = v
        .strip_suffix("iB")
        .or_else(|| v.strip_suffix('B'))
        .unwrap_or(v);
    let (digits, shift) = match v.char_indices().last() {
        Some((at, 'K' | 'k')) => (&v[..at], 10),
        Some((at, 'M' | 'm')) => (&v[..at], 20),
        Some((at, 'G' | 'g')) => (&v[..at], 30),
        Some((at, 'T' | 't')) => (&v[..at], 40),
        _ => (v, 0),
    };
    let n: u64 = digits.trim().parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// [`size`], more than 0 (`what` says why).
/// The option of `hermetic run` that sets what the builder's method
/// `option` does (`memory_limit`: `--memory`); an environment variable
/// (`HERMETIC_TIMEOUT`) as it is.
fn flag_of(option: &str) -> String {
    match option {
        "memory_limit" => "--memory".into(),
        "pids_limit" => "--pids".into(),
        "cpu_time_limit" => "--cpu-time".into(),
        _ if option.starts_with(|c: char| c.is_ascii_uppercase()) => option.into(),
        _ => format!("--{}", option.replace('_', "-")),
    }
}

/// A duration: seconds, or a number with ms, s, m or h.
/// A host path as given, relative ones taken from the working directory
/// (as `--file` reads its source): a bind's source. Its target is a path
/// inside, which must be absolute.
fn from_here(src: String) -> String {
    match std::path::absolute(&src) {
        Ok(path) if !std::path::Path::new(&src).is_absolute() => path.display().to_string(),
        _ => src,
    }
}

fn duration(value: &str) -> Result<Duration, Usage> {
    let bad = || {
        Usage(format!(
            "{value:?} is not a duration (seconds, or 500ms, 0.5, 10s, 2m, 1h)"
        ))
    };
    let v = value.trim();
    let (digits, unit) = if let Some(d) = v.strip_suffix("ms") {
        (d, Duration::from_millis(1))
    } else if let Some(d) = v.strip_suffix('s') {
        (d, Duration::from_secs(1))
    } else if let Some(d) = v.strip_suffix('m') {
        (d, Duration::from_secs(60))
    } else if let Some(d) = v.strip_suffix('h') {
        (d, Duration::from_secs(3600))
    } else {
        (v, Duration::from_secs(1))
    };
    // Whole numbers, or decimal ones (`0.5`, `1.5s`), as coreutils'
    // `timeout` takes them (and HERMETIC_TIMEOUT, read the same way).
    let n = hermetic::__decimal(digits).ok_or_else(bad)?;
    Duration::try_from_secs_f64(unit.as_secs_f64() * n).map_err(|_| bad())
}

fn run(parser: lexopt::Parser) -> Result<ExitCode, Usage> {
    // From the first moment: a signal that comes while hermetic starts is
    // passed on once the program runs, not the end of hermetic.
    signals::catch();
    let Some(mut run) = parse_run(parser)? else {
        return Ok(say(RUN_USAGE));
    };
    let (input, outputs) = match hand_on_stdio() {
        Ok(stdio) => stdio,
        Err(code) => return Ok(code),
    };
    // The sandbox's init process starts the program itself: one process,
    // with no relay that anything inside could kill, and fds 0 to 2 only.
    // The program starts in the working directory, found inside by its
    // path: one removed meanwhile (a build step's scratch dir) has none.
    if let Err(e) = std::env::current_dir() {
        eprintln!(
            "hermetic: the working directory cannot be read ({e}): removed, or not searchable; \
             cd to one that exists and run again"
        );
        return Ok(ExitCode::from(FAILED));
    }
    let program = match direct_program(&run) {
        Ok(program) => program,
        Err((code, why)) => {
            eprintln!(
                "hermetic: cannot start {}: {why}",
                run.program.to_string_lossy()
            );
            return Ok(ExitCode::from(code));
        }
    };
    let mut terminal = terminal::Saved::now();
    // Given a terminal, the program gets one of its own, relayed to it.
    let mut relay = start_relay(&run.program);
    if relay.is_some() {
        terminal.left_to_the_relay();
    }
    if let Some(relay) = &relay {
        run.builder.__program_terminal(relay.stdio());
        // Its name, as bubblewrap gives it: the sandbox's /dev/pts is a
        // devpts of its own, where the terminal made here is not, so
        // ttyname(3) (`tty`, `ps`) finds it as /dev/console.
        if let Some(path) = relay
            .terminal_path()
            .filter(|_| std::path::Path::new("/dev/console").exists())
        {
            run.builder.bind(path, "/dev/console");
        }
    }
    run.builder.__program(program);
    let sandbox = match run.builder.build() {
        Ok(s) => s,
        // A value no sandbox can be made with (an empty hostname, a
        // relative mount point, a bind of nothing, a user beyond the ids,
        // a limit of 0) is a wrong command line.
        // (But a variable of the environment, `HERMETIC_TIMEOUT`: no
        // command line of the caller's.)
        Err(hermetic::Error::InvalidOption { option, reason, .. })
            if !option.starts_with(|c: char| c.is_ascii_uppercase()) =>
        {
            return Err(Usage(format!("{}: {reason}", flag_of(option))));
        }
        Err(e) => {
            eprintln!("hermetic: cannot create a sandbox: {e}");
            return Ok(ExitCode::from(FAILED));
        }
    };
    if let Some(relay) = &mut relay {
        relay.handed_over();
    }
    let why = |program: &std::ffi::OsStr| {
        why_hidden(
            program,
            run.path.as_deref(),
            run.host.granted(),
            &run.mounts,
        )
    };
    // What hermetic says about the end, said once the caller's terminal
    // is as it was (the relay has it in raw mode until then).
    let (code, mut said) = wait_for_program(
        &sandbox,
        &run.program,
        run.timeout,
        run.chdir.as_deref(),
        &why,
    );
    let mut kept = false;
    if code != 0
        && let Some(keeping) = sandbox.__keep_if_asked("HERMETIC_KEEP is set: the sandbox")
    {
        let message = match keeping {
            Ok(message) => {
                kept = true;
                message
            }
            Err(e) => format!("hermetic: could not keep the sandbox: {e}"),
        };
        said = Some(said.map_or(message.clone(), |s| format!("{s}\n{message}")));
    }
    // Every process inside has ended (unless the sandbox is kept) before
    // the terminal is put back: one the program left behind could
    // otherwise change it again after. The relay has relayed the last of
    // the program's output by then.
    drop(sandbox);
    if let Some(relay) = relay {
        relay.finish(kept);
    }
    // What the program did not read of its stdin is the caller's again.
    drop(input);
    outputs.finish();
    drop(terminal);
    if let Some(said) = said {
        eprintln!("{said}");
    }
    Ok(ExitCode::from(code))
}

/// The program as the sandbox's init process starts it: as given (looked
/// for inside, as `execvp` does, in the `PATH` of its environment), its
/// arguments, this process's environment with the `--env` ones, the
/// working directory. `Err`: the exit status and why it cannot be (an
/// empty name; a command line over the init process's 6 MiB, which the
/// kernel would not have started hermetic with either).
fn direct_program(run: &RunArgs) -> Result<hermetic::__Program, (u8, String)> {
    let args: Vec<&std::ffi::OsStr> = run.args.iter().map(OsString::as_os_str).collect();
    let mut program = hermetic::__Program::with_environment(&run.program, &args, &run.env)
        .map_err(|why| {
            let code = if run.program.is_empty() {
                NOT_FOUND
            } else {
                CANNOT_EXECUTE
            };
            (code, why)
        })?;
    program.fits().map_err(|why| {
        (
            CANNOT_EXECUTE,
            format!("{why}; pass large inputs in a file or on stdin"),
        )
    })?;
    if let Some(dir) = &run.chdir {
        use std::os::unix::ffi::OsStrExt;
        program.cwd = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
            (
                CANNOT_EXECUTE,
                format!("a NUL byte in --chdir {}", dir.display()),
            )
        })?;
        program.strict_cwd = true;
    }
    Ok(program)
}

/// Waits for the program the sandbox's init process started, passing
/// signals on; its exit code as a shell gives it, and what hermetic has to
/// say about its end (said once the caller's terminal is put back).
fn wait_for_program(
    sandbox: &hermetic::Sandbox,
    program: &std::ffi::OsStr,
    timeout: Option<Duration>,
    chdir: Option<&std::path::Path>,
    why: &dyn Fn(&std::ffi::OsStr) -> String,
) -> (u8, Option<String>) {
    let name = program.to_string_lossy();
    signals::pass_to_program(sandbox.__program_signals());
    match sandbox.__program_end(timeout) {
        Ok(Some(hermetic::__ProgramEnd::Exited(code))) => (code.clamp(0, 255) as u8, None),
        Ok(Some(hermetic::__ProgramEnd::Signaled(sig))) => {
            // Killed by the kernel for the sandbox's memory or CPU time
            // limit: said, or a bare 137 or 152 would leave the caller
            // guessing.
            let said = sandbox.__limit_killed(sig).map(|limit| match sig {
                libc::SIGXCPU => {
                    format!("hermetic: {name} was killed by the sandbox's {limit} (--cpu-time)")
                }
                libc::SIGKILL => {
                    format!("hermetic: {name} was killed by the sandbox's {limit} (--memory)")
                }
                _ => format!(
                    "hermetic: {name} died of {}, most likely for the sandbox's {limit} \
                     (--memory)",
                    if sig == libc::SIGABRT {
                        "SIGABRT"
                    } else {
                        "SIGSEGV"
                    }
                ),
            });
            ((128 + sig).clamp(0, 255) as u8, said)
        }
        Ok(Some(hermetic::__ProgramEnd::NotStarted(e))) => {
            let not_found = e.kind() == std::io::ErrorKind::NotFound;
            let cwd_refused = [libc::ENOENT, libc::ENOTDIR, libc::EACCES]
                .map(Some)
                .contains(&e.raw_os_error());
            let why = if let (Some(dir), true) = (chdir, cwd_refused) {
                // Most likely the directory: the program was found to
                // start (or it would say so without --chdir).
                format!(
                    "\n  in {} (--chdir), which must be a directory there inside (a --tmpfs or \
                     --bind makes one), open to its user; or {name} is not found inside",
                    dir.display()
                )
            } else if not_found {
                why(program)
            } else if e.raw_os_error() == Some(libc::EAGAIN) {
                "\n  no room for another process: a process limit (--pids, which counts the \
                 sandbox's init process too, or the host's)"
                    .into()
            } else {
                String::new()
            };
            // As a shell says it: not found, or not executable.
            (
                if not_found { NOT_FOUND } else { CANNOT_EXECUTE },
                Some(format!("hermetic: cannot start {name}: {e}{why}")),
            )
        }
        // Killed now: dropping the sandbox would kill it, but with
        // HERMETIC_KEEP the sandbox is kept (the init process reads the
        // kill before the keep).
        Ok(None) => {
            hermetic::Sandbox::__signal_program(sandbox.__program_signals(), libc::SIGKILL);
            // Gone before hermetic says so (the init process reports its
            // end once it has reaped it).
            let _ = sandbox.__program_end(Some(Duration::from_secs(5)));
            (
                TIMED_OUT,
                Some(format!(
                    "hermetic: {name} did not end within {:?} (--timeout): it was killed",
                    timeout.unwrap_or_default()
                )),
            )
        }
        // A limit too small for the sandbox itself (its init process was
        // killed for it), told as the option given.
        Err(hermetic::Error::InvalidOption { option, reason, .. }) => (
            FAILED,
            Some(format!("hermetic: {}: {reason}", flag_of(option))),
        ),
        Err(e) => (FAILED, Some(format!("hermetic: waiting for {name}: {e}"))),
    }
}

/// Where `program` is on the host: as given if it has a `/`, else found
/// in `PATH`, as the kernel and a shell look for it.
fn host_path(
    program: &std::ffi::OsStr,
    path_var: Option<&std::ffi::OsStr>,
) -> Option<std::path::PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    let path = if program.as_encoded_bytes().contains(&b'/') {
        Some(cwd.join(program))
    } else {
        path_var.and_then(|paths| {
            std::env::split_paths(paths)
                .map(|dir| cwd.join(dir).join(program))
                .find(|p| p.is_file())
        })
    };
    path.filter(|p| p.exists())
}

/// The interpreter a script names on its `#!` line, if `path` is one.
fn interpreter_of(path: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let word = line
        .split(|b| b.is_ascii_whitespace())
        .find(|w| !w.is_empty())?;
    use std::os::unix::ffi::OsStrExt;
    Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(word)))
}

/// Why a program that exists on the host is not found inside, and what
/// to do: the path looked for, what covers it, the fix. Empty when it does
/// not exist on the host either.
fn why_hidden(
    program: &std::ffi::OsStr,
    path_var: Option<&std::ffi::OsStr>,
    mode: hermetic::HostMode,
    mounts: &[(String, String)],
) -> String {
    use std::path::Path;
    let Some(mut path) = host_path(program, path_var) else {
        return String::new();
    };
    // Lying directly in /tmp, /var/tmp or /dev/shm, which the read-only
    // host never shows (copy-on-write shows it, under a layer).
    if let Some(dir) = path
        .parent()
        .filter(|d| SHARED_DIRS.iter().any(|shared| *d == Path::new(shared)))
    {
        let refused = hermetic::HostMode::CopyOnWrite.granted() != hermetic::HostMode::CopyOnWrite;
        let why = match mode {
            // Copy-on-write shows that whole directory under a layer: here
            // the kernel refused it (a sandbox inside a sandbox: no overlay
            // over an overlay), and read-only shows none of it.
            hermetic::HostMode::CopyOnWrite | hermetic::HostMode::ReadOnly if refused => {
                "the copy-on-write host, which would show it, is refused here (a sandbox \
                 inside a sandbox: the kernel mounts no overlay over an overlay), and the \
                 read-only host shows none of the host's"
                    .to_owned()
            }
            _ => format!("the {mode} mode shows none of the host's; --host=cow would"),
        };
        return format!(
            "\n  {} exists on the host, but lies directly in {}, which the sandbox has of its \
             own ({why}); move it into a directory of its own (mktemp -d), which is shown",
            path.display(),
            dir.display()
        );
    }
    let covering_of = |p: &Path| {
        mounts
            .iter()
            .filter(|(target, _)| p.starts_with(target))
            .max_by_key(|(target, _)| Path::new(target).components().count())
            .cloned()
    };
    let under_own = |p: &Path| ["/tmp", "/dev/shm"].iter().any(|t| p.starts_with(t));
    // A script the kernel could not start: where the script itself is
    // shown inside (no mount of the user's covers it, and the sandbox's
    // own /tmp shows it), its interpreter is what was not found.
    let mut script = None;
    let script_shown = covering_of(&path).is_none()
        && !(under_own(&path) && mode != hermetic::HostMode::CopyOnWrite);
    if let Some(interpreter) = interpreter_of(&path)
        .filter(|i| i.is_absolute() && i.exists())
        .filter(|_| script_shown)
    {
        script = Some(path);
        path = interpreter;
    }
    let shown = match &script {
        Some(script) => format!(
            "{}, the interpreter of the script {},",
            path.display(),
            script.display()
        ),
        None => path.display().to_string(),
    };
    if let Some((_, option)) = covering_of(&path) {
        return format!(
            "\n  {shown} exists on the host, but inside it lies under the mount of `{option}`, \
             which hides the host's files there; start the program from a path that mount \
             does not cover, or bind its directory in at a place of its own"
        );
    }
    let own = ["/tmp", "/dev/shm"]
        .into_iter()
        .find(|t| path.starts_with(t));
    // The sandbox's own /tmp hides what the copy-on-write host does not
    // show there (the program's directory, not its interpreter's).
    match (own, mode) {
        (Some(own), hermetic::HostMode::CopyOnWrite) => format!(
            "\n  {shown} exists on the host, but inside it lies under the sandbox's own {own}, \
             which shows only what the test needs there; show its directory with --visible DIR"
        ),
        (Some(own), mode) => format!(
            "\n  {shown} exists on the host, but inside it lies under the sandbox's own {own} \
             (a fresh tmpfs: the host is seen in the {mode} mode{}), which hides the host's; \
             use --host=cow, which shows the program's directory there under a private \
             layer, or \
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

fn check(mut parser: lexopt::Parser) -> Result<ExitCode, Usage> {
    if let Some(arg) = parser.next()? {
        return match arg {
            Short('h') | Long("help") => Ok(say(CHECK_USAGE)),
            other => Err(Usage(format!("check: {}", other.unexpected()))),
        };
    }
    let report = hermetic::check();
    print_out(&report.to_string());
    Ok(if report.sandboxes_work() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn enter(mut parser: lexopt::Parser) -> Result<ExitCode, Usage> {
    let pid = match parser.next()? {
        Some(Short('h') | Long("help")) => return Ok(say(ENTER_USAGE)),
        Some(Value(pid)) => pid,
        Some(other) => return Err(Usage(format!("enter: {}", other.unexpected()))),
        None => {
            return Err(Usage(
                "enter takes the PID a kept sandbox's message names".into(),
            ));
        }
    };
    let Some(pid) = pid.to_str().and_then(|p| p.parse::<u32>().ok()) else {
        return Err(Usage(format!(
            "enter: {:?} is not a PID",
            pid.to_string_lossy()
        )));
    };
    let mut rest = parser.raw_args()?.skip_while(|a| a == "--");
    let shell = std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into());
    let program = rest.next().unwrap_or(shell);
    let args: Vec<OsString> = rest.collect();
    // As `hermetic run`'s program: fds 0 to 2 only (an fd of a host file
    // is a way out of the sandbox, which what the kept sandbox left
    // running would take through /proc/PID/fd), a file on stdin through a
    // pipe, stdout and stderr relayed (what is left running would keep
    // the caller's).
    // hermetic's own fds are close-on-exec already; none is closed.
    if let Err(e) = sys::cloexec_from_3() {
        eprintln!("hermetic: cannot keep the fds beyond 2 from the program: {e}");
        return Ok(ExitCode::from(FAILED));
    }
    let (input, outputs) = match hand_on_stdio() {
        Ok(stdio) => stdio,
        Err(code) => return Ok(code),
    };
    // The caller's terminal, if the program is given one, is as it was
    // when the program ends, whatever the program did to it.
    let mut terminal = terminal::Saved::now();
    // Given a terminal, the program gets one of its own, relayed to it:
    // what is left running in the kept sandbox cannot reach the caller's.
    let mut relay = start_relay(&program);
    if relay.is_some() {
        terminal.left_to_the_relay();
    }
    let made = if relay.is_some() {
        hermetic::__kept_command_on_terminal(pid, &program)
    } else {
        hermetic::kept_command(pid, &program)
    };
    let mut cmd = match made {
        Ok(cmd) => cmd,
        // Which PID is wrong, and why: no option was given.
        Err(hermetic::Error::InvalidOption { reason, .. }) => {
            eprintln!("hermetic: cannot enter the sandbox of {pid}: {reason}");
            return Ok(ExitCode::from(FAILED));
        }
        Err(e) => {
            eprintln!("hermetic: cannot enter the sandbox of {pid}: {e}");
            return Ok(ExitCode::from(FAILED));
        }
    };
    cmd.args(&args);
    if let Some(relay) = &relay {
        match relay.stdio_for_command() {
            Ok([stdin, stdout, stderr]) => {
                stdin.map(|fd| cmd.stdin(fd));
                stdout.map(|fd| cmd.stdout(fd));
                stderr.map(|fd| cmd.stderr(fd));
            }
            Err(e) => {
                eprintln!("hermetic: cannot give the program its terminal: {e}");
                return Ok(ExitCode::from(FAILED));
            }
        }
    }
    let (code, said) = start_and_wait(cmd, &program, relay.as_mut());
    // The sandbox lives on, and what runs in it may hold the program's
    // terminal: what is there now is relayed, and the terminal is gone
    // with this process.
    if let Some(relay) = relay {
        relay.finish(true);
    }
    drop(input);
    outputs.finish();
    drop(terminal);
    if let Some(said) = said {
        eprintln!("{said}");
    }
    Ok(ExitCode::from(code))
}

/// Makes fds 0 to 2 fit to hand to the program (`input`, `outputs`). The
/// exit status to end with, the failure said, if that cannot be done.
fn hand_on_stdio() -> Result<(input::Input, outputs::Outputs), ExitCode> {
    let input = input::Input::hand_on().map_err(|e| {
        eprintln!("hermetic: cannot pass on stdin: {e}");
        ExitCode::from(FAILED)
    })?;
    let outputs = outputs::Outputs::hand_on().map_err(|e| {
        eprintln!("hermetic: cannot pass on stdout and stderr: {e}");
        ExitCode::from(FAILED)
    })?;
    Ok((input, outputs))
}

/// The program's terminal relay, if this process is given a terminal (a
/// pseudo-terminal that cannot be made is said, and the program given the
/// caller's terminal).
fn start_relay(program: &std::ffi::OsStr) -> Option<relay::Relay> {
    relay::Relay::start().unwrap_or_else(|e| {
        eprintln!(
            "hermetic: no terminal of its own for {} ({e}): it is given yours, whose modes it \
             may change",
            program.to_string_lossy()
        );
        None
    })
}

/// Starts `cmd`, passes signals on to it, waits for it, and says what its
/// end means as an exit status, and what hermetic has to say about it.
/// Its terminal, if `relay` made it one, is handed over once it has
/// started.
fn start_and_wait(
    mut cmd: std::process::Command,
    program: &std::ffi::OsStr,
    relay: Option<&mut relay::Relay>,
) -> (u8, Option<String>) {
    let name = program.to_string_lossy();
    // From now on: signals sent before the program runs are passed on
    // once it does.
    signals::catch();
    // The relay in a process group of its own: what the terminal (or a
    // kill of this process's group) sends reaches the program once,
    // through this process.
    let spawned = cmd.process_group(0).spawn();
    // Its copies of the program's terminal go, so that the terminal's end
    // is seen once nothing inside holds it.
    drop(cmd);
    let mut child = match spawned {
        Ok(child) => child,
        // The sandbox ended between the look at it and the join.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            return (
                FAILED,
                Some(format!(
                    "hermetic: cannot enter the sandbox to start {name}: it has ended (its \
                     init process is gone, and everything inside with it)"
                )),
            );
        }
        Err(e) => {
            // As a shell says it: not found, or not executable.
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                NOT_FOUND
            } else {
                CANNOT_EXECUTE
            };
            return (code, Some(format!("hermetic: cannot start {name}: {e}")));
        }
    };
    if let Some(relay) = relay {
        relay.handed_over();
    }
    signals::pass_to(child.id());
    let status = loop {
        match child.wait() {
            Ok(status) => break status,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return (FAILED, Some(format!("hermetic: waiting for {name}: {e}"))),
        }
    };
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        (None, None) => FAILED,
    };
    (code, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_in_powers_of_1024() {
        assert_eq!(size("1024").ok(), Some(1024));
        assert_eq!(size("64M").ok(), Some(64 << 20));
        assert_eq!(size("1G").ok(), Some(1 << 30));
        assert_eq!(size("2GiB").ok(), Some(2 << 30));
        assert_eq!(size("512k").ok(), Some(512 << 10));
        assert_eq!(size("0").ok(), Some(0));
        for bad in ["", "M", "-1", "1X", "99999999999T"] {
            assert!(size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_are_read_with_their_unit() {
        assert_eq!(duration("10").ok(), Some(Duration::from_secs(10)));
        assert_eq!(duration("10s").ok(), Some(Duration::from_secs(10)));
        assert_eq!(duration("500ms").ok(), Some(Duration::from_millis(500)));
        assert_eq!(duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(duration("1h").ok(), Some(Duration::from_secs(3600)));
        assert_eq!(duration("0").ok(), Some(Duration::ZERO));
        assert_eq!(duration("1.5s").ok(), Some(Duration::from_millis(1500)));
        assert_eq!(duration("0.5").ok(), Some(Duration::from_millis(500)));
        for bad in ["", "s", "-1s", ".5", "1e3", "inf", "nan", "3d"] {
            assert!(duration(bad).is_err(), "{bad:?}");
        }
    }

    fn parse(args: &[&str]) -> Result<Option<RunArgs>, Usage> {
        parse_run(lexopt::Parser::from_args(args.iter().copied()))
    }

    #[test]
    fn options_take_their_value_joined_or_apart_and_stop_at_the_program() {
        let run = parse(&[
            "--hostname=db",
            "--env",
            "A=1=2",
            "--timeout=3s",
            "prog",
            "--hostname",
            "-x",
        ])
        .ok()
        .flatten()
        .unwrap();
        assert_eq!(run.program, "prog");
        assert_eq!(run.args, ["--hostname", "-x"]);
        let var = |run: &RunArgs, name: &str| {
            run.env
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(var(&run, "A"), Some("1=2".into()));
        // In their order: set, unset, cleared.
        let env_of = |args: &[&str]| parse(args).ok().flatten().unwrap();
        let unset = env_of(&["--env=A=1", "--unsetenv", "A", "--env", "B=2", "p"]);
        assert_eq!(
            (var(&unset, "A"), var(&unset, "B")),
            (None, Some("2".into()))
        );
        let cleared = env_of(&["--env=A=1", "--clearenv", "--env", "B=2", "p"]);
        assert_eq!(cleared.env, [("B".into(), "2".into())]);
        assert_eq!(cleared.path, None);
        let reset = env_of(&["--unsetenv=PATH", "--env", "PATH=/x", "p"]);
        assert_eq!(reset.path, Some("/x".into()));
        assert_eq!(run.timeout, Some(Duration::from_secs(3)));
        let run = parse(&["--", "--odd-program", "a"]).ok().flatten().unwrap();
        assert_eq!(run.program, "--odd-program");
        assert_eq!(run.args, ["a"]);
    }

    #[test]
    fn a_wrong_command_line_says_what_is_wrong() {
        let said = |args: &[&str]| match parse(args) {
            Err(Usage(what)) => what,
            Ok(_) => panic!("{args:?} was accepted"),
        };
        assert!(said(&[]).contains("no program"));
        assert!(said(&["--frobnicate", "x"]).contains("--frobnicate"));
        assert!(said(&["--env", "=x", "p"]).contains("NAME=VALUE"));
        assert!(said(&["--unsetenv", "A=1", "p"]).contains("a NAME"));
        assert!(said(&["--bind", "onlyone", "p"]).contains("SRC:DST"));
        assert!(said(&["--user", "1000", "p"]).contains("UID:GID"));
        assert!(said(&["--memory", "lots", "p"]).contains("not a size"));
        assert!(said(&["--hostname"]).contains("missing argument"));
        assert!(matches!(parse(&["--help"]), Ok(None)));
    }
}
