//! `runsc`: the gVisor runtime's command line, compatible with upstream's.
//!
//! `main` parses Go-style flags ([`cli`]), sets up logging the way upstream's
//! `--log`, `--debug` and `--debug-log` do, and runs the subcommand.

mod cgroup;
mod cli;
mod cmd_boot;
mod cmd_do;
mod cmd_gofer;
mod cmd_oci;
mod control;
mod fds;
mod gofer_binary;
mod hooks;
mod isolate;
mod logging;
mod sandbox;
mod sentry_binary;
mod sentry_filter;
mod spec;
mod state;
mod userns;

use std::ffi::OsString;

use cli::Command;

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let invocation = match cli::parse(&argv) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(e.exit_code());
        }
    };
    let config = invocation.config;
    // Flags whose feature is missing matter only to commands that run
    // something; help and version answer whatever else is set.
    if matches!(invocation.command, Command::Do(_) | Command::Boot(_)) {
        if let Err(e) = config.check_supported() {
            eprintln!("{e}");
            std::process::exit(e.exit_code());
        }
    }
    let code = match invocation.command {
        Command::Help(Some(topic)) if topic == "syscalls" => {
            print!("{}", syscalls_text());
            0
        }
        Command::SyscallsMarkdown => {
            print!("{}", sentry::syscalls_markdown());
            0
        }
        Command::Help(topic) => match cli::help_text(topic.as_deref()) {
            Ok(text) => {
                print!("{text}");
                0
            }
            Err(e) => {
                eprintln!("{e}");
                e.exit_code()
            }
        },
        Command::Flags => {
            print!("{}", cli::flags_text());
            0
        }
        Command::Version => {
            print!("{}", cli::version_text());
            0
        }
        Command::Do(args) => {
            logging::init(&config, "do");
            cmd_do::run(&config, args)
        }
        Command::Boot(args) => {
            logging::init(&config, "boot");
            cmd_boot::run(&config, args)
        }
        Command::Gofer(args) => {
            logging::init(&config, "gofer");
            cmd_gofer::run(&config, args)
        }
        Command::Oci(args) => cmd_oci::run(&config, args),
        Command::Unimplemented { name } => {
            eprintln!("runsc {name}: this subcommand is not implemented yet");
            128
        }
    };
    std::process::exit(code);
}

/// `runsc help syscalls`: every syscall with its support level, in the
/// columns of upstream's `runsc syscalls` table (runsc/cmd/syscalls.go).
fn syscalls_text() -> String {
    let table = sentry::syscall_table();
    let width = |f: &dyn Fn(&sentry::Entry) -> usize, head: &str| {
        table.iter().map(f).max().unwrap_or(0).max(head.len()) + 2
    };
    let (num_w, name_w, support_w) = (
        width(&|e| e.number.to_string().len(), "NUM"),
        width(&|e| e.name().len(), "NAME"),
        width(&|e| e.support().label().len(), "SUPPORT"),
    );
    let mut out = format!(
        "linux/amd64:\n\n{:num_w$}{:name_w$}{:support_w$}NOTE\n",
        "NUM", "NAME", "SUPPORT"
    );
    for e in table {
        let s = e.support();
        let line = format!(
            "{:<num_w$}{:name_w$}{:support_w$}{}",
            e.number,
            e.name(),
            s.label(),
            s.note()
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
