//! Checkout + `SELECT 1` with 64 concurrent tasks: this crate's pool (checks skipped for
//! connections used within 500 ms, and checked on every checkout), bare deadpool-postgres of the
//! same size with its default `Fast` recycling (which checks nothing), and one new connection per
//! query. Run: `cargo bench --bench pool_checkout -- --warm-up-time 1 --measurement-time 3`.
//! After criterion's figures it prints an interleaved comparison (the variants in turns),
//! the figure to read on a machine shared with other work.

// criterion's macros generate an undocumented `benches` function.
#![allow(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use render_deploy::database_url::DatabaseUrl;
use render_deploy::local_postgres::LocalPostgres;
use render_deploy::pool::{PoolManager, PoolMax, PoolSettings};

const TASKS: usize = 64;
const POOL_SIZE: usize = 8;

/// One checkout + `SELECT 1` (or connect + `SELECT 1`), boxed so that every variant is the same type.
type Run = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// One batch: 64 tasks each check out a connection and run `SELECT 1` once.
async fn batch(run: &Run) {
    let mut tasks = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        tasks.push(tokio::spawn(run()));
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

    let mut variants: Vec<(&str, Run)> = Vec::new();
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
        let run: Run = Arc::new(move || {
            let pool = pool.clone();
            Box::pin(async move {
                let conn = pool.get_connection().await.expect("checkout");
                conn.query_typed_one("SELECT 1", &[]).await.expect("query");
            })
        });
        variants.push((name, run));
    }
    {
        let manager = deadpool_postgres::Manager::new(url.pg_config(), tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .unwrap();
        let run: Run = Arc::new(move || {
            let pool = pool.clone();
            Box::pin(async move {
                let conn = pool.get().await.expect("checkout");
                conn.query_typed_one("SELECT 1", &[]).await.expect("query");
            })
        });
        variants.push(("bare_deadpool_fast", run));
    }
    {
        let config = Arc::new(url.pg_config());
        let run: Run = Arc::new(move || {
            let config = config.clone();
            Box::pin(async move {
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
            })
        });
        variants.push(("new_connection_per_query", run));
    }

    let mut group = c.benchmark_group("checkout_select_1_x64");
    group.throughput(Throughput::Elements(TASKS as u64));
    for (name, run) in &variants {
        if *name == "new_connection_per_query" {
            group.sample_size(10);
        }
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(batch(run));
                }
                start.elapsed()
            })
        });
    }
    group.finish();

    interleaved(&rt, &variants);
    drop(pg);
}

/// Criterion measures one variant after the other, so on a machine shared with other work a
/// burst of load lands on one variant only. This runs the three pools in turns instead (the
/// order rotated each round, each for about the same short time) and prints the median rate of
/// each and the median of the per-round ratios, which such bursts hardly move. A new
/// connection per query is some hundred times slower, so it is measured in a few batches after.
fn interleaved(rt: &tokio::runtime::Runtime, variants: &[(&str, Run)]) {
    const ROUNDS: usize = 30;
    const SLICE: Duration = Duration::from_millis(150);
    // Variants in the order they were pushed: skip, check always, bare, new connection.
    let pools = &variants[..3];
    let mut rates = vec![Vec::with_capacity(ROUNDS); pools.len()];
    for round in 0..ROUNDS {
        for k in 0..pools.len() {
            let i = (round + k) % pools.len();
            let run = &pools[i].1;
            let start = Instant::now();
            let mut batches = 0u32;
            while batches == 0 || start.elapsed() < SLICE {
                rt.block_on(batch(run));
                batches += 1;
            }
            rates[i].push(f64::from(batches) * TASKS as f64 / start.elapsed().as_secs_f64());
        }
    }
    let new_connection: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            rt.block_on(batch(&variants[3].1));
            TASKS as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    println!("\ninterleaved: {ROUNDS} rounds of {SLICE:?} per pool, median checkouts/s");
    for ((name, _), r) in pools.iter().zip(&rates) {
        println!("  {name:<28} {:>9.0}", median(r.clone()));
    }
    let new_connection = median(new_connection);
    println!("  {:<28} {new_connection:>9.0} (5 batches)", variants[3].0);
    let ratio =
        |a: usize, b: usize| median(rates[a].iter().zip(&rates[b]).map(|(x, y)| x / y).collect());
    println!(
        "  median per-round ratio, skip_500ms / bare_deadpool: {:.3}",
        ratio(0, 2)
    );
    println!(
        "  median per-round ratio, check_always / bare_deadpool: {:.3}",
        ratio(1, 2)
    );
    println!(
        "  skip_500ms / new_connection: {:.1}",
        median(rates[0].clone()) / new_connection
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
