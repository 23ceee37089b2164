//! End-to-end tests of `serve`: the real binary against a real PostgreSQL, over loopback.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;
use crate::support::{canary, env};
use nix::sys::signal::Signal;
use render_deploy::local_postgres::LocalPostgres;

const METRICS_TOKEN: &str = "in-flight-test-token";

/// Polls `/metrics` until the server counts at least `n` requests in flight.
fn wait_in_flight(port: u16, n: u32, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    let auth = format!("Bearer {METRICS_TOKEN}");
    loop {
        let resp = request(port, "GET", "/metrics", &[("authorization", &auth)], b"");
        let count = resp.as_ref().ok().and_then(|r| {
            r.body
                .lines()
                .find_map(|l| l.strip_prefix("render_deploy_http_requests_in_flight "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if count.is_some_and(|c| c >= f64::from(n)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {n} requests in flight after {within:?}: {count:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn database() -> (LocalPostgres, String) {
    let pg = LocalPostgres::start().expect("throwaway PostgreSQL");
    let url = pg.create_database().await.expect("create database");
    (pg, url)
}

fn serve(url: &str, extra: &[(&str, &str)]) -> Running {
    let mut env = env::service(url, free_port());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut app = Running::start(&["serve"], &env);
    app.wait_listening();
    app
}

#[tokio::test]
async fn a_delivery_still_uploading_at_sigterm_gets_its_answer_and_the_process_exits_0() {
    let (_pg, url) = database().await;
    let mut app = serve(&url, &[("METRICS_TOKEN", METRICS_TOKEN)]);
    app.wait_health(200, Duration::from_secs(10));

    let body = br#"{"type":"deploy_ended","data":{"serviceId":"srv-1"}}"#;
    let headers = signed_headers("msg_inflight", unix_now(), body);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    write_head(
        &mut stream,
        "POST",
        "/hooks/deploy",
        &headers,
        body.len(),
        false,
    )
    .unwrap();
    stream.write_all(&body[..10]).unwrap();
    stream.flush().unwrap();
    // The delivery is in the handler, reading its body: the server counts it (and the scrape).
    wait_in_flight(app.port, 2, Duration::from_secs(10));

    app.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(300)); // past the linger: the upload is what holds it
    stream.write_all(&body[10..]).unwrap();
    let resp = read_response(&mut BufReader::new(stream)).unwrap();
    assert_eq!(resp.status, 202, "{resp:?}");

    let (status, took) = app.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", app.output());
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
}

#[tokio::test]
async fn idle_keep_alive_connections_do_not_delay_exit() {
    let (_pg, url) = database().await;
    let mut app = serve(&url, &[]);
    let _idle: Vec<_> = (0..5).map(|_| kept_alive(app.port)).collect();
    app.signal(Signal::SIGTERM);
    let (status, took) = app.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", app.output());
    // SHUTDOWN_TIMEOUT is 25 s: exit must not wait for the clients to hang up.
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
}

#[tokio::test]
async fn a_client_stuck_in_its_headers_cannot_hold_shutdown_open() {
    let (_pg, url) = database().await;
    let mut app = serve(&url, &[("HEADER_READ_TIMEOUT", "1")]);
    let mut stuck = TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    stuck
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    app.signal(Signal::SIGTERM);
    let (status, took) = app.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", app.output());
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?} with a 1 s header timeout"
    );
}

#[tokio::test]
async fn after_sigterm_open_connections_see_draining_and_new_ones_are_refused() {
    let (_pg, url) = database().await;
    // A long linger so that the test's own pace cannot race the close of idle connections.
    let mut app = serve(&url, &[("SHUTDOWN_LINGER_MS", "3000")]);
    app.wait_health(200, Duration::from_secs(10));
    let mut conns: Vec<_> = (0..2).map(|_| kept_alive(app.port)).collect();
    app.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));

    let (s, r) = &mut conns[0];
    send(s, "GET", "/livez", &[], b"", true).unwrap();
    let livez = read_response(r).unwrap();
    assert_eq!(livez.status, 503, "{livez:?}");
    assert_eq!(livez.header("connection"), Some("close"));

    let (s, r) = &mut conns[1];
    send(s, "GET", "/health", &[], b"", true).unwrap();
    let health = read_response(r).unwrap();
    assert_eq!(health.status, 503, "{health:?}");
    assert_eq!(health.json()["status"], "draining");

    let refused = TcpStream::connect(("127.0.0.1", app.port));
    assert!(
        refused.is_err(),
        "a new connection was accepted while draining"
    );

    let (status, _) = app.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", app.output());
}

#[tokio::test]
async fn a_database_away_at_start_up_is_waited_for_without_a_restart() {
    let (mut pg, url) = database().await;
    pg.stop().unwrap();
    let mut app = serve(&url, &[]);
    let before = app.wait_health(503, Duration::from_secs(5));
    assert_eq!(before.status, 503, "{before:?}");
    assert_eq!(before.json()["status"], "unhealthy");

    pg.restart().unwrap();
    let after = app.wait_health(200, Duration::from_secs(20));
    assert_eq!(after.status, 200, "{after:?}");
    assert!(
        app.child.try_wait().unwrap().is_none(),
        "the process restarted or exited"
    );

    let root = request(app.port, "GET", "/", &[], b"").unwrap();
    assert_eq!(root.status, 200, "{root:?}");
    assert!(root.json()["database_time"].is_string());
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_errors_are_json() {
    let (_pg, url) = database().await;
    let app = serve(&url, &[]);
    let mine = request(
        app.port,
        "GET",
        "/livez",
        &[("x-request-id", "req-42")],
        b"",
    )
    .unwrap();
    assert_eq!(mine.header("x-request-id"), Some("req-42"));
    let made = request(app.port, "GET", "/nope", &[], b"").unwrap();
    assert_eq!(made.status, 404);
    assert!(made.header("x-request-id").is_some_and(|v| v.len() >= 16));
    assert!(made.json()["error"].is_string());
    let bad = request(app.port, "POST", "/hooks/deploy", &[], b"{}").unwrap();
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["error"], "invalid signature");
}

#[tokio::test]
async fn a_wrong_method_is_a_json_405_that_keeps_its_allow_header() {
    let (_pg, url) = database().await;
    let app = serve(&url, &[]);
    for (method, path, allowed) in [
        ("GET", "/hooks/deploy", "POST"),
        ("POST", "/health", "GET,HEAD"),
        ("DELETE", "/", "GET,HEAD"),
    ] {
        let response = request(app.port, method, path, &[], b"").unwrap();
        assert_eq!(response.status, 405, "{method} {path}: {response:?}");
        assert_eq!(response.header("allow"), Some(allowed), "{method} {path}");
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
        assert_eq!(
            response.json(),
            serde_json::json!({ "error": "method not allowed" }),
            "{method} {path}"
        );
        assert!(response.header("x-request-id").is_some(), "{method} {path}");
    }
}

#[tokio::test]
async fn metrics_are_404_without_a_token_401_with_a_wrong_one_and_text_with_the_right_one() {
    let (_pg, url) = database().await;
    let without = serve(&url, &[]);
    assert_eq!(
        request(without.port, "GET", "/metrics", &[], b"")
            .unwrap()
            .status,
        404
    );
    drop(without);

    let app = serve(&url, &[("METRICS_TOKEN", canary::METRICS_TOKEN)]);
    let _ = request(app.port, "GET", "/livez", &[], b"").unwrap();
    assert_eq!(
        request(app.port, "GET", "/metrics", &[], b"")
            .unwrap()
            .status,
        401
    );
    let wrong = request(
        app.port,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(wrong.unwrap().status, 401);
    let auth = format!("Bearer {}", canary::METRICS_TOKEN);
    let ok = request(
        app.port,
        "GET",
        "/metrics",
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(
        ok.body.contains("render_deploy_http_requests_total"),
        "{}",
        ok.body
    );
    assert!(ok.body.contains("render_deploy_pool_"), "{}", ok.body);
    assert!(!ok.body.contains(canary::METRICS_TOKEN));
}

#[tokio::test]
async fn no_secret_appears_in_anything_the_process_prints_at_any_log_level() {
    let (pg, url) = database().await;
    let db_password = {
        use secrecy::ExposeSecret;
        pg.password().expose_secret().to_owned()
    };
    for level in ["trace", "debug", "info"] {
        let mut app = serve(
            &url,
            &[
                ("RUST_LOG", level),
                ("METRICS_TOKEN", canary::METRICS_TOKEN),
                ("LOG_FORMAT", "json"),
            ],
        );
        app.wait_health(200, Duration::from_secs(10));
        // Errors of every kind: bad signatures, a wrong metrics token, a stale delivery.
        let _ = request(
            app.port,
            "POST",
            "/hooks/deploy",
            &[("webhook-id", "x")],
            b"{}",
        );
        let stale = signed_headers("msg_stale", unix_now() - 10_000, b"{}");
        let stale: Vec<(&str, &str)> = stale
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let _ = request(app.port, "POST", "/hooks/deploy", &stale, b"{}");
        let auth = format!("Bearer {}", canary::METRICS_TOKEN);
        let _ = request(
            app.port,
            "GET",
            "/metrics",
            &[("Authorization", &auth)],
            b"",
        );
        let _ = request(
            app.port,
            "GET",
            "/metrics",
            &[("Authorization", "Bearer wrong")],
            b"",
        );
        let _ = request(app.port, "GET", "/", &[], b"");
        app.signal(Signal::SIGTERM);
        let (status, _) = app.wait_exit(Duration::from_secs(10));
        assert!(status.success());
        let out = app.output();
        assert!(
            out.len() > 100,
            "the process printed little at {level}: {out}"
        );
        for canary in [
            canary::OPENAI_API_KEY,
            canary::TWILIO_AUTH_TOKEN,
            canary::METRICS_TOKEN,
            &canary::hook_secret_whsec(),
            std::str::from_utf8(canary::HOOK_SECRET_RAW).unwrap(),
            &db_password,
        ] {
            assert!(!out.contains(canary), "{canary} leaked at {level}:\n{out}");
        }
    }
}

#[test]
fn dev_runs_on_a_throwaway_database_and_removes_it_after_ctrl_c() {
    let port = free_port();
    let mut app = Running::start(&["dev"], &[("PORT".to_owned(), port.to_string())]);
    app.wait_listening();
    let health = app.wait_health(200, Duration::from_secs(20));
    assert_eq!(health.status, 200, "{health:?}");
    let root = request(app.port, "GET", "/", &[], b"").unwrap();
    assert_eq!(root.status, 200, "{root:?}");

    let stderr = app.stderr.lock().unwrap().clone();
    let dir = stderr
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split(" (removed on exit)").next())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("no cluster folder announced: {stderr}"));
    assert!(dir.exists(), "{dir:?}");
    let db_port: u16 = stderr
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap();

    app.signal(Signal::SIGINT);
    let (status, _) = app.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}: {}", app.output());
    assert!(
        !dir.exists(),
        "the throwaway cluster's folder outlived dev: {dir:?}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", db_port)).is_err(),
        "the throwaway PostgreSQL still listens"
    );
}

#[tokio::test]
async fn a_stalled_upload_cannot_hold_shutdown_past_shutdown_timeout() {
    let (_pg, url) = database().await;
    let mut app = serve(&url, &[("SHUTDOWN_TIMEOUT", "1")]);
    // Signed, so its headers pass and the server waits for the body (an unsigned one is now
    // refused from its headers at once).
    let body = [b' '; 1000];
    let headers = signed_headers("msg_stalled", unix_now(), &body);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut stalled = TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    write_head(
        &mut stalled,
        "POST",
        "/hooks/deploy",
        &headers,
        body.len(),
        false,
    )
    .unwrap();
    stalled.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    app.signal(Signal::SIGTERM);
    let (status, took) = app.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", app.output());
    assert!(
        took >= Duration::from_millis(900),
        "cut off before the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?} with SHUTDOWN_TIMEOUT=1"
    );
    assert!(
        app.output().contains("shutdown timeout reached"),
        "{}",
        app.output()
    );
}

#[test]
fn serve_exits_78_for_any_configuration_problem_and_1_when_the_port_is_taken() {
    let port = free_port();
    let run = |env: Vec<(String, String)>| {
        let mut app = Running::start(&["serve"], &env);
        let (status, _) = app.wait_exit(Duration::from_secs(20));
        (status.code(), app.output())
    };
    // Every problem at once, never a partial start.
    let mut env = env::service("mysql://u:p@h/db", port);
    env.retain(|(k, _)| k != "TWILIO_ACCOUNT_SID");
    env.push(("PORT".into(), "18012".into()));
    let (code, out) = run(env);
    assert_eq!(code, Some(78), "{out}");
    for var in ["DATABASE_URL", "TWILIO_ACCOUNT_SID", "PORT"] {
        assert!(out.contains(&format!("{var}: ")), "{var} not named: {out}");
    }
    // Valid variables that the pool cannot use (a missing CA file) are a configuration error too.
    let url = "postgres://u:p@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem";
    let (code, out) = run(env::service(url, port));
    assert_eq!(code, Some(78), "{out}");
    assert!(out.contains("/nonexistent/ca.pem"), "{out}");
    // A port in use is not a configuration problem.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let (code, out) = run(env::service("postgres://u:p@127.0.0.1:1/db", busy));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot listen"), "{out}");
}

/// Waits for a line of the process's stdout that satisfies `wanted`; that line as JSON.
fn wait_log_line(app: &Running, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    app.wait_stdout(Duration::from_secs(10), |stdout| {
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|line| wanted(line))
    })
}

#[tokio::test]
async fn a_handlers_events_carry_the_request_id_and_the_request_line_its_fields_with_or_without_a_span_filter()
 {
    let (_pg, url) = database().await;
    // A plain RUST_LOG: the id rides without a span; one with a span directive: in the span.
    let mut shapes = Vec::new();
    for rust_log in ["info", "info,[request]=info"] {
        let app = serve(&url, &[("LOG_FORMAT", "json"), ("RUST_LOG", rust_log)]);
        let id = format!("req-\"quoted\"-{}", shapes.len());
        let refused = request(
            app.port,
            "POST",
            "/hooks/deploy",
            &[("x-request-id", &id)],
            b"{}",
        )
        .unwrap();
        assert_eq!(refused.status, 401, "{rust_log}");
        let event = wait_log_line(&app, |l| l["message"] == "deploy hook: delivery refused");
        assert_eq!(
            event["span"],
            serde_json::json!({ "request_id": id, "name": "request" }),
            "RUST_LOG={rust_log}: {event}"
        );
        let line = wait_log_line(&app, |l| {
            l["message"] == "request" && l["route"] == "/hooks/deploy"
        });
        assert_eq!(line["method"], "POST", "{line}");
        assert_eq!(line["status"], 401, "{line}");
        assert_eq!(line["request_id"], id, "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(
            line["target"], "render_deploy::server::middleware",
            "{line}"
        );
        assert!(
            line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{line}"
        );
        assert!(
            line.get("span").is_none(),
            "logged outside the request: {line}"
        );
        let keys =
            |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        shapes.push((keys(&event), keys(&line)));
    }
    assert_eq!(shapes[0], shapes[1], "the two ways give lines of one shape");
}

#[tokio::test]
async fn rust_log_turns_the_request_line_off_by_its_target_and_leaves_it_on_otherwise() {
    let (_pg, url) = database().await;
    // The line's target is the middleware's module: filtered there, and only there.
    for (rust_log, logged) in [
        ("info,render_deploy::server::middleware=warn", false),
        ("warn", false),
        ("warn,render_deploy::server::middleware=info", true),
    ] {
        let app = serve(&url, &[("LOG_FORMAT", "json"), ("RUST_LOG", rust_log)]);
        for n in 0..2 {
            let refused = request(
                app.port,
                "POST",
                "/hooks/deploy",
                &[("x-request-id", &format!("line-{n}"))],
                b"{}",
            )
            .unwrap();
            assert_eq!(refused.status, 401, "{rust_log}");
        }
        // The second request's refusal (a warning, logged at every one of these levels) comes
        // after the first request's line, had there been one: the answer follows its line.
        wait_log_line(&app, |l| {
            l["message"] == "deploy hook: delivery refused" && l["span"]["request_id"] == "line-1"
        });
        let lines: Vec<serde_json::Value> = app
            .output()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l: &serde_json::Value| l["message"] == "request")
            .collect();
        let first = lines.iter().any(|l| l["request_id"] == "line-0");
        assert_eq!(first, logged, "RUST_LOG={rust_log}: {lines:?}");
    }
}
