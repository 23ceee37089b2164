//! What a check returns: each variable's parsed value and source, every problem, and the
//! redacted summary.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use secrecy::SecretString;

use crate::database_url::DatabaseUrl;
use crate::render_api::credentials::ApiBase;
use crate::render_api::deploy_hook::DeployHookUrl;
use crate::signature::WebhookSecret;

/// A value of a variable, parsed by its rule.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// Text of a non-secret `string`, `regex`, `enum` or `url` (or a word of `values`).
    Text(String),
    /// Text of a secret variable.
    Secret(SecretString),
    /// An `integer`.
    Integer(i64),
    /// A `bool`.
    Bool(bool),
    /// A `port`.
    Port(u16),
    /// An `ip`.
    Ip(IpAddr),
    /// A `postgres-url`.
    DatabaseUrl(DatabaseUrl),
    /// A `deploy-hook-url`.
    DeployHookUrl(DeployHookUrl),
    /// A `render-api-url`.
    RenderApiUrl(ApiBase),
    /// A `webhook-secret`.
    WebhookSecret(WebhookSecret),
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The variable itself.
    Environment,
    /// One of its aliases (named).
    Alias(String),
    /// The schema's default (or `dev_default`).
    Default,
}

/// What sort of problem a variable has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A required variable is unset.
    Missing,
    /// Set, but empty or only spaces.
    Empty,
    /// An example value such as `your_key` or `changeme`.
    Placeholder,
    /// Set, but not valid UTF-8.
    NotUtf8,
    /// Set, but does not follow the rule.
    Invalid,
    /// The variable and its alias are both set, to different values.
    Conflict,
    /// A variable that production requires is unset under `dev` (a warning).
    OptionalInDev,
}

/// One problem with one variable: `NAME: what is wrong (what is expected)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The variable's name.
    pub var: String,
    /// What is wrong, and in parentheses what is expected. Never contains a secret value.
    pub problem: String,
    /// The sort of problem.
    #[serde(skip)]
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

/// Variable → how it is shown (redacted), in schema order. Serializes as a JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary(pub(super) Vec<(String, String)>);

impl Summary {
    /// The entries, in schema order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How one variable is shown.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Replaces how one variable is shown (for values the configuration computes).
    pub fn set(&mut self, name: &str, shown: impl Into<String>) {
        let shown = shown.into();
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some(entry) => entry.1 = shown,
            None => self.0.push((name.to_owned(), shown)),
        }
    }
}

impl serde::Serialize for Summary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The outcome of [`Schema::check`](super::Schema::check).
#[derive(Debug, Default)]
pub struct Report {
    /// Every problem, in schema order.
    pub problems: Vec<Problem>,
    /// Things worth saying that do not make the configuration invalid (unset under `dev`).
    pub warnings: Vec<Problem>,
    /// Every variable of the schema and how it is shown.
    pub summary: Summary,
    pub(super) values: HashMap<String, (Parsed, Source)>,
}

impl Report {
    /// Whether there is no problem.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// A variable's parsed value (set, or its default), when it has a valid one.
    pub fn value(&self, name: &str) -> Option<&Parsed> {
        self.values.get(name).map(|(v, _)| v)
    }

    /// Where a variable's value came from.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.values.get(name).map(|(_, s)| s)
    }

    /// Takes a variable's parsed value out of the report.
    pub fn take(&mut self, name: &str) -> Option<Parsed> {
        self.values.remove(name).map(|(v, _)| v)
    }
}
