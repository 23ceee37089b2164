//! Why the pool could not hand out a connection, sorted so that a caller can act on it; no
//! error carries the password.

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::database_url::DatabaseUrl;

/// Why the pool's configuration cannot work (fix the settings; retrying does not help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolConfigError {
    /// `DB_POOL_MAX=auto` leaves less than one connection per instance.
    #[error(
        "DB_POOL_MAX=auto leaves {budget} connections per instance: (max_connections {max_connections} \
         − {reserved} reserved − 10 spare) / (2 × {instances} instances, doubled for deploys) is below 1 \
         (raise the server's max_connections, lower DB_POOL_INSTANCES, or set DB_POOL_MAX to a number)"
    )]
    BudgetBelowOne {
        /// The server's `max_connections`.
        max_connections: u32,
        /// Connections the server reserves.
        reserved: u32,
        /// `DB_POOL_INSTANCES`.
        instances: u32,
        /// The computed budget.
        budget: i64,
    },
    /// `DB_POOL_MAX=0`.
    #[error("DB_POOL_MAX is 0 (expected at least 1, or auto)")]
    ZeroSize,
    /// The `sslrootcert` file cannot be used.
    #[error("sslrootcert {path}: {reason}")]
    RootCertificate {
        /// The file named by the URL.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the TLS set-up.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// The database named in the URL does not exist on the server.
    #[error("the database does not exist on the server: {0}")]
    UnknownDatabase(String),
}

/// Why no connection was handed out. No variant carries the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every connection stayed in use for the whole `DB_POOL_TIMEOUT`: the pool is exhausted.
    #[error(
        "no database connection became free within {waited:?} (all {size} connections of the pool are in use)"
    )]
    Timeout {
        /// How long the caller waited.
        waited: Duration,
        /// The pool size.
        size: usize,
    },
    /// The database cannot be reached or dropped the connection (it may come back).
    #[error("the database is unavailable: {reason}")]
    Unavailable {
        /// The driver's reason, redacted.
        reason: String,
    },
    /// The server refused the user name or password. Retrying will not help until the
    /// credentials change, so for a while further checkouts fail at once without connecting.
    #[error("the database refused the user name or password in DATABASE_URL: {reason}")]
    Authentication {
        /// The server's message, redacted.
        reason: String,
    },
    /// The TLS handshake failed, typically because the certificate was refused.
    #[error("TLS with the database failed (sslmode={sslmode}): {reason}")]
    Tls {
        /// The URL's `sslmode`.
        sslmode: &'static str,
        /// rustls' reason.
        reason: String,
    },
    /// The settings cannot work.
    #[error("invalid pool configuration: {0}")]
    Configuration(#[from] PoolConfigError),
    /// [`PoolManager::close`](super::PoolManager::close) was called.
    #[error("the connection pool is closed")]
    Closed,
}

impl PoolError {
    /// Whether waiting and trying again may succeed (the database is away or busy).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Unavailable { .. })
    }
}

/// Sorts a driver error into what a caller can act on; the text is redacted.
pub(super) fn classify(url: &DatabaseUrl, e: &tokio_postgres::Error) -> PoolError {
    let reason = url.redact_text(&crate::telemetry::error_chain(e));
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if code == &SqlState::INVALID_PASSWORD
            || code == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return PoolError::Authentication { reason };
        }
        if code == &SqlState::INVALID_CATALOG_NAME {
            return PoolConfigError::UnknownDatabase(reason).into();
        }
        return PoolError::Unavailable { reason };
    }
    if is_tls_error(e) {
        return PoolError::Tls {
            sslmode: url.sslmode().as_str(),
            reason,
        };
    }
    // Client-side authentication failures (e.g. no password in the URL, SCRAM refused).
    if reason.starts_with("authentication error") || reason.contains("password missing") {
        return PoolError::Authentication { reason };
    }
    PoolError::Unavailable { reason }
}

fn is_tls_error(e: &tokio_postgres::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<rustls::Error>() {
            return true;
        }
        let io_wrapped = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<rustls::Error>());
        if io_wrapped {
            return true;
        }
        source = err.source();
    }
    e.to_string().starts_with("error performing TLS handshake")
}
