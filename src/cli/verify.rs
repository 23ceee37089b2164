//! `render-deploy verify`: verify a captured delivery offline (contract §2).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::clock::unix_now;
use crate::signature;

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

/// Runs `verify`: `valid` on stdout and 0, or the reason on stderr and 1; 78 for a bad secret.
pub fn run(args: Args) -> ExitCode {
    let headers = match parse_headers(&args.headers) {
        Ok(headers) => headers,
        Err(problem) => {
            eprintln!("invalid: {problem}");
            return ExitCode::from(1);
        }
    };
    let scheme = signature::detect_scheme(&headers).unwrap_or(signature::Scheme::Standard);
    let secret = match super::secret_from_env(&args.secret_env, scheme) {
        Ok(secret) => secret,
        Err(code) => return code,
    };
    let now = args.now.unwrap_or_else(unix_now);
    let tolerance = Duration::from_secs(args.tolerance);
    // The headers are checked first (a stale or malformed delivery needs no body), then the raw
    // body is streamed through the HMAC after the signed prefix: memory stays flat for any size.
    let mut verifier = match signature::verifier(&secret, &headers, now, tolerance) {
        Ok(verifier) => verifier,
        Err(e) => {
            eprintln!("invalid: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = super::stream_payload(args.file.as_ref(), |chunk| verifier.update(chunk)) {
        eprintln!("render-deploy verify: could not read the body: {e}");
        return ExitCode::from(1);
    }
    match verifier.finish() {
        Ok(_) => {
            println!("valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("invalid: {e}");
            ExitCode::from(1)
        }
    }
}

/// `Name: value` lines into a header map (names are case-insensitive there).
fn parse_headers(lines: &[String]) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("--header {line:?} is not `Name: value`"));
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("--header {:?} has an invalid name", name.trim()))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("--header {} has an invalid value", name.as_str()))?;
        headers.append(name, value);
    }
    Ok(headers)
}
