//! Upper layers on disk: where the copy-on-write overlay that shows the
//! test's own tree (its working directory, `CARGO_MANIFEST_DIR`) keeps
//! what the sandbox writes there.
//!
//! Why on disk: a directory made in a tmpfs upper layer has tmpfs's size
//! (40 bytes plus 20 per entry), one made outside on ext4 has 4096, and
//! suites compare the two (fs_extra 1.3.0: 14 of its 161 tests). An upper
//! layer on the host's own kind of filesystem gives what a test would see
//! outside. The other overlays (`$HOME`, the target dir elsewhere, what
//! lies under `/tmp`) keep theirs in the sandbox's tmpfs: a layer on disk
//! costs a sandbox about 0.5 ms more (the kernel's checks of the work
//! directory and the removal are journaled operations), measured in
//! `docs/how-it-works.md`.
//!
//! Where: `/var/tmp/hermetic-UID`, made by the caller with mode 0700, in
//! which a sandbox's Kth overlay has `PID.START.N.uK` (its upper layer)
//! and `PID.START.N.wK` (its work directory), named after the process that
//! owns them (the test process, or the init process once the sandbox is
//! kept) and its start time, so that what a killed owner left (`SIGKILL`
//! runs no drop) is recognised and removed by the next process that makes
//! a layer on disk. Used only where `/var/tmp` is on ext4, XFS or btrfs,
//! the overlay's own filesystem is of the same kind, and the overlay does
//! not hold `/var/tmp` itself (the kernel refuses overlapping layers);
//! `HERMETIC_LAYER_IN_MEMORY=1` keeps every layer in memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Filesystems an upper layer may lie on, by their `statfs` magic: ext2/3/4,
/// XFS and btrfs (whose directories have sizes of their own kind).
const DISK_FILESYSTEMS: [i64; 3] = [0xEF53, 0x5846_5342, 0x9123_683E];

/// The directory that holds this caller's upper layers on disk, and the
/// filesystem it lies on.
#[derive(Debug)]
pub(crate) struct DiskBase {
    pub(crate) dir: PathBuf,
    fs_type: i64,
    /// Its device and inode, to tell it from whatever a process forked
    /// into a sandbox (a closure) finds at the same path.
    id: (u64, u64),
}

/// The base for this process, made (and swept of what killed processes
/// left) at its first use; `None` where layers stay in memory.
///
/// Read once per process, but checked at each use: a closure is a fork of
/// the test process with its memory, and inside a sandbox `/var/tmp` is
/// another directory (the sandbox's own tmpfs, or the host's read-only).
/// The cache's lock is only tried, never waited for (a fork may copy it
/// held, with no thread to release it), as for the host view.
pub(crate) fn base() -> Option<&'static DiskBase> {
    type Cached = Option<Option<&'static DiskBase>>;
    static BASE: std::sync::Mutex<Cached> = std::sync::Mutex::new(None);
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if in_memory_asked() {
        return None;
    }
    let tried = || match BASE.try_lock() {
        Ok(cache) => Some(cache),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    let cached = tried().and_then(|cache| *cache);
    let base = match cached {
        Some(base) => base,
        None => {
            let found: Option<&'static DiskBase> =
                open_base(Path::new("/var/tmp"), crate::sys::geteuid())
                    .map(|b| &*Box::leak(Box::new(b)));
            if let Some(mut cache) = tried() {
                cache.get_or_insert(found);
            }
            found
        }
    }?;
    // Still this directory, here (not a sandbox's /var/tmp), and writable
    // (not the host's seen read-only from inside a sandbox).
    let writable = || rustix::fs::access(&base.dir, rustix::fs::Access::WRITE_OK).is_ok();
    if id_of(&base.dir) != Some(base.id) || !writable() {
        return None;
    }
    if !SWEPT.swap(true, Ordering::Relaxed) {
        sweep(&base.dir);
    }
    Some(base)
}

/// The device and inode of `path` itself (not followed).
fn id_of(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Where this process's copy-on-write layers lie, in words (for
/// `check()`).
pub(crate) fn describe() -> String {
    if in_memory_asked() {
        return "every layer in memory (HERMETIC_LAYER_IN_MEMORY is set)".into();
    }
    match base() {
        Some(base) => format!(
            "the test's own tree's layer on disk in {} (directories there have the host's sizes), \
             the others in memory",
            base.dir.display()
        ),
        None => format!(
            "every layer in memory: /var/tmp is not on ext4, XFS or btrfs, or /var/tmp/hermetic-{} \
             is not a directory of this user's alone",
            crate::sys::geteuid()
        ),
    }
}

/// `HERMETIC_LAYER_IN_MEMORY` is set (to anything but empty or `0`).
fn in_memory_asked() -> bool {
    std::env::var_os("HERMETIC_LAYER_IN_MEMORY").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `parent/hermetic-UID`, made if missing; `None` unless it is a directory
/// of `uid`'s that no one else may enter, on a disk filesystem.
fn open_base(parent: &Path, uid: u32) -> Option<DiskBase> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let fs_type = fs_type(parent)?;
    if !DISK_FILESYSTEMS.contains(&fs_type) {
        return None;
    }
    let dir = parent.join(format!("hermetic-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    // Not a link, nor someone else's: anyone could have made it first.
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    (meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0).then_some(DiskBase {
        dir,
        fs_type,
        id: (meta.dev(), meta.ino()),
    })
}

/// The `statfs` magic of the filesystem `path` lies on.
fn fs_type(path: &Path) -> Option<i64> {
    // f_type is an i64 on 64-bit targets, narrower on some others.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(path).ok().map(|s| s.f_type as i64)
}

impl DiskBase {
    /// Whether the overlay whose lower layer is `root` (canonical) keeps
    /// its upper layer here: it shows one of `trees` (the test's own), its
    /// filesystem is of this base's kind, and it does not hold this base.
    pub(crate) fn serves(&self, root: &Path, trees: &[PathBuf]) -> bool {
        trees.iter().any(|t| t.starts_with(root))
            && !self.dir.starts_with(root)
            && fs_type(root) == Some(self.fs_type)
    }

    /// A fresh name for one sandbox's layers, owned by this process.
    pub(crate) fn new_layers(&'static self) -> DiskLayers {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // This process's start time, read once; by pid, since a fork (a
        // closure making a sandbox) has its parent's memory but not its
        // start time.
        static START_OF: AtomicU32 = AtomicU32::new(0);
        static START: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let start = if START_OF.load(Ordering::Acquire) == pid {
            START.load(Ordering::Relaxed)
        } else {
            let start = start_time(pid).unwrap_or(0);
            START.store(start, Ordering::Relaxed);
            START_OF.store(pid, Ordering::Release);
            start
        };
        DiskLayers {
            base: &self.dir,
            prefix: format!("{pid}.{start}.{n}"),
            armed: true,
        }
    }
}

/// The trees whose overlay keeps its upper layer on disk: the working
/// directory and the crate's own (`CARGO_MANIFEST_DIR`), canonical.
pub(crate) fn own_trees() -> Vec<PathBuf> {
    [
        std::env::current_dir().ok(),
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
    ]
    .into_iter()
    .flatten()
    .filter_map(|d| std::fs::canonicalize(d).ok())
    .collect()
}

/// One sandbox's upper layers on disk, `PREFIX.uN` and `PREFIX.wN` in the
/// base for its Nth overlay (made by its init program), removed when
/// dropped: by then every process of the sandbox is gone, and with its
/// mount namespace the overlays. Entries of the base itself, not a
/// directory per sandbox: two journaled operations fewer.
#[derive(Debug)]
pub(crate) struct DiskLayers {
    base: &'static Path,
    prefix: String,
    armed: bool,
}

impl DiskLayers {
    /// What this sandbox's entries in the base begin with.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The path of this sandbox's layer directory `name` (`u0`, `w0`...).
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.base.join(format!("{}.{name}", self.prefix))
    }

    /// This sandbox's entries in the base, with the part after the prefix.
    fn entries(&self) -> Vec<(PathBuf, String)> {
        let Ok(dir) = std::fs::read_dir(self.base) else {
            return Vec::new();
        };
        let prefix = format!("{}.", self.prefix);
        dir.filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let rest = name.strip_prefix(&prefix)?.to_owned();
                Some((e.path(), rest))
            })
            .collect()
    }

    /// The sandbox is kept: the layers go to its init process `init_pid`,
    /// whose name they take, and are left in place (a sweep removes them
    /// once it is gone).
    pub(crate) fn keep(&mut self, init_pid: i32) {
        self.armed = false;
        let Some(start) = u32::try_from(init_pid).ok().and_then(start_time) else {
            return;
        };
        for (path, rest) in self.entries() {
            let kept = self.base.join(format!("{init_pid}.{start}.kept.{rest}"));
            let _ = std::fs::rename(path, kept);
        }
    }
}

impl Drop for DiskLayers {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for (path, rest) in self.entries() {
            // The usual shapes by name, fewest calls first: an upper layer
            // left empty; a work directory as the kernel leaves it.
            let done = if rest.starts_with('u') {
                std::fs::remove_dir(&path).is_ok()
            } else {
                remove_work_dir(&path)
            };
            if !done {
                remove_tree(&path);
            }
        }
    }
}

/// Removes an overlay's work directory `w` as a volatile mount leaves it
/// (`work`, and `work/incompat/volatile/dirty`); false if it holds more.
fn remove_work_dir(w: &Path) -> bool {
    let work = w.join("work");
    let volatile = work.join("incompat/volatile");
    let _ = std::fs::remove_file(volatile.join("dirty"));
    let _ = std::fs::remove_dir(&volatile);
    let _ = std::fs::remove_dir(work.join("incompat"));
    let _ = std::fs::remove_dir(&work);
    std::fs::remove_dir(w).is_ok()
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`, in clock
/// ticks since boot): with the pid, a name no later process has.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the name, which may hold spaces and parentheses: the state is
    // field 3, the start time field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Removes the layers in `base` whose owner (named `PID.START.*`) no
/// longer runs: a test process or kept sandbox killed by `SIGKILL`.
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let mut parts = name.to_str().unwrap_or("").split('.');
        let (Some(Ok(pid)), Some(Ok(start))) = (
            parts.next().map(str::parse::<u32>),
            parts.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        if start_time(pid) != Some(start) {
            remove_tree(&entry.path());
        }
    }
}

/// Removes `path` and everything below it, making directories the caller
/// owns writable where a test made them read-only (and the overlay's work
/// directory, mode 0). What belongs to another id (a sandbox's user of a
/// mapped range) and cannot be removed is left.
pub(crate) fn remove_tree(path: &Path) {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            open_up(path, 0);
            let _ = std::fs::remove_dir_all(path);
        }
        _ => {}
    }
}

/// Gives every directory at or below `dir` mode 0700 (where it may).
fn open_up(dir: &Path, depth: usize) {
    use std::os::unix::fs::PermissionsExt;
    if depth > 64 {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            open_up(&entry.path(), depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_reads_past_a_name_with_spaces_and_parentheses() {
        // This process's name is the test binary's; the parse is what
        // matters: the same value twice, and none for a pid that no
        // process has.
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
        assert_eq!(start_time(u32::MAX), None);
    }

    #[test]
    fn a_base_is_refused_on_tmpfs_and_to_another_owner() {
        // /dev/shm is a tmpfs on any Linux: never a base.
        assert!(open_base(Path::new("/dev/shm"), crate::sys::geteuid()).is_none());
        let parent = std::env::temp_dir().join(format!("hermetic-base-{}", std::process::id()));
        std::fs::create_dir_all(&parent).unwrap();
        if fs_type(&parent).is_some_and(|t| DISK_FILESYSTEMS.contains(&t)) {
            assert!(open_base(&parent, crate::sys::geteuid()).is_some());
            // Made by this uid: not another's.
            assert!(open_base(&parent, crate::sys::geteuid() + 1).is_none());
        }
        remove_tree(&parent);
        assert!(!parent.exists());
    }

    #[test]
    fn sweep_removes_only_what_dead_owners_left() {
        let base = std::env::temp_dir().join(format!("hermetic-sweep-{}", std::process::id()));
        let me = std::process::id();
        let live = base.join(format!("{me}.{}.0", start_time(me).unwrap()));
        // A pid with another start time: its owner is gone.
        let dead = base.join(format!("{me}.1.0"));
        let other = base.join("not-ours");
        for d in [&live, &dead, &other] {
            std::fs::create_dir_all(d.join("u0/sub")).unwrap();
        }
        // A read-only directory, as a test may leave one.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dead.join("u0"), std::fs::Permissions::from_mode(0o500)).unwrap();
        sweep(&base);
        assert!(live.exists());
        assert!(!dead.exists());
        assert!(other.exists());
        remove_tree(&base);
        assert!(!base.exists());
    }
}
