//! A stdout that nobody reads (a stalled log collector) must never stall a request: the log
//! line goes to a bounded queue, and what does not fit is dropped and counted on `/metrics`.

use std::io::BufReader;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;
use crate::support::{canary, env};

/// `render_deploy_log_lines_dropped_total` as `/metrics` shows it (0 before the first drop).
fn dropped_lines(port: u16) -> u64 {
    let auth = format!("Bearer {}", canary::METRICS_TOKEN);
    let resp = request(port, "GET", "/metrics", &[("Authorization", &auth)], b"").unwrap();
    assert_eq!(resp.status, 200, "{resp:?}");
    resp.body
        .lines()
        .find_map(|l| l.strip_prefix("render_deploy_log_lines_dropped_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn a_stdout_nobody_reads_does_not_stop_livez_from_answering() {
    let port = free_port();
    // No database is needed for `/livez`; the pool's retries only add log lines.
    let env = env::with(
        env::service("postgres://app:pw@127.0.0.1:1/app?sslmode=disable", port),
        &[
            ("METRICS_TOKEN", canary::METRICS_TOKEN),
            ("RUST_LOG", "info"),
        ],
    );
    let mut app = Running::start_with_unread_stdout(&["serve"], &env);
    app.wait_listening();

    // Log lines until the pipe and the writer's whole queue are full and lines are being
    // dropped: proof that stdout is blocked. Every request in between must be answered.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut sent = 0u64;
    loop {
        for _ in 0..500 {
            send(&mut stream, "GET", "/livez", &[], b"", true).unwrap();
            let resp = read_response(&mut reader).expect("answered while stdout is blocked");
            assert_eq!(resp.status, 200, "{resp:?}");
            sent += 1;
        }
        if dropped_lines(port) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no log line dropped after {sent} requests: is stdout really blocked?"
        );
    }

    // Stdout is blocked now: fresh connections and kept-alive ones are still answered at once.
    for _ in 0..50 {
        let resp = request(port, "GET", "/livez", &[], b"").unwrap();
        assert_eq!(resp.status, 200, "{resp:?}");
        send(&mut stream, "GET", "/livez", &[], b"", true).unwrap();
        assert_eq!(read_response(&mut reader).unwrap().status, 200);
    }
    assert!(dropped_lines(port) > 0);
}
