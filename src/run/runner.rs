//! One process running a closure inside a sandbox, seen from the test
//! process: starting it, waiting for its frame with a deadline, and killing
//! and reaping it whatever happens.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::child::joiner::{self, JoinPlan, RunnerSetup};
use crate::error::Error;
use crate::proto::frame::{self, FrameReader};
use crate::proto::reports::{EXIT_NO_CHANNEL, JoinReport, JoinStep};
use crate::run::output::Output;
use crate::sys::fd::{self, Fd};
use crate::sys::{self, Exit};

/// A live runner: our child, not yet reaped (so its pid cannot be reused).
pub(crate) struct Runner {
    pid: libc::pid_t,
    pidfd: Fd,
    result: Fd,
    reaped: bool,
    /// The joiner: it exits right after starting the runner, before the
    /// closure runs, so it is gone (a zombie) once the runner has ended and
    /// is reaped with it.
    joiner: libc::pid_t,
    /// The process that started it: the one that may kill and reap it.
    starter: u32,
}

/// How a runner ended.
pub(crate) enum Ended {
    /// The frame arrived (and the runner exited); `made_nothing`: the
    /// runner saw no process or thread made in its run (its exit status 0),
    /// so the run cannot have left anything running in the sandbox.
    Frame {
        tag: frame::Tag,
        payload: Vec<u8>,
        made_nothing: bool,
    },
    /// No complete frame.
    Died(Error),
}

/// Refuses to start a run in a test process that ignores `SIGCHLD`: the
/// kernel would reap the run's process before its status could be read.
fn check_sigchld() -> Result<(), Error> {
    if sys::children_reaped_by_kernel() {
        return Err(Error::SigchldIgnored);
    }
    Ok(())
}

impl Runner {
    /// Starts `f` in the sandbox whose init process is behind `init_pidfd`;
    /// the runner is given the fds in `keep` besides its own pipes.
    pub(crate) fn start<F, T>(
        init_pidfd: &Fd,
        nstypes: libc::c_int,
        confine: &crate::child::confine::Confinement,
        output: (RawFd, RawFd),
        keep: &[RawFd],
        background: bool,
        f: F,
    ) -> Result<Runner, Error>
    where
        F: FnOnce() -> T,
        T: Serialize,
    {
        check_sigchld()?;
        let (report_r, report_w) = fd::pipe_read_never_blocks()
            .map_err(|e| Error::sys("creating the run's report pipe", e))?;
        let (result_r, result_w) = fd::pipe_read_never_blocks()
            .map_err(|e| Error::sys("creating the run's result pipe", e))?;
        let plan = JoinPlan {
            init_pidfd: init_pidfd.as_raw_fd(),
            nstypes,
            report: report_w.as_raw_fd(),
            keep,
            confine,
        };
        let fds = RunnerSetup {
            result: result_w.as_raw_fd(),
            stdout: output.0,
            stderr: output.1,
            background,
        };
        let joiner = joiner::fork_runner(&plan, fds, f)
            .map_err(|e| Error::sys("forking a run", std::io::Error::from_raw_os_error(e)))?;
        drop(report_w);
        drop(result_w);
        // The joiner reports and exits: wait for the report, or for the
        // joiner's death without one.
        let msg = match await_report(joiner, &report_r) {
            Ok(msg) => msg,
            Err(e) => {
                let _ = sys::reap(joiner);
                return Err(e);
            }
        };
        let pid = match JoinReport::decode(msg) {
            JoinReport::Started(pid) => pid,
            // A dead init process: ESRCH, or EPERM (rootless, whose
            // permission to enter is checked first); its pidfd tells.
            JoinReport::Failed {
                step: JoinStep::Enter,
                ..
            } if sys::poll(&[init_pidfd.as_fd()], Some(Duration::ZERO))
                .is_ok_and(|ready| ready[0].any) =>
            {
                let _ = sys::reap(joiner);
                return Err(Error::SandboxDead {
                    doing: "starting a run",
                });
            }
            JoinReport::Failed { step, errno } => {
                let _ = sys::reap(joiner);
                return Err(Error::Sys {
                    step: step.what(),
                    error: std::io::Error::from_raw_os_error(errno),
                });
            }
            // (Only a joiner starting an init process says so.)
            JoinReport::Garbled | JoinReport::StartedAsParent(_) => {
                let _ = sys::reap(joiner);
                return Err(Error::Sys {
                    step: "starting a process in the sandbox",
                    error: std::io::Error::other("the joining process sent a garbled report"),
                });
            }
        };
        // The runner is our unreaped child: its pid is pinned.
        let pidfd =
            match Fd::open(|| sys::pidfd_open(pid).map_err(std::io::Error::from_raw_os_error)) {
                Ok(fd) => fd,
                Err(e) => {
                    let _ = sys::kill_and_reap(pid);
                    let _ = sys::reap(joiner);
                    return Err(Error::sys("opening a pidfd for the run", e));
                }
            };
        Ok(Runner {
            pid,
            pidfd,
            result: result_r,
            reaped: false,
            joiner,
            starter: std::process::id(),
        })
    }

    /// The runner's pid in the test process's PID namespace.
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// The pid of its joiner (exited, or about to).
    pub(crate) fn joiner(&self) -> libc::pid_t {
        self.joiner
    }

    /// Waits for the frame and the runner's exit, at most `timeout`.
    pub(crate) fn wait(
        &mut self,
        timeout: Option<Duration>,
        limit: usize,
        output: &Output,
    ) -> Ended {
        // A timeout too long to reach (Duration::MAX) is no timeout.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut reader = FrameReader::new(limit);
        // Polled until the frame is complete or the pipe is at its end.
        // Never after: a pipe at its end is always ready, and waiting on it
        // for the runner's exit would spin (for a whole time slice, on a
        // busy CPU, while the runner waits for that CPU to finish exiting).
        let mut result_open = true;
        loop {
            let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let readers = output.readers_to_poll();
            let (result_ready, hung_up, exited, printed) = {
                let mut fds = Vec::with_capacity(2 + readers.len());
                fds.push(self.pidfd.as_fd());
                if result_open {
                    fds.push(self.result.as_fd());
                }
                let first_reader = fds.len();
                fds.extend(readers.iter().map(|fd| fd.as_fd()));
                let ready = match sys::poll(&fds, wait) {
                    Ok(ready) => ready,
                    Err(libc::EINTR) => continue,
                    Err(e) => {
                        self.kill();
                        return Ended::Died(Error::sys(
                            "waiting for the run",
                            std::io::Error::from_raw_os_error(e),
                        ));
                    }
                };
                (
                    result_open && ready[1].any,
                    result_open && ready[1].hung_up,
                    ready[0].any,
                    ready[first_reader..].iter().any(|r| r.any),
                )
            };
            if printed {
                // Drain as it comes: a closure printing more than a pipe
                // holds would otherwise block, and the run never end.
                output.pump();
            }
            if result_open && (result_ready || exited) {
                match self.read_available(&mut reader, hung_up) {
                    Ok(finished) => result_open = !finished,
                    Err(e) => {
                        self.kill();
                        return Ended::Died(e);
                    }
                }
            }
            if exited {
                break;
            }
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                // Before the kill: where it is stuck is gone after.
                let stuck = crate::diagnose::where_stuck(self.closure_pid());
                self.kill();
                return Ended::Died(Error::TimedOut {
                    after: timeout.unwrap_or_default(),
                    stuck,
                });
            }
        }
        let status = self.reap();
        if let Some((tag, payload)) = reader.frame() {
            return Ended::Frame {
                tag,
                payload: payload.to_vec(),
                made_nothing: matches!(status, Some(Exit::Code(0))),
            };
        }
        Ended::Died(match status {
            Some(Exit::Signal(sig)) => Error::Killed {
                signal: sys::signal_name(sig),
                signo: sig,
            },
            _ if reader.started() => Error::Channel {
                reason: reader.truncation(),
            },
            Some(Exit::Code(EXIT_NO_CHANNEL)) => Error::Channel {
                reason: "the result could not be sent: the closure closed or broke its \
                         result channel"
                    .into(),
            },
            Some(Exit::Code(code)) => Error::Exited { status: code },
            other => Error::Sys {
                step: "waiting for the run",
                error: std::io::Error::other(format!("unexpected wait status {other:?}")),
            },
        })
    }

    /// Reads what the pipe holds now into `reader`, until the frame is
    /// complete or the pipe is empty. True once nothing more is to be read:
    /// the frame is complete or the pipe is at its end.
    ///
    /// Reads only as many bytes as the pipe holds (`FIONREAD`), from a read
    /// end that never blocks ([`fd::pipe_read_never_blocks`]): a closure
    /// that takes bytes out of the pipe through a read end of its own
    /// (`/proc/self/fd/N`) garbles its own frame, and hangs nothing.
    /// `hung_up`: poll said the pipe has no writers left.
    fn read_available(&mut self, reader: &mut FrameReader, hung_up: bool) -> Result<bool, Error> {
        // A frame is usually a few bytes; bigger ones take more reads.
        let mut buf = [0u8; 16 * 1024];
        while reader.frame().is_none() {
            match sys::read_pending(self.result.as_fd(), &mut buf) {
                // Empty, or taken out of the pipe by another reader since
                // the look (a process inside, through a read end of its
                // own): what comes next wakes the poll again.
                sys::Pending::Empty | sys::Pending::Taken => return Ok(hung_up),
                sys::Pending::Ended => return Ok(true),
                sys::Pending::Read(n) => {
                    reader.feed(&buf[..n])?;
                }
                sys::Pending::Failed(e) => {
                    return Err(Error::sys(
                        "reading the run's result",
                        std::io::Error::from_raw_os_error(e),
                    ));
                }
            }
        }
        Ok(reader.frame().is_some())
    }

    /// Kills the runner (not its descendants: they stay in the sandbox until
    /// it is dropped) and reaps it.
    pub(crate) fn kill(&mut self) {
        if !self.reaped {
            // Nested, the closure's own process first, and its end waited
            // for: killed through its joiner, it would die only after it
            // (its parent-death signal), still holding what it held (a
            // listening port) when this returned.
            let closure = self.nested_closure().and_then(|pid| {
                Fd::open(|| sys::pidfd_open(pid).map_err(std::io::Error::from_raw_os_error)).ok()
            });
            if let Some(closure) = closure {
                let _ = sys::pidfd_send_signal(closure.as_fd(), libc::SIGKILL);
                let _ = sys::poll(&[closure.as_fd()], Some(Duration::from_secs(5)));
            }
            let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
            self.reap();
        }
    }

    /// Where the joiner stayed as the runner's parent (a sandbox inside a
    /// sandbox, whose filter refuses `CLONE_PARENT`: it reports its own pid
    /// as the runner's), the process that runs the closure: the joiner's
    /// child, as `/proc` lists it (its pid stays its own until the joiner
    /// reaps it). `None` otherwise.
    fn nested_closure(&self) -> Option<libc::pid_t> {
        if self.pid != self.joiner || self.reaped {
            return None;
        }
        let p = self.pid;
        let children = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// The pid whose threads say where the closure is: the runner's, or
    /// nested, the process its joiner forked for it.
    fn closure_pid(&self) -> libc::pid_t {
        self.nested_closure().unwrap_or(self.pid)
    }

    /// Marks the runner as reaped by someone else (the sandbox's teardown):
    /// its pid may already belong to another process.
    pub(crate) fn reaped_elsewhere(&mut self) {
        self.reaped = true;
    }

    /// The process that started it (the one that may wait for it), if it
    /// is not this one: this handle is a copy (moved into a closure).
    pub(crate) fn started_elsewhere(&self) -> Option<u32> {
        (self.starter != std::process::id()).then_some(self.starter)
    }

    /// True while the runner has not exited.
    pub(crate) fn running(&self) -> bool {
        if self.reaped {
            return false;
        }
        sys::poll(&[self.pidfd.as_fd()], Some(Duration::ZERO)).is_ok_and(|ready| !ready[0].any)
    }

    /// Reaps the runner, then its joiner, which exited before the closure
    /// could start (or exits at once, if the runner was killed first).
    fn reap(&mut self) -> Option<Exit> {
        if self.reaped {
            return None;
        }
        let status = sys::reap(self.pid).ok();
        self.reaped = true;
        let _ = sys::reap(self.joiner);
        status
    }
}

impl Drop for Runner {
    /// Kills and reaps it; not in a copy of the handle (moved into a
    /// closure), whose process is not the runner's parent.
    fn drop(&mut self) {
        if self.starter == std::process::id() {
            self.kill();
        }
    }
}

/// Starts an init process that shares the user namespace of the init
/// process behind `owner`, through a joining child; returns the new init
/// process's pid and the pid to reap once it has ended: itself (our
/// child, so pinned until reaped), or, inside a sandbox (where
/// `CLONE_PARENT` is refused), the joiner, which stays as its parent.
pub(crate) fn start_init_in(
    owner: &Fd,
    flags: libc::c_int,
    launch: &crate::fork::launch::Launch,
) -> Result<(libc::pid_t, libc::pid_t), Error> {
    let (report_r, report_w) =
        fd::pipe().map_err(|e| Error::sys("creating the joiner's report pipe", e))?;
    let joiner = joiner::fork_init_in(owner.as_raw_fd(), flags, launch, report_w.as_raw_fd())
        .map_err(|e| {
            Error::sys(
                "forking to join the network's user namespace",
                std::io::Error::from_raw_os_error(e),
            )
        })?;
    drop(report_w);
    // This joiner exits as soon as it has reported (but where it stays as
    // the init process's parent).
    let msg = await_report(joiner, &report_r);
    let report = msg.map(JoinReport::decode);
    if !matches!(report, Ok(JoinReport::StartedAsParent(_))) {
        let _ = sys::reap(joiner);
    }
    match report? {
        JoinReport::Started(pid) => Ok((pid, pid)),
        JoinReport::StartedAsParent(pid) => Ok((pid, joiner)),
        JoinReport::Failed { step, errno } => Err(Error::NamespacesRefused {
            error: std::io::Error::from_raw_os_error(errno),
            hint: Some(format!("while {}", step.what())),
        }),
        JoinReport::Garbled => Err(Error::Sys {
            step: "starting a host of the network",
            error: std::io::Error::other("the joining process sent a garbled report"),
        }),
    }
}

/// Reads the 8-byte report of a joiner, which exits right after sending
/// it: waits until the joiner has exited, then takes the report, if any.
///
/// Not woken by the report itself: on a busy CPU that wake-up would put
/// this thread before the joiner's exit, and the runner waits for that
/// exit before it runs the closure.
fn await_report(joiner: libc::pid_t, report_r: &Fd) -> Result<[u8; 8], Error> {
    let joiner_fd = Fd::open(|| sys::pidfd_open(joiner).map_err(std::io::Error::from_raw_os_error))
        .map_err(|e| Error::sys("watching the run's joiner", e))?;
    // Should the poll fail, read_report's own reports the error. A joiner
    // that stays as its runner's parent (see joiner::parent_runner) closes
    // its end of the pipe once it has reported.
    sys::wait_exit_or_hangup(joiner_fd.as_fd(), report_r.as_fd());
    read_report(report_r, &joiner_fd)
        .map_err(|e| Error::sys("waiting for a start report", e))?
        .ok_or_else(|| Error::Sys {
            step: "starting a process in the sandbox",
            error: std::io::Error::other("the joining process ended without a report"),
        })
}

/// Waits for an 8-byte report on `report_r` from the process behind the
/// pidfd `writer`: the report, or `None` once the writer has exited (or
/// every writer of the pipe is gone) without sending one.
///
/// The writer sends its 8 bytes in one `write`, which a pipe delivers
/// whole. Never blocks in `read`: it reads only what `FIONREAD` says the
/// pipe holds, from a read end that never blocks
/// ([`fd::pipe_read_never_blocks`]).
pub(crate) fn read_report(report_r: &Fd, writer: &Fd) -> std::io::Result<Option<[u8; 8]>> {
    let err = std::io::Error::from_raw_os_error;
    let take = || -> std::io::Result<Option<[u8; 8]>> {
        let mut msg = [0u8; 8];
        match sys::read_pending(report_r.as_fd(), &mut msg) {
            sys::Pending::Read(8) => Ok(Some(msg)),
            // Reports are written whole; a piece of one is garbage.
            sys::Pending::Read(_) => Err(err(libc::EPROTO)),
            sys::Pending::Empty | sys::Pending::Taken | sys::Pending::Ended => Ok(None),
            sys::Pending::Failed(e) => Err(err(e)),
        }
    };
    loop {
        if let Some(msg) = take()? {
            return Ok(Some(msg));
        }
        let ready = match sys::poll(&[report_r.as_fd(), writer.as_fd()], None) {
            Ok(ready) => ready,
            Err(libc::EINTR) => continue,
            Err(e) => return Err(err(e)),
        };
        if ready[0].hung_up || ready[1].any {
            // One last look: the report may have come just before the end.
            return take();
        }
    }
}
