//! The front proxy: Render's load balancer in miniature.
//!
//! It listens on a loopback port and sends each request, as it arrives, to one of the instances
//! currently in rotation (round robin). Switching changes the rotation for requests that arrive
//! afterwards only: a request already sent to the old instance finishes there, as on Render.
//! Connections to the instances are pooled and kept alive, as a load balancer's are, so an old
//! instance is left holding idle keep-alive connections when it is told to stop.
//!
//! Bodies are streamed both ways as they arrive, never buffered: an upload reaches the instance
//! while it is still being sent, and a server-sent event stream or a chunked download reaches
//! the client chunk by chunk, with the memory of the proxy bounded by hyper's buffers whatever
//! the size. An instance that dies in the middle of a response body is passed on as it is: the
//! client's connection is cut before the body's end (for a chunked body, before its last chunk),
//! so that the client sees a broken response, never a clean but truncated one.
//!
//! Every response carries [`INSTANCE_HEADER`] with the name of the instance that served it.
//! When the instance could not answer (refused, reset, too slow to send its response's head),
//! the proxy answers 502 or 504 itself and says why in [`CAUSE_HEADER`], so that the load
//! generator can tell a lost request from an error the service chose to send.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::record::FailureCause;
use super::{CAUSE_HEADER, INSTANCE_HEADER};

/// The body of every response of the proxy: the instance's, streamed, or one made up here.
type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// An instance the proxy can send requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backend {
    /// Its name, sent back in [`INSTANCE_HEADER`].
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
}

struct Routes {
    rotation: RwLock<Vec<Backend>>,
    next: AtomicUsize,
    in_flight: Mutex<HashMap<String, usize>>,
    client: Client<HttpConnector, Incoming>,
    timeout: Duration,
}

/// The running proxy; stopped by [`Proxy::stop`] or when dropped.
pub struct Proxy {
    addr: SocketAddr,
    routes: Arc<Routes>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts the proxy on a free loopback port with nothing in rotation. The proxy answers
    /// 504 to a request its instance has not answered within `timeout`.
    pub async fn start(timeout: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        let routes = Arc::new(Routes {
            rotation: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
            in_flight: Mutex::new(HashMap::new()),
            client,
            timeout,
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, routes.clone(), stopped));
        Ok(Self {
            addr,
            routes,
            stop,
            task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Puts exactly these instances in rotation, for requests that arrive from now on.
    pub(crate) fn set_rotation(&self, backends: Vec<Backend>) {
        if let Ok(mut rotation) = self.routes.rotation.write() {
            *rotation = backends;
        }
    }

    /// Takes `old` out of rotation and puts `new` in its place, in one step, for requests
    /// that arrive from now on.
    pub fn replace(&self, old: &str, new: Backend) {
        if let Ok(mut rotation) = self.routes.rotation.write() {
            rotation.retain(|b| b.name != old);
            rotation.push(new);
        }
    }

    /// How many requests the proxy has sent to this instance that have not been answered yet.
    pub(crate) fn in_flight(&self, name: &str) -> usize {
        self.routes
            .in_flight
            .lock()
            .map(|m| m.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Stops accepting and closes every connection.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    routes: Arc<Routes>,
    mut stopped: watch::Receiver<bool>,
) {
    // Dropping the set at the end aborts every connection still open.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let routes = routes.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let routes = routes.clone();
                        async move { Ok::<_, Infallible>(forward(routes, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Counts a request as in flight at an instance until dropped: with the response's body, so
/// that an event stream is in flight for as long as it is open.
struct InFlight {
    routes: Arc<Routes>,
    name: String,
}

impl InFlight {
    fn new(routes: &Arc<Routes>, name: &str) -> Self {
        if let Ok(mut m) = routes.in_flight.lock() {
            *m.entry(name.to_owned()).or_insert(0) += 1;
        }
        Self {
            routes: Arc::clone(routes),
            name: name.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut m) = self.routes.in_flight.lock()
            && let Some(n) = m.get_mut(&self.name)
        {
            *n = n.saturating_sub(1);
        }
    }
}

fn pick(routes: &Routes) -> Option<Backend> {
    let rotation = routes.rotation.read().ok()?;
    if rotation.is_empty() {
        return None;
    }
    let n = routes.next.fetch_add(1, Ordering::Relaxed);
    Some(rotation[n % rotation.len()].clone())
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || name == hyper::header::TRANSFER_ENCODING
}

async fn forward(routes: Arc<Routes>, req: Request<Incoming>) -> Response<ProxyBody> {
    // The choice is made once, when the request arrives: a switch afterwards does not move it.
    let Some(backend) = pick(&routes) else {
        return made_up(StatusCode::BAD_GATEWAY, None, FailureCause::NoInstance);
    };
    let in_flight = InFlight::new(&routes, &backend.name);
    // The timeout bounds the wait for the response's head only: a body (an event stream, a
    // large download) takes as long as it takes, as behind Render's load balancer.
    let answer = tokio::time::timeout(routes.timeout, exchange(&routes, &backend, req)).await;
    match answer {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            if let Ok(v) = HeaderValue::from_str(&backend.name) {
                parts.headers.insert(INSTANCE_HEADER, v);
            }
            // The guard lives in the body's closure: dropped when the body ends or is dropped.
            let body = body.map_frame(move |frame| {
                let _in_flight = &in_flight;
                frame
            });
            Response::from_parts(parts, body.boxed_unsync())
        }
        Ok(Err(cause)) => made_up(StatusCode::BAD_GATEWAY, Some(&backend.name), cause),
        Err(_) => made_up(
            StatusCode::GATEWAY_TIMEOUT,
            Some(&backend.name),
            FailureCause::Timeout,
        ),
    }
}

/// Sends the request to the instance, its body streamed as it arrives, and returns the
/// instance's response as soon as its head has arrived, with the body still to come.
async fn exchange(
    routes: &Routes,
    backend: &Backend,
    req: Request<Incoming>,
) -> Result<Response<Incoming>, FailureCause> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = format!("http://{}{}", backend.addr, path)
        .parse::<hyper::Uri>()
        .map_err(|_| FailureCause::Other)?;
    let mut outgoing = Request::builder()
        .method(parts.method)
        .uri(uri)
        .body(body)
        .map_err(|_| FailureCause::Other)?;
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) && name != hyper::header::HOST {
            outgoing.headers_mut().append(name.clone(), value.clone());
        }
    }
    let response = routes
        .client
        .request(outgoing)
        .await
        .map_err(|e| classify_client_error(&e))?;
    let (mut parts, body) = response.into_parts();
    let hop_by_hop: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|name| is_hop_by_hop(name))
        .cloned()
        .collect();
    for name in hop_by_hop {
        parts.headers.remove(name);
    }
    Ok(Response::from_parts(parts, body))
}

fn made_up(status: StatusCode, instance: Option<&str>, cause: FailureCause) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(format!("{{\"error\": \"{cause}\"}}")))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CAUSE_HEADER, HeaderValue::from_static(cause.token()));
    if let Some(v) = instance.and_then(|i| HeaderValue::from_str(i).ok()) {
        headers.insert(INSTANCE_HEADER, v);
    }
    response
}

fn classify_client_error(e: &hyper_util::client::legacy::Error) -> FailureCause {
    match classify_chain(e) {
        FailureCause::Other if e.is_connect() => FailureCause::ConnectFailed,
        cause => cause,
    }
}

/// Reads the cause of a failed exchange from an error and its sources.
pub(crate) fn classify_chain(e: &(dyn std::error::Error + 'static)) -> FailureCause {
    use std::io::ErrorKind;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused => return FailureCause::ConnectRefused,
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => return FailureCause::Reset,
                ErrorKind::TimedOut => return FailureCause::Timeout,
                _ => {}
            }
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return FailureCause::Reset;
            }
            if h.is_timeout() {
                return FailureCause::Timeout;
            }
        }
        current = err.source();
    }
    FailureCause::Other
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
