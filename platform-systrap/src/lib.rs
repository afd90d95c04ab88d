//! Platforms whose address spaces are host stub processes.
//!
//! Upstream keeps systrap and ptrace side by side because they share the
//! stub idea: each application address space is a host process that holds
//! nothing but a page of stub code and the application's mappings of the
//! Sentry's memory file. This crate holds the ptrace platform
//! (`PTRACE_SYSEMU`, upstream's `pkg/sentry/platform/ptrace`) and a first
//! slice of systrap (upstream's default: syscalls trap into a signal handler
//! in the stub, which hands off to the Sentry through shared memory, with no
//! ptrace stop on that path; see the `systrap` module).
//!
//! All host syscalls the platforms make go through [`sys`], the one module
//! with `unsafe` in it.

mod interrupt;
mod ptrace;
mod sys;
mod systrap;

pub use ptrace::PtracePlatform;
pub use systrap::SystrapPlatform;
