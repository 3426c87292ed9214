//! The stack's `Custom::WarehouseSchema` resource: CloudFormation invokes the loader function on create and
//! update, the function brings the warehouse to the declared schema and (re)creates the reporting views, then
//! answers CloudFormation's pre-signed response URL. The QuickSight data sets depend on this resource, so they are
//! created only once the views they read exist. Delete answers success and drops nothing: the warehouse outlives
//! the stack.
//!
//! The answer names the warehouse's dialect and schema version, never a row; a failure's reason is the
//! warehouse's error (connection or SQL state), which carries no data either.

use std::time::Duration;

use serde_json::{Value, json};

/// What CloudFormation asks of a custom resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `Create`, `Update` or `Delete`.
    pub request_type: RequestType,
    /// Pre-signed S3 URL the answer is PUT to.
    pub response_url: String,
    /// The stack's id.
    pub stack_id: String,
    /// This request's id.
    pub request_id: String,
    /// The resource's logical id in the template.
    pub logical_resource_id: String,
    /// The id the resource was created with (update and delete).
    pub physical_resource_id: Option<String>,
}

/// The kinds of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    /// The stack creates the resource.
    Create,
    /// A property changed (a new version of the schema or views ships with a code update: the template passes the
    /// schema version as a property).
    Update,
    /// The stack deletes the resource.
    Delete,
}

/// The id every answer names: one schema per stack.
pub const PHYSICAL_ID: &str = "healthetl-warehouse-schema";

impl Request {
    /// The request, when `event` is a CloudFormation custom resource request (it has `RequestType` and
    /// `ResponseURL`); `None` for every other payload.
    pub fn parse(event: &Value) -> Option<Request> {
        let text = |name: &str| event.get(name)?.as_str().map(str::to_string);
        let request_type = match text("RequestType")?.as_str() {
            "Create" => RequestType::Create,
            "Update" => RequestType::Update,
            "Delete" => RequestType::Delete,
            _ => return None,
        };
        Some(Request {
            request_type,
            response_url: text("ResponseURL")?,
            stack_id: text("StackId").unwrap_or_default(),
            request_id: text("RequestId").unwrap_or_default(),
            logical_resource_id: text("LogicalResourceId").unwrap_or_default(),
            physical_resource_id: text("PhysicalResourceId"),
        })
    }

    /// The answer: SUCCESS with `data`, or FAILED with the reason (CloudFormation shows it in the stack's events).
    pub fn answer(&self, outcome: &Result<Value, String>) -> Value {
        let mut body = json!({
            "PhysicalResourceId": self.physical_resource_id.as_deref().unwrap_or(PHYSICAL_ID),
            "StackId": self.stack_id,
            "RequestId": self.request_id,
            "LogicalResourceId": self.logical_resource_id,
        });
        match outcome {
            Ok(data) => {
                body["Status"] = json!("SUCCESS");
                body["Data"] = data.clone();
            }
            Err(reason) => {
                body["Status"] = json!("FAILED");
                // CloudFormation keeps at most 4 KiB of the whole answer.
                body["Reason"] = json!(reason.chars().take(1000).collect::<String>());
            }
        }
        body
    }
}

/// Answer `request` with `outcome` at its response URL and log what was answered (no data: the dialect, the
/// version, or the error). Returns what the invocation reports: `{"custom_resource": "SUCCESS" | "FAILED"}`.
pub async fn answer(request: &Request, outcome: &Result<Value, String>) -> Result<Value, String> {
    let body = request.answer(outcome);
    match outcome {
        Ok(_) => tracing::info!(
            request_type = ?request.request_type,
            resource = %request.logical_resource_id,
            "custom resource: success"
        ),
        Err(reason) => tracing::error!(
            request_type = ?request.request_type,
            resource = %request.logical_resource_id,
            reason = %reason,
            "custom resource: failed"
        ),
    }
    respond(&request.response_url, &body).await?;
    Ok(json!({ "custom_resource": body["Status"] }))
}

/// PUT the answer to the response URL (an empty content type, as the pre-signed URL was signed for).
pub async fn respond(url: &str, body: &Value) -> Result<(), String> {
    let url = url.to_string();
    let body = body.to_string();
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build(),
        );
        let response = agent
            .put(&url)
            .content_type("")
            .send(body.as_bytes())
            .map_err(|e| format!("answering CloudFormation: {e}"))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("answering CloudFormation: HTTP {status}"))
        }
    })
    .await
    .map_err(|e| format!("answering CloudFormation: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: &str) -> Value {
        json!({
            "RequestType": kind,
            "ResponseURL": "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x",
            "StackId": "arn:aws:cloudformation:us-east-1:111122223333:stack/healthetl/abc",
            "RequestId": "r-1",
            "ResourceType": "Custom::WarehouseSchema",
            "LogicalResourceId": "WarehouseSchema",
            "ResourceProperties": {"ServiceToken": "arn:aws:lambda:…", "SchemaVersion": "3"}
        })
    }

    #[test]
    fn only_custom_resource_requests_parse() {
        let r = Request::parse(&request("Create")).unwrap();
        assert_eq!(r.request_type, RequestType::Create);
        assert_eq!(r.logical_resource_id, "WarehouseSchema");
        assert!(Request::parse(&json!({"Records": []})).is_none());
        assert!(Request::parse(&json!({"RequestType": "Create"})).is_none());
        assert!(Request::parse(&request("Rollback")).is_none());
    }

    #[test]
    fn answers_keep_the_physical_id_and_say_why_they_failed() {
        let mut update = request("Update");
        update["PhysicalResourceId"] = json!("earlier-id");
        let r = Request::parse(&update).unwrap();
        let ok = r.answer(&Ok(json!({"SchemaVersion": 3})));
        assert_eq!(ok["Status"], "SUCCESS");
        assert_eq!(ok["PhysicalResourceId"], "earlier-id");
        assert_eq!(ok["Data"]["SchemaVersion"], 3);
        let created = Request::parse(&request("Create")).unwrap();
        let failed = created.answer(&Err("connection refused".into()));
        assert_eq!(failed["Status"], "FAILED");
        assert_eq!(failed["PhysicalResourceId"], PHYSICAL_ID);
        assert_eq!(failed["Reason"], "connection refused");
        assert_eq!(failed["RequestId"], "r-1");
    }
}
