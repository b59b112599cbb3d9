//! Networks of sandboxes: hosts, names, partitions, shaping, teardown.

use crate::common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::common::{eventually, ns_inodes, pids_with_marker};
use hermetic::{Error, LinkShape, Network, network};
use rstest::rstest;

/// Starts a server on port 7000 of `host` that answers every connection
/// with the host's name; returns once it listens (it says so through a
/// pipe of the test's, which closures inherit).
fn serve_name(net: &Network, host: &str) -> hermetic::Spawned {
    let name = host.to_owned();
    let (listening_r, listening_w) = nix::unistd::pipe().unwrap();
    let server = net
        .host(host)
        .spawn(move || {
            let l = TcpListener::bind("0.0.0.0:7000").unwrap();
            nix::unistd::write(&listening_w, b"l").unwrap();
            for c in l.incoming() {
                let _ = c.unwrap().write_all(name.as_bytes());
            }
        })
        .unwrap();
    use std::os::fd::AsFd;
    let mut fds = [nix::poll::PollFd::new(
        listening_r.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(60_000u16)).unwrap();
    assert_eq!(ready, 1, "the server on {host} did not listen within 60 s");
    server
}

/// From `from`, asks `to:7000` (a listening [`serve_name`]) for its name,
/// by name through the network's /etc/hosts; None if no connection is made
/// within `within`.
fn ask_within(net: &Network, from: &str, to: &str, within: Duration) -> Option<String> {
    let to = to.to_owned();
    net.host(from).run(move || {
        let addr: SocketAddr = (to.as_str(), 7000)
            .to_socket_addrs()
            .unwrap()
            .next()
            .unwrap();
        let mut s = TcpStream::connect_timeout(&addr, within).ok()?;
        let mut name = String::new();
        s.read_to_string(&mut name).ok()?;
        Some(name)
    })
}

/// [`ask_within`] 300 ms: for a host that should not answer (a slow
/// machine can only make it not answer sooner, never answer wrongly).
fn ask(net: &Network, from: &str, to: &str) -> Option<String> {
    ask_within(net, from, to, Duration::from_millis(300))
}

/// [`ask_within`] 20 s: for a host that should answer, however loaded the
/// machine (the server already listens; TCP retries a lost SYN itself).
fn answer(net: &Network, from: &str, to: &str) -> Option<String> {
    ask_within(net, from, to, Duration::from_secs(20))
}

#[rstest]
fn hosts_share_no_namespace(#[from(network)] net: Network) {
    // Each host's processes live in a user namespace of its own (inside the
    // one the network's switch owns): no host holds a capability over
    // another host's network.
    let views: Vec<_> = net.hosts().iter().map(|h| h.run(ns_inodes)).collect();
    let outside = ns_inodes();
    for v in &views {
        assert_ne!(v["user"], outside["user"]);
    }
    for kind in ["user", "net", "uts", "mnt", "pid", "ipc"] {
        let mut seen: Vec<u64> = views.iter().map(|v| v[kind]).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), views.len(), "hosts share a {kind} namespace");
    }
}

#[rstest]
fn each_host_has_its_name_lo_and_one_addressed_link(#[from(network)] net: Network) {
    for host in net.hosts() {
        let (hostname, ifaces, addrs) = host.run(|| {
            let mut ifaces = common::interfaces();
            ifaces.sort();
            let addrs: Vec<(String, IpAddr)> = nix::ifaddrs::getifaddrs()
                .unwrap()
                .filter_map(|a| {
                    let ip = a.address?.as_sockaddr_in()?.ip();
                    Some((a.interface_name, IpAddr::V4(ip)))
                })
                .collect();
            (
                nix::unistd::gethostname().unwrap().into_string().unwrap(),
                ifaces,
                addrs,
            )
        });
        assert_eq!(hostname, host.name());
        assert_eq!(ifaces, ["eth0", "lo"]);
        assert!(addrs.contains(&("eth0".into(), host.addr())), "{addrs:?}");
    }
}

#[rstest]
fn every_host_resolves_every_other(
    #[from(network)]
    #[with(4)]
    net: Network,
) {
    let expected: Vec<(String, IpAddr)> = net
        .hosts()
        .iter()
        .map(|h| (h.name().to_owned(), h.addr()))
        .collect();
    for host in net.hosts() {
        let names = expected.clone();
        let resolved = host.run(move || {
            names
                .iter()
                .map(|(name, _)| {
                    (name.as_str(), 0)
                        .to_socket_addrs()
                        .unwrap()
                        .next()
                        .unwrap()
                        .ip()
                })
                .collect::<Vec<_>>()
        });
        let want: Vec<IpAddr> = expected.iter().map(|(_, a)| *a).collect();
        assert_eq!(resolved, want, "as seen from {}", host.name());
    }
}

#[test]
fn connect_by_name_across_hosts() {
    let net = Network::builder().host("a").host("b").build().unwrap();
    let _server = serve_name(&net, "b");
    let got = net.host("a").run(|| {
        let mut s = String::new();
        hermetic::connect_retry("b:7000")
            .read_to_string(&mut s)
            .unwrap();
        s
    });
    assert_eq!(got, "b");
}

#[test]
fn real_programs_talk_across_hosts() {
    let net = Network::builder()
        .host("web")
        .host("client")
        .build()
        .unwrap();
    let web = net.host("web");
    web.run(|| {
        std::fs::create_dir("/tmp/www").unwrap();
        std::fs::write("/tmp/www/hello.txt", "served from web\n").unwrap();
    });
    let mut server = web
        .command("python3")
        .args([
            "-m",
            "http.server",
            "8000",
            "--bind",
            "0.0.0.0",
            "--directory",
            "/tmp/www",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = net
        .host("client")
        .command("sh")
        .args([
            "-c",
            "for i in $(seq 200); do curl -sf --max-time 2 http://web:8000/hello.txt && exit 0; \
             sleep 0.05; done; exit 1",
        ])
        .output()
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(out.status.success(), "curl failed: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "served from web\n");
}

#[rstest]
fn partition_cuts_between_groups_and_heal_restores(#[from(network)] net: Network) {
    let _servers: Vec<_> = ["h1", "h2", "h3"]
        .iter()
        .map(|h| serve_name(&net, h))
        .collect();
    assert_eq!(answer(&net, "h1", "h3").as_deref(), Some("h3"));

    net.partition(&[&["h1", "h2"], &["h3"]]).unwrap();
    assert_eq!(
        answer(&net, "h1", "h2").as_deref(),
        Some("h2"),
        "same group"
    );
    assert_eq!(ask(&net, "h1", "h3"), None, "across groups");
    assert_eq!(ask(&net, "h3", "h2"), None, "across groups");

    // A new partition replaces the old one; hosts left out are alone.
    net.partition(&[&["h2", "h3"]]).unwrap();
    assert_eq!(answer(&net, "h2", "h3").as_deref(), Some("h3"));
    assert_eq!(ask(&net, "h1", "h2"), None, "h1 is in no group");

    net.heal().unwrap();
    for (from, to) in [("h1", "h3"), ("h3", "h1"), ("h2", "h1")] {
        assert_eq!(
            answer(&net, from, to).as_deref(),
            Some(to),
            "{from} -> {to} after heal"
        );
    }
}

#[rstest]
fn a_link_goes_down_and_up(
    #[from(network)]
    #[with(2)]
    net: Network,
) {
    let _server = serve_name(&net, "h2");
    assert!(answer(&net, "h1", "h2").is_some());
    net.set_link("h2", false).unwrap();
    assert_eq!(ask(&net, "h1", "h2"), None);
    net.set_link("h2", true).unwrap();
    assert!(
        answer(&net, "h1", "h2").is_some(),
        "h2 unreachable after its link came back"
    );
}

/// Seconds for `host` to receive `bytes` from `server` (which streams
/// zeros on port 7100).
fn transfer_secs(net: &Network, client: &str, server_host: &str, bytes: usize) -> f64 {
    let server_name = server_host.to_owned();
    net.host(client).run(move || {
        let mut s = hermetic::connect_retry((server_name.as_str(), 7100));
        let mut buf = vec![0u8; 64 << 10];
        let mut got = 0;
        let t = Instant::now();
        while got < bytes {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the stream ended early");
            got += n;
        }
        t.elapsed().as_secs_f64()
    })
}

/// Starts a server on port 7100 of `host` that streams to whoever connects.
fn streamer(net: &Network, host: &str) -> hermetic::Spawned {
    net.host(host)
        .spawn(|| {
            let l = TcpListener::bind("0.0.0.0:7100").unwrap();
            for c in l.incoming() {
                let mut c = c.unwrap();
                let chunk = vec![0u8; 64 << 10];
                while c.write_all(&chunk).is_ok() {}
            }
        })
        .unwrap()
}

/// The least time `size` bytes take through a token bucket of `rate`
/// bytes a second, whatever the machine's load (a slow machine only makes
/// it slower): all but the bucket's burst (20 ms of rate) waits for tokens.
fn bucket_floor(size: usize, rate: u64) -> f64 {
    (size as f64 - 0.02 * rate as f64) / rate as f64
}

#[rstest]
fn a_rate_limit_lowers_throughput(
    #[from(network)]
    #[with(2)]
    net: Network,
) {
    let _server = streamer(&net, "h2");
    let size = 1 << 20;
    let fast = transfer_secs(&net, "h1", "h2", size);
    let rate = 2 << 20; // 2 MiB/s: 1 MiB takes about half a second
    net.shape("h2", &LinkShape::rate(rate)).unwrap();
    assert!(
        root_qdisc(&net, "h2").contains("tbf"),
        "no tbf on h2's eth0: {}",
        root_qdisc(&net, "h2")
    );
    let slow = transfer_secs(&net, "h1", "h2", size);
    println!("1 MiB unshaped in {fast:.4}s, at 2 MiB/s in {slow:.4}s");
    let least = bucket_floor(size, rate);
    assert!(
        slow >= least,
        "shaped transfer beat the bucket: {slow}s < {least}s"
    );

    net.unshape("h2").unwrap();
    let qdisc = root_qdisc(&net, "h2");
    assert!(!qdisc.contains("tbf"), "unshape left {qdisc}");
    transfer_secs(&net, "h1", "h2", size);
}

#[rstest]
fn a_rate_can_limit_one_direction_only(
    #[from(network)]
    #[with(2)]
    net: Network,
) {
    // h1 streams to whoever connects: h2 receives.
    let _server = streamer(&net, "h1");
    let none = LinkShape::default();
    let (size, rate) = (1 << 20, 2 << 20);
    // What h2 receives: a qdisc on its port at the switch, not on its eth0;
    // the stream to h2 obeys the token bucket's lower bound.
    net.shape_each_way("h2", &none, &LinkShape::rate(rate))
        .unwrap();
    let qdisc = root_qdisc(&net, "h2");
    assert!(
        !qdisc.contains("tbf"),
        "a received rate on h2's eth0: {qdisc}"
    );
    let slow = transfer_secs(&net, "h2", "h1", size);
    let least = bucket_floor(size, rate);
    assert!(
        slow >= least,
        "received faster than the rate: {slow}s < {least}s"
    );
    // What it sends: on its eth0.
    net.shape_each_way("h2", &LinkShape::rate(1 << 20), &none)
        .unwrap();
    let qdisc = root_qdisc(&net, "h2");
    assert!(qdisc.contains("tbf"), "no tbf on h2's eth0: {qdisc}");
    net.unshape("h2").unwrap();
    assert!(!root_qdisc(&net, "h2").contains("tbf"));
}

/// The root qdisc of `host`'s eth0, as `tc` shows it from inside.
fn root_qdisc(net: &Network, host: &str) -> String {
    // Not on an ordinary user's PATH on Debian.
    let tc = ["/usr/sbin/tc", "/sbin/tc"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("tc");
    let out = net
        .host(host)
        .command(tc)
        .args(["qdisc", "show", "dev", "eth0", "root"])
        .output()
        .expect("running tc (Debian package iproute2) inside the host");
    assert!(out.status.success(), "tc: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dropping_the_network_leaves_nothing() {
    let marker = format!("86400.{}5", std::process::id());
    let net = Network::builder().host("x").host("y").build().unwrap();
    let mut commands = Vec::new();
    for host in net.hosts() {
        commands.push(host.command("sleep").arg(&marker).spawn().unwrap());
        let m = marker.clone();
        host.run(move || {
            std::process::Command::new("sh")
                .args([
                    "-c",
                    &format!("setsid sleep {m} >/dev/null 2>&1 </dev/null &"),
                ])
                .status()
                .unwrap();
        });
    }
    assert!(eventually(|| pids_with_marker(&marker).len() == 4));
    let pids: Vec<u32> = net.hosts().iter().map(|h| h.pid()).collect();
    // The hosts file lives inside each host (a tmpfs of its own, per the
    // mount table), read-only: nothing of it is on the host's disk to be
    // left behind, even by a SIGKILL.
    let (fstype, write) = net.host("x").run(|| {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = info
            .lines()
            .find(|l| l.split(' ').nth(4) == Some("/etc/hosts"))
            .unwrap()
            .to_owned();
        let fstype = line.split(" - ").nth(1).unwrap().split(' ').next().unwrap();
        let write = std::fs::OpenOptions::new()
            .append(true)
            .open("/etc/hosts")
            .map_err(|e| e.raw_os_error());
        (fstype.to_owned(), write.err())
    });
    assert_eq!(fstype, "tmpfs");
    assert_eq!(write, Some(Some(libc::EROFS)));
    drop(net);
    assert_eq!(pids_with_marker(&marker), Vec::<u32>::new());
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    for mut c in commands {
        c.wait().unwrap();
    }
}

fn invalid(r: Result<impl std::fmt::Debug, Error>) -> (String, String) {
    match r.unwrap_err() {
        Error::InvalidOption { option, reason, .. } => (option.to_owned(), reason),
        e => panic!("expected InvalidOption, got {e:?}"),
    }
}

#[test]
fn bad_host_names_are_refused_by_name() {
    let (opt, why) = invalid(Network::builder().host("a").host("a").build());
    assert_eq!(opt, "host");
    assert!(why.contains("\"a\" is given twice"), "{why}");
    let (_, why) = invalid(Network::builder().host("").build());
    assert!(why.contains("empty"), "{why}");
    let (_, why) = invalid(Network::builder().host("bad_name").build());
    assert!(
        why.contains("\"bad_name\"") && why.contains("letters, digits"),
        "{why}"
    );
    let (_, why) = invalid(Network::builder().host("-x").build());
    assert!(why.contains("'-'"), "{why}");
    let (_, why) = invalid(Network::builder().host("db..test").build());
    assert!(why.contains("empty label"), "{why}");
    let (_, why) = invalid(Network::builder().host("db.").build());
    assert!(why.contains("empty label"), "{why}");
    let (_, why) = invalid(Network::builder().host("db.-x").build());
    assert!(why.contains("'-'"), "{why}");
    let (_, why) = invalid(Network::builder().host("10.0.0.9").build());
    assert!(why.contains("reads as an address"), "{why}");
    let (_, why) = invalid(Network::builder().host("a".repeat(65)).build());
    assert!(why.contains("64 bytes"), "{why}");
    let (_, why) = invalid(Network::builder().build());
    assert!(why.contains("at least one host"), "{why}");
}

/// Names of more than one label, as a cluster's hosts often have: each
/// host is called by its name, and the others resolve it.
#[test]
fn hosts_may_have_names_of_several_labels() {
    let net = Network::builder()
        .host("db.test")
        .host("node-1.cluster.local")
        .build()
        .unwrap();
    let db = net.host("db.test");
    let addr = db.addr();
    let seen = net.host("node-1.cluster.local").run(|| {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let name = name.trim_end().to_owned();
        let db: Vec<_> = ("db.test", 5432).to_socket_addrs().unwrap().collect();
        (name, db[0].ip().to_string())
    });
    assert_eq!(seen, ("node-1.cluster.local".to_owned(), addr.to_string()));
}

#[rstest]
fn bad_partitions_are_refused_by_name(
    #[from(network)]
    #[with(2)]
    net: Network,
) {
    let (opt, why) = invalid(net.partition(&[&["h1"], &["nope"]]));
    assert_eq!(opt, "partition");
    assert!(why.contains("\"nope\"") && why.contains("h1, h2"), "{why}");
    let (_, why) = invalid(net.partition(&[&["h1", "h2"], &["h2"]]));
    assert!(why.contains("\"h2\" is in group 0 and in group 1"), "{why}");
    let (opt, _) = invalid(net.shape("h9", &LinkShape::rate(1000)));
    assert_eq!(opt, "shape");
    let (_, why) = invalid(net.shape("h1", &LinkShape::default()));
    assert!(why.contains("nothing to shape"), "{why}");
}

#[rstest]
#[should_panic(expected = "no host named \"h7\" in this network; its hosts are: h1, h2, h3")]
fn unknown_host_panics_with_the_known_names(#[from(network)] net: Network) {
    net.host("h7");
}

#[test]
fn a_host_takes_options_of_its_own() {
    let mut db = hermetic::Sandbox::builder();
    db.tmpfs("/mnt").timeout(Duration::from_millis(500));
    let net = hermetic::NetworkBuilder::new()
        .host_with("db", &db)
        .host("app")
        .build()
        .unwrap();
    // A tmpfs is writable; the host's /mnt is read-only inside.
    let writable = |host: &str| {
        net.host(host)
            .run(|| std::fs::write("/mnt/probe", "x").is_ok())
    };
    assert!(writable("db"), "db lacks its own tmpfs on /mnt");
    assert!(!writable("app"), "app has db's tmpfs");
    // db's timeout is its own; its name and /etc/hosts are the network's.
    let err = net
        .host("db")
        .try_run(|| std::thread::sleep(Duration::from_secs(30)))
        .unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err:?}");
    let seen = net.host("db").run(|| {
        let name = nix::unistd::gethostname().unwrap();
        let app = ("app", 0).to_socket_addrs().unwrap().next().unwrap().ip();
        (name.into_string().unwrap(), app)
    });
    assert_eq!(seen, ("db".to_owned(), net.host("app").addr()));
}

#[test]
fn close_tears_the_network_down_and_reports() {
    let net = Network::builder().host("x").host("y").build().unwrap();
    let pids: Vec<u32> = net.hosts().iter().map(|h| h.pid()).collect();
    net.close().unwrap();
    for pid in pids {
        // Our children, reaped by close: nothing is left of them.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}

/// A host that runs its closures as a user of its own (no capability over
/// its network) is set up, shaped and reset all the same: hermetic's own
/// steps inside it run as root.
#[test]
fn a_host_of_a_user_of_its_own_is_set_up_shaped_and_reset() {
    let mut user = hermetic::Sandbox::builder();
    user.user(1000, 1000);
    let net = hermetic::Network::builder()
        .host_with("a", &user)
        .host("b")
        .build()
        .unwrap();
    let uid = net.host("a").run(|| nix::unistd::getuid().as_raw());
    assert_eq!(uid, 1000);
    net.shape(
        "a",
        &hermetic::LinkShape::delay(std::time::Duration::from_millis(1)),
    )
    .unwrap();
    net.unshape("a").unwrap();
    assert_eq!(net.reset_connections("a").unwrap(), 0);
}
