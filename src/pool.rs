//! The PostgreSQL connection pool: deadpool-postgres that sizes itself and survives faults.

use std::time::Duration;

/// How many connections the pool may hold (`DB_POOL_MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolMax {
    /// Chosen from the server's `max_connections` and the CPUs (contract §5).
    #[default]
    Auto,
    /// A fixed size.
    Fixed(usize),
}

/// Settings of the pool, from the `DB_*` variables (defaults as in the contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// `DB_POOL_MAX` (default `auto`).
    pub max: PoolMax,
    /// `DB_POOL_MIN_IDLE` (default 1).
    pub min_idle: usize,
    /// `DB_POOL_TIMEOUT`: how long a request waits for a connection (default 5 s).
    pub wait_timeout: Duration,
    /// `DB_CONNECT_TIMEOUT`: how long opening one connection may take (default 5 s).
    pub connect_timeout: Duration,
    /// `DB_MAX_LIFETIME`: age at which a connection is retired (default 1800 s).
    pub max_lifetime: Duration,
    /// `DB_POOL_INSTANCES`: instances sharing the database (default 1).
    pub instances: u32,
    /// `DB_PGBOUNCER`: the URL points at PgBouncer in transaction mode (default false).
    pub pgbouncer: bool,
    /// CPUs for `auto` (from `RENDER_CPU_COUNT`; the machine's when `None`).
    pub cpus: Option<u32>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max: PoolMax::Auto,
            min_idle: 1,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            max_lifetime: Duration::from_secs(1800),
            instances: 1,
            pgbouncer: false,
            cpus: None,
        }
    }
}

/// The pool (filled in by the pool issue).
#[derive(Debug)]
pub struct PoolManager {}
