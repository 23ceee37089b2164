//! The typed settings of each part of the service, as configuration hands them over.
//!
//! They live here, below the modules they configure, so that configuration imports nothing
//! above it: `pool`, `health`, `webhooks`, `replay`, `telemetry` and `server` read their settings
//! from this module, never the other way round. No default is written here: each comes from the
//! built-in schema (`src/builtin_schema.toml`), read once through the same typed hand-off as the
//! environment (`values`, which also implements `Default` for these types), so the table, the
//! README and the code cannot drift.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::render_api::credentials::{ApiBase, ApiKey};
use crate::render_api::deploy_hook::DeployHookUrl;

/// A word of an `enum` variable that is not one of the accepted values.
///
/// The schema refuses such a word before the code sees it; this error is what `FromStr` says
/// when used on its own (and what the schema/code agreement test would report).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is not one of {}", .expected.join(", "))]
pub struct UnknownWord {
    /// The accepted words.
    pub expected: &'static [&'static str],
}

/// An enum spelled in the environment by fixed words: `FromStr`, `Display`, and the list of
/// words that the schema/code agreement test compares with the built-in schema's `values`.
macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every accepted spelling, in declaration order.
            pub(crate) const WORDS: &'static [&'static str] = &[$($word),+];

            /// The spelling used in the environment.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord { expected: Self::WORDS }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// The deployment environment (`APP_ENV`, or its alias `FLASK_ENV`).
    AppEnv {
        /// Production: JSON logs by default.
        Production = "production",
        /// A developer's machine (what `dev` sets unless told otherwise).
        Development = "development",
        /// Automated tests.
        Testing = "testing",
    }
}

words! {
    /// What a database failure does to `/health` (`HEALTH_DB_POLICY`).
    DbPolicy {
        /// 503 until the database has answered once; afterwards a failure is `degraded` with 200.
        GateStartup = "gate-startup",
        /// A database failure is always 503.
        Strict = "strict",
        /// Always 200.
        Ignore = "ignore",
    }
}

words! {
    /// Where delivery ids are remembered (`WEBHOOK_REPLAY_STORE`).
    ReplayStoreKind {
        /// In this process (one instance).
        Memory = "memory",
        /// A PostgreSQL table shared by all instances.
        Postgres = "postgres",
    }
}

words! {
    /// Format of the log lines on stdout (`LOG_FORMAT`).
    LogFormat {
        /// One JSON object per line (the default in production).
        Json = "json",
        /// Human-readable lines (the default elsewhere).
        Pretty = "pretty",
    }
}

/// How many connections the pool may hold (`DB_POOL_MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMax {
    /// Chosen from the server's `max_connections` and the CPUs (contract §5).
    Auto,
    /// A fixed size.
    Fixed(usize),
}

/// Most connections the server holds at once (`MAX_CONNECTIONS`); the server resolves `Auto`
/// from the file limit ([`crate::server::connections`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxConnections {
    /// The soft `RLIMIT_NOFILE`, less the pool's bound and a few spare descriptors.
    Auto,
    /// Exactly this many.
    Fixed(usize),
}

/// Settings of the health check, from the `HEALTH_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// `HEALTH_CACHE_TTL`: how long a healthy result is served from cache.
    pub cache_ttl: Duration,
    /// `HEALTH_FAILURE_TTL`: how long an unhealthy result is served from cache.
    pub failure_ttl: Duration,
    /// `HEALTH_PROBE_TIMEOUT`: how long one probe may take.
    pub probe_timeout: Duration,
    /// `HEALTH_DB_POLICY`.
    pub db_policy: DbPolicy,
}

/// Settings of the pool, from the `DB_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// `DB_POOL_MAX`.
    pub max: PoolMax,
    /// `DB_POOL_MIN_IDLE`: connections opened at start-up and kept open.
    pub min_idle: usize,
    /// `DB_POOL_TIMEOUT`: how long a request waits for a connection.
    pub wait_timeout: Duration,
    /// `DB_CONNECT_TIMEOUT`: how long opening one connection may take.
    pub connect_timeout: Duration,
    /// `DB_MAX_LIFETIME`: age at which a connection is retired.
    pub max_lifetime: Duration,
    /// `DB_POOL_INSTANCES`: instances sharing the database.
    pub instances: u32,
    /// `DB_PGBOUNCER`: the URL points at PgBouncer in transaction mode.
    pub pgbouncer: bool,
    /// CPUs for `auto` (from `RENDER_CPU_COUNT`; the machine's when `None`).
    pub cpus: Option<u32>,
    /// A connection checked out less than this long ago is handed out without a liveness
    /// query (500 ms, as HikariCP); `Duration::ZERO` checks on every checkout. Not a variable.
    pub recheck_after: Duration,
}

/// What [`PoolSettings::recheck_after`] is unless a caller sets it (no variable sets it).
pub(crate) const RECHECK_AFTER: Duration = Duration::from_millis(500);

/// Settings of the `/hooks/deploy` endpoint, from the `WEBHOOK_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSettings {
    /// `WEBHOOK_TOLERANCE`: clock difference allowed, both directions.
    pub tolerance: Duration,
    /// `WEBHOOK_MAX_BODY`: bytes accepted.
    pub max_body: usize,
    /// `WEBHOOK_MAX_INFLIGHT`: bytes of bodies held in memory at once, all deliveries together.
    pub max_inflight: usize,
    /// `WEBHOOK_REPLAY_STORE`.
    pub replay_store: ReplayStoreKind,
}

/// Timeouts and limits of the HTTP server, from `SHUTDOWN_TIMEOUT`, `HEADER_READ_TIMEOUT`,
/// `SHUTDOWN_LINGER_MS` and `MAX_CONNECTIONS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Longest drain after the shutdown signal (`SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: Duration,
    /// Longest time a connection may spend sending a request's headers, or idle between
    /// requests, before it is closed (checked a tenth of this apart, at most a second).
    pub header_read_timeout: Duration,
    /// After the shutdown signal, how long open connections are still served (each response
    /// closing its connection) before idle ones are closed. Ends early when none are open.
    pub linger: Duration,
    /// Most connections held at once; at the cap one is closed to make room for the next.
    pub max_connections: MaxConnections,
}

/// Every setting that has a default, as the built-in schema gives it for an empty environment.
#[derive(Debug, Clone)]
pub(crate) struct Defaults {
    pub(crate) health: HealthSettings,
    pub(crate) pool: PoolSettings,
    pub(crate) hooks: HookSettings,
    pub(crate) serve: ServeOptions,
    pub(crate) request_timeout: Duration,
}

/// What `deploy` reads from the environment. Every field is `None` when unset or invalid (the
/// problem is then reported beside it).
#[derive(Debug, Clone, Default)]
pub struct DeploySettings {
    /// `RENDER_API_KEY` (`Debug` shows `****`).
    pub api_key: Option<ApiKey>,
    /// `RENDER_API_URL` (default `https://api.render.com/v1`).
    pub api_url: Option<ApiBase>,
    /// `RENDER_SERVICE_ID` (`--service` wins over it).
    pub service_id: Option<String>,
    /// `RENDER_DEPLOY_HOOK_URL`: used when there is no API key.
    pub deploy_hook_url: Option<DeployHookUrl>,
}

impl DeploySettings {
    /// The variables `deploy` reads.
    pub const VARIABLES: [&'static str; 4] = [
        "RENDER_API_KEY",
        "RENDER_API_URL",
        "RENDER_SERVICE_ID",
        "RENDER_DEPLOY_HOOK_URL",
    ];
}
