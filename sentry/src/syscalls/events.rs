//! epoll, eventfd and timerfd, backed by host objects of the same kind.
//!
//! Every application descriptor is a host descriptor, so an epoll set is a
//! host epoll set over those descriptors, carrying the application's event
//! data unchanged; waits run in short slices so a signal or kill ends them.

use std::any::Any;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use vfs::inode::FileOps;

use abi::Errno;

use super::SysResult;
use crate::deliver::ERESTARTNOHAND;
use crate::fs::{self, File};
use crate::host;
use crate::process::KILL_POLL;
use crate::task::Task;

/// Marks the files these calls create, so each call checks it got its kind.
const EPOLL_PATH: &str = "anon_inode:[eventpoll]";
const EVENTFD_PATH: &str = "anon_inode:[eventfd]";
const TIMERFD_PATH: &str = "anon_inode:[timerfd]";

fn install(
    task: &mut Task,
    fd: std::os::fd::OwnedFd,
    flags: i32,
    path: &str,
    cloexec: bool,
) -> SysResult {
    let file = fs::host_file(fd, libc::O_RDWR | flags, path);
    task.fds().insert(file, cloexec, 0)
}

fn of_kind(task: &Task, fd: u64, path: &str) -> Result<Arc<File>, Errno> {
    let file = task.fds().get(fd)?;
    if file.anon_name() != path {
        return Err(Errno::EINVAL);
    }
    Ok(file)
}

/// An epoll instance: a host epoll set for host descriptors, and the
/// Sentry's own interest list for the files it implements (sockets),
/// whose waiters poke the instance's eventfd when they change.
struct Epoll {
    host: OwnedFd,
    wake: Arc<OwnedFd>,
    local: Mutex<Vec<Interest>>,
}

struct Interest {
    fd: u64,
    file: Weak<File>,
    events: u32,
    data: u64,
    /// Still armed (EPOLLONESHOT disarms after one report).
    armed: bool,
    poke: Arc<Poke>,
}

/// What a watched file's waiters call: note the change for edge-triggered
/// interests and wake the instance's waiters.
struct Poke {
    wake: Arc<OwnedFd>,
    fired: AtomicBool,
}

impl vfs::waiter::Notify for Poke {
    fn notify(&self) {
        self.fired.store(true, Ordering::Relaxed);
        let _ = host::eventfd_write(self.wake.as_fd(), 1);
    }
}

impl FileOps for Epoll {
    fn read(&self, _buf: &mut [u8], _offset: u64) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }

    fn seekable(&self) -> bool {
        false
    }

    fn stat(&self) -> Result<abi::Stat, Errno> {
        host::fstat_raw(self.host.as_fd())
    }

    fn poll(&self, events: i16) -> i16 {
        let mut p = [libc::pollfd {
            fd: self.host.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let host_ready = host::poll(&mut p, 0).unwrap_or(0) > 0;
        let local_ready = self.local.lock().unwrap().iter().any(|i| {
            i.armed
                && i.file.upgrade().is_some_and(|f| {
                    f.ops().poll(i.events as i16)
                        & (i.events as i16 | libc::POLLHUP | libc::POLLERR)
                        != 0
                })
        });
        if host_ready || local_ready {
            events & libc::POLLIN
        } else {
            0
        }
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl Epoll {
    /// Ready local interests, as (events, data), at most `max`.
    fn ready_local(&self, max: usize) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        let mut local = self.local.lock().unwrap();
        local.retain(|i| i.file.strong_count() > 0);
        for i in local.iter_mut() {
            if out.len() >= max || !i.armed {
                continue;
            }
            let Some(f) = i.file.upgrade() else { continue };
            let mask = (i.events & 0xffff) as i16 | libc::POLLHUP | libc::POLLERR;
            let r = f.ops().poll(mask) & mask;
            if r == 0 {
                continue;
            }
            let edge = i.events & libc::EPOLLET as u32 != 0;
            if edge && !i.poke.fired.swap(false, Ordering::Relaxed) {
                continue;
            }
            if i.events & libc::EPOLLONESHOT as u32 != 0 {
                i.armed = false;
            }
            out.push((r as u16 as u32, i.data));
        }
        out
    }
}

fn epoll_of(file: &File) -> Result<&Epoll, Errno> {
    file.ops()
        .as_any()
        .and_then(|a| a.downcast_ref::<Epoll>())
        .ok_or(Errno::EINVAL)
}

pub fn epoll_create1(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[0] as i32;
    if flags & !libc::EPOLL_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    let ep = Epoll {
        host: host::epoll_create()?,
        wake: Arc::new(host::eventfd(0, libc::EFD_NONBLOCK)?),
        local: Mutex::new(Vec::new()),
    };
    let file = File::anonymous(EPOLL_PATH, Arc::new(ep), libc::O_RDWR);
    task.fds().insert(file, flags & libc::EPOLL_CLOEXEC != 0, 0)
}

pub fn epoll_create(task: &mut Task, a: [u64; 6]) -> SysResult {
    if a[0] as i32 <= 0 {
        return Err(Errno::EINVAL);
    }
    epoll_create1(task, [0; 6])
}

pub fn epoll_ctl(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (epfd, op, fd, event) = (a[0], a[1] as i32, a[2], a[3]);
    let ep = of_kind(task, epfd, EPOLL_PATH)?;
    let target = task.fds().get(fd)?;
    if epfd == fd {
        return Err(Errno::EINVAL);
    }
    let ev = if op == libc::EPOLL_CTL_DEL {
        None
    } else {
        let mut b = [0u8; 12];
        task.mm().copy_in(event, &mut b)?;
        Some(b)
    };
    let epoll = epoll_of(&ep)?;
    if let Some(target_fd) = target
        .ops()
        .host_fd()
        .filter(|_| target.location().is_none())
    {
        return host::epoll_ctl(epoll.host.as_fd(), op, target_fd, ev).map(|()| 0);
    }
    // Linux refuses regular files and directories (always ready) with
    // EPERM; so does anything else here without readiness of its own.
    let Some(waiters) = target.ops().waiters() else {
        return Err(Errno::EPERM);
    };
    let (events, data) = match ev {
        Some(b) => (
            u32::from_le_bytes(b[0..4].try_into().expect("4")),
            u64::from_le_bytes(b[4..12].try_into().expect("8")),
        ),
        None => (0, 0),
    };
    let mut local = epoll.local.lock().unwrap();
    let at = local
        .iter()
        .position(|i| i.fd == fd && i.file.upgrade().is_some_and(|f| Arc::ptr_eq(&f, &target)));
    match (op, at) {
        (libc::EPOLL_CTL_ADD, Some(_)) => Err(Errno::EEXIST),
        (libc::EPOLL_CTL_ADD, None) => {
            let poke = Arc::new(Poke {
                wake: epoll.wake.clone(),
                // Ready now counts as an edge for a new interest.
                fired: AtomicBool::new(true),
            });
            let n: Arc<dyn vfs::waiter::Notify> = poke.clone();
            waiters.add(&n);
            local.push(Interest {
                fd,
                file: Arc::downgrade(&target),
                events,
                data,
                armed: true,
                poke,
            });
            drop(local);
            let _ = host::eventfd_write(epoll.wake.as_fd(), 1);
            Ok(0)
        }
        (libc::EPOLL_CTL_MOD, Some(i)) => {
            let it = &mut local[i];
            it.events = events;
            it.data = data;
            it.armed = true;
            it.poke.fired.store(true, Ordering::Relaxed);
            drop(local);
            let _ = host::eventfd_write(epoll.wake.as_fd(), 1);
            Ok(0)
        }
        (libc::EPOLL_CTL_DEL, Some(i)) => {
            let it = local.remove(i);
            let n: Arc<dyn vfs::waiter::Notify> = it.poke;
            waiters.remove(&n);
            Ok(0)
        }
        (libc::EPOLL_CTL_MOD | libc::EPOLL_CTL_DEL, None) => Err(Errno::ENOENT),
        _ => Err(Errno::EINVAL),
    }
}

fn wait(task: &mut Task, epfd: u64, events: u64, max: u64, timeout_ms: i32) -> SysResult {
    if max == 0 || max > (i32::MAX as u64) / 12 {
        return Err(Errno::EINVAL);
    }
    let ep = of_kind(task, epfd, EPOLL_PATH)?;
    let epoll = epoll_of(&ep)?;
    let max = max.min(4096) as usize;
    let deadline =
        (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
    loop {
        let _ = host::eventfd_read(epoll.wake.as_fd());
        let mut ready: Vec<[u8; 12]> = epoll
            .ready_local(max)
            .into_iter()
            .map(|(ev, data)| {
                let mut b = [0u8; 12];
                b[0..4].copy_from_slice(&ev.to_le_bytes());
                b[4..12].copy_from_slice(&data.to_le_bytes());
                b
            })
            .collect();
        if ready.len() < max {
            ready.extend(host::epoll_wait(epoll.host.as_fd(), max - ready.len(), 0)?);
        }
        if !ready.is_empty() {
            let bytes: Vec<u8> = ready.iter().flatten().copied().collect();
            task.mm().copy_out(events, &bytes)?;
            return Ok(ready.len() as u64);
        }
        let now = Instant::now();
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(now).min(KILL_POLL),
            None => KILL_POLL,
        };
        if !slice.is_zero() {
            // Sleep until a host event, a poke from a watched file, or a
            // signal for this task.
            let mut p = [
                libc::pollfd {
                    fd: epoll.host.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: epoll.wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: task.handle.wake_fd.as_ref().map_or(-1, |w| w.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            host::poll(&mut p, slice.as_millis().max(1) as i32)?;
            if p[2].revents != 0 {
                task.handle.drain_wake();
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(0);
        }
        if task.handle.interrupted() {
            // epoll_wait is never restarted after a handler (signal(7)).
            return Err(Errno::new(ERESTARTNOHAND).expect("a valid errno number"));
        }
    }
}

pub fn epoll_wait(task: &mut Task, a: [u64; 6]) -> SysResult {
    wait(task, a[0], a[1], a[2], a[3] as i32)
}

pub fn epoll_pwait(task: &mut Task, a: [u64; 6]) -> SysResult {
    if a[4] != 0 {
        if a[5] != 8 {
            return Err(Errno::EINVAL);
        }
        let mut b = [0u8; 8];
        task.mm().copy_in(a[4], &mut b)?;
        let mask = u64::from_le_bytes(b) & !crate::signal::UNBLOCKABLE;
        task.saved_mask = Some(task.set_signal_mask(mask));
    }
    wait(task, a[0], a[1], a[2], a[3] as i32)
}

pub fn eventfd2(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[1] as i32;
    if flags & !(libc::EFD_CLOEXEC | libc::EFD_NONBLOCK | libc::EFD_SEMAPHORE) != 0 {
        return Err(Errno::EINVAL);
    }
    // Non-blocking on the host; blocking reads are waits in the Sentry.
    let fd = host::eventfd(
        a[0] as u32,
        libc::EFD_NONBLOCK | (flags & libc::EFD_SEMAPHORE),
    )?;
    install(
        task,
        fd,
        flags & libc::EFD_NONBLOCK,
        EVENTFD_PATH,
        flags & libc::EFD_CLOEXEC != 0,
    )
}

pub fn eventfd(task: &mut Task, a: [u64; 6]) -> SysResult {
    eventfd2(task, [a[0], 0, 0, 0, 0, 0])
}

pub fn timerfd_create(task: &mut Task, a: [u64; 6]) -> SysResult {
    let (clock, flags) = (a[0] as i32, a[1] as i32);
    if !matches!(
        clock,
        libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME
    ) {
        return Err(Errno::EINVAL);
    }
    if flags & !(libc::TFD_CLOEXEC | libc::TFD_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let fd = host::timerfd_create(clock, libc::TFD_NONBLOCK)?;
    install(
        task,
        fd,
        flags & libc::TFD_NONBLOCK,
        TIMERFD_PATH,
        flags & libc::TFD_CLOEXEC != 0,
    )
}

pub fn timerfd_settime(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = of_kind(task, a[0], TIMERFD_PATH)?;
    let flags = a[1] as i32;
    if flags & !(libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET) != 0 {
        return Err(Errno::EINVAL);
    }
    let mut new = [0u8; 32];
    task.mm().copy_in(a[2], &mut new)?;
    let old = host::timerfd_settime(fs::host_fd(&file, Errno::EINVAL)?, flags, &new)?;
    if a[3] != 0 {
        task.mm().copy_out(a[3], &old)?;
    }
    Ok(0)
}

pub fn timerfd_gettime(task: &mut Task, a: [u64; 6]) -> SysResult {
    let file = of_kind(task, a[0], TIMERFD_PATH)?;
    let cur = host::timerfd_gettime(fs::host_fd(&file, Errno::EINVAL)?)?;
    task.mm().copy_out(a[1], &cur)?;
    Ok(0)
}

/// inotify_init1(2): IN_NONBLOCK and IN_CLOEXEC are O_NONBLOCK and
/// O_CLOEXEC.
pub fn inotify_init1(task: &mut Task, a: [u64; 6]) -> SysResult {
    let flags = a[0] as i32;
    if flags & !(libc::O_NONBLOCK | libc::O_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let file = vfs::FileDescription::anonymous(
        "anon_inode:inotify",
        vfs::notify::Inotify::new(),
        libc::O_RDONLY | (flags & libc::O_NONBLOCK),
    );
    task.fds().insert(file, flags & libc::O_CLOEXEC != 0, 0)
}

pub fn inotify_init(task: &mut Task, _a: [u64; 6]) -> SysResult {
    inotify_init1(task, [0; 6])
}

/// Run `f` on the inotify instance behind descriptor `fd`; EINVAL for
/// other files.
fn with_inotify<T>(
    task: &Task,
    fd: u64,
    f: impl FnOnce(&vfs::notify::Inotify) -> Result<T, Errno>,
) -> Result<T, Errno> {
    let file = task.fds().get(fd)?;
    let instance = file
        .ops()
        .as_any()
        .and_then(|a| a.downcast_ref::<vfs::notify::Inotify>())
        .ok_or(Errno::EINVAL)?;
    f(instance)
}

pub fn inotify_add_watch(task: &mut Task, a: [u64; 6]) -> SysResult {
    use vfs::notify::IN_DONT_FOLLOW;
    // Linux checks the descriptor before the path.
    with_inotify(task, a[0], |_| Ok(()))?;
    let mask = a[2] as u32;
    let path = super::file::path_arg(task, a[1])?;
    let start = super::file::start_of(task, super::file::AT_FDCWD, &path)?;
    let walker = super::file::Walker::of(task);
    let ctx = walker.ctx();
    let loc = ctx.lookup(&start, &path, mask & IN_DONT_FOLLOW == 0)?;
    // Watching needs read permission on the node (inotify_find_inode).
    ctx.access(&loc, libc::R_OK as u32)?;
    with_inotify(task, a[0], |i| i.add_watch(&loc, mask)).map(|wd| wd as u64)
}

pub fn inotify_rm_watch(task: &mut Task, a: [u64; 6]) -> SysResult {
    with_inotify(task, a[0], |i| i.rm_watch(a[1] as i32)).map(|()| 0)
}
