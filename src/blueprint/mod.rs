//! Blueprints: checking and writing Render's `render.yaml` (`render-deploy blueprint check|init`,
//! contract §2 and §7).
//!
//! - [`yaml`]: the file read into a tree where every key and value knows its line and column,
//!   within bounds on size, depth and alias expansion.
//! - `spec`: Render's Blueprint specification as tables (fields, required ones, enumerations,
//!   ranges, deprecations), each field group declared once.
//! - `structure`: the structural check of a document against those tables.
//! - `rules`: references between resources, unique names, health checks, the variables that a
//!   service running render-deploy needs.
//! - [`budget`]: the connection-budget lint.
//! - [`init`]: the Blueprint of this service.

use std::fmt;
use std::io::Read;
use std::path::Path;

pub mod budget;
pub mod init;
mod rules;
mod spec;
mod structure;
pub mod yaml;

pub use yaml::Pos;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Render would refuse the file, or the service would not start: exit code 1.
    Error,
    /// Accepted by Render but worth fixing (deprecated field, connection budget).
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a Blueprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where: the key or value at fault.
    pub pos: Pos,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl Finding {
    /// The finding as printed: `PATH:LINE:COLUMN: error: message`.
    pub fn display<'a>(&'a self, path: &'a Path) -> impl fmt::Display + 'a {
        struct Line<'a>(&'a Finding, &'a Path);
        impl fmt::Display for Line<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let Line(finding, path) = self;
                write!(
                    f,
                    "{}:{}:{}: {}: {}",
                    path.display(),
                    finding.pos.line,
                    finding.pos.column,
                    finding.severity,
                    finding.message
                )
            }
        }
        Line(self, path)
    }
}

/// Why a Blueprint could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file is missing or unreadable.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Checks a Blueprint's text; the findings come sorted by position.
///
/// ```
/// use render_deploy::blueprint::{Severity, check_source};
///
/// let findings = check_source(
///     "services:\n  - type: worker\n    name: jobs\n    env: python\n",
/// );
/// assert_eq!(findings.len(), 1);
/// assert_eq!((findings[0].pos.line, findings[0].pos.column), (4, 5));
/// assert_eq!(findings[0].severity, Severity::Error);
/// assert!(findings[0].message.contains("use `runtime: python`"));
/// ```
pub fn check_source(source: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    match yaml::parse(source) {
        Err(e) => findings.push(Finding {
            pos: e.pos,
            severity: Severity::Error,
            message: e.message,
        }),
        Ok(document) => {
            findings.extend(document.problems.into_iter().map(|p| Finding {
                pos: p.pos,
                severity: Severity::Error,
                message: p.message,
            }));
            let root = &document.root;
            structure::Structure {
                findings: &mut findings,
            }
            .root(root);
            if root.as_map().is_some() {
                rules::check(root, &mut findings);
                budget::check(root, &mut findings);
            }
        }
    }
    // Stable: findings at one position keep the order in which the rules found them.
    findings.sort_by_key(|f| f.pos);
    findings
}

/// Reads and checks a Blueprint file. A file over [`yaml::MAX_BYTES`] or not UTF-8 is a finding;
/// a file that cannot be read is an error.
pub fn check_file(path: &Path) -> Result<Vec<Finding>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    // Read one byte past the cap, never the whole of a huge file.
    file.take(yaml::MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > yaml::MAX_BYTES {
        let len = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Ok(vec![Finding {
            pos: Pos::START,
            severity: Severity::Error,
            message: yaml::too_large(usize::try_from(len).unwrap_or(usize::MAX)),
        }]);
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(check_source(&text)),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            // `valid` is valid UTF-8 by construction.
            let before = std::str::from_utf8(valid).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Ok(vec![Finding {
                pos: Pos { line, column },
                severity: Severity::Error,
                message: "the file is not valid UTF-8 text".into(),
            }])
        }
    }
}

/// Whether any finding is an error (the exit code of `blueprint check`).
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}
