//! Tests against a real PostgreSQL: a throwaway cluster per test (`LocalPostgres`, about a
//! second), PgBouncer in front of one, and TLS with certificates made in the test.

#[path = "../support/mod.rs"]
mod support;

mod health_postgres;
mod hooks_postgres;
mod local_postgres_watchdog;
mod panic;
mod pool;
mod pool_pgbouncer;
mod pool_tls;
mod route_labels;
mod shutdown_signal;
