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

pub mod cache;
pub mod lifecycle;
pub mod probe;
pub mod routes;

/// The settings are configuration's ([`crate::config`]); re-exported where they are used.
pub use crate::config::{DbPolicy, HealthSettings};
pub use cache::{CachedCheck, Checked, HealthCache, Healthy, Invalidator, ProbeFailure};
pub use lifecycle::Lifecycle;
pub use probe::{BoxFuture, DatabaseProbe, ProbeError};
pub use routes::{
    DatabaseCheck, DatabaseReport, DatabaseStatus, HealthReport, HealthState, HealthStatus,
    ServiceInfo, router,
};
