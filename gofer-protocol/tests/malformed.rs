//! Malformed input on the lisafs wire: every case must end in a typed
//! error, never a panic, a hang, or an allocation the input does not back.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use gofer_protocol::message::*;
use gofer_protocol::sock::{self, encode_header, FrameError, DEFAULT_MAX_MESSAGE_SIZE};
use gofer_protocol::{Client, ClientError};

/// A socketpair whose reading end gives up after 5 s, so that a decoder
/// that wrongly waits for bytes fails the test instead of hanging it.
fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (a, b)
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = std::io::pipe().unwrap();
    (r.into(), w.into())
}

// ------------------------------------------------------------ framing

#[test]
fn closed_before_header() {
    let (a, b) = pair();
    drop(b);
    assert!(matches!(
        sock::read_message(&a, DEFAULT_MAX_MESSAGE_SIZE, 0),
        Err(FrameError::Closed)
    ));
}

#[test]
fn short_header() {
    let (a, mut b) = pair();
    b.write_all(&[5, 0, 0, 0, 1]).unwrap();
    drop(b);
    let err = sock::read_message(&a, DEFAULT_MAX_MESSAGE_SIZE, 0).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Truncated {
                part: "header",
                got: 5,
                want: 8
            }
        ),
        "{err}"
    );
}

#[test]
fn short_payload() {
    let (a, mut b) = pair();
    b.write_all(&encode_header(10, 3)).unwrap();
    b.write_all(&[1, 2, 3, 4]).unwrap();
    drop(b);
    let err = sock::read_message(&a, DEFAULT_MAX_MESSAGE_SIZE, 0).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Truncated {
                part: "payload",
                got: 4,
                want: 10
            }
        ),
        "{err}"
    );
}

#[test]
fn oversize_length_fails_before_reading_payload() {
    // The writer stays open and sends no payload: a reader that tried to
    // read (or allocate) the payload would block until the timeout.
    let (a, mut b) = pair();
    for len in [DEFAULT_MAX_MESSAGE_SIZE + 1, u32::MAX] {
        b.write_all(&encode_header(len, 5)).unwrap();
        let err = sock::read_message(&a, DEFAULT_MAX_MESSAGE_SIZE, 0).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { len: l, max } if l == u64::from(len) && max == DEFAULT_MAX_MESSAGE_SIZE),
            "{err}"
        );
    }
    // Exactly the max is fine.
    let payload = vec![7u8; 1000];
    sock::write_message(&b, 12, &payload, &[], 1000).unwrap();
    let m = sock::read_message(&a, 1000, 0).unwrap();
    assert_eq!((m.mid, m.payload.len()), (12, 1000));
}

#[test]
fn writer_refuses_oversize() {
    let (_a, b) = pair();
    let err = sock::write_message(&b, 1, &[0; 11], &[], 10).unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { len: 11, max: 10 }));
}

#[test]
fn request_fds_are_dropped_when_no_room() {
    // A request read with no FD room: FDs sent along never reach us.
    let (a, b) = pair();
    let (r, _w) = pipe();
    sock::write_message(&b, 3, &[3, 0, 0, 0, 0, 0, 0, 0], &[r.as_fd()], 100).unwrap();
    let m = sock::read_message(&a, 100, 0).unwrap();
    assert!(m.fds.is_empty());
    assert_eq!(
        Request::decode(m.mid, &m.payload).unwrap(),
        Request::FStat(StatReq { fd: 3 })
    );
}

// ------------------------------------------------------------ codecs

#[test]
fn unknown_mid() {
    assert_eq!(Request::decode(34, &[]), Err(DecodeError::UnknownMid(34)));
    assert_eq!(
        Response::decode(0xffff, &[]),
        Err(DecodeError::UnknownMid(0xffff))
    );
    assert_eq!(
        Request::decode(0, &[9, 0, 0, 0]),
        Err(DecodeError::ErrorAsRequest)
    );
}

#[test]
fn truncated_fixed_fields() {
    let err = Response::decode(3, &[0; 143]).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Truncated {
                msg: "Statx",
                need: 144,
                have: 143,
                ..
            }
        ),
        "{err}"
    );
    let err = Request::decode(7, &[3, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Truncated {
                msg: "OpenAtReq",
                field: "flags",
                offset: 8,
                need: 4,
                have: 1
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("OpenAtReq.flags"));
}

#[test]
fn truncated_string() {
    // Walk{1, [S("file.txt")]} cut inside the name.
    let mut p = vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 8, 0];
    p.extend_from_slice(b"fil");
    let err = Request::decode(5, &p).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::LengthPastEnd {
                msg: "WalkReq",
                field: "path",
                offset: 12,
                len: 8,
                have: 3
            }
        ),
        "{err}"
    );
    // Cut inside the length prefix itself.
    let err = Response::decode(19, &[4]).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Truncated {
                msg: "ReadLinkAtResp",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn string_length_past_end() {
    let err = Response::decode(19, &[0xff, 0xff, b'a']).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::LengthPastEnd {
                len: 65535,
                have: 1,
                ..
            }
        ),
        "{err}"
    );
    // PWrite's u32 length and PRead's u64 length.
    let mut p = vec![0; 16];
    p.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Request::decode(11, &p),
        Err(DecodeError::LengthPastEnd { field: "data", .. })
    ));
    assert!(matches!(
        Response::decode(12, &u64::MAX.to_le_bytes()),
        Err(DecodeError::LengthPastEnd { field: "data", .. })
    ));
}

#[test]
fn counts_past_end_do_not_allocate() {
    // 65535 FDIDs promised, one given: refused before reserving anything.
    let mut p = vec![0xff, 0xff];
    p.extend_from_slice(&1u64.to_le_bytes());
    let err = Request::decode(9, &p).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::LengthPastEnd {
                msg: "CloseReq",
                len: 524_280,
                have: 8,
                ..
            }
        ),
        "{err}"
    );
    // 65535 inodes promised in a Walk response.
    assert!(matches!(
        Response::decode(5, &[0, 0xff, 0xff]),
        Err(DecodeError::LengthPastEnd {
            msg: "WalkResp",
            ..
        })
    ));
    assert!(matches!(
        Response::decode(24, &[0xff, 0xff, 0]),
        Err(DecodeError::LengthPastEnd {
            msg: "Getdents64Resp",
            ..
        })
    ));
    assert!(matches!(
        Response::decode(
            1,
            &[0u8; 156]
                .iter()
                .copied()
                .chain([0xff, 0xff])
                .collect::<Vec<_>>()
        ),
        Err(DecodeError::LengthPastEnd {
            msg: "MountResp",
            ..
        })
    ));
}

#[test]
fn bad_walk_status() {
    assert_eq!(
        Response::decode(5, &[3, 0, 0]),
        Err(DecodeError::BadWalkStatus(3))
    );
}

#[test]
fn trailing_garbage() {
    let err = Request::decode(3, &[3, 0, 0, 0, 0, 0, 0, 0, 0xee]).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TrailingBytes {
            msg: "StatReq",
            trailing: 1,
            total: 9
        }
    );
    assert!(matches!(
        Response::decode(9, &[0]),
        Err(DecodeError::TrailingBytes {
            msg: "CloseResp",
            ..
        })
    ));
    assert!(matches!(
        Request::decode(1, &[0]),
        Err(DecodeError::TrailingBytes {
            msg: "MountReq",
            ..
        })
    ));
}

#[test]
fn encode_limits_are_errors() {
    let long = vec![b'a'; 65536];
    let err = Request::UnlinkAt(UnlinkAtReq {
        dir_fd: 1,
        flags: 0,
        name: long,
    })
    .encode()
    .unwrap_err();
    assert_eq!(
        (err.msg, err.field, err.len),
        ("UnlinkAtReq", "name", 65536)
    );
    let err = Request::Close(CloseReq {
        fds: vec![1; 65536],
    })
    .encode()
    .unwrap_err();
    assert_eq!(err.field, "fds");
}

/// Every prefix and a stream of pseudo-random inputs, decoded as every
/// MID in both directions: errors are fine, panics are not.
#[test]
fn no_panics_on_arbitrary_bytes() {
    let samples = [
        Request::Walk(WalkReq {
            dir_fd: 1,
            path: vec![b"a".to_vec(), b"bb".to_vec()],
        })
        .encode()
        .unwrap(),
        Response::Mount(MountResp {
            supported: vec![1, 2, 3],
            ..Default::default()
        })
        .encode()
        .unwrap(),
        Response::Getdents64(Getdents64Resp {
            dirents: vec![Dirent64 {
                name: b"x".to_vec(),
                ..Default::default()
            }],
        })
        .encode()
        .unwrap(),
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for s in &samples {
        for i in 0..=s.len() {
            inputs.push(s[..i].to_vec());
        }
    }
    for _ in 0..3000 {
        let len = (rnd() % 400) as usize;
        inputs.push((0..len).map(|_| rnd() as u8).collect());
    }
    for input in &inputs {
        for mid in 0..40u16 {
            let _ = Request::decode(mid, input);
            let _ = Response::decode(mid, input);
        }
    }
}

// ------------------------------------------------------------ client

/// Runs `serve` on the server end of a fresh connection and returns a
/// client on the other end.
fn with_server(
    serve: impl FnOnce(UnixStream) + Send + 'static,
) -> (Client, thread::JoinHandle<()>) {
    let (a, b) = pair();
    let h = thread::spawn(move || serve(b));
    (Client::new(a), h)
}

fn reply(s: &UnixStream, mid: u16, payload: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    let _req = sock::read_message(s, DEFAULT_MAX_MESSAGE_SIZE, 0).unwrap();
    sock::write_message(s, mid, payload, fds, DEFAULT_MAX_MESSAGE_SIZE).unwrap();
}

#[test]
fn error_response_with_fds_is_remote_errno() {
    let (c, h) = with_server(|s| {
        let (r, _w) = pipe();
        reply(&s, 0, &2u32.to_le_bytes(), &[r.as_fd()]);
    });
    let err = c.call(&Request::OpenAt(OpenAtReq::default())).unwrap_err();
    assert!(
        matches!(err, ClientError::Remote(e) if e == abi::Errno::ENOENT),
        "{err}"
    );
    assert_eq!(err.errno(), abi::Errno::ENOENT);
    h.join().unwrap();
}

#[test]
fn malformed_error_response() {
    let (c, h) = with_server(|s| reply(&s, 0, &[1, 2], &[]));
    let err = c.call(&Request::FStat(StatReq { fd: 1 })).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Decode {
                mid: Mid::Error,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.errno(), abi::Errno::EIO);
    h.join().unwrap();
}

#[test]
fn response_with_unknown_or_wrong_mid() {
    let (c, h) = with_server(|s| {
        reply(&s, 99, &[], &[]);
        reply(&s, 4, &[0; 8], &[]);
    });
    let err = c.call(&Request::FStat(StatReq { fd: 1 })).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::WrongMid {
                sent: Mid::FStat,
                got: 99
            }
        ),
        "{err}"
    );
    let err = c.call(&Request::FStat(StatReq { fd: 1 })).unwrap_err();
    assert!(matches!(err, ClientError::WrongMid { got: 4, .. }), "{err}");
    h.join().unwrap();
}

#[test]
fn bad_fd_count() {
    let (c, h) = with_server(|s| {
        // Channel must donate exactly two FDs.
        reply(&s, 2, &[0; 16], &[]);
        // Connect must donate one; two is wrong.
        let (r, w) = pipe();
        reply(&s, 21, &[], &[r.as_fd(), w.as_fd()]);
        // FStat donates none.
        let (r, _w) = pipe();
        reply(&s, 3, &[0; 144], &[r.as_fd()]);
    });
    let err = c.call(&Request::Channel).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::FdCount {
                mid: Mid::Channel,
                got: 0,
                min: 2,
                max: 2
            }
        ),
        "{err}"
    );
    let err = c
        .call(&Request::Connect(ConnectReq::default()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::FdCount {
                mid: Mid::Connect,
                got: 2,
                ..
            }
        ),
        "{err}"
    );
    // The client made no room for an FD with FStat: the kernel drops it.
    let (resp, fds) = c.call(&Request::FStat(StatReq { fd: 1 })).unwrap();
    assert_eq!(resp, Response::FStat(Statx::default()));
    assert!(fds.is_empty());
    h.join().unwrap();
}

#[test]
fn malformed_response_payload_and_truncated_frame() {
    let (c, h) = with_server(|s| {
        reply(&s, 5, &[0, 1, 0], &[]);
        let _ = sock::read_message(&s, DEFAULT_MAX_MESSAGE_SIZE, 0).unwrap();
        (&s).write_all(&encode_header(100, 3)).unwrap();
    });
    let err = c
        .call(&Request::Walk(WalkReq {
            dir_fd: 1,
            path: vec![b"a".to_vec()],
        }))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Decode {
                mid: Mid::Walk,
                err: DecodeError::LengthPastEnd { .. }
            }
        ),
        "{err}"
    );
    let err = c.call(&Request::FStat(StatReq { fd: 1 })).unwrap_err();
    h.join().unwrap();
    assert!(
        matches!(
            err,
            ClientError::Frame(FrameError::Truncated {
                part: "payload",
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn fds_pass_and_mount_limits_apply() {
    let (c, h) = with_server(|s| {
        let m = MountResp {
            root: Inode {
                control_fd: 1,
                ..Default::default()
            },
            max_message_size: 64,
            supported: vec![1, 3, 7],
        };
        reply(&s, 1, &Response::Mount(m).encode().unwrap(), &[]);
        let (r, w) = pipe();
        std::fs::File::from(w).write_all(b"donated").unwrap();
        reply(&s, 7, &9u64.to_le_bytes(), &[r.as_fd()]);
        // A 65-byte response now exceeds the max the server set.
        reply(&s, 3, &[0; 65], &[]);
    });
    let (m, fd) = c.mount().unwrap();
    assert!(fd.is_none());
    assert_eq!(c.max_message_size(), 64);
    assert!(m.supports(Mid::OpenAt) && !m.supports(Mid::Walk));
    let (resp, mut fds) = c
        .call(&Request::OpenAt(OpenAtReq {
            fd: 1,
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(resp, Response::OpenAt(OpenAtResp { open_fd: 9 }));
    assert_eq!(fds.len(), 1);
    let mut got = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fds.pop().unwrap()), &mut got).unwrap();
    assert_eq!(got, "donated");
    // Not advertised: refused locally, nothing sent.
    let err = c.call(&Request::Walk(WalkReq::default())).unwrap_err();
    assert!(matches!(err, ClientError::Unsupported(Mid::Walk)));
    assert_eq!(err.errno(), abi::Errno::EOPNOTSUPP);
    let err = c.call(&Request::FStat(StatReq { fd: 1 })).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Frame(FrameError::TooLarge { len: 65, max: 64 })
        ),
        "{err}"
    );
    h.join().unwrap();
}
