//! The database every command of a rehearsal shares, as old and new versions share one on
//! Render: the one `DATABASE_URL` names, or else a throwaway PostgreSQL started for the
//! rehearsal, whose URL becomes every command's `DATABASE_URL`.
//!
//! A throwaway cluster is started whatever the commands are (this program's own `dev` or any
//! other service), so that the setup command, the pre-deploy command and every instance of
//! both versions meet in one database, and its connections can be counted against a
//! `max_connections` chosen with `--db-max-connections`.

use secrecy::{ExposeSecret, SecretString};

use super::{DEFAULT_DB_MAX_CONNECTIONS, RehearsalOptions, RehearseError};
use crate::local_postgres::{LocalPostgres, LocalPostgresOptions};

/// The rehearsal's database; a throwaway cluster is stopped and removed when this is dropped.
pub(crate) struct Database {
    /// Added to the environment of every command: `DATABASE_URL` of the throwaway cluster.
    pub env: Vec<(String, String)>,
    /// The URL whose connections are counted (ours, or the user's `DATABASE_URL`).
    sample_url: Option<SecretString>,
    /// Held for its lifetime.
    _local: Option<LocalPostgres>,
}

impl Database {
    /// Nothing: `--no-database`.
    fn none() -> Self {
        Self {
            env: Vec::new(),
            sample_url: None,
            _local: None,
        }
    }

    /// `DATABASE_URL` when set (the commands inherit it), or a throwaway cluster with
    /// `max_connections` from the options, or nothing with `--no-database`.
    pub async fn open(options: &RehearsalOptions) -> Result<Self, RehearseError> {
        if options.no_database {
            return Ok(Self::none());
        }
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Ok(Self {
                env: Vec::new(),
                sample_url: Some(SecretString::from(url)),
                _local: None,
            });
        }
        let settings = LocalPostgresOptions {
            max_connections: options
                .db_max_connections
                .unwrap_or(DEFAULT_DB_MAX_CONNECTIONS),
            ..LocalPostgresOptions::default()
        };
        // initdb and pg_ctl block for a second or so.
        let pg =
            match tokio::task::spawn_blocking(move || LocalPostgres::start_with(settings)).await {
                Ok(started) => started?,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
        let url = pg.create_database().await?;
        Ok(Self {
            env: vec![("DATABASE_URL".to_owned(), url.clone())],
            sample_url: Some(SecretString::from(url)),
            _local: Some(pg),
        })
    }

    /// The URL to count connections on, if there is a database.
    pub fn sample_url(&self) -> Option<&str> {
        self.sample_url.as_ref().map(|u| u.expose_secret())
    }

    /// Whether the database is the rehearsal's own throwaway cluster.
    pub fn is_throwaway(&self) -> bool {
        self._local.is_some()
    }
}
