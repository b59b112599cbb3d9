//! Whole tests in a sandbox: [`isolate_test`] re-executes the test binary
//! for just the calling test, inside a new sandbox, and reports what
//! happened there as the test's own outcome.
//!
//! The child is the same test binary, started by the sandbox's init
//! process as `hermetic run` starts its program (inside the sandbox from its
//! first instruction, no fork of the test process, no relay), as
//! `BINARY NAME --exact --include-ignored --nocapture
//! --test-threads=1`, its `argv[0]` `hermetic-isolated-test:N` (which of
//! the test's calls it is for: earlier calls return at once there; a mark
//! no program the body starts inherits, as it would a variable of the
//! environment, which made a test binary the body ran take itself for the
//! re-executed one) and, as its stdin, the write end of a pipe: the result
//! channel. There, `isolate_test` takes that pipe off fd 0 (a close-on-exec
//! copy; `/dev/null` goes in its place, so the body's programs never hold
//! it), sends one byte when the body starts and one frame when it ends (its
//! panic with the location, or that it returned), and exits at once: code
//! after the call never runs there. Nothing the body prints can pass for a
//! result.
//!
//! The test process forwards the child's output while it waits, keeping
//! what [`SandboxBuilder::output_limit`] says, and waits for the child's
//! exit (the init process reports it), not for the end of its pipes: a
//! program the body left running
//! may hold those for ever. When the child is gone, so is the sandbox (and
//! every program in it); then what the pipes still hold is forwarded, and
//! nothing more is waited for.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use crate::error::PanicLocation;
use crate::proto::frame::{self, FrameReader, PanicReport, Tag};
use crate::run::output::Stream;
use crate::sandbox::{ProgramEnd, SandboxBuilder};
use crate::sys::fd::{self, Fd};

/// What the re-executed test's `argv[0]` begins with, followed by which
/// `isolate_test` call of the test (0 for the first) it is for.
const ARG0: &str = "hermetic-isolated-test:";

thread_local! {
    /// How many `isolate_test` calls this test's thread has made.
    static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}
/// The byte the child sends on its result channel when the body starts.
const STARTED: u8 = b'S';
/// The largest result frame the test process takes (a panic's message).
const MAX_RESULT: usize = 16 << 20;

/// Runs the body of the current test in a fresh process inside a new
/// sandbox (with [`Sandbox::new`](crate::Sandbox::new)'s defaults, but for
/// the host, seen copy-on-write: [`HostMode::CopyOnWrite`](crate::HostMode),
/// unless the builder chose another mode), and
/// fails the test with the body's panic message and location, or the
/// process's death, if it fails there.
///
/// The test binary is re-executed for just this test (libtest names a
/// test's thread after the test), inside the sandbox from its first
/// instruction: nothing is forked from the test process, so locks other
/// threads of the test process hold (an async runtime's, the allocator's)
/// are no concern, and the body may start runtimes and threads freely.
/// What the body prints goes into the test's own output. Works under
/// `cargo test` (any number of test threads) and `cargo nextest run`, with
/// rstest cases.
///
/// **Code before the call runs in both processes** (the test's and the
/// re-executed one), code after it only in the test's (the re-executed
/// process exits as soon as the body's result is sent); the body only in
/// the re-executed one. A test may call it more than once: each body runs
/// in a process and sandbox of its own. Values cannot be passed in or out: compute them
/// inside.
///
/// The body's result travels on a pipe of its own, not in its output: a
/// body that exits before it ends (`std::process::exit(0)` included) fails
/// the test, saying so. Programs the body leaves running die with the
/// sandbox when the body's process ends; what they printed until then is
/// in the test's output (of each stream, the first and last MiB, see
/// [`SandboxBuilder::output_limit`]).
///
/// # Panics
///
/// When the body panics (with its message and location), when the process
/// dies or exits before the body ends (without a result), when the run takes longer than the
/// sandbox's timeout (5 minutes, `HERMETIC_TIMEOUT`), and when no sandbox
/// can be made; when called outside a test's thread.
///
/// # Examples
///
/// ```no_run
/// #[test]
/// fn serves_on_its_usual_port() {
///     hermetic::isolate_test(|| {
///         // A runtime, threads, fixed ports: all of this test's own.
///         let l = std::net::TcpListener::bind("127.0.0.1:8080").unwrap();
///         assert_eq!(l.local_addr().unwrap().port(), 8080);
///     });
/// }
/// ```
///
/// A body may return what a `#[test]` may (a `Result`, and so use `?`):
/// an `Err` fails the test, its `Error: ...` in the test's output, as
/// libtest fails a test that returns one.
///
/// ```no_run
/// #[test]
/// fn writes_its_config() {
///     hermetic::isolate_test(|| -> std::io::Result<()> {
///         std::fs::write("/etc/app.toml", "port = 8080\n")?;
///         assert_eq!(std::fs::read_to_string("/etc/app.toml")?, "port = 8080\n");
///         Ok(())
///     });
/// }
/// ```
#[track_caller]
pub fn isolate_test<F: FnOnce() -> R, R: std::process::Termination>(body: F) {
    SandboxBuilder::new().isolate_test(body)
}

/// [`isolate_test`] for async tests: the test's body, a future, runs in a
/// fresh process inside a new sandbox, on the runtime the test's own
/// attribute (`#[tokio::test]`, any flavour) makes there.
///
/// In the test process it waits for the re-executed test on a thread of
/// its own, so it never blocks the runtime that polls it (any executor
/// may); in the re-executed process it awaits the body and sends its
/// outcome. Nothing is forked from the test process: locks held by the
/// runtime's threads at the moment of the call are no concern, which is
/// what makes this, and not [`Sandbox::run`](crate::Sandbox::run) or
/// [`spawn`](crate::Sandbox::spawn) with a runtime built inside the
/// closure, the way to sandbox async code (the README's "Async code" says
/// why and how often the other way hangs).
///
/// Call it on the test's own thread (in the test's `async fn` itself, not
/// in a task it spawns): the test is found by that thread's name. What
/// [`isolate_test`] says of code before and after the call, output and
/// failures holds here too.
///
/// # Panics
///
/// As [`isolate_test`], when awaited.
///
/// # Examples
///
/// ```no_run
/// #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
/// async fn serves_with_tokio() {
///     hermetic::isolate_test_async(async {
///         let l = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
///         assert_eq!(l.local_addr().unwrap().port(), 8080);
///     })
///     .await;
/// }
/// ```
pub fn isolate_test_async<Fut>(body: Fut) -> impl Future<Output = ()> + use<Fut>
where
    Fut: Future<Output: std::process::Termination>,
{
    SandboxBuilder::new().isolate_test_async(body)
}

impl SandboxBuilder {
    /// [`isolate_test`] in a sandbox with these options.
    ///
    /// # Panics
    ///
    /// As [`isolate_test`].
    #[track_caller]
    pub fn isolate_test<F: FnOnce() -> R, R: std::process::Termination>(&self, body: F) {
        let call = CALLS.with(|c| c.replace(c.get() + 1));
        if let Some(wanted) = isolated_call() {
            // An earlier call's body ran in a process of its own.
            if call < wanted {
                return;
            }
            run_body(body);
        }
        if let Err(message) = test_name().and_then(|name| self.run_isolated(call, &name)) {
            panic!("{message}");
        }
    }

    /// [`isolate_test_async`] in a sandbox with these options.
    ///
    /// # Panics
    ///
    /// As [`isolate_test_async`], when awaited.
    pub fn isolate_test_async<Fut>(&self, body: Fut) -> impl Future<Output = ()> + use<Fut>
    where
        Fut: Future<Output: std::process::Termination>,
    {
        // Taken now, on the test's thread: the future may be polled on
        // another (a runtime's worker).
        let call = CALLS.with(|c| c.replace(c.get() + 1));
        let name = test_name();
        let builder = self.clone();
        async move {
            if let Some(wanted) = isolated_call() {
                if call < wanted {
                    return;
                }
                run_body_async(body).await;
            }
            let outcome = match name {
                Ok(name) => on_a_thread(move || builder.run_isolated(call, &name)).await,
                Err(e) => Err(e),
            };
            if let Err(message) = outcome {
                panic!("{message}");
            }
        }
    }

    /// Runs the test `name` again in a new sandbox; with `HERMETIC_KEEP`,
    /// a failed one is kept, and the message says how to look inside.
    fn run_isolated(&self, call: u32, name: &str) -> Result<(), String> {
        let (sandbox, mut isolated) = self.start_isolated(call, name)?;
        let outcome = isolated.wait(&sandbox);
        let kept = match &outcome {
            Err(_) if crate::sandbox::keep_failed() => {
                sandbox.keep().ok().map(|_| sandbox.enter_command())
            }
            _ => None,
        };
        let pid = sandbox.pid();
        // Every process inside dies with the sandbox (unless kept): the
        // pipes then hold all they will ever hold.
        drop(sandbox);
        isolated.drain();
        match (outcome, kept) {
            (Err(message), Some(enter)) => Err(format!(
                "{message}\n{}",
                crate::sandbox::kept_message(
                    "HERMETIC_KEEP is set: the sandbox",
                    pid,
                    enter.as_deref()
                )
            )),
            (outcome, _) => outcome,
        }
    }

    /// Makes the sandbox whose init process starts the re-executed test
    /// once it is ready (as `hermetic run` does its program: no relay, and
    /// nothing forked from the test process), its stdin the result
    /// channel, its stdout and stderr pipes to this process.
    fn start_isolated(&self, call: u32, name: &str) -> Result<(crate::Sandbox, Isolated), String> {
        use std::os::fd::AsRawFd;
        let name = name.to_owned();
        let exe = std::env::current_exe()
            .map_err(|e| format!("hermetic::isolate_test: finding the test binary: {e}"))?;
        let sys_err =
            |what: &str, e: std::io::Error| format!("hermetic::isolate_test: {what}: {e}");
        let mut program = crate::sandbox::builder::Program::here(
            exe.as_os_str(),
            &[
                name.as_ref(),
                "--exact".as_ref(),
                "--include-ignored".as_ref(),
                "--nocapture".as_ref(),
                "--test-threads=1".as_ref(),
            ],
            &[],
        )
        .map_err(|e| format!("hermetic::isolate_test: the test's command line: {e}"))?;
        program.args[0] =
            std::ffi::CString::new(format!("{ARG0}{call}")).expect("no NUL in a number");
        program.fits().map_err(|why| {
            format!(
                "hermetic::isolate_test: the test cannot be started inside: {why} (a very large \
                 environment?)"
            )
        })?;
        // hermetic's own fds: closed in every process forked for a run,
        // whichever test thread forks it, so no other test can hold (and
        // forge) this channel or these pipes.
        let (result, channel) =
            fd::pipe_read_never_blocks().map_err(|e| sys_err("creating the result channel", e))?;
        let (stdout, stdout_w) =
            fd::pipe_read_never_blocks().map_err(|e| sys_err("creating the output pipes", e))?;
        let (stderr, stderr_w) =
            fd::pipe_read_never_blocks().map_err(|e| sys_err("creating the output pipes", e))?;
        let mut builder = self
            .with_default_host(crate::HostMode::CopyOnWrite)
            .into_owned();
        // The test binary's directory, should the sandbox's own /tmp or
        // /var/tmp hide it (a target dir there, or a nextest archive
        // extracted there, with no CACHEDIR.TAG to name it a target dir),
        // as `hermetic run` does for its program.
        if let Some(dir) = exe.parent().and_then(|d| std::fs::canonicalize(d).ok()) {
            builder.visible(dir);
        }
        builder.__program(program).program_stdio([
            channel.as_raw_fd(),
            stdout_w.as_raw_fd(),
            stderr_w.as_raw_fd(),
        ]);
        let sandbox = builder
            .build()
            .map_err(|e| format!("hermetic::isolate_test: cannot create a sandbox: {e}"))?;
        // The re-executed test holds the write ends now.
        drop((channel, stdout_w, stderr_w));
        let limit = self.output_limit_of();
        // What the re-executed libtest prints before the body runs.
        let preamble = format!("\nrunning 1 test\ntest {name} ... ").into_bytes();
        let isolated = Isolated {
            name,
            exe,
            result,
            channel: Channel::default(),
            streams: [
                Stream::new(Arc::new(stdout), false, limit).skipping(preamble),
                Stream::new(Arc::new(stderr), true, limit),
            ],
        };
        Ok((sandbox, isolated))
    }
}

/// The name of the test whose thread this is: libtest names each test's
/// thread after the test, a Rust path (`module::test`). Another thread's
/// name (`main`, a runtime's worker: tokio's `tokio-runtime-worker` or
/// `tokio-rt-worker`, async-std's) is no test's.
fn test_name() -> Result<String, String> {
    let thread = std::thread::current();
    let name = thread.name();
    let a_path = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == ':')
            && n.split("::").all(|part| !part.is_empty())
    };
    name.filter(|n| *n != "main" && a_path(n))
        .map(str::to_owned)
        .ok_or_else(|| {
            let this = name.map_or("has no name".to_owned(), |n| format!("is named {n:?}"));
            format!(
                "hermetic::isolate_test must be called from a test's own thread: it finds the \
                 test to run again by the name libtest gives that thread, and this thread {this} \
                 (in an async test, call it in the test's own async fn, not in a task it \
                 spawns)"
            )
        })
}

/// In the re-executed test (see the module's docs), which `isolate_test`
/// call of its test it is for; `None` in any other process.
fn isolated_call() -> Option<u32> {
    std::env::args_os()
        .next()?
        .to_str()?
        .strip_prefix(ARG0)?
        .parse()
        .ok()
}

/// Runs `f` on a thread of its own and waits for its value without
/// blocking the caller's thread: any executor may poll this. The thread
/// inherits the caller's libtest capture, so what it forwards lands in the
/// test's output.
async fn on_a_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::sync::Mutex;
    use std::task::{Poll, Waker};
    struct Slot<T> {
        value: Option<T>,
        waker: Option<Waker>,
    }
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    let theirs = Arc::clone(&slot);
    crate::sys::spawn_quiet("hermetic-isolate", move || {
        let value = f();
        let waker = {
            let mut slot = theirs.lock().unwrap_or_else(|e| e.into_inner());
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    })
    .expect("hermetic::isolate_test_async: starting the thread that waits");
    std::future::poll_fn(|cx| {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        match slot.value.take() {
            Some(value) => Poll::Ready(value),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    })
    .await
}

/// A re-executed test, seen from the test process (its end: the
/// sandbox's report of its program's).
struct Isolated {
    name: String,
    /// The test binary, as the sandbox's init process starts it.
    exe: std::path::PathBuf,
    /// The read end of the result channel.
    result: Fd,
    channel: Channel,
    streams: [Stream; 2],
}

/// What came on the result channel.
struct Channel {
    started: bool,
    frame: FrameReader,
    /// The channel broke its protocol.
    garbled: Option<String>,
    /// At its end: every write end is closed.
    ended: bool,
}

impl Default for Channel {
    fn default() -> Channel {
        Channel {
            started: false,
            frame: FrameReader::new(MAX_RESULT),
            garbled: None,
            ended: false,
        }
    }
}

impl Channel {
    /// Reads what the pipe holds now (never blocks: only as many bytes as
    /// `FIONREAD` says, whatever the pipe's flags).
    fn read(&mut self, fd: &Fd, hung_up: bool) {
        use crate::sys::Pending;
        let mut buf = [0u8; 16 * 1024];
        while self.garbled.is_none() && self.frame.frame().is_none() {
            let mut bytes = match crate::sys::read_pending(fd.as_fd(), &mut buf) {
                Pending::Empty => {
                    self.ended |= hung_up;
                    return;
                }
                // Taken out by another reader since the look (the body,
                // through a read end of its own): wait for what comes next.
                Pending::Taken => return,
                Pending::Ended | Pending::Failed(_) => {
                    self.ended = true;
                    return;
                }
                Pending::Read(n) => &buf[..n],
            };
            if !self.started {
                if bytes[0] != STARTED {
                    self.garbled = Some(format!("a first byte of {:#04x}", bytes[0]));
                    return;
                }
                self.started = true;
                bytes = &bytes[1..];
            }
            if let Err(e) = self.frame.feed(bytes) {
                self.garbled = Some(e.to_string());
            }
        }
    }
}

impl Isolated {
    /// Forwards the child's output until it exits or the sandbox's timeout
    /// passes, and tells how the body ended.
    fn wait(&mut self, sandbox: &crate::Sandbox) -> Result<(), String> {
        let timeout = sandbox.timeout();
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let Some(ended) = sandbox.program_report.as_ref() else {
            return Err("hermetic::isolate_test: the sandbox started no test".into());
        };
        // Polled until at their end (every writer gone and nothing left):
        // a pipe at its end is always ready, and polling it would spin.
        let mut open = [true, true];
        let timed_out = loop {
            let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            // (fd, what it is): 0, 1 the streams, 2 the result channel.
            let mut polled = vec![(ended.as_fd(), usize::MAX)];
            for (i, stream) in self.streams.iter().enumerate() {
                if open[i] {
                    polled.push((stream.fd(), i));
                }
            }
            if !self.channel.ended {
                polled.push((self.result.as_fd(), 2));
            }
            let fds: Vec<_> = polled.iter().map(|(fd, _)| *fd).collect();
            let ready = match crate::sys::poll(&fds, wait) {
                Ok(ready) => ready,
                Err(libc::EINTR) => continue,
                Err(e) => {
                    return Err(format!(
                        "hermetic::isolate_test: waiting for the isolated test: {}",
                        std::io::Error::from_raw_os_error(e)
                    ));
                }
            };
            let which: Vec<usize> = polled.iter().map(|(_, w)| *w).collect();
            for (r, &what) in ready.iter().zip(&which).skip(1) {
                if !r.any {
                    continue;
                }
                if what == 2 {
                    self.channel.read(&self.result, r.hung_up);
                    continue;
                }
                let stream = &mut self.streams[what];
                stream.pump();
                if r.hung_up && crate::sys::pending_bytes(stream.fd()) == Ok(0) {
                    open[what] = false;
                }
            }
            if ready[0].any {
                break false;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break true;
            }
        };
        if timed_out {
            // Dropping the sandbox, next, takes the test with it; a sandbox
            // kept (HERMETIC_KEEP) would not, so the test is killed first,
            // whatever comes next (the init process reads the kill before a
            // keep).
            crate::Sandbox::__signal_program(sandbox.__program_signals(), libc::SIGKILL);
            // Gone before this says so (the init process reports its end
            // once it has reaped it).
            let _ = sandbox.__program_end(Some(std::time::Duration::from_secs(5)));
            return Err(format!(
                "hermetic::isolate_test: the isolated test timed out after {:?} and was killed",
                timeout.unwrap_or_default()
            ));
        }
        let end = sandbox.__program_end(None);
        // The process has exited: all it sent is in the pipe.
        self.channel.read(&self.result, false);
        // A death a limit of the sandbox's most likely brought, named.
        let limit = match &end {
            Ok(Some(ProgramEnd::Signaled(sig))) => sandbox.__limit_killed(*sig),
            _ => None,
        };
        self.outcome(end).map_err(|e| match limit {
            Some(limit) => format!(
                "{e}
  most likely by the sandbox's {limit}"
            ),
            None => e,
        })
    }

    /// How the body ended, from its result (if any) and how the process
    /// ended.
    fn outcome(&self, end: Result<Option<ProgramEnd>, crate::Error>) -> Result<(), String> {
        let name = &self.name;
        if let Some(why) = &self.channel.garbled {
            return Err(format!(
                "hermetic::isolate_test: the isolated test's result channel was garbled ({why}): \
                 did the body write to the fd its process got as stdin?"
            ));
        }
        match self.channel.frame.frame() {
            // A body that returned has its process exit 0 right after its
            // frame. Ended otherwise, the frame is not trusted: any
            // process inside that runs as the body does (a program it
            // started) can reach its fds through /proc, write "returned"
            // into the channel and kill it before it fails.
            Some((Tag::Value, failure)) => {
                return match &end {
                    Ok(Some(ProgramEnd::Exited(0))) if failure.is_empty() => Ok(()),
                    Ok(Some(ProgramEnd::Exited(0))) => Err(
                        "the isolated test's body returned a failure (its `Error: ...` is in \
                         the output above)"
                            .to_owned(),
                    ),
                    other => Err(format!(
                        "hermetic::isolate_test: the isolated test's body said it returned, \
                         but its process then {}: not taken as a pass (a process inside \
                         that can reach the body's fds, a program it started, could have \
                         written that and ended it)",
                        match other {
                            Ok(Some(ProgramEnd::Exited(code))) => {
                                format!("exited with status {code}")
                            }
                            Ok(Some(ProgramEnd::Signaled(sig))) => {
                                format!("was killed by {}", crate::sys::signal_name(*sig))
                            }
                            Ok(_) => "did not end".to_owned(),
                            Err(e) => format!("could not be waited for ({e})"),
                        }
                    )),
                };
            }
            Some((Tag::Panic, payload)) => {
                let report: PanicReport = postcard::from_bytes(payload).map_err(|e| {
                    format!("hermetic::isolate_test: an undecodable panic report: {e}")
                })?;
                let at = report
                    .location
                    .as_ref()
                    .map_or_else(|| "<unknown location>".to_owned(), PanicLocation::to_string);
                return Err(format!(
                    "panicked inside the isolated test at {at}:\n{}",
                    report.message
                ));
            }
            Some((tag, _)) => {
                return Err(format!(
                    "hermetic::isolate_test: an unexpected result ({tag:?})"
                ));
            }
            None => {}
        }
        let end =
            end.map_err(|e| format!("hermetic::isolate_test: waiting for the isolated test: {e}"))?;
        let (how, exited_0) = match end {
            Some(ProgramEnd::Signaled(sig)) => (
                format!("was killed by {}", crate::sys::signal_name(sig)),
                false,
            ),
            Some(ProgramEnd::Exited(code)) => (format!("exited with status {code}"), code == 0),
            Some(ProgramEnd::NotStarted(e)) => {
                // Its directory is shown inside whatever the host mode:
                // only a mount of the builder's can hide it.
                let why = if e.kind() == std::io::ErrorKind::NotFound {
                    "\n  its directory is shown inside, but a mount of the builder's \
                     (`tmpfs`, `bind`) at or above it covers it: mount elsewhere, or bind \
                     the binary's directory in again at its own path"
                } else {
                    ""
                };
                return Err(format!(
                    "hermetic::isolate_test: the test binary {} could not be started in the \
                     sandbox: {e}{why}",
                    self.exe.display()
                ));
            }
            None => ("did not end".to_owned(), false),
        };
        if !self.channel.started {
            return Err(format!(
                "hermetic::isolate_test: the re-executed test binary {how} without running \
                 {name}'s body (no test of that exact name there? is it filtered out by a cfg?)"
            ));
        }
        Err(format!(
            "hermetic::isolate_test: the isolated test {how} before the body ended, without a \
             result{}",
            if exited_0 {
                " (std::process::exit in the body?)"
            } else {
                ""
            }
        ))
    }

    /// Forwards what the pipes hold now and what was kept of the rest;
    /// waits for nothing (a process outside the sandbox, another test's
    /// fork, may hold a copy of a write end).
    fn drain(&mut self) {
        for stream in &mut self.streams {
            stream.pump();
            stream.finish();
        }
    }
}

/// The re-executed test's side: takes the result channel off stdin, runs
/// the body, sends its outcome, and exits.
fn run_body<F: FnOnce() -> R, R: std::process::Termination>(body: F) -> ! {
    let channel = Reporter::start();
    crate::fork::panic_hook::RECORD_PANIC.with(|r| r.set(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| passed(body())));
    crate::fork::panic_hook::RECORD_PANIC.with(|r| r.set(false));
    channel.finish(outcome)
}

/// [`run_body`] for a future: awaited on the test's own runtime (the one
/// `#[tokio::test]` made in this process), each poll under `catch_unwind`.
async fn run_body_async<Fut: Future<Output: std::process::Termination>>(body: Fut) -> ! {
    let channel = Reporter::start();
    let mut body = std::pin::pin!(body);
    let outcome = std::future::poll_fn(|cx| {
        // Set around each poll: the runtime may poll on another thread.
        crate::fork::panic_hook::RECORD_PANIC.with(|r| r.set(true));
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body.as_mut().poll(cx)));
        crate::fork::panic_hook::RECORD_PANIC.with(|r| r.set(false));
        match polled {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(value)) => std::task::Poll::Ready(Ok(passed(value))),
            Err(payload) => std::task::Poll::Ready(Err(payload)),
        }
    })
    .await;
    channel.finish(outcome)
}

/// Whether what the body returned is a pass, as libtest takes a test's
/// value: an `Err` is printed (`Error: ...`) and fails.
fn passed(value: impl std::process::Termination) -> bool {
    value.report() == std::process::ExitCode::SUCCESS
}

/// The re-executed process's end of the result channel.
struct Reporter(OwnedFd);

impl Reporter {
    /// Takes the channel off stdin and says the body starts.
    fn start() -> Reporter {
        let channel = match take_channel() {
            Ok(fd) => Reporter(fd),
            Err(e) => {
                eprintln!("hermetic::isolate_test: taking the result channel off stdin: {e}");
                std::process::exit(101)
            }
        };
        channel.send(&[STARTED]);
        crate::fork::panic_hook::install_panic_hook();
        channel
    }

    fn send(&self, bytes: &[u8]) {
        if let Err(errno) = crate::sys::write_all(self.0.as_fd(), bytes) {
            eprintln!(
                "hermetic::isolate_test: sending the result: {}",
                std::io::Error::from_raw_os_error(errno)
            );
            std::process::exit(101)
        }
    }

    /// Sends how the body ended and exits: code after the `isolate_test`
    /// call runs in the test process only.
    /// `outcome`: whether the body returned a pass, or its panic.
    fn finish(self, outcome: std::thread::Result<bool>) -> ! {
        let frame = match outcome {
            Ok(true) => frame::encode_frame(Tag::Value, &[]),
            // A failure returned: one byte (an empty payload is a pass).
            Ok(false) => frame::encode_frame(Tag::Value, &[1]),
            Err(payload) => {
                let report = PanicReport {
                    message: crate::child::runner::payload_message(&*payload),
                    location: crate::fork::panic_hook::PANIC_AT.with(|p| p.borrow_mut().take()),
                };
                frame::encode_frame(
                    Tag::Panic,
                    &postcard::to_allocvec(&report).unwrap_or_default(),
                )
            }
        };
        // What the body printed first, then the result: once the test
        // process has it, this process is of no more use.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        self.send(&frame);
        std::process::exit(0)
    }
}

/// The result channel, which the test process gave this process as stdin:
/// a close-on-exec copy, with `/dev/null` on fd 0 instead, so that no
/// program the body starts holds it.
fn take_channel() -> std::io::Result<OwnedFd> {
    let channel = std::io::stdin().as_fd().try_clone_to_owned()?;
    let null = std::fs::File::open("/dev/null")?;
    crate::sys::replace_stdin(null.as_fd()).map_err(std::io::Error::from_raw_os_error)?;
    Ok(channel)
}
