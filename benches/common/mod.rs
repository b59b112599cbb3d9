//! What the bench binaries share (`mod common;` in each).

use std::process::{Command, Stdio};

/// Whether `program` is installed here: it answers `--version` and exits 0.
pub fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
