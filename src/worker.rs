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
    /// The URL of the SQS queue of S3 event notifications.
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

/// The first wait after a failed SQS call, and the longest.
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often entries that `DeleteMessageBatch` reports as failed are sent again.
const DELETE_ATTEMPTS: u32 = 3;

/// Exponential backoff, doubled after each failure up to [`BACKOFF_MAX`], reset by a success.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_START,
            failures: 0,
        }
    }
}

impl Backoff {
    /// The wait after one more failure.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        self.failures += 1;
        wait
    }

    /// A call succeeded.
    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Poll until idle (or forever); returns every object's report. A failed receive is logged and retried with
/// exponential backoff; the idle limit counts time without messages, so a worker whose queue stays unreachable
/// for that long stops with the last error.
pub async fn run(
    handler: &Handler,
    sqs: &aws_sdk_sqs::Client,
    options: &WorkerOptions,
) -> Result<Vec<LoadReport>, WorkerError> {
    let mut reports = Vec::new();
    let mut last_message = Instant::now();
    let mut polls: u64 = 0;
    let mut backoff = Backoff::default();
    loop {
        let idle_over = || {
            options
                .exit_when_idle
                .is_some_and(|idle| last_message.elapsed() >= idle)
        };
        let received = match sqs
            .receive_message()
            .queue_url(&options.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(options.wait_seconds)
            .send()
            .await
        {
            Ok(r) => {
                backoff.succeeded();
                r
            }
            Err(e) => {
                let error = error("ReceiveMessage", options, &e);
                if idle_over() {
                    return Err(error);
                }
                let wait = backoff.failed();
                tracing::warn!(error = %error, failures = backoff.failures(), retry_in_ms = wait.as_millis() as u64,
                    "SQS receive failed; backing off");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        polls += 1;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            if idle_over() {
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
        delete_done(sqs, options, done).await;
        reports.extend(outcomes.into_iter().flat_map(|o| o.reports));
    }
}

/// Delete the handled messages, sending again the entries SQS reports as failed (and the whole batch when the
/// call fails). What still fails is logged: those messages come back after their visibility timeout and are
/// skipped by the ledger, so nothing loads twice.
async fn delete_done(
    sqs: &aws_sdk_sqs::Client,
    options: &WorkerOptions,
    mut entries: Vec<DeleteMessageBatchRequestEntry>,
) {
    let mut backoff = Backoff::default();
    for attempt in 1..=DELETE_ATTEMPTS {
        if entries.is_empty() {
            return;
        }
        let sent = sqs
            .delete_message_batch()
            .queue_url(&options.queue_url)
            .set_entries(Some(entries.clone()))
            .send()
            .await;
        let failed: Vec<String> = match sent {
            Ok(out) => out
                .failed
                .iter()
                .map(|f| {
                    tracing::warn!(entry = %f.id, code = %f.code, sender_fault = f.sender_fault, attempt,
                        "SQS could not delete a handled message");
                    f.id.clone()
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %error("DeleteMessageBatch", options, &e), attempt,
                    "SQS DeleteMessageBatch failed");
                entries.iter().map(|e| e.id.clone()).collect()
            }
        };
        entries.retain(|e| failed.contains(&e.id));
        if !entries.is_empty() && attempt < DELETE_ATTEMPTS {
            tokio::time::sleep(backoff.failed()).await;
        }
    }
    if !entries.is_empty() {
        tracing::error!(
            messages = entries.len(),
            "handled messages could not be deleted; they will be redelivered and skipped by the ledger"
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<u128> = (0..10).map(|_| b.failed().as_millis()).collect();
        assert_eq!(&waits[..4], [200, 400, 800, 1600]);
        assert_eq!(*waits.last().unwrap(), 30_000);
        assert_eq!(b.failures(), 10);
        b.succeeded();
        assert_eq!(b.failed().as_millis(), 200);
    }
}
