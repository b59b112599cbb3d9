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
//!
//! What is kept is bounded: libtest's capture (and nextest's) holds in
//! memory whatever is printed, so a closure printing without end would grow
//! the test process without end. Of each stream, per run, the first
//! [`OutputLimit::head`] bytes are printed as they come, the last
//! [`OutputLimit::tail`] bytes are held back and printed when the run ends,
//! after a line saying how many bytes were dropped between them; the rest
//! is read and discarded. Each read takes at most [`PUMP_MAX`] bytes, so a
//! flood never keeps a waiting run from its deadline.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::sys::fd::{self, Fd};

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

/// How much of each output stream a run keeps: the first `head` bytes and
/// the last `tail` bytes (see [`SandboxBuilder::output_limit`]).
///
/// [`SandboxBuilder::output_limit`]: crate::SandboxBuilder::output_limit
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputLimit {
    pub(crate) head: usize,
    pub(crate) tail: usize,
}

impl OutputLimit {
    /// What one stream may print over a sandbox's whole life: eight runs'
    /// worth (16 MiB by default). Per run alone, a process printing without
    /// end across many runs (a chatty server the test polls) would add a
    /// head and a tail to the test's output at every run's end.
    pub(crate) fn lifetime(self) -> u64 {
        (self.head as u64)
            .saturating_add(self.tail as u64)
            .saturating_mul(8)
    }
}

/// The default: 1 MiB of head and 1 MiB of tail per stream and run.
pub(crate) const DEFAULT_OUTPUT_LIMIT: OutputLimit = OutputLimit {
    head: 1 << 20,
    tail: 1 << 20,
};

/// The most one pump reads before it returns, so that a waiting run gets
/// back to its deadline however fast the sandbox prints.
pub(crate) const PUMP_MAX: usize = 1 << 20;

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
    /// The process that made it, whose thread forwards: a copy (moved
    /// into a run's closure) has no such thread to stop or wait for.
    owner: u32,
}

impl Output {
    pub(crate) fn new(limit: OutputLimit) -> io::Result<Output> {
        let (out_r, stdout) = fd::pipe_read_never_blocks()?;
        let (err_r, stderr) = fd::pipe_read_never_blocks()?;
        let readers = [Arc::new(out_r), Arc::new(err_r)];
        let streams = Streams {
            out: Stream::new(readers[0].clone(), false, limit),
            err: Stream::new(readers[1].clone(), true, limit),
        };
        Ok(Output {
            stdout,
            stderr,
            readers,
            streams: Arc::new(Mutex::new(streams)),
            forwarder: Mutex::new(None),
            started: AtomicBool::new(false),
            owner: std::process::id(),
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

    /// At a run's end: re-prints what the pipes hold now, then what was
    /// held back of the run's output (its tail, after a line saying how
    /// much was dropped), and starts counting anew for the next run.
    pub(crate) fn end_run(&self) {
        self.pump();
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.out.finish();
        streams.err.finish();
    }

    /// Starts the forwarding thread, once; from then on it reads the pipes.
    pub(crate) fn start(&self) -> io::Result<()> {
        let mut forwarder = self.forwarder.lock().unwrap_or_else(|e| e.into_inner());
        if forwarder.is_some() {
            return Ok(());
        }
        let (wake_r, wake) = fd::pipe()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            busy: AtomicBool::new(false),
        });
        let thread = {
            let shared = shared.clone();
            let streams = self.streams.clone();
            let readers = self.readers.clone();
            crate::sys::spawn_quiet("hermetic-output", move || {
                forward(readers, &streams, wake_r, &shared)
            })?
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
            let fds: Vec<_> = self.readers.iter().map(|fd| fd.as_fd()).collect();
            let empty =
                crate::sys::pipes_with_data(&fds).is_some_and(|data| data.iter().all(|&d| !d));
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
        if self.owner != std::process::id() {
            // Its thread is not this process's: left as it is (its fds,
            // ours, are left alone too).
            let forwarder = self.forwarder.get_mut().map(Option::take);
            std::mem::forget(forwarder);
            return;
        }
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
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.out.finish();
        streams.err.finish();
        streams.out.say_dropped_for_good();
        streams.err.say_dropped_for_good();
    }
}

/// Both read ends.
struct Streams {
    out: Stream,
    err: Stream,
}

impl Streams {
    /// Reads and prints what the pipes hold now (at most [`PUMP_MAX`]
    /// bytes of each).
    fn drain(&mut self) {
        // Mostly nothing: asked first without the pipes' locks.
        let data = crate::sys::pipes_with_data(&[self.out.fd.as_fd(), self.err.fd.as_fd()]);
        let (out, err) = data.map_or((true, true), |d| (d[0], d[1]));
        if out {
            self.out.pump();
        }
        if err {
            self.err.pump();
        }
    }
}

/// One output stream: its pipe, bytes of a UTF-8 sequence cut by a read,
/// and what is kept of it.
pub(crate) struct Stream {
    fd: Arc<Fd>,
    carry: Vec<u8>,
    err: bool,
    kept: Kept,
    /// Whether the last byte printed ended a line.
    at_line_start: bool,
    /// Bytes to leave out should the stream start with them (a re-executed
    /// libtest's preamble), and how many of them have come so far.
    preamble: Option<(Vec<u8>, usize)>,
    /// What this stream may print over the sandbox's whole life
    /// ([`OutputLimit::lifetime`]), what it has printed, and what it has
    /// dropped past that.
    lifetime: u64,
    printed: u64,
    dropped_for_good: u64,
}

impl Stream {
    /// A stream read from `fd`, printed to stderr if `err`, else stdout.
    pub(crate) fn new(fd: Arc<Fd>, err: bool, limit: OutputLimit) -> Stream {
        Stream {
            fd,
            carry: Vec::new(),
            err,
            kept: Kept::new(limit),
            at_line_start: true,
            preamble: None,
            lifetime: limit.lifetime(),
            printed: 0,
            dropped_for_good: 0,
        }
    }

    /// The pipe it reads.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Leaves `preamble` out should the stream start with it.
    pub(crate) fn skipping(mut self, preamble: Vec<u8>) -> Stream {
        self.preamble = Some((preamble, 0));
        self
    }

    /// `bytes` without what belongs to the preamble.
    fn unpreamble<'a>(&mut self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        use std::borrow::Cow;
        let Some((preamble, matched)) = &mut self.preamble else {
            return Cow::Borrowed(bytes);
        };
        let want = &preamble[*matched..];
        let n = want.len().min(bytes.len());
        if bytes[..n] == want[..n] {
            *matched += n;
            if *matched == preamble.len() {
                self.preamble = None;
            }
            return Cow::Borrowed(&bytes[n..]);
        }
        // Not the preamble: what matched so far is output after all.
        let mut all = preamble[..*matched].to_vec();
        all.extend_from_slice(bytes);
        self.preamble = None;
        Cow::Owned(all)
    }

    /// Reads what is there now, at most [`PUMP_MAX`] bytes, and prints the
    /// part of it that is kept. Reads only what the pipe holds
    /// (`FIONREAD`), from a read end that never blocks: what a process
    /// inside takes out of the pipe meanwhile (through a read end of its
    /// own) ends the pump (`EAGAIN`), it does not block it.
    pub(crate) fn pump(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        let mut taken = 0;
        while taken < PUMP_MAX {
            match crate::sys::read_pending(self.fd.as_fd(), &mut buf) {
                crate::sys::Pending::Read(n) => {
                    taken += n;
                    let read = self.unpreamble(&buf[..n]);
                    let now = self.kept.feed(&read);
                    if !now.is_empty() {
                        self.carry.extend_from_slice(now);
                        self.print(false);
                    }
                }
                _ => return,
            }
        }
    }

    /// The end of a run: prints what was held back (a line saying how
    /// many bytes were dropped, then the tail) and starts counting anew.
    pub(crate) fn finish(&mut self) {
        let (dropped, tail) = self.kept.finish();
        if dropped > 0 {
            self.print(true);
            let newline = if self.at_line_start { "" } else { "\n" };
            self.carry.extend_from_slice(
                format!(
                    "{newline}[hermetic: {dropped} bytes of output dropped here; kept: the \
                     first {} and the last {} (SandboxBuilder::output_limit)]\n",
                    self.kept.limit.head, self.kept.limit.tail
                )
                .as_bytes(),
            );
        }
        self.carry.extend(tail);
        self.print(dropped > 0);
        if dropped > 0 && !self.at_line_start {
            // The tail was cut where the run ended: what comes next starts
            // a line of its own.
            self.carry.push(b'\n');
            self.print(true);
        }
    }

    /// Prints the carried bytes; an incomplete UTF-8 sequence at their end
    /// waits for the next read, unless `all`.
    fn print(&mut self, all: bool) {
        if self.carry.is_empty() {
            return;
        }
        let (text, keep) = match std::str::from_utf8(&self.carry) {
            Ok(s) => (s.to_owned(), 0),
            // An incomplete sequence at the end waits for the next read.
            Err(e) if e.error_len().is_none() && !all => (
                String::from_utf8_lossy(&self.carry[..e.valid_up_to()]).into_owned(),
                self.carry.len() - e.valid_up_to(),
            ),
            Err(_) => (String::from_utf8_lossy(&self.carry).into_owned(), 0),
        };
        let tail = self.carry.split_off(self.carry.len() - keep);
        self.carry = tail;
        let text = self.within_lifetime(text);
        if let Some(last) = text.as_bytes().last() {
            self.at_line_start = *last == b'\n';
        }
        self.emit(&text);
    }

    /// Prints `text` into the test's stdout or stderr (this stream's).
    fn emit(&self, text: &str) {
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

impl Stream {
    /// At the sandbox's end: how much of its output on this stream was
    /// dropped past its lifetime, if any.
    fn say_dropped_for_good(&mut self) {
        if self.dropped_for_good == 0 {
            return;
        }
        self.emit(&format!(
            "[hermetic: {} more bytes this sandbox printed on this stream were dropped]\n",
            self.dropped_for_good
        ));
    }

    /// `text` as far as the stream's lifetime allows ([`OutputLimit::lifetime`]):
    /// the part that fits, then, once, a line saying that the rest of the
    /// sandbox's output on this stream is dropped; after that nothing.
    fn within_lifetime(&mut self, text: String) -> String {
        let room = self.lifetime.saturating_sub(self.printed);
        if text.len() as u64 <= room {
            self.printed += text.len() as u64;
            return text;
        }
        let first = self.dropped_for_good == 0;
        let mut cut = usize::try_from(room).unwrap_or(usize::MAX).min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.printed = self.lifetime;
        self.dropped_for_good += (text.len() - cut) as u64;
        if !first {
            return String::new();
        }
        let mut kept = text[..cut].to_owned();
        if !kept.is_empty() && !kept.ends_with('\n') {
            kept.push('\n');
        }
        kept.push_str(&format!(
            "[hermetic: this sandbox has printed {} bytes on this stream; the rest of what it \
             prints there is dropped, so that the test's output stays bounded \
             (SandboxBuilder::output_limit: eight times head + tail per sandbox)]\n",
            self.lifetime
        ));
        kept
    }
}

/// What is kept of one stream in one run: the first `head` bytes pass, the
/// last `tail` bytes wait in a ring, what falls out of the ring is counted.
struct Kept {
    limit: OutputLimit,
    /// Bytes passed as the head so far.
    passed: usize,
    tail: VecDeque<u8>,
    dropped: u64,
}

impl Kept {
    fn new(limit: OutputLimit) -> Kept {
        Kept {
            limit,
            passed: 0,
            tail: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Takes `bytes`; returns the part to print now (the head's), keeps
    /// the rest in the tail.
    fn feed<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let now = bytes.len().min(self.limit.head - self.passed);
        self.passed += now;
        let (now_part, rest) = bytes.split_at(now);
        if !rest.is_empty() {
            let cap = self.limit.tail;
            if rest.len() >= cap {
                self.dropped += (self.tail.len() + rest.len() - cap) as u64;
                self.tail.clear();
                self.tail.extend(&rest[rest.len() - cap..]);
            } else {
                let over = (self.tail.len() + rest.len()).saturating_sub(cap);
                self.dropped += over as u64;
                self.tail.drain(..over);
                self.tail.extend(rest);
            }
        }
        now_part
    }

    /// The run's end: how many bytes were dropped, and the tail; counting
    /// starts anew.
    fn finish(&mut self) -> (u64, VecDeque<u8>) {
        self.passed = 0;
        let dropped = std::mem::take(&mut self.dropped);
        // The ring's memory is given back too: most runs print little.
        (dropped, std::mem::take(&mut self.tail))
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
            let _ = crate::sys::read_pending(wake.as_fd(), &mut sink);
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

#[cfg(test)]
mod tests {
    use super::{Kept, OutputLimit, Stream};

    fn feed_all(kept: &mut Kept, chunks: &[&[u8]]) -> Vec<u8> {
        let mut now = Vec::new();
        for c in chunks {
            now.extend_from_slice(kept.feed(c));
        }
        now
    }

    #[test]
    fn the_head_passes_the_tail_waits_the_middle_is_counted() {
        let mut kept = Kept::new(OutputLimit { head: 4, tail: 3 });
        let now = feed_all(&mut kept, &[b"ab", b"cdef", b"ghijk", b"l"]);
        assert_eq!(now, b"abcd");
        let (dropped, tail) = kept.finish();
        assert_eq!(tail.into_iter().collect::<Vec<_>>(), b"jkl");
        assert_eq!(dropped, 5, "efghi");
        // Counting starts anew.
        assert_eq!(feed_all(&mut kept, &[b"xyz"]), b"xyz");
        assert_eq!(kept.finish().0, 0);
    }

    #[test]
    fn a_chunk_larger_than_the_tail_keeps_its_end() {
        let mut kept = Kept::new(OutputLimit { head: 0, tail: 2 });
        assert!(feed_all(&mut kept, &[b"abc", b"defgh"]).is_empty());
        let (dropped, tail) = kept.finish();
        assert_eq!(tail.into_iter().collect::<Vec<_>>(), b"gh");
        assert_eq!(dropped, 6);
    }

    #[test]
    fn a_stream_prints_at_most_its_lifetime_then_says_so_once() {
        let (r, _w) = crate::sys::fd::pipe().unwrap();
        let limit = OutputLimit { head: 2, tail: 3 };
        assert_eq!(limit.lifetime(), 40);
        let mut s = Stream::new(std::sync::Arc::new(r), false, limit);
        assert_eq!(s.within_lifetime("a".repeat(30)), "a".repeat(30));
        let cut = s.within_lifetime("b".repeat(15));
        assert!(
            cut.starts_with(&format!(
                "{}\n[hermetic: this sandbox has printed 40 bytes",
                "b".repeat(10)
            )),
            "{cut}"
        );
        assert_eq!(s.within_lifetime("c".into()), "");
        assert_eq!(s.dropped_for_good, 6);
        // A character is never cut in two.
        let mut s = Stream::new(s.fd.clone(), false, OutputLimit { head: 1, tail: 0 });
        assert!(
            s.within_lifetime("\u{e9}".repeat(5))
                .starts_with("\u{e9}\u{e9}\u{e9}\u{e9}\n[")
        );
        assert_eq!(
            OutputLimit {
                head: usize::MAX,
                tail: usize::MAX
            }
            .lifetime(),
            u64::MAX,
            "everything kept stays everything kept"
        );
    }

    #[test]
    fn output_within_head_and_tail_is_all_kept() {
        let mut kept = Kept::new(OutputLimit { head: 2, tail: 10 });
        assert_eq!(feed_all(&mut kept, &[b"abcdef"]), b"ab");
        let (dropped, tail) = kept.finish();
        assert_eq!(dropped, 0);
        assert_eq!(tail.into_iter().collect::<Vec<_>>(), b"cdef");
    }
}
