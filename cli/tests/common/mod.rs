//! A local cluster started by `idunno local up`, driven through the `idunno` binary; the
//! relocatable bundle made from this build (`bundle`).

#![allow(dead_code)]

pub mod bundle;

use std::process::{Command, Output};
use testkit::free_ports;

/// The binary under test.
pub const IDUNNO: &str = env!("CARGO_BIN_EXE_idunno");

/// A cluster started with `local up` in a temporary directory, stopped on drop.
pub struct Local {
    /// The bus URL.
    pub url: String,
    /// The working directory.
    pub dir: tempfile::TempDir,
}

impl Local {
    /// Runs `idunno` with `args`, as the cluster's operator once `local up` made it.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(IDUNNO);
        let operator = self.operator();
        if operator.is_dir() {
            cmd.env("IDUNNO_NATS_IDENTITY", operator);
        }
        cmd.args(["--nats", &self.url])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("IDUNNO_NATS_URL")
            .output()
            .expect("run idunno")
    }

    /// The directory of the secure local cluster's credentials (`idunno secure` layout).
    pub fn secure(&self) -> std::path::PathBuf {
        self.dir.path().join("cluster/secure")
    }

    /// The operator identity of the cluster.
    pub fn operator(&self) -> std::path::PathBuf {
        self.secure().join("identities/operator")
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and expects exit 1; returns stderr.
    pub fn err(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.run(&["local", "down", "--dir", "cluster"]);
    }
}

/// Parses JSON output.
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).expect("JSON output")
}

impl Local {
    /// Starts `nodes` nodes and waits until SDFS takes a put.
    pub fn up(nodes: usize) -> Local {
        let (bus, http) = free_ports(nodes);
        let c = Local {
            url: format!("nats://127.0.0.1:{bus}"),
            dir: tempfile::tempdir().unwrap(),
        };
        let (port, n) = (http.to_string(), nodes.to_string());
        c.ok(&[
            "local",
            "up",
            "--nodes",
            &n,
            "--dir",
            "cluster",
            "--http-port",
            &port,
        ]);
        std::fs::write(c.dir.path().join("probe.txt"), "probe\n").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !c.run(&["put", "probe.txt", "probe.txt"]).status.success() {
            assert!(
                std::time::Instant::now() < deadline,
                "SDFS never became ready"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        c.ok(&["delete", "probe.txt"]);
        c
    }
}

/// A tiny image folder: class `left` has a bright left half, `right` a bright right half;
/// `train` and `test` images per class in each split.
pub fn image_folder(root: &std::path::Path, train: u8, test: u8) {
    for split in ["train", "test"] {
        for (class, bright_left) in [("left", true), ("right", false)] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            let n = if split == "train" { train } else { test };
            for i in 0..n {
                let img = image::GrayImage::from_fn(8, 8, |x, _| {
                    let bright = (x < 4) == bright_left;
                    image::Luma([if bright { 200 } else { 20 } + (i % 7)])
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}
