//! The kernel object and the task run loop.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use abi::Errno;
use platform::{ArchState, Context, Platform, SwitchEvent};

use crate::fs::{self, FdTable, File, Root};
use crate::loader::{self, StackInfo};
use crate::memfile::MemoryFile;
use crate::mm::MemoryManager;
use crate::syscalls;

/// What the runtime hands the kernel.
pub struct KernelConfig {
    pub platform: Arc<dyn Platform>,
    /// The container's root directory (the Sentry opens files only beneath it).
    pub root: OwnedFd,
    pub hostname: String,
}

/// The kernel: state shared by every task.
pub struct Kernel {
    pub(crate) platform: Arc<dyn Platform>,
    pub(crate) mf: Arc<MemoryFile>,
    pub(crate) root: Root,
    pub(crate) hostname: String,
}

impl Kernel {
    pub fn new(config: KernelConfig) -> Result<Arc<Kernel>, Errno> {
        Ok(Arc::new(Kernel {
            platform: config.platform,
            mf: Arc::new(MemoryFile::new()?),
            root: Root::new(config.root),
            hostname: config.hostname,
        }))
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

/// One thread of application code and the process state it owns.
pub struct Task {
    pub(crate) kernel: Arc<Kernel>,
    pub(crate) mm: MemoryManager,
    ctx: Box<dyn Context>,
    pub(crate) state: ArchState,
    pub(crate) fds: FdTable,
    pub(crate) cwd: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// prctl(PR_SET_NAME), at most 15 bytes.
    pub(crate) comm: Vec<u8>,
    pub(crate) clear_child_tid: u64,
    pub(crate) robust_list: u64,
    pub(crate) exit: Option<ExitStatus>,
}

impl Task {
    /// The thread id the application sees (the first task of its PID
    /// namespace).
    pub(crate) const TID: u64 = 1;

    /// Load `spec`'s program into a fresh address space, ready to run.
    pub fn start(kernel: Arc<Kernel>, spec: ProcessSpec) -> Result<Task, StartError> {
        let program = spec.argv.first().ok_or(StartError::Load {
            path: String::new(),
            errno: Errno::ENOENT,
            why: "no program given",
        })?;
        let path = resolve_program(&kernel.root, program, &spec.envv, &spec.cwd)?;
        let load_err = |errno, why| StartError::Load {
            path: path.clone(),
            errno,
            why,
        };
        let (fd, st) = kernel
            .root
            .open(&path, libc::O_RDONLY)
            .map_err(|e| load_err(e, "opening the program"))?;
        if st.mode & libc::S_IFMT != libc::S_IFREG || !may_execute(&st, spec.uid) {
            return Err(load_err(Errno::EACCES, "not an executable regular file"));
        }
        let setup = |e: &dyn fmt::Display| StartError::Setup(e.to_string());
        let space = kernel.platform.new_address_space().map_err(|e| setup(&e))?;
        let ctx = kernel.platform.new_context().map_err(|e| setup(&e))?;
        let mut mm = MemoryManager::new(
            space,
            kernel.mf.clone(),
            kernel.platform.min_user_address(),
            kernel.platform.max_user_address(),
        );
        let image =
            loader::load_elf(&mut mm, fd.as_fd(), &path).map_err(|f| load_err(f.errno, f.why))?;
        let info = StackInfo {
            image,
            execfn: &path,
            uid: spec.uid,
            gid: spec.gid,
        };
        let sp = loader::build_stack(&mut mm, &spec.argv, &spec.envv, &info)
            .map_err(|e| load_err(e, "building the initial stack"))?;
        mm.set_brk_start(abi::page_up(image.end).unwrap_or(image.end));

        let mut state = kernel.platform.initial_state();
        state.regs.rip = image.entry;
        state.regs.rsp = sp;
        let mut fds = FdTable::default();
        for (i, host) in spec.stdio.into_iter().enumerate() {
            let flags = crate::host::status_flags(host.as_fd()).unwrap_or(libc::O_RDWR);
            let mode = crate::host::fstat(host.as_fd())
                .map(|s| s.mode)
                .unwrap_or(0);
            fds.set(
                i,
                Arc::new(File::new(host, flags, format!("host:[{i}]"), mode)),
                false,
            );
        }
        let comm = program
            .rsplit('/')
            .next()
            .unwrap_or(program)
            .as_bytes()
            .iter()
            .take(15)
            .copied()
            .collect();
        Ok(Task {
            kernel,
            mm,
            ctx,
            state,
            fds,
            cwd: spec.cwd,
            uid: spec.uid,
            gid: spec.gid,
            comm,
            clear_child_tid: 0,
            robust_list: 0,
            exit: None,
        })
    }

    /// Run the task until it exits.
    pub fn run(mut self) -> ExitStatus {
        loop {
            let event = self.ctx.switch(self.mm.space_mut(), &mut self.state);
            match event {
                Ok(SwitchEvent::Syscall) => {
                    syscalls::dispatch(&mut self);
                    if let Some(status) = self.exit {
                        return status;
                    }
                }
                Ok(SwitchEvent::Signal { info, .. }) => {
                    // No signal handlers yet (issue "Sentry core"): a fault
                    // takes its default action, which for every
                    // synchronous fault signal is to kill the process.
                    tracing::info!(
                        "task killed by signal {} (code {}, addr {:#x}) at rip {:#x}",
                        info.signo,
                        info.code,
                        info.addr,
                        self.state.regs.rip
                    );
                    tracing::debug!("mappings at the fault:\n{}", self.mm.describe());
                    return ExitStatus::Signaled(info.signo);
                }
                Ok(SwitchEvent::Interrupt) => {}
                Err(e) => {
                    tracing::error!("platform failure running the task: {e}");
                    return ExitStatus::Signaled(libc::SIGKILL);
                }
            }
        }
    }
}

/// Find the program as execvp would: a name with a slash is a path
/// (relative to `cwd`); a bare name is searched in `PATH` from `envv`.
fn resolve_program(
    root: &Root,
    program: &str,
    envv: &[String],
    cwd: &str,
) -> Result<String, StartError> {
    if program.contains('/') {
        return Ok(fs::join(cwd, program));
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
        let candidate = fs::join(&fs::join(cwd, dir), program);
        if let Ok((_, st)) = root.open(&candidate, libc::O_PATH) {
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

/// execve's permission check: some execute bit for root, the matching class
/// otherwise.
fn may_execute(st: &abi::Stat, uid: u32) -> bool {
    let bits = if uid == 0 {
        0o111
    } else if st.uid == uid {
        0o100
    } else {
        0o011
    };
    st.mode & bits != 0
}
