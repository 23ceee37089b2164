//! The event-stream clients of `rehearse --sse` (contract §8.2): each holds a server-sent event
//! stream open through the front proxy and reconnects as a browser's `EventSource` does.
//!
//! A deploy ends every long-lived connection to the old instance. What matters is how: a
//! stream the server closes after a complete event (having said `retry:`) is a clean end, and
//! the client reconnects to the new instance a moment later; a stream that is reset, goes
//! silent, or stops inside an event is broken, and a user sees an error. Each client records
//! every stream it held ([`StreamRecord`]) and how it ended ([`StreamEnd`]).
//!
//! Reconnects follow `EventSource`: after the last `retry:` the server sent (or
//! [`DEFAULT_RETRY`]), with `Last-Event-ID` set to the last `id:` received. Unlike a browser,
//! which gives up after an answer that is not a 200 event stream, a client here tries again
//! after the same delay, so that every failed reconnect of the rehearsal is counted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::proxy::classify_chain;
use super::record::FailureCause;

/// `--sse-clients` when not given.
pub const DEFAULT_CLIENTS: usize = 4;
/// The most `--sse-clients`.
pub const MAX_CLIENTS: usize = 64;
/// The reconnect delay before the server has sent any `retry:` (a browser's is about as long).
pub const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// The longest `retry:` obeyed: a server cannot park a client for the rest of the rehearsal.
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// A stream that sends nothing (not even a comment) for this long has timed out: three times
/// the 15 s keep-alive of `/events`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// The longest line kept of an event; the rest of a longer line is read and dropped.
const MAX_LINE: usize = 64 * 1024;

/// How one stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// Closed by the server after a complete event: the body ended properly.
    Clean,
    /// The connection was reset or closed before the body's end (a chunked body without its
    /// last chunk), between two events.
    Reset,
    /// Nothing arrived for [`IDLE_TIMEOUT`].
    TimedOut,
    /// The body ended, properly or not, in the middle of an event.
    CutInsideEvent,
    /// The stream was never opened: a failed (re)connect.
    NotOpened(OpenFailure),
    /// Still open when the rehearsal stopped its clients: neither clean nor broken.
    OpenAtEnd,
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFailure {
    /// The connection or the exchange failed (the proxy says why when it answered for the
    /// instance).
    Cause(FailureCause),
    /// The service answered with this status instead of 200.
    Status(u16),
    /// A 200 whose `Content-Type` is not `text/event-stream`.
    NotEventStream,
}

impl StreamEnd {
    /// Whether this end counts as a failure of the rehearsal: every end but a clean one and
    /// one cut by the rehearsal itself.
    pub fn is_failure(&self) -> bool {
        !matches!(self, StreamEnd::Clean | StreamEnd::OpenAtEnd)
    }

    /// Whether the stream was broken once open (reset, timed out, cut inside an event).
    pub fn is_broken(&self) -> bool {
        matches!(
            self,
            StreamEnd::Reset | StreamEnd::TimedOut | StreamEnd::CutInsideEvent
        )
    }

    /// Words for the reports.
    pub fn describe(&self) -> String {
        match self {
            StreamEnd::Clean => "clean".to_owned(),
            StreamEnd::Reset => "broken: reset before the end of the body".to_owned(),
            StreamEnd::TimedOut => {
                format!("broken: nothing received for {} s", IDLE_TIMEOUT.as_secs())
            }
            StreamEnd::CutInsideEvent => "broken: cut inside an event".to_owned(),
            StreamEnd::NotOpened(OpenFailure::Cause(cause)) => {
                format!("reconnect failed: {cause}")
            }
            StreamEnd::NotOpened(OpenFailure::Status(status)) => {
                format!("reconnect failed: status {status}")
            }
            StreamEnd::NotOpened(OpenFailure::NotEventStream) => {
                "reconnect failed: not a text/event-stream".to_owned()
            }
            StreamEnd::OpenAtEnd => "open at the end of the rehearsal".to_owned(),
        }
    }
}

/// One stream held by one client, from its connect to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// The client, from 1.
    pub client: usize,
    /// Which of the client's streams, from 1 (2 is its first reconnect).
    pub attempt: usize,
    /// When the client started to connect.
    pub start: Duration,
    /// When the response's head arrived (`None`: never opened).
    pub opened: Option<Duration>,
    /// When it ended.
    pub end: Duration,
    /// The instance that served it, as the proxy said.
    pub instance: Option<String>,
    /// Complete events received.
    pub events: usize,
    /// The type of the last complete event (`message` when it had none).
    pub last_event: Option<String>,
    /// The `Last-Event-ID` sent with the request.
    pub last_event_id: Option<String>,
    /// How it ended.
    pub ending: StreamEnd,
}

/// The streams the clients of `--sse` held (reported by `sse_report`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streams {
    /// The path of the event stream.
    pub path: String,
    /// How many clients held one.
    pub clients: usize,
    /// Every stream, by client and in order.
    pub records: Vec<StreamRecord>,
}

/// What `--sse` asks for.
#[derive(Debug, Clone)]
pub struct SseSettings {
    /// Where to connect (the front proxy).
    pub target: SocketAddr,
    /// The event stream's path.
    pub path: String,
    /// How many clients hold a stream at once.
    pub clients: usize,
    /// How long a client waits for a response's head.
    pub open_timeout: Duration,
}

/// The running clients; [`SseClients::stop`] ends them and returns every stream they held.
pub struct SseClients {
    path: String,
    clients: usize,
    stop: watch::Sender<bool>,
    tasks: JoinSet<Vec<StreamRecord>>,
}

impl SseClients {
    /// Starts the clients; times in the records are offsets from `epoch`.
    pub fn start(settings: SseSettings, epoch: Instant) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for client in 1..=settings.clients {
            tasks.spawn(run_client(client, settings.clone(), epoch, stopped.clone()));
        }
        Self {
            path: settings.path,
            clients: settings.clients,
            stop,
            tasks,
        }
    }

    /// Stops every client (a stream still open is recorded as [`StreamEnd::OpenAtEnd`]) and
    /// returns the streams, by client and in order.
    pub async fn stop(mut self) -> Streams {
        let _ = self.stop.send(true);
        let mut records = Vec::new();
        while let Some(done) = self.tasks.join_next().await {
            records.extend(done.unwrap_or_default());
        }
        records.sort_by_key(|r| (r.client, r.attempt));
        Streams {
            path: self.path,
            clients: self.clients,
            records,
        }
    }
}

/// What a client carries from one stream to the next, as `EventSource` does.
struct Carried {
    last_event_id: Option<String>,
    retry: Duration,
}

async fn run_client(
    client: usize,
    settings: SseSettings,
    epoch: Instant,
    mut stopped: watch::Receiver<bool>,
) -> Vec<StreamRecord> {
    let mut carried = Carried {
        last_event_id: None,
        retry: DEFAULT_RETRY,
    };
    let mut records = Vec::new();
    for attempt in 1.. {
        let mut record = StreamRecord {
            client,
            attempt,
            start: epoch.elapsed(),
            opened: None,
            end: Duration::ZERO,
            instance: None,
            events: 0,
            last_event: None,
            last_event_id: carried.last_event_id.clone(),
            ending: StreamEnd::OpenAtEnd,
        };
        tokio::select! {
            biased;
            _ = stopped.wait_for(|s| *s) => {}
            () = hold(&settings, &mut record, &mut carried, epoch) => {}
        }
        record.end = epoch.elapsed();
        // An attempt the rehearsal's end interrupted before it opened says nothing.
        if record.opened.is_some() || record.ending != StreamEnd::OpenAtEnd {
            records.push(record);
        }
        tokio::select! {
            biased;
            _ = stopped.wait_for(|s| *s) => break,
            () = tokio::time::sleep(carried.retry) => {}
        }
    }
    records
}

/// Opens one stream and reads it to its end, filling `record` as it goes (so that what was
/// seen is kept when the rehearsal stops the client half-way).
async fn hold(
    settings: &SseSettings,
    record: &mut StreamRecord,
    carried: &mut Carried,
    epoch: Instant,
) {
    let opening = tokio::time::timeout(
        settings.open_timeout,
        open(settings, carried.last_event_id.as_deref()),
    );
    let response = match opening.await {
        Ok(Ok(response)) => response,
        Ok(Err(failure)) => {
            record.ending = StreamEnd::NotOpened(failure);
            return;
        }
        Err(_) => {
            record.ending = StreamEnd::NotOpened(OpenFailure::Cause(FailureCause::Timeout));
            return;
        }
    };
    record.opened = Some(epoch.elapsed());
    let (instance, cause) = super::load::marks(response.headers());
    record.instance = instance;
    if let Some(cause) = cause {
        record.ending = StreamEnd::NotOpened(OpenFailure::Cause(cause));
        return;
    }
    let status = response.status().as_u16();
    if status != 200 {
        record.ending = StreamEnd::NotOpened(OpenFailure::Status(status));
        return;
    }
    let content_type = response.headers().get(hyper::header::CONTENT_TYPE);
    let is_stream = content_type.and_then(|v| v.to_str().ok()).is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
    });
    if !is_stream {
        record.ending = StreamEnd::NotOpened(OpenFailure::NotEventStream);
        return;
    }
    let mut parser = Parser::default();
    let mut body = response.into_body();
    let ended = loop {
        let frame = match tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
            Err(_) => break StreamEnd::TimedOut,
            Ok(None) => break StreamEnd::Clean,
            Ok(Some(Err(_))) => break StreamEnd::Reset,
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            parser.feed(&data);
            record.events = parser.events;
            record.last_event.clone_from(&parser.last_event);
            carried.last_event_id.clone_from(&parser.last_event_id);
            if let Some(retry) = parser.retry {
                carried.retry = retry.min(MAX_RETRY);
            }
        }
    };
    record.ending = if parser.mid_event() {
        StreamEnd::CutInsideEvent
    } else {
        ended
    };
}

async fn open(
    settings: &SseSettings,
    last_event_id: Option<&str>,
) -> Result<hyper::Response<Incoming>, OpenFailure> {
    let failed = |cause| OpenFailure::Cause(cause);
    let stream = tokio::net::TcpStream::connect(settings.target)
        .await
        .map_err(|e| {
            failed(match e.kind() {
                std::io::ErrorKind::ConnectionRefused => FailureCause::ConnectRefused,
                _ => FailureCause::ConnectFailed,
            })
        })?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(classify_chain(&e)))?;
    tokio::spawn(conn);
    let mut request = hyper::Request::get(settings.path.as_str())
        .header(hyper::header::HOST, settings.target.to_string())
        .header(hyper::header::ACCEPT, "text/event-stream")
        .header(hyper::header::CACHE_CONTROL, "no-cache");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|_| failed(FailureCause::Other))?;
    sender
        .send_request(request)
        .await
        .map_err(|e| failed(classify_chain(&e)))
}

/// The event-stream format (the HTML standard's "interpreting an event stream"), reduced to
/// what the rehearsal needs: counting complete events and keeping `id:` and `retry:`.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    after_cr: bool,
    /// Field lines seen since the last blank line: an event is under way.
    in_event: bool,
    has_data: bool,
    event_type: Option<String>,
    /// Complete events dispatched (an event with no `data:` is not dispatched, as in a browser).
    pub events: usize,
    /// The type of the last dispatched event.
    pub last_event: Option<String>,
    /// The last `id:` received (sent back as `Last-Event-ID`).
    pub last_event_id: Option<String>,
    /// The last valid `retry:` received.
    pub retry: Option<Duration>,
}

impl Parser {
    /// Reads more of the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    self.line_ended(&line);
                }
                _ if self.line.len() < MAX_LINE => self.line.push(b),
                _ => {}
            }
        }
    }

    /// Whether the stream so far stops inside an event (a partial line, or field lines not
    /// yet ended by a blank line).
    pub fn mid_event(&self) -> bool {
        self.in_event || !self.line.is_empty()
    }

    fn line_ended(&mut self, line: &[u8]) {
        if line.is_empty() {
            if self.has_data {
                self.events += 1;
                self.last_event = Some(
                    self.event_type
                        .take()
                        .unwrap_or_else(|| "message".to_owned()),
                );
            }
            self.in_event = false;
            self.has_data = false;
            self.event_type = None;
            return;
        }
        if line[0] == b':' {
            return; // a comment, such as a keep-alive
        }
        self.in_event = true;
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"data" => self.has_data = true,
            b"event" => self.event_type = Some(printable(&value, 64)),
            b"id" if !value.contains('\0') => {
                // Sent back as a header and printed in the reports: bounded and printable.
                self.last_event_id = Some(printable(&value, 128)).filter(|v| !v.is_empty());
            }
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
    }
}

/// At most `max` characters of `value`, control characters (a terminal's escape sequences)
/// replaced by `?`: what a server sends is printed in the reports.
fn printable(value: &str, max: usize) -> String {
    value
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Parser {
        let mut p = Parser::default();
        for c in chunks {
            p.feed(c.as_bytes());
        }
        p
    }

    #[test]
    fn complete_events_are_counted_whatever_the_chunking_and_line_endings() {
        let text = "event: state\ndata: {}\n\n: keep-alive\n\nid: 7\r\ndata: x\r\n\r\nevent: draining\rdata: y\rretry: 1000\r\r";
        let whole = parse(&[text]);
        let bytewise: Vec<String> = text.chars().map(String::from).collect();
        let bytewise = parse(&bytewise.iter().map(String::as_str).collect::<Vec<_>>());
        for p in [whole, bytewise] {
            assert_eq!(p.events, 3);
            assert_eq!(p.last_event.as_deref(), Some("draining"));
            assert_eq!(p.last_event_id.as_deref(), Some("7"));
            assert_eq!(p.retry, Some(Duration::from_millis(1000)));
            assert!(!p.mid_event());
        }
    }

    #[test]
    fn a_stream_that_stops_inside_an_event_is_mid_event() {
        assert!(parse(&["event: state\ndata: {}\n"]).mid_event());
        assert!(parse(&["event: state\ndata: {"]).mid_event());
        assert!(parse(&["data: 1\n\nda"]).mid_event());
        assert!(!parse(&["data: 1\n\n: comment\n"]).mid_event());
    }

    #[test]
    fn hostile_fields_are_ignored_and_lines_are_bounded() {
        let p = parse(&["retry: soon\nretry: -5\nid: a\0b\ndata\n\n"]);
        assert_eq!(
            (p.retry, p.last_event_id.as_deref(), p.events),
            (None, None, 1)
        );
        let long = "x".repeat(1000);
        let p = parse(&[&format!("event: \x1b[2Jboom\nid: {long}\ndata: 1\n\n")]);
        assert_eq!(p.last_event.as_deref(), Some("?[2Jboom"));
        assert_eq!(p.last_event_id.map(|id| id.len()), Some(128));
        let mut p = Parser::default();
        p.feed(&vec![b'x'; 10 * MAX_LINE]);
        assert!(p.line.len() <= MAX_LINE && p.mid_event());
        p.feed(b"\n\n");
        assert!(!p.mid_event());
    }

    #[test]
    fn only_clean_ends_and_ends_at_the_rehearsals_end_are_not_failures() {
        assert!(!StreamEnd::Clean.is_failure());
        assert!(!StreamEnd::OpenAtEnd.is_failure());
        for end in [
            StreamEnd::Reset,
            StreamEnd::TimedOut,
            StreamEnd::CutInsideEvent,
            StreamEnd::NotOpened(OpenFailure::Status(503)),
        ] {
            assert!(end.is_failure(), "{end:?}");
        }
    }
}
