//! `render-deploy verify`: verify a captured delivery offline (contract §2).

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment variable that holds the secret (never the secret itself).
    #[arg(long, value_name = "NAME")]
    pub secret_env: String,
    /// A header of the delivery, `Name: value`; repeat for each header.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The current time as a Unix timestamp (default: now), to check old captures.
    #[arg(long, value_name = "UNIX")]
    pub now: Option<i64>,
    /// Seconds of clock difference allowed.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub tolerance: u64,
    /// The raw body file, or `-` for stdin.
    pub file: Option<PathBuf>,
}

pub fn run(_args: Args) -> ExitCode {
    super::not_yet_available("verify")
}
