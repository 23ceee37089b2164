//! Checkout + `SELECT 1` with 64 concurrent tasks: this crate's pool (checks skipped for
//! connections used within 500 ms, and checked on every checkout), bare deadpool-postgres of the
//! same size with its default `Fast` recycling (which checks nothing), and one new connection per
//! query. Run: `cargo bench --bench pool_checkout -- --warm-up-time 1 --measurement-time 3`.

// criterion's macros generate an undocumented `benches` function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use render_deploy::database_url::DatabaseUrl;
use render_deploy::local_postgres::LocalPostgres;
use render_deploy::pool::{PoolManager, PoolMax, PoolSettings};

const TASKS: usize = 64;
const POOL_SIZE: usize = 8;

/// One batch: 64 tasks each check out a connection and run `SELECT 1` once.
async fn batch<F, Fut>(run: Arc<F>)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tasks = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let run = run.clone();
        tasks.push(tokio::spawn(async move { run().await }));
    }
    for t in tasks {
        t.await.expect("task");
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pg = LocalPostgres::start().expect("a throwaway PostgreSQL");
    let url_text = rt.block_on(pg.create_database()).unwrap();
    let url = DatabaseUrl::parse(&url_text).unwrap();

    let mut group = c.benchmark_group("checkout_select_1_x64");
    group.throughput(Throughput::Elements(TASKS as u64));

    for (name, recheck_after) in [
        ("render_deploy_skip_500ms", Duration::from_millis(500)),
        ("render_deploy_check_always", Duration::ZERO),
    ] {
        let settings = PoolSettings {
            max: PoolMax::Fixed(POOL_SIZE),
            min_idle: POOL_SIZE,
            recheck_after,
            ..PoolSettings::default()
        };
        let pool = PoolManager::new(&url, &settings).unwrap();
        rt.block_on(pool.warm_up()).unwrap();
        let run = Arc::new(move || {
            let pool = pool.clone();
            async move {
                let conn = pool.get_connection().await.expect("checkout");
                conn.query_typed_one("SELECT 1", &[]).await.expect("query");
            }
        });
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(batch(run.clone()));
                }
                start.elapsed()
            })
        });
    }

    {
        let manager = deadpool_postgres::Manager::new(url.pg_config(), tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .unwrap();
        let run = Arc::new(move || {
            let pool = pool.clone();
            async move {
                let conn = pool.get().await.expect("checkout");
                conn.query_typed_one("SELECT 1", &[]).await.expect("query");
            }
        });
        group.bench_function("bare_deadpool_fast", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(batch(run.clone()));
                }
                start.elapsed()
            })
        });
    }

    {
        let config = Arc::new(url.pg_config());
        let run = Arc::new(move || {
            let config = config.clone();
            async move {
                let (client, connection) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .expect("connect");
                let task = tokio::spawn(connection);
                client
                    .query_typed_one("SELECT 1", &[])
                    .await
                    .expect("query");
                drop(client);
                let _ = task.await;
            }
        });
        group.sample_size(10);
        group.bench_function("new_connection_per_query", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(batch(run.clone()));
                }
                start.elapsed()
            })
        });
    }
    group.finish();
    drop(pg);
}

criterion_group!(benches, bench);
criterion_main!(benches);
