//! Attacks of round 14: kernel memory that a sandbox's `memory_limit`
//! does not count, allocated where the kernel charges no memory cgroup
//! (receiving a frame, in softirq context): a bridge's forwarding database
//! (one entry per source address a frame came from), in a `Network`'s
//! switch and in a bridge a sandbox makes of its own; and IP fragment
//! queues, whose per-namespace cap (`ipfrag_high_thresh`) root inside may
//! raise in its writable `/proc/sys/net`. All three failed, as root and
//! rootless. The switch's bridges now learn at most
//! `BRIDGE_MAX_LEARNED` addresses (the first test passes); the other two
//! are kept (ignored), and the README's "fill memory" row says so: root
//! inside holds `CAP_NET_ADMIN` over its own network, and a sandbox of
//! [`user`](hermetic::SandboxBuilder::user) holds none.
//!
//! Held in the same family (the memory cgroup killed the program at its
//! 32 MiB limit): IPv6 addresses added with `ip -b` (6,561), static
//! forwarding database entries added through netlink (7,794), permanent
//! neighbour entries (7,774), and 2,000 unix socket pairs with full
//! buffers.
//!
//! What was tried and held (no test: each was run by hand or by a
//! throw-away probe, as root, and the boundary held):
//!
//! - The seccomp filter, read against the kernel: the ioctl and fcntl
//!   rules compare the low 32 bits the kernel keeps; `open(O_ASYNC)` (also
//!   through io_uring's `OPENAT`) registers no fasync, so no `SIGIO`; no
//!   io_uring op reaches a refused ioctl, fcntl, key or clone call; the
//!   i386 numbers and argument orders (`clone`'s flags first) match.
//! - `/proc` of the sandbox: the only writable entries outside `/proc/sys`,
//!   `/proc/irq` and `/proc/bus` are `/proc/mtrr` (the kernel wants
//!   `CAP_SYS_ADMIN` of the host) and `/proc/pressure/*` (writable by any
//!   user outside too); `/sys` is a read-only sysfs; `chattr +i` and `+a`
//!   in the copy-on-write layer fail (`EPERM`), as root too.
//! - A command's inner relay killed by its program (`kill -9 $PPID`): the
//!   `Child` reports `SIGKILL`, never the program's own status, and the
//!   program does not outlive it; `kill -9 1` from a program does nothing.
//! - The disk base (`/var/tmp/hermetic-UID`, live sandboxes' layers) from
//!   another sandbox: hidden (an empty read-only tmpfs) in every host mode,
//!   `writable` included, with the working directory at `/`, `/var` or
//!   `/var/tmp`, PROGRAM in `/var/tmp`, and `/var/tmp` on the PATH.
//! - The in-memory copy-on-write layers (`$HOME`, `/tmp`, `/var/tmp`) share
//!   one tmpfs of `--tmp-size`: 8 MiB in all, not 8 MiB each.
//! - A closure's fds: in a read-only sandbox, a copy-on-write one and a
//!   `Network` host, with other sandboxes and a network alive, only the
//!   test process's own fds (from before any sandbox) and the run's pipes.
//! - A `Network` host's `/etc/hosts` is a read-only copy of its own
//!   (`SandboxBuilder::file`), not a file hosts share.
//! - 20000 mounts stacked in a mount namespace of a program's own: made in
//!   54 s (the kernel's cost grows with the stack), torn down in 0.3 s;
//!   `hermetic run --timeout` ends such a program on time.

use crate::common;

/// How much a test lets the kernel's unreclaimable slab grow while a
/// sandbox limited to [`LIMIT`] floods: twice the limit (the rest of the
/// machine allocates meanwhile too).
const ALLOWED_GROWTH: u64 = 2 * LIMIT;
/// The sandboxes' memory limit: 32 MiB.
const LIMIT: u64 = 32 << 20;
/// Frames sent, each from a source address of its own: about 125 MiB of
/// forwarding database entries, 7.5 s here.
const FRAMES: u32 = 1_000_000;

/// The kernel's unreclaimable slab memory (`SUnreclaim` of
/// `/proc/meminfo`, the whole machine's, inside a sandbox too), in bytes.
fn unreclaimable() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("SUnreclaim:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("SUnreclaim in /proc/meminfo")
        * 1024
}

/// Sends `n` Ethernet frames of an experimental type (0x88b5) to one
/// unicast address on `interface`, each from a source address of its own
/// (locally administered): a bridge that receives them learns every
/// source. Returns how many were sent.
fn flood_source_addresses(interface: &std::ffi::CStr, n: u32) -> Result<u32, String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let protocol = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
    // SAFETY: a plain socket call.
    let s = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, protocol) };
    if s < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: just made, ours.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(interface.as_ptr()) };
    if ifindex == 0 {
        return Err(format!("no interface {interface:?}"));
    }
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = ifindex as i32;
    to.sll_halen = 6;
    let mut frame = [0u8; 60];
    frame[..6].copy_from_slice(&[0x02, 0x77, 0, 0, 0, 1]);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    let mut sent = 0;
    let mut i = 0u32;
    while sent < n {
        let b = i.to_be_bytes();
        frame[6..12].copy_from_slice(&[0x06, 0x14, b[0], b[1], b[2], b[3]]);
        // SAFETY: a live frame and address, of their sizes.
        let r = unsafe {
            libc::sendto(
                s.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) {
                // The queue is full: the same address again, a moment later.
                std::thread::sleep(std::time::Duration::from_micros(50));
                continue;
            }
            return Err(format!("sendto after {sent} frames: {e}"));
        }
        sent += 1;
        i += 1;
    }
    Ok(sent)
}

/// What was done: a `Network` of two hosts, host `x` built with
/// `memory_limit(32 MiB)`; a closure on `x` (root inside) opens an
/// `AF_PACKET` socket on its `eth0` and sends 1,000,000 60-byte frames,
/// each from a source MAC address of its own. The switch's bridge (`br0`,
/// made by hermetic in the switch's namespace) learns every one: a
/// forwarding database entry each, kernel memory that no cgroup is charged
/// for, kept for the bridge's ageing time (300 s) or until the network is
/// dropped.
///
/// What happened: the machine's unreclaimable slab (`SUnreclaim`) grew by
/// 122 MiB in 7.5 s (115 -> 240 MiB), nearly four times the host's whole
/// limit, and the host was not stopped; the same million frames from one
/// address grew it by 0.3 MiB. At that rate a closure pins some 4.8 GiB
/// within its default 5-minute timeout (a spawned closure, more), charged
/// to nothing: the host's OOM killer, not the sandbox's limit, meets it.
/// The memory went back 2 s after the network was dropped.
///
/// Modes: root (a cgroup v1 memory limit per sandbox here), rootless with
/// ranges (hermetic-ci, also with `HERMETIC_ONE_ID=1`) and rootless with
/// one id (hermetic-noids): 121 to 123 MiB in each.
///
/// Why no limit sees it: the bridge learns in softirq context, where the
/// kernel charges no memory cgroup. The same cache is charged where it is
/// filled from a process (`bridge fdb add ... static` through netlink:
/// `bridge -b` was OOM-killed by the 32 MiB limit after 7,794 entries),
/// and so are IPv6 addresses (`ip -b`, killed after 6,561): the limit
/// works, the learning path is outside it.
///
/// What should happen: a host cannot make the switch hold more than a
/// bounded number of addresses: the bridges hermetic makes set
/// `IFLA_BR_FDB_MAX_LEARNED` (Linux 6.7; every host has one MAC: a few
/// times the hosts' count), or ports do not learn (`IFLA_BRPORT_LEARNING`
/// off, with a static entry for each host's address); else the README
/// says so.
#[test]
fn a_network_host_cannot_fill_the_switch_s_memory_past_its_limit() {
    let mut limited = hermetic::Sandbox::builder();
    limited.memory_limit(LIMIT);
    let net = hermetic::Network::builder()
        .host_with("x", &limited)
        .host("y")
        .build()
        .unwrap();
    let before = unreclaimable();
    let sent = net
        .host("x")
        .run(|| flood_source_addresses(c"eth0", FRAMES));
    let grown = unreclaimable().saturating_sub(before);
    drop(net);
    assert_eq!(sent, Ok(FRAMES), "the flood itself failed");
    assert!(
        grown < ALLOWED_GROWTH,
        "a host limited to {} MiB made the kernel's unreclaimable memory grow by {} MiB \
         (the switch's bridge learned {FRAMES} source addresses)",
        LIMIT >> 20,
        grown >> 20
    );
}

/// What was done: a sandbox with `memory_limit(32 MiB)`; its closure (root
/// inside, with every capability over the sandbox's own network) runs
/// `ip` to make a bridge `br0` and a veth pair `v0`/`v1` in the sandbox's
/// network namespace, `v0` a port of `br0`, all up, then sends 1,000,000
/// frames on `v1`, each from a source MAC address of its own.
///
/// What happened: the bridge learned 1,000,010 addresses (`bridge fdb
/// show | wc -l`) and the machine's unreclaimable slab grew by 122 MiB in
/// about 7.5 s, charged to no cgroup, the sandbox's limit of 32 MiB
/// notwithstanding (the same by hand with `hermetic run --memory 32M`);
/// the kernel freed it a few seconds after the sandbox ended (its network
/// namespace is taken down by a kernel worker). Nothing but time bounds
/// it: entries age out after 300 s, so a closure refreshing them holds
/// some 4.8 GiB at this rate.
///
/// Modes: root, rootless with ranges (hermetic-ci, also with
/// `HERMETIC_ONE_ID=1`) and rootless with one id (hermetic-noids): 122 to
/// 127 MiB in each (and by hand with `hermetic run --memory 32M`); the
/// test skips where `ip` is missing.
///
/// What should happen: the "fill memory" row's promise holds only for
/// memory the kernel charges to the sandbox's cgroup; a network
/// namespace's bridges are not. Either the README marks this
/// **possible** (kernel memory of the sandbox's own network devices:
/// bridge forwarding databases) beside the per-user quotas, or the
/// sandbox's network namespace is given fewer powers (no bridge: hermetic
/// cannot take `CAP_NET_ADMIN` away without breaking network tests), so
/// in practice the README.
#[test]
#[ignore = "kept: root inside may make a bridge of its own, whose learned addresses are kernel memory no cgroup counts (README: fill memory)"]
fn a_sandbox_cannot_fill_the_host_s_memory_past_its_limit_through_a_bridge_of_its_own() {
    if !std::path::Path::new("/usr/sbin/ip").exists() && !std::path::Path::new("/sbin/ip").exists()
    {
        return common::skip("no ip(8) to make a bridge with");
    }
    let sandbox = hermetic::Sandbox::builder()
        .memory_limit(LIMIT)
        .build()
        .unwrap();
    let made = sandbox.run(|| {
        let ip = |args: &str| {
            std::process::Command::new("ip")
                .args(args.split(' '))
                .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
                .output()
                .map(|o| {
                    o.status.success() || {
                        eprintln!("ip {args}: {}", String::from_utf8_lossy(&o.stderr));
                        false
                    }
                })
                .unwrap_or(false)
        };
        [
            "link add br0 type bridge",
            "link add v0 type veth peer name v1",
            "link set v0 master br0",
            "link set br0 up",
            "link set v0 up",
            "link set v1 up",
        ]
        .into_iter()
        .all(ip)
    });
    assert!(made, "the bridge could not be made inside");
    let (sent, grown) = sandbox.run(|| {
        let before = unreclaimable();
        let sent = flood_source_addresses(c"v1", FRAMES);
        (sent, unreclaimable().saturating_sub(before))
    });
    drop(sandbox);
    assert_eq!(sent, Ok(FRAMES), "the flood itself failed");
    assert!(
        grown < ALLOWED_GROWTH,
        "a sandbox limited to {} MiB made the kernel's unreclaimable memory grow by {} MiB \
         (its own bridge learned {FRAMES} source addresses)",
        LIMIT >> 20,
        grown >> 20
    );
}

/// The memory of this network namespace's IPv4 fragment queues
/// (`FRAG: ... memory N` of `/proc/net/sockstat`), in bytes.
fn fragment_memory() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("FRAG:"))
        .and_then(|l| {
            l.split_whitespace()
                .skip_while(|w| *w != "memory")
                .nth(1)?
                .parse()
                .ok()
        })
        .expect("FRAG memory in /proc/net/sockstat")
}

/// Sends `n` first fragments (more fragments to come, offset 0) of UDP
/// datagrams of 1,420 bytes to 127.0.0.1, each of an IP id (and, past
/// 65,536, a source address) of its own, whose rest never comes: each
/// waits in a reassembly queue. Returns how many were sent.
fn send_first_fragments(n: u32) -> Result<u32, String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: a plain socket call.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if s < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: just made, ours.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    to.sin_family = libc::AF_INET as u16;
    to.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    let mut packet = [0u8; 1420];
    let mut sent = 0;
    while sent < n {
        let source = u32::from(std::net::Ipv4Addr::new(127, 0, 0, 2)) + (sent >> 16);
        packet[0] = 0x45; // IPv4, 20-byte header
        let length = packet.len() as u16;
        packet[2..4].copy_from_slice(&length.to_be_bytes());
        packet[4..6].copy_from_slice(&(sent as u16).to_be_bytes());
        packet[6..8].copy_from_slice(&0x2000u16.to_be_bytes()); // MF, offset 0
        packet[8] = 64;
        packet[9] = libc::IPPROTO_UDP as u8;
        packet[12..16].copy_from_slice(&source.to_be_bytes());
        packet[16..20].copy_from_slice(&std::net::Ipv4Addr::LOCALHOST.octets());
        // SAFETY: a live packet and address, of their sizes.
        let r = unsafe {
            libc::sendto(
                s.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) {
                std::thread::sleep(std::time::Duration::from_micros(50));
                continue;
            }
            return Err(format!("sendto after {sent} fragments: {e}"));
        }
        sent += 1;
    }
    Ok(sent)
}

/// What was done: a sandbox with `memory_limit(32 MiB)`; its closure (root
/// inside) raises its network's `net.ipv4.ipfrag_high_thresh` to 8 GB and
/// `ipfrag_time` to 600 s (`/proc/sys/net` is writable inside, being the
/// sandbox's own network's), then sends 200,000 first fragments of UDP
/// datagrams to 127.0.0.1 through a raw socket, whose other fragments
/// never come: each waits in a reassembly queue for `ipfrag_time`.
///
/// What happened: the sandbox's fragment queues held 500,792,488 bytes
/// (`/proc/net/sockstat`: `FRAG: inuse 199997 memory 500792488`), the
/// machine's unreclaimable slab grew by 494 MiB and its available memory
/// fell by 505 MiB, in about a second, 15 times the sandbox's limit; the
/// fragments are queued in softirq context, after loopback has orphaned
/// them from the sending socket, so no memory cgroup is charged. The
/// threshold has no upper bound (it is an unsigned long), so the host's
/// whole memory can be taken and held for up to 600 s a fragment (longer
/// with a larger `ipfrag_time`); the kernel frees it when the sandbox's
/// network namespace goes. With the default threshold (4 MB) the same
/// flood is capped there (`FRAG: inuse 1676 memory 4196704`, by hand with
/// `hermetic run --memory 32M`): the writable sysctl is what lets it grow.
///
/// Modes: root, rootless with ranges (hermetic-ci, also with
/// `HERMETIC_ONE_ID=1`) and rootless with one id (hermetic-noids): 477 MiB
/// held in each (the network namespace is the sandbox's own in all three).
///
/// What should happen: code inside cannot make the kernel hold more than
/// a bounded share of memory for it: the fragment thresholds
/// (`net.ipv4.ipfrag_high_thresh`, `net.ipv6.ip6frag_high_thresh`,
/// `net.netfilter.nf_conntrack_frag6_high_thresh`) are bound read-only in
/// `/proc/sys/net` (as `/proc/sys` is), or capped by the sandbox; else the
/// README marks it **possible**.
#[test]
#[ignore = "kept: root inside may raise its own network's ipfrag_high_thresh; fragments are kernel memory no cgroup counts (README: fill memory)"]
fn a_sandbox_cannot_fill_the_host_s_memory_past_its_limit_with_ip_fragments() {
    let sandbox = hermetic::Sandbox::builder()
        .memory_limit(LIMIT)
        .build()
        .unwrap();
    let (sent, held) = sandbox.run(|| {
        for (sysctl, value) in [
            ("/proc/sys/net/ipv4/ipfrag_high_thresh", "8000000000"),
            ("/proc/sys/net/ipv4/ipfrag_time", "600"),
        ] {
            if let Err(e) = std::fs::write(sysctl, value) {
                return (Err(format!("writing {sysctl}: {e}")), 0);
            }
        }
        let sent = send_first_fragments(200_000);
        (sent, fragment_memory())
    });
    drop(sandbox);
    assert_eq!(sent, Ok(200_000), "the flood itself failed");
    assert!(
        held < LIMIT,
        "a sandbox limited to {} MiB holds {} MiB of IP fragments in its reassembly queues",
        LIMIT >> 20,
        held >> 20
    );
}

/// What the README says closes the two kept findings above: a sandbox of
/// a user of its own (no capability in its user namespace) can neither
/// make a bridge nor raise its network's fragment threshold.
#[test]
fn a_sandbox_of_a_user_cannot_make_a_bridge_or_raise_the_fragment_threshold() {
    let ns = hermetic::Sandbox::builder()
        .user(1000, 1000)
        .build()
        .unwrap();
    let (bridge, sysctl) = ns.run(|| {
        let bridge = std::process::Command::new("ip")
            .args(["link", "add", "br9", "type", "bridge"])
            .stderr(std::process::Stdio::null())
            .status()
            .ok()
            .map(|s| s.success());
        let sysctl = std::fs::write("/proc/sys/net/ipv4/ipfrag_high_thresh", "8000000000")
            .map_err(|e| e.to_string());
        (bridge, sysctl)
    });
    assert_ne!(bridge, Some(true), "a user inside made a bridge");
    assert!(sysctl.is_err(), "a user inside raised ipfrag_high_thresh");
}
