//! Attacks on the pool of emptied copy-on-write layer directories on disk
//! (`/var/tmp/hermetic-UID/pool`) and on the terminal relay of `hermetic
//! run`. An attack that works today is `#[ignore]`d with the finding (it
//! fails with `--ignored`); the rest pass, root and rootless.

use crate::common;
use crate::common::{
    bash_on_terminal, disk_base, ended_within, on_terminal, set_terminal_size, start_on_terminal,
    wait_for,
};

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use hermetic::{HostMode, Sandbox};

/// A sandbox whose host is copy-on-write.
fn cow() -> Sandbox {
    Sandbox::builder()
        .host(HostMode::CopyOnWrite)
        .build()
        .unwrap()
}

/// Inside a copy-on-write sandbox: the mount point of the overlay whose
/// upper layer lies on disk (the test's tree's), and that layer's name in
/// the disk base, from `/proc/self/mountinfo`.
fn disk_overlay() -> Option<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let options = fields.last()?;
        let upper = options
            .split(',')
            .find_map(|o| o.strip_prefix("upperdir=/proc/self/fd/"))?;
        let (_, name) = upper.split_once('/')?;
        // On disk: PID.RANDOM.N.uK (in memory: uK).
        name.contains('.')
            .then(|| (fields[4].to_owned(), name.to_owned()))
    })
}

/// The inode number of the upper layer `name` in the disk base.
fn inode_of(name: &str) -> Option<u64> {
    std::fs::metadata(disk_base().join(name))
        .ok()
        .map(|m| m.ino())
}

/// The entry of the disk base's pool whose inode is `ino`, if it holds one.
fn pooled(ino: u64) -> Option<std::path::PathBuf> {
    std::fs::read_dir(disk_base().join("pool"))
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.metadata().is_ok_and(|m| m.ino() == ino))
        .map(|e| e.path())
}

/// One sandbox after another (at most `tries`, stopping once the pool
/// no longer holds the directory `ino` nor has handed it to one of them:
/// other processes of this user take from it, and trim it): what `look`
/// (run inside on the overlay's root) said in the first where `shows`
/// holds, and which one that was.
fn seen_by_a_later_sandbox(
    ino: u64,
    tries: usize,
    look: fn(&str) -> String,
    shows: fn(&str) -> bool,
) -> Option<Seen> {
    for i in 0..tries {
        let next = cow();
        let (root, upper) = next.run(disk_overlay)?;
        let said = next.run(move || look(&root));
        if shows(&said) {
            return Some((i, said));
        }
        if pooled(ino).is_none() && inode_of(&upper) != Some(ino) {
            return None;
        }
    }
    None
}

/// Which later sandbox (counted from 0) saw it, and what it saw.
type Seen = (usize, String);

/// Attacks the pool: in each of up to 8 rounds, a copy-on-write sandbox
/// does `set` to its overlay's root (the test's tree's, on disk); if its
/// upper layer then goes to the pool, `look` there says what of it is
/// left (`shows`: something the sandbox set), and later sandboxes look
/// for it on their own overlay's root. What the pool took, and the first
/// later sandbox that saw it (which, what it saw); `Err` to skip. Whatever
/// shows in the pool at the end is removed, so that a finding leaves
/// nothing to the next tests.
fn attack_through_the_pool(
    set: fn(&str) -> Result<(), String>,
    look: fn(&str) -> String,
    shows: fn(&str) -> bool,
) -> Result<(Vec<String>, Option<Seen>), String> {
    let mut pooled_with_it = Vec::new();
    let mut seen = None;
    for _ in 0..8 {
        let first = cow();
        let Some((root, upper)) = first.run(disk_overlay) else {
            return Err("no upper layer on disk here (not ext4, XFS or btrfs)".into());
        };
        let ino = inode_of(&upper).expect("the sandbox's upper layer in the disk base");
        let done = first.run(move || set(&root));
        drop(first);
        if let Err(e) = done {
            return Err(format!("the attack cannot be made here: {e}"));
        }
        if let Some(said) = pooled(ino).map(|p| look(&p.to_string_lossy()))
            && shows(&said)
        {
            pooled_with_it.push(said);
            seen = seen_by_a_later_sandbox(ino, 16, look, shows);
        }
        if seen.is_some() {
            break;
        }
    }
    for entry in std::fs::read_dir(disk_base().join("pool"))
        .into_iter()
        .flatten()
    {
        let Ok(entry) = entry else { continue };
        if shows(&look(&entry.path().to_string_lossy())) {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
    Ok((pooled_with_it, seen))
}

/// `security.capability` of `path` (its bytes in hex), or the error.
fn capability_of(path: &str) -> String {
    let path = std::ffi::CString::new(path).unwrap();
    let mut value = [0u8; 64];
    // SAFETY: NUL-terminated name and path, a live buffer of its length.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"security.capability".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    match usize::try_from(n) {
        Ok(n) => value[..n].iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => format!("none ({})", std::io::Error::last_os_error()),
    }
}

// `disk::is_empty_layer` lets an upper layer's root go to the pool with
// any `security.*` attribute on it (a security module's label, it
// assumes). `security.capability` is one a process that owns the
// directory may set (CAP_SETFCAP over it, which root inside has over the
// overlay's root, root's on the host, as root), on a directory too, and
// overlayfs sets it on the upper layer's root.
/// The attacker: as root, a copy-on-write sandbox's closure sets
/// `security.capability` (20 bytes of its choosing: a version-2 header
/// and 128 bits) on the root of the overlay of the test's tree (`/work`
/// here). What happened: the sandbox's upper layer went to the pool with
/// the attribute on it, and the later sandbox that took it read the 20
/// bytes on its own overlay's root (by hand with `hermetic run`: 2 of the
/// next 20 runs saw it): a channel from one sandbox to a later one, and
/// an attribute on the test's tree that the host's directory has not.
/// Rootless too (version 3, rootid the caller's), with and without
/// `HERMETIC_ONE_ID`, wherever the caller owns the overlay's root (a tree
/// under `/var/tmp`: the tree itself); where it does not (`/work`, root's),
/// the attribute cannot be set and the test skips. What should
/// happen: a layer whose root carries an attribute the sandbox could set
/// is not pooled (removed instead), as with a `user.` one.
#[test]
fn a_capability_attribute_on_the_overlay_s_root_reaches_no_later_sandbox() {
    let shows = |c: &str| !c.starts_with("none");
    let attack = attack_through_the_pool(set_capability, capability_of, shows);
    let (pooled, seen) = match attack {
        Ok(found) => found,
        Err(why) => return common::skip(&why),
    };
    assert!(
        pooled.is_empty() && seen.is_none(),
        "upper layers went to the pool with the sandbox's security.capability: {pooled:?}; \
         a later sandbox (which, what it saw on its overlay's root): {seen:?}"
    );
}

/// Sets `security.capability` on `root`: a version-2 header, permitted
/// 0x2a/0x2a, inheritable 0x15/0x15.
fn set_capability(root: &str) -> Result<(), String> {
    let path = std::ffi::CString::new(root).unwrap();
    let value: [u8; 20] = [
        0x01, 0x00, 0x00, 0x02, 0x2a, 0, 0, 0, 0x15, 0, 0, 0, 0x2a, 0, 0, 0, 0x15, 0, 0, 0,
    ];
    // SAFETY: NUL-terminated name and path, a live value of its length.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"security.capability".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// The inode flags (`FS_IOC_GETFLAGS`) of `path`, or the error.
fn flags_of(path: &str) -> Result<libc::c_int, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut flags: libc::c_int = 0;
    // SAFETY: an open file, and a live int for the kernel to fill.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS as _, &mut flags) };
    if r == 0 {
        Ok(flags)
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
/// `chattr +S`: every write to a file made below is synchronous.
const FS_SYNC_FL: libc::c_int = 0x8;
/// `chattr +D`: every change of a directory made below is synchronous.
const FS_DIRSYNC_FL: libc::c_int = 0x1_0000;

// `disk::is_empty_layer` looks at an upper layer's entries and extended
// attributes, not at its inode flags (`chattr`), which the owner of a
// directory may change (all but immutable, append-only and data
// journaling need no capability) and overlayfs changes on the upper
// layer; `give_back` and the plan reset its mode only.
/// The attacker: as root, a copy-on-write sandbox's closure sets the
/// inode flags `S` and `D` (`chattr +SD`: synchronous writes and
/// directory changes, inherited by whatever is made below) on the root of
/// the overlay of the test's tree (`/work` here). What happened: the
/// upper layer went to the pool with the flags, and the later sandbox
/// that took it saw them on its overlay's root (`lsattr -d /work`:
/// `--S-...`; by hand with `hermetic run`, 1 of the next 12 runs): every
/// file and directory it makes there is written synchronously (each write
/// waits for the disk), and the flags are a channel from one sandbox to a
/// later one. The kernel's `work` directories made in such a directory
/// (when the pool hands it out as a work directory) inherit `S`, and go
/// to the pool with it too. Rootless too, with and without
/// `HERMETIC_ONE_ID`, wherever the caller owns the overlay's root (else
/// the test skips). What should happen:
/// a later sandbox's overlay's root has the flags a new upper layer has
/// (the pool checks or clears them, or such a layer is removed).
#[test]
fn inode_flags_on_the_overlay_s_root_reach_no_later_sandbox() {
    let attack = attack_through_the_pool(set_sync_flags, shown_flags, shows_sync_flags);
    let (pooled, seen) = match attack {
        Ok(found) => found,
        Err(why) => return common::skip(&why),
    };
    assert!(
        pooled.is_empty() && seen.is_none(),
        "upper layers went to the pool with the flags the sandbox set: {pooled:?}; \
         a later sandbox (which, what it saw on its overlay's root): {seen:?}"
    );
}

/// `chattr +SD root`.
fn set_sync_flags(root: &str) -> Result<(), String> {
    let f = std::fs::File::open(root).map_err(|e| e.to_string())?;
    let flags = flags_of(root)? | FS_SYNC_FL | FS_DIRSYNC_FL;
    // SAFETY: an open file, and a live int for the kernel to read.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS as _, &flags) };
    match r {
        0 if shows_sync_flags(&shown_flags(root)) => Ok(()),
        0 => Err(format!("the flags did not change: {}", shown_flags(root))),
        _ => Err(std::io::Error::last_os_error().to_string()),
    }
}

/// The inode flags of `path`, in hex, or the error.
fn shown_flags(path: &str) -> String {
    match flags_of(path) {
        Ok(f) => format!("{f:#x}"),
        Err(e) => e,
    }
}

/// Whether `shown` (of [`shown_flags`]) has `S` or `D`.
fn shows_sync_flags(shown: &str) -> bool {
    shown
        .strip_prefix("0x")
        .and_then(|f| libc::c_int::from_str_radix(f, 16).ok())
        .is_some_and(|f| f & (FS_SYNC_FL | FS_DIRSYNC_FL) != 0)
}

/// The owner and modification time of `path`: `UID:GID@SECONDS`.
fn owner_and_time(path: &str) -> String {
    match std::fs::symlink_metadata(path) {
        Ok(m) => format!("{}:{}@{}", m.uid(), m.gid(), m.mtime()),
        Err(e) => e.to_string(),
    }
}

/// `chown 4242:4242 root`, and its modification time set to 2001-09-09.
fn set_owner_and_time(root: &str) -> Result<(), String> {
    use std::os::unix::fs::chown;
    chown(root, Some(4242), Some(4242)).map_err(|e| e.to_string())?;
    let f = std::fs::File::open(root).map_err(|e| e.to_string())?;
    let when = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    f.set_modified(when).map_err(|e| e.to_string())
}

/// Whether `said` (of [`owner_and_time`]) has the owner or the time
/// [`set_owner_and_time`] gives.
fn shows_owner_or_time(said: &str) -> bool {
    said.starts_with("4242:") || said.ends_with("@1000000000")
}

// `disk::DiskBase::give_back` gives a pooled directory mode 0700, and the
// plan the mode of the lower layer; neither its owner nor its times.
/// The attacker: as root, a copy-on-write sandbox's closure gives the
/// root of the overlay of the test's tree (`/work` here) another owner
/// (4242) and an old modification time. What happens: its upper layer
/// goes to the pool with that owner (as root, 4242 of the sandbox's id
/// range) and time, but no later sandbox saw either on its overlay's root,
/// root and rootless. What should happen (and happens): a later sandbox's
/// overlay's root looks as the host's directory does (owner and times),
/// whatever an earlier sandbox did to its own.
#[test]
fn the_owner_and_times_of_the_overlay_s_root_reach_no_later_sandbox() {
    let attack = attack_through_the_pool(set_owner_and_time, owner_and_time, shows_owner_or_time);
    let (pooled, seen) = match attack {
        Ok(found) => found,
        Err(why) => return common::skip(&why),
    };
    assert!(
        seen.is_none(),
        "a later sandbox saw the owner or time an earlier one gave its overlay's root: {seen:?} \
         (pooled so: {pooled:?})"
    );
}

/// The state letter of process `pid` (`/proc/PID/stat`: R, S, T...).
fn state_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(") ")
                .map(|(_, rest)| rest.chars().take(1).collect())
        })
        .unwrap_or_default()
}

// `relay::Serve::stop`: on SIGTSTP (the terminal's suspend character,
// typed while the program's terminal generates signals), hermetic puts
// the caller's terminal back and stops itself with SIGSTOP, which no
// process group escapes. The kernel discards a terminal's SIGTSTP (and
// a default-action stop) for an orphaned process group, where no shell
// would continue it; hermetic's group is orphaned whenever no job-control
// shell started it: `ssh -t host hermetic run -- PROGRAM`, a terminal
// emulator's `-e`, `script -c`, `setsid -c`, a test harness on a pty.
/// The attacker: none; the user (or anything that types on the terminal).
/// `hermetic run -- sh -c 'while read -r l; do echo "GOT:$l"; done'`
/// leading its session on a terminal (no shell around it, as under
/// `ssh -t`); the user types Ctrl-Z, then a line. What happened: hermetic
/// stopped itself (state `T`) and stays stopped: the line is echoed by the
/// caller's terminal (its modes put back) but never reaches the program,
/// which runs on unseen; Ctrl-C no longer ends it (the stopped hermetic
/// only takes it when continued, and nothing in the session can continue
/// it: under `ssh -t` the session is frozen until hermetic is killed from
/// elsewhere). What should happen: as with the program on the terminal
/// itself (an orphaned group: the kernel discards the stop), hermetic
/// goes on relaying: the line reaches the program (`GOT:after`), and
/// Ctrl-C still ends it.
#[test]
fn ctrl_z_without_a_job_control_shell_does_not_stop_hermetic_for_ever() {
    let mut cmd = common::hermetic_command();
    cmd.args([
        "run",
        "--",
        "sh",
        "-c",
        "echo RE\"\"ADY; while read -r l; do echo \"GO\"\"T:$l\"; done",
    ]);
    let (mut child, mut writer, rx, _slave) = start_on_terminal(cmd);
    let mut seen = String::new();
    let ready = wait_for(&rx, &mut seen, "READY");
    writer.write_all(b"first\n").unwrap();
    let first = wait_for(&rx, &mut seen, "GOT:first");
    writer.write_all(b"\x1a").unwrap();
    // Stopped (within 5 s), or not: then a line typed reaches the program
    // once hermetic relays it.
    let pid = child.id();
    let stopped = common::eventually(|| state_of(pid) == "T");
    writer.write_all(b"after\n").unwrap();
    let after = common::shown_until(&rx, "GOT:after", Duration::from_secs(5));
    let state = state_of(pid);
    let _ = writer.write_all(b"\x03");
    let status = ended_within(&mut child, Duration::from_secs(5));
    assert!(
        ready && first,
        "the program never read the first line: {seen}"
    );
    assert!(
        after.contains("GOT:after"),
        "after Ctrl-Z (no shell to continue it), hermetic no longer relays \
         (stopped: {stopped}, its state: {state:?}; ended on Ctrl-C: {status:?}): {after:?}"
    );
}

/// What `security.selinux` of `path` holds (its first 40 bytes, as
/// text, and its length), or `none (ERROR)`.
fn label_of(path: &str) -> String {
    let path = std::ffi::CString::new(path).unwrap();
    let mut value = vec![0u8; 8192];
    // SAFETY: NUL-terminated name and path, a live buffer of its length.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"security.selinux".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    match usize::try_from(n) {
        Ok(n) => format!(
            "{} bytes: {}",
            n,
            String::from_utf8_lossy(&value[..n.min(40)])
        ),
        Err(_) => format!("none ({})", std::io::Error::last_os_error()),
    }
}

/// Sets `security.selinux` on `root` to 3 KiB of the attacker's message.
fn set_label(root: &str) -> Result<(), String> {
    let path = std::ffi::CString::new(root).unwrap();
    let value = "a message from an earlier sandbox. ".repeat(88);
    // SAFETY: NUL-terminated name and path, a live value of its length.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"security.selinux".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

// As with `security.capability` above: `disk::is_empty_layer` takes any
// `security.*` attribute for a security module's. With no module that
// owns `security.selinux` loaded (none here), the kernel lets whoever
// may write the overlay's root (root inside) set it to any bytes, and
// overlayfs sets them on the upper layer's root.
/// The attacker: a copy-on-write sandbox's closure sets
/// `security.selinux` on the root of the overlay of the test's tree to
/// 3 KiB of its own text. What happened: the upper layer went to the pool
/// with it, and a later sandbox (the first or second after) read the text
/// on its overlay's root: a channel of kilobytes from one sandbox to a
/// later one of the same user (of any tree on that overlay). Root and
/// rootless (with and without `HERMETIC_ONE_ID`, where the caller owns
/// the overlay's root). What should happen: a layer whose root carries an
/// attribute the sandbox set is not pooled, as with a `user.` one.
#[test]
fn a_security_label_on_the_overlay_s_root_reaches_no_later_sandbox() {
    let shows = |c: &str| !c.starts_with("none");
    let attack = attack_through_the_pool(set_label, label_of, shows);
    let (pooled, seen) = match attack {
        Ok(found) => found,
        Err(why) => return common::skip(&why),
    };
    assert!(
        pooled.is_empty() && seen.is_none(),
        "upper layers went to the pool with the sandbox's security.selinux: {pooled:?}; \
         a later sandbox (which, what it saw on its overlay's root): {seen:?}"
    );
}

/// The CPU time (user and system, in clock ticks) process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(") ")?.1.to_owned();
            let fields: Vec<&str> = rest.split(' ').collect();
            // utime and stime: fields 14 and 15, the 12th and 13th after the state.
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// The attacker: `hermetic run -- PROGRAM` on a terminal, PROGRAM never
/// reading its terminal (in canonical mode) while the user types more
/// than its terminal takes without a newline (8 KiB; a paste). What should
/// happen (and happens, if this passes): hermetic waits for the program's
/// terminal to take more, using no CPU meanwhile (under a tenth of the
/// two seconds the program then sleeps), and still ends with the program.
#[test]
fn typing_more_than_the_program_reads_does_not_make_hermetic_spin() {
    let mut cmd = common::hermetic_command();
    cmd.args([
        "run",
        "--",
        "sh",
        "-c",
        "echo RE\"\"ADY; read -r _ 2>/dev/null </dev/null; sleep 1; echo T\"\"1; sleep 2; echo T\"\"2",
    ]);
    let (mut child, mut writer, rx, _slave) = start_on_terminal(cmd);
    let mut seen = String::new();
    let ready = wait_for(&rx, &mut seen, "READY");
    let pid = child.id();
    // Typed in a thread of its own: the caller's terminal takes it as far
    // as its buffer allows.
    let typing = std::thread::spawn(move || {
        let _ = writer.write_all(&[b'x'; 8192]);
        writer
    });
    let t1 = wait_for(&rx, &mut seen, "T1");
    let before = cpu_ticks(pid);
    let t2 = wait_for(&rx, &mut seen, "T2");
    let used = cpu_ticks(pid).saturating_sub(before);
    let status = ended_within(&mut child, Duration::from_secs(10));
    drop(typing);
    assert!(
        ready && t1 && t2,
        "the program did not get to T2: {}",
        seen.len()
    );
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    assert!(
        used < hz / 5,
        "hermetic used {used} ticks (of {hz} a second) of CPU in the 2 s the program slept"
    );
    assert!(status.is_some(), "hermetic did not end with its program");
}

/// Waits up to `within` for `pid` (a child) to end: its status and the
/// CPU time it used (user and system), or `None` (then it is killed).
fn reaped_with_usage(pid: u32, within: Duration) -> Option<(i32, Duration)> {
    let deadline = Instant::now() + within;
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data, valid all zeroes; filled by wait4.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: our own child, live out-pointers.
        let r = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid as i32 {
            let tv = |t: libc::timeval| {
                Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
            };
            return Some((status, tv(usage.ru_utime) + tv(usage.ru_stime)));
        }
        if Instant::now() > deadline {
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The attacker: `hermetic run -- sh -c 'trap "" HUP; ...; sleep 3'` on a
/// terminal that then goes away (the terminal emulator closed, the ssh
/// link dropped: its master closed) while the program, deaf to SIGHUP,
/// runs on. What should happen (and happens, if this passes): hermetic
/// passes the hang-up on, waits for its program without spinning (under
/// half a second of CPU in its program's 3 s) and ends with it.
#[test]
fn a_program_deaf_to_the_hang_up_does_not_make_hermetic_spin() {
    let (master, slave) = common::openpty();
    let mut cmd = common::hermetic_command();
    cmd.args([
        "run",
        "--",
        "sh",
        "-c",
        "trap '' HUP; echo RE\"\"ADY; sleep 3; echo DONE",
    ]);
    on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    drop((cmd, slave));
    // Read until READY, then close the master: the terminal is gone.
    let mut seen = Vec::new();
    let mut f = std::fs::File::from(master);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.windows(5).any(|w| w == b"READY") && Instant::now() < deadline {
        let mut fds = [libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one live pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) } > 0 {
            let mut buf = [0u8; 4096];
            match std::io::Read::read(&mut f, &mut buf) {
                Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
    }
    let ready = seen.windows(5).any(|w| w == b"READY");
    drop(f);
    let ended = reaped_with_usage(child.id(), Duration::from_secs(20));
    // Reaped above, or killed there and reaped here (ECHILD otherwise).
    let _ = child.wait();
    assert!(ready, "the program never said READY");
    let (_, cpu) = ended.expect("hermetic did not end within 20 s of its terminal's hang-up");
    assert!(
        cpu < Duration::from_millis(500),
        "hermetic used {cpu:?} of CPU while its terminal was gone"
    );
}

/// The size of the terminal of `fd`: rows, columns.
fn size_of(fd: &impl AsRawFd) -> (u16, u16) {
    // SAFETY: winsize is plain data, valid all zeroes.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: a live terminal fd and winsize.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (size.ws_row, size.ws_col)
}

// `terminal::Saved`'s drop gives the caller's terminal back the size it
// had when hermetic started, if it has another now: meant for a program
// that changed it, which no longer can (it has a terminal of its own),
// it undoes the user's own resizing of the window instead.
/// The attacker: none; the user. `hermetic run -- sh -c 'read -r l; stty
/// size'` on a 24x80 terminal whose window the user enlarges to 50x120
/// meanwhile (the program sees it: `50 120`). What happened: once hermetic
/// ended, the caller's terminal said 24x80 again while its window is
/// 50x120: the shell and every program after it (an editor, `ls`, `less`)
/// lay out for the old size until the window is resized again. What should
/// happen: the terminal keeps the size its window gave it (as after the
/// same program run without hermetic).
#[test]
fn a_window_resized_during_the_run_keeps_its_size_after() {
    let (master, slave) = common::openpty();
    set_terminal_size(&slave, (24, 80));
    let mut cmd = common::hermetic_command();
    cmd.args([
        "run",
        "--",
        "sh",
        "-c",
        "echo RE\"\"ADY; read -r l; echo \"SIZE:$(stty size)\"",
    ]);
    on_terminal(&mut cmd, &slave);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut writer = std::fs::File::from(master.try_clone().unwrap());
    let rx = common::read_master(master);
    let mut seen = String::new();
    let ready = wait_for(&rx, &mut seen, "READY");
    // The window enlarged (the emulator sets the size on its side).
    set_terminal_size(&writer, (50, 120));
    writer.write_all(b"go\n").unwrap();
    let sized = wait_for(&rx, &mut seen, "SIZE:");
    let status = ended_within(&mut child, Duration::from_secs(10));
    let after = size_of(&slave);
    assert!(
        ready && sized && status.is_some(),
        "the program did not run through: {seen}"
    );
    assert_eq!(
        after,
        (50, 120),
        "the caller's terminal's size after hermetic ended (the program said: {})",
        seen.split("SIZE:").nth(1).unwrap_or("").trim()
    );
}

/// The local modes (`c_lflag`) of the terminal of `fd`.
fn local_modes(fd: &impl AsRawFd) -> libc::tcflag_t {
    // SAFETY: termios is plain data, valid all zeroes.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a live terminal fd and termios.
    unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) };
    t.c_lflag
}

/// The attacker: none; the user. In an interactive bash: `hermetic run --
/// sh -c 'sleep 2; echo BGDONE' &`, then, in the foreground, a program
/// that puts the terminal in raw mode without echo (an editor, `less`,
/// a password prompt: here `stty raw -echo; head -c1`). hermetic puts
/// back the modes it found when it ends, with SIGTTOU blocked (so that a
/// background job is not stopped by it): it must not do so under the
/// foreground job. What should happen (and happens): the foreground
/// program's modes stay (no canonical mode nor echo within 10 s of
/// BGDONE).
#[test]
fn a_background_hermetic_run_leaves_the_foreground_job_s_modes_alone() {
    let (mut child, mut writer, rx, slave) = bash_on_terminal();
    let mut seen = String::new();
    writer
        .write_all(
            b"\"$H\" run -- sh -c 'sleep 2; echo BG\"\"DONE' & stty raw -echo; echo F\"\"G; head -c1 >/dev/null; stty sane; echo A\"\"FTER\n",
        )
        .unwrap();
    let fg = wait_for(&rx, &mut seen, "FG");
    let raw_before = local_modes(&slave) & (libc::ICANON | libc::ECHO) == 0;
    let done = wait_for(&rx, &mut seen, "BGDONE");
    // The background hermetic ends shortly after its program: its modes,
    // if it puts them, come then.
    let flipped = common::eventually(|| local_modes(&slave) & (libc::ICANON | libc::ECHO) != 0);
    let _ = writer.write_all(b"x");
    let after = wait_for(&rx, &mut seen, "AFTER");
    let _ = writer.write_all(b"exit\n");
    let _ = ended_within(&mut child, Duration::from_secs(10));
    assert!(
        fg && raw_before && done && after,
        "fg {fg}, raw {raw_before}, done {done}, after {after}: {seen}"
    );
    assert!(
        !flipped,
        "the background hermetic put canonical mode and echo back under the foreground program"
    );
}
