//! Refused credentials are not retried in a storm: after an authentication failure, checkouts
//! fail at once with that error until a back-off has passed.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{PoolError, PoolManager, lock};

/// Longest pause between connection attempts after the server refused the credentials.
const AUTH_BACKOFF_MAX: Duration = Duration::from_secs(30);
const AUTH_BACKOFF_FIRST: Duration = Duration::from_secs(1);

pub(super) struct AuthBlock {
    until: Instant,
    backoff: Duration,
    error: PoolError,
}

impl PoolManager {
    pub(super) fn auth_blocked(&self) -> Option<PoolError> {
        if !self.inner.auth_blocked.load(Ordering::Acquire) {
            return None;
        }
        let block = lock(&self.inner.auth);
        block
            .as_ref()
            .filter(|b| Instant::now() < b.until)
            .map(|b| b.error.clone())
    }

    pub(super) fn block_auth(&self, error: &PoolError) {
        let mut block = lock(&self.inner.auth);
        let backoff = block.as_ref().map_or(AUTH_BACKOFF_FIRST, |b| {
            (b.backoff * 2).min(AUTH_BACKOFF_MAX)
        });
        tracing::error!(
            target: "render_deploy::pool",
            error = %error,
            retry_in = ?backoff,
            "the database refused the credentials; not trying again before the back-off"
        );
        self.inner.auth_blocked.store(true, Ordering::Release);
        *block = Some(AuthBlock {
            until: Instant::now() + backoff,
            backoff,
            error: error.clone(),
        });
    }

    pub(super) fn clear_auth_block(&self) {
        if !self.inner.auth_blocked.load(Ordering::Acquire) {
            return;
        }
        let mut block = lock(&self.inner.auth);
        *block = None;
        self.inner.auth_blocked.store(false, Ordering::Release);
    }
}
