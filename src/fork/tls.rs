//! The spare TLS runners borrow: a parked thread's, found with glibc's
//! own descriptions of its thread control block.
//!
//! # Safety
//!
//! Parent-side: runs in the test process, before any fork. The unsafe
//! blocks read glibc's symbols and the parked thread's TCB, and start that
//! thread.
#![allow(unsafe_code)]

use crate::sys;

/// A thread's TLS that runners borrow: its thread pointer, and where
/// glibc keeps the thread's id, its robust mutex list and its rseq area in
/// it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpareTls {
    /// The thread pointer (what `CLONE_SETTLS` takes).
    pub(crate) tp: usize,
    /// The offset from `tp` of the TCB's thread id (glibc's
    /// `struct pthread`'s `tid`), which the kernel overwrites with the
    /// runner's id as it starts (`CLONE_CHILD_SETTID`).
    pub(crate) tid_offset: isize,
    /// The head of the thread's robust mutex list in its TCB, and its
    /// size, as glibc registered them for the parked thread
    /// (get_robust_list(2)): the runner registers its copy, so that the
    /// kernel releases the robust mutexes the closure's thread holds
    /// should it die.
    pub(crate) robust: Option<(usize, usize)>,
    /// The thread's rseq area in its TCB, as glibc registered it: the
    /// runner registers its copy (rseq(2)), so that the kernel keeps its
    /// CPU number current (glibc's `sched_getcpu` reads it) and restarts
    /// per-CPU critical sections.
    pub(crate) rseq: Option<Rseq>,
}

/// Where glibc keeps a thread's rseq area, and how it registers it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rseq {
    /// The area's address in the parked thread's TCB (the runner's copy
    /// is at the same address in its memory).
    pub(crate) area: usize,
    /// The length glibc registers.
    pub(crate) len: u32,
}

impl Rseq {
    /// The signature glibc registers with (its `RSEQ_SIG`), which the
    /// kernel checks before an abort handler of a critical section.
    #[cfg(target_arch = "x86_64")]
    pub(crate) const SIG: u32 = 0x5305_3053;
    #[cfg(target_arch = "aarch64")]
    pub(crate) const SIG: u32 = 0xd428_bc00;

    /// The area's `cpu_id` field (struct rseq: `cpu_id_start`, then
    /// `cpu_id`, both u32).
    pub(crate) fn cpu_id(self) -> *mut i32 {
        (self.area + 4) as *mut i32
    }
}

impl SpareTls {
    /// Where the runner's thread id goes.
    pub(crate) fn tid_slot(self) -> *mut libc::pid_t {
        self.tp.wrapping_add_signed(self.tid_offset) as *mut libc::pid_t
    }
}

/// The TLS of a thread of this process that was made only to lend it to
/// runners: made once, on first need, with `pthread_create` (so no libtest
/// capture was ever set on it), on a stack of our own (so that glibc, in a
/// forked child, forgets it instead of recycling its memory for a new
/// thread), and parked for good.
///
/// A runner is a new task in the joiner's private copy of our memory. By
/// default it runs with the forking test thread's TLS, where libtest keeps
/// its capture of `println!`, which in a copy would swallow the closure's
/// output, and where the test thread's thread-locals have whatever values
/// it gave them. Cloned with `CLONE_SETTLS` onto this thread's TLS (its copy
/// in the joiner's memory, which no one else uses), the closure starts with
/// fresh thread-locals, as on a new thread, prints to fd 1 from the
/// runner's own thread, and no thread has to be started per run.
///
/// Why the copy is sound to use: glibc's `fork` forgets, in the child, the
/// threads that live on stacks of their own (`user_stack`) without
/// touching their TCB, so the copy keeps a complete, initialised TCB with
/// its stack guard and pristine thread locals: the parked thread runs no
/// Rust code that uses them (only one `malloc` and `free`, so that its TLS
/// names a malloc arena, which runners then share instead of making one
/// each). Its thread id would be the parked thread's,
/// in another PID namespace: glibc uses it as the owner of recursive,
/// error-checking and priority-inheritance mutexes, and the kernel looks a
/// PI mutex's owner up by it. The runner is cloned with
/// `CLONE_CHILD_SETTID` onto that field, so the kernel writes the runner's
/// own id there before it runs (tests/it/runner_mutexes.rs). The field's
/// offset is the one glibc gives debuggers (nptl_db's symbols), checked
/// against the parked thread's own id. The kernel gives a new task
/// neither an rseq area nor a robust mutex list, so the runner registers
/// its copies of the parked thread's (their addresses from
/// get_robust_list(2) and glibc's `__rseq_offset`): glibc's `sched_getcpu`
/// then reads a CPU number the kernel keeps current, and the robust
/// mutexes the closure's thread holds are released, owner-dead, should it
/// die (tests/it/runner_mutexes.rs). Two system calls, about a microsecond.
///
/// `None` where this is not known to hold (other C libraries and targets,
/// no unique offset), or with `HERMETIC_RUNNER_THREAD=1` in the
/// environment: runs then start a thread for the closure instead, which
/// costs about 0.1 ms more.
pub(crate) fn spare_tls() -> Option<SpareTls> {
    static SPARE: std::sync::OnceLock<Option<SpareTls>> = std::sync::OnceLock::new();
    *SPARE.get_or_init(|| {
        let opted_out = std::env::var_os("HERMETIC_RUNNER_THREAD").is_some_and(|v| v != "0");
        if opted_out
            || !cfg!(all(
                target_env = "gnu",
                any(target_arch = "x86_64", target_arch = "aarch64")
            ))
        {
            return None;
        }
        park_a_thread()
    })
}

/// The offset from the thread pointer of the thread id in glibc's
/// `struct pthread`, as glibc describes it to debuggers (the nptl_db
/// symbols `_thread_db_pthread_tid`: bits, count, offset; and
/// `_thread_db_sizeof_pthread`). None where they are missing or say
/// something unexpected.
fn glibc_tid_offset() -> Option<isize> {
    let field = symbol(c"_thread_db_pthread_tid")?;
    let size = symbol(c"_thread_db_sizeof_pthread")?;
    // SAFETY: glibc defines this symbol as a read-only array of three u32
    // (nptl_db's DB_STRUCT_FIELD: bits, count, offset), which lives as
    // long as libc and is never written.
    let field = unsafe { *field.cast::<[u32; 3]>().as_ptr() };
    // SAFETY: glibc defines this symbol as one read-only u32 (nptl_db's
    // DB_STRUCT), which lives as long as libc and is never written.
    let size = unsafe { *size.cast::<u32>().as_ptr() };
    let [bits, count, offset] = field;
    if bits != 32 || count != 1 || offset + 4 > size {
        return None;
    }
    // Where struct pthread lies: at the thread pointer (x86_64), or just
    // below it (aarch64).
    let start = if cfg!(target_arch = "x86_64") {
        0
    } else {
        -(size as isize)
    };
    Some(start + offset as isize)
}

/// What the parked thread tells about itself.
static PARKED_TP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PARKED_TID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
static PARKED_ROBUST: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PARKED_ROBUST_LEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The parked thread's rseq area, from glibc's `__rseq_offset` and
/// `__rseq_size` (glibc 2.35 and later; a size of 0 means glibc did not
/// register one, and None means an older glibc).
fn glibc_rseq(tp: usize) -> Option<Rseq> {
    let offset = symbol(c"__rseq_offset")?;
    let size = symbol(c"__rseq_size")?;
    // SAFETY: glibc defines `__rseq_offset` as a `const ptrdiff_t`, set
    // before any user code runs and never written after.
    let offset = unsafe { *offset.cast::<isize>().as_ptr() };
    // SAFETY: glibc defines `__rseq_size` as a `const unsigned int`, set
    // before any user code runs and never written after.
    let size = unsafe { *size.cast::<u32>().as_ptr() };
    // glibc registers at least the original 32-byte struct rseq, and says
    // in __rseq_size how much of it (or more) it uses.
    (size > 0).then(|| Rseq {
        area: tp.wrapping_add_signed(offset),
        len: size.max(32),
    })
}

/// The address of the data symbol `name` of the loaded objects (glibc's),
/// if there is one.
fn symbol(name: &std::ffi::CStr) -> Option<std::ptr::NonNull<libc::c_void>> {
    // SAFETY: dlsym only looks the NUL-terminated `name` up in the loaded
    // objects; it reads no other memory of ours.
    std::ptr::NonNull::new(unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) })
}

fn park_a_thread() -> Option<SpareTls> {
    use std::sync::atomic::Ordering;
    extern "C" fn parked(_: *mut libc::c_void) -> *mut libc::c_void {
        // First, one allocation, so that this thread's TLS names a malloc arena
        // (and a tcache) of its own: a runner borrowing a copy of it
        // allocates there, instead of making a new arena (a 64 MiB
        // reservation and its first page faults) in every run. glibc's
        // fork leaves that arena consistent in the child, as all others.
        // SAFETY: malloc of one byte has no precondition.
        let byte = std::hint::black_box(unsafe { libc::malloc(1) });
        // SAFETY: `byte` is malloc's, freed once (black_box: the compiler
        // would drop the pair); a null pointer is freed as a no-op.
        unsafe { libc::free(byte) };
        if let Some((head, len)) = sys::robust_list() {
            PARKED_ROBUST.store(head, Ordering::Release);
            PARKED_ROBUST_LEN.store(len, Ordering::Release);
        }
        PARKED_TID.store(sys::gettid(), Ordering::Release);
        PARKED_TP.store(
            sys::thread_pointer().unwrap_or(usize::MAX),
            Ordering::Release,
        );
        sys::set_name(c"hermetic-tls");
        loop {
            // Waits for a signal: only glibc's own, which it never lets a
            // thread block (setxid), reach this thread, run their handler
            // and return here.
            rustix::event::pause();
        }
    }
    let tid_offset = glibc_tid_offset()?;
    // Never unmapped: the thread lives as long as the process. glibc puts
    // the TCB and the static TLS (all of std's and the test's thread locals)
    // at its top; the rest is committed only if touched.
    let stack = std::mem::ManuallyDrop::new(sys::Stack::map(1 << 20).ok()?);
    let (bottom, size) = stack.usable();
    // The thread starts with every signal blocked: no handler of the test
    // process ever runs on it and changes the thread-locals runs will start
    // from.
    let started = sys::with_all_signals_blocked(|| {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        let attr = attr.as_mut_ptr();
        // SAFETY: initialises the attributes object at `attr`, live on
        // this stack.
        if unsafe { libc::pthread_attr_init(attr) } != 0 {
            return false;
        }
        let mut thread: libc::pthread_t = 0;
        // SAFETY: attr is initialised; bottom and size are the usable part
        // of our mapping, which is never unmapped (ManuallyDrop), so it
        // outlives the thread.
        let ok = unsafe { libc::pthread_attr_setstack(attr, bottom, size) } == 0
            // SAFETY: attr is initialised, with our stack; `parked` takes
            // no argument (null) and never returns, so nothing joins it.
            && unsafe { libc::pthread_create(&mut thread, attr, parked, std::ptr::null_mut()) } == 0;
        // SAFETY: attr was initialised above and is not used again
        // (pthread_create copied what it needs).
        unsafe { libc::pthread_attr_destroy(attr) };
        ok
    })
    .ok()?;
    if !started {
        return None;
    }
    let tp = loop {
        match PARKED_TP.load(Ordering::Acquire) {
            0 => std::thread::yield_now(),
            usize::MAX => return None,
            tp => break tp,
        }
    };
    let robust = match PARKED_ROBUST.load(Ordering::Acquire) {
        0 => None,
        head => Some((head, PARKED_ROBUST_LEN.load(Ordering::Acquire))),
    };
    let in_stack = |at: usize, len: usize| {
        at >= bottom as usize && at.saturating_add(len) <= stack.top() as usize
    };
    let spare = SpareTls {
        tp,
        tid_offset,
        robust: robust.filter(|&(head, len)| in_stack(head, len)),
        rseq: glibc_rseq(tp).filter(|r| in_stack(r.area, r.len as usize)),
    };
    // The TCB is in our mapping, and the word there is the thread's id:
    // glibc's description holds.
    let slot = spare.tid_slot() as usize;
    if slot < bottom as usize || slot + 4 > stack.top() as usize || !slot.is_multiple_of(4) {
        return None;
    }
    // SAFETY: an aligned word inside our own mapping, written by glibc
    // when the parked thread started.
    let tid = unsafe { std::ptr::read_volatile(spare.tid_slot()) };
    (tid == PARKED_TID.load(Ordering::Acquire)).then_some(spare)
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(
        target_env = "gnu",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    fn the_spare_tls_and_its_thread_id_are_found_with_glibc() {
        if std::env::var_os("HERMETIC_RUNNER_THREAD").is_some_and(|v| v != "0") {
            return;
        }
        let tls = super::spare_tls().expect("no spare TLS: runs would start a thread each");
        // SAFETY: the slot lies in the parked thread's TCB, which lives as
        // long as the process; the parked thread never writes it.
        let tid = unsafe { std::ptr::read_volatile(tls.tid_slot()) };
        let parked = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "hermetic-tls")
            })
            .expect("the parked thread");
        assert_eq!(parked.file_name().to_string_lossy(), tid.to_string());
    }
}
