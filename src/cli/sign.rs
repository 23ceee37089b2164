//! `render-deploy sign`: sign a payload and print the header lines (contract §2).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::clock::unix_now;
use crate::signature;

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

/// Runs `sign`: prints `Name: value` header lines that `verify --header` accepts back.
pub fn run(args: Args) -> ExitCode {
    let scheme = match args.scheme {
        Scheme::Standard => signature::Scheme::Standard,
        Scheme::Github => signature::Scheme::Github,
    };
    let secret = match super::secret_from_env(&args.secret_env, scheme) {
        Ok(secret) => secret,
        Err(code) => return code,
    };
    if let Some(id) = &args.id
        && !signature::is_valid_id(id)
    {
        eprintln!(
            "render-deploy sign: --id must be 1 to 256 visible ASCII characters without spaces"
        );
        return ExitCode::from(2);
    }
    if args.timestamp.is_some_and(|t| t < 0) {
        eprintln!("render-deploy sign: --timestamp must not be negative");
        return ExitCode::from(2);
    }
    let id = args.id.unwrap_or_else(new_id);
    let timestamp = args.timestamp.unwrap_or_else(unix_now);
    let mut signer = match scheme {
        signature::Scheme::Standard => signature::BodySigner::standard(&secret, &id, timestamp),
        signature::Scheme::Github => signature::BodySigner::github(&secret),
    };
    if let Err(e) = super::stream_payload(args.file.as_ref(), |chunk| signer.update(chunk)) {
        eprintln!("render-deploy sign: could not read the payload: {e}");
        return ExitCode::from(1);
    }
    let signature = signer.finish();
    match scheme {
        signature::Scheme::Standard => {
            println!("{}: {id}", signature::WEBHOOK_ID);
            println!("{}: {timestamp}", signature::WEBHOOK_TIMESTAMP);
            println!("{}: {signature}", signature::WEBHOOK_SIGNATURE);
        }
        signature::Scheme::Github => {
            // GitHub signs no timestamp; the delivery id is printed so that the output can be
            // sent to `/hooks/deploy`, which needs it for replay protection.
            println!("X-Hub-Signature-256: {signature}");
            println!("X-GitHub-Delivery: {id}");
        }
    }
    ExitCode::SUCCESS
}

/// A fresh delivery id: `msg_` and 24 random letters and digits, like Standard Webhooks ids.
fn new_id() -> String {
    format!("msg_{}", crate::random::alphanumeric(24))
}
