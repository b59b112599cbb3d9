//! What the test process and the processes it starts tell each other, typed:
//! the init program's plan and report, and a joining process's report.
//!
//! Byte layouts are in `wire.rs`, shared with the init program.

use crate::proto::plan::{Action, Step};
use crate::proto::wire;

/// Encodes the init program's plan: a header, then one record per step.
// Mount flags are a `c_ulong`, which is `u64` only on 64-bit targets.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn encode_plan(steps: &[Step]) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 * steps.len());
    for step in steps {
        let (op, arg, fields): (u8, u64, Vec<&[u8]>) = match &step.action {
            Action::WriteFile { path, content } => (
                wire::OP_WRITE_FILE,
                0,
                vec![path.as_bytes_with_nul(), content],
            ),
            Action::WriteFileIfAllowed { path, content } => (
                wire::OP_WRITE_FILE,
                wire::ARG_OPTIONAL | wire::ARG_IF_ALLOWED,
                vec![path.as_bytes_with_nul(), content],
            ),
            Action::MakeMountsPrivate => (wire::OP_MAKE_PRIVATE, 0, vec![]),
            Action::ExternalMaps => unreachable!("written before the exec, not by the plan"),
            // Skipped, if allowed, where the target is missing or the host
            // refuses the mount.
            Action::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            }
            | Action::MountIfAllowed {
                source,
                target,
                fstype,
                flags,
                data,
            } => (
                wire::OP_MOUNT,
                *flags as u64
                    | flag(
                        matches!(step.action, Action::MountIfAllowed { .. }),
                        wire::ARG_OPTIONAL | wire::ARG_IF_ALLOWED,
                    ),
                vec![
                    opt(source),
                    target.as_bytes_with_nul(),
                    opt(fstype),
                    opt(data),
                ],
            ),
            Action::MountRetryReadOnly {
                source,
                target,
                fstype,
                flags,
            } => (
                wire::OP_MOUNT,
                *flags as u64 | wire::ARG_RETRY_READ_ONLY,
                vec![
                    source.as_bytes_with_nul(),
                    target.as_bytes_with_nul(),
                    fstype.as_bytes_with_nul(),
                    &[],
                ],
            ),
            Action::SetAttr {
                target,
                attrs,
                recursive,
                optional,
            } => (
                wire::OP_SET_ATTR,
                attrs | flag(*recursive, wire::ARG_RECURSIVE) | flag(*optional, wire::ARG_OPTIONAL),
                vec![target.as_bytes_with_nul()],
            ),
            Action::CreateDir { path } => (wire::OP_MKDIR, 0, vec![path.as_bytes_with_nul()]),
            Action::CreateDirMode { path, mode } => (
                wire::OP_MKDIR,
                u64::from(*mode),
                vec![path.as_bytes_with_nul()],
            ),
            Action::Chmod { path, mode } => (
                wire::OP_CHMOD,
                u64::from(*mode),
                vec![path.as_bytes_with_nul()],
            ),
            Action::OpenPath { path, fd } => (
                wire::OP_OPEN_TREE,
                *fd as u64 | wire::ARG_PATH_ONLY,
                vec![path.as_bytes_with_nul()],
            ),
            Action::Close { fd } => (wire::OP_CLOSE, *fd as u64, vec![]),
            Action::CopyLook { path, from, owner } => (
                wire::OP_COPY_LOOK,
                *from as u64 | if *owner { wire::ARG_WITH_OWNER } else { 0 },
                vec![path.as_bytes_with_nul()],
            ),
            Action::CreateFile { path, content } => (
                wire::OP_TOUCH,
                0,
                match content {
                    Some(content) => vec![path.as_bytes_with_nul(), content.as_slice()],
                    None => vec![path.as_bytes_with_nul()],
                },
            ),
            Action::OpenSource { path, fd, optional } => (
                wire::OP_OPEN_TREE,
                *fd as u64 | flag(*optional, wire::ARG_OPTIONAL),
                vec![path.as_bytes_with_nul()],
            ),
            Action::AttachSource {
                fd,
                target,
                optional,
            } => (
                wire::OP_ATTACH_TREE,
                *fd as u64 | flag(*optional, wire::ARG_OPTIONAL),
                vec![target.as_bytes_with_nul()],
            ),
            Action::BindSelf { path, optional } => (
                wire::OP_BIND_SELF,
                flag(*optional, wire::ARG_OPTIONAL),
                vec![path.as_bytes_with_nul()],
            ),
            Action::Nest {
                flags,
                uid_map,
                gid_map,
            } => (
                wire::OP_NEST,
                *flags as u64,
                vec![uid_map.as_slice(), gid_map.as_slice()],
            ),
            Action::SetHostname { name } => (wire::OP_SET_HOSTNAME, 0, vec![name.as_slice()]),
            Action::LoopbackUp => (wire::OP_LOOPBACK_UP, 0, vec![]),
            Action::JoinNested => (wire::OP_JOIN_NESTED, 0, vec![]),
            Action::EnterNested => (wire::OP_ENTER_NESTED, 0, vec![]),
            Action::StartKeeper => (wire::OP_KEEPER, 0, vec![]),
            Action::OwnMounts => (wire::OP_OWN_MOUNTS, 0, vec![]),
            Action::JoinKeyring => (
                wire::OP_KEYRING,
                wire::ARG_IF_ALLOWED,
                vec![wire::KEYRING_NAME],
            ),
            Action::StartProgram {
                path,
                argv,
                envp,
                cwd,
                strict_cwd,
                filter,
                rlimits,
                user,
                after_go,
                terminal,
            } => (
                wire::OP_PROGRAM,
                flag(*after_go, wire::ARG_AFTER_GO)
                    | flag(*terminal, wire::ARG_TERMINAL)
                    | flag(*strict_cwd, wire::ARG_STRICT_CWD),
                vec![
                    path.as_bytes_with_nul(),
                    argv,
                    envp,
                    cwd.as_bytes_with_nul(),
                    filter,
                    rlimits,
                    user,
                ],
            ),
        };
        body.push(op);
        body.push(fields.len() as u8);
        body.extend_from_slice(&arg.to_le_bytes());
        for field in fields {
            body.extend_from_slice(&(field.len() as u32).to_le_bytes());
            body.extend_from_slice(field);
        }
    }
    let mut plan = Vec::with_capacity(8 + body.len());
    plan.extend_from_slice(&wire::PLAN_MAGIC.to_le_bytes());
    plan.extend_from_slice(&(body.len() as u32).to_le_bytes());
    plan.extend_from_slice(&body);
    plan
}

fn opt(s: &Option<std::ffi::CString>) -> &[u8] {
    s.as_deref().map_or(&[], |s| s.to_bytes_with_nul())
}

fn flag(on: bool, bit: u64) -> u64 {
    if on { bit } else { 0 }
}

/// An 8-byte report: a code and a value (an errno or a pid).
pub(crate) fn encode_report(code: u32, value: i32) -> [u8; 8] {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&code.to_le_bytes());
    msg[4..].copy_from_slice(&value.to_le_bytes());
    msg
}

fn decode_report(msg: [u8; 8]) -> (u32, i32) {
    let code = u32::from_le_bytes(msg[..4].try_into().expect("4 bytes"));
    let value = i32::from_le_bytes(msg[4..].try_into().expect("4 bytes"));
    (code, value)
}

/// What the init program reported.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InitReport {
    /// The sandbox is set up; its keeper, if it has one, has this pid in
    /// the sandbox's PID namespace.
    Ready { keeper: Option<u32> },
    /// Step `index` of the plan failed with `errno`.
    StepFailed { index: usize, errno: i32 },
    /// Id map `index` (written before the exec) failed with `errno`.
    MapFailed { index: usize, errno: i32 },
    /// The init program could not be started.
    ExecFailed { errno: i32 },
    /// The init program could not read its plan.
    PlanRefused { errno: i32 },
    /// The setup after the plan's steps failed.
    FinishFailed { errno: i32 },
}

impl InitReport {
    pub(crate) fn decode(msg: [u8; 8]) -> InitReport {
        match decode_report(msg) {
            (wire::REPORT_READY, keeper) => InitReport::Ready {
                keeper: u32::try_from(keeper).ok().filter(|&k| k != 0),
            },
            (wire::REPORT_EXEC, errno) => InitReport::ExecFailed { errno },
            (wire::REPORT_PLAN, errno) => InitReport::PlanRefused { errno },
            (wire::REPORT_FINISH, errno) => InitReport::FinishFailed { errno },
            (code, errno) if (wire::REPORT_ID_MAP..wire::REPORT_ID_MAP + 3).contains(&code) => {
                InitReport::MapFailed {
                    index: (code - wire::REPORT_ID_MAP) as usize,
                    errno,
                }
            }
            (index, errno) => InitReport::StepFailed {
                index: index as usize,
                errno,
            },
        }
    }
}

/// The steps of a process that joins a sandbox to start something in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum JoinStep {
    /// `setns` into the sandbox's namespaces.
    Enter = 1,
    /// Opening a pidfd of itself, for the process it starts to wait on.
    Watch = 2,
    /// `clone` of the process that runs the closure.
    CloneRunner = 4,
    /// `setns` into the user namespace a new sandbox shares.
    EnterOwner = 5,
    /// Starting a new init program in that user namespace.
    StartInit = 6,
    /// Moving into the sandbox's cgroups, setting its rlimits, giving up
    /// capabilities.
    Confine = 7,
    /// Making itself non-dumpable, before it enters.
    Dumpable = 8,
    /// A session of its own (`setsid`).
    Session = 9,
    /// Installing the seccomp filter.
    Filter = 10,
}

impl JoinStep {
    const ALL: [JoinStep; 9] = [
        JoinStep::Enter,
        JoinStep::Watch,
        JoinStep::CloneRunner,
        JoinStep::EnterOwner,
        JoinStep::StartInit,
        JoinStep::Confine,
        JoinStep::Dumpable,
        JoinStep::Session,
        JoinStep::Filter,
    ];

    /// What the step does, in words, for errors.
    pub(crate) fn what(self) -> &'static str {
        match self {
            JoinStep::Enter => "joining the sandbox's namespaces (setns)",
            JoinStep::Watch => "opening a pidfd of the joining process",
            JoinStep::CloneRunner => "starting the process that runs the closure (clone)",
            JoinStep::EnterOwner => "joining the network's user namespace (setns)",
            JoinStep::StartInit => "starting the host's init process (clone)",
            JoinStep::Confine => {
                "putting the run under the sandbox's limits (cgroups, rlimits, capabilities)"
            }
            JoinStep::Dumpable => "making the joining process non-dumpable (prctl)",
            JoinStep::Session => "giving the process a session of its own (setsid)",
            JoinStep::Filter => "installing the sandbox's seccomp filter (seccomp)",
        }
    }
}

/// What a joining process reported.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JoinReport {
    /// It started the process, whose pid (in the test process's PID
    /// namespace) this is.
    Started(libc::pid_t),
    /// It started the process as its own child (a filter refused
    /// `CLONE_PARENT`: a sandbox inside a sandbox), and stays as its
    /// parent until it ends, then ends too: the process to reap.
    StartedAsParent(libc::pid_t),
    /// A step failed with an errno.
    Failed { step: JoinStep, errno: i32 },
    /// The bytes made no sense.
    Garbled,
}

impl JoinReport {
    pub(crate) fn started(pid: libc::pid_t) -> [u8; 8] {
        encode_report(0, pid)
    }

    pub(crate) fn started_as_parent(pid: libc::pid_t) -> [u8; 8] {
        encode_report(AS_PARENT, pid)
    }

    pub(crate) fn failed(step: JoinStep, errno: i32) -> [u8; 8] {
        encode_report(step as u32, errno)
    }

    pub(crate) fn decode(msg: [u8; 8]) -> JoinReport {
        match decode_report(msg) {
            (0, pid) => JoinReport::Started(pid),
            (AS_PARENT, pid) => JoinReport::StartedAsParent(pid),
            (code, errno) => JoinStep::ALL
                .into_iter()
                .find(|s| *s as u32 == code)
                .map_or(JoinReport::Garbled, |step| JoinReport::Failed {
                    step,
                    errno,
                }),
        }
    }
}

/// The code of [`JoinReport::StartedAsParent`] (no step's).
const AS_PARENT: u32 = u32::MAX;

/// The exit status of a runner whose setup failed after it was started.
pub(crate) const EXIT_SETUP: i32 = 121;

/// The exit status of a runner that could not write its result, because the
/// closure closed or broke its result channel.
pub(crate) const EXIT_NO_CHANNEL: i32 = 122;

/// The exit status of a runner that sent its result and in whose run some
/// process or thread was made in the sandbox besides the task that frees
/// its memory: something may be left running there. A runner that sent its
/// result and saw nothing made exits with 0 (see `child::runner`'s `serve`).
pub(crate) const EXIT_SENT_MADE_SOME: i32 = 123;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_reports_round_trip() {
        assert_eq!(
            JoinReport::decode(JoinReport::started(4242)),
            JoinReport::Started(4242)
        );
        for step in JoinStep::ALL {
            assert_eq!(
                JoinReport::decode(JoinReport::failed(step, libc::EPERM)),
                JoinReport::Failed {
                    step,
                    errno: libc::EPERM
                }
            );
        }
        assert_eq!(
            JoinReport::decode(encode_report(99, 1)),
            JoinReport::Garbled
        );
    }

    #[test]
    fn init_reports_decode() {
        let r = |code, errno| InitReport::decode(encode_report(code, errno));
        assert_eq!(r(wire::REPORT_READY, 0), InitReport::Ready { keeper: None });
        assert_eq!(
            r(wire::REPORT_READY, 3),
            InitReport::Ready { keeper: Some(3) }
        );
        assert_eq!(r(3, 1), InitReport::StepFailed { index: 3, errno: 1 });
        assert_eq!(r(wire::REPORT_EXEC, 8), InitReport::ExecFailed { errno: 8 });
        assert_eq!(
            r(wire::REPORT_PLAN, 22),
            InitReport::PlanRefused { errno: 22 }
        );
        assert_eq!(
            r(wire::REPORT_ID_MAP + 1, 1),
            InitReport::MapFailed { index: 1, errno: 1 }
        );
    }

    #[test]
    fn plans_have_a_header_and_one_record_per_step() {
        let steps = vec![
            Step {
                what: "a".into(),
                kind: crate::proto::plan::StepKind::Private,
                action: Action::MakeMountsPrivate,
            },
            Step {
                what: "b".into(),
                kind: crate::proto::plan::StepKind::Hostname,
                action: Action::SetHostname {
                    name: b"box".to_vec(),
                },
            },
        ];
        let plan = encode_plan(&steps);
        assert_eq!(&plan[..4], &wire::PLAN_MAGIC.to_le_bytes());
        let len = u32::from_le_bytes(plan[4..8].try_into().unwrap()) as usize;
        assert_eq!(len, plan.len() - 8);
        // op, count, arg; op, count, arg, length, "box".
        assert_eq!(len, 10 + 10 + 4 + 3);
        assert_eq!(plan[8], wire::OP_MAKE_PRIVATE);
        assert_eq!(plan[18], wire::OP_SET_HOSTNAME);
        assert_eq!(&plan[plan.len() - 3..], b"box");
    }
}
