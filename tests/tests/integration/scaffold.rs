//! `txform plugin new`: every template's crate builds, passes its own test as generated, and its
//! sample pipeline gives its sample expectation under `txform test`. The crates build offline in
//! debug into `target/scaffold-test` (shared by the runs, so only the first one compiles the
//! dependencies); `cargo build --release` builds the same code.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use txform_tests::process::{target_dir, workspace_dir};
use txform_tests::{run_command, TestEnv};

const TIMEOUT: Duration = Duration::from_secs(30);

fn cargo(crate_dir: &Path, args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(args)
        .arg("--offline")
        .current_dir(crate_dir)
        .env(
            "CARGO_TARGET_DIR",
            workspace_dir().join("target/scaffold-test"),
        )
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "cargo {args:?} in {}:\n{}",
        crate_dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_template_builds_passes_its_test_and_its_sample() {
    let env = TestEnv::offline("scaffold");
    let dir = env.path("plugins");
    std::fs::create_dir_all(&dir).expect("create the plugins directory");
    for template in ["map", "filter", "flat-map", "router"] {
        let name = format!("sample-{template}");
        let result = run_command(
            &[
                OsStr::new("plugin"),
                OsStr::new("new"),
                OsStr::new(&name),
                OsStr::new("--template"),
                OsStr::new(template),
                OsStr::new("--dir"),
                dir.as_os_str(),
            ],
            TIMEOUT,
        );
        assert_eq!(result.code(), Some(0), "{}", result.stderr);
        let crate_dir = dir.join(&name);
        cargo(&crate_dir, &["test", "--quiet"]);
        cargo(&crate_dir, &["build", "--quiet"]);

        // The sample pipeline names target/release/<lib>.so, as `cargo build --release` writes it.
        let lib = format!("lib{}.so", name.replace('-', "_"));
        let release = crate_dir.join("target/release");
        std::fs::create_dir_all(&release).expect("create target/release");
        let built = workspace_dir()
            .join("target/scaffold-test/debug")
            .join(&lib);
        std::fs::copy(&built, release.join(&lib)).expect("copy the built library");
        let sample = crate_dir.join("sample");
        let result = run_command(
            &[
                OsStr::new("test"),
                sample.join("pipeline.toml").as_os_str(),
                OsStr::new("--input"),
                sample.join("records.jsonl").as_os_str(),
                OsStr::new("--expect"),
                sample.join("expected.jsonl").as_os_str(),
            ],
            TIMEOUT,
        );
        let lines = std::fs::read_to_string(sample.join("expected.jsonl"))
            .expect("read the expectation")
            .lines()
            .count();
        assert_eq!(
            result.code(),
            Some(0),
            "{template}: {}{}",
            result.stdout,
            result.stderr
        );
        assert_eq!(result.stdout, format!("ok: {lines} lines as expected\n"));
    }
    // The scaffolding never writes into the workspace's own build.
    assert!(!target_dir().join("libsample_map.so").exists());
}

#[test]
fn a_bad_name_or_an_existing_directory_is_refused() {
    let env = TestEnv::offline("scaffold-bad");
    let dir = env.path("plugins");
    std::fs::create_dir_all(dir.join("taken")).expect("create a directory");
    for (name, message) in [
        (
            "Bad Name",
            "txform: plugin name `Bad Name`: use lowercase ASCII letters, digits, `-` and `_`, starting with a letter".to_string(),
        ),
        ("taken", format!("txform: {} already exists", dir.join("taken").display())),
    ] {
        let result = run_command(
            &[
                OsStr::new("plugin"),
                OsStr::new("new"),
                OsStr::new(name),
                OsStr::new("--dir"),
                dir.as_os_str(),
            ],
            TIMEOUT,
        );
        assert_eq!(result.code(), Some(2));
        assert_eq!(result.messages(), [message.as_str()]);
    }
}
