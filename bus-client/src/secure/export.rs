//! `idunno secure export`: what one machine of a cluster needs, and nothing more.

use super::{io, private_dir, write_public, write_secret, Secure, SecureError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

impl Secure {
    /// Copies into `out` (made, mode 0700) what one machine needs and nothing more: the CA
    /// certificate (not its key), the machine config and `users.conf`, the certificate of
    /// `server` if given, the identities named (a node's as `node-<id>`) and the dashboard
    /// token and certificate; in the same layout as this directory, so paths into it read
    /// the same. Files there already are replaced (export again after `add` or `rotate`).
    pub fn export(
        &self,
        out: &Path,
        server: Option<&str>,
        identities: &[String],
    ) -> Result<(), SecureError> {
        if out.join("ca-key.pem").exists() || out.join("secure.json").exists() {
            return Err(SecureError::Invalid(format!(
                "{} holds a whole secure directory; export into another",
                out.display()
            )));
        }
        let mut wanted: Vec<PathBuf> = ["ca.pem", "nats/users.conf", "dashboard.token"]
            .iter()
            .map(PathBuf::from)
            .collect();
        if self.machine_conf().is_file() {
            wanted.push("nats/machine.conf".into());
        }
        for f in ["cert.pem", "key.pem"] {
            wanted.push(Path::new("https").join(f));
        }
        if let Some(name) = server {
            if !self.server_tls_dir(name).is_dir() {
                return Err(SecureError::Invalid(format!(
                    "no server {name:?} (add it with `idunno secure add --role server`)"
                )));
            }
            for f in ["cert.pem", "key.pem"] {
                wanted.push(Path::new("nats/tls").join(name).join(f));
            }
        }
        for name in identities {
            if !self.has(name) {
                return Err(SecureError::Invalid(format!("no identity {name:?}")));
            }
            for f in ["seed.nk", "cert.pem", "key.pem", "ca.pem", "identity.json"] {
                wanted.push(Path::new("identities").join(name).join(f));
            }
        }
        private_dir(out)?;
        for rel in wanted {
            let from = self.dir.join(&rel);
            let to = out.join(&rel);
            if let Some(parent) = to.parent() {
                private_dir(parent)?;
            }
            let bytes = std::fs::read(&from).map_err(io(&from))?;
            // A secret here (owner-only) stays one there.
            let mode = std::fs::metadata(&from)
                .map_err(io(&from))?
                .permissions()
                .mode();
            match mode & 0o077 == 0 {
                true => write_secret(&to, &bytes)?,
                false => write_public(&to, &bytes)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Spec;
    use super::*;

    /// The files that are secrets (mode 0600).
    const SECRETS: &[&str] = &["key.pem", "seed.nk", "dashboard.token"];

    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                match e.path().is_dir() {
                    true => stack.push(e.path()),
                    false => out.push(e.path().strip_prefix(dir).unwrap().display().to_string()),
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_machine_gets_its_own_files_and_no_other_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let spec = Spec {
            servers: vec![
                ("sa".into(), "10.0.0.1".into()),
                ("sb".into(), "10.0.0.2".into()),
            ],
            ..Spec::local(&dir, &["a1".to_string(), "b1".to_string()])
        };
        let s = Secure::init(&dir, &spec).unwrap();
        let out = tmp.path().join("a");
        s.export(&out, Some("sa"), &["node-a1".to_string()])
            .unwrap();
        let got = files(&out);
        let want = [
            "ca.pem",
            "dashboard.token",
            "https/cert.pem",
            "https/key.pem",
            "identities/node-a1/ca.pem",
            "identities/node-a1/cert.pem",
            "identities/node-a1/identity.json",
            "identities/node-a1/key.pem",
            "identities/node-a1/seed.nk",
            "nats/machine.conf",
            "nats/tls/sa/cert.pem",
            "nats/tls/sa/key.pem",
            "nats/users.conf",
        ];
        assert_eq!(got, want);
        for f in got {
            let mode = std::fs::metadata(out.join(&f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            let secret = SECRETS.iter().any(|s| f.ends_with(s));
            assert_eq!(mode, if secret { 0o600 } else { 0o644 }, "{f}");
        }
        assert!(s.export(&out, Some("sc"), &[]).is_err(), "no such server");
        assert!(
            s.export(&out, None, &["node-c1".into()]).is_err(),
            "no such identity"
        );
        assert!(
            s.export(&dir, None, &[]).is_err(),
            "not into the whole directory"
        );
    }

    #[test]
    fn a_server_added_later_gets_a_certificate_and_the_machine_config() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let mut s = Secure::init(&dir, &Spec::local(&dir, &["n1".to_string()])).unwrap();
        assert!(!s.machine_conf().exists(), "no cluster yet");
        s.add_cluster_server("sd", "10.0.0.4").unwrap();
        assert!(s.server_tls_dir("sd").join("key.pem").is_file());
        assert!(s.machine_conf().is_file());
        assert!(
            s.add_cluster_server("sd", "10.0.0.5").is_err(),
            "a second sd"
        );
        assert!(
            s.add_cluster_server("single", "10.0.0.5").is_err(),
            "reserved"
        );
        let again = Secure::open(&dir).unwrap();
        assert_eq!(
            again.manifest.servers,
            [("sd".to_string(), "10.0.0.4".to_string())]
        );
    }
}
