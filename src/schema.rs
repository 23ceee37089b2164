//! Variable rules as data (built-in or a user's TOML file) and the engine that applies them.
//!
//! A [`Schema`] is a list of [`Rule`]s, one per environment variable, read from TOML: the
//! built-in one (`src/builtin_schema.toml`, the contract's table) or a user's file given to
//! `check-env --schema`. Both go through the same parser and the same engine, so there is one
//! mechanism: [`Schema::check`] reads an [`Env`] and returns a [`Report`] with every problem at
//! once, a redacted [`Summary`], and the parsed values that [`crate::config`] turns into types.
//!
//! Two promises hold for every message this module writes: a value of a `secret` variable is
//! never included, not even in part (nor its length), and a non-secret value is quoted escaped
//! and truncated, so that hostile input cannot forge extra output lines.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::LazyLock;

use base64::Engine;
use secrecy::SecretString;
use serde::Deserialize;

use crate::database_url::DatabaseUrl;
use crate::deploy_hook::DeployHookUrl;
use crate::signature::WebhookSecret;

/// The built-in schema's TOML source (every variable of the contract, §3).
pub const BUILTIN_SCHEMA_TOML: &str = include_str!("builtin_schema.toml");

static BUILTIN: LazyLock<Schema> = LazyLock::new(|| {
    // The file is part of the crate and a unit test parses it, so this cannot fail at run time.
    Schema::parse(BUILTIN_SCHEMA_TOML, "builtin_schema.toml")
        .unwrap_or_else(|e| panic!("the built-in schema is invalid: {e}"))
});

/// The variables this service requires in production (from the built-in schema); the
/// blueprint checker uses this list. `PORT` is among them, though Render sets it.
pub fn builtin_required_variables() -> Vec<&'static str> {
    Schema::builtin()
        .rules()
        .iter()
        .filter(|r| r.required)
        .map(|r| r.name.as_str())
        .collect()
}

/// Which rules apply: `serve` (production) or `dev` (a laptop, contract §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Production rules: every required variable must be set.
    #[default]
    Serve,
    /// `dev`: `dev_default` and `dev_required` apply; a variable that production requires but
    /// `dev` does not is reported as a warning when unset.
    Dev,
}

/// What a variable must look like (`kind` in the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Any non-empty text.
    String,
    /// An absolute URL with a scheme and a host.
    Url,
    /// A PostgreSQL URL ([`DatabaseUrl`]); shown with its password as `****`.
    PostgresUrl,
    /// A TCP port, 1–65535, not one of `reserved`.
    Port,
    /// A whole number, within `min`..=`max`.
    Integer,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    Bool,
    /// One of `values`.
    Enum,
    /// The whole value matches `pattern`.
    Regex,
    /// An IP address (v4 or v6).
    Ip,
    /// A webhook signing secret: `whsec_` + base64 of 24–64 bytes, or ≥ 32 raw bytes.
    WebhookSecret,
    /// Render's deploy hook URL (`http(s)`); shown with its `key` as `****`.
    DeployHookUrl,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Url => "url",
            Kind::PostgresUrl => "postgres-url",
            Kind::Port => "port",
            Kind::Integer => "integer",
            Kind::Bool => "bool",
            Kind::Enum => "enum",
            Kind::Regex => "regex",
            Kind::Ip => "ip",
            Kind::WebhookSecret => "webhook-secret",
            Kind::DeployHookUrl => "deploy-hook-url",
        }
    }
}

/// The rule of one variable.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The variable's name.
    pub name: String,
    /// Must be set in production (`serve`, `check-env`).
    pub required: bool,
    /// Must be set under `dev` (defaults to `required`).
    pub dev_required: bool,
    /// The value is never printed.
    pub secret: bool,
    /// What the value must look like.
    pub kind: Kind,
    /// Other names read when this one is unset (e.g. `FLASK_ENV` for `APP_ENV`).
    pub aliases: Vec<String>,
    /// For `enum`: the accepted values. Other kinds: words accepted besides the kind's form.
    pub values: Vec<String>,
    /// Used when the variable is unset.
    pub default: Option<String>,
    /// Used under `dev` when the variable is unset (defaults to `default`).
    pub dev_default: Option<String>,
    /// Smallest accepted number (`integer`, `port`).
    pub min: Option<i64>,
    /// Largest accepted number (`integer`, `port`).
    pub max: Option<i64>,
    /// Numbers refused (`integer`, `port`), e.g. Render's reserved ports.
    pub reserved: Vec<i64>,
    /// Fewest characters accepted.
    pub min_length: Option<usize>,
    /// Most characters accepted.
    pub max_length: Option<usize>,
    /// The text shown in parentheses after a problem (defaults to one made from the rule).
    pub expected: Option<String>,
    /// What the variable is for (documentation only).
    pub description: Option<String>,
    pattern: Option<regex::Regex>,
}

impl Rule {
    /// The rule's `pattern`, as written in the schema.
    pub fn pattern(&self) -> Option<&str> {
        // The stored regex is anchored as `^(?:...)$`; show what the user wrote.
        self.pattern.as_ref().map(|p| {
            let s = p.as_str();
            s.strip_prefix("^(?:")
                .and_then(|s| s.strip_suffix(")$"))
                .unwrap_or(s)
        })
    }

    /// The rule's default under `mode`.
    pub fn default_for(&self, mode: Mode) -> Option<&str> {
        match mode {
            Mode::Serve => self.default.as_deref(),
            Mode::Dev => self.dev_default.as_deref().or(self.default.as_deref()),
        }
    }

    /// Whether the variable must be set under `mode`.
    pub fn required_in(&self, mode: Mode) -> bool {
        match mode {
            Mode::Serve => self.required,
            Mode::Dev => self.dev_required,
        }
    }

    /// What a valid value looks like, in words (the part in parentheses of a problem).
    pub fn expected(&self) -> String {
        if let Some(e) = &self.expected {
            return e.clone();
        }
        let mut out = match self.kind {
            Kind::String => "a non-empty value".to_owned(),
            Kind::Url => "an absolute URL such as https://example.com".to_owned(),
            Kind::PostgresUrl => "postgres://USER:PASSWORD@HOST:PORT/DATABASE".to_owned(),
            Kind::Port | Kind::Integer => {
                let (lo, hi) = self.bounds();
                let noun = if self.kind == Kind::Port {
                    "a port"
                } else {
                    "an integer"
                };
                let mut s = match (lo, hi) {
                    (Some(lo), Some(hi)) => format!("{noun} from {lo} to {hi}"),
                    (Some(lo), None) => format!("{noun} of at least {lo}"),
                    (None, Some(hi)) => format!("{noun} of at most {hi}"),
                    (None, None) => noun.to_owned(),
                };
                if !self.reserved.is_empty() {
                    let list: Vec<String> = self.reserved.iter().map(i64::to_string).collect();
                    if self.kind == Kind::Port {
                        s.push_str(&format!(", not Render's reserved {}", list.join(", ")));
                    } else {
                        s.push_str(&format!(", not {}", list.join(", ")));
                    }
                }
                s
            }
            Kind::Bool => "true or false".to_owned(),
            Kind::Enum => format!("one of {}", self.values.join(", ")),
            Kind::Regex => format!("a value matching {}", self.pattern().unwrap_or_default()),
            Kind::Ip => "an IP address such as 0.0.0.0 or ::".to_owned(),
            Kind::WebhookSecret => {
                "whsec_ + base64 of 24–64 bytes, or any other string of at least 32 bytes"
                    .to_owned()
            }
            Kind::DeployHookUrl => "https://api.render.com/deploy/srv-...?key=...".to_owned(),
        };
        if self.kind != Kind::Enum && !self.values.is_empty() {
            out = format!("{}, or {out}", self.values.join(", "));
        }
        match (self.min_length, self.max_length) {
            (Some(lo), Some(hi)) => out.push_str(&format!(", {lo} to {hi} characters")),
            (Some(lo), None) => out.push_str(&format!(", at least {lo} characters")),
            (None, Some(hi)) => out.push_str(&format!(", at most {hi} characters")),
            (None, None) => {}
        }
        if self.kind != Kind::Regex
            && let Some(p) = self.pattern()
        {
            out.push_str(&format!(", matching {p}"));
        }
        out
    }

    fn bounds(&self) -> (Option<i64>, Option<i64>) {
        match self.kind {
            Kind::Port => (
                Some(self.min.unwrap_or(1).max(1)),
                Some(self.max.unwrap_or(65535).min(65535)),
            ),
            _ => (self.min, self.max),
        }
    }

    /// Parses one value (already known to be set) by this rule.
    fn parse(&self, value: &str) -> Result<Parsed, Reject> {
        if value.trim().is_empty() {
            return Err(Reject::new(ProblemKind::Empty, "is empty"));
        }
        if is_placeholder(value) {
            return Err(Reject::new(
                ProblemKind::Placeholder,
                self.quoted(value, "is a placeholder, not a real value"),
            ));
        }
        if value.trim() != value {
            return Err(Reject::new(
                ProblemKind::Invalid,
                "has leading or trailing whitespace",
            ));
        }
        let chars = value.chars().count();
        if let Some(lo) = self.min_length
            && chars < lo
        {
            return Err(Reject::new(
                ProblemKind::Invalid,
                format!("is shorter than {lo} characters"),
            ));
        }
        if let Some(hi) = self.max_length
            && chars > hi
        {
            return Err(Reject::new(
                ProblemKind::Invalid,
                format!("is longer than {hi} characters"),
            ));
        }
        if self.kind != Kind::Regex
            && let Some(p) = &self.pattern
            && !p.is_match(value)
        {
            return Err(Reject::new(
                ProblemKind::Invalid,
                self.quoted(value, "does not match the expected form"),
            ));
        }
        if self.values.iter().any(|v| v == value) {
            return Ok(self.text(value));
        }
        self.parse_kind(value)
    }

    fn parse_kind(&self, value: &str) -> Result<Parsed, Reject> {
        let invalid = |what: &str| Reject::new(ProblemKind::Invalid, self.quoted(value, what));
        match self.kind {
            Kind::String => Ok(self.text(value)),
            Kind::Enum => Err(invalid("is not one of the accepted values")),
            Kind::Regex => match &self.pattern {
                Some(p) if p.is_match(value) => Ok(self.text(value)),
                _ => Err(invalid("does not match the expected form")),
            },
            Kind::Url => match url::Url::parse(value) {
                Ok(u) if u.has_host() => Ok(self.text(value)),
                _ => Err(invalid("is not an absolute URL with a host")),
            },
            Kind::PostgresUrl => DatabaseUrl::parse(value)
                .map(Parsed::DatabaseUrl)
                .map_err(|e| Reject::complete(ProblemKind::Invalid, e.to_string())),
            Kind::DeployHookUrl => DeployHookUrl::parse(value)
                .map(Parsed::DeployHookUrl)
                .map_err(|e| Reject::complete(ProblemKind::Invalid, e.to_string())),
            Kind::Bool => match value.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Parsed::Bool(true)),
                "false" | "0" | "no" | "off" => Ok(Parsed::Bool(false)),
                _ => Err(invalid("is not a boolean")),
            },
            Kind::Ip => value
                .parse::<IpAddr>()
                .map(Parsed::Ip)
                .map_err(|_| invalid("is not an IP address")),
            Kind::Port | Kind::Integer => {
                let n: i64 = value.parse().map_err(|_| {
                    invalid(if self.kind == Kind::Port {
                        "is not a port number"
                    } else {
                        "is not an integer"
                    })
                })?;
                let (lo, hi) = self.bounds();
                if lo.is_some_and(|lo| n < lo) || hi.is_some_and(|hi| n > hi) {
                    return Err(invalid("is out of range"));
                }
                if self.reserved.contains(&n) {
                    return Err(invalid(if self.kind == Kind::Port {
                        "is reserved by Render"
                    } else {
                        "is reserved"
                    }));
                }
                match self.kind {
                    Kind::Port => u16::try_from(n)
                        .map(Parsed::Port)
                        .map_err(|_| invalid("is out of range")),
                    _ => Ok(Parsed::Integer(n)),
                }
            }
            Kind::WebhookSecret => parse_webhook_secret(value).map(Parsed::WebhookSecret),
        }
    }

    fn text(&self, value: &str) -> Parsed {
        if self.secret {
            Parsed::Secret(SecretString::from(value.to_owned()))
        } else {
            Parsed::Text(value.to_owned())
        }
    }

    /// `"value" what` for a non-secret variable, `what` alone for a secret one.
    fn quoted(&self, value: &str, what: &str) -> String {
        if self.secret || self.kind == Kind::PostgresUrl || self.kind == Kind::DeployHookUrl {
            what.to_owned()
        } else {
            format!("{} {what}", quote(value))
        }
    }
}

/// The contract's rule for `RENDER_DEPLOY_HOOK_SECRET`. No message carries the secret or its length.
fn parse_webhook_secret(value: &str) -> Result<WebhookSecret, Reject> {
    let invalid = |what: &str| Reject::new(ProblemKind::Invalid, what);
    if let Some(b64) = value.strip_prefix("whsec_") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| invalid("starts with whsec_ but the rest is not valid base64"))?;
        if bytes.len() < 24 {
            return Err(invalid("decodes to fewer than 24 bytes"));
        }
        if bytes.len() > 64 {
            return Err(invalid("decodes to more than 64 bytes"));
        }
    } else if value.len() < 32 {
        return Err(invalid("is shorter than 32 bytes"));
    }
    WebhookSecret::parse(value).map_err(|e| Reject::new(ProblemKind::Invalid, e.to_string()))
}

/// A non-secret value as shown in a message: escaped (no control characters, so no forged
/// lines) and cut to 40 characters.
fn quote(value: &str) -> String {
    const MAX: usize = 40;
    let mut cut: String = value.chars().take(MAX).collect();
    if value.chars().nth(MAX).is_some() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// Whether a value is an obvious placeholder from example documentation.
pub fn is_placeholder(value: &str) -> bool {
    let lower = value.trim().to_lowercase();
    if lower.is_empty() {
        return true;
    }
    const WHOLE: [&str; 8] = [
        "todo",
        "tbd",
        "fixme",
        "placeholder",
        "secret",
        "password",
        "none",
        "null",
    ];
    if WHOLE.contains(&lower.as_str()) {
        return true;
    }
    const INSIDE: [&str; 6] = [
        "changeme",
        "change_me",
        "change-me",
        "replace_me",
        "replaceme",
        "replace-me",
    ];
    if INSIDE.iter().any(|w| lower.contains(w)) {
        return true;
    }
    // `your_key`, `your-api-key`, `postgres://user:your_password@…`: "your" starting a word.
    let bytes = lower.as_bytes();
    for (i, _) in lower.match_indices("your") {
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let joined = matches!(bytes.get(i + 4), Some(b'_' | b'-'));
        if starts_word && joined {
            return true;
        }
    }
    // `xxx`, `sk-xxxxxxxxxxxxxxxx`, `ACxxxxxxxx…`: all x's, or a long run of them.
    if lower.len() >= 3 && lower.chars().all(|c| c == 'x') {
        return true;
    }
    if lower.contains("xxxxxxxx") {
        return true;
    }
    // `<your key>`, `<...>`, `postgres://<user>:<password>@<host>/db`.
    let mut rest = lower.as_str();
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        if let Some(close) = rest.find('>') {
            let inside = &rest[..close];
            if !inside.is_empty()
                && inside.trim() == inside
                && inside
                    .chars()
                    .all(|c| c.is_alphanumeric() || " _-.".contains(c))
            {
                return true;
            }
        }
    }
    false
}

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

/// Why a value was refused, before the variable's name is attached.
struct Reject {
    kind: ProblemKind,
    what: String,
    /// `what` already ends with its own `(expected …)`.
    complete: bool,
}

impl Reject {
    fn new(kind: ProblemKind, what: impl Into<String>) -> Self {
        Self {
            kind,
            what: what.into(),
            complete: false,
        }
    }
    fn complete(kind: ProblemKind, what: String) -> Self {
        Self {
            kind,
            what,
            complete: true,
        }
    }
    fn into_problem(self, rule: &Rule) -> Problem {
        let problem = if self.complete {
            self.what
        } else {
            format!("{} (expected {})", self.what, rule.expected())
        };
        Problem {
            var: rule.name.clone(),
            problem,
            kind: self.kind,
        }
    }
}

/// The environment to check: names and values, with non-UTF-8 values kept as such (so that
/// they are reported, not silently dropped). `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, Option<String>>,
}

impl Env {
    /// This process's environment.
    pub fn from_process() -> Self {
        Self::from_os(std::env::vars_os())
    }

    /// An environment from OS strings; a name that is not UTF-8 cannot name a variable of a
    /// schema and is skipped, a value that is not UTF-8 is kept as such.
    pub fn from_os<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let mut env = Self::default();
        for (k, v) in vars {
            if let Ok(name) = k.into().into_string() {
                env.vars.insert(name, v.into().into_string().ok());
            }
        }
        env
    }

    /// Sets a variable (the `dev` command sets `DATABASE_URL` to its throwaway cluster).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), Some(value.into()));
    }

    /// Removes a variable.
    pub fn remove(&mut self, name: &str) {
        self.vars.remove(name);
    }

    /// Whether a variable is set (to anything, even empty or non-UTF-8).
    pub fn contains(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// A variable's value, when set and UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).and_then(|v| v.as_deref())
    }

    fn lookup(&self, name: &str) -> Option<Option<&str>> {
        self.vars.get(name).map(|v| v.as_deref())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut env = Self::default();
        for (k, v) in iter {
            env.set(k, v);
        }
        env
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Env").field("names", &names).finish()
    }
}

/// Variable → how it is shown (redacted), in schema order. Serializes as a JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary(Vec<(String, String)>);

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

/// The outcome of [`Schema::check`].
#[derive(Debug, Default)]
pub struct Report {
    /// Every problem, in schema order.
    pub problems: Vec<Problem>,
    /// Things worth saying that do not make the configuration invalid (unset under `dev`).
    pub warnings: Vec<Problem>,
    /// Every variable of the schema and how it is shown.
    pub summary: Summary,
    values: HashMap<String, (Parsed, Source)>,
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

/// Why a schema file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file could not be read.
    #[error("schema {path}: cannot be read: {source}")]
    Read {
        /// The file.
        path: String,
        /// The reason.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key has the wrong type (with its position).
    #[error("schema {origin}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A variable's rule does not make sense (e.g. an `enum` without `values`).
    #[error("schema {origin}:{line}: {var}: {message}")]
    Rule {
        /// The file.
        origin: String,
        /// 1-based line of the variable's table.
        line: usize,
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
}

/// A variable's table as written in TOML.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    required: bool,
    dev_required: Option<bool>,
    #[serde(default)]
    secret: bool,
    #[serde(default = "default_kind")]
    kind: Kind,
    #[serde(default)]
    values: Vec<String>,
    pattern: Option<String>,
    default: Option<toml::Value>,
    dev_default: Option<toml::Value>,
    min: Option<i64>,
    max: Option<i64>,
    #[serde(default)]
    reserved: Vec<i64>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    #[serde(default)]
    aliases: Vec<String>,
    expected: Option<String>,
    description: Option<String>,
}

fn default_kind() -> Kind {
    Kind::String
}

/// The top-level tables in document order, each with its position.
struct Tables(Vec<(String, toml::Spanned<RawRule>)>);

impl<'de> Deserialize<'de> for Tables {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Tables;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("one table per variable")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Tables, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry()? {
                    out.push((k, v));
                }
                Ok(Tables(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A list of variable rules.
#[derive(Debug, Clone)]
pub struct Schema {
    rules: Vec<Rule>,
}

impl Schema {
    /// The built-in schema: every variable of the contract (§3).
    pub fn builtin() -> &'static Schema {
        &BUILTIN
    }

    /// Reads a schema file.
    pub fn from_file(path: &Path) -> Result<Schema, SchemaError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read {
            path: origin.clone(),
            source,
        })?;
        Self::parse(&text, &origin)
    }

    /// Parses a schema from TOML; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Schema, SchemaError> {
        let tables: Tables = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| line_column(text, s.start))
                .unwrap_or((1, 1));
            SchemaError::Syntax {
                origin: origin.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        let mut rules = Vec::with_capacity(tables.0.len());
        for (name, raw) in tables.0 {
            let line = line_column(text, raw.span().start).0;
            let rule_error = |message: String| SchemaError::Rule {
                origin: origin.to_owned(),
                line,
                var: name.clone(),
                message,
            };
            let rule = build_rule(name.clone(), raw.into_inner()).map_err(rule_error)?;
            rules.push(rule);
        }
        Ok(Schema { rules })
    }

    /// The rules, in document order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule of one variable.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Checks an environment: every problem of every variable, in one pass.
    pub fn check(&self, env: &Env, mode: Mode) -> Report {
        let mut report = Report::default();
        for rule in &self.rules {
            let shown = check_one(rule, env, mode, &mut report);
            report.summary.0.push((rule.name.clone(), shown));
        }
        report
    }
}

/// Checks one variable, recording its value or its problem; returns how it is shown.
fn check_one(rule: &Rule, env: &Env, mode: Mode, report: &mut Report) -> String {
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
                report.problems.push(Problem {
                    var: rule.name.clone(),
                    problem: what,
                    kind: ProblemKind::Conflict,
                });
                return "invalid".to_owned();
            }
            Some(_) => {}
        }
    }
    let Some((value, source)) = found else {
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
        return "unset".to_owned();
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

fn record(rule: &Rule, report: &mut Report, parsed: Parsed, source: Source) -> String {
    let mut shown = match &parsed {
        Parsed::DatabaseUrl(u) => u.redacted().to_owned(),
        Parsed::DeployHookUrl(u) => u.redacted().to_owned(),
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

/// Turns a table into a rule, checking that it makes sense.
fn build_rule(name: String, raw: RawRule) -> Result<Rule, String> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !valid_name(&name) {
        return Err("is not a valid variable name (letters, digits and _)".into());
    }
    if let Some(bad) = raw.aliases.iter().find(|a| !valid_name(a)) {
        return Err(format!("alias {bad:?} is not a valid variable name"));
    }
    let kind = raw.kind;
    if kind == Kind::Enum && raw.values.is_empty() {
        return Err("kind \"enum\" needs a non-empty `values` list".into());
    }
    if kind == Kind::Regex && raw.pattern.is_none() {
        return Err("kind \"regex\" needs a `pattern`".into());
    }
    let numeric = matches!(kind, Kind::Integer | Kind::Port);
    if !numeric && (raw.min.is_some() || raw.max.is_some() || !raw.reserved.is_empty()) {
        return Err(format!(
            "`min`, `max` and `reserved` apply to kinds \"integer\" and \"port\", not \"{}\"",
            kind.name()
        ));
    }
    if let (Some(lo), Some(hi)) = (raw.min, raw.max)
        && lo > hi
    {
        return Err(format!("min {lo} is greater than max {hi}"));
    }
    if let (Some(lo), Some(hi)) = (raw.min_length, raw.max_length)
        && lo > hi
    {
        return Err(format!("min_length {lo} is greater than max_length {hi}"));
    }
    let pattern = match raw.pattern {
        Some(p) => {
            // The pattern is compiled alone first so that the error points into what the
            // user wrote; the regex crate's message spans lines, its last one says why.
            let bad = |e: regex::Error| {
                let e = e.to_string();
                let why = e.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
                format!(
                    "`pattern` is not a valid regular expression: {}",
                    why.trim().trim_start_matches("error: ")
                )
            };
            regex::Regex::new(&p).map_err(bad)?;
            Some(regex::Regex::new(&format!("^(?:{p})$")).map_err(bad)?)
        }
        None => None,
    };
    let scalar = |key: &str, v: Option<toml::Value>| -> Result<Option<String>, String> {
        match v {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(toml::Value::Integer(n)) => Ok(Some(n.to_string())),
            Some(toml::Value::Boolean(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(format!(
                "`{key}` must be a string, an integer or a boolean, not {}",
                other.type_str()
            )),
        }
    };
    let rule = Rule {
        required: raw.required,
        dev_required: raw.dev_required.unwrap_or(raw.required),
        secret: raw.secret,
        kind,
        aliases: raw.aliases,
        values: raw.values,
        default: scalar("default", raw.default)?,
        dev_default: scalar("dev_default", raw.dev_default)?,
        min: raw.min,
        max: raw.max,
        reserved: raw.reserved,
        min_length: raw.min_length,
        max_length: raw.max_length,
        expected: raw.expected,
        description: raw.description,
        pattern,
        name,
    };
    if rule.required && rule.default.is_some() {
        return Err("a required variable cannot have a `default` (use one or the other)".into());
    }
    // A default must pass its own rule, or a valid-looking environment would fail at run time.
    for (key, value) in [
        ("default", &rule.default),
        ("dev_default", &rule.dev_default),
    ] {
        if let Some(v) = value
            && let Err(reject) = rule.parse(v)
        {
            let shown = reject.into_problem(&rule).problem;
            return Err(format!("`{key}` is invalid: {shown}"));
        }
    }
    Ok(rule)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> Schema {
        Schema::parse(text, "test.toml").unwrap()
    }

    fn check(schema: &Schema, vars: &[(&str, &str)]) -> Report {
        schema.check(&vars.iter().copied().collect(), Mode::Serve)
    }

    #[test]
    fn the_builtin_schema_parses_and_requires_the_contracts_variables() {
        assert_eq!(
            builtin_required_variables(),
            [
                "DATABASE_URL",
                "PORT",
                "APP_ENV",
                "OPENAI_API_KEY",
                "TWILIO_ACCOUNT_SID",
                "TWILIO_AUTH_TOKEN",
                "RENDER_DEPLOY_HOOK_SECRET",
            ]
        );
    }

    #[test]
    fn the_example_values_of_the_original_documentation_are_placeholders() {
        for v in [
            "your_key",
            "your_secret",
            "your_sid",
            "your_token",
            "YOUR_API_KEY",
            "your-api-key",
            "changeme",
            "ChangeMe123",
            "xxx",
            "XXXXXX",
            "sk-xxxxxxxxxxxxxxxxxxxxxxxx",
            "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "<...>",
            "<your key>",
            "postgres://<user>:<password>@<host>/db",
            "postgres://user:your_password@host/db",
            "",
            "   ",
            "\t",
            "TODO",
        ] {
            assert!(is_placeholder(v), "{v:?} should be a placeholder");
        }
    }

    #[test]
    fn real_looking_values_are_not_placeholders() {
        for v in [
            "production",
            "10000",
            "sk-abcdefghijklmnopqrstuvwx",
            "AC0123456789abcdef0123456789abcdef",
            "postgres://app:pw@dpg-abc123-a.oregon-postgres.render.com/app",
            "https://yourdomain-notes.onrender.com",
            "0.0.0.0",
            "a < b and c > d",
            "x",
            "box",
        ] {
            assert!(!is_placeholder(v), "{v:?} should not be a placeholder");
        }
    }

    #[test]
    fn problems_come_in_schema_order_and_all_at_once() {
        let s = schema(
            r#"
            [ZED]
            required = true
            [ALPHA]
            kind = "integer"
            [MIDDLE]
            kind = "bool"
            "#,
        );
        let r = check(&s, &[("ALPHA", "x"), ("MIDDLE", "maybe")]);
        let vars: Vec<&str> = r.problems.iter().map(|p| p.var.as_str()).collect();
        assert_eq!(vars, ["ZED", "ALPHA", "MIDDLE"]);
        let names: Vec<&str> = r.summary.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["ZED", "ALPHA", "MIDDLE"]);
    }

    #[test]
    fn a_pattern_must_match_the_whole_value() {
        let s = schema("[SID]\nkind = \"regex\"\npattern = 'AC[0-9a-f]{4}'\n");
        assert!(check(&s, &[("SID", "AC12ab")]).is_ok());
        assert!(!check(&s, &[("SID", "AC12abc")]).is_ok());
        assert!(!check(&s, &[("SID", "xAC12ab")]).is_ok());
        assert_eq!(s.rule("SID").unwrap().pattern(), Some("AC[0-9a-f]{4}"));
    }

    #[test]
    fn a_secret_value_never_appears_in_a_problem() {
        let s = schema(
            r#"
            [TOKEN]
            secret = true
            kind = "regex"
            pattern = "[0-9]+"
            [NUM]
            secret = true
            kind = "integer"
            max = 5
            [KEY]
            secret = true
            min_length = 40
            "#,
        );
        let canary = "Canary7Secret";
        let r = check(
            &s,
            &[
                ("TOKEN", canary),
                ("NUM", "999999"),
                ("KEY", "Canary7Secret-short"),
            ],
        );
        assert_eq!(r.problems.len(), 3);
        for p in &r.problems {
            assert!(!p.to_string().contains("Canary7"), "{p}");
            assert!(!p.to_string().contains("999999"), "{p}");
        }
        let r = check(&s, &[("TOKEN", "12345"), ("KEY", &"k".repeat(40))]);
        assert_eq!(r.summary.get("TOKEN"), Some("set (secret)"));
        assert!(!format!("{r:?}").contains("12345"));
    }

    #[test]
    fn a_non_secret_value_is_quoted_escaped_so_it_cannot_forge_a_line() {
        let s = schema("[PORT]\nkind = \"port\"\n");
        let r = check(&s, &[("PORT", "1\nFAKE: forged line")]);
        let shown = r.problems[0].to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.starts_with("PORT: \"1\\nFAKE"), "{shown}");
    }

    #[test]
    fn a_long_value_is_cut_in_messages() {
        let s = schema("[N]\nkind = \"integer\"\n");
        let r = check(&s, &[("N", &"é".repeat(10_000))]);
        assert!(
            r.problems[0].problem.chars().count() < 120,
            "{}",
            r.problems[0]
        );
    }

    #[test]
    fn webhook_secrets_follow_the_contracts_lengths() {
        let s = schema("[S]\nkind = \"webhook-secret\"\nsecret = true\n");
        let b64 = |n: usize| {
            format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(vec![7u8; n])
            )
        };
        assert!(check(&s, &[("S", &b64(24))]).is_ok());
        assert!(check(&s, &[("S", &b64(64))]).is_ok());
        assert!(check(&s, &[("S", &"r".repeat(32))]).is_ok());
        for bad in [b64(16), b64(65), "r".repeat(31), "whsec_!!!".to_owned()] {
            let r = check(&s, &[("S", &bad)]);
            assert_eq!(r.problems.len(), 1, "{bad}");
            assert_eq!(r.problems[0].kind, ProblemKind::Invalid);
        }
    }

    #[test]
    fn booleans_accept_the_usual_spellings() {
        let s = schema("[B]\nkind = \"bool\"\n");
        for (v, want) in [("true", true), ("YES", true), ("1", true), ("off", false)] {
            let r = check(&s, &[("B", v)]);
            assert!(
                matches!(r.value("B"), Some(Parsed::Bool(b)) if *b == want),
                "{v}"
            );
        }
        assert!(!check(&s, &[("B", "maybe")]).is_ok());
    }

    #[test]
    fn an_alias_is_read_when_the_variable_is_unset_and_a_conflict_is_reported() {
        let s = schema(
            "[APP_ENV]\nrequired = true\nkind = \"enum\"\nvalues = [\"production\", \"testing\"]\naliases = [\"FLASK_ENV\"]\n",
        );
        let r = check(&s, &[("FLASK_ENV", "production")]);
        assert!(r.is_ok());
        assert_eq!(
            r.source("APP_ENV"),
            Some(&Source::Alias("FLASK_ENV".into()))
        );
        let r = check(&s, &[("FLASK_ENV", "prod")]);
        assert_eq!(r.problems[0].var, "FLASK_ENV");
        let r = check(&s, &[("APP_ENV", "production"), ("FLASK_ENV", "testing")]);
        assert_eq!(r.problems[0].kind, ProblemKind::Conflict);
        let r = check(&s, &[("APP_ENV", "testing"), ("FLASK_ENV", "testing")]);
        assert!(r.is_ok());
        let r = check(&s, &[]);
        assert!(
            r.problems[0].problem.contains("nor FLASK_ENV"),
            "{}",
            r.problems[0]
        );
    }

    #[test]
    fn dev_defaults_and_dev_optional_variables_apply_only_under_dev() {
        let s = schema(
            "[PORT]\nrequired = true\nkind = \"port\"\ndev_default = 10000\n[KEY]\nrequired = true\ndev_required = false\nsecret = true\n",
        );
        let serve = s.check(&Env::default(), Mode::Serve);
        assert_eq!(serve.problems.len(), 2);
        let dev = s.check(&Env::default(), Mode::Dev);
        assert!(dev.is_ok(), "{:?}", dev.problems);
        assert!(matches!(dev.value("PORT"), Some(Parsed::Port(10000))));
        assert_eq!(dev.warnings.len(), 1);
        assert_eq!(dev.warnings[0].var, "KEY");
    }

    #[test]
    fn a_non_utf8_value_is_a_problem_not_a_panic() {
        use std::os::unix::ffi::OsStringExt;
        let env = Env::from_os([(
            OsString::from("PORT"),
            OsString::from_vec(vec![0x31, 0xff, 0xfe]),
        )]);
        let r = schema("[PORT]\nkind = \"port\"\n").check(&env, Mode::Serve);
        assert_eq!(r.problems[0].kind, ProblemKind::NotUtf8);
    }

    #[test]
    fn malformed_schemas_are_refused_with_their_position() {
        let cases = [
            ("[A]\nkind = \"colour\"\n", "schema test.toml:2:8:"),
            ("[A]\nrequierd = true\n", "schema test.toml:2:1:"),
            ("[A\n", "schema test.toml:1:"),
            ("A = 5\n", "schema test.toml:1:5:"),
            (
                "[A]\nkind = \"enum\"\n",
                "schema test.toml:1: A: kind \"enum\" needs",
            ),
            (
                "\n[B]\nkind = \"regex\"\n",
                "schema test.toml:2: B: kind \"regex\" needs",
            ),
            (
                "[A]\nkind = \"regex\"\npattern = \"(\"\n",
                "not a valid regular expression",
            ),
            (
                "[A]\nkind = \"port\"\ndefault = 70000\n",
                "`default` is invalid",
            ),
            (
                "[A]\nrequired = true\ndefault = \"x\"\n",
                "cannot have a `default`",
            ),
            (
                "[A]\nkind = \"bool\"\nmin = 1\n",
                "`min`, `max` and `reserved`",
            ),
            (
                "[A]\nkind = \"integer\"\nmin = 5\nmax = 1\n",
                "min 5 is greater",
            ),
            ("[\"A B\"]\n", "not a valid variable name"),
            (
                "[A]\ndefault = 1.5\n",
                "must be a string, an integer or a boolean",
            ),
        ];
        for (text, want) in cases {
            let err = Schema::parse(text, "test.toml").unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn an_empty_schema_accepts_any_environment() {
        let r = check(&schema(""), &[("ANYTHING", "your_key")]);
        assert!(r.is_ok());
    }

    #[test]
    fn extra_values_are_accepted_beside_the_kinds_own_form() {
        let s = schema("[MAX]\nkind = \"integer\"\nmin = 1\nvalues = [\"auto\"]\n");
        assert!(
            matches!(check(&s, &[("MAX", "auto")]).value("MAX"), Some(Parsed::Text(t)) if t == "auto")
        );
        assert!(matches!(
            check(&s, &[("MAX", "7")]).value("MAX"),
            Some(Parsed::Integer(7))
        ));
        let r = check(&s, &[("MAX", "0")]);
        assert!(
            r.problems[0]
                .problem
                .contains("expected auto, or an integer of at least 1"),
            "{}",
            r.problems[0]
        );
    }
}
