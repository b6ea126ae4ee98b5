//! NATS connection settings shared by every IDunno binary.

use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Where the bus is and how to authenticate; flattened into both binaries' flags.
#[derive(Clone, Default, clap::Args)]
pub struct BusOptions {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long = "nats",
        env = "IDUNNO_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub url: String,
    /// NATS user name (with --nats-password).
    #[arg(long = "nats-user", env = "IDUNNO_NATS_USER")]
    pub user: Option<String>,
    /// NATS password.
    #[arg(
        long = "nats-password",
        env = "IDUNNO_NATS_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// NATS token.
    #[arg(long = "nats-token", env = "IDUNNO_NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// NATS credentials file (JWT + NKey seed).
    #[arg(long = "nats-creds", env = "IDUNNO_NATS_CREDS")]
    pub creds: Option<PathBuf>,
    /// CA certificate (PEM) to verify the server's TLS certificate; turns TLS on.
    #[arg(long = "nats-tls-ca", env = "IDUNNO_NATS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
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

    /// async-nats options carrying these credentials, a client name and a bounded connect time.
    pub async fn nats_options(
        &self,
        name: &str,
    ) -> Result<async_nats::ConnectOptions, ConnectError> {
        self.validate()?;
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
        if let Some(ca) = &self.tls_ca {
            if !ca.is_file() {
                return Err(ConnectError::File {
                    path: ca.clone(),
                    reason: "no such file".into(),
                });
            }
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
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
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable("no answer within 3 s".into())),
        }
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
