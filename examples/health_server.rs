//! A small server with only `/health` and `/livez`, for `scripts/bench-health.sh`.
//!
//! With `DATABASE_URL` set, `/health` probes that database through a deadpool-postgres pool;
//! without it, through a stand-in probe that takes a millisecond. Binds `127.0.0.1:$PORT`
//! (`PORT=0`, the default, picks a free port), prints `listening on http://ADDRESS`, and serves
//! until SIGINT or SIGTERM.

use std::time::Duration;

use render_deploy::health::{
    self, HealthSettings, HealthState, Lifecycle, ProbeError, ServiceInfo,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = HealthSettings::default();
    let lifecycle = Lifecycle::new();
    let info = ServiceInfo::from_env();
    let state = match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let pool = deadpool_postgres::Config {
                url: Some(url),
                ..Default::default()
            }
            .create_pool(
                Some(deadpool_postgres::Runtime::Tokio1),
                tokio_postgres::NoTls,
            )?;
            HealthState::new(&settings, pool, lifecycle.clone(), info)
        }
        Err(_) => HealthState::new(
            &settings,
            || async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<(), ProbeError>(())
            },
            lifecycle.clone(),
            info,
        ),
    };
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, health::router(state))
        .with_graceful_shutdown(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            lifecycle.start_draining();
        })
        .await?;
    Ok(())
}
