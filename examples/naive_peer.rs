//! The yardstick of `scripts/bench-compare.sh`: what a Rust developer writes without us.
//!
//! axum 0.8 and deadpool-postgres with `Fast` recycling and a pool of 16, no middleware, no log
//! line: `/livez` answers `ok`, `/` runs the same one query as the service's `GET /`. Reads
//! `DATABASE_URL` and `PORT`, binds 127.0.0.1, and runs until it is killed.

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use deadpool_postgres::{ManagerConfig, Pool, PoolConfig, RecyclingMethod, Runtime};

#[tokio::main]
async fn main() {
    let mut config = deadpool_postgres::Config::new();
    config.url = Some(std::env::var("DATABASE_URL").expect("DATABASE_URL"));
    config.manager = Some(ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    });
    config.pool = Some(PoolConfig::new(16));
    let pool = config
        .create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)
        .expect("pool");
    let app = Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/", get(root))
        .with_state(pool);
    let port = std::env::var("PORT").unwrap_or_else(|_| "0".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .expect("bind");
    println!("listening on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.expect("serve");
}

async fn root(State(pool): State<Pool>) -> Result<Json<serde_json::Value>, StatusCode> {
    let conn = pool
        .get()
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let sql = r#"SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#;
    let row = conn
        .query_one(sql, &[])
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let time: String = row.get(0);
    Ok(Json(serde_json::json!({
        "service": "naive-peer",
        "version": env!("CARGO_PKG_VERSION"),
        "instance": "peer",
        "database_time": time,
    })))
}
