//! The rules that need the whole Blueprint: references between resources, unique names, health
//! checks, and the variables a service running render-deploy must receive.

use std::collections::{HashMap, HashSet};

use super::structure::{article, suggest};
use super::yaml::{Kind, Node, Pos, Scalar, shorten};
use super::{Finding, Severity};

/// Variables whose value must never be written into a file kept in git.
const SECRETS: &[&str] = &[
    "OPENAI_API_KEY",
    "TWILIO_AUTH_TOKEN",
    "RENDER_DEPLOY_HOOK_SECRET",
    "METRICS_TOKEN",
];

/// The resources a Blueprint declares, wherever they sit (top level, `ungrouped`, environments).
#[derive(Default)]
pub(crate) struct Resources<'a> {
    pub services: Vec<&'a Node>,
    pub databases: Vec<&'a Node>,
    pub groups: Vec<&'a Node>,
    /// Groups by name (the first of a name), so that lookups stay linear on a huge file.
    by_name: HashMap<&'a str, &'a Node>,
}

impl<'a> Resources<'a> {
    pub fn collect(root: &'a Node) -> Self {
        let mut out = Resources::default();
        let mut scopes = vec![root];
        scopes.extend(root.get("ungrouped"));
        for project in items(root.get("projects")) {
            scopes.extend(items(project.get("environments")));
        }
        for scope in scopes {
            out.services.extend(items(scope.get("services")));
            out.databases.extend(items(scope.get("databases")));
            out.groups.extend(items(scope.get("envVarGroups")));
        }
        for group in &out.groups {
            if let Some(name) = name_of(group) {
                out.by_name.entry(name).or_insert(group);
            }
        }
        out
    }

    /// The environment group called `name`.
    pub fn group(&self, name: &str) -> Option<&'a Node> {
        self.groups
            .iter()
            .copied()
            .find(|g| name_of(g) == Some(name))
    }
}

/// The items of a list, or nothing.
pub(crate) fn items(node: Option<&Node>) -> impl Iterator<Item = &Node> {
    node.and_then(Node::as_seq).unwrap_or_default().iter()
}

/// A resource's `name`.
pub(crate) fn name_of(node: &Node) -> Option<&str> {
    node.get("name").and_then(Node::as_str)
}

/// How a service is named in messages: "web service `api`".
pub(crate) fn describe_service(service: &Node) -> String {
    let label = match (
        service.get("type").and_then(Node::as_str),
        runtime_of(service),
    ) {
        (Some("web"), Some("static")) => "static site",
        (Some("web"), _) => "web service",
        (Some("pserv"), _) => "private service",
        (Some("worker"), _) => "background worker",
        (Some("cron"), _) => "cron job",
        (Some("keyvalue" | "redis"), _) => "Key Value instance",
        (Some("workflow"), _) => "workflow",
        _ => "service",
    };
    match name_of(service) {
        Some(name) => format!("{label} `{}`", shorten(name)),
        None => label.to_owned(),
    }
}

fn runtime_of(service: &Node) -> Option<&str> {
    service
        .get("runtime")
        .or_else(|| service.get("env"))
        .and_then(Node::as_str)
}

/// Whether the service runs this program: one of its commands mentions `render-deploy`.
pub(crate) fn runs_render_deploy(service: &Node) -> bool {
    ["startCommand", "preDeployCommand", "dockerCommand"]
        .iter()
        .filter_map(|k| service.get(k).and_then(Node::as_str))
        .any(|command| command.contains("render-deploy"))
}

/// Whether an environment variable entry gives its variable a value at deploy time.
fn provides_value(var: &Node) -> bool {
    let has_value = var
        .get("value")
        .is_some_and(|v| !matches!(v.kind, Kind::Scalar(_, Scalar::Null)));
    has_value
        || var.get("generateValue").and_then(Node::as_bool) == Some(true)
        || var.get("sync").and_then(Node::as_bool) == Some(false)
        || var.get("fromDatabase").is_some()
        || var.get("fromService").is_some()
}

/// The service's own variable entries and those of the groups it takes, in order.
pub(crate) fn variables<'a>(service: &'a Node, resources: &Resources<'a>) -> Vec<&'a Node> {
    let mut out = Vec::new();
    for var in items(service.get("envVars")) {
        match var.get("fromGroup").and_then(Node::as_str) {
            Some(group) => {
                if let Some(group) = resources.group(group) {
                    out.extend(items(group.get("envVars")));
                }
            }
            None => out.push(var),
        }
    }
    out
}

pub(crate) fn check(root: &Node, findings: &mut Vec<Finding>) {
    let resources = Resources::collect(root);
    let mut error = |pos: Pos, message: String| {
        findings.push(Finding {
            pos,
            severity: Severity::Error,
            message,
        })
    };

    unique_names(&resources.services, "service", &mut error);
    unique_names(&resources.databases, "database", &mut error);
    unique_names(&resources.groups, "environment group", &mut error);

    let names = Names::of(&resources);
    for service in &resources.services {
        let what = describe_service(service);
        references(service, &names, &mut error);
        health_check_path(service, &what, &mut error);
        scaling_bounds(service, &mut error);
        if runs_render_deploy(service) {
            render_deploy_variables(service, &what, &resources, &mut error);
        }
    }
    secrets_written_in_the_file(&resources, findings);
}

/// The names a `fromDatabase` or `fromGroup` may refer to.
struct Names<'a> {
    databases: Vec<&'a str>,
    groups: Vec<&'a str>,
    database_set: HashSet<&'a str>,
    group_set: HashSet<&'a str>,
}

impl<'a> Names<'a> {
    fn of(resources: &Resources<'a>) -> Self {
        let mut databases: Vec<&str> = resources
            .databases
            .iter()
            .filter_map(|d| name_of(d))
            .collect();
        // A read replica can be read from like its primary.
        for db in &resources.databases {
            databases.extend(items(db.get("readReplicas")).filter_map(name_of));
        }
        let groups: Vec<&str> = resources.groups.iter().filter_map(|g| name_of(g)).collect();
        Self {
            database_set: databases.iter().copied().collect(),
            group_set: groups.iter().copied().collect(),
            databases,
            groups,
        }
    }
}

/// Each `fromDatabase` and `fromGroup` names a database or group the file declares.
fn references(service: &Node, names: &Names<'_>, error: &mut impl FnMut(Pos, String)) {
    for var in items(service.get("envVars")) {
        if let Some(name) = var.get("fromDatabase").and_then(|d| d.get("name"))
            && let Some(text) = name.as_str()
            && !names.database_set.contains(text)
        {
            error(
                name.pos,
                unknown_reference("database", text, &names.databases),
            );
        }
        if let Some(group) = var.get("fromGroup")
            && let Some(text) = group.as_str()
            && !names.group_set.contains(text)
        {
            error(
                group.pos,
                unknown_reference("environment group", text, &names.groups),
            );
        }
    }
}

/// A web service has a `healthCheckPath`, and it starts with `/`.
fn health_check_path(service: &Node, what: &str, error: &mut impl FnMut(Pos, String)) {
    let is_web = service.get("type").and_then(Node::as_str) == Some("web")
        && runtime_of(service) != Some("static");
    match service.get("healthCheckPath") {
        None if is_web => error(
            service.pos,
            format!(
                "{what} has no `healthCheckPath`: without one Render sends traffic to a new instance as soon as its port opens, healthy or not (add e.g. `healthCheckPath: /health`)"
            ),
        ),
        Some(path) => {
            if let Some(text) = path.as_str()
                && !text.starts_with('/')
            {
                error(
                    path.pos,
                    format!(
                        "`healthCheckPath` must start with `/` (found `{}`)",
                        shorten(text)
                    ),
                );
            }
        }
        None => {}
    }
}

/// `scaling.minInstances` is at most `scaling.maxInstances`.
fn scaling_bounds(service: &Node, error: &mut impl FnMut(Pos, String)) {
    if let Some(scaling) = service.get("scaling")
        && let (Some(min), Some(max)) = (
            scaling.get("minInstances").and_then(Node::as_int),
            scaling.get("maxInstances").and_then(Node::as_int),
        )
        && min > max
    {
        error(
            scaling.pos,
            format!("`scaling.minInstances` ({min}) is larger than `scaling.maxInstances` ({max})"),
        );
    }
}

/// A service running render-deploy declares every variable the service requires.
fn render_deploy_variables(
    service: &Node,
    what: &str,
    resources: &Resources<'_>,
    error: &mut impl FnMut(Pos, String),
) {
    let vars = variables(service, resources);
    let declared = |key: &str| {
        vars.iter()
            .any(|v| v.get("key").and_then(Node::as_str) == Some(key) && provides_value(v))
    };
    let at = service.entry("envVars").map_or(service.pos, |e| e.key_pos);
    for required in crate::schema::builtin_required_variables() {
        // Render sets PORT itself; FLASK_ENV is accepted for APP_ENV (contract §3).
        if required == "PORT" || (required == "APP_ENV" && declared("FLASK_ENV")) {
            continue;
        }
        if !declared(required) {
            error(
                at,
                format!(
                    "{what} runs render-deploy but does not declare `{required}`: set a `value`, mark it `sync: false` to enter it in the Dashboard, or take it from a group or `fromDatabase`"
                ),
            );
        }
    }
}

/// Secrets written in the file end up in git history; they belong in the Dashboard.
fn secrets_written_in_the_file(resources: &Resources<'_>, findings: &mut Vec<Finding>) {
    let all_vars = resources
        .services
        .iter()
        .chain(&resources.groups)
        .flat_map(|owner| items(owner.get("envVars")));
    for var in all_vars {
        if let Some(key) = var.get("key").and_then(Node::as_str)
            && SECRETS.contains(&key)
            && let Some(value) = var.get("value")
            && !matches!(value.kind, Kind::Scalar(_, Scalar::Null))
        {
            findings.push(Finding {
                pos: value.pos,
                severity: Severity::Warning,
                message: format!(
                    "`{key}` is a secret, and its value is written in the Blueprint (and so in git); use `sync: false` and enter it in the Dashboard"
                ),
            });
        }
    }
}

fn unique_names(nodes: &[&Node], label: &str, error: &mut impl FnMut(Pos, String)) {
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    for node in nodes {
        let Some(name) = node.get("name") else {
            continue;
        };
        let Some(text) = name.as_str() else {
            continue;
        };
        if let Some(first) = seen.get(text) {
            error(
                name.pos,
                format!(
                    "another {label} is already named `{}` (line {}); names must be unique within a Blueprint",
                    shorten(text),
                    first.line
                ),
            );
        } else {
            seen.insert(text, name.pos);
        }
    }
}

fn unknown_reference(label: &str, name: &str, declared: &[&str]) -> String {
    let known = if declared.is_empty() {
        format!("the file declares no {label}")
    } else {
        // A few names help; thousands would bury the message.
        const SHOWN: usize = 10;
        let list: Vec<String> = declared
            .iter()
            .take(SHOWN)
            .map(|d| format!("`{}`", shorten(d)))
            .collect();
        let more = if declared.len() > SHOWN { ", …" } else { "" };
        format!("declared: {}{more}", list.join(", "))
    };
    let hint = suggest(name, declared)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    format!(
        "`{}` is not {} of this Blueprint ({known}){hint}",
        shorten(name),
        article(label)
    )
}
