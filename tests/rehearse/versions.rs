//! End-to-end tests of a deploy from one version to the next (contract §8.1): the real binary,
//! the fixture service as two versions that really query the rehearsal's own PostgreSQL, a
//! setup and a pre-deploy command that really migrate it, and the connections the server
//! really held.

use crate::rehearsal::{Run, rehearse};
use crate::support::fixture::fixture;

/// The fixture as a shell command: `FIXTURE ARGS`, the path quoted for `sh`.
fn sh(args: &str) -> String {
    format!("'{}' {args}", fixture().display())
}

/// A table that the old version reads, as the old version's own migrations left it.
fn users_setup() -> String {
    sh(
        r#"sql "CREATE TABLE users (id int PRIMARY KEY, name text); INSERT INTO users VALUES (1, 'Ada')""#,
    )
}

const LOAD: [&str; 6] = ["--rate", "20", "--duration", "3s", "--warmup", "1s"];

impl Run {
    /// A row of the connections table (`phase  peak  at`) as (peak).
    fn connection_peak(&self, phase: &str) -> u32 {
        let table = self
            .stdout
            .split("database connections (")
            .nth(1)
            .unwrap_or_else(|| panic!("no connections section: {self:?}"));
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{phase} ")))
            .unwrap_or_else(|| panic!("no {phase} row: {self:?}"));
        line.split_whitespace()
            .nth(phase.split_whitespace().count())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no peak in {line}"))
    }

    /// The rows of the failures table whose phase, instance and version are these.
    fn failures(&self, instance: &str, version: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .skip_while(|l| !l.starts_with("failed requests by phase, instance and version"))
            .skip(2)
            .take_while(|l| l.starts_with("  "))
            .filter(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.windows(2).any(|w| w == [instance, version])
            })
            .collect()
    }
}

#[tokio::test]
async fn a_column_renamed_by_the_pre_deploy_breaks_the_old_version_and_the_report_says_so() {
    let (setup, old, new) = (
        users_setup(),
        sh("well-behaved --read-column users.name"),
        sh("well-behaved --read-column users.full_name"),
    );
    let pre_deploy = sh(r#"sql "ALTER TABLE users RENAME COLUMN name TO full_name""#);
    let mut options = LOAD.to_vec();
    options.extend(["--setup", &setup, "--old", &old, "--new", &new]);
    options.extend(["--pre-deploy", &pre_deploy]);
    let run = rehearse(&options, &[]).await;

    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .contains("the migration is not compatible with the version still running"),
        "{run:?}"
    );
    // The old version answered before, and what it said afterwards is quoted.
    assert!(
        run.stdout
            .contains("before the pre-deploy command, then failed"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(r#"HTTP 500 at"#)
            && run.stdout.contains(r#"column \"name\" does not exist"#),
        "{run:?}"
    );
    // Every failure is the old version's, sent after the pre-deploy began; the new one is fine.
    let old_rows = run.failures("old-1", "old");
    assert!(!old_rows.is_empty(), "{run:?}");
    assert!(
        old_rows
            .iter()
            .all(|l| !l.trim_start().starts_with("before")),
        "{run:?}"
    );
    assert!(run.failures("new-1", "new").is_empty(), "{run:?}");
    assert!(run.served("new-1") > 0, "{run:?}");
}

#[tokio::test]
async fn an_expand_only_migration_deploys_with_no_failed_request() {
    let (setup, old, new) = (
        users_setup(),
        sh("well-behaved --read-column users.name"),
        sh("well-behaved --read-column users.full_name"),
    );
    // Expand now (add and fill the new column; the old one stays), contract next deploy.
    let pre_deploy = sh(
        r#"sql "ALTER TABLE users ADD COLUMN full_name text; UPDATE users SET full_name = name""#,
    );
    let mut options = LOAD.to_vec();
    options.extend(["--setup", &setup, "--old", &old, "--new", &new]);
    options.extend(["--pre-deploy", &pre_deploy]);
    let run = rehearse(&options, &[]).await;

    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.requests().1, 0, "{run:?}");
    assert!(run.stdout.contains("result: PASS"), "{run:?}");
    assert!(
        run.stdout.contains("pre-deploy `") && run.stdout.contains("ok: ALTER TABLE users"),
        "its output is shown: {run:?}"
    );
    assert!(
        run.served("old-1") > 0 && run.served("new-1") > 0,
        "{run:?}"
    );
    // SIGTERM reached the service under `sh -c`, which drained and exited by itself.
    assert!(run.instance_line("old-1").contains("exited 0"), "{run:?}");
}

#[tokio::test]
async fn a_failing_pre_deploy_fails_the_deploy_the_new_version_never_starts_and_the_old_serves_on()
{
    let old = sh("well-behaved --read-column users.name");
    let (setup, pre_deploy) = (
        users_setup(),
        sh(r#"sql "ALTER TABLE accounts RENAME COLUMN name TO full_name""#),
    );
    let mut options = LOAD.to_vec();
    options.extend(["--setup", &setup, "--old", &old, "--new", &old]);
    options.extend(["--pre-deploy", &pre_deploy]);
    let run = rehearse(&options, &[]).await;

    assert_eq!(run.code, Some(1), "{run:?}");
    for want in [
        "(pre_deploy_failed)",
        "exited 1",
        r#"ERROR: relation "accounts" does not exist"#,
        "the new version was never started",
        &pre_deploy,
    ] {
        assert!(run.stdout.contains(want), "{want}: {run:?}");
    }
    let (sent, failed) = run.requests();
    assert!(sent > 0 && failed == 0, "{run:?}");
    assert_eq!(run.served("old-1"), sent, "{run:?}");
    assert!(
        !run.stdout.contains("new-1"),
        "no new instance was started: {run:?}"
    );
    assert!(
        run.instance_line("old-1").contains("SIGTERM at the end"),
        "{run:?}"
    );
}

#[tokio::test]
async fn a_failing_setup_stops_the_rehearsal_with_its_output() {
    let setup = sh(r#"sql "SELECT * FROM missing_table""#);
    let run = rehearse(&["--duration", "1s", "--setup", &setup], &[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("the setup command"), "{run:?}");
    assert!(run.stderr.contains("exited 1"), "{run:?}");
    assert!(
        run.stderr
            .contains(r#"ERROR: relation "missing_table" does not exist"#),
        "{run:?}"
    );
}

/// Each version holds `each` connections for as long as it runs, on a server of 10; it is
/// healthy once it holds them all (which takes a while: SCRAM is slow in a debug build).
async fn two_versions_holding(each: usize) -> Run {
    let version = sh(&format!("well-behaved --connections {each}"));
    let mut options = LOAD.to_vec();
    options.extend([
        "--db-max-connections",
        "10",
        "--old",
        &version,
        "--new",
        &version,
    ]);
    options.extend(["--health-timeout", "4s"]);
    rehearse(&options, &[]).await
}

#[tokio::test]
async fn two_versions_that_each_hold_more_than_half_the_connections_reach_the_limit_and_fail() {
    let run = two_versions_holding(6).await;

    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.connection_peak("all"), 10, "{run:?}");
    assert_eq!(run.connection_peak("new starting"), 10, "{run:?}");
    assert!(run.stdout.contains("AT THE LIMIT"), "{run:?}");
    assert!(
        run.stdout
            .contains("the database's connections reached its limit (10 of max_connections 10)"),
        "{run:?}"
    );
    // The new version could not open its pool: the server refused it, and the deploy failed
    // with the old version serving on.
    assert!(run.stdout.contains("deploy FAILED"), "{run:?}");
    assert!(
        run.instance_line("new-1").contains("never healthy"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("too many clients already"),
        "its output says why: {run:?}"
    );
    assert_eq!(run.requests().1, 0, "{run:?}");
}

#[tokio::test]
async fn two_versions_that_each_hold_less_than_half_the_connections_deploy_within_the_limit() {
    let run = two_versions_holding(3).await;

    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.requests().1, 0, "{run:?}");
    // Both pools at once while the old one drains, plus the rehearsal's own connection.
    assert_eq!(run.connection_peak("all"), 7, "{run:?}");
    assert_eq!(run.connection_peak("before"), 4, "{run:?}");
}

/// `dev`'s `auto` pool: ⌊(max_connections − 3 reserved − 10 spare) / (2 × 1 instance)⌋ must be
/// at least 1, so 15 is the smallest limit its sizing accepts.
#[tokio::test]
async fn this_service_deploys_at_the_smallest_limit_its_pool_sizing_accepts() {
    let options = ["--rate", "20", "--duration", "3s", "--show-output"];
    let run = rehearse(
        &[&options[..], &["--db-max-connections", "15"]].concat(),
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.requests().1, 0, "{run:?}");
    assert!(run.connection_peak("all") < 15, "{run:?}");
    assert!(
        run.stderr.contains("pool size 1 (auto)")
            && run
                .stderr
                .contains("(15 max_connections − 3 reserved − 10) / (2 × 1 instances)⌋ = 1"),
        "{run:?}"
    );
    // One below, the sizing refuses, and an instance whose pool cannot be sized never reports
    // healthy (§5: a configuration error), so the deploy fails.
    let below = rehearse(
        &[
            "--duration",
            "1s",
            "--show-output",
            "--db-max-connections",
            "14",
        ],
        &[],
    )
    .await;
    assert!(
        below
            .stderr
            .contains("DB_POOL_MAX=auto leaves 0 connections per instance"),
        "{below:?}"
    );
    assert_eq!(below.code, Some(1), "{below:?}");
}

#[tokio::test]
async fn options_that_contradict_each_other_are_refused_before_anything_starts() {
    let cases: [(&[&str], &[&str], &str); 4] = [
        (
            &["--no-database", "--db-max-connections", "20"],
            &[],
            "--db-max-connections",
        ),
        (&["--db-max-connections", "2"], &[], "from 5 to 10000"),
        (
            &["--old", "true", "--new", "true"],
            &["sleep", "1"],
            "would be run by neither",
        ),
        (
            &["--pre-deploy", " "],
            &[],
            "--pre-deploy: expected a shell command",
        ),
    ];
    for (options, command, want) in cases {
        let run = rehearse(options, command).await;
        assert_eq!(run.code, Some(1), "{options:?}: {run:?}");
        assert!(run.stderr.contains(want), "{options:?}: {want}: {run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
}

#[tokio::test]
async fn without_a_database_nothing_is_started_or_sampled() {
    let old = sh("well-behaved");
    let check = "test -z \"$PORT\" && echo no-database";
    let run = rehearse(
        &[
            "--duration",
            "2s",
            "--no-database",
            "--old",
            &old,
            "--pre-deploy",
            check,
        ],
        &[fixture().to_str().expect("a UTF-8 path"), "well-behaved"],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!run.stdout.contains("database connections"), "{run:?}");
    assert!(run.stdout.contains("    no-database"), "{run:?}");
}

/// With `DATABASE_URL` set, every command uses that database, and its connections are counted
/// against its own `max_connections`.
#[tokio::test]
async fn with_database_url_set_the_commands_share_that_database_and_it_is_sampled() {
    use render_deploy::local_postgres::{LocalPostgres, LocalPostgresOptions};
    let pg = LocalPostgres::start_with(LocalPostgresOptions {
        max_connections: 30,
        ..Default::default()
    })
    .expect("a throwaway cluster");
    let url = pg.create_database().await.expect("a database");
    let version = sh("well-behaved --read-column users.name --connections 2");
    let run_with = |options: Vec<String>| {
        let url = url.clone();
        async move {
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_render-deploy"))
                .arg("rehearse")
                .args(&options)
                .env("DATABASE_URL", &url)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(crate::rehearsal::RUN_LIMIT, output)
                .await
                .expect("the rehearsal ended within the limit")
                .expect("run render-deploy");
            Run::from(output)
        }
    };
    let mut options: Vec<String> = LOAD.iter().map(|s| (*s).to_owned()).collect();
    options.extend([
        "--setup".into(),
        users_setup(),
        "--old".into(),
        version.clone(),
    ]);
    options.extend(["--new".into(), version]);
    let run = run_with(options).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("limit max_connections 30"), "{run:?}");
    // The rehearsal's own, and both versions' pools while the old one drains.
    assert_eq!(run.connection_peak("all"), 5, "{run:?}");
    // The setup ran against that database: the table is there.
    let database = url
        .rsplit('/')
        .next()
        .and_then(|d| d.split('?').next())
        .expect("a database name");
    let client = pg.connect(database).await.expect("connect");
    let n: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("the table exists")
        .get(0);
    assert_eq!(n, 1);

    let refused = run_with(vec!["--db-max-connections".into(), "20".into()]).await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("DATABASE_URL unset"), "{refused:?}");
}

/// Ctrl-C while the pre-deploy command runs: it is killed with its whole process group, as the
/// instances are, and the throwaway database is removed.
#[tokio::test]
async fn an_interrupted_rehearsal_leaves_no_pre_deploy_command_running() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    let old = sh("well-behaved");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_render-deploy"))
        .args([
            "rehearse",
            "--show-output",
            "--warmup",
            "0.2s",
            "--old",
            &old,
            "--new",
            &old,
        ])
        .args(["--pre-deploy", "sleep 300 & echo \"sleeping $!\"; wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start render-deploy");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let pid = tokio::time::timeout(crate::rehearsal::RUN_LIMIT, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if let Some(pid) = line.strip_prefix("[pre-deploy] sleeping ") {
                return pid.trim().parse::<u32>().expect("a pid");
            }
        }
        panic!("render-deploy ended before the pre-deploy command started");
    })
    .await
    .expect("the pre-deploy command started");
    assert!(!crate::rehearsal::gone(pid));

    let rehearse_pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(rehearse_pid, nix::sys::signal::Signal::SIGINT).expect("send SIGINT");
    let status = tokio::time::timeout(crate::rehearsal::RUN_LIMIT, child.wait())
        .await
        .expect("render-deploy exits on Ctrl-C")
        .expect("wait");
    assert_eq!(status.code(), Some(1));
    // SIGKILL was sent before render-deploy exited; the kernel may take a moment to reap it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !crate::rehearsal::gone(pid) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let survived = !crate::rehearsal::gone(pid);
    if survived {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(!survived, "the pre-deploy command outlived the rehearsal");
}
