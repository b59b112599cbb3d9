//! `check()`: what this host lets a sandbox do, and what to change where it
//! does not.
//!
//! Layer: public API, the top one below the crate root: it builds sandboxes
//! and networks to probe what works, so it may use every other layer.

use std::fmt;

use crate::child;
use crate::diagnose::{self, HostFacts, Phase};
use crate::error::{Error, errno_text};
use crate::sandbox::SandboxBuilder;
use crate::setup::plan::StepKind;

/// The outcome of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Status {
    /// Tried for real, and it works.
    Works,
    /// Tried for real, and the host refused.
    Missing,
    /// Not tried, because something it needs is missing.
    NotReached,
    /// A fact about the host, not a capability.
    Info,
}

/// What a [`Finding`] is about: one capability probed, or one fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Probe {
    /// The kernel version (5.12 or later is needed).
    Kernel,
    /// Where this runs: container, seccomp, LSMs.
    Environment,
    /// A new user namespace.
    UserNamespace,
    /// A mount namespace inside a new user namespace.
    MountNamespace,
    /// A network namespace inside a new user namespace.
    NetworkNamespace,
    /// A PID namespace inside a new user namespace.
    PidNamespace,
    /// A UTS namespace inside a new user namespace.
    UtsNamespace,
    /// An IPC namespace inside a new user namespace.
    IpcNamespace,
    /// A cgroup namespace inside a new user namespace (optional).
    CgroupNamespace,
    /// Writing the uid and gid maps, and making mounts private.
    IdMaps,
    /// The inner user namespace and the namespaces it owns.
    InnerUserNamespace,
    /// The host's files made read-only and its device nodes unopenable.
    ReadOnlyHost,
    /// A fresh `/proc` with its host-wide parts read-only.
    FreshProc,
    /// A fresh `/sys`.
    FreshSys,
    /// The tmpfs mounts (`/tmp`, `/dev/shm`, the user's).
    Tmpfs,
    /// The hostname and `lo` up.
    Loopback,
    /// Entering the inner user namespace, which locks the mounts.
    LockedMounts,
    /// The sandbox's own session keyring.
    SessionKeyring,
    /// veth pairs (networks).
    Veth,
    /// Bridges (networks).
    Bridge,
    /// The tbf qdisc (rate shaping).
    Tbf,
    /// Packet sockets with virtio-net headers, which carry a link with
    /// delay, jitter, loss, duplication or reordering.
    PacketSockets,
    /// Closing another process's TCP sockets (`SOCK_DESTROY`), for
    /// [`Network::reset_connections`](crate::Network::reset_connections).
    SocketDestroy,
    /// How many ids a sandbox has inside: 0-65535 (as root, or through
    /// `newuidmap` and `newgidmap`), or one.
    IdHelpers,
    /// How resource limits are enforced here: per sandbox (cgroups) or
    /// per process (rlimits); its hint lists what the limits let through
    /// here and, where they are per process, the host setting that makes
    /// them per sandbox.
    ResourceLimits,
    /// Which host mode a sandbox asking for
    /// [`HostMode::CopyOnWrite`](crate::HostMode) gets here: copy-on-write
    /// (overlays in the sandbox's user namespace), or read-only where the
    /// kernel refuses them.
    HostMode,
    /// Pseudo-terminals of the sandbox's own (a devpts instance on
    /// `/dev/pts`), which programs that open one need (`script`, `expect`,
    /// pty crates).
    Terminals,
}

impl Probe {
    /// The probe's name as the report prints it.
    pub fn name(self) -> &'static str {
        match self {
            Probe::Kernel => "kernel 5.12 or later",
            Probe::Environment => "environment",
            Probe::UserNamespace => "user namespace",
            Probe::MountNamespace => "mount namespace",
            Probe::NetworkNamespace => "network namespace",
            Probe::PidNamespace => "PID namespace",
            Probe::UtsNamespace => "UTS namespace",
            Probe::IpcNamespace => "IPC namespace",
            Probe::CgroupNamespace => "cgroup namespace",
            Probe::IdMaps => "uid and gid maps",
            Probe::InnerUserNamespace => "inner user namespace",
            Probe::ReadOnlyHost => "read-only host files",
            Probe::FreshProc => "fresh /proc",
            Probe::FreshSys => "fresh /sys",
            Probe::Tmpfs => "tmpfs on /tmp",
            Probe::Loopback => "loopback up",
            Probe::LockedMounts => "locked mounts",
            Probe::SessionKeyring => "session keyring",
            Probe::Veth => "veth pairs",
            Probe::Bridge => "bridges",
            Probe::Tbf => "tbf qdisc (rate shaping)",
            Probe::PacketSockets => "link faults (AF_PACKET)",
            Probe::SocketDestroy => "connection resets",
            Probe::IdHelpers => "ids inside",
            Probe::ResourceLimits => "resource limits",
            Probe::HostMode => "copy-on-write host",
            Probe::Terminals => "pseudo-terminals",
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Finding {
    /// What was probed.
    pub probe: Probe,
    /// Whether it works.
    pub status: Status,
    /// What was seen: a version, an errno, a sysctl value.
    pub detail: String,
    /// The likely cause and the command that lifts it, when it is missing.
    pub hint: Option<String>,
    /// Whether sandboxes need it (the tbf qdisc, for instance, is
    /// optional).
    pub required: bool,
}

/// What [`check`] found on this host.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HostReport {
    /// `uname -r`.
    pub kernel: String,
    /// Every probe, in the order they were made.
    pub findings: Vec<Finding>,
}

impl HostReport {
    /// True when every required capability works: `Sandbox::new()` will
    /// succeed.
    pub fn sandboxes_work(&self) -> bool {
        self.findings
            .iter()
            .filter(|f| f.required)
            .all(|f| f.status == Status::Works)
    }

    /// The finding of `probe`.
    ///
    /// ```no_run
    /// use hermetic::{Probe, Status};
    /// let report = hermetic::check();
    /// if report.finding(Probe::Tbf).map(|f| f.status) != Some(Status::Works) {
    ///     println!("rate limits are not available here");
    /// }
    /// ```
    pub fn finding(&self, probe: Probe) -> Option<&Finding> {
        self.findings.iter().find(|f| f.probe == probe)
    }
}

impl fmt::Display for HostReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "hermetic host check, kernel {}", self.kernel)?;
        for x in &self.findings {
            let mark = match (x.status, x.required) {
                (Status::Works, _) => "ok",
                (Status::Missing, true) => "MISSING",
                (Status::Missing, false) => "missing",
                (Status::NotReached, _) => "skipped",
                (Status::Info, _) => "info",
            };
            writeln!(f, "  {mark:<8} {:<26} {}", x.probe.name(), x.detail)?;
            if let Some(hint) = &x.hint {
                for line in hint.lines() {
                    writeln!(f, "  {:<8} {:<26}   {line}", "", "")?;
                }
            }
        }
        if self.sandboxes_work() {
            write!(f, "sandboxes work on this host")
        } else {
            write!(f, "sandboxes do NOT work on this host: see MISSING above")
        }
    }
}

fn finding(probe: Probe, status: Status, detail: impl Into<String>) -> Finding {
    Finding {
        probe,
        status,
        detail: detail.into(),
        hint: None,
        required: true,
    }
}

/// Names of the setup findings, in the order the init process makes the
/// steps, with the kinds of step that belong to each.
const SETUP: [(Probe, &[StepKind]); 9] = [
    (Probe::IdMaps, &[StepKind::IdMap, StepKind::Private]),
    (Probe::InnerUserNamespace, &[StepKind::Nest]),
    (
        Probe::ReadOnlyHost,
        &[StepKind::ReadOnlyHost, StepKind::Special],
    ),
    (Probe::FreshProc, &[StepKind::Proc, StepKind::ProcReadOnly]),
    (Probe::FreshSys, &[StepKind::Sys]),
    (
        Probe::Tmpfs,
        &[StepKind::Tmp, StepKind::DevShm, StepKind::UserMount],
    ),
    (Probe::Loopback, &[StepKind::Hostname, StepKind::Loopback]),
    (Probe::LockedMounts, &[StepKind::EnterNested]),
    (Probe::SessionKeyring, &[StepKind::Keyring]),
];

/// Probes this host: each namespace kind, a whole sandbox (id maps, proc,
/// sysfs, tmpfs, loopback), veth and bridge creation, the tbf qdisc,
/// packet sockets and socket destruction (link faults), and the facts around them (sysctls, seccomp, container, the
/// `newuidmap` helpers). Every capability is tried for real, in child
/// processes; nothing on the host is changed.
///
/// # Examples
///
/// ```no_run
/// let report = hermetic::check();
/// println!("{report}");
/// if !report.sandboxes_work() {
///     std::process::exit(1);
/// }
/// ```
#[must_use = "check() only reports: look at the report (sandboxes_work(), finding(), or print it)"]
pub fn check() -> HostReport {
    let facts = HostFacts::read();
    let kernel = crate::sys::kernel_release();
    let mut findings = Vec::new();

    let version: Vec<u32> = kernel
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .filter_map(|p| p.parse().ok())
        .collect();
    let new_enough = version.len() == 2 && (version[0], version[1]) >= (5, 12);
    let mut k = finding(Probe::Kernel, Status::Works, kernel.clone());
    if !new_enough {
        k.status = Status::Missing;
        k.hint =
            Some("pidfds, setns on a pidfd, close_range and mount_setattr need Linux 5.12".into());
    }
    findings.push(k);

    findings.push(Finding {
        required: false,
        ..finding(Probe::Environment, Status::Info, environment(&facts))
    });

    // Each namespace kind, alone with a user namespace.
    let kinds: [(Probe, libc::c_int); 7] = [
        (Probe::UserNamespace, 0),
        (Probe::MountNamespace, libc::CLONE_NEWNS),
        (Probe::NetworkNamespace, libc::CLONE_NEWNET),
        (Probe::PidNamespace, libc::CLONE_NEWPID),
        (Probe::UtsNamespace, libc::CLONE_NEWUTS),
        (Probe::IpcNamespace, libc::CLONE_NEWIPC),
        (Probe::CgroupNamespace, libc::CLONE_NEWCGROUP),
    ];
    let mut userns_ok = true;
    for (name, flag) in kinds {
        let flags = (libc::CLONE_NEWUSER | flag) as libc::c_ulong;
        let f = match child::probe_clone(flags) {
            Ok(()) => finding(name, Status::Works, sysctl_detail(name, &facts)),
            Err(errno) => {
                if flag == 0 {
                    userns_ok = false;
                }
                // Inside a sandbox of hermetic's, its own filter refuses a
                // cgroup namespace: no container option lifts that.
                let hint = if flag == libc::CLONE_NEWCGROUP && errno == libc::EPERM {
                    diagnose::cgroup_namespace_hint(&facts)
                } else {
                    None
                };
                Finding {
                    hint: hint.or_else(|| diagnose::hint(Phase::Clone, errno, &facts)),
                    required: flag != libc::CLONE_NEWCGROUP,
                    ..finding(name, Status::Missing, errno_detail("clone", errno))
                }
            }
        };
        findings.push(f);
    }

    // A whole sandbox: which setup step, if any, fails.
    let (sandbox, failed_kind) = if userns_ok {
        match SandboxBuilder::new().build_telling(None) {
            Ok(ns) => (Some(Ok(ns)), None),
            Err((e, kind)) => (Some(Err(e)), kind),
        }
    } else {
        (None, None)
    };
    let failed_at =
        failed_kind.and_then(|kind| SETUP.iter().position(|(_, kinds)| kinds.contains(&kind)));
    for (i, &(name, _)) in SETUP.iter().enumerate() {
        let f = match &sandbox {
            None => finding(name, Status::NotReached, "needs a user namespace"),
            Some(Ok(_)) => finding(name, Status::Works, ""),
            Some(Err(Error::Setup {
                step, error, hint, ..
            })) => match failed_at {
                Some(at) if i < at => finding(name, Status::Works, ""),
                Some(at) if i == at => Finding {
                    hint: hint.clone(),
                    ..finding(
                        name,
                        Status::Missing,
                        format!("{step}: {}", errno_text(error)),
                    )
                },
                Some(_) => finding(name, Status::NotReached, "an earlier step failed"),
                None => finding(name, Status::NotReached, format!("setup failed: {step}")),
            },
            Some(Err(e)) => finding(name, Status::NotReached, e.to_string()),
        };
        findings.push(f);
    }

    // Network devices and qdiscs, made inside the sandbox (never on the
    // host).
    match &sandbox {
        Some(Ok(ns)) => {
            let probes = ns
                .try_run(netlink_probes)
                .unwrap_or_else(|e| vec![(0, Err((0, format!("the probe did not run: {e}"))))]);
            for (i, result) in probes {
                let Some(&(name, required, module)) = NET_PROBES.get(i) else {
                    findings.push(finding(
                        Probe::Veth,
                        Status::Missing,
                        "the probes did not run",
                    ));
                    continue;
                };
                findings.push(match result {
                    Ok(()) => Finding {
                        required,
                        ..finding(name, Status::Works, "")
                    },
                    Err((errno, detail)) => Finding {
                        required,
                        hint: Some(module_hint(module, errno)),
                        ..finding(name, Status::Missing, detail)
                    },
                });
            }
        }
        _ => {
            for &(name, required, _) in NET_PROBES.iter() {
                findings.push(Finding {
                    required,
                    ..finding(name, Status::NotReached, "needs a working sandbox")
                });
            }
        }
    }

    if let Some(Ok(ns)) = &sandbox {
        findings.push(terminals_finding(ns));
        findings.push(host_mode_finding());
    }
    // Which ids a sandbox would have: none to speak of where no user
    // namespace can be made.
    let ids = if userns_ok {
        crate::setup::idmap::describe()
    } else {
        "none: no user namespace can be made here (above)".to_owned()
    };
    findings.push(Finding {
        required: false,
        ..finding(Probe::IdHelpers, Status::Info, ids)
    });
    let (limits, escapes) = crate::setup::limits::mechanism();
    findings.push(Finding {
        required: false,
        hint: Some(escapes),
        ..finding(Probe::ResourceLimits, Status::Info, limits)
    });
    HostReport { kernel, findings }
}

/// Whether a process in `ns` can open a pseudo-terminal of the sandbox's
/// own.
fn terminals_finding(ns: &crate::Sandbox) -> Finding {
    let opened = ns.try_run(|| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/ptmx")
            .map(drop)
            .map_err(|e| e.raw_os_error().unwrap_or(0))
    });
    let f = match opened {
        Ok(Ok(())) => finding(
            Probe::Terminals,
            Status::Works,
            "a devpts instance of the sandbox's own on /dev/pts, at most 256 terminals",
        ),
        Ok(Err(errno)) => Finding {
            hint: Some(
                "the kernel refused a devpts mount in the sandbox's user namespace (a kernel \
                 without CONFIG_DEVPTS_MULTIPLE_INSTANCES, or an LSM policy); what opens a \
                 terminal inside (script, expect, a pty crate's tests) fails, the rest works"
                    .into(),
            ),
            ..finding(
                Probe::Terminals,
                Status::Missing,
                format!(
                    "opening /dev/ptmx: {}",
                    errno_text(&std::io::Error::from_raw_os_error(errno))
                ),
            )
        },
        Err(e) => finding(
            Probe::Terminals,
            Status::NotReached,
            format!("the probe did not run: {e}"),
        ),
    };
    Finding {
        required: false,
        ..f
    }
}

/// A sandbox with the copy-on-write host, made for real (not falling back).
fn host_mode_finding() -> Finding {
    let mut builder = SandboxBuilder::new();
    builder.host(crate::HostMode::CopyOnWrite);
    let overlays =
        crate::setup::host::HostView::cached(true, std::env::current_exe().ok().as_deref())
            .overlays
            .len();
    let f = match builder.build_once(None) {
        Ok(_) if overlays == 0 => finding(
            Probe::HostMode,
            Status::Works,
            "copy-on-write, but with no overlay: nothing this process may write is visible \
             from here (inside a read-only sandbox?), so writes to the host's files fail as \
             on a read-only host"
                .to_owned(),
        ),
        Ok(_) => finding(
            Probe::HostMode,
            Status::Works,
            format!(
                "copy-on-write ({overlays} overlays): `hermetic run` and isolate_test see the \
                 host as it is, every write private; {}",
                crate::setup::disk::describe()
            ),
        ),
        Err((e, _)) => Finding {
            hint: Some(
                "the kernel refuses an overlay in a user namespace: a kernel before 5.11, \
                 or the stacking limit (the host's / already an overlay, as in Docker, or \
                 hermetic inside hermetic inside hermetic); sandboxes see the host \
                 read-only, with the program, the working directory and the target dir visible"
                    .into(),
            ),
            ..finding(
                Probe::HostMode,
                Status::Missing,
                format!("read-only here: {e}"),
            )
        },
    };
    Finding {
        required: false,
        ..f
    }
}

/// (name, required, kernel module) of each network probe, by index.
const NET_PROBES: [(Probe, bool, &str); 5] = [
    (Probe::Veth, false, "veth"),
    (Probe::Bridge, false, "bridge"),
    (Probe::Tbf, false, "sch_tbf"),
    (Probe::PacketSockets, false, "af_packet"),
    (Probe::SocketDestroy, false, "tcp_diag"),
];

/// Runs inside a sandbox: makes a veth pair and a bridge, probes tbf and a
/// packet socket on the veth, and resets a TCP connection over `lo`.
/// Returns (probe index, errno and what failed).
#[allow(clippy::type_complexity)]
fn netlink_probes() -> Vec<(usize, Result<(), (i32, String)>)> {
    let err = |what: &str, e: std::io::Error| {
        let errno = e.raw_os_error().unwrap_or(0);
        (errno, format!("{what}: {}", errno_text(&e)))
    };
    let mut nl = match crate::net::netlink::Netlink::new() {
        Ok(nl) => nl,
        Err(e) => return vec![(0, Err(err("opening a netlink socket", e)))],
    };
    let veth = nl
        .add_veth("hermetic0", "hermetic1", None)
        .map_err(|e| err("creating a veth pair", e));
    let bridge = nl
        .add_bridge("hermeticbr")
        .map_err(|e| err("creating a bridge", e));
    let mut out = vec![(0, veth.clone()), (1, bridge)];
    let index = match (&veth, nl.index("hermetic0")) {
        (Ok(()), Ok(i)) => i,
        _ => {
            // Probe qdiscs on lo instead.
            nl.index("lo").unwrap_or(1)
        }
    };
    let tbf = match nl.probe_qdisc(index, "tbf") {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err((
            libc::ENOENT,
            "the kernel does not know the tbf qdisc (ENOENT)".to_owned(),
        )),
        // Refusing the missing options (EINVAL) means it exists.
        _ => Ok(()),
    };
    out.push((2, tbf));
    let packet = crate::sys::packet_socket(index)
        .map(drop)
        .map_err(|e| err("opening a packet socket", e));
    out.push((3, packet));
    out.push((
        4,
        destroy_probe().map_err(|e| err("resetting a TCP connection", e)),
    ));
    out
}

/// Connects to itself over `lo` and resets the connection as
/// `Network::reset_connections` would.
fn destroy_probe() -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let _client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let _server = listener.accept()?;
    match crate::net::sockdiag::reset_connections()? {
        0 => Err(std::io::Error::other("no connection was reset")),
        _ => Ok(()),
    }
}

fn module_hint(module: &str, errno: i32) -> String {
    let what = match module {
        "sch_tbf" => "rate shaping is unavailable",
        "af_packet" => "delay, jitter, loss, duplication and reordering are unavailable",
        "tcp_diag" => "Network::reset_connections is unavailable",
        _ => "networks of sandboxes are unavailable",
    };
    if module == "tcp_diag" && errno == libc::EOPNOTSUPP {
        format!(
            "the kernel was built without CONFIG_INET_DIAG_DESTROY: {what} (no module \
             adds it; blackhole and partitions still work)"
        )
    } else if errno == libc::ENOENT || errno == libc::EOPNOTSUPP || errno == libc::EAFNOSUPPORT {
        format!(
            "the kernel lacks {module}: {what}.\nfix: sudo modprobe {module}, or install the \
             distribution's extra kernel modules (Ubuntu: linux-modules-extra-$(uname -r))"
        )
    } else {
        format!("{what} ({})", crate::sys::errno_name(errno))
    }
}

fn errno_detail(call: &str, errno: i32) -> String {
    format!(
        "{call} failed: {}",
        errno_text(&std::io::Error::from_raw_os_error(errno))
    )
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "absent".into(), |v| v.to_string())
}

fn sysctl_detail(probe: Probe, facts: &HostFacts) -> String {
    match probe {
        Probe::UserNamespace => format!(
            "user.max_user_namespaces = {}, kernel.apparmor_restrict_unprivileged_userns = {}, \
             kernel.unprivileged_userns_clone = {}",
            show(facts.max_user_namespaces),
            show(facts.apparmor_restrict),
            show(facts.unprivileged_userns_clone)
        ),
        Probe::NetworkNamespace => {
            format!(
                "user.max_net_namespaces = {}",
                show(facts.max_net_namespaces)
            )
        }
        _ => String::new(),
    }
}

fn environment(facts: &HostFacts) -> String {
    let mut parts = Vec::new();
    if facts.in_docker {
        parts.push("in a Docker container (/.dockerenv)".to_owned());
    }
    if std::path::Path::new("/run/.containerenv").exists() {
        parts.push("in a podman container (/run/.containerenv)".to_owned());
    }
    parts.push(match facts.seccomp_mode {
        Some(2) => "seccomp filter active (Seccomp: 2)".to_owned(),
        Some(0) => "no seccomp filter".to_owned(),
        Some(m) => format!("seccomp mode {m}"),
        None => "seccomp unknown".to_owned(),
    });
    if facts.proc_masked {
        parts.push("parts of /proc are masked".to_owned());
    }
    if facts.wsl1 {
        parts.push("WSL1".to_owned());
    }
    parts.push(format!("running as uid {}", crate::sys::geteuid()));
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::module_hint;

    #[test]
    fn a_missing_link_fault_feature_says_what_is_lost_and_the_fix() {
        let resets = module_hint("tcp_diag", libc::EOPNOTSUPP);
        assert!(resets.contains("CONFIG_INET_DIAG_DESTROY"), "{resets}");
        assert!(resets.contains("reset_connections"), "{resets}");
        let packet = module_hint("af_packet", libc::EAFNOSUPPORT);
        assert!(packet.contains("modprobe af_packet"), "{packet}");
        assert!(packet.contains("delay"), "{packet}");
        let tbf = module_hint("sch_tbf", libc::ENOENT);
        assert!(tbf.contains("modprobe sch_tbf"), "{tbf}");
    }
}
