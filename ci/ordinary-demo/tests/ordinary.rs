//! Tests as people write them. Every test holds 127.0.0.1:8080 while it
//! runs and creates the same files (it expects a fresh machine: each is
//! created with `create_new`), in the places tests normally write:
//!
//! - `$CARGO_TARGET_TMPDIR/ordinary-demo-wrote.state` (where cargo tells
//!   integration tests to write),
//! - `tests/snapshots/ordinary-demo-wrote.snap.new`, next to the sources (a
//!   snapshot tool's pending file),
//! - `$HOME/.cache/ordinary-demo-wrote/token` (a cache),
//! - `/tmp/ordinary-demo-wrote.lock`,
//!
//! and one more through the crate's own binary. Side by side on one machine
//! (or a second time) all but one fail; each in a sandbox of its own, all
//! pass, and nothing they wrote is left: ci/run.sh looks for every path
//! named `*ordinary-demo-wrote*` afterwards.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where cargo tells integration tests to write: set at run time by nextest
/// for a test run from an archive, else where cargo built the test.
fn target_tmpdir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
}

/// The crate's own binary: nextest says where it is at run time (an
/// archive is extracted elsewhere), cargo at build time.
fn own_binary() -> PathBuf {
    std::env::var_os("NEXTEST_BIN_EXE_ordinary_demo")
        .or_else(|| std::env::var_os("NEXTEST_BIN_EXE_ordinary-demo"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ordinary-demo")))
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
}

/// Creates `path` (and its parent), which must not exist yet, holding `who`.
fn create_fresh(path: &Path, who: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {parent:?}: {e}"));
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .unwrap_or_else(|e| panic!("creating {path:?} (another test's is there?): {e}"));
    writeln!(file, "{who}").unwrap();
}

/// What every test does first: the port, then the files.
struct Claimed {
    _port: TcpListener,
    files: Vec<PathBuf>,
}

fn claim(who: &str) -> Claimed {
    let port = TcpListener::bind("127.0.0.1:8080")
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:8080 (another test holds it?): {e}"));
    let files = vec![
        target_tmpdir().join("ordinary-demo-wrote.state"),
        PathBuf::from("tests/snapshots/ordinary-demo-wrote.snap.new"),
        home().join(".cache/ordinary-demo-wrote/token"),
        PathBuf::from("/tmp/ordinary-demo-wrote.lock"),
    ];
    for file in &files {
        create_fresh(file, who);
    }
    Claimed { _port: port, files }
}

#[test]
fn writes_its_state_into_cargo_target_tmpdir() {
    let claimed = claim("target tmpdir");
    let state = &claimed.files[0];
    assert_eq!(fs::read_to_string(state).unwrap(), "target tmpdir\n");
}

#[test]
fn writes_a_pending_snapshot_next_to_its_sources() {
    let claimed = claim("snapshot");
    // Where the sources are at run time (cargo and nextest say; a nextest
    // archive's checkout is elsewhere than the build's).
    let sources = std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set");
    let snap = Path::new(&sources).join(&claimed.files[1]);
    assert_eq!(fs::read_to_string(snap).unwrap(), "snapshot\n");
}

#[test]
fn caches_under_home() {
    let claimed = claim("cache");
    fs::write(home().join(".cache/ordinary-demo-wrote/more"), b"cached").unwrap();
    assert_eq!(fs::read_to_string(&claimed.files[2]).unwrap(), "cache\n");
}

#[test]
fn locks_a_file_in_tmp() {
    let claimed = claim("lock");
    assert_eq!(fs::read_to_string(&claimed.files[3]).unwrap(), "lock\n");
}

#[test]
fn serves_on_8080() {
    let claimed = claim("server");
    let server = std::thread::spawn(move || {
        let (mut conn, _) = claimed._port.accept().unwrap();
        conn.write_all(b"pong").unwrap();
    });
    let mut reply = String::new();
    TcpStream::connect("127.0.0.1:8080")
        .unwrap()
        .read_to_string(&mut reply)
        .unwrap();
    server.join().unwrap();
    assert_eq!(reply, "pong");
}

#[test]
fn reads_a_fixture_relative_to_the_working_directory() {
    let _claimed = claim("fixture");
    let greeting = fs::read_to_string("fixtures/greeting.txt").unwrap();
    assert_eq!(greeting, "hello from a fixture\n");
}

#[test]
fn runs_its_own_binary() {
    let _claimed = claim("binary");
    let out = Command::new(own_binary())
        .args(["fixtures/greeting.txt", "/tmp/ordinary-demo-wrote.out"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"HELLO FROM A FIXTURE\n");
    assert_eq!(
        fs::read_to_string("/tmp/ordinary-demo-wrote.out").unwrap(),
        "HELLO FROM A FIXTURE\n"
    );
}

#[test]
fn writes_a_data_dir_in_its_tree() {
    let _claimed = claim("data");
    fs::create_dir_all("tests/ordinary-demo-wrote-data/deep").unwrap();
    create_fresh(
        Path::new("tests/ordinary-demo-wrote-data/deep/file"),
        "data",
    );
    fs::remove_file("fixtures/greeting.txt").unwrap(); // even a delete stays inside
}
