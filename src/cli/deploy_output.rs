//! What `deploy` prints: progress on stderr (one line updated in place on a terminal, a line per
//! status change otherwise), then a summary line or one JSON object on stdout; and its exit code.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::EXIT_UNAVAILABLE;
use crate::render_api::ApiError;
use crate::render_api::deploy::{Event, Report, RollbackEnd, Verdict};

/// Output format of `deploy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A line per status change (in place on a terminal) and a summary line.
    Text,
    /// One JSON object at the end (§9's fields).
    Json,
}

/// Not finished within `--timeout` (`EX_TEMPFAIL`).
pub const EXIT_TIMEOUT: u8 = 75;
/// The API key was refused (`EX_NOPERM`).
pub const EXIT_REFUSED: u8 = 77;

/// The exit code of §2 for how the deploy ended.
pub fn exit_code(verdict: &Verdict) -> u8 {
    match verdict {
        Verdict::Created | Verdict::Live => 0,
        Verdict::Failed { .. } | Verdict::SmokeFailed { .. } => 1,
        Verdict::TimedOut => EXIT_TIMEOUT,
        Verdict::Error(e) => api_error_code(e),
    }
}

fn api_error_code(e: &ApiError) -> u8 {
    match e {
        ApiError::Unauthorized { .. } => EXIT_REFUSED,
        ApiError::Unavailable { .. } | ApiError::Uncertain { .. } | ApiError::Client(_) => {
            EXIT_UNAVAILABLE
        }
        ApiError::Rejected { .. } | ApiError::BadAnswer { .. } => 1,
    }
}

/// Prints the events of a deploy as they come, then the end.
pub struct Printer {
    format: Format,
    started: Instant,
    /// stderr is a terminal: one line, redrawn in place.
    in_place: bool,
    /// A line is drawn in place and not yet ended.
    open: bool,
    /// Where progress goes: stderr (a buffer in the tests).
    err: Box<dyn Write>,
}

impl Printer {
    /// A printer for `format`; elapsed times count from `started`.
    pub fn new(format: Format, started: Instant) -> Self {
        let in_place = std::io::stderr().is_terminal();
        Self::to(format, started, Box::new(std::io::stderr()), in_place)
    }

    /// A printer whose progress goes to `err`, drawn in place or not.
    fn to(format: Format, started: Instant, err: Box<dyn Write>, in_place: bool) -> Self {
        Self {
            format,
            started,
            in_place,
            open: false,
            err,
        }
    }

    /// One event.
    pub fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Created(d) => self.line(&format!(
                "{} {}: deploy created ({})",
                stamp(self.started.elapsed()),
                d.id,
                d.status.as_str()
            )),
            Event::Status {
                status,
                changed,
                elapsed,
                rollback,
            } => {
                let what = if rollback { "rollback " } else { "" };
                let text = format!("{} {what}{}", stamp(elapsed), status.as_str());
                // Write errors on stderr are ignored: progress is a courtesy, the exit code and
                // the summary are what count.
                if self.in_place {
                    let _ = write!(self.err, "\r\x1b[K{text}");
                    let _ = self.err.flush();
                    self.open = true;
                } else if changed {
                    let _ = writeln!(self.err, "{text}");
                }
            }
            Event::Smoke(r) => {
                let answer = match (r.status, &r.error) {
                    (Some(s), _) => s.to_string(),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "no answer".to_owned(),
                };
                let verdict = if r.passed() { "ok" } else { "FAILED" };
                self.line(&format!("smoke {}: {answer} {verdict}", r.path));
            }
            Event::RollingBack(to) => self.line(&format!(
                "{} rolling back to {to}",
                stamp(self.started.elapsed())
            )),
        }
    }

    /// A whole line on stderr, ending the in-place line first.
    fn line(&mut self, text: &str) {
        self.end_line();
        let _ = writeln!(self.err, "{text}");
    }

    fn end_line(&mut self) {
        if self.open {
            let _ = writeln!(self.err);
            self.open = false;
        }
    }

    /// The end: the error (stderr), then the summary line or the JSON object (stdout).
    pub fn finish(&mut self, report: &Report) {
        self.end_line();
        if let Verdict::Error(e) = &report.verdict {
            let _ = writeln!(
                self.err,
                "render-deploy deploy: {}",
                crate::telemetry::error_chain(e)
            );
        }
        match self.format {
            Format::Text => println!("{}", summary(report)),
            Format::Json => println!("{}", json(report)),
        }
    }
}

/// `+m:ss` (or `+h:mm:ss`) since the start.
pub fn stamp(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("+{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("+{}:{:02}", s / 60, s % 60)
    }
}

/// The summary line.
fn summary(r: &Report) -> String {
    let id = r.deploy_id.as_deref().unwrap_or("(no deploy)");
    let status = r.status.as_deref().unwrap_or("unknown");
    let after = stamp(r.elapsed);
    match &r.verdict {
        Verdict::Created => format!("{id}: created ({status}); not followed (no --wait)"),
        Verdict::Live => {
            let url = r
                .url
                .as_deref()
                .map(|u| format!(" at {u}"))
                .unwrap_or_default();
            let smoke = if r.smoke.is_empty() {
                String::new()
            } else {
                format!(", {} smoke path(s) answered 2xx", r.smoke.len())
            };
            format!("{id}: live{url} ({after}){smoke}")
        }
        Verdict::Failed { phase, during } => match (*phase, during) {
            ("canceled", Some(d)) => format!("{id}: canceled during {d} ({after})"),
            ("canceled", None) => format!("{id}: canceled ({after})"),
            (phase, _) => format!("{id}: {status}: the {phase} phase failed ({after})"),
        },
        Verdict::SmokeFailed { reason, rollback } => {
            let why = match reason {
                Some(reason) => format!("the smoke test could not run: {reason}"),
                None => {
                    let failed: Vec<String> = r
                        .smoke
                        .iter()
                        .filter(|s| !s.passed())
                        .map(|s| match s.status {
                            Some(code) => format!("{} answered {code}", s.path),
                            None => format!("{} did not answer", s.path),
                        })
                        .collect();
                    format!("the smoke test failed ({})", failed.join(", "))
                }
            };
            let rollback = match (rollback, &r.rolled_back_to) {
                (None, _) => "; not rolled back (no --rollback-on-failure)".to_owned(),
                (Some(RollbackEnd::Live), Some(to)) => {
                    format!("; rolled back to {to}: the rollback is live")
                }
                (Some(RollbackEnd::NotLive(s)), Some(to)) => {
                    format!("; rolled back to {to}: the rollback did NOT go live ({s})")
                }
                (Some(RollbackEnd::NoTarget), _) => {
                    "; no earlier live deploy to roll back to".to_owned()
                }
                (Some(RollbackEnd::Error(e)), _) => format!(
                    "; the rollback did NOT go live: {}",
                    crate::telemetry::error_chain(e)
                ),
                (Some(_), None) => "; the rollback did NOT go live".to_owned(),
            };
            format!("{id}: live but {why}{rollback} ({after})")
        }
        Verdict::TimedOut => {
            format!("{id}: not finished within --timeout (last status: {status}) ({after})")
        }
        Verdict::Error(_) => match &r.deploy_id {
            None => format!("no deploy was created; stopped by the error above ({after})"),
            Some(id) => format!("{id}: last status {status}; stopped by the error above ({after})"),
        },
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    deploy_id: Option<&'a str>,
    service_id: Option<&'a str>,
    status: Option<&'a str>,
    url: Option<&'a str>,
    elapsed_seconds: f64,
    history: Vec<JsonStatus<'a>>,
    smoke: Vec<JsonSmoke<'a>>,
    rolled_back_to: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonStatus<'a> {
    status: &'a str,
    at_seconds: f64,
}

#[derive(Serialize)]
struct JsonSmoke<'a> {
    path: &'a str,
    status: Option<u16>,
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The JSON object of §9.
fn json(r: &Report) -> String {
    let report = JsonReport {
        deploy_id: r.deploy_id.as_deref(),
        service_id: Some(&r.service_id),
        status: r.status.as_deref(),
        url: r.url.as_deref(),
        elapsed_seconds: seconds(r.elapsed),
        history: r
            .history
            .iter()
            .map(|(status, at)| JsonStatus {
                status,
                at_seconds: seconds(*at),
            })
            .collect(),
        smoke: r
            .smoke
            .iter()
            .map(|s| JsonSmoke {
                path: &s.path,
                status: s.status,
            })
            .collect(),
        rolled_back_to: r.rolled_back_to.as_deref(),
    };
    serde_json::to_string(&report).expect("plain data serializes")
}

/// The JSON object of §9 for a deploy started through the hook (nothing followed).
pub fn hook_json(deploy_id: Option<&str>, service_id: Option<&str>, elapsed: Duration) -> String {
    let report = JsonReport {
        deploy_id,
        service_id,
        status: None,
        url: None,
        elapsed_seconds: seconds(elapsed),
        history: Vec::new(),
        smoke: Vec::new(),
        rolled_back_to: None,
    };
    serde_json::to_string(&report).expect("plain data serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes the test reads afterwards.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn polls(in_place: bool) -> String {
        use crate::render_api::DeployStatus;
        let out = Shared::default();
        let mut p = Printer::to(
            Format::Json,
            Instant::now(),
            Box::new(out.clone()),
            in_place,
        );
        for (status, changed, secs) in [
            (DeployStatus::BuildInProgress, true, 1),
            (DeployStatus::BuildInProgress, false, 6),
            (DeployStatus::Live, true, 42),
        ] {
            p.event(Event::Status {
                status: &status,
                changed,
                elapsed: Duration::from_secs(secs),
                rollback: false,
            });
        }
        p.end_line();
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn on_a_terminal_one_line_is_redrawn_in_place_on_every_poll() {
        assert_eq!(
            polls(true),
            "\r\x1b[K+0:01 build_in_progress\r\x1b[K+0:06 build_in_progress\r\x1b[K+0:42 live\n"
        );
    }

    #[test]
    fn without_a_terminal_each_change_is_a_line() {
        assert_eq!(polls(false), "+0:01 build_in_progress\n+0:42 live\n");
    }

    #[test]
    fn stamps_are_minutes_and_seconds() {
        assert_eq!(stamp(Duration::from_secs(42)), "+0:42");
        assert_eq!(stamp(Duration::from_secs(125)), "+2:05");
        assert_eq!(stamp(Duration::from_secs(3723)), "+1:02:03");
    }
}
