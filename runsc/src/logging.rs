//! Logging as upstream's flags configure it: nothing by default (the
//! workload owns stdout and stderr), `--debug-log=FILE` or `--debug-log=DIR/`
//! for a log file, `--alsologtostderr` to copy it to stderr, `--debug` for
//! debug detail.

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing_subscriber::fmt::writer::MakeWriterExt;

use crate::cli::Config;

/// The file a `--debug-log` value names for `command`: a path ending in `/`
/// is a directory that gets one file per command, as upstream.
fn log_path(value: &str, command: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expanded = value
        .replace("%TIMESTAMP%", &now.to_string())
        .replace("%COMMAND%", command)
        .replace("%PID%", &std::process::id().to_string());
    if expanded.ends_with('/') {
        format!(
            "{expanded}runsc.log.{now}.{}.{command}.txt",
            std::process::id()
        )
    } else {
        expanded
    }
}

/// The `--debug-log` file for `command`, opened for appending (`None`
/// without the flag, or with a message on stderr if it cannot be opened).
pub fn open_debug_log(config: &Config, command: &str) -> Option<std::fs::File> {
    let path = config.get("debug-log");
    if path.is_empty() {
        return None;
    }
    let path = log_path(path, command);
    if let Some(dir) = std::path::Path::new(&path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match OpenOptions::new().create(true).append(true).open(&path) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("runsc: opening debug log {path:?}: {e}");
            None
        }
    }
}

pub fn init(config: &Config, command: &str) {
    let level = if config.get_bool("debug") {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let to_stderr = config.get_bool("alsologtostderr");
    let file = open_debug_log(config, command);
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(level)
        .with_thread_ids(true);
    match (file, to_stderr) {
        (Some(f), true) => builder
            .with_writer(Mutex::new(f).and(std::io::stderr))
            .init(),
        (Some(f), false) => builder.with_writer(Mutex::new(f)).init(),
        (None, true) => builder.with_writer(std::io::stderr).init(),
        (None, false) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_logs_get_one_file_per_command() {
        let p = log_path("/tmp/logs/", "boot");
        assert!(p.starts_with("/tmp/logs/runsc.log."), "{p}");
        assert!(p.ends_with(".boot.txt"), "{p}");
        assert_eq!(log_path("/tmp/x-%COMMAND%.log", "do"), "/tmp/x-do.log");
    }
}
