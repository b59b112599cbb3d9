//! Runs: one process running a closure inside a sandbox, seen from the test
//! process ([`runner`]), and the forwarding of what a sandbox prints into
//! the test's output ([`output`]).
//!
//! Runs may use `setup`, `diagnose`, `child` (to start the process), `fork`
//! (the launch it is handed), `proto`, `error` and `sys`; never the public
//! API above them.

pub(crate) mod output;
pub(crate) mod runner;
