//! The `POST /hooks/deploy` endpoint: signed deliveries, replay protection, actions.

use std::time::Duration;

use crate::replay::ReplayStoreKind;

/// Settings of the endpoint, from the `WEBHOOK_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSettings {
    /// `WEBHOOK_TOLERANCE`: clock difference allowed, both directions (default 300 s).
    pub tolerance: Duration,
    /// `WEBHOOK_MAX_BODY`: bytes accepted (default 1 MiB).
    pub max_body: usize,
    /// `WEBHOOK_REPLAY_STORE` (default `memory`).
    pub replay_store: ReplayStoreKind,
}

impl Default for HookSettings {
    fn default() -> Self {
        Self {
            tolerance: Duration::from_secs(300),
            max_body: 1_048_576,
            replay_store: ReplayStoreKind::Memory,
        }
    }
}
