//! Pipes the Sentry implements itself: the FIFOs of its filesystems (a
//! FIFO node's identity finds its pipe). `pipe2` still makes host pipes.
//!
//! Linux's rules: a read of an empty pipe with no writer left is EOF; a
//! write with no reader is EPIPE; writes of at most PIPE_BUF bytes are
//! atomic (all or, for a non-blocking writer, EAGAIN); the capacity is
//! 64 KiB until F_SETPIPE_SZ changes it (fs/pipe.c's pipe_set_size).

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use abi::Errno;
use vfs::inode::FileOps;
use vfs::waiter::Waiters;

/// Linux's default pipe capacity.
const CAPACITY: usize = 65536;
const PIPE_BUF: usize = 4096;
const PAGE: usize = 4096;
/// `/proc/sys/fs/pipe-max-size`: the most F_SETPIPE_SZ gives without
/// CAP_SYS_RESOURCE.
const PIPE_MAX_SIZE: usize = 1 << 20;

struct State {
    buf: VecDeque<u8>,
    /// Bytes the pipe holds at most.
    capacity: usize,
    readers: usize,
    writers: usize,
    /// Opens for reading and writing so far, for the blocking-open rule
    /// (an open waits for the other side to have come, not to be there).
    read_opens: u64,
    write_opens: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            buf: VecDeque::new(),
            capacity: CAPACITY,
            readers: 0,
            writers: 0,
            read_opens: 0,
            write_opens: 0,
        }
    }
}

#[derive(Default)]
pub(crate) struct Pipe {
    st: Mutex<State>,
    waiters: Waiters,
}

/// One open end (or both, for O_RDWR).
pub(crate) struct PipeEnd {
    pipe: Arc<Pipe>,
    read: bool,
    write: bool,
    /// The other side's open count when this end opened.
    partner_opens: u64,
}

impl Pipe {
    pub fn open(self: &Arc<Pipe>, flags: i32) -> Result<Arc<PipeEnd>, Errno> {
        let acc = flags & libc::O_ACCMODE;
        let (read, write) = match acc {
            libc::O_RDONLY => (true, false),
            libc::O_WRONLY => (false, true),
            libc::O_RDWR => (true, true),
            _ => return Err(Errno::EINVAL),
        };
        let partner_opens = {
            let mut st = self.st.lock().unwrap();
            if write && !read && flags & libc::O_NONBLOCK != 0 && st.readers == 0 {
                return Err(Errno::ENXIO);
            }
            if read {
                st.readers += 1;
                st.read_opens += 1;
            }
            if write {
                st.writers += 1;
                st.write_opens += 1;
            }
            // A partner already there counts as arrived even if it leaves
            // before we look (Linux's fifo_open waits only when there is
            // none): as if we had opened before it.
            if read {
                st.write_opens - u64::from(st.writers > 0)
            } else {
                st.read_opens - u64::from(st.readers > 0)
            }
        };
        self.waiters.notify_all();
        Ok(Arc::new(PipeEnd {
            pipe: self.clone(),
            read,
            write,
            partner_opens,
        }))
    }
}

impl PipeEnd {
    /// For a blocking open: whether the other side has come (a reader
    /// waits for a writer and the other way round), given the counts seen
    /// at open.
    pub fn partner_arrived(&self) -> bool {
        let st = self.pipe.st.lock().unwrap();
        match (self.read, self.write) {
            (true, false) => st.writers > 0 || st.write_opens > self.partner_opens,
            (false, true) => st.readers > 0 || st.read_opens > self.partner_opens,
            _ => true,
        }
    }
}

impl PipeEnd {
    /// F_GETPIPE_SZ.
    pub fn size(&self) -> usize {
        self.pipe.st.lock().unwrap().capacity
    }

    /// F_SETPIPE_SZ: round `want` up to a power-of-two number of pages;
    /// EPERM past `PIPE_MAX_SIZE` without CAP_SYS_RESOURCE (`privileged`),
    /// EBUSY if the data queued would not fit. Returns the new size.
    pub fn set_size(&self, want: u64, privileged: bool) -> Result<usize, Errno> {
        if want > 1 << 31 {
            return Err(Errno::EINVAL);
        }
        let size = (want as usize).max(PAGE).next_power_of_two();
        if size > PIPE_MAX_SIZE && !privileged {
            return Err(Errno::EPERM);
        }
        {
            let mut st = self.pipe.st.lock().unwrap();
            // Linux counts the pages the data occupies.
            if st.buf.len().div_ceil(PAGE) * PAGE > size {
                return Err(Errno::EBUSY);
            }
            st.capacity = size;
        }
        self.pipe.waiters.notify_all();
        Ok(size)
    }

    /// Up to `max` bytes from the front of the pipe, left in it (tee):
    /// empty at EOF (no writer left), EAGAIN while empty with writers.
    pub fn peek(&self, max: usize) -> Result<Vec<u8>, Errno> {
        let st = self.pipe.st.lock().unwrap();
        if st.buf.is_empty() {
            return if st.writers == 0 {
                Ok(Vec::new())
            } else {
                Err(Errno::EAGAIN)
            };
        }
        Ok(st.buf.iter().take(max).copied().collect())
    }

    /// Whether `other` is an end of the same pipe.
    pub fn same_pipe(&self, other: &PipeEnd) -> bool {
        Arc::ptr_eq(&self.pipe, &other.pipe)
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        {
            let mut st = self.pipe.st.lock().unwrap();
            if self.read {
                st.readers -= 1;
            }
            if self.write {
                st.writers -= 1;
            }
        }
        self.pipe.waiters.notify_all();
    }
}

impl FileOps for PipeEnd {
    fn read(&self, buf: &mut [u8], _offset: u64) -> Result<usize, Errno> {
        let n = {
            let mut st = self.pipe.st.lock().unwrap();
            if st.buf.is_empty() {
                return if st.writers == 0 {
                    Ok(0)
                } else {
                    Err(Errno::EAGAIN)
                };
            }
            let n = buf.len().min(st.buf.len());
            for (d, s) in buf.iter_mut().zip(st.buf.drain(..n)) {
                *d = s;
            }
            n
        };
        self.pipe.waiters.notify_all();
        Ok(n)
    }

    fn write(&self, buf: &[u8], _offset: u64) -> Result<usize, Errno> {
        let n = {
            let mut st = self.pipe.st.lock().unwrap();
            if st.readers == 0 {
                return Err(Errno::EPIPE);
            }
            let room = st.capacity.saturating_sub(st.buf.len());
            if room == 0 || (buf.len() <= PIPE_BUF && room < buf.len()) {
                return Err(Errno::EAGAIN);
            }
            let n = buf.len().min(room);
            st.buf.extend(&buf[..n]);
            n
        };
        self.pipe.waiters.notify_all();
        Ok(n)
    }

    fn seekable(&self) -> bool {
        false
    }

    fn poll(&self, events: i16) -> i16 {
        let st = self.pipe.st.lock().unwrap();
        let mut r = 0;
        if self.read {
            if !st.buf.is_empty() {
                r |= libc::POLLIN | libc::POLLRDNORM;
            }
            if st.writers == 0 && st.write_opens > 0 {
                r |= libc::POLLHUP;
            }
        }
        if self.write {
            if st.readers == 0 {
                r |= libc::POLLERR;
            } else if st.capacity.saturating_sub(st.buf.len()) >= PIPE_BUF {
                r |= libc::POLLOUT | libc::POLLWRNORM;
            }
        }
        r & (events | libc::POLLHUP | libc::POLLERR)
    }

    fn waiters(&self) -> Option<&Waiters> {
        Some(&self.pipe.waiters)
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

/// The pipes of the FIFOs in a sandbox, by the node's (dev, ino). A pipe
/// lives while an end is open; the next open of the FIFO starts afresh.
#[derive(Default)]
pub(crate) struct Fifos {
    pipes: Mutex<HashMap<(u64, u64), Weak<Pipe>>>,
}

impl Fifos {
    pub fn open(&self, key: (u64, u64), flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        let pipe = {
            let mut pipes = self.pipes.lock().unwrap();
            pipes.retain(|_, w| w.strong_count() > 0);
            match pipes.get(&key).and_then(Weak::upgrade) {
                Some(p) => p,
                None => {
                    let p = Arc::new(Pipe::default());
                    pipes.insert(key, Arc::downgrade(&p));
                    p
                }
            }
        };
        Ok(pipe.open(flags)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eof_epipe_and_pipe_buf_atomicity() {
        let fifos = Fifos::default();
        assert_eq!(
            fifos.open((1, 1), libc::O_WRONLY | libc::O_NONBLOCK).err(),
            Some(Errno::ENXIO),
            "no reader yet"
        );
        let r = fifos
            .open((1, 1), libc::O_RDONLY | libc::O_NONBLOCK)
            .unwrap();
        let w = fifos.open((1, 1), libc::O_WRONLY).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf, 0).err(), Some(Errno::EAGAIN));
        assert_eq!(w.write(b"hi", 0).unwrap(), 2);
        assert_eq!(r.read(&mut buf, 0).unwrap(), 2);
        // Fill to leave less than PIPE_BUF of room: a small write is refused
        // whole, a large one goes in part.
        let big = vec![7u8; CAPACITY - 100];
        assert_eq!(w.write(&big, 0).unwrap(), CAPACITY - 100);
        assert_eq!(w.write(&[1u8; 200], 0).err(), Some(Errno::EAGAIN));
        assert_eq!(w.write(&[1u8; 5000], 0).unwrap(), 100);
        drop(w);
        let mut all = vec![0u8; CAPACITY];
        assert_eq!(r.read(&mut all, 0).unwrap(), CAPACITY);
        assert_eq!(r.read(&mut buf, 0).unwrap(), 0, "EOF once writers are gone");
        let w2 = fifos.open((1, 1), libc::O_WRONLY).unwrap();
        drop(r);
        assert_eq!(w2.write(b"x", 0).err(), Some(Errno::EPIPE));
    }

    #[test]
    fn a_partner_that_left_before_the_open_looked_still_arrived() {
        let pipe = Arc::new(Pipe::default());
        // A writer waiting in open, then a reader: the writer goes on,
        // writes and closes before the reader checks.
        let w = pipe.open(libc::O_WRONLY).unwrap();
        let r = pipe.open(libc::O_RDONLY).unwrap();
        assert!(w.partner_arrived());
        drop(w);
        assert!(r.partner_arrived());
        // A reader alone still waits for a writer to come.
        let r2 = Arc::new(Pipe::default()).open(libc::O_RDONLY).unwrap();
        assert!(!r2.partner_arrived());
    }
}
