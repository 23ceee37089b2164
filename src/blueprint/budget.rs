//! The connection-budget lint: would a deploy open more PostgreSQL connections than the plan allows?
//!
//! During a zero-downtime deploy the old and the new instances hold their pools at the same time, so
//! each service counts twice: `instances × pool size × 2`. The pool size is `DB_POOL_MAX` when the
//! service (or one of its groups) sets a number, otherwise the CPU cap of render-deploy's `auto`
//! formula, `2 × CPUs + 1`, with the CPUs of the service's plan. Services that neither run
//! render-deploy nor set `DB_POOL_MAX` are left out: their pool size is unknown.

use std::collections::HashMap;

use super::rules::{Resources, describe_service, name_of, runs_render_deploy, variables};
use super::yaml::{Node, shorten};
use super::{Finding, Severity};

/// Connections Render keeps for itself (replication, monitoring, superuser), per its guidance.
pub(crate) const RESERVED_CONNECTIONS: u64 = 10;

/// The `max_connections` of a Render Postgres plan.
///
/// Current plans: under 8 GB of memory 100, 8–16 GB 200, 16–32 GB 400, 32 GB and more 500; the
/// memory is in the plan's name (`basic-256mb`, `pro-8gb`, `4c-16g`). The legacy instance types
/// (`free`, `starter`, `standard`, `pro`: under 8 GB; `pro plus`: 8 GB) have 97 and 197. A file
/// that names no plan gets Render's default, a plan under 8 GB.
pub(crate) fn connection_limit(plan: Option<&str>) -> u64 {
    let Some(plan) = plan else {
        return 100;
    };
    match plan {
        "free" | "starter" | "standard" | "pro" => return 97,
        "pro plus" => return 197,
        _ => {}
    }
    let memory_gb = plan_memory_gb(plan).unwrap_or(0.0);
    if memory_gb < 8.0 {
        100
    } else if memory_gb < 16.0 {
        200
    } else if memory_gb < 32.0 {
        400
    } else {
        500
    }
}

/// The memory, in GB, that a plan's name carries (`pro-8gb` → 8, `basic-256mb` → 0.25, `4c-16g` → 16).
fn plan_memory_gb(plan: &str) -> Option<f64> {
    let tail = plan.rsplit('-').next()?;
    let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
    let unit = &tail[digits.len()..];
    let amount: f64 = digits.parse().ok()?;
    match unit {
        "mb" => Some(amount / 1024.0),
        "gb" | "g" => Some(amount),
        _ => None,
    }
}

/// The CPUs of a service plan (`starter` when the file names none, Render's default).
pub(crate) fn plan_cpus(plan: Option<&str>) -> f64 {
    match plan.unwrap_or("starter") {
        "free" => 0.1,
        "starter" => 0.5,
        "standard" => 1.0,
        "pro" => 2.0,
        "pro plus" | "pro max" => 4.0,
        "pro ultra" => 8.0,
        other => other
            .split_once('c')
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(1.0),
    }
}

/// The pool size render-deploy's `auto` would allow at most on a plan: `2 × CPUs + 1`, with
/// fractional CPUs counted as one (what `RENDER_CPU_COUNT` reports for them).
pub(crate) fn auto_pool_cap(plan: Option<&str>) -> u64 {
    let cpus = plan_cpus(plan).ceil().max(1.0);
    // At most a few hundred: the cast cannot truncate meaningfully.
    2 * (cpus as u64) + 1
}

pub(crate) fn check(root: &Node, findings: &mut Vec<Finding>) {
    let resources = Resources::collect(root);
    // What each service would hold during a deploy, filed under the databases it reads; built in
    // one pass so that a file with thousands of services and databases stays linear.
    let mut usage: HashMap<&str, Vec<(u64, String)>> = HashMap::new();
    for service in &resources.services {
        let Some((databases, during_deploy, part)) = deploy_usage(service, &resources) else {
            continue;
        };
        for db in databases {
            usage
                .entry(db)
                .or_default()
                .push((during_deploy, part.clone()));
        }
    }
    for db in &resources.databases {
        let Some(db_name) = name_of(db) else {
            continue;
        };
        let Some(services) = usage.get(db_name) else {
            continue;
        };
        if let Some(finding) = over_budget(db, db_name, services) {
            findings.push(finding);
        }
    }
}

/// The databases a server-type service reads, the connections it would hold during a deploy,
/// and that figure explained; `None` for a service that holds none.
fn deploy_usage<'a>(
    service: &'a Node,
    resources: &Resources<'a>,
) -> Option<(Vec<&'a str>, u64, String)> {
    if !matches!(
        service.get("type").and_then(Node::as_str),
        Some("web" | "pserv" | "worker")
    ) {
        return None;
    }
    let vars = variables(service, resources);
    // Connections through PgBouncer (`connectionPoolString`) do not count against the server.
    let mut databases: Vec<&str> = vars
        .iter()
        .filter_map(|v| v.get("fromDatabase"))
        .filter(|d| d.get("property").and_then(Node::as_str) != Some("connectionPoolString"))
        .filter_map(|d| d.get("name").and_then(Node::as_str))
        .collect();
    databases.sort_unstable();
    databases.dedup();
    if databases.is_empty() {
        return None;
    }
    let pool_max = vars
        .iter()
        .filter(|v| v.get("key").and_then(Node::as_str) == Some("DB_POOL_MAX"))
        .find_map(|v| v.get("value"))
        .and_then(|v| {
            v.as_int()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .and_then(|n: i64| u64::try_from(n).ok());
    let pool = match pool_max {
        Some(n) => n,
        None if runs_render_deploy(service) => {
            auto_pool_cap(service.get("plan").and_then(Node::as_str))
        }
        None => return None,
    };
    let instances = service
        .get("scaling")
        .and_then(|s| s.get("maxInstances"))
        .or_else(|| service.get("numInstances"))
        .and_then(Node::as_int)
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(1);
    let during_deploy = instances.saturating_mul(pool).saturating_mul(2);
    let part = format!(
        "{}: {instances} × {pool} × 2 = {during_deploy}",
        describe_service(service)
    );
    Some((databases, during_deploy, part))
}

/// A warning when the services reading `db` could open more connections than its plan allows.
fn over_budget(db: &Node, db_name: &str, services: &[(u64, String)]) -> Option<Finding> {
    let plan = db.get("plan").and_then(Node::as_str);
    let limit = connection_limit(plan);
    // Read replicas are separate servers with their own limit; only the primary is budgeted.
    let usable = limit.saturating_sub(RESERVED_CONNECTIONS);
    let total = services
        .iter()
        .fold(0u64, |sum, (n, _)| sum.saturating_add(*n));
    if total <= usable {
        return None;
    }
    let parts: Vec<&str> = services.iter().map(|(_, p)| p.as_str()).collect();
    let at = db.get("plan").map_or(db.pos, |p| p.pos);
    let plan_text = plan.map_or("the default plan".to_owned(), |p| format!("plan `{p}`"));
    Some(Finding {
        pos: at,
        severity: Severity::Warning,
        message: format!(
            "a deploy could open {total} connections to database `{}` ({}), more than the {usable} that {plan_text} leaves ({limit} minus ~{RESERVED_CONNECTIONS} reserved); lower `DB_POOL_MAX` or the instance count, or choose a larger plan",
            shorten(db_name),
            parts.join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limits_follow_the_plans_memory() {
        assert_eq!(connection_limit(Some("basic-256mb")), 100);
        assert_eq!(connection_limit(Some("basic-4gb")), 100);
        assert_eq!(connection_limit(Some("pro-8gb")), 200);
        assert_eq!(connection_limit(Some("pro-16gb")), 400);
        assert_eq!(connection_limit(Some("accelerated-32gb")), 500);
        assert_eq!(connection_limit(Some("4c-16g")), 400);
        assert_eq!(connection_limit(Some("0.1c-256mb")), 100);
        assert_eq!(connection_limit(Some("starter")), 97);
        assert_eq!(connection_limit(Some("pro plus")), 197);
        assert_eq!(connection_limit(None), 100);
    }

    #[test]
    fn the_auto_pool_cap_counts_fractional_cpus_as_one() {
        assert_eq!(auto_pool_cap(None), 3);
        assert_eq!(auto_pool_cap(Some("free")), 3);
        assert_eq!(auto_pool_cap(Some("pro")), 5);
        assert_eq!(auto_pool_cap(Some("pro plus")), 9);
        assert_eq!(auto_pool_cap(Some("8c-32g")), 17);
        assert_eq!(auto_pool_cap(Some("0.5c-512mb")), 3);
    }
}
