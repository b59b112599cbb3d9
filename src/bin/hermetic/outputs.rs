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
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::fs::FileType;

/// One of hermetic's fds handed on through a pipe.
struct Relayed {
    /// 1 or 2.
    fd: i32,
    /// The fd as hermetic was given it, put back at the end.
    saved: OwnedFd,
    /// Says when the thread has copied everything (the pipe ended); `None`
    /// for fd 2 given the pipe of fd 1 (both were one open file).
    done: Option<mpsc::Receiver<()>>,
}

/// hermetic's stdout and stderr as the program is given them. Dropped
/// without [`finish`](Outputs::finish) (hermetic ends before its program
/// ran), it puts them back all the same, with what hermetic said meanwhile.
pub(super) struct Outputs {
    relayed: Vec<Relayed>,
    kept: bool,
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
        Ok(Outputs {
            relayed,
            kept: false,
        })
    }

    /// Puts fds 1 and 2 back, and waits for what the program wrote to be
    /// copied: until the pipes end, which they do at once when every
    /// process inside has ended; in a kept sandbox, what is left may hold
    /// them, so for 250 ms at most.
    pub(super) fn finish(mut self, kept: bool) {
        self.kept = kept;
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        let kept = self.kept;
        for r in &self.relayed {
            // This process's own write end goes: only the program's
            // processes hold the pipe now.
            let _ = dup2(&r.saved, r.fd);
        }
        let bound = if kept {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(2)
        };
        let deadline = Instant::now() + bound;
        for done in self.relayed.iter().filter_map(|r| r.done.as_ref()) {
            let _ = done.recv_timeout(deadline.saturating_duration_since(Instant::now()));
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
    super::relay::hermetic_thread("hermetic-output", move || {
        // Output that cannot go on: into a file (full, gone), dropped,
        // so the program is not stopped by a full pipe; into a pipe or a
        // socket whose reader has gone, the program's pipe is closed, and
        // its next write fails with EPIPE (SIGPIPE), as it would have.
        let drain = matches!(kind, FileType::RegularFile | FileType::BlockDevice);
        copy(&mut std::fs::File::from(read), &mut { target }, drain);
        let _ = tell.send(());
    })?;
    Ok(Relayed {
        fd,
        saved,
        done: Some(done),
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
    let flags = |f| rustix::fs::fcntl_getfl(f).ok();
    (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) && flags(other) == flags(borrowed)
}

/// Hands `fd` on as fd 1 is handed on: the same pipe.
fn share_pipe_of_1(fd: i32) -> io::Result<Relayed> {
    let saved = rustix::io::fcntl_dupfd_cloexec(stdio(fd), 3)?;
    dup2(&stdio(1), fd)?;
    Ok(Relayed {
        fd,
        saved,
        done: None,
    })
}

/// Copies what comes through `from` into `to` until `from` ends, with
/// read and write: not `io::copy`, whose `splice` into a file takes and
/// sets the file's offset without the lock that `write` takes, so that
/// what the caller wrote through another fd of the same open file meanwhile
/// (cargo's own lines between two test binaries) was written over.
fn copy(from: &mut std::fs::File, to: &mut std::fs::File, drain: bool) {
    use std::io::{Read, Write};
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    if drain {
                        let _ = io::copy(from, &mut io::sink());
                    }
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
