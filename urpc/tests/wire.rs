//! Golden bytes of urpc messages (as upstream's Go encoder writes them),
//! a round trip over a socket pair with FDs, and malformed input: a server
//! answers what upstream answers and never panics or hangs.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use serde_json::{json, Value};
use urpc::go::{self, GoStruct, GoType};
use urpc::{wire, CallError, Client, Conn, Dispatch, Reply, Server};

#[test]
fn golden_requests_and_replies() {
    // The exchange the protocol notes verified against a 2022 sandbox.
    assert_eq!(
        wire::encode_request("containerManager.Processes", &json!("c2")),
        br#"{"method":"containerManager.Processes","arg":"c2"}"#
    );
    assert_eq!(
        wire::encode_request("containerManager.Pause", &json!({})),
        br#"{"method":"containerManager.Pause","arg":{}}"#
    );
    assert_eq!(
        wire::encode_error("unknown method"),
        br#"{"success":false,"err":"unknown method","result":null}"#
    );
    assert_eq!(
        wire::encode_success(b"{}"),
        br#"{"success":true,"err":"","result":{}}"#
    );
    assert_eq!(
        wire::encode_success(b"256"),
        br#"{"success":true,"err":"","result":256}"#
    );
    // Go's HTML-safe escapes.
    assert_eq!(
        wire::encode_error("a<b>&c\u{2028}"),
        br#"{"success":false,"err":"a\u003cb\u003e\u0026c\u2028","result":null}"#
    );
    // Key order is the Go struct's field order (control.Process).
    #[derive(serde::Serialize)]
    struct Process {
        uid: u32,
        pid: i32,
        ppid: i32,
        threads: Vec<i32>,
        c: i32,
        tty: &'static str,
        stime: &'static str,
        time: &'static str,
        cmd: &'static str,
    }
    let ps = vec![Process {
        uid: 0,
        pid: 1,
        ppid: 0,
        threads: vec![1],
        c: 0,
        tty: "?",
        stime: "09:15",
        time: "0s",
        cmd: "sleep",
    }];
    let want = br#"{"success":true,"err":"","result":[{"uid":0,"pid":1,"ppid":0,"threads":[1],"c":0,"tty":"?","stime":"09:15","time":"0s","cmd":"sleep"}]}"#;
    assert_eq!(wire::encode_success(&wire::to_go_json(&ps)), want);
}

#[test]
fn requests_decode_like_go() {
    let r = wire::decode_request(&json!({"METHOD": "a.B", "Arg": [1]})).unwrap();
    assert_eq!(r.method, "a.B");
    assert_eq!(r.arg, json!([1]));
    let r = wire::decode_request(&json!({})).unwrap();
    assert_eq!(r.method, "");
    assert_eq!(r.arg, Value::Null);
    assert_eq!(
        wire::decode_request(&json!([1])).unwrap_err(),
        "json: cannot unmarshal array into Go value of type urpc.serverCall"
    );
    assert_eq!(
        wire::decode_request(&json!({"method": 5})).unwrap_err(),
        "json: cannot unmarshal number into Go struct field serverCall.method of type string"
    );
}

static SIGNAL_ARGS: GoStruct = GoStruct {
    name: "boot.SignalArgs",
    fields: &[
        ("CID", GoType::String),
        ("Signo", go::INT32),
        ("PID", go::INT32),
        (
            "Mode",
            GoType::Int {
                name: "boot.SignalDeliveryMode",
                signed: false,
                bits: 64,
            },
        ),
    ],
};

#[test]
fn arguments_decode_like_go() {
    let ty = GoType::Struct(&SIGNAL_ARGS);
    assert_eq!(
        go::decode(&json!({"cid": "c1", "signo": 15}), &ty).unwrap(),
        json!({"CID": "c1", "Signo": 15})
    );
    assert_eq!(
        go::decode(&json!("c1"), &ty).unwrap_err(),
        "json: cannot unmarshal string into Go value of type boot.SignalArgs"
    );
    assert_eq!(
        go::decode(&json!({"Signo": "TERM"}), &ty).unwrap_err(),
        "json: cannot unmarshal string into Go struct field SignalArgs.Signo of type int32"
    );
    assert_eq!(
        go::decode(&json!({"Signo": 1.5}), &ty).unwrap_err(),
        "json: cannot unmarshal number 1.5 into Go struct field SignalArgs.Signo of type int32"
    );
    assert_eq!(
        go::decode(&json!({"Signo": 4294967296u64}), &ty).unwrap_err(),
        "json: cannot unmarshal number 4294967296 into Go struct field SignalArgs.Signo of type int32"
    );
    assert_eq!(
        go::decode(&json!(5), &GoType::Struct(&go::EMPTY)).unwrap_err(),
        "json: cannot unmarshal number into Go value of type struct {}"
    );
    assert_eq!(
        go::decode(&json!("x"), &GoType::Struct(&go::EMPTY)).unwrap_err(),
        "json: cannot unmarshal string into Go value of type struct {}"
    );
    assert_eq!(
        go::decode(&Value::Null, &GoType::String).unwrap(),
        Value::Null
    );
    assert_eq!(
        go::decode(&json!(["a", 1]), &go::STRINGS).unwrap_err(),
        "json: cannot unmarshal number into Go value of type string"
    );
}

/// A receiver with one method that echoes its argument and files.
struct Echo;

impl Dispatch for Echo {
    fn call(
        &self,
        method: &str,
        arg: &Value,
        files: Vec<std::os::fd::OwnedFd>,
    ) -> Result<Reply, CallError> {
        match method {
            "Echo.Echo" => Ok(Reply {
                files,
                ..Reply::value(arg)
            }),
            "Echo.Fail" => Err(CallError::Failed("it failed".into())),
            "Echo.Signal" => {
                let v = go::decode(arg, &GoType::Struct(&SIGNAL_ARGS))?;
                Ok(Reply::value(v))
            }
            _ => Err(CallError::UnknownMethod),
        }
    }
}

fn serve_pair() -> UnixStream {
    let (a, b) = UnixStream::pair().unwrap();
    let server = Server::new(Arc::new(Echo));
    std::thread::spawn(move || server.serve_conn(Conn::new(b)));
    a
}

#[test]
fn calls_carry_results_errors_and_files() {
    let mut c = Client::new(serve_pair());
    let (v, files) = c.call("Echo.Echo", &json!({"x": [1, "y"]}), &[]).unwrap();
    assert_eq!(v, json!({"x": [1, "y"]}));
    assert!(files.is_empty());
    // A file goes out with the call and comes back with the reply.
    let (mut r, mut w) = std::io::pipe().unwrap();
    let (_, files) = c.call("Echo.Echo", &json!(null), &[w.as_fd()]).unwrap();
    assert_eq!(files.len(), 1);
    let mut back = std::fs::File::from(files.into_iter().next().unwrap());
    back.write_all(b"via the reply").unwrap();
    drop(back);
    w.flush().unwrap();
    drop(w);
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "via the reply");
    match c.call("Echo.Fail", &json!({}), &[]) {
        Err(urpc::Error::Remote(m)) => assert_eq!(m, "it failed"),
        other => panic!("{other:?}"),
    }
    match c.call("Nope.Nope", &json!({}), &[]) {
        Err(urpc::Error::Remote(m)) => assert_eq!(m, "unknown method"),
        other => panic!("{other:?}"),
    }
    match c.call("Echo.Signal", &json!({"Signo": "KILL"}), &[]) {
        Err(urpc::Error::Remote(m)) => assert_eq!(
            m,
            "json: cannot unmarshal string into Go struct field SignalArgs.Signo of type int32"
        ),
        other => panic!("{other:?}"),
    }
}

/// Raw bytes to a server; what it writes back before closing.
fn raw_exchange(bytes: &[u8]) -> Vec<u8> {
    let mut s = serve_pair();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn malformed_input_gets_upstreams_treatment() {
    // Upstream answers these.
    assert_eq!(
        raw_exchange(br#"{"method":"x.Y","arg":{}}"#),
        br#"{"success":false,"err":"unknown method","result":null}"#
    );
    assert_eq!(
        raw_exchange(br#"{"arg":1}"#),
        br#"{"success":false,"err":"unknown method","result":null}"#
    );
    // Several calls on one connection, back to back.
    assert_eq!(
        raw_exchange(br#"{"method":"Echo.Echo","arg":1} {"method":"Echo.Echo","arg":"b"}"#),
        br#"{"success":true,"err":"","result":1}{"success":true,"err":"","result":"b"}"#
    );
    // Upstream drops the client without a reply for these.
    for bad in [
        &b"{"[..],
        b"{\"method\":",
        b"not json",
        b"[1,2]",
        b"\"str\"",
        b"{\"method\":7}",
        b"{\"method\":\"Echo.Echo\",\"arg\":[1,}",
        b"\xff\xfe\x00",
        b"",
    ] {
        assert_eq!(
            raw_exchange(bad),
            b"",
            "input {:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // A message longer than the limit is refused, not buffered forever.
    let mut huge = b"{\"method\":\"".to_vec();
    huge.resize(urpc::MAX_MESSAGE + 10, b'a');
    let mut s = serve_pair();
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = s.write_all(&huge);
        })
    };
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(out.is_empty());
    writer.join().unwrap();
}

#[test]
fn a_listening_server_survives_bad_clients() {
    let dir = std::env::temp_dir().join(format!("urpc-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = Server::new(Arc::new(Echo));
    std::thread::spawn(move || server.serve(listener));
    for _ in 0..3 {
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"}}}").unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        assert!(out.is_empty());
    }
    let mut c = Client::connect(&path).unwrap();
    assert_eq!(
        c.call("Echo.Echo", &json!("still here"), &[]).unwrap().0,
        json!("still here")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
