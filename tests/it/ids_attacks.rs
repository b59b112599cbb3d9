//! Attacks on the ids inside a sandbox made by root ("A user of its own",
//! README): which host users' files code inside may read, write or reach,
//! depending on who owns the test's own tree (the working directory and
//! `CARGO_MANIFEST_DIR`), and whether every such setup still makes a
//! sandbox with the ids it promises.
//!
//! Root only: rootless, the caller cannot make a tree of another user's to
//! try, and maps no host id but its own. Each test is a finding; those
//! still open are `#[ignore]`d with the finding as the reason (`cargo test
//! --test it ids_attacks -- --ignored` shows them).

use crate::common::{self, hermetic_command as hermetic, is_root};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A directory under `/var/tmp` whose way is open to all (as a CI
/// workspace's is), holding `tree`, owned by `uid:gid`; `None`, said,
/// where the caller is not root.
fn tree_owned_by(uid: u32, gid: u32) -> Option<(tempfile::TempDir, PathBuf)> {
    if !is_root() {
        common::skip("needs root to make a tree of another user's");
        return None;
    }
    let base = tempfile::Builder::new()
        .prefix("hermetic-ids")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tree = base.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("lib.rs"), "host\n").unwrap();
    for path in [&tree, &tree.join("lib.rs")] {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
    Some((base, tree))
}

/// A file of user `uid:gid`'s at `path`, readable by its owner and its
/// group only, as a user's files are.
fn private_file(path: &Path, uid: u32, gid: u32) {
    std::fs::write(path, "secret\n").unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640)).unwrap();
}

/// `hermetic run ARGS -- sh -c SCRIPT` in `dir`, whose tree it is
/// (`CARGO_MANIFEST_DIR` too).
fn run_in(dir: &Path, args: &[&str], script: &str) -> Output {
    hermetic()
        .args(["run"])
        .args(args)
        .args(["--", "sh", "-c", script])
        .current_dir(dir)
        .env("CARGO_MANIFEST_DIR", dir)
        .output()
        .unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Promise (README, "A user of its own" and "The host as a test sees it"):
/// as root, ids 0-65535 exist inside, the owner of the test's own tree is
/// that host user inside too (a CI user's checkout is written as outside),
/// and sandboxes nest two levels deep. Attack: `hermetic run` inside
/// `hermetic run`, in a checkout of uid 1001's (a nextest suite run under
/// hermetic whose tests run `hermetic run` again). Found: the outer
/// sandbox's uid map is split around 1001, which the inner one did not
/// take for ids 1-65535: it got one id, so `setuid` failed and the tree
/// the outer sandbox writes was refused (`Permission denied`).
#[test]
fn as_root_hermetic_run_in_hermetic_run_keeps_every_id_in_another_users_checkout() {
    let Some((_base, tree)) = tree_owned_by(1001, 1001) else {
        return;
    };
    let hermetic_bin = env!("CARGO_BIN_EXE_hermetic");
    let inner = "echo a > new && echo write-ok; \
                 setpriv --reuid=5 --regid=5 --clear-groups true && echo ids-ok; \
                 ls -ldn . | cut -d' ' -f3,4";
    let out = run_in(
        &tree,
        &[],
        &format!("{hermetic_bin} run -- sh -c \"{inner}\""),
    );
    assert_eq!(
        text(&out.stdout),
        "write-ok\nids-ok\n1001 1001\n",
        "{}",
        text(&out.stderr)
    );
    assert!(!tree.join("new").exists(), "a write reached the host");
}

/// Promise (README, "A user of its own"): as root, root inside has no power
/// over what other host users own, but over the owner of the test's own
/// tree (a checkout of another user's). Attack: the working directory is a
/// tree of root's own whose group is a shared one (as `/var/mail` is
/// `root:mail`, `/usr/local` on Debian `root:staff`); root inside takes
/// that group and reads a file of another user's (uid 1002) that only its
/// owner and that group may read, outside the tree. Found: the tree's
/// group was mapped whoever owned it, so root inside read uid 1002's file
/// (with a read-only host; copy-on-write, the overlay's own check refused
/// it). A tree of root's needs no other host id.
#[test]
fn as_root_the_group_of_a_tree_of_roots_opens_no_file_of_another_users() {
    let Some((base, tree)) = tree_owned_by(0, 1050) else {
        return;
    };
    let theirs = base.path().join("theirs");
    private_file(&theirs, 1002, 1050);
    let script = format!(
        "setpriv --regid=1050 --clear-groups cat {} 2>/dev/null && echo read || echo refused",
        theirs.display()
    );
    let out = run_in(&tree, &["--host=ro"], &script);
    assert_eq!(text(&out.stdout), "refused\n", "{}", text(&out.stderr));
}

/// Promise (README, "A user of its own"): as root, the owner of the test's
/// own tree is that host user inside too, so a CI user's checkout is
/// written and read inside as outside. Attack: the checkout's owner has a
/// uid above 65535 (a directory service's users often do: 100001,
/// 1234567). Found: only owners within 1-65535 were kept, so the tree was
/// nobody's inside (65534) and every write in it was refused.
#[test]
fn as_root_a_checkout_of_a_user_with_a_uid_above_65535_is_writable_as_outside() {
    let Some((_base, tree)) = tree_owned_by(1_234_567, 1_234_567) else {
        return;
    };
    let out = run_in(
        &tree,
        &[],
        "echo a >> lib.rs && echo write-ok; ls -ln lib.rs | cut -d' ' -f3,4",
    );
    assert_eq!(
        text(&out.stdout),
        "write-ok\n1234567 1234567\n",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("lib.rs")).unwrap(),
        "host\n"
    );
}

/// Promise (README, "Requirements and limits" and "The host as a test sees
/// it"): a sandbox made inside a sandbox works, and a copy-on-write one is
/// writable wherever its caller could write. Attack: as root, in a
/// checkout of uid 1001's, a closure of a copy-on-write sandbox (which
/// writes the tree, 1001 being itself there) makes a copy-on-write sandbox
/// and writes the same tree from it. Found: a sandbox made in a closure
/// mapped one id (its launched child wrote its own map, its /proc files
/// being root's outside until its exec, which a root caller's closure
/// is, though), so the tree was nobody's in it and the write was refused
/// (`EACCES`), where the closure around it wrote.
#[test]
fn as_root_a_sandbox_made_in_a_closure_writes_another_users_checkout_as_the_closure_does() {
    let Some((_base, tree)) = tree_owned_by(1001, 1001) else {
        return;
    };
    helper_succeeds_in(&tree, "sandbox_in_a_closure_writes_the_tree", &[]);
    assert_eq!(
        std::fs::read_to_string(tree.join("lib.rs")).unwrap(),
        "host\n"
    );
}

/// Helper of the test above, in the tree it makes: the closure's write and
/// its inner sandbox's.
#[test]
#[ignore = "helper: run by as_root_a_sandbox_made_in_a_closure_writes_another_users_checkout_as_the_closure_does"]
fn sandbox_in_a_closure_writes_the_tree() {
    if !Path::new("lib.rs").exists() {
        common::skip("a helper, run in the tree its test makes");
        return;
    }
    let ns = common::cow_sandbox();
    let (outer, inner) = ns.run(|| {
        let write = || {
            std::fs::OpenOptions::new()
                .append(true)
                .open("lib.rs")
                .and_then(|mut f| std::io::Write::write_all(&mut f, b"x\n"))
                .map_err(|e| e.to_string())
        };
        let outer = write();
        let inner = common::cow_sandbox().run(write);
        (outer, inner)
    });
    assert_eq!(outer, Ok(()), "the closure's write");
    assert_eq!(inner, Ok(()), "the inner sandbox's write");
}

/// Promise (README, "A user of its own" and the row on unix sockets): as
/// root, in a checkout of uid 1001's, 1001 is itself inside, but no other
/// host user is. Attack: a closure (root inside, every capability there)
/// reads a private file of uid 1002's, connects to a unix socket only 1002
/// may use, and runs a setuid program of 1002's to become it. Holds: each
/// is refused (`EACCES`; the setuid bit of an id the sandbox does not map
/// is ignored), while 1001's own file is read.
#[test]
fn as_root_in_another_users_checkout_a_third_users_files_stay_closed() {
    let Some((base, tree)) = tree_owned_by(1001, 1001) else {
        return;
    };
    std::fs::set_permissions(tree.join("lib.rs"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let theirs = base.path().join("theirs");
    private_file(&theirs, 1002, 1002);
    let socket_path = base.path().join("theirs.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
    std::os::unix::fs::chown(&socket_path, Some(1002), Some(1002)).unwrap();
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let setuid = base.path().join("theirs-id");
    std::fs::copy("/usr/bin/id", &setuid).unwrap();
    std::os::unix::fs::chown(&setuid, Some(1002), Some(1002)).unwrap();
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    helper_succeeds_in(
        &tree,
        "a_closure_tries_a_third_users_files",
        &[("HERMETIC_IDS_THEIRS", base.path())],
    );
}

/// Helper of the test above, in the tree it makes.
#[test]
#[ignore = "helper: run by as_root_in_another_users_checkout_a_third_users_files_stay_closed"]
fn a_closure_tries_a_third_users_files() {
    let Some(base) = std::env::var_os("HERMETIC_IDS_THEIRS").map(PathBuf::from) else {
        common::skip("a helper, run with the files its test makes");
        return;
    };
    let ns = hermetic::Sandbox::new().unwrap();
    let (own, file, socket, setuid) = ns.run(move || {
        let err = |r: std::io::Result<()>| r.map_err(|e| e.kind().to_string());
        let own = err(std::fs::read("lib.rs").map(drop));
        let file = err(std::fs::read(base.join("theirs")).map(drop));
        let socket =
            err(std::os::unix::net::UnixStream::connect(base.join("theirs.sock")).map(drop));
        let setuid = std::process::Command::new(base.join("theirs-id"))
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .map_err(|e| e.to_string());
        (own, file, socket, setuid)
    });
    let denied = Err("permission denied".to_owned());
    assert_eq!(own, Ok(()), "the tree owner's own file");
    assert_eq!(file, denied, "a private file of uid 1002's");
    assert_eq!(socket, denied, "a unix socket only uid 1002 may use");
    assert_eq!(
        setuid,
        Ok("0\n".to_owned()),
        "a setuid program of uid 1002's"
    );
}

/// Runs the helper test `name` of this binary with `tree` as its working
/// directory and crate, and `env`; fails with its output unless it passes.
fn helper_succeeds_in(tree: &std::path::Path, name: &str, env: &[(&str, &std::path::Path)]) {
    let mut command = common::self_command(name);
    command.current_dir(tree).env("CARGO_MANIFEST_DIR", tree);
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
