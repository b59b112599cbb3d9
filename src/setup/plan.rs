//! The init program's setup, decided and encoded before anything starts.
//!
//! The builder's options are validated here and turned into a list of
//! [`Step`]s whose paths and contents are already NUL-terminated byte
//! strings, so that the init program (`init/main.rs`) only has to walk the
//! list and make one system call per step. Each step keeps a sentence
//! describing it and a [`StepKind`]; the init program reports failures as
//! (step index, errno) and the parent turns that into [`Error::Setup`] with
//! the sentence.
//!
//! The order is what makes the boundary: the host's mounts are made
//! read-only before the sandbox's own writable ones are added; the network,
//! UTS and IPC namespaces belong to an inner user namespace that the init
//! program enters last, so that every process of the sandbox (all of which
//! join that inner namespace) is root over its network but holds no
//! capability over the mount namespace: its mounts can be neither changed
//! nor taken off to show the host's beneath.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::Error;
use crate::proto::wire;
use crate::setup::host::{HostMode, HostView};

pub(crate) use crate::proto::plan::{Action, Step, StepKind};

/// A mount the user asked for.
#[derive(Debug, Clone)]
pub(crate) enum MountSpec {
    Tmpfs {
        target: PathBuf,
    },
    Bind {
        source: PathBuf,
        target: PathBuf,
        read_only: bool,
    },
    /// Not the user's: a copy-on-write layer over the host's `target`, in
    /// place before the user's mounts (for [`under`]).
    Layer {
        target: PathBuf,
    },
}

/// The maximum length of a hostname (HOST_NAME_MAX).
pub(crate) const HOSTNAME_MAX: usize = 64;

/// The ids of the caller, mapped to 0 inside.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ids {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl Ids {
    pub(crate) fn current() -> Ids {
        Ids {
            uid: crate::sys::geteuid(),
            gid: crate::sys::getegid(),
        }
    }
}

/// The inner user namespace's map: every id of the outer one, in the same
/// pieces (the kernel maps each piece into one piece of the parent's map):
/// `outer` is the outer namespace's map (lines or `newuidmap`'s arguments,
/// triples either way); with one id outside, `user`'s id (or 0) as it.
fn inner_map(user: Option<u32>, outer: Option<&str>) -> Vec<u8> {
    let Some(outer) = outer else {
        return id_map(user.unwrap_or(0), 0);
    };
    crate::setup::idmap::same_pieces(outer).into_bytes()
}

/// The text of a `uid_map` or `gid_map` that maps `inside` to `outside`
/// for one id (user_namespaces(7)).
pub(crate) fn id_map(inside: u32, outside: u32) -> Vec<u8> {
    format!("{inside} {outside} 1\n").into_bytes()
}

fn cstring(option: &'static str, path: &Path) -> Result<CString, Error> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::InvalidOption {
        option,
        reason: format!("{} contains a NUL byte", path.display()),
    })
}

/// Checks that `path` is absolute and plain (no `..`, no `.`), as a mount
/// target or bind source must be.
fn absolute(option: &'static str, role: &str, path: &Path) -> Result<(), Error> {
    if !path.is_absolute() {
        return Err(Error::InvalidOption {
            option,
            reason: format!("the {role} {} is not an absolute path", path.display()),
        });
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(Error::InvalidOption {
            option,
            reason: format!("the {role} {} contains `.` or `..`", path.display()),
        });
    }
    Ok(())
}

/// Validates a hostname and returns its bytes.
pub(crate) fn hostname(name: &str) -> Result<Vec<u8>, Error> {
    let reason = if name.is_empty() {
        "the hostname is empty".to_owned()
    } else if name.len() > HOSTNAME_MAX {
        format!(
            "the hostname is {} bytes long; the kernel takes at most {HOSTNAME_MAX}",
            name.len()
        )
    } else if name.contains('\0') {
        "the hostname contains a NUL byte".to_owned()
    } else if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '#')
    {
        // The sandbox's /etc/hosts names it: a space splits it into two
        // names there, a '#' starts a comment.
        format!(
            "the hostname {name:?} holds {c:?}, so it could not resolve inside (its \
             /etc/hosts line would read otherwise)"
        )
    } else {
        return Ok(name.as_bytes().to_vec());
    };
    Err(Error::InvalidOption {
        option: "hostname",
        reason,
    })
}

/// What lies under a target: a mount made earlier by the sandbox, or the
/// host's own tree.
enum Under<'a> {
    Tmpfs(&'a Path),
    /// A copy-on-write layer: the host's tree, writable inside.
    Layer(&'a Path),
    Bind {
        source: &'a Path,
        target: &'a Path,
    },
    Host,
}

/// What the init program is to set up, besides its id maps.
#[derive(Debug)]
pub(crate) struct Layout<'a> {
    pub(crate) hostname: &'a [u8],
    pub(crate) mounts: &'a [MountSpec],
    /// Read-only files made inside, placed over host files or in a tmpfs
    /// of the sandbox: (target, contents).
    pub(crate) files: &'a [(PathBuf, Vec<u8>)],
    /// How the host's files are seen.
    pub(crate) host: HostMode,
    /// The host's special mounts and, copy-on-write, the overlays.
    pub(crate) view: &'a HostView,
    /// What must stay visible where a tmpfs of the sandbox would hide it
    /// (read-only and writable modes): the working directory, the target
    /// dir. Bound in before the user's mounts, which win.
    pub(crate) visible: Vec<PathBuf>,
    /// The working directory of the caller, where runs and programs
    /// start: made (empty) in a tmpfs of the user's that covers a parent
    /// of it, so that they start there and not in `/`.
    pub(crate) working_dir: Option<PathBuf>,
    /// The caller is root (uid 0 where it runs): DAC protects nothing of
    /// `/proc/sys` from it, so even the hidden proc mount is read-only.
    pub(crate) root: bool,
    /// The most `/tmp` holds, in bytes.
    pub(crate) tmp_size: u64,
    /// The most `/dev/shm` holds, in bytes.
    pub(crate) shm_size: u64,
    /// The uid and gid the sandbox's processes have (root by default).
    pub(crate) user: Option<(u32, u32)>,
    /// The outer user namespace's uid and gid maps, where it maps more
    /// than one id: the inner one's follow their pieces.
    pub(crate) outer_maps: Option<&'a (String, String)>,
    /// Written from outside, and how: the outer maps hold ranges.
    pub(crate) external_maps: Option<String>,
    /// Start a keeper, so that the sandbox can be looked into with
    /// `nsenter` once kept (`HERMETIC_KEEP`).
    pub(crate) keepable: bool,
    /// Processes inside may mount on top of the sandbox's mounts
    /// ([`SandboxBuilder::allow_mounts`](crate::SandboxBuilder::allow_mounts)).
    pub(crate) mounts_inside: bool,
    /// Copy-on-write: where the overlays that show the test's own tree
    /// keep their upper layers on disk, if anywhere (see
    /// [`disk`](crate::setup::disk)).
    pub(crate) disk: Option<DiskPlan<'a>>,
    /// A memory limit that each process's address space enforces (no
    /// memory cgroup): System V shared memory and message queues, which no
    /// address space holds, are bounded by it in the sandbox's IPC
    /// namespace ([`ipc_bounds`]).
    pub(crate) ipc_limit: Option<u64>,
}

/// The sysctls of the sandbox's IPC namespace that bound what System V
/// shared memory and message queues hold to `limit` bytes in all:
/// `kernel.shmall` (pages) and `shmmax`, and as many message queues
/// (`msgmni`) as `limit` holds of their default size (`msgmnb`, 16 KiB).
fn ipc_bounds(limit: u64) -> [(&'static std::ffi::CStr, u64); 3] {
    let page = rustix::param::page_size() as u64;
    [
        (c"shmmax", limit),
        (c"shmall", limit.div_ceil(page)),
        (c"msgmni", (limit / 16384).clamp(1, 32000)),
    ]
}

/// The upper layers on disk of one sandbox: made by its init program in
/// `base` as `layers` names them, for the overlays that show one of
/// `trees`.
#[derive(Debug)]
pub(crate) struct DiskPlan<'a> {
    pub(crate) base: &'a crate::setup::disk::DiskBase,
    pub(crate) layers: &'a crate::setup::disk::DiskLayers,
    pub(crate) trees: &'a [PathBuf],
}

/// The mounts every sandbox makes on top of the host's tree, for
/// [`under`]: a fresh tmpfs on each.
const OWN_TMPFS: [&str; 2] = ["/tmp", "/dev/shm"];

/// The most pseudo-terminals a sandbox may have open at once (its devpts
/// instance's `max`): the kernel's pool outside the host's reserve
/// (`kernel.pty.max` - `kernel.pty.reserve`, 3072 by default) is shared
/// by every container and sandbox.
const PTS_MAX: u32 = 256;

/// The host's device nodes a sandbox keeps: harmless, and what programs
/// expect to find. Every other host device node cannot be opened inside.
const SAFE_DEVICES: [&std::ffi::CStr; 6] = [
    c"/dev/null",
    c"/dev/zero",
    c"/dev/full",
    c"/dev/random",
    c"/dev/urandom",
    c"/dev/tty",
];

/// Parts of `/proc` that act on the whole host, made read-only (as
/// bubblewrap does); `/proc/sys/net` and `/proc/sys/user` are then made
/// writable again, being the sandbox's own network's and user namespace's.
const PROC_READ_ONLY: [(&std::ffi::CStr, bool); 4] = [
    (c"/proc/sys", false),
    (c"/proc/sysrq-trigger", true),
    (c"/proc/irq", true),
    (c"/proc/bus", true),
];

/// Entries of `/proc/sys/net` that the kernel makes in every network
/// namespace, writable by root of its owner, but that set one switch of
/// the whole host's: `nf_hooks_lwtunnel` turns netfilter hooks on
/// lightweight tunnels on for every namespace, for good (writing 0 back is
/// `EBUSY`). Made read-only (`tests/it/attacks19.rs`).
const NET_SYSCTLS_OF_THE_HOST: [&std::ffi::CStr; 1] =
    [c"/proc/sys/net/netfilter/nf_hooks_lwtunnel"];

/// Parts of `/proc` covered by an empty file, as Docker masks them: they
/// list the keys (`/proc/keys`) and their owners (`/proc/key-users`) the
/// reader's uid may view, by serial number, across every namespace. Keys
/// are checked by uid only, and root inside is the caller outside: inside,
/// the test process's and the caller's keys would be listed.
const PROC_MASKED: [&std::ffi::CStr; 2] = [c"/proc/keys", c"/proc/key-users"];

/// Makes the mount at `path`, a clone of the host's `/dev/null` covering
/// a part of `/proc`, read-only (the node itself is the host's: a
/// writable mount of it lets root inside change its mode and owner, and
/// anyone its times).
fn read_only_mount(path: &std::ffi::CStr) -> Step {
    step(
        format!("making {} read-only", path.to_string_lossy()),
        StepKind::ReadOnlyHost,
        Action::SetAttr {
            target: path.into(),
            attrs: wire::ATTR_RDONLY,
            recursive: false,
            optional: true,
        },
    )
}

fn step(what: impl Into<String>, kind: StepKind, action: Action) -> Step {
    Step {
        what: what.into(),
        kind,
        action,
    }
}

/// Turns the options into the init program's steps.
///
/// The bind sources' cloned trees are kept at fds from
/// [`wire::FIRST_PLAN_FD`] on, in order, until they are attached.
pub(crate) fn init_steps(ids: Option<Ids>, layout: &Layout<'_>) -> Result<Vec<Step>, Error> {
    let mut steps = Vec::with_capacity(40);
    if let (Some(_), Some(how)) = (ids, &layout.external_maps) {
        // Written from outside, while the launch waits (see idmap).
        steps.push(step(
            format!("mapping ids 0-{} ({how})", crate::setup::idmap::RANGE - 1),
            StepKind::IdMap,
            Action::ExternalMaps,
        ));
    } else if let Some(ids) = ids {
        // A new user namespace maps the caller; a sandbox that joins an
        // existing one (a network's host) has nothing to map.
        steps.extend([
            step(
                "writing \"deny\" to /proc/self/setgroups",
                StepKind::IdMap,
                Action::WriteFile {
                    path: c"/proc/self/setgroups".into(),
                    content: b"deny".to_vec(),
                },
            ),
            step(
                format!("mapping uid 0 to {} in /proc/self/uid_map", ids.uid),
                StepKind::IdMap,
                Action::WriteFile {
                    path: c"/proc/self/uid_map".into(),
                    content: id_map(0, ids.uid),
                },
            ),
            step(
                format!("mapping gid 0 to {} in /proc/self/gid_map", ids.gid),
                StepKind::IdMap,
                Action::WriteFile {
                    path: c"/proc/self/gid_map".into(),
                    content: id_map(0, ids.gid),
                },
            ),
        ]);
    }
    steps.push(step(
        "making all mounts private",
        StepKind::Private,
        Action::MakeMountsPrivate,
    ));

    let cow = layout.host == HostMode::CopyOnWrite;
    let overlays = if cow { overlays_of(layout) } else { Vec::new() };
    let overlaid = |dir: &str| overlays.iter().any(|(p, _)| p == Path::new(dir));
    let tmp_overlaid = overlaid("/tmp");
    // Copy-on-write, /var/tmp is a fresh tmpfs too, unless a test's
    // directory is /var/tmp itself (then the host's, under a layer).
    let var_tmp = cow && !overlaid("/var/tmp") && Path::new("/var/tmp").is_dir();
    let own: Vec<MountSpec> = OWN_TMPFS
        .iter()
        .filter(|t| !(tmp_overlaid && **t == "/tmp"))
        .chain(var_tmp.then_some(&"/var/tmp"))
        .map(|t| MountSpec::Tmpfs { target: t.into() })
        .collect();
    // The overlays below a tmpfs of the sandbox's (what a test needs under
    // /tmp and /var/tmp) are mounted once it is there; the others, before.
    let late: Vec<bool> = overlays
        .iter()
        .map(|(p, _)| matches!(under(p, &own), Under::Tmpfs(_)))
        .collect();
    // What the sandbox's own tmpfs mounts would hide (a crate checked out
    // under /tmp, its target dir there): bound in first, so that the
    // user's mounts, which come after, win over them.
    let mut mounts: Vec<MountSpec> = Vec::new();
    let mut visible: Vec<&PathBuf> = layout.visible.iter().collect();
    visible.sort_by_key(|p| p.components().count());
    for path in visible {
        // Not a whole tmpfs of the sandbox's (a working directory of /tmp):
        // that one stays writable and the sandbox's own.
        let hidden = path.is_absolute()
            && matches!(under(path, &own), Under::Tmpfs(root) if root != path.as_path());
        // The user's mounts and files win: a path at or under one of
        // their targets, or holding a file of theirs, is left to them.
        let shown_or_users = mounts
            .iter()
            .chain(layout.mounts)
            .any(|m| path.starts_with(spec_target(m)))
            || layout.files.iter().any(|(t, _)| t.starts_with(path));
        // Copy-on-write, an overlay shows it, writable.
        let layered = std::fs::canonicalize(path)
            .is_ok_and(|c| overlays.iter().any(|(o, _)| c.starts_with(o)));
        if hidden
            && !shown_or_users
            && !layered
            && std::fs::metadata(path).is_ok_and(|m| m.is_dir())
        {
            mounts.push(MountSpec::Bind {
                source: path.clone(),
                target: path.clone(),
                read_only: layout.host != HostMode::Writable,
            });
        }
    }
    let visible_binds = mounts.len();
    mounts.extend(layout.mounts.iter().cloned());

    let mut next_fd = wire::FIRST_PLAN_FD;
    let mut sources = Vec::new();
    for spec in &mounts {
        if let MountSpec::Bind { source, .. } = spec {
            let option = option_name(spec);
            absolute(option, "source", source)?;
            steps.push(step(
                format!("opening the bind source {}", source.display()),
                StepKind::UserMount,
                Action::OpenSource {
                    path: cstring(option, source)?,
                    fd: next_fd,
                    optional: false,
                },
            ));
            sources.push(next_fd);
            next_fd += 1;
        }
    }
    // The host's device nodes: opening any of them from inside would be
    // opening the host's (as root, its disks). Every host mount gets
    // `nodev` below, and the harmless ones, cloned here beforehand, are put
    // back. Like the bind sources, they are opened first, at fixed fd
    // numbers, before the init program opens any fd of its own.
    let mut devices = Vec::with_capacity(SAFE_DEVICES.len());
    for path in SAFE_DEVICES {
        steps.push(step(
            format!("opening the host's {}", path.to_string_lossy()),
            StepKind::ReadOnlyHost,
            Action::OpenSource {
                path: path.into(),
                fd: next_fd,
                optional: true,
            },
        ));
        devices.push((path, next_fd));
        next_fd += 1;
    }
    // Empty files for the parts of /proc that list kernel objects of the
    // host by their number (PROC_MASKED): /dev/null, cloned now like the
    // devices, bound over each once the sandbox's proc is mounted.
    let mut masks = Vec::with_capacity(PROC_MASKED.len());
    for path in PROC_MASKED {
        steps.push(step(
            format!(
                "opening the host's /dev/null, to cover {}",
                path.to_string_lossy()
            ),
            StepKind::ProcReadOnly,
            Action::OpenSource {
                path: c"/dev/null".into(),
                fd: next_fd,
                optional: true,
            },
        ));
        masks.push((path, next_fd));
        next_fd += 1;
    }
    // The lower layers of the overlays, opened before any mount of the
    // sandbox's can cover them (the overlay on /tmp covers the tmpfs that
    // holds the upper layers; an overlay nested in another is mounted
    // after it).
    let mut lower_fds = Vec::with_capacity(overlays.len());
    for (path, _) in &overlays {
        steps.push(step(
            format!(
                "opening the host's {} (an overlay's lower layer)",
                path.display()
            ),
            StepKind::Overlay,
            Action::OpenPath {
                path: cstring("host", path)?,
                fd: next_fd,
            },
        ));
        lower_fds.push(next_fd);
        next_fd += 1;
    }
    // The upper layers on disk (of the overlays that show the test's own
    // tree), made while the host's /var/tmp is still in sight, then named
    // through an fd.
    // But a tree that is /tmp, /var/tmp or /dev/shm itself (a test run
    // from there): its layer stays in memory, bounded by `tmp_size` as the
    // sandbox's own /tmp is.
    let on_disk: Vec<bool> = overlays
        .iter()
        .map(|(p, _)| {
            !crate::setup::host::OWN_TMP
                .iter()
                .any(|t| p == Path::new(t))
                && layout
                    .disk
                    .as_ref()
                    .is_some_and(|d| d.base.serves(p, d.trees))
        })
        .collect();
    let disk_fd = match &layout.disk {
        Some(disk) if on_disk.contains(&true) => {
            steps.extend(disk_layer_steps(disk, &overlays, &on_disk, next_fd)?);
            next_fd += 1;
            Some(next_fd - 1)
        }
        _ => None,
    };
    // The fd that names the tmpfs holding the upper layers, reserved now:
    // the init program opens fds of its own (the inner user namespace's)
    // at the lowest free numbers meanwhile.
    let (stash_fd, files_fd) = (next_fd, next_fd + 1);
    let reserved = if overlays.is_empty() { 1 } else { 2 };
    for fd in [stash_fd, files_fd].into_iter().take(reserved) {
        steps.push(step(
            "reserving an fd for the sandbox's own directories and the files",
            StepKind::Tmp,
            Action::OpenPath {
                path: c"/".into(),
                fd,
            },
        ));
    }
    // And one for a copy of the fresh /proc, through which the IPC
    // namespace's sysctls are written once it is joined (its /proc/sys
    // is read-only by then).
    let ipc_fd = layout.ipc_limit.map(|_| next_fd + reserved as i32);
    if let Some(fd) = ipc_fd {
        steps.push(step(
            "reserving an fd for a copy of the sandbox's /proc",
            StepKind::Ipc,
            Action::OpenPath {
                path: c"/".into(),
                fd,
            },
        ));
    }
    // Before the fresh /proc: the helper maps its ids through /proc/self,
    // whichever proc is there, before it goes read-only.
    steps.push(step(
        "creating the inner user namespace (its network, UTS and IPC namespaces are made meanwhile)",
        StepKind::Nest,
        Action::Nest {
            flags: libc::CLONE_NEWUSER
                | libc::CLONE_NEWNET
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWIPC,
            // With one id outside, the user's own id is that one; with
            // ranges, all of them, and runs change to the user's.
            uid_map: inner_map(
                layout.user.map(|(uid, _)| uid),
                layout.outer_maps.map(|(uids, _)| uids.as_str()),
            ),
            gid_map: inner_map(
                layout.user.map(|(_, gid)| gid),
                layout.outer_maps.map(|(_, gids)| gids.as_str()),
            ),
        },
    ));
    let (what, attrs) = if layout.host == HostMode::Writable {
        (
            "making the host's device nodes unopenable (mount_setattr nodev on / and every mount below)",
            wire::ATTR_NODEV,
        )
    } else {
        (
            "making the host's files read-only and its device nodes unopenable (mount_setattr on / and every mount below)",
            wire::ATTR_RDONLY | wire::ATTR_NODEV,
        )
    };
    steps.push(step(
        what,
        StepKind::ReadOnlyHost,
        Action::SetAttr {
            target: c"/".into(),
            attrs,
            recursive: true,
            optional: false,
        },
    ));
    for (path, fd) in devices {
        steps.push(step(
            format!("putting back {}", path.to_string_lossy()),
            StepKind::ReadOnlyHost,
            Action::AttachSource {
                fd,
                target: path.into(),
                optional: true,
            },
        ));
    }
    // Cloned before the pass above, they are writable mounts of the host's
    // devtmpfs: made read-only too (what is written to a device still
    // reaches it; its mode, owner and times, the host's, cannot change).
    // One pass over /dev, whose other mounts are read-only already (the
    // sandbox's own, devpts and /dev/shm, come after).
    let host_read_only = layout.host != HostMode::Writable;
    if host_read_only {
        steps.push(step(
            "making the device nodes put back read-only (mount_setattr on /dev and below)",
            StepKind::ReadOnlyHost,
            Action::SetAttr {
                target: c"/dev".into(),
                attrs: wire::ATTR_RDONLY,
                recursive: true,
                optional: true,
            },
        ));
    }
    // Pseudo-terminals of the sandbox's own, as bubblewrap's `--dev`
    // gives: the host's /dev/ptmx is unopenable (nodev above), and its
    // /dev/pts holds the caller's terminals. A fresh devpts instance (at
    // most PTS_MAX of them) on /dev/pts, and its ptmx bound on /dev/ptmx;
    // TIOCSTI and TIOCLINUX stay refused by the seccomp filter. Where the
    // host refuses it, the sandbox has no new terminals, as before.
    steps.push(step(
        "mounting the sandbox's own devpts on /dev/pts",
        StepKind::Special,
        Action::MountIfAllowed {
            source: Some(c"devpts".into()),
            target: c"/dev/pts".into(),
            fstype: Some(c"devpts".into()),
            flags: libc::MS_NOSUID | libc::MS_NOEXEC,
            data: Some(
                CString::new(format!("newinstance,ptmxmode=0666,mode=0620,max={PTS_MAX}"))
                    .expect("no NUL in the options"),
            ),
        },
    ));
    steps.push(step(
        "binding the sandbox's own /dev/pts/ptmx on /dev/ptmx",
        StepKind::Special,
        Action::MountIfAllowed {
            source: Some(c"/dev/pts/ptmx".into()),
            target: c"/dev/ptmx".into(),
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        },
    ));
    let hidden = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // A proc mount with nothing mounted on it, kept out of reach under the
    // tmpfs that becomes /tmp. The kernel mounts a fresh proc in a user
    // namespace only where one is already fully visible ("mount too
    // revealing"), and the sandbox's /proc is not, once parts of it are
    // covered below: without this one, no sandbox could be made inside a
    // sandbox. Read-only for a caller that is root, so that even a fresh
    // proc made from it in some new namespace can never write the host's
    // sysctls.
    // The stash also holds the files the sandbox places over host files.
    let layers: Vec<MountSpec> = overlays
        .iter()
        .map(|(p, _)| MountSpec::Layer { target: p.clone() })
        .collect();
    let (over_host, in_tmpfs) = place_files(layout.files, &mounts, &layers, &own)?;
    // Files over host files in an overlay mounted late are placed after it.
    let late_roots: Vec<&Path> = overlays
        .iter()
        .zip(&late)
        .filter(|(_, l)| **l)
        .map(|((p, _), _)| p.as_path())
        .collect();
    let (over_late, over_host): (Vec<_>, Vec<_>) = over_host
        .into_iter()
        .enumerate()
        .partition(|(_, (t, _))| late_roots.iter().any(|r| t.starts_with(r)));
    let files_size: usize = over_host
        .iter()
        .chain(&over_late)
        .map(|(_, (_, c))| c.len().next_multiple_of(4096))
        .sum();
    // The same tmpfs holds the sandbox's /tmp (and, copy-on-write, its
    // /var/tmp and the overlays' upper layers), bound there later: no
    // tmpfs of their own to make and take down, and all of it within
    // tmp_size, as `df /tmp` shows (free at the start; the files placed
    // come on top); not noexec, as /tmp never was.
    steps.push(fresh(
        c"tmpfs",
        c"/tmp",
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(tmpfs_options(0o700, layout.tmp_size + files_size as u64)),
        StepKind::Proc,
    ));
    steps.push(step(
        "creating the directory /tmp/proc for a hidden proc mount",
        StepKind::Proc,
        Action::CreateDir {
            path: c"/tmp/proc".into(),
        },
    ));
    let stash_flags = hidden | if layout.root { libc::MS_RDONLY } else { 0 };
    steps.push(step(
        "mounting proc on /tmp/proc (hidden below /tmp, for sandboxes inside)",
        StepKind::Proc,
        Action::Mount {
            source: Some(c"proc".into()),
            target: c"/tmp/proc".into(),
            fstype: Some(c"proc".into()),
            flags: stash_flags,
            data: None,
        },
    ));
    for (i, (target, contents)) in over_host.iter().chain(&over_late) {
        let made = CString::new(format!("/tmp/file{i}")).expect("no NUL in the name");
        steps.push(step(
            format!(
                "writing the contents of {} (hidden below /tmp)",
                target.display()
            ),
            StepKind::UserMount,
            Action::CreateFile {
                path: made,
                content: Some(contents.to_vec()),
            },
        ));
    }
    // Copy-on-write, the overlays come before the files placed over host
    // files (which may lie in them); the stash, covered by the overlay on
    // /tmp by then, is named through an fd.
    let files_by_fd = !overlays.is_empty() && (!over_host.is_empty() || !over_late.is_empty());
    if files_by_fd {
        steps.push(step(
            "opening /tmp, which holds the files placed over host files",
            StepKind::UserMount,
            Action::OpenPath {
                path: c"/tmp".into(),
                fd: files_fd,
            },
        ));
    }
    let layers_fd = overlay_steps(&overlays, &on_disk, var_tmp, stash_fd, &mut steps);
    let disk_prefix = layout.disk.as_ref().map(|d| d.layers.prefix());
    let upper_fd = |i: usize| match (disk_fd, disk_prefix) {
        (Some(fd), Some(prefix)) if on_disk[i] => (fd, Some(prefix)),
        _ => (layers_fd, None),
    };
    for (i, ((path, _), lower)) in overlays.iter().zip(&lower_fds).enumerate() {
        if !late[i] {
            steps.extend(overlay_mount(path, *lower, upper_fd(i), i, layout.root));
        }
    }
    let files_at = files_by_fd.then_some(files_fd);
    for (i, (target, _)) in &over_host {
        steps.extend(file_over_host(*i, target, files_at)?);
    }
    // The host's special filesystems (its message queues, cgroups, BPF
    // objects...) are covered by an empty read-only tmpfs, or replaced by
    // the sandbox's own (mqueue, once its IPC namespace is joined); those
    // under /proc and /sys are covered by the fresh ones.
    let hides = |point: &Path| !matches!(under(point, &own), Under::Tmpfs(_));
    for (point, fstype) in &layout.view.special {
        if fstype != "mqueue" && hides(point) {
            steps.push(step(
                format!("covering the host's {fstype} mount on {}", point.display()),
                StepKind::Special,
                Action::Mount {
                    source: Some(c"tmpfs".into()),
                    target: cstring("host", point)?,
                    fstype: Some(c"tmpfs".into()),
                    flags: hidden | libc::MS_RDONLY,
                    data: Some(c"size=4k,mode=0555".into()),
                },
            ));
        }
    }
    steps.push(step(
        "mounting proc on /proc",
        StepKind::Proc,
        Action::MountRetryReadOnly {
            source: c"proc".into(),
            target: c"/proc".into(),
            fstype: c"proc".into(),
            flags: hidden,
        },
    ));
    if let Some(fd) = ipc_fd {
        steps.push(step(
            "copying the sandbox's /proc, to write its IPC limits later",
            StepKind::Ipc,
            Action::OpenSource {
                path: c"/proc".into(),
                fd,
                optional: false,
            },
        ));
    }
    // Each part of PROC_READ_ONLY is covered by a bind of itself,
    // read-only, while the helper makes the network namespace: the
    // /proc/sys/net bound here shows the network of whichever process
    // reads it (the kernel looks sysctl entries up in the reader's
    // namespaces), so the sandbox's once its processes read it.
    for (path, optional) in PROC_READ_ONLY {
        steps.extend(proc_read_only(path, optional));
    }
    for (path, fd) in masks {
        steps.push(step(
            format!("covering {} with an empty file", path.to_string_lossy()),
            StepKind::ProcReadOnly,
            Action::AttachSource {
                fd,
                target: path.into(),
                optional: true,
            },
        ));
        if host_read_only {
            steps.push(read_only_mount(path));
        }
    }
    // The sandbox's own /tmp (over the hidden proc mount's tmpfs) and
    // /dev/shm; like everything above since the helper started, while it
    // makes the network namespace on another CPU.
    for (target, kind, size) in [
        (c"/tmp", StepKind::Tmp, layout.tmp_size),
        (c"/dev/shm", StepKind::DevShm, layout.shm_size),
        (c"/var/tmp", StepKind::Tmp, layout.tmp_size),
    ] {
        if tmp_overlaid && target == c"/tmp" || !var_tmp && target == c"/var/tmp" {
            continue;
        }
        // A directory of the tmpfs hidden below /tmp, bound there: one
        // tmpfs, and one bound (tmp_size), for /tmp, /var/tmp and the
        // layers, and no filesystem of their own to make and take down.
        if let Some(dir) = own_tmp_dir(target) {
            let fd = layers_fd;
            let shown = target.to_string_lossy();
            steps.push(step(
                format!(
                    "binding the sandbox's own {shown} (a directory of the tmpfs hidden below /tmp)"
                ),
                kind,
                Action::Mount {
                    source: Some(
                        CString::new(format!("/proc/self/fd/{fd}/{dir}"))
                            .expect("no NUL in the name"),
                    ),
                    target: target.into(),
                    fstype: None,
                    flags: libc::MS_BIND,
                    data: None,
                },
            ));
            continue;
        }
        steps.push(fresh(
            c"tmpfs",
            target,
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(tmpfs_options(0o1777, size)),
            kind,
        ));
    }

    steps.push(step(
        "creating the inner user namespace and its network, UTS and IPC namespaces",
        StepKind::Nest,
        Action::JoinNested,
    ));
    // After the network namespace: sysfs shows the mounter's.
    steps.push(fresh(
        c"sysfs",
        c"/sys",
        hidden | libc::MS_RDONLY,
        None,
        StepKind::Sys,
    ));
    // System V IPC bounded by the memory limit, in the IPC namespace just
    // joined (the kernel writes the sysctls of the writer's), through the
    // copy of /proc, which no read-only bind covers.
    if let (Some(fd), Some(limit)) = (ipc_fd, layout.ipc_limit) {
        for (name, value) in ipc_bounds(limit) {
            let name = name.to_string_lossy();
            steps.push(step(
                format!("setting kernel.{name} to {value} (System V IPC within the memory limit)"),
                StepKind::Ipc,
                Action::WriteFileIfAllowed {
                    path: CString::new(format!("/proc/self/fd/{fd}/sys/kernel/{name}"))
                        .expect("no NUL in the path"),
                    content: value.to_string().into_bytes(),
                },
            ));
        }
        steps.push(step(
            "closing the copy of /proc",
            StepKind::Ipc,
            Action::Close { fd },
        ));
    }
    // Host-wide switches among the network's own sysctls, read-only; after
    // the join, where the sandbox's own entries are the ones looked up
    // (the kernel keeps one per network namespace, and a bind covers only
    // the one it was made on).
    for path in NET_SYSCTLS_OF_THE_HOST {
        steps.extend(proc_read_only(path, true));
    }
    for (point, fstype) in &layout.view.special {
        if fstype == "mqueue" && hides(point) {
            steps.push(step(
                format!("mounting the sandbox's own mqueue on {}", point.display()),
                StepKind::Special,
                Action::Mount {
                    source: Some(c"mqueue".into()),
                    target: cstring("host", point)?,
                    fstype: Some(c"mqueue".into()),
                    flags: hidden,
                    data: None,
                },
            ));
        }
    }
    let mut made: Vec<MountSpec> = layers.iter().chain(own.iter()).cloned().collect();
    // The overlays below the sandbox's own tmpfs mounts, on mount points
    // made there, then the files over host files in them. Those below a
    // directory bound back (a tree under /tmp split where host mounts lie
    // beneath it) come right after that bind, on top of it: before it,
    // they would be covered.
    let bound_back = |path: &Path| {
        mounts[..visible_binds]
            .iter()
            .any(|m| path.starts_with(spec_target(m)))
    };
    let mut after_binds = Vec::new();
    for (i, ((path, _), lower)) in overlays.iter().zip(&lower_fds).enumerate() {
        if late[i] {
            if bound_back(path) {
                after_binds.push(i);
                continue;
            }
            if let Under::Tmpfs(root) = under(path, &own) {
                mount_point_steps("host", root, path, true, None, &mut steps)?;
            }
            steps.extend(overlay_mount(path, *lower, upper_fd(i), i, layout.root));
        }
    }
    let (over_late_after, over_late): (Vec<_>, Vec<_>) =
        over_late.into_iter().partition(|(_, (t, _))| bound_back(t));
    for (i, (target, _)) in &over_late {
        steps.extend(file_over_host(*i, target, files_at)?);
    }
    // Where the host's /var/tmp shows (read-only or writable host,
    // copy-on-write working in /var/tmp itself), or an overlay or a bind
    // back shows the caller's layers on disk (a working directory in
    // them), an empty read-only tmpfs covers them: no sandbox reads
    // another's layer. After hermetic's own mounts, before the user's.
    let layer_base = crate::setup::disk::base_dir();
    let reshown = |p: &Path| p.starts_with(&layer_base);
    let cover_layers = std::fs::symlink_metadata(&layer_base).is_ok_and(|m| m.is_dir())
        && (!matches!(under(&layer_base, &own), Under::Tmpfs(_))
            || overlays.iter().any(|(p, _)| reshown(p))
            || mounts[..visible_binds]
                .iter()
                .any(|m| reshown(spec_target(m))));
    let cover = if cover_layers {
        Some(step(
            format!(
                "covering {}, the caller's sandboxes' layers on disk",
                layer_base.display()
            ),
            StepKind::Special,
            Action::Mount {
                source: Some(c"tmpfs".into()),
                target: cstring("host", &layer_base)?,
                fstype: Some(c"tmpfs".into()),
                flags: hidden | libc::MS_RDONLY,
                data: Some(c"size=4k,mode=0555".into()),
            },
        ))
    } else {
        None
    };
    let mut cover = cover.into_iter();
    if visible_binds == 0 {
        steps.extend(cover.by_ref());
    }
    let mut sources = sources.into_iter();
    for (m, spec) in mounts.iter().enumerate() {
        let source_fd = match spec {
            MountSpec::Bind { .. } => sources.next(),
            MountSpec::Tmpfs { .. } | MountSpec::Layer { .. } => None,
        };
        mount_steps(spec, source_fd, &made, layout.tmp_size, &mut steps)?;
        made.push(spec.clone());
        if m + 1 == visible_binds {
            // Every bind back is in place: the overlays below them, then
            // the files in those, before the user's mounts.
            for &i in &after_binds {
                steps.extend(overlay_mount(
                    &overlays[i].0,
                    lower_fds[i],
                    upper_fd(i),
                    i,
                    layout.root,
                ));
            }
            for (i, (target, _)) in &over_late_after {
                steps.extend(file_over_host(*i, target, files_at)?);
            }
            steps.extend(cover.by_ref());
        }
    }
    for &fd in lower_fds.iter().chain([&layers_fd]).chain(&disk_fd) {
        steps.push(step(
            "closing the overlays' lower layers",
            StepKind::Overlay,
            Action::Close { fd },
        ));
    }
    if let Some(fd) = files_at {
        steps.push(step(
            "closing /tmp's fd",
            StepKind::UserMount,
            Action::Close { fd },
        ));
    }
    for (target, root, contents) in in_tmpfs {
        steps.extend(file_in_tmpfs(target, &root, contents)?);
    }
    // A tmpfs of the user's over a parent of the working directory (to
    // start from a clean tree) holds the path down to it, empty.
    if let Some(cwd) = layout.working_dir.as_deref()
        && let Under::Tmpfs(root) = under(cwd, &made)
        && root != cwd
        && layout
            .mounts
            .iter()
            .any(|m| matches!(m, MountSpec::Tmpfs { target } if target == root))
    {
        let mut path = root.to_path_buf();
        for part in cwd.strip_prefix(root).expect("under() checked the prefix") {
            path.push(part);
            steps.push(step(
                format!(
                    "creating the working directory's path {} in the tmpfs on {}",
                    path.display(),
                    root.display()
                ),
                StepKind::UserMount,
                Action::CreateDir {
                    path: cstring("tmpfs", &path)?,
                },
            ));
        }
    }

    steps.push(step(
        format!(
            "setting the hostname to {:?}",
            String::from_utf8_lossy(layout.hostname)
        ),
        StepKind::Hostname,
        Action::SetHostname {
            name: layout.hostname.to_vec(),
        },
    ));
    steps.push(step(
        "bringing up the loopback interface lo",
        StepKind::Loopback,
        Action::LoopbackUp,
    ));
    if layout.keepable {
        steps.push(step(
            "starting the keeper process (HERMETIC_KEEP)",
            StepKind::EnterNested,
            Action::StartKeeper,
        ));
    }
    steps.push(step(
        "entering the inner user namespace (setns)",
        StepKind::EnterNested,
        Action::EnterNested,
    ));
    if layout.mounts_inside {
        steps.push(step(
            "making a mount namespace of the inner user namespace's own, for mounts inside (unshare)",
            StepKind::EnterNested,
            Action::OwnMounts,
        ));
    }
    steps.push(step(
        "joining the sandbox's session keyring (keyctl)",
        StepKind::Keyring,
        Action::JoinKeyring,
    ));
    Ok(steps)
}

/// A file to be made inside a tmpfs of the sandbox: its target, that
/// tmpfs's mount point, its contents.
type InTmpfs<'a> = (&'a Path, PathBuf, &'a [u8]);

/// A file to be placed over a host file: its target, its contents.
type OverHost<'a> = (&'a Path, &'a [u8]);

/// Sorts the builder's files by where they go, and checks each: over a host
/// file (which must exist, and be a file), or made inside a tmpfs of the
/// sandbox (`/tmp`, `/dev/shm`, the user's). A file under a bind mount
/// would be written over the bound tree, or hidden by it: refused.
///
/// Copy-on-write, a file under one of the `layers` is placed over the host
/// file if there is one, else made in the layer.
/// The most the files a sandbox places inside ([`Layout::files`]) may hold
/// in all: they travel in the setup plan, which the init program takes up
/// to [`wire::PLAN_MAX`].
const FILES_AT_MOST: usize = 4 << 20;

fn place_files<'a>(
    files: &'a [(PathBuf, Vec<u8>)],
    mounts: &'a [MountSpec],
    layers: &[MountSpec],
    own: &[MountSpec],
) -> Result<(Vec<OverHost<'a>>, Vec<InTmpfs<'a>>), Error> {
    if files.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let option = "file";
    let total: usize = files.iter().map(|(_, c)| c.len()).sum();
    if total > FILES_AT_MOST {
        return Err(Error::InvalidOption {
            option,
            reason: format!(
                "the files to place inside hold {total} bytes in all; at most {} MiB \
                 travel with the sandbox's setup: bind a host file read-only instead \
                 (bind_ro, --bind-ro)",
                FILES_AT_MOST >> 20
            ),
        });
    }
    let made: Vec<MountSpec> = layers.iter().chain(own).chain(mounts).cloned().collect();
    let (mut over_host, mut in_tmpfs) = (Vec::new(), Vec::new());
    for (n, (target, contents)) in files.iter().enumerate() {
        absolute(option, "target", target)?;
        cstring(option, target)?;
        let invalid = |reason: String| Error::InvalidOption { option, reason };
        if files[..n].iter().any(|(t, _)| t == target) {
            return Err(invalid(format!(
                "{} is given twice: one file per target",
                target.display()
            )));
        }
        // The sandbox's own /proc and /sys are mounted over the host's,
        // after the files: one placed there would be hidden (a link such
        // as /etc/mtab leads there too).
        let resolved = std::fs::canonicalize(target).unwrap_or_else(|_| target.clone());
        if ["/proc", "/sys"].iter().any(|d| resolved.starts_with(d)) {
            return Err(invalid(format!(
                "the target {} is (or leads to) a file of the sandbox's own /proc or /sys, \
                 which are mounted over the host's, so no file can be placed there: write \
                 the contents to a file and bind it there read-only (bind_ro, --bind-ro)",
                target.display()
            )));
        }
        match under(target, &made) {
            Under::Host => match std::fs::metadata(target) {
                Ok(meta) if meta.is_file() => over_host.push((target.as_path(), &contents[..])),
                Ok(_) => {
                    return Err(invalid(format!(
                        "the target {} is not a file on the host: a file is placed over a \
                         file, or made under a tmpfs of the sandbox (such as /tmp)",
                        target.display()
                    )));
                }
                Err(e) => {
                    return Err(invalid(format!(
                        "the target {} cannot be used: {e}; a file is placed over a host \
                         file, or made under a tmpfs of the sandbox (such as /tmp)",
                        target.display()
                    )));
                }
            },
            Under::Tmpfs(root) if root == target.as_path() => {
                return Err(invalid(format!(
                    "the target {} is a tmpfs mount point of the sandbox, not a file",
                    target.display()
                )));
            }
            Under::Tmpfs(root) => in_tmpfs.push((target.as_path(), root.to_owned(), &contents[..])),
            Under::Layer(root) => match std::fs::symlink_metadata(target) {
                Ok(meta) if meta.is_file() => over_host.push((target.as_path(), &contents[..])),
                Ok(_) => {
                    return Err(invalid(format!(
                        "the target {} is not a file on the host",
                        target.display()
                    )));
                }
                Err(_) => in_tmpfs.push((target.as_path(), root.to_owned(), &contents[..])),
            },
            Under::Bind { target: bound, .. } => {
                return Err(invalid(format!(
                    "the target {} lies under the bind mount on {}: put the file in the \
                     bind's source instead",
                    target.display(),
                    bound.display()
                )));
            }
        }
    }
    Ok((over_host, in_tmpfs))
}

/// The steps that make a read-only file holding `contents` at `target`,
/// inside the tmpfs mounted on `root`: its missing directories, the file,
/// a bind of it over itself made read-only (so that nothing inside can
/// write it, root included: the mount belongs to the outer user namespace).
fn file_in_tmpfs(target: &Path, root: &Path, contents: &[u8]) -> Result<Vec<Step>, Error> {
    let option = "file";
    let rel = target
        .strip_prefix(root)
        .expect("under() checked the prefix");
    let mut steps = Vec::new();
    let mut path = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in &parts[..parts.len() - 1] {
        path.push(part);
        steps.push(step(
            format!("creating the directory {} for a file", path.display()),
            StepKind::UserMount,
            Action::CreateDir {
                path: cstring(option, &path)?,
            },
        ));
    }
    let c = cstring(option, target)?;
    let shown = target.display();
    steps.extend([
        step(
            format!("writing the sandbox's own {shown}"),
            StepKind::UserMount,
            Action::CreateFile {
                path: c.clone(),
                content: Some(contents.to_vec()),
            },
        ),
        step(
            format!("binding {shown} over itself"),
            StepKind::UserMount,
            Action::BindSelf {
                path: c.clone(),
                optional: false,
            },
        ),
        step(
            format!("making {shown} read-only"),
            StepKind::UserMount,
            Action::SetAttr {
                target: c,
                attrs: wire::ATTR_RDONLY,
                recursive: false,
                optional: false,
            },
        ),
    ]);
    Ok(steps)
}

/// The steps that make `path` read-only (a bind of itself, then the
/// flag), with `/proc/sys/net` and `/proc/sys/user` bound first below
/// `/proc/sys`, so that they stay writable: they are the sandbox's own
/// (its network namespace's, its user namespace's limits).
fn proc_read_only(path: &'static std::ffi::CStr, optional: bool) -> Vec<Step> {
    let shown = path.to_string_lossy();
    let mut steps = vec![step(
        format!("binding {shown} over itself"),
        StepKind::ProcReadOnly,
        Action::BindSelf {
            path: path.into(),
            optional,
        },
    )];
    if path == c"/proc/sys" {
        for own in [c"/proc/sys/net", c"/proc/sys/user"] {
            steps.push(step(
                format!(
                    "binding {} over itself, writable (the sandbox's own)",
                    own.to_string_lossy()
                ),
                StepKind::ProcReadOnly,
                Action::BindSelf {
                    path: own.into(),
                    optional: true,
                },
            ));
        }
    }
    steps.push(step(
        format!("making {shown} read-only"),
        StepKind::ProcReadOnly,
        Action::SetAttr {
            target: path.into(),
            attrs: wire::ATTR_RDONLY,
            recursive: false,
            optional,
        },
    ));
    steps
}

/// The options of a tmpfs of the sandbox's that holds `size` bytes: its
/// mode, its size, and as many inodes as 1 KiB each of `size` (at least
/// 4096). Every file, directory or link of a tmpfs pins about a KiB of
/// kernel memory whatever its size, and the kernel's default count is
/// half the host's pages: without a bound of their own, empty files
/// would take the host's memory past `size` (an attack found 200 000 of
/// them holding 200 MB in a `/tmp` of 1 MiB).
fn tmpfs_options(mode: u32, size: u64) -> CString {
    let inodes = (size / 1024).max(4096);
    CString::new(format!("mode={mode:o},size={size},nr_inodes={inodes}"))
        .expect("no NUL in the options")
}

/// A fresh filesystem of type `fstype` on `target`.
fn fresh(
    fstype: &'static std::ffi::CStr,
    target: &'static std::ffi::CStr,
    flags: libc::c_ulong,
    data: Option<CString>,
    kind: StepKind,
) -> Step {
    step(
        format!(
            "mounting {} on {}",
            fstype.to_string_lossy(),
            target.to_string_lossy()
        ),
        kind,
        Action::Mount {
            source: Some(fstype.into()),
            target: target.into(),
            fstype: Some(fstype.into()),
            flags,
            data,
        },
    )
}

/// The sandbox's own directories in the tmpfs hidden below /tmp, in a
/// directory made while it can still be reached (it is named through the
/// fd `stash_fd` once /tmp is covered): what becomes its `/tmp` (and, with
/// `var_tmp`, its `/var/tmp`), and the upper and work directories of each
/// copy-on-write overlay, each overlay's root given its lower layer's
/// mode. Returns the fd that names them; [`overlay_mount`] mounts each
/// overlay.
fn overlay_steps(
    overlays: &[(PathBuf, u32)],
    on_disk: &[bool],
    var_tmp: bool,
    stash_fd: i32,
    steps: &mut Vec<Step>,
) -> i32 {
    steps.push(step(
        "creating /tmp/layers for the sandbox's own directories",
        StepKind::Tmp,
        Action::CreateDirMode {
            path: c"/tmp/layers".into(),
            mode: 0o700,
        },
    ));
    for (i, (path, mode)) in overlays.iter().enumerate() {
        if on_disk[i] {
            continue;
        }
        let upper = CString::new(format!("/tmp/layers/u{i}")).expect("no NUL in the name");
        let work = CString::new(format!("/tmp/layers/w{i}")).expect("no NUL in the name");
        steps.extend(layer_dirs(
            path,
            *mode,
            (upper, work),
            "hidden below /tmp",
            [false; 2],
        ));
    }
    // The sandbox's own /tmp and /var/tmp, bound later (see own_tmp_dir).
    for target in [c"/tmp", c"/var/tmp"]
        .into_iter()
        .take(1 + var_tmp as usize)
    {
        let dir = own_tmp_dir(target).expect("one of them");
        let path = CString::new(format!("/tmp/layers/{dir}")).expect("no NUL in the name");
        let shown = target.to_string_lossy();
        steps.extend([
            step(
                format!("creating the directory that becomes {shown} (hidden below /tmp)"),
                StepKind::Tmp,
                Action::CreateDirMode {
                    path: path.clone(),
                    mode: 0o700,
                },
            ),
            step(
                format!("giving the directory that becomes {shown} its mode, 1777"),
                StepKind::Tmp,
                Action::Chmod { path, mode: 0o1777 },
            ),
        ]);
    }
    steps.push(step(
        "opening /tmp/layers, which holds the sandbox's own directories",
        StepKind::Tmp,
        Action::OpenPath {
            path: c"/tmp/layers".into(),
            fd: stash_fd,
        },
    ));
    stash_fd
}

/// The steps that make the upper layer `upper` (given `mode`, its lower
/// layer's) and the work directory `work` of the overlay on `path`, which
/// lie `where_`; `there` says which of the two are there already (taken
/// from the pool of emptied ones, on disk), and only need the mode.
fn layer_dirs(
    path: &Path,
    mode: u32,
    (upper, work): (CString, CString),
    where_: &str,
    there: [bool; 2],
) -> Vec<Step> {
    let shown = path.display();
    let mut steps = Vec::with_capacity(3);
    if !there[0] {
        steps.push(step(
            format!("creating the upper layer of {shown} ({where_})"),
            StepKind::Overlay,
            Action::CreateDirMode {
                path: upper.clone(),
                mode: 0o700,
            },
        ));
    }
    steps.push(step(
        format!("giving the upper layer of {shown} its mode, {mode:o}"),
        StepKind::Overlay,
        Action::Chmod { path: upper, mode },
    ));
    if !there[1] {
        steps.push(step(
            format!("creating the work directory of {shown} ({where_})"),
            StepKind::Overlay,
            Action::CreateDirMode {
                path: work,
                mode: 0o700,
            },
        ));
    }
    steps
}

/// The steps that make the upper and work directories of each overlay
/// `on_disk` in the base of `disk` (each upper layer given its lower
/// layer's mode), and clone the base's mount as `fd`.
fn disk_layer_steps(
    disk: &DiskPlan<'_>,
    overlays: &[(PathBuf, u32)],
    on_disk: &[bool],
    fd: i32,
) -> Result<Vec<Step>, Error> {
    let named = |name: &str| cstring("host", &disk.layers.path(name));
    let mut steps = Vec::new();
    for (i, (path, mode)) in overlays.iter().enumerate() {
        if !on_disk[i] {
            continue;
        }
        let names = [format!("u{i}"), format!("w{i}")];
        let dirs = (named(&names[0])?, named(&names[1])?);
        // Emptied directories of earlier sandboxes where the pool has
        // some: made here only where it has none.
        let there = disk.layers.claim(&[&names[0], &names[1]]);
        steps.extend(layer_dirs(
            path,
            *mode,
            dirs,
            "on disk",
            [there[0], there[1]],
        ));
    }
    let base = &disk.base.dir;
    steps.push(step(
        format!(
            "opening {}, which holds the upper layers on disk",
            base.display()
        ),
        StepKind::Overlay,
        // A clone of its mount (open_tree), which the read-only pass over
        // the host's mounts does not reach: an upper layer must be
        // writable.
        Action::OpenSource {
            path: cstring("host", base)?,
            fd,
            optional: false,
        },
    ));
    Ok(steps)
}

/// The directory of the layers' tmpfs that is bound on `target`, the
/// sandbox's own `/tmp` or `/var/tmp`, copy-on-write.
fn own_tmp_dir(target: &std::ffi::CStr) -> Option<&'static str> {
    match target.to_bytes() {
        b"/tmp" => Some("tmp"),
        b"/var/tmp" => Some("var-tmp"),
        _ => None,
    }
}

/// The `i`th overlay, on `path`: its lower layer at the fd `lower`, its
/// upper and work directories in the directory named by `layers.0`: on
/// disk, named with the prefix `layers.1`; else `u{i}` and `w{i}` of the
/// sandbox's tmpfs.
fn overlay_mount(
    path: &Path,
    lower: i32,
    (layers, disk): (i32, Option<&str>),
    i: usize,
    root: bool,
) -> [Step; 2] {
    // In a user namespace: the user.* xattrs (userxattr); no index and no
    // xino, which the kernel would otherwise warn about per mount. On
    // disk, volatile: the layer is thrown away with the sandbox, so its
    // end need not wait for the host's filesystem to be synced.
    let (prefix, volatile) = match disk {
        Some(prefix) => (format!("{prefix}."), ",volatile"),
        None => (String::new(), ""),
    };
    let data = format!(
        "lowerdir=/proc/self/fd/{lower},upperdir=/proc/self/fd/{layers}/{prefix}u{i},\
         workdir=/proc/self/fd/{layers}/{prefix}w{i},userxattr,index=off,xino=off{volatile}"
    );
    // The overlay's root shows its upper layer's times and owner: the
    // host directory's, copied just before the mount. The owner only where
    // whoever removes the layer can remove what that owner's processes put
    // in it: in the sandbox's tmpfs, or as root. (Rootless, a layer on
    // disk owned by another id of the caller's range could not be emptied
    // by the caller.)
    let owner = disk.is_none() || root;
    let upper = format!("/proc/self/fd/{layers}/{prefix}u{i}");
    [
        step(
            format!(
                "giving the upper layer of {} the times and owner of the host's",
                path.display()
            ),
            StepKind::Overlay,
            Action::CopyLook {
                path: CString::new(upper).expect("no NUL in the name"),
                from: lower,
                owner,
            },
        ),
        step(
            format!("mounting a copy-on-write overlay on {}", path.display()),
            StepKind::Overlay,
            Action::Mount {
                source: Some(c"overlay".into()),
                target: CString::new(path.as_os_str().as_bytes()).expect("checked when opened"),
                fstype: Some(c"overlay".into()),
                flags: libc::MS_NODEV,
                data: Some(CString::new(data).expect("no NUL in the options")),
            },
        ),
    ]
}

/// The steps that bind the `i`th file placed over a host file at
/// `target`, written below /tmp (named through the fd `files_at` once
/// /tmp is covered), and make it read-only.
fn file_over_host(i: usize, target: &Path, files_at: Option<i32>) -> Result<[Step; 2], Error> {
    let target = cstring("file", target)?;
    let made = match files_at {
        None => format!("/tmp/file{i}"),
        Some(fd) => format!("/proc/self/fd/{fd}/file{i}"),
    };
    let made = CString::new(made).expect("no NUL in the name");
    let shown = target.to_string_lossy().into_owned();
    Ok([
        step(
            format!("binding the sandbox's own {shown} over the host's"),
            StepKind::UserMount,
            Action::Mount {
                source: Some(made),
                target: target.clone(),
                fstype: None,
                flags: libc::MS_BIND,
                data: None,
            },
        ),
        step(
            format!("making {shown} read-only"),
            StepKind::UserMount,
            Action::SetAttr {
                target,
                attrs: wire::ATTR_RDONLY,
                recursive: false,
                optional: false,
            },
        ),
    ])
}

/// The overlays of the copy-on-write mode for `layout`: the host view's,
/// and one for each directory the sandbox must show that lies in /tmp or
/// /var/tmp (the program's, for `hermetic run`) and no overlay shows.
fn overlays_of(layout: &Layout<'_>) -> Vec<(PathBuf, u32)> {
    let mut overlays = layout.view.overlays.clone();
    let shown =
        |dir: &Path, overlays: &[(PathBuf, u32)]| overlays.iter().any(|(o, _)| dir.starts_with(o));
    let more: Vec<PathBuf> = layout
        .visible
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .filter(|d| crate::setup::host::own_tmp_base(d).is_some() && !shown(d, &overlays))
        .collect();
    if !more.is_empty() {
        overlays.extend(crate::setup::host::layers_for(&more, &layout.view.mounts));
        overlays.sort();
        overlays.dedup_by(|a, b| a.0 == b.0);
    }
    // The user's mounts win: what lies at or under one of their targets is
    // theirs (a `--tmpfs /tmp` from a working directory under /tmp gives a
    // clean /tmp, with the path to the working directory made in it), not
    // an overlay that their mount would cover.
    overlays.retain(|(p, _)| !layout.mounts.iter().any(|m| p.starts_with(spec_target(m))));
    overlays
}

/// Where a mount goes.
fn spec_target(spec: &MountSpec) -> &Path {
    match spec {
        MountSpec::Tmpfs { target }
        | MountSpec::Bind { target, .. }
        | MountSpec::Layer { target } => target,
    }
}

fn option_name(spec: &MountSpec) -> &'static str {
    match spec {
        MountSpec::Layer { .. } => "host",
        MountSpec::Tmpfs { .. } => "tmpfs",
        MountSpec::Bind {
            read_only: false, ..
        } => "bind",
        MountSpec::Bind {
            read_only: true, ..
        } => "bind_ro",
    }
}

/// The deepest earlier mount whose target contains `target`.
fn under<'a>(target: &Path, made: &'a [MountSpec]) -> Under<'a> {
    let mut best: Option<&MountSpec> = None;
    for spec in made {
        let t = spec_target(spec);
        if target.starts_with(t) {
            let deeper = match best {
                Some(b) => t.components().count() >= spec_target(b).components().count(),
                None => true,
            };
            if deeper {
                best = Some(spec);
            }
        }
    }
    match best {
        None => Under::Host,
        Some(MountSpec::Tmpfs { target }) => Under::Tmpfs(target),
        Some(MountSpec::Layer { target }) => Under::Layer(target),
        Some(MountSpec::Bind { source, target, .. }) => Under::Bind { source, target },
    }
}

/// The steps that create the missing part of the path from `root` (a
/// mount inside the sandbox) to `target`, a mount point: directories, and
/// the target itself as a file when the source is not a directory. With
/// `in_layer` (a writable layer over the host), what already exists there
/// is the host's and is left alone, and the steps say so.
fn mount_point_steps(
    option: &'static str,
    root: &Path,
    target: &Path,
    source_is_dir: bool,
    in_layer: Option<&str>,
    steps: &mut Vec<Step>,
) -> Result<(), Error> {
    let rel = target
        .strip_prefix(root)
        .expect("under() checked the prefix");
    let mut path = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        if in_layer.is_some() && std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        let last = i + 1 == parts.len();
        let c = cstring(option, &path)?;
        let (what, action) = if last && !source_is_dir {
            (
                "creating the file",
                Action::CreateFile {
                    path: c,
                    content: None,
                },
            )
        } else {
            ("creating the directory", Action::CreateDir { path: c })
        };
        let where_ = in_layer.map_or(String::new(), |w| format!(" ({w})"));
        steps.push(step(
            format!("{what} {} to mount on{where_}", path.display()),
            StepKind::UserMount,
            action,
        ));
    }
    Ok(())
}

/// The steps of the user's mount `spec`; a tmpfs is bounded as `/tmp` is
/// (`tmp_size`, and one inode per KiB of it): it is the host's memory.
fn mount_steps(
    spec: &MountSpec,
    source_fd: Option<i32>,
    made: &[MountSpec],
    tmp_size: u64,
    steps: &mut Vec<Step>,
) -> Result<(), Error> {
    let option = option_name(spec);
    let (target, source_is_dir) = match spec {
        MountSpec::Tmpfs { target } | MountSpec::Layer { target } => (target, true),
        MountSpec::Bind { source, target, .. } => {
            absolute(option, "source", source)?;
            let meta = std::fs::metadata(source).map_err(|e| Error::InvalidOption {
                option,
                reason: format!("the source {} cannot be used: {e}", source.display()),
            })?;
            (target, meta.is_dir())
        }
    };
    absolute(option, "target", target)?;
    if target == Path::new("/") {
        return Err(Error::InvalidOption {
            option,
            reason: "the target / would hide the whole filesystem".into(),
        });
    }
    // What every run and program of the sandbox needs: its /dev/null and
    // the like, and its own /proc.
    if matches!(spec, MountSpec::Tmpfs { .. })
        && (target == Path::new("/dev") || target == Path::new("/proc"))
    {
        return Err(Error::InvalidOption {
            option,
            reason: format!(
                "a tmpfs on {} would hide the sandbox's own {}, which every run and \
                 program needs; mount one below it instead (/dev/shm is one already)",
                target.display(),
                if target == Path::new("/dev") {
                    "/dev/null and the like"
                } else {
                    "/proc"
                }
            ),
        });
    }

    // Where does the target live once the earlier mounts are in place?
    let existing = match under(target, made) {
        Under::Host => Some(target.clone()),
        // The host's tree, writable inside: what exists is there; what does
        // not is created, in the sandbox's layer only.
        Under::Layer(root) if std::fs::symlink_metadata(target).is_ok() || root == target => {
            Some(target.clone())
        }
        Under::Layer(root) => {
            mount_point_steps(
                option,
                root,
                target,
                source_is_dir,
                Some("in the sandbox's layer"),
                steps,
            )?;
            None
        }
        Under::Bind { source, target: t } => {
            Some(source.join(target.strip_prefix(t).expect("under() checked the prefix")))
        }
        Under::Tmpfs(root) if root == target => None,
        Under::Tmpfs(root) => {
            // A fresh tmpfs holds nothing: create the path, inside the
            // sandbox only. Components below an earlier mount inside this
            // tmpfs would need the same care, so they are refused.
            mount_point_steps(option, root, target, source_is_dir, None, steps)?;
            None
        }
    };
    if let Some(host_path) = existing {
        match std::fs::metadata(&host_path) {
            Ok(meta) if meta.is_dir() != source_is_dir => {
                return Err(Error::InvalidOption {
                    option,
                    reason: format!(
                        "the target {} is a {} but the source is a {}",
                        target.display(),
                        if meta.is_dir() { "directory" } else { "file" },
                        if source_is_dir { "directory" } else { "file" },
                    ),
                });
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Error::InvalidOption {
                    option,
                    reason: format!(
                        "the target {} cannot be created: {e}; a target must exist, \
                         or lie under a tmpfs of the sandbox such as /tmp, where it is \
                         created inside the sandbox only",
                        target.display()
                    ),
                });
            }
        }
    }

    let target_c = cstring(option, target)?;
    match spec {
        MountSpec::Layer { .. } => {}
        MountSpec::Tmpfs { .. } => steps.push(step(
            format!("mounting tmpfs on {}", target.display()),
            StepKind::UserMount,
            Action::Mount {
                source: Some(c"tmpfs".into()),
                target: target_c,
                fstype: Some(c"tmpfs".into()),
                flags: libc::MS_NOSUID | libc::MS_NODEV,
                data: Some(tmpfs_options(0o755, tmp_size)),
            },
        )),
        MountSpec::Bind {
            source, read_only, ..
        } => {
            let what = format!("binding {} on {}", source.display(), target.display());
            steps.push(step(
                what,
                StepKind::UserMount,
                Action::AttachSource {
                    fd: source_fd.expect("every bind source is opened first"),
                    target: target_c.clone(),
                    optional: false,
                },
            ));
            if *read_only {
                // With every mount the source had beneath it: a clone of
                // the host's tree keeps their flags, writable ones too.
                steps.push(step(
                    format!(
                        "making {} read-only, mounts beneath included",
                        target.display()
                    ),
                    StepKind::UserMount,
                    Action::SetAttr {
                        target: target_c,
                        attrs: wire::ATTR_RDONLY,
                        recursive: true,
                        optional: false,
                    },
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: Ids = Ids {
        uid: 1000,
        gid: 100,
    };

    static NO_VIEW: HostView = HostView {
        special: Vec::new(),
        overlays: Vec::new(),
        target_dir: None,
        built_dirs: Vec::new(),
        mounts: Vec::new(),
        own_trees: Vec::new(),
    };

    fn layout(mounts: &[MountSpec]) -> Layout<'_> {
        Layout {
            hostname: b"h",
            mounts,
            files: &[],
            host: HostMode::ReadOnly,
            view: &NO_VIEW,
            visible: Vec::new(),
            working_dir: None,
            root: false,
            tmp_size: 1 << 30,
            shm_size: 64 << 20,
            user: None,
            outer_maps: None,
            external_maps: None,
            keepable: false,
            mounts_inside: false,
            disk: None,
            ipc_limit: None,
        }
    }

    fn whats(mounts: &[MountSpec]) -> Vec<String> {
        init_steps(Some(IDS), &layout(mounts))
            .unwrap()
            .into_iter()
            .map(|s| s.what)
            .collect()
    }

    /// With a memory limit of each process's: /proc is copied before its
    /// /proc/sys goes read-only, and the IPC sysctls written through the
    /// copy once the IPC namespace is joined, each skipped if refused.
    #[test]
    fn ipc_limits_are_written_in_the_joined_namespace_through_a_copy_of_proc() {
        let mut with = layout(&[]);
        with.ipc_limit = Some(64 << 20);
        let steps = init_steps(Some(IDS), &with).unwrap();
        let at = |what: &str| {
            steps
                .iter()
                .position(|s| s.what.starts_with(what))
                .unwrap_or_else(|| panic!("no step {what:?}"))
        };
        assert!(at("mounting proc on /proc") < at("copying the sandbox's /proc"));
        assert!(at("copying the sandbox's /proc") < at("making /proc/sys read-only"));
        let join = at("creating the inner user namespace and its network");
        assert!(join < at("setting kernel.shmall to 16384 "));
        assert!(join < at("setting kernel.msgmni to 4096 "));
        assert!(at("setting kernel.shmmax to 67108864 ") < at("closing the copy of /proc"));
        assert!(at("closing the copy of /proc") < at("entering the inner user namespace"));
        for s in &steps {
            if let Action::WriteFileIfAllowed { path, .. } = &s.action {
                assert!(path.to_string_lossy().contains("/sys/kernel/"), "{path:?}");
            }
        }
        // Without one, none of it.
        let without = whats(&[]);
        assert!(
            !without
                .iter()
                .any(|w| w.contains("kernel.") || w.contains("copy of"))
        );
    }

    #[test]
    fn id_map_text() {
        assert_eq!(id_map(0, 1000), b"0 1000 1\n");
    }

    #[test]
    fn a_tmpfs_over_the_working_directory_s_parent_holds_its_path() {
        let mounts = [MountSpec::Tmpfs {
            target: "/work".into(),
        }];
        let whats = |cwd: &str| -> Vec<String> {
            let mut l = layout(&mounts);
            l.working_dir = Some(cwd.into());
            init_steps(Some(IDS), &l)
                .unwrap()
                .into_iter()
                .map(|s| s.what)
                .filter(|w| w.starts_with("creating the working directory's path"))
                .collect()
        };
        assert_eq!(
            whats("/work/build/x"),
            [
                "creating the working directory's path /work/build in the tmpfs on /work",
                "creating the working directory's path /work/build/x in the tmpfs on /work",
            ]
        );
        // At the tmpfs itself, or outside it: nothing to make.
        assert!(whats("/work").is_empty());
        assert!(whats("/elsewhere/build").is_empty());
    }

    #[test]
    fn base_steps_in_order() {
        let w = whats(&[]);
        let at = |what: &str| {
            w.iter()
                .position(|x| x.starts_with(what))
                .unwrap_or_else(|| panic!("no step {what:?} in {w:#?}"))
        };
        assert_eq!(w[0], "writing \"deny\" to /proc/self/setgroups");
        assert_eq!(w[1], "mapping uid 0 to 1000 in /proc/self/uid_map");
        assert_eq!(w[2], "mapping gid 0 to 100 in /proc/self/gid_map");
        assert_eq!(w[3], "making all mounts private");
        // The host goes read-only before the sandbox's own mounts, which
        // stay writable; sysfs comes after the network namespace it shows;
        // the inner user namespace is entered once all mounts are made.
        assert!(at("creating the inner user namespace") < at("making the host's files read-only"));
        assert!(at("making the host's files read-only") < at("mounting proc on /proc"));
        assert!(at("creating the inner user namespace") < at("mounting proc on /proc"));

        // The helper makes the network namespace while the mounts that do
        // not show it are made; it is joined before sysfs, the hostname and
        // lo.
        let join = at("creating the inner user namespace and its network");
        assert!(at("creating the inner user namespace (") < join);
        assert!(at("mounting tmpfs on /dev/shm") < join);
        assert!(join < at("mounting sysfs on /sys"));
        // /proc/sys/net shows the network namespace of whoever reads it
        // (tests/it/attacks.rs), so it is bound before the join too.
        assert!(at("binding /proc/sys over itself") < join);
        assert!(join < at("setting the hostname"));
        assert!(join < at("bringing up the loopback"));
        assert!(at("binding /proc/sys/net over itself") < at("making /proc/sys read-only"));
        assert!(at("binding /proc/sys/user over itself") < at("making /proc/sys read-only"));
        assert!(at("mounting tmpfs on /tmp") < at("entering the inner user namespace"));
        assert!(at("mounting tmpfs on /dev/shm") < at("entering the inner user namespace"));
        assert!(at("bringing up the loopback") < at("entering the inner user namespace"));
        assert_eq!(
            w.last().unwrap(),
            "joining the sandbox's session keyring (keyctl)"
        );
    }

    #[test]
    fn writable_host_skips_only_the_read_only_pass() {
        let mut l = layout(&[]);
        l.host = HostMode::Writable;
        let w: Vec<String> = init_steps(Some(IDS), &l)
            .unwrap()
            .into_iter()
            .map(|s| s.what)
            .collect();
        assert!(
            !w.iter()
                .any(|x| x.starts_with("making the host's files read-only"))
        );
        assert!(w.iter().any(|x| x == "making /proc/sys read-only"));
    }

    #[test]
    fn a_working_directory_under_tmp_is_bound_in() {
        let dir = std::env::temp_dir().join("hermetic-plan-cwd");
        std::fs::create_dir_all(&dir).unwrap();
        let mut l = layout(&[]);
        l.visible = vec![dir.clone()];
        let w: Vec<String> = init_steps(Some(IDS), &l)
            .unwrap()
            .into_iter()
            .map(|s| s.what)
            .collect();
        let shown = dir.display().to_string();
        if shown.starts_with("/tmp/") {
            assert!(w.contains(&format!("binding {shown} on {shown}")), "{w:#?}");
            assert!(
                w.contains(&format!(
                    "making {shown} read-only, mounts beneath included"
                )),
                "{w:#?}"
            );
        }
        l.visible = vec!["/usr".into()];
        let w: Vec<String> = init_steps(Some(IDS), &l)
            .unwrap()
            .into_iter()
            .map(|s| s.what)
            .collect();
        assert!(!w.iter().any(|x| x.starts_with("binding /usr")), "{w:#?}");
    }

    /// What a copy-on-write sandbox's plan does, step by step, for `view`.
    fn copy_on_write_steps(view: &HostView) -> Vec<String> {
        let mut l = layout(&[]);
        l.host = HostMode::CopyOnWrite;
        l.view = view;
        init_steps(Some(IDS), &l)
            .unwrap()
            .into_iter()
            .map(|s| s.what)
            .collect()
    }

    /// Where the first step beginning with `what` is in `steps`.
    fn step_at(steps: &[String], what: &str) -> usize {
        steps
            .iter()
            .position(|x| x.starts_with(what))
            .unwrap_or_else(|| panic!("no step {what:?} in {steps:#?}"))
    }

    #[test]
    fn copy_on_write_overlays_below_tmp_come_after_its_fresh_tmpfs() {
        let view = HostView {
            special: Vec::new(),
            overlays: vec![("/tmp/suite/ws".into(), 0o700), ("/work".into(), 0o755)],
            ..HostView::default()
        };
        let w = copy_on_write_steps(&view);
        let at = |what: &str| step_at(&w, what);
        // The lower layer is opened before anything covers it.
        assert!(at("opening the host's /tmp/suite/ws") < at("mounting tmpfs on /tmp"));
        // /work first, with the other early mounts; /tmp/suite/ws on a mount
        // point made in the sandbox's fresh /tmp.
        assert!(at("mounting a copy-on-write overlay on /work") < at("mounting proc on /proc"));
        let fresh_tmp = at("binding the sandbox's own /tmp (");
        assert!(fresh_tmp > at("mounting proc on /proc"), "{w:#?}");
        assert!(
            fresh_tmp < at("creating the directory /tmp/suite/ws"),
            "{w:#?}"
        );
        assert!(
            at("creating the directory /tmp/suite/ws")
                < at("mounting a copy-on-write overlay on /tmp/suite/ws")
        );
        assert!(
            at("mounting a copy-on-write overlay on /tmp/suite/ws")
                < at("closing the overlays' lower layers")
        );
        // /var/tmp is the sandbox's own too; both in the layers' tmpfs.
        if Path::new("/var/tmp").is_dir() {
            at("binding the sandbox's own /var/tmp (");
        }
        assert!(
            !w.iter()
                .any(|x| x.starts_with("mounting tmpfs on /var/tmp"))
        );
        assert_eq!(
            w.iter()
                .filter(|x| x.starts_with("mounting tmpfs on /tmp"))
                .count(),
            1,
            "{w:#?}"
        );
    }

    #[test]
    fn copy_on_write_overlays_come_after_their_lower_layers_are_opened() {
        let view = HostView {
            special: vec![("/dev/mqueue".into(), "mqueue".into())],
            overlays: vec![("/tmp".into(), 0o1777), ("/work".into(), 0o755)],
            ..HostView::default()
        };
        let w = copy_on_write_steps(&view);
        let at = |what: &str| step_at(&w, what);
        assert!(at("opening the host's /tmp") < at("creating the inner user namespace ("));
        assert!(at("opening the host's /work") < at("mounting tmpfs on /tmp"));
        assert!(at("creating /tmp/layers") < at("creating the upper layer of /tmp"));
        assert!(
            at("giving the upper layer of /tmp its mode, 1777") < at("opening /tmp/layers, which")
        );
        assert!(at("opening /tmp/layers, which") < at("mounting a copy-on-write overlay on /tmp"));
        assert!(
            at("mounting a copy-on-write overlay on /tmp")
                < at("mounting a copy-on-write overlay on /work")
        );
        assert!(at("mounting a copy-on-write overlay on /work") < at("mounting proc on /proc"));
        // /tmp is the host's, under its layer: no fresh tmpfs over it.
        assert_eq!(
            w.iter().filter(|x| *x == "mounting tmpfs on /tmp").count(),
            1
        );
        assert!(
            at("creating the inner user namespace and its network")
                < at("mounting the sandbox's own mqueue on /dev/mqueue")
        );
    }

    #[test]
    fn hostname_rules() {
        assert!(hostname("ok").is_ok());
        assert!(hostname(&"x".repeat(64)).is_ok());
        let e = hostname(&"x".repeat(65)).unwrap_err().to_string();
        assert!(e.contains("`hostname`") && e.contains("65 bytes"), "{e}");
        assert!(hostname("").is_err());
        assert!(hostname("a\0b").is_err());
    }

    #[test]
    fn targets_under_tmp_are_created_inside() {
        let dir = std::env::temp_dir();
        let w = whats(&[MountSpec::Bind {
            source: dir.clone(),
            target: "/tmp/a/b".into(),
            read_only: true,
        }]);
        assert!(w.contains(&"creating the directory /tmp/a to mount on".into()));
        assert!(w.contains(&"creating the directory /tmp/a/b to mount on".into()));
        assert!(w.contains(&"making /tmp/a/b read-only, mounts beneath included".into()));
    }

    #[test]
    fn file_sources_get_file_targets() {
        let w = whats(&[MountSpec::Bind {
            source: "/etc/hostname".into(),
            target: "/tmp/x/hostname".into(),
            read_only: false,
        }]);
        assert!(
            w.contains(&"creating the file /tmp/x/hostname to mount on".into()),
            "{w:?}"
        );
    }

    #[test]
    fn bad_mounts_are_refused_by_name() {
        let err = |m: MountSpec| {
            init_steps(Some(IDS), &layout(&[m]))
                .unwrap_err()
                .to_string()
        };
        let e = err(MountSpec::Bind {
            source: "relative".into(),
            target: "/tmp/x".into(),
            read_only: false,
        });
        assert!(
            e.starts_with("invalid option `bind`") && e.contains("not an absolute"),
            "{e}"
        );
        let e = err(MountSpec::Bind {
            source: "/nonexistent-hermetic".into(),
            target: "/tmp/x".into(),
            read_only: true,
        });
        assert!(
            e.starts_with("invalid option `bind_ro`") && e.contains("cannot be used"),
            "{e}"
        );
        let e = err(MountSpec::Tmpfs {
            target: "/nonexistent-hermetic/x".into(),
        });
        assert!(
            e.starts_with("invalid option `tmpfs`") && e.contains("cannot be created"),
            "{e}"
        );
        let e = err(MountSpec::Tmpfs {
            target: "/tmp/../etc".into(),
        });
        assert!(e.contains("`..`"), "{e}");
        let e = err(MountSpec::Bind {
            source: "/etc/hostname".into(),
            target: "/etc".into(),
            read_only: false,
        });
        assert!(e.contains("is a directory but the source is a file"), "{e}");
    }

    #[test]
    fn nested_tmpfs_targets_are_created() {
        let w = whats(&[
            MountSpec::Tmpfs {
                target: "/tmp/data".into(),
            },
            MountSpec::Tmpfs {
                target: "/tmp/data/inner".into(),
            },
        ]);
        assert!(w.contains(&"creating the directory /tmp/data/inner to mount on".into()));
    }
}
