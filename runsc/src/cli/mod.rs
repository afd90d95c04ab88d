//! Command-line parsing that behaves like upstream runsc's (Go `flag` plus
//! google/subcommands).
//!
//! # Why not clap
//!
//! The design document suggested "clap behind a normaliser". We parse by hand
//! instead, with a small re-implementation of Go's `flag` package
//! ([`goflag`]), because the semantics callers depend on are Go's and clap
//! fights every one of them: long names after a single dash (`-debug`),
//! boolean flags that take a value only as `-flag=value` (so `-debug false`
//! makes `false` a positional argument), parsing that stops at the first
//! positional (the subcommand, or `do`'s program) or after `--`, Go's number
//! and duration syntaxes (`0x10`, `1_000`, `1m30s`), and Go's exact error
//! texts and exit codes (2 for a bad global flag, 128 for everything else).
//! A normaliser in front of clap would need to implement the Go grammar
//! anyway, and would then still have to undo clap's own conventions; the
//! direct implementation is smaller and can be checked line by line against
//! `flag.go`. Flag definitions are data: see the tables in [`flags`].
//!
//! # Surface
//!
//! [`parse`] turns `argv` into an [`Invocation`]: the global [`Config`]
//! (every upstream global flag, with upstream defaults) and a [`Command`].
//! [`help_text`], [`flags_text`] and [`version_text`] produce what `runsc
//! help`, `runsc flags` and `runsc --version` print.

// The binary wires these up incrementally; not every item is used yet.
#![allow(dead_code)]

mod flags;
mod goflag;
mod help;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fmt;

use flags::{
    BOOT_FLAGS, DO_FLAGS, GLOBAL_FLAGS, GOFER_FLAGS, LOG_FORMATS, NOT_IN_CONFIG, PLATFORMS,
};

/// The OCI lifecycle commands this runsc runs (see [`OciArgs`]).
pub const OCI_COMMANDS: &[&str] = &[
    "create", "start", "run", "state", "kill", "delete", "list", "wait", "exec", "ps", "events",
    "pause", "resume", "spec",
];
use goflag::{go_quote, FlagDef, Kind, ParseError, Support, Values};

/// The OCI runtime spec version upstream reports.
const SPEC_VERSION: &str = "1.0.2-dev";

/// Exit code of a malformed global command line (Go's `flag.ExitOnError`).
const EXIT_FLAG_ERROR: i32 = 2;
/// Exit code of every other failure (upstream's `os.Exit(128)`).
const EXIT_FAILURE: i32 = 128;

/// A parsed command line.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub config: Config,
    pub command: Command,
}

/// The global flags, with upstream defaults for those not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Canonical value of each flag of [`GLOBAL_FLAGS`], by index.
    values: Vec<String>,
    /// Whether each flag was given on the command line.
    set: Vec<bool>,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Do(DoArgs),
    Boot(BootArgs),
    Gofer(GoferArgs),
    /// One of [`OCI_COMMANDS`].
    Oci(OciArgs),
    /// `runsc help [topic]` (also `runsc -help`); print [`help_text`].
    Help(Option<String>),
    /// `runsc help syscalls --markdown`: docs/syscalls.md.
    SyscallsMarkdown,
    /// `runsc flags`; print [`flags_text`].
    Flags,
    /// `runsc --version`; print [`version_text`].
    Version,
    /// A valid upstream subcommand that is not implemented here yet.
    Unimplemented {
        name: String,
    },
}

/// `runsc do [flags] <cmd> [args...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoArgs {
    /// Host directory used as the root filesystem (`--root`, default "/").
    pub root: String,
    /// Working directory (`--cwd`, default ".").
    pub cwd: String,
    /// `--force-overlay` (default true).
    pub force_overlay: bool,
    pub quiet: bool,
    /// `--ip` (default "192.168.10.2").
    pub ip: String,
    /// `--volume SRC[:DST]`, in order.
    pub volumes: Vec<String>,
    /// `--uid-map "C H S"`, in order.
    pub uid_map: Vec<String>,
    /// `--gid-map "C H S"`, in order.
    pub gid_map: Vec<String>,
    /// The program and its arguments (never empty).
    pub argv: Vec<String>,
}

/// An OCI lifecycle command: its name, its flags (upstream's, with their
/// defaults) and its positional arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciArgs {
    pub name: String,
    scalars: Vec<String>,
    lists: Vec<Vec<String>>,
    set: Vec<bool>,
    pub args: Vec<String>,
}

impl OciArgs {
    fn index(&self, name: &str) -> usize {
        goflag::lookup(help::flags_of(&self.name), name)
            .unwrap_or_else(|| panic!("{} has no flag {name:?}", self.name))
    }

    /// A flag's value in canonical form (the default when not given).
    pub fn string(&self, name: &str) -> &str {
        &self.scalars[self.index(name)]
    }

    pub fn boolean(&self, name: &str) -> bool {
        goflag::parse_bool(self.string(name)).expect("bool flags hold canonical values")
    }

    /// An integer flag; a duration flag in nanoseconds.
    pub fn int(&self, name: &str) -> i64 {
        let v = self.string(name);
        v.parse()
            .ok()
            .or_else(|| goflag::parse_duration(v))
            .expect("integer flags hold canonical values")
    }

    pub fn list(&self, name: &str) -> &[String] {
        &self.lists[self.index(name)]
    }

    pub fn is_set(&self, name: &str) -> bool {
        self.set[self.index(name)]
    }

    /// The command's usage text (printed on a wrong number of arguments).
    pub fn usage(&self) -> String {
        help::find(&self.name).map_or_else(String::new, help::explain_command)
    }
}

/// `runsc boot [flags] <id>`. All upstream boot flags are accepted; only
/// these are carried. Unset FDs are -1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootArgs {
    pub spec_fd: i32,
    pub io_fds: Vec<i32>,
    pub stdio_fds: Vec<i32>,
    pub start_sync_fd: i32,
    pub controller_fd: i32,
    pub mounts_fd: i32,
    /// `--status-fd` (ours): where boot reports the load result.
    pub status_fd: i32,
    pub bundle: String,
    pub apply_caps: bool,
    pub setup_root: bool,
    pub attached: bool,
    /// The sandbox ID (the only positional argument).
    pub id: String,
}

/// `runsc gofer [flags] <id>`. All upstream gofer flags are accepted;
/// these are carried. Unset FDs are -1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoferArgs {
    pub bundle: String,
    /// The lisafs sockets: the root first, then the spec's bind mounts.
    pub io_fds: Vec<i32>,
    pub dev_io_fd: i32,
    pub spec_fd: i32,
    pub mounts_fd: i32,
    pub sync_userns_fd: i32,
    pub sync_chroot_fd: i32,
    pub apply_caps: bool,
    pub setup_root: bool,
    /// The container ID (the only positional argument).
    pub id: String,
}

/// A command-line error: the text upstream would print to stderr and the
/// exit code it would use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    message: String,
    code: i32,
}

impl CliError {
    fn new(message: impl Into<String>, code: i32) -> Self {
        CliError {
            message: message.into(),
            code,
        }
    }

    /// A failure reported as `message` followed by a usage text.
    fn with_usage(message: &str, usage: &str, code: i32) -> Self {
        CliError::new(format!("{message}\n{usage}"), code)
    }

    /// The process exit status upstream uses for this error.
    pub fn exit_code(&self) -> i32 {
        self.code
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message.trim_end_matches('\n'))
    }
}

impl std::error::Error for CliError {}

/// Index of global flag `name`; panics if there is none (a programming error).
fn global_index(name: &str) -> usize {
    goflag::lookup(GLOBAL_FLAGS, name).unwrap_or_else(|| panic!("unknown global flag {name:?}"))
}

impl Config {
    /// All defaults, as if no flag was given (before `--root` resolution).
    fn defaults() -> Self {
        Config {
            values: GLOBAL_FLAGS.iter().map(|d| d.default.to_string()).collect(),
            set: vec![false; GLOBAL_FLAGS.len()],
        }
    }

    fn from_values(values: Values) -> Self {
        Config {
            values: values.scalars,
            set: values.set,
        }
    }

    /// Fills in the root directory like upstream's `NewFromFlags`: an empty
    /// `--root` means `$XDG_RUNTIME_DIR/runsc`, else `/var/run/runsc`.
    fn resolve_root(&mut self) {
        let i = global_index("root");
        if self.values[i].is_empty() {
            self.values[i] = match std::env::var_os("XDG_RUNTIME_DIR") {
                Some(dir) if !dir.is_empty() => std::path::Path::new(&dir)
                    .join("runsc")
                    .to_string_lossy()
                    .into_owned(),
                _ => "/var/run/runsc".to_string(),
            };
        }
    }

    /// The flag's value in canonical form (Go's `String()`: `true`, `16` for
    /// `0x10`, `1m30s` for `90s`), or its upstream default when not given.
    /// `root` is already resolved to the effective directory. Panics if
    /// `name` is not a global flag.
    pub fn get(&self, name: &str) -> &str {
        &self.values[global_index(name)]
    }

    /// A bool flag's value. Panics if `name` is not a global bool flag.
    pub fn get_bool(&self, name: &str) -> bool {
        let i = global_index(name);
        assert!(
            matches!(GLOBAL_FLAGS[i].kind, Kind::Bool),
            "flag {name:?} is not a bool flag"
        );
        goflag::parse_bool(&self.values[i]).expect("bool flags hold canonical values")
    }

    /// An integer flag's value; for a duration flag, its length in
    /// nanoseconds. Panics if `name` is not such a global flag.
    pub fn get_int(&self, name: &str) -> i64 {
        let i = global_index(name);
        let v = &self.values[i];
        match GLOBAL_FLAGS[i].kind {
            Kind::Int => v.parse().expect("int flags hold canonical values"),
            Kind::Uint => v
                .parse::<u64>()
                .map_or(i64::MAX, |u| i64::try_from(u).unwrap_or(i64::MAX)),
            Kind::Duration => {
                goflag::parse_duration(v).expect("duration flags hold canonical values")
            }
            _ => panic!("flag {name:?} is not an integer flag"),
        }
    }

    /// Whether the flag was given on the command line.
    pub fn is_set(&self, name: &str) -> bool {
        self.set[global_index(name)]
    }

    /// Every global flag as `--name=value`, for passing the configuration to
    /// a re-executed runsc (upstream's `Config.ToFlags()`). The front-end-only
    /// flags (`--version` and the `--*-fd` flags) are left out, as upstream
    /// does; the launcher adds FD flags itself.
    pub fn to_flags(&self) -> Vec<String> {
        GLOBAL_FLAGS
            .iter()
            .zip(&self.values)
            .filter(|(d, _)| !NOT_IN_CONFIG.contains(&d.name))
            .map(|(d, v)| format!("--{}={}", d.name, v))
            .collect()
    }

    /// The Config flags (as [`Config::to_flags`]) whose value differs from
    /// this runsc's default, with their names: what another runsc binary,
    /// whose defaults and flag set may differ, needs to be told.
    pub fn changed_flags(&self) -> Vec<(&'static str, String)> {
        GLOBAL_FLAGS
            .iter()
            .zip(&self.values)
            .filter(|(d, v)| !NOT_IN_CONFIG.contains(&d.name) && *v != d.default)
            .map(|(d, v)| (d.name, format!("--{}={}", d.name, v)))
            .collect()
    }

    /// Fails, naming the first flag (in table order) whose value differs from
    /// the default but whose feature this runsc does not implement yet.
    pub fn check_supported(&self) -> Result<(), CliError> {
        for (def, value) in GLOBAL_FLAGS.iter().zip(&self.values) {
            if value == def.default {
                continue;
            }
            let ok = match def.support {
                Support::Yes => true,
                Support::No => false,
                Support::Only(allowed) => allowed.contains(&value.as_str()),
            };
            if !ok {
                let mut msg = format!(
                    "flag --{}={} is not supported by this runsc yet",
                    def.name, value
                );
                if def.name == "platform" && value == "kvm" {
                    msg.push_str(": the KVM platform is not implemented; use --platform=systrap or --platform=ptrace");
                }
                return Err(CliError::new(msg, EXIT_FAILURE));
            }
        }
        Ok(())
    }

    /// Upstream's post-parse checks (`Config.Validate`, platform lookup, log
    /// format and FD flag checks); failures exit 128 like `util.Fatalf`.
    fn validate(&self, subcommand: &str) -> Result<(), CliError> {
        let fail = |m: String| Err(CliError::new(m, EXIT_FAILURE));
        if self.get_bool("fsgofer-host-uds") && self.is_set("host-uds") {
            return fail("fsgofer-host-uds has been replaced with host-uds flag".to_string());
        }
        if self.get_bool("overlay") && self.is_set("overlay2") {
            return fail("overlay flag has been replaced with overlay2 flag".to_string());
        }
        let channels = self.get_int("num-network-channels");
        if channels <= 0 {
            return fail(format!("num_network_channels must be > 0, got: {channels}"));
        }
        for name in ["log-format", "debug-log-format"] {
            let v = self.get(name);
            if !LOG_FORMATS.contains(&v) {
                return fail(format!(
                    "invalid log format {}, must be 'text', 'json', or 'json-k8s'",
                    go_quote(v)
                ));
            }
        }
        let platform = self.get("platform");
        if !PLATFORMS.contains(&platform) {
            return fail(format!("unknown platform: {platform}"));
        }
        if (self.get_int("debug-log-fd") > -1 || self.get_int("panic-log-fd") > -1)
            && subcommand != "boot"
            && subcommand != "gofer"
        {
            return fail(format!(
                "flags --debug-log-fd and --panic-log-fd should only be passed to 'boot' and 'gofer' command, but was passed to {}",
                go_quote(subcommand)
            ));
        }
        Ok(())
    }
}

/// Parses a full command line (`argv[0]` included) the way upstream runsc
/// does: global flags up to the subcommand, then the subcommand's own flags.
pub fn parse(argv: &[OsString]) -> Result<Invocation, CliError> {
    let mut args = Vec::with_capacity(argv.len().saturating_sub(1));
    for (i, a) in argv.iter().enumerate().skip(1) {
        match a.to_str() {
            Some(s) => args.push(s.to_string()),
            None => {
                return Err(CliError::new(
                    format!(
                        "argument {i} is not valid UTF-8: {}",
                        go_quote(&a.to_string_lossy())
                    ),
                    EXIT_FAILURE,
                ))
            }
        }
    }

    let (values, rest) = match goflag::parse(GLOBAL_FLAGS, &args) {
        Ok(parsed) => parsed,
        Err(ParseError::Help) => {
            let mut config = Config::defaults();
            config.resolve_root();
            return Ok(Invocation {
                config,
                command: Command::Help(None),
            });
        }
        Err(ParseError::Bad(msg)) => {
            return Err(CliError::with_usage(
                &msg,
                &help::short_usage(),
                EXIT_FLAG_ERROR,
            ));
        }
    };
    let mut config = Config::from_values(values);
    if config.get_bool("version") {
        return Ok(Invocation {
            config,
            command: Command::Version,
        });
    }
    config.resolve_root();
    let subcommand = rest.first().map_or("", String::as_str);
    config.validate(subcommand)?;
    let command = dispatch(&rest)?;
    Ok(Invocation { config, command })
}

/// Picks and parses the subcommand (`rest[0]`) like `subcommands.Execute`.
fn dispatch(rest: &[String]) -> Result<Command, CliError> {
    let Some((name, args)) = rest.split_first() else {
        return Err(CliError::new(help::short_usage(), EXIT_FAILURE));
    };
    let Some(cmd) = help::find(name) else {
        return Err(CliError::new(help::short_usage(), EXIT_FAILURE));
    };
    if !matches!(name.as_str(), "help" | "flags" | "do" | "boot" | "gofer")
        && !OCI_COMMANDS.contains(&name.as_str())
    {
        // Not implemented here: its flags are not parsed either.
        return Ok(Command::Unimplemented { name: name.clone() });
    }
    let usage = help::explain_command(cmd);
    let (values, positionals) = match goflag::parse(help::flags_of(name), args) {
        Ok(parsed) => parsed,
        Err(ParseError::Help) => return Err(CliError::new(usage, EXIT_FAILURE)),
        Err(ParseError::Bad(msg)) => return Err(CliError::with_usage(&msg, &usage, EXIT_FAILURE)),
    };
    if OCI_COMMANDS.contains(&name.as_str()) {
        return Ok(Command::Oci(OciArgs {
            name: name.clone(),
            scalars: values.scalars,
            lists: values.lists,
            set: values.set,
            args: positionals,
        }));
    }
    match name.as_str() {
        "help" => match positionals.first() {
            None => Ok(Command::Help(None)),
            Some(topic)
                if topic == "syscalls" && positionals.get(1).is_some_and(|f| f == "--markdown") =>
            {
                Ok(Command::SyscallsMarkdown)
            }
            Some(topic) if help::find(topic).is_some() || help::topic_text(topic).is_some() => {
                Ok(Command::Help(Some(topic.clone())))
            }
            Some(topic) => Err(CliError::with_usage(
                &format!("Subcommand {topic} not understood"),
                &usage,
                EXIT_FAILURE,
            )),
        },
        "flags" => match positionals.as_slice() {
            [] => Ok(Command::Flags),
            [sub] if help::find(sub).is_some() => Ok(Command::Help(Some(sub.clone()))),
            [sub] => Err(CliError::new(
                format!("Subcommand {sub} not understood"),
                EXIT_FAILURE,
            )),
            _ => Err(CliError::new(usage, EXIT_FAILURE)),
        },
        "do" => {
            if positionals.is_empty() {
                return Err(CliError::new(usage, EXIT_FAILURE));
            }
            let v = Sub {
                defs: DO_FLAGS,
                values: &values,
            };
            Ok(Command::Do(DoArgs {
                root: v.string("root"),
                cwd: v.string("cwd"),
                force_overlay: v.boolean("force-overlay"),
                quiet: v.boolean("quiet"),
                ip: v.string("ip"),
                volumes: v.list("volume"),
                uid_map: v.list("uid-map"),
                gid_map: v.list("gid-map"),
                argv: positionals,
            }))
        }
        "boot" => {
            let [id] = positionals.as_slice() else {
                return Err(CliError::new(usage, EXIT_FAILURE));
            };
            let v = Sub {
                defs: BOOT_FLAGS,
                values: &values,
            };
            Ok(Command::Boot(BootArgs {
                spec_fd: v.fd("spec-fd")?,
                io_fds: v.fd_list("io-fds")?,
                stdio_fds: v.fd_list("stdio-fds")?,
                start_sync_fd: v.fd("start-sync-fd")?,
                controller_fd: v.fd("controller-fd")?,
                mounts_fd: v.fd("mounts-fd")?,
                status_fd: v.fd("status-fd")?,
                bundle: v.string("bundle"),
                apply_caps: v.boolean("apply-caps"),
                setup_root: v.boolean("setup-root"),
                attached: v.boolean("attached"),
                id: id.clone(),
            }))
        }
        "gofer" => {
            let [id] = positionals.as_slice() else {
                return Err(CliError::new(usage, EXIT_FAILURE));
            };
            let v = Sub {
                defs: GOFER_FLAGS,
                values: &values,
            };
            Ok(Command::Gofer(GoferArgs {
                bundle: v.string("bundle"),
                io_fds: v.fd_list("io-fds")?,
                dev_io_fd: v.fd("dev-io-fd")?,
                spec_fd: v.fd("spec-fd")?,
                mounts_fd: v.fd("mounts-fd")?,
                sync_userns_fd: v.fd("sync-userns-fd")?,
                sync_chroot_fd: v.fd("sync-chroot-fd")?,
                apply_caps: v.boolean("apply-caps"),
                setup_root: v.boolean("setup-root"),
                id: id.clone(),
            }))
        }
        _ => unreachable!("handled above"),
    }
}

/// Typed access to a subcommand's parsed flags.
struct Sub<'a> {
    defs: &'static [FlagDef],
    values: &'a Values,
}

impl Sub<'_> {
    fn index(&self, name: &str) -> usize {
        goflag::lookup(self.defs, name)
            .unwrap_or_else(|| panic!("unknown subcommand flag {name:?}"))
    }

    fn string(&self, name: &str) -> String {
        self.values.scalars[self.index(name)].clone()
    }

    fn boolean(&self, name: &str) -> bool {
        goflag::parse_bool(&self.values.scalars[self.index(name)])
            .expect("bool flags hold canonical values")
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.values.lists[self.index(name)].clone()
    }

    fn to_fd(name: &str, v: &str) -> Result<i32, CliError> {
        v.parse::<i32>().map_err(|_| {
            CliError::new(
                format!(
                    "invalid value {} for flag -{name}: value out of range",
                    go_quote(v)
                ),
                EXIT_FAILURE,
            )
        })
    }

    fn fd(&self, name: &str) -> Result<i32, CliError> {
        Self::to_fd(name, &self.values.scalars[self.index(name)])
    }

    fn fd_list(&self, name: &str) -> Result<Vec<i32>, CliError> {
        self.values.lists[self.index(name)]
            .iter()
            .map(|v| Self::to_fd(name, v))
            .collect()
    }
}

/// Help text: `None` for the `runsc help` overview, a subcommand name for its
/// usage and flags, or a topic (`platforms`, `syscalls`).
pub fn help_text(topic: Option<&str>) -> Result<String, CliError> {
    let Some(topic) = topic else {
        return Ok(help::long_usage());
    };
    if let Some(cmd) = help::find(topic) {
        return Ok(help::explain_command(cmd));
    }
    if let Some(text) = help::topic_text(topic) {
        return Ok(text);
    }
    let help_cmd = help::find("help").expect("help is a subcommand");
    Err(CliError::with_usage(
        &format!("Subcommand {topic} not understood"),
        &help::explain_command(help_cmd),
        EXIT_FAILURE,
    ))
}

/// `runsc flags`: every global flag in Go's `PrintDefaults` format.
pub fn flags_text() -> String {
    help::global_flags_text()
}

/// `runsc --version`.
pub fn version_text() -> String {
    format!(
        "runsc version {}\nspec: {SPEC_VERSION}\n",
        env!("CARGO_PKG_VERSION")
    )
}
