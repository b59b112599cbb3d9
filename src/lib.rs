//! Hermetic Linux sandboxes for Rust tests: fresh user, mount, network, PID,
//! UTS and IPC namespaces per test, without root, Docker or a daemon.
//!
//! A test asks for a [`Sandbox`] and runs closures in it. Inside, the test
//! is root (mapped to the caller's own uid), has its own loopback and port
//! space with no route out, its own `/proc`, `/sys` and `/tmp`, and its own
//! hostname. Results (and panics) come back to the test; when the sandbox is
//! dropped, everything that ran in it is gone.
//!
//! # Quick start
//!
//! ```no_run
//! use hermetic::{isolated, Sandbox};
//! use rstest::rstest;
//!
//! #[rstest]
//! fn server_binds_its_usual_port(#[from(isolated)] ns: Sandbox) {
//!     let port = ns.run(|| {
//!         let listener = std::net::TcpListener::bind("127.0.0.1:8080").unwrap();
//!         listener.local_addr().unwrap().port()
//!     });
//!     assert_eq!(port, 8080); // and every other test may bind 8080 at the same time
//! }
//! ```
//!
//! Without rstest: [`Sandbox::new`] or [`Sandbox::builder`]. The fixtures
//! `isolated` and `network` come with the default feature `rstest`; with
//! `default-features = false` the crate does without rstest and its
//! dependencies.
//!
//! ```no_run
//! let sandbox = hermetic::Sandbox::builder().hostname("db").build()?;
//! let (uid, host) = sandbox.run(|| {
//!     (nix::unistd::getuid().as_raw(), nix::unistd::gethostname().unwrap().into_string().unwrap())
//! });
//! assert_eq!((uid, host.as_str()), (0, "db"));
//! # Ok::<(), hermetic::Error>(())
//! ```
//!
//! # Networks of sandboxes
//!
//! [`Network`] puts several sandboxes ("hosts") on one virtual segment,
//! rootless: each has `lo` and `eth0` with its own address and an
//! `/etc/hosts` naming every host; links can be partitioned, taken down and
//! shaped ([`LinkShape`]). The `network` fixture makes hosts `h1`..`hN`.
//!
//! ```no_run
//! let net = hermetic::Network::builder().host("db").host("app").build()?;
//! let _db = net.host("db").spawn(|| {
//!     let l = std::net::TcpListener::bind("0.0.0.0:5432").unwrap();
//!     let _ = l.accept();
//! })?;
//! net.host("app").run(|| drop(hermetic::connect_retry("db:5432")));
//! net.partition(&[&["db"], &["app"]])?;
//! # Ok::<(), hermetic::Error>(())
//! ```
//!
//! # How it works
//!
//! In one paragraph: PID 1 of each sandbox is a small `no_std` program of
//! the crate's own (`init/main.rs`), started with one `clone(CLONE_VM)` into
//! new namespaces and exec'd from memory, so no copy of the test process is
//! made (but for a sandbox made inside a closure, whose non-dumpable
//! process is copied by a plain `clone`); it walks a setup plan (mounts, the nested user namespace, hostname,
//! `lo`) and then only waits. Each [`Sandbox::run`] forks the test process;
//! the fork joins the init process's namespaces with one `setns` on its
//! pidfd and starts the process that runs the closure, whose result or
//! panic comes back as one bounded frame over a pipe ([`Error::Channel`] if
//! malformed, never a crash or a hang). What runs print is forwarded into
//! the test's own output, bounded by [`SandboxBuilder::output_limit`].
//! Dropping the sandbox kills the init process, and the kernel everything
//! in its PID namespace; each init process also dies with the test process
//! (a pidfd of it is its lifeline).
//!
//! The whole story (the init program's steps, why two user namespaces, the
//! boundary beyond namespaces, fork safety, networks and link faults, and
//! the source's layers) is one document: `docs/how-it-works.md`, in the
//! repository and in the package.
//!
//! # Requirements
//!
//! Linux 5.12 or later (pidfds, `setns` on a pidfd, `close_range`,
//! `mount_setattr`) on x86_64 or aarch64, with
//! unprivileged user namespaces. Hosts that restrict them (Ubuntu 23.10+ and
//! GitHub's `ubuntu-24.04` runners through AppArmor, `user.max_user_namespaces
//! = 0`, `kernel.unprivileged_userns_clone = 0`, Docker's default seccomp
//! profile) make [`Sandbox::new`] fail with an error that names the setting
//! and the command that lifts it.
//!
//! # Hosts that refuse namespaces
//!
//! [`check()`] probes the host for real and returns a [`HostReport`]: what
//! works, what does not, why, and the fix (its `Display` is the text that
//! `cargo run --example tour` prints). The same diagnosis
//! is attached to the errors of [`Sandbox::new`] and to the panic of the
//! `isolated` fixture.
//!
//! | host | symptom | remedy |
//! |---|---|---|
//! | Ubuntu 23.10+, 24.04, GitHub `ubuntu-24.04` runners | writing `uid_map` fails with `EPERM` (AppArmor `kernel.apparmor_restrict_unprivileged_userns = 1`) | `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; permanent: a file in `/etc/sysctl.d/`; in GitHub Actions, a step running that command before the tests |
//! | older Debian, hardened kernels | `clone` fails with `EPERM` (`kernel.unprivileged_userns_clone = 0`) | `sudo sysctl -w kernel.unprivileged_userns_clone=1` |
//! | RHEL/CentOS 7, exhausted limits | `clone` fails with `ENOSPC`/`EINVAL` (`user.max_user_namespaces` = 0 or reached) | `sudo sysctl -w user.max_user_namespaces=15000` |
//! | Docker's default seccomp profile | `clone` fails with `EPERM`, `clone3` with `ENOSYS` (`Seccomp: 2`) | `docker run --security-opt seccomp=unconfined --security-opt apparmor=unconfined` |
//! | containers that mask `/proc` | mounting a fresh `proc` fails with `EPERM` | podman `--security-opt unmask=ALL`, Docker `--security-opt systempaths=unconfined` |
//! | WSL1 | no real namespaces | use WSL2 |
//!
//! # What a closure must not rely on
//!
//! The closure runs in a child forked from a multi-threaded test process.
//! Only the calling thread exists in the child, so:
//!
//! - a lock another thread held at the moment of `fork` (a `Mutex` of
//!   yours) stays locked forever in the child: avoid locks shared with
//!   other threads. std's stdout and stderr locks are taken care of, and
//!   so is its panic-printing lock, as long as the panic hook this crate
//!   installs (which hands other panics to the one before it) is not
//!   replaced, and so are the locks std takes as each thread starts and
//!   ends, as it captures a backtrace, around the panic hook and around
//!   the environment (found in the test binary's symbol table: in a binary
//!   stripped of its symbols, a closure can wait for ever if another
//!   thread was starting or ending a thread, capturing a backtrace,
//!   setting a panic hook or an environment variable at the fork);
//! - thread-locals start fresh, as on a new thread: values the test thread
//!   gave them are not seen;
//! - the closure sees a snapshot of memory: changes it makes are not seen
//!   by the test, only its result is;
//! - other threads' work (thread pools, async runtimes) does not exist in
//!   the child: start what you need inside the closure, knowing that a
//!   runtime built in a fork of a process whose runtime is busy can hang
//!   on a lock copied locked; for async tests, [`isolate_test_async`]
//!   forks nothing and is the safe way (the README's "Async code");
//! - file descriptors the test process opened are inherited, including
//!   other tests' sockets (the sandbox's network namespace still isolates
//!   new sockets), and through them the files they name, writable where
//!   the caller may write them whatever the host mode (`/proc/self/fd/N`
//!   reopens on the fd's own mount); so are `MAP_SHARED` mappings, which a
//!   closure writes through; the crate's own fds (pipes, pidfds, other
//!   sandboxes') never are;
//! - the host's files are read-only by default, and `/tmp` and `/dev/shm`
//!   are the sandbox's own tmpfs mounts: host files under `/tmp` are not
//!   visible unless bound in with [`SandboxBuilder::bind`] (the working
//!   directory and the target dir are, when they lie there); with
//!   [`HostMode::CopyOnWrite`] (see [`SandboxBuilder::host`]) the host's
//!   files are seen as they are and every write lands in a private layer
//!   of the sandbox's (in its memory, or for the test's own tree in a
//!   private directory on disk, removed with it), but `/tmp` and
//!   `/var/tmp` stay the sandbox's own: of the host's, only what the test
//!   needs there (its tree, the target dir) is seen, under a layer;
//! - mounts are locked: a closure that needs mounts of its own makes itself
//!   a mount namespace first (`unshare(CLONE_NEWNS)`);
//! - its stdin is `/dev/null`, whatever the test's is;
//! - it is non-dumpable, so that no other process inside can reach its
//!   memory or its result pipe: no core files, and rootless its owner-only
//!   `/proc/self` files (`environ`, `auxv`, `syscall`, `mem`) cannot be
//!   read (`prctl(PR_SET_DUMPABLE, 1)` gives that protection up for its
//!   run);
//! - it is under the sandbox's seccomp filter: `keyctl`, `add_key`,
//!   `request_key` fail with `EPERM` (unless [`SandboxBuilder::keyring`]),
//!   `clone` with `CLONE_PARENT` or `CLONE_NEWCGROUP` with `EPERM`, `clone3`
//!   with `ENOSYS` (the C library falls back to `clone`), the terminal
//!   ioctls `TIOCSTI` and `TIOCLINUX` with `EPERM` (the README's "What is
//!   isolated").
//!
//! The crate's own setup after `fork` makes only system calls on data
//! prepared beforehand: no allocation, no locks. One exception is
//! deliberate: where a run cannot borrow a copy of the parked thread's
//! thread-local storage (with `HERMETIC_RUNNER_THREAD=1`, with a C library
//! other than glibc, another target, or a glibc whose layout is not the
//! one expected), it starts a thread for the closure
//! with `pthread_create`, which maps a stack and may take the C library's
//! own locks, once no other task shares its memory, as the closure's own
//! code may.
//!
//! # Resource leaking
//!
//! Nothing outlives the sandbox: processes die with its PID namespace, and
//! its mounts, network devices and tmpfs contents with its namespaces; a
//! copy-on-write layer on disk is removed by its drop, or, after a
//! `SIGKILL`, by the next process that makes one. A
//! sandbox costs one process (its init process; with `HERMETIC_KEEP` set, a
//! second, its keeper `hermetic-keeper`, see [`Sandbox::keep`]) and seven
//! fds (a pidfd of the init process, the write end of its control pipe, both ends of its
//! stdout and stderr pipes, and the init process's `children` file in
//! `/proc`; tests/leaks.rs counts them); with limits enforced by cgroups,
//! its cgroups' `cgroup.procs` fds; and, once something in it can print
//! between runs, one output-forwarding thread and its wake-up pipe: all
//! released on drop. A run leaves nothing of its own behind. Once
//! per test process, a pidfd of the process itself (the lifeline), a sealed
//! memfd holding the init program, one thread named `hermetic-tls`,
//! parked for good (runs borrow a copy of its unused thread-local
//! storage, see docs/performance.md), one thread named `hermetic-free`,
//! started while the first sandbox sets up, which takes dropped sandboxes'
//! mount namespaces down beside the test, with one fd (the send end of its
//! socket; the thread's fd table of its own holds the other end), and two
//! stacks a run's processes
//! start on (8 MiB and 16 KiB of address space, which the test process
//! never touches: each run's fork writes its own copy).
//!
//! # What is isolated
//!
//! The README's table "What is isolated, and what is not" lists what code
//! inside a sandbox can and cannot do to the test process and the host; it
//! is a test harness, not a defence against kernel exploits.
#![deny(missing_docs)]
#![deny(unsafe_code)]

// Each folder is a layer. Top to bottom: the root (this file, fixtures,
// helpers), check, net, sandbox, run, setup, diagnose, child, fork, proto,
// error, sys; a module may use its own layer and those below, never one
// above. tests/it/layers.rs holds that order and checks it.
mod check;
mod child;
mod diagnose;
mod error;
#[cfg(feature = "rstest")]
mod fixtures;
mod fork;
mod helpers;
mod net;
mod proto;
mod run;
mod sandbox;
mod setup;
mod sys;

pub use check::{Finding, HostReport, Probe, Status, check};
pub use error::{Error, PanicLocation};
#[cfg(feature = "rstest")]
pub use fixtures::{isolated, network};
pub use helpers::{CONNECT_PATIENCE, connect_retry};
pub use net::shape::LinkShape;
pub use net::{Host, MAX_HOSTS, Network, NetworkBuilder};
pub use sandbox::isolate::{isolate_test, isolate_test_async};
#[doc(hidden)]
pub use sandbox::kept::__kept_command_on_terminal;
pub use sandbox::kept::kept_command;
pub use sandbox::{
    DEFAULT_HOSTNAME, DEFAULT_MAX_RESULT_SIZE, Killer, Sandbox, SandboxBuilder, Spawned,
};
#[doc(hidden)]
pub use sandbox::{Program as __Program, ProgramEnd as __ProgramEnd};
pub use setup::host::HostMode;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Values whose loss is a bug are `#[must_use]`: these must not compile.
///
/// A shape's `with_*` returns the changed shape; alone, it changes nothing:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// let shape = hermetic::LinkShape::delay(std::time::Duration::from_millis(5));
/// shape.with_loss(5.0);
/// ```
///
/// ```
/// #![deny(unused_must_use)]
/// let shape = hermetic::LinkShape::delay(std::time::Duration::from_millis(5));
/// let shape = shape.with_loss(5.0);
/// # let _ = shape;
/// ```
///
/// A builder dropped builds nothing:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// hermetic::Sandbox::builder();
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// hermetic::Network::builder();
/// ```
///
/// A host report nobody reads, a killer never used, a spawned closure
/// dropped (which kills it at once):
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// hermetic::check();
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn f(sandbox: &hermetic::Sandbox) {
///     sandbox.killer().unwrap();
/// }
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn f(sandbox: &hermetic::Sandbox) {
///     sandbox.spawn(|| ()).unwrap();
/// }
/// ```
///
/// The same, used:
///
/// ```
/// #![deny(unused_must_use)]
/// fn f(sandbox: &hermetic::Sandbox) -> Result<(), hermetic::Error> {
///     let _builder = hermetic::Sandbox::builder();
///     let _net = hermetic::Network::builder();
///     let _report = hermetic::check();
///     let killer = sandbox.killer()?;
///     let spawned = sandbox.spawn(|| ())?;
///     spawned.join()?;
///     killer.kill()
/// }
/// ```
#[cfg(doctest)]
struct MustUse;

/// The fd on which the current process sends its closure's result, when it
/// is a process running a closure inside a sandbox.
///
/// Not part of the stable API: it exists so that tests can prove that a
/// closure scribbling on its own result channel is reported as an error.
#[doc(hidden)]
pub fn __result_channel_fd() -> Option<std::os::fd::RawFd> {
    child::result_fd()
}

/// For the `hermetic` binary: a whole or decimal number as its durations
/// and `HERMETIC_TIMEOUT` take it (`10`, `0.5`). Not part of the stable
/// API.
#[doc(hidden)]
pub fn __decimal(text: &str) -> Option<f64> {
    sandbox::decimal(text)
}

/// Entry points for fuzzing the frame decoder (the code that reads bytes a
/// sandboxed child sent). Not part of the stable API.
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::proto::frame::Decoded;

    /// Feeds `bytes` to a decoder with payload limit `limit`, in chunks of
    /// the sizes in `chunks` (cycled; empty means all at once).
    pub fn decode(bytes: &[u8], limit: usize, chunks: &[usize]) -> Decoded {
        crate::proto::frame::fuzz_decode(bytes, limit, chunks)
    }
}
