//! IAM authentication to Redshift: temporary database passwords from `GetClusterCredentials` (provisioned
//! clusters) or redshift-serverless `GetCredentials` (workgroups), fetched again by the connection before they
//! expire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::warehouse::connection::{CredentialSource, CredentialsFuture, DbCredentials};

/// How long a temporary password is asked to live (the APIs allow 900–3600 s).
pub const DURATION_SECONDS: i32 = 3600;

/// `GetClusterCredentials` for one database user of a provisioned cluster (the user must exist: no auto-create).
pub struct ClusterCredentials {
    /// The Redshift API client.
    pub client: aws_sdk_redshift::Client,
    /// The provisioned cluster.
    pub cluster_id: String,
    /// The database user to get credentials for.
    pub db_user: String,
    /// The database.
    pub db_name: String,
}

impl CredentialSource for ClusterCredentials {
    fn fetch(&self) -> CredentialsFuture {
        let request = self
            .client
            .get_cluster_credentials()
            .cluster_identifier(&self.cluster_id)
            .db_user(&self.db_user)
            .db_name(&self.db_name)
            .duration_seconds(DURATION_SECONDS)
            .auto_create(false);
        Box::pin(async move {
            let out = request
                .send()
                .await
                .map_err(|e| aws_sdk_redshift::error::DisplayErrorContext(&e).to_string())?;
            credentials(
                out.db_user(),
                out.db_password(),
                out.expiration().map(|t| t.secs()),
            )
        })
    }

    fn describe(&self) -> String {
        format!(
            "GetClusterCredentials for cluster {}, user {}, database {}",
            self.cluster_id, self.db_user, self.db_name
        )
    }
}

/// redshift-serverless `GetCredentials` for a workgroup: the database user is derived from the caller's IAM
/// identity (`IAMR:<role>`).
pub struct ServerlessCredentials {
    /// The Redshift Serverless API client.
    pub client: aws_sdk_redshiftserverless::Client,
    /// The workgroup.
    pub workgroup: String,
    /// The database.
    pub db_name: String,
}

impl CredentialSource for ServerlessCredentials {
    fn fetch(&self) -> CredentialsFuture {
        let request = self
            .client
            .get_credentials()
            .workgroup_name(&self.workgroup)
            .db_name(&self.db_name)
            .duration_seconds(DURATION_SECONDS);
        Box::pin(async move {
            let out = request.send().await.map_err(|e| {
                aws_sdk_redshiftserverless::error::DisplayErrorContext(&e).to_string()
            })?;
            credentials(
                out.db_user(),
                out.db_password(),
                out.expiration().map(|t| t.secs()),
            )
        })
    }

    fn describe(&self) -> String {
        format!(
            "redshift-serverless GetCredentials for workgroup {}, database {}",
            self.workgroup, self.db_name
        )
    }
}

/// Credentials from an API answer; without an expiry, assume the shortest the APIs grant (15 minutes).
fn credentials(
    user: Option<&str>,
    password: Option<&str>,
    expires_epoch_secs: Option<i64>,
) -> Result<DbCredentials, String> {
    let user = user.ok_or("the answer has no DbUser")?;
    let password = password.ok_or("the answer has no DbPassword")?;
    let expires_at = match expires_epoch_secs.and_then(|s| u64::try_from(s).ok()) {
        Some(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        None => SystemTime::now() + Duration::from_secs(900),
    };
    Ok(DbCredentials {
        user: user.to_string(),
        password: password.to_string(),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_without_user_or_password_are_errors() {
        assert!(credentials(None, Some("p"), Some(1)).is_err());
        assert!(credentials(Some("IAM:u"), None, Some(1)).is_err());
        let c = credentials(Some("IAM:u"), Some("p"), Some(1_700_000_000)).unwrap();
        assert_eq!(c.user, "IAM:u");
        assert_eq!(
            c.expires_at,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
    }
}
