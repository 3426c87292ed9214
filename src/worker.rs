//! The local worker: long-polls an SQS queue of S3 event notifications and hands each message to exactly the same
//! handler as the Lambda. Messages that loaded (or were refused into quarantine) are deleted; failed ones stay for
//! redelivery, as the Lambda's partial batch response would leave them.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;

use crate::event::{Incoming, Message, Shape, parse_s3_notification};
use crate::handler::Handler;
use crate::pipeline::LoadReport;

/// How the worker polls and when it stops.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub queue_url: String,
    /// Long-poll wait per receive (0–20 s).
    pub wait_seconds: i32,
    /// Stop after this long without messages (`None`: run until killed).
    pub exit_when_idle: Option<Duration>,
}

/// Why the worker stopped early.
#[derive(Debug, thiserror::Error)]
#[error("SQS {action} on {queue_url}: {reason}")]
pub struct WorkerError {
    action: &'static str,
    queue_url: String,
    reason: String,
}

/// Poll until idle (or forever); returns every object's report.
pub async fn run(
    handler: &Handler,
    sqs: &aws_sdk_sqs::Client,
    options: &WorkerOptions,
) -> Result<Vec<LoadReport>, WorkerError> {
    let mut reports = Vec::new();
    let mut last_message = Instant::now();
    let mut polls: u64 = 0;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&options.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(options.wait_seconds)
            .send()
            .await
            .map_err(|e| error("ReceiveMessage", options, &e))?;
        polls += 1;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            if options
                .exit_when_idle
                .is_some_and(|idle| last_message.elapsed() >= idle)
            {
                return Ok(reports);
            }
            continue;
        }
        last_message = Instant::now();
        let incoming = Incoming {
            shape: Shape::Sqs,
            messages: messages
                .iter()
                .map(|m| Message {
                    message_id: m.message_id.clone(),
                    items: parse_s3_notification(m.body().unwrap_or_default()),
                })
                .collect(),
        };
        let request_id = format!("worker-{polls}");
        let outcomes = handler.handle_incoming(&incoming, &request_id).await;
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .zip(&outcomes)
            .enumerate()
            .filter(|(_, (_, o))| o.ok)
            .filter_map(|(i, (m, _))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle.clone())
                    .build()
                    .ok()
            })
            .collect();
        if !done.is_empty() {
            sqs.delete_message_batch()
                .queue_url(&options.queue_url)
                .set_entries(Some(done))
                .send()
                .await
                .map_err(|e| error("DeleteMessageBatch", options, &e))?;
        }
        reports.extend(outcomes.into_iter().flat_map(|o| o.reports));
    }
}

fn error<E: std::error::Error>(
    action: &'static str,
    options: &WorkerOptions,
    e: &E,
) -> WorkerError {
    WorkerError {
        action,
        queue_url: options.queue_url.clone(),
        reason: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
    }
}
