//! `render-deploy blueprint check|init` (contract §2, §7).

use std::path::PathBuf;
use std::process::ExitCode;

/// The `blueprint` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check a render.yaml; each finding as `PATH:LINE:COLUMN: error|warning: message`.
    Check {
        /// The Blueprint file.
        #[arg(default_value = "render.yaml")]
        path: PathBuf,
    },
    /// Write a render.yaml for this service that passes `blueprint check`.
    Init {
        /// The service name.
        #[arg(long)]
        name: Option<String>,
        /// Where to write it.
        #[arg(long, default_value = "render.yaml")]
        output: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(_cmd: Command) -> ExitCode {
    super::not_yet_available("blueprint")
}
