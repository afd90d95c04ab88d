//! Differential tests: every case in `tests/cases/*.cases` runs natively
//! and under `runsc do`, and the two must agree (see the case file's header
//! for the format). Fixtures (static C programs from `tests/fixtures/` and
//! malformed executables) are built fresh into the test's scratch directory.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const RUNSC: &str = env!("CARGO_BIN_EXE_runsc");
const START_PREFIX: &str = "starting container: starting root container: starting sandbox: ";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Build every fixture into a fresh directory; returns it.
fn build_fixtures() -> PathBuf {
    let fix = Path::new(env!("CARGO_TARGET_TMPDIR")).join("differential-fixtures");
    let _ = std::fs::remove_dir_all(&fix);
    std::fs::create_dir_all(fix.join("tree/sub")).unwrap();
    let src = repo().join("tests/fixtures");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "py" || e == "sh") {
            std::fs::copy(&path, fix.join(path.file_name().unwrap())).unwrap();
            continue;
        }
        if path.extension().is_none_or(|e| e != "c") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        for (suffix, mode) in [("", "-static"), ("-pie", "-static-pie")] {
            let out = fix.join(format!("{stem}{suffix}"));
            let status = Command::new("cc")
                .args(["-O2", "-Wall", "-Werror", "-pthread", mode, "-o"])
                .arg(&out)
                .arg(&path)
                .status()
                .expect("cc runs (the test command installs gcc and libc6-dev)");
            assert!(status.success(), "compiling {path:?} {mode}");
        }
    }
    std::fs::write(fix.join("tree/data.txt"), "hello data\n").unwrap();
    std::os::unix::fs::symlink("data.txt", fix.join("tree/link")).unwrap();

    let exe = |name: &str, bytes: &[u8]| {
        let p = fix.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    exe("not-elf", b"just text, no interpreter line\n");
    exe(
        "script.sh",
        b"#!/bin/busybox sh\necho script \"$0\" got \"$@\"\n",
    );
    let elf = std::fs::read(fix.join("auxv")).unwrap();
    exe("truncated-elf", &elf[..100]);
    let patched = |at: usize, bytes: &[u8]| {
        let mut e = elf.clone();
        e[at..at + bytes.len()].copy_from_slice(bytes);
        e
    };
    exe("elf-32bit", &patched(4, &[1]));
    exe("elf-big-endian", &patched(5, &[2]));
    exe("elf-aarch64", &patched(18, &[0xb7, 0]));
    exe("elf-bad-phent", &patched(54, &[32, 0]));
    exe("elf-relocatable", &patched(16, &[1, 0]));
    fix
}

/// Split a case line on spaces, honouring '...' quotes and `\n` escapes.
fn split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            '\\' if chars.peek() == Some(&'n') => {
                chars.next();
                cur.push('\n');
            }
            ' ' | '\t' if !quoted => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    words
}

struct Case {
    /// The case file's stem (`basic` for `basic.cases`).
    file: String,
    kind: String,
    name: String,
    argv: Vec<String>,
    /// Global flags for the sandboxed run (`run-hostnet`: --network=host).
    flags: Vec<String>,
    /// What the native run is started under: `run-mountns` runs it in a
    /// private mount namespace (mounts the case makes stay off the host),
    /// `run-netns` in a new network namespace with only `lo` up, the Linux
    /// that `--network=none` stands for.
    native_prefix: Vec<String>,
}

fn load_cases(fix: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cases"))
        .collect();
    files.sort();
    for file in files {
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.replace("$FIX", fix.to_str().unwrap());
            let mut words = split(&line);
            assert!(words.len() >= 3, "{file:?}: malformed case {line:?}");
            let argv = words.split_off(2);
            let name = words.pop().unwrap();
            let word = words.pop().unwrap();
            let (kind, flags) = match word.as_str() {
                "run-hostnet" => ("run".to_string(), vec!["--network=host".to_string()]),
                "run-mountns" | "run-netns" => ("run".to_string(), Vec::new()),
                other => (other.to_string(), Vec::new()),
            };
            let native_prefix = match word.as_str() {
                "run-mountns" => ["/usr/bin/unshare", "--mount", "--propagation=private", "--"]
                    .map(String::from)
                    .to_vec(),
                // unshare(1) and ip(8): util-linux and iproute2.
                "run-netns" => [
                    "/usr/bin/unshare",
                    "-n",
                    "sh",
                    "-c",
                    "ip link set lo up && exec \"$@\"",
                    "sh",
                ]
                .map(String::from)
                .to_vec(),
                _ => Vec::new(),
            };
            cases.push(Case {
                file: stem.clone(),
                name,
                kind,
                argv,
                flags,
                native_prefix,
            });
        }
    }
    cases
}

/// A way of running the sandbox: runsc's flags, and the case files it
/// runs (None: all of them).
struct Mode {
    name: &'static str,
    flags: &'static [&'static str],
    files: Option<&'static [&'static str]>,
}

/// Every case runs on each platform (systrap is the default); file access
/// over lisafs (`--directfs=false`) runs the basic and file cases.
const MODES: [Mode; 4] = [
    Mode {
        name: "systrap",
        flags: &["--platform=systrap"],
        files: None,
    },
    Mode {
        name: "ptrace",
        flags: &["--platform=ptrace"],
        files: None,
    },
    Mode {
        name: "systrap+nodirectfs",
        flags: &["--platform=systrap", "--directfs=false"],
        files: Some(&["basic", "files"]),
    },
    // Every syscall through the signal path, as before syscall patching.
    Mode {
        name: "systrap+nopatch",
        flags: &["--platform=systrap", "--systrap-disable-syscall-patching"],
        files: Some(&["basic"]),
    },
];

fn command(argv: &[String], flags: &[String], mode: Option<&Mode>) -> Command {
    let mut cmd = if let Some(mode) = mode {
        let mut c = Command::new(RUNSC);
        c.args(mode.flags).args(flags).arg("do").args(argv);
        c
    } else {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    };
    cmd.env("DIFF_MARKER", "differential").stdin(Stdio::null());
    cmd
}

/// The longest one run of a case may take: a hung run (sandboxed or
/// native) fails its case instead of holding up the whole suite.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// `cmd.output()`, but a run still going after `limit` is killed with
/// every process it started that is still below it, and reported.
fn output_within(mut cmd: Command, limit: Duration) -> Result<Output, String> {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {cmd:?}: {e}"))?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > limit {
            kill_tree(child.id() as i32);
            let _ = child.wait();
            // What it printed says where it stopped.
            let (out, err) = (out.join().expect("reader"), err.join().expect("reader"));
            return Err(format!(
                "{cmd:?} still ran after {} s: killed\n  stdout so far: {:?}\n  stderr so far: {:?}",
                limit.as_secs(),
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: out.join().expect("reader"),
        stderr: err.join().expect("reader"),
    })
}

/// SIGKILL `pid` and its descendants (found through /proc's parent links).
fn kill_tree(pid: i32) {
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(p) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // The parent is the second field after the parenthesised name.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|f| f.parse::<i32>().ok());
            if ppid == Some(parent) && !tree.contains(&p) {
                tree.push(p);
            }
        }
        i += 1;
    }
    for p in tree {
        // SAFETY: kill takes integers only.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
}

/// The shell's view of an exit: the code, or 128 + the signal.
fn code(out: &Output) -> i32 {
    out.status
        .code()
        .or_else(|| out.status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

fn show(out: &Output) -> String {
    format!(
        "exit {}\n  stdout: {:?}\n  stderr: {:?}",
        code(out),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run one case in `mode`; `Err` says how the two runs differ.
fn check(case: &Case, mode: &Mode) -> Result<(), String> {
    let sandboxed = output_within(command(&case.argv, &case.flags, Some(mode)), RUN_LIMIT)
        .map_err(|e| format!("running runsc: {e}"))?;
    match case.kind.as_str() {
        "run" => {
            let argv: Vec<String> = case
                .native_prefix
                .iter()
                .chain(&case.argv)
                .cloned()
                .collect();
            // The native run is the reference: one that hangs (a fixture's
            // rare race on the host) is run once more before the case fails.
            let native = output_within(command(&argv, &[], None), RUN_LIMIT)
                .or_else(|e| {
                    eprintln!("{}: native run: {e}; running it again", case.name);
                    output_within(command(&argv, &[], None), RUN_LIMIT)
                })
                .map_err(|e| format!("running natively: {e}"))?;
            // A program missing on the host fails both runs alike, which
            // would compare equal and prove nothing: test.sh installs it.
            let err = String::from_utf8_lossy(&native.stderr);
            if err.contains(": not found") || err.contains("command not found") {
                return Err(format!(
                    "the native run could not find a program (test.sh must install it):\n  {}",
                    show(&native)
                ));
            }
            let same = native.stdout == sandboxed.stdout
                && native.stderr == sandboxed.stderr
                && code(&native) == code(&sandboxed);
            if same {
                Ok(())
            } else {
                Err(format!(
                    "native:  {}\nsandbox: {}",
                    show(&native),
                    show(&sandboxed)
                ))
            }
        }
        "exec-error" => {
            let errno = match command(&case.argv, &[], None).spawn() {
                Ok(mut child) => {
                    let _ = child.wait();
                    return Err("native execve succeeded; the case expects it to fail".into());
                }
                Err(e) => e.raw_os_error().expect("execve failures carry an errno"),
            };
            let words = abi::Errno::new(errno).expect("a valid errno").description();
            let want = format!(
                "{START_PREFIX}creating process: failed to load {}: {words}\n",
                case.argv[0]
            );
            if code(&sandboxed) == 128
                && sandboxed.stdout.is_empty()
                && String::from_utf8_lossy(&sandboxed.stderr) == want
            {
                Ok(())
            } else {
                Err(format!("native execve: errno {errno} ({words}); wanted exit 128 and {want:?}\nsandbox: {}", show(&sandboxed)))
            }
        }
        other => Err(format!("unknown case kind {other:?}")),
    }
}

#[test]
fn differential_cases() {
    let fix = build_fixtures();
    let mut cases = load_cases(&fix);
    assert!(
        cases.len() >= 10,
        "the case files hold {} cases",
        cases.len()
    );
    // While working on one area: DIFF_CASES=name,prefix* runs only those.
    if let Ok(only) = std::env::var("DIFF_CASES") {
        let wanted = |name: &str| {
            only.split(',').any(|w| match w.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == w,
            })
        };
        cases.retain(|c| wanted(&c.name));
        assert!(!cases.is_empty(), "DIFF_CASES={only} matches no case");
    }
    // DIFF_MODES=systrap+nodirectfs,... runs only those modes.
    let modes: Vec<&Mode> = match std::env::var("DIFF_MODES") {
        Ok(only) => MODES
            .iter()
            .filter(|m| only.split(',').any(|w| w == m.name))
            .collect(),
        Err(_) => MODES.iter().collect(),
    };
    assert!(!modes.is_empty(), "DIFF_MODES matches no mode");
    let mut failures = BTreeMap::new();
    let mut runs = 0;
    for mode in modes {
        let name = mode.name;
        for case in &cases {
            if mode.files.is_some_and(|f| !f.contains(&case.file.as_str())) {
                continue;
            }
            runs += 1;
            match check(case, mode) {
                Ok(()) => println!("ok    {name} {} {}", case.kind, case.name),
                Err(why) => {
                    println!("FAIL  {name} {} {}\n{why}", case.kind, case.name);
                    failures.insert(format!("{name}/{}", case.name), why);
                }
            }
        }
    }
    println!(
        "{runs} case runs: {} passed, {} failed",
        runs - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "differing cases: {:?}",
        failures.keys().collect::<Vec<_>>()
    );
}

#[test]
fn case_lines_split_like_a_shell() {
    assert_eq!(
        split("run a  /bin/x 'two words' b"),
        ["run", "a", "/bin/x", "two words", "b"]
    );
    assert_eq!(split("run a x '%s\\n' ''"), ["run", "a", "x", "%s\n", ""]);
}
