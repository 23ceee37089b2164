//! The pool through PgBouncer in transaction mode (`DB_PGBOUNCER=true`), with Debian's
//! `pgbouncer` in front of a throwaway PostgreSQL.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use render_deploy::database_url::DatabaseUrl;
use render_deploy::local_postgres::LocalPostgres;
use render_deploy::pool::{PoolManager, PoolMax, PoolSettings};
use secrecy::ExposeSecret;

/// Server connections PgBouncer may open: fewer than the pool's, so clients must share them.
const SERVER_POOL: usize = 2;

struct PgBouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pgbouncer_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("pgbouncer"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/pgbouncer")).filter(|p| p.is_file()))
        .expect("pgbouncer is not installed (apt-get install pgbouncer; scripts/test installs it)")
}

impl PgBouncer {
    async fn start(pg: &LocalPostgres) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let ini = format!(
            "[databases]\n* = host=127.0.0.1 port={pg_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = scram-sha-256\nauth_file = {d}/userlist.txt\n\
             pool_mode = transaction\ndefault_pool_size = {SERVER_POOL}\nmax_client_conn = 200\n\
             logfile = {d}/pgbouncer.log\npidfile = {d}/pgbouncer.pid\n\
             ignore_startup_parameters = extra_float_digits\n",
            pg_port = pg.port(),
        );
        std::fs::write(dir.path().join("pgbouncer.ini"), ini).unwrap();
        std::fs::write(
            dir.path().join("userlist.txt"),
            format!("\"postgres\" \"{}\"\n", pg.password().expose_secret()),
        )
        .unwrap();
        let mut cmd = Command::new(pgbouncer_binary());
        cmd.arg(dir.path().join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // PgBouncer refuses to run as root.
        if nix::unistd::Uid::effective().is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .unwrap()
                .expect("a postgres user");
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                std::os::unix::fs::chown(&path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                    .unwrap();
            }
            std::os::unix::fs::chown(dir.path(), Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .unwrap();
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        let child = cmd.spawn().expect("start pgbouncer");
        let bouncer = Self {
            child,
            port,
            _dir: dir,
        };
        // PgBouncer has no readiness signal but its listening socket.
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bouncer
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_few_server_connections_through_pgbouncer_in_transaction_mode() {
    let pg = LocalPostgres::start().unwrap();
    let direct = pg.create_database().await.unwrap();
    let bouncer = PgBouncer::start(&pg).await;
    let url = direct.replace(&format!(":{}/", pg.port()), &format!(":{}/", bouncer.port));
    let url = DatabaseUrl::parse(&url).unwrap();
    let settings = PoolSettings {
        max: PoolMax::Fixed(8),
        pgbouncer: true,
        // Check on every checkout, so the check itself goes through PgBouncer each time.
        recheck_after: Duration::ZERO,
        ..PoolSettings::default()
    };
    let pool = PoolManager::new(&url, &settings).unwrap();
    let sizing = pool.warm_up().await.unwrap();
    assert_eq!(sizing.chosen, 8);

    let mut tasks = Vec::new();
    for task in 0..32i32 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20i32 {
                let mut conn = pool.get_connection().await.expect("checkout");
                // One round trip, unnamed statement: safe in transaction mode.
                let row = conn
                    .query_typed_one(
                        "SELECT $1::int4 + $2::int4",
                        &[
                            (&task, tokio_postgres::types::Type::INT4),
                            (&i, tokio_postgres::types::Type::INT4),
                        ],
                    )
                    .await
                    .expect("query through pgbouncer");
                assert_eq!(row.get::<_, i32>(0), task + i);
                // A transaction keeps one server connection for its length.
                let tx = conn.transaction().await.expect("begin");
                tx.simple_query("SELECT pg_backend_pid()")
                    .await
                    .expect("in tx");
                tx.commit().await.expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let status = pool.status();
    assert_eq!((status.timeouts, status.errors), (0, 0), "{status:?}");

    // Eight client connections, at most two server connections behind them.
    let admin = pg.connect("postgres").await.unwrap();
    let servers: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
            &[&url.database()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        servers as usize <= SERVER_POOL,
        "{servers} server connections"
    );
}

/// PgBouncer's version, e.g. `(1, 18)`, from `pgbouncer --version`.
fn pgbouncer_version() -> (u32, u32) {
    let out = Command::new(pgbouncer_binary())
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("a version in {text:?}"));
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// What the README tells PgBouncer users: tokio-postgres looks non-built-in types (enums,
/// domains, ...) up with a named statement it prepares once per connection and keeps, which a
/// later transaction may not find on the server PgBouncer gives it; a cast to text needs no
/// look-up. The pool cannot reset that statement (tokio-postgres has no API for it), so this
/// pins the limitation down: it fails here if a PgBouncer or driver update lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_pgbouncer_a_custom_type_breaks_after_a_server_switch_but_its_text_cast_does_not() {
    let pg = LocalPostgres::start().unwrap();
    let direct = pg.create_database().await.unwrap();
    let setup = DatabaseUrl::parse(&direct).unwrap();
    let (admin, connection) = setup
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let admin_task = tokio::spawn(connection);
    admin
        .batch_execute("CREATE TYPE mood AS ENUM ('happy'); CREATE TYPE size AS ENUM ('small')")
        .await
        .unwrap();
    drop(admin);
    let _ = admin_task.await;

    let bouncer = PgBouncer::start(&pg).await;
    let url = direct.replace(&format!(":{}/", pg.port()), &format!(":{}/", bouncer.port));
    let url = DatabaseUrl::parse(&url).unwrap();
    let settings = PoolSettings {
        max: PoolMax::Fixed(3),
        pgbouncer: true,
        ..PoolSettings::default()
    };
    let pool = PoolManager::new(&url, &settings).unwrap();
    pool.warm_up().await.unwrap();

    // PgBouncer has two servers; transactions held open pin them, so that `b` runs its
    // second transaction on the other server than its first.
    let a = pool.get_connection().await.unwrap();
    let b = pool.get_connection().await.unwrap();
    let c = pool.get_connection().await.unwrap();
    a.batch_execute("BEGIN").await.unwrap(); // a holds the first server
    b.batch_execute("BEGIN").await.unwrap(); // b gets the second
    let row = b
        .query_typed_one("SELECT 'happy'::mood::text, 'happy'::mood", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "happy");
    b.batch_execute("COMMIT").await.unwrap();
    c.batch_execute("BEGIN").await.unwrap(); // c takes the second server
    a.batch_execute("COMMIT").await.unwrap(); // the first is the only one free now
    drop(b);

    // With `a` and `c` held, the pool can only hand `b`'s connection out again.
    let b = pool.get_connection().await.unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    let looked_up = b
        .query_typed_one("SELECT 'small'::size", &[])
        .await
        .map(|_| ());
    b.batch_execute("ROLLBACK").await.unwrap();
    if pgbouncer_version() < (1, 21) {
        let err = looked_up.expect_err("the look-up statement lives on the other server");
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME),
            "{err:?}"
        );
    }
    b.batch_execute("BEGIN").await.unwrap();
    let row = b
        .query_typed_one("SELECT 'small'::size::text", &[])
        .await
        .expect("a text cast needs no look-up");
    assert_eq!(row.get::<_, &str>(0), "small");
    b.batch_execute("COMMIT").await.unwrap();
    c.batch_execute("COMMIT").await.unwrap();
}
