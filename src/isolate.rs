//! Whole tests in a sandbox: [`isolate_test`] re-executes the test binary
//! for just the calling test, inside a new sandbox, and reports what
//! happened there as the test's own outcome.
//!
//! The child is the same test binary, started with `sandbox.command()`
//! (inside the sandbox from its first instruction, no fork of the test
//! process), as `BINARY NAME --exact --include-ignored --nocapture
//! --test-threads=1`, with `HERMETIC_ISOLATED_TEST=NAME` in its
//! environment. There, `isolate_test` runs the body; a panic is printed as
//! usual and also sent, with its location, on one marked line of stderr,
//! which the parent takes out of the output it forwards.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::channel::PanicReport;
use crate::error::PanicLocation;
use crate::sandbox::SandboxBuilder;

/// The environment variable that marks the re-executed test, with its name.
const MARKER_ENV: &str = "HERMETIC_ISOLATED_TEST";
/// The start of the stderr line on which the child sends its panic.
const PANIC_LINE: &str = "\u{1}hermetic-isolated-panic ";
/// The stderr line with which the child says the body returned.
const DONE_LINE: &str = "\u{1}hermetic-isolated-done";

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
/// re-executed one), code after it only in the test's; the body only in the
/// re-executed one. Values cannot be passed in or out: compute them inside.
///
/// # Panics
///
/// When the body panics (with its message and location), when the process
/// dies or exits before the body ends, when the run takes longer than the
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
#[track_caller]
pub fn isolate_test<F: FnOnce()>(body: F) {
    SandboxBuilder::new().isolate_test(body)
}

impl SandboxBuilder {
    /// [`isolate_test`] in a sandbox with these options.
    ///
    /// # Panics
    ///
    /// As [`isolate_test`].
    #[track_caller]
    pub fn isolate_test<F: FnOnce()>(&self, body: F) {
        if std::env::var_os(MARKER_ENV).is_some() {
            return run_body(body);
        }
        if let Err(message) = self.run_isolated() {
            panic!("{message}");
        }
    }

    /// [`run_isolated_in`](Self::run_isolated_in) a new sandbox; with
    /// `HERMETIC_KEEP`, a failed one is kept, and the message says how to
    /// look inside.
    fn run_isolated(&self) -> Result<(), String> {
        let sandbox = self
            .with_default_host(crate::HostMode::CopyOnWrite)
            .build()
            .map_err(|e| format!("hermetic::isolate_test: cannot create a sandbox: {e}"))?;
        let outcome = self.run_isolated_in(&sandbox);
        match outcome {
            Err(message) if crate::sandbox::keep_failed() => match sandbox.keep() {
                Ok(enter) => Err(format!(
                    "{message}\nhermetic: HERMETIC_KEEP is set: the sandbox is kept (init \
                     process {}); look inside with: {enter} sh",
                    sandbox.pid()
                )),
                Err(_) => Err(message),
            },
            outcome => outcome,
        }
    }

    /// The parent's side: starts the re-executed test in `sandbox`,
    /// forwards its output and tells how it ended.
    fn run_isolated_in(&self, sandbox: &crate::Sandbox) -> Result<(), String> {
        let current = std::thread::current();
        let name = current
            .name()
            .filter(|n| *n != "main")
            .ok_or(
                "hermetic::isolate_test must be called from a test: it finds the test to \
                    run again by the name libtest gives the test's thread",
            )?
            .to_owned();
        let exe = std::env::current_exe()
            .map_err(|e| format!("hermetic::isolate_test: finding the test binary: {e}"))?;
        let mut child = sandbox
            .command(&exe)
            .args([
                name.as_str(),
                "--exact",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(MARKER_ENV, &name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("hermetic::isolate_test: starting {}: {e}", exe.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        // Forwarded by threads of this test's (which inherit libtest's
        // capture of the test's output).
        let out = {
            let name = name.clone();
            std::thread::spawn(move || forward(stdout, false, &name))
        };
        let err = {
            let name = name.clone();
            std::thread::spawn(move || forward(stderr, true, &name))
        };
        let deadline = sandbox
            .timeout()
            .and_then(|t| Instant::now().checked_add(t));
        let status = wait(&mut child, deadline);
        let _ = out.join();
        let (panic, done) = err.join().unwrap_or((None, false));
        let status = match status {
            Ok(status) => status,
            Err(after) => {
                return Err(format!(
                    "hermetic::isolate_test: the isolated test timed out after {after:?} and was \
                     killed"
                ));
            }
        };
        if let Some(report) = panic {
            let at = report
                .location
                .as_ref()
                .map_or_else(|| "<unknown location>".to_owned(), PanicLocation::to_string);
            return Err(format!(
                "panicked inside the isolated test at {at}:\n{}",
                report.message
            ));
        }
        if status.success() && done {
            return Ok(());
        }
        if status.success() {
            return Err(format!(
                "hermetic::isolate_test: the re-executed test binary did not run {name} (no \
                 test of that exact name there?)"
            ));
        }
        use std::os::unix::process::ExitStatusExt;
        Err(match status.signal() {
            Some(sig) => format!(
                "hermetic::isolate_test: the isolated test was killed by {} before it ended",
                crate::sys::signal_name(sig)
            ),
            None => format!(
                "hermetic::isolate_test: the isolated test exited with status {} before it \
                 ended (std::process::exit in the body, or the test was not found: is it \
                 filtered out by a cfg?)",
                status.code().unwrap_or(-1)
            ),
        })
    }
}

/// The re-executed test's side: runs the body, and sends a panic with its
/// location before letting it fail the test.
fn run_body<F: FnOnce()>(body: F) {
    crate::child::install_panic_hook();
    crate::child::RECORD_PANIC.with(|r| r.set(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    crate::child::RECORD_PANIC.with(|r| r.set(false));
    if outcome.is_ok() {
        eprintln!("{DONE_LINE}");
    }
    if let Err(payload) = outcome {
        let report = PanicReport {
            message: crate::child::closure::payload_message(&*payload),
            location: crate::child::PANIC_AT.with(|p| p.borrow_mut().take()),
        };
        let bytes = postcard::to_allocvec(&report).unwrap_or_default();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!("{PANIC_LINE}{hex}");
        std::panic::resume_unwind(payload);
    }
}

/// Copies a child's stream into this test's output, line by line; from
/// stderr, takes out the panic line and returns its report.
fn forward(stream: impl Read, err: bool, name: &str) -> (Option<PanicReport>, bool) {
    let mut report = None;
    let mut done = false;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return (report, done),
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        if err && let Some(hex) = text.trim_end().strip_prefix(PANIC_LINE) {
            report = decode(hex);
            continue;
        }
        if err && text.trim_end() == DONE_LINE {
            done = true;
            continue;
        }
        // libtest starts "test NAME ... " and ends it with the outcome
        // once the test is over; what the test printed meanwhile may share
        // its line.
        let prefix = format!("test {name} ... ");
        let text = text.strip_prefix(prefix.as_str()).unwrap_or(&text);
        if libtest_framing(text, name) {
            continue;
        }
        if err {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }
}

/// The lines the re-executed libtest prints around the one test `name`.
fn libtest_framing(line: &str, name: &str) -> bool {
    let line = line.trim_end();
    matches!(line, "running 1 test" | "failures:" | "ok" | "FAILED")
        || line.starts_with("test result: ")
        || line.strip_prefix("    ") == Some(name)
}

fn decode(hex: &str) -> Option<PanicReport> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    postcard::from_bytes(&bytes?).ok()
}

/// Waits for the child until `deadline`; past it, kills it and returns how
/// long it had.
fn wait(
    child: &mut std::process::Child,
    deadline: Option<Instant>,
) -> Result<std::process::ExitStatus, Duration> {
    let started = Instant::now();
    let pidfd = crate::sys::pidfd_open(child.id() as libc::pid_t).ok();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(started.elapsed());
        }
        match &pidfd {
            // Readable once the child has exited.
            Some(fd) => {
                let _ = crate::sys::poll(&[std::os::fd::AsFd::as_fd(fd)], left);
            }
            None => {
                if let Ok(status) = child.wait() {
                    return Ok(status);
                }
            }
        }
    }
}
