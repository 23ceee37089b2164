//! Verifying a Standard Webhooks delivery against a bare HMAC-SHA256 over the same bytes: the
//! overhead of header parsing, the timestamp check and the constant-time comparison.
//!
//! Three series per size:
//! - `render_deploy`: `signature::verify` on a header map, as the endpoint calls it;
//! - `bare_hmac`: the goal's yardstick, keying HMAC from the key bytes and hashing the content;
//! - `bare_hmac_prekeyed`: the same with the key schedule done once outside the loop, as
//!   `WebhookSecret` does at parse time, so the parsing overhead alone can be read off too.
//!
//! Each batch is timed with the thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`), not the wall
//! clock: on a shared machine the wall clock mostly measures who else was scheduled, and the
//! three series run one after the other, so that noise does not cancel out in their ratio.
//! `VERIFY_BENCH_CLOCK=wall` switches back to criterion's wall clock.
//!
//! `cargo bench --bench verify -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use nix::time::{ClockId, clock_gettime};
use render_deploy::signature::{WebhookSecret, sign_standard, verify};
use sha2::Sha256;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TS: i64 = 1_614_265_330;

/// Runs `f` `iters` times and returns the time taken by the chosen clock.
fn timed<O>(iters: u64, mut f: impl FnMut() -> O) -> Duration {
    let wall = std::env::var_os("VERIFY_BENCH_CLOCK").is_some_and(|v| v == "wall");
    let cpu = || clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map(Duration::from);
    let (cpu_start, wall_start) = (cpu(), Instant::now());
    for _ in 0..iters {
        black_box(f());
    }
    match (wall, cpu_start, cpu()) {
        (false, Ok(start), Ok(end)) => end.saturating_sub(start),
        // A kernel without a thread CPU clock: fall back to the wall clock.
        _ => wall_start.elapsed(),
    }
}

fn bench(c: &mut Criterion) {
    let secret = WebhookSecret::parse(SECRET).unwrap();
    let key = secret.standard_key().to_vec();
    let mut group = c.benchmark_group("verify");
    for size in [1024usize, 64 * 1024, 1024 * 1024] {
        let body = vec![b'x'; size];
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", ID.parse().unwrap());
        headers.insert("webhook-timestamp", TS.to_string().parse().unwrap());
        headers.insert(
            "webhook-signature",
            sign_standard(&secret, ID, TS, &body).parse().unwrap(),
        );
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("render_deploy", size), &body, |b, body| {
            b.iter_custom(|iters| {
                timed(iters, || {
                    verify(
                        &secret,
                        black_box(&headers),
                        black_box(body),
                        TS,
                        Duration::from_secs(300),
                    )
                    .unwrap()
                })
            })
        });
        // The floor: HMAC over the same signed content, no parsing, no comparison.
        let prefix = format!("{ID}.{TS}.");
        group.bench_with_input(BenchmarkId::new("bare_hmac", size), &body, |b, body| {
            b.iter_custom(|iters| {
                timed(iters, || {
                    let mut mac = Hmac::<Sha256>::new_from_slice(black_box(&key)).unwrap();
                    mac.update(black_box(prefix.as_bytes()));
                    mac.update(black_box(body));
                    mac.finalize().into_bytes()
                })
            })
        });
        let keyed = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        group.bench_with_input(
            BenchmarkId::new("bare_hmac_prekeyed", size),
            &body,
            |b, body| {
                b.iter_custom(|iters| {
                    timed(iters, || {
                        let mut mac = black_box(&keyed).clone();
                        mac.update(black_box(prefix.as_bytes()));
                        mac.update(black_box(body));
                        mac.finalize().into_bytes()
                    })
                })
            },
        );
    }
    group.finish();
}

// The macro generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, bench);
}
use group::benches;
criterion_main!(benches);
