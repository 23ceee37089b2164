//! `render-deploy`: make a web service safe and fast to deploy on Render.
//!
//! # Layout
//!
//! Each module owns one job; the file is named after the feature:
//!
//! - [`config`]: every environment variable of the contract, read once into one typed
//!   [`config::Config`], every problem reported in one pass. Rules live in [`schema`].
//! - [`schema`]: the variable rules as data (built-in table, or a user's TOML file) and the
//!   engine that checks an environment against them.
//! - [`database_url`]: a PostgreSQL URL that can only be printed with its password redacted.
//! - [`signature`]: pure verification and signing of Standard Webhooks and GitHub deliveries.
//! - [`replay`]: remembering delivery ids (in memory or in PostgreSQL) so nothing runs twice.
//! - [`deploy_hook`]: calling Render: the client of its deploy hook URL, with retries.
//! - [`webhooks`]: receiving signed webhooks: the `POST /hooks/deploy` endpoint.
//! - [`clock`]: the wall clock as Unix seconds, injectable.
//! - [`pool`]: the PostgreSQL connection pool (deadpool-postgres), sized from the server.
//! - [`health`]: the cached, single-flight health check and the `/health`, `/livez` endpoints.
//! - [`server`]: [`server::Deployment`]: wiring, start-up and graceful shutdown.
//! - [`telemetry`]: logs (tracing) and metrics (Prometheus).
//! - [`blueprint`]: checking and writing `render.yaml`.
//! - [`rehearse`]: a zero-downtime deploy rehearsed on this machine.
//! - [`local_postgres`]: a throwaway PostgreSQL cluster for `dev` and for tests.
//! - [`cli`]: the command-line program; `main.rs` only calls [`cli::main`].

pub mod blueprint;
#[doc(hidden)]
pub mod cli;
pub mod clock;
pub mod config;
pub mod database_url;
pub mod deploy_hook;
pub mod health;
pub mod local_postgres;
pub mod pool;
pub(crate) mod rehearse;
pub mod replay;
pub mod schema;
pub mod server;
pub mod signature;
pub mod telemetry;
pub mod webhooks;

pub use config::Config;
pub use pool::PoolManager;
pub use server::{Deployment, DeploymentConfig, configure_render_deployment};

/// The README's Rust examples, compiled by `cargo test --doc` so that they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub(crate) struct ReadmeDoctests;
