//! AWS clients, built once from the standard environment (credentials chain, region, `AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_S3`, …) over a rustls/ring HTTPS client, so the same code talks to AWS or a local server.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

/// The shared SDK configuration from the environment.
pub async fn sdk_config() -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await
}

/// Whether S3 requests use path-style addressing: `AWS_S3_FORCE_PATH_STYLE=true`, or whenever a custom endpoint is
/// configured (local S3-compatible servers rarely resolve virtual-host bucket names).
pub fn force_path_style(get: impl Fn(&str) -> Option<String>) -> bool {
    match get("AWS_S3_FORCE_PATH_STYLE").as_deref() {
        Some("true" | "1") => true,
        Some("false" | "0") => false,
        _ => get("AWS_ENDPOINT_URL_S3").is_some() || get("AWS_ENDPOINT_URL").is_some(),
    }
}

/// An S3 client for an SDK configuration.
pub fn s3_client_from(conf: &SdkConfig) -> aws_sdk_s3::Client {
    let path_style = force_path_style(|k| std::env::var(k).ok());
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(path_style)
            .build(),
    )
}

/// An S3 client from the environment.
pub async fn s3_client() -> aws_sdk_s3::Client {
    s3_client_from(&sdk_config().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_endpoint_means_path_style_unless_told_otherwise() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(!force_path_style(env(&[])));
        assert!(force_path_style(env(&[(
            "AWS_ENDPOINT_URL",
            "http://127.0.0.1:5000"
        )])));
        assert!(force_path_style(env(&[(
            "AWS_ENDPOINT_URL_S3",
            "http://x"
        )])));
        assert!(!force_path_style(env(&[
            ("AWS_ENDPOINT_URL", "http://x"),
            ("AWS_S3_FORCE_PATH_STYLE", "false")
        ])));
        assert!(force_path_style(env(&[(
            "AWS_S3_FORCE_PATH_STYLE",
            "true"
        )])));
    }
}
