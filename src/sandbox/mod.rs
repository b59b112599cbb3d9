//! The public sandbox: its builder, its runs, and its teardown.
//!
//! The public API's layer: this folder holds the [`Sandbox`] (here), its
//! builder ([`builder`]: options and `build()`), [`Spawned`] ([`spawned`]),
//! [`isolate`] (`isolate_test`) and [`kept`] (`kept_command`).
//! Above it sit only `net` (networks are made of sandboxes), `check` and
//! the crate root; it may use every layer below: `run`, `setup`,
//! `diagnose`, `child`, `proto`, `error`, `sys`.

mod builder;
pub(crate) use builder::decimal;
pub(crate) mod isolate;
pub(crate) mod kept;
mod reclaim;
mod spawned;

#[doc(hidden)]
pub use builder::Program;
pub use builder::SandboxBuilder;
pub use spawned::Spawned;
pub(crate) use spawned::SpawnedList;

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::os::fd::{AsFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::child::exec;
use crate::diagnose;
use crate::error::Error;
use crate::run::output::Output;
use crate::run::runner::{Ended, Runner};
use crate::sys;
use crate::sys::fd::Fd;

/// The hostname a sandbox gets unless told otherwise.
pub const DEFAULT_HOSTNAME: &str = "sandbox";

/// The largest result a run may send back unless told otherwise: 256 MiB.
pub const DEFAULT_MAX_RESULT_SIZE: usize = 256 << 20;

/// Namespaces every sandbox has.
pub(crate) const BASE_NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC;

/// A set of fresh namespaces with a process holding them open.
///
/// Made by [`Sandbox::new`], [`Sandbox::builder`] or the
/// `isolated` fixture. Closures given to [`run`](Self::run)
/// and [`spawn`](Self::spawn) execute inside, in a child forked from the test
/// process. Dropping the sandbox kills every process in it.
///
/// `Sandbox` is `Send + Sync`: several threads may run closures in one
/// sandbox at once.
#[derive(Debug)]
pub struct Sandbox {
    init_pid: libc::pid_t,
    /// The process to reap once the init process has ended: the init
    /// process itself (our child), or, for a network's host made inside a
    /// sandbox, the joiner that stays as its parent.
    reap_pid: libc::pid_t,
    init_pidfd: Fd,
    nstypes: libc::c_int,
    hostname: String,
    timeout: Option<Duration>,
    max_result_size: usize,
    /// Runners started by `spawn` and not yet reaped by their handle.
    /// (runner, its joiner) pairs.
    spawned: Arc<SpawnedList>,
    /// Set by a [`Killer`]: the init process is dying or dead.
    killed: Arc<AtomicBool>,
    /// Dropped last, once every process that could write to it is gone.
    output: Arc<Output>,
    /// `/proc/INIT/task/INIT/children`, read again from the start
    /// after each run (None if it could not be opened).
    init_children: Option<Fd>,
    /// The init process's control channel (see [`Sandbox::keep`]).
    control: Fd,
    /// Kept: not torn down when dropped.
    kept: AtomicBool,
    /// What its processes are put under (user, cgroups, rlimits).
    confinement: crate::child::confine::Confinement,
    /// Its cgroups, if its limits are enforced that way; removed after the
    /// init process (so after every process of the sandbox) is gone.
    cgroups: Option<crate::setup::limits::Cgroups>,
    /// The limits asked for, to name the one a run reached.
    limits: crate::setup::limits::Limits,
    /// Its outer user namespace's uid and gid maps where they map more
    /// than one id (ids 0-65535; `None`: one id), which a network's hosts,
    /// sharing it, follow too.
    outer_maps: Option<(String, String)>,
    /// With a program its init process started: where it says how it
    /// ended (see [`SandboxBuilder::__program`]).
    pub(crate) program_report: Option<Fd>,
    /// Copy-on-write: its upper layers on disk, removed once its processes
    /// (and so its overlays) are gone, or left to a kept sandbox.
    disk_layers: Option<crate::setup::disk::DiskLayers>,
    /// With `HERMETIC_KEEP` set: the keeper's pid and a pidfd of it, taken
    /// as the sandbox became ready (before anything inside ran), so that a
    /// process inside that kills it and takes its name is never named.
    pub(crate) keeper: Option<(u32, Fd)>,
    /// The process that made it (`std::process::id()`): the one its runs,
    /// commands and spawned closures start from. A run's closure is a copy
    /// of it, holding this handle with hermetic's fds closed.
    pub(crate) owner: u32,
    /// A failed run's sandbox is kept (`HERMETIC_KEEP`, or the builder's
    /// `__keep_failed`).
    pub(crate) keep_failed: bool,
    /// A run or spawn failed to start: its joiner may have made a runner
    /// (our child, in the sandbox's PID namespace) that it could not
    /// report, which the teardown must reap (see [`reap_strays`]).
    strays: AtomicBool,
    /// Set by the join of a spawned closure that failed, when failed
    /// sandboxes are kept: the sandbox is kept when dropped (the handle
    /// it was joined by has none of the sandbox's).
    pub(crate) keep_when_dropped: Arc<AtomicBool>,
}

/// How the program of [`SandboxBuilder::__program`] ended.
#[doc(hidden)]
#[derive(Debug)]
pub enum ProgramEnd {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// It could not be started: its `execve` (or what comes before it in
    /// its process) failed.
    NotStarted(std::io::Error),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Output")
    }
}

impl Sandbox {
    /// A sandbox with the default options.
    ///
    /// # Errors
    ///
    /// As [`SandboxBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let sandbox = hermetic::Sandbox::new()?;
    /// assert_eq!(sandbox.run(|| nix::unistd::getuid().as_raw()), 0);
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    pub fn new() -> Result<Sandbox, Error> {
        SandboxBuilder::new().build()
    }

    /// A builder for a sandbox with options.
    #[must_use = "a builder does nothing until build() is called"]
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::new()
    }

    /// The hostname inside.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The pid, in the caller's PID namespace, of the sandbox's init
    /// process. Handy for debugging: `nsenter -t PID -a` (as root) or
    /// `nsenter -t PID -U --preserve-credentials -a` enters the sandbox.
    pub fn pid(&self) -> u32 {
        self.init_pid as u32
    }

    /// Runs `f` inside the sandbox and returns its result.
    ///
    /// `f` runs in a child forked from the test process, so it may capture
    /// anything (by move or by reference: it sees a snapshot of the test
    /// process as it was when `run` was called). Only the result crosses back,
    /// serialised with `postcard`.
    ///
    /// # Panics
    ///
    /// When `f` panics, `run` panics with the same message and the location
    /// of the panic inside `f`, so `#[should_panic(expected = "...")]` works.
    /// It also panics, with a message saying what happened and what to do,
    /// when the run fails otherwise (killed by a signal, exited early, timed
    /// out); use [`try_run`](Self::try_run) to get those as [`Error`]s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let sandbox = hermetic::Sandbox::new()?;
    /// let port = sandbox.run(|| {
    ///     let l = std::net::TcpListener::bind("127.0.0.1:8080").unwrap();
    ///     l.local_addr().unwrap().port()
    /// });
    /// assert_eq!(port, 8080);
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    #[track_caller]
    pub fn run<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T,
        T: Serialize + DeserializeOwned,
    {
        match self.try_run(f) {
            Ok(v) => v,
            Err(e @ Error::Panicked { .. }) => panic!("{e}{}", self.kept_note()),
            // The error's message carries its advice; others get the one
            // thing a panic cannot say.
            Err(e) if e.carries_advice() => panic!("hermetic: {e}{}", self.kept_note()),
            Err(e) => panic!(
                "hermetic: {e}\nuse try_run to handle this error yourself{}",
                self.kept_note()
            ),
        }
    }

    /// Runs `f` inside the sandbox; a panic or death of `f` is an error.
    ///
    /// # Errors
    ///
    /// [`Error::Panicked`] (message and location), [`Error::Killed`],
    /// [`Error::Exited`], [`Error::TimedOut`], [`Error::Encode`], [`Error::Decode`] and
    /// [`Error::Channel`] for what happened to `f`; [`Error::SandboxDead`]
    /// when the sandbox was killed, [`Error::Sys`] when a run could not be
    /// started otherwise. After any of them but [`Error::SandboxDead`], the
    /// sandbox stays usable.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use hermetic::{Error, Sandbox};
    ///
    /// let sandbox = Sandbox::new()?;
    /// match sandbox.try_run(|| -> u32 { std::process::abort() }) {
    ///     Err(Error::Killed { signal, .. }) => assert_eq!(signal, "SIGABRT"),
    ///     other => panic!("unexpected: {other:?}"),
    /// }
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    pub fn try_run<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T,
        T: Serialize + DeserializeOwned,
    {
        self.try_run_keeping(&[], f)
    }

    /// [`try_run`](Self::try_run), handing the run the fds of hermetic's
    /// in `keep` (which runs are otherwise never given).
    pub(crate) fn try_run_keeping<F, T>(&self, keep: &[RawFd], f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T,
        T: Serialize + DeserializeOwned,
    {
        self.try_run_confined(keep, &self.confinement, f)
    }

    /// [`try_run`](Self::try_run) as root inside with every capability of
    /// the sandbox's user namespace, whatever user the sandbox runs its
    /// closures as ([`SandboxBuilder::user`]): for hermetic's own setup
    /// inside (a network host's address and route), never for user code.
    pub(crate) fn try_run_as_root<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T,
        T: Serialize + DeserializeOwned,
    {
        let root = crate::child::confine::Confinement {
            drop_caps: false,
            set_ids: None,
            cgroup_procs: self.confinement.cgroup_procs.clone(),
            rlimits: self.confinement.rlimits,
            filter: self.confinement.filter,
        };
        self.try_run_confined(&[], &root, f)
    }

    fn try_run_confined<F, T>(
        &self,
        keep: &[RawFd],
        confinement: &crate::child::confine::Confinement,
        f: F,
    ) -> Result<T, Error>
    where
        F: FnOnce() -> T,
        T: Serialize + DeserializeOwned,
    {
        self.check_alive()?;
        let limit_names = self.limit_names();
        let result = Runner::start(
            &self.init_pidfd,
            self.nstypes,
            confinement,
            self.output.fds(),
            keep,
            false,
            f,
        )
        .inspect_err(|_| self.strays.store(true, Ordering::SeqCst))
        .map(
            |mut runner| match runner.wait(self.timeout, self.max_result_size, &self.output) {
                Ended::Frame {
                    tag,
                    payload,
                    made_nothing,
                } => (
                    crate::proto::frame::decode_outcome(tag, &payload),
                    made_nothing,
                ),
                Ended::Died(e) => (Err(e), false),
            },
        )
        .unwrap_or_else(|e| (Err(e), false));
        let (result, made_nothing) = result;
        self.output.end_run();
        // A run that made no process (as its runner saw) cannot have left
        // one running: nothing to look for.
        if !made_nothing {
            self.forward_if_left_running();
        }
        let result = result
            .map_err(|e| limit_names.name(e))
            .map_err(|e| self.name_stuck_spawned(e));
        if let Err(e) = &result
            && ran_and_failed(e)
            && let Some(Ok(kept)) =
                self.__keep_if_asked("HERMETIC_KEEP is set: the sandbox of this failed run")
        {
            eprintln!("{kept}");
        }
        result
    }

    /// Keeps the sandbox: it is not torn down when dropped, and outlives the
    /// test process, until its init process ([`pid`](Self::pid)) is killed
    /// (`kill -9 PID`). Returns the command that runs a program inside it
    /// (append the program): `nsenter -t PID -U -m -n -p -u -i
    /// --preserve-credentials`.
    ///
    /// With `HERMETIC_KEEP=1` in the environment, the sandbox of a run that
    /// fails (panic, death, timeout) is kept this way, and the failure
    /// says so, with the command. Sandboxes made while it is set also get a
    /// *keeper*, a process that waits in the user namespace that owns the
    /// sandbox's mounts: the command goes through it and works as root and
    /// rootless, as root inside with every capability over the sandbox's
    /// mounts and no seccomp filter (a shell for looking around, not a
    /// sandboxed process: the line `HERMETIC_KEEP` prints adds a shell that
    /// gives the capabilities up, with a clean environment, so that nothing
    /// a program inside left in its `$HOME` runs with them). Without one (keep called on a
    /// sandbox made without the variable) the command works as root only:
    /// the kernel lets an unprivileged process enter the sandbox's mount
    /// and PID namespaces only from that user namespace.
    ///
    /// # Errors
    ///
    /// [`Error::SandboxDead`] if the init process is gone; [`Error::Sys`] if
    /// it could not be told.
    pub fn keep(&self) -> Result<String, Error> {
        if !self.kept.load(Ordering::SeqCst) {
            self.check_alive()?;
            sys::write_all(self.control.as_fd(), &[crate::proto::wire::CONTROL_KEEP]).map_err(
                |e| {
                    Error::sys(
                        "telling the init process to keep the sandbox",
                        std::io::Error::from_raw_os_error(e),
                    )
                },
            )?;
            self.kept.store(true, Ordering::SeqCst);
        }
        Ok(self
            .enter_command()
            .unwrap_or_else(|| self.enter_through(self.init_pid as u32)))
    }

    /// With `HERMETIC_KEEP` set, keeps the sandbox (see [`keep`](Self::keep))
    /// and returns the line that says so: `what` (who is kept, and why) is
    /// kept, and how to look inside. `None` without the variable.
    ///
    /// Not part of the stable API: the `hermetic` binary keeps the sandbox
    /// of a program that failed with it, in the library's words.
    #[doc(hidden)]
    pub fn __keep_if_asked(&self, what: &str) -> Option<Result<String, Error>> {
        self.keep_failed.then(|| {
            self.keep()
                .map(|_| kept_message(what, self.init_pid, self.enter_command().as_deref()))
        })
    }

    /// The `nsenter` command that reaches inside: through the keeper (see
    /// `SandboxBuilder` and `HERMETIC_KEEP`), whose user namespace owns the
    /// mounts, so that it works rootless too; else through the init
    /// process, which works as root.
    ///
    /// `None` where the sandbox was made with a keeper and a process inside
    /// has killed it (before the sandbox was ready, too: see
    /// [`find_keeper`]): through the init process,
    /// the line would lead into
    /// the user namespace of the processes inside, not the one that owns
    /// them.
    pub(crate) fn enter_command(&self) -> Option<String> {
        match (self.keeper_pid(), &self.keeper) {
            (Some(keeper), _) => Some(self.enter_through(keeper)),
            // Made with a keeper (`HERMETIC_KEEP`), which is gone, or was
            // not found as the sandbox became ready.
            (None, Some(_)) => None,
            (None, None) if self.keep_failed => None,
            (None, None) => Some(self.enter_through(self.init_pid as u32)),
        }
    }

    /// `nsenter` into every namespace of the process `target`.
    fn enter_through(&self, target: u32) -> String {
        format!("nsenter -t {target} -U -m -n -p -u -i --preserve-credentials")
    }

    /// The keeper's pid (in this process's PID namespace), if the sandbox
    /// has one and it still lives (see [`find_keeper`]).
    fn keeper_pid(&self) -> Option<u32> {
        let (pid, pidfd) = self.keeper.as_ref()?;
        sys::pidfd_alive(pidfd.as_fd()).then_some(())?;
        Some(*pid)
    }

    /// An error of the sandbox's own start or of its init process's end,
    /// told as its memory limit if the memory cgroup's OOM killer ended the
    /// init process: a limit too small for the sandbox itself.
    pub(crate) fn name_a_limit_too_small(&self, e: Error) -> Error {
        match self.limit_names_since_start().memory_killed() {
            Some(bytes) => Error::InvalidOption {
                option: "memory_limit",
                reason: format!(
                    "{}: the sandbox's own init process was killed by it (the memory \
                     cgroup's OOM killer); a sandbox needs at least about 1 MiB ({e})",
                    crate::setup::limits::bytes(bytes)
                ),
            },
            None => e,
        }
    }

    /// What names the limit a process started now dies of (see
    /// [`LimitNames`]).
    pub(crate) fn limit_names(&self) -> LimitNames {
        let memory_cgroup = self.cgroups.as_ref().filter(|c| c.memory);
        LimitNames {
            oom: memory_cgroup.and_then(|c| Some((c.oom_events()?.to_path_buf(), c.oom_kills()))),
            cgroup_memory: memory_cgroup.is_some(),
            limits: self.limits,
        }
    }

    /// [`limit_names`](Self::limit_names) counting every OOM kill since the
    /// sandbox was made: for its init process and the program it started.
    fn limit_names_since_start(&self) -> LimitNames {
        let mut names = self.limit_names();
        if let Some((_, before)) = &mut names.oom {
            *before = 0;
        }
        names
    }

    /// A run that timed out, told with the spawned closures of the sandbox
    /// whose every thread waits on a lock: a run often waits for a server
    /// of its sandbox, and a server stuck on a lock the fork copied held
    /// (the usual hang) is then the cause, not the run.
    fn name_stuck_spawned(&self, e: Error) -> Error {
        let Error::TimedOut { after, mut stuck } = e else {
            return e;
        };
        for pid in self.spawned.runners() {
            if let Some(text) = diagnose::stuck_on_locks(pid) {
                stuck.push_str(&format!(
                    "\nmeanwhile the spawned closure with pid {pid} (a server this run may \
                     wait for?) has every thread waiting on a lock: {text}"
                ));
            }
        }
        Error::TimedOut { after, stuck }
    }

    /// What a failure's message adds when the sandbox was kept.
    fn kept_note(&self) -> String {
        if self.kept.load(Ordering::SeqCst) {
            format!(
                "\n{}",
                kept_message(
                    "the sandbox",
                    self.init_pid,
                    self.enter_command().as_deref()
                )
            )
        } else {
            String::new()
        }
    }

    /// Starts `f` inside the sandbox in the background, for example a
    /// server that later runs connect to; [`join`](Spawned::join) waits for
    /// its value, as [`std::thread::spawn`]'s handle does.
    ///
    /// The process lives until `f` returns (and its value is taken by
    /// `join`), the handle is dropped or [`kill`](Spawned::kill)ed, or the
    /// sandbox is dropped. Processes it started itself live until the
    /// sandbox is dropped. As for [`run`](Self::run), `f` runs in a fork of
    /// the test process, and only its value (`T`, through serde) comes
    /// back. A panic of `f` is printed into the test's output when it
    /// happens, and `join` returns it.
    ///
    /// A closure that never returns (a server's endless `loop`, a bare
    /// `panic!`) has the type `!`, which serde cannot carry: say that it
    /// returns nothing, `sandbox.spawn(|| -> () { loop { ... } })`.
    ///
    /// # Errors
    ///
    /// [`Error::Sys`] when the process could not be started;
    /// [`Error::SandboxDead`] when the sandbox was killed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::io::{Read, Write};
    /// let sandbox = hermetic::Sandbox::new()?;
    /// // A server in the background...
    /// let server = sandbox.spawn(|| {
    ///     let l = std::net::TcpListener::bind("127.0.0.1:7000").unwrap();
    ///     for s in l.incoming() {
    ///         s.unwrap().write_all(b"hello").unwrap();
    ///     }
    /// })?;
    /// let got = sandbox.run(|| {
    ///     let mut s = hermetic::connect_retry("127.0.0.1:7000");
    ///     let mut buf = String::new();
    ///     s.read_to_string(&mut buf).unwrap();
    ///     buf
    /// });
    /// assert_eq!(got, "hello");
    /// server.kill()?;
    ///
    /// // ...or work whose value comes back when joined.
    /// let worker = sandbox.spawn(|| (1..=10u64).product::<u64>())?;
    /// assert_eq!(worker.join()?, 3_628_800);
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    pub fn spawn<F, T>(&self, f: F) -> Result<Spawned<T>, Error>
    where
        F: FnOnce() -> T,
        T: Serialize + DeserializeOwned,
    {
        self.spawn_keeping(&[], f)
    }

    /// [`spawn`](Self::spawn), handing the process the fds of hermetic's
    /// in `keep`.
    pub(crate) fn spawn_keeping<F, T>(&self, keep: &[RawFd], f: F) -> Result<Spawned<T>, Error>
    where
        F: FnOnce() -> T,
        T: Serialize + DeserializeOwned,
    {
        self.check_alive()?;
        // It prints while no run is in flight: forward from now on.
        self.output
            .start()
            .map_err(|e| Error::sys("starting the output forwarder", e))?;
        let runner = Runner::start(
            &self.init_pidfd,
            self.nstypes,
            &self.confinement,
            self.output.fds(),
            keep,
            true,
            f,
        )
        .inspect_err(|_| self.strays.store(true, Ordering::SeqCst))?;
        self.spawned.add(runner.pid(), runner.joiner());
        Ok(Spawned {
            limit_names: self.limit_names(),
            keep_when_failed: self.keep_failed.then(|| self.keep_when_dropped.clone()),
            list: self.spawned.clone(),
            output: self.output.clone(),
            max_result_size: self.max_result_size,
            timeout: self.timeout,
            runner: Some(runner),
            value: PhantomData,
        })
    }

    /// A [`std::process::Command`] whose program starts inside the sandbox
    /// (all its namespaces, as a process of its PID namespace), in the
    /// caller's working directory when that exists inside.
    ///
    /// Its stdio follows std's rules: by default inherited from the test
    /// process, so use `output()` or `Stdio::piped()` to look at it. But a
    /// terminal of the test process's (`cargo test` run from a shell) is
    /// never the program's: where its stdin would be one it reads
    /// `/dev/null`, and where its stdout or stderr would be one it writes
    /// to a pseudo-terminal of its own (made like that terminal), which
    /// the relay copies to it until the program ends. So the program
    /// cannot change the test's terminal (its modes, and through them
    /// which typed key signals the test process). The program is killed
    /// when the sandbox is dropped; `Child::kill` kills it too.
    ///
    /// The `Child`'s pid is a small relay in the test's PID namespace (the
    /// program's parent, as a program inside has no pid outside): every
    /// signal it can catch (`SIGTERM`, `SIGINT`, `SIGHUP`, `SIGUSR1`...) is
    /// passed on to the program, whose handlers and traps run, and its exit
    /// status is the program's, code or signal. `SIGKILL` kills the relay,
    /// and the program with it. `SIGSTOP`, which no process can catch,
    /// stops the relay only: to pause the program send `SIGTSTP` (passed
    /// on; it stops a program that does not handle it), and `SIGCONT`.
    ///
    /// Its `spawn` fails with `ESRCH` once the sandbox is dead (killed by a
    /// [`Killer`] or from outside), and with `EPERM` in a process other
    /// than the one that made the sandbox (inside one of its own runs,
    /// where its handle is a copy: run the program directly there). std
    /// carries only the errno of a failed spawn.
    ///
    /// std's `CommandExt::uid` and `gid` change the ids of its child
    /// outside, before the relay joins the sandbox, which it then may not
    /// (`spawn` fails with `EPERM`): run the program as a user inside with
    /// [`SandboxBuilder::user`], or with `setpriv --reuid=N --regid=N
    /// --clear-groups PROGRAM` (in a run, a `Command`'s `uid` works as on
    /// any system).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let sandbox = hermetic::Sandbox::new()?;
    /// let out = sandbox.command("hostname").output().unwrap();
    /// assert_eq!(out.stdout, b"sandbox\n");
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    pub fn command(&self, program: impl AsRef<OsStr>) -> std::process::Command {
        let mut cmd = std::process::Command::new(program);
        // std hands on only an errno from the child it forks: a process
        // other than the sandbox's owner (a closure of its own run) gets
        // EPERM, a dead sandbox ESRCH (see the docs above).
        let refused = if std::process::id() != self.owner {
            Some(libc::EPERM)
        } else if self.killed.load(Ordering::SeqCst) || !sys::pidfd_alive(self.init_pidfd.as_fd()) {
            Some(libc::ESRCH)
        } else {
            None
        };
        let init_pidfd = match refused {
            Some(errno) => Err(errno),
            None => self
                .init_pidfd
                .try_clone()
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EBADF)),
        };
        let cgroups = self
            .cgroups
            .as_ref()
            .map(crate::setup::limits::Cgroups::clone_procs)
            .unwrap_or_default();
        exec::enter_on_exec(
            &mut cmd,
            init_pidfd,
            self.nstypes,
            cgroups,
            exec::Confined {
                rlimits: self.confinement.rlimits,
                set_ids: self.confinement.set_ids,
                filter: self.confinement.filter,
                terminal: false,
            },
        );
        cmd
    }

    /// For the `hermetic` binary: the limit, in words ("memory limit of 64
    /// MiB", "CPU time limit of 1s"), that most likely killed a program
    /// that died of `signo`: `SIGKILL` if the sandbox's memory cgroup has
    /// killed a process for it, `SIGXCPU` with a CPU time limit, `SIGABRT`
    /// or `SIGSEGV` with a memory limit and no memory cgroup.
    #[doc(hidden)]
    pub fn __limit_killed(&self, signo: i32) -> Option<String> {
        self.limit_names_since_start()
            .limit_for(signo, Crashes::Too)
    }

    /// For the `hermetic` binary: waits, at most `timeout` (`None`: for as
    /// long as it takes), for the end of the program the init process
    /// started ([`SandboxBuilder::__program`]). `Ok(None)`: still running.
    ///
    /// # Errors
    ///
    /// `InvalidOption` if the sandbox has no such program; `Setup` if the
    /// init process ended first (killed) or its report made no sense.
    #[doc(hidden)]
    pub fn __program_end(&self, timeout: Option<Duration>) -> Result<Option<ProgramEnd>, Error> {
        use crate::proto::wire;
        let Some(report) = &self.program_report else {
            return Err(Error::InvalidOption {
                option: "__program",
                reason: "this sandbox's init process started no program".into(),
            });
        };
        let failed = |e: std::io::Error| Error::sys("waiting for the program's end", e);
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            let ready = match sys::poll(&[report.as_fd(), self.init_pidfd.as_fd()], left) {
                Ok(ready) => ready,
                Err(libc::EINTR) => continue,
                Err(e) => return Err(failed(std::io::Error::from_raw_os_error(e))),
            };
            if !ready[0].any && !ready[1].any {
                continue;
            }
            // Written whole, before the init process could end.
            let mut msg = [0u8; 8];
            let read = sys::read(report.as_fd(), &mut msg)
                .map_err(|e| failed(std::io::Error::from_raw_os_error(e)))?;
            if read != 8 {
                return Err(self.name_a_limit_too_small(failed(std::io::Error::other(
                    "the sandbox's init process ended before the program did",
                ))));
            }
            let code = u32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]);
            let value = i32::from_le_bytes([msg[4], msg[5], msg[6], msg[7]]);
            return match code {
                wire::REPORT_EXITED => Ok(Some(ProgramEnd::Exited(value))),
                wire::REPORT_SIGNALED => Ok(Some(ProgramEnd::Signaled(value))),
                wire::REPORT_NOT_STARTED => Ok(Some(ProgramEnd::NotStarted(
                    std::io::Error::from_raw_os_error(value),
                ))),
                _ => Err(failed(std::io::Error::from_raw_os_error(value))),
            };
        }
    }

    /// For the `hermetic` binary: the fd to give [`__signal_program`](Self::__signal_program).
    #[doc(hidden)]
    pub fn __program_signals(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.control.as_raw_fd()
    }

    /// Passes `signal` on to the program the init process started, through
    /// `fd` ([`__program_signals`](Self::__program_signals)): one `write`,
    /// so callable from a signal handler.
    #[doc(hidden)]
    pub fn __signal_program(fd: RawFd, signal: i32) {
        let msg = [crate::proto::wire::CONTROL_SIGNAL, signal as u8];
        let _ = sys::write_to(fd, &msg);
    }

    /// A handle that can kill everything in this sandbox from any thread,
    /// even while runs are in flight (they then fail with
    /// [`Error::Killed`]). Afterwards the sandbox is dead: new runs fail.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let sandbox = hermetic::Sandbox::new()?;
    /// let killer = sandbox.killer()?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         std::thread::sleep(std::time::Duration::from_millis(100));
    ///         killer.kill().unwrap();
    ///     });
    ///     let stuck = sandbox.try_run::<_, ()>(|| loop { std::thread::park() });
    ///     assert!(stuck.is_err());
    /// });
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Sys`] if the init process's pidfd cannot be duplicated.
    pub fn killer(&self) -> Result<Killer, Error> {
        let init_pidfd = self
            .init_pidfd
            .try_clone()
            .map_err(|e| Error::sys("duplicating the sandbox's pidfd", e))?;
        Ok(Killer {
            init_pidfd,
            killed: self.killed.clone(),
        })
    }

    /// After a run: if it left processes behind (the runner's orphans are
    /// now the init process's children), they may print at any time, so a
    /// forwarding thread takes over the output pipes.
    fn forward_if_left_running(&self) {
        if !self.output.readers_to_poll().is_empty() {
            let children = &self.init_children;
            let mut buf = [0u8; 256];
            let left = match children
                .as_ref()
                .and_then(|f| sys::pread(f.as_fd(), &mut buf, 0).ok())
            {
                None => true,
                Some(0) => false,
                // The task freeing a run's memory (see
                // child::runner's hand_over_teardown) is
                // the init process's child for a moment: it prints nothing.
                Some(n) => String::from_utf8_lossy(&buf[..n])
                    .split_whitespace()
                    .any(|pid| !is_exit_task(pid)),
            };
            if left {
                // Without a thread, output still reaches the test at the
                // next run or at drop.
                let _ = self.output.start();
            }
        }
    }

    /// Refuses to start anything in a sandbox a [`Killer`] killed.
    fn check_alive(&self) -> Result<(), Error> {
        if std::process::id() != self.owner {
            return Err(Error::NotTheOwner { owner: self.owner });
        }
        if self.killed.load(Ordering::SeqCst) {
            return Err(Error::SandboxDead {
                doing: "starting a run",
            });
        }
        Ok(())
    }

    /// The timeout of each run (None: none).
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// True while the sandbox's init process lives (until a [`Killer`]
    /// kills it, or something else does).
    #[must_use]
    pub fn is_alive(&self) -> bool {
        if self.killed.load(Ordering::SeqCst) {
            return false;
        }
        // Readable once it has exited.
        sys::poll(&[self.init_pidfd.as_fd()], Some(Duration::ZERO)).is_ok_and(|ready| !ready[0].any)
    }

    /// Tears the sandbox down like `drop`, but reports what went wrong.
    ///
    /// # Errors
    ///
    /// [`Error::Sys`] if the init process could not be killed or reaped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let sandbox = hermetic::Sandbox::new()?;
    /// sandbox.close()?;
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    pub fn close(mut self) -> Result<(), Error> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), Error> {
        if self.kept.load(Ordering::SeqCst) {
            // Left to live; whoever kills it later, the init process is
            // reaped by this process's exit (or its new parent).
            if let Some(layers) = &mut self.disk_layers {
                layers.keep();
            }
            self.init_pid = 0;
            return Ok(());
        }
        // Held from before the kill, so that the init process's exit does
        // not take the mount namespace down: the reclaim thread does, once
        // the init process is reaped, while this thread removes the layers
        // on disk (if any) beside it.
        let mount_ns = reclaim::hold_mount_namespace(self.init_pidfd.as_fd(), self.init_pid);
        // Killing PID 1 makes the kernel kill everything else inside.
        let killed = sys::pidfd_send_signal(self.init_pidfd.as_fd(), libc::SIGKILL);
        // The dying init process waits until every process of its namespace has
        // been reaped, including runners whose parent is the test process:
        // reap those first.
        let spawned = self.spawned.take_for_teardown();
        for (pid, joiner) in spawned {
            let _ = sys::kill_and_reap(pid);
            let _ = sys::reap(joiner);
        }
        if self.strays.load(Ordering::SeqCst) {
            reap_strays(self.init_pid);
        }
        let reaped = sys::reap(self.reap_pid);
        // Mark as done so Drop does not try again.
        self.init_pid = 0;
        // Every process of the sandbox is gone: what its overlays wrote on
        // disk goes too, emptied directories to the pool for the next
        // sandboxes. So their mounts go first, here: a directory another
        // sandbox takes from the pool must be no overlay's layer any more
        // (the kernel would warn of two overlays sharing it). A sandbox
        // without layers on disk leaves that to the reclaim thread.
        if let Some(held) = mount_ns {
            if self.disk_layers.is_some() {
                drop(held);
            } else {
                reclaim::let_go(held);
            }
        }
        if let Some(mut layers) = self.disk_layers.take() {
            let left = layers.remove();
            // Rootless with id ranges, what a process inside gave to
            // another id of the range and closed is the caller's to remove
            // only from a user namespace that maps the range.
            if !left.is_empty()
                && self.outer_maps.is_some()
                && sys::geteuid() != 0
                && self.owner == std::process::id()
            {
                remove_as_the_range(&left);
                layers.remove();
            }
        }
        match (killed, reaped) {
            (Err(errno), _) if errno != libc::ESRCH => Err(Error::sys(
                "killing the sandbox's init process",
                std::io::Error::from_raw_os_error(errno),
            )),
            (_, Err(e)) => Err(Error::sys(
                "reaping the sandbox's init process",
                std::io::Error::from_raw_os_error(e),
            )),
            _ => Ok(()),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.owner != std::process::id() {
            // A copy (moved into a run's closure, or in a fork of the
            // user's): the sandbox is the process's that made it, and
            // hermetic's fds are not this process's to close.
            return;
        }
        if self.init_pid != 0 && self.keep_when_dropped.load(Ordering::SeqCst) {
            let what = "HERMETIC_KEEP is set: the sandbox of a failed spawned closure";
            if let Some(Ok(kept)) = self.__keep_if_asked(what) {
                eprintln!("{kept}");
            }
        }
        if self.init_pid != 0 {
            let _ = self.teardown();
        }
    }
}

/// Kills and reaps the children of this process (of any of its threads)
/// that are in the PID namespace of the sandbox whose init process is
/// `init`, but `init` itself: a runner whose joiner died before it could
/// report it (the memory cgroup's OOM killer chose the joiner), which this
/// process never learned of. The dying init process waits until every
/// process of its namespace is reaped: without this, the drop waited for
/// ever. Children of this process elsewhere (the test's own) are left
/// alone.
fn reap_strays(init: libc::pid_t) {
    use std::os::unix::fs::MetadataExt;
    let Ok(ns) = std::fs::metadata(format!("/proc/{init}/ns/pid")) else {
        return;
    };
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    let children: Vec<libc::pid_t> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<libc::pid_t>>()
        })
        .filter(|&pid| pid != init)
        .collect();
    for pid in children {
        // A zombie's namespace is still named (until it is reaped).
        let inside = std::fs::metadata(format!("/proc/{pid}/ns/pid"))
            .is_ok_and(|m| (m.dev(), m.ino()) == (ns.dev(), ns.ino()));
        if inside {
            let _ = sys::kill_and_reap(pid);
        }
    }
}

/// Removes `paths` (layers on disk, in one directory) from inside a
/// sandbox of their own, whose root maps to the caller and whose other
/// ids to the caller's ranges: there root may open, change and remove
/// what belongs to any of them. Read-only host, the directory bound
/// writable at its own path; never kept.
fn remove_as_the_range(paths: &[std::path::PathBuf]) {
    let Some(dir) = paths.first().and_then(|p| p.parent()) else {
        return;
    };
    let Ok(cleaner) = Sandbox::builder()
        .host(crate::HostMode::ReadOnly)
        .bind(dir, dir)
        .timeout(Duration::from_secs(60))
        .__keep_failed(false)
        .build()
    else {
        return;
    };
    let paths = paths.to_vec();
    let _ = cleaner.try_run(move || {
        for path in &paths {
            crate::setup::disk::remove_tree(path);
        }
    });
}

/// What names the limit a closure's process died of: taken from its
/// sandbox as the process starts (a spawned closure is joined through a
/// handle that has none of the sandbox's).
#[derive(Debug, Clone)]
pub(crate) struct LimitNames {
    /// The memory cgroup's file that counts its OOM kills, and the count
    /// as the process started.
    oom: Option<(std::path::PathBuf, u64)>,
    /// Whether a memory cgroup enforces the memory limit (else each
    /// process's address space does).
    cgroup_memory: bool,
    limits: crate::setup::limits::Limits,
}

/// Whether a `SIGSEGV` counts as an allocation refused by a memory limit
/// enforced per process (`RLIMIT_AS`): for programs, which often crash
/// on one; not for a closure, which Rust aborts on one (and whose
/// `SIGSEGV` is a stack overflow or a bug, named as such).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crashes {
    Too,
    Not,
}

impl LimitNames {
    /// The memory limit in bytes, if the memory cgroup has killed a
    /// process for it since these names were taken.
    fn memory_killed(&self) -> Option<u64> {
        let (file, before) = self.oom.as_ref()?;
        (crate::setup::limits::oom_kills_in(file) > *before)
            .then_some(self.limits.memory)
            .flatten()
    }

    /// The limit, in words ("memory limit of 64 MiB", "CPU time limit of
    /// 1s"), that most likely sent `signo` to a process started when these
    /// names were taken: `SIGKILL` once the memory cgroup has killed a
    /// process since, `SIGXCPU` with a CPU time limit, `SIGABRT` (and
    /// `SIGSEGV` if `crashes` says so) with a memory limit enforced per
    /// process, where an allocation past it fails.
    pub(crate) fn limit_for(&self, signo: i32, crashes: Crashes) -> Option<String> {
        let bytes = crate::setup::limits::bytes;
        match signo {
            libc::SIGKILL => self
                .memory_killed()
                .map(|b| format!("memory limit of {}", bytes(b))),
            libc::SIGXCPU => self
                .limits
                .cpu
                .map(|d| format!("CPU time limit of {}s", d.as_secs().max(1))),
            libc::SIGSEGV if crashes == Crashes::Not => None,
            libc::SIGABRT | libc::SIGSEGV if !self.cgroup_memory => self.limits.memory.map(|b| {
                format!(
                    "memory limit of {} (RLIMIT_AS: an allocation failed)",
                    bytes(b)
                )
            }),
            _ => None,
        }
    }

    /// `e`, or, if it says the process was killed by a signal a limit
    /// sends ([`limit_for`](Self::limit_for)), [`Error::LimitReached`]
    /// naming that limit.
    pub(crate) fn name(&self, e: Error) -> Error {
        // The process that starts a run (the joiner), killed by the
        // memory cgroup before it could report: the sandbox is full (what
        // an earlier run left in its /tmp, say).
        if let Error::Sys { .. } = &e
            && let Some(limit) = self.limit_for(libc::SIGKILL, Crashes::Not)
        {
            return Error::LimitReached {
                limit,
                signal: "SIGKILL",
            };
        }
        let Error::Killed { signal, signo, .. } = &e else {
            return e;
        };
        match self.limit_for(*signo, Crashes::Not) {
            Some(limit) => Error::LimitReached { limit, signal },
            None => e,
        }
    }
}

/// Kills a sandbox from anywhere; made by [`Sandbox::killer`].
#[derive(Debug)]
#[must_use = "a Killer does nothing until kill() is called"]
pub struct Killer {
    init_pidfd: Fd,
    killed: Arc<AtomicBool>,
}

impl Killer {
    /// Kills every process in the sandbox (its init process first; the
    /// kernel takes the rest).
    ///
    /// # Errors
    ///
    /// [`Error::Sys`] if the signal could not be sent; a sandbox that is
    /// already dead is not an error.
    pub fn kill(&self) -> Result<(), Error> {
        self.killed.store(true, Ordering::SeqCst);
        match sys::pidfd_send_signal(self.init_pidfd.as_fd(), libc::SIGKILL) {
            Ok(()) | Err(libc::ESRCH) => Ok(()),
            Err(errno) => Err(Error::sys(
                "killing the sandbox's init process",
                std::io::Error::from_raw_os_error(errno),
            )),
        }
    }
}

/// Whether `pid` (as `/proc/INIT/task/INIT/children` lists it, in the
/// test process's PID namespace) is the task that frees a run's memory, or
/// already gone.
fn is_exit_task(pid: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/comm"))
        .map_or(true, |comm| comm.trim_ascii_end() == b"hermetic-exit")
}

/// Whether `e` says the closure itself failed (so its sandbox is worth
/// keeping with `HERMETIC_KEEP`), not that it could not start.
pub(crate) fn ran_and_failed(e: &Error) -> bool {
    matches!(
        e,
        Error::Panicked { .. }
            | Error::Killed { .. }
            | Error::StackOverflow { .. }
            | Error::LimitReached { .. }
            | Error::Exited { .. }
            | Error::TimedOut { .. }
            | Error::Channel { .. }
    )
}

/// The line that says a sandbox is kept and how to look inside: `what`
/// (who is kept, and why) is kept (init process `pid`); look inside with
/// `enter` and [`LOOKING_SHELL`]. One wording for every place that keeps
/// one.
pub(crate) fn kept_message(what: &str, pid: impl std::fmt::Display, enter: Option<&str>) -> String {
    match enter {
        Some(enter) => format!(
            "hermetic: {what} is kept (init process {pid}); look inside with: {enter} \
             {LOOKING_SHELL}, or: hermetic enter {pid}"
        ),
        None => format!(
            "hermetic: {what} is kept (init process {pid}); a process inside killed its \
             keeper, so no nsenter line leads to the user namespace that owns it: look \
             inside with: hermetic enter {pid}"
        ),
    }
}

/// The shell a kept sandbox's message suggests, after the `nsenter`
/// command: `nsenter` through the keeper gives every capability over the
/// sandbox's mounts and no seccomp filter, so what a program inside left
/// for the one who looks (a `~/.bashrc` in its `$HOME` layer, a command in
/// a `PATH` directory of `$HOME`) would run with more than the program
/// had: the shell gives up every capability (its bounding set) and starts
/// with a clean environment (system `PATH`, `HOME=/`, no rc file).
/// Each program by its absolute path: `nsenter` enters the sandbox's mount
/// namespace first, so a name would be looked up in the caller's `PATH`
/// there, where a program inside may have left one of its own (`$HOME/bin`
/// in the copy-on-write layer); the system's directories are the host's,
/// read-only.
pub(crate) const LOOKING_SHELL: &str = "/usr/bin/setpriv --bounding-set=-all --no-new-privs \
                                         /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin \
                                         HOME=/ /bin/sh";

/// The keeper of the sandbox whose init process is `init` (see
/// [`Sandbox::keep`]), as the sandbox becomes ready: the child of `init`
/// whose pid in the sandbox's PID namespace is `inner`, as the init
/// process reported it, named `hermetic-keeper`, with a pidfd, checked
/// once more after it is opened (the pid is still that child's). Not
/// found by its name or place alone: the program of a `hermetic run`
/// starts as the sandbox becomes ready, and may kill the keeper and take
/// its name first (seen under load, when the keep message then named the
/// wrong process); the pid inside is the kernel's to give.
pub(crate) fn find_keeper(init: libc::pid_t, inner: u32) -> Option<(u32, Fd)> {
    let is_keeper = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid ...".
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1;
        let ppid: libc::pid_t = rest.split_whitespace().nth(1)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        // "NSpid: OUTER ... INNER": the last is the pid in its own
        // namespace (the sandbox's).
        let inside: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))?
            .split_whitespace()
            .last()?
            .parse()
            .ok()?;
        (comm == "hermetic-keeper" && ppid == init && inside == inner).then_some(())
    };
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).ok()?;
    let pid: u32 = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|&pid| is_keeper(pid).is_some())?;
    let pidfd =
        Fd::open(|| sys::pidfd_open(pid as libc::pid_t).map_err(std::io::Error::from_raw_os_error))
            .ok()?;
    is_keeper(pid)?;
    Some((pid, pidfd))
}

/// `HERMETIC_KEEP` is set (and not `0`).
pub(crate) fn keep_failed() -> bool {
    sys::env_flag("HERMETIC_KEEP")
}
