//! Configuration: every environment variable of the contract, read once, all problems at once.
//!
//! The rules are data: [`crate::schema`]'s built-in schema (`src/builtin_schema.toml`) says what
//! each variable must look like; this module runs that schema over the environment and turns
//! the parsed values into one typed [`Config`]. Nothing downstream re-reads the environment or
//! re-checks a string. A secret is held in a type whose `Debug` redacts it, so `{:?}` of a
//! [`Config`] is safe to log.
//!
//! This is the ground floor: every part's settings type ([`PoolSettings`], [`HealthSettings`],
//! [`HookSettings`], [`ServeOptions`], …) is declared here (in `settings`), and this module
//! imports only the schema engine and the value types it parses into ([`DatabaseUrl`],
//! [`WebhookSecret`], [`DeployHookUrl`], [`ApiKey`], [`ApiBase`]), none of which imports anything of the crate. The
//! parsed values are handed over by type in one place (`values`), which is also where every
//! default comes from: the built-in schema.
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

mod settings;
mod values;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use secrecy::SecretString;

use crate::database_url::DatabaseUrl;
use crate::render_api::credentials::{ApiBase, ApiKey};
use crate::render_api::deploy_hook::DeployHookUrl;
use crate::schema::Schema;
use crate::signature::WebhookSecret;

pub use crate::schema::{Env, Mode, Problem, Summary};

pub use settings::{
    AppEnv, DbPolicy, DeploySettings, HealthSettings, HookSettings, LogFormat, MaxConnections,
    PoolMax, PoolSettings, ReplayStoreKind, ServeOptions, UnknownWord,
};

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
    /// `HOST`.
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
    /// `SHUTDOWN_TIMEOUT`.
    pub shutdown_timeout: Duration,
    /// `REQUEST_TIMEOUT`.
    pub request_timeout: Duration,
    /// `HEADER_READ_TIMEOUT`: how long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// `SHUTDOWN_LINGER_MS`: after SIGTERM, how long open connections are still answered.
    pub shutdown_linger: Duration,
    /// `MAX_CONNECTIONS`: most connections held at once (`auto`: from the file limit).
    pub max_connections: MaxConnections,
    /// `METRICS_TOKEN`: `/metrics` is served only with it.
    pub metrics_token: Option<SecretString>,
    /// `RENDER_API_KEY` (read by `deploy`; checked here so `check-env` knows it).
    pub render_api_key: Option<ApiKey>,
    /// `RENDER_API_URL` (read by `deploy`).
    pub render_api_url: ApiBase,
    /// `LOG_FORMAT` (when unset: json in production, pretty otherwise).
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
        values::build(Schema::builtin().check(env, mode))
    }

    /// Every variable and how it is shown: secrets as `set (secret)`, URLs with `****`.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }
}

impl DeploySettings {
    /// Reads the variables of `deploy` from `env`, with the problems of those variables only
    /// (every one of them, as for the whole configuration).
    pub fn from_environment(env: &Env) -> (DeploySettings, Vec<Problem>) {
        values::deploy(Schema::builtin().check(env, Mode::Serve))
    }
}
