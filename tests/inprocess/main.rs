//! Tests without the binary and without a database: pure logic, and routers driven with
//! `oneshot` (no socket), the deploy-hook client against a stand-in on loopback.

#[path = "../support/mod.rs"]
mod support;

mod blueprint_corpus;
mod config;
mod events_route;
mod health_cache;
mod health_routes;
mod hooks_hostile;
mod hooks_router;
mod render_api;
mod signature_vectors;
mod trigger;
