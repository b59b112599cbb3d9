//! Isolation, bubblewrap's list plus the network: what a sandbox cannot do
//! outside, even as root inside.

use crate::common;

use std::os::unix::net::{UnixListener, UnixStream};

use hermetic::{Sandbox, isolated};
use rstest::rstest;

#[rstest]
fn root_inside_has_no_power_outside(#[from(isolated)] ns: Sandbox) {
    let host_name = nix::unistd::gethostname().unwrap();
    let (set_hostname, set_clock, cap_eff) = ns.run(|| {
        let hostname = nix::unistd::sethostname("changed-inside").is_ok();
        // Setting the clock needs CAP_SYS_TIME in the initial user
        // namespace; setting it to what it already is changes nothing even
        // if it were allowed.
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME).unwrap();
        let clock =
            nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, now).map_err(|e| e as i32);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let cap = status
            .lines()
            .find(|l| l.starts_with("CapEff:"))
            .unwrap()
            .to_owned();
        (hostname, clock, cap)
    });
    // Full capabilities... in its own user namespace only.
    assert!(!cap_eff.ends_with("0000000000000000"), "{cap_eff}");
    assert!(set_hostname, "the sandbox owns its UTS namespace");
    assert_eq!(
        nix::unistd::gethostname().unwrap(),
        host_name,
        "the host's hostname changed"
    );
    assert_eq!(set_clock, Err(libc::EPERM));
}

#[rstest]
fn host_processes_are_invisible_and_unreachable_by_pid(#[from(isolated)] ns: Sandbox) {
    let me = std::process::id() as i32;
    let (visible, kill) = ns.run(move || {
        let visible = std::path::Path::new(&format!("/proc/{me}")).exists();
        let kill =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(me), None).map_err(|e| e as i32);
        (visible, kill)
    });
    assert!(
        !visible,
        "the test process is visible in the sandbox's /proc"
    );
    assert_eq!(kill, Err(libc::ESRCH));
}

#[test]
fn files_the_outer_user_cannot_read_stay_unreadable() {
    let outer_uid = nix::unistd::geteuid();
    let (path, _guard) = if outer_uid.is_root() {
        // A file of another user, mode 0600: root outside reads it through
        // CAP_DAC_OVERRIDE, which root inside does not have for ids its
        // namespace does not map.
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "secret").unwrap();
        nix::unistd::chown(f.path(), Some(65534.into()), Some(65534.into())).unwrap();
        std::fs::set_permissions(
            f.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        assert!(std::fs::read(f.path()).is_ok(), "root outside can read it");
        (f.path().to_owned(), Some(f))
    } else {
        // An ordinary user cannot read /etc/shadow.
        assert!(std::fs::read("/etc/shadow").is_err());
        ("/etc/shadow".into(), None)
    };
    let ns = Sandbox::builder()
        .bind_ro(path.parent().unwrap(), "/tmp/outer")
        .build()
        .unwrap();
    let inside = std::path::Path::new("/tmp/outer").join(path.file_name().unwrap());
    let err = ns.run(move || {
        std::fs::read(&inside)
            .map(drop)
            .map_err(|e| e.raw_os_error())
    });
    assert_eq!(err, Err(Some(libc::EACCES)));
}

#[rstest]
fn host_abstract_unix_sockets_are_unreachable(#[from(isolated)] ns: Sandbox) {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("hermetic-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _listener = UnixListener::bind_addr(&addr).unwrap();
    assert!(
        UnixStream::connect_addr(&addr).is_ok(),
        "reachable from the host"
    );
    let err = ns.run(move || {
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        UnixStream::connect_addr(&addr)
            .map(drop)
            .map_err(|e| e.raw_os_error())
    });
    assert_eq!(err, Err(Some(libc::ECONNREFUSED)));
}

#[rstest]
fn netlink_sees_only_the_sandboxes_links(#[from(isolated)] ns: Sandbox) {
    // getifaddrs asks the kernel over netlink (RTM_GETLINK, RTM_GETADDR).
    let names = || {
        let mut v: Vec<String> = nix::ifaddrs::getifaddrs()
            .unwrap()
            .map(|a| a.interface_name)
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(ns.run(names), ["lo"]);
}

#[rstest]
fn uid_and_gid_maps_are_exact(#[from(isolated)] ns: Sandbox) {
    let (uid, gid) = common::outer_ids();
    // The maps of the runs' user namespace, as the test process sees them
    // (from inside they read relative to the outer sandbox namespace).
    let pid = ns.pid();
    let maps = (
        std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap(),
        std::fs::read_to_string(format!("/proc/{pid}/gid_map")).unwrap(),
    );
    // The caller's own ids are 0 inside; with many ids, 1-65535 are not
    // the host's users' (no power over their files), but a range of ids
    // far from them, except, as root, the owner of the test's own tree,
    // which is itself; else nothing else is mapped.
    let lines: Vec<Vec<u64>> = maps
        .0
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(lines[0], [0, u64::from(uid), 1]);
    if common::many_ids() {
        let owners: Vec<u64> = if uid == 0 {
            use std::os::unix::fs::MetadataExt;
            [
                std::env::current_dir().ok(),
                std::env::var_os("CARGO_MANIFEST_DIR").map(Into::into),
            ]
            .into_iter()
            .flatten()
            .filter_map(|d: std::path::PathBuf| d.metadata().ok())
            .map(|m| u64::from(m.uid()))
            .collect()
        } else {
            vec![]
        };
        let mut next = 1;
        for line in &lines[1..] {
            assert_eq!(line[0], next, "{}", maps.0);
            next += line[2];
            let own = line[1] == line[0] && line[2] == 1 && owners.contains(&line[1]);
            assert!(
                own || line[1] >= 65536,
                "ids 1-65535 are host users': {}",
                maps.0
            );
        }
        assert_eq!(next, 65536, "{}", maps.0);
    } else {
        assert_eq!(lines.len(), 1, "{}", maps.0);
    }
    assert_eq!(
        maps.1
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", &gid.to_string(), "1"]
    );
}
