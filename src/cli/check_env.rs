//! `render-deploy check-env`: validate the environment (contract §2, §3).

use std::path::PathBuf;
use std::process::ExitCode;

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

pub fn run(_args: Args) -> ExitCode {
    super::not_yet_available("check-env")
}
