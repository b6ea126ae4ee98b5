//! The relocatable bundle (`infra/dist.sh`), made from this build's debug binaries.

use super::IDUNNO;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the bundle from the binaries beside `idunno` into `into/archive/`; returns the
/// archive (`idunno-<version>-linux-<arch>.tar.gz`).
pub fn archive(into: &Path) -> PathBuf {
    let root = testkit::repo_dir();
    let bins = Path::new(IDUNNO).parent().unwrap();
    let made = Command::new("bash")
        .arg(root.join("infra/dist.sh"))
        .args(["--profile", "debug", "--from"])
        .arg(bins)
        .arg("--out")
        .arg(into.join("archive"))
        .env("DIST_GZIP_LEVEL", "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&made.stderr);
    assert!(made.status.success(), "infra/dist.sh: {said}");
    PathBuf::from(String::from_utf8_lossy(&made.stdout).trim())
}

/// Builds the bundle and unpacks it into a fresh directory under `into`; returns the bundle's
/// directory (the archive is removed).
pub fn unpacked(into: &Path) -> PathBuf {
    let archive = archive(into);
    let fresh = into.join("unpacked");
    std::fs::create_dir_all(&fresh).unwrap();
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&fresh)
        .arg("-xzf")
        .arg(&archive)
        .status()
        .unwrap();
    assert!(tar.success());
    std::fs::remove_dir_all(into.join("archive")).unwrap();
    let entry = std::fs::read_dir(&fresh).unwrap().next().unwrap().unwrap();
    entry.path()
}
