//! Pseudo-terminals: `/dev/ptmx` makes a pair, `/dev/pts/N` is the
//! terminal end. Between them sits a small line discipline with Linux's
//! defaults: canonical input (lines, erase, kill, end-of-file), echo,
//! CR/NL translation, and the signal characters, which signal the
//! terminal's foreground process group.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use abi::{Errno, Stat};
use vfs::inode::{DirEntry, FileOps, Inode, StatFs, TimeSpec};
use vfs::waiter::Waiters;

use crate::task::Kernel;

/// Bytes of input or output a terminal holds (Linux: 4096 per direction
/// for the line discipline's buffer).
const QUEUE: usize = 4096;

// termios flag bits (asm-generic/termbits.h).
const ICRNL: u32 = 0o400;
const IGNCR: u32 = 0o200;
const INLCR: u32 = 0o100;
const OPOST: u32 = 0o1;
const ONLCR: u32 = 0o4;
const ISIG: u32 = 0o1;
const ICANON: u32 = 0o2;
const TOSTOP: u32 = 0o400;
const ECHO: u32 = 0o10;
const ECHOE: u32 = 0o20;
const ECHOK: u32 = 0o40;
const ECHOCTL: u32 = 0o1000;
const IEXTEN: u32 = 0o100000;
// c_cc indexes.
const VINTR: usize = 0;
const VQUIT: usize = 1;
const VERASE: usize = 2;
const VKILL: usize = 3;
const VEOF: usize = 4;
const VSUSP: usize = 10;

/// The kernel's `struct termios` (36 bytes): four flag words, the line
/// discipline, 19 control characters.
#[derive(Clone, Copy)]
struct Termios {
    iflag: u32,
    oflag: u32,
    cflag: u32,
    lflag: u32,
    line: u8,
    cc: [u8; 19],
}

impl Termios {
    /// Linux's defaults for a new pty (tty_std_termios).
    fn default_pty() -> Termios {
        let mut cc = [0u8; 19];
        cc[..17].copy_from_slice(&[3, 28, 127, 21, 4, 0, 1, 0, 17, 19, 26, 0, 18, 15, 23, 22, 0]);
        Termios {
            iflag: ICRNL | 0o2000, /* IXON */
            oflag: OPOST | ONLCR,
            cflag: 0o277 /* B38400 | CS8 | CREAD */ | 0o200,
            lflag: ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | 0o4000 /* ECHOKE */ | IEXTEN,
            line: 0,
            cc,
        }
    }

    fn to_bytes(self) -> [u8; 36] {
        let mut b = [0u8; 36];
        b[0..4].copy_from_slice(&self.iflag.to_le_bytes());
        b[4..8].copy_from_slice(&self.oflag.to_le_bytes());
        b[8..12].copy_from_slice(&self.cflag.to_le_bytes());
        b[12..16].copy_from_slice(&self.lflag.to_le_bytes());
        b[16] = self.line;
        b[17..36].copy_from_slice(&self.cc);
        b
    }

    fn from_bytes(b: &[u8; 36]) -> Termios {
        let w = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4"));
        let mut cc = [0u8; 19];
        cc.copy_from_slice(&b[17..36]);
        Termios {
            iflag: w(0),
            oflag: w(4),
            cflag: w(8),
            lflag: w(12),
            line: b[16],
            cc,
        }
    }
}

struct State {
    termios: Termios,
    winsize: [u8; 8],
    /// Input the master wrote that the line discipline has not seen yet.
    raw: VecDeque<u8>,
    /// Input the terminal end can read (complete lines in canonical mode).
    input: VecDeque<u8>,
    /// The line being edited (canonical mode).
    line: Vec<u8>,
    /// Canonical mode: how many complete lines `input` holds (a line ended
    /// by VEOF may be empty, so bytes alone cannot tell).
    lines: usize,
    /// Output the master end can read.
    output: VecDeque<u8>,
    locked: bool,
    master_open: bool,
    slaves: usize,
    slave_ever_opened: bool,
    fg_pgrp: i32,
    session: i32,
}

pub(crate) struct Pty {
    pub index: u32,
    /// The devpts instance's device (what `/dev/pts/N` reports).
    dev: u64,
    st: Mutex<State>,
    waiters: Waiters,
    kernel: Weak<Kernel>,
}

impl Pty {
    fn signal_fg(&self, sig: i32, pgrp: i32) {
        let Some(kernel) = self.kernel.upgrade() else {
            return;
        };
        if pgrp <= 0 {
            return;
        }
        for g in kernel.all_groups() {
            if g.lock().pgid == pgrp {
                let info = crate::signal::user_info(sig, 0x80 /* SI_KERNEL */, 0, 0);
                g.post(crate::signal::Queued::new(sig, info));
            }
        }
    }

    /// Job control for an access to this terminal by the calling process
    /// (Linux's `__tty_check_change`, drivers/tty/tty_jobctrl.c): a
    /// process of a background group of the terminal's session sends
    /// `sig` to its group and the call restarts once it is continued;
    /// when it blocks or ignores `sig` the access goes ahead (SIGTTOU) or
    /// fails with EIO (SIGTTIN); an orphaned group gets EIO.
    fn job_control(&self, sig: i32) -> Result<(), Errno> {
        let (session, fg) = {
            let st = self.st.lock().unwrap();
            (st.session, st.fg_pgrp)
        };
        let (tgid, tid) = crate::procfs::current_ids();
        if session == 0 || fg == 0 || tgid == 0 {
            return Ok(());
        }
        let Some(kernel) = self.kernel.upgrade() else {
            return Ok(());
        };
        let Some((group, handle)) = kernel.find_task(tid) else {
            return Ok(());
        };
        let (pgid, sid) = {
            let st = group.lock();
            (st.pgid, st.sid)
        };
        if sid != session || pgid == fg {
            return Ok(());
        }
        let ignored = crate::signal::ignored(&group.handlers().get(sig), sig)
            || handle.signals().mask & crate::signal::bit(sig) != 0;
        if ignored {
            return if sig == libc::SIGTTIN {
                Err(Errno::EIO)
            } else {
                Ok(())
            };
        }
        if crate::process::orphaned_pgrp(&kernel.all_groups(), pgid) {
            return Err(Errno::EIO);
        }
        self.signal_fg(sig, pgid);
        Err(Errno::new(crate::deliver::ERESTARTSYS).expect("a valid errno number"))
    }

    /// What the master writes: the keyboard. It waits in `raw` until
    /// someone looks at either end (as Linux hands input to the line
    /// discipline from a work queue, a terminal mode set meanwhile applies
    /// to it); signal characters are acted on at once.
    fn input(&self, data: &[u8]) -> usize {
        let signals = {
            let mut st = self.st.lock().unwrap();
            let room = QUEUE.saturating_sub(st.raw.len() + st.input.len() + st.line.len());
            let n = data.len().min(room);
            st.raw.extend(&data[..n]);
            let t = st.termios;
            let urgent = t.lflag & ISIG != 0
                && data[..n]
                    .iter()
                    .any(|&c| c != 0 && (c == t.cc[VINTR] || c == t.cc[VQUIT] || c == t.cc[VSUSP]));
            let signals = if urgent { process(&mut st) } else { Vec::new() };
            (n, signals)
        };
        self.deliver(signals.1);
        self.waiters.notify_all();
        signals.0
    }

    /// Run the line discipline over pending input; returns the signals to
    /// send (after the lock is dropped).
    fn flush(&self) {
        let signals = process(&mut self.st.lock().unwrap());
        self.deliver(signals);
    }

    fn deliver(&self, signals: Vec<(i32, i32)>) {
        for (sig, pgrp) in signals {
            self.signal_fg(sig, pgrp);
        }
    }

    /// What the terminal end writes, through output processing.
    fn output(&self, data: &[u8]) -> Result<usize, Errno> {
        let n = {
            let mut st = self.st.lock().unwrap();
            if !st.master_open {
                return Err(Errno::EIO);
            }
            let room = QUEUE.saturating_sub(st.output.len());
            if room == 0 {
                return Err(Errno::EAGAIN);
            }
            let t = st.termios;
            let mut n = 0;
            for &c in data {
                if st.output.len() + 2 > QUEUE {
                    break;
                }
                if c == b'\n' && t.oflag & OPOST != 0 && t.oflag & ONLCR != 0 {
                    st.output.push_back(b'\r');
                }
                st.output.push_back(c);
                n += 1;
            }
            n
        };
        self.waiters.notify_all();
        Ok(n)
    }
}

/// The line discipline over `st.raw`: translation, signals, editing,
/// echo. Returns (signal, process group) pairs to send.
fn process(st: &mut State) -> Vec<(i32, i32)> {
    let mut signals = Vec::new();
    let t = st.termios;
    while let Some(c0) = st.raw.pop_front() {
        let mut c = c0;
        if c == b'\r' && t.iflag & IGNCR != 0 {
            continue;
        }
        if c == b'\r' && t.iflag & ICRNL != 0 {
            c = b'\n';
        } else if c == b'\n' && t.iflag & INLCR != 0 {
            c = b'\r';
        }
        if t.lflag & ISIG != 0 {
            let sig = if c == t.cc[VINTR] && c != 0 {
                Some(libc::SIGINT)
            } else if c == t.cc[VQUIT] && c != 0 {
                Some(libc::SIGQUIT)
            } else if c == t.cc[VSUSP] && c != 0 {
                Some(libc::SIGTSTP)
            } else {
                None
            };
            if let Some(sig) = sig {
                if t.lflag & ECHO != 0 {
                    echo_ctl(st, &t, c);
                }
                st.line.clear();
                signals.push((sig, st.fg_pgrp));
                continue;
            }
        }
        if t.lflag & ICANON != 0 {
            if c == t.cc[VERASE] && c != 0 {
                if st.line.pop().is_some() && t.lflag & ECHO != 0 && t.lflag & ECHOE != 0 {
                    st.output.extend(b"\x08 \x08");
                }
                continue;
            }
            if c == t.cc[VKILL] && c != 0 {
                let n = st.line.len();
                st.line.clear();
                if t.lflag & ECHO != 0 && t.lflag & ECHOK != 0 {
                    for _ in 0..n {
                        st.output.extend(b"\x08 \x08");
                    }
                }
                continue;
            }
            if c == t.cc[VEOF] && c != 0 {
                let line = std::mem::take(&mut st.line);
                st.input.extend(line);
                st.lines += 1;
                continue;
            }
            if t.lflag & ECHO != 0 {
                echo(st, &t, c);
            }
            st.line.push(c);
            if c == b'\n' {
                let line = std::mem::take(&mut st.line);
                st.input.extend(line);
                st.lines += 1;
            }
        } else {
            if t.lflag & ECHO != 0 {
                echo(st, &t, c);
            }
            st.input.push_back(c);
        }
    }
    signals
}

fn echo(st: &mut State, t: &Termios, c: u8) {
    if c == b'\n' {
        if t.oflag & OPOST != 0 && t.oflag & ONLCR != 0 {
            st.output.push_back(b'\r');
        }
        st.output.push_back(b'\n');
    } else if c < 0x20 && c != b'\t' && t.lflag & ECHOCTL != 0 {
        echo_ctl(st, t, c);
    } else {
        st.output.push_back(c);
    }
}

fn echo_ctl(st: &mut State, _t: &Termios, c: u8) {
    st.output.push_back(b'^');
    st.output.push_back(c ^ 0x40);
}

/// The ptys of a sandbox, by index (what `/dev/pts` lists).
pub(crate) struct Ptys {
    all: Mutex<BTreeMap<u32, Weak<Pty>>>,
    kernel: Weak<Kernel>,
    dev: u64,
}

impl Ptys {
    pub fn new(kernel: Weak<Kernel>, dev: u64) -> Arc<Ptys> {
        Arc::new(Ptys {
            all: Mutex::new(BTreeMap::new()),
            kernel,
            dev,
        })
    }

    /// Open `/dev/ptmx`: a new pair, locked until TIOCSPTLCK(0); returns
    /// the master end.
    pub fn open_master(&self) -> Result<Arc<dyn FileOps>, Errno> {
        let mut all = self.all.lock().unwrap();
        all.retain(|_, w| w.strong_count() > 0);
        let index = (0u32..)
            .find(|i| !all.contains_key(i))
            .ok_or(Errno::ENOSPC)?;
        let pty = Arc::new(Pty {
            index,
            dev: self.dev,
            st: Mutex::new(State {
                termios: Termios::default_pty(),
                winsize: [0; 8],
                raw: VecDeque::new(),
                input: VecDeque::new(),
                line: Vec::new(),
                lines: 0,
                output: VecDeque::new(),
                locked: true,
                master_open: true,
                slaves: 0,
                slave_ever_opened: false,
                fg_pgrp: 0,
                session: 0,
            }),
            waiters: Waiters::default(),
            kernel: self.kernel.clone(),
        });
        all.insert(index, Arc::downgrade(&pty));
        Ok(Arc::new(End { pty, master: true }))
    }

    /// Open `/dev/tty`: the calling process's controlling terminal (the
    /// pty whose session is the caller's), ENXIO without one.
    pub fn open_controlling(&self) -> Result<Arc<dyn FileOps>, Errno> {
        let kernel = self.kernel.upgrade().ok_or(Errno::ENXIO)?;
        let tgid = crate::procfs::current_tgid();
        let sid = kernel
            .find_group(tgid)
            .map(|g| g.lock().sid)
            .ok_or(Errno::ENXIO)?;
        let ptys: Vec<Arc<Pty>> = self
            .all
            .lock()
            .unwrap()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for pty in ptys {
            let mut st = pty.st.lock().unwrap();
            if st.session == sid && sid != 0 {
                st.slaves += 1;
                st.slave_ever_opened = true;
                drop(st);
                return Ok(Arc::new(End { pty, master: false }));
            }
        }
        Err(Errno::ENXIO)
    }

    fn get(&self, index: u32) -> Option<Arc<Pty>> {
        self.all.lock().unwrap().get(&index).and_then(Weak::upgrade)
    }
}

/// One end of a pty.
pub(crate) struct End {
    pub pty: Arc<Pty>,
    pub master: bool,
}

impl Drop for End {
    fn drop(&mut self) {
        {
            let mut st = self.pty.st.lock().unwrap();
            if self.master {
                st.master_open = false;
            } else {
                st.slaves -= 1;
            }
        }
        self.pty.waiters.notify_all();
    }
}

impl FileOps for End {
    fn read(&self, buf: &mut [u8], _offset: u64) -> Result<usize, Errno> {
        if !self.master {
            self.pty.job_control(libc::SIGTTIN)?;
        }
        self.pty.flush();
        let n = {
            let mut st = self.pty.st.lock().unwrap();
            if self.master {
                if st.output.is_empty() {
                    // Every terminal end closed: the master reads EIO.
                    return if st.slave_ever_opened && st.slaves == 0 {
                        Err(Errno::EIO)
                    } else {
                        Err(Errno::EAGAIN)
                    };
                }
                let n = buf.len().min(st.output.len());
                for (d, s) in buf.iter_mut().zip(st.output.drain(..n)) {
                    *d = s;
                }
                n
            } else {
                let canonical = st.termios.lflag & ICANON != 0;
                if canonical {
                    if st.lines == 0 {
                        return if st.master_open {
                            Err(Errno::EAGAIN)
                        } else {
                            Ok(0)
                        };
                    }
                    // One line at most, up to and including its newline.
                    let end = st
                        .input
                        .iter()
                        .position(|&c| c == b'\n')
                        .map_or(st.input.len(), |p| p + 1);
                    let n = buf.len().min(end);
                    for (d, s) in buf.iter_mut().zip(st.input.drain(..n)) {
                        *d = s;
                    }
                    if n == end {
                        st.lines -= 1;
                    }
                    n
                } else {
                    if st.input.is_empty() {
                        return if st.master_open {
                            Err(Errno::EAGAIN)
                        } else {
                            Ok(0)
                        };
                    }
                    let n = buf.len().min(st.input.len());
                    for (d, s) in buf.iter_mut().zip(st.input.drain(..n)) {
                        *d = s;
                    }
                    n
                }
            }
        };
        self.pty.waiters.notify_all();
        Ok(n)
    }

    fn write(&self, buf: &[u8], _offset: u64) -> Result<usize, Errno> {
        if self.master {
            let n = self.pty.input(buf);
            if n == 0 && !buf.is_empty() {
                return Err(Errno::EAGAIN);
            }
            Ok(n)
        } else {
            let tostop = self.pty.st.lock().unwrap().termios.lflag & TOSTOP != 0;
            if tostop {
                self.pty.job_control(libc::SIGTTOU)?;
            }
            self.pty.output(buf)
        }
    }

    fn seekable(&self) -> bool {
        false
    }

    /// For a descriptor without a path (TIOCGPTPEER): what `/dev/pts/N`
    /// (or `/dev/pts/ptmx`) reports, so ttyname finds it.
    fn stat(&self) -> Result<Stat, Errno> {
        let (ino, rdev, mode) = if self.master {
            (2, libc::makedev(5, 2), 0o666)
        } else {
            (
                u64::from(self.pty.index) + 3,
                libc::makedev(136, self.pty.index),
                0o620,
            )
        };
        Ok(Stat {
            dev: self.pty.dev,
            ino,
            mode: libc::S_IFCHR | mode,
            rdev,
            nlink: 1,
            blksize: 1024,
            ..Stat::default()
        })
    }

    fn poll(&self, events: i16) -> i16 {
        self.pty.flush();
        let st = self.pty.st.lock().unwrap();
        let mut r = 0;
        if self.master {
            if !st.output.is_empty() {
                r |= libc::POLLIN | libc::POLLRDNORM;
            }
            if st.slave_ever_opened && st.slaves == 0 {
                r |= libc::POLLHUP;
            }
            if st.input.len() + st.line.len() < QUEUE {
                r |= libc::POLLOUT | libc::POLLWRNORM;
            }
        } else {
            let canonical = st.termios.lflag & ICANON != 0;
            if (canonical && st.lines > 0) || (!canonical && !st.input.is_empty()) {
                r |= libc::POLLIN | libc::POLLRDNORM;
            }
            if !st.master_open {
                r |= libc::POLLHUP | libc::POLLIN;
            }
            if st.output.len() < QUEUE {
                r |= libc::POLLOUT | libc::POLLWRNORM;
            }
        }
        r & (events | libc::POLLHUP | libc::POLLERR)
    }

    fn waiters(&self) -> Option<&Waiters> {
        Some(&self.pty.waiters)
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

/// TIOCGPTPEER: the terminal end of the master `end`, opened anew.
pub(crate) fn open_peer(end: &End) -> Result<Arc<dyn FileOps>, Errno> {
    if !end.master {
        return Err(Errno::ENOTTY);
    }
    let pty = end.pty.clone();
    {
        let mut st = pty.st.lock().unwrap();
        if st.locked {
            return Err(Errno::EIO);
        }
        st.slaves += 1;
        st.slave_ever_opened = true;
    }
    Ok(Arc::new(End { pty, master: false }))
}

/// A terminal ioctl on `end`. `arg_in`/`arg_out` move bytes from and to
/// the caller; `caller` is (tgid, pgid, sid) of the calling process.
pub(crate) fn ioctl(
    end: &End,
    request: u64,
    arg_in: &dyn Fn(&mut [u8]) -> Result<(), Errno>,
    arg_out: &dyn Fn(&[u8]) -> Result<(), Errno>,
    caller: (i32, i32, i32),
) -> Result<u64, Errno> {
    const TCGETS: u64 = 0x5401;
    const TCSETS: u64 = 0x5402;
    const TCSETSW: u64 = 0x5403;
    const TCSETSF: u64 = 0x5404;
    const TCSBRK: u64 = 0x5409;
    const TCXONC: u64 = 0x540a;
    const TCFLSH: u64 = 0x540b;
    const TIOCSCTTY: u64 = 0x540e;
    const TIOCGPGRP: u64 = 0x540f;
    const TIOCSPGRP: u64 = 0x5410;
    const TIOCGWINSZ: u64 = 0x5413;
    const TIOCSWINSZ: u64 = 0x5414;
    const FIONREAD: u64 = 0x541b;
    const TIOCNOTTY: u64 = 0x5422;
    const TIOCGSID: u64 = 0x5429;
    const TIOCGPTN: u64 = 0x8004_5430;
    const TIOCSPTLCK: u64 = 0x4004_5431;
    const TIOCGPTLCK: u64 = 0x8004_5439;
    let pty = &end.pty;
    // Changing the terminal's settings from a background group is job
    // control's business, as writing with TOSTOP is.
    if !end.master
        && matches!(
            request,
            TCSETS | TCSETSW | TCSETSF | TIOCSPGRP | TCFLSH | TCXONC
        )
    {
        pty.job_control(libc::SIGTTOU)?;
    }
    match request {
        TCGETS => arg_out(&pty.st.lock().unwrap().termios.to_bytes()).map(|()| 0),
        TCSETS | TCSETSW | TCSETSF => {
            let mut b = [0u8; 36];
            arg_in(&mut b)?;
            let mut st = pty.st.lock().unwrap();
            let was_canonical = st.termios.lflag & ICANON != 0;
            st.termios = Termios::from_bytes(&b);
            if request == TCSETSF {
                st.raw.clear();
                st.input.clear();
                st.line.clear();
                st.lines = 0;
            }
            // Leaving canonical mode hands over the line being edited.
            if was_canonical && st.termios.lflag & ICANON == 0 {
                let line = std::mem::take(&mut st.line);
                st.input.extend(line);
                st.lines = 0;
            }
            drop(st);
            pty.waiters.notify_all();
            Ok(0)
        }
        TIOCGWINSZ => arg_out(&pty.st.lock().unwrap().winsize).map(|()| 0),
        TIOCSWINSZ => {
            let mut b = [0u8; 8];
            arg_in(&mut b)?;
            let pgrp = {
                let mut st = pty.st.lock().unwrap();
                let changed = st.winsize != b;
                st.winsize = b;
                changed.then_some(st.fg_pgrp)
            };
            if let Some(pgrp) = pgrp {
                pty.signal_fg(libc::SIGWINCH, pgrp);
            }
            Ok(0)
        }
        TIOCGPTN if end.master => arg_out(&pty.index.to_le_bytes()).map(|()| 0),
        TIOCSPTLCK if end.master => {
            let mut b = [0u8; 4];
            arg_in(&mut b)?;
            pty.st.lock().unwrap().locked = i32::from_le_bytes(b) != 0;
            Ok(0)
        }
        TIOCGPTLCK if end.master => {
            let locked = i32::from(pty.st.lock().unwrap().locked);
            arg_out(&locked.to_le_bytes()).map(|()| 0)
        }
        TIOCSCTTY => {
            let mut st = pty.st.lock().unwrap();
            st.session = caller.2;
            st.fg_pgrp = caller.1;
            Ok(0)
        }
        TIOCNOTTY => Ok(0),
        TIOCGPGRP => {
            let st = pty.st.lock().unwrap();
            if st.session == 0 && !end.master {
                return Err(Errno::ENOTTY);
            }
            arg_out(&st.fg_pgrp.to_le_bytes()).map(|()| 0)
        }
        TIOCSPGRP => {
            let mut b = [0u8; 4];
            arg_in(&mut b)?;
            let pgrp = i32::from_le_bytes(b);
            if pgrp < 0 {
                return Err(Errno::EINVAL);
            }
            pty.st.lock().unwrap().fg_pgrp = pgrp;
            Ok(0)
        }
        TIOCGSID => {
            let sid = pty.st.lock().unwrap().session;
            if sid == 0 {
                return Err(Errno::ENOTTY);
            }
            arg_out(&sid.to_le_bytes()).map(|()| 0)
        }
        FIONREAD => {
            pty.flush();
            let st = pty.st.lock().unwrap();
            let n = if end.master {
                st.output.len()
            } else {
                st.input.len()
            } as i32;
            arg_out(&n.to_le_bytes()).map(|()| 0)
        }
        TCFLSH => {
            let mut st = pty.st.lock().unwrap();
            st.raw.clear();
            st.input.clear();
            st.line.clear();
            st.lines = 0;
            Ok(0)
        }
        TCSBRK | TCXONC => Ok(0),
        other => {
            tracing::info!("tty ioctl {other:#x} not supported: ENOTTY");
            Err(Errno::ENOTTY)
        }
    }
}

/// `/dev/pts`: a directory of the open ptys' terminal ends, and `ptmx`.
pub(crate) struct DevPts {
    pub ptys: Arc<Ptys>,
}

struct PtsNode {
    ptys: Arc<Ptys>,
    index: u32,
}

fn statfs() -> StatFs {
    StatFs {
        fs_type: 0x1cd1,
        bsize: 4096,
        namelen: 255,
        frsize: 4096,
        ..StatFs::default()
    }
}

impl Inode for DevPts {
    fn stat(&self) -> Result<Stat, Errno> {
        let now = TimeSpec::now();
        Ok(Stat {
            dev: self.ptys.dev,
            ino: 1,
            nlink: 2,
            mode: libc::S_IFDIR | 0o755,
            blksize: 4096,
            mtime_sec: now.sec,
            ..Stat::default()
        })
    }
    fn statfs(&self) -> Result<StatFs, Errno> {
        Ok(statfs())
    }
    fn lookup(&self, name: &str) -> Result<Arc<dyn Inode>, Errno> {
        if name == "ptmx" {
            return Ok(Arc::new(PtsNode {
                ptys: self.ptys.clone(),
                index: u32::MAX,
            }));
        }
        let index: u32 = name.parse().map_err(|_| Errno::ENOENT)?;
        if name != index.to_string() || self.ptys.get(index).is_none() {
            return Err(Errno::ENOENT);
        }
        Ok(Arc::new(PtsNode {
            ptys: self.ptys.clone(),
            index,
        }))
    }
    fn read_dir(&self) -> Result<Vec<DirEntry>, Errno> {
        let mut out = vec![DirEntry {
            ino: 2,
            kind: 2,
            name: "ptmx".into(),
        }];
        let all = self.ptys.all.lock().unwrap();
        for (i, w) in all.iter() {
            if w.strong_count() > 0 {
                out.push(DirEntry {
                    ino: u64::from(*i) + 3,
                    kind: 2,
                    name: i.to_string(),
                });
            }
        }
        Ok(out)
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        Err(Errno::EISDIR)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Inode for PtsNode {
    fn stat(&self) -> Result<Stat, Errno> {
        let (ino, rdev, mode) = if self.index == u32::MAX {
            (2, libc::makedev(5, 2), 0o666)
        } else {
            (
                u64::from(self.index) + 3,
                libc::makedev(136, self.index),
                0o620,
            )
        };
        Ok(Stat {
            dev: self.ptys.dev,
            ino,
            nlink: 1,
            mode: libc::S_IFCHR | mode,
            rdev,
            blksize: 1024,
            ..Stat::default()
        })
    }
    fn statfs(&self) -> Result<StatFs, Errno> {
        Ok(statfs())
    }
    fn setattr(&self, _attr: &vfs::SetAttr) -> Result<(), Errno> {
        // grantpt's chmod/chown: accepted, nothing to keep.
        Ok(())
    }
    fn valid(&self) -> bool {
        self.index == u32::MAX || self.ptys.get(self.index).is_some()
    }
    fn open(&self, _flags: i32) -> Result<Arc<dyn FileOps>, Errno> {
        if self.index == u32::MAX {
            return self.ptys.open_master();
        }
        let pty = self.ptys.get(self.index).ok_or(Errno::EIO)?;
        {
            let mut st = pty.st.lock().unwrap();
            if st.locked || !st.master_open {
                return Err(Errno::EIO);
            }
            st.slaves += 1;
            st.slave_ever_opened = true;
        }
        Ok(Arc::new(End { pty, master: false }))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Arc<dyn FileOps>, Arc<dyn FileOps>) {
        let ptys = Ptys::new(Weak::new(), 9);
        let m = ptys.open_master().unwrap();
        let end = m.as_any().unwrap().downcast_ref::<End>().unwrap();
        end.pty.st.lock().unwrap().locked = false;
        let node = PtsNode {
            ptys: ptys.clone(),
            index: end.pty.index,
        };
        let s = node.open(libc::O_RDWR).unwrap();
        (m, s)
    }

    #[test]
    fn canonical_input_is_edited_echoed_and_read_by_lines() {
        let (m, s) = pair();
        m.write(b"helo\x7flo\rsecond", 0).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(s.read(&mut buf, 0).unwrap(), 6);
        assert_eq!(&buf[..6], b"hello\n");
        assert_eq!(
            s.read(&mut buf, 0).err(),
            Some(Errno::EAGAIN),
            "no full line yet"
        );
        let n = m.read(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"helo\x08 \x08lo\r\nsecond", "the echo");
        // ^D ends the line without a newline.
        m.write(b"\x04", 0).unwrap();
        let n = s.read(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"second");
        // Output gets CR before NL.
        s.write(b"out\n", 0).unwrap();
        let n = m.read(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"out\r\n");
        drop(s);
        assert_eq!(m.read(&mut buf, 0).err(), Some(Errno::EIO));
    }
}
