//! Sizing the pool from the server (`DB_POOL_MAX=auto`, once) and the background sweep that
//! retires old connections and keeps `DB_POOL_MIN_IDLE` open.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use deadpool_postgres::TimeoutType;

use super::error::classify;
use super::{
    Inner, PoolError, PoolManager, PoolSizing, PooledConnection, SizingState, lock, sizing,
};

impl PoolManager {
    /// Reads the server's figures on `conn` and resizes (once; later calls return the result).
    pub(super) async fn size_from(&self, conn: &PooledConnection) -> Result<PoolSizing, PoolError> {
        match &*lock(&self.inner.sizing) {
            SizingState::Known(s) => return Ok(s.clone()),
            SizingState::Failed(e) => return Err(e.clone().into()),
            SizingState::Unknown => {}
        }
        let shared = &self.inner.shared;
        let settings = &shared.settings;
        let figures = tokio::time::timeout(settings.connect_timeout, sizing::read_server(conn))
            .await
            .map_err(|_| PoolError::Unavailable {
                reason: "the server did not answer the sizing query in time".into(),
            })?
            .map_err(|e| classify(&shared.url, &e))?;
        let chosen = sizing::choose(settings.max, figures, settings.cpus(), settings.instances);
        let mut state = lock(&self.inner.sizing);
        // Another task may have sized the pool meanwhile; the figures are the same.
        if let SizingState::Known(s) = &*state {
            return Ok(s.clone());
        }
        match chosen {
            Ok(sizing) => {
                self.inner.pool.resize(sizing.chosen);
                if sizing.exceeds_budget() {
                    tracing::warn!(target: "render_deploy::pool", "{sizing}");
                } else {
                    tracing::info!(
                        target: "render_deploy::pool",
                        pool_size = sizing.chosen,
                        max_connections = sizing.max_connections,
                        reserved = sizing.reserved,
                        cpus = sizing.cpus,
                        instances = sizing.instances,
                        server_version = %sizing.server_version,
                        "{sizing}"
                    );
                }
                *state = SizingState::Known(sizing.clone());
                self.inner.sized.store(true, Ordering::Release);
                Ok(sizing)
            }
            Err(e) => {
                tracing::error!(target: "render_deploy::pool", "{e}");
                *state = SizingState::Failed(e.clone());
                self.inner.refused.store(true, Ordering::Release);
                self.inner.sized.store(true, Ordering::Release);
                Err(e.into())
            }
        }
    }

    /// Opens connections until `DB_POOL_MIN_IDLE` (at most the pool size) are idle. Never
    /// waits for a busy pool: a pool whose connections are all in use has nothing to keep idle.
    pub(super) async fn fill_min_idle(&self) -> Result<(), PoolError> {
        let pool = &self.inner.pool;
        let status = pool.status();
        let want = self.inner.shared.settings.min_idle.min(status.max_size);
        if status.available >= want {
            return Ok(());
        }
        let mut timeouts = pool.timeouts();
        timeouts.wait = Some(Duration::ZERO);
        // Holding them all at once forces new connections instead of reusing one.
        let mut held = Vec::with_capacity(want);
        for _ in 0..want {
            match pool.timeout_get(&timeouts).await {
                Ok(object) => held.push(object),
                Err(deadpool_postgres::PoolError::Timeout(TimeoutType::Wait)) => break,
                Err(e) => return Err(self.pool_error(e, Instant::now())),
            }
        }
        Ok(())
    }

    /// Starts the sweep that retires old connections and keeps `DB_POOL_MIN_IDLE` (once).
    pub(super) fn start_maintenance(&self) {
        if self.inner.maintenance.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.maintenance.store(false, Ordering::Release);
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let max_lifetime = self.inner.shared.settings.max_lifetime;
        let every = (max_lifetime / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        runtime.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                if inner.pool.is_closed() {
                    break;
                }
                let retired = inner
                    .pool
                    .retain(|client, m| m.age() < max_lifetime && !client.is_closed())
                    .removed
                    .len();
                if retired > 0 {
                    metrics::counter!("render_deploy_pool_retired_total").increment(retired as u64);
                }
                let manager = PoolManager { inner };
                // A failure here is already counted and logged by the connector.
                let _ = manager.fill_min_idle().await;
                manager.status();
            }
        });
    }
}
