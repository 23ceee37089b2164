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

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

pub use crate::config::ServeOptions;

use super::accept::{self, AcceptErrors};
use super::connections::{Connections, DEFAULT_POOL_BOUND, Order};
use super::tracked::{App, TrackedService};

/// Connections the kernel completes and queues while the accept loop catches up.
///
/// The standard library's (and so tokio's) 128 is overrun by any burst of more than 128
/// connects: the kernel then drops the next SYNs, and each dropped client, Render's health
/// probe among them, waits a whole second for its retransmission. The kernel caps this at
/// `net.core.somaxconn` (4096 on current kernels).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds `addr` for `serve_until`, with [`LISTEN_BACKLOG`] and `SO_REUSEADDR` (as tokio's
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
    app: impl App,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
    on_drain: impl FnOnce(),
) -> DrainReport {
    let server = Server {
        app,
        http: http_builder(),
        // A caller that knows its pool resolves `auto` itself (as `Deployment` does).
        registry: Connections::new(options.max_connections.resolve(DEFAULT_POOL_BOUND)),
        tasks: TaskTracker::new(),
    };
    // Runs until this function returns: through the drain too, so that a client stuck in its
    // headers is cut off there as well.
    let _header_timeout = AbortOnDropHandle::new(tokio::spawn(close_stale_connections(
        Arc::clone(&server.registry),
        options.header_read_timeout,
    )));
    server.accept_until(&listener, shutdown).await;

    let Server {
        registry,
        tasks: connections,
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
    registry.command_all(Order::Finish);
    let cut_off = match tokio::time::timeout_at(deadline, connections.wait()).await {
        Ok(()) => 0,
        Err(_) => {
            let open = connections.len();
            // Connections still open are dropped (their sockets closed), so that nothing of
            // this server outlives `serve_until` in the caller's runtime.
            registry.command_all(Order::Close);
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
struct Server<A> {
    app: A,
    http: hyper::server::conn::http1::Builder,
    registry: Arc<Connections>,
    tasks: TaskTracker,
}

impl<A: App> Server<A> {
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
        self.tasks.spawn(async move {
            // Dropped last: the registry counts the connection until its socket is closed.
            let _registration = registration;
            let mut conn = std::pin::pin!(conn);
            let mut finishing = false;
            let ended = std::future::poll_fn(|cx| {
                match slot.poll_order(cx) {
                    // Evicted or stale (idle or in its headers, so dropping it loses no
                    // answer), or past the shutdown deadline.
                    Order::Close => return Poll::Ready(None),
                    // Draining. Idle: closes now. Busy: answers the request in flight, then
                    // closes.
                    Order::Finish if !finishing => {
                        finishing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Order::Finish | Order::Serve => {}
                }
                conn.as_mut().poll(cx).map(Some)
            })
            .await;
            if let Some(result) = ended {
                log_connection_end(result);
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

fn http_builder() -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    // No timer: the header-read timeout is the server's, for all connections at once
    // (`close_stale_connections`), not a timer per request.
    http.keep_alive(true)
        // hyper's buffer grows to ~400 KiB while a body streams in; bounded lower, a thousand
        // connections reading bodies cost tens of MiB, not hundreds. Headers must fit in it.
        .max_buf_size(READ_BUFFER_MAX);
    http
}

/// The largest read buffer of one connection (also the most a request's headers may take).
pub const READ_BUFFER_MAX: usize = 64 * 1024;

/// The header-read timeout, for every connection at once: closes connections that have been
/// idle, or sending their headers, for `timeout` (to `timeout` + a tenth of it, at most a second
/// more).
///
/// hyper's own header timeout set a timer per request (boxed, registered with the runtime's
/// timer wheel, removed again): measured with `perf` on `/livez` that and the wake-ups it
/// brought were a few percent of the service's CPU. Here one timer ticks for the server: at
/// each tick the registry's clock ([`Connections::tick`]) is noted, and connections whose state
/// has not changed since a tick noted `timeout` ago are closed. As with hyper's, the time idle
/// on a kept-alive connection counts: a client that neither sends its next request nor hangs up
/// holds a connection for `timeout`, no longer.
async fn close_stale_connections(registry: Arc<Connections>, timeout: Duration) {
    if timeout.is_zero() {
        return;
    }
    let period = (timeout / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut noted: VecDeque<(tokio::time::Instant, u64)> = VecDeque::new();
    let mut cutoff = None;
    loop {
        let now = ticker.tick().await;
        noted.push_back((now, registry.tick()));
        while let Some(&(at, tick)) = noted.front()
            && now.duration_since(at) >= timeout
        {
            cutoff = Some(tick);
            noted.pop_front();
        }
        if let Some(tick) = cutoff {
            let closed = registry.close_stale(tick);
            if closed > 0 {
                tracing::debug!(
                    closed,
                    "closed connections idle or in their headers past HEADER_READ_TIMEOUT"
                );
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Notify;

    /// What the server sends on `stream` until it closes it; fails after `within`.
    async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
        let mut received = Vec::new();
        tokio::time::timeout(within, stream.read_to_end(&mut received))
            .await
            .expect("the server did not close the connection in time")
            .expect("read");
        received
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_header_timeout_closes_slow_headers_and_idle_connections_but_not_a_busy_one() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let app = Router::new()
            .route("/fast", get(|| async { "fast" }))
            .route(
                "/slow",
                get({
                    let (entered, release) = (Arc::clone(&entered), Arc::clone(&release));
                    move || async move {
                        entered.notify_one();
                        release.notified().await;
                        "slow"
                    }
                }),
            );
        let timeout = Duration::from_secs(1);
        let options = ServeOptions {
            header_read_timeout: timeout,
            ..ServeOptions::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_until(
            listener,
            app,
            options,
            async move {
                let _ = stopped.await;
            },
            || {},
        ));

        let mut busy = TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        entered.notified().await;

        let started = Instant::now();
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();

        let deadline = Duration::from_secs(10);
        let (from_slow, from_idle) = tokio::join!(
            read_until_closed(&mut slow, deadline),
            read_until_closed(&mut idle, deadline)
        );
        let took = started.elapsed();
        assert!(
            from_slow.is_empty(),
            "{}",
            String::from_utf8_lossy(&from_slow)
        );
        let from_idle = String::from_utf8_lossy(&from_idle);
        assert!(
            from_idle.starts_with("HTTP/1.1 200") && from_idle.ends_with("fast"),
            "{from_idle}"
        );
        assert!(took >= timeout, "closed after {took:?}, before the timeout");

        // The busy one was held past the timeout and still gets its answer.
        release.notify_one();
        let from_busy = read_until_closed(&mut busy, deadline).await;
        let from_busy = String::from_utf8_lossy(&from_busy);
        assert!(
            from_busy.starts_with("HTTP/1.1 200") && from_busy.ends_with("slow"),
            "{from_busy}"
        );

        stop.send(()).unwrap();
        let report = server.await.unwrap();
        assert_eq!(report.cut_off, 0);
    }
}
