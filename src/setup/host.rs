//! The host as a sandbox sees it: the three modes, and what the
//! copy-on-write mode overlays.
//!
//! Read from the test process's mount table before anything starts, so
//! that the init program only mounts what the plan names.
//!
//! Why the overlays are where they are (measured on Linux 6.18): an overlay shows one filesystem, not the mounts below its
//! lower directory, and the kernel refuses a lower directory with a mount
//! beneath it that the sandbox's user namespace may not take off (a locked
//! mount: `EINVAL`). So `/` itself is never a lower layer: a directory with
//! mounts beneath is split into its entries, each an overlay of its own,
//! down to the directories with none. And rootless, copying up a directory
//! owned by an id the sandbox does not map (the host's root owns `/home`,
//! `/var`, `/tmp`) fails with `EOVERFLOW`, while the root of an overlay is
//! never copied up: so rootless overlays are rooted at the directories the
//! caller writes (its working tree, the target dir, `$HOME`), each at its
//! highest ancestor the caller owns. As root, whose ids are all mapped, at
//! the top-level directory of each (`/work`, `/root`): one overlay per
//! top-level directory would cover all of the host, but each overlay costs
//! a sandbox about 0.07 ms to mount and 0.2 ms to take down (an RCU grace
//! period per overlay), measured here, so the rest of the host stays
//! read-only. For the same reason `/tmp` and `/var/tmp` are fresh tmpfs
//! mounts of the sandbox (a fraction of an overlay's cost), with an overlay
//! below them only for what a test needs there ([`OWN_TMP`]): the rest of
//! the host's `/tmp`, other programs' files and sockets, is not seen.
//!
//! # References
//!
//! overlayfs (Documentation/filesystems/overlayfs.rst), proc_pid_mountinfo(5),
//! statx(2) (`STATX_MNT_ID`), user_namespaces(7)

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// How a sandbox sees the host's files ([`SandboxBuilder::host`]).
///
/// [`SandboxBuilder::host`]: crate::SandboxBuilder::host
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
#[non_exhaustive]
pub enum HostMode {
    /// The host's files are read-only inside (every mount); `/tmp` and
    /// `/dev/shm` are fresh and the sandbox's own, with the working
    /// directory and the target dir bound back (read-only) where `/tmp`
    /// would hide them. The default of [`Sandbox`](crate::Sandbox): the
    /// cheapest.
    #[default]
    ReadOnly,
    /// The host's files look as they are and are writable wherever the
    /// caller could write them; every change lands in a private layer (an
    /// overlay whose upper layer is a tmpfs of the sandbox, within
    /// [`tmp_size`](crate::SandboxBuilder::tmp_size); for the test's own
    /// tree, its working directory and `CARGO_MANIFEST_DIR`, a directory
    /// of the caller's on disk under `/var/tmp/hermetic-UID`, so that
    /// directories made there have the host filesystem's sizes) that goes
    /// with the sandbox: nothing reaches the host's files. Set
    /// `HERMETIC_LAYER_IN_MEMORY=1` to keep every layer in memory. `/tmp` and `/var/tmp` are the
    /// sandbox's own (fresh, in that same tmpfs), showing what the
    /// test needs below them (the working directory, the target dir,
    /// `$HOME`, [`visible`](crate::SandboxBuilder::visible) directories...)
    /// under such a layer. The default of `hermetic run` and
    /// [`isolate_test`](crate::isolate_test). Where the kernel refuses an
    /// overlay, sandboxes fall back to [`ReadOnly`](Self::ReadOnly), and the
    /// first one says so on stderr.
    CopyOnWrite,
    /// The host's files are writable inside, as far as the caller may
    /// write them outside: writes reach the host. As root, code inside can
    /// change anything on the host's filesystem: for code you trust.
    Writable,
}

impl HostMode {
    /// The mode a sandbox asking for this one gets in this process: the
    /// copy-on-write mode is read-only where the kernel has refused an
    /// overlay (said once, on stderr, by the first sandbox).
    pub fn granted(self) -> HostMode {
        effective(self)
    }

    /// The name `hermetic run --host` takes.
    pub fn name(self) -> &'static str {
        match self {
            HostMode::ReadOnly => "ro",
            HostMode::CopyOnWrite => "cow",
            HostMode::Writable => "writable",
        }
    }
}

impl std::fmt::Display for HostMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HostMode {
    type Err = String;

    /// `cow` (or `copy-on-write`), `ro` (or `read-only`), `writable` (or
    /// `rw`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cow" | "copy-on-write" => Ok(HostMode::CopyOnWrite),
            "ro" | "read-only" => Ok(HostMode::ReadOnly),
            "writable" | "rw" => Ok(HostMode::Writable),
            other => Err(format!("unknown host mode {other:?}: cow, ro or writable")),
        }
    }
}

/// One line of the mount table.
#[derive(Debug, Clone)]
pub(crate) struct HostMount {
    pub(crate) id: u64,
    pub(crate) point: PathBuf,
    pub(crate) fstype: String,
    pub(crate) read_only: bool,
}

/// The special filesystems whose host mounts give a way to kernel objects
/// of the host (its message queues, cgroups, BPF objects, tracing...):
/// never reachable inside.
pub(crate) const SPECIAL: [&str; 13] = [
    "mqueue",
    "cgroup",
    "cgroup2",
    "bpf",
    "tracefs",
    "debugfs",
    "securityfs",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "pstore",
    "hugetlbfs",
    "efivarfs",
];

/// `\040` and friends in a mount table path.
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Parses `/proc/self/mountinfo` text.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<HostMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if f.len() < 6 || r.is_empty() {
            continue;
        }
        let Ok(id) = f[0].parse() else { continue };
        mounts.push(HostMount {
            id,
            point: unescape(f[4]),
            fstype: r[0].to_owned(),
            read_only: f[5].split(',').any(|o| o == "ro"),
        });
    }
    mounts
}

/// The mounts of this process's mount table that can be reached at their
/// mount point (the topmost there), as the sandbox inherits them.
pub(crate) fn reachable_mounts() -> Vec<HostMount> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_mountinfo(&text)
        .into_iter()
        .filter(|m| {
            rustix::fs::statx(
                rustix::fs::CWD,
                &m.point,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                rustix::fs::StatxFlags::MNT_ID,
            )
            .is_ok_and(|st| st.stx_mnt_id == m.id)
        })
        .collect()
}

/// What the plan needs of the host: read once per process (and per
/// caller's uid and working directory).
#[derive(Debug, Clone, Default)]
pub(crate) struct HostView {
    /// Special filesystems reachable outside `/proc` and `/sys` (which the
    /// sandbox replaces), to be covered inside.
    pub(crate) special: Vec<(PathBuf, String)>,
    /// The directories overlaid in the copy-on-write mode, parents before
    /// children, with the mode of each (shown as its overlay root's).
    pub(crate) overlays: Vec<(PathBuf, u32)>,
    /// The target dir of the running executable, if it has one (a
    /// directory holding cargo's `CACHEDIR.TAG` above it).
    pub(crate) target_dir: Option<PathBuf>,
    /// Where that target dir is an extracted nextest archive's: the target
    /// dir of the build it came from, and its workspace
    /// ([`archived_build`]).
    pub(crate) built_dirs: Vec<PathBuf>,
    /// The host's reachable mounts (copy-on-write: for the overlays of a
    /// sandbox's own visible directories).
    pub(crate) mounts: Vec<HostMount>,
    /// Copy-on-write: the test's own tree, whose overlay may keep its
    /// upper layer on disk (see [`own_trees`](crate::setup::disk::own_trees)).
    pub(crate) own_trees: Vec<PathBuf>,
}

/// The sandbox's own trees: nothing of the host's there is shown (but
/// what a test needs under `/dev/shm`, as under `/tmp`: see [`OWN_TMP`]).
const OWN: [&str; 3] = ["/proc", "/sys", "/dev"];

fn is_own(path: &Path) -> bool {
    OWN.iter().any(|o| path.starts_with(o)) && !path.starts_with("/dev/shm")
}

/// The most overlays a sandbox gets (a deeper split is left read-only).
const MAX_OVERLAYS: usize = 48;

/// The test executable's target dir: `CARGO_TARGET_DIR`, else the
/// executable's nearest ancestor that cargo marked as one. Cargo writes
/// `CACHEDIR.TAG` only into a target dir it created itself (not into one
/// made beforehand: a CI cache restored there, a volume mounted there),
/// and `.rustc_info.json` into every target dir it builds in; an
/// extracted nextest archive may have neither, and is known by cargo's
/// layout (`TARGET/PROFILE/deps/BINARY`).
fn target_dir(exe: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            return Some(dir);
        }
    }
    target_dir_of(exe?)
}

/// Whether cargo built `exe`: it has a target dir ([`target_dir_of`]).
pub(crate) fn has_target_dir(exe: &Path) -> bool {
    target_dir_of(exe).is_some()
}

/// [`target_dir`] for the executable `exe`, from the files around it.
fn target_dir_of(exe: &Path) -> Option<PathBuf> {
    let marked = exe
        .ancestors()
        .skip(1)
        .find(|d| d.join("CACHEDIR.TAG").is_file() || d.join(".rustc_info.json").is_file());
    let laid_out = || {
        let deps = exe.parent()?;
        (deps.file_name()? == "deps").then(|| deps.parent()?.parent())?
    };
    marked.or_else(laid_out).map(Path::to_path_buf)
}

/// For a directory of an extracted `cargo nextest archive`
/// (`TARGET/PROFILE/deps`, or any below `TARGET`): the target dir of the
/// build the archive was made from, where that still exists on this host
/// and is another directory. Its tests start the crate's binaries by the
/// paths cargo compiled into them (`env!("CARGO_BIN_EXE_<name>")`), which
/// lie there: plainly they are found on the machine that built them, so
/// they must be inside too (under `/tmp`, the sandbox's own would hide
/// them). nextest keeps that dir in the archive's
/// `TARGET/nextest/binaries-metadata.json` (`rust-build-meta`). And the
/// build's workspace, which `TARGET/nextest/cargo-metadata.json` names
/// (`workspace_root`), where `env!("CARGO_MANIFEST_DIR")` paths lead (a
/// test's fixtures, its snapshots). Only an archive the caller extracted
/// counts (`TARGET`, `nextest` and the files the caller's, the files not
/// writable by other users or groups), only a directory cargo tagged as a target dir
/// (`CACHEDIR.TAG`) is taken for one, and a workspace has a `Cargo.toml`.
pub(crate) fn archived_build(dir: &Path) -> Vec<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(rename = "rust-build-meta")]
        meta: BuildMeta,
    }
    #[derive(serde::Deserialize)]
    struct BuildMeta {
        #[serde(rename = "target-directory")]
        target_directory: PathBuf,
    }
    #[derive(serde::Deserialize)]
    struct CargoMetadata {
        workspace_root: PathBuf,
    }
    // TARGET itself, or TARGET/PROFILE/deps, or a directory between; an
    // archive extracted by the caller: TARGET, its `nextest` and the files
    // the caller's (a file another user planted above a directory of
    // /tmp, `/tmp/nextest/...`, would name what it likes), the files not
    // writable by others: by no other user, nor by a group but the
    // caller's own (nextest extracts them with mode 0664, whatever the
    // umask, as its archive holds them).
    let uid = crate::sys::geteuid();
    let gid = crate::sys::getegid();
    let own = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.uid() == uid);
    let own_file = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok_and(|m| {
            m.uid() == uid
                && m.is_file()
                && m.mode() & 0o002 == 0
                && (m.mode() & 0o020 == 0 || m.gid() == gid)
        })
    };
    let Some(target) = dir.ancestors().take(3).find(|d| {
        own(d) && own(&d.join("nextest")) && own_file(&d.join("nextest/binaries-metadata.json"))
    }) else {
        return Vec::new();
    };
    let read = |name: &str| std::fs::read(target.join("nextest").join(name)).ok();
    let Some(built) = read("binaries-metadata.json")
        .and_then(|text| serde_json::from_slice::<Metadata>(&text).ok())
        .map(|m| m.meta.target_directory)
    else {
        return Vec::new();
    };
    // And what it names is a target dir of cargo's (which tags each one
    // it makes), nothing else of the host's.
    let tagged = built.join("CACHEDIR.TAG").is_file();
    if !(built.is_absolute() && built.is_dir() && tagged && built != target) {
        return Vec::new();
    }
    let mut dirs = vec![built];
    // The build's workspace too (`env!("CARGO_MANIFEST_DIR")` paths, a
    // test's fixtures and snapshots, lead there), as the archive's cargo
    // metadata names it: a directory with a Cargo.toml.
    let workspace = read("cargo-metadata.json")
        .filter(|_| own_file(&target.join("nextest/cargo-metadata.json")))
        .and_then(|text| serde_json::from_slice::<CargoMetadata>(&text).ok())
        .map(|m| m.workspace_root)
        .filter(|w| w.is_absolute() && w.join("Cargo.toml").is_file() && w.as_path() != target);
    dirs.extend(workspace);
    dirs
}

/// The highest ancestor of `dir` (itself included) that `uid` owns, going
/// up while each parent is also the caller's; `None` if `dir` is not.
fn highest_owned(dir: &Path, uid: u32) -> Option<PathBuf> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let owned = |d: &Path| std::fs::metadata(d).is_ok_and(|m| m.uid() == uid && m.is_dir());
    if !owned(&dir) {
        return None;
    }
    let mut top = dir.clone();
    while let Some(parent) = top.parent() {
        if !owned(parent) {
            break;
        }
        top = parent.to_path_buf();
    }
    Some(top)
}

/// Splits `dir` into directories with no reachable mount beneath them, and
/// adds those worth an overlay (on a mount that is writable outside) to
/// `out`.
fn split(dir: &Path, mounts: &[HostMount], out: &mut Vec<(PathBuf, u32)>, depth: usize) {
    if is_own(dir) || out.len() >= MAX_OVERLAYS || depth > 12 {
        return;
    }
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    // The mount this directory lies on: a read-only one needs no layer,
    // writes fail outside too.
    let on = mounts
        .iter()
        .filter(|m| dir.starts_with(&m.point))
        .max_by_key(|m| m.point.components().count());
    let beneath = mounts
        .iter()
        .any(|m| m.point != dir && m.point.starts_with(dir));
    if !beneath {
        if on.is_some_and(|m| !m.read_only && !SPECIAL.contains(&m.fstype.as_str())) {
            out.push((dir.to_path_buf(), meta.mode() & 0o7777));
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut children: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    children.sort();
    for child in children {
        split(&child, mounts, out, depth + 1);
    }
}

/// The directories that are the sandbox's own tmpfs in the copy-on-write
/// mode (fresh and private, within `tmp_size` each; `/dev/shm` within its
/// 64 MiB), unless a test's directory is one of them itself; what a test
/// needs below them (a checkout or a target dir in memory) is shown by
/// overlays of its own.
pub(crate) const OWN_TMP: [&str; 3] = ["/tmp", "/var/tmp", "/dev/shm"];

/// The directory of [`OWN_TMP`] at or above `path`.
pub(crate) fn own_tmp_base(path: &Path) -> Option<&'static Path> {
    OWN_TMP.iter().map(Path::new).find(|b| path.starts_with(b))
}

/// The root of the overlay that shows `dir` (canonical) copy-on-write.
/// Under `/tmp` or `/var/tmp` (fresh tmpfs mounts of the sandbox), the
/// overlay lies below them: their entry holding `dir` as root, the highest
/// directory the caller owns rootless; `/tmp` itself if `dir` is `/tmp`.
/// Elsewhere, the top-level directory as root, the highest directory the
/// caller owns rootless.
fn layer_root(dir: &Path, uid: u32) -> Option<PathBuf> {
    let base = own_tmp_base(dir);
    if base == Some(dir) {
        return Some(dir.to_path_buf());
    }
    let below = |b: &Path| {
        let first = dir.strip_prefix(b).ok()?.components().next()?;
        Some(b.join(first))
    };
    if uid == 0 {
        // Root owns (and maps) every ancestor: the widest overlay for the
        // same price.
        return below(base.unwrap_or(Path::new("/")));
    }
    let top = highest_owned(dir, uid)?;
    match base {
        // A caller owning /tmp itself: still its entry, below the tmpfs.
        Some(b) if !top.starts_with(b) || top == b => below(b),
        _ => Some(top),
    }
}

/// The overlays (root, mode) that show `dirs` copy-on-write, given the
/// host's `mounts`: one root per directory, those covered by another
/// dropped, split where mounts lie beneath.
pub(crate) fn layers_for(dirs: &[PathBuf], mounts: &[HostMount]) -> Vec<(PathBuf, u32)> {
    let uid = crate::sys::geteuid();
    let roots: BTreeSet<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .filter_map(|d| layer_root(&d, uid))
        .collect();
    // A root whose parent is an earlier root is covered by it (the root of
    // an overlay is never copied up; the caller owns it), as is one below
    // an earlier root through directories the caller owns.
    let mut kept: Vec<PathBuf> = Vec::new();
    for root in roots {
        let base = own_tmp_base(&root);
        let covered = kept.iter().any(|k| {
            // Not across a tmpfs of the sandbox's: k must lie at or below
            // the tmpfs that root lies under, if any.
            let same_side = base.is_none_or(|b| k.starts_with(b));
            let owned_between = || {
                root.ancestors()
                    .take_while(|a| *a != k.as_path())
                    .all(|a| std::fs::metadata(a).is_ok_and(|m| m.uid() == uid))
            };
            same_side
                && (root == *k
                    || root.parent() == Some(k.as_path())
                    || root.starts_with(k) && owned_between())
        });
        if !covered {
            kept.push(root);
        }
    }
    let mut overlays = Vec::new();
    for root in kept {
        split(&root, mounts, &mut overlays, 0);
    }
    overlays.sort();
    overlays.dedup_by(|a, b| a.0 == b.0);
    overlays
}

impl HostView {
    /// Reads the host as this process sees it now.
    /// `exe`: the test's executable (whose target dir tests write in).
    pub(crate) fn read(cow: bool, exe: Option<&Path>) -> HostView {
        let mounts = reachable_mounts();
        let special = mounts
            .iter()
            .filter(|m| SPECIAL.contains(&m.fstype.as_str()) && !is_own_fresh(&m.point))
            .map(|m| (m.point.clone(), m.fstype.clone()))
            .collect();
        let target_dir = target_dir(exe);
        let mut overlays = Vec::new();
        if cow {
            let written = [
                std::env::current_dir().ok(),
                std::env::var_os("HOME").map(PathBuf::from),
                std::env::var_os("CARGO_TARGET_TMPDIR").map(PathBuf::from),
                std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
                std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
                std::env::var_os("TMPDIR").map(PathBuf::from),
                target_dir.clone(),
            ];
            // /tmp or /var/tmp itself as $HOME, TMPDIR...: the sandbox's
            // own is as writable. Only a working directory there (a program
            // started as ./prog) needs the host's, under a layer.
            let cwd = std::env::current_dir().ok();
            let dirs: Vec<PathBuf> = written
                .into_iter()
                .flatten()
                .filter(|d| d.is_absolute())
                .filter(|d| {
                    Some(d) == cwd.as_ref()
                        || std::fs::canonicalize(d)
                            .is_ok_and(|c| own_tmp_base(&c) != Some(c.as_path()))
                })
                .collect();
            overlays = layers_for(&dirs, &mounts);
        }
        HostView {
            special,
            overlays,
            built_dirs: target_dir
                .as_deref()
                .map(archived_build)
                .unwrap_or_default(),
            target_dir,
            mounts: if cow { mounts } else { Vec::new() },
            own_trees: if cow {
                crate::setup::disk::own_trees()
            } else {
                Vec::new()
            },
        }
    }

    /// Read once per process, for the caller's uid and working directory
    /// (sandboxes are made often; the host's mounts rarely change meanwhile).
    ///
    /// The cache's lock is only tried, never waited for, and held only to
    /// look a view up or add one: a closure's process is a fork of the
    /// test process, and if another thread held the lock at that moment,
    /// a sandbox made in the closure would wait for ever for a holder it
    /// has no copy of. It reads the view itself instead.
    pub(crate) fn cached(cow: bool, exe: Option<&Path>) -> HostView {
        type Key = (bool, u32, Option<PathBuf>, Option<PathBuf>);
        type Cache = Vec<(Key, HostView)>;
        static CACHE: std::sync::Mutex<Cache> = std::sync::Mutex::new(Vec::new());
        let tried = || match CACHE.try_lock() {
            Ok(cache) => Some(cache),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let key = (
            cow,
            crate::sys::geteuid(),
            std::env::current_dir().ok(),
            exe.map(Path::to_path_buf),
        );
        let found = |cache: &Cache| {
            cache
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        if let Some(view) = tried().and_then(|cache| found(&cache)) {
            return view;
        }
        let view = HostView::read(cow, exe);
        if let Some(mut cache) = tried()
            && found(&cache).is_none()
        {
            cache.push((key.clone(), view.clone()));
        }
        view
    }
}

/// Why the kernel refused an overlay, once it has (for this process).
static REFUSED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The mode a sandbox gets: copy-on-write falls back to read-only once the
/// kernel has refused an overlay.
pub(crate) fn effective(mode: HostMode) -> HostMode {
    match mode {
        HostMode::CopyOnWrite if REFUSED.get().is_some() => HostMode::ReadOnly,
        mode => mode,
    }
}

/// Notes that the kernel refused an overlay, and says so, once per
/// process, on stderr.
pub(crate) fn refuse(why: &dyn std::fmt::Display) {
    let mut first = false;
    REFUSED.get_or_init(|| {
        first = true;
        why.to_string()
    });
    if first {
        eprintln!(
            "hermetic: the kernel refuses a copy-on-write view of the host here ({why}); \
             sandboxes see the host read-only, with the program, the working directory \
             and the target dir visible (`hermetic check` says more)"
        );
    }
}

/// Under `/proc` or `/sys`: covered by the sandbox's fresh ones.
fn is_own_fresh(path: &Path) -> bool {
    path.starts_with("/proc") || path.starts_with("/sys")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_by_name() {
        assert_eq!("cow".parse(), Ok(HostMode::CopyOnWrite));
        assert_eq!("ro".parse(), Ok(HostMode::ReadOnly));
        assert_eq!("writable".parse(), Ok(HostMode::Writable));
        assert!("x".parse::<HostMode>().is_err());
        assert_eq!(HostMode::default(), HostMode::ReadOnly);
    }

    #[test]
    fn mountinfo_lines() {
        let m = parse_mountinfo(
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
             28 27 0:25 / /mnt/a\\040b ro,nosuid - tmpfs x ro\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].point, Path::new("/mnt/a b"));
        assert!(m[1].read_only && !m[0].read_only);
        assert_eq!(m[0].fstype, "ext4");
    }

    #[test]
    fn a_target_dir_is_known_by_its_marks_or_by_cargo_s_layout() {
        let root = tempfile::tempdir().unwrap();
        let at = |p: &str| root.path().join(p);
        if let Some(above) = target_dir_of(&at("prog")) {
            // A target dir around the temporary dir itself
            // (CARGO_TARGET_DIR=/tmp): every path here is in it.
            eprintln!("not tried: {} is marked as a target dir", above.display());
            return;
        }
        std::fs::create_dir_all(at("a/t/debug/deps")).unwrap();
        std::fs::create_dir_all(at("b/t/debug/deps")).unwrap();
        std::fs::create_dir_all(at("c/t/debug/examples")).unwrap();
        std::fs::write(at("a/t/.rustc_info.json"), "{}").unwrap();
        std::fs::write(at("c/t/CACHEDIR.TAG"), "").unwrap();
        // Marked (by either file), however deep the executable lies.
        assert_eq!(target_dir_of(&at("a/t/debug/deps/it-1")), Some(at("a/t")));
        assert_eq!(target_dir_of(&at("c/t/debug/examples/x")), Some(at("c/t")));
        // Unmarked (an extracted archive): cargo's layout.
        assert_eq!(target_dir_of(&at("b/t/debug/deps/it-1")), Some(at("b/t")));
        // Neither: not a target dir.
        assert_eq!(target_dir_of(&at("b/t/debug/prog")), None);
    }
}
