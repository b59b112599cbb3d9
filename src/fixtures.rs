//! rstest fixtures (the default feature `rstest`).

use rstest::fixture;

use crate::net::Network;
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

/// An rstest fixture: a [`Network`] of `hosts` hosts named `h1`, `h2`, ...
/// (three unless told otherwise with `#[with(n)]`).
///
/// ```no_run
/// use hermetic::{network, Network};
/// use rstest::rstest;
///
/// #[rstest]
/// fn replicas_see_each_other(#[from(network)] #[with(4)] net: Network) {
///     assert_eq!(net.hosts().len(), 4);
///     let addr = net.host("h4").addr();
///     let seen = net.host("h1").run(|| {
///         use std::net::ToSocketAddrs;
///         ("h4", 0).to_socket_addrs().unwrap().next().unwrap().ip()
///     });
///     assert_eq!(seen, addr);
/// }
/// ```
///
/// # Panics
///
/// When the network cannot be made; the message says why.
#[fixture]
pub fn network(#[default(3)] hosts: usize) -> Network {
    let mut builder = Network::builder();
    for i in 1..=hosts {
        builder.host(format!("h{i}"));
    }
    match builder.build() {
        Ok(net) => net,
        Err(e) => panic!("hermetic: cannot create a network of {hosts} hosts: {e}"),
    }
}
