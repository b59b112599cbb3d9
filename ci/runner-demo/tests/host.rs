//! A test that needs no sandbox. It says where it ran, and checks it when
//! told: `RUNNER_DEMO_EXPECT=host` (the `sandboxed` profile scopes its
//! wrapper script to the colliding tests only) or `sandbox` (`hermetic run
//! --` as the runner gives every test one).

/// In the host's first user namespace, uid_map maps every id to itself.
fn in_a_sandbox() -> bool {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap();
    map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"]
}

#[test]
fn runs_where_it_is_put() {
    let sandboxed = in_a_sandbox();
    println!("in a sandbox: {sandboxed}");
    match std::env::var("RUNNER_DEMO_EXPECT").as_deref() {
        Ok("host") => assert!(!sandboxed, "expected to run on the host"),
        Ok("sandbox") => assert!(sandboxed, "expected to run in a sandbox"),
        _ => {}
    }
}
