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
//! costs a sandbox more (the kernel's checks of the work directory, and
//! directories made and removed), measured in `docs/how-it-works.md`.
//! Emptied directories are kept in a pool (`BASE/pool`) for the next
//! sandboxes' layers, since on a disk mounted with `discard` each removal
//! waits for the device ([`DiskBase::claim`], [`DiskLayers`]'s drop).
//!
//! Where: `/var/tmp/hermetic-UID`, made by the caller with mode 0700, in
//! which a sandbox's Kth overlay has `PREFIX.uK` (its upper layer) and
//! `PREFIX.wK` (its work directory), `PREFIX` being `PID.RANDOM.N` (the
//! test process's pid, for whoever looks). `PREFIX.lock` is `flock`ed by
//! the test process and by the sandbox's init process (which gets a copy
//! of the fd) for as long as the sandbox lives, kept or not: once that
//! has died, the next process that makes a layer on disk removes the
//! layers whose lock it can take (their owner was killed: `SIGKILL` runs
//! no drop), whatever PID namespace either is in. Used only where
//! `/var/tmp` is on ext4, XFS or btrfs, the overlay's own filesystem is of
//! the same kind, and the overlay does not hold `/var/tmp` itself (the
//! kernel refuses overlapping layers); `HERMETIC_LAYER_IN_MEMORY=1` keeps
//! every layer in memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Filesystems an upper layer may lie on, by their `statfs` magic: ext2/3/4,
/// XFS and btrfs (whose directories have sizes of their own kind).
const DISK_FILESYSTEMS: [i64; 3] = [0xEF53, 0x5846_5342, 0x9123_683E];

/// The directory that holds this caller's upper layers on disk, and the
/// filesystem it lies on.
#[derive(Debug)]
pub(crate) struct DiskBase {
    pub(crate) dir: PathBuf,
    fs_type: i64,
    /// `BASE/pool` and `BASE/trash`, if they could be made: see
    /// [`DiskBase::claim`].
    pool: Option<(PathBuf, PathBuf)>,
    /// About how many directories the pool holds (as last read, and
    /// changed since by this process).
    pooled: AtomicUsize,
}

/// The pool of emptied layer directories, in the base.
const POOL: &str = "pool";
/// Emptied upper layers, in the base, removed off the sandboxes' way (an
/// upper layer is never reused: see [`DiskLayers`]'s drop).
const TRASH: &str = "trash";
/// At most about this many directories wait in the pool (each process
/// counts what it read there last, and what it has added since).
const POOL_MAX: usize = 32;

/// The base for this process, made (and swept of what killed processes
/// left) at its first use; `None` where layers stay in memory.
///
/// Once per process ([`PerProcess`](crate::sys::PerProcess): a closure,
/// a fork of the test process, finds its own, since inside a sandbox
/// `/var/tmp` is another directory, or the caller's layers are covered).
pub(crate) fn base() -> Option<&'static DiskBase> {
    static BASE: crate::sys::PerProcess<u32, Option<&'static DiskBase>> =
        crate::sys::PerProcess::new();
    if in_memory_asked() {
        return None;
    }
    let uid = crate::sys::geteuid();
    BASE.get_or_compute(uid, || {
        let base = open_base(Path::new("/var/tmp"), uid)?;
        sweep(&base.dir);
        Some(&*Box::leak(Box::new(base)))
    })
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
    crate::sys::env_flag("HERMETIC_LAYER_IN_MEMORY")
}

/// `/var/tmp/hermetic-UID`, where this caller's layers on disk lie (if
/// anywhere).
pub(crate) fn base_dir() -> PathBuf {
    Path::new("/var/tmp").join(format!("hermetic-{}", crate::sys::geteuid()))
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
    // Covered by a mount of another kind: inside a sandbox, whose own
    // tmpfs hides the caller's layers. Nothing to say.
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir())
        && self::fs_type(&dir) != Some(fs_type)
    {
        return None;
    }
    // Not a link, nor someone else's: anyone could have made it first.
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    if !(meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0) {
        static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            eprintln!(
                "hermetic: {} is not a directory of this user's alone (a link, another user's, \
                 or open to others): copy-on-write layers stay in memory, where a directory \
                 made in the test's tree has tmpfs's size, not the host's; remove it if it is \
                 not yours",
                dir.display()
            );
        }
        return None;
    }
    // Writable here: not the host's seen read-only from inside a sandbox
    // (made after that sandbox, so not covered there).
    if rustix::fs::access(&dir, rustix::fs::Access::WRITE_OK).is_err() {
        return None;
    }
    let own_dir = |name: &str| {
        let path = dir.join(name);
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => Some(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Within the base, which is the caller's alone: the caller's.
                std::fs::symlink_metadata(&path)
                    .is_ok_and(|m| m.is_dir())
                    .then_some(path)
            }
            Err(_) => None,
        }
    };
    let (pool, trash) = (own_dir(POOL), own_dir(TRASH));
    Some(DiskBase {
        dir,
        fs_type,
        pool: pool.zip(trash),
        pooled: AtomicUsize::new(0),
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

    /// Moves an emptied directory of the pool onto each of `targets` (in
    /// the base), as far as the pool has some; says which. A directory
    /// from the pool saves making one now and removing one later: on a
    /// filesystem mounted with `discard` and no journal (ext4 here), each
    /// removal of a directory waits for the discard of its block, about
    /// 0.2 ms. Only directories no sandbox's process ever saw (work
    /// directories and what the kernel made in them; never an upper
    /// layer), empty, with nothing on them, and no longer any overlay's
    /// (their sandbox's mounts were taken down first), are put there
    /// ([`DiskLayers`]'s drop).
    pub(crate) fn claim(&self, targets: &[PathBuf]) -> Vec<bool> {
        let mut claimed = vec![false; targets.len()];
        let Some((pool, _)) = &self.pool else {
            return claimed;
        };
        let Ok(entries) = std::fs::read_dir(pool) else {
            return claimed;
        };
        let mut names: Vec<std::ffi::OsString> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        let there = names.len();
        let mut taken = 0;
        for (target, claimed) in targets.iter().zip(&mut claimed) {
            // Another process may take a name first: the next one, then.
            while let Some(name) = names.pop() {
                if rustix::fs::rename(pool.join(&name), target).is_ok() {
                    *claimed = true;
                    taken += 1;
                    break;
                }
            }
        }
        self.pooled
            .store(there.saturating_sub(taken), Ordering::Relaxed);
        claimed
    }

    /// Removes directories of the pool beyond `keep`: each sandbox
    /// brings back more than it takes (its overlays' `work` and marks,
    /// which the kernel makes anew at each mount), and the excess is
    /// removed on the reclaim thread while the next sandbox sets up
    /// ([`trim_pool`]).
    fn trim(&self, keep: usize) {
        let Some((pool, trash)) = &self.pool else {
            return;
        };
        // The emptied upper layers first: all of them.
        if let Ok(entries) = std::fs::read_dir(trash) {
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                if std::fs::remove_dir(&path).is_err() {
                    remove_tree(&path);
                }
            }
        }
        let Ok(entries) = std::fs::read_dir(pool) else {
            return;
        };
        let names: Vec<std::ffi::OsString> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        let mut left = names.len();
        for name in names {
            if left <= keep {
                break;
            }
            let path = pool.join(&name);
            // Another process may have taken it meanwhile.
            match std::fs::remove_dir(&path) {
                Ok(()) => left -= 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => left -= 1,
                Err(_) => {
                    remove_tree(&path);
                    left -= 1;
                }
            }
        }
        self.pooled.store(left, Ordering::Relaxed);
    }

    /// Moves the upper layer `dir`, empty, to the trash (named `name`
    /// there), which the reclaim thread empties ([`trim_pool`]); false if
    /// it cannot (then it is removed as before).
    fn discard(&self, dir: &Path, name: &str) -> bool {
        let Some((_, trash)) = &self.pool else {
            return false;
        };
        rustix::fs::rename(dir, trash.join(name)).is_ok()
    }

    /// Puts the empty directory `dir` of the base in the pool, named
    /// `name` there (unique: a sandbox's prefix and what it was), or
    /// removes it if the pool is full (or cannot be had).
    fn give_back(&self, dir: &Path, name: &str) {
        use std::os::unix::fs::PermissionsExt;
        let room = self.pooled.load(Ordering::Relaxed) < POOL_MAX;
        if let (Some((pool, _)), true) = (&self.pool, room) {
            // A plain mode, whatever it had (an overlay's marks are made
            // with mode 0), so that anyone taking it can use it as it is.
            let plain = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
            if plain.is_ok() && rustix::fs::rename(dir, pool.join(name)).is_ok() {
                self.pooled.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        if std::fs::remove_dir(dir).is_err() {
            remove_tree(dir);
        }
    }

    /// A fresh name for one sandbox's layers, and its lock, held: by
    /// this process, and by the sandbox's init process once it has its
    /// copy (see [`DiskLayers`]). `None` if the lock cannot be made (then
    /// the layers stay in memory).
    pub(crate) fn new_layers(&'static self) -> Option<DiskLayers> {
        use std::hash::{BuildHasher, Hasher};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // The pid for whoever looks; a random part, since pids repeat in
        // other PID namespaces that share /var/tmp.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let prefix = format!("{}.{random:016x}.{n}", std::process::id());
        let lock = self.made_locked(&format!("{prefix}.lock")).ok()?;
        Some(DiskLayers {
            home: self,
            prefix,
            lock,
            armed: true,
            owner: std::process::id(),
        })
    }

    /// The file `name` in the base, made and locked (`flock`) before it
    /// appears there: an unnamed file (`O_TMPFILE`), locked, then linked
    /// in, so that no sweep ever finds it unlocked while its owner lives.
    fn made_locked(&self, name: &str) -> std::io::Result<crate::sys::fd::Fd> {
        use rustix::fs::{AtFlags, CWD, FlockOperation, Mode, OFlags, flock, linkat, open};
        let file = crate::sys::fd::Fd::open(|| {
            open(
                &self.dir,
                OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(std::io::Error::from)
        })?;
        flock(&file, FlockOperation::LockExclusive)?;
        let named = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
        linkat(
            CWD,
            named.as_str(),
            CWD,
            self.dir.join(name),
            AtFlags::SYMLINK_FOLLOW,
        )?;
        Ok(file)
    }
}

/// Removes what the pool of this process's base holds beyond room for
/// what a sandbox or two bring back (five directories an overlay on
/// disk): called on the reclaim thread.
pub(crate) fn trim_pool() {
    if let Some(base) = base() {
        base.trim(POOL_MAX - 10);
    }
}

/// The test's own trees, as they are named: the working directory and the
/// crate's own (`CARGO_MANIFEST_DIR`).
pub(crate) fn own_tree_dirs() -> impl Iterator<Item = PathBuf> {
    [
        std::env::current_dir().ok(),
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
    ]
    .into_iter()
    .flatten()
}

/// The trees whose overlay keeps its upper layer on disk: the test's own
/// ([`own_tree_dirs`]), canonical.
pub(crate) fn own_trees() -> Vec<PathBuf> {
    own_tree_dirs()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect()
}

/// One sandbox's upper layers on disk, `PREFIX.uN` and `PREFIX.wN` in the
/// base for its Nth overlay (made by its init program), removed when
/// dropped: by then every process of the sandbox is gone, and with its
/// mount namespace the overlays. Entries of the base itself, not a
/// directory per sandbox: two operations on disk fewer.
#[derive(Debug)]
pub(crate) struct DiskLayers {
    home: &'static DiskBase,
    prefix: String,
    /// `PREFIX.lock`, locked: while it is, the layers are in use. The init
    /// process holds a copy ([`wire::LAYER_LOCK_FD`]), so the lock lasts
    /// as long as the sandbox, kept or not, whatever becomes of this
    /// process; a sweep, in any process and any PID namespace, removes
    /// only layers whose lock it can take.
    ///
    /// [`wire::LAYER_LOCK_FD`]: crate::proto::wire::LAYER_LOCK_FD
    lock: crate::sys::fd::Fd,
    armed: bool,
    /// The process that made it: a copy (moved into a run's closure) does
    /// not remove the layers.
    owner: u32,
}

impl DiskLayers {
    /// What this sandbox's entries in the base begin with.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The path of this sandbox's layer directory `name` (`u0`, `w0`...).
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.home.dir.join(format!("{}.{name}", self.prefix))
    }

    /// This sandbox's entries in the base, with the part after the prefix.
    fn entries(&self) -> Vec<(PathBuf, String)> {
        let Ok(dir) = std::fs::read_dir(&self.home.dir) else {
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

    /// The lock's fd, for the init process's copy.
    pub(crate) fn lock_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.lock)
    }

    /// Removes the mark each overlay's mount left in its work directory
    /// (see [`remove_marker`]), while the sandbox lives: for a sandbox
    /// whose caller then only waits for a program (`hermetic run`,
    /// `isolate_test`), a unlink and two `rmdir`s done while the program
    /// runs instead of after it (on a filesystem mounted with `discard`
    /// and no journal, each freed directory block is a discard the call
    /// waits for).
    pub(crate) fn shed_markers(&self) {
        for (path, rest) in self.entries() {
            if rest.starts_with('w') {
                let name = format!("{}.{rest}", self.prefix);
                shed_marker(Some((self.home, &name)), &path);
            }
        }
    }

    /// Which of this sandbox's layer directories (`u0`, `w0`... in the
    /// base) came from the pool ([`DiskBase::claim`]), for `names`.
    pub(crate) fn claim(&self, names: &[&str]) -> Vec<bool> {
        let targets: Vec<PathBuf> = names.iter().map(|n| self.path(n)).collect();
        self.home.claim(&targets)
    }

    /// The sandbox is kept: its layers stay, locked by its init process
    /// until it is gone (then a sweep removes them).
    pub(crate) fn keep(&mut self) {
        self.armed = false;
    }
}

impl DiskLayers {
    /// Removes its layers now: emptied directories to the pool, the rest
    /// removed. Returns what could not be removed (rootless with id
    /// ranges: what a sandbox gave to another id of its range and closed
    /// to others); while anything is left, so is the lock file, and
    /// another call removes what is left then, and the lock file. The
    /// sandbox's mounts must be gone (see `Sandbox`'s teardown): a
    /// directory still an overlay's layer, taken from the pool by another
    /// sandbox, would be two overlays' at once.
    pub(crate) fn remove(&mut self) -> Vec<PathBuf> {
        self.armed = false;
        let mut lock = None;
        let mut left = Vec::new();
        for (path, rest) in self.entries() {
            if rest == "lock" {
                lock = Some(path);
                continue;
            }
            let name = format!("{}.{rest}", self.prefix);
            let done = match rest.chars().next() {
                // Never reused: the sandbox saw it as its overlay's root,
                // and may have left on it what is not an entry (an
                // attribute, inode flags, a capability) for a later
                // sandbox to see. Empty, it goes to the trash, out of the
                // way; with what the sandbox wrote, it is removed now.
                Some('u') if holds_nothing(&path) => self.home.discard(&path, &name),
                Some('w') => {
                    // As a volatile mount leaves it: `work`, emptied, and
                    // its marks unless shed already.
                    let work = path.join("work");
                    let _ = shed_marker(Some((self.home, &format!("{name}.m"))), &path);
                    if is_empty_layer(&work) {
                        self.home.give_back(&work, &format!("{name}.work"));
                    }
                    if is_empty_layer(&path) {
                        self.home.give_back(&path, &name);
                        true
                    } else {
                        false
                    }
                }
                _ => false,
            };
            if !done {
                remove_layers(vec![(path.clone(), rest)]);
                if std::fs::symlink_metadata(&path).is_ok() {
                    left.push(path);
                }
            }
        }
        if let (true, Some(lock)) = (left.is_empty(), lock) {
            let _ = std::fs::remove_file(lock);
        }
        left
    }
}

impl Drop for DiskLayers {
    /// Its layers go (see [`DiskLayers::remove`]), unless the sandbox is
    /// kept or they went already.
    fn drop(&mut self) {
        if self.armed && self.owner == std::process::id() {
            self.remove();
        }
    }
}

/// Whether `dir` is a directory (not a link) that holds nothing.
fn holds_nothing(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
        && std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
}

/// Whether `dir` is a directory (not a link) that holds nothing and
/// carries no extended attribute but the overlay's own marks
/// (`*.overlay.*`), which are taken off: as good as a new one for a
/// layer. Only directories no process of a sandbox ever saw are asked
/// (work directories, the kernel's `work` and marks in them); one with
/// anything else on it (a security module's label included) is not
/// reused.
fn is_empty_layer(dir: &Path) -> bool {
    use rustix::fs::{Mode, OFlags};
    let Ok(fd) = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let mut names = [0u8; 1024];
    // More names than fit: not a plain directory.
    let Ok(n) = rustix::fs::flistxattr(&fd, &mut names) else {
        return false;
    };
    let names = || {
        names[..n]
            .split(|&b| b == 0)
            .filter(|name| !name.is_empty())
    };
    let overlay_s = |name: &[u8]| name.windows(9).any(|w| w == b".overlay.");
    if names().any(|name| !overlay_s(name)) {
        return false;
    }
    for name in names().filter(|name| overlay_s(name)) {
        if rustix::fs::fremovexattr(&fd, name).is_err() {
            return false;
        }
    }
    let Ok(entries) = rustix::fs::Dir::read_from(&fd) else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .all(|e| e.file_name() == c"." || e.file_name() == c"..")
}

/// Sheds the mark a volatile overlay leaves in its work directory `w`
/// (`work/incompat/volatile/dirty`): the file goes, and its two
/// directories go to the pool of `to` (named there `NAME.v`, `NAME.i`),
/// or are removed (no pool, or a full one). The kernel makes those
/// directories with mode 0: without a capability over them (rootless) the
/// caller opens them up first. True once the mark is gone.
fn shed_marker(to: Option<(&DiskBase, &str)>, w: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let work = w.join("work");
    let incompat = work.join("incompat");
    let volatile = incompat.join("volatile");
    let file = volatile.join("dirty");
    let mut unlinked = gone(std::fs::remove_file(&file));
    if !unlinked {
        for dir in [&work, &incompat, &volatile] {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        unlinked = gone(std::fs::remove_file(&file));
    }
    if !unlinked {
        return false;
    }
    for (dir, suffix) in [(&volatile, "v"), (&incompat, "i")] {
        if dir.exists() {
            match to {
                Some((home, name)) => home.give_back(dir, &format!("{name}.{suffix}")),
                None => {
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
    }
    !incompat.exists()
}

/// Whether a removal left nothing there: done, or nothing to remove.
fn gone(removed: std::io::Result<()>) -> bool {
    match removed {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Removes one sandbox's `entries` (path, and what follows its prefix),
/// its lock last.
fn remove_layers(mut entries: Vec<(PathBuf, String)>) {
    entries.sort_by_key(|(_, rest)| rest == "lock");
    for (path, rest) in entries {
        // The usual shapes by name, fewest calls first: an upper layer
        // left empty; a work directory as the kernel leaves it.
        let done = match rest.chars().next() {
            Some('u') => std::fs::remove_dir(&path).is_ok(),
            Some('w') => remove_work_dir(&path),
            _ => std::fs::remove_file(&path).is_ok(),
        };
        if !done {
            remove_tree(&path);
        }
    }
}

/// Removes an overlay's work directory `w` as a volatile mount leaves it
/// (`work`, and in it the marker, unless
/// [`shed_markers`](DiskLayers::shed_markers) took it already); false if
/// it holds more.
fn remove_work_dir(w: &Path) -> bool {
    let work = w.join("work");
    // Empty once the marker is shed: one call; else the marker first.
    let emptied =
        gone(std::fs::remove_dir(&work)) || (remove_marker(w) && gone(std::fs::remove_dir(&work)));
    emptied && std::fs::remove_dir(w).is_ok()
}

/// Removes the mark a volatile overlay leaves in its work directory `w` as
/// it is mounted (`work/incompat/volatile/dirty`, refusing a later mount
/// of the same directories after a crash, which layers that go with their
/// sandbox never see): [`shed_marker`] with no pool. True once the mark
/// is gone.
fn remove_marker(w: &Path) -> bool {
    shed_marker(None, w)
}

/// Removes the layers in `base` that no live sandbox uses: those whose
/// lock (`PREFIX.lock`) it can take, left by a test process or kept
/// sandbox killed by `SIGKILL`, and those with no lock at all (whose owner
/// died while removing them). A lock held by any process, in any PID
/// namespace, keeps its layers.
fn sweep(base: &Path) {
    use rustix::fs::{FlockOperation, flock};
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let mut by_owner: std::collections::BTreeMap<String, Vec<(PathBuf, String)>> =
        std::collections::BTreeMap::new();
    for entry in entries.filter_map(Result::ok) {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // PID.RANDOM.N.WHAT
        let mut parts = name.splitn(4, '.');
        let (Some(pid), Some(random), Some(n), Some(what)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        by_owner
            .entry(format!("{pid}.{random}.{n}"))
            .or_default()
            .push((entry.path(), what.to_owned()));
    }
    for (prefix, entries) in by_owner {
        let lock = base.join(format!("{prefix}.lock"));
        let held = match std::fs::File::open(&lock) {
            // Taken: no one holds it. Kept until the layers are gone.
            Ok(file) => match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => Some(file),
                Err(_) => continue,
            },
            Err(_) => None,
        };
        remove_layers(entries);
        drop(held);
    }
}

/// Removes `path` and everything below it, however deep: a walk with a
/// list of its own, not a recursion (a closure may make its layer deeper
/// than any thread's stack holds: std's `remove_dir_all` recurses once a
/// level), and with one directory open at a time, going back up by `..`
/// (not one fd a level: a layer deeper than the process's fd limit would
/// stay). Directories the caller owns are made writable (0700) where a
/// test made them read-only, and so is the overlay's work directory (mode
/// 0). What cannot be removed (rootless with id ranges, what a sandbox
/// gave to another id of its range) is left, and the directories above it.
pub(crate) fn remove_tree(path: &Path) {
    use rustix::fs::{AtFlags, Mode, OFlags};
    use std::os::fd::AsFd;
    let open_dir = |at: std::os::fd::BorrowedFd<'_>, name: &std::ffi::CStr| {
        rustix::fs::openat(
            at,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let open_top = || {
        rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let top = open_top().or_else(|e| {
        if e != rustix::io::Errno::ACCESS {
            return Err(e);
        }
        rustix::fs::chmod(path, Mode::RWXU)?;
        open_top()
    });
    let Ok(top) = top else {
        // Not a directory (or gone, or closed to the caller: it is left).
        let _ = std::fs::remove_file(path);
        return;
    };
    // The directories from `path` down to the one open: each one's name in
    // its parent, and the subdirectories of it still to empty.
    let mut names: Vec<std::ffi::CString> = Vec::new();
    let mut pending: Vec<Vec<std::ffi::CString>> = vec![subdirectories_emptied(top.as_fd())];
    let mut here = top;
    loop {
        let next = pending.last_mut().and_then(Vec::pop);
        match next {
            Some(name) => {
                let child = open_dir(here.as_fd(), &name).or_else(|_| {
                    // Mode 0 (the overlay's work directory) or made
                    // read-only: the caller's own, opened up.
                    rustix::fs::chmodat(here.as_fd(), &name, Mode::RWXU, AtFlags::empty())?;
                    open_dir(here.as_fd(), &name)
                });
                // What cannot be opened is left.
                if let Ok(child) = child {
                    pending.push(subdirectories_emptied(child.as_fd()));
                    names.push(name);
                    here = child;
                }
            }
            None => {
                // Everything below `here` that could go has gone: up.
                pending.pop();
                let Some(name) = names.pop() else { break };
                let Ok(parent) = open_dir(here.as_fd(), c"..") else {
                    return;
                };
                let _ = rustix::fs::unlinkat(parent.as_fd(), &name, AtFlags::REMOVEDIR);
                here = parent;
            }
        }
    }
    drop(here);
    let _ = std::fs::remove_dir(path);
}

/// Removes what the directory `dir` holds but its subdirectories (files,
/// links, empty directories), making it writable first if it needs to be;
/// returns the subdirectories left, which hold something.
fn subdirectories_emptied(dir: std::os::fd::BorrowedFd<'_>) -> Vec<std::ffi::CString> {
    use rustix::fs::{AtFlags, FileType, Mode};
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else {
        return Vec::new();
    };
    let mut left = Vec::new();
    let mut opened_up = false;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            FileType::Unknown => rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory),
            kind => kind == FileType::Directory,
        };
        let flags = if is_dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        let mut removed = rustix::fs::unlinkat(dir, name, flags);
        if removed == Err(rustix::io::Errno::ACCESS) && !opened_up {
            // A directory a test made read-only: the caller's own.
            opened_up = true;
            let _ = rustix::fs::fchmod(dir, Mode::RWXU);
            removed = rustix::fs::unlinkat(dir, name, flags);
        }
        if removed.is_err() && is_dir {
            left.push(name.to_owned());
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_tree_deeper_than_a_small_stack_and_the_longest_path_goes_whole() {
        use std::os::fd::AsFd;
        let top = std::env::temp_dir().join(format!("hermetic-deep-{}", std::process::id()));
        std::fs::create_dir(&top).unwrap();
        // 3000 levels: a path of 6000 bytes, over PATH_MAX; made by fds,
        // one level at a time. Read-only and mode-0 ones among them, and
        // a file and a link in each.
        let mut dir = rustix::fs::open(
            &top,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        for level in 0..3000u32 {
            let f = rustix::fs::openat(
                dir.as_fd(),
                c"f",
                rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY,
                rustix::fs::Mode::RUSR,
            )
            .unwrap();
            drop(f);
            rustix::fs::symlinkat(c"/", dir.as_fd(), c"l").unwrap();
            rustix::fs::mkdirat(dir.as_fd(), c"d", rustix::fs::Mode::RWXU).unwrap();
            let next = rustix::fs::openat(
                dir.as_fd(),
                c"d",
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            match level % 1000 {
                500 => {
                    rustix::fs::fchmod(dir.as_fd(), rustix::fs::Mode::RUSR | rustix::fs::Mode::XUSR)
                        .unwrap()
                }
                999 => rustix::fs::fchmod(dir.as_fd(), rustix::fs::Mode::empty()).unwrap(),
                _ => {}
            }
            dir = next;
        }
        drop(dir);
        // On a stack far smaller than a recursion of 3000 levels needs.
        let removing = top.clone();
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || remove_tree(&removing))
            .unwrap()
            .join()
            .unwrap();
        assert!(!top.exists(), "{} is left", top.display());
    }

    #[test]
    fn sweep_removes_only_layers_whose_lock_it_can_take() {
        let parent = std::env::temp_dir().join(format!("hermetic-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&parent).unwrap();
        let Some(base) = open_base(&parent, crate::sys::geteuid()) else {
            remove_tree(&parent);
            return;
        };
        let base: &'static DiskBase = Box::leak(Box::new(base));
        let live = base.new_layers().expect("a lock");
        let dead = base.new_layers().expect("a lock");
        for layers in [&live, &dead] {
            std::fs::create_dir_all(layers.path("u0").join("sub")).unwrap();
            std::fs::create_dir_all(layers.path("w0").join("work")).unwrap();
        }
        // A read-only directory, as a test may leave one.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dead.path("u0"), std::fs::Permissions::from_mode(0o500)).unwrap();
        // Layers with no lock at all: their owner died removing them.
        let orphan = base.dir.join("1.0.0.u0");
        std::fs::create_dir_all(orphan.join("sub")).unwrap();
        let other = base.dir.join("not-ours");
        std::fs::create_dir_all(&other).unwrap();
        // Its owner killed: the lock is let go, the files stay.
        let (dead_u0, dead_lock) = (dead.path("u0"), dead.path("lock"));
        let mut dead = dead;
        dead.keep();
        drop(dead);
        assert!(dead_u0.exists() && dead_lock.exists());
        sweep(&base.dir);
        assert!(live.path("u0").exists() && live.path("lock").exists());
        assert!(!dead_u0.exists() && !dead_lock.exists());
        assert!(!orphan.exists());
        assert!(other.exists());
        // Its drop removes the rest, lock last.
        let (live_u0, live_lock) = (live.path("u0"), live.path("lock"));
        drop(live);
        assert!(!live_u0.exists() && !live_lock.exists());
        remove_tree(&parent);
        assert!(!parent.exists());
    }
}
