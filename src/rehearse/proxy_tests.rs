//! The proxy streams bodies both ways: an upload reaches the instance while it is being sent,
//! an event stream reaches the client event by event, 50 MiB pass either way with the memory
//! bounded, and a body the instance cuts short reaches the client cut, not clean.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::{get, post};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, mpsc};

use super::{Backend, FailureCause, Proxy};

const MIB: usize = 1 << 20;
const TOTAL: usize = 50 * MIB;
const PIECE: usize = 64 * 1024;

#[derive(Clone)]
struct Instance {
    /// Sent once, when the first bytes of an upload arrive.
    upload_started: mpsc::UnboundedSender<()>,
    /// Lets `/stream` and `/cut` go on past their first event.
    go_on: Arc<Notify>,
    received: Arc<AtomicUsize>,
}

/// Counts an upload's bytes as they arrive, answering the total.
async fn upload(State(instance): State<Instance>, body: Body) -> String {
    let mut body = body.into_data_stream();
    let mut total = 0;
    while let Some(piece) = body.next().await {
        if total == 0 {
            let _ = instance.upload_started.send(());
        }
        total += piece.expect("upload body").len();
    }
    instance.received.store(total, Ordering::SeqCst);
    total.to_string()
}

/// 50 MiB, 64 KiB at a time, made as they are read.
async fn download() -> Body {
    let piece = Bytes::from(vec![b'x'; PIECE]);
    Body::from_stream(futures_util::stream::iter(
        (0..TOTAL / PIECE).map(move |_| Ok::<_, std::io::Error>(piece.clone())),
    ))
}

/// One event, then (when the test says so) `then`: another event, or the instance failing.
fn two_steps(instance: Instance, then: Result<Bytes, std::io::Error>) -> Body {
    let mut then = Some(then);
    let steps = futures_util::stream::unfold(0, move |n| {
        let go_on = Arc::clone(&instance.go_on);
        let then = if n == 1 { then.take() } else { None };
        async move {
            match (n, then) {
                (0, _) => Some((Ok(Bytes::from("event: a\ndata: 1\n\n")), 1)),
                (1, Some(then)) => {
                    go_on.notified().await;
                    Some((then, 2))
                }
                _ => None,
            }
        }
    });
    Body::from_stream(steps)
}

async fn stream(State(instance): State<Instance>) -> Body {
    two_steps(instance, Ok(Bytes::from("event: b\ndata: 2\n\n")))
}

async fn cut(State(instance): State<Instance>) -> Body {
    two_steps(instance, Err(std::io::Error::other("the instance died")))
}

struct Setup {
    proxy: Proxy,
    instance: Instance,
    upload_started: mpsc::UnboundedReceiver<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn setup() -> Setup {
    let (tx, rx) = mpsc::unbounded_channel();
    let instance = Instance {
        upload_started: tx,
        go_on: Arc::new(Notify::new()),
        received: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route("/upload", post(upload))
        .route("/download", get(download))
        .route("/stream", get(stream))
        .route("/cut", get(cut))
        .with_state(instance.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let proxy = Proxy::start(Duration::from_secs(10)).await.unwrap();
    proxy.set_rotation(vec![Backend {
        name: "old-1".into(),
        addr,
    }]);
    Setup {
        proxy,
        instance,
        upload_started: rx,
        server,
    }
}

/// One request through the proxy on a connection of its own; the response with its body to come.
async fn send<B>(proxy: &Proxy, request: hyper::Request<B>) -> hyper::Response<Incoming>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender.send_request(request).await.unwrap()
}

fn get_request(path: &str) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::get(path)
        .header("host", "proxy")
        .body(Empty::new())
        .unwrap()
}

/// The next data frame of `body` (`Ok(None)` at its proper end).
async fn next_data(body: &mut Incoming) -> Result<Option<Bytes>, hyper::Error> {
    loop {
        match body.frame().await.transpose()? {
            None => return Ok(None),
            Some(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Peak resident memory of this process so far (`VmHWM`), in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

// nextest runs each test in a process of its own, so the peak is this test's alone; under
// `cargo test` other tests of the binary share the process, hence a bound on the growth only,
// far below the 50 MiB a buffering proxy holds.
const MEMORY_BOUND: usize = 24 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_upload_is_streamed_to_the_instance_while_it_is_sent_with_memory_bounded() {
    let mut s = setup().await;
    let before = peak_rss();
    let (go, going) = mpsc::unbounded_channel::<()>();
    // The first piece, then the rest only once the instance has the first: a proxy that waits
    // for the whole body before forwarding it never gets there.
    let pieces = futures_util::stream::unfold((0, going), |(n, mut going)| async move {
        if n == 1 {
            going.recv().await.expect("the go-ahead");
        }
        (n < TOTAL / PIECE).then(|| {
            let piece = Frame::data(Bytes::from(vec![b'u'; PIECE]));
            (Ok::<_, std::io::Error>(piece), (n + 1, going))
        })
    });
    let request = hyper::Request::post("/upload")
        .header("host", "proxy")
        .header("content-length", TOTAL)
        .body(StreamBody::new(pieces))
        .unwrap();
    let response = {
        let sending = send(&s.proxy, request);
        tokio::pin!(sending);
        tokio::select! {
            _ = &mut sending => panic!("answered before the upload was under way"),
            started = tokio::time::timeout(Duration::from_secs(10), s.upload_started.recv()) => {
                started.expect("the first piece reached the instance while the upload was sent").unwrap();
            }
        }
        go.send(()).unwrap();
        sending.await
    };
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, TOTAL.to_string());
    assert_eq!(s.instance.received.load(Ordering::SeqCst), TOTAL);
    let grew = peak_rss().saturating_sub(before);
    eprintln!(
        "upload of 50 MiB through the proxy: peak RSS {} KiB before, grew by {} KiB",
        before / 1024,
        grew / 1024
    );
    assert!(grew < MEMORY_BOUND, "peak RSS grew by {grew} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_download_is_streamed_to_the_client_with_memory_bounded() {
    let s = setup().await;
    let before = peak_rss();
    let response = send(&s.proxy, get_request("/download")).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut total = 0;
    while let Some(data) = next_data(&mut body).await.unwrap() {
        total += data.len();
    }
    assert_eq!(total, TOTAL);
    let grew = peak_rss().saturating_sub(before);
    eprintln!(
        "download of 50 MiB through the proxy: peak RSS {} KiB before, grew by {} KiB",
        before / 1024,
        grew / 1024
    );
    assert!(grew < MEMORY_BOUND, "peak RSS grew by {grew} bytes");
}

#[tokio::test]
async fn an_event_stream_reaches_the_client_event_by_event_and_ends_cleanly() {
    let s = setup().await;
    let response = send(&s.proxy, get_request("/stream")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[super::INSTANCE_HEADER], "old-1");
    let mut body = response.into_body();
    // The second event is not made until the first has arrived here: a proxy that waits for
    // the whole body waits forever.
    let first = tokio::time::timeout(Duration::from_secs(10), next_data(&mut body))
        .await
        .expect("the first event arrived on its own")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"event: a\ndata: 1\n\n");
    assert_eq!(s.proxy.in_flight("old-1"), 1, "an open stream is in flight");
    s.instance.go_on.notify_one();
    let second = next_data(&mut body).await.unwrap().unwrap();
    assert_eq!(&second[..], b"event: b\ndata: 2\n\n");
    assert!(
        next_data(&mut body).await.unwrap().is_none(),
        "a proper end"
    );
    drop(body);
    assert_eq!(s.proxy.in_flight("old-1"), 0);
}

#[tokio::test]
async fn a_body_the_instance_cuts_short_reaches_the_client_cut_not_clean() {
    let s = setup().await;
    let response = send(&s.proxy, get_request("/cut")).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = next_data(&mut body).await.unwrap().unwrap();
    assert_eq!(&first[..], b"event: a\ndata: 1\n\n");
    s.instance.go_on.notify_one();
    let end = next_data(&mut body).await;
    let error = end.expect_err("a cut body must not end like a complete one");
    // What the load generator and the stream clients read as a reset: the body never ended.
    assert_eq!(
        super::classify_chain(&error),
        FailureCause::Reset,
        "{error:?}"
    );
}
