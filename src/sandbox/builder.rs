//! The [`SandboxBuilder`]: a sandbox's options, validated, and `build()`,
//! which decides the plan, starts the init process and reads its report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{BASE_NAMESPACES, DEFAULT_HOSTNAME, DEFAULT_MAX_RESULT_SIZE, Sandbox, keep_failed};
use crate::diagnose::{self, HostFacts, Phase};
use crate::error::Error;
use crate::fork::launch;
use crate::proto::reports::{self, InitReport};
use crate::proto::wire;
use crate::run::output::{DEFAULT_OUTPUT_LIMIT, Output, OutputLimit};
use crate::run::runner;
use crate::setup::host::HostMode;
use crate::setup::lifeline;
use crate::setup::plan::{self, Ids, MountSpec, StepKind};
use crate::sys;
use crate::sys::fd::{self, Fd};

/// Options for a [`Sandbox`]; made by [`Sandbox::builder`].
///
/// Setters take and return `&mut Self`, so a builder can be kept and used
/// for several sandboxes.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
///
/// let sandbox = hermetic::Sandbox::builder()
///     .hostname("db")
///     .timeout(Duration::from_secs(10))
///     .bind_ro(env!("CARGO_MANIFEST_DIR"), "/tmp/src")
///     .build()?;
/// let name = sandbox.run(|| std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap());
/// assert_eq!(name.trim(), "db");
/// # Ok::<(), hermetic::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SandboxBuilder {
    hostname: String,
    timeout: Option<Duration>,
    mounts: Vec<MountSpec>,
    cgroup: bool,
    max_result_size: usize,
    /// Unset: read-only for a sandbox, copy-on-write for `isolate_test`.
    host: Option<HostMode>,
    /// Read-only files made inside: (target, contents).
    files: Vec<(PathBuf, Vec<u8>)>,
    /// Host paths kept visible where the sandbox's own `/tmp` would hide
    /// them (besides the working directory and the target dir).
    visible: Vec<PathBuf>,
    /// The executable whose target dir is the test's, if cargo built it
    /// (else, and by default, this process's): the program the `hermetic`
    /// binary runs.
    test_executable: Option<PathBuf>,
    /// The uid and gid of the sandbox's processes, if not root.
    user: Option<(u32, u32)>,
    /// The most the sandbox's `/tmp` holds.
    tmp_size: u64,
    shm_size: u64,
    /// Memory, processes, CPU time.
    limits: crate::setup::limits::Limits,
    /// keyctl, add_key and request_key allowed inside.
    keyring: bool,
    mounts_inside: bool,
    /// What is kept of each run's output.
    output_limit: OutputLimit,
    /// A program the init process starts once the sandbox is ready.
    program: Option<Program>,
    /// Its fds 0 to 2: these of the test process (its own 0 to 2 if
    /// `None`).
    program_stdio: Option<[std::os::fd::RawFd; 3]>,
    /// The program leads a session of its own, whose controlling terminal
    /// is the first of its fds 0 to 2 that is a terminal.
    program_terminal: bool,
    /// Whether a failed run's sandbox is kept (`None`: as `HERMETIC_KEEP`
    /// says).
    keep_failed: Option<bool>,
}

/// A program for the init process to start once the sandbox is ready
/// (what `hermetic run` starts), as [`SandboxBuilder::__program`] takes it.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Program {
    /// The program: a path if it has a `/`, else a name looked for in the
    /// `PATH` of `env` (as `execvp` does: going past entries where it is
    /// missing or may not be run; a file without `#!` run by `/bin/sh`).
    pub path: std::ffi::CString,
    /// Its arguments, `argv[0]` first.
    pub args: Vec<std::ffi::CString>,
    /// Its whole environment, `KEY=VALUE` each.
    pub env: Vec<std::ffi::CString>,
    /// Its working directory (`/` if the sandbox hides it, as for a run,
    /// unless `strict_cwd`).
    pub cwd: std::ffi::CString,
    /// Started in `cwd` or not at all (`hermetic run --chdir`).
    pub strict_cwd: bool,
}

impl Program {
    /// `program` with `args` (its `argv[0]` is `program`), this process's
    /// environment with `env` set over it, in this process's working
    /// directory: how `hermetic run` and `isolate_test` start theirs.
    /// `Err` says what cannot be passed (a NUL byte, no working directory).
    pub fn here(
        program: &std::ffi::OsStr,
        args: &[&std::ffi::OsStr],
        env: &[(std::ffi::OsString, std::ffi::OsString)],
    ) -> Result<Program, String> {
        let mut vars: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os().collect();
        for (k, v) in env {
            match vars.iter_mut().find(|(key, _)| key == k) {
                Some(entry) => entry.1 = v.clone(),
                None => vars.push((k.clone(), v.clone())),
            }
        }
        Program::with_environment(program, args, &vars)
    }

    /// [`here`](Self::here) with `vars` as the whole environment.
    pub fn with_environment(
        program: &std::ffi::OsStr,
        args: &[&std::ffi::OsStr],
        vars: &[(std::ffi::OsString, std::ffi::OsString)],
    ) -> Result<Program, String> {
        use std::os::unix::ffi::OsStrExt;
        let c = |s: &std::ffi::OsStr| {
            std::ffi::CString::new(s.as_bytes())
                .map_err(|_| format!("a NUL byte in {:?}", s.to_string_lossy()))
        };
        if program.is_empty() {
            return Err("an empty program name".into());
        }
        let cwd =
            std::env::current_dir().map_err(|e| format!("reading the working directory: {e}"))?;
        Ok(Program {
            path: c(program)?,
            args: std::iter::once(program)
                .chain(args.iter().copied())
                .map(c)
                .collect::<Result<_, _>>()?,
            env: vars
                .iter()
                .map(|(k, v)| {
                    let mut kv = k.clone();
                    kv.push("=");
                    kv.push(v);
                    c(&kv)
                })
                .collect::<Result<_, _>>()?,
            cwd: c(cwd.as_os_str())?,
            strict_cwd: false,
        })
    }

    /// Whether the init process can take it: its arguments and environment
    /// within its plan and its arrays. `Err` says by how much it is over (a
    /// longer command line, up to the kernel's, needs
    /// [`Sandbox::command`](crate::Sandbox::command)).
    pub fn fits(&self) -> Result<(), String> {
        let bytes: usize = self
            .args
            .iter()
            .chain(&self.env)
            .map(|s| s.as_bytes_with_nul().len())
            .sum();
        if bytes > wire::PROGRAM_MAX {
            return Err(format!(
                "its arguments and environment are {} KiB, over the {} KiB the sandbox's init \
                 process takes",
                bytes.div_ceil(1024),
                wire::PROGRAM_MAX >> 10
            ));
        }
        if self.args.len() >= wire::PROGRAM_ARGS_MAX || self.env.len() >= wire::PROGRAM_ENV_MAX {
            return Err(format!(
                "it has {} arguments and {} environment variables, over the {} of each the \
                 sandbox's init process takes",
                self.args.len(),
                self.env.len(),
                wire::PROGRAM_ARGS_MAX - 1
            ));
        }
        Ok(())
    }
}

impl Default for SandboxBuilder {
    fn default() -> Self {
        SandboxBuilder {
            hostname: DEFAULT_HOSTNAME.to_owned(),
            timeout: None,
            mounts: Vec::new(),
            cgroup: false,
            max_result_size: DEFAULT_MAX_RESULT_SIZE,
            host: None,
            files: Vec::new(),
            visible: Vec::new(),
            test_executable: None,
            user: None,
            tmp_size: DEFAULT_TMP_SIZE,
            shm_size: DEFAULT_SHM_SIZE,
            limits: crate::setup::limits::Limits::default(),
            keyring: false,
            mounts_inside: false,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            program: None,
            program_stdio: None,
            program_terminal: false,
            keep_failed: None,
        }
    }
}

impl SandboxBuilder {
    /// A builder with the defaults: hostname `sandbox`, a timeout of 5
    /// minutes per run (see [`timeout`](Self::timeout)), no extra mounts,
    /// no cgroup namespace.
    #[must_use = "a builder does nothing until build() is called"]
    pub fn new() -> Self {
        Self::default()
    }

    /// The sandbox's hostname (at most 64 bytes). It resolves inside, to
    /// `127.0.0.1`, as a container's does: where the host's `/etc/hosts`
    /// does not name it, the sandbox's is the host's with a line for it (a
    /// read-only file of the sandbox's own, unless [`file`](Self::file)
    /// places another).
    pub fn hostname(&mut self, name: impl Into<String>) -> &mut Self {
        self.hostname = name.into();
        self
    }

    /// How long one [`Sandbox::run`] may take before its process is killed
    /// and the run fails with [`Error::TimedOut`], which says where the
    /// closure was stuck. Default: 5 minutes, or the number of seconds in
    /// the environment variable `HERMETIC_TIMEOUT` (for a whole suite; `0`
    /// means none); `Duration::MAX` (or any timeout too long to reach)
    /// means none, and so does `Duration::ZERO`, as `0` does there.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = Some(timeout);
        self
    }

    /// Runs, spawned closures and commands run as user `uid` and group
    /// `gid` inside, with no capability, as on a normal system (PostgreSQL,
    /// for one, refuses to run as root); the setup still happens as root
    /// inside. Rootless, with nothing installed.
    ///
    /// Where the sandbox has ids 0-65535 (see below), the sandbox's
    /// processes change to `uid` and `gid` once inside. Elsewhere that id
    /// is the only one they have (mapped to the caller's own outside):
    /// there is no root inside then, and changing to another id fails
    /// (`EINVAL`); files the caller owns outside show as owned by `uid`.
    ///
    /// **Ids inside.** Where the host allows it, ids 0-65535 are mapped
    /// inside, so that `setuid(n)`, `chown`, `su` and
    /// `CommandExt::uid(n)` (of a `Command` started in a run; not of
    /// [`Sandbox::command`](crate::Sandbox::command)'s, whose ids std
    /// changes outside) behave as on a normal system: as root, and as
    /// a user with `newuidmap`/`newgidmap` (Debian: `uidmap`) and ranges
    /// in `/etc/subuid` and `/etc/subgid`. Root inside is the caller
    /// outside; ids 1-65535 are not the host's users but a range of the
    /// caller's (its subordinate ids, or, for root without any, ids far
    /// above any user's). Elsewhere, or with `HERMETIC_ONE_ID=1`, only the
    /// caller's own id is mapped, as 0. [`check`](crate::check) says which
    /// applies and how to get ranges.
    ///
    /// ```no_run
    /// let ns = hermetic::Sandbox::builder().user(1000, 1000).build()?;
    /// let id = ns.command("id").output().unwrap();
    /// assert!(String::from_utf8_lossy(&id.stdout).starts_with("uid=1000"));
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    pub fn user(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.user = Some((uid, gid));
        self
    }

    /// The most memory the sandbox's processes may use together, in bytes
    /// (their memory cgroup's limit; where the host gives no cgroups, each
    /// process's address space, `RLIMIT_AS`). A run that reaches it is
    /// stopped with [`Error::LimitReached`]; the sandbox stays usable.
    /// [`check`](crate::check) says which applies here.
    ///
    /// With a memory cgroup, what the sandbox's processes leave behind
    /// counts until it is removed: files in its `/tmp`, `/var/tmp` and
    /// `/dev/shm` (memory, not disk), System V shared memory. A run that
    /// filled `/tmp` up to the limit leaves nothing for the next: every
    /// later run is stopped as it starts (`Error::LimitReached`, whose
    /// message says so), and none can remove the files; make a new
    /// sandbox. To keep a sandbox usable whatever its runs write there,
    /// bound [`tmp_size`](Self::tmp_size) and
    /// [`shm_size`](Self::shm_size) together well below the limit: a full
    /// `/tmp` is then a full disk (`ENOSPC`), not a stop.
    pub fn memory_limit(&mut self, bytes: u64) -> &mut Self {
        self.limits.memory = Some(bytes);
        self
    }

    /// The most processes (and threads) the sandbox may hold (its pids
    /// cgroup's limit; else `RLIMIT_NPROC`, counted per user namespace):
    /// `fork` and thread creation past it fail with `EAGAIN`. A limit above
    /// the host's (the kernel's most, or the caller's hard `RLIMIT_NPROC`)
    /// is the host's.
    ///
    /// hermetic's own processes count too: the init process, all along; a
    /// run's process (and, while it starts, the one that forks it); a
    /// [`command`](crate::Sandbox::command)'s two relays besides its program
    /// (three while it starts). So `pids_limit(3)` leaves room for one run
    /// and nothing it forks, and a command needs 5. A start that finds no
    /// room fails with `EAGAIN`: a run with [`Error::Sys`], a command's
    /// `spawn` with that `io::Error`, never as a signal.
    pub fn pids_limit(&mut self, n: u64) -> &mut Self {
        self.limits.pids = Some(n);
        self
    }

    /// The most CPU time each process of the sandbox may use (`RLIMIT_CPU`,
    /// whole seconds, at least one; `Duration::ZERO` is refused by
    /// `build`): a run that uses it up is stopped with
    /// [`Error::LimitReached`].
    pub fn cpu_time_limit(&mut self, limit: Duration) -> &mut Self {
        self.limits.cpu = Some(limit);
        self
    }

    /// The most the sandbox's `/tmp` holds, in bytes (it is memory):
    /// writes past it fail with `ENOSPC`, as does a file, directory or
    /// link past one per KiB of it (at least 4096: each pins about a KiB
    /// of the kernel's memory, empty or not). Default: 1 GiB (`/dev/shm`:
    /// 64 MiB). With a copy-on-write host, the same bound holds `/var/tmp`
    /// and the layers kept in memory; the layer of the test's own tree,
    /// on disk, is bounded by the disk (see [`HostMode::CopyOnWrite`]).
    pub fn tmp_size(&mut self, bytes: u64) -> &mut Self {
        self.tmp_size = bytes;
        self
    }

    /// The most the sandbox's `/dev/shm` holds, in bytes (it is memory;
    /// POSIX shared memory, `shm_open`, and semaphores live there):
    /// writes past it fail with `ENOSPC`. Default: 64 MiB, Docker's.
    /// At least 4096.
    pub fn shm_size(&mut self, bytes: u64) -> &mut Self {
        self.shm_size = bytes;
        self
    }

    /// Mounts a fresh, empty tmpfs on `target` inside the sandbox, bounded
    /// as `/tmp` is: [`tmp_size`](Self::tmp_size) bytes, and a file,
    /// directory or link per KiB of it (each tmpfs on its own: it is the
    /// host's memory).
    ///
    /// Mount targets must exist on the host, or lie under a tmpfs of the
    /// sandbox (`/tmp` always is one), where they are created inside the
    /// sandbox only.
    pub fn tmpfs(&mut self, target: impl AsRef<Path>) -> &mut Self {
        self.mounts.push(MountSpec::Tmpfs {
            target: target.as_ref().to_owned(),
        });
        self
    }

    /// Makes the host path `source` visible at `target` inside, writable as
    /// far as the caller's own permissions allow.
    pub fn bind(&mut self, source: impl AsRef<Path>, target: impl AsRef<Path>) -> &mut Self {
        self.push_bind(source.as_ref(), target.as_ref(), false)
    }

    /// Like [`bind`](Self::bind), read-only.
    pub fn bind_ro(&mut self, source: impl AsRef<Path>, target: impl AsRef<Path>) -> &mut Self {
        self.push_bind(source.as_ref(), target.as_ref(), true)
    }

    fn push_bind(&mut self, source: &Path, target: &Path, read_only: bool) -> &mut Self {
        self.mounts.push(MountSpec::Bind {
            source: PathBuf::from(source),
            target: PathBuf::from(target),
            read_only,
        });
        self
    }

    /// Places a read-only file holding `contents` at `target` inside the
    /// sandbox, as bubblewrap's `--file`: a configuration file, a fixture,
    /// an `/etc/hosts` of the test's own.
    ///
    /// `target` either lies under a tmpfs of the sandbox (`/tmp`,
    /// `/dev/shm`, a [`tmpfs`](Self::tmpfs) mount), where the file and any
    /// missing directories are made, or names a file of the host, which
    /// the sandbox's file covers inside. Either way the file is made in
    /// the sandbox's own memory: nothing of it is written to the host, and
    /// nothing is left behind, even after a `SIGKILL` of the test process.
    /// Inside, it is read-only for every process, root included (its mount
    /// belongs to the sandbox's outer user namespace, over which processes
    /// inside have no power): writing it fails with `EROFS`, and removing
    /// or replacing it fails too (`EBUSY` in a tmpfs, `EROFS` among the
    /// host's read-only files). Readable by all (mode 0644, less the test
    /// process's umask).
    ///
    /// The files placed so hold at most 4 MiB in all (they travel with the
    /// sandbox's setup); bind a larger one in with
    /// [`bind_ro`](Self::bind_ro). Over a symbolic link (`/etc/localtime`
    /// often is one), the file covers the file the link leads to (a bind
    /// mount follows the link), which then reads the same by either path;
    /// [`bind_ro`](Self::bind_ro) replaces the link itself.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) fails with [`Error::InvalidOption`] (option
    /// `file`) when the files are larger, when `target` is not absolute,
    /// holds `.` or `..` or a NUL byte, is given twice, is a tmpfs mount point, lies under a
    /// [`bind`](Self::bind) target, (outside the sandbox's tmpfs mounts)
    /// is not an existing file of the host, or is (or leads to) a file of
    /// `/proc` or `/sys`, the sandbox's own there (bind a file of yours
    /// over one with [`bind_ro`](Self::bind_ro) instead).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let ns = hermetic::Sandbox::builder()
    ///     .file("/tmp/app/config.toml", "port = 8080\n")
    ///     .file("/etc/hostname", "db\n")
    ///     .build()?;
    /// let config = ns.run(|| std::fs::read_to_string("/tmp/app/config.toml").unwrap());
    /// assert_eq!(config, "port = 8080\n");
    /// assert!(ns.run(|| std::fs::write("/tmp/app/config.toml", "x").is_err()));
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    pub fn file(&mut self, target: impl AsRef<Path>, contents: impl Into<Vec<u8>>) -> &mut Self {
        self.files
            .push((target.as_ref().to_path_buf(), contents.into()));
        self
    }

    /// How the host's files are seen inside (see [`HostMode`]). Default:
    /// [`HostMode::ReadOnly`]: the host's filesystem is read-only inside
    /// (recursively, every mount), except the sandbox's own `/tmp` and
    /// `/dev/shm`, its [`tmpfs`](Self::tmpfs) mounts and its
    /// [`bind`](Self::bind) targets. [`HostMode::CopyOnWrite`] makes every
    /// write the caller could make outside succeed in a private layer that
    /// goes with the sandbox (the README says what each costs);
    /// [`HostMode::Writable`] lets writes reach the host.
    ///
    /// Whatever the mode, the user's own mounts win over the sandbox's, and
    /// the host's device nodes stay unopenable (but for `/dev/null`,
    /// `/dev/zero`, `/dev/full`, `/dev/random`, `/dev/urandom` and
    /// `/dev/tty`); [`bind`](Self::bind) a device in to use it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use hermetic::{HostMode, Sandbox};
    ///
    /// let sandbox = Sandbox::builder().host(HostMode::CopyOnWrite).build()?;
    /// let home = std::env::var("HOME").unwrap();
    /// sandbox.run(move || std::fs::write(format!("{home}/.cache-of-a-test"), "x").unwrap());
    /// // Not on the host.
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    pub fn host(&mut self, mode: HostMode) -> &mut Self {
        self.host = Some(mode);
        self
    }

    /// Keeps the host directory `dir` visible inside where the sandbox's
    /// own `/tmp` or `/dev/shm` (or, copy-on-write, `/var/tmp`) would hide
    /// it: with a read-only host (and where copy-on-write falls back to it)
    /// it is bound in, read-only, before your own mounts, which win over
    /// it; with a writable host, writable; copy-on-write, under a private
    /// layer (an overlay rooted at its highest directory you own below
    /// `/tmp`). The working directory and the target dir of the running
    /// executable always are (for `hermetic run`, of its program: the
    /// test, not `hermetic`); `hermetic run` adds its program's directory,
    /// and `isolate_test` the test binary's. Where one of these lies in an
    /// extracted `cargo nextest archive`, so does the target dir of the
    /// build the archive came from, if it is on this host: its tests start
    /// the crate's binaries by the paths compiled into them
    /// (`env!("CARGO_BIN_EXE_<name>")`).
    pub fn visible(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.visible.push(dir.as_ref().to_path_buf());
        self
    }

    /// This builder, with `mode` as its host mode unless one was chosen.
    pub(crate) fn with_default_host(&self, mode: HostMode) -> std::borrow::Cow<'_, Self> {
        if self.host.is_some() {
            std::borrow::Cow::Borrowed(self)
        } else {
            let mut with = self.clone();
            with.host = Some(mode);
            std::borrow::Cow::Owned(with)
        }
    }

    /// Also gives the sandbox its own cgroup namespace: `/proc/self/cgroup`
    /// inside shows the sandbox's cgroup as the root (`0::/`). Default:
    /// off. Nothing inside may make a cgroup namespace of its own, enter
    /// one or mount a cgroup filesystem, with or without it (see the
    /// README's "What is isolated").
    pub fn cgroup_namespace(&mut self, on: bool) -> &mut Self {
        self.cgroup = on;
        self
    }

    /// Lets the sandbox's processes use the kernel's keys (`keyctl`,
    /// `add_key`, `request_key`), in a session keyring of the sandbox's
    /// own that every run and command joins. Default: off, and those calls
    /// fail with `EPERM`, as under Docker's default profile.
    ///
    /// The trade-off: the kernel has no namespace for keys and checks them
    /// by uid, and root inside is the caller outside. With this on, a
    /// process inside that learns a key's serial number (`/proc/keys`
    /// lists those it may view) can read, link or change the keys of the
    /// caller's uid: the test process's, the caller's own user keyring,
    /// another sandbox's. Turn it on only for code you trust with those.
    ///
    /// A sandbox made inside another one (a closure's, or a test's under
    /// [`isolate_test`](crate::isolate_test)) is under the outer one's
    /// filter as well, which still refuses them unless it too allows keys.
    pub fn keyring(&mut self, on: bool) -> &mut Self {
        self.keyring = on;
        self
    }

    /// Lets root inside mount filesystems of its own (a tmpfs, a bind, a
    /// proc...) on top of the sandbox's, as a test of mount code needs.
    /// Default: off, and `mount(2)` inside fails with `EPERM` although
    /// root inside holds `CAP_SYS_ADMIN` (the sandbox's mounts belong to
    /// the user namespace around it); a test can also make a mount
    /// namespace of its own first (`unshare(CLONE_NEWNS)`).
    ///
    /// With it, the processes inside live in a mount namespace of their
    /// own user namespace: a copy of the sandbox's in which the kernel
    /// locks every mount the sandbox made, so that none can be taken off,
    /// uncovered, or made writable or executable where it was not. It
    /// costs about 0.2 ms a sandbox (a second mount namespace to make and
    /// take down), and nothing at all is reachable that a process inside
    /// could not reach with `unshare(CLONE_NEWNS)` anyway.
    pub fn allow_mounts(&mut self, on: bool) -> &mut Self {
        self.mounts_inside = on;
        self
    }

    /// For the `hermetic` binary (`--keep`): keep the sandbox of a failed
    /// run as `HERMETIC_KEEP` does, whatever the environment says.
    #[doc(hidden)]
    pub fn __keep_failed(&mut self, keep: bool) -> &mut Self {
        self.keep_failed = Some(keep);
        self
    }

    /// For the `hermetic` binary: the program it runs is the test, so
    /// that program's target dir, if cargo built it, is the test's, not
    /// the one `hermetic` itself was built in (see
    /// [`visible`](Self::visible)); for a program that no cargo built (a
    /// shell that runs what lies there), still `hermetic`'s own.
    #[doc(hidden)]
    pub fn __test_executable(&mut self, program: Option<PathBuf>) -> &mut Self {
        self.test_executable = program;
        self
    }

    /// Whether a failed run's sandbox is kept: as set, or as
    /// `HERMETIC_KEEP` says.
    fn keeps_failed(&self) -> bool {
        self.keep_failed.unwrap_or_else(keep_failed)
    }

    /// For the `hermetic` binary: once the sandbox is ready, its init
    /// process starts `program` as its own child, with this process's fds
    /// 0 to 2 (and no other), in a process group of its own in the
    /// sandbox's session, under the sandbox's
    /// seccomp filter, rlimits and cgroups (the init process's, which it
    /// joins before the program starts), as the sandbox's root or its
    /// [`user`](Self::user). That is one process where
    /// [`Sandbox::command`] makes four (a fork of this process, a
    /// go-between, the relay inside, the program), and it ends with one
    /// report instead of a chain of waits: [`Sandbox::__program_end`] says
    /// how. See [`Program::fits`] for what is too long for it.
    #[doc(hidden)]
    pub fn __program(&mut self, program: Program) -> &mut Self {
        self.program = Some(program);
        self
    }

    /// The fds of this process the program of [`__program`](Self::__program)
    /// gets as its 0 to 2 (this process's own 0 to 2 otherwise). They must
    /// stay open until the sandbox is built.
    pub(crate) fn program_stdio(&mut self, fds: [std::os::fd::RawFd; 3]) -> &mut Self {
        self.program_stdio = Some(fds);
        self
    }

    /// The program of [`__program`](Self::__program) gets `fds` of this
    /// process as its 0 to 2 (open until the sandbox is built), and leads a
    /// session of its own whose controlling terminal (in whose foreground
    /// it is) is the first of them that is a terminal: the pseudo-terminal
    /// `hermetic run` relays, never the caller's terminal itself. The
    /// program is then out of reach of the init process's session, and a
    /// terminal signal (Ctrl-C) typed into its terminal reaches the
    /// sandbox's foreground job only.
    #[doc(hidden)]
    pub fn __program_terminal(&mut self, fds: [std::os::fd::RawFd; 3]) -> &mut Self {
        self.program_stdio = Some(fds);
        self.program_terminal = true;
        self
    }

    /// The largest result, in bytes, a run may send back. Default:
    /// [`DEFAULT_MAX_RESULT_SIZE`].
    pub fn max_result_size(&mut self, bytes: usize) -> &mut Self {
        self.max_result_size = bytes;
        self
    }

    /// How much of what a run prints reaches the test's output: of each
    /// stream (stdout, stderr), the first `head` bytes as they come and
    /// the last `tail` bytes when the run ends, after a line saying how
    /// many bytes between them were dropped:
    ///
    /// ```text
    /// [hermetic: 734003200 bytes of output dropped here; kept: the first 1048576 and the last 1048576 (SandboxBuilder::output_limit)]
    /// ```
    ///
    /// The rest is read and discarded, so that a closure, a spawned closure
    /// or a program printing without end cannot grow the test process
    /// (libtest's capture and nextest's keep what a test prints in
    /// memory). Counted per run: from the start of a [`Sandbox::run`]
    /// (or a [`Spawned::join`](crate::Spawned::join)) to its end; what processes print between
    /// runs counts towards the next run, or the sandbox's drop. Over the
    /// sandbox's whole life, each stream passes at most eight times `head +
    /// tail` (16 MiB by default), so that a process printing without end
    /// across many runs (a chatty server the test polls) cannot grow the
    /// test process either: past that, one line says the rest is dropped,
    /// and the drop says how much was.
    /// [`isolate_test`](crate::isolate_test) keeps as much of the isolated
    /// test's output. Default: 1 MiB and 1 MiB; `usize::MAX` for both
    /// keeps everything.
    pub fn output_limit(&mut self, head: usize, tail: usize) -> &mut Self {
        self.output_limit = OutputLimit { head, tail };
        self
    }

    /// What is kept of each stream's output, per run.
    pub(crate) fn output_limit_of(&self) -> OutputLimit {
        self.output_limit
    }

    /// Creates the sandbox.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidOption`] for a bad hostname or mount, before
    ///   anything is created;
    /// - [`Error::NamespacesRefused`] when the kernel refuses the
    ///   namespaces, with the host setting that likely forbids them;
    /// - [`Error::Setup`] naming the setup step that failed and its errno.
    pub fn build(&self) -> Result<Sandbox, Error> {
        self.build_in(None)
    }

    /// Builds a sandbox; with `userns`, one that shares that sandbox's user
    /// namespace instead of having its own (the hosts of a network).
    pub(crate) fn build_in(&self, userns: Option<&Sandbox>) -> Result<Sandbox, Error> {
        self.build_telling(userns).map_err(|(e, _)| e)
    }

    /// Whether a file is placed at `target` ([`file`](Self::file)).
    pub(crate) fn places(&self, target: &Path) -> bool {
        self.files.iter().any(|(t, _)| t == target)
    }

    /// Whether a timeout was set.
    pub(crate) fn has_timeout(&self) -> bool {
        self.timeout.is_some()
    }

    /// Like [`build_in`](Self::build_in); a failed setup step also says
    /// what kind of step it was (for [`check`](crate::check)).
    pub(crate) fn build_telling(
        &self,
        userns: Option<&Sandbox>,
    ) -> Result<Sandbox, (Error, Option<StepKind>)> {
        match self.build_once(userns) {
            // No overlay here (an old kernel, the stacking limit): read-only
            // from now on, said once.
            Err((e, Some(StepKind::Overlay))) if self.host == Some(HostMode::CopyOnWrite) => {
                crate::setup::host::refuse(&e);
                self.build_once(userns)
            }
            res => res,
        }
    }

    pub(crate) fn build_once(
        &self,
        userns: Option<&Sandbox>,
    ) -> Result<Sandbox, (Error, Option<StepKind>)> {
        // Now, not at the first run, which may come during unwinding.
        crate::fork::panic_hook::install_panic_hook();
        let Started {
            sandbox,
            ready_r,
            steps,
            maps,
            map_failure,
            launch,
        } = self.start(userns).map_err(|e| (e, None))?;
        // While the init process sets up: the thread its drop hands the
        // mount namespace to, which also makes room in the pool of emptied
        // layer directories for what this sandbox will bring back.
        super::reclaim::prepare();
        if sandbox.disk_layers.is_some() {
            super::reclaim::trim_disk_pool();
        }
        let report = match runner::read_report(&ready_r, &sandbox.init_pidfd) {
            Ok(report) => report,
            Err(e) => {
                // The init process first: the launch waits for the end of
                // the helper, which the init process (or its death) brings.
                drop(sandbox);
                drop(launch);
                return Err((
                    Error::sys("waiting for the sandbox's init process", e),
                    None,
                ));
            }
        };
        // A report, or the init process's end, comes after its exec and
        // after the helper's end (or brings it): the launch is done with.
        drop(launch);
        let mut sandbox = sandbox;
        if self.program.is_some() {
            // It says next how the program ended.
            sandbox.program_report = Some(ready_r);
        }
        let keeper = match interpret(report.map(InitReport::decode), &steps, maps) {
            Ok(keeper) => keeper,
            Err((e, kind)) => {
                let e = match (e, map_failure) {
                    // Why the maps written from outside failed.
                    (Error::Setup { step, error, .. }, Some(why))
                        if kind == Some(StepKind::IdMap) =>
                    {
                        Error::Setup {
                            step,
                            error,
                            hint: Some(why),
                        }
                    }
                    (e, _) => sandbox.name_a_limit_too_small(e),
                };
                return Err((e, kind));
            }
        };
        if let (true, Some(inner)) = (sandbox.keep_failed, keeper) {
            sandbox.keeper = super::find_keeper(sandbox.init_pid, inner);
        }
        if self.program.is_some()
            && let Some(layers) = &sandbox.disk_layers
        {
            // The caller only waits from now on: meanwhile.
            layers.shed_markers();
        }
        Ok(sandbox)
    }

    /// Starts the init process; returns the sandbox, the report pipe, the
    /// steps and how many of them are id maps.
    fn start(&self, userns: Option<&Sandbox>) -> Result<Started, Error> {
        let hostname = plan::hostname(&self.hostname)?;
        let keep_failed = self.keeps_failed();
        for (option, size, dir) in [
            ("tmp_size", self.tmp_size, "/tmp"),
            ("shm_size", self.shm_size, "/dev/shm"),
        ] {
            if size < 4096 {
                // tmpfs reads size=0 as no limit at all.
                return Err(Error::InvalidOption {
                    option,
                    reason: format!("{size} bytes: {dir} needs at least one page (4096)"),
                });
            }
        }
        let timeout = match self.timeout {
            // As HERMETIC_TIMEOUT=0: none.
            Some(Duration::ZERO) => None,
            Some(t) => Some(t),
            None => default_timeout()?,
        };
        // Values no sandbox can start with, named here rather than met as
        // an errno of a step that they make fail.
        if self.limits.memory == Some(0) {
            return Err(Error::InvalidOption {
                option: "memory_limit",
                reason: "0 bytes: nothing could run; leave the limit out for none (a sandbox \
                         needs at least about 1 MiB)"
                    .into(),
            });
        }
        if self.limits.cpu == Some(Duration::ZERO) {
            return Err(Error::InvalidOption {
                option: "cpu_time_limit",
                reason: "0 s: nothing could run; leave the limit out for none".into(),
            });
        }
        if self.limits.pids == Some(0) {
            return Err(Error::InvalidOption {
                option: "pids_limit",
                reason: "0 processes: nothing could run; leave the limit out for none".into(),
            });
        }
        let cgroup = if self.cgroup {
            libc::CLONE_NEWCGROUP
        } else {
            0
        };
        // Runs join every namespace of the init process: the inner user
        // namespace and the network, UTS and IPC namespaces it owns, and the
        // mount and PID namespaces made with the init process.
        let nstypes = BASE_NAMESPACES | cgroup;
        // The init process's own clone makes the mount and PID namespaces
        // (and the outer user namespace); the rest come from its plan.
        let clone_flags = libc::CLONE_NEWNS
            | libc::CLONE_NEWPID
            | cgroup
            | if userns.is_none() {
                libc::CLONE_NEWUSER
            } else {
                0
            };

        // Validates the mounts: nothing is started before this succeeds.
        let ids = userns.is_none().then(Ids::current);
        // A sandbox's own user namespace maps as many ids as the host
        // allows; a network's host shares its switch's.
        // In a non-dumpable process (a closure: a sandbox inside a
        // sandbox), the launched child's /proc files belong to root outside
        // until its exec (see child::launch): unless this process is that
        // root (as root), it writes its own maps, after making its own copy
        // of the memory dumpable, and maps one id.
        let nested = !sys::is_dumpable();
        let mapping = ids.map(|_| {
            if nested && !crate::setup::idmap::writes_a_closures_maps() {
                crate::setup::idmap::Mapping::Single
            } else {
                crate::setup::idmap::detect()
            }
        });
        // The outer namespace's maps, whose pieces the inner one follows.
        let outer_maps = match (&mapping, userns) {
            (
                Some(crate::setup::idmap::Mapping::Ranges {
                    uid_map, gid_map, ..
                }),
                _,
            ) => Some((uid_map.clone(), gid_map.clone())),
            (Some(_), _) => None,
            (None, Some(owner)) => owner.outer_maps.clone(),
            (None, None) => None,
        };
        let external_maps = match &mapping {
            Some(crate::setup::idmap::Mapping::Ranges { helpers: None, .. }) => {
                Some("written as root from outside".to_owned())
            }
            Some(crate::setup::idmap::Mapping::Ranges { .. }) => {
                Some("written by newuidmap and newgidmap".to_owned())
            }
            _ => None,
        };
        let host = crate::setup::host::effective(self.host.unwrap_or_default());
        let test_executable = match &self.test_executable {
            Some(program) if crate::setup::host::has_target_dir(program) => Some(program.clone()),
            _ => std::env::current_exe().ok(),
        };
        let view = crate::setup::host::HostView::cached(
            host == HostMode::CopyOnWrite,
            test_executable.as_deref(),
        );
        // Copy-on-write, the overlay of the test's own tree keeps its upper
        // layer on the host's disk, removed with the sandbox (this guard,
        // handed to it).
        let disk_base = (host == HostMode::CopyOnWrite)
            .then(crate::setup::disk::base)
            .flatten();
        let disk_layers = disk_base.and_then(|b| b.new_layers());
        let with_hosts = hosts_naming(&self.hostname, &self.files);
        let mut layout = plan::Layout {
            hostname: &hostname,
            mounts: &self.mounts,
            files: with_hosts.as_deref().unwrap_or(&self.files),
            host,
            view: &view,
            // From an extracted nextest archive, the build's target dir
            // too, where its tests' compiled-in paths lead.
            visible: std::env::current_dir()
                .ok()
                .into_iter()
                .chain(view.target_dir.clone())
                .chain(view.built_dirs.iter().cloned())
                .chain(self.visible.iter().cloned())
                .chain(
                    self.visible
                        .iter()
                        .flat_map(|d| crate::setup::host::archived_build(d)),
                )
                .collect(),
            working_dir: std::env::current_dir().ok(),
            root: sys::geteuid() == 0,
            keepable: keep_failed,
            mounts_inside: self.mounts_inside,
            user: self.user,
            tmp_size: self.tmp_size,
            shm_size: self.shm_size,
            outer_maps: outer_maps.as_ref(),
            external_maps,
            disk: disk_base
                .zip(disk_layers.as_ref())
                .map(|(base, layers)| plan::DiskPlan {
                    base,
                    layers,
                    trees: &view.own_trees,
                }),
            ipc_limit: None,
        };
        // Before anything is started: a refused cgroup fails the build.
        let cgroups = crate::setup::limits::Cgroups::create(&self.limits)?;
        // A memory limit of each process's (no memory cgroup) bounds the
        // System V IPC of the sandbox too, which no process's address
        // space holds.
        layout.ipc_limit = self
            .limits
            .memory
            .filter(|_| !cgroups.as_ref().is_some_and(|c| c.memory));
        let rlimits = crate::setup::limits::rlimits_for(&self.limits, cgroups.as_ref());
        let filter = crate::setup::seccomp::filter(self.keyring);
        let mut steps = plan::init_steps(ids, &layout)?;
        // With one id, the user's is the only one: its processes just give
        // up their capabilities; with ranges, they change to it (which
        // does that too).
        let many_ids = outer_maps.is_some();
        // With ids 0-65535 inside, another id is no one there: setuid and
        // setgid would fail at every run with a bare EINVAL.
        if let Some((uid, gid)) = self.user
            && many_ids
            && (uid >= crate::setup::idmap::RANGE || gid >= crate::setup::idmap::RANGE)
        {
            return Err(Error::InvalidOption {
                option: "user",
                reason: format!(
                    "{uid}:{gid}: the sandbox has ids 0-{} (the host's ranges); choose ids \
                     among them",
                    crate::setup::idmap::RANGE - 1
                ),
            });
        }
        let drop_caps = self.user.is_some() && !many_ids;
        let set_ids = self.user.filter(|_| many_ids);
        if let Some(program) = &self.program {
            let user = match (set_ids, self.user) {
                (Some((uid, gid)), _) => Some((wire::PROGRAM_SET_IDS, uid, gid)),
                (None, Some((uid, gid))) => Some((wire::PROGRAM_DROP_CAPS, uid, gid)),
                (None, None) => None,
            };
            steps.push(program_step(
                program,
                filter,
                &rlimits,
                user,
                cgroups.is_some(),
                self.program_terminal,
            ));
        }
        // The id maps come first and are written before the init program
        // is exec'd; it runs the rest.
        let maps = steps
            .iter()
            .take_while(|s| s.kind == StepKind::IdMap)
            .count();
        let plan = reports::encode_plan(&steps[maps..]);

        let lifeline = lifeline::lifeline().map_err(|e| Error::sys("opening the lifeline", e))?;
        let (ready_r, ready_w) =
            fd::pipe().map_err(|e| Error::sys("creating the init process's report pipe", e))?;
        // A host of a network shares its switch's user namespace: it has
        // no maps of its own (`ids` is None), and `maps` is 0.
        let (_plan_r, control, launch, plan_sent) = launch::prepare(
            &steps[..maps],
            &plan,
            &ready_w,
            lifeline,
            // Maps of ranges are written from outside, by this process.
            mapping
                .filter(|m| matches!(m, crate::setup::idmap::Mapping::Ranges { .. }))
                .map(|m| Box::new(move |pid| m.write(pid)) as launch::MapWriter),
            // Nor does an early helper share that memory: the init program
            // starts the helper itself.
            if nested {
                0
            } else {
                early_helper_flags(&steps)
            },
            launch::Handed {
                stdio: self
                    .program
                    .as_ref()
                    .map(|_| self.program_stdio.unwrap_or([0, 1, 2])),
                layer_lock: disk_layers.as_ref().map(|l| l.lock_fd()),
                user: self.user.filter(|&(uid, _)| uid != 0),
            },
        )
        .map_err(|(step, e)| Error::sys(step, e))?;
        let confinement = crate::child::confine::Confinement {
            drop_caps,
            set_ids,
            cgroup_procs: cgroups.as_ref().map(|c| c.procs()).unwrap_or_default(),
            rlimits,
            filter,
        };
        // The init process, and the process to reap once it has ended:
        // itself, our child, or the joiner that stays as its parent.
        let (pid, reap_pid) = match userns {
            None => launch
                .start(clone_flags)
                .map(|pid| (pid, pid))
                .map_err(|errno| {
                    let facts = HostFacts::read();
                    let cgroup_refused = (cgroup != 0 && errno == libc::EPERM)
                        .then(|| diagnose::cgroup_namespace_hint(&facts))
                        .flatten();
                    Error::NamespacesRefused {
                        error: std::io::Error::from_raw_os_error(errno),
                        hint: cgroup_refused
                            .or_else(|| diagnose::hint(Phase::Clone, errno, &facts)),
                    }
                })?,
            Some(owner) => runner::start_init_in(&owner.init_pidfd, clone_flags, &launch)?,
        };
        let abandon = || {
            let _ = sys::kill_and_reap_through(pid, reap_pid);
        };
        let map_failure = launch.map_failure();
        // Our unreaped child: its pid is pinned.
        let init_pidfd =
            Fd::open(|| sys::pidfd_open(pid).map_err(std::io::Error::from_raw_os_error)).map_err(
                |e| {
                    abandon();
                    Error::sys("opening a pidfd for the sandbox's init process", e)
                },
            )?;
        // What the plan's pipe could not hold (a long command line): the
        // init program reads it now, before anything else comes on that
        // channel.
        if let Err(e) = launch::send_rest(
            &control,
            &plan,
            plan_sent,
            std::os::fd::AsFd::as_fd(&init_pidfd),
        ) {
            abandon();
            return Err(Error::sys("sending the init program its plan", e));
        }
        // Once the launched child has exec'd: until then it shares this
        // process's memory, and an OOM kill in the sandbox's memory cgroup
        // would kill this process with it.
        if let Some(c) = &cgroups
            && let Err(e) = {
                launch.settle();
                c.attach(pid)
            }
        {
            abandon();
            return Err(e);
        }
        if self.program.is_some() && cgroups.is_some() {
            // In its cgroups now: the program it starts will be too.
            if let Err(e) = sys::write_all(std::os::fd::AsFd::as_fd(&control), &[wire::CONTROL_GO])
            {
                abandon();
                return Err(Error::sys(
                    "telling the init process to start the program",
                    std::io::Error::from_raw_os_error(e),
                ));
            }
        }
        drop(ready_w);
        // While the init process sets up, on another CPU.
        let output = Output::new(self.output_limit).map_err(|e| {
            abandon();
            Error::sys("creating the output pipes", e)
        })?;
        // The list of the init process's children, read after each run to
        // find processes it left behind (see forward_if_left_running):
        // opened now, while the init process sets up, rather than at the
        // first run. Its pid is pinned, and the file follows the process
        // through its exec.
        let init_children =
            Fd::open(|| std::fs::File::open(format!("/proc/{pid}/task/{pid}/children"))).ok();

        let sandbox = Sandbox {
            init_pid: pid,
            reap_pid,
            init_pidfd,
            nstypes,
            hostname: self.hostname.clone(),
            timeout,
            max_result_size: self.max_result_size,
            spawned: Arc::new(crate::sandbox::SpawnedList::default()),
            killed: Arc::new(AtomicBool::new(false)),
            output: Arc::new(output),
            init_children,
            control,
            kept: AtomicBool::new(false),
            confinement,
            cgroups,
            limits: self.limits,
            outer_maps,
            program_report: None,
            disk_layers,
            keeper: None,
            owner: std::process::id(),
            keep_failed,
            keep_when_dropped: Arc::new(AtomicBool::new(false)),
            strays: AtomicBool::new(false),
        };
        Ok(Started {
            sandbox,
            ready_r,
            steps,
            maps,
            map_failure,
            launch,
        })
    }
}

/// The namespaces the early helper makes (see `child::launch`): those of the
/// plan's inner user namespace.
fn early_helper_flags(steps: &[plan::Step]) -> libc::c_int {
    steps
        .iter()
        .find_map(|s| match &s.action {
            plan::Action::Nest { flags, .. } => Some(flags & !libc::CLONE_NEWUSER),
            _ => None,
        })
        .unwrap_or(0)
}

/// The step that has the init process start `program` once ready.
fn program_step(
    program: &Program,
    filter: &[libc::sock_filter],
    rlimits: &crate::child::confine::Rlimits,
    user: Option<(u8, u32, u32)>,
    after_go: bool,
    terminal: bool,
) -> plan::Step {
    let run = |strings: &[std::ffi::CString]| -> Vec<u8> {
        strings
            .iter()
            .flat_map(|s| s.as_bytes_with_nul().iter().copied())
            .collect()
    };
    let mut filter_bytes = Vec::with_capacity(8 * filter.len());
    for i in filter {
        filter_bytes.extend_from_slice(&i.code.to_ne_bytes());
        filter_bytes.push(i.jt);
        filter_bytes.push(i.jf);
        filter_bytes.extend_from_slice(&i.k.to_ne_bytes());
    }
    let mut limits = Vec::new();
    for (resource, soft, hard) in rlimits.values() {
        limits.extend_from_slice(&(resource as u32).to_le_bytes());
        limits.extend_from_slice(&soft.to_le_bytes());
        limits.extend_from_slice(&hard.to_le_bytes());
    }
    plan::Step {
        what: format!("starting {}", program.path.to_string_lossy()),
        kind: StepKind::Program,
        action: plan::Action::StartProgram {
            path: program.path.clone(),
            argv: run(&program.args),
            envp: run(&program.env),
            cwd: program.cwd.clone(),
            strict_cwd: program.strict_cwd,
            filter: filter_bytes,
            rlimits: limits,
            user: user.map_or_else(Vec::new, |(how, uid, gid)| {
                let mut bytes = vec![how];
                bytes.extend_from_slice(&uid.to_le_bytes());
                bytes.extend_from_slice(&gid.to_le_bytes());
                bytes
            }),
            after_go,
            terminal,
        },
    }
}

/// A sandbox whose init process was started, before its report.
struct Started {
    sandbox: Sandbox,
    /// Where the init process reports.
    ready_r: Fd,
    steps: Vec<plan::Step>,
    /// How many of `steps` are the id maps, written before its exec.
    maps: usize,
    /// Why maps written from outside failed, if they did.
    map_failure: Option<String>,
    /// The init process's launch: it may still be exec'ing.
    launch: launch::Launch,
}

/// What the init process's report means: ready, or the error, with the kind
/// of step that failed.
fn interpret(
    report: Option<InitReport>,
    steps: &[plan::Step],
    maps: usize,
) -> Result<Option<u32>, (Error, Option<StepKind>)> {
    let errno_error = |errno| std::io::Error::from_raw_os_error(errno);
    let setup = |step: &str, errno| {
        (
            Error::Setup {
                step: step.into(),
                error: errno_error(errno),
                hint: None,
            },
            None,
        )
    };
    let (index, errno) = match report {
        Some(InitReport::Ready { keeper }) => return Ok(keeper),
        Some(InitReport::StepFailed { index, errno }) => (maps + index, errno),
        Some(InitReport::MapFailed { index, errno }) => (index, errno),
        Some(InitReport::ExecFailed { errno }) => {
            return Err(setup(
                "starting the init program (execveat of its in-memory copy)",
                errno,
            ));
        }
        Some(InitReport::PlanRefused { errno }) => {
            return Err(setup("reading the init program's setup plan", errno));
        }
        Some(InitReport::FinishFailed { errno }) => {
            return Err(setup(
                "finishing the init process's setup (dumpable, SIGCHLD)",
                errno,
            ));
        }
        None => {
            return Err((
                Error::Sys {
                    step: "starting the sandbox's init process",
                    error: std::io::Error::other("it exited without a report"),
                },
                None,
            ));
        }
    };
    let Some(step) = steps.get(index) else {
        return Err(setup(
            &format!("setup step {index} of the init process"),
            errno,
        ));
    };
    let phase = match step.kind {
        StepKind::IdMap => Phase::IdMap,
        StepKind::Nest => Phase::Clone,
        StepKind::Proc | StepKind::Sys => Phase::FreshMount,
        _ => Phase::Other,
    };
    Err((
        Error::Setup {
            step: step.what.clone(),
            error: errno_error(errno),
            hint: diagnose::hint(phase, errno, &HostFacts::read()),
        },
        Some(step.kind),
    ))
}

/// The default size of a sandbox's `/tmp`: tmpfs would take half of the
/// machine's memory.
const DEFAULT_TMP_SIZE: u64 = 1 << 30;

/// The size of a sandbox's `/dev/shm` unless set (Docker's default).
const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// A run's timeout when the builder sets none: `HERMETIC_TIMEOUT` seconds
/// (0: none), or 5 minutes.
fn default_timeout() -> Result<Option<Duration>, Error> {
    const DEFAULT: Duration = Duration::from_secs(5 * 60);
    // Empty is unset, as for HERMETIC_KEEP (CI files often set it so).
    let Some(value) = std::env::var_os("HERMETIC_TIMEOUT").filter(|v| !v.is_empty()) else {
        return Ok(Some(DEFAULT));
    };
    // Whole or decimal seconds (`1.5`), as `hermetic run --timeout` takes
    // them.
    let secs = value.to_str().and_then(decimal);
    match secs.and_then(|n| Duration::try_from_secs_f64(n).ok()) {
        Some(Duration::ZERO) => Ok(None),
        Some(t) => Ok(Some(t)),
        None => Err(Error::InvalidOption {
            option: "HERMETIC_TIMEOUT",
            reason: format!("{value:?} is not a number of seconds (0 for no timeout)"),
        }),
    }
}

/// A whole or decimal number as people write one (`10`, `0.5`, `1.5`:
/// digits and at most one point, no sign, exponent or `inf`), as
/// `HERMETIC_TIMEOUT` and the `hermetic` command's durations take it.
pub(crate) fn decimal(text: &str) -> Option<f64> {
    let text = text.trim();
    let plain = text.starts_with(|c: char| c.is_ascii_digit())
        && text.chars().all(|c| c.is_ascii_digit() || c == '.')
        && text.matches('.').count() <= 1;
    plain.then(|| text.parse().ok()).flatten()
}

/// The files to place, with an `/etc/hosts` that names the sandbox's
/// hostname (on loopback, as the host's names its own), where the host's
/// does not and the test places none of its own: a program that looks its
/// own name up (Java's `InetAddress.getLocalHost()`, `hostname -i`, a
/// server that binds its hostname) finds it, as in a container. `None`:
/// the files as they are.
fn hosts_naming(hostname: &str, files: &[(PathBuf, Vec<u8>)]) -> Option<Vec<(PathBuf, Vec<u8>)>> {
    let hosts = Path::new("/etc/hosts");
    if files.iter().any(|(target, _)| target == hosts) {
        return None;
    }
    // Placed over the host's file: without one, nothing to cover.
    let text = hosts_text(&std::fs::read(hosts).ok()?, hostname)?;
    let mut files = files.to_vec();
    files.push((hosts.to_path_buf(), text));
    Some(files)
}

/// The most of the host's `/etc/hosts` a sandbox's copies whole: a larger
/// one (a blocklist of a hundred thousand names, as some laptops have)
/// would cost each sandbox its copy; only its loopback lines are kept,
/// the only addresses a sandbox reaches anyway.
const HOSTS_COPIED_WHOLE: usize = 64 << 10;

/// The sandbox's `/etc/hosts` from the host's (`host`): `None` if that
/// names `hostname` already; else its lines (its loopback lines only, if
/// it is larger than [`HOSTS_COPIED_WHOLE`]) and `127.0.0.1 HOSTNAME`.
fn hosts_text(host: &[u8], hostname: &str) -> Option<Vec<u8>> {
    // The address and the names of a line, without its comment.
    fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
        let line = line.split(|&b| b == b'#').next().unwrap_or_default();
        line.split(u8::is_ascii_whitespace)
            .filter(|w| !w.is_empty())
    }
    let lines = host.split(|&b| b == b'\n');
    let named = lines.clone().any(|line| {
        fields(line)
            .skip(1)
            .any(|name| name.eq_ignore_ascii_case(hostname.as_bytes()))
    });
    if named {
        return None;
    }
    let mut text = if host.len() <= HOSTS_COPIED_WHOLE {
        host.to_vec()
    } else {
        let loopback = |line: &[u8]| {
            fields(line).next().is_some_and(|addr| {
                std::str::from_utf8(addr)
                    .ok()
                    .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                    .is_some_and(|a| a.is_loopback())
            })
        };
        lines
            .filter(|line| loopback(line))
            .flat_map(|line| line.iter().copied().chain([b'\n']))
            .collect()
    };
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(format!("127.0.0.1\t{hostname}\n").as_bytes());
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hostname_is_added_to_the_host_s_hosts_unless_named() {
        let host = b"127.0.0.1 localhost\n::1 localhost # v6\n10.0.0.5 db.example\n";
        let text = hosts_text(host, "sandbox").unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "127.0.0.1 localhost\n::1 localhost # v6\n10.0.0.5 db.example\n127.0.0.1\tsandbox\n"
        );
        // Named already (case aside), or only in a comment.
        assert_eq!(hosts_text(b"127.0.1.1 DB.local db\n", "db"), None);
        assert!(hosts_text(b"127.0.0.1 localhost # db\n", "db").is_some());
        // No newline at the end of the host's.
        assert_eq!(
            hosts_text(b"127.0.0.1 localhost", "h").unwrap(),
            b"127.0.0.1 localhost\n127.0.0.1\th\n"
        );
    }

    #[test]
    fn of_a_large_hosts_file_only_loopback_lines_are_kept() {
        let mut host = b"127.0.0.1 localhost\n::1 ip6-localhost\n127.0.1.1 vm\n".to_vec();
        while host.len() <= HOSTS_COPIED_WHOLE {
            host.extend_from_slice(b"0.0.0.0 ads.example.com\n10.1.2.3 far.example\n");
        }
        let text = hosts_text(&host, "sandbox").unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "127.0.0.1 localhost\n::1 ip6-localhost\n127.0.1.1 vm\n127.0.0.1\tsandbox\n"
        );
    }
}
