//! The secure side of `idunno local up` (the default): the credentials of `idunno secure
//! init` in `<dir>/secure`, a nats-server config that requires TLS and the generated
//! identities, and each node's identity, dashboard token and HTTPS certificate passed through
//! its environment. The CLI run where `local up` ran finds the operator identity by itself.

use bus_client::secure::{natsconf, Secure, Spec};
use bus_client::BusOptions;
use bus_schemas::roles::{self, Role};
use std::path::Path;

/// The directory `local up` keeps a cluster in when none is given.
pub const DEFAULT_DIR: &str = ".idunno";

/// The credentials of the local cluster in `dir` for nodes n1..nN: made on the first `up`,
/// with an identity added for each node a later `up` has beyond them.
pub fn prepare(dir: &Path, n: usize) -> anyhow::Result<Secure> {
    let root = dir.join("secure");
    let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
    if !root.join("secure.json").exists() {
        return Ok(Secure::init(&root, &Spec::local(&root, &ids))?);
    }
    let mut secure = Secure::open(&root)?;
    for id in &ids {
        let identity = roles::node_identity(id);
        if !secure.has(&identity) {
            secure.add(Role::Node, &identity, Some(id))?;
        }
    }
    Ok(secure)
}

/// The nats-server config of the local cluster: on `127.0.0.1:port`, its store in
/// `<dir>/nats`, TLS and the identities of `secure`.
pub fn nats_conf(dir: &Path, port: u16, secure: &Secure) -> anyhow::Result<String> {
    let server = natsconf::Server {
        name: "idunno-local".into(),
        listen: format!("127.0.0.1:{port}"),
        http: None,
        store_dir: dir.join("nats").display().to_string(),
        cluster: None,
        sync_always: true,
    };
    let dir = dir.canonicalize()?;
    let users = secure.users_file();
    let users = users
        .strip_prefix(&dir)
        .map_err(|_| anyhow::anyhow!("{} is not under {}", users.display(), dir.display()))?;
    Ok(natsconf::server(
        &server,
        &secure.server_tls_dir("single"),
        &secure.ca_file(),
        &users.display().to_string(),
    ))
}

/// The environment of node `id`: its identity, and the dashboard's token and certificate.
pub fn node_env(url: &str, secure: &Secure, id: &str) -> Vec<(&'static str, String)> {
    let mut env = BusOptions::for_identity(url, secure.node_identity_dir(id)).to_env();
    let (token, https) = secure.dashboard();
    env.push(("IDUNNO_HTTP_TOKEN_FILE", token.display().to_string()));
    env.push((
        "IDUNNO_HTTP_TLS_CERT",
        https.join("cert.pem").display().to_string(),
    ));
    env.push((
        "IDUNNO_HTTP_TLS_KEY",
        https.join("key.pem").display().to_string(),
    ));
    env
}

/// The lines `local up` ends with: how to reach the cluster.
pub fn say_how(secure: Option<&Secure>, url: &str, dashboard: Option<&str>) {
    match secure {
        Some(s) => {
            crate::output::note(&format!(
                "secure: TLS and roles; identities in {} (see docs/security.md)",
                s.dir.join("identities").display()
            ));
            crate::output::note(&format!(
                "the CLI uses the operator identity by itself here; elsewhere: export IDUNNO_NATS_IDENTITY={}",
                s.identity_dir("operator").display()
            ));
            if let Some(http) = dashboard {
                let (token, _) = s.dashboard();
                crate::output::note(&format!(
                    "dashboard: https://{http}/ (token in {}, certificate by {})",
                    token.display(),
                    s.ca_file().display()
                ));
            }
        }
        None => {
            crate::output::note(&format!(
                "insecure: no TLS and no credentials: anyone who reaches {url} can do anything (for quick experiments only)"
            ));
            if let Some(http) = dashboard {
                crate::output::note(&format!("dashboard: http://{http}/"));
            }
        }
    }
}
