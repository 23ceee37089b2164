//! Black box: `/health` served over a real socket, probing a real PostgreSQL through a
//! deadpool-postgres pool; the database's own statistics count the round trips.

use std::time::Duration;

use render_deploy::health::{self, HealthSettings, HealthState, Lifecycle, ServiceInfo};
use render_deploy::local_postgres::LocalPostgres;

const CLIENTS: usize = 32;
const REQUESTS_PER_CLIENT: usize = 100;

/// Transactions committed in `database`, as the server counts them. Read from a connection to
/// another database, so the measuring queries are not counted.
async fn xact_commit(monitor: &tokio_postgres::Client, database: &str) -> i64 {
    monitor
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .expect("clear snapshot");
    monitor
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
            &[&database],
        )
        .await
        .expect("pg_stat_database")
        .get(0)
}

/// A backend publishes its counters when it exits (at the latest); it is gone from
/// `pg_stat_activity` only after that.
async fn wait_until_no_backend_is_connected_to(monitor: &tokio_postgres::Client, database: &str) {
    for _ in 0..200 {
        let row = monitor
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&database],
            )
            .await
            .expect("pg_stat_activity");
        if row.get::<_, i64>(0) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the pool's connections did not close within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_health_requests_within_one_ttl_cost_a_handful_of_database_round_trips() {
    let pg = LocalPostgres::start().expect("start PostgreSQL");
    let url = pg.create_database().await.expect("create database");
    let database = url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .expect("database name")
        .to_owned();
    let monitor = pg.connect("postgres").await.expect("monitor connection");
    let before = xact_commit(&monitor, &database).await;

    let pool = deadpool_postgres::Config {
        url: Some(url),
        ..Default::default()
    }
    .create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )
    .expect("pool");
    let state = HealthState::new(
        &HealthSettings::default(),
        pool.clone(),
        Lifecycle::new(),
        ServiceInfo::new(None, None),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, health::router(state))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    let client = crate::support::reqwest_client();
    let url = format!("http://{address}/health");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let mut healthy = 0;
                for _ in 0..REQUESTS_PER_CLIENT {
                    let response = client.get(&url).send().await.expect("GET /health");
                    let status = response.status();
                    let body: serde_json::Value = response.json().await.expect("JSON");
                    if status == 200 && body["status"] == "healthy" {
                        healthy += 1;
                    }
                }
                healthy
            })
        })
        .collect();
    let mut healthy = 0;
    for c in clients {
        healthy += c.await.expect("client task");
    }
    let _ = stop.send(());
    server.await.expect("server task").expect("serve");

    // Close the pool so the backend exits and publishes its counters.
    pool.close();
    drop(pool);
    wait_until_no_backend_is_connected_to(&monitor, &database).await;
    let round_trips = xact_commit(&monitor, &database).await - before;

    assert_eq!(
        healthy,
        CLIENTS * REQUESTS_PER_CLIENT,
        "every answer was healthy"
    );
    // One probe's `SELECT 1`, and one transaction for the pool's connection start-up (which
    // PostgreSQL counts too); nothing per request.
    assert!(
        (1..=3).contains(&round_trips),
        "{} requests cost {round_trips} transactions in the database",
        CLIENTS * REQUESTS_PER_CLIENT
    );
    eprintln!(
        "{} /health requests: {round_trips} transaction(s) committed in the database",
        CLIENTS * REQUESTS_PER_CLIENT
    );
}
