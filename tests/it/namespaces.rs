//! Fresh namespaces of every kind, ids mapped to the caller.

use crate::common;

use crate::common::{KINDS, ns_inodes, outer_ids};
use hermetic::{Sandbox, isolated};
use rstest::rstest;

#[rstest]
fn every_namespace_kind_is_new(#[from(isolated)] ns: Sandbox) {
    let outside = ns_inodes();
    let inside = ns.run(ns_inodes);
    for kind in KINDS {
        assert_ne!(
            outside[kind], inside[kind],
            "{kind} namespace is shared with the host"
        );
    }
    // Not asked for: the cgroup namespace stays the host's.
    assert_eq!(outside["cgroup"], inside["cgroup"]);
}

#[rstest]
fn two_sandboxes_do_not_share_namespaces(
    #[from(isolated)] a: Sandbox,
    #[from(isolated)] b: Sandbox,
) {
    let (ia, ib) = (a.run(ns_inodes), b.run(ns_inodes));
    for kind in KINDS {
        assert_ne!(
            ia[kind], ib[kind],
            "{kind} namespace is shared between sandboxes"
        );
    }
}

#[rstest]
fn runs_of_one_sandbox_share_its_namespaces(#[from(isolated)] ns: Sandbox) {
    assert_eq!(ns.run(ns_inodes), ns.run(ns_inodes));
}

#[test]
fn cgroup_namespace_is_an_option() {
    let ns = Sandbox::builder().cgroup_namespace(true).build().unwrap();
    let outside = ns_inodes();
    let inside = ns.run(ns_inodes);
    assert_ne!(outside["cgroup"], inside["cgroup"]);
    // Inside its own cgroup namespace, the sandbox sits at the root of
    // every hierarchy (v1 or v2).
    let cgroups = ns.run(|| std::fs::read_to_string("/proc/self/cgroup").unwrap());
    for line in cgroups.lines() {
        assert!(line.ends_with(":/"), "not at a cgroup root: {line}");
    }
}

#[rstest]
fn root_inside_is_the_caller_outside(#[from(isolated)] ns: Sandbox) {
    let (uid, gid) = outer_ids();
    let inside = ns.run(|| {
        let read = |p: &str| std::fs::read_to_string(p).unwrap();
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getgid().as_raw(),
            read("/proc/self/uid_map"),
            read("/proc/self/gid_map"),
            read("/proc/self/setgroups"),
        )
    });
    assert_eq!((inside.0, inside.1, inside.2), (0, 0, 0));
    let fields = |m: &str| m.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    // Inside, the maps read relative to the parent user namespace: the
    // runs' (inner) namespace maps its 0 to the outer one's 0 (and, with
    // many ids, its 1-65535 to the outer one's, in the outer map's pieces:
    // as root, the owner of the test's tree is a piece of its own)...
    if common::many_ids() {
        for map in [&inside.3, &inside.4] {
            let f = fields(map);
            assert_eq!(f[..3], ["0", "0", "1"], "{map}");
            let mut next = 0u64;
            for piece in f.chunks(3) {
                let n: Vec<u64> = piece.iter().map(|x| x.parse().unwrap()).collect();
                assert_eq!((n[0], n[1]), (next, next), "{map}");
                next += n[2];
            }
            assert_eq!(next, 65536, "{map}");
        }
    } else {
        assert_eq!(fields(&inside.3), ["0", "0", "1"]);
        assert_eq!(fields(&inside.4), ["0", "0", "1"]);
        assert_eq!(inside.5.trim(), "deny");
    }
    // ...which is the caller, as the test process reads it.
    let outside = |f: &str| std::fs::read_to_string(format!("/proc/{}/{f}", ns.pid())).unwrap();
    let first = |m: String| fields(m.lines().next().unwrap());
    assert_eq!(first(outside("uid_map")), ["0", &uid.to_string(), "1"]);
    assert_eq!(first(outside("gid_map")), ["0", &gid.to_string(), "1"]);
}

#[test]
fn files_made_inside_belong_to_the_caller_outside() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let ns = Sandbox::builder()
        .bind(dir.path(), "/tmp/shared")
        .build()
        .unwrap();
    ns.run(|| std::fs::write("/tmp/shared/f", b"x").unwrap());
    let meta = std::fs::metadata(dir.path().join("f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), outer_ids());
}

#[rstest]
fn a_sandbox_can_be_made_inside_a_sandbox(#[from(isolated)] ns: Sandbox) {
    let outer_user = ns.run(|| ns_inodes()["user"]);
    let (inner_user, inner_host, parent_user) = ns.run(|| {
        let inner = Sandbox::builder().hostname("inner").build().unwrap();
        let (user, host) = inner.run(|| {
            (
                ns_inodes()["user"],
                nix::unistd::gethostname().unwrap().into_string().unwrap(),
            )
        });
        (user, host, ns_inodes()["user"])
    });
    assert_eq!(parent_user, outer_user);
    assert_ne!(
        inner_user, outer_user,
        "the inner sandbox has its own user namespace"
    );
    assert_eq!(inner_host, "inner");
}

/// A sandbox's hostname resolves inside, to loopback (an `/etc/hosts` of
/// the sandbox's own, the host's lines and one for it), as a container's
/// does: a program that looks its own name up finds it. A test's own
/// `/etc/hosts` wins, and the host's file is untouched.
#[test]
fn the_hostname_resolves_inside_and_a_test_s_own_hosts_file_wins() {
    use std::net::ToSocketAddrs;
    let before = std::fs::read("/etc/hosts").unwrap();
    let ns = Sandbox::builder().hostname("db-1").build().unwrap();
    let (addrs, host_lines_kept) = ns.run(|| {
        let addrs: Vec<std::net::IpAddr> = ("db-1", 1)
            .to_socket_addrs()
            .map(|a| a.map(|a| a.ip()).collect())
            .unwrap_or_default();
        let text = std::fs::read_to_string("/etc/hosts").unwrap();
        (addrs, text.lines().any(|l| l.contains("localhost")))
    });
    assert!(
        !addrs.is_empty() && addrs.iter().all(std::net::IpAddr::is_loopback),
        "db-1 inside: {addrs:?}"
    );
    assert!(host_lines_kept, "the host's lines (localhost) are gone");
    assert_eq!(std::fs::read("/etc/hosts").unwrap(), before);

    let own = Sandbox::builder()
        .hostname("db-2")
        .file("/etc/hosts", "10.1.2.3\tdb-2\n")
        .build()
        .unwrap();
    let text = own.run(|| std::fs::read_to_string("/etc/hosts").unwrap());
    assert_eq!(text, "10.1.2.3\tdb-2\n");
}
