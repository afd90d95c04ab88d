//! The Sentry's virtual filesystem.
//!
//! Filesystems implement [`Inode`] (the node: attributes, directory
//! operations, symlink target) and [`FileOps`] (an opened node: data).
//! The crate's own machinery sits on top of that and is the same for every
//! filesystem: [`Dentry`] (a cached name → node edge, so `..`, the working
//! directory and `/proc/self/fd` links have a path), the mount tree
//! ([`Mounts`]), the path walk ([`walk`]) and [`FileDescription`] (what a
//! descriptor number refers to: flags, offset, directory cursor).
//!
//! The crate does not know tasks: callers pass who is asking as
//! [`Creds`] and where the walk starts as a [`Location`].

pub mod dentry;
pub mod dev;
pub mod file;
pub mod goferfs;
pub mod host;
pub mod hostfs;
pub mod inode;
pub mod lock;
pub mod mount;
pub mod notify;
pub mod overlay;
pub mod tmpfs;
pub mod waiter;
pub mod walk;

pub use abi::{Errno, Stat};
pub use dentry::Dentry;
pub use file::FileDescription;
pub use inode::{
    Creds, DirEntry, FileOps, Inode, NodeKind, SetAttr, SharedMap, StatFs, TimeSpec, TimeUpdate,
};
pub use mount::{Location, Mount, Mounts};

/// What every fallible VFS operation returns.
pub type Result<T> = std::result::Result<T, Errno>;

/// File type bits of a mode.
pub const S_IFMT: u32 = 0o170000;
pub const S_IFSOCK: u32 = 0o140000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFBLK: u32 = 0o060000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFIFO: u32 = 0o010000;

/// Longest name of one path component (NAME_MAX).
pub const NAME_MAX: usize = 255;
