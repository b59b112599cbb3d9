//! Link faults without netem: delay, loss, duplication and reordering
//! carried by the switch in user space, reproducible with a seed.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use hermetic::{LinkShape, Network};

use crate::common;

/// Spawns `server` on `host` and returns once it is ready: it calls the
/// function it is given after binding its socket. Fails if the server ends
/// before.
fn spawn_ready<F>(net: &Network, host: &str, server: F) -> hermetic::Spawned
where
    F: FnOnce(Box<dyn FnOnce()>),
{
    use std::io::{Read, Write};
    let (mut ready_r, mut ready_w) = std::io::pipe().unwrap();
    let spawned = net
        .host(host)
        .spawn(move || server(Box::new(move || ready_w.write_all(b"r").unwrap())))
        .unwrap();
    ready_r
        .read_exact(&mut [0u8; 1])
        .expect("the server ended before it was ready (see its panic above)");
    spawned
}

/// Starts a UDP echo server on port 7400 of `host`.
fn echo(net: &Network, host: &str) -> hermetic::Spawned {
    spawn_ready(net, host, |ready| {
        let s = UdpSocket::bind("0.0.0.0:7400").unwrap();
        ready();
        let mut buf = [0u8; 1500];
        loop {
            let (n, from) = s.recv_from(&mut buf).unwrap();
            let _ = s.send_to(&buf[..n], from);
        }
    })
}

/// Round trips of one datagram from `from` to `to`'s echo server, each
/// bounded by `patience`: their durations, None for a lost one.
fn round_trips(
    net: &Network,
    from: &str,
    to: &str,
    n: usize,
    patience: Duration,
) -> Vec<Option<Duration>> {
    let to = to.to_owned();
    net.host(from).run(move || {
        let addr: SocketAddr = (to.as_str(), 7400)
            .to_socket_addrs()
            .unwrap()
            .next()
            .unwrap();
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(patience)).unwrap();
        (0..n)
            .map(|i| {
                let t = Instant::now();
                s.send_to(&(i as u32).to_be_bytes(), addr).unwrap();
                let mut buf = [0u8; 4];
                loop {
                    match s.recv_from(&mut buf) {
                        Ok((4, _)) if buf == (i as u32).to_be_bytes() => return Some(t.elapsed()),
                        Ok(_) => continue,
                        Err(_) => return None,
                    }
                }
            })
            .collect()
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn a_delay_lengthens_round_trips_and_unshape_restores_them() {
    let net = Network::builder().host("h1").host("h2").build().unwrap();
    let _echo = echo(&net, "h2");
    // Also resolves h2's address before the link is shaped.
    assert!(round_trips(&net, "h1", "h2", 1, Duration::from_secs(20))[0].is_some());
    net.shape("h2", &LinkShape::delay(Duration::from_millis(100)))
        .unwrap();
    let shaped: Vec<Duration> = round_trips(&net, "h1", "h2", 5, Duration::from_secs(5))
        .into_iter()
        .map(|r| r.expect("a datagram lost on a link with no loss"))
        .collect();
    // 100 ms each way through h2's link: a lower bound the impairment
    // process guarantees, and well under a second.
    assert!(
        shaped.iter().all(|&d| d >= Duration::from_millis(100)),
        "{shaped:?}"
    );
    assert!(
        median(shaped.clone()) < Duration::from_secs(1),
        "{shaped:?}"
    );
    net.unshape("h2").unwrap();
    let plain: Vec<Duration> = round_trips(&net, "h1", "h2", 5, Duration::from_secs(5))
        .into_iter()
        .map(|r| r.expect("a datagram lost on a plain link"))
        .collect();
    assert!(
        median(plain.clone()) < Duration::from_millis(100),
        "{plain:?}"
    );
}

#[test]
fn a_blackhole_drops_everything_and_lifting_it_restores() {
    let net = Network::builder().host("h1").host("h2").build().unwrap();
    let _echo = echo(&net, "h2");
    assert!(round_trips(&net, "h1", "h2", 1, Duration::from_secs(20))[0].is_some());
    net.blackhole("h2", true).unwrap();
    let lost = round_trips(&net, "h1", "h2", 3, Duration::from_millis(300));
    assert_eq!(lost, vec![None, None, None]);
    net.blackhole("h2", false).unwrap();
    assert!(round_trips(&net, "h1", "h2", 1, Duration::from_secs(20))[0].is_some());
}

/// In a fresh network: 200 numbered datagrams from h1 to h2 through 30%
/// loss seeded with `seed`; the numbers that arrived.
fn arrivals(seed: u64) -> Vec<u32> {
    let net = Network::builder().host("h1").host("h2").build().unwrap();
    let _echo = echo(&net, "h2");
    // Addresses resolved before the shape: only the datagrams below cross
    // the shaped link (ARP and neighbour discovery are never impaired).
    assert!(round_trips(&net, "h1", "h2", 1, Duration::from_secs(20))[0].is_some());
    let receiver = spawn_ready(&net, "h2", |ready| {
        let s = UdpSocket::bind("0.0.0.0:7500").unwrap();
        ready();
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        loop {
            let (n, _) = s.recv_from(&mut buf).unwrap();
            if &buf[..n] == b"end" {
                break;
            }
            got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
        }
        let text: Vec<String> = got.iter().map(u32::to_string).collect();
        std::fs::write("/tmp/got", text.join(" ")).unwrap();
    });
    net.shape("h2", &LinkShape::loss(30.0).with_seed(seed))
        .unwrap();
    net.host("h1").run(|| {
        let addr = ("h2", 7500).to_socket_addrs().unwrap().next().unwrap();
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for i in 0..200u32 {
            s.send_to(&i.to_be_bytes(), addr).unwrap();
        }
        // Many ends: one gets through (0.3^64 of the time none would).
        for _ in 0..64 {
            s.send_to(b"end", addr).unwrap();
        }
    });
    receiver.join().unwrap();
    numbers_got(&net)
}

/// The numbers h2's receiver wrote to its /tmp/got.
fn numbers_got(net: &Network) -> Vec<u32> {
    let text = net
        .host("h2")
        .run(|| std::fs::read_to_string("/tmp/got").unwrap());
    text.split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

#[test]
fn a_seed_drops_the_same_datagrams_every_time() {
    let first = arrivals(42);
    let again = arrivals(42);
    let other = arrivals(43);
    assert_eq!(first, again, "the same seed dropped other datagrams");
    assert_ne!(first, other, "another seed dropped the same datagrams");
    let lost = 200 - first.len();
    assert!((20..=100).contains(&lost), "{lost} of 200 lost at 30%");
}

/// In a fresh network: `sent` numbered datagrams from h1 to h2, whose
/// received direction has `shape`; the first `expect` numbers that arrive,
/// in their order of arrival (20 s at most for each).
fn received_through(shape: LinkShape, sent: u32, expect: usize) -> Vec<u32> {
    let net = Network::builder().host("h1").host("h2").build().unwrap();
    let _echo = echo(&net, "h2");
    assert!(round_trips(&net, "h1", "h2", 1, Duration::from_secs(20))[0].is_some());
    let receiver = spawn_ready(&net, "h2", move |ready| {
        let s = UdpSocket::bind("0.0.0.0:7500").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        ready();
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while got.len() < expect {
            let (n, _) = s.recv_from(&mut buf).unwrap_or_else(|e| {
                // What the kernel dropped here, should that be where it went.
                let udp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
                let counters: Vec<&str> = udp.lines().filter(|l| l.starts_with("Udp:")).collect();
                panic!(
                    "a datagram did not come: {e} ({} of {expect} came; {counters:?})",
                    got.len()
                )
            });
            got.push(u32::from_be_bytes(buf[..n].try_into().unwrap()).to_string());
        }
        std::fs::write("/tmp/got", got.join(" ")).unwrap();
    });
    net.shape_each_way("h2", &LinkShape::default(), &shape)
        .unwrap();
    net.host("h1").run(move || {
        let addr = ("h2", 7500).to_socket_addrs().unwrap().next().unwrap();
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for i in 0..sent {
            s.send_to(&i.to_be_bytes(), addr).unwrap();
        }
    });
    receiver
        .join()
        .expect("the receiver failed (see its panic above)");
    numbers_got(&net)
}

#[test]
fn duplication_delivers_datagrams_twice() {
    let got = received_through(LinkShape::default().with_duplicate(100.0), 50, 100);
    let expected: Vec<u32> = (0..50).flat_map(|i| [i, i]).collect();
    assert_eq!(got, expected);
}

#[test]
fn reordering_lets_some_datagrams_overtake_delayed_ones() {
    let shape = LinkShape::delay(Duration::from_millis(200))
        .with_reorder(50.0)
        .with_seed(7);
    let got = received_through(shape, 50, 50);
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, (0..50).collect::<Vec<u32>>(), "each arrives once");
    assert_ne!(got, sorted, "nothing overtook");
}

#[test]
fn partitions_and_heal_work_on_shaped_links() {
    let net = Network::builder()
        .host("h1")
        .host("h2")
        .host("h3")
        .build()
        .unwrap();
    let _echo = echo(&net, "h2");
    for from in ["h1", "h3"] {
        assert!(round_trips(&net, from, "h2", 1, Duration::from_secs(20))[0].is_some());
    }
    net.shape("h2", &LinkShape::delay(Duration::from_millis(20)))
        .unwrap();
    net.partition(&[&["h1"], &["h2", "h3"]]).unwrap();
    assert!(
        round_trips(&net, "h3", "h2", 1, Duration::from_secs(20))[0].is_some(),
        "same group"
    );
    assert_eq!(
        round_trips(&net, "h1", "h2", 1, Duration::from_millis(300)),
        vec![None]
    );
    net.heal().unwrap();
    assert!(
        round_trips(&net, "h1", "h2", 1, Duration::from_secs(20))[0].is_some(),
        "after heal"
    );
    // Unshaped while partitioned, the link goes back to its group.
    net.partition(&[&["h1"], &["h2", "h3"]]).unwrap();
    net.unshape("h2").unwrap();
    assert!(round_trips(&net, "h3", "h2", 1, Duration::from_secs(20))[0].is_some());
    assert_eq!(
        round_trips(&net, "h1", "h2", 1, Duration::from_millis(300)),
        vec![None]
    );
}

#[test]
fn a_shaped_link_taken_down_and_up_carries_again() {
    let net = Network::builder().host("h1").host("h2").build().unwrap();
    let _echo = echo(&net, "h2");
    assert!(round_trips(&net, "h1", "h2", 1, Duration::from_secs(20))[0].is_some());
    net.shape("h2", &LinkShape::delay(Duration::from_millis(5)))
        .unwrap();
    net.set_link("h2", false).unwrap();
    assert_eq!(
        round_trips(&net, "h1", "h2", 1, Duration::from_millis(300)),
        vec![None]
    );
    net.set_link("h2", true).unwrap();
    assert!(
        round_trips(&net, "h1", "h2", 1, Duration::from_secs(20))[0].is_some(),
        "the impairment process stopped carrying when the link went down"
    );
}

#[test]
#[ignore = "helper, run by dropping_a_shaped_network_prints_nothing"]
fn helper_drops_shaped_networks() {
    for _ in 0..3 {
        let net = Network::builder().host("h1").host("h2").build().unwrap();
        net.shape("h1", &LinkShape::delay(Duration::from_millis(5)))
            .unwrap();
        net.shape("h2", &LinkShape::loss(1.0)).unwrap();
        drop(net);
    }
    let net = Network::builder().host("h1").build().unwrap();
    net.shape("h1", &LinkShape::delay(Duration::from_millis(5)))
        .unwrap();
    net.close().unwrap();
}

#[test]
fn dropping_a_shaped_network_prints_nothing() {
    let out = common::run_self("helper_drops_shaped_networks", &[], &["--nocapture"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("hermetic:") && !stderr.contains("hermetic:"),
        "the teardown printed something:\n{stdout}\n{stderr}"
    );
}

#[test]
fn reset_connections_resets_a_hosts_tcp_connections_and_keeps_its_listeners() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    let net = Network::builder().host("h1").host("h2").build().unwrap();
    assert_eq!(net.reset_connections("h2").unwrap(), 0, "nothing to reset");
    // h2 accepts connections and holds each open, reading until it ends.
    let _server = spawn_ready(&net, "h2", |ready| {
        let l = TcpListener::bind("0.0.0.0:7500").unwrap();
        ready();
        for c in l.incoming() {
            let mut c = c.unwrap();
            std::thread::spawn(move || while c.read(&mut [0u8; 64]).is_ok_and(|n| n > 0) {});
        }
    });
    let mut b = [0u8; 1];

    // h1 connects, says so through a pipe, then waits on the connection
    // (bounded: 20 s) and sends back how its read ended.
    let (mut events_r, mut events_w) = std::io::pipe().unwrap();
    let _client = net
        .host("h1")
        .spawn(move || {
            let mut c = TcpStream::connect("h2:7500").unwrap();
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            events_w.write_all(b"C").unwrap();
            let ended = match c.read(&mut [0u8; 64]) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => b'R',
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => b'T',
                Ok(0) => b'E',
                _ => b'?',
            };
            events_w.write_all(&[ended]).unwrap();
        })
        .unwrap();
    events_r.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"C");

    assert_eq!(net.reset_connections("h2").unwrap(), 1);
    events_r.read_exact(&mut b).unwrap();
    assert_eq!(
        b[0] as char, 'R',
        "h1's read ended with R(eset) expected; T: timed out, E: end of file"
    );

    // The listener stays: h1 connects again.
    net.host("h1")
        .run(|| {
            TcpStream::connect("h2:7500")
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .unwrap();
    assert!(net.reset_connections("h3").is_err(), "an unknown host");
}

#[test]
fn each_direction_of_a_link_can_be_shaped_on_its_own() {
    let net = Network::builder().host("h1").host("h2").build().unwrap();
    // An echo server on h2 that also counts what reaches it, in order: once
    // an echo comes back, every datagram before it has been counted.
    let _echo = spawn_ready(&net, "h2", |ready| {
        use std::io::Write;
        let s = UdpSocket::bind("0.0.0.0:7400").unwrap();
        let mut heard = std::fs::File::create("/tmp/heard").unwrap();
        ready();
        let mut buf = [0u8; 1500];
        loop {
            let (n, from) = s.recv_from(&mut buf).unwrap();
            heard.write_all(b".").unwrap();
            let _ = s.send_to(&buf[..n], from);
        }
    });
    assert!(round_trips(&net, "h1", "h2", 1, Duration::from_secs(20))[0].is_some());
    let none = LinkShape::default();
    let cut = LinkShape::loss(100.0);

    // What h2 sends is lost: the requests arrive, no answer comes back.
    net.shape_each_way("h2", &cut, &none).unwrap();
    let lost = round_trips(&net, "h1", "h2", 3, Duration::from_millis(300));
    assert_eq!(lost, vec![None, None, None]);
    // What h2 receives is lost: the requests never arrive.
    net.shape_each_way("h2", &none, &cut).unwrap();
    let lost = round_trips(&net, "h1", "h2", 3, Duration::from_millis(300));
    assert_eq!(lost, vec![None, None, None]);

    net.unshape("h2").unwrap();
    assert!(round_trips(&net, "h1", "h2", 1, Duration::from_secs(20))[0].is_some());
    let heard = net
        .host("h2")
        .run(|| std::fs::read("/tmp/heard").unwrap().len());
    assert_eq!(
        heard,
        1 + 3 + 1,
        "the first request, the 3 sent-lossy ones, the last"
    );

    let err = net.shape_each_way("h2", &none, &none).unwrap_err();
    assert!(
        matches!(err, hermetic::Error::InvalidOption { .. }),
        "{err}"
    );
}

#[test]
fn tcp_delivers_everything_intact_over_a_lossy_delayed_link() {
    use std::io::{Read, Write};
    let net = Network::builder().host("h1").host("h2").build().unwrap();
    // h2 sends 4 MiB of a known pattern to whoever connects.
    let _server = net
        .host("h2")
        .spawn(|| {
            let l = std::net::TcpListener::bind("0.0.0.0:7600").unwrap();
            for c in l.incoming() {
                let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
                let _ = c.unwrap().write_all(&data);
            }
        })
        .unwrap();
    net.host("h1")
        .run(|| drop(hermetic::connect_retry("h2:7600")));
    net.shape(
        "h2",
        &LinkShape::delay(Duration::from_millis(5))
            .with_jitter(Duration::from_millis(2))
            .with_loss(3.0)
            .with_duplicate(2.0)
            .with_reorder(5.0)
            .with_seed(1),
    )
    .unwrap();
    let intact = net.host("h1").run(|| {
        let mut c = std::net::TcpStream::connect("h2:7600").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        got.len() == 4 << 20 && got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8)
    });
    assert!(intact, "the stream arrived short or damaged");
}

/// A link shaped, unshaped, or taken down and brought up carries the very
/// next datagram: each call returns only once the links it made or brought
/// up carry (their carrier taken by the kernel's link watch, their bridge
/// port forwarding). One datagram, no retry, no ARP to wait for (the
/// sender's entry for the receiver is resolved, and stays so).
#[test]
fn a_link_carries_the_next_datagram_once_shaped_unshaped_or_brought_up() {
    let net = Network::builder().host("h1").host("h2").build().unwrap();
    let _echo = echo(&net, "h2");
    let once = |what: &str, round: usize| {
        assert_eq!(
            round_trips(&net, "h1", "h2", 1, Duration::from_secs(5))[0].map(|_| ()),
            Some(()),
            "round {round}: the first datagram after {what} was lost"
        );
    };
    once("the network was built", 0);
    for round in 0..8 {
        net.shape("h2", &LinkShape::delay(Duration::from_millis(1)))
            .unwrap();
        once("the link was shaped", round);
        net.unshape("h2").unwrap();
        once("the link was unshaped", round);
        net.set_link("h2", false).unwrap();
        net.set_link("h2", true).unwrap();
        once("the link came back up", round);
    }
}

/// A host that took its own end of the link down leaves the switch's end
/// with no carrier: bringing the link up is not refused for it (there is
/// nothing to wait for), and once the host brings its end back, datagrams
/// flow.
#[test]
fn set_link_up_does_not_wait_for_a_host_that_took_its_own_end_down() {
    let Some(ip) = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        crate::common::skip("no `ip` command (iproute2) on this host");
        return;
    };
    let net = Network::builder().host("h1").host("h2").build().unwrap();
    let _echo = echo(&net, "h2");
    let eth0 = |state: &'static str| {
        net.host("h2").run(move || {
            let status = std::process::Command::new(ip)
                .args(["link", "set", "eth0", state])
                .status()
                .expect("ip runs inside");
            assert!(status.success(), "ip link set eth0 {state}");
        })
    };
    eth0("down");
    net.set_link("h2", false).unwrap();
    net.set_link("h2", true)
        .expect("set_link(up) with the host's end down");
    eth0("up");
    // Its address stayed; the route of its subnet came back with it.
    assert!(round_trips(&net, "h1", "h2", 1, Duration::from_secs(20))[0].is_some());
}
