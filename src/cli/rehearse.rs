//! `render-deploy rehearse`: a zero-downtime deploy rehearsed on this machine (contract §8).

use std::process::ExitCode;

/// Arguments of `rehearse`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The command of one instance (default: this program's own `dev`); it must read `PORT`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub fn run(_args: Args) -> ExitCode {
    super::not_yet_available("rehearse")
}
