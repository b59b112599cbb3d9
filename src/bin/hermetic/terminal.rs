//! The caller's terminal: put back as it was when the program ends, where
//! the program was given it itself (no pseudo-terminal of its own could be
//! made: see `relay`, which otherwise puts back what it changed).

use std::os::fd::BorrowedFd;

use rustix::termios::{Action, OptionalActions, Termios, tcflow, tcgetattr, tcsetattr};

/// The modes of the first of fds 0, 1 and 2 that is a terminal, and
/// the status flags of the open file of each of them that is one.
pub(super) struct Saved {
    modes: Option<(BorrowedFd<'static>, Termios)>,
    size: Option<rustix::termios::Winsize>,
    flags: Vec<(BorrowedFd<'static>, rustix::fs::OFlags)>,
}

impl Saved {
    pub(super) fn now() -> Saved {
        use rustix::stdio::{stderr, stdin, stdout};
        let terminals: Vec<(BorrowedFd<'static>, Termios)> = [stdin(), stdout(), stderr()]
            .into_iter()
            .filter_map(|fd| tcgetattr(fd).ok().map(|t| (fd, t)))
            .collect();
        Saved {
            modes: terminals.first().cloned(),
            size: terminals
                .first()
                .and_then(|(fd, _)| rustix::termios::tcgetwinsize(fd).ok()),
            flags: terminals
                .iter()
                .filter_map(|(fd, _)| rustix::fs::fcntl_getfl(fd).ok().map(|f| (*fd, f)))
                .collect(),
        }
    }
}

impl Saved {
    /// The program has a terminal of its own (the relay's): it cannot
    /// change the caller's, whose modes only the relay changes (and puts
    /// back itself, in the foreground only): nothing to put back here. A
    /// size that differs at the end is the user's (a window resized
    /// meanwhile); modes that differ in the background are the
    /// foreground job's.
    pub(super) fn left_to_the_relay(&mut self) {
        self.modes = None;
        self.size = None;
        self.flags.clear();
    }
}

impl Drop for Saved {
    /// A program may leave the terminal without echo, in raw mode, with
    /// another size, or with its output suspended (`tcflow(TCOOFF)`),
    /// which would stop the caller's shell: its modes and size go back,
    /// and output resumes. Its open files (the caller's shell's,
    /// shared) get their status flags back: a program that left
    /// `O_NONBLOCK` on them would have the shell's next read fail with
    /// `EAGAIN`.
    fn drop(&mut self) {
        for (fd, flags) in &self.flags {
            let _ = rustix::fs::fcntl_setfl(fd, *flags);
        }
        if let Some((fd, t)) = &self.modes {
            // SIGTTOU is blocked meanwhile: a hermetic in a background
            // job would otherwise be stopped by it, for good.
            let blocked = super::sys::block(super::sys::Signals::One(libc::SIGTTOU));
            let _ = tcflow(fd, Action::OOn);
            let _ = tcsetattr(fd, OptionalActions::Now, t);
            // Its size too, if the program changed it (setting it
            // signals the foreground job, so only then).
            if let Some(size) = &self.size
                && rustix::termios::tcgetwinsize(fd)
                    .is_ok_and(|now| (now.ws_row, now.ws_col) != (size.ws_row, size.ws_col))
            {
                let _ = rustix::termios::tcsetwinsize(fd, *size);
            }
            drop(blocked);
        }
    }
}
