//! `infra/setup.sh` checks its tools first and stops with one sentence naming the one missing
//! or too old: run with a PATH holding only what each case leaves (the real tools, or a stand-in
//! that reports an old version), before it installs anything.

use std::path::PathBuf;
use std::process::Command;

const TOOLS: [&str; 9] = [
    "bash", "dirname", "id", "cargo", "node", "npm", "g++", "curl", "python3",
];

fn setup_script() -> PathBuf {
    testkit::repo_dir().join("infra/setup.sh")
}

fn real(tool: &str) -> PathBuf {
    let out = Command::new("bash")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!path.is_empty(), "{tool} is needed to run this test");
    PathBuf::from(path)
}

/// Runs setup.sh with a PATH of the real tools but `hidden`, and `fakes` (name, version line)
/// standing in; its exit code and standard error.
fn run(hidden: &str, fakes: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    for tool in TOOLS.iter().filter(|t| **t != hidden) {
        let path = dir.path().join(tool);
        match fakes.iter().find(|(name, _)| name == tool) {
            Some((_, version)) => {
                let script = format!("#!/bin/sh\necho '{version}'\n");
                std::fs::write(&path, script).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            None => std::os::unix::fs::symlink(real(tool), &path).unwrap(),
        }
    }
    let mut cmd = Command::new(real("bash"));
    cmd.arg(setup_script())
        .env_clear()
        .env("PATH", dir.path())
        .env("IDUNNO_HOME", dir.path().join("home"));
    // rustup's cargo finds its toolchains through these.
    for key in ["HOME", "RUSTUP_HOME", "CARGO_HOME", "RUSTUP_TOOLCHAIN"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        !dir.path().join("home").exists(),
        "nothing is installed before the checks pass"
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A case: the tool hidden, the stand-ins (name, version line), what setup must say.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn a_missing_or_old_tool_is_named_in_one_sentence() {
    let cases: [Case; 6] = [
        ("cargo", &[], "cargo is missing"),
        (
            "",
            &[("cargo", "cargo 1.85.0 (d73d2caf9 2024-12-31)")],
            "cargo is too old",
        ),
        ("node", &[], "node is missing"),
        ("", &[("node", "v20.11.1")], "node is too old"),
        ("g++", &[], "g++ is missing"),
        ("curl", &[], "curl is missing"),
    ];
    for (hidden, fakes, says) in cases {
        let (code, stderr) = run(hidden, fakes);
        assert_eq!(code, Some(1), "{says}: {stderr}");
        assert!(stderr.contains(says), "{says}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr}");
    }
}
