//! Shared by the `rehearse` tests: where the fixture service is.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The fixture service (`examples/rehearse_fixture.rs`).
///
/// `cargo test` and `cargo nextest run` build the examples with the tests, beside this test's
/// executable (`target/<profile>/deps/..` → `target/<profile>/examples/`). A run limited to
/// some test targets (`--test rehearse`) does not, so then it is built here, once.
pub fn fixture() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test runs from target/<profile>/deps");
        let path = profile_dir.join("examples").join("rehearse_fixture");
        if !path.exists() {
            build_fixture(profile_dir);
        }
        assert!(
            path.exists(),
            "{} is missing: build it with `cargo build --example rehearse_fixture`",
            path.display()
        );
        path
    })
    .clone()
}

fn build_fixture(profile_dir: &std::path::Path) {
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let mut cargo = std::process::Command::new(env!("CARGO"));
    // The variables cargo sets for this test would look, to dependencies' build scripts that
    // watch them (ring's does), like a change, and rebuild them here and again afterwards.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_this_test = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*name)
            || name.starts_with("NEXTEST");
        if set_for_this_test {
            cargo.env_remove(&*name);
        }
    }
    cargo
        .args([
            "build",
            "--example",
            "rehearse_fixture",
            "--profile",
            profile,
        ])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    if let Some(target_dir) = profile_dir.parent() {
        cargo.arg("--target-dir").arg(target_dir);
    }
    let status = cargo.status().expect("run cargo to build the fixture");
    assert!(status.success(), "building the fixture failed: {status}");
}
