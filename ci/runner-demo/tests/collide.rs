//! Each test binds 127.0.0.1:8080 and creates /tmp/runner-demo-marker,
//! which must not exist yet: on one machine all but the first fail (and a
//! second run fails whole). In sandboxes, every test passes, every time,
//! and nothing is left in the host's /tmp.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;

fn collide(name: &str) {
    let listener = TcpListener::bind("127.0.0.1:8080").expect("port 8080 is taken");
    let mut marker = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open("/tmp/runner-demo-marker")
        .expect("another test's /tmp/runner-demo-marker is there");
    writeln!(marker, "{name}").unwrap();
    drop(listener);
}

#[test]
fn one() {
    collide("one");
}

#[test]
fn two() {
    collide("two");
}

#[test]
fn three() {
    collide("three");
}

#[test]
fn four() {
    collide("four");
}
