//! Opening connections (the driver configuration, TLS) and watching each one, with the state
//! that the manager, the connection tasks and the recycle hooks share.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres_rustls::MakeRustlsConnect;

use deadpool_postgres::{ClientWrapper, HookError, Metrics};

use super::PoolSettings;
use crate::database_url::DatabaseUrl;

pub(super) type Listener = Arc<dyn Fn() + Send + Sync>;

/// State shared by the manager, the connector's connection tasks and the recycle hooks.
pub(super) struct Shared {
    pub(super) url: DatabaseUrl,
    pub(super) settings: PoolSettings,
    /// Reference for `last_failure`.
    pub(super) epoch: Instant,
    /// Nanoseconds after `epoch` of the latest connection failure, plus one; 0 = none yet.
    pub(super) last_failure: AtomicU64,
    pub(super) listeners: RwLock<Vec<Listener>>,
    pub(super) timeouts: AtomicU64,
    pub(super) errors: AtomicU64,
}

impl Shared {
    /// Records a connection failure: later checkouts verify, listeners are told.
    fn note_failure(&self, what: &str, error: &dyn fmt::Display) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_failure.store(nanos + 1, Ordering::Release);
        self.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("render_deploy_pool_errors_total").increment(1);
        tracing::warn!(
            target: "render_deploy::pool",
            error = %self.url.redact_text(&error.to_string()),
            "{what}"
        );
        // Call outside the lock, so a listener may subscribe another.
        let listeners: Vec<Listener> = match self.listeners.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for listener in listeners {
            listener();
        }
    }

    /// Whether a failure was seen at or after `since`.
    fn failure_since(&self, since: Instant) -> bool {
        let stored = self.last_failure.load(Ordering::Acquire);
        if stored == 0 {
            return false;
        }
        let failure = self.epoch + Duration::from_nanos(stored - 1);
        failure >= since
    }

    /// deadpool's `post_recycle` hook: retire old connections, check stale ones.
    pub(super) fn verify<'a>(
        self: Arc<Self>,
        client: &'a mut ClientWrapper,
        metrics: &'a Metrics,
    ) -> Pin<Box<dyn Future<Output = Result<(), HookError>> + Send + 'a>> {
        Box::pin(async move {
            if metrics.age() >= self.settings.max_lifetime {
                metrics::counter!("render_deploy_pool_retired_total").increment(1);
                return Err(HookError::message("retired: older than DB_MAX_LIFETIME"));
            }
            let last_use = metrics.recycled.unwrap_or(metrics.created);
            if last_use.elapsed() < self.settings.recheck_after && !self.failure_since(last_use) {
                // Yield once to the I/O driver first: a server that closed this connection
                // a moment ago has its EOF or FATAL message waiting in the socket, and the
                // connection's task must see it before we trust `is_closed` (otherwise a task
                // that held the thread meanwhile could be handed a dead connection).
                tokio::task::yield_now().await;
                if !client.is_closed() {
                    return Ok(());
                }
                return Err(HookError::message("closed by the server"));
            }
            metrics::counter!("render_deploy_pool_checks_total").increment(1);
            // The empty query is the cheapest round trip there is, and PgBouncer passes it on
            // in any pool mode.
            match tokio::time::timeout(self.settings.check_timeout(), client.simple_query("")).await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => {
                    self.note_failure("a pooled connection failed its check; replacing it", &e);
                    Err(HookError::Backend(e))
                }
                Err(_) => {
                    let timeout = self.settings.check_timeout();
                    self.note_failure(
                        "a pooled connection did not answer its check; replacing it",
                        &format_args!("no answer within {timeout:?}"),
                    );
                    Err(HookError::message("check timed out"))
                }
            }
        })
    }
}

/// Opens connections with this crate's TLS and watches each one's background task, so that a
/// connection the server or the network drops is noticed at once (not at its next checkout).
pub(super) struct Connector {
    pub(super) tls: MakeRustlsConnect,
    pub(super) shared: Arc<Shared>,
}

type ConnectFuture<'a> = Pin<
    Box<
        dyn Future<Output = Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>>
            + Send
            + 'a,
    >,
>;

impl deadpool_postgres::Connect for Connector {
    fn connect(&self, pg_config: &tokio_postgres::Config) -> ConnectFuture<'_> {
        let tls = self.tls.clone();
        let pg_config = pg_config.clone();
        let shared = self.shared.clone();
        Box::pin(async move {
            match pg_config.connect(tls).await {
                Ok((client, connection)) => {
                    let task = tokio::spawn(async move {
                        // Ends with Ok when the pool drops the client; an error means the
                        // server or the network ended it under us.
                        if let Err(e) = connection.await {
                            shared.note_failure("a database connection was lost", &e);
                        }
                    });
                    Ok((client, task))
                }
                Err(e) => {
                    shared.note_failure("could not open a database connection", &e);
                    Err(e)
                }
            }
        })
    }
}

/// The driver configuration: the URL's, plus the timeouts and TCP settings of this pool.
pub(super) fn driver_config(url: &DatabaseUrl, settings: &PoolSettings) -> tokio_postgres::Config {
    let mut config = url.pg_config();
    config.connect_timeout(settings.connect_timeout);
    // Keepalives notice a peer that vanished while the connection is idle (about 30 s +
    // 3 × 5 s); tcp_user_timeout one that vanished with our data unacknowledged (a query in
    // flight), which keepalives alone would take minutes of retransmissions to give up on.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(30).max(settings.connect_timeout));
    if config.get_application_name().is_none() {
        config.application_name("render-deploy");
    }
    config
}
