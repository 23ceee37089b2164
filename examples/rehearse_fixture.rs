//! A small web service for rehearsing deploys, in five behaviours, for the tests of `rehearse`
//! (and for trying `rehearse` by hand).
//!
//! ```sh
//! cargo build --example rehearse_fixture
//! render-deploy rehearse -- target/debug/examples/rehearse_fixture well-behaved
//! ```
//!
//! It listens on `127.0.0.1:$PORT` and serves `GET /health` (200 `ok`), `GET /` (`hello from
//! $RENDER_INSTANCE_ID`), `GET /slow?ms=N` (answers after N milliseconds, 300 by default) and
//! `GET /bytes?mib=N` (N MiB, 1 by default, at most 1024, made as they are sent) and
//! `GET /events`, a server-sent event stream: an event `tick` every 200 ms, with the id
//! `$RENDER_INSTANCE_ID-N` and the `Last-Event-ID` the client sent in its data.
//! The first argument chooses how it behaves:
//!
//! - `well-behaved`: on SIGTERM it stops accepting, ends its event streams with `event:
//!   draining` and `retry: 1000`, finishes the requests in flight, closes idle connections and
//!   exits 0.
//! - `holds-streams`: as `well-behaved`, but its event streams never end, so its drain waits
//!   for them until SIGKILL.
//! - `drops-in-flight`: on SIGTERM it exits 0 at once, dropping the requests in flight.
//! - `never-healthy-new`: as `well-behaved`, but an instance named `new-…` answers 503 on
//!   `/health` forever, so a deploy of it never completes.
//! - `ignores-sigterm`: it ignores SIGTERM and serves on until SIGKILL.
//!
//! `--startup-ms N` waits N milliseconds before listening, like a service that takes time to
//! boot, so that health probes are refused at first.
//!
//! With a database (`DATABASE_URL`), for the rehearsals of a migration and of a connection
//! limit:
//!
//! - `--read-column TABLE.COLUMN`: `GET /` answers the value of `SELECT COLUMN FROM TABLE
//!   LIMIT 1`, or 500 `{"error": "…"}` with PostgreSQL's message when the query fails (a
//!   column renamed under it), as a version of a service that reads that column.
//! - `--connections N`: opens N connections at start-up and holds them (queries take them in
//!   turn), as a pool with `min_idle = N` does; `/health` answers 503 until all are open. A
//!   connection the server refuses (`too many clients already`) is said once and retried every
//!   200 ms, so a version that cannot have its pool never becomes healthy.
//!
//! And one mode that is not a service: `rehearse_fixture sql 'STATEMENTS'` runs the statements
//! on `DATABASE_URL` and exits 0, or prints PostgreSQL's error and exits 1: a migration for
//! `--setup` and `--pre-deploy` without `psql`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use futures_util::Stream;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    WellBehaved,
    DropsInFlight,
    NeverHealthyNew,
    IgnoresSigterm,
    HoldsStreams,
}

#[derive(serde::Deserialize)]
struct Size {
    mib: Option<usize>,
}

/// N MiB in 64 KiB chunks, made as they are sent (a large download that costs no memory here).
async fn bytes(Query(q): Query<Size>) -> axum::body::Body {
    let chunks = q.mib.unwrap_or(1).min(1024) * 16;
    let piece = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
    axum::body::Body::from_stream(futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::convert::Infallible>(piece.clone())),
    ))
}

#[derive(serde::Deserialize)]
struct Slow {
    ms: Option<u64>,
}

fn usage() -> ! {
    eprintln!(
        "usage: rehearse_fixture well-behaved|drops-in-flight|never-healthy-new|ignores-sigterm|holds-streams \
         [--startup-ms N] [--read-column TABLE.COLUMN] [--connections N]\n       \
         rehearse_fixture sql 'STATEMENTS'"
    );
    std::process::exit(2)
}

/// The connections a version holds, and what it reads through them.
struct Db {
    clients: RwLock<Vec<Arc<tokio_postgres::Client>>>,
    want: usize,
    next: AtomicUsize,
    query: Option<String>,
}

impl Db {
    /// Whether every connection it wants is open.
    fn ready(&self) -> bool {
        self.clients.read().map_or(0, |c| c.len()) >= self.want
    }

    /// `GET /` with `--read-column`: the column's first value, or PostgreSQL's error.
    async fn read(&self) -> (StatusCode, String) {
        let Some(query) = &self.query else {
            return (StatusCode::OK, String::new());
        };
        let client = {
            let clients = self.clients.read().expect("not poisoned");
            if clients.is_empty() {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "{\"error\": \"no connection yet\"}".to_owned(),
                );
            }
            let n = self.next.fetch_add(1, Ordering::Relaxed) % clients.len();
            clients[n].clone()
        };
        match client.query_opt(query.as_str(), &[]).await {
            Ok(Some(row)) => match row.try_get::<_, Option<String>>(0) {
                Ok(value) => (StatusCode::OK, format!("{}\n", value.unwrap_or_default())),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, error_body(&e)),
            },
            Ok(None) => (StatusCode::OK, "no rows\n".to_owned()),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, error_body(&e)),
        }
    }
}

fn error_body(e: &tokio_postgres::Error) -> String {
    let message = e
        .as_db_error()
        .map_or(e.to_string(), |d| d.message().to_owned());
    serde_json::json!({ "error": message }).to_string()
}

fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            eprintln!("rehearse_fixture: DATABASE_URL must be set");
            std::process::exit(2)
        }
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `rehearse_fixture sql 'STATEMENTS'`.
async fn run_sql(statements: &str) -> ! {
    let client = match connect(&database_url()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rehearse_fixture sql: cannot connect: {e}");
            std::process::exit(1)
        }
    };
    match client.batch_execute(statements).await {
        Ok(()) => {
            println!("ok: {statements}");
            std::process::exit(0)
        }
        Err(e) => {
            let message = e
                .as_db_error()
                .map_or(e.to_string(), |d| d.message().to_owned());
            eprintln!("ERROR: {message}");
            std::process::exit(1)
        }
    }
}

/// Opens the connections of `--connections` (one for `--read-column` alone) in the background,
/// each retried every 200 ms until the server accepts it, as a pool with `min_idle` does.
fn open_db(read_column: Option<String>, connections: usize, instance: &str) -> Option<Arc<Db>> {
    let count = if read_column.is_some() {
        connections.max(1)
    } else {
        connections
    };
    if count == 0 {
        return None;
    }
    let query = read_column.map(|column| {
        let (table, column) = column.split_once('.').unwrap_or_else(|| usage());
        let ident =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if !(ident(table) && ident(column)) {
            usage()
        }
        format!("SELECT {column}::text FROM {table} LIMIT 1")
    });
    let db = Arc::new(Db {
        clients: RwLock::new(Vec::with_capacity(count)),
        want: count,
        next: AtomicUsize::new(0),
        query,
    });
    let (url, opening, instance) = (database_url(), db.clone(), instance.to_owned());
    tokio::spawn(async move {
        let mut last_error = String::new();
        for n in 1..=count {
            loop {
                match connect(&url).await {
                    Ok(c) => {
                        opening
                            .clients
                            .write()
                            .expect("not poisoned")
                            .push(Arc::new(c));
                        break;
                    }
                    Err(e) => {
                        let message = e
                            .as_db_error()
                            .map_or(e.to_string(), |d| d.message().to_owned());
                        // Once per distinct error, not every retry.
                        if message != last_error {
                            eprintln!(
                                "{instance}: cannot open connection {n} of {count}: {message}"
                            );
                            last_error = message;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        println!("{instance}: holding {count} database connections");
    });
    Some(db)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("sql") => run_sql(&args.next().unwrap_or_else(|| usage())).await,
        Some("well-behaved") => Mode::WellBehaved,
        Some("drops-in-flight") => Mode::DropsInFlight,
        Some("never-healthy-new") => Mode::NeverHealthyNew,
        Some("ignores-sigterm") => Mode::IgnoresSigterm,
        Some("holds-streams") => Mode::HoldsStreams,
        _ => usage(),
    };
    let (mut startup, mut read_column, mut connections) = (Duration::ZERO, None, 0);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match (arg.as_str(), value.parse::<u64>().ok()) {
            ("--startup-ms", Some(ms)) => startup = Duration::from_millis(ms),
            ("--connections", Some(n)) => connections = n as usize,
            ("--read-column", _) => read_column = Some(value),
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
    let db = open_db(read_column, connections, &instance);
    let health_db = db.clone();

    let healthy = !(mode == Mode::NeverHealthyNew && instance.starts_with("new-"));
    let hello = format!("hello from {instance}\n");
    let draining = CancellationToken::new();
    let streams = Streams {
        instance: instance.clone(),
        // Only a well-behaved service ends its streams when it drains.
        draining: match mode {
            Mode::WellBehaved | Mode::NeverHealthyNew => draining.clone(),
            _ => CancellationToken::new(),
        },
    };
    let app = Router::new()
        .route(
            "/health",
            get(move || {
                // Not healthy until its pool is complete, as a service that waits for it.
                let pool_ready = health_db.as_ref().is_none_or(|db| db.ready());
                async move {
                    if healthy && pool_ready {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
        .route(
            "/",
            get(move || {
                let (db, hello) = (db.clone(), hello.clone());
                async move {
                    match db {
                        Some(db) if db.query.is_some() => db.read().await,
                        _ => (StatusCode::OK, hello),
                    }
                }
            }),
        )
        .route(
            "/slow",
            get(|Query(q): Query<Slow>| async move {
                tokio::time::sleep(Duration::from_millis(q.ms.unwrap_or(300))).await;
                "slow hello\n"
            }),
        )
        .route("/bytes", get(bytes))
        .route("/events", get(events).with_state(streams));
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
                Mode::WellBehaved | Mode::NeverHealthyNew | Mode::HoldsStreams => {
                    println!("{instance}: SIGTERM, draining");
                    draining.cancel();
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

#[derive(Clone)]
struct Streams {
    instance: String,
    draining: CancellationToken,
}

/// A tick every 200 ms until draining begins, then `draining` and the end.
async fn events(
    State(streams): State<Streams>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let ticks = futures_util::stream::unfold(Some(0u64), move |n| {
        let (streams, last_id) = (streams.clone(), last_id.clone());
        async move {
            let n = n?;
            if n > 0 {
                tokio::select! {
                    () = streams.draining.cancelled() => {
                        let bye = Event::default().event("draining").data("bye").retry(Duration::from_secs(1));
                        return Some((Ok(bye), None));
                    }
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            let data = serde_json::json!({ "n": n, "last_event_id": last_id }).to_string();
            let tick = Event::default()
                .id(format!("{}-{n}", streams.instance))
                .event("tick")
                .data(data);
            Some((Ok(tick), Some(n + 1)))
        }
    });
    Sse::new(ticks)
}
