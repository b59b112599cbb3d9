//! A user of its own inside: `SandboxBuilder::user(uid, gid)`.

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
