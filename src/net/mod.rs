//! Networks of sandboxes: hosts on one virtual segment, with names,
//! partitions, links that go down and links that are shaped.
//!
//! One user namespace owns everything. A *switch* sandbox holds the
//! bridges; every host is a sandbox of its own (network, mount, PID, UTS and
//! IPC namespaces) that shares the switch's user namespace, so the switch can
//! plug a veth pair into each host's network namespace. All configuration is
//! netlink, sent from runs inside the switch or the host.
//!
//! Layer: public API, above `sandbox` (a network is made of sandboxes).
//! The folder holds [`shape`] (a link's delay, loss and rate), [`impair`]
//! (link impairment: those faults carried in user space, no netem),
//! [`netlink`] and [`sockdiag`] (message encoders for the kernel's
//! sockets). It may use `sandbox` and every layer below it.

pub(crate) mod impair;
pub(crate) mod netlink;
pub(crate) mod shape;
pub(crate) mod sockdiag;

use std::ffi::OsStr;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::Error;
use crate::net::netlink::Netlink;
use crate::sys::fd::Fd;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::net::shape::LinkShape;
use crate::sandbox::{Sandbox, SandboxBuilder, Spawned};

/// The segment hosts live on: 10.77.0.0/24, inside the network's own
/// namespaces only.
const SUBNET: [u8; 3] = [10, 77, 0];
const PREFIX: u8 = 24;

/// How long a host's ARP waits before it asks again for an address it
/// has not heard back from (the kernel's default: 1 s).
const ARP_RETRANS: &str = "/proc/sys/net/ipv4/neigh/eth0/retrans_time_ms";

/// The most hosts one segment holds.
pub const MAX_HOSTS: usize = 250;

/// A failed netlink step inside a run: what, and the errno.
type Step = (String, i32);

fn step(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Step {
    let what = what.into();
    move |e| (what, e.raw_os_error().unwrap_or(libc::EIO))
}

fn from_step((step, errno): Step) -> Error {
    Error::Network {
        step,
        error: std::io::Error::from_raw_os_error(errno),
    }
}

/// Options for a [`Network`]; made by [`Network::builder`] or
/// [`NetworkBuilder::new`].
#[derive(Debug, Clone, Default)]
pub struct NetworkBuilder {
    /// Each host's name, and its own options if it has any.
    hosts: Vec<(String, Option<SandboxBuilder>)>,
    timeout: Option<Duration>,
}

impl NetworkBuilder {
    /// A network with no hosts yet.
    #[must_use = "a builder does nothing until build() is called"]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a host called `name`: its hostname, and the name every other
    /// host resolves to its address. A name is one label (`db`) or more
    /// (`db.test`, `node-1.cluster.local`) of letters, digits and `-`, at
    /// most 64 bytes in all; [`build`](Self::build) refuses others.
    pub fn host(&mut self, name: impl Into<String>) -> &mut Self {
        self.hosts.push((name.into(), None));
        self
    }

    /// Adds a host called `name` with options of its own: the mounts,
    /// timeout, result size and so on of `options` (its hostname is
    /// `name`, and its `/etc/hosts` the network's).
    ///
    /// ```no_run
    /// let mut db = hermetic::Sandbox::builder();
    /// db.tmpfs("/mnt");
    /// let net = hermetic::Network::builder().host_with("db", &db).host("app").build()?;
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    pub fn host_with(&mut self, name: impl Into<String>, options: &SandboxBuilder) -> &mut Self {
        self.hosts.push((name.into(), Some(options.clone())));
        self
    }

    /// The timeout of every run on every host that has none of its own
    /// (see [`SandboxBuilder::timeout`]).
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = Some(timeout);
        self
    }

    fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Error::InvalidOption {
            option: "host",
            reason,
        };
        if self.hosts.is_empty() {
            return Err(invalid("a network needs at least one host".into()));
        }
        if self.hosts.len() > MAX_HOSTS {
            return Err(invalid(format!(
                "{} hosts; one network holds at most {MAX_HOSTS}",
                self.hosts.len()
            )));
        }
        for (i, (name, _)) in self.hosts.iter().enumerate() {
            if let Some(reason) = bad_hostname(name) {
                return Err(invalid(format!(
                    "{name:?} is not a valid host name: {reason}"
                )));
            }
            // Names resolve without regard to case: `db` and `DB` are one.
            if let Some((other, _)) = self.hosts[..i]
                .iter()
                .find(|(other, _)| other.eq_ignore_ascii_case(name))
            {
                return Err(invalid(if other == name {
                    format!("the name {name:?} is given twice")
                } else {
                    format!(
                        "the names {other:?} and {name:?} differ only in case, and host \
                         names resolve without regard to it"
                    )
                }));
            }
        }
        Ok(())
    }

    /// Creates the network: the switch, every host, their links and
    /// addresses, and the `/etc/hosts` every host sees. Returns once every
    /// link carries frames (the kernel takes a new link's carrier, and a
    /// bridge its new port, in a worker of its own a moment later).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming a bad host name (empty, not a valid
    /// hostname, given twice) before anything is created; the errors of
    /// [`SandboxBuilder::build`]; [`Error::Network`] naming the netlink step
    /// that failed.
    pub fn build(&self) -> Result<Network, Error> {
        self.validate()?;
        let addrs: Vec<Ipv4Addr> = (0..self.hosts.len())
            .map(|i| Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], i as u8 + 1))
            .collect();

        let mut hosts_file = format!(
            "127.0.0.1\t{}\n::1\t{}\n",
            LOOPBACK_NAMES[0],
            LOOPBACK_NAMES.join(" ")
        );
        for ((name, _), addr) in self.hosts.iter().zip(&addrs) {
            hosts_file.push_str(&format!("{addr}\t{name}\n"));
        }

        let switch = Sandbox::builder().hostname("switch").build()?;
        let hosts_file = hosts_file.into_bytes();
        let mut hosts = Vec::with_capacity(self.hosts.len());
        for (i, ((name, options), addr)) in self.hosts.iter().zip(&addrs).enumerate() {
            let mut builder = options.clone().unwrap_or_default();
            builder.hostname(name);
            // Made inside each host: nothing on the host's disk.
            builder.file("/etc/hosts", hosts_file.clone());
            // A host has a default route out of eth0, where no nameserver
            // answers: a lookup of a name the network lacks would wait out
            // every timeout of the host's resolver (12 s). Asking its own
            // loopback, where none listens, it fails at once, as in a
            // sandbox; a test may place a resolv.conf of its own.
            let resolv = std::path::Path::new("/etc/resolv.conf");
            if resolv.exists() && !builder.places(resolv) {
                builder.file(resolv, &b"nameserver 127.0.0.1\noptions attempts:1\n"[..]);
            }
            if let Some(t) = self.timeout
                && !builder.has_timeout()
            {
                builder.timeout(t);
            }
            hosts.push(Host {
                name: name.clone(),
                addr: *addr,
                port: format!("port{i}"),
                sandbox: builder.build_in(Some(&switch))?,
            });
        }

        // Plug a veth pair into each host, its switch end on br0.
        let netns: Vec<Fd> = hosts
            .iter()
            .map(|h| {
                let path = format!("/proc/{}/ns/net", h.sandbox.pid());
                Fd::open(|| std::fs::File::open(path))
                    .map_err(|e| Error::sys("opening a host's network namespace", e))
            })
            .collect::<Result<_, _>>()?;
        // The switch's run is handed these, and only these, of our fds.
        let keep: Vec<i32> = netns.iter().map(AsRawFd::as_raw_fd).collect();
        let plugs: Vec<(String, i32)> = hosts
            .iter()
            .zip(&netns)
            .map(|(h, fd)| (h.port.clone(), fd.as_raw_fd()))
            .collect();
        switch
            .try_run_keeping(&keep, move || -> Result<(), Step> {
                let mut nl = Netlink::new().map_err(step("opening netlink in the switch"))?;
                nl.add_bridge("br0")
                    .map_err(step("creating the bridge br0"))?;
                let br = nl.index("br0").map_err(step("finding br0"))?;
                nl.set_up(br, true).map_err(step("bringing br0 up"))?;
                for (port, fd) in &plugs {
                    nl.add_veth(port, "eth0", Some(*fd))
                        .map_err(step(format!("creating the veth pair {port} <-> eth0")))?;
                    let idx = nl.index(port).map_err(step(format!("finding {port}")))?;
                    nl.set_master(idx, br)
                        .map_err(step(format!("plugging {port} into br0")))?;
                    nl.set_up(idx, true)
                        .map_err(step(format!("bringing {port} up")))?;
                }
                Ok(())
            })?
            .map_err(from_step)?;
        drop(netns);

        // Address and route on each host, hosts in parallel.
        std::thread::scope(|s| {
            let jobs: Vec<_> = hosts
                .iter()
                .map(|h| {
                    s.spawn(move || {
                        let addr = h.addr;
                        // As root inside: a host may run its closures as
                        // a user of its own, with no capability over its
                        // network.
                        h.sandbox
                            .try_run_as_root(move || -> Result<(), Step> {
                                let mut nl = Netlink::new().map_err(step("opening netlink"))?;
                                let idx = nl.index("eth0").map_err(step("finding eth0"))?;
                                nl.add_address(idx, IpAddr::V4(addr), PREFIX)
                                    .map_err(step(format!("adding {addr}/{PREFIX} to eth0")))?;
                                nl.set_up(idx, true).map_err(step("bringing eth0 up"))?;
                                nl.add_default_route(idx)
                                    .map_err(step("adding the default route via eth0"))?;
                                // ARP asks again after 50 ms, not a second:
                                // a host that asked for another during a
                                // partition (or a link down) would hold its
                                // next datagram that long after the heal.
                                // Where /proc/sys/net is read-only (a
                                // network inside a sandbox), as it was.
                                let _ = std::fs::write(ARP_RETRANS, "50");
                                Ok(())
                            })?
                            .map_err(from_step)
                    })
                })
                .collect();
            jobs.into_iter()
                .try_for_each(|j| j.join().expect("configuring a host panicked"))
        })?;
        // Each host's eth0 up gave both ends their carrier; the switch's
        // ends take it (and the bridge its ports) in a kernel worker.
        let ports: Vec<String> = hosts.iter().map(|h| h.port.clone()).collect();
        switch
            .try_run(move || -> Result<(), Step> {
                ports.iter().try_for_each(|port| wait_carrying(port))
            })?
            .map_err(from_step)?;

        Ok(Network {
            hosts,
            switch,
            groups: Mutex::new(0),
            links: Mutex::new(
                (0..self.hosts.len())
                    .map(|_| LinkState {
                        bridge: Some("br0".into()),
                        impairment: None,
                    })
                    .collect(),
            ),
        })
    }
}

/// Why `name` cannot be a hostname (RFC 1123 label), if it cannot.
fn bad_hostname(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    // The kernel's limit for a hostname (`sethostname`).
    if name.len() > 64 {
        return Some("it is longer than 64 bytes");
    }
    // A name of one or more labels (`db`, `db.test`, `node-1.cluster.local`).
    let mut labels = name.split('.');
    if labels.clone().any(str::is_empty) {
        return Some("it has an empty label (a leading, trailing or doubled '.')");
    }
    if !labels
        .clone()
        .all(|l| l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        return Some("only letters, digits, '-' and '.' between labels are allowed");
    }
    if labels
        .clone()
        .any(|l| l.starts_with('-') || l.ends_with('-'))
    {
        return Some("a label starts or ends with '-'");
    }
    // As RFC 3696 asks of a top-level label: `10`, `1.2.3.4` read as
    // addresses.
    if labels
        .next_back()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some("its last label is all digits, which reads as an address");
    }
    // Every host's /etc/hosts names its loopback so.
    if LOOPBACK_NAMES.iter().any(|r| name.eq_ignore_ascii_case(r)) {
        return Some("it is reserved (every host's /etc/hosts names its own loopback so)");
    }
    None
}

/// The names every host's `/etc/hosts` gives its loopback (the first
/// for `127.0.0.1` and `::1`, all of them for `::1`): no host may take
/// them.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "ip6-localhost", "ip6-loopback"];

/// One host of a [`Network`]: a [`Sandbox`] with a name and an address.
/// It runs closures and programs as a sandbox does; [`Host::sandbox`]
/// gives the rest of the sandbox's methods.
pub struct Host {
    name: String,
    addr: Ipv4Addr,
    /// Its link's name on the switch.
    port: String,
    sandbox: Sandbox,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish()
    }
}

impl Host {
    /// Its name, which is also its hostname.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its address on the network's segment.
    pub fn addr(&self) -> IpAddr {
        IpAddr::V4(self.addr)
    }
}

impl Host {
    /// The host's sandbox, for everything a [`Sandbox`] does that a host
    /// does not offer itself (a [`Killer`](crate::Killer), say).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Runs `f` on this host; see [`Sandbox::run`].
    #[track_caller]
    pub fn run<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T,
        T: Serialize + DeserializeOwned,
    {
        self.sandbox.run(f)
    }

    /// Runs `f` on this host; see [`Sandbox::try_run`].
    ///
    /// # Errors
    ///
    /// As [`Sandbox::try_run`].
    pub fn try_run<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T,
        T: Serialize + DeserializeOwned,
    {
        self.sandbox.try_run(f)
    }

    /// Starts `f` in the background on this host; see [`Sandbox::spawn`].
    ///
    /// # Errors
    ///
    /// As [`Sandbox::spawn`].
    pub fn spawn<F, T>(&self, f: F) -> Result<Spawned<T>, Error>
    where
        F: FnOnce() -> T,
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.sandbox.spawn(f)
    }

    /// A command that runs `program` on this host; see
    /// [`Sandbox::command`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> std::process::Command {
        self.sandbox.command(program)
    }

    /// The pid of the host's init process; see [`Sandbox::pid`].
    pub fn pid(&self) -> u32 {
        self.sandbox.pid()
    }
}

/// Several sandboxes ("hosts") on one virtual Ethernet segment.
///
/// Every host has `lo` and `eth0` with its address, a default route out of
/// `eth0`, and an `/etc/hosts` that names every host, so
/// `TcpStream::connect("b:7000")` works from `a`. Links can be partitioned,
/// taken down, and shaped. Dropping the network removes every host, link
/// and process. Rootless, like a sandbox.
///
/// # Examples
///
/// ```no_run
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use hermetic::Network;
///
/// let net = Network::builder().host("client").host("server").host("other").build()?;
/// let _srv = net.host("server").spawn(|| {
///     let l = std::net::TcpListener::bind("0.0.0.0:7000").unwrap();
///     for c in l.incoming() {
///         c.unwrap().write_all(b"pong").unwrap();
///     }
/// })?;
/// let reply = net.host("client").run(|| {
///     let mut s = String::new();
///     hermetic::connect_retry("server:7000").read_to_string(&mut s).unwrap();
///     s
/// });
/// assert_eq!(reply, "pong");
///
/// net.partition(&[&["client"], &["server", "other"]])?;
/// let cut = net.host("client").run(|| {
///     let addr = ("server", 7000).to_socket_addrs().unwrap().next().unwrap();
///     std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err()
/// });
/// assert!(cut);
/// net.heal()?;
/// # use std::net::ToSocketAddrs;
/// # Ok::<(), hermetic::Error>(())
/// ```
pub struct Network {
    /// Dropped before the switch.
    hosts: Vec<Host>,
    switch: Sandbox,
    /// How many partition bridges exist; held while the topology changes.
    groups: Mutex<usize>,
    /// Each host's link: where it is plugged, and its impairment process,
    /// if shaped in user space. Locked after `groups` when both are.
    links: Mutex<Vec<LinkState>>,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("hosts", &self.hosts)
            .finish()
    }
}

impl Network {
    /// A builder; add hosts with [`NetworkBuilder::host`].
    #[must_use = "a builder does nothing until build() is called"]
    pub fn builder() -> NetworkBuilder {
        NetworkBuilder::default()
    }

    /// The host called `name`.
    ///
    /// # Panics
    ///
    /// When there is no such host; the message lists the names there are.
    #[track_caller]
    pub fn host(&self, name: &str) -> &Host {
        self.try_host(name).unwrap_or_else(|| {
            panic!(
                "hermetic: no host named {name:?} in this network; its hosts are: {}",
                self.names().join(", ")
            )
        })
    }

    /// The host called `name`, if there is one.
    pub fn try_host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Every host, in the order they were added.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Tears the network down like `drop` (every host, then the switch
    /// with the links), but reports what went wrong.
    ///
    /// # Errors
    ///
    /// The first error of [`Sandbox::close`] among the hosts and the
    /// switch; all are torn down either way.
    pub fn close(self) -> Result<(), Error> {
        let Network { hosts, switch, .. } = self;
        let mut first = Ok(());
        for host in hosts {
            let closed = host.sandbox.close();
            if first.is_ok() {
                first = closed;
            }
        }
        let closed = switch.close();
        first.and(closed)
    }

    fn names(&self) -> Vec<&str> {
        self.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    fn index_of(&self, option: &'static str, name: &str) -> Result<usize, Error> {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .ok_or_else(|| Error::InvalidOption {
                option,
                reason: format!(
                    "no host named {name:?}; the hosts are: {}",
                    self.names().join(", ")
                ),
            })
    }

    /// Splits the network: hosts in the same group reach each other, hosts
    /// in different groups do not (their packets go nowhere: connects time
    /// out or find no host). Hosts in no group are cut off from everyone.
    /// Replaces any earlier partition.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for an unknown name or a host in two groups
    /// (nothing changes then); [`Error::Network`] if the switch refused.
    pub fn partition(&self, groups: &[&[&str]]) -> Result<(), Error> {
        let mut group_of: Vec<Option<usize>> = vec![None; self.hosts.len()];
        for (g, members) in groups.iter().enumerate() {
            for name in members.iter() {
                let i = self.index_of("partition", name)?;
                if let Some(other) = group_of[i] {
                    return Err(Error::InvalidOption {
                        option: "partition",
                        reason: format!("{name:?} is in group {other} and in group {g}"),
                    });
                }
                group_of[i] = Some(g);
            }
        }
        let mut made = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        let ports: Vec<(String, Option<usize>)> = (0..self.hosts.len())
            .map(|i| bridge_port(&self.hosts[i], &links[i]))
            .zip(group_of.iter().copied())
            .collect();
        let wanted = groups.len();
        let existing = *made;
        self.switch
            .try_run(move || -> Result<(), Step> {
                let mut nl = Netlink::new().map_err(step("opening netlink in the switch"))?;
                for g in existing..wanted {
                    let name = format!("group{g}");
                    nl.add_bridge(&name)
                        .map_err(step(format!("creating the partition bridge {name}")))?;
                    let idx = nl.index(&name).map_err(step(format!("finding {name}")))?;
                    nl.set_up(idx, true)
                        .map_err(step(format!("bringing {name} up")))?;
                }
                for (port, group) in &ports {
                    let master = match group {
                        Some(g) => nl
                            .index(&format!("group{g}"))
                            .map_err(step(format!("finding group{g}")))?,
                        None => 0,
                    };
                    let idx = nl.index(port).map_err(step(format!("finding {port}")))?;
                    nl.set_master(idx, master)
                        .map_err(step(format!("moving {port} to its partition")))?;
                }
                Ok(())
            })?
            .map_err(from_step)?;
        *made = existing.max(wanted);
        for (link, group) in links.iter_mut().zip(group_of) {
            link.bridge = group.map(|g| format!("group{g}"));
        }
        Ok(())
    }

    /// Undoes [`partition`](Self::partition): every host reaches every
    /// other again.
    ///
    /// # Errors
    ///
    /// [`Error::Network`] if the switch refused.
    pub fn heal(&self) -> Result<(), Error> {
        let _topology = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        let ports: Vec<String> = (0..self.hosts.len())
            .map(|i| bridge_port(&self.hosts[i], &links[i]))
            .collect();
        self.switch
            .try_run(move || -> Result<(), Step> {
                let mut nl = Netlink::new().map_err(step("opening netlink in the switch"))?;
                let br = nl.index("br0").map_err(step("finding br0"))?;
                for port in &ports {
                    let idx = nl.index(port).map_err(step(format!("finding {port}")))?;
                    nl.set_master(idx, br)
                        .map_err(step(format!("moving {port} back to br0")))?;
                }
                Ok(())
            })?
            .map_err(from_step)?;
        for link in links.iter_mut() {
            link.bridge = Some("br0".into());
        }
        Ok(())
    }

    /// Takes `host`'s link down (as if its cable were pulled) or up. Up,
    /// it returns once the link carries frames again (both ends have their
    /// carrier back, and the switch forwards to it): the next datagram
    /// gets through.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for an unknown host; [`Error::Network`] if
    /// the switch refused.
    pub fn set_link(&self, host: &str, up: bool) -> Result<(), Error> {
        let i = self.index_of("set_link", host)?;
        let port = self.hosts[i].port.clone();
        self.switch
            .try_run(move || -> Result<(), Step> {
                let mut nl = Netlink::new().map_err(step("opening netlink in the switch"))?;
                let idx = nl.index(&port).map_err(step(format!("finding {port}")))?;
                let what = if up { "up" } else { "down" };
                nl.set_up(idx, up)
                    .map_err(step(format!("taking {port} {what}")))?;
                if up {
                    wait_carrying(&port)?;
                }
                Ok(())
            })?
            .map_err(from_step)?;
        if up {
            // The host's end got its carrier back too.
            self.hosts[i]
                .sandbox
                .try_run(|| wait_carrying("eth0"))?
                .map_err(from_step)?;
        }
        Ok(())
    }

    /// Shapes `host`'s link in both directions: what it sends and what it
    /// receives. Replaces any shape it had.
    ///
    /// A rate uses the kernel's `tbf` qdisc; delay, jitter, loss,
    /// duplication and reordering are applied in user space by the switch
    /// (on every kernel, rootless), to unicast IP frames, as a seeded
    /// generator decides ([`LinkShape::with_seed`]); a link holds at most
    /// 64 MiB of delayed frames (more is dropped, as by a full router
    /// queue). The process that carries them can fall behind a bulk
    /// stream: beside a TCP stream of about 200 MiB/s through a link
    /// delayed 1 ms, 69-120 of 800 small datagrams were lost on this
    /// crate's 2-CPU test machine (`tests/it/trial5.rs`); a plain link, or
    /// no bulk stream, lost none. Partitions, [`heal`](Self::heal) and
    /// [`set_link`](Self::set_link) work on shaped links as on others.
    /// Returns once the shaped link carries frames: the next datagram
    /// goes through the new shape. What the link held when its shape
    /// changes (frames a delay held back) is dropped, as by a link
    /// replaced; so is it by [`unshape`](Self::unshape).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for an unknown host or a shape that makes
    /// no sense; [`Error::ShapingUnavailable`] when the kernel lacks `tbf`
    /// (for a rate); [`Error::Network`] for other refusals.
    pub fn shape(&self, host: &str, shape: &LinkShape) -> Result<(), Error> {
        let i = self.index_of("shape", host)?;
        if let Some(reason) = shape.invalid() {
            return Err(Error::InvalidOption {
                option: "shape",
                reason,
            });
        }
        self.shape_link(i, shape, shape)
    }

    /// Shapes each direction of `host`'s link on its own: `sent` what the
    /// host sends, `received` what it receives; [`LinkShape::default()`]
    /// leaves a direction as it is on a plain link. Replaces any shape it
    /// had. An asymmetric fault, say, where `host`'s requests arrive but its
    /// answers are lost:
    ///
    /// ```no_run
    /// # let net = hermetic::Network::builder().host("h1").host("h2").build()?;
    /// use hermetic::LinkShape;
    /// net.shape_each_way("h2", &LinkShape::loss(100.0), &LinkShape::default())?;
    /// # Ok::<(), hermetic::Error>(())
    /// ```
    ///
    /// Each direction draws from its own generator, seeded with its
    /// shape's seed.
    ///
    /// # Errors
    ///
    /// As [`shape`](Self::shape); [`Error::InvalidOption`] also when both
    /// shapes are empty.
    pub fn shape_each_way(
        &self,
        host: &str,
        sent: &LinkShape,
        received: &LinkShape,
    ) -> Result<(), Error> {
        let i = self.index_of("shape_each_way", host)?;
        let empty = LinkShape::default();
        for shape in [sent, received] {
            if let Some(reason) = shape.invalid().filter(|_| shape != &empty) {
                return Err(Error::InvalidOption {
                    option: "shape_each_way",
                    reason,
                });
            }
        }
        if sent == &empty && received == &empty {
            return Err(Error::InvalidOption {
                option: "shape_each_way",
                reason: "nothing to shape in either direction; unshape the link instead".into(),
            });
        }
        self.shape_link(i, sent, received)
    }

    /// Shapes host `i`'s link: `sent` what it sends, `received` what it
    /// receives (both checked).
    fn shape_link(&self, i: usize, sent: &LinkShape, received: &LinkShape) -> Result<(), Error> {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        self.clear_shape(i, &mut links[i])?;
        let h = &self.hosts[i];
        // A rate is a tbf qdisc where the direction's frames leave: the
        // host's eth0 for what it sends, its port on the switch for what
        // it receives.
        let rates = [
            (&h.sandbox, "eth0".to_owned(), sent.rate),
            (&self.switch, h.port.clone(), received.rate),
        ];
        for (sandbox, link, rate) in rates {
            let Some(rate) = rate else { continue };
            let options = crate::net::shape::tbf_options(rate);
            sandbox
                .try_run_as_root(move || -> Result<(), Step> {
                    let mut nl = Netlink::new().map_err(step("opening netlink"))?;
                    let idx = nl.index(&link).map_err(step(format!("finding {link}")))?;
                    nl.replace_root_qdisc(idx, "tbf", options)
                        .map_err(step(format!("setting a tbf qdisc on {link}")))
                })?
                .map_err(|(what, errno)| {
                    if errno == libc::ENOENT {
                        Error::ShapingUnavailable {
                            what: "a rate",
                            qdisc: "tbf",
                            hint: "fix: sudo modprobe sch_tbf, or install the \
                                   distribution's extra kernel modules (Ubuntu: \
                                   linux-modules-extra-$(uname -r))"
                                .into(),
                        }
                    } else {
                        from_step((what, errno))
                    }
                })?;
        }
        if sent.needs_impairment() || received.needs_impairment() {
            let imp = [sent.impairment(), received.impairment()];
            links[i].impairment = Some(self.start_impairment(i, links[i].bridge.clone(), imp)?);
        }
        Ok(())
    }

    /// Starts the link impairment of `host` (see [`impair`]), a process
    /// between its link and its bridge: `impairN` <-> `bridgeN` takes the
    /// link's place on `bridge`, and a process of the switch carries frames
    /// between the link and `impairN`. Returns once it carries.
    fn start_impairment(
        &self,
        i: usize,
        bridge: Option<String>,
        imp: [crate::net::impair::Impairment; 2],
    ) -> Result<Spawned, Error> {
        let port = self.hosts[i].port.clone();
        let (impair_end, bridge_end) = (format!("impair{i}"), format!("bridge{i}"));
        let (host_side, bridge_side) = self
            .switch
            .try_run(move || -> Result<(u32, u32), Step> {
                let mut nl = Netlink::new().map_err(step("opening netlink in the switch"))?;
                nl.add_veth(&impair_end, &bridge_end, None)
                    .map_err(step(format!(
                        "creating the veth pair {impair_end} <-> {bridge_end}"
                    )))?;
                let master = match &bridge {
                    Some(b) => nl.index(b).map_err(step(format!("finding {b}")))?,
                    None => 0,
                };
                let end = nl
                    .index(&bridge_end)
                    .map_err(step(format!("finding {bridge_end}")))?;
                nl.set_master(end, master)
                    .map_err(step(format!("plugging {bridge_end} in")))?;
                let port_idx = nl.index(&port).map_err(step(format!("finding {port}")))?;
                nl.set_master(port_idx, 0)
                    .map_err(step(format!("unplugging {port} for its impairment")))?;
                let impair_idx = nl
                    .index(&impair_end)
                    .map_err(step(format!("finding {impair_end}")))?;
                for (idx, name) in [(end, &bridge_end), (impair_idx, &impair_end)] {
                    nl.set_up(idx, true)
                        .map_err(step(format!("bringing {name} up")))?;
                }
                wait_carrying(&bridge_end)?;
                Ok((port_idx, impair_idx))
            })?
            .map_err(from_step)?;
        let (ready_r, ready_w) = crate::sys::fd::pipe()
            .map_err(|e| Error::sys("creating the impairment process's ready pipe", e))?;
        let keep = [ready_w.as_raw_fd()];
        let name = self.hosts[i].name.clone();
        let process = self.switch.spawn_keeping(&keep, move || {
            let why = crate::net::impair::run(host_side, bridge_side, imp, ready_w);
            eprintln!("hermetic: the impairment process of {name}'s link stopped: {why}");
        })?;
        // It says so once its sockets are open; or ends without a word.
        let mut byte = [0u8; 1];
        match crate::sys::poll(&[ready_r.as_fd()], Some(Duration::from_secs(60))) {
            Ok(r) if r[0].any && crate::sys::read(ready_r.as_fd(), &mut byte) == Ok(1) => {
                Ok(process)
            }
            _ => Err(Error::Network {
                step: format!(
                    "starting the impairment process of {}'s link",
                    self.hosts[i].name
                ),
                error: std::io::Error::other("it ended (or hung) before carrying frames"),
            }),
        }
    }

    /// Takes a host's link back to plain: no impairment process (the link
    /// plugged back where its `impairN` pair was), no qdiscs.
    fn clear_shape(&self, i: usize, link: &mut LinkState) -> Result<(), Error> {
        let h = &self.hosts[i];
        if let Some(process) = link.impairment.take() {
            let _ = process.kill();
            let (port, impair_end, bridge) =
                (h.port.clone(), format!("impair{i}"), link.bridge.clone());
            self.switch
                .try_run(move || -> Result<(), Step> {
                    let mut nl = Netlink::new().map_err(step("opening netlink in the switch"))?;
                    let idx = nl
                        .index(&impair_end)
                        .map_err(step(format!("finding {impair_end}")))?;
                    nl.delete_link(idx)
                        .map_err(step(format!("removing the veth pair of {impair_end}")))?;
                    let master = match &bridge {
                        Some(b) => nl.index(b).map_err(step(format!("finding {b}")))?,
                        None => 0,
                    };
                    let port_idx = nl.index(&port).map_err(step(format!("finding {port}")))?;
                    nl.set_master(port_idx, master)
                        .map_err(step(format!("plugging {port} back in")))
                })?
                .map_err(from_step)?;
        }
        for (sandbox, link) in [(&self.switch, h.port.clone()), (&h.sandbox, "eth0".into())] {
            sandbox
                .try_run_as_root(move || -> Result<(), Step> {
                    let mut nl = Netlink::new().map_err(step("opening netlink"))?;
                    let idx = nl.index(&link).map_err(step(format!("finding {link}")))?;
                    match nl.delete_root_qdisc(idx) {
                        // None there (the kernel's default qdisc).
                        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) => {
                            Ok(())
                        }
                        other => other.map_err(step(format!("removing the qdisc of {link}"))),
                    }
                })?
                .map_err(from_step)?;
        }
        Ok(())
    }

    /// Removes any shaping from `host`'s link.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for an unknown host; [`Error::Network`] if
    /// the kernel refused.
    pub fn unshape(&self, host: &str) -> Result<(), Error> {
        let i = self.index_of("unshape", host)?;
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        self.clear_shape(i, &mut links[i])
    }

    /// Drops every datagram to and from `host` without a word (`on`), or
    /// stops: unlike a partition (no route: the sender learns nothing
    /// arrives, ARP fails) the host still seems there (ARP and IPv6's
    /// neighbour discovery pass), and connections hang until their
    /// timeouts. A 100% loss, which drops broadcast and multicast
    /// datagrams too; replaces any shape.
    ///
    /// # Errors
    ///
    /// As [`shape`](Self::shape).
    pub fn blackhole(&self, host: &str, on: bool) -> Result<(), Error> {
        if on {
            self.shape(host, &LinkShape::loss(100.0))
        } else {
            self.unshape(host)
        }
    }

    /// Aborts every TCP connection `host` has (in any state but listening),
    /// as Toxiproxy's `reset_peer` does: each peer gets a reset and its next
    /// read or write fails with `ConnectionReset`, the host's own sockets
    /// with `ConnectionAborted`. Listening sockets stay, so clients can
    /// connect again at once. Returns how many connections were reset.
    ///
    /// Needs the kernel's `CONFIG_INET_DIAG_DESTROY` (on in the common
    /// distributions' kernels).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for an unknown host; [`Error::Network`] if
    /// the kernel refused (`EOPNOTSUPP` without `CONFIG_INET_DIAG_DESTROY`).
    pub fn reset_connections(&self, host: &str) -> Result<usize, Error> {
        let i = self.index_of("reset_connections", host)?;
        self.hosts[i]
            .sandbox
            .try_run_as_root(|| {
                crate::net::sockdiag::reset_connections().map_err(step("resetting TCP connections"))
            })?
            .map_err(from_step)
    }
}

/// A host's link, as the network has set it up.
#[derive(Debug)]
struct LinkState {
    /// The bridge it is plugged into (`br0`, a partition's `groupN`), or
    /// none (a host left out of a partition).
    bridge: Option<String>,
    /// The process carrying its frames in user space, when shaped so.
    impairment: Option<Spawned>,
}

/// The switch-side link that sits on a bridge for host `h`: its own port,
/// or, while its frames go through an impairment process, the far end of
/// the `impairN` pair (`bridgeN`).
fn bridge_port(h: &Host, link: &LinkState) -> String {
    match link.impairment {
        Some(_) => h
            .port
            .strip_prefix("port")
            .map_or_else(|| h.port.clone(), |n| format!("bridge{n}")),
        None => h.port.clone(),
    }
}

/// Waits until link `name` of this network namespace (a veth end just
/// brought up, or whose peer just was) carries frames: its carrier seen by
/// the kernel's link watch, which activates its queue only then (until it
/// has, what is sent through the link is dropped), and, if it is a bridge's
/// port, that port forwarding (which the bridge decides once told of the
/// carrier). Both happen in a kernel worker after `set_up` has returned: a
/// sender that went on at once lost its first frames on a busy machine.
/// A link without a carrier (its peer down) is not waited for. `ETIMEDOUT`
/// after 10 s, as a step naming the link.
fn wait_carrying(name: &str) -> Result<(), Step> {
    let read = |file: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{name}/{file}")).unwrap_or_default()
    };
    let carrying = || {
        // No carrier (the peer is down, which is its own side's business):
        // nothing to wait for.
        read("carrier").trim_end() != "1"
            || (read("operstate").trim_end() == "up"
                // BR_STATE_FORWARDING, where it is a bridge's port.
                && match read("brport/state").trim_end() {
                    "" => true,
                    state => state == "3",
                })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !carrying() {
        if std::time::Instant::now() > deadline {
            return Err((
                format!("waiting for {name} to carry frames"),
                libc::ETIMEDOUT,
            ));
        }
        // A kernel worker's turn: there is nothing to wait on but its
        // result.
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}
