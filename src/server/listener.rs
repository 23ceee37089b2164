//! The accept loop and graceful shutdown: the part of the server that Render's deploys test.
//!
//! We run hyper's HTTP/1 connections ourselves (rather than `axum::serve`) for three things
//! a zero-downtime deploy needs: a header-read timeout (so a client that sends its headers
//! slowly cannot hold shutdown open), a short linger after SIGTERM during which requests that
//! were already on their way over kept-alive connections are still answered (with
//! `Connection: close`) instead of meeting a closed socket, and a hard deadline. And, so that
//! the service keeps answering Render's probe under a connection flood, a cap on open
//! connections that closes idle and slow-header ones to make room, and accept failures that
//! back off instead of spinning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::ServeOptions;

use super::accept::{self, AcceptErrors};
use super::connections::{Connections, DEFAULT_POOL_BOUND};
use super::tracked::TrackedService;

/// Connections the kernel completes and queues while the accept loop catches up.
///
/// The standard library's (and so tokio's) 128 is overrun by any burst of more than 128
/// connects: the kernel then drops the next SYNs, and each dropped client, Render's health
/// probe among them, waits a whole second for its retransmission. The kernel caps this at
/// `net.core.somaxconn` (4096 on current kernels).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds `addr` for [`serve_until`], with [`LISTEN_BACKLOG`] and `SO_REUSEADDR` (as tokio's
/// `TcpListener::bind` sets it, so a restarted service can bind while old connections linger).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

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
/// While serving: at most `max_connections` are held, and at the cap one is closed to make
/// room for each newcomer ([`connections`](super::connections)); failed accepts pause the
/// loop and are logged once per burst ([`accept`](super::accept)).
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
    let server = Server {
        app,
        http: http_builder(&options),
        // A caller that knows its pool resolves `auto` itself (as `Deployment` does).
        registry: Connections::new(options.max_connections.resolve(DEFAULT_POOL_BOUND)),
        tasks: TaskTracker::new(),
        close_now: CancellationToken::new(),
        cut_off_now: CancellationToken::new(),
    };
    server.accept_until(&listener, shutdown).await;

    let Server {
        registry: _,
        tasks: connections,
        close_now,
        cut_off_now,
        ..
    } = server;
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

/// What the accept loop hands to each connection.
struct Server {
    app: Router,
    http: hyper::server::conn::http1::Builder,
    registry: Arc<Connections>,
    tasks: TaskTracker,
    close_now: CancellationToken,
    // At the deadline: connections still open are dropped (their sockets closed), so that
    // nothing of this server outlives `serve_until` in the caller's runtime.
    cut_off_now: CancellationToken,
}

impl Server {
    /// Accepts connections until `shutdown` completes.
    async fn accept_until(&self, listener: &TcpListener, shutdown: impl Future<Output = ()>) {
        let mut errors = AcceptErrors::default();
        tokio::pin!(shutdown);
        loop {
            let quiet_at = errors.quiet_at();
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = sleep_until(quiet_at) => {
                    errors.end_burst_if_quiet(tokio::time::Instant::now());
                    continue;
                }
                accepted = async {
                    self.registry.room().await;
                    listener.accept().await
                } => accepted,
            };
            match accepted {
                Ok((stream, _peer)) => {
                    errors.accepted();
                    if self.registry.is_full() {
                        // Idle first, then the slowest header; none when every one is busy
                        // (the newcomer is then served one over the cap, and `room` waits next
                        // time).
                        self.registry.evict_one();
                    }
                    self.spawn(stream);
                }
                Err(e) if accept::is_connection_error(&e) => {
                    tracing::debug!(error = %e, "a connection went away before it was accepted");
                }
                Err(e) => self.back_off(&e, &mut errors).await,
            }
        }
        errors.finish();
    }

    fn spawn(&self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let registration = self.registry.register();
        let slot = Arc::clone(registration.slot());
        let service = TrackedService::new(self.app.clone(), Arc::clone(&slot));
        let conn = self.http.serve_connection(TokioIo::new(stream), service);
        let close_now = self.close_now.clone();
        let cut_off_now = self.cut_off_now.clone();
        self.tasks.spawn(async move {
            // Dropped last: the registry counts the connection until its socket is closed.
            let _registration = registration;
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => return log_connection_end(result),
                // Chosen to make room: it was idle or in its headers, so dropping it (closing
                // the socket) loses no answer.
                () = slot.evicted() => return,
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

    /// After a failed accept: when out of descriptors, close one connection to free one and
    /// retry as soon as it is gone; otherwise (or with none to close) pause, longer each time.
    async fn back_off(&self, error: &std::io::Error, errors: &mut AcceptErrors) {
        let pause = errors.failed(error, tokio::time::Instant::now());
        if accept::is_resource_exhaustion(error) && self.registry.evict_one().is_some() {
            let _ = tokio::time::timeout(accept::MAX_PAUSE, self.registry.changed()).await;
        } else {
            tokio::time::sleep(pause).await;
        }
    }
}

fn http_builder(options: &ServeOptions) -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true)
        // hyper's buffer grows to ~400 KiB while a body streams in; bounded lower, a thousand
        // connections reading bodies cost tens of MiB, not hundreds. Headers must fit in it.
        .max_buf_size(READ_BUFFER_MAX);
    http
}

/// The largest read buffer of one connection (also the most a request's headers may take).
pub const READ_BUFFER_MAX: usize = 64 * 1024;

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        // Header timeouts and clients going away are routine; not worth a warning.
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
