//! The vDSO answers the time without trapping into the Sentry: once the
//! clock is calibrated, `runsc --strace` logs no clock_gettime,
//! gettimeofday, time or getcpu from a program that calls them in a loop.
//! (tests/fixtures/vdso.c, run natively and in the sandbox by the
//! differential cases, checks that the answers are right.)

use std::path::{Path, PathBuf};
use std::process::Command;

const RUNSC: &str = env!("CARGO_BIN_EXE_runsc");
/// Rounds of calls the fixture makes, 10 ms apart.
const ROUNDS: usize = 150;
/// Rounds by which the vDSO must answer on its own (calibration takes
/// 10 ms; the rest is slack for a loaded machine).
const READY_BY: usize = 100;

fn fixture(platform: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/vdso.c");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("vdso-fixture-{platform}"));
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-static", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cc runs");
    assert!(status.success(), "compiling {src:?}");
    out
}

fn host_has(flags: &[&str]) -> bool {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let line = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let have: Vec<&str> = line.split_whitespace().collect();
    flags.iter().all(|f| have.contains(f))
}

/// For each round of the fixture, the vDSO calls that reached the Sentry.
fn trapped_calls_per_round(platform: &str, fix: &Path) -> Vec<Vec<String>> {
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("vdso-{platform}.log"));
    let _ = std::fs::remove_file(&log);
    let out = Command::new(RUNSC)
        .arg(format!("--platform={platform}"))
        .arg("--strace")
        .arg(format!("--debug-log={}", log.display()))
        .arg("do")
        .arg(fix)
        .args(["marks", &ROUNDS.to_string()])
        .output()
        .expect("runsc runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "marks done\n");
    let log = std::fs::read_to_string(&log).expect("the debug log was written");
    let mut rounds: Vec<Vec<String>> = Vec::new();
    for line in log.lines() {
        let Some((_, call)) = line.split_once(" E ") else {
            continue;
        };
        let name = call.split('(').next().unwrap_or("");
        match name {
            "getppid" => rounds.push(Vec::new()),
            "clock_gettime" | "gettimeofday" | "time" | "getcpu" => {
                if let Some(r) = rounds.last_mut() {
                    r.push(name.to_string());
                }
            }
            _ => {}
        }
    }
    assert_eq!(rounds.len(), ROUNDS, "one getppid marker per round");
    rounds
}

fn check(platform: &str) {
    if !host_has(&["constant_tsc", "nonstop_tsc"]) {
        eprintln!("host TSC is not invariant: the vDSO always makes syscalls; skipped");
        return;
    }
    let fix = fixture(platform);
    let rounds = trapped_calls_per_round(platform, &fix);
    let first_quiet = rounds
        .iter()
        .position(|r| r.is_empty())
        .unwrap_or_else(|| panic!("every round trapped: {rounds:?}"));
    assert!(
        first_quiet < READY_BY,
        "first round without a trap: {first_quiet}"
    );
    for (i, r) in rounds.iter().enumerate().skip(first_quiet) {
        assert!(
            r.is_empty(),
            "round {i} trapped after the vDSO was ready: {r:?}"
        );
    }
    if host_has(&["rdtscp"]) {
        // getcpu never needs the Sentry when TSC_AUX holds the CPU.
        assert!(rounds.iter().flatten().all(|c| c != "getcpu"), "{rounds:?}");
    }
}

#[test]
fn systrap_answers_the_time_without_traps() {
    check("systrap");
}

#[test]
fn ptrace_answers_the_time_without_traps() {
    check("ptrace");
}
