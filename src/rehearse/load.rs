//! The load generator: requests at a fixed rate, whatever the latency.
//!
//! The load is open loop: request *n* is sent at `start + n / rate` whether or not earlier
//! requests have been answered, as real users do. A closed loop (send, wait, send) would slow
//! down exactly when the service does, and hide the requests a deploy makes slow or loses.
//! One request in [`NEW_CONNECTION_EVERY`] opens a new connection; the others reuse a kept-alive
//! connection when one is idle. Every request is bounded by the request timeout, and the
//! rate by [`MAX_RATE`](super::MAX_RATE), so the load is bounded in count and time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::proxy::classify_chain;
use super::record::{EXCERPT_CHARS, FailureCause, Outcome, RequestRecord};
use super::{CAUSE_HEADER, INSTANCE_HEADER};

/// One request in this many is sent on a new connection.
pub const NEW_CONNECTION_EVERY: u64 = 4;

/// Idle kept-alive connections kept for reuse, at most.
const MAX_IDLE: usize = 64;

/// What to send.
#[derive(Debug, Clone)]
pub(crate) struct LoadSettings {
    /// Where to send it (the front proxy).
    pub target: SocketAddr,
    /// Requests per second.
    pub rate: f64,
    /// The paths, requested in turn.
    pub paths: Vec<String>,
    /// How long one request may take.
    pub request_timeout: Duration,
}

/// A running load; [`Load::stop`] ends it and returns what it saw.
pub struct Load {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<RequestRecord>>,
}

type Idle = Arc<Mutex<Vec<SendRequest<Empty<Bytes>>>>>;

impl Load {
    /// Starts sending; times in the records are offsets from `epoch`.
    pub fn start(settings: LoadSettings, epoch: Instant) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(settings, epoch, stopped));
        Self { stop, task }
    }

    /// Stops sending, waits for the requests in flight (each bounded by the request timeout),
    /// and returns every request in the order it was sent.
    pub async fn stop(self) -> Vec<RequestRecord> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

async fn run(
    settings: LoadSettings,
    epoch: Instant,
    mut stopped: watch::Receiver<bool>,
) -> Vec<RequestRecord> {
    let idle: Idle = Arc::new(Mutex::new(Vec::new()));
    let interval = Duration::from_secs_f64(1.0 / settings.rate);
    let start = tokio::time::Instant::now();
    let mut in_flight = JoinSet::new();
    let mut done: Vec<(u64, RequestRecord)> = Vec::new();
    let mut n: u64 = 0;
    loop {
        let due = start + interval.mul_f64(n as f64);
        tokio::select! {
            biased;
            _ = stopped.wait_for(|s| *s) => break,
            _ = tokio::time::sleep_until(due) => {}
        }
        let path = settings.paths[(n % settings.paths.len() as u64) as usize].clone();
        let new_connection = n.is_multiple_of(NEW_CONNECTION_EVERY);
        let (idle, settings) = (idle.clone(), settings.clone());
        in_flight.spawn(async move {
            (
                n,
                one_request(&settings, &path, new_connection, &idle, epoch).await,
            )
        });
        n += 1;
        while let Some(finished) = in_flight.try_join_next() {
            done.extend(finished.ok());
        }
    }
    while let Some(finished) = in_flight.join_next().await {
        done.extend(finished.ok());
    }
    done.sort_by_key(|(n, _)| *n);
    done.into_iter().map(|(_, r)| r).collect()
}

async fn one_request(
    settings: &LoadSettings,
    path: &str,
    new_connection: bool,
    idle: &Idle,
    epoch: Instant,
) -> RequestRecord {
    let start = epoch.elapsed();
    let exchange = send(settings.target, path, new_connection, idle);
    let (outcome, instance, excerpt) =
        match tokio::time::timeout(settings.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => (Outcome::Failed(FailureCause::Timeout), None, None),
        };
    RequestRecord {
        start,
        end: epoch.elapsed(),
        outcome,
        instance,
        new_connection,
        excerpt,
    }
}

async fn send(
    target: SocketAddr,
    path: &str,
    new_connection: bool,
    idle: &Idle,
) -> (Outcome, Option<String>, Option<String>) {
    let reused = if new_connection {
        None
    } else {
        take_idle(idle).await
    };
    let mut sender = match reused {
        Some(sender) => sender,
        None => match connect(target).await {
            Ok(sender) => sender,
            Err(cause) => return (Outcome::Failed(cause), None, None),
        },
    };
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, target.to_string());
    if new_connection {
        request = request.header(hyper::header::CONNECTION, "close");
    }
    let Ok(request) = request.body(Empty::new()) else {
        return (Outcome::Failed(FailureCause::Other), None, None);
    };
    let response = match sender.send_request(request).await {
        Ok(r) => r,
        Err(e) => return (Outcome::Failed(classify_chain(&e)), None, None),
    };
    let status = response.status().as_u16();
    let (instance, cause) = marks(response.headers());
    // Read to the end, but only its start is kept (for the excerpt of a failure): a large
    // download costs no memory here.
    let mut body = Vec::new();
    let mut incoming = response.into_body();
    while let Some(frame) = incoming.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    let room = (EXCERPT_CHARS * 4).saturating_sub(body.len());
                    body.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Err(e) => return (Outcome::Failed(classify_chain(&e)), instance, None),
        }
    }
    if !new_connection
        && let Ok(mut idle) = idle.lock()
        && idle.len() < MAX_IDLE
    {
        idle.push(sender);
    }
    let outcome = match cause {
        // The proxy answered for an instance that could not.
        Some(cause) => Outcome::Failed(cause),
        None => Outcome::Response(status),
    };
    // What the service said went wrong is kept for failures only: the load stays light.
    let excerpt = outcome.failure().map(|_| excerpt(&body));
    (outcome, instance, excerpt)
}

/// The start of a body as one line of text: whitespace collapsed, control characters dropped,
/// at most [`EXCERPT_CHARS`] characters.
fn excerpt(body: &[u8]) -> String {
    let head = &body[..body.len().min(EXCERPT_CHARS * 4)];
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_control()));
    }
    match out.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &out[..cut]),
        None => out,
    }
}

async fn take_idle(idle: &Idle) -> Option<SendRequest<Empty<Bytes>>> {
    loop {
        let mut sender = idle.lock().ok()?.pop()?;
        if !sender.is_closed() && sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
}

async fn connect(target: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, FailureCause> {
    let stream = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => FailureCause::ConnectRefused,
            _ => FailureCause::ConnectFailed,
        })?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| classify_chain(&e))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// What the front proxy wrote on a response: the instance that served it, and the cause when the
/// proxy itself answered with a failure. Shared by the load and the event-stream clients.
pub(crate) fn marks(headers: &hyper::HeaderMap) -> (Option<String>, Option<FailureCause>) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let cause = header(CAUSE_HEADER).and_then(|c| FailureCause::from_token(&c));
    (header(INSTANCE_HEADER), cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_is_one_short_line_of_the_body() {
        assert_eq!(
            excerpt(b"{\"error\":\n  \"boom\"}\n"),
            "{\"error\": \"boom\"}"
        );
        let long = "x".repeat(1000);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(&[0xff, b'a', 0x07, b'b']), "\u{fffd}ab");
    }
}
