//! The host as a test sees it: copy-on-write, read-only and writable;
//! explicit mounts win whatever the working directory; a program that
//! cannot be started says why; no special filesystem of the host inside.

use crate::common::{self, disk_base, hermetic_command as hermetic, own_tree_layer_on_disk};

use std::path::{Path, PathBuf};

use hermetic::{HostMode, Sandbox};

/// Where a test writes outside: its tree, CARGO_TARGET_TMPDIR, $HOME, a
/// directory of its own under /tmp (`mine`, visible to the sandbox).
fn cow() -> Sandbox {
    common::cow_sandbox()
}

/// A name no other test or run uses.
fn unique(what: &str) -> String {
    common::unique_name("hermetic", what)
}

fn places(mine: &Path) -> Vec<PathBuf> {
    let mut v = vec![
        std::env::current_dir().unwrap(),
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        mine.to_owned(),
    ];
    v.extend(std::env::var_os("HOME").map(PathBuf::from));
    // Only where the caller may write outside (a checkout of root's, run
    // by another user, is not).
    v.retain(|d| {
        let ok = writable(d);
        if !ok {
            common::skip(&format!(
                "{} is not writable outside: not tried",
                d.display()
            ));
        }
        ok
    });
    v
}

/// A directory of the test's own under /tmp, made before its sandbox.
fn mine() -> PathBuf {
    tempfile::Builder::new()
        .prefix("hermetic-cow")
        .tempdir_in("/tmp")
        .unwrap()
        .keep()
}

fn writable(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

#[test]
fn copy_on_write_writes_succeed_where_they_would_outside_and_stay_inside() {
    let mine = mine();
    let ns = Sandbox::builder()
        .host(HostMode::CopyOnWrite)
        .visible(&mine)
        .build()
        .unwrap();
    for dir in places(&mine) {
        let new = dir.join(unique("new"));
        // An existing host file, changed inside.
        let old = dir.join(unique("old"));
        std::fs::write(&old, "host").unwrap();
        let (n, o) = (new.clone(), old.clone());
        let seen = ns.run(move || {
            std::fs::write(&n, "inside").unwrap();
            let before = std::fs::read_to_string(&o).unwrap();
            std::fs::write(&o, "changed inside").unwrap();
            std::fs::create_dir(n.with_extension("d")).unwrap();
            (before, std::fs::read_to_string(&n).unwrap())
        });
        assert_eq!(
            seen,
            ("host".into(), "inside".into()),
            "in {}",
            dir.display()
        );
        // Kept for the sandbox's life, across runs.
        let n = new.clone();
        assert!(ns.run(move || n.exists()));
        assert!(!new.exists(), "{} reached the host", new.display());
        assert!(!new.with_extension("d").exists());
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "host");
        std::fs::remove_file(&old).unwrap();
    }
    std::fs::remove_dir_all(&mine).unwrap();
}

#[test]
fn copy_on_write_tmp_is_private_and_shows_what_the_test_needs() {
    // A file of the host's in /tmp and /var/tmp: not the test's, not seen.
    let in_tmp = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    let in_var_tmp = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
    // The test's own directory under /tmp (as a checkout, a target dir or
    // an unpacked archive would be): seen, writable copy-on-write.
    let mine = mine();
    std::fs::write(mine.join("fixture"), "from the host").unwrap();
    let ns = Sandbox::builder()
        .host(HostMode::CopyOnWrite)
        .visible(&mine)
        .build()
        .unwrap();
    let (a, b) = (in_tmp.path().to_owned(), in_var_tmp.path().to_owned());
    let (names, m) = (
        [
            format!("/tmp/{}", unique("tmp")),
            format!("/var/tmp/{}", unique("tmp")),
        ],
        mine.clone(),
    );
    let n = names.clone();
    let (hidden, fixture, modes) = ns.run(move || {
        for name in &n {
            std::fs::write(name, "x").unwrap();
        }
        std::fs::write(m.join("fixture"), "changed inside").unwrap();
        let mode = |p: &str| {
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
                & 0o7777
        };
        (
            !a.exists() && !b.exists(),
            std::fs::read_to_string(m.join("fixture")).unwrap(),
            (mode("/tmp"), mode("/var/tmp")),
        )
    });
    assert!(
        hidden,
        "the host's files in /tmp and /var/tmp are seen inside"
    );
    assert_eq!(fixture, "changed inside");
    // Sticky, writable by every id inside.
    assert_eq!(modes, (0o1777, 0o1777));
    for name in names {
        assert!(!Path::new(&name).exists(), "{name} reached the host");
    }
    assert_eq!(
        std::fs::read_to_string(mine.join("fixture")).unwrap(),
        "from the host"
    );
    std::fs::remove_dir_all(&mine).unwrap();
}

#[test]
fn copy_on_write_layer_is_bounded_by_tmp_size() {
    let ns = Sandbox::builder()
        .host(HostMode::CopyOnWrite)
        .tmp_size(1 << 20)
        .build()
        .unwrap();
    // /tmp, and a host directory the caller writes under a layer in
    // memory: not the test's own tree, whose layer may lie on disk
    // (bounded by the disk, as outside).
    let own = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    let host_dir = std::env::var_os("HOME")
        .map(PathBuf::from)
        .and_then(|d| std::fs::canonicalize(d).ok())
        .filter(|d| writable(d) && !own.starts_with(d) && !cwd.starts_with(d));
    if host_dir.is_none() {
        common::skip("$HOME is not writable, or holds the test's tree: only /tmp tried");
    }
    for dir in std::iter::once(PathBuf::from("/tmp")).chain(host_dir) {
        let name = dir.join(unique("big"));
        let n = name.clone();
        let errno = ns.run(move || {
            std::fs::write(&n, vec![0u8; 4 << 20])
                .err()
                .and_then(|e| e.raw_os_error())
        });
        assert_eq!(errno, Some(libc::ENOSPC), "in {}", dir.display());
        assert!(!name.exists());
    }
}

#[test]
fn copy_on_write_sandboxes_do_not_see_each_others_writes() {
    let (a, b) = (cow(), cow());
    let name = format!("/tmp/{}", unique("each"));
    let n = name.clone();
    a.run(move || std::fs::write(&n, "a").unwrap());
    let n = name.clone();
    assert!(!b.run(move || Path::new(&n).exists()));
}

#[test]
fn read_only_mode_refuses_writes_to_the_host() {
    let dir = std::env::current_dir().unwrap();
    let errno = Sandbox::builder()
        .host(HostMode::ReadOnly)
        .build()
        .unwrap()
        .run(move || {
            std::fs::write(dir.join("x"), "x")
                .err()
                .and_then(|e| e.raw_os_error())
        });
    assert_eq!(errno, Some(libc::EROFS));
}

#[test]
fn a_closure_in_a_copy_on_write_sandbox_makes_one() {
    let name = format!("/tmp/{}", unique("nested"));
    let n = name.clone();
    let inner = cow().run(move || {
        let inner = Sandbox::builder()
            .host(HostMode::CopyOnWrite)
            .build()
            .unwrap();
        let m = n.clone();
        inner.run(move || {
            std::fs::write(&m, "inner").unwrap();
            std::fs::read_to_string(&m).unwrap()
        })
    });
    assert_eq!(inner, "inner");
    assert!(!Path::new(&name).exists());
}

/// Where the body of isolate_test_body_makes_sandboxes writes: into
/// CARGO_TARGET_TMPDIR where the caller may write it.
fn iso_file() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if writable(dir) {
        dir.join("hermetic-iso")
    } else {
        PathBuf::from("/tmp/hermetic-iso")
    }
}

#[test]
fn isolate_test_body_makes_sandboxes() {
    hermetic::isolate_test(|| {
        // The body itself sees the host copy-on-write (isolate_test's
        // default), and makes sandboxes of its own.
        std::fs::write(iso_file(), "x").unwrap();
        let inner = Sandbox::builder()
            .host(HostMode::CopyOnWrite)
            .build()
            .unwrap();
        assert_eq!(inner.run(|| 7), 7);
        let plain = Sandbox::new().unwrap();
        assert_eq!(plain.run(|| 8), 8);
    });
    // (Code after the call may run in the re-executed process too.)
    if !common::in_isolated_body() {
        assert!(!iso_file().exists());
    }
}

#[rstest::rstest]
#[ignore = "helper, run through `hermetic run` by hermetic_run_of_tests_that_use_the_fixture"]
fn helper_uses_the_fixture(#[from(hermetic::isolated)] ns: Sandbox) {
    assert_eq!(ns.run(|| 5), 5);
    std::fs::write("/tmp/hermetic-fixture-helper", "x").unwrap();
}

#[test]
fn hermetic_run_of_tests_that_use_the_fixture() {
    let (exe, args) = common::self_invocation("helper_uses_the_fixture");
    let out = hermetic()
        .args(["run", "--"])
        .arg(exe)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    assert!(!Path::new("/tmp/hermetic-fixture-helper").exists());
}

/// `hermetic run` in `cwd` with the user's three kinds of mount under
/// `base`; they must all be there, whatever the working directory.
fn user_mounts_win(mode: &str, cwd: &Path, base: &Path, src: &Path) {
    let (x, b, c) = (base.join("x"), base.join("b"), base.join("c"));
    let script = format!(
        "set -e; touch {x}/made; test \"$(stat -f -c %T {x})\" = tmpfs; \
         cat {b}/marker; echo w > {b}/written; cat {c}/marker; \
         if touch {c}/nope 2>/dev/null; then echo c-writable; exit 1; fi",
        x = x.display(),
        b = b.display(),
        c = c.display()
    );
    let out = hermetic()
        .current_dir(cwd)
        .arg("run")
        .arg(format!("--host={mode}"))
        .arg("--tmpfs")
        .arg(&x)
        .arg("--bind")
        .arg(format!("{}:{}", src.display(), b.display()))
        .arg("--bind-ro")
        .arg(format!("{}:{}", src.display(), c.display()))
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mode {mode}, cwd {}: {out:?}",
        cwd.display()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "m\nm\n");
    // The writable bind is the host's directory.
    assert!(src.join("written").exists());
    std::fs::remove_file(src.join("written")).unwrap();
}

#[test]
fn explicit_mounts_win_whatever_the_working_directory() {
    let base = tempfile::Builder::new()
        .prefix("hermetic-mounts")
        .tempdir_in("/tmp")
        .unwrap();
    let src = tempfile::Builder::new()
        .prefix("hermetic-src")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(src.path().join("marker"), "m\n").unwrap();
    for d in ["x", "b", "c", "sub"] {
        std::fs::create_dir(base.path().join(d)).unwrap();
    }
    for mode in ["cow", "ro", "writable"] {
        for cwd in [
            Path::new("/"),
            Path::new("/tmp"),
            base.path(),
            &base.path().join("sub"),
            // Under the tmpfs the user asks for.
            &base.path().join("x"),
        ] {
            user_mounts_win(mode, cwd, base.path(), src.path());
        }
    }
}

#[test]
fn programs_under_tmp_start_in_every_mode() {
    // A program in a directory under /tmp, run from there: the working
    // directory (as cargo's runner does with a target dir under /tmp).
    let dir = tempfile::Builder::new()
        .prefix("hermetic-prog")
        .tempdir_in("/tmp")
        .unwrap();
    let prog = dir.path().join("prog");
    std::fs::copy("/bin/true", &prog).unwrap();
    for mode in ["cow", "ro", "writable"] {
        let out = hermetic()
            .current_dir(dir.path())
            .args(["run", "--host", mode, "--"])
            .arg(&prog)
            .output()
            .unwrap();
        assert!(out.status.success(), "mode {mode}: {out:?}");
    }
    // Copy-on-write, from elsewhere, as cargo's runner starts a test binary
    // of a target dir under /tmp, and from /tmp itself, a program in /tmp.
    let name = unique("prog");
    let in_tmp = Path::new("/tmp").join(&name);
    std::fs::copy("/bin/true", &in_tmp).unwrap();
    for (cwd, prog) in [
        (Path::new("/"), prog.clone()),
        (Path::new("/"), in_tmp.clone()),
        (Path::new("/tmp"), PathBuf::from(format!("./{name}"))),
    ] {
        let out = hermetic()
            .current_dir(cwd)
            .args(["run", "--"])
            .arg(&prog)
            .output()
            .unwrap();
        assert!(out.status.success(), "{prog:?} from {cwd:?}: {out:?}");
    }
    std::fs::remove_file(&in_tmp).unwrap();
}

#[test]
fn a_program_that_cannot_be_started_says_why() {
    let dir = tempfile::Builder::new()
        .prefix("hermetic-hidden")
        .tempdir_in("/tmp")
        .unwrap();
    let prog = dir.path().join("prog");
    std::fs::copy("/bin/true", &prog).unwrap();
    // Read-only, from /: the sandbox's own /tmp would hide it, but the
    // program's directory is kept visible, by path and through PATH.
    for how in ["path", "PATH"] {
        let mut cmd = hermetic();
        cmd.current_dir("/").args(["run", "--host=ro", "--"]);
        if how == "path" {
            cmd.arg(&prog);
        } else {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", dir.path().display()))
                .arg("prog");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "by {how}: {out:?}");
    }
    // Covered by the user's own tmpfs, which wins: not found, and why.
    let out = hermetic()
        .current_dir("/")
        .arg("run")
        .arg("--tmpfs")
        .arg(dir.path())
        .arg("--")
        .arg(&prog)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&prog.display().to_string()), "{err}");
    assert!(
        err.contains(&format!("--tmpfs {}", dir.path().display())),
        "{err}"
    );
    assert!(err.contains("start the program from a path"), "{err}");
}

#[test]
fn run_takes_the_host_mode_both_ways() {
    for args in [["--host", "ro"], ["--host=ro", "--"]] {
        let mut cmd = hermetic();
        cmd.current_dir("/").arg("run").args(args);
        if args[1] != "--" {
            cmd.arg("--");
        }
        let out = cmd
            .args([
                "sh",
                "-c",
                "touch /var/tmp/x 2>/dev/null && echo w || echo ro",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ro\n", "{out:?}");
    }
    let out = hermetic()
        .args(["run", "--host=bogus", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cow, ro or writable"));
}

/// The special filesystems whose host mounts reach kernel objects of the
/// host.
/// Written out here, not taken from the crate, so that a type the crate
/// stops covering fails this test.
const SPECIAL: [&str; 13] = [
    "mqueue",
    "cgroup",
    "cgroup2",
    "bpf",
    "tracefs",
    "debugfs",
    "securityfs",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "pstore",
    "hugetlbfs",
    "efivarfs",
];

#[test]
fn no_special_filesystem_of_the_host_is_reachable() {
    // A message queue of the host's IPC namespace.
    let name = format!("/{}", unique("mq"));
    let cname = std::ffi::CString::new(name.clone()).unwrap();
    // SAFETY: a NUL-terminated name; default attributes.
    let q = unsafe {
        libc::mq_open(
            cname.as_ptr(),
            libc::O_CREAT | libc::O_RDWR,
            0o600,
            std::ptr::null::<libc::mq_attr>(),
        )
    };
    assert!(q >= 0, "mq_open: {}", std::io::Error::last_os_error());
    if !Path::new("/dev/mqueue").exists() {
        // What is still checked: the queue cannot be opened by name, and no
        // special mount is reachable inside.
        common::skip(
            "this host mounts no mqueue at /dev/mqueue: the host's mount is not there to hide",
        );
    }
    for mode in [
        HostMode::ReadOnly,
        HostMode::CopyOnWrite,
        HostMode::Writable,
    ] {
        let ns = Sandbox::builder().host(mode).build().unwrap();
        let n = name.clone();
        let (opened, listed, reachable) = ns.run(move || {
            let c = std::ffi::CString::new(n.clone()).unwrap();
            // SAFETY: c is a live NUL-terminated name; without O_CREAT,
            // mq_open reads nothing else.
            let q = unsafe {
                libc::mq_open(
                    c.as_ptr(),
                    libc::O_RDWR,
                    0o600,
                    std::ptr::null::<libc::mq_attr>(),
                )
            };
            let listed = Path::new(&format!("/dev/mqueue{n}")).exists();
            // Special mounts reachable at their mount point: the topmost
            // there (statx's mount id is the line's).
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            let reachable: Vec<String> = info
                .lines()
                .filter(|l| {
                    let (head, tail) = l.split_once(" - ").unwrap();
                    let fstype = tail.split(' ').next().unwrap();
                    let f: Vec<&str> = head.split(' ').collect();
                    SPECIAL.contains(&fstype)
                        && nix::sys::stat::stat(f[4]).is_ok()
                        && mount_id(f[4]) == f[0].parse::<u64>().ok()
                })
                .map(str::to_owned)
                .collect();
            (q >= 0, listed, reachable)
        });
        assert!(!opened, "{mode}: the host's queue opened by name inside");
        assert!(!listed, "{mode}: the host's queue listed in /dev/mqueue");
        // The one special mount allowed: the sandbox's own mqueue, of its
        // own IPC namespace (the host's queue is not in it, above).
        for line in &reachable {
            assert!(
                line.contains(" /dev/mqueue ") && line.contains(" - mqueue "),
                "{mode}: a host special mount is reachable inside: {line}"
            );
        }
    }
    // SAFETY: the queue and name made above.
    unsafe {
        libc::mq_close(q);
        libc::mq_unlink(cname.as_ptr());
    }
}

fn mount_id(path: &str) -> Option<u64> {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: statx with a live buffer of the right type.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated; st is writable.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            &mut st,
        )
    };
    (r == 0).then_some(st.stx_mnt_id)
}

/// Three copy-on-write sandboxes, each in the last (`hermetic run`): the
/// third overlay would stack on two others, which the kernel refuses; the
/// third level falls back to read-only, with the working directory
/// visible, and says so once however many sandboxes follow.
#[test]
fn refused_overlays_fall_back_to_read_only_and_say_so_once() {
    let bin = env!("CARGO_BIN_EXE_hermetic");
    let cwd = std::env::current_dir().unwrap();
    let script = format!(
        "{bin} run -- sh -c 'echo x > /tmp/{} && ls {} >/dev/null && echo third-ok'",
        unique("third"),
        cwd.display()
    );
    let out = hermetic()
        .args(["run", "--", bin, "run", "--", "sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("mapping ids") {
        // As root, a third level cannot write its id maps (the proc it sees
        // is read-only): not this test's subject.
        common::skip(&format!(
            "a third level of sandboxes cannot be made here ({})",
            err.trim()
        ));
        return;
    }
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "third-ok\n");
    assert_eq!(
        err.matches("refuses a copy-on-write view of the host")
            .count(),
        1,
        "{err}"
    );
}

#[test]
fn copy_on_write_keeps_host_device_nodes_unopenable() {
    if !nix::unistd::geteuid().is_root() {
        common::skip("only root can make a device node on the host");
        return;
    }
    // /dev/null's numbers, at a path of the host's under /tmp, in a
    // directory the sandbox shows.
    let dir = tempfile::Builder::new()
        .prefix("hermetic-dev")
        .tempdir_in("/tmp")
        .unwrap();
    let node = dir.path().join("null");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    // A test's own directory: under a layer of its own, mounted after the
    // sandbox's /tmp.
    let ns = Sandbox::builder()
        .host(HostMode::CopyOnWrite)
        .visible(dir.path())
        .build()
        .unwrap();
    let errno = ns.run(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&node)
            .err()
            .and_then(|e| e.raw_os_error())
    });
    assert_eq!(errno, Some(libc::EACCES));
}

#[test]
fn files_are_placed_in_the_copy_on_write_layer_too() {
    let host = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    std::fs::write(host.path(), "the host's").unwrap();
    let over = host.path().to_owned();
    let made = PathBuf::from(format!("/tmp/{}/app/config.toml", unique("file")));
    let ns = Sandbox::builder()
        .host(HostMode::CopyOnWrite)
        .file(&over, "over")
        .file(&made, "made")
        .build()
        .unwrap();
    let (o, m) = (over.clone(), made.clone());
    let seen = ns.run(move || {
        (
            std::fs::read_to_string(&o).unwrap(),
            std::fs::read_to_string(&m).unwrap(),
            std::fs::write(&o, "x").err().and_then(|e| e.raw_os_error()),
            std::fs::write(&m, "x").err().and_then(|e| e.raw_os_error()),
        )
    });
    assert_eq!(
        seen,
        (
            "over".into(),
            "made".into(),
            Some(libc::EROFS),
            Some(libc::EROFS)
        )
    );
    assert_eq!(std::fs::read_to_string(&over).unwrap(), "the host's");
    assert!(!made.parent().unwrap().parent().unwrap().exists());
}

/// A directory made inside, in the test's own tree, has the size one made
/// outside has with the same entries (ext4: 4096 bytes; a layer in a tmpfs
/// would say 80): suites compare the two (fs_extra 1.3.0's does).
#[test]
fn directories_made_in_the_tests_own_tree_look_as_they_would_outside() {
    let cwd = std::env::current_dir().unwrap();
    if !writable(&cwd) {
        common::skip(&format!("{} is not writable: not tried", cwd.display()));
        return;
    }
    let outside = cwd.join(unique("dir-outside"));
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("file"), "x").unwrap();
    let size = |d: &Path| std::fs::metadata(d).unwrap().len();
    let expected = size(&outside);
    std::fs::remove_dir_all(&outside).unwrap();
    let inside = cwd.join(unique("dir-inside"));
    let i = inside.clone();
    let measure = move || {
        std::fs::create_dir_all(i.join("sub")).unwrap();
        std::fs::write(i.join("file"), "x").unwrap();
        std::fs::metadata(&i).unwrap().len()
    };
    assert_eq!(cow().run(measure.clone()), expected, "a sandbox's closure");
    // And under `hermetic run`, its default mode.
    let out = hermetic()
        .args(["run", "--", "sh", "-c"])
        .arg(format!(
            "mkdir -p {0}/sub && echo x > {0}/file && stat -c %s {0}",
            inside.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        expected.to_string()
    );
    assert!(!inside.exists(), "{} reached the host", inside.display());
}

/// The upper layer on disk lies in a private directory while the sandbox
/// lives, holding what it wrote, and goes with it: after `hermetic run`
/// ends, and after a SIGKILL of `hermetic` (the next process that makes a
/// layer on disk removes what the killed one left).
#[test]
fn upper_layers_on_disk_go_with_the_sandbox_even_after_sigkill() {
    use std::io::{BufRead, Write};
    if !own_tree_layer_on_disk() {
        return;
    }
    let name = unique("on-disk");
    let start = || {
        let mut child = hermetic()
            .args(["run", "--", "sh", "-c"])
            .arg(format!("mkdir {name} && echo ready && read x"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        child
    };
    // The directory made inside, somewhere in an upper layer (at the
    // working directory's place below its overlay's root).
    fn holds(dir: &Path, name: &str, depth: usize) -> bool {
        depth < 16
            && std::fs::read_dir(dir).is_ok_and(|d| {
                d.filter_map(Result::ok).any(|e| {
                    e.file_name() == name
                        || e.file_type().is_ok_and(|t| t.is_dir())
                            && holds(&e.path(), name, depth + 1)
                })
            })
    }
    let holds_name = |dir: &Path| holds(dir, &name, 0);
    // Ended normally: gone.
    let mut child = start();
    let layers = common::disk_base_entries(&format!("{}.", child.id()));
    assert!(!layers.is_empty(), "no layer of {} on disk", child.id());
    assert!(
        layers.iter().any(|l| holds_name(l)),
        "no layer in {layers:?} holds {name}"
    );
    // The base is the caller's alone.
    let meta = std::fs::metadata(disk_base()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077,
        0
    );
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert!(child.wait().unwrap().success());
    for layer in &layers {
        assert!(!layer.exists(), "{} left behind", layer.display());
    }
    // Killed: left until the next process that makes one.
    let mut child = start();
    let layers = common::disk_base_entries(&format!("{}.", child.id()));
    assert!(!layers.is_empty(), "no layer of {} on disk", child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    // Its sandbox dies with it (the init process watches hermetic), a
    // moment later: until then the layers' lock is held. Wait for that
    // event (taking the lock, then letting it go).
    let lock = layers
        .iter()
        .find(|l| l.extension().is_some_and(|e| e == "lock"))
        .expect("a lock among the layers")
        .clone();
    common::bounded("the killed sandbox's end", move || {
        std::fs::File::open(&lock).unwrap().lock().unwrap();
    });
    let out = hermetic().args(["run", "--", "true"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    for layer in &layers {
        assert!(
            !layer.exists(),
            "{} left behind after a SIGKILL",
            layer.display()
        );
    }
    assert!(!Path::new(&name).exists());
}

/// A closure makes a copy-on-write sandbox from a directory its own
/// sandbox binds writable, after the test process has made one with a
/// layer on disk: in there the host's `/var/tmp` is read-only (or not the
/// host's), so the inner sandbox keeps its layers in memory, and works.
#[test]
fn a_closure_makes_a_copy_on_write_sandbox_in_a_writable_bind() {
    // On the disk the tree is on: the target dir's, or the tree itself
    // (rootless from an archive, the target dir is root's).
    let Some(target_tmp) = [
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        std::env::current_dir().unwrap(),
    ]
    .into_iter()
    .find(|d| writable(d)) else {
        common::skip(
            "neither CARGO_TARGET_TMPDIR nor the working directory is writable: not tried",
        );
        return;
    };
    // A layer on disk first (where this host has them), so that the
    // process has found its base before the closure is forked.
    let first = cow();
    let here = std::env::current_dir().unwrap();
    assert!(first.run(move || std::fs::create_dir(here.join(unique("first"))).is_ok()));
    drop(first);
    let dir = tempfile::Builder::new()
        .prefix("hermetic-bind")
        .tempdir_in(&target_tmp)
        .unwrap();
    let dir = std::fs::canonicalize(dir.path()).unwrap();
    let outer = Sandbox::builder().bind(&dir, &dir).build().unwrap();
    let d = dir.clone();
    let made = outer.run(move || {
        std::env::set_current_dir(&d).unwrap();
        let inner = Sandbox::builder()
            .host(HostMode::CopyOnWrite)
            .build()
            .map_err(|e| e.to_string())?;
        let made = d.join("made");
        Ok::<_, String>(inner.run(move || std::fs::create_dir(&made).is_ok() && made.is_dir()))
    });
    assert_eq!(made, Ok(true));
    assert!(
        !dir.join("made").exists(),
        "the inner sandbox's write reached the host"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Run by the test below from a copy of this binary at
/// `TARGET/debug/deps/it`: a copy-on-write sandbox shows `TARGET` (where
/// cargo's integration tests write, `CARGO_TARGET_TMPDIR`), writable, and
/// keeps what is written there.
#[test]
#[ignore = "helper: run by a_target_dir_cargo_did_not_tag_is_shown_copy_on_write"]
fn helper_writes_its_target_dir() {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    // In the host's target dir, not in a fresh /tmp of the sandbox's.
    let file = target.join("debug/written-inside");
    let ns = Sandbox::builder()
        .host(HostMode::CopyOnWrite)
        .build()
        .unwrap();
    let f = file.clone();
    let (binary_there, read) = ns.run(move || {
        std::fs::write(&f, "inside").unwrap();
        (exe.is_file(), std::fs::read_to_string(&f).unwrap())
    });
    assert!(binary_there, "the target dir is not the host's inside");
    assert_eq!(read, "inside");
    assert!(!file.exists(), "a write inside reached the host");
    println!("marker-target-dir-written");
}

/// A target dir under `/tmp` that cargo did not create (so with no
/// `CACHEDIR.TAG`: made beforehand, a restored CI cache), known by
/// `.rustc_info.json`, and an extracted archive with neither, known by
/// cargo's layout: copy-on-write, where `/tmp` is the sandbox's own, it is
/// still there and writable, as a test writing `CARGO_TARGET_TMPDIR` needs.
#[test]
fn a_target_dir_cargo_did_not_tag_is_shown_copy_on_write() {
    for marked in [true, false] {
        let copy = common::BinaryCopy::under("/tmp", "untagged-target");
        if marked {
            std::fs::write(copy.dir.join(".rustc_info.json"), "{}").unwrap();
        }
        let out = copy.run_helper("helper_writes_its_target_dir");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("marker-target-dir-written"),
            "marked: {marked}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Where `HERMETIC_TEST_BUILT_BIN` names a program (the crate's binary of
/// the build an archive came from): a sandbox of each host mode finds it,
/// as a test calling `env!("CARGO_BIN_EXE_<name>")` would.
#[test]
#[ignore = "helper: run by an_archive_s_tests_find_the_build_s_binaries_under_tmp"]
fn helper_starts_the_build_s_binary() {
    let bin = std::env::var("HERMETIC_TEST_BUILT_BIN").unwrap();
    for mode in [HostMode::ReadOnly, HostMode::CopyOnWrite] {
        let ns = Sandbox::builder().host(mode).build().unwrap();
        let out = ns.command(&bin).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "the build's binary ran\n",
            "{mode:?}: {out:?}"
        );
    }
    println!("marker-built-binary-ran");
}

/// A `cargo nextest archive` extracted under `/tmp` (nextest's default
/// place) on the machine that built it, whose build's target dir lies
/// under `/tmp` too: the tests start the crate's binaries by the paths
/// cargo compiled into them (`env!("CARGO_BIN_EXE_<name>")`), in that
/// build's target dir, which the sandbox's own `/tmp` would hide. The
/// archive names it (`TARGET/nextest/binaries-metadata.json`), so it is
/// shown: to a test binary of the archive making sandboxes, and to a test
/// binary of the archive under `hermetic run` (found by a new user's
/// trial: 6 of 6 tests failed with `ENOENT` unless `CARGO_TARGET_DIR`
/// happened to be exported).
#[test]
fn an_archive_s_tests_find_the_build_s_binaries_under_tmp() {
    let build = common::BinaryCopy::under("/tmp", "build-target");
    // As cargo tags each target dir it makes.
    std::fs::write(
        build.dir.join("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    let built_bin = build.dir.join("debug/crate-bin");
    std::fs::write(&built_bin, "#!/bin/sh\necho \"the build's binary ran\"\n").unwrap();
    std::fs::set_permissions(
        &built_bin,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let archive = common::BinaryCopy::under("/tmp", "nextest-archive");
    std::fs::create_dir_all(archive.dir.join("nextest")).unwrap();
    let metadata = serde_json::json!({
        "rust-build-meta": { "target-directory": build.dir, "base-output-directories": ["debug"] },
        "rust-binaries": {},
    });
    std::fs::write(
        archive.dir.join("nextest/binaries-metadata.json"),
        metadata.to_string(),
    )
    .unwrap();
    let (_, args) = common::self_invocation("helper_starts_the_build_s_binary");
    // The archive's test binary making sandboxes.
    let out = std::process::Command::new(&archive.exe)
        .args(&args)
        .arg("--nocapture")
        .env_remove("CARGO_TARGET_DIR")
        .env("HERMETIC_TEST_BUILT_BIN", &built_bin)
        .current_dir("/")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("marker-built-binary-ran"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A program of the archive under `hermetic run`, starting the build's
    // binary.
    let prog = archive.dir.join("debug/deps/ordinary-test");
    std::fs::write(&prog, format!("#!/bin/sh\nexec {}\n", built_bin.display())).unwrap();
    std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for host in ["cow", "ro"] {
        let out = common::hermetic_command()
            .args(["run", "--host", host, "--"])
            .arg(&prog)
            .env_remove("CARGO_TARGET_DIR")
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "the build's binary ran\n",
            "--host {host}: {out:?}"
        );
    }
}
