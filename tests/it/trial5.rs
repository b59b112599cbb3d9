//! Findings of a fifth new user's trial (a distributed-systems tester:
//! `Network`s of hosts, partitions, shaped links, tokio, PostgreSQL as a
//! primary and a replica), each a test that fails while the defect exists.
//! Each is `#[ignore]`d with the finding in one line; run one with
//! `--exact trial5::NAME --include-ignored`.

use crate::common;

use std::os::unix::process::CommandExt;

use hermetic::{Network, Sandbox};

use crate::common::said;

/// A user puts PostgreSQL (which refuses to run as root) on two hosts of a
/// `Network`, the way `NetworkBuilder::host_with`'s rustdoc shows options
/// of a host's own ("the mounts, timeout, result size and so on of
/// `options`") and `SandboxBuilder::user`'s rustdoc shows a user for a
/// sandbox: `let mut pg = Sandbox::builder(); pg.user(1000, 1000);
/// Network::builder().host_with("primary", &pg).host_with("replica",
/// &pg).build()`. What happened (measured, as root, rootless with
/// `/etc/subuid` ranges (hermetic-ci) and rootless with one id
/// (hermetic-noids)): `build()` fails with `Error::Network { step:
/// "adding 10.77.0.1/24 to eth0", error: EPERM }`: the host's own network
/// setup runs as the unprivileged user, which holds no `CAP_NET_ADMIN`.
/// Nothing says `user` is not for a host. Expected: a network whose hosts
/// run as a user of their own (the host's links and addresses set up by
/// root inside before the change of user), or, if that cannot be,
/// `Error::InvalidOption { option: "user", .. }` from `build` saying so
/// and the rustdoc of `host_with` naming it. With one id (no ranges) a
/// user has no other way to run PostgreSQL on a host: `setpriv --reuid`
/// inside fails with `EINVAL` there.
#[test]
fn a_network_host_runs_as_a_user_of_its_own() {
    let mut pg = Sandbox::builder();
    pg.user(1000, 1000);
    let net = Network::builder()
        .host_with("primary", &pg)
        .host("client")
        .build()
        .unwrap_or_else(|e| panic!("a network with a host of user 1000: {e:?}"));
    let id = net.host("primary").command("id").output().unwrap();
    assert!(
        String::from_utf8_lossy(&id.stdout).starts_with("uid=1000"),
        "{}",
        said(&id)
    );
    // And it is on the network: the client reaches it by name.
    let _server = net
        .host("primary")
        .spawn(|| {
            let l = std::net::TcpListener::bind("0.0.0.0:7000").unwrap();
            for c in l.incoming() {
                drop(c);
            }
        })
        .unwrap();
    let reached = net.host("client").run(|| {
        hermetic::connect_retry("primary:7000");
        true
    });
    assert!(reached);
}

/// `SandboxBuilder::user`'s rustdoc: "ids 0-65535 are mapped inside, so
/// that `setuid(n)`, `chown`, `su` and `CommandExt::uid(n)` behave as on a
/// normal system". A user runs a server as a plain user the std way:
/// `ns.command("id").uid(1000).gid(1000).output()` (on a `Sandbox` or a
/// network's host). What happened (measured, as root and rootless with
/// `/etc/subuid` ranges (hermetic-ci), where the sandbox's
/// `/proc/self/uid_map` shows 0-65535 and `setpriv --reuid=1000 ... id`
/// inside prints `uid=1000`): `output()` returns `Err(EPERM)` ("Operation
/// not permitted") and nothing runs: std's `Command` changes ids in the
/// child it forks *outside*, before that child (hermetic's relay) joins
/// the sandbox, which it then may not. Expected: the program runs as uid
/// 1000 inside (the relay taking the ids the `Command` asks for and
/// applying them inside), or `command()`'s rustdoc saying `uid`/`gid`
/// apply outside and what to do instead (`SandboxBuilder::user`,
/// `setpriv`). With one id (hermetic-noids) EPERM is expected (the docs
/// say only id 0 exists), though the error could still say why.
#[test]
#[ignore = "kept: std changes a Command's ids outside, before the relay joins the sandbox (Sandbox::command's rustdoc); in a run it works (next test)"]
fn a_command_s_uid_is_taken_inside() {
    if !common::many_ids() {
        return common::skip("only one id inside: uid(1000) cannot work here");
    }
    let ns = Sandbox::new().unwrap();
    let out = ns
        .command("id")
        .uid(1000)
        .gid(1000)
        .output()
        .unwrap_or_else(|e| panic!("command(\"id\").uid(1000).gid(1000): {e:?}"));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("uid=1000 gid=1000"),
        "{}",
        said(&out)
    );
}

/// What the rustdoc gives instead: in a run, a `Command`'s `uid` and `gid`
/// work as on any system.
#[test]
fn a_command_s_uid_is_taken_in_a_run() {
    use std::os::unix::process::CommandExt as _;
    if !common::many_ids() {
        return common::skip("only one id inside: uid(1000) cannot work here");
    }
    let ns = Sandbox::new().unwrap();
    let id = ns.run(|| {
        let out = std::process::Command::new("id")
            .uid(1000)
            .gid(1000)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    assert!(
        id.starts_with("uid=1000") && id.contains(" gid=1000"),
        "{id}"
    );
}

/// `isolate_test_async`'s rustdoc: "Call it on the test's own thread (in
/// the test's `async fn` itself, not in a task it spawns): the test is
/// found by that thread's name", and hermetic has an error for the other
/// case ("hermetic::isolate_test must be called from a test's own
/// thread..."), given for threads named `main` and `tokio-runtime-worker`.
/// A user's `#[tokio::test(flavor = "multi_thread")]` makes the future in
/// a task: `tokio::spawn(async { hermetic::isolate_test_async(async {
/// ... }).await }).await`. What happened (measured with tokio 1.54.1, this
/// crate's own lock file, as root and rootless, with ranges and with one id): the test
/// fails with "the re-executed test binary exited with status 0 without
/// running tokio-rt-worker's body (no test of that exact name there? is
/// it filtered out by a cfg?)": tokio names its workers `tokio-rt-worker`
/// since 1.4x, so hermetic took the worker's name for the test's, re-ran
/// the binary for a test called `tokio-rt-worker` and blamed a filter or
/// a cfg. Expected: the error the rustdoc promises, naming the cause
/// (called from a runtime's worker, not the test's thread), or the body
/// run (the name taken when the test's thread is known). A thread-name
/// heuristic also misses any runtime whose workers are named otherwise
/// (`thread_name("db-worker")`): checking the name against the binary's
/// `--list` would catch every case.
#[tokio::test(flavor = "multi_thread")]
async fn isolate_test_async_in_a_task_says_it_is_not_the_test_s_thread() {
    let outcome = tokio::spawn(async {
        hermetic::isolate_test_async(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:8080")
                .await
                .unwrap();
            assert_eq!(l.local_addr().unwrap().port(), 8080);
        })
        .await
    })
    .await;
    if let Err(e) = outcome {
        let payload = e.into_panic();
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(
            message.contains("own thread") && !message.contains("no test of that exact name"),
            "the error does not say the call was made off the test's thread: {message}"
        );
    }
}

/// What host `to` receives on UDP port 9999 (bound to any address, member
/// of multicast group 239.1.2.3) while host `from` sends, for a second,
/// a broadcast to 10.77.0.255, a multicast to 239.1.2.3 and a unicast to
/// `to` every 50 ms: the kinds received, each once ("bcast", "mcast",
/// "ucast").
fn datagram_kinds_received(net: &Network, from: &str, to: &str) -> Vec<String> {
    let listener = net
        .host(to)
        .spawn(|| {
            let s = std::net::UdpSocket::bind("0.0.0.0:9999").unwrap();
            s.join_multicast_v4(
                &std::net::Ipv4Addr::new(239, 1, 2, 3),
                &std::net::Ipv4Addr::UNSPECIFIED,
            )
            .unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_millis(1500)))
                .unwrap();
            let mut kinds = std::collections::BTreeSet::new();
            let mut b = [0u8; 64];
            while let Ok(n) = s.recv(&mut b) {
                kinds.insert(String::from_utf8_lossy(&b[..n]).into_owned());
            }
            kinds.into_iter().collect::<Vec<_>>()
        })
        .unwrap();
    let to_name = to.to_owned();
    let sent = net.host(from).run(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_broadcast(true).unwrap();
        for _ in 0..20 {
            s.send_to(b"bcast", "10.77.0.255:9999").unwrap();
            s.send_to(b"mcast", "239.1.2.3:9999").unwrap();
            s.send_to(b"ucast", (to_name.as_str(), 9999)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        true
    });
    assert!(sent);
    listener.join().unwrap()
}

/// `Network::blackhole`'s rustdoc: "Drops every datagram to and from
/// `host` without a word (`on`) ... the host still seems there, and
/// connections hang until their timeouts"; the README: "silently drops
/// everything". A user blackholes one node of a cluster whose members find
/// each other or beat their hearts by UDP broadcast or multicast (service
/// discovery, VRRP-like leader election, gossip seeds) and expects it to
/// hear nothing. What happened (measured, as root and rootless, with
/// ranges and with one id): the blackholed host still receives every broadcast (to
/// 10.77.0.255) and multicast (239.1.2.3) datagram another host sends;
/// only unicast is dropped. The same with `shape_each_way(h,
/// &LinkShape::default(), &LinkShape::loss(100.0))`. (`LinkShape`'s
/// rustdoc does say loss applies "to unicast IP frames"; `blackhole`'s does
/// not, and says "every datagram".) A partition or a link taken down does
/// cut broadcast and multicast. Expected: a blackholed host receives no
/// datagram at all (ARP may pass, so that it "still seems there"), or the
/// rustdoc and README saying that broadcast and multicast pass.
#[test]
fn a_blackholed_host_hears_no_broadcast_or_multicast() {
    let net = Network::builder().host("a").host("b").build().unwrap();
    let plain = datagram_kinds_received(&net, "b", "a");
    assert_eq!(plain, ["bcast", "mcast", "ucast"], "on a plain link");
    net.blackhole("a", true).unwrap();
    let blackholed = datagram_kinds_received(&net, "b", "a");
    assert!(
        blackholed.is_empty(),
        "a blackholed host received datagrams of these kinds: {blackholed:?}"
    );
}

/// A UDP echo server on `host`:9000.
fn udp_echo(net: &Network, host: &str) -> hermetic::Spawned {
    net.host(host)
        .spawn(|| -> () {
            let s = std::net::UdpSocket::bind("0.0.0.0:9000").unwrap();
            let mut buf = [0u8; 64];
            loop {
                let (n, from) = s.recv_from(&mut buf).unwrap();
                let _ = s.send_to(&buf[..n], from);
            }
        })
        .unwrap()
}

/// From `from`, one datagram to `to`:9000; how long its echo took, if it
/// came within `within`.
fn echo_within(
    net: &Network,
    from: &str,
    to: &str,
    within: std::time::Duration,
) -> Option<std::time::Duration> {
    let to = to.to_owned();
    net.host(from).run(move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect((to.as_str(), 9000)).unwrap();
        s.set_read_timeout(Some(within)).unwrap();
        let start = std::time::Instant::now();
        s.send(b"ping").unwrap();
        let mut b = [0u8; 8];
        s.recv(&mut b).ok().map(|_| start.elapsed())
    })
}

/// Waits (at most 10 s) until `to`'s echo server answers `from`: true once
/// it has (a datagram sent before the server binds is refused or lost).
fn echo_ready(net: &Network, from: &str, to: &str) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(10) {
        if echo_within(net, from, to, std::time::Duration::from_millis(200)).is_some() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// A user tests a client's failover: partition a client from a server,
/// let the client try (and fail) for a moment, `heal()`, and expect the
/// client's next request, with a short timeout as such clients have
/// (250 ms), to get through: `heal`'s rustdoc says "every host reaches
/// every other again", and `set_link`'s and `shape`'s promise that "the
/// next datagram gets through". What happened (measured, as root, rootless
/// with ranges and with one id, on every fresh network): the first
/// datagram after `heal` took 690-720 ms to be answered (each later
/// round: under 1 ms); with a 500 ms connect timeout, a client's first
/// connect after heal failed. Cause: the client's ARP request made during
/// the partition left its neighbour entry for the server INCOMPLETE, and
/// the kernel sends the next ARP request only after the entry's
/// `retrans_time` (1 s) from the first, whatever `heal` did meanwhile; a
/// datagram sent before that waits in the neighbour queue. Expected: a
/// healed network carries the next datagram at once (e.g. `heal`, and a
/// partition's change, flush the hosts' incomplete neighbour entries, or
/// hosts use a short `retrans_time_ms`), or the rustdoc of `heal` saying
/// that traffic may take up to a second to resume. The same, measured:
/// `set_link(server, false)`, a try, `set_link(server, true)` (whose
/// rustdoc promises "the next datagram gets through"): 737 ms; the
/// client's own link down and up: 719 ms; a partition replaced by one
/// that puts the two together: 748 ms.
#[test]
fn the_first_datagram_after_heal_gets_through_at_once() {
    use std::time::Duration;
    let net = Network::builder()
        .host("client")
        .host("server")
        .build()
        .unwrap();
    let _server = udp_echo(&net, "server");
    // The server listens: its own echo answers (its loopback, not the link).
    assert!(echo_ready(&net, "server", "127.0.0.1"));
    net.partition(&[&["client"], &["server"]]).unwrap();
    assert_eq!(
        echo_within(&net, "client", "server", Duration::from_millis(250)),
        None,
        "the partition did not cut"
    );
    net.heal().unwrap();
    let after = echo_within(&net, "client", "server", Duration::from_secs(3));
    assert!(
        after.is_some_and(|t| t < Duration::from_millis(250)),
        "the first echo after heal took {after:?} (None: none within 3 s)"
    );
}

/// The README's table: "reach the host's network | own network namespace:
/// `lo` only (a `Network`'s hosts: their segment only); no route out". A
/// user's client on a network host looks up a name the network does not
/// have (a misspelt peer, a node not added, a library's lookup of some
/// outside name): `getent hosts no-such-peer` (what `TcpStream::connect`
/// and every resolver through glibc does). What happened (measured, as
/// root and rootless, with ranges and with one id; the host's `/etc/resolv.conf` names 10.255.255.53): on a
/// `Network` host it fails after 12.3 s; in a plain `Sandbox` it fails in
/// 7 ms. A network host has a default route out of `eth0` (its rustdoc
/// says so), so the resolver's queries to the host's nameserver go into
/// the segment and nowhere, and it waits out every timeout and attempt;
/// a connect to any outside address likewise times out (2 s of 2 s)
/// instead of failing at once. Expected: a name not on the network fails
/// as fast as in a sandbox (no route beyond the segment, or a
/// `resolv.conf` of the network's own that sends queries nowhere that
/// waits), so a test of a client's error path does not take 12 s per
/// lookup; or the README's "no route out" saying that a host's lookups
/// of other names wait out the resolver's timeouts.
#[test]
fn a_name_not_on_the_network_fails_at_once() {
    let nameserver = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            l.strip_prefix("nameserver")
                .is_some_and(|a| !a.trim().starts_with("127."))
        });
    if !nameserver {
        return common::skip("the host's resolv.conf names no nameserver off loopback");
    }
    let net = Network::builder().host("a").host("b").build().unwrap();
    let lookup = |mut cmd: std::process::Command| {
        let start = std::time::Instant::now();
        // Bounded: `timeout` ends the lookup after 5 s (status 124).
        let out = cmd
            .args(["5", "getent", "hosts", "no-such-peer"])
            .output()
            .unwrap();
        (out.status.code(), start.elapsed())
    };
    let in_a_sandbox = lookup(Sandbox::new().unwrap().command("timeout"));
    let on_a_host = lookup(net.host("a").command("timeout"));
    assert_eq!(
        in_a_sandbox.0,
        Some(2),
        "getent in a sandbox: {in_a_sandbox:?}"
    );
    assert!(
        on_a_host.0 == Some(2) && on_a_host.1 < std::time::Duration::from_secs(2),
        "getent hosts no-such-peer on a network host: status {:?} after {:?} \
         (124: still waiting at 5 s); in a sandbox: {:?}",
        on_a_host.0,
        on_a_host.1,
        in_a_sandbox.1
    );
}

/// `Spawned::kill`'s rustdoc: "Kills the process (with `SIGKILL`) and
/// waits for it to die"; `Spawned`'s: "Dropping the handle kills the
/// process". A user restarts a server on a host (a crash-and-restart test:
/// `server.kill()?`, then the same server again on its port), in a test
/// that runs inside `isolate_test` / `isolate_test_async` (the README's way
/// for async tests, a `Network` inside it: "So does a `Network` (in
/// `isolate_test`, ...)"). What happened (measured, as root and rootless,
/// with ranges and with one id): right after
/// `kill()` (or `drop`) returned, binding the server's port failed with
/// `EADDRINUSE` in 1-2 rounds of 40 (this test, 300 rounds: 1-9 rounds in most runs; sometimes the next server's own bind fails so, and its client's connect is refused for 10 s), in a sandbox and in a network's host
/// made inside `isolate_test`, with a std or a tokio server; never (0 of
/// 160) in the same rounds at the top level. The old process still held
/// its listening socket: `kill` had not waited for it to die. In an async
/// test (a `Network` inside `isolate_test_async`, a tokio server
/// restarted each round, a client run retrying until it connects) this
/// made 1-2 of 30 rounds time out, in 4 of 6 runs. Expected: once `kill`
/// (or the drop) returns, the process is gone and its port free, nested
/// or not.
#[test]
fn a_killed_server_s_port_is_free_in_a_nested_sandbox() {
    hermetic::isolate_test(|| {
        let ns = Sandbox::new().unwrap();
        let mut in_use = Vec::new();
        for round in 0..300 {
            let server = ns
                .spawn(|| -> () {
                    let l = std::net::TcpListener::bind("0.0.0.0:7000").unwrap();
                    for c in l.incoming() {
                        drop(c);
                    }
                })
                .unwrap();
            let up = ns.run(|| {
                hermetic::connect_retry("127.0.0.1:7000");
                true
            });
            assert!(up);
            server.kill().unwrap();
            let rebound = ns.run(|| {
                std::net::TcpListener::bind("0.0.0.0:7000")
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = rebound {
                in_use.push(format!("round {round}: {e}"));
            }
        }
        assert!(
            in_use.is_empty(),
            "the port was still held after kill() returned: {in_use:?}"
        );
    });
}

/// `Spawned::join`'s and `try_run`'s rustdoc: a closure stuck past the
/// timeout is `Error::TimedOut`, "which says where each of its threads was
/// (state, system call, kernel wait)". A user's client hangs in a sandbox
/// made inside `isolate_test` (or a `Network` inside
/// `isolate_test_async`, where it was found: a tokio client retrying a
/// connect). What happened (measured, as root and rootless, with ranges
/// and with one id): `try_run(||
/// sleep(60 s))` with a 2 s timeout says "where its threads were: thread
/// 9 (...): sleeping in wait4(), waiting in do_wait", a process of
/// hermetic's that waits for the closure's, not the closure's thread; the
/// same at the top level says "sleeping in clock_nanosleep(), waiting in
/// hrtimer_nanosleep". Expected: nested or not, the report names where
/// the closure's own threads were.
#[test]
fn a_timed_out_run_in_a_nested_sandbox_says_where_the_closure_was() {
    hermetic::isolate_test(|| {
        let ns = Sandbox::builder()
            .timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap();
        let err = ns
            .try_run(|| std::thread::sleep(std::time::Duration::from_secs(60)))
            .unwrap_err();
        let said = format!("{err:?}");
        assert!(
            matches!(err, hermetic::Error::TimedOut { .. }) && said.contains("nanosleep"),
            "{said}"
        );
    });
}

/// `Network::shape`'s rustdoc: "Replaces any shape it had ... Returns once
/// the shaped link carries frames: the next datagram goes through the new
/// shape". A user's test makes a slow link better while traffic flows (a
/// replica's link at 300 ms one way, then 10 ms: latency that recovers), as
/// `tc qdisc change ... netem` would. What happened (measured, as root and
/// rootless, with ranges and with one id): 50 datagrams sent to `b` while its link held them (delay
/// 300 ms), then `shape(b, delay 10 ms)` 50 ms later: `b` received 0 of
/// 50; the same with `unshape(b)`: 0 of 50. Left alone, or with a
/// partition or `heal` meanwhile: 50 of 50. Every frame the link was
/// holding is dropped when its shape changes (the impairment process that
/// held them is replaced). For TCP that is a burst of loss the test never
/// asked for (a window of segments, retransmitted after an RTO). Expected:
/// frames in flight are delivered (at their old due time or by the new
/// shape), as a router's queue keeps them when conditions change; or the
/// rustdoc of `shape` and `unshape` saying that what the link holds is
/// dropped.
#[test]
#[ignore = "kept: what a link holds when its shape changes is dropped (Network::shape's rustdoc)"]
fn datagrams_in_flight_survive_a_change_of_shape() {
    use std::time::Duration;
    let net = Network::builder().host("a").host("b").build().unwrap();
    // Neighbours known (ARP is never delayed, but be sure).
    let _echo = udp_echo(&net, "b");
    assert!(echo_ready(&net, "a", "b"));
    net.shape("b", &hermetic::LinkShape::delay(Duration::from_millis(300)))
        .unwrap();
    let counter = net
        .host("b")
        .spawn(|| {
            let s = std::net::UdpSocket::bind("0.0.0.0:9100").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(2000)))
                .unwrap();
            let mut n = 0;
            let mut b = [0u8; 16];
            while s.recv(&mut b).is_ok() {
                n += 1;
            }
            n
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let sent = net.host("a").run(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..50 {
            s.send_to(b"x", "b:9100").unwrap();
        }
        50u32
    });
    std::thread::sleep(Duration::from_millis(50));
    net.shape("b", &hermetic::LinkShape::delay(Duration::from_millis(10)))
        .unwrap();
    let got: u32 = counter.join().unwrap();
    assert_eq!(
        got, sent,
        "datagrams in flight when the shape changed: {got} of {sent} arrived"
    );
}

/// The heartbeats a command's program wrote just before and a moment
/// after `signal` was sent to its `Child` (equal: the program paused).
fn beats_around(signal: libc::c_int) -> (String, String) {
    use std::time::Duration;
    let ns = Sandbox::new().unwrap();
    let mut child = ns
        .command("sh")
        .args([
            "-c",
            "while :; do date +%s%N > /tmp/beat.new; mv /tmp/beat.new /tmp/beat; sleep 0.02; done",
        ])
        .spawn()
        .unwrap();
    let beat = || {
        let out = ns.command("cat").arg("/tmp/beat").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let start = std::time::Instant::now();
    while beat().is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: a signal to our own child (the relay).
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    // Let a beat in progress finish.
    std::thread::sleep(Duration::from_millis(200));
    let first = beat();
    std::thread::sleep(Duration::from_millis(300));
    let second = beat();
    // SAFETY: as above.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGCONT);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    (first, second)
}

/// A user pauses a node (as `docker pause` or `kill -STOP` would: a frozen
/// process, a long GC pause) to test that its peers notice, then resumes
/// it: `libc::kill(child.id() as i32, SIGSTOP)` on the `Child` of
/// `command()` (a server started on a host), later `SIGCONT`. What
/// happened (measured, as root and rootless, with ranges and with one id,
/// on a network's host and a sandbox): the
/// program goes on serving (a UDP echo answered in 0.2 ms while
/// "stopped"; here, a heartbeat file goes on changing): the `Child`'s pid
/// is the relay, which `SIGSTOP` stops, but which cannot catch it to pass
/// it on (its rustdoc says signals "it can catch" are passed on, and
/// `SIGKILL` kills the program with it; nothing about stopping). A
/// `spawn`ed closure's `pid()` does stop. Expected: `SIGSTOP` and
/// `SIGCONT` sent to a command's `Child` stop and continue its program (the
/// relay could watch for its own stop, e.g. as a traced or `waitid`
/// child, or the program run in a freezer), or `command()`'s rustdoc saying
/// that stopping the `Child` does not stop the program, and how to (a
/// `kill -STOP` run inside).
#[test]
#[ignore = "kept: SIGSTOP cannot be caught, so it stops the relay only; SIGTSTP pauses the program (Sandbox::command's rustdoc; the next test)"]
fn sigstop_to_a_command_s_child_pauses_its_program() {
    let (first, second) = beats_around(libc::SIGSTOP);
    assert_eq!(
        first, second,
        "the program went on beating after SIGSTOP to its Child"
    );
}

/// What `Sandbox::command`'s rustdoc gives instead: `SIGTSTP`, which the
/// relay passes on, pauses the program, and `SIGCONT` lets it go on.
#[test]
fn sigtstp_to_a_command_s_child_pauses_its_program() {
    let (first, second) = beats_around(libc::SIGTSTP);
    assert_eq!(
        first, second,
        "the program went on beating after SIGTSTP to its Child"
    );
}

/// `LinkShape::rate`'s rustdoc: "A rate limit of `bytes_per_second`"
/// (the field: "Bytes per second"); the README: "1 MiB/s each way (tbf)".
/// A user simulates a slow link (a device on 64 kbit/s: 8 KiB/s) and
/// checks that a 32 KiB download takes about 4 s. What happened
/// (measured, as root and rootless, with ranges and with one id): 2.20 s (14.9 KB/s, 1.8 times the rate); 128 KiB
/// took 14.8 s of the 16 expected; at 64 KiB/s and 1 MiB/s the rate holds
/// (3.94 s of 4.00, 4.44 s of 4.00). The cause is in `shape.rs`, not in
/// any rustdoc: the `tbf` bucket holds "20 ms of traffic (at least 16
/// KiB)", so the first 16 KiB of every burst pass at line rate, which at
/// 8 KiB/s is two seconds' worth. Expected: a transfer over a rate-limited
/// link takes about size / rate, also for low rates (a bucket of a few
/// MTUs: `tbf` cuts GSO segments larger than its bucket itself), or the
/// rustdoc of `rate` giving the burst, so a test can allow for it.
#[test]
fn a_low_rate_holds_for_a_small_transfer() {
    use std::io::{Read, Write};
    let net = Network::builder().host("a").host("b").build().unwrap();
    let _server = net
        .host("b")
        .spawn(|| -> () {
            let l = std::net::TcpListener::bind("0.0.0.0:7001").unwrap();
            for c in l.incoming() {
                let mut c = c.unwrap();
                let mut len = [0u8; 8];
                if c.read_exact(&mut len).is_ok() {
                    let _ = c.write_all(&vec![7u8; u64::from_be_bytes(len) as usize]);
                }
            }
        })
        .unwrap();
    let up = net.host("a").run(|| {
        hermetic::connect_retry("b:7001");
        true
    });
    assert!(up);
    let rate = 8u64 << 10;
    let bytes = 32usize << 10;
    net.shape("b", &hermetic::LinkShape::rate(rate)).unwrap();
    let secs = net.host("a").run(move || {
        let mut s = hermetic::connect_retry("b:7001");
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let start = std::time::Instant::now();
        s.write_all(&(bytes as u64).to_be_bytes()).unwrap();
        let mut n = 0;
        let mut b = vec![0u8; 65536];
        while n < bytes {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        start.elapsed().as_secs_f64()
    });
    let expected = bytes as f64 / rate as f64;
    assert!(
        secs >= expected * 0.85,
        "{bytes} bytes at {rate} B/s took {secs:.2} s, expected about {expected:.2} s"
    );
}

/// `Network::shape`'s rustdoc: delay, jitter, loss ... "applied in user
/// space by the switch ... a link holds at most 64 MiB of delayed frames
/// (more is dropped, as by a full router queue)". A user adds latency
/// only (no loss) to a server's link and runs a heartbeat beside a bulk
/// transfer from another host to that server (a replica catching up while
/// a failure detector pings). What happened (measured, as root; rootless,
/// with ranges and with one id, this test: 87 and 105 lost): with
/// `delay(1 ms)`, 120 of 800 heartbeat datagrams (one each 5 ms) were
/// lost while a TCP stream went to the same host (222 MiB/s); with
/// `delay(20 ms)`, 8 of 800 (51 MiB/s); on the plain link 0 of 800
/// (1242 MiB/s); with no bulk traffic, 0 of 800 either way. Far under the
/// 64 MiB bound (222 MiB/s for 1 ms is 0.2 MiB in flight): the frames are
/// lost in the user-space carrier itself (its packet sockets' buffers, by
/// the look of it). Expected: a link shaped with a delay and no loss
/// drops nothing the test did not ask for, short of the documented 64 MiB;
/// or the rustdoc saying what throughput a user-space link carries without
/// loss.
#[test]
#[ignore = "kept: the user-space carrier falls behind a bulk stream and drops (Network::shape's rustdoc says how much)"]
fn a_delayed_link_under_load_loses_nothing() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let net = Network::builder()
        .host("a")
        .host("b")
        .host("c")
        .build()
        .unwrap();
    let _echo = udp_echo(&net, "b");
    assert!(echo_ready(&net, "a", "b"));
    let _sink = net
        .host("b")
        .spawn(|| -> () {
            let l = std::net::TcpListener::bind("0.0.0.0:7002").unwrap();
            for c in l.incoming() {
                std::thread::spawn(move || {
                    let mut c = c.unwrap();
                    let mut b = vec![0u8; 1 << 16];
                    while c.read(&mut b).is_ok_and(|n| n > 0) {}
                });
            }
        })
        .unwrap();
    net.shape("b", &hermetic::LinkShape::delay(Duration::from_millis(1)))
        .unwrap();
    let bulk = net
        .host("c")
        .spawn(|| {
            let mut s = hermetic::connect_retry("b:7002");
            let b = vec![1u8; 1 << 20];
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if s.write_all(&b).is_err() {
                    break;
                }
            }
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let answered = net.host("a").run(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect(("b", 9000)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let r = s.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut seen = std::collections::HashSet::new();
            let mut buf = [0u8; 8];
            while let Ok(4) = r.recv(&mut buf) {
                seen.insert(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            }
            seen.len()
        });
        for i in 0..800u32 {
            s.send(&i.to_be_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        reader.join().unwrap()
    });
    bulk.join().unwrap();
    assert!(
        answered >= 799,
        "a link shaped with a 1 ms delay and no loss, under a bulk stream: \
         {} of 800 heartbeats lost",
        800 - answered
    );
}
