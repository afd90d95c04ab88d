//! O_ASYNC (Linux's fasync): when a file with the flag becomes readable
//! (or, opened for writing, writable), its owner (fcntl F_SETOWN) gets
//! SIGIO, or the F_SETSIG signal with `si_fd` and `si_band`.
//!
//! Host descriptors (pipes, eventfds, host sockets) are watched by one
//! Sentry thread over a host epoll set, edge-triggered, so each arrival
//! of data signals once, as Linux's `kill_fasync` does; files the Sentry
//! implements tell through their waiters.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use abi::Errno;

use crate::fs::File;
use crate::host;
use crate::signal::Queued;
use crate::task::Kernel;

const F_OWNER_TID: i32 = 0;
const F_OWNER_PID: i32 = 1;
const F_OWNER_PGRP: i32 = 2;
const POLL_IN: i32 = 1;
const POLL_OUT: i32 = 2;

struct Watched {
    file: Weak<File>,
    /// The descriptor number the flag was set through (`si_fd`).
    fd: i32,
    /// For Sentry files: what their waiters hold on to.
    _notify: Option<Arc<dyn vfs::waiter::Notify>>,
    /// Readiness the host descriptor had when it was added: the host's
    /// edge-triggered epoll reports it once, but it is no new arrival.
    suppress: i16,
}

/// The sandbox's O_ASYNC files.
pub(crate) struct AsyncIo {
    kernel: Weak<Kernel>,
    epoll: OnceLock<OwnedFd>,
    watched: Mutex<HashMap<u64, Watched>>,
    /// Files by address, to find an entry again when the flag goes.
    tokens: Mutex<HashMap<usize, u64>>,
    next: AtomicU64,
}

impl AsyncIo {
    pub fn new(kernel: Weak<Kernel>) -> AsyncIo {
        AsyncIo {
            kernel,
            epoll: OnceLock::new(),
            watched: Mutex::default(),
            tokens: Mutex::default(),
            next: AtomicU64::new(1),
        }
    }

    /// The host epoll set, and the thread that waits on it, made with the
    /// first host descriptor that needs them.
    fn epoll(self: &Arc<Self>) -> Result<&OwnedFd, Errno> {
        if let Some(e) = self.epoll.get() {
            return Ok(e);
        }
        let fd = host::epoll_create()?;
        if self.epoll.set(fd).is_ok() {
            let me = Arc::downgrade(self);
            std::thread::Builder::new()
                .name("fasync".into())
                .spawn(move || watch(me))
                .map_err(|e| Errno::from_io(&e))?;
        }
        Ok(self.epoll.get().expect("just set"))
    }

    /// The O_ASYNC flag of `file` (descriptor `fd`) changed to `on`.
    pub fn set(self: &Arc<Self>, file: &Arc<File>, fd: i32, on: bool) -> Result<(), Errno> {
        let addr = Arc::as_ptr(file) as usize;
        let old = self.tokens.lock().unwrap().remove(&addr);
        if let Some(token) = old {
            if let Some(w) = self.watched.lock().unwrap().remove(&token) {
                if let (Some(f), Some(ep)) = (w.file.upgrade(), self.epoll.get()) {
                    if let Some(hfd) = host_fd(&f) {
                        let _ = host::epoll_ctl(ep.as_fd(), libc::EPOLL_CTL_DEL, hfd, None);
                    }
                }
            }
        }
        if !on {
            return Ok(());
        }
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let mut notify = None;
        let mut suppress = 0;
        if let Some(hfd) = host_fd(file) {
            let mut events = libc::EPOLLET as u32;
            if file.readable() {
                events |= libc::EPOLLIN as u32;
            }
            if file.writable() {
                events |= libc::EPOLLOUT as u32;
            }
            let mut ev = [0u8; 12];
            ev[..4].copy_from_slice(&events.to_le_bytes());
            ev[4..].copy_from_slice(&token.to_le_bytes());
            let mut p = [libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&hfd),
                events: libc::POLLIN | libc::POLLOUT,
                revents: 0,
            }];
            host::poll(&mut p, 0)?;
            suppress = p[0].revents & (libc::POLLIN | libc::POLLOUT);
            host::epoll_ctl(self.epoll()?.as_fd(), libc::EPOLL_CTL_ADD, hfd, Some(ev))?;
        } else if let Some(waiters) = file.ops().waiters() {
            let n: Arc<dyn vfs::waiter::Notify> = Arc::new(SentryFile {
                io: Arc::downgrade(self),
                token,
            });
            waiters.add(&n);
            notify = Some(n);
        } else {
            // Regular files and the like never signal in Linux either.
            return Ok(());
        }
        self.watched.lock().unwrap().insert(
            token,
            Watched {
                file: Arc::downgrade(file),
                fd,
                _notify: notify,
                suppress,
            },
        );
        self.tokens.lock().unwrap().insert(addr, token);
        Ok(())
    }

    /// `token`'s file is ready for `band` (POLLIN/POLLOUT bits): signal its
    /// owner.
    fn fire(&self, token: u64, mut band: i16) {
        let (file, fd) = {
            let mut watched = self.watched.lock().unwrap();
            let Some(w) = watched.get_mut(&token) else {
                return;
            };
            let ready = band & (libc::POLLIN | libc::POLLOUT);
            band &= !(w.suppress & ready);
            w.suppress = 0;
            if band & (libc::POLLIN | libc::POLLOUT) == 0 {
                return;
            }
            match w.file.upgrade() {
                Some(f) => (f, w.fd),
                None => {
                    watched.remove(&token);
                    return;
                }
            }
        };
        if file.flags() & libc::O_ASYNC == 0 {
            return;
        }
        let owner = file.async_owner();
        let Some(kernel) = self.kernel.upgrade() else {
            return;
        };
        if owner.id == 0 {
            return;
        }
        let file_wants_out = file.writable() && !file.readable();
        let codes: &[i32] = match (band & libc::POLLIN != 0, band & libc::POLLOUT != 0) {
            (true, true) if file_wants_out => &[POLL_OUT],
            (true, true) => &[POLL_IN, POLL_OUT],
            (true, false) => &[POLL_IN],
            _ => &[POLL_OUT],
        };
        for &code in codes {
            let (sig, info) = if owner.sig == 0 {
                let sig = libc::SIGIO;
                (
                    sig,
                    crate::signal::user_info(sig, 0x80 /* SI_KERNEL */, 0, 0),
                )
            } else {
                (owner.sig, poll_info(owner.sig, code, fd))
            };
            self.send(&kernel, owner, Queued::new(sig, info));
        }
    }

    fn send(&self, kernel: &Kernel, owner: vfs::file::AsyncOwner, q: Queued) {
        match owner.kind {
            F_OWNER_TID => {
                if let Some((_, t)) = kernel.find_task(owner.id) {
                    t.post(q);
                }
            }
            F_OWNER_PID => {
                if let Some(g) = kernel.find_group(owner.id) {
                    g.post(q);
                }
            }
            F_OWNER_PGRP => {
                for g in kernel.all_groups() {
                    if g.lock().pgid == owner.id {
                        g.post(q.clone());
                    }
                }
            }
            _ => {}
        }
    }
}

/// The host descriptor behind `file`, if the host can watch it.
fn host_fd(file: &File) -> Option<std::os::fd::BorrowedFd<'_>> {
    file.ops()
        .host_fd()
        .filter(|_| file.location().is_none() || !file.is_regular())
}

/// A SIGPOLL-style siginfo: si_code POLL_IN/POLL_OUT, si_band as Linux's
/// `band_table` gives it for the code (fs/fcntl.c), si_fd.
fn poll_info(sig: i32, code: i32, fd: i32) -> [u8; 128] {
    let band = if code == POLL_IN {
        libc::POLLIN | libc::POLLRDNORM
    } else {
        libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND
    };
    let mut info = [0u8; 128];
    info[0..4].copy_from_slice(&sig.to_le_bytes());
    info[8..12].copy_from_slice(&code.to_le_bytes());
    info[16..24].copy_from_slice(&i64::from(band).to_le_bytes());
    info[24..28].copy_from_slice(&fd.to_le_bytes());
    info
}

/// The Sentry thread that turns host epoll events into signals.
fn watch(io: Weak<AsyncIo>) {
    loop {
        let Some(me) = io.upgrade() else { return };
        let Some(ep) = me.epoll.get() else { return };
        let events = match host::epoll_wait(ep.as_fd(), 64, 200) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("fasync: epoll_wait: {e}");
                return;
            }
        };
        for ev in events {
            let bits = u32::from_le_bytes(ev[0..4].try_into().expect("4 bytes"));
            let token = u64::from_le_bytes(ev[4..12].try_into().expect("8 bytes"));
            let mut band = 0i16;
            if bits & libc::EPOLLIN as u32 != 0 {
                band |= libc::POLLIN | libc::POLLRDNORM;
            }
            if bits & libc::EPOLLOUT as u32 != 0 {
                band |= libc::POLLOUT | libc::POLLWRNORM;
            }
            if band != 0 {
                me.fire(token, band);
            }
        }
    }
}

/// What a Sentry file's waiters call: signal if the file is now ready the
/// way its owner cares about.
struct SentryFile {
    io: Weak<AsyncIo>,
    token: u64,
}

impl vfs::waiter::Notify for SentryFile {
    fn notify(&self) {
        let Some(io) = self.io.upgrade() else { return };
        let file = {
            let watched = io.watched.lock().unwrap();
            watched.get(&self.token).and_then(|w| w.file.upgrade())
        };
        let Some(file) = file else { return };
        let mut want = 0;
        if file.readable() {
            want |= libc::POLLIN;
        }
        if file.writable() {
            want |= libc::POLLOUT;
        }
        let band = file.ops().poll(want) & want;
        if band != 0 {
            io.fire(self.token, band);
        }
    }
}
