//! What arrived: turns the JSON a Lambda invocation receives into the S3 objects to load.
//!
//! One code path serves three shapes: S3 event notifications delivered straight to Lambda,
//! SQS batches whose bodies are S3 notifications (the production topology), and EventBridge
//! "Object Created" events from S3. Each is reduced to [`Message`]s holding either the
//! [`Item`]s they name or the [`EventError`] that stopped them.
//!
//! # One bad part never hides a good one
//!
//! - **SQS**: one [`Message`] per SQS record, keyed by `messageId`. A malformed body fails that
//!   message alone; [`batch_response`] lists it so SQS redelivers (and in the end dead-letters)
//!   it while the rest of the batch is deleted.
//! - **Direct S3**: one [`Message`] per record, with `message_id: None`, so a record that cannot
//!   be read is reported on its own while the other records still load.
//! - **EventBridge**: one event names one object, so one [`Message`].
//!
//! The S3 records inside one SQS body stand or fall together, because SQS can only redeliver a
//! whole message. S3 puts one record in each notification, so this is one object per message.
//!
//! # Keys
//!
//! S3 notifications (direct or in SQS bodies) carry keys form-URL-encoded; [`decode_key`]
//! reverses that exactly or refuses. EventBridge events carry the key as stored and are not
//! decoded (see [`parse_event`]).
//!
//! Errors name the record, field and key involved. They never quote a message body, so nothing
//! from a file, or from a payload sent to the wrong queue, reaches the logs.

use std::collections::HashSet;

use aws_lambda_events::event::s3::S3Entity;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use serde::Deserialize;
use serde_json::{Map, Value};

const S3_SOURCE: &str = "aws:s3";
const SQS_SOURCE: &str = "aws:sqs";
const EVENTBRIDGE_S3_SOURCE: &str = "aws.s3";
const OBJECT_CREATED_DETAIL_TYPE: &str = "Object Created";
const TEST_EVENT: &str = "s3:TestEvent";

/// One S3 object to load, as an event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// Object key, decoded: the exact key to pass to `GetObject`.
    pub key: String,
    /// ETag without surrounding quotes, when the event carries one.
    pub etag: Option<String>,
    /// Version id, when the event carries one (versioned buckets).
    pub version_id: Option<String>,
    /// Size in bytes, when the event carries it.
    pub size: Option<i64>,
    /// S3's ordering token for events on the same key (compare after left-padding with zeros).
    pub sequencer: Option<String>,
}

/// What one S3 record, or one EventBridge event, asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An object was created: load it.
    Load(ObjectRef),
    /// Acknowledged and skipped: a test event, a deletion, or another event that creates nothing.
    Ignored {
        /// Why nothing is loaded, for the log.
        reason: String,
    },
}

/// The unit the caller succeeds or fails as a whole: one SQS message, one direct S3 record, or
/// one EventBridge event.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The SQS `messageId`; `None` for direct S3 and EventBridge invocations.
    pub message_id: Option<String>,
    /// What the message asks for, or why it could not be read.
    pub items: Result<Vec<Item>, EventError>,
}

/// Which kind of event the invocation carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// S3 event notification delivered straight to Lambda.
    S3,
    /// SQS batch whose message bodies are S3 event notifications.
    Sqs,
    /// EventBridge event whose source is S3.
    EventBridge,
}

/// One parsed invocation: its shape and the messages it carried, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// Which kind of event arrived.
    pub shape: Shape,
    /// The messages, each to be loaded (or failed) on its own.
    pub messages: Vec<Message>,
}

/// Why an event, message or record could not be turned into objects to load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The invocation is none of the shapes this function is wired for.
    #[error(
        "unrecognised event ({found}); expected an S3 notification, an SQS batch of them or an \
         EventBridge event from aws.s3: check the trigger wired to this function"
    )]
    UnknownShape {
        /// What arrived instead, described without its values.
        found: String,
    },
    /// A `Records` array with nothing in it.
    #[error("the Records array is empty; there is nothing to load")]
    NoRecords,
    /// A message body that is not JSON at all.
    #[error("message body is not JSON ({reason}); expected an S3 event notification")]
    NotJson {
        /// The parser's complaint (position only, never the text).
        reason: String,
    },
    /// A JSON body that is neither an S3 notification nor an S3 test event.
    #[error(
        "message body is not an S3 event notification ({found}); if the queue is subscribed to \
         an SNS topic, turn on raw message delivery"
    )]
    NotS3Notification {
        /// What the body holds instead, described without its values.
        found: String,
    },
    /// A record that came from another service than the one its place implies.
    #[error("eventSource is {}, expected {expected:?}", shown(.found.as_deref()))]
    WrongEventSource {
        /// The source this place requires.
        expected: &'static str,
        /// The source the record names, if any.
        found: Option<String>,
    },
    /// A field this module needs is absent, null or empty.
    #[error("{field} is missing or empty")]
    MissingField {
        /// Path of the field within the record or event.
        field: &'static str,
    },
    /// A field is present but not of the type S3 documents.
    #[error("{field} is malformed: {reason}")]
    Malformed {
        /// Path of the field within the record or event.
        field: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// A key with a `%` not followed by two hex digits.
    #[error("key {key:?} has a bad escape at byte {at}: '%' must be followed by two hex digits")]
    BadEscape {
        /// The key as the event carried it.
        key: String,
        /// Byte offset of the offending `%`.
        at: usize,
    },
    /// A key whose decoded bytes are not UTF-8.
    #[error("key {key:?} does not decode to UTF-8")]
    KeyNotUtf8 {
        /// The key as the event carried it.
        key: String,
    },
    /// A record-level error, with the record's place in its `Records` array.
    #[error("Records[{index}]: {problem}")]
    InRecord {
        /// Zero-based position in the `Records` array.
        index: usize,
        /// What was wrong with that record.
        problem: Box<EventError>,
    },
}

impl EventError {
    fn in_record(self, index: usize) -> Self {
        Self::InRecord {
            index,
            problem: Box::new(self),
        }
    }
}

/// Parses a whole Lambda invocation payload.
///
/// Only an unrecognisable payload is an error here; anything wrong inside a recognised event is
/// reported in the affected [`Message`], so the rest still loads.
///
/// EventBridge keys are taken as they arrive, not URL-decoded: unlike S3 notifications, S3's
/// EventBridge events carry the stored key (moto behaves the same), so decoding would turn a
/// stored `+` into a space.
///
/// # Errors
///
/// [`EventError::UnknownShape`] when the payload is not an S3 notification, an SQS batch or an
/// EventBridge event from `aws.s3`; [`EventError::NoRecords`] when its `Records` array is empty.
pub fn parse_event(value: &Value) -> Result<Incoming, EventError> {
    let Some(event) = value.as_object() else {
        return Err(EventError::UnknownShape {
            found: describe(value),
        });
    };
    if let Some(records) = event.get("Records") {
        return parse_records(records);
    }
    if event.contains_key("detail-type") {
        return parse_eventbridge(event);
    }
    if is_test_event(event) {
        return Ok(Incoming {
            shape: Shape::S3,
            messages: vec![Message {
                message_id: None,
                items: Ok(vec![test_event_item(event)]),
            }],
        });
    }
    Err(EventError::UnknownShape {
        found: describe(value),
    })
}

/// Parses one S3 event notification given as JSON text: an SQS message body, or a raw message a
/// local worker received.
///
/// An `s3:TestEvent` yields one [`Item::Ignored`]. Any unreadable record fails the whole
/// notification, because the message that carried it can only be retried whole.
///
/// # Errors
///
/// [`EventError::NotJson`] or [`EventError::NotS3Notification`] when the body is not a
/// notification, [`EventError::NoRecords`] when it has no records, and
/// [`EventError::InRecord`] for the first record that cannot be read.
pub fn parse_s3_notification(body: &str) -> Result<Vec<Item>, EventError> {
    let value: Value = serde_json::from_str(body).map_err(|error| EventError::NotJson {
        reason: error.to_string(),
    })?;
    let Some(notification) = value.as_object() else {
        return Err(EventError::NotS3Notification {
            found: describe(&value),
        });
    };
    if is_test_event(notification) {
        return Ok(vec![test_event_item(notification)]);
    }
    let Some(records) = notification.get("Records").and_then(Value::as_array) else {
        return Err(EventError::NotS3Notification {
            found: describe(&value),
        });
    };
    if records.is_empty() {
        return Err(EventError::NoRecords);
    }
    records
        .iter()
        .enumerate()
        .map(|(index, record)| s3_record(record).map_err(|error| error.in_record(index)))
        .collect()
}

/// Decodes an S3 notification key: `+` is a space, `%XX` is the byte `XX`, and the resulting
/// bytes must be UTF-8.
///
/// Refuses rather than guesses: a `%` without two hex digits after it, or bytes that are not
/// UTF-8, are errors, never replacement characters.
///
/// # Errors
///
/// [`EventError::BadEscape`] for a `%` without two hex digits after it, and
/// [`EventError::KeyNotUtf8`] when the decoded bytes are not UTF-8.
pub fn decode_key(raw: &str) -> Result<String, EventError> {
    // percent-encoding decodes a stray '%' as itself; the contract refuses it, so escapes are checked first.
    let bytes = raw.as_bytes();
    if let Some(at) = memchr::memchr_iter(b'%', bytes).find(|&at| {
        !bytes
            .get(at + 1..at + 3)
            .is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit))
    }) {
        return Err(EventError::BadEscape {
            key: raw.to_owned(),
            at,
        });
    }
    // `+` is a space only where it stands for itself; `%2B` stays a plus after decoding.
    let spaced = raw.replace('+', " ");
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(&spaced).collect();
    String::from_utf8(decoded).map_err(|_| EventError::KeyNotUtf8 {
        key: raw.to_owned(),
    })
}

/// Builds the SQS partial-batch response: every message that could not be read, plus every id in
/// `failed` (messages the handler could not load), each once, in arrival order.
///
/// Only SQS invocations read this response. Lambda fails the *whole* batch when an
/// `itemIdentifier` is empty or names no message in the batch (AWS Lambda guide, "Handling errors
/// for an SQS event source"), and that is the safe side both times this function leans on it:
/// an unreadable SQS message without a `messageId` cannot be named, so it is listed as `""`
/// rather than silently deleted; and ids in `failed` that are not in the batch are kept.
pub fn batch_response(incoming: &Incoming, failed: &[String]) -> SqsBatchResponse {
    let handler_failed: HashSet<&str> = failed.iter().map(String::as_str).collect();
    let sqs = incoming.shape == Shape::Sqs;
    let batch_ids =
        incoming
            .messages
            .iter()
            .filter_map(|message| match message.message_id.as_deref() {
                Some(id) => (message.items.is_err() || handler_failed.contains(id)).then_some(id),
                // Cannot be named: "" makes Lambda retry the whole batch instead of deleting it.
                None => (sqs && message.items.is_err()).then_some(""),
            });
    let mut listed = HashSet::new();
    let mut ids = Vec::new();
    for id in batch_ids.chain(failed.iter().map(String::as_str)) {
        if listed.insert(id) {
            ids.push(id);
        }
    }
    let mut response = SqsBatchResponse::default();
    response.set_failures(ids);
    response
}

fn parse_records(records: &Value) -> Result<Incoming, EventError> {
    let Some(records) = records.as_array() else {
        return Err(EventError::UnknownShape {
            found: format!("Records is {}", describe(records)),
        });
    };
    if records.is_empty() {
        return Err(EventError::NoRecords);
    }
    let from = |source: &str| {
        records
            .iter()
            .any(|record| event_source(record) == Some(source))
    };
    if from(SQS_SOURCE) {
        let messages = records.iter().map(sqs_message).collect();
        return Ok(Incoming {
            shape: Shape::Sqs,
            messages,
        });
    }
    if from(S3_SOURCE) {
        let messages = records
            .iter()
            .enumerate()
            .map(|(index, record)| Message {
                message_id: None,
                items: s3_record(record)
                    .map(|item| vec![item])
                    .map_err(|error| error.in_record(index)),
            })
            .collect();
        return Ok(Incoming {
            shape: Shape::S3,
            messages,
        });
    }
    Err(EventError::UnknownShape {
        found: "Records from neither aws:s3 nor aws:sqs".to_owned(),
    })
}

fn sqs_message(record: &Value) -> Message {
    let message_id = record
        .get("messageId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    Message {
        message_id,
        items: sqs_items(record),
    }
}

fn sqs_items(record: &Value) -> Result<Vec<Item>, EventError> {
    let source = event_source(record);
    if source != Some(SQS_SOURCE) {
        return Err(EventError::WrongEventSource {
            expected: SQS_SOURCE,
            found: source.map(str::to_owned),
        });
    }
    let body = record
        .get("body")
        .and_then(Value::as_str)
        .ok_or(EventError::MissingField { field: "body" })?;
    parse_s3_notification(body)
}

/// Reads one record of an S3 notification's `Records` array.
fn s3_record(record: &Value) -> Result<Item, EventError> {
    let source = event_source(record);
    if source != Some(S3_SOURCE) {
        return Err(EventError::WrongEventSource {
            expected: S3_SOURCE,
            found: source.map(str::to_owned),
        });
    }
    let name = record
        .get("eventName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .ok_or(EventError::MissingField { field: "eventName" })?;
    // S3 writes "ObjectCreated:Put"; the s3: prefix appears in configurations and some emulators.
    if !name
        .strip_prefix("s3:")
        .unwrap_or(name)
        .starts_with("ObjectCreated:")
    {
        return Ok(Item::Ignored {
            reason: format!("{name} is not an object creation"),
        });
    }
    let s3 = record
        .get("s3")
        .ok_or(EventError::MissingField { field: "s3" })?;
    let entity = S3Entity::deserialize(s3).map_err(|error| EventError::Malformed {
        field: "s3",
        reason: error.to_string(),
    })?;
    let bucket = non_empty(entity.bucket.name).ok_or(EventError::MissingField {
        field: "s3.bucket.name",
    })?;
    let raw_key = non_empty(entity.object.key).ok_or(EventError::MissingField {
        field: "s3.object.key",
    })?;
    Ok(Item::Load(ObjectRef {
        bucket,
        key: decode_key(&raw_key)?,
        etag: entity.object.e_tag.as_deref().and_then(unquoted),
        version_id: non_empty(entity.object.version_id),
        size: entity.object.size,
        sequencer: non_empty(entity.object.sequencer),
    }))
}

/// The part of an S3 EventBridge event's `detail` this module reads.
#[derive(Deserialize)]
struct EventBridgeDetail {
    bucket: Option<EventBridgeBucket>,
    object: Option<EventBridgeObject>,
}

#[derive(Deserialize)]
struct EventBridgeBucket {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct EventBridgeObject {
    key: Option<String>,
    size: Option<i64>,
    /// AWS writes `etag`; moto writes `eTag`.
    #[serde(alias = "eTag")]
    etag: Option<String>,
    version_id: Option<String>,
    sequencer: Option<String>,
}

fn parse_eventbridge(event: &Map<String, Value>) -> Result<Incoming, EventError> {
    let source = event.get("source").and_then(Value::as_str);
    if source != Some(EVENTBRIDGE_S3_SOURCE) {
        return Err(EventError::UnknownShape {
            found: format!("an EventBridge event from source {}", shown(source)),
        });
    }
    Ok(Incoming {
        shape: Shape::EventBridge,
        messages: vec![Message {
            message_id: None,
            items: eventbridge_item(event).map(|item| vec![item]),
        }],
    })
}

fn eventbridge_item(event: &Map<String, Value>) -> Result<Item, EventError> {
    let detail_type =
        event
            .get("detail-type")
            .and_then(Value::as_str)
            .ok_or(EventError::MissingField {
                field: "detail-type",
            })?;
    if detail_type != OBJECT_CREATED_DETAIL_TYPE {
        return Ok(Item::Ignored {
            reason: format!("EventBridge {detail_type:?} is not an object creation"),
        });
    }
    let detail = event
        .get("detail")
        .ok_or(EventError::MissingField { field: "detail" })?;
    let detail = EventBridgeDetail::deserialize(detail).map_err(|error| EventError::Malformed {
        field: "detail",
        reason: error.to_string(),
    })?;
    let bucket = detail
        .bucket
        .and_then(|bucket| non_empty(bucket.name))
        .ok_or(EventError::MissingField {
            field: "detail.bucket.name",
        })?;
    let object = detail.object.ok_or(EventError::MissingField {
        field: "detail.object",
    })?;
    let key = non_empty(object.key).ok_or(EventError::MissingField {
        field: "detail.object.key",
    })?;
    Ok(Item::Load(ObjectRef {
        bucket,
        key,
        etag: object.etag.as_deref().and_then(unquoted),
        version_id: non_empty(object.version_id),
        size: object.size,
        sequencer: non_empty(object.sequencer),
    }))
}

fn is_test_event(event: &Map<String, Value>) -> bool {
    event.get("Event").and_then(Value::as_str) == Some(TEST_EVENT)
}

fn test_event_item(event: &Map<String, Value>) -> Item {
    let bucket = event
        .get("Bucket")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    Item::Ignored {
        reason: format!(
            "{TEST_EVENT} for bucket {bucket}: S3 confirming a notification configuration"
        ),
    }
}

fn event_source(record: &Value) -> Option<&str> {
    record.get("eventSource").and_then(Value::as_str)
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.is_empty())
}

/// An ETag without the quotes HTTP puts around it; `None` if nothing is left.
fn unquoted(etag: &str) -> Option<String> {
    let bare = etag.trim_matches('"');
    (!bare.is_empty()).then(|| bare.to_owned())
}

/// Describes a JSON value by its type (and an object by its first keys), never by its values.
fn describe(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let keys: Vec<&str> = map.keys().take(6).map(String::as_str).collect();
            let more = if map.len() > keys.len() { ", ..." } else { "" };
            format!("an object with keys [{}{more}]", keys.join(", "))
        }
        Value::Array(_) => "an array".to_owned(),
        Value::String(_) => "a string".to_owned(),
        Value::Number(_) => "a number".to_owned(),
        Value::Bool(_) => "a boolean".to_owned(),
        Value::Null => "null".to_owned(),
    }
}

fn shown(value: Option<&str>) -> String {
    match value {
        Some(value) => format!("{value:?}"),
        None => "absent".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The test event of the AWS Lambda S3 tutorial
    /// (docs.aws.amazon.com/lambda/latest/dg/with-s3-example.html), verbatim.
    const AWS_LAMBDA_S3_SAMPLE: &str = r#"{
  "Records": [
    {
      "eventVersion": "2.0",
      "eventSource": "aws:s3",
      "awsRegion": "us-east-1",
      "eventTime": "1970-01-01T00:00:00.000Z",
      "eventName": "ObjectCreated:Put",
      "userIdentity": {
        "principalId": "EXAMPLE"
      },
      "requestParameters": {
        "sourceIPAddress": "127.0.0.1"
      },
      "responseElements": {
        "x-amz-request-id": "EXAMPLE123456789",
        "x-amz-id-2": "EXAMPLE123/5678abcdefghijklambdaisawesome/mnopqrstuvwxyzABCDEFGH"
      },
      "s3": {
        "s3SchemaVersion": "1.0",
        "configurationId": "testConfigRule",
        "bucket": {
          "name": "example-bucket",
          "ownerIdentity": {
            "principalId": "EXAMPLE"
          },
          "arn": "arn:aws:s3:::example-bucket"
        },
        "object": {
          "key": "test%2Fkey",
          "size": 1024,
          "eTag": "0123456789abcdef0123456789abcdef",
          "sequencer": "0A1B2C3D4E5F678901"
        }
      }
    }
  ]
}"#;

    /// "Amazon S3 test message" from the S3 user guide's "Event message structure", verbatim.
    const AWS_S3_TEST_EVENT: &str = r#"{
   "Service":"Amazon S3",
   "Event":"s3:TestEvent",
   "Time":"2014-10-13T15:57:02.089Z",
   "Bucket":"bucketname",
   "RequestId":"5582815E1AEA5ADF",
   "HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"
}"#;

    /// An S3 -> SQS -> Lambda event as AWS delivers it: the AWS Powertools for Lambda (Python)
    /// fixture tests/events/s3SqsEvent.json, verbatim. The body is a stringified notification.
    const AWS_SQS_WRAPPING_S3: &str = r#"{
    "Records":[
       {
          "messageId":"ca3e7a89-c358-40e5-8aa0-5da01403c267",
          "receiptHandle":"AQEBE7XoI7IQRLF7SrpiW9W4BanmOWe8UtVDbv6/CEZYKf/OktSNIb4j689tQfR4k44V/LY20lZ5VpxYt2GTYCsSLKTcBalTJaRX9CKu/hVqy/23sSNiKxnP56D+VLSn+hU275+AP1h4pUL0d9gLdRB2haX8xiM+LcGfis5Jl8BBXtoxKRF60O87O9/NvCmmXLeqkJuexfyEZNyed0fFCRXFXSjbmThG0OIQgcrGI8glBRGPA8htns58VtXFsSaPYNoqP3p5n6+ewKKVLD0lfm+0DlnLKRa+mjvFBaSer9KK1ff+Aq6zJ6HynPwADj+aF70Hwimc2zImYe51SLEF/E2csYlMNZYI/2qXW0m9R7wJ/XDTV4g2+h+BMTxsKnJQ6NQd",
          "body":"{\"Records\":[{\"eventVersion\":\"2.1\",\"eventSource\":\"aws:s3\",\"awsRegion\":\"us-east-1\",\"eventTime\":\"2023-04-12T20:43:38.021Z\",\"eventName\":\"ObjectCreated:Put\",\"userIdentity\":{\"principalId\":\"A1YQ72UWCM96UF\"},\"requestParameters\":{\"sourceIPAddress\":\"93.108.161.96\"},\"responseElements\":{\"x-amz-request-id\":\"YMSSR8BZJ2Y99K6P\",\"x-amz-id-2\":\"6ASrUfj5xpn859fIq+6FXflOex/SKl/rjfiMd7wRzMg/zkHKR22PDpnh7KD3uq//cuOTbdX4DInN5eIs+cR0dY1z2Mc5NDP/\"},\"s3\":{\"s3SchemaVersion\":\"1.0\",\"configurationId\":\"SNS\",\"bucket\":{\"name\":\"xxx\",\"ownerIdentity\":{\"principalId\":\"A1YQ72UWCM96UF\"},\"arn\":\"arn:aws:s3:::xxx\"},\"object\":{\"key\":\"test.pdf\",\"size\":104681,\"eTag\":\"2e3ad1e983318bbd8e73b080e2997980\",\"versionId\":\"yd3d4HaWOT2zguDLvIQLU6ptDTwKBnQV\",\"sequencer\":\"00643717F9F8B85354\"}}}]}",
          "attributes":{
             "ApproximateReceiveCount":"1",
             "SentTimestamp":"1681332219270",
             "SenderId":"AIDAJHIPRHEMV73VRJEBU",
             "ApproximateFirstReceiveTimestamp":"1681332239270"
          },
          "messageAttributes":{

          },
          "md5OfBody":"16f4460f4477d8d693a5abe94fdbbd73",
          "eventSource":"aws:sqs",
          "eventSourceARN":"arn:aws:sqs:us-east-1:123456789012:SQS",
          "awsRegion":"us-east-1"
       }
    ]
 }"#;

    /// First record of the Lambda SQS docs' "Example standard queue message event"
    /// (docs.aws.amazon.com/lambda/latest/dg/with-sqs.html): its body is not an S3 notification.
    const AWS_SQS_SAMPLE_RECORD: &str = r#"{
    "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
    "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
    "body": "Test message.",
    "attributes": {
        "ApproximateReceiveCount": "1",
        "SentTimestamp": "1545082649183",
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": "1545082649185"
    },
    "messageAttributes": {},
    "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
    "eventSource": "aws:sqs",
    "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
    "awsRegion": "us-east-2"
}"#;

    /// "Object created" from the S3 user guide's "EventBridge event message structure", verbatim.
    const AWS_EVENTBRIDGE_OBJECT_CREATED: &str = r#"{
  "version": "0",
  "id": "17793124-05d4-b198-2fde-7ededc63b103",
  "detail-type": "Object Created",
  "source": "aws.s3",
  "account": "111122223333",
  "time": "2021-11-12T00:00:00Z",
  "region": "ca-central-1",
  "resources": [
    "arn:aws:s3:::amzn-s3-demo-bucket1"
  ],
  "detail": {
    "version": "0",
    "bucket": {
      "name": "amzn-s3-demo-bucket1"
    },
    "object": {
      "key": "example-key",
      "size": 5,
      "etag": "b1946ac92492d2347c6235b4d2611184",
      "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
      "sequencer": "617f08299329d189"
    },
    "request-id": "N4N7GDK58NMKJ12R",
    "requester": "123456789012",
    "source-ip-address": "1.2.3.4",
    "reason": "PutObject"
  }
}"#;

    // SQS message bodies moto 5.2.1 sends for a bucket whose QueueConfiguration "csv-created"
    // covers s3:ObjectCreated:* and s3:ObjectRemoved:* (moto/s3/notifications.py:
    // `send_test_event` on configuration, then `_get_s3_event` per event), captured verbatim
    // after put_object("raw/FactTable.csv"), put_object("my fileé.csv") and
    // delete_object("raw/FactTable.csv"). Quirks: no userIdentity, requestParameters,
    // responseElements, versionId or sequencer; eventTime without a zone; Python's ", " / ": "
    // separators; keys quote_plus-encoded.
    const MOTO_TEST_EVENT: &str = r#"{"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-25T13:19:46.665610", "Bucket": "healthetl-landing"}"#;
    const MOTO_PUT_FACT_TABLE: &str = r#"{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": "2026-11-25T13:19:46.669895", "eventName": "ObjectCreated:Put", "s3": {"s3SchemaVersion": "1.0", "configurationId": "csv-created", "bucket": {"name": "healthetl-landing", "arn": "arn:aws:s3:::healthetl-landing"}, "object": {"key": "raw%2FFactTable.csv", "size": 8, "eTag": "e5ebd4c02cefbe7955977c67ada242b7"}}}]}"#;
    const MOTO_PUT_ACCENTED: &str = r#"{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": "2026-11-25T13:19:46.673036", "eventName": "ObjectCreated:Put", "s3": {"s3SchemaVersion": "1.0", "configurationId": "csv-created", "bucket": {"name": "healthetl-landing", "arn": "arn:aws:s3:::healthetl-landing"}, "object": {"key": "my+file%C3%A9.csv", "size": 2, "eTag": "401b30e3b8b5d629635a5c613cdb7919"}}}]}"#;
    const MOTO_DELETE_FACT_TABLE: &str = r#"{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": "2026-11-25T13:19:46.675330", "eventName": "ObjectRemoved:Delete", "s3": {"s3SchemaVersion": "1.0", "configurationId": "csv-created", "bucket": {"name": "healthetl-landing", "arn": "arn:aws:s3:::healthetl-landing"}, "object": {"key": "raw%2FFactTable.csv", "size": 8, "eTag": "e5ebd4c02cefbe7955977c67ada242b7"}}}]}"#;

    /// The event moto 5.2.1's SQS event source mapping hands to Lambda
    /// (moto/awslambda/models.py `_send_sqs_message`), built by moto's own code and captured
    /// verbatim: one record per invocation, fixed attributes and md5OfBody.
    const MOTO_LAMBDA_SQS_EVENT: &str = r#"{"Records": [{"messageId": "9f6c10a0-7a48-4ef4-99ed-72d18386b485", "receiptHandle": "nbjfurtldwtwjbrrjymlsynrcbseamrwovwecziqwdggquskdlsszgnjvwhwyezlskgprdmcudhlvzegydujjdrhggkzkaxghrcjnesbfbbfilgxedwxidqxfpfergzvpwgessozqfuavwyfqfyxepiopbjpkrgeyumhpbwbogwkrsnumlzsbjoju", "body": "{\"Records\": [{\"eventVersion\": \"2.1\", \"eventSource\": \"aws:s3\", \"awsRegion\": \"us-east-1\", \"eventTime\": \"2026-11-25T13:21:58.514060\", \"eventName\": \"ObjectCreated:Put\", \"s3\": {\"s3SchemaVersion\": \"1.0\", \"configurationId\": \"csv-created\", \"bucket\": {\"name\": \"healthetl-landing\", \"arn\": \"arn:aws:s3:::healthetl-landing\"}, \"object\": {\"key\": \"raw%2FFactTable.csv\", \"size\": 8, \"eTag\": \"e5ebd4c02cefbe7955977c67ada242b7\"}}}]}", "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1545082649183", "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1545082649185"}, "messageAttributes": {}, "md5OfBody": "098f6bcd4621d373cade4e832627b4f6", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:healthetl-objects", "awsRegion": "us-east-1"}]}"#;

    // EventBridge events moto 5.2.1 emits for put_object("my fileé.csv") with
    // EventBridgeConfiguration on, captured verbatim from an SQS rule target. Quirks: "eTag"
    // rather than "etag", "version-id" is the string "null", the key is not encoded, and a
    // put also emits "Object Tags Added".
    const MOTO_EVENTBRIDGE_CREATED: &str = r#"{"version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012", "time": "2026-11-25T13:22:04Z", "region": "us-east-1", "resources": ["arn:aws:s3:::healthetl-landing"], "detail": {"version": "0", "bucket": {"name": "healthetl-landing"}, "object": {"key": "my file\u00e9.csv", "size": 2, "eTag": "401b30e3b8b5d629635a5c613cdb7919", "version-id": "null", "sequencer": "617f08299329d189"}, "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "source-ip-address": "1.2.3.4", "reason": "ObjectCreated"}}"#;
    const MOTO_EVENTBRIDGE_TAGS_ADDED: &str = r#"{"version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Tags Added", "source": "aws.s3", "account": "123456789012", "time": "2026-11-25T13:22:04Z", "region": "us-east-1", "resources": ["arn:aws:s3:::healthetl-landing"], "detail": {"version": "0", "bucket": {"name": "healthetl-landing"}, "object": {"key": "my file\u00e9.csv", "size": 2, "eTag": "401b30e3b8b5d629635a5c613cdb7919", "version-id": "null", "sequencer": "617f08299329d189"}, "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "source-ip-address": "1.2.3.4", "reason": "ObjectTagging"}}"#;

    fn json(text: &str) -> Value {
        serde_json::from_str(text).expect("fixture is valid JSON")
    }

    fn parse(text: &str) -> Incoming {
        parse_event(&json(text)).expect("event shape is recognised")
    }

    fn loads(items: &[Item]) -> Vec<&ObjectRef> {
        items
            .iter()
            .filter_map(|item| match item {
                Item::Load(object) => Some(object),
                Item::Ignored { .. } => None,
            })
            .collect()
    }

    fn only_item(message: &Message) -> &Item {
        match message.items.as_deref() {
            Ok([item]) => item,
            other => panic!("expected exactly one item, got {other:?}"),
        }
    }

    fn object(bucket: &str, key: &str) -> ObjectRef {
        ObjectRef {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag: None,
            version_id: None,
            size: None,
            sequencer: None,
        }
    }

    fn failures(response: &SqsBatchResponse) -> Vec<&str> {
        response
            .batch_item_failures
            .iter()
            .map(|failure| failure.item_identifier.as_str())
            .collect()
    }

    /// A direct S3 record with the given key and event name, in the AWS sample's layout.
    fn s3_record_json(key: &str, event_name: &str) -> Value {
        json!({
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2024-03-01T12:00:00.000Z",
            "eventName": event_name,
            "userIdentity": {"principalId": "EXAMPLE"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "EXAMPLE123456789"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "csv-created",
                "bucket": {"name": "healthetl-landing", "arn": "arn:aws:s3:::healthetl-landing"},
                "object": {"key": key, "size": 10, "eTag": "\"abc123\"", "sequencer": "0A1"}
            }
        })
    }

    #[test]
    fn the_aws_lambda_sample_s3_event_loads_its_object_with_the_key_decoded() {
        let incoming = parse(AWS_LAMBDA_S3_SAMPLE);

        assert_eq!(incoming.shape, Shape::S3);
        assert_eq!(incoming.messages.len(), 1);
        assert_eq!(incoming.messages[0].message_id, None);
        assert_eq!(
            only_item(&incoming.messages[0]),
            &Item::Load(ObjectRef {
                etag: Some("0123456789abcdef0123456789abcdef".to_owned()),
                size: Some(1024),
                sequencer: Some("0A1B2C3D4E5F678901".to_owned()),
                ..object("example-bucket", "test/key")
            })
        );
    }

    #[test]
    fn a_two_record_s3_event_loads_both_objects_in_order() {
        let event = json!({"Records": [
            s3_record_json("raw%2FdimPatient.csv", "ObjectCreated:Put"),
            s3_record_json("raw%2FFactTable.csv", "ObjectCreated:CompleteMultipartUpload"),
        ]});

        let incoming = parse_event(&event).expect("shape is recognised");

        let keys: Vec<&str> = incoming
            .messages
            .iter()
            .map(|message| match only_item(message) {
                Item::Load(object) => object.key.as_str(),
                Item::Ignored { reason } => panic!("unexpectedly ignored: {reason}"),
            })
            .collect();
        assert_eq!(keys, ["raw/dimPatient.csv", "raw/FactTable.csv"]);
    }

    #[test]
    fn a_bad_record_in_a_direct_s3_event_fails_alone_and_the_good_ones_still_load() {
        let event = json!({"Records": [
            s3_record_json("raw%2Fa.csv", "ObjectCreated:Put"),
            s3_record_json("raw%2Fb%ZZ.csv", "ObjectCreated:Put"),
            s3_record_json("raw%2Fc.csv", "ObjectCreated:Put"),
        ]});

        let incoming = parse_event(&event).expect("shape is recognised");

        assert_eq!(incoming.messages.len(), 3);
        assert!(matches!(only_item(&incoming.messages[0]), Item::Load(o) if o.key == "raw/a.csv"));
        assert_eq!(
            incoming.messages[1].items,
            Err(EventError::InRecord {
                index: 1,
                problem: Box::new(EventError::BadEscape {
                    key: "raw%2Fb%ZZ.csv".to_owned(),
                    at: 7
                }),
            })
        );
        assert!(matches!(only_item(&incoming.messages[2]), Item::Load(o) if o.key == "raw/c.csv"));
    }

    #[test]
    fn the_aws_sqs_event_wrapping_an_s3_notification_loads_the_object_under_its_message_id() {
        let incoming = parse(AWS_SQS_WRAPPING_S3);

        assert_eq!(incoming.shape, Shape::Sqs);
        assert_eq!(incoming.messages.len(), 1);
        let message = &incoming.messages[0];
        assert_eq!(
            message.message_id.as_deref(),
            Some("ca3e7a89-c358-40e5-8aa0-5da01403c267")
        );
        assert_eq!(
            only_item(message),
            &Item::Load(ObjectRef {
                etag: Some("2e3ad1e983318bbd8e73b080e2997980".to_owned()),
                version_id: Some("yd3d4HaWOT2zguDLvIQLU6ptDTwKBnQV".to_owned()),
                size: Some(104_681),
                sequencer: Some("00643717F9F8B85354".to_owned()),
                ..object("xxx", "test.pdf")
            })
        );
        assert!(
            batch_response(&incoming, &[])
                .batch_item_failures
                .is_empty()
        );
    }

    #[test]
    fn the_aws_sample_eventbridge_object_created_event_loads_its_object() {
        let incoming = parse(AWS_EVENTBRIDGE_OBJECT_CREATED);

        assert_eq!(incoming.shape, Shape::EventBridge);
        assert_eq!(incoming.messages.len(), 1);
        assert_eq!(incoming.messages[0].message_id, None);
        assert_eq!(
            only_item(&incoming.messages[0]),
            &Item::Load(ObjectRef {
                etag: Some("b1946ac92492d2347c6235b4d2611184".to_owned()),
                version_id: Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e".to_owned()),
                size: Some(5),
                sequencer: Some("617f08299329d189".to_owned()),
                ..object("amzn-s3-demo-bucket1", "example-key")
            })
        );
    }

    #[test]
    fn moto_eventbridge_events_load_with_their_etag_spelling_and_raw_key() {
        let incoming = parse(MOTO_EVENTBRIDGE_CREATED);

        assert_eq!(
            only_item(&incoming.messages[0]),
            &Item::Load(ObjectRef {
                etag: Some("401b30e3b8b5d629635a5c613cdb7919".to_owned()),
                version_id: Some("null".to_owned()),
                size: Some(2),
                sequencer: Some("617f08299329d189".to_owned()),
                ..object("healthetl-landing", "my fileé.csv")
            })
        );
    }

    #[test]
    fn an_eventbridge_event_that_creates_nothing_is_ignored_with_its_detail_type() {
        let incoming = parse(MOTO_EVENTBRIDGE_TAGS_ADDED);

        assert_eq!(
            only_item(&incoming.messages[0]),
            &Item::Ignored {
                reason: "EventBridge \"Object Tags Added\" is not an object creation".to_owned()
            }
        );
    }

    #[test]
    fn an_eventbridge_event_from_another_service_is_an_unknown_shape() {
        let event = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});

        assert_eq!(
            parse_event(&event),
            Err(EventError::UnknownShape {
                found: "an EventBridge event from source \"aws.events\"".to_owned()
            })
        );
    }

    #[test]
    fn moto_notifications_decode_their_quote_plus_keys() {
        let fact_table = parse_s3_notification(MOTO_PUT_FACT_TABLE).expect("moto body parses");
        let accented = parse_s3_notification(MOTO_PUT_ACCENTED).expect("moto body parses");

        assert_eq!(
            fact_table,
            [Item::Load(ObjectRef {
                etag: Some("e5ebd4c02cefbe7955977c67ada242b7".to_owned()),
                size: Some(8),
                ..object("healthetl-landing", "raw/FactTable.csv")
            })]
        );
        assert_eq!(loads(&accented)[0].key, "my fileé.csv");
    }

    #[test]
    fn moto_test_event_is_ignored_with_a_reason() {
        let items = parse_s3_notification(MOTO_TEST_EVENT).expect("test event parses");

        assert_eq!(
            items,
            [Item::Ignored {
                reason: "s3:TestEvent for bucket healthetl-landing: S3 confirming a notification \
                         configuration"
                    .to_owned()
            }]
        );
    }

    #[test]
    fn moto_object_removed_is_ignored_with_a_reason() {
        let items = parse_s3_notification(MOTO_DELETE_FACT_TABLE).expect("delete event parses");

        assert_eq!(
            items,
            [Item::Ignored {
                reason: "ObjectRemoved:Delete is not an object creation".to_owned()
            }]
        );
    }

    #[test]
    fn the_event_moto_hands_to_lambda_from_sqs_loads_under_its_message_id() {
        let incoming = parse(MOTO_LAMBDA_SQS_EVENT);

        assert_eq!(incoming.shape, Shape::Sqs);
        let message = &incoming.messages[0];
        assert_eq!(
            message.message_id.as_deref(),
            Some("9f6c10a0-7a48-4ef4-99ed-72d18386b485")
        );
        assert!(matches!(only_item(message), Item::Load(o) if o.key == "raw/FactTable.csv"));
    }

    #[test]
    fn the_aws_docs_s3_test_message_is_ignored_whether_direct_or_in_a_body() {
        let direct = parse(AWS_S3_TEST_EVENT);
        let in_body = parse_s3_notification(AWS_S3_TEST_EVENT).expect("test event parses");

        assert_eq!(direct.shape, Shape::S3);
        assert!(matches!(
            only_item(&direct.messages[0]),
            Item::Ignored { .. }
        ));
        assert!(matches!(in_body.as_slice(), [Item::Ignored { .. }]));
    }

    #[test]
    fn an_object_removed_record_in_a_direct_s3_event_is_ignored() {
        let event = json!({"Records": [s3_record_json("raw%2Fa.csv", "ObjectRemoved:Delete")]});

        let incoming = parse_event(&event).expect("shape is recognised");

        assert_eq!(
            only_item(&incoming.messages[0]),
            &Item::Ignored {
                reason: "ObjectRemoved:Delete is not an object creation".to_owned()
            }
        );
    }

    #[test]
    fn an_sqs_batch_with_one_malformed_body_fails_exactly_that_message() {
        let batch = json!({"Records": [
            json(AWS_SQS_WRAPPING_S3)["Records"][0].clone(),
            json(AWS_SQS_SAMPLE_RECORD),
            json(MOTO_LAMBDA_SQS_EVENT)["Records"][0].clone(),
        ]});

        let incoming = parse_event(&batch).expect("shape is recognised");
        let response = batch_response(&incoming, &[]);

        assert!(incoming.messages[0].items.is_ok());
        assert!(matches!(
            incoming.messages[1].items,
            Err(EventError::NotJson { .. })
        ));
        assert!(incoming.messages[2].items.is_ok());
        assert_eq!(
            serde_json::to_value(&response).expect("response serializes"),
            json!({"batchItemFailures": [{"itemIdentifier": "059f36b4-87a3-44ab-83d2-661975830a7d"}]})
        );
    }

    #[test]
    fn the_batch_response_adds_handler_failures_once_in_arrival_order() {
        let batch = json!({"Records": [
            json(AWS_SQS_WRAPPING_S3)["Records"][0].clone(),
            json(AWS_SQS_SAMPLE_RECORD),
            json(MOTO_LAMBDA_SQS_EVENT)["Records"][0].clone(),
        ]});
        let incoming = parse_event(&batch).expect("shape is recognised");
        let failed = [
            "9f6c10a0-7a48-4ef4-99ed-72d18386b485".to_owned(),
            "059f36b4-87a3-44ab-83d2-661975830a7d".to_owned(),
            "9f6c10a0-7a48-4ef4-99ed-72d18386b485".to_owned(),
        ];

        let response = batch_response(&incoming, &failed);

        assert_eq!(
            failures(&response),
            [
                "059f36b4-87a3-44ab-83d2-661975830a7d",
                "9f6c10a0-7a48-4ef4-99ed-72d18386b485"
            ]
        );
    }

    #[test]
    fn an_unreadable_sqs_message_without_an_id_is_listed_as_empty_to_fail_the_whole_batch() {
        let mut nameless = json(AWS_SQS_SAMPLE_RECORD);
        nameless["messageId"] = Value::Null;
        let batch = json!({"Records": [json(AWS_SQS_WRAPPING_S3)["Records"][0].clone(), nameless]});

        let incoming = parse_event(&batch).expect("shape is recognised");

        assert_eq!(failures(&batch_response(&incoming, &[])), [""]);
    }

    #[test]
    fn a_record_from_another_service_in_an_sqs_batch_fails_alone() {
        let mut stray = json(AWS_SQS_SAMPLE_RECORD);
        stray["eventSource"] = json!("aws:sns");
        let batch = json!({"Records": [stray, json(AWS_SQS_WRAPPING_S3)["Records"][0].clone()]});

        let incoming = parse_event(&batch).expect("shape is recognised");

        assert_eq!(
            incoming.messages[0].items,
            Err(EventError::WrongEventSource {
                expected: "aws:sqs",
                found: Some("aws:sns".to_owned())
            })
        );
        assert!(incoming.messages[1].items.is_ok());
    }

    #[test]
    fn etag_quotes_are_stripped() {
        let event = json!({"Records": [s3_record_json("a.csv", "ObjectCreated:Put")]});

        let incoming = parse_event(&event).expect("shape is recognised");

        assert!(matches!(
            only_item(&incoming.messages[0]),
            Item::Load(o) if o.etag.as_deref() == Some("abc123")
        ));
    }

    #[test]
    fn an_s3_prefixed_event_name_still_counts_as_a_creation() {
        let event = json!({"Records": [s3_record_json("a.csv", "s3:ObjectCreated:Copy")]});

        let incoming = parse_event(&event).expect("shape is recognised");

        assert!(matches!(only_item(&incoming.messages[0]), Item::Load(_)));
    }

    #[test]
    fn a_created_record_without_a_key_names_the_missing_field() {
        let mut record = s3_record_json("a.csv", "ObjectCreated:Put");
        record["s3"]["object"]
            .as_object_mut()
            .expect("object is a map")
            .remove("key");

        let incoming = parse_event(&json!({"Records": [record]})).expect("shape is recognised");

        let error = incoming.messages[0]
            .items
            .clone()
            .expect_err("key is missing");
        assert_eq!(
            error.to_string(),
            "Records[0]: s3.object.key is missing or empty"
        );
    }

    #[test]
    fn a_malformed_body_is_never_quoted_in_its_error() {
        let body = "PatientName,SSN\nJane Roe,078-05-1120\n";

        let error = parse_s3_notification(body).expect_err("a CSV is not a notification");

        let message = error.to_string();
        assert!(message.starts_with("message body is not JSON"), "{message}");
        assert!(
            !message.contains("Jane") && !message.contains("078-05"),
            "{message}"
        );
    }

    #[test]
    fn a_json_body_that_is_not_a_notification_is_described_by_its_keys_only() {
        let error = parse_s3_notification(r#"{"Type": "Notification", "Message": "secret"}"#)
            .expect_err("an SNS envelope is not a notification");

        assert_eq!(
            error,
            EventError::NotS3Notification {
                found: "an object with keys [Type, Message]".to_owned()
            }
        );
        assert!(!error.to_string().contains("secret"));
    }

    #[test]
    fn unrecognised_and_empty_events_are_whole_event_errors() {
        assert!(matches!(
            parse_event(&json!({"hello": "world"})),
            Err(EventError::UnknownShape { .. })
        ));
        assert!(matches!(
            parse_event(&json!([1, 2])),
            Err(EventError::UnknownShape { .. })
        ));
        assert_eq!(
            parse_event(&json!({"Records": []})),
            Err(EventError::NoRecords)
        );
        assert!(matches!(
            parse_event(&json!({"Records": [{"eventSource": "aws:kinesis"}]})),
            Err(EventError::UnknownShape { .. })
        ));
    }

    #[test]
    fn plus_decodes_to_a_space() {
        assert_eq!(decode_key("my+file.csv"), Ok("my file.csv".to_owned()));
    }

    #[test]
    fn percent_2f_decodes_to_a_slash_in_either_case() {
        assert_eq!(
            decode_key("raw%2FFactTable.csv"),
            Ok("raw/FactTable.csv".to_owned())
        );
        assert_eq!(
            decode_key("raw%2fFactTable.csv"),
            Ok("raw/FactTable.csv".to_owned())
        );
    }

    #[test]
    fn percent_c3_a9_decodes_to_e_acute() {
        assert_eq!(
            decode_key("my+file%C3%A9.csv"),
            Ok("my fileé.csv".to_owned())
        );
    }

    #[test]
    fn an_escaped_plus_and_percent_stay_literal() {
        assert_eq!(decode_key("a%2Bb%25.csv"), Ok("a+b%.csv".to_owned()));
    }

    #[test]
    fn a_key_without_escapes_is_unchanged() {
        assert_eq!(
            decode_key("raw/dimPatient.csv"),
            Ok("raw/dimPatient.csv".to_owned())
        );
    }

    #[test]
    fn a_non_hex_escape_is_an_error() {
        assert_eq!(
            decode_key("bad%ZZ.csv"),
            Err(EventError::BadEscape {
                key: "bad%ZZ.csv".to_owned(),
                at: 3
            })
        );
    }

    #[test]
    fn a_truncated_escape_is_an_error() {
        assert_eq!(
            decode_key("bad%4"),
            Err(EventError::BadEscape {
                key: "bad%4".to_owned(),
                at: 3
            })
        );
        assert!(decode_key("bad%").is_err());
    }

    #[test]
    fn an_escape_that_is_not_utf8_is_an_error_not_a_replacement() {
        assert_eq!(
            decode_key("bad%FF.csv"),
            Err(EventError::KeyNotUtf8 {
                key: "bad%FF.csv".to_owned()
            })
        );
    }

    #[test]
    fn errors_read_as_sentences_naming_the_record_and_key() {
        let error = EventError::BadEscape {
            key: "raw%ZZ.csv".to_owned(),
            at: 3,
        }
        .in_record(2);

        assert_eq!(
            error.to_string(),
            "Records[2]: key \"raw%ZZ.csv\" has a bad escape at byte 3: '%' must be followed by \
             two hex digits"
        );
    }
}
