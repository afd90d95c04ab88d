//! Fuzzes the server side: arbitrary bytes become requests to the server
//! framework (`gofer_protocol::serve`) with a `HostFs` over a fresh scratch
//! tree, over a real socketpair.
//!
//! The first input byte picks how the rest is used:
//!
//! * even: a sequence of well-framed requests, each `mid u8 | len u16 LE |
//!   payload` (the MID taken modulo 40, so unknown ones occur too),
//!   preceded by a Mount so that FDIDs exist; every request must get an
//!   answer (a response or an error) before the next is sent;
//! * odd: the bytes are written to the socket as they are (framing
//!   errors, short headers, oversize lengths).
//!
//! Either way the server must not panic or hang (the fuzzer's timeout), it
//! must end once the client hangs up, and nothing outside the served
//! directory may change: a sibling directory is checked after each input.
//!
//! Run (needs a nightly toolchain and `cargo install cargo-fuzz`; as root,
//! since the server chowns and sets xattrs):
//!
//! ```sh
//! cd gofer/fuzz
//! cargo +nightly fuzz run server -- -max_len=4096 -timeout=20
//! ```

#![no_main]

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gofer::{Config, HostFs};
use gofer_protocol::sock::{read_message, write_message};
use libfuzzer_sys::fuzz_target;

const MAX: u32 = 2_093_056;

fn populate(root: &Path) {
    fs::create_dir_all(root.join("dir/nested")).unwrap();
    fs::write(root.join("file"), b"hello").unwrap();
    fs::write(root.join("dir/a"), b"a").unwrap();
    std::os::unix::fs::symlink("file", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("abs")).unwrap();
    std::os::unix::fs::symlink("../outside/secret", root.join("up")).unwrap();
}

/// The sibling tree the server must never touch, as text.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let data = fs::read(&p).unwrap_or_default();
            (p, data)
        })
        .collect();
    v.sort();
    v
}

fn scratch() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("gofer-fuzz-{}-{n}", std::process::id()))
}

fn drive(client: &UnixStream, data: &[u8]) {
    let mut w = client;
    if data.first().is_some_and(|b| b % 2 == 1) {
        let _ = w.write_all(&data[1..]);
        return;
    }
    let mut requests = vec![(1u16, &[][..])];
    let mut rest = data.get(1..).unwrap_or_default();
    while rest.len() >= 3 {
        let mid = u16::from(rest[0] % 40);
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        requests.push((mid, &rest[3..3 + len]));
        rest = &rest[3 + len..];
    }
    for (mid, payload) in requests {
        if write_message(client, mid, payload, &[], MAX).is_err() {
            return;
        }
        // Every request gets an answer; donated FDs are closed on drop.
        match read_message(client, MAX, 2) {
            Ok(_) => {}
            Err(e) => panic!("MID {mid}: no answer from the server: {e}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let base = scratch();
    let (root, outside) = (base.join("root"), base.join("outside"));
    populate(&root);
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), b"untouched").unwrap();
    let before = snapshot(&outside);

    let fs = HostFs::new(&root, Config::default()).unwrap();
    let (client, server) = UnixStream::pair().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = std::thread::spawn(move || {
        let _ = gofer_protocol::serve(Arc::new(fs), server);
    });
    drive(&client, data);
    drop(client);
    t.join().expect("the server thread panicked");

    assert_eq!(snapshot(&outside), before, "the server changed a file outside its root");
    let _ = fs::remove_dir_all(&base);
});
