//! The wall clock as Unix seconds, passed in wherever time matters so that tests control it.

use std::sync::Arc;

/// The current time as Unix seconds; injectable so tests control it.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock as a [`Clock`].
pub(crate) fn system_clock() -> Clock {
    Arc::new(unix_now)
}

/// The current Unix time in seconds (0 if the system clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
