//! Private propagation, own /tmp, /proc and /sys, binds.

use crate::common;

use crate::common::mount_points;
use hermetic::{Sandbox, isolated};
use rstest::rstest;

#[rstest]
fn mounts_made_inside_are_not_seen_outside(#[from(isolated)] ns: Sandbox) {
    let before = mount_points();
    let inside = ns.run(|| {
        // The sandbox's own mounts are locked; a run that wants mounts of
        // its own makes itself a mount namespace (root inside may).
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
        // /mnt exists on every Debian; any host directory would do.
        nix::mount::mount(
            Some("tmpfs"),
            "/mnt",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        // This thread's view: under HERMETIC_RUNNER_THREAD=1 the closure
        // runs on a thread of its own, and /proc/self is the main thread.
        std::fs::read_to_string("/proc/thread-self/mountinfo")
            .unwrap()
            .lines()
            .map(|l| l.split(' ').nth(4).unwrap().to_owned())
            .collect::<Vec<_>>()
    });
    assert!(inside.contains(&"/mnt".to_owned()));
    assert_eq!(
        mount_points(),
        before,
        "a mount made inside leaked to the host"
    );
    // That namespace went with the run.
    assert!(!ns.run(mount_points).contains(&"/mnt".to_owned()));
}

#[rstest]
fn every_mount_inside_is_private(#[from(isolated)] ns: Sandbox) {
    let info = ns.run(|| std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    for line in info.lines() {
        // Optional fields sit between field 6 and the " - " separator.
        let (head, _) = line.split_once(" - ").unwrap();
        let optional: Vec<_> = head.split(' ').skip(6).collect();
        assert!(
            optional.iter().all(|f| !f.starts_with("shared:")),
            "a shared mount inside: {line}"
        );
    }
}

#[rstest]
fn tmp_is_a_private_tmpfs(#[from(isolated)] ns: Sandbox) {
    let marker = tempfile::NamedTempFile::new().unwrap();
    let name = marker.path().to_owned();
    let (fstype, entries, sees_host_file) = ns.run(move || {
        let fs = nix::sys::statfs::statfs("/tmp").unwrap();
        let entries: Vec<String> = std::fs::read_dir("/tmp")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        (fs.filesystem_type().0 as i64, entries, name.exists())
    });
    assert_eq!(fstype, libc::TMPFS_MAGIC);
    // A fresh /tmp is empty, but for the paths to the working directory
    // and the target dir, bound back when they lie under /tmp (a checkout
    // there).
    let shown: Vec<String> = [
        std::env::current_dir().unwrap(),
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
    ]
    .iter()
    .filter_map(|p| p.strip_prefix("/tmp").ok()?.components().next())
    .map(|c| c.as_os_str().to_string_lossy().into_owned())
    .collect();
    assert!(
        entries.iter().all(|e| shown.contains(e)),
        "a fresh /tmp holds {entries:?}"
    );
    assert!(!sees_host_file);
}

#[test]
fn tmp_persists_across_runs_and_vanishes_with_the_sandbox() {
    let ns = Sandbox::new().unwrap();
    ns.run(|| std::fs::write("/tmp/state", b"kept").unwrap());
    assert_eq!(ns.run(|| std::fs::read("/tmp/state").unwrap()), b"kept");
    // The file lives in the sandbox's tmpfs, never on the host.
    assert!(!std::path::Path::new("/tmp/state").exists());
    drop(ns);
    let fresh = Sandbox::new().unwrap();
    assert!(!fresh.run(|| std::path::Path::new("/tmp/state").exists()));
}

#[test]
fn two_sandboxes_have_distinct_tmp() {
    let (a, b) = (Sandbox::new().unwrap(), Sandbox::new().unwrap());
    a.run(|| std::fs::write("/tmp/only-in-a", b"a").unwrap());
    assert!(!b.run(|| std::path::Path::new("/tmp/only-in-a").exists()));
}

#[rstest]
fn proc_is_fresh_for_the_pid_namespace(#[from(isolated)] ns: Sandbox) {
    let (init_comm, fstype) = ns.run(|| {
        let comm = std::fs::read_to_string("/proc/1/comm").unwrap();
        let fs = nix::sys::statfs::statfs("/proc").unwrap();
        (comm.trim().to_owned(), fs.filesystem_type().0 as i64)
    });
    assert_eq!(init_comm, "hermetic-init");
    assert_eq!(fstype, libc::PROC_SUPER_MAGIC);
}

#[rstest]
fn sys_is_fresh(#[from(isolated)] ns: Sandbox) {
    let (fstype, ifaces, sys_mount) = ns.run(|| {
        let fs = nix::sys::statfs::statfs("/sys").unwrap();
        (
            fs.filesystem_type().0 as i64,
            common::interfaces(),
            mount_points(),
        )
    });
    assert_eq!(fstype, libc::SYSFS_MAGIC);
    assert_eq!(ifaces, ["lo"]);
    assert!(sys_mount.contains(&"/sys".to_owned()));
}

#[test]
fn bind_shows_host_files_and_writes_through() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in"), b"from host").unwrap();
    let ns = Sandbox::builder()
        .bind(dir.path(), "/tmp/data")
        .build()
        .unwrap();
    let read = ns.run(|| {
        std::fs::write("/tmp/data/out", b"from sandbox").unwrap();
        std::fs::read_to_string("/tmp/data/in").unwrap()
    });
    assert_eq!(read, "from host");
    assert_eq!(
        std::fs::read(dir.path().join("out")).unwrap(),
        b"from sandbox"
    );
}

#[test]
fn bind_ro_is_read_only_inside() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in"), b"from host").unwrap();
    let ns = Sandbox::builder()
        .bind_ro(dir.path(), "/tmp/ro")
        .build()
        .unwrap();
    let (read, write_err) = ns.run(|| {
        let read = std::fs::read_to_string("/tmp/ro/in").unwrap();
        let err = std::fs::write("/tmp/ro/new", b"x").unwrap_err();
        (read, err.raw_os_error())
    });
    assert_eq!(read, "from host");
    assert_eq!(write_err, Some(libc::EROFS));
    assert!(!dir.path().join("new").exists());
}

#[test]
fn a_single_file_can_be_bound() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"config").unwrap();
    let ns = Sandbox::builder()
        .bind_ro(file.path(), "/tmp/etc/app.conf")
        .build()
        .unwrap();
    assert_eq!(
        ns.run(|| std::fs::read_to_string("/tmp/etc/app.conf").unwrap()),
        "config"
    );
}

#[test]
fn extra_tmpfs_is_empty_and_private() {
    let ns = Sandbox::builder().tmpfs("/mnt").build().unwrap();
    let (fstype, empty) = ns.run(|| {
        let fs = nix::sys::statfs::statfs("/mnt").unwrap();
        std::fs::write("/mnt/x", b"x").unwrap();
        (
            fs.filesystem_type().0 as i64,
            std::fs::read_dir("/mnt").unwrap().count() == 1,
        )
    });
    assert_eq!(fstype, libc::TMPFS_MAGIC);
    assert!(empty);
    assert!(!std::path::Path::new("/mnt/x").exists());
}

#[test]
fn the_hosts_tmp_itself_can_be_bound_in() {
    // The sandbox covers /tmp with its own tmpfs; binding the host's /tmp
    // must show the host's files, not a copy of that tmpfs.
    let file = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    std::fs::write(file.path(), "on the host").unwrap();
    let name = file.path().file_name().unwrap().to_owned();
    let ns = Sandbox::builder()
        .bind_ro("/tmp", "/tmp/host")
        .build()
        .unwrap();
    let got = ns.run(move || {
        std::fs::read_to_string(std::path::Path::new("/tmp/host").join(name)).unwrap()
    });
    assert_eq!(got, "on the host");
}

/// What `/tmp` holds is what its size says: free, at the start, exactly
/// `tmp_size` (the files the sandbox places, such as its `/etc/hosts`,
/// come on top).
#[test]
fn tmp_has_a_size_of_its_own() {
    fn size_of(path: &str) -> u64 {
        let c = std::ffi::CString::new(path).unwrap();
        // SAFETY: a plain C struct, all zeroes, filled in below.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: c is NUL-terminated; st is live.
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        st.f_bavail * st.f_frsize
    }
    let ns = hermetic::Sandbox::new().unwrap();
    let (tmp, shm) = ns.run(|| (size_of("/tmp"), size_of("/dev/shm")));
    assert_eq!((tmp, shm), (1 << 30, 64 << 20));
    let small = hermetic::Sandbox::builder()
        .tmp_size(1 << 20)
        .build()
        .unwrap();
    let full =
        small.run(|| std::fs::write("/tmp/big", vec![0u8; 2 << 20]).map_err(|e| e.raw_os_error()));
    assert_eq!(full, Err(Some(libc::ENOSPC)));
    let err = hermetic::Sandbox::builder()
        .tmp_size(0)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("tmp_size"), "{err}");
    // /dev/shm's own size (POSIX shared memory), and the command's option.
    let shm = hermetic::Sandbox::builder()
        .shm_size(256 << 20)
        .build()
        .unwrap();
    assert_eq!(shm.run(|| size_of("/dev/shm")), 256 << 20);
    let small = hermetic::Sandbox::builder()
        .shm_size(1 << 20)
        .build()
        .unwrap();
    let full = small
        .run(|| std::fs::write("/dev/shm/big", vec![0u8; 2 << 20]).map_err(|e| e.raw_os_error()));
    assert_eq!(full, Err(Some(libc::ENOSPC)));
    let err = hermetic::Sandbox::builder()
        .shm_size(0)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("shm_size"), "{err}");
    let out = common::hermetic_command()
        .args(["run", "--shm-size=2M", "--", "df", "-k", "/dev/shm"])
        .output()
        .unwrap();
    let said = common::said(&out);
    assert!(out.status.success() && said.contains(" 2048 "), "{said}");
    let out = common::hermetic_command()
        .args(["run", "--shm-size", "0", "--", "true"])
        .output()
        .unwrap();
    let said = common::said(&out);
    assert!(
        out.status.code() == Some(2) && said.contains("--shm-size"),
        "{said}"
    );
}

/// What writing, changing and removing `path` gives inside, as root:
/// errnos (None: it worked), and what `path` then holds.
fn attack_file(path: &'static str) -> (Vec<Option<i32>>, String) {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    let errno = |r: Result<(), std::io::Error>| r.err().and_then(|e| e.raw_os_error());
    let nix_errno = |r: nix::Result<()>| r.err().map(|e| e as i32);
    let mut errnos = vec![
        errno(std::fs::write(path, b"changed")),
        errno(
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map(drop),
        ),
        errno(std::fs::set_permissions(
            path,
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )),
        errno(std::fs::remove_file(path)),
        // A sibling, in the same (writable) directory, moved over it.
        errno(
            std::fs::write(format!("{path}.new"), b"x")
                .and_then(|()| std::fs::rename(format!("{path}.new"), path)),
        ),
        nix_errno(mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
            None::<&str>,
        )),
        nix_errno(umount2(path, MntFlags::MNT_DETACH)),
    ];
    // Root of a mount namespace of its own: the mount comes locked.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
    errnos.push(nix_errno(umount2(path, MntFlags::MNT_DETACH)));
    errnos.push(errno(std::fs::write(path, b"changed")));
    (errnos, std::fs::read_to_string(path).unwrap())
}

#[test]
fn a_file_is_made_inside_read_only_even_for_root() {
    let name = format!("hermetic-file-{}", std::process::id());
    let in_tmp: &'static str = format!("/tmp/{name}/conf/app.toml").leak();
    let ns = Sandbox::builder()
        .tmpfs("/mnt")
        .file(in_tmp, "port = 8080\n")
        .file("/dev/shm/flag", [0u8, 1, 2, 255])
        .file("/mnt/deep/down/x", "")
        .build()
        .unwrap();
    let seen = ns.run(move || {
        (
            nix::unistd::getuid().as_raw(),
            std::fs::read_to_string(in_tmp).unwrap(),
            std::fs::read("/dev/shm/flag").unwrap(),
            std::fs::read("/mnt/deep/down/x").unwrap(),
            // Its directory is the sandbox's tmpfs, writable as ever.
            std::fs::write(format!("{in_tmp}.other"), b"").is_ok(),
        )
    });
    assert_eq!(seen.0, 0, "root inside");
    assert_eq!(seen.1, "port = 8080\n");
    assert_eq!(seen.2, [0u8, 1, 2, 255]);
    assert!(seen.3.is_empty());
    assert!(seen.4, "the file's directory is writable");
    let (errnos, left) = ns.run(move || attack_file(in_tmp));
    let (erofs, ebusy) = (Some(libc::EROFS), Some(libc::EBUSY));
    assert_eq!(
        errnos,
        [
            erofs,
            erofs,
            erofs,
            ebusy,
            ebusy,
            Some(libc::EPERM),
            Some(libc::EPERM),
            Some(libc::EINVAL),
            erofs
        ],
        "write, append, chmod, unlink, rename over, remount, umount; in a mount namespace of its own: umount, write"
    );
    assert_eq!(left, "port = 8080\n");
    // Nothing on the host.
    assert!(!std::path::Path::new("/tmp").join(&name).exists());
    assert!(!std::path::Path::new("/dev/shm/flag").exists());
    assert!(!std::path::Path::new("/mnt/deep").exists());
}

#[test]
fn a_file_covers_a_host_file_inside_only() {
    // Outside the sandbox's tmpfs mounts: a host file, which it covers.
    let host = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
    std::fs::write(host.path(), b"the host's").unwrap();
    let path: &'static str = host.path().to_str().unwrap().to_owned().leak();
    // In every host mode: copy-on-write, /var/tmp is one of its layers.
    for mode in [
        hermetic::HostMode::ReadOnly,
        hermetic::HostMode::Writable,
        hermetic::HostMode::CopyOnWrite,
    ] {
        let ns = Sandbox::builder()
            .host(mode)
            .file(path, "the sandbox's")
            .build()
            .unwrap();
        let (inside, write) = ns.run(move || {
            (
                std::fs::read_to_string(path).unwrap(),
                std::fs::write(path, b"changed")
                    .err()
                    .and_then(|e| e.raw_os_error()),
            )
        });
        assert_eq!(inside, "the sandbox's");
        assert_eq!(write, Some(libc::EROFS), "host mode {mode}");
        assert_eq!(std::fs::read_to_string(path).unwrap(), "the host's");
    }
}

/// Mounts a tmpfs on `dir` (made first), writes a file there, and says
/// what the mount gave: 0, or its errno.
fn mount_tmpfs_on(dir: &str) -> i32 {
    std::fs::create_dir_all(dir).unwrap();
    match nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    ) {
        Ok(()) => {
            std::fs::write(format!("{dir}/x"), "x").unwrap();
            0
        }
        Err(e) => e as i32,
    }
}

/// Promise (README, What is isolated: mounts; `allow_mounts`): root inside
/// mounts filesystems of its own on top of the sandbox's where the
/// builder allows it (a closure, a program, `hermetic run
/// --allow-mounts`), and not otherwise (`EPERM`); either way, no mount the
/// sandbox made can be taken off, nor the host made writable.
#[test]
fn allow_mounts_lets_root_inside_mount_on_top_and_nothing_more() {
    let plain = Sandbox::new().unwrap();
    assert_eq!(plain.run(|| mount_tmpfs_on("/tmp/m")), libc::EPERM);
    let ns = Sandbox::builder()
        .allow_mounts(true)
        .cgroup_namespace(true)
        .build()
        .unwrap();
    let (mounted, off, writable, host, cgroupfs) = ns.run(|| {
        let mounted = mount_tmpfs_on("/tmp/m");
        // The sandbox's limits stay out of reach: no cgroup filesystem
        // mounts (issue 20's cgroupfs attack).
        std::fs::create_dir_all("/tmp/cg").unwrap();
        let cgroupfs = nix::mount::mount(
            Some("none"),
            "/tmp/cg",
            Some("cgroup2"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .err()
        .map(|e| e as i32);
        // /proc/sys is a read-only bind the sandbox made over its proc.
        let off = nix::mount::umount2("/proc/sys", nix::mount::MntFlags::MNT_DETACH)
            .err()
            .map(|e| e as i32);
        let writable = nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .err()
        .map(|e| e as i32);
        let host = std::fs::write("/etc/hermetic-allow-mounts", "x")
            .err()
            .and_then(|e| e.raw_os_error());
        (mounted, off, writable, host, cgroupfs)
    });
    assert_eq!(cgroupfs, Some(libc::EPERM), "a cgroup2 mount");
    assert_eq!(mounted, 0, "a tmpfs of its own");
    assert_eq!(off, Some(libc::EINVAL), "the sandbox's /proc/sys taken off");
    assert_eq!(writable, Some(libc::EPERM), "/ remounted writable");
    assert_eq!(host, Some(libc::EROFS));
    let out = ns
        .command("sh")
        .args([
            "-c",
            "mkdir -p /tmp/p && mount -t tmpfs t /tmp/p && touch /tmp/p/x && echo mounted",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "mounted\n", "{out:?}");
    let out = common::hermetic_command()
        .args(["run", "--allow-mounts", "--", "sh", "-c"])
        .arg("mount -t tmpfs t /tmp && touch /tmp/x && echo mounted")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "mounted\n", "{out:?}");
    assert!(!std::path::Path::new("/etc/hermetic-allow-mounts").exists());
}
