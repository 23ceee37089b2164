//! The service: [`Deployment`] wires configuration, pool, health and hooks, serves, and drains.

/// The whole service (filled in by the service issue).
#[derive(Debug)]
pub struct Deployment {}
