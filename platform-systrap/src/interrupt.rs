//! Pulling a stub thread out of application code, for both platforms.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use platform::{Interrupter, SIGNAL_INTERRUPT};

use crate::sys;

/// A context's interrupt request and the stub thread it currently runs on.
#[derive(Default)]
pub(crate) struct StubInterrupter {
    /// An interrupt is owed: the next `switch` returns at once.
    pub pending: AtomicBool,
    /// The stub thread running this context's code, 0 when none.
    pub running: AtomicI32,
}

impl Interrupter for StubInterrupter {
    fn interrupt(&self) {
        self.pending.store(true, Ordering::SeqCst);
        let tid = self.running.load(Ordering::SeqCst);
        if tid > 0 {
            // Each stub thread is its own thread group. Under ptrace the
            // signal stops the thread and is never delivered; under systrap
            // the stub's handler reports it as an interrupt (and if the
            // thread is parked in the handler it stays pending until the
            // next return to the application, which then comes straight
            // back: a spurious interrupt, which callers tolerate).
            let _ = sys::tgkill(tid, tid, SIGNAL_INTERRUPT);
        }
    }
}
