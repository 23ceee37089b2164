//! The service: [`Deployment`] wires configuration, pool, health and hooks, serves, and drains.
//!
//! ```no_run
//! # async fn run() -> Result<(), render_deploy::server::DeploymentError> {
//! use axum::{routing::get, Router};
//! use render_deploy::Deployment;
//!
//! let deployment = Deployment::from_env()?;          // every variable checked at once
//! let app = Router::new()
//!     .route("/hello", get(|| async { "hello" }))     // the application's own routes
//!     .merge(deployment.routes());                     // /health, /livez, /, /events, /hooks/deploy, /metrics
//! deployment.serve(app).await?;                        // drains on SIGTERM, then returns
//! # Ok(()) }
//! ```

mod accept;
pub mod connections;
mod error_body;
pub mod events;
pub mod listener;
pub mod middleware;
mod request_context;
mod request_metrics;
mod route_labels;
mod routes;
mod shutdown;
mod tracked;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::config::{Config, ConfigErrors, Env, Mode, Problem};
use crate::health::{self, DatabaseProbe, HealthState, Lifecycle, ProbeError, ServiceInfo};
use crate::pool::{PoolError, PoolManager};
use crate::render_api::deploy_hook::{DeployHookClient, RetryPolicy, TriggerError};
use crate::replay::{LazyPostgresReplayStore, MemoryReplayStore, ReplayStore, ReplayStoreKind};
use crate::schema::ProblemKind;
use crate::telemetry;
use crate::webhooks::{self, HookState};
use connections::MaxConnections;
use error_body::json_error;
pub use listener::{DrainReport, ServeOptions};
use middleware::{AroundRequest, MiddlewareState};
pub use request_context::{MissingRequestId, RequestId};
use request_metrics::RequestMetrics;
pub use shutdown::{MissingShutdown, Shutdown};

/// Why the service could not be built or could not listen.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// One or more variables are invalid (every problem, one per line).
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    /// The pool could not be built from the configuration.
    #[error("connection pool: {0}")]
    Pool(#[from] PoolError),
    /// The deploy hook client could not be built.
    #[error("deploy hook client: {0}")]
    DeployHook(#[from] TriggerError),
    /// `HOST:PORT` could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
}

/// The whole service: configuration, pool, health cache, hook endpoint and metrics.
pub struct Deployment {
    config: Arc<Config>,
    pool: Arc<PoolManager>,
    health: HealthState,
    lifecycle: Lifecycle,
    hooks: HookState,
    info: ServiceInfo,
    /// Counted by the middleware of every route, rendered by `/metrics`.
    request_metrics: RequestMetrics,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("config", &self.config)
            .field("lifecycle", &self.lifecycle)
            .finish_non_exhaustive()
    }
}

impl Deployment {
    /// Reads and validates every variable of the contract (all problems at once), and builds
    /// the pool and the health cache. Nothing connects yet.
    pub fn from_env() -> Result<Self, DeploymentError> {
        Self::new(Config::from_env(Mode::Serve)?)
    }

    /// Builds the service from a configuration already read.
    pub fn new(config: Config) -> Result<Self, DeploymentError> {
        let pool = Arc::new(PoolManager::new(&config.database_url, &config.pool)?);
        let lifecycle = Lifecycle::new();
        let info = ServiceInfo::new(
            config.render.git_commit.as_deref(),
            config.render.instance_id.as_deref(),
        );
        let health = HealthState::new(
            &config.health,
            PoolProbe(Arc::clone(&pool)),
            lifecycle.clone(),
            info.clone(),
        );
        // A connection failure seen by any request makes the next /health probe afresh.
        pool.on_connection_failure(health.pool_failure_hook());

        let replay: Arc<dyn ReplayStore> = match config.hooks.replay_store {
            ReplayStoreKind::Memory => Arc::new(MemoryReplayStore::new(config.hooks.tolerance)),
            ReplayStoreKind::Postgres => Arc::new(LazyPostgresReplayStore::new(
                pool.deadpool().clone(),
                config.hooks.tolerance,
            )),
        };
        let invalidator = health.invalidator();
        let mut hooks = HookState::new(
            config.deploy_hook_secret.clone(),
            config.hooks.clone(),
            replay,
            Arc::new(move || invalidator.invalidate()),
        );
        if let Some(url) = &config.deploy_hook_url {
            hooks = hooks.with_deploy_hook(DeployHookClient::with_policy(
                url.clone(),
                RetryPolicy::for_webhook_response(),
            )?);
        }
        Ok(Self {
            config: Arc::new(config),
            pool,
            health,
            lifecycle,
            hooks,
            info,
            request_metrics: RequestMetrics::default(),
        })
    }

    /// The configuration the service runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The connection pool, for the application's own handlers.
    pub fn pool(&self) -> &Arc<PoolManager> {
        &self.pool
    }

    /// The health service (to invalidate it, or to read the lifecycle).
    pub fn health(&self) -> &HealthState {
        &self.health
    }

    /// The signal that fires when this service starts draining (SIGTERM, SIGINT, or the future
    /// given to [`serve_with`](Self::serve_with)): for long-lived responses and background
    /// work built before serving. Handlers can also take it as an extractor.
    pub fn shutdown(&self) -> Shutdown {
        Shutdown::from_token(self.lifecycle.draining_token())
    }

    /// The endpoints of the contract: `/health`, `/livez`, `/`, `/hooks/deploy`, `/events`, and
    /// `/metrics` when `METRICS_TOKEN` is set. Merge them into the application's router.
    pub fn routes(&self) -> Router {
        let root = routes::RootState {
            pool: Arc::clone(&self.pool),
            service: self
                .config
                .render
                .service_name
                .clone()
                .unwrap_or_else(|| env!("CARGO_PKG_NAME").to_owned()),
            version: self.info.version.to_string(),
            instance: self.info.instance.to_string(),
        };
        let mut router = health::router(self.health.clone())
            .merge(webhooks::router(self.hooks.clone()))
            .merge(events::router(self.health.clone()))
            .route("/", get(routes::root).with_state(root));
        if let Some(token) = &self.config.metrics_token {
            let pool = Arc::clone(&self.pool);
            let lifecycle = self.lifecycle.clone();
            let refresh = Arc::new(move || {
                let _ = pool.status(); // publishes the pool gauges
                metrics::counter!("render_deploy_log_lines_dropped_total")
                    .absolute(telemetry::dropped_log_lines());
                metrics::gauge!("render_deploy_draining").set(if lifecycle.is_draining() {
                    1.0
                } else {
                    0.0
                });
            });
            let state = routes::MetricsState::new(
                telemetry::metrics_handle(),
                self.request_metrics.clone(),
                token,
                refresh,
            );
            router = router.route("/metrics", get(routes::metrics).with_state(state));
        }
        router
    }

    /// Binds `HOST:PORT` and serves `app` until SIGTERM or SIGINT, then drains (contract §6).
    pub async fn serve(self, app: Router) -> Result<DrainReport, DeploymentError> {
        let addr = SocketAddr::new(self.config.host, self.config.port);
        let listener =
            listener::bind(addr).map_err(|source| DeploymentError::Bind { addr, source })?;
        Ok(self.serve_with(listener, app, shutdown_signal()).await)
    }

    /// Serves `app` on `listener` until `shutdown` completes, then drains; for tests and for
    /// applications with their own signal handling.
    ///
    /// The listener answers at once; the pool is warmed up in the background, retried with
    /// back-off while the database is away, and `/health` reports `unhealthy` until it answers.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()>,
    ) -> DrainReport {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, database = %self.config.database_url, "listening");
        }
        let app = self.wrap(app);
        let warm_up = tokio::spawn(warm_up(Arc::clone(&self.pool)));
        let options = ServeOptions {
            shutdown_timeout: self.config.shutdown_timeout,
            header_read_timeout: self.config.header_read_timeout,
            linger: self.config.shutdown_linger,
            max_connections: MaxConnections::Fixed(self.connection_cap()),
        };
        let lifecycle = self.lifecycle.clone();
        let report = listener::serve_until(listener, app, options, shutdown, move || {
            lifecycle.start_draining()
        })
        .await;
        warm_up.abort();
        // Last: requests in flight needed their connections until now.
        self.pool.close();
        tracing::info!(
            took_ms = report.took.as_millis() as u64,
            open_at_signal = report.open_at_signal,
            cut_off = report.cut_off,
            "shutdown complete"
        );
        report
    }

    /// `MAX_CONNECTIONS` resolved: `auto` leaves the most connections the pool may open (its
    /// fixed size, or the `2 × CPUs + 1` that bounds `auto`) and spare descriptors free.
    fn connection_cap(&self) -> usize {
        let pool_bound = self.config.pool.bound();
        let cap = self.config.max_connections.resolve(pool_bound);
        let file_limit = connections::soft_file_limit();
        match self.config.max_connections {
            MaxConnections::Auto => tracing::info!(
                max_connections = cap,
                file_limit,
                pool_bound,
                spare = connections::SPARE_DESCRIPTORS,
                "connection cap (auto: file limit - pool bound - spare descriptors)"
            ),
            MaxConnections::Fixed(_)
                if (cap as u64).saturating_add(pool_bound as u64) >= file_limit =>
            {
                tracing::warn!(
                    max_connections = cap,
                    file_limit,
                    "MAX_CONNECTIONS leaves no descriptors for the pool; accepts will fail (and back off) before the cap is reached"
                );
            }
            MaxConnections::Fixed(_) => {}
        }
        cap
    }

    /// `app` with its fallbacks, inside what every request goes through.
    fn wrap(&self, app: Router) -> AroundRequest {
        let state = MiddlewareState {
            request_timeout: self.config.request_timeout,
            lifecycle: self.lifecycle.clone(),
            shutdown: self.shutdown(),
            metrics: self.request_metrics.clone(),
        };
        let app = app
            .fallback(|| async { json_error(StatusCode::NOT_FOUND, "not found") })
            // axum keeps its `Allow` header on this answer; without it the body would be empty.
            .method_not_allowed_fallback(|| async {
                json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            });
        AroundRequest::new(app, state)
    }
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
    pub fn cache_health_check<R, F, Fut>(&self, check: F) -> health::CachedCheck<R>
    where
        R: health::Healthy + Clone + Send + Sync + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = R> + Send + 'static,
    {
        health::CachedCheck::new(&self.config.health, check)
    }
}

/// The original feature's entry point: validates a database URL and a deploy hook secret
/// (every problem at once) and builds the connection pool, which connects on first use.
///
/// Everything else takes its default (development rules: no other variable is required).
/// For a whole service configured from the environment, use [`Deployment::from_env`].
pub fn configure_render_deployment(
    database_url: &str,
    deploy_hook_secret: &str,
) -> Result<(DeploymentConfig, PoolManager), DeploymentError> {
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
    let pool = PoolManager::new(&config.database_url, &config.pool)?;
    Ok((DeploymentConfig { config }, pool))
}

/// The health probe of the service: one `SELECT 1` through the pool, so that the probe
/// exercises (and verifies) the same connections that requests use.
struct PoolProbe(Arc<PoolManager>);

impl DatabaseProbe for PoolProbe {
    fn ping(&self) -> health::BoxFuture<'_, Result<(), ProbeError>> {
        Box::pin(async move {
            let conn = self
                .0
                .get_connection()
                .await
                .map_err(|e| ProbeError::NoConnection(Some(Box::new(e))))?;
            conn.simple_query("SELECT 1")
                .await
                .map_err(|e| ProbeError::Query(Some(Box::new(e))))?;
            Ok(())
        })
    }
}

/// Opens the pool's first connections, retrying with back-off while the database is away.
async fn warm_up(pool: Arc<PoolManager>) {
    let mut delay = Duration::from_millis(100);
    loop {
        match pool.warm_up().await {
            // The pool logs its sizing decision and its inputs itself.
            Ok(_) => return,
            Err(e) => {
                // A wrong password or a budget below one connection will not fix itself
                // quickly: keep answering 503 (never a crash loop) but do not hammer the server.
                if !e.is_transient() {
                    delay = delay.max(Duration::from_secs(5));
                }
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    retry_in_ms = delay.as_millis() as u64,
                    "database not ready; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Resolves on SIGTERM (Render's stop signal) or SIGINT (Ctrl-C).
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    tokio::select! {
        _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
            tracing::info!("SIGTERM received");
        }
        _ = async { match int.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
            tracing::info!("SIGINT received");
        }
    }
}
