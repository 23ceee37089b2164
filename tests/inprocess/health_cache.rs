//! The health cache on a virtual clock: TTLs, single flight, probe timeout, invalidation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use render_deploy::health::{HealthCache, HealthSettings, Lifecycle, ProbeFailure};
use tokio::time::{Instant, advance, sleep};

const TTL: Duration = Duration::from_secs(60);
const FAILURE_TTL: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const MS: Duration = Duration::from_millis(1);

fn settings() -> HealthSettings {
    HealthSettings {
        cache_ttl: TTL,
        failure_ttl: FAILURE_TTL,
        probe_timeout: PROBE_TIMEOUT,
        ..HealthSettings::default()
    }
}

/// A probe that counts its runs, takes `duration`, and answers whatever `healthy` says then.
struct Probe {
    runs: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
}

impl Probe {
    fn new(healthy: bool) -> Self {
        Self {
            runs: Arc::new(AtomicUsize::new(0)),
            healthy: Arc::new(AtomicBool::new(healthy)),
        }
    }

    fn cache(&self, duration: Duration) -> HealthCache<bool> {
        let runs = Arc::clone(&self.runs);
        let healthy = Arc::clone(&self.healthy);
        HealthCache::new(&settings(), move || {
            runs.fetch_add(1, Ordering::SeqCst);
            let healthy = Arc::clone(&healthy);
            async move {
                sleep(duration).await;
                healthy.load(Ordering::SeqCst)
            }
        })
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_healthy_result_is_served_from_cache_until_exactly_the_ttl_and_refreshed_after() {
    tokio::time::pause();
    let probe = Probe::new(true);
    let cache = probe.cache(Duration::ZERO);

    let first = cache.get().await;
    assert!(first.is_healthy() && !first.cached);
    assert_eq!(first.age, Duration::ZERO);
    assert_eq!(probe.runs(), 1);

    advance(TTL - MS).await;
    let cached = cache.get().await;
    assert!(cached.is_healthy() && cached.cached);
    assert_eq!(cached.age, TTL - MS);
    assert_eq!(cached.age_seconds(), 59);
    assert_eq!(cached.checked_at, first.checked_at);
    assert_eq!(probe.runs(), 1, "no probe while the result is fresh");

    advance(MS).await;
    let refreshed = cache.get().await;
    assert!(!refreshed.cached, "at exactly the TTL the result is stale");
    assert_eq!(refreshed.age, Duration::ZERO);
    assert_eq!(probe.runs(), 2);
}

#[tokio::test]
async fn the_ttl_counts_from_when_the_probe_finished() {
    tokio::time::pause();
    let probe = Probe::new(true);
    let cache = probe.cache(Duration::from_secs(1));

    cache.get().await;
    advance(TTL - MS).await;
    assert!(cache.get().await.cached);
    advance(MS).await;
    assert!(!cache.get().await.cached);
    assert_eq!(probe.runs(), 2);
}

#[tokio::test]
async fn an_unhealthy_result_is_served_from_cache_for_the_failure_ttl_only() {
    tokio::time::pause();
    let probe = Probe::new(false);
    let cache = probe.cache(Duration::ZERO);

    assert!(!cache.get().await.is_healthy());
    advance(FAILURE_TTL - MS).await;
    let cached = cache.get().await;
    assert!(cached.cached && !cached.is_healthy());
    assert_eq!(probe.runs(), 1);

    probe.set_healthy(true);
    advance(MS).await;
    let refreshed = cache.get().await;
    assert!(!refreshed.cached && refreshed.is_healthy());
    assert_eq!(probe.runs(), 2);

    // ... and the healthy result now gets the long TTL.
    advance(TTL - MS).await;
    assert!(cache.get().await.cached);
    assert_eq!(probe.runs(), 2);
}

async fn thousand_callers(cache: &HealthCache<bool>) -> Vec<render_deploy::health::Checked<bool>> {
    let callers: Vec<_> = (0..1000)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get().await })
        })
        .collect();
    let mut results = Vec::with_capacity(callers.len());
    for caller in callers {
        results.push(caller.await.expect("caller task"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_on_an_empty_cache_cause_exactly_one_probe() {
    let probe = Probe::new(true);
    let cache = probe.cache(Duration::from_millis(200));

    let results = thousand_callers(&cache).await;

    assert_eq!(probe.runs(), 1);
    assert!(results.iter().all(|r| r.is_healthy()));
    assert!(
        results
            .iter()
            .all(|r| r.checked_at == results[0].checked_at)
    );
}

#[tokio::test]
async fn a_thousand_concurrent_callers_on_an_expired_entry_cause_exactly_one_probe() {
    tokio::time::pause();
    let probe = Probe::new(true);
    let cache = probe.cache(Duration::from_millis(200));
    cache.get().await;
    advance(TTL).await;

    let results = thousand_callers(&cache).await;

    assert_eq!(
        probe.runs(),
        2,
        "one probe for the first call, one for the thousand"
    );
    assert!(results.iter().all(|r| r.is_healthy() && !r.cached));
    assert!(
        results
            .iter()
            .all(|r| r.checked_at == results[0].checked_at)
    );
    assert!(cache.get().await.cached);
    assert_eq!(probe.runs(), 2);
}

#[tokio::test]
async fn a_hanging_probe_becomes_an_unhealthy_result_at_the_probe_timeout() {
    tokio::time::pause();
    let runs = Arc::new(AtomicUsize::new(0));
    let cache = HealthCache::new(&settings(), {
        let runs = Arc::clone(&runs);
        move || {
            runs.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<bool>()
        }
    });

    let start = Instant::now();
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get().await })
        })
        .collect();
    for waiter in waiters {
        let checked = waiter.await.expect("waiter task");
        assert_eq!(checked.result, Err(ProbeFailure::TimedOut(PROBE_TIMEOUT)));
        assert!(!checked.is_healthy());
    }
    // Tokio's timers have a resolution of one millisecond and round up.
    let waited = start.elapsed();
    assert!(
        waited >= PROBE_TIMEOUT && waited <= PROBE_TIMEOUT + MS,
        "every caller answered at the timeout, not {waited:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // The timeout is an unhealthy result like any other: kept for the failure TTL.
    assert!(cache.get().await.cached);
    advance(FAILURE_TTL).await;
    assert!(!cache.get().await.cached);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_probe_that_panics_answers_its_waiters_with_an_unhealthy_result() {
    tokio::time::pause();
    let cache = HealthCache::new(&settings(), || async {
        sleep(MS).await;
        panic!("the check failed in an unexpected way")
    });
    let checked: render_deploy::health::Checked<bool> = cache.get().await;
    assert_eq!(checked.result, Err(ProbeFailure::Aborted));
}

#[tokio::test]
async fn a_caller_that_gives_up_does_not_cancel_the_probe_the_others_wait_for() {
    tokio::time::pause();
    let probe = Probe::new(true);
    let cache = probe.cache(Duration::from_secs(1));

    // The first caller starts the probe, then is dropped (a client that disconnected).
    let gave_up = tokio::time::timeout(Duration::from_millis(100), cache.get()).await;
    assert!(gave_up.is_err());

    // A second caller joins the same probe and gets its result.
    let waiter = cache.get().await;
    assert!(waiter.is_healthy() && !waiter.cached);
    assert_eq!(
        probe.runs(),
        1,
        "the probe kept running after its starter went away"
    );
    assert!(cache.get().await.cached);
}

#[tokio::test]
async fn invalidate_makes_the_next_call_probe_again() {
    tokio::time::pause();
    let probe = Probe::new(true);
    let cache = probe.cache(Duration::ZERO);
    cache.get().await;
    assert!(cache.get().await.cached);

    cache.invalidate();

    assert!(!cache.get().await.cached);
    assert_eq!(probe.runs(), 2);
}

#[tokio::test]
async fn a_pool_failure_reported_from_a_plain_thread_means_no_cached_healthy_is_served_again() {
    tokio::time::pause();
    let probe = Probe::new(true);
    let cache = probe.cache(Duration::ZERO);
    assert!(cache.get().await.is_healthy());

    // The pool's error callback is synchronous and may run on any thread.
    let on_pool_failure = cache.invalidator();
    probe.set_healthy(false);
    std::thread::spawn(move || on_pool_failure.invalidate())
        .join()
        .expect("callback thread");

    let after = cache.get().await;
    assert!(!after.cached && !after.is_healthy(), "a new probe ran");
    assert_eq!(probe.runs(), 2);
}

#[tokio::test]
async fn a_healthy_answer_from_a_probe_that_overlapped_a_failure_report_is_never_cached() {
    tokio::time::pause();
    let probe = Probe::new(true);
    let cache = probe.cache(Duration::from_secs(1));

    // A probe starts; half-way through, the pool reports a connection failure.
    let overlapping = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get().await }
    });
    sleep(Duration::from_millis(500)).await;
    assert_eq!(probe.runs(), 1);
    cache.invalidate();
    let overlapping = overlapping.await.expect("caller");
    assert!(
        overlapping.is_healthy() && !overlapping.cached,
        "its own caller gets it"
    );

    // Its healthy answer may predate the failure: the next caller must not be served it.
    probe.set_healthy(false);
    let next = cache.get().await;
    assert!(!next.cached && !next.is_healthy(), "a new probe ran");
    assert_eq!(probe.runs(), 2);
}

#[tokio::test]
async fn a_caller_after_a_failure_report_does_not_join_a_probe_that_started_before_it() {
    tokio::time::pause();
    let probe = Probe::new(true);
    let cache = probe.cache(Duration::from_secs(1));
    let before = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get().await }
    });
    sleep(Duration::from_millis(500)).await;
    cache.invalidate();

    let after = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get().await }
    });
    let before = before.await.expect("caller");
    let after = after.await.expect("caller");

    assert_eq!(
        probe.runs(),
        2,
        "the later caller started a probe of its own"
    );
    assert!(!after.cached);
    // The newer probe's answer is the one kept.
    let next = cache.get().await;
    assert!(next.cached);
    assert_eq!(next.checked_at, after.checked_at);
    assert_ne!(next.checked_at, before.checked_at);
}

#[tokio::test]
async fn an_unhealthy_answer_from_a_probe_that_reported_its_own_failure_is_still_cached() {
    tokio::time::pause();
    // A probe through the pool makes the pool report the failure, which invalidates the cache
    // while the probe runs; its answer must still be kept for the failure TTL, or every
    // request during an outage would probe again.
    let runs = Arc::new(AtomicUsize::new(0));
    let slot: Arc<std::sync::OnceLock<render_deploy::health::Invalidator>> = Arc::default();
    let cache = HealthCache::new(&settings(), {
        let runs = Arc::clone(&runs);
        let slot = Arc::clone(&slot);
        move || {
            runs.fetch_add(1, Ordering::SeqCst);
            let slot = Arc::clone(&slot);
            async move {
                if let Some(pool_failure) = slot.get() {
                    pool_failure.invalidate();
                }
                false
            }
        }
    });
    let _ = slot.set(cache.invalidator());

    assert!(!cache.get().await.is_healthy());
    advance(FAILURE_TTL - MS).await;
    assert!(cache.get().await.cached);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn draining_invalidates_every_registered_cache() {
    tokio::time::pause();
    let probe = Probe::new(true);
    let cache = probe.cache(Duration::ZERO);
    let lifecycle = Lifecycle::new();
    lifecycle.invalidate_on_drain(cache.invalidator());
    cache.get().await;
    assert!(cache.get().await.cached);

    lifecycle.start_draining();

    assert!(lifecycle.is_draining());
    assert!(!cache.get().await.cached);
    assert_eq!(probe.runs(), 2);
    // Awaiting the drain after it began resolves at once.
    lifecycle.draining_started().await;
}

#[tokio::test]
async fn last_keeps_the_most_recent_result_through_an_invalidation() {
    tokio::time::pause();
    let probe = Probe::new(true);
    let cache = probe.cache(Duration::ZERO);
    assert!(cache.last().is_none());
    let first = cache.get().await;
    cache.invalidate();
    advance(Duration::from_secs(3)).await;

    let last = cache.last().expect("a result");
    assert_eq!(last.checked_at, first.checked_at);
    assert!(last.cached);
    assert_eq!(last.age_seconds(), 3);
    assert_eq!(probe.runs(), 1, "last() never probes");
}

#[test]
fn the_cache_counts_hits_misses_and_refreshes() {
    use render_deploy::health::cache::{HITS_TOTAL, MISSES_TOTAL, REFRESHES_TOTAL};
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let probe = Probe::new(true);

    // The recorder is thread-local: the runtime runs every task on this thread.
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let cache = probe.cache(Duration::ZERO);
            cache.get().await; // miss, refresh
            cache.get().await; // hit
            cache.get().await; // hit
            cache.invalidate();
            cache.get().await; // miss, refresh
        })
    });

    let text = handle.render();
    for (name, value) in [(HITS_TOTAL, 2), (MISSES_TOTAL, 2), (REFRESHES_TOTAL, 2)] {
        assert!(
            text.lines().any(|line| line == format!("{name} {value}")),
            "{name} {value} not in:\n{text}"
        );
    }
}

#[test]
fn every_thread_answers_the_stored_result_after_a_change_made_on_another() {
    // Hits are answered from a copy per thread: a refresh or an invalidation on one thread must
    // reach the copies of the others. Two threads, each with a runtime of its own (real clock:
    // the TTL is a minute, nothing here waits for it).
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let probe = Probe::new(true);
    let cache = probe.cache(Duration::ZERO);
    let main = runtime();
    let first = main.block_on(cache.get());
    let kept = main.block_on(cache.get());
    assert!(first.is_healthy() && !first.cached && kept.cached);
    assert_eq!(kept.checked_at, first.checked_at);

    let other = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = runtime();
                let hit = rt.block_on(cache.get());
                assert!(
                    hit.cached && hit.is_healthy(),
                    "the other thread's own copy"
                );
                assert_eq!(hit.checked_at, first.checked_at);
                probe.set_healthy(false);
                cache.invalidate();
                rt.block_on(cache.get())
            })
            .join()
            .expect("the other thread")
    });
    assert!(!other.cached && !other.is_healthy());
    assert_eq!(probe.runs(), 2);

    // This thread's copy is of the first result; the stored one is now the other thread's.
    let after = main.block_on(cache.get());
    assert!(after.cached && !after.is_healthy(), "{after:?}");
    assert_eq!(after.checked_at, other.checked_at);
    assert_eq!(probe.runs(), 2, "answered from the store, not probed again");

    // And an invalidation made here reaches this thread's next answer.
    probe.set_healthy(true);
    cache.invalidate();
    let fresh = main.block_on(cache.get());
    assert!(!fresh.cached && fresh.is_healthy());
    assert_eq!(probe.runs(), 3);
}
