//! The per-request HTTP metrics, with their handles kept per route and status.
//!
//! `metrics::counter!(name, "route" => …, "status" => …)` builds a key on every call: the label
//! values are allocated, the key hashed and looked up in the recorder's registry. Per request
//! that was a measurable share of a no-I/O route. The handles a key resolves to never change
//! (the recorder is installed once per process), so they are looked up once per route and
//! status and kept here; a request then costs a read lock, a map lookup and two atomic updates.
//! Cardinality stays bounded as before: routes are templates (`/hooks/deploy`, never a raw
//! path) or `unmatched`, and statuses are three-digit codes.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

/// `render_deploy_http_requests_total{route, status}`.
const REQUESTS: &str = "render_deploy_http_requests_total";
/// `render_deploy_http_request_duration_seconds{route}`.
const DURATION: &str = "render_deploy_http_request_duration_seconds";
/// `render_deploy_http_requests_in_flight`: requests being handled now (headers read, answer
/// not yet sent). A test can watch it to know a request is in flight before it signals the
/// process.
const IN_FLIGHT: &str = "render_deploy_http_requests_in_flight";

/// One request counted in [`IN_FLIGHT`]; counted out when dropped, so a timeout or a panic is.
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The handles of one route: its latency histogram and a counter per status seen.
struct RouteHandles {
    duration: Histogram,
    by_status: Vec<(u16, Counter)>,
}

/// Counts requests by route and status and records their latency.
#[derive(Clone, Default)]
pub(crate) struct RequestMetrics {
    routes: Arc<RwLock<HashMap<Box<str>, RouteHandles>>>,
    in_flight: Arc<OnceLock<Gauge>>,
}

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMetrics").finish_non_exhaustive()
    }
}

impl RequestMetrics {
    /// Counts a request in flight until the returned guard is dropped.
    pub(crate) fn enter(&self) -> InFlight {
        let gauge = self
            .in_flight
            .get_or_init(|| metrics::gauge!(IN_FLIGHT))
            .clone();
        gauge.increment(1.0);
        InFlight(gauge)
    }

    /// Records one request answered with `status` on `route` after `latency`.
    pub(crate) fn record(&self, route: &str, status: u16, latency: Duration) {
        let seconds = latency.as_secs_f64();
        {
            let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
            if let Some(handles) = routes.get(route)
                && let Some((_, counter)) = handles.by_status.iter().find(|(s, _)| *s == status)
            {
                counter.increment(1);
                handles.duration.record(seconds);
                return;
            }
        }
        // First request of this route or status: register it (once; a racing request finds it).
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let handles = routes.entry(route.into()).or_insert_with(|| RouteHandles {
            duration: metrics::histogram!(DURATION, "route" => route.to_owned()),
            by_status: Vec::new(),
        });
        let counter = match handles.by_status.iter().find(|(s, _)| *s == status) {
            Some((_, counter)) => counter.clone(),
            None => {
                let counter = metrics::counter!(
                    REQUESTS,
                    "route" => route.to_owned(),
                    "status" => status.to_string()
                );
                handles.by_status.push((status, counter.clone()));
                counter
            }
        };
        counter.increment(1);
        handles.duration.record(seconds);
    }
}
