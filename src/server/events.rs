//! `GET /events`: this instance's state as a server-sent event stream that ends cleanly when
//! the instance starts draining (contract §4).
//!
//! The stream sends an event `state` with `{"instance", "status"}` at once and whenever the
//! status of `/health` changes, and a comment line every [`KEEP_ALIVE`] so that proxies do not
//! close it as idle. When draining begins it sends `event: draining` with `retry: 1000` and
//! ends: the chunked body terminates properly, the client knows the end was meant, and an
//! `EventSource` reconnects a second later (on Render, to the new instance). Without this the
//! stream would hold the drain open until `SHUTDOWN_TIMEOUT` and then be cut.
//!
//! The status is read through the health cache every [`STATE_POLL`]: answers come from the
//! cache while it is fresh, so open streams cost no database round trips beyond those the
//! cache makes anyway (one per TTL, single flight, whatever the number of streams).

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::Stream;

use super::shutdown::Shutdown;
use crate::health::{HealthState, HealthStatus};

/// Time between two keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The `retry:` sent with `draining`: how long a client waits before it reconnects.
pub const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// How often an open stream looks at the health status for a change.
pub const STATE_POLL: Duration = Duration::from_secs(1);

/// `GET /events`, to merge into the service's router.
pub fn router(health: HealthState) -> Router {
    Router::new()
        .route("/events", get(events))
        .with_state(health)
}

async fn events(
    State(health): State<HealthState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // From the lifecycle rather than the request's extensions: the route works in any router,
    // served by `Deployment` or driven by a test.
    let shutdown = Shutdown::from_token(health.lifecycle().draining_token());
    Sse::new(state_events(health, shutdown, STATE_POLL))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}

enum Step {
    Start,
    Watching(HealthStatus),
    Done,
}

/// The events of one stream: `state` at once and on every change seen every `poll`, then
/// `draining` when `shutdown` fires, and the end.
fn state_events(
    health: HealthState,
    shutdown: Shutdown,
    poll: Duration,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(Step::Start, move |step| {
        let (health, shutdown) = (health.clone(), shutdown.clone());
        async move {
            let last = match step {
                Step::Done => return None,
                Step::Start => None,
                Step::Watching(status) => Some(status),
            };
            loop {
                if last.is_some() {
                    tokio::select! {
                        biased;
                        () = shutdown.draining() => {}
                        () = tokio::time::sleep(poll) => {}
                    }
                }
                // A probe may take up to HEALTH_PROBE_TIMEOUT: the drain does not wait for it.
                let status = tokio::select! {
                    biased;
                    () = shutdown.draining() => None,
                    report = health.report() => Some(report.status),
                };
                match status {
                    None | Some(HealthStatus::Draining) => {
                        return Some((Ok(draining_event(&health)), Step::Done));
                    }
                    Some(status) if Some(status) != last => {
                        return Some((Ok(state_event(&health, status)), Step::Watching(status)));
                    }
                    Some(_) => {}
                }
            }
        }
    })
}

fn payload(health: &HealthState, status: HealthStatus) -> String {
    serde_json::json!({ "instance": &*health.info().instance, "status": status }).to_string()
}

fn state_event(health: &HealthState, status: HealthStatus) -> Event {
    Event::default()
        .event("state")
        .data(payload(health, status))
}

fn draining_event(health: &HealthState) -> Event {
    Event::default()
        .event("draining")
        .data(payload(health, HealthStatus::Draining))
        .retry(RECONNECT_AFTER)
}
