//! Golden byte vectors for every lisafs message.
//!
//! Vectors marked VERIFIED are the bytes observed between the 2022 Go
//! Sentry/gofer (protocol notes §1.2 and §1.12). The others are derived by
//! hand from the layouts of §1.6-1.8, written field by field below.
//! Every vector is checked both ways: encode(message) == bytes and
//! decode(bytes) == message (so decode(encode(m)) == m for each).

use gofer_protocol::message::*;
use gofer_protocol::sock::{decode_header, encode_header};

/// Parses hex bytes; spaces and `|` separate fields for readability.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex in {s}");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn frame(mid: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = encode_header(payload.len() as u32, mid).to_vec();
    v.extend_from_slice(payload);
    v
}

#[track_caller]
fn req(m: Request, bytes: &[u8]) {
    assert_eq!(m.encode().unwrap(), bytes, "encode {:?}", m.mid());
    assert_eq!(Request::decode(m.mid().raw(), bytes).unwrap(), m);
    assert_eq!(
        Request::decode(m.mid().raw(), &m.encode().unwrap()).unwrap(),
        m
    );
}

#[track_caller]
fn resp(m: Response, bytes: &[u8]) {
    assert_eq!(m.encode().unwrap(), bytes, "encode {:?}", m.mid());
    assert_eq!(Response::decode(m.mid().raw(), bytes).unwrap(), m);
}

/// A statx with a distinct value in every field.
fn statx() -> Statx {
    let t = |nsec| StatxTimestamp {
        sec: 1_700_000_000,
        nsec,
        pad: 0,
    };
    Statx {
        mask: 0x7ff,
        blksize: 4096,
        attributes: 0,
        nlink: 1,
        uid: 1000,
        gid: 1000,
        mode: 0o100644,
        pad: 0,
        ino: 0x1234,
        size: 12,
        blocks: 8,
        attributes_mask: 0,
        atime: t(5),
        btime: StatxTimestamp::default(),
        ctime: t(6),
        mtime: t(7),
        rdev_major: 0,
        rdev_minor: 0,
        dev_major: 8,
        dev_minor: 1,
    }
}

/// `statx()` written out by hand, field by field (144 bytes).
fn statx_bytes() -> Vec<u8> {
    hex("ff 07 00 00 | 00 10 00 00 | 00 00 00 00 00 00 00 00 \
         | 01 00 00 00 | e8 03 00 00 | e8 03 00 00 | a4 81 | 00 00 \
         | 34 12 00 00 00 00 00 00 | 0c 00 00 00 00 00 00 00 | 08 00 00 00 00 00 00 00 \
         | 00 00 00 00 00 00 00 00 \
         | 00 f1 53 65 00 00 00 00 05 00 00 00 00 00 00 00 \
         | 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 \
         | 00 f1 53 65 00 00 00 00 06 00 00 00 00 00 00 00 \
         | 00 f1 53 65 00 00 00 00 07 00 00 00 00 00 00 00 \
         | 00 00 00 00 | 00 00 00 00 | 08 00 00 00 | 01 00 00 00")
}

fn inode(fd: u64) -> Inode {
    Inode {
        control_fd: fd,
        stat: statx(),
    }
}

fn inode_bytes(fd: u8) -> Vec<u8> {
    cat(&[&[fd, 0, 0, 0, 0, 0, 0, 0], &statx_bytes()])
}

fn common() -> CreateCommon {
    CreateCommon {
        dir_fd: 2,
        uid: 1000,
        gid: NO_GID,
        mode: 0o755,
    }
}
const COMMON: &str =
    "02 00 00 00 00 00 00 00 | e8 03 00 00 | ff ff ff ff | ed 01 | 00 00 | 00 00 00 00";

#[test]
fn layout_sizes() {
    assert_eq!(statx_bytes().len(), 144);
    assert_eq!(hex(COMMON).len(), 24);
    assert_eq!(Response::FStat(statx()).encode().unwrap(), statx_bytes());
    assert_eq!(
        Response::FStatFS(StatFs::default()).encode().unwrap().len(),
        64
    );
}

// ---------------------------------------------------------------- VERIFIED

#[test]
fn verified_mount_request_frame() {
    assert_eq!(
        frame(1, &Request::Mount.encode().unwrap()),
        hex("00 00 00 00 01 00 00 00")
    );
    req(Request::Mount, &[]);
}

#[test]
fn verified_error_response_frame() {
    let m = Response::Error(ErrorResp { errno: 9 });
    assert_eq!(
        frame(0, &m.encode().unwrap()),
        hex("04 00 00 00 | 00 00 | 00 00 | 09 00 00 00")
    );
    resp(m, &hex("09 00 00 00"));
}

#[test]
fn verified_mount_response_size_2022() {
    // The 2022 gofer advertises 1-19, 21-26, 29-31 and sends 214 bytes.
    let supported: Vec<u16> = (1..=19).chain(21..=26).chain(29..=31).collect();
    assert_eq!(supported.len(), 28);
    let m = MountResp {
        root: inode(1),
        max_message_size: 2_093_056,
        supported: supported.clone(),
    };
    let mut want = cat(&[&inode_bytes(1), &hex("00 f0 1f 00 | 1c 00")]);
    for s in &supported {
        want.extend_from_slice(&s.to_le_bytes());
    }
    assert_eq!(&frame(1, &want)[..8], &hex("d6 00 00 00 01 00 00 00")[..]);
    resp(Response::Mount(m), &want);
}

#[test]
fn verified_walk_file_txt() {
    let r = Request::Walk(WalkReq {
        dir_fd: 1,
        path: vec![b"file.txt".to_vec()],
    });
    assert_eq!(
        frame(5, &r.encode().unwrap()),
        hex("14 00 00 00 05 00 00 00 \
             | 01 00 00 00 00 00 00 00 | 01 00 | 08 00 66 69 6c 65 2e 74 78 74")
    );
    req(
        r,
        &hex("01 00 00 00 00 00 00 00 01 00 08 00 66 69 6c 65 2e 74 78 74"),
    );

    // Reply: status 0, one inode with control FD 3 (statx is ours).
    let want = cat(&[&hex("00 | 01 00"), &inode_bytes(3)]);
    assert_eq!(&frame(5, &want)[..8], &hex("9b 00 00 00 05 00 00 00")[..]);
    resp(
        Response::Walk(WalkResp {
            status: WalkStatus::Success,
            inodes: vec![inode(3)],
        }),
        &want,
    );
}

#[test]
fn verified_walk_missing_component() {
    // Walk{1, ["dir1","x"]} -> status 1, count 1 (155-byte payload).
    req(
        Request::Walk(WalkReq {
            dir_fd: 1,
            path: vec![b"dir1".to_vec(), b"x".to_vec()],
        }),
        &hex("01 00 00 00 00 00 00 00 | 02 00 | 04 00 64 69 72 31 | 01 00 78"),
    );
    let want = cat(&[&hex("01 | 01 00"), &inode_bytes(2)]);
    assert_eq!(want.len(), 155);
    resp(
        Response::Walk(WalkResp {
            status: WalkStatus::ComponentDoesNotExist,
            inodes: vec![inode(2)],
        }),
        &want,
    );
}

#[test]
fn verified_openat() {
    let r = Request::OpenAt(OpenAtReq {
        fd: 3,
        flags: 0,
        pad: 0,
    });
    assert_eq!(
        frame(7, &r.encode().unwrap()),
        hex("10 00 00 00 07 00 00 00 | 03 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00")
    );
    req(
        r,
        &hex("03 00 00 00 00 00 00 00 | 00 00 00 00 | 00 00 00 00"),
    );
    let m = Response::OpenAt(OpenAtResp { open_fd: 4 });
    assert_eq!(
        frame(7, &m.encode().unwrap()),
        hex("08 00 00 00 07 00 00 00 | 04 00 00 00 00 00 00 00")
    );
    resp(m, &hex("04 00 00 00 00 00 00 00"));
    assert_eq!(Mid::OpenAt.response_fds(), (0, 1));
}

#[test]
fn verified_fstat_over_channel() {
    // Channel datagram payload after the 4-byte header: fd 3; reply 144 B.
    req(
        Request::FStat(StatReq { fd: 3 }),
        &hex("03 00 00 00 00 00 00 00"),
    );
    resp(Response::FStat(statx()), &statx_bytes());
}

// ------------------------------------------------------------ hand-derived

#[test]
fn channel() {
    req(Request::Channel, &[]);
    resp(
        Response::Channel(ChannelResp {
            data_offset: 2_097_152,
            data_length: 2_097_152,
        }),
        &hex("00 00 20 00 00 00 00 00 | 00 00 20 00 00 00 00 00"),
    );
    assert_eq!(Mid::Channel.response_fds(), (2, 2));
}

#[test]
fn setstat() {
    let r = SetStatReq {
        fd: 5,
        mask: setstat_mask::MODE | setstat_mask::SIZE | setstat_mask::MTIME,
        mode: 0o600,
        uid: NO_UID,
        gid: NO_GID,
        size: 0x10000,
        atime: Timespec {
            sec: 0,
            nsec: (1 << 30) - 2, // UTIME_OMIT
        },
        mtime: Timespec { sec: 7, nsec: 9 },
    };
    assert_eq!(r.unsupported_mask(), 0);
    req(
        Request::SetStat(r),
        &hex(
            "05 00 00 00 00 00 00 00 | 42 02 00 00 | 80 01 00 00 | ff ff ff ff | ff ff ff ff \
              | 00 00 01 00 00 00 00 00 \
              | 00 00 00 00 00 00 00 00 fe ff ff 3f 00 00 00 00 \
              | 07 00 00 00 00 00 00 00 09 00 00 00 00 00 00 00",
        ),
    );
    assert_eq!(SetStatReq { mask: 0x4, ..r }.unsupported_mask(), 0x4);
    assert_eq!(setstat_mask::ALLOWED, 0x27a);
    resp(
        Response::SetStat(SetStatResp {
            failure_mask: setstat_mask::UID,
            failure_errno: 1,
        }),
        &hex("08 00 00 00 | 01 00 00 00"),
    );
}

#[test]
fn walk_symlink_status_and_walkstat() {
    resp(
        Response::Walk(WalkResp {
            status: WalkStatus::ComponentIsSymlink,
            inodes: vec![],
        }),
        &hex("02 | 00 00"),
    );
    req(
        Request::WalkStat(WalkReq {
            dir_fd: 1,
            path: vec![vec![], b"a".to_vec()],
        }),
        &hex("01 00 00 00 00 00 00 00 | 02 00 | 00 00 | 01 00 61"),
    );
    resp(
        Response::WalkStat(WalkStatResp {
            stats: vec![statx(), statx()],
        }),
        &cat(&[&hex("02 00"), &statx_bytes(), &statx_bytes()]),
    );
}

#[test]
fn open_create_at() {
    req(
        Request::OpenCreateAt(OpenCreateAtReq {
            common: common(),
            flags: 0x2 | 0x200,
            name: b"new".to_vec(),
        }),
        &cat(&[&hex(COMMON), &hex("02 02 00 00 | 03 00 6e 65 77")]),
    );
    resp(
        Response::OpenCreateAt(OpenCreateAtResp {
            child: inode(6),
            new_fd: 7,
        }),
        &cat(&[&inode_bytes(6), &hex("07 00 00 00 00 00 00 00")]),
    );
}

#[test]
fn close_and_fsync() {
    req(
        Request::Close(CloseReq { fds: vec![3, 4] }),
        &hex("02 00 | 03 00 00 00 00 00 00 00 | 04 00 00 00 00 00 00 00"),
    );
    resp(Response::Close, &[]);
    req(
        Request::FSync(FsyncReq { fds: vec![9] }),
        &hex("01 00 | 09 00 00 00 00 00 00 00"),
    );
    resp(Response::FSync, &[]);
}

#[test]
fn pwrite_pread() {
    req(
        Request::PWrite(PWriteReq {
            offset: 0x100,
            fd: 4,
            data: b"hi!".to_vec(),
        }),
        &hex("00 01 00 00 00 00 00 00 | 04 00 00 00 00 00 00 00 | 03 00 00 00 | 68 69 21"),
    );
    resp(
        Response::PWrite(PWriteResp { count: 3 }),
        &hex("03 00 00 00 00 00 00 00"),
    );
    req(
        Request::PRead(PReadReq {
            offset: 2,
            fd: 4,
            count: 4096,
            pad: 0,
        }),
        &hex("02 00 00 00 00 00 00 00 | 04 00 00 00 00 00 00 00 | 00 10 00 00 | 00 00 00 00"),
    );
    resp(
        Response::PRead(PReadResp {
            data: b"hello".to_vec(),
        }),
        &hex("05 00 00 00 00 00 00 00 | 68 65 6c 6c 6f"),
    );
    resp(
        Response::PRead(PReadResp { data: vec![] }),
        &hex("00 00 00 00 00 00 00 00"),
    );
}

#[test]
fn mkdir_mknod_symlink_link() {
    req(
        Request::MkdirAt(MkdirAtReq {
            common: common(),
            name: b"d".to_vec(),
        }),
        &cat(&[&hex(COMMON), &hex("01 00 64")]),
    );
    resp(Response::MkdirAt(inode(8)), &inode_bytes(8));
    req(
        Request::MknodAt(MknodAtReq {
            common: common(),
            minor: 3,
            major: 1,
            name: b"null".to_vec(),
        }),
        &cat(&[
            &hex(COMMON),
            &hex("03 00 00 00 | 01 00 00 00 | 04 00 6e 75 6c 6c"),
        ]),
    );
    resp(Response::MknodAt(inode(9)), &inode_bytes(9));
    req(
        Request::SymlinkAt(SymlinkAtReq {
            dir_fd: 2,
            uid: NO_UID,
            gid: 0,
            name: b"l".to_vec(),
            target: b"../t".to_vec(),
        }),
        &hex("02 00 00 00 00 00 00 00 | ff ff ff ff | 00 00 00 00 | 01 00 6c | 04 00 2e 2e 2f 74"),
    );
    resp(Response::SymlinkAt(inode(10)), &inode_bytes(10));
    req(
        Request::LinkAt(LinkAtReq {
            dir_fd: 2,
            target: 3,
            name: b"h".to_vec(),
        }),
        &hex("02 00 00 00 00 00 00 00 | 03 00 00 00 00 00 00 00 | 01 00 68"),
    );
    resp(Response::LinkAt(inode(11)), &inode_bytes(11));
}

#[test]
fn fstatfs() {
    req(
        Request::FStatFS(FStatFsReq { fd: 1 }),
        &hex("01 00 00 00 00 00 00 00"),
    );
    resp(
        Response::FStatFS(StatFs {
            fs_type: 0xef53,
            block_size: 4096,
            blocks: 1,
            blocks_free: 2,
            blocks_available: 3,
            files: 4,
            files_free: 5,
            name_length: 255,
        }),
        &hex(
            "53 ef 00 00 00 00 00 00 | 00 10 00 00 00 00 00 00 | 01 00 00 00 00 00 00 00 \
              | 02 00 00 00 00 00 00 00 | 03 00 00 00 00 00 00 00 | 04 00 00 00 00 00 00 00 \
              | 05 00 00 00 00 00 00 00 | ff 00 00 00 00 00 00 00",
        ),
    );
}

#[test]
fn fallocate_readlink_flush() {
    req(
        Request::FAllocate(FAllocateReq {
            fd: 4,
            mode: 1,
            offset: 2,
            length: 3,
        }),
        &hex("04 00 00 00 00 00 00 00 | 01 00 00 00 00 00 00 00 | 02 00 00 00 00 00 00 00 | 03 00 00 00 00 00 00 00"),
    );
    resp(Response::FAllocate, &[]);
    req(
        Request::ReadLinkAt(ReadLinkAtReq { fd: 5 }),
        &hex("05 00 00 00 00 00 00 00"),
    );
    resp(
        Response::ReadLinkAt(ReadLinkAtResp {
            target: b"/etc".to_vec(),
        }),
        &hex("04 00 2f 65 74 63"),
    );
    req(
        Request::Flush(FlushReq { fd: 4 }),
        &hex("04 00 00 00 00 00 00 00"),
    );
    resp(Response::Flush, &[]);
}

#[test]
fn connect_and_with_creds() {
    req(
        Request::Connect(ConnectReq {
            fd: 3,
            sock_type: 1,
            pad: 0,
        }),
        &hex("03 00 00 00 00 00 00 00 | 01 00 00 00 | 00 00 00 00"),
    );
    resp(Response::Connect, &[]);
    assert_eq!(Mid::Connect.response_fds(), (1, 1));
    req(
        Request::ConnectWithCreds(ConnectWithCredsReq {
            fd: 3,
            sock_type: 5,
            pad: 0,
            uid: 1000,
            gid: 100,
        }),
        &hex("03 00 00 00 00 00 00 00 | 05 00 00 00 | 00 00 00 00 | e8 03 00 00 | 64 00 00 00"),
    );
    resp(Response::ConnectWithCreds, &[]);
    assert_eq!(Mid::ConnectWithCreds.response_fds(), (1, 1));
}

#[test]
fn unlink_rename() {
    req(
        Request::UnlinkAt(UnlinkAtReq {
            dir_fd: 2,
            flags: 0x200,
            name: b"d".to_vec(),
        }),
        &hex("02 00 00 00 00 00 00 00 | 00 02 00 00 | 01 00 64"),
    );
    resp(Response::UnlinkAt, &[]);
    req(
        Request::RenameAt(RenameAtReq {
            old_dir: 2,
            new_dir: 3,
            old_name: b"a".to_vec(),
            new_name: b"bc".to_vec(),
        }),
        &hex("02 00 00 00 00 00 00 00 | 03 00 00 00 00 00 00 00 | 01 00 61 | 02 00 62 63"),
    );
    resp(Response::RenameAt, &[]);
    // flags last and unaligned.
    req(
        Request::RenameAt2(RenameAt2Req {
            old_dir: 2,
            new_dir: 3,
            old_name: b"a".to_vec(),
            new_name: b"bc".to_vec(),
            flags: 1,
        }),
        &hex("02 00 00 00 00 00 00 00 | 03 00 00 00 00 00 00 00 | 01 00 61 | 02 00 62 63 | 01 00 00 00"),
    );
    resp(Response::RenameAt2, &[]);
}

#[test]
fn getdents64() {
    req(
        Request::Getdents64(Getdents64Req {
            dir_fd: 4,
            count: -65536,
            pad: 0,
        }),
        &hex("04 00 00 00 00 00 00 00 | 00 00 ff ff | 00 00 00 00"),
    );
    resp(
        Response::Getdents64(Getdents64Resp {
            dirents: vec![
                Dirent64 {
                    ino: 0x10,
                    dev_minor: 1,
                    dev_major: 8,
                    off: 1,
                    typ: 8,
                    name: b"a.txt".to_vec(),
                },
                Dirent64 {
                    ino: 0x11,
                    dev_minor: 1,
                    dev_major: 8,
                    off: 2,
                    typ: 4,
                    name: b"d".to_vec(),
                },
            ],
        }),
        &hex("02 00 \
              | 10 00 00 00 00 00 00 00 | 01 00 00 00 | 08 00 00 00 | 01 00 00 00 00 00 00 00 | 08 | 05 00 61 2e 74 78 74 \
              | 11 00 00 00 00 00 00 00 | 01 00 00 00 | 08 00 00 00 | 02 00 00 00 00 00 00 00 | 04 | 01 00 64"),
    );
    resp(
        Response::Getdents64(Getdents64Resp::default()),
        &hex("00 00"),
    );
}

#[test]
fn xattrs() {
    req(
        Request::FGetXattr(FGetXattrReq {
            fd: 3,
            buf_size: 256,
            name: b"user.a".to_vec(),
        }),
        &hex("03 00 00 00 00 00 00 00 | 00 01 00 00 | 06 00 75 73 65 72 2e 61"),
    );
    resp(
        Response::FGetXattr(FGetXattrResp {
            value: b"v".to_vec(),
        }),
        &hex("01 00 76"),
    );
    req(
        Request::FSetXattr(FSetXattrReq {
            fd: 3,
            flags: 1,
            name: b"user.a".to_vec(),
            value: b"vw".to_vec(),
        }),
        &hex("03 00 00 00 00 00 00 00 | 01 00 00 00 | 06 00 75 73 65 72 2e 61 | 02 00 76 77"),
    );
    resp(Response::FSetXattr, &[]);
    req(
        Request::FListXattr(FListXattrReq { fd: 3, size: 1024 }),
        &hex("03 00 00 00 00 00 00 00 | 00 04 00 00 00 00 00 00"),
    );
    resp(
        Response::FListXattr(FListXattrResp {
            names: vec![b"user.a".to_vec(), b"user.b".to_vec()],
        }),
        &hex("02 00 | 06 00 75 73 65 72 2e 61 | 06 00 75 73 65 72 2e 62"),
    );
    req(
        Request::FRemoveXattr(FRemoveXattrReq {
            fd: 3,
            name: b"user.a".to_vec(),
        }),
        &hex("03 00 00 00 00 00 00 00 | 06 00 75 73 65 72 2e 61"),
    );
    resp(Response::FRemoveXattr, &[]);
}

#[test]
fn sockets() {
    req(
        Request::BindAt(BindAtReq {
            common: common(),
            sock_type: 1,
            name: b"s".to_vec(),
        }),
        &cat(&[&hex(COMMON), &hex("01 00 00 00 | 01 00 73")]),
    );
    resp(
        Response::BindAt(BindAtResp {
            child: inode(12),
            bound_socket_fd: 13,
        }),
        &cat(&[&inode_bytes(12), &hex("0d 00 00 00 00 00 00 00")]),
    );
    req(
        Request::Listen(ListenReq {
            fd: 13,
            backlog: -1,
            pad: 0,
        }),
        &hex("0d 00 00 00 00 00 00 00 | ff ff ff ff | 00 00 00 00"),
    );
    resp(Response::Listen, &[]);
    req(
        Request::Accept(AcceptReq { fd: 13 }),
        &hex("0d 00 00 00 00 00 00 00"),
    );
    resp(
        Response::Accept(AcceptResp { peer_addr: vec![] }),
        &hex("00 00"),
    );
}

#[test]
fn every_mid_is_covered() {
    // The tests above exercise one request and one response per MID; this
    // guards the enum itself.
    assert_eq!(Mid::ALL.len(), 34);
    for (i, m) in Mid::ALL.iter().enumerate() {
        assert_eq!(usize::from(m.raw()), i);
        assert_eq!(Mid::from_u16(m.raw()), Some(*m));
    }
    assert_eq!(Mid::from_u16(34), None);
    assert!(Mid::Accept.in_2022() && !Mid::ConnectWithCreds.in_2022());
}

#[test]
fn header_codec() {
    assert_eq!(encode_header(0x9b, 5), [0x9b, 0, 0, 0, 5, 0, 0, 0]);
    assert_eq!(decode_header(&[0x9b, 0, 0, 0, 5, 0, 0xff, 0xff]), (0x9b, 5));
}
