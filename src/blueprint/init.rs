//! `blueprint init`: the `render.yaml` that deploys this service on Render.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The service name when `--name` is not given.
pub const DEFAULT_NAME: &str = "render-deploy";

/// Why `init` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The output file exists and `--force` was not given.
    #[error("{} already exists; use --force to overwrite it", .0.display())]
    Exists(PathBuf),
    /// The name cannot be a Render service name.
    #[error("invalid service name: {0}")]
    InvalidName(&'static str),
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The output file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The Blueprint for a service called `name`: a Rust web service running `render-deploy serve`,
/// checked by `check-env --connect` before each deploy, its database declared beside it and wired
/// with `fromDatabase`, and the secrets left for the Dashboard (`sync: false`).
pub fn render_yaml(name: &str) -> Result<String, InitError> {
    if name.trim().is_empty() {
        return Err(InitError::InvalidName("it is empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(InitError::InvalidName("it contains a control character"));
    }
    let service = quote(name);
    let database = quote(&format!("{name}-db"));
    let mut vars = String::new();
    for key in crate::schema::builtin_required_variables() {
        let entry = match key {
            // Render sets PORT for every web service.
            "PORT" => continue,
            "DATABASE_URL" => format!(
                "      - key: DATABASE_URL\n        fromDatabase:\n          name: {database}\n          property: connectionString\n"
            ),
            "APP_ENV" => "      - key: APP_ENV\n        value: production\n".to_owned(),
            // Secrets and account ids: entered once in the Dashboard, never committed.
            other => format!("      - key: {other}\n        sync: false\n"),
        };
        vars.push_str(&entry);
    }
    Ok(format!(
        "# Render Blueprint for this service, written by `render-deploy blueprint init`.
# Check it with `render-deploy blueprint check`; reference: https://render.com/docs/blueprint-spec
services:
  - type: web
    name: {service}
    runtime: rust
    plan: starter
    region: oregon
    buildCommand: cargo build --release --locked
    startCommand: ./target/release/render-deploy serve
    # Validates every variable and reaches the database before the new version gets traffic.
    preDeployCommand: ./target/release/render-deploy check-env --connect
    healthCheckPath: /health
    # Render sends SIGTERM, then SIGKILL after this delay; SHUTDOWN_TIMEOUT (25 s) drains before it.
    maxShutdownDelaySeconds: 30
    autoDeployTrigger: commit
    envVars:
{vars}databases:
  - name: {database}
    plan: basic-256mb
    region: oregon
"
    ))
}

/// Writes [`render_yaml`] to `path`; an existing file is replaced only with `force`.
pub fn write(path: &Path, name: &str, force: bool) -> Result<(), InitError> {
    let text = render_yaml(name)?;
    let io = |source| InitError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        // `create_new` checks and creates in one step, so two runs cannot both write.
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            InitError::Exists(path.to_owned())
        } else {
            io(e)
        }
    })?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// A YAML double-quoted scalar: safe for any name (`#`, `:`, quotes, leading `-`, unicode).
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
