//! The integration tests that can share a process: one test binary, one
//! module per subject, so that tokio, nix and proptest are linked once.
//!
//! Tests that need a process of their own are binaries of their own, each
//! saying why at its top: `churn` and `leaks` count process-wide resources
//! (fds, threads, children, memory) that tests running beside them would
//! change; `sigchld` changes the process's `SIGCHLD` disposition; `memory`
//! installs a signal handler and counts page faults, which any other test's
//! fork causes; `isolate_async` re-executes its tests by name, each in a
//! process that must hold only that file's tests.
//!
//! A test that must run alone re-executes itself as an `#[ignore]`d helper
//! through `common::run_self` (or `common::self_command` and
//! `common::self_invocation`, the same invocation), in a process of its
//! own; a test that cannot check what it is for on this host says so with
//! `common::skip`.

#[path = "../common/mod.rs"]
mod common;

mod attacks;
mod attacks10;
mod attacks11;
mod attacks12;
mod attacks13;
mod attacks14;
mod attacks15;
mod attacks16;
mod attacks17;
mod attacks18;
mod attacks19;
mod attacks2;
mod attacks20;
mod attacks3;
mod attacks4;
mod attacks5;
mod attacks6;
mod attacks7;
mod attacks8;
mod attacks9;
mod bad_input;
mod boundary;
mod cli;
mod deaths;
mod diagnostics;
mod disk_attacks;
mod faults;
mod fuzz_frames;
mod host;
mod ids_attacks;
mod init_constants;
mod isolate;
mod isolation;
mod keep;
mod layers;
mod limits;
mod link_faults;
mod mounts;
mod namespaces;
mod network;
mod networks;
mod output;
mod panics;
mod persistence;
mod pid;
mod postgres;
mod run_attacks;
mod runner_mutexes;
mod runs;
mod teardown;
mod terminal;
mod threads;
mod trial;
mod trial3;
mod trial4;
mod trial5;
mod trial6;
mod users;
