//! A short tour: what this host allows, then one sandbox and what is
//! different inside it.
//!
//! Run with `cargo run --example tour`.

use std::process::ExitCode;

use hermetic::Sandbox;

/// What a process can see of its surroundings.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct View {
    uid: u32,
    gid: u32,
    hostname: String,
    interfaces: Vec<String>,
    pids: Vec<u32>,
    mounts: usize,
}

fn look() -> View {
    let mut interfaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    interfaces.sort();
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort();
    View {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        hostname: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        interfaces,
        pids,
        mounts: std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| m.lines().count())
            .unwrap_or(0),
    }
}

fn show(label: &str, v: &View) {
    let pids = if v.pids.len() > 8 {
        format!("{} processes", v.pids.len())
    } else {
        format!("{:?}", v.pids)
    };
    println!(
        "{label:>8}: uid={} gid={} hostname={:?} interfaces={:?} pids={} mounts={}",
        v.uid, v.gid, v.hostname, v.interfaces, pids, v.mounts
    );
}

fn main() -> ExitCode {
    // First, what this host allows, tried for real.
    let report = hermetic::check();
    println!("{report}\n");
    if !report.sandboxes_work() {
        eprintln!("hermetic cannot make sandboxes here; the fixes are listed above.");
        return ExitCode::FAILURE;
    }

    let start = std::time::Instant::now();
    let sandbox = match Sandbox::builder().hostname("tour").build() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot create a sandbox on this host: {e}");
            return ExitCode::FAILURE;
        }
    };
    let made = start.elapsed();
    let outside = look();
    let start = std::time::Instant::now();
    let inside = sandbox.run(look);
    let ran = start.elapsed();
    println!("hermetic tour: one sandbox, seen from outside and inside\n");
    show("outside", &outside);
    show("inside", &inside);

    let port = sandbox.run(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:8080").expect("bind inside");
        l.local_addr().unwrap().port()
    });
    println!("\ninside, 127.0.0.1:{port} was free to bind, whatever the host uses it for");
    let host = sandbox
        .command("hostname")
        .output()
        .expect("run hostname inside");
    println!(
        "`hostname` started with sandbox.command(..) prints {:?}",
        String::from_utf8_lossy(&host.stdout).trim()
    );
    // The boundary, tried from inside.
    let refusals = sandbox.run(|| {
        let said = |r: std::io::Result<()>| match r {
            Ok(()) => "ALLOWED".to_owned(),
            Err(e) => format!("refused ({e})"),
        };
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        [
            (
                "write the host's files (Cargo.toml)",
                said(
                    std::fs::OpenOptions::new()
                        .append(true)
                        .open(manifest)
                        .map(drop),
                ),
            ),
            (
                "write PID 1's memory",
                said(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open("/proc/1/mem")
                        .map(drop),
                ),
            ),
            (
                "unmount /proc",
                said(nix::mount::umount("/proc").map_err(std::io::Error::from)),
            ),
            (
                "write a host sysctl",
                said(std::fs::write("/proc/sys/vm/swappiness", "60")),
            ),
        ]
        .map(|(what, outcome)| (what.to_owned(), outcome))
    });
    println!(
        "
inside, a closure tried to:"
    );
    for (what, outcome) in refusals {
        println!("  {what:<42} {outcome}");
    }
    println!(
        "\ncreating the sandbox took {:.2} ms, one run {:.2} ms",
        made.as_secs_f64() * 1e3,
        ran.as_secs_f64() * 1e3
    );
    drop(sandbox);
    println!("dropped: every process that ran inside is gone");

    network_tour();
    ExitCode::SUCCESS
}

/// Three hosts, a server, a client, and a partition.
fn network_tour() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream, ToSocketAddrs};
    use std::time::Duration;

    println!("\nhermetic tour: a network of three hosts\n");
    let start = std::time::Instant::now();
    let net = hermetic::Network::builder()
        .host("db")
        .host("app")
        .host("backup")
        .build()
        .expect("build a network");
    println!("built in {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    for h in net.hosts() {
        println!("  {:<7} {}", h.name(), h.addr());
    }

    let _db = net
        .host("db")
        .spawn(|| {
            let l = TcpListener::bind("0.0.0.0:5432").unwrap();
            for c in l.incoming() {
                let _ = c.unwrap().write_all(b"hello from db");
            }
        })
        .expect("start the db server");
    // Clients connect by name, through the /etc/hosts every host sees.
    let ask = |from: &str| {
        net.host(from).run(|| {
            let addr = ("db", 5432).to_socket_addrs().unwrap().next().unwrap();
            for _ in 0..50 {
                match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                    Ok(mut s) => {
                        let mut reply = String::new();
                        s.read_to_string(&mut reply).unwrap();
                        return reply;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => return format!("unreachable ({e})"),
                }
            }
            "unreachable (refused)".into()
        })
    };
    println!("app    -> db:5432  {}", ask("app"));
    println!("backup -> db:5432  {}", ask("backup"));
    net.partition(&[&["db", "app"], &["backup"]])
        .expect("partition");
    println!("partition [db, app] | [backup]");
    println!("app    -> db:5432  {}", ask("app"));
    println!("backup -> db:5432  {}", ask("backup"));
    net.heal().expect("heal");
    println!("healed");
    println!("backup -> db:5432  {}", ask("backup"));

    // Link faults: no netem needed, rootless, reproducible with a seed.
    let _echo = net
        .host("db")
        // A closure that never returns has the type `!`, which serde cannot
        // carry: say it returns nothing.
        .spawn(|| -> () {
            let s = std::net::UdpSocket::bind("0.0.0.0:7").unwrap();
            let mut buf = [0u8; 64];
            loop {
                let (n, from) = s.recv_from(&mut buf).unwrap();
                let _ = s.send_to(&buf[..n], from);
            }
        })
        .expect("start an echo server");
    // 20 datagrams from app to db and back: (answered, slowest round trip).
    let pings = || {
        net.host("app").run(|| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.connect("db:7").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut answered = 0;
            let mut slowest = Duration::ZERO;
            for i in 0..20u8 {
                let t = std::time::Instant::now();
                s.send(&[i]).unwrap();
                let mut b = [0u8; 1];
                // A lost datagram times out; a late answer to an earlier one
                // is skipped.
                while let Ok(1) = s.recv(&mut b) {
                    if b[0] == i {
                        answered += 1;
                        slowest = slowest.max(t.elapsed());
                        break;
                    }
                }
            }
            (answered, slowest)
        })
    };
    let show = |what: &str, (answered, slowest): (u32, Duration)| {
        println!(
            "{what:<40} app -> db: {answered:>2} of 20 answered, slowest {:>6.1} ms",
            slowest.as_secs_f64() * 1e3
        )
    };
    // Until the echo server answers (it may not be bound yet).
    net.host("app").run(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect("db:7").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while s.send(b"?").is_err() || s.recv(&mut [0u8; 1]).is_err() {
            assert!(std::time::Instant::now() < deadline, "no echo from db");
        }
    });
    show("plain link", pings());
    let shape = hermetic::LinkShape::delay(Duration::from_millis(25))
        .with_jitter(Duration::from_millis(5))
        .with_loss(20.0)
        .with_seed(7);
    net.shape("db", &shape).expect("shape db's link");
    show("db: 25±5 ms each way, 20% loss, seed 7", pings());
    show("the same again (same seed: same losses)", {
        net.shape("db", &shape).expect("shape db's link");
        pings()
    });
    net.unshape("db").expect("unshape");
    // A connection held open, then every TCP connection of db reset.
    let _holder = net
        .host("db")
        .spawn(|| {
            let l = TcpListener::bind("0.0.0.0:6000").unwrap();
            let mut held = Vec::new();
            for c in l.incoming() {
                held.push(c.unwrap());
            }
        })
        .expect("start a server that holds connections");
    let (mut events_r, mut events_w) = std::io::pipe().expect("a pipe");
    let _client = net
        .host("app")
        .spawn(move || {
            let mut c = hermetic::connect_retry("db:6000");
            let _ = events_w.write_all(b"c");
            let mut rest = Vec::new();
            let how = match c.read_to_end(&mut rest) {
                Ok(_) => "closed by db".to_owned(),
                Err(e) => e.to_string(),
            };
            let _ = events_w.write_all(how.as_bytes());
        })
        .expect("start a client");
    let mut connected = [0u8; 1];
    events_r
        .read_exact(&mut connected)
        .expect("the client connects");
    let reset = net.reset_connections("db").expect("reset db's connections");
    let mut how = String::new();
    events_r
        .read_to_string(&mut how)
        .expect("the client's story");
    println!("reset_connections(db) reset {reset}; app's open connection: {how}");
}
