//! Setup: what a sandbox is made of, decided in the test process before
//! anything starts.
//!
//! - [`plan`]: the builder's options validated and turned into the init
//!   program's list of steps;
//! - [`host`]: the host's mount table as a sandbox sees it (the three
//!   [`HostMode`](crate::HostMode)s);
//! - [`disk`]: the copy-on-write upper layers kept on the host's disk (the
//!   test's own tree), and their removal;
//! - [`idmap`]: the uid/gid maps (many ids through `newuidmap`, or one);
//! - [`limits`]: cgroups and rlimits;
//! - [`seccomp`]: the filter every process running the user's code is put
//!   under;
//! - [`lifeline`]: what makes every init process die with the test process.
//!
//! Setup may use the layers below it: `diagnose`, `child`, `proto`, `error`,
//! `sys`. It never uses the public API above it (`sandbox`, `net`, `run`,
//! `check`).

pub(crate) mod disk;
pub(crate) mod host;
pub(crate) mod idmap;
pub(crate) mod lifeline;
pub(crate) mod limits;
pub(crate) mod plan;
pub(crate) mod seccomp;
