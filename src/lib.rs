//! `render-deploy`: make a web service safe and fast to deploy on Render.
//!
//! # Public API
//!
//! What a library user needs, one example each (every example below is compiled, and run
//! unless it needs a database or a network):
//!
//! **[`Config`]**: every environment variable, read once into types, every problem at once.
//!
//! ```
//! use render_deploy::config::{Config, Mode};
//! let errors = Config::from_vars([("PORT", "80a")], Mode::Serve).unwrap_err();
//! assert!(errors.names("PORT") && errors.names("DATABASE_URL"));
//! ```
//!
//! **[`Deployment`]**: the whole service (pool, health cache, hooks, metrics) and its graceful
//! shutdown; merge its routes into your own router.
//!
//! ```no_run
//! # async fn run() -> Result<(), render_deploy::server::DeploymentError> {
//! let deployment = render_deploy::Deployment::from_env()?;
//! let app = axum::Router::new().merge(deployment.routes());
//! deployment.serve(app).await?;
//! # Ok(()) }
//! ```
//!
//! **[`server::Shutdown`]**: the signal that draining has begun, for long-lived responses (event
//! streams, WebSockets, long polls) that must end then rather than hold the drain open.
//!
//! ```
//! use render_deploy::server::Shutdown;
//! async fn long_poll(shutdown: Shutdown) -> &'static str {
//!     shutdown.draining().await; // an extractor in any handler served by `Deployment`
//!     "draining: reconnect"
//! }
//! let _app: axum::Router = axum::Router::new().route("/poll", axum::routing::get(long_poll));
//! ```
//!
//! **[`configure_render_deployment`]**: the original two-input entry point: a validated
//! configuration and a pool that connects on first use.
//!
//! ```
//! let (config, _pool) = render_deploy::configure_render_deployment(
//!     "postgres://app:secret@localhost/app",
//!     "a-deploy-hook-secret-of-at-least-32-bytes",
//! )
//! .expect("valid inputs");
//! assert!(!format!("{:?}", config.config()).contains("secret@"));
//! ```
//!
//! **[`signature`]**: pure signing and verification of Standard Webhooks and GitHub deliveries.
//!
//! ```
//! use axum::http::HeaderMap;
//! use render_deploy::signature::{WebhookSecret, sign_standard, verify};
//! let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! let mut headers = HeaderMap::new();
//! headers.insert("webhook-id", "msg_1".parse().unwrap());
//! headers.insert("webhook-timestamp", "1700000000".parse().unwrap());
//! let signature = sign_standard(&secret, "msg_1", 1_700_000_000, b"{}");
//! headers.insert("webhook-signature", signature.parse().unwrap());
//! let tolerance = std::time::Duration::from_secs(300);
//! assert!(verify(&secret, &headers, b"{}", 1_700_000_000, tolerance).is_ok());
//! ```
//!
//! **[`webhooks`]**: the `POST /hooks/deploy` endpoint, with [`replay`] protection.
//!
//! ```
//! use std::sync::Arc;
//! use render_deploy::config::HookSettings;
//! use render_deploy::replay::MemoryReplayStore;
//! use render_deploy::webhooks::{HookState, router};
//! let settings = HookSettings::default();
//! let replay = Arc::new(MemoryReplayStore::new(settings.tolerance));
//! let state = HookState::new(None, settings, replay, Arc::new(|| {}));
//! let _app: axum::Router = router(state); // 503 until a secret is given
//! ```
//!
//! **[`pool`]**: the PostgreSQL pool, sized from the server, every wait bounded.
//!
//! ```
//! use render_deploy::{config::PoolSettings, database_url::DatabaseUrl, pool::PoolManager};
//! let url = DatabaseUrl::parse("postgres://app:pw@db.internal/app").unwrap();
//! let pool = PoolManager::new(&url, &PoolSettings::default()).unwrap(); // no connection yet
//! assert_eq!(pool.status().in_use, 0);
//! ```
//!
//! **[`health`]**: a cached, single-flight health check.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use render_deploy::health::{CachedCheck, HealthSettings};
//! let check = CachedCheck::new(&HealthSettings::default(), || async { true });
//! assert!(check.check().await.is_healthy());
//! # });
//! ```
//!
//! **[`database_url`]** and **[`render_api`]**: URLs that can only be printed redacted; the
//! deploy hook client and the REST API client call Render.
//!
//! ```
//! use render_deploy::{database_url::DatabaseUrl, render_api::DeployHookUrl};
//! let db = DatabaseUrl::parse("postgres://app:pw@db.internal/app").unwrap();
//! assert_eq!(db.redacted(), "postgres://app:****@db.internal/app");
//! let hook = DeployHookUrl::parse("https://api.render.com/deploy/srv-x?key=k3y").unwrap();
//! assert!(!hook.redacted().contains("k3y"));
//! ```
//!
//! **[`schema`]**: the rules engine behind `check-env --schema`, for other applications.
//!
//! ```
//! use render_deploy::schema::{Env, Mode, Schema};
//! let schema = Schema::parse("[API_KEY]\nrequired = true\nsecret = true\n", "app.toml").unwrap();
//! let report = schema.check(&Env::default(), Mode::Serve);
//! assert_eq!(report.problems[0].to_string(), "API_KEY: is not set (expected a non-empty value)");
//! ```
//!
//! **[`blueprint`]**: checking `render.yaml`.
//!
//! ```
//! let findings = render_deploy::blueprint::check_source("services: 3\n");
//! assert!(render_deploy::blueprint::has_errors(&findings));
//! ```
//!
//! **[`local_postgres`]**: a throwaway PostgreSQL cluster (for `dev` and tests).
//!
//! ```no_run
//! let pg = render_deploy::local_postgres::LocalPostgres::start().expect("initdb on PATH");
//! println!("{}", pg.url("app")); // a URL of database `app` on the cluster
//! ```
//!
//! **[`telemetry`]** and **[`clock`]**: logs, metrics and the panic hook; the injectable clock.
//!
//! ```
//! // Keep the guard for the life of the process: dropping it writes out the queued lines.
//! let _log = render_deploy::telemetry::init_logging(render_deploy::config::LogFormat::Pretty);
//! assert!(render_deploy::clock::unix_now() > 1_700_000_000);
//! ```
//!
//! # Layout
//!
//! Each module owns one job; the file is named after the feature. From the ground floor up
//! (a module imports only from those listed before it):
//!
//! - [`database_url`], [`signature`], [`clock`], [`local_postgres`]: value types and leaf
//!   clients that import nothing of the crate.
//! - [`render_api`]: everything that calls Render — the deploy hook URL (`trigger`), the REST
//!   API client, and `deploy` (create once, follow to live, smoke-test, roll back); it too
//!   imports nothing of the crate outside itself.
//! - [`schema`]: the variable rules as data (built-in table, or a user's TOML file) and the
//!   engine that checks an environment against them.
//! - [`config`]: every environment variable of the contract, read once into one typed
//!   [`config::Config`]; every part's settings type lives here, its defaults from the schema.
//! - [`telemetry`]: logs (tracing) and metrics (Prometheus).
//! - [`replay`]: remembering delivery ids (in memory or in PostgreSQL) so nothing runs twice.
//! - [`pool`]: the PostgreSQL connection pool (deadpool-postgres), sized from the server.
//! - [`health`]: the cached, single-flight health check and the `/health`, `/livez` endpoints.
//! - [`webhooks`]: receiving signed webhooks: the `POST /hooks/deploy` endpoint.
//! - [`server`]: [`server::Deployment`]: wiring, start-up and graceful shutdown, the shutdown
//!   signal handed to handlers ([`server::Shutdown`]) and the `/events` stream.
//! - [`blueprint`]: checking and writing `render.yaml`.
//! - `rehearse`: a zero-downtime deploy rehearsed on this machine (behind the CLI).
//! - `cli`: the command-line program; `main.rs` only calls `cli::main` (not library API).
//!
//! # Features
//!
//! All on by default. Without them (`default-features = false`) the crate is configuration,
//! schema, signatures, replay, Render's API and deploy hook, pool, health, webhooks, server
//! and telemetry:
//!
//! - `blueprint`: [`blueprint`] (brings the YAML parser).
//! - `dev`: [`local_postgres`] (brings nix and tempfile).
//! - `rehearse`: the rehearsal behind `render-deploy rehearse` (needs `dev`; brings hyper's
//!   client and tokio's process support).
//! - `cli`: the `render-deploy` program (needs all of the above; brings clap).

#[cfg(feature = "blueprint")]
pub mod blueprint;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub mod clock;
pub mod config;
pub mod database_url;
pub mod health;
#[cfg(feature = "dev")]
pub mod local_postgres;
mod per_thread;
pub mod pool;
mod random;
#[cfg(feature = "rehearse")]
// Only the CLI runs it: with `rehearse` but without `cli` nothing in the crate calls it.
#[cfg_attr(not(feature = "cli"), allow(dead_code, unused_imports))]
pub(crate) mod rehearse;
pub mod render_api;
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
pub struct ReadmeDoctests;
