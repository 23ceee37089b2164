//! The PostgreSQL connection pool: deadpool-postgres that sizes itself and survives faults.
//!
//! [`PoolManager`] wraps a [`deadpool_postgres::Pool`] and adds what deadpool leaves to its user
//! (contract §5):
//!
//! - **Bounds on every wait.** deadpool waits forever by default; here a checkout waits at most
//!   `DB_POOL_TIMEOUT` in all (slot, connect and checks together), a connect at most
//!   `DB_CONNECT_TIMEOUT`, and a liveness check at most half the smaller of the two.
//! - **Checked on checkout, HikariCP's way.** A query on every checkout doubles the round trips of
//!   a short request, so a connection that was checked out less than `recheck_after` ago (500 ms
//!   by default) is handed out after the free `is_closed` test only; any older one gets an empty
//!   query first, and so does every connection after the pool has seen a connection fail since
//!   its last use. A dead connection is dropped and another taken or opened: never handed out.
//! - **Retired** after `DB_MAX_LIFETIME`, both on checkout and by a background sweep that also
//!   keeps `DB_POOL_MIN_IDLE` connections open.
//! - **Half-open connections** are noticed by TCP keepalives and `tcp_user_timeout` while idle or
//!   busy, and by the bounded check on checkout.
//! - **Sized by the server** (`DB_POOL_MAX=auto`, `sizing`), **TLS by `sslmode`** (`tls`),
//!   **PgBouncer**-safe (no statement cache is reachable, no session state is set, the check is
//!   an empty simple query).
//! - **Typed errors** ([`PoolError`]) that never contain the password, an authentication failure
//!   that is not retried in a storm, a subscriber hook for connection failures
//!   ([`PoolManager::on_connection_failure`]) and figures for `/metrics` ([`PoolManager::status`]).
//!
//! # Metrics (`metrics` crate)
//!
//! Gauges, refreshed by [`PoolManager::status`] and by the background sweep:
//! `render_deploy_pool_size`, `render_deploy_pool_idle`, `render_deploy_pool_in_use`,
//! `render_deploy_pool_waiting`, `render_deploy_pool_max`. Counters:
//! `render_deploy_pool_timeouts_total` (checkouts that timed out),
//! `render_deploy_pool_errors_total` (connection failures seen: failed connects, dropped
//! connections, failed checks), `render_deploy_pool_checks_total` (liveness checks run on
//! checkout), `render_deploy_pool_retired_total` (connections retired for their age).
//!
//! # PgBouncer in transaction mode
//!
//! With `DB_PGBOUNCER=true` nothing in the pool relies on session state. The client that
//! [`PooledConnection`] derefs to is plain tokio-postgres, so deadpool's statement cache is out of
//! reach; note that tokio-postgres' `query`/`execute` with SQL text prepare a *named* statement in
//! one round trip and use it in the next, which PgBouncer before 1.21 (or without
//! `max_prepared_statements`) may route to another server. Use `query_typed` (one round trip,
//! unnamed statement) or `simple_query` through PgBouncer. The driver also looks up types that
//! are not built in (enums, domains, ...) with a named statement it prepares once per connection
//! and keeps, which a later transaction may not find on its server; it offers no way to drop
//! that statement, so cast such values to text through PgBouncer (`tests/postgres/pool_pgbouncer.rs`).
//!
//! # Parts
//!
//! This file holds [`PoolManager`] and its checkout; `connector` opens and watches connections,
//! `maintenance` sizes the pool from the server and runs the sweep, `auth` holds back after
//! refused credentials, `error` sorts driver errors, `sizing` is the arithmetic of `auto`, and
//! `tls` maps `sslmode` to rustls.

mod auth;
mod connector;
mod error;
mod maintenance;
mod sizing;
pub(crate) mod tls;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{
    Hook, Manager, ManagerConfig, QueueMode, RecyclingMethod, Runtime, TimeoutType,
};

use auth::AuthBlock;
use connector::{Connector, Shared, driver_config};
use error::classify;
pub use error::{PoolConfigError, PoolError};
#[cfg(feature = "rehearse")]
pub(crate) use sizing::read_server;
pub use sizing::{PoolSizing, ServerFigures};

use crate::database_url::DatabaseUrl;

/// The settings are configuration's ([`crate::config`]); re-exported where they are used.
pub use crate::config::{PoolMax, PoolSettings};

impl PoolSettings {
    /// How long one liveness check may take: half the smaller of the wait and connect
    /// timeouts, so that a check that hangs still leaves time to open a replacement.
    pub fn check_timeout(&self) -> Duration {
        (self.wait_timeout.min(self.connect_timeout) / 2).max(Duration::from_millis(50))
    }

    fn cpus(&self) -> u32 {
        self.cpus.unwrap_or_else(sizing::machine_cpus)
    }

    /// The most connections the pool may open, known before it has met its server: a fixed
    /// size, or for `auto` the `2 × CPUs + 1` that bounds whatever the server allows. What the
    /// server's connection cap leaves descriptors for.
    pub fn bound(&self) -> usize {
        match self.max {
            PoolMax::Fixed(n) => n,
            PoolMax::Auto => sizing::cpu_limit(self.cpus()),
        }
    }
}

/// A snapshot of the pool for `/metrics` and `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolStatus {
    /// Connections open (idle and in use).
    pub size: usize,
    /// Connections open and free.
    pub idle: usize,
    /// Connections handed out.
    pub in_use: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
    /// The pool's current maximum size.
    pub max: usize,
    /// Checkouts that gave up after `DB_POOL_TIMEOUT` since start.
    pub timeouts: u64,
    /// Connection failures seen since start.
    pub errors: u64,
}

/// The pool size state for `DB_POOL_MAX=auto`.
#[derive(Debug, Clone)]
enum SizingState {
    /// Not known yet: the provisional size is in force.
    Unknown,
    /// Chosen from the server.
    Known(PoolSizing),
    /// The server's figures make `auto` impossible.
    Failed(PoolConfigError),
}

struct Inner {
    pool: deadpool_postgres::Pool,
    shared: Arc<Shared>,
    sized: AtomicBool,
    /// Whether `sizing` is `Failed`: every checkout after that gets the refusal, read here
    /// without the lock, so that a pool whose budget is below one connection never serves.
    refused: AtomicBool,
    sizing: Mutex<SizingState>,
    auth: Mutex<Option<AuthBlock>>,
    /// Whether `auth` holds a block: checkouts read this instead of taking the lock.
    auth_blocked: AtomicBool,
    /// deadpool's timeouts for a checkout: no wait timeout of its own (the overall deadline
    /// covers the wait, and a second timer per waiting checkout costs on the hot path).
    checkout_timeouts: deadpool_postgres::Timeouts,
    maintenance: AtomicBool,
}

/// The connection pool (contract §5). Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PoolManager {
    inner: Arc<Inner>,
}

impl fmt::Debug for PoolManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolManager")
            .field("url", &self.inner.shared.url)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl PoolManager {
    /// Builds the pool without touching the network, so a service can start listening
    /// before its database is reachable. With [`PoolMax::Auto`] the pool starts at a
    /// provisional size (`max(DB_POOL_MIN_IDLE, 1)`, at most `2 × CPUs + 1`) and takes its
    /// real size from the server in [`warm_up`](Self::warm_up) or at the first checkout.
    ///
    /// Must be called within a Tokio runtime only for later use; building needs none.
    pub fn new(url: &DatabaseUrl, settings: &PoolSettings) -> Result<Self, PoolError> {
        let provisional = match settings.max {
            PoolMax::Fixed(0) => return Err(PoolConfigError::ZeroSize.into()),
            PoolMax::Fixed(n) => n,
            PoolMax::Auto => settings
                .min_idle
                .max(1)
                .min(sizing::cpu_limit(settings.cpus())),
        };
        let tls = tls::connector(url)?;
        let shared = Arc::new(Shared {
            url: url.clone(),
            settings: settings.clone(),
            epoch: Instant::now(),
            last_failure: AtomicU64::new(0),
            listeners: RwLock::new(Vec::new()),
            timeouts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        let manager = Manager::from_connect(
            driver_config(url, settings),
            Connector {
                tls,
                shared: shared.clone(),
            },
            // `Fast` only asks `is_closed`; the real check is the hook below, skipped for
            // connections used a moment ago.
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let hook_shared = shared.clone();
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(provisional)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.wait_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(Some(settings.check_timeout()))
            // Last in, first out: the connection used most recently is the one most likely
            // to be alive and within `recheck_after`; cold ones age out.
            .queue_mode(QueueMode::Lifo)
            .post_recycle(Hook::async_fn(move |client, metrics| {
                hook_shared.clone().verify(client, metrics)
            }))
            .build()
            .map_err(|e| PoolConfigError::Tls(format!("building the pool: {e}")))?;
        let fixed = matches!(settings.max, PoolMax::Fixed(_));
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                shared,
                sized: AtomicBool::new(fixed),
                refused: AtomicBool::new(false),
                sizing: Mutex::new(SizingState::Unknown),
                auth: Mutex::new(None),
                auth_blocked: AtomicBool::new(false),
                checkout_timeouts: deadpool_postgres::Timeouts {
                    wait: None,
                    create: Some(settings.connect_timeout),
                    recycle: Some(settings.check_timeout()),
                },
                maintenance: AtomicBool::new(false),
            }),
        })
    }

    /// Connects, reads the server's version and connection limits, sizes the pool (§5; the
    /// decision is logged), opens `DB_POOL_MIN_IDLE` connections and starts the background
    /// sweep. Call it at start-up in a retry loop with back-off while the database is away
    /// ([`PoolError::is_transient`]); a [`PoolError::Configuration`] will not go away.
    pub async fn warm_up(&self) -> Result<PoolSizing, PoolError> {
        let conn = self.checkout().await?;
        let sizing = self.size_from(&conn).await?;
        drop(conn);
        self.fill_min_idle().await?;
        self.start_maintenance();
        Ok(sizing)
    }

    /// Connects once (no pool) and reports what [`warm_up`](Self::warm_up) would choose, for
    /// `check-env --connect`. Bounded by `DB_CONNECT_TIMEOUT`.
    pub async fn inspect(
        url: &DatabaseUrl,
        settings: &PoolSettings,
    ) -> Result<PoolSizing, PoolError> {
        let tls = tls::connector(url)?;
        let config = driver_config(url, settings);
        let connect = tokio::time::timeout(settings.connect_timeout, config.connect(tls)).await;
        let (client, connection) = match connect {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(classify(url, &e)),
            Err(_) => {
                return Err(PoolError::Unavailable {
                    reason: format!(
                        "no connection within DB_CONNECT_TIMEOUT ({:?})",
                        settings.connect_timeout
                    ),
                });
            }
        };
        let task = tokio::spawn(connection);
        let figures =
            tokio::time::timeout(settings.connect_timeout, sizing::read_server(&client)).await;
        drop(client);
        let _ = task.await;
        let figures = match figures {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return Err(classify(url, &e)),
            Err(_) => {
                return Err(PoolError::Unavailable {
                    reason: "the server did not answer the sizing query in time".into(),
                });
            }
        };
        Ok(sizing::choose(
            settings.max,
            figures,
            settings.cpus(),
            settings.instances,
        )?)
    }

    /// Checks a connection out: verified (see the module documentation), within
    /// `DB_POOL_TIMEOUT`, and returned to the pool when the guard is dropped.
    pub async fn get_connection(&self) -> Result<PooledConnection, PoolError> {
        if self.inner.refused.load(Ordering::Acquire)
            && let SizingState::Failed(e) = &*lock(&self.inner.sizing)
        {
            return Err(e.clone().into());
        }
        let conn = self.checkout().await?;
        if !self.inner.sized.load(Ordering::Acquire) {
            self.size_from(&conn).await?;
            self.start_maintenance();
        }
        Ok(conn)
    }

    /// The figures of the pool now; also refreshes the `render_deploy_pool_*` gauges.
    pub fn status(&self) -> PoolStatus {
        let s = self.inner.pool.status();
        let status = PoolStatus {
            size: s.size,
            idle: s.available,
            in_use: s.size.saturating_sub(s.available),
            waiting: s.waiting,
            max: s.max_size,
            timeouts: self.inner.shared.timeouts.load(Ordering::Relaxed),
            errors: self.inner.shared.errors.load(Ordering::Relaxed),
        };
        publish(&status);
        status
    }

    /// The size chosen from the server, once known.
    pub fn sizing(&self) -> Option<PoolSizing> {
        match &*lock(&self.inner.sizing) {
            SizingState::Known(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// Calls `f` whenever the pool sees a connection fail (a connect refused, a connection
    /// dropped by the server or the network, a failed check). May be called from any task,
    /// possibly many times in a burst; keep it cheap (e.g. invalidate a cache).
    pub fn on_connection_failure(&self, f: impl Fn() + Send + Sync + 'static) {
        let mut listeners = match self.inner.shared.listeners.write() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        listeners.push(Arc::new(f));
    }

    /// The underlying deadpool pool (for code that needs deadpool's own API). Checkouts made
    /// through it are verified and retired the same way, but not bounded by the overall
    /// `DB_POOL_TIMEOUT` deadline nor counted in the timeout figures.
    pub fn deadpool(&self) -> &deadpool_postgres::Pool {
        &self.inner.pool
    }

    /// Closes the pool: waiting and later checkouts fail with [`PoolError::Closed`], idle
    /// connections are closed now and those in use when they are returned.
    pub fn close(&self) {
        self.inner.pool.close();
    }

    async fn checkout(&self) -> Result<PooledConnection, PoolError> {
        if let Some(error) = self.auth_blocked() {
            return Err(error);
        }
        let shared = &self.inner.shared;
        let wait = shared.settings.wait_timeout;
        let started = Instant::now();
        let result = tokio::time::timeout(
            wait,
            self.inner.pool.timeout_get(&self.inner.checkout_timeouts),
        )
        .await;
        let error = match result {
            Ok(Ok(object)) => {
                self.clear_auth_block();
                return Ok(PooledConnection { object });
            }
            Ok(Err(e)) => self.pool_error(e, started),
            Err(_) => self.deadline_error(started),
        };
        if let PoolError::Timeout { .. } = error {
            shared.timeouts.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("render_deploy_pool_timeouts_total").increment(1);
        }
        if let PoolError::Authentication { .. } = error {
            self.block_auth(&error);
        }
        Err(error)
    }

    fn pool_error(&self, e: deadpool_postgres::PoolError, started: Instant) -> PoolError {
        use deadpool_postgres::PoolError as E;
        let settings = &self.inner.shared.settings;
        match e {
            E::Timeout(TimeoutType::Wait) => PoolError::Timeout {
                waited: started.elapsed(),
                size: self.inner.pool.status().max_size,
            },
            E::Timeout(TimeoutType::Create) => PoolError::Unavailable {
                reason: format!(
                    "no connection within DB_CONNECT_TIMEOUT ({:?})",
                    settings.connect_timeout
                ),
            },
            E::Timeout(TimeoutType::Recycle) => PoolError::Unavailable {
                reason: "a pooled connection did not answer its check in time".into(),
            },
            E::Backend(e) => classify(&self.inner.shared.url, &e),
            E::Closed => PoolError::Closed,
            E::NoRuntimeSpecified | E::PostCreateHook(_) => PoolError::Unavailable {
                reason: self.inner.shared.url.redact_text(&e.to_string()),
            },
        }
    }

    /// The overall deadline passed: exhausted if every slot was taken, else the connects or
    /// checks were too slow, which means the database is not answering.
    fn deadline_error(&self, started: Instant) -> PoolError {
        let status = self.inner.pool.status();
        if status.size >= status.max_size && status.available == 0 {
            PoolError::Timeout {
                waited: started.elapsed(),
                size: status.max_size,
            }
        } else {
            PoolError::Unavailable {
                reason: format!(
                    "no working connection within DB_POOL_TIMEOUT ({:?})",
                    self.inner.shared.settings.wait_timeout
                ),
            }
        }
    }
}

/// A pooled connection: derefs to a [`tokio_postgres::Client`] and goes back to the pool when
/// dropped (or is closed, if the pool was closed or shrank meanwhile).
pub struct PooledConnection {
    object: deadpool_postgres::Object,
}

impl PooledConnection {
    /// The client (the same as dereferencing).
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.object
    }
}

impl std::ops::Deref for PooledConnection {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &tokio_postgres::Client {
        &self.object
    }
}

impl std::ops::DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut tokio_postgres::Client {
        &mut self.object
    }
}

impl fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("closed", &self.object.is_closed())
            .finish_non_exhaustive()
    }
}

fn publish(status: &PoolStatus) {
    metrics::gauge!("render_deploy_pool_size").set(status.size as f64);
    metrics::gauge!("render_deploy_pool_idle").set(status.idle as f64);
    metrics::gauge!("render_deploy_pool_in_use").set(status.in_use as f64);
    metrics::gauge!("render_deploy_pool_waiting").set(status.waiting as f64);
    metrics::gauge!("render_deploy_pool_max").set(status.max as f64);
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn building_a_pool_touches_no_network_and_needs_no_runtime() {
        // Port 9 (discard) on a host that does not exist: building must still succeed.
        let url = DatabaseUrl::parse("postgres://u:p@db.invalid:9/app?sslmode=require").unwrap();
        let pool = PoolManager::new(&url, &PoolSettings::default()).unwrap();
        let status = pool.status();
        assert_eq!((status.size, status.in_use), (0, 0));
        assert!(status.max >= 1);
    }

    #[test]
    fn a_pool_of_zero_connections_is_refused() {
        let url = DatabaseUrl::parse("postgres://u:p@h/app").unwrap();
        let settings = PoolSettings {
            max: PoolMax::Fixed(0),
            ..PoolSettings::default()
        };
        assert_eq!(
            PoolManager::new(&url, &settings).unwrap_err(),
            PoolError::Configuration(PoolConfigError::ZeroSize)
        );
    }

    #[test]
    fn the_check_timeout_leaves_room_for_a_new_connection() {
        let settings = PoolSettings {
            wait_timeout: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(10),
            ..PoolSettings::default()
        };
        assert_eq!(settings.check_timeout(), Duration::from_secs(2));
    }

    #[test]
    fn the_debug_form_of_the_pool_hides_the_password() {
        let url = DatabaseUrl::parse("postgres://u:Sekret-pw-1@h/app").unwrap();
        let pool = PoolManager::new(&url, &PoolSettings::default()).unwrap();
        let shown = format!("{pool:?}");
        assert!(!shown.contains("Sekret-pw-1"), "{shown}");
    }
}
