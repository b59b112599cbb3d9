//! Turning a bare errno from namespace setup into its cause on this host
//! and the command that lifts it.
//!
//! Each hint names the host setting behind its symptom (AppArmor's or a
//! sysctl's restriction on user namespaces, a namespace count at zero or
//! exhausted, a container's seccomp profile or masked `/proc`, WSL1) and
//! the command that lifts it; the README's "Requirements and limits" lists
//! the same.
//!
//! Layer: below `setup` and the public API (which turn its hints into
//! errors and `check()`'s findings), above `child`; it reads `/proc` and
//! `/sys` and uses only `sys`.

use std::path::Path;

/// The setup phase an errno came from; the same errno means different
/// things in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `clone(2)` with the namespace flags.
    Clone,
    /// Writing `/proc/self/{setgroups,uid_map,gid_map}`.
    IdMap,
    /// Mounting a fresh `proc` or `sysfs`.
    FreshMount,
    /// Anything else.
    Other,
}

/// What the host looks like, read from the usual places.
#[derive(Debug, Default, Clone)]
pub(crate) struct HostFacts {
    pub(crate) apparmor_restrict: Option<u64>,
    pub(crate) unprivileged_userns_clone: Option<u64>,
    pub(crate) max_user_namespaces: Option<u64>,
    pub(crate) max_net_namespaces: Option<u64>,
    pub(crate) seccomp_mode: Option<u64>,
    pub(crate) in_docker: bool,
    pub(crate) proc_masked: bool,
    pub(crate) wsl1: bool,
    /// This process runs in a sandbox of hermetic's (its PID 1 is
    /// hermetic's init program), under hermetic's own seccomp filter.
    pub(crate) in_sandbox: bool,
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl HostFacts {
    /// Reads the facts of the running host.
    pub(crate) fn read() -> HostFacts {
        // The calling thread's own status: seccomp filters are per thread.
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
        let seccomp_mode = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .and_then(|v| v.trim().parse().ok());
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let proc_masked = mountinfo.lines().any(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|mp| mp.starts_with("/proc/") && mp != "/proc/sys/fs/binfmt_misc")
        });
        let version = std::fs::read_to_string("/proc/version").unwrap_or_default();
        HostFacts {
            apparmor_restrict: read_number(
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            ),
            unprivileged_userns_clone: read_number("/proc/sys/kernel/unprivileged_userns_clone"),
            max_user_namespaces: read_number("/proc/sys/user/max_user_namespaces"),
            max_net_namespaces: read_number("/proc/sys/user/max_net_namespaces"),
            seccomp_mode,
            in_docker: Path::new("/.dockerenv").exists(),
            proc_masked,
            wsl1: version.contains("Microsoft") && !version.contains("WSL2"),
            in_sandbox: std::fs::read_to_string("/proc/1/comm")
                .is_ok_and(|c| c.trim_end() == "hermetic-init"),
        }
    }
}

const APPARMOR: &str = "the host restricts unprivileged user namespaces with AppArmor \
(kernel.apparmor_restrict_unprivileged_userns = 1, as on Ubuntu 23.10+ and GitHub's \
ubuntu-24.04 runners).\nfix: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0\n\
permanent: echo 'kernel.apparmor_restrict_unprivileged_userns=0' | sudo tee /etc/sysctl.d/60-hermetic-userns.conf\n\
GitHub Actions: add a step `run: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` before the tests";

/// Why a sandbox with a cgroup namespace of its own (`CLONE_NEWCGROUP`)
/// could not be made (`EPERM`), if this process runs in a sandbox of
/// hermetic's: its seccomp filter refuses that namespace.
pub(crate) fn cgroup_namespace_hint(facts: &HostFacts) -> Option<String> {
    (facts.in_sandbox && facts.seccomp_mode == Some(2)).then(|| {
        "this process runs in a sandbox of hermetic's, whose seccomp filter refuses a cgroup \
         namespace (one made inside could reach the host's cgroups); a sandbox or a network \
         without a cgroup namespace of its own can be made here.\n\
         fix: leave cgroup_namespace out in a sandbox inside a sandbox"
            .into()
    })
}

/// The likely cause of `errno` in `phase` on a host with `facts`, with the
/// command that lifts it; `None` when nothing on the host explains it.
pub(crate) fn hint(phase: Phase, errno: i32, facts: &HostFacts) -> Option<String> {
    let seccomp = facts.seccomp_mode == Some(2);
    match (phase, errno) {
        (_, _) if facts.wsl1 => Some(
            "this is WSL1, which has no real namespaces.\nfix: use WSL2 (wsl --set-version <distro> 2)"
                .into(),
        ),
        (Phase::Clone, libc::EPERM) if facts.unprivileged_userns_clone == Some(0) => Some(
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0).\n\
             fix: sudo sysctl -w kernel.unprivileged_userns_clone=1\n\
             permanent: echo 'kernel.unprivileged_userns_clone=1' | sudo tee /etc/sysctl.d/60-hermetic-userns.conf"
                .into(),
        ),
        (Phase::Clone, libc::EPERM) | (Phase::Clone, libc::ENOSYS) if seccomp => Some(
            "a seccomp filter (such as a container's default profile) refuses namespace creation \
             (Seccomp: 2 in /proc/self/status).\n\
             fix: run the container with --security-opt seccomp=unconfined --security-opt apparmor=unconfined"
                .into(),
        ),
        (Phase::Clone | Phase::IdMap, libc::EPERM | libc::EACCES)
            if facts.apparmor_restrict == Some(1) =>
        {
            Some(APPARMOR.into())
        }
        (Phase::Clone, libc::EINVAL | libc::ENOSPC) if facts.max_user_namespaces == Some(0) => {
            Some(
                "user namespaces are disabled (user.max_user_namespaces = 0).\n\
                 fix: sudo sysctl -w user.max_user_namespaces=15000\n\
                 permanent: echo 'user.max_user_namespaces=15000' | sudo tee /etc/sysctl.d/60-hermetic-userns.conf"
                    .into(),
            )
        }
        (Phase::Clone, libc::ENOSPC) => Some(format!(
            "a namespace limit is reached (user.max_user_namespaces = {}, user.max_net_namespaces = {}), \
             or user namespaces are nested 32 deep.\n\
             fix: sudo sysctl -w user.max_user_namespaces=15000 user.max_net_namespaces=15000, \
             or create fewer sandboxes at once",
            show(facts.max_user_namespaces),
            show(facts.max_net_namespaces),
        )),
        (Phase::FreshMount, libc::EPERM | libc::EACCES) if facts.proc_masked => Some(
            "this container masks parts of /proc, and the kernel refuses a fresh proc mount \
             where the existing one is partly hidden (\"mount too revealing\").\n\
             fix: podman --security-opt unmask=ALL, or docker --security-opt systempaths=unconfined"
                .into(),
        ),
        (Phase::Clone, libc::EPERM) => Some(
            "the kernel refused to create a user namespace; check \
             kernel.apparmor_restrict_unprivileged_userns, kernel.unprivileged_userns_clone and \
             user.max_user_namespaces (sysctl -a | grep userns), and any seccomp profile \
             (grep Seccomp /proc/self/status)"
                .into(),
        ),
        _ => None,
    }
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "unknown".into(), |v| v.to_string())
}

/// Where the threads of the process `pid` (a run that timed out) are:
/// for each, its state, the system call it is in and the kernel function
/// it waits in, as `/proc` tells; then the likely cause, when the threads
/// wait on a lock while other threads exist in the test process (a lock
/// copied by the fork, held for ever). Empty if `/proc` tells nothing.
pub(crate) fn where_stuck(pid: libc::pid_t) -> String {
    describe(&threads(pid))
}

/// Like [`where_stuck`], for a process that is not known to be stuck (a
/// spawned closure beside a run that timed out): its threads and the likely
/// cause when every one of them waits on a lock, else `None`.
pub(crate) fn stuck_on_locks(pid: libc::pid_t) -> Option<String> {
    let threads = threads(pid);
    (!threads.is_empty() && threads.iter().all(|t| t.on_a_lock)).then(|| describe(&threads))
}

/// One thread of a process, as `/proc` shows it.
struct Thread {
    /// "thread 12 (name): sleeping in futex(), waiting in futex_wait_queue"
    line: String,
    /// In a `futex` system call.
    on_a_lock: bool,
    /// Sleeping, in a system call `/proc` does not show: a run's process
    /// is not dumpable (see child::joiner), and rootless the kernel hides
    /// its system calls and wait channels from this process too (it has no
    /// CAP_SYS_PTRACE over the user namespace that process's memory belongs
    /// to, the test process's own).
    hidden: bool,
}

fn threads(pid: libc::pid_t) -> Vec<Thread> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut tids: Vec<u32> = tasks
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    // Read and parsed once, for every thread's lock (a closure chooses how
    // many threads and mappings it has: the cost here is bounded, below).
    let text = maps_of(pid);
    let maps = parse_maps(&text);
    // A file's ELF header, read where the process mapped it (never from
    // the host's file of that name: the path is the sandbox's, and on the
    // host it may be a FIFO that blocks an open for ever, or a device).
    let header = |at: u64| -> Option<[u8; 18]> {
        use std::os::unix::fs::FileExt;
        let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
        let mut header = [0u8; 18];
        mem.read_exact_at(&mut header, at).ok()?;
        Some(header)
    };
    let deadline = std::time::Instant::now() + EXAMINE_FOR;
    let total = tids.len();
    let mut threads = Vec::new();
    for (n, tid) in tids.into_iter().enumerate() {
        if n == EXAMINED_THREADS || std::time::Instant::now() > deadline {
            threads.push(Thread {
                line: format!("{} more threads not examined", total - n),
                on_a_lock: false,
                hidden: false,
            });
            break;
        }
        let at = |file: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/{file}"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let comm = at("comm");
        // "pid (comm) S ...": the state follows the last ')'.
        let stat = at("stat");
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map_or("?", state_name);
        let call = at("syscall");
        let syscall = match call.split_whitespace().next() {
            Some("running") => "running".to_owned(),
            Some(nr) => nr
                .parse::<libc::c_long>()
                .map_or_else(|_| nr.to_owned(), syscall_name),
            None => String::new(),
        };
        let wchan = at("wchan");
        let mut line = format!("thread {tid} ({comm}): {state}");
        if !syscall.is_empty() && syscall != "running" {
            line.push_str(&format!(" in {syscall}()"));
        }
        if syscall == "futex"
            && let Some(place) = call
                .split_whitespace()
                .nth(1)
                .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
                .and_then(|address| lock_place(&maps, address, &header))
        {
            line.push_str(&format!(" on a lock {place}"));
        }
        if !wchan.is_empty() && wchan != "0" {
            line.push_str(&format!(", waiting in {wchan}"));
        }
        threads.push(Thread {
            line,
            on_a_lock: syscall == "futex",
            hidden: call.is_empty() && state == "sleeping",
        });
    }
    threads
}

/// At most this many threads are described (and looked at for locks), and
/// for at most this long: the test process waits for the description.
const EXAMINED_THREADS: usize = 64;
const EXAMINE_FOR: std::time::Duration = std::time::Duration::from_millis(250);

/// The most of a process's `/proc/PID/maps` that is read: a closure
/// chooses how many mappings it has, and how long their paths are (65,000
/// of 4,000-byte paths made 245 MiB, which the kernel took 18 s to
/// write). A lock past it is not placed.
const MAPS_READ_AT_MOST: u64 = 1 << 20;

/// The first [`MAPS_READ_AT_MOST`] bytes of `/proc/PID/maps`, cut after its
/// last whole line (paths that are not UTF-8 lossily).
fn maps_of(pid: libc::pid_t) -> String {
    use std::io::Read;
    let mut bytes = Vec::new();
    if let Ok(file) = std::fs::File::open(format!("/proc/{pid}/maps")) {
        let _ = file.take(MAPS_READ_AT_MOST).read_to_end(&mut bytes);
    }
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes.truncate(whole);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One line of `/proc/PID/maps`.
struct Mapping<'a> {
    start: u64,
    end: u64,
    writable: bool,
    offset: u64,
    path: &'a str,
}

/// The lines of `/proc/PID/maps`, in their order (by address).
fn parse_maps(maps: &str) -> Vec<Mapping<'_>> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?;
            let offset = fields.next()?;
            let path = fields.nth(2).unwrap_or("");
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                writable: perms.as_bytes().get(1) == Some(&b'w'),
                offset: u64::from_str_radix(offset, 16).ok()?,
                path,
            })
        })
        .collect()
}

/// Where the lock at `address` lies, from the process's `mappings`: in a
/// program's or library's static data (with the address `nm -n` shows for
/// it, so that the static can be named), on the heap, or elsewhere.
/// `header(at)`: the first 18 bytes of the process's memory at `at`, where
/// a file is mapped from its start (its ELF header), if readable.
fn lock_place(
    mappings: &[Mapping<'_>],
    address: u64,
    header: &dyn Fn(u64) -> Option<[u8; 18]>,
) -> Option<String> {
    // By address, as the kernel lists them.
    let at = mappings.partition_point(|m| m.end <= address);
    if mappings.get(at).is_none_or(|m| m.start > address) {
        return None;
    }
    let found = &mappings[at];
    // Zeroed statics (.bss) past the file's last page are an anonymous
    // mapping right after its writable one.
    let file = if found.path.starts_with('/') {
        Some(found.path)
    } else {
        at.checked_sub(1)
            .map(|i| &mappings[i])
            .filter(|p| found.path.is_empty() && p.writable && p.end == found.start)
            .map(|p| p.path)
            .filter(|p| p.starts_with('/'))
    };
    if let Some(file) = file {
        // nm shows addresses as linked: a position-independent file's from
        // where it is loaded (its mapping at offset 0), a fixed one's as is.
        let base = mappings
            .iter()
            .filter(|m| m.path == file && m.offset == 0)
            .map(|m| m.start)
            .min();
        let fixed = base.and_then(header).map(|header| {
            // ELF e_type: 2 = ET_EXEC (fixed addresses).
            header[..4] == *b"\x7fELF" && u16::from_le_bytes([header[16], header[17]]) == 2
        });
        let linked = match (fixed, base) {
            (Some(false), Some(base)) => Some(address - base),
            (Some(true), _) => Some(address),
            _ => None,
        };
        return Some(match linked {
            Some(at) => format!(
                "at {at:#x} in the static data of {file} (`nm -nC {file}` names the static at \
                 or below that address)"
            ),
            None => format!("in the static data of {file}"),
        });
    }
    Some(
        "in memory the program allocated (inside an Arc or a Box, a lazily made static, or on \
         a thread's stack)"
            .to_owned(),
    )
}

fn describe(threads: &[Thread]) -> String {
    if threads.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = threads.iter().map(|t| t.line.as_str()).collect();
    let mut text = format!("where its threads were: {}", lines.join("; "));
    let hidden = threads.iter().any(|t| t.hidden);
    if hidden {
        text.push_str(
            " (what they wait in is hidden from an unprivileged test process: a run's \
             process is not dumpable, so that nothing inside can reach it)",
        );
    }
    let others = std::fs::read_dir("/proc/self/task")
        .map_or(0, |d| d.count())
        .saturating_sub(1);
    let on_a_lock = threads.iter().any(|t| t.on_a_lock);
    if (on_a_lock || hidden) && others > 0 {
        let waits = if on_a_lock {
            "A thread waits on a lock (futex)"
        } else {
            "If a thread waits on a lock (futex)"
        };
        text.push_str(&format!(
            ". {waits} and the test process has {others} other \
             thread(s): a lock one of them held when this process was forked stays held \
             in its copy for ever (a Mutex shared with other threads, a runtime's or \
             allocator's global lock). Build what the closure uses inside it, or run such \
             tests one per process: cargo nextest run, or cargo test -- --test-threads=1"
        ));
    }
    text
}

fn state_name(code: &str) -> &'static str {
    match code {
        "R" => "running",
        "S" => "sleeping",
        "D" => "in uninterruptible wait",
        "T" | "t" => "stopped",
        "Z" => "a zombie",
        _ => "in an unusual state",
    }
}

fn syscall_name(nr: libc::c_long) -> String {
    let known: [(libc::c_long, &str); 19] = [
        (libc::SYS_futex, "futex"),
        (libc::SYS_read, "read"),
        (libc::SYS_write, "write"),
        (libc::SYS_ppoll, "ppoll"),
        (libc::SYS_pselect6, "pselect6"),
        (libc::SYS_epoll_pwait, "epoll_pwait"),
        (libc::SYS_clock_nanosleep, "clock_nanosleep"),
        (libc::SYS_nanosleep, "nanosleep"),
        (libc::SYS_wait4, "wait4"),
        (libc::SYS_waitid, "waitid"),
        (libc::SYS_accept4, "accept4"),
        (libc::SYS_connect, "connect"),
        (libc::SYS_recvfrom, "recvfrom"),
        (libc::SYS_recvmsg, "recvmsg"),
        (libc::SYS_sendto, "sendto"),
        (libc::SYS_openat, "openat"),
        (libc::SYS_flock, "flock"),
        (libc::SYS_fcntl, "fcntl"),
        (libc::SYS_rt_sigtimedwait, "rt_sigtimedwait"),
    ];
    known.iter().find(|(n, _)| *n == nr).map_or_else(
        || format!("system call {nr}"),
        |(_, name)| (*name).to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_placed_in_a_file_s_static_data_or_in_allocated_memory() {
        // A position-independent file (ELF type 3): its address as nm
        // shows it is the offset from its mapping at offset 0. The path is
        // never opened: the header comes from the process's memory.
        let exe = "/no/such/dir/prog";
        let mut pie = [0u8; 18];
        pie[..4].copy_from_slice(b"\x7fELF");
        pie[16] = 3;
        let header = |at: u64| (at == 0x55d0_0000_0000).then_some(pie);
        let lock_place = |maps: &[Mapping<'_>], address| lock_place(maps, address, &header);
        let maps = format!(
            "55d000000000-55d000001000 r--p 00000000 fe:01 12 {exe}\n\
             55d000001000-55d000005000 r-xp 00001000 fe:01 12 {exe}\n\
             55d000005000-55d000007000 rw-p 00005000 fe:01 12 {exe}\n\
             55d000007000-55d000009000 rw-p 00000000 00:00 0 \n\
             55d001000000-55d001100000 rw-p 00000000 00:00 0                          [heap]\n\
             7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n"
        );
        let data = lock_place(&parse_maps(&maps), 0x55d0_0000_5010).unwrap();
        assert!(
            data.starts_with(&format!("at 0x5010 in the static data of {exe}")),
            "{data}"
        );
        // .bss past the file: the anonymous mapping right after its data.
        let bss = lock_place(&parse_maps(&maps), 0x55d0_0000_8000).unwrap();
        assert!(
            bss.starts_with(&format!("at 0x8000 in the static data of {exe}")),
            "{bss}"
        );
        for elsewhere in [0x55d0_0100_0040, 0x7f00_0000_0100] {
            let place = lock_place(&parse_maps(&maps), elsewhere).unwrap();
            assert!(
                place.starts_with("in memory the program allocated"),
                "{place}"
            );
        }
        assert_eq!(lock_place(&parse_maps(&maps), 0x1000), None);
        // A fixed-address file (ELF type 2): the address as it is; a file
        // whose header cannot be read: no address.
        let mut fixed = pie;
        fixed[16] = 2;
        let maps = parse_maps(&maps);
        let as_is = super::lock_place(&maps, 0x55d0_0000_5010, &|_| Some(fixed)).unwrap();
        assert!(
            as_is.starts_with(&format!("at 0x55d000005010 in the static data of {exe}")),
            "{as_is}"
        );
        let unread = super::lock_place(&maps, 0x55d0_0000_5010, &|_| None).unwrap();
        assert_eq!(unread, format!("in the static data of {exe}"));
    }

    #[test]
    fn a_process_s_maps_are_read_up_to_a_bound_and_in_whole_lines() {
        let maps = maps_of(std::process::id() as libc::pid_t);
        assert!(
            maps.ends_with('\n') && !parse_maps(&maps).is_empty(),
            "{maps}"
        );
        assert!(maps.len() as u64 <= MAPS_READ_AT_MOST);
    }

    #[test]
    fn apparmor_is_named_for_uid_map_eperm() {
        let facts = HostFacts {
            apparmor_restrict: Some(1),
            ..Default::default()
        };
        let h = hint(Phase::IdMap, libc::EPERM, &facts).unwrap();
        assert!(
            h.contains("kernel.apparmor_restrict_unprivileged_userns=0"),
            "{h}"
        );
        assert!(h.contains("GitHub Actions"), "{h}");
    }

    #[test]
    fn debian_sysctl_is_named_for_clone_eperm() {
        let facts = HostFacts {
            unprivileged_userns_clone: Some(0),
            ..Default::default()
        };
        let h = hint(Phase::Clone, libc::EPERM, &facts).unwrap();
        assert!(
            h.contains("sysctl -w kernel.unprivileged_userns_clone=1"),
            "{h}"
        );
    }

    #[test]
    fn max_user_namespaces_zero() {
        let facts = HostFacts {
            max_user_namespaces: Some(0),
            ..Default::default()
        };
        let h = hint(Phase::Clone, libc::ENOSPC, &facts).unwrap();
        assert!(h.contains("user.max_user_namespaces=15000"), "{h}");
    }

    #[test]
    fn seccomp_container() {
        let facts = HostFacts {
            seccomp_mode: Some(2),
            in_docker: true,
            ..Default::default()
        };
        let h = hint(Phase::Clone, libc::EPERM, &facts).unwrap();
        assert!(h.contains("seccomp=unconfined"), "{h}");
    }

    #[test]
    fn masked_proc() {
        let facts = HostFacts {
            proc_masked: true,
            ..Default::default()
        };
        let h = hint(Phase::FreshMount, libc::EPERM, &facts).unwrap();
        assert!(h.contains("unmask=ALL"), "{h}");
    }

    #[test]
    fn nothing_to_say_about_an_ordinary_failure() {
        assert!(hint(Phase::Other, libc::ENOENT, &HostFacts::default()).is_none());
    }
}
