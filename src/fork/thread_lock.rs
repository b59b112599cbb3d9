//! std's lock around each thread's start and end, found in the test
//! binary's symbol table, so that a fork can hold it.
//!
//! Every thread std starts records its stack's guard page in a global map
//! of std's (for its stack overflow message) as it starts, and removes it
//! as it ends, under a private `Mutex` (in Rust 1.95:
//! `std::sys::pal::unix::stack_overflow::thread_info::LOCK`). The test
//! process starts and ends threads all the time (libtest's, other tests',
//! thread pools'); forked while one of them held that lock, a run's copy
//! had it held for ever, and the first thread the closure started (or
//! ended) waited on it for ever. std offers no way to take it, so this
//! module finds it: a local symbol of the executable, read from
//! `/proc/self/exe`'s `.symtab`, once per process, before the first fork.
//! [`ForkLocks`](super::locks::ForkLocks) then holds it across each fork,
//! the way std's own `Mutex` takes it (a futex word: 0 free, 1 held, 2 held
//! with waiters), and the runner's copy is let go before the closure runs.
//!
//! Where it is not found (a binary stripped of its symbols, std linked as a
//! shared library, a std that keeps it elsewhere), nothing is held: a run
//! forked while another thread starts or ends can then find it held.
//!
//! # Safety
//!
//! Parent-side: the address comes from the executable's own symbol table,
//! checked against its size and its segment, and the word is used with
//! atomic operations only, as std uses it.
#![allow(unsafe_code)]

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, Ordering};

/// The futex word of std's lock, if it was found.
fn word() -> Option<&'static AtomicU32> {
    static WORD: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let at = (*WORD.get_or_init(find))?;
    // SAFETY: `find` checked that `at` is a 4-aligned word inside a
    // writable segment of the executable (std's static `Mutex`, which lives
    // as long as the process), the futex word of a `Mutex<()>`, which std
    // only ever accesses atomically.
    Some(unsafe { &*(at as *const AtomicU32) })
}

/// Whether std's lock was found in this process (for tests and diagnosis).
pub(crate) fn found() -> bool {
    word().is_some()
}

/// std's lock, held (see the module documentation).
pub(crate) struct Held(&'static AtomicU32);

/// Another thread holds std's lock: it is starting or ending.
pub(crate) struct Busy;

/// Takes std's lock if it is free: `Ok(None)` where it was not found.
pub(crate) fn try_hold() -> Result<Option<Held>, Busy> {
    let Some(word) = word() else {
        return Ok(None);
    };
    // std's futex `Mutex`: 0 is free, 1 held.
    match word.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed) {
        Ok(_) => Ok(Some(Held(word))),
        Err(_) => Err(Busy),
    }
}

impl Drop for Held {
    /// Lets it go as std's `Mutex` does: 2 means a thread waits (on a
    /// private futex), and one is woken. In a run's copy no thread waits;
    /// the wake is then one system call that finds no one.
    fn drop(&mut self) {
        if self.0.swap(0, Ordering::Release) == 2 {
            let _ = rustix::thread::futex::wake(self.0, rustix::thread::futex::Flags::PRIVATE, 1);
        }
    }
}

/// The name std's lock has in the symbol table ends with this (Rust's v0
/// mangling, which std uses; the legacy one adds a hash after it).
const PATH: &[u8] = b"14stack_overflow11thread_info4LOCK";

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

/// Finds the futex word of std's lock: the one symbol named like it in the
/// executable's `.symtab`, an object the size of a `Mutex<()>` in a
/// writable segment, moved by the executable's load address (from
/// `AT_PHDR`). Reads the section headers, the symbol table (about 2 MiB
/// for a test binary) and the names of the few objects of that size.
fn find() -> Option<usize> {
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
    // where the file puts them.
    let phdrs_vaddr = segments
        .iter()
        .find_map(|&(kind, _, at, vaddr, file_size, _)| {
            (kind == libc::PT_LOAD && at <= phoff && phoff < at + file_size)
                .then(|| vaddr + (phoff - at))
        })?;
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave.
    let phdrs_at = unsafe { libc::getauxval(libc::AT_PHDR) };
    let bias = phdrs_at.checked_sub(phdrs_vaddr)?;
    let mut sections = vec![0u8; 64 * shnum as usize];
    exe.read_exact_at(&mut sections, shoff).ok()?;
    let section = |i: usize| sections.get(i * 64..i * 64 + 64);
    let symtab = (0..shnum as usize).find(|&i| section(i).and_then(|s| u32_at(s, 4)) == Some(2))?;
    let symtab = section(symtab)?;
    let (syms_at, syms_size) = (u64_at(symtab, 0x18)?, u64_at(symtab, 0x20)?);
    let names = section(u32_at(symtab, 0x28)? as usize)?;
    let names_at = u64_at(names, 0x18)?;
    let mut syms = vec![0u8; usize::try_from(syms_size).ok()?];
    exe.read_exact_at(&mut syms, syms_at).ok()?;
    let mut found = None;
    for sym in syms.chunks_exact(24) {
        // An object (STT_OBJECT) the size of a Mutex<()>.
        if sym[4] & 0xf != 1 || u64_at(sym, 16)? != size {
            continue;
        }
        let mut name = [0u8; 128];
        let got = exe
            .read_at(&mut name, names_at + u64::from(u32_at(sym, 0)?))
            .ok()?;
        let name = &name[..got];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        if !named_like_std_lock(name) {
            continue;
        }
        if found.is_some() {
            // Two of them: not the std this was written for.
            return None;
        }
        found = Some(u64_at(sym, 8)?);
    }
    let vaddr = found?;
    // Inside a writable loaded segment, and aligned as a futex word.
    let writable = segments
        .iter()
        .any(|&(kind, flags, _, start, _, mem_size)| {
            kind == libc::PT_LOAD
                && flags & libc::PF_W != 0
                && start <= vaddr
                && vaddr + size <= start + mem_size
        });
    let at = usize::try_from(bias.checked_add(vaddr)?).ok()? + offset;
    (writable && at.is_multiple_of(4)).then_some(at)
}

/// Whether a symbol's name is that of std's lock: ends with [`PATH`] (v0),
/// or with it, `17h`, 16 hex digits and `E` (legacy).
fn named_like_std_lock(name: &[u8]) -> bool {
    if name.ends_with(PATH) {
        return true;
    }
    let Some(rest) = name
        .windows(PATH.len())
        .position(|w| w == PATH)
        .map(|i| &name[i + PATH.len()..])
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
    #[test]
    fn names_of_std_lock_in_both_manglings() {
        use super::named_like_std_lock as named;
        assert!(named(
            b"_RNvNtNtNtNtNtCsjrHSEGnQ3l9_3std3sys3pal4unix14stack_overflow11thread_info4LOCK"
        ));
        assert!(named(
            b"_ZN3std3sys3pal4unix14stack_overflow11thread_info4LOCK17h0123456789abcdefE"
        ));
        assert!(!named(
            b"_RNvNtNtNtNtNtCsjrHSEGnQ3l9_3std3sys3pal4unix14stack_overflow11thread_info9SPIN_LOCK"
        ));
        assert!(!named(
            b"_ZN3std3sys3pal4unix14stack_overflow11thread_info4LOCKS"
        ));
    }

    /// On the std this was written for (Rust 1.95's, linked into the test
    /// binary) the lock is found, and it is the one a new thread waits on
    /// as it starts: held here, a thread std starts waits on that very
    /// futex word (its `/proc/self/task/*/syscall` says so) until it is let
    /// go. Fails when a new std moves its lock, so that this module is
    /// looked at again.
    #[test]
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn std_lock_is_found_and_threads_wait_on_it() {
        let started = std::time::Instant::now();
        let word = super::word().expect("std's thread lock is not in this binary's symbol table");
        eprintln!("found in {:?}", started.elapsed());
        let held = loop {
            match super::try_hold() {
                Ok(held) => break held.expect("found"),
                Err(super::Busy) => std::thread::yield_now(),
            }
        };
        let thread = std::thread::spawn(|| 7);
        // futex(2) is system call 202 on x86_64, 98 on aarch64.
        let futex = if cfg!(target_arch = "aarch64") {
            98
        } else {
            202
        };
        let waiting = format!("{futex} {:#x} ", word as *const _ as usize);
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
        assert_eq!(thread.join().unwrap(), 7);
        assert!(seen, "no thread waited on {waiting}");
    }

    #[test]
    fn the_futex_word_of_a_mutex_is_found() {
        assert!(super::futex_offset().is_some());
    }
}
