//! `render-deploy serve` and `dev` (contract §2, §4, §6).

use std::process::ExitCode;

use crate::config::{Config, Env, Mode};
use crate::local_postgres::LocalPostgres;
use crate::server::{Deployment, DeploymentError};
use crate::telemetry;

/// `serve`: the service with the production rules; 0 after a graceful shutdown, 78 for
/// invalid configuration.
pub fn serve() -> ExitCode {
    run(Mode::Serve, &Env::from_process())
}

/// `dev`: `serve` with development defaults and, when `DATABASE_URL` is unset, a throwaway
/// PostgreSQL that lives as long as the process (removed after Ctrl-C too: the signal drains
/// the server, then the cluster is dropped).
pub fn dev() -> ExitCode {
    let mut env = Env::from_process();
    let _cluster = if env.contains("DATABASE_URL") {
        None
    } else {
        match LocalPostgres::start() {
            Ok(pg) => {
                eprintln!(
                    "dev: DATABASE_URL is unset; started a throwaway PostgreSQL on 127.0.0.1:{} \
                     in {} (removed on exit)",
                    pg.port(),
                    pg.dir().display()
                );
                env.set("DATABASE_URL", pg.url("postgres"));
                Some(pg)
            }
            Err(e) => {
                eprintln!(
                    "dev: DATABASE_URL is unset and no throwaway PostgreSQL could start: {e}"
                );
                return ExitCode::from(super::EXIT_UNAVAILABLE);
            }
        }
    };
    run(Mode::Dev, &env)
}

fn run(mode: Mode, env: &Env) -> ExitCode {
    let config = match Config::from_environment(env, mode) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "configuration is invalid: {} problems",
                errors.problems.len()
            );
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    // Held to the end of `run`: dropping it writes out the log lines still queued.
    let _log = telemetry::init_logging(config.log_format);
    telemetry::install_panic_hook();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let deployment = Deployment::new(config)?;
        let app = deployment.routes();
        deployment.serve(app).await
    });
    // Background tasks (the pool's sweep) end with the runtime; nothing is waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("render-deploy: {}", telemetry::error_chain(&e));
            // A configuration the pool or the deploy hook client cannot use is still a
            // configuration problem (78); failing to bind the port is not (1).
            match e {
                DeploymentError::Bind { .. } => ExitCode::from(1),
                _ => ExitCode::from(super::EXIT_CONFIG),
            }
        }
    }
}
