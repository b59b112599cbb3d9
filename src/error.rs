//! The one error type of the crate.
//!
//! Layer: just above `sys`; every layer above may return it.

use std::fmt;
use std::io;
use std::time::Duration;

/// Where a panic happened inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct PanicLocation {
    /// Source file, as the compiler recorded it.
    pub file: String,
    /// Line, starting at 1.
    pub line: u32,
    /// Column, starting at 1.
    pub column: u32,
}

impl fmt::Display for PanicLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Everything that can go wrong in `hermetic`.
///
/// Variants name the operation that failed. Those that come from a system
/// call keep its [`io::Error`] (see [`io_error`](Error::io_error) and
/// [`errno`](Error::errno)), and their message ends with its text and
/// symbolic name ("Operation not permitted (EPERM)"); it is not also
/// returned by `source()`, so error reporters (anyhow, eyre) print it once.
/// The message of a failed run (killed, exited, timed out, a limit reached,
/// a garbled or unserialisable result) ends with a line saying what to look
/// for, the same that [`Sandbox::run`](crate::Sandbox::run)'s panic shows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A builder option was rejected before anything was created.
    #[error("invalid option `{option}`: {reason}")]
    #[non_exhaustive]
    InvalidOption {
        /// The builder method whose input was rejected.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The kernel refused to create the namespaces of a sandbox.
    ///
    /// `hint` names the host setting that most likely forbids them and the
    /// command that lifts it.
    #[error("creating the sandbox's namespaces: {}{}", errno_text(.error), hint_suffix(.hint))]
    #[non_exhaustive]
    NamespacesRefused {
        /// The errno of `clone(2)`.
        error: io::Error,
        /// The likely cause and its remedy, read from this host.
        hint: Option<String>,
    },

    /// A setup step inside the new namespaces failed.
    #[error("{step}: {}{}", errno_text(.error), hint_suffix(.hint))]
    #[non_exhaustive]
    Setup {
        /// The step, in words: "mounting proc on /proc".
        step: String,
        /// The errno the step failed with.
        error: io::Error,
        /// The likely cause and its remedy, when one is known.
        hint: Option<String>,
    },

    /// A system call made by the test process on the sandbox's behalf failed.
    #[error("{step}: {}", errno_text(.error))]
    #[non_exhaustive]
    Sys {
        /// What the test process was doing.
        step: &'static str,
        /// The error of the system call.
        error: io::Error,
    },

    /// The sandbox is dead: its init process was killed (by a
    /// [`Killer`](crate::Killer), or from outside), so nothing more can
    /// run in it.
    #[error("{doing}: the sandbox is dead (its init process was killed); make a new one")]
    #[non_exhaustive]
    SandboxDead {
        /// What was asked of it: "starting a run".
        doing: &'static str,
    },

    /// The sandbox was asked for a run (or a spawned closure, or a
    /// command), or a spawned closure was joined or killed, by a process
    /// other than the one that made it: inside one of its own runs, whose
    /// closure holds a copy of the handle, with hermetic's fds closed.
    #[error(
        "a sandbox's runs start from the process that made it (pid {owner}), and its \
         spawned closures are joined there, not from inside one of its own runs: run the \
         code directly there, or make a sandbox inside the run"
    )]
    #[non_exhaustive]
    NotTheOwner {
        /// The pid of the process that made the sandbox.
        owner: u32,
    },

    /// The closure panicked inside the sandbox.
    #[error("panicked inside the sandbox at {}:\n{message}", location_text(.location))]
    #[non_exhaustive]
    Panicked {
        /// The panic's message (`"Box<dyn Any>"` for non-string payloads).
        message: String,
        /// Where the panic happened, when it was recorded.
        location: Option<PanicLocation>,
    },

    /// The process running the closure was killed by a signal.
    #[error(
        "the closure was killed by {signal} before returning\n{}",
        advice::KILLED
    )]
    #[non_exhaustive]
    Killed {
        /// The signal's name, such as `SIGSEGV`.
        signal: &'static str,
        /// The signal's number.
        signo: i32,
    },

    /// The closure overflowed its stack (a recursion too deep for the
    /// stack it runs on, as large as a main thread's).
    #[error(
        "the closure overflowed its stack ({} MiB) before returning\n{}",
        .size >> 20,
        advice::STACK_OVERFLOW
    )]
    #[non_exhaustive]
    StackOverflow {
        /// The size of the stack, in bytes.
        size: usize,
    },

    /// The process running the closure exited without sending a result.
    #[error(
        "the closure exited with status {status} before returning\n{}",
        advice::EXITED
    )]
    #[non_exhaustive]
    Exited {
        /// The exit status.
        status: i32,
    },

    /// The test process ignores `SIGCHLD` (`SIG_IGN`, or `SA_NOCLDWAIT`),
    /// so the kernel would reap a run's process before its end could be
    /// read. Restore the default before running closures:
    /// `unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) }`.
    #[error(
        "the test process ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT), so the kernel reaps a \
         run's process before hermetic can read how it ended; restore the default disposition \
         (signal(SIGCHLD, SIG_DFL)) before running closures"
    )]
    SigchldIgnored,

    /// The run reached one of the sandbox's resource limits
    /// ([`SandboxBuilder::memory_limit`](crate::SandboxBuilder::memory_limit),
    /// [`cpu_time_limit`](crate::SandboxBuilder::cpu_time_limit)) and was
    /// stopped; the sandbox stays usable.
    #[error("{limit} reached: the run was stopped\n{}", advice::LIMIT)]
    #[non_exhaustive]
    LimitReached {
        /// The limit, in words: "memory limit of 64 MiB".
        limit: String,
        /// The signal the run died of.
        signal: &'static str,
    },

    /// The run took longer than the sandbox's timeout and was killed.
    #[error(
        "the closure timed out after {after:?} and was killed{}\n{}",
        stuck_suffix(.stuck),
        advice::TIMED_OUT
    )]
    #[non_exhaustive]
    TimedOut {
        /// The timeout that was exceeded.
        after: Duration,
        /// Where the run's threads were when it was killed (state, system
        /// call, kernel wait channel, read from `/proc`), and the likely
        /// cause; empty if that could not be read.
        stuck: String,
    },

    /// Configuring a network of sandboxes (links, addresses, bridges,
    /// qdiscs) failed.
    #[error("{step}: {}", errno_text(.error))]
    #[non_exhaustive]
    Network {
        /// What was being done: "moving h1's link to the partition bridge".
        step: String,
        /// The kernel's answer.
        error: io::Error,
    },

    /// The kernel lacks the qdisc a [`LinkShape`](crate::LinkShape) needs.
    #[error("shaping {what} needs the {qdisc} qdisc, which this kernel does not have\n{hint}")]
    #[non_exhaustive]
    ShapingUnavailable {
        /// What was asked: "a rate".
        what: &'static str,
        /// The qdisc: "tbf".
        qdisc: &'static str,
        /// How to get it.
        hint: String,
    },

    /// The result channel carried bytes that are not a valid frame.
    #[error("malformed result from the sandbox: {reason}\n{}", advice::CHANNEL)]
    #[non_exhaustive]
    Channel {
        /// What was wrong with the bytes.
        reason: String,
    },

    /// The closure's result could not be serialised inside the sandbox.
    #[error("encoding the closure's result: {reason}\n{}", advice::SERDE)]
    #[non_exhaustive]
    Encode {
        /// The codec's message.
        reason: String,
    },

    /// The closure's result could not be deserialised in the test process:
    /// it does not decode as the type asked for, or it is beyond the bounds
    /// every result is decoded within (nested deeper than 128 levels, or
    /// more elements and entries than its frame has bytes, plus 2^20).
    #[error("decoding the closure's result: {reason}\n{}", advice::SERDE)]
    #[non_exhaustive]
    Decode {
        /// The codec's message.
        reason: String,
    },
}

/// What to look for after a run failed, as the last line of the error's
/// message: [`Sandbox::run`](crate::Sandbox::run) panics with the message
/// alone, so `try_run` users and `run` users read the same advice.
mod advice {
    pub(super) const TIMED_OUT: &str = "the closure ran past its timeout; raise \
        SandboxBuilder::timeout (or HERMETIC_TIMEOUT for a whole suite) or look for a hang";
    pub(super) const STACK_OVERFLOW: &str = "a recursion too deep for the stack: make it \
        iterative, or run it inside the closure on a thread with a larger stack \
        (std::thread::Builder::new().stack_size(..))";
    pub(super) const KILLED: &str = "the process running the closure died from a signal; the \
        closure crashed (or something killed it)";
    pub(super) const EXITED: &str =
        "the closure called exit() (or std::process::exit) instead of returning";
    pub(super) const LIMIT: &str = "the closure used more than the sandbox allows; raise the \
        limit (SandboxBuilder::memory_limit, cpu_time_limit) or look for what uses it: with a \
        memory cgroup, files left in the sandbox's /tmp, /var/tmp and /dev/shm (memory, not \
        disk) and System V shared memory count too, until removed (bound tmp_size and \
        shm_size below the limit to keep the sandbox usable)";
    pub(super) const SERDE: &str = "the result must round-trip through serde (postcard)";
    pub(super) const CHANNEL: &str = "the closure wrote to the result channel's fd, or its \
        result was too large (SandboxBuilder::max_result_size)";
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!("\n{h}"),
        None => String::new(),
    }
}

fn stuck_suffix(stuck: &str) -> String {
    if stuck.is_empty() {
        String::new()
    } else {
        format!("; {stuck}")
    }
}

fn location_text(location: &Option<PanicLocation>) -> String {
    match location {
        Some(l) => l.to_string(),
        None => "<unknown location>".to_owned(),
    }
}

/// `Operation not permitted (EPERM)`: the text and the symbolic name, so a
/// reader can search for either.
pub(crate) fn errno_text(err: &io::Error) -> String {
    let Some(code) = err.raw_os_error() else {
        return err.to_string();
    };
    let name = crate::sys::errno_name(code);
    let text = err.to_string();
    // io::Error's Display is "Operation not permitted (os error 1)".
    let text = text
        .rsplit_once(" (os error")
        .map_or(text.as_str(), |(t, _)| t);
    if code == libc::EMFILE {
        return format!("{text} ({name}){}", open_files_hint());
    }
    format!("{text} ({name})")
}

/// What to do about `EMFILE`: the process's limit of open files, soft and
/// hard, and what a sandbox holds.
fn open_files_hint() -> String {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let shown = |l: Option<u64>| l.map_or_else(|| "unlimited".to_owned(), |l| l.to_string());
    let raise = if limit.maximum.is_none_or(|hard| Some(hard) > limit.current) {
        format!(
            "raise it up to its hard limit (`ulimit -n {}` before the tests)",
            shown(limit.maximum)
        )
    } else {
        "its hard limit is the same: raise both (as root: `ulimit -Hn`, or \
         /etc/security/limits.conf)"
            .to_owned()
    };
    format!(
        ": this process's limit of open files (RLIMIT_NOFILE) is {} (hard limit {}); each \
         live sandbox holds about 7 fds, and a network's host some more: {raise}, or keep \
         fewer sandboxes alive at once",
        shown(limit.current),
        shown(limit.maximum),
    )
}

impl Error {
    pub(crate) fn sys(step: &'static str, error: impl Into<io::Error>) -> Self {
        Error::Sys {
            step,
            error: error.into(),
        }
    }

    /// The error of the system call that failed, if one did.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::NamespacesRefused { error, .. }
            | Error::Setup { error, .. }
            | Error::Sys { error, .. }
            | Error::Network { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the message already says what to do about it (the advice
    /// of a run's failure, a host setting's fix, a remedy).
    pub(crate) fn carries_advice(&self) -> bool {
        match self {
            Error::Killed { .. }
            | Error::StackOverflow { .. }
            | Error::Exited { .. }
            | Error::LimitReached { .. }
            | Error::TimedOut { .. }
            | Error::Channel { .. }
            | Error::Encode { .. }
            | Error::Decode { .. }
            | Error::SigchldIgnored
            | Error::SandboxDead { .. }
            | Error::NotTheOwner { .. }
            | Error::ShapingUnavailable { .. } => true,
            Error::NamespacesRefused { hint, .. } | Error::Setup { hint, .. } => hint.is_some(),
            _ => false,
        }
    }

    /// The errno behind this error, if a system call failed.
    pub fn errno(&self) -> Option<i32> {
        self.io_error().and_then(io::Error::raw_os_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_error_names_step_and_errno() {
        let e = Error::Setup {
            step: "mounting proc on /proc".into(),
            error: io::Error::from_raw_os_error(libc::EPERM),
            hint: None,
        };
        assert_eq!(
            e.to_string(),
            "mounting proc on /proc: Operation not permitted (EPERM)"
        );
        assert_eq!(e.errno(), Some(libc::EPERM));
        // Said once: in the message, not again as the source.
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn panic_display_has_location_then_message() {
        let e = Error::Panicked {
            message: "boom".into(),
            location: Some(PanicLocation {
                file: "tests/x.rs".into(),
                line: 3,
                column: 9,
            }),
        };
        assert_eq!(
            e.to_string(),
            "panicked inside the sandbox at tests/x.rs:3:9:\nboom"
        );
    }

    /// Each failure of a run says what to look for in its own message, so
    /// that `try_run` users see what `run`'s panic says.
    #[test]
    fn run_failures_carry_their_advice() {
        let cases = [
            (
                Error::Killed {
                    signal: "SIGSEGV",
                    signo: libc::SIGSEGV,
                },
                "the closure was killed by SIGSEGV before returning\n\
                 the process running the closure died from a signal; the closure crashed (or \
                 something killed it)",
            ),
            (
                Error::Exited { status: 3 },
                "the closure exited with status 3 before returning\n\
                 the closure called exit() (or std::process::exit) instead of returning",
            ),
            (
                Error::TimedOut {
                    after: Duration::from_millis(300),
                    stuck: "where its threads were: thread 7 (t): sleeping in futex()".into(),
                },
                "the closure timed out after 300ms and was killed; where its threads were: \
                 thread 7 (t): sleeping in futex()\n\
                 the closure ran past its timeout; raise SandboxBuilder::timeout (or \
                 HERMETIC_TIMEOUT for a whole suite) or look for a hang",
            ),
            (
                Error::TimedOut {
                    after: Duration::from_secs(5),
                    stuck: String::new(),
                },
                "the closure timed out after 5s and was killed\n\
                 the closure ran past its timeout; raise SandboxBuilder::timeout (or \
                 HERMETIC_TIMEOUT for a whole suite) or look for a hang",
            ),
            (
                Error::LimitReached {
                    limit: "memory limit of 64 MiB".into(),
                    signal: "SIGKILL",
                },
                "memory limit of 64 MiB reached: the run was stopped\n\
                 the closure used more than the sandbox allows; raise the limit \
                 (SandboxBuilder::memory_limit, cpu_time_limit) or look for what uses it: with \
                 a memory cgroup, files left in the sandbox's /tmp, /var/tmp and /dev/shm \
                 (memory, not disk) and System V shared memory count too, until removed \
                 (bound tmp_size and shm_size below the limit to keep the sandbox usable)",
            ),
            (
                Error::Channel {
                    reason: "a frame of 9 bytes".into(),
                },
                "malformed result from the sandbox: a frame of 9 bytes\n\
                 the closure wrote to the result channel's fd, or its result was too large \
                 (SandboxBuilder::max_result_size)",
            ),
            (
                Error::Encode {
                    reason: "no".into(),
                },
                "encoding the closure's result: no\n\
                 the result must round-trip through serde (postcard)",
            ),
            (
                Error::Decode {
                    reason: "no".into(),
                },
                "decoding the closure's result: no\n\
                 the result must round-trip through serde (postcard)",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text, "{e:?}");
            assert!(e.carries_advice(), "{e:?}");
        }
        // Those that say what to do otherwise.
        let dead = Error::SandboxDead {
            doing: "starting a run",
        };
        assert_eq!(
            dead.to_string(),
            "starting a run: the sandbox is dead (its init process was killed); make a new one"
        );
        assert!(dead.carries_advice());
        assert!(Error::SigchldIgnored.to_string().contains("SIG_DFL"));
        let hinted = Error::Setup {
            step: "mounting proc on /proc".into(),
            error: io::Error::from_raw_os_error(libc::EPERM),
            hint: Some("fix: this".into()),
        };
        assert_eq!(
            hinted.to_string(),
            "mounting proc on /proc: Operation not permitted (EPERM)\nfix: this"
        );
        assert!(hinted.carries_advice());
        // Those that do not: run's panic adds that try_run can handle them.
        let bare = Error::sys("forking a run", io::Error::from_raw_os_error(libc::EAGAIN));
        assert_eq!(
            bare.to_string(),
            "forking a run: Resource temporarily unavailable (EAGAIN)"
        );
        assert!(!bare.carries_advice());
        let panicked = Error::Panicked {
            message: "boom".into(),
            location: None,
        };
        assert_eq!(
            panicked.to_string(),
            "panicked inside the sandbox at <unknown location>:\nboom"
        );
        assert!(!panicked.carries_advice());
    }

    #[test]
    fn error_is_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<Error>();
    }
}
