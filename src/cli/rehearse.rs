//! `render-deploy rehearse`: a zero-downtime deploy rehearsed on this machine (contract §8).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::rehearse::{InstanceCommand, RehearsalOptions, parse_duration};

/// Arguments of `rehearse`.
///
/// Durations are written `10s`, `1.5s`, `500ms` or `2m` (a bare number is seconds).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Requests per second sent through the front proxy, whatever the latency (open loop).
    #[arg(long, default_value_t = 20.0, value_name = "REQ/S")]
    pub rate: f64,
    /// The least time the load runs; it always runs until the deploy is over plus --tail.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Duration,
    /// Load on the old instances alone before the new one starts.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub warmup: Duration,
    /// Load on the new instances alone after the deploy.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub tail: Duration,
    /// Time between switching traffic to the new instance and SIGTERM to the old one.
    #[arg(long, default_value = "0.5s", value_parser = parse_duration, value_name = "DURATION")]
    pub drain: Duration,
    /// Time between SIGTERM and SIGKILL (Render's maxShutdownDelaySeconds, 30 s there).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_delay: Duration,
    /// The health path probed until it answers 2xx or 3xx (Render's healthCheckPath).
    #[arg(long, default_value = "/health", value_name = "PATH")]
    pub health_path: String,
    /// How long a new instance may take to become healthy before the deploy fails (15 min on Render).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub health_timeout: Duration,
    /// Time between two health probes.
    #[arg(long, default_value = "250ms", value_parser = parse_duration, value_name = "DURATION")]
    pub probe_interval: Duration,
    /// A path the load requests; repeat it to request several in turn.
    #[arg(long = "path", default_value = "/", value_name = "PATH")]
    pub paths: Vec<String>,
    /// How long one request may take before it counts as failed.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,
    /// How many instances serve at once; the deploy replaces them one at a time.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub instances: usize,
    /// Also write the report as a self-contained HTML page with a timeline chart.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Also hold server-sent event streams on this path through the deploy, reconnecting as a
    /// browser's EventSource does; a stream that breaks, or a reconnect that fails, fails the rehearsal.
    #[arg(long = "sse", value_name = "PATH")]
    pub sse_path: Option<String>,
    /// How many clients hold an event stream with --sse.
    #[arg(long, default_value_t = crate::rehearse::sse::DEFAULT_CLIENTS, value_name = "N", requires = "sse_path")]
    pub sse_clients: usize,
    /// Copy the instances' output to stderr, each line prefixed with the instance's name.
    #[arg(long)]
    pub show_output: bool,
    /// The old version's command, run with `sh -c` in each old instance (default: COMMAND, or
    /// this program's own `dev`).
    #[arg(long, value_name = "SHELL COMMAND")]
    pub old: Option<String>,
    /// The new version's command, run with `sh -c` in each new instance (default: COMMAND, or
    /// this program's own `dev`).
    #[arg(long, value_name = "SHELL COMMAND")]
    pub new: Option<String>,
    /// Run once, to completion, after the database is up and before the old instances start
    /// (the old version's migrations, seed data); a failure stops the rehearsal.
    #[arg(long, value_name = "SHELL COMMAND")]
    pub setup: Option<String>,
    /// Render's preDeployCommand: run after the warm-up while the old instances serve, before
    /// the new one starts, with DATABASE_URL and no PORT; a failure fails the deploy.
    #[arg(long, value_name = "SHELL COMMAND")]
    pub pre_deploy: Option<String>,
    /// max_connections of the PostgreSQL that rehearse starts when DATABASE_URL is unset
    /// (default 100, the smallest Render plans').
    #[arg(long, value_name = "N")]
    pub db_max_connections: Option<u32>,
    /// Start no PostgreSQL, count no connections, give no DATABASE_URL (a service without one).
    #[arg(long)]
    pub no_database: bool,
    /// The command of one instance (default: this program's own `dev`); it must read `PORT`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl Args {
    fn options(self) -> Result<(RehearsalOptions, Option<PathBuf>), &'static str> {
        if self.old.is_some() && self.new.is_some() && !self.command.is_empty() {
            return Err("--old and --new are both given: `-- COMMAND` would be run by neither");
        }
        let mut words = self.command.into_iter();
        let command = match words.next() {
            None => InstanceCommand::Dev,
            Some(program) => InstanceCommand::Command {
                program: program.into(),
                args: words.map(Into::into).collect(),
            },
        };
        let version = |shell: Option<String>| shell.map_or(command.clone(), InstanceCommand::Shell);
        let options = RehearsalOptions {
            old: version(self.old),
            new: version(self.new),
            setup: self.setup,
            pre_deploy: self.pre_deploy,
            no_database: self.no_database,
            db_max_connections: self.db_max_connections,
            instances: self.instances,
            rate: self.rate,
            duration: self.duration,
            warmup: self.warmup,
            tail: self.tail,
            drain: self.drain,
            shutdown_delay: self.shutdown_delay,
            health_path: self.health_path,
            health_timeout: self.health_timeout,
            probe_interval: self.probe_interval,
            paths: self.paths,
            request_timeout: self.request_timeout,
            show_output: self.show_output,
            sse_path: self.sse_path,
            sse_clients: self.sse_clients,
        };
        Ok((options, self.report))
    }
}

/// Runs `rehearse`: 0 when no request failed and no instance needed SIGKILL, 1 otherwise.
pub fn run(args: Args) -> ExitCode {
    let (options, report) = match args.options() {
        Ok(parsed) => parsed,
        Err(why) => {
            eprintln!("render-deploy rehearse: {why}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("render-deploy rehearse: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = crate::rehearse::rehearse(&options) => Some(r),
            // Dropping the rehearsal kills every instance it started.
            () = interrupted() => None,
        }
    });
    let rehearsal = match outcome {
        None => {
            eprintln!("render-deploy rehearse: interrupted; every instance was stopped");
            return ExitCode::from(1);
        }
        Some(Err(e)) => {
            eprintln!("render-deploy rehearse: {e}");
            return ExitCode::from(1);
        }
        Some(Ok(r)) => r,
    };
    print!("{}", rehearsal.text());
    if let Some(path) = report {
        match std::fs::write(&path, crate::rehearse::html::page(&rehearsal)) {
            Ok(()) => println!("report: {}", path.display()),
            Err(e) => {
                eprintln!(
                    "render-deploy rehearse: cannot write the report to {}: {e}",
                    path.display()
                );
                return ExitCode::from(1);
            }
        }
    }
    if rehearsal.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        Ok(()) = tokio::signal::ctrl_c() => {}
        Some(()) = term.recv() => {}
        else => std::future::pending().await,
    }
}
