//! One tokio-postgres connection to the warehouse (PostgreSQL or Redshift), over TLS or not, re-established when
//! broken; with IAM authentication, a fresh temporary password is fetched before the old one expires.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::{WarehouseError, describe};

/// A database user and a temporary password, valid until `expires_at`.
#[derive(Clone)]
pub struct DbCredentials {
    /// The database user the credentials are for.
    pub user: String,
    /// The temporary password (never logged).
    pub password: String,
    /// When the password stops working.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for DbCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The future a [`CredentialSource`] returns.
pub type CredentialsFuture =
    Pin<Box<dyn Future<Output = Result<DbCredentials, String>> + Send + 'static>>;

/// Where temporary database credentials come from (Redshift `GetClusterCredentials`, Serverless `GetCredentials`).
pub trait CredentialSource: Send + Sync {
    /// Fetch a fresh user and password.
    fn fetch(&self) -> CredentialsFuture;
    /// What is asked for, for error messages ("GetClusterCredentials for cluster c, user u").
    fn describe(&self) -> String;
}

/// Credentials are renewed when they have less than this left: a connection attempt must not race the expiry.
pub const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// The connection: settings, TLS, the live client, and the credential source when passwords are temporary.
pub struct Connection {
    config: Config,
    tls: Option<MakeRustlsConnect>,
    client: Option<Client>,
    credentials: Option<Arc<dyn CredentialSource>>,
    expires_at: Option<SystemTime>,
}

impl Connection {
    /// A connection from driver settings, over TLS when a connector is given; connects lazily.
    pub fn new(mut config: Config, tls: Option<MakeRustlsConnect>) -> Self {
        if config.get_application_name().is_none() {
            config.application_name("healthetl");
        }
        if tls.is_some() {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        Connection {
            config,
            tls,
            client: None,
            credentials: None,
            expires_at: None,
        }
    }

    /// Use TLS only when the server offers it (`sslmode=prefer`).
    pub fn tls_optional(mut self) -> Self {
        self.config
            .ssl_mode(tokio_postgres::config::SslMode::Prefer);
        self
    }

    /// Take the user and password from `source` at every (re)connection whose credentials expire within
    /// [`RENEW_BEFORE`].
    pub fn with_credentials(mut self, source: Arc<dyn CredentialSource>) -> Self {
        self.credentials = Some(source);
        self
    }

    /// Take the user and password from `source` again only when the server refuses them (SQLSTATE 28P01/28000):
    /// a secret that rotates. The configuration's current user and password are used until then.
    pub fn with_rotating_credentials(mut self, source: Arc<dyn CredentialSource>) -> Self {
        self.credentials = Some(source);
        self.expires_at = Some(until_refused());
        self
    }

    /// Forget the client, so the next [`Connection::client`] connects anew (after a transient failure).
    pub fn reset(&mut self) {
        self.client = None;
    }

    /// The live client, connecting (again) if there is none or the last one broke.
    pub async fn client(&mut self) -> Result<&mut Client, WarehouseError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.renew_credentials(false).await?;
            let client = match self.connect_once().await {
                // The password changed (a rotated secret): read the credentials again, once.
                Err(e) if is_auth_failure(&e) && self.credentials.is_some() => {
                    tracing::warn!(error = %describe(&e), "authentication refused; reading the credentials again");
                    self.renew_credentials(true).await?;
                    self.connect_once().await
                }
                other => other,
            }
            .map_err(|e| WarehouseError::Connect(format!("{}: {}", self.server(), describe(&e))))?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| WarehouseError::Connect("no client".into()))
    }

    /// The server as the driver was told to reach it, e.g. `127.0.0.1:5432` (never the user or password).
    fn server(&self) -> String {
        use tokio_postgres::config::Host;
        let ports = self.config.get_ports();
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                    Host::Tcp(name) => format!("{name}:{port}"),
                    Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
                }
            })
            .collect();
        if hosts.is_empty() {
            "the default server".to_string()
        } else {
            hosts.join(",")
        }
    }

    async fn connect_once(&self) -> Result<Client, tokio_postgres::Error> {
        match &self.tls {
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                tokio::spawn(watch(connection));
                Ok(client)
            }
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(watch(connection));
                Ok(client)
            }
        }
    }

    async fn renew_credentials(&mut self, force: bool) -> Result<(), WarehouseError> {
        let Some(source) = &self.credentials else {
            return Ok(());
        };
        if !force && !needs_renewal(self.expires_at, SystemTime::now()) {
            return Ok(());
        }
        let fresh = source.fetch().await.map_err(|e| {
            WarehouseError::Connect(format!(
                "cannot get credentials ({}): {e}",
                source.describe()
            ))
        })?;
        self.config.user(&fresh.user).password(fresh.password);
        self.expires_at = Some(fresh.expires_at);
        tracing::debug!(user = %fresh.user, "warehouse credentials renewed");
        Ok(())
    }
}

/// The expiry of credentials that stay valid until the server refuses them (a secret's password): far away.
pub fn until_refused() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 8)
}

/// Whether the server refused the user or password (SQLSTATE 28P01 invalid password, 28000 invalid
/// authorization).
pub fn is_auth_failure(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == tokio_postgres::error::SqlState::INVALID_PASSWORD
            || *c == tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    })
}

/// Whether the connection is gone: closed, or ended by the server (SQLSTATE 57P01 administrator command, 57P02
/// crash shutdown, 57P03 cannot connect now). A connection that sat idle can be found so only when it is used.
pub fn is_connection_lost(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.is_closed()
        || e.code().is_some_and(|c| {
            *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        })
}

/// Whether credentials expiring at `expires_at` (never fetched: `None`) must be renewed at `now`.
pub fn needs_renewal(expires_at: Option<SystemTime>, now: SystemTime) -> bool {
    expires_at.is_none_or(|at| at <= now + RENEW_BEFORE)
}

async fn watch<F: Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(e) = connection.await {
        tracing::warn!(error = %describe(&e), "database connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_renewed_when_missing_or_close_to_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(needs_renewal(None, now));
        assert!(needs_renewal(Some(now + Duration::from_secs(60)), now));
        assert!(needs_renewal(Some(now - Duration::from_secs(1)), now));
        assert!(!needs_renewal(Some(now + Duration::from_secs(900)), now));
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let c = DbCredentials {
            user: "IAM:loader".into(),
            password: "hunter2".into(),
            expires_at: SystemTime::UNIX_EPOCH,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
