//! `--network=host`: a sandboxed client reaches a server on the host's
//! 127.0.0.1, and the host reaches a server in the sandbox (issue 8's
//! real-program pair; the loopback programs themselves are differential
//! cases in tests/cases/net.cases). Without it the sandbox's loopback is
//! its own netstack's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

const RUNSC: &str = env!("CARGO_BIN_EXE_runsc");

#[test]
fn sandboxed_client_reaches_a_host_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&conn).read_line(&mut line).unwrap();
        conn.write_all(line.to_uppercase().as_bytes()).unwrap();
    });
    let script = format!(
        "import socket\n\
         c = socket.create_connection(('127.0.0.1', {port}))\n\
         c.sendall(b'hello from the sandbox\\n')\n\
         print(c.makefile().readline(), end='')\n"
    );
    let out = Command::new(RUNSC)
        .args(["--network=host", "do", "python3", "-c", &script])
        .output()
        .unwrap();
    server.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "HELLO FROM THE SANDBOX\n"
    );
}

#[test]
fn host_reaches_a_sandboxed_server() {
    let script = "import socket, sys\n\
         l = socket.create_server(('127.0.0.1', 0))\n\
         print(l.getsockname()[1], flush=True)\n\
         conn, peer = l.accept()\n\
         line = conn.makefile('rb').readline()\n\
         conn.sendall(line[::-1].strip() + b'\\n')\n\
         print('peer is loopback:', peer[0] == '127.0.0.1')\n";
    let mut child = Command::new(RUNSC)
        .args(["--network=host", "do", "python3", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut port = String::new();
    stdout.read_line(&mut port).unwrap();
    let port: u16 = port.trim().parse().expect("the sandbox prints its port");
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"sandbox\n").unwrap();
    let mut reply = String::new();
    BufReader::new(&conn).read_line(&mut reply).unwrap();
    assert_eq!(reply, "xobdnas\n");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(rest, "peer is loopback: True\n");
}

#[test]
fn without_host_networking_the_loopback_is_the_sandboxs_own() {
    // A host server on 127.0.0.1 that the sandbox must not reach.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The sandbox listens on the same port of its own loopback (the host's
    // is taken, so a host socket could not bind it) and connects to it:
    // it reaches itself, never the host's server.
    let script = format!(
        "import socket\n\
         l = socket.create_server(('127.0.0.1', {port}))\n\
         c = socket.create_connection(('127.0.0.1', {port}))\n\
         s, _ = l.accept()\n\
         c.sendall(b'inside')\n\
         print(s.recv(6).decode())\n"
    );
    for network in ["--network=none", "--network=sandbox"] {
        let out = Command::new(RUNSC)
            .args([network, "do", "python3", "-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{network}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "inside\n",
            "{network}"
        );
    }
    // Nothing from the sandbox arrived at the host's server.
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err());
}
