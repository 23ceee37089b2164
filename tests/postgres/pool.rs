//! The connection pool against a real PostgreSQL: sizing, faults, exhaustion, half-open
//! connections and authentication (contract §5).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use render_deploy::database_url::DatabaseUrl;
use render_deploy::local_postgres::{LocalPostgres, LocalPostgresOptions};
use render_deploy::pool::{PoolConfigError, PoolError, PoolManager, PoolMax, PoolSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn settings(max: usize) -> PoolSettings {
    PoolSettings {
        max: PoolMax::Fixed(max),
        wait_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..PoolSettings::default()
    }
}

/// Every form an error is shown in (a log line, `{:?}`, a panic message) leaves `password` out.
fn assert_hides(err: &PoolError, password: &str) {
    for shown in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
        assert!(!shown.contains(password), "the password shows in {shown}");
    }
}

fn password(pg: &LocalPostgres) -> &str {
    use secrecy::ExposeSecret;
    pg.password().expose_secret()
}

async fn backend_pid(conn: &tokio_postgres::Client) -> i32 {
    conn.query_typed_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("query on a checked-out connection")
        .get(0)
}

#[tokio::test]
async fn auto_sizing_follows_the_servers_max_connections_and_refuses_a_budget_below_one() {
    let pg = LocalPostgres::start_with(LocalPostgresOptions {
        max_connections: 40,
        ..LocalPostgresOptions::default()
    })
    .unwrap();
    // `prefer` against a server without TLS falls back to a plain connection.
    let url = pg
        .create_database()
        .await
        .unwrap()
        .replace("sslmode=disable", "sslmode=prefer");
    let url = DatabaseUrl::parse(&url).unwrap();
    let auto = PoolSettings {
        max: PoolMax::Auto,
        min_idle: 2,
        cpus: Some(8),
        ..PoolSettings::default()
    };

    // min(2×8+1 = 17, ⌊(40 − 3 reserved − 10) / (2 × 1)⌋ = 13) = 13
    let inspected = PoolManager::inspect(&url, &auto).await.unwrap();
    assert_eq!(
        (
            inspected.max_connections,
            inspected.reserved,
            inspected.chosen
        ),
        (40, 3, 13),
        "{inspected}"
    );
    assert!(!inspected.server_version.is_empty());

    let pool = PoolManager::new(&url, &auto).unwrap();
    let sizing = pool.warm_up().await.unwrap();
    assert_eq!(sizing, inspected);
    let status = pool.status();
    assert_eq!(status.max, 13);
    assert!(
        status.idle >= 2,
        "min_idle connections are open: {status:?}"
    );

    // A pool that is never warmed up sizes itself at its first checkout.
    let lazy = PoolManager::new(&url, &auto).unwrap();
    assert!(lazy.sizing().is_none());
    drop(lazy.get_connection().await.unwrap());
    assert_eq!(lazy.status().max, 13);

    // 14 instances: ⌊27 / 28⌋ = 0 connections each.
    let crowded = PoolSettings {
        instances: 14,
        ..auto.clone()
    };
    let err = PoolManager::inspect(&url, &crowded).await.unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Configuration(PoolConfigError::BudgetBelowOne { budget: 0, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("max_connections 40"), "{err}");
    assert_hides(&err, password(&pg));
    let crowded = PoolManager::new(&url, &crowded).unwrap();
    let err = crowded.warm_up().await.unwrap_err();
    assert!(matches!(err, PoolError::Configuration(_)), "{err}");
    // The refusal stands: later checkouts (a health probe, a request) get it too, not a
    // connection from the provisional pool.
    for _ in 0..2 {
        let err = crowded.get_connection().await.unwrap_err();
        assert!(matches!(err, PoolError::Configuration(_)), "{err}");
    }
}

#[tokio::test]
async fn after_every_pooled_connection_is_terminated_the_next_checkouts_all_succeed() {
    let pg = LocalPostgres::start().unwrap();
    let url = DatabaseUrl::parse(&pg.create_database().await.unwrap()).unwrap();
    let pool = PoolManager::new(&url, &settings(4)).unwrap();
    let failures = Arc::new(AtomicUsize::new(0));
    let seen = failures.clone();
    pool.on_connection_failure(move || {
        seen.fetch_add(1, Ordering::SeqCst);
    });
    pool.warm_up().await.unwrap();

    // Open all four and use them, so every one was used a moment ago (no check would run).
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.get_connection().await.unwrap());
    }
    let mut killed = HashSet::new();
    for conn in &held {
        killed.insert(backend_pid(conn).await);
    }
    drop(held);

    let admin = pg.connect("postgres").await.unwrap();
    for pid in &killed {
        // The timeout form waits until the backend is gone.
        let row = admin
            .query_one("SELECT pg_terminate_backend($1, 5000)", &[pid])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "backend {pid} terminated");
    }

    let mut fresh = Vec::new();
    for _ in 0..4 {
        let conn = pool
            .get_connection()
            .await
            .expect("a checkout after the kill");
        let pid = backend_pid(&conn).await;
        assert!(!killed.contains(&pid), "a killed connection was handed out");
        fresh.push(conn);
    }
    assert!(failures.load(Ordering::SeqCst) >= 4, "listeners were told");
    assert!(pool.status().errors >= 4);
}

#[tokio::test]
async fn a_stopped_database_fails_checkouts_within_the_timeout_and_recovers_on_its_own() {
    let mut pg = LocalPostgres::start().unwrap();
    let url = DatabaseUrl::parse(&pg.create_database().await.unwrap()).unwrap();
    let s = PoolSettings {
        wait_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        ..settings(2)
    };
    let pool = PoolManager::new(&url, &s).unwrap();
    pool.warm_up().await.unwrap();

    // Off the runtime's thread, as the server would stop on its own: the connections'
    // tasks see their sockets close meanwhile.
    let mut pg = tokio::task::spawn_blocking(move || {
        pg.stop().unwrap();
        pg
    })
    .await
    .unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let err = pool.get_connection().await.unwrap_err();
        // The contract is about time here: a generous margin over DB_POOL_TIMEOUT, no hang.
        assert!(started.elapsed() < s.wait_timeout + Duration::from_secs(1));
        assert!(matches!(err, PoolError::Unavailable { .. }), "{err}");
        assert!(err.is_transient());
        assert_hides(&err, password(&pg));
    }

    pg.restart().unwrap();
    let conn = pool.get_connection().await.expect("back without a restart");
    backend_pid(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_under_load_no_request_gets_a_broken_connection() {
    let pg = LocalPostgres::start().unwrap();
    let url = DatabaseUrl::parse(&pg.create_database().await.unwrap()).unwrap();
    let pool = PoolManager::new(&url, &settings(4)).unwrap();
    pool.warm_up().await.unwrap();

    // Each attempt: (started at, succeeded).
    let results = Arc::new(std::sync::Mutex::new(Vec::<(Instant, bool)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (pool, results, stop) = (pool.clone(), results.clone(), stop.clone());
        let progress = progress.clone();
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ok = match pool.get_connection().await {
                    Ok(conn) => conn.query_typed_one("SELECT 1", &[]).await.is_ok(),
                    Err(_) => false,
                };
                results.lock().unwrap().push((started, ok));
                progress.notify_waiters();
                if !ok {
                    // Pace the load while the database is away.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let count_ok = |since: Instant| {
        results
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, ok)| *ok && *t >= since)
            .count()
    };
    let start = Instant::now();
    loop {
        let more = progress.notified();
        if count_ok(start) >= 50 {
            break;
        }
        more.await;
    }

    let pg = tokio::task::spawn_blocking(move || {
        let mut pg = pg;
        pg.stop().unwrap();
        pg.restart().unwrap();
        pg
    })
    .await
    .unwrap();
    let back = Instant::now();
    let deadline = back + Duration::from_secs(10);
    loop {
        let more = progress.notified();
        if count_ok(back) >= 200 {
            break;
        }
        if tokio::time::timeout_at(deadline.into(), more)
            .await
            .is_err()
        {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    let results = results.lock().unwrap();
    let after: Vec<_> = results.iter().filter(|(t, _)| *t >= back).collect();
    let failed = after.iter().filter(|(_, ok)| !ok).count();
    assert!(after.len() >= 200, "load continued after the restart");
    assert_eq!(failed, 0, "requests after the restart that failed");
    assert!(
        results.iter().any(|(t, ok)| !ok && *t < back),
        "the restart was felt (otherwise this test proves nothing)"
    );
    drop(pg);
}

#[tokio::test]
async fn one_more_holder_than_the_pool_size_waits_then_gets_the_timeout_error() {
    let pg = LocalPostgres::start().unwrap();
    let url = DatabaseUrl::parse(&pg.create_database().await.unwrap()).unwrap();
    let s = PoolSettings {
        wait_timeout: Duration::from_millis(500),
        ..settings(2)
    };
    let pool = PoolManager::new(&url, &s).unwrap();
    pool.warm_up().await.unwrap();
    let first = pool.get_connection().await.unwrap();
    let second = pool.get_connection().await.unwrap();
    assert_eq!(pool.status().in_use, 2);

    let started = Instant::now();
    let err = pool.get_connection().await.unwrap_err();
    assert!(started.elapsed() >= s.wait_timeout, "it waited");
    assert!(matches!(err, PoolError::Timeout { size: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("all 2 connections"), "{err}");
    assert_hides(&err, password(&pg));
    assert_eq!(pool.status().timeouts, 1);

    // A waiter is served as soon as a holder lets go: nothing deadlocks.
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get_connection().await.map(|c| c.is_closed()) }
    });
    drop(first);
    assert_eq!(waiter.await.unwrap(), Ok(false));
    drop(second);
    assert_eq!(pool.status().in_use, 0);

    pool.close();
    let err = pool.get_connection().await.unwrap_err();
    assert_eq!(err, PoolError::Closed);
    assert_hides(&err, password(&pg));
}

/// A TCP proxy whose connections can be frozen: bytes stop flowing but the sockets stay open,
/// as when a peer vanishes behind a NAT or a failed-over load balancer.
struct FreezingProxy {
    port: u16,
    accepted: Arc<AtomicUsize>,
    frozen_below: Arc<AtomicUsize>,
}

impl FreezingProxy {
    async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let frozen_below = Arc::new(AtomicUsize::new(0));
        let (acc, frozen) = (accepted.clone(), frozen_below.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let id = acc.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, id, frozen.clone()));
                tokio::spawn(pump(sr, cw, id, frozen.clone()));
            }
        });
        Self {
            port,
            accepted,
            frozen_below,
        }
    }

    /// Stops forwarding on every connection opened so far; later ones work.
    fn freeze_existing(&self) {
        self.frozen_below
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    id: usize,
    frozen_below: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if id < frozen_below.load(Ordering::SeqCst) {
            // Swallow everything and keep both sockets open, forever.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_half_open_connection_is_detected_within_the_check_timeout_and_replaced() {
    let pg = LocalPostgres::start().unwrap();
    let proxy = FreezingProxy::start(pg.port()).await;
    let direct = pg.create_database().await.unwrap();
    let via_proxy = direct.replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.port));
    let url = DatabaseUrl::parse(&via_proxy).unwrap();
    let s = PoolSettings {
        wait_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(3),
        // Check on every checkout, as happens to any connection idle for longer than this.
        recheck_after: Duration::ZERO,
        min_idle: 1,
        ..settings(2)
    };
    let pool = PoolManager::new(&url, &s).unwrap();
    pool.warm_up().await.unwrap();
    let first_pid = backend_pid(&pool.get_connection().await.unwrap()).await;

    proxy.freeze_existing();
    let errors_before = pool.status().errors;
    let started = Instant::now();
    let conn = pool
        .get_connection()
        .await
        .expect("a replacement connection");
    let waited = started.elapsed();
    assert!(
        waited >= s.check_timeout(),
        "the frozen connection was checked ({waited:?})"
    );
    assert!(
        waited < s.wait_timeout,
        "within DB_POOL_TIMEOUT ({waited:?})"
    );
    assert_ne!(backend_pid(&conn).await, first_pid);
    assert!(pool.status().errors > errors_before);
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_error_that_does_not_show_it_and_is_not_retried_at_once()
 {
    const CANARY: &str = "Wrong-Canary-Pw-93";
    let pg = LocalPostgres::start().unwrap();
    let url = format!(
        "postgres://postgres:{CANARY}@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port()
    );
    let url = DatabaseUrl::parse(&url).unwrap();
    let pool = PoolManager::new(&url, &settings(2)).unwrap();

    let err = pool.warm_up().await.unwrap_err();
    assert!(matches!(err, PoolError::Authentication { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert_hides(&err, CANARY);
    assert!(err.to_string().contains("password"), "said plainly: {err}");

    // Within the back-off the pool answers from memory instead of knocking again.
    let errors = pool.status().errors;
    assert_eq!(pool.get_connection().await.unwrap_err(), err);
    assert_eq!(pool.status().errors, errors, "no new connection attempt");

    let err = PoolManager::inspect(&url, &settings(1)).await.unwrap_err();
    assert!(matches!(err, PoolError::Authentication { .. }), "{err:?}");
    assert_hides(&err, CANARY);

    // The right password for a database that does not exist: a configuration error.
    let url = format!(
        "postgres://postgres:{}@127.0.0.1:{}/no_such_db?sslmode=disable",
        password(&pg),
        pg.port()
    );
    let url = DatabaseUrl::parse(&url).unwrap();
    let err = PoolManager::new(&url, &settings(1))
        .unwrap()
        .get_connection()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Configuration(PoolConfigError::UnknownDatabase(_))
        ),
        "{err:?}"
    );
    assert_hides(&err, password(&pg));
}

#[tokio::test]
async fn a_connection_older_than_max_lifetime_is_retired() {
    let pg = LocalPostgres::start().unwrap();
    let url = DatabaseUrl::parse(&pg.create_database().await.unwrap()).unwrap();
    let s = PoolSettings {
        max_lifetime: Duration::from_millis(300),
        ..settings(1)
    };
    let pool = PoolManager::new(&url, &s).unwrap();
    pool.warm_up().await.unwrap();
    let old = backend_pid(&pool.get_connection().await.unwrap()).await;
    // Time has to pass for a connection to age; nothing to await instead.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let new = backend_pid(&pool.get_connection().await.unwrap()).await;
    assert_ne!(old, new);
}

#[tokio::test]
async fn an_unreachable_server_is_reported_unavailable_by_inspect() {
    // A port that was free a moment ago: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    const CANARY: &str = "Unreachable-Canary-Pw-17";
    let url = DatabaseUrl::parse(&format!("postgres://u:{CANARY}@127.0.0.1:{port}/db")).unwrap();
    let err = PoolManager::inspect(&url, &settings(1)).await.unwrap_err();
    assert!(matches!(err, PoolError::Unavailable { .. }), "{err:?}");
    assert_hides(&err, CANARY);
    // The same through the pool.
    let pool = PoolManager::new(&url, &settings(1)).unwrap();
    let err = pool.get_connection().await.unwrap_err();
    assert!(matches!(err, PoolError::Unavailable { .. }), "{err:?}");
    assert_hides(&err, CANARY);
}
