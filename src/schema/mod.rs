//! Variable rules as data (built-in or a user's TOML file) and the engine that applies them.
//!
//! A [`Schema`] is a list of [`Rule`]s, one per environment variable, read from TOML: the
//! built-in one (`src/builtin_schema.toml`, the contract's table) or a user's file given to
//! `check-env --schema`. Both go through the same parser and the same engine, so there is one
//! mechanism: [`Schema::check`] reads an [`Env`] and returns a [`Report`] with every problem at
//! once, a redacted [`Summary`], and the parsed values that configuration turns into types.
//!
//! Two promises hold for every message this module writes: a value of a `secret` variable is
//! never included, not even in part (nor its length), and a non-secret value is quoted escaped
//! and truncated, so that hostile input cannot forge extra output lines.
//!
//! Its parts, one job each:
//! - `rule`: what a variable must look like ([`Kind`], [`Rule`]) and the messages of a refusal;
//! - `placeholder`: recognising example values ([`is_placeholder`]);
//! - `env`: the environment to check ([`Env`]), non-UTF-8 values kept;
//! - `check`: the engine, one variable at a time;
//! - `report`: what a check returns ([`Report`], [`Problem`], [`Summary`], [`Parsed`]);
//! - `load`: reading a schema from TOML ([`Schema::parse`], [`SchemaError`]).

mod check;
mod env;
mod load;
mod placeholder;
mod report;
mod rule;
#[cfg(test)]
mod tests;

use std::sync::LazyLock;

pub use env::Env;
pub use load::SchemaError;
pub use placeholder::is_placeholder;
pub use report::{Parsed, Problem, ProblemKind, Report, Source, Summary};
pub use rule::{Kind, Rule};

/// The built-in schema's TOML source (every variable of the contract, §3).
pub(crate) const BUILTIN_SCHEMA_TOML: &str = include_str!("../builtin_schema.toml");

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

/// A list of variable rules.
#[derive(Debug, Clone)]
pub struct Schema {
    pub(super) rules: Vec<Rule>,
}

impl Schema {
    /// The built-in schema: every variable of the contract (§3).
    pub fn builtin() -> &'static Schema {
        &BUILTIN
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
            let shown = check::check_one(rule, env, mode, &mut report);
            report.summary.0.push((rule.name.clone(), shown));
        }
        report
    }
}
