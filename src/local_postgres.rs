//! A throwaway PostgreSQL cluster in a temporary folder, for `dev` and for tests.
//!
//! [`LocalPostgres::start`] runs the machine's `initdb` and `pg_ctl` (found on `PATH` or under
//! `/usr/lib/postgresql/*/bin`), as the `postgres` user when we are root because `initdb`
//! refuses to run as root. The cluster listens on a free loopback port with a random password
//! (scram-sha-256), and is stopped and its folder removed when the value is dropped, which also
//! happens while a panicking test unwinds.
//!
//! `Drop` does not run when the owning process is killed (SIGKILL, a signal it does not handle,
//! an abort), so each cluster also has a watchdog process that cleans up after an owner that
//! died: see `Watchdog`.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use secrecy::{ExposeSecret, SecretString};

/// Why a throwaway cluster could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    /// No `initdb`/`pg_ctl` on `PATH` or under `/usr/lib/postgresql/*/bin`.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin \
         (install them: apt-get install postgresql)"
    )]
    BinariesNotFound,
    /// We are root and there is no `postgres` user to run the server as.
    #[error("running as root and there is no `postgres` user to run the server as")]
    NoPostgresUser,
    /// A file-system step failed.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A server binary exited with an error.
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        /// The program that failed.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of what it printed.
        stderr: String,
    },
    /// A query on the cluster failed.
    #[error("query on the throwaway cluster failed: {0}")]
    Query(#[from] tokio_postgres::Error),
}

/// Settings of a throwaway cluster.
#[derive(Debug, Clone)]
pub struct LocalPostgresOptions {
    /// `max_connections` of the server.
    pub max_connections: u32,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
}

impl Default for LocalPostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 100,
            settings: Vec::new(),
        }
    }
}

/// A running throwaway PostgreSQL cluster; stopped and removed on drop.
pub struct LocalPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    password: SecretString,
    run_as: Option<(u32, u32)>,
    options: LocalPostgresOptions,
    running: bool,
    // Declared after `dir`: fields drop in order, so the folder is gone before the watchdog is
    // told to look, and it then has nothing to do.
    _watchdog: Watchdog,
}

impl std::fmt::Debug for LocalPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPostgres")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

impl LocalPostgres {
    /// Starts a cluster with default options.
    pub fn start() -> Result<Self, LocalPostgresError> {
        Self::start_with(LocalPostgresOptions::default())
    }

    /// Starts a cluster with the given options.
    pub fn start_with(options: LocalPostgresOptions) -> Result<Self, LocalPostgresError> {
        let bin = find_bin_dir().ok_or(LocalPostgresError::BinariesNotFound)?;
        let run_as = if nix::unistd::Uid::effective().is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .ok_or(LocalPostgresError::NoPostgresUser)?;
            Some((user.uid.as_raw(), user.gid.as_raw()))
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("render-deploy-pg-")
            .tempdir()
            .map_err(|source| LocalPostgresError::Io {
                step: "create temporary folder",
                source,
            })?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|source| {
                LocalPostgresError::Io {
                    step: "hand the folder to postgres",
                    source,
                }
            })?;
        }
        let watchdog = Watchdog::spawn(&bin.join("pg_ctl"), dir.path(), run_as)?;
        let password = crate::random::alphanumeric(24);
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).map_err(|source| {
            LocalPostgresError::Io {
                step: "write password file",
                source,
            }
        })?;
        if let Some((uid, gid)) = run_as {
            let _ = std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid));
        }
        let mut pg = Self {
            dir,
            bin,
            port: 0,
            password: SecretString::from(password),
            run_as,
            options,
            running: false,
            _watchdog: watchdog,
        };
        pg.run(
            "initdb",
            [
                OsStr::new("-D"),
                pg.data_dir().as_os_str(),
                OsStr::new("-U"),
                OsStr::new("postgres"),
                OsStr::new("--pwfile"),
                pwfile.as_os_str(),
                OsStr::new("--auth-local=trust"),
                OsStr::new("--auth-host=scram-sha-256"),
                OsStr::new("--no-sync"),
                OsStr::new("-E"),
                OsStr::new("UTF8"),
            ],
        )?;
        let _ = std::fs::remove_file(&pwfile);
        // A free port can be taken by someone else between our probe and the server's bind;
        // try a few.
        let mut last = None;
        for _ in 0..5 {
            pg.port = free_port();
            match pg.start_server() {
                Ok(()) => return Ok(pg),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's folder (data in `data/`, server log in `server.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `postgres://` URL of a database of this cluster (`sslmode=disable`).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{}?sslmode=disable",
            self.password.expose_secret(),
            self.port,
            database
        )
    }

    /// The superuser password (random per cluster).
    pub fn password(&self) -> &SecretString {
        &self.password
    }

    /// Creates a new, empty database with a unique name and returns its URL.
    pub async fn create_database(&self) -> Result<String, LocalPostgresError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "db_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let client = self.connect("postgres").await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        Ok(self.url(&name))
    }

    /// Connects to a database of the cluster with a plain client (for test set-up and checks).
    pub async fn connect(
        &self,
        database: &str,
    ) -> Result<tokio_postgres::Client, LocalPostgresError> {
        let (client, connection) =
            tokio_postgres::connect(&self.url(database), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Stops the server (fast shutdown); the folder stays until drop.
    pub fn stop(&mut self) -> Result<(), LocalPostgresError> {
        if self.running {
            self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "30"])?;
            self.running = false;
        }
        Ok(())
    }

    /// Starts the server again on the same port, after [`stop`](Self::stop).
    pub fn restart(&mut self) -> Result<(), LocalPostgresError> {
        self.stop()?;
        self.start_server()
    }

    /// Whether the server is running (as far as this value knows).
    pub fn is_running(&self) -> bool {
        self.running
    }

    fn start_server(&mut self) -> Result<(), LocalPostgresError> {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display(),
            self.options.max_connections
        );
        for (k, v) in &self.options.settings {
            opts.push_str(&format!(" -c {k}={v}"));
        }
        let log = self.dir.path().join("server.log");
        let log = log.to_string_lossy().into_owned();
        self.pg_ctl(&["start", "-w", "-t", "30", "-l", &log, "-o", &opts])?;
        self.running = true;
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, LocalPostgresError> {
        let data = self.data_dir();
        let mut all: Vec<&OsStr> = vec![OsStr::new("-D"), data.as_os_str()];
        all.extend(args.iter().map(OsStr::new));
        self.run("pg_ctl", all)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run<I, S>(&self, program: &str, args: I) -> Result<Output, LocalPostgresError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("LC_ALL", "C");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid).env("HOME", self.dir.path());
        }
        let out = cmd.output().map_err(|source| LocalPostgresError::Io {
            step: "run a PostgreSQL server binary",
            source,
        })?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            let tail: String = text
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(LocalPostgresError::Command {
                program: program.to_owned(),
                status: out.status,
                stderr: tail,
            });
        }
        Ok(out)
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if self.running {
            // Immediate: nothing in a throwaway cluster is worth a checkpoint.
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "10"]);
        }
    }
}

/// A `sh` that stops the cluster and removes its folder once its owner is gone, however it went.
///
/// It blocks reading a pipe whose only write end this process holds (std opens pipes
/// close-on-exec, so neither PostgreSQL nor any other child inherits it). The read ends when
/// the owner closes its end on drop or when the kernel closes it because the owner died, by
/// any signal; the shell then stops the server (immediate mode) if it runs and removes the
/// folder if it is still there. It has its own process group and ignores SIGINT and SIGHUP:
/// the Ctrl-C that kills the owner's foreground group (a test runner, a terminal) must not
/// kill the watchdog before it has cleaned up. It runs as the cluster's user, who owns the
/// folder, and writes nowhere, so it holds no one's output pipe open.
struct Watchdog {
    child: Child,
}

/// `$1` is `pg_ctl`, `$2` the cluster's folder. `read` is a builtin, so this is one process.
const WATCHDOG_SCRIPT: &str = r#"trap '' INT HUP
while read -r _; do :; done
[ -d "$2" ] || exit 0
if [ -f "$2/data/postmaster.pid" ]; then
  "$1" -D "$2/data" stop -m immediate -w -t 10 >/dev/null 2>&1
fi
rm -rf -- "$2"
"#;

impl Watchdog {
    fn spawn(
        pg_ctl: &Path,
        dir: &Path,
        run_as: Option<(u32, u32)>,
    ) -> Result<Self, LocalPostgresError> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("render-deploy-pg-watchdog")
            .arg(pg_ctl)
            .arg(dir)
            .current_dir("/")
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some((uid, gid)) = run_as {
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().map_err(|source| LocalPostgresError::Io {
            step: "start the cluster's watchdog",
            source,
        })?;
        Ok(Self { child })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // End of file: the watchdog wakes, finds the folder gone (or removes it) and exits;
        // waiting reaps it, so no zombie is left per cluster either.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The folder of the server binaries: `PATH` first, then the newest `/usr/lib/postgresql/*/bin`.
pub(crate) fn find_bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_throwaway_cluster_starts_answers_and_is_removed_on_drop() {
        let pg = LocalPostgres::start().expect("start cluster");
        let dir = pg.dir().to_path_buf();
        let url = pg.create_database().await.unwrap();
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let row = client.query_one("SELECT 1 + 1", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 2);
        drop(client);
        drop(pg);
        assert!(!dir.exists(), "the cluster's folder is removed");
    }

    #[tokio::test]
    async fn a_wrong_password_is_refused() {
        let pg = LocalPostgres::start().expect("start cluster");
        let url = format!("postgres://postgres:wrong@127.0.0.1:{}/postgres", pg.port());
        assert!(
            tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .is_err()
        );
    }
}
