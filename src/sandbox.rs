//! The public sandbox: its builder, its runs, and its teardown.

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::os::fd::{AsFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::child::{command, init};
use crate::diagnostics::{self, HostFacts, Phase};
use crate::error::Error;
use crate::fds::{self, Fd};
use crate::host::HostMode;
use crate::lifeline;
use crate::output::{DEFAULT_OUTPUT_LIMIT, Output, OutputLimit};
use crate::plan::{self, Ids, MountSpec, StepKind};
use crate::protocol::{self, InitReport};
use crate::run::{self, Ended, Runner};
use crate::sys;

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
    /// The uid and gid of the sandbox's processes, if not root.
    user: Option<(u32, u32)>,
    /// The most the sandbox's `/tmp` holds.
    tmp_size: u64,
    /// Memory, processes, CPU time.
    limits: crate::limits::Limits,
    /// keyctl, add_key and request_key allowed inside.
    keyring: bool,
    /// What is kept of each run's output.
    output_limit: OutputLimit,
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
            user: None,
            tmp_size: DEFAULT_TMP_SIZE,
            limits: crate::limits::Limits::default(),
            keyring: false,
            output_limit: DEFAULT_OUTPUT_LIMIT,
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

    /// The sandbox's hostname (at most 64 bytes).
    pub fn hostname(&mut self, name: impl Into<String>) -> &mut Self {
        self.hostname = name.into();
        self
    }

    /// How long one [`Sandbox::run`] may take before its process is killed
    /// and the run fails with [`Error::TimedOut`], which says where the
    /// closure was stuck. Default: 5 minutes, or the number of seconds in
    /// the environment variable `HERMETIC_TIMEOUT` (for a whole suite; `0`
    /// means none); `Duration::MAX` (or any timeout too long to reach)
    /// means none.
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
    /// `CommandExt::uid(n)` behave as on a normal system: as root, and as
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
    pub fn memory_limit(&mut self, bytes: u64) -> &mut Self {
        self.limits.memory = Some(bytes);
        self
    }

    /// The most processes (and threads) the sandbox may hold (its pids
    /// cgroup's limit; else `RLIMIT_NPROC`, counted per user namespace):
    /// `fork` and thread creation past it fail with `EAGAIN`.
    pub fn pids_limit(&mut self, n: u64) -> &mut Self {
        self.limits.pids = Some(n);
        self
    }

    /// The most CPU time each process of the sandbox may use (`RLIMIT_CPU`,
    /// whole seconds, at least one): a run that uses it up is stopped with
    /// [`Error::LimitReached`].
    pub fn cpu_time_limit(&mut self, limit: Duration) -> &mut Self {
        self.limits.cpu = Some(limit);
        self
    }

    /// The most the sandbox's `/tmp` holds, in bytes (it is memory):
    /// writes past it fail with `ENOSPC`. Default: 1 GiB (`/dev/shm`:
    /// 64 MiB).
    pub fn tmp_size(&mut self, bytes: u64) -> &mut Self {
        self.tmp_size = bytes;
        self
    }

    /// Mounts a fresh, empty tmpfs on `target` inside the sandbox.
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
    /// # Errors
    ///
    /// [`build`](Self::build) fails with [`Error::InvalidOption`] (option
    /// `file`) when `target` is not absolute, holds `.` or `..` or a NUL
    /// byte, is given twice, is a tmpfs mount point, lies under a
    /// [`bind`](Self::bind) target, or (outside the sandbox's tmpfs mounts)
    /// is not an existing file of the host.
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
    /// own `/tmp` or `/dev/shm` would hide it: with a read-only host (and
    /// where copy-on-write falls back to it) it is bound in, read-only,
    /// before your own mounts, which win over it; with a writable host,
    /// writable. Copy-on-write shows the host's `/tmp` anyway. The working
    /// directory and the target dir of the running executable always are;
    /// `hermetic run` adds its program's directory.
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
    /// (or a [`Spawned::join`]) to its end; what processes print between
    /// runs counts towards the next run, or the sandbox's drop.
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
                crate::host::refuse(&e);
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
        crate::child::install_panic_hook();
        let Started {
            sandbox,
            ready_r,
            steps,
            maps,
            map_failure,
            launch,
        } = self.start(userns).map_err(|e| (e, None))?;
        let report = match run::read_report(&ready_r, &sandbox.holder) {
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
        interpret(report.map(InitReport::decode), &steps, maps)
            .map(|()| sandbox)
            .map_err(|(e, kind)| match (e, map_failure) {
                // Why the maps written from outside failed.
                (Error::Setup { step, error, .. }, Some(why)) if kind == Some(StepKind::IdMap) => (
                    Error::Setup {
                        step,
                        error,
                        hint: Some(why),
                    },
                    kind,
                ),
                (e, _) => (e, kind),
            })
    }

    /// Starts the init process; returns the sandbox, the report pipe, the
    /// steps and how many of them are id maps.
    fn start(&self, userns: Option<&Sandbox>) -> Result<Started, Error> {
        let hostname = plan::hostname(&self.hostname)?;
        if self.tmp_size < 4096 {
            // tmpfs reads size=0 as no limit at all.
            return Err(Error::InvalidOption {
                option: "tmp_size",
                reason: format!(
                    "{} bytes: /tmp needs at least one page (4096)",
                    self.tmp_size
                ),
            });
        }
        let timeout = match self.timeout {
            Some(t) => Some(t),
            None => default_timeout()?,
        };
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
        // until its exec (see child::init): it writes its own maps, after
        // making its own copy of the memory dumpable, and maps one id.
        let nested = !sys::is_dumpable();
        let mapping = ids.map(|_| {
            if nested {
                crate::idmap::Mapping::Single
            } else {
                crate::idmap::detect()
            }
        });
        let ids_inside = match (&mapping, userns) {
            (Some(m), _) => m.ids_inside(),
            (None, Some(owner)) => owner.ids_inside,
            (None, None) => 1,
        };
        let external_maps = match &mapping {
            Some(crate::idmap::Mapping::Ranges { helpers: None, .. }) => {
                Some("written as root from outside".to_owned())
            }
            Some(crate::idmap::Mapping::Ranges { .. }) => {
                Some("written by newuidmap and newgidmap".to_owned())
            }
            _ => None,
        };
        let host = crate::host::effective(self.host.unwrap_or_default());
        let view = crate::host::HostView::cached(host == HostMode::CopyOnWrite);
        let layout = plan::Layout {
            hostname: &hostname,
            mounts: &self.mounts,
            files: &self.files,
            host,
            view: &view,
            visible: std::env::current_dir()
                .ok()
                .into_iter()
                .chain(view.target_dir.clone())
                .chain(self.visible.iter().cloned())
                .collect(),
            root: sys::geteuid() == 0,
            keepable: keep_failed(),
            user: self.user,
            tmp_size: self.tmp_size,
            ids_inside,
            external_maps,
        };
        let steps = plan::holder_steps(ids, &layout)?;
        // The id maps come first and are written before the init program
        // is exec'd; it runs the rest.
        let maps = steps
            .iter()
            .take_while(|s| s.kind == StepKind::IdMap)
            .count();
        let plan = protocol::encode_plan(&steps[maps..]);

        let lifeline = lifeline::lifeline().map_err(|e| Error::sys("opening the lifeline", e))?;
        let (ready_r, ready_w) =
            fds::pipe().map_err(|e| Error::sys("creating the init process's report pipe", e))?;
        // A host of a network shares its switch's user namespace: it has
        // no maps of its own (`ids` is None), and `maps` is 0.
        let (_plan_r, control, launch) = init::prepare(
            &steps[..maps],
            &plan,
            &ready_w,
            lifeline,
            mapping,
            // Nor does an early helper share that memory: the init program
            // starts the helper itself.
            if nested {
                0
            } else {
                early_helper_flags(&steps)
            },
        )
        .map_err(|(step, e)| Error::sys(step, e))?;
        crate::limits::clean_stale_once();
        // Before anything is started: a refused cgroup fails the build.
        let cgroups = crate::limits::Cgroups::create(&self.limits)?;
        let confinement = crate::limits::Confinement {
            // With one id, the user's is the only one: its processes just
            // give up their capabilities; with ranges, they change to it
            // (which does that too).
            drop_caps: self.user.is_some() && ids_inside == 1,
            set_ids: self.user.filter(|_| ids_inside > 1),
            cgroup_procs: cgroups.as_ref().map(|c| c.procs()).unwrap_or_default(),
            rlimits: crate::limits::Rlimits::for_limits(&self.limits, cgroups.as_ref()),
            filter: crate::seccomp::filter(self.keyring),
        };
        let pid = match userns {
            None => launch
                .start(clone_flags)
                .map_err(|errno| Error::NamespacesRefused {
                    error: std::io::Error::from_raw_os_error(errno),
                    hint: diagnostics::hint(Phase::Clone, errno, &HostFacts::read()),
                })?,
            Some(owner) => run::start_init_in(&owner.holder, clone_flags, &launch)?,
        };
        let map_failure = launch.map_failure();
        // Our unreaped child: its pid is pinned.
        let holder = Fd::open(|| sys::pidfd_open(pid)).map_err(|e| {
            let _ = sys::kill_and_reap(pid);
            Error::sys("opening a pidfd for the sandbox's init process", e)
        })?;
        if let Some(c) = &cgroups
            && let Err(e) = c.attach(pid)
        {
            let _ = sys::kill_and_reap(pid);
            return Err(e);
        }
        drop(ready_w);
        // While the init process sets up, on another CPU.
        let output = Output::new(self.output_limit).map_err(|e| {
            let _ = sys::kill_and_reap(pid);
            Error::sys("creating the output pipes", e)
        })?;
        // The list of the init process's children, read after each run to
        // find processes it left behind (see forward_if_left_running):
        // opened now, while the init process sets up, rather than at the
        // first run. Its pid is pinned, and the file follows the process
        // through its exec.
        let holder_children =
            Fd::open(|| std::fs::File::open(format!("/proc/{pid}/task/{pid}/children"))).ok();

        let sandbox = Sandbox {
            holder_pid: pid,
            holder,
            nstypes,
            hostname: self.hostname.clone(),
            timeout,
            max_result_size: self.max_result_size,
            spawned: Arc::new(Mutex::new(Vec::new())),
            killed: Arc::new(AtomicBool::new(false)),
            output: Arc::new(output),
            holder_children,
            control,
            kept: AtomicBool::new(false),
            confinement,
            cgroups,
            limits: self.limits,
            ids_inside,
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

/// The namespaces the early helper makes (see `child::init`): those of the
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
    launch: init::Launch,
}

/// What the init process's report means: ready, or the error, with the kind
/// of step that failed.
fn interpret(
    report: Option<InitReport>,
    steps: &[plan::Step],
    maps: usize,
) -> Result<(), (Error, Option<StepKind>)> {
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
        Some(InitReport::Ready) => return Ok(()),
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
            hint: diagnostics::hint(phase, errno, &HostFacts::read()),
        },
        Some(step.kind),
    ))
}

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
    holder_pid: libc::pid_t,
    holder: Fd,
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
    /// `/proc/HOLDER/task/HOLDER/children`, read again from the start
    /// after each run (None if it could not be opened).
    holder_children: Option<Fd>,
    /// The init process's control channel (see [`Sandbox::keep`]).
    control: Fd,
    /// Kept: not torn down when dropped.
    kept: AtomicBool,
    /// What its processes are put under (user, cgroups, rlimits).
    confinement: crate::limits::Confinement,
    /// Its cgroups, if its limits are enforced that way; removed after the
    /// init process (so after every process of the sandbox) is gone.
    cgroups: Option<crate::limits::Cgroups>,
    /// The limits asked for, to name the one a run reached.
    limits: crate::limits::Limits,
    /// How many ids its outer user namespace maps (1, or 65536).
    ids_inside: u32,
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
        self.holder_pid as u32
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
        self.check_alive()?;
        let oom_kills = self
            .cgroups
            .as_ref()
            .map_or(0, crate::limits::Cgroups::oom_kills);
        let result = Runner::start(
            &self.holder,
            self.nstypes,
            &self.confinement,
            self.output.fds(),
            keep,
            false,
            f,
        )
        .and_then(|mut runner| {
            match runner.wait(self.timeout, self.max_result_size, &self.output) {
                Ended::Frame(tag, payload) => crate::channel::decode_outcome(tag, &payload),
                Ended::Died(e) => Err(e),
            }
        });
        self.output.end_run();
        self.forward_if_left_running();
        let result = result
            .map_err(|e| self.name_the_limit(e, oom_kills))
            .map_err(|e| self.name_stuck_spawned(e));
        if let Err(e) = &result
            && ran_and_failed(e)
            && keep_failed()
            && let Ok(enter) = self.keep()
        {
            eprintln!(
                "hermetic: HERMETIC_KEEP is set: the sandbox of this failed run is kept (init \
                 process {}); look inside with: {enter} sh",
                self.holder_pid
            );
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
    /// rootless, as root inside with every capability (a shell for looking
    /// around, not a sandboxed process). Without one (keep called on a
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
            sys::write_all(self.control.as_fd(), &[crate::wire::CONTROL_KEEP]).map_err(|e| {
                Error::sys(
                    "telling the init process to keep the sandbox",
                    std::io::Error::from_raw_os_error(e),
                )
            })?;
            self.kept.store(true, Ordering::SeqCst);
        }
        Ok(self.enter_command())
    }

    /// The `nsenter` command that reaches inside: through the keeper (see
    /// `SandboxBuilder` and `HERMETIC_KEEP`), whose user namespace owns the
    /// mounts, so that it works rootless too; else through the init
    /// process, which works as root.
    fn enter_command(&self) -> String {
        let target = self.keeper_pid().unwrap_or(self.holder_pid as u32);
        format!("nsenter -t {target} -U -m -n -p -u -i --preserve-credentials")
    }

    /// The keeper's pid (in this process's PID namespace), if the sandbox
    /// has one: the init process's child named `hermetic-keeper`.
    fn keeper_pid(&self) -> Option<u32> {
        let pid = self.holder_pid;
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children.split_whitespace().find_map(|child| {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).ok()?;
            (comm.trim_end() == "hermetic-keeper").then(|| child.parse().ok())?
        })
    }

    /// A run that died of a limit, told as such: `oom_kills` is what the
    /// memory cgroup had counted before the run.
    fn name_the_limit(&self, e: Error, oom_kills: u64) -> Error {
        let Error::Killed { signal, signo, .. } = &e else {
            return e;
        };
        let limits = &self.limits;
        let cgroup_memory = self.cgroups.as_ref().filter(|c| c.memory);
        let limit = match *signo {
            libc::SIGKILL if cgroup_memory.is_some_and(|c| c.oom_kills() > oom_kills) => limits
                .memory
                .map(|b| format!("memory limit of {}", crate::limits::bytes(b))),
            libc::SIGXCPU => limits
                .cpu
                .map(|d| format!("CPU time limit of {}s", d.as_secs().max(1))),
            // Without a memory cgroup, the limit is each process's address
            // space: Rust aborts when an allocation fails.
            libc::SIGABRT if cgroup_memory.is_none() => limits.memory.map(|b| {
                format!(
                    "memory limit of {} (RLIMIT_AS: an allocation failed, which aborts)",
                    crate::limits::bytes(b)
                )
            }),
            _ => None,
        };
        match limit {
            Some(limit) => Error::LimitReached { limit, signal },
            None => e,
        }
    }

    /// A run that timed out, told with the spawned closures of the sandbox
    /// whose every thread waits on a lock: a run often waits for a server
    /// of its sandbox, and a server stuck on a lock the fork copied held
    /// (the usual hang) is then the cause, not the run.
    fn name_stuck_spawned(&self, e: Error) -> Error {
        let Error::TimedOut { after, mut stuck } = e else {
            return e;
        };
        let spawned: Vec<libc::pid_t> = self
            .spawned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|&(pid, _)| pid)
            .collect();
        for pid in spawned {
            if let Some(text) = diagnostics::stuck_on_locks(pid) {
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
                "\nhermetic: the sandbox is kept (init process {}): look inside with: {} sh",
                self.holder_pid,
                self.enter_command()
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
        let mut spawned = self.spawned.lock().unwrap_or_else(|e| e.into_inner());
        let runner = Runner::start(
            &self.holder,
            self.nstypes,
            &self.confinement,
            self.output.fds(),
            keep,
            true,
            f,
        )?;
        spawned.push((runner.pid(), runner.joiner()));
        Ok(Spawned {
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
    /// process, so use `output()` or `Stdio::piped()` to look at it. The
    /// program is killed when the sandbox is dropped; `Child::kill` kills it
    /// too.
    ///
    /// The `Child`'s pid is a small relay in the test's PID namespace (the
    /// program's parent, as a program inside has no pid outside): every
    /// signal it can catch (`SIGTERM`, `SIGINT`, `SIGHUP`, `SIGUSR1`...) is
    /// passed on to the program, whose handlers and traps run, and its exit
    /// status is the program's, code or signal. `SIGKILL` kills the relay,
    /// and the program with it.
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
        let holder = self
            .holder
            .try_clone()
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EBADF));
        let cgroups = self
            .cgroups
            .as_ref()
            .map(crate::limits::Cgroups::clone_procs)
            .unwrap_or_default();
        command::enter_on_exec(
            &mut cmd,
            holder,
            self.nstypes,
            cgroups,
            self.confinement.rlimits,
            self.confinement.set_ids,
            self.confinement.filter,
        );
        cmd
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
    /// [`Error::Sys`] if the holder's pidfd cannot be duplicated.
    pub fn killer(&self) -> Result<Killer, Error> {
        let holder = self
            .holder
            .try_clone()
            .map_err(|e| Error::sys("duplicating the sandbox's pidfd", e))?;
        Ok(Killer {
            holder,
            killed: self.killed.clone(),
        })
    }

    /// After a run: if it left processes behind (the runner's orphans are
    /// now the init process's children), they may print at any time, so a
    /// forwarding thread takes over the output pipes.
    fn forward_if_left_running(&self) {
        if !self.output.readers_to_poll().is_empty() {
            let children = &self.holder_children;
            let mut buf = [0u8; 256];
            let left = match children
                .as_ref()
                .and_then(|f| sys::pread(f.as_fd(), &mut buf, 0).ok())
            {
                None => true,
                Some(0) => false,
                // The task freeing a run's memory (see child::closure) is
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
        sys::poll(&[self.holder.as_fd()], Some(Duration::ZERO)).is_ok_and(|ready| !ready[0].any)
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
            self.holder_pid = 0;
            return Ok(());
        }
        // Killing PID 1 makes the kernel kill everything else inside.
        let killed = sys::pidfd_send_signal(self.holder.as_fd(), libc::SIGKILL);
        // The dying holder waits until every process of its namespace has
        // been reaped, including runners whose parent is the test process:
        // reap those first.
        let spawned = std::mem::take(&mut *self.spawned.lock().unwrap_or_else(|e| e.into_inner()));
        for (pid, joiner) in spawned {
            let _ = sys::kill_and_reap(pid);
            let _ = run::reap_pid(joiner);
        }
        let reaped = run::reap_pid(self.holder_pid);
        // Mark as done so Drop does not try again.
        self.holder_pid = 0;
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
        if self.holder_pid != 0 {
            let _ = self.teardown();
        }
    }
}

/// Kills a sandbox from anywhere; made by [`Sandbox::killer`].
#[derive(Debug)]
#[must_use = "a Killer does nothing until kill() is called"]
pub struct Killer {
    holder: Fd,
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
        match sys::pidfd_send_signal(self.holder.as_fd(), libc::SIGKILL) {
            Ok(()) | Err(libc::ESRCH) => Ok(()),
            Err(errno) => Err(Error::sys(
                "killing the sandbox's init process",
                std::io::Error::from_raw_os_error(errno),
            )),
        }
    }
}

/// Whether `pid` (as `/proc/HOLDER/task/HOLDER/children` lists it, in the
/// test process's PID namespace) is the task that frees a run's memory, or
/// already gone.
fn is_exit_task(pid: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/comm"))
        .map_or(true, |comm| comm.trim_ascii_end() == b"hermetic-exit")
}

/// Whether `e` says the closure itself failed (so its sandbox is worth
/// keeping with `HERMETIC_KEEP`), not that it could not start.
fn ran_and_failed(e: &Error) -> bool {
    matches!(
        e,
        Error::Panicked { .. }
            | Error::Killed { .. }
            | Error::Exited { .. }
            | Error::TimedOut { .. }
            | Error::Channel { .. }
    )
}

/// `HERMETIC_KEEP` is set (and not `0`).
pub(crate) fn keep_failed() -> bool {
    std::env::var_os("HERMETIC_KEEP").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The default size of a sandbox's `/tmp`: tmpfs would take half of the
/// machine's memory.
const DEFAULT_TMP_SIZE: u64 = 1 << 30;

/// A run's timeout when the builder sets none: `HERMETIC_TIMEOUT` seconds
/// (0: none), or 5 minutes.
fn default_timeout() -> Result<Option<Duration>, Error> {
    const DEFAULT: Duration = Duration::from_secs(5 * 60);
    let Some(value) = std::env::var_os("HERMETIC_TIMEOUT") else {
        return Ok(Some(DEFAULT));
    };
    match value.to_str().and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(0) => Ok(None),
        Some(secs) => Ok(Some(Duration::from_secs(secs))),
        None => Err(Error::InvalidOption {
            option: "HERMETIC_TIMEOUT",
            reason: format!("{value:?} is not a number of seconds (0 for no timeout)"),
        }),
    }
}

/// The runs started by [`Sandbox::spawn`] that are still to be reaped by
/// the sandbox's teardown: (runner, joiner). A [`Spawned`] that takes its
/// runner off the list reaps it itself.
type SpawnedList = Mutex<Vec<(libc::pid_t, libc::pid_t)>>;

/// Takes `pid` off the list; false if it was not there (the sandbox's
/// teardown has killed and reaped it).
fn forget(list: &SpawnedList, pid: libc::pid_t) -> bool {
    let mut spawned = list.lock().unwrap_or_else(|e| e.into_inner());
    let before = spawned.len();
    spawned.retain(|&(p, _)| p != pid);
    spawned.len() != before
}

/// A closure running in the background inside a sandbox; made by
/// [`Sandbox::spawn`]. It borrows nothing: a fixture can return it with its
/// sandbox.
///
/// `T` is the closure's value, which [`join`](Self::join) returns (`()` for
/// a closure that returns nothing: `Spawned` alone is `Spawned<()>`).
///
/// Dropping the handle kills the process, and so does dropping the
/// sandbox. A panic of the closure is printed into the test's output when
/// it happens, and returned by [`join`](Self::join).
#[must_use = "dropping a Spawned kills its process at once: keep it in a variable (`let _server = ...`)"]
pub struct Spawned<T = ()> {
    list: Arc<SpawnedList>,
    output: Arc<Output>,
    max_result_size: usize,
    timeout: Option<Duration>,
    runner: Option<Runner>,
    /// Only a value's type: the handle holds none (it is `Send` and `Sync`
    /// whatever `T`).
    value: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Spawned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawned")
            .field("runner", &self.runner)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("pid", &self.pid()).finish()
    }
}

impl<T> Spawned<T> {
    /// The process's pid, in the caller's PID namespace.
    pub fn pid(&self) -> u32 {
        self.runner.as_ref().map_or(0, |r| r.pid() as u32)
    }

    /// True while the closure's process has not ended. A closure whose
    /// value is larger than a pipe holds (64 KiB) ends once
    /// [`join`](Self::join) has read it.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.runner.as_ref().is_some_and(Runner::running)
    }

    /// Kills the process (with `SIGKILL`) and waits for it to die.
    ///
    /// # Errors
    ///
    /// None at present; the `Result` leaves room for reporting a failed
    /// kill.
    pub fn kill(mut self) -> Result<(), Error> {
        self.stop();
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut runner) = self.runner.take() {
            // Before reaping, so that a reused pid is never taken off the
            // list; not there: the sandbox's teardown reaped it.
            if forget(&self.list, runner.pid()) {
                runner.kill();
            } else {
                runner.reaped_elsewhere();
            }
        }
    }
}

impl<T: DeserializeOwned> Spawned<T> {
    /// Waits for the closure to return and gives its value, at most the
    /// sandbox's timeout ([`SandboxBuilder::timeout`], counted from this
    /// call), after which its process is killed.
    ///
    /// As with [`Sandbox::try_run`], a panic of the closure is returned as
    /// [`Error::Panicked`], with its message and its location inside the
    /// closure (it was also printed when it happened); to fail the test
    /// with it, `join().unwrap()`. A closure stuck past the timeout is
    /// [`Error::TimedOut`], which says where each of its threads was
    /// (state, system call, kernel wait) and, for threads blocked on a
    /// lock, the likely cause (a lock copied held by the fork).
    ///
    /// # Errors
    ///
    /// As [`Sandbox::try_run`]; [`Error::SandboxDead`] if the sandbox was
    /// dropped (which killed the process) before the join.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let sandbox = hermetic::Sandbox::new()?;
    /// let worker = sandbox.spawn(|| std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap())?;
    /// assert_eq!(worker.join()?, "sandbox\n");
    /// let failed = sandbox.spawn(|| -> u32 { panic!("no") })?;
    /// assert!(matches!(failed.join(), Err(hermetic::Error::Panicked { .. })));
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    pub fn join(self) -> Result<T, Error> {
        let timeout = self.timeout;
        self.join_within(timeout)
    }

    /// Like [`join`](Self::join), waiting at most `timeout` (counted from
    /// this call) instead of the sandbox's; `Duration::MAX` waits for as
    /// long as the closure runs.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join); [`Error::TimedOut`] after `timeout`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let sandbox = hermetic::Sandbox::new()?;
    /// let stuck = sandbox.spawn(|| std::thread::sleep(Duration::from_secs(3600)))?;
    /// let err = stuck.join_timeout(Duration::from_millis(100)).unwrap_err();
    /// assert!(matches!(err, hermetic::Error::TimedOut { .. }));
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<T, Error> {
        self.join_within(Some(timeout))
    }

    fn join_within(mut self, timeout: Option<Duration>) -> Result<T, Error> {
        let mut runner = self
            .runner
            .take()
            .expect("the runner is there until consumed");
        // Off the sandbox's list before the pid is reaped (and free for
        // reuse): from here on this handle, or the runner's own drop, reaps.
        if !forget(&self.list, runner.pid()) {
            runner.reaped_elsewhere();
            return Err(Error::SandboxDead {
                doing: "joining a spawned closure",
            });
        }
        let ended = runner.wait(timeout, self.max_result_size, &self.output);
        self.output.end_run();
        match ended {
            Ended::Frame(tag, payload) => crate::channel::decode_outcome(tag, &payload),
            Ended::Died(e) => Err(e),
        }
    }
}

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        self.stop();
    }
}
