//! `rehearse --sse`: event streams held through a deploy end cleanly and reconnect to the new
//! instance when the service ends them at SIGTERM, and fail the rehearsal, named, when the
//! service exits with them open or holds them until SIGKILL.

use crate::rehearsal::{Run, fixture_command, rehearse, strs};

/// The stream lines of the report: `client N #M  instance  A s to B s…: ending`.
fn streams(run: &Run) -> Vec<&str> {
    run.stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("client "))
        .collect()
}

/// The first number of seconds after `marker` in `line`.
fn seconds_after(line: &str, marker: &str) -> f64 {
    let rest = line
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no {marker:?} in {line}"));
    rest.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {marker:?} in {line}"))
}

// A tail of 2 s: each client reconnects (after the 1 s `retry`) before the load stops.
const SSE: [&str; 10] = [
    "--sse",
    "/events",
    "--sse-clients",
    "3",
    "--duration",
    "3s",
    "--tail",
    "2s",
    "--rate",
    "10",
];

#[tokio::test]
async fn the_services_own_event_streams_end_clean_at_sigterm_and_reconnect_to_the_new_instance() {
    let run = rehearse(&SSE, &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("result: PASS"), "{run:?}");
    let lines = streams(&run);
    for client in 1..=3 {
        let first = format!("client {client} #1 ");
        let second = format!("client {client} #2 ");
        let first = lines
            .iter()
            .find(|l| l.trim_start().starts_with(&first))
            .unwrap_or_else(|| panic!("no first stream of client {client}: {run:?}"));
        assert!(
            first.contains(" old-1 ") && first.ends_with("last `draining`: clean"),
            "{first}\n{run:?}"
        );
        let second = lines
            .iter()
            .find(|l| l.trim_start().starts_with(&second))
            .unwrap_or_else(|| panic!("client {client} did not reconnect: {run:?}"));
        assert!(second.contains(" new-1 "), "{second}\n{run:?}");
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("broken") || l.contains("failed")),
        "{run:?}"
    );
}

#[tokio::test]
async fn a_reconnect_carries_the_last_event_id_received() {
    let run = rehearse(&SSE, &strs(&fixture_command("well-behaved"))).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let reconnect = streams(&run)
        .into_iter()
        .find(|l| l.trim_start().starts_with("client 1 #2 "))
        .unwrap_or_else(|| panic!("no reconnect: {run:?}"));
    assert!(
        reconnect.contains(" new-1 ") && reconnect.contains("with Last-Event-ID old-1-"),
        "{reconnect}\n{run:?}"
    );
}

#[tokio::test]
async fn a_service_that_exits_at_sigterm_with_its_streams_open_breaks_them_and_fails() {
    let run = rehearse(&SSE, &strs(&fixture_command("drops-in-flight"))).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("result: FAIL"), "{run:?}");
    let problem = run
        .stdout
        .lines()
        .find(|l| l.contains("event streams on /events broken: "))
        .unwrap_or_else(|| panic!("no broken streams named: {run:?}"));
    for client in 1..=3 {
        assert!(
            problem.contains(&format!(
                "client {client} #1 (broken: reset before the end of the body)"
            )),
            "{problem}\n{run:?}"
        );
    }
    for line in streams(&run).iter().filter(|l| l.contains(" old-1 ")) {
        assert!(line.contains("broken"), "{line}\n{run:?}");
    }
}

#[tokio::test]
async fn a_service_that_never_ends_its_streams_has_them_cut_by_sigkill_and_fails() {
    let mut options = SSE.to_vec();
    options.extend(["--shutdown-delay", "2s"]);
    let run = rehearse(&options, &strs(&fixture_command("holds-streams"))).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let old = run.instance_line("old-1");
    let killed_at = seconds_after(old, "SIGKILL at ");
    let sigterm_at = seconds_after(old, "SIGTERM at ");
    let cut: Vec<&str> = streams(&run)
        .into_iter()
        .filter(|l| l.contains(" old-1 "))
        .collect();
    assert_eq!(cut.len(), 3, "{run:?}");
    for line in cut {
        assert!(line.contains("broken"), "{line}\n{run:?}");
        // Held open through the drain: it ended with the SIGKILL, not at the SIGTERM.
        let ended = seconds_after(line, " s to ");
        assert!(
            ended >= killed_at && ended > sigterm_at + 1.5,
            "{line}\n{old}"
        );
    }
    assert!(
        run.stdout
            .contains("did not exit within the shutdown delay"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("event streams on /events broken"),
        "{run:?}"
    );
}

#[tokio::test]
async fn every_failed_reconnect_is_counted_and_fails_the_rehearsal() {
    let mut options = SSE.to_vec();
    options[1] = "/no-such-stream";
    let run = rehearse(&options, &strs(&fixture_command("well-behaved"))).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let lines = streams(&run);
    assert!(lines.len() >= 6, "each client tried again: {run:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.ends_with("reconnect failed: status 404")),
        "{run:?}"
    );
    let problem = format!(
        "{} event stream (re)connects on /no-such-stream failed",
        lines.len()
    );
    assert!(run.stdout.contains(&problem), "{problem}\n{run:?}");
}
