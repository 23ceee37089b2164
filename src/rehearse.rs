//! Rehearsing a Render zero-downtime deploy on this machine (contract §8).
//!
//! Render deploys a web service by starting the new instance beside the old one, probing its
//! health path until it answers, moving traffic to it, and then sending the old instance
//! SIGTERM and, after the shutdown delay, SIGKILL. A service that mishandles any step loses
//! requests on every deploy. [`rehearse`] plays the same steps, in the same order, with the
//! timeouts scaled down, while a steady open-loop load runs through a front proxy, and returns a
//! [`Rehearsal`]: every request with its outcome and the instance that served it, the deploy's
//! phases, and how each instance started and exited.
//!
//! # Layout
//!
//! - [`orchestrator`]: the deploy itself, in Render's order ([`rehearse`]).
//! - `database`: the PostgreSQL that every command of a rehearsal shares.
//! - `instance`: one instance as a child process in its own process group, its health probe,
//!   and the guarantee that no child outlives the rehearsal.
//! - [`steps`]: the setup and pre-deploy commands, run to completion.
//! - [`connections`]: the database's client connections, sampled, and their peak per phase.
//! - [`versions`]: failed requests by phase, instance and version; the pre-deploy in reports.
//! - [`proxy`]: the front proxy that routes each new request to a current instance and tags the
//!   response with the instance that served it.
//! - [`load`]: the open-loop load generator.
//! - [`report`]: what happened ([`Rehearsal`]) and its statistics.
//! - `text`: the same, as the table printed on stdout.
//! - [`html`]: the same, as one self-contained page with timeline charts.
//! - [`sse`]: the event-stream clients of `--sse`, which reconnect as `EventSource` does.
//! - [`sse_report`]: those streams in both reports.

use std::ffi::OsString;
use std::time::Duration;

mod database;
mod instance;

pub(crate) mod connections;
pub(crate) mod html;
pub(crate) mod load;
pub(crate) mod orchestrator;
pub(crate) mod proxy;
pub(crate) mod record;
pub(crate) mod report;
pub(crate) mod sse;
pub(crate) mod sse_report;
pub(crate) mod steps;
mod text;
pub(crate) mod versions;

pub use orchestrator::rehearse;

/// Render's own limit on one health probe: a probe that has not answered 2xx or 3xx within this
/// time has failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The header the front proxy adds to every response: the name of the instance that served it.
pub const INSTANCE_HEADER: &str = "x-rehearse-instance";

/// The header the front proxy adds to a response it made up itself because the instance could
/// not answer: why (a [`FailureCause::token`]).
pub const CAUSE_HEADER: &str = "x-rehearse-cause";

/// What each instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceCommand {
    /// This program's own `dev` (`render-deploy dev`), on a throwaway PostgreSQL shared by all
    /// instances unless `DATABASE_URL` is set.
    Dev,
    /// Any other service that reads `PORT`, as a program and its arguments (`-- COMMAND ARGS`).
    Command {
        /// The program.
        program: OsString,
        /// Its arguments.
        args: Vec<OsString>,
    },
    /// Any other service that reads `PORT`, as a shell command run with `sh -c` (`--old`,
    /// `--new`).
    Shell(String),
}

impl InstanceCommand {
    /// The command as a user would type it, for the report.
    pub fn display(&self) -> String {
        match self {
            InstanceCommand::Dev => "render-deploy dev".to_owned(),
            InstanceCommand::Command { program, args } => std::iter::once(program)
                .chain(args)
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
            InstanceCommand::Shell(command) => command.clone(),
        }
    }
}

/// How to rehearse: the options of `render-deploy rehearse`.
///
/// [`Default`] gives the command-line defaults, Render's timeouts scaled down so that a
/// rehearsal takes seconds, not minutes.
#[derive(Debug, Clone)]
pub(crate) struct RehearsalOptions {
    /// What each instance of the old version runs. Default: [`InstanceCommand::Dev`].
    pub old: InstanceCommand,
    /// What each instance of the new version runs. Default: [`InstanceCommand::Dev`].
    pub new: InstanceCommand,
    /// Run once with `sh -c`, to completion, after the database is up and before the old
    /// instances start; a failure stops the rehearsal. Default: none.
    pub setup: Option<String>,
    /// Run with `sh -c` after the warm-up, while the old instances serve and before the new
    /// one starts (Render's `preDeployCommand`); a failure fails the deploy. Default: none.
    pub pre_deploy: Option<String>,
    /// Start no database, sample none, and give no `DATABASE_URL`. Default false.
    pub no_database: bool,
    /// `max_connections` of the throwaway PostgreSQL (only when `DATABASE_URL` is unset).
    /// Default: none, which is 100.
    pub db_max_connections: Option<u32>,
    /// How many instances serve at once; a deploy replaces them one at a time. Default 1.
    pub instances: usize,
    /// Requests per second sent through the front proxy, whatever the latency. Default 20.
    pub rate: f64,
    /// The least time the load runs; it always runs until the deploy has finished plus
    /// [`tail`](Self::tail). Default 10 s.
    pub duration: Duration,
    /// Load on the old instances alone before the first new instance starts. Default 1 s.
    pub warmup: Duration,
    /// Load on the new instances alone after the last step of the deploy. Default 1 s.
    pub tail: Duration,
    /// Time between switching traffic to the new instance and sending SIGTERM to the old one.
    /// Default 0.5 s.
    pub drain: Duration,
    /// Time between SIGTERM and SIGKILL (Render's `maxShutdownDelaySeconds`, 30 s by default
    /// on Render). Default 10 s.
    pub shutdown_delay: Duration,
    /// The path probed for health (Render's `healthCheckPath`). Default `/health`.
    pub health_path: String,
    /// How long an instance may take to become healthy before the deploy is declared failed
    /// (Render waits 15 minutes). Default 30 s.
    pub health_timeout: Duration,
    /// Time between two health probes. Default 250 ms.
    pub probe_interval: Duration,
    /// The paths the load requests, in turn. Default `["/"]`.
    pub paths: Vec<String>,
    /// How long one request of the load may take before it counts as failed. Default 10 s.
    pub request_timeout: Duration,
    /// Copy each instance's stdout and stderr to our stderr, each line prefixed with the
    /// instance's name. Default false (the last lines are kept for the report either way).
    pub show_output: bool,
    /// `--sse PATH`: clients hold an event stream on this path through the deploy. Default none.
    pub sse_path: Option<String>,
    /// `--sse-clients`: how many. Default [`sse::DEFAULT_CLIENTS`].
    pub sse_clients: usize,
}

impl Default for RehearsalOptions {
    fn default() -> Self {
        Self {
            old: InstanceCommand::Dev,
            new: InstanceCommand::Dev,
            setup: None,
            pre_deploy: None,
            no_database: false,
            db_max_connections: None,
            instances: 1,
            rate: 20.0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            tail: Duration::from_secs(1),
            drain: Duration::from_millis(500),
            shutdown_delay: Duration::from_secs(10),
            health_path: "/health".to_owned(),
            health_timeout: Duration::from_secs(30),
            probe_interval: Duration::from_millis(250),
            paths: vec!["/".to_owned()],
            request_timeout: Duration::from_secs(10),
            show_output: false,
            sse_path: None,
            sse_clients: sse::DEFAULT_CLIENTS,
        }
    }
}

/// The highest `--rate`: the load stays bounded in sockets and memory.
pub const MAX_RATE: f64 = 2000.0;
/// The most instances a rehearsal starts.
pub(crate) const MAX_INSTANCES: usize = 16;
/// The longest `--duration` (and any other duration option).
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(3600);
/// `max_connections` of the throwaway PostgreSQL without `--db-max-connections`: that of
/// Render's smallest plans.
pub(crate) const DEFAULT_DB_MAX_CONNECTIONS: u32 = 100;
/// The range of `--db-max-connections` (PostgreSQL needs a few slots for itself; its own
/// limit is far higher than a rehearsal on one machine can use).
pub(crate) const DB_MAX_CONNECTIONS: std::ops::RangeInclusive<u32> = 5..=10_000;

impl RehearsalOptions {
    /// Checks the options that the types alone do not rule out (and `--db-max-connections`
    /// against `DATABASE_URL` in the environment, which it cannot apply to).
    pub fn validate(&self) -> Result<(), RehearseError> {
        let invalid = |option: &'static str, expected: &'static str| {
            Err(RehearseError::InvalidOption { option, expected })
        };
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= MAX_RATE) {
            return invalid(
                "--rate",
                "a number of requests per second above 0, at most 2000",
            );
        }
        if self.instances == 0 || self.instances > MAX_INSTANCES {
            return invalid("--instances", "from 1 to 16");
        }
        let durations = [
            ("--duration", self.duration),
            ("--warmup", self.warmup),
            ("--tail", self.tail),
            ("--drain", self.drain),
            ("--shutdown-delay", self.shutdown_delay),
            ("--health-timeout", self.health_timeout),
            ("--request-timeout", self.request_timeout),
        ];
        if let Some((option, _)) = durations.iter().find(|(_, d)| *d > MAX_DURATION) {
            return invalid(option, "at most one hour");
        }
        if self.paths.is_empty() || self.paths.iter().any(|p| !valid_path(p)) {
            return invalid("--path", "an absolute path such as /, /items?page=2");
        }
        if !valid_path(&self.health_path) {
            return invalid("--health-path", "an absolute path such as /health");
        }
        if self.request_timeout.is_zero() {
            return invalid("--request-timeout", "a duration above zero");
        }
        if let Some(path) = &self.sse_path
            && !valid_path(path)
        {
            return invalid("--sse", "an absolute path such as /events");
        }
        if self.sse_clients == 0 || self.sse_clients > sse::MAX_CLIENTS {
            return invalid("--sse-clients", "from 1 to 64");
        }
        if self.probe_interval.is_zero() {
            return invalid("--probe-interval", "a duration above zero");
        }
        for (option, command) in [("--old", &self.old), ("--new", &self.new)] {
            if matches!(command, InstanceCommand::Shell(c) if c.trim().is_empty()) {
                return invalid(option, "a shell command");
            }
        }
        for (option, command) in [("--setup", &self.setup), ("--pre-deploy", &self.pre_deploy)] {
            if command.as_ref().is_some_and(|c| c.trim().is_empty()) {
                return invalid(option, "a shell command");
            }
        }
        if let Some(n) = self.db_max_connections {
            if !DB_MAX_CONNECTIONS.contains(&n) {
                return invalid("--db-max-connections", "a number from 5 to 10000");
            }
            if self.no_database {
                return invalid(
                    "--db-max-connections",
                    "no --no-database: it sets the limit of the rehearsal's own PostgreSQL",
                );
            }
            if std::env::var_os("DATABASE_URL").is_some() {
                return invalid(
                    "--db-max-connections",
                    "DATABASE_URL unset: it sets the limit of the PostgreSQL that rehearse \
                     starts, and with DATABASE_URL set it starts none",
                );
            }
        }
        Ok(())
    }
}

fn valid_path(path: &str) -> bool {
    path.starts_with('/') && path.parse::<hyper::http::uri::PathAndQuery>().is_ok()
}

/// Why a rehearsal could not be run at all (a deploy that fails is a [`Rehearsal`] that did not
/// succeed, not an error).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RehearseError {
    /// An option is out of range.
    #[error("{option}: expected {expected}")]
    InvalidOption {
        /// The option, as spelt on the command line.
        option: &'static str,
        /// What is expected.
        expected: &'static str,
    },
    /// This program's own path could not be found (to run `dev`).
    #[error("cannot find this program's own path to run `dev`: {0}")]
    CurrentExe(#[source] std::io::Error),
    /// An instance could not be started.
    #[error("cannot start instance {instance} ({command}): {source}")]
    Spawn {
        /// The instance's name.
        instance: String,
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No free loopback port could be had for an instance or the proxy.
    #[error("cannot bind a loopback port: {0}")]
    Bind(#[source] std::io::Error),
    /// An old instance never became healthy, so there was nothing to deploy over.
    #[error(
        "the old instance {instance} did not become healthy ({reason}); nothing to deploy over{}",
        output_tail(.output)
    )]
    OldNotHealthy {
        /// The instance's name.
        instance: String,
        /// The last probe's failure, or how the instance exited.
        reason: String,
        /// The last lines the instance printed.
        output: Vec<String>,
    },
    /// The throwaway PostgreSQL shared by every command could not be started.
    #[error("cannot start the throwaway PostgreSQL for the rehearsal: {0}")]
    Postgres(#[from] crate::local_postgres::LocalPostgresError),
    /// The database could not be connected to, to count its connections.
    #[error(
        "cannot connect to the database to count its connections: {0} (--no-database rehearses without one)"
    )]
    Sampler(#[from] connections::SamplerError),
    /// The setup command failed, so there is nothing to deploy over.
    #[error(
        "the setup command `{command}` {how}; nothing to deploy over{}",
        output_tail(.output)
    )]
    SetupFailed {
        /// The command.
        command: String,
        /// How it ended (`exited 1`).
        how: String,
        /// Its last lines.
        output: Vec<String>,
    },
}

fn output_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut s = String::from("; its last output:");
    for line in lines {
        s.push_str("\n    ");
        s.push_str(line);
    }
    s
}

/// A duration on the command line: `10` or `10s` (seconds, fractions allowed), `500ms`, `2m`.
#[derive(Debug, thiserror::Error)]
#[error("expected a duration such as 10s, 1.5s, 500ms or 2m, found {0:?}")]
pub(crate) struct DurationError(String);

/// Parses a duration of the command line: `10` or `10s`, `1.5s`, `500ms`, `2m`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| DurationError(text.to_owned()))?;
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(DurationError(text.to_owned()));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_in_seconds_milliseconds_or_minutes() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn a_duration_that_is_not_a_number_or_is_negative_is_refused() {
        for bad in ["", "s", "ten", "-1s", "1h", "NaN", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_defaults_are_valid_and_out_of_range_options_are_refused() {
        RehearsalOptions::default().validate().unwrap();
        let bad = [
            RehearsalOptions {
                rate: 0.0,
                ..Default::default()
            },
            RehearsalOptions {
                rate: 1e6,
                ..Default::default()
            },
            RehearsalOptions {
                instances: 0,
                ..Default::default()
            },
            RehearsalOptions {
                paths: vec!["no-slash".into()],
                ..Default::default()
            },
            RehearsalOptions {
                health_path: "/with space".into(),
                ..Default::default()
            },
            RehearsalOptions {
                old: InstanceCommand::Shell("  ".into()),
                ..Default::default()
            },
            RehearsalOptions {
                pre_deploy: Some(String::new()),
                ..Default::default()
            },
            RehearsalOptions {
                db_max_connections: Some(4),
                ..Default::default()
            },
            RehearsalOptions {
                db_max_connections: Some(20),
                no_database: true,
                ..Default::default()
            },
            RehearsalOptions {
                sse_path: Some("events".into()),
                ..Default::default()
            },
            RehearsalOptions {
                sse_clients: 65,
                ..Default::default()
            },
        ];
        for options in bad {
            assert!(options.validate().is_err(), "{options:?} was accepted");
        }
    }

    #[test]
    fn a_command_is_displayed_as_typed() {
        let c = InstanceCommand::Command {
            program: "python3".into(),
            args: vec!["-m".into(), "app".into()],
        };
        assert_eq!(c.display(), "python3 -m app");
        assert_eq!(InstanceCommand::Dev.display(), "render-deploy dev");
        let shell = InstanceCommand::Shell("cd app && ./run --port \"$PORT\"".into());
        assert_eq!(shell.display(), "cd app && ./run --port \"$PORT\"");
    }
}
