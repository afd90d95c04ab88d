//! The flag tables: every global flag of current upstream runsc (with its
//! upstream default), and the flags of the `do` and `boot` subcommands.
//! Help texts are ours; names, types and defaults follow upstream.

use super::goflag::{go_quote, FlagDef, Kind, Support};

/// Builds a [`FlagDef`].
const fn f(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    support: Support,
    help: &'static str,
) -> FlagDef {
    FlagDef {
        name,
        kind,
        default,
        help,
        support,
    }
}

use Kind::{Bool, Duration, Float, Int, IntList, Str, Uint};
use Support::{No, Only, Yes};

/// A `flag.Value` accepting one of a fixed set of spellings.
macro_rules! enum_value {
    ($fn_name:ident, $what:literal, [$($v:literal),+ $(,)?]) => {
        fn $fn_name(s: &str) -> Result<String, String> {
            match s {
                $($v)|+ => Ok(s.to_string()),
                _ => Err(format!(concat!("invalid ", $what, " {}"), go_quote(s))),
            }
        }
    };
}

enum_value!(
    check_network,
    "network type",
    ["sandbox", "host", "none", "plugin"]
);
enum_value!(
    check_file_access,
    "file access type",
    ["exclusive", "shared"]
);
enum_value!(
    check_host_uds,
    "host UDS type",
    ["none", "open", "create", "all"]
);
enum_value!(check_host_fifo, "host fifo type", ["none", "open"]);
enum_value!(
    check_ref_leak_mode,
    "ref leak mode",
    ["disabled", "log-names", "log-traces"]
);
enum_value!(check_qdisc, "qdisc", ["none", "fifo", "tbf"]);
enum_value!(
    check_host_settings,
    "host settings policy",
    ["check", "check_mandatory", "ignore", "adjust", "enforce"]
);
enum_value!(
    check_restore_spec_validation,
    "restore spec validation policy",
    ["enforce", "warning", "ignore"]
);
enum_value!(
    check_char_device_policy,
    "character device policy",
    ["emulated-only", "prefer-emulated", "passthrough"]
);
enum_value!(
    check_in_sandbox_cgroup,
    "in-sandbox cgroup type",
    ["v1", "v2"]
);
enum_value!(
    check_signal_unkillable,
    "signal unkillable policy",
    ["none", "linux"]
);

/// `--sidecar-release-enforcement-policy`: case-insensitive, stored upper case.
fn check_sidecar_release(s: &str) -> Result<String, String> {
    let up = s.to_ascii_uppercase();
    match up.as_str() {
        "NEVER" | "ALWAYS" | "IF_RELEASE_BUILD" => Ok(up),
        _ => Err(format!(
            "invalid sidecar release enforcement policy {}",
            go_quote(s)
        )),
    }
}

/// `--sidecar-usage-policy`: case-insensitive, stored upper case.
fn check_sidecar_usage(s: &str) -> Result<String, String> {
    let up = s.to_ascii_uppercase();
    match up.as_str() {
        "DEFAULT" | "STRICT" => Ok(up),
        "LEGACY_DEPRECATED_SLOW_EMBEDDED_FALLBACK" => Err("the embedded sidecar fallback has been removed; install the sidecar binaries and drop this flag".to_string()),
        _ => Err(format!("invalid value {}; must be DEFAULT or STRICT", go_quote(s))),
    }
}

/// `--gofer-network-namespace`: `null`, `new`, `host` or an absolute path.
fn check_gofer_netns(s: &str) -> Result<String, String> {
    match s {
        "null" | "new" | "host" => Ok(s.to_string()),
        _ if s.starts_with('/') => Ok(s.to_string()),
        _ => Err(format!("invalid gofer network namespace {}", go_quote(s))),
    }
}

/// `--EXPERIMENTAL-xdp`: `off`, `ns`, `redirect:<dev>` or `tunnel:<dev>`.
fn check_xdp(s: &str) -> Result<String, String> {
    let ok = match s {
        "off" | "ns" => true,
        _ => s
            .strip_prefix("redirect:")
            .or_else(|| s.strip_prefix("tunnel:"))
            .is_some_and(|dev| !dev.is_empty()),
    };
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("invalid XDP mode {}", go_quote(s)))
    }
}

/// `--overlay2`: `none` or `{root|all}:{memory|self|dir=/abs/path}[,size=N]`.
pub(crate) fn check_overlay2(s: &str) -> Result<String, String> {
    if s == "none" {
        return Ok(s.to_string());
    }
    let Some((mount, rest)) = s.split_once(':') else {
        return Err(format!(
            "expected format is --overlay2={{mount}}:{{medium}}, got {}",
            go_quote(s)
        ));
    };
    if mount != "root" && mount != "all" {
        return Err(format!(
            "unexpected mount specifier for --overlay2: {}",
            go_quote(mount)
        ));
    }
    let mut parts = rest.split(',');
    let medium = parts.next().unwrap_or("");
    match medium {
        "memory" | "self" => {}
        _ => match medium.strip_prefix("dir=") {
            Some(dir) if dir.starts_with('/') => {}
            Some(dir) => {
                return Err(format!(
                    "overlay host file directory should be an absolute path, got {}",
                    go_quote(dir)
                ))
            }
            None => {
                return Err(format!(
                    "unexpected medium specifier for --overlay2: {}",
                    go_quote(medium)
                ))
            }
        },
    }
    for opt in parts {
        match opt.strip_prefix("size=") {
            Some(size) if !size.is_empty() => {}
            _ => {
                return Err(format!(
                    "unexpected size specifier for --overlay2: {}",
                    go_quote(opt)
                ))
            }
        }
    }
    Ok(s.to_string())
}

const fn value(check: fn(&str) -> Result<String, String>, zero: &'static str) -> Kind {
    Kind::Value { check, zero }
}

/// Platforms upstream knows (in `runsc help platforms` order).
pub(crate) const PLATFORMS: &[&str] = &["systrap", "ptrace", "kvm"];

/// Log formats upstream accepts for `--log-format` and `--debug-log-format`.
pub(crate) const LOG_FORMATS: &[&str] = &["text", "json", "json-k8s"];

/// Every global flag of current upstream runsc, including deprecated no-ops,
/// test-only flags, the internal FD flags and `--version`, and this runsc's
/// own few (marked below).
#[rustfmt::skip]
pub(crate) static GLOBAL_FLAGS: &[FlagDef] = &[
    // Logging and debugging.
    f("root", Str, "", Yes, "directory holding container state; empty means $XDG_RUNTIME_DIR/runsc, else /var/run/runsc."),
    f("log", Str, "", Yes, "file to append runsc's own log messages to; empty means stdout."),
    f("log-format", Str, "text", Yes, "format of the --log file: text, json or json-k8s."),
    f("debug", Bool, "false", Yes, "log at debug level."),
    f("systemd-cgroup", Bool, "false", No, "EXPERIMENTAL. Manage cgroups through systemd."),
    f("debug-log", Str, "", Yes, "where debug logs go; a trailing '/' makes it a directory of per-command files. %TIMESTAMP% and %COMMAND% are expanded."),
    f("debug-command", Str, "", No, "comma-separated commands whose debug logs are kept (empty: all); a leading '!' inverts the list."),
    f("panic-log", Str, "", No, "file receiving panic reports and runtime messages."),
    f("coverage-report", Str, "", No, "file receiving coverage reports (coverage builds only)."),
    f("log-packets", Bool, "false", No, "log every network packet."),
    f("pcap-log", Str, "", No, "file to write a PCAP capture of sandbox traffic to."),
    f("debug-log-format", Str, "text", No, "format of the debug log: text, json or json-k8s."),
    f("debug-to-user-log", Bool, "false", No, "copy Sentry logs into the user-visible log."),
    f("alsologtostderr", Bool, "false", Yes, "also write log messages to stderr."),
    f("allow-flag-override", Bool, "false", No, "let dev.gvisor.flag.<name> OCI annotations override any flag."),
    f("traceback", Str, "system", No, "traceback level for runtime crash reports."),
    // Metrics and profiling.
    f("metric-server", Str, "", No, "address (addr:port, :port or a socket path) to export metrics on."),
    f("final-metrics-log", Str, "", No, "file receiving all metric values when the sandbox exits."),
    f("profiling-metrics", Str, "", No, "comma-separated metrics to sample into --profiling-metrics-log (not for production)."),
    f("profiling-metrics-log", Str, "", No, "file for sampled profiling metrics; '-' means the user log (not for production)."),
    f("profiling-metrics-rate-us", Int, "1000", No, "profiling metrics sampling period in microseconds."),
    // Strace.
    f("strace", Bool, "false", Yes, "trace the application's system calls."),
    f("strace-syscalls", Str, "", Yes, "comma-separated system calls to trace; empty traces all of them."),
    f("strace-log-size", Uint, "1024", Yes, "how many bytes of each buffer argument strace prints."),
    f("strace-event", Bool, "false", No, "emit strace records as events."),
    // Sandbox runtime behaviour.
    f("platform", Str, "systrap", Only(&["ptrace"]), "how the Sentry intercepts the application: systrap, ptrace or kvm."),
    f("platform_device_path", Str, "", No, "device file used by the platform (e.g. /dev/kvm); empty picks a default."),
    f("watchdog-action", Str, "log", No, "what the task watchdog does when it fires: log or panic."),
    f("panic-signal", Int, "-1", No, "signal number that makes the Sentry panic (-1: none)."),
    f("profile", Bool, "false", No, "allow profiling the sandbox (weakens seccomp; not for production)."),
    f("profile-block", Str, "", No, "file receiving a block profile for the whole run; needs --profile."),
    f("profile-cpu", Str, "", No, "file receiving a CPU profile for the whole run; needs --profile."),
    f("profile-gc-interval", Duration, "0s", No, "force a garbage collection this often while profiling; needs --profile."),
    f("profile-heap", Str, "", No, "file receiving a heap profile for the whole run; needs --profile."),
    f("profile-mutex", Str, "", No, "file receiving a mutex profile for the whole run; needs --profile."),
    f("trace", Str, "", No, "file receiving an execution trace for the whole run."),
    f("rootless", Bool, "false", No, "allow running without root; sandbox and gofer keep the caller's privileges."),
    f("ref-leak-mode", value(check_ref_leak_mode, "disabled"), "disabled", No, "reference leak checking: disabled, log-names or log-traces."),
    f("cpu-num-from-quota", Bool, "true", No, "derive the sandbox CPU count from the CPU quota (at least 2)."),
    f("oci-seccomp", Bool, "false", No, "apply the spec's seccomp filters inside the sandbox."),
    f("enable-core-tags", Bool, "false", No, "use core tagging (host Linux 5.14 or newer)."),
    f("signal-unkillable-policy", value(check_signal_unkillable, "none"), "none", No, "whether PID-namespace init processes ignore unhandled signals as on Linux: none or linux."),
    f("pod-init-config", Str, "", No, "file with extra steps to run when a pod is created."),
    f("host-settings", value(check_host_settings, "check"), "check", Yes, "what to do about suboptimal host settings: check, check_mandatory, ignore, adjust or enforce."),
    f("sidecar-release-enforcement-policy", value(check_sidecar_release, ""), "NEVER", No, "when helper binaries must match runsc's release: NEVER, ALWAYS or IF_RELEASE_BUILD."),
    f("sidecar-usage-policy", value(check_sidecar_usage, ""), "DEFAULT", No, "policy for helper binaries: DEFAULT or STRICT."),
    f("restore-spec-validation", value(check_restore_spec_validation, "enforce"), "enforce", No, "how strictly a restore compares the new spec with the saved one."),
    f("systrap-disable-syscall-patching", Bool, "false", Yes, "never patch syscall instructions under systrap (slow; x86 only)."),
    f("systrap-disable-fast-path", Bool, "false", No, "never use the systrap fast path."),
    f("allow-suid", Bool, "false", No, "honour set-user-ID and set-group-ID bits on executables."),
    f("kvm-use-cpu-nums", Bool, "false", No, "under KVM, report vCPU numbers as CPU numbers."),
    f("allow-rootfs-tar-annotation", Bool, "false", No, "accept the rootfs tar annotation."),
    f("control-rpc-stop-timeout", Duration, "15s", No, "how long in-flight control RPCs may run once the sandbox shuts down."),
    f("shared-root", Str, "", No, "directory for state shared between sandboxes; empty means --root."),
    f("app-huge-pages", Bool, "true", No, "back application memory with huge pages when the host allows it."),
    // Filesystem.
    f("file-access", value(check_file_access, "exclusive"), "exclusive", Yes, "root mount validation: exclusive or shared."),
    f("file-access-mounts", value(check_file_access, "exclusive"), "shared", No, "validation for other mounts: shared or exclusive."),
    f("overlay", Bool, "false", No, "DEPRECATED: same as --overlay2=all:memory."),
    f("overlay2", value(check_overlay2, ""), "root:self", No, "overlay mounts with a tmpfs upper layer: 'none', or {root|all}:{memory|self|dir=/abs/path}[,size=N]."),
    f("host-uds", value(check_host_uds, "none"), "none", No, "host Unix socket access: none, open, create or all."),
    f("host-fifo", value(check_host_fifo, "none"), "none", No, "host FIFO access: none or open."),
    f("character-device-policy", value(check_char_device_policy, "emulated-only"), "emulated-only", No, "character devices on gofer mounts: emulated-only, prefer-emulated or passthrough."),
    f("gvisor-marker-file", Bool, "false", No, "create /proc/gvisor/kernel_is_gvisor."),
    f("override-procs", Str, "", No, "comma-separated /proc files to replace with stubs."),
    f("ignore-cgroups", Bool, "false", Yes, "leave cgroups alone."),
    f("in-sandbox-cgroup", value(check_in_sandbox_cgroup, "v1"), "v1", No, "cgroup version presented inside the sandbox: v1 or v2."),
    f("fdlimit", Int, "-1", No, "cap on host file descriptors for the Sentry and for the gofer (-1: none)."),
    f("dcache", Int, "-1", No, "global dentry cache size; negative means per-mount caches."),
    f("iouring", Bool, "false", No, "TEST ONLY; enable the experimental io_uring support."),
    f("directfs", Bool, "true", Yes, "let the Sentry open container files itself instead of asking the gofer."),
    f("TESTONLY-nftables", Bool, "false", No, "TEST ONLY; enable nftables."),
    // Network.
    f("network", value(check_network, "sandbox"), "sandbox", Only(&["none", "host"]), "networking: sandbox (netstack), host, none or plugin."),
    f("network-proxy-path", Str, "", No, "EXPERIMENTAL. Unix SOCK_SEQPACKET socket to attach the main network interface to."),
    f("gofer-network-namespace", value(check_gofer_netns, "null"), "null", No, "gofer network namespace: null, new, host or an absolute path."),
    f("net-raw", Bool, "false", No, "allow raw sockets."),
    f("allow-packet-socket-write", Bool, "false", No, "allow writing to AF_PACKET sockets."),
    f("allow-live-tcp-migration", Bool, "true", No, "keep TCP connection state across save and restore."),
    f("gso", Bool, "true", No, "use host segmentation offload when the device supports it."),
    f("software-gso", Bool, "true", No, "use netstack segmentation offload when host offload is unavailable."),
    f("gvisor-gro", Bool, "false", No, "use netstack generic receive offload."),
    f("tx-checksum-offload", Bool, "false", No, "offload transmit checksums."),
    f("rx-checksum-offload", Bool, "true", No, "offload receive checksums."),
    f("qdisc", value(check_qdisc, "none"), "fifo", No, "queueing discipline for non-loopback interfaces: none, fifo or tbf."),
    f("qdisc-tbf-rate", Uint, "0", No, "egress rate in bytes per second for --qdisc=tbf."),
    f("qdisc-tbf-burst", Uint, "0", No, "bucket size in bytes for --qdisc=tbf."),
    f("num-network-channels", Int, "1", No, "number of host FDs per network link."),
    f("network-processors-per-channel", Int, "0", No, "inbound packet processors per channel (0: automatic)."),
    f("EXPERIMENTAL-xdp", value(check_xdp, "off"), "off", No, "XDP mode: off, ns, redirect:<device> or tunnel:<device>."),
    f("EXPERIMENTAL-xdp-need-wakeup", Bool, "true", No, "EXPERIMENTAL. Use XDP_USE_NEED_WAKEUP."),
    f("reproduce-nat", Bool, "false", No, "copy the host namespace's NAT table into the sandbox."),
    f("reproduce-nftables", Bool, "false", No, "copy the host's nftables rules into the sandbox."),
    f("net-disconnect-ok", Bool, "true", No, "drop open connections on save."),
    f("pause-external-networking", Bool, "false", No, "start with external networking paused (sandbox network only)."),
    f("allow-connected-on-save", Bool, "false", No, "keep connections established across save."),
    // Accelerators.
    f("nvproxy", Bool, "false", No, "LEGACY: enable Nvidia GPU support."),
    f("nvproxy-docker", Bool, "false", No, "LEGACY: add nvidia-container-runtime-hook as a prestart hook."),
    f("nvproxy-driver-version", Str, "", No, "Nvidia driver ABI version; empty autodetects, 'latest' picks the newest."),
    f("nvproxy-allow-unsupported-driver", Bool, "false", No, "start nvproxy even with an unsupported driver."),
    f("cuda-checkpoint-path", Str, "", No, "path of cuda-checkpoint inside GPU containers."),
    f("nvproxy-allowed-driver-capabilities", Str, "utility,compute", No, "comma-separated Nvidia driver capabilities containers may request ('all' for every one)."),
    f("rdmaproxy", Bool, "false", No, "WIP: enable RDMA device support."),
    f("tpuproxy", Bool, "false", No, "LEGACY: enable TPU support."),
    // Test-only.
    f("TESTONLY-unsafe-nonroot", Bool, "false", Yes, "TEST ONLY; skip isolation measures that need root. Never use otherwise."),
    f("TESTONLY-test-name-env", Str, "", No, "TEST ONLY; test name used for logging."),
    f("TESTONLY-afs-syscall-panic", Bool, "false", No, "TEST ONLY; panic on afs_syscall."),
    f("TESTONLY-autosave-image-path", Str, "", No, "TEST ONLY; save the sandbox to this path automatically."),
    f("TESTONLY-autosave-resume", Bool, "false", No, "TEST ONLY; save and resume automatically."),
    // Deprecated (accepted until 2027-01-01).
    f("buffer-pooling", Bool, "true", Yes, "DEPRECATED: no effect."),
    f("vfs2", Bool, "true", Yes, "DEPRECATED: no effect."),
    f("fuse", Bool, "true", Yes, "DEPRECATED: no effect."),
    f("lisafs", Bool, "true", Yes, "DEPRECATED: no effect."),
    f("cgroupfs", Bool, "false", Yes, "DEPRECATED: no effect."),
    f("fsgofer-host-uds", Bool, "false", No, "DEPRECATED: same as --host-uds=all."),
    f("save-restore-netstack", Bool, "true", Yes, "DEPRECATED: no effect."),
    // This runsc's own.
    f("gofer-binary", Str, "", Yes, "run this binary as the gofer (with upstream's gofer flags) instead of this runsc; e.g. Debian's Go runsc, which needs --directfs=false."),
    f("sentry-binary", Str, "", Yes, "run the boot subcommand of this binary as the sandbox (with upstream's boot flags and FDs) instead of this runsc's; e.g. Debian's Go runsc with --platform=ptrace --network=none --directfs=false. Without it, $GVISOR_SIDECAR_BINARIES_DIR/gvisor_sentry when present."),
    // Defined by the command-line front end rather than the Config.
    f("log-fd", Int, "-1", Yes, "file descriptor for runsc's log; overrides --log."),
    f("debug-log-fd", Int, "-1", Yes, "file descriptor for debug logs; overrides --debug-log."),
    f("panic-log-fd", Int, "-1", Yes, "file descriptor for panic reports and runtime messages."),
    f("coverage-fd", Int, "-1", No, "file descriptor for coverage output."),
    f("version", Bool, "false", Yes, "print the version and exit."),
];

/// Global flags that are not `Config` fields upstream, and so are not part of
/// `Config.ToFlags()` (the launcher passes the FD flags explicitly).
pub(crate) const NOT_IN_CONFIG: &[&str] = &[
    "gofer-binary",
    "sentry-binary",
    "log-fd",
    "debug-log-fd",
    "panic-log-fd",
    "coverage-fd",
    "version",
];

/// `--uid-map` / `--gid-map`: "ContainerID HostID Size".
fn check_id_map(s: &str) -> Result<(), String> {
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() == 3 && fields.iter().all(|x| x.parse::<u32>().is_ok()) {
        Ok(())
    } else {
        Err(format!("invalid mapping: {s}"))
    }
}

/// `--volume`: "SRC[:DST]".
fn check_volume(s: &str) -> Result<(), String> {
    let src = s.split_once(':').map_or(s, |(src, _)| src);
    if src.is_empty() {
        Err(format!("invalid volume {}: source is empty", go_quote(s)))
    } else {
        Ok(())
    }
}

/// `--pass-fd`: "M:N".
fn check_fd_mapping(s: &str) -> Result<(), String> {
    match s.split_once(':') {
        Some((h, g)) if h.parse::<u32>().is_ok() && g.parse::<u32>().is_ok() => Ok(()),
        _ => Err(format!(
            "invalid fd mapping {}: must be in M:N format",
            go_quote(s)
        )),
    }
}

/// Anything goes.
fn check_any(_: &str) -> Result<(), String> {
    Ok(())
}

/// `runsc do` flags.
#[rustfmt::skip]
pub(crate) static DO_FLAGS: &[FlagDef] = &[
    f("root", Str, "/", Yes, "host directory used as the sandbox's root filesystem"),
    f("cwd", Str, ".", Yes, "working directory of the command"),
    f("ip", Str, "192.168.10.2", Yes, "IPv4 address given to the sandbox"),
    f("quiet", Bool, "false", Yes, "do not print runsc's own messages; the command's output is unaffected"),
    f("force-overlay", Bool, "true", Yes, "put a memory overlay over the root; false lets the command write to the host"),
    f("volume", Kind::StrList { check: check_volume }, "", Yes, "bind-mount host path SRC at DST (default: SRC) inside the sandbox; repeatable"),
    f("uid-map", Kind::StrList { check: check_id_map }, "", Yes, "add a user ID mapping \"ContainerID HostID Size\"; repeatable"),
    f("gid-map", Kind::StrList { check: check_id_map }, "", Yes, "add a group ID mapping \"ContainerID HostID Size\"; repeatable"),
];

/// `runsc boot` flags: upstream's, plus our `--status-fd`.
#[rustfmt::skip]
pub(crate) static BOOT_FLAGS: &[FlagDef] = &[
    f("bundle", Str, "", Yes, "bundle directory (required)"),
    f("apply-caps", Bool, "false", Yes, "apply the spec's capabilities to the sandbox process"),
    f("setup-root", Bool, "false", Yes, "give the sandbox process an empty root"),
    f("cpu-num", Int, "0", Yes, "number of CPUs in the sandbox"),
    f("cpu-quota", Float, "0", Yes, "CPU quota of the sandbox, in CPUs"),
    f("cpu-period", Int, "0", Yes, "CPU quota period"),
    f("proc-mount-sync-fd", Int, "-1", Yes, "FD written to once /proc may be unmounted"),
    f("sync-userns-fd", Int, "-1", Yes, "FD used to synchronise rootless user namespace setup"),
    f("total-memory", Uint, "0", Yes, "total memory reported to the container"),
    f("total-host-memory", Uint, "0", Yes, "total memory of the host"),
    f("attached", Bool, "false", Yes, "die when the parent process dies"),
    f("product-name", Str, "", Yes, "value of /sys/devices/virtual/dmi/id/product_name"),
    f("nvidia-driver-version", Str, "", Yes, "Nvidia driver version of the host"),
    f("host-shmem-huge", Str, "", Yes, "the host's transparent_hugepage/shmem_enabled setting"),
    f("uid", Int, "0", Yes, "user ID to switch to"),
    f("gid", Int, "0", Yes, "group ID to switch to"),
    f("spec-fd", Int, "-1", Yes, "FD to read the container spec from (required)"),
    f("controller-fd", Int, "-1", Yes, "FD of the control server's listening socket (required)"),
    f("device-fd", Int, "-1", Yes, "FD of the platform device"),
    f("io-fds", IntList, "", Yes, "gofer connection FDs, root first then the spec's mounts in order; repeatable or comma-separated"),
    f("dev-io-fd", Int, "-1", Yes, "FD of the /dev gofer connection"),
    f("stdio-fds", IntList, "", Yes, "stdin, stdout and stderr FDs, in that order; repeatable or comma-separated"),
    f("pass-fd", Kind::StrList { check: check_fd_mapping }, "", Yes, "host FD M to pass as guest FD N, as M:N; repeatable"),
    f("exec-fd", Int, "-1", Yes, "host FD of the program to execute"),
    f("gofer-filestore-fds", IntList, "", Yes, "FDs of files backing overlaid gofer mounts"),
    f("gofer-mount-confs", Kind::StrList { check: check_any }, "", Yes, "how each gofer mount is configured"),
    f("user-log-fd", Int, "0", Yes, "FD for user-visible logs (0: none)"),
    f("start-sync-fd", Int, "-1", Yes, "FD used to signal that the sandbox is ready (required)"),
    f("mounts-fd", Int, "-1", Yes, "FD to read the resolved mount list from"),
    f("pod-init-config-fd", Int, "-1", Yes, "FD of the pod init configuration"),
    f("sink-fds", IntList, "", Yes, "FDs for the sinks of --pod-init-config, in order"),
    f("save-fds", IntList, "", Yes, "FDs for checkpoint output: state, page metadata, pages"),
    f("fs-restore-fds", IntList, "", Yes, "FDs of a filesystem checkpoint to restore"),
    f("pin-ring-fd", Int, "-1", Yes, "FD of the pinned ring"),
    f("profile-block-fd", Int, "-1", Yes, "FD for a block profile (-1: none)"),
    f("profile-cpu-fd", Int, "-1", Yes, "FD for a CPU profile (-1: none)"),
    f("profile-heap-fd", Int, "-1", Yes, "FD for a heap profile (-1: none)"),
    f("profile-mutex-fd", Int, "-1", Yes, "FD for a mutex profile (-1: none)"),
    f("trace-fd", Int, "-1", Yes, "FD for an execution trace (-1: none)"),
    f("profiling-metrics-fd", Int, "-1", Yes, "FD for profiling metrics"),
    f("profiling-metrics-fd-lossy", Bool, "false", Yes, "the profiling metrics FD may lose data"),
    f("status-fd", Int, "-1", Yes, "FD on which boot reports whether loading succeeded (not upstream)"),
];

/// `runsc gofer` flags: upstream's (the 2022 set and the later ones).
#[rustfmt::skip]
pub(crate) static GOFER_FLAGS: &[FlagDef] = &[
    f("bundle", Str, "", Yes, "path to the root of the bundle directory, defaults to the current directory"),
    f("io-fds", IntList, "", Yes, "list of FDs to connect gofer servers. They must follow this order: root first, then mounts as defined in the spec"),
    f("dev-io-fd", Int, "-1", Yes, "FD of the /dev gofer connection (-1: none)"),
    f("apply-caps", Bool, "true", Yes, "if true, apply capabilities to restrict what the Gofer process can do"),
    f("setup-root", Bool, "true", Yes, "if true, set up an empty root for the process"),
    f("spec-fd", Int, "-1", Yes, "required fd with the container spec"),
    f("mounts-fd", Int, "-1", Yes, "mountsFD is the file descriptor to write list of mounts after they have been resolved (direct paths, no symlinks)."),
    f("rpc-fd", Int, "-1", Yes, "FD of the socket for gofer-to-host RPCs (-1: none)"),
    f("sync-userns-fd", Int, "-1", Yes, "file descriptor used to synchronize rootless user namespace initialization."),
    f("sync-chroot-fd", Int, "-1", Yes, "file descriptor closed by the launcher once the gofer may chroot (-1: none)"),
    f("proc-mount-sync-fd", Int, "-1", Yes, "file descriptor written to once /proc may be unmounted (-1: none)"),
    f("pin-ring-fd", Int, "-1", Yes, "FD of a disabled io_uring held to make FD release asynchronous (-1: none)"),
    f("sync-sentry-exit-fd", Int, "-1", Yes, "FD over which a pidfd of the sandbox arrives; the gofer waits for its exit (-1: none)"),
    f("gofer-mount-confs", Kind::StrList { check: check_any }, "", Yes, "how each gofer mount is configured"),
    f("uid", Int, "0", Yes, "user ID to switch to (rootless)"),
    f("gid", Int, "0", Yes, "group ID to switch to (rootless)"),
    f("profile-block-fd", Int, "-1", Yes, "file descriptor to write block profile to. -1 disables profiling."),
    f("profile-cpu-fd", Int, "-1", Yes, "file descriptor to write CPU profile to. -1 disables profiling."),
    f("profile-heap-fd", Int, "-1", Yes, "file descriptor to write heap profile to. -1 disables profiling."),
    f("profile-mutex-fd", Int, "-1", Yes, "file descriptor to write mutex profile to. -1 disables profiling."),
    f("trace-fd", Int, "-1", Yes, "file descriptor to write Go execution trace to. -1 disables tracing."),
];

/// Flags `create` and `run` share (upstream's `create` flags).
macro_rules! create_flags {
    ($($extra:expr),* $(,)?) => {
        [
            f("bundle", Str, "", Yes, "path to the root of the bundle directory, defaults to the current directory"),
            f("console-socket", Str, "", Yes, "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"),
            f("pid-file", Str, "", Yes, "filename that the container pid will be written to"),
            f("user-log", Str, "", Yes, "filename to send user-visible logs to. Empty means no logging."),
            f("fs-restore-image-path", Str, "", No, "path to a filesystem checkpoint image to restore"),
            f("fs-restore-direct", Bool, "false", No, "read the filesystem checkpoint with O_DIRECT"),
            $($extra),*
        ]
    };
}

#[rustfmt::skip]
pub(crate) static CREATE_FLAGS: &[FlagDef] = &create_flags!();

#[rustfmt::skip]
pub(crate) static RUN_FLAGS: &[FlagDef] = &create_flags!(
    f("detach", Bool, "false", Yes, "run container in background"),
    f("d", Bool, "false", Yes, "same as --detach (runc's spelling)"),
    f("pass-fd", Kind::StrList { check: check_fd_mapping }, "", No, "file descriptor passed to the container in M:N format"),
    f("exec-fd", Int, "-1", No, "host FD of the program to execute"),
);

#[rustfmt::skip]
pub(crate) static KILL_FLAGS: &[FlagDef] = &[
    f("all", Bool, "false", Yes, "send the specified signal to all processes inside the container"),
    f("pid", Int, "0", Yes, "send the specified signal to a specific process. pid is relative to the root PID namespace"),
    f("pgid", Int, "0", No, "send the specified signal to a specific process group"),
];

#[rustfmt::skip]
pub(crate) static DELETE_FLAGS: &[FlagDef] = &[
    f("force", Bool, "false", Yes, "delete container if it is still running"),
    f("f", Bool, "false", Yes, "same as --force (runc's spelling)"),
];

#[rustfmt::skip]
pub(crate) static LIST_FLAGS: &[FlagDef] = &[
    f("quiet", Bool, "false", Yes, "only list container ids"),
    f("q", Bool, "false", Yes, "same as --quiet (runc's spelling)"),
    f("format", Str, "text", Yes, "output format: 'text' (default) or 'json'"),
    f("sandbox", Bool, "false", Yes, "limit output to sandboxes only"),
];

#[rustfmt::skip]
pub(crate) static WAIT_FLAGS: &[FlagDef] = &[
    f("rootpid", Int, "-1", Yes, "select a PID in the sandbox root PID namespace to wait on instead of the container's root process"),
    f("pid", Int, "-1", Yes, "select a PID in the container's PID namespace to wait on instead of the container's root process"),
    f("checkpoint", Uint, "0", No, "wait for the Nth checkpoint to complete"),
    f("restore", Bool, "false", No, "wait for a restore to complete"),
];

#[rustfmt::skip]
pub(crate) static EXEC_FLAGS: &[FlagDef] = &[
    f("cwd", Str, "", Yes, "current working directory"),
    f("env", Kind::StrList { check: check_any }, "", Yes, "set environment variables (e.g. '-env PATH=/bin -env TERM=xterm')"),
    f("user", Str, "", Yes, "UID (format: <uid>[:<gid>])"),
    f("additional-gids", Kind::StrList { check: check_any }, "", Yes, "additional gids"),
    f("cap", Kind::StrList { check: check_any }, "", No, "add a capability to the bounding set for the process"),
    f("detach", Bool, "false", Yes, "detach from the container's process"),
    f("d", Bool, "false", Yes, "same as --detach (runc's spelling)"),
    f("process", Str, "", Yes, "path to the process.json"),
    f("pid-file", Str, "", Yes, "filename that the container pid will be written to"),
    f("internal-pid-file", Str, "", Yes, "filename that the container-internal pid will be written to"),
    f("console-socket", Str, "", Yes, "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"),
    f("pass-fd", Kind::StrList { check: check_fd_mapping }, "", No, "file descriptor passed to the container in M:N format"),
    f("exec-fd", Int, "-1", No, "host FD of the program to execute"),
    f("tty", Bool, "false", Yes, "allocate a pseudo-TTY (runc's spelling; needs --console-socket)"),
    f("t", Bool, "false", Yes, "same as --tty"),
];

#[rustfmt::skip]
pub(crate) static PS_FLAGS: &[FlagDef] = &[
    f("format", Str, "table", Yes, "output format. Select one of: table or json (default: table)"),
];

#[rustfmt::skip]
pub(crate) static EVENTS_FLAGS: &[FlagDef] = &[
    f("interval", Duration, "5s", Yes, "set the stats collection interval"),
    f("stats", Bool, "false", Yes, "display the container's stats then exit"),
];

#[rustfmt::skip]
pub(crate) static SPEC_FLAGS: &[FlagDef] = &[
    f("bundle", Str, "", Yes, "path to the root of the OCI bundle"),
    f("cwd", Str, "/", Yes, "working directory that will be set for the executable, this value MUST be an absolute path"),
    f("netns", Str, "", Yes, "network namespace path"),
];

/// Commands without flags of their own: `start`, `state`, `pause`, `resume`.
pub(crate) static NO_FLAGS: &[FlagDef] = &[];
