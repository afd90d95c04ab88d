//! Our file server over flipcall channels: the same reads through a
//! channel as through the socket, checked against the host and against
//! Debian's Go gofer driven the same way.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use abi::Errno;
use common::*;
use gofer::Config;
use gofer_protocol::channel::max_channels;
use gofer_protocol::message::*;
use gofer_protocol::{Client, ClientError};

fn fstat(c: &Client, fd: u64) -> Result<Statx, ClientError> {
    match c.call(&Request::FStat(StatReq { fd }))? {
        (Response::FStat(s), _) => Ok(s),
        r => panic!("FStat answered {r:?}"),
    }
}

/// What one session of reads saw, to compare servers.
#[derive(Debug, PartialEq)]
struct Seen {
    file_size: u64,
    file_ino: u64,
    host_fd_content: Vec<u8>,
    pread: Vec<u8>,
    big_ok: bool,
    link: Vec<u8>,
    dirents: Vec<(Vec<u8>, u64, u8)>,
    ebadf: bool,
}

fn session(c: &Client, root: &Path) -> Seen {
    c.mount().unwrap();
    let n = c.open_channels(8).unwrap();
    assert!((1..=4).contains(&n), "{n} channels");
    let before = c.channel_calls();

    let file = walk(c, 1, &["file.txt"]).unwrap().inodes[0];
    let st = fstat(c, file.control_fd).unwrap();
    let (open_fd, host) = open(c, file.control_fd, libc::O_RDONLY).unwrap();
    assert_eq!(host.len(), 1, "regular files come with their host FD");
    let mut buf = vec![0; 64];
    let k = fs::File::from(host.into_iter().next().unwrap())
        .read_at(&mut buf, 0)
        .unwrap();
    buf.truncate(k);
    let pread_data = pread(c, open_fd, 6, 4096).unwrap();

    let big = walk(c, 1, &["big"]).unwrap().inodes[0];
    let (big_open, _) = open(c, big.control_fd, libc::O_RDONLY).unwrap();
    let big_data = pread(c, big_open, 0, 1 << 20).unwrap();

    let link = walk(c, 1, &["link"]).unwrap().inodes[0];
    let target = match c
        .call(&Request::ReadLinkAt(ReadLinkAtReq {
            fd: link.control_fd,
        }))
        .unwrap()
    {
        (Response::ReadLinkAt(r), _) => r.target,
        r => panic!("{r:?}"),
    };
    let dir = walk(c, 1, &["dir"]).unwrap().inodes[0];
    let (dir_open, _) = open(c, dir.control_fd, libc::O_RDONLY).unwrap();
    let dirents = readdir(c, dir_open)
        .unwrap()
        .into_iter()
        .map(|d| (d.name, d.ino, d.typ))
        .collect();
    let ebadf = matches!(fstat(c, 9999), Err(ClientError::Remote(Errno::EBADF)));

    assert!(
        c.channel_calls() - before >= 14,
        "the calls went over channels"
    );
    assert_eq!(c.idle_channels(), n, "no channel was retired");
    let md = fs::metadata(root.join("file.txt")).unwrap();
    assert_eq!((st.size, st.ino), (md.size(), md.ino()));
    Seen {
        file_size: st.size,
        file_ino: st.ino,
        host_fd_content: buf,
        pread: pread_data,
        big_ok: big_data == fs::read(root.join("big")).unwrap(),
        link: target,
        dirents,
        ebadf,
    }
}

#[test]
fn hostfs_over_channels_matches_the_go_gofer() {
    let work = scratch_dir("channels");
    let root = work.join("root");
    fs::create_dir_all(root.join("dir")).unwrap();
    fs::write(root.join("file.txt"), b"hello through a window\n").unwrap();
    fs::write(root.join("big"), vec![7u8; 1 << 20]).unwrap();
    fs::write(root.join("dir/a"), b"a").unwrap();
    fs::write(root.join("dir/bb"), b"bb").unwrap();
    std::os::unix::fs::symlink("file.txt", root.join("link")).unwrap();

    let ours = start_ours(&root, Config::default());
    let mine = session(&ours.client, &root);
    assert_eq!(ours.client.idle_channels(), max_channels());
    assert!(mine.big_ok && mine.ebadf);
    assert_eq!(mine.host_fd_content, b"hello through a window\n");
    assert_eq!(mine.pread, b"through a window\n");
    assert_eq!(mine.link, b"file.txt");
    // Ending the session stops our channel threads and the server.
    ours.finish();

    let (_go, client) = start_go(&work, &root);
    let theirs = session(&client, &root);
    assert_eq!(mine, theirs);
    let _ = fs::remove_dir_all(&work);
}
