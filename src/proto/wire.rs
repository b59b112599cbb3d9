//! The numbers the crate and its init program agree on.
//!
//! This file is compiled twice: as a module of the crate (`src/proto/wire.rs`) and
//! into the init program (`init/main.rs`, built by `build.rs`), which is a
//! `no_std` executable of its own. It holds only constants, so both sides
//! read the same plan and report formats from one definition.
//!
//! # The plan
//!
//! The test process writes the init program's setup plan to the init
//! program's fd [`PLAN_FD`]: a header of [`PLAN_MAGIC`] and the length of
//! what follows (both `u32`, little-endian), then one record per step:
//!
//! ```text
//! op: u8 | field count: u8 | arg: u64 | (field length: u32, field bytes)*
//! ```
//!
//! Paths and names are NUL-terminated in their field; an empty field is a
//! null pointer where the system call takes one.
//!
//! # The report
//!
//! The init program answers on fd [`REPORT_FD`] with 8 bytes: a `u32` code
//! and an `i32` errno. The code is [`REPORT_READY`], the index of the step
//! that failed, or one of the other `REPORT_*` codes.
#![allow(dead_code)]

/// The init program's fd from which it reads its plan, and then, while it
/// waits, control bytes ([`CONTROL_KEEP`]).
pub const PLAN_FD: i32 = 0;
/// The init program's fd on which it sends its report.
pub const REPORT_FD: i32 = 1;
/// The init program's fd of the test process's pidfd (the lifeline).
pub const LIFELINE_FD: i32 = 2;
/// The lowest fd the init program's plan may use for its own fds.
pub const FIRST_PLAN_FD: i32 = 9;
/// With upper layers on disk: the lock that says they are in use (a
/// `flock` held by the test process and, through this fd, which the init
/// program never closes, for as long as the sandbox lives, kept or not).
pub const LAYER_LOCK_FD: i32 = 8;
/// With a program to start ([`OP_PROGRAM`]): the fds the program gets as
/// its 0, 1 and 2 (the test process's own, passed at the launch) are
/// this one and the two after it.
pub const PROGRAM_STDIO_FD: i32 = 5;
/// A pidfd of the helper the launch started (see [`OP_NEST`]), when it did.
pub const HELPER_PIDFD_FD: i32 = 3;
/// Where that helper says it has made its namespaces: 8 bytes, two
/// little-endian `i32`s: the errno of making them (0 for success), as soon
/// as it knows, so that the init program joins them at once
/// ([`OP_JOIN_NESTED`]); then that of setting `lo` up in the network
/// namespace it made (0 for success, [`LO_NOT_TRIED`] if it made none or
/// had failed before), which the init program's [`OP_LOOPBACK_UP`] reads
/// (meanwhile it makes the mounts that follow the join).
pub const HELPER_MADE_FD: i32 = 4;
/// In the helper's word: it did not try to set `lo` up.
pub const LO_NOT_TRIED: i32 = -1;

/// On the plan's fd after the plan: stop watching the test process (the
/// lifeline) and live until killed, even past the test process.
pub const CONTROL_KEEP: u8 = b'K';
/// On the plan's fd after the plan, followed by one byte, a signal number:
/// send that signal to the program ([`OP_PROGRAM`]) if it still runs.
pub const CONTROL_SIGNAL: u8 = b'S';
/// On the plan's fd after the plan: see [`ARG_AFTER_GO`].
pub const CONTROL_GO: u8 = b'G';

/// The first word of every plan.
pub const PLAN_MAGIC: u32 = 0x6865_726d;
/// The largest plan the init program takes, in bytes (in its .bss: only
/// what a plan fills is committed): room for a program's command line as
/// long as the kernel's longest ([`PROGRAM_MAX`]) and the mounts.
pub const PLAN_MAX: usize = 8 << 20;
/// The most bytes of arguments and environment (each with its NUL) a
/// program the init process starts may have: the kernel takes at most a
/// quarter of the stack limit, and never more than 6 MiB (three quarters
/// of its 8 MiB stack size), so whatever `hermetic run` could be started
/// with fits.
pub const PROGRAM_MAX: usize = 6 << 20;

/// Every step succeeded; the sandbox is ready. The errno field holds the
/// keeper's pid in the sandbox's PID namespace ([`OP_KEEPER`]; 0: none).
pub const REPORT_READY: u32 = u32::MAX;
/// The init program could not be started (the errno of `execveat`).
pub const REPORT_EXEC: u32 = u32::MAX - 1;
/// The plan could not be read or made no sense.
pub const REPORT_PLAN: u32 = u32::MAX - 2;
/// The setup around the plan's steps (reaping orphans, not dumpable) failed.
pub const REPORT_FINISH: u32 = u32::MAX - 3;
/// After [`REPORT_READY`], with [`OP_PROGRAM`]: the program exited with
/// the status in the errno field.
pub const REPORT_EXITED: u32 = u32::MAX - 4;
/// The program was killed by the signal in the errno field.
pub const REPORT_SIGNALED: u32 = u32::MAX - 5;
/// The program could not be started (its `execve`, or what comes before,
/// failed with the errno).
pub const REPORT_NOT_STARTED: u32 = u32::MAX - 6;
/// Writing id map `i` (setgroups, uid_map, gid_map) failed, before the
/// init program was exec'd: code `REPORT_ID_MAP + i`. The maps are written
/// before the exec because `execve` keeps the capabilities of a user
/// namespace only for a process that is root in it.
pub const REPORT_ID_MAP: u32 = u32::MAX - 10;

/// Write field 1 to the file at field 0.
pub const OP_WRITE_FILE: u8 = 1;
/// Make every mount private, recursively.
pub const OP_MAKE_PRIVATE: u8 = 2;
/// `mount(2)`: fields source, target, fstype, data; arg: the flags.
pub const OP_MOUNT: u8 = 3;
// 4: was a remount read-only of one mount; read-only binds take
// OP_SET_ATTR, recursive, so that mounts beneath them are read-only too.
/// Set the mount attributes in the low bits of arg ([`ATTR_RDONLY`],
/// [`ATTR_NODEV`]) on the mount at field 0 (`mount_setattr`); with
/// [`ARG_RECURSIVE`], on every mount below it too.
pub const OP_SET_ATTR: u8 = 5;
/// `MOUNT_ATTR_RDONLY`.
pub const ATTR_RDONLY: u64 = 0x1;
/// `MOUNT_ATTR_NODEV`: device nodes on the mount cannot be opened.
pub const ATTR_NODEV: u64 = 0x4;
/// Create the directory at field 0, with the mode in arg (`0o755` if 0;
/// less the init program's umask).
pub const OP_MKDIR: u8 = 6;
/// Set the mode of the file at field 0 to arg (`fchmodat`): what `mkdir`
/// cannot give through the umask (the upper layer of an overlay shows its
/// mode as the overlay's root's).
pub const OP_CHMOD: u8 = 40;
/// Close the fd in arg (an overlay's lower layer, once mounted).
pub const OP_CLOSE: u8 = 41;
/// Give the directory at field 0 (an overlay's upper layer, before the
/// mount) the times and, with [`ARG_WITH_OWNER`] and where its namespace
/// maps them, the owner and group of the directory at the fd in arg (the
/// overlay's lower layer): the overlay's root shows its upper layer's.
pub const OP_COPY_LOOK: u8 = 42;
/// Create a file at field 0 holding field 1 (empty if absent).
pub const OP_TOUCH: u8 = 7;
/// Clone the mount tree at field 0 (`open_tree`) as the fd in arg; with
/// [`ARG_PATH_ONLY`], open the path itself (`O_PATH`), not a clone.
pub const OP_OPEN_TREE: u8 = 8;
/// Attach the tree of the fd in arg at field 0 (`move_mount`) and close it.
pub const OP_ATTACH_TREE: u8 = 9;
/// Bind the path at field 0 over itself (to give it flags of its own).
pub const OP_BIND_SELF: u8 = 10;
/// Start the helper that owns the inner user namespace: a child in a new
/// user namespace that makes the other namespaces in arg (`CLONE_NEW*`
/// flags) in it, while the init program goes on (or take the one the
/// launch started before the exec, at [`HELPER_PIDFD_FD`]); write its uid
/// and gid maps, fields 0 and 1, which map one id to the init program's 0
/// (through whichever proc is mounted).
pub const OP_NEST: u8 = 11;
/// Wait until the helper has made its namespaces (failing with its errno
/// if it could not), and join them but for the user namespace.
pub const OP_JOIN_NESTED: u8 = 18;
/// `sethostname(2)` to field 0 (not NUL-terminated).
pub const OP_SET_HOSTNAME: u8 = 12;
/// Once the sandbox is ready, start a program as a child of the init
/// program (fields: its path, its arguments and its environment, each a
/// run of NUL-terminated strings, the working directory, the seccomp
/// filter as `struct sock_filter`s, the rlimits as (resource: `u32`,
/// soft: `u64`, hard: `u64`) records, all little-endian; then, if it is
/// not to be root, [`PROGRAM_SET_IDS`] or [`PROGRAM_DROP_CAPS`] and the
/// uid and gid (`u8`, `u32`, `u32`); the step's argument may carry
/// [`ARG_AFTER_GO`] and [`ARG_TERMINAL`]). It starts in a
/// process group of its own in the init process's session (leading no
/// session; with [`ARG_TERMINAL`], leading one), with the fds from [`PROGRAM_STDIO_FD`] as its 0 to
/// 2, no other fd, an empty signal mask and default dispositions. The
/// report fd stays open and then carries one more report: how the program
/// ended ([`REPORT_EXITED`], [`REPORT_SIGNALED`]) or why it could not be
/// started ([`REPORT_NOT_STARTED`]).
pub const OP_PROGRAM: u8 = 19;
/// In [`OP_PROGRAM`]'s user field: change to the uid and gid (ids 0-65535
/// mapped), which also gives up every capability.
pub const PROGRAM_SET_IDS: u8 = 1;
/// In [`OP_PROGRAM`]'s user field: give up every capability, staying the
/// one id mapped.
pub const PROGRAM_DROP_CAPS: u8 = 2;
/// At most this many arguments, and this many environment entries (the
/// init program's arrays of pointers to them are in .bss: only what is
/// used is committed): the kernel counts 8 bytes a pointer within its
/// limit, so [`PROGRAM_MAX`] holds fewer.
pub const PROGRAM_ARGS_MAX: usize = 1 << 20;
/// See [`PROGRAM_ARGS_MAX`].
pub const PROGRAM_ENV_MAX: usize = 1 << 20;
/// Bring `lo` up (or wait for the helper's word on it, see
/// [`HELPER_MADE_FD`]), then end the helper.
pub const OP_LOOPBACK_UP: u8 = 13;
/// Enter the helper's user namespace, then end the helper.
pub const OP_ENTER_NESTED: u8 = 14;
/// Start the keeper: a child that stays in the outer user namespace, with
/// the sandbox's other namespaces, and only waits (killed with the
/// sandbox). `nsenter` reaches a kept sandbox's mounts and PID namespace
/// through it, rootless too: entering the inner user namespace first would
/// leave no capability over them.
pub const OP_KEEPER: u8 = 17;
/// Join (or create) the session keyring named field 0, searchable by its
/// owner, so that the sandbox's processes can join it by name.
pub const OP_KEYRING: u8 = 15;
/// Move into a mount namespace of the inner user namespace's own, a copy
/// of the sandbox's with every mount locked (as the kernel locks a copy
/// made for a less privileged user namespace): root inside may then mount
/// on top (a test's own tmpfs or bind), but never take off, uncover or
/// loosen what the sandbox mounted. The outer mount namespace is kept (an
/// fd, closed when this process ends) so that its teardown comes with
/// the sandbox's, not now.
pub const OP_OWN_MOUNTS: u8 = 43;

/// In arg: the operation applies to every mount below the path too.
pub const ARG_RECURSIVE: u64 = 1 << 62;
/// In arg: a path that does not exist (`ENOENT`), or a tree that was not
/// opened for that reason (`EBADF`), skips the step.
pub const ARG_OPTIONAL: u64 = 1 << 63;
/// In arg: the system call is refused by the host (`ENOSYS`, `EPERM`,
/// `EACCES` from a seccomp filter or an LSM), skip the step.
pub const ARG_IF_ALLOWED: u64 = 1 << 61;
/// In arg of [`OP_MOUNT`]: a mount refused with `EPERM` is tried again
/// read-only (a fresh `/proc` in a sandbox made inside a sandbox, where the
/// only fully visible proc mount is read-only).
pub const ARG_RETRY_READ_ONLY: u64 = 1 << 60;
/// In arg of [`OP_OPEN_TREE`]: an `O_PATH` fd of the path (an overlay's
/// lower layer, named later as `/proc/self/fd/N`), not a clone of its tree.
pub const ARG_PATH_ONLY: u64 = 1 << 59;
/// In arg of [`OP_PROGRAM`]: start the program only once [`CONTROL_GO`]
/// comes (after the test process has moved the init program into the
/// sandbox's cgroups, which the program then starts in).
pub const ARG_AFTER_GO: u64 = 1 << 58;
/// In arg of [`OP_PROGRAM`]: the program leads a session of its own whose
/// controlling terminal is the first of its fds 0 to 2 that is a terminal
/// (a pseudo-terminal `hermetic run` made for it, never the caller's), in
/// the foreground there; without it, the program gets a process group of
/// its own in the init process's session, with no controlling terminal.
pub const ARG_TERMINAL: u64 = 1 << 56;
/// In arg of [`OP_PROGRAM`]: the program starts in its working directory
/// or not at all (`hermetic run --chdir`); without it, in `/` where the
/// sandbox hides its directory (the caller's, as for a run).
pub const ARG_STRICT_CWD: u64 = 1 << 55;
/// In arg of [`OP_COPY_LOOK`]: the owner and group too, not only the
/// times (where whoever removes the directory can remove what the owner's
/// processes put in it: as root, or in the sandbox's own tmpfs).
pub const ARG_WITH_OWNER: u64 = 1 << 57;
/// The bits of arg that are flags of the step, not of the system call.
pub const ARG_STEP_FLAGS: u64 = ARG_RECURSIVE
    | ARG_OPTIONAL
    | ARG_IF_ALLOWED
    | ARG_RETRY_READ_ONLY
    | ARG_PATH_ONLY
    | ARG_WITH_OWNER;

/// The name of the session keyring every process of a sandbox joins.
pub const KEYRING_NAME: &[u8] = b"hermetic-sandbox\0";
