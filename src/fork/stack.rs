//! The stacks a run's processes start on, mapped once per test process.

use crate::sys;

/// The size of a runner's stack: a closure may run on it (see
/// the runner's `serve`), so as large as a main
/// thread's; committed only as it is touched, with a guard page below.
const SIZE: usize = 8 << 20;

/// The size of the stack of the task that frees a run's memory: it only
/// makes a few system calls.
const EXIT_SIZE: usize = 16 << 10;

/// The tops of the runners' stack and of the exit task's: mappings of the
/// test process that the test process itself never touches, so that each
/// fork gets a copy of them with nothing in it, its own, where the runner
/// grows its stack (a run's joiner writes the runner's launch at its top),
/// and where the task that frees the run's memory at the end runs (see
/// the runner's `hand_over_teardown`). Mapped on first need, before any
/// fork, and never unmapped; every fork shares the ranges but not their
/// pages. Spares each run two mappings (and their `mprotect`s).
pub(crate) fn stacks() -> Result<Stacks, i32> {
    static TOPS: std::sync::OnceLock<Result<Stacks, i32>> = std::sync::OnceLock::new();
    *TOPS.get_or_init(|| {
        let runner = sys::Stack::map(SIZE)?;
        let exit = sys::Stack::map(EXIT_SIZE)?;
        let tops = Stacks {
            runner: runner.top() as usize,
            exit: exit.top() as usize,
        };
        // Never unmapped: the processes of runs, in forks of this process,
        // use their copies.
        std::mem::forget((runner, exit));
        Ok(tops)
    })
}

impl Stacks {
    /// The lowest usable address of the runners' stack (its guard page
    /// lies right below).
    pub(crate) fn runner_bottom(&self) -> usize {
        self.runner - SIZE
    }

    /// The exit task's stack: its lowest address and its size.
    pub(crate) fn exit_stack(&self) -> (usize, usize) {
        (self.exit - EXIT_SIZE, EXIT_SIZE)
    }

    /// The size of the runners' stack.
    pub(crate) const RUNNER_SIZE: usize = SIZE;
}

/// The tops of the two stacks (see [`stacks`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stacks {
    pub(crate) runner: usize,
    pub(crate) exit: usize,
}
