//! Networks of sandboxes: hosts on one virtual segment, with names,
//! partitions, links that go down and links that are shaped.
//!
//! One user namespace owns everything. A *switch* sandbox holds the
//! bridges; every host is a sandbox of its own (network, mount, PID, UTS and
//! IPC namespaces) that shares the switch's user namespace, so the switch can
//! plug a veth pair into each host's network namespace. All configuration is
//! netlink, sent from runs inside the switch or the host.

use std::ffi::OsStr;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::Error;
use crate::fds::Fd;
use crate::netlink::Netlink;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::sandbox::{Sandbox, SandboxBuilder, Spawned};
use crate::shape::LinkShape;

/// The segment hosts live on: 10.77.0.0/24, inside the network's own
/// namespaces only.
const SUBNET: [u8; 3] = [10, 77, 0];
const PREFIX: u8 = 24;
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
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a host called `name`: its hostname, and the name every other
    /// host resolves to its address.
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
            if self.hosts[..i].iter().any(|(other, _)| other == name) {
                return Err(invalid(format!("the name {name:?} is given twice")));
            }
        }
        Ok(())
    }

    /// Creates the network: the switch, every host, their links and
    /// addresses, and the `/etc/hosts` every host sees.
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

        let mut hosts_file =
            String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
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
                        h.sandbox
                            .try_run(move || -> Result<(), Step> {
                                let mut nl = Netlink::new().map_err(step("opening netlink"))?;
                                let idx = nl.index("eth0").map_err(step("finding eth0"))?;
                                nl.add_address(idx, IpAddr::V4(addr), PREFIX)
                                    .map_err(step(format!("adding {addr}/{PREFIX} to eth0")))?;
                                nl.set_up(idx, true).map_err(step("bringing eth0 up"))?;
                                nl.add_default_route(idx)
                                    .map_err(step("adding the default route via eth0"))?;
                                Ok(())
                            })?
                            .map_err(from_step)
                    })
                })
                .collect();
            jobs.into_iter()
                .try_for_each(|j| j.join().expect("configuring a host panicked"))
        })?;

        Ok(Network {
            hosts,
            switch,
            groups: Mutex::new(0),
        })
    }
}

/// Why `name` cannot be a hostname (RFC 1123 label), if it cannot.
fn bad_hostname(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 63 {
        Some("it is longer than 63 bytes")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Some("only letters, digits and '-' are allowed")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("it starts or ends with '-'")
    } else if name.bytes().all(|b| b.is_ascii_digit()) {
        Some("it is all digits, which reads as an address")
    } else if name == "localhost" {
        Some("it is reserved")
    } else {
        None
    }
}

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
    pub fn spawn<F>(&self, f: F) -> Result<Spawned, Error>
    where
        F: FnOnce(),
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
        let ports: Vec<(String, Option<usize>)> = self
            .hosts
            .iter()
            .map(|h| h.port.clone())
            .zip(group_of)
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
        let ports: Vec<String> = self.hosts.iter().map(|h| h.port.clone()).collect();
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
            .map_err(from_step)
    }

    /// Takes `host`'s link down (as if its cable were pulled) or up.
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
                    .map_err(step(format!("taking {port} {what}")))
            })?
            .map_err(from_step)
    }

    /// Shapes `host`'s link in both directions: what it sends and what it
    /// receives.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for an unknown host or a shape that makes
    /// no sense; [`Error::ShapingUnavailable`] when the kernel lacks the
    /// qdisc (netem, for delay, jitter and loss, is missing from some
    /// kernels); [`Error::Network`] for other refusals.
    pub fn shape(&self, host: &str, shape: &LinkShape) -> Result<(), Error> {
        let i = self.index_of("shape", host)?;
        if let Some(reason) = shape.invalid() {
            return Err(Error::InvalidOption {
                option: "shape",
                reason,
            });
        }
        let (kind, options) = shape.qdisc();
        let h = &self.hosts[i];
        let apply = |sandbox: &Sandbox, link: String| -> Result<(), Error> {
            let options = options.clone();
            sandbox
                .try_run(move || -> Result<(), Step> {
                    let mut nl = Netlink::new().map_err(step("opening netlink"))?;
                    let idx = nl.index(&link).map_err(step(format!("finding {link}")))?;
                    nl.replace_root_qdisc(idx, kind, options)
                        .map_err(step(format!("setting a {kind} qdisc on {link}")))
                })?
                .map_err(|(what, errno)| {
                    if errno == libc::ENOENT {
                        let module = format!("sch_{kind}");
                        Error::ShapingUnavailable {
                            what: if kind == "netem" {
                                "delay, jitter and loss"
                            } else {
                                "a rate"
                            },
                            qdisc: if kind == "netem" { "netem" } else { "tbf" },
                            hint: format!(
                                "fix: sudo modprobe {module}, or install the distribution's \
                                 extra kernel modules (Ubuntu: linux-modules-extra-$(uname -r))"
                            ),
                        }
                    } else {
                        from_step((what, errno))
                    }
                })
        };
        apply(&self.switch, h.port.clone())?;
        apply(&h.sandbox, "eth0".into())
    }

    /// Removes any shaping from `host`'s link.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for an unknown host; [`Error::Network`] if
    /// the kernel refused.
    pub fn unshape(&self, host: &str) -> Result<(), Error> {
        let i = self.index_of("unshape", host)?;
        let h = &self.hosts[i];
        for (sandbox, link) in [(&self.switch, h.port.clone()), (&h.sandbox, "eth0".into())] {
            sandbox
                .try_run(move || -> Result<(), Step> {
                    let mut nl = Netlink::new().map_err(step("opening netlink"))?;
                    let idx = nl.index(&link).map_err(step(format!("finding {link}")))?;
                    nl.delete_root_qdisc(idx)
                        .map_err(step(format!("removing the qdisc of {link}")))
                })?
                .map_err(from_step)?;
        }
        Ok(())
    }
}
