//! Reconcile: what S3 holds against what the warehouse recorded. Lists every object under a prefix (paginated,
//! any number), compares each with the ledger and the attempts by its identity, and finds what was never loaded,
//! loaded only from an older version, or failed last — objects whose notification was lost, or that were there
//! before the trigger. Those can be loaded here (through the Lambda's own handler, dimensions first) or sent to
//! the landing queue as S3-style notifications so the function loads them.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::schema::SCHEMA;
use crate::warehouse::{WarehouseError, ledger};

/// One object under the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// Its ETag, without quotes.
    pub etag: String,
    /// Its size in bytes.
    pub size: i64,
}

/// What the warehouse knows of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// This version is loaded (or its content is, under another name).
    Loaded,
    /// Never loaded, never tried.
    NeverLoaded,
    /// Loaded, but from an older version: this one is not.
    OlderVersion,
    /// Its last attempt failed (a retry may work).
    FailedLast,
    /// Its last attempt refused this version: loading it again cannot help until it changes.
    RefusedLast,
}

impl State {
    /// The state's name, as the JSON output spells it.
    pub fn label(self) -> &'static str {
        match self {
            State::Loaded => "loaded",
            State::NeverLoaded => "never_loaded",
            State::OlderVersion => "older_version",
            State::FailedLast => "failed_last",
            State::RefusedLast => "refused_last",
        }
    }

    /// Whether reconciling loads (or enqueues) it.
    pub fn wanted(self) -> bool {
        matches!(
            self,
            State::NeverLoaded | State::OlderVersion | State::FailedLast
        )
    }
}

/// One object and what the warehouse knows of it.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// `s3://bucket/key`.
    pub uri: String,
    /// Its key.
    pub key: String,
    /// Its ETag.
    pub etag: String,
    /// Its size.
    pub size: i64,
    /// What the warehouse knows.
    pub state: State,
    /// The last attempt's status and reason, when there was one for this version.
    pub last_attempt: Option<String>,
}

/// Every loadable object (a `.csv` or `.csv.gz` name) under `prefix`, except the loader's own outputs, page by
/// page (S3's pages of 1,000, or `page_size`).
pub async fn list(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    own_prefixes: &[&str],
    page_size: Option<i32>,
) -> Result<Vec<Listed>, String> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_max_keys(page_size)
        .into_paginator()
        .send();
    let mut listed = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            format!(
                "listing s3://{bucket}/{prefix}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )
        })?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            if !crate::route::is_csv_name(key)
                || own_prefixes
                    .iter()
                    .any(|p| !p.is_empty() && key.starts_with(p))
            {
                continue;
            }
            listed.push(Listed {
                key: key.to_string(),
                etag: object
                    .e_tag()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string(),
                size: object.size().unwrap_or_default(),
            });
        }
    }
    Ok(listed)
}

/// The committed loads under a URI prefix (`$1`, `$2` its length in characters): source and identity.
pub fn loaded_sql() -> String {
    format!(
        "SELECT source, object_identity FROM {} WHERE status = 'loaded' AND LEFT(source, $2::INTEGER) = $1::VARCHAR",
        ledger()
    )
}

/// The last attempt at each source under a URI prefix (`$1`, `$2` its length): source, identity, status, reason.
pub fn last_attempts_sql() -> String {
    format!(
        "SELECT source, object_identity, status, reason FROM (SELECT source, object_identity, status, reason, \
         ROW_NUMBER() OVER (PARTITION BY source ORDER BY attempt_id DESC) AS n FROM {} \
         WHERE LEFT(source, $2::INTEGER) = $1::VARCHAR) last WHERE n = 1",
        SCHEMA.attempts.qualified()
    )
}

/// Whether a ledger identity (`etag:E` or `etag:E;version:V`) is of the object version with ETag `etag`.
pub fn identity_is(identity: &str, etag: &str) -> bool {
    identity.split(';').next() == Some(&format!("etag:{etag}"))
}

/// Compare the listed objects of `bucket` under `prefix` with the ledger and the attempts. In load order:
/// the data dictionary and dimensions first, then the fact table, then the rest, each by key.
pub async fn compare(
    client: &Client,
    bucket: &str,
    prefix: &str,
    listed: Vec<Listed>,
) -> Result<Vec<Found>, WarehouseError> {
    let uri_prefix = format!("s3://{bucket}/{prefix}");
    let length = i32::try_from(uri_prefix.chars().count()).unwrap_or(i32::MAX);
    let mut loaded: HashMap<String, Vec<String>> = HashMap::new();
    for row in client
        .query(&loaded_sql(), &[&uri_prefix, &length])
        .await
        .map_err(WarehouseError::db("reading the ledger"))?
    {
        loaded.entry(row.get(0)).or_default().push(row.get(1));
    }
    let mut last: HashMap<String, (String, String, Option<String>)> = HashMap::new();
    for row in client
        .query(&last_attempts_sql(), &[&uri_prefix, &length])
        .await
        .map_err(WarehouseError::db("reading the attempts"))?
    {
        last.insert(row.get(0), (row.get(1), row.get(2), row.get(3)));
    }
    let mut found: Vec<Found> = listed
        .into_iter()
        .map(|o| {
            let uri = format!("s3://{bucket}/{}", o.key);
            let loads = loaded.get(&uri);
            let attempt = last
                .get(&uri)
                .filter(|(identity, _, _)| identity_is(identity, &o.etag));
            let state = if loads.is_some_and(|ids| ids.iter().any(|id| identity_is(id, &o.etag))) {
                State::Loaded
            } else {
                match attempt.map(|(_, status, _)| status.as_str()) {
                    Some("skipped") | Some("loaded") => State::Loaded,
                    Some("failed") => State::FailedLast,
                    Some("refused") => State::RefusedLast,
                    _ if loads.is_some() => State::OlderVersion,
                    _ => State::NeverLoaded,
                }
            };
            Found {
                last_attempt: attempt.map(|(_, status, reason)| match reason {
                    Some(r) => format!("{status} ({r})"),
                    None => status.clone(),
                }),
                uri,
                key: o.key,
                etag: o.etag,
                size: o.size,
                state,
            }
        })
        .collect();
    found.sort_by(|a, b| {
        (crate::route::load_rank(&a.key), &a.key).cmp(&(crate::route::load_rank(&b.key), &b.key))
    });
    Ok(found)
}

/// [`list`] then [`compare`]: every loadable object under the prefix and what the warehouse knows of it.
pub async fn find(
    s3: &aws_sdk_s3::Client,
    client: &Client,
    bucket: &str,
    prefix: &str,
    own_prefixes: &[&str],
) -> Result<Vec<Found>, String> {
    let listed = list(s3, bucket, prefix, own_prefixes, None).await?;
    compare(client, bucket, prefix, listed)
        .await
        .map_err(|e| e.to_string())
}

/// An object key as S3 event notifications spell it: form-URL-encoded (a space is `+`, `/` is `%2F`).
pub fn encode_key(key: &str) -> String {
    form_urlencoded::byte_serialize(key.as_bytes()).collect()
}

/// The S3 notification S3 would have sent for `found` (the shape the Lambda and worker read).
pub fn notification(bucket: &str, found: &Found) -> Value {
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": crate::calendar::timestamptz(std::time::SystemTime::now()),
        "userIdentity": {"principalId": "healthetl-reconcile"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "healthetl-reconcile",
            "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
            "object": {"key": encode_key(&found.key), "size": found.size, "eTag": found.etag}
        }
    }]})
}

/// A scheduled reconcile, as the template's EventBridge schedule invokes the function:
/// `{"healthetl": "reconcile", "uri": "s3://bucket/incoming/"}`; the notifications go to `LANDING_QUEUE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    /// `s3://bucket/prefix`.
    pub uri: String,
}

impl Scheduled {
    /// The request, when `event` is one.
    pub fn parse(event: &Value) -> Option<Scheduled> {
        if event.get("healthetl")?.as_str()? != "reconcile" {
            return None;
        }
        Some(Scheduled {
            uri: event.get("uri")?.as_str()?.to_string(),
        })
    }
}

/// `s3://bucket/prefix` as its bucket and key prefix.
pub fn parse_uri(uri: &str) -> Result<(String, String), String> {
    let rest = uri.strip_prefix("s3://").ok_or_else(|| {
        format!(
            "'{}' is not an s3://bucket/prefix URI",
            crate::route::escape_text(uri)
        )
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!(
            "'{}' names no bucket",
            crate::route::escape_text(uri)
        ));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// Send the notifications of `found` to the queue, ten to a batch; the number sent.
pub async fn enqueue(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    bucket: &str,
    found: &[&Found],
) -> Result<usize, String> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let mut sent = 0;
    for batch in found.chunks(10) {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, f)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(notification(bucket, f).to_string())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "sending to {queue_url}: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                )
            })?;
        if let Some(failed) = out.failed().first() {
            return Err(format!(
                "sending to {queue_url}: {} of {} messages refused ({}: {})",
                out.failed().len(),
                batch.len(),
                failed.code(),
                failed.message().unwrap_or_default()
            ));
        }
        sent += out.successful().len();
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_match_by_etag_with_or_without_a_version() {
        assert!(identity_is("etag:abc", "abc"));
        assert!(identity_is("etag:abc;version:v1", "abc"));
        assert!(!identity_is("etag:abcd", "abc"));
        assert!(!identity_is("sha256:abc", "abc"));
    }

    #[test]
    fn keys_are_encoded_as_notifications_spell_them_and_decode_back() {
        for key in [
            "incoming/FactTable.csv",
            "in coming/dim Payer+1.csv",
            "données/été.csv.gz",
        ] {
            let encoded = encode_key(key);
            assert!(
                !encoded.contains('/') && !encoded.contains(' '),
                "{encoded}"
            );
            assert_eq!(crate::event::decode_key(&encoded).unwrap(), key);
        }
        assert_eq!(encode_key("raw/FactTable.csv"), "raw%2FFactTable.csv");
    }

    #[test]
    fn a_notification_parses_as_the_handler_reads_it() {
        let found = Found {
            uri: "s3://b/incoming/dim Payer.csv".into(),
            key: "incoming/dim Payer.csv".into(),
            etag: "e1".into(),
            size: 10,
            state: State::NeverLoaded,
            last_attempt: None,
        };
        let items =
            crate::event::parse_s3_notification(&notification("b", &found).to_string()).unwrap();
        assert_eq!(items.len(), 1);
        let text = format!("{:?}", items[0]);
        assert!(
            text.contains("incoming/dim Payer.csv") && text.contains("e1"),
            "{text}"
        );
    }

    #[test]
    fn uris_name_a_bucket_and_a_prefix() {
        assert_eq!(
            parse_uri("s3://b/incoming/").unwrap(),
            ("b".into(), "incoming/".into())
        );
        assert_eq!(parse_uri("s3://b").unwrap(), ("b".into(), String::new()));
        assert!(parse_uri("/tmp/x").is_err() && parse_uri("s3:///x").is_err());
    }
}
