//! glibc mutexes that use the owner's thread id (recursive, error-checking,
//! priority-inheritance) work in a closure, on the thread that runs it and
//! against other threads it starts.

use hermetic::{Sandbox, isolated};
use rstest::rstest;

/// A pthread mutex of `kind` (and `protocol`), boxed so that it does not
/// move.
struct Mutex(Box<libc::pthread_mutex_t>);

impl Mutex {
    fn new(kind: libc::c_int, protocol: libc::c_int) -> Mutex {
        // SAFETY: the attribute is initialised before use and destroyed
        // after; the mutex is initialised in place, in a box.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
            assert_eq!(libc::pthread_mutexattr_settype(&mut attr, kind), 0);
            assert_eq!(libc::pthread_mutexattr_setprotocol(&mut attr, protocol), 0);
            let mut m = Box::new(std::mem::zeroed::<libc::pthread_mutex_t>());
            assert_eq!(libc::pthread_mutex_init(&mut *m, &attr), 0);
            libc::pthread_mutexattr_destroy(&mut attr);
            Mutex(m)
        }
    }

    fn ptr(&self) -> *mut libc::pthread_mutex_t {
        std::ptr::from_ref(&*self.0).cast_mut()
    }

    fn lock(&self) -> i32 {
        // SAFETY: an initialised mutex that outlives the call.
        unsafe { libc::pthread_mutex_lock(self.ptr()) }
    }

    fn try_lock(&self) -> i32 {
        // SAFETY: an initialised mutex that outlives the call.
        unsafe { libc::pthread_mutex_trylock(self.ptr()) }
    }

    /// Locks, giving up after `secs` seconds (ETIMEDOUT).
    fn lock_within(&self, secs: i64) -> i32 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes a whole timespec into ts, a live
        // local.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        ts.tv_sec += secs;
        // SAFETY: ts is a live timespec; the mutex is initialised and
        // outlives the call.
        unsafe { libc::pthread_mutex_timedlock(self.ptr(), &ts) }
    }

    fn unlock(&self) -> i32 {
        // SAFETY: an initialised mutex that outlives the call; a thread
        // other than its owner unlocks only the error-checking one, which
        // refuses with EPERM.
        unsafe { libc::pthread_mutex_unlock(self.ptr()) }
    }
}

// SAFETY: pthread mutexes are made to be shared between threads.
unsafe impl Sync for Mutex {}

#[rstest]
fn a_recursive_mutex_counts_the_closures_thread_as_its_owner(#[from(isolated)] ns: Sandbox) {
    let seen = ns.run(|| {
        let m = Mutex::new(libc::PTHREAD_MUTEX_RECURSIVE, libc::PTHREAD_PRIO_NONE);
        let again = (m.lock(), m.lock());
        let other = std::thread::scope(|s| s.spawn(|| m.try_lock()).join().unwrap());
        let released = (m.unlock(), m.unlock());
        let after = std::thread::scope(|s| s.spawn(|| (m.try_lock(), m.unlock())).join().unwrap());
        (again, other, released, after)
    });
    assert_eq!(seen, ((0, 0), libc::EBUSY, (0, 0), (0, 0)));
}

#[rstest]
fn an_error_checking_mutex_knows_its_owner(#[from(isolated)] ns: Sandbox) {
    let seen = ns.run(|| {
        let m = Mutex::new(libc::PTHREAD_MUTEX_ERRORCHECK, libc::PTHREAD_PRIO_NONE);
        let first = m.lock();
        let twice = m.lock();
        let by_other = std::thread::scope(|s| s.spawn(|| m.unlock()).join().unwrap());
        (first, twice, by_other, m.unlock())
    });
    assert_eq!(seen, (0, libc::EDEADLK, libc::EPERM, 0));
}

#[rstest]
fn a_priority_inheritance_mutex_hands_over_between_threads(#[from(isolated)] ns: Sandbox) {
    // The kernel finds a PI mutex's owner by the thread id glibc stores in
    // it: contended, a wrong id makes the waiter fail (ESRCH), and glibc
    // then waits out the timeout (ETIMEDOUT) instead of taking the lock.
    let seen = ns.run(|| {
        // The waiter's system call is read from /proc/self/task/TID/syscall,
        // a file only the owner may read: a run's process is not dumpable,
        // so the file is root's outside, and rootless unreadable until the
        // closure makes itself dumpable (which gives up its protection from
        // the sandbox's other processes, for this run only).
        // SAFETY: a prctl with integer arguments.
        assert_eq!(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) }, 0);
        let m = Mutex::new(libc::PTHREAD_MUTEX_NORMAL, libc::PTHREAD_PRIO_INHERIT);
        assert_eq!(m.lock(), 0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                tx.send(nix::unistd::gettid().as_raw()).unwrap();
                let got = m.lock_within(20);
                if got == 0 {
                    m.unlock();
                }
                got
            });
            // Unlock once the waiter sleeps in the kernel on the mutex.
            let tid = rx.recv().unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let in_futex = format!("{} ", libc::SYS_futex);
            loop {
                // The system call it blocks in: "NR args...".
                let call = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
                    .unwrap_or_default();
                if call.starts_with(&in_futex) || std::time::Instant::now() > deadline {
                    break;
                }
                std::thread::yield_now();
            }
            let unlocked = m.unlock();
            (unlocked, waiter.join().unwrap())
        })
    });
    assert_eq!(seen, (0, 0), "(unlock, the waiter's lock)");
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

#[rstest]
fn glibcs_sched_getcpu_agrees_with_the_kernel_on_every_cpu(#[from(isolated)] ns: Sandbox) {
    // glibc reads the CPU from the thread's rseq area, which the kernel
    // updates only for a registered area: a runner's copy of another
    // thread's area would name that thread's last CPU.
    let cpus = allowed_cpus();
    let seen = ns.run(move || {
        cpus.iter()
            .map(|&cpu| {
                // SAFETY: a set of one CPU, then plain system calls.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    assert_eq!(
                        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                        0
                    );
                    let mut kernel: libc::c_uint = u32::MAX;
                    libc::syscall(
                        libc::SYS_getcpu,
                        &mut kernel,
                        std::ptr::null_mut::<libc::c_uint>(),
                        0,
                    );
                    (cpu, libc::sched_getcpu(), kernel as i32)
                }
            })
            .collect::<Vec<_>>()
    });
    for (cpu, glibc, kernel) in seen {
        assert_eq!(
            (glibc, kernel),
            (cpu as i32, cpu as i32),
            "pinned to CPU {cpu}: (sched_getcpu, getcpu)"
        );
    }
}

#[rstest]
fn a_robust_mutex_whose_owner_died_tells_the_next_locker(#[from(isolated)] ns: Sandbox) {
    // Run 1 locks a process-shared robust mutex in the sandbox's /tmp and
    // exits holding it; the kernel releases it only if the runner's thread
    // has its robust list registered. Run 2 must get EOWNERDEAD.
    fn mapped() -> *mut libc::pthread_mutex_t {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open("/tmp/robust")
            .unwrap();
        file.set_len(4096).unwrap();
        // SAFETY: a shared mapping of a file of that size, never unmapped
        // (the process ends with the run).
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_ne!(at, libc::MAP_FAILED);
        at.cast()
    }
    let died = ns.try_run(|| -> () {
        let m = mapped();
        // SAFETY: the attribute and the mutex are initialised in place.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            assert_eq!(libc::pthread_mutex_init(m, &attr), 0);
            assert_eq!(libc::pthread_mutex_lock(m), 0);
            libc::_exit(7)
        }
    });
    assert!(
        matches!(died, Err(hermetic::Error::Exited { status: 7, .. })),
        "{died:?}"
    );
    let next = ns.run(|| {
        let m = mapped();
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: the mutex was initialised by the first run; a timed lock
        // so that a mutex never released fails instead of hanging.
        unsafe {
            libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
            ts.tv_sec += 20;
            libc::pthread_mutex_timedlock(m, &ts)
        }
    });
    assert_eq!(
        next,
        libc::EOWNERDEAD,
        "(EOWNERDEAD is {})",
        libc::EOWNERDEAD
    );
}

#[rstest]
fn the_closures_thread_id_is_its_own(#[from(isolated)] ns: Sandbox) {
    let (tid, tasks, pthread_tid) = ns.run(|| {
        let tasks: Vec<i32> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
            .collect();
        // SAFETY: no arguments.
        let glibc = unsafe { libc::gettid() };
        (nix::unistd::gettid().as_raw(), tasks, glibc)
    });
    // One task, the runner, where it borrows a TLS; with
    // HERMETIC_RUNNER_THREAD=1 the closure has a thread of its own beside it.
    assert!(
        tasks.contains(&tid),
        "{tid} not in /proc/self/task: {tasks:?}"
    );
    if std::env::var_os("HERMETIC_RUNNER_THREAD").is_none_or(|v| v == "0") {
        assert_eq!(tasks, vec![tid], "/proc/self/task of a run");
    }
    assert_eq!(pthread_tid, tid);
}
