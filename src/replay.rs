//! Replay protection: delivery ids remembered for the tolerance window.

/// Where delivery ids are remembered (`WEBHOOK_REPLAY_STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayStoreKind {
    /// In this process (one instance).
    #[default]
    Memory,
    /// A PostgreSQL table shared by all instances.
    Postgres,
}
