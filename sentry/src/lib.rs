//! The Sentry: an application kernel that runs Linux programs on a
//! [`platform::Platform`] and answers their syscalls itself.
//!
//! It runs static and dynamic programs, their threads and child processes
//! from the container root to their exit: ELF loading, memory from the
//! memory file, signals, futexes, timers, and files through the `vfs`
//! crate (an overlay of the container root with a memory upper layer,
//! `/dev`, procfs, sysfs). Unimplemented syscalls return ENOSYS and are
//! logged once.
//!
//! Entry point: [`Kernel::new`], then [`Task::start`] and [`Task::run`] on
//! the host thread that will run the task (ptrace binds a stub to the thread
//! that created it); or, for a runtime that controls the sandbox from
//! outside, [`Kernel::start_process`], [`Kernel::wait_process`],
//! [`Kernel::signal_all`], [`Kernel::processes`], [`Kernel::usage`] and
//! [`Kernel::pause`]/[`Kernel::resume`] (`control.rs`).

mod clock;
mod control;
mod cputime;
mod deliver;
mod fasync;
mod filecache;
mod fs;
mod futex;
mod host;
mod hostinet;
mod ifioctl;
mod inet_socket;
mod limits;
mod loader;
mod memfile;
mod mm;
mod namespace;
mod netlink;
mod netstack_socket;
mod patch;
mod pipe;
mod process;
pub(crate) mod procfs;
mod procnet;
mod safe_atomic;
mod signal;
mod socket;
mod strace;
mod syscalls;
mod task;
mod timer;
mod tty;
mod workers;

pub use control::{ProcessInfo, Usage};
pub use fs::BindMount;
pub use syscalls::{syscall_table, syscalls_markdown, Entry, Support};
pub use task::{ExitStatus, Kernel, KernelConfig, ProcessSpec, StartError, Strace, Task};
