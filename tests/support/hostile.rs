//! Hostile clients, for the `cli` load tests and `examples/bench_hostile.rs`: unsigned uploads,
//! silent and slow-header connections, probes with a deadline, and a process's memory from /proc.
//!
//! Self-contained (no `super::`), so the benchmark can include this file with `#[path]`.
//! Loopback only; every function is bounded by its own timeout.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One mebibyte: what each hostile upload announces.
pub const MIB: usize = 1024 * 1024;

/// A `v1` signature that is well-formed (canonical base64 of 32 bytes) but signs nothing: only
/// the key and the body could tell, so the server must read the body to refuse it.
pub const WELL_FORMED_SIGNATURE: &str = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=";

/// A process's resident memory, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now, KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident so far, KiB.
    pub hwm_kib: u64,
}

impl Memory {
    /// Reads `/proc/<pid>/status`.
    pub fn of(pid: u32) -> io::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
                .ok_or_else(|| io::Error::other(format!("no {name} in /proc/{pid}/status")))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }
}

/// How one upload ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadEnd {
    /// The status read, when an answer came before the connection closed.
    pub status: Option<u16>,
    /// Body bytes the server let the client write before it answered or closed.
    pub body_sent: usize,
}

/// Headers of a hostile delivery: `Content-Length` of [`MIB`], the given signature and
/// timestamp, and no secret anywhere.
pub fn hostile_head(signature: &str, timestamp: i64, id: &str) -> String {
    format!(
        "POST /hooks/deploy HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {MIB}\r\nwebhook-id: {id}\r\nwebhook-timestamp: {timestamp}\r\n\
         webhook-signature: {signature}\r\n\r\n"
    )
}

/// A connection for [`upload`], with a small send buffer: the body bytes the client gets
/// written are then those the server's side took (its receive window), not megabytes parked
/// in the client's own kernel buffer, and the load generator spends its CPU on connections
/// rather than on copying.
pub async fn connect_uploader(port: u16) -> io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_send_buffer_size(16 * 1024)?;
    socket.connect(([127, 0, 0, 1], port).into()).await
}

/// Sends `head`, then as much of a 1 MiB body as the server will take, while reading whatever
/// it answers.
pub async fn upload(stream: TcpStream, head: &str, within: Duration) -> io::Result<UploadEnd> {
    static CHUNK: [u8; 16 * 1024] = [b' '; 16 * 1024];
    let (mut read, mut write) = stream.into_split();
    let head = head.as_bytes().to_vec();
    // The write half is handed back, not dropped: dropping it would half-close the
    // connection, and hyper drops a request whose client has half-closed (as a real sender
    // does not).
    let writer = async move {
        if write.write_all(&head).await.is_err() {
            return (0, write);
        }
        let mut sent = 0;
        while sent < MIB {
            let n = CHUNK.len().min(MIB - sent);
            match write.write(&CHUNK[..n]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n,
            }
        }
        (sent, write)
    };
    let reader = async move {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // Until one whole answer is in (a kept-alive connection is not waited out), or the
        // connection ends; a reset after the answer is routine: the body was left unread.
        while !is_complete(&answer) {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        status_of(&answer)
    };
    let both = async { tokio::join!(writer, reader) };
    match tokio::time::timeout(within, both).await {
        Ok(((body_sent, _write), status)) => Ok(UploadEnd { status, body_sent }),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("upload not ended within {within:?}"),
        )),
    }
}

/// Whether `raw` holds a whole answer: its head and as many body bytes as it declares.
fn is_complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    raw.len() >= end + 4 + length
}

/// The status code of a raw HTTP/1.1 answer, if it has a status line.
pub fn status_of(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\n').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One answer: status, the raw head and body, and how long it took from connecting.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub raw: String,
    pub took: Duration,
}

impl Answer {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        let head = self.raw.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One request on a new connection (`Connection: close`), answered within `within` or `Err`.
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
    within: Duration,
) -> io::Result<Answer> {
    let started = Instant::now();
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, io::Error>(raw)
    };
    let raw = tokio::time::timeout(within, exchange).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{path}: no answer within {within:?}"),
        )
    })??;
    let status = status_of(&raw)
        .ok_or_else(|| io::Error::other(format!("{path}: no status line in {raw:?}")))?;
    Ok(Answer {
        status,
        raw: String::from_utf8_lossy(&raw).into_owned(),
        took: started.elapsed(),
    })
}

/// `GET path` from a plain thread with blocking sockets, answered within `within` or `Err`:
/// a probe that does not queue behind the load generator's own tasks, as Render's does not.
pub fn probe(port: u16, path: &str, within: Duration) -> io::Result<Answer> {
    use std::io::{Read, Write};
    let started = Instant::now();
    let left = || {
        within
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{path}: no answer within {within:?}"),
                )
            })
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, left()?)?;
    stream.set_write_timeout(Some(left()?))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(left()?))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => left().map(|_| ())?,
            Err(e) => return Err(e),
        }
    }
    let took = started.elapsed();
    if took > within {
        left()?;
    }
    let status = status_of(&raw)
        .ok_or_else(|| io::Error::other(format!("{path}: no status line in {raw:?}")))?;
    Ok(Answer {
        status,
        raw: String::from_utf8_lossy(&raw).into_owned(),
        took,
    })
}

/// `GET path`, answered within `within`.
pub async fn get(port: u16, path: &str, within: Duration) -> io::Result<Answer> {
    request(port, "GET", path, &[], b"", within).await
}

/// A connection that holds a descriptor of the server without finishing a request:
/// `Silent` says nothing, `SlowHeader` sends the start of a request head and stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loiter {
    /// Connects and sends nothing.
    Silent,
    /// Sends `GET /livez HTTP/1.1\r\nHost: …\r\n` and never the blank line.
    SlowHeader,
}

/// Opens a loitering connection (the server may close it; the caller just holds it).
pub async fn loiter(port: u16, how: Loiter) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    if how == Loiter::SlowHeader {
        stream
            .write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await?;
    }
    Ok(stream)
}

/// A connection that had one `GET /livez` answered and is now idle, kept alive.
pub async fn kept_alive(port: u16) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    // `/livez` answers `ok` with a Content-Length: read until the two bytes of body are in.
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.ends_with(b"\r\n\r\nok") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the answer",
            ));
        }
        answer.extend_from_slice(&buf[..n]);
    }
    Ok(stream)
}

/// Latencies summed up: count, median and maximum.
pub fn summary(latencies: &[Duration]) -> (usize, Duration, Duration) {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let max = sorted.last().copied().unwrap_or_default();
    (sorted.len(), median, max)
}
