//! The seccomp filter every process of a sandbox that runs code of the
//! user's is put under: it refuses the few system calls that reach a kernel
//! object the namespaces do not separate.
//!
//! - `ioctl(fd, TIOCSTI)` and `ioctl(fd, TIOCLINUX)`: typing into, or
//!   reading and pasting from, a terminal the sandbox inherited (the
//!   caller's shell would run what is typed; bubblewrap's CVE-2017-5226);
//!   `TIOCEXCL` and `TIOCSETD`, which would leave that terminal exclusive
//!   (every later open of it fails with `EBUSY`) or dead (the `N_NULL`
//!   line discipline) after the sandbox. Only the low 32 bits of the
//!   request are compared, as the tty layer truncates it to an
//!   `unsigned int`.
//! - Signal-driven I/O: `fcntl(fd, F_SETFL)` with `O_ASYNC` and
//!   `ioctl(fd, FIOASYNC)`. On a terminal, the kernel makes the terminal's
//!   foreground process group (the caller's shell job: `hermetic run`,
//!   cargo, the test process) the owner of the file as `O_ASYNC` is set,
//!   and sends it `SIGIO` (or, with `F_SETSIG`, any signal, `SIGKILL`
//!   too) at each line typed: a program inside killed its caller so.
//! - `fcntl(fd, F_SETLEASE)`: a lease on a host file of the caller's
//!   (which the kernel grants to its owner, on a read-only mount too)
//!   makes every open of it outside, the test process's included, wait
//!   until the lease is let go (45 s by default, again at each open).
//! - `keyctl`, `add_key`, `request_key`: keys are checked by uid only, and
//!   root inside is the caller outside, so by serial number a process
//!   inside could read, link or plant keys of the test process, the caller
//!   or another sandbox (`EPERM`, as Docker's default profile does). A
//!   sandbox built with [`keyring(true)`](crate::SandboxBuilder::keyring)
//!   leaves them allowed. So does `setsockopt(SOL_ALG,
//!   ALG_SET_KEY_BY_KEY_SERIAL)`, which keys a crypto socket with a key
//!   found by serial number (by 32-bit programs through `socketcall`, whose
//!   arguments a filter cannot see, it stays possible).
//! - `clone` with `CLONE_PARENT`: a runner is a child of the test process,
//!   and so would be its sibling, inside the sandbox's PID namespace, where
//!   the dying init process waits for it to be reaped (a drop that never
//!   returns). `clone3` fails with `ENOSYS` (its flags are behind a pointer
//!   a filter cannot read; the C library falls back to `clone`, as under
//!   Docker).
//! - `CLONE_NEWCGROUP` in `clone` and `unshare`, and `setns` to a cgroup
//!   namespace: root inside a sandbox made by root could otherwise mount
//!   the cgroup filesystems (whose files belong to the real root) in a
//!   cgroup namespace of its own and raise its own limits.
//!
//! Everything else is allowed. A call of another architecture's ABI (i386
//! on x86_64, 32-bit Arm on aarch64) meets the same rules with its own
//! numbers; x32 calls and unknown architectures fail with `ENOSYS`.
//!
//! The program is built once per process, before any fork, and installed
//! by each process that starts user code, while it still holds
//! `CAP_SYS_ADMIN` in the sandbox's user namespace (so without
//! `PR_SET_NO_NEW_PRIVS`, which would keep setuid programs inside from
//! working). Filters stack: one from the host (Docker's) stays in force.
//!
//! # References
//!
//! seccomp(2), seccomp_unotify(2), ioctl_tty(2), keyctl(2), clone(2),
//! cgroup_namespaces(7); bubblewrap's `setup_seccomp` for TIOCSTI.

use libc::sock_filter;

/// An errno to return, as a filter's action.
const fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

/// `struct seccomp_data`: nr (u32), arch (u32), instruction pointer (u64),
/// then six u64 arguments; on both supported targets little-endian, so the
/// low half of argument `i` is at `16 + 8 * i`.
const NR: u32 = 0;
const ARCH: u32 = 4;
const fn arg_low(i: u32) -> u32 {
    16 + 8 * i
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
/// x32 system calls carry this bit in their number, with x86_64's arch.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const TIOCSTI: u32 = 0x5412;
const TIOCEXCL: u32 = 0x540c;
const TIOCSETD: u32 = 0x5423;
const FIOASYNC: u32 = 0x5452;
const F_SETFL: u32 = libc::F_SETFL as u32;
const F_SETLEASE: u32 = libc::F_SETLEASE as u32;
const O_ASYNC: u32 = libc::O_ASYNC as u32;
/// `setsockopt(fd, SOL_ALG, ALG_SET_KEY_BY_KEY_SERIAL, ...)` (Linux 6.2):
/// an AF_ALG socket keyed by a key found by serial number.
const SOL_ALG: u32 = 279;
const ALG_SET_KEY_BY_KEY_SERIAL: u32 = 7;
const TIOCLINUX: u32 = 0x541c;

/// The numbers of the calls the filter looks at, for one ABI.
struct Numbers {
    arch: u32,
    ioctl: u32,
    fcntl: u32,
    /// 32-bit ABIs' `fcntl64` (the one their C library calls).
    fcntl64: Option<u32>,
    clone: u32,
    clone3: u32,
    unshare: u32,
    setns: u32,
    keyctl: u32,
    add_key: u32,
    request_key: u32,
    /// The direct `setsockopt` call (i386 and 32-bit Arm programs may also
    /// reach it through `socketcall`, whose arguments are behind a pointer
    /// a filter cannot read).
    setsockopt: u32,
    /// x86_64: x32 calls share the arch and are refused.
    refuse_x32: bool,
}

#[cfg(target_arch = "x86_64")]
const ABIS: [Numbers; 2] = [
    Numbers {
        arch: AUDIT_ARCH_X86_64,
        ioctl: 16,
        fcntl: 72,
        fcntl64: None,
        clone: 56,
        clone3: 435,
        unshare: 272,
        setns: 308,
        keyctl: 250,
        add_key: 248,
        request_key: 249,
        setsockopt: 54,
        refuse_x32: true,
    },
    Numbers {
        arch: AUDIT_ARCH_I386,
        ioctl: 54,
        fcntl: 55,
        fcntl64: Some(221),
        clone: 120,
        clone3: 435,
        unshare: 310,
        setns: 346,
        keyctl: 288,
        add_key: 286,
        request_key: 287,
        setsockopt: 366,
        refuse_x32: false,
    },
];

#[cfg(target_arch = "aarch64")]
const ABIS: [Numbers; 2] = [
    Numbers {
        arch: AUDIT_ARCH_AARCH64,
        ioctl: 29,
        fcntl: 25,
        fcntl64: None,
        clone: 220,
        clone3: 435,
        unshare: 97,
        setns: 268,
        keyctl: 219,
        add_key: 217,
        request_key: 218,
        setsockopt: 208,
        refuse_x32: false,
    },
    Numbers {
        arch: AUDIT_ARCH_ARM,
        ioctl: 54,
        fcntl: 55,
        fcntl64: Some(221),
        clone: 120,
        clone3: 435,
        unshare: 337,
        setns: 375,
        keyctl: 311,
        add_key: 309,
        request_key: 310,
        setsockopt: 294,
        refuse_x32: false,
    },
];

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JGE: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
const JSET: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
const RET: u32 = libc::BPF_RET | libc::BPF_K;

/// What happens to a call once its number matched.
enum Rule {
    /// Refused with this errno.
    Refuse(u32),
    /// Refused if the low half of argument `arg` has any bit of `mask`.
    RefuseBits { arg: u32, mask: u32 },
    /// Refused if the low half of argument `arg` is one of these.
    RefuseValues { arg: u32, values: &'static [u32] },
    /// `fcntl`: refused for the command `refused`, and for the command
    /// `flags` if the low half of its argument has any bit of `mask`.
    RefuseFcntl { refused: u32, flags: u32, mask: u32 },
    /// Refused if the low halves of two arguments are these two values.
    RefusePair { args: [u32; 2], values: [u32; 2] },
}

impl Rule {
    /// The rule's instructions, which end in a return on every path.
    fn body(&self) -> Vec<sock_filter> {
        match *self {
            Rule::Refuse(action) => vec![stmt(RET, action)],
            Rule::RefuseBits { arg, mask } => vec![
                stmt(LD_W_ABS, arg_low(arg)),
                jump(JSET, mask, 0, 1),
                stmt(RET, errno(libc::EPERM)),
                stmt(RET, ALLOW),
            ],
            Rule::RefuseValues { arg, values } => {
                let mut out = vec![stmt(LD_W_ABS, arg_low(arg))];
                let n = values.len();
                for (i, &v) in values.iter().enumerate() {
                    // On a match, over the remaining tests and the allow.
                    out.push(jump(JEQ, v, (n - i) as u8, 0));
                }
                out.push(stmt(RET, ALLOW));
                out.push(stmt(RET, errno(libc::EPERM)));
                out
            }
            Rule::RefuseFcntl {
                refused,
                flags,
                mask,
            } => vec![
                stmt(LD_W_ABS, arg_low(1)),
                jump(JEQ, refused, 4, 0),
                jump(JEQ, flags, 0, 2),
                stmt(LD_W_ABS, arg_low(2)),
                jump(JSET, mask, 1, 0),
                stmt(RET, ALLOW),
                stmt(RET, errno(libc::EPERM)),
            ],
            Rule::RefusePair { args, values } => vec![
                stmt(LD_W_ABS, arg_low(args[0])),
                jump(JEQ, values[0], 0, 3),
                stmt(LD_W_ABS, arg_low(args[1])),
                jump(JEQ, values[1], 0, 1),
                stmt(RET, errno(libc::EPERM)),
                stmt(RET, ALLOW),
            ],
        }
    }
}

/// The rules for one ABI, as (number, rule).
fn rules(n: &Numbers, keyring: bool) -> Vec<(u32, Rule)> {
    let mut rules = vec![
        (
            n.ioctl,
            Rule::RefuseValues {
                arg: 1,
                values: &[TIOCSTI, TIOCLINUX, TIOCEXCL, TIOCSETD, FIOASYNC],
            },
        ),
        (
            n.clone,
            Rule::RefuseBits {
                arg: 0,
                mask: (libc::CLONE_PARENT | libc::CLONE_NEWCGROUP) as u32,
            },
        ),
        (n.clone3, Rule::Refuse(errno(libc::ENOSYS))),
        (
            n.unshare,
            Rule::RefuseBits {
                arg: 0,
                mask: libc::CLONE_NEWCGROUP as u32,
            },
        ),
        (
            n.setns,
            Rule::RefuseBits {
                arg: 1,
                mask: libc::CLONE_NEWCGROUP as u32,
            },
        ),
    ];
    for nr in std::iter::once(n.fcntl).chain(n.fcntl64) {
        rules.push((
            nr,
            Rule::RefuseFcntl {
                refused: F_SETLEASE,
                flags: F_SETFL,
                mask: O_ASYNC,
            },
        ));
    }
    if !keyring {
        for nr in [n.keyctl, n.add_key, n.request_key] {
            rules.push((nr, Rule::Refuse(errno(libc::EPERM))));
        }
        rules.push((
            n.setsockopt,
            Rule::RefusePair {
                args: [1, 2],
                values: [SOL_ALG, ALG_SET_KEY_BY_KEY_SERIAL],
            },
        ));
    }
    rules
}

/// One ABI's block: loads the number and finds its rule by a binary
/// search on the numbers, so that any call runs through a handful of
/// instructions (the kernel also runs the filter for every number when it
/// installs it, to cache the calls it always allows: the shorter each
/// path, the cheaper the install); allows what no rule matched.
fn block(n: &Numbers, keyring: bool) -> Vec<sock_filter> {
    let mut out = vec![stmt(LD_W_ABS, NR)];
    if n.refuse_x32 {
        out.push(jump(JGE, X32_SYSCALL_BIT, 0, 1));
        out.push(stmt(RET, errno(libc::ENOSYS)));
    }
    let mut rules = rules(n, keyring);
    rules.sort_by_key(|&(nr, _)| nr);
    out.extend(search(&rules));
    out
}

/// The instructions that find `rules`' (sorted by number) rule for the
/// number in A: a jump on the middle number splits them in two, down to
/// two at most, tried one by one. Every path ends in a return.
fn search(rules: &[(u32, Rule)]) -> Vec<sock_filter> {
    if rules.len() <= 2 {
        let mut out = Vec::new();
        for (nr, rule) in rules {
            let body = rule.body();
            // Not this call: jump over its body.
            out.push(jump(JEQ, *nr, 0, body.len() as u8));
            out.extend(body);
        }
        out.push(stmt(RET, ALLOW));
        return out;
    }
    let (low, high) = rules.split_at(rules.len() / 2);
    let low = search(low);
    // At or above the first number of the upper half: jump over the lower.
    let mut out = vec![jump(JGE, high[0].0, low.len() as u8, 0)];
    out.extend(low);
    out.extend(search(high));
    out
}

/// The whole program: dispatch on the architecture, then its block.
pub(crate) fn program(keyring: bool) -> Vec<sock_filter> {
    let mut out = vec![stmt(LD_W_ABS, ARCH)];
    for n in &ABIS {
        let body = block(n, keyring);
        assert!(body.len() < 256, "a block outgrew a BPF jump");
        // A holds the arch until a block is entered.
        out.push(jump(JEQ, n.arch, 0, body.len() as u8));
        out.extend(body);
    }
    out.push(stmt(RET, errno(libc::ENOSYS)));
    out
}

/// The two programs, built once per process, before any fork; after fork
/// they are only read.
pub(crate) fn filter(keyring: bool) -> &'static [sock_filter] {
    static PROGRAMS: std::sync::OnceLock<[Vec<sock_filter>; 2]> = std::sync::OnceLock::new();
    &PROGRAMS.get_or_init(|| [program(false), program(true)])[keyring as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic BPF interpreter for what the filter uses (absolute word
    /// loads, jeq/jge/jset against constants, returns).
    fn eval(prog: &[sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut a = 0u32;
        let mut pc = 0usize;
        loop {
            let ins = prog[pc];
            let code = ins.code as u32;
            pc += 1;
            match code {
                LD_W_ABS => {
                    let k = ins.k as usize;
                    a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                JEQ | JGE | JSET => {
                    let hit = match code {
                        JEQ => a == ins.k,
                        JGE => a >= ins.k,
                        _ => a & ins.k != 0,
                    };
                    pc += if hit { ins.jt } else { ins.jf } as usize;
                }
                RET => return ins.k,
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }

    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    fn call(prog: &[sock_filter], abi: usize, nr: impl Fn(&Numbers) -> u32, args: [u64; 6]) -> u32 {
        let n = &ABIS[abi];
        eval(prog, nr(n), n.arch, args)
    }

    #[test]
    fn terminal_injection_is_refused_on_every_abi() {
        let prog = program(false);
        for abi in 0..2 {
            for req in [TIOCSTI as u64, TIOCLINUX as u64, 0xffff_ffff_0000_5412] {
                assert_eq!(call(&prog, abi, |n| n.ioctl, [0, req, 0, 0, 0, 0]), EPERM);
            }
            // TCGETS and FIONREAD pass.
            for req in [0x5401u64, 0x541b] {
                assert_eq!(call(&prog, abi, |n| n.ioctl, [0, req, 0, 0, 0, 0]), ALLOW);
            }
        }
    }

    #[test]
    fn what_leaves_a_terminal_broken_or_signals_its_owner_is_refused() {
        let prog = program(true);
        for (abi, numbers) in ABIS.iter().enumerate() {
            for req in [TIOCEXCL, TIOCSETD, FIOASYNC] {
                let args = [0, u64::from(req), 0, 0, 0, 0];
                assert_eq!(call(&prog, abi, |n| n.ioctl, args), EPERM);
            }
            // TIOCNXCL, TIOCGETD, FIONBIO pass.
            for req in [0x540du64, 0x5424, 0x5421] {
                assert_eq!(call(&prog, abi, |n| n.ioctl, [0, req, 0, 0, 0, 0]), ALLOW);
            }
            let fcntls: Vec<u32> = std::iter::once(numbers.fcntl)
                .chain(numbers.fcntl64)
                .collect();
            for nr in fcntls {
                let fcntl = |args| call(&prog, abi, |_| nr, args);
                let async_ = u64::from(O_ASYNC | libc::O_NONBLOCK as u32);
                assert_eq!(fcntl([0, F_SETFL.into(), async_, 0, 0, 0]), EPERM);
                assert_eq!(fcntl([0, F_SETLEASE.into(), 0, 0, 0, 0]), EPERM);
                // Other flags, other commands (the same bits in F_SETFD's
                // argument, F_GETFL) pass.
                let nonblock = libc::O_NONBLOCK as u64;
                assert_eq!(fcntl([0, F_SETFL.into(), nonblock, 0, 0, 0]), ALLOW);
                assert_eq!(fcntl([0, libc::F_SETFD as u64, async_, 0, 0, 0]), ALLOW);
                assert_eq!(fcntl([0, libc::F_GETFL as u64, 0, 0, 0, 0]), ALLOW);
                assert_eq!(fcntl([0, libc::F_GETLEASE as u64, 0, 0, 0, 0]), ALLOW);
            }
        }
    }

    #[test]
    fn clone_parent_and_cgroup_namespaces_are_refused() {
        let prog = program(false);
        let parent = libc::CLONE_PARENT as u64;
        let cgroup = libc::CLONE_NEWCGROUP as u64;
        for abi in 0..2 {
            assert_eq!(
                call(&prog, abi, |n| n.clone, [parent | 0x11, 0, 0, 0, 0, 0]),
                EPERM
            );
            assert_eq!(
                call(&prog, abi, |n| n.clone, [cgroup, 0, 0, 0, 0, 0]),
                EPERM
            );
            assert_eq!(
                call(&prog, abi, |n| n.clone, [0x1200011, 0, 0, 0, 0, 0]),
                ALLOW
            );
            let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
            assert_eq!(
                call(&prog, abi, |n| n.clone, [thread, 0, 0, 0, 0, 0]),
                ALLOW
            );
            assert_eq!(call(&prog, abi, |n| n.clone3, [0; 6]), ENOSYS);
            assert_eq!(
                call(&prog, abi, |n| n.unshare, [cgroup, 0, 0, 0, 0, 0]),
                EPERM
            );
            let net = libc::CLONE_NEWNET as u64;
            assert_eq!(call(&prog, abi, |n| n.unshare, [net, 0, 0, 0, 0, 0]), ALLOW);
            assert_eq!(
                call(&prog, abi, |n| n.setns, [3, cgroup, 0, 0, 0, 0]),
                EPERM
            );
            assert_eq!(call(&prog, abi, |n| n.setns, [3, net, 0, 0, 0, 0]), ALLOW);
        }
    }

    #[test]
    fn keys_are_refused_unless_asked_for() {
        let (closed, open) = (program(false), program(true));
        for abi in 0..2 {
            for nr in [
                |n: &Numbers| n.keyctl,
                |n: &Numbers| n.add_key,
                |n: &Numbers| n.request_key,
            ] {
                assert_eq!(call(&closed, abi, nr, [0; 6]), EPERM);
                assert_eq!(call(&open, abi, nr, [0; 6]), ALLOW);
            }
            // A crypto socket keyed by a key's serial number, but no other
            // option of that level or another.
            let by_serial = [3, SOL_ALG as u64, ALG_SET_KEY_BY_KEY_SERIAL as u64, 0, 0, 0];
            assert_eq!(call(&closed, abi, |n| n.setsockopt, by_serial), EPERM);
            assert_eq!(call(&open, abi, |n| n.setsockopt, by_serial), ALLOW);
            for other in [
                [3, SOL_ALG as u64, 1, 0, 0, 0],
                [3, 1, ALG_SET_KEY_BY_KEY_SERIAL as u64, 0, 0, 0],
            ] {
                assert_eq!(call(&closed, abi, |n| n.setsockopt, other), ALLOW);
            }
            // The rest of the filter is the same.
            let tiocsti = [0, TIOCSTI as u64, 0, 0, 0, 0];
            assert_eq!(call(&open, abi, |n| n.ioctl, tiocsti), EPERM);
        }
    }

    #[test]
    fn other_calls_pass_and_other_abis_are_refused() {
        let prog = program(false);
        for abi in 0..2 {
            // read, write, getpid-ish numbers that no rule names.
            for nr in [0, 1, 39, 63, 172] {
                assert_eq!(call(&prog, abi, |_| nr, [0; 6]), ALLOW, "nr {nr}");
            }
        }
        assert_eq!(eval(&prog, 1, 0xdead_beef, [0; 6]), ENOSYS);
        if ABIS[0].refuse_x32 {
            assert_eq!(
                eval(&prog, X32_SYSCALL_BIT | 16, ABIS[0].arch, [0; 6]),
                ENOSYS
            );
        }
        // The sizes docs/how-it-works.md gives: 132 instructions, 96 with
        // keys allowed, and two more on x86_64 to refuse x32 calls.
        let x32 = if ABIS[0].refuse_x32 { 2 } else { 0 };
        assert_eq!(prog.len(), 132 + x32);
        assert_eq!(program(true).len(), 96 + x32);
    }
}
