//! Platforms whose address spaces are host stub processes.
//!
//! Upstream keeps systrap and ptrace side by side because they share the
//! stub idea: each application address space is a host process that holds
//! nothing but a page of stub code and the application's mappings of the
//! Sentry's memory file. This crate holds the ptrace platform
//! (`PTRACE_SYSEMU`, upstream's `pkg/sentry/platform/ptrace`); systrap, the
//! default upstream, is built here next (issue "Platform: systrap").
//!
//! All host syscalls the platforms make go through [`sys`], the one module
//! with `unsafe` in it.

mod ptrace;
mod sys;

pub use ptrace::PtracePlatform;
