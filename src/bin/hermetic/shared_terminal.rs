//! The caller's terminal when several `hermetic` processes relay it at
//! once: `cargo nextest run` lists every test binary through its runner at
//! the same time, each with the terminal as stdin. Each relay puts the
//! terminal in raw mode while its program runs and its modes back at the
//! end; one that started while another had it raw would take the raw modes
//! for the caller's, and put them back last (found by a new user's trial:
//! the shell left without echo, 2 of 4 `cargo nextest run`s).
//!
//! So the relays of one terminal share a record: a file per user and
//! terminal (in `$XDG_RUNTIME_DIR`, else `/tmp`) holding the modes the
//! terminal had before the first of them changed it, and the relays that
//! hold it now (each a pid and that process's start time, so that a
//! relay killed before it could leave, or its pid taken by another
//! process, counts for none). An open-file-description lock on byte 0,
//! held exclusively, makes joining and leaving one at a time. The first to
//! join writes the modes; the last to leave puts them back and removes the
//! record.
//!
//! Who holds the record is written in it, not told by locks: a sandbox
//! with the read-only host sees the record as the host's file, and a lock
//! needs only a read-only open, so a process there could pass for a relay
//! (and the last one would leave the terminal raw), while it cannot write
//! the file. For the same reason the wait for byte 0 is bounded: a process
//! that holds it for good makes each relay act alone, not hang.

use std::fs::File;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

use rustix::termios::{LocalModes, SpecialCodeIndex, Termios};

/// Where the modes begin in the file (after the bytes that are locked).
const AT: u64 = 16;
const MAGIC: &[u8; 4] = b"HTM1";

/// The special characters kept in the record.
const CODES: [SpecialCodeIndex; 17] = [
    SpecialCodeIndex::VINTR,
    SpecialCodeIndex::VQUIT,
    SpecialCodeIndex::VERASE,
    SpecialCodeIndex::VKILL,
    SpecialCodeIndex::VEOF,
    SpecialCodeIndex::VTIME,
    SpecialCodeIndex::VMIN,
    SpecialCodeIndex::VSWTC,
    SpecialCodeIndex::VSTART,
    SpecialCodeIndex::VSTOP,
    SpecialCodeIndex::VSUSP,
    SpecialCodeIndex::VEOL,
    SpecialCodeIndex::VREPRINT,
    SpecialCodeIndex::VDISCARD,
    SpecialCodeIndex::VWERASE,
    SpecialCodeIndex::VLNEXT,
    SpecialCodeIndex::VEOL2,
];

/// This process's place among the relays of one terminal.
pub(super) struct Shared {
    file: File,
    path: std::path::PathBuf,
    me: Holder,
}

impl Shared {
    /// Joins the relays of `terminal`, whose modes are `now`: returns the
    /// modes it had before any of them changed it (`now` if this is the
    /// first), and the place to leave. `None` where no record can be kept
    /// (then this process does as if it were alone).
    pub(super) fn join(terminal: BorrowedFd<'_>, now: &Termios) -> (Option<Shared>, Termios) {
        let Some(me) = Holder::me() else {
            return (None, now.clone());
        };
        // The last relay to leave removes the record: one opened just
        // before is found unlinked once locked, and opened again.
        let mut opened = None;
        for _ in 0..3 {
            let Some((file, path)) = open_record(terminal) else {
                return (None, now.clone());
            };
            if !lock_byte_0(&file) {
                return (None, now.clone());
            }
            if file.metadata().is_ok_and(|m| m.nlink() > 0) {
                opened = Some((file, path));
                break;
            }
        }
        let Some((file, path)) = opened else {
            return (None, now.clone());
        };
        let recorded = read(&file, now);
        let mut holders = read_holders(&file);
        holders.retain(Holder::alive);
        let modes = if holders.is_empty() {
            // The first: the modes now are the caller's, unless a relay
            // killed before it could put them back left them raw.
            let left_raw = |t: &Termios| {
                !t.local_modes.contains(LocalModes::ICANON)
                    && !t.local_modes.contains(LocalModes::ECHO)
            };
            let modes = match recorded {
                Some(r) if left_raw(now) && !left_raw(&r) => r,
                _ => now.clone(),
            };
            write(&file, &modes);
            modes
        } else {
            recorded.unwrap_or_else(|| now.clone())
        };
        holders.push(me);
        let joined = holders.len() <= MAX_HOLDERS && write_holders(&file, &holders);
        unlock_byte_0(&file);
        if joined {
            (Some(Shared { file, path, me }), modes)
        } else {
            (None, modes)
        }
    }

    /// Leaves: true if no other relay of the terminal is left, so that
    /// the terminal's modes are to be put back now (true too if the
    /// record cannot be read: putting them back is the safe side).
    pub(super) fn leave(self) -> bool {
        if !lock_byte_0(&self.file) {
            return true;
        }
        let mut holders = read_holders(&self.file);
        holders.retain(|h| *h != self.me && h.alive());
        let last = holders.is_empty() || !write_holders(&self.file, &holders);
        if last {
            // No litter: a relay that opened it meanwhile sees it unlinked
            // once it has byte 0, and makes a new one.
            let _ = std::fs::remove_file(&self.path);
        }
        // Closing the file lets byte 0 go.
        last
    }
}

/// A relay of the terminal, as the record names it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Holder {
    pid: u32,
    /// When it started (`/proc/PID/stat`'s field 22, in clock ticks since
    /// boot): another process given the pid later started later.
    start: u64,
}

impl Holder {
    fn me() -> Option<Holder> {
        let pid = std::process::id();
        Some(Holder {
            pid,
            start: start_time(pid)?,
        })
    }

    /// The process still runs (the same one).
    fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }
}

/// When process `pid` started, from `/proc/PID/stat` (the fields after
/// the command's name, which may hold anything, are counted from its
/// closing parenthesis).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 22; the state (field 3) is the first after the name.
    after_name.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Takes byte 0 of the record, waiting 2 s at most (polling: an
/// unbounded `F_OFD_SETLKW` would wait for whatever holds it for good).
fn lock_byte_0(file: &File) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match super::sys::ofd_lock(file, 0, libc::F_WRLCK) {
            Ok(()) => return true,
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES))
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(_) => return false,
        }
    }
}

fn unlock_byte_0(file: &File) {
    let _ = super::sys::ofd_lock(file, 0, libc::F_UNLCK);
}

/// The record of `terminal` (this user's), if one can be kept safely: a
/// regular file of this user's alone, not reached through a link.
fn open_record(terminal: BorrowedFd<'_>) -> Option<(File, std::path::PathBuf)> {
    let stat = rustix::fs::fstat(terminal).ok()?;
    let uid = rustix::process::geteuid().as_raw();
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .filter(|d| {
            d.is_absolute() && std::fs::metadata(d).is_ok_and(|m| m.is_dir() && m.uid() == uid)
        })
        .unwrap_or_else(|| "/tmp".into());
    let path = dir.join(format!("hermetic-terminal-{uid}-{:x}", stat.st_rdev));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .ok()?;
    let meta = file.metadata().ok()?;
    (meta.is_file() && meta.uid() == uid && meta.mode() & 0o077 == 0).then_some((file, path))
}

/// Where the holders are written: their count (a `u32`), then each
/// one's pid (`u32`) and start time (`u64`).
const HOLDERS_AT: u64 = AT + 64;
/// The most holders a record names (a relay past them acts alone).
const MAX_HOLDERS: usize = 256;

/// The holders the record names (none if it names none, or makes no
/// sense).
fn read_holders(file: &File) -> Vec<Holder> {
    let mut count = [0u8; 4];
    if file.read_exact_at(&mut count, HOLDERS_AT).is_err() {
        return Vec::new();
    }
    let count = u32::from_le_bytes(count) as usize;
    if count > MAX_HOLDERS {
        return Vec::new();
    }
    let mut buf = vec![0u8; 12 * count];
    if file.read_exact_at(&mut buf, HOLDERS_AT + 4).is_err() {
        return Vec::new();
    }
    buf.chunks_exact(12)
        .map(|c| Holder {
            pid: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            start: u64::from_le_bytes([c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11]]),
        })
        .collect()
}

/// Writes `holders` as the record's: whether it was written.
fn write_holders(file: &File, holders: &[Holder]) -> bool {
    let mut buf = Vec::with_capacity(4 + 12 * holders.len());
    buf.extend_from_slice(&(holders.len() as u32).to_le_bytes());
    for h in holders {
        buf.extend_from_slice(&h.pid.to_le_bytes());
        buf.extend_from_slice(&h.start.to_le_bytes());
    }
    file.write_all_at(&buf, HOLDERS_AT).is_ok()
}

/// The modes recorded, laid over `like` (whose speeds they keep).
fn read(file: &File, like: &Termios) -> Option<Termios> {
    let mut buf = [0u8; 4 + 4 * 4 + 1 + CODES.len()];
    file.read_exact_at(&mut buf, AT).ok()?;
    if &buf[..4] != MAGIC {
        return None;
    }
    let word = |i: usize| {
        u32::from_le_bytes([
            buf[4 + 4 * i],
            buf[5 + 4 * i],
            buf[6 + 4 * i],
            buf[7 + 4 * i],
        ])
    };
    let mut t = like.clone();
    t.input_modes = rustix::termios::InputModes::from_bits_retain(word(0));
    t.output_modes = rustix::termios::OutputModes::from_bits_retain(word(1));
    t.control_modes = rustix::termios::ControlModes::from_bits_retain(word(2));
    t.local_modes = LocalModes::from_bits_retain(word(3));
    t.line_discipline = buf[20];
    for (i, code) in CODES.iter().enumerate() {
        t.special_codes[*code] = buf[21 + i];
    }
    Some(t)
}

/// Records `t`.
fn write(file: &File, t: &Termios) {
    let mut buf = Vec::with_capacity(4 + 4 * 4 + 1 + CODES.len());
    buf.extend_from_slice(MAGIC);
    for bits in [
        t.input_modes.bits(),
        t.output_modes.bits(),
        t.control_modes.bits(),
        t.local_modes.bits(),
    ] {
        buf.extend_from_slice(&bits.to_le_bytes());
    }
    buf.push(t.line_discipline);
    for code in CODES {
        buf.push(t.special_codes[code]);
    }
    let _ = file.write_all_at(&buf, AT);
}
