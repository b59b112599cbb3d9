//! Attacks on the copy-on-write host mode and its layers (on disk under
//! `/var/tmp/hermetic-UID`, in memory in the sandbox's tmpfs): what a
//! hostile or buggy test, or another hermetic process, can make of them.
//!
//! Each test was a finding of an attack on them; those still open are
//! `#[ignore]`d with the finding as the reason (`cargo test --test it
//! disk_attacks -- --ignored` shows them).

use crate::common::{
    self, disk_base, disk_base_entries as base_entries, hermetic_command as hermetic, is_root,
    own_tree_layer_on_disk,
};

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hermetic::{HostMode, Sandbox};

/// Whether `unshare(1)` is here; says so otherwise.
fn cow() -> Sandbox {
    common::cow_sandbox()
}

/// A name no other test or run uses.
fn unique(what: &str) -> String {
    common::unique_name("hermetic-disk", what)
}

fn have_unshare() -> bool {
    let ok = Command::new("unshare")
        .arg("--help")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        common::skip("no unshare(1) here: not tried");
    }
    ok
}

/// `hermetic run -- sh -c SCRIPT` in the working directory, stdin and
/// stdout piped; returns once the script printed "ready".
fn start_waiting(script: &str) -> std::process::Child {
    let mut child = hermetic()
        .args(["run", "--", "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_ready(&mut child);
    child
}

/// Lets a [`start_waiting`] script go on; what it printed after "ready".
fn finish(mut child: std::process::Child) -> String {
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A hermetic process in another PID namespace that shares `/var/tmp` (a
/// sandbox inside `hermetic run --host=writable` as root, `unshare -p`, a
/// container with the host's `/var/tmp`) sweeps the disk base too: it
/// must leave the live layers of sandboxes outside it alone (their lock is
/// held, whatever pid it sees), and the live sandbox keeps what it wrote
/// and can go on writing. (Found when liveness was a pid looked up in the
/// sweeper's own `/proc`.)
#[test]
fn a_hermetic_process_in_another_pid_namespace_leaves_live_layers_alone() {
    if !own_tree_layer_on_disk() || !have_unshare() {
        return;
    }
    let name = unique("live");
    let live = start_waiting(&format!(
        "mkdir {name} && echo ready && read x && touch {name}/after && echo still-writable"
    ));
    let mine = base_entries(&format!("{}.", live.id()));
    assert!(!mine.is_empty(), "no layer of {} on disk", live.id());
    // Another hermetic process, in a PID namespace of its own (rootless:
    // in a user namespace that maps the caller's uid to itself, so that
    // /var/tmp/hermetic-UID is its own too). Whether it makes its sandbox
    // does not matter: it sweeps first.
    let mut other = Command::new("unshare");
    if !is_root() {
        other.args(["--user", "--map-current-user"]);
    }
    let out = other
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_hermetic"))
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    println!("the other process: {out:?}");
    let gone: Vec<&PathBuf> = mine.iter().filter(|l| !l.exists()).collect();
    let said = finish(live);
    assert!(
        gone.is_empty() && said.contains("still-writable"),
        "the live sandbox's layers {gone:?} were removed under it; it said {said:?}"
    );
    assert!(!Path::new(&name).exists());
}

/// The overlays of copy-on-write are split where mounts lie beneath a
/// tree; a tree under `/tmp` or `/var/tmp` (hidden by the sandbox's own)
/// that is not overlaid whole is bound back read-only, mounts beneath it
/// included, and the overlays of its parts come on top of that bind: a
/// mount below the test's tree (a `target` dir on a tmpfs, a bind mount
/// in a checkout under /tmp) is written inside and never outside. (Found
/// when the bind came back with its mounts writable, over the overlays.)
#[test]
fn a_mount_below_the_tests_tree_under_tmp_is_not_written_through() {
    if !have_unshare() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("hermetic-disk-mounted")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::create_dir(dir.path().join("m")).unwrap();
    let Some(out) = common::with_a_mount_below(
        dir.path(),
        &format!(
            "{} run -- sh -c 'echo leaked > m/w && echo wrote'; cat m/w 2>/dev/null || echo private",
            env!("CARGO_BIN_EXE_hermetic")
        ),
    ) else {
        return;
    };
    // Written inside, as it could be outside, and private.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "wrote\nprivate",
        "{out:?}"
    );
}

/// Where a sandbox sees the host's `/var/tmp` (with the working directory
/// `/var/tmp` itself, under a layer; read-only and writable hosts as they
/// are), `/var/tmp/hermetic-UID` is covered: it cannot read what the
/// caller's other sandboxes are writing (their upper layers, live) nor
/// what killed ones left. (Found when it could.)
#[test]
fn a_sandbox_working_in_var_tmp_cannot_read_another_sandboxs_layer() {
    if !own_tree_layer_on_disk() {
        return;
    }
    let secret = unique("secret");
    let file = unique("file");
    let live = start_waiting(&format!("echo {secret} > {file} && echo ready && read x"));
    let out = hermetic()
        .args(["run", "--", "sh", "-c"])
        .arg(format!(
            "grep -rl {secret} {} 2>/dev/null; echo searched",
            disk_base().display()
        ))
        .current_dir("/var/tmp")
        .output()
        .unwrap();
    // A read-only host, as `Sandbox::new` gives, and a writable one.
    let base = disk_base();
    let seen_by = |mode: HostMode| {
        let base = base.clone();
        let ns = Sandbox::builder().host(mode).build().unwrap();
        ns.run(move || {
            std::fs::read_dir(&base)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
    };
    let read_only = seen_by(HostMode::ReadOnly);
    let writable = seen_by(HostMode::Writable);
    finish(live);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("searched"), "{out:?}");
    assert!(
        !said.contains(&file),
        "a sandbox in /var/tmp read another's layer: {said}"
    );
    assert_eq!(
        read_only,
        Vec::<String>::new(),
        "a read-only host's sandbox lists the layers"
    );
    assert_eq!(
        writable,
        Vec::<String>::new(),
        "a writable host's sandbox lists the layers"
    );
    assert!(!Path::new(&file).exists());
}

/// Keeps a copy-on-write sandbox that wrote in the test's own tree, says
/// its init process's pid, then waits to be killed before its drop.
#[test]
#[ignore = "helper, run by a_kept_sandbox_keeps_its_layer_when_its_test_process_is_killed"]
fn helper_keeps_a_cow_sandbox_then_waits() {
    let Ok(name) = std::env::var("HERMETIC_DISK_NAME") else {
        common::skip("a helper: run by its test, which names the directory");
        return;
    };
    let ns = cow();
    let n = name.clone();
    ns.run(move || std::fs::create_dir(&n).unwrap());
    ns.keep().unwrap();
    println!("init-pid {}", ns.pid());
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    drop(ns);
}

/// A kept sandbox outlives its test process: a test process killed
/// (`SIGKILL`: a runner's timeout) after `keep` and before the drop leaves
/// its layers to the kept sandbox, whose init process holds their lock, so
/// the next hermetic process leaves them alone while it lives. (Found when
/// the layers went to the init process only at the drop.)
#[test]
fn a_kept_sandbox_keeps_its_layer_when_its_test_process_is_killed() {
    if !own_tree_layer_on_disk() {
        return;
    }
    let name = unique("kept");
    let mut helper = common::self_command("helper_keeps_a_cow_sandbox_then_waits")
        .arg("--nocapture")
        .env("HERMETIC_DISK_NAME", &name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(helper.stdout.take().unwrap()).lines();
    let init: u32 = loop {
        let line = lines.next().expect("the helper's init-pid line").unwrap();
        // After libtest's "test NAME ... ", on the same line.
        if let Some((_, pid)) = line.split_once("init-pid ") {
            break pid.trim().parse().unwrap();
        }
    };
    // Should an assertion below fail, the kept sandbox goes all the same.
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            // SAFETY: a signal to the kept sandbox's init process.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
    let _kill = Kill(init);
    let layers = base_entries(&format!("{}.", helper.id()));
    assert!(!layers.is_empty(), "no layer of {} on disk", helper.id());
    helper.kill().unwrap();
    helper.wait().unwrap();
    // The kept sandbox lives on.
    assert!(Path::new(&format!("/proc/{init}")).exists());
    // The next hermetic process sweeps.
    let out = hermetic().args(["run", "--", "true"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        Path::new(&format!("/proc/{init}")).exists(),
        "the kept sandbox died"
    );
    let gone: Vec<&PathBuf> = layers.iter().filter(|l| !l.exists()).collect();
    assert!(
        gone.is_empty(),
        "the layers {gone:?} of the kept sandbox (init {init}) were removed while it lives"
    );
}

/// Two names of one file (a hard link) stay one file inside: a write
/// through one is read through the other, as outside. The overlays are
/// mounted with `index=off`, so a copy-up breaks the link: the other name
/// still shows the host's contents, and the link counts disagree.
#[test]
#[ignore = "known limitation (README, \"The host as a test sees it\"): copy-on-write breaks hard links (index=off)"]
fn hard_links_stay_one_file_inside() {
    let cwd = std::env::current_dir().unwrap();
    if nix::unistd::access(&cwd, nix::unistd::AccessFlags::W_OK).is_err() {
        common::skip(&format!("{} is not writable: not tried", cwd.display()));
        return;
    }
    let dir = cwd.join(unique("links"));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a"), dir.join("b"));
    std::fs::write(&a, "host\n").unwrap();
    std::fs::hard_link(&a, &b).unwrap();
    let (ia, ib) = (a.clone(), b.clone());
    let seen = cow().run(move || {
        use std::os::unix::fs::MetadataExt;
        let mut f = std::fs::OpenOptions::new().append(true).open(&ia).unwrap();
        f.write_all(b"inside\n").unwrap();
        drop(f);
        let nlink = |p: &Path| std::fs::metadata(p).unwrap().nlink();
        (
            std::fs::read_to_string(&ib).unwrap(),
            nlink(&ia),
            nlink(&ib),
        )
    });
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "host\n");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(seen, ("host\ninside\n".to_owned(), 2, 2));
}

/// The root of each overlay is its upper layer's directory, made when the
/// sandbox starts: it is given the host directory's mode, times and owner
/// (where the sandbox maps that owner), so that a directory the test sees,
/// `$HOME` here, looks as it does in a read-only sandbox (the host's own
/// directory, bound): not changed just now, nor root's.
#[test]
fn an_overlays_root_looks_as_the_host_directory_does() {
    // In /var/tmp: the host's, read-only, in a read-only sandbox (whose
    // /tmp is its own).
    let home = tempfile::Builder::new()
        .prefix("hermetic-disk-home")
        .tempdir_in("/var/tmp")
        .unwrap();
    let path = home.path();
    if is_root() {
        // An owner root's sandboxes do not map: nobody's inside, both ways.
        std::os::unix::fs::chown(path, Some(1234), Some(1234)).unwrap();
    }
    // Two years back.
    let past = nix::sys::time::TimeVal::new(1_577_836_800, 0);
    nix::sys::stat::utimes(path, &past, &past).unwrap();
    let stat = "%Y %X %a %u %g";
    let seen = |host: &str| {
        let out = hermetic()
            .args(["run", &format!("--host={host}"), "--", "stat", "-c", stat])
            .arg(path)
            .env("HOME", path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (read_only, copy_on_write) = (seen("ro"), seen("cow"));
    assert!(
        read_only.starts_with("1577836800 1577836800 "),
        "{read_only}"
    );
    assert_eq!(
        copy_on_write,
        read_only,
        "{} inside (mtime, atime, mode, uid, gid), copy-on-write and read-only",
        path.display()
    );
}

/// `tmp_size` bounds what the sandbox's tmpfs holds, empty files
/// included: each file, directory or link pins about a KiB of kernel
/// memory, so the tmpfs has one inode per KiB of it. With `/tmp` of
/// 1 MiB, 20 000 empty files are not all made. (Found when the inode
/// count was the kernel's default, half the host's pages.)
#[test]
fn tmp_size_bounds_the_memory_of_empty_files_too() {
    let ns = Sandbox::builder()
        .host(HostMode::CopyOnWrite)
        .tmp_size(1 << 20)
        .build()
        .unwrap();
    let (made, files) = ns.run(|| {
        std::fs::create_dir("/tmp/many").unwrap();
        let made = (0..20_000)
            .take_while(|i| std::fs::File::create(format!("/tmp/many/{i}")).is_ok())
            .count();
        let files = nix::sys::statvfs::statvfs("/tmp").unwrap().files();
        (made, files)
    });
    assert!(
        made < 20_000,
        "20000 empty files made in a /tmp of 1 MiB (its tmpfs allows {files} inodes)"
    );
}

/// Inside a copy-on-write sandbox: the mount point of the overlay whose
/// upper layer lies on disk (the test's tree's), and that layer's name in
/// the disk base, from `/proc/self/mountinfo`.
fn disk_overlay() -> Option<(String, String)> {
    disk_overlay_dirs().map(|(root, upper, _)| (root, upper))
}

/// As [`disk_overlay`], with the name of the overlay's work directory.
fn disk_overlay_dirs() -> Option<(String, String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let options = fields.last()?;
        let named = |key: &str| {
            options
                .split(',')
                .find_map(|o| o.strip_prefix(key))
                .and_then(|p| p.split_once('/'))
                .map(|(_, name)| name.to_owned())
        };
        let (upper, work) = (
            named("upperdir=/proc/self/fd/")?,
            named("workdir=/proc/self/fd/")?,
        );
        // On disk: PID.RANDOM.N.uK (in memory: uK).
        upper
            .contains('.')
            .then(|| (fields[4].to_owned(), upper, work))
    })
}

/// The inode numbers of what the disk base's pool holds now.
fn pooled_inodes() -> std::collections::HashSet<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(disk_base().join("pool"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.ino())
                .collect()
        })
        .unwrap_or_default()
}

/// A sandbox's emptied work directories go to a pool in the disk base,
/// and later sandboxes take their layers from it (fewer directories made
/// and removed on disk); what a sandbox left on its overlay's root (a file
/// made and removed there, an extended attribute set on it) is never seen
/// by the next: an upper layer, which the sandbox saw, is never pooled,
/// and a directory is pooled only if it holds nothing and carries no
/// attribute. The pool stays bounded.
#[test]
fn the_next_sandbox_takes_emptied_layer_directories_and_sees_nothing_of_the_last() {
    use std::os::unix::fs::MetadataExt;
    let first = cow();
    let Some((root, upper)) = first.run(disk_overlay) else {
        return common::skip("no upper layer on disk here (not ext4, XFS or btrfs)");
    };
    let first_upper = std::fs::metadata(disk_base().join(&upper)).unwrap().ino();
    let name = unique("pooled");
    let (file, attr) = (format!("{root}/{name}"), c"user.hermetic-pool-test");
    let marked = first.run({
        let file = file.clone();
        let root = root.clone();
        move || {
            std::fs::write(&file, b"the first sandbox's").unwrap();
            std::fs::remove_file(&file).unwrap();
            let root = std::ffi::CString::new(root).unwrap();
            // SAFETY: NUL-terminated name and path, a live 1-byte value.
            unsafe { libc::setxattr(root.as_ptr(), attr.as_ptr(), b"1".as_ptr().cast(), 1, 0) == 0 }
        }
    });
    drop(first);
    // Never an upper layer: the sandbox saw it, and may have left on it
    // what is no entry (here an attribute, `marked`).
    let _ = marked;
    assert!(
        !pooled_inodes().contains(&first_upper),
        "an upper layer went to the pool"
    );
    let mut reused = false;
    for _ in 0..5 {
        let pooled = pooled_inodes();
        let next = cow();
        let (root, upper) = next.run(disk_overlay).expect("the same overlay on disk");
        let ino = std::fs::metadata(disk_base().join(&upper)).unwrap().ino();
        let (file, seen_attr) = next.run({
            let file = file.clone();
            move || {
                let root = std::ffi::CString::new(root).unwrap();
                let mut value = [0u8; 8];
                // SAFETY: NUL-terminated name and path, a live buffer.
                let got = unsafe {
                    libc::getxattr(
                        root.as_ptr(),
                        attr.as_ptr(),
                        value.as_mut_ptr().cast(),
                        value.len(),
                    )
                };
                (Path::new(&file).exists(), got >= 0)
            }
        });
        assert!(!file, "the next sandbox sees the file the last one removed");
        assert!(
            !(marked && seen_attr),
            "the next sandbox sees the attribute the last one set on its overlay's root"
        );
        drop(next);
        if pooled.contains(&ino) {
            reused = true;
            break;
        }
    }
    assert!(
        reused,
        "no sandbox took its upper layer from the pool in 5 tries"
    );
    // A sandbox leaves its work directory to the pool (unless another
    // process took it at once, or filled the pool: tried again), and
    // never its upper layer.
    let mut given = false;
    for _ in 0..5 {
        let clean = cow();
        let (_, upper, work) = clean
            .run(disk_overlay_dirs)
            .expect("the same overlay on disk");
        let ino = |name: &str| std::fs::metadata(disk_base().join(name)).unwrap().ino();
        let (upper, work) = (ino(&upper), ino(&work));
        drop(clean);
        let pooled = pooled_inodes();
        assert!(!pooled.contains(&upper), "an upper layer went to the pool");
        if pooled.contains(&work) {
            given = true;
            break;
        }
    }
    assert!(
        given,
        "no emptied work directory went to the pool in 5 tries"
    );
    let held = std::fs::read_dir(disk_base().join("pool")).unwrap().count();
    assert!(held <= 64, "the pool holds {held} directories");
}
