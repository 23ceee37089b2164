//! What a variable must look like: the rule of one variable, how it parses a value, and the
//! words of a refusal (never a secret value, a non-secret one quoted and cut).

use std::net::IpAddr;

use base64::Engine;
use secrecy::SecretString;
use serde::Deserialize;

use super::placeholder::is_placeholder;
use super::{Mode, Parsed, Problem, ProblemKind};
use crate::database_url::DatabaseUrl;
use crate::render_api::credentials::ApiBase;
use crate::render_api::deploy_hook::DeployHookUrl;
use crate::signature::WebhookSecret;

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
    /// The base of Render's REST API ([`ApiBase`]): `https://`, or `http://` to loopback only.
    RenderApiUrl,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
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
            Kind::RenderApiUrl => "render-api-url",
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
    /// Example values from documentation (`postgresql://user:pass@host:5432/db`), refused as
    /// placeholders: a value copied from an example must never reach production.
    pub examples: Vec<String>,
    pub(super) pattern: Option<regex::Regex>,
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
    pub(crate) fn default_for(&self, mode: Mode) -> Option<&str> {
        match mode {
            Mode::Serve => self.default.as_deref(),
            Mode::Dev => self.dev_default.as_deref().or(self.default.as_deref()),
        }
    }

    /// Whether the variable must be set under `mode`.
    pub(crate) fn required_in(&self, mode: Mode) -> bool {
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
            Kind::RenderApiUrl => {
                "https://api.render.com/v1, or http:// to a loopback address".to_owned()
            }
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

    pub(super) fn bounds(&self) -> (Option<i64>, Option<i64>) {
        match self.kind {
            Kind::Port => (
                Some(self.min.unwrap_or(1).max(1)),
                Some(self.max.unwrap_or(65535).min(65535)),
            ),
            _ => (self.min, self.max),
        }
    }

    /// Parses one value (already known to be set) by this rule.
    pub(super) fn parse(&self, value: &str) -> Result<Parsed, Reject> {
        if value.trim().is_empty() {
            return Err(Reject::new(ProblemKind::Empty, "is empty"));
        }
        if is_placeholder(value) {
            return Err(Reject::new(
                ProblemKind::Placeholder,
                self.quoted(value, "is a placeholder, not a real value"),
            ));
        }
        if self.examples.iter().any(|example| example == value) {
            return Err(Reject::new(
                ProblemKind::Placeholder,
                self.quoted(value, "is the documentation's example, not a real value"),
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
            Kind::RenderApiUrl => ApiBase::parse(value)
                .map(Parsed::RenderApiUrl)
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
        // Only the length is needed; the decoded key bytes are wiped at once.
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(zeroize::Zeroizing::new)
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
pub(super) fn quote(value: &str) -> String {
    const MAX: usize = 40;
    let mut cut: String = value.chars().take(MAX).collect();
    if value.chars().nth(MAX).is_some() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// Why a value was refused, before the variable's name is attached.
pub(super) struct Reject {
    kind: ProblemKind,
    what: String,
    /// `what` already ends with its own `(expected …)`.
    complete: bool,
}

impl Reject {
    pub(super) fn new(kind: ProblemKind, what: impl Into<String>) -> Self {
        Self {
            kind,
            what: what.into(),
            complete: false,
        }
    }
    pub(super) fn complete(kind: ProblemKind, what: String) -> Self {
        Self {
            kind,
            what,
            complete: true,
        }
    }
    pub(super) fn into_problem(self, rule: &Rule) -> Problem {
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
