//! The program's stdin, handed on so that the program cannot reach what
//! hermetic was given through it, and takes from it no more than it reads.
//!
//! Through an fd, a program can open `/proc/self/fd/0` anew: the kernel
//! reopens a host file on the host's own mount, with the access asked for
//! then (a file given for reading is opened for writing), and a pipe or a
//! FIFO at its other end: what the program writes into the caller's pipe
//! is read by whoever reads it next (a shell reading its script from a
//! pipe, as a CI runner feeds a job to `bash`, runs it as the script's
//! next lines, outside the sandbox). So stdin is handed on as a pipe of
//! hermetic's, which a thread fills:
//!
//! - from a file or block device, with `pread` from where the caller's
//!   file stood; once the program has ended, the caller's file is put where
//!   the program's reading left it (what hermetic read ahead, and the
//!   program did not, is given back), so that `while read l; do hermetic
//!   run ...; done <FILE` goes on to the next line, as without hermetic;
//! - from a pipe or FIFO, with `tee` (which copies without taking), into a
//!   pipe of one page, which is writable only when empty: what the program
//!   has read is then taken from the caller's pipe, and the next page
//!   copied; what is left in the caller's pipe at the end is what the
//!   program did not read, as without hermetic;
//! - from a socket or a device other than a terminal, by reading it (what
//!   is read ahead is the program's).
//!
//! A directory becomes an empty pipe (which ends at once); a terminal (the
//! relay's: see [`relay`](super::relay)) and `/dev/null` (which the
//! sandbox's init process replaces with the sandbox's own, a read-only
//! mount) are passed as they are.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::thread::JoinHandle;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::FileType;

/// How the caller's stdin reaches the program.
pub(super) struct Input {
    /// The thread that fills the program's pipe, told to stop when this
    /// end is dropped; `None` where stdin is passed as it is.
    pump: Option<(OwnedFd, JoinHandle<()>)>,
}

impl Input {
    /// Makes fd 0 of this process what the program is to get (module docs).
    pub(super) fn hand_on() -> io::Result<Input> {
        let stdin = rustix::stdio::stdin();
        let Ok(stat) = rustix::fs::fstat(stdin) else {
            // No stdin at all: nothing to hand on.
            return Ok(Input { pump: None });
        };
        // Not open for reading (`0>&1`): reads fail with EBADF, as they did,
        // from the write end of a pipe of hermetic's.
        let readable = rustix::fs::fcntl_getfl(stdin)
            .is_ok_and(|f| f & rustix::fs::OFlags::ACCMODE != rustix::fs::OFlags::WRONLY);
        if !readable {
            let (_read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
            rustix::stdio::dup2_stdin(&write)?;
            return Ok(Input { pump: None });
        }
        let source = match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
                drop(write);
                rustix::stdio::dup2_stdin(&read)?;
                return Ok(Input { pump: None });
            }
            FileType::CharacterDevice if is_null(&stat) || rustix::termios::isatty(stdin) => {
                return Ok(Input { pump: None });
            }
            FileType::RegularFile | FileType::BlockDevice => Source::File,
            FileType::Fifo => Source::Pipe,
            _ => Source::Stream,
        };
        let caller = rustix::io::fcntl_dupfd_cloexec(stdin, 3)?;
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        // The pump never blocks on it: it waits for room, or to be told to
        // stop, with poll.
        rustix::fs::fcntl_setfl(&write, rustix::fs::OFlags::NONBLOCK)?;
        if matches!(source, Source::Pipe) {
            // One page: writable only when empty (see the module docs).
            rustix::pipe::fcntl_setpipe_size(&write, PAGE)?;
        }
        // The pump's copy of the read end: how much the program has not
        // read yet (FIONREAD), whoever else holds it.
        let unread = rustix::io::fcntl_dupfd_cloexec(&read, 3)?;
        let (stop_read, stop) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        rustix::stdio::dup2_stdin(&read)?;
        drop(read);
        let pump = super::relay::hermetic_thread("hermetic-stdin", move || {
            let pumping = Pumping {
                caller,
                to: Some(write),
                unread,
                stop: stop_read,
            };
            match source {
                Source::File => pumping.file(),
                Source::Pipe => pumping.pipe(),
                Source::Stream => pumping.stream(),
            }
        })?;
        Ok(Input {
            pump: Some((stop, pump)),
        })
    }
}

impl Drop for Input {
    /// The program has ended (or never started): the pump gives back what
    /// it read ahead where it can, and ends.
    fn drop(&mut self) {
        if let Some((stop, pump)) = self.pump.take() {
            drop(stop);
            let _ = pump.join();
        }
    }
}

const PAGE: usize = 4096;

enum Source {
    File,
    Pipe,
    Stream,
}

/// The pump's fds.
struct Pumping {
    /// The caller's stdin (a copy: the same open file).
    caller: OwnedFd,
    /// The write end of the program's pipe, closed when the caller's input
    /// has ended (the program then reads to its end).
    to: Option<OwnedFd>,
    /// A read end of it.
    unread: OwnedFd,
    /// Hung up when the pump is to stop.
    stop: OwnedFd,
}

impl Pumping {
    /// Waits until `fd` has `events` (or is hung up) or the pump is told
    /// to stop: false if told to stop.
    fn wait(&self, fd: BorrowedFd<'_>, events: PollFlags) -> bool {
        loop {
            let mut polled = [
                PollFd::new(&fd, events),
                PollFd::new(&self.stop, PollFlags::IN),
            ];
            match rustix::event::poll(&mut polled, None) {
                Ok(_) if !polled[1].revents().is_empty() => return false,
                Ok(_) if !polled[0].revents().is_empty() => return true,
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return false,
            }
        }
    }

    /// Waits until the program's pipe has room: false if told to stop, or
    /// if the caller's input has ended.
    fn room(&self) -> bool {
        self.to
            .as_ref()
            .is_some_and(|to| self.wait(to.as_fd(), PollFlags::OUT))
    }

    /// Writes what it can of `bytes` into the program's pipe (which does
    /// not block: see [`Input::hand_on`]): how much; `None` if the pipe is
    /// gone.
    fn write(&self, bytes: &[u8]) -> Option<usize> {
        match rustix::io::write(self.to.as_ref()?, bytes) {
            Ok(n) => Some(n),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Some(0),
            Err(_) => None,
        }
    }

    /// Bytes written into the program's pipe that it has not read.
    fn unread(&self) -> usize {
        rustix::io::ioctl_fionread(&self.unread).map_or(0, |n| n as usize)
    }

    /// The caller's input has ended: the program reads to the end of what
    /// it was given, and the pump waits to be told to stop.
    fn ended(&mut self) {
        self.to = None;
        let mut polled = [PollFd::new(&self.stop, PollFlags::IN)];
        while rustix::event::poll(&mut polled, None) == Err(rustix::io::Errno::INTR) {}
    }

    /// From a file, with `pread` from where it stood; then puts the file
    /// where the program's reading left it.
    fn file(mut self) {
        let Ok(start) = rustix::fs::seek(&self.caller, rustix::fs::SeekFrom::Current(0)) else {
            // Not seekable after all: read as a stream.
            return self.stream();
        };
        let mut buffer = vec![0u8; 64 << 10];
        let mut pumped: u64 = 0;
        loop {
            if !self.room() {
                break;
            }
            match rustix::io::pread(&self.caller, &mut buffer, start + pumped) {
                Ok(0) => {
                    self.ended();
                    break;
                }
                Ok(n) => match self.write(&buffer[..n]) {
                    Some(written) => pumped += written as u64,
                    None => break,
                },
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => {
                    self.ended();
                    break;
                }
            }
        }
        let read = pumped.saturating_sub(self.unread() as u64);
        let _ = rustix::fs::seek(&self.caller, rustix::fs::SeekFrom::Start(start + read));
    }

    /// From a pipe or FIFO: `tee` a page into the program's one-page pipe
    /// once it is empty, and take from the caller's pipe what the program
    /// has read.
    fn pipe(mut self) {
        // What was copied into the program's pipe and is still in the
        // caller's.
        let mut copied = 0usize;
        loop {
            if copied > 0 {
                // Writable once empty: the program has read it all.
                if !self.room() || !take(&self.caller, copied) {
                    break;
                }
                copied = 0;
            }
            if !self.wait(self.caller.as_fd(), PollFlags::IN) {
                break;
            }
            let Some(to) = &self.to else { break };
            match rustix::pipe::tee(&self.caller, to, PAGE, rustix::pipe::SpliceFlags::NONBLOCK) {
                Ok(0) => {
                    self.ended();
                    break;
                }
                Ok(n) => copied = n,
                // The program's pipe is not empty: what is there the
                // program wrote into it itself (through /proc/self/fd/0),
                // and is its own to read.
                Err(rustix::io::Errno::AGAIN) => {
                    if !self.room() {
                        break;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => {
                    self.ended();
                    break;
                }
            }
        }
        // What the program read of the last page is the caller's no more.
        let read = copied.saturating_sub(self.unread());
        if read > 0 {
            take(&self.caller, read);
        }
    }

    /// From a socket or a device: read, and written on as the program
    /// takes it.
    fn stream(mut self) {
        let mut buffer = vec![0u8; 64 << 10];
        while self.wait(self.caller.as_fd(), PollFlags::IN) {
            let n = match rustix::io::read(&self.caller, &mut buffer) {
                Ok(0) => {
                    self.ended();
                    return;
                }
                Ok(n) => n,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    self.ended();
                    return;
                }
            };
            let mut rest = &buffer[..n];
            while !rest.is_empty() {
                if !self.room() {
                    return;
                }
                match self.write(rest) {
                    Some(written) => rest = &rest[written..],
                    None => return,
                }
            }
        }
    }
}

/// Takes `n` bytes, which `tee` copied and so are there, from the caller's
/// pipe; false if they are not (another reader took them), after 100 ms.
fn take(caller: &OwnedFd, mut n: usize) -> bool {
    let mut buffer = [0u8; PAGE];
    while n > 0 {
        let mut polled = [PollFd::new(caller, PollFlags::IN)];
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        match rustix::event::poll(&mut polled, Some(&timeout)) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
        match rustix::io::read(caller, &mut buffer[..n.min(PAGE)]) {
            Ok(0) => return false,
            Ok(got) => n -= got,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Whether `stat` is of `/dev/null` (character device 1, 3; block device
/// 1, 3 is a RAM disk).
pub(super) fn is_null(stat: &rustix::fs::Stat) -> bool {
    let rdev = stat.st_rdev;
    rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::CharacterDevice
        && rustix::fs::major(rdev) == 1
        && rustix::fs::minor(rdev) == 3
}
