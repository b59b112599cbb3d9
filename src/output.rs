//! Forwarding what processes in a sandbox print into the test's own output.
//!
//! Every process of a sandbox writes fds 1 and 2 into two pipes owned by the
//! sandbox, and what comes out is re-printed with `print!` and `eprint!`, so
//! that under `cargo test` it lands in libtest's capture of the test (shown
//! when the test fails) and under `cargo nextest run` in the test process's
//! own stdout and stderr, which nextest captures per test.
//!
//! Who reads the pipes: while nothing in the sandbox can print between runs,
//! the thread doing a run drains them itself, during and after the run. Once
//! something can (a [`spawn`](crate::Sandbox::spawn)ed closure, or processes
//! a run left behind), a forwarding thread takes over for the rest of the
//! sandbox's life. A thread per sandbox from the start would cost about a
//! fifth of creating the sandbox. The forwarder is spawned by a thread of the
//! test, so it inherits that test's capture.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::fds::{self, Fd};

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

/// The forwarding thread, once started.
struct Forwarder {
    wake: Fd,
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
}

/// The sandbox's output pipes and whoever forwards them.
pub(crate) struct Output {
    stdout: Fd,
    stderr: Fd,
    /// The read ends (shared with `streams`), to poll and to see whether
    /// anything waits in them.
    readers: [Arc<Fd>; 2],
    /// The read ends and their half-read characters; locked by whoever
    /// reads, so that chunks are printed in the order they were read.
    streams: Arc<Mutex<Streams>>,
    forwarder: Mutex<Option<Forwarder>>,
    started: AtomicBool,
}

fn pipe() -> io::Result<(Fd, Fd)> {
    fds::pipe()
}

impl Output {
    pub(crate) fn new() -> io::Result<Output> {
        let (out_r, stdout) = pipe()?;
        let (err_r, stderr) = pipe()?;
        let readers = [Arc::new(out_r), Arc::new(err_r)];
        let streams = Streams {
            out: Stream {
                fd: readers[0].clone(),
                carry: Vec::new(),
                err: false,
            },
            err: Stream {
                fd: readers[1].clone(),
                carry: Vec::new(),
                err: true,
            },
        };
        Ok(Output {
            stdout,
            stderr,
            readers,
            streams: Arc::new(Mutex::new(streams)),
            forwarder: Mutex::new(None),
            started: AtomicBool::new(false),
        })
    }

    /// The write ends that become fds 1 and 2 inside.
    pub(crate) fn fds(&self) -> (RawFd, RawFd) {
        (self.stdout.as_raw_fd(), self.stderr.as_raw_fd())
    }

    /// The read ends a run should poll while it waits, so that a closure
    /// printing more than a pipe holds is never blocked; none once the
    /// forwarder reads them.
    pub(crate) fn readers_to_poll(&self) -> &[Arc<Fd>] {
        if self.started.load(Ordering::SeqCst) {
            &[]
        } else {
            &self.readers
        }
    }

    /// Re-prints what the pipes hold now, on the calling thread (or, once
    /// the forwarder runs, waits until it has printed it).
    pub(crate) fn pump(&self) {
        if self.started.load(Ordering::SeqCst) {
            self.flush();
        } else {
            self.streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain();
        }
    }

    /// Starts the forwarding thread, once; from then on it reads the pipes.
    pub(crate) fn start(&self) -> io::Result<()> {
        let mut forwarder = self.forwarder.lock().unwrap_or_else(|e| e.into_inner());
        if forwarder.is_some() {
            return Ok(());
        }
        let (wake_r, wake) = pipe()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            busy: AtomicBool::new(false),
        });
        let thread = {
            let shared = shared.clone();
            let streams = self.streams.clone();
            let readers = self.readers.clone();
            std::thread::Builder::new()
                .name("hermetic-output".into())
                .spawn(move || forward(readers, &streams, wake_r, &shared))?
        };
        *forwarder = Some(Forwarder {
            wake,
            shared,
            thread,
        });
        self.started.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Returns once everything written to the pipes so far is re-printed by
    /// the forwarder.
    fn flush(&self) {
        // The common case, nothing printed, needs no round trip to the
        // forwarder. Pipes first, then the flag: bytes the forwarder has
        // taken out of a pipe keep it busy until they are printed.
        let shared = {
            let forwarder = self.forwarder.lock().unwrap_or_else(|e| e.into_inner());
            let Some(f) = forwarder.as_ref() else {
                return;
            };
            let empty = self
                .readers
                .iter()
                .all(|fd| crate::sys::pending_bytes(fd.as_fd()) == Ok(0));
            if empty && !f.shared.busy.load(Ordering::SeqCst) {
                return;
            }
            f.shared.clone()
        };
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.requested += 1;
        let mine = state.requested;
        if let Some(f) = self
            .forwarder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = crate::sys::write_all(f.wake.as_fd(), b"f");
        }
        while state.done < mine && !state.stop {
            state = shared.cv.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        let forwarder = self
            .forwarder
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match forwarder {
            Some(f) => {
                f.shared
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .stop = true;
                let _ = crate::sys::write_all(f.wake.as_fd(), b"s");
                let _ = f.thread.join();
            }
            // Last words of the processes that just died.
            None => self
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(),
        }
    }
}

/// Both read ends.
struct Streams {
    out: Stream,
    err: Stream,
}

impl Streams {
    /// Reads and prints everything the pipes hold now.
    fn drain(&mut self) {
        self.out.pump();
        self.err.pump();
    }
}

/// One output stream: its pipe, and bytes of a UTF-8 sequence cut by a read.
struct Stream {
    fd: Arc<Fd>,
    carry: Vec<u8>,
    err: bool,
}

impl Stream {
    /// Reads what is there now, prints it. Reads only what the pipe holds
    /// (`FIONREAD`), so it never blocks, whatever the pipe's flags.
    fn pump(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let pending = crate::sys::pending_bytes(self.fd.as_fd()).unwrap_or(0);
            if pending == 0 {
                return;
            }
            match crate::sys::read(self.fd.as_fd(), &mut buf[..pending.min(16 * 1024)]) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    self.carry.extend_from_slice(&buf[..n]);
                    self.print();
                }
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

fn forward(readers: [Arc<Fd>; 2], streams: &Mutex<Streams>, wake: Fd, shared: &Shared) {
    loop {
        let ready = {
            let fds = [readers[0].as_fd(), readers[1].as_fd(), wake.as_fd()];
            match crate::sys::poll(&fds, None) {
                Ok(ready) => [ready[0].any, ready[1].any, ready[2].any],
                Err(_) => continue,
            }
        };
        if ready[0] || ready[1] {
            shared.busy.store(true, Ordering::SeqCst);
            streams.lock().unwrap_or_else(|e| e.into_inner()).drain();
            shared.busy.store(false, Ordering::SeqCst);
        }
        if ready[2] {
            // Take only what is there: never block here.
            let mut sink = [0u8; 64];
            let pending = crate::sys::pending_bytes(wake.as_fd()).unwrap_or(0);
            if pending > 0 {
                let _ = crate::sys::read(wake.as_fd(), &mut sink[..pending.min(64)]);
            }
            streams.lock().unwrap_or_else(|e| e.into_inner()).drain();
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            state.done = state.requested;
            shared.cv.notify_all();
            if state.stop {
                return;
            }
        }
    }
}
