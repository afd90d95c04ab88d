//! `runsc --strace` logs each syscall on entry and exit, in upstream's
//! layout, to the debug log; `--strace-syscalls` narrows it.

use std::process::Command;

const RUNSC: &str = env!("CARGO_BIN_EXE_runsc");

fn strace_log(extra: &[&str]) -> String {
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("strace-{}.log", extra.len()));
    let _ = std::fs::remove_file(&log);
    let status = Command::new(RUNSC)
        .arg("--strace")
        .arg(format!("--debug-log={}", log.display()))
        .args(extra)
        .args(["do", "/bin/busybox", "echo", "traced"])
        .output()
        .expect("runsc runs");
    assert!(status.status.success(), "{status:?}");
    assert_eq!(String::from_utf8_lossy(&status.stdout), "traced\n");
    std::fs::read_to_string(&log).expect("the debug log was written")
}

#[test]
fn every_call_is_logged_on_entry_and_exit() {
    let log = strace_log(&[]);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("strace")).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("[   1:   1] busybox E write(0x1, ")),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("[   1:   1] busybox X write(0x1, ")
                && l.contains(", 0x7) = 7 (0x7) (")),
        "{log}"
    );
    let entries = lines.iter().filter(|l| l.contains(" E ")).count();
    let exits = lines.iter().filter(|l| l.contains(" X ")).count();
    assert!(entries > 5, "{log}");
    // exit_group never returns, so it has no exit line.
    assert!(
        exits == entries || exits + 1 == entries,
        "{entries} entries, {exits} exits"
    );
}

#[test]
fn strace_syscalls_filters_by_name() {
    let log = strace_log(&["--strace-syscalls=write"]);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" strace: ")).collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines.iter().all(|l| l.contains("write(")), "{log}");
}
