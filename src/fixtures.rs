//! rstest fixtures.

use rstest::fixture;

use crate::sandbox::Sandbox;

/// An rstest fixture: a fresh [`Sandbox`] with the default options.
///
/// ```no_run
/// use hermetic::{isolated, Sandbox};
/// use rstest::rstest;
///
/// #[rstest]
/// fn binds_8080(#[from(isolated)] ns: Sandbox) {
///     let port = ns.run(|| std::net::TcpListener::bind("127.0.0.1:8080").unwrap().local_addr().unwrap().port());
///     assert_eq!(port, 8080);
/// }
/// ```
///
/// # Panics
///
/// When no sandbox can be made on this host; the message names the cause
/// (such as an AppArmor restriction on user namespaces) and the command that
/// lifts it.
#[fixture]
pub fn isolated() -> Sandbox {
    match Sandbox::new() {
        Ok(sandbox) => sandbox,
        Err(e) => panic!("hermetic: cannot create a sandbox on this host: {e}"),
    }
}
