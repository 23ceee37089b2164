//! What a rehearsal saw ([`Rehearsal`]) and the table `rehearse` prints on stdout.
//!
//! Every time is an offset from the start of the rehearsal, so that a report reads like a
//! timeline and two reports compare.

use std::collections::BTreeMap;
use std::time::Duration;

use super::connections::Connections;
use super::record::{FailureCause, InstanceExit, Phase, PhaseKind, RequestRecord, Role};
use super::steps::StepRun;

/// The life of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstanceReport {
    /// Its name (`old-1`, `new-1`, …), also given to it as `RENDER_INSTANCE_ID`.
    pub name: String,
    /// Old or new.
    pub role: Role,
    /// The step of the deploy that replaces it (old) or brings it (new), 1-based.
    pub step: usize,
    /// The `PORT` it was given.
    pub port: u16,
    /// When it was started.
    pub started_at: Duration,
    /// How long after its start its health path first answered 2xx or 3xx.
    pub healthy_after: Option<Duration>,
    /// When the proxy started sending it requests.
    pub routed_from: Option<Duration>,
    /// When the proxy stopped sending it new requests.
    pub routed_until: Option<Duration>,
    /// When it was sent SIGTERM.
    pub sigterm_at: Option<Duration>,
    /// How many requests it was still serving when it was sent SIGTERM.
    pub in_flight_at_sigterm: Option<usize>,
    /// When it was sent SIGKILL because it had not exited within the shutdown delay.
    pub sigkill_at: Option<Duration>,
    /// When and how it exited.
    pub exit: Option<(Duration, InstanceExit)>,
    /// Whether it was stopped because the rehearsal ended (not by the deploy).
    pub stopped_at_end: bool,
    /// The last lines it printed.
    pub output_tail: Vec<String>,
}

impl InstanceReport {
    /// Whether it did not exit within the shutdown delay after SIGTERM.
    pub(crate) fn needed_sigkill(&self) -> bool {
        self.sigkill_at.is_some()
    }

    /// Whether it exited before anyone asked it to.
    pub(crate) fn exited_on_its_own(&self) -> bool {
        match (self.exit, self.sigterm_at) {
            (Some((at, _)), Some(term)) => at < term,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// A deploy that did not complete: the new instance never became healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeployFailure {
    /// The new instance.
    pub instance: String,
    /// When the deploy gave up.
    pub at: Duration,
    /// The last probe's failure, or how the instance exited.
    pub reason: String,
}

/// Everything a rehearsal saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Rehearsal {
    /// The command of the old version's instances, as typed.
    pub command: String,
    /// The command of the new version's instances (the same as `command` when one version is
    /// deployed over itself).
    pub new_command: String,
    /// The setup command, when one was given (it succeeded, or there would be no rehearsal).
    pub setup: Option<StepRun>,
    /// The pre-deploy command, when one was given and the deploy reached it.
    pub pre_deploy: Option<StepRun>,
    /// The database's client connections, when the rehearsal had a database to sample.
    pub connections: Option<Connections>,
    /// Requests per second of the load.
    pub rate: f64,
    /// The paths of the load.
    pub paths: Vec<String>,
    /// The health path.
    pub health_path: String,
    /// Drain delay.
    pub drain: Duration,
    /// Shutdown delay.
    pub shutdown_delay: Duration,
    /// Every request, in the order they were sent.
    pub requests: Vec<RequestRecord>,
    /// The phases, in order, covering the time the load ran.
    pub phases: Vec<Phase>,
    /// Every instance, old ones first.
    pub instances: Vec<InstanceReport>,
    /// Set when the deploy failed.
    pub deploy_failure: Option<DeployFailure>,
    /// When the load started.
    pub load_started: Duration,
    /// When the load stopped.
    pub load_stopped: Duration,
    /// When the rehearsal ended (every instance stopped).
    pub ended: Duration,
    /// The event streams held with `--sse`, if asked for.
    pub streams: Option<super::sse::Streams>,
}

/// Latency figures of a group of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PhaseStats {
    /// Requests sent.
    pub sent: usize,
    /// Requests failed.
    pub failed: usize,
    /// Median latency.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

impl PhaseStats {
    fn of<'a>(requests: impl Iterator<Item = &'a RequestRecord>) -> Self {
        let mut latencies = Vec::new();
        let mut failed = 0;
        for r in requests {
            latencies.push(r.latency());
            failed += usize::from(r.outcome.failure().is_some());
        }
        latencies.sort_unstable();
        Self {
            sent: latencies.len(),
            failed,
            p50: percentile(&latencies, 50.0),
            p95: percentile(&latencies, 95.0),
            p99: percentile(&latencies, 99.0),
        }
    }
}

/// The nearest-rank percentile of sorted values (zero for none).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Rehearsal {
    /// Requests that failed.
    pub(crate) fn failed_requests(&self) -> usize {
        self.requests
            .iter()
            .filter(|r| r.outcome.failure().is_some())
            .count()
    }

    /// Failed requests by cause, most frequent first.
    pub(crate) fn failures_by_cause(&self) -> Vec<(FailureCause, usize)> {
        let mut counts = BTreeMap::new();
        for cause in self.requests.iter().filter_map(|r| r.outcome.failure()) {
            *counts.entry(cause).or_insert(0usize) += 1;
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// The phase a moment belongs to (the last phase for moments after the end).
    pub(crate) fn phase_at(&self, t: Duration) -> Option<&Phase> {
        self.phases
            .iter()
            .find(|p| t >= p.start && t < p.end)
            .or_else(|| self.phases.last().filter(|p| t >= p.end))
            .or_else(|| self.phases.first().filter(|p| t < p.start))
    }

    /// Latency figures per kind of phase, for the kinds that saw requests, in deploy order.
    pub(crate) fn stats_by_phase(&self) -> Vec<(PhaseKind, PhaseStats)> {
        let mut by_kind: BTreeMap<PhaseKind, Vec<&RequestRecord>> = BTreeMap::new();
        for r in &self.requests {
            if let Some(p) = self.phase_at(r.start) {
                by_kind.entry(p.kind).or_default().push(r);
            }
        }
        PhaseKind::ALL
            .iter()
            .filter_map(|k| {
                by_kind
                    .get(k)
                    .map(|rs| (*k, PhaseStats::of(rs.iter().copied())))
            })
            .collect()
    }

    /// Latency figures of all requests.
    pub fn overall(&self) -> PhaseStats {
        PhaseStats::of(self.requests.iter())
    }

    /// Requests served per instance, in instance order.
    pub(crate) fn served_by_instance(&self) -> Vec<(&str, usize)> {
        self.instances
            .iter()
            .map(|i| {
                let n = self
                    .requests
                    .iter()
                    .filter(|r| r.instance.as_deref() == Some(i.name.as_str()))
                    .count();
                (i.name.as_str(), n)
            })
            .collect()
    }

    /// Why the rehearsal did not succeed; empty when it did.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.version_problems();
        if let Some(f) = &self.deploy_failure {
            problems.push(format!(
                "the deploy failed: {} did not become healthy ({})",
                f.instance, f.reason
            ));
        }
        let failed = self.failed_requests();
        if failed > 0 {
            problems.push(format!(
                "{failed} of {} requests failed",
                self.requests.len()
            ));
        }
        for i in &self.instances {
            if i.needed_sigkill() {
                problems.push(format!(
                    "{} did not exit within the shutdown delay after SIGTERM and was sent SIGKILL",
                    i.name
                ));
            } else if i.exited_on_its_own()
                && let Some((at, how)) = i.exit
            {
                problems.push(format!(
                    "{} {how} at {} without being asked to",
                    i.name,
                    secs(at)
                ));
            }
        }
        if self.requests.is_empty() {
            problems.push("no request was sent".to_owned());
        }
        if let Some(c) = &self.connections
            && let Some(p) = c.limit_problem(&self.phases)
        {
            problems.push(p);
        }
        if let Some(streams) = &self.streams {
            problems.extend(streams.problems());
        }
        problems
    }

    /// Whether no request failed, no instance needed SIGKILL, and the deploy completed: the
    /// exit code 0 of `rehearse`.
    pub fn succeeded(&self) -> bool {
        self.problems().is_empty()
    }
}

/// `1.234 s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// `12.3` (milliseconds, one decimal).
pub(crate) fn millis(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

pub(crate) fn trim_float(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rehearse::record::Outcome;

    pub(crate) fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    pub(crate) fn request(
        start: u64,
        latency: u64,
        outcome: Outcome,
        instance: &str,
    ) -> RequestRecord {
        RequestRecord {
            start: ms(start),
            end: ms(start + latency),
            outcome,
            instance: Some(instance.to_owned()),
            new_connection: start.is_multiple_of(2),
            excerpt: None,
        }
    }

    pub(crate) fn instance(name: &str, role: Role) -> InstanceReport {
        InstanceReport {
            name: name.to_owned(),
            role,
            step: 1,
            port: 10000,
            started_at: ms(0),
            healthy_after: Some(ms(100)),
            routed_from: None,
            routed_until: None,
            sigterm_at: Some(ms(3000)),
            in_flight_at_sigterm: Some(0),
            sigkill_at: None,
            exit: Some((ms(3100), InstanceExit::Code(0))),
            stopped_at_end: false,
            output_tail: Vec::new(),
        }
    }

    pub(crate) fn sample() -> Rehearsal {
        let phases = vec![
            Phase {
                kind: PhaseKind::Before,
                step: 0,
                start: ms(0),
                end: ms(1000),
            },
            Phase {
                kind: PhaseKind::NewStarting,
                step: 1,
                start: ms(1000),
                end: ms(2000),
            },
            Phase {
                kind: PhaseKind::After,
                step: 0,
                start: ms(2000),
                end: ms(4000),
            },
        ];
        Rehearsal {
            command: "fixture".into(),
            new_command: "fixture".into(),
            setup: None,
            pre_deploy: None,
            connections: None,
            rate: 10.0,
            paths: vec!["/".into()],
            health_path: "/health".into(),
            drain: ms(500),
            shutdown_delay: ms(2000),
            requests: vec![
                request(10, 5, Outcome::Response(200), "old-1"),
                request(500, 7, Outcome::Response(200), "old-1"),
                request(1200, 9, Outcome::Response(200), "old-1"),
                request(2500, 3, Outcome::Response(200), "new-1"),
            ],
            phases,
            instances: vec![instance("old-1", Role::Old), instance("new-1", Role::New)],
            deploy_failure: None,
            load_started: ms(0),
            load_stopped: ms(4000),
            ended: ms(4200),
            streams: None,
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&v, 50.0), ms(50));
        assert_eq!(percentile(&v, 99.0), ms(99));
        assert_eq!(percentile(&[ms(7)], 95.0), ms(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn a_clean_rehearsal_succeeds_and_says_so() {
        let r = sample();
        assert!(r.succeeded(), "{:?}", r.problems());
        let text = r.text();
        assert!(text.contains("result: PASS"), "{text}");
        assert!(text.contains("4 sent, 0 failed"), "{text}");
    }

    #[test]
    fn requests_are_counted_in_the_phase_they_started_in() {
        let stats = sample().stats_by_phase();
        let kinds: Vec<_> = stats.iter().map(|(k, s)| (*k, s.sent)).collect();
        assert_eq!(
            kinds,
            [
                (PhaseKind::Before, 2),
                (PhaseKind::NewStarting, 1),
                (PhaseKind::After, 1)
            ]
        );
    }

    #[test]
    fn a_failed_request_or_a_5xx_fails_the_rehearsal_and_is_counted_by_cause() {
        let mut r = sample();
        r.requests.push(request(
            2600,
            1,
            Outcome::Failed(FailureCause::Reset),
            "old-1",
        ));
        r.requests
            .push(request(2700, 1, Outcome::Response(503), "new-1"));
        r.requests
            .push(request(2800, 1, Outcome::Response(404), "new-1"));
        assert!(!r.succeeded());
        assert_eq!(
            r.failures_by_cause(),
            [
                (FailureCause::Reset, 1),
                (FailureCause::ServerError(503), 1)
            ]
        );
        let text = r.text();
        assert!(text.contains("result: FAIL"), "{text}");
        assert!(text.contains("2 of 7 requests failed"), "{text}");
    }

    #[test]
    fn an_instance_that_needed_sigkill_fails_the_rehearsal() {
        let mut r = sample();
        r.instances[0].sigkill_at = Some(ms(5000));
        r.instances[0].exit = Some((ms(5001), InstanceExit::Signal(9)));
        assert!(!r.succeeded());
        assert!(r.text().contains("SIGKILL at 5.000 s"), "{}", r.text());
        assert!(r.text().contains("killed by SIGKILL"), "{}", r.text());
    }

    #[test]
    fn a_failed_deploy_fails_the_rehearsal_even_without_failed_requests() {
        let mut r = sample();
        r.deploy_failure = Some(DeployFailure {
            instance: "new-1".into(),
            at: ms(3000),
            reason: "last probe: HTTP 503".into(),
        });
        assert_eq!(r.failed_requests(), 0);
        assert!(!r.succeeded());
        assert!(r.text().contains("deploy FAILED"), "{}", r.text());
    }

    #[test]
    fn failure_cause_tokens_round_trip() {
        for c in [
            FailureCause::ConnectRefused,
            FailureCause::ConnectFailed,
            FailureCause::Reset,
            FailureCause::Timeout,
            FailureCause::NoInstance,
            FailureCause::Other,
        ] {
            assert_eq!(FailureCause::from_token(c.token()), Some(c));
        }
        assert_eq!(FailureCause::from_token("nonsense"), None);
    }
}
