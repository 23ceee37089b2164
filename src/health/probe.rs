//! The database probe behind `/health`: a trait, so the health check does not depend on how the
//! pool is built, and its implementation for a deadpool-postgres pool (`SELECT 1`).

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future (what [`DatabaseProbe::ping`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the database did not answer a probe.
///
/// `Display` is a short phrase without internals (no host, no user, no driver text): it is what
/// `/health` shows in `database.error`. The driver's error, when there is one, is the
/// [`source`](std::error::Error::source), for the log.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No connection could be had (pool exhausted, server unreachable, authentication refused).
    #[error("no database connection available")]
    NoConnection(#[source] Option<Box<dyn std::error::Error + Send + Sync>>),
    /// A connection was had but the query failed.
    #[error("database query failed")]
    Query(#[source] Option<Box<dyn std::error::Error + Send + Sync>>),
}

impl ProbeError {
    /// The phrase shown in `/health`'s `database.error`.
    pub(crate) fn public_phrase(&self) -> &'static str {
        match self {
            Self::NoConnection(_) => "no database connection available",
            Self::Query(_) => "database query failed",
        }
    }
}

/// Something that can tell whether the database answers: one cheap round trip.
///
/// The health service measures the latency around [`ping`](Self::ping) and bounds it with
/// `HEALTH_PROBE_TIMEOUT`, so an implementation needs neither.
pub trait DatabaseProbe: Send + Sync + 'static {
    /// One round trip to the database.
    fn ping(&self) -> BoxFuture<'_, Result<(), ProbeError>>;
}

impl DatabaseProbe for deadpool_postgres::Pool {
    fn ping(&self) -> BoxFuture<'_, Result<(), ProbeError>> {
        Box::pin(async move {
            let client = self
                .get()
                .await
                .map_err(|e| ProbeError::NoConnection(Some(Box::new(e))))?;
            // The simple-query protocol: one round trip, no prepared statement to cache (which
            // also keeps it valid behind PgBouncer in transaction mode).
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| ProbeError::Query(Some(Box::new(e))))?;
            Ok(())
        })
    }
}

/// Any closure returning a future of `Result<(), ProbeError>` is a probe (handy in tests and for
/// a database reached some other way).
impl<F, Fut> DatabaseProbe for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ProbeError>> + Send + 'static,
{
    fn ping(&self) -> BoxFuture<'_, Result<(), ProbeError>> {
        Box::pin(self())
    }
}
