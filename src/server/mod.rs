//! The service: [`Deployment`] wires configuration, pool, health and hooks, serves, and drains.

pub mod listener;
pub mod middleware;
// routes.rs is wired once the pool lands.

/// The whole service (being wired).
#[derive(Debug)]
pub struct Deployment {}
