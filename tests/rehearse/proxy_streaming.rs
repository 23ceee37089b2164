//! The rehearsal's front proxy streams bodies both ways: an upload reaches the instance while
//! it is being sent, an event stream reaches the client event by event, 50 MiB pass either way
//! with the memory bounded, and a body the instance cuts short reaches the client cut, not clean.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::routing::{get, post};
use render_deploy::rehearse::proxy::{Backend, Proxy};
use tokio::sync::{Notify, mpsc};

use crate::support::*;

const MIB: usize = 1 << 20;
const TOTAL: usize = 50 * MIB;
const PIECE: usize = 64 * 1024;

#[derive(Clone)]
struct Instance {
    /// Sent once, when the first bytes of an upload arrive.
    upload_started: mpsc::UnboundedSender<()>,
    /// Lets `/stream` send its second event.
    go_on: Arc<Notify>,
    received: Arc<AtomicUsize>,
}

/// Counts an upload's bytes as they arrive, answering the total.
async fn upload(State(instance): State<Instance>, body: Body) -> String {
    let mut body = body.into_data_stream();
    let mut total = 0;
    let mut first = true;
    while let Some(piece) = futures_util::StreamExt::next(&mut body).await {
        total += piece.expect("upload body").len();
        if first {
            first = false;
            let _ = instance.upload_started.send(());
        }
    }
    instance.received.store(total, Ordering::SeqCst);
    total.to_string()
}

/// 50 MiB, 64 KiB at a time, made as it is read.
async fn download() -> Body {
    let pieces = futures_util::stream::iter(
        (0..TOTAL / PIECE).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; PIECE]))),
    );
    Body::from_stream(pieces)
}

/// One event, then (when the test says so) another, then the end.
async fn stream(State(instance): State<Instance>) -> Body {
    let events = futures_util::stream::unfold(0, move |n| {
        let go_on = Arc::clone(&instance.go_on);
        async move {
            match n {
                0 => Some((
                    Ok::<_, std::io::Error>(Bytes::from("event: a\ndata: 1\n\n")),
                    1,
                )),
                1 => {
                    go_on.notified().await;
                    Some((Ok(Bytes::from("event: b\ndata: 2\n\n")), 2))
                }
                _ => None,
            }
        }
    });
    Body::from_stream(events)
}

/// Two events, then (when the test has them) the instance fails: the body ends without its
/// last chunk.
async fn cut(State(instance): State<Instance>) -> Body {
    let events = futures_util::stream::unfold(0, move |n| {
        let go_on = Arc::clone(&instance.go_on);
        async move {
            match n {
                0 => Some((
                    Ok(Bytes::from("event: a\ndata: 1\n\nevent: b\ndata: 2\n\n")),
                    1,
                )),
                1 => {
                    go_on.notified().await;
                    Some((Err(std::io::Error::other("the instance died")), 2))
                }
                _ => None,
            }
        }
    });
    Body::from_stream(events)
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

fn connect(proxy: &Proxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
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
// `cargo test` the other tests of the binary would share it, hence a bound on the growth.
const MEMORY_BOUND: usize = 24 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_upload_is_streamed_to_the_instance_while_it_is_sent_with_memory_bounded() {
    let mut s = setup().await;
    let before = peak_rss();
    let mut stream = connect(&s.proxy);
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let handle = tokio::task::spawn_blocking(move || {
            write_head(&mut stream, "POST", "/upload", &[], TOTAL, false).unwrap();
            let piece = vec![b'u'; PIECE];
            stream.write_all(&piece).unwrap();
            // The rest only once the instance has the first piece: a proxy that waits for the
            // whole body before forwarding it never gets there.
            rx.blocking_recv()
                .expect("the instance saw the upload start");
            for _ in 1..TOTAL / PIECE {
                stream.write_all(&piece).unwrap();
            }
        });
        (handle, tx)
    };
    tokio::time::timeout(Duration::from_secs(10), s.upload_started.recv())
        .await
        .expect("the first piece reached the instance before the upload ended")
        .unwrap();
    writer.1.send(()).unwrap();
    writer.0.await.unwrap();
    let response = tokio::task::spawn_blocking(move || {
        read_response(&mut BufReader::new(&mut stream)).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, TOTAL.to_string());
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
    let mut stream = connect(&s.proxy);
    let (status, total) = tokio::task::spawn_blocking(move || {
        write_head(&mut stream, "GET", "/download", &[], 0, false).unwrap();
        let mut reader = BufReader::new(stream);
        let (status, _) = read_head(&mut reader).unwrap();
        let mut total = 0;
        while let Some(data) = read_chunk(&mut reader).unwrap() {
            total += data.len();
        }
        (status, total)
    })
    .await
    .unwrap();
    assert_eq!((status, total), (200, TOTAL));
    let grew = peak_rss().saturating_sub(before);
    eprintln!(
        "download of 50 MiB through the proxy: peak RSS {} KiB before, grew by {} KiB",
        before / 1024,
        grew / 1024
    );
    assert!(grew < MEMORY_BOUND, "peak RSS grew by {grew} bytes");
    drop(s);
}

#[tokio::test]
async fn an_event_stream_reaches_the_client_event_by_event_and_ends_cleanly() {
    let s = setup().await;
    let mut stream = connect(&s.proxy);
    write_head(&mut stream, "GET", "/stream", &[], 0, true).unwrap();
    let go_on = Arc::clone(&s.instance.go_on);
    let (first, rest, end) = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader).unwrap();
        assert_eq!(status, 200);
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "x-rehearse-instance" && v == "old-1")
        );
        // The second event is not made until the first has arrived here.
        let first = read_chunk(&mut reader).unwrap().unwrap();
        go_on.notify_one();
        let rest = read_chunk(&mut reader).unwrap().unwrap();
        (first, rest, read_chunk(&mut reader).unwrap())
    })
    .await
    .unwrap();
    assert_eq!(first, b"event: a\ndata: 1\n\n");
    assert_eq!(rest, b"event: b\ndata: 2\n\n");
    assert_eq!(end, None, "the last chunk was passed on");
    assert_eq!(s.proxy.in_flight("old-1"), 0);
}

#[tokio::test]
async fn a_body_the_instance_cuts_short_reaches_the_client_cut_not_clean() {
    let s = setup().await;
    let mut stream = connect(&s.proxy);
    write_head(&mut stream, "GET", "/cut", &[], 0, true).unwrap();
    let go_on = Arc::clone(&s.instance.go_on);
    let (chunks, end) = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stream);
        let (status, _) = read_head(&mut reader).unwrap();
        assert_eq!(status, 200);
        let mut chunks = vec![read_chunk(&mut reader).unwrap().unwrap()];
        go_on.notify_one();
        loop {
            match read_chunk(&mut reader) {
                Ok(Some(data)) => chunks.push(data),
                other => return (chunks, other),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        chunks.concat(),
        b"event: a\ndata: 1\n\nevent: b\ndata: 2\n\n"
    );
    let error = end.expect_err("a cut body must not end with its last chunk");
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ),
        "{error:?}"
    );
}
