//! The ptrace platform: application code runs in traced stub processes and
//! every syscall it makes stops it (`PTRACE_SYSEMU`) without running on the
//! host (upstream's `pkg/sentry/platform/ptrace`).
//!
//! An address space is a stub process: one read-only, executable page of
//! stub code at [`STUB_ADDR`] and the application's mappings of the
//! Sentry's memory file below it; everything the stub inherited from the
//! Sentry at clone time is unmapped before any application code runs.
//!
//! ptrace binds a tracee to the one host thread that traces it, so:
//! - each address space has a *request thread* that traces the stub's first
//!   thread and injects `mmap`/`munmap` (and `clone` for new stub threads)
//!   on behalf of whichever host thread asks;
//! - each context (task) that runs in an address space gets a stub thread of
//!   its own, cloned by the request thread and then seized by the host
//!   thread that runs the task, which alone drives it from then on;
//! - when a context ends, its stub thread waits, stopped, for the next
//!   context its host thread runs in that address space (the Sentry keeps
//!   host threads for new tasks): a new thread then costs no clone and no
//!   seize.
//!
//! Stub threads are separate thread groups sharing one memory (no
//! CLONE_THREAD), so a signal aimed at one stops no other.

pub(crate) mod stub;

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, Weak};

use abi::Errno;
use platform::{
    AccessType, AddressSpace, ArchState, Context, FpState, Interrupter, Platform, PlatformError,
    SignalInfo, SwitchEvent,
};

use crate::interrupt::StubInterrupter;
use crate::sys::{self, WaitStatus};
pub use stub::STUB_ADDR;

/// `SIGTRAP | 0x80`: a syscall stop under `PTRACE_O_TRACESYSGOOD`.
const SYSCALL_STOP: i32 = libc::SIGTRAP | 0x80;
/// The stop `PTRACE_INTERRUPT` produces on a seized tracee.
const INTERRUPT_STOP: i32 = libc::SIGTRAP | (libc::PTRACE_EVENT_STOP << 8);

/// The ptrace platform (`--platform=ptrace`).
pub struct PtracePlatform {
    xsave_size: usize,
    /// A stripped stub that new address spaces are forked from, made with
    /// the first one (see the systrap platform's template for why not
    /// sooner).
    template: Mutex<Option<Arc<Space>>>,
}

impl PtracePlatform {
    /// Checks that the host lets us trace: makes and discards one stub.
    pub fn new() -> Result<PtracePlatform, PlatformError> {
        let xsave_size = sys::xsave_size().max(FpState::MIN_SIZE);
        drop(stub::Stub::new(xsave_size)?);
        Ok(PtracePlatform {
            xsave_size,
            template: Mutex::new(None),
        })
    }

    fn template(&self) -> Result<Arc<Space>, PlatformError> {
        let mut t = self.template.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = &*t {
            return Ok(t.clone());
        }
        let xsave_size = self.xsave_size;
        let made = Space::start(move || stub::Stub::new(xsave_size))?;
        *t = Some(made.clone());
        Ok(made)
    }
}

impl Platform for PtracePlatform {
    fn name(&self) -> &'static str {
        "ptrace"
    }

    fn min_user_address(&self) -> u64 {
        abi::PAGE_SIZE * 16
    }

    fn max_user_address(&self) -> u64 {
        STUB_ADDR
    }

    fn new_address_space(&self) -> Result<Arc<dyn AddressSpace>, PlatformError> {
        // A fork of the template: copying that small process is far
        // cheaper than cloning and stripping the Sentry.
        let template = self.template()?;
        let forked = stub::Unadopted::new(template.ask(|reply| Request::Fork { reply })?);
        Ok(Arc::new(PtraceAddressSpace {
            shared: Space::start(move || forked.adopt())?,
        }))
    }

    fn new_context(&self) -> Result<Box<dyn Context>, PlatformError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Ok(Box::new(PtraceContext {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            interrupter: Arc::new(StubInterrupter::default()),
            fp_dirty: true,
            last_tid: 0,
            spaces: Vec::new(),
        }))
    }

    fn initial_state(&self) -> ArchState {
        ArchState::initial(self.xsave_size)
    }
}

/// What the request thread does for other threads.
enum Request {
    Syscall {
        nr: libc::c_long,
        args: [u64; 6],
        reply: Sender<Result<u64, PlatformError>>,
    },
    NewThread {
        reply: Sender<Result<i32, PlatformError>>,
    },
    /// Fork the stub (the template) into a new, untraced one.
    Fork {
        reply: Sender<Result<i32, PlatformError>>,
    },
}

/// A stub thread seized by one context's host thread.
#[derive(Clone, Copy)]
struct StubThread {
    tid: i32,
    tracer: i32,
}

/// One address space, shared by its handle and the contexts running in it.
struct Space {
    requests: Mutex<Option<Sender<Request>>>,
    /// Stub thread of each context (by context id).
    threads: Mutex<HashMap<u64, StubThread>>,
    /// Stopped stub threads whose context ended, by their tracer (the host
    /// thread that seized them, the only one that can run them).
    idle: Mutex<HashMap<i32, Vec<i32>>>,
}

thread_local! {
    /// The address spaces where this host thread left idle stub threads.
    static PARKED: ParkedIn = const { ParkedIn(RefCell::new(Vec::new())) };
}

/// Kills a host thread's idle stub threads when it exits, so that the
/// spaces forget them (PTRACE_O_EXITKILL would kill them, but thread ids
/// are reused).
struct ParkedIn(RefCell<Vec<Weak<Space>>>);

impl Drop for ParkedIn {
    fn drop(&mut self) {
        let me = sys::gettid();
        for space in self.0.get_mut().drain(..).filter_map(|w| w.upgrade()) {
            let tids = space
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&me);
            for tid in tids.into_iter().flatten() {
                sys::kill_and_reap(tid);
            }
        }
    }
}

impl Space {
    /// Start the request thread, which makes the stub with `make` (so
    /// it is the stub's tracer) and serves requests for it.
    fn start(
        make: impl FnOnce() -> Result<stub::Stub, PlatformError> + Send + 'static,
    ) -> Result<Arc<Space>, PlatformError> {
        let (tx, rx) = channel::<Request>();
        let (ready_tx, ready_rx) = channel();
        std::thread::Builder::new()
            .name("ptrace-stub".into())
            .spawn(move || {
                let mut stub = match make() {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // Serve until the address space is dropped; dropping the
                // stub then kills it.
                for req in rx {
                    match req {
                        Request::Syscall { nr, args, reply } => {
                            drop(reply.send(stub.syscall(nr, args)))
                        }
                        Request::NewThread { reply } => drop(reply.send(stub.new_thread())),
                        Request::Fork { reply } => drop(reply.send(stub.fork_process())),
                    }
                }
            })
            .map_err(|e| PlatformError::Host {
                op: "spawn stub thread",
                errno: Errno::from_io(&e),
            })?;
        ready_rx
            .recv()
            .map_err(|_| PlatformError::StubDied("request thread ended".into()))??;
        Ok(Arc::new(Space {
            requests: Mutex::new(Some(tx)),
            threads: Mutex::new(HashMap::new()),
            idle: Mutex::new(HashMap::new()),
        }))
    }

    fn ask<T>(
        &self,
        make: impl FnOnce(Sender<Result<T, PlatformError>>) -> Request,
    ) -> Result<T, PlatformError> {
        let (reply, answer) = channel();
        let sent = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|tx| tx.send(make(reply)).is_ok());
        if sent != Some(true) {
            return Err(PlatformError::StubDied("the address space is gone".into()));
        }
        answer
            .recv()
            .map_err(|_| PlatformError::StubDied("request thread ended".into()))?
    }

    fn syscall(&self, nr: libc::c_long, args: [u64; 6]) -> Result<u64, PlatformError> {
        self.ask(|reply| Request::Syscall { nr, args, reply })
    }

    /// The stub thread of context `id`: on first use, one the calling
    /// thread left idle, or a new one it seizes.
    fn thread_for(&self, id: u64) -> Result<StubThread, PlatformError> {
        if let Some(t) = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(*t);
        }
        let me = sys::gettid();
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&me)
            .and_then(Vec::pop);
        if let Some(tid) = idle {
            let thread = StubThread { tid, tracer: me };
            self.threads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, thread);
            return Ok(thread);
        }
        let tid = self.ask(|reply| Request::NewThread { reply })?;
        let host = |op| move |errno| PlatformError::Host { op, errno };
        let options = libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL;
        if let Err(e) = sys::ptrace_seize(tid, options as u64) {
            sys::kill(tid);
            return Err(host("PTRACE_SEIZE")(e));
        }
        sys::ptrace_interrupt(tid).map_err(host("PTRACE_INTERRUPT"))?;
        match sys::wait(tid).map_err(host("wait for stub thread"))? {
            WaitStatus::Stopped(INTERRUPT_STOP) => {}
            other => {
                return Err(PlatformError::StubDied(format!(
                    "new stub thread: {other:?}"
                )))
            }
        }
        let thread = StubThread {
            tid,
            tracer: sys::gettid(),
        };
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, thread);
        Ok(thread)
    }

    /// Context `id` has ended: keep its stub thread for the next context
    /// of the calling host thread if that is its tracer and it is stopped
    /// (only then do its registers read), else kill it.
    fn release_thread(self: &Arc<Space>, id: u64) {
        let Some(t) = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
        else {
            return;
        };
        let me = sys::gettid();
        if t.tracer != me {
            sys::kill(t.tid);
            return;
        }
        let stopped = sys::ptrace_getregs(t.tid, &mut Default::default()).is_ok();
        let noted = stopped
            && PARKED
                .try_with(|p| {
                    let mut p = p.0.borrow_mut();
                    if !p.iter().any(|w| w.as_ptr() == Arc::as_ptr(self)) {
                        p.retain(|w| w.strong_count() > 0);
                        p.push(Arc::downgrade(self));
                    }
                })
                .is_ok();
        if noted {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(me)
                .or_default()
                .push(t.tid);
        } else {
            sys::kill_and_reap(t.tid);
        }
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        for (_, t) in self
            .threads
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            sys::kill(t.tid);
        }
        // Nobody waits for an idle thread, so any Sentry thread can reap it
        // (wait covers the tracees of every thread in the caller's group).
        for (_, tids) in self
            .idle
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            tids.into_iter().for_each(sys::kill_and_reap);
        }
    }
}

struct PtraceAddressSpace {
    shared: Arc<Space>,
}

impl AddressSpace for PtraceAddressSpace {
    fn map_file(
        &self,
        addr: u64,
        len: u64,
        file: BorrowedFd<'_>,
        offset: u64,
        access: AccessType,
        precommit: bool,
    ) -> Result<(), PlatformError> {
        let mut flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        if precommit {
            flags |= libc::MAP_POPULATE as u64;
        }
        let args = [
            addr,
            len,
            u64::from(access.to_prot()),
            flags,
            file.as_raw_fd() as u64,
            offset,
        ];
        let ret = self.shared.syscall(libc::SYS_mmap, args)?;
        if ret != addr {
            return Err(stub::errno_of("mmap in stub", ret));
        }
        Ok(())
    }

    fn unmap(&self, addr: u64, len: u64) -> Result<(), PlatformError> {
        let ret = self
            .shared
            .syscall(libc::SYS_munmap, [addr, len, 0, 0, 0, 0])?;
        if ret != 0 {
            return Err(stub::errno_of("munmap in stub", ret));
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Drop for PtraceAddressSpace {
    fn drop(&mut self) {
        // Ends the request thread, which kills the stub.
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

struct PtraceContext {
    id: u64,
    interrupter: Arc<StubInterrupter>,
    /// The FP state in `ArchState` differs from the stub thread's.
    fp_dirty: bool,
    /// The stub thread this context last ran on; another needs the full state.
    last_tid: i32,
    /// Address spaces this context has a stub thread in.
    spaces: Vec<Weak<Space>>,
}

impl PtraceContext {
    fn thread(&mut self, space: &dyn AddressSpace) -> Result<StubThread, PlatformError> {
        let space = space
            .as_any()
            .downcast_ref::<PtraceAddressSpace>()
            .expect("a ptrace context runs only in ptrace address spaces");
        let known = self
            .spaces
            .iter()
            .any(|w| w.as_ptr() == Arc::as_ptr(&space.shared));
        let thread = space.shared.thread_for(self.id)?;
        if !known {
            self.spaces.retain(|w| w.strong_count() > 0);
            self.spaces.push(Arc::downgrade(&space.shared));
        }
        if thread.tracer != sys::gettid() {
            return Err(PlatformError::WrongThread("a ptrace context"));
        }
        Ok(thread)
    }
}

impl Context for PtraceContext {
    fn switch(
        &mut self,
        space: &dyn AddressSpace,
        state: &mut ArchState,
    ) -> Result<SwitchEvent, PlatformError> {
        let tid = self.thread(space)?.tid;
        if self.interrupter.pending.swap(false, Ordering::SeqCst) {
            return Ok(SwitchEvent::Interrupt);
        }
        if self.last_tid != tid {
            self.fp_dirty = true;
            self.last_tid = tid;
        }
        sys::ptrace_setregs(tid, &state.regs).map_err(|e| host("PTRACE_SETREGS", e))?;
        if self.fp_dirty {
            sys::ptrace_setxstate(tid, state.fp.as_bytes())
                .map_err(|e| host("PTRACE_SETREGSET", e))?;
            self.fp_dirty = false;
        }
        self.interrupter.running.store(tid, Ordering::SeqCst);
        let status = sys::ptrace_sysemu(tid).and_then(|()| sys::wait(tid));
        self.interrupter.running.store(0, Ordering::SeqCst);
        let status = status.map_err(|e| host("PTRACE_SYSEMU", e))?;
        match status {
            WaitStatus::Stopped(SYSCALL_STOP) => {
                sys::ptrace_getregs(tid, &mut state.regs).map_err(|e| host("PTRACE_GETREGS", e))?;
                Ok(SwitchEvent::Syscall)
            }
            WaitStatus::Stopped(stop) => {
                sys::ptrace_getregs(tid, &mut state.regs).map_err(|e| host("PTRACE_GETREGS", e))?;
                if stop >> 8 != 0 {
                    // A ptrace event stop (a group stop of a seized tracee):
                    // nothing the application did.
                    return Ok(SwitchEvent::Interrupt);
                }
                let (signo, code, addr) =
                    sys::ptrace_getsiginfo(tid).map_err(|e| host("PTRACE_GETSIGINFO", e))?;
                // Signals the kernel raised for what the instruction did have
                // a positive si_code; anything a process sent (our own
                // interrupt, or a stray kill from the host) does not, and
                // only means "come back to the Sentry".
                if code <= 0 {
                    self.interrupter.pending.store(false, Ordering::SeqCst);
                    return Ok(SwitchEvent::Interrupt);
                }
                sys::ptrace_getxstate(tid, state.fp.as_bytes_mut())
                    .map_err(|e| host("PTRACE_GETREGSET", e))?;
                Ok(SwitchEvent::Signal {
                    info: SignalInfo { signo, code, addr },
                    access: None,
                })
            }
            WaitStatus::Exited(code) => Err(PlatformError::StubDied(format!("exit status {code}"))),
            WaitStatus::Signaled(sig) => {
                Err(PlatformError::StubDied(format!("killed by signal {sig}")))
            }
        }
    }

    fn pull_full_state(
        &mut self,
        space: &dyn AddressSpace,
        state: &mut ArchState,
    ) -> Result<(), PlatformError> {
        let tid = self.thread(space)?.tid;
        // `state.fp` is newer than the thread's registers while the Sentry
        // has changed it (rt_sigreturn, exec) and no switch has applied it
        // yet, or while the context has not run on this thread: reading
        // the thread would bring back what a signal handler left there.
        if self.fp_dirty || self.last_tid != tid {
            return Ok(());
        }
        sys::ptrace_getxstate(tid, state.fp.as_bytes_mut())
            .map_err(|e| host("PTRACE_GETREGSET", e))?;
        Ok(())
    }

    fn full_state_changed(&mut self) {
        self.fp_dirty = true;
    }

    fn interrupter(&self) -> Arc<dyn Interrupter> {
        self.interrupter.clone()
    }
}

impl Drop for PtraceContext {
    fn drop(&mut self) {
        for space in self.spaces.drain(..).filter_map(|w| w.upgrade()) {
            space.release_thread(self.id);
        }
    }
}

fn host(op: &'static str, errno: Errno) -> PlatformError {
    if errno == Errno::ESRCH || errno == Errno::ECHILD {
        PlatformError::StubDied(format!("{op}: {errno}"))
    } else {
        PlatformError::Host { op, errno }
    }
}
