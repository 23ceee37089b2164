//! The serving/draining flag shared by the server (which flips it on SIGTERM) and the health
//! endpoints (which report it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Invalidator;

/// Whether this instance is serving or draining. Cloning is cheap; every clone shares the flag.
///
/// Draining only ever starts once and never stops: an instance that received SIGTERM is on its
/// way out.
#[derive(Clone, Default)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    // An atomic for the hot path (`/livez` reads it on every request); the watch channel is for
    // those who await the change.
    draining: AtomicBool,
    changed: watch::Sender<bool>,
    // Cancelled when draining starts: the signal handed to handlers (as child tokens, so that a
    // handler cancelling its own cannot start the drain of the whole instance).
    drained: CancellationToken,
    on_drain: Mutex<Vec<Invalidator>>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("draining", &self.is_draining())
            .finish()
    }
}

impl Lifecycle {
    /// A lifecycle in the serving state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts draining: `/health` reports `draining` and `/livez` 503 from now on, and every
    /// registered health cache is invalidated. Calling it again does nothing.
    pub fn start_draining(&self) {
        if self.inner.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!("draining: health endpoints now answer 503");
        self.inner.changed.send_replace(true);
        self.inner.drained.cancel();
        let hooks = self
            .inner
            .on_drain
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for hook in hooks.iter() {
            hook.invalidate();
        }
    }

    /// Whether draining has started (one atomic load).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Resolves once draining has started (at once if it already has).
    pub async fn draining_started(&self) {
        let mut rx = self.inner.changed.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|draining| *draining).await;
    }

    /// A token cancelled when draining starts (at once if it already has). It is a child of
    /// the lifecycle's own: cancelling it ends only what waits on it, never the instance.
    pub fn draining_token(&self) -> CancellationToken {
        self.inner.drained.child_token()
    }

    /// Registers a cache to invalidate when draining starts (at once if it already has).
    pub fn invalidate_on_drain(&self, invalidator: Invalidator) {
        let mut hooks = self
            .inner
            .on_drain
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if self.is_draining() {
            invalidator.invalidate();
        }
        hooks.push(invalidator);
    }
}
