//! Health checks: a cached, single-flight probe and the `/health`, `/livez` endpoints.
//!
//! - [`cache`]: [`HealthCache`], the generic cache (TTLs, single flight, probe timeout,
//!   invalidation), and [`CachedCheck`], the form a user's own check takes.
//! - [`probe`]: [`DatabaseProbe`], what `/health` asks the database, and its implementation for
//!   a deadpool-postgres pool.
//! - [`lifecycle`]: [`Lifecycle`], the serving/draining flag the server flips on SIGTERM.
//! - [`routes`]: [`HealthState`], the report of `/health` under `HEALTH_DB_POLICY`, and
//!   [`router`].
//!
//! Wiring, in short:
//!
//! ```no_run
//! use render_deploy::health::{self, HealthSettings, HealthState, Lifecycle, ServiceInfo};
//!
//! # fn wire(pool: deadpool_postgres::Pool) -> axum::Router {
//! let lifecycle = Lifecycle::new(); // the server calls `start_draining()` on SIGTERM
//! let state = HealthState::new(&HealthSettings::default(), pool, lifecycle, ServiceInfo::from_env());
//! let on_pool_failure = state.pool_failure_hook(); // for the pool's connection-failure callback
//! let on_deploy_event = state.invalidator(); // for the deploy webhook
//! health::router(state)
//! # }
//! ```

use std::time::Duration;

pub mod cache;
pub mod lifecycle;
pub mod probe;
pub mod routes;

pub use cache::{CachedCheck, Checked, HealthCache, Healthy, Invalidator, ProbeFailure};
pub use lifecycle::Lifecycle;
pub use probe::{BoxFuture, DatabaseProbe, ProbeError};
pub use routes::{
    DatabaseCheck, DatabaseReport, DatabaseStatus, HealthReport, HealthState, HealthStatus,
    ServiceInfo, router,
};

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
