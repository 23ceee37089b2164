//! The per-request HTTP metrics, counted per thread and added up when `/metrics` is scraped.
//!
//! Through the `metrics` facade every request wrote to memory that both worker threads write:
//! the in-flight gauge twice (a compare-and-swap loop on an `f64`, and the recorder's
//! generation counter beside it), the request counter and its generation, the latency
//! histogram (an epoch pin and a push onto a shared list of samples, later folded into
//! buckets), and the read lock of the handles' map. Each such write takes the cache line from
//! the other core. Here each thread counts into a shard of its own (a cache line apart from the
//! others, behind a lock no other thread normally takes), latencies go straight into fixed
//! buckets, and a scrape adds the shards up. Measured side by side with the facade's version
//! (interleaved runs, CPU per request against the hand-written peer's, 9 rounds): `/livez`
//! 0.81 → 0.84, cached `/health` 0.68 → 0.75. The output is the text the Prometheus exporter
//! wrote for the same three metrics: names, labels and buckets are unchanged.
//!
//! These three metrics are rendered by `/metrics` from here rather than recorded through the
//! `metrics` facade, so a host application's own recorder does not see them.
//! Cardinality stays bounded as before: routes are templates (`/hooks/deploy`, never a raw
//! path) or `unmatched`, and statuses are three-digit codes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use metrics_exporter_prometheus::formatting::{sanitize_label_value, write_type_line};

use crate::per_thread;
use crate::telemetry::LATENCY_BUCKETS;

/// `render_deploy_http_requests_total{route, status}`.
const REQUESTS: &str = "render_deploy_http_requests_total";
/// `render_deploy_http_request_duration_seconds{route}`.
const DURATION: &str = "render_deploy_http_request_duration_seconds";
/// `render_deploy_http_requests_in_flight`: requests being handled now (headers read, answer
/// not yet sent). A test can watch it to know a request is in flight before it signals the
/// process.
const IN_FLIGHT: &str = "render_deploy_http_requests_in_flight";

/// Shards per service: one per [`per_thread::slot`] (threads beyond that share, and still
/// count correctly).
const SHARDS: usize = per_thread::SLOTS;

/// One thread's counts, on cache lines of its own.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    /// Requests this thread let in minus those it answered (a request may be answered on
    /// another thread than the one it came in on, so one shard can go below zero; the sum
    /// cannot).
    in_flight: AtomicI64,
    routes: Mutex<Vec<RouteCounts>>,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Vec<RouteCounts>> {
        // Counting cannot panic half-way through an update that matters (integer additions),
        // so the counts of a poisoned lock are still good.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One route's counts on one shard.
#[derive(Clone)]
struct RouteCounts {
    route: Box<str>,
    by_status: Vec<(u16, u64)>,
    /// Requests per latency bucket, not cumulative: `buckets[i]` counts latencies in
    /// `(LATENCY_BUCKETS[i - 1], LATENCY_BUCKETS[i]]`, the last one those above every bound.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    seconds: f64,
}

impl RouteCounts {
    fn new(route: &str) -> Self {
        Self {
            route: route.into(),
            by_status: Vec::new(),
            buckets: [0; LATENCY_BUCKETS.len() + 1],
            seconds: 0.0,
        }
    }

    fn count(&mut self, status: u16, seconds: f64) {
        self.add_status(status, 1);
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket] += 1;
        self.seconds += seconds;
    }

    fn add(&mut self, other: &RouteCounts) {
        for &(status, n) in &other.by_status {
            self.add_status(status, n);
        }
        for (total, n) in self.buckets.iter_mut().zip(other.buckets) {
            *total += n;
        }
        self.seconds += other.seconds;
    }

    fn add_status(&mut self, status: u16, n: u64) {
        match self.by_status.iter_mut().find(|(s, _)| *s == status) {
            Some((_, total)) => *total += n,
            None => self.by_status.push((status, n)),
        }
    }
}

/// One request counted in [`IN_FLIGHT`]; counted out when dropped, so a timeout or a panic is.
///
/// It holds the reference to whatever owns the metrics (the middleware's state), which the
/// request keeps anyway: a reference of the guard's own would be one more count that both
/// worker threads write on every request.
pub(crate) struct InFlight<S: AsRef<RequestMetrics>>(Arc<S>);

impl<S: AsRef<RequestMetrics>> InFlight<S> {
    /// Counts a request in flight, on `owner`'s metrics, until the guard is dropped.
    pub(crate) fn enter(owner: Arc<S>) -> Self {
        AsRef::<RequestMetrics>::as_ref(&*owner).shards[per_thread::slot()]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        Self(owner)
    }

    /// What owns the metrics.
    pub(crate) fn owner(&self) -> &S {
        &self.0
    }
}

impl<S: AsRef<RequestMetrics>> Drop for InFlight<S> {
    fn drop(&mut self) {
        AsRef::<RequestMetrics>::as_ref(&*self.0).shards[per_thread::slot()]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts requests by route and status and records their latency; cheap to clone (the clones
/// count together).
#[derive(Clone)]
pub(crate) struct RequestMetrics {
    shards: Arc<[Shard]>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMetrics").finish_non_exhaustive()
    }
}

impl RequestMetrics {
    /// Records one request answered with `status` on `route` after `latency`.
    pub(crate) fn record(&self, route: &str, status: u16, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let mut routes = self.shards[per_thread::slot()].lock();
        match routes.iter_mut().find(|r| *r.route == *route) {
            Some(counts) => counts.count(status, seconds),
            None => {
                let mut counts = RouteCounts::new(route);
                counts.count(status, seconds);
                routes.push(counts);
            }
        }
    }

    /// Appends the three metrics to `out` in Prometheus text format, as the exporter writes
    /// a counter, a gauge and a histogram (routes in order, statuses in order).
    pub(crate) fn render(&self, out: &mut String) {
        let mut in_flight = 0;
        let mut by_route: BTreeMap<Box<str>, RouteCounts> = BTreeMap::new();
        for shard in self.shards.iter() {
            in_flight += shard.in_flight.load(Ordering::Relaxed);
            for counts in shard.lock().iter() {
                match by_route.get_mut(&counts.route) {
                    Some(total) => total.add(counts),
                    None => {
                        by_route.insert(counts.route.clone(), counts.clone());
                    }
                }
            }
        }
        // A request counted in on one shard may be counted out on another between two loads.
        let in_flight = in_flight.max(0);

        // `write!` into a `String` cannot fail.
        if !by_route.is_empty() {
            write_type_line(out, REQUESTS, None, None, "counter");
            for (route, counts) in &by_route {
                let route = sanitize_label_value(route);
                let mut by_status = counts.by_status.clone();
                by_status.sort_unstable();
                for (status, n) in by_status {
                    let _ = writeln!(
                        out,
                        "{REQUESTS}{{route=\"{route}\",status=\"{status}\"}} {n}"
                    );
                }
            }
            out.push('\n');
        }

        write_type_line(out, IN_FLIGHT, None, None, "gauge");
        let _ = writeln!(out, "{IN_FLIGHT} {in_flight}\n");

        if !by_route.is_empty() {
            write_type_line(out, DURATION, None, None, "histogram");
            for (route, counts) in &by_route {
                let route = sanitize_label_value(route);
                let mut cumulative = 0;
                for (bound, n) in LATENCY_BUCKETS.iter().zip(counts.buckets) {
                    cumulative += n;
                    let _ = writeln!(
                        out,
                        "{DURATION}_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                    );
                }
                let total: u64 = counts.buckets.iter().sum();
                let _ = writeln!(
                    out,
                    "{DURATION}_bucket{{route=\"{route}\",le=\"+Inf\"}} {total}"
                );
                let _ = writeln!(
                    out,
                    "{DURATION}_sum{{route=\"{route}\"}} {}",
                    counts.seconds
                );
                let _ = writeln!(out, "{DURATION}_count{{route=\"{route}\"}} {total}");
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The tests count on the metrics alone, without a middleware state around them.
    impl AsRef<RequestMetrics> for RequestMetrics {
        fn as_ref(&self) -> &RequestMetrics {
            self
        }
    }

    fn rendered(metrics: &RequestMetrics) -> String {
        let mut out = String::new();
        metrics.render(&mut out);
        out
    }

    #[test]
    fn counts_from_many_threads_add_up_in_the_exporters_text_format() {
        let metrics = RequestMetrics::default();
        // More threads than shards, so that some share one.
        std::thread::scope(|s| {
            for t in 0..(SHARDS + 4) {
                let metrics = Arc::new(metrics.clone());
                s.spawn(move || {
                    for _ in 0..100 {
                        let guard = InFlight::enter(Arc::clone(&metrics));
                        metrics.record("/livez", 200, Duration::from_micros(500));
                        drop(guard);
                    }
                    if t == 0 {
                        metrics.record("/hooks/deploy", 401, Duration::from_millis(30));
                        metrics.record("/hooks/deploy", 202, Duration::from_secs(11));
                    }
                });
            }
        });
        let text = rendered(&metrics);
        let n = (SHARDS + 4) * 100;
        let expected = format!(
            "# TYPE render_deploy_http_requests_total counter\n\
             render_deploy_http_requests_total{{route=\"/hooks/deploy\",status=\"202\"}} 1\n\
             render_deploy_http_requests_total{{route=\"/hooks/deploy\",status=\"401\"}} 1\n\
             render_deploy_http_requests_total{{route=\"/livez\",status=\"200\"}} {n}\n\
             \n\
             # TYPE render_deploy_http_requests_in_flight gauge\n\
             render_deploy_http_requests_in_flight 0\n\
             \n\
             # TYPE render_deploy_http_request_duration_seconds histogram\n"
        );
        assert!(text.starts_with(&expected), "{text}");
        // 30 ms falls in (0.025, 0.05]; 11 s above every bound; 500 µs in the first bucket.
        for line in [
            "render_deploy_http_request_duration_seconds_bucket{route=\"/hooks/deploy\",le=\"0.025\"} 0\n",
            "render_deploy_http_request_duration_seconds_bucket{route=\"/hooks/deploy\",le=\"0.05\"} 1\n",
            "render_deploy_http_request_duration_seconds_bucket{route=\"/hooks/deploy\",le=\"10\"} 1\n",
            "render_deploy_http_request_duration_seconds_bucket{route=\"/hooks/deploy\",le=\"+Inf\"} 2\n",
            "render_deploy_http_request_duration_seconds_sum{route=\"/hooks/deploy\"} 11.03\n",
            "render_deploy_http_request_duration_seconds_count{route=\"/hooks/deploy\"} 2\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let first = format!(
            "render_deploy_http_request_duration_seconds_bucket{{route=\"/livez\",le=\"0.001\"}} {n}\n"
        );
        assert!(text.contains(&first), "{text}");
        assert!(text.ends_with(&format!(
            "render_deploy_http_request_duration_seconds_count{{route=\"/livez\"}} {n}\n\n"
        )));
    }

    #[test]
    fn a_request_let_in_on_one_thread_and_answered_on_another_is_counted_out() {
        let metrics = Arc::new(RequestMetrics::default());
        let guard = std::thread::scope(|s| {
            s.spawn(|| InFlight::enter(Arc::clone(&metrics)))
                .join()
                .unwrap()
        });
        assert!(rendered(&metrics).contains("render_deploy_http_requests_in_flight 1\n"));
        drop(guard);
        assert_eq!(
            rendered(&metrics),
            "# TYPE render_deploy_http_requests_in_flight gauge\n\
             render_deploy_http_requests_in_flight 0\n\n"
        );
    }

    #[test]
    fn a_route_label_is_escaped() {
        let metrics = RequestMetrics::default();
        metrics.record("/a\"b\\c", 200, Duration::ZERO);
        assert!(
            rendered(&metrics).contains("route=\"/a\\\"b\\\\c\",status=\"200\"} 1\n"),
            "{}",
            rendered(&metrics)
        );
    }
}
