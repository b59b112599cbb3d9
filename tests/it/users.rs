//! A user of its own inside: `SandboxBuilder::user(uid, gid)`; and, where
//! the host allows (root, or newuidmap with ranges in /etc/subuid), ids
//! 0-65535 inside.

use crate::common;

use hermetic::Sandbox;

fn as_user() -> Sandbox {
    Sandbox::builder()
        .user(1000, 1001)
        .hostname("db")
        .build()
        .unwrap()
}

/// The capability sets of this process, from /proc.
fn caps() -> Vec<String> {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("Cap"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn runs_are_the_user_without_capabilities() {
    let ns = as_user();
    let (ids, caps) = ns.run(|| {
        // SAFETY: plain getters.
        let ids = unsafe {
            (
                libc::getuid(),
                libc::geteuid(),
                libc::getgid(),
                libc::getegid(),
            )
        };
        (ids, caps())
    });
    assert_eq!(ids, (1000, 1000, 1001, 1001));
    for line in &caps {
        if line.starts_with("CapInh")
            || line.starts_with("CapPrm")
            || line.starts_with("CapEff")
            || line.starts_with("CapAmb")
        {
            assert!(line.ends_with("0000000000000000"), "{caps:?}");
        }
    }
}

#[test]
fn the_user_cannot_become_root_or_bind_low_ports() {
    let ns = as_user();
    let (setuid, low, high) = ns.run(|| {
        // SAFETY: setuid only changes this process's ids, if allowed.
        let setuid = unsafe { libc::setuid(0) };
        let low = std::net::TcpListener::bind("127.0.0.1:80").map_err(|e| e.raw_os_error());
        let high = std::net::TcpListener::bind("127.0.0.1:8080").is_ok();
        (setuid, low.err(), high)
    });
    assert_eq!(setuid, -1);
    assert_eq!(low, Some(Some(libc::EACCES)));
    assert!(high);
}

#[test]
fn setup_still_happens_as_root_inside() {
    let ns = as_user();
    let (host, lo_up, tmp_writable) = ns.run(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let lo = std::fs::read_to_string("/sys/class/net/lo/operstate").unwrap();
        let tmp = std::fs::write("/tmp/mine", "x").is_ok();
        (host, lo, tmp)
    });
    assert_eq!(host, "db\n");
    assert_eq!(lo_up.trim(), "unknown"); // lo's operstate when up
    assert!(tmp_writable);
}

#[test]
fn commands_and_spawned_closures_are_the_user_too() {
    let ns = as_user();
    let out = ns.command("id").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("uid=1000"), "{text}");
    assert!(text.contains("gid=1001"), "{text}");
    let spawned = ns
        .spawn(|| {
            // SAFETY: a plain getter.
            assert_eq!(unsafe { libc::getuid() }, 1000);
        })
        .unwrap();
    spawned.join().unwrap();
}

#[test]
fn with_many_ids_root_inside_changes_ids_as_on_a_normal_system() {
    if !common::many_ids() {
        // One id only: a change fails, as documented.
        let ns = Sandbox::new().unwrap();
        // SAFETY: setuid only changes this run's process.
        let r = ns.run(|| unsafe { libc::setuid(1000) });
        assert_eq!(r, -1);
        common::skip("one id here: only the failing setuid is checked, not ids 0-65535");
        return;
    }
    let ns = Sandbox::new().unwrap();
    let seen = ns.run(|| {
        std::fs::write("/tmp/owned", "x").unwrap();
        let chown = std::os::unix::fs::chown("/tmp/owned", Some(1000), Some(1000)).is_ok();
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata("/tmp/owned").unwrap();
        // A program started as another user.
        use std::os::unix::process::CommandExt;
        let id = std::process::Command::new("id")
            .uid(2000)
            .gid(2000)
            .output()
            .unwrap();
        // SAFETY: changes only this run's process.
        let setuid = unsafe { (libc::setgid(3000), libc::setuid(3000), libc::getuid()) };
        (
            chown,
            meta.uid(),
            meta.gid(),
            String::from_utf8(id.stdout).unwrap(),
            setuid,
        )
    });
    assert!(seen.0, "chown to 1000 failed");
    assert_eq!((seen.1, seen.2), (1000, 1000));
    assert!(seen.3.starts_with("uid=2000"), "{}", seen.3);
    assert_eq!(seen.4, (0, 0, 3000));
}

#[test]
fn with_many_ids_a_user_sandbox_runs_as_that_user() {
    if !common::many_ids() {
        common::skip("one id here: no user 1000 inside");
        return;
    }
    let ns = Sandbox::builder().user(1000, 1000).build().unwrap();
    // SAFETY: getters, and setuid on this run's process.
    let (uid, back_to_root) = ns.run(|| unsafe { (libc::getuid(), libc::setuid(0)) });
    assert_eq!((uid, back_to_root), (1000, -1));
    let out = ns.command("id").arg("-u").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1000\n");
}

#[test]
fn a_failing_newuidmap_is_a_clear_error_not_a_hang() {
    // Rootless with ranges only: root writes its maps itself.
    if !common::many_ids() || nix::unistd::geteuid().is_root() {
        common::skip("needs a rootless caller with /etc/subuid ranges (newuidmap)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("newuidmap");
    std::fs::write(&fake, "#!/bin/sh\necho refused >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", dir.path().display());
    // The launched child waits for its maps before its exec: a failed
    // helper must end it, and the build must fail, naming the helper.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .args(["run", "--", "true"])
        .env("PATH", path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("newuidmap"), "{stderr}");
    assert!(stderr.contains("exited with status 3"), "{stderr}");
}
