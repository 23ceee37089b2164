//! `render-deploy trigger`: start a deploy through Render's deploy hook URL (contract §2).

use std::process::ExitCode;

/// Arguments of `trigger`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment variable that holds the deploy hook URL.
    #[arg(long, value_name = "NAME", default_value = "RENDER_DEPLOY_HOOK_URL")]
    pub url_env: String,
}

pub fn run(_args: Args) -> ExitCode {
    super::not_yet_available("trigger")
}
