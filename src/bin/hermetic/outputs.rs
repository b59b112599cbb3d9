//! The program's stdout and stderr, handed on so that the program cannot
//! reach what hermetic was given through them.
//!
//! Through an fd, a program can open `/proc/self/fd/N` anew: the kernel
//! reopens the file on the host's own mount, whatever the sandbox's view
//! of it, and with the access asked for then. So a directory (`2<DIR`:
//! files made in it through `/proc/self/fd/2/NAME`) or a file opened
//! read-only (`1<FILE`: reopened for writing) is a way out of the sandbox;
//! a file opened for writing (`>FILE`, `>>LOG`) becomes a file to
//! truncate, or to read, or (as root) to change the mode and owner of; a
//! pipe or FIFO opens anew at its other end (the caller's output read back
//! and taken from its reader); a socket is the host's network's (a
//! datagram one sends anywhere). And whatever a kept sandbox leaves
//! running keeps the fds it was given: the caller's pipe (`out=$(hermetic
//! run ...)`, a runner reading the test's output) would not end when
//! hermetic does.
//!
//! So, for fds 1 and 2: a directory, or anything opened without write
//! access, is handed on as the read end of an empty pipe of hermetic's
//! (writes fail with `EBADF`, as they did); anything else but a terminal
//! (which [`relay`](super::relay) gives a pseudo-terminal of its own) and
//! `/dev/null` (which the sandbox's init process replaces with the
//! sandbox's own, a read-only mount) is handed on as a pipe that a thread
//! of hermetic's copies into it. What hermetic relays ends with hermetic:
//! a process the kept sandbox holds then writes into a pipe nobody reads
//! (`EPIPE`).
//!
//! Fds 1 and 2 that are one open file (`>log 2>&1`) share one pipe, so
//! that the program's writes to each land in the order made; the copying
//! is `read` and `write` ([`copy`]).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rustix::fs::FileType;

/// One of hermetic's fds handed on through a pipe.
struct Relayed {
    /// 1 or 2.
    fd: i32,
    /// The fd as hermetic was given it, put back at the end.
    saved: OwnedFd,
    /// The thread's: says when it has copied everything (the pipe ended),
    /// how far it has got, and a read end of the pipe; `None` for fd 2
    /// given the pipe of fd 1 (both were one open file).
    thread: Option<Copying>,
}

/// A relay thread, as the main thread waits for it.
struct Copying {
    done: mpsc::Receiver<()>,
    progress: Arc<Progress>,
}

/// How far a relay thread has got, in bytes.
#[derive(Default)]
struct Progress {
    /// Read from the program's pipe.
    read: AtomicU64,
    /// Gone on: written to hermetic's fd (or dropped, where it takes no
    /// more).
    passed: AtomicU64,
    /// A read end of the program's pipe, to ask what it holds (FIONREAD):
    /// the thread lets it go when it ends, so that the pipe then has no
    /// reader left (the program's next write fails, as it would have).
    unread: std::sync::Mutex<Option<OwnedFd>>,
}

impl Progress {
    /// What the program's pipe holds now.
    fn unread(&self) -> u64 {
        let unread = self.unread.lock().unwrap_or_else(|e| e.into_inner());
        unread
            .as_ref()
            .and_then(|fd| rustix::io::ioctl_fionread(fd).ok())
            .map_or(0, u64::from)
    }
}

/// hermetic's stdout and stderr as the program is given them. Dropped
/// without [`finish`](Outputs::finish) (hermetic ends before its program
/// ran), it puts them back all the same, with what hermetic said meanwhile.
pub(super) struct Outputs {
    relayed: Vec<Relayed>,
}

impl Outputs {
    /// Makes fds 1 and 2 of this process what the program is to get
    /// (module docs).
    pub(super) fn hand_on() -> io::Result<Outputs> {
        let mut relayed: Vec<Relayed> = Vec::new();
        for fd in [1, 2] {
            if fd == 2
                && let Some(out) = relayed.first()
                && same_open_file(out.saved.as_fd(), 2)
            {
                // `>FILE 2>&1`: one pipe for both, as one file takes both
                // outside, so that what the program writes to each lands in
                // the order written, each write where the last one ended.
                relayed.push(share_pipe_of_1(2)?);
                continue;
            }
            let borrowed = stdio(fd);
            let Ok(stat) = rustix::fs::fstat(borrowed) else {
                // Not open: nothing to hand on.
                continue;
            };
            let writable = rustix::fs::fcntl_getfl(borrowed).is_ok_and(|f| {
                f.contains(rustix::fs::OFlags::WRONLY) || f.contains(rustix::fs::OFlags::RDWR)
            });
            let kind = FileType::from_raw_mode(stat.st_mode);
            match kind {
                // A terminal is the terminal relay's; /dev/null is no way
                // out.
                FileType::CharacterDevice
                    if super::input::is_null(&stat) || rustix::termios::isatty(borrowed) => {}
                FileType::Directory => dead_end_in_place_of(fd)?,
                _ if !writable => dead_end_in_place_of(fd)?,
                // A file, a device, a pipe or FIFO (which opens anew at its
                // other end: the caller's output read back, or taken from
                // its reader), a socket (a datagram one sends anywhere).
                _ => relayed.push(relay(fd, kind)?),
            }
        }
        Ok(Outputs { relayed })
    }

    /// Puts fds 1 and 2 back, and waits for what the program wrote to go
    /// on (see the drop).
    pub(super) fn finish(self) {}
}

impl Drop for Outputs {
    fn drop(&mut self) {
        for r in &self.relayed {
            // This process's own write end goes: only the program's
            // processes hold the pipe now.
            let _ = dup2(&r.saved, r.fd);
        }
        // Everything the program (and, but where the sandbox is kept, every
        // process inside, all ended now) wrote goes on, however slowly it
        // is read (as it would have, the program waiting): the relay ends
        // at the pipe's end, or, where what a kept sandbox left running
        // holds the pipe, once what was there now has gone on.
        for c in self.relayed.iter().filter_map(|r| r.thread.as_ref()) {
            let there = c.progress.read.load(Ordering::SeqCst) + c.progress.unread();
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                c.done.recv_timeout(Duration::from_millis(50))
            {
                if c.progress.passed.load(Ordering::SeqCst) >= there {
                    break;
                }
            }
        }
    }
}

/// Makes `fd` the read end of an empty pipe whose write end is closed:
/// no file of the host's (not even its `/dev/null`, whose mode, owner and
/// times root inside could change through it), and writes to it fail with
/// `EBADF`, as they did to a file opened read-only.
fn dead_end_in_place_of(fd: i32) -> io::Result<()> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    drop(write);
    dup2(&read, fd)
}

/// Fd `fd` of this process, 1 or 2 (which std holds open for the whole
/// process: this module only ever replaces them, with `dup2`).
fn stdio(fd: i32) -> BorrowedFd<'static> {
    if fd == 1 {
        rustix::stdio::stdout()
    } else {
        rustix::stdio::stderr()
    }
}

/// `dup2(from, to)`: `to` (1 or 2) becomes a copy of `from`, open across
/// exec.
fn dup2(from: &impl AsFd, to: i32) -> io::Result<()> {
    if to == 1 {
        rustix::stdio::dup2_stdout(from)?;
    } else {
        rustix::stdio::dup2_stderr(from)?;
    }
    Ok(())
}

/// Hands `fd` (of `kind`) on as a pipe whose other end a thread copies
/// into it.
fn relay(fd: i32, kind: FileType) -> io::Result<Relayed> {
    let saved = rustix::io::fcntl_dupfd_cloexec(stdio(fd), 3)?;
    let target = std::fs::File::from(saved.try_clone()?);
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    dup2(&write, fd)?;
    drop(write);
    let (tell, done) = mpsc::channel();
    let progress = Arc::new(Progress {
        unread: std::sync::Mutex::new(Some(rustix::io::fcntl_dupfd_cloexec(&read, 3)?)),
        ..Progress::default()
    });
    let counted = Arc::clone(&progress);
    super::relay::hermetic_thread("hermetic-output", move || {
        // Output that cannot go on: into a file (full, gone), dropped,
        // so the program is not stopped by a full pipe; into a pipe or a
        // socket whose reader has gone, the program's pipe is closed, and
        // its next write fails with EPIPE (SIGPIPE), as it would have.
        let drain = matches!(kind, FileType::RegularFile | FileType::BlockDevice);
        copy(
            &mut std::fs::File::from(read),
            &mut { target },
            drain,
            &counted,
        );
        drop(
            counted
                .unread
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let _ = tell.send(());
    })?;
    Ok(Relayed {
        fd,
        saved,
        thread: Some(Copying { done, progress }),
    })
}

/// Whether fd `fd` of this process is the open file `other` is (the same
/// file, opened with the same flags: `2>&1`, or the caller's own stdout
/// and stderr that are one file).
fn same_open_file(other: BorrowedFd<'_>, fd: i32) -> bool {
    let borrowed = stdio(fd);
    let (Ok(a), Ok(b)) = (rustix::fs::fstat(other), rustix::fs::fstat(borrowed)) else {
        return false;
    };
    // What tells where a write lands: the access mode and O_APPEND (not
    // O_LARGEFILE, which open gives and pipe does not: `2>/dev/stdout`).
    let flags = |f| {
        rustix::fs::fcntl_getfl(f)
            .ok()
            .map(|f| f & (rustix::fs::OFlags::ACCMODE | rustix::fs::OFlags::APPEND))
    };
    (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) && flags(other) == flags(borrowed)
}

/// Hands `fd` on as fd 1 is handed on: the same pipe.
fn share_pipe_of_1(fd: i32) -> io::Result<Relayed> {
    let saved = rustix::io::fcntl_dupfd_cloexec(stdio(fd), 3)?;
    dup2(&stdio(1), fd)?;
    Ok(Relayed {
        fd,
        saved,
        thread: None,
    })
}

/// Copies what comes through `from` into `to` until `from` ends, with
/// read and write: not `io::copy`, whose `splice` into a file takes and
/// sets the file's offset without the lock that `write` takes, so that
/// what the caller wrote through another fd of the same open file meanwhile
/// (cargo's own lines between two test binaries) was written over.
fn copy(from: &mut std::fs::File, to: &mut std::fs::File, drain: bool, progress: &Progress) {
    use std::io::{Read, Write};
    let mut buffer = vec![0u8; 64 << 10];
    let mut gone_on = true;
    loop {
        match from.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                progress.read.fetch_add(n as u64, Ordering::SeqCst);
                if gone_on && to.write_all(&buffer[..n]).is_err() {
                    if !drain {
                        return;
                    }
                    gone_on = false;
                }
                progress.passed.fetch_add(n as u64, Ordering::SeqCst);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
