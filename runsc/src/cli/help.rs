//! Subcommand table and the help texts built from it, laid out like
//! google/subcommands (`explain`, `ExplainGroup`, `ExplainCommand`) and
//! runsc's own `help` command.

use super::flags::{
    BOOT_FLAGS, CREATE_FLAGS, DELETE_FLAGS, DO_FLAGS, EVENTS_FLAGS, EXEC_FLAGS, GLOBAL_FLAGS,
    GOFER_FLAGS, KILL_FLAGS, LIST_FLAGS, NO_FLAGS, PLATFORMS, PS_FLAGS, RUN_FLAGS, SPEC_FLAGS,
    WAIT_FLAGS,
};
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
    c("checkpoint", "", "save a running container's state to an image (experimental)", "checkpoint [flags] <container id> - save current state of container.\n"),
    c("create", "", "set up a container from a bundle without starting it", "create [flags] <container id> - create a secure container\n"),
    c("delete", "", "release what a stopped container holds", "delete [flags] <container ids>\n"),
    c("do", "", "run one host command in a throwaway sandbox (for testing)", "do [flags] <cmd> [args...] - run a host command in a sandbox.\n\nThe sandbox's root is the host's root filesystem, seen read-only (upstream\nadds a writable memory overlay; this runsc does not yet). Standard input,\noutput and error are this terminal's, and runsc exits with the command's\nstatus. Meant for trying programs out, not for production containers.\n"),
    c("events", "", "stream a container's statistics and events (OOM, CPU, memory, I/O)", "<container-id>\n"),
    c("exec", "", "start another process in a running container", "exec [command options] <container-id> <command> [command options] || --process process.json <container-id>\n"),
    c("flags", "", "list every top-level flag", "flags [<subcommand>]:\n\tPrint every top-level flag, or with an argument the flags of\n\tthat subcommand.\n"),
    c("fscheckpoint", "", "save a container's filesystem state to an image", "fscheckpoint [flags] <container id> - save the filesystem state of a container.\n"),
    c("help", "", "show help for runsc, a subcommand or a topic", "help [<subcommand>]:\n\tPrint how to use a subcommand or topic, or with no argument\n\tlist every subcommand.\n"),
    c("kill", "", "send a signal to a container's processes", "kill [flags] <container id> <signal>\n"),
    c("list", "", "list the containers under --root", "list [flags]\n"),
    c("pause", "", "freeze every process of a container", "pause <container id> - pause process in instance of container.\n"),
    c("port-forward", "", "forward a local port or stream into a container", "port-forward CONTAINER_ID [LOCAL_PORT:]REMOTE_PORT\n"),
    c("ps", "", "list the processes of a container", "<container-id> [ps options]\n"),
    c("read", "", "print a file from inside a sandbox", "read <container id> <path>\n"),
    c("restore", "", "start a container from a saved image (experimental)", "restore [flags] <container id> - restore saved state of container.\n"),
    c("resume", "", "thaw a paused container", "resume <container id> - resume a paused container.\n"),
    c("run", "", "create a container and start it", "run [flags] <container id> - create and run a secure container.\n"),
    c("sandboxexec", "", "run a command in a fresh sandbox and print its control socket", "sandboxexec [flags] <cmd> [args...]\n"),
    c("spec", "", "write a default OCI config.json", "spec [options] [-- <cmd> <args>] - create a new OCI bundle specification file.\n"),
    c("start", "", "start a created container", "start [flags] <container id> - start a secure container.\n"),
    c("state", "", "print a container's OCI state", "state [flags] <container id> - get the state of a container\n"),
    c("tar", "", "archive parts of a container's filesystem", "tar rootfs-upper --file <output file> <container id>\n"),
    c("update", "", "change a container's resource limits", "update [flags] <container id>\n"),
    c("wait", "", "wait for a container process to exit and print its status", "wait [flags] <container id>\n"),
    c("debug", DEBUG, "inspect a running sandbox (stacks, profiles, logs)", "debug [flags] <container id>\n"),
    c("read-control", DEBUG, "read a cgroup control file inside a container", "read-control <container-id> <controller> <cgroup-path> <control-value-name>\n"),
    c("statefile", DEBUG, "describe a checkpoint image", "statefile [flags] <statefile>\n"),
    c("symbolize", DEBUG, "map kcov instruction pointers to source positions (coverage builds)", "symbolize [flags]\n"),
    c("usage", DEBUG, "report a sandbox's memory use by category", "usage [flags] <container id>\n"),
    c("write-control", DEBUG, "write a cgroup control file inside a container", "write-control <container-id> <controller> <cgroup-path> <control-value-name> <data>\n"),
    c("cpu-features", HELPERS, "list the host CPU features gVisor can use", "cpu-features\n"),
    c("features", HELPERS, "list the features this runsc supports", "features\n"),
    c("install", HELPERS, "register runsc as a runtime in Docker's daemon.json", "install [flags] [<runtime flags>]\n"),
    c("mitigate", HELPERS, "apply CPU side-channel mitigations on the host", "mitigate [flags]\n"),
    c("nvproxy", HELPERS, "NVIDIA GPU proxy helpers", "nvproxy list-supported-drivers\n"),
    c("trace", HELPERS, "manage runtime-monitoring trace sessions of a sandbox", "trace <subcommand> <subcommand args>\n"),
    c("uninstall", HELPERS, "remove runsc from Docker's daemon.json", "uninstall [flags]\n"),
    c("boot", INTERNAL, "become the sandbox process (the Sentry)", "boot [flags] <container id>\n"),
    c("gofer", INTERNAL, "become the gofer that serves container files to the Sentry", "gofer [flags]\n"),
    c("umount", INTERNAL, "unmount a directory once a byte arrives on a descriptor", "umount --sync-fd=FD <directory path>\n"),
    c("export-metrics", METRICS, "print a sandbox's metric data", "export-metrics [flags] <container id>\n"),
    c("metric-metadata", METRICS, "print the metadata of the metrics this build registers", "metric-metadata [flags]\n"),
    c("metric-server", METRICS, "serve sandbox metrics to Prometheus over HTTP", "metric-server [flags]\n"),
];

/// Help topics registered with the `help` command.
pub(crate) static TOPICS: &[(&str, &str)] = &[
    ("platforms", "list the platforms --platform accepts"),
    ("syscalls", "list the syscalls the Sentry implements"),
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
        "gofer" => GOFER_FLAGS,
        "create" => CREATE_FLAGS,
        "run" => RUN_FLAGS,
        "kill" => KILL_FLAGS,
        "delete" => DELETE_FLAGS,
        "list" => LIST_FLAGS,
        "wait" => WAIT_FLAGS,
        "exec" => EXEC_FLAGS,
        "ps" => PS_FLAGS,
        "events" => EVENTS_FLAGS,
        "spec" => SPEC_FLAGS,
        _ => NO_FLAGS,
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
         runsc runs containers in gVisor sandboxes, an OCI runtime that Docker,\n\
         containerd and Kubernetes can use in place of runc. Each subcommand below\n\
         has its own help: \"runsc help <subcommand>\".\n\n",
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
