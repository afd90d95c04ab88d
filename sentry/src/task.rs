//! The kernel object and the task run loop.

use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use abi::Errno;
use platform::{AddressSpace, ArchState, Context, Platform, SwitchEvent};

use crate::fs::{self, FdTable, FsContext, FsSnapshot, SharedFs};
use crate::loader::{self, StackInfo};
use crate::memfile::MemoryFile;
use crate::mm::MemoryManager;
use crate::process::{TaskHandle, ThreadGroup};
use crate::signal::{AltStack, Handlers};
use crate::syscalls;

/// Which syscalls `--strace` logs.
#[derive(Clone, Debug, Default)]
pub struct Strace {
    pub enabled: bool,
    /// Only these syscall names (`--strace-syscalls`); empty means all.
    pub only: Vec<String>,
    /// How many bytes of a buffer argument to show (`--strace-log-size`).
    pub log_size: usize,
}

impl Strace {
    /// Whether a call to the syscall `name` gives (None: an unimplemented
    /// number) is logged. Asked on every syscall, so `name` is called only
    /// when the answer depends on it.
    pub(crate) fn traces<'a>(&self, name: impl FnOnce() -> Option<&'a str>) -> bool {
        self.enabled
            && (self.only.is_empty() || name().is_some_and(|n| self.only.iter().any(|o| o == n)))
    }
}

/// What the runtime hands the kernel.
pub struct KernelConfig {
    pub platform: Arc<dyn Platform>,
    pub strace: Strace,
    /// The container's root filesystem (the read-only lower layer of the
    /// root overlay): `vfs::hostfs` over a donated root FD (directfs) or
    /// `vfs::goferfs` over the gofer connection.
    pub root: Arc<dyn vfs::Inode>,
    /// The spec's bind mounts, each served by the gofer like the root.
    pub binds: Vec<fs::BindMount>,
    pub hostname: String,
    /// `--network=host`: inet sockets are host sockets (`crate::hostinet`).
    pub host_network: bool,
}

/// The kernel: state shared by every task.
pub struct Kernel {
    pub(crate) platform: Arc<dyn Platform>,
    pub(crate) mf: Arc<MemoryFile>,
    /// CLOCK_REALTIME and CLOCK_MONOTONIC, and the vDSO page that shows them.
    pub(crate) clock: Arc<crate::clock::Clock>,
    /// The sandbox's initial mount namespace.
    pub(crate) mounts: Arc<vfs::Mounts>,
    /// Where memfd_create makes its files (a tmpfs mounted nowhere).
    pub(crate) memfds: vfs::Location,
    /// What mount(2) makes new filesystems with.
    pub(crate) filesystems: fs::Filesystems,
    /// The O_ASYNC files and the thread that signals their owners.
    pub(crate) async_io: Arc<crate::fasync::AsyncIo>,
    /// The initial UTS and IPC namespaces, and the namespaces of the
    /// kinds nothing can make another of.
    pub(crate) uts: Arc<crate::namespace::UtsNamespace>,
    pub(crate) ipc: Arc<crate::namespace::IpcNamespace>,
    pub(crate) fixed_ns: crate::namespace::FixedNamespaces,
    /// The sandbox's own TCP/IP stack (loopback only) when inet sockets
    /// are not host sockets; its timers run on `_netstack_timers`.
    pub(crate) netstack: Option<Arc<netstack::Stack>>,
    _netstack_timers: Option<netstack::TimerThread>,
    pub(crate) futexes: crate::futex::FutexTable,
    /// Host files mapped privately, shared copy-on-write between mappings.
    pub(crate) file_cache: crate::filecache::FileCache,
    /// Names bound by unix sockets (the abstract namespace and socket
    /// nodes in the filesystem).
    pub(crate) unix: Arc<crate::socket::Registry>,
    pub(crate) strace: Strace,
    next_pid: AtomicI32,
    /// Live and zombie processes by PID, for the calls that name one.
    groups: Mutex<HashMap<i32, Weak<ThreadGroup>>>,
    /// Processes started from outside (`control.rs`), kept until reaped.
    pub(crate) started: Mutex<HashMap<i32, Arc<ThreadGroup>>>,
    /// Set while the runtime has paused the sandbox; `unpaused` wakes
    /// the tasks waiting on it.
    pub(crate) paused: std::sync::atomic::AtomicBool,
    pub(crate) pause_lock: Mutex<()>,
    pub(crate) unpaused: std::sync::Condvar,
}

impl Kernel {
    pub(crate) fn register_group(&self, tg: &Arc<ThreadGroup>) {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.retain(|_, g| g.strong_count() > 0);
        groups.insert(tg.tgid, Arc::downgrade(tg));
    }

    pub(crate) fn unregister_group(&self, tgid: i32) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&tgid);
    }

    pub(crate) fn all_groups(&self) -> Vec<Arc<ThreadGroup>> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// The thread `tid` and its process.
    pub(crate) fn find_task(&self, tid: i32) -> Option<(Arc<ThreadGroup>, Arc<TaskHandle>)> {
        self.all_groups().into_iter().find_map(|g| {
            let t = g.lock().threads.iter().find(|t| t.tid == tid).cloned();
            t.map(|t| (g, t))
        })
    }

    pub(crate) fn find_group(&self, tgid: i32) -> Option<Arc<ThreadGroup>> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tgid)
            .and_then(Weak::upgrade)
    }

    /// Send `sig` to process `pid` of the sandbox from outside it (as the
    /// runtime forwards signals it receives); false if there is no such
    /// process.
    pub fn send_signal(&self, pid: i32, sig: i32) -> bool {
        const SI_USER: i32 = 0;
        let Some(group) = self.find_group(pid) else {
            return false;
        };
        let info = crate::signal::user_info(sig, SI_USER, 0, 0);
        group.post(crate::signal::Queued::new(sig, info))
    }

    /// A fresh thread id in the sandbox's PID namespace (the first is 1).
    pub(crate) fn alloc_pid(&self) -> i32 {
        self.next_pid.fetch_add(1, Ordering::Relaxed)
    }

    pub fn new(config: KernelConfig) -> Result<Arc<Kernel>, Errno> {
        let mf = Arc::new(MemoryFile::new()?);
        let clock = crate::clock::Clock::new(&mf)?;
        let (netstack, netstack_timers) = if config.host_network {
            (None, None)
        } else {
            let stack = netstack::Stack::with_loopback(Arc::new(netstack::MonotonicClock::new()));
            let timers = stack.spawn_timer_thread().map_err(|e| {
                Errno::new(e.raw_os_error().unwrap_or(libc::EAGAIN)).unwrap_or(Errno::EAGAIN)
            })?;
            (Some(stack), Some(timers))
        };
        let mut built = Ok(());
        let kernel = Arc::new_cyclic(|me| {
            let filesystems = fs::Filesystems::new(me.clone());
            let (mounts, memfds) = fs::build_tree(config.root, config.binds, &filesystems)
                .unwrap_or_else(|e| {
                    built = Err(e);
                    let m = Arc::new(vfs::Mounts::new(
                        vfs::tmpfs::new(vfs::tmpfs::TmpfsOptions::default()),
                        "tmpfs",
                        "none",
                        0,
                    ));
                    let root = m.root();
                    (m, root)
                });
            let file_cache_mf = mf.clone();
            Kernel {
                platform: config.platform,
                mf,
                clock,
                mounts,
                memfds,
                filesystems,
                async_io: Arc::new(crate::fasync::AsyncIo::new(me.clone())),
                uts: crate::namespace::UtsNamespace::new(&config.hostname),
                ipc: crate::namespace::IpcNamespace::new(),
                fixed_ns: crate::namespace::FixedNamespaces::new(),
                netstack,
                _netstack_timers: netstack_timers,
                futexes: Default::default(),
                file_cache: crate::filecache::FileCache::new(file_cache_mf),
                unix: Arc::default(),
                strace: config.strace,
                next_pid: AtomicI32::new(1),
                groups: Mutex::new(HashMap::new()),
                started: Mutex::new(HashMap::new()),
                paused: std::sync::atomic::AtomicBool::new(false),
                pause_lock: Mutex::new(()),
                unpaused: std::sync::Condvar::new(),
            }
        });
        built.map(|()| kernel)
    }
}

/// The first process of a container.
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub envv: Vec<String>,
    /// Absolute working directory inside the container.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// Host descriptors that become the process's fds 0, 1 and 2.
    pub stdio: Vec<OwnedFd>,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The shell's view: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c & 0xff,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// Why the first process could not start, worded as upstream runsc words it.
#[derive(Debug)]
pub enum StartError {
    /// A bare program name found in no `PATH` directory.
    NotInPath { name: String, path: Vec<String> },
    /// The program exists (or not) but cannot be executed.
    Load {
        path: String,
        errno: Errno,
        why: &'static str,
    },
    /// The platform or memory could not be set up.
    Setup(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NotInPath { name, path } => {
                write!(
                    f,
                    "error finding executable {name:?} in PATH [{}]: {}",
                    path.join(" "),
                    Errno::ENOENT
                )
            }
            StartError::Load { path, errno, .. } => {
                write!(f, "creating process: failed to load {path}: {errno}")
            }
            StartError::Setup(what) => write!(f, "creating process: {what}"),
        }
    }
}

impl std::error::Error for StartError {}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One thread of application code, run by one host thread.
pub struct Task {
    pub(crate) kernel: Arc<Kernel>,
    pub(crate) tid: i32,
    pub(crate) tg: Arc<ThreadGroup>,
    pub(crate) handle: Arc<TaskHandle>,
    /// Shared by the threads of a process (CLONE_VM).
    pub(crate) mm: Arc<Mutex<MemoryManager>>,
    /// The address space `mm` maps into, held apart so running application
    /// code does not hold the memory manager's lock.
    pub(crate) space: Arc<dyn AddressSpace>,
    pub(crate) ctx: Box<dyn Context>,
    pub(crate) state: ArchState,
    /// Shared with CLONE_FILES.
    pub(crate) fds: Arc<Mutex<FdTable>>,
    /// Root, working directory and umask, shared with CLONE_FS.
    pub(crate) fs: Arc<Mutex<SharedFs>>,
    /// The UTS and IPC namespaces (the mount namespace is in `fs`).
    pub(crate) uts: Arc<crate::namespace::UtsNamespace>,
    pub(crate) ipc: Arc<crate::namespace::IpcNamespace>,
    pub(crate) creds: Credentials,
    /// prctl(PR_SET_NAME), at most 15 bytes.
    pub(crate) comm: Vec<u8>,
    /// The path of the running program, for `/proc/[pid]/exe`.
    pub(crate) exe: String,
    pub(crate) clear_child_tid: u64,
    /// Set when this thread has exited (exit) or its group is exiting.
    pub(crate) exit: Option<ExitStatus>,
    /// A vfork parent waiting for this child to exec or exit.
    pub(crate) vfork_done: Option<std::sync::mpsc::Sender<()>>,
    /// sigaltstack.
    pub(crate) alt_stack: AltStack,
    /// The page of a fault that looked real but is being retried once (see
    /// the run loop).
    pub(crate) retried_fault: Option<u64>,
    /// A set*uid moved the real uid to one already over RLIMIT_NPROC:
    /// the next execve fails unless the count fell back under it
    /// (Linux's PF_NPROC_EXCEEDED).
    pub(crate) nproc_exceeded: bool,
    /// The mask to restore after rt_sigsuspend once a signal is taken.
    pub(crate) saved_mask: Option<u64>,
    /// What `restart_syscall` resumes (Linux's restart_block): a relative
    /// sleep a stop interrupted, as its deadline (None: never) and where
    /// to write the time left.
    pub(crate) restart_sleep: Option<(Option<std::time::Instant>, u64)>,
}

impl Task {
    /// Load `spec`'s program into a fresh address space as the sandbox's
    /// first process (PID 1), ready to run on the calling host thread.
    pub fn start(kernel: Arc<Kernel>, spec: ProcessSpec) -> Result<Task, StartError> {
        let program = spec.argv.first().ok_or(StartError::Load {
            path: String::new(),
            errno: Errno::ENOENT,
            why: "no program given",
        })?;
        let top = kernel.mounts.root();
        let creds = Credentials::new(spec.uid, spec.gid);
        let vcreds = creds.vfs();
        let ctx = vfs::walk::Context {
            mounts: &kernel.mounts,
            root: &top,
            creds: &vcreds,
        };
        let cwd = ctx
            .lookup(&top, &spec.cwd, true)
            .and_then(|c| {
                if c.dentry.is_dir() {
                    Ok(c)
                } else {
                    Err(Errno::ENOTDIR)
                }
            })
            .map_err(|errno| StartError::Load {
                path: spec.cwd.clone(),
                errno,
                why: "the working directory",
            })?;
        let fsc = FsContext {
            mounts: kernel.mounts.clone(),
            root: top.clone(),
            cwd,
            umask: 0o022,
        };
        let path = resolve_program(&ctx, &fsc.cwd, program, &spec.envv)?;
        let exe = exe_path_of(&fsc, &path);
        let ctx = kernel
            .platform
            .new_context()
            .map_err(|e| StartError::Setup(e.to_string()))?;
        let (mm, state) = load_image(
            &kernel,
            &fsc,
            &path,
            spec.argv.clone(),
            &spec.envv,
            (spec.uid, spec.gid),
            crate::mm::MemoryLimits::of(&crate::limits::Limits::default()),
        )
        .map_err(|(errno, why)| StartError::Load {
            path: path.clone(),
            errno,
            why,
        })?;
        let mut fds = FdTable::default();
        for (i, host) in spec.stdio.into_iter().enumerate() {
            let flags = crate::host::status_flags(host.as_fd()).unwrap_or(libc::O_RDWR);
            fds.set(i, fs::host_file(host, flags, &format!("host:[{i}]")), false);
        }
        let tid = kernel.alloc_pid();
        let tg = ThreadGroup::new(tid, Weak::new(), tid, tid, 0, Handlers::default());
        kernel.register_group(&tg);
        let handle = TaskHandle::new(tid, ctx.interrupter(), 0);
        tg.lock().threads.push(handle.clone());
        let space = mm.space();
        let (uts, ipc) = (kernel.uts.clone(), kernel.ipc.clone());
        let task = Task {
            kernel,
            tid,
            tg,
            handle,
            mm: Arc::new(Mutex::new(mm)),
            space,
            ctx,
            state,
            fds: Arc::new(Mutex::new(fds)),
            fs: Arc::new(Mutex::new(SharedFs::new(fsc))),
            uts,
            ipc,
            creds,
            comm: comm_of(&path),
            exe,
            clear_child_tid: 0,
            exit: None,
            vfork_done: None,
            alt_stack: AltStack::default(),
            retried_fault: None,
            nproc_exceeded: false,
            saved_mask: None,
            restart_sleep: None,
        };
        // Its group is registered already: show it to ps and procfs before
        // its thread first runs, as clone does for a child.
        task.publish();
        Ok(task)
    }

    /// Run the first process: this thread until it exits, then wait for the
    /// whole process to end. Returns its status.
    pub fn run(self) -> ExitStatus {
        let tg = self.tg.clone();
        self.run_thread();
        tg.wait_exit()
    }

    /// The command name, as ps and strace show it.
    pub(crate) fn comm_str(&self) -> String {
        String::from_utf8_lossy(&self.comm).into_owned()
    }

    pub(crate) fn mm(&self) -> MutexGuard<'_, MemoryManager> {
        self.mm.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn fds(&self) -> MutexGuard<'_, FdTable> {
        self.fds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publish what procfs shows of this task (call after changing it).
    pub(crate) fn publish(&self) {
        let view = crate::process::TaskView {
            comm: self.comm.clone(),
            exe: self.exe.clone(),
            mm: self.mm.clone(),
            fds: self.fds.clone(),
            fs: self.fs.clone(),
            uts: self.uts.clone(),
            ipc: self.ipc.clone(),
            creds: self.creds.clone(),
        };
        *self.handle.view.lock().unwrap_or_else(|e| e.into_inner()) = Some(view);
    }

    pub(crate) fn fs(&self) -> MutexGuard<'_, SharedFs> {
        self.fs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mounts, root and working directory for a path walk
    /// ([`SharedFs::snapshot`]).
    pub(crate) fn fs_snapshot(&self) -> Arc<FsSnapshot> {
        self.fs().snapshot()
    }

    /// The credentials the VFS checks: the effective ids (Linux's fsuid
    /// follows euid unless setfsuid changes it), all capabilities for
    /// root and none otherwise.
    pub(crate) fn vfs_creds(&self) -> vfs::Creds {
        self.creds.vfs()
    }

    /// Run this thread's application code until the thread exits.
    pub(crate) fn run_thread(mut self) {
        crate::procfs::set_current(self.tg.tgid, self.tid);
        self.handle.cpu.bind_to_this_thread();
        // Where the platform reads the time-stamp counter around a switch
        // anyway, user time comes from its readings.
        let platform_stamps = self.ctx.reports_app_tsc() && crate::cputime::ticks_are_tsc();
        let status = loop {
            self.kernel.wait_while_paused(|| self.handle.is_killed());
            if self.handle.is_killed() {
                break self
                    .tg
                    .lock()
                    .exit_status
                    .unwrap_or(ExitStatus::Signaled(libc::SIGKILL));
            }
            if platform_stamps {
                self.handle.cpu.enter_app_unstamped();
            } else {
                self.handle.cpu.enter_app();
            }
            let event = self.ctx.switch(self.space.as_ref(), &mut self.state);
            if platform_stamps {
                self.handle.cpu.leave_app_at(self.ctx.app_tsc());
            } else {
                self.handle.cpu.leave_app();
            }
            match event {
                Ok(SwitchEvent::Syscall) => {
                    crate::patch::maybe_patch(&mut self);
                    syscalls::dispatch(&mut self);
                    if self.exit.is_none() {
                        self.deliver_signals(true);
                    }
                }
                Ok(SwitchEvent::Signal { info, .. })
                    if crate::patch::resumed_in_entry(&mut self, &info) =>
                {
                    self.deliver_signals(false)
                }
                Ok(SwitchEvent::Signal { info, .. })
                    if crate::patch::syscall_at_site(&mut self, &info) =>
                {
                    syscalls::dispatch(&mut self);
                    if self.exit.is_none() {
                        self.deliver_signals(true);
                    }
                }
                Ok(SwitchEvent::Signal { mut info, access }) => {
                    // Page faults are the memory manager's first: most are
                    // memory it maps on demand or copies on write.
                    let page_fault = info.signo == libc::SIGSEGV
                        && matches!(info.code, crate::mm::SEGV_MAPERR | crate::mm::SEGV_ACCERR);
                    let page = abi::page_down(info.addr);
                    match page_fault.then(|| self.mm().fault(info.addr, access)) {
                        Some(Ok(())) => {
                            self.retried_fault = None;
                            self.deliver_signals(false)
                        }
                        // Without the access type (ptrace), a fault on a
                        // page another thread has just mapped looks like a
                        // real one: retry once before believing it.
                        Some(Err(_)) if access.is_none() && self.retried_fault != Some(page) => {
                            self.retried_fault = Some(page);
                        }
                        Some(Err((signo, code))) => {
                            self.retried_fault = None;
                            info.signo = signo;
                            info.code = code;
                            self.fault(info)
                        }
                        None => self.fault(info),
                    }
                }
                Ok(SwitchEvent::Interrupt) => self.deliver_signals(false),
                Err(e) => {
                    tracing::error!("platform failure running task {}: {e}", self.tid);
                    self.exit_group(ExitStatus::Signaled(libc::SIGKILL));
                }
            }
            if let Some(status) = self.exit {
                break status;
            }
        };
        self.finish(status);
    }

    /// Ask every thread of the group to exit with `status`.
    pub(crate) fn exit_group(&mut self, status: ExitStatus) {
        self.tg.lock().exit_status.get_or_insert(status);
        self.tg.kill_others(self.tid);
        self.exit = Some(status);
    }

    /// The thread is gone: stop its CPU clock, release its robust and PI
    /// futexes, clear its child-tid word (waking a joiner), tell its group,
    /// release a vfork parent.
    fn finish(mut self, status: ExitStatus) {
        self.handle.cpu.finish();
        crate::futex::exit_futexes(&self);
        if self.clear_child_tid != 0 {
            let addr = self.clear_child_tid;
            let key = {
                let mut mm = self.mm();
                mm.copy_out(addr, &0u32.to_le_bytes())
                    .and_then(|()| mm.futex_key(addr))
            };
            if let Ok(key) = key {
                let _ = self.kernel.futexes.wake(key, 1, u32::MAX);
            }
        }
        self.vfork_done.take();
        let (tg, tid, kernel) = (self.tg.clone(), self.tid, self.kernel.clone());
        // Release the address space (and its stub thread) before the group
        // is reported gone.
        drop(self);
        tg.thread_exited(tid, status, &kernel);
    }

    /// Start `child` on a host thread of its own (one whose task ended,
    /// if one waits).
    pub(crate) fn spawn(child: Task) -> Result<(), Errno> {
        let name = format!("task-{}", child.tid);
        crate::workers::spawn(name, Box::new(move || child.run_thread()))
            .map_err(|e| Errno::from_io(&e))
    }
}

/// A task's user and group identities (credentials(7)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub ruid: u32,
    pub euid: u32,
    pub suid: u32,
    pub rgid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub groups: Vec<u32>,
    /// Capability sets (capabilities(7)), one bit per capability.
    pub caps: crate::syscalls::caps::CapSets,
}

impl Credentials {
    pub fn vfs(&self) -> vfs::Creds {
        vfs::Creds {
            uid: self.euid,
            gid: self.egid,
            groups: self.groups.clone(),
            caps: self.caps.effective,
        }
    }

    /// A process started as `uid`: root holds every capability, anyone
    /// else none (no file capabilities or user namespaces yet).
    pub fn new(uid: u32, gid: u32) -> Credentials {
        Credentials {
            ruid: uid,
            euid: uid,
            suid: uid,
            rgid: gid,
            egid: gid,
            sgid: gid,
            groups: Vec::new(),
            caps: crate::syscalls::caps::CapSets::for_uid(uid),
        }
    }

    /// Whether capability `cap` (`crate::syscalls::caps::CAP_*`) is in
    /// the effective set.
    pub fn has_cap(&self, cap: u32) -> bool {
        self.caps.effective & (1 << cap) != 0
    }
}

/// The name a new image gets in `comm`: the file name, at most 15 bytes.
fn comm_of(path: &str) -> Vec<u8> {
    path.rsplit('/')
        .next()
        .unwrap_or(path)
        .bytes()
        .take(15)
        .collect()
}

/// A fresh address space with the program at `path` loaded and its stack
/// laid out, and the registers to start it with.
fn load_image(
    kernel: &Kernel,
    fsc: &FsContext,
    path: &str,
    argv: Vec<String>,
    envv: &[String],
    (uid, gid): (u32, u32),
    limits: crate::mm::MemoryLimits,
) -> Result<(MemoryManager, ArchState), (Errno, &'static str)> {
    let space = kernel.platform.new_address_space().map_err(|e| {
        tracing::error!("creating an address space: {e}");
        (Errno::ENOMEM, "creating an address space")
    })?;
    let mut mm = MemoryManager::new(
        space,
        kernel.mf.clone(),
        kernel.platform.min_user_address(),
        kernel.platform.max_user_address(),
    );
    mm.limits = limits;
    let creds = vfs::Creds {
        uid,
        gid,
        groups: Vec::new(),
        caps: if uid == 0 { u64::MAX } else { 0 },
    };
    let opener = loader::VfsOpener {
        ctx: vfs::walk::Context {
            mounts: &fsc.mounts,
            root: &fsc.root,
            creds: &creds,
        },
        cwd: &fsc.cwd,
        cache: &kernel.file_cache,
    };
    let loaded = loader::load(&mut mm, &opener, path, argv, uid).map_err(|f| (f.errno, f.why))?;
    let vdso =
        loader::map_vdso(&mut mm, kernel.clock.params_page()).map_err(|f| (f.errno, f.why))?;
    let info = StackInfo {
        loaded: &loaded,
        vdso,
        execfn: path,
        uid,
        gid,
    };
    let sp =
        loader::build_stack(&mut mm, envv, &info).map_err(|e| (e, "building the initial stack"))?;
    let end = loaded.image.end;
    mm.set_brk_start(abi::page_up(end).unwrap_or(end));
    let mut state = kernel.platform.initial_state();
    state.regs.rip = loaded.start;
    state.regs.rsp = sp;
    Ok((mm, state))
}

impl Task {
    /// execve: replace the process image with the program at `path`
    /// (absolute). On failure the old image is untouched.
    pub(crate) fn exec(
        &mut self,
        path: &str,
        argv: Vec<String>,
        envv: &[String],
    ) -> Result<(), Errno> {
        let fsc = self.fs().clone();
        let (mm, state) = load_image(
            &self.kernel,
            &fsc,
            path,
            argv,
            envv,
            (self.creds.euid, self.creds.egid),
            crate::mm::MemoryLimits::of(&self.tg.limits.lock().unwrap_or_else(|e| e.into_inner())),
        )
        .map_err(|(e, why)| {
            tracing::debug!("execve {path:?}: {why}: {e:?}");
            e
        })?;
        let exe_path = exe_path_of(&fsc, path);
        // The point of no return: other threads die, the old address space
        // goes away (a vfork parent keeps its own), and the parent resumes.
        crate::futex::exit_robust_list(self);
        self.tg.kill_others(self.tid);
        self.space = mm.space();
        self.mm = Arc::new(Mutex::new(mm));
        self.state = state;
        self.ctx.full_state_changed();
        self.fds().close_on_exec();
        self.vfork_done.take();
        self.tg.handlers().reset_for_exec();
        self.tg.timers.clear_posix();
        self.alt_stack = AltStack::default();
        self.comm = comm_of(path);
        self.exe = exe_path;
        crate::syscalls::caps::after_exec(&mut self.creds);
        self.publish();
        self.clear_child_tid = 0;
        Ok(())
    }
}

/// The absolute path of the program `path` names (for `/proc/[pid]/exe`).
fn exe_path_of(fsc: &FsContext, path: &str) -> String {
    let creds = vfs::Creds::root();
    let ctx = vfs::walk::Context {
        mounts: &fsc.mounts,
        root: &fsc.root,
        creds: &creds,
    };
    match ctx.lookup(&fsc.cwd, path, true) {
        Ok(loc) => ctx.path_of(&loc),
        Err(_) => fs::join(&ctx.path_of(&fsc.cwd), path),
    }
}

/// Find the program as execvp would: a name with a slash is a path
/// (relative to `cwd`); a bare name is searched in `PATH` from `envv`.
fn resolve_program(
    ctx: &vfs::walk::Context<'_>,
    cwd: &vfs::Location,
    program: &str,
    envv: &[String],
) -> Result<String, StartError> {
    if program.contains('/') {
        return Ok(program.to_string());
    }
    let path_var = envv
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let dirs: Vec<String> = path_var
        .split(':')
        .map(|d| {
            if d.is_empty() {
                ".".to_string()
            } else {
                d.to_string()
            }
        })
        .collect();
    for dir in &dirs {
        let candidate = fs::join(dir, program);
        let found = ctx
            .lookup(cwd, &candidate, true)
            .and_then(|l| l.inode().stat());
        if let Ok(st) = found {
            if st.mode & libc::S_IFMT == libc::S_IFREG && st.mode & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(StartError::NotInPath {
        name: program.to_string(),
        path: dirs,
    })
}
