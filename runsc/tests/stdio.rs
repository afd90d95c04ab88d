//! The stdio `runsc do` hands the sandbox is the caller's own: a regular
//! file keeps its host position, which the sandbox's writes move (as a
//! shell's `>>` and `>` expect), whatever call the program writes with.

use std::process::{Command, Stdio};

const RUNSC: &str = env!("CARGO_BIN_EXE_runsc");

#[test]
fn stdout_to_a_regular_file() {
    let dir = std::env::temp_dir().join(format!("runsc-stdio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("out");
    std::fs::write(&path, "before\n").unwrap();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    // coreutils' cat copies with copy_file_range into a regular file;
    // echo writes; both append after what the file held.
    let status = Command::new(RUNSC)
        .args(["do", "sh", "-c", "cat /etc/hostname; echo after"])
        .stdout(Stdio::from(file))
        .status()
        .unwrap();
    assert!(status.success());
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("before\n{hostname}after\n")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
