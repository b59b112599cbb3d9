//! Parent-side preparation for a fork, in the test process: what must be
//! ready before `fork`/`clone` so that the child only makes system calls.
//!
//! - [`locks`]: the locks taken around a fork ([`ForkLocks`](locks::ForkLocks)),
//!   so that the copy finds stdout, stderr, the panic lock and the list of
//!   hermetic's fds free;
//! - [`std_locks`]: std's private locks a fork holds (around each thread's
//!   start and end, around a backtrace, the panic hook and the
//!   environment), found in the executable's symbol table;
//! - [`tls`]: the parked thread whose TLS runners borrow;
//! - [`launch`]: what a sandbox's init program is started with (the
//!   program's memfd, the launched child's stack and arguments, the plan);
//! - [`stack`]: the stacks a run's processes start on, mapped once;
//! - [`panic_hook`]: the hook that records where a closure panicked,
//!   installed before forking because `set_hook` takes a lock.
//!
//! Layer: below `child`, which takes these before it forks and gives the
//! locks back after; above `proto`. It uses only `error` and `sys`.

pub(crate) mod launch;
pub(crate) mod locks;
pub(crate) mod panic_hook;
pub(crate) mod stack;
pub(crate) mod std_locks;
pub(crate) mod tls;
