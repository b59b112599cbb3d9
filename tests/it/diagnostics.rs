//! Host diagnostics: each blocker that can be simulated honestly is made
//! real inside a sandbox, and the report and errors must name its cause.

use hermetic::{Probe, Sandbox, Status, check};

#[test]
fn this_host_runs_sandboxes_and_says_so() {
    let report = check();
    assert!(report.sandboxes_work(), "{report}");
    for name in [
        Probe::UserNamespace,
        Probe::NetworkNamespace,
        Probe::PidNamespace,
        Probe::FreshProc,
        Probe::FreshSys,
        Probe::Loopback,
        Probe::ReadOnlyHost,
        Probe::LockedMounts,
    ] {
        let f = report
            .finding(name)
            .unwrap_or_else(|| panic!("no {name} in\n{report}"));
        assert_eq!(f.status, Status::Works, "{report}");
    }
    assert!(report.to_string().ends_with("sandboxes work on this host"));
}

#[test]
fn the_network_probes_find_what_links_and_link_faults_use() {
    // All of it is in this machine's kernel (netem is not, and nothing
    // needs it any more).
    let report = check();
    for probe in [
        Probe::Veth,
        Probe::Bridge,
        Probe::Tbf,
        Probe::PacketSockets,
        Probe::SocketDestroy,
    ] {
        let f = report.finding(probe).unwrap();
        assert_eq!(f.status, Status::Works, "{probe}: {f:?}\n{report}");
        assert!(!f.required, "{probe} must not block sandboxes");
    }
}

#[test]
fn exhausted_user_namespaces_are_diagnosed() {
    // Lowering the limit inside our own user namespace makes the next
    // creation fail just as on a host with user.max_user_namespaces = 0.
    let ns = Sandbox::new().unwrap();
    let (works, hint, err) = ns.run(|| {
        std::fs::write("/proc/sys/user/max_user_namespaces", "0").unwrap();
        let report = check();
        let f = report.finding(Probe::UserNamespace).unwrap().clone();
        assert_eq!(f.status, Status::Missing);
        (
            report.sandboxes_work(),
            f.hint.unwrap_or_default(),
            Sandbox::new().unwrap_err().to_string(),
        )
    });
    assert!(!works);
    assert!(hint.contains("user.max_user_namespaces"), "{hint}");
    assert!(err.contains("sysctl -w user.max_user_namespaces="), "{err}");
}

/// Installs a seccomp filter, like a container runtime's default profile,
/// that refuses clone/unshare with CLONE_NEWUSER (EPERM) and clone3
/// (ENOSYS, so that libc falls back to clone).
fn refuse_user_namespaces() {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_ALLOW,
        SECCOMP_RET_ERRNO, sock_filter, sock_fprog,
    };
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    // struct seccomp_data: nr at 0, arch at 4, ip at 8, args at 16.
    let filter = [
        stmt(BPF_LD | BPF_W | BPF_ABS, 0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_clone3 as u32, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_clone as u32, 1, 0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_unshare as u32, 0, 3),
        stmt(BPF_LD | BPF_W | BPF_ABS, 16),
        jump(BPF_JMP | BPF_JSET | BPF_K, libc::CLONE_NEWUSER as u32, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ];
    let prog = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut sock_filter,
    };
    // SAFETY: prog points to a live, well-formed filter; both prctls only
    // affect the calling process (the sandboxed child).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn a_seccomp_profile_refusing_namespaces_is_diagnosed() {
    let ns = Sandbox::new().unwrap();
    let (errno, err, hint) = ns.run(|| {
        refuse_user_namespaces();
        let e = Sandbox::new().unwrap_err();
        let report = check();
        let hint = report.finding(Probe::UserNamespace).unwrap().hint.clone();
        (e.errno(), e.to_string(), hint.unwrap_or_default())
    });
    assert_eq!(errno, Some(libc::EPERM));
    assert!(
        err.starts_with("creating the sandbox's namespaces: "),
        "{err}"
    );
    assert!(err.contains("seccomp=unconfined"), "{err}");
    assert!(hint.contains("Seccomp: 2"), "{hint}");
}

#[test]
fn a_failing_setup_step_is_diagnosed_in_the_report() {
    // As in bad_input.rs: no network namespace may be made from in here,
    // so a whole sandbox fails at its inner user namespace. The report says
    // which step, marks the earlier ones as working and the later ones as
    // not reached. (A container's masked /proc, the other common setup
    // failure, cannot be simulated inside a sandbox: each keeps a hidden,
    // fully visible proc mount for the sandboxes made inside it. Its hint
    // is unit-tested in src/diagnose/mod.rs.)
    let ns = Sandbox::new().unwrap();
    let (earlier, status, detail, hint, later) = ns.run(|| {
        std::fs::write("/proc/sys/user/max_net_namespaces", "0").unwrap();
        let report = check();
        let f = report.finding(Probe::InnerUserNamespace).unwrap().clone();
        (
            report.finding(Probe::IdMaps).unwrap().status,
            f.status,
            f.detail,
            f.hint.unwrap_or_default(),
            report.finding(Probe::FreshSys).unwrap().status,
        )
    });
    assert_eq!(earlier, Status::Works);
    assert_eq!(status, Status::Missing);
    assert!(detail.contains("ENOSPC"), "{detail}");
    assert!(hint.contains("user.max_net_namespaces"), "{hint}");
    assert_eq!(later, Status::NotReached);
}

#[test]
fn the_report_says_whether_sandboxes_get_terminals_as_a_closure_finds() {
    let report = check();
    let f = report
        .finding(Probe::Terminals)
        .expect("a terminals finding");
    assert!(!f.required, "terminals must not block sandboxes");
    let opens = Sandbox::new().unwrap().run(|| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/ptmx")
            .is_ok()
    });
    assert_eq!(f.status == Status::Works, opens, "{f:?}");
    if f.status != Status::Works {
        assert!(f.hint.is_some(), "a refusal says why: {f:?}");
    }
    // This host gives every sandbox its own devpts.
    assert_eq!(f.status, Status::Works, "{report}");
}
