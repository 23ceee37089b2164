//! Shared by the end-to-end tests: start the real binary, talk raw HTTP/1.1 to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_render-deploy");

/// Canary values: any of them in the program's output is a leak.
pub const CANARY_OPENAI: &str = "sk-CANARYopenai0123456789abcdef";
pub const CANARY_TWILIO_TOKEN: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";
pub const CANARY_HOOK_SECRET_RAW: &[u8] = b"CANARY-hook-secret-bytes-0123456";
pub const CANARY_METRICS_TOKEN: &str = "CANARYmetricstoken42";
pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";

pub fn hook_secret() -> String {
    use base64::Engine;
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(CANARY_HOOK_SECRET_RAW)
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The production environment of `serve`, complete and valid.
pub fn base_env(database_url: &str, port: u16) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database_url.to_owned()),
        ("PORT", port.to_string()),
        ("HOST", "127.0.0.1".to_owned()),
        ("APP_ENV", "production".to_owned()),
        ("OPENAI_API_KEY", CANARY_OPENAI.to_owned()),
        ("TWILIO_ACCOUNT_SID", TWILIO_SID.to_owned()),
        ("TWILIO_AUTH_TOKEN", CANARY_TWILIO_TOKEN.to_owned()),
        ("RENDER_DEPLOY_HOOK_SECRET", hook_secret()),
        ("DB_POOL_MAX", "4".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A running `render-deploy` process whose output is collected.
pub struct Running {
    pub child: Child,
    pub port: u16,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
}

impl Running {
    pub fn start(args: &[&str], env: &[(String, String)]) -> Self {
        let port = env
            .iter()
            .find(|(k, _)| k == "PORT")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut child = Command::new(BIN)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start render-deploy");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Self {
            child,
            port,
            stdout,
            stderr,
        }
    }

    /// Polls `/livez` until it answers 200 (start-up is a wait for a socket, not a sleep).
    pub fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("exited early with {status}: {}", self.output());
            }
            if let Ok(resp) = request(self.port, "GET", "/livez", &[], b"")
                && resp.status == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("not listening after 20 s: {}", self.output());
    }

    /// Polls `/health` until it answers `status`.
    pub fn wait_health(&mut self, status: u16, within: Duration) -> Response {
        let deadline = Instant::now() + within;
        loop {
            let resp = request(self.port, "GET", "/health", &[], b"");
            if let Ok(resp) = resp {
                if resp.status == status || Instant::now() > deadline {
                    return resp;
                }
            } else if Instant::now() > deadline {
                panic!("no /health answer: {}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the process to exit; its status and how long that took.
    pub fn wait_exit(&mut self, within: Duration) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                panic!("still running after {within:?}: {}", self.output());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything printed so far, both streams.
    pub fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let out = buf.clone();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            out.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    buf
}

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One request on a new connection (`Connection: close`).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    send(&mut stream, method, path, headers, body, false)?;
    read_response(&mut BufReader::new(stream))
}

/// Writes one request on `stream`.
pub fn send(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) -> std::io::Result<()> {
    write_head(stream, method, path, headers, body.len(), keep_alive)?;
    stream.write_all(body)?;
    stream.flush()
}

/// Writes a request's head only, announcing `content_length` bytes of body to come.
pub fn write_head(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_length: usize,
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {content_length}\r\nConnection: {}\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

/// A connection that has answered one `GET /livez` and is now idle, kept alive.
pub fn kept_alive(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    send(&mut stream, "GET", "/livez", &[], b"", true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert_eq!(read_response(&mut reader).unwrap().status, 200);
    (stream, reader)
}

/// Reads one response (by `Content-Length`, or to the end).
pub fn read_response(reader: &mut impl BufRead) -> std::io::Result<Response> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Standard Webhooks headers for `body`, signed with the canary secret.
pub fn signed_headers(id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    use base64::Engine;
    use hmac::{Mac, SimpleHmac};
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(CANARY_HOOK_SECRET_RAW).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        ("webhook-signature".into(), format!("v1,{sig}")),
        ("content-type".into(), "application/json".into()),
    ]
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
