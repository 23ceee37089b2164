//! The hostile-load benchmark of the README: memory and answer times of the real binary under
//! a flood of unsigned uploads and a connection flood, against a throwaway PostgreSQL.
//!
//! Run through `scripts/bench-hostile.sh` (release build). Loopback only, bounded counts:
//!
//! 1. `unsigned`: 400 connections at once, each `POST /hooks/deploy` announcing 1 MiB with a
//!    malformed signature (`v1,AAAA`) and a timestamp of 1, then as much body as the server
//!    takes; each comes back for 3 rounds. `/livez` and `/health` probed throughout.
//! 2. `well-formed`: the same with a well-formed signature and a fresh timestamp, which only
//!    the body can disprove, so the server must read it: the in-flight budget's case.
//! 3. `descriptors`: the binary under `prlimit --nofile=256`, then 100 idle keep-alive, 250
//!    silent and 250 slow-header connections held while `/livez` is probed; once with
//!    `MAX_CONNECTIONS` derived, once at 1000 (over the limit, so accepts fail with EMFILE).

#[allow(dead_code)] // shared with the tests, which use more of it
#[path = "../tests/support/hostile.rs"]
mod hostile;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hostile::{Loiter, Memory, WELL_FORMED_SIGNATURE};
use render_deploy::local_postgres::LocalPostgres;
use render_deploy::signature::{WebhookSecret, sign_standard};
use tokio::sync::Barrier;

const UPLOADS: usize = 400;
const ROUNDS: usize = 3;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const DEADLINE: Duration = Duration::from_secs(5);

struct Server {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(bin: &str, url: &str, nofile: Option<u64>, extra: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
                c
            }
            None => Command::new(bin),
        };
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(service_env(url, port))
            .envs(extra.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().expect("start the binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let server = Server { child, port, log };
        server.wait_healthy();
        server
    }

    fn wait_healthy(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if hostile::probe(self.port, "/health", DEADLINE).is_ok_and(|a| a.status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("not healthy within 20 s");
    }

    fn memory(&self) -> Memory {
        Memory::of(self.child.id()).expect("/proc/<pid>/status")
    }

    fn log_lines(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn service_env(url: &str, port: u16) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", url.to_owned()),
        ("PORT", port.to_string()),
        ("HOST", "127.0.0.1".to_owned()),
        ("APP_ENV", "production".to_owned()),
        ("OPENAI_API_KEY", "sk-benchmarkbenchmarkbench".to_owned()),
        (
            "TWILIO_ACCOUNT_SID",
            "AC0123456789abcdef0123456789abcdef".to_owned(),
        ),
        (
            "TWILIO_AUTH_TOKEN",
            "0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("RENDER_DEPLOY_HOOK_SECRET", SECRET.to_owned()),
        ("DB_POOL_MAX", "4".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn signed_delivery(port: u16, id: &str) -> String {
    let body = br#"{"type":"deploy_ended"}"#;
    let ts = now();
    let sig = sign_standard(&WebhookSecret::parse(SECRET).unwrap(), id, ts, body);
    let headers: Vec<(String, String)> = [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", sig),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    match hostile::request(
        port,
        "POST",
        "/hooks/deploy",
        &headers,
        body,
        Duration::from_secs(15),
    )
    .await
    {
        Ok(a) => match a.header("retry-after") {
            Some(r) => format!("{} (Retry-After {r})", a.status),
            None => a.status.to_string(),
        },
        Err(e) => format!("no answer ({e})"),
    }
}

/// Probes `/livez` and `/health` from a thread until `done`, sampling the server's RSS.
fn prober(
    port: u16,
    pid: u32,
    done: Arc<AtomicBool>,
    peak_rss: Arc<AtomicU64>,
) -> std::thread::JoinHandle<(Vec<Duration>, usize)> {
    std::thread::spawn(move || {
        let (mut took, mut failed) = (Vec::new(), 0);
        while !done.load(Ordering::SeqCst) {
            for path in ["/livez", "/health"] {
                match hostile::probe(port, path, DEADLINE) {
                    Ok(a) if a.status == 200 => took.push(a.took),
                    _ => failed += 1,
                }
            }
            if let Ok(m) = Memory::of(pid) {
                peak_rss.fetch_max(m.rss_kib, Ordering::SeqCst);
            }
        }
        (took, failed)
    })
}

struct FloodFigures {
    before: Memory,
    during_rss_kib: u64,
    peak: Memory,
    after: Memory,
    after_2s: Memory,
    probes: Vec<Duration>,
    probe_failures: usize,
    statuses: Vec<(String, usize)>,
    during: String,
    after_delivery: String,
    took: Duration,
}

async fn flood(server: &Server, signature: &'static str, fresh: bool) -> FloodFigures {
    let port = server.port;
    let before = server.memory();
    let done = Arc::new(AtomicBool::new(false));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let probes = prober(port, server.child.id(), done.clone(), peak_rss.clone());
    let barrier = Arc::new(Barrier::new(UPLOADS + 1));
    let started = Instant::now();
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|i| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut first = Some(hostile::connect_uploader(port).await);
                barrier.wait().await;
                let mut ends = Vec::new();
                for round in 0..ROUNDS {
                    let stream = match first.take() {
                        Some(s) => s,
                        None => hostile::connect_uploader(port).await,
                    };
                    let ts = if fresh { now() } else { 1 };
                    let head = hostile::hostile_head(signature, ts, &format!("msg_{i}_{round}"));
                    ends.push(match stream {
                        Ok(s) => hostile::upload(s, &head, Duration::from_secs(60))
                            .await
                            .ok(),
                        Err(_) => None,
                    });
                }
                ends
            })
        })
        .collect();
    barrier.wait().await;
    let during = signed_delivery(port, &format!("msg_during_{}", now())).await;
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for upload in uploads {
        for end in upload.await.expect("upload task") {
            let key = match end {
                Some(e) => e
                    .status
                    .map_or("closed before an answer".to_owned(), |s| s.to_string()),
                None => "no answer in 60 s".to_owned(),
            };
            *statuses.entry(key).or_default() += 1;
        }
    }
    let took = started.elapsed();
    let after = server.memory();
    done.store(true, Ordering::SeqCst);
    let (probes, probe_failures) = probes.join().expect("prober");
    let after_delivery = signed_delivery(port, &format!("msg_after_{}", now())).await;
    std::thread::sleep(Duration::from_secs(2));
    FloodFigures {
        before,
        during_rss_kib: peak_rss.load(Ordering::SeqCst),
        peak: server.memory(),
        after,
        after_2s: server.memory(),
        probes,
        probe_failures,
        statuses: statuses.into_iter().collect(),
        during,
        after_delivery,
        took,
    }
}

fn print_flood(name: &str, f: &FloodFigures) {
    let (n, median, max) = hostile::summary(&f.probes);
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "### {name}: {UPLOADS} connections × {ROUNDS} rounds, {:.1} s",
        f.took.as_secs_f64()
    );
    println!(
        "| RSS before | RSS sampled during (max) | VmHWM (peak) | RSS at the end | RSS 2 s later |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        mib(f.before.rss_kib),
        mib(f.during_rss_kib),
        mib(f.peak.hwm_kib),
        mib(f.after.rss_kib),
        mib(f.after_2s.rss_kib)
    );
    println!(
        "probes during the flood: {n} answered, median {:.1} ms, max {:.1} ms, {} failed or over {DEADLINE:?}",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        f.probe_failures
    );
    println!("uploads answered: {:?}", f.statuses);
    println!(
        "signed delivery during: {}; right after: {}\n",
        f.during, f.after_delivery
    );
}

async fn descriptors(bin: &str, url: &str, max_connections: Option<&str>) {
    let extra: Vec<(&str, &str)> = max_connections
        .map(|m| ("MAX_CONNECTIONS", m))
        .into_iter()
        .collect();
    let server = Server::start(bin, url, Some(256), &extra);
    let port = server.port;
    let before = server.memory();
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(hostile::kept_alive(port).await.expect("kept alive"));
    }
    for i in 0..500 {
        let how = if i % 2 == 0 {
            Loiter::SlowHeader
        } else {
            Loiter::Silent
        };
        held.push(hostile::loiter(port, how).await.expect("connect"));
    }
    let probes: Vec<_> = (0..20)
        .map(|_| hostile::probe(port, "/livez", DEADLINE))
        .collect();
    let took: Vec<_> = probes
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .filter(|a| a.status == 200)
        .map(|a| a.took)
        .collect();
    let (n, median, max) = hostile::summary(&took);
    let during = server.memory();
    drop(held);
    println!(
        "| {} | {n}/20 | {:.1} ms | {:.1} ms | {} | {:.1} → {:.1} MiB |",
        max_connections.unwrap_or("auto"),
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        server.log_lines("accept failed") + server.log_lines("accept failures ended"),
        before.rss_kib as f64 / 1024.0,
        during.hwm_kib as f64 / 1024.0,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin = std::env::var("RENDER_DEPLOY_BIN")
        .unwrap_or_else(|_| "target/release/render-deploy".into());
    let pg = LocalPostgres::start().expect("throwaway PostgreSQL (initdb, pg_ctl)");
    let url = pg.url("postgres");
    println!(
        "binary: {bin}; {} CPUs; loadavg {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!();

    for (name, signature, fresh) in [
        (
            "unsigned (malformed signature, timestamp 1)",
            "v1,AAAA",
            false,
        ),
        (
            "well-formed signature, fresh timestamp (body needed to refuse)",
            WELL_FORMED_SIGNATURE,
            true,
        ),
    ] {
        let server = Server::start(&bin, &url, None, &[]);
        let figures = flood(&server, signature, fresh).await;
        print_flood(name, &figures);
        let statuses: std::collections::BTreeMap<String, usize> = server
            .log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.split("\"status\":").nth(1))
            .filter_map(|rest| rest.split([',', '}']).next())
            .fold(Default::default(), |mut m, status| {
                *m.entry(status.to_owned()).or_default() += 1;
                m
            });
        println!("statuses in the server's request log: {statuses:?}\n");
    }

    println!(
        "### descriptors: file limit 256; 100 idle keep-alive + 250 silent + 250 slow-header connections held"
    );
    println!(
        "| MAX_CONNECTIONS | /livez answered | median | max | accept-failure log lines | RSS before → peak |"
    );
    println!("|---|---|---|---|---|---|");
    descriptors(&bin, &url, None).await;
    descriptors(&bin, &url, Some("1000")).await;
}
