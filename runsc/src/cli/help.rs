//! Subcommand table and the help texts built from it, laid out like
//! google/subcommands (`explain`, `ExplainGroup`, `ExplainCommand`) and
//! runsc's own `help` command.

use super::flags::{BOOT_FLAGS, DO_FLAGS, GLOBAL_FLAGS, PLATFORMS};
use super::goflag::{print_defaults, FlagDef};

/// One upstream subcommand.
pub(crate) struct Subcommand {
    pub(crate) name: &'static str,
    /// subcommands group; "" is the unnamed first group.
    pub(crate) group: &'static str,
    pub(crate) synopsis: &'static str,
    /// The `Usage()` text (ends with a newline).
    pub(crate) usage: &'static str,
}

const fn c(
    name: &'static str,
    group: &'static str,
    synopsis: &'static str,
    usage: &'static str,
) -> Subcommand {
    Subcommand {
        name,
        group,
        synopsis,
        usage,
    }
}

const HELPERS: &str = "helpers";
const DEBUG: &str = "debug";
const METRICS: &str = "metrics";
const INTERNAL: &str = "internal use only";

/// Every upstream subcommand, sorted by name within each group.
#[rustfmt::skip]
pub(crate) static SUBCOMMANDS: &[Subcommand] = &[
    c("checkpoint", "", "checkpoint current state of container (experimental)", "checkpoint [flags] <container id> - save current state of container.\n"),
    c("create", "", "create a secure container", "create [flags] <container id> - create a secure container\n"),
    c("delete", "", "delete resources held by a container", "delete [flags] <container ids>\n"),
    c("do", "", "Simplistic way to execute a command inside the sandbox. It's to be used for testing only.", "do [flags] <cmd> - runs a command.\n\nThis command starts a sandbox with host filesystem mounted inside as readonly,\nwith a writable tmpfs overlay on top of it. The given command is executed inside\nthe sandbox. It's to be used to quickly test applications without having to\ninstall or run docker. It doesn't give nearly as many options and it's to be\nused for testing only.\n"),
    c("events", "", "display container events such as OOM notifications, cpu, memory, and IO usage statistics", "<container-id>\n"),
    c("exec", "", "execute new process inside the container", "exec [command options] <container-id> <command> [command options] || --process process.json <container-id>\n"),
    c("flags", "", "describe all known top-level flags", "flags [<subcommand>]:\n\tWith an argument, print all flags of <subcommand>. Else,\n\tprint a description of all known top-level flags.  (The basic\n\thelp information only discusses the most generally important\n\ttop-level flags.)\n"),
    c("fscheckpoint", "", "checkpoint the filesystem state of a container", "fscheckpoint [flags] <container id> - save the filesystem state of a container.\n"),
    c("help", "", "Print help documentation.", "help [<subcommand>]:\n\tWith an argument, prints detailed information on the use of\n\tthe specified topic or subcommand. With no argument, print a list of\n\tall commands and a brief description of each.\n"),
    c("kill", "", "sends a signal to the container", "kill [flags] <container id> <signal>\n"),
    c("list", "", "list containers started by runsc with the given root", "list [flags]\n"),
    c("pause", "", "pause suspends all processes in a container", "pause <container id> - pause process in instance of container.\n"),
    c("port-forward", "", "port forward to a secure container", "port-forward CONTAINER_ID [LOCAL_PORT:]REMOTE_PORT\n"),
    c("ps", "", "ps displays the processes running inside a container", "<container-id> [ps options]\n"),
    c("read", "", "read a file from inside the sandbox", "read <container id> <path>\n"),
    c("restore", "", "restore a saved state of container (experimental)", "restore [flags] <container id> - restore saved state of container.\n"),
    c("resume", "", "Resume unpauses a paused container", "resume <container id> - resume a paused container.\n"),
    c("run", "", "create and run a secure container", "run [flags] <container id> - create and run a secure container.\n"),
    c("sandboxexec", "", "run a command in a fresh sandbox and print its control socket", "sandboxexec [flags] <cmd> [args...]\n"),
    c("spec", "", "create a new OCI bundle specification file", "spec [options] [-- <cmd> <args>] - create a new OCI bundle specification file.\n"),
    c("start", "", "start a secure container", "start [flags] <container id> - start a secure container.\n"),
    c("state", "", "get the state of a container", "state [flags] <container id> - get the state of a container\n"),
    c("tar", "", "tar up parts of a container's filesystem", "tar rootfs-upper --file <output file> <container id>\n"),
    c("update", "", "update container resource constraints", "update [flags] <container id>\n"),
    c("wait", "", "wait on a process inside a container", "wait [flags] <container id>\n"),
    c("debug", DEBUG, "shows a variety of debug information", "debug [flags] <container id>\n"),
    c("read-control", DEBUG, "read a cgroups control value inside the container", "read-control <container-id> <controller> <cgroup-path> <control-value-name>\n"),
    c("statefile", DEBUG, "shows information about a statefile", "statefile [flags] <statefile>\n"),
    c("symbolize", DEBUG, "Convert synthetic instruction pointers from kcov into positions in the runsc source code. Only used when Go coverage is enabled.", "symbolize [flags]\n"),
    c("usage", DEBUG, "Usage shows application memory usage across various categories in bytes.", "usage [flags] <container id>\n"),
    c("write-control", DEBUG, "write a cgroups control value inside the container", "write-control <container-id> <controller> <cgroup-path> <control-value-name> <data>\n"),
    c("cpu-features", HELPERS, "list the host CPU features gVisor can use", "cpu-features\n"),
    c("features", HELPERS, "list the features supported by this runsc", "features\n"),
    c("install", HELPERS, "adds a runtime to docker daemon configuration", "install [flags] [<runtime flags>]\n"),
    c("mitigate", HELPERS, "mitigate mitigates the underlying system against side channel attacks", "mitigate [flags]\n"),
    c("nvproxy", HELPERS, "nvproxy helpers", "nvproxy list-supported-drivers\n"),
    c("trace", HELPERS, "manages trace sessions for a given sandbox", "trace <subcommand> <subcommand args>\n"),
    c("uninstall", HELPERS, "removes a runtime from docker daemon configuration", "uninstall [flags]\n"),
    c("boot", INTERNAL, "launch a sandbox process", "boot [flags] <container id>\n"),
    c("gofer", INTERNAL, "launch a gofer process that proxies access to container files", "gofer [flags]\n"),
    c("umount", INTERNAL, "umount the specified directory when one byte is read from synd-fd", "umount --sync-fd=FD <directory path>\n"),
    c("export-metrics", METRICS, "export metric data for the sandbox", "export-metrics [flags] <container id>\n"),
    c("metric-metadata", METRICS, "export metric metadata of metrics registered in this build", "metric-metadata [flags]\n"),
    c("metric-server", METRICS, "implements Prometheus metrics HTTP endpoint", "metric-server [flags]\n"),
];

/// Help topics registered with the `help` command.
pub(crate) static TOPICS: &[(&str, &str)] = &[
    ("platforms", "Print a list of available platforms."),
    ("syscalls", "Print compatibility information for syscalls."),
];

/// The subcommand called `name`.
pub(crate) fn find(name: &str) -> Option<&'static Subcommand> {
    SUBCOMMANDS.iter().find(|s| s.name == name)
}

/// The flags of a subcommand we parse ourselves.
pub(crate) fn flags_of(name: &str) -> &'static [FlagDef] {
    match name {
        "do" => DO_FLAGS,
        "boot" => BOOT_FLAGS,
        _ => &[],
    }
}

/// Group names in the order subcommands prints them (sorted, "" first).
fn groups() -> Vec<&'static str> {
    let mut g: Vec<&'static str> = SUBCOMMANDS.iter().map(|s| s.group).collect();
    g.sort_unstable();
    g.dedup();
    g
}

/// `Commander.ExplainGroup`.
fn explain_group(out: &mut String, group: &str) {
    if group.is_empty() {
        out.push_str("Subcommands:\n");
    } else {
        out.push_str(&format!("Subcommands for {group}:\n"));
    }
    let mut cmds: Vec<&Subcommand> = SUBCOMMANDS.iter().filter(|s| s.group == group).collect();
    cmds.sort_by(|a, b| a.name.cmp(b.name));
    for cmd in cmds {
        out.push_str(&format!("\t{:<15}  {}\n", cmd.name, cmd.synopsis));
    }
    out.push('\n');
}

/// `Commander.explain`: what upstream prints to stderr on a usage error of
/// the top-level command line.
pub(crate) fn short_usage() -> String {
    let mut out = String::from("Usage: runsc <flags> <subcommand> <subcommand args>\n\n");
    for g in groups() {
        explain_group(&mut out, g);
    }
    out.push_str("\nUse \"runsc flags\" for a list of top-level flags\n");
    out
}

/// `runsc help` with no argument.
pub(crate) fn long_usage() -> String {
    let mut out = String::from(
        "Usage: runsc <flags> <subcommand> <subcommand args>\n\n\
         runsc is the gVisor container runtime.\n\n\
         Functionality is provided by subcommands. For help with a specific subcommand,\n\
         use \"runsc help <subcommand>\".\n\n",
    );
    for g in groups() {
        explain_group(&mut out, g);
    }
    out.push_str("Additional help topics (Use \"runsc help <topic>\" to see help on the topic):\n");
    for (name, synopsis) in TOPICS {
        out.push_str(&format!("\t{name:<15}  {synopsis}\n"));
    }
    out.push_str("\nUse \"runsc flags\" for a list of top-level flags\n");
    out
}

/// `Commander.ExplainCommand`: usage text followed by the command's flags.
pub(crate) fn explain_command(cmd: &Subcommand) -> String {
    let mut out = cmd.usage.to_string();
    out.push_str(&print_defaults(flags_of(cmd.name)));
    out
}

/// Text for a help topic, if `name` is one.
pub(crate) fn topic_text(name: &str) -> Option<String> {
    match name {
        "platforms" => Some(PLATFORMS.iter().map(|p| format!("{p}\n")).collect()),
        "syscalls" => Some(
            "syscalls [options] - Print compatibility information for syscalls.\n\
             The syscall compatibility table is not included in this build of runsc;\n\
             see https://gvisor.dev/docs/user_guide/compatibility/linux/amd64/ instead.\n"
                .to_string(),
        ),
        _ => None,
    }
}

/// `runsc flags`.
pub(crate) fn global_flags_text() -> String {
    print_defaults(GLOBAL_FLAGS)
}
