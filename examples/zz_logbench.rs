//! temporary: ns per request log line / span (not committed)
use std::time::Instant;
fn main() {
    let _g = render_deploy::telemetry::init_logging(render_deploy::config::LogFormat::Json);
    let n = 1_000_000u32;
    let threads: usize = std::env::var("T").map(|t| t.parse().unwrap()).unwrap_or(1);
    for mode in std::env::args().skip(1) {
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                let mode = mode.clone();
                s.spawn(move || {
                    let id = "0123456789abcdef0123456789abcdef";
                    for i in 0..n {
                        if mode != "event" {
                            let span = tracing::info_span!("request", request_id = id);
                            let _e = span.enter();
                            std::hint::black_box(i);
                        }
                        if mode != "span" {
                            tracing::info!(
                                method = "GET",
                                route = "/livez",
                                status = 200u16,
                                latency_ms = (i % 1000) as f64 / 1000.0,
                                request_id = id,
                                "request"
                            );
                        }
                    }
                });
            }
        });
        eprintln!(
            "{mode} x{threads}: {:.0} ns per op per thread, dropped {}",
            t.elapsed().as_nanos() as f64 / n as f64,
            render_deploy::telemetry::dropped_log_lines()
        );
    }
}
