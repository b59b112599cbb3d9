//! Resource limits of a sandbox: memory, processes, CPU time.
//!
//! Per sandbox with cgroups where the caller may make them: cgroup v2 where
//! its own cgroup hands the controllers down (root, or a delegated subtree
//! such as systemd's `Delegate=`), else cgroup v1 as root (hosts whose
//! memory and pids controllers are still on v1). Otherwise, and always for
//! CPU time, rlimits of each process the sandbox runs: `RLIMIT_AS` (address
//! space, per process), `RLIMIT_NPROC` (processes of the user, counted per
//! user namespace), `RLIMIT_CPU`. Being each process's own, rlimits let
//! through what [`PER_PROCESS_ESCAPES`] lists.
//!
//! A sandbox's cgroups are removed when it is dropped; those a killed test
//! process left (a SIGKILL runs no drop) by the next test process's first
//! sandbox, and next to any new sandbox with limits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::child::confine::Rlimits;
use crate::error::Error;
use crate::sys::fd::Fd;

/// The limits a builder asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) memory: Option<u64>,
    pub(crate) pids: Option<u64>,
    pub(crate) cpu: Option<Duration>,
}

/// How the limits are enforced on this host, as [`check`](crate::check)
/// reports it: what, and (as its hint) what the limits let through here.
pub(crate) fn mechanism() -> (String, String) {
    match find() {
        Some(Place::V2(dir)) => (
            format!(
                "per sandbox: cgroup v2 under {} (memory, pids); CPU time per process \
                 (RLIMIT_CPU)",
                dir.display()
            ),
            PER_SANDBOX_ESCAPES.to_owned(),
        ),
        Some(Place::V1 { memory, pids }) => (
            format!(
                "per sandbox: cgroup v1 ({}{}); CPU time per process (RLIMIT_CPU)",
                if memory.is_some() { "memory " } else { "" },
                if pids.is_some() { "pids" } else { "" }
            ),
            PER_SANDBOX_ESCAPES.to_owned(),
        ),
        None => (
            "per process only: rlimits (RLIMIT_AS for memory, RLIMIT_NPROC for processes, \
             RLIMIT_CPU for CPU time)"
                .to_owned(),
            format!(
                "per-process limits let through:\n{}\nfix: for per-sandbox memory and process \
                 limits, run as root or in a cgroup v2 subtree delegated to this user, e.g. \
                 systemd-run --user --scope -p Delegate=yes cargo test",
                PER_PROCESS_ESCAPES
                    .iter()
                    .map(|e| format!("- {e}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        ),
    }
}

/// What escapes the limits where they are rlimits, each process's own
/// (`check()` and the README list these; `tests/it/limits.rs` shows each).
pub(crate) const PER_PROCESS_ESCAPES: [&str; 6] = [
    "memory: a memfd (its contents are in no process's address space)",
    "memory: System V shared memory and message queues of an IPC namespace the closure makes \
     itself (shmget, msgsnd: in no process's address space; the sandbox's own IPC namespace \
     holds no more than the limit, its kernel.shmall, shmmax and msgmni set to it)",
    "memory: a tmpfs the closure mounts itself, in a mount namespace of its own (/tmp and \
     /dev/shm have sizes of their own: tmp_size, 64 MiB)",
    "memory: sibling processes (each may use the whole limit)",
    "CPU time: forks (each process has the whole budget, and a fork starts with none used)",
    "processes: other uids (counted per uid; with /etc/subuid ranges a process may change to \
     another, whose count starts at zero)",
];

/// What escapes the limits where they are per sandbox (cgroups).
const PER_SANDBOX_ESCAPES: &str = "memfds, tmpfs mounts, System V shared memory and \
     message queues, sibling processes and other uids all count; CPU time is per process (RLIMIT_CPU): forks escape it (each process has the whole \
     budget, and a fork starts with none used)";

/// Where a sandbox's cgroups go.
enum Place {
    /// This process's cgroup v2, whose subtree has the memory and pids
    /// controllers.
    V2(PathBuf),
    /// This process's cgroups in the v1 memory and pids hierarchies, when
    /// writable.
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
    },
}

/// This process's cgroup in each hierarchy: (controllers, path).
fn own_cgroups() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

/// Whether this process may make directories in `dir`.
fn writable(dir: &Path) -> bool {
    rustix::fs::access(
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .is_ok()
}

/// Where cgroups can go here.
fn find() -> Option<Place> {
    let own = own_cgroups();
    let hands_down = |dir: &Path| {
        let control =
            std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
        let control: Vec<&str> = control.split_whitespace().collect();
        control.contains(&"memory") && control.contains(&"pids") && writable(dir)
    };
    if let Some((_, path)) = own.iter().find(|(c, _)| c.is_empty()) {
        // A delegated subtree: our own cgroup hands the controllers down.
        let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        if hands_down(&dir) {
            return Some(Place::V2(dir));
        }
        // Root on a cgroup v2 host: the root cgroup, which may hold
        // processes and children alike.
        let root = Path::new("/sys/fs/cgroup");
        if hands_down(root) {
            return Some(Place::V2(root.to_path_buf()));
        }
    }
    let v1 = |controller: &str| {
        let (_, path) = own
            .iter()
            .find(|(c, _)| c.split(',').any(|c| c == controller))?;
        let dir = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(path.trim_start_matches('/'));
        writable(&dir).then_some(dir)
    };
    let (memory, pids) = (v1("memory"), v1("pids"));
    (memory.is_some() || pids.is_some()).then_some(Place::V1 { memory, pids })
}

/// The cgroups of one sandbox; removed when dropped (once empty).
#[derive(Debug)]
pub(crate) struct Cgroups {
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each, open for writing: writing a pid (or `0`,
    /// the writer) moves that process in.
    procs: Vec<Fd>,
    /// The file that counts OOM kills in the memory cgroup, and the line's
    /// name: v1 `memory.oom_control` ("oom_kill N"), v2 `memory.events`.
    oom_events: Option<PathBuf>,
    /// What the cgroups enforce.
    pub(crate) memory: bool,
    pub(crate) pids: bool,
    /// The process that made them, which removes them.
    owner: u32,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Cgroups {
    /// Makes the cgroups for `limits`, where this host allows; `None` when
    /// no cgroup limit is asked for or none can be made (rlimits then).
    pub(crate) fn create(limits: &Limits) -> Result<Option<Cgroups>, Error> {
        if limits.memory.is_none() && limits.pids.is_none() {
            return Ok(None);
        }
        // The first time this process makes cgroups: those a killed test
        // process left go first (only a process that makes cgroups looks,
        // so that a sandbox without limits costs nothing here).
        clean_stale_once();
        let Some(place) = find() else {
            return Ok(None);
        };
        let name = format!(
            "hermetic-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let fail = |step: String, e: std::io::Error| Error::Setup {
            step,
            error: e,
            hint: None,
        };
        let mut made = Cgroups {
            dirs: Vec::new(),
            procs: Vec::new(),
            oom_events: None,
            memory: false,
            pids: false,
            owner: std::process::id(),
        };
        let setting = |dir: &Path, file: &str, value: String| -> Result<(), Error> {
            std::fs::write(dir.join(file), &value).map_err(|e| {
                fail(
                    format!("writing {value} to {}", dir.join(file).display()),
                    e,
                )
            })
        };
        match place {
            Place::V2(parent) => {
                clean_stale(&parent);
                let dir = parent.join(&name);
                std::fs::create_dir(&dir)
                    .map_err(|e| fail(format!("making the cgroup {}", dir.display()), e))?;
                made.dirs.push(dir.clone());
                if let Some(bytes) = limits.memory {
                    setting(&dir, "memory.max", bytes.to_string())?;
                    // No swapping around the limit.
                    let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                    made.memory = true;
                    made.oom_events = Some(dir.join("memory.events"));
                }
                if let Some(n) = limits.pids {
                    setting(&dir, "pids.max", n.min(PIDS_MAX).to_string())?;
                    made.pids = true;
                }
            }
            Place::V1 { memory, pids } => {
                if let (Some(bytes), Some(parent)) = (limits.memory, memory) {
                    clean_stale(&parent);
                    let dir = parent.join(&name);
                    std::fs::create_dir(&dir)
                        .map_err(|e| fail(format!("making the cgroup {}", dir.display()), e))?;
                    made.dirs.push(dir.clone());
                    setting(&dir, "memory.limit_in_bytes", bytes.to_string())?;
                    let _ =
                        std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                    made.memory = true;
                    made.oom_events = Some(dir.join("memory.oom_control"));
                }
                if let (Some(n), Some(parent)) = (limits.pids, pids) {
                    clean_stale(&parent);
                    let dir = parent.join(&name);
                    std::fs::create_dir(&dir)
                        .map_err(|e| fail(format!("making the cgroup {}", dir.display()), e))?;
                    made.dirs.push(dir.clone());
                    setting(&dir, "pids.max", n.min(PIDS_MAX).to_string())?;
                    made.pids = true;
                }
            }
        }
        for dir in &made.dirs {
            let path = dir.join("cgroup.procs");
            let fd = Fd::open(|| std::fs::OpenOptions::new().write(true).open(&path))
                .map_err(|e| fail(format!("opening {}", path.display()), e))?;
            made.procs.push(fd);
        }
        Ok(Some(made))
    }

    /// The `cgroup.procs` fds: a process writes `0` to each to move itself
    /// in (a run's joiner, a command's relay), before it starts anything.
    pub(crate) fn procs(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.procs.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// Copies of the `cgroup.procs` fds, for a command that may outlive the
    /// sandbox's handle on them.
    pub(crate) fn clone_procs(&self) -> Vec<Fd> {
        self.procs
            .iter()
            .filter_map(|f| f.try_clone().ok())
            .collect()
    }

    /// Moves the process `pid` in.
    pub(crate) fn attach(&self, pid: libc::pid_t) -> Result<(), Error> {
        use std::os::fd::AsFd;
        for fd in &self.procs {
            crate::sys::write_all(fd.as_fd(), pid.to_string().as_bytes()).map_err(|e| {
                Error::sys(
                    "moving the sandbox's init process into its cgroups",
                    std::io::Error::from_raw_os_error(e),
                )
            })?;
        }
        Ok(())
    }

    /// How many times the memory cgroup's OOM killer has killed so far.
    pub(crate) fn oom_kills(&self) -> u64 {
        self.oom_events.as_deref().map_or(0, oom_kills_in)
    }

    /// The file that counts the memory cgroup's OOM kills (see
    /// [`oom_kills_in`]), if there is one.
    pub(crate) fn oom_events(&self) -> Option<&std::path::Path> {
        self.oom_events.as_deref()
    }
}

/// The OOM kills a memory cgroup's `file` counts (`memory.events` on v2,
/// `memory.oom_control` on v1: the line "oom_kill N"); 0 if it cannot be
/// read (the cgroup removed).
pub(crate) fn oom_kills_in(file: &std::path::Path) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        if self.owner != std::process::id() {
            // A copy (moved into a run's closure): the sandbox's own.
            return;
        }
        self.procs.clear();
        for dir in &self.dirs {
            // Empty once the sandbox's processes are gone (they are, when
            // a sandbox drops its cgroups).
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Once per process, at its first sandbox with cgroups: removes the cgroups test
/// processes that were killed left behind (a SIGKILL runs no drop).
pub(crate) fn clean_stale_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| match find() {
        Some(Place::V2(dir)) => clean_stale(&dir),
        Some(Place::V1 { memory, pids }) => {
            for dir in [memory, pids].into_iter().flatten() {
                clean_stale(&dir);
            }
        }
        None => {}
    });
}

/// Removes the cgroups a killed test process left in `parent`: named
/// after a pid that no longer runs, and empty.
fn clean_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("hermetic-"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// The rlimits for `limits`, but for what `cgroups` enforce; none above
/// what this process may set (its hard limit, which no process inside
/// may raise: asking more would fail every start with `EPERM`), so a
/// limit above the host's is the host's.
pub(crate) fn rlimits_for(limits: &Limits, cgroups: Option<&Cgroups>) -> Rlimits {
    use rustix::process::Resource;
    let at_most = |resource: Resource, n: u64| match rustix::process::getrlimit(resource).maximum {
        Some(hard) => n.min(hard),
        None => n,
    };
    let memory = limits.memory.filter(|_| !cgroups.is_some_and(|c| c.memory));
    let pids = limits.pids.filter(|_| !cgroups.is_some_and(|c| c.pids));
    let cpu = limits.cpu.map(|d| d.as_secs().max(1));
    Rlimits([
        (Resource::As, memory.map(|n| at_most(Resource::As, n))),
        (Resource::Nproc, pids.map(|n| at_most(Resource::Nproc, n))),
        (Resource::Cpu, cpu.map(|n| at_most(Resource::Cpu, n))),
    ])
}

/// The most a pids cgroup's `pids.max` takes (the kernel's
/// `PID_MAX_LIMIT`): a limit above it is none at all.
const PIDS_MAX: u64 = 4 << 20;

/// `bytes` in words: "64 MiB", "1.5 GiB", "1000 bytes".
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{} {unit}", n / size)
            } else {
                format!("{:.1} {unit}", n as f64 / size as f64)
            };
        }
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_read_as_a_person_would_write_them() {
        assert_eq!(super::bytes(64 << 20), "64 MiB");
        assert_eq!(super::bytes(3 << 29), "1.5 GiB");
        assert_eq!(super::bytes(1000), "1000 bytes");
    }
}
