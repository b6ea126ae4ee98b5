//! PyTorch itself, for the benchmarks that compare IDunno with it: the full torch that
//! `infra/pytorch.sh` installs (once, for benchmarks only) running
//! `node/benches/pytorch/reference.py`, whose commands print one JSON object each.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The reference script run by the full PyTorch's python.
pub struct PyTorch {
    python: PathBuf,
    script: PathBuf,
}

impl PyTorch {
    /// Installs the full PyTorch if missing (`infra/pytorch.sh`, about 4.7 GB and a minute
    /// the first time) and finds its python.
    pub fn install() -> PyTorch {
        let out = Command::new("bash")
            .arg(crate::repo_dir().join("infra/pytorch.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run infra/pytorch.sh");
        assert!(out.status.success(), "infra/pytorch.sh failed");
        let python = String::from_utf8_lossy(&out.stdout).trim().to_string();
        PyTorch {
            python: PathBuf::from(python),
            script: crate::repo_dir().join("node/benches/pytorch/reference.py"),
        }
    }

    /// Starts `reference.py args…` (its stdout piped); see [`PyTorch::output`].
    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python")
    }

    /// The JSON object a started command printed.
    pub fn output(child: Child) -> serde_json::Value {
        let out = child.wait_with_output().expect("python ends");
        assert!(out.status.success(), "reference.py failed");
        serde_json::from_slice(&out.stdout).expect("reference.py prints one JSON object")
    }

    /// Runs `reference.py args…` and returns the JSON object it printed.
    pub fn run(&self, args: &[&str]) -> serde_json::Value {
        Self::output(self.spawn(args))
    }

    /// Runs it and returns the number under `key`.
    pub fn figure(&self, args: &[&str], key: &str) -> f64 {
        let v = self.run(args);
        v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {v}"))
    }
}
