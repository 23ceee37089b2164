//! `render-deploy blueprint check|init` (contract §2, §7).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::blueprint::{self, Severity, init};

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

/// Runs a `blueprint` subcommand: findings on stdout, the summary and failures on stderr.
pub fn run(cmd: Command) -> ExitCode {
    match cmd {
        Command::Check { path } => {
            let findings = match blueprint::check_file(&path) {
                Ok(findings) => findings,
                Err(e) => {
                    eprintln!("render-deploy blueprint check: error: {e}");
                    return ExitCode::from(1);
                }
            };
            for finding in &findings {
                println!("{}", finding.display(&path));
            }
            let errors = findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
            let warnings = findings.len() - errors;
            if findings.is_empty() {
                eprintln!("{}: no problems found", path.display());
            } else {
                eprintln!(
                    "{}: {errors} error{}, {warnings} warning{}",
                    path.display(),
                    plural(errors),
                    plural(warnings)
                );
            }
            ExitCode::from(u8::from(errors > 0))
        }
        Command::Init {
            name,
            output,
            force,
        } => {
            let name = name.as_deref().unwrap_or(init::DEFAULT_NAME);
            match init::write(&output, name, force) {
                Ok(()) => {
                    eprintln!(
                        "wrote {}; check it with `render-deploy blueprint check {}`",
                        output.display(),
                        output.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("render-deploy blueprint init: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
