//! The structural check: a Blueprint's YAML tree walked with the specification's tables, each
//! finding pointing at the key or value at fault.

use super::spec::{
    BUILD_SOURCE, CRON, ENV_FROM_DATABASE, ENV_FROM_GROUP, ENV_FROM_SERVICE, ENV_VALUE, KEY_VALUE,
    Obj, ROOT, RUNTIMES, SERVER, STATIC, Ty, WORKFLOW,
};
use super::yaml::{Kind, Node, Scalar, shorten};
use super::{Finding, Severity};

/// Walks a document with the tables above and collects findings.
pub(crate) struct Structure<'a> {
    pub findings: &'a mut Vec<Finding>,
}

impl Structure<'_> {
    fn push(&mut self, node_pos: super::yaml::Pos, severity: Severity, message: String) {
        self.findings.push(Finding {
            pos: node_pos,
            severity,
            message,
        });
    }

    fn error(&mut self, pos: super::yaml::Pos, message: String) {
        self.push(pos, Severity::Error, message);
    }

    /// Checks the top level.
    pub fn root(&mut self, root: &Node) {
        if root.as_map().is_none() {
            self.error(
                root.pos,
                format!(
                    "the top level of a Blueprint must be a mapping (`services:`, `databases:`, …), found {}",
                    root.describe()
                ),
            );
            return;
        }
        self.object(root, &ROOT, "the Blueprint", &[]);
    }

    /// Checks a mapping against an object's fields; `skip` lists keys the caller handles itself.
    fn object(&mut self, node: &Node, obj: &Obj, what: &str, skip: &[&str]) {
        let Some(entries) = node.as_map() else {
            self.error(
                node.pos,
                format!("{what} must be a mapping, found {}", node.describe()),
            );
            return;
        };
        for entry in entries {
            if skip.contains(&entry.key.as_str()) {
                continue;
            }
            let Some(field) = obj.field(&entry.key) else {
                let names: Vec<&str> = obj.all_fields().map(|f| f.name).collect();
                let hint = suggest(&entry.key, &names)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.error(
                    entry.key_pos,
                    format!(
                        "unknown field `{}` in {what}: Render's Blueprint specification has no such field{hint}",
                        shorten(&entry.key)
                    ),
                );
                continue;
            };
            if let Some((severity, message)) = field.deprecated {
                self.push(entry.key_pos, severity, message.to_owned());
            }
            self.value(field.name, &entry.value, field.ty);
        }
        for required in obj.required {
            if node.get(required).is_none() && !skip.contains(required) {
                self.error(
                    node.pos,
                    format!("{what} has no `{required}`, which Render requires"),
                );
            }
        }
    }

    fn value(&mut self, name: &str, node: &Node, ty: Ty) {
        match ty {
            Ty::Str | Ty::Bool | Ty::StrOrNum => self.scalar(name, node, ty),
            Ty::Int { min, max } => self.int(name, node, min, max),
            Ty::Enum(label, values) => self.enumeration(name, label, values, node),
            Ty::Obj(obj) => self.object(node, obj, &format!("`{name}`"), &[]),
            Ty::Named(label, obj) => self.named_object(node, label, obj),
            Ty::Arr(item) => match node.as_seq() {
                Some(items) => {
                    for i in items {
                        self.value(name, i, *item);
                    }
                }
                None => self.error(
                    node.pos,
                    format!("`{name}` must be a list, found {}", node.describe()),
                ),
            },
            Ty::Service => self.service(node),
            Ty::EnvVar => self.env_var(node),
            Ty::GroupEnvVar => {
                let what = env_var_label(node);
                self.object(node, &ENV_VALUE, &what, &[]);
            }
            Ty::DiskSize => self.disk_size(name, node),
            Ty::Schedule => self.schedule(name, node),
        }
    }

    /// A string, a boolean, or a string or number.
    fn scalar(&mut self, name: &str, node: &Node, ty: Ty) {
        let (fits, expected) = match ty {
            Ty::Bool => (node.as_bool().is_some(), "`true` or `false`"),
            Ty::StrOrNum => (
                matches!(
                    node.kind,
                    Kind::Scalar(_, Scalar::Str(_) | Scalar::Int(_) | Scalar::Float(_))
                ),
                "a string or a number",
            ),
            _ => (node.as_str().is_some(), "a string"),
        };
        if !fits {
            self.error(
                node.pos,
                format!("`{name}` must be {expected}, found {}", node.describe()),
            );
        }
    }

    /// An object named by its `name` in messages; a build source has `git` or `image`.
    fn named_object(&mut self, node: &Node, label: &str, obj: &Obj) {
        let what = named(node.get("name").and_then(Node::as_str), label);
        self.object(node, obj, &what, &[]);
        if std::ptr::eq(obj, &BUILD_SOURCE)
            && node.as_map().is_some()
            && node.get("git").is_some() == node.get("image").is_some()
        {
            self.error(
                node.pos,
                format!("{what} needs exactly one of `git` or `image`"),
            );
        }
    }

    /// `diskSizeGB`: 1 or a multiple of 5.
    fn disk_size(&mut self, name: &str, node: &Node) {
        self.int(name, node, 1, None);
        if let Some(size) = node.as_int()
            && size > 1
            && size % 5 != 0
        {
            self.error(
                node.pos,
                format!("`{name}` must be 1 or a multiple of 5 (found {size})"),
            );
        }
    }

    /// A cron expression of five fields.
    fn schedule(&mut self, name: &str, node: &Node) {
        match node.as_str() {
            Some(s) if s.split_whitespace().count() == 5 => {}
            Some(s) => self.error(
                node.pos,
                format!(
                    "`{name}` must be a cron expression of five fields (minute hour day month weekday), found `{}`",
                    shorten(s)
                ),
            ),
            None => self.error(
                node.pos,
                format!("`{name}` must be a string, found {}", node.describe()),
            ),
        }
    }

    fn int(&mut self, name: &str, node: &Node, min: i64, max: Option<i64>) {
        let Some(value) = node.as_int() else {
            self.error(
                node.pos,
                format!("`{name}` must be an integer, found {}", node.describe()),
            );
            return;
        };
        match max {
            Some(max) if value < min || value > max => self.error(
                node.pos,
                format!("`{name}` must be between {min} and {max} (found {value})"),
            ),
            None if value < min => self.error(
                node.pos,
                format!("`{name}` must be at least {min} (found {value})"),
            ),
            _ => {}
        }
    }

    fn enumeration(&mut self, name: &str, label: &str, values: &[&str], node: &Node) {
        match node.as_str() {
            Some(v) if values.contains(&v) => {}
            Some(v) => {
                let hint = suggest(v, values)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                self.error(
                    node.pos,
                    format!(
                        "`{}` is not {} Render knows (expected {}){hint}",
                        shorten(v),
                        article(label),
                        one_of(values)
                    ),
                );
            }
            None => {
                let quote = node
                    .text()
                    .filter(|t| values.contains(t))
                    .map(|t| format!("; quote it: `{name}: \"{t}\"`"))
                    .unwrap_or_default();
                self.error(
                    node.pos,
                    format!(
                        "`{name}` must be a string ({}), found {}{quote}",
                        one_of(values),
                        node.describe()
                    ),
                );
            }
        }
    }

    fn service(&mut self, node: &Node) {
        if node.as_map().is_none() {
            self.error(
                node.pos,
                format!("a service must be a mapping, found {}", node.describe()),
            );
            return;
        }
        let name = node.get("name").and_then(Node::as_str);
        let Some(type_node) = node.get("type") else {
            self.error(
                node.pos,
                format!(
                    "{} has no `type` (web, pserv, worker, cron, keyvalue or workflow)",
                    named(name, "service")
                ),
            );
            return;
        };
        // The deprecated `env:` still tells which runtime was meant.
        let env = node.entry("env");
        let runtime = node
            .get("runtime")
            .or(env.map(|e| &e.value))
            .and_then(Node::as_str);
        let Some((obj, what)) = self.service_type(type_node, runtime, name) else {
            return;
        };
        let mut skip: Vec<&str> = Vec::new();
        if let Some(env) = env {
            skip.push("env");
            let replacement = match env.value.as_str() {
                Some(v) if RUNTIMES.contains(&v) => format!("`runtime: {v}`"),
                _ => "`runtime:`".to_owned(),
            };
            self.error(
                env.key_pos,
                format!(
                    "`env` is deprecated and not part of Render's current Blueprint specification; use {replacement} instead"
                ),
            );
            // The runtime is then missing too, but one finding says it all.
            if node.get("runtime").is_none() {
                skip.push("runtime");
            }
        }
        if node.get("buildSource").is_some() {
            skip.push("runtime");
        }
        self.object(node, obj, &what, &skip);
    }

    /// The table of a service's `type` (and runtime), and how messages name the service;
    /// `None` after a finding when the type is not one Render knows.
    fn service_type(
        &mut self,
        type_node: &Node,
        runtime: Option<&str>,
        name: Option<&str>,
    ) -> Option<(&'static Obj, String)> {
        let found: (&'static Obj, &str) = match type_node.as_str() {
            Some("web") if runtime == Some("static") => (&STATIC, "static site"),
            Some("web") => (&SERVER, "web service"),
            Some("pserv") => (&SERVER, "private service"),
            Some("worker") => (&SERVER, "background worker"),
            Some("cron") => (&CRON, "cron job"),
            Some("keyvalue") => (&KEY_VALUE, "Key Value instance"),
            Some("redis") => {
                self.push(
                    type_node.pos,
                    Severity::Warning,
                    "`type: redis` is a deprecated alias; use `type: keyvalue`".into(),
                );
                (&KEY_VALUE, "Key Value instance")
            }
            Some("workflow") => (&WORKFLOW, "workflow"),
            Some("static") => {
                self.error(
                    type_node.pos,
                    "`static` is not a service type; a static site is `type: web` with `runtime: static`".into(),
                );
                return None;
            }
            Some(other) => {
                let types = ["web", "pserv", "worker", "cron", "keyvalue", "workflow"];
                let hint = suggest(other, &types)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                self.error(
                    type_node.pos,
                    format!(
                        "`{}` is not a service type Render knows (expected {}){hint}",
                        shorten(other),
                        one_of(&types)
                    ),
                );
                return None;
            }
            None => {
                self.error(
                    type_node.pos,
                    format!("`type` must be a string, found {}", type_node.describe()),
                );
                return None;
            }
        };
        Some((found.0, named(name, found.1)))
    }

    fn env_var(&mut self, node: &Node) {
        let what = env_var_label(node);
        let obj = if node.get("fromDatabase").is_some() {
            &ENV_FROM_DATABASE
        } else if node.get("fromService").is_some() {
            &ENV_FROM_SERVICE
        } else if node.get("fromGroup").is_some() {
            &ENV_FROM_GROUP
        } else {
            &ENV_VALUE
        };
        self.object(node, obj, &what, &[]);
    }
}

/// "web service `api`", or "web service" for one without a name.
fn named(name: Option<&str>, label: &str) -> String {
    match name {
        Some(n) => format!("{label} `{}`", shorten(n)),
        None => label.to_owned(),
    }
}

fn env_var_label(node: &Node) -> String {
    match node.get("key").and_then(Node::as_str) {
        Some(k) => format!("environment variable `{}`", shorten(k)),
        None => "environment variable".to_owned(),
    }
}

/// "a plan", "an environment group".
pub(crate) fn article(label: &str) -> String {
    let an = label.starts_with(['a', 'e', 'i', 'o', 'u', 'A', 'E', 'I', 'O', 'U']);
    format!("{} {label}", if an { "an" } else { "a" })
}

/// "one of a, b or c", shortened for long lists such as the 50 database plans.
fn one_of(values: &[&str]) -> String {
    const SHOWN: usize = 10;
    let quoted: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n if n > SHOWN => format!("one of {}, … ({n} values)", quoted[..SHOWN].join(", ")),
        n => format!("one of {} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// The closest known name, when one is close enough to be a typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // Real Blueprints name a few dozen resources; past a few hundred, comparing every misspelt
    // reference with every name would make a huge generated file slow to check.
    const MAX_CANDIDATES: usize = 256;
    if candidates.len() > MAX_CANDIDATES || word.len() > 200 {
        return None;
    }
    let lower = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (levenshtein(&lower, &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 5) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::spec::{POSTGRES_PLANS, REGIONS};

    #[test]
    fn a_typo_gets_a_suggestion_and_a_different_word_does_not() {
        assert_eq!(
            suggest("healthcheckPath", &["healthCheckPath", "name"]),
            Some("healthCheckPath")
        );
        assert_eq!(suggest("orgeon", REGIONS), Some("oregon"));
        assert_eq!(suggest("kubernetes", REGIONS), None);
    }

    #[test]
    fn long_value_lists_are_shortened() {
        assert!(one_of(POSTGRES_PLANS).ends_with("… (50 values)"));
        assert_eq!(one_of(&["a", "b", "c"]), "one of `a`, `b` or `c`");
    }
}
