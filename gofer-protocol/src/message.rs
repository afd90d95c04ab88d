//! Every lisafs message, request and response (MIDs 0-33), with its codec.
//!
//! Layouts follow §1.6-1.8 of the protocol notes: fixed structs are their C
//! layout (explicit padding, little-endian); dynamic messages are fields
//! back to back with no alignment; strings are a u16 length then the bytes;
//! arrays are a u16 count then the elements. File names, paths, link
//! targets and xattr names/values are raw bytes (`Vec<u8>`), as on Linux.
//!
//! Decoding rejects a payload with bytes left after the last field (the Go
//! decoders ignore them; no Go encoder produces them).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use crate::wire::{DecodeError, EncodeError};
use crate::wire::{Decoder, Encoder};

#[cfg(not(target_endian = "little"))]
compile_error!("lisafs fixed structs are copied in host byte order, which must be little-endian");

/// A file descriptor id: per connection, 0 is invalid.
pub type FdId = u64;

/// "Not set / don't change" for a uid field.
pub const NO_UID: u32 = u32::MAX;
/// "Not set / don't change" for a gid field.
pub const NO_GID: u32 = u32::MAX;

/// SetStat mask bits (STATX_*): the only ones a server accepts.
pub mod setstat_mask {
    /// Permission bits (`mode`).
    pub const MODE: u32 = 0x2;
    /// Owner (`uid`).
    pub const UID: u32 = 0x8;
    /// Group (`gid`).
    pub const GID: u32 = 0x10;
    /// Access time (`atime`).
    pub const ATIME: u32 = 0x20;
    /// Modification time (`mtime`).
    pub const MTIME: u32 = 0x40;
    /// File size (`size`, via truncate).
    pub const SIZE: u32 = 0x200;
    /// Every bit a server honours; any other bit makes it answer EPERM.
    pub const ALLOWED: u32 = MODE | UID | GID | ATIME | MTIME | SIZE;
}

/// The open flags a server honours in OpenAt/OpenCreateAt (`O_ACCMODE | O_TRUNC`).
pub const OPEN_ALLOWED_FLAGS: u32 = 0x3 | 0x200;

macro_rules! mids {
    ($($name:ident = $n:literal),* $(,)?) => {
        /// A lisafs message id.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Mid {
            $(
                #[doc = concat!("MID ", stringify!($n), ".")]
                $name = $n,
            )*
        }

        impl Mid {
            /// Every message id, in order.
            pub const ALL: &'static [Mid] = &[$(Mid::$name),*];

            /// The id for a wire value, if lisafs defines one.
            pub fn from_u16(v: u16) -> Option<Mid> {
                match v {
                    $($n => Some(Mid::$name),)*
                    _ => None,
                }
            }

            /// The message's name as upstream spells it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Mid::$name => stringify!($name),)*
                }
            }
        }
    };
}

mids! {
    Error = 0,
    Mount = 1,
    Channel = 2,
    FStat = 3,
    SetStat = 4,
    Walk = 5,
    WalkStat = 6,
    OpenAt = 7,
    OpenCreateAt = 8,
    Close = 9,
    FSync = 10,
    PWrite = 11,
    PRead = 12,
    MkdirAt = 13,
    MknodAt = 14,
    SymlinkAt = 15,
    LinkAt = 16,
    FStatFS = 17,
    FAllocate = 18,
    ReadLinkAt = 19,
    Flush = 20,
    Connect = 21,
    UnlinkAt = 22,
    RenameAt = 23,
    Getdents64 = 24,
    FGetXattr = 25,
    FSetXattr = 26,
    FListXattr = 27,
    FRemoveXattr = 28,
    BindAt = 29,
    Listen = 30,
    Accept = 31,
    ConnectWithCreds = 32,
    RenameAt2 = 33,
}

impl Mid {
    /// The wire value.
    pub fn raw(self) -> u16 {
        self as u16
    }

    /// How many host FDs may accompany a successful response, as
    /// `(min, max)`. Mount's FD is the upstream directfs mount-point FD (the
    /// 2022 gofer never sends one); OpenAt/OpenCreateAt donate one when the
    /// server chooses to.
    pub fn response_fds(self) -> (usize, usize) {
        match self {
            Mid::Mount | Mid::OpenAt | Mid::OpenCreateAt => (0, 1),
            Mid::Channel => (2, 2),
            Mid::Connect | Mid::ConnectWithCreds | Mid::BindAt | Mid::Accept => (1, 1),
            _ => (0, 0),
        }
    }

    /// Whether the 2022 gVisor release knows this message (MIDs 32 and 33
    /// came later).
    pub fn in_2022(self) -> bool {
        self.raw() <= 31
    }
}

/// One statx timestamp: `{sec i64, nsec u32, pad i32}` (16 bytes).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct StatxTimestamp {
    pub sec: i64,
    pub nsec: u32,
    pub pad: i32,
}

/// lisafs Statx: the first 144 bytes of Linux `struct statx`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct Statx {
    pub mask: u32,
    pub blksize: u32,
    pub attributes: u64,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// File type and permission bits.
    pub mode: u16,
    pub pad: u16,
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub attributes_mask: u64,
    pub atime: StatxTimestamp,
    pub btime: StatxTimestamp,
    pub ctime: StatxTimestamp,
    pub mtime: StatxTimestamp,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub dev_major: u32,
    pub dev_minor: u32,
}

/// A control FD on a node together with its stat (152 bytes).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct Inode {
    pub control_fd: FdId,
    pub stat: Statx,
}

/// FStatFS's answer (64 bytes).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct StatFs {
    pub fs_type: u64,
    pub block_size: i64,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_available: u64,
    pub files: u64,
    pub files_free: u64,
    pub name_length: u64,
}

/// `{sec i64, nsec i64}` as SetStat carries it (UTIME_NOW/UTIME_OMIT pass
/// through in `nsec`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

/// SetStat request (64 bytes). `mask` selects which fields apply; see
/// [`setstat_mask`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct SetStatReq {
    pub fd: FdId,
    pub mask: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
}

impl SetStatReq {
    /// Mask bits a server refuses (with EPERM); zero when the request is
    /// acceptable.
    pub fn unsupported_mask(&self) -> u32 {
        self.mask & !setstat_mask::ALLOWED
    }
}

/// SetStat response (8 bytes): which attributes failed, and one errno.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct SetStatResp {
    pub failure_mask: u32,
    pub failure_errno: u32,
}

/// Channel response (16 bytes): where this channel's window lies in the
/// donated memfd.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct ChannelResp {
    pub data_offset: i64,
    pub data_length: u64,
}

const _: () = {
    assert!(core::mem::size_of::<StatxTimestamp>() == 16);
    assert!(core::mem::size_of::<Statx>() == 144);
    assert!(core::mem::size_of::<Inode>() == 152);
    assert!(core::mem::size_of::<StatFs>() == 64);
    assert!(core::mem::size_of::<SetStatReq>() == 64);
    assert!(core::mem::size_of::<SetStatResp>() == 8);
    assert!(core::mem::size_of::<ChannelResp>() == 16);
};

/// The prefix shared by the creating requests (24 bytes on the wire:
/// `dirFD u64, uid u32, gid u32, mode u16, pad u16, pad u32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CreateCommon {
    pub dir_fd: FdId,
    pub uid: u32,
    pub gid: u32,
    pub mode: u16,
}

impl CreateCommon {
    fn encode(&self, e: &mut Encoder) {
        e.u64(self.dir_fd);
        e.u32(self.uid);
        e.u32(self.gid);
        e.u16(self.mode);
        e.u16(0);
        e.u32(0);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let c = CreateCommon {
            dir_fd: d.u64("dirFD")?,
            uid: d.u32("uid")?,
            gid: d.u32("gid")?,
            mode: d.u16("mode")?,
        };
        d.u16("pad")?;
        d.u32("pad")?;
        Ok(c)
    }
}

/// Walk's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WalkStatus {
    /// Every component was walked.
    Success = 0,
    /// A component does not exist; the walk stopped before it.
    ComponentDoesNotExist = 1,
    /// A component is a symlink; the walk stopped after returning it.
    ComponentIsSymlink = 2,
}

/// One directory entry of Getdents64 (`ino, devMinor, devMajor, off, type,
/// S(name)`, no padding).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dirent64 {
    pub ino: u64,
    pub dev_minor: u32,
    pub dev_major: u32,
    pub off: u64,
    pub typ: u8,
    pub name: Vec<u8>,
}

const DIRENT_MIN: usize = 8 + 4 + 4 + 8 + 1 + 2;

/// A message body with a wire codec.
trait Body: Sized {
    const NAME: &'static str;
    fn enc(&self, e: &mut Encoder) -> Result<(), EncodeError>;
    fn dec(d: &mut Decoder<'_>) -> Result<Self, DecodeError>;
}

fn encode_body<T: Body>(v: &T) -> Result<Vec<u8>, EncodeError> {
    let mut e = Encoder::new(T::NAME);
    v.enc(&mut e)?;
    Ok(e.buf)
}

fn decode_body<T: Body>(payload: &[u8]) -> Result<T, DecodeError> {
    let mut d = Decoder::new(T::NAME, payload);
    let v = T::dec(&mut d)?;
    d.finish()?;
    Ok(v)
}

fn decode_empty(name: &'static str, payload: &[u8]) -> Result<(), DecodeError> {
    Decoder::new(name, payload).finish()
}

macro_rules! fixed_body {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        impl Body for $t {
            const NAME: &'static str = $name;
            fn enc(&self, e: &mut Encoder) -> Result<(), EncodeError> {
                e.fixed(self);
                Ok(())
            }
            fn dec(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                d.fixed($name)
            }
        }
    )*};
}

fixed_body! {
    Statx => "Statx",
    Inode => "Inode",
    StatFs => "StatFS",
    SetStatReq => "SetStatReq",
    SetStatResp => "SetStatResp",
    ChannelResp => "ChannelResp",
}

/// Declares a message struct and its codec from a list of fields, each
/// with a codec kind.
macro_rules! body {
    (
        $(#[$m:meta])*
        $name:ident = $wire:literal { $($field:ident : $kind:ident $(($arg:literal))?),* $(,)? }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $(pub $field: body!(@ty $kind),)*
        }

        impl Body for $name {
            const NAME: &'static str = $wire;
            #[allow(unused_variables)]
            fn enc(&self, e: &mut Encoder) -> Result<(), EncodeError> {
                $(body!(@enc e, self.$field, $kind, stringify!($field) $(, $arg)?);)*
                Ok(())
            }
            #[allow(unused_variables)]
            fn dec(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                $(let $field = body!(@dec d, $kind, stringify!($field) $(, $arg)?);)*
                Ok($name { $($field,)* })
            }
        }
    };

    (@ty u8) => { u8 };
    (@ty u16) => { u16 };
    (@ty u32) => { u32 };
    (@ty i32) => { i32 };
    (@ty u64) => { u64 };
    (@ty string) => { Vec<u8> };
    (@ty strings) => { Vec<Vec<u8>> };
    (@ty fdids) => { Vec<FdId> };
    (@ty common) => { CreateCommon };
    (@ty inode) => { Inode };
    (@ty u32data) => { Vec<u8> };
    (@ty u64data) => { Vec<u8> };

    (@enc $e:ident, $v:expr, u8, $f:expr) => { $e.u8($v) };
    (@enc $e:ident, $v:expr, u16, $f:expr) => { $e.u16($v) };
    (@enc $e:ident, $v:expr, u32, $f:expr) => { $e.u32($v) };
    (@enc $e:ident, $v:expr, i32, $f:expr) => { $e.i32($v) };
    (@enc $e:ident, $v:expr, u64, $f:expr) => { $e.u64($v) };
    (@enc $e:ident, $v:expr, string, $f:expr) => { $e.sized($f, &$v)? };
    (@enc $e:ident, $v:expr, strings, $f:expr) => { $e.sized_array($f, &$v)? };
    (@enc $e:ident, $v:expr, fdids, $f:expr) => {{
        $e.count($f, $v.len())?;
        for fd in &$v {
            $e.u64(*fd);
        }
    }};
    (@enc $e:ident, $v:expr, common, $f:expr) => { $v.encode($e) };
    (@enc $e:ident, $v:expr, inode, $f:expr) => { $e.fixed(&$v) };
    (@enc $e:ident, $v:expr, u32data, $f:expr) => {{
        $e.check_len($f, $v.len(), u32::MAX as usize)?;
        $e.u32($v.len() as u32);
        $e.bytes(&$v);
    }};
    (@enc $e:ident, $v:expr, u64data, $f:expr) => {{
        $e.u64($v.len() as u64);
        $e.bytes(&$v);
    }};

    (@dec $d:ident, u8, $f:expr) => { $d.u8($f)? };
    (@dec $d:ident, u16, $f:expr) => { $d.u16($f)? };
    (@dec $d:ident, u32, $f:expr) => { $d.u32($f)? };
    (@dec $d:ident, i32, $f:expr) => { $d.i32($f)? };
    (@dec $d:ident, u64, $f:expr) => { $d.u64($f)? };
    (@dec $d:ident, string, $f:expr) => { $d.sized($f)? };
    (@dec $d:ident, strings, $f:expr) => { $d.sized_array($f)? };
    (@dec $d:ident, fdids, $f:expr) => {{
        let n = $d.count($f, 8)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push($d.u64($f)?);
        }
        v
    }};
    (@dec $d:ident, common, $f:expr) => { CreateCommon::decode($d)? };
    (@dec $d:ident, inode, $f:expr) => { $d.fixed::<Inode>($f)? };
    (@dec $d:ident, u32data, $f:expr) => {{
        let n = $d.u32($f)?;
        $d.bytes($f, usize::try_from(n).unwrap_or(usize::MAX))?
    }};
    (@dec $d:ident, u64data, $f:expr) => {{
        let n = $d.u64($f)?;
        $d.bytes($f, usize::try_from(n).unwrap_or(usize::MAX))?
    }};
}

// ---- requests ----

body!(
    /// FStat: stat a control or open FD.
    StatReq = "StatReq" { fd: u64 }
);
body!(
    /// Walk and WalkStat: walk `path` (one name per component) from `dir_fd`.
    WalkReq = "WalkReq" { dir_fd: u64, path: strings }
);
body!(
    /// OpenAt: open the node of control FD `fd` with `flags`.
    OpenAtReq = "OpenAtReq" { fd: u64, flags: u32, pad: u32 }
);
body!(
    /// OpenCreateAt: create `name` in a directory and open it.
    OpenCreateAtReq = "OpenCreateAtReq" { common: common, flags: u32, name: string }
);
body!(
    /// Close: release these FDIDs.
    CloseReq = "CloseReq" { fds: fdids }
);
body!(
    /// FSync: sync these open FDs.
    FsyncReq = "FsyncReq" { fds: fdids }
);
body!(
    /// PWrite: write `data` at `offset` (the u32 length precedes the data).
    PWriteReq = "PWriteReq" { offset: u64, fd: u64, data: u32data }
);
body!(
    /// PRead: read up to `count` bytes at `offset` (offset precedes fd).
    PReadReq = "PReadReq" { offset: u64, fd: u64, count: u32, pad: u32 }
);
body!(
    /// MkdirAt: create directory `name`.
    MkdirAtReq = "MkdirAtReq" { common: common, name: string }
);
body!(
    /// MknodAt: create node `name` (minor precedes major on the wire).
    MknodAtReq = "MknodAtReq" { common: common, minor: u32, major: u32, name: string }
);
body!(
    /// SymlinkAt: create symlink `name` pointing at `target`.
    SymlinkAtReq = "SymlinkAtReq" { dir_fd: u64, uid: u32, gid: u32, name: string, target: string }
);
body!(
    /// LinkAt: create hard link `name` in `dir_fd` to control FD `target`.
    LinkAtReq = "LinkAtReq" { dir_fd: u64, target: u64, name: string }
);
body!(
    /// FStatFS: statfs of a control FD.
    FStatFsReq = "FStatFSReq" { fd: u64 }
);
body!(
    /// FAllocate: fallocate on a writable open FD.
    FAllocateReq = "FAllocateReq" { fd: u64, mode: u64, offset: u64, length: u64 }
);
body!(
    /// ReadLinkAt: read the target of a symlink control FD.
    ReadLinkAtReq = "ReadLinkAtReq" { fd: u64 }
);
body!(
    /// Flush: flush an open FD.
    FlushReq = "FlushReq" { fd: u64 }
);
body!(
    /// Connect: connect to the host socket of a control FD.
    ConnectReq = "ConnectReq" { fd: u64, sock_type: u32, pad: u32 }
);
body!(
    /// ConnectWithCreds (new): Connect as `uid`/`gid`.
    ConnectWithCredsReq = "ConnectWithCredsReq" { fd: u64, sock_type: u32, pad: u32, uid: u32, gid: u32 }
);
body!(
    /// UnlinkAt: remove `name` (flags: AT_REMOVEDIR).
    UnlinkAtReq = "UnlinkAtReq" { dir_fd: u64, flags: u32, name: string }
);
body!(
    /// RenameAt: rename `old_dir/old_name` to `new_dir/new_name`.
    RenameAtReq = "RenameAtReq" { old_dir: u64, new_dir: u64, old_name: string, new_name: string }
);
body!(
    /// RenameAt2 (new): RenameAt with renameat2 flags, last and unaligned.
    RenameAt2Req = "RenameAt2Req" { old_dir: u64, new_dir: u64, old_name: string, new_name: string, flags: u32 }
);
body!(
    /// Getdents64: read entries of an open directory; a negative `count`
    /// seeks to 0 first and reads `|count|` bytes' worth.
    Getdents64Req = "Getdents64Req" { dir_fd: u64, count: i32, pad: u32 }
);
body!(
    /// FGetXattr: read xattr `name` (at most `buf_size` bytes).
    FGetXattrReq = "FGetXattrReq" { fd: u64, buf_size: u32, name: string }
);
body!(
    /// FSetXattr: set xattr `name` to `value`.
    FSetXattrReq = "FSetXattrReq" { fd: u64, flags: u32, name: string, value: string }
);
body!(
    /// FListXattr: list xattr names (at most `size` bytes).
    FListXattrReq = "FListXattrReq" { fd: u64, size: u64 }
);
body!(
    /// FRemoveXattr: remove xattr `name`.
    FRemoveXattrReq = "FRemoveXattrReq" { fd: u64, name: string }
);
body!(
    /// BindAt: create and bind a host socket `name`.
    BindAtReq = "BindAtReq" { common: common, sock_type: u32, name: string }
);
body!(
    /// Listen on a bound socket FD.
    ListenReq = "ListenReq" { fd: u64, backlog: i32, pad: u32 }
);
body!(
    /// Accept on a bound socket FD.
    AcceptReq = "AcceptReq" { fd: u64 }
);

// ---- responses ----

body!(
    /// The error response (MID 0): a Linux errno.
    ErrorResp = "ErrorResp" { errno: u32 }
);
body!(
    /// OpenAt's new open FD.
    OpenAtResp = "OpenAtResp" { open_fd: u64 }
);
body!(
    /// OpenCreateAt: the new node and its open FD.
    OpenCreateAtResp = "OpenCreateAtResp" { child: inode, new_fd: u64 }
);
body!(
    /// PWrite: bytes written.
    PWriteResp = "PWriteResp" { count: u64 }
);
body!(
    /// PRead: the bytes read (u64 length first); empty means EOF.
    PReadResp = "PReadResp" { data: u64data }
);
body!(
    /// ReadLinkAt: the symlink's target.
    ReadLinkAtResp = "ReadLinkAtResp" { target: string }
);
body!(
    /// FGetXattr: the value.
    FGetXattrResp = "FGetXattrResp" { value: string }
);
body!(
    /// FListXattr: the names.
    FListXattrResp = "FListXattrResp" { names: strings }
);
body!(
    /// BindAt: the socket's node and its bound-socket FD.
    BindAtResp = "BindAtResp" { child: inode, bound_socket_fd: u64 }
);
body!(
    /// Accept: the peer's address (the Go server sends it empty).
    AcceptResp = "AcceptResp" { peer_addr: string }
);

/// Mount's answer: the root, the max payload size, and the MIDs the server
/// handles (kept raw so that an id we do not know is not an error).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountResp {
    pub root: Inode,
    pub max_message_size: u32,
    pub supported: Vec<u16>,
}

impl MountResp {
    /// Whether the server advertised `mid`.
    pub fn supports(&self, mid: Mid) -> bool {
        self.supported.contains(&mid.raw())
    }
}

impl Body for MountResp {
    const NAME: &'static str = "MountResp";
    fn enc(&self, e: &mut Encoder) -> Result<(), EncodeError> {
        e.fixed(&self.root);
        e.u32(self.max_message_size);
        e.count("supported", self.supported.len())?;
        for m in &self.supported {
            e.u16(*m);
        }
        Ok(())
    }
    fn dec(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let root = d.fixed("root")?;
        let max_message_size = d.u32("maxMessageSize")?;
        let n = d.count("supported", 2)?;
        let mut supported = Vec::with_capacity(n);
        for _ in 0..n {
            supported.push(d.u16("supported")?);
        }
        Ok(MountResp {
            root,
            max_message_size,
            supported,
        })
    }
}

/// Walk's answer: a status and the inodes walked (each a new control FD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkResp {
    pub status: WalkStatus,
    pub inodes: Vec<Inode>,
}

impl Body for WalkResp {
    const NAME: &'static str = "WalkResp";
    fn enc(&self, e: &mut Encoder) -> Result<(), EncodeError> {
        e.u8(self.status as u8);
        e.count("inodes", self.inodes.len())?;
        for i in &self.inodes {
            e.fixed(i);
        }
        Ok(())
    }
    fn dec(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let status = match d.u8("status")? {
            0 => WalkStatus::Success,
            1 => WalkStatus::ComponentDoesNotExist,
            2 => WalkStatus::ComponentIsSymlink,
            s => return Err(DecodeError::BadWalkStatus(s)),
        };
        let n = d.count("inodes", core::mem::size_of::<Inode>())?;
        let mut inodes = Vec::with_capacity(n);
        for _ in 0..n {
            inodes.push(d.fixed("inodes")?);
        }
        Ok(WalkResp { status, inodes })
    }
}

/// WalkStat's answer: the stats walked (no FDs are created).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WalkStatResp {
    pub stats: Vec<Statx>,
}

impl Body for WalkStatResp {
    const NAME: &'static str = "WalkStatResp";
    fn enc(&self, e: &mut Encoder) -> Result<(), EncodeError> {
        e.count("stats", self.stats.len())?;
        for s in &self.stats {
            e.fixed(s);
        }
        Ok(())
    }
    fn dec(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let n = d.count("stats", core::mem::size_of::<Statx>())?;
        let mut stats = Vec::with_capacity(n);
        for _ in 0..n {
            stats.push(d.fixed("stats")?);
        }
        Ok(WalkStatResp { stats })
    }
}

/// Getdents64's answer; empty means end of directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Getdents64Resp {
    pub dirents: Vec<Dirent64>,
}

impl Body for Getdents64Resp {
    const NAME: &'static str = "Getdents64Resp";
    fn enc(&self, e: &mut Encoder) -> Result<(), EncodeError> {
        e.count("dirents", self.dirents.len())?;
        for de in &self.dirents {
            e.u64(de.ino);
            e.u32(de.dev_minor);
            e.u32(de.dev_major);
            e.u64(de.off);
            e.u8(de.typ);
            e.sized("name", &de.name)?;
        }
        Ok(())
    }
    fn dec(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let n = d.count("dirents", DIRENT_MIN)?;
        let mut dirents = Vec::with_capacity(n);
        for _ in 0..n {
            dirents.push(Dirent64 {
                ino: d.u64("ino")?,
                dev_minor: d.u32("devMinor")?,
                dev_major: d.u32("devMajor")?,
                off: d.u64("off")?,
                typ: d.u8("type")?,
                name: d.sized("name")?,
            });
        }
        Ok(Getdents64Resp { dirents })
    }
}

/// Generates the request and response enums: one variant per MID, each
/// carrying its body (or nothing for an empty payload).
macro_rules! messages {
    (
        requests { $($rq:ident $(($rqt:ty))?),* $(,)? }
        responses { $($rs:ident $(($rst:ty))?),* $(,)? }
    ) => {
        /// A lisafs request, one variant per MID (Error excepted).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Request {
            $(
                #[doc = concat!("MID ", stringify!($rq), ".")]
                $rq $(($rqt))?,
            )*
        }

        impl Request {
            /// The request's message id.
            pub fn mid(&self) -> Mid {
                match self {
                    $(messages!(@pat Request, $rq $(, $rqt)?) => Mid::$rq,)*
                }
            }

            /// The payload bytes (without the socket header).
            pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
                match self {
                    $(messages!(@bind Request, $rq, v $(, $rqt)?) => messages!(@encode v $(, $rqt)?),)*
                }
            }

            /// Decodes a request payload received with message id `mid`.
            pub fn decode(mid: u16, payload: &[u8]) -> Result<Request, DecodeError> {
                let m = Mid::from_u16(mid).ok_or(DecodeError::UnknownMid(mid))?;
                match m {
                    Mid::Error => Err(DecodeError::ErrorAsRequest),
                    $(Mid::$rq => messages!(@decode Request, $rq, concat!(stringify!($rq), "Req"), payload $(, $rqt)?),)*
                }
            }
        }

        /// A lisafs response, one variant per MID (Error is MID 0).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Response {
            $(
                #[doc = concat!("MID ", stringify!($rs), ".")]
                $rs $(($rst))?,
            )*
        }

        impl Response {
            /// The response's message id.
            pub fn mid(&self) -> Mid {
                match self {
                    $(messages!(@pat Response, $rs $(, $rst)?) => Mid::$rs,)*
                }
            }

            /// The payload bytes (without the socket header).
            pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
                match self {
                    $(messages!(@bind Response, $rs, v $(, $rst)?) => messages!(@encode v $(, $rst)?),)*
                }
            }

            /// Decodes a response payload received with message id `mid`.
            pub fn decode(mid: u16, payload: &[u8]) -> Result<Response, DecodeError> {
                let m = Mid::from_u16(mid).ok_or(DecodeError::UnknownMid(mid))?;
                match m {
                    $(Mid::$rs => messages!(@decode Response, $rs, concat!(stringify!($rs), "Resp"), payload $(, $rst)?),)*
                }
            }
        }
    };

    (@pat $e:ident, $v:ident) => { $e::$v };
    (@pat $e:ident, $v:ident, $t:ty) => { $e::$v(_) };
    (@bind $e:ident, $v:ident, $x:ident) => { $e::$v };
    (@bind $e:ident, $v:ident, $x:ident, $t:ty) => { $e::$v($x) };
    (@encode $x:ident) => { Ok(Vec::new()) };
    (@encode $x:ident, $t:ty) => { encode_body($x) };
    (@decode $e:ident, $v:ident, $name:expr, $p:ident) => { decode_empty($name, $p).map(|()| $e::$v) };
    (@decode $e:ident, $v:ident, $name:expr, $p:ident, $t:ty) => { decode_body::<$t>($p).map($e::$v) };
}

messages! {
    requests {
        Mount,
        Channel,
        FStat(StatReq),
        SetStat(SetStatReq),
        Walk(WalkReq),
        WalkStat(WalkReq),
        OpenAt(OpenAtReq),
        OpenCreateAt(OpenCreateAtReq),
        Close(CloseReq),
        FSync(FsyncReq),
        PWrite(PWriteReq),
        PRead(PReadReq),
        MkdirAt(MkdirAtReq),
        MknodAt(MknodAtReq),
        SymlinkAt(SymlinkAtReq),
        LinkAt(LinkAtReq),
        FStatFS(FStatFsReq),
        FAllocate(FAllocateReq),
        ReadLinkAt(ReadLinkAtReq),
        Flush(FlushReq),
        Connect(ConnectReq),
        UnlinkAt(UnlinkAtReq),
        RenameAt(RenameAtReq),
        Getdents64(Getdents64Req),
        FGetXattr(FGetXattrReq),
        FSetXattr(FSetXattrReq),
        FListXattr(FListXattrReq),
        FRemoveXattr(FRemoveXattrReq),
        BindAt(BindAtReq),
        Listen(ListenReq),
        Accept(AcceptReq),
        ConnectWithCreds(ConnectWithCredsReq),
        RenameAt2(RenameAt2Req),
    }
    responses {
        Error(ErrorResp),
        Mount(MountResp),
        Channel(ChannelResp),
        FStat(Statx),
        SetStat(SetStatResp),
        Walk(WalkResp),
        WalkStat(WalkStatResp),
        OpenAt(OpenAtResp),
        OpenCreateAt(OpenCreateAtResp),
        Close,
        FSync,
        PWrite(PWriteResp),
        PRead(PReadResp),
        MkdirAt(Inode),
        MknodAt(Inode),
        SymlinkAt(Inode),
        LinkAt(Inode),
        FStatFS(StatFs),
        FAllocate,
        ReadLinkAt(ReadLinkAtResp),
        Flush,
        Connect,
        UnlinkAt,
        RenameAt,
        Getdents64(Getdents64Resp),
        FGetXattr(FGetXattrResp),
        FSetXattr,
        FListXattr(FListXattrResp),
        FRemoveXattr,
        BindAt(BindAtResp),
        Listen,
        Accept(AcceptResp),
        ConnectWithCreds,
        RenameAt2,
    }
}
