//! `--network=host`: a sandboxed client reaches a server on the host's
//! 127.0.0.1, and the host reaches a server in the sandbox (issue 8's
//! real-program pair; the loopback programs themselves are differential
//! cases in tests/cases/net.cases).

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
fn inet_sockets_need_a_network_until_the_netstack_lands() {
    // Without --network=host there is no inet stack yet: EAFNOSUPPORT,
    // never a socket on the host.
    let out = Command::new(RUNSC)
        .args([
            "do",
            "python3",
            "-c",
            "import socket\ntry:\n  socket.socket()\nexcept OSError as e:\n  print(e.errno)",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "97\n", "{out:?}");
}
