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
        // SAFETY: as above.
        unsafe { libc::pthread_mutex_trylock(self.ptr()) }
    }

    /// Locks, giving up after `secs` seconds (ETIMEDOUT).
    fn lock_within(&self, secs: i64) -> i32 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a live timespec; the mutex is initialised.
        unsafe {
            libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
            ts.tv_sec += secs;
            libc::pthread_mutex_timedlock(self.ptr(), &ts)
        }
    }

    fn unlock(&self) -> i32 {
        // SAFETY: as above.
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
