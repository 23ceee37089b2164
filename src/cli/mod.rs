//! The command-line program: argument parsing and one file per command.
//!
//! Exit codes follow `sysexits.h` where the contract asks for them: 78 (`EX_CONFIG`) for
//! invalid configuration, 69 (`EX_UNAVAILABLE`) for an unreachable database or API, and for
//! `deploy` 75 (`EX_TEMPFAIL`, not finished in time) and 77 (`EX_NOPERM`, the API key refused).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod blueprint;
mod check_env;
mod deploy;
mod deploy_output;
mod rehearse;
mod serve;
mod sign;
mod trigger;
mod verify;

/// Invalid configuration (`EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;
/// A required service (the database) is unreachable (`EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// Make a web service safe and fast to deploy on Render.
#[derive(Debug, Parser)]
#[command(name = "render-deploy", version, about, long_about = None)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of the program (contract §2).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service with the configuration read from the environment.
    Serve,
    /// `serve` for a laptop: development defaults and a throwaway PostgreSQL when DATABASE_URL is unset.
    Dev,
    /// Validate the environment and print every problem (meant as Render's preDeployCommand).
    CheckEnv(check_env::Args),
    /// Sign a payload and print the HTTP header lines that carry the signature.
    Sign(sign::Args),
    /// Verify a captured delivery offline.
    Verify(verify::Args),
    /// Start a deploy through Render's deploy hook URL.
    Trigger(trigger::Args),
    /// Check or write a Blueprint (`render.yaml`).
    #[command(subcommand)]
    Blueprint(blueprint::Command),
    /// Rehearse a Render zero-downtime deploy on this machine.
    Rehearse(Box<rehearse::Args>),
    /// Deploy through Render's API; with --wait, follow it to live, smoke-test it, roll back.
    Deploy(deploy::Args),
}

/// Parses the command line and runs the command; the whole of `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => serve::serve(),
        Command::Dev => serve::dev(),
        Command::CheckEnv(args) => check_env::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Trigger(args) => trigger::run(args),
        Command::Blueprint(cmd) => blueprint::run(cmd),
        Command::Rehearse(args) => rehearse::run(*args),
        Command::Deploy(args) => deploy::run(args),
    }
}

/// Bytes read at a time from a payload: large enough that a 256 MiB file costs a few thousand
/// `read` calls, small enough that memory stays flat whatever the payload's size.
const PAYLOAD_CHUNK: usize = 256 * 1024;

/// Streams a payload argument (a file, or `-` / nothing for stdin) through `feed` in chunks of
/// at most [`PAYLOAD_CHUNK`] bytes; nothing is kept after `feed` has seen it.
fn stream_payload(path: Option<&PathBuf>, mut feed: impl FnMut(&[u8])) -> std::io::Result<()> {
    use std::io::Read;
    let mut input: Box<dyn Read> = match path {
        Some(p) if p.as_os_str() != "-" => Box::new(std::fs::File::open(p)?),
        _ => Box::new(std::io::stdin().lock()),
    };
    let mut buf = vec![0u8; PAYLOAD_CHUNK];
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => feed(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads a signing secret from the variable `name` for `sign`/`verify`: a missing, empty or
/// unusable secret prints why on stderr (never the value) and gives exit code 78; a short one
/// draws a warning.
fn secret_from_env(
    name: &str,
    scheme: crate::signature::Scheme,
) -> Result<crate::signature::WebhookSecret, ExitCode> {
    let Ok(value) = std::env::var(name) else {
        eprintln!("{name}: is not set (expected the webhook signing secret)");
        return Err(ExitCode::from(EXIT_CONFIG));
    };
    let secret = crate::signature::WebhookSecret::parse(&value).map_err(|e| {
        eprintln!("{name}: {e} (expected whsec_ + base64, or any non-empty string)");
        ExitCode::from(EXIT_CONFIG)
    })?;
    if secret.key_len(scheme) < crate::signature::RECOMMENDED_KEY_LEN {
        eprintln!(
            "warning: {name}: the key is shorter than {} bytes",
            crate::signature::RECOMMENDED_KEY_LEN
        );
    }
    Ok(secret)
}
