//! `runsc --strace` logs each syscall on entry and exit, in upstream's
//! layout with the arguments decoded, to the debug log; `--strace-syscalls`
//! narrows it and `--strace-log-size` cuts buffers.

use std::process::Command;

const RUNSC: &str = env!("CARGO_BIN_EXE_runsc");

/// The strace lines of `runsc [flags] do busybox sh -c script` (each test
/// uses its own log file), after checking its stdout.
fn strace_lines(tag: &str, flags: &[&str], script: &str, stdout: &str) -> Vec<String> {
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("strace-{tag}.log"));
    let _ = std::fs::remove_file(&log);
    let out = Command::new(RUNSC)
        .arg("--strace")
        .arg(format!("--debug-log={}", log.display()))
        .args(flags)
        .args(["do", "/bin/busybox", "sh", "-c", script])
        .output()
        .expect("runsc runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), stdout, "{out:?}");
    let log = std::fs::read_to_string(&log).expect("the debug log was written");
    log.lines()
        .filter_map(|l| l.split_once(" strace: ").map(|(_, s)| s.to_string()))
        .collect()
}

fn has(lines: &[String], want: impl Fn(&str) -> bool) -> bool {
    lines.iter().any(|l| want(l))
}

#[test]
fn every_call_is_logged_on_entry_and_exit() {
    let lines = strace_lines("all", &[], "echo traced", "traced\n");
    let all = lines.join("\n");
    // The buffer written is shown on entry and elided on exit; the exit
    // line has the value, in decimal and hex, and the time taken.
    assert!(
        has(&lines, |l| l
            .starts_with("[   1:   1] busybox E write(0x1 ")
            && l.ends_with(r#" "traced\n", 0x7)"#)),
        "{all}"
    );
    assert!(
        has(&lines, |l| l
            .starts_with("[   1:   1] busybox X write(0x1 ")
            && l.contains(", ..., 0x7) = 7 (0x7) (")
            && l.ends_with("s)")),
        "{all}"
    );
    let entries = lines.iter().filter(|l| l.contains(" E ")).count();
    let exits = lines.iter().filter(|l| l.contains(" X ")).count();
    assert!(entries > 5, "{all}");
    assert!(
        exits == entries || exits + 1 == entries,
        "{entries} entries, {exits} exits"
    );
}

#[test]
fn arguments_are_decoded_as_upstream_does() {
    let lines = strace_lines(
        "decoded",
        &[],
        "cat /etc/hostname >/dev/null; cat /nonexistent 2>/dev/null; ls / >/dev/null; echo ok",
        "ok\n",
    );
    let all = lines.join("\n");
    // A path shows its pointer and the string; flags and modes by name.
    assert!(
        has(&lines, |l| l.contains(" X openat(AT_FDCWD ")
            && l.contains(
                " /etc/hostname, O_RDONLY|0x0, 0o0) = 3 (0x3) ("
            )),
        "{all}"
    );
    assert!(
        has(&lines, |l| l.contains(" E openat(AT_FDCWD ")
            && l.contains(
                " /, O_RDONLY|O_CLOEXEC|O_DIRECTORY|O_NONBLOCK, 0o0)"
            )),
        "{all}"
    );
    assert!(
        has(&lines, |l| l.contains(" E openat(")
            && l.contains(
                " /dev/null, O_WRONLY|O_CREAT|O_TRUNC, 0o666)"
            )),
        "{all}"
    );
    // A failed call: errno number and words.
    assert!(
        has(&lines, |l| l.contains(" X openat(")
            && l.contains(
                " /nonexistent, O_RDONLY|0x0, 0o0) = 0 (0x0) errno=2 (no such file or directory) ("
            )),
        "{all}"
    );
    // Descriptors show what they name.
    assert!(
        has(&lines, |l| l.contains(" E dup2(0x3 /dev/null, 0x1 ")),
        "{all}"
    );
    assert!(
        has(&lines, |l| l.contains(" E getdents64(0x3 /, ")),
        "{all}"
    );
    // Signals and sigactions; clone's flags; execve's vectors.
    assert!(
        has(&lines, |l| l.contains(" X rt_sigaction(SIGINT, null, 0x")
            && l.contains(
                " {Handler: SIG_DFL, Flags: 0x0, Restorer: 0x0, Mask: []}, 0x8) = 0 (0x0)"
            )),
        "{all}"
    );
    assert!(
        has(&lines, |l| l.contains(
            " E clone(CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|0x11, "
        )),
        "{all}"
    );
    assert!(
        has(&lines, |l| l.contains(" E execve(0x")
            && l.contains(r#" ["cat", "/etc/hostname"], 0x"#)),
        "{all}"
    );
}

#[test]
fn strace_log_size_cuts_buffers() {
    let lines = strace_lines("size", &["--strace-log-size=3"], "echo traced", "traced\n");
    assert!(
        has(&lines, |l| l.contains(" E write(0x1 ")
            && l.ends_with(r#" "tra"..., 0x7)"#)),
        "{}",
        lines.join("\n")
    );
}

#[test]
fn strace_syscalls_filters_by_name() {
    let lines = strace_lines(
        "filter",
        &["--strace-syscalls=write"],
        "echo traced",
        "traced\n",
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("write(")), "{lines:?}");
}
