//! Configuration: every environment variable of the contract, read once, all problems at once.

/// The typed configuration (filled in by the foundation issue).
#[derive(Debug)]
pub struct Config {}
