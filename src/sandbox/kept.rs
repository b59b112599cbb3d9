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
/// Through the keeper (sandboxes made with `HERMETIC_KEEP=1` have one),
/// the program runs in the user namespace that owns the sandbox's mounts,
/// which works rootless too; through the init process it works as root.
/// `hermetic enter PID` is this, with signals passed on.
///
/// [`Sandbox::command`]: crate::Sandbox::command
/// [`Sandbox::keep`]: crate::Sandbox::keep
///
/// # Errors
///
/// [`Error::Sys`] if there is no process `pid` to open.
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

fn command_in_kept(
    pid: u32,
    program: &OsStr,
    terminal: bool,
) -> Result<std::process::Command, Error> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| Error::InvalidOption {
        option: "pid",
        reason: format!("{pid} is not a process id"),
    })?;
    let pidfd = Fd::open(|| crate::sys::pidfd_open(pid).map_err(std::io::Error::from_raw_os_error))
        .map_err(|e| Error::sys("opening the kept sandbox's process (pidfd_open)", e))?;
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
            set_ids: None,
            // The default boundary: keys refused (the builder's keyring
            // option is unknown here), a session of its own, no TIOCSTI.
            filter: crate::setup::seccomp::filter(false),
            terminal,
        },
    );
    Ok(cmd)
}
