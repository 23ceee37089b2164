//! A small web service for rehearsing deploys, in four behaviours, for the tests of `rehearse`
//! (and for trying `rehearse` by hand).
//!
//! ```sh
//! cargo build --example rehearse_fixture
//! render-deploy rehearse -- target/debug/examples/rehearse_fixture well-behaved
//! ```
//!
//! It listens on `127.0.0.1:$PORT` and serves `GET /health` (200 `ok`), `GET /` (`hello from
//! $RENDER_INSTANCE_ID`) and `GET /slow?ms=N` (answers after N milliseconds, 300 by default).
//! The first argument chooses how it behaves:
//!
//! - `well-behaved`: on SIGTERM it stops accepting, finishes the requests in flight, closes idle
//!   connections and exits 0.
//! - `drops-in-flight`: on SIGTERM it exits 0 at once, dropping the requests in flight.
//! - `never-healthy-new`: as `well-behaved`, but an instance named `new-…` answers 503 on
//!   `/health` forever, so a deploy of it never completes.
//! - `ignores-sigterm`: it ignores SIGTERM and serves on until SIGKILL.
//!
//! `--startup-ms N` waits N milliseconds before listening, like a service that takes time to
//! boot, so that health probes are refused at first.

use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    WellBehaved,
    DropsInFlight,
    NeverHealthyNew,
    IgnoresSigterm,
}

#[derive(serde::Deserialize)]
struct Slow {
    ms: Option<u64>,
}

fn usage() -> ! {
    eprintln!(
        "usage: rehearse_fixture well-behaved|drops-in-flight|never-healthy-new|ignores-sigterm [--startup-ms N]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("well-behaved") => Mode::WellBehaved,
        Some("drops-in-flight") => Mode::DropsInFlight,
        Some("never-healthy-new") => Mode::NeverHealthyNew,
        Some("ignores-sigterm") => Mode::IgnoresSigterm,
        _ => usage(),
    };
    let mut startup = Duration::ZERO;
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--startup-ms", Some(ms)) => startup = Duration::from_millis(ms),
            _ => usage(),
        }
    }
    let port: u16 = match std::env::var("PORT").ok().and_then(|p| p.parse().ok()) {
        Some(p) => p,
        None => {
            eprintln!("rehearse_fixture: PORT must be set to a port number");
            std::process::exit(2)
        }
    };
    let instance = std::env::var("RENDER_INSTANCE_ID").unwrap_or_else(|_| "fixture".to_owned());
    // Installed before anything else, so that SIGTERM during start-up follows the mode too.
    let mut term = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    tokio::time::sleep(startup).await;

    let healthy = !(mode == Mode::NeverHealthyNew && instance.starts_with("new-"));
    let hello = format!("hello from {instance}\n");
    let app = Router::new()
        .route(
            "/health",
            get(move || async move {
                if healthy {
                    (StatusCode::OK, "ok\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .route("/", get(move || std::future::ready(hello.clone())))
        .route(
            "/slow",
            get(|Query(q): Query<Slow>| async move {
                tokio::time::sleep(Duration::from_millis(q.ms.unwrap_or(300))).await;
                "slow hello\n"
            }),
        );
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rehearse_fixture: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1)
        }
    };
    println!(
        "{instance}: listening on 127.0.0.1:{port} (pid {})",
        std::process::id()
    );
    let shutdown = async move {
        loop {
            term.recv().await;
            match mode {
                Mode::WellBehaved | Mode::NeverHealthyNew => {
                    println!("{instance}: SIGTERM, draining");
                    return;
                }
                Mode::DropsInFlight => {
                    println!("{instance}: SIGTERM, exiting at once");
                    std::process::exit(0);
                }
                Mode::IgnoresSigterm => println!("{instance}: SIGTERM, ignored"),
            }
        }
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("rehearse_fixture: {e}");
        std::process::exit(1);
    }
    println!("drained, bye");
}
