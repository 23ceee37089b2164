//! The cost of a health answer served from cache: the cache alone, the whole report, and the
//! router's `/health` next to `/livez` (no socket; `scripts/bench-health.sh` measures over HTTP).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use render_deploy::health::{
    self, HealthCache, HealthSettings, HealthState, Lifecycle, ProbeError, ServiceInfo,
};
use tower::ServiceExt;

fn cached_answers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let settings = HealthSettings::default();

    let cache = HealthCache::new(&settings, || async { true });
    rt.block_on(cache.get());
    c.bench_function("health cache hit", |b| b.iter(|| rt.block_on(cache.get())));

    let state = HealthState::new(
        &settings,
        || async { Ok::<(), ProbeError>(()) },
        Lifecycle::new(),
        ServiceInfo::new(Some("0123abc"), Some("srv-bench")),
    );
    rt.block_on(state.report());
    c.bench_function("health report from cache", |b| {
        b.iter(|| rt.block_on(state.report()))
    });

    let app = health::router(state);
    for path in ["/livez", "/health"] {
        c.bench_function(&format!("router GET {path}"), |b| {
            b.iter(|| {
                rt.block_on(
                    app.clone()
                        .oneshot(Request::get(path).body(Body::empty()).expect("request")),
                )
            })
        });
    }
}

criterion_group!(benches, cached_answers);
criterion_main!(benches);
