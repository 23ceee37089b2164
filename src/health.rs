//! Health checks: a cached, single-flight probe and the `/health`, `/livez` endpoints.

use std::time::Duration;

/// What a database failure does to `/health` (`HEALTH_DB_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DbPolicy {
    /// 503 until the database has answered once; afterwards a failure is `degraded` with 200.
    #[default]
    GateStartup,
    /// A database failure is always 503.
    Strict,
    /// Always 200.
    Ignore,
}

/// Settings of the health check, from the `HEALTH_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// `HEALTH_CACHE_TTL`: how long a healthy result is served from cache (default 60 s).
    pub cache_ttl: Duration,
    /// `HEALTH_FAILURE_TTL`: how long an unhealthy result is served from cache (default 5 s).
    pub failure_ttl: Duration,
    /// `HEALTH_PROBE_TIMEOUT`: how long one probe may take (default 2 s).
    pub probe_timeout: Duration,
    /// `HEALTH_DB_POLICY` (default `gate-startup`).
    pub db_policy: DbPolicy,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(60),
            failure_ttl: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(2),
            db_policy: DbPolicy::GateStartup,
        }
    }
}
