//! [`Spawned`]: a closure running in the background inside a sandbox.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::run::output::Output;
use crate::run::runner::{Ended, Runner};

/// The runs started by [`Sandbox::spawn`] that are still to be reaped by
/// the sandbox's teardown. A [`Spawned`] that takes its runner off the
/// list reaps it itself.
#[derive(Debug, Default)]
pub(crate) struct SpawnedList(Mutex<Runs>);

#[derive(Debug, Default)]
struct Runs {
    /// (runner, joiner) of each.
    running: Vec<(libc::pid_t, libc::pid_t)>,
    /// The sandbox's teardown has begun: what ends now was killed by it.
    torn_down: bool,
}

impl SpawnedList {
    fn runs(&self) -> std::sync::MutexGuard<'_, Runs> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a run.
    pub(crate) fn add(&self, runner: libc::pid_t, joiner: libc::pid_t) {
        self.runs().running.push((runner, joiner));
    }

    /// The runners listed.
    pub(crate) fn runners(&self) -> Vec<libc::pid_t> {
        self.runs().running.iter().map(|&(pid, _)| pid).collect()
    }

    /// For the teardown: every run still listed, and from now on, the
    /// mark that the sandbox is going.
    pub(crate) fn take_for_teardown(&self) -> Vec<(libc::pid_t, libc::pid_t)> {
        let mut runs = self.runs();
        runs.torn_down = true;
        std::mem::take(&mut runs.running)
    }

    /// Whether the sandbox's teardown has begun.
    fn torn_down(&self) -> bool {
        self.runs().torn_down
    }

    /// Takes `pid` off the list; false if it was not there (the sandbox's
    /// teardown has killed and reaped it).
    fn forget(&self, pid: libc::pid_t) -> bool {
        let mut runs = self.runs();
        let before = runs.running.len();
        runs.running.retain(|&(p, _)| p != pid);
        runs.running.len() != before
    }
}

/// A closure running in the background inside a sandbox; made by
/// [`Sandbox::spawn`](crate::Sandbox::spawn). It borrows nothing: a fixture can return it with its
/// sandbox.
///
/// `T` is the closure's value, which [`join`](Self::join) returns (`()` for
/// a closure that returns nothing: `Spawned` alone is `Spawned<()>`).
///
/// Dropping the handle kills the process, and so does dropping the
/// sandbox. A panic of the closure is printed into the test's output when
/// it happens, and returned by [`join`](Self::join).
#[must_use = "dropping a Spawned kills its process at once: keep it in a variable (`let _server = ...`)"]
pub struct Spawned<T = ()> {
    pub(super) list: Arc<SpawnedList>,
    pub(super) output: Arc<Output>,
    pub(super) max_result_size: usize,
    pub(super) timeout: Option<Duration>,
    pub(super) runner: Option<Runner>,
    /// Names the limit the closure's process died of, if one did.
    pub(super) limit_names: super::LimitNames,
    /// Where a failed join asks its sandbox to be kept when dropped
    /// (`HERMETIC_KEEP`); `None` where failed sandboxes are not kept.
    pub(super) keep_when_failed: Option<Arc<AtomicBool>>,
    /// Only a value's type: the handle holds none (it is `Send` and `Sync`
    /// whatever `T`).
    pub(super) value: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Spawned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawned")
            .field("runner", &self.runner)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("pid", &self.pid()).finish()
    }
}

impl<T> Spawned<T> {
    /// The process's pid, in the caller's PID namespace.
    pub fn pid(&self) -> u32 {
        self.runner.as_ref().map_or(0, |r| r.pid() as u32)
    }

    /// True while the closure's process has not ended. A closure whose
    /// value is larger than a pipe holds (64 KiB) ends once
    /// [`join`](Self::join) has read it.
    ///
    /// Only the process that spawned it can tell: in a copy of the handle
    /// (moved into a run's closure) this is always false, and
    /// [`join`](Self::join) and [`kill`](Self::kill) are
    /// [`Error::NotTheOwner`].
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.runner
            .as_ref()
            .is_some_and(|r| r.started_elsewhere().is_none() && r.running())
    }

    /// Kills the process (with `SIGKILL`) and waits for it to die.
    ///
    /// # Errors
    ///
    /// [`Error::NotTheOwner`] in a process other than the one that
    /// spawned it (a copy of the handle moved into a run's closure).
    pub fn kill(mut self) -> Result<(), Error> {
        self.not_elsewhere()?;
        self.stop();
        Ok(())
    }

    /// `Err` if this handle is a copy, in a process other than the one
    /// that spawned the closure (which alone can wait for it).
    fn not_elsewhere(&self) -> Result<(), Error> {
        match self.runner.as_ref().and_then(Runner::started_elsewhere) {
            Some(owner) => Err(Error::NotTheOwner { owner }),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        if self.not_elsewhere().is_err() {
            // A copy: the closure is the spawning process's (the runner's
            // own drop leaves it alone too).
            drop(self.runner.take());
            return;
        }
        if let Some(mut runner) = self.runner.take() {
            // Before reaping, so that a reused pid is never taken off the
            // list; not there: the sandbox's teardown reaped it.
            if self.list.forget(runner.pid()) {
                runner.kill();
            } else {
                runner.reaped_elsewhere();
            }
        }
    }
}

impl<T: DeserializeOwned> Spawned<T> {
    /// Waits for the closure to return and gives its value, at most the
    /// sandbox's timeout ([`SandboxBuilder::timeout`](crate::SandboxBuilder::timeout), counted from this
    /// call), after which its process is killed.
    ///
    /// As with [`Sandbox::try_run`](crate::Sandbox::try_run), a panic of the closure is returned as
    /// [`Error::Panicked`], with its message and its location inside the
    /// closure (it was also printed when it happened); to fail the test
    /// with it, `join().unwrap()`. A closure stuck past the timeout is
    /// [`Error::TimedOut`], which says where each of its threads was
    /// (state, system call, kernel wait) and, for threads blocked on a
    /// lock, the likely cause (a lock copied held by the fork). A closure
    /// stopped by one of the sandbox's limits is [`Error::LimitReached`],
    /// naming it. With `HERMETIC_KEEP` set, a join that fails so (as a
    /// failed run does) keeps the sandbox when it is dropped, and says so
    /// then.
    ///
    /// # Errors
    ///
    /// As [`Sandbox::try_run`](crate::Sandbox::try_run); [`Error::SandboxDead`] if the sandbox was
    /// dropped (which killed the process) before the join or during it (from
    /// another thread);
    /// [`Error::NotTheOwner`] in a process other than the one that spawned
    /// it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let sandbox = hermetic::Sandbox::new()?;
    /// let worker = sandbox.spawn(|| std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap())?;
    /// assert_eq!(worker.join()?, "sandbox\n");
    /// let failed = sandbox.spawn(|| -> u32 { panic!("no") })?;
    /// assert!(matches!(failed.join(), Err(hermetic::Error::Panicked { .. })));
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    pub fn join(self) -> Result<T, Error> {
        let timeout = self.timeout;
        self.join_within(timeout)
    }

    /// Like [`join`](Self::join), waiting at most `timeout` (counted from
    /// this call) instead of the sandbox's; `Duration::MAX` waits for as
    /// long as the closure runs.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join); [`Error::TimedOut`] after `timeout`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let sandbox = hermetic::Sandbox::new()?;
    /// let stuck = sandbox.spawn(|| std::thread::sleep(Duration::from_secs(3600)))?;
    /// let err = stuck.join_timeout(Duration::from_millis(100)).unwrap_err();
    /// assert!(matches!(err, hermetic::Error::TimedOut { .. }));
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<T, Error> {
        self.join_within(Some(timeout))
    }

    fn join_within(mut self, timeout: Option<Duration>) -> Result<T, Error> {
        self.not_elsewhere()?;
        let mut runner = self
            .runner
            .take()
            .expect("the runner is there until consumed");
        // Off the sandbox's list before the pid is reaped (and free for
        // reuse): from here on this handle, or the runner's own drop, reaps.
        if !self.list.forget(runner.pid()) {
            runner.reaped_elsewhere();
            return Err(Error::SandboxDead {
                doing: "joining a spawned closure",
            });
        }
        let ended = runner.wait(timeout, self.max_result_size, &self.output);
        self.output.end_run();
        let result = match ended {
            Ended::Frame { tag, payload, .. } => crate::proto::frame::decode_outcome(tag, &payload),
            // Killed as the sandbox went, while this join waited.
            Ended::Died(Error::Killed {
                signo: libc::SIGKILL,
                ..
            }) if self.list.torn_down() => Err(Error::SandboxDead {
                doing: "joining a spawned closure",
            }),
            Ended::Died(e) => Err(e),
        }
        .map_err(|e| self.limit_names.name(e));
        // As a failed run's: kept, with HERMETIC_KEEP, once dropped (this
        // handle has none of the sandbox's).
        if let (Err(e), Some(keep)) = (&result, &self.keep_when_failed)
            && super::ran_and_failed(e)
        {
            keep.store(true, Ordering::SeqCst);
        }
        result
    }
}

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        self.stop();
    }
}
