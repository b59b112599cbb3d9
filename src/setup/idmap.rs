//! Many ids inside: where the host allows it, ids 0-65535 are mapped in a
//! sandbox, so that `setuid(n)`, `chown`, `su` and `CommandExt::uid` behave
//! as on a normal system.
//!
//! Only root inside is a host id (the caller's own); ids 1-65535 are the
//! caller's subordinate range, so that root inside, which holds every
//! capability over the ids its namespace maps, gains no power over the
//! host's other users' files. One exception, as root: the owner (uid and
//! gid) of the test's own tree (the working directory and
//! `CARGO_MANIFEST_DIR`) is itself inside, whatever its uid (one above
//! 65535 too, beyond the range), so that root tests a checkout of another
//! user's (a CI user's, in a container job) as it would outside: it writes
//! there and reads what that user reads. A tree of root's own adds no id,
//! not even its group.
//!
//! A user namespace's maps with more than the writer's own id must be
//! written from the parent namespace: as root, directly; otherwise by the
//! setuid helpers `newuidmap` and `newgidmap` (Debian's `uidmap`), within
//! the ranges `/etc/subuid` and `/etc/subgid` give the user. The init
//! program's launch waits for them before its exec (see `child::launch`): the
//! thread that launched it writes them.
//!
//! Elsewhere the sandbox maps the caller's one uid and gid to 0 inside.

use std::path::{Path, PathBuf};

/// How many ids a sandbox has inside, when ranges are mapped.
pub(crate) const RANGE: u32 = 65536;

/// Where a root caller's ids 1-65535 go outside when root has no
/// subordinate range: far above any user's (as systemd-nspawn's ranges).
const FAR_AWAY: u64 = 1_879_048_192;

/// How the outer user namespace of a sandbox is mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mapping {
    /// The caller's uid and gid as 0, written by the launched child itself.
    Single,
    /// 0-65535 inside; written by this process as root, or by the helpers.
    Ranges {
        uid_map: String,
        gid_map: String,
        /// `newuidmap` and `newgidmap`, when not root.
        helpers: Option<(PathBuf, PathBuf)>,
    },
}

/// The first range `file` (`/etc/subuid` or `/etc/subgid`) gives the user
/// `name()` names (asked only if the file names anyone: the user database
/// is most of what this costs) or `id`: (start, count).
fn subordinate<'a>(file: &str, name: impl Fn() -> Option<&'a str>, id: u32) -> Option<(u64, u64)> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .filter_map(|l| {
            let mut parts = l.trim().split(':');
            let who = parts.next()?;
            let start = parts.next()?.parse().ok()?;
            let count = parts.next()?.parse().ok()?;
            Some((who.to_owned(), start, count))
        })
        .find(|(who, _, count)| {
            *count > 0
                && (*who == id.to_string()
                    || (who.parse::<u32>().is_err() && Some(who.as_str()) == name()))
        })
        .map(|(_, start, count)| (start, count))
}

/// Whether `map` (this process's `uid_map` or `gid_map`) is the initial
/// user namespace's: every id.
fn initial(map: &str) -> bool {
    map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]
}

/// Root of a user namespace (a sandbox inside a sandbox) whose `map`
/// (its own `uid_map` or `gid_map`) maps ids 0 to 65535: the map of a
/// namespace inside it with those ids as themselves, in the same pieces
/// (the kernel maps each piece into one piece of the parent's map); `None`
/// if some id of 0-65535 is not mapped. Pieces above 65535 (the owners
/// of the test's tree there, see [`root_map`]) are handed on as well.
fn own_pieces(map: &str) -> Option<String> {
    let range = u64::from(RANGE);
    let mut pieces: Vec<(u64, u64)> = map
        .lines()
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() == 3).then(|| (f[0], f[2]))
        })
        .collect();
    pieces.sort_unstable();
    let mut text = String::new();
    let mut next = 0;
    for (start, count) in pieces {
        if start >= range && next == range {
            text.push_str(&format!("{start} {start} {count}\n"));
            continue;
        }
        if start != next {
            return None;
        }
        let count = count.min(range - start);
        text.push_str(&format!("{start} {start} {count}\n"));
        next = start + count;
    }
    (next == range).then_some(text)
}

/// A helper program, from PATH or the usual places.
fn helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The mapping this host allows the caller (`HERMETIC_ONE_ID=1`: one id,
/// even where ranges are allowed). Read once per process (and again should
/// its effective ids or that variable change): the user database and four
/// files are about a tenth of a millisecond of every sandbox's start.
pub(crate) fn detect() -> Mapping {
    static DETECTED: crate::sys::PerProcess<(u32, u32, bool, Owners), Mapping> =
        crate::sys::PerProcess::new();
    let one_id = crate::sys::env_flag("HERMETIC_ONE_ID");
    let (uid, gid) = (crate::sys::geteuid(), crate::sys::getegid());
    // Only root maps host ids besides its own.
    let owners = if uid == 0 && !one_id {
        tree_owners()
    } else {
        Owners::default()
    };
    DETECTED.get_or_compute((uid, gid, one_id, owners.clone()), || {
        if one_id {
            Mapping::Single
        } else {
            detect_now(uid, gid, &owners)
        }
    })
}

/// Whether this process, not dumpable (a closure, making a sandbox inside
/// its own), may write the maps of the sandbox's launched child, as any
/// caller does: until it execs, that child's /proc files belong, as this
/// process's own do, to root of the user namespace the test process was
/// started in (the kernel's `task_dump_owner`), which this process is only
/// as root.
pub(crate) fn writes_a_closures_maps() -> bool {
    use std::os::unix::fs::MetadataExt;
    crate::sys::geteuid() == 0
        && std::fs::metadata("/proc/self/uid_map").is_ok_and(|m| m.uid() == 0)
}

/// The host users, other than root, that own the test's own tree (the
/// working directory and `CARGO_MANIFEST_DIR`), with the groups of their
/// trees: uids, then gids, each sorted, without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Owners {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

/// The owners of the test's own tree, read now (a `stat` of each). A tree
/// of root's adds nothing, not even its group: root inside needs no other
/// id there, and a shared group's (`root:mail`, `root:staff`) would open
/// the files of every user in it.
fn tree_owners() -> Owners {
    use std::os::unix::fs::MetadataExt;
    let mut owners = Owners::default();
    for meta in crate::setup::disk::own_tree_dirs()
        .filter_map(|d| d.metadata().ok())
        .filter(|m| m.uid() != 0)
    {
        owners.uids.push(meta.uid());
        owners.gids.push(meta.gid());
    }
    for ids in [&mut owners.uids, &mut owners.gids] {
        // -1 is no id (chown's "unchanged").
        ids.retain(|&id| id != 0 && id != u32::MAX);
        ids.sort_unstable();
        ids.dedup();
    }
    owners
}

/// Root's map of ids 0-65535: 0 is 0, the ids in `keep` (sorted) are
/// themselves, and every other id `n` is `base + n - 1`; an id of `keep`
/// above 65535 is itself too, beyond them. An id of `keep` that falls in
/// the range outside (a `base` below 65536) is not kept: the kernel
/// refuses two ids inside for one outside.
fn root_map(base: u64, keep: &[u32]) -> String {
    use std::fmt::Write;
    let range = u64::from(RANGE);
    let mut map = String::from("0 0 1\n");
    let mut above = String::new();
    let mut next = 1u64;
    for id in keep.iter().map(|&id| u64::from(id)) {
        if (base..base + range - 1).contains(&id) {
            continue;
        }
        if id >= range {
            let _ = writeln!(above, "{id} {id} 1");
            continue;
        }
        if id < next {
            continue;
        }
        if id > next {
            let _ = writeln!(map, "{next} {} {}", base + next - 1, id - next);
        }
        let _ = writeln!(map, "{id} {id} 1");
        next = id + 1;
    }
    if next < range {
        let _ = writeln!(map, "{next} {} {}", base + next - 1, range - next);
    }
    map + &above
}

/// The map of a user namespace made in one whose map is `parent` (its
/// lines, or `newuidmap`'s arguments: triples either way): every id of
/// the parent, as itself, in the parent's pieces (the kernel maps each
/// piece of a map into one piece of the parent's).
pub(crate) fn same_pieces(parent: &str) -> String {
    let numbers: Vec<&str> = parent.split_whitespace().collect();
    numbers
        .chunks_exact(3)
        .map(|piece| format!("{0} {0} {1}\n", piece[0], piece[2]))
        .collect()
}

/// What [`detect`] finds, read now.
fn detect_now(uid: u32, gid: u32, owners: &Owners) -> Mapping {
    let user = std::cell::OnceCell::new();
    let name = || user.get_or_init(|| crate::sys::user_name(uid)).as_deref();
    if uid == 0 {
        // Root inside is root outside, as with one id; the other ids are
        // not the host's users' (whose files root inside could otherwise
        // open, with its capabilities over every mapped id), but root's
        // subordinate range, or one far above any user's, except the
        // owners of the test's own tree (see the module's docs). Root of a
        // user namespace (a sandbox inside a sandbox) hands on its own ids,
        // in its own map's pieces: the kernel maps each piece of a map into
        // one piece of the parent's (EPERM otherwise).
        let map = |own: &str, file: &str, keep: &[u32]| {
            if initial(own) {
                let base = subordinate(file, name, 0)
                    .filter(|&(_, count)| count >= u64::from(RANGE - 1))
                    .map_or(FAR_AWAY, |(start, _)| start);
                Some(root_map(base, keep))
            } else {
                own_pieces(own)
            }
        };
        let own = |file: &str| std::fs::read_to_string(file).unwrap_or_default();
        let (uids, gids) = (own("/proc/self/uid_map"), own("/proc/self/gid_map"));
        if let (Some(uid_map), Some(gid_map)) = (
            map(&uids, "/etc/subuid", &owners.uids),
            map(&gids, "/etc/subgid", &owners.gids),
        ) {
            return Mapping::Ranges {
                uid_map,
                gid_map,
                helpers: None,
            };
        }
        return Mapping::Single;
    }
    let ranges = (
        subordinate("/etc/subuid", name, uid),
        subordinate("/etc/subgid", name, uid),
        helper("newuidmap"),
        helper("newgidmap"),
    );
    match ranges {
        (Some((ustart, ucount)), Some((gstart, gcount)), Some(newuidmap), Some(newgidmap)) => {
            let more = |count: u64| count.min(u64::from(RANGE) - 1);
            Mapping::Ranges {
                uid_map: format!("0 {uid} 1 1 {ustart} {}", more(ucount)),
                gid_map: format!("0 {gid} 1 1 {gstart} {}", more(gcount)),
                helpers: Some((newuidmap, newgidmap)),
            }
        }
        _ => Mapping::Single,
    }
}

/// What [`check`](crate::check) says of the ids inside.
pub(crate) fn describe() -> String {
    match detect() {
        Mapping::Ranges {
            helpers: None,
            uid_map,
            ..
        } => {
            // Ids other than root's that are themselves outside: the
            // owners of the test's tree (or, nested, every id).
            let own: Vec<String> = uid_map
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() == 3 && f[0] == f[1] && f[0] != "0" && f[2] == "1")
                        .then(|| f[0].to_owned())
                })
                .collect();
            let owners = if own.is_empty() {
                String::new()
            } else {
                format!(
                    "; uid {} owns the test's tree and is itself inside, as outside",
                    own.join(", ")
                )
            };
            format!(
                "ids 0-{} inside, written by this process as root (uid map: {}){owners}",
                RANGE - 1,
                uid_map.trim().replace('\n', ", ")
            )
        }
        Mapping::Ranges { uid_map, .. } => format!(
            "ids 0-{} inside, through newuidmap/newgidmap (uid map: {uid_map})",
            RANGE - 1
        ),
        Mapping::Single => "one id inside (your own, as 0): setuid to another id fails; for \
                            ids 0-65535, install newuidmap/newgidmap (Debian: uidmap) and give \
                            your user ranges in /etc/subuid and /etc/subgid (usermod \
                            --add-subuids 100000-165535 --add-subgids 100000-165535 USER)"
            .to_owned(),
    }
}

impl Mapping {
    /// Writes the maps of process `pid`'s user namespace (from this one,
    /// its parent); `Err` says what failed.
    pub(crate) fn write(&self, pid: libc::pid_t) -> Result<(), String> {
        let Mapping::Ranges {
            uid_map,
            gid_map,
            helpers,
        } = self
        else {
            return Ok(());
        };
        match helpers {
            None => {
                for (file, map) in [("uid_map", uid_map), ("gid_map", gid_map)] {
                    let path = format!("/proc/{pid}/{file}");
                    std::fs::write(&path, map).map_err(|e| {
                        let why = if e.raw_os_error() == Some(libc::EROFS) {
                            "; /proc is read-only here, as in a sandbox made by root inside \
                             another sandbox (its proc comes from the read-only one hidden in \
                             the outer sandbox, so that nothing in there can ever write the \
                             host's sysctls): no id can be mapped from here, so sandboxes whose \
                             ids span a range nest two levels deep as root, three rootless \
                             with /etc/subuid ranges (more with one id: HERMETIC_ONE_ID=1)"
                        } else {
                            ""
                        };
                        format!("writing {map:?} to {path}: {e}{why}")
                    })?;
                }
                Ok(())
            }
            Some((newuidmap, newgidmap)) => {
                // Both at once: each is a setuid program's start (a few
                // milliseconds), and the two maps are independent.
                let uids = start(newuidmap, pid, uid_map);
                let gids = start(newgidmap, pid, gid_map);
                let uids = uids.and_then(Started::wait);
                let gids = gids.and_then(Started::wait);
                uids.and(gids)
            }
        }
    }
}

/// Whether the map `helper` writes for `pid` is there.
fn written(pid: libc::pid_t, helper: &Path) -> bool {
    let file = if helper.ends_with("newgidmap") {
        "gid_map"
    } else {
        "uid_map"
    };
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).is_ok_and(|m| !m.trim().is_empty())
}

/// `helper PID MAP...`, started; waited for (by [`Started::wait`])
/// whatever the test process's SIGCHLD disposition (no exit signal: never
/// reaped by the kernel first).
fn start(helper: &Path, pid: libc::pid_t, map: &str) -> Result<Started, String> {
    use std::os::unix::ffi::OsStrExt;
    let words: Vec<std::ffi::CString> = std::iter::once(helper.as_os_str().as_bytes().to_vec())
        .chain(std::iter::once(pid.to_string().into_bytes()))
        .chain(map.split_whitespace().map(|w| w.as_bytes().to_vec()))
        .map(|w| std::ffi::CString::new(w).expect("no NUL in a path or a number"))
        .collect();
    let shown = format!(
        "{} {pid} {}",
        helper.display(),
        map.trim().replace('\n', " ")
    );
    match crate::sys::spawn(&words) {
        Ok(spawned) => Ok(Started {
            spawned,
            shown,
            helper: helper.to_path_buf(),
            pid,
        }),
        Err(errno) => Err(format!(
            "{shown}: {}",
            std::io::Error::from_raw_os_error(errno)
        )),
    }
}

/// A map helper, started.
struct Started {
    spawned: crate::sys::Spawned,
    /// Its command line, for errors.
    shown: String,
    helper: PathBuf,
    /// The process whose map it writes.
    pid: libc::pid_t,
}

impl Started {
    /// Waits for the helper; `Err` says how it failed.
    fn wait(self) -> Result<(), String> {
        let shown = &self.shown;
        match self.spawned.wait() {
            Ok(crate::sys::Exit::Code(0)) => Ok(()),
            // Ended, how unknown (the test process ignores SIGCHLD): the
            // map itself tells.
            Ok(crate::sys::Exit::Unknown) if written(self.pid, &self.helper) => Ok(()),
            Ok(crate::sys::Exit::Code(code)) => Err(format!("{shown}: exited with status {code}")),
            Ok(crate::sys::Exit::Signal(sig)) => Err(format!(
                "{shown}: killed by {}",
                crate::sys::signal_name(sig)
            )),
            Ok(crate::sys::Exit::Unknown) => Err(format!("{shown}: ended without writing the map")),
            Err(errno) => Err(format!(
                "{shown}: {}",
                std::io::Error::from_raw_os_error(errno)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_keeps_the_tree_owners_ids_and_maps_every_other_id_far_away() {
        let far = FAR_AWAY;
        assert_eq!(root_map(far, &[]), format!("0 0 1\n1 {far} 65535\n"));
        assert_eq!(
            root_map(far, &[1001]),
            format!(
                "0 0 1\n1 {far} 1000\n1001 1001 1\n1002 {} 64534\n",
                far + 1001
            )
        );
        // At the ends of the range, and two of them side by side.
        assert_eq!(
            root_map(far, &[1, 2, 65535]),
            format!("0 0 1\n1 1 1\n2 2 1\n3 {} 65532\n65535 65535 1\n", far + 2)
        );
        // Every id inside is mapped once, and no id outside twice.
        for keep in [&[][..], &[1001], &[1, 2, 65535], &[7, 1000, 1001]] {
            let map = root_map(far, keep);
            let extents: Vec<[u64; 3]> = map
                .lines()
                .map(|l| {
                    let f: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
                    [f[0], f[1], f[2]]
                })
                .collect();
            let inside: u64 = extents.iter().map(|e| e[2]).sum();
            assert_eq!(inside, u64::from(RANGE), "{map}");
            for (i, a) in extents.iter().enumerate() {
                for b in &extents[i + 1..] {
                    assert!(a[0] + a[2] <= b[0], "{map}");
                    assert!(a[1] + a[2] <= b[1] || b[1] + b[2] <= a[1], "{map}");
                }
            }
        }
        // Nested: root of a sandbox hands on its own ids, piece by piece.
        assert_eq!(
            own_pieces("0 0 1\n1 1879048192 1000\n1001 1001 1\n1002 1879049193 64534\n"),
            Some("0 0 1\n1 1 1000\n1001 1001 1\n1002 1002 64534\n".to_owned())
        );
        assert_eq!(
            own_pieces("0 0 4294967295\n"),
            Some("0 0 65536\n".to_owned())
        );
        assert_eq!(own_pieces("0 1000 1\n"), None);
        assert_eq!(own_pieces("0 0 1\n2 2 65534\n"), None);
        assert_eq!(
            own_pieces("0 0 1\n1 1879048192 65535\n1234567 1234567 1\n"),
            Some("0 0 1\n1 1 65535\n1234567 1234567 1\n".to_owned())
        );
        // Where root's own range is low,
        // an id it holds stays where the range puts it.
        assert_eq!(root_map(1, &[1001]), "0 0 1\n1 1 65535\n");
        assert_eq!(
            root_map(1000, &[1500, 70000]),
            "0 0 1\n1 1000 65535\n70000 70000 1\n"
        );
        // An owner above 65535 is itself, after the range inside.
        assert_eq!(
            root_map(far, &[1001, 1_234_567]),
            format!(
                "0 0 1\n1 {far} 1000\n1001 1001 1\n1002 {} 64534\n1234567 1234567 1\n",
                far + 1001
            )
        );
    }

    #[test]
    fn subordinate_ranges_are_found_by_id_or_name_and_the_name_asked_only_if_needed() {
        let dir = std::env::temp_dir().join(format!("hermetic-subuid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("subuid");
        let file = file.to_str().unwrap();
        std::fs::write(
            file,
            "1000:100000:65536\nalice:200000:0\nalice:300000:65536\n",
        )
        .unwrap();
        let asked = std::cell::Cell::new(0);
        let alice = || {
            asked.set(asked.get() + 1);
            Some("alice")
        };
        // By id: the name is not needed before that line.
        assert_eq!(subordinate(file, alice, 1000), Some((100000, 65536)));
        assert_eq!(asked.get(), 0);
        // By name: an empty range is skipped.
        assert_eq!(subordinate(file, alice, 7), Some((300000, 65536)));
        assert!(asked.get() > 0);
        // Only ids in the file: the user database is never asked.
        std::fs::write(file, "1000:100000:65536\n").unwrap();
        let never = || -> Option<&str> { panic!("the name was asked for") };
        assert_eq!(subordinate(file, never, 7), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
