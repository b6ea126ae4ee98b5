//! A secure cluster's credentials: `idunno secure init <dir>` writes a CA, TLS certificates for
//! the NATS servers, the dashboards and every identity, one NKEY per identity (a node each,
//! an operator, a viewer), nats-server configs that require TLS of clients and routes, and a
//! dashboard token. Private keys, seeds and the token are files of mode 0600 in directories of
//! mode 0700; they reach processes as file paths, never as arguments.
//!
//! ```text
//! <dir>/secure.json                 what was generated (no secret)
//! <dir>/ca.pem, ca-key.pem          the CA (keep ca-key.pem offline once the cluster is set up)
//! <dir>/dashboard.token             the dashboards' API token
//! <dir>/https/{cert,key}.pem        the dashboards' HTTPS certificate
//! <dir>/nats/single.conf            one server
//! <dir>/nats/machine.conf           each machine of a cluster (its specifics from variables)
//! <dir>/nats/users.conf             every identity's NKEY and permissions (included by both)
//! <dir>/nats/tls/<server>/          each server's certificate (`single`, and a cluster's)
//! <dir>/identities/<name>/          seed.nk, cert.pem, key.pem, ca.pem, identity.json
//! ```

mod export;
pub mod natsconf;
pub mod pki;

use bus_schemas::roles::{self, Role};
use pki::{Ca, Usage};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why secure material could not be made or read.
#[derive(Debug, Error)]
pub enum SecureError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A certificate could not be made.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// An NKEY could not be made or read.
    #[error("nkey: {0}")]
    Key(String),
    /// The request does not make sense (a duplicate name, a bad id, a missing directory).
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecureError + '_ {
    move |source| SecureError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The cluster's name (in the CA's name).
    pub name: String,
    /// Node ids: one identity each.
    pub nodes: Vec<String>,
    /// Host names and addresses the single server and the dashboards answer to.
    pub hosts: Vec<String>,
    /// The single server's client address.
    pub listen: String,
    /// The single server's JetStream store.
    pub store_dir: String,
    /// The servers of a cluster (`name`, host), if any: a config and certificate each.
    pub servers: Vec<(String, String)>,
    /// Also an `admin` identity (every subject): for tests.
    pub admin: bool,
}

impl Spec {
    /// Nodes `ids` on one machine: the server on 127.0.0.1:4222, its store in `<dir>/nats/store`.
    pub fn local(dir: &Path, ids: &[String]) -> Spec {
        Spec {
            name: "idunno".into(),
            nodes: ids.to_vec(),
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
            listen: "127.0.0.1:4222".into(),
            store_dir: dir.join("nats/store").display().to_string(),
            servers: Vec::new(),
            admin: false,
        }
    }
}

/// One identity as recorded in `secure.json` and its `identity.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityInfo {
    /// Its name (`node-<id>`, `operator`, `viewer`, …).
    pub name: String,
    /// Its role's name.
    pub role: String,
    /// The node id, for a node.
    #[serde(default)]
    pub node: Option<String>,
    /// Its public NKEY.
    pub public_key: String,
    /// Its reply inbox prefix.
    pub inbox_prefix: String,
}

/// `secure.json`: what a directory holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The cluster's name.
    pub name: String,
    /// The single server's client address.
    pub listen: String,
    /// Server names and hosts of the cluster configs.
    #[serde(default)]
    pub servers: Vec<(String, String)>,
    /// Every identity.
    pub identities: Vec<IdentityInfo>,
}

/// Writes `bytes` to `path` readable by its owner only (mode 0600).
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), SecureError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))
}

pub(crate) fn write_public(path: &Path, bytes: &[u8]) -> Result<(), SecureError> {
    std::fs::write(path, bytes).map_err(io(path))
}

pub(crate) fn private_dir(path: &Path) -> Result<(), SecureError> {
    std::fs::create_dir_all(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io(path))
}

fn read(path: &Path) -> Result<String, SecureError> {
    std::fs::read_to_string(path).map_err(io(path))
}

/// A secure directory, opened.
pub struct Secure {
    /// The directory.
    pub dir: PathBuf,
    /// What it holds.
    pub manifest: Manifest,
}

impl Secure {
    /// Generates everything `spec` asks for into `dir` (made, mode 0700), which must not hold
    /// a secure cluster already.
    pub fn init(dir: &Path, spec: &Spec) -> Result<Secure, SecureError> {
        if dir.join("secure.json").exists() {
            return Err(SecureError::Invalid(format!(
                "{} holds a secure cluster already (add identities with `idunno secure add`)",
                dir.display()
            )));
        }
        if spec.servers.iter().any(|(n, _)| n == "single") {
            return Err(SecureError::Invalid(
                "\"single\" names the single server's files: name the cluster's servers otherwise"
                    .into(),
            ));
        }
        for id in &spec.nodes {
            bus_schemas::validate_token(id)
                .map_err(|e| SecureError::Invalid(format!("node {id:?}: {e}")))?;
        }
        private_dir(dir)?;
        let dir = dir.canonicalize().map_err(io(dir))?;
        let (ca, ca_key) = Ca::generate(&spec.name)?;
        write_public(&dir.join("ca.pem"), ca.cert.as_bytes())?;
        write_secret(&dir.join("ca-key.pem"), ca_key.as_bytes())?;
        write_secret(&dir.join("dashboard.token"), random_token().as_bytes())?;
        let https = dir.join("https");
        private_dir(&https)?;
        let pem = ca.issue("IDunno dashboard", &spec.hosts, Usage::Https)?;
        write_public(&https.join("cert.pem"), pem.cert.as_bytes())?;
        write_secret(&https.join("key.pem"), pem.key.as_bytes())?;
        let mut secure = Secure {
            dir: dir.clone(),
            manifest: Manifest {
                name: spec.name.clone(),
                listen: spec.listen.clone(),
                servers: spec.servers.clone(),
                identities: Vec::new(),
            },
        };
        let mut wanted: Vec<(Role, String, Option<String>)> = (spec.nodes.iter())
            .map(|id| (Role::Node, roles::node_identity(id), Some(id.clone())))
            .collect();
        wanted.push((Role::Operator, "operator".into(), None));
        wanted.push((Role::Viewer, "viewer".into(), None));
        if spec.admin {
            wanted.push((Role::Admin, "admin".into(), None));
        }
        for (role, name, node) in wanted {
            secure.make_identity(&ca, role, &name, node)?;
        }
        secure.write_servers(&ca, spec)?;
        secure.save()?;
        Ok(secure)
    }

    /// Opens a directory `init` wrote.
    pub fn open(dir: &Path) -> Result<Secure, SecureError> {
        let path = dir.join("secure.json");
        let manifest = serde_json::from_str(&read(&path)?)
            .map_err(|e| SecureError::Invalid(format!("{}: {e}", path.display())))?;
        Ok(Secure {
            dir: dir.canonicalize().map_err(io(dir))?,
            manifest,
        })
    }

    fn ca(&self) -> Result<Ca, SecureError> {
        let cert = read(&self.dir.join("ca.pem"))?;
        let key = read(&self.dir.join("ca-key.pem"))?;
        Ok(Ca::load(&self.manifest.name, cert, &key)?)
    }

    /// Adds an identity (a node's when `node` is given) and rewrites `users.conf`; a running
    /// server applies it on `nats-server --signal reload`.
    pub fn add(
        &mut self,
        role: Role,
        name: &str,
        node: Option<&str>,
    ) -> Result<PathBuf, SecureError> {
        if self.manifest.identities.iter().any(|i| i.name == name) {
            return Err(SecureError::Invalid(format!(
                "identity {name:?} exists already"
            )));
        }
        let ca = self.ca()?;
        let path = self.make_identity(&ca, role, name, node.map(String::from))?;
        self.write_users()?;
        self.save()?;
        Ok(path)
    }

    /// Gives identity `name` a new NKEY and client certificate (the old ones stop working at
    /// the next server reload) and rewrites `users.conf`.
    pub fn rotate(&mut self, name: &str) -> Result<PathBuf, SecureError> {
        let Some(pos) = self.manifest.identities.iter().position(|i| i.name == name) else {
            return Err(SecureError::Invalid(format!("no identity {name:?}")));
        };
        let old = self.manifest.identities.remove(pos);
        let role = Role::parse(&old.role)
            .ok_or_else(|| SecureError::Invalid(format!("unknown role {:?}", old.role)))?;
        let ca = self.ca()?;
        let path = self.make_identity(&ca, role, name, old.node)?;
        self.write_users()?;
        self.save()?;
        Ok(path)
    }

    /// The directory of identity `name`.
    pub fn identity_dir(&self, name: &str) -> PathBuf {
        self.dir.join("identities").join(name)
    }

    /// A node's identity directory.
    pub fn node_identity_dir(&self, id: &str) -> PathBuf {
        self.identity_dir(&roles::node_identity(id))
    }

    /// The config of the single server.
    pub fn single_conf(&self) -> PathBuf {
        self.dir.join("nats/single.conf")
    }

    /// Issues a certificate for another server `name` (valid for `hosts`) into
    /// `nats/tls/<name>`; returns that directory.
    pub fn add_server(&self, name: &str, hosts: &[String]) -> Result<PathBuf, SecureError> {
        self.issue_server(&self.ca()?, name, hosts)
    }

    /// Adds server `name` of the cluster, reached at `host`: a certificate for it (and for
    /// localhost) in `nats/tls/<name>`, recorded in `secure.json`, and `nats/machine.conf` if
    /// this is the first. The routes are each machine's own (`IDUNNO_NATS_ROUTES`).
    pub fn add_cluster_server(&mut self, name: &str, host: &str) -> Result<PathBuf, SecureError> {
        if name == "single" || self.manifest.servers.iter().any(|(n, _)| n == name) {
            return Err(SecureError::Invalid(format!(
                "server {name:?} exists already"
            )));
        }
        let tls = self.add_server(name, &server_hosts(host))?;
        self.manifest.servers.push((name.into(), host.into()));
        write_public(&self.machine_conf(), natsconf::machine().as_bytes())?;
        self.save()?;
        Ok(tls)
    }

    /// The config of every machine of a cluster (see [`natsconf::machine`]).
    pub fn machine_conf(&self) -> PathBuf {
        self.dir.join("nats/machine.conf")
    }

    /// The certificate directory of server `name` (`single` for the single server).
    pub fn server_tls_dir(&self, name: &str) -> PathBuf {
        self.dir.join("nats/tls").join(name)
    }

    /// The CA certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The users file every server config includes.
    pub fn users_file(&self) -> PathBuf {
        self.dir.join("nats/users.conf")
    }

    /// The dashboards' token file and HTTPS certificate directory.
    pub fn dashboard(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("dashboard.token"), self.dir.join("https"))
    }

    /// Whether identity `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.manifest.identities.iter().any(|i| i.name == name)
    }

    fn make_identity(
        &mut self,
        ca: &Ca,
        role: Role,
        name: &str,
        node: Option<String>,
    ) -> Result<PathBuf, SecureError> {
        bus_schemas::validate_token(name)
            .map_err(|e| SecureError::Invalid(format!("identity {name:?}: {e}")))?;
        let dir = self.identity_dir(name);
        private_dir(&dir)?;
        let key = nkeys::KeyPair::new_user();
        let seed = key.seed().map_err(|e| SecureError::Key(e.to_string()))?;
        write_secret(&dir.join("seed.nk"), seed.as_bytes())?;
        let pem = ca.issue(name, &[], Usage::Client)?;
        write_public(&dir.join("cert.pem"), pem.cert.as_bytes())?;
        write_secret(&dir.join("key.pem"), pem.key.as_bytes())?;
        write_public(&dir.join("ca.pem"), ca.cert.as_bytes())?;
        let info = IdentityInfo {
            name: name.into(),
            role: role.name().into(),
            node,
            public_key: key.public_key(),
            inbox_prefix: roles::inbox_prefix(name),
        };
        let json =
            serde_json::to_vec_pretty(&info).map_err(|e| SecureError::Invalid(e.to_string()))?;
        write_public(&dir.join("identity.json"), &json)?;
        self.manifest.identities.push(info);
        Ok(dir)
    }

    fn save(&self) -> Result<(), SecureError> {
        let json = serde_json::to_vec_pretty(&self.manifest)
            .map_err(|e| SecureError::Invalid(e.to_string()))?;
        write_public(&self.dir.join("secure.json"), &json)
    }

    fn write_users(&self) -> Result<(), SecureError> {
        let users: Vec<natsconf::User> = (self.manifest.identities.iter())
            .filter_map(|i| {
                let role = Role::parse(&i.role)?;
                let node = i.node.as_deref().unwrap_or("");
                Some(natsconf::User {
                    name: i.name.clone(),
                    role: i.role.clone(),
                    public_key: i.public_key.clone(),
                    permissions: roles::permissions(role, &i.name, node),
                })
            })
            .collect();
        write_public(
            &self.dir.join("nats/users.conf"),
            natsconf::users(&users).as_bytes(),
        )
    }

    fn write_servers(&self, ca: &Ca, spec: &Spec) -> Result<(), SecureError> {
        let nats = self.dir.join("nats");
        std::fs::create_dir_all(&nats).map_err(io(&nats))?;
        self.write_users()?;
        let single = natsconf::Server {
            name: format!("{}-single", spec.name),
            listen: spec.listen.clone(),
            http: None,
            store_dir: spec.store_dir.clone(),
            cluster: None,
            sync_always: true,
        };
        let tls = self.issue_server(ca, "single", &spec.hosts)?;
        let text = natsconf::server(&single, &tls, &self.ca_file(), "users.conf");
        write_public(&self.single_conf(), text.as_bytes())?;
        for (name, host) in &spec.servers {
            self.issue_server(ca, name, &server_hosts(host))?;
        }
        if !spec.servers.is_empty() {
            write_public(&self.machine_conf(), natsconf::machine().as_bytes())?;
        }
        Ok(())
    }

    fn issue_server(&self, ca: &Ca, name: &str, hosts: &[String]) -> Result<PathBuf, SecureError> {
        bus_schemas::validate_token(name)
            .map_err(|e| SecureError::Invalid(format!("server {name:?}: {e}")))?;
        let tls = self.server_tls_dir(name);
        private_dir(&tls)?;
        let pem = ca.issue(name, hosts, Usage::Server)?;
        write_public(&tls.join("cert.pem"), pem.cert.as_bytes())?;
        write_secret(&tls.join("key.pem"), pem.key.as_bytes())?;
        Ok(tls)
    }
}

/// The names a cluster server's certificate is valid for: its host, and localhost for the
/// nodes on its machine.
fn server_hosts(host: &str) -> Vec<String> {
    let mut hosts = vec![host.to_string(), "localhost".into(), "127.0.0.1".into()];
    hosts.dedup();
    hosts
}

/// 32 random bytes, hex: a dashboard token.
fn random_token() -> String {
    use rand::Rng;
    hex::encode(rand::rng().random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secrets_are_owner_only_and_every_identity_is_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let spec = Spec {
            servers: vec![("a".into(), "10.0.0.1".into())],
            ..Spec::local(&dir, &["n1".to_string(), "n2".to_string()])
        };
        let s = Secure::init(&dir, &spec).unwrap();
        let names: Vec<&str> = (s.manifest.identities.iter())
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(names, ["node-n1", "node-n2", "operator", "viewer"]);
        assert_eq!(mode(&dir), 0o700);
        for secret in [
            "ca-key.pem",
            "dashboard.token",
            "https/key.pem",
            "nats/tls/a/key.pem",
        ] {
            assert_eq!(mode(&dir.join(secret)), 0o600, "{secret}");
        }
        for name in names {
            let id = s.identity_dir(name);
            assert_eq!(mode(&id), 0o700, "{name}");
            assert_eq!(mode(&id.join("seed.nk")), 0o600, "{name}");
            assert_eq!(mode(&id.join("key.pem")), 0o600, "{name}");
        }
        let users = std::fs::read_to_string(s.users_file()).unwrap();
        assert_eq!(users.matches("nkey:").count(), 4);
        assert!(
            Secure::init(&dir, &spec).is_err(),
            "a second init is refused"
        );
        let bad = Spec::local(&dir, &["a.b".to_string()]);
        assert!(
            Secure::init(&tmp.path().join("t"), &bad).is_err(),
            "ids are tokens"
        );
    }
}
