//! Logs (tracing) and metrics (Prometheus).

/// Format of the log lines on stdout (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the default in production).
    Json,
    /// Human-readable lines (the default elsewhere).
    Pretty,
}
