//! NATS connection settings shared by every IDunno binary.

use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Where the bus is and how to authenticate; flattened into both binaries' flags, global (they
/// may follow a subcommand: `idunno members --nats URL`).
#[derive(Clone, Default, clap::Args)]
pub struct BusOptions {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long = "nats",
        env = "IDUNNO_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub url: String,
    /// NATS user name (with --nats-password).
    #[arg(long = "nats-user", env = "IDUNNO_NATS_USER", global = true)]
    pub user: Option<String>,
    /// NATS password.
    #[arg(
        long = "nats-password",
        env = "IDUNNO_NATS_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub password: Option<String>,
    /// NATS token.
    #[arg(
        long = "nats-token",
        env = "IDUNNO_NATS_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// NATS credentials file (JWT + NKey seed).
    #[arg(long = "nats-creds", env = "IDUNNO_NATS_CREDS", global = true)]
    pub creds: Option<PathBuf>,
    /// CA certificate (PEM) to verify the server's TLS certificate; turns TLS on.
    #[arg(long = "nats-tls-ca", env = "IDUNNO_NATS_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// An identity directory made by `idunno secure init` (its NKEY seed, TLS client
    /// certificate, CA and reply inbox prefix); the flags below override its parts.
    #[arg(long = "nats-identity", env = "IDUNNO_NATS_IDENTITY", global = true)]
    pub identity: Option<PathBuf>,
    /// File holding an NKEY seed (`SU…`) to authenticate with.
    #[arg(long = "nats-nkey", env = "IDUNNO_NATS_NKEY", global = true)]
    pub nkey: Option<PathBuf>,
    /// TLS client certificate (PEM), for servers that verify clients (with --nats-tls-key).
    #[arg(long = "nats-tls-cert", env = "IDUNNO_NATS_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the TLS client certificate.
    #[arg(long = "nats-tls-key", env = "IDUNNO_NATS_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Prefix of this client's reply inboxes (`_INBOX.<identity>` for an identity whose
    /// permissions allow only its own); default `_INBOX`.
    #[arg(
        long = "nats-inbox-prefix",
        env = "IDUNNO_NATS_INBOX_PREFIX",
        global = true
    )]
    pub inbox_prefix: Option<String>,
}

/// The credentials of [`BusOptions`] with an identity directory's parts filled in.
#[derive(Default)]
struct Resolved {
    nkey: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    inbox_prefix: Option<String>,
}

impl std::fmt::Debug for BusOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("BusOptions")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &redact(&self.password))
            .field("token", &redact(&self.token))
            .field("creds", &self.creds)
            .field("tls_ca", &self.tls_ca)
            .field("identity", &self.identity)
            .field("nkey", &self.nkey)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
}

/// Why the bus could not be reached.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The options are inconsistent (e.g. a password without a user); nothing was attempted.
    #[error("invalid NATS options: {0}")]
    Invalid(String),
    /// A credentials or CA file could not be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The server requires TLS this client could not do: it does not trust the server's
    /// certificate, or the server wants a client certificate of its own CA.
    #[error("the NATS server at {url} refused the TLS handshake ({reason}): {hint}")]
    Tls {
        /// The URL tried.
        url: String,
        /// What the handshake said.
        reason: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// No server answered at the URL in time, or it refused the connection.
    #[error("cannot reach the cluster's NATS server at {url}: {reason}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

impl BusOptions {
    /// Options for `url` with no credentials.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// The options as the environment variables that give them (`IDUNNO_NATS_*`): how a
    /// parent passes them to the processes it starts, so that no secret is in their argv.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        [
            ("IDUNNO_NATS_URL", Some(self.url.clone())),
            ("IDUNNO_NATS_USER", self.user.clone()),
            ("IDUNNO_NATS_PASSWORD", self.password.clone()),
            ("IDUNNO_NATS_TOKEN", self.token.clone()),
            ("IDUNNO_NATS_CREDS", path(&self.creds)),
            ("IDUNNO_NATS_TLS_CA", path(&self.tls_ca)),
            ("IDUNNO_NATS_IDENTITY", path(&self.identity)),
            ("IDUNNO_NATS_NKEY", path(&self.nkey)),
            ("IDUNNO_NATS_TLS_CERT", path(&self.tls_cert)),
            ("IDUNNO_NATS_TLS_KEY", path(&self.tls_key)),
            ("IDUNNO_NATS_INBOX_PREFIX", self.inbox_prefix.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }

    /// Options for `url` as identity `dir` (made by `idunno secure init`).
    pub fn for_identity(url: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            identity: Some(dir.into()),
            ..Self::for_url(url)
        }
    }

    /// Checks that the options make sense together.
    pub fn validate(&self) -> Result<(), ConnectError> {
        if self.password.is_some() && self.user.is_none() {
            return Err(ConnectError::Invalid(
                "--nats-password needs --nats-user".into(),
            ));
        }
        if self.token.is_some() && self.user.is_some() {
            return Err(ConnectError::Invalid(
                "give either a token or a user, not both".into(),
            ));
        }
        Ok(())
    }

    /// These options with the parts of the identity directory (if any) filled in.
    fn resolve(&self) -> Result<Resolved, ConnectError> {
        let mut r = Resolved::default();
        if let Some(dir) = &self.identity {
            let path = dir.join("identity.json");
            let text = std::fs::read_to_string(&path).map_err(|e| ConnectError::File {
                path: path.clone(),
                reason: format!(
                    "{e} (is {} an identity made by `idunno secure init`?)",
                    dir.display()
                ),
            })?;
            let info: crate::secure::IdentityInfo =
                serde_json::from_str(&text).map_err(|e| ConnectError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            r = Resolved {
                nkey: Some(dir.join("seed.nk")),
                tls_cert: Some(dir.join("cert.pem")),
                tls_key: Some(dir.join("key.pem")),
                tls_ca: Some(dir.join("ca.pem")),
                inbox_prefix: Some(info.inbox_prefix),
            };
        }
        let or = |flag: &Option<PathBuf>, from_dir: Option<PathBuf>| flag.clone().or(from_dir);
        Ok(Resolved {
            nkey: or(&self.nkey, r.nkey),
            tls_cert: or(&self.tls_cert, r.tls_cert),
            tls_key: or(&self.tls_key, r.tls_key),
            tls_ca: or(&self.tls_ca, r.tls_ca),
            inbox_prefix: self.inbox_prefix.clone().or(r.inbox_prefix),
        })
    }

    /// The prefix of this client's reply inboxes (`_INBOX` unless an identity or the flag
    /// gives one): what [`crate::denials::note_event`] is given.
    pub fn inbox_prefix(&self) -> String {
        (self.resolve().ok())
            .and_then(|r| r.inbox_prefix)
            .unwrap_or_else(|| "_INBOX".into())
    }

    /// async-nats options carrying these credentials, a client name and a bounded connect time.
    /// Refusals of the server go to [`crate::denials`]; a caller that sets its own
    /// `event_callback` passes events to [`crate::denials::note_event`] itself.
    pub async fn nats_options(
        &self,
        name: &str,
    ) -> Result<async_nats::ConnectOptions, ConnectError> {
        self.validate()?;
        let resolved = self.resolve()?;
        let mut opts = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(2));
        if let Some(path) = &self.creds {
            opts = async_nats::ConnectOptions::with_credentials_file(path.clone())
                .await
                .map_err(|e| ConnectError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
                .name(name)
                .connection_timeout(Duration::from_secs(2));
        }
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            opts = opts.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.token {
            opts = opts.token(token.clone());
        }
        opts = with_tls_and_nkey(opts, &resolved)?;
        let prefix = resolved.inbox_prefix.unwrap_or_else(|| "_INBOX".into());
        opts = opts
            .custom_inbox_prefix(&prefix)
            .event_callback(move |event| {
                let prefix = prefix.clone();
                async move { crate::denials::note_event(&prefix, &event) }
            });
        Ok(opts)
    }

    /// The server addresses of the comma-separated URL list.
    pub fn servers(&self) -> Result<Vec<async_nats::ServerAddr>, ConnectError> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<async_nats::ServerAddr>()
                    .map_err(|e| ConnectError::Invalid(format!("NATS URL {s:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|v| match v.is_empty() {
                true => Err(ConnectError::Invalid("no NATS URL given".into())),
                false => Ok(v),
            })
    }

    /// Connects once, for a one-shot client: an unreachable server is an error within 3 s.
    pub async fn connect_once(&self, name: &str) -> Result<async_nats::Client, ConnectError> {
        let opts = self.nats_options(name).await?;
        let servers = self.servers()?;
        let unreachable = |reason: String| ConnectError::Unreachable {
            url: self.url.clone(),
            reason,
        };
        match tokio::time::timeout(Duration::from_secs(3), opts.connect(servers)).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) if is_tls_refusal(&e.to_string()) => Err(ConnectError::Tls {
                url: self.url.clone(),
                hint: tls_hint(
                    &e.to_string(),
                    self.identity.is_some() || self.tls_cert.is_some(),
                ),
                reason: e.to_string(),
            }),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable("no answer within 3 s".into())),
        }
    }
}

/// `opts` with the resolved TLS root, TLS client certificate and NKEY seed (each file
/// must exist); a certificate without its key (or a key without its certificate) is refused.
fn with_tls_and_nkey(
    mut opts: async_nats::ConnectOptions,
    resolved: &Resolved,
) -> Result<async_nats::ConnectOptions, ConnectError> {
    if let Some(ca) = &resolved.tls_ca {
        opts = opts.add_root_certificates(existing(ca)?).require_tls(true);
    }
    match (&resolved.tls_cert, &resolved.tls_key) {
        (Some(cert), Some(key)) => {
            opts = opts.add_client_certificate(existing(cert)?, existing(key)?);
        }
        (None, None) => {}
        _ => {
            return Err(ConnectError::Invalid(
                "--nats-tls-cert and --nats-tls-key go together".into(),
            ))
        }
    }
    if let Some(path) = &resolved.nkey {
        let seed = std::fs::read_to_string(existing(path)?).map_err(|e| ConnectError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        opts = opts.nkey(seed.trim().to_string());
    }
    Ok(opts)
}

/// `path` if it is a file, else [`ConnectError::File`] ("no such file").
fn existing(path: &Path) -> Result<PathBuf, ConnectError> {
    match path.is_file() {
        true => Ok(path.to_path_buf()),
        false => Err(ConnectError::File {
            path: path.to_path_buf(),
            reason: "no such file".into(),
        }),
    }
}

/// Whether a connection error is a TLS handshake the server or this client refused.
fn is_tls_refusal(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "certificate",
        "tls",
        "handshake",
        "unknownissuer",
        "unknownca",
        "fatal alert",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// What to do about a refused TLS handshake: reach the server by a name its certificate has,
/// bring an identity of this cluster, or bring one at all.
fn tls_hint(reason: &str, has_identity: bool) -> &'static str {
    if reason.contains("not valid for name") {
        "the server's certificate does not name the host of this URL: use a name or address it was issued for (`idunno secure init --server NAME=HOST`, `idunno secure add --role server --host HOST`)"
    } else if has_identity {
        "this identity is not one of this cluster's (its certificate or CA is another `idunno secure init`'s)"
    } else {
        "a secure cluster needs one of its identities, e.g. --nats-identity <dir> (made by `idunno secure init`; `idunno local up` keeps them in <dir>/secure/identities)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let opts = BusOptions {
            token: Some("s3cret".into()),
            ..BusOptions::for_url("nats://x")
        };
        assert!(!format!("{opts:?}").contains("s3cret"));
    }

    #[test]
    fn password_without_user_is_refused() {
        let opts = BusOptions {
            password: Some("p".into()),
            ..BusOptions::for_url("nats://x")
        };
        assert!(matches!(opts.validate(), Err(ConnectError::Invalid(_))));
    }

    #[test]
    fn comma_separated_urls_are_several_servers() {
        let opts = BusOptions::for_url("nats://127.0.0.1:4222, nats://127.0.0.1:4223");
        assert_eq!(opts.servers().unwrap().len(), 2);
        assert!(matches!(
            BusOptions::for_url(" , ").servers(),
            Err(ConnectError::Invalid(_))
        ));
        assert!(matches!(
            BusOptions::for_url("nats://h:port").servers(),
            Err(ConnectError::Invalid(_))
        ));
    }

    #[test]
    fn a_tls_refusal_says_what_to_change() {
        let name = "invalid peer certificate: certificate not valid for name \"10.0.0.4\"";
        assert!(tls_hint(name, true).contains("--host HOST"));
        let issuer = "invalid peer certificate: UnknownIssuer";
        assert!(tls_hint(issuer, true).contains("not one of this cluster's"));
        assert!(tls_hint(issuer, false).contains("--nats-identity <dir>"));
    }

    #[tokio::test]
    async fn unreachable_server_is_reported_quickly() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let started = std::time::Instant::now();
        let err = BusOptions::for_url(format!("nats://127.0.0.1:{port}"))
            .connect_once("test")
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::Unreachable { .. }));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
