//! The accept loop and graceful shutdown: the part of the server that Render's deploys test.
//!
//! We run hyper's HTTP/1 connections ourselves (rather than `axum::serve`) for three things
//! a zero-downtime deploy needs: a header-read timeout (so a client that sends its headers
//! slowly cannot hold shutdown open), a short linger after SIGTERM during which requests that
//! were already on their way over kept-alive connections are still answered (with
//! `Connection: close`) instead of meeting a closed socket, and a hard deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::ServeOptions;

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections that were still open when the shutdown signal came.
    pub open_at_signal: usize,
    /// Connections cut off at the deadline (0 for a clean drain).
    pub cut_off: usize,
    /// From the signal to the last connection closed (or the deadline).
    pub took: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
///
/// On the signal: the listener is closed at once (new connections are refused), `on_drain`
/// runs (the service reports `draining`), connections opened before are served for at most
/// `linger`, then told to close once their request in flight is answered; whatever is still
/// open at `shutdown_timeout` is cut off.
pub(crate) async fn serve_until(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
    on_drain: impl FnOnce(),
) -> DrainReport {
    let connections = TaskTracker::new();
    let close_now = CancellationToken::new();
    // At the deadline: connections still open are dropped (their sockets closed), so that
    // nothing of this server outlives `serve_until` in the caller's runtime.
    let cut_off_now = CancellationToken::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);

    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let close_now = close_now.clone();
        let cut_off_now = cut_off_now.clone();
        connections.spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => return log_connection_end(result),
                () = close_now.cancelled() => {}
            }
            // Idle: closes now. Busy: answers the request in flight, then closes.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => log_connection_end(result),
                () = cut_off_now.cancelled() => {}
            }
        });
    }

    let signal_at = Instant::now();
    drop(listener);
    connections.close();
    let open_at_signal = connections.len();
    on_drain();
    tracing::info!(
        open_connections = open_at_signal,
        "shutdown signal: draining"
    );

    let deadline = tokio::time::Instant::now() + options.shutdown_timeout;
    if !connections.is_empty() && !options.linger.is_zero() {
        let _ = tokio::time::timeout(
            options.linger.min(options.shutdown_timeout),
            connections.wait(),
        )
        .await;
    }
    close_now.cancel();
    let cut_off = match tokio::time::timeout_at(deadline, connections.wait()).await {
        Ok(()) => 0,
        Err(_) => {
            let open = connections.len();
            cut_off_now.cancel();
            connections.wait().await;
            open
        }
    };
    let report = DrainReport {
        open_at_signal,
        cut_off,
        took: signal_at.elapsed(),
    };
    if cut_off > 0 {
        tracing::warn!(
            cut_off,
            "shutdown timeout reached; closing remaining connections"
        );
    }
    report
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        // Header timeouts and clients going away are routine; not worth a warning.
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
