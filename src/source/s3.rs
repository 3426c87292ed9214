//! S3 objects as sources: `GetObject` streamed straight into the pipeline (never buffered whole), pinned to the
//! version or ETag the event named, with the ETag (and version id) as the ledger identity.

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use tokio_util::io::SyncIoBridge;

use super::Object;
use crate::event::ObjectRef;

/// Why an S3 object could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum S3SourceError {
    /// The object (or the version/ETag the event named) is gone: retrying will not help.
    #[error("s3://{bucket}/{key} no longer exists (or was replaced since the event)")]
    Gone {
        /// The object's bucket.
        bucket: String,
        /// The object's key.
        key: String,
    },
    /// Anything else (permissions, network); a retry may work.
    #[error("cannot read s3://{bucket}/{key}: {reason}")]
    Unreadable {
        /// The object's bucket.
        bucket: String,
        /// The object's key.
        key: String,
        /// S3's error, with its context.
        reason: String,
    },
}

/// The ledger identity of an S3 object: its ETag, and its version id when the bucket is versioned.
pub fn identity(etag: &str, version_id: Option<&str>) -> String {
    let etag = etag.trim_matches('"');
    match version_id {
        Some(v) if !v.is_empty() && v != "null" => format!("etag:{etag};version:{v}"),
        _ => format!("etag:{etag}"),
    }
}

/// Open an object for streaming. Must be called inside the Tokio runtime; the returned reader is for a blocking
/// thread (the pipeline's parser runs on one).
pub async fn open(s3: &aws_sdk_s3::Client, object: &ObjectRef) -> Result<Object, S3SourceError> {
    let mut request = s3.get_object().bucket(&object.bucket).key(&object.key);
    match object.version_id.as_deref() {
        Some(v) if !v.is_empty() && v != "null" => request = request.version_id(v),
        _ => {
            if let Some(etag) = &object.etag {
                request = request.if_match(format!("\"{etag}\""));
            }
        }
    }
    let response = request.send().await.map_err(|e| classify(e, object))?;
    let etag = response.e_tag().unwrap_or_default().to_string();
    let identity = identity(&etag, response.version_id());
    let size = response
        .content_length()
        .and_then(|n| u64::try_from(n).ok());
    let reader = SyncIoBridge::new(response.body.into_async_read());
    Ok(Object {
        name: object.key.clone(),
        uri: format!("s3://{}/{}", object.bucket, object.key),
        identity,
        content_sha256: None,
        reader: Box::new(reader),
        size,
    })
}

fn classify(e: SdkError<GetObjectError>, object: &ObjectRef) -> S3SourceError {
    let gone = match &e {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            matches!(service.err(), GetObjectError::NoSuchKey(_)) || status == 404 || status == 412
        }
        _ => false,
    };
    if gone {
        S3SourceError::Gone {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
        }
    } else {
        S3SourceError::Unreadable {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            reason: DisplayErrorContext(&e).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_the_etag_and_the_version_when_versioned() {
        assert_eq!(identity("\"abc\"", None), "etag:abc");
        assert_eq!(identity("abc-2", Some("null")), "etag:abc-2");
        assert_eq!(identity("abc", Some("v1")), "etag:abc;version:v1");
    }
}
