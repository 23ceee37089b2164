//! The real binary as a child process whose output is collected, and waits on it that poll
//! with a deadline (never a fixed sleep).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::http::{Response, request};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_render-deploy");

/// A running `render-deploy` process whose output is collected.
pub struct Running {
    pub child: Child,
    pub port: u16,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
    /// Notified each time a line joins `stdout` (see [`wait_stdout`](Self::wait_stdout)).
    stdout_grew: Arc<Condvar>,
    /// The threads that collect the two streams; joined once the process has exited, so that
    /// what it printed last is in `stdout`/`stderr` before a test reads them.
    collectors: Vec<std::thread::JoinHandle<()>>,
    /// The stdout pipe of [`start_with_unread_stdout`](Self::start_with_unread_stdout), held
    /// open and never read.
    _unread_stdout: Option<ChildStdout>,
}

impl Running {
    pub fn start(args: &[&str], env: &[(String, String)]) -> Self {
        let mut command = Command::new(BIN);
        command.args(args);
        Self::spawn(command, env, true)
    }

    /// [`start`](Self::start) with a stdout pipe that nobody reads (a stalled log collector):
    /// once the pipe's 64 KiB are full, every write to it blocks. `stdout` stays empty.
    pub fn start_with_unread_stdout(args: &[&str], env: &[(String, String)]) -> Self {
        let mut command = Command::new(BIN);
        command.args(args);
        Self::spawn(command, env, false)
    }

    /// [`start`](Self::start) with the process's file limit (soft and hard) set to `nofile`,
    /// through util-linux's `prlimit`, which sets it and then executes the binary in place (so
    /// the child's pid is the server's).
    pub fn start_with_file_limit(nofile: u64, args: &[&str], env: &[(String, String)]) -> Self {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(BIN)
            .args(args);
        Self::spawn(command, env, true)
    }

    fn spawn(mut command: Command, env: &[(String, String)], read_stdout: bool) -> Self {
        let port = env
            .iter()
            .find(|(k, _)| k == "PORT")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut child = command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start render-deploy");
        let (stderr, _, err_thread) = collect(child.stderr.take().unwrap());
        let mut collectors = vec![err_thread];
        let mut unread_stdout = None;
        let (stdout, stdout_grew) = if read_stdout {
            let (stdout, grew, out_thread) = collect(child.stdout.take().unwrap());
            collectors.push(out_thread);
            (stdout, grew)
        } else {
            unread_stdout = child.stdout.take();
            Default::default()
        };
        Self {
            child,
            port,
            stdout,
            stderr,
            stdout_grew,
            collectors,
            _unread_stdout: unread_stdout,
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

    /// Waits until `found` finds what it looks for in the process's stdout so far (it is asked
    /// again each time a line arrives), at most `within`; what it found.
    pub fn wait_stdout<T>(&self, within: Duration, mut found: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        let mut stdout = self.stdout.lock().unwrap();
        loop {
            if let Some(value) = found(&stdout) {
                return value;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(stdout);
                panic!("not in stdout within {within:?}:\n{}", self.output());
            }
            stdout = self.stdout_grew.wait_timeout(stdout, left).unwrap().0;
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
                let took = started.elapsed();
                self.finish_collecting(within);
                return (status, took);
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                panic!("still running after {within:?}: {}", self.output());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (up to `within`) until both streams reached their end: the process has exited, but
    /// the collecting threads may not have read its last lines yet. A grandchild that kept a
    /// stream open past `within` is left to the `Drop` of the test.
    fn finish_collecting(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.collectors.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        for thread in std::mem::take(&mut self.collectors) {
            if thread.is_finished() {
                let _ = thread.join();
            }
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

fn collect(
    stream: impl Read + Send + 'static,
) -> (
    Arc<Mutex<String>>,
    Arc<Condvar>,
    std::thread::JoinHandle<()>,
) {
    let buf = Arc::new(Mutex::new(String::new()));
    let grew = Arc::new(Condvar::new());
    let (out, notify) = (buf.clone(), grew.clone());
    let thread = std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            out.lock().unwrap().push_str(&line);
            notify.notify_all();
            line.clear();
        }
    });
    (buf, grew, thread)
}
