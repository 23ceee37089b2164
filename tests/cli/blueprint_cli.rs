//! `render-deploy blueprint check|init` end to end with the real binary, the repository's own
//! `render.yaml`, `init`'s round trip, and YAML errors that must never panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use render_deploy::blueprint::{self, init};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_render-deploy"))
}

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/blueprints")
        .join(name)
}

fn run(args: &[&str], dir: &Path) -> Output {
    bin()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn check_text(text: &[u8]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("render.yaml"), text).expect("write");
    run(&["blueprint", "check"], dir.path())
}

#[test]
fn a_clean_blueprint_exits_0_with_nothing_on_stdout() {
    let path = corpus("valid-full-stack.yaml");
    let out = run(
        &["blueprint", "check", path.to_str().expect("utf-8")],
        Path::new("."),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("no problems found"));
}

#[test]
fn errors_exit_1_and_are_printed_as_path_line_column() {
    let dir = corpus("");
    let out = run(
        &["blueprint", "check", "original-python-example.yaml"],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("original-python-example.yaml:5:5: error: `env` is deprecated"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("2 errors, 0 warnings"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn warnings_alone_are_printed_but_exit_0() {
    let dir = corpus("");
    let out = run(
        &["blueprint", "check", "warn-budget-autoscaling.yaml"],
        &dir,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).starts_with(
            "warn-budget-autoscaling.yaml:31:11: warning: a deploy could open 100 connections"
        ),
        "{}",
        stdout(&out)
    );
}

#[test]
fn check_reads_render_yaml_in_the_current_directory_by_default() {
    let out = check_text(b"services:\n  - type: worker\n    name: w\n    env: go\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("render.yaml:4:5: error: `env` is deprecated"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_missing_file_is_a_clear_error_with_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["blueprint", "check", "absent.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read absent.yaml"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("No such file"), "{}", stderr(&out));
}

#[test]
fn init_writes_a_blueprint_that_check_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["blueprint", "init", "--name", "hooks: #1"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let written = std::fs::read_to_string(dir.path().join("render.yaml")).expect("written");
    assert!(written.contains("name: \"hooks: #1\""), "{written}");
    assert!(written.contains("healthCheckPath: /health"));
    assert!(
        written.contains("preDeployCommand: ./target/release/render-deploy check-env --connect")
    );
    let out = run(&["blueprint", "check"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn init_refuses_to_overwrite_an_existing_file_unless_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("blueprint.yaml");
    std::fs::write(&target, "keep me\n").expect("write");
    let out = run(
        &["blueprint", "init", "--output", "blueprint.yaml"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep me\n");

    let out = run(
        &["blueprint", "init", "--output", "blueprint.yaml", "--force"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let written = std::fs::read_to_string(&target).expect("read");
    assert_eq!(
        written,
        init::render_yaml(init::DEFAULT_NAME).expect("renders")
    );
}

#[test]
fn the_repositorys_render_yaml_is_what_init_writes_and_passes_check() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("render.yaml");
    let text = std::fs::read_to_string(&path).expect("render.yaml at the repository root");
    assert_eq!(
        text,
        init::render_yaml(init::DEFAULT_NAME).expect("renders"),
        "regenerate it with `render-deploy blueprint init --force`"
    );
    let findings = blueprint::check_file(&path).expect("readable");
    assert!(findings.is_empty(), "{findings:?}");
}

/// A small deterministic generator, so that the property test needs no extra crate and replays.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn whatever_name_init_accepts_it_writes_a_blueprint_that_passes_check_and_keeps_the_name() {
    let mut names: Vec<String> = [
        "api",
        "my app",
        "a:b",
        "#hash",
        "- dash",
        "quote\"d",
        "back\\slash",
        "ünïcødé",
        "日本語",
        "😀",
        "   padded  ",
        "yes",
        "null",
        "~",
        "123",
        "0x1F",
        "{x}",
        "[y]",
        "*alias",
        "&anchor",
        "!tag",
        "%percent",
        "@at",
        "`tick`",
        "a, b",
        "key: value",
        "'single'",
        "--- doc",
        "\u{2028}sep",
        "\u{feff}bom",
        "x".repeat(500).as_str(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let pool: Vec<char> = " -_:#'\"\\{}[]&*!|>%@`,?aZ9é日😀\u{2028}\u{a0}"
        .chars()
        .collect();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..300 {
        let len = 1 + (rng.next() % 24) as usize;
        names.push(
            (0..len)
                .map(|_| pool[(rng.next() % pool.len() as u64) as usize])
                .collect(),
        );
    }
    for name in names {
        let text = match init::render_yaml(&name) {
            Ok(text) => text,
            Err(e) => {
                assert!(name.trim().is_empty(), "{name:?} refused: {e}");
                continue;
            }
        };
        let findings = blueprint::check_source(&text);
        assert!(findings.is_empty(), "{name:?}: {findings:?}\n{text}");
        let root = blueprint::yaml::parse(&text).expect("parses").root;
        let service = &root
            .get("services")
            .and_then(|s| s.as_seq())
            .expect("services")[0];
        assert_eq!(
            service.get("name").and_then(|n| n.as_str()),
            Some(name.as_str())
        );
    }
}

#[test]
fn init_refuses_an_empty_name_or_a_control_character() {
    for name in ["", "   ", "a\nb", "tab\there", "\u{85}"] {
        assert!(init::render_yaml(name).is_err(), "{name:?}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["blueprint", "init", "--name", ""], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid service name"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("render.yaml").exists());
}

/// Every YAML error is one finding with a position, exit code 1, and no panic.
fn assert_clear_error(text: &[u8], line: usize, needle: &str) {
    let out = check_text(text);
    let printed = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let prefix = format!("render.yaml:{line}:");
    assert!(
        printed.starts_with(&prefix),
        "expected line {line}: {printed}"
    );
    assert!(printed.contains(": error: "), "{printed}");
    assert!(printed.contains(needle), "expected {needle:?} in {printed}");
}

#[test]
fn yaml_errors_are_reported_with_a_position_and_never_panic() {
    assert_clear_error(
        b"services:\n  - type: web\n\tname: x\n",
        3,
        "tab in the indentation",
    );
    assert_clear_error(
        b"services:\n  - type: web\n    name: a\n   runtime: go\n",
        4,
        "indentation",
    );
    assert_clear_error(
        b"databases:\n  - name: a\n    name: b\n",
        3,
        "duplicate key `name`",
    );
    assert_clear_error(b"just a string\n", 1, "must be a mapping");
    assert_clear_error(b"- a\n- b\n", 1, "must be a mapping");
    assert_clear_error(b"", 1, "the file is empty");
    assert_clear_error(b"\n\n# only comments\n", 1, "the file is empty");
    assert_clear_error(b"services: [\n", 2, "YAML syntax error");
    assert_clear_error(b"a: \"unterminated\n", 1, "unexpected end of stream");
    assert_clear_error(b"services: []\n\xff\xfe\n", 2, "not valid UTF-8");
    assert_clear_error(b"a: *nowhere\n", 1, "YAML syntax error");
}

#[test]
fn a_ten_megabyte_file_is_refused_with_a_message_naming_the_limit() {
    let mut text = b"services:\n".to_vec();
    while text.len() < 10 * 1024 * 1024 {
        text.extend_from_slice(b"  - type: worker\n    name: filler\n    runtime: go\n");
    }
    let out = check_text(&text);
    assert_eq!(out.status.code(), Some(1));
    let printed = stdout(&out);
    assert!(
        printed.starts_with("render.yaml:1:1: error: the file is "),
        "{printed}"
    );
    assert!(
        printed.contains("at most 1048576 bytes (1 MiB)"),
        "{printed}"
    );
}

#[test]
fn deeply_nested_input_is_refused_without_overflowing_the_stack() {
    let flow = "a: ".to_owned() + &"[".repeat(200_000);
    assert_clear_error(flow.as_bytes(), 1, "nesting deeper than 64 levels");
    let flow_maps = "a: ".to_owned() + &"{b: ".repeat(50_000);
    assert_clear_error(flow_maps.as_bytes(), 1, "nesting deeper than 64 levels");
    let mut block = String::new();
    for depth in 0..1000 {
        block.push_str(&"  ".repeat(depth));
        block.push_str("k:\n");
    }
    assert_clear_error(block.as_bytes(), 65, "nesting deeper than 64 levels");
    let mut list = String::new();
    for depth in 0..1000 {
        list.push_str(&"  ".repeat(depth));
        list.push_str("-\n");
    }
    assert_clear_error(list.as_bytes(), 65, "nesting deeper than 64 levels");
}

#[test]
fn every_truncation_of_a_valid_blueprint_is_checked_without_a_panic() {
    let text = init::render_yaml("api").expect("renders");
    for cut in (0..text.len()).filter(|i| text.is_char_boundary(*i)) {
        let findings = blueprint::check_source(&text[..cut]);
        for f in &findings {
            assert!(f.pos.line >= 1 && f.pos.column >= 1, "{cut}: {f:?}");
        }
    }
}

#[test]
fn a_file_near_the_size_limit_with_thousands_of_resources_is_checked_completely() {
    // Guards the rules against quadratic walks: every lookup between resources is by name.
    let mut text = String::from("services:\n");
    for i in 0..3000 {
        text.push_str(&format!(
            "  - type: worker\n    name: s{i}\n    runtime: go\n    envVars:\n      - key: DATABASE_URL\n        fromDatabase:\n          name: missing{i}\n          property: host\n      - fromGroup: g{i}\n"
        ));
    }
    text.push_str("envVarGroups:\n");
    for i in 0..3000 {
        text.push_str(&format!(
            "  - name: g{i}\n    envVars: [{{key: A, value: b}}]\n"
        ));
    }
    assert!(text.len() < blueprint::yaml::MAX_BYTES);
    let findings = blueprint::check_source(&text);
    assert_eq!(findings.len(), 3000);
    assert!(
        findings[0]
            .message
            .contains("(the file declares no database)"),
        "{:?}",
        findings[0]
    );
}
