//! Builds the sandbox's init program (`init/main.rs`) with the same `rustc`
//! as the crate, for the same target, as a small static `no_std` executable
//! that the crate embeds (`include_bytes!`) and executes from memory.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=init/main.rs");
    println!("cargo:rerun-if-changed=src/proto/wire.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" || !matches!(arch.as_str(), "x86_64" | "aarch64") {
        panic!("hermetic supports Linux on x86_64 and aarch64; this build targets {target}");
    }
    let exe = out.join("hermetic-init");
    let mut cmd = Command::new(&rustc);
    cmd.args([
        "--edition=2021",
        "--crate-type=bin",
        "--crate-name=hermetic_init",
    ])
    .args(["--target", &target])
    .args([
        "-C",
        "opt-level=s",
        "-C",
        "panic=abort",
        "-C",
        "debuginfo=0",
    ])
    .args(["-C", "strip=symbols", "-C", "relocation-model=static"])
    .args(["-C", "target-feature=+crt-static"])
    .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
    .args([
        "-C",
        "link-arg=-static",
        "-C",
        "link-arg=-Wl,--build-id=none",
    ]);
    // A linker set for the target (cross builds) is the one to use here too.
    let key = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    if let Some(linker) = env::var_os(&key) {
        let mut arg = std::ffi::OsString::from("linker=");
        arg.push(linker);
        cmd.arg("-C").arg(arg);
    }
    cmd.arg("-o").arg(&exe).arg("init/main.rs");
    // The crate's own flags (say, -C instrument-coverage) are not meant for
    // this program.
    cmd.env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS");
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {rustc:?} to build the init program: {e}"));
    assert!(
        status.success(),
        "building hermetic's init program (init/main.rs) failed: {status}"
    );
}
