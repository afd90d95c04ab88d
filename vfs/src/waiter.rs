//! Readiness notifications for files the Sentry implements itself (unix
//! sockets, and later its own pipes and terminals): whoever waits for such
//! a file (a blocked task, an epoll set) registers a [`Notify`] on the
//! file's [`Waiters`]; the file notifies them all whenever its readiness
//! may have changed, and they look again.

use std::sync::{Arc, Mutex, Weak};

/// Something to wake: a blocked task, an epoll instance.
pub trait Notify: Send + Sync {
    fn notify(&self);
}

#[derive(Default)]
pub struct Waiters {
    list: Mutex<Vec<Weak<dyn Notify>>>,
}

impl Waiters {
    pub fn add(&self, w: &Arc<dyn Notify>) {
        let mut list = self.list.lock().unwrap();
        list.retain(|x| x.strong_count() > 0);
        if !list
            .iter()
            .any(|x| std::ptr::addr_eq(x.as_ptr(), Arc::as_ptr(w)))
        {
            list.push(Arc::downgrade(w));
        }
    }

    pub fn remove(&self, w: &Arc<dyn Notify>) {
        self.list
            .lock()
            .unwrap()
            .retain(|x| x.strong_count() > 0 && !std::ptr::addr_eq(x.as_ptr(), Arc::as_ptr(w)));
    }

    /// Wake everyone registered (they stay registered).
    pub fn notify_all(&self) {
        let live: Vec<Arc<dyn Notify>> = {
            let mut list = self.list.lock().unwrap();
            list.retain(|x| x.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        for w in live {
            w.notify();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);

    impl Notify for Count {
        fn notify(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn registered_waiters_are_notified_until_removed_or_dropped() {
        let ws = Waiters::default();
        let a = Arc::new(Count(AtomicUsize::new(0)));
        let b = Arc::new(Count(AtomicUsize::new(0)));
        let (da, db): (Arc<dyn Notify>, Arc<dyn Notify>) = (a.clone(), b.clone());
        ws.add(&da);
        ws.add(&da);
        ws.add(&db);
        ws.notify_all();
        assert_eq!(a.0.load(Ordering::Relaxed), 1, "added twice, notified once");
        ws.remove(&da);
        ws.notify_all();
        assert_eq!(a.0.load(Ordering::Relaxed), 1);
        assert_eq!(b.0.load(Ordering::Relaxed), 2);
        drop(db);
        drop(b);
        ws.notify_all();
        assert!(ws.list.lock().unwrap().is_empty());
    }
}
