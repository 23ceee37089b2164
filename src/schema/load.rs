//! Reading a schema from TOML: tables become [`Rule`]s, every mistake named with its line.

use std::fmt;

use serde::Deserialize;

use super::{Kind, Rule, Schema};

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
    #[serde(default)]
    examples: Vec<String>,
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

impl Schema {
    /// Reads a schema file (`check-env --schema`).
    #[cfg(feature = "cli")]
    pub(crate) fn from_file(path: &std::path::Path) -> Result<Schema, SchemaError> {
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
}

/// Turns a table into a rule, checking that it makes sense.
fn build_rule(name: String, raw: RawRule) -> Result<Rule, String> {
    check_names(&name, &raw.aliases)?;
    check_keys_fit_the_kind(&raw)?;
    let pattern = raw.pattern.as_deref().map(compile_pattern).transpose()?;
    let rule = Rule {
        required: raw.required,
        dev_required: raw.dev_required.unwrap_or(raw.required),
        secret: raw.secret,
        kind: raw.kind,
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
        examples: raw.examples,
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

/// The variable's name and its aliases are valid variable names.
fn check_names(name: &str, aliases: &[String]) -> Result<(), String> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !valid_name(name) {
        return Err("is not a valid variable name (letters, digits and _)".into());
    }
    if let Some(bad) = aliases.iter().find(|a| !valid_name(a)) {
        return Err(format!("alias {bad:?} is not a valid variable name"));
    }
    Ok(())
}

/// The keys given make sense for the kind, and the bounds are in order.
fn check_keys_fit_the_kind(raw: &RawRule) -> Result<(), String> {
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
    Ok(())
}

/// The pattern, anchored to match a whole value.
fn compile_pattern(p: &str) -> Result<regex::Regex, String> {
    // The pattern is compiled alone first so that the error points into what the user wrote;
    // the regex crate's message spans lines, its last one says why.
    let bad = |e: regex::Error| {
        let e = e.to_string();
        let why = e.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        format!(
            "`pattern` is not a valid regular expression: {}",
            why.trim().trim_start_matches("error: ")
        )
    };
    regex::Regex::new(p).map_err(bad)?;
    regex::Regex::new(&format!("^(?:{p})$")).map_err(bad)
}

/// A `default` or `dev_default` as text.
fn scalar(key: &str, v: Option<toml::Value>) -> Result<Option<String>, String> {
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
