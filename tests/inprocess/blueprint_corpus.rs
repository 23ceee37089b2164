//! The Blueprint corpus: every `tests/blueprints/NAME.yaml` must produce exactly the lines of
//! `NAME.expected` (empty for a clean file), and every file that Render's JSON Schema rejects must be
//! rejected by `blueprint check` too.
//!
//! After changing a message on purpose, `BLESS=1 cargo nextest run blueprint_corpus` rewrites the
//! expected files; review the diff before committing it.

use std::path::{Path, PathBuf};

use render_deploy::blueprint::{self, Severity};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/blueprints");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/blueprints exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn output(file: &Path) -> String {
    let name = Path::new(file.file_name().expect("a file name"));
    let findings = blueprint::check_file(file).expect("corpus files are readable");
    findings
        .iter()
        .map(|f| format!("{}\n", f.display(name)))
        .collect()
}

#[test]
fn every_corpus_blueprint_produces_exactly_its_expected_findings() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for file in corpus() {
        let expected_file = file.with_extension("expected");
        let actual = output(&file);
        if bless {
            std::fs::write(&expected_file, &actual).expect("writable");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file)
            .unwrap_or_else(|_| panic!("{} has no .expected file", file.display()));
        if actual != expected {
            failures.push(format!(
                "{}\n--- expected\n{expected}--- actual\n{actual}",
                file.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_corpus_is_large_and_covers_valid_and_invalid_files() {
    let files = corpus();
    assert!(files.len() >= 30, "only {} blueprints", files.len());
    let mut clean = 0;
    let mut warnings_only = 0;
    let mut errors = 0;
    for file in &files {
        let findings = blueprint::check_file(file).expect("readable");
        if findings.is_empty() {
            clean += 1;
        } else if blueprint::has_errors(&findings) {
            errors += 1;
        } else {
            warnings_only += 1;
        }
    }
    assert!(
        clean >= 5 && warnings_only >= 3 && errors >= 20,
        "{clean} {warnings_only} {errors}"
    );
}

#[test]
fn files_named_valid_are_clean_and_files_named_warn_have_only_warnings() {
    for file in corpus() {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let findings = blueprint::check_file(&file).expect("readable");
        if name.starts_with("valid-") {
            assert!(findings.is_empty(), "{name}: {findings:?}");
        }
        if name.starts_with("warn-") {
            assert!(!findings.is_empty(), "{name} has no finding");
            assert!(
                findings.iter().all(|f| f.severity == Severity::Warning),
                "{name}: {findings:?}"
            );
        }
    }
}

#[test]
fn the_original_python_example_is_flagged_for_env_python() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/blueprints/original-python-example.yaml");
    let findings = blueprint::check_file(&file).expect("readable");
    assert!(blueprint::has_errors(&findings));
    assert!(
        findings
            .iter()
            .any(|f| f.severity == Severity::Error && f.message.contains("use `runtime: python`")),
        "{findings:?}"
    );
}

/// Render's published JSON Schema for `render.yaml`, kept in the repository (`tests/data`) so
/// that the oracle is always there.
fn schema() -> Option<serde_json::Value> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/render-blueprint-schema.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).expect("the schema is JSON")),
        Err(_) => {
            crate::support::prerequisite_missing(
                &path.display().to_string(),
                "restore tests/data from git",
            );
            None
        }
    }
}

#[test]
fn every_corpus_blueprint_that_renders_schema_rejects_is_rejected_by_check() {
    let Some(schema) = schema() else {
        return;
    };
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let mut rejected_by_schema = 0;
    for file in corpus() {
        let text = std::fs::read_to_string(&file).expect("readable");
        // Files that are not YAML at all are outside the schema's reach (and are errors anyway).
        let Ok(document) = blueprint::yaml::parse(&text) else {
            continue;
        };
        let json = document.root.to_json();
        let findings = blueprint::check_file(&file).expect("readable");
        if !validator.is_valid(&json) {
            rejected_by_schema += 1;
            let reasons: Vec<String> = validator
                .iter_errors(&json)
                .map(|e| e.to_string())
                .collect();
            assert!(
                blueprint::has_errors(&findings),
                "{}: the schema rejects it ({reasons:?}) but check finds no error",
                file.display()
            );
        }
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("valid-") || name.starts_with("warn-") {
            // Our clean files must be clean for Render too, or the corpus teaches the wrong thing.
            let reasons: Vec<String> = validator
                .iter_errors(&json)
                .map(|e| e.to_string())
                .collect();
            assert!(
                reasons.is_empty(),
                "{name}: the schema rejects it: {reasons:?}"
            );
        }
    }
    assert!(
        rejected_by_schema >= 10,
        "the schema rejects only {rejected_by_schema} files"
    );
}

/// Every way of breaking one spot of a document: an unknown key in each mapping, each key removed,
/// each scalar replaced by values that sit on and beyond the specification's limits.
fn mutations(value: &serde_json::Value) -> Vec<serde_json::Value> {
    use serde_json::{Value, json};
    let replacements = [
        json!(-1),
        json!(0),
        json!(1),
        json!(91),
        json!(301),
        json!("bogus"),
        json!(true),
        Value::Null,
        json!([]),
        json!({}),
    ];
    let mut out = Vec::new();
    match value {
        Value::Object(map) => {
            let mut with_unknown = map.clone();
            with_unknown.insert("zzUnknownField".into(), json!(1));
            out.push(Value::Object(with_unknown));
            for (key, child) in map {
                let mut without = map.clone();
                without.remove(key);
                out.push(Value::Object(without));
                for mutated in mutations(child) {
                    let mut copy = map.clone();
                    copy.insert(key.clone(), mutated);
                    out.push(Value::Object(copy));
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                for mutated in mutations(child) {
                    let mut copy = items.clone();
                    copy[i] = mutated;
                    out.push(Value::Array(copy));
                }
            }
        }
        _ => out.extend(replacements.iter().filter(|r| *r != value).cloned()),
    }
    out
}

#[test]
fn every_mutation_of_a_valid_blueprint_that_the_schema_rejects_is_rejected_by_check() {
    let Some(schema) = schema() else {
        return;
    };
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let mut tried = 0;
    let mut misses = Vec::new();
    for file in corpus() {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !name.starts_with("valid-") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        let json = blueprint::yaml::parse(&text)
            .expect("valid YAML")
            .root
            .to_json();
        for mutated in mutations(&json) {
            if validator.is_valid(&mutated) {
                continue;
            }
            tried += 1;
            // JSON is YAML: the mutated document goes through the same reader as any file.
            let yaml = serde_json::to_string_pretty(&mutated).expect("serialisable");
            if !blueprint::has_errors(&blueprint::check_source(&yaml)) {
                let reason = validator
                    .iter_errors(&mutated)
                    .next()
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .unwrap_or_default();
                misses.push(format!("{name}: {reason}"));
            }
        }
    }
    println!("{tried} mutations rejected by the schema, all rejected by check");
    assert!(tried > 1000, "only {tried} rejected mutations");
    misses.sort();
    misses.dedup();
    assert!(
        misses.is_empty(),
        "{} misses:\n{}",
        misses.len(),
        misses.join("\n")
    );
}
