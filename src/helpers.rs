//! Small helpers for code that runs inside a sandbox.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long [`connect_retry`] keeps trying.
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// Connects to `addr`, retrying while the connection is refused, for up to
/// [`CONNECT_PATIENCE`]: for a client that starts right after
/// [`Sandbox::spawn`](crate::Sandbox::spawn) started its server.
///
/// # Panics
///
/// When `addr` does not resolve or no connection succeeds in time; the
/// message has the last error.
///
/// # Examples
///
/// ```no_run
/// let sandbox = hermetic::Sandbox::new().unwrap();
/// let _server = sandbox.spawn(|| {
///     let l = std::net::TcpListener::bind("127.0.0.1:9000").unwrap();
///     let _ = l.accept();
/// });
/// sandbox.run(|| drop(hermetic::connect_retry("127.0.0.1:9000")));
/// ```
#[track_caller]
pub fn connect_retry(addr: impl ToSocketAddrs + std::fmt::Debug) -> TcpStream {
    let deadline = Instant::now() + CONNECT_PATIENCE;
    let mut delay = Duration::from_millis(1);
    loop {
        match TcpStream::connect(&addr) {
            Ok(s) => return s,
            Err(e) if Instant::now() >= deadline => {
                panic!("hermetic: connecting to {addr:?} failed for {CONNECT_PATIENCE:?}: {e}")
            }
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
        }
    }
}
