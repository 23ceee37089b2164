//! The two versions of a deploy in the reports: the setup and pre-deploy commands, each failed
//! request attributed to its phase, its instance and that instance's version, and the finding
//! that the old version began failing once the pre-deploy command ran.
//!
//! That finding is the point of rehearsing with `--pre-deploy`: Render runs the migrations while
//! the old version still serves, so a migration that renames or drops what the old version
//! reads breaks production for the whole deploy, even though both versions pass their tests
//! and the new one works. It is reported only when the evidence says so: the old version
//! answered before the pre-deploy command, and failed more often after it began while it was
//! still in rotation (failures after its SIGTERM are the shutdown's, not the migration's).

use std::fmt::Write as _;
use std::time::Duration;

use super::record::{PhaseKind, RequestRecord, Role};
use super::report::{Rehearsal, secs};
use super::steps::StepRun;

/// How many failing responses the finding quotes.
const FIRST_FAILURES: usize = 3;

/// The failed requests of one instance in one kind of phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureGroup {
    /// The phase they were sent in.
    pub phase: PhaseKind,
    /// The instance that served them (or should have), when known.
    pub instance: Option<String>,
    /// That instance's version.
    pub version: Option<Role>,
    /// How many failed.
    pub failed: usize,
    /// The first of them.
    pub first: RequestRecord,
}

/// The old version failing after the pre-deploy command where it had answered before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// When the pre-deploy command started.
    pub pre_deploy_at: Duration,
    /// The old instances that failed after it.
    pub instances: Vec<String>,
    /// Requests the old version answered without failing before it.
    pub answered_before: usize,
    /// Requests the old version failed before it.
    pub failed_before: usize,
    /// Requests sent to the old version after it began, while still in rotation.
    pub sent_after: usize,
    /// Of those, how many failed.
    pub failed_after: usize,
    /// The first failing ones.
    pub first: Vec<RequestRecord>,
}

impl Incompatibility {
    /// The finding in words.
    pub fn sentence(&self) -> String {
        let before = if self.failed_before == 0 {
            format!(
                "answered {} requests without a failure",
                self.answered_before
            )
        } else {
            format!(
                "answered {} of {} requests",
                self.answered_before,
                self.answered_before + self.failed_before
            )
        };
        let first: Vec<String> = self.first.iter().map(describe).collect();
        format!(
            "the old version ({}) {before} before the pre-deploy command, then failed {} of {} \
             after it began at {} (first: {}): the migration is not compatible with the version \
             still running",
            self.instances.join(", "),
            self.failed_after,
            self.sent_after,
            secs(self.pre_deploy_at),
            first.join("; ")
        )
    }
}

/// `HTTP 500 at 2.345 s: {"error": …}`, or `connection refused at 2.345 s`.
pub fn describe(r: &RequestRecord) -> String {
    let what = match r.outcome {
        super::record::Outcome::Response(status) => format!("HTTP {status}"),
        super::record::Outcome::Failed(cause) => cause.to_string(),
    };
    match &r.excerpt {
        Some(body) if !body.is_empty() => format!("{what} at {}: {body}", secs(r.start)),
        _ => format!("{what} at {}", secs(r.start)),
    }
}

impl Rehearsal {
    /// The version of an instance, by its name.
    pub fn version_of(&self, instance: &str) -> Option<Role> {
        self.instances
            .iter()
            .find(|i| i.name == instance)
            .map(|i| i.role)
    }

    /// Whether the pre-deploy command ran and failed (Render's `pre_deploy_failed`).
    pub fn pre_deploy_failed(&self) -> bool {
        self.pre_deploy.as_ref().is_some_and(|p| !p.succeeded())
    }

    /// Failed requests grouped by the phase they were sent in and the instance that served
    /// them, in deploy order.
    pub fn failure_groups(&self) -> Vec<FailureGroup> {
        let mut groups: Vec<FailureGroup> = Vec::new();
        for r in self
            .requests
            .iter()
            .filter(|r| r.outcome.failure().is_some())
        {
            let Some(phase) = self.phase_at(r.start).map(|p| p.kind) else {
                continue;
            };
            match groups
                .iter_mut()
                .find(|g| g.phase == phase && g.instance == r.instance)
            {
                Some(g) => g.failed += 1,
                None => groups.push(FailureGroup {
                    phase,
                    instance: r.instance.clone(),
                    version: r.instance.as_deref().and_then(|i| self.version_of(i)),
                    failed: 1,
                    first: r.clone(),
                }),
            }
        }
        groups.sort_by_key(|g| (g.phase, g.first.start));
        groups
    }

    /// The old version failing after the pre-deploy command, when the requests show it.
    pub fn incompatible_migration(&self) -> Option<Incompatibility> {
        let at = self
            .phases
            .iter()
            .find(|p| p.kind == PhaseKind::PreDeploy)?
            .start;
        let mut found = Incompatibility {
            pre_deploy_at: at,
            instances: Vec::new(),
            answered_before: 0,
            failed_before: 0,
            sent_after: 0,
            failed_after: 0,
            first: Vec::new(),
        };
        for old in self.instances.iter().filter(|i| i.role == Role::Old) {
            // Until it left the rotation: later failures are the shutdown's.
            let until = old.routed_until.or(old.sigterm_at).unwrap_or(Duration::MAX);
            let served = self
                .requests
                .iter()
                .filter(|r| r.instance.as_deref() == Some(old.name.as_str()));
            for r in served {
                let failed = r.outcome.failure().is_some();
                if r.start < at {
                    found.answered_before += usize::from(!failed);
                    found.failed_before += usize::from(failed);
                } else if r.start < until {
                    found.sent_after += 1;
                    if failed {
                        found.failed_after += 1;
                        if !found.instances.contains(&old.name) {
                            found.instances.push(old.name.clone());
                        }
                        found.first.push(r.clone());
                    }
                }
            }
        }
        found.first.sort_by_key(|r| r.start);
        found.first.truncate(FIRST_FAILURES);
        let before = found.answered_before + found.failed_before;
        // A higher failure rate after than before (cross-multiplied, no division by zero).
        let worse = found.failed_after * before > found.failed_before * found.sent_after;
        (found.answered_before > 0 && found.failed_after > 0 && worse).then_some(found)
    }

    /// `` `A` `` for a deploy of a version over itself, `` from `A` to `B` `` otherwise.
    pub(crate) fn versions_title(&self) -> String {
        if self.command == self.new_command {
            format!("`{}`", self.command)
        } else {
            format!(
                "a deploy from `{}` (old) to `{}` (new)",
                self.command, self.new_command
            )
        }
    }

    /// The problems that concern the versions: a failed pre-deploy command, and the old
    /// version broken by it. They come first: they say why the other problems happened.
    pub(crate) fn version_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(p) = self
            .pre_deploy
            .as_ref()
            .filter(|_| self.pre_deploy_failed())
        {
            problems.push(format!(
                "the pre-deploy command `{}` {} (pre_deploy_failed): the new version was never \
                 started",
                p.command,
                p.how()
            ));
        }
        if let Some(found) = self.incompatible_migration() {
            problems.push(found.sentence());
        }
        problems
    }

    /// The text report's section on failed requests by phase, instance and version (empty
    /// when none failed).
    pub(crate) fn attribution_text(&self) -> String {
        let groups = self.failure_groups();
        let mut out = String::new();
        if groups.is_empty() {
            return out;
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "failed requests by phase, instance and version:");
        let _ = writeln!(
            out,
            "  {:<20} {:<9} {:<8} {:>6}  first",
            "phase", "instance", "version", "failed"
        );
        for g in groups {
            let version = match g.version {
                Some(Role::Old) => "old",
                Some(Role::New) => "new",
                None => "-",
            };
            let _ = writeln!(
                out,
                "  {:<20} {:<9} {version:<8} {:>6}  {}",
                g.phase.label(),
                g.instance.as_deref().unwrap_or("-"),
                g.failed,
                describe(&g.first)
            );
        }
        out
    }

    /// The text report's section on the setup and pre-deploy commands and their output.
    pub(crate) fn steps_text(&self) -> String {
        let mut out = String::new();
        for step in [&self.setup, &self.pre_deploy].into_iter().flatten() {
            let _ = writeln!(out);
            out.push_str(&step_text(step));
        }
        if let Some(p) = self.pre_deploy.as_ref().filter(|p| !p.succeeded()) {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "deploy FAILED at {} (pre_deploy_failed): the pre-deploy command `{}` {}; the new \
                 version was never started and the old instances kept serving",
                secs(p.end),
                p.command,
                p.how()
            );
        }
        out
    }
}

fn step_text(step: &StepRun) -> String {
    let mut out = format!(
        "{} `{}`: {} after {} (from {} to {})",
        step.kind.label(),
        step.command,
        step.how(),
        secs(step.end.saturating_sub(step.start)),
        secs(step.start),
        secs(step.end)
    );
    if step.output_tail.is_empty() {
        out.push_str(", no output\n");
    } else {
        out.push_str(if step.succeeded() {
            "; its output:\n"
        } else {
            "; its last lines:\n"
        });
        for line in &step.output_tail {
            let _ = writeln!(out, "    {line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::record::{Outcome, Phase};
    use super::super::report::tests::{ms, request, sample};
    use super::super::steps::{StepEnd, StepKind};
    use super::*;
    use crate::rehearse::record::InstanceExit;

    /// Old serves from 0 to 2 s (switch), pre-deploy from 1 s to 1.5 s.
    fn with_pre_deploy() -> Rehearsal {
        let mut r = sample();
        r.phases = vec![
            Phase {
                kind: PhaseKind::Before,
                step: 0,
                start: ms(0),
                end: ms(1000),
            },
            Phase {
                kind: PhaseKind::PreDeploy,
                step: 0,
                start: ms(1000),
                end: ms(1500),
            },
            Phase {
                kind: PhaseKind::NewStarting,
                step: 1,
                start: ms(1500),
                end: ms(2000),
            },
            Phase {
                kind: PhaseKind::After,
                step: 0,
                start: ms(2000),
                end: ms(4000),
            },
        ];
        r.instances[0].routed_until = Some(ms(2000));
        r.requests = (0..20)
            .map(|n| request(n * 100, 2, Outcome::Response(200), "old-1"))
            .collect();
        r.requests
            .push(request(2500, 2, Outcome::Response(200), "new-1"));
        r
    }

    fn failing_after(r: &mut Rehearsal, from: u64) {
        for q in r.requests.iter_mut().filter(|q| q.start >= ms(from)) {
            if q.instance.as_deref() == Some("old-1") {
                q.outcome = Outcome::Response(500);
                q.excerpt = Some(r#"{"error": "column \"name\" does not exist"}"#.to_owned());
            }
        }
    }

    #[test]
    fn an_old_version_that_fails_once_the_pre_deploy_began_is_named_with_its_first_failures() {
        let mut r = with_pre_deploy();
        failing_after(&mut r, 1000);
        let found = r.incompatible_migration().expect("the finding");
        assert_eq!(
            (found.answered_before, found.sent_after, found.failed_after),
            (10, 10, 10)
        );
        let sentence = found.sentence();
        assert!(
            sentence.contains("the migration is not compatible with the version still running"),
            "{sentence}"
        );
        assert!(
            sentence.contains(
                "HTTP 500 at 1.000 s: {\"error\": \"column \\\"name\\\" does not exist\"}"
            ),
            "{sentence}"
        );
        assert!(!r.succeeded());
        assert!(
            r.problems()[0].contains("the old version (old-1)"),
            "{:?}",
            r.problems()
        );
        let text = r.text();
        assert!(
            text.contains("pre-deploy           old-1     old"),
            "{text}"
        );
    }

    #[test]
    fn old_failures_that_began_before_the_pre_deploy_are_not_blamed_on_it() {
        let mut r = with_pre_deploy();
        failing_after(&mut r, 0);
        assert_eq!(r.incompatible_migration(), None);
        // And without a pre-deploy phase there is nothing to blame.
        let mut r = with_pre_deploy();
        failing_after(&mut r, 1000);
        r.phases.retain(|p| p.kind != PhaseKind::PreDeploy);
        assert_eq!(r.incompatible_migration(), None);
    }

    #[test]
    fn old_failures_after_it_left_the_rotation_are_the_shutdowns_not_the_migrations() {
        let mut r = with_pre_deploy();
        r.instances[0].routed_until = Some(ms(1000));
        failing_after(&mut r, 1000);
        assert_eq!(r.incompatible_migration(), None);
    }

    #[test]
    fn a_failed_pre_deploy_is_named_with_its_command_exit_code_and_last_lines() {
        let mut r = with_pre_deploy();
        r.pre_deploy = Some(StepRun {
            kind: StepKind::PreDeploy,
            command: "migrate up".into(),
            start: ms(1000),
            end: ms(1200),
            ended: StepEnd::Exited(InstanceExit::Code(2)),
            output_tail: vec!["ERROR: relation \"users\" does not exist".into()],
        });
        assert!(r.pre_deploy_failed());
        assert!(!r.succeeded());
        let text = r.text();
        for want in [
            "pre-deploy `migrate up`: exited 2",
            "ERROR: relation \"users\" does not exist",
            "(pre_deploy_failed)",
            "the new version was never started",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }
}
