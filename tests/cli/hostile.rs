//! The real binary under hostile load, over loopback: a flood of unsigned 1 MiB uploads, and
//! a connection flood with the file limit lowered. Memory is read from `/proc/<pid>/status`.
//!
//! Each "answers within 1 s" is a per-request deadline (a liveness bound, with a wide margin
//! over the few milliseconds these answers take on an idle machine), not a speed measurement;
//! the figures are in `scripts/bench-hostile.sh`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::canary::METRICS_TOKEN;
use crate::support::hostile::{self, Loiter, MIB, Memory, WELL_FORMED_SIGNATURE};
use crate::support::{Running, env, free_port, prerequisite_missing, signed_headers, unix_now};
use render_deploy::local_postgres::LocalPostgres;
use tokio::net::TcpStream;
use tokio::sync::Barrier;

const PROBE_DEADLINE: Duration = Duration::from_secs(1);
const UPLOADS: usize = 400;
/// Each of the 400 uploads, once refused, comes back this many times in all (so the flood
/// lasts long enough for probes to run through it).
const ROUNDS: usize = 3;

async fn database() -> (LocalPostgres, String) {
    let pg = LocalPostgres::start().expect("throwaway PostgreSQL");
    let url = pg.create_database().await.expect("create database");
    (pg, url)
}

fn service_env(url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = env::service(url, free_port());
    env.push(("METRICS_TOKEN".into(), METRICS_TOKEN.into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

async fn signed_delivery(port: u16, id: &str) -> hostile::Answer {
    let body = br#"{"type":"deploy_ended","data":{"serviceId":"srv-1"}}"#;
    let headers = signed_headers(id, unix_now(), body);
    hostile::request(
        port,
        "POST",
        "/hooks/deploy",
        &headers,
        body,
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|e| panic!("signed delivery {id}: {e}"))
}

/// `/livez` and `/health` from a thread of its own, each within its deadline, until `done`;
/// every answer's time. `first` is told once the first pair has been answered.
fn probe_until(
    port: u16,
    done: Arc<AtomicBool>,
    first: Arc<tokio::sync::Notify>,
) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let mut took = Vec::new();
        while !done.load(Ordering::SeqCst) {
            for path in ["/livez", "/health"] {
                let answer = hostile::probe(port, path, PROBE_DEADLINE)
                    .unwrap_or_else(|e| panic!("{path} during the flood: {e}"));
                assert_eq!(answer.status, 200, "{path}: {}", answer.raw);
                took.push(answer.took);
            }
            first.notify_one();
        }
        took
    })
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hundred_unsigned_1_mib_uploads_leave_memory_bounded_and_the_service_answering() {
    let (_pg, url) = database().await;
    let mut app = Running::start(&["serve"], &service_env(&url, &[]));
    app.wait_listening();
    app.wait_health(200, Duration::from_secs(10));
    let (port, pid) = (app.port, app.child.id());
    let before = Memory::of(pid).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let first_probe = Arc::new(tokio::sync::Notify::new());
    let prober = probe_until(port, done.clone(), first_probe.clone());
    first_probe.notified().await;

    // Every upload connects first; then all send at once.
    let barrier = Arc::new(Barrier::new(UPLOADS + 1));
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|i| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut first = Some(hostile::connect_uploader(port).await.unwrap());
                barrier.wait().await;
                let mut ends = Vec::new();
                for round in 0..ROUNDS {
                    let stream = match first.take() {
                        Some(stream) => stream,
                        None => hostile::connect_uploader(port).await?,
                    };
                    let head =
                        hostile::hostile_head("v1,AAAA", 1, &format!("msg_flood_{i}_{round}"));
                    ends.push(hostile::upload(stream, &head, Duration::from_secs(30)).await?);
                }
                Ok::<_, std::io::Error>(ends)
            })
        })
        .collect();
    barrier.wait().await;
    let during = signed_delivery(port, "msg_during_flood").await;
    let mut ends = Vec::new();
    for upload in uploads {
        ends.extend(
            upload
                .await
                .unwrap()
                .expect("every upload ends within 30 s"),
        );
    }
    let peak = Memory::of(pid).unwrap();
    done.store(true, Ordering::SeqCst);
    let probes = prober
        .join()
        .expect("every probe answered within its deadline");
    let after = signed_delivery(port, "msg_after_flood").await;

    assert!(
        during.status == 202 || (during.status == 503 && during.header("retry-after").is_some()),
        "a signed delivery during the flood: {}",
        during.raw
    );
    assert_eq!(after.status, 202, "right after the flood: {}", after.raw);
    let answered: Vec<_> = ends.iter().filter_map(|e| e.status).collect();
    assert!(answered.iter().all(|&s| s == 401), "{answered:?}");
    assert!(!answered.is_empty(), "no upload read its 401");
    let (count, median, max) = hostile::summary(&probes);
    eprintln!(
        "rss before {} KiB, peak {} KiB, after {} KiB; {count} probes, median {median:?}, max \
         {max:?}; {} of {} uploads read their 401; body bytes taken at most {}",
        before.rss_kib,
        peak.hwm_kib,
        Memory::of(pid).unwrap().rss_kib,
        answered.len(),
        ends.len(),
        ends.iter().map(|e| e.body_sent).max().unwrap_or(0),
    );
    assert!(
        peak.hwm_kib < 64 * 1024,
        "peak RSS {} KiB (before: {} KiB)",
        peak.hwm_kib,
        before.rss_kib
    );
    assert!(app.child.try_wait().unwrap().is_none(), "{}", app.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_or_malformed_delivery_announcing_1_mib_gets_its_401_before_sending_its_body() {
    let (_pg, url) = database().await;
    let mut app = Running::start(&["serve"], &service_env(&url, &[]));
    app.wait_listening();
    let now = unix_now();
    for (signature, timestamp, reason) in [
        (WELL_FORMED_SIGNATURE, 1, "timestamp_too_old"),
        ("v1,AAAA", now, "malformed_header"),
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        let head = hostile::hostile_head(signature, timestamp, "msg_headers_only");
        tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
            .await
            .unwrap();
        // Not a byte of body: the answer must come anyway.
        let mut raw = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut raw),
        )
        .await
        .unwrap_or_else(|_| panic!("{reason}: no answer while the body is withheld"))
        .unwrap();
        let raw = String::from_utf8_lossy(&raw);
        assert_eq!(hostile::status_of(raw.as_bytes()), Some(401), "{raw}");
        assert!(
            raw.to_ascii_lowercase().contains("connection: close"),
            "{raw}"
        );
        assert!(raw.ends_with(r#"{"error":"invalid signature"}"#), "{raw}");
        // The answer can overtake its log line through the pipe: wait for the line (woken by
        // each line that arrives; off the runtime's workers, as it blocks).
        tokio::task::block_in_place(|| {
            app.wait_stdout(Duration::from_secs(10), |out| {
                out.contains(reason).then_some(())
            })
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_formed_unsigned_uploads_beyond_the_in_flight_budget_get_503_and_are_counted() {
    let (_pg, url) = database().await;
    let mut app = Running::start(&["serve"], &service_env(&url, &[]));
    app.wait_listening();
    let port = app.port;
    // 8 MiB (the default budget) holds eight of these; their bodies never come.
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let mut held = Vec::new();
    for i in 0..12 {
        let head = hostile::hostile_head(WELL_FORMED_SIGNATURE, unix_now(), &format!("msg_b{i}"));
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
            .await
            .unwrap();
        let answers = answers.clone();
        held.push(tokio::spawn(async move {
            let mut raw = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut raw).await;
            let _ = answers.send(String::from_utf8_lossy(&raw).into_owned());
        }));
    }
    // The four beyond the budget are answered at once, unread; the eight wait for their body.
    let mut refused = Vec::new();
    while refused.len() < 4 {
        let raw = tokio::time::timeout(Duration::from_secs(10), answered.recv())
            .await
            .expect("four answers")
            .unwrap();
        refused.push(raw);
    }
    for raw in &refused {
        assert_eq!(hostile::status_of(raw.as_bytes()), Some(503), "{raw}");
        assert!(raw.to_ascii_lowercase().contains("retry-after: 2"), "{raw}");
    }
    let headers = vec![(
        "authorization".to_owned(),
        format!("Bearer {METRICS_TOKEN}"),
    )];
    let metrics = hostile::request(
        port,
        "GET",
        "/metrics",
        &headers,
        b"",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let over = metric(
        &metrics.raw,
        r#"render_deploy_hook_deliveries_total{outcome="over_budget"}"#,
    );
    assert_eq!(over, 4.0, "{}", metrics.raw);
    let inflight = metric(&metrics.raw, "render_deploy_hook_inflight_body_bytes");
    assert_eq!(
        inflight,
        (8 * MIB) as f64,
        "the eight still held: {}",
        metrics.raw
    );
    assert!(answered.try_recv().is_err(), "only four were answered");
    for upload in held {
        upload.abort();
    }
}

/// Holds `kept` idle keep-alive connections, then `silent` and `slow` loitering ones, and
/// probes `/livez` while they are held; returns the probes' times.
async fn connection_flood(port: u16, kept: usize, silent: usize, slow: usize) -> Vec<Duration> {
    let mut held = Vec::new();
    for _ in 0..kept {
        held.push(hostile::kept_alive(port).await.expect("kept alive"));
    }
    for i in 0..silent + slow {
        let how = if i % 2 == 0 && i / 2 < slow {
            Loiter::SlowHeader
        } else {
            Loiter::Silent
        };
        // The kernel completes the handshake even while the server is full.
        held.push(hostile::loiter(port, how).await.expect("connect"));
    }
    let mut took = Vec::new();
    for _ in 0..10 {
        let answer = hostile::get(port, "/livez", PROBE_DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("/livez with {} connections held: {e}", held.len()));
        assert_eq!(answer.status, 200, "{}", answer.raw);
        took.push(answer.took);
    }
    drop(held);
    took
}

async fn under_file_limit_256(max_connections: Option<&str>) {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        return prerequisite_missing("prlimit", "apt-get install util-linux");
    }
    let (_pg, url) = database().await;
    let extra: Vec<(&str, &str)> = max_connections
        .map(|m| ("MAX_CONNECTIONS", m))
        .into_iter()
        .collect();
    let mut app = Running::start_with_file_limit(256, &["serve"], &service_env(&url, &extra));
    app.wait_listening();
    app.wait_health(200, Duration::from_secs(10));

    let took = connection_flood(app.port, 100, 250, 250).await;
    let (count, median, max) = hostile::summary(&took);
    let output = app.output();
    let accept_lines = output
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    eprintln!(
        "MAX_CONNECTIONS={max_connections:?}: {count} /livez probes, median {median:?}, max \
         {max:?}; {accept_lines} accept-failure lines"
    );
    assert!(accept_lines <= 4, "{accept_lines} lines: {output}");
    // The service is whole afterwards.
    assert_eq!(app.wait_health(200, Duration::from_secs(10)).status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_256_descriptors_600_idle_or_slow_header_connections_do_not_stop_livez() {
    under_file_limit_256(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cap_above_the_file_limit_backs_off_logs_once_per_burst_and_still_answers() {
    // Above the limit on purpose: accepts fail with EMFILE before the cap is reached.
    under_file_limit_256(Some("1000")).await;
}
