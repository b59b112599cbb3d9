//! The locks taken around a fork.

use std::os::fd::RawFd;

use super::std_locks;

/// Held by the panic hook while the hook that was there before prints a
/// panic, and by [`ForkLocks`] across a fork. std's default hook prints
/// under a private lock; a copy of the process forked while another thread
/// holds it could never print a panic, and a panic in any thread of a run
/// (a thread the closure starts, say) would wait forever.
pub(crate) static PANIC_PRINTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The locks a thread of the test process may hold for a moment and a
/// forked copy of it needs: std's stdout and stderr (libtest's main thread
/// prints "test ... ok" through them), [`PANIC_PRINTING`], and std's
/// private locks around each thread's start and end, around a backtrace,
/// around the panic hook and around the environment (see [`std_locks`]). Forked while another thread holds one, the child
/// could never print, flush, report a panic, or start or end a thread;
/// forked while holding them all, the child is a copy of their owner and
/// releases them before running the closure.
///
/// It also holds the list of hermetic's own fds steady (see
/// [`fds`](crate::sys::fd)), so that the child knows exactly which of its fds
/// to close.
pub(crate) struct ForkLocks {
    fds: std::sync::RwLockReadGuard<'static, Vec<RawFd>>,
    _stdout: std::io::StdoutLock<'static>,
    _stderr: std::io::StderrLock<'static>,
    _printing: std::sync::MutexGuard<'static, ()>,
    _std: std_locks::Held,
}

impl ForkLocks {
    /// Takes the locks. The panic lock and std's private ones are only
    /// tried, and everything let go and taken again if one is busy: a
    /// thread that panics while it prints holds stdout or stderr and then
    /// wants the panic lock, and one that prints a backtrace holds stdout
    /// and wants the backtrace lock.
    pub(crate) fn take() -> ForkLocks {
        // Found before anything is held: the first time, it reads the
        // executable's symbol table.
        std_locks::prepare();
        loop {
            let mut stdout = std::io::stdout().lock();
            // What stdout holds unwritten (a line not yet ended, printed
            // without libtest's capture) goes out now, once: a copy of it in
            // the child would be printed a second time.
            let _ = std::io::Write::flush(&mut stdout);
            let stderr = std::io::stderr().lock();
            let printing = match PANIC_PRINTING.try_lock() {
                Ok(guard) => guard,
                // Poisoned only if a hook panicked while printing, which
                // aborts the process; the guard is good either way.
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    drop((stderr, stdout));
                    std::thread::yield_now();
                    continue;
                }
            };
            let std = match std_locks::try_hold() {
                Ok(held) => held,
                Err(busy) => {
                    drop((printing, stderr, stdout));
                    busy.wait();
                    continue;
                }
            };
            // Last: a thread that opens or closes an fd of ours holds it
            // only around that system call, and never one of the others
            // (a thread holding stdout may be making a sandbox). Forks are
            // one at a time (stdout is held), so the forking thread is the
            // only reader at the fork, and the child's copy of the lock is
            // free once it drops its guard.
            let fds = crate::sys::fd::hold();
            return ForkLocks {
                fds,
                _stdout: stdout,
                _stderr: stderr,
                _printing: printing,
                _std: std,
            };
        }
    }
}

impl ForkLocks {
    /// Lets go of a run's copies of the locks, in the runner, before the
    /// closure runs (see [`std_locks::Held::let_go_in_copy`]).
    pub(crate) fn let_go_in_copy(self) {
        let ForkLocks {
            fds,
            _stdout,
            _stderr,
            _printing,
            _std,
        } = self;
        _std.let_go_in_copy();
        drop((fds, _stdout, _stderr, _printing));
    }

    /// hermetic's own fds, as they were at the fork.
    pub(crate) fn ours(&self) -> &[RawFd] {
        &self.fds
    }
}
