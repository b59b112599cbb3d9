//! Own loopback, nothing else, no way out.

use std::net::{Ipv6Addr, TcpListener, TcpStream};

use crate::common::interfaces;
use hermetic::{Sandbox, isolated};
use rstest::rstest;

#[rstest]
fn only_lo_is_there_and_it_is_up(#[from(isolated)] ns: Sandbox) {
    let (ifaces, lo_flags, v4, v6) = ns.run(|| {
        let flags = std::fs::read_to_string("/sys/class/net/lo/flags").unwrap();
        let v4 = TcpListener::bind("127.0.0.1:0").is_ok();
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok();
        (interfaces(), flags.trim().to_owned(), v4, v6)
    });
    assert_eq!(ifaces, ["lo"]);
    let flags = u32::from_str_radix(lo_flags.trim_start_matches("0x"), 16).unwrap();
    assert_ne!(
        flags & libc::IFF_UP as u32,
        0,
        "lo is down: flags {lo_flags}"
    );
    assert!(v4, "127.0.0.1 is not assigned");
    assert!(v6, "::1 is not assigned");
}

#[rstest]
fn lo_carries_traffic_on_both_families(#[from(isolated)] ns: Sandbox) {
    let echoed = ns.run(|| {
        use std::io::{Read, Write};
        let mut got = Vec::new();
        for addr in ["127.0.0.1:9000", "[::1]:9000"] {
            let l = TcpListener::bind(addr).unwrap();
            let mut c = TcpStream::connect(addr).unwrap();
            let (mut s, _) = l.accept().unwrap();
            c.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            got.push(String::from_utf8(buf.to_vec()).unwrap());
        }
        got
    });
    assert_eq!(echoed, ["ping", "ping"]);
}

#[rstest]
fn no_route_beyond_loopback(#[from(isolated)] ns: Sandbox) {
    let (v4, v6) = ns.run(|| {
        let v4 = std::fs::read_to_string("/proc/net/route").unwrap();
        let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap();
        (v4, v6)
    });
    // /proc/net/route: a header line and no routes at all.
    assert_eq!(v4.lines().count(), 1, "IPv4 routes inside: {v4}");
    // /proc/net/ipv6_route: every route is on lo (the last column).
    for line in v6.lines() {
        assert_eq!(
            line.split_whitespace().last(),
            Some("lo"),
            "IPv6 route off lo: {line}"
        );
    }
}

#[rstest]
fn host_loopback_listeners_are_unreachable(#[from(isolated)] ns: Sandbox) {
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let err = ns.run(move || {
        TcpStream::connect(("127.0.0.1", port))
            .map(|_| 0)
            .unwrap_err()
            .raw_os_error()
            .unwrap()
    });
    assert_eq!(
        err,
        libc::ECONNREFUSED,
        "the host's listener answered from inside"
    );
    // The host's listener is still there and reachable from the host.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[rstest]
fn sys_class_net_is_the_sandboxes(#[from(isolated)] ns: Sandbox) {
    let outside = interfaces();
    let inside = ns.run(interfaces);
    assert_eq!(inside, ["lo"]);
    assert!(outside.contains(&"lo".to_owned()));
}

#[test]
fn many_sandboxes_bind_8080_at_once() {
    let sandboxes: Vec<Sandbox> = (0..8).map(|_| Sandbox::new().unwrap()).collect();
    // Hold a listener on 8080 in each at the same time.
    let servers: Vec<_> = sandboxes
        .iter()
        .map(|ns| {
            ns.spawn(|| {
                let _l = TcpListener::bind("127.0.0.1:8080").unwrap();
                std::thread::sleep(std::time::Duration::from_secs(3600));
            })
            .unwrap()
        })
        .collect();
    std::thread::scope(|s| {
        for ns in &sandboxes {
            s.spawn(|| {
                let ok = ns.run(|| {
                    hermetic::connect_retry("127.0.0.1:8080")
                        .peer_addr()
                        .is_ok()
                });
                assert!(ok);
            });
        }
    });
    drop(servers);
}
