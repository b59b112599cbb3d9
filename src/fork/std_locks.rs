//! std's private locks a forked copy of the test process needs free, found
//! in the test binary's symbol table, so that a fork can hold them.
//!
//! std offers no way to take them:
//!
//! - the lock around each thread's start and end (in Rust 1.95
//!   `std::sys::pal::unix::stack_overflow::thread_info::LOCK`): every thread
//!   std starts records its stack's guard page in a global map (for std's
//!   stack overflow message) as it starts, and removes it as it ends. The
//!   test process starts and ends threads all the time (libtest's, other
//!   tests', thread pools'); a run forked while one of them held it had it
//!   held for ever, and the first thread the closure started (or ended)
//!   waited on it for ever;
//! - the backtrace lock (`std::sys::backtrace::lock`'s `LOCK`), held while a
//!   backtrace is captured or resolved, and taken by std's panic hook to
//!   print any panic: a run forked while another thread captured a
//!   backtrace could never print, so never report, the panic of a thread
//!   the closure started.
//!
//! So this module finds them: local symbols of the executable, read from
//! `/proc/self/exe`'s `.symtab`, once per process, before the first fork.
//! [`ForkLocks`](super::locks::ForkLocks) then holds them across each fork,
//! taken the way std's own `Mutex` takes them (a futex word: 0 free, 1
//! held, 2 held with waiters), and the runner lets its copies go before the
//! closure runs.
//!
//! Where one is not found (a binary stripped of its symbols, std linked as
//! a shared library, a std that keeps it elsewhere), it is not held: a run
//! forked while another thread holds it finds it held.
//!
//! # Safety
//!
//! Parent-side: the addresses come from the executable's own symbol table,
//! checked against the size and the segment of the objects, and the words
//! are used with atomic operations only, as std uses them.
#![allow(unsafe_code)]

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, Ordering};

/// The locks, by the end of their symbol's name (Rust's v0 mangling, which
/// std uses; the legacy one adds a hash after it).
const LOCKS: [&[u8]; 2] = [
    b"3std3sys3pal4unix14stack_overflow11thread_info4LOCK",
    b"3std3sys9backtrace4lock4LOCK",
];

/// The futex words of std's locks, where they were found.
type Words = [Option<&'static AtomicU32>; LOCKS.len()];

fn words() -> &'static Words {
    static WORDS: std::sync::OnceLock<Words> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| {
        find().map(|at| {
            at.map(|at| {
                // SAFETY: `find` checked that `at` is a 4-aligned word in a
                // writable segment of the executable, at the futex word's
                // place in an object the size of a `Mutex<()>`, named as
                // std's static lock: it lives as long as the process, and
                // std only ever accesses it atomically.
                unsafe { &*(at as *const AtomicU32) }
            })
        })
    })
}

/// Finds the locks, once per process (a millisecond or so): called before
/// anything is held for a fork.
pub(crate) fn prepare() {
    let _ = words();
}

/// std's locks that were found, held (see the module documentation).
pub(crate) struct Held(Words);

/// Another thread holds one of std's locks: this one.
pub(crate) struct Busy(&'static AtomicU32);

/// Takes every one of std's locks that was found, if all are free.
pub(crate) fn try_hold() -> Result<Held, Busy> {
    let mut held = Held([None; LOCKS.len()]);
    for (slot, word) in held.0.iter_mut().zip(words()) {
        let Some(word) = word else { continue };
        // std's futex `Mutex`: 0 is free, 1 held. On failure, dropping
        // `held` lets go of those taken so far.
        word.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .map_err(|_| Busy(word))?;
        *slot = Some(word);
    }
    Ok(held)
}

impl Busy {
    /// Sleeps until the lock is let go, holding nothing else (a thread
    /// capturing backtraces one after the other holds the backtrace lock
    /// nearly all the time: spinning would take the CPU it needs). It
    /// waits the way std's `Mutex` does (marks it 2, held with waiters, and
    /// sleeps on the futex), so it owns the lock when it wakes, and lets it
    /// go at once as std does, waking the next waiter.
    pub(crate) fn wait(self) {
        let word = self.0;
        while word.swap(2, Ordering::Acquire) != 0 {
            let _ =
                rustix::thread::futex::wait(word, rustix::thread::futex::Flags::PRIVATE, 2, None);
        }
        let mut held = Held([None; LOCKS.len()]);
        held.0[0] = Some(word);
        drop(held);
    }
}

impl Drop for Held {
    /// Lets them go as std's `Mutex` does: 2 means a thread waits (on a
    /// private futex), and one is woken. In a run's copy no thread waits:
    /// the wake is then one system call that finds no one.
    fn drop(&mut self) {
        for word in self.0.iter().flatten() {
            if word.swap(0, Ordering::Release) == 2 {
                let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::PRIVATE, 1);
            }
        }
    }
}

/// Where the futex word of a `Mutex<()>` lies in it: the only word that is
/// 1 while it is held and 0 when it is not.
fn futex_offset() -> Option<usize> {
    let size = std::mem::size_of::<std::sync::Mutex<()>>();
    let mutex = std::sync::Mutex::new(());
    let words = |m: &std::sync::Mutex<()>| -> Vec<u32> {
        let base = (m as *const std::sync::Mutex<()>).cast::<u8>();
        (0..size / 4)
            .map(|i| base.wrapping_add(i * 4).cast::<u32>())
            // SAFETY: each word lies inside `m`, which is live and used by
            // this thread alone; read unaligned, as plain bytes.
            .map(|at| unsafe { at.read_unaligned() })
            .collect()
    };
    let free = words(&mutex);
    let guard = mutex.lock().ok()?;
    let held = words(&mutex);
    drop(guard);
    let mut offsets = (0..free.len()).filter(|&i| free[i] == 0 && held[i] == 1);
    match (offsets.next(), offsets.next()) {
        (Some(i), None) if words(&mutex) == free => Some(i * 4),
        _ => None,
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Finds the futex word of each of std's locks: the one symbol named like
/// it among [`mutexes`].
fn find() -> [Option<usize>; LOCKS.len()] {
    let mut found = [None; LOCKS.len()];
    let Some(mutexes) = mutexes() else {
        return found;
    };
    for (slot, path) in found.iter_mut().zip(LOCKS) {
        let mut named = mutexes.iter().filter(|(name, _)| named_like(name, path));
        if let (Some(&(_, at)), None) = (named.next(), named.next()) {
            *slot = Some(at);
        }
    }
    found
}

/// The objects of the executable that could be a `Mutex<()>`: in its
/// `.symtab`, of that size, in a writable segment; their names, and where
/// their futex word is in memory (moved by the executable's load address,
/// from `AT_PHDR`). Reads the headers, the symbol table (about 2 MiB for a
/// test binary) and the names of the few objects of that size.
fn mutexes() -> Option<Vec<(Vec<u8>, usize)>> {
    if !cfg!(all(
        target_os = "linux",
        target_endian = "little",
        target_pointer_width = "64"
    )) {
        return None;
    }
    let size = std::mem::size_of::<std::sync::Mutex<()>>() as u64;
    let offset = futex_offset()?;
    let exe = std::fs::File::open("/proc/self/exe").ok()?;
    let mut header = [0u8; 64];
    exe.read_exact_at(&mut header, 0).ok()?;
    // ELF, 64-bit, little-endian.
    if header[..6] != *b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = u64_at(&header, 0x20)?;
    let shoff = u64_at(&header, 0x28)?;
    let (phentsize, phnum) = (u16_at(&header, 0x36)?, u16_at(&header, 0x38)?);
    let (shentsize, shnum) = (u16_at(&header, 0x3a)?, u16_at(&header, 0x3c)?);
    if phentsize != 56 || shentsize != 64 {
        return None;
    }
    let mut phdrs = vec![0u8; 56 * phnum as usize];
    exe.read_exact_at(&mut phdrs, phoff).ok()?;
    // (type, flags, offset in the file, address, size in the file, in memory)
    let segments: Vec<(u32, u32, u64, u64, u64, u64)> = phdrs
        .chunks_exact(56)
        .filter_map(|p| {
            let (kind, flags) = (u32_at(p, 0)?, u32_at(p, 4)?);
            let (file_at, vaddr) = (u64_at(p, 8)?, u64_at(p, 0x10)?);
            let (file_size, mem_size) = (u64_at(p, 0x20)?, u64_at(p, 0x28)?);
            Some((kind, flags, file_at, vaddr, file_size, mem_size))
        })
        .collect();
    // The load address: where the program headers are in memory, less
    // where the file says they are.
    let phdrs_vaddr = segments
        .iter()
        .find_map(|&(kind, _, at, vaddr, file_size, _)| {
            (kind == libc::PT_LOAD && at <= phoff && phoff < at + file_size)
                .then(|| vaddr + (phoff - at))
        })?;
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave.
    let phdrs_at = unsafe { libc::getauxval(libc::AT_PHDR) };
    let bias = phdrs_at.checked_sub(phdrs_vaddr)?;
    let writable = |vaddr: u64| {
        segments
            .iter()
            .any(|&(kind, flags, _, start, _, mem_size)| {
                kind == libc::PT_LOAD
                    && flags & libc::PF_W != 0
                    && start <= vaddr
                    && vaddr + size <= start + mem_size
            })
    };
    let mut sections = vec![0u8; 64 * shnum as usize];
    exe.read_exact_at(&mut sections, shoff).ok()?;
    let section = |i: usize| sections.get(i * 64..i * 64 + 64);
    // SHT_SYMTAB, and the string table it links to.
    let symtab = (0..shnum as usize).find(|&i| section(i).and_then(|s| u32_at(s, 4)) == Some(2))?;
    let symtab = section(symtab)?;
    let (syms_at, syms_size) = (u64_at(symtab, 0x18)?, u64_at(symtab, 0x20)?);
    let names_at = u64_at(section(u32_at(symtab, 0x28)? as usize)?, 0x18)?;
    let mut syms = vec![0u8; usize::try_from(syms_size).ok()?];
    exe.read_exact_at(&mut syms, syms_at).ok()?;
    let mut found = Vec::new();
    for sym in syms.chunks_exact(24) {
        // An object (STT_OBJECT) the size of a Mutex<()>, in a writable
        // segment, its futex word aligned.
        let vaddr = u64_at(sym, 8)?;
        if sym[4] & 0xf != 1 || u64_at(sym, 16)? != size || !writable(vaddr) {
            continue;
        }
        let at = usize::try_from(bias.checked_add(vaddr)?).ok()? + offset;
        if !at.is_multiple_of(4) {
            continue;
        }
        let mut name = [0u8; 128];
        let got = exe
            .read_at(&mut name, names_at + u64::from(u32_at(sym, 0)?))
            .ok()?;
        let name = &name[..got];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        found.push((name.to_vec(), at));
    }
    Some(found)
}

/// Whether a symbol's name ends with `path` (v0 mangling), or with it,
/// `17h`, 16 hex digits and `E` (legacy).
fn named_like(name: &[u8], path: &[u8]) -> bool {
    if name.ends_with(path) {
        return true;
    }
    let Some(rest) = name
        .windows(path.len())
        .position(|w| w == path)
        .map(|i| &name[i + path.len()..])
    else {
        return false;
    };
    rest.len() == 20
        && rest.starts_with(b"17h")
        && rest.ends_with(b"E")
        && rest[3..19].iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::{LOCKS, named_like};

    #[test]
    fn names_of_std_locks_in_both_manglings() {
        let threads = LOCKS[0];
        assert!(named_like(
            b"_RNvNtNtNtNtNtCsjrHSEGnQ3l9_3std3sys3pal4unix14stack_overflow11thread_info4LOCK",
            threads
        ));
        assert!(named_like(
            b"_ZN3std3sys3pal4unix14stack_overflow11thread_info4LOCK17h0123456789abcdefE",
            threads
        ));
        assert!(!named_like(
            b"_RNvNtNtNtNtNtCsjrHSEGnQ3l9_3std3sys3pal4unix14stack_overflow11thread_info9SPIN_LOCK",
            threads
        ));
        assert!(!named_like(
            b"_ZN3std3sys3pal4unix14stack_overflow11thread_info4LOCKS",
            threads
        ));
        assert!(named_like(
            b"_RNvNvNtNtCsjrHSEGnQ3l9_3std3sys9backtrace4lock4LOCK",
            LOCKS[1]
        ));
    }

    /// Holds std's locks until a thread of this process waits on the futex
    /// word of lock `i` (its `/proc/self/task/*/syscall` says so) after
    /// `start`, then lets them go; true if one did.
    #[cfg(target_os = "linux")]
    fn a_thread_waits_on(i: usize, start: impl FnOnce()) -> bool {
        let word = super::words()[i].expect("std's lock is not in this binary's symbol table");
        let held = loop {
            match super::try_hold() {
                Ok(held) => break held,
                Err(busy) => busy.wait(),
            }
        };
        start();
        // futex(2) is system call 202 on x86_64, 98 on aarch64.
        let futex = if cfg!(target_arch = "aarch64") {
            98
        } else {
            202
        };
        let waiting = format!("{futex} {:#x} ", word as *const _ as usize);
        // A bound, should the thread never wait there.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let seen = loop {
            let found = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("syscall")).ok())
                .any(|s| s.starts_with(&waiting));
            if found || std::time::Instant::now() > deadline {
                break found;
            }
            std::thread::yield_now();
        };
        drop(held);
        seen
    }

    /// On the std this was written for (Rust 1.95's, linked into the test
    /// binary) both locks are found, and they are the ones a thread waits
    /// on as it starts, and as it captures a backtrace. Fails when a new
    /// std moves one, so that this module is looked at again.
    #[test]
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn std_locks_are_found_and_threads_wait_on_them() {
        let started = std::time::Instant::now();
        super::prepare();
        eprintln!("found in {:?}", started.elapsed());
        let mut thread = None;
        assert!(
            a_thread_waits_on(0, || thread = Some(std::thread::spawn(|| 7))),
            "no thread waited on std's thread lock as it started"
        );
        assert_eq!(thread.take().unwrap().join().unwrap(), 7);
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (ready, started) = std::sync::mpsc::channel::<()>();
        let capturing = std::thread::spawn(move || {
            ready.send(()).unwrap();
            wait.recv().unwrap();
            std::backtrace::Backtrace::force_capture().status()
        });
        // Started (past std's thread lock, which is held below).
        started.recv().unwrap();
        assert!(
            a_thread_waits_on(1, || go.send(()).unwrap()),
            "no thread waited on std's backtrace lock as it captured one"
        );
        assert_eq!(
            capturing.join().unwrap(),
            std::backtrace::BacktraceStatus::Captured
        );
    }

    #[test]
    fn the_futex_word_of_a_mutex_is_found() {
        assert!(super::futex_offset().is_some());
    }
}
