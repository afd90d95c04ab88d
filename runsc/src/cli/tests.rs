use std::ffi::OsString;

use super::goflag::{format_duration, parse_duration, parse_int, parse_uint, NumError};
use super::*;

fn argv(args: &[&str]) -> Vec<OsString> {
    std::iter::once("runsc")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect()
}

fn ok(args: &[&str]) -> Invocation {
    parse(&argv(args)).unwrap_or_else(|e| panic!("parse({args:?}) failed: {e}"))
}

fn err(args: &[&str]) -> CliError {
    match parse(&argv(args)) {
        Ok(inv) => panic!("parse({args:?}) unexpectedly gave {:?}", inv.command),
        Err(e) => e,
    }
}

/// The name of an OCI command, or "" for anything else.
fn oci_name(c: &Command) -> &str {
    match c {
        Command::Oci(a) => &a.name,
        _ => "",
    }
}

fn first_line(e: &CliError) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}

#[test]
fn both_dash_styles_and_value_forms() {
    for args in [
        ["-log=/tmp/a", "list"].as_slice(),
        ["--log=/tmp/a", "list"].as_slice(),
        ["-log", "/tmp/a", "list"].as_slice(),
        ["--log", "/tmp/a", "list"].as_slice(),
    ] {
        let inv = ok(args);
        assert_eq!(inv.config.get("log"), "/tmp/a", "{args:?}");
        assert!(inv.config.is_set("log"));
        assert_eq!(oci_name(&inv.command), "list");
    }
}

#[test]
fn bool_flags() {
    let inv = ok(&["--debug", "list"]);
    assert!(inv.config.get_bool("debug"));
    assert!(inv.config.is_set("debug"));

    let inv = ok(&["--directfs=false", "-debug=1", "list"]);
    assert!(!inv.config.get_bool("directfs"));
    assert_eq!(inv.config.get("directfs"), "false");
    assert!(inv.config.get_bool("debug"));

    for (spelling, want) in [
        ("t", true),
        ("T", true),
        ("TRUE", true),
        ("True", true),
        ("0", false),
        ("f", false),
        ("F", false),
        ("FALSE", false),
        ("False", false),
    ] {
        let inv = ok(&[&format!("--strace={spelling}"), "list"]);
        assert_eq!(inv.config.get_bool("strace"), want, "{spelling}");
    }

    let e = err(&["--debug=yes", "list"]);
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        first_line(&e),
        r#"invalid boolean value "yes" for -debug: parse error"#
    );
}

#[test]
fn bool_does_not_consume_next_argument() {
    // `-debug false` sets debug and makes "false" the subcommand, which is
    // unknown: usage and exit 128.
    let e = err(&["-debug", "false", "list"]);
    assert_eq!(e.exit_code(), 128);
    assert!(e
        .to_string()
        .starts_with("Usage: runsc <flags> <subcommand> <subcommand args>"));

    let inv = ok(&["-debug", "kill", "--all", "c1"]);
    assert!(inv.config.get_bool("debug"));
    let Command::Oci(k) = inv.command else {
        panic!("kill is an OCI command")
    };
    assert!(k.boolean("all"));
    assert_eq!(k.args, ["c1"]);
}

#[test]
fn defaults_match_upstream() {
    let inv = ok(&["list"]);
    let c = &inv.config;
    assert_eq!(c.get("platform"), "systrap");
    assert_eq!(c.get("overlay2"), "root:self");
    assert_eq!(c.get("network"), "sandbox");
    assert_eq!(c.get("log-format"), "text");
    assert_eq!(c.get("host-settings"), "check");
    assert_eq!(
        c.get("nvproxy-allowed-driver-capabilities"),
        "utility,compute"
    );
    assert_eq!(c.get("sidecar-release-enforcement-policy"), "NEVER");
    assert!(c.get_bool("directfs"));
    assert!(c.get_bool("cpu-num-from-quota"));
    assert!(!c.get_bool("debug"));
    assert_eq!(c.get_int("fdlimit"), -1);
    assert_eq!(c.get_int("strace-log-size"), 1024);
    assert_eq!(c.get_int("log-fd"), -1);
    assert_eq!(c.get("control-rpc-stop-timeout"), "15s");
    assert_eq!(c.get_int("control-rpc-stop-timeout"), 15_000_000_000);
    assert!(!c.is_set("platform"));
    // Root is resolved like NewFromFlags, but still counts as not given.
    assert!(c.get("root").ends_with("runsc"), "{}", c.get("root"));
    assert!(!c.is_set("root"));
    assert!(c.check_supported().is_ok());
}

#[test]
#[should_panic(expected = "unknown global flag")]
fn get_unknown_flag_panics() {
    ok(&["list"]).config.get("no-such-flag");
}

#[test]
fn containerd_call() {
    let inv = ok(&[
        "--root",
        "/run/containerd/runsc/k8s.io",
        "--log",
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/log.json",
        "--log-format",
        "json",
        "create",
        "--bundle",
        "/run/bundle",
        "abc",
    ]);
    assert_eq!(oci_name(&inv.command), "create");
    assert_eq!(inv.config.get("root"), "/run/containerd/runsc/k8s.io");
    assert!(inv.config.is_set("root"));
    assert_eq!(
        inv.config.get("log"),
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/log.json"
    );
    assert_eq!(inv.config.get("log-format"), "json");
    assert!(inv.config.check_supported().is_ok());
}

#[test]
fn unknown_global_flag_exits_2_with_go_message_and_usage() {
    let e = err(&["--bogus", "list"]);
    assert_eq!(e.exit_code(), 2);
    let text = e.to_string();
    assert_eq!(first_line(&e), "flag provided but not defined: -bogus");
    assert!(text.contains("\nUsage: runsc <flags> <subcommand> <subcommand args>\n"));
    assert!(text.ends_with("Use \"runsc flags\" for a list of top-level flags"));
}

#[test]
fn other_global_syntax_errors_exit_2() {
    let e = err(&["---x"]);
    assert_eq!(
        (e.exit_code(), first_line(&e)),
        (2, "bad flag syntax: ---x".to_string())
    );
    let e = err(&["--fdlimit"]);
    assert_eq!(
        (e.exit_code(), first_line(&e)),
        (2, "flag needs an argument: -fdlimit".to_string())
    );
    let e = err(&["--=x"]);
    assert_eq!(first_line(&e), "bad flag syntax: --=x");
}

#[test]
fn bad_int_wording() {
    let e = err(&["--fdlimit=x", "list"]);
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        first_line(&e),
        r#"invalid value "x" for flag -fdlimit: parse error"#
    );
    let e = err(&["--fdlimit=99999999999999999999", "list"]);
    assert_eq!(
        first_line(&e),
        r#"invalid value "99999999999999999999" for flag -fdlimit: value out of range"#
    );
    let e = err(&["--strace-log-size=-1", "list"]);
    assert_eq!(
        first_line(&e),
        r#"invalid value "-1" for flag -strace-log-size: parse error"#
    );
    let e = err(&["--control-rpc-stop-timeout=10", "list"]);
    assert_eq!(
        first_line(&e),
        r#"invalid value "10" for flag -control-rpc-stop-timeout: parse error"#
    );
}

#[test]
fn value_flag_errors_use_upstream_wording() {
    let e = err(&["--network=bogus", "list"]);
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        first_line(&e),
        r#"invalid value "bogus" for flag -network: invalid network type "bogus""#
    );
    let e = err(&["--overlay2=zz", "list"]);
    assert_eq!(
        first_line(&e),
        r#"invalid value "zz" for flag -overlay2: expected format is --overlay2={mount}:{medium}, got "zz""#
    );
    let e = err(&["--file-access=x", "list"]);
    assert_eq!(
        first_line(&e),
        r#"invalid value "x" for flag -file-access: invalid file access type "x""#
    );
    for good in ["none", "all:memory", "root:self", "root:dir=/tmp,size=1g"] {
        let inv = ok(&[&format!("--overlay2={good}"), "list"]);
        assert_eq!(inv.config.get("overlay2"), good);
    }
}

#[test]
fn int_and_duration_syntax_like_go() {
    let inv = ok(&[
        "--fdlimit=0x10",
        "--dcache",
        "1_000",
        "--panic-signal=0o14",
        "list",
    ]);
    assert_eq!(inv.config.get_int("fdlimit"), 16);
    assert_eq!(inv.config.get("fdlimit"), "16");
    assert_eq!(inv.config.get_int("dcache"), 1000);
    assert_eq!(inv.config.get_int("panic-signal"), 12);

    assert_eq!(parse_int("-0b101"), Ok(-5));
    assert_eq!(parse_int("017"), Ok(15));
    assert_eq!(parse_int("0"), Ok(0));
    assert_eq!(parse_int("-9223372036854775808"), Ok(i64::MIN));
    assert_eq!(parse_int("9223372036854775808"), Err(NumError::Range));
    assert_eq!(parse_int("1__0"), Err(NumError::Syntax));
    assert_eq!(parse_int("_1"), Err(NumError::Syntax));
    assert_eq!(parse_int("1_"), Err(NumError::Syntax));
    assert_eq!(parse_int("0x"), Err(NumError::Syntax));
    assert_eq!(parse_int("08"), Err(NumError::Syntax));
    assert_eq!(parse_int(""), Err(NumError::Syntax));
    assert_eq!(parse_uint("0x_1f"), Ok(31));
    assert_eq!(parse_uint("+1"), Err(NumError::Syntax));

    assert_eq!(parse_duration("15s"), Some(15_000_000_000));
    assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
    assert_eq!(parse_duration("100ms"), Some(100_000_000));
    assert_eq!(parse_duration("1.5h"), Some(5_400_000_000_000));
    assert_eq!(parse_duration("-2us"), Some(-2_000));
    assert_eq!(parse_duration("0"), Some(0));
    assert_eq!(parse_duration("5"), None);
    assert_eq!(parse_duration(""), None);
    assert_eq!(parse_duration("1x"), None);
    assert_eq!(format_duration(90_000_000_000), "1m30s");
    assert_eq!(format_duration(3_600_000_000_000), "1h0m0s");
    assert_eq!(format_duration(100_000_000), "100ms");
    assert_eq!(format_duration(1_500_000_000), "1.5s");
    assert_eq!(format_duration(1_500), "1.5\u{b5}s");
    assert_eq!(format_duration(0), "0s");

    let inv = ok(&["--control-rpc-stop-timeout", "90s", "list"]);
    assert_eq!(inv.config.get("control-rpc-stop-timeout"), "1m30s");
    assert_eq!(
        inv.config.get_int("control-rpc-stop-timeout"),
        90_000_000_000
    );
}

#[test]
fn global_parsing_stops_at_subcommand_and_double_dash() {
    // Flags after the subcommand are the subcommand's, not global ones.
    let e = err(&["list", "--debug"]);
    assert_eq!(first_line(&e), "flag provided but not defined: -debug");
    // `--` ends the global flags; what follows is the subcommand.
    let inv = ok(&["--debug", "--", "list"]);
    assert!(inv.config.get_bool("debug"));
    assert_eq!(oci_name(&inv.command), "list");
    // A lone "-" is a positional, i.e. an (unknown) subcommand.
    assert_eq!(err(&["-"]).exit_code(), 128);
    // Last occurrence wins.
    assert_eq!(ok(&["--log=a", "--log=b", "list"]).config.get("log"), "b");
}

#[test]
fn unknown_or_missing_subcommand_exits_128() {
    let e = err(&["bogus"]);
    assert_eq!(e.exit_code(), 128);
    assert!(e
        .to_string()
        .starts_with("Usage: runsc <flags> <subcommand> <subcommand args>\n"));
    let e = err(&[]);
    assert_eq!(e.exit_code(), 128);
    assert!(e
        .to_string()
        .contains("\tdo               run one host command in a throwaway sandbox"));
}

#[test]
fn every_listed_subcommand_is_recognised() {
    for name in [
        "create",
        "start",
        "run",
        "exec",
        "kill",
        "delete",
        "state",
        "list",
        "ps",
        "events",
        "pause",
        "resume",
        "checkpoint",
        "restore",
        "spec",
        "update",
        "wait",
        "debug",
        "umount",
        "install",
        "uninstall",
        "mitigate",
        "trace",
        "statefile",
        "metric-server",
        "port-forward",
        "tar",
    ] {
        let cmd = ok(&[name]).command;
        if OCI_COMMANDS.contains(&name) {
            assert_eq!(oci_name(&cmd), name);
        } else {
            assert_eq!(cmd, Command::Unimplemented { name: name.into() }, "{name}");
        }
    }
}

#[test]
fn do_flags_and_program_args() {
    let inv = ok(&["do", "ls", "-l"]);
    let Command::Do(d) = inv.command else {
        panic!("not do")
    };
    assert_eq!(d.argv, vec!["ls", "-l"]);
    assert_eq!(d.root, "/");
    assert_eq!(d.cwd, ".");
    assert!(d.force_overlay);
    assert!(!d.quiet);
    assert_eq!(d.ip, "192.168.10.2");
    assert!(d.volumes.is_empty());

    let inv = ok(&[
        "--network=none",
        "do",
        "-root",
        "/srv",
        "--cwd=/tmp",
        "--force-overlay=false",
        "-quiet",
        "--ip=10.0.0.2",
        "--volume=/a:/b",
        "--volume",
        "/c",
        "--uid-map=0 1000 1",
        "--gid-map",
        "0 1000 1",
        "--",
        "sh",
        "-c",
        "echo hi",
    ]);
    assert_eq!(inv.config.get("network"), "none");
    let Command::Do(d) = inv.command else {
        panic!("not do")
    };
    assert_eq!(d.root, "/srv");
    assert_eq!(d.cwd, "/tmp");
    assert!(!d.force_overlay);
    assert!(d.quiet);
    assert_eq!(d.ip, "10.0.0.2");
    assert_eq!(d.volumes, vec!["/a:/b", "/c"]);
    assert_eq!(d.uid_map, vec!["0 1000 1"]);
    assert_eq!(d.gid_map, vec!["0 1000 1"]);
    assert_eq!(d.argv, vec!["sh", "-c", "echo hi"]);
}

#[test]
fn do_errors_exit_128() {
    let e = err(&["do"]);
    assert_eq!(e.exit_code(), 128);
    assert!(e
        .to_string()
        .starts_with("do [flags] <cmd> [args...] - run a host command in a sandbox."));

    let e = err(&["do", "--bogus", "ls"]);
    assert_eq!(e.exit_code(), 128);
    assert_eq!(first_line(&e), "flag provided but not defined: -bogus");
    assert!(e
        .to_string()
        .contains("\ndo [flags] <cmd> [args...] - run a host command in a sandbox."));

    let e = err(&["do", "--uid-map=0 1000", "ls"]);
    assert_eq!(
        first_line(&e),
        r#"invalid value "0 1000" for flag -uid-map: invalid mapping: 0 1000"#
    );
    assert_eq!(e.exit_code(), 128);
}

#[test]
fn boot_fd_lists() {
    let inv = ok(&[
        "--debug-log-fd=3",
        "boot",
        "--bundle=/b",
        "--spec-fd=4",
        "--controller-fd",
        "5",
        "--start-sync-fd=6",
        "--mounts-fd=7",
        "--io-fds=8,9",
        "--io-fds=10",
        "--stdio-fds=0,1,2",
        "--status-fd=11",
        "--apply-caps",
        "--attached=true",
        "--total-memory=0x1000",
        "--cpu-num=2",
        "--pass-fd=3:4",
        "sandbox-1",
    ]);
    assert_eq!(inv.config.get_int("debug-log-fd"), 3);
    let Command::Boot(b) = inv.command else {
        panic!("not boot")
    };
    assert_eq!(b.bundle, "/b");
    assert_eq!(
        (
            b.spec_fd,
            b.controller_fd,
            b.start_sync_fd,
            b.mounts_fd,
            b.status_fd
        ),
        (4, 5, 6, 7, 11)
    );
    assert_eq!(b.io_fds, vec![8, 9, 10]);
    assert_eq!(b.stdio_fds, vec![0, 1, 2]);
    assert!(b.apply_caps && b.attached && !b.setup_root);
    assert_eq!(b.id, "sandbox-1");

    let inv = ok(&[
        "boot",
        "--stdio-fds=0",
        "--stdio-fds=1",
        "--stdio-fds",
        "2",
        "id",
    ]);
    let Command::Boot(b) = inv.command else {
        panic!("not boot")
    };
    assert_eq!(b.stdio_fds, vec![0, 1, 2]);
    assert_eq!((b.spec_fd, b.status_fd, b.mounts_fd), (-1, -1, -1));
    assert!(b.io_fds.is_empty());

    let e = err(&["boot", "--io-fds=1,x", "id"]);
    assert_eq!(e.exit_code(), 128);
    assert_eq!(
        first_line(&e),
        r#"invalid value "1,x" for flag -io-fds: invalid flag value: strconv.Atoi: parsing "x": invalid syntax"#
    );
    let e = err(&["boot", "--spec-fd=3"]);
    assert_eq!(e.exit_code(), 128);
    assert!(e.to_string().starts_with("boot [flags] <container id>"));
    assert_eq!(err(&["boot", "a", "b"]).exit_code(), 128);
}

#[test]
fn debug_fd_flags_only_for_boot_and_gofer() {
    let e = err(&["--panic-log-fd=3", "list"]);
    assert_eq!(e.exit_code(), 128);
    assert_eq!(
        e.to_string(),
        "flags --debug-log-fd and --panic-log-fd should only be passed to 'boot' and 'gofer' command, but was passed to \"list\""
    );
    assert_eq!(
        ok(&["--panic-log-fd=3", "gofer", "id"])
            .config
            .get_int("panic-log-fd"),
        3
    );
}

#[test]
fn post_parse_validation_exits_128() {
    let e = err(&["--platform=zz", "list"]);
    assert_eq!(
        (e.exit_code(), e.to_string()),
        (128, "unknown platform: zz".to_string())
    );
    let e = err(&["--log-format=xml", "list"]);
    assert_eq!(e.exit_code(), 128);
    assert_eq!(
        e.to_string(),
        r#"invalid log format "xml", must be 'text', 'json', or 'json-k8s'"#
    );
    let e = err(&["--num-network-channels=0", "list"]);
    assert_eq!(e.to_string(), "num_network_channels must be > 0, got: 0");
}

#[test]
fn to_flags_round_trips() {
    let inv = ok(&[
        "--root=/r",
        "--debug",
        "--network=none",
        "--fdlimit=0x20",
        "--overlay2=all:memory",
        "--control-rpc-stop-timeout=2m",
        "--log-fd=5",
        "list",
    ]);
    let flags = inv.config.to_flags();
    assert!(flags.contains(&"--root=/r".to_string()));
    assert!(flags.contains(&"--debug=true".to_string()));
    assert!(flags.contains(&"--fdlimit=32".to_string()));
    assert!(flags.contains(&"--directfs=true".to_string()));
    assert!(flags.contains(&"--control-rpc-stop-timeout=2m0s".to_string()));
    // Front-end-only flags are not part of the Config.
    assert!(!flags
        .iter()
        .any(|f| f.starts_with("--log-fd=") || f.starts_with("--version=")));
    assert_eq!(flags.len(), GLOBAL_FLAGS.len() - NOT_IN_CONFIG.len());

    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.push("list");
    let again = ok(&args);
    for def in GLOBAL_FLAGS {
        if NOT_IN_CONFIG.contains(&def.name) {
            continue;
        }
        assert_eq!(
            again.config.get(def.name),
            inv.config.get(def.name),
            "{}",
            def.name
        );
    }
    assert_eq!(again.config.to_flags(), flags);
}

#[test]
fn check_supported_names_the_flag() {
    let inv = ok(&["--nvproxy", "list"]);
    let e = inv.config.check_supported().unwrap_err();
    assert_eq!(e.exit_code(), 128);
    assert_eq!(
        e.to_string(),
        "flag --nvproxy=true is not supported by this runsc yet"
    );

    let e = ok(&["--platform=kvm", "list"])
        .config
        .check_supported()
        .unwrap_err();
    assert!(e
        .to_string()
        .starts_with("flag --platform=kvm is not supported by this runsc yet"));

    let e = ok(&["--network=plugin", "list"])
        .config
        .check_supported()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "flag --network=plugin is not supported by this runsc yet"
    );

    // Features not built yet are refused even where the flag is common.
    for flag in ["--overlay2=none", "--rootless"] {
        let e = ok(&[flag, "list"]).config.check_supported().unwrap_err();
        assert!(
            e.to_string().contains("is not supported by this runsc yet"),
            "{flag}: {e}"
        );
    }

    // Supported values and explicit defaults pass.
    for args in [
        ["--platform=ptrace", "list"].as_slice(),
        ["--strace", "--strace-syscalls=read,write", "list"].as_slice(),
        ["--strace", "--strace-log-size=10", "list"].as_slice(),
        ["--network=none", "list"].as_slice(),
        [
            "--overlay2=root:self",
            "--directfs=false",
            "--file-access=shared",
            "--rootless=false",
            "list",
        ]
        .as_slice(),
        [
            "--vfs2=false",
            "--TESTONLY-unsafe-nonroot",
            "--host-settings=ignore",
            "list",
        ]
        .as_slice(),
        ["--nvproxy=false", "--fdlimit=-1", "list"].as_slice(),
    ] {
        assert!(ok(args).config.check_supported().is_ok(), "{args:?}");
    }
}

#[test]
fn version_and_help_commands() {
    assert_eq!(ok(&["--version"]).command, Command::Version);
    assert_eq!(ok(&["-version"]).command, Command::Version);
    // Version wins over an invalid configuration, as upstream.
    assert_eq!(ok(&["-version", "--platform=zz"]).command, Command::Version);
    assert_eq!(ok(&["help"]).command, Command::Help(None));
    assert_eq!(ok(&["-help"]).command, Command::Help(None));
    assert_eq!(
        ok(&["help", "do"]).command,
        Command::Help(Some("do".into()))
    );
    assert_eq!(
        ok(&["help", "platforms"]).command,
        Command::Help(Some("platforms".into()))
    );
    assert_eq!(ok(&["flags"]).command, Command::Flags);
    assert_eq!(
        ok(&["help", "syscalls", "--markdown"]).command,
        Command::SyscallsMarkdown
    );
    let e = err(&["help", "bogus"]);
    assert_eq!(e.exit_code(), 128);
    assert_eq!(first_line(&e), "Subcommand bogus not understood");
}

#[test]
fn version_text_format() {
    let v = version_text();
    assert_eq!(
        v,
        format!(
            "runsc version {}\nspec: 1.0.2-dev\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn help_texts() {
    let top = help_text(None).unwrap();
    assert!(top.starts_with("Usage: runsc <flags> <subcommand> <subcommand args>\n\nrunsc runs containers in gVisor sandboxes"));
    assert!(top.contains(
        "Subcommands:\n\tcheckpoint       save a running container's state to an image (experimental)\n"
    ));
    assert!(top.contains(
        "Subcommands for internal use only:\n\tboot             become the sandbox process (the Sentry)\n"
    ));
    assert!(top.contains("Additional help topics (Use \"runsc help <topic>\" to see help on the topic):\n\tplatforms        list the platforms --platform accepts\n"));
    assert!(top.ends_with("\nUse \"runsc flags\" for a list of top-level flags\n"));
    // Groups in subcommands' order: unnamed first, then sorted names.
    let pos = |s: &str| top.find(s).unwrap();
    assert!(pos("Subcommands for debug:") < pos("Subcommands for helpers:"));
    assert!(pos("Subcommands for helpers:") < pos("Subcommands for internal use only:"));
    assert!(pos("Subcommands for internal use only:") < pos("Subcommands for metrics:"));

    let d = help_text(Some("do")).unwrap();
    assert!(d.starts_with("do [flags] <cmd> [args...] - run a host command in a sandbox.\n"));
    assert!(d.contains("  -cwd string\n    \t"));
    assert!(d.contains("(default \".\")\n"));
    assert!(d.contains("  -force-overlay\n    \t"));
    assert!(d.contains("(default true)\n"));

    let b = help_text(Some("boot")).unwrap();
    assert!(b.contains("  -spec-fd int\n    \t"));
    assert!(b.contains("  -stdio-fds value\n    \t"));

    assert_eq!(
        help_text(Some("platforms")).unwrap(),
        "systrap\nptrace\nkvm\n"
    );
    assert!(help_text(Some("syscalls"))
        .unwrap()
        .starts_with("syscalls [options]"));
    assert_eq!(help_text(Some("nope")).unwrap_err().exit_code(), 128);
}

#[test]
fn flags_text_format() {
    let t = flags_text();
    // Sorted by name, upper case first (byte order), like Go.
    assert!(t.starts_with("  -EXPERIMENTAL-xdp value\n    \t"));
    assert!(t.contains("  -debug\n    \tlog at debug level.\n"));
    assert!(t.contains("  -fdlimit int\n    \t"));
    assert!(t.contains("(default -1)\n"));
    assert!(t.contains("  -platform string\n    \t"));
    assert!(t.contains("(default \"systrap\")\n"));
    assert!(t.contains("  -control-rpc-stop-timeout duration\n"));
    assert!(t.contains("  -strace-log-size uint\n"));
    assert!(t.contains("  -version\n    \tprint the version and exit.\n"));
    // Zero defaults are not shown.
    let debug_entry = t
        .split("  -debug\n")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap();
    assert!(!debug_entry.contains("(default"));
    // One entry per flag.
    assert_eq!(t.matches("\n    \t").count(), GLOBAL_FLAGS.len());
}

#[test]
fn tables_are_well_formed() {
    for table in [GLOBAL_FLAGS, DO_FLAGS, BOOT_FLAGS] {
        let mut names: Vec<&str> = table.iter().map(|d| d.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate flag name");
        for def in table {
            assert!(
                !def.help.contains('`'),
                "{}: backquotes change Go's usage output",
                def.name
            );
            assert!(!def.help.is_empty(), "{}", def.name);
        }
    }
    // Every global default is a canonical, valid value.
    let mut args: Vec<String> = GLOBAL_FLAGS
        .iter()
        .filter(|d| !d.kind.is_list())
        .map(|d| format!("--{}={}", d.name, d.default))
        .collect();
    args.push("list".into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let inv = ok(&refs);
    for def in GLOBAL_FLAGS {
        if def.name != "root" {
            assert_eq!(inv.config.get(def.name), def.default, "{}", def.name);
        }
    }
    assert!(GLOBAL_FLAGS.len() >= 103);
}

#[test]
fn non_utf8_argument_is_rejected() {
    use std::os::unix::ffi::OsStringExt;
    let args = vec![
        OsString::from("runsc"),
        OsString::from_vec(vec![0xff, 0xfe]),
    ];
    let e = parse(&args).unwrap_err();
    assert_eq!(e.exit_code(), 128);
    assert!(e.to_string().starts_with("argument 1 is not valid UTF-8"));
}

#[test]
fn gofer_takes_upstreams_flags() {
    let inv = ok(&[
        "--TESTONLY-unsafe-nonroot",
        "gofer",
        "--bundle",
        "/b",
        "--setup-root=false",
        "-apply-caps=false",
        "--io-fds=3",
        "--io-fds=6,7",
        "--spec-fd=4",
        "--mounts-fd=5",
        "--sync-userns-fd=8",
        "--gofer-mount-confs=lisafs:self,lisafs:none",
        "--profile-cpu-fd=9",
        "cid",
    ]);
    assert_eq!(
        inv.command,
        Command::Gofer(GoferArgs {
            bundle: "/b".into(),
            io_fds: vec![3, 6, 7],
            dev_io_fd: -1,
            spec_fd: 4,
            mounts_fd: 5,
            sync_userns_fd: 8,
            sync_chroot_fd: -1,
            apply_caps: false,
            setup_root: false,
            id: "cid".into(),
        })
    );
    // Upstream's defaults: caps applied, root set up.
    match ok(&["gofer", "x"]).command {
        Command::Gofer(g) => assert!(g.apply_caps && g.setup_root && g.io_fds.is_empty()),
        c => panic!("{c:?}"),
    }
    assert_eq!(err(&["gofer"]).exit_code(), 128);
    assert_eq!(err(&["gofer", "--no-such-flag", "x"]).exit_code(), 128);
}
