//! Programs started inside a sandbox that outlives its test process
//! ([`Sandbox::keep`](crate::Sandbox::keep), `HERMETIC_KEEP=1`).

use std::ffi::OsStr;

use crate::child::exec;
use crate::error::Error;
use crate::sys::fd::Fd;

/// A [`std::process::Command`] whose program starts inside the kept
/// sandbox whose init process (or keeper) is `pid`, as the message of a
/// kept sandbox names it: the same way [`Sandbox::command`] starts one
/// (all of its namespaces, a process of its PID namespace, in the
/// caller's working directory where that exists inside, under the same
/// confinement), without the limits of the sandbox's builder, which only
/// its test process knew.
///
/// Given the keeper's pid (sandboxes made with `HERMETIC_KEEP=1` have
/// one), the program joins the init process's namespaces all the same,
/// those of the sandbox's own processes: the keeper's user namespace owns
/// the sandbox's mounts, and a program there (a shell running a
/// `~/.bashrc` the sandbox planted) could remount the host writable.
/// `hermetic enter PID` is this, with signals passed on.
///
/// [`Sandbox::command`]: crate::Sandbox::command
/// [`Sandbox::keep`]: crate::Sandbox::keep
///
/// # Errors
///
/// [`Error::InvalidOption`] if `pid` is no kept sandbox's init process or
/// keeper; [`Error::Sys`] if it cannot be opened.
///
/// # Examples
///
/// ```no_run
/// let sandbox = hermetic::Sandbox::new()?;
/// sandbox.keep()?;
/// let out = hermetic::kept_command(sandbox.pid(), "hostname")?.output().unwrap();
/// assert_eq!(out.stdout, b"sandbox\n");
/// # Ok::<(), hermetic::Error>(())
/// ```
pub fn kept_command(pid: u32, program: impl AsRef<OsStr>) -> Result<std::process::Command, Error> {
    command_in_kept(pid, program.as_ref(), false)
}

/// For `hermetic enter`: as [`kept_command`], for a program given a
/// terminal of its own (a pseudo-terminal the caller relays, as its stdin,
/// stdout or stderr): it leads a session inside whose controlling terminal
/// that is, in its foreground.
#[doc(hidden)]
pub fn __kept_command_on_terminal(
    pid: u32,
    program: impl AsRef<OsStr>,
) -> Result<std::process::Command, Error> {
    command_in_kept(pid, program.as_ref(), true)
}

/// The init process of the kept sandbox that `pid` names: its init
/// process, or its keeper (whose parent that is). Through the keeper, which
/// stays in the user namespace that owns the sandbox's mounts, a program
/// would hold every capability over them: it joins the init process's
/// namespaces instead, those of the sandbox's own processes.
fn init_of_kept(pid: libc::pid_t) -> Result<libc::pid_t, Error> {
    let comm = |pid: libc::pid_t| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim_end().to_owned())
            .ok()
    };
    let not_kept = |what: String| Error::InvalidOption {
        option: "pid",
        reason: format!(
            "{pid} is {what}, not a kept sandbox's init process (hermetic-init) or keeper \
             (hermetic-keeper): give the PID hermetic's keep message names"
        ),
    };
    let init = match comm(pid).as_deref() {
        Some("hermetic-init") => pid,
        Some("hermetic-keeper") => {
            // Field 4 of /proc/PID/stat, after the name in parentheses.
            let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, after) = stat.rsplit_once(')')?;
                    after.split_whitespace().nth(1)?.parse::<libc::pid_t>().ok()
                });
            match parent {
                Some(init) if comm(init).as_deref() == Some("hermetic-init") => init,
                _ => return Err(not_kept("a keeper whose init process is gone".into())),
            }
        }
        Some(other) => return Err(not_kept(format!("{other:?}"))),
        None => return Err(not_kept("no process this user can see".into())),
    };
    // A sandbox killed (`kill -9 PID`, as the keep message says) whose
    // init process its parent has not reaped yet: ended, nothing to enter.
    if !alive(init) {
        return Err(Error::InvalidOption {
            option: "pid",
            reason: format!(
                "the kept sandbox of {pid} has ended: its init process was killed (a zombie \
                 until its parent reaps it), and everything inside with it"
            ),
        });
    }
    // Only a sandbox of the caller's own: another user's (or any process
    // of theirs named so) is theirs to arrange, mounts and programs, and
    // what it runs would run with the caller's ids (as root: root's).
    let me = crate::sys::geteuid();
    for p in [pid, init] {
        match real_uid(p) {
            Some(uid) if uid == me => {}
            Some(uid) => {
                return Err(Error::InvalidOption {
                    option: "pid",
                    reason: format!(
                        "{pid} is a sandbox of uid {uid}'s, not of this user's (uid {me}): \
                         only its own user may enter it (as that user: `setpriv \
                         --reuid={uid} --regid=GID --init-groups hermetic enter {pid}`)"
                    ),
                });
            }
            None => return Err(not_kept("gone".into())),
        }
    }
    Ok(init)
}

/// The user a sandbox runs its closures and programs as, if not root: the
/// `user=UID:GID` word of its init program's command line.
fn sandbox_user(init: libc::pid_t) -> Option<(u32, u32)> {
    let cmdline = std::fs::read(format!("/proc/{init}/cmdline")).ok()?;
    let word = cmdline
        .split(|&b| b == 0)
        .filter_map(|w| std::str::from_utf8(w).ok())
        .find_map(|w| w.strip_prefix(crate::fork::launch::USER_PREFIX))?;
    let (uid, gid) = word.split_once(':')?;
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// Whether process `pid` is alive: not a zombie (`Z`, field 3 of
/// `/proc/PID/stat`, after the name in parentheses) nor gone.
fn alive(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, after)| after.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The real uid of process `pid` (`/proc/PID/status`, which says it
/// whether or not the process is dumpable).
fn real_uid(pid: libc::pid_t) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn command_in_kept(
    pid: u32,
    program: &OsStr,
    terminal: bool,
) -> Result<std::process::Command, Error> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| Error::InvalidOption {
        option: "pid",
        reason: format!("{pid} is not a process id"),
    })?;
    let pid = init_of_kept(pid)?;
    let pidfd = Fd::open(|| crate::sys::pidfd_open(pid).map_err(std::io::Error::from_raw_os_error))
        .map_err(|e| Error::sys("opening the kept sandbox's process (pidfd_open)", e))?;
    // Asked again of the process the pidfd holds: the one looked at may
    // have ended, and its pid gone to another, in between.
    init_of_kept(pid)?;
    // As the sandbox's closures and programs run: as its user, if it has
    // one of its own (named in the init program's command line).
    let set_ids = sandbox_user(pid);
    let mut cmd = std::process::Command::new(program);
    exec::enter_on_exec(
        &mut cmd,
        Ok(pidfd),
        crate::sandbox::BASE_NAMESPACES,
        Vec::new(),
        exec::Confined {
            rlimits: crate::setup::limits::rlimits_for(
                &crate::setup::limits::Limits::default(),
                None,
            ),
            set_ids,
            // The default boundary: keys refused (the builder's keyring
            // option is unknown here), a session of its own, no TIOCSTI.
            filter: crate::setup::seccomp::filter(false),
            terminal,
        },
    );
    Ok(cmd)
}
