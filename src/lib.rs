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
//! - **Init.** PID 1 of a sandbox is a small program of the crate's own
//!   (`init/main.rs`: `no_std`, static, about 10 KB, built by `build.rs`),
//!   started with one `clone(CLONE_VM)` into new user, mount and PID
//!   namespaces whose child writes the id maps (or waits for the test
//!   process to write them) and `execveat`s an in-memory copy of it: no copy
//!   of the test process is made, and PID 1 then holds nothing of the test
//!   process. Right before that exec it starts a helper in an inner user
//!   namespace, which makes the sandbox's network, UTS and IPC namespaces
//!   meanwhile on another CPU and is ended (and reaped) before the sandbox
//!   is ready. The init program walks a setup plan sent over a pipe
//!   (private mounts; the inner user namespace's maps, and its namespaces
//!   joined before `/sys`; the host's files read-only and its device nodes
//!   unopenable but for `/dev/null` and the like; fresh `/proc`, with
//!   `/proc/sys` and the like read-only, and `/sys`; tmpfs on `/tmp` and
//!   `/dev/shm`; your mounts and read-only files; hostname; `lo` up),
//!   enters the inner user namespace, joins a session keyring of the
//!   sandbox's own, starts a session (and process group) of its own, reports
//!   "ready" or the exact step that failed (with errno), and then only
//!   waits. It ignores `SIGCHLD`, so the kernel reaps every orphan inside,
//!   and is not dumpable, so nothing inside can trace it or read its memory.
//! - **Runs.** Each [`Sandbox::run`] forks the test process; the child joins
//!   the init process's namespaces with one `setns` on its pidfd, closes
//!   every fd of the crate's own, and clones the process that runs the
//!   closure as a sibling sharing its memory (so page tables are copied
//!   once), then exits; the closure starts only once it is gone, so no
//!   process outside the sandbox shares the closure's memory. Before the
//!   closure, that process starts a session of its own (nothing inside can
//!   signal the test's process group, or has a controlling terminal),
//!   installs a seccomp filter (no `TIOCSTI`, no keys unless
//!   [`SandboxBuilder::keyring`], no `CLONE_PARENT`, no cgroup namespace)
//!   and stays non-dumpable: nothing else inside can trace it, read its
//!   memory or fds, or forge its result. That process
//!   is inside the sandbox's PID namespace and the inner user namespace
//!   (root over the sandbox's network, no power over its mounts) and a
//!   direct child of the test process. The closure's result or panic comes
//!   back as one length-prefixed frame over a pipe; the test process never
//!   allocates more than a frame's bound. A run returns once that process
//!   has exited and been reaped; freeing its copy of the test process's
//!   memory is left to a short-lived task of the sandbox (`hermetic-exit`,
//!   sharing that memory, and nothing else's), which the init process reaps.
//! - **State** lives as long as the sandbox: files in its `/tmp`, servers
//!   started with [`Sandbox::spawn`], processes started with
//!   [`Sandbox::command`].
//! - **Teardown.** Dropping the sandbox kills the init process; when PID 1 of a PID
//!   namespace dies, the kernel kills every process in it. If the test
//!   process itself dies (even by `SIGKILL`), each init process sees its pidfd of
//!   the test process become readable and exits, with the same effect: this
//!   lifeline is tied to the process, not to the thread that made the
//!   sandbox.
//! - **Channel.** Each run's closure sends one frame back: a tag, a
//!   little-endian `u64` length and a `postcard` payload (the value, or the
//!   panic's message and location). The test process refuses a length over
//!   [`SandboxBuilder::max_result_size`] before allocating anything and grows
//!   its buffer only as bytes arrive; anything malformed is an
//!   [`Error::Channel`], never a crash or a hang.
//! - **Output.** What runs print to fds 1 and 2 is forwarded into the test's
//!   own output (libtest's capture under `cargo test`, the test's stdout and
//!   stderr under `cargo nextest run`): by the thread doing a run while
//!   nothing else in the sandbox can print, by a forwarding thread from the
//!   first `spawn`, or once a run leaves processes behind. What is kept is
//!   bounded ([`SandboxBuilder::output_limit`]: of each stream, per run, the
//!   first and the last MiB, with a line saying how many bytes between them
//!   were dropped), so a closure printing without end cannot grow the test
//!   process.
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
//! [`check()`] probes the host for real and prints what works, what does not,
//! why, and the fix (`cargo run --example tour` shows it). The same diagnosis
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
//!   replaced; `std::env::set_var` racing with a run can still leave the
//!   environment locked in the child;
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
//!   new sockets); the crate's own (pipes, pidfds, other sandboxes') never
//!   are;
//! - the host's files are read-only by default, and `/tmp` and `/dev/shm`
//!   are the sandbox's own tmpfs mounts: host files under `/tmp` are not
//!   visible unless bound in with [`SandboxBuilder::bind`] (the working
//!   directory and the target dir are, when they lie there); with
//!   [`HostMode::CopyOnWrite`] (see [`SandboxBuilder::host`]) the host's
//!   files, `/tmp` included, are seen as they are and every write lands in
//!   a private layer of the sandbox's;
//! - mounts are locked: a closure that needs mounts of its own makes itself
//!   a mount namespace first (`unshare(CLONE_NEWNS)`).
//!
//! The crate's own setup after `fork` makes only system calls on data
//! prepared beforehand: no allocation, no locks.
//!
//! # Resource leaking
//!
//! Nothing outlives the sandbox: processes die with its PID namespace, and
//! its mounts, network devices and tmpfs contents with its namespaces. A
//! sandbox costs one process (its init process), a pidfd and four pipe fds;
//! and, once something in it can print between runs, one output-forwarding
//! thread: all released on drop. A run leaves nothing of its own behind. Once
//! per test process, a pidfd of the process itself (the lifeline), a sealed
//! memfd holding the init program, and one thread named `hermetic-tls`,
//! parked for good: runs borrow a copy of its (unused) thread-local
//! storage, see docs/performance.md.
//!
//! # What is isolated
//!
//! The README's table "What is isolated, and what is not" lists what code
//! inside a sandbox can and cannot do to the test process and the host; it
//! is a test harness, not a defence against kernel exploits.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod channel;
mod check;
mod child;
mod diagnostics;
mod error;
mod fds;
#[cfg(feature = "rstest")]
mod fixtures;
mod helpers;
mod host;
mod idmap;
mod isolate;
mod kept;
mod lifeline;
mod limits;
mod net;
mod netlink;
mod output;
mod plan;
mod protocol;
mod relay;
mod run;
mod sandbox;
mod seccomp;
mod shape;
mod sockdiag;
mod sys;
mod wire;

pub use check::{Finding, HostReport, Probe, Status, check};
pub use error::{Error, PanicLocation};
#[cfg(feature = "rstest")]
pub use fixtures::{isolated, network};
pub use helpers::{CONNECT_PATIENCE, connect_retry};
pub use host::HostMode;
pub use isolate::{isolate_test, isolate_test_async};
pub use kept::kept_command;
pub use net::{Host, MAX_HOSTS, Network, NetworkBuilder};
pub use sandbox::{
    DEFAULT_HOSTNAME, DEFAULT_MAX_RESULT_SIZE, Killer, Sandbox, SandboxBuilder, Spawned,
};
pub use shape::LinkShape;

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

/// Entry points for fuzzing the frame decoder (the code that reads bytes a
/// sandboxed child sent). Not part of the stable API.
#[doc(hidden)]
pub mod __fuzz {
    /// What decoding some bytes did.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Decoded {
        /// The complete frame's tag and payload length, if one arrived.
        pub frame: Option<(u8, usize)>,
        /// The error, if the bytes were refused.
        pub error: Option<String>,
        /// The most the decoder ever reserved for the payload.
        pub max_capacity: usize,
    }

    /// Feeds `bytes` to a decoder with payload limit `limit`, in chunks of
    /// the sizes in `chunks` (cycled; empty means all at once).
    pub fn decode(bytes: &[u8], limit: usize, chunks: &[usize]) -> Decoded {
        crate::channel::fuzz_decode(bytes, limit, chunks)
    }
}
