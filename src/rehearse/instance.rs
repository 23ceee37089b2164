//! One instance of the service: a child process in its own process group, its health probe,
//! and the guarantee that no child outlives the rehearsal.
//!
//! SIGTERM goes to the instance's own process only, as Render sends it to the service's
//! process: a service that runs helpers (`dev` runs PostgreSQL) decides how they stop. SIGKILL
//! goes to the whole group, and so does the clean-up when an [`Instance`] is dropped (at the
//! end, on an error, a panic or Ctrl-C), so that nothing it started is left running.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

use super::record::InstanceExit;
use super::{InstanceCommand, PROBE_TIMEOUT, RehearsalOptions, RehearseError};

/// How many of an instance's last output lines are kept for the report.
const TAIL_LINES: usize = 20;

/// A program to start, with its environment.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub program: std::ffi::OsString,
    pub args: Vec<std::ffi::OsString>,
    pub env: Vec<(String, String)>,
    pub display: String,
    /// SIGTERM goes to the whole process group, not the process alone (a shell command).
    pub term_group: bool,
}

impl Launch {
    /// How to start an instance of `command`, with `env` (the database's) added. This
    /// program's own `dev` also gets `HOST=127.0.0.1`, a `SHUTDOWN_TIMEOUT` that ends before
    /// the SIGKILL (unless set), and, on the rehearsal's own database, `DB_POOL_INSTANCES`: its
    /// `auto` pool sizing already doubles for the old and new instances of a deploy.
    pub fn of(
        command: &InstanceCommand,
        options: &RehearsalOptions,
        env: &[(String, String)],
        throwaway_database: bool,
    ) -> Result<Self, RehearseError> {
        let mut env = env.to_vec();
        let (program, args) = match command {
            InstanceCommand::Command { program, args } => (program.clone(), args.clone()),
            // `sh` (dash) does not exec the command it runs, so SIGTERM to `sh` alone would
            // end the shell and never reach the service. It goes to the group instead, and the
            // shell catches it (a caught signal is reset to the default across exec, an
            // ignored one would not be) to stay until the service has drained, and exit with
            // its status.
            InstanceCommand::Shell(line) => (
                "sh".into(),
                vec!["-c".into(), format!("trap : TERM\n{line}").into()],
            ),
            InstanceCommand::Dev => {
                let exe = std::env::current_exe().map_err(RehearseError::CurrentExe)?;
                env.push(("HOST".to_owned(), "127.0.0.1".to_owned()));
                if std::env::var_os("SHUTDOWN_TIMEOUT").is_none() {
                    let secs = options.shutdown_delay.as_secs().saturating_sub(1).max(1);
                    env.push(("SHUTDOWN_TIMEOUT".to_owned(), secs.to_string()));
                }
                if throwaway_database {
                    env.push((
                        "DB_POOL_INSTANCES".to_owned(),
                        options.instances.to_string(),
                    ));
                }
                (exe.into_os_string(), vec!["dev".into()])
            }
        };
        Ok(Self {
            program,
            args,
            env,
            display: command.display(),
            term_group: matches!(command, InstanceCommand::Shell(_)),
        })
    }
}

/// A running (or exited) instance.
pub(crate) struct Instance {
    port: u16,
    pid: Pid,
    term_group: bool,
    exit: watch::Receiver<Option<InstanceExit>>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Instance {
    /// Starts `launch` with `PORT=port` and `RENDER_INSTANCE_ID=name`, in its own process group.
    pub fn spawn(
        launch: &Launch,
        name: &str,
        port: u16,
        show_output: bool,
    ) -> Result<Self, RehearseError> {
        let mut cmd = tokio::process::Command::new(&launch.program);
        cmd.args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .env("PORT", port.to_string())
            .env("RENDER_INSTANCE_ID", name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: Ctrl-C on our terminal does not reach it behind our back, and
            // SIGKILL can reach everything it started.
            .process_group(0);
        let mut child = cmd.spawn().map_err(|source| RehearseError::Spawn {
            instance: name.to_owned(),
            command: launch.display.clone(),
            source,
        })?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
            .ok_or_else(|| RehearseError::Spawn {
                instance: name.to_owned(),
                command: launch.display.clone(),
                source: std::io::Error::other("the child exited before it could be watched"),
            })?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(collect_output(
                out,
                name.to_owned(),
                tail.clone(),
                TAIL_LINES,
                show_output,
            ));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(collect_output(
                err,
                name.to_owned(),
                tail.clone(),
                TAIL_LINES,
                show_output,
            ));
        }
        let (tx, exit) = watch::channel(None);
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tx.send(Some(match status {
                Ok(s) => exit_of(s),
                // `wait` only fails when the child was already reaped; call that a kill.
                Err(_) => InstanceExit::Signal(Signal::SIGKILL as i32),
            }));
        });
        Ok(Self {
            port,
            pid,
            term_group: launch.term_group,
            exit,
            tail,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// How it exited, if it has.
    pub fn exit(&self) -> Option<InstanceExit> {
        *self.exit.borrow()
    }

    /// Waits until it exits, at most `timeout`.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<InstanceExit> {
        let mut rx = self.exit.clone();
        let waited = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(exit)) => *exit,
            _ => self.exit(),
        }
    }

    /// Sends SIGTERM to its process (not its group: the service stops its own helpers), or
    /// to the group of a shell command (see [`Launch::of`]).
    pub fn sigterm(&self) {
        if self.exit().is_none() {
            let _ = if self.term_group {
                killpg(self.pid, Signal::SIGTERM)
            } else {
                kill(self.pid, Signal::SIGTERM)
            };
        }
    }

    /// Sends SIGKILL to its whole process group.
    pub(crate) fn sigkill_group(&self) {
        let _ = killpg(self.pid, Signal::SIGKILL);
    }

    /// The last lines it printed.
    pub(crate) fn output_tail(&self) -> Vec<String> {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Probes its health path until it answers 2xx or 3xx (`Ok(time since start)`), it exits,
    /// or `deadline` passes (`Err(why)`).
    pub(crate) async fn wait_healthy(
        &self,
        path: &str,
        interval: Duration,
        started: Instant,
        deadline: Duration,
    ) -> Result<Duration, String> {
        let give_up = started + deadline;
        let mut last = "no probe answered yet".to_owned();
        loop {
            if let Some(exit) = self.exit() {
                return Err(format!("it {exit} while starting"));
            }
            let probe =
                tokio::time::timeout_at(give_up.into(), probe(self.addr(), path, PROBE_TIMEOUT))
                    .await;
            match probe {
                Ok(Ok(())) => return Ok(started.elapsed()),
                Ok(Err(why)) => last = why,
                Err(_) => {}
            }
            if Instant::now() + interval >= give_up {
                return Err(format!(
                    "not healthy within {:.1} s; last probe: {last}",
                    deadline.as_secs_f64()
                ));
            }
            tokio::time::sleep(interval).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Whatever happened, nothing this instance started outlives the rehearsal. After a
        // graceful exit the group may still hold helpers it forgot; kill them too.
        self.sigkill_group();
    }
}

pub(crate) fn exit_of(status: ExitStatus) -> InstanceExit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => InstanceExit::Code(code),
        (None, Some(signal)) => InstanceExit::Signal(signal),
        (None, None) => InstanceExit::Code(-1),
    }
}

/// Copies a child's output line by line: echoed with its label when `show`, and the last
/// `keep` lines kept in `tail` for the report. Instances and the setup and pre-deploy steps share
/// it.
pub(crate) async fn collect_output(
    stream: impl AsyncRead + Unpin,
    label: String,
    tail: Arc<Mutex<VecDeque<String>>>,
    keep: usize,
    show: bool,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
        if show {
            eprintln!("[{label}] {line}");
        }
        push_line(&tail, line, keep);
    }
}

/// Appends `line` to `tail`, dropping the oldest beyond `keep`.
pub(crate) fn push_line(tail: &Mutex<VecDeque<String>>, line: String, keep: usize) {
    if let Ok(mut t) = tail.lock() {
        if t.len() == keep {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// One health probe as Render makes it: a GET on a new connection; healthy iff 2xx or 3xx
/// within `timeout`.
pub(crate) async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, get(addr, path)).await {
        Err(_) => Err(format!("no answer within {:.0} s", timeout.as_secs_f64())),
        Ok(Err(e)) => Err(e),
        Ok(Ok(status)) if (200..400).contains(&status) => Ok(()),
        Ok(Ok(status)) => Err(format!("HTTP {status}")),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            _ => format!("cannot connect: {e}"),
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::CONNECTION, "close")
        .header(hyper::header::USER_AGENT, "render-deploy-rehearse/health")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("no response: {e}"))?;
    let status = response.status().as_u16();
    // Read the body so the server sees a complete exchange.
    let _ = response.into_body().collect().await;
    Ok(status)
}

/// A free loopback port for an instance, avoiding Render's reserved ports and the ports
/// already handed out in this rehearsal (a port is free again once its probe listener closes).
pub(crate) fn free_port(taken: &mut Vec<u16>) -> Result<u16, RehearseError> {
    const RESERVED: [u16; 3] = [18012, 18013, 19099];
    loop {
        let listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(RehearseError::Bind)?;
        let port = listener.local_addr().map_err(RehearseError::Bind)?.port();
        if !RESERVED.contains(&port) && !taken.contains(&port) {
            taken.push(port);
            return Ok(port);
        }
    }
}
