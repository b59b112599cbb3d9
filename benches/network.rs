//! An 8-host network: `Network::builder().build()` against doing the same
//! with `ip` commands (as root only: `ip netns add` needs it), measured in
//! the same run. `cargo bench --bench network`.
//!
//! The `ip` script makes less than a network does (no mount, PID, UTS or
//! IPC namespaces, no /etc/hosts): it is the floor a shell script pays.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hermetic::Network;

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

fn main() {
    let rounds = if std::env::args().any(|a| a == "--quick") {
        3
    } else {
        9
    };
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
