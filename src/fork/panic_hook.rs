//! The panic hook: where a runner's closure panicked is recorded instead
//! of printed, and the test process re-raises it with that location.

use std::cell::{Cell, RefCell};
use std::panic;

use super::locks::PANIC_PRINTING;
use crate::error::PanicLocation;

thread_local! {
    /// Set on the thread that runs the user's closure.
    pub(crate) static IN_CLOSURE: Cell<bool> = const { Cell::new(false) };
    /// Set on a thread whose panic's location is recorded (by our hook)
    /// and printed as usual: an isolated test's body.
    pub(crate) static RECORD_PANIC: Cell<bool> = const { Cell::new(false) };
    /// The location of that thread's panic, recorded by our hook.
    pub(crate) static PANIC_AT: RefCell<Option<PanicLocation>> = const { RefCell::new(None) };
}

/// Installs, once per process, a panic hook that records where the
/// closure of a runner panicked instead of printing it (the test process
/// re-raises the panic with that location); every other panic goes to the
/// hook that was there before.
///
/// It must be installed *before* forking: `set_hook` takes a lock that
/// another thread of the test process may hold at the moment of `fork`
/// (while it panics, for instance), and in the child nobody would release
/// it.
///
/// Called when a sandbox is built, and again before each run; never while
/// the thread is panicking (`set_hook` would panic then): a sandbox built
/// and run from a `Drop` during unwinding works, and installs the hook at
/// the next chance.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::thread::panicking() {
        return;
    }
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let location = || {
                info.location().map(|l| PanicLocation {
                    file: l.file().to_owned(),
                    line: l.line(),
                    column: l.column(),
                })
            };
            if IN_CLOSURE.with(Cell::get) {
                PANIC_AT.with(|p| *p.borrow_mut() = location());
            } else {
                if RECORD_PANIC.with(Cell::get) {
                    PANIC_AT.with(|p| *p.borrow_mut() = location());
                }
                let _printing = PANIC_PRINTING.lock();
                previous(info);
            }
        }));
    });
}
