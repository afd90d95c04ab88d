//! The Sentry: an application kernel that runs Linux programs on a
//! [`platform::Platform`] and answers their syscalls itself.
//!
//! This slice runs one single-threaded static (or static-PIE) program from
//! the container root to its exit: ELF loading, the initial stack, memory
//! from the memory file, files beneath the container root, and the
//! syscalls such programs need. Unimplemented syscalls return ENOSYS and
//! are logged once.
//!
//! Entry point: [`Kernel::new`], then [`Task::start`] and [`Task::run`] on
//! the host thread that will run the task (ptrace binds a stub to the thread
//! that created it).

mod deliver;
mod fs;
mod futex;
mod host;
mod loader;
mod memfile;
mod mm;
mod process;
mod procfs;
mod signal;
mod syscalls;
mod task;
mod timer;

pub use syscalls::syscall_table;
pub use task::{ExitStatus, Kernel, KernelConfig, ProcessSpec, StartError, Strace, Task};
