//! The engine: one variable checked against its rule: aliases, defaults, `dev` rules, parsing.

use super::rule::quote;
use super::{Env, Mode, Parsed, Problem, ProblemKind, Report, Rule, Source};

/// Checks one variable, recording its value or its problem; returns how it is shown.
pub(super) fn check_one(rule: &Rule, env: &Env, mode: Mode, report: &mut Report) -> String {
    let found = match lookup(rule, env) {
        Ok(found) => found,
        Err(conflict) => {
            report.problems.push(conflict);
            return "invalid".to_owned();
        }
    };
    let Some((value, source)) = found else {
        return unset(rule, mode, report);
    };
    // A problem in a value read through an alias is reported under the alias: that is the
    // variable the user has to fix.
    let var = match &source {
        Source::Alias(alias) => alias.clone(),
        Source::Environment | Source::Default => rule.name.clone(),
    };
    let Some(value) = value else {
        report.problems.push(Problem {
            var,
            problem: format!("is not valid UTF-8 (expected {})", rule.expected()),
            kind: ProblemKind::NotUtf8,
        });
        return "invalid".to_owned();
    };
    match rule.parse(value) {
        Ok(parsed) => record(rule, report, parsed, source),
        Err(reject) => {
            let mut problem = reject.into_problem(rule);
            problem.var = var;
            report.problems.push(problem);
            "invalid".to_owned()
        }
    }
}

/// The variable's value (`None` inside when not UTF-8) and where it came from: itself, else
/// its first alias that is set. Both set to different values is a conflict.
fn lookup<'e>(rule: &Rule, env: &'e Env) -> Result<Option<(Option<&'e str>, Source)>, Problem> {
    let mut found: Option<(Option<&str>, Source)> =
        env.lookup(&rule.name).map(|v| (v, Source::Environment));
    for alias in &rule.aliases {
        let Some(alias_value) = env.lookup(alias) else {
            continue;
        };
        match &found {
            None => found = Some((alias_value, Source::Alias(alias.clone()))),
            Some((value, Source::Environment)) if *value != alias_value => {
                let what = if rule.secret {
                    format!("differs from {alias}, which is also set")
                } else {
                    format!(
                        "{} differs from {alias}={} (set one of them, or both to the same value)",
                        value
                            .map(quote)
                            .unwrap_or_else(|| "a non-UTF-8 value".into()),
                        alias_value
                            .map(quote)
                            .unwrap_or_else(|| "a non-UTF-8 value".into()),
                    )
                };
                return Err(Problem {
                    var: rule.name.clone(),
                    problem: what,
                    kind: ProblemKind::Conflict,
                });
            }
            Some(_) => {}
        }
    }
    Ok(found)
}

/// An unset variable: its default, a problem when it is required, a warning under `dev` for
/// one that `serve` requires.
fn unset(rule: &Rule, mode: Mode, report: &mut Report) -> String {
    if let Some(default) = rule.default_for(mode) {
        return match rule.parse(default) {
            Ok(parsed) => record(rule, report, parsed, Source::Default),
            Err(reject) => {
                report.problems.push(reject.into_problem(rule));
                "invalid".to_owned()
            }
        };
    }
    if rule.required_in(mode) {
        report.problems.push(Problem {
            var: rule.name.clone(),
            problem: match rule.aliases.as_slice() {
                [] => format!("is not set (expected {})", rule.expected()),
                aliases => format!(
                    "is not set, nor {} (expected {})",
                    aliases.join(" nor "),
                    rule.expected()
                ),
            },
            kind: ProblemKind::Missing,
        });
    } else if mode == Mode::Dev && rule.required {
        report.warnings.push(Problem {
            var: rule.name.clone(),
            problem: "is not set (required by serve; optional under dev)".to_owned(),
            kind: ProblemKind::OptionalInDev,
        });
    }
    "unset".to_owned()
}

fn record(rule: &Rule, report: &mut Report, parsed: Parsed, source: Source) -> String {
    let mut shown = match &parsed {
        Parsed::DatabaseUrl(u) => u.redacted().to_owned(),
        Parsed::DeployHookUrl(u) => u.redacted().to_owned(),
        Parsed::RenderApiUrl(u) => u.as_str().to_owned(),
        _ if rule.secret => "set (secret)".to_owned(),
        Parsed::Text(t) => t.clone(),
        Parsed::Integer(n) => n.to_string(),
        Parsed::Bool(b) => b.to_string(),
        Parsed::Port(p) => p.to_string(),
        Parsed::Ip(ip) => ip.to_string(),
        Parsed::Secret(_) | Parsed::WebhookSecret(_) => "set (secret)".to_owned(),
    };
    match &source {
        Source::Default => shown.push_str(" (default)"),
        Source::Alias(alias) => shown.push_str(&format!(" (from {alias})")),
        Source::Environment => {}
    }
    report.values.insert(rule.name.clone(), (parsed, source));
    shown
}
