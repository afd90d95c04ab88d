//! `--gofer-binary`: our Sentry with Debian's Go gofer (the 2022 release,
//! launched as upstream's CLI launches its gofer) gives the same results
//! as with our own gofer, over lisafs (`--directfs=false`).

use std::path::Path;
use std::process::{Command, Output};

const RUNSC: &str = env!("CARGO_BIN_EXE_runsc");
const GO_RUNSC: &str = "/usr/bin/runsc";

fn run(gofer: Option<&str>, flags: &[&str], argv: &[&str]) -> Output {
    let mut cmd = Command::new(RUNSC);
    if let Some(g) = gofer {
        cmd.arg(format!("--gofer-binary={g}"));
    }
    cmd.args(flags).arg("do").args(argv).current_dir("/");
    cmd.output().unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "{:?}\nstdout: {:?}\nstderr: {:?}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn debian_go_gofer_serves_our_sentry() {
    assert!(
        Path::new(GO_RUNSC).exists(),
        "{GO_RUNSC} is missing: this test runs Debian's Go gofer from the `runsc` \
         package; ./test.sh installs it (or run `apt-get install runsc`)"
    );
    let probe = format!("/tmp/gofer-binary-probe-{}", std::process::id());
    let write_read = format!("echo written > {probe} && cat {probe} && ls -l {probe} | cut -c1-10");
    let cases: [&[&str]; 4] = [
        &["echo", "hello"],
        &["sh", "-c", "ls / | wc -l"],
        &["sh", "-c", &write_read],
        &[
            "sh",
            "-c",
            "head -c 64 /usr/bin/ls | od -c | head -2; ls /etc | wc -l; cat /etc/hostname",
        ],
    ];
    for argv in cases {
        let go = run(Some(GO_RUNSC), &["--directfs=false"], argv);
        let ours = run(None, &["--directfs=false"], argv);
        assert!(
            go.status.success(),
            "{argv:?} with the Go gofer: {}",
            show(&go)
        );
        assert!(!go.stdout.is_empty(), "{argv:?}: no output: {}", show(&go));
        assert_eq!(
            (go.status.code(), &go.stdout, &go.stderr),
            (ours.status.code(), &ours.stdout, &ours.stderr),
            "{argv:?}\nGo gofer:  {}\nour gofer: {}",
            show(&go),
            show(&ours)
        );
    }
    assert!(!Path::new(&probe).exists(), "{probe} reached the host");
    // The 2022 gofer donates no root FD, which directfs needs: a clean error.
    let o = run(Some(GO_RUNSC), &[], &["true"]);
    assert_eq!(o.status.code(), Some(128), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("did not donate the root FD"),
        "{}",
        show(&o)
    );
}
