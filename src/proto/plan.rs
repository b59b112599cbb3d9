//! The init program's plan as typed steps: what the test process decides
//! ([`setup::plan`](crate::setup::plan) builds the list) and what the
//! launch and the encoder ([`reports`](super::reports)) read. Encoded on
//! the wire as [`wire`](super::wire) describes.

use std::ffi::CString;

/// One system call the init program makes.
#[derive(Debug)]
pub(crate) enum Action {
    /// Write `content` to `path` (id maps, setgroups).
    WriteFile { path: CString, content: Vec<u8> },
    /// Write `content` to `path`, skipped where it is not there or the
    /// kernel refuses it (`EPERM`, `EACCES`): a sysctl of the sandbox's own
    /// namespaces.
    WriteFileIfAllowed { path: CString, content: Vec<u8> },
    /// The id maps, written from outside (see `idmap`): nothing for the
    /// launch to do but wait.
    ExternalMaps,
    /// Make every mount private, recursively.
    MakeMountsPrivate,
    /// `mount(2)`.
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// `mount(2)`, skipped where its target does not exist or the host
    /// refuses it (`EPERM`, `EACCES`, `ENOSYS`): what a sandbox does
    /// without, as before.
    MountIfAllowed {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// Set mount attributes (`wire::ATTR_*`) on a mount (and with
    /// `recursive`, every mount below it).
    SetAttr {
        target: CString,
        attrs: u64,
        recursive: bool,
        optional: bool,
    },
    /// Create a directory to mount on (mode 0755).
    CreateDir { path: CString },
    /// Create a directory with a mode (less the umask).
    CreateDirMode { path: CString, mode: u32 },
    /// Create an empty file to bind a file on.
    CreateFile {
        path: CString,
        content: Option<Vec<u8>>,
    },
    /// Clone the mount tree of a bind source (`open_tree`) as fd number
    /// `fd`, before the sandbox's own mounts (such as the tmpfs on `/tmp`)
    /// can hide it or be copied into it.
    OpenSource {
        path: CString,
        fd: i32,
        optional: bool,
    },
    /// Attach the tree cloned as `fd` at `target` (`move_mount`).
    AttachSource {
        fd: i32,
        target: CString,
        optional: bool,
    },
    /// Open `path` itself (`O_PATH`) as fd number `fd`: an overlay's lower
    /// layer, named `/proc/self/fd/N` when mounted, after the sandbox's
    /// own mounts (the overlays themselves) may have covered the path.
    OpenPath { path: CString, fd: i32 },
    /// Close fd number `fd`.
    Close { fd: i32 },
    /// Set the mode of `path`.
    Chmod { path: CString, mode: u32 },
    /// Give `path` the times (and, with `owner`, the owner and group) of
    /// the directory at `from`
    /// ([`wire::OP_COPY_LOOK`](crate::proto::wire::OP_COPY_LOOK)).
    CopyLook {
        path: CString,
        from: i32,
        owner: bool,
    },
    /// Bind a path over itself, so that it can get flags of its own.
    BindSelf { path: CString, optional: bool },
    /// `mount(2)` with no data, tried again read-only if refused (`EPERM`).
    MountRetryReadOnly {
        source: CString,
        target: CString,
        fstype: CString,
        flags: libc::c_ulong,
    },
    /// Start the inner user namespace, whose helper makes the namespaces
    /// in `flags` in it meanwhile.
    Nest {
        flags: libc::c_int,
        /// The inner user namespace's maps: the one id the sandbox's
        /// processes have (0, or the builder's user).
        uid_map: Vec<u8>,
        gid_map: Vec<u8>,
    },
    /// `sethostname(2)`.
    SetHostname { name: Vec<u8> },
    /// Set `lo` up.
    LoopbackUp,
    /// Join the namespaces the helper made (but its user namespace).
    JoinNested,
    /// Move into the inner user namespace.
    EnterNested,
    /// Start the keeper (see `wire::OP_KEEPER`).
    StartKeeper,
    /// Move into a mount namespace of the inner user namespace's own (see
    /// `wire::OP_OWN_MOUNTS`).
    OwnMounts,
    /// Join the sandbox's own session keyring.
    JoinKeyring,
    /// Once ready, start a program (see `wire::OP_PROGRAM`).
    StartProgram {
        path: CString,
        /// NUL-terminated arguments, one after the other.
        argv: Vec<u8>,
        /// NUL-terminated `KEY=VALUE` entries, one after the other.
        envp: Vec<u8>,
        cwd: CString,
        /// Start it in `cwd` or not at all (`wire::ARG_STRICT_CWD`).
        strict_cwd: bool,
        /// The seccomp filter's instructions, as the kernel reads them.
        filter: Vec<u8>,
        /// (resource, soft, hard) records.
        rlimits: Vec<u8>,
        /// Empty for root; else how (`wire::PROGRAM_SET_IDS` or
        /// `PROGRAM_DROP_CAPS`), the uid and the gid.
        user: Vec<u8>,
        /// Start it once the test process says go (`wire::ARG_AFTER_GO`).
        after_go: bool,
        /// It leads a session whose controlling terminal is its first fd
        /// of 0 to 2 that is a terminal (`wire::ARG_TERMINAL`).
        terminal: bool,
    },
}

/// What a step is for, as [`check`](crate::check) and the diagnostics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepKind {
    /// Writing `setgroups`, `uid_map`, `gid_map`.
    IdMap,
    /// Making mounts private.
    Private,
    /// Making the host's files read-only.
    ReadOnlyHost,
    /// The fresh `/proc`.
    Proc,
    /// `/proc/sys` and its like made read-only.
    ProcReadOnly,
    /// The inner user namespace and the namespaces it owns.
    Nest,
    /// Entering the inner user namespace, which locks the mounts.
    EnterNested,
    /// The fresh `/sys`.
    Sys,
    /// The tmpfs on `/tmp`.
    Tmp,
    /// The tmpfs on `/dev/shm`.
    DevShm,
    /// A mount the user asked for (or the working directory's).
    UserMount,
    /// A copy-on-write layer over the host's files (an overlay).
    Overlay,
    /// A special filesystem of the host covered (or replaced by the
    /// sandbox's own).
    Special,
    /// The hostname.
    Hostname,
    /// `lo` up.
    Loopback,
    /// System V IPC bounded by a memory limit enforced per process.
    Ipc,
    /// The session keyring.
    Keyring,
    /// The program the init process starts.
    Program,
}

/// A step: what it does, and how to say so when it fails.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) what: String,
    pub(crate) kind: StepKind,
    pub(crate) action: Action,
}
