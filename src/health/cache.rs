//! The health cache: one probe at a time, results kept for a TTL, forgotten on invalidation.
//!
//! Render probes `healthCheckPath` every few seconds on every instance, and so may a load
//! balancer, an uptime monitor and a dashboard. Without a cache each of them costs a database
//! round trip; with a naive cache, the moment an entry expires every waiting request starts its
//! own probe (a stampede). [`HealthCache`] serves a stored result while it is fresh and, when it
//! is not, lets exactly one caller start a probe that every other caller then waits for.
//!
//! The probe runs in its own task: a caller that gives up (a client disconnect drops the request
//! future) neither cancels the probe nor leaves the others waiting on a result that never comes.
//! The probe is bounded by `probe_timeout`, so a hanging dependency becomes an unhealthy result,
//! never a hung request.
//!
//! A fresh result is answered from a copy of it kept per thread (`crate::per_thread`),
//! checked against a generation number that every change of the stored result bumps: a hit
//! reads that number and writes only its own thread's memory, where through the shared lock
//! every hit took the lock's cache line, and the stored text's reference count, from the other
//! worker.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::Instant;

use super::HealthSettings;
use crate::per_thread;

/// Counter: calls answered from a fresh stored result.
pub const HITS_TOTAL: &str = "render_deploy_health_cache_hits_total";
/// Counter: calls that had to wait for a probe (the one that started it and those that joined it).
pub const MISSES_TOTAL: &str = "render_deploy_health_cache_misses_total";
/// Counter: probes started.
pub const REFRESHES_TOTAL: &str = "render_deploy_health_cache_refreshes_total";

/// Whether a check's result means "healthy"; it decides which TTL the result is kept for.
pub trait Healthy {
    /// `true` when the result should be kept for `cache_ttl`, `false` for `failure_ttl`.
    fn is_healthy(&self) -> bool;
}

impl Healthy for bool {
    fn is_healthy(&self) -> bool {
        *self
    }
}

impl<T, E> Healthy for Result<T, E> {
    fn is_healthy(&self) -> bool {
        self.is_ok()
    }
}

/// Why a probe produced no result of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeFailure {
    /// The probe did not finish within `probe_timeout`; it was cancelled.
    #[error("the health probe did not finish within {0:?}")]
    TimedOut(Duration),
    /// The probe panicked, or its task was cancelled (the runtime is shutting down).
    #[error("the health probe stopped without a result")]
    Aborted,
}

/// One answer of a [`HealthCache`]: the probe's result and how old it is.
#[derive(Debug, Clone)]
pub struct Checked<T> {
    /// The probe's result, or why there is none (a failure is always unhealthy).
    pub result: Result<T, ProbeFailure>,
    /// `true` when served from the cache, `false` when this call waited for a probe.
    pub cached: bool,
    /// Time since the probe finished.
    pub age: Duration,
    /// Wall-clock time at which the probe finished.
    pub checked_at: OffsetDateTime,
    // `checked_at` in RFC 3339, formatted once per probe rather than once per answer.
    checked_at_text: Arc<str>,
}

impl<T: Healthy> Checked<T> {
    /// Whether the probe finished and its result is healthy.
    pub fn is_healthy(&self) -> bool {
        self.result.as_ref().is_ok_and(Healthy::is_healthy)
    }
}

impl<T> Checked<T> {
    /// [`age`](Self::age) in whole seconds, as reported in `age_seconds`.
    pub fn age_seconds(&self) -> u64 {
        self.age.as_secs()
    }

    /// [`checked_at`](Self::checked_at) in RFC 3339, as reported in `checked_at`.
    pub(crate) fn checked_at_rfc3339(&self) -> &Arc<str> {
        &self.checked_at_text
    }
}

/// Formats a time in RFC 3339 (UTC, `Z`).
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    // Formatting a UTC time in RFC 3339 only fails for years outside 0..=9999.
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

type BoxedCheck<T> = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = T> + Send>> + Send + Sync>;

/// A cached, single-flight health probe (see the [module documentation](self)).
///
/// Cloning is cheap and every clone shares the same cache.
pub struct HealthCache<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for HealthCache<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> std::fmt::Debug for HealthCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthCache")
            .field("cache_ttl", &self.inner.cache_ttl)
            .field("failure_ttl", &self.inner.failure_ttl)
            .field("probe_timeout", &self.inner.probe_timeout)
            .finish_non_exhaustive()
    }
}

struct Inner<T> {
    cache_ttl: Duration,
    failure_ttl: Duration,
    probe_timeout: Duration,
    check: BoxedCheck<T>,
    state: Mutex<State<T>>,
    /// Bumped, under the state's lock, whenever `State::entry` changes: a thread's copy made
    /// under generation `g` is the stored entry for as long as this still reads `g`.
    generation: AtomicU64,
    /// Per-thread copies of the stored entry (one per [`per_thread::slot`]).
    copies: Box<[ThreadCopy<T>]>,
}

/// One thread's copy of the stored entry, on cache lines of its own.
#[repr(align(128))]
struct ThreadCopy<T>(Mutex<Option<Copied<T>>>);

struct Copied<T> {
    generation: u64,
    /// With a text of its own, so that answering from it counts no shared reference.
    entry: Entry<T>,
    /// The hit counter, looked up once per copy rather than by name on every hit.
    hits: metrics::Counter,
}

struct State<T> {
    /// The result served while fresh; `None` after an invalidation.
    entry: Option<Entry<T>>,
    /// The most recent result, kept through invalidations (for [`HealthCache::last`]).
    last: Option<Entry<T>>,
    /// The probe running now, if any.
    flight: Option<Flight<T>>,
    /// Bumped by every invalidation; a probe started in an older epoch is not joined by later
    /// callers and its healthy result is not stored.
    epoch: u64,
    /// Id of the next probe; ids grow with start time, so an older probe that finishes late
    /// never replaces a newer result.
    next_id: u64,
}

#[derive(Clone)]
struct Entry<T> {
    id: u64,
    result: Result<T, ProbeFailure>,
    healthy: bool,
    at: Instant,
    wall: OffsetDateTime,
    wall_text: Arc<str>,
}

struct Flight<T> {
    id: u64,
    epoch: u64,
    rx: watch::Receiver<Option<Entry<T>>>,
}

impl<T> Entry<T> {
    fn checked(&self, cached: bool, now: Instant) -> Checked<T>
    where
        T: Clone,
    {
        Checked {
            result: self.result.clone(),
            cached,
            age: now.saturating_duration_since(self.at),
            checked_at: self.wall,
            checked_at_text: Arc::clone(&self.wall_text),
        }
    }
}

impl<T> HealthCache<T>
where
    T: Healthy + Clone + Send + Sync + 'static,
{
    /// A cache over `check`, with the TTLs and timeout of `settings`. Nothing runs until the
    /// first [`get`](Self::get).
    pub fn new<F, Fut>(settings: &HealthSettings, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let check: BoxedCheck<T> = Arc::new(move || Box::pin(check()));
        Self {
            inner: Arc::new(Inner {
                cache_ttl: settings.cache_ttl,
                failure_ttl: settings.failure_ttl,
                probe_timeout: settings.probe_timeout,
                check,
                state: Mutex::new(State {
                    entry: None,
                    last: None,
                    flight: None,
                    epoch: 0,
                    next_id: 0,
                }),
                generation: AtomicU64::new(0),
                copies: (0..per_thread::SLOTS)
                    .map(|_| ThreadCopy(Mutex::new(None)))
                    .collect(),
            }),
        }
    }

    /// The current result: the stored one while it is fresh, otherwise the result of a probe
    /// (started now, or already running for another caller).
    ///
    /// A healthy result is fresh for `cache_ttl`, an unhealthy one for `failure_ttl`, both
    /// counted from the moment the probe finished. Must be called within a Tokio runtime.
    pub async fn get(&self) -> Checked<T> {
        if let Some(hit) = self.inner.hit_from_copy() {
            return hit;
        }
        let (id, mut rx) = {
            let mut state = self.inner.lock();
            let now = Instant::now();
            if let Some(entry) = &state.entry
                && self.inner.is_fresh(entry, now)
            {
                let hits = metrics::counter!(HITS_TOTAL);
                hits.increment(1);
                let checked = entry.checked(true, now);
                self.inner.keep_copy(entry, hits);
                return checked;
            }
            metrics::counter!(MISSES_TOTAL).increment(1);
            let joinable = state.flight.as_ref().filter(|f| {
                // A probe from before the last invalidation must not answer for after it; a
                // probe whose task is gone (runtime shutting down) will never answer.
                f.epoch == state.epoch && f.rx.has_changed().is_ok()
            });
            match joinable {
                Some(flight) => (flight.id, flight.rx.clone()),
                None => self.start_probe(&mut state),
            }
        };
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|v| v.clone());
        let now = Instant::now();
        match outcome {
            Some(entry) => entry.checked(false, now),
            None => {
                // The probe's task ended without sending: only when the runtime drops it.
                let mut state = self.inner.lock();
                if state.flight.as_ref().is_some_and(|f| f.id == id) {
                    state.flight = None;
                }
                let now = OffsetDateTime::now_utc();
                Checked {
                    result: Err(ProbeFailure::Aborted),
                    cached: false,
                    age: Duration::ZERO,
                    checked_at: now,
                    checked_at_text: rfc3339(now).into(),
                }
            }
        }
    }

    /// The most recent result even when it is stale or was invalidated (`cached: true`), without
    /// probing; `None` before the first probe finished.
    pub fn last(&self) -> Option<Checked<T>> {
        let state = self.inner.lock();
        state.last.as_ref().map(|e| e.checked(true, Instant::now()))
    }

    fn start_probe(&self, state: &mut State<T>) -> (u64, watch::Receiver<Option<Entry<T>>>) {
        let id = state.next_id;
        state.next_id += 1;
        let epoch = state.epoch;
        let (tx, rx) = watch::channel(None);
        state.flight = Some(Flight {
            id,
            epoch,
            rx: rx.clone(),
        });
        metrics::counter!(REFRESHES_TOTAL).increment(1);
        let inner = Arc::clone(&self.inner);
        // Spawned so that the caller who started it may be dropped without cancelling it.
        tokio::spawn(async move {
            // A task of its own, so that a panicking check becomes a result instead of
            // leaving the waiters without one.
            let mut task = tokio::spawn((inner.check)());
            let result = match tokio::time::timeout(inner.probe_timeout, &mut task).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(_)) => Err(ProbeFailure::Aborted),
                Err(_) => {
                    task.abort();
                    Err(ProbeFailure::TimedOut(inner.probe_timeout))
                }
            };
            let healthy = result.as_ref().is_ok_and(Healthy::is_healthy);
            let wall = OffsetDateTime::now_utc();
            let entry = Entry {
                id,
                result,
                healthy,
                at: Instant::now(),
                wall,
                wall_text: rfc3339(wall).into(),
            };
            inner.finish(entry.clone(), epoch);
            // Nobody listening is fine: every caller may have gone away.
            let _ = tx.send(Some(entry));
        });
        (id, rx)
    }

    /// Forgets the stored result, so that the next [`get`](HealthCache::get) probes; a probe
    /// already running is not joined by later callers and its result is stored only if
    /// unhealthy. Cheap and synchronous: safe to call from a pool's error callback.
    pub fn invalidate(&self) {
        self.inner.invalidate();
    }

    /// A handle that invalidates this cache, to give to whoever learns that it is stale (the
    /// pool on a connection failure, the deploy webhook, the shutdown sequence).
    pub fn invalidator(&self) -> Invalidator {
        let inner: Arc<dyn Invalidate> = self.inner.clone();
        Invalidator(inner)
    }
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.state)
    }

    fn ttl(&self, healthy: bool) -> Duration {
        if healthy {
            self.cache_ttl
        } else {
            self.failure_ttl
        }
    }

    fn is_fresh(&self, entry: &Entry<T>, now: Instant) -> bool {
        now.saturating_duration_since(entry.at) < self.ttl(entry.healthy)
    }

    /// A hit answered from this thread's copy, when the copy is of the stored entry and fresh.
    fn hit_from_copy(&self) -> Option<Checked<T>>
    where
        T: Clone,
    {
        // Acquire: pairs with the bump's release, so a copy of this generation is of the entry
        // stored when it was made (and an invalidation that happened before this call is seen).
        let generation = self.generation.load(Ordering::Acquire);
        let copy = lock(&self.copies[per_thread::slot()].0);
        let copied = copy.as_ref().filter(|c| c.generation == generation)?;
        let now = Instant::now();
        if !self.is_fresh(&copied.entry, now) {
            return None;
        }
        copied.hits.increment(1);
        Some(copied.entry.checked(true, now))
    }

    /// Copies the stored `entry` for this thread; called under the state's lock.
    fn keep_copy(&self, entry: &Entry<T>, hits: metrics::Counter)
    where
        T: Clone,
    {
        let copied = Copied {
            generation: self.generation.load(Ordering::Relaxed),
            entry: Entry {
                wall_text: Arc::from(&*entry.wall_text),
                ..entry.clone()
            },
            hits,
        };
        *lock(&self.copies[per_thread::slot()].0) = Some(copied);
    }

    /// Marks a change of `State::entry` (under the state's lock): every thread's copy is stale.
    fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn finish(&self, entry: Entry<T>, epoch: u64)
    where
        T: Clone,
    {
        let mut state = self.lock();
        if state.flight.as_ref().is_some_and(|f| f.id == entry.id) {
            state.flight = None;
        }
        // A healthy answer from a probe that started before an invalidation is exactly what
        // the invalidation was meant to forget (it may predate a connection failure); an
        // unhealthy one is still true, and storing it keeps `failure_ttl` meaningful when our
        // own failing probe made the pool report the failure.
        let still_valid = epoch == state.epoch || !entry.healthy;
        let newer = |slot: &Option<Entry<T>>| slot.as_ref().is_none_or(|e| e.id < entry.id);
        if still_valid && newer(&state.entry) {
            state.entry = Some(entry.clone());
            self.bump_generation();
        }
        if newer(&state.last) {
            state.last = Some(entry);
        }
    }
}

fn lock<S>(mutex: &Mutex<S>) -> MutexGuard<'_, S> {
    // No code panics while holding these locks; should one ever, what they guard is still
    // coherent (each is replaced or changed whole).
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

trait Invalidate: Send + Sync {
    fn invalidate(&self);
}

impl<T: Send + Sync + 'static> Invalidate for Inner<T> {
    fn invalidate(&self) {
        let mut state = self.lock();
        state.entry = None;
        state.epoch += 1;
        self.bump_generation();
    }
}

/// A cheap, cloneable handle that invalidates one [`HealthCache`]; see
/// [`HealthCache::invalidate`].
#[derive(Clone)]
pub struct Invalidator(Arc<dyn Invalidate>);

impl Invalidator {
    /// Forgets the cache's stored result (see [`HealthCache::invalidate`]).
    pub fn invalidate(&self) {
        tracing::debug!("health cache invalidated");
        self.0.invalidate();
    }
}

impl std::fmt::Debug for Invalidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Invalidator")
    }
}

/// A user's own health check, cached: the Rust form of the original `cache_health_check`.
///
/// Whatever `check` returns is kept for `cache_ttl` when [`Healthy`] (`Ok`, `true`, …) and for
/// `failure_ttl` otherwise; concurrent callers share one run; a run longer than
/// `probe_timeout` is cancelled and reported as [`ProbeFailure::TimedOut`].
///
/// ```
/// use render_deploy::health::{CachedCheck, HealthSettings};
///
/// #[derive(Debug, Clone, PartialEq, thiserror::Error)]
/// #[error("the queue is not reachable")]
/// struct QueueDown;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let health = CachedCheck::new(&HealthSettings::default(), || async {
///     // e.g. ask a queue or a cache whether it answers
///     Ok::<_, QueueDown>("queue reachable")
/// });
///
/// let first = health.check().await; // runs the check
/// let second = health.check().await; // served from cache for the next 60 s
/// assert!(!first.cached && second.cached);
/// assert_eq!(second.result.unwrap(), Ok("queue reachable"));
///
/// health.invalidate(); // e.g. after a deploy: the next call runs the check again
/// assert!(!health.check().await.cached);
/// # }
/// ```
pub struct CachedCheck<R> {
    cache: HealthCache<R>,
}

impl<R> Clone for CachedCheck<R> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
        }
    }
}

impl<R> std::fmt::Debug for CachedCheck<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CachedCheck").field(&self.cache).finish()
    }
}

impl<R> CachedCheck<R>
where
    R: Healthy + Clone + Send + Sync + 'static,
{
    /// Caches `check` with the TTLs and timeout of `settings`.
    pub fn new<F, Fut>(settings: &HealthSettings, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
    {
        Self {
            cache: HealthCache::new(settings, check),
        }
    }

    /// The check's result, from cache while fresh (see [`HealthCache::get`]).
    pub async fn check(&self) -> Checked<R> {
        self.cache.get().await
    }

    /// Forgets the cached result (see [`HealthCache::invalidate`]).
    pub fn invalidate(&self) {
        self.cache.invalidate();
    }

    /// A handle that invalidates this check's cache.
    pub fn invalidator(&self) -> Invalidator {
        self.cache.invalidator()
    }

    /// The underlying cache.
    pub fn cache(&self) -> &HealthCache<R> {
        &self.cache
    }
}
