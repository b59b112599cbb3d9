//! A terminal of the program's own: when `hermetic run` or `hermetic
//! enter` is given a terminal, its program gets a new pseudo-terminal
//! instead, whose other side this process relays to the caller's.
//!
//! Why: a program handed the caller's terminal itself could change it
//! for the caller. Its modes are the terminal's, not the program's: a
//! program that remapped the interrupt character (`stty intr a`) had an
//! ordinary `a` typed afterwards send `SIGINT` to the caller's foreground
//! job (the caller's script, `cargo`), outside; a size it set sent
//! `SIGWINCH` there. On a terminal of its own the program may do anything
//! to its terminal (modes, size, flow control, `TIOCSTI` where the filter
//! did not refuse it): it reaches the sandbox's foreground job only. And
//! it leads a session whose controlling terminal that is (see
//! `wire::ARG_TERMINAL`): a shell inside has job control.
//!
//! The caller's terminal is put in raw mode once the program has its
//! terminal (what is typed goes to the program's terminal as it is, which
//! echoes and edits it as its modes say; what the program writes reaches
//! the caller's terminal as the program's terminal made it, translated
//! once), except that it keeps generating the caller's signals where it
//! did and the program's terminal does too (`ISIG`): Ctrl-C interrupts
//! the caller's foreground job (`cargo`, a script, this process) as
//! before, and this process types the program's interrupt character into
//! the program's terminal, which interrupts the sandbox's foreground job.
//! A program that turns its terminal's signals off (an editor in raw
//! mode) gets Ctrl-C as a byte, as it would outside; one that turns them
//! on cannot turn on the caller's, if the caller had them off. Ctrl-Z
//! stops this process (the caller's terminal put back first, the program
//! running on), where a job-control shell can continue it (not where its
//! group is orphaned: there, as the kernel does, it is ignored); when
//! continued in the foreground, the caller's terminal is put in the
//! relay's mode again. In the background (`hermetic run ... &`,
//! or after `bg`) the caller's terminal is left to the caller's shell:
//! nothing typed is read, no mode is changed.
//!
//! The relay is one thread: it copies what is typed to the program's
//! terminal and what the program writes to the caller's, passes on a
//! resize, and ends once told that the program has ended (and with it
//! every process of the sandbox), after the last byte: when the program's
//! terminal has no other side left, or, for a kept sandbox, whose
//! processes may write on, after at most a quarter of a second. The
//! program's terminal stays open until then, whether or not the program
//! still uses it: closing it would hang it up (`SIGHUP`).

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::termios::{LocalModes, OptionalActions, SpecialCodeIndex, Termios};

/// What the relay's wake pipe carries besides signal numbers: the program
/// has ended and every process of the sandbox with it (relay what is left,
/// then end), or the sandbox is kept (relay what is there now, then end);
/// the program has its terminal (engage the caller's).
const FINISH: u8 = 0xFF;
const FINISH_KEPT: u8 = 0xFE;
const ENGAGE: u8 = 0xFD;

/// How long the relay waits, once told to finish, for the program's
/// terminal to say it has no other side left: the sandbox is gone by
/// then, so this bounds a case that should not happen.
const FINISH_WITHIN: Duration = Duration::from_secs(2);

/// With the sandbox kept, the program's terminal is relayed until it has
/// been this long without output, or for [`KEPT_AT_MOST`] (what is left
/// in a kept sandbox may write for ever).
const KEPT_QUIET: Duration = Duration::from_millis(50);
const KEPT_AT_MOST: Duration = Duration::from_millis(250);

/// In the background, how often the relay looks whether it is in the
/// foreground again: a shell's `fg` of a job that runs (after `bg`, or
/// started with `&`) sends it no signal, only hands it the terminal.
const BACKGROUND_LOOK: Duration = Duration::from_millis(100);

/// The relay: its thread, and what it needs until the program has its
/// terminal.
pub(super) struct Relay {
    /// The program's side, until the sandbox is built (the init process
    /// then holds it).
    slave: Option<OwnedFd>,
    /// The program's fds 0 to 2: the slave where the caller's is a
    /// terminal.
    stdio: [RawFd; 3],
    /// Writes to the relay's wake pipe.
    tell: OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// A pseudo-terminal for the program if any of this process's fds 0
    /// to 2 is a terminal (`Ok(None)` if none is), made like the first of
    /// them (modes and size), and the relay's thread started. `Err`: no
    /// pseudo-terminal could be made here.
    pub(super) fn start() -> std::io::Result<Option<Relay>> {
        use rustix::stdio::{stderr, stdin, stdout};
        let fds = [stdin(), stdout(), stderr()];
        let is_terminal = fds.map(rustix::termios::isatty);
        let Some(first) = (0..3).find(|&i| is_terminal[i]) else {
            return Ok(None);
        };
        let outer = fds[first];
        let modes = rustix::termios::tcgetattr(outer)?;
        // Relayed by other hermetic processes too (`cargo nextest run`
        // lists every test binary through its runner at once): the modes
        // the caller had before the first of them changed them.
        let (shared, modes) = if is_terminal[0] {
            super::shared_terminal::Shared::join(fds[0], &modes)
        } else {
            (None, modes)
        };
        let size = rustix::termios::tcgetwinsize(outer).ok();
        use rustix::pty::OpenptFlags;
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let master = rustix::pty::openpt(flags)?;
        rustix::pty::grantpt(&master)?;
        rustix::pty::unlockpt(&master)?;
        let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags)?;
        rustix::termios::tcsetattr(&slave, OptionalActions::Now, &modes)?;
        if let Some(size) = size {
            rustix::termios::tcsetwinsize(&slave, size)?;
        }
        rustix::fs::fcntl_setfl(&master, rustix::fs::OFlags::NONBLOCK)?;
        let (wake, tell) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        rustix::fs::fcntl_setfl(&tell, rustix::fs::OFlags::NONBLOCK)?;
        let signals = rustix::io::fcntl_dupfd_cloexec(&tell, 3)?;
        // What is typed is relayed if stdin is a terminal; what the program
        // writes goes to the first of stdout and stderr that is one (else
        // to stdin's terminal: its echo).
        let input = is_terminal[0].then_some(fds[0]);
        let output = [1, 2, 0]
            .into_iter()
            .find(|&i| is_terminal[i])
            .map_or(outer, |i| fds[i]);
        let relay = Serve {
            master: Some(master),
            wake,
            input,
            output,
            raw: input.map(|fd| (fd, modes.clone(), raw_like(&modes))),
            engaged: false,
            modes_set: false,
            foreground: input.is_some_and(in_foreground),
            isig: modes.local_modes.contains(LocalModes::ISIG),
            pending: Vec::new(),
            finish: None,
            shared,
        };
        let stdio = std::array::from_fn(|i| {
            if is_terminal[i] {
                slave.as_raw_fd()
            } else {
                i as RawFd
            }
        });
        let thread = hermetic_thread("hermetic-terminal", move || {
            let mut relay = relay;
            relay.serve();
        })?;
        super::signals::to_relay(signals);
        Ok(Some(Relay {
            slave: Some(slave),
            stdio,
            tell,
            thread: Some(thread),
        }))
    }

    /// Where the program's terminal is on the host (`/dev/pts/N`), while
    /// this process holds it.
    pub(super) fn terminal_path(&self) -> Option<std::path::PathBuf> {
        let slave = self.slave.as_ref()?;
        std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).ok()
    }

    /// The fds the program gets as its 0 to 2.
    pub(super) fn stdio(&self) -> [RawFd; 3] {
        self.stdio
    }

    /// The program's stdin, stdout and stderr for a `Command`: its
    /// terminal where this process's is one (inherited elsewhere).
    pub(super) fn stdio_for_command(&self) -> std::io::Result<[Option<OwnedFd>; 3]> {
        let mut fds = [None, None, None];
        if let Some(slave) = &self.slave {
            for (i, fd) in fds.iter_mut().enumerate() {
                if self.stdio[i] == slave.as_raw_fd() {
                    *fd = Some(slave.try_clone()?);
                }
            }
        }
        Ok(fds)
    }

    /// The sandbox is built: its init process holds the program's
    /// terminal, this process no longer does (so that the terminal's end
    /// is seen once every process inside is gone); the caller's terminal
    /// now goes into the relay's mode, and what is typed there is relayed.
    pub(super) fn handed_over(&mut self) {
        self.slave = None;
        let _ = rustix::io::write(&self.tell, &[ENGAGE]);
    }

    /// Relays what is left (all of it: every process of the sandbox has
    /// ended; or, `kept`, what is there now, the sandbox's processes
    /// living on) and waits for the relay to end.
    pub(super) fn finish(mut self, kept: bool) {
        self.end(kept);
    }

    fn end(&mut self, kept: bool) {
        self.slave = None;
        let _ = rustix::io::write(&self.tell, &[if kept { FINISH_KEPT } else { FINISH }]);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Relay {
    /// A relay not finished (`hermetic run` failed before its program
    /// ran): it ends with what there is.
    fn drop(&mut self) {
        self.end(false);
    }
}

/// Starts `f` on a thread of its own with every signal blocked: signals
/// are this process's main thread's (and the handlers' writes come here
/// as bytes).
pub(super) fn hermetic_thread(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // The new thread starts with the mask of this one, put back after.
    let _blocked = super::sys::block(super::sys::Signals::All)?;
    std::thread::Builder::new().name(name.into()).spawn(f)
}

/// The caller's terminal as the relay has it: `modes` in raw mode
/// (`cfmakeraw`): what the program writes was processed by its own
/// terminal already (a newline made a carriage return and a line feed
/// there, if its modes say so), and goes out as it is. Its signals are
/// generated as the module's docs say.
fn raw_like(modes: &Termios) -> Termios {
    let mut raw = modes.clone();
    raw.make_raw();
    raw
}

/// The relay's thread and its state.
struct Serve {
    /// The caller's side of the program's terminal (non-blocking); `None`
    /// once nothing holds the other side: then kept open (closing it would
    /// hang the program's terminal up), but no longer read.
    master: Option<OwnedFd>,
    /// Signal numbers, [`ENGAGE`] and the word to finish.
    wake: OwnedFd,
    /// The caller's terminal, if what is typed there is relayed.
    input: Option<BorrowedFd<'static>>,
    /// Where the program's output goes.
    output: BorrowedFd<'static>,
    /// The caller's terminal (stdin), its modes as the caller had them, and
    /// its relay mode (raw, without `ISIG`).
    raw: Option<(BorrowedFd<'static>, Termios, Termios)>,
    /// The program has its terminal ([`ENGAGE`] came).
    engaged: bool,
    /// The caller's terminal is in the relay's mode (put back at the end,
    /// and before a stop).
    modes_set: bool,
    /// This process is in the caller's terminal's foreground (where what
    /// is typed is read, and the terminal in the relay's mode): not in a
    /// background job (`hermetic run ... &`, or after `bg`), whose terminal
    /// is the shell's meanwhile.
    foreground: bool,
    /// Whether the program's terminal generates signals (as last seen).
    isig: bool,
    /// Typed, not yet taken by the program's terminal.
    pending: Vec<u8>,
    /// Told to finish: when, and whether the sandbox is kept.
    finish: Option<(Instant, bool)>,
    /// Its place among the relays of the caller's terminal, if it has one.
    shared: Option<super::shared_terminal::Shared>,
}

impl Serve {
    /// Relays until told to finish, then puts the caller's terminal's
    /// modes back if it changed them.
    fn serve(&mut self) {
        self.relay();
        // Others relay it still, in its relay mode: the last puts the
        // caller's modes back.
        if self.shared.take().is_some_and(|shared| !shared.leave()) {
            self.modes_set = false;
        } else {
            self.put_back();
        }
    }

    /// The caller's terminal gets the modes it had, if the relay changed
    /// them (and so was in the foreground).
    fn put_back(&mut self) {
        if let (true, Some((fd, modes, _))) = (self.modes_set, &self.raw) {
            let _ = rustix::termios::tcsetattr(fd, OptionalActions::Now, modes);
        }
        self.modes_set = false;
    }

    fn relay(&mut self) {
        let mut buf = vec![0u8; 16 * 1024];
        // Kept open until the end, once nothing holds the other side.
        let mut _kept_open: Option<OwnedFd> = None;
        let mut last_output = Instant::now();
        loop {
            let typing = self.input.filter(|_| {
                self.engaged && self.foreground && self.pending.is_empty() && self.finish.is_none()
            });
            let mut master_events = PollFlags::IN;
            if !self.pending.is_empty() {
                master_events |= PollFlags::OUT;
            }
            let mut fds = vec![PollFd::new(&self.wake, PollFlags::IN)];
            // What the program writes is relayed once the caller's
            // terminal is in the relay's mode (or at the end): before, a
            // newline would be translated twice.
            let watching = self.master.is_some() && (self.engaged || self.finish.is_some());
            if let (true, Some(master)) = (watching, &self.master) {
                fds.push(PollFd::new(master, master_events));
            }
            if let Some(input) = &typing {
                fds.push(PollFd::new(input, PollFlags::IN));
            }
            let timeout = match self.finish {
                // In the background, looked at again now and then: a
                // shell's `fg` of a job that runs sends no signal.
                None if self.engaged && !self.foreground && self.raw.is_some() => {
                    Timespec::try_from(BACKGROUND_LOOK).ok()
                }
                None => None,
                Some(_) if self.master.is_none() => return,
                Some((since, kept)) => {
                    let left = if kept {
                        KEPT_AT_MOST
                            .saturating_sub(since.elapsed())
                            .min(KEPT_QUIET.saturating_sub(last_output.elapsed()))
                    } else {
                        FINISH_WITHIN.saturating_sub(since.elapsed())
                    };
                    if left.is_zero() {
                        return;
                    }
                    Timespec::try_from(left).ok()
                }
            };
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(_) => return,
            }
            let ready: Vec<PollFlags> = fds.iter().map(PollFd::revents).collect();
            drop(fds);
            if self.engaged && !self.foreground {
                self.foreground = self.raw.as_ref().is_some_and(|(fd, ..)| in_foreground(*fd));
                self.set_caller_s_modes();
            }
            let (master_ready, typed) = if watching {
                (ready[1], ready.get(2).copied())
            } else {
                (PollFlags::empty(), ready.get(1).copied())
            };
            if !ready[0].is_empty() {
                self.woken(&mut buf);
            }
            if master_ready.intersects(PollFlags::OUT) {
                self.type_pending();
            }
            if master_ready.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                match self.relay_output(&mut buf) {
                    Output::Some => last_output = Instant::now(),
                    Output::None => {}
                    Output::Gone => {
                        // Nothing holds the program's terminal any more:
                        // all it wrote is relayed. Kept open (see above)
                        // until told to finish.
                        _kept_open = self.master.take();
                        self.pending.clear();
                    }
                }
            }
            if typed.is_some_and(|r| !r.is_empty()) {
                self.take_typed(&mut buf);
            }
            self.follow_program_s_signals();
        }
    }

    /// Reads the wake pipe: signals to pass on, or the word to engage or to
    /// finish.
    fn woken(&mut self, buf: &mut [u8]) {
        let Ok(n) = rustix::io::read(&self.wake, &mut *buf) else {
            return;
        };
        for &byte in &buf[..n] {
            match byte {
                FINISH => self.finish = Some((Instant::now(), false)),
                FINISH_KEPT => self.finish = Some((Instant::now(), true)),
                ENGAGE => {
                    self.engaged = true;
                    self.set_caller_s_modes();
                }
                b if i32::from(b) == libc::SIGINT => {
                    self.signal(libc::SIGINT, SpecialCodeIndex::VINTR)
                }
                b if i32::from(b) == libc::SIGQUIT => {
                    self.signal(libc::SIGQUIT, SpecialCodeIndex::VQUIT);
                }
                b if i32::from(b) == libc::SIGWINCH => self.resize(),
                b if i32::from(b) == libc::SIGTSTP => self.stop(),
                b if i32::from(b) == libc::SIGCONT => {
                    // Back from a stop, in the foreground (`fg`: the
                    // caller's shell may have put its own modes on the
                    // terminal meanwhile) or not (`bg`).
                    self.foreground = self.raw.as_ref().is_some_and(|(fd, ..)| in_foreground(*fd));
                    self.set_caller_s_modes();
                    self.resize();
                }
                _ => {}
            }
        }
    }

    /// `SIGTSTP` came (a Ctrl-Z typed, the caller's job stopped): the
    /// caller's terminal gets its own modes back, then this process stops,
    /// as a job does (the program runs on); `SIGCONT` brings it back.
    ///
    /// As the kernel does for a stop signal of a terminal: not where this
    /// process's group is orphaned (no shell of its session would ever
    /// continue it), where it is ignored.
    fn stop(&mut self) {
        if !stoppable() {
            return;
        }
        self.put_back();
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
    }

    /// `sig` (an interrupt or a quit) came: typed into the program's
    /// terminal as its character `which`, so that it reaches the
    /// sandbox's foreground job as a typed one would (or, where the
    /// program's terminal generates no signals, the program reads it).
    /// Before the program has its terminal, or where that character is
    /// off, the signal goes to the program itself.
    fn signal(&mut self, sig: libc::c_int, which: SpecialCodeIndex) {
        let Some(master) = &self.master else {
            return super::signals::deliver(sig);
        };
        let foreground = rustix::termios::tcgetpgrp(master).is_ok();
        let code = rustix::termios::tcgetattr(master)
            .ok()
            .map(|t| t.special_codes[which])
            .filter(|&c| c != 0);
        match code {
            Some(c) if foreground => self.pending.push(c),
            _ => super::signals::deliver(sig),
        }
    }

    /// The caller's terminal's size, given to the program's (whose
    /// foreground job the kernel sends `SIGWINCH`).
    fn resize(&self) {
        let Some(master) = &self.master else {
            return;
        };
        let caller = self.raw.as_ref().map_or(self.output, |(fd, ..)| *fd);
        if let Ok(size) = rustix::termios::tcgetwinsize(caller) {
            let _ = rustix::termios::tcsetwinsize(master, size);
        }
    }

    /// Puts the caller's terminal in the relay's mode, generating signals
    /// where the caller's did and the program's terminal does: once the
    /// program has its terminal, and only in the foreground.
    fn set_caller_s_modes(&mut self) {
        if !(self.engaged && self.foreground) {
            return;
        }
        if let Some((fd, caller_s, raw)) = &self.raw {
            let mut modes = raw.clone();
            let isig = self.isig && caller_s.local_modes.contains(LocalModes::ISIG);
            modes.local_modes.set(LocalModes::ISIG, isig);
            if rustix::termios::tcsetattr(fd, OptionalActions::Now, &modes).is_ok() {
                self.modes_set = true;
            }
        }
    }

    /// The caller's terminal generates signals when, and only when, the
    /// program's does (and the caller's did): an editor in raw mode gets
    /// Ctrl-C as a byte.
    fn follow_program_s_signals(&mut self) {
        if self.raw.is_none() || !(self.engaged && self.foreground) {
            return;
        }
        let Some(Ok(program_s)) = self.master.as_ref().map(rustix::termios::tcgetattr) else {
            return;
        };
        let isig = program_s.local_modes.contains(LocalModes::ISIG);
        if isig != self.isig {
            self.isig = isig;
            self.set_caller_s_modes();
        }
    }

    /// Writes what was typed to the program's terminal, as much as it
    /// takes now.
    fn type_pending(&mut self) {
        let Some(master) = &self.master else {
            return self.pending.clear();
        };
        match rustix::io::write(master, &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(Errno::AGAIN | Errno::INTR) => {}
            // The program's terminal is gone: nothing more to type.
            Err(_) => self.pending.clear(),
        }
    }

    /// Reads what was typed on the caller's terminal; nothing more is read
    /// once it is gone (hung up), nor while in the background (a read
    /// there fails, `EIO`, this thread blocking `SIGTTIN`).
    fn take_typed(&mut self, buf: &mut [u8]) {
        let Some(input) = self.input else {
            return;
        };
        match rustix::io::read(input, &mut *buf) {
            Ok(0) => self.input = None,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                self.type_pending();
            }
            Err(Errno::AGAIN | Errno::INTR) => {}
            Err(Errno::IO) => self.foreground = false,
            Err(_) => self.input = None,
        }
    }

    /// Relays what the program wrote, one buffer's worth (the poll comes
    /// back while there is more): whether there was some, none, or
    /// nothing holds the program's terminal any more (all it wrote read).
    ///
    /// One read a round, not a loop until the terminal is empty: a program
    /// that writes faster than the caller's terminal shows (`yes`) never
    /// leaves it empty, and what was typed meanwhile, Ctrl-C included,
    /// waited for the loop's end (seconds, or for ever).
    fn relay_output(&mut self, buf: &mut [u8]) -> Output {
        let Some(master) = &self.master else {
            return Output::Gone;
        };
        loop {
            match rustix::io::read(master, &mut *buf) {
                Ok(0) => return Output::Gone,
                Ok(n) => {
                    write_all(self.output, &buf[..n]);
                    return Output::Some;
                }
                Err(Errno::AGAIN) => return Output::None,
                Err(Errno::INTR) => {}
                // EIO: no process holds the other side any more.
                Err(_) => return Output::Gone,
            }
        }
    }
}

/// What reading the program's terminal gave.
enum Output {
    Some,
    None,
    Gone,
}

/// Whether a job-control shell could continue this process once
/// stopped: its group is not orphaned, as its parent (a shell, or a
/// runner a shell started) is in its session and another group. The
/// kernel also counts the group's other members' parents; `hermetic`'s
/// own, the one it knows, decides here.
fn stoppable() -> bool {
    use rustix::process::{getpgrp, getppid, getsid};
    let (Some(parent), Ok(session)) = (getppid(), getsid(None)) else {
        return false;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", parent.as_raw_nonzero()))
    else {
        return false;
    };
    // After the command's `)`: state, ppid, pgrp, session.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<i32>().ok());
    number(3) == Some(session.as_raw_nonzero().get())
        && number(2) != Some(getpgrp().as_raw_nonzero().get())
}

/// Whether this process is in the foreground of the terminal `fd` (or
/// the terminal is not its controlling terminal: then no job control
/// stops it for reading or setting it).
fn in_foreground(fd: BorrowedFd<'_>) -> bool {
    rustix::termios::tcgetpgrp(fd).map_or(true, |group| group == rustix::process::getpgrp())
}

/// Writes all of `bytes` to the caller's terminal (waiting while it takes
/// none); drops what it refuses.
fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
                let _ = poll(&mut fds, None);
            }
            Err(_) => return,
        }
    }
}
