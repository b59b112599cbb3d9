//! The holder's setup, decided and encoded before anything is forked.
//!
//! The builder's options are validated here and turned into a list of
//! [`Step`]s whose paths and contents are already NUL-terminated byte
//! strings, so that the holder only has to walk the list and make one system
//! call per step. Each step keeps a sentence describing it; the holder
//! reports failures as (step index, errno) and the parent turns that into
//! [`Error::Setup`] with the sentence.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::Error;

/// One system call the holder makes.
#[derive(Debug)]
pub(crate) enum Action {
    /// Point fds 0, 1 and 2 at `/dev/null` and close every other fd except
    /// the holder's own two, so that the holder keeps nothing of the test
    /// process alive (pipes, other sandboxes, the test runner's output).
    DetachFds,
    /// Write `content` to `path` (id maps, setgroups).
    WriteFile { path: CString, content: Vec<u8> },
    /// Make every mount private, recursively.
    MakeMountsPrivate,
    /// `mount(2)`.
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// Remount a bind mount read-only, keeping its locked flags.
    RemountReadOnly { target: CString },
    /// Create a directory to mount on.
    CreateDir { path: CString },
    /// Create an empty file to bind a file on.
    CreateFile { path: CString },
    /// Clone the mount tree of a bind source (`open_tree`) as fd number
    /// `fd`, before the sandbox's own mounts (such as the tmpfs on `/tmp`)
    /// can hide it or be copied into it.
    OpenSource { path: CString, fd: i32 },
    /// Attach the tree cloned as `fd` at `target` (`move_mount`).
    AttachSource { fd: i32, target: CString },
    /// `sethostname(2)`.
    SetHostname { name: Vec<u8> },
    /// Set `lo` up.
    LoopbackUp,
}

/// A step: what it does, and how to say so when it fails.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) what: String,
    pub(crate) action: Action,
}

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
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }
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
    Bind { source: &'a Path, target: &'a Path },
    Host,
}

/// Turns the options into the holder's steps.
///
/// `first_free_fd` is the lowest fd number the holder has free once it has
/// closed what it inherited: the bind sources' cloned trees are kept there,
/// in order, until they are attached.
pub(crate) fn holder_steps(
    ids: Option<Ids>,
    hostname: &[u8],
    mounts: &[MountSpec],
    first_free_fd: i32,
) -> Result<Vec<Step>, Error> {
    let mut steps = vec![
        Step {
            what: "detaching from the test process's file descriptors".into(),
            action: Action::DetachFds,
        },
        Step {
            what: "making all mounts private".into(),
            action: Action::MakeMountsPrivate,
        },
    ];
    if let Some(ids) = ids {
        // A new user namespace maps the caller; a sandbox that joins an
        // existing one (a network's host) has nothing to map.
        let maps = [
            Step {
                what: "writing \"deny\" to /proc/self/setgroups".into(),
                action: Action::WriteFile {
                    path: c"/proc/self/setgroups".into(),
                    content: b"deny".to_vec(),
                },
            },
            Step {
                what: format!("mapping uid 0 to {} in /proc/self/uid_map", ids.uid),
                action: Action::WriteFile {
                    path: c"/proc/self/uid_map".into(),
                    content: id_map(0, ids.uid),
                },
            },
            Step {
                what: format!("mapping gid 0 to {} in /proc/self/gid_map", ids.gid),
                action: Action::WriteFile {
                    path: c"/proc/self/gid_map".into(),
                    content: id_map(0, ids.gid),
                },
            },
        ];
        steps.splice(1..1, maps);
    }
    let mut next_fd = first_free_fd;
    let mut sources = Vec::new();
    for spec in mounts {
        if let MountSpec::Bind { source, .. } = spec {
            let option = option_name(spec);
            absolute(option, "source", source)?;
            steps.push(Step {
                what: format!("opening the bind source {}", source.display()),
                action: Action::OpenSource {
                    path: cstring(option, source)?,
                    fd: next_fd,
                },
            });
            sources.push(next_fd);
            next_fd += 1;
        }
    }
    let mut sources = sources.into_iter();
    let fresh = |fstype: &'static std::ffi::CStr, target: &'static std::ffi::CStr, flags, data| {
        let name = fstype.to_string_lossy();
        Step {
            what: format!("mounting {name} on {}", target.to_string_lossy()),
            action: Action::Mount {
                source: Some(fstype.into()),
                target: target.into(),
                fstype: Some(fstype.into()),
                flags,
                data,
            },
        }
    };
    let hidden = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    steps.push(fresh(c"proc", c"/proc", hidden, None));
    steps.push(fresh(c"sysfs", c"/sys", hidden | libc::MS_RDONLY, None));
    steps.push(fresh(
        c"tmpfs",
        c"/tmp",
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(c"mode=1777".into()),
    ));

    let mut made: Vec<MountSpec> = vec![MountSpec::Tmpfs {
        target: "/tmp".into(),
    }];
    for spec in mounts {
        let source_fd = match spec {
            MountSpec::Bind { .. } => sources.next(),
            MountSpec::Tmpfs { .. } => None,
        };
        mount_steps(spec, source_fd, &made, &mut steps)?;
        made.push(spec.clone());
    }

    steps.push(Step {
        what: format!(
            "setting the hostname to {:?}",
            String::from_utf8_lossy(hostname)
        ),
        action: Action::SetHostname {
            name: hostname.to_vec(),
        },
    });
    steps.push(Step {
        what: "bringing up the loopback interface lo".into(),
        action: Action::LoopbackUp,
    });
    Ok(steps)
}

fn option_name(spec: &MountSpec) -> &'static str {
    match spec {
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
        let t = match spec {
            MountSpec::Tmpfs { target } | MountSpec::Bind { target, .. } => target,
        };
        if target.starts_with(t) {
            let deeper = match best {
                Some(MountSpec::Tmpfs { target: b } | MountSpec::Bind { target: b, .. }) => {
                    t.components().count() >= b.components().count()
                }
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
        Some(MountSpec::Bind { source, target, .. }) => Under::Bind { source, target },
    }
}

fn mount_steps(
    spec: &MountSpec,
    source_fd: Option<i32>,
    made: &[MountSpec],
    steps: &mut Vec<Step>,
) -> Result<(), Error> {
    let option = option_name(spec);
    let (target, source_is_dir) = match spec {
        MountSpec::Tmpfs { target } => (target, true),
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

    // Where does the target live once the earlier mounts are in place?
    let existing = match under(target, made) {
        Under::Host => Some(target.clone()),
        Under::Bind { source, target: t } => {
            Some(source.join(target.strip_prefix(t).expect("under() checked the prefix")))
        }
        Under::Tmpfs(root) if root == target => None,
        Under::Tmpfs(root) => {
            // A fresh tmpfs holds nothing: create the path, inside the
            // sandbox only. Components below an earlier mount inside this
            // tmpfs would need the same care, so they are refused.
            let rel = target
                .strip_prefix(root)
                .expect("under() checked the prefix");
            let mut path = root.to_path_buf();
            let parts: Vec<_> = rel.components().collect();
            for (i, part) in parts.iter().enumerate() {
                path.push(part);
                let last = i + 1 == parts.len();
                let c = cstring(option, &path)?;
                let (what, action) = if last && !source_is_dir {
                    ("creating the file", Action::CreateFile { path: c })
                } else {
                    ("creating the directory", Action::CreateDir { path: c })
                };
                steps.push(Step {
                    what: format!("{what} {} to mount on", path.display()),
                    action,
                });
            }
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
        MountSpec::Tmpfs { .. } => steps.push(Step {
            what: format!("mounting tmpfs on {}", target.display()),
            action: Action::Mount {
                source: Some(c"tmpfs".into()),
                target: target_c,
                fstype: Some(c"tmpfs".into()),
                flags: libc::MS_NOSUID | libc::MS_NODEV,
                data: Some(c"mode=0755".into()),
            },
        }),
        MountSpec::Bind {
            source, read_only, ..
        } => {
            let what = format!("binding {} on {}", source.display(), target.display());
            steps.push(Step {
                what,
                action: Action::AttachSource {
                    fd: source_fd.expect("every bind source is opened first"),
                    target: target_c.clone(),
                },
            });
            if *read_only {
                steps.push(Step {
                    what: format!("remounting {} read-only", target.display()),
                    action: Action::RemountReadOnly { target: target_c },
                });
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

    fn whats(mounts: &[MountSpec]) -> Vec<String> {
        holder_steps(Some(IDS), b"h", mounts, 10)
            .unwrap()
            .into_iter()
            .map(|s| s.what)
            .collect()
    }

    #[test]
    fn id_map_text() {
        assert_eq!(id_map(0, 1000), b"0 1000 1\n");
    }

    #[test]
    fn base_steps_in_order() {
        let w = whats(&[]);
        assert_eq!(w[1], "writing \"deny\" to /proc/self/setgroups");
        assert_eq!(w[2], "mapping uid 0 to 1000 in /proc/self/uid_map");
        assert_eq!(w[3], "mapping gid 0 to 100 in /proc/self/gid_map");
        assert_eq!(w[5], "mounting proc on /proc");
        assert_eq!(w[6], "mounting sysfs on /sys");
        assert_eq!(w[7], "mounting tmpfs on /tmp");
        assert_eq!(w.last().unwrap(), "bringing up the loopback interface lo");
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
        assert!(w.contains(&"remounting /tmp/a/b read-only".into()));
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
            holder_steps(Some(IDS), b"h", &[m], 10)
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
