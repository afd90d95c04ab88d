//! Signals sent to `runsc do` reach the container's init, as with
//! upstream: SIGTERM to runsc itself, SIGINT to its process group (what a
//! terminal's Ctrl-C does).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNSC: &str = env!("CARGO_BIN_EXE_runsc");

/// Start `runsc do ARGV` in a session of its own; returns the child.
fn start(argv: &[&str]) -> std::process::Child {
    let mut cmd = Command::new(RUNSC);
    cmd.arg("do").args(argv).stdout(Stdio::piped());
    // SAFETY: setsid is async-signal-safe and only affects the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().expect("runsc starts")
}

fn finish(mut child: std::process::Child) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
            let code = status.code().or(status.signal().map(|s| 128 + s)).unwrap();
            return (code, out);
        }
        assert!(
            Instant::now() < deadline,
            "runsc did not end after the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_to_runsc_reaches_the_containers_trap() {
    let child = start(&[
        "/bin/bash",
        "-c",
        "trap 'echo got TERM; exit 3' TERM; echo ready; /bin/sleep 5 & wait",
    ]);
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (code, out) = finish(child);
    assert_eq!((code, out.as_str()), (3, "ready\ngot TERM\n"));
}

#[test]
fn sigint_to_the_process_group_ends_the_workload_with_it() {
    let child = start(&["/bin/sleep", "10"]);
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill takes plain integers; the child leads its own group.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let started = Instant::now();
    let (code, _) = finish(child);
    assert_eq!(code, 128 + libc::SIGINT, "sleep killed by SIGINT");
    assert!(started.elapsed() < Duration::from_secs(5));
}
