//! End-to-end tests of `render-deploy rehearse`: the real binary rehearsing the deploy of a
//! fixture service (`examples/rehearse_fixture.rs`) that behaves well, or wrongly in one of
//! the ways a deploy exposes.

use std::process::{Output, Stdio};
use std::time::Duration;

use crate::support::fixture::fixture;

/// The whole of one rehearsal may take this long before the test gives up on it.
pub(crate) const RUN_LIMIT: Duration = Duration::from_secs(90);

pub(crate) struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    pub fn instance_line(&self, name: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}: {self:?}"))
    }

    /// `requests: N sent, M failed` as (N, M).
    pub fn requests(&self) -> (usize, usize) {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("requests: "))
            .unwrap_or_else(|| panic!("no requests line: {self:?}"));
        let numbers: Vec<usize> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        (numbers[0], numbers[1])
    }

    /// `served N` on an instance's line.
    pub fn served(&self, name: &str) -> usize {
        let line = self.instance_line(name);
        let after = line
            .split("served ")
            .nth(1)
            .unwrap_or_else(|| panic!("no `served` in {line}"));
        after
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {line}"))
    }
}

/// Runs `render-deploy rehearse OPTIONS -- COMMAND...`.
pub(crate) async fn rehearse(options: &[&str], command: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_render-deploy"));
    cmd.arg("rehearse").args(options);
    if !command.is_empty() {
        cmd.arg("--").args(command);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("start render-deploy");
    let output: Output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("the rehearsal ended within the limit")
        .expect("wait for render-deploy");
    Run::from(output)
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

pub(crate) fn fixture_command(mode: &str) -> Vec<String> {
    vec![fixture().display().to_string(), mode.to_owned()]
}

pub(crate) fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A fast and a slow path, so that requests are in flight at the old instance when it is
/// told to stop: the slow one takes longer than the drain delay.
const MIXED_LOAD: [&str; 6] = ["--path", "/", "--path", "/slow?ms=800", "--drain", "0.2s"];

#[tokio::test]
async fn a_well_behaved_service_is_deployed_with_no_failed_request_and_no_sigkill() {
    let mut command = fixture_command("well-behaved");
    command.extend(["--startup-ms".to_owned(), "300".to_owned()]);
    let mut options = vec!["--rate", "40", "--duration", "4s"];
    options.extend(MIXED_LOAD);
    let run = rehearse(&options, &strs(&command)).await;

    assert_eq!(run.code, Some(0), "{run:?}");
    let (sent, failed) = run.requests();
    assert!(sent >= 100, "only {sent} requests were sent: {run:?}");
    assert_eq!(failed, 0, "{run:?}");
    assert!(run.stdout.contains("result: PASS"), "{run:?}");
    // Both instances served, and the old one drained what it had and exited by itself.
    assert!(
        run.served("old-1") > 0 && run.served("new-1") > 0,
        "{run:?}"
    );
    let old = run.instance_line("old-1");
    assert!(
        old.contains("exited 0") && !old.contains("SIGKILL"),
        "{run:?}"
    );
}

#[tokio::test]
async fn a_service_that_drops_requests_in_flight_on_sigterm_fails_the_rehearsal() {
    let mut options = vec!["--rate", "40", "--duration", "3s"];
    options.extend(MIXED_LOAD);
    let run = rehearse(&options, &strs(&fixture_command("drops-in-flight"))).await;

    assert_eq!(run.code, Some(1), "{run:?}");
    let (_, failed) = run.requests();
    assert!(failed > 0, "{run:?}");
    assert!(
        run.stdout
            .contains("connection reset or closed before the response"),
        "the cause is reported: {run:?}"
    );
    assert!(run.stdout.contains("result: FAIL"), "{run:?}");
    // It exited 0, as such a service does: only the lost requests give it away.
    assert!(run.instance_line("old-1").contains("exited 0"), "{run:?}");
}

#[tokio::test]
async fn a_new_instance_that_never_becomes_healthy_fails_the_deploy_while_the_old_one_serves_on() {
    let options = [
        "--rate",
        "20",
        "--duration",
        "2s",
        "--health-timeout",
        "1.5s",
    ];
    let run = rehearse(&options, &strs(&fixture_command("never-healthy-new"))).await;

    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("deploy FAILED"), "{run:?}");
    assert!(run.stdout.contains("last probe: HTTP 503"), "{run:?}");
    let (sent, failed) = run.requests();
    assert!(sent > 0 && failed == 0, "{run:?}");
    assert_eq!(run.served("new-1"), 0, "{run:?}");
    assert!(
        run.instance_line("new-1").contains("never healthy"),
        "{run:?}"
    );
}

#[tokio::test]
async fn an_instance_that_ignores_sigterm_is_killed_after_the_shutdown_delay_and_fails_the_rehearsal()
 {
    let options = ["--rate", "20", "--duration", "2s", "--shutdown-delay", "1s"];
    let run = rehearse(&options, &strs(&fixture_command("ignores-sigterm"))).await;

    assert_eq!(run.code, Some(1), "{run:?}");
    let old = run.instance_line("old-1");
    assert!(
        old.contains("SIGKILL at") && old.contains("killed by SIGKILL"),
        "{run:?}"
    );
    assert!(run.stdout.contains("was sent SIGKILL"), "{run:?}");
}

#[tokio::test]
async fn a_rolling_deploy_of_three_instances_loses_no_request() {
    let mut options = vec!["--rate", "40", "--duration", "4s", "--instances", "3"];
    options.extend(["--path", "/", "--path", "/slow?ms=300", "--drain", "0.2s"]);
    let run = rehearse(&options, &strs(&fixture_command("well-behaved"))).await;

    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.requests().1, 0, "{run:?}");
    for n in 1..=3 {
        let old = run.instance_line(&format!("old-{n}"));
        assert!(old.contains("exited 0"), "{run:?}");
        assert!(run.served(&format!("new-{n}")) > 0, "{run:?}");
    }
}

#[tokio::test]
async fn a_command_that_cannot_be_started_is_reported_and_exits_1() {
    let run = rehearse(
        &["--duration", "1s"],
        &["/nonexistent/render-deploy-rehearse-fixture"],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("cannot start instance old-1"),
        "{run:?}"
    );
}

/// Whether a process is gone (or a zombie nobody has reaped yet: it runs nothing).
pub(crate) fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn no_instance_outlives_an_interrupted_rehearsal() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    // The worst case: instances that ignore SIGTERM, interrupted mid-deploy.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_render-deploy"))
        .args([
            "rehearse",
            "--show-output",
            "--duration",
            "30s",
            "--warmup",
            "0.2s",
        ])
        .arg("--")
        .args(fixture_command("ignores-sigterm"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start render-deploy");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    // Each instance prints "NAME: listening on 127.0.0.1:PORT (pid N)"; wait for both the old
    // and the new one, so that the rehearsal is interrupted mid-deploy.
    let pids = tokio::time::timeout(RUN_LIMIT, async {
        let mut pids = Vec::new();
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if let Some(pid) = line.split("(pid ").nth(1) {
                pids.push(pid.trim_end_matches(')').parse::<u32>().expect("a pid"));
                if pids.len() == 2 {
                    return pids;
                }
            }
        }
        panic!("render-deploy ended before both instances listened");
    })
    .await
    .expect("the instances started");
    assert!(pids.iter().all(|&pid| !gone(pid)));

    let rehearse_pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(rehearse_pid, nix::sys::signal::Signal::SIGINT).expect("send SIGINT");
    let status = tokio::time::timeout(RUN_LIMIT, child.wait())
        .await
        .expect("render-deploy exits on Ctrl-C")
        .expect("wait");
    assert_eq!(status.code(), Some(1));
    // The instances were sent SIGKILL before render-deploy exited; give the kernel a moment
    // to finish tearing them down.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !pids.iter().all(|&pid| gone(pid)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let survivors: Vec<u32> = pids.into_iter().filter(|&pid| !gone(pid)).collect();
    for &pid in &survivors {
        // Do not leave them behind when this test fails.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        survivors.is_empty(),
        "instances {survivors:?} outlived the rehearsal"
    );
}

/// Rehearses this program's own service (`render-deploy dev`, on a throwaway PostgreSQL).
#[tokio::test]
async fn rehearsing_this_service_loses_no_request_and_needs_no_sigkill() {
    let run = rehearse(&["--rate", "30", "--duration", "5s"], &[]).await;

    assert_eq!(run.code, Some(0), "{run:?}");
    let (sent, failed) = run.requests();
    assert!(sent >= 100, "{run:?}");
    assert_eq!(failed, 0, "{run:?}");
    assert!(
        run.served("old-1") > 0 && run.served("new-1") > 0,
        "{run:?}"
    );
    assert!(!run.stdout.contains("SIGKILL at"), "{run:?}");
}

/// A rolling deploy of three instances of this program's own service.
#[tokio::test]
async fn a_rolling_deploy_of_three_instances_of_this_service_loses_no_request() {
    let run = rehearse(
        &["--rate", "30", "--duration", "6s", "--instances", "3"],
        &[],
    )
    .await;

    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.requests().1, 0, "{run:?}");
    for n in 1..=3 {
        assert!(run.served(&format!("new-{n}")) > 0, "{run:?}");
    }
}
