//! The rehearsal as the table printed on stdout (`html` draws the same as a page).

use std::fmt::Write as _;

use super::record::{PhaseKind, Role};
use super::report::{InstanceReport, Rehearsal, millis, secs, trim_float};

impl Rehearsal {
    /// The table printed on stdout.
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.write_heading(&mut out);
        self.write_phases(&mut out);
        // The versions' sections (`versions`, `connections`): failures by phase, instance and
        // version; connections against the limit; after the instances, the one-shot commands.
        out.push_str(&self.attribution_text());
        if let Some(c) = &self.connections {
            let _ = writeln!(out);
            out.push_str(&c.text(&self.phases));
        }
        self.write_instances(&mut out);
        out.push_str(&self.steps_text());
        self.write_result(&mut out);
        out
    }

    /// What was rehearsed, and the requests' totals by cause.
    fn write_heading(&self, out: &mut String) {
        let overall = self.overall();
        let olds = self
            .instances
            .iter()
            .filter(|i| i.role == Role::Old)
            .count();
        let _ = writeln!(
            out,
            "rehearsal of {}: {olds} instance{}, {} req/s on {}, drain {}, shutdown delay {}",
            self.versions_title(),
            if olds == 1 { "" } else { "s" },
            trim_float(self.rate),
            self.paths.join(" "),
            secs(self.drain),
            secs(self.shutdown_delay),
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "requests: {} sent, {} failed ({} on new connections)",
            overall.sent,
            overall.failed,
            self.requests.iter().filter(|r| r.new_connection).count()
        );
        for (cause, n) in self.failures_by_cause() {
            let _ = writeln!(out, "  {n:>6}  {cause}");
        }
    }

    /// Latency by phase, and over all.
    fn write_phases(&self, out: &mut String) {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>7} {:>9} {:>9} {:>9}",
            "phase", "requests", "failed", "p50 ms", "p95 ms", "p99 ms"
        );
        let mut rows = self.stats_by_phase();
        rows.push((PhaseKind::After, self.overall()));
        let last = rows.len() - 1;
        for (n, (kind, s)) in rows.iter().enumerate() {
            let label = if n == last { "all" } else { kind.label() };
            let _ = writeln!(
                out,
                "{label:<20} {:>8} {:>7} {:>9} {:>9} {:>9}",
                s.sent,
                s.failed,
                millis(s.p50),
                millis(s.p95),
                millis(s.p99)
            );
        }
    }

    /// Each instance's life, and the deploy's failure if there was one.
    fn write_instances(&self, out: &mut String) {
        let _ = writeln!(out);
        let _ = writeln!(out, "instances:");
        let served = self.served_by_instance();
        for (i, (_, n)) in self.instances.iter().zip(served) {
            let _ = writeln!(out, "  {:<7} {}", i.name, instance_line(i, n));
        }
        if let Some(streams) = &self.streams {
            let _ = writeln!(out);
            out.push_str(&streams.text());
        }
        if let Some(f) = &self.deploy_failure {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "deploy FAILED at {}: {} did not become healthy ({}); the old instances kept serving",
                secs(f.at),
                f.instance,
                f.reason
            );
            // What it said while it failed to start is usually why.
            let tail = self
                .instances
                .iter()
                .find(|i| i.name == f.instance)
                .map_or(&[][..], |i| {
                    &i.output_tail[i.output_tail.len().saturating_sub(10)..]
                });
            if !tail.is_empty() {
                let _ = writeln!(out, "its last output:");
                for line in tail {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
    }

    /// PASS, or FAIL with every problem.
    fn write_result(&self, out: &mut String) {
        let _ = writeln!(out);
        let problems = self.problems();
        if problems.is_empty() {
            let _ = writeln!(
                out,
                "result: PASS (no request failed, no instance needed SIGKILL)"
            );
        } else {
            let _ = writeln!(out, "result: FAIL");
            for p in problems {
                let _ = writeln!(out, "  - {p}");
            }
        }
    }
}

/// One instance's life, on one line.
pub(crate) fn instance_line(i: &InstanceReport, served: usize) -> String {
    let mut parts = vec![format!("port {}", i.port), format!("served {served}")];
    parts.push(match i.healthy_after {
        Some(h) => format!("healthy {} after start", secs(h)),
        None => "never healthy".to_owned(),
    });
    if let Some(t) = i.sigterm_at {
        let mut s = if i.stopped_at_end {
            format!("SIGTERM at the end ({})", secs(t))
        } else {
            format!("SIGTERM at {}", secs(t))
        };
        if let Some(n) = i.in_flight_at_sigterm {
            let _ = write!(s, " with {n} in flight");
        }
        parts.push(s);
    }
    if let Some(t) = i.sigkill_at {
        parts.push(format!("SIGKILL at {}", secs(t)));
    }
    match (i.exit, i.sigterm_at) {
        (Some((at, how)), Some(term)) if at >= term => {
            parts.push(format!("{how} {} later", secs(at - term)));
        }
        (Some((at, how)), _) => parts.push(format!("{how} at {} on its own", secs(at))),
        (None, _) => parts.push("still running".to_owned()),
    }
    parts.join(", ")
}
