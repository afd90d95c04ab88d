//! OCI lifecycle hooks (runtime-spec `config.md`, "POSIX-platform Hooks"):
//! each is a host program run with the container's state JSON on stdin.
//! `prestart` and `createRuntime` run once the sandbox exists, before
//! `create` returns, and a failure fails the create; `poststart` runs
//! after the init has started, `poststop` after `delete` has removed the
//! container, and their failures are only logged. `createContainer` and
//! `startContainer` would run inside the container's namespaces, which a
//! gVisor sandbox has no host form of; they are refused.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
struct Hook {
    path: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    /// Seconds; none means no limit.
    #[serde(default)]
    timeout: Option<u64>,
}

/// The hooks of `kind` in `spec`.
fn hooks_of(spec: &Value, kind: &str) -> anyhow::Result<Vec<Hook>> {
    match spec.pointer(&format!("/hooks/{kind}")) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone())
            .with_context(|| format!("reading the spec's {kind} hooks")),
    }
}

/// Refuse a spec with hooks we cannot run where the spec says.
pub fn check(spec: &Value) -> anyhow::Result<()> {
    for kind in ["createContainer", "startContainer"] {
        if !hooks_of(spec, kind)?.is_empty() {
            bail!("{kind} hooks are not supported: they run inside the container's namespaces, which a sandbox does not have on the host");
        }
    }
    Ok(())
}

/// Run the `kind` hooks in order with `state` on their stdin; the first
/// failure ends the run.
pub fn run(spec: &Value, kind: &str, state: &Value) -> anyhow::Result<()> {
    let input = state.to_string();
    for (i, h) in hooks_of(spec, kind)?.iter().enumerate() {
        run_one(h, &input).with_context(|| format!("running {kind} hook #{i} {:?}", h.path))?;
    }
    Ok(())
}

/// Run the `kind` hooks, logging failures instead of returning them.
pub fn run_logged(spec: &Value, kind: &str, state: &Value) {
    if let Err(e) = run(spec, kind, state) {
        tracing::warn!("{e:#}");
        eprintln!("runsc: {e:#}");
    }
}

fn run_one(h: &Hook, input: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new(&h.path);
    if let Some((arg0, rest)) = h.args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in &h.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // Output goes to memory files, read once it is over (a pipe could
    // fill and stall a hook that writes much).
    let out = crate::sandbox::error_capture("runsc-hook-stdout")?;
    let err = crate::sandbox::error_capture("runsc-hook-stderr")?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(err.try_clone()?));
    let mut child = cmd.spawn().context("starting it")?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input is not an error.
        let _ = stdin.write_all(input.as_bytes());
    }
    let deadline = h.timeout.map(|t| Instant::now() + Duration::from_secs(t));
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {}s", h.timeout.unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = child.wait()?;
    if status.success() {
        return Ok(());
    }
    Err(anyhow!(
        "{status}, stdout: {}, stderr: {}",
        crate::sandbox::captured(&out),
        crate::sandbox::captured(&err)
    ))
}
