//! Readiness events and the wakers the Sentry registers on endpoints
//! (upstream's `pkg/waiter`).

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};
use std::sync::Arc;

/// A set of readiness events, with Linux's `poll(2)` bit values so the
/// Sentry can hand them to `poll`/`epoll` unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Events(pub u32);

impl Events {
    /// No events.
    pub const NONE: Events = Events(0);
    /// Data (or a connection, for a listener) can be read: `POLLIN`.
    pub const READABLE: Events = Events(0x0001);
    /// Data can be written: `POLLOUT`.
    pub const WRITABLE: Events = Events(0x0004);
    /// An error is pending: `POLLERR`.
    pub const ERR: Events = Events(0x0008);
    /// Both directions are shut: `POLLHUP`.
    pub const HUP: Events = Events(0x0010);
    /// The peer shut its sending side: `POLLRDHUP`.
    pub const RDHUP: Events = Events(0x2000);

    /// Whether any event of `other` is in `self`.
    pub fn intersects(self, other: Events) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no event is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Events {
    type Output = Events;
    fn bitor(self, o: Events) -> Events {
        Events(self.0 | o.0)
    }
}

impl BitOrAssign for Events {
    fn bitor_assign(&mut self, o: Events) {
        self.0 |= o.0;
    }
}

impl BitAnd for Events {
    type Output = Events;
    fn bitand(self, o: Events) -> Events {
        Events(self.0 & o.0)
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Events::READABLE, "IN"),
            (Events::WRITABLE, "OUT"),
            (Events::ERR, "ERR"),
            (Events::HUP, "HUP"),
            (Events::RDHUP, "RDHUP"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(e, _)| self.intersects(*e))
            .map(|(_, n)| *n)
            .collect();
        write!(f, "Events({})", set.join("|"))
    }
}

/// A callback run when an endpoint's readiness may have changed, with the
/// events that happened (intersected with the registered mask).
///
/// It runs on whatever thread moved the stack (a task's syscall, the
/// timer thread, a link's receive thread) after the stack has released
/// its lock, so it may call back into the stack; it should only wake a
/// sleeper and return, since it delays the stack's other work.
pub type Waker = Arc<dyn Fn(Events) + Send + Sync>;

/// Identifies a registered waker, to remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WaiterId(pub(crate) u64);

/// The wakers registered on one endpoint.
#[derive(Default)]
pub(crate) struct WaiterList {
    entries: Vec<(WaiterId, Events, Waker)>,
}

impl WaiterList {
    pub(crate) fn add(&mut self, id: WaiterId, mask: Events, w: Waker) {
        self.entries.push((id, mask, w));
    }

    pub(crate) fn remove(&mut self, id: WaiterId) {
        self.entries.retain(|(i, _, _)| *i != id);
    }

    /// The wakers interested in `ev`, with what to tell each.
    pub(crate) fn matching(&self, ev: Events, out: &mut Vec<(Waker, Events)>) {
        for (_, mask, w) in &self.entries {
            let hit = *mask & ev;
            if !hit.is_empty() {
                out.push((w.clone(), hit));
            }
        }
    }
}
