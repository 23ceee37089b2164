//! `render-deploy trigger`: start a deploy through Render's deploy hook URL (contract §2).

use std::process::ExitCode;

use crate::render_api::deploy_hook::{DeployHookClient, DeployHookUrl};

/// Arguments of `trigger`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment variable that holds the deploy hook URL.
    #[arg(long, value_name = "NAME", default_value = "RENDER_DEPLOY_HOOK_URL")]
    pub url_env: String,
}

/// Runs `trigger`: the deploy id on stdout and 0 when Render accepts, 1 otherwise.
pub fn run(args: Args) -> ExitCode {
    let value = match std::env::var(&args.url_env) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => {
            eprintln!(
                "render-deploy trigger: {} is not set (expected Render's deploy hook URL)",
                args.url_env
            );
            return ExitCode::from(1);
        }
    };
    let url = match DeployHookUrl::parse(&value) {
        Ok(url) => url,
        Err(e) => {
            // The error never carries the value, so the key cannot leak here.
            eprintln!("render-deploy trigger: {}: {e}", args.url_env);
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("render-deploy trigger: could not start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let client = DeployHookClient::new(url)?;
        client.trigger().await
    });
    match result {
        Ok(triggered) => {
            match triggered.deploy_id {
                Some(id) => println!("{id}"),
                None => eprintln!("deploy accepted (Render's answer carried no deploy id)"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "render-deploy trigger: {}",
                crate::telemetry::error_chain(&e)
            );
            ExitCode::from(1)
        }
    }
}
