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
//!   the closure started;
//! - the panic hook's lock (`std::panicking::HOOK`, an `RwLock`), which
//!   `std::panic::set_hook` and `take_hook` write-lock: a run forked while
//!   another thread set a hook had it write-locked for ever, and the
//!   closure's panic (which reads the hook) waited until the run's timeout;
//! - the environment's lock (`std::sys::env::unix::ENV_LOCK`, an `RwLock`),
//!   which `std::env::set_var` and `remove_var` write-lock: a run forked
//!   while another thread set a variable had it write-locked for ever, and
//!   the closure's first `std::env::var` waited for ever.
//!
//! So this module finds them: local symbols of the executable, read from
//! `/proc/self/exe`'s `.symtab`, once per process, before the first fork.
//! [`ForkLocks`](super::locks::ForkLocks) then holds them across each fork,
//! taken the way std takes them: a mutex by its futex word (0 free, 1
//! held, 2 held with waiters); a read-write lock for reading (others may
//! read it too, as a panicking thread does while it runs the hook), by its
//! state word (the number of readers, all ones when write-locked, and two
//! bits for waiting readers and writers) and let go waking a waiting writer
//! as std does. A copy holds nothing else: the runner lets its mutexes go,
//! and marks its copies of the read-write locks free, before the closure
//! runs (their waiters are threads that do not exist in it).
//!
//! Where one is not found (a binary stripped of its symbols, std linked as
//! a shared library, a std that keeps it elsewhere or under another name),
//! it is not held: a run forked while another thread holds it finds it
//! held.
//!
//! # Safety
//!
//! Parent-side: the addresses come from the executable's own symbol table,
//! checked against the size and the segment of the objects (and, for the
//! hook, what its state word holds), and the words are used with atomic
//! operations only, as std uses them.
#![allow(unsafe_code)]

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, Ordering};

/// How std keeps one of its locks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// A `Mutex<()>`.
    Mutex,
    /// A `RwLock<()>`.
    RwLock,
    /// The panic hook: a `RwLock` without poisoning around a boxed hook.
    Hook,
}

/// The locks, by the end of their symbol's name (Rust's v0 mangling, which
/// std uses; the legacy one adds a hash after it), and their kind.
const LOCKS: [(&[u8], Kind); 4] = [
    (
        b"3std3sys3pal4unix14stack_overflow11thread_info4LOCK",
        Kind::Mutex,
    ),
    (b"3std3sys9backtrace4lock4LOCK", Kind::Mutex),
    (b"3std9panicking4HOOK", Kind::Hook),
    (b"3std3sys3env4unix8ENV_LOCK", Kind::RwLock),
];

/// The shape of std's `nonpoison::RwLock<T: ?Sized>` (unstable, so not
/// nameable here): the futex `RwLock` (two words), then the data, which
/// stays last since it may be unsized. Its layout, with a hook
/// `Option`-sized, tells where the state word lies in `HOOK`.
#[allow(dead_code)]
struct RwLockShape<T: ?Sized> {
    inner: [AtomicU32; 2],
    data: std::cell::UnsafeCell<T>,
}

/// `HOOK`'s shape.
type HookShape = RwLockShape<Option<Box<PanicHook>>>;

/// What `std::panic::set_hook` takes.
type PanicHook = dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send;

/// The state word of std's futex `RwLock`: bits 0-29 count the readers
/// (all ones: write-locked), bit 30 says readers wait (on this word), bit
/// 31 that writers wait (on the word after it, `writer_notify`).
const MASK: u32 = (1 << 30) - 1;
const WRITE_LOCKED: u32 = MASK;
const MAX_READERS: u32 = MASK - 1;
const READERS_WAITING: u32 = 1 << 30;
const WRITERS_WAITING: u32 = 1 << 31;

/// Whether a reader may take the lock now (std's `is_read_lockable`: not
/// write-locked, no one waiting, room for another reader).
fn read_lockable(state: u32) -> bool {
    state & MASK < MAX_READERS && state & (READERS_WAITING | WRITERS_WAITING) == 0
}

/// One of std's locks, found: its futex word (a read-write lock's state
/// word; its `writer_notify` follows it).
#[derive(Clone, Copy)]
struct Word {
    at: &'static AtomicU32,
    kind: Kind,
}

impl Word {
    /// A read-write lock's `writer_notify`, the word after its state.
    fn writer_notify(self) -> &'static AtomicU32 {
        // SAFETY: `find` checked that the object holds both words of the
        // futex `RwLock`, the state and then `writer_notify`, 4-aligned in a
        // writable segment; it lives as long as the process and std only
        // ever accesses it atomically.
        unsafe { &*(self.at as *const AtomicU32).add(1) }
    }
}

/// The words of std's locks, where they were found.
type Words = [Option<Word>; LOCKS.len()];

fn words() -> &'static Words {
    static WORDS: std::sync::OnceLock<Words> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| {
        let found = find();
        std::array::from_fn(|i| {
            found[i].map(|at| Word {
                // SAFETY: `find` checked that `at` is a 4-aligned word in a
                // writable segment of the executable, at the futex word's
                // place in an object of the size of the lock, named as
                // std's static lock: it lives as long as the process, and
                // std only ever accesses it atomically.
                at: unsafe { &*(at as *const AtomicU32) },
                kind: LOCKS[i].1,
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
pub(crate) struct Busy(Word);

/// Takes every one of std's locks that was found, if all are free (a
/// read-write lock: if a reader may take it).
pub(crate) fn try_hold() -> Result<Held, Busy> {
    let mut held = Held([None; LOCKS.len()]);
    for (slot, word) in held.0.iter_mut().zip(words()) {
        let Some(word) = *word else { continue };
        // On failure, dropping `held` lets go of those taken so far.
        let taken = match word.kind {
            // std's futex `Mutex`: 0 is free, 1 held.
            Kind::Mutex => word
                .at
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok(),
            // std's `try_read`: one more reader, if a reader may.
            Kind::RwLock | Kind::Hook => word
                .at
                .fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| {
                    read_lockable(s).then_some(s + 1)
                })
                .is_ok(),
        };
        if !taken {
            return Err(Busy(word));
        }
        *slot = Some(word);
    }
    Ok(held)
}

impl Busy {
    /// Sleeps until the lock is let go, holding nothing else (a thread
    /// capturing backtraces one after the other holds the backtrace lock
    /// nearly all the time: spinning would take the CPU it needs).
    ///
    /// A mutex is waited for the way std's `Mutex` does (marked 2, held
    /// with waiters, and slept on), so it is owned on waking, and let go
    /// at once as std does, waking the next waiter. A read-write lock is
    /// waited for as std's readers do: the readers-waiting bit set, and
    /// slept on until the thread letting it go clears it and wakes them.
    pub(crate) fn wait(self) {
        let word = self.0;
        if word.kind != Kind::Mutex {
            let state = word.at.load(Ordering::Relaxed);
            if read_lockable(state) {
                return;
            }
            if state & READERS_WAITING == 0
                && word
                    .at
                    .compare_exchange(
                        state,
                        state | READERS_WAITING,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_err()
            {
                // It changed: look again from the start.
                return;
            }
            let _ = rustix::thread::futex::wait(
                word.at,
                rustix::thread::futex::Flags::PRIVATE,
                state | READERS_WAITING,
                None,
            );
            return;
        }
        while word.at.swap(2, Ordering::Acquire) != 0 {
            let _ = rustix::thread::futex::wait(
                word.at,
                rustix::thread::futex::Flags::PRIVATE,
                2,
                None,
            );
        }
        let mut held = Held([None; LOCKS.len()]);
        held.0[0] = Some(word);
        drop(held);
    }
}

impl Held {
    /// Lets go of a run's copies, in the runner, before the closure runs:
    /// the mutexes as in the test process, and the read-write locks marked
    /// free outright (their other readers and waiters were threads of the
    /// test process, which do not exist here).
    pub(crate) fn let_go_in_copy(mut self) {
        for word in self.0.iter_mut() {
            if let Some(w) = word
                && w.kind != Kind::Mutex
            {
                w.at.store(0, Ordering::Release);
                *word = None;
            }
        }
    }
}

impl Drop for Held {
    /// Lets them go as std does. A mutex: 2 means a thread waits (on a
    /// private futex), and one is woken (in a run's copy no thread waits:
    /// the wake is then one system call that finds no one). A read-write
    /// lock: one reader fewer; the last one wakes a waiting writer, or
    /// waiting readers (std's `read_unlock` and `wake_writer_or_readers`).
    fn drop(&mut self) {
        for word in self.0.iter().flatten() {
            match word.kind {
                Kind::Mutex => {
                    if word.at.swap(0, Ordering::Release) == 2 {
                        let _ = rustix::thread::futex::wake(
                            word.at,
                            rustix::thread::futex::Flags::PRIVATE,
                            1,
                        );
                    }
                }
                Kind::RwLock | Kind::Hook => {
                    let state = word.at.fetch_sub(1, Ordering::Release) - 1;
                    if state & MASK == 0 && state & WRITERS_WAITING != 0 {
                        wake_writer_or_readers(*word, state);
                    }
                }
            }
        }
    }
}

/// std's `wake_writer_or_readers`, for a read-write lock just let go
/// (`state` unlocked, with waiters): one writer woken if one waits, else
/// every reader. Should another thread lock it meanwhile, waking is
/// theirs to do.
fn wake_writer_or_readers(word: Word, mut state: u32) {
    let private = rustix::thread::futex::Flags::PRIVATE;
    let cas = |from: u32, to: u32| {
        word.at
            .compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed)
    };
    let wake_writer = || {
        word.writer_notify().fetch_add(1, Ordering::Release);
        rustix::thread::futex::wake(word.writer_notify(), private, 1).is_ok_and(|n| n > 0)
    };
    if state == WRITERS_WAITING {
        match cas(state, 0) {
            Ok(_) => {
                wake_writer();
                return;
            }
            Err(s) => state = s,
        }
    }
    if state == READERS_WAITING + WRITERS_WAITING {
        if cas(state, READERS_WAITING).is_err() {
            return;
        }
        if wake_writer() {
            return;
        }
        state = READERS_WAITING;
    }
    if state == READERS_WAITING && cas(state, 0).is_ok() {
        let _ = rustix::thread::futex::wake(word.at, private, i32::MAX as u32);
    }
}

/// The 32-bit words of `value`, as plain bytes (a lock of this thread's
/// alone, probed for where its futex word lies).
fn words_of<T>(value: &T) -> Vec<u32> {
    let base = (value as *const T).cast::<u8>();
    (0..std::mem::size_of::<T>() / 4)
        .map(|i| base.wrapping_add(i * 4).cast::<u32>())
        // SAFETY: each word lies inside `value`, which is live for the
        // call; read unaligned, as plain bytes (a lock's words are only
        // read here while this thread alone uses it).
        .map(|at| unsafe { at.read_unaligned() })
        .collect()
}

/// Where the futex word of a `Mutex<()>` lies in it: the only word that is
/// 1 while it is held and 0 when it is not.
fn futex_offset() -> Option<usize> {
    let mutex = std::sync::Mutex::new(());
    let words = words_of::<std::sync::Mutex<()>>;
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

/// Where the state word of a `RwLock<()>` lies in it: the only word that
/// is all ones (`WRITE_LOCKED`) while it is write-locked, 1 while it is
/// read-locked once, and 0 when it is free.
fn rwlock_offset() -> Option<usize> {
    let size = std::mem::size_of::<std::sync::RwLock<()>>();
    let lock = std::sync::RwLock::new(());
    let words = words_of::<std::sync::RwLock<()>>;
    let free = words(&lock);
    let written = {
        let _guard = lock.write().ok()?;
        words(&lock)
    };
    let read = {
        let _guard = lock.read().ok()?;
        words(&lock)
    };
    let mut offsets =
        (0..free.len()).filter(|&i| free[i] == 0 && written[i] == WRITE_LOCKED && read[i] == 1);
    match (offsets.next(), offsets.next()) {
        // Room for `writer_notify` after it.
        (Some(i), None) if words(&lock) == free && (i + 2) * 4 <= size => Some(i * 4),
        _ => None,
    }
}

/// A lock's size, and where its futex word (a read-write lock's state
/// word) lies in it.
fn shape(kind: Kind) -> Option<(usize, usize)> {
    match kind {
        Kind::Mutex => Some((std::mem::size_of::<std::sync::Mutex<()>>(), futex_offset()?)),
        Kind::RwLock => Some((
            std::mem::size_of::<std::sync::RwLock<()>>(),
            rwlock_offset()?,
        )),
        // The futex `RwLock` keeps its state word first.
        Kind::Hook => Some((
            std::mem::size_of::<HookShape>(),
            std::mem::offset_of!(HookShape, inner),
        )),
    }
}

/// Finds the futex word of each of std's locks: the one symbol named like
/// it among the [`objects`] of its size.
fn find() -> [Option<usize>; LOCKS.len()] {
    let mut found = [None; LOCKS.len()];
    let shapes = LOCKS.map(|(_, kind)| shape(kind));
    let sizes: Vec<u64> = shapes
        .iter()
        .flatten()
        .map(|&(size, _)| size as u64)
        .collect();
    let Some(objects) = objects(&sizes) else {
        return found;
    };
    for ((slot, (path, kind)), shape) in found.iter_mut().zip(LOCKS).zip(shapes) {
        let Some((size, offset)) = shape else {
            continue;
        };
        let mut named = objects
            .iter()
            .filter(|(name, _, of)| *of == size as u64 && named_like(name, path));
        let (Some(&(_, object, _)), None) = (named.next(), named.next()) else {
            continue;
        };
        let Some(at) = object.checked_add(offset).filter(|at| at.is_multiple_of(4)) else {
            continue;
        };
        if kind == Kind::Hook && !plausible_hook_state(at) {
            continue;
        }
        *slot = Some(at);
    }
    found
}

/// Whether the word at `at` (in `HOOK`, where its state word should be)
/// holds what a state word can: a few readers or a writer, and waiting
/// bits only with them. A word of the hook's box (a pointer) does not.
fn plausible_hook_state(at: usize) -> bool {
    // SAFETY: `at` lies in `HOOK`, a static of the executable in a
    // writable segment (checked by `objects`), 4-aligned; read atomically,
    // as std reads it.
    let state = unsafe { &*(at as *const AtomicU32) }.load(Ordering::Relaxed);
    let readers = state & MASK;
    readers == WRITE_LOCKED || readers < 1 << 16 && (readers > 0 || state == 0)
}

/// The objects of the executable that could be one of std's locks: in its
/// `.symtab`, of one of `sizes`, in a writable segment; their names, where
/// they are in memory (moved by the executable's load address, from
/// `AT_PHDR`) and their size. Reads the headers, the symbol table (about 2
/// MiB for a test binary) and the names of the few objects of those sizes.
fn objects(sizes: &[u64]) -> Option<Vec<(Vec<u8>, usize, u64)>> {
    if !cfg!(all(
        target_os = "linux",
        target_endian = "little",
        target_pointer_width = "64"
    )) {
        return None;
    }
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
    let writable = |vaddr: u64, size: u64| {
        segments
            .iter()
            .any(|&(kind, flags, _, start, _, mem_size)| {
                kind == libc::PT_LOAD
                    && flags & libc::PF_W != 0
                    && start <= vaddr
                    && vaddr.saturating_add(size) <= start + mem_size
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
        // An object (STT_OBJECT) of one of the sizes, in a writable
        // segment.
        let (vaddr, size) = (u64_at(sym, 8)?, u64_at(sym, 16)?);
        if sym[4] & 0xf != 1 || !sizes.contains(&size) || !writable(vaddr, size) {
            continue;
        }
        let at = usize::try_from(bias.checked_add(vaddr)?).ok()?;
        let mut name = [0u8; 128];
        let got = exe
            .read_at(&mut name, names_at + u64::from(u32_at(sym, 0)?))
            .ok()?;
        let name = &name[..got];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        found.push((name.to_vec(), at, size));
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
    use super::{Kind, LOCKS, named_like};

    #[test]
    fn names_of_std_locks_in_both_manglings() {
        let threads = LOCKS[0].0;
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
            LOCKS[1].0
        ));
        assert!(named_like(
            b"_RNvNtCsjrHSEGnQ3l9_3std9panicking4HOOK",
            LOCKS[2].0
        ));
        assert!(named_like(
            b"_RNvNtNtNtCsjrHSEGnQ3l9_3std3sys3env4unix8ENV_LOCK",
            LOCKS[3].0
        ));
    }

    /// Holds std's locks until a thread of this process waits on the futex
    /// word of lock `i` (its `/proc/self/task/*/syscall` says so; for a
    /// read-write lock, a writer waits on `writer_notify`) after `start`,
    /// then lets them go; true if one did.
    #[cfg(target_os = "linux")]
    fn a_thread_waits_on(i: usize, start: impl FnOnce()) -> bool {
        let word = super::words()[i].expect("std's lock is not in this binary's symbol table");
        let waited_on = match word.kind {
            Kind::Mutex => word.at,
            Kind::RwLock | Kind::Hook => word.writer_notify(),
        };
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
        let waiting = format!("{futex} {:#x} ", waited_on as *const _ as usize);
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
    /// binary) every lock is found, and they are the ones a thread waits
    /// on as it starts, as it captures a backtrace, as it sets a panic
    /// hook and as it sets an environment variable; and a writer waiting
    /// is woken when they are let go. Fails when a new std moves one, so
    /// that this module is looked at again.
    #[test]
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn std_locks_are_found_and_threads_wait_on_them() {
        let started = std::time::Instant::now();
        super::prepare();
        eprintln!("found in {:?}", started.elapsed());
        for (i, (name, _)) in LOCKS.iter().enumerate() {
            assert!(
                super::words()[i].is_some(),
                "{} is not found",
                String::from_utf8_lossy(name)
            );
        }
        let mut thread = None;
        assert!(
            a_thread_waits_on(0, || thread = Some(std::thread::spawn(|| 7))),
            "no thread waited on std's thread lock as it started"
        );
        assert_eq!(thread.take().unwrap().join().unwrap(), 7);
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (ready, started) = std::sync::mpsc::channel::<()>();
        let (ready_env, ready_hook) = (ready.clone(), ready.clone());
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
        // The hook: taken and put back, so that the chain ends as it began.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let setting = std::thread::spawn(move || {
            ready_hook.send(()).unwrap();
            wait.recv().unwrap();
            let hook = std::panic::take_hook();
            std::panic::set_hook(hook);
        });
        started.recv().unwrap();
        assert!(
            a_thread_waits_on(2, || go.send(()).unwrap()),
            "no thread waited on std's panic hook lock as it took the hook"
        );
        setting.join().unwrap();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let setting = std::thread::spawn(move || {
            ready_env.send(()).unwrap();
            wait.recv().unwrap();
            // SAFETY: only this test touches this variable, and std locks
            // the environment around the change (which is what is tested).
            unsafe { std::env::set_var("HERMETIC_STD_LOCKS_TEST", "1") };
        });
        started.recv().unwrap();
        assert!(
            a_thread_waits_on(3, || go.send(()).unwrap()),
            "no thread waited on std's environment lock as it set a variable"
        );
        setting.join().unwrap();
        assert_eq!(std::env::var("HERMETIC_STD_LOCKS_TEST").as_deref(), Ok("1"));
    }

    /// A std `RwLock` read-held this module's way: other readers still
    /// take it; a writer waits, and is woken when it is let go; a copy's
    /// is marked free, whatever waiters the original had.
    #[test]
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn a_rwlock_held_for_a_fork_is_shared_let_go_and_freed_in_a_copy() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let lock: &'static std::sync::RwLock<u32> = Box::leak(Box::new(std::sync::RwLock::new(0)));
        let offset = super::rwlock_offset().expect("the state word of a RwLock");
        let word = super::Word {
            // SAFETY: the state word of a leaked RwLock, 4-aligned, used
            // atomically only, as std does.
            at: unsafe {
                &*(lock as *const std::sync::RwLock<u32>)
                    .cast::<u8>()
                    .add(offset)
                    .cast::<AtomicU32>()
            },
            kind: Kind::RwLock,
        };
        let mut words = [None; LOCKS.len()];
        words[3] = Some(word);
        let take = || {
            assert!(
                word.at
                    .fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| {
                        super::read_lockable(s).then_some(s + 1)
                    })
                    .is_ok()
            );
            super::Held(words)
        };
        let held = take();
        assert_eq!(*lock.read().unwrap(), 0, "another reader was refused");
        let writer = std::thread::spawn(move || *lock.write().unwrap() = 1);
        // The writer waits on `writer_notify`, marking the state word.
        while word.at.load(Ordering::Relaxed) & super::WRITERS_WAITING == 0 {
            std::thread::yield_now();
        }
        drop(held);
        writer.join().unwrap();
        assert_eq!(*lock.read().unwrap(), 1);
        assert_eq!(word.at.load(Ordering::Relaxed), 0);
        // A copy: held, with a reader and writers said to wait.
        let held = take();
        word.at
            .fetch_add(1 | super::WRITERS_WAITING, Ordering::Relaxed);
        held.let_go_in_copy();
        assert_eq!(word.at.load(Ordering::Relaxed), 0);
        assert_eq!(*lock.write().unwrap(), 1);
    }

    #[test]
    fn the_futex_word_of_a_mutex_is_found() {
        assert!(super::futex_offset().is_some());
    }

    #[test]
    fn the_state_word_of_a_rwlock_is_found() {
        assert!(super::rwlock_offset().is_some());
    }
}
