//! Forwarding what processes in a sandbox print into the test's own output.
//!
//! Every process of a sandbox writes fds 1 and 2 into two pipes owned by the
//! sandbox. One thread per sandbox reads them and re-prints with `print!`
//! and `eprint!`. That thread is spawned by the thread that builds the
//! sandbox, so under `cargo test` it inherits libtest's capture of that test
//! (shown when the test fails); under `cargo nextest run` it writes to the
//! test process's stdout and stderr, which nextest captures per test.
//!
//! After each run, [`Output::flush`] makes sure that all the closure wrote
//! has been re-printed before `run` returns.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

#[derive(Default)]
struct State {
    requested: u64,
    done: u64,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    /// Set by the forwarder from before it reads until it has printed what
    /// it read: with the pipes empty and this clear, nothing is in flight.
    busy: AtomicBool,
}

/// The sandbox's output pipes and their forwarding thread.
pub(crate) struct Output {
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// The read ends, to see whether anything is waiting in them.
    readers: [Arc<OwnedFd>; 2],
    wake: OwnedFd,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

fn nonblocking(fd: &OwnedFd) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok(())
}

impl Output {
    pub(crate) fn new() -> io::Result<Output> {
        let (out_r, stdout) = pipe()?;
        let (err_r, stderr) = pipe()?;
        let (wake_r, wake) = pipe()?;
        for fd in [&out_r, &err_r, &wake_r] {
            nonblocking(fd)?;
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            busy: AtomicBool::new(false),
        });
        let (out_r, err_r) = (Arc::new(out_r), Arc::new(err_r));
        let readers = [out_r.clone(), err_r.clone()];
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("hermetic-output".into())
                .spawn(move || forward(out_r, err_r, wake_r, &shared))?
        };
        Ok(Output {
            stdout,
            stderr,
            readers,
            wake,
            shared,
            thread: Some(thread),
        })
    }

    /// The write ends that become fds 1 and 2 inside.
    pub(crate) fn fds(&self) -> (RawFd, RawFd) {
        (self.stdout.as_raw_fd(), self.stderr.as_raw_fd())
    }

    /// Returns once everything written to the pipes so far is re-printed.
    pub(crate) fn flush(&self) {
        // The common case, a run that printed nothing, needs no round trip
        // to the forwarder. Pipes first, then the flag: bytes the forwarder
        // has taken out of a pipe keep it busy until they are printed.
        let empty = self
            .readers
            .iter()
            .all(|fd| crate::sys::pending_bytes(fd.as_raw_fd()) == Ok(0));
        if empty && !self.shared.busy.load(Ordering::SeqCst) {
            return;
        }
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.requested += 1;
        let mine = state.requested;
        let _ = nix::unistd::write(&self.wake, b"f");
        while state.done < mine && !state.stop {
            state = self
                .shared
                .cv
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        {
            let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            state.stop = true;
        }
        let _ = nix::unistd::write(&self.wake, b"s");
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One output stream: its pipe, and bytes of a UTF-8 sequence cut by a read.
struct Stream {
    fd: Arc<OwnedFd>,
    carry: Vec<u8>,
    err: bool,
}

impl Stream {
    /// Reads what is there now (all of it when `drain`), prints it.
    fn pump(&mut self, drain: bool) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match nix::unistd::read(&*self.fd, &mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    self.carry.extend_from_slice(&buf[..n]);
                    self.print();
                    if !drain {
                        return;
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
        }
    }

    fn print(&mut self) {
        let (text, keep) = match std::str::from_utf8(&self.carry) {
            Ok(s) => (s.to_owned(), 0),
            // An incomplete sequence at the end waits for the next read.
            Err(e) if e.error_len().is_none() => (
                String::from_utf8_lossy(&self.carry[..e.valid_up_to()]).into_owned(),
                self.carry.len() - e.valid_up_to(),
            ),
            Err(_) => (String::from_utf8_lossy(&self.carry).into_owned(), 0),
        };
        let tail = self.carry.split_off(self.carry.len() - keep);
        self.carry = tail;
        let err = self.err;
        // print! panics when its stream is gone; nothing to forward to then.
        let _ = std::panic::catch_unwind(|| {
            if err {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
        });
    }
}

fn forward(out: Arc<OwnedFd>, err: Arc<OwnedFd>, wake: OwnedFd, shared: &Shared) {
    let mut out = Stream {
        fd: out,
        carry: Vec::new(),
        err: false,
    };
    let mut err = Stream {
        fd: err,
        carry: Vec::new(),
        err: true,
    };
    loop {
        let ready = {
            let mut fds = [
                PollFd::new(out.fd.as_fd(), PollFlags::POLLIN),
                PollFd::new(err.fd.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
            ];
            if poll(&mut fds, PollTimeout::NONE).is_err() {
                continue;
            }
            fds.map(|f| f.revents().is_some_and(|r| !r.is_empty()))
        };
        shared.busy.store(true, Ordering::SeqCst);
        if ready[0] {
            out.pump(false);
        }
        if ready[1] {
            err.pump(false);
        }
        shared.busy.store(false, Ordering::SeqCst);
        if ready[2] {
            let mut sink = [0u8; 64];
            while matches!(nix::unistd::read(&wake, &mut sink), Ok(n) if n > 0) {}
            out.pump(true);
            err.pump(true);
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            state.done = state.requested;
            shared.cv.notify_all();
            if state.stop {
                return;
            }
        }
    }
}
