//! What a process of a sandbox is put under before any code of the
//! user's runs, as prepared before the fork ([`setup::limits`](crate::setup::limits)
//! decides it) and applied after it with system calls only.

/// The rlimits a sandbox's processes get, prepared before forking.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rlimits(pub(crate) [(rustix::process::Resource, Option<u64>); 3]);

/// What a process of a sandbox is put under before it starts anything: a
/// user without capabilities, the sandbox's cgroups, its rlimits. Prepared
/// before forking.
#[derive(Debug)]
pub(crate) struct Confinement {
    pub(crate) drop_caps: bool,
    /// The uid and gid to change to, once inside (ranges mapped).
    pub(crate) set_ids: Option<(u32, u32)>,
    /// `cgroup.procs` fds to write `0` to.
    pub(crate) cgroup_procs: Vec<std::os::fd::RawFd>,
    pub(crate) rlimits: Rlimits,
    /// The seccomp filter its processes are put under (see
    /// [`seccomp`](crate::setup::seccomp)), built before forking.
    pub(crate) filter: &'static [libc::sock_filter],
}

impl Rlimits {
    /// The limits set: (resource, soft, hard).
    pub(crate) fn values(
        &self,
    ) -> impl Iterator<Item = (rustix::process::Resource, u64, u64)> + '_ {
        self.0.iter().filter_map(|&(resource, value)| {
            let value = value?;
            // CPU time: SIGXCPU at the limit (which names it), SIGKILL a
            // second later should the process catch that.
            let hard = if resource == rustix::process::Resource::Cpu {
                value + 1
            } else {
                value
            };
            Some((resource, value, hard))
        })
    }

    /// Sets them on the calling process (after fork: system calls only).
    pub(crate) fn set(&self) -> Result<(), i32> {
        for (resource, soft, hard) in self.values() {
            let limit = rustix::process::Rlimit {
                current: Some(soft),
                maximum: Some(hard),
            };
            rustix::process::setrlimit(resource, limit).map_err(|e| e.raw_os_error())?;
        }
        Ok(())
    }
}
