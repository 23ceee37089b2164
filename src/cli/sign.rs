//! `render-deploy sign`: sign a payload and print the header lines (contract §2).

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `sign`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment variable that holds the secret (never the secret itself).
    #[arg(long, value_name = "NAME")]
    pub secret_env: String,
    /// Signature scheme.
    #[arg(long, value_enum, default_value_t = Scheme::Standard)]
    pub scheme: Scheme,
    /// Delivery id (Standard Webhooks `webhook-id`); a new one when omitted.
    #[arg(long)]
    pub id: Option<String>,
    /// Unix timestamp to sign with (default: now).
    #[arg(long, value_name = "UNIX")]
    pub timestamp: Option<i64>,
    /// The payload file, or `-` for stdin.
    pub file: Option<PathBuf>,
}

/// Signature scheme of `sign`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheme {
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard,
    /// GitHub (`X-Hub-Signature-256`).
    Github,
}

pub fn run(_args: Args) -> ExitCode {
    let _ = super::read_payload;
    super::not_yet_available("sign")
}
