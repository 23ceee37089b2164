//! Replay protection: delivery ids remembered for the tolerance window.
//!
//! A [`ReplayStore`] answers one question atomically: "is this delivery id new? If so, it is now
//! claimed". Two stores: [`MemoryReplayStore`] for one instance and [`PostgresReplayStore`] for
//! several instances behind Render's load balancer, which share one table so that a delivery
//! retried to another instance is still recognised.
//!
//! # How long an id is remembered
//!
//! A Standard Webhooks delivery signed at `ts` is accepted while `now` is within `tolerance` of
//! `ts`, so it can arrive as early as `ts - tolerance` and still be replayable until
//! `ts + tolerance`: ids are kept for **twice** the tolerance after they were first seen. After
//! that the signed timestamp alone refuses a replay. (GitHub deliveries carry no signed
//! timestamp, so a GitHub delivery captured and replayed after the window is not recognised; this
//! is a limit of GitHub's scheme that no store can fix.)
//!
//! # Claim, act, release on failure
//!
//! The endpoint claims an id *before* acting (so that two instances receiving the same delivery
//! at the same moment cannot both act), and [`ReplayStore::release`]s it when the action fails,
//! so that the sender's retry is acted upon. A process that dies between claim and action leaves
//! the id claimed: that delivery is then answered "duplicate" and not acted upon (at most once,
//! never twice).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The setting is configuration's ([`crate::config`]); re-exported where it is used.
pub use crate::config::ReplayStoreKind;

/// A boxed future, so that [`ReplayStore`] can be used as `dyn ReplayStore`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the store could not answer. The endpoint then answers 503 and acts on nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The in-memory store holds its maximum of unexpired ids (see [`MemoryReplayStore`]).
    #[error("replay store is full ({0} unexpired delivery ids)")]
    Full(usize),
    /// No connection to PostgreSQL could be had.
    #[error("replay store: no database connection")]
    Pool(#[source] deadpool_postgres::PoolError),
    /// A query failed.
    #[error("replay store: query failed")]
    Query(#[source] tokio_postgres::Error),
}

/// Remembers delivery ids so that no delivery is acted upon twice.
pub trait ReplayStore: Send + Sync {
    /// Claims `id` at `now` (Unix seconds): `Ok(true)` when it was not seen within the window (it
    /// is now remembered), `Ok(false)` for a replay. Atomic: of two concurrent calls with one id,
    /// exactly one gets `true`.
    fn check_and_insert<'a>(
        &'a self,
        id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, ReplayError>>;

    /// Forgets a claimed id, after the action it was claimed for failed, so a retry can act.
    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ReplayError>>;
}

/// The default number of unexpired ids the memory store holds.
pub const DEFAULT_MEMORY_CAPACITY: usize = 100_000;

/// Delivery ids in this process: bounded in count, expired after the window.
///
/// Only deliveries whose signature checked out reach the store, so an attacker without the
/// secret cannot grow it at all; the cap is a second line against a misbehaving sender. At the
/// cap (after expired ids are dropped) a new id is refused with [`ReplayError::Full`] — the
/// endpoint answers 503 and the sender retries later — rather than evicting a live id, which
/// would reopen that delivery to replay. Memory is then at most about
/// `capacity × (MAX_ID_LEN + 64)` bytes (about 32 MiB for the default 100 000).
#[derive(Debug)]
pub struct MemoryReplayStore {
    ttl: i64,
    capacity: usize,
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    /// id → when it was claimed.
    seen: HashMap<String, i64>,
    /// (claimed at, id) in claim order, for expiry from the front.
    order: VecDeque<(i64, String)>,
}

impl MemoryReplayStore {
    /// A store that remembers ids for twice `tolerance`, at most [`DEFAULT_MEMORY_CAPACITY`].
    pub fn new(tolerance: Duration) -> Self {
        Self::with_capacity(tolerance, DEFAULT_MEMORY_CAPACITY)
    }

    /// A store with an explicit cap on unexpired ids.
    pub fn with_capacity(tolerance: Duration, capacity: usize) -> Self {
        Self {
            ttl: window(tolerance),
            capacity,
            inner: Mutex::new(MemoryInner::default()),
        }
    }

    /// How many ids are currently remembered.
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters (at worst an id is remembered a little longer), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn claim(&self, id: &str, now: i64) -> Result<bool, ReplayError> {
        let mut inner = self.lock();
        let MemoryInner { seen, order } = &mut *inner;
        // Expire from the front: claims are appended in arrival order, so the oldest are first.
        // An entry whose id was released or re-claimed since is skipped by comparing times.
        while let Some((at, _)) = order.front() {
            if now.saturating_sub(*at) <= self.ttl {
                break;
            }
            if let Some((at, old)) = order.pop_front()
                && seen.get(&old) == Some(&at)
            {
                seen.remove(&old);
            }
        }
        if let Some(at) = seen.get(id)
            && now.saturating_sub(*at) <= self.ttl
        {
            return Ok(false);
        }
        if seen.len() >= self.capacity {
            return Err(ReplayError::Full(seen.len()));
        }
        seen.insert(id.to_owned(), now);
        order.push_back((now, id.to_owned()));
        // Releases leave stale entries in `order`; bound them too.
        if order.len() > self.capacity.saturating_mul(2).max(16) {
            order.retain(|(at, id)| seen.get(id) == Some(at));
        }
        Ok(true)
    }
}

impl ReplayStore for MemoryReplayStore {
    fn check_and_insert<'a>(
        &'a self,
        id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, ReplayError>> {
        let result = self.claim(id, now);
        Box::pin(async move { result })
    }

    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ReplayError>> {
        self.lock().seen.remove(id);
        Box::pin(async { Ok(()) })
    }
}

/// The table the PostgreSQL store creates and uses.
pub const REPLAY_TABLE: &str = "render_deploy_hook_deliveries";

/// How often (at most) the PostgreSQL store deletes expired rows, in seconds.
const PRUNE_EVERY: i64 = 60;

/// Delivery ids in a PostgreSQL table shared by every instance.
///
/// `INSERT … ON CONFLICT` makes the claim atomic across instances. A row older than the window
/// counts as absent (and is taken over by the insert), so correctness does not depend on the
/// pruning, which runs at most once a minute per instance and deletes expired rows.
pub struct PostgresReplayStore {
    pool: deadpool_postgres::Pool,
    ttl: i64,
    last_prune: AtomicI64,
}

impl std::fmt::Debug for PostgresReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresReplayStore")
            .field("ttl_seconds", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl PostgresReplayStore {
    /// Uses `pool`, creating the table if it is missing; ids are kept for twice `tolerance`.
    pub async fn new(
        pool: deadpool_postgres::Pool,
        tolerance: Duration,
    ) -> Result<Self, ReplayError> {
        let mut client = pool.get().await.map_err(ReplayError::Pool)?;
        // Two instances starting together would race on CREATE TABLE IF NOT EXISTS (it can fail
        // with a unique violation in the catalog); a transaction-scoped advisory lock serialises them.
        let tx = client.transaction().await.map_err(ReplayError::Query)?;
        tx.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock(hashtext('{REPLAY_TABLE}'));
             CREATE TABLE IF NOT EXISTS {REPLAY_TABLE} (
                 id text PRIMARY KEY,
                 seen_at bigint NOT NULL
             );
             CREATE INDEX IF NOT EXISTS {REPLAY_TABLE}_seen_at ON {REPLAY_TABLE} (seen_at);"
        ))
        .await
        .map_err(ReplayError::Query)?;
        tx.commit().await.map_err(ReplayError::Query)?;
        Ok(Self {
            pool,
            ttl: window(tolerance),
            last_prune: AtomicI64::new(i64::MIN),
        })
    }

    async fn claim(&self, id: &str, now: i64) -> Result<bool, ReplayError> {
        let client = self.pool.get().await.map_err(ReplayError::Pool)?;
        let expired_before = now.saturating_sub(self.ttl);
        let inserted = client
            .execute(
                &format!(
                    "INSERT INTO {REPLAY_TABLE} AS t (id, seen_at) VALUES ($1, $2)
                     ON CONFLICT (id) DO UPDATE SET seen_at = EXCLUDED.seen_at
                     WHERE t.seen_at < $3"
                ),
                &[&id, &now, &expired_before],
            )
            .await
            .map_err(ReplayError::Query)?;
        let last = self.last_prune.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= PRUNE_EVERY
            && self
                .last_prune
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // Best effort: a failed prune only leaves rows that already count as absent.
            if let Err(error) = client
                .execute(
                    &format!("DELETE FROM {REPLAY_TABLE} WHERE seen_at < $1"),
                    &[&expired_before],
                )
                .await
            {
                tracing::warn!(error = %error, "replay store: pruning expired delivery ids failed");
            }
        }
        Ok(inserted == 1)
    }
}

impl ReplayStore for PostgresReplayStore {
    fn check_and_insert<'a>(
        &'a self,
        id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, ReplayError>> {
        Box::pin(self.claim(id, now))
    }

    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ReplayError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(ReplayError::Pool)?;
            client
                .execute(&format!("DELETE FROM {REPLAY_TABLE} WHERE id = $1"), &[&id])
                .await
                .map_err(ReplayError::Query)?;
            Ok(())
        })
    }
}

/// How long an id is kept: twice the tolerance (see the module docs), in whole seconds.
fn window(tolerance: Duration) -> i64 {
    i64::try_from(tolerance.as_secs())
        .unwrap_or(i64::MAX)
        .saturating_mul(2)
}

/// A [`PostgresReplayStore`] created on first use, so that a service can start (and answer
/// `/health` with 503) while its database is still away; creation is retried on the next
/// delivery until it succeeds.
pub(crate) struct LazyPostgresReplayStore {
    pool: deadpool_postgres::Pool,
    tolerance: Duration,
    store: tokio::sync::OnceCell<PostgresReplayStore>,
}

impl std::fmt::Debug for LazyPostgresReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyPostgresReplayStore")
            .field("ready", &self.store.initialized())
            .finish_non_exhaustive()
    }
}

impl LazyPostgresReplayStore {
    /// A store over `pool` whose table is created by the first delivery.
    pub fn new(pool: deadpool_postgres::Pool, tolerance: Duration) -> Self {
        Self {
            pool,
            tolerance,
            store: tokio::sync::OnceCell::new(),
        }
    }

    async fn store(&self) -> Result<&PostgresReplayStore, ReplayError> {
        self.store
            .get_or_try_init(|| PostgresReplayStore::new(self.pool.clone(), self.tolerance))
            .await
    }
}

impl ReplayStore for LazyPostgresReplayStore {
    fn check_and_insert<'a>(
        &'a self,
        id: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, ReplayError>> {
        Box::pin(async move { self.store().await?.check_and_insert(id, now).await })
    }

    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ReplayError>> {
        Box::pin(async move { self.store().await?.release(id).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_claim_of_one_id_is_a_replay() {
        let store = MemoryReplayStore::new(Duration::from_secs(300));
        assert!(store.check_and_insert("a", 1000).await.unwrap());
        assert!(!store.check_and_insert("a", 1001).await.unwrap());
        assert!(store.check_and_insert("b", 1001).await.unwrap());
    }

    #[tokio::test]
    async fn an_id_is_remembered_for_twice_the_tolerance_and_then_forgotten() {
        let store = MemoryReplayStore::new(Duration::from_secs(300));
        assert!(store.check_and_insert("a", 1000).await.unwrap());
        assert!(!store.check_and_insert("a", 1600).await.unwrap());
        assert!(store.check_and_insert("a", 1601 + 600).await.unwrap());
    }

    #[tokio::test]
    async fn a_flood_of_distinct_ids_stops_at_the_cap_and_expired_ids_make_room() {
        let store = MemoryReplayStore::with_capacity(Duration::from_secs(10), 1000);
        for i in 0..1000 {
            assert!(store.check_and_insert(&format!("id-{i}"), 0).await.unwrap());
        }
        assert!(matches!(
            store.check_and_insert("one-more", 5).await,
            Err(ReplayError::Full(1000))
        ));
        assert_eq!(store.len(), 1000);
        // Past the window every old id expires and new ones fit again.
        assert!(store.check_and_insert("one-more", 21).await.unwrap());
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn a_released_id_can_be_claimed_again() {
        let store = MemoryReplayStore::new(Duration::from_secs(300));
        assert!(store.check_and_insert("a", 0).await.unwrap());
        store.release("a").await.unwrap();
        assert!(store.check_and_insert("a", 1).await.unwrap());
        assert!(!store.check_and_insert("a", 2).await.unwrap());
    }

    #[tokio::test]
    async fn claims_and_releases_in_a_loop_keep_the_queue_bounded() {
        let store = MemoryReplayStore::with_capacity(Duration::from_secs(300), 10);
        for i in 0..10_000 {
            assert!(store.check_and_insert("same", i).await.unwrap());
            store.release("same").await.unwrap();
        }
        assert!(store.lock().order.len() <= 32);
    }
}
