//! Configuration: every environment variable of the contract, read once, all problems at once.
//!
//! The rules are data: [`crate::schema`]'s built-in schema (`src/builtin_schema.toml`) says what
//! each variable must look like; this module runs that schema over the environment and turns
//! the parsed values into one typed [`Config`]. Nothing downstream re-reads the environment or
//! re-checks a string. A secret is held in a type whose `Debug` redacts it, so `{:?}` of a
//! [`Config`] is safe to log.
//!
//! ```
//! use render_deploy::config::{Config, Mode};
//!
//! let env = [
//!     ("DATABASE_URL", "postgres://app:pw@db.internal:5432/app"),
//!     ("PORT", "10000"),
//!     ("FLASK_ENV", "production"),
//!     ("OPENAI_API_KEY", "sk-abcdefghijklmnopqrstuvwx"),
//!     ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
//!     ("TWILIO_AUTH_TOKEN", "0123456789abcdef0123456789abcdef"),
//!     ("RENDER_DEPLOY_HOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
//! ];
//! let config = Config::from_vars(env, Mode::Serve).expect("valid");
//! assert_eq!(config.port, 10000);
//! assert!(!format!("{config:?}").contains(":pw@"));
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use crate::database_url::DatabaseUrl;
use crate::deploy_hook::DeployHookUrl;
use crate::health::{DbPolicy, HealthSettings};
use crate::hooks::HookSettings;
use crate::pool::{PoolMax, PoolSettings};
use crate::replay::ReplayStoreKind;
use crate::schema::{Parsed, ProblemKind, Report, Schema};
use crate::signature::WebhookSecret;
use crate::telemetry::LogFormat;

pub use crate::schema::{Env, Mode, Problem, Summary};

/// The deployment environment (`APP_ENV`, or its alias `FLASK_ENV`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    /// Production: JSON logs by default.
    Production,
    /// A developer's machine (what `dev` sets unless told otherwise).
    Development,
    /// Automated tests.
    Testing,
}

impl AppEnv {
    /// The spelling used in the environment.
    pub fn as_str(self) -> &'static str {
        match self {
            AppEnv::Production => "production",
            AppEnv::Development => "development",
            AppEnv::Testing => "testing",
        }
    }
}

/// An `APP_ENV` that is none of `production`, `development`, `testing`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is not one of production, development, testing")]
pub struct AppEnvError;

impl FromStr for AppEnv {
    type Err = AppEnvError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "production" => Ok(AppEnv::Production),
            "development" => Ok(AppEnv::Development),
            "testing" => Ok(AppEnv::Testing),
            _ => Err(AppEnvError),
        }
    }
}

impl fmt::Display for AppEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Render's own variables, when present (shown in `/health` and the logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderInfo {
    /// `RENDER=true`: running on Render.
    pub on_render: bool,
    /// `RENDER_SERVICE_ID`.
    pub service_id: Option<String>,
    /// `RENDER_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `RENDER_INSTANCE_ID`.
    pub instance_id: Option<String>,
    /// `RENDER_GIT_COMMIT`.
    pub git_commit: Option<String>,
    /// `RENDER_CPU_COUNT`.
    pub cpu_count: Option<u32>,
    /// `RENDER_EXTERNAL_URL`.
    pub external_url: Option<String>,
}

/// The whole configuration, read once from the environment. Its `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`.
    pub database_url: DatabaseUrl,
    /// `HOST` (default `0.0.0.0`).
    pub host: IpAddr,
    /// `PORT` (under `dev`: 10000 unless set).
    pub port: u16,
    /// `APP_ENV` or `FLASK_ENV` (under `dev`: development unless set).
    pub app_env: AppEnv,
    /// `OPENAI_API_KEY` (`None` only under `dev`).
    pub openai_api_key: Option<SecretString>,
    /// `TWILIO_ACCOUNT_SID` (`None` only under `dev`).
    pub twilio_account_sid: Option<String>,
    /// `TWILIO_AUTH_TOKEN` (`None` only under `dev`).
    pub twilio_auth_token: Option<SecretString>,
    /// `RENDER_DEPLOY_HOOK_SECRET` (`None` only under `dev`: `/hooks/deploy` then answers 503).
    pub deploy_hook_secret: Option<WebhookSecret>,
    /// `RENDER_DEPLOY_HOOK_URL`.
    pub deploy_hook_url: Option<DeployHookUrl>,
    /// The `HEALTH_*` variables.
    pub health: HealthSettings,
    /// The `DB_*` variables, and `RENDER_CPU_COUNT`.
    pub pool: PoolSettings,
    /// The `WEBHOOK_*` variables.
    pub hooks: HookSettings,
    /// `SHUTDOWN_TIMEOUT` (default 25 s).
    pub shutdown_timeout: Duration,
    /// `REQUEST_TIMEOUT` (default 30 s).
    pub request_timeout: Duration,
    /// `HEADER_READ_TIMEOUT`: how long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// `SHUTDOWN_LINGER_MS`: after SIGTERM, how long open connections are still answered.
    pub shutdown_linger: Duration,
    /// `METRICS_TOKEN`: `/metrics` is served only with it.
    pub metrics_token: Option<SecretString>,
    /// `LOG_FORMAT` (default json in production, pretty otherwise).
    pub log_format: LogFormat,
    /// Render's own variables.
    pub render: RenderInfo,
    /// Warnings that do not make the configuration invalid (under `dev`: each optional
    /// variable that `serve` would require).
    pub warnings: Vec<Problem>,
    summary: Summary,
}

/// Every problem of an invalid configuration; `Display` writes one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The problems, in the order of the schema. Never empty.
    pub problems: Vec<Problem>,
}

impl ConfigErrors {
    /// Whether one of the problems is about `var`.
    pub fn names(&self, var: &str) -> bool {
        self.problems.iter().any(|p| p.var == var)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The outcome of checking an environment: the configuration or every problem, and in both
/// cases the warnings and the redacted summary (what `check-env` prints).
#[derive(Debug)]
pub struct Validation {
    /// The configuration, or every problem.
    pub result: Result<Config, ConfigErrors>,
    /// Warnings (under `dev`).
    pub warnings: Vec<Problem>,
    /// Every variable and how it is shown, secrets redacted.
    pub summary: Summary,
}

impl Config {
    /// Reads this process's environment.
    pub fn from_env(mode: Mode) -> Result<Config, ConfigErrors> {
        Self::from_environment(&Env::from_process(), mode)
    }

    /// Reads variables given as pairs (for tests, or an environment built by hand).
    pub fn from_vars<I, K, V>(vars: I, mode: Mode) -> Result<Config, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self::from_environment(&vars.into_iter().collect(), mode)
    }

    /// Reads an [`Env`]. The `dev` command builds one with [`Env::from_process`], sets
    /// `DATABASE_URL` to its throwaway cluster when it is unset, then calls this.
    pub fn from_environment(env: &Env, mode: Mode) -> Result<Config, ConfigErrors> {
        Self::validate(env, mode).result
    }

    /// Checks an environment against the built-in schema and builds the configuration.
    pub fn validate(env: &Env, mode: Mode) -> Validation {
        let report = Schema::builtin().check(env, mode);
        build(report)
    }

    /// Every variable and how it is shown: secrets as `set (secret)`, URLs with `****`.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }
}

/// Turns a report of the built-in schema into a [`Config`]. The report's values are already
/// parsed; what is left are the rules that concern two variables at once.
fn build(mut report: Report) -> Validation {
    let mut problems = std::mem::take(&mut report.problems);
    let warnings = std::mem::take(&mut report.warnings);
    let mut summary = std::mem::take(&mut report.summary);

    let database_url = match report.take("DATABASE_URL") {
        Some(Parsed::DatabaseUrl(u)) => Some(u),
        _ => None,
    };
    let host = match report.take("HOST") {
        Some(Parsed::Ip(ip)) => ip,
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let port = match report.take("PORT") {
        Some(Parsed::Port(p)) => Some(p),
        _ => None,
    };
    let app_env = text(&mut report, "APP_ENV").and_then(|s| s.parse::<AppEnv>().ok());
    let openai_api_key = secret(&mut report, "OPENAI_API_KEY");
    let twilio_account_sid = text(&mut report, "TWILIO_ACCOUNT_SID");
    let twilio_auth_token = secret(&mut report, "TWILIO_AUTH_TOKEN");
    let deploy_hook_secret = match report.take("RENDER_DEPLOY_HOOK_SECRET") {
        Some(Parsed::WebhookSecret(s)) => Some(s),
        _ => None,
    };
    let deploy_hook_url = match report.take("RENDER_DEPLOY_HOOK_URL") {
        Some(Parsed::DeployHookUrl(u)) => Some(u),
        _ => None,
    };

    let health_defaults = HealthSettings::default();
    let health = HealthSettings {
        cache_ttl: seconds(&report, "HEALTH_CACHE_TTL", health_defaults.cache_ttl),
        failure_ttl: seconds(&report, "HEALTH_FAILURE_TTL", health_defaults.failure_ttl),
        probe_timeout: seconds(
            &report,
            "HEALTH_PROBE_TIMEOUT",
            health_defaults.probe_timeout,
        ),
        db_policy: match text(&mut report, "HEALTH_DB_POLICY").as_deref() {
            Some("strict") => DbPolicy::Strict,
            Some("ignore") => DbPolicy::Ignore,
            _ => DbPolicy::GateStartup,
        },
    };

    let render = RenderInfo {
        on_render: matches!(report.value("RENDER"), Some(Parsed::Bool(true))),
        service_id: text(&mut report, "RENDER_SERVICE_ID"),
        service_name: text(&mut report, "RENDER_SERVICE_NAME"),
        instance_id: text(&mut report, "RENDER_INSTANCE_ID"),
        git_commit: text(&mut report, "RENDER_GIT_COMMIT"),
        cpu_count: integer(&report, "RENDER_CPU_COUNT").and_then(|n| u32::try_from(n).ok()),
        external_url: text(&mut report, "RENDER_EXTERNAL_URL"),
    };

    let pool_defaults = PoolSettings::default();
    let pool = PoolSettings {
        max: match integer(&report, "DB_POOL_MAX").and_then(|n| usize::try_from(n).ok()) {
            Some(n) => PoolMax::Fixed(n),
            None => PoolMax::Auto,
        },
        min_idle: count(&report, "DB_POOL_MIN_IDLE", pool_defaults.min_idle),
        wait_timeout: seconds(&report, "DB_POOL_TIMEOUT", pool_defaults.wait_timeout),
        connect_timeout: seconds(&report, "DB_CONNECT_TIMEOUT", pool_defaults.connect_timeout),
        max_lifetime: seconds(&report, "DB_MAX_LIFETIME", pool_defaults.max_lifetime),
        instances: integer(&report, "DB_POOL_INSTANCES")
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(pool_defaults.instances),
        pgbouncer: matches!(report.value("DB_PGBOUNCER"), Some(Parsed::Bool(true))),
        cpus: render.cpu_count,
        ..pool_defaults
    };
    // Idle connections are kept open, so more of them than the pool may hold cannot be.
    if let PoolMax::Fixed(max) = pool.max
        && pool.min_idle > max
    {
        problems.push(Problem {
            var: "DB_POOL_MIN_IDLE".to_owned(),
            problem: format!(
                "{} is more than DB_POOL_MAX={max} (expected at most DB_POOL_MAX)",
                pool.min_idle
            ),
            kind: ProblemKind::Invalid,
        });
    }

    let hook_defaults = HookSettings::default();
    let hooks = HookSettings {
        tolerance: seconds(&report, "WEBHOOK_TOLERANCE", hook_defaults.tolerance),
        max_body: count(&report, "WEBHOOK_MAX_BODY", hook_defaults.max_body),
        replay_store: match text(&mut report, "WEBHOOK_REPLAY_STORE").as_deref() {
            Some("postgres") => ReplayStoreKind::Postgres,
            _ => ReplayStoreKind::Memory,
        },
    };

    let shutdown_timeout = seconds(&report, "SHUTDOWN_TIMEOUT", Duration::from_secs(25));
    let request_timeout = seconds(&report, "REQUEST_TIMEOUT", Duration::from_secs(30));
    let header_read_timeout = seconds(&report, "HEADER_READ_TIMEOUT", Duration::from_secs(10));
    let shutdown_linger = integer(&report, "SHUTDOWN_LINGER_MS")
        .and_then(|n| u64::try_from(n).ok())
        .map_or(Duration::from_millis(250), Duration::from_millis);
    let metrics_token = secret(&mut report, "METRICS_TOKEN");
    let log_format = match text(&mut report, "LOG_FORMAT").as_deref() {
        Some("json") => LogFormat::Json,
        Some("pretty") => LogFormat::Pretty,
        _ => {
            let (format, shown) = match app_env {
                Some(AppEnv::Production) => (LogFormat::Json, "json (default in production)"),
                _ => (LogFormat::Pretty, "pretty (default outside production)"),
            };
            if summary.get("LOG_FORMAT") == Some("unset") {
                summary.set("LOG_FORMAT", shown);
            }
            format
        }
    };

    let result = match (database_url, port, app_env) {
        (Some(database_url), Some(port), Some(app_env)) if problems.is_empty() => Ok(Config {
            database_url,
            host,
            port,
            app_env,
            openai_api_key,
            twilio_account_sid,
            twilio_auth_token,
            deploy_hook_secret,
            deploy_hook_url,
            health,
            pool,
            hooks,
            shutdown_timeout,
            request_timeout,
            header_read_timeout,
            shutdown_linger,
            metrics_token,
            log_format,
            render,
            warnings: warnings.clone(),
            summary: summary.clone(),
        }),
        _ => {
            if problems.is_empty() {
                // Unreachable while the built-in schema requires these three; said plainly
                // rather than panicking if someone edits the schema.
                problems.push(Problem {
                    var: "DATABASE_URL".to_owned(),
                    problem: "DATABASE_URL, PORT and APP_ENV must be set (the built-in schema \
                              must require them)"
                        .to_owned(),
                    kind: ProblemKind::Missing,
                });
            }
            Err(ConfigErrors { problems })
        }
    };
    Validation {
        result,
        warnings,
        summary,
    }
}

fn text(report: &mut Report, name: &str) -> Option<String> {
    match report.take(name) {
        Some(Parsed::Text(t)) => Some(t),
        _ => None,
    }
}

fn secret(report: &mut Report, name: &str) -> Option<SecretString> {
    match report.take(name) {
        Some(Parsed::Secret(s)) => Some(s),
        // A schema that marks the variable non-secret still gets it held as a secret here.
        Some(Parsed::Text(t)) => Some(SecretString::from(t)),
        _ => None,
    }
}

fn integer(report: &Report, name: &str) -> Option<i64> {
    match report.value(name) {
        Some(Parsed::Integer(n)) => Some(*n),
        _ => None,
    }
}

/// A number of seconds; `fallback` only when the variable was invalid (and already reported).
fn seconds(report: &Report, name: &str, fallback: Duration) -> Duration {
    integer(report, name)
        .and_then(|n| u64::try_from(n).ok())
        .map(Duration::from_secs)
        .unwrap_or(fallback)
}

fn count(report: &Report, name: &str, fallback: usize) -> usize {
    integer(report, name)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(fallback)
}

/// The original feature's configuration object: what
/// [`configure_render_deployment`] validated, and the health cache it offers.
#[derive(Debug)]
pub struct DeploymentConfig {
    config: Config,
}

impl DeploymentConfig {
    /// The validated configuration (development defaults for everything but the two inputs).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Wraps a user's health check in the cache of contract §1: a healthy result is served for
    /// `HEALTH_CACHE_TTL` (60 s), an unhealthy one for `HEALTH_FAILURE_TTL`, one probe at a time.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let (config, pool) = render_deploy::configure_render_deployment(
    ///     "postgres://app:secret@localhost/app",
    ///     "a-deploy-hook-secret-of-at-least-32-bytes",
    /// )?;
    /// let health = config.cache_health_check(move || {
    ///     let pool = pool.clone();
    ///     async move { pool.get_connection().await.is_ok() }
    /// });
    /// let healthy: bool = health.check().await.is_healthy();
    /// # Ok(()) }
    /// ```
    pub fn cache_health_check<R, F, Fut>(&self, check: F) -> crate::health::CachedCheck<R>
    where
        R: crate::health::Healthy + Clone + Send + Sync + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = R> + Send + 'static,
    {
        crate::health::CachedCheck::new(&self.config.health, check)
    }
}

/// The original feature's entry point: validates a database URL and a deploy hook secret
/// (every problem at once) and builds the connection pool, which connects on first use.
///
/// Everything else takes its default (development rules: no other variable is required).
/// For a whole service configured from the environment, use [`crate::Deployment::from_env`].
pub fn configure_render_deployment(
    database_url: &str,
    deploy_hook_secret: &str,
) -> Result<(DeploymentConfig, crate::PoolManager), crate::server::DeploymentError> {
    let mut env = Env::default();
    env.set("DATABASE_URL", database_url);
    env.set("RENDER_DEPLOY_HOOK_SECRET", deploy_hook_secret);
    let config = Config::from_environment(&env, Mode::Dev)?;
    if config.deploy_hook_secret.is_none() {
        // Optional for `dev`; this entry point was given one, so it must be usable.
        return Err(ConfigErrors {
            problems: vec![Problem {
                var: "RENDER_DEPLOY_HOOK_SECRET".to_owned(),
                problem: "is missing (expected whsec_ + base64, or at least 32 bytes)".to_owned(),
                kind: ProblemKind::Missing,
            }],
        }
        .into());
    }
    let pool = crate::PoolManager::new(&config.database_url, &config.pool)?;
    Ok((DeploymentConfig { config }, pool))
}
