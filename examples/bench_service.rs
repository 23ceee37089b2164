//! The service benchmark of the README: start-up, idle memory, pooled vs unpooled `/`,
//! and SIGTERM-to-exit, against a throwaway PostgreSQL on loopback.
//!
//! Run through `scripts/bench-service.sh` (release build). `bench_service serve` is the server
//! under test for the requests-per-second part: the library's routes plus `/unpooled`, the same
//! handler as `/` but opening a new connection per request.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::routing::get;
use render_deploy::Deployment;
use render_deploy::local_postgres::LocalPostgres;

const RUNS: usize = 10;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("serve") {
        return serve();
    }
    let pg = LocalPostgres::start().expect("throwaway PostgreSQL (initdb, pg_ctl)");
    let url = pg.url("postgres");
    let bin = std::env::var("RENDER_DEPLOY_BIN")
        .unwrap_or_else(|_| "target/release/render-deploy".into());

    let mut healthy = Vec::new();
    let mut rss = Vec::new();
    let mut exit = Vec::new();
    for _ in 0..RUNS {
        let port = free_port();
        let started = Instant::now();
        let mut child = Command::new(&bin)
            .arg("serve")
            .envs(service_env(&url, port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start render-deploy");
        while status(port, "/health") != Some(200) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "not healthy after 10 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        healthy.push(started.elapsed());
        std::thread::sleep(Duration::from_secs(1));
        rss.push(rss_kib(child.id()));
        let signalled = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = child.wait().unwrap();
        exit.push(signalled.elapsed());
        assert!(status.success(), "exit status {status}");
    }

    let port = free_port();
    let mut server = Command::new(std::env::current_exe().unwrap())
        .arg("serve")
        .envs(service_env(&url, port))
        .env("DB_POOL_MAX", "8")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while status(port, "/health") != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "bench server not healthy"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pooled = wrk(port, "/");
    let unpooled = wrk(port, "/unpooled");
    let _ = server.kill();
    let _ = server.wait();

    println!("| measure | runs | median | worst | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| start to first healthy `/health` | {RUNS} | {} | {} | < 100 ms |",
        ms(median(&healthy)),
        ms(max(&healthy))
    );
    let rss_mib: Vec<f64> = rss.iter().map(|k| *k as f64 / 1024.0).collect();
    println!(
        "| idle resident memory (1 s after healthy) | {RUNS} | {:.1} MiB | {:.1} MiB | < 20 MiB |",
        median_f(&rss_mib),
        rss_mib.iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "| SIGTERM to exit, nothing in flight | {RUNS} | {} | {} | < 50 ms |",
        ms(median(&exit)),
        ms(max(&exit))
    );
    match (pooled, unpooled) {
        (Some(p), Some(u)) => {
            println!("| `GET /` (one pooled query), wrk -t2 -c32 -d5s | 1 | {p:.0} req/s | | |");
            println!("| same handler, new connection per request | 1 | {u:.0} req/s | | |");
            println!("| pooled ÷ unpooled | | {:.1}× | | |", p / u);
        }
        _ => {
            println!("| requests per second | | skipped: wrk not found (apt-get install wrk) | | |")
        }
    }
}

fn service_env(url: &str, port: u16) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", url),
        ("PORT", &port.to_string()),
        ("HOST", "127.0.0.1"),
        ("APP_ENV", "production"),
        ("OPENAI_API_KEY", "sk-benchmark0123456789abcdef"),
        ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
        ("TWILIO_AUTH_TOKEN", "0123456789abcdef0123456789abcdef"),
        (
            "RENDER_DEPLOY_HOOK_SECRET",
            "benchmark-secret-of-at-least-32-bytes!",
        ),
        ("RUST_LOG", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn serve() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let deployment = Deployment::from_env().expect("configuration");
        let url = deployment.config().database_url.clone();
        let app = Router::new()
            .route(
                "/unpooled",
                get(move || {
                    let url = url.clone();
                    async move {
                        let (client, conn) =
                            tokio_postgres::connect(url.expose_secret(), tokio_postgres::NoTls)
                                .await
                                .expect("connect");
                        tokio::spawn(conn);
                        let row = client
                            .query_one("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')", &[])
                            .await
                            .expect("query");
                        Json(serde_json::json!({ "database_time": row.get::<_, String>(0) }))
                    }
                }),
            )
            .merge(deployment.routes());
        deployment.serve(app).await.expect("serve");
    });
}

fn wrk(port: u16, path: &str) -> Option<f64> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c32",
            "-d5s",
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    if let Some(line) = errors {
        eprintln!("wrk {path}: {}", line.trim());
    }
    text.lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn max(v: &[Duration]) -> Duration {
    v.iter().copied().max().unwrap_or_default()
}

fn median_f(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
