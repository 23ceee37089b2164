//! `render-deploy check-env`: validate the environment (contract §2, §3).
//!
//! Text output: every problem on stderr, one per line (`NAME: what is wrong (what is
//! expected)`), exit 78; or the redacted summary on stdout, exit 0. JSON output (stdout, either
//! way): `{"ok": bool, "problems": [{"var", "problem"}], "summary": {...}}`, plus `"warnings"`,
//! and `"error"` when the schema file itself is unusable (also exit 78: the pre-deploy check
//! must not pass when it could not check anything).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::config::{Config, Env, Mode, Problem, Summary};
use crate::database_url::DatabaseUrl;
use crate::pool::{PoolError, PoolManager, PoolSettings, PoolSizing};
use crate::schema::Schema;

/// Arguments of `check-env`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A TOML schema of another application's variables (default: this service's own).
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also connect to the database and report its version, max_connections and the pool size.
    #[arg(long)]
    pub connect: bool,
}

/// Output format of `check-env`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per problem, or a redacted summary.
    Text,
    /// `{"ok": bool, "problems": [{"var", "problem"}], "summary": {...}}`.
    Json,
}

/// What `check-env` found, before it is printed.
#[derive(Debug, Default, Serialize)]
struct Outcome {
    ok: bool,
    problems: Vec<Problem>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<Problem>,
    summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// With `--connect`: what the database said, and the pool size `serve` would choose.
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<PoolSizing>,
}

pub fn run(args: Args) -> ExitCode {
    let env = Env::from_process();
    let (outcome, config) = match &args.schema {
        Some(path) => match Schema::from_file(path) {
            Ok(schema) => {
                let report = schema.check(&env, Mode::Serve);
                let outcome = Outcome {
                    ok: report.is_ok(),
                    problems: report.problems.clone(),
                    warnings: report.warnings.clone(),
                    summary: report.summary.clone(),
                    error: None,
                    database: None,
                };
                (outcome, None)
            }
            Err(e) => {
                let outcome = Outcome {
                    error: Some(e.to_string()),
                    ..Outcome::default()
                };
                (outcome, None)
            }
        },
        None => {
            let validation = Config::validate(&env, Mode::Serve);
            let (problems, config) = match validation.result {
                Ok(config) => (Vec::new(), Some(config)),
                Err(errors) => (errors.problems, None),
            };
            let outcome = Outcome {
                ok: problems.is_empty(),
                problems,
                warnings: validation.warnings,
                summary: validation.summary,
                error: None,
                database: None,
            };
            (outcome, config)
        }
    };
    let mut outcome = outcome;
    let mut connect_code = None;
    if args.connect && outcome.ok {
        match connect(config.as_ref(), &env) {
            Ok(sizing) => outcome.database = Some(sizing),
            Err((code, message)) => {
                outcome.ok = false;
                outcome.error = Some(message);
                connect_code = Some(code);
            }
        }
    }
    let code = print(&outcome, args.format);
    connect_code.map_or(code, ExitCode::from)
}

/// Prints the outcome; returns 0 when valid, 78 otherwise.
fn print(outcome: &Outcome, format: Format) -> ExitCode {
    // A closed stdout (e.g. `| head`) is not a reason to panic; the exit code still tells.
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    match format {
        Format::Json => {
            if let Ok(json) = serde_json::to_string_pretty(outcome) {
                let _ = writeln!(out, "{json}");
            }
        }
        Format::Text => {
            if let Some(e) = &outcome.error {
                let _ = writeln!(err, "{e}");
            }
            for w in &outcome.warnings {
                let _ = writeln!(err, "warning: {w}");
            }
            for p in &outcome.problems {
                let _ = writeln!(err, "{p}");
            }
            if outcome.ok {
                let width = outcome
                    .summary
                    .iter()
                    .map(|(k, _)| k.len())
                    .max()
                    .unwrap_or(0);
                let _ = writeln!(out, "configuration is valid");
                for (name, shown) in outcome.summary.iter() {
                    let _ = writeln!(out, "  {name:<width$}  {shown}");
                }
                if let Some(db) = &outcome.database {
                    let _ = writeln!(out, "database reachable: PostgreSQL {}", db.server_version);
                    let _ = writeln!(out, "  max_connections  {}", db.max_connections);
                    let _ = writeln!(out, "  {db}");
                    if db.exceeds_budget() {
                        let _ = writeln!(
                            err,
                            "warning: DB_POOL_MAX={} exceeds the per-instance budget of {} during a deploy",
                            db.chosen, db.budget
                        );
                    }
                }
            } else if outcome.error.is_none() {
                let n = outcome.problems.len();
                let s = if n == 1 { "" } else { "s" };
                let _ = writeln!(err, "configuration is invalid: {n} problem{s}");
            }
        }
    }
    if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_CONFIG)
    }
}

/// `--connect`: connects once and reports what `serve`'s pool would choose.
///
/// With `--schema` there is no typed configuration; `DATABASE_URL` is then read on its own,
/// with the pool's default settings. Exit codes: 69 when the database cannot be reached
/// (refused, timed out), 78 when it answers but refuses us (password, TLS, budget).
fn connect(config: Option<&Config>, env: &Env) -> Result<PoolSizing, (u8, String)> {
    let (url, settings) = match config {
        Some(config) => (config.database_url.clone(), config.pool.clone()),
        None => {
            let value = env.get("DATABASE_URL").ok_or_else(|| {
                (
                    super::EXIT_CONFIG,
                    "--connect: DATABASE_URL is not set".to_owned(),
                )
            })?;
            let url = DatabaseUrl::parse(value)
                .map_err(|e| (super::EXIT_CONFIG, format!("--connect: DATABASE_URL {e}")))?;
            (url, PoolSettings::default())
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (1, format!("--connect: cannot start the async runtime: {e}")))?;
    runtime
        .block_on(PoolManager::inspect(&url, &settings))
        .map_err(|e| {
            let code = match e {
                PoolError::Unavailable { .. } | PoolError::Timeout { .. } | PoolError::Closed => {
                    super::EXIT_UNAVAILABLE
                }
                _ => super::EXIT_CONFIG,
            };
            (code, format!("--connect: {e}"))
        })
}
