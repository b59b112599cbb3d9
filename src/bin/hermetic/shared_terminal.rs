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
//! terminal had before the first of them changed it. Open-file-description
//! locks on it (gone with the process, however it ends) tell who relays
//! it: each holds a shared lock on byte 1 for as long as it does, and
//! byte 0, held exclusively, makes joining and leaving one at a time. The
//! first to join writes the modes; the last to leave puts them back and
//! removes the record.

use std::fs::File;
use std::io;
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
}

impl Shared {
    /// Joins the relays of `terminal`, whose modes are `now`: returns the
    /// modes it had before any of them changed it (`now` if this is the
    /// first), and the place to leave. `None` where no record can be kept
    /// (then this process does as if it were alone).
    pub(super) fn join(terminal: BorrowedFd<'_>, now: &Termios) -> (Option<Shared>, Termios) {
        // The last relay to leave removes the record: one opened just
        // before is found unlinked once locked, and opened again.
        let mut opened = None;
        for _ in 0..3 {
            let Some((file, path)) = open_record(terminal) else {
                return (None, now.clone());
            };
            if lock(&file, 0, libc::F_WRLCK, true).is_err() {
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
        let modes = if relayed_by_another(&file) {
            recorded.unwrap_or_else(|| now.clone())
        } else {
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
        };
        let joined = lock(&file, 1, libc::F_RDLCK, false).is_ok();
        let _ = lock(&file, 0, libc::F_UNLCK, true);
        if joined {
            (Some(Shared { file, path }), modes)
        } else {
            (None, modes)
        }
    }

    /// Leaves: true if no other relay of the terminal is left, so that
    /// the terminal's modes are to be put back now.
    pub(super) fn leave(self) -> bool {
        let _ = lock(&self.file, 0, libc::F_WRLCK, true);
        let _ = lock(&self.file, 1, libc::F_UNLCK, false);
        let last = !relayed_by_another(&self.file);
        if last {
            // No litter: a relay that opened it meanwhile sees it unlinked
            // once it has byte 0, and makes a new one.
            let _ = std::fs::remove_file(&self.path);
        }
        // Closing the file lets byte 0 go.
        last
    }
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

/// An open-file-description lock of `kind` on byte `byte` of `file`
/// (waiting for it if `wait`).
fn lock(file: &File, byte: i64, kind: libc::c_int, wait: bool) -> io::Result<()> {
    super::sys::ofd_lock(file, byte, kind, wait)
}

/// Another process holds byte 1 of the record: it relays the terminal.
fn relayed_by_another(file: &File) -> bool {
    super::sys::ofd_locked_elsewhere(file, 1)
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
