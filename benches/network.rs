//! Two measurements, each against its baseline in the same run;
//! `cargo bench --bench network` (`-- --quick` for fewer rounds).
//!
//! 1. An 8-host network: `Network::builder().build()` against doing the
//!    same with `ip` commands (as root only: `ip netns add` needs it). The
//!    `ip` script makes less than a network does (no mount, PID, UTS or IPC
//!    namespaces, no /etc/hosts): it is the floor a shell script pays.
//! 2. A link carried in user space (what [`LinkShape`] delay, loss,
//!    duplication and reordering use, here with no impairment at all)
//!    against the kernel bridge: UDP round trips and TCP throughput between
//!    two hosts, each link alternately plain and relayed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hermetic::{LinkShape, Network};

const HOSTS: usize = 8;

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

/// The same topology with one `ip` command per step, as a script would.
fn ip_network(tag: &str) -> Vec<String> {
    let sw = format!("hb{tag}sw");
    ip(&["netns", "add", &sw]);
    ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &sw, "link", "set", "br0", "up"]);
    let mut names = vec![sw.clone()];
    for i in 0..HOSTS {
        let h = format!("hb{tag}h{i}");
        let port = format!("port{i}");
        let addr = format!("10.77.0.{}/24", i + 1);
        ip(&["netns", "add", &h]);
        ip(&[
            "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &h,
        ]);
        ip(&["-n", &sw, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &sw, "link", "set", &port, "up"]);
        ip(&["-n", &h, "addr", "add", &addr, "dev", "eth0"]);
        ip(&["-n", &h, "link", "set", "lo", "up"]);
        ip(&["-n", &h, "link", "set", "eth0", "up"]);
        ip(&["-n", &h, "route", "add", "default", "dev", "eth0"]);
        names.push(h);
    }
    names
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Round trips of one 64-byte UDP datagram from h1 to h2's echo server:
/// the median and the 99th percentile.
fn udp_round_trips(net: &Network, n: usize) -> (Duration, Duration) {
    net.host("h1").run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect("h2:7400").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let mut trips = Vec::with_capacity(n);
        for i in 0..n + 100 {
            let t = Instant::now();
            s.send(&buf).unwrap();
            s.recv(&mut buf)
                .expect("an echo lost on a link with no loss");
            if i >= 100 {
                trips.push(t.elapsed());
            }
        }
        trips.sort();
        (trips[n / 2], trips[n * 99 / 100])
    })
}

/// Bytes per second of one TCP stream of `bytes` from h1 to h2's sink,
/// until the sink has read them all.
fn tcp_throughput(net: &Network, bytes: usize) -> f64 {
    net.host("h1").run(move || {
        let chunk = vec![7u8; 1 << 16];
        let t = Instant::now();
        let mut c = TcpStream::connect("h2:7401").unwrap();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            c.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut done = [0u8; 1];
        c.read_exact(&mut done).unwrap();
        bytes as f64 / t.elapsed().as_secs_f64()
    })
}

/// The user-space link against the kernel bridge.
fn relayed_link(rounds: usize) {
    let net = Network::builder().host("h1").host("h2").build().unwrap();
    let _echo = net
        .host("h2")
        .spawn(|| -> () {
            let s = UdpSocket::bind("0.0.0.0:7400").unwrap();
            let mut buf = [0u8; 1500];
            loop {
                let (n, from) = s.recv_from(&mut buf).unwrap();
                s.send_to(&buf[..n], from).unwrap();
            }
        })
        .unwrap();
    let _sink = net
        .host("h2")
        .spawn(|| {
            let l = TcpListener::bind("0.0.0.0:7401").unwrap();
            let mut buf = vec![0u8; 1 << 16];
            for c in l.incoming() {
                let mut c = c.unwrap();
                while c.read(&mut buf).is_ok_and(|n| n > 0) {}
                let _ = c.write_all(b"k");
            }
        })
        .unwrap();
    // Both servers up and h2's address known before anything is measured.
    hermetic_ready(&net);
    let plain = LinkShape::loss(0.0); // relayed, unimpaired
    let (mut k_rtt, mut r_rtt, mut k_p99, mut r_p99) = (vec![], vec![], vec![], vec![]);
    let (mut k_tput, mut r_tput) = (vec![], vec![]);
    for _ in 0..rounds {
        net.unshape("h2").unwrap();
        let (m, p) = udp_round_trips(&net, 2000);
        k_rtt.push(m);
        k_p99.push(p);
        k_tput.push(tcp_throughput(&net, 256 << 20));
        net.shape("h2", &plain).unwrap();
        let (m, p) = udp_round_trips(&net, 2000);
        r_rtt.push(m);
        r_p99.push(p);
        r_tput.push(tcp_throughput(&net, 256 << 20));
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mbs = |v: Vec<f64>| {
        let mut v = v;
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] / 1e6
    };
    let (k_rtt, r_rtt) = (median(k_rtt), median(r_rtt));
    let (k_p99, r_p99) = (median(k_p99), median(r_p99));
    let (k_tput, r_tput) = (mbs(k_tput), mbs(r_tput));
    println!("\nA link between two hosts, median of {rounds} rounds:");
    println!("                          kernel bridge     relayed     ratio");
    println!(
        "  UDP round trip, median  {:>10.1} us {:>9.1} us   {:.2}x  (+{:.1} us)",
        us(k_rtt),
        us(r_rtt),
        us(r_rtt) / us(k_rtt),
        us(r_rtt) - us(k_rtt)
    );
    println!(
        "  UDP round trip, p99     {:>10.1} us {:>9.1} us   {:.2}x",
        us(k_p99),
        us(r_p99),
        us(r_p99) / us(k_p99)
    );
    println!(
        "  TCP stream              {:>8.0} MB/s {:>7.0} MB/s   {:.2}x",
        k_tput,
        r_tput,
        r_tput / k_tput
    );
}

/// Waits until h1 reaches both of h2's servers.
fn hermetic_ready(net: &Network) {
    net.host("h1").run(|| {
        drop(hermetic::connect_retry("h2:7401"));
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect("h2:7400").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while s.send(b"?").is_err() || s.recv(&mut [0u8; 8]).is_err() {
            assert!(Instant::now() < deadline, "h2's echo server never answered");
        }
    });
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 9 };
    relayed_link(if quick { 1 } else { 3 });
    let builder = {
        let mut b = Network::builder();
        for i in 0..HOSTS {
            b.host(format!("h{i}"));
        }
        b
    };
    let root = nix::unistd::geteuid().is_root();
    let has_ip = Command::new("ip").arg("-V").output().is_ok();
    let (mut ours, mut theirs, mut drops) = (Vec::new(), Vec::new(), Vec::new());
    drop(builder.build().unwrap()); // warm up
    for r in 0..rounds {
        let t = Instant::now();
        let net = builder.build().unwrap();
        ours.push(t.elapsed());
        let t = Instant::now();
        drop(net);
        drops.push(t.elapsed());
        if root && has_ip {
            let tag = format!("{}r{r}", std::process::id());
            let t = Instant::now();
            let names = ip_network(&tag);
            theirs.push(t.elapsed());
            for n in names {
                ip(&["netns", "del", &n]);
            }
        }
    }
    let ours = median(ours);
    println!("\n8-host network, median of {rounds}:");
    println!(
        "  Network::build()           {:>8.2} ms",
        ours.as_secs_f64() * 1e3
    );
    println!(
        "  drop(Network)              {:>8.2} ms",
        median(drops).as_secs_f64() * 1e3
    );
    if theirs.is_empty() {
        println!("  ip commands                (skipped: needs root and iproute2)");
    } else {
        let theirs = median(theirs);
        println!(
            "  ip commands (67 of them)   {:>8.2} ms   ratio ours/ip = {:.2}x",
            theirs.as_secs_f64() * 1e3,
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
    }
}
