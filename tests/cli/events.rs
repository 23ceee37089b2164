//! `GET /events` of the real binary across SIGTERM: the stream ends cleanly with `draining`,
//! and an open stream does not hold the shutdown open.

use std::io::BufReader;
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;
use nix::sys::signal::Signal;
use render_deploy::local_postgres::LocalPostgres;

/// Reads chunks until one holds `needle` (the event text so far is returned).
fn read_until(reader: &mut BufReader<TcpStream>, seen: &mut String, needle: &str) {
    while !seen.contains(needle) {
        match read_chunk(reader) {
            Ok(Some(data)) => seen.push_str(&String::from_utf8_lossy(&data)),
            other => panic!("stream ended before {needle:?} ({other:?}); so far: {seen:?}"),
        }
    }
}

#[tokio::test]
async fn an_open_event_stream_gets_draining_and_a_clean_end_and_does_not_hold_shutdown_open() {
    let pg = LocalPostgres::start().expect("throwaway PostgreSQL");
    let url = pg.create_database().await.expect("create database");
    let mut env = env::service(&url, free_port());
    // The default, stated: the exit below must come long before it.
    env.push(("SHUTDOWN_TIMEOUT".into(), "25".into()));
    let mut app = Running::start(&["serve"], &env);
    app.wait_listening();
    app.wait_health(200, Duration::from_secs(10));

    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write_head(&mut stream, "GET", "/events", &[], 0, true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let (status, headers) = read_head(&mut reader).unwrap();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(status, 200);
    assert_eq!(header("content-type"), Some("text/event-stream"));
    assert_eq!(header("transfer-encoding"), Some("chunked"));

    let mut seen = String::new();
    read_until(&mut reader, &mut seen, "\n\n");
    assert!(seen.starts_with("event: state\ndata: {"), "{seen:?}");
    let data: serde_json::Value =
        serde_json::from_str(seen.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(data["status"], "healthy", "{seen:?}");
    assert!(data["instance"].as_str().is_some_and(|i| !i.is_empty()));

    app.signal(Signal::SIGTERM);
    read_until(&mut reader, &mut seen, "event: draining\n");
    read_until(&mut reader, &mut seen, "\n\n");
    let draining = &seen[seen.find("event: draining\n").unwrap()..];
    assert!(draining.contains("\nretry: 1000\n"), "{draining:?}");
    assert!(draining.contains(r#""status":"draining""#), "{draining:?}");
    // The last chunk: the server ended the body, it was not cut.
    assert_eq!(read_chunk(&mut reader).unwrap(), None, "{seen:?}");

    let (status, took) = app.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}: {}", app.output());
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?} with SHUTDOWN_TIMEOUT=25"
    );
    let output = app.output();
    assert!(output.contains(r#""cut_off":0"#), "{output}");
}
